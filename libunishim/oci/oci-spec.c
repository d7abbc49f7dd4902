/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The OCI runtime-spec parser. One family of small typed getters (string,
 * bool, integers with ranges, string lists, maps, arrays of objects, enums)
 * each taking the JSON path of the value, so every error names where it is:
 *   invalid config.json: linux.namespaces[2].type: unknown namespace type "foo"
 *
 * The parsers write straight into a zeroed output structure; on failure the
 * caller frees the partially filled structure with the normal destructor.
 * This file is the schema; the getters and the document checks are in
 * oci-spec-json.c.
 */
#include "oci-spec.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sched.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/capability.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>
#include <yajl/yajl_tree.h>

#include "base/cleanup.h"
#include "oci-spec-json.h"

/* ---- tables ---- */

static const struct name_value namespace_types[] = {
        {"pid", CLONE_NEWPID},   {"network", CLONE_NEWNET}, {"ipc", CLONE_NEWIPC},
        {"uts", CLONE_NEWUTS},   {"mount", CLONE_NEWNS},    {"cgroup", CLONE_NEWCGROUP},
        {"user", CLONE_NEWUSER}, {"time", CLONE_NEWTIME},
};

static const struct name_value rlimit_types[] = {
        {"RLIMIT_AS", RLIMIT_AS},
        {"RLIMIT_CORE", RLIMIT_CORE},
        {"RLIMIT_CPU", RLIMIT_CPU},
        {"RLIMIT_DATA", RLIMIT_DATA},
        {"RLIMIT_FSIZE", RLIMIT_FSIZE},
        {"RLIMIT_LOCKS", RLIMIT_LOCKS},
        {"RLIMIT_MEMLOCK", RLIMIT_MEMLOCK},
        {"RLIMIT_MSGQUEUE", RLIMIT_MSGQUEUE},
        {"RLIMIT_NICE", RLIMIT_NICE},
        {"RLIMIT_NOFILE", RLIMIT_NOFILE},
        {"RLIMIT_NPROC", RLIMIT_NPROC},
        {"RLIMIT_RSS", RLIMIT_RSS},
        {"RLIMIT_RTPRIO", RLIMIT_RTPRIO},
        {"RLIMIT_RTTIME", RLIMIT_RTTIME},
        {"RLIMIT_SIGPENDING", RLIMIT_SIGPENDING},
        {"RLIMIT_STACK", RLIMIT_STACK},
};

static const struct name_value device_types[] = {{"c", 'c'}, {"b", 'b'}, {"u", 'u'}, {"p", 'p'}};

static const struct name_value device_rule_types[] = {{"a", 'a'}, {"c", 'c'}, {"b", 'b'}};

static const struct name_value propagations[] = {
        {"private", 0}, {"rprivate", 0}, {"slave", 0},      {"rslave", 0},
        {"shared", 0},  {"rshared", 0},  {"unbindable", 0}, {"runbindable", 0},
};

static const struct name_value seccomp_actions[] = {
        {"SCMP_ACT_KILL", US_SECCOMP_ACT_KILL},
        {"SCMP_ACT_KILL_THREAD", US_SECCOMP_ACT_KILL},
        {"SCMP_ACT_KILL_PROCESS", US_SECCOMP_ACT_KILL_PROCESS},
        {"SCMP_ACT_TRAP", US_SECCOMP_ACT_TRAP},
        {"SCMP_ACT_ERRNO", US_SECCOMP_ACT_ERRNO},
        {"SCMP_ACT_TRACE", US_SECCOMP_ACT_TRACE},
        {"SCMP_ACT_ALLOW", US_SECCOMP_ACT_ALLOW},
        {"SCMP_ACT_LOG", US_SECCOMP_ACT_LOG},
        {"SCMP_ACT_NOTIFY", US_SECCOMP_ACT_NOTIFY},
};

static const struct name_value seccomp_ops[] = {
        {"SCMP_CMP_NE", US_SECCOMP_OP_NE},
        {"SCMP_CMP_LT", US_SECCOMP_OP_LT},
        {"SCMP_CMP_LE", US_SECCOMP_OP_LE},
        {"SCMP_CMP_EQ", US_SECCOMP_OP_EQ},
        {"SCMP_CMP_GE", US_SECCOMP_OP_GE},
        {"SCMP_CMP_GT", US_SECCOMP_OP_GT},
        {"SCMP_CMP_MASKED_EQ", US_SECCOMP_OP_MASKED_EQ},
};

/* ---- process ---- */

