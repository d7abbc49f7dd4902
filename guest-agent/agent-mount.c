/* SPDX-License-Identifier: Apache-2.0 */
/* PID 1's root and mounts, and the shared filesystems the host offers. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>

#include "agent.h"
#include "base/cleanup.h"
#include "base/fs-util.h"

static const struct {
        const char *source, *target, *fstype;
        unsigned long flags;
        const char *data;
} early_mounts[] = {
        {"proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL},
        {"sysfs", "/sys", "sysfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL},
        {"devtmpfs", "/dev", "devtmpfs", MS_NOSUID, "mode=0755"},
        {"devpts", "/dev/pts", "devpts", MS_NOSUID | MS_NOEXEC,
         "newinstance,ptmxmode=0666,mode=620"},
        {"shm", "/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777"},
        {"tmpfs", "/run", "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755"},
        {"tmpfs", "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777"},
        /* cgroup2 only: the engine handles a pure v2 root, and one hierarchy
         * is the least the guest kernel has to set up. favordynmods (Linux
         * 6.0+; retried without on older kernels): every container create
         * migrates a process and enables controllers, and without it each
         * of those waits for an RCU grace period, ~25 ms apiece under TCG
         * (docs/performance.md); the cost is a slower fork/exit path. */
        {"cgroup2", "/sys/fs/cgroup", "cgroup2", MS_NOSUID | MS_NODEV | MS_NOEXEC, "favordynmods"},
};

/* The directories of the agent's root: the mount points of early_mounts
 * (those not inside another of them). Nothing else lives there. */
static const char *const root_dirs[] = {"proc", "sys", "dev", "run", "tmp"};

