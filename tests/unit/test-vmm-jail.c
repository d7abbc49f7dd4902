/* SPDX-License-Identifier: Apache-2.0 */
/* QEMU's private root (vmm/jail.h): a child enters it as QEMU's child does
 * and checks what it can and cannot reach. Needs root. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/wait.h>
#include <unistd.h>

#include "unit.h"

#include "base/cleanup.h"
#include "vmm/jail.h"

struct fixture {
        char dir[64];
        char kernel[96], initrd[96];
};

static int setup(void **state)
{
        struct fixture *f = calloc(1, sizeof(*f));
        assert_non_null(f);
        snprintf(f->dir, sizeof(f->dir), "/tmp/test-vmm-jail-XXXXXX");
        assert_non_null(mkdtemp(f->dir));
        snprintf(f->kernel, sizeof(f->kernel), "%s/vmlinux", f->dir);
        snprintf(f->initrd, sizeof(f->initrd), "%s/initrd", f->dir);
        FILE *k = fopen(f->kernel, "we"), *i = fopen(f->initrd, "we");
        assert_non_null(k);
        assert_non_null(i);
        fputs("kernel bytes", k);
        fputs("initrd bytes", i);
        fclose(k);
        fclose(i);
        *state = f;
        return 0;
}

static int teardown(void **state)
{
        struct fixture *f = *state;
        (void)unlink(f->kernel);
        (void)unlink(f->initrd);
        (void)rmdir(f->dir);
        free(f);
        return 0;
}

static bool exists(const char *path)
{
        struct stat st;
        return lstat(path, &st) == 0;
}

static bool file_is(const char *path, const char *want)
{
        char buf[64] = "";
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                return false;
        ssize_t n = read(fd, buf, sizeof(buf) - 1);
        close(fd);
        return n >= 0 && strcmp(buf, want) == 0;
}

/* Returns the number of the first check that failed, 0 if none. */
static int checks_inside(void)
{
        int fd;

        /* What QEMU needs. */
        if (!exists("/usr/bin") || !exists("/bin/sh") || !exists("/lib") || !exists("/usr/lib"))
                return 1;
        if (!file_is(VMM_JAIL_KERNEL, "kernel bytes") || !file_is(VMM_JAIL_INITRD, "initrd bytes"))
                return 2;
        fd = open("/dev/null", O_WRONLY | O_CLOEXEC);
        if (fd < 0 || write(fd, "x", 1) != 1)
                return 3;
        close(fd);
        fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                return 4;
        close(fd);
        /* What it must not see. */
        if (exists("/etc") || exists("/proc") || exists("/sys") || exists("/run") ||
            exists("/tmp") || exists("/var") || exists("/root") || exists("/home"))
                return 5;
        if (exists("/dev/kvm") || exists("/dev/sda") || exists("/dev/mem"))
                return 6;
        /* The flags of each mount: nothing setuid anywhere, devices only
         * under /dev, nothing executable but /usr. */
        struct statvfs v;
        unsigned long ro_nosuid_nodev = ST_RDONLY | ST_NOSUID | ST_NODEV;
        if (statvfs("/", &v) < 0 || (v.f_flag & ro_nosuid_nodev) != ro_nosuid_nodev)
                return 10;
        if (statvfs("/usr", &v) < 0 || (v.f_flag & ro_nosuid_nodev) != ro_nosuid_nodev ||
            (v.f_flag & ST_NOEXEC))
                return 11;
        if (statvfs(VMM_JAIL_KERNEL, &v) < 0 ||
            (v.f_flag & (ro_nosuid_nodev | ST_NOEXEC)) != (ro_nosuid_nodev | ST_NOEXEC))
                return 12;
        if (statvfs("/dev/null", &v) < 0 ||
            (v.f_flag & (ST_NOSUID | ST_NOEXEC)) != (ST_NOSUID | ST_NOEXEC) ||
            (v.f_flag & ST_NODEV))
                return 13;
        /* Nothing can be written. */
        if (mkdir("/x", 0755) == 0 || errno != EROFS)
                return 7;
        if (open("/usr/x", O_WRONLY | O_CREAT | O_CLOEXEC, 0644) >= 0 || errno != EROFS)
                return 8;
        if (open(VMM_JAIL_KERNEL, O_WRONLY | O_CLOEXEC) >= 0 || errno != EROFS)
                return 9;
        return 0;
}

/* Whether /proc/<pid>/ns/<ns> is another namespace than ours. */
static bool own_ns(pid_t pid, const char *ns)
{
        char path[64];
        struct stat mine, theirs;
        snprintf(path, sizeof(path), "/proc/self/ns/%s", ns);
        assert_int_equal(stat(path, &mine), 0);
        snprintf(path, sizeof(path), "/proc/%d/ns/%s", (int)pid, ns);
        assert_int_equal(stat(path, &theirs), 0);
        return mine.st_ino != theirs.st_ino;
}

