/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The pod description parser. It reuses libunishim's JSON getters
 * (oci-spec-json.h: paths in errors, limits on depth/values/items, NUL and
 * comment checks) and builds protobuf-c messages directly, attaching every
 * allocation to its parent message at once so that one
 * protobuf_c_message_free_unpacked() frees a partial result on any error.
 */
#include "pod-spec.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include "oci/oci-spec-json.h"

/* Every map<string,string> entry that protoc-c generates has this layout. */
struct map_entry {
        ProtobufCMessage base;
        char *key;
        char *value;
};

static void *msg_new(const ProtobufCMessageDescriptor *d)
{
        void *m = malloc(d->sizeof_message);
        if (m)
                protobuf_c_message_init(d, m);
        return m;
}

/* Refuses keys of object o that are not in allowed (NULL-terminated). */
static bool printable(const char *s)
{
        for (; *s; s++)
                if ((unsigned char)*s < 0x20 || *s == 0x7f)
                        return false;
        return true;
}

/* Text of several lines (an annotation's value: cloud-init user-data):
 * tabs and line ends, no other control character. */
static bool printable_text(const char *s)
{
        for (; *s; s++)
                if (((unsigned char)*s < 0x20 && *s != '\t' && *s != '\n' && *s != '\r') ||
                    *s == 0x7f)
                        return false;
        return true;
}

/* get_str's flag beyond ocij's: the value may hold several lines. */
#define F_LINES (1u << 16)

/* A DNS-1123 label (container names, namespaces); with dots allowed, a
 * subdomain (pod names). */
static int check_dns(const char *s, const struct jpath *p, size_t max, bool dots,
                     struct us_error **err)
{
        size_t n = strlen(s);
        if (n == 0 || n > max)
                return ocij_error(err, p, "must be 1..%zu characters", max);
        for (size_t i = 0; i < n; i++) {
                char c = s[i];
                bool alnum = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
                if (!alnum && c != '-' && !(dots && c == '.'))
                        return ocij_error(err, p,
                                          "\"%.64s\" must consist of lower case letters, digits, "
                                          "'-'%s",
                                          s, dots ? " and '.'" : "");
                if (!alnum && (i == 0 || i == n - 1))
                        return ocij_error(err, p,
                                          "\"%.64s\" must start and end with a letter or digit", s);
        }
        return 0;
}

static int get_str(yajl_val v, const struct jpath *p, unsigned flags, size_t max, char **ret,
                   struct us_error **err)
{
        const char *s = NULL;
        TRY(ocij_cstr(v, p, flags & ~F_LINES, &s, err));
        if (!s)
                return 0;
        if (strlen(s) > max)
                return ocij_error(err, p, "longer than %zu characters", max);
        if (!((flags & F_LINES) ? printable_text(s) : printable(s)))
                return ocij_error(err, p, "contains control characters");
        char *d = strdup(s);
        if (!d)
                return ocij_oom(err);
        free(*ret == protobuf_c_empty_string ? NULL : *ret);
        *ret = d;
        return 0;
}

/* A string→string object into the map field (*n, *entries) of entry type d. */
static int get_map(yajl_val v, const struct jpath *p, const ProtobufCMessageDescriptor *d,
                   size_t *n, void ***entries, struct us_error **err)
{
        yajl_val o = NULL;
        TRY(ocij_object(v, p, 0, &o, err));
        if (!o || o->u.object.len == 0)
                return 0;
        size_t len = o->u.object.len;
        if (len > CRI_POD_SPEC_MAX_MAP)
                return ocij_error(err, p, "more than %d entries", CRI_POD_SPEC_MAX_MAP);
        if (d->sizeof_message != sizeof(struct map_entry))
                return us_error_msg(err, EINVAL, "internal: %s is not a string map entry", d->name);
        *entries = calloc(len, sizeof(void *));
        if (!*entries)
                return ocij_oom(err);
        for (size_t i = 0; i < len; i++) {
                const char *k = o->u.object.keys[i];
                const struct jpath *kp = JP_KEY(p, k);
                for (size_t j = 0; j < i; j++)
                        if (strcmp(o->u.object.keys[j], k) == 0)
                                return ocij_error(err, kp, "duplicate key");
                if (!k[0] || strlen(k) > 317 || !printable(k))
                        return ocij_error(err, kp, "key must be 1..317 printable characters");
                struct map_entry *e = msg_new(d);
                if (!e)
                        return ocij_oom(err);
                (*entries)[(*n)++] = e;
                e->key = strdup(k);
                if (!e->key)
                        return ocij_oom(err);
                TRY(get_str(o->u.object.values[i], kp, F_REQ | F_LINES, CRI_POD_SPEC_MAX_VALUE,
                            &e->value, err));
        }
        return 0;
}

