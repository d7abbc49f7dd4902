/* SPDX-License-Identifier: Apache-2.0 */
/* The host side of a VM pod's share: the guest's view is read-only in its
 * structure, container rootfs and volumes reach it (also in another mount
 * namespace, as virtiofsd's), host mounts below a volume follow its
 * propagation, and removal unmounts before it removes. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sched.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "unit.h"

#include <grp.h>

#include "base/cleanup.h"
#include "shim/sandbox/idmap.h"
#include "shim/sandbox/share.h"

struct fixture {
        char base[64];
        char state[PATH_MAX];
        char rootfs[PATH_MAX];
        char vol[PATH_MAX];
        char file[PATH_MAX];
        char outside[PATH_MAX];
        struct sandbox_share *share;
};

static int setup(void **state)
{
        if (geteuid() != 0 || unshare(CLONE_NEWNS) < 0 ||
            mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0) {
                *state = NULL;
                return 0; /* each test skips */
        }
        struct fixture *f = calloc(1, sizeof(*f));
        snprintf(f->base, sizeof(f->base), "/tmp/test-share.XXXXXX");
        if (!mkdtemp(f->base))
                return -1;
        snprintf(f->state, sizeof(f->state), "%s/state", f->base);
        snprintf(f->rootfs, sizeof(f->rootfs), "%s/rootfs", f->base);
        snprintf(f->vol, sizeof(f->vol), "%s/vol", f->base);
        snprintf(f->file, sizeof(f->file), "%s/single", f->base);
        snprintf(f->outside, sizeof(f->outside), "%s/outside", f->base);
        mkdir(f->state, 0700);
        mkdir(f->rootfs, 0755);
        mkdir(f->vol, 0755);
        mkdir(f->outside, 0755);
        char p[PATH_MAX + 16];
        snprintf(p, sizeof(p), "%s/bin-sh", f->rootfs);
        close(open(p, O_WRONLY | O_CREAT | O_CLOEXEC, 0755));
        snprintf(p, sizeof(p), "%s/data", f->vol);
        close(open(p, O_WRONLY | O_CREAT | O_CLOEXEC, 0644));
        snprintf(p, sizeof(p), "%s/precious", f->outside);
        close(open(p, O_WRONLY | O_CREAT | O_CLOEXEC, 0644));
        close(open(f->file, O_WRONLY | O_CREAT | O_CLOEXEC, 0644));
        *state = f;
        return 0;
}

static int teardown(void **state)
{
        struct fixture *f = *state;
        if (!f)
                return 0;
        sandbox_share_free(f->share);
        char cmd[PATH_MAX];
        snprintf(cmd, sizeof(cmd), "umount -R -l %s/state/* 2>/dev/null; rm -rf %s", f->base,
                 f->base);
        (void)system(cmd);
        free(f);
        return 0;
}

#define NEED_ROOT(f)                                                                               \
        do {                                                                                       \
                if (!(f))                                                                          \
                        unit_skip("needs root: a private mount namespace");                        \
        } while (0)

static bool exists(const char *dir, const char *rel)
{
        char p[PATH_MAX * 2];
        snprintf(p, sizeof(p), "%s/%s", dir, rel);
        struct stat st;
        return lstat(p, &st) == 0;
}