static int parse_console_size(yajl_val o, const struct jpath *p, void *out, struct us_error **err)
{
        struct us_oci_process *proc = out;
        TRY(ocij_u32(FIELD(o, p, "height"), F_REQ, &proc->console_height, NULL, err));
        TRY(ocij_u32(FIELD(o, p, "width"), F_REQ, &proc->console_width, NULL, err));
        return 0;
}

static int parse_user(yajl_val o, const struct jpath *p, void *out, struct us_error **err)
{
        struct us_oci_user *u = out;
        TRY(ocij_u32(FIELD(o, p, "uid"), F_REQ, &u->uid, NULL, err));
        TRY(ocij_u32(FIELD(o, p, "gid"), F_REQ, &u->gid, NULL, err));
        uint64_t umask = 0;
        TRY(ocij_u64(FIELD(o, p, "umask"), 0, 07777, &umask, &u->has_umask, err));
        u->umask = (uint32_t)umask;

        const struct jpath *gp = JP_KEY(p, "additionalGids");
        yajl_val a = NULL;
        TRY(ocij_array(ocij_member(o, "additionalGids"), gp, 0, &a, err));
        if (!a || a->u.array.len == 0)
                return 0;
        u->additional_gids = calloc(a->u.array.len, sizeof(uint32_t));
        if (!u->additional_gids)
                return ocij_oom(err);
        u->n_additional_gids = a->u.array.len;
        for (size_t i = 0; i < a->u.array.len; i++)
                TRY(ocij_u32(a->u.array.values[i], JP_IDX(gp, i), F_REQ, &u->additional_gids[i],
                             NULL, err));
        return 0;
}

static int get_cap_set(yajl_val v, const struct jpath *p, uint64_t *ret, struct us_error **err)
{
        yajl_val a = NULL;
        TRY(ocij_array(v, p, 0, &a, err));
        if (!a)
                return 0;
        for (size_t i = 0; i < a->u.array.len; i++) {
                const struct jpath *ep = JP_IDX(p, i);
                const char *name = NULL;
                TRY(ocij_cstr(a->u.array.values[i], ep, F_REQ, &name, err));
                cap_value_t cap;
                /* libcap also takes lower case and numbers; the spec only has CAP_ names. */
                if (strncmp(name, "CAP_", 4) != 0 || cap_from_name(name, &cap) < 0 || cap < 0 ||
                    cap > 63)
                        return ocij_error(err, ep, "unknown capability \"%.200s\"", name);
                *ret |= UINT64_C(1) << cap;
        }
        return 0;
}

static int parse_capabilities(yajl_val o, const struct jpath *p, void *out, struct us_error **err)
{
        struct us_oci_capabilities *c = out;
        TRY(get_cap_set(FIELD(o, p, "bounding"), &c->bounding, err));
        TRY(get_cap_set(FIELD(o, p, "effective"), &c->effective, err));
        TRY(get_cap_set(FIELD(o, p, "inheritable"), &c->inheritable, err));
        TRY(get_cap_set(FIELD(o, p, "permitted"), &c->permitted, err));
        TRY(get_cap_set(FIELD(o, p, "ambient"), &c->ambient, err));
        return 0;
}

static int parse_rlimit(yajl_val o, const struct jpath *p, void *out, struct us_error **err)
{
        struct us_oci_rlimit *rl = out;
        TRY(GET_ENUM(FIELD(o, p, "type"), F_REQ, rlimit_types, "rlimit type", &rl->resource, err));
        TRY(ocij_u64(FIELD(o, p, "soft"), F_REQ, UINT64_MAX, &rl->soft, NULL, err));
        TRY(ocij_u64(FIELD(o, p, "hard"), F_REQ, UINT64_MAX, &rl->hard, NULL, err));
        return 0;
}

