/* SPDX-License-Identifier: Apache-2.0 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "base/cleanup.h"
#include "base/fs-util.h"
#include "jail.h"

/* Mount attributes of everything bound in from the host. */
#define HOST_ATTRS (MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV)
/* Device nodes: usable (not nodev), nothing else. */
#define DEV_ATTRS (MOUNT_ATTR_NOSUID | MOUNT_ATTR_NOEXEC)
/* A 9p share: QEMU reads and writes files the guest names; a device node
 * or a setuid file the guest made there must stay inert on the host. */
#define SHARE_ATTRS (MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC)

/* Binds a clone of the host's src (a directory tree, or one file or device
 * node) at dir_fd/name, which exists, with attrs on every mount of it. A
 * clone of a shared mount would be a peer of the host's: propagation is
 * set, MS_PRIVATE (nothing either way) or MS_SLAVE (the host's later mounts
 * show, nothing goes back). */
static int bind_host(int dir_fd, const char *name, const char *src, bool recursive,
                     unsigned long long attrs, unsigned long propagation, struct us_error **err)
{
        unsigned flags = OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | (recursive ? AT_RECURSIVE : 0);
        _cleanup_close_ int tree = open_tree(AT_FDCWD, src, flags);
        if (tree < 0)
                return us_errorf(err, errno, "qemu's root: bind %s", src);
        enum us_mount_step step;
        int r = us_mount_attach(tree, recursive, attrs, propagation, dir_fd, name, &step);
        if (r < 0)
                return us_errorf(err, -r, "qemu's root: %s %s",
                                 step == US_MOUNT_STEP_ATTRS ? "restrict" : "attach", src);
        return 0;
}

/* An empty file to bind a file or a device node onto. */
static int bind_file(int dir_fd, const char *name, const char *src, unsigned long long attrs,
                     struct us_error **err)
{
        int fd = openat(dir_fd, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0444);
        if (fd < 0)
                return us_errorf(err, errno, "qemu's root: create %s", name);
        us_close(fd);
        return bind_host(dir_fd, name, src, false, attrs, MS_PRIVATE, err);
}

/* /bin, /lib, ... as the host has them: a symlink is copied (on a merged
 * /usr they point into it), a directory bound read-only, an absent one
 * left out. */
static int top_level(int root, const char *name, struct us_error **err)
{
        char path[32], target[PATH_MAX];
        struct stat st;

        snprintf(path, sizeof(path), "/%s", name);
        if (lstat(path, &st) < 0)
                return errno == ENOENT ? 0 : us_errorf(err, errno, "qemu's root: stat %s", path);
        if (S_ISLNK(st.st_mode)) {
                ssize_t n = readlink(path, target, sizeof(target) - 1);
                if (n < 0)
                        return us_errorf(err, errno, "qemu's root: read link %s", path);
                target[n] = '\0';
                if (symlinkat(target, root, name) < 0)
                        return us_errorf(err, errno, "qemu's root: link %s", path);
                return 0;
        }
        if (!S_ISDIR(st.st_mode))
                return 0;
        if (mkdirat(root, name, 0755) < 0)
                return us_errorf(err, errno, "qemu's root: mkdir %s", path);
        return bind_host(root, name, path, true, HOST_ATTRS, MS_PRIVATE, err);
}

static int subdir(int root, const char *name, int *ret_fd, struct us_error **err)
{
        if (mkdirat(root, name, 0755) < 0)
                return us_errorf(err, errno, "qemu's root: mkdir /%s", name);
        int fd = openat(root, name, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0)
                return us_errorf(err, errno, "qemu's root: open /%s", name);
        *ret_fd = fd;
        return 0;
}

/* A new detached mount of type with two string options (key, value pairs)
 * and attrs: *ret_fd. */
static int new_fs(const char *type, const char *const opts[4], unsigned attrs, int *ret_fd,
                  struct us_error **err)
{
        _cleanup_close_ int fs = fsopen(type, FSOPEN_CLOEXEC);

        if (fs < 0)
                return us_errorf(err, errno, "qemu's root: fsopen %s", type);
        if (fsconfig(fs, FSCONFIG_SET_STRING, opts[0], opts[1], 0) < 0 ||
            fsconfig(fs, FSCONFIG_SET_STRING, opts[2], opts[3], 0) < 0 ||
            fsconfig(fs, FSCONFIG_CMD_CREATE, NULL, NULL, 0) < 0)
                return us_errorf(err, errno, "qemu's root: configure %s", type);
        *ret_fd = fsmount(fs, FSMOUNT_CLOEXEC, attrs);
        if (*ret_fd < 0)
                return us_errorf(err, errno, "qemu's root: fsmount %s", type);
        return 0;
}

/* QEMU's 9p server sets a created file's mode through /proc/self/fd/N of
 * an O_PATH fd (fchmod refuses those): without /proc every create fails
 * with ENOENT. A procfs of its own with only the per-process part
 * (subset=pid: no /proc/sys, no kernel state) and only the processes its
 * uid may ptrace (hidepid=invisible). */
