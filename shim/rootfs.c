/* SPDX-License-Identifier: Apache-2.0 */
#include "rootfs.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/capability.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/fsuid.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "base/cleanup.h"
#include "base/fs-util.h"

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

/* ---- idmapped rootfs ---- */

struct shim_overlay *shim_overlay_free(struct shim_overlay *o)
{
        if (!o)
                return NULL;
        for (size_t i = 0; i < o->n_lower; i++)
                free(o->lower[i]);
        for (size_t i = 0; i < o->n_options; i++)
                free(o->options[i]);
        free(o->lower);
        free(o->options);
        free(o->upper);
        free(o->work);
        free(o);
        return NULL;
}

DEFINE_CLEANUP(struct shim_overlay *, shim_overlay_free)

static int layer_path(const char *what, const char *p, size_t len, char **ret,
                      struct us_error **err)
{
        if (len == 0 || p[0] != '/')
                return us_error_msg(err, EINVAL, "overlay %s \"%.*s\" is not an absolute path",
                                    what, (int)len, p);
        if (memchr(p, '\\', len))
                return us_error_msg(err, EINVAL, "overlay %s \"%.*s\": escapes are not supported",
                                    what, (int)len, p);
        if (len >= PATH_MAX)
                return us_error_msg(err, ENAMETOOLONG, "overlay %s too long", what);
        char *s = strndup(p, len);
        if (!s)
                return us_errorf(err, ENOMEM, "overlay options");
        *ret = s;
        return 0;
}

static int push(char ***v, size_t *n, char *s, struct us_error **err)
{
        char **nv = realloc(*v, (*n + 1) * sizeof(*nv));
        if (!nv) {
                free(s);
                return us_errorf(err, ENOMEM, "overlay options");
        }
        *v = nv;
        (*v)[(*n)++] = s;
        return 0;
}

int shim_overlay_parse(char *const *options, size_t n, struct shim_overlay **ret,
                       struct us_error **err)
{
        _cleanup_(shim_overlay_free_cleanupp) struct shim_overlay *o = calloc(1, sizeof(*o));
        _cleanup_free_ char *data = NULL;
        unsigned long propagation;
        if (!o)
                return us_errorf(err, ENOMEM, "overlay options");
        int r = shim_mount_options(options, n, &o->flags, &propagation, &data, err);
        if (r < 0)
                return r;
        bool has_lower = false;
        for (char *p = data, *next; p && *p; p = next) {
                char *comma = strchr(p, ',');
                next = comma ? comma + 1 : NULL;
                size_t len = comma ? (size_t)(comma - p) : strlen(p);
                if (len > 9 && !strncmp(p, "lowerdir=", 9)) {
                        if (has_lower)
                                return us_error_msg(err, EINVAL, "overlay: lowerdir given twice");
                        has_lower = true;
                        for (const char *l = p + 9, *end = p + len; l <= end;) {
                                const char *colon = memchr(l, ':', (size_t)(end - l));
                                size_t ll = colon ? (size_t)(colon - l) : (size_t)(end - l);
                                char *s = NULL;
                                if (o->n_lower == SHIM_OVERLAY_MAX_LOWER)
                                        return us_error_msg(err, E2BIG,
                                                            "overlay: more than %d lower layers",
                                                            SHIM_OVERLAY_MAX_LOWER);
                                if ((r = layer_path("lowerdir", l, ll, &s, err)) < 0 ||
                                    (r = push(&o->lower, &o->n_lower, s, err)) < 0)
                                        return r;
                                l += ll + 1;
                        }
                } else if (len >= 9 && !strncmp(p, "upperdir=", 9)) {
                        if (o->upper)
                                return us_error_msg(err, EINVAL, "overlay: upperdir given twice");
                        if ((r = layer_path("upperdir", p + 9, len - 9, &o->upper, err)) < 0)
                                return r;
                } else if (len >= 8 && !strncmp(p, "workdir=", 8)) {
                        if (o->work)
                                return us_error_msg(err, EINVAL, "overlay: workdir given twice");
                        if ((r = layer_path("workdir", p + 8, len - 8, &o->work, err)) < 0)
                                return r;
                } else {
                        char *s = strndup(p, len);
                        if (!s)
                                return us_errorf(err, ENOMEM, "overlay options");
                        if ((r = push(&o->options, &o->n_options, s, err)) < 0)
                                return r;
                }
        }
        if (!has_lower)
                return us_error_msg(err, EINVAL, "overlay: no lowerdir");
        if (!o->upper != !o->work)
                return us_error_msg(err, EINVAL, "overlay: upperdir and workdir go together");
        *ret = TAKE_PTR(o);
        return 0;
}

