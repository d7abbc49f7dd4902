/* SPDX-License-Identifier: Apache-2.0 */
/* The fd-based tree removal that the shim runs on guest-writable storage:
 * it must never follow a symlink out of the tree, never cross a mount, and
 * remove trees of any depth with a bounded number of fds. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <sched.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "unit.h"

#include "base/cleanup.h"
#include "base/fs-util.h"

struct fixture {
        char base[64];
        int base_fd;
};

static int setup(void **state)
{
        struct fixture *f = calloc(1, sizeof(*f));
        snprintf(f->base, sizeof(f->base), "/tmp/test-fs-util.XXXXXX");
        if (!mkdtemp(f->base))
                return -1;
        f->base_fd = open(f->base, O_PATH | O_DIRECTORY | O_CLOEXEC);
        *state = f;
        return f->base_fd < 0 ? -1 : 0;
}

static int teardown(void **state)
{
        struct fixture *f = *state;
        char cmd[256];
        snprintf(cmd, sizeof(cmd), "umount -R %s/* 2>/dev/null; rm -rf %s", f->base, f->base);
        (void)system(cmd);
        close(f->base_fd);
        free(f);
        return 0;
}

static void put(int dir_fd, const char *path, const char *content)
{
        int fd = openat(dir_fd, path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        assert_true(fd >= 0);
        assert_int_equal(write(fd, content, strlen(content)), (ssize_t)strlen(content));
        close(fd);
}

static bool exists(int dir_fd, const char *path)
{
        struct stat st;
        return fstatat(dir_fd, path, &st, AT_SYMLINK_NOFOLLOW) == 0;
}

static size_t open_fds(void)
{
        DIR *d = opendir("/proc/self/fd");
        size_t n = 0;
        while (d && readdir(d))
                n++;
        if (d)
                closedir(d);
        return n;
}

static void removes_a_plain_tree(void **state)
{
        struct fixture *f = *state;
        assert_int_equal(mkdirat(f->base_fd, "t", 0755), 0);
        assert_int_equal(mkdirat(f->base_fd, "t/a", 0755), 0);
        assert_int_equal(mkdirat(f->base_fd, "t/a/b", 0700), 0);
        assert_int_equal(mkdirat(f->base_fd, "t/empty", 0755), 0);
        put(f->base_fd, "t/a/file", "x");
        put(f->base_fd, "t/a/b/deep", "y");
        assert_int_equal(mkfifoat(f->base_fd, "t/a/fifo", 0600), 0);
        assert_int_equal(us_rm_tree_at(f->base_fd, "t", NULL), 0);
        assert_false(exists(f->base_fd, "t"));
        /* Missing: nothing to do. */
        assert_int_equal(us_rm_tree_at(f->base_fd, "t", NULL), 0);
}

static void never_follows_symlinks(void **state)
{
        struct fixture *f = *state;
        assert_int_equal(mkdirat(f->base_fd, "outside", 0755), 0);
        put(f->base_fd, "outside/precious", "keep me");
        assert_int_equal(mkdirat(f->base_fd, "t", 0755), 0);
        assert_int_equal(mkdirat(f->base_fd, "t/c", 0755), 0);
        char target[PATH_MAX];
        snprintf(target, sizeof(target), "%s/outside", f->base);
        /* An absolute and a relative link to the directory, one to a file. */
        assert_int_equal(symlinkat(target, f->base_fd, "t/c/abs"), 0);
        assert_int_equal(symlinkat("../../outside", f->base_fd, "t/c/rel"), 0);
        assert_int_equal(symlinkat("../../outside/precious", f->base_fd, "t/file"), 0);
        assert_int_equal(us_rm_tree_at(f->base_fd, "t", NULL), 0);
        assert_false(exists(f->base_fd, "t"));
        assert_true(exists(f->base_fd, "outside/precious"));

        /* The tree's own name swapped for a symlink: the link goes, not
         * what it points to. */
        assert_int_equal(symlinkat(target, f->base_fd, "t"), 0);
        assert_int_equal(us_rm_tree_at(f->base_fd, "t", NULL), 0);
        assert_false(exists(f->base_fd, "t"));
        assert_true(exists(f->base_fd, "outside/precious"));
}

