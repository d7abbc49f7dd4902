/* SPDX-License-Identifier: Apache-2.0 */
/* The container engine's public API: create, start, kill, pause, update,
 * destroy. The child side lives in engine-init.c. */
#include "engine-internal.h"

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cgroup/cgroup-devices.h"
#include "base/cleanup.h"
#include "base/id.h"

#define DEFAULT_CGROUP_ROOT   "/sys/fs/cgroup"
#define DEFAULT_CGROUP_PREFIX "/unishim/"

static char *cgroup_path_for(const struct us_oci_spec *spec, const char *id)
{
        char *p = NULL;
        if (spec && spec->linux_.cgroups_path && *spec->linux_.cgroups_path)
                return strdup(spec->linux_.cgroups_path);
        if (asprintf(&p, DEFAULT_CGROUP_PREFIX "%s", id) < 0)
                return NULL;
        return p;
}

/* As runc does (libcontainer/specconv AllowedDevices): whatever the spec's
 * device rules say, the devices every container gets stay usable. Appended
 * after the spec's rules, so they win over a leading "deny all". */
static const struct {
        char type;
        int64_t major, minor;
        const char *access;
} default_allowed_devices[] = {
        {'c', -1, -1, "m"}, {'b', -1, -1, "m"},    {'c', 1, 3, "rwm"}, {'c', 1, 8, "rwm"},
        {'c', 1, 7, "rwm"}, {'c', 5, 0, "rwm"},    {'c', 1, 5, "rwm"}, {'c', 1, 9, "rwm"},
        {'c', 5, 1, "rwm"}, {'c', 136, -1, "rwm"}, {'c', 5, 2, "rwm"},
};

/* The spec's device rules followed by the default ones (malloc'ed). */
static struct us_oci_device_rule *with_default_devices(const struct us_oci_device_rule *spec,
                                                       size_t n_spec, size_t *ret_n)
{
        size_t n = n_spec + US_ELEMENTSOF(default_allowed_devices);
        struct us_oci_device_rule *rules = calloc(n, sizeof(*rules));
        if (!rules)
                return NULL;
        for (size_t i = 0; i < n_spec; i++)
                rules[i] = spec[i];
        for (size_t i = 0; i < US_ELEMENTSOF(default_allowed_devices); i++) {
                struct us_oci_device_rule *r = &rules[n_spec + i];
                r->allow = true;
                r->type = default_allowed_devices[i].type;
                r->major = default_allowed_devices[i].major;
                r->minor = default_allowed_devices[i].minor;
                r->access = (char *)default_allowed_devices[i].access;
        }
        *ret_n = n;
        return rules;
}

/* Applies res plus the default device rules. */
static int apply_resources(struct us_cgroup *cg, const struct us_oci_resources *res,
                           struct us_error **err)
{
        size_t n = 0;
        _cleanup_free_ struct us_oci_device_rule *rules =
                with_default_devices(res->devices, res->n_devices, &n);
        if (!rules)
                return us_errorf(err, ENOMEM, "device rules");
        struct us_oci_resources copy = *res;
        copy.devices = rules;
        copy.n_devices = n;
        return us_cgroup_apply(cg, &copy, err);
}

int us_container_prewarm(const char *cgroup_root, const char *cgroup_parent, struct us_error **err)
{
        const char *root = cgroup_root ? cgroup_root : DEFAULT_CGROUP_ROOT;
        _cleanup_(us_cgroup_layout_free_cleanupp) struct us_cgroup_layout *l = NULL;
        int r = us_cgroup_layout_detect(root, &l, err);
        if (r < 0)
                return us_error_wrap(err, r, "prewarm: detect cgroup layout");
        _cleanup_(us_cgroup_free_cleanupp) struct us_cgroup *cg = NULL;
        if ((r = us_cgroup_create_in(l, cgroup_parent, &cg, err)) < 0 ||
            (r = us_cgroup_enable_children(cg, err)) < 0)
                return us_error_wrap(err, r, "prewarm");
        if (us_cgroup_layout_mode(l) != US_CGROUP_V2)
                return 0;
        /* What containerd's CRI puts in every unprivileged container's spec. */
        const struct us_oci_device_rule deny_all = {
                .allow = false, .type = 'a', .major = -1, .minor = -1, .access = (char *)"rwm"};
        size_t n = 0;
        _cleanup_free_ struct us_oci_device_rule *rules = with_default_devices(&deny_all, 1, &n);
        if (!rules)
                return us_errorf(err, ENOMEM, "device rules");
        return us_cg_devices_preload(rules, n, err);
}

