/* SPDX-License-Identifier: Apache-2.0 */
/* The VM template cache without QEMU (vmm/template-cache.h): a build
 * published with hand-written state and RAM, its holder, the lock, lookups
 * of broken entries (each error its own, nothing left behind), removal. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/if_tun.h>
#include <net/if.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "unit.h"

#include "base/cleanup.h"
#include "cgroup/cgroup.h"
#include "vmm/template-cache.h"

#define STATE_TEXT "QEVM fake migration stream"

struct fixture {
        char dir[64];
        char cache_dir[96];
        char kernel[96], initrd[96], qemu[96];
        struct vmm_template_inputs in;
        struct vmm_template_cache *cache;
};

static int setup(void **state)
{
        struct fixture *f = calloc(1, sizeof(*f));
        struct us_error *err = NULL;
        assert_non_null(f);
        snprintf(f->dir, sizeof(f->dir), "/tmp/test-vmm-tcache-XXXXXX");
        assert_non_null(mkdtemp(f->dir));
        snprintf(f->cache_dir, sizeof(f->cache_dir), "%s/cache", f->dir);
        snprintf(f->qemu, sizeof(f->qemu), "%s/qemu", f->dir);
        snprintf(f->kernel, sizeof(f->kernel), "%s/vmlinux", f->dir);
        snprintf(f->initrd, sizeof(f->initrd), "%s/initrd", f->dir);
        unit_write_file(f->qemu, "qemu");
        unit_write_file(f->kernel, "kernel");
        unit_write_file(f->initrd, "initrd");
        f->in = (struct vmm_template_inputs){
                .qemu_binary = f->qemu,
                .kernel = f->kernel,
                .initrd = f->initrd,
                .serial_ports = {"unishim.agent", "unishim.events"},
                .memory_mib = 32,
                .accel = VMM_ACCEL_TCG,
                .host_id = "release=4:test;",
        };
        if (vmm_template_cache_open(f->cache_dir, true, NULL, &f->cache, &err) < 0)
                fail_msg("open: %s", us_error_text(err));
        *state = f;
        return 0;
}

static int teardown(void **state)
{
        struct fixture *f = *state;
        struct us_error *err = NULL;
        _cleanup_strv_ char **keys = NULL;
        size_t n = 0;
        /* The holders too, not only the files. */
        if (vmm_template_cache_keys(f->cache, true, &keys, &n, &err) == 0)
                for (size_t i = 0; i < n; i++)
                        (void)vmm_template_remove(f->cache, keys[i], NULL, NULL, NULL);
        us_error_free(err);
        vmm_template_cache_free(f->cache);
        char cmd[128];
        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", f->dir);
        assert_int_equal(system(cmd), 0);
        free(f);
        return 0;
}

static int count_fds(void)
{
        int n = 0;
        DIR *d = opendir("/proc/self/fd");
        struct dirent *de;
        assert_non_null(d);
        while ((de = readdir(d)))
                n += de->d_name[0] != '.';
        closedir(d);
        return n - 1; /* the DIR's own */
}

/* The names in the cache directory besides "lock", as one string. */
static void cache_names(struct fixture *f, char *out, size_t size)
{
        DIR *d = opendir(f->cache_dir);
        struct dirent *de;
        assert_non_null(d);
        out[0] = '\0';
        while ((de = readdir(d)))
                if (de->d_name[0] != '.' || de->d_name[1] == 'b' || de->d_name[1] == 'r')
                        if (strcmp(de->d_name, "lock") && strcmp(de->d_name, ".") &&
                            strcmp(de->d_name, ".."))
                                snprintf(out + strlen(out), size - strlen(out), "%s ", de->d_name);
        closedir(d);
}

/* A build as vmm_template_build runs one, with the template's work done
 * by hand: the state written, the RAM touched. */
static void build(struct fixture *f, char key[VMM_TEMPLATE_KEY_LEN + 1], pid_t *ret_holder)
{
        struct vmm_template_build *b = NULL;
        struct us_error *err = NULL;
        if (vmm_template_build_begin(f->cache, &f->in, &b, &err) < 0)
                fail_msg("begin: %s", us_error_text(err));
        assert_int_equal(write(vmm_template_build_state_fd(b), STATE_TEXT, strlen(STATE_TEXT)),
                         (ssize_t)strlen(STATE_TEXT));
        assert_int_equal(pwrite(vmm_template_build_memory_fd(b), "guest", 5, 4096), 5);
        struct stat st;
        assert_int_equal(stat(vmm_template_build_share_dir(b), &st), 0);
        assert_true(S_ISDIR(st.st_mode));
        snprintf(key, VMM_TEMPLATE_KEY_LEN + 1, "%s", vmm_template_build_key(b));
        if (vmm_template_build_publish(b, ret_holder, &err) < 0)
                fail_msg("publish: %s", us_error_text(err));
        vmm_template_build_free(b);
}

static void key_path(struct fixture *f, const char *key, const char *name, char *out, size_t size)
{
        snprintf(out, size, "%s/%s/%s", f->cache_dir, key, name);
}

static int pidfd_of(pid_t pid)
{
        int fd = (int)syscall(SYS_pidfd_open, pid, 0);
        assert_true(fd >= 0);
        return fd;
}

static bool ended(int pidfd)
{
        struct pollfd p = {.fd = pidfd, .events = POLLIN};
        return poll(&p, 1, unit_wait_ms(5000)) == 1;
}

/* A vmm_template_gc_fn: "name: why" lines into a buffer of 4096. */
static void note_removed(const char *name, const char *why, void *userdata)
{
        char *out = userdata;
        snprintf(out + strlen(out), 4096 - strlen(out), "%s: %s\n", name, why);
}

/* Asserts that text has (want) or lacks the formatted string. */
static void has(const char *text, bool want, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));

static void has(const char *text, bool want, const char *fmt, ...)
{
        char s[512];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(s, sizeof(s), fmt, ap);
        va_end(ap);
        if ((strstr(text, s) != NULL) != want)
                fail_msg("\"%s\" %s \"%s\"", text, want ? "lacks" : "has", s);
}

/* Built, published, looked up: the state as written, the holder's memfd
 * sealed and as large as the guest's RAM, with the guest's bytes; the
 * entry's files 0600 in a 0700 directory; removed: no holder, no dir. */
