/* SPDX-License-Identifier: Apache-2.0 */
/* The VM template cache and its RAM holders (vmm/template-cache.h). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/close_range.h>
#include <net/if.h>
#include <linux/if_tun.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "base/cleanup.h"
#include "base/fs-util.h"
#include "base/loop.h"
#include "base/sha256.h"
#include "cgroup/cgroup.h"
#include "template-cache.h"

#define LOCK_NAME        "lock"
#define MANIFEST_NAME    "manifest"
#define STATE_NAME       "state"
#define STATE_SUM_NAME   "state.sha256"
#define HOLDER_SOCK_NAME "holder.sock"
#define HOLDER_PID_NAME  "holder.pid"
#define SHARE_NAME       "share"
#define BUILD_PREFIX     ".build-"
#define RM_PREFIX        ".rm-"
#define FAILED_PREFIX    ".failed-"
#define FAILED_TMP_INFIX ".tmp-"
#define FAILED_MAX       1024
#define MANIFEST_MAX     (64u << 10)
/* x-ignore-shared leaves the RAM out: the stream is QEMU's device state,
 * ~100-200 KB. A bound, not an estimate. */
#define STATE_MAX            (64u << 20)
#define HOLDER_START_MS      5000
#define HOLDER_STOP_MS       5000
#define ALL_SEALS            (F_SEAL_SEAL | F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE)
#define TAP_CHILD_TIMEOUT_MS 5000

struct vmm_template_cache {
        char *dir;
        int dir_fd;
        struct us_cgroup *holder_cgroup;
};

struct vmm_template_build {
        struct vmm_template_cache *cache;
        char key[VMM_TEMPLATE_KEY_LEN + 1];
        char *manifest;
        uint64_t memory_bytes;
        int lock_fd;
        char *tmp_name; /* under the cache dir */
        int tmp_fd;
        char *share_dir;
        int memory_fd;
        int state_fd;
        bool spent;
};

static int64_t now_ms(void)
{
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static bool key_valid(const char *key)
{
        if (!key || strlen(key) != VMM_TEMPLATE_KEY_LEN)
                return false;
        for (const char *c = key; *c; c++)
                if (!((*c >= '0' && *c <= '9') || (*c >= 'a' && *c <= 'f')))
                        return false;
        return true;
}

/* The key and the writer's pid of a failed-build record's temporary file
 * (".failed-<key>.tmp-<pid>", vmm_template_failure_record), or NULL. */
static const char *failed_tmp_key(const char *name, pid_t *ret_pid)
{
        char key[VMM_TEMPLATE_KEY_LEN + 1];
        if (strncmp(name, FAILED_PREFIX, strlen(FAILED_PREFIX)) != 0)
                return NULL;
        const char *k = name + strlen(FAILED_PREFIX);
        if (strlen(k) <= VMM_TEMPLATE_KEY_LEN)
                return NULL;
        memcpy(key, k, VMM_TEMPLATE_KEY_LEN);
        key[VMM_TEMPLATE_KEY_LEN] = '\0';
        const char *pid = k + VMM_TEMPLATE_KEY_LEN + strlen(FAILED_TMP_INFIX);
        if (!key_valid(key) ||
            strncmp(k + VMM_TEMPLATE_KEY_LEN, FAILED_TMP_INFIX, strlen(FAILED_TMP_INFIX)) != 0 ||
            *pid < '1' || *pid > '9' || strspn(pid, "0123456789") != strlen(pid))
                return NULL;
        errno = 0;
        long long n = strtoll(pid, NULL, 10);
        if (errno || n > INT32_MAX)
                return NULL;
        if (ret_pid)
                *ret_pid = (pid_t)n;
        return k;
}

/* Whether pid names a process, a zombie too. A dead writer's pid reused
 * by another process keeps the writer's file until that one ends too. */
static bool pid_alive(pid_t pid)
{
        return kill(pid, 0) == 0 || errno == EPERM;
}

/* The key a name of the cache directory stands for, or NULL. With
 * leftovers, also what a builder or remover that died left: its
 * directories and a failed-build record's temporary file. */
static const char *name_key(const char *name, bool leftovers)
{
        if (key_valid(name))
                return name;
        if (!leftovers)
                return NULL;
        const char *rest = NULL;
        if (strncmp(name, BUILD_PREFIX, strlen(BUILD_PREFIX)) == 0)
                rest = name + strlen(BUILD_PREFIX);
        else if (strncmp(name, RM_PREFIX, strlen(RM_PREFIX)) == 0)
                rest = name + strlen(RM_PREFIX);
        else
                return failed_tmp_key(name, NULL);
        if (strlen(rest) <= VMM_TEMPLATE_KEY_LEN || rest[VMM_TEMPLATE_KEY_LEN] != '-')
                return NULL;
        return rest;
}

/* The key of a failed-build record's name (".failed-<key>"), or NULL. */
static const char *failed_key(const char *name)
{
        if (strncmp(name, FAILED_PREFIX, strlen(FAILED_PREFIX)) != 0)
                return NULL;
        return key_valid(name + strlen(FAILED_PREFIX)) ? name + strlen(FAILED_PREFIX) : NULL;
}

static void failed_name(const char *key, char out[sizeof(FAILED_PREFIX) + VMM_TEMPLATE_KEY_LEN])
{
        snprintf(out, sizeof(FAILED_PREFIX) + VMM_TEMPLATE_KEY_LEN, FAILED_PREFIX "%s", key);
}

/* ---- fd passing ---- */

static int send_fd(int sock, int fd, int flags)
{
        char byte = 'm';
        struct iovec iov = {.iov_base = &byte, .iov_len = 1};
        ssize_t n = us_sendmsg_fds(sock, &iov, 1, &fd, 1, flags);
        return n == 1 ? 0 : n < 0 ? (int)n : -EIO;
}

/* One byte and at most one fd (-1 if none came). Returns the byte count or
 * -errno. */
static ssize_t recv_fd(int sock, int *ret_fd)
{
        char byte;
        struct iovec iov = {.iov_base = &byte, .iov_len = 1};
        size_t n_fds;
        *ret_fd = -1;
        return us_recvmsg_fds(sock, &iov, 1, ret_fd, 1, &n_fds, MSG_DONTWAIT);
}

/* The unix address of dir_fd/name, through /proc/self/fd: the cache's
 * paths (a 64-character key and a build suffix) outgrow sun_path. */
static void holder_addr(int dir_fd, struct sockaddr_un *sa, socklen_t *len)
{
        memset(sa, 0, sizeof(*sa));
        sa->sun_family = AF_UNIX;
        int n = snprintf(sa->sun_path, sizeof(sa->sun_path), "/proc/self/fd/%d/" HOLDER_SOCK_NAME,
                         dir_fd);
        *len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + (size_t)n + 1);
}

/* ---- small files ---- */

static int write_file_at(int dir_fd, const char *name, const void *data, size_t len,
                         struct us_error **err)
{
        _cleanup_close_ int fd =
                openat(dir_fd, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
        if (fd < 0)
                return us_errorf(err, errno, "create %s", name);
        int r = us_write_all(fd, data, len);
        if (r < 0)
                return us_errorf(err, -r, "write %s", name);
        return 0;
}

/* The whole of fd (a regular file), at most max bytes, NUL-terminated.
 * -EFBIG above max. */
static int read_fd_all(int fd, size_t max, char **ret, size_t *ret_len)
{
        struct stat st;
        if (fstat(fd, &st) < 0)
                return -errno;
        if (!S_ISREG(st.st_mode))
                return -EINVAL;
        if ((uint64_t)st.st_size > max)
                return -EFBIG;
        size_t cap = (size_t)st.st_size + 1, n = 0;
        char *buf = malloc(cap + 1);
        if (!buf)
                return -ENOMEM;
        for (;;) {
                ssize_t k = pread(fd, buf + n, cap - n, (off_t)n);
                if (k < 0 && errno == EINTR)
                        continue;
                if (k < 0) {
                        int e = errno;
                        free(buf);
                        return -e;
                }
                if (k == 0)
                        break;
                n += (size_t)k;
                if (n == cap) { /* grew meanwhile */
                        free(buf);
                        return -EFBIG;
                }
        }
        buf[n] = '\0';
        *ret = buf;
        if (ret_len)
                *ret_len = n;
        return 0;
}

/* O_NONBLOCK on every read's open: a fifo put in the cache's place of a
 * file would otherwise block the open (the shim's loop, a lookup) until a
 * writer came; read_fd_all then refuses what is not a regular file. */
static int read_file_at(int dir_fd, const char *name, size_t max, char **ret, size_t *ret_len)
{
        _cleanup_close_ int fd =
                openat(dir_fd, name, O_RDONLY | O_NONBLOCK | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0)
                return -errno;
        return read_fd_all(fd, max, ret, ret_len);
}

/* The value of a manifest's line as an unsigned. */
static int manifest_uint(const char *manifest, const char *name, uint64_t *ret)
{
        _cleanup_free_ char *v = NULL;
        int r = vmm_template_manifest_field(manifest, name, &v);
        if (r < 0)
                return r;
        char *end = NULL;
        errno = 0;
        unsigned long long n = strtoull(v, &end, 10);
        if (errno || end == v || *end)
                return -EINVAL;
        *ret = n;
        return 0;
}

/* ---- the cache ---- */

int vmm_template_cache_open(const char *dir, bool create, struct us_cgroup *holder_cgroup,
                            struct vmm_template_cache **ret, struct us_error **err)
{
        struct stat st;
        int r;

