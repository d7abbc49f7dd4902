/* SPDX-License-Identifier: Apache-2.0 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/openat2.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "cleanup.h"
#include "fs-util.h"

int us_mkdir_p(const char *path, mode_t mode, struct us_error **err)
{
        char buf[PATH_MAX];
        if (strnlen(path, sizeof(buf)) >= sizeof(buf))
                return us_error_msg(err, ENAMETOOLONG, "mkdir %s: path too long", path);
        strcpy(buf, path);
        for (char *p = buf + 1;; p++) {
                if (*p != '/' && *p != '\0')
                        continue;
                char c = *p;
                *p = '\0';
                if (mkdir(buf, mode) < 0 && errno != EEXIST)
                        return us_errorf(err, errno, "mkdir %s", buf);
                *p = c;
                if (!c)
                        return 0;
        }
}

int us_openat_beneath(int dir_fd, const char *path, int flags, mode_t mode)
{
        struct open_how how = {
                .flags = (uint64_t)(flags | O_CLOEXEC),
                .mode = (flags & O_CREAT) ? mode : 0,
                .resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS |
                           RESOLVE_NO_XDEV,
        };
        long fd = syscall(SYS_openat2, dir_fd, path, &how, sizeof(how));
        return fd < 0 ? -errno : (int)fd;
}

int us_openat_in_root(int dir_fd, const char *path, int flags)
{
        while (*path == '/')
                path++;
        struct open_how how = {
                .flags = (uint64_t)(flags | O_CLOEXEC),
                .resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS,
        };
        long fd = syscall(SYS_openat2, dir_fd, *path ? path : ".", &how, sizeof(how));
        return fd < 0 ? -errno : (int)fd;
}

/* ---- removal ---- */

struct node {
        dev_t dev;
        ino_t ino;
};

/* One directory on the way down: who it is, and its name in its parent. */
struct level {
        struct node id;
        char *name;
};

struct walk {
        struct level *levels;
        size_t depth, cap;
        struct node *kept; /* entries that stay: mount points, failures */
        size_t n_kept, cap_kept;
        uint64_t mnt_id; /* the tree's mount: nothing on another is touched */
        unsigned restarts;
        int first_error;
        struct us_error **err;
};

/* A walk that keeps being disturbed (a guest renaming in a loop) ends. */
#define MAX_RESTARTS 1000

static bool is_kept(const struct walk *w, dev_t dev, ino_t ino)
{
        for (size_t i = 0; i < w->n_kept; i++)
                if (w->kept[i].dev == dev && w->kept[i].ino == ino)
                        return true;
        return false;
}

/* Remembers an entry that stays, so that a new scan passes it by; the
 * first one names the walk's failure. error 0: a mount point. */
static int keep(struct walk *w, dev_t dev, ino_t ino, int error, const char *name)
{
        if (w->n_kept == w->cap_kept) {
                size_t cap = w->cap_kept ? 2 * w->cap_kept : 16;
                struct node *k = realloc(w->kept, cap * sizeof(*k));
                if (!k)
                        return -ENOMEM;
                w->kept = k;
                w->cap_kept = cap;
        }
        w->kept[w->n_kept++] = (struct node){dev, ino};
        if (!w->first_error) {
                w->first_error = error ? error : EBUSY;
                if (error)
                        (void)us_errorf(w->err, error, "remove %s", name);
                else
                        (void)us_error_msg(w->err, EBUSY, "%s is a mount point, left in place",
                                           name);
        }
        return 0;
}

static int stat_fd(int fd, struct statx *stx)
{
        if (statx(fd, "", AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW,
                  STATX_TYPE | STATX_INO | STATX_MNT_ID, stx) < 0)
                return -errno;
        return 0;
}

static bool is_mount_point(const struct walk *w, const struct statx *stx)
{
        if ((stx->stx_attributes_mask & STATX_ATTR_MOUNT_ROOT) &&
            (stx->stx_attributes & STATX_ATTR_MOUNT_ROOT))
                return true;
        return (stx->stx_mask & STATX_MNT_ID) && stx->stx_mnt_id != w->mnt_id;
}

static dev_t dev_of(const struct statx *stx)
{
        return makedev(stx->stx_dev_major, stx->stx_dev_minor);
}

/* Removes what it can of the directory open at fd. Returns 1 with *ret_child
 * open when it found a subdirectory to descend into (pushed on the stack),
 * 0 when the directory holds nothing removable any more, -ESTALE when it
 * must be scanned again, another negative errno on a hard failure. */
