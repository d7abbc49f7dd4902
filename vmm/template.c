/* SPDX-License-Identifier: Apache-2.0 */
/* Template keys (vmm/template.h). */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/utsname.h>

#include "base/cleanup.h"
#include "base/sha256.h"
#include "template.h"
#include "base/text.h"

/* One "name=<length>:<value>" line. */
static void add_field(struct us_text *t, const char *name, const char *value)
{
        us_text_add(t, "%s=%zu:%s\n", name, strlen(value), value);
}

static void add_uint(struct us_text *t, const char *name, unsigned v)
{
        char buf[16];
        snprintf(buf, sizeof(buf), "%u", v);
        add_field(t, name, buf);
}

static int check_text(const char *what, const char *s, struct us_error **err)
{
        for (const char *c = s; *c; c++)
                if ((unsigned char)*c < 0x20)
                        return us_error_msg(err, EINVAL, "template %s contains a control character",
                                            what);
        return 0;
}

/* The path and what stat() says identifies the file's content: a new file
 * has another inode, a rewrite moves mtime and ctime (ctime cannot be set
 * back by a copy that keeps mtime). */
#define FILE_ID_MAX 160

/* The stat() identity of path as a manifest records it. Returns 0 or
 * -errno. */
static int file_id(const char *path, char id[FILE_ID_MAX])
{
        struct stat st;
        if (stat(path, &st) < 0)
                return -errno;
        snprintf(id, FILE_ID_MAX, "%ju.%ju %jd %jd.%09ld %jd.%09ld", (uintmax_t)st.st_dev,
                 (uintmax_t)st.st_ino, (intmax_t)st.st_size, (intmax_t)st.st_mtim.tv_sec,
                 st.st_mtim.tv_nsec, (intmax_t)st.st_ctim.tv_sec, st.st_ctim.tv_nsec);
        return 0;
}

static int add_file(struct us_text *t, const char *name, const char *path, struct us_error **err)
{
        char id[FILE_ID_MAX];
        int r;

        if (!path || path[0] != '/')
                return us_error_msg(err, EINVAL, "template %s must be an absolute path", name);
        if ((r = check_text(name, path, err)) < 0)
                return r;
        if ((r = file_id(path, id)) < 0)
                return us_errorf(err, -r, "stat %s %s", name, path);
        add_field(t, name, path);
        us_text_add(t, "%s.stat=%zu:%s\n", name, strlen(id), id);
        return 0;
}

int vmm_template_manifest(const struct vmm_template_inputs *in, char **ret, struct us_error **err)
{
        struct us_text t = {0};
        int r;

        if (!in || !in->host_id)
                return us_error_msg(err, EINVAL, "template inputs: no host identity");
        if (in->accel != VMM_ACCEL_KVM && in->accel != VMM_ACCEL_TCG)
                return us_error_msg(err, EINVAL, "template inputs: accelerator not decided");
        for (size_t i = 0; i < US_ELEMENTSOF(in->serial_ports); i++)
                if (!in->serial_ports[i])
                        return us_error_msg(err, EINVAL, "template inputs: serial port %zu unnamed",
                                            i);
        if ((r = check_text("host identity", in->host_id, err)) < 0 ||
            (in->cmdline_extra && (r = check_text("command line", in->cmdline_extra, err)) < 0) ||
            (r = check_text("serial port", in->serial_ports[0], err)) < 0 ||
            (r = check_text("serial port", in->serial_ports[1], err)) < 0)
                return r;

        add_uint(&t, "layout", VMM_TEMPLATE_LAYOUT);
        add_field(&t, "host", in->host_id);
        if ((r = add_file(&t, "qemu", in->qemu_binary ? in->qemu_binary : VMM_DEFAULT_QEMU, err)) <
                    0 ||
            (r = add_file(&t, "kernel", in->kernel, err)) < 0)
                goto fail;
        if (in->initrd) {
                if ((r = add_file(&t, "initrd", in->initrd, err)) < 0)
                        goto fail;
        } else
                add_field(&t, "initrd", "");
        add_field(&t, "cmdline", in->cmdline_extra ? in->cmdline_extra : "");
        add_field(&t, "port0", in->serial_ports[0]);
        add_field(&t, "port1", in->serial_ports[1]);
        add_uint(&t, "vcpus", in->vcpus ? in->vcpus : 1);
        add_uint(&t, "memory_mib", in->memory_mib ? in->memory_mib : 256);
        add_field(&t, "accel", vmm_accel_name(in->accel));
        if (in->accel == VMM_ACCEL_TCG) {
                add_uint(&t, "tb_mib", in->tcg_tb_size_mib ? in->tcg_tb_size_mib : 32);
                add_uint(&t, "tsc_khz", in->tsc_khz);
        }
        char *s = us_text_take(&t);
        if (!s)
                return us_errorf(err, ENOMEM, "template manifest");
        *ret = s;
        return 0;
fail:
        free(us_text_take(&t));
        return us_error_wrap(err, r, "template manifest");
}