static int proc_dir(int root, struct us_error **err)
{
        static const char *const opts[4] = {"subset", "pid", "hidepid", "invisible"};
        _cleanup_close_ int mnt = -1;
        int r;

        if (mkdirat(root, "proc", 0555) < 0)
                return us_errorf(err, errno, "qemu's root: mkdir /proc");
        /* Read-only: QEMU's own writable entries (/proc/self/attr, comm,
         * ...) stay closed; a chmod through /proc/self/fd/N follows the
         * link to the file's own mount. */
        if ((r = new_fs("proc", opts, SHARE_ATTRS | MOUNT_ATTR_RDONLY, &mnt, err)) < 0)
                return r;
        if (move_mount(mnt, "", root, "proc", MOVE_MOUNT_F_EMPTY_PATH) < 0)
                return us_errorf(err, errno, "qemu's root: attach proc");
        return 0;
}

/* /share/<i>: each share's host directory, with the mounts under it; and
 * the /proc QEMU's 9p server needs. */
static int shares_dir(int root, const struct vmm_share *shares, size_t n_shares,
                      struct us_error **err)
{
        _cleanup_close_ int dir = -1;
        char name[24];
        int r;

        if (n_shares == 0)
                return 0;
        if ((r = proc_dir(root, err)) < 0)
                return r;
        if ((r = subdir(root, "share", &dir, err)) < 0)
                return r;
        for (size_t i = 0; i < n_shares; i++) {
                unsigned long long attrs =
                        SHARE_ATTRS | (shares[i].readonly ? MOUNT_ATTR_RDONLY : 0);
                snprintf(name, sizeof(name), "%zu", i);
                if (mkdirat(dir, name, 0755) < 0)
                        return us_errorf(err, errno, "qemu's root: mkdir /share/%s", name);
                /* A slave: a container's rootfs bound into the share
                 * after the start shows (as virtio-fs's shared/ does). */
                if ((r = bind_host(dir, name, shares[i].host_dir, true, attrs, MS_SLAVE, err)) < 0)
                        return r;
        }
        return 0;
}

int vmm_jail_build(const char *kernel, const char *initrd, bool kvm, const struct vmm_share *shares,
                   size_t n_shares, int *ret_fd, struct us_error **err)
{
        static const char *const top[] = {"bin", "sbin", "lib", "lib32", "lib64", "libx32"};
        static const char *const devices[] = {"null", "zero", "urandom", "random"};
        static const char *const root_opts[4] = {"size", "64k", "mode", "0755"};
        _cleanup_close_ int root = -1, dev = -1, boot = -1;
        char dev_path[32];
        int r;

        if (!kernel || !ret_fd)
                return us_error_msg(err, EINVAL, "qemu's root: no kernel");
        if (n_shares > 0 && !shares)
                return us_error_msg(err, EINVAL, "qemu's root: no shares");
        for (size_t i = 0; i < n_shares; i++)
                if (!shares[i].host_dir || shares[i].host_dir[0] != '/')
                        return us_error_msg(err, EINVAL,
                                            "qemu's root: share %zu: not an absolute path", i);
        if ((r = new_fs("tmpfs", root_opts, MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV, &root, err)) < 0)
                return r;

        if (mkdirat(root, "usr", 0755) < 0)
                return us_errorf(err, errno, "qemu's root: mkdir /usr");
        if ((r = bind_host(root, "usr", "/usr", true, HOST_ATTRS, MS_PRIVATE, err)) < 0)
                return r;
        for (size_t i = 0; i < US_ELEMENTSOF(top); i++)
                if ((r = top_level(root, top[i], err)) < 0)
                        return r;

        if ((r = subdir(root, "dev", &dev, err)) < 0)
                return r;
        for (size_t i = 0; i < US_ELEMENTSOF(devices) + kvm; i++) {
                const char *name = i < US_ELEMENTSOF(devices) ? devices[i] : "kvm";
                snprintf(dev_path, sizeof(dev_path), "/dev/%s", name);
                if ((r = bind_file(dev, name, dev_path, DEV_ATTRS, err)) < 0)
                        return r;
        }

        if ((r = subdir(root, "boot", &boot, err)) < 0 ||
            (r = bind_file(boot, "kernel", kernel, HOST_ATTRS | MOUNT_ATTR_NOEXEC, err)) < 0)
                return r;
        if (initrd &&
            (r = bind_file(boot, "initrd", initrd, HOST_ATTRS | MOUNT_ATTR_NOEXEC, err)) < 0)
                return r;
        if ((r = shares_dir(root, shares, n_shares, err)) < 0)
                return r;

        /* Built: from now on nothing in it can be created or changed (the
         * shares are mounts of their own and keep their flags). */
        struct mount_attr ro = {.attr_set = MOUNT_ATTR_RDONLY};
        if (mount_setattr(root, "", AT_EMPTY_PATH, &ro, sizeof(ro)) < 0)
                return us_errorf(err, errno, "qemu's root: make read-only");
        *ret_fd = TAKE_FD(root);
        return 0;
}

int vmm_jail_enter(int tree_fd, const char *mountpoint)
{
        if (unshare(CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWIPC) < 0)
                return -errno;
        /* Nothing of ours propagates to the host, nothing of the host's
         * reaches us any more. */
        if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
                return -errno;
        if (move_mount(tree_fd, "", AT_FDCWD, mountpoint, MOVE_MOUNT_F_EMPTY_PATH) < 0)
                return -errno;
        /* pivot_root(".", ".") stacks the old root on the new one; detaching
         * it leaves the tree alone as /. */
        if (fchdir(tree_fd) < 0 || syscall(SYS_pivot_root, ".", ".") < 0 ||
            umount2(".", MNT_DETACH) < 0 || chdir("/") < 0)
                return -errno;
        return 0;
}
