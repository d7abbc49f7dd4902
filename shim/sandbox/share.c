/* SPDX-License-Identifier: Apache-2.0 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/cleanup.h"
#include "base/fs-util.h"
#include "base/id.h"
#include "shim/rootfs.h"
#include "share.h"

struct sandbox_share {
        char *mounts_dir; /* <state_dir>/mounts: host-private staging */
        char *guest_dir;  /* <state_dir>/shared: the read-only view served */
        int mounts_fd;    /* mounts/ on its own bind mount: binds attach there */
        bool mounts_mounted, guest_mounted;
        int userns_fd; /* -1: no idmap */
        uid_t uid;     /* host ids of the namespace's 0 */
        gid_t gid;
};

static struct sandbox_share *share_alloc(const char *state_dir)
{
        struct sandbox_share *s = calloc(1, sizeof(*s));
        if (!s)
                return NULL;
        s->mounts_fd = -1;
        s->userns_fd = -1;
        if (asprintf(&s->mounts_dir, "%s/mounts", state_dir) < 0 ||
            asprintf(&s->guest_dir, "%s/shared", state_dir) < 0) {
                s->mounts_dir = s->guest_dir = NULL;
                return sandbox_share_free(s);
        }
        return s;
}

int sandbox_share_new(const char *state_dir, struct sandbox_share **ret, struct us_error **err)
{
        struct sandbox_share *s = share_alloc(state_dir);
        if (!s)
                return us_errorf(err, ENOMEM, "allocate share");
        int r = 0;
        /* Open to all: a virtiofsd in a user namespace does not own them.
         * state_dir keeps the host's other users out. */
        if (mkdir(s->mounts_dir, 0755) < 0 || mkdir(s->guest_dir, 0700) < 0 ||
            chmod(s->mounts_dir, 0755) < 0) {
                r = us_errorf(err, errno, "create the share in %s", state_dir);
                goto fail;
        }
        /* Its own peer group (never one with /run's), so that binds below
         * propagate to shared/ and to virtiofsd's copy of it, nowhere else. */
        if (mount(s->mounts_dir, s->mounts_dir, NULL, MS_BIND, NULL) < 0) {
                r = us_errorf(err, errno, "bind %s", s->mounts_dir);
                goto fail;
        }
        s->mounts_mounted = true;
        if (mount(NULL, s->mounts_dir, NULL, MS_PRIVATE, NULL) < 0 ||
            mount(NULL, s->mounts_dir, NULL, MS_SHARED, NULL) < 0) {
                r = us_errorf(err, errno, "make %s a shared mount", s->mounts_dir);
                goto fail;
        }
        /* Read-only before anyone serves it; a slave, so that nothing
         * mounted on the guest's side could propagate back. */
        if (mount(s->mounts_dir, s->guest_dir, NULL, MS_BIND, NULL) < 0) {
                r = us_errorf(err, errno, "bind %s", s->guest_dir);
                goto fail;
        }
        s->guest_mounted = true;
        if (mount(NULL, s->guest_dir, NULL, MS_SLAVE, NULL) < 0 ||
            mount(NULL, s->guest_dir, NULL,
                  MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) < 0) {
                r = us_errorf(err, errno, "make %s a read-only slave", s->guest_dir);
                goto fail;
        }
        s->mounts_fd = open(s->mounts_dir, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (s->mounts_fd < 0) {
                r = us_errorf(err, errno, "open %s", s->mounts_dir);
                goto fail;
        }
        *ret = s;
        return 0;
fail:
        sandbox_share_free(s);
        return r;
}

int sandbox_share_set_idmap(struct sandbox_share *s, int userns_fd, uid_t uid, gid_t gid,
                            struct us_error **err)
{
        int fd = fcntl(userns_fd, F_DUPFD_CLOEXEC, 3);
        if (fd < 0)
                return us_errorf(err, errno, "dup user namespace fd");
        us_close(s->userns_fd);
        s->userns_fd = fd;
        s->uid = uid;
        s->gid = gid;
        return 0;
}

const char *sandbox_share_guest_dir(const struct sandbox_share *s)
{
        return s->guest_dir;
}

/* Attaches a recursive clone of src at dir_fd/name, read-only from the
 * start when asked: the copies that propagate take the flags it has when it
 * is attached, and a later remount would change only ours. A clone of a
 * shared mount would be its peer (mounts made below either side later
 * would reach the other): propagation is set, MS_PRIVATE (neither way) or
 * MS_SLAVE (the host's mounts come, nothing goes back). */
static int bind_at(int dir_fd, const char *name, int tree, bool readonly, unsigned long propagation,
                   const char *src, struct us_error **err)
{
        enum us_mount_step step;
        int r = us_mount_attach(tree, true, readonly ? MOUNT_ATTR_RDONLY : 0, propagation, dir_fd,
                                name, &step);
        if (r < 0 && step == US_MOUNT_STEP_ATTRS)
                return us_errorf(err, -r, "set the mount attributes of the share of %s", src);
        if (r < 0)
                return us_errorf(err, -r, "share %s with the guest", src);
        return 0;
}

static int clone_tree(const char *src, struct us_error **err)
{
        int tree = open_tree(AT_FDCWD, src, OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_RECURSIVE);
        if (tree < 0)
                return us_errorf(err, errno, "share %s with the guest", src);
        return tree;
}

int sandbox_share_add_container(struct sandbox_share *s, const char *cid, const char *rootfs,
                                Containerd__Types__Mount *const *mounts, size_t n,
                                struct us_error **err)
{
        _cleanup_close_ int cfd = -1, tree = -1;
        /* An id is one path component: the id rule says so. */
        int r = us_id_check("container id", cid, err);
        if (r < 0)
                return r;
        if (mkdirat(s->mounts_fd, cid, 0755) < 0)
                return us_errorf(err, errno, "add container %s to the share", cid);
        cfd = us_openat_beneath(s->mounts_fd, cid, O_PATH | O_DIRECTORY, 0);
        if (cfd < 0) {
                r = us_errorf(err, -cfd, "open %s/%s", s->mounts_dir, cid);
                goto fail;
        }
        if (mkdirat(cfd, "rootfs", 0755) < 0 || mkdirat(cfd, "mounts", 0755) < 0) {
                r = us_errorf(err, errno, "create %s/%s", s->mounts_dir, cid);
                goto fail;
        }
        if (s->userns_fd >= 0) {
                r = shim_rootfs_idmapped(mounts, n, rootfs, s->userns_fd, s->uid, s->gid, &tree,
                                         err);
                if (r < 0) {
                        r = us_error_wrap(err, r, "share the rootfs of %s", cid);
                        goto fail;
                }
        } else {
                tree = clone_tree(rootfs, err);
        }
        if (tree < 0) {
                r = tree;
                goto fail;
        }
        /* Writable even for a read-only root: the guest's engine creates
         * mount points in it before it remounts it read-only, as runc does,
         * and its writes land in the container's own layer. Private, as
         * runc's default rootfs propagation. */
        r = bind_at(cfd, "rootfs", tree, false, MS_PRIVATE, rootfs, err);
        if (r < 0)
                goto fail;
        return 0;
fail:
        (void)sandbox_share_remove_container(s, cid, NULL);
        return r;
}

int sandbox_share_add_bind(struct sandbox_share *s, const char *cid, size_t index, const char *src,
                           bool readonly, bool from_host, struct us_error **err)
{
        int r = us_id_check("container id", cid, err);
        if (r < 0)
                return r;
        char sub[NAME_MAX + 16], name[32];
        snprintf(sub, sizeof(sub), "%s/mounts", cid);
        snprintf(name, sizeof(name), "%zu", index);
        _cleanup_close_ int dir = us_openat_beneath(s->mounts_fd, sub, O_PATH | O_DIRECTORY, 0);
        if (dir < 0)
                return us_errorf(err, -dir, "open %s/%s", s->mounts_dir, sub);
        _cleanup_close_ int tree = -1;
        if (s->userns_fd >= 0) {
                r = shim_idmapped_clone(src, true, s->userns_fd, readonly, &tree, err);
                if (r < 0)
                        return us_error_wrap(err, r, "share volume %s of %s", src, cid);
        } else if ((tree = clone_tree(src, err)) < 0) {
                return tree;
        }
        struct stat st;
        if (fstat(tree, &st) < 0)
                return us_errorf(err, errno, "share %s with the guest", src);
        /* The mount point is new, like src: a directory or an empty file. */
        if (S_ISDIR(st.st_mode)) {
                if (mkdirat(dir, name, 0755) < 0)
                        return us_errorf(err, errno, "create %s/%s/%s", s->mounts_dir, sub, name);
        } else {
                int fd = us_openat_beneath(dir, name, O_WRONLY | O_CREAT | O_EXCL, 0644);
                if (fd < 0)
                        return us_errorf(err, -fd, "create %s/%s/%s", s->mounts_dir, sub, name);
                us_close(fd);
        }
        /* An idmapped clone is read-only already. HostToContainer
         * (from_host): the host's later mounts below src reach the guest. */
        return bind_at(dir, name, tree, readonly && s->userns_fd < 0,
                       from_host ? MS_SLAVE : MS_PRIVATE, src, err);
}

static void unmount_below(const struct sandbox_share *s, const char *cid, const char *rel)
{
        char path[PATH_MAX];
        if (snprintf(path, sizeof(path), "%s/%s/%s", s->mounts_dir, cid, rel) < (int)sizeof(path))
                (void)umount2(path, MNT_DETACH | UMOUNT_NOFOLLOW);
}

int sandbox_share_remove_container(struct sandbox_share *s, const char *cid, struct us_error **err)
{
        int r = us_id_check("container id", cid, err);
        if (r < 0)
                return r;
        if (s->mounts_fd < 0)
                return 0; /* detached with the whole share */
        /* By path, but every component is ours: mounts/ is not served. */
        unmount_below(s, cid, "rootfs");
        char sub[NAME_MAX + 16];
        snprintf(sub, sizeof(sub), "%s/mounts", cid);
        int dfd = us_openat_beneath(s->mounts_fd, sub, O_RDONLY | O_DIRECTORY, 0);
        DIR *d = dfd >= 0 ? fdopendir(dfd) : NULL;
        if (dfd >= 0 && !d)
                us_close(dfd);
        for (struct dirent *de; d && (de = readdir(d));) {
                char rel[NAME_MAX + 16];
                if (de->d_name[0] != '.' &&
                    snprintf(rel, sizeof(rel), "mounts/%s", de->d_name) < (int)sizeof(rel))
                        unmount_below(s, cid, rel);
        }
        if (d)
                closedir(d);
        r = us_rm_tree_at(s->mounts_fd, cid, err);
        return r < 0 ? us_error_wrap(err, r, "remove container %s from the share", cid) : 0;
}

int sandbox_share_open(const char *state_dir, struct sandbox_share **ret, struct us_error **err)
{
        struct sandbox_share *s = share_alloc(state_dir);
        if (!s)
                return us_errorf(err, ENOMEM, "allocate share");
        s->mounts_fd = open(s->mounts_dir, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (s->mounts_fd < 0) {
                int r = us_errorf(err, errno, "open %s", s->mounts_dir);
                sandbox_share_free(s);
                return r;
        }
        /* Whatever of it is still mounted goes with sandbox_share_free. */
        s->mounts_mounted = s->guest_mounted = true;
        *ret = s;
        return 0;
}

void sandbox_share_forget(struct sandbox_share *s)
{
        if (s)
                s->mounts_mounted = s->guest_mounted = false;
        sandbox_share_free(s);
}

struct sandbox_share *sandbox_share_free(struct sandbox_share *s)
{
        if (!s)
                return NULL;
        s->mounts_fd = us_close(s->mounts_fd);
        s->userns_fd = us_close(s->userns_fd);
        if (s->guest_mounted)
                (void)umount2(s->guest_dir, MNT_DETACH | UMOUNT_NOFOLLOW);
        if (s->mounts_mounted)
                (void)umount2(s->mounts_dir, MNT_DETACH | UMOUNT_NOFOLLOW);
        free(s->mounts_dir);
        free(s->guest_dir);
        free(s);
        return NULL;
}