/* The filesystem of path, by name where it is one idmapped mounts are known
 * to be refused on, for a message an operator can act on. */
static void fs_name(const char *path, char *buf, size_t size)
{
        static const struct {
                unsigned long magic;
                const char *name;
        } names[] = {
                {0x794c7630, "overlay"}, {0x9fa0, "proc"},        {0x62656572, "sysfs"},
                {0x65735546, "fuse"},    {0x6969, "nfs"},         {0xff534d42, "cifs"},
                {0x1cd1, "devpts"},      {0x63677270, "cgroup2"}, {0x27e0eb, "cgroup"},
        };
        struct statfs sf;
        if (statfs(path, &sf) < 0) {
                snprintf(buf, size, "unknown");
                return;
        }
        for (size_t i = 0; i < US_ELEMENTSOF(names); i++)
                if ((unsigned long)sf.f_type == names[i].magic) {
                        snprintf(buf, size, "%s", names[i].name);
                        return;
                }
        snprintf(buf, size, "type 0x%lx", (unsigned long)sf.f_type);
}

int shim_idmapped_clone(const char *src, bool recursive, int userns_fd, bool readonly,
                        int *ret_tree, struct us_error **err)
{
        unsigned rec = recursive ? AT_RECURSIVE : 0;
        _cleanup_close_ int tree =
                open_tree(AT_FDCWD, src, OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | rec);
        if (tree < 0)
                return us_errorf(err, errno, "clone %s", src);
        struct mount_attr attr = {.attr_set = MOUNT_ATTR_IDMAP | (readonly ? MOUNT_ATTR_RDONLY : 0),
                                  .userns_fd = (uint64_t)userns_fd};
        if (mount_setattr(tree, "", AT_EMPTY_PATH | rec, &attr, sizeof(attr)) < 0) {
                int e = errno;
                char fs[32];
                fs_name(src, fs, sizeof(fs));
                return us_errorf(err, e,
                                 "idmap %s (its filesystem, %s, or one below it%s; an operator "
                                 "whose nodes need it sets sandbox.virtiofsd_unprivileged false)",
                                 src, fs, e == EINVAL ? ", does not support idmapped mounts" : "");
        }
        *ret_tree = TAKE_FD(tree);
        return 0;
}

/* The directory both upperdir and workdir are in (overlayfs wants them on
 * one mount: one idmapped clone of it), and their names below it. */
static int upper_parent(const struct shim_overlay *o, char *parent, size_t size,
                        const char **ret_upper, const char **ret_work, struct us_error **err)
{
        size_t len = strlen(o->upper);
        if (len >= size)
                return us_error_msg(err, ENAMETOOLONG, "overlay upperdir too long");
        memcpy(parent, o->upper, len + 1);
        for (;;) {
                char *slash = strrchr(parent, '/');
                if (!slash)
                        return us_error_msg(err, EINVAL, "overlay: no common parent");
                *slash = '\0';
                len = (size_t)(slash - parent);
                if (!strncmp(o->work, parent, len) && o->work[len] == '/')
                        break;
        }
        if (len == 0)
                return us_error_msg(err, EINVAL, "overlay: upperdir and workdir meet only at /");
        *ret_upper = o->upper + len + 1;
        *ret_work = o->work + len + 1;
        return 0;
}