static int get_argv(yajl_val v, const struct jpath *p, size_t *n, char ***ret,
                    struct us_error **err)
{
        yajl_val a = NULL;
        TRY(ocij_array(v, p, 0, &a, err));
        if (!a || a->u.array.len == 0)
                return 0;
        size_t len = a->u.array.len;
        if (len > CRI_POD_SPEC_MAX_ARGV)
                return ocij_error(err, p, "more than %d elements", CRI_POD_SPEC_MAX_ARGV);
        *ret = calloc(len, sizeof(char *));
        if (!*ret)
                return ocij_oom(err);
        for (size_t i = 0; i < len; i++) {
                (*ret)[i] = NULL;
                (*n)++;
                const char *s = NULL;
                TRY(ocij_cstr(a->u.array.values[i], JP_IDX(p, i), F_REQ, &s, err));
                if (strlen(s) > CRI_POD_SPEC_MAX_VALUE)
                        return ocij_error(err, JP_IDX(p, i), "longer than %u characters",
                                          CRI_POD_SPEC_MAX_VALUE);
                (*ret)[i] = strdup(s);
                if (!(*ret)[i])
                        return ocij_oom(err);
        }
        return 0;
}

static int get_env(yajl_val v, const struct jpath *p, Runtime__V1__ContainerConfig *c,
                   struct us_error **err)
{
        yajl_val o = NULL;
        TRY(ocij_object(v, p, 0, &o, err));
        if (!o || o->u.object.len == 0)
                return 0;
        size_t len = o->u.object.len;
        if (len > CRI_POD_SPEC_MAX_MAP)
                return ocij_error(err, p, "more than %d entries", CRI_POD_SPEC_MAX_MAP);
        c->envs = calloc(len, sizeof(*c->envs));
        if (!c->envs)
                return ocij_oom(err);
        for (size_t i = 0; i < len; i++) {
                const char *k = o->u.object.keys[i];
                const struct jpath *kp = JP_KEY(p, k);
                if (!k[0] || strchr(k, '=') || strlen(k) > 1024 || !printable(k))
                        return ocij_error(err, kp, "invalid environment variable name");
                for (size_t j = 0; j < i; j++)
                        if (strcmp(o->u.object.keys[j], k) == 0)
                                return ocij_error(err, kp, "duplicate key");
                Runtime__V1__KeyValue *kv = msg_new(&runtime__v1__key_value__descriptor);
                if (!kv)
                        return ocij_oom(err);
                c->envs[c->n_envs++] = kv;
                kv->key = strdup(k);
                if (!kv->key)
                        return ocij_oom(err);
                const char *s = NULL;
                TRY(ocij_cstr(o->u.object.values[i], kp, F_REQ, &s, err));
                if (strlen(s) > CRI_POD_SPEC_MAX_VALUE)
                        return ocij_error(err, kp, "longer than %u characters",
                                          CRI_POD_SPEC_MAX_VALUE);
                kv->value = strdup(s);
                if (!kv->value)
                        return ocij_oom(err);
        }
        return 0;
}

static int get_path(yajl_val v, const struct jpath *p, unsigned flags, char **ret,
                    struct us_error **err)
{
        return get_str(v, p, flags | F_ABS, 4096, ret, err);
}

/* Kubernetes' mountPropagation names for the CRI's propagation modes. */
static const struct name_value propagations[] = {
        {"None", RUNTIME__V1__MOUNT_PROPAGATION__PROPAGATION_PRIVATE},
        {"HostToContainer", RUNTIME__V1__MOUNT_PROPAGATION__PROPAGATION_HOST_TO_CONTAINER},
        {"Bidirectional", RUNTIME__V1__MOUNT_PROPAGATION__PROPAGATION_BIDIRECTIONAL},
};