static int create_in(const char *dir, const char *rel)
{
        char p[PATH_MAX * 2];
        snprintf(p, sizeof(p), "%s/%s", dir, rel);
        int fd = open(p, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
        if (fd < 0)
                return -errno;
        close(fd);
        return 0;
}

/* Mounts at or below dir in our mount namespace. */
static int mounts_below(const char *dir)
{
        FILE *m = fopen("/proc/self/mountinfo", "re");
        char line[4096];
        int n = 0;
        size_t len = strlen(dir);
        while (m && fgets(line, sizeof(line), m)) {
                char mp[PATH_MAX];
                if (sscanf(line, "%*s %*s %*s %*s %4095s", mp) == 1 && strncmp(mp, dir, len) == 0)
                        n++;
        }
        if (m)
                fclose(m);
        return n;
}

static void guest_view_is_read_only(void **state)
{
        struct fixture *f = *state;
        NEED_ROOT(f);
        assert_int_equal(sandbox_share_new(f->state, &f->share, NULL), 0);
        const char *view = sandbox_share_guest_dir(f->share);
        assert_int_equal(sandbox_share_add_container(f->share, "c1", f->rootfs, NULL, 0, NULL), 0);
        assert_int_equal(sandbox_share_add_bind(f->share, "c1", 0, f->vol, true, false, NULL), 0);
        assert_int_equal(sandbox_share_add_bind(f->share, "c1", 1, f->file, false, false, NULL), 0);
        assert_int_equal(sandbox_share_add_bind(f->share, "c1", 2, f->vol, false, false, NULL), 0);

        /* What the guest sees: the rootfs and the volumes... */
        assert_true(exists(view, "c1/rootfs/bin-sh"));
        assert_true(exists(view, "c1/mounts/0/data"));
        assert_true(exists(view, "c1/mounts/1"));
        /* ...writable where the spec says so... */
        assert_int_equal(create_in(view, "c1/rootfs/written-by-guest"), 0);
        assert_true(exists(f->rootfs, "written-by-guest"));
        assert_int_equal(create_in(view, "c1/mounts/2/new"), 0);
        assert_int_equal(create_in(view, "c1/mounts/0/new2"), -EROFS);
        /* ...and nothing of the structure can change. */
        assert_int_equal(create_in(view, "c1/planted"), -EROFS);
        assert_int_equal(create_in(view, "c1/mounts/planted"), -EROFS);
        assert_int_equal(create_in(view, "planted"), -EROFS);
        char from[PATH_MAX * 2], to[PATH_MAX * 2];
        snprintf(from, sizeof(from), "%s/c1", view);
        snprintf(to, sizeof(to), "%s/c1-moved", view);
        assert_int_equal(rename(from, to), -1);
        assert_int_equal(errno, EROFS);
        snprintf(to, sizeof(to), "%s/c2", view);
        assert_int_equal(symlink(f->outside, to), -1);
        assert_int_equal(errno, EROFS);

        /* Removal unmounts first: the sources keep their files. */
        assert_int_equal(sandbox_share_remove_container(f->share, "c1", NULL), 0);
        assert_false(exists(view, "c1"));
        assert_true(exists(f->rootfs, "bin-sh"));
        assert_true(exists(f->vol, "data"));
        assert_int_equal(sandbox_share_remove_container(f->share, "c1", NULL), 0);
        f->share = sandbox_share_free(f->share);
        assert_int_equal(mounts_below(f->state), 0);
}

/* virtiofsd serves the view from its own mount namespace (a slave copy):
 * containers added later must reach it there, and leave it on removal. */
static void binds_reach_another_namespace(void **state)
{
        struct fixture *f = *state;
        NEED_ROOT(f);
        assert_int_equal(sandbox_share_new(f->state, &f->share, NULL), 0);
        const char *view = sandbox_share_guest_dir(f->share);
        int go[2], done[2];
        assert_int_equal(pipe(go), 0);
        assert_int_equal(pipe(done), 0);
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
                char c;
                if (unshare(CLONE_NEWNS) < 0 || mount(NULL, "/", NULL, MS_REC | MS_SLAVE, NULL) < 0)
                        _exit(10);
                if (write(done[1], "r", 1) != 1 || read(go[0], &c, 1) != 1)
                        _exit(11);
                if (!exists(view, "c1/rootfs/bin-sh") || !exists(view, "c1/mounts/0/data"))
                        _exit(12);
                if (create_in(view, "c1/mounts/0/x") != -EROFS ||
                    create_in(view, "c1/planted") != -EROFS)
                        _exit(13);
                if (write(done[1], "s", 1) != 1 || read(go[0], &c, 1) != 1)
                        _exit(14);
                /* Removed on the host: gone here too. */
                if (exists(view, "c1/rootfs/bin-sh"))
                        _exit(15);
                _exit(0);
        }
        char c;
        assert_int_equal(read(done[0], &c, 1), 1);
        assert_int_equal(sandbox_share_add_container(f->share, "c1", f->rootfs, NULL, 0, NULL), 0);
        assert_int_equal(sandbox_share_add_bind(f->share, "c1", 0, f->vol, true, false, NULL), 0);
        assert_int_equal(write(go[1], "g", 1), 1);
        assert_int_equal(read(done[0], &c, 1), 1);
        assert_int_equal(sandbox_share_remove_container(f->share, "c1", NULL), 0);
        assert_int_equal(write(go[1], "g", 1), 1);
        int ws = 0;
        assert_int_equal(waitpid(pid, &ws, 0), pid);
        assert_true(WIFEXITED(ws));
        assert_int_equal(WEXITSTATUS(ws), 0);
}