static int parse_process(yajl_val o, const struct jpath *p, void *out, struct us_error **err)
{
        struct us_oci_process *proc = out;
        int r;

        TRY(ocij_bool(FIELD(o, p, "terminal"), 0, &proc->terminal, NULL, err));
        TRY(r = ocij_struct(FIELD(o, p, "consoleSize"), 0, parse_console_size, proc, err));
        proc->has_console_size = r > 0;
        TRY(ocij_struct(FIELD(o, p, "user"), 0, parse_user, &proc->user, err));
        TRY(ocij_strv(FIELD(o, p, "args"), F_REQ | F_NONEMPTY, &proc->args, err));
        TRY(ocij_strv(FIELD(o, p, "env"), 0, &proc->env, err));
        TRY(ocij_string(FIELD(o, p, "cwd"), F_REQ | F_ABS, &proc->cwd, err));
        TRY(r = ocij_struct(FIELD(o, p, "capabilities"), 0, parse_capabilities, &proc->capabilities,
                            err));
        proc->has_capabilities = r > 0;

        const struct jpath *rp = JP_KEY(p, "rlimits");
        TRY(GET_OBJECTS(VP(ocij_member(o, "rlimits"), rp), 0, parse_rlimit, proc->rlimits,
                        proc->n_rlimits, err));
        for (size_t i = 0; i < proc->n_rlimits; i++)
                for (size_t j = 0; j < i; j++)
                        if (proc->rlimits[i].resource == proc->rlimits[j].resource)
                                return ocij_error(err, JP_KEY(JP_IDX(rp, i), "type"),
                                                  "duplicate rlimit type \"%s\"",
                                                  ocij_enum_name(rlimit_types,
                                                                 US_ELEMENTSOF(rlimit_types),
                                                                 proc->rlimits[i].resource));

        TRY(ocij_bool(FIELD(o, p, "noNewPrivileges"), 0, &proc->no_new_privileges, NULL, err));
        TRY(ocij_int(FIELD(o, p, "oomScoreAdj"), 0, -1000, 1000, &proc->oom_score_adj,
                     &proc->has_oom_score_adj, err));
        TRY(ocij_string(FIELD(o, p, "apparmorProfile"), 0, &proc->apparmor_profile, err));
        TRY(ocij_string(FIELD(o, p, "selinuxLabel"), 0, &proc->selinux_label, err));
        return 0;
}

static void process_clear(struct us_oci_process *p)
{
        free(p->user.additional_gids);
        us_strv_free(p->args);
        us_strv_free(p->env);
        free(p->cwd);
        free(p->rlimits);
        free(p->apparmor_profile);
        free(p->selinux_label);
}

/* ---- root, mounts, hooks ---- */

static int parse_root(yajl_val o, const struct jpath *p, void *out, struct us_error **err)
{
        struct us_oci_spec *s = out;
        TRY(ocij_string(FIELD(o, p, "path"), F_REQ | F_NONEMPTY, &s->root_path, err));
        TRY(ocij_bool(FIELD(o, p, "readonly"), 0, &s->root_readonly, NULL, err));
        return 0;
}

static int parse_mount(yajl_val o, const struct jpath *p, void *out, struct us_error **err)
{
        struct us_oci_mount *m = out;
        TRY(ocij_string(FIELD(o, p, "destination"), F_REQ | F_ABS, &m->destination, err));
        TRY(ocij_string(FIELD(o, p, "type"), 0, &m->type, err));
        TRY(ocij_string(FIELD(o, p, "source"), 0, &m->source, err));
        TRY(ocij_strv(FIELD(o, p, "options"), 0, &m->options, err));
        return 0;
}

static int parse_hook(yajl_val o, const struct jpath *p, void *out, struct us_error **err)
{
        struct us_oci_hook *h = out;
        TRY(ocij_string(FIELD(o, p, "path"), F_REQ | F_ABS, &h->path, err));
        TRY(ocij_strv(FIELD(o, p, "args"), 0, &h->args, err));
        TRY(ocij_strv(FIELD(o, p, "env"), 0, &h->env, err));
        TRY(ocij_int(FIELD(o, p, "timeout"), 0, 1, INT_MAX, &h->timeout, &h->has_timeout, err));
        return 0;
}

static const struct {
        const char *key;
        size_t offset;
} hook_lists[] = {
        {"prestart", offsetof(struct us_oci_hooks, prestart)},
        {"createRuntime", offsetof(struct us_oci_hooks, create_runtime)},
        {"createContainer", offsetof(struct us_oci_hooks, create_container)},
        {"startContainer", offsetof(struct us_oci_hooks, start_container)},
        {"poststart", offsetof(struct us_oci_hooks, poststart)},
        {"poststop", offsetof(struct us_oci_hooks, poststop)},
};

static int parse_hooks(yajl_val o, const struct jpath *p, void *out, struct us_error **err)
{
        for (size_t i = 0; i < US_ELEMENTSOF(hook_lists); i++) {
                struct us_oci_hook_list *l =
                        (struct us_oci_hook_list *)((char *)out + hook_lists[i].offset);
                TRY(GET_OBJECTS(FIELD(o, p, hook_lists[i].key), 0, parse_hook, l->hooks, l->n_hooks,
                                err));
        }
        return 0;
}

