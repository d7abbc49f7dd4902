/* SPDX-License-Identifier: Apache-2.0 */
#include "policy.h"

#include <errno.h>
#include <stddef.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/cleanup.h"
#include "oci/oci-spec-json.h"

static const char *const isolation_names[POLICY_ISOLATION__COUNT] = {
        [POLICY_ISOLATION_CONTAINER] = "container",
        [POLICY_ISOLATION_SANDBOX] = "sandbox",
        [POLICY_ISOLATION_VM] = "vm",
};

/* Every unishim.io/ annotation this build understands. */
static const char *const known_annotations[] = {
        UNISHIM_ANNOTATION_ISOLATION,
        UNISHIM_ANNOTATION_VCPUS,
        UNISHIM_ANNOTATION_MEMORY_MIB,
        UNISHIM_ANNOTATION_DISK_PATH,
        UNISHIM_ANNOTATION_CLOUD_INIT_USER_DATA,
};
/* What the built-in policy allows: all of them but user-data, which runs
 * as root in the guest at the pod author's word. */
#define N_DEFAULT_ANNOTATIONS (US_ELEMENTSOF(known_annotations) - 1)

static const char *const default_sidecars[] = {
        "istio-proxy", "istio-init", "istio-validation", "linkerd-proxy", "linkerd-init",
};

const char *policy_isolation_name(enum policy_isolation kind)
{
        return (unsigned)kind < POLICY_ISOLATION__COUNT ? isolation_names[kind] : "unknown";
}

static int isolation_from_name(const char *name, enum policy_isolation *ret)
{
        for (int i = 0; i < POLICY_ISOLATION__COUNT; i++) {
                if (strcmp(name, isolation_names[i]) == 0) {
                        *ret = (enum policy_isolation)i;
                        return 0;
                }
        }
        return -EINVAL;
}

static int strv_from(const char *const *items, size_t n, char ***ret)
{
        char **v = calloc(n + 1, sizeof(*v));
        if (!v)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++) {
                v[i] = strdup(items[i]);
                if (!v[i]) {
                        us_strv_free(v);
                        return -ENOMEM;
                }
        }
        *ret = v;
        return 0;
}

struct policy_config *policy_config_free(struct policy_config *cfg)
{
        if (!cfg)
                return NULL;
        free(cfg->path);
        us_strv_free(cfg->allowed_annotations);
        us_strv_free(cfg->mesh_sidecars);
        free(cfg->sandbox.kernel);
        free(cfg->sandbox.initrd);
        free(cfg->sandbox.accel);
        free(cfg->sandbox.template_dir);
        free(cfg->vm.libvirt_uri);
        free(cfg->vm.qemu_group);
        free(cfg->vm.accel);
        free(cfg);
        return NULL;
}

int policy_config_default(struct policy_config **ret, struct us_error **err)
{
        struct policy_config *cfg = calloc(1, sizeof(*cfg));
        if (!cfg)
                return us_errorf(err, ENOMEM, "allocate config");
        cfg->default_isolation = POLICY_ISOLATION_CONTAINER;
        for (int i = 0; i < POLICY_ISOLATION__COUNT; i++)
                cfg->allowed[i] = true;
        long cpus = sysconf(_SC_NPROCESSORS_ONLN);
        cfg->sandbox.vcpus = 1;
        cfg->sandbox.max_vcpus = cpus > 0 ? (unsigned)cpus : 1;
        cfg->sandbox.memory_mib = 256;
        cfg->sandbox.max_memory_mib = 16384;
        cfg->sandbox.templates = true;
        cfg->sandbox.template_max = POLICY_TEMPLATE_MAX_DEFAULT;
        cfg->sandbox.console_log_max_bytes = POLICY_CONSOLE_LOG_DEFAULT_BYTES;
        cfg->sandbox.agent_timeout_ms = POLICY_AGENT_TIMEOUT_DEFAULT_MS;
        cfg->vm.memory_mib = 1024;
        cfg->vm.user_data_max_bytes = POLICY_VM_USER_DATA_DEFAULT_MAX;
        if (strv_from(known_annotations, N_DEFAULT_ANNOTATIONS, &cfg->allowed_annotations) < 0 ||
            strv_from(default_sidecars, US_ELEMENTSOF(default_sidecars), &cfg->mesh_sidecars) < 0) {
                policy_config_free(cfg);
                return us_errorf(err, ENOMEM, "allocate config");
        }
        *ret = cfg;
        return 0;
}