static int scan(struct walk *w, int fd, int *ret_child)
{
        int dfd = openat(fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dfd < 0)
                return -errno;
        DIR *d = fdopendir(dfd);
        if (!d) {
                us_close(dfd);
                return -ENOMEM;
        }
        int r = 0;
        struct dirent *de;
        while ((errno = 0, de = readdir(d))) {
                const char *name = de->d_name;
                if (strcmp(name, ".") == 0 || strcmp(name, "..") == 0)
                        continue;
                struct statx stx;
                if (statx(fd, name, AT_SYMLINK_NOFOLLOW | AT_NO_AUTOMOUNT,
                          STATX_TYPE | STATX_INO | STATX_MNT_ID, &stx) < 0) {
                        if (errno == ENOENT)
                                continue;
                        r = -errno;
                        break;
                }
                dev_t dev = dev_of(&stx);
                if (is_kept(w, dev, stx.stx_ino))
                        continue;
                if (is_mount_point(w, &stx)) {
                        if ((r = keep(w, dev, stx.stx_ino, 0, name)) < 0)
                                break;
                        continue;
                }
                if (!S_ISDIR(stx.stx_mode)) {
                        /* A symlink is unlinked itself, never followed. */
                        if (unlinkat(fd, name, 0) == 0 || errno == ENOENT)
                                continue;
                        if (errno == EISDIR) {
                                r = -ESTALE; /* a directory now: look again */
                                break;
                        }
                        if ((r = keep(w, dev, stx.stx_ino, errno, name)) < 0)
                                break;
                        continue;
                }
                int child = us_openat_beneath(fd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW, 0);
                if (child == -ENOENT)
                        continue;
                if (child == -ELOOP || child == -ENOTDIR || child == -EXDEV) {
                        r = -ESTALE; /* swapped since the statx: look again */
                        break;
                }
                if (child < 0) {
                        if ((r = keep(w, dev, stx.stx_ino, -child, name)) < 0)
                                break;
                        continue;
                }
                struct statx cst;
                if ((r = stat_fd(child, &cst)) < 0 || cst.stx_ino != stx.stx_ino ||
                    dev_of(&cst) != dev || is_mount_point(w, &cst)) {
                        us_close(child);
                        r = r < 0 ? r : -ESTALE;
                        break;
                }
                if (w->depth + 1 == w->cap) {
                        size_t cap = 2 * w->cap;
                        struct level *l = realloc(w->levels, cap * sizeof(*l));
                        if (!l) {
                                us_close(child);
                                r = -ENOMEM;
                                break;
                        }
                        w->levels = l;
                        w->cap = cap;
                }
                char *copy = strdup(name);
                if (!copy) {
                        us_close(child);
                        r = -ENOMEM;
                        break;
                }
                w->depth++;
                w->levels[w->depth] = (struct level){{dev, stx.stx_ino}, copy};
                *ret_child = child;
                r = 1;
                break;
        }
        if (r == 0 && errno != 0)
                r = -errno;
        closedir(d);
        return r;
}

/* From the directory at *fd, back to its parent: the parent must be the one
 * we came from (a directory moved elsewhere has another ".."). */
static int ascend(struct walk *w, int *fd)
{
        _cleanup_close_ int parent = openat(*fd, "..", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (parent < 0)
                return -errno;
        struct statx pst;
        int r = stat_fd(parent, &pst);
        if (r < 0)
                return r;
        const struct level *up = &w->levels[w->depth - 1];
        if (pst.stx_ino != up->id.ino || dev_of(&pst) != up->id.dev)
                return -ESTALE;
        struct level *me = &w->levels[w->depth];
        if (unlinkat(parent, me->name, AT_REMOVEDIR) < 0 && errno != ENOENT) {
                /* Renamed meanwhile (its name is something else now): the
                 * parent's next scan finds it again. */
                if (errno == ENOTDIR || errno == EISDIR) {
                        if (++w->restarts > MAX_RESTARTS)
                                return -ESTALE;
                } else if ((r = keep(w, me->id.dev, me->id.ino, errno, me->name)) < 0) {
                        return r;
                }
        }
        free(me->name);
        me->name = NULL;
        w->depth--;
        us_close(*fd);
        *fd = TAKE_FD(parent);
        return 0;
}

int us_rm_tree_at(int dir_fd, const char *name, struct us_error **err)
{
        if (!name || !*name || strchr(name, '/') || strcmp(name, ".") == 0 ||
            strcmp(name, "..") == 0)
                return us_error_msg(err, EINVAL, "remove %s: not a single path component",
                                    name ? name : "(null)");
        _cleanup_close_ int fd = us_openat_beneath(dir_fd, name, O_RDONLY | O_DIRECTORY, 0);
        if (fd == -ENOENT)
                return 0;
        if (fd == -ENOTDIR || fd == -ELOOP) {
                if (unlinkat(dir_fd, name, 0) < 0 && errno != ENOENT)
                        return us_errorf(err, errno, "remove %s", name);
                return 0;
        }
        if (fd == -EXDEV)
                return us_error_msg(err, EBUSY, "remove %s: it is a mount point", name);
        if (fd < 0)
                return us_errorf(err, -fd, "open %s", name);
        struct statx root;
        int r = stat_fd(fd, &root);
        if (r < 0)
                return us_errorf(err, -r, "stat %s", name);

        struct walk w = {.cap = 64, .mnt_id = root.stx_mnt_id, .err = err};
        w.levels = calloc(w.cap, sizeof(*w.levels));
        if (!w.levels)
                return us_errorf(err, ENOMEM, "remove %s", name);
        w.levels[0] = (struct level){{dev_of(&root), root.stx_ino}, NULL};
        r = 0;
        for (;;) {
                int child = -1;
                r = scan(&w, fd, &child);
                if (r == 1) {
                        us_close(fd);
                        fd = child;
                        continue;
                }
                if (r == -ESTALE && ++w.restarts <= MAX_RESTARTS)
                        continue;
                if (r < 0)
                        break;
                if (w.depth == 0)
                        break;
                r = ascend(&w, &fd);
                if (r == -ESTALE)
                        break;
                if (r < 0)
                        break;
        }
        for (size_t i = 1; i <= w.depth; i++)
                free(w.levels[i].name);
        free(w.levels);
        free(w.kept);
        if (r == -ESTALE) {
                return us_error_msg(err, ESTALE, "remove %s: the tree changed during the removal",
                                    name);
        }
        if (r < 0)
                return us_errorf(err, -r, "remove %s", name);
        fd = us_close(fd);
        if (unlinkat(dir_fd, name, AT_REMOVEDIR) < 0 && errno != ENOENT) {
                if (w.first_error)
                        return us_error_wrap(err, -w.first_error, "remove %s", name);
                return us_errorf(err, errno, "remove %s", name);
        }
        return 0;
}

ssize_t us_write_some(int fd, const void *buf, size_t len, bool is_socket)
{
        const char *p = buf;
        size_t done = 0;
        while (done < len) {
                ssize_t n = is_socket ? send(fd, p + done, len - done, MSG_NOSIGNAL | MSG_DONTWAIT)
                                      : write(fd, p + done, len - done);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
                        break;
                if (n < 0)
                        return -errno;
                done += (size_t)n;
        }
        return (ssize_t)done;
}

int us_write_all(int fd, const void *buf, size_t len)
{
        const char *p = buf;
        while (len > 0) {
                ssize_t n = write(fd, p, len);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0)
                        return -errno;
                p += n;
                len -= (size_t)n;
        }
        return 0;
}

