/* SPDX-License-Identifier: Apache-2.0 */
#include "rootfs.h"

#include <errno.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>

#include "cleanup.h"

struct mount_flag {
        const char *name;
        bool clear;
        unsigned long flag;
};

static const struct mount_flag mount_flags[] = {
        {"async", true, MS_SYNCHRONOUS},
        {"atime", true, MS_NOATIME},
        {"bind", false, MS_BIND},
        {"defaults", false, 0},
        {"dev", true, MS_NODEV},
        {"diratime", true, MS_NODIRATIME},
        {"dirsync", false, MS_DIRSYNC},
        {"exec", true, MS_NOEXEC},
        {"mand", false, MS_MANDLOCK},
        {"noatime", false, MS_NOATIME},
        {"nodev", false, MS_NODEV},
        {"nodiratime", false, MS_NODIRATIME},
        {"noexec", false, MS_NOEXEC},
        {"nomand", true, MS_MANDLOCK},
        {"norelatime", true, MS_RELATIME},
        {"nostrictatime", true, MS_STRICTATIME},
        {"nosuid", false, MS_NOSUID},
        {"rbind", false, MS_BIND | MS_REC},
        {"relatime", false, MS_RELATIME},
        {"remount", false, MS_REMOUNT},
        {"ro", false, MS_RDONLY},
        {"rw", true, MS_RDONLY},
        {"strictatime", false, MS_STRICTATIME},
        {"suid", true, MS_NOSUID},
        {"sync", false, MS_SYNCHRONOUS},
};

static const struct mount_flag propagation_flags[] = {
        {"private", false, MS_PRIVATE},       {"rprivate", false, MS_PRIVATE | MS_REC},
        {"shared", false, MS_SHARED},         {"rshared", false, MS_SHARED | MS_REC},
        {"slave", false, MS_SLAVE},           {"rslave", false, MS_SLAVE | MS_REC},
        {"unbindable", false, MS_UNBINDABLE}, {"runbindable", false, MS_UNBINDABLE | MS_REC},
};

int shim_mount_options(char *const *options, size_t n, unsigned long *ret_flags,
                       unsigned long *ret_propagation, char **ret_data, struct us_error **err)
{
        unsigned long flags = 0, propagation = 0;
        _cleanup_free_ char *data = NULL;
        size_t data_len = 0;

        for (size_t i = 0; i < n; i++) {
                const char *o = options[i];
                bool known = false;
                for (size_t j = 0; j < US_ELEMENTSOF(mount_flags); j++) {
                        if (strcmp(o, mount_flags[j].name) == 0) {
                                if (mount_flags[j].clear)
                                        flags &= ~mount_flags[j].flag;
                                else
                                        flags |= mount_flags[j].flag;
                                known = true;
                                break;
                        }
                }
                for (size_t j = 0; !known && j < US_ELEMENTSOF(propagation_flags); j++) {
                        if (strcmp(o, propagation_flags[j].name) == 0) {
                                propagation |= propagation_flags[j].flag;
                                known = true;
                        }
                }
                if (known)
                        continue;
                size_t len = strlen(o);
                if (len == 0)
                        continue;
                if (data_len + len + 2 > 64 * 1024)
                        return us_error_msg(err, E2BIG, "mount options too long");
                char *nd = realloc(data, data_len + len + 2);
                if (!nd)
                        return us_errorf(err, ENOMEM, "mount options");
                data = nd;
                if (data_len)
                        data[data_len++] = ',';
                memcpy(data + data_len, o, len + 1);
                data_len += len;
        }
        *ret_flags = flags;
        *ret_propagation = propagation;
        *ret_data = TAKE_PTR(data);
        return 0;
}

static int rootfs_path(const char *bundle, char *buf, size_t size, struct us_error **err)
{
        int n = snprintf(buf, size, "%s/rootfs", bundle);
        if (n < 0 || (size_t)n >= size)
                return us_error_msg(err, ENAMETOOLONG, "bundle path too long");
        return 0;
}

int shim_rootfs_mount(const char *bundle, Containerd__Types__Mount *const *mounts, size_t n,
                      struct us_error **err)
{
        char target[PATH_MAX];
        int r = rootfs_path(bundle, target, sizeof(target), err);
        if (r < 0)
                return r;
        if (n == 0)
                return 0;
        if (mkdir(target, 0711) < 0 && errno != EEXIST)
                return us_errorf(err, errno, "create %s", target);

        for (size_t i = 0; i < n; i++) {
                const Containerd__Types__Mount *m = mounts[i];
                unsigned long flags, propagation;
                _cleanup_free_ char *data = NULL;
                r = shim_mount_options(m->options, m->n_options, &flags, &propagation, &data, err);
                if (r < 0)
                        goto fail;
                const char *type = m->type && *m->type ? m->type : NULL;
                /* A read-only bind needs a second, remounting call. */
                unsigned long first = flags;
                if (flags & MS_BIND)
                        first &= ~(unsigned long)MS_RDONLY;
                if (mount(m->source, target, type, first, data) < 0) {
                        r = us_errorf(err, errno, "mount %s (%s) on %s", m->source,
                                      type ? type : "bind", target);
                        goto fail;
                }
                if ((flags & MS_BIND) && (flags & MS_RDONLY) &&
                    mount(NULL, target, NULL, flags | MS_REMOUNT, NULL) < 0) {
                        r = us_errorf(err, errno, "remount %s read-only", target);
                        goto fail;
                }
                if (propagation && mount(NULL, target, NULL, propagation, NULL) < 0) {
                        r = us_errorf(err, errno, "set propagation of %s", target);
                        goto fail;
                }
        }
        return 0;
fail:
        (void)shim_rootfs_unmount(bundle, NULL);
        return r;
}

int shim_rootfs_unmount(const char *bundle, struct us_error **err)
{
        char target[PATH_MAX];
        int r = rootfs_path(bundle, target, sizeof(target), err);
        if (r < 0)
                return r;
        /* Stacked mounts: unmount until nothing is mounted there any more. */
        for (int i = 0; i < 64; i++) {
                if (umount2(target, MNT_DETACH | UMOUNT_NOFOLLOW) < 0) {
                        if (errno == EINVAL || errno == ENOENT)
                                return 0;
                        return us_errorf(err, errno, "unmount %s", target);
                }
        }
        return us_error_msg(err, EBUSY, "unmount %s: still mounted after 64 attempts", target);
}