        if (!dir || dir[0] != '/')
                return us_error_msg(err, EINVAL, "template cache %s: not an absolute path",
                                    dir ? dir : "");
        if (create) {
                /* The parents as any run directory; the cache itself root's
                 * alone (it hands out the templates' RAM and state). */
                _cleanup_free_ char *parent = strdup(dir);
                if (!parent)
                        return us_errorf(err, ENOMEM, "template cache");
                char *slash = strrchr(parent, '/');
                if (slash && slash != parent) {
                        *slash = '\0';
                        if ((r = us_mkdir_p(parent, 0755, err)) < 0)
                                return us_error_wrap(err, r, "template cache %s", dir);
                }
                if (mkdir(dir, 0700) < 0 && errno != EEXIST)
                        return us_errorf(err, errno, "create template cache %s", dir);
        }
        _cleanup_close_ int fd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0)
                return us_errorf(err, errno, "template cache %s", dir);
        if (fstat(fd, &st) < 0)
                return us_errorf(err, errno, "template cache %s", dir);
        if (st.st_uid != geteuid() || (st.st_mode & 0077))
                return us_error_msg(err, EPERM,
                                    "template cache %s: owned by uid %u with mode %04o; it must "
                                    "be the caller's (uid %u) with mode 0700",
                                    dir, (unsigned)st.st_uid, (unsigned)(st.st_mode & 07777),
                                    (unsigned)geteuid());
        struct vmm_template_cache *c = calloc(1, sizeof(*c));
        if (!c || !(c->dir = strdup(dir))) {
                free(c);
                return us_errorf(err, ENOMEM, "template cache");
        }
        c->dir_fd = TAKE_FD(fd);
        c->holder_cgroup = holder_cgroup;
        *ret = c;
        return 0;
}

struct vmm_template_cache *vmm_template_cache_free(struct vmm_template_cache *c)
{
        if (!c)
                return NULL;
        us_close(c->dir_fd);
        free(c->dir);
        free(c);
        return NULL;
}

const char *vmm_template_cache_dir(const struct vmm_template_cache *c)
{
        return c ? c->dir : NULL;
}

/* ---- per-key locks: one byte of <dir>/lock per key ---- */

/* The byte: 60 bits of the key (15 hex digits fit an off_t); two keys
 * that share them would only be busy for each other. */
static off_t key_offset(const char *key)
{
        char head[16];
        memcpy(head, key, 15);
        head[15] = '\0';
        return (off_t)strtoull(head, NULL, 16);
}

/* Takes the key's lock without waiting. An OFD lock: it belongs to this
 * open of the file (a second build in the same process conflicts too) and
 * ends when the fd closes, also when the process dies. */
static int key_lock(struct vmm_template_cache *c, const char *key, int *ret_fd,
                    struct us_error **err)
{
        _cleanup_close_ int fd =
                openat(c->dir_fd, LOCK_NAME, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
        if (fd < 0)
                return us_errorf(err, errno, "template cache %s: open %s", c->dir, LOCK_NAME);
        struct flock fl = {
                .l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = key_offset(key), .l_len = 1};
        if (fcntl(fd, F_OFD_SETLK, &fl) < 0) {
                if (errno == EAGAIN || errno == EACCES)
                        return us_error_msg(err, EBUSY, "template %.12s is being built or removed",
                                            key);
                return us_errorf(err, errno, "template cache %s: lock", c->dir);
        }
        *ret_fd = TAKE_FD(fd);
        return 0;
}

/* Whether someone holds the key's lock, without taking it (a lookup must
 * not make a builder busy). */
static bool key_locked(struct vmm_template_cache *c, const char *key)
{
        _cleanup_close_ int fd =
                openat(c->dir_fd, LOCK_NAME, O_RDONLY | O_NONBLOCK | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0)
                return false;
        struct flock fl = {
                .l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = key_offset(key), .l_len = 1};
        if (fcntl(fd, F_OFD_GETLK, &fl) < 0)
                return false;
        return fl.l_type != F_UNLCK;
}

/* ---- the holder ---- */

/* The holder's life: hand the memfd to every root peer, never wait for
 * one; end when its socket's file is removed (or on SIGTERM). fds: 3 the
 * memfd, 4 the bound socket, 5 an inotify watching the socket's file, 6
 * the pipe to the builder (closed once listening), 7 the socket's file
 * (O_PATH). */
static __attribute__((noreturn)) void holder_main(void)
{
        const int memfd = 3, lfd = 4, ifd = 5, ready = 6, sfile = 7;
        char ok = 'r';

        if (listen(lfd, 64) < 0)
                ok = 'l';
        (void)!write(ready, &ok, 1);
        close(ready);
        if (ok != 'r')
                _exit(1);
        for (;;) {
                struct pollfd p[2] = {{.fd = lfd, .events = POLLIN}, {.fd = ifd, .events = POLLIN}};
                if (poll(p, 2, -1) < 0) {
                        if (errno == EINTR)
                                continue;
                        _exit(1);
                }
                if (p[1].revents) {
                        /* IN_ATTRIB: the file's link count changed. Once
                         * it is 0 the entry is being removed (by
                         * vmm_template_remove, or the cache by hand), and
                         * nobody can connect any more. */
                        char buf[4096] __attribute__((aligned(__alignof__(struct inotify_event))));
                        struct stat st;
                        while (read(ifd, buf, sizeof(buf)) > 0)
                                ;
                        if (fstat(sfile, &st) < 0 || st.st_nlink == 0)
                                _exit(0);
                }
                if (p[0].revents & POLLIN) {
                        int conn = accept4(lfd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
                        if (conn < 0)
                                continue;
                        struct ucred cr;
                        socklen_t len = sizeof(cr);
                        /* Root's alone (the socket is 0600 in a 0700
                         * directory as well). A fresh connection's buffer
                         * is empty: the send never blocks, and if it fails
                         * the peer sees EOF. */
                        if (getsockopt(conn, SOL_SOCKET, SO_PEERCRED, &cr, &len) == 0 &&
                            cr.uid == geteuid())
                                (void)send_fd(conn, memfd, MSG_DONTWAIT);
                        close(conn);
                }
        }
}

/* In the holder, after fork: the five fds at 3..7, nothing else. */
static __attribute__((noreturn)) void holder_child(int memfd, int lfd, int ifd, int ready,
                                                   int sfile, int go)
{
        int want[6] = {memfd, lfd, ifd, ready, sfile, go};
        int moved[6];
        sigset_t none;
        char c;

        for (int s = 1; s < NSIG; s++)
                (void)signal(s, SIG_DFL);
        sigemptyset(&none);
        (void)sigprocmask(SIG_SETMASK, &none, NULL);
        /* Out of the way of 3..8 first, then into place, and nothing of the
         * builder's kept before the wait below: not its lock (an OFD lock
         * lives as long as any fd of it), not go's write end (a builder
         * that dies before it says go must give this read EOF, or the
         * holder would wait forever with the lock and the RAM). */
        for (int i = 0; i < 6; i++)
                if ((moved[i] = fcntl(want[i], F_DUPFD, 64)) < 0)
                        _exit(1);
        for (int i = 0; i < 6; i++)
                if (dup2(moved[i], 3 + i) < 0)
                        _exit(1);
        if (syscall(SYS_close_range, 9U, ~0U, 0U) < 0)
                _exit(1);
        /* In its cgroup before it does anything. */
        ssize_t got;
        while ((got = read(8, &c, 1)) < 0 && errno == EINTR)
                ;
        if (got != 1)
                _exit(1);
        close(8);
        int devnull = open("/dev/null", O_RDWR);
        if (devnull < 0 || dup2(devnull, 0) < 0 || dup2(devnull, 1) < 0 || dup2(devnull, 2) < 0)
                _exit(1);
        if (devnull > 2)
                close(devnull);
        if (chdir("/") < 0)
                _exit(1);
        (void)prctl(PR_SET_NAME, "unishim-tmpl", 0, 0, 0);
        holder_main();
}

static int pidfd_open_(pid_t pid)
{
        return (int)syscall(SYS_pidfd_open, pid, 0);
}

static int pidfd_signal(int pidfd, int sig)
{
        return (int)syscall(SYS_pidfd_send_signal, pidfd, sig, NULL, 0);
}

/* Waits for the process behind pidfd to end, at most ms. */
static bool pidfd_wait(int pidfd, int ms)
{
        struct pollfd p = {.fd = pidfd, .events = POLLIN};
        int64_t end = now_ms() + ms;
        for (;;) {
                int left = (int)(end - now_ms());
                int n = poll(&p, 1, left > 0 ? left : 0);
                if (n > 0)
                        return true;
                if (n == 0 || (n < 0 && errno != EINTR))
                        return false;
        }
}

/* SIGTERM, then SIGKILL: the holder ends. */
static void pidfd_stop(int pidfd)
{
        if (pidfd < 0)
                return;
        if (pidfd_signal(pidfd, SIGTERM) < 0)
                return; /* gone already */
        if (!pidfd_wait(pidfd, HOLDER_STOP_MS)) {
                (void)pidfd_signal(pidfd, SIGKILL);
                (void)pidfd_wait(pidfd, HOLDER_STOP_MS);
        }
}

/* Starts the holder of b's memfd in b's directory. Returns 0, *ret_pid and
 * *ret_pidfd. */
static int holder_start(struct vmm_template_build *b, pid_t *ret_pid, int *ret_pidfd,
                        struct us_error **err)
{
        struct vmm_template_cache *c = b->cache;
        _cleanup_close_ int lfd = -1, ifd = -1, sfile = -1, pidfd = -1;
        int pipe_pid[2] = {-1, -1}, go[2] = {-1, -1};
        struct sockaddr_un sa;
        socklen_t salen;
        int r;

        lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (lfd < 0)
                return us_errorf(err, errno, "holder socket");
        holder_addr(b->tmp_fd, &sa, &salen);
        if (bind(lfd, (struct sockaddr *)&sa, salen) < 0)
                return us_errorf(err, errno, "bind %s", HOLDER_SOCK_NAME);
        if (fchmodat(b->tmp_fd, HOLDER_SOCK_NAME, 0600, 0) < 0)
                return us_errorf(err, errno, "chmod %s", HOLDER_SOCK_NAME);
        /* The holder's end: the socket's file unlinked. Not the directory's
         * IN_DELETE_SELF: the bound socket pins its file's dentry and that
         * one its directory's, so a removed directory is never released
         * while the holder lives. The inode, not the name: the rename into
         * place does not count. */
        sfile = openat(b->tmp_fd, HOLDER_SOCK_NAME, O_PATH | O_NOFOLLOW | O_CLOEXEC);
        if (sfile < 0)
                return us_errorf(err, errno, "open %s", HOLDER_SOCK_NAME);
        ifd = inotify_init1(IN_CLOEXEC | IN_NONBLOCK);
        if (ifd < 0)
                return us_errorf(err, errno, "inotify");
        char self[64];
        snprintf(self, sizeof(self), "/proc/self/fd/%d", sfile);
        if (inotify_add_watch(ifd, self, IN_ATTRIB) < 0)
                return us_errorf(err, errno, "inotify watch");
        if (pipe2(pipe_pid, O_CLOEXEC) < 0)
                return us_errorf(err, errno, "pipe");
        if (pipe2(go, O_CLOEXEC) < 0) {
                r = us_errorf(err, errno, "pipe");
                goto out;
        }

        pid_t mid = fork();
        if (mid < 0) {
                r = us_errorf(err, errno, "fork the holder");
                goto out;
        }
        if (mid == 0) {
                /* A session of its own, and a grandchild: no terminal, no
                 * process group of the builder, and the builder's exit
                 * does not concern it. */
                (void)setsid();
                pid_t holder = fork();
                if (holder == 0)
                        holder_child(b->memory_fd, lfd, ifd, pipe_pid[1], sfile, go[0]);
                (void)!write(pipe_pid[1], &holder, sizeof(holder));
                _exit(holder < 0 ? 1 : 0);
        }
        us_close(pipe_pid[1]);
        pipe_pid[1] = -1;
        us_close(go[0]);
        go[0] = -1;

        pid_t holder = -1;
        ssize_t n;
        while ((n = read(pipe_pid[0], &holder, sizeof(holder))) < 0 && errno == EINTR)
                ;
        /* The middle child is ours to reap, by pid (a caller's waitpid(-1)
         * may have taken it: ECHILD). */
        while (waitpid(mid, NULL, 0) < 0 && errno == EINTR)
                ;
        if (n != sizeof(holder) || holder <= 0) {
                r = us_error_msg(err, EIO, "fork the holder");
                goto out;
        }
        pidfd = pidfd_open_(holder);
        if (pidfd < 0) {
                r = us_errorf(err, errno, "pidfd of the holder %d", (int)holder);
                /* Waiting for go, so its pid is not free for reuse yet. */
                (void)kill(holder, SIGKILL);
                goto out;
        }
        r = 0;
        if (c->holder_cgroup)
                r = us_cgroup_enter(c->holder_cgroup, holder, err);
        if (r == 0)
                (void)!write(go[1], "g", 1);
        us_close(go[1]);
        go[1] = -1;
        if (r < 0) {
                (void)pidfd_signal(pidfd, SIGKILL);
                r = us_error_wrap(err, r, "move the holder into its cgroup");
                goto out;
        }
        /* Listening, with nothing of ours left open. */
        struct pollfd p = {.fd = pipe_pid[0], .events = POLLIN};
        char ok = 0;
        if (poll(&p, 1, HOLDER_START_MS) <= 0 || read(pipe_pid[0], &ok, 1) != 1 || ok != 'r') {
                pidfd_stop(pidfd);
                r = us_error_msg(err, EIO, "the holder did not start (%s)",
                                 ok == 'l' ? "listen failed" : "no word within 5 s");
                goto out;
        }
        *ret_pid = holder;
        *ret_pidfd = TAKE_FD(pidfd);
out:
        for (int i = 0; i < 2; i++) {
                if (pipe_pid[i] >= 0)
                        us_close(pipe_pid[i]);
                if (go[i] >= 0)
                        us_close(go[i]);
        }
        return r;
}

/* Connects to the holder in dir_fd: the connected socket and its pid and
 * uid (the holder's, from when it began listening). */
static int holder_connect(int dir_fd, int *ret_fd, struct ucred *ret_cred)
{
        struct sockaddr_un sa;
        socklen_t salen;
        _cleanup_close_ int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return -errno;
        holder_addr(dir_fd, &sa, &salen);
        /* Non-blocking: a full backlog is EAGAIN, never a wait. */
        if (connect(fd, (struct sockaddr *)&sa, salen) < 0)
                return -errno;
        socklen_t len = sizeof(*ret_cred);
        if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, ret_cred, &len) < 0)
                return -errno;
        *ret_fd = TAKE_FD(fd);
        return 0;
}

