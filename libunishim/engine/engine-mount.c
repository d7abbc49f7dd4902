/* SPDX-License-Identifier: Apache-2.0 */
/* The container's mount namespace: rootfs, spec mounts, devices, pivot_root,
 * masked and read-only paths, sysctls, hostname. Runs in the child. */
#include "engine-internal.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/openat2.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "base/cleanup.h"
#include "base/fs-util.h"

struct mount_opt {
        const char *name;
        bool clear;
        unsigned long flag;
        bool propagation;
};

static const struct mount_opt mount_opts[] = {
        {"defaults", false, 0, false},
        {"ro", false, MS_RDONLY, false},
        {"rw", true, MS_RDONLY, false},
        {"nosuid", false, MS_NOSUID, false},
        {"suid", true, MS_NOSUID, false},
        {"nodev", false, MS_NODEV, false},
        {"dev", true, MS_NODEV, false},
        {"noexec", false, MS_NOEXEC, false},
        {"exec", true, MS_NOEXEC, false},
        {"sync", false, MS_SYNCHRONOUS, false},
        {"async", true, MS_SYNCHRONOUS, false},
        {"dirsync", false, MS_DIRSYNC, false},
        {"remount", false, MS_REMOUNT, false},
        {"mand", false, MS_MANDLOCK, false},
        {"nomand", true, MS_MANDLOCK, false},
        {"atime", true, MS_NOATIME, false},
        {"noatime", false, MS_NOATIME, false},
        {"diratime", true, MS_NODIRATIME, false},
        {"nodiratime", false, MS_NODIRATIME, false},
        {"relatime", false, MS_RELATIME, false},
        {"norelatime", true, MS_RELATIME, false},
        {"strictatime", false, MS_STRICTATIME, false},
        {"nostrictatime", true, MS_STRICTATIME, false},
        {"bind", false, MS_BIND, false},
        {"rbind", false, MS_BIND | MS_REC, false},
        {"private", false, MS_PRIVATE, true},
        {"rprivate", false, MS_PRIVATE | MS_REC, true},
        {"shared", false, MS_SHARED, true},
        {"rshared", false, MS_SHARED | MS_REC, true},
        {"slave", false, MS_SLAVE, true},
        {"rslave", false, MS_SLAVE | MS_REC, true},
        {"unbindable", false, MS_UNBINDABLE, true},
        {"runbindable", false, MS_UNBINDABLE | MS_REC, true},
        {"tmpcopyup", false, 0, false}, /* runc extension: ignored */
};

struct parsed_opts {
        unsigned long flags;
        unsigned long pflags;
        char data[4096];
};

static int parse_mount_options(char **options, struct parsed_opts *o, struct us_error **err)
{
        size_t dlen = 0;
        o->flags = 0;
        o->pflags = 0;
        o->data[0] = 0;
        for (char **opt = options; opt && *opt; opt++) {
                const struct mount_opt *m = NULL;
                for (size_t i = 0; i < US_ELEMENTSOF(mount_opts); i++)
                        if (strcmp(mount_opts[i].name, *opt) == 0)
                                m = &mount_opts[i];
                if (m && m->propagation) {
                        o->pflags |= m->flag;
                } else if (m && m->clear) {
                        o->flags &= ~m->flag;
                } else if (m) {
                        o->flags |= m->flag;
                } else {
                        size_t l = strlen(*opt);
                        if (dlen + l + 2 > sizeof(o->data))
                                return us_error_msg(err, E2BIG, "mount options too long");
                        if (dlen)
                                o->data[dlen++] = ',';
                        memcpy(o->data + dlen, *opt, l + 1);
                        dlen += l;
                }
        }
        return 0;
}

/* Opens path inside the rootfs (us_openat_in_root). */
static int root_open(int rootfd, const char *path, int flags)
{
        return us_openat_in_root(rootfd, path, flags);
}

/* Opens (O_PATH) path inside the rootfs, creating missing directories and,
 * for the last component, a directory or an empty file. */
static int root_mkpath(int rootfd, const char *path, bool leaf_is_dir, mode_t mode, int *ret_fd,
                       struct us_error **err)
{
        int fd = root_open(rootfd, path, O_PATH);
        if (fd >= 0) {
                *ret_fd = fd;
                return 0;
        }
        if (fd != -ENOENT)
                return us_errorf(err, -fd, "resolve %s in rootfs", path);