static void build_lookup_remove(void **state)
{
        struct fixture *f = *state;
        struct vmm_template_entry e = VMM_TEMPLATE_ENTRY_INIT;
        struct us_error *err = NULL;
        char key[VMM_TEMPLATE_KEY_LEN + 1], path[256], names[1024];
        pid_t holder = -1;

        int fds = count_fds();
        build(f, key, &holder);
        assert_true(holder > 0);
        _cleanup_close_ int pidfd = pidfd_of(holder);
        assert_int_equal(count_fds(), fds + 1);

        assert_int_equal(vmm_template_lookup(f->cache, &f->in, &e, &err), 0);
        assert_string_equal(e.key, key);
        assert_int_equal(e.holder_pid, holder);
        assert_int_equal(e.memory_bytes, 32u << 20);
        char buf[64] = "";
        assert_int_equal(read(e.state_fd, buf, sizeof(buf)), (ssize_t)strlen(STATE_TEXT));
        assert_string_equal(buf, STATE_TEXT);
        int seals = fcntl(e.memory_fd, F_GET_SEALS);
        assert_int_equal(seals & (F_SEAL_SEAL | F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE),
                         F_SEAL_SEAL | F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE);
        assert_int_equal(pread(e.memory_fd, buf, 5, 4096), 5);
        assert_memory_equal(buf, "guest", 5);
        /* Sealed: nobody writes it, a clone maps it privately. */
        assert_int_equal(pwrite(e.memory_fd, "x", 1, 0), -1);
        assert_int_equal(errno, EPERM);
        void *priv = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE, e.memory_fd, 0);
        assert_true(priv != MAP_FAILED);
        munmap(priv, 4096);
        vmm_template_entry_clear(&e);
        assert_int_equal(e.state_fd, -1);
        assert_int_equal(count_fds(), fds + 1);

        struct stat st;
        assert_int_equal(stat(f->cache_dir, &st), 0);
        assert_int_equal(st.st_mode & 07777, 0700);
        const char *files[] = {"manifest", "state", "state.sha256", "holder.sock", "holder.pid"};
        for (size_t i = 0; i < US_ELEMENTSOF(files); i++) {
                key_path(f, key, files[i], path, sizeof(path));
                assert_int_equal(lstat(path, &st), 0);
                assert_int_equal(st.st_mode & 0077, 0);
        }
        key_path(f, key, "share", path, sizeof(path));
        assert_int_equal(access(path, F_OK), -1);
        cache_names(f, names, sizeof(names));
        snprintf(path, sizeof(path), "%s ", key);
        assert_string_equal(names, path);

        /* Listed, checked by key alone. */
        _cleanup_strv_ char **keys = NULL;
        size_t n = 0;
        assert_int_equal(vmm_template_cache_keys(f->cache, false, &keys, &n, &err), 0);
        assert_int_equal(n, 1);
        assert_string_equal(keys[0], key);
        assert_int_equal(vmm_template_check_key(f->cache, key, &e, &err), 0);
        vmm_template_entry_clear(&e);

        char removed[4096] = "";
        assert_int_equal(vmm_template_remove(f->cache, key, note_removed, removed, &err), 0);
        snprintf(path, sizeof(path), "%s: the template (its holder stopped)\n", key);
        assert_string_equal(removed, path);
        assert_true(ended(pidfd));
        cache_names(f, names, sizeof(names));
        assert_string_equal(names, "");
        assert_int_equal(vmm_template_lookup(f->cache, &f->in, &e, &err), VMM_TEMPLATE_NONE);
        err = us_error_free(err);
        /* Nothing of the key left: an error naming the whole key. */
        removed[0] = '\0';
        assert_int_equal(vmm_template_remove(f->cache, key, note_removed, removed, &err),
                         VMM_TEMPLATE_NONE);
        assert_non_null(strstr(us_error_text(err), key));
        assert_string_equal(removed, "");
        err = us_error_free(err);
        assert_int_equal(count_fds(), fds + 1);
}

/* While a build holds the key, a second build and a lookup are busy at
 * once; an abandoned build leaves nothing and frees the key. */
static void busy_while_building(void **state)
{
        struct fixture *f = *state;
        struct vmm_template_build *b = NULL, *b2 = NULL;
        struct vmm_template_entry e = VMM_TEMPLATE_ENTRY_INIT;
        struct us_error *err = NULL;
        char names[1024];

        assert_int_equal(vmm_template_lookup(f->cache, &f->in, &e, &err), VMM_TEMPLATE_NONE);
        err = us_error_free(err);
        assert_int_equal(vmm_template_build_begin(f->cache, &f->in, &b, &err), 0);
        /* In the same process too: the lock is the open file's. */
        assert_int_equal(vmm_template_build_begin(f->cache, &f->in, &b2, &err), VMM_TEMPLATE_BUSY);
        assert_non_null(strstr(us_error_text(err), "being built"));
        err = us_error_free(err);
        assert_null(b2);
        assert_int_equal(vmm_template_lookup(f->cache, &f->in, &e, &err), VMM_TEMPLATE_BUSY);
        err = us_error_free(err);
        assert_int_equal(vmm_template_remove(f->cache, vmm_template_build_key(b), NULL, NULL, &err),
                         VMM_TEMPLATE_BUSY);
        err = us_error_free(err);
        /* From another process. */
        pid_t child = fork();
        if (child == 0) {
                struct vmm_template_build *c = NULL;
                _exit(vmm_template_build_begin(f->cache, &f->in, &c, NULL) == VMM_TEMPLATE_BUSY
                              ? 0
                              : 1);
        }
        int st;
        assert_int_equal(waitpid(child, &st, 0), child);
        assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);

        cache_names(f, names, sizeof(names));
        assert_non_null(strstr(names, ".build-"));
        b = vmm_template_build_free(b);
        cache_names(f, names, sizeof(names));
        assert_string_equal(names, "");
        assert_int_equal(vmm_template_build_begin(f->cache, &f->in, &b, &err), 0);
        vmm_template_build_free(b);
}

/* A builder that died left its temporary directory: the next build of the
 * key removes it; another key's is not touched. */
static void leftovers_removed(void **state)
{
        struct fixture *f = *state;
        struct vmm_template_build *b = NULL;
        struct us_error *err = NULL;
        char path[256], names[1024], key[VMM_TEMPLATE_KEY_LEN + 1];
        _cleanup_free_ char *m = NULL;

        assert_int_equal(vmm_template_manifest(&f->in, &m, &err), 0);
        vmm_template_key(m, key);
        snprintf(path, sizeof(path), "%s/.build-%s-dead00", f->cache_dir, key);
        assert_int_equal(mkdir(path, 0700), 0);
        snprintf(path, sizeof(path), "%s/.build-%s-dead00/state", f->cache_dir, key);
        unit_write_file(path, "half");
        snprintf(path, sizeof(path), "%s/.build-%064d-other0", f->cache_dir, 0);
        assert_int_equal(mkdir(path, 0700), 0);

        assert_int_equal(vmm_template_build_begin(f->cache, &f->in, &b, &err), 0);
        b = vmm_template_build_free(b);
        cache_names(f, names, sizeof(names));
        snprintf(path, sizeof(path), ".build-%064d-other0 ", 0);
        assert_string_equal(names, path);
        /* rm --all's list has the other key, and removes its leftover. */
        _cleanup_strv_ char **keys = NULL;
        size_t n = 0;
        assert_int_equal(vmm_template_cache_keys(f->cache, true, &keys, &n, &err), 0);
        assert_int_equal(n, 1);
        char removed[4096] = "";
        assert_int_equal(vmm_template_remove(f->cache, keys[0], note_removed, removed, &err), 0);
        snprintf(path, sizeof(path), ".build-%064d-other0: left by", 0);
        assert_non_null(strstr(removed, path));
        cache_names(f, names, sizeof(names));
        assert_string_equal(names, "");
}

/* Looks up, expecting VMM_TEMPLATE_BROKEN with `words` in the message,
 * and no fd more than before. */