/* ---- linux ---- */

static int parse_namespace(yajl_val o, const struct jpath *p, void *out, struct us_error **err)
{
        struct us_oci_namespace *ns = out;
        TRY(GET_ENUM(FIELD(o, p, "type"), F_REQ, namespace_types, "namespace type", &ns->type,
                     err));
        TRY(ocij_string(FIELD(o, p, "path"), F_ABS, &ns->path, err));
        return 0;
}

static int parse_id_mapping(yajl_val o, const struct jpath *p, void *out, struct us_error **err)
{
        struct us_oci_id_mapping *m = out;
        TRY(ocij_u32(FIELD(o, p, "containerID"), F_REQ, &m->container_id, NULL, err));
        TRY(ocij_u32(FIELD(o, p, "hostID"), F_REQ, &m->host_id, NULL, err));
        TRY(ocij_u32(FIELD(o, p, "size"), F_REQ, &m->size, NULL, err));
        return 0;
}

static int parse_device(yajl_val o, const struct jpath *p, void *out, struct us_error **err)
{
        struct us_oci_device *d = out;
        int type = 0;
        TRY(GET_ENUM(FIELD(o, p, "type"), F_REQ, device_types, "device type", &type, err));
        d->type = (char)type;
        TRY(ocij_string(FIELD(o, p, "path"), F_REQ | F_ABS, &d->path, err));
        TRY(ocij_i64(FIELD(o, p, "major"), type == 'p' ? 0 : F_REQ, 0, INT64_MAX, &d->major, NULL,
                     err));
        TRY(ocij_i64(FIELD(o, p, "minor"), type == 'p' ? 0 : F_REQ, 0, INT64_MAX, &d->minor, NULL,
                     err));
        TRY(ocij_u32(FIELD(o, p, "fileMode"), 0, &d->file_mode, &d->has_file_mode, err));
        TRY(ocij_u32(FIELD(o, p, "uid"), 0, &d->uid, &d->has_uid, err));
        TRY(ocij_u32(FIELD(o, p, "gid"), 0, &d->gid, &d->has_gid, err));
        return 0;
}

static int parse_device_rule(yajl_val o, const struct jpath *p, void *out, struct us_error **err)
{
        struct us_oci_device_rule *d = out;
        int type = 'a';
        d->major = -1;
        d->minor = -1;
        TRY(ocij_bool(FIELD(o, p, "allow"), F_REQ, &d->allow, NULL, err));
        TRY(GET_ENUM(FIELD(o, p, "type"), 0, device_rule_types, "device type", &type, err));
        d->type = (char)type;
        TRY(ocij_i64(FIELD(o, p, "major"), 0, -1, INT64_MAX, &d->major, NULL, err));
        TRY(ocij_i64(FIELD(o, p, "minor"), 0, -1, INT64_MAX, &d->minor, NULL, err));
        TRY(ocij_string(FIELD(o, p, "access"), 0, &d->access, err));
        if (d->access && strspn(d->access, "rwm") != strlen(d->access))
                return ocij_error(err, JP_KEY(p, "access"), "invalid device access \"%.16s\"",
                                  d->access);
        return 0;
}

static int parse_memory(yajl_val o, const struct jpath *p, void *out, struct us_error **err)
{
        struct us_oci_memory *m = out;
        TRY(ocij_i64(FIELD(o, p, "limit"), 0, -1, INT64_MAX, &m->limit, &m->has_limit, err));
        TRY(ocij_i64(FIELD(o, p, "reservation"), 0, -1, INT64_MAX, &m->reservation,
                     &m->has_reservation, err));
        TRY(ocij_i64(FIELD(o, p, "swap"), 0, -1, INT64_MAX, &m->swap, &m->has_swap, err));
        TRY(ocij_i64(FIELD(o, p, "kernel"), 0, -1, INT64_MAX, &m->kernel, &m->has_kernel, err));
        TRY(ocij_i64(FIELD(o, p, "kernelTCP"), 0, -1, INT64_MAX, &m->kernel_tcp, &m->has_kernel_tcp,
                     err));
        TRY(ocij_u64(FIELD(o, p, "swappiness"), 0, UINT64_MAX, &m->swappiness, &m->has_swappiness,
                     err));
        TRY(ocij_bool(FIELD(o, p, "disableOOMKiller"), 0, &m->disable_oom_killer,
                      &m->has_disable_oom_killer, err));
        return 0;
}

