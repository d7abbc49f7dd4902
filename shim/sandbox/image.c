/* SPDX-License-Identifier: Apache-2.0 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/cleanup.h"
#include "base/log.h"
#include "vmm/qemu.h"
#include "image.h"

int sandbox_image_find(char **ret_kernel, char **ret_initrd, struct us_error **err)
{
        char exe[PATH_MAX];
        ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
        if (n < 0)
                return us_errorf(err, errno, "find own binary");
        exe[n] = '\0';
        char *slash = strrchr(exe, '/');
        if (slash)
                *slash = '\0';
        const char *env_dir = getenv("UNISHIM_GUEST_DIR");
        _cleanup_free_ char *installed = NULL, *built = NULL;
        if (asprintf(&installed, "%s/../share/unishim", exe) < 0 ||
            asprintf(&built, "%s/../vmm/guest-image", exe) < 0)
                return us_errorf(err, ENOMEM, "guest image path");
        const char *dirs[] = {env_dir && *env_dir ? env_dir : NULL, installed, built};
        static const char *const initrds[] = {"initramfs.cpio", "initramfs.cpio.gz"};
        for (size_t i = 0; i < US_ELEMENTSOF(dirs); i++) {
                if (!dirs[i])
                        continue;
                _cleanup_free_ char *k = NULL;
                if (asprintf(&k, "%s/vmlinux", dirs[i]) < 0)
                        return us_errorf(err, ENOMEM, "guest image path");
                if (access(k, R_OK) < 0)
                        continue;
                for (size_t j = 0; j < US_ELEMENTSOF(initrds); j++) {
                        _cleanup_free_ char *ir = NULL;
                        if (asprintf(&ir, "%s/%s", dirs[i], initrds[j]) < 0)
                                return us_errorf(err, ENOMEM, "guest image path");
                        if (access(ir, R_OK) < 0)
                                continue;
                        _cleanup_free_ char *kernel = realpath(k, NULL);
                        _cleanup_free_ char *initrd = realpath(ir, NULL);
                        if (!kernel || !initrd)
                                return us_errorf(err, errno, "resolve guest image %s", dirs[i]);
                        *ret_kernel = TAKE_PTR(kernel);
                        *ret_initrd = TAKE_PTR(initrd);
                        return 0;
                }
        }
        return us_error_msg(err, ENOENT,
                            "no guest image (vmlinux + initramfs) in %s or %s%s%s: build it with "
                            "make build, install it with make install, or set UNISHIM_GUEST_DIR",
                            installed, built, env_dir ? " or " : "", env_dir ? env_dir : "");
}

int sandbox_image_resolve(const char *kernel, const char *initrd, char **ret_kernel,
                          char **ret_initrd, struct us_error **err)
{
        if (!kernel || !initrd)
                return sandbox_image_find(ret_kernel, ret_initrd, err);
        _cleanup_free_ char *k = strdup(kernel), *i = strdup(initrd);
        if (!k || !i)
                return us_errorf(err, ENOMEM, "guest image path");
        *ret_kernel = TAKE_PTR(k);
        *ret_initrd = TAKE_PTR(i);
        return 0;
}

/* True if the config sets name (CONFIG_...) to y or m: a line "name=y" or
 * "name=m" of its own. */
static bool config_enabled(const char *config, size_t len, const char *name)
{
        size_t nl = strlen(name);
        for (size_t at = 0; at < len;) {
                const char *line = config + at;
                const char *end = memchr(line, '\n', len - at);
                size_t ll = end ? (size_t)(end - line) : len - at;
                if (ll == nl + 2 && memcmp(line, name, nl) == 0 && line[nl] == '=' &&
                    (line[nl + 1] == 'y' || line[nl + 1] == 'm'))
                        return true;
                at += ll + 1;
        }
        return false;
}

bool sandbox_image_config_has_9p(const char *config, size_t len)
{
        return config_enabled(config, len, "CONFIG_9P_FS") &&
               config_enabled(config, len, "CONFIG_NET_9P_VIRTIO");
}

int sandbox_image_shared_fs(enum policy_shared_fs want, const char *kernel, bool *ret_9p,
                            struct us_error **err)
{
        *ret_9p = false;
        if (want == POLICY_SHARED_FS_VIRTIOFS)
                return 0;
        _cleanup_free_ char *dir = strdup(kernel), *path = NULL, *config = NULL;
        if (!dir)
                return us_errorf(err, ENOMEM, "guest image path");
        char *slash = strrchr(dir, '/');
        if (slash)
                *slash = '\0';
        if (asprintf(&path, "%s/" SANDBOX_IMAGE_KERNEL_CONFIG, slash ? dir : ".") < 0) {
                path = NULL;
                return us_errorf(err, ENOMEM, "guest image path");
        }
        if (access(path, F_OK) < 0 && errno == ENOENT) {
                *ret_9p = want == POLICY_SHARED_FS_9P;
                return 0;
        }
        size_t len = 0;
        struct us_error *e = NULL;
        int r = vmm_read_bounded(path, &config, &len, &e);
        /* Unset, the pod gets what works without knowing: virtio-fs. */
        if (r < 0 && want == POLICY_SHARED_FS_AUTO) {
                us_log_warn("the guest image's kernel config: %s: sandbox.shared_fs unset: "
                            "virtio-fs",
                            us_error_text(e));
                us_error_free(e);
                return 0;
        }
        if (r < 0) {
                r = us_error_msg(err, -r, "the guest image's kernel config: %s", us_error_text(e));
                us_error_free(e);
                return r;
        }
        *ret_9p = sandbox_image_config_has_9p(config, len);
        if (!*ret_9p && want == POLICY_SHARED_FS_9P)
                return us_error_msg(err, ENOTSUP,
                                    "sandbox.shared_fs is \"9p\", but the guest kernel %s has no "
                                    "9p (%s has no CONFIG_9P_FS and CONFIG_NET_9P_VIRTIO): use "
                                    "the generic or minimal guest image (cmake --build <build> "
                                    "--target guest-image-generic), or shared_fs \"virtio-fs\"",
                                    kernel, path);
        return 0;
}