static void expect_broken(struct fixture *f, const char *words)
{
        struct vmm_template_entry e = VMM_TEMPLATE_ENTRY_INIT;
        struct us_error *err = NULL;
        int fds = count_fds();
        int r = vmm_template_lookup(f->cache, &f->in, &e, &err);
        if (r != VMM_TEMPLATE_BROKEN)
                fail_msg("lookup: %d (%s), expected broken: %s", r, us_error_text(err), words);
        if (!strstr(us_error_text(err), words))
                fail_msg("\"%s\" does not say \"%s\"", us_error_text(err), words);
        assert_int_equal(e.state_fd, -1);
        assert_int_equal(e.memory_fd, -1);
        assert_int_equal(count_fds(), fds);
        us_error_free(err);
}

static void copy_file(const char *from, const char *to)
{
        char cmd[600];
        snprintf(cmd, sizeof(cmd), "cp '%s' '%s'", from, to);
        assert_int_equal(system(cmd), 0);
}

/* Each way an entry can be unusable gives VMM_TEMPLATE_BROKEN and says
 * which: a manifest of other inputs, a state cut short, garbled or gone,
 * the holder gone. */
static void broken_entries(void **state)
{
        struct fixture *f = *state;
        struct us_error *err = NULL;
        char key[VMM_TEMPLATE_KEY_LEN + 1], path[256], saved[256];
        pid_t holder;

        build(f, key, &holder);
        _cleanup_close_ int pidfd = pidfd_of(holder);

        key_path(f, key, "manifest", path, sizeof(path));
        snprintf(saved, sizeof(saved), "%s/manifest.saved", f->dir);
        copy_file(path, saved);
        unit_write_file(path, "layout=1:0\n");
        expect_broken(f, "manifest differs");
        copy_file(saved, path);

        key_path(f, key, "state", path, sizeof(path));
        snprintf(saved, sizeof(saved), "%s/state.saved", f->dir);
        copy_file(path, saved);
        assert_int_equal(truncate(path, 10), 0);
        expect_broken(f, "truncated or corrupt");
        unit_write_file(path, "QEVM fake migration strean"); /* same size */
        expect_broken(f, "truncated or corrupt");
        assert_int_equal(unlink(path), 0);
        expect_broken(f, "its state");
        copy_file(saved, path);
        struct vmm_template_entry e = VMM_TEMPLATE_ENTRY_INIT;
        assert_int_equal(vmm_template_lookup(f->cache, &f->in, &e, &err), 0);
        vmm_template_entry_clear(&e);

        /* Its key alone: a manifest that does not hash to it. */
        key_path(f, key, "manifest", path, sizeof(path));
        unit_write_file(path, "layout=1:0\n");
        assert_int_equal(vmm_template_check_key(f->cache, key, &e, &err), VMM_TEMPLATE_BROKEN);
        assert_non_null(strstr(us_error_text(err), "does not hash"));
        err = us_error_free(err);
        snprintf(saved, sizeof(saved), "%s/manifest.saved", f->dir);
        copy_file(saved, path);

        assert_int_equal(kill(holder, SIGKILL), 0);
        assert_true(ended(pidfd));
        expect_broken(f, "holder is gone");
        /* A rebuild replaces the broken entry. */
        pid_t holder2;
        build(f, key, &holder2);
        assert_true(holder2 != holder);
        assert_int_equal(vmm_template_lookup(f->cache, &f->in, &e, &err), 0);
        assert_int_equal(e.holder_pid, holder2);
        vmm_template_entry_clear(&e);
}

/* A stand-in holder on the entry's socket serving fd once per connection
 * until killed: a memfd that is not what the cache made. */
static pid_t fake_holder(struct fixture *f, const char *key, int memfd)
{
        char dir[256];
        int ready[2];
        snprintf(dir, sizeof(dir), "%s/%s", f->cache_dir, key);
        assert_int_equal(pipe(ready), 0);
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
                int dfd = open(dir, O_RDONLY | O_DIRECTORY);
                struct sockaddr_un sa = {.sun_family = AF_UNIX};
                snprintf(sa.sun_path, sizeof(sa.sun_path), "/proc/self/fd/%d/holder.sock", dfd);
                int s = socket(AF_UNIX, SOCK_STREAM, 0);
                (void)unlinkat(dfd, "holder.sock", 0);
                if (dfd < 0 || s < 0 || bind(s, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
                    listen(s, 4) < 0)
                        _exit(1);
                (void)!write(ready[1], "r", 1);
                for (;;) {
                        int c = accept(s, NULL, NULL);
                        if (c < 0)
                                _exit(1);
                        char byte = 'm';
                        struct iovec iov = {.iov_base = &byte, .iov_len = 1};
                        union {
                                char buf[CMSG_SPACE(sizeof(int))];
                                struct cmsghdr align;
                        } u = {0};
                        struct msghdr msg = {.msg_iov = &iov,
                                             .msg_iovlen = 1,
                                             .msg_control = u.buf,
                                             .msg_controllen = sizeof(u.buf)};
                        struct cmsghdr *cm = CMSG_FIRSTHDR(&msg);
                        cm->cmsg_level = SOL_SOCKET;
                        cm->cmsg_type = SCM_RIGHTS;
                        cm->cmsg_len = CMSG_LEN(sizeof(int));
                        memcpy(CMSG_DATA(cm), &memfd, sizeof(int));
                        if (memfd >= 0)
                                (void)sendmsg(c, &msg, 0);
                        close(c);
                }
        }
        close(ready[1]);
        char c;
        assert_int_equal(read(ready[0], &c, 1), 1);
        close(ready[0]);
        return pid;
}

static void stop_fake(pid_t pid)
{
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
}

/* What a holder hands out is checked: an unsealed memfd, one of the wrong
 * size, a plain file, nothing at all; the real holder's answer is fine. */
static void holder_answers_checked(void **state)
{
        struct fixture *f = *state;
        char key[VMM_TEMPLATE_KEY_LEN + 1];
        pid_t holder;

        build(f, key, &holder);
        _cleanup_close_ int pidfd = pidfd_of(holder);
        assert_int_equal(kill(holder, SIGKILL), 0);
        assert_true(ended(pidfd));

        int unsealed = memfd_create("fake", MFD_CLOEXEC | MFD_ALLOW_SEALING);
        assert_true(unsealed >= 0);
        assert_int_equal(ftruncate(unsealed, 32 << 20), 0);
        pid_t fake = fake_holder(f, key, unsealed);
        expect_broken(f, "not sealed");
        stop_fake(fake);

        /* Sealed against writes only, not against growing: still unsealed. */
        assert_int_equal(fcntl(unsealed, F_ADD_SEALS, F_SEAL_WRITE), 0);
        fake = fake_holder(f, key, unsealed);
        expect_broken(f, "not sealed");
        stop_fake(fake);
        close(unsealed);

        int small = memfd_create("fake", MFD_CLOEXEC | MFD_ALLOW_SEALING);
        assert_int_equal(ftruncate(small, 16 << 20), 0);
        assert_int_equal(
                fcntl(small, F_ADD_SEALS, F_SEAL_SEAL | F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE),
                0);
        fake = fake_holder(f, key, small);
        expect_broken(f, "16777216 bytes");
        stop_fake(fake);
        close(small);

        char path[256];
        snprintf(path, sizeof(path), "%s/plain", f->dir);
        unit_write_file(path, "x");
        int plain = open(path, O_RDWR | O_CLOEXEC);
        fake = fake_holder(f, key, plain);
        expect_broken(f, "not a memfd");
        stop_fake(fake);
        close(plain);

        fake = fake_holder(f, key, -1);
        expect_broken(f, "sent no memfd");
        stop_fake(fake);
}