int agent_leave_initramfs(int *ret_initramfs, struct us_error **err)
{
        /* The initramfs is the kernel's "rootfs", the one mount without a
         * parent: pivot_root(2) cannot move it, so a container's root there
         * could only be MS_MOVE + chroot, which leaves the agent's root and
         * every mount on it in the container's mount namespace (a process
         * with CAP_SYS_ADMIN detaches its / and re-enters the namespace to
         * land in it). A root of our own, mounted on top, has a parent: the
         * engine's pivot_root then works and unmounts it from the
         * container's namespace. Only empty mount points go in (modules are
         * loaded from the initramfs through the returned fd, the running
         * agent's pages stay mapped wherever its file is), so nothing is
         * copied; and it is read-only: nothing the agent does writes there. */
        _cleanup_close_ int initramfs = open("/", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (initramfs < 0)
                return us_errorf(err, errno, "open the initramfs root");
        _cleanup_close_ int fs = fsopen("tmpfs", FSOPEN_CLOEXEC);
        if (fs < 0)
                return us_errorf(err, errno, "fsopen tmpfs");
        if (fsconfig(fs, FSCONFIG_SET_STRING, "mode", "0755", 0) < 0 ||
            fsconfig(fs, FSCONFIG_CMD_CREATE, NULL, NULL, 0) < 0)
                return us_errorf(err, errno, "create the root tmpfs");
        _cleanup_close_ int root =
                fsmount(fs, FSMOUNT_CLOEXEC, MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV);
        if (root < 0)
                return us_errorf(err, errno, "fsmount the root tmpfs");
        for (size_t i = 0; i < US_ELEMENTSOF(root_dirs); i++)
                if (mkdirat(root, root_dirs[i], 0755) < 0)
                        return us_errorf(err, errno, "mkdir /%s in the new root", root_dirs[i]);
        struct mount_attr ro = {.attr_set = MOUNT_ATTR_RDONLY};
        if (mount_setattr(root, "", AT_EMPTY_PATH, &ro, sizeof(ro)) < 0)
                return us_errorf(err, errno, "make the new root read-only");
        /* As switch_root(8): the new root over /, then chroot into it. */
        if (move_mount(root, "", AT_FDCWD, "/", MOVE_MOUNT_F_EMPTY_PATH) < 0)
                return us_errorf(err, errno, "move the new root onto /");
        if (fchdir(root) < 0)
                return us_errorf(err, errno, "chdir to the new root");
        if (chroot(".") < 0)
                return us_errorf(err, errno, "chroot to the new root");
        if (chdir("/") < 0)
                return us_errorf(err, errno, "chdir /");
        *ret_initramfs = TAKE_FD(initramfs);
        return 0;
}

int agent_free_initramfs(int initramfs, uint64_t *ret_freed, struct us_error **err)
{
        struct statfs before, after;
        bool measured = fstatfs(initramfs, &before) == 0;
        _cleanup_close_ int dfd = fcntl(initramfs, F_DUPFD_CLOEXEC, 3);
        if (dfd < 0)
                return us_errorf(err, errno, "dup the initramfs fd");
        DIR *d = fdopendir(dfd);
        if (!d)
                return us_errorf(err, errno, "read the initramfs root");
        TAKE_FD(dfd);
        /* Names first, removal after: no readdir over a changing directory. */
        char **names = NULL;
        size_t n = 0;
        int r = 0;
        struct dirent *de;
        while ((de = readdir(d))) {
                if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
                        continue;
                char **grown = realloc(names, (n + 1) * sizeof(*names));
                char *name = grown ? strdup(de->d_name) : NULL;
                if (grown)
                        names = grown;
                if (!name) {
                        r = us_errorf(err, ENOMEM, "list the initramfs");
                        break;
                }
                names[n++] = name;
        }
        closedir(d);
        for (size_t i = 0; i < n; i++) {
                /* Never crosses a mount: the new root sits on the initramfs's
                 * "/" itself, not on any name in it. */
                if (r == 0)
                        r = us_rm_tree_at(initramfs, names[i], err);
                free(names[i]);
        }
        free(names);
        if (r < 0)
                return us_error_wrap(err, r, "empty the initramfs");
        /* ramfs reports no sizes; the running agent's own file stays in use. */
        *ret_freed = measured && fstatfs(initramfs, &after) == 0 && before.f_bfree <= after.f_bfree
                             ? (uint64_t)(after.f_bfree - before.f_bfree) * (uint64_t)after.f_bsize
                             : 0;
        return 0;
}

int agent_mount_early(struct us_error **err)
{
        for (size_t i = 0; i < US_ELEMENTSOF(early_mounts); i++) {
                int r = us_mkdir_p(early_mounts[i].target, 0755, err);
                if (r < 0)
                        return r;
                const char *data = early_mounts[i].data;
                int rc = mount(early_mounts[i].source, early_mounts[i].target,
                               early_mounts[i].fstype, early_mounts[i].flags, data);
                if (rc < 0 && errno == EINVAL && data && !strcmp(data, "favordynmods"))
                        rc = mount(early_mounts[i].source, early_mounts[i].target,
                                   early_mounts[i].fstype, early_mounts[i].flags, NULL);
                if (rc < 0 && errno != EBUSY)
                        return us_errorf(err, errno, "mount %s on %s", early_mounts[i].fstype,
                                         early_mounts[i].target);
        }
        (void)symlink("/proc/self/fd", "/dev/fd");
        (void)symlink("pts/ptmx", "/dev/ptmx");
        return us_mkdir_p(AGENT_BUNDLE_DIR, 0700, err);
}

static const struct {
        const char *name;
        unsigned long flag;
} flag_options[] = {
        {"ro", MS_RDONLY}, {"nosuid", MS_NOSUID}, {"nodev", MS_NODEV}, {"noexec", MS_NOEXEC},
        {"rw", 0},
};

int agent_mount_storage(const Unishim__Agent__V1__Storage *st, struct us_error **err)
{
        unsigned long flags = 0;
        char data[AGENT_MAX_OPTIONS * 258 + 64] = "";
        size_t dlen = 0;
        bool has_trans = false;
        for (size_t i = 0; i < st->n_options; i++) {
                const char *o = st->options[i];
                bool is_flag = false;
                for (size_t j = 0; j < US_ELEMENTSOF(flag_options); j++)
                        if (!strcmp(o, flag_options[j].name)) {
                                flags |= flag_options[j].flag;
                                is_flag = true;
                        }
                if (is_flag)
                        continue;
                if (!strncmp(o, "trans=", 6))
                        has_trans = true;
                dlen += (size_t)snprintf(data + dlen, sizeof(data) - dlen, "%s%s", dlen ? "," : "",
                                         o);
        }
        if (!strcmp(st->fstype, "9p") && !has_trans)
                (void)snprintf(data + dlen, sizeof(data) - dlen,
                               "%strans=virtio,version=9p2000.L,msize=262144", dlen ? "," : "");
        int r = us_mkdir_p(st->mount_point, 0755, err);
        if (r < 0)
                return r;
        if (mount(st->source, st->mount_point, st->fstype, flags, data[0] ? data : NULL) < 0)
                return us_errorf(err, errno, "mount %s %s on %s", st->fstype, st->source,
                                 st->mount_point);
        return 0;
}

int agent_local_dir_make(int base_fd, const char *name, uint32_t mode, uint32_t uid, uint32_t gid,
                         struct us_error **err)
{
        if (mkdirat(base_fd, name, 0700) < 0) {
                if (errno != EEXIST)
                        return us_errorf(err, errno, "mkdir %s", name);
                struct stat st;
                if (fstatat(base_fd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
                        return us_errorf(err, errno, "stat %s", name);
                if (!S_ISDIR(st.st_mode))
                        return us_error_msg(err, EEXIST, "%s exists and is not a directory", name);
                return 0;
        }
        /* Owner before mode: a chown by someone without CAP_FSETID would
         * clear the setgid bit an fsGroup sets. */
        _cleanup_close_ int fd =
                openat(base_fd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        int r = 0;
        if (fd < 0)
                r = us_errorf(err, errno, "open %s", name);
        else if (fchown(fd, uid, gid) < 0)
                r = us_errorf(err, errno, "chown %s to %u:%u", name, uid, gid);
        else if (fchmod(fd, mode) < 0)
                r = us_errorf(err, errno, "chmod %s to %o", name, mode);
        if (r < 0)
                (void)unlinkat(base_fd, name, AT_REMOVEDIR);
        return r;
}