static int parse_cpu(yajl_val o, const struct jpath *p, void *out, struct us_error **err)
{
        struct us_oci_cpu *c = out;
        TRY(ocij_u64(FIELD(o, p, "shares"), 0, UINT64_MAX, &c->shares, &c->has_shares, err));
        TRY(ocij_i64(FIELD(o, p, "quota"), 0, INT64_MIN, INT64_MAX, &c->quota, &c->has_quota, err));
        TRY(ocij_u64(FIELD(o, p, "period"), 0, UINT64_MAX, &c->period, &c->has_period, err));
        TRY(ocij_i64(FIELD(o, p, "realtimeRuntime"), 0, INT64_MIN, INT64_MAX, &c->realtime_runtime,
                     &c->has_realtime_runtime, err));
        TRY(ocij_u64(FIELD(o, p, "realtimePeriod"), 0, UINT64_MAX, &c->realtime_period,
                     &c->has_realtime_period, err));
        TRY(ocij_string(FIELD(o, p, "cpus"), 0, &c->cpus, err));
        TRY(ocij_string(FIELD(o, p, "mems"), 0, &c->mems, err));
        return 0;
}

static int parse_pids(yajl_val o, const struct jpath *p, void *out, struct us_error **err)
{
        struct us_oci_resources *r = out;
        return ocij_i64(FIELD(o, p, "limit"), F_REQ, INT64_MIN, INT64_MAX, &r->pids_limit,
                        &r->has_pids_limit, err);
}

static int parse_blkio(yajl_val o, const struct jpath *p, void *out, struct us_error **err)
{
        struct us_oci_resources *r = out;
        uint64_t w = 0;
        TRY(ocij_u64(FIELD(o, p, "weight"), 0, 1000, &w, &r->has_blkio_weight, err));
        r->blkio_weight = (uint16_t)w;
        return 0;
}

static int parse_resources(yajl_val o, const struct jpath *p, void *out, struct us_error **err)
{
        struct us_oci_resources *r = out;
        TRY(GET_OBJECTS(FIELD(o, p, "devices"), 0, parse_device_rule, r->devices, r->n_devices,
                        err));
        TRY(ocij_struct(FIELD(o, p, "memory"), 0, parse_memory, &r->memory, err));
        TRY(ocij_struct(FIELD(o, p, "cpu"), 0, parse_cpu, &r->cpu, err));
        TRY(ocij_struct(FIELD(o, p, "pids"), 0, parse_pids, r, err));
        TRY(ocij_struct(FIELD(o, p, "blockIO"), 0, parse_blkio, r, err));
        TRY(ocij_kv(FIELD(o, p, "unified"), 0, &r->unified, &r->n_unified, err));
        return 0;
}

static void resources_clear(struct us_oci_resources *r)
{
        for (size_t i = 0; i < r->n_devices; i++)
                free(r->devices[i].access);
        free(r->devices);
        free(r->cpu.cpus);
        free(r->cpu.mems);
        for (size_t i = 0; i < r->n_unified; i++) {
                free(r->unified[i].key);
                free(r->unified[i].value);
        }
        free(r->unified);
}

static int parse_seccomp_arg(yajl_val o, const struct jpath *p, void *out, struct us_error **err)
{
        struct us_oci_seccomp_arg *a = out;
        int op = 0;
        TRY(ocij_u32(FIELD(o, p, "index"), F_REQ, &a->index, NULL, err));
        if (a->index > 5)
                return ocij_error(err, JP_KEY(p, "index"), "out of range (0..5), got %u", a->index);
        TRY(ocij_u64(FIELD(o, p, "value"), F_REQ, UINT64_MAX, &a->value, NULL, err));
        TRY(ocij_u64(FIELD(o, p, "valueTwo"), 0, UINT64_MAX, &a->value_two, NULL, err));
        TRY(GET_ENUM(FIELD(o, p, "op"), F_REQ, seccomp_ops, "seccomp operator", &op, err));
        a->op = (enum us_oci_seccomp_op)op;
        return 0;
}

static int parse_syscall(yajl_val o, const struct jpath *p, void *out, struct us_error **err)
{
        struct us_oci_seccomp_rule *rule = out;
        int action = 0;
        TRY(ocij_strv(FIELD(o, p, "names"), F_REQ | F_NONEMPTY, &rule->names, err));
        TRY(GET_ENUM(FIELD(o, p, "action"), F_REQ, seccomp_actions, "seccomp action", &action,
                     err));
        rule->action = (enum us_oci_seccomp_action)action;
        TRY(ocij_u32(FIELD(o, p, "errnoRet"), 0, &rule->errno_ret, &rule->has_errno_ret, err));
        TRY(GET_OBJECTS(FIELD(o, p, "args"), 0, parse_seccomp_arg, rule->args, rule->n_args, err));
        return 0;
}