static int kind_of(const char *name, const struct jpath *p, enum policy_isolation *ret,
                   struct us_error **err)
{
        if (isolation_from_name(name, ret) < 0)
                return ocij_error(err, p,
                                  "unknown isolation kind \"%s\" (known: container, sandbox, vm)",
                                  name);
        return 0;
}

static int parse_isolation(yajl_val o, const struct jpath *p, void *out, struct us_error **err)
{
        struct policy_config *cfg = out;
        static const char *const keys[] = {"default", "allowed", NULL};
        TRY(ocij_only_keys(o, p, keys, err));

        _cleanup_strv_ char **allowed = NULL;
        TRY(ocij_strv(FIELD(o, p, "allowed"), 0, &allowed, err));
        if (allowed) {
                if (!allowed[0])
                        return ocij_error(err, JP_KEY(p, "allowed"), "must list at least one kind");
                for (int i = 0; i < POLICY_ISOLATION__COUNT; i++)
                        cfg->allowed[i] = false;
                for (size_t i = 0; allowed[i]; i++) {
                        enum policy_isolation k = POLICY_ISOLATION_CONTAINER;
                        TRY(kind_of(allowed[i], JP_IDX(JP_KEY(p, "allowed"), i), &k, err));
                        cfg->allowed[k] = true;
                }
        }
        const char *def = NULL;
        TRY(ocij_cstr(FIELD(o, p, "default"), 0, &def, err));
        if (def)
                TRY(kind_of(def, JP_KEY(p, "default"), &cfg->default_isolation, err));
        if (!cfg->allowed[cfg->default_isolation])
                return ocij_error(err, JP_KEY(p, "default"),
                                  "default kind \"%s\" is not in isolation.allowed",
                                  policy_isolation_name(cfg->default_isolation));
        return 0;
}

static int parse_annotations(yajl_val o, const struct jpath *p, void *out, struct us_error **err)
{
        struct policy_config *cfg = out;
        static const char *const keys[] = {"allowed", NULL};
        TRY(ocij_only_keys(o, p, keys, err));
        _cleanup_strv_ char **allowed = NULL;
        TRY(ocij_strv(FIELD(o, p, "allowed"), 0, &allowed, err));
        if (!allowed)
                return 0;
        for (size_t i = 0; allowed[i]; i++) {
                bool known = false;
                for (size_t j = 0; j < US_ELEMENTSOF(known_annotations) && !known; j++)
                        known = strcmp(allowed[i], known_annotations[j]) == 0;
                if (!known)
                        return ocij_error(err, JP_IDX(JP_KEY(p, "allowed"), i),
                                          "unknown annotation \"%s\"", allowed[i]);
        }
        us_strv_free(cfg->allowed_annotations);
        cfg->allowed_annotations = TAKE_PTR(allowed);
        return 0;
}

/* An optional whole number key of o within lo..hi (words: the range for a
 * reader); *val keeps its default when the key is absent. */
static int bounded_u64(yajl_val o, const struct jpath *p, const char *key, uint64_t lo, uint64_t hi,
                       const char *words, uint64_t *val, struct us_error **err)
{
        uint64_t v;
        bool has = false;
        TRY(ocij_u64(FIELD(o, p, key), 0, UINT64_MAX, &v, &has, err));
        if (has && (v < lo || v > hi))
                return ocij_error(err, JP_KEY(p, key), "%ju is not within %ju..%ju (%s)",
                                  (uintmax_t)v, (uintmax_t)lo, (uintmax_t)hi, words);
        if (has)
                *val = v;
        return 0;
}

static int accel_check(const char *accel, const struct jpath *p, struct us_error **err)
{
        if (accel && strcmp(accel, "auto") != 0 && strcmp(accel, "kvm") != 0 &&
            strcmp(accel, "tcg") != 0)
                return ocij_error(err, JP_KEY(p, "accel"),
                                  "unknown accelerator \"%s\" (known: auto, kvm, tcg)", accel);
        return 0;
}