int vmm_template_manifest_field(const char *manifest, const char *name, char **ret)
{
        size_t nlen = strlen(name);
        for (const char *l = manifest; l && *l;) {
                const char *eol = strchr(l, '\n');
                if (strncmp(l, name, nlen) == 0 && l[nlen] == '=') {
                        char *end = NULL;
                        errno = 0;
                        unsigned long long len = strtoull(l + nlen + 1, &end, 10);
                        if (errno || end == l + nlen + 1 || *end != ':' || len > strlen(end + 1) ||
                            (end[1 + len] != '\n' && end[1 + len] != '\0'))
                                return -EINVAL;
                        char *v = strndup(end + 1, (size_t)len);
                        if (!v)
                                return -ENOMEM;
                        *ret = v;
                        return 0;
                }
                l = eol ? eol + 1 : NULL;
        }
        return -ENOENT;
}

/* Whether the file a manifest names as `name` is still the one it records:
 * 1, 0 with *ret_why, or a negative errno (stat failed otherwise than for
 * a file that is gone). */
static int file_current(const char *manifest, const char *name, char **ret_why)
{
        _cleanup_free_ char *path = NULL, *recorded = NULL;
        char stat_name[32], id[FILE_ID_MAX];
        int r;

        snprintf(stat_name, sizeof(stat_name), "%s.stat", name);
        if ((r = vmm_template_manifest_field(manifest, name, &path)) == -ENOMEM)
                return r;
        if (r < 0)
                return asprintf(ret_why, "its manifest names no %s", name) < 0 ? -ENOMEM : 0;
        if (!path[0] && strcmp(name, "initrd") == 0)
                return 1; /* none, as vmm_template_manifest records it */
        if ((r = vmm_template_manifest_field(manifest, stat_name, &recorded)) == -ENOMEM)
                return r;
        if (r < 0 || path[0] != '/')
                return asprintf(ret_why, "its manifest's %s is malformed", name) < 0 ? -ENOMEM : 0;
        r = file_id(path, id);
        if (r == -ENOENT || r == -ENOTDIR)
                return asprintf(ret_why, "its %s %s is gone", name, path) < 0 ? -ENOMEM : 0;
        if (r < 0)
                return r;
        if (strcmp(id, recorded) != 0)
                return asprintf(ret_why, "its %s %s was replaced or rewritten", name, path) < 0
                               ? -ENOMEM
                               : 0;
        return 1;
}

int vmm_template_manifest_current(const char *manifest, const char *host_id, char **ret_why)
{
        _cleanup_free_ char *layout = NULL, *host = NULL;
        char want[16];
        int r;

        snprintf(want, sizeof(want), "%u", VMM_TEMPLATE_LAYOUT);
        if ((r = vmm_template_manifest_field(manifest, "layout", &layout)) == -ENOMEM)
                return r;
        if (r < 0 || strcmp(layout, want) != 0)
                return asprintf(ret_why, "its layout is %s, this unishim's is %s",
                                r < 0 ? "unknown" : layout, want) < 0
                               ? -ENOMEM
                               : 0;
        if ((r = vmm_template_manifest_field(manifest, "host", &host)) == -ENOMEM)
                return r;
        if (r < 0 || !host_id || strcmp(host, host_id) != 0)
                return asprintf(ret_why, "it was saved on another host kernel or CPU") < 0 ? -ENOMEM
                                                                                           : 0;
        static const char *const files[] = {"qemu", "kernel", "initrd"};
        for (size_t i = 0; i < US_ELEMENTSOF(files); i++)
                if ((r = file_current(manifest, files[i], ret_why)) <= 0)
                        return r;
        return 1;
}

void vmm_template_key(const char *manifest, char out[VMM_TEMPLATE_KEY_LEN + 1])
{
        us_sha256_hex(manifest, strlen(manifest), out);
}

/* The value of the first "<name>\t*: value" line of a cpuinfo text, or "". */
static void cpuinfo_field(struct us_text *t, const char *cpuinfo, size_t len, const char *name)
{
        size_t nlen = strlen(name);
        for (size_t i = 0; i < len;) {
                const char *line = cpuinfo + i;
                const char *eol = memchr(line, '\n', len - i);
                size_t llen = eol ? (size_t)(eol - line) : len - i;
                i += llen + 1;
                if (llen <= nlen || memcmp(line, name, nlen) != 0 ||
                    (line[nlen] != ' ' && line[nlen] != '\t' && line[nlen] != ':'))
                        continue;
                const char *colon = memchr(line, ':', llen);
                if (!colon)
                        continue;
                const char *v = colon + 1;
                while (v < line + llen && *v == ' ')
                        v++;
                us_text_add(t, "%s=%zu:", name, (size_t)(line + llen - v));
                us_text_append(t, v, (size_t)(line + llen - v));
                us_text_add(t, ";");
                return;
        }
        us_text_add(t, "%s=0:;", name);
}