/* overlayfs does its own work on the layers (work dirs, copy-up, whiteouts)
 * with the credentials of whoever creates it. Created by root, those go
 * through the idmapped layers as host uid 0, which no layer maps
 * (EOVERFLOW: overlayfs then falls back to read-only); created with fs ids
 * (uid, gid), ns 0, they are stored as 0. The fs capabilities that changing
 * the fsuid drops are raised again for the call, and every id and
 * capability is restored after it. The shim is single-threaded and fs ids
 * are per thread. */
static int overlay_create_as(int fs, uid_t uid, gid_t gid)
{
        struct __user_cap_header_struct hdr = {.version = _LINUX_CAPABILITY_VERSION_3};
        struct __user_cap_data_struct saved[2], raised[2];
        if (syscall(SYS_capget, &hdr, saved) < 0)
                return -errno;
        uid_t old_uid = (uid_t)setfsuid(uid);
        gid_t old_gid = (gid_t)setfsgid(gid);
        memcpy(raised, saved, sizeof(raised));
        for (size_t i = 0; i < 2; i++)
                raised[i].effective = raised[i].permitted;
        int r = 0;
        if (syscall(SYS_capset, &hdr, raised) < 0 ||
            fsconfig(fs, FSCONFIG_CMD_CREATE, NULL, NULL, 0) < 0)
                r = -errno;
        (void)setfsgid(old_gid);
        (void)setfsuid(old_uid);
        (void)syscall(SYS_capset, &hdr, saved);
        return r;
}

static unsigned long long mount_attrs_of(unsigned long flags)
{
        unsigned long long a = 0;
        if (flags & MS_RDONLY)
                a |= MOUNT_ATTR_RDONLY;
        if (flags & MS_NOSUID)
                a |= MOUNT_ATTR_NOSUID;
        if (flags & MS_NODEV)
                a |= MOUNT_ATTR_NODEV;
        if (flags & MS_NOEXEC)
                a |= MOUNT_ATTR_NOEXEC;
        if (flags & MS_NOATIME)
                a |= MOUNT_ATTR_NOATIME;
        else if (flags & MS_STRICTATIME)
                a |= MOUNT_ATTR_STRICTATIME;
        if (flags & MS_NODIRATIME)
                a |= MOUNT_ATTR_NODIRATIME;
        return a;
}

/* Closes the layers' detached trees. */
static void close_all(int *fds, size_t n)
{
        for (size_t i = 0; fds && i < n; i++)
                us_close(fds[i]);
        free(fds);
}