static void enters_private_root(void **state)
{
        struct fixture *f = *state;
        struct us_error *err = NULL;
        int tree = -1;

        if (geteuid() != 0)
                unit_skip("needs root (mount namespaces)");
        assert_int_equal(vmm_jail_build(f->kernel, f->initrd, false, NULL, 0, &tree, &err), 0);
        assert_true(tree >= 0);

        /* The child reports its checks, then waits until we looked at its
         * namespaces. */
        int result[2], done[2];
        assert_int_equal(pipe2(result, O_CLOEXEC), 0);
        assert_int_equal(pipe2(done, O_CLOEXEC), 0);
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
                char c = 100;
                close(done[1]);
                if (vmm_jail_enter(tree, f->dir) == 0)
                        c = (char)checks_inside();
                (void)!write(result[1], &c, 1);
                (void)!read(done[0], &c, 1);
                _exit(0);
        }
        close(result[1]);
        close(done[0]);
        close(tree);
        char c = -1;
        assert_int_equal(read(result[0], &c, 1), 1);
        assert_int_equal(c, 0);
        assert_true(own_ns(pid, "mnt"));
        assert_true(own_ns(pid, "net"));
        assert_true(own_ns(pid, "ipc"));
        close(done[1]);
        close(result[0]);
        int st = 0;
        assert_int_equal(waitpid(pid, &st, 0), pid);
        assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);

        /* The host's view did not change: the tree was attached only in the
         * child's namespace. */
        struct stat a, b;
        assert_int_equal(stat(f->dir, &a), 0);
        assert_int_equal(stat("/tmp", &b), 0);
        assert_int_equal(a.st_dev, b.st_dev);
        assert_true(exists(f->kernel));
}

/* Inside, with shares {a (rw, a tmpfs mounted at a/sub), b (ro)}: the
 * number of the first check that failed, 0 if none. */