        char buf[PATH_MAX];
        if (strlen(path) >= sizeof(buf))
                return us_error_msg(err, ENAMETOOLONG, "path too long: %s", path);
        strcpy(buf, path);
        size_t len = strlen(buf);
        /* Walk the prefixes, creating each missing one. */
        for (size_t i = 1; i <= len; i++) {
                if (buf[i] != '/' && buf[i] != 0)
                        continue;
                if (buf[i - 1] == '/')
                        continue;
                char saved = buf[i];
                buf[i] = 0;
                int cfd = root_open(rootfd, buf, O_PATH);
                if (cfd == -ENOENT) {
                        char *slash = strrchr(buf, '/');
                        const char *name = slash ? slash + 1 : buf;
                        _cleanup_close_ int pfd = -1;
                        if (slash && slash != buf) {
                                *slash = 0;
                                pfd = root_open(rootfd, buf, O_PATH | O_DIRECTORY);
                                *slash = '/';
                        } else {
                                pfd = fcntl(rootfd, F_DUPFD_CLOEXEC, 3);
                        }
                        if (pfd < 0)
                                return us_errorf(err, pfd == -1 ? errno : -pfd,
                                                 "resolve parent of %s in rootfs", buf);
                        int r;
                        if (saved == 0 && !leaf_is_dir)
                                r = mknodat(pfd, name, S_IFREG | (mode & 07777), 0);
                        else
                                r = mkdirat(pfd, name, saved == 0 ? mode : 0755);
                        if (r < 0 && errno != EEXIST)
                                return us_errorf(err, errno, "create %s in rootfs", buf);
                        cfd = root_open(rootfd, buf, O_PATH);
                }
                if (cfd < 0)
                        return us_errorf(err, -cfd, "resolve %s in rootfs", buf);
                buf[i] = saved;
                if (saved == 0) {
                        *ret_fd = cfd;
                        return 0;
                }
                us_close(cfd);
        }
        return us_error_msg(err, EINVAL, "invalid path %s", path);
}

static void fd_path(int fd, char *buf, size_t size)
{
        snprintf(buf, size, "/proc/self/fd/%d", fd);
}

static unsigned long locked_flags(const char *path)
{
        struct statvfs sv;
        unsigned long f = 0;
        if (statvfs(path, &sv) < 0)
                return 0;
        if (sv.f_flag & ST_NOSUID)
                f |= MS_NOSUID;
        if (sv.f_flag & ST_NODEV)
                f |= MS_NODEV;
        if (sv.f_flag & ST_NOEXEC)
                f |= MS_NOEXEC;
        if (sv.f_flag & ST_RDONLY)
                f |= MS_RDONLY;
        if (sv.f_flag & ST_NOATIME)
                f |= MS_NOATIME;
        if (sv.f_flag & ST_RELATIME)
                f |= MS_RELATIME;
        return f;
}

/* Bind mounts ignore flags other than MS_REC: apply them with a remount. In
 * a user ns, flags locked by the source mount (nosuid, nodev, ...) must be
 * kept or the remount is refused. */
static int bind_remount(const char *target, unsigned long flags, const char *what,
                        struct us_error **err)
{
        unsigned long f = (flags & ~(MS_REC | MS_REMOUNT | MS_BIND)) | MS_BIND | MS_REMOUNT;
        if (mount(NULL, target, NULL, f, NULL) == 0)
                return 0;
        if (errno == EPERM) {
                unsigned long keep = locked_flags(target) & ~MS_RDONLY;
                if (mount(NULL, target, NULL, f | keep, NULL) == 0)
                        return 0;
        }
        return us_errorf(err, errno, "remount %s with flags %#lx", what, f);
}

static bool is_bind(const struct us_oci_mount *m, const struct parsed_opts *o)
{
        return (o->flags & MS_BIND) || (m->type && strcmp(m->type, "bind") == 0);
}