static int parse_sandbox(yajl_val o, const struct jpath *p, void *out, struct us_error **err)
{
        struct policy_sandbox_config *sb = out;
        static const char *const keys[] = {"kernel",
                                           "initrd",
                                           "accel",
                                           "vcpus",
                                           "max_vcpus",
                                           "memory_mib",
                                           "max_memory_mib",
                                           "console_log_max_bytes",
                                           "agent_timeout_ms",
                                           "virtiofsd_unprivileged",
                                           "shared_fs",
                                           "templates",
                                           "template_dir",
                                           "template_max",
                                           NULL};
        TRY(ocij_only_keys(o, p, keys, err));
        bool has_unpriv = false;
        TRY(ocij_bool(FIELD(o, p, "virtiofsd_unprivileged"), 0, &sb->virtiofsd_root, &has_unpriv,
                      err));
        /* Stored as its negation: a zeroed config is the safe one. */
        sb->virtiofsd_root = has_unpriv && !sb->virtiofsd_root;
        TRY(ocij_string(FIELD(o, p, "kernel"), F_ABS, &sb->kernel, err));
        TRY(ocij_string(FIELD(o, p, "initrd"), F_ABS, &sb->initrd, err));
        TRY(ocij_string(FIELD(o, p, "accel"), 0, &sb->accel, err));
        TRY(accel_check(sb->accel, p, err));
        _cleanup_free_ char *shared_fs = NULL;
        TRY(ocij_string(FIELD(o, p, "shared_fs"), 0, &shared_fs, err));
        if (shared_fs && strcmp(shared_fs, "virtio-fs") == 0)
                sb->shared_fs = POLICY_SHARED_FS_VIRTIOFS;
        else if (shared_fs && strcmp(shared_fs, "9p") == 0)
                sb->shared_fs = POLICY_SHARED_FS_9P;
        else if (shared_fs)
                return ocij_error(err, JP_KEY(p, "shared_fs"),
                                  "unknown shared file system \"%s\" (known: virtio-fs, 9p)",
                                  shared_fs);
        /* QEMU serves 9p itself, always as root of the pod's user
         * namespace: never as the host's root, which the opt-out is. */
        if (sb->shared_fs == POLICY_SHARED_FS_9P && sb->virtiofsd_root)
                return ocij_error(err, JP_KEY(p, "shared_fs"),
                                  "\"9p\" is served by QEMU in the pod's user namespace, which "
                                  "virtiofsd_unprivileged false turns off: not both");
        if (sb->shared_fs == POLICY_SHARED_FS_AUTO && sb->virtiofsd_root)
                sb->shared_fs = POLICY_SHARED_FS_VIRTIOFS;
        TRY(ocij_bool(FIELD(o, p, "templates"), 0, &sb->templates, NULL, err));
        TRY(ocij_string(FIELD(o, p, "template_dir"), F_ABS, &sb->template_dir, err));
        static const struct {
                const char *key;
                size_t offset;
                unsigned max;
        } nums[] = {
                {"vcpus", offsetof(struct policy_sandbox_config, vcpus), 255},
                {"max_vcpus", offsetof(struct policy_sandbox_config, max_vcpus), 255},
                {"memory_mib", offsetof(struct policy_sandbox_config, memory_mib), 1u << 20},
                {"max_memory_mib", offsetof(struct policy_sandbox_config, max_memory_mib),
                 1u << 20},
        };
        for (size_t i = 0; i < US_ELEMENTSOF(nums); i++) {
                uint64_t v;
                bool has = false;
                TRY(ocij_u64(FIELD(o, p, nums[i].key), 0, nums[i].max, &v, &has, err));
                if (has && v == 0)
                        return ocij_error(err, JP_KEY(p, nums[i].key), "must be at least 1");
                if (has)
                        *(unsigned *)((char *)sb + nums[i].offset) = (unsigned)v;
        }
        if (sb->vcpus > sb->max_vcpus)
                return ocij_error(err, JP_KEY(p, "vcpus"), "%u is above max_vcpus %u", sb->vcpus,
                                  sb->max_vcpus);
        if (sb->memory_mib < 64 || sb->memory_mib > sb->max_memory_mib)
                return ocij_error(err, JP_KEY(p, "memory_mib"),
                                  "%u is not within 64..max_memory_mib (%u)", sb->memory_mib,
                                  sb->max_memory_mib);
        uint64_t cap = sb->console_log_max_bytes, ms = sb->agent_timeout_ms;
        TRY(bounded_u64(o, p, "console_log_max_bytes", POLICY_CONSOLE_LOG_MIN_BYTES,
                        POLICY_CONSOLE_LOG_MAX_BYTES, "64 KiB..1 GiB", &cap, err));
        TRY(bounded_u64(o, p, "agent_timeout_ms", POLICY_AGENT_TIMEOUT_MIN_MS,
                        POLICY_AGENT_TIMEOUT_MAX_MS, "1 s..10 min", &ms, err));
        sb->console_log_max_bytes = cap;
        sb->agent_timeout_ms = (unsigned)ms;
        uint64_t tmax = sb->template_max;
        TRY(bounded_u64(o, p, "template_max", 1, POLICY_TEMPLATE_MAX_LIMIT, "1..64", &tmax, err));
        sb->template_max = (unsigned)tmax;
        return 0;
}