static bool spec_has_ns(const struct us_oci_spec *spec, int type)
{
        for (size_t i = 0; i < spec->linux_.n_namespaces; i++)
                if (spec->linux_.namespaces[i].type == type)
                        return true;
        return false;
}

/* Kills and reaps what a failed create or exec left: the cloned child, and
 * init when an intermediate forked it (init is then our child too, as we
 * are its subreaper, once the intermediate has been reaped). */
static void reap_failed(pid_t child, bool child_reaped, pid_t init)
{
        if (init > 0)
                (void)kill(init, SIGKILL);
        if (child > 0 && !child_reaped) {
                (void)kill(child, SIGKILL);
                (void)engine_wait_pid(child);
        }
        if (init > 0 && init != child)
                (void)engine_wait_pid(init);
}

/* The parent's side of create, after clone. Returns 0 when the child is
 * ready (waiting for start). */
static int create_handshake(const struct us_container_config *cfg, struct us_cgroup *cg,
                            bool in_cgroup, int sync_fd, pid_t child, bool *child_reaped,
                            pid_t *init_pid, int *pty_master, struct us_error **err)
{
        const struct us_oci_spec *spec = cfg->spec;
        _cleanup_free_ struct engine_msg *m = malloc(sizeof(*m));
        int r;

        if (!m)
                return us_errorf(err, ENOMEM, "allocate");
        if (!in_cgroup && (r = us_cgroup_enter(cg, child, err)) < 0)
                return us_error_wrap(err, r, "enter cgroup");
        if ((r = engine_send(sync_fd, ENGINE_MSG_GO, 0, 0, NULL, -1)) < 0)
                return us_errorf(err, -r, "signal init");

        for (;;) {
                int fd = -1;
                r = engine_recv(sync_fd, m, &fd);
                if (r < 0)
                        return us_errorf(err, -r, "read from init");
                if (r == 0)
                        return us_error_msg(err, EPIPE, "init exited before it was ready");
                switch ((enum engine_msg_type)m->type) {
                case ENGINE_MSG_ERROR:
                        us_close(fd);
                        return us_error_msg(err, m->code > 0 ? m->code : EIO, "%s", m->text);
                case ENGINE_MSG_USERMAP:
                        if ((r = engine_write_id_maps(child, spec, err)) < 0)
                                return us_error_wrap(err, r, "write id maps");
                        if ((r = engine_send(sync_fd, ENGINE_MSG_ACK, 0, 0, NULL, -1)) < 0)
                                return us_errorf(err, -r, "signal init");
                        break;
                case ENGINE_MSG_PID: {
                        *init_pid = (pid_t)m->value;
                        int status = engine_wait_pid(child);
                        *child_reaped = true;
                        if (status < 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
                                return us_error_msg(err, ECHILD,
                                                    "intermediate process failed (status %d)",
                                                    status);
                        if ((r = engine_send(sync_fd, ENGINE_MSG_GO, 0, 0, NULL, -1)) < 0)
                                return us_errorf(err, -r, "signal init");
                        break;
                }
                case ENGINE_MSG_HOOKS: {
                        _cleanup_free_ char *state = engine_state_json(
                                cfg->id, "creating", *init_pid, cfg->bundle, spec);
                        if (!state)
                                return us_errorf(err, ENOMEM, "state json");
                        if ((r = engine_hooks_run(&spec->hooks.prestart, "prestart", state, err)) <
                                    0 ||
                            (r = engine_hooks_run(&spec->hooks.create_runtime, "createRuntime",
                                                  state, err)) < 0)
                                return r;
                        if ((r = engine_send(sync_fd, ENGINE_MSG_ACK, 0, 0, state, -1)) < 0)
                                return us_errorf(err, -r, "signal init");
                        break;
                }
                case ENGINE_MSG_PTY:
                        if (fd < 0)
                                return us_error_msg(err, EBADMSG, "init sent no pty master");
                        us_close(*pty_master);
                        *pty_master = fd;
                        break;
                case ENGINE_MSG_READY:
                        us_close(fd);
                        return 0;
                case ENGINE_MSG_GO:
                case ENGINE_MSG_ACK:
                case ENGINE_MSG_START:
                default:
                        us_close(fd);
                        return us_error_msg(err, EBADMSG, "unexpected message %u from init",
                                            m->type);
                }
        }
}

int us_container_create(const struct us_container_config *cfg, struct us_container **ret,
                        int *ret_pty_master, struct us_error **err)
{
        const char *id = cfg ? cfg->id : NULL;
        int r;

        if (!cfg || !us_id_valid(cfg->id))
                return us_error_msg(err, EINVAL, "create container: invalid id %s",
                                    id ? id : "(null)");
        if (!cfg->spec || !cfg->spec->process || !cfg->spec->process->args ||
            !cfg->spec->process->args[0])
                return us_error_msg(err, EINVAL, "create container %s: spec has no process.args",
                                    id);
        if (!cfg->rootfs || cfg->rootfs[0] != '/' || !cfg->bundle)
                return us_error_msg(err, EINVAL,
                                    "create container %s: rootfs and bundle must be absolute", id);
        struct us_oci_spec *spec = cfg->spec;
        if (!spec_has_ns(spec, CLONE_NEWNS))
                return us_error_msg(err, EINVAL,
                                    "create container %s: a mount namespace is required", id);

        struct engine_init_ctx ctx = {
                .cfg = cfg,
                .spec = spec,
                .apparmor_enabled = engine_apparmor_enabled(),
                .cap_last_cap = engine_read_cap_last_cap(),
                .has_ipc_ns = spec_has_ns(spec, CLONE_NEWIPC),
                .has_net_ns = spec_has_ns(spec, CLONE_NEWNET),
                .has_uts_ns = spec_has_ns(spec, CLONE_NEWUTS),
                .in_userns = spec_has_ns(spec, CLONE_NEWUSER),
        };
        _cleanup_free_ char *cgpath = cgroup_path_for(spec, cfg->id);
        if (!cgpath)
                return us_errorf(err, ENOMEM, "create container %s", id);
        if ((r = engine_ns_plan_from_spec(spec, &ctx.ns, err)) < 0)
                return us_error_wrap(err, r, "create container %s", id);

        struct us_cgroup *cg = NULL;
        const char *cgroot = cfg->cgroup_root ? cfg->cgroup_root : DEFAULT_CGROUP_ROOT;
        if ((r = us_cgroup_create(cgroot, cgpath, &cg, err)) < 0) {
                engine_ns_plan_close(&ctx.ns);
                return us_error_wrap(err, r, "create container %s: create cgroup %s", id, cgpath);
        }
        ctx.cg = cg;
        struct us_oci_resources no_resources = {0};
        if ((r = apply_resources(
                     cg, spec->linux_.has_resources ? &spec->linux_.resources : &no_resources,
                     err)) < 0) {
                engine_ns_plan_close(&ctx.ns);
                (void)us_cgroup_destroy(cg, NULL);
                us_cgroup_free(cg);
                return us_error_wrap(err, r, "create container %s: apply cgroup resources", id);
        }

        int sv[2];
        if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0) {
                r = us_errorf(err, errno, "create container %s: socketpair", id);
                engine_ns_plan_close(&ctx.ns);
                (void)us_cgroup_destroy(cg, NULL);
                us_cgroup_free(cg);
                return r;
        }
        bool in_cgroup = false;
        int cgfd = us_cgroup_clone_fd(cg);
        pid_t child = engine_clone(ctx.ns.clone_flags, cgfd, &in_cgroup);
        if (child == 0) {
                us_close(sv[0]);
                ctx.sync_fd = sv[1];
                engine_init_main(&ctx);
        }
        int clone_errno = errno;
        us_close(cgfd);
        us_close(sv[1]);
        engine_ns_plan_close(&ctx.ns);
        _cleanup_close_ int sync_fd = sv[0];
        if (child < 0) {
                r = us_errorf(err, clone_errno, "create container %s: clone", id);
                (void)us_cgroup_destroy(cg, NULL);
                us_cgroup_free(cg);
                return r;
        }

        pid_t init_pid = child;
        bool child_reaped = false;
        int pty = -1;
        r = create_handshake(cfg, cg, in_cgroup, sync_fd, child, &child_reaped, &init_pid, &pty,
                             err);
        struct us_container *c = NULL;
        if (r >= 0 && !(c = calloc(1, sizeof(*c))))
                r = us_errorf(err, ENOMEM, "allocate");
        if (r >= 0) {
                c->id = strdup(cfg->id);
                c->bundle = strdup(cfg->bundle);
                c->rootfs = strdup(cfg->rootfs);
                if (!c->id || !c->bundle || !c->rootfs)
                        r = us_errorf(err, ENOMEM, "allocate");
        }
        if (r >= 0 && spec->process->terminal && pty < 0)
                r = us_error_msg(err, EBADMSG, "init sent no pty master");
        if (r < 0) {
                if (c) {
                        free(c->id);
                        free(c->bundle);
                        free(c->rootfs);
                        free(c);
                }
                us_close(pty);
                sync_fd = us_close(sync_fd);
                reap_failed(child, child_reaped, init_pid);
                (void)us_cgroup_destroy(cg, NULL);
                us_cgroup_free(cg);
                return us_error_wrap(err, r, "create container %s", id);
        }
        c->spec = spec;
        c->cg = cg;
        c->pid = init_pid;
        c->sync_fd = TAKE_FD(sync_fd);
        c->apparmor_enabled = ctx.apparmor_enabled;
        c->cap_last_cap = ctx.cap_last_cap;
        c->loop = cfg->loop;
        us_signal_hold_init(&c->hold);
        *ret = c;
        if (ret_pty_master)
                *ret_pty_master = pty;
        else
                us_close(pty);
        return 0;
}