static int do_mount(struct engine_init_ctx *ctx, int rootfd, const struct us_oci_mount *m,
                    struct us_error **err)
{
        struct parsed_opts o;
        int r;
        const char *dest = m->destination;
        if (!dest || dest[0] != '/')
                return us_error_msg(err, EINVAL, "mount destination %s is not absolute",
                                    dest ? dest : "(null)");
        if ((r = parse_mount_options(m->options, &o, err)) < 0)
                return us_error_wrap(err, r, "mount %s", dest);

        const char *type = m->type;
        if (type && strcmp(type, "cgroup") == 0) {
                _cleanup_close_ int tfd = -1;
                if ((r = root_mkpath(rootfd, dest, true, 0755, &tfd, err)) < 0)
                        return r;
                _cleanup_free_ char *host = NULL;
                if (asprintf(&host, "%s%s", ctx->cfg->rootfs, dest) < 0)
                        return us_errorf(err, ENOMEM, "mount cgroup");
                r = us_cgroup_mount(ctx->cg, host, o.flags & MS_RDONLY, err);
                if (r < 0)
                        return us_error_wrap(err, r, "mount cgroup on %s", dest);
                return 0;
        }

        char target[64];
        _cleanup_close_ int tfd = -1;
        if (is_bind(m, &o)) {
                _cleanup_free_ char *src = NULL;
                if (!m->source)
                        return us_error_msg(err, EINVAL, "bind mount on %s has no source", dest);
                if (m->source[0] == '/')
                        src = strdup(m->source);
                else if (asprintf(&src, "%s/%s", ctx->cfg->bundle, m->source) < 0)
                        src = NULL;
                if (!src)
                        return us_errorf(err, ENOMEM, "mount %s", dest);
                struct stat st;
                if (stat(src, &st) < 0)
                        return us_errorf(err, errno, "bind mount %s on %s: stat source", src, dest);
                if ((r = root_mkpath(rootfd, dest, S_ISDIR(st.st_mode), 0755, &tfd, err)) < 0)
                        return us_error_wrap(err, r, "bind mount %s on %s", src, dest);
                fd_path(tfd, target, sizeof(target));
                if (mount(src, target, NULL, MS_BIND | (o.flags & MS_REC), NULL) < 0)
                        return us_errorf(err, errno, "bind mount %s on %s", src, dest);
                if (o.flags & ~(MS_BIND | MS_REC | MS_REMOUNT)) {
                        /* The remount goes to the new mount on top of tfd's
                         * dentry: reopen to see it. */
                        tfd = us_close(tfd);
                        tfd = root_open(rootfd, dest, O_PATH);
                        if (tfd < 0)
                                return us_errorf(err, -tfd, "reopen %s", dest);
                        fd_path(tfd, target, sizeof(target));
                        if ((r = bind_remount(target, o.flags, dest, err)) < 0)
                                return r;
                }
        } else {
                if (!type)
                        return us_error_msg(err, EINVAL, "mount on %s has no type", dest);
                if ((r = root_mkpath(rootfd, dest, true, 0755, &tfd, err)) < 0)
                        return us_error_wrap(err, r, "mount %s on %s", type, dest);
                fd_path(tfd, target, sizeof(target));
                const char *src = m->source ? m->source : type;
                if (mount(src, target, type, o.flags, o.data[0] ? o.data : NULL) < 0) {
                        int e = errno;
                        /* sysfs needs a net ns owned by our user ns, mqueue
                         * an ipc ns: like runc, fall back to binding the
                         * host's, read-only for sysfs. */
                        const char *fallback = strcmp(type, "sysfs") == 0    ? "/sys"
                                               : strcmp(type, "mqueue") == 0 ? "/dev/mqueue"
                                                                             : NULL;
                        if (fallback && ctx->in_userns && (e == EPERM || e == EBUSY) &&
                            mount(fallback, target, NULL, MS_BIND | MS_REC, NULL) == 0) {
                                tfd = us_close(tfd);
                                tfd = root_open(rootfd, dest, O_PATH);
                                if (tfd < 0)
                                        return us_errorf(err, -tfd, "reopen %s", dest);
                                fd_path(tfd, target, sizeof(target));
                                return bind_remount(target,
                                                    o.flags | (fallback[1] == 's' ? MS_RDONLY : 0),
                                                    dest, err);
                        }
                        return us_errorf(err, e, "mount %s on %s", type, dest);
                }
        }
        if (o.pflags) {
                tfd = us_close(tfd);
                tfd = root_open(rootfd, dest, O_PATH);
                if (tfd < 0)
                        return us_errorf(err, -tfd, "reopen %s", dest);
                fd_path(tfd, target, sizeof(target));
                if (mount(NULL, target, NULL, o.pflags, NULL) < 0)
                        return us_errorf(err, errno, "set propagation of %s", dest);
        }
        return 0;
}