/* Stops the holder serving dir_fd's socket, if one does. */
static void holder_stop_at(int dir_fd)
{
        _cleanup_close_ int s = -1, s2 = -1, pidfd = -1;
        struct ucred cr, cr2;

        if (holder_connect(dir_fd, &s, &cr) < 0 || cr.pid <= 0)
                return;
        pidfd = pidfd_open_(cr.pid);
        if (pidfd < 0)
                return;
        /* Still the same process behind the socket: the pid was not
         * reused between the peer credentials and the pidfd. */
        if (holder_connect(dir_fd, &s2, &cr2) < 0 || cr2.pid != cr.pid)
                return;
        pidfd_stop(pidfd);
}

/* ---- lookup ---- */

void vmm_template_entry_clear(struct vmm_template_entry *e)
{
        if (!e)
                return;
        us_close(e->state_fd);
        us_close(e->memory_fd);
        *e = (struct vmm_template_entry){.state_fd = -1, .memory_fd = -1};
}

static int broken(struct us_error **err, const char *key, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));

static int broken(struct us_error **err, const char *key, const char *fmt, ...)
{
        char what[512];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(what, sizeof(what), fmt, ap);
        va_end(ap);
        us_error_msg(err, -VMM_TEMPLATE_BROKEN, "template %.12s is broken: %s", key, what);
        return VMM_TEMPLATE_BROKEN;
}

/* The memfd the holder in kfd hands out, or why not. */
static int holder_memfd(int kfd, const char *key, int *ret_fd, pid_t *ret_pid,
                        struct us_error **err)
{
        _cleanup_close_ int s = -1;
        struct ucred cr;
        int r = holder_connect(kfd, &s, &cr);
        if (r == -ENOENT || r == -ECONNREFUSED)
                return broken(err, key, "its holder is gone (%s)", strerror(-r));
        if (r == -EAGAIN)
                return us_error_msg(err, ETIMEDOUT, "template %.12s: its holder is not accepting",
                                    key);
        if (r < 0)
                return us_errorf(err, -r, "template %.12s: connect to its holder", key);
        if (cr.uid != geteuid())
                return broken(err, key, "%s is served by uid %u", HOLDER_SOCK_NAME,
                              (unsigned)cr.uid);
        struct pollfd p = {.fd = s, .events = POLLIN};
        int64_t end = now_ms() + VMM_TEMPLATE_HOLDER_TIMEOUT_MS;
        int n;
        do {
                int left = (int)(end - now_ms());
                n = poll(&p, 1, left > 0 ? left : 0);
        } while (n < 0 && errno == EINTR);
        if (n == 0)
                return us_error_msg(err, ETIMEDOUT,
                                    "template %.12s: its holder (pid %d) did not answer within "
                                    "%d ms",
                                    key, (int)cr.pid, VMM_TEMPLATE_HOLDER_TIMEOUT_MS);
        int fd = -1;
        ssize_t got = n > 0 ? recv_fd(s, &fd) : -errno;
        if (got <= 0 || fd < 0) {
                if (fd >= 0)
                        close(fd);
                return broken(err, key, "its holder (pid %d) sent no memfd", (int)cr.pid);
        }
        *ret_fd = fd;
        *ret_pid = cr.pid;
        return 0;
}

/* The checks of a lookup; expected: the manifest wanted, NULL: the one
 * that hashes to key. */