static int get_mounts(yajl_val v, const struct jpath *p, Runtime__V1__ContainerConfig *c,
                      struct us_error **err)
{
        static const char *const keys[] = {"host_path", "container_path", "readonly", "propagation",
                                           NULL};
        yajl_val a = NULL;
        TRY(ocij_array(v, p, 0, &a, err));
        if (!a || a->u.array.len == 0)
                return 0;
        size_t len = a->u.array.len;
        if (len > CRI_POD_SPEC_MAX_MOUNTS)
                return ocij_error(err, p, "more than %d mounts", CRI_POD_SPEC_MAX_MOUNTS);
        c->mounts = calloc(len, sizeof(*c->mounts));
        if (!c->mounts)
                return ocij_oom(err);
        for (size_t i = 0; i < len; i++) {
                const struct jpath *mp = JP_IDX(p, i);
                yajl_val o = NULL;
                TRY(ocij_object(a->u.array.values[i], mp, F_REQ, &o, err));
                TRY(ocij_only_keys(o, mp, keys, err));
                Runtime__V1__Mount *m = msg_new(&runtime__v1__mount__descriptor);
                if (!m)
                        return ocij_oom(err);
                c->mounts[c->n_mounts++] = m;
                TRY(get_path(FIELD(o, mp, "host_path"), F_REQ, &m->host_path, err));
                TRY(get_path(FIELD(o, mp, "container_path"), F_REQ, &m->container_path, err));
                bool ro = false;
                TRY(ocij_bool(FIELD(o, mp, "readonly"), 0, &ro, NULL, err));
                m->readonly = ro;
                int mode = RUNTIME__V1__MOUNT_PROPAGATION__PROPAGATION_PRIVATE;
                TRY(GET_ENUM(FIELD(o, mp, "propagation"), 0, propagations,
                             "propagation (None, HostToContainer, Bidirectional)", &mode, err));
                m->propagation = (Runtime__V1__MountPropagation)mode;
        }
        return 0;
}

static int get_resources(yajl_val v, const struct jpath *p, Runtime__V1__LinuxContainerResources *r,
                         struct us_error **err)
{
        static const char *const keys[] = {"memory_limit_bytes", "cpu_quota", "cpu_period",
                                           "cpu_shares", NULL};
        yajl_val o = NULL;
        TRY(ocij_object(v, p, 0, &o, err));
        if (!o)
                return 0;
        TRY(ocij_only_keys(o, p, keys, err));
        /* 0 means "not set" in CRI; the ranges are the kernel's. */
        TRY(ocij_i64(FIELD(o, p, "memory_limit_bytes"), 0, 0, INT64_C(1) << 62,
                     &r->memory_limit_in_bytes, NULL, err));
        TRY(ocij_i64(FIELD(o, p, "cpu_quota"), 0, -1, INT64_C(1) << 40, &r->cpu_quota, NULL, err));
        TRY(ocij_i64(FIELD(o, p, "cpu_period"), 0, 0, 1000000, &r->cpu_period, NULL, err));
        if (r->cpu_period != 0 && r->cpu_period < 1000)
                return ocij_error(err, JP_KEY(p, "cpu_period"), "must be 0 or 1000..1000000");
        TRY(ocij_i64(FIELD(o, p, "cpu_shares"), 0, 0, 262144, &r->cpu_shares, NULL, err));
        if (r->cpu_shares == 1)
                return ocij_error(err, JP_KEY(p, "cpu_shares"), "must be 0 or 2..262144");
        return 0;
}

/* The pod's hostNetwork, hostPID and hostIPC. */
struct host_namespaces {
        bool network, pid, ipc;
};

/* What kubelet sends, on the sandbox and on each container alike: network
 * and IPC shared by the pod, a PID namespace per container; the node's
 * where the pod asks for it (NODE). */