struct default_dev {
        const char *path;
        unsigned major, minor;
};

static const struct default_dev default_devs[] = {
        {"/dev/null", 1, 3},   {"/dev/zero", 1, 5},    {"/dev/full", 1, 7},
        {"/dev/random", 1, 8}, {"/dev/urandom", 1, 9}, {"/dev/tty", 5, 0},
};

static int make_device(struct engine_init_ctx *ctx, int rootfd, const char *path, char type,
                       int64_t major, int64_t minor, mode_t mode, uid_t uid, gid_t gid,
                       struct us_error **err)
{
        if (path[0] != '/' || strstr(path, "/../") || strcmp(path, "/..") == 0)
                return us_error_msg(err, EINVAL, "invalid device path %s", path);
        if (ctx->in_userns) {
                /* mknod is not allowed in a user ns: bind the host's node. */
                _cleanup_close_ int tfd = -1;
                char target[64];
                int r = root_mkpath(rootfd, path, false, 0644, &tfd, err);
                if (r < 0)
                        return us_error_wrap(err, r, "create device %s", path);
                fd_path(tfd, target, sizeof(target));
                if (mount(path, target, NULL, MS_BIND, NULL) < 0)
                        return us_errorf(err, errno, "bind mount device %s", path);
                return 0;
        }
        mode_t fmt;
        switch (type) {
        case 'c':
        case 'u':
                fmt = S_IFCHR;
                break;
        case 'b':
                fmt = S_IFBLK;
                break;
        case 'p':
                fmt = S_IFIFO;
                break;
        default:
                return us_error_msg(err, EINVAL, "device %s: unknown type '%c'", path, type);
        }
        const char *slash = strrchr(path, '/');
        _cleanup_close_ int pfd = -1;
        if (slash == path) {
                pfd = fcntl(rootfd, F_DUPFD_CLOEXEC, 3);
        } else {
                char parent[PATH_MAX];
                snprintf(parent, sizeof(parent), "%.*s", (int)(slash - path), path);
                int r = root_mkpath(rootfd, parent, true, 0755, &pfd, err);
                if (r < 0)
                        return us_error_wrap(err, r, "create device %s", path);
        }
        if (pfd < 0)
                return us_errorf(err, errno, "create device %s", path);
        const char *name = slash + 1;
        (void)unlinkat(pfd, name, 0);
        if (mknodat(pfd, name, fmt | (mode & 07777), makedev(major, minor)) < 0)
                return us_errorf(err, errno, "mknod %s", path);
        if (fchownat(pfd, name, uid, gid, AT_SYMLINK_NOFOLLOW) < 0)
                return us_errorf(err, errno, "chown %s", path);
        return 0;
}