static int parse_seccomp(yajl_val o, const struct jpath *p, void *out, struct us_error **err)
{
        struct us_oci_seccomp *s = out;
        int action = 0;
        TRY(GET_ENUM(FIELD(o, p, "defaultAction"), F_REQ, seccomp_actions, "seccomp action",
                     &action, err));
        s->default_action = (enum us_oci_seccomp_action)action;
        TRY(ocij_u32(FIELD(o, p, "defaultErrnoRet"), 0, &s->default_errno_ret,
                     &s->has_default_errno_ret, err));
        TRY(ocij_strv(FIELD(o, p, "architectures"), 0, &s->architectures, err));
        TRY(ocij_strv(FIELD(o, p, "flags"), 0, &s->flags, err));
        TRY(GET_OBJECTS(FIELD(o, p, "syscalls"), 0, parse_syscall, s->rules, s->n_rules, err));
        return 0;
}

static void seccomp_free(struct us_oci_seccomp *s)
{
        if (!s)
                return;
        us_strv_free(s->architectures);
        us_strv_free(s->flags);
        for (size_t i = 0; i < s->n_rules; i++) {
                us_strv_free(s->rules[i].names);
                free(s->rules[i].args);
        }
        free(s->rules);
        free(s);
}

static int parse_linux(yajl_val o, const struct jpath *p, void *out, struct us_error **err)
{
        struct us_oci_linux *l = out;
        int r;

        const struct jpath *np = JP_KEY(p, "namespaces");
        TRY(GET_OBJECTS(VP(ocij_member(o, "namespaces"), np), 0, parse_namespace, l->namespaces,
                        l->n_namespaces, err));
        for (size_t i = 0; i < l->n_namespaces; i++)
                for (size_t j = 0; j < i; j++)
                        if (l->namespaces[i].type == l->namespaces[j].type)
                                return ocij_error(err, JP_KEY(JP_IDX(np, i), "type"),
                                                  "duplicate namespace type \"%s\"",
                                                  ocij_enum_name(namespace_types,
                                                                 US_ELEMENTSOF(namespace_types),
                                                                 l->namespaces[i].type));

        TRY(GET_OBJECTS(FIELD(o, p, "uidMappings"), 0, parse_id_mapping, l->uid_mappings,
                        l->n_uid_mappings, err));
        TRY(GET_OBJECTS(FIELD(o, p, "gidMappings"), 0, parse_id_mapping, l->gid_mappings,
                        l->n_gid_mappings, err));
        TRY(GET_OBJECTS(FIELD(o, p, "devices"), 0, parse_device, l->devices, l->n_devices, err));
        TRY(ocij_string(FIELD(o, p, "cgroupsPath"), 0, &l->cgroups_path, err));
        TRY(r = ocij_struct(FIELD(o, p, "resources"), 0, parse_resources, &l->resources, err));
        l->has_resources = r > 0;
        TRY(ocij_kv(FIELD(o, p, "sysctl"), 0, &l->sysctl, &l->n_sysctl, err));
        TRY(ocij_strv(FIELD(o, p, "maskedPaths"), F_ABS, &l->masked_paths, err));
        TRY(ocij_strv(FIELD(o, p, "readonlyPaths"), F_ABS, &l->readonly_paths, err));
        int ignored;
        TRY(GET_ENUM(FIELD(o, p, "rootfsPropagation"), 0, propagations, "rootfs propagation",
                     &ignored, err));
        TRY(ocij_string(FIELD(o, p, "rootfsPropagation"), 0, &l->rootfs_propagation, err));
        TRY(ocij_string(FIELD(o, p, "mountLabel"), 0, &l->mount_label, err));

        if (ocij_present(ocij_member(o, "seccomp"))) {
                l->seccomp = calloc(1, sizeof(*l->seccomp));
                if (!l->seccomp)
                        return ocij_oom(err);
                TRY(ocij_struct(FIELD(o, p, "seccomp"), 0, parse_seccomp, l->seccomp, err));
        }
        return 0;
}