/* The cache directory: created 0700; one someone else may write, or that
 * does not exist, refused. */
static void cache_dir_checked(void **state)
{
        struct fixture *f = *state;
        struct vmm_template_cache *c = NULL;
        struct us_error *err = NULL;
        char path[128];

        snprintf(path, sizeof(path), "%s/none", f->dir);
        assert_int_equal(vmm_template_cache_open(path, false, NULL, &c, &err), -ENOENT);
        err = us_error_free(err);
        snprintf(path, sizeof(path), "%s/a/b/cache", f->dir);
        assert_int_equal(vmm_template_cache_open(path, true, NULL, &c, &err), 0);
        c = vmm_template_cache_free(c);
        struct stat st;
        assert_int_equal(stat(path, &st), 0);
        assert_int_equal(st.st_mode & 07777, 0700);
        assert_int_equal(chmod(path, 0770), 0);
        assert_int_equal(vmm_template_cache_open(path, true, NULL, &c, &err), -EPERM);
        assert_non_null(strstr(us_error_text(err), "mode 0770"));
        err = us_error_free(err);
        assert_int_equal(vmm_template_cache_open("relative", true, NULL, &c, &err), -EINVAL);
        err = us_error_free(err);
        assert_null(c);
}

/* Removed by hand (rm -rf of the cache): the holder ends by itself; a
 * rename of its directory (as at publish) does not end it. */
static void holder_ends_with_its_directory(void **state)
{
        struct fixture *f = *state;
        struct vmm_template_entry e = VMM_TEMPLATE_ENTRY_INIT;
        struct us_error *err = NULL;
        char key[VMM_TEMPLATE_KEY_LEN + 1], from[256], to[256];
        pid_t holder;

        build(f, key, &holder);
        _cleanup_close_ int pidfd = pidfd_of(holder);
        snprintf(from, sizeof(from), "%s/%s", f->cache_dir, key);
        snprintf(to, sizeof(to), "%s/elsewhere", f->dir);
        assert_int_equal(rename(from, to), 0);
        assert_int_equal(rename(to, from), 0);
        assert_int_equal(vmm_template_lookup(f->cache, &f->in, &e, &err), 0);
        vmm_template_entry_clear(&e);
        char cmd[300];
        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", f->cache_dir);
        assert_int_equal(system(cmd), 0);
        assert_true(ended(pidfd));
}

/* A cache opened with a holder cgroup puts its holders there, not in the
 * builder's cgroup. */
static void holder_in_its_cgroup(void **state)
{
        struct fixture *f = *state;
        struct us_cgroup *cg = NULL;
        struct vmm_template_cache *c = NULL;
        struct us_error *err = NULL;
        char name[64], key[VMM_TEMPLATE_KEY_LEN + 1], path[64], line[512];
        pid_t holder;

        if (geteuid() != 0)
                unit_skip("needs root (a cgroup)");
        snprintf(name, sizeof(name), "unishim-test-tcache-%d", (int)getpid());
        if (us_cgroup_create("/sys/fs/cgroup", name, &cg, &err) < 0)
                unit_skip("no cgroup: %s", us_error_text(err));
        assert_int_equal(vmm_template_cache_open(f->cache_dir, false, cg, &c, &err), 0);
        /* The fixture's cache and this one are the same directory. */
        struct vmm_template_cache *plain = f->cache;
        f->cache = c;
        build(f, key, &holder);
        f->cache = plain;
        snprintf(path, sizeof(path), "/proc/%d/cgroup", (int)holder);
        FILE *in = fopen(path, "re");
        assert_non_null(in);
        bool found = false;
        while (fgets(line, sizeof(line), in))
                found = found || strstr(line, name) != NULL;
        fclose(in);
        assert_true(found);
        _cleanup_close_ int pidfd = pidfd_of(holder);
        assert_int_equal(vmm_template_remove(c, key, NULL, NULL, &err), 0);
        assert_true(ended(pidfd));
        vmm_template_cache_free(c);
        /* Empty: an exited process has left its cgroup, zombie or not. */
        assert_int_equal(us_cgroup_destroy(cg, &err), 0);
        us_cgroup_free(cg);
}

/* A build of `in` as build() does it, for other inputs than the
 * fixture's. */
static void build_of(struct fixture *f, const struct vmm_template_inputs *in,
                     char key[VMM_TEMPLATE_KEY_LEN + 1], pid_t *ret_holder)
{
        struct vmm_template_inputs saved = f->in;
        f->in = *in;
        build(f, key, ret_holder);
        f->in = saved;
}

static bool alive(int pidfd)
{
        struct pollfd p = {.fd = pidfd, .events = POLLIN};
        return poll(&p, 1, 0) == 0;
}

/* gc removes what can never be hit again, stopping its holder: an entry of
 * another host, one whose kernel was rewritten, one whose initrd is gone,
 * one whose manifest does not hash to its key, a dead builder's directory;
 * it keeps a live entry, a key being built and a stale key whose lock is
 * held (its entry and its build directory), and collects that one once
 * the lock is free. */