static int setup_dev(struct engine_init_ctx *ctx, int rootfd, struct us_error **err)
{
        const struct us_oci_linux *l = &ctx->spec->linux_;
        int r;
        for (size_t i = 0; i < US_ELEMENTSOF(default_devs); i++) {
                bool overridden = false;
                for (size_t k = 0; k < l->n_devices; k++)
                        overridden |= strcmp(l->devices[k].path, default_devs[i].path) == 0;
                if (overridden)
                        continue;
                r = make_device(ctx, rootfd, default_devs[i].path, 'c', default_devs[i].major,
                                default_devs[i].minor, 0666, 0, 0, err);
                if (r < 0)
                        return r;
        }
        for (size_t k = 0; k < l->n_devices; k++) {
                const struct us_oci_device *d = &l->devices[k];
                r = make_device(ctx, rootfd, d->path, d->type, d->major, d->minor,
                                d->has_file_mode ? d->file_mode : 0666, d->has_uid ? d->uid : 0,
                                d->has_gid ? d->gid : 0, err);
                if (r < 0)
                        return r;
        }

        _cleanup_close_ int devfd = -1;
        if ((r = root_mkpath(rootfd, "/dev", true, 0755, &devfd, err)) < 0)
                return r;
        (void)unlinkat(devfd, "ptmx", 0);
        if (symlinkat("pts/ptmx", devfd, "ptmx") < 0)
                return us_errorf(err, errno, "symlink /dev/ptmx");
        static const char *const links[][2] = {{"/proc/self/fd", "fd"},
                                               {"/proc/self/fd/0", "stdin"},
                                               {"/proc/self/fd/1", "stdout"},
                                               {"/proc/self/fd/2", "stderr"},
                                               {"/proc/kcore", "core"}};
        for (size_t i = 0; i < US_ELEMENTSOF(links); i++)
                if (symlinkat(links[i][0], devfd, links[i][1]) < 0 && errno != EEXIST)
                        return us_errorf(err, errno, "symlink /dev/%s", links[i][1]);
        if (mkdirat(devfd, "shm", 01777) < 0 && errno != EEXIST)
                return us_errorf(err, errno, "mkdir /dev/shm");
        if (mkdirat(devfd, "pts", 0755) < 0 && errno != EEXIST)
                return us_errorf(err, errno, "mkdir /dev/pts");
        return 0;
}

static unsigned long propagation_flags(const char *s)
{
        for (size_t i = 0; i < US_ELEMENTSOF(mount_opts); i++)
                if (mount_opts[i].propagation && strcmp(mount_opts[i].name, s) == 0)
                        return mount_opts[i].flag;
        return 0;
}

/* Makes the mount that holds path private: the nearest ancestor of path
 * (path included) that is a mount point, the only place where a change of
 * propagation does not fail with EINVAL. */
static int make_holder_private(const char *path, struct us_error **err)
{
        char buf[PATH_MAX];
        if (!realpath(path, buf))
                return us_errorf(err, errno, "resolve rootfs %s", path);
        for (;;) {
                if (mount(NULL, buf, NULL, MS_PRIVATE, NULL) == 0)
                        return 0;
                if (errno != EINVAL || strcmp(buf, "/") == 0)
                        return us_errorf(err, errno, "make the mount holding %s private", path);
                char *slash = strrchr(buf, '/');
                slash[slash == buf ? 1 : 0] = '\0';
        }
}

int engine_rootfs_prepare(struct engine_init_ctx *ctx, struct us_error **err)
{
        const struct us_oci_spec *spec = ctx->spec;
        const char *rootfs = ctx->cfg->rootfs;
        int r;

        /* Like runc: "/" becomes rslave, or what rootfsPropagation says, so
         * that nothing we mount propagates back to the host. rshared keeps
         * the copies of the host's shared mounts in their peer groups: only
         * then does an rshared bind of one (a Bidirectional volume) carry
         * the container's mounts back to the host; made rslave first, the
         * bind would be a slave and its own new peer group would reach
         * nothing outside. */
        unsigned long rootprop = MS_SLAVE | MS_REC;
        if (spec->linux_.rootfs_propagation && *spec->linux_.rootfs_propagation) {
                rootprop = propagation_flags(spec->linux_.rootfs_propagation);
                if (!rootprop)
                        return us_error_msg(err, EINVAL, "unknown rootfsPropagation %s",
                                            spec->linux_.rootfs_propagation);
        }
        if (mount(NULL, "/", NULL, rootprop, NULL) < 0)
                return us_errorf(err, errno, "make / %s",
                                 spec->linux_.rootfs_propagation ? spec->linux_.rootfs_propagation
                                                                 : "rslave");
        /* Where shared mounts remain, the one holding the rootfs must not be
         * one of them: the rootfs bind below would propagate to the host,
         * and pivot_root refuses a new root whose parent is shared. Mounts
         * made later land on the rootfs bind, which is private. */
        if ((!(rootprop & MS_REC) || (rootprop & MS_SHARED)) &&
            (r = make_holder_private(rootfs, err)) < 0)
                return r;
        /* pivot_root needs the new root to be a mount point. */
        if (mount(rootfs, rootfs, NULL, MS_BIND | MS_REC, NULL) < 0)
                return us_errorf(err, errno, "bind mount rootfs %s", rootfs);
        if (mount(NULL, rootfs, NULL, MS_PRIVATE, NULL) < 0)
                return us_errorf(err, errno, "make rootfs private");

        _cleanup_close_ int rootfd = open(rootfs, O_PATH | O_DIRECTORY | O_CLOEXEC);
        if (rootfd < 0)
                return us_errorf(err, errno, "open rootfs %s", rootfs);

        bool dev_bound = false;
        for (size_t i = 0; i < spec->n_mounts; i++) {
                const struct us_oci_mount *m = &spec->mounts[i];
                if ((r = do_mount(ctx, rootfd, m, err)) < 0)
                        return r;
                if (m->destination && strcmp(m->destination, "/dev") == 0) {
                        struct parsed_opts o;
                        if (parse_mount_options(m->options, &o, NULL) == 0 && is_bind(m, &o))
                                dev_bound = true;
                }
        }
        if (!dev_bound && (r = setup_dev(ctx, rootfd, err)) < 0)
                return r;
        return 0;
}