static int parse_vm(yajl_val o, const struct jpath *p, void *out, struct us_error **err)
{
        struct policy_vm_config *vm = out;
        static const char *const keys[] = {"libvirt_uri", "qemu_group",          "accel",
                                           "memory_mib",  "user_data_max_bytes", NULL};
        TRY(ocij_only_keys(o, p, keys, err));
        TRY(ocij_string(FIELD(o, p, "libvirt_uri"), 0, &vm->libvirt_uri, err));
        TRY(ocij_string(FIELD(o, p, "qemu_group"), 0, &vm->qemu_group, err));
        TRY(ocij_string(FIELD(o, p, "accel"), 0, &vm->accel, err));
        TRY(accel_check(vm->accel, p, err));
        uint64_t mib = vm->memory_mib, max = vm->user_data_max_bytes;
        TRY(bounded_u64(o, p, "memory_mib", POLICY_VM_MIN_MEMORY_MIB, 1u << 20, "128..1048576",
                        &mib, err));
        TRY(bounded_u64(o, p, "user_data_max_bytes", 0, POLICY_VM_USER_DATA_LIMIT, "0..1 MiB", &max,
                        err));
        vm->memory_mib = (unsigned)mib;
        vm->user_data_max_bytes = max;
        return 0;
}

static int parse_config(yajl_val o, const struct jpath *p, void *out, struct us_error **err)
{
        struct policy_config *cfg = out;
        static const char *const keys[] = {"isolation", "annotations", "mesh_sidecars",
                                           "sandbox",   "vm",          NULL};
        TRY(ocij_only_keys(o, p, keys, err));
        TRY(ocij_struct(FIELD(o, p, "isolation"), 0, parse_isolation, cfg, err));
        TRY(ocij_struct(FIELD(o, p, "annotations"), 0, parse_annotations, cfg, err));
        TRY(ocij_struct(FIELD(o, p, "sandbox"), 0, parse_sandbox, &cfg->sandbox, err));
        TRY(ocij_struct(FIELD(o, p, "vm"), 0, parse_vm, &cfg->vm, err));
        if (cfg->vm.memory_mib > cfg->sandbox.max_memory_mib)
                return ocij_error(err, JP_KEY(JP_KEY(p, "vm"), "memory_mib"),
                                  "%u is above sandbox.max_memory_mib %u", cfg->vm.memory_mib,
                                  cfg->sandbox.max_memory_mib);
        _cleanup_strv_ char **sidecars = NULL;
        TRY(ocij_strv(FIELD(o, p, "mesh_sidecars"), 0, &sidecars, err));
        if (sidecars) {
                us_strv_free(cfg->mesh_sidecars);
                cfg->mesh_sidecars = TAKE_PTR(sidecars);
        }
        return 0;
}

int policy_config_parse(const char *json, size_t len, const char *path, struct policy_config **ret,
                        struct us_error **err)
{
        const char *name = path ? path : "unishim config";
        if (len > POLICY_CONFIG_MAX_SIZE)
                return us_error_msg(err, E2BIG, "invalid %s: too large (%zu bytes, max %u)", name,
                                    len, POLICY_CONFIG_MAX_SIZE);
        struct policy_config *cfg = NULL;
        int r = policy_config_default(&cfg, err);
        if (r < 0)
                return r;
        r = ocij_parse_document(json, len, parse_config, cfg, err);
        if (r < 0) {
                policy_config_free(cfg);
                return us_error_wrap(err, r, "invalid %s", name);
        }
        if (path && !(cfg->path = strdup(path))) {
                policy_config_free(cfg);
                return us_errorf(err, ENOMEM, "allocate config");
        }
        *ret = cfg;
        return 0;
}