static void gc_removes_stale(void **state)
{
        struct fixture *f = *state;
        struct us_error *err = NULL;
        char live[VMM_TEMPLATE_KEY_LEN + 1], other_host[VMM_TEMPLATE_KEY_LEN + 1],
                kernel_changed[VMM_TEMPLATE_KEY_LEN + 1], initrd_gone[VMM_TEMPLATE_KEY_LEN + 1],
                bad_manifest[VMM_TEMPLATE_KEY_LEN + 1], busy_stale[VMM_TEMPLATE_KEY_LEN + 1];
        char path[256], names[2048], removed[4096] = "", k2[VMM_TEMPLATE_KEY_LEN + 1];
        char kernel2[128], initrd2[128], qemu2[128], kernel3[128], qemu3[128];
        pid_t h_live, h_host, h_kernel, h_initrd, h_manifest, h_busy;
        struct vmm_template_inputs in;

        snprintf(kernel2, sizeof(kernel2), "%s/vmlinux2", f->dir);
        snprintf(kernel3, sizeof(kernel3), "%s/vmlinux3", f->dir);
        snprintf(initrd2, sizeof(initrd2), "%s/initrd2", f->dir);
        snprintf(qemu2, sizeof(qemu2), "%s/qemu2", f->dir);
        snprintf(qemu3, sizeof(qemu3), "%s/qemu3", f->dir);
        unit_write_file(kernel2, "kernel");
        unit_write_file(kernel3, "kernel");
        unit_write_file(initrd2, "initrd");
        unit_write_file(qemu2, "qemu");
        unit_write_file(qemu3, "qemu");

        /* The fixture's inputs, each with one of its own. */
        struct vmm_template_inputs host = f->in, k2_in = f->in, i2_in = f->in, q2_in = f->in;
        host.host_id = "release=5:other;";
        k2_in.kernel = kernel2;
        i2_in.initrd = initrd2;
        q2_in.qemu_binary = qemu2;
        in = f->in;
        in.kernel = kernel3;
        build(f, live, &h_live);
        build_of(f, &host, other_host, &h_host);
        build_of(f, &k2_in, kernel_changed, &h_kernel);
        build_of(f, &i2_in, initrd_gone, &h_initrd);
        build_of(f, &q2_in, bad_manifest, &h_manifest);
        build_of(f, &in, busy_stale, &h_busy);
        _cleanup_close_ int p_live = pidfd_of(h_live), p_host = pidfd_of(h_host),
                            p_kernel = pidfd_of(h_kernel), p_initrd = pidfd_of(h_initrd),
                            p_manifest = pidfd_of(h_manifest), p_busy = pidfd_of(h_busy);

        /* A rebuild of busy_stale under way (its lock held), then its
         * kernel rewritten; a build of another key under way. */
        struct vmm_template_build *b_stale = NULL, *b_new = NULL;
        assert_int_equal(vmm_template_build_begin(f->cache, &in, &b_stale, &err), 0);
        unit_write_file(kernel3, "a longer kernel");
        in = f->in;
        in.qemu_binary = qemu3;
        assert_int_equal(vmm_template_build_begin(f->cache, &in, &b_new, &err), 0);
        snprintf(k2, sizeof(k2), "%s", vmm_template_build_key(b_new));

        unit_write_file(kernel2, "a longer kernel");
        assert_int_equal(unlink(initrd2), 0);
        key_path(f, bad_manifest, "manifest", path, sizeof(path));
        FILE *m = fopen(path, "ae");
        assert_non_null(m);
        fputs("extra=0:\n", m);
        fclose(m);
        snprintf(path, sizeof(path), "%s/.build-%s-dead00", f->cache_dir, live);
        assert_int_equal(mkdir(path, 0700), 0);

        assert_int_equal(vmm_template_gc(f->cache, f->in.host_id, note_removed, removed, &err), 0);
        printf("# removed:\n%s", removed);
        has(removed, true, "%s: it was saved on another host", other_host);
        has(removed, true, "%s: its kernel %s was replaced or rewritten", kernel_changed, kernel2);
        has(removed, true, "%s: its initrd %s is gone", initrd_gone, initrd2);
        has(removed, true, "%s: its manifest does not hash to its key", bad_manifest);
        has(removed, true, ".build-%s-dead00: left by", live);
        has(removed, false, "%s", busy_stale);
        has(removed, false, "%s", k2);
        has(removed, false, "%s: ", live);
        assert_true(ended(p_host));
        assert_true(ended(p_kernel));
        assert_true(ended(p_initrd));
        assert_true(ended(p_manifest));
        assert_true(alive(p_live));
        assert_true(alive(p_busy));

        cache_names(f, names, sizeof(names));
        has(names, true, "%s", live);
        has(names, true, "%s", busy_stale);
        has(names, true, ".build-%s-", busy_stale);
        has(names, true, ".build-%s-", k2);
        has(names, false, "%s", other_host);
        has(names, false, "%s", kernel_changed);
        has(names, false, "%s", initrd_gone);
        has(names, false, "%s", bad_manifest);
        has(names, false, "dead00");
        struct vmm_template_entry e = VMM_TEMPLATE_ENTRY_INIT;
        assert_int_equal(vmm_template_lookup(f->cache, &f->in, &e, &err), 0);
        vmm_template_entry_clear(&e);

        /* The lock free (the rebuild abandoned): collected now. */
        vmm_template_build_free(b_stale);
        vmm_template_build_free(b_new);
        removed[0] = '\0';
        assert_int_equal(vmm_template_gc(f->cache, f->in.host_id, note_removed, removed, &err), 0);
        snprintf(path, sizeof(path), "%s: its kernel %s was replaced or rewritten\n", busy_stale,
                 kernel3);
        assert_string_equal(removed, path);
        assert_true(ended(p_busy));
        assert_true(alive(p_live));
        cache_names(f, names, sizeof(names));
        snprintf(path, sizeof(path), "%s ", live);
        assert_string_equal(names, path);
        /* Nothing more to do. */
        removed[0] = '\0';
        assert_int_equal(vmm_template_gc(f->cache, f->in.host_id, note_removed, removed, &err), 0);
        assert_string_equal(removed, "");
}

/* A failed build is recorded, each one in a row doubles the backoff (up
 * to its cap); a publish of the key, its removal, and gc once the backoff
 * is over clear it; a malformed record is an error, never a backoff. */