static Runtime__V1__NamespaceOption *kubelet_namespaces(const struct host_namespaces *host)
{
        Runtime__V1__NamespaceOption *ns = msg_new(&runtime__v1__namespace_option__descriptor);
        if (ns) {
                ns->network = host->network ? RUNTIME__V1__NAMESPACE_MODE__NODE
                                            : RUNTIME__V1__NAMESPACE_MODE__POD;
                ns->ipc = host->ipc ? RUNTIME__V1__NAMESPACE_MODE__NODE
                                    : RUNTIME__V1__NAMESPACE_MODE__POD;
                ns->pid = host->pid ? RUNTIME__V1__NAMESPACE_MODE__NODE
                                    : RUNTIME__V1__NAMESPACE_MODE__CONTAINER;
        }
        return ns;
}

/* securityContext.runAsUser / runAsGroup: absent, or a uid/gid. */
static int get_id(yajl_val v, const struct jpath *p, Runtime__V1__Int64Value **ret,
                  struct us_error **err)
{
        int64_t id = 0;
        bool has = false;
        TRY(ocij_i64(v, p, 0, 0, INT32_MAX, &id, &has, err));
        if (!has)
                return 0;
        Runtime__V1__Int64Value *m = msg_new(&runtime__v1__int64_value__descriptor);
        if (!m)
                return ocij_oom(err);
        m->value = id;
        *ret = m;
        return 0;
}

static int parse_container(yajl_val o, const struct jpath *p, const struct host_namespaces *host,
                           Runtime__V1__ContainerConfig *c, struct us_error **err)
{
        static const char *const keys[] = {
                "name",       "image",       "command",      "args",
                "env",        "working_dir", "annotations",  "labels",
                "resources",  "mounts",      "tty",          "stdin",
                "privileged", "run_as_user", "run_as_group", "add_capabilities",
                NULL};
        TRY(ocij_only_keys(o, p, keys, err));

        c->metadata = msg_new(&runtime__v1__container_metadata__descriptor);
        c->image = msg_new(&runtime__v1__image_spec__descriptor);
        c->linux_ = msg_new(&runtime__v1__linux_container_config__descriptor);
        if (!c->metadata || !c->image || !c->linux_)
                return ocij_oom(err);
        c->linux_->resources = msg_new(&runtime__v1__linux_container_resources__descriptor);
        c->linux_->security_context =
                msg_new(&runtime__v1__linux_container_security_context__descriptor);
        if (!c->linux_->resources || !c->linux_->security_context)
                return ocij_oom(err);
        c->linux_->security_context->namespace_options = kubelet_namespaces(host);
        if (!c->linux_->security_context->namespace_options)
                return ocij_oom(err);

        TRY(get_str(FIELD(o, p, "name"), F_REQ, 63, &c->metadata->name, err));
        TRY(check_dns(c->metadata->name, JP_KEY(p, "name"), 63, false, err));
        TRY(get_str(FIELD(o, p, "image"), F_REQ | F_NONEMPTY, 4096, &c->image->image, err));
        TRY(get_argv(FIELD(o, p, "command"), &c->n_command, &c->command, err));
        TRY(get_argv(FIELD(o, p, "args"), &c->n_args, &c->args, err));
        TRY(get_env(FIELD(o, p, "env"), c, err));
        TRY(get_path(FIELD(o, p, "working_dir"), 0, &c->working_dir, err));
        TRY(get_map(FIELD(o, p, "annotations"),
                    &runtime__v1__container_config__annotations_entry__descriptor,
                    &c->n_annotations, (void ***)&c->annotations, err));
        TRY(get_map(FIELD(o, p, "labels"), &runtime__v1__container_config__labels_entry__descriptor,
                    &c->n_labels, (void ***)&c->labels, err));
        TRY(get_resources(FIELD(o, p, "resources"), c->linux_->resources, err));
        TRY(get_mounts(FIELD(o, p, "mounts"), c, err));
        bool b = false;
        TRY(ocij_bool(FIELD(o, p, "tty"), 0, &b, NULL, err));
        c->tty = b;
        b = false;
        TRY(ocij_bool(FIELD(o, p, "stdin"), 0, &b, NULL, err));
        c->stdin = b;
        b = false;
        TRY(ocij_bool(FIELD(o, p, "privileged"), 0, &b, NULL, err));
        c->linux_->security_context->privileged = b;
        TRY(get_id(FIELD(o, p, "run_as_user"), &c->linux_->security_context->run_as_user, err));
        TRY(get_id(FIELD(o, p, "run_as_group"), &c->linux_->security_context->run_as_group, err));
        /* securityContext.capabilities.add: names as Kubernetes spells them
         * (containerd adds the CAP_ prefix); the runtime checks them. */
        Runtime__V1__Capability *caps = msg_new(&runtime__v1__capability__descriptor);
        if (!caps)
                return ocij_oom(err);
        c->linux_->security_context->capabilities = caps;
        TRY(get_argv(FIELD(o, p, "add_capabilities"), &caps->n_add_capabilities,
                     &caps->add_capabilities, err));

        /* kubelet's layout: <log_directory>/<container name>/<restart count>.log */
        free(c->log_path == protobuf_c_empty_string ? NULL : c->log_path);
        if (asprintf(&c->log_path, "%s/0.log", c->metadata->name) < 0) {
                c->log_path = NULL;
                return ocij_oom(err);
        }
        return 0;
}