int engine_rootfs_pivot(const char *rootfs, struct us_error **err)
{
        _cleanup_close_ int oldroot = open("/", O_DIRECTORY | O_RDONLY | O_CLOEXEC);
        if (oldroot < 0)
                return us_errorf(err, errno, "open /");
        _cleanup_close_ int newroot = open(rootfs, O_DIRECTORY | O_RDONLY | O_CLOEXEC);
        if (newroot < 0)
                return us_errorf(err, errno, "open rootfs %s", rootfs);
        if (fchdir(newroot) < 0)
                return us_errorf(err, errno, "chdir to rootfs");
        /* pivot_root(".", ".") stacks the old root on top of the new one;
         * detaching "." afterwards removes it without needing a directory
         * for it inside the rootfs. */
        if (syscall(SYS_pivot_root, ".", ".") < 0) {
                /* The current root is an initramfs "rootfs" (a caller
                 * running from one): it cannot be pivoted away. Move the
                 * rootfs over / and chroot, as runc's no-pivot mode does;
                 * that root is escapable by a process with CAP_SYS_ADMIN.
                 * The guest agent leaves its initramfs at boot so that its
                 * containers never get here (docs/guest.md). */
                if (errno != EINVAL)
                        return us_errorf(err, errno, "pivot_root to %s", rootfs);
                if (mount(".", "/", NULL, MS_MOVE, NULL) < 0)
                        return us_errorf(err, errno, "move rootfs %s to /", rootfs);
                if (chroot(".") < 0)
                        return us_errorf(err, errno, "chroot to %s", rootfs);
                if (chdir("/") < 0)
                        return us_errorf(err, errno, "chdir /");
                return 0;
        }
        if (fchdir(oldroot) < 0)
                return us_errorf(err, errno, "chdir to old root");
        /* Keep the unmount from propagating to the host. */
        if (mount(NULL, ".", NULL, MS_SLAVE | MS_REC, NULL) < 0)
                return us_errorf(err, errno, "make old root rslave");
        if (umount2(".", MNT_DETACH) < 0)
                return us_errorf(err, errno, "unmount old root");
        if (chdir("/") < 0)
                return us_errorf(err, errno, "chdir /");
        return 0;
}

static int mask_path(const char *path, struct us_error **err)
{
        if (mount("/dev/null", path, NULL, MS_BIND, NULL) == 0)
                return 0;
        if (errno == ENOENT)
                return 0;
        if (errno == ENOTDIR) {
                if (mount("tmpfs", path, "tmpfs", MS_RDONLY, "size=0,mode=0755") == 0)
                        return 0;
        }
        return us_errorf(err, errno, "mask path %s", path);
}

static int readonly_path(const char *path, struct us_error **err)
{
        if (mount(path, path, NULL, MS_BIND | MS_REC, NULL) < 0) {
                if (errno == ENOENT)
                        return 0;
                return us_errorf(err, errno, "bind mount read-only path %s", path);
        }
        unsigned long f = MS_BIND | MS_REMOUNT | MS_RDONLY | MS_REC;
        if (mount(NULL, path, NULL, f, NULL) == 0)
                return 0;
        if (errno == EPERM && mount(NULL, path, NULL, f | locked_flags(path), NULL) == 0)
                return 0;
        return us_errorf(err, errno, "remount %s read-only", path);
}