int policy_config_load(const char *path, struct policy_config **ret, struct us_error **err)
{
        bool explicit_path = path && *path;
        if (!explicit_path)
                path = POLICY_DEFAULT_CONFIG_PATH;
        /* O_NONBLOCK: a FIFO at the path must fail the S_ISREG check below,
         * not block the open. */
        _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
        if (fd < 0) {
                if (errno == ENOENT && !explicit_path)
                        return policy_config_default(ret, err);
                return us_errorf(err, errno, "open unishim config %s", path);
        }
        struct stat st;
        if (fstat(fd, &st) < 0)
                return us_errorf(err, errno, "stat unishim config %s", path);
        if (!S_ISREG(st.st_mode))
                return us_error_msg(err, EINVAL, "unishim config %s is not a regular file", path);
        if (st.st_size > (off_t)POLICY_CONFIG_MAX_SIZE)
                return us_error_msg(err, E2BIG,
                                    "unishim config %s is too large (%lld bytes, max %u)", path,
                                    (long long)st.st_size, POLICY_CONFIG_MAX_SIZE);
        size_t size = (size_t)st.st_size;
        _cleanup_free_ char *buf = malloc(size + 1);
        if (!buf)
                return us_errorf(err, ENOMEM, "read unishim config %s", path);
        size_t got = 0;
        while (got < size) {
                ssize_t n = read(fd, buf + got, size - got);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0)
                        return us_errorf(err, errno, "read unishim config %s", path);
                if (n == 0)
                        break;
                got += (size_t)n;
        }
        return policy_config_parse(buf, got, path, ret, err);
}

static bool strv_contains(char *const *v, const char *s)
{
        for (; v && *v; v++)
                if (strcmp(*v, s) == 0)
                        return true;
        return false;
}

/* "a, b, c" of the allowed kinds, into buf. */
static const char *allowed_kinds(const struct policy_config *cfg, char *buf, size_t size)
{
        size_t o = 0;
        buf[0] = '\0';
        for (int i = 0; i < POLICY_ISOLATION__COUNT; i++) {
                if (!cfg->allowed[i])
                        continue;
                int n = snprintf(buf + o, size - o, "%s%s", o ? ", " : "", isolation_names[i]);
                if (n < 0 || (size_t)n >= size - o)
                        break;
                o += (size_t)n;
        }
        return buf;
}

static const char *config_name(const struct policy_config *cfg)
{
        return cfg->path ? cfg->path : "the built-in defaults";
}

int policy_pod_isolation(const struct policy_config *cfg, const struct us_oci_kv *annotations,
                         size_t n_annotations, enum policy_isolation *ret, struct us_error **err)
{
        const char *value = NULL;
        for (size_t i = 0; i < n_annotations; i++) {
                const char *key = annotations[i].key;
                if (strncmp(key, UNISHIM_ANNOTATION_PREFIX, strlen(UNISHIM_ANNOTATION_PREFIX)) != 0)
                        continue;
                if (!strv_contains(cfg->allowed_annotations, key)) {
                        _cleanup_free_ char *list = NULL;
                        size_t len = 0;
                        FILE *f = open_memstream(&list, &len);
                        for (char **a = cfg->allowed_annotations; f && a && *a; a++)
                                fprintf(f, "%s%s", a == cfg->allowed_annotations ? "" : ", ", *a);
                        if (f)
                                fclose(f);
                        return us_error_msg(err, EPERM,
                                            "annotation %s is not allowed by %s (pods may set: %s)",
                                            key, config_name(cfg), list && *list ? list : "none");
                }
                if (strcmp(key, UNISHIM_ANNOTATION_ISOLATION) == 0)
                        value = annotations[i].value; /* the last one wins, as in JSON */
        }

        enum policy_isolation kind = cfg->default_isolation;
        char buf[64];
        if (value) {
                if (isolation_from_name(value, &kind) < 0)
                        return us_error_msg(err, EINVAL,
                                            "annotation %s: unknown isolation kind \"%s\" "
                                            "(known: container, sandbox, vm; allowed here: %s)",
                                            UNISHIM_ANNOTATION_ISOLATION, value,
                                            allowed_kinds(cfg, buf, sizeof(buf)));
                if (!cfg->allowed[kind])
                        return us_error_msg(err, EPERM,
                                            "annotation %s: isolation kind \"%s\" is not allowed "
                                            "by %s (allowed: %s)",
                                            UNISHIM_ANNOTATION_ISOLATION, value, config_name(cfg),
                                            allowed_kinds(cfg, buf, sizeof(buf)));
        }
        *ret = kind;
        return 0;
}

