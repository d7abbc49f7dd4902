/* SPDX-License-Identifier: Apache-2.0 */
/*
 * guest-agent/agent-overlay.c: the overlay a container's 9p rootfs runs on
 * in the guest. Its options (escaped paths), which filesystems get it, and,
 * as root in a mount namespace of the test's own, the overlay itself over a
 * directory standing in for the 9p rootfs: a fifo and a unix socket made
 * and used in it, writes and removals kept out of the lower dir, the
 * image's root owner and mode kept, and nothing left after its removal or
 * after a failed setup.
 */
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "unit.h"

#include "guest-agent/agent.h"
#include "base/fs-util.h"

static void options_escaped(void **state)
{
        (void)state;
        char buf[256];
        assert_int_equal(agent_overlay_options("/run/unishim/shared/c1/rootfs", "/b/rw/upper",
                                               "/b/rw/work", buf, sizeof(buf), NULL),
                         0);
        assert_string_equal(buf, "lowerdir=/run/unishim/shared/c1/rootfs,upperdir=/b/rw/upper,"
                                 "workdir=/b/rw/work");
        /* ',' would end the option, ':' split lowerdir into layers. */
        assert_int_equal(agent_overlay_options("/r/a,b:c\\d", "/u:", "/w,", buf, sizeof(buf), NULL),
                         0);
        assert_string_equal(buf, "lowerdir=/r/a\\,b\\:c\\\\d,upperdir=/u\\:,workdir=/w\\,");

        /* Exactly full (NUL included), then one byte short. */
        const char *want = "lowerdir=/l,upperdir=/u,workdir=/w";
        assert_int_equal(agent_overlay_options("/l", "/u", "/w", buf, strlen(want) + 1, NULL), 0);
        assert_string_equal(buf, want);
        struct us_error *err = NULL;
        assert_int_equal(agent_overlay_options("/l", "/u", "/w", buf, strlen(want), &err),
                         -ENAMETOOLONG);
        assert_non_null(strstr(us_error_text(err), "too long"));
        err = us_error_free(err);
        /* An escape that does not fit is not split from its character. */
        assert_int_equal(agent_overlay_options("/l", "/u", "/w,", buf, strlen(want) + 2, NULL),
                         -ENAMETOOLONG);
}

static void only_9p(void **state)
{
        (void)state;
        assert_true(agent_rootfs_wants_overlay("9p"));
        assert_false(agent_rootfs_wants_overlay("virtiofs"));
        assert_false(agent_rootfs_wants_overlay("tmpfs"));
        assert_false(agent_rootfs_wants_overlay("overlay"));
        assert_false(agent_rootfs_wants_overlay("9p2000"));
}

/* The type a path's mount has, not the one its statfs claims. */
static void path_fstype(void **state)
{
        (void)state;
        char *t = NULL;
        assert_int_equal(agent_path_fstype("/proc/self", &t, NULL), 0);
        assert_string_equal(t, "proc");
        free(t);
        t = NULL;
        assert_int_equal(agent_path_fstype("/sys/kernel", &t, NULL), 0);
        assert_string_equal(t, "sysfs");
        free(t);
        struct us_error *err = NULL;
        t = (char *)"unset";
        assert_int_equal(agent_path_fstype("/nonexistent-unishim", &t, &err), -ENOENT);
        assert_string_equal(t, "unset");
        us_error_free(err);
}

/* The stand-in for the 9p rootfs and the container's bundle dir. */
struct dirs {
        char lower[64], dir[64];
};

static void make_dirs(struct dirs *d)
{
        snprintf(d->lower, sizeof(d->lower), "/tmp/unishim-ovl-lower-XXXXXX");
        snprintf(d->dir, sizeof(d->dir), "/tmp/unishim-ovl-dir-XXXXXX");
        assert_non_null(mkdtemp(d->lower));
        assert_non_null(mkdtemp(d->dir));
}