static int set_sysctl(struct engine_init_ctx *ctx, const struct us_oci_kv *kv,
                      struct us_error **err)
{
        const char *k = kv->key;
        bool ok = false;
        const char *needs = NULL;
        switch (us_oci_sysctl_namespace(k)) {
        case CLONE_NEWIPC:
                ok = ctx->has_ipc_ns;
                needs = "ipc";
                break;
        case CLONE_NEWNET:
                ok = ctx->has_net_ns;
                needs = "network";
                break;
        case CLONE_NEWUTS:
                ok = ctx->has_uts_ns;
                needs = "uts";
                break;
        }
        if (!needs)
                return us_error_msg(err, EINVAL, "sysctl %s is not namespaced: refused", k);
        if (!ok)
                return us_error_msg(err, EINVAL, "sysctl %s needs the container's own %s namespace",
                                    k, needs);
        char path[PATH_MAX];
        int n = snprintf(path, sizeof(path), "/proc/sys/%s", k);
        if (n < 0 || (size_t)n >= sizeof(path) || strstr(k, "..") || strchr(k, '/'))
                return us_error_msg(err, EINVAL, "invalid sysctl %s", k);
        for (char *c = path + strlen("/proc/sys/"); *c; c++)
                if (*c == '.')
                        *c = '/';
        _cleanup_close_ int fd = open(path, O_WRONLY | O_CLOEXEC | O_NOFOLLOW);
        if (fd < 0)
                return us_errorf(err, errno, "sysctl %s: open %s", k, path);
        const char *v = kv->value ? kv->value : "";
        if (write(fd, v, strlen(v)) < 0)
                return us_errorf(err, errno, "sysctl %s=%s", k, v);
        return 0;
}

int engine_rootfs_finalize(struct engine_init_ctx *ctx, struct us_error **err)
{
        const struct us_oci_spec *spec = ctx->spec;
        int r;

        if (spec->linux_.rootfs_propagation &&
            (propagation_flags(spec->linux_.rootfs_propagation) & MS_SHARED) &&
            mount(NULL, "/", NULL, propagation_flags(spec->linux_.rootfs_propagation), NULL) < 0)
                return us_errorf(err, errno, "make / %s", spec->linux_.rootfs_propagation);

        for (size_t i = 0; i < spec->linux_.n_sysctl; i++)
                if ((r = set_sysctl(ctx, &spec->linux_.sysctl[i], err)) < 0)
                        return r;

        if (spec->hostname && *spec->hostname) {
                if (!ctx->has_uts_ns)
                        return us_error_msg(err, EINVAL,
                                            "cannot set hostname without a uts namespace");
                if (sethostname(spec->hostname, strlen(spec->hostname)) < 0)
                        return us_errorf(err, errno, "set hostname %s", spec->hostname);
        }
        if (spec->domainname && *spec->domainname) {
                if (!ctx->has_uts_ns)
                        return us_error_msg(err, EINVAL,
                                            "cannot set domainname without a uts namespace");
                if (setdomainname(spec->domainname, strlen(spec->domainname)) < 0)
                        return us_errorf(err, errno, "set domainname %s", spec->domainname);
        }

        for (char **p = spec->linux_.readonly_paths; p && *p; p++)
                if ((r = readonly_path(*p, err)) < 0)
                        return r;
        for (char **p = spec->linux_.masked_paths; p && *p; p++)
                if ((r = mask_path(*p, err)) < 0)
                        return r;

        /* runc creates a missing cwd; do it while the root is writable. */
        const struct us_oci_process *proc = spec->process;
        if (proc && proc->cwd && proc->cwd[0] == '/' &&
            (r = us_mkdir_p(proc->cwd, 0755, NULL)) < 0 && r != -EROFS && r != -EACCES)
                return us_errorf(err, -r, "create cwd %s", proc->cwd);

        if (spec->root_readonly) {
                unsigned long f = MS_BIND | MS_REMOUNT | MS_RDONLY;
                if (mount(NULL, "/", NULL, f, NULL) < 0 &&
                    (errno != EPERM || mount(NULL, "/", NULL, f | locked_flags("/"), NULL) < 0))
                        return us_errorf(err, errno, "remount root read-only");
        }
        return 0;
}