int vmm_template_host_id(const char *cpuinfo, size_t len, const char *release, char **ret,
                         struct us_error **err)
{
        struct us_text t = {0};
        us_text_add(&t, "release=%zu:%s;", strlen(release ? release : ""), release ? release : "");
        cpuinfo_field(&t, cpuinfo ? cpuinfo : "", cpuinfo ? len : 0, "model name");
        cpuinfo_field(&t, cpuinfo ? cpuinfo : "", cpuinfo ? len : 0, "flags");
        char *s = us_text_take(&t);
        if (!s)
                return us_errorf(err, ENOMEM, "template host identity");
        /* A control character in the text would be refused by the manifest:
         * make it a space (the cpuinfo text is the kernel's, one line each). */
        for (char *c = s; *c; c++)
                if ((unsigned char)*c < 0x20)
                        *c = ' ';
        *ret = s;
        return 0;
}

int vmm_template_host_id_read(char **ret, struct us_error **err)
{
        _cleanup_free_ char *cpuinfo = NULL;
        size_t len = 0;
        struct utsname u;
        int r;

        if (uname(&u) < 0)
                return us_errorf(err, errno, "uname");
        r = vmm_read_bounded("/proc/cpuinfo", &cpuinfo, &len, err);
        if (r < 0)
                return us_error_wrap(err, r, "template host identity");
        return vmm_template_host_id(cpuinfo, len, u.release, ret, err);
}

int vmm_template_vm_config(const struct vmm_template_inputs *in, enum vmm_template_role role,
                           const struct vmm_template_instance *inst, struct vmm_template_vm *out,
                           struct us_error **err)
{
        if (!in || !inst || !out)
                return us_error_msg(err, EINVAL, "template vm: no inputs");
        if (role != VMM_TEMPLATE_SOURCE && role != VMM_TEMPLATE_CLONE)
                return us_error_msg(err, EINVAL, "template vm: role must be template or clone");
        if (!in->kernel || (in->accel != VMM_ACCEL_KVM && in->accel != VMM_ACCEL_TCG))
                return us_error_msg(err, EINVAL,
                                    "template vm: a kernel and a decided accelerator are required");
        if (inst->memory_fd <= 2 || inst->tap_fd <= 2 || inst->userns_fd <= 2)
                return us_error_msg(err, EINVAL,
                                    "template vm: memory fd %d, tap fd %d and user namespace fd %d "
                                    "must be above stdio",
                                    inst->memory_fd, inst->tap_fd, inst->userns_fd);
        if (!inst->share_dir || inst->share_dir[0] != '/')
                return us_error_msg(err, EINVAL,
                                    "template vm: the share directory must be absolute");

        *out = (struct vmm_template_vm){
                .share = {.tag = VMM_TEMPLATE_SHARE_TAG, .host_dir = inst->share_dir},
        };
        out->cfg = (struct vmm_vm_config){
                .id = inst->id,
                .state_dir = inst->state_dir,
                .qemu_binary = in->qemu_binary,
                .kernel = in->kernel,
                .initrd = in->initrd,
                .cmdline_extra = in->cmdline_extra,
                .vcpus = in->vcpus,
                .memory_mib = in->memory_mib,
                .accel = in->accel,
                .tcg_tb_size_mib = in->tcg_tb_size_mib,
                /* 9p: QEMU's own device, which migrates while the guest has
                 * not mounted it and reads a clone's private pages (vhost-
                 * user cannot: docs/vmm.md). */
                .share_type = VMM_SHARE_9P,
                .shares = &out->share,
                .n_shares = 1,
                .serial_ports = {in->serial_ports[0], in->serial_ports[1]},
                .tap_fd = inst->tap_fd,
                .mac = inst->mac ? inst->mac : VMM_TEMPLATE_MAC,
                .cgroup = inst->cgroup,
                .loop = inst->loop,
                .console_log_max = inst->console_log_max,
                /* The share at a fixed name (/share/0), so the argv, and
                 * with it the 9p export path in the saved state, is the
                 * same for every clone. */
                .private_root = true,
                /* 9p's security_model and multidevs follow this
                 * (vmm_qemu_argv): a clone serves its pod's files as root of
                 * the pod's user namespace, so the template runs the same
                 * way, and the two argvs stay equal. */
                .qemu_userns = true,
                .qemu_userns_fd = inst->userns_fd,
                .template_role = role,
                .memory_fd = inst->memory_fd,
        };
        return 0;
}