pid_t us_container_pid(const struct us_container *c)
{
        return c ? c->pid : -1;
}

const struct us_oci_spec *us_container_spec(const struct us_container *c)
{
        return c ? c->spec : NULL;
}

struct us_cgroup *us_container_cgroup(struct us_container *c)
{
        return c ? c->cg : NULL;
}

int us_container_start(struct us_container *c, struct us_error **err)
{
        int r;
        if (c->started || c->sync_fd < 0)
                return us_error_msg(err, EALREADY, "start container %s: already started", c->id);
        _cleanup_free_ char *state = NULL;
        if (engine_hooks_any(&c->spec->hooks.start_container)) {
                state = engine_state_json(c->id, "created", c->pid, c->bundle, c->spec);
                if (!state)
                        return us_errorf(err, ENOMEM, "start container %s", c->id);
        }
        r = engine_send(c->sync_fd, ENGINE_MSG_START, 0, 0, state, -1);
        if (r < 0)
                return us_errorf(err, -r, "start container %s", c->id);
        c->started = true;

        /* The sync socket is close-on-exec in init: EOF means execve worked. */
        _cleanup_free_ struct engine_msg *m = malloc(sizeof(*m));
        if (!m)
                return us_errorf(err, ENOMEM, "start container %s", c->id);
        r = engine_recv(c->sync_fd, m, NULL);
        c->sync_fd = us_close(c->sync_fd);
        if (r < 0)
                return us_errorf(err, -r, "start container %s: read from init", c->id);
        if (r > 0) {
                if (m->type == ENGINE_MSG_ERROR)
                        return us_error_msg(err, m->code > 0 ? m->code : EIO,
                                            "start container %s: %s", c->id, m->text);
                return us_error_msg(err, EBADMSG, "start container %s: unexpected message %u",
                                    c->id, m->type);
        }
        if (engine_hooks_any(&c->spec->hooks.poststart)) {
                free(state);
                state = engine_state_json(c->id, "running", c->pid, c->bundle, c->spec);
                /* The spec says a failing poststart hook only warrants a
                 * warning; the library does not log, so it is ignored. */
                if (state)
                        (void)engine_hooks_run(&c->spec->hooks.poststart, "poststart", state, NULL);
        }
        return 0;
}