static void linux_clear(struct us_oci_linux *l)
{
        for (size_t i = 0; i < l->n_namespaces; i++)
                free(l->namespaces[i].path);
        free(l->namespaces);
        free(l->uid_mappings);
        free(l->gid_mappings);
        for (size_t i = 0; i < l->n_devices; i++)
                free(l->devices[i].path);
        free(l->devices);
        free(l->cgroups_path);
        resources_clear(&l->resources);
        for (size_t i = 0; i < l->n_sysctl; i++) {
                free(l->sysctl[i].key);
                free(l->sysctl[i].value);
        }
        free(l->sysctl);
        us_strv_free(l->masked_paths);
        us_strv_free(l->readonly_paths);
        free(l->rootfs_propagation);
        free(l->mount_label);
        seccomp_free(l->seccomp);
}

/* ---- the spec ---- */

static int parse_spec(yajl_val o, const struct jpath *p, void *out, struct us_error **err)
{
        struct us_oci_spec *s = out;
        TRY(ocij_string(FIELD(o, p, "ociVersion"), F_REQ, &s->oci_version, err));
        if (ocij_present(ocij_member(o, "process"))) {
                s->process = calloc(1, sizeof(*s->process));
                if (!s->process)
                        return ocij_oom(err);
                TRY(ocij_struct(FIELD(o, p, "process"), 0, parse_process, s->process, err));
        }
        TRY(ocij_struct(FIELD(o, p, "root"), 0, parse_root, s, err));
        TRY(ocij_string(FIELD(o, p, "hostname"), 0, &s->hostname, err));
        TRY(ocij_string(FIELD(o, p, "domainname"), 0, &s->domainname, err));
        TRY(GET_OBJECTS(FIELD(o, p, "mounts"), 0, parse_mount, s->mounts, s->n_mounts, err));
        TRY(ocij_struct(FIELD(o, p, "hooks"), 0, parse_hooks, &s->hooks, err));
        TRY(ocij_kv(FIELD(o, p, "annotations"), 0, &s->annotations, &s->n_annotations, err));
        TRY(ocij_struct(FIELD(o, p, "linux"), 0, parse_linux, &s->linux_, err));
        return 0;
}

static void hook_list_clear(struct us_oci_hook_list *l)
{
        for (size_t i = 0; i < l->n_hooks; i++) {
                free(l->hooks[i].path);
                us_strv_free(l->hooks[i].args);
                us_strv_free(l->hooks[i].env);
        }
        free(l->hooks);
}

struct us_oci_spec *us_oci_spec_free(struct us_oci_spec *s)
{
        if (!s)
                return NULL;
        free(s->oci_version);
        us_oci_process_free(s->process);
        free(s->root_path);
        free(s->hostname);
        free(s->domainname);
        for (size_t i = 0; i < s->n_mounts; i++) {
                free(s->mounts[i].destination);
                free(s->mounts[i].type);
                free(s->mounts[i].source);
                us_strv_free(s->mounts[i].options);
        }
        free(s->mounts);
        for (size_t i = 0; i < US_ELEMENTSOF(hook_lists); i++)
                hook_list_clear(
                        (struct us_oci_hook_list *)((char *)&s->hooks + hook_lists[i].offset));
        for (size_t i = 0; i < s->n_annotations; i++) {
                free(s->annotations[i].key);
                free(s->annotations[i].value);
        }
        free(s->annotations);
        linux_clear(&s->linux_);
        free(s);
        return NULL;
}

struct us_oci_process *us_oci_process_free(struct us_oci_process *p)
{
        if (p) {
                process_clear(p);
                free(p);
        }
        return NULL;
}

struct us_oci_resources *us_oci_resources_free(struct us_oci_resources *r)
{
        if (r) {
                resources_clear(r);
                free(r);
        }
        return NULL;
}

int us_oci_spec_parse(const char *json, size_t len, struct us_oci_spec **ret, struct us_error **err)
{
        struct us_oci_spec *s = calloc(1, sizeof(*s));
        if (!s)
                return ocij_oom(err);
        int r = ocij_parse_document(json, len, parse_spec, s, err);
        if (r < 0) {
                us_oci_spec_free(s);
                return us_error_wrap(err, r, "invalid config.json");
        }
        *ret = s;
        return 0;
}

int us_oci_process_parse(const char *json, size_t len, struct us_oci_process **ret,
                         struct us_error **err)
{
        struct us_oci_process *p = calloc(1, sizeof(*p));
        if (!p)
                return ocij_oom(err);
        int r = ocij_parse_document(json, len, parse_process, p, err);
        if (r < 0) {
                us_oci_process_free(p);
                return us_error_wrap(err, r, "invalid process spec");
        }
        *ret = p;
        return 0;
}