int us_mount_attach(int tree, bool recursive, uint64_t attr_set, uint64_t propagation, int dir_fd,
                    const char *name, enum us_mount_step *ret_step)
{
        enum us_mount_step step = US_MOUNT_STEP_ATTRS;
        int r = 0;
        struct mount_attr attr = {.attr_set = attr_set, .propagation = propagation};
        if (propagation != MS_PRIVATE && propagation != MS_SLAVE && propagation != MS_SHARED)
                r = -EINVAL;
        else if (mount_setattr(tree, "", AT_EMPTY_PATH | (recursive ? AT_RECURSIVE : 0), &attr,
                               sizeof(attr)) < 0)
                r = -errno;
        else {
                step = US_MOUNT_STEP_MOVE;
                if (move_mount(tree, "", dir_fd, name, MOVE_MOUNT_F_EMPTY_PATH) < 0)
                        r = -errno;
        }
        if (r < 0 && ret_step)
                *ret_step = step;
        return r;
}

ssize_t us_sendmsg_fds(int sock, const struct iovec *iov, size_t n_iov, const int *fds,
                       size_t n_fds, int flags)
{
        if (n_fds > US_FDS_MAX)
                return -EINVAL;
        union {
                char buf[CMSG_SPACE(sizeof(int) * US_FDS_MAX)];
                struct cmsghdr align;
        } u;
        memset(&u, 0, sizeof(u));
        struct msghdr msg = {.msg_iov = (struct iovec *)iov, .msg_iovlen = n_iov};
        if (n_fds > 0) {
                msg.msg_control = u.buf;
                msg.msg_controllen = CMSG_SPACE(sizeof(int) * n_fds);
                struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
                c->cmsg_level = SOL_SOCKET;
                c->cmsg_type = SCM_RIGHTS;
                c->cmsg_len = CMSG_LEN(sizeof(int) * n_fds);
                memcpy(CMSG_DATA(c), fds, sizeof(int) * n_fds);
        }
        ssize_t n;
        while ((n = sendmsg(sock, &msg, flags | MSG_NOSIGNAL)) < 0 && errno == EINTR)
                ;
        return n < 0 ? -errno : n;
}

ssize_t us_recvmsg_fds(int sock, struct iovec *iov, size_t n_iov, int *fds, size_t max_fds,
                       size_t *ret_n_fds, int flags)
{
        union {
                char buf[CMSG_SPACE(sizeof(int) * US_FDS_MAX)];
                struct cmsghdr align;
        } u;
        struct msghdr msg = {.msg_iov = iov,
                             .msg_iovlen = n_iov,
                             .msg_control = u.buf,
                             .msg_controllen = sizeof(u.buf)};
        ssize_t n;
        *ret_n_fds = 0;
        while ((n = recvmsg(sock, &msg, flags | MSG_CMSG_CLOEXEC)) < 0 && errno == EINTR)
                ;
        if (n < 0)
                return -errno;
        for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
                if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
                        continue;
                size_t k = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
                for (size_t i = 0; i < k; i++) {
                        int fd;
                        memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
                        if (*ret_n_fds < max_fds && *ret_n_fds < US_FDS_MAX)
                                fds[(*ret_n_fds)++] = fd;
                        else
                                close(fd);
                }
        }
        return n;
}