static int overlay_idmapped(const Containerd__Types__Mount *m, int userns_fd, uid_t uid, gid_t gid,
                            int *ret_tree, struct us_error **err)
{
        _cleanup_(shim_overlay_free_cleanupp) struct shim_overlay *o = NULL;
        int r = shim_overlay_parse(m->options, m->n_options, &o, err);
        if (r < 0)
                return r;
        _cleanup_close_ int fs = fsopen("overlay", FSOPEN_CLOEXEC);
        if (fs < 0)
                return us_errorf(err, errno, "fsopen overlay");
        /* Every layer's tree stays open until overlayfs has its own private
         * clone of it (at create): a detached tree whose last fd closes is
         * unmounted, and overlayfs refuses to clone an unmounted layer. */
        size_t n = 0;
        int *trees = calloc(o->n_lower + 1, sizeof(*trees));
        if (!trees)
                return us_errorf(err, ENOMEM, "overlay layers");
        for (size_t i = 0; i < o->n_lower; i++) {
                r = shim_idmapped_clone(o->lower[i], false, userns_fd, false, &trees[n], err);
                if (r < 0)
                        goto out;
                if (fsconfig(fs, FSCONFIG_SET_FD, "lowerdir+", NULL, trees[n++]) < 0) {
                        /* Before 6.13 overlayfs takes layers by path only. */
                        r = us_errorf(err, errno, "overlay: lower layer %s%s", o->lower[i],
                                      errno == EINVAL ? " (by fd: needs Linux 6.13, else "
                                                        "sandbox.virtiofsd_unprivileged false)"
                                                      : "");
                        goto out;
                }
        }
        if (o->upper) {
                char parent[PATH_MAX];
                const char *upper = NULL, *work = NULL;
                _cleanup_close_ int ufd = -1, wfd = -1;
                if ((r = upper_parent(o, parent, sizeof(parent), &upper, &work, err)) < 0 ||
                    (r = shim_idmapped_clone(parent, false, userns_fd, false, &trees[n], err)) < 0)
                        goto out;
                int tree = trees[n++];
                ufd = us_openat_beneath(tree, upper, O_PATH | O_DIRECTORY, 0);
                wfd = us_openat_beneath(tree, work, O_PATH | O_DIRECTORY, 0);
                if (ufd < 0 || wfd < 0) {
                        r = us_errorf(err, -(ufd < 0 ? ufd : wfd), "overlay: open %s",
                                      ufd < 0 ? o->upper : o->work);
                        goto out;
                }
                if (fsconfig(fs, FSCONFIG_SET_FD, "upperdir", NULL, ufd) < 0 ||
                    fsconfig(fs, FSCONFIG_SET_FD, "workdir", NULL, wfd) < 0) {
                        r = us_errorf(err, errno, "overlay: upper layer %s", o->upper);
                        goto out;
                }
        }
        for (size_t i = 0; i < o->n_options; i++) {
                char *eq = strchr(o->options[i], '=');
                if (eq)
                        *eq = '\0';
                r = eq ? fsconfig(fs, FSCONFIG_SET_STRING, o->options[i], eq + 1, 0)
                       : fsconfig(fs, FSCONFIG_SET_FLAG, o->options[i], NULL, 0);
                if (eq)
                        *eq = '=';
                if (r < 0) {
                        r = us_errorf(err, errno, "overlay option %s", o->options[i]);
                        goto out;
                }
        }
        r = overlay_create_as(fs, uid, gid);
        if (r < 0) {
                r = us_errorf(err, -r, "create overlay over idmapped layers");
                goto out;
        }
        int tree = fsmount(fs, FSMOUNT_CLOEXEC, (unsigned)mount_attrs_of(o->flags));
        if (tree < 0) {
                r = us_errorf(err, errno, "fsmount overlay");
                goto out;
        }
        *ret_tree = tree;
        r = 0;
out:
        close_all(trees, n);
        return r;
}

static bool is_bind(const Containerd__Types__Mount *m)
{
        if (m->type && !strcmp(m->type, "bind"))
                return true;
        for (size_t i = 0; i < m->n_options; i++)
                if (!strcmp(m->options[i], "bind") || !strcmp(m->options[i], "rbind"))
                        return true;
        return false;
}

int shim_rootfs_idmapped(Containerd__Types__Mount *const *mounts, size_t n, const char *rootfs_dir,
                         int userns_fd, uid_t uid, gid_t gid, int *ret_tree, struct us_error **err)
{
        if (n == 0)
                return shim_idmapped_clone(rootfs_dir, true, userns_fd, false, ret_tree, err);
        if (n > 1)
                return us_error_msg(err, EOPNOTSUPP,
                                    "a rootfs of %zu mounts cannot be idmapped (one overlay or "
                                    "one bind can)",
                                    n);
        const Containerd__Types__Mount *m = mounts[0];
        if (m->type && !strcmp(m->type, "overlay"))
                return overlay_idmapped(m, userns_fd, uid, gid, ret_tree, err);
        if (is_bind(m) && m->source) {
                unsigned long flags, propagation;
                _cleanup_free_ char *data = NULL;
                int r = shim_mount_options(m->options, m->n_options, &flags, &propagation, &data,
                                           err);
                if (r < 0)
                        return r;
                return shim_idmapped_clone(m->source, flags & MS_REC, userns_fd, flags & MS_RDONLY,
                                           ret_tree, err);
        }
        return us_error_msg(err, EOPNOTSUPP, "a rootfs mount of type %s cannot be idmapped",
                            m->type ? m->type : "(none)");
}