/* A strictly decimal value (no sign, spaces or suffix) within min..max. */
static int annotation_number(const struct policy_config *cfg, const char *key, const char *value,
                             unsigned min, unsigned max, const char *bound, unsigned *ret,
                             struct us_error **err)
{
        unsigned long long v = 0;
        bool ok = value[0] != '\0' && strlen(value) <= 10 &&
                  strspn(value, "0123456789") == strlen(value);
        if (ok) {
                v = strtoull(value, NULL, 10);
                ok = v >= min && v <= max;
        }
        if (!ok)
                return us_error_msg(err, EINVAL,
                                    "annotation %s: \"%s\" is not within %u..%u (%s in %s)", key,
                                    value, min, max, bound, config_name(cfg));
        *ret = (unsigned)v;
        return 0;
}

int policy_pod_vm_size(const struct policy_config *cfg, const struct us_oci_kv *annotations,
                       size_t n_annotations, struct policy_vm_size *ret, struct us_error **err)
{
        struct policy_vm_size size = {0};
        for (size_t i = 0; i < n_annotations; i++) {
                const char *key = annotations[i].key;
                const char *value = annotations[i].value ? annotations[i].value : "";
                int r = 0;
                if (strcmp(key, UNISHIM_ANNOTATION_VCPUS) == 0)
                        r = annotation_number(cfg, key, value, 1, cfg->sandbox.max_vcpus,
                                              "sandbox.max_vcpus", &size.vcpus, err);
                else if (strcmp(key, UNISHIM_ANNOTATION_MEMORY_MIB) == 0)
                        r = annotation_number(cfg, key, value, POLICY_VM_MIN_MEMORY_MIB,
                                              cfg->sandbox.max_memory_mib, "sandbox.max_memory_mib",
                                              &size.memory_mib, err);
                if (r < 0)
                        return r;
        }
        *ret = size;
        return 0;
}

bool policy_is_mesh_sidecar(const struct policy_config *cfg, const char *container_name)
{
        return container_name && strv_contains(cfg->mesh_sidecars, container_name);
}

int policy_pod_vm_guest(const struct policy_config *cfg, const struct us_oci_kv *annotations,
                        size_t n_annotations, const char **ret_disk_path,
                        const char **ret_user_data, struct us_error **err)
{
        *ret_disk_path = *ret_user_data = NULL;
        for (size_t i = 0; i < n_annotations; i++) {
                const char *key = annotations[i].key, *value = annotations[i].value;
                if (strcmp(key, UNISHIM_ANNOTATION_DISK_PATH) == 0) {
                        const char *v = value;
                        while (*v == '/')
                                v++;
                        bool ok = *v && strlen(v) < 1024;
                        /* No "..", no empty or "." component. */
                        for (const char *c = v; ok && *c;) {
                                size_t n = strcspn(c, "/");
                                if (n == 0 || (n == 1 && c[0] == '.') ||
                                    (n == 2 && c[0] == '.' && c[1] == '.'))
                                        ok = false;
                                c += n;
                                if (*c == '/')
                                        c++;
                        }
                        for (const char *c = v; ok && *c; c++)
                                ok = (unsigned char)*c >= 0x20 && *c != 0x7f;
                        if (!ok || v[strlen(v) - 1] == '/')
                                return us_error_msg(err, EINVAL,
                                                    "annotation %s: \"%s\" is not a file's path "
                                                    "in the image (no \"..\", \".\" or empty "
                                                    "parts)",
                                                    key, value);
                        *ret_disk_path = v;
                } else if (strcmp(key, UNISHIM_ANNOTATION_CLOUD_INIT_USER_DATA) == 0) {
                        size_t len = strlen(value);
                        if (len > cfg->vm.user_data_max_bytes)
                                return us_error_msg(err, E2BIG,
                                                    "annotation %s: %zu bytes, above the limit "
                                                    "of %ju (vm.user_data_max_bytes in %s)",
                                                    key, len,
                                                    (uintmax_t)cfg->vm.user_data_max_bytes,
                                                    cfg->path ? cfg->path : "the built-in config");
                        *ret_user_data = value;
                }
        }
        return 0;
}