static int checks_shares(void)
{
        struct statvfs v;
        unsigned long inert = ST_NOSUID | ST_NODEV | ST_NOEXEC;
        char p0[32], p1[32];
        int fd;

        snprintf(p0, sizeof(p0), VMM_JAIL_SHARE_FMT, (size_t)0);
        snprintf(p1, sizeof(p1), VMM_JAIL_SHARE_FMT, (size_t)1);
        if (strcmp(p0, "/share/0") != 0 || strcmp(p1, "/share/1") != 0)
                return 1;
        if (!file_is("/share/0/hello", "share bytes") || !file_is("/share/1/hello", "ro bytes"))
                return 2;
        /* The mounts under a share come along. */
        if (!file_is("/share/0/sub/inner", "inner bytes"))
                return 3;
        fd = open("/share/0/new", O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
        if (fd < 0 || write(fd, "from jail", 9) != 9)
                return 4;
        close(fd);
        if (open("/share/1/new", O_WRONLY | O_CREAT | O_CLOEXEC, 0644) >= 0 || errno != EROFS)
                return 5;
        if (statvfs("/share/0", &v) < 0 || (v.f_flag & inert) != inert || (v.f_flag & ST_RDONLY))
                return 6;
        if (statvfs("/share/0/sub", &v) < 0 || (v.f_flag & inert) != inert)
                return 7;
        if (statvfs("/share/1", &v) < 0 || (v.f_flag & (inert | ST_RDONLY)) != (inert | ST_RDONLY))
                return 8;
        /* No mount here is a peer of the host's: nothing made in the jail
         * could reach the host's mount table. */
        FILE *mi = fopen("/proc/self/mountinfo", "re");
        if (!mi)
                return 11;
        char line[1024];
        bool peer = false;
        while (fgets(line, sizeof(line), mi))
                peer |= strstr(line, " shared:") != NULL;
        fclose(mi);
        if (peer)
                return 12;
        /* QEMU's 9p server sets a new file's mode through /proc/self/fd/N
         * of an O_PATH fd: that works on the read-only procfs, and writing
         * QEMU's own entries does not. */
        int pfd = open("/share/0/new", O_PATH | O_CLOEXEC);
        char link[64];
        snprintf(link, sizeof(link), "/proc/self/fd/%d", pfd);
        struct stat st;
        if (pfd < 0 || chmod(link, 0600) < 0 || stat("/share/0/new", &st) < 0 ||
            (st.st_mode & 07777) != 0600)
                return 13;
        close(pfd);
        if (open("/proc/self/comm", O_WRONLY | O_CLOEXEC) >= 0 || errno != EROFS)
                return 14;
        /* QEMU's 9p server needs /proc/self/fd; nothing else of procfs. */
        if (!exists("/proc/self/fd") || exists("/proc/sys") || exists("/proc/meminfo"))
                return 10;
        if (statvfs("/proc", &v) < 0 || (v.f_flag & inert) != inert)
                return 11;
        /* Only the shares given: the root stays read-only around them. */
        if (exists("/share/2") || mkdir("/share/2", 0755) == 0 || errno != EROFS)
                return 9;
        return 0;
}

static void shares_at_fixed_names(void **state)
{
        struct fixture *f = *state;
        struct us_error *err = NULL;
        char a[128], b[128], sub[160], path[192];
        int tree = -1;

        if (geteuid() != 0)
                unit_skip("needs root (mount namespaces)");
        snprintf(a, sizeof(a), "%s/a", f->dir);
        snprintf(b, sizeof(b), "%s/b", f->dir);
        snprintf(sub, sizeof(sub), "%s/sub", a);
        assert_int_equal(mkdir(a, 0755), 0);
        assert_int_equal(mkdir(b, 0755), 0);
        assert_int_equal(mkdir(sub, 0755), 0);
        /* A shared mount, as a host's share dir may be: its clone must not
         * be a peer. */
        assert_int_equal(mount(a, a, NULL, MS_BIND, NULL), 0);
        assert_int_equal(mount(NULL, a, NULL, MS_SHARED, NULL), 0);
        snprintf(path, sizeof(path), "%s/hello", a);
        unit_write_file(path, "share bytes");
        snprintf(path, sizeof(path), "%s/hello", b);
        unit_write_file(path, "ro bytes");
        assert_int_equal(mount("tmpfs", sub, "tmpfs", 0, "size=16k"), 0);
        snprintf(path, sizeof(path), "%s/inner", sub);
        unit_write_file(path, "inner bytes");

        /* Relative paths are refused before anything is built. */
        struct vmm_share rel = {.tag = "r", .host_dir = "srv"};
        assert_int_equal(vmm_jail_build(f->kernel, NULL, false, &rel, 1, &tree, &err), -EINVAL);
        assert_int_equal(tree, -1);
        err = us_error_free(err);

        struct vmm_share shares[] = {{.tag = "a", .host_dir = a},
                                     {.tag = "b", .host_dir = b, .readonly = true}};
        assert_int_equal(vmm_jail_build(f->kernel, f->initrd, false, shares, 2, &tree, &err), 0);
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0)
                _exit(vmm_jail_enter(tree, f->dir) == 0 ? checks_shares() : 100);
        close(tree);
        int st = 0;
        assert_int_equal(waitpid(pid, &st, 0), pid);
        assert_true(WIFEXITED(st));
        assert_int_equal(WEXITSTATUS(st), 0);
        /* What QEMU wrote is the host's share's. */
        snprintf(path, sizeof(path), "%s/new", a);
        assert_true(file_is(path, "from jail"));

        assert_int_equal(unlink(path), 0);
        snprintf(path, sizeof(path), "%s/hello", a);
        assert_int_equal(unlink(path), 0);
        snprintf(path, sizeof(path), "%s/hello", b);
        assert_int_equal(unlink(path), 0);
        assert_int_equal(umount2(sub, MNT_DETACH), 0);
        assert_int_equal(rmdir(sub), 0);
        assert_int_equal(umount2(a, MNT_DETACH), 0);
        assert_int_equal(rmdir(a), 0);
        assert_int_equal(rmdir(b), 0);
}

/* The sandbox share's layout (shim/sandbox/share.h): the shim binds into
 * a shared staging dir, the share is a read-only slave of it. A container
 * added while the pod runs is a mount made there after QEMU entered its
 * root: it must reach QEMU's /share/0, as it reaches virtiofsd's copy. */