/* A container dir that exists already (a leftover or a plant) is refused,
 * never reused or followed. */
static void refuses_existing_entries(void **state)
{
        struct fixture *f = *state;
        NEED_ROOT(f);
        assert_int_equal(sandbox_share_new(f->state, &f->share, NULL), 0);
        char link[PATH_MAX * 2];
        snprintf(link, sizeof(link), "%s/mounts/c2", f->state);
        assert_int_equal(symlink(f->outside, link), 0);
        struct us_error *err = NULL;
        assert_int_equal(sandbox_share_add_container(f->share, "c2", f->rootfs, NULL, 0, &err),
                         -EEXIST);
        assert_non_null(strstr(us_error_text(err), "c2"));
        err = us_error_free(err);
        assert_true(exists(f->outside, "precious"));
        assert_int_equal(sandbox_share_add_container(f->share, "../x", f->rootfs, NULL, 0, NULL),
                         -EINVAL);
        assert_int_equal(sandbox_share_add_container(f->share, "..", f->rootfs, NULL, 0, NULL),
                         -EINVAL);

        /* A planted link is removed as a link. */
        assert_int_equal(sandbox_share_remove_container(f->share, "c2", NULL), 0);
        assert_true(exists(f->outside, "precious"));

        assert_int_equal(sandbox_share_add_container(f->share, "c3", f->rootfs, NULL, 0, NULL), 0);
        assert_int_equal(sandbox_share_add_container(f->share, "c3", f->rootfs, NULL, 0, NULL),
                         -EEXIST);
        /* A bind index used twice is refused too. */
        assert_int_equal(sandbox_share_add_bind(f->share, "c3", 0, f->vol, false, false, NULL), 0);
        assert_int_equal(sandbox_share_add_bind(f->share, "c3", 0, f->vol, false, false, NULL),
                         -EEXIST);
        /* A missing source leaves nothing. */
        assert_int_equal(
                sandbox_share_add_container(f->share, "c4", "/nonexistent/rootfs", NULL, 0, NULL),
                -ENOENT);
        assert_false(exists(f->state, "mounts/c4"));
        f->share = sandbox_share_free(f->share);
        assert_int_equal(mounts_below(f->state), 0);
        assert_true(exists(f->rootfs, "bin-sh"));
}

#define IDMAP_BASE 0x7e000000u

/* What virtiofsd, root of the pod's user namespace, sees in the share (it
 * holds an fd of it: the path above is the host's root's only). Exits 0
 * when all is as it should be. */