static void failed_builds_back_off(void **state)
{
        struct fixture *f = *state;
        struct vmm_template_failure fl;
        struct us_error *err = NULL;
        char key[VMM_TEMPLATE_KEY_LEN + 1], path[256], removed[4096] = "";
        _cleanup_free_ char *m = NULL;
        const int64_t t = 1000000;
        pid_t holder;

        assert_int_equal(vmm_template_backoff_s(0), 0);
        assert_int_equal(vmm_template_backoff_s(1), VMM_TEMPLATE_BACKOFF_MIN_S);
        assert_int_equal(vmm_template_backoff_s(2), 2 * VMM_TEMPLATE_BACKOFF_MIN_S);
        assert_int_equal(vmm_template_backoff_s(3), 4 * VMM_TEMPLATE_BACKOFF_MIN_S);
        assert_int_equal(vmm_template_backoff_s(40), VMM_TEMPLATE_BACKOFF_MAX_S);
        assert_int_equal(vmm_template_backoff_s(~0u), VMM_TEMPLATE_BACKOFF_MAX_S);

        assert_int_equal(vmm_template_manifest(&f->in, &m, &err), 0);
        vmm_template_key(m, key);
        assert_int_equal(vmm_template_failure_read(f->cache, key, &fl, &err), VMM_TEMPLATE_NONE);
        err = us_error_free(err);
        assert_int_equal(vmm_template_failure_record(f->cache, key, "QEMU ended\nearly", t, &err),
                         0);
        assert_int_equal(vmm_template_failure_read(f->cache, key, &fl, &err), 0);
        assert_int_equal(fl.failures, 1);
        assert_int_equal(fl.time, t);
        assert_int_equal(fl.retry_after, t + VMM_TEMPLATE_BACKOFF_MIN_S);
        assert_string_equal(fl.why, "QEMU ended early");
        assert_true(vmm_template_backoff_held(&fl, t));
        assert_true(vmm_template_backoff_held(&fl, t + VMM_TEMPLATE_BACKOFF_MIN_S - 1));
        assert_false(vmm_template_backoff_held(&fl, t + VMM_TEMPLATE_BACKOFF_MIN_S));
        /* The clock set back by more than the longest backoff. */
        assert_false(vmm_template_backoff_held(&fl, t - VMM_TEMPLATE_BACKOFF_MAX_S - 1));
        assert_int_equal(vmm_template_failure_record(f->cache, key, NULL, t + 100, &err), 0);
        assert_int_equal(vmm_template_failure_read(f->cache, key, &fl, &err), 0);
        assert_int_equal(fl.failures, 2);
        assert_int_equal(fl.retry_after, t + 100 + 2 * VMM_TEMPLATE_BACKOFF_MIN_S);
        assert_string_equal(fl.why, "");

        /* rm --all's list has the key; a publish clears the record. */
        _cleanup_strv_ char **keys = NULL;
        size_t n = 0;
        assert_int_equal(vmm_template_cache_keys(f->cache, true, &keys, &n, &err), 0);
        assert_int_equal(n, 1);
        assert_string_equal(keys[0], key);
        build(f, key, &holder);
        assert_int_equal(vmm_template_failure_read(f->cache, key, &fl, &err), VMM_TEMPLATE_NONE);
        err = us_error_free(err);
        /* So does a removal. */
        assert_int_equal(vmm_template_failure_record(f->cache, key, "x", t, &err), 0);
        assert_int_equal(vmm_template_remove(f->cache, key, note_removed, removed, &err), 0);
        has(removed, true, ".failed-%s: the key's failed-build record\n", key);
        has(removed, true, "%s: the template", key);
        removed[0] = '\0';
        assert_int_equal(vmm_template_failure_read(f->cache, key, &fl, &err), VMM_TEMPLATE_NONE);
        err = us_error_free(err);

        /* gc: a record whose backoff is over goes, a current one stays. */
        int64_t now = (int64_t)time(NULL);
        assert_int_equal(vmm_template_failure_record(f->cache, key, "x", now, &err), 0);
        assert_int_equal(vmm_template_gc(f->cache, f->in.host_id, note_removed, removed, &err), 0);
        assert_string_equal(removed, "");
        assert_int_equal(vmm_template_failure_read(f->cache, key, &fl, &err), 0);
        /* A key with its record alone: removed, and said so. */
        assert_int_equal(vmm_template_remove(f->cache, key, note_removed, removed, &err), 0);
        snprintf(path, sizeof(path), ".failed-%s: the key's failed-build record\n", key);
        assert_string_equal(removed, path);
        removed[0] = '\0';
        assert_int_equal(vmm_template_remove(f->cache, key, note_removed, removed, &err),
                         VMM_TEMPLATE_NONE);
        err = us_error_free(err);
        assert_string_equal(removed, "");
        assert_int_equal(vmm_template_failure_record(f->cache, key, "x", now - 2 * 3600, &err), 0);
        assert_int_equal(vmm_template_gc(f->cache, f->in.host_id, note_removed, removed, &err), 0);
        snprintf(path, sizeof(path), ".failed-%s: its build backoff is over", key);
        assert_non_null(strstr(removed, path));
        assert_int_equal(vmm_template_failure_read(f->cache, key, &fl, &err), VMM_TEMPLATE_NONE);
        err = us_error_free(err);

        /* Malformed: an error, no backoff (a caller builds). */
        const char *bad[] = {"",    "0 5\n",  "x y\n",  "3\n",
                             "3 5", "-1 5\n", "1 -5\n", "1 9223372036854775807\n"};
        for (size_t i = 0; i < US_ELEMENTSOF(bad); i++) {
                snprintf(path, sizeof(path), "%s/.failed-%s", f->cache_dir, key);
                unit_write_file(path, bad[i]);
                assert_int_equal(vmm_template_failure_read(f->cache, key, &fl, &err), -EINVAL);
                err = us_error_free(err);
        }
        assert_int_equal(vmm_template_remove(f->cache, key, NULL, NULL, &err), 0);
        char names[1024];
        cache_names(f, names, sizeof(names));
        assert_string_equal(names, "");
}

/* What the template's QEMU wrote into its 9p share (the template's guest
 * is not trusted more than a pod's) is not published with the entry: the
 * share is gone from it, whatever it holds, and the lookup is fine. */
static void share_not_published(void **state)
{
        struct fixture *f = *state;
        struct vmm_template_build *b = NULL;
        struct vmm_template_entry e = VMM_TEMPLATE_ENTRY_INIT;
        struct us_error *err = NULL;
        char key[VMM_TEMPLATE_KEY_LEN + 1], path[512];

        if (vmm_template_build_begin(f->cache, &f->in, &b, &err) < 0)
                fail_msg("begin: %s", us_error_text(err));
        assert_int_equal(write(vmm_template_build_state_fd(b), STATE_TEXT, strlen(STATE_TEXT)),
                         (ssize_t)strlen(STATE_TEXT));
        const char *share = vmm_template_build_share_dir(b);
        snprintf(path, sizeof(path), "%s/file", share);
        unit_write_file(path, "the guest's");
        snprintf(path, sizeof(path), "%s/dir", share);
        assert_int_equal(mkdir(path, 0700), 0);
        snprintf(path, sizeof(path), "%s/dir/deeper", share);
        unit_write_file(path, "more");
        snprintf(path, sizeof(path), "%s/link", share);
        assert_int_equal(symlink("/etc", path), 0);
        snprintf(key, sizeof(key), "%s", vmm_template_build_key(b));
        if (vmm_template_build_publish(b, NULL, &err) < 0)
                fail_msg("publish: %s", us_error_text(err));
        vmm_template_build_free(b);

        key_path(f, key, "share", path, sizeof(path));
        struct stat st;
        assert_int_equal(lstat(path, &st), -1);
        assert_int_equal(errno, ENOENT);
        /* A symlink in it was removed, not followed. */
        assert_int_equal(stat("/etc", &st), 0);
        assert_true(S_ISDIR(st.st_mode));
        assert_int_equal(vmm_template_lookup(f->cache, &f->in, &e, &err), 0);
        vmm_template_entry_clear(&e);
}

/* gc's reading of a current failed-build record fails for a moment (no
 * fd left: EMFILE): the record stays, as an entry does on such a failure
 * (only one that is malformed for good goes). In a child, with one fd
 * allowed above those open: enough for the key's lock, not for the
 * record. */
static void failed_record_kept_on_a_read_error(void **state)
{
        struct fixture *f = *state;
        struct us_error *err = NULL;
        char key[VMM_TEMPLATE_KEY_LEN + 1], path[256];
        _cleanup_free_ char *m = NULL;

        assert_int_equal(vmm_template_manifest(&f->in, &m, &err), 0);
        vmm_template_key(m, key);
        assert_int_equal(vmm_template_failure_record(f->cache, key, "x", (int64_t)time(NULL), &err),
                         0);
        snprintf(path, sizeof(path), "%s/.failed-%s", f->cache_dir, key);
        pid_t child = fork();
        assert_true(child >= 0);
        if (child == 0) {
                char removed[4096] = "";
                int low = 0;
                while (fcntl(low, F_GETFD) >= 0)
                        low++;
                struct rlimit rl;
                if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
                        _exit(10);
                rl.rlim_cur = (rlim_t)low + 1;
                if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
                        _exit(11);
                /* One open allowed, a second not. */
                int a = open("/dev/null", O_RDONLY | O_CLOEXEC);
                int b = open("/dev/null", O_RDONLY | O_CLOEXEC);
                if (a < 0 || b >= 0 || errno != EMFILE)
                        _exit(12);
                close(a);
                int r = vmm_template_gc(f->cache, f->in.host_id, note_removed, removed, NULL);
                if (r < 0)
                        _exit(13);
                if (access(path, F_OK) < 0 || removed[0]) {
                        printf("# removed: %s", removed);
                        _exit(1);
                }
                _exit(0);
        }
        int ws;
        assert_int_equal(waitpid(child, &ws, 0), child);
        assert_true(WIFEXITED(ws));
        assert_int_equal(WEXITSTATUS(ws), 0);
        assert_int_equal(access(path, F_OK), 0);
}