static int random_uuid(char **ret, struct us_error **err)
{
        unsigned char b[16];
        if (getrandom(b, sizeof(b), 0) != (ssize_t)sizeof(b))
                return us_errorf(err, errno ? errno : EIO, "getrandom");
        b[6] = (unsigned char)((b[6] & 0x0f) | 0x40);
        b[8] = (unsigned char)((b[8] & 0x3f) | 0x80);
        char *s = NULL;
        if (asprintf(&s, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x",
                     b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11],
                     b[12], b[13], b[14], b[15]) < 0)
                return us_errorf(err, ENOMEM, "uuid");
        *ret = s;
        return 0;
}

static int parse_pod(yajl_val o, const struct jpath *p, void *out, struct us_error **err)
{
        static const char *const keys[] = {"name",
                                           "namespace",
                                           "uid",
                                           "runtime_handler",
                                           "annotations",
                                           "labels",
                                           "hostname",
                                           "log_directory",
                                           "cgroup_parent",
                                           "containers",
                                           "privileged",
                                           "host_network",
                                           "host_pid",
                                           "host_ipc",
                                           "sysctls",
                                           "share_process_namespace",
                                           NULL};
        struct cri_pod_spec *spec = out;
        TRY(ocij_only_keys(o, p, keys, err));

        Runtime__V1__PodSandboxConfig *sb = spec->sandbox;
        sb->metadata = msg_new(&runtime__v1__pod_sandbox_metadata__descriptor);
        sb->linux_ = msg_new(&runtime__v1__linux_pod_sandbox_config__descriptor);
        if (!sb->metadata || !sb->linux_)
                return ocij_oom(err);
        sb->linux_->security_context =
                msg_new(&runtime__v1__linux_sandbox_security_context__descriptor);
        if (!sb->linux_->security_context)
                return ocij_oom(err);
        struct host_namespaces host = {0};
        TRY(ocij_bool(FIELD(o, p, "host_network"), 0, &host.network, NULL, err));
        TRY(ocij_bool(FIELD(o, p, "host_pid"), 0, &host.pid, NULL, err));
        TRY(ocij_bool(FIELD(o, p, "host_ipc"), 0, &host.ipc, NULL, err));
        sb->linux_->security_context->namespace_options = kubelet_namespaces(&host);
        if (!sb->linux_->security_context->namespace_options)
                return ocij_oom(err);

        Runtime__V1__PodSandboxMetadata *md = sb->metadata;
        TRY(get_str(FIELD(o, p, "name"), F_REQ, 253, &md->name, err));
        TRY(check_dns(md->name, JP_KEY(p, "name"), 253, true, err));
        md->namespace_ = NULL;
        TRY(get_str(FIELD(o, p, "namespace"), 0, 63, &md->namespace_, err));
        if (!md->namespace_) {
                md->namespace_ = strdup(CRI_DEFAULT_NAMESPACE);
                if (!md->namespace_)
                        return ocij_oom(err);
        }
        TRY(check_dns(md->namespace_, JP_KEY(p, "namespace"), 63, false, err));

        TRY(get_str(FIELD(o, p, "uid"), 0, 64, &md->uid, err));
        if (md->uid == protobuf_c_empty_string || !md->uid[0]) {
                if (md->uid != protobuf_c_empty_string)
                        free(md->uid);
                md->uid = NULL;
                TRY(random_uuid(&md->uid, err));
        }
        for (const char *c = md->uid; *c; c++)
                if (!((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') ||
                      (*c >= '0' && *c <= '9') || *c == '-'))
                        return ocij_error(err, JP_KEY(p, "uid"),
                                          "must consist of letters, digits and '-'");

        TRY(get_str(FIELD(o, p, "runtime_handler"), 0, 63, &spec->runtime_handler, err));
        if (!spec->runtime_handler) {
                spec->runtime_handler = strdup(CRI_DEFAULT_RUNTIME_HANDLER);
                if (!spec->runtime_handler)
                        return ocij_oom(err);
        } else if (spec->runtime_handler[0]) {
                TRY(check_dns(spec->runtime_handler, JP_KEY(p, "runtime_handler"), 63, true, err));
        }

        TRY(get_map(FIELD(o, p, "annotations"),
                    &runtime__v1__pod_sandbox_config__annotations_entry__descriptor,
                    &sb->n_annotations, (void ***)&sb->annotations, err));
        TRY(get_map(FIELD(o, p, "labels"),
                    &runtime__v1__pod_sandbox_config__labels_entry__descriptor, &sb->n_labels,
                    (void ***)&sb->labels, err));

        TRY(get_str(FIELD(o, p, "hostname"), 0, 63, &sb->hostname, err));
        if (host.network) {
                /* kubelet leaves a host-network pod the node's hostname:
                 * the pod has no UTS namespace of its own to set one in. */
                if (sb->hostname != protobuf_c_empty_string)
                        return ocij_error(err, JP_KEY(p, "hostname"),
                                          "a host_network pod has the node's hostname");
        } else if (sb->hostname == protobuf_c_empty_string) {
                sb->hostname = strndup(md->name, 63);
                if (!sb->hostname)
                        return ocij_oom(err);
        } else if (sb->hostname[0]) {
                TRY(check_dns(sb->hostname, JP_KEY(p, "hostname"), 63, false, err));
        }

        TRY(get_path(FIELD(o, p, "log_directory"), 0, &sb->log_directory, err));
        if (sb->log_directory == protobuf_c_empty_string) {
                if (asprintf(&sb->log_directory, "/var/log/pods/%s_%s_%s", md->namespace_, md->name,
                             md->uid) < 0) {
                        sb->log_directory = NULL;
                        return ocij_oom(err);
                }
        }
        TRY(get_path(FIELD(o, p, "cgroup_parent"), 0, &sb->linux_->cgroup_parent, err));
        bool privileged = false;
        TRY(ocij_bool(FIELD(o, p, "privileged"), 0, &privileged, NULL, err));
        sb->linux_->security_context->privileged = privileged;
        TRY(get_map(FIELD(o, p, "sysctls"),
                    &runtime__v1__linux_pod_sandbox_config__sysctls_entry__descriptor,
                    &sb->linux_->n_sysctls, (void ***)&sb->linux_->sysctls, err));
        /* shareProcessNamespace: kubelet asks for one PID namespace for the
         * pod, on the sandbox and on each container. */
        bool share_pid = false;
        TRY(ocij_bool(FIELD(o, p, "share_process_namespace"), 0, &share_pid, NULL, err));
        if (share_pid && host.pid)
                return ocij_error(err, JP_KEY(p, "share_process_namespace"),
                                  "share_process_namespace and host_pid exclude each other");
        if (share_pid)
                sb->linux_->security_context->namespace_options->pid =
                        RUNTIME__V1__NAMESPACE_MODE__POD;

        yajl_val a = NULL;
        const struct jpath *cp = JP_KEY(p, "containers");
        TRY(ocij_array(ocij_member(o, "containers"), cp, F_REQ | F_NONEMPTY, &a, err));
        size_t n = a->u.array.len;
        if (n > CRI_POD_SPEC_MAX_CONTAINERS)
                return ocij_error(err, cp, "more than %d containers", CRI_POD_SPEC_MAX_CONTAINERS);
        spec->containers = calloc(n, sizeof(*spec->containers));
        if (!spec->containers)
                return ocij_oom(err);
        for (size_t i = 0; i < n; i++) {
                const struct jpath *ip = JP_IDX(cp, i);
                yajl_val co = NULL;
                TRY(ocij_object(a->u.array.values[i], ip, F_REQ, &co, err));
                Runtime__V1__ContainerConfig *c =
                        msg_new(&runtime__v1__container_config__descriptor);
                if (!c)
                        return ocij_oom(err);
                spec->containers[spec->n_containers++] = c;
                TRY(parse_container(co, ip, &host, c, err));
                c->linux_->security_context->namespace_options->pid =
                        sb->linux_->security_context->namespace_options->pid;
                for (size_t j = 0; j < i; j++)
                        if (strcmp(spec->containers[j]->metadata->name, c->metadata->name) == 0)
                                return ocij_error(err, JP_KEY(ip, "name"),
                                                  "duplicate container name \"%s\"",
                                                  c->metadata->name);
        }
        return 0;
}

struct cri_pod_spec *cri_pod_spec_free(struct cri_pod_spec *spec)
{
        if (!spec)
                return NULL;
        if (spec->sandbox)
                protobuf_c_message_free_unpacked(&spec->sandbox->base, NULL);
        for (size_t i = 0; i < spec->n_containers; i++)
                protobuf_c_message_free_unpacked(&spec->containers[i]->base, NULL);
        free(spec->containers);
        free(spec->runtime_handler);
        free(spec);
        return NULL;
}

int cri_pod_spec_parse(const char *json, size_t len, struct cri_pod_spec **ret,
                       struct us_error **err)
{
        if (len > CRI_POD_SPEC_MAX_SIZE)
                return us_error_msg(err, E2BIG, "pod spec too large (%zu bytes, max %u)", len,
                                    CRI_POD_SPEC_MAX_SIZE);
        _cleanup_(cri_pod_spec_free_cleanupp) struct cri_pod_spec *spec = calloc(1, sizeof(*spec));
        if (!spec)
                return us_errorf(err, ENOMEM, "pod spec");
        spec->sandbox = msg_new(&runtime__v1__pod_sandbox_config__descriptor);
        if (!spec->sandbox)
                return us_errorf(err, ENOMEM, "pod spec");
        int r = ocij_parse_document(json, len, parse_pod, spec, err);
        if (r < 0)
                return us_error_wrap(err, r, "pod spec");
        *ret = TAKE_PTR(spec);
        return 0;
}

int cri_pod_spec_load(const char *path, struct cri_pod_spec **ret, struct us_error **err)
{
        _cleanup_close_ int fd =
                strcmp(path, "-") == 0 ? dup(STDIN_FILENO) : open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                return us_errorf(err, errno, "open %s", path);
        size_t cap = 4096, len = 0;
        _cleanup_free_ char *buf = malloc(cap);
        if (!buf)
                return us_errorf(err, ENOMEM, "read %s", path);
        for (;;) {
                if (len == cap) {
                        if (cap > CRI_POD_SPEC_MAX_SIZE)
                                return us_error_msg(err, E2BIG, "%s: larger than %u bytes", path,
                                                    CRI_POD_SPEC_MAX_SIZE);
                        char *n = realloc(buf, cap * 2);
                        if (!n)
                                return us_errorf(err, ENOMEM, "read %s", path);
                        buf = n;
                        cap *= 2;
                }
                ssize_t k = read(fd, buf + len, cap - len);
                if (k < 0 && errno == EINTR)
                        continue;
                if (k < 0)
                        return us_errorf(err, errno, "read %s", path);
                if (k == 0)
                        break;
                len += (size_t)k;
        }
        int r = cri_pod_spec_parse(buf, len, ret, err);
        if (r < 0)
                return us_error_wrap(err, r, "%s", path);
        return 0;
}