/* A rootfs not on 9p is run as it is: nothing is made. */
static void not_9p_untouched(void **state)
{
        (void)state;
        struct dirs d;
        make_dirs(&d);
        const char *lower = d.lower, *dir = d.dir;
        char *root = (char *)"unset";
        assert_int_equal(agent_rootfs_prepare(lower, dir, &root, NULL), 0);
        assert_null(root);
        assert_int_equal(rmdir(dir), 0); /* empty */
        assert_int_equal(rmdir(lower), 0);
        struct us_error *err = NULL;
        root = (char *)"unset";
        assert_int_equal(agent_rootfs_prepare("/nonexistent-unishim", "/tmp", &root, &err),
                         -ENOENT);
        assert_string_equal(root, "unset");
        us_error_free(err);
}

/* Root in a private mount namespace of this process, or the case skips;
 * then the dirs. */
static void enter_mount_ns(struct dirs *d)
{
        if (geteuid() != 0)
                unit_skip("needs root (mounts)");
        if (unshare(CLONE_NEWNS) < 0 || mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
                unit_skip("no mount namespace of its own: %s", strerror(errno));
        make_dirs(d);
}

/* Whether path is a mount point in this namespace. */
static bool mounted(const char *path)
{
        FILE *f = fopen("/proc/self/mountinfo", "re");
        assert_non_null(f);
        char line[4096];
        bool found = false;
        while (fgets(line, sizeof(line), f)) {
                char mnt[4096];
                if (sscanf(line, "%*s %*s %*s %*s %4095s", mnt) == 1 && !strcmp(mnt, path))
                        found = true;
        }
        fclose(f);
        return found;
}

/* Removes a test dir of /tmp (its tree). */
static int rm_tmp(const char *path)
{
        int tmp = open("/tmp", O_PATH | O_DIRECTORY | O_CLOEXEC);
        assert_true(tmp >= 0);
        int r = us_rm_tree_at(tmp, path + strlen("/tmp/"), NULL);
        close(tmp);
        return r;
}

static void join(char *buf, size_t size, const char *a, const char *b)
{
        assert_true((size_t)snprintf(buf, size, "%s/%s", a, b) < size);
}

static void overlay_makes_fifos_and_sockets(void **state)
{
        (void)state;
        struct dirs d;
        enter_mount_ns(&d);
        const char *lower = d.lower, *dir = d.dir;
        char p[512], q[512];
        join(p, sizeof(p), lower, "image-file");
        unit_write_file(p, "from the image\n");
        assert_int_equal(chown(lower, 123, 456), 0);
        assert_int_equal(chmod(lower, 0751), 0);

        char *root = NULL;
        struct us_error *err = NULL;
        int r = agent_rootfs_overlay(lower, dir, &root, &err);
        if (r == -ENODEV) {
                us_error_free(err);
                (void)rm_tmp(lower);
                (void)rmdir(dir);
                unit_skip("no overlay in this kernel");
        }
        assert_int_equal(r, 0);
        join(q, sizeof(q), dir, "rootfs");
        assert_string_equal(root, q);
        char *type = NULL;
        assert_int_equal(agent_path_fstype(root, &type, NULL), 0);
        assert_string_equal(type, "overlay");
        free(type);
        type = NULL;
        join(p, sizeof(p), dir, "rw");
        assert_int_equal(agent_path_fstype(p, &type, NULL), 0);
        assert_string_equal(type, "tmpfs");
        free(type);

        /* The image's root, as the image has it. */
        struct stat st;
        assert_int_equal(stat(root, &st), 0);
        assert_int_equal(st.st_uid, 123);
        assert_int_equal(st.st_gid, 456);
        assert_int_equal(st.st_mode & 07777, 0751);

        /* A fifo and a unix socket, bound and connected by path. */
        join(p, sizeof(p), root, "fifo");
        assert_int_equal(mkfifo(p, 0600), 0);
        assert_int_equal(stat(p, &st), 0);
        assert_true(S_ISFIFO(st.st_mode));
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        join(sa.sun_path, sizeof(sa.sun_path), root, "sock");
        int srv = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        int cli = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        assert_true(srv >= 0 && cli >= 0);
        assert_int_equal(bind(srv, (struct sockaddr *)&sa, sizeof(sa)), 0);
        assert_int_equal(listen(srv, 1), 0);
        assert_int_equal(connect(cli, (struct sockaddr *)&sa, sizeof(sa)), 0);
        int acc = accept4(srv, NULL, NULL, SOCK_CLOEXEC);
        assert_true(acc >= 0);
        assert_int_equal(write(cli, "ping", 4), 4);
        char got[8] = "";
        assert_int_equal(read(acc, got, sizeof(got)), 4);
        assert_memory_equal(got, "ping", 4);
        close(acc), close(cli), close(srv);

        /* Writes and removals stay in the overlay. */
        join(p, sizeof(p), root, "written");
        unit_write_file(p, "written\n");
        join(p, sizeof(p), root, "image-file");
        assert_int_equal(unlink(p), 0);
        assert_int_equal(access(p, F_OK), -1);
        join(p, sizeof(p), lower, "image-file");
        assert_int_equal(access(p, F_OK), 0);
        const char *const absent[] = {"written", "fifo", "sock"};
        for (size_t i = 0; i < sizeof(absent) / sizeof(absent[0]); i++) {
                join(p, sizeof(p), lower, absent[i]);
                assert_int_equal(access(p, F_OK), -1);
        }

        /* Removed: nothing mounted, nothing left in dir; twice is fine. */
        join(p, sizeof(p), dir, "rw");
        assert_true(mounted(root) && mounted(p));
        assert_int_equal(agent_rootfs_overlay_remove(dir, NULL), 0);
        assert_false(mounted(root) || mounted(p));
        assert_int_equal(agent_rootfs_overlay_remove(dir, NULL), 0);
        assert_int_equal(rmdir(dir), 0);
        free(root);
        assert_int_equal(rm_tmp(lower), 0);
}

static void failed_setup_leaves_nothing(void **state)
{
        (void)state;
        struct dirs d;
        enter_mount_ns(&d);
        const char *lower = d.lower, *dir = d.dir;
        char p[512], rw[512];
        join(rw, sizeof(rw), dir, "rw");
        char *root = (char *)"unset";
        struct us_error *err = NULL;

        /* Before anything is made: no lower, a lower that is no directory. */
        join(p, sizeof(p), lower, "missing");
        assert_int_equal(agent_rootfs_overlay(p, dir, &root, &err), -ENOENT);
        err = us_error_free(err);
        join(p, sizeof(p), lower, "file");
        unit_write_file(p, "");
        assert_int_equal(agent_rootfs_overlay(p, dir, &root, &err), -ENOTDIR);
        err = us_error_free(err);
        assert_int_equal(access(rw, F_OK), -1);

        /* After the tmpfs is mounted: the overlay's mount point is taken. */
        join(p, sizeof(p), dir, "rootfs");
        unit_write_file(p, "");
        int r = agent_rootfs_overlay(lower, dir, &root, &err);
        assert_int_equal(r, -EEXIST);
        assert_non_null(strstr(us_error_text(err), "rootfs"));
        err = us_error_free(err);
        assert_string_equal(root, "unset");
        assert_false(mounted(rw));
        assert_int_equal(access(rw, F_OK), -1);
        assert_int_equal(unlink(p), 0); /* not ours: left as it was */
        assert_int_equal(rmdir(dir), 0);
        assert_int_equal(rm_tmp(lower), 0);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(options_escaped),
                cmocka_unit_test(only_9p),
                cmocka_unit_test(path_fstype),
                cmocka_unit_test(not_9p_untouched),
                cmocka_unit_test(overlay_makes_fifos_and_sockets),
                cmocka_unit_test(failed_setup_leaves_nothing),
        };
        return unit_exit(unit_run_group_tests(tests, NULL, NULL));
}