static int as_virtiofsd(int userns, const char *guest_dir)
{
        struct stat st;
        int g = open(guest_dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
        if (g < 0 || setns(userns, CLONE_NEWUSER) < 0 || setgroups(0, NULL) < 0 ||
            setresgid(0, 0, 0) < 0 || setresuid(0, 0, 0) < 0)
                return 10;
        /* The host's owners: root's 0, 1000's 1000. */
        if (fstatat(g, "c1/rootfs/bin-sh", &st, 0) < 0 || st.st_uid != 0 || st.st_gid != 0)
                return 11;
        if (fstatat(g, "c1/mounts/0/data", &st, 0) < 0 || st.st_uid != 1000 || st.st_gid != 1000)
                return 12;
        /* The structure is the host root's, unmapped here. */
        if (fstatat(g, "", &st, AT_EMPTY_PATH) < 0 || st.st_uid != 65534 ||
            fstatat(g, "c1", &st, 0) < 0 || st.st_uid != 65534)
                return 13;
        int fd = openat(g, "c1/rootfs/created", O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
        if (fd < 0)
                return 14;
        close(fd);
        if (openat(g, "c1/planted", O_WRONLY | O_CREAT | O_CLOEXEC, 0644) >= 0 || errno != EROFS)
                return 15;
        if (openat(g, "c1/mounts/1", O_WRONLY | O_CLOEXEC) >= 0 || errno != EROFS)
                return 16;
        return 0;
}

/* f->share, idmapped into a new user namespace; its fd, or a skip. */
static int idmapped_share(struct fixture *f)
{
        int userns = -1;
        struct us_error *err = NULL;
        if (sandbox_idmap_userns(IDMAP_BASE, SANDBOX_IDMAP_SIZE, &userns, &err) < 0)
                unit_skip("no user namespace: %s", us_error_text(err));
        assert_int_equal(sandbox_share_new(f->state, &f->share, NULL), 0);
        assert_int_equal(sandbox_share_set_idmap(f->share, userns, IDMAP_BASE, IDMAP_BASE, NULL),
                         0);
        assert_int_equal(sandbox_share_add_container(f->share, "c1", f->rootfs, NULL, 0, NULL), 0);
        return userns;
}

static void idmapped_share_keeps_owners(void **state)
{
        struct fixture *f = *state;
        NEED_ROOT(f);
        char p[PATH_MAX + 16];
        snprintf(p, sizeof(p), "%s/data", f->vol);
        assert_int_equal(chown(p, 1000, 1000), 0);
        int userns = idmapped_share(f);
        assert_int_equal(sandbox_share_add_bind(f->share, "c1", 0, f->vol, false, false, NULL), 0);
        assert_int_equal(sandbox_share_add_bind(f->share, "c1", 1, f->file, true, false, NULL), 0);
        pid_t pid = fork();
        if (pid == 0)
                _exit(as_virtiofsd(userns, sandbox_share_guest_dir(f->share)));
        int st = -1;
        assert_int_equal(waitpid(pid, &st, 0), pid);
        close(userns);
        assert_true(WIFEXITED(st));
        assert_int_equal(WEXITSTATUS(st), 0);
        /* Created as its 0: the host's 0. */
        struct stat s;
        snprintf(p, sizeof(p), "%s/created", f->rootfs);
        assert_int_equal(stat(p, &s), 0);
        assert_int_equal(s.st_uid, 0);
        assert_int_equal(sandbox_share_remove_container(f->share, "c1", NULL), 0);
        assert_int_equal(mounts_below(f->state), 2);
}

/* A volume whose source is a shared mount point: a host mount made below
 * it afterwards reaches the guest's view through the HostToContainer
 * bind, not through the None one, and a mount made in the share reaches
 * neither the source nor the other bind. */
/* dir bound onto itself and made a shared mount, as a host's may be. */
static void make_shared(const char *dir)
{
        assert_int_equal(mount(dir, dir, NULL, MS_BIND, NULL), 0);
        assert_int_equal(mount(NULL, dir, NULL, MS_SHARED, NULL), 0);
}

/* A tmpfs mounted at dir/at (made) holding an empty file. */
static void mount_with_file(const char *dir, const char *at, const char *file)
{
        char p[PATH_MAX + 32];
        snprintf(p, sizeof(p), "%s/%s", dir, at);
        assert_int_equal(mkdir(p, 0755), 0);
        assert_int_equal(mount("tmpfs", p, "tmpfs", 0, "size=64k"), 0);
        assert_int_equal(create_in(p, file), 0);
}

static void volume_propagation(void **state)
{
        struct fixture *f = *state;
        NEED_ROOT(f);
        make_shared(f->vol);
        assert_int_equal(sandbox_share_new(f->state, &f->share, NULL), 0);
        const char *view = sandbox_share_guest_dir(f->share);
        assert_int_equal(sandbox_share_add_container(f->share, "c1", f->rootfs, NULL, 0, NULL), 0);
        assert_int_equal(sandbox_share_add_bind(f->share, "c1", 0, f->vol, false, true, NULL), 0);
        assert_int_equal(sandbox_share_add_bind(f->share, "c1", 1, f->vol, false, false, NULL), 0);

        mount_with_file(f->vol, "sub", "from-host");
        assert_true(exists(view, "c1/mounts/0/sub/from-host"));
        assert_false(exists(view, "c1/mounts/1/sub/from-host"));

        char p[PATH_MAX + 32];
        snprintf(p, sizeof(p), "%s/mounts/c1/mounts/0", f->state);
        mount_with_file(p, "back", "from-share");
        assert_false(exists(f->vol, "back/from-share"));
        assert_false(exists(view, "c1/mounts/1/back/from-share"));

        assert_int_equal(sandbox_share_remove_container(f->share, "c1", NULL), 0);
        snprintf(p, sizeof(p), "%s/sub", f->vol);
        (void)umount2(p, MNT_DETACH);
        (void)umount2(f->vol, MNT_DETACH);
}

/* A container's rootfs on a shared mount: its clone in the share is no
 * peer, mounts go neither way. */
static void rootfs_is_private(void **state)
{
        struct fixture *f = *state;
        NEED_ROOT(f);
        make_shared(f->rootfs);
        assert_int_equal(sandbox_share_new(f->state, &f->share, NULL), 0);
        const char *view = sandbox_share_guest_dir(f->share);
        assert_int_equal(sandbox_share_add_container(f->share, "c1", f->rootfs, NULL, 0, NULL), 0);

        mount_with_file(f->rootfs, "sub", "from-host");
        assert_false(exists(view, "c1/rootfs/sub/from-host"));

        char p[PATH_MAX + 32];
        snprintf(p, sizeof(p), "%s/mounts/c1/rootfs", f->state);
        mount_with_file(p, "back", "from-share");
        assert_false(exists(f->rootfs, "back/from-share"));

        assert_int_equal(sandbox_share_remove_container(f->share, "c1", NULL), 0);
        snprintf(p, sizeof(p), "%s/sub", f->rootfs);
        (void)umount2(p, MNT_DETACH);
        (void)umount2(f->rootfs, MNT_DETACH);
}

/* A volume on a filesystem without idmapped mounts (procfs here; overlay
 * on kind nodes) is refused, naming it. */
static void unidmappable_volume_is_refused(void **state)
{
        struct fixture *f = *state;
        NEED_ROOT(f);
        close(idmapped_share(f));
        struct us_error *err = NULL;
        assert_int_equal(sandbox_share_add_bind(f->share, "c1", 0, "/proc/sys", false, false, &err),
                         -EINVAL);
        assert_non_null(strstr(us_error_text(err), "/proc/sys"));
        assert_non_null(strstr(us_error_text(err), "proc"));
        assert_non_null(strstr(us_error_text(err), "does not support idmapped mounts"));
        us_error_free(err);
        assert_false(exists(sandbox_share_guest_dir(f->share), "c1/mounts/0"));
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(guest_view_is_read_only, setup, teardown),
                cmocka_unit_test_setup_teardown(binds_reach_another_namespace, setup, teardown),
                cmocka_unit_test_setup_teardown(refuses_existing_entries, setup, teardown),
                cmocka_unit_test_setup_teardown(idmapped_share_keeps_owners, setup, teardown),
                cmocka_unit_test_setup_teardown(volume_propagation, setup, teardown),
                cmocka_unit_test_setup_teardown(rootfs_is_private, setup, teardown),
                cmocka_unit_test_setup_teardown(unidmappable_volume_is_refused, setup, teardown),
        };
        return unit_exit(unit_run_group_tests(tests, NULL, NULL));
}