static void refuses_bad_names(void **state)
{
        struct fixture *f = *state;
        struct us_error *err = NULL;
        assert_int_equal(us_rm_tree_at(f->base_fd, "..", &err), -EINVAL);
        err = us_error_free(err);
        assert_int_equal(us_rm_tree_at(f->base_fd, "a/b", &err), -EINVAL);
        err = us_error_free(err);
        assert_int_equal(us_rm_tree_at(f->base_fd, "", NULL), -EINVAL);
        assert_int_equal(us_rm_tree_at(f->base_fd, ".", NULL), -EINVAL);
}

/* Moves the test into a mount namespace of its own, or skips. */
static void enter_private_mount_ns(struct fixture *f)
{
        if (geteuid() != 0 || unshare(CLONE_NEWNS) < 0 ||
            mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
                unit_skip("needs root: a private mount namespace");
        /* The fixture's fd is on the old namespace's mount. */
        close(f->base_fd);
        f->base_fd = open(f->base, O_PATH | O_DIRECTORY | O_CLOEXEC);
}

/* Mount points are never entered nor removed: the walk removes the rest
 * and names the mount. */
static void leaves_mount_points(void **state)
{
        struct fixture *f = *state;
        enter_private_mount_ns(f);
        char path[PATH_MAX];
        assert_int_equal(mkdirat(f->base_fd, "t", 0755), 0);
        assert_int_equal(mkdirat(f->base_fd, "t/m", 0755), 0);
        assert_int_equal(mkdirat(f->base_fd, "t/gone", 0755), 0);
        put(f->base_fd, "t/gone/x", "x");
        put(f->base_fd, "t/filemount", "");
        put(f->base_fd, "source", "bound file");
        snprintf(path, sizeof(path), "%s/t/m", f->base);
        assert_int_equal(mount("tmpfs", path, "tmpfs", 0, "size=1m"), 0);
        int mfd = open(path, O_PATH | O_DIRECTORY | O_CLOEXEC);
        put(mfd, "inside", "on the mount");
        char src[PATH_MAX];
        snprintf(src, sizeof(src), "%s/source", f->base);
        snprintf(path, sizeof(path), "%s/t/filemount", f->base);
        assert_int_equal(mount(src, path, NULL, MS_BIND, NULL), 0);

        struct us_error *err = NULL;
        assert_int_equal(us_rm_tree_at(f->base_fd, "t", &err), -EBUSY);
        assert_non_null(strstr(us_error_text(err), "mount point"));
        err = us_error_free(err);
        assert_true(exists(mfd, "inside"));
        assert_true(exists(f->base_fd, "source"));
        assert_false(exists(f->base_fd, "t/gone"));
        close(mfd);

        /* The tree itself a mount point: refused whole. */
        snprintf(path, sizeof(path), "%s/t/m", f->base);
        int tfd = open(path, O_PATH | O_DIRECTORY | O_CLOEXEC);
        int mdir = openat(f->base_fd, "t", O_PATH | O_DIRECTORY | O_CLOEXEC);
        assert_int_equal(us_rm_tree_at(mdir, "m", NULL), -EBUSY);
        assert_true(exists(tfd, "inside"));
        close(mdir);
        close(tfd);

        assert_int_equal(umount2(path, MNT_DETACH), 0);
        snprintf(path, sizeof(path), "%s/t/filemount", f->base);
        assert_int_equal(umount2(path, MNT_DETACH), 0);
        assert_int_equal(us_rm_tree_at(f->base_fd, "t", NULL), 0);
        assert_false(exists(f->base_fd, "t"));
}

/* Deeper than PATH_MAX and than the fd limit: iterative, a few fds. */
static void removes_ten_thousand_levels(void **state)
{
        struct fixture *f = *state;
        assert_int_equal(mkdirat(f->base_fd, "t", 0755), 0);
        int fd = openat(f->base_fd, "t", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        for (int i = 0; i < 10000; i++) {
                assert_int_equal(mkdirat(fd, "level", 0755), 0);
                if (i % 1000 == 0)
                        put(fd, "f", "x");
                int next = openat(fd, "level", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
                assert_true(next >= 0);
                close(fd);
                fd = next;
        }
        close(fd);
        size_t fds = open_fds();
        assert_int_equal(us_rm_tree_at(f->base_fd, "t", NULL), 0);
        assert_false(exists(f->base_fd, "t"));
        assert_int_equal(open_fds(), fds);
}

struct swapper {
        int base_fd;
        char target[PATH_MAX];
        atomic_bool stop;
        unsigned swaps;
};

/* Keeps replacing t/d/s (a directory with files) by a symlink to the
 * outside directory and back, as a guest racing the host would. */
static void *swap_loop(void *arg)
{
        struct swapper *s = arg;
        while (!atomic_load(&s->stop)) {
                if (renameat(s->base_fd, "t/d/s", s->base_fd, "t/d/s.moved") == 0) {
                        (void)symlinkat(s->target, s->base_fd, "t/d/s");
                        (void)unlinkat(s->base_fd, "t/d/s", 0);
                        (void)renameat(s->base_fd, "t/d/s.moved", s->base_fd, "t/d/s");
                } else {
                        (void)mkdirat(s->base_fd, "t/d", 0755);
                        (void)mkdirat(s->base_fd, "t/d/s", 0755);
                        (void)symlinkat(s->target, s->base_fd, "t/d/s/link");
                }
                s->swaps++;
        }
        return NULL;
}

static void survives_a_racing_renamer(void **state)
{
        struct fixture *f = *state;
        assert_int_equal(mkdirat(f->base_fd, "outside", 0755), 0);
        put(f->base_fd, "outside/precious", "keep me");
        struct swapper s = {.base_fd = f->base_fd};
        snprintf(s.target, sizeof(s.target), "%s/outside", f->base);
        for (int round = 0; round < 20; round++) {
                assert_int_equal(mkdirat(f->base_fd, "t", 0755), 0);
                assert_int_equal(mkdirat(f->base_fd, "t/d", 0755), 0);
                assert_int_equal(mkdirat(f->base_fd, "t/d/s", 0755), 0);
                for (int i = 0; i < 20; i++) {
                        char name[32];
                        snprintf(name, sizeof(name), "t/d/s/f%d", i);
                        put(f->base_fd, name, "x");
                }
                atomic_store(&s.stop, false);
                pthread_t th;
                assert_int_equal(pthread_create(&th, NULL, swap_loop, &s), 0);
                int r = us_rm_tree_at(f->base_fd, "t", NULL);
                atomic_store(&s.stop, true);
                pthread_join(th, NULL);
                /* Whatever the interleaving: done, or stopped, or left
                 * what was recreated meanwhile; never the outside. */
                assert_true(r == 0 || r == -ESTALE || r == -ENOTEMPTY || r == -EBUSY);
                assert_true(exists(f->base_fd, "outside/precious"));
                assert_true(exists(f->base_fd, "outside"));
                (void)us_rm_tree_at(f->base_fd, "t", NULL);
                (void)us_rm_tree_at(f->base_fd, "t", NULL);
        }
}

static void mkdir_p_creates_parents(void **state)
{
        struct fixture *f = *state;
        char path[PATH_MAX];
        snprintf(path, sizeof(path), "%s/x/y/z", f->base);
        assert_int_equal(us_mkdir_p(path, 0700, NULL), 0);
        assert_int_equal(us_mkdir_p(path, 0700, NULL), 0);
        assert_true(exists(f->base_fd, "x/y/z"));
        put(f->base_fd, "x/file", "");
        snprintf(path, sizeof(path), "%s/x/file/sub", f->base);
        struct us_error *err = NULL;
        assert_int_equal(us_mkdir_p(path, 0700, &err), -ENOTDIR);
        assert_non_null(strstr(us_error_text(err), "x/file"));
        us_error_free(err);
}

static void openat_beneath_refuses_escapes(void **state)
{
        struct fixture *f = *state;
        assert_int_equal(mkdirat(f->base_fd, "d", 0755), 0);
        assert_int_equal(symlinkat("/etc", f->base_fd, "d/link"), 0);
        int d = openat(f->base_fd, "d", O_PATH | O_DIRECTORY | O_CLOEXEC);
        assert_int_equal(us_openat_beneath(d, "link", O_RDONLY | O_DIRECTORY, 0), -ELOOP);
        assert_int_equal(us_openat_beneath(d, "../d", O_RDONLY | O_DIRECTORY, 0), -EXDEV);
        int fd = us_openat_beneath(d, "new", O_WRONLY | O_CREAT | O_EXCL, 0600);
        assert_true(fd >= 0);
        close(fd);
        close(d);
}

static bool read_only(int dir_fd, const char *path)
{
        struct statvfs sv;
        int fd = openat(dir_fd, path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        assert_true(fd >= 0);
        assert_int_equal(fstatvfs(fd, &sv), 0);
        close(fd);
        return sv.f_flag & ST_RDONLY;
}

static int clone_of(const char *path)
{
        int tree = open_tree(AT_FDCWD, path, OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_RECURSIVE);
        assert_true(tree >= 0);
        return tree;
}

/* Attributes on the whole tree or its top, the propagation asked for even
 * from a shared source (a clone of it is a peer until told otherwise), and
 * which step failed. */
static void mount_attach_sets_propagation(void **state)
{
        struct fixture *f = *state;
        enter_private_mount_ns(f);
        char src[PATH_MAX], path[PATH_MAX];
        snprintf(src, sizeof(src), "%s/src", f->base);
        assert_int_equal(mkdirat(f->base_fd, "src", 0755), 0);
        assert_int_equal(mount("tmpfs", src, "tmpfs", 0, "size=1m"), 0);
        assert_int_equal(mount(NULL, src, NULL, MS_SHARED, NULL), 0);
        assert_int_equal(mkdirat(f->base_fd, "src/sub", 0755), 0);
        assert_int_equal(mkdirat(f->base_fd, "src/late", 0755), 0);
        snprintf(path, sizeof(path), "%s/src/sub", f->base);
        assert_int_equal(mount("tmpfs", path, "tmpfs", 0, "size=1m"), 0);
        for (const char *d = "private\0slave\0top\0none\0"; *d; d += strlen(d) + 1)
                assert_int_equal(mkdirat(f->base_fd, d, 0755), 0);

        int tree = clone_of(src);
        assert_int_equal(us_mount_attach(tree, true, MOUNT_ATTR_RDONLY, MS_PRIVATE, f->base_fd,
                                         "private", NULL),
                         0);
        close(tree);
        assert_true(read_only(f->base_fd, "private"));
        assert_true(read_only(f->base_fd, "private/sub"));
        tree = clone_of(src);
        assert_int_equal(us_mount_attach(tree, true, 0, MS_SLAVE, f->base_fd, "slave", NULL), 0);
        close(tree);
        assert_false(read_only(f->base_fd, "slave"));
        tree = clone_of(src);
        assert_int_equal(us_mount_attach(tree, false, MOUNT_ATTR_RDONLY, MS_PRIVATE, f->base_fd,
                                         "top", NULL),
                         0);
        close(tree);
        assert_true(read_only(f->base_fd, "top"));
        assert_false(read_only(f->base_fd, "top/sub"));

        /* A mount on the source after the attach: a slave sees it, a
         * private tree does not. */
        snprintf(path, sizeof(path), "%s/src/late", f->base);
        assert_int_equal(mount("tmpfs", path, "tmpfs", 0, "size=1m"), 0);
        put(f->base_fd, "src/late/mark", "x");
        assert_true(exists(f->base_fd, "slave/late/mark"));
        assert_false(exists(f->base_fd, "private/late/mark"));
        assert_false(exists(f->base_fd, "top/late/mark"));

        /* No propagation given is refused before anything happens. */
        enum us_mount_step step = US_MOUNT_STEP_MOVE;
        tree = clone_of(src);
        assert_int_equal(
                us_mount_attach(tree, true, MOUNT_ATTR_RDONLY, 0, f->base_fd, "none", &step),
                -EINVAL);
        assert_int_equal(step, US_MOUNT_STEP_ATTRS);
        assert_false(read_only(f->base_fd, "none"));
        step = US_MOUNT_STEP_ATTRS;
        assert_int_equal(us_mount_attach(tree, true, 0, MS_PRIVATE, f->base_fd, "missing", &step),
                         -ENOENT);
        assert_int_equal(step, US_MOUNT_STEP_MOVE);
        close(tree);
}

/* fds over a socket: what was sent arrives (a new fd of the same file),
 * extra fds beyond what the receiver takes are closed, not leaked. */
static void passes_fds(void **state)
{
        (void)state;
        int sp[2], pipe_fds[2];
        assert_int_equal(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sp), 0);
        assert_int_equal(pipe2(pipe_fds, O_CLOEXEC), 0);
        char msg[] = "hi", got[8] = "";
        struct iovec out = {.iov_base = msg, .iov_len = sizeof(msg)};
        struct iovec in = {.iov_base = got, .iov_len = sizeof(got)};
        int fds[US_FDS_MAX + 1] = {pipe_fds[0], pipe_fds[1]}, recv_fds[2] = {-1, -1};
        size_t n_fds = 9;

        assert_int_equal(us_sendmsg_fds(sp[0], &out, 1, fds, 2, 0), sizeof(msg));
        assert_int_equal(us_recvmsg_fds(sp[1], &in, 1, recv_fds, 1, &n_fds, 0), sizeof(msg));
        assert_string_equal(got, "hi");
        assert_int_equal(n_fds, 1);
        struct stat a, b;
        assert_int_equal(fstat(recv_fds[0], &a), 0);
        assert_int_equal(fstat(pipe_fds[0], &b), 0);
        assert_true(a.st_ino == b.st_ino && recv_fds[0] != pipe_fds[0]);
        assert_true(fcntl(recv_fds[0], F_GETFD) & FD_CLOEXEC);
        close(recv_fds[0]);
        /* The second fd was closed by the receiver: the pipe's write end
         * is now only pipe_fds[1], so closing it gives the reader EOF. */
        close(pipe_fds[1]);
        char c;
        assert_int_equal(read(pipe_fds[0], &c, 1), 0);
        close(pipe_fds[0]);

        /* No fds, too many, and EOF. */
        assert_int_equal(us_sendmsg_fds(sp[0], &out, 1, NULL, 0, 0), sizeof(msg));
        assert_int_equal(us_recvmsg_fds(sp[1], &in, 1, recv_fds, 2, &n_fds, 0), sizeof(msg));
        assert_int_equal(n_fds, 0);
        assert_int_equal(us_sendmsg_fds(sp[0], &out, 1, fds, US_FDS_MAX + 1, 0), -EINVAL);
        close(sp[0]);
        assert_int_equal(us_recvmsg_fds(sp[1], &in, 1, recv_fds, 2, &n_fds, 0), 0);
        close(sp[1]);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(removes_a_plain_tree, setup, teardown),
                cmocka_unit_test_setup_teardown(never_follows_symlinks, setup, teardown),
                cmocka_unit_test_setup_teardown(refuses_bad_names, setup, teardown),
                cmocka_unit_test_setup_teardown(removes_ten_thousand_levels, setup, teardown),
                cmocka_unit_test_setup_teardown(survives_a_racing_renamer, setup, teardown),
                cmocka_unit_test_setup_teardown(mkdir_p_creates_parents, setup, teardown),
                cmocka_unit_test_setup_teardown(openat_beneath_refuses_escapes, setup, teardown),
                cmocka_unit_test_setup_teardown(leaves_mount_points, setup, teardown),
                cmocka_unit_test_setup_teardown(mount_attach_sets_propagation, setup, teardown),
                cmocka_unit_test(passes_fds),
        };
        return unit_exit(unit_run_group_tests(tests, NULL, NULL));
}