int us_container_kill(struct us_container *c, int sig, bool all, struct us_error **err)
{
        int r;
        if (all) {
                r = us_cgroup_kill_all(c->cg, sig, err);
                if (r < 0)
                        return us_error_wrap(err, r, "kill container %s", c->id);
                return 0;
        }
        if (c->pid <= 0)
                return us_error_msg(err, ESRCH, "kill container %s init: no pid", c->id);
        /* Before the start the signal is for the engine's waiting init,
         * which takes it as it is. */
        if (c->loop && c->started) {
                r = us_signal_send(&c->hold, c->loop, c->pid, sig, err);
                return r < 0 ? us_error_wrap(err, r, "kill container %s init", c->id) : 0;
        }
        if (kill(c->pid, sig) < 0)
                return us_errorf(err, errno, "kill container %s init (pid %d) with signal %d",
                                 c->id, (int)c->pid, sig);
        return 0;
}

int us_container_pause(struct us_container *c, struct us_error **err)
{
        int r = us_cgroup_freeze(c->cg, true, err);
        return r < 0 ? us_error_wrap(err, r, "pause container %s", c->id) : 0;
}

int us_container_resume(struct us_container *c, struct us_error **err)
{
        int r = us_cgroup_freeze(c->cg, false, err);
        return r < 0 ? us_error_wrap(err, r, "resume container %s", c->id) : 0;
}