int us_oci_resources_parse(const char *json, size_t len, struct us_oci_resources **ret,
                           struct us_error **err)
{
        struct us_oci_resources *res = calloc(1, sizeof(*res));
        if (!res)
                return ocij_oom(err);
        int r = ocij_parse_document(json, len, parse_resources, res, err);
        if (r < 0) {
                us_oci_resources_free(res);
                return us_error_wrap(err, r, "invalid resources");
        }
        *ret = res;
        return 0;
}

int us_oci_spec_read(const char *bundle, char **ret_json, size_t *ret_len, struct us_error **err)
{
        _cleanup_free_ char *path = NULL;
        if (asprintf(&path, "%s/config.json", bundle) < 0)
                return ocij_oom(err);
        /* O_NONBLOCK: a FIFO at the path must fail the S_ISREG check below,
         * not block the open. */
        _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
        if (fd < 0)
                return us_errorf(err, errno, "open %s", path);
        struct stat st;
        if (fstat(fd, &st) < 0)
                return us_errorf(err, errno, "stat %s", path);
        if (!S_ISREG(st.st_mode))
                return us_error_msg(err, EINVAL, "%s: not a regular file", path);
        if (st.st_size > (off_t)US_OCI_MAX_CONFIG_SIZE)
                return us_error_msg(err, E2BIG, "%s: too large (%jd bytes, max %u)", path,
                                    (intmax_t)st.st_size, (unsigned)US_OCI_MAX_CONFIG_SIZE);

        /* Read one byte more than allowed to notice a file that grew. */
        size_t cap = (size_t)st.st_size + 1, len = 0;
        _cleanup_free_ char *buf = malloc(cap);
        if (!buf)
                return ocij_oom(err);
        for (;;) {
                if (len == cap) {
                        if (cap > US_OCI_MAX_CONFIG_SIZE)
                                return us_error_msg(err, E2BIG, "%s: too large (max %u bytes)",
                                                    path, (unsigned)US_OCI_MAX_CONFIG_SIZE);
                        size_t ncap = cap * 2 > US_OCI_MAX_CONFIG_SIZE + 1
                                              ? US_OCI_MAX_CONFIG_SIZE + 1
                                              : cap * 2;
                        char *nbuf = realloc(buf, ncap);
                        if (!nbuf)
                                return ocij_oom(err);
                        buf = nbuf;
                        cap = ncap;
                }
                ssize_t n = read(fd, buf + len, cap - len);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0)
                        return us_errorf(err, errno, "read %s", path);
                if (n == 0)
                        break;
                len += (size_t)n;
        }
        *ret_json = TAKE_PTR(buf);
        *ret_len = len;
        return 0;
}

int us_oci_spec_load(const char *bundle, struct us_oci_spec **ret, struct us_error **err)
{
        _cleanup_free_ char *json = NULL;
        size_t len = 0;
        int r = us_oci_spec_read(bundle, &json, &len, err);
        return r < 0 ? r : us_oci_spec_parse(json, len, ret, err);
}

const char *us_oci_spec_annotation(const struct us_oci_spec *spec, const char *key)
{
        if (!spec || !key)
                return NULL;
        for (size_t i = spec->n_annotations; i-- > 0;) /* last duplicate wins, as in Go */
                if (strcmp(spec->annotations[i].key, key) == 0)
                        return spec->annotations[i].value;
        return NULL;
}

int us_oci_sysctl_namespace(const char *key)
{
        static const char *const ipc_keys[] = {
                "kernel.msgmax", "kernel.msgmnb", "kernel.msgmni", "kernel.sem",
                "kernel.shmall", "kernel.shmmax", "kernel.shmmni", "kernel.shm_rmid_forced"};
        if (!key)
                return 0;
        for (size_t i = 0; i < US_ELEMENTSOF(ipc_keys); i++)
                if (strcmp(key, ipc_keys[i]) == 0)
                        return CLONE_NEWIPC;
        if (strncmp(key, "fs.mqueue.", strlen("fs.mqueue.")) == 0)
                return CLONE_NEWIPC;
        if (strncmp(key, "net.", strlen("net.")) == 0)
                return CLONE_NEWNET;
        if (strcmp(key, "kernel.hostname") == 0 || strcmp(key, "kernel.domainname") == 0)
                return CLONE_NEWUTS;
        return 0;
}