static void later_mounts_reach_the_share(void **state)
{
        struct fixture *f = *state;
        struct us_error *err = NULL;
        char staging[128], served[128], sub[160], path[192];
        int tree = -1, go[2], done[2];

        if (geteuid() != 0)
                unit_skip("needs root (mount namespaces)");
        snprintf(staging, sizeof(staging), "%s/mounts", f->dir);
        snprintf(served, sizeof(served), "%s/shared", f->dir);
        snprintf(sub, sizeof(sub), "%s/ctr", staging);
        assert_int_equal(mkdir(staging, 0755), 0);
        assert_int_equal(mkdir(served, 0755), 0);
        assert_int_equal(mount(staging, staging, NULL, MS_BIND, NULL), 0);
        assert_int_equal(mount(NULL, staging, NULL, MS_PRIVATE, NULL), 0);
        assert_int_equal(mount(NULL, staging, NULL, MS_SHARED, NULL), 0);
        assert_int_equal(mount(staging, served, NULL, MS_BIND, NULL), 0);
        assert_int_equal(mount(NULL, served, NULL, MS_SLAVE, NULL), 0);
        assert_int_equal(mount(NULL, served, NULL, MS_REMOUNT | MS_BIND | MS_RDONLY, NULL), 0);
        assert_int_equal(mkdir(sub, 0755), 0);

        struct vmm_share share = {.tag = "unishim", .host_dir = served};
        assert_int_equal(vmm_jail_build(f->kernel, NULL, false, &share, 1, &tree, &err), 0);
        assert_int_equal(pipe2(go, O_CLOEXEC), 0);
        assert_int_equal(pipe2(done, O_CLOEXEC), 0);
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
                char c;
                if (vmm_jail_enter(tree, f->dir) != 0)
                        _exit(100);
                /* In: the container is not there yet (looked at before the
                 * parent is told to add it). */
                if (exists("/share/0/ctr/file") || write(done[1], "i", 1) != 1)
                        _exit(101);
                if (read(go[0], &c, 1) != 1)
                        _exit(102);
                if (!file_is("/share/0/ctr/file", "added later"))
                        _exit(103);
                /* Its own flags: writable, under the read-only share. */
                int fd = open("/share/0/ctr/from-qemu", O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
                if (fd < 0 || write(fd, "x", 1) != 1)
                        _exit(104);
                close(fd);
                if (mkdir("/share/0/x", 0755) == 0 || errno != EROFS)
                        _exit(105);
                _exit(0);
        }
        close(tree);
        char c;
        assert_int_equal(read(done[0], &c, 1), 1);
        /* The container's rootfs, bound in the staging dir now. */
        assert_int_equal(mount("tmpfs", sub, "tmpfs", 0, "size=16k"), 0);
        snprintf(path, sizeof(path), "%s/file", sub);
        unit_write_file(path, "added later");
        assert_int_equal(write(go[1], "g", 1), 1);
        int st = 0;
        assert_int_equal(waitpid(pid, &st, 0), pid);
        assert_true(WIFEXITED(st));
        assert_int_equal(WEXITSTATUS(st), 0);
        snprintf(path, sizeof(path), "%s/from-qemu", sub);
        assert_true(exists(path));
        close(go[0]);
        close(go[1]);
        close(done[0]);
        close(done[1]);
        assert_int_equal(umount2(served, MNT_DETACH), 0);
        assert_int_equal(umount2(staging, MNT_DETACH), 0);
        assert_int_equal(rmdir(sub), 0);
        assert_int_equal(rmdir(staging), 0);
        assert_int_equal(rmdir(served), 0);
}

static void kvm_node_only_when_asked(void **state)
{
        struct fixture *f = *state;
        struct us_error *err = NULL;
        int tree = -1;

        if (geteuid() != 0)
                unit_skip("needs root (mount namespaces)");
        if (!exists("/dev/kvm"))
                unit_skip("no /dev/kvm on this host");
        assert_int_equal(vmm_jail_build(f->kernel, NULL, true, NULL, 0, &tree, &err), 0);
        assert_true(faccessat(tree, "dev/kvm", F_OK, AT_SYMLINK_NOFOLLOW) == 0);
        assert_true(faccessat(tree, "boot/initrd", F_OK, AT_SYMLINK_NOFOLLOW) < 0);
        close(tree);
}

static void missing_kernel_is_an_error(void **state)
{
        struct fixture *f = *state;
        struct us_error *err = NULL;
        int tree = -1;
        char missing[128];

        if (geteuid() != 0)
                unit_skip("needs root (mount API)");
        snprintf(missing, sizeof(missing), "%s/nonexistent", f->dir);
        assert_int_equal(vmm_jail_build(missing, NULL, false, NULL, 0, &tree, &err), -ENOENT);
        assert_int_equal(tree, -1);
        assert_non_null(strstr(us_error_text(err), "nonexistent"));
        us_error_free(err);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(enters_private_root, setup, teardown),
                cmocka_unit_test_setup_teardown(shares_at_fixed_names, setup, teardown),
                cmocka_unit_test_setup_teardown(later_mounts_reach_the_share, setup, teardown),
                cmocka_unit_test_setup_teardown(kvm_node_only_when_asked, setup, teardown),
                cmocka_unit_test_setup_teardown(missing_kernel_is_an_error, setup, teardown),
        };
        return unit_exit(unit_run_group_tests(tests, NULL, NULL));
}