/* A name of the cache that is not a directory where the cache keeps one
 * (a key, a .build- leftover): a publish of the key replaces it, gc and
 * rm remove it, a symlink itself and never what it names. */
static void not_a_directory(void **state)
{
        struct fixture *f = *state;
        struct us_error *err = NULL;
        char key[VMM_TEMPLATE_KEY_LEN + 1], path[256], left[256], removed[4096] = "";
        char names[1024];
        _cleanup_free_ char *m = NULL;
        pid_t holder;

        assert_int_equal(vmm_template_manifest(&f->in, &m, &err), 0);
        vmm_template_key(m, key);
        snprintf(path, sizeof(path), "%s/%s", f->cache_dir, key);
        assert_int_equal(symlink(f->dir, path), 0);
        build(f, key, &holder);
        _cleanup_close_ int pidfd = pidfd_of(holder);
        struct stat st;
        assert_int_equal(lstat(path, &st), 0);
        assert_true(S_ISDIR(st.st_mode));
        assert_int_equal(vmm_template_remove(f->cache, key, NULL, NULL, &err), 0);
        assert_true(ended(pidfd));

        assert_int_equal(symlink(f->dir, path), 0);
        snprintf(left, sizeof(left), "%s/.build-%s-file00", f->cache_dir, key);
        unit_write_file(left, "x");
        assert_int_equal(vmm_template_gc(f->cache, f->in.host_id, note_removed, removed, &err), 0);
        printf("# removed:\n%s", removed);
        has(removed, true, "%s: it is not a directory", key);
        has(removed, true, ".build-%s-file00: left by", key);
        cache_names(f, names, sizeof(names));
        assert_string_equal(names, "");
        assert_int_equal(stat(f->dir, &st), 0);
        assert_int_equal(stat(f->kernel, &st), 0);

        unit_write_file(path, "x");
        assert_int_equal(vmm_template_remove(f->cache, key, NULL, NULL, &err), 0);
        assert_int_equal(access(path, F_OK), -1);
}

/* A pid that names no process: a child's, reaped. */
static pid_t dead_pid(void)
{
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0)
                _exit(0);
        assert_int_equal(waitpid(pid, NULL, 0), pid);
        return pid;
}

/* The temporary file of a failed-build record whose writer died before
 * its rename (.failed-<key>.tmp-<pid>) is collected by gc, by the next
 * build of its key and by rm, under the key's lock as a dead builder's
 * directory is; one of a live writer, or of a key whose lock is held,
 * stays. */
static void failed_record_leftovers(void **state)
{
        struct fixture *f = *state;
        struct us_error *err = NULL;
        struct vmm_template_build *b = NULL;
        struct vmm_template_inputs other = f->in;
        char key[VMM_TEMPLATE_KEY_LEN + 1], key2[VMM_TEMPLATE_KEY_LEN + 1];
        char dead[256], live[256], busy[256], names[2048], removed[4096] = "";
        char qemu2[128];
        _cleanup_free_ char *m = NULL;

        assert_int_equal(vmm_template_manifest(&f->in, &m, &err), 0);
        vmm_template_key(m, key);
        snprintf(dead, sizeof(dead), "%s/.failed-%s.tmp-%d", f->cache_dir, key, (int)dead_pid());
        snprintf(live, sizeof(live), "%s/.failed-%s.tmp-%d", f->cache_dir, key, (int)getpid());
        unit_write_file(dead, "1 5\nkilled before the rename\n");
        unit_write_file(live, "1 5\nbeing written\n");
        /* Another key, being built: its lock is held. */
        snprintf(qemu2, sizeof(qemu2), "%s/qemu2", f->dir);
        unit_write_file(qemu2, "qemu");
        other.qemu_binary = qemu2;
        assert_int_equal(vmm_template_build_begin(f->cache, &other, &b, &err), 0);
        snprintf(key2, sizeof(key2), "%s", vmm_template_build_key(b));
        snprintf(busy, sizeof(busy), "%s/.failed-%s.tmp-%d", f->cache_dir, key2, (int)dead_pid());
        unit_write_file(busy, "1 5\nkilled before the rename\n");

        /* rm --all's list has the key of a dead writer's file. */
        _cleanup_strv_ char **keys = NULL;
        size_t n = 0;
        assert_int_equal(vmm_template_cache_keys(f->cache, true, &keys, &n, &err), 0);
        bool listed = false;
        for (size_t i = 0; i < n; i++)
                listed = listed || strcmp(keys[i], key) == 0;
        assert_true(listed);

        assert_int_equal(vmm_template_gc(f->cache, f->in.host_id, note_removed, removed, &err), 0);
        printf("# removed:\n%s", removed);
        has(removed, true, "%s: ", strrchr(dead, '/') + 1);
        has(removed, false, "%s", strrchr(live, '/') + 1);
        has(removed, false, "%s", key2);
        assert_int_equal(access(dead, F_OK), -1);
        assert_int_equal(access(live, F_OK), 0);
        assert_int_equal(access(busy, F_OK), 0);

        /* The lock free: the next build of the key takes it away. */
        b = vmm_template_build_free(b);
        assert_int_equal(vmm_template_build_begin(f->cache, &other, &b, &err), 0);
        assert_int_equal(access(busy, F_OK), -1);
        b = vmm_template_build_free(b);

        /* And rm (the live writer's file stays). */
        unit_write_file(dead, "1 5\nkilled before the rename\n");
        removed[0] = '\0';
        assert_int_equal(vmm_template_remove(f->cache, key, note_removed, removed, &err), 0);
        has(removed, true, "%s: a failed-build record its writer died", strrchr(dead, '/') + 1);
        assert_int_equal(access(dead, F_OK), -1);
        assert_int_equal(access(live, F_OK), 0);
        assert_int_equal(unlink(live), 0);
        cache_names(f, names, sizeof(names));
        assert_string_equal(names, "");
}

/* The template's tap: in a namespace of its own, with a pod tap's flags. */
static void tap_in_its_own_netns(void **state)
{
        (void)state;
        struct us_error *err = NULL;
        int fd = -1;
        if (geteuid() != 0)
                unit_skip("needs root (a network namespace)");
        if (access("/dev/net/tun", R_OK | W_OK) < 0)
                unit_skip("no /dev/net/tun");
        assert_int_equal(vmm_template_tap_open(&fd, &err), 0);
        assert_true(fd > 2);
        struct ifreq ifr = {0};
        assert_int_equal(ioctl(fd, TUNGETIFF, &ifr), 0);
        assert_int_equal(ifr.ifr_flags & (IFF_TAP | IFF_NO_PI | IFF_VNET_HDR), IFF_TAP | IFF_NO_PI);
        int ns = ioctl(fd, TUNGETDEVNETNS);
        if (ns >= 0) {
                struct stat a, b;
                assert_int_equal(fstat(ns, &a), 0);
                assert_int_equal(stat("/proc/self/ns/net", &b), 0);
                assert_true(a.st_ino != b.st_ino);
                close(ns);
        }
        close(fd);
}