int us_container_update(struct us_container *c, const struct us_oci_resources *res,
                        struct us_error **err)
{
        /* An update that rewrites device rules keeps the defaults too. */
        int r = res->n_devices > 0 ? apply_resources(c->cg, res, err)
                                   : us_cgroup_apply(c->cg, res, err);
        return r < 0 ? us_error_wrap(err, r, "update container %s", c->id) : 0;
}

int us_container_destroy(struct us_container *c, struct us_error **err)
{
        int r;
        if (!c || c->destroyed)
                return 0;
        /* An init that never started sees EOF on its sync socket and exits. */
        c->sync_fd = us_close(c->sync_fd);
        if (c->cg) {
                (void)us_cgroup_kill_all(c->cg, SIGKILL, NULL);
                r = us_cgroup_destroy(c->cg, err);
                if (r < 0)
                        return us_error_wrap(err, r, "destroy container %s", c->id);
        }
        c->destroyed = true;
        if (engine_hooks_any(&c->spec->hooks.poststop)) {
                _cleanup_free_ char *state =
                        engine_state_json(c->id, "stopped", 0, c->bundle, c->spec);
                if (!state)
                        return us_errorf(err, ENOMEM, "destroy container %s", c->id);
                r = engine_hooks_run(&c->spec->hooks.poststop, "poststop", state, err);
                if (r < 0)
                        return us_error_wrap(err, r, "destroy container %s", c->id);
        }
        return 0;
}

struct us_container *us_container_free(struct us_container *c)
{
        if (!c)
                return NULL;
        us_signal_forget(&c->hold);
        us_close(c->sync_fd);
        us_cgroup_free(c->cg);
        us_oci_spec_free(c->spec);
        free(c->id);
        free(c->bundle);
        free(c->rootfs);
        free(c);
        return NULL;
}

int us_container_cleanup_bundle(const char *bundle, const char *id, struct us_error **err)
{
        struct us_oci_spec *spec = NULL;
        int r;
        if (!us_id_valid(id))
                return us_error_msg(err, EINVAL, "cleanup container: invalid id %s",
                                    id ? id : "(null)");
        r = us_oci_spec_load(bundle, &spec, NULL);
        if (r < 0 && r != -ENOENT)
                spec = NULL; /* unreadable config: fall back to the default path */
        _cleanup_free_ char *path = cgroup_path_for(spec, id);
        us_oci_spec_free(spec);
        if (!path)
                return us_errorf(err, ENOMEM, "cleanup container %s", id);
        struct us_cgroup *cg = NULL;
        r = us_cgroup_open(DEFAULT_CGROUP_ROOT, path, &cg, NULL);
        if (r == -ENOENT)
                return 0;
        if (r < 0)
                return us_errorf(err, -r, "cleanup container %s: open cgroup %s", id, path);
        (void)us_cgroup_kill_all(cg, SIGKILL, NULL);
        r = us_cgroup_destroy(cg, err);
        us_cgroup_free(cg);
        if (r < 0)
                return us_error_wrap(err, r, "cleanup container %s", id);
        return 0;
}