static int check_entry(struct vmm_template_cache *c, const char *key, const char *expected,
                       bool use, struct vmm_template_entry *ret, struct us_error **err)
{
        _cleanup_free_ char *manifest = NULL, *state = NULL, *sum = NULL;
        _cleanup_close_ int kfd = -1, state_fd = -1, memfd = -1;
        size_t state_len = 0;
        uint64_t mib = 0;
        pid_t holder = -1;
        int r;

        if (!c || !ret || !key_valid(key))
                return us_error_msg(err, EINVAL, "template lookup: no cache or a malformed key");
        if (key_locked(c, key))
                return us_error_msg(err, -VMM_TEMPLATE_BUSY,
                                    "template %.12s is being built or removed", key);
        kfd = openat(c->dir_fd, key, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (kfd < 0 && errno == ENOENT)
                return us_error_msg(err, -VMM_TEMPLATE_NONE, "no template %.12s in %s", key,
                                    c->dir);
        if (kfd < 0)
                return broken(err, key, "open its directory: %s", strerror(errno));

        r = read_file_at(kfd, MANIFEST_NAME, MANIFEST_MAX, &manifest, NULL);
        if (r < 0)
                return broken(err, key, "read its manifest: %s", strerror(-r));
        if (expected && strcmp(manifest, expected) != 0)
                return broken(err, key, "its manifest differs from the inputs");
        if (!expected) {
                char k[VMM_TEMPLATE_KEY_LEN + 1];
                vmm_template_key(manifest, k);
                if (strcmp(k, key) != 0)
                        return broken(err, key, "its manifest does not hash to its key");
        }
        if (manifest_uint(manifest, "memory_mib", &mib) < 0 || mib == 0 || mib > (1u << 20))
                return broken(err, key, "its manifest names no memory size");

        state_fd = openat(kfd, STATE_NAME, O_RDONLY | O_NONBLOCK | O_NOFOLLOW | O_CLOEXEC);
        if (state_fd < 0)
                return broken(err, key, "its state: %s", strerror(errno));
        r = read_fd_all(state_fd, STATE_MAX, &state, &state_len);
        if (r < 0)
                return broken(err, key, "read its state: %s", strerror(-r));
        r = read_file_at(kfd, STATE_SUM_NAME, 256, &sum, NULL);
        if (r < 0)
                return broken(err, key, "read %s: %s", STATE_SUM_NAME, strerror(-r));
        char digest[2 * US_SHA256_DIGEST_SIZE + 1];
        us_sha256_hex(state, state_len, digest);
        if (strncmp(sum, digest, sizeof(digest) - 1) != 0)
                return broken(err, key,
                              "its state (%zu bytes) is truncated or corrupt: its SHA-256 is not "
                              "the one recorded at the save",
                              state_len);

        r = holder_memfd(kfd, key, &memfd, &holder, err);
        /* A removal (rm, an eviction) that took the key's lock since the
         * check above stops the holder first: the entry is going, not
         * broken (a broken one is rebuilt). */
        if (r < 0 && key_locked(c, key)) {
                if (err)
                        *err = us_error_free(*err);
                return us_error_msg(err, -VMM_TEMPLATE_BUSY,
                                    "template %.12s is being built or removed", key);
        }
        if (r < 0)
                return r;
        int seals = fcntl(memfd, F_GET_SEALS);
        if (seals < 0)
                return broken(err, key, "what its holder sent is not a memfd (%s)",
                              strerror(errno));
        if ((seals & ALL_SEALS) != ALL_SEALS)
                return broken(err, key,
                              "its RAM is not sealed (seals 0x%x): a clone's QEMU could write it",
                              (unsigned)seals);
        struct stat st;
        if (fstat(memfd, &st) < 0)
                return broken(err, key, "fstat its RAM: %s", strerror(errno));
        if ((uint64_t)st.st_size != mib << 20)
                return broken(err, key, "its RAM is %jd bytes, its manifest says %ju MiB",
                              (intmax_t)st.st_size, (uintmax_t)mib);

        /* The entry's last use, for the eviction's order: its
         * directory's mtime (nothing in it changes after the publish). A
         * failure only makes it look older. */
        if (use)
                (void)futimens(kfd, NULL);
        *ret = (struct vmm_template_entry){.state_fd = TAKE_FD(state_fd),
                                           .memory_fd = TAKE_FD(memfd),
                                           .memory_bytes = mib << 20,
                                           .holder_pid = holder};
        memcpy(ret->key, key, sizeof(ret->key));
        return 0;
}

int vmm_template_lookup(struct vmm_template_cache *c, const struct vmm_template_inputs *in,
                        struct vmm_template_entry *ret, struct us_error **err)
{
        _cleanup_free_ char *manifest = NULL;
        char key[VMM_TEMPLATE_KEY_LEN + 1];
        int r = vmm_template_manifest(in, &manifest, err);
        if (r < 0)
                return r;
        vmm_template_key(manifest, key);
        return check_entry(c, key, manifest, true, ret, err);
}

int vmm_template_check_key(struct vmm_template_cache *c, const char *key,
                           struct vmm_template_entry *ret, struct us_error **err)
{
        return check_entry(c, key, NULL, false, ret, err);
}

/* ---- removal ---- */

/* Removes a directory of the cache after stopping its holder (the lock
 * of its key is the caller's). */
static int remove_dir(struct vmm_template_cache *c, const char *name, const char *key,
                      struct us_error **err)
{
        _cleanup_close_ int fd =
                openat(c->dir_fd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0 && (errno == ENOTDIR || errno == ELOOP)) {
                /* Not a directory (a symlink, a file): nothing the cache
                 * made, no holder; unlinked itself, never followed. Left
                 * in place, it would fail every publish of the key. */
                if (unlinkat(c->dir_fd, name, 0) < 0 && errno != ENOENT)
                        return us_errorf(err, errno, "remove %s/%s", c->dir, name);
                return 0;
        }
        if (fd < 0)
                return errno == ENOENT ? 0 : us_errorf(err, errno, "open %s/%s", c->dir, name);
        holder_stop_at(fd);
        /* Out of the lookups' way first: a half-removed entry is never
         * seen under its key. */
        char trash[VMM_TEMPLATE_KEY_LEN + 32];
        const char *victim = name;
        if (strncmp(name, RM_PREFIX, strlen(RM_PREFIX)) != 0 &&
            strncmp(name, BUILD_PREFIX, strlen(BUILD_PREFIX)) != 0) {
                for (int i = 0;; i++) {
                        snprintf(trash, sizeof(trash), RM_PREFIX "%s-%d-%d", key, (int)getpid(), i);
                        if (renameat2(c->dir_fd, name, c->dir_fd, trash, RENAME_NOREPLACE) == 0)
                                break;
                        if (errno != EEXIST || i > 100)
                                return us_errorf(err, errno, "move %s/%s away", c->dir, name);
                }
                victim = trash;
        }
        int r = us_rm_tree_at(c->dir_fd, victim, err);
        if (r < 0)
                return us_error_wrap(err, r, "remove %s/%s", c->dir, victim);
        return 0;
}

/* The cache directory for reading, from the start. */
static int open_cache_dir(struct vmm_template_cache *c, DIR **ret, struct us_error **err)
{
        int dfd = openat(c->dir_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        DIR *d = dfd >= 0 ? fdopendir(dfd) : NULL;
        if (!d) {
                int e = errno;
                us_close(dfd);
                return us_errorf(err, e, "open %s", c->dir);
        }
        *ret = d;
        return 0;
}

/* A failed-build record's temporary file whose writer died between its
 * write and its rename (the key's lock is the caller's: the writer in
 * vmm_template_build holds it; the pid guards against one that does not).
 * Returns 1 if removed, 0 if its writer lives, or a negative errno. */
static int remove_failed_tmp(struct vmm_template_cache *c, const char *name, pid_t pid,
                             struct us_error **err)
{
        if (pid_alive(pid))
                return 0;
        if (unlinkat(c->dir_fd, name, 0) == 0)
                return 1;
        if (errno == ENOENT)
                return 0;
        return us_errorf(err, errno, "remove %s/%s", c->dir, name);
}

/* Leftovers of the key from a builder or remover that died: temporary
 * directories (their holders stopped) and failed-build records' temporary
 * files, each reported to `removed` (may be NULL). The key's lock is the
 * caller's. Returns how many were removed, or a negative errno. */
static int remove_leftovers(struct vmm_template_cache *c, const char *key,
                            vmm_template_gc_fn removed, void *userdata, struct us_error **err)
{
        DIR *d = NULL;
        int r0 = open_cache_dir(c, &d, err);
        if (r0 < 0)
                return r0;
        char **names = NULL;
        size_t n = 0;
        struct dirent *de;
        int r = 0;
        while ((de = readdir(d))) {
                const char *k = name_key(de->d_name, true);
                if (!k || k == de->d_name || strncmp(k, key, VMM_TEMPLATE_KEY_LEN) != 0)
                        continue;
                char **v = realloc(names, (n + 1) * sizeof(*v));
                if (!v || !(v[n] = strdup(de->d_name))) {
                        names = v ? v : names;
                        r = us_errorf(err, ENOMEM, "template cache");
                        break;
                }
                names = v;
                n++;
        }
        closedir(d);
        int count = 0;
        for (size_t i = 0; i < n; i++) {
                pid_t writer;
                if (r >= 0 && failed_tmp_key(names[i], &writer)) {
                        r = remove_failed_tmp(c, names[i], writer, err);
                        if (r > 0 && removed)
                                removed(names[i],
                                        "a failed-build record its writer died before renaming",
                                        userdata);
                        count += r > 0;
                } else if (r >= 0) {
                        r = remove_dir(c, names[i], key, err);
                        if (r == 0 && removed)
                                removed(names[i], "left by a builder or remover that died",
                                        userdata);
                        count += r == 0;
                }
                free(names[i]);
        }
        free(names);
        return r < 0 ? r : count;
}

/* The one removal of a key, for rm and gc: its failed-build record, its
 * entry (its holder stopped) and its leftovers, each reported to `removed`
 * (may be NULL), the entry with entry_why. The key's lock is the caller's.
 * Returns how many were removed, or a negative errno. */
static int remove_key_locked(struct vmm_template_cache *c, const char *key, const char *entry_why,
                             vmm_template_gc_fn removed, void *userdata, struct us_error **err)
{
        char failed[sizeof(FAILED_PREFIX) + VMM_TEMPLATE_KEY_LEN];
        struct stat st;
        int n = 0, r;

        /* A removal starts the key afresh: no backoff from its failures. */
        failed_name(key, failed);
        if (fstatat(c->dir_fd, failed, &st, AT_SYMLINK_NOFOLLOW) == 0) {
                /* A directory too (only root could make one), never followed. */
                r = us_rm_tree_at(c->dir_fd, failed, err);
                if (r < 0)
                        return us_error_wrap(err, r, "remove %s/%s", c->dir, failed);
                n++;
                if (removed)
                        removed(failed, "the key's failed-build record", userdata);
        } else if (errno != ENOENT) {
                return us_errorf(err, errno, "remove %s/%s", c->dir, failed);
        }
        if (fstatat(c->dir_fd, key, &st, AT_SYMLINK_NOFOLLOW) == 0) {
                r = remove_dir(c, key, key, err);
                if (r < 0)
                        return r;
                n++;
                if (removed)
                        removed(key, entry_why, userdata);
        } else if (errno != ENOENT) {
                return us_errorf(err, errno, "template %.12s", key);
        }
        r = remove_leftovers(c, key, removed, userdata, err);
        return r < 0 ? r : n + r;
}

int vmm_template_remove(struct vmm_template_cache *c, const char *key, vmm_template_gc_fn removed,
                        void *userdata, struct us_error **err)
{
        _cleanup_close_ int lock = -1;
        int r;

        if (!c || !key_valid(key))
                return us_error_msg(err, EINVAL, "template rm: %s is not a template key",
                                    key ? key : "");
        r = key_lock(c, key, &lock, err);
        if (r < 0)
                return r;
        r = remove_key_locked(c, key, "the template (its holder stopped)", removed, userdata, err);
        if (r == 0)
                return us_error_msg(err, -VMM_TEMPLATE_NONE,
                                    "no template %s in %s: no entry, no failed-build record, "
                                    "nothing left by a builder",
                                    key, c->dir);
        return r < 0 ? r : 0;
}

/* Whether the key's entry can never be hit again: 1 and *ret_why, 0 (live,
 * or no entry), or a negative errno (undecided). What a lookup would
 * refuse whatever the inputs (not a directory, no readable manifest, one
 * that does not hash to the key) is stale; so is a manifest that is not
 * current (vmm_template_manifest_current). */
static int entry_stale(struct vmm_template_cache *c, const char *key, const char *host_id,
                       char **ret_why)
{
        _cleanup_close_ int kfd =
                openat(c->dir_fd, key, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        _cleanup_free_ char *manifest = NULL;
        char k[VMM_TEMPLATE_KEY_LEN + 1];

        if (kfd < 0 && (errno == ENOTDIR || errno == ELOOP))
                return asprintf(ret_why, "it is not a directory") < 0 ? -ENOMEM : 1;
        if (kfd < 0)
                return errno == ENOENT ? 0 : -errno;
        int r = read_file_at(kfd, MANIFEST_NAME, MANIFEST_MAX, &manifest, NULL);
        /* Stale only when the manifest itself is wrong (gone, a link, not a
         * file, too large); a failure of the moment (EMFILE, EIO, ENOMEM)
         * decides nothing: removing a live template for it would cost every
         * pod its restore. */
        if (r < 0 && r != -ENOENT && r != -ELOOP && r != -ENOTDIR && r != -EINVAL && r != -EFBIG)
                return r;
        if (r < 0)
                return asprintf(ret_why, "its manifest: %s", strerror(-r)) < 0 ? -ENOMEM : 1;
        vmm_template_key(manifest, k);
        if (strcmp(k, key) != 0)
                return asprintf(ret_why, "its manifest does not hash to its key") < 0 ? -ENOMEM : 1;
        r = vmm_template_manifest_current(manifest, host_id, ret_why);
        return r < 0 ? r : !r;
}

struct gc_key {
        char key[VMM_TEMPLATE_KEY_LEN + 1];
        bool entry, leftover, failed;
};

/* The cache's keys and what each has: an entry, leftovers. */
static int gc_scan(struct vmm_template_cache *c, struct gc_key **ret, size_t *ret_n,
                   struct us_error **err)
{
        DIR *d = NULL;
        int r = open_cache_dir(c, &d, err);
        if (r < 0)
                return r;
        struct gc_key *v = NULL;
        size_t n = 0, i;
        struct dirent *de;
        while ((de = readdir(d))) {
                const char *key = name_key(de->d_name, true), *fkey = NULL;
                pid_t writer;
                if (!key)
                        key = fkey = failed_key(de->d_name);
                if (!key)
                        continue;
                /* A record being written: not a leftover, and no reason to
                 * take a live key's lock. */
                if (failed_tmp_key(de->d_name, &writer) && pid_alive(writer))
                        continue;
                for (i = 0; i < n && strncmp(v[i].key, key, VMM_TEMPLATE_KEY_LEN) != 0; i++)
                        ;
                if (i == n) {
                        struct gc_key *nv = realloc(v, (n + 1) * sizeof(*nv));
                        if (!nv) {
                                free(v);
                                closedir(d);
                                return us_errorf(err, ENOMEM, "template cache");
                        }
                        v = nv;
                        v[n] = (struct gc_key){0};
                        memcpy(v[n].key, key, VMM_TEMPLATE_KEY_LEN);
                        n++;
                }
                if (fkey)
                        v[i].failed = true;
                else if (key == de->d_name)
                        v[i].entry = true;
                else
                        v[i].leftover = true;
        }
        closedir(d);
        *ret = v;
        *ret_n = n;
        return 0;
}

/* A failed-build record whose backoff is over holds nothing back any
 * more; without it a key that failed long ago starts afresh. */
static void gc_failure(struct vmm_template_cache *c, const char *key, vmm_template_gc_fn removed,
                       void *userdata)
{
        struct vmm_template_failure f;
        char name[sizeof(FAILED_PREFIX) + VMM_TEMPLATE_KEY_LEN];
        int64_t now = (int64_t)time(NULL);
        /* Under the key's lock (the key has no entry: no lookup is made busy
         * by it): a build that fails meanwhile writes a fresh record, which
         * must not go with the old one. Busy: not ours. */
        _cleanup_close_ int lock = -1;
        if (key_lock(c, key, &lock, NULL) < 0)
                return;
        int r = vmm_template_failure_read(c, key, &f, NULL);
        if (r == VMM_TEMPLATE_NONE || (r == 0 && vmm_template_backoff_held(&f, now)))
                return;
        /* Unreadable for good (malformed, not a file, a symlink, too large)
         * it holds nothing back; a failure of the moment (EMFILE, EIO,
         * ENOMEM) decides nothing: the record may be current. */
        if (r < 0 && r != -EINVAL && r != -ELOOP && r != -EFBIG)
                return;
        failed_name(key, name);
        /* (A directory in its place, which only root could make, goes too.) */
        if (us_rm_tree_at(c->dir_fd, name, NULL) == 0 && removed)
                removed(name, r == 0 ? "its build backoff is over" : "unreadable", userdata);
}

int vmm_template_gc(struct vmm_template_cache *c, const char *host_id, vmm_template_gc_fn removed,
                    void *userdata, struct us_error **err)
{
        struct gc_key *keys = NULL;
        size_t n = 0;
        int r, ret = 0;

        if (!c || !host_id)
                return us_error_msg(err, EINVAL, "template gc: no cache or host identity");
        r = gc_scan(c, &keys, &n, err);
        if (r < 0)
                return r;
        for (size_t i = 0; i < n; i++) {
                const char *key = keys[i].key;
                _cleanup_free_ char *why = NULL;
                _cleanup_close_ int lock = -1;
                if (keys[i].failed && !keys[i].entry)
                        gc_failure(c, key, removed, userdata);
                /* Decided first without the lock: taking a live key's lock
                 * would make a pod's lookup meanwhile busy (a cold boot). */
                r = keys[i].entry ? entry_stale(c, key, host_id, &why) : 0;
                if (r == 0 && !keys[i].leftover)
                        continue;
                if (r < 0) {
                        if (ret == 0)
                                ret = us_errorf(err, -r, "template %.12s: is it stale", key);
                        continue;
                }
                /* Busy (a build, a removal): not ours to touch. */
                if (key_lock(c, key, &lock, NULL) < 0)
                        continue;
                if (why) {
                        /* Again under the lock: a publish may have replaced
                         * the entry since. */
                        free(why);
                        why = NULL;
                        r = entry_stale(c, key, host_id, &why);
                        if (r < 0) {
                                if (ret == 0)
                                        ret = us_errorf(err, -r, "template %.12s: is it stale",
                                                        key);
                                continue;
                        }
                }
                /* The first failure is the one reported; the other
                 * keys are still collected. */
                struct us_error **e = ret == 0 ? err : NULL;
                r = why ? remove_key_locked(c, key, why, removed, userdata, e)
                        : remove_leftovers(c, key, removed, userdata, e);
                if (r < 0 && ret == 0)
                        ret = us_error_wrap(err, r, "template gc");
        }
        free(keys);
        return ret;
}

static int cmp_str(const void *a, const void *b)
{
        return strcmp(*(char *const *)a, *(char *const *)b);
}

int vmm_template_cache_keys(struct vmm_template_cache *c, bool leftovers, char ***ret,
                            size_t *ret_n, struct us_error **err)
{
        DIR *d = NULL;
        int r0 = open_cache_dir(c, &d, err);
        if (r0 < 0)
                return r0;
        char **v = calloc(1, sizeof(*v));
        size_t n = 0;
        struct dirent *de;
        while (v && (de = readdir(d))) {
                const char *key = name_key(de->d_name, leftovers);
                if (!key && leftovers)
                        key = failed_key(de->d_name);
                if (!key)
                        continue;
                bool seen = false;
                for (size_t i = 0; i < n && !seen; i++)
                        seen = strncmp(v[i], key, VMM_TEMPLATE_KEY_LEN) == 0;
                if (seen)
                        continue;
                char **nv = realloc(v, (n + 2) * sizeof(*nv));
                if (!nv || !(nv[n] = strndup(key, VMM_TEMPLATE_KEY_LEN))) {
                        us_strv_free(nv ? nv : v);
                        v = NULL;
                        break;
                }
                v = nv;
                v[++n] = NULL;
        }
        closedir(d);
        if (!v)
                return us_errorf(err, ENOMEM, "template cache");
        qsort(v, n, sizeof(*v), cmp_str);
        *ret = v;
        *ret_n = n;
        return 0;
}

int vmm_template_read_manifest(struct vmm_template_cache *c, const char *key, char **ret,
                               struct us_error **err)
{
        if (!c || !key_valid(key))
                return us_error_msg(err, EINVAL, "template: %s is not a template key",
                                    key ? key : "");
        _cleanup_close_ int kfd =
                openat(c->dir_fd, key, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (kfd < 0)
                return us_errorf(err, errno, "template %.12s", key);
        int r = read_file_at(kfd, MANIFEST_NAME, MANIFEST_MAX, ret, NULL);
        if (r < 0)
                return us_errorf(err, -r, "template %.12s: read its manifest", key);
        return 0;
}

/* ---- eviction ---- */

struct used_key {
        char key[VMM_TEMPLATE_KEY_LEN + 1];
        int64_t used; /* the entry directory's mtime, seconds */
        ino_t ino;
};

static int cmp_used(const void *a, const void *b)
{
        const struct used_key *x = a, *y = b;
        return x->used < y->used ? -1 : x->used > y->used ? 1 : strcmp(x->key, y->key);
}

/* Evicts the entry `u` was read from, under its key's lock, if it is
 * still that entry, as unused as it was: a lookup that hit it or a build
 * that replaced it since keeps it. Returns 1 if removed, 0 if not. */
static int evict_one(struct vmm_template_cache *c, const struct used_key *u, const char *why,
                     vmm_template_gc_fn removed, void *userdata)
{
        _cleanup_close_ int lock = -1;
        struct stat st;
        if (key_lock(c, u->key, &lock, NULL) < 0)
                return 0;
        if (fstatat(c->dir_fd, u->key, &st, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISDIR(st.st_mode) ||
            st.st_ino != u->ino || (int64_t)st.st_mtim.tv_sec != u->used)
                return 0;
        return remove_key_locked(c, u->key, why, removed, userdata, NULL) > 0;
}

int vmm_template_evict(struct vmm_template_cache *c, const char *keep, size_t max, int64_t idle_s,
                       vmm_template_gc_fn removed, void *userdata, struct us_error **err)
{
        _cleanup_strv_ char **keys = NULL;
        size_t n = 0;
        int r = vmm_template_cache_keys(c, false, &keys, &n, err);
        if (r < 0)
                return r;
        if (n < max)
                return 0;
        for (size_t i = 0; i < n; i++)
                if (keep && strcmp(keys[i], keep) == 0)
                        return 0;
        _cleanup_free_ struct used_key *v = calloc(n, sizeof(*v));
        if (!v)
                return us_errorf(err, ENOMEM, "template cache");
        size_t m = 0;
        for (size_t i = 0; i < n; i++) {
                struct stat st;
                /* Not a directory (gc's to unlink) or gone meanwhile: not
                 * an entry to evict. */
                if (fstatat(c->dir_fd, keys[i], &st, AT_SYMLINK_NOFOLLOW) < 0 ||
                    !S_ISDIR(st.st_mode))
                        continue;
                memcpy(v[m].key, keys[i], VMM_TEMPLATE_KEY_LEN + 1);
                v[m].ino = st.st_ino;
                v[m++].used = (int64_t)st.st_mtim.tv_sec;
        }
        qsort(v, m, sizeof(*v), cmp_used);
        int64_t now = (int64_t)time(NULL);
        for (size_t i = 0; i < m && now - v[i].used >= idle_s; i++) {
                char why[96];
                snprintf(why, sizeof(why), "unused for %lld s, the cache held %zu",
                         (long long)(now - v[i].used), n);
                /* Busy (a build or removal of it right now), used or
                 * replaced meanwhile: the next one. */
                if (evict_one(c, &v[i], why, removed, userdata))
                        return 1;
        }
        return 0;
}

/* ---- failed builds ---- */

int64_t vmm_template_backoff_s(unsigned failures)
{
        if (failures == 0)
                return 0;
        int64_t s = VMM_TEMPLATE_BACKOFF_MIN_S;
        for (unsigned i = 1; i < failures && s < VMM_TEMPLATE_BACKOFF_MAX_S; i++)
                s *= 2;
        return s < VMM_TEMPLATE_BACKOFF_MAX_S ? s : VMM_TEMPLATE_BACKOFF_MAX_S;
}

bool vmm_template_backoff_held(const struct vmm_template_failure *f, int64_t now)
{
        /* A record from the future (the clock was set back) holds back no
         * longer than the longest backoff from now. */
        return now < f->retry_after && f->time <= now + VMM_TEMPLATE_BACKOFF_MAX_S;
}

int vmm_template_failure_read(struct vmm_template_cache *c, const char *key,
                              struct vmm_template_failure *ret, struct us_error **err)
{
        char name[sizeof(FAILED_PREFIX) + VMM_TEMPLATE_KEY_LEN];
        _cleanup_free_ char *text = NULL;

        if (!c || !key_valid(key) || !ret)
                return us_error_msg(err, EINVAL, "template: %s is not a template key",
                                    key ? key : "");
        failed_name(key, name);
        int r = read_file_at(c->dir_fd, name, FAILED_MAX, &text, NULL);
        if (r == -ENOENT)
                return us_error_msg(err, -VMM_TEMPLATE_NONE, "no failed build of %.12s", key);
        if (r < 0)
                return us_errorf(err, -r, "read %s/%s", c->dir, name);
        unsigned failures = 0;
        long long t = 0;
        int used = 0;
        char *eol = strchr(text, '\n');
        if (eol)
                *eol = '\0';
        if (!eol || sscanf(text, "%u %lld%n", &failures, &t, &used) != 2 ||
            (size_t)used != strlen(text) || failures == 0 || failures > 1000000 || t < 0 ||
            t > INT64_MAX / 2)
                return us_error_msg(err, EINVAL, "%s/%s: malformed", c->dir, name);
        struct vmm_template_failure f = {.failures = failures, .time = t};
        f.retry_after = f.time + vmm_template_backoff_s(failures);
        const char *why = eol + 1;
        size_t n = strcspn(why, "\n");
        if (n >= sizeof(f.why))
                n = sizeof(f.why) - 1;
        memcpy(f.why, why, n);
        f.why[n] = '\0';
        for (char *p = f.why; *p; p++)
                if ((unsigned char)*p < 0x20 || *p == 0x7f)
                        *p = ' ';
        *ret = f;
        return 0;
}

int vmm_template_failure_record(struct vmm_template_cache *c, const char *key, const char *why,
                                int64_t now, struct us_error **err)
{
        struct vmm_template_failure old;
        char name[sizeof(FAILED_PREFIX) + VMM_TEMPLATE_KEY_LEN], tmp[sizeof(name) + 32];
        unsigned failures = 1;

        if (!c || !key_valid(key))
                return us_error_msg(err, EINVAL, "template: %s is not a template key",
                                    key ? key : "");
        if (vmm_template_failure_read(c, key, &old, NULL) == 0 && old.failures < 1000)
                failures = old.failures + 1;
        /* One line of why: the record's second and last. */
        char line[sizeof(old.why)];
        snprintf(line, sizeof(line), "%s", why ? why : "");
        for (char *p = line; *p; p++)
                if ((unsigned char)*p < 0x20 || *p == 0x7f)
                        *p = ' ';
        _cleanup_free_ char *text = NULL;
        if (asprintf(&text, "%u %lld\n%s\n", failures, (long long)now, line) < 0)
                return us_errorf(err, ENOMEM, "template %.12s: failed build", key);
        failed_name(key, name);
        /* Whole or not at all: a reader never sees half of it. */
        snprintf(tmp, sizeof(tmp), "%s.tmp-%d", name, (int)getpid());
        (void)unlinkat(c->dir_fd, tmp, 0);
        int r = write_file_at(c->dir_fd, tmp, text, strlen(text), err);
        if (r >= 0 && renameat(c->dir_fd, tmp, c->dir_fd, name) < 0)
                r = us_errorf(err, errno, "rename %s/%s", c->dir, tmp);
        if (r < 0) {
                (void)unlinkat(c->dir_fd, tmp, 0);
                return us_error_wrap(err, r, "template %.12s: record its failed build", key);
        }
        return 0;
}

/* ---- building ---- */

int vmm_template_build_begin(struct vmm_template_cache *c, const struct vmm_template_inputs *in,
                             struct vmm_template_build **ret, struct us_error **err)
{
        struct vmm_template_build *b = NULL;
        _cleanup_free_ char *tmp = NULL;
        int r;

        if (!c || !in || !ret)
                return us_error_msg(err, EINVAL, "template build: no cache or inputs");
        b = calloc(1, sizeof(*b));
        if (!b)
                return us_errorf(err, ENOMEM, "template build");
        *b = (struct vmm_template_build){
                .cache = c, .lock_fd = -1, .tmp_fd = -1, .memory_fd = -1, .state_fd = -1};
        r = vmm_template_manifest(in, &b->manifest, err);
        if (r < 0)
                goto fail;
        vmm_template_key(b->manifest, b->key);
        b->memory_bytes = (uint64_t)(in->memory_mib ? in->memory_mib : 256) << 20;
        r = key_lock(c, b->key, &b->lock_fd, err);
        if (r < 0)
                goto fail;
        r = remove_leftovers(c, b->key, NULL, NULL, err);
        if (r < 0)
                goto fail;

        if (asprintf(&tmp, "%s/" BUILD_PREFIX "%s-XXXXXX", c->dir, b->key) < 0) {
                r = us_errorf(err, ENOMEM, "template build");
                goto fail;
        }
        if (!mkdtemp(tmp)) {
                r = us_errorf(err, errno, "create %s", tmp);
                goto fail;
        }
        b->tmp_name = strdup(strrchr(tmp, '/') + 1);
        if (!b->tmp_name || asprintf(&b->share_dir, "%s/" SHARE_NAME, tmp) < 0) {
                b->share_dir = NULL;
                r = us_errorf(err, ENOMEM, "template build");
                goto fail;
        }
        b->tmp_fd = openat(c->dir_fd, b->tmp_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (b->tmp_fd < 0) {
                r = us_errorf(err, errno, "open %s", tmp);
                goto fail;
        }
        if (mkdirat(b->tmp_fd, SHARE_NAME, 0700) < 0) {
                r = us_errorf(err, errno, "create %s", b->share_dir);
                goto fail;
        }
        /* The RAM: sealable, and above stdio for QEMU's -object. */
        int mfd = memfd_create("unishim-template", MFD_CLOEXEC | MFD_ALLOW_SEALING);
        if (mfd < 0) {
                r = us_errorf(err, errno, "memfd_create");
                goto fail;
        }
        b->memory_fd = fcntl(mfd, F_DUPFD_CLOEXEC, 3);
        us_close(mfd);
        if (b->memory_fd < 0 || ftruncate(b->memory_fd, (off_t)b->memory_bytes) < 0) {
                r = us_errorf(err, errno, "template RAM of %ju bytes", (uintmax_t)b->memory_bytes);
                goto fail;
        }
        b->state_fd = openat(b->tmp_fd, STATE_NAME,
                             O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
        if (b->state_fd < 0) {
                r = us_errorf(err, errno, "create %s/%s", tmp, STATE_NAME);
                goto fail;
        }
        *ret = b;
        return 0;
fail:
        vmm_template_build_free(b);
        return us_error_wrap(err, r, "template build");
}

const char *vmm_template_build_key(const struct vmm_template_build *b)
{
        return b ? b->key : NULL;
}

int vmm_template_build_memory_fd(const struct vmm_template_build *b)
{
        return b ? b->memory_fd : -1;
}

int vmm_template_build_state_fd(const struct vmm_template_build *b)
{
        return b ? b->state_fd : -1;
}

const char *vmm_template_build_share_dir(const struct vmm_template_build *b)
{
        return b ? b->share_dir : NULL;
}

struct vmm_template_build *vmm_template_build_free(struct vmm_template_build *b)
{
        if (!b)
                return NULL;
        if (b->tmp_fd >= 0) {
                holder_stop_at(b->tmp_fd);
                us_close(b->tmp_fd);
        }
        if (b->tmp_name)
                (void)us_rm_tree_at(b->cache->dir_fd, b->tmp_name, NULL);
        if (b->memory_fd >= 0)
                us_close(b->memory_fd);
        if (b->state_fd >= 0)
                us_close(b->state_fd);
        if (b->lock_fd >= 0)
                us_close(b->lock_fd);
        free(b->tmp_name);
        free(b->share_dir);
        free(b->manifest);
        free(b);
        return NULL;
}

int vmm_template_build_publish(struct vmm_template_build *b, pid_t *ret_holder_pid,
                               struct us_error **err)
{
        _cleanup_free_ char *state = NULL;
        _cleanup_close_ int pidfd = -1;
        size_t state_len = 0;
        pid_t holder = -1;
        char pidtext[24];
        int r;

        if (!b || b->spent || b->tmp_fd < 0)
                return us_error_msg(err, EINVAL, "template publish: no build under way");
        b->spent = true;
        r = read_fd_all(b->state_fd, STATE_MAX, &state, &state_len);
        if (r < 0) {
                r = us_errorf(err, -r, "read the saved state");
                goto fail;
        }
        if (state_len == 0) {
                r = us_error_msg(err, EIO, "the save wrote no state");
                goto fail;
        }
        char digest[2 * US_SHA256_DIGEST_SIZE + 2];
        us_sha256_hex(state, state_len, digest);
        strcat(digest, "\n");
        /* Sealed only now: the template's QEMU wrote it through a shared
         * mapping, which F_SEAL_WRITE refuses while one exists. From here
         * nobody writes it; clones map it privately. */
        if (fcntl(b->memory_fd, F_ADD_SEALS, ALL_SEALS) < 0) {
                r = us_errorf(err, errno,
                              "seal the template's RAM (EBUSY: still mapped writable, is the "
                              "template's QEMU gone?)");
                goto fail;
        }
        /* The share was the template's QEMU's to write (as its uid, over
         * 9p): whatever it left is not published with the entry, where it
         * would stay, uncapped, as long as the template. */
        r = us_rm_tree_at(b->tmp_fd, SHARE_NAME, err);
        if (r < 0) {
                r = us_error_wrap(err, r, "remove the template's share");
                goto fail;
        }
        if ((r = write_file_at(b->tmp_fd, STATE_SUM_NAME, digest, strlen(digest), err)) < 0 ||
            (r = write_file_at(b->tmp_fd, MANIFEST_NAME, b->manifest, strlen(b->manifest), err)) <
                    0)
                goto fail;
        r = holder_start(b, &holder, &pidfd, err);
        if (r < 0)
                goto fail;
        snprintf(pidtext, sizeof(pidtext), "%d\n", (int)holder);
        if ((r = write_file_at(b->tmp_fd, HOLDER_PID_NAME, pidtext, strlen(pidtext), err)) < 0)
                goto fail;
        /* The key's previous entry (stale or broken): ours is complete,
         * so the gap without one is short, and a lookup in it finds the
         * key locked: busy. */
        r = remove_dir(b->cache, b->key, b->key, err);
        if (r < 0)
                goto fail;
        if (renameat2(b->cache->dir_fd, b->tmp_name, b->cache->dir_fd, b->key, RENAME_NOREPLACE) <
            0) {
                r = us_errorf(err, errno, "publish %s/%s", b->cache->dir, b->key);
                goto fail;
        }
        free(b->tmp_name);
        b->tmp_name = NULL;
        /* Built: the key's failures are behind it. */
        char failed[sizeof(FAILED_PREFIX) + VMM_TEMPLATE_KEY_LEN];
        failed_name(b->key, failed);
        (void)unlinkat(b->cache->dir_fd, failed, 0);
        b->tmp_fd = us_close(b->tmp_fd);
        b->lock_fd = us_close(b->lock_fd);
        if (ret_holder_pid)
                *ret_holder_pid = holder;
        return 0;
fail:
        pidfd_stop(pidfd);
        return us_error_wrap(err, r, "template %.12s", b->key);
}

/* ---- the throwaway network ---- */

/* The child: a new network namespace, a tap in it, its fd sent back. */
static __attribute__((noreturn)) void tap_child(int sock)
{
        int e = 0;
        if (unshare(CLONE_NEWNET) < 0) {
                e = errno;
        } else {
                int tun = open("/dev/net/tun", O_RDWR | O_CLOEXEC);
                struct ifreq ifr = {0};
                ifr.ifr_flags = IFF_TAP | IFF_NO_PI;
                snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "tap0");
                if (tun < 0 || ioctl(tun, TUNSETIFF, &ifr) < 0)
                        e = errno;
                else if (send_fd(sock, tun, 0) < 0)
                        e = errno;
        }
        if (e) {
                /* A byte without an fd, then the errno. */
                char x = 'e';
                (void)!write(sock, &x, 1);
                (void)!write(sock, &e, sizeof(e));
        }
        _exit(e ? 1 : 0);
}

int vmm_template_tap_open(int *ret_fd, struct us_error **err)
{
        int sv[2];
        if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
                return us_errorf(err, errno, "socketpair");
        pid_t pid = fork();
        if (pid < 0) {
                int e = errno;
                us_close(sv[0]);
                us_close(sv[1]);
                return us_errorf(err, e, "fork");
        }
        if (pid == 0) {
                close(sv[0]);
                tap_child(sv[1]);
        }
        us_close(sv[1]);
        int fd = -1, r = 0;
        struct pollfd p = {.fd = sv[0], .events = POLLIN};
        if (poll(&p, 1, TAP_CHILD_TIMEOUT_MS) <= 0) {
                /* Only now, and by pid while it cannot have been reaped
                 * (it has not exited): a child that answered exits alone. */
                (void)kill(pid, SIGKILL);
                r = us_error_msg(err, ETIMEDOUT, "tap in a new network namespace: no answer");
        } else {
                int e = 0;
                ssize_t n = recv_fd(sv[0], &fd);
                if (n == 1 && fd >= 0) {
                        /* Above stdio: QEMU gets it as -netdev tap,fd=N. */
                        int moved = fcntl(fd, F_DUPFD_CLOEXEC, 3);
                        us_close(fd);
                        fd = moved;
                        if (fd < 0)
                                r = us_errorf(err, errno, "dup tap fd");
                } else {
                        if (fd >= 0)
                                fd = us_close(fd);
                        e = n > 0 && read(sv[0], &e, sizeof(e)) == sizeof(e) ? e : EIO;
                        r = us_errorf(err, e, "tap in a new network namespace");
                }
        }
        us_close(sv[0]);
        while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
                ;
        if (r < 0)
                return r;
        *ret_fd = fd;
        return 0;
}

/* ---- the template's user namespace ---- */

static int write_file(const char *path, const char *text)
{
        _cleanup_close_ int fd = open(path, O_WRONLY | O_CLOEXEC);
        if (fd < 0)
                return -errno;
        size_t n = strlen(text);
        return write(fd, text, n) == (ssize_t)n ? 0 : -errno;
}

int vmm_template_userns_open(int *ret_fd, uid_t *ret_uid, struct us_error **err)
{
        const uid_t uid = VMM_TEMPLATE_UID_BASE + (uid_t)getpid();
        char map[32];
        int go[2], ready[2];
        if (pipe2(go, O_CLOEXEC) < 0)
                return us_errorf(err, errno, "pipe");
        if (pipe2(ready, O_CLOEXEC) < 0) {
                int e = errno;
                us_close(go[0]);
                us_close(go[1]);
                return us_errorf(err, e, "pipe");
        }
        pid_t pid = fork();
        if (pid < 0) {
                int e = errno;
                us_close(go[0]);
                us_close(go[1]);
                us_close(ready[0]);
                us_close(ready[1]);
                return us_errorf(err, e, "fork");
        }
        if (pid == 0) {
                /* Only the parent's end may keep go open: its close is
                 * the child's EOF. */
                close(go[1]);
                close(ready[0]);
                char x = unshare(CLONE_NEWUSER) < 0 ? 'e' : 'k';
                (void)!write(ready[1], &x, 1);
                (void)!read(go[0], &x, 1); /* until the parent closes it */
                _exit(0);
        }
        us_close(go[0]);
        us_close(ready[1]);
        char x = 0, path[64];
        int fd = -1, r = 0;
        struct pollfd p = {.fd = ready[0], .events = POLLIN};
        if (poll(&p, 1, TAP_CHILD_TIMEOUT_MS) <= 0 || read(ready[0], &x, 1) != 1 || x != 'k') {
                r = us_error_msg(err, EIO, "template user namespace: the child failed");
        } else {
                /* Root only, mapped to an unprivileged host id: QEMU's
                 * capabilities are the namespace's (none over the host)
                 * and it owns no host file but what it is given. */
                snprintf(map, sizeof(map), "0 %u 1", (unsigned)uid);
                snprintf(path, sizeof(path), "/proc/%d/uid_map", (int)pid);
                r = write_file(path, map);
                snprintf(path, sizeof(path), "/proc/%d/gid_map", (int)pid);
                if (r >= 0)
                        r = write_file(path, map);
                snprintf(path, sizeof(path), "/proc/%d/ns/user", (int)pid);
                if (r >= 0 && (fd = open(path, O_RDONLY | O_CLOEXEC)) < 0)
                        r = -errno;
                if (fd >= 0 && fd <= 2) {
                        int moved = fcntl(fd, F_DUPFD_CLOEXEC, 3);
                        us_close(fd);
                        fd = moved;
                        if (fd < 0)
                                r = -errno;
                }
                if (r < 0)
                        r = us_errorf(err, -r, "template user namespace");
        }
        us_close(ready[0]);
        us_close(go[1]); /* the child's read ends: it exits */
        while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
                ;
        if (r < 0) {
                if (fd >= 0)
                        us_close(fd);
                return r;
        }
        *ret_fd = fd;
        *ret_uid = uid;
        return 0;
}

/* ---- the whole build, synchronously ---- */

static void quit_loop(struct us_loop_source *src, void *userdata)
{
        (void)src;
        us_loop_quit(userdata, 0);
}

static void pump(struct us_loop *loop, int ms)
{
        if (us_loop_add_timer(loop, (uint64_t)ms, quit_loop, loop, NULL, NULL) < 0)
                return;
        (void)us_loop_run(loop);
}

struct save_wait {
        bool ended;
        int r;
        struct us_error *err;
};

static void save_done(struct vmm_vm *vm, int r, const struct us_error *err, void *userdata)
{
        (void)vm;
        struct save_wait *w = userdata;
        w->ended = true;
        w->r = r;
        if (r < 0)
                us_error_msg(&w->err, -r, "%s", us_error_text(err));
}

static double secs(int64_t from, int64_t to)
{
        return (double)(to - from) / 1000.0;
}

int vmm_template_build(struct vmm_template_cache *c, const struct vmm_template_inputs *in,
                       const char *state_dir, vmm_template_ready_fn ready, void *userdata,
                       int timeout_ms, struct vmm_template_build_result *ret, struct us_error **err)
{
        struct vmm_template_build *b = NULL;
        struct us_loop *loop = NULL;
        struct vmm_vm *vm = NULL;
        _cleanup_close_ int tap = -1, userns = -1;
        struct save_wait w = {0};
        struct vmm_template_vm tv;
        struct vmm_template_instance inst = {0};
        int64_t t0 = now_ms(), t_start = 0, t_ready = 0, t_saved = 0;
        uint64_t state_bytes = 0;
        pid_t holder = -1;
        uid_t qemu_uid = 0;
        char id[32];
        struct stat st;
        int r;

        if (!ready || !state_dir || !ret)
                return us_error_msg(err, EINVAL, "template build: no ready check or state dir");
        r = vmm_template_build_begin(c, in, &b, err);
        if (r < 0)
                return r;
        if ((r = vmm_template_tap_open(&tap, err)) < 0 ||
            (r = vmm_template_userns_open(&userns, &qemu_uid, err)) < 0 ||
            (r = us_loop_new(&loop, err)) < 0)
                goto out;
        /* The 9p export root, opened by QEMU as the namespace's root. */
        if (fchownat(b->tmp_fd, SHARE_NAME, qemu_uid, (gid_t)qemu_uid, AT_SYMLINK_NOFOLLOW) < 0) {
                r = us_errorf(err, errno, "chown %s", b->share_dir);
                goto out;
        }
        snprintf(id, sizeof(id), "template-%.12s", b->key);
        inst = (struct vmm_template_instance){
                .id = id,
                .state_dir = state_dir,
                .loop = loop,
                /* The holder's cgroup: the template's memory is charged
                 * where its RAM will be kept. */
                .cgroup = c->holder_cgroup,
                .memory_fd = b->memory_fd,
                .tap_fd = tap,
                .userns_fd = userns,
                .share_dir = b->share_dir,
        };
        if ((r = vmm_template_vm_config(in, VMM_TEMPLATE_SOURCE, &inst, &tv, err)) < 0)
                goto out;
        t_start = now_ms();
        if ((r = vmm_vm_start(&tv.cfg, &vm, err)) < 0)
                goto out;
        tap = us_close(tap); /* QEMU's now */
        r = ready(vm, loop, timeout_ms, userdata, err);
        if (r < 0) {
                r = us_error_wrap(err, r, "the template's agent");
                goto out;
        }
        t_ready = now_ms();
        r = vmm_vm_template_save(vm, b->state_fd, save_done, &w, err);
        if (r < 0)
                goto out;
        while (!w.ended) {
                pump(loop, 10);
                (void)vmm_vm_reap_qemu(vm);
        }
        if (w.r < 0) {
                r = w.r;
                us_error_msg(err, -r, "%s", us_error_text(w.err));
                goto out;
        }
        t_saved = now_ms();
        /* QEMU gone: nothing maps the RAM writable any more. */
        if ((r = vmm_vm_quit(vm, err)) < 0)
                goto out;
        vm = vmm_vm_free(vm);
        state_bytes = fstat(b->state_fd, &st) == 0 ? (uint64_t)st.st_size : 0;
        if ((r = vmm_template_build_publish(b, &holder, err)) < 0)
                goto out;
        *ret = (struct vmm_template_build_result){.holder_pid = holder,
                                                  .boot_s = secs(t_start, t_ready),
                                                  .save_s = secs(t_ready, t_saved),
                                                  .total_s = secs(t0, now_ms()),
                                                  .state_bytes = state_bytes};
        memcpy(ret->key, b->key, sizeof(ret->key));
out:
        us_error_free(w.err);
        vm = vmm_vm_free(vm);
        loop = us_loop_free(loop);
        if (r < 0 && b) {
                r = us_error_wrap(err, r, "template %.12s", b->key);
                /* For the backoff of the builds a shim starts
                 * (vmm_template_backoff_held). */
                (void)vmm_template_failure_record(c, b->key, err ? us_error_text(*err) : NULL,
                                                  (int64_t)time(NULL), NULL);
        }
        vmm_template_build_free(b);
        return r;
}