/* A failed-build record that is no regular file (only root could put
 * one there): a directory goes with gc and with rm, a fifo is read without
 * blocking and goes with gc. */
static void failed_record_not_a_file(void **state)
{
        struct fixture *f = *state;
        struct us_error *err = NULL;
        struct vmm_template_failure fl;
        char key[VMM_TEMPLATE_KEY_LEN + 1], path[256], sub[300], removed[4096] = "";
        _cleanup_free_ char *m = NULL;

        assert_int_equal(vmm_template_manifest(&f->in, &m, &err), 0);
        vmm_template_key(m, key);
        snprintf(path, sizeof(path), "%s/.failed-%s", f->cache_dir, key);
        snprintf(sub, sizeof(sub), "%s/x", path);

        assert_int_equal(mkdir(path, 0700), 0);
        unit_write_file(sub, "x");
        assert_int_equal(vmm_template_gc(f->cache, f->in.host_id, note_removed, removed, &err), 0);
        has(removed, true, ".failed-%s: unreadable", key);
        assert_int_equal(access(path, F_OK), -1);

        assert_int_equal(mkdir(path, 0700), 0);
        unit_write_file(sub, "x");
        removed[0] = '\0';
        assert_int_equal(vmm_template_remove(f->cache, key, note_removed, removed, &err), 0);
        has(removed, true, ".failed-%s: the key's failed-build record", key);
        assert_int_equal(access(path, F_OK), -1);

        assert_int_equal(mkfifo(path, 0600), 0);
        assert_true(vmm_template_failure_read(f->cache, key, &fl, NULL) < 0);
        removed[0] = '\0';
        assert_int_equal(vmm_template_gc(f->cache, f->in.host_id, note_removed, removed, &err), 0);
        has(removed, true, ".failed-%s: unreadable", key);
        assert_int_equal(access(path, F_OK), -1);
        assert_null(err);
}

/* key_age KEY SECONDS: the entry's directory's mtime that long ago. */
static void key_age(struct fixture *f, const char *key, int64_t seconds)
{
        char path[256];
        struct timespec ts[2] = {{.tv_sec = time(NULL) - seconds},
                                 {.tv_sec = time(NULL) - seconds}};
        snprintf(path, sizeof(path), "%s/%s", f->cache_dir, key);
        assert_int_equal(utimensat(AT_FDCWD, path, ts, AT_SYMLINK_NOFOLLOW), 0);
}

static int64_t key_mtime(struct fixture *f, const char *key)
{
        char path[256];
        struct stat st;
        snprintf(path, sizeof(path), "%s/%s", f->cache_dir, key);
        assert_int_equal(lstat(path, &st), 0);
        return (int64_t)st.st_mtim.tv_sec;
}

/* A full cache evicts the entry used least recently (a lookup's hit marks
 * it, a check by key does not), only when it was unused long enough, never
 * for a key it holds, never when it has room. */
static void evict_least_used(void **state)
{
        struct fixture *f = *state;
        struct vmm_template_entry e = VMM_TEMPLATE_ENTRY_INIT;
        struct us_error *err = NULL;
        char k[3][VMM_TEMPLATE_KEY_LEN + 1], removed[4096] = "", names[1024];
        const char *other = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
        for (int i = 0; i < 3; i++) {
                f->in.memory_mib = 32 + (unsigned)i;
                build(f, k[i], NULL);
        }
        key_age(f, k[0], 2000);
        key_age(f, k[1], 1000);

        /* Room left, or the new key is there already: nothing goes. */
        assert_int_equal(vmm_template_evict(f->cache, other, 4, 600, note_removed, removed, &err),
                         0);
        assert_int_equal(vmm_template_evict(f->cache, k[2], 3, 600, note_removed, removed, &err),
                         0);
        /* None unused that long. */
        assert_int_equal(vmm_template_evict(f->cache, other, 3, 5000, note_removed, removed, &err),
                         0);
        assert_string_equal(removed, "");

        /* A check by key is no use; a lookup's hit is: k[1] is now the
         * least recently used. */
        int64_t before = key_mtime(f, k[0]);
        assert_int_equal(vmm_template_check_key(f->cache, k[0], &e, &err), 0);
        vmm_template_entry_clear(&e);
        assert_int_equal(key_mtime(f, k[0]), before);
        f->in.memory_mib = 32;
        assert_int_equal(vmm_template_lookup(f->cache, &f->in, &e, &err), 0);
        vmm_template_entry_clear(&e);
        assert_true(key_mtime(f, k[0]) >= time(NULL) - 5);

        assert_int_equal(vmm_template_evict(f->cache, other, 3, 600, note_removed, removed, &err),
                         1);
        has(removed, true, "%s: unused for ", k[1]);
        has(removed, true, "the cache held 3");
        cache_names(f, names, sizeof(names));
        has(names, false, "%s", k[1]);
        has(names, true, "%s", k[0]);
        has(names, true, "%s", k[2]);
        /* Room now. */
        assert_int_equal(vmm_template_evict(f->cache, other, 3, 0, note_removed, removed, &err), 0);
        assert_null(err);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(build_lookup_remove, setup, teardown),
                cmocka_unit_test_setup_teardown(busy_while_building, setup, teardown),
                cmocka_unit_test_setup_teardown(leftovers_removed, setup, teardown),
                cmocka_unit_test_setup_teardown(broken_entries, setup, teardown),
                cmocka_unit_test_setup_teardown(holder_answers_checked, setup, teardown),
                cmocka_unit_test_setup_teardown(cache_dir_checked, setup, teardown),
                cmocka_unit_test_setup_teardown(holder_ends_with_its_directory, setup, teardown),
                cmocka_unit_test_setup_teardown(holder_in_its_cgroup, setup, teardown),
                cmocka_unit_test_setup_teardown(gc_removes_stale, setup, teardown),
                cmocka_unit_test_setup_teardown(failed_builds_back_off, setup, teardown),
                cmocka_unit_test_setup_teardown(failed_record_leftovers, setup, teardown),
                cmocka_unit_test_setup_teardown(share_not_published, setup, teardown),
                cmocka_unit_test_setup_teardown(not_a_directory, setup, teardown),
                cmocka_unit_test_setup_teardown(evict_least_used, setup, teardown),
                cmocka_unit_test_setup_teardown(failed_record_not_a_file, setup, teardown),
                cmocka_unit_test_setup_teardown(failed_record_kept_on_a_read_error, setup,
                                                teardown),
                cmocka_unit_test(tap_in_its_own_netns),
        };
        return unit_exit(unit_run_group_tests(tests, NULL, NULL));
}
