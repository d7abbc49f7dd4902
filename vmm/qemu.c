/* SPDX-License-Identifier: Apache-2.0 */
/* VM lifecycle: spawn virtiofsd(s) and QEMU as our children, QMP control,
 * teardown that leaves no process and no socket behind. */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/capability.h>
#include <linux/audit.h>
#include <linux/close_range.h>
#include <linux/falloc.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sched.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cgroup/cgroup.h"
#include "base/cleanup.h"
#include "base/log.h"
#include "base/loop.h"
#include "jail.h"
#include "logpipe.h"
#include "qemu.h"
#include "qmp.h"

#define QMP_TIMEOUT_MS      10000 /* QEMU under TCG on a busy 2-core host */
#define QUIT_TIMEOUT_MS     3000
#define KILL_WAIT_MS        5000
#define HELPER_EXIT_WAIT_MS 1000
#define LOG_TAIL            1024
/* A save or restore with x-ignore-shared moves ~100-200 KB (the RAM stays
 * in its file); this only bounds a QEMU that never ends one. */
#define MIGRATE_TIMEOUT_MS 120000
/* The name the state file's fd has in QEMU's monitor (getfd). */
#define MIGRATE_FD_NAME "unishim-state"
/* The console pipe's capacity: the shim drains it on its loop, but not
 * while it sits in a synchronous agent call; a guest that prints more than
 * the pipe holds meanwhile only slows its own console down. 1 MiB is the
 * default pipe-max-size; kernel memory is used only as far as it fills. */
#define CONSOLE_PIPE_SIZE (1 << 20)

struct vmm_proc {
        pid_t pid;
        bool exited;
        int status;
        const char *what;
        struct vmm_logpipe *log;     /* its stdout + stderr */
        struct vmm_logpipe *console; /* QEMU: the serial console */
};

/* A save or restore under way: what QEMU reported so far. */
enum migration_state { MIG_RUNNING, MIG_COMPLETED, MIG_FAILED };

struct migration {
        bool active;
        bool incoming;
        enum migration_state state;
        char reply_id[VMM_QMP_ID_MAX]; /* incoming: migrate-incoming, sent unwaited */
        char *error;                   /* QEMU's message, when it sent one */
        vmm_vm_migration_fn done;
        void *userdata;
        struct us_loop_source *check, *deadline;
};

struct vmm_vm {
        char *id;
        struct us_loop *loop;
        enum vmm_template_role role;
        struct migration mig;
        int dir_fd; /* state_dir, O_PATH: socket addresses relative to it */
        char *state_dir;
        char *agent_path;
        enum vmm_accel accel;
        char *accel_reason;
        struct vmm_proc qemu;
        struct vmm_proc *helpers; /* virtiofsd, one per share */
        size_t n_helpers;
        char **sockets; /* names under state_dir that we created */
        size_t n_sockets;
        struct vmm_qmp *qmp;
        struct us_loop_source *qmp_src; /* drains events between commands */
};

static void qmp_close(struct vmm_vm *vm)
{
        vm->qmp_src = us_loop_source_remove(vm->qmp_src);
        vm->qmp = vmm_qmp_free(vm->qmp);
}

static void migration_check_soon(struct vmm_vm *vm);

/* What QEMU says of a save or restore: MIGRATION events (the "events"
 * capability) and migrate-incoming's late reply. Only recorded here: this
 * runs inside the QMP client. */
static void qmp_message(const struct vmm_qmp_msg *msg, void *userdata)
{
        struct vmm_vm *vm = userdata;
        struct migration *m = &vm->mig;

        if (!m->active || m->state != MIG_RUNNING)
                return;
        if (msg->kind == VMM_QMP_MSG_EVENT && strcmp(msg->event, "MIGRATION") == 0) {
                const char *path[] = {"data", "status", NULL};
                yajl_val st = yajl_tree_get(msg->tree, path, yajl_t_string);
                const char *status = st ? YAJL_GET_STRING(st) : "";
                if (strcmp(status, "completed") == 0)
                        m->state = MIG_COMPLETED;
                else if (strcmp(status, "failed") == 0 || strcmp(status, "cancelled") == 0)
                        m->state = MIG_FAILED;
        } else if (msg->kind == VMM_QMP_MSG_ERROR && msg->id && strcmp(msg->id, m->reply_id) == 0) {
                m->state = MIG_FAILED;
                free(m->error);
                if (asprintf(&m->error, "%s: %.512s", msg->error_class, msg->error_desc) < 0)
                        m->error = NULL;
        }
        if (m->state != MIG_RUNNING)
                migration_check_soon(vm);
}

static void qmp_drain(struct vmm_vm *vm)
{
        struct us_error *err = NULL;
        if (vm->qmp && vmm_qmp_drain(vm->qmp, &err) < 0) {
                us_log_debug("vm %s: %s", vm->id, us_error_text(err));
                qmp_close(vm);
                /* A save or restore cannot end without the monitor. */
                if (vm->mig.active)
                        migration_check_soon(vm);
        }
        us_error_free(err);
}

/* Between commands QEMU's monitor only sends events: read them as they
 * come, or QEMU keeps them for us in its own memory, without limit. A
 * monitor that hung up or broke the protocol is closed; the next command
 * finds no monitor (QEMU's exit is seen by its reaper). */
static void qmp_readable(struct us_loop_source *src, int fd, uint32_t events, void *userdata)
{
        (void)src;
        (void)fd;
        (void)events;
        qmp_drain(userdata);
}

static void sleep_ms(int ms)
{
        struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
        while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
                ;
}

/* sun_path is 108 bytes and bundle paths are long: fall back to the
 * /proc/self/fd/<dirfd>/<name> alias of the same path when needed. */
static int unix_addr(const struct vmm_vm *vm, const char *name, struct sockaddr_un *sa,
                     socklen_t *ret_len, struct us_error **err)
{
        int n;

        memset(sa, 0, sizeof(*sa));
        sa->sun_family = AF_UNIX;
        n = snprintf(sa->sun_path, sizeof(sa->sun_path), "%s/%s", vm->state_dir, name);
        if (n < 0 || (size_t)n >= sizeof(sa->sun_path))
                n = snprintf(sa->sun_path, sizeof(sa->sun_path), "/proc/self/fd/%d/%s", vm->dir_fd,
                             name);
        if (n < 0 || (size_t)n >= sizeof(sa->sun_path))
                return us_error_msg(err, ENAMETOOLONG, "socket name %s too long", name);
        *ret_len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + (size_t)n + 1);
        return 0;
}

/* The child dup2()s onto 0..2: an fd we pass on must not live there (a shim
 * started with closed stdio gets low numbers from socket()/open()). */
static int move_above_stdio(int *fd, struct us_error **err)
{
        if (*fd > 2)
                return 0;
        int n = fcntl(*fd, F_DUPFD_CLOEXEC, 3);
        if (n < 0)
                return us_errorf(err, errno, "dup fd");
        us_close(*fd);
        *fd = n;
        return 0;
}

static int remember_socket(struct vmm_vm *vm, const char *name, struct us_error **err)
{
        char **v = realloc(vm->sockets, (vm->n_sockets + 1) * sizeof(*v));
        if (!v)
                return us_errorf(err, ENOMEM, "remember socket");
        vm->sockets = v;
        vm->sockets[vm->n_sockets] = strdup(name);
        if (!vm->sockets[vm->n_sockets])
                return us_errorf(err, ENOMEM, "remember socket");
        vm->n_sockets++;
        return 0;
}

/* A unix stream socket (above stdio) and the address of name in the state
 * dir, for listen_unix and connect_unix. */
static int unix_socket(const struct vmm_vm *vm, const char *name, struct sockaddr_un *sa,
                       socklen_t *len, int *ret_fd, struct us_error **err)
{
        int r = unix_addr(vm, name, sa, len, err);
        if (r < 0)
                return r;
        _cleanup_close_ int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return us_errorf(err, errno, "socket");
        r = move_above_stdio(&fd, err);
        if (r < 0)
                return r;
        *ret_fd = TAKE_FD(fd);
        return 0;
}

static int listen_unix(struct vmm_vm *vm, const char *name, int *ret_fd, struct us_error **err)
{
        struct sockaddr_un sa;
        socklen_t len;
        _cleanup_close_ int fd = -1;
        int r = unix_socket(vm, name, &sa, &len, &fd, err);
        if (r < 0)
                return r;
        (void)unlinkat(vm->dir_fd, name, 0);
        if (bind(fd, (struct sockaddr *)&sa, len) < 0)
                return us_errorf(err, errno, "bind %s/%s", vm->state_dir, name);
        r = remember_socket(vm, name, err);
        if (r < 0)
                return r;
        if (fchmodat(vm->dir_fd, name, 0600, 0) < 0)
                return us_errorf(err, errno, "chmod %s/%s", vm->state_dir, name);
        if (listen(fd, 4) < 0)
                return us_errorf(err, errno, "listen %s/%s", vm->state_dir, name);
        *ret_fd = TAKE_FD(fd);
        return 0;
}

static int connect_unix(const struct vmm_vm *vm, const char *name, int *ret_fd,
                        struct us_error **err)
{
        struct sockaddr_un sa;
        socklen_t len;
        _cleanup_close_ int fd = -1;
        int r = unix_socket(vm, name, &sa, &len, &fd, err);
        if (r < 0)
                return r;
        while (connect(fd, (struct sockaddr *)&sa, len) < 0) {
                if (errno == EINTR)
                        continue;
                return us_errorf(err, errno, "connect %s/%s", vm->state_dir, name);
        }
        *ret_fd = TAKE_FD(fd);
        return 0;
}

/* fork + exec with nothing but async-signal-safe calls in the child. The
 * child waits on a pipe until the parent has put it into the cgroup, so
 * nothing of it ever runs outside. keep_fds lose O_CLOEXEC in the child. */
/* Who the child becomes before exec; uid 0: the caller. jail_fd >= 0:
 * the private root it enters first (vmm/jail.h), attached over jail_at. */
struct spawn_cred {
        uid_t uid;
        gid_t gid;
        gid_t groups[1];
        size_t n_groups;
        int jail_fd;
        const char *jail_at;
        /* >= 0: it becomes root of this user namespace (uid and gid 0 in
         * it, groups[] as supplementary groups), after attaching share_fd
         * (>= 0) over share_at in a mount namespace of its own. */
        int userns_fd;
        int share_fd;
        const char *share_at;
        /* In the user namespace: only the capabilities in caps (a mask of
         * 1 << CAP_*), and no_new_privs. */
        bool limit_caps;
        uint64_t caps;
        /* Loaded (with no_new_privs) right before exec; may be NULL. */
        const struct sock_fprog *filter;
};

/* Bounding set, permitted and effective to keep, nothing inheritable or
 * ambient, no_new_privs: what the process holds after exec as root of its
 * user namespace is keep (the kernel grants root its bounding set).
 * Async-signal-safe. Returns 0 or -1 with errno. */
static int limit_caps(uint64_t keep)
{
        /* Up to what the kernel knows: EINVAL past its last capability. */
        for (unsigned c = 0; c < 64; c++)
                if (!(keep & (1ull << c)) && prctl(PR_CAPBSET_DROP, c, 0, 0, 0) < 0 &&
                    errno != EINVAL)
                        return -1;
        if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) < 0)
                return -1;
        struct __user_cap_header_struct h = {.version = _LINUX_CAPABILITY_VERSION_3};
        struct __user_cap_data_struct d[2] = {
                {.effective = (uint32_t)keep, .permitted = (uint32_t)keep},
                {.effective = (uint32_t)(keep >> 32), .permitted = (uint32_t)(keep >> 32)},
        };
        if (syscall(SYS_capset, &h, d) < 0)
                return -1;
        return prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
}

#if defined(__x86_64__)
#define NATIVE_AUDIT_ARCH AUDIT_ARCH_X86_64
#elif defined(__aarch64__)
#define NATIVE_AUDIT_ARCH AUDIT_ARCH_AARCH64
#else
/* No match: the filter below allows everything (a clone keeps what its
 * guest frees, as before the filter). */
#define NATIVE_AUDIT_ARCH 0
#endif

/* A clone's RAM is the template's sealed memfd mapped privately. QEMU 7.2
 * discards a page the guest reported free (the balloon's free page
 * reporting) with fallocate(PUNCH_HOLE | KEEP_SIZE) on the RAM's file and
 * then madvise(MADV_DONTNEED); the seal refuses the first (the template is
 * every clone's), and on that error QEMU skips the second. Under this
 * filter every fallocate(PUNCH_HOLE | KEEP_SIZE), on any fd (QEMU opens the
 * RAM's path itself: its fd number is not ours to know), returns 0 without
 * doing anything, so the madvise runs and drops the clone's private
 * copies: the range reads the template's pages again. Nothing else in a
 * clone punches holes: it has no block device (whose write-zeroes would
 * then zero nothing: a clone must never get one) and 9P2000.L has no
 * fallocate. The filter takes nothing from QEMU that its own -sandbox
 * allows, and guards nothing. */
static const struct sock_filter clone_filter_insns[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, NATIVE_AUDIT_ARCH, 0, 5),
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_fallocate, 0, 3),
        /* mode is an int: its low 32 bits (little-endian) */
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, args[1])),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | 0),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
};

const struct sock_fprog *vmm_qemu_clone_filter(void)
{
        static const struct sock_fprog prog = {
                .len = US_ELEMENTSOF(clone_filter_insns),
                .filter = (struct sock_filter *)clone_filter_insns,
        };
        return &prog;
}

/* What the child reports when it fails before exec. */
struct spawn_report {
        int err;
        const char *step; /* a literal: the same address in the parent */
};

static int spawn(char **argv, const int *keep_fds, size_t n_keep, int log_fd, struct us_cgroup *cg,
                 const struct spawn_cred *cred, pid_t *ret_pid, struct us_error **err)
{
        int go[2] = {-1, -1}, report[2] = {-1, -1};
        _cleanup_close_ int devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
        int r;

        if (devnull < 0)
                return us_errorf(err, errno, "open /dev/null");
        if (pipe2(go, O_CLOEXEC) < 0)
                return us_errorf(err, errno, "pipe");
        if (pipe2(report, O_CLOEXEC) < 0) {
                r = us_errorf(err, errno, "pipe");
                us_close(go[0]);
                us_close(go[1]);
                return r;
        }

        pid_t parent = getpid();
        pid_t pid = fork();
        if (pid < 0) {
                r = us_errorf(err, errno, "fork %s", argv[0]);
                us_close(go[0]);
                us_close(go[1]);
                us_close(report[0]);
                us_close(report[1]);
                return r;
        }
        if (pid == 0) {
                struct spawn_report rep = {.step = "set up"};
                sigset_t all;
                char c;

                /* The shim blocks signals for its signalfd and may ignore
                 * some: QEMU must start with a clean slate. */
                for (int s = 1; s < NSIG; s++)
                        (void)signal(s, SIG_DFL);
                sigemptyset(&all);
                (void)sigprocmask(SIG_SETMASK, &all, NULL);
                /* In the cgroup before anything else runs. No byte: the
                 * parent gave up on us, or died. */
                ssize_t got;
                while ((got = read(go[0], &c, 1)) < 0 && errno == EINTR)
                        ;
                if (got != 1)
                        _exit(127);
                if (cred && cred->jail_fd >= 0) {
                        rep.step = "enter its private root";
                        int jr = vmm_jail_enter(cred->jail_fd, cred->jail_at);
                        if (jr < 0) {
                                errno = -jr;
                                goto fail;
                        }
                }
                if (cred && cred->share_fd >= 0) {
                        rep.step = "attach its share";
                        /* A slave: binds added to the share later reach it,
                         * nothing of its own goes back to the host. */
                        if (unshare(CLONE_NEWNS) < 0 ||
                            mount(NULL, "/", NULL, MS_REC | MS_SLAVE, NULL) < 0 ||
                            move_mount(cred->share_fd, "", AT_FDCWD, cred->share_at,
                                       MOVE_MOUNT_F_EMPTY_PATH) < 0)
                                goto fail;
                }
                if (cred && cred->userns_fd >= 0) {
                        rep.step = "enter its user namespace";
                        /* The groups first: inside, setgroups could only
                         * name groups the namespace maps (kvm is not). */
                        if (setgroups(cred->n_groups, cred->groups) < 0 ||
                            setns(cred->userns_fd, CLONE_NEWUSER) < 0 || setresgid(0, 0, 0) < 0 ||
                            setresuid(0, 0, 0) < 0)
                                goto fail;
                        rep.step = "limit its capabilities";
                        if (cred->limit_caps && limit_caps(cred->caps) < 0)
                                goto fail;
                }
                rep.step = "drop privileges";
                if (cred && cred->uid != 0 &&
                    (setgroups(cred->n_groups, cred->groups) < 0 ||
                     setresgid(cred->gid, cred->gid, cred->gid) < 0 ||
                     setresuid(cred->uid, cred->uid, cred->uid) < 0 ||
                     prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0))
                        goto fail;
                /* If the shim dies, its VM must not linger unowned. (After
                 * the uid change, which clears it; a shim that died before
                 * is seen as a new parent.) */
                (void)prctl(PR_SET_PDEATHSIG, SIGKILL);
                if (getppid() != parent)
                        _exit(127);
                (void)setsid();
                rep.step = "set up its fds";
                if (dup2(devnull, 0) < 0 || dup2(log_fd, 1) < 0 || dup2(log_fd, 2) < 0)
                        goto fail;
                /* Only what it is given: an fd of ours opened without
                 * O_CLOEXEC could name files outside its private root. */
                if (syscall(SYS_close_range, 3U, ~0U, CLOSE_RANGE_CLOEXEC) < 0)
                        goto fail;
                for (size_t i = 0; i < n_keep; i++) {
                        int fl = fcntl(keep_fds[i], F_GETFD);
                        if (fl < 0 || fcntl(keep_fds[i], F_SETFD, fl & ~FD_CLOEXEC) < 0)
                                goto fail;
                }
                rep.step = "load its seccomp filter";
                if (cred && cred->filter &&
                    (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0 ||
                     prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, cred->filter, 0, 0) < 0))
                        goto fail;
                rep.step = "exec";
                execv(argv[0], argv);
        fail:
                rep.err = errno;
                (void)!write(report[1], &rep, sizeof(rep));
                _exit(127);
        }

        us_close(go[0]);
        us_close(report[1]);
        r = 0;
        if (cg) {
                r = us_cgroup_enter(cg, pid, err);
                if (r < 0)
                        r = us_error_wrap(err, r, "move %s into cgroup", argv[0]);
        }
        if (r == 0)
                (void)!write(go[1], "x", 1);
        us_close(go[1]);
        if (r < 0) {
                (void)kill(pid, SIGKILL);
                us_close(report[0]);
                (void)waitpid(pid, NULL, 0);
                return r;
        }

        struct spawn_report rep = {0};
        ssize_t n;
        while ((n = read(report[0], &rep, sizeof(rep))) < 0 && errno == EINTR)
                ;
        us_close(report[0]);
        if (n > 0) {
                (void)waitpid(pid, NULL, 0);
                if (n != sizeof(rep) || !rep.step)
                        return us_errorf(err, EIO, "start %s", argv[0]);
                if (!strcmp(rep.step, "exec"))
                        return us_errorf(err, rep.err ? rep.err : EIO, "exec %s", argv[0]);
                return us_errorf(err, rep.err ? rep.err : EIO, "start %s: %s", argv[0], rep.step);
        }
        *ret_pid = pid;
        return 0;
}

/* The process is gone: what it wrote is in its pipes; move it to the files
 * now, so a caller that reads console.log on the exit sees all of it. */
static void proc_gone(struct vmm_proc *p, int status)
{
        p->exited = true;
        p->status = status;
        (void)vmm_logpipe_drain(p->log);
        (void)vmm_logpipe_drain(p->console);
}

static void proc_wait(struct vmm_proc *p, int timeout_ms)
{
        int waited = 0;

        if (p->pid <= 0 || p->exited)
                return;
        for (;;) {
                int st = 0;
                pid_t r = waitpid(p->pid, &st, WNOHANG);
                if (r == p->pid) {
                        proc_gone(p, st);
                        return;
                }
                if (r < 0 && errno == ECHILD) {
                        /* Reaped by someone who did not tell us: gone. */
                        proc_gone(p, -1);
                        return;
                }
                if (waited >= timeout_ms)
                        return;
                sleep_ms(10);
                waited += 10;
        }
}

static void proc_kill(struct vmm_proc *p)
{
        if (p->pid > 0 && !p->exited)
                (void)kill(p->pid, SIGKILL);
}

static void proc_free_logs(struct vmm_proc *p)
{
        p->log = vmm_logpipe_free(p->log);
        p->console = vmm_logpipe_free(p->console);
}

static void remove_sockets(struct vmm_vm *vm)
{
        for (size_t i = 0; i < vm->n_sockets; i++) {
                (void)unlinkat(vm->dir_fd, vm->sockets[i], 0);
                free(vm->sockets[i]);
        }
        free(vm->sockets);
        vm->sockets = NULL;
        vm->n_sockets = 0;
}

static bool all_reaped(const struct vmm_vm *vm)
{
        if (vm->qemu.pid > 0 && !vm->qemu.exited)
                return false;
        for (size_t i = 0; i < vm->n_helpers; i++)
                if (vm->helpers[i].pid > 0 && !vm->helpers[i].exited)
                        return false;
        return true;
}

static void migration_clear(struct vmm_vm *vm)
{
        vm->mig.check = us_loop_source_remove(vm->mig.check);
        vm->mig.deadline = us_loop_source_remove(vm->mig.deadline);
        free(vm->mig.error);
        vm->mig = (struct migration){0};
}

int vmm_vm_destroy(struct vmm_vm *vm, struct us_error **err)
{
        if (!vm)
                return 0;
        migration_clear(vm);
        qmp_close(vm);
        proc_kill(&vm->qemu);
        for (size_t i = 0; i < vm->n_helpers; i++)
                proc_kill(&vm->helpers[i]);
        proc_wait(&vm->qemu, KILL_WAIT_MS);
        for (size_t i = 0; i < vm->n_helpers; i++)
                proc_wait(&vm->helpers[i], KILL_WAIT_MS);
        remove_sockets(vm);
        if (!all_reaped(vm))
                return us_error_msg(err, ETIMEDOUT, "vm %s: processes still alive after SIGKILL",
                                    vm->id);
        return 0;
}

struct vmm_vm *vmm_vm_free(struct vmm_vm *vm)
{
        if (!vm)
                return NULL;
        (void)vmm_vm_destroy(vm, NULL);
        proc_free_logs(&vm->qemu);
        for (size_t i = 0; i < vm->n_helpers; i++)
                proc_free_logs(&vm->helpers[i]);
        us_close(vm->dir_fd);
        free(vm->id);
        free(vm->state_dir);
        free(vm->agent_path);
        free(vm->accel_reason);
        free(vm->helpers);
        free(vm);
        return NULL;
}

DEFINE_CLEANUP(struct vmm_vm *, vmm_vm_free)

/* "qemu exited with status 1: <last lines of qemu.log>" */
static int exit_error(struct vmm_vm *vm, int r, struct us_error **err)
{
        char tail[LOG_TAIL + 1] = "";
        char how[64] = "is still running";

        /* QEMU closing QMP usually means it is exiting: give it a moment. */
        proc_wait(&vm->qemu, 2000);
        if (vm->qemu.exited) {
                int st = vm->qemu.status;
                if (st == -1)
                        snprintf(how, sizeof(how), "exited");
                else if (WIFEXITED(st))
                        snprintf(how, sizeof(how), "exited with status %d", WEXITSTATUS(st));
                else if (WIFSIGNALED(st))
                        snprintf(how, sizeof(how), "was killed by signal %d", WTERMSIG(st));
        }
        /* Still running: what it said so far is in the pipe. */
        (void)vmm_logpipe_drain(vm->qemu.log);
        size_t n = vmm_logpipe_tail(vm->qemu.log, tail, sizeof(tail));
        tail[n] = '\0';
        while (n > 0 && (tail[n - 1] == '\n' || tail[n - 1] == ' '))
                tail[--n] = '\0';
        for (size_t i = 0; i < n; i++)
                if (tail[i] == '\n' || tail[i] == '\0')
                        tail[i] = ' ';
        return us_error_wrap(err, r, "qemu %s%s%s", how, tail[0] ? ": " : "", tail);
}

static int start_virtiofsd(struct vmm_vm *vm, const struct vmm_vm_config *cfg, int *fs_fds,
                           struct us_error **err)
{
        for (size_t i = 0; i < cfg->n_shares; i++) {
                _cleanup_strv_ char **argv = NULL;
                _cleanup_close_ int lfd = -1;
                char name[48];
                int r;

                snprintf(name, sizeof(name), "virtiofsd-%zu.sock", i);
                r = listen_unix(vm, name, &lfd, err);
                if (r < 0)
                        return r;
                r = vmm_virtiofsd_argv(cfg, &cfg->shares[i], lfd, &argv, err);
                if (r < 0)
                        return r;
                /* Own log: QEMU's stays readable for start errors. Capped:
                 * virtiofsd logs malformed requests the guest sends. */
                char log_name[48];
                snprintf(log_name, sizeof(log_name), "virtiofsd-%zu.log", i);
                struct vmm_proc *p = &vm->helpers[vm->n_helpers];
                _cleanup_close_ int own_log = -1;
                r = vmm_logpipe_new(cfg->loop, vm->dir_fd, log_name, VMM_HELPER_LOG_MAX, &own_log,
                                    &p->log, err);
                if (r < 0)
                        return us_error_wrap(err, r, "%s", vm->state_dir);
                struct spawn_cred cred = {.jail_fd = -1, .userns_fd = -1, .share_fd = -1};
                _cleanup_close_ int share_fd = -1;
                if (cfg->virtiofsd_userns) {
                        share_fd = open_tree(AT_FDCWD, cfg->shares[i].host_dir,
                                             OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_RECURSIVE);
                        if (share_fd < 0)
                                return us_errorf(err, errno, "clone share %s",
                                                 cfg->shares[i].host_dir);
                        cred.userns_fd = cfg->virtiofsd_userns_fd;
                        cred.share_fd = share_fd;
                        cred.share_at = VMM_VIRTIOFSD_SHARE_AT;
                }
                r = spawn(argv, &lfd, 1, own_log, cfg->cgroup, &cred, &p->pid, err);
                if (r < 0) {
                        p->log = vmm_logpipe_free(p->log);
                        return us_error_wrap(err, r, "start virtiofsd for %s", cfg->shares[i].tag);
                }
                p->what = "virtiofsd";
                vm->n_helpers++;
                /* Queued in the backlog until virtiofsd accepts: no race. */
                r = connect_unix(vm, name, &fs_fds[i], err);
                if (r < 0)
                        return r;
        }
        return 0;
}

/* What a private root cannot hold: QEMU outside /usr (the one tree of the
 * host's bound in). */
static int jail_check(const struct vmm_vm_config *cfg, struct us_error **err)
{
        const char *qemu = cfg->qemu_binary ? cfg->qemu_binary : VMM_DEFAULT_QEMU;
        _cleanup_free_ char *real = realpath(qemu, NULL);

        if (!real)
                return us_errorf(err, errno, "qemu binary %s", qemu);
        /* Exec'd by this name inside the root: the name and what it
         * resolves to both under /usr. */
        if (strncmp(real, "/usr/", 5) != 0 || strncmp(qemu, "/usr/", 5) != 0)
                return us_error_msg(err, EINVAL,
                                    "qemu binary %s is outside /usr: it cannot run in its "
                                    "private root",
                                    qemu);
        return 0;
}

int vmm_vm_start(const struct vmm_vm_config *cfg, struct vmm_vm **ret, struct us_error **err)
{
        _cleanup_(vmm_vm_free_cleanupp) struct vmm_vm *vm = NULL;
        _cleanup_strv_ char **argv = NULL;
        char *reason = NULL;
        _cleanup_free_ int *fs_fds = NULL;
        _cleanup_close_ int log_fd = -1, console_fd = -1, qmp_lfd = -1, agent_lfd = -1,
                            events_lfd = -1, qmp_fd = -1, jail_fd = -1;
        struct vmm_qemu_runtime rt = {0};
        size_t console_max;
        bool virtiofs;
        int r;

        if (!cfg || !ret || !cfg->state_dir || !cfg->kernel)
                return us_error_msg(err, EINVAL, "vm: state_dir and kernel are required");
        /* Without a loop nobody drains the console pipe: the guest's console
         * would stall once the pipe is full. Refuse rather than run so. */
        if (!cfg->loop)
                return us_error_msg(err, EINVAL,
                                    "vm: an event loop is required (it drains the console log)");
        console_max = cfg->console_log_max ? cfg->console_log_max : VMM_CONSOLE_LOG_DEFAULT;
        if (console_max < VMM_LOGPIPE_MIN_CAP)
                return us_error_msg(err, EINVAL, "vm: console_log_max %zu is below %u bytes",
                                    console_max, VMM_LOGPIPE_MIN_CAP);
        if (cfg->tap_fd >= 0 && cfg->tap_fd <= 2)
                return us_error_msg(err, EINVAL, "vm: tap fd %d collides with stdio", cfg->tap_fd);
        if (cfg->qemu_userns && (cfg->qemu_uid != 0 || cfg->qemu_userns_fd < 0))
                return us_error_msg(err, EINVAL,
                                    "vm: QEMU in a user namespace needs its fd and no qemu_uid");
        virtiofs = cfg->share_type == VMM_SHARE_VIRTIOFS && cfg->n_shares > 0;

        vm = calloc(1, sizeof(*vm));
        if (!vm)
                return us_errorf(err, ENOMEM, "allocate vm");
        vm->dir_fd = -1;
        vm->id = strdup(cfg->id ? cfg->id : "vm");
        vm->loop = cfg->loop;
        vm->role = cfg->template_role;
        vm->state_dir = strdup(cfg->state_dir);
        if (!vm->id || !vm->state_dir)
                return us_errorf(err, ENOMEM, "allocate vm");
        vm->dir_fd = open(cfg->state_dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
        if (vm->dir_fd < 0)
                return us_errorf(err, errno, "open state dir %s", cfg->state_dir);
        if (cfg->n_shares > 0) {
                vm->helpers = calloc(cfg->n_shares, sizeof(*vm->helpers));
                fs_fds = malloc(cfg->n_shares * sizeof(*fs_fds));
                if (!vm->helpers || !fs_fds)
                        return us_errorf(err, ENOMEM, "allocate vm");
                for (size_t i = 0; i < cfg->n_shares; i++)
                        fs_fds[i] = -1;
        }

        r = vmm_accel_decide(cfg->accel, NULL, NULL, &rt.accel, &reason, err);
        if (r < 0)
                return us_error_wrap(err, r, "vm %s", vm->id);
        if (rt.accel == VMM_ACCEL_TCG)
                rt.tsc_khz = vmm_host_tsc_khz_read();
        vm->accel = rt.accel;
        vm->accel_reason = TAKE_PTR(reason);
        if (cfg->private_root) {
                r = jail_check(cfg, err);
                /* 9p shares are opened by QEMU itself: bound into its root. */
                bool ninep = cfg->share_type == VMM_SHARE_9P;
                if (r >= 0)
                        r = vmm_jail_build(cfg->kernel, cfg->initrd, rt.accel == VMM_ACCEL_KVM,
                                           ninep ? cfg->shares : NULL, ninep ? cfg->n_shares : 0,
                                           &jail_fd, err);
                if (r < 0)
                        return us_error_wrap(err, r, "vm %s", vm->id);
                rt.private_root = true;
        }

        if (asprintf(&vm->agent_path, "%s/agent.sock", cfg->state_dir) < 0)
                vm->agent_path = NULL;
        if (!vm->agent_path)
                return us_errorf(err, ENOMEM, "allocate vm");
        /* QEMU's stdout/stderr and its serial console: pipes drained on the
         * loop into capped files (vmm/logpipe.h). The guest decides what goes
         * on its console, and can provoke QEMU's error messages. */
        r = vmm_logpipe_new(cfg->loop, vm->dir_fd, "qemu.log", VMM_HELPER_LOG_MAX, &log_fd,
                            &vm->qemu.log, err);
        if (r >= 0)
                r = vmm_logpipe_new(cfg->loop, vm->dir_fd, "console.log", console_max, &console_fd,
                                    &vm->qemu.console, err);
        if (r < 0)
                return us_error_wrap(err, r, "vm %s: %s", vm->id, cfg->state_dir);
        /* Best effort: the default 64 KiB does as well, only sooner slows the
         * guest's console while the caller is busy. */
        (void)fcntl(console_fd, F_SETPIPE_SZ, CONSOLE_PIPE_SIZE);

        /* Validate the whole command line before starting any helper. */
        rt.qmp_fd = 0;
        rt.agent_fd = 0;
        rt.events_fd = 0;
        rt.console_fd = console_fd;
        {
                _cleanup_strv_ char **probe = NULL;
                _cleanup_free_ int *zero = calloc(cfg->n_shares ? cfg->n_shares : 1, sizeof(int));
                if (!zero)
                        return us_errorf(err, ENOMEM, "allocate vm");
                rt.fs_fds = zero;
                r = vmm_qemu_argv(cfg, &rt, &probe, err);
                rt.fs_fds = NULL;
                if (r < 0)
                        return us_error_wrap(err, r, "vm %s", vm->id);
        }

        if (virtiofs) {
                r = start_virtiofsd(vm, cfg, fs_fds, err);
                if (r < 0)
                        return us_error_wrap(err, r, "vm %s", vm->id);
        }

        r = listen_unix(vm, "qmp.sock", &qmp_lfd, err);
        if (r < 0)
                return us_error_wrap(err, r, "vm %s", vm->id);
        r = listen_unix(vm, "agent.sock", &agent_lfd, err);
        if (r < 0)
                return us_error_wrap(err, r, "vm %s", vm->id);
        r = listen_unix(vm, "events.sock", &events_lfd, err);
        if (r < 0)
                return us_error_wrap(err, r, "vm %s", vm->id);

        rt.qmp_fd = qmp_lfd;
        rt.agent_fd = agent_lfd;
        rt.events_fd = events_lfd;
        rt.fs_fds = fs_fds;
        r = vmm_qemu_argv(cfg, &rt, &argv, err);
        if (r < 0)
                return us_error_wrap(err, r, "vm %s", vm->id);

        int keep[6 + 8];
        size_t n_keep = 0;
        keep[n_keep++] = console_fd;
        if (cfg->template_role != VMM_TEMPLATE_NONE)
                keep[n_keep++] = cfg->memory_fd;
        keep[n_keep++] = qmp_lfd;
        keep[n_keep++] = agent_lfd;
        keep[n_keep++] = events_lfd;
        if (cfg->tap_fd >= 0)
                keep[n_keep++] = cfg->tap_fd;
        for (size_t i = 0; virtiofs && i < cfg->n_shares && n_keep < US_ELEMENTSOF(keep); i++)
                keep[n_keep++] = fs_fds[i];
        struct spawn_cred cred = {.uid = cfg->qemu_uid,
                                  .gid = cfg->qemu_gid,
                                  .jail_fd = jail_fd,
                                  .jail_at = cfg->state_dir,
                                  .userns_fd = cfg->qemu_userns ? cfg->qemu_userns_fd : -1,
                                  .share_fd = -1,
                                  .limit_caps = cfg->qemu_userns,
                                  .caps = vmm_qemu_capabilities(cfg),
                                  .filter = cfg->template_role == VMM_TEMPLATE_CLONE
                                                    ? vmm_qemu_clone_filter()
                                                    : NULL};
        if ((cfg->qemu_uid != 0 || cfg->qemu_userns) && rt.accel == VMM_ACCEL_KVM) {
                const struct group *kvm = getgrnam("kvm"); /* /dev/kvm is root:kvm 0660 */
                if (kvm)
                        cred.groups[cred.n_groups++] = kvm->gr_gid;
        }
        r = spawn(argv, keep, n_keep, log_fd, cfg->cgroup, &cred, &vm->qemu.pid, err);
        if (r < 0)
                return us_error_wrap(err, r, "vm %s: start qemu", vm->id);
        vm->qemu.what = "qemu";

        /* QEMU holds its copies now; ours would keep the log pipes from
         * ever reporting EOF. */
        log_fd = us_close(log_fd);
        console_fd = us_close(console_fd);
        qmp_lfd = us_close(qmp_lfd);
        agent_lfd = us_close(agent_lfd);
        events_lfd = us_close(events_lfd);
        for (size_t i = 0; virtiofs && i < cfg->n_shares; i++)
                fs_fds[i] = us_close(fs_fds[i]);

        /* A QEMU that dies at once shows either as a refused connect (it
         * exited before we connected: no listener is left) or as EOF on
         * QMP: both are reported with its exit status and log tail. */
        r = connect_unix(vm, "qmp.sock", &qmp_fd, err);
        if (r >= 0)
                r = vmm_qmp_open(TAKE_FD(qmp_fd), QMP_TIMEOUT_MS, &vm->qmp, err);
        if (r >= 0) {
                vmm_qmp_set_handler(vm->qmp, qmp_message, vm);
                r = us_loop_add_fd(cfg->loop, vmm_qmp_fd(vm->qmp), EPOLLIN, qmp_readable, vm,
                                   &vm->qmp_src, err);
        }
        if (r < 0) {
                r = exit_error(vm, r, err);
                return us_error_wrap(err, r, "vm %s", vm->id);
        }
        *ret = TAKE_PTR(vm);
        return 0;
}

int vmm_vm_port_connect(struct vmm_vm *vm, enum vmm_agent_port port, int *ret_fd,
                        struct us_error **err)
{
        const char *name;

        if (!vm || !ret_fd)
                return us_error_msg(err, EINVAL, "agent connect: no vm");
        switch (port) {
        case VMM_PORT_AGENT:
                name = "agent.sock";
                break;
        case VMM_PORT_EVENTS:
                name = "events.sock";
                break;
        default:
                return us_error_msg(err, EINVAL, "agent connect: unknown port %d", (int)port);
        }
        if (!vmm_vm_running(vm))
                return us_error_msg(err, ESRCH, "vm %s: qemu is not running", vm->id);
        return connect_unix(vm, name, ret_fd, err);
}

int vmm_vm_agent_connect(struct vmm_vm *vm, int *ret_fd, struct us_error **err)
{
        return vmm_vm_port_connect(vm, VMM_PORT_AGENT, ret_fd, err);
}

enum vmm_accel vmm_vm_accel(const struct vmm_vm *vm)
{
        return vm ? vm->accel : VMM_ACCEL_AUTO;
}

const char *vmm_vm_accel_reason(const struct vmm_vm *vm)
{
        return vm && vm->accel_reason ? vm->accel_reason : "";
}

pid_t vmm_vm_pid(const struct vmm_vm *vm)
{
        return vm ? vm->qemu.pid : -1;
}

bool vmm_vm_reap_qemu(struct vmm_vm *vm)
{
        int ws;
        pid_t qemu = vmm_vm_pid(vm);
        if (qemu > 0 && waitpid(qemu, &ws, WNOHANG) == qemu)
                (void)vmm_vm_child_exited(vm, qemu, ws);
        return vmm_vm_running(vm);
}

bool vmm_vm_child_exited(struct vmm_vm *vm, pid_t pid, int wait_status)
{
        if (!vm || pid <= 0)
                return false;
        if (pid == vm->qemu.pid && !vm->qemu.exited) {
                proc_gone(&vm->qemu, wait_status);
                if (vm->mig.active)
                        migration_check_soon(vm);
                return true;
        }
        for (size_t i = 0; i < vm->n_helpers; i++)
                if (pid == vm->helpers[i].pid && !vm->helpers[i].exited) {
                        proc_gone(&vm->helpers[i], wait_status);
                        return true;
                }
        return false;
}

bool vmm_vm_running(const struct vmm_vm *vm)
{
        return vm && vm->qemu.pid > 0 && !vm->qemu.exited;
}

int vmm_vm_exit_status(const struct vmm_vm *vm)
{
        return vm && vm->qemu.exited ? vm->qemu.status : -1;
}

int vmm_vm_qmp(struct vmm_vm *vm, const char *command, const char *arguments_json,
               struct vmm_qmp_msg **ret_reply, struct us_error **err)
{
        if (!vm)
                return us_error_msg(err, EINVAL, "qmp: no vm");
        if (!vmm_vm_running(vm))
                return us_error_msg(err, ESRCH, "vm %s: qemu is not running", vm->id);
        if (!vm->qmp)
                return us_error_msg(err, ENOTCONN,
                                    "vm %s: qemu's monitor is closed (it hung up or broke the "
                                    "protocol)",
                                    vm->id);
        int r = vmm_qmp_execute(vm->qmp, command, arguments_json, ret_reply, err);
        /* What came in the same read as the reply waits in the client's
         * buffer, and no new input may wake the loop for it: a MIGRATION
         * event that ends a save can come right behind migrate's reply. */
        qmp_drain(vm);
        if (r < 0)
                return us_error_wrap(err, r, "vm %s", vm->id);
        return 0;
}

int vmm_vm_pause(struct vmm_vm *vm, struct us_error **err)
{
        return vmm_vm_qmp(vm, "stop", NULL, NULL, err);
}

int vmm_vm_resume(struct vmm_vm *vm, struct us_error **err)
{
        return vmm_vm_qmp(vm, "cont", NULL, NULL, err);
}

int vmm_vm_quit(struct vmm_vm *vm, struct us_error **err)
{
        if (!vm)
                return 0;
        migration_clear(vm);
        if (vmm_vm_running(vm) && vm->qmp) {
                /* QEMU may close the monitor before or after answering. */
                (void)vmm_qmp_execute(vm->qmp, "quit", NULL, NULL, NULL);
                proc_wait(&vm->qemu, QUIT_TIMEOUT_MS);
        }
        qmp_close(vm);
        /* virtiofsd exits when its vhost-user peer goes away. */
        for (size_t i = 0; i < vm->n_helpers; i++)
                proc_wait(&vm->helpers[i], HELPER_EXIT_WAIT_MS);
        return vmm_vm_destroy(vm, err);
}

size_t vmm_vm_console_tail(const struct vmm_vm *vm, char *buf, size_t size)
{
        if (!vm) {
                if (buf && size)
                        buf[0] = '\0';
                return 0;
        }
        return vmm_logpipe_tail(vm->qemu.console, buf, size);
}

const char *vmm_vm_agent_socket(const struct vmm_vm *vm)
{
        return vm ? vm->agent_path : NULL;
}

/* Ends the save or restore: one call of `done`, the last thing done here
 * (it may free vm). */
static void migration_end(struct vmm_vm *vm, int r, struct us_error *err)
{
        vmm_vm_migration_fn done = vm->mig.done;
        void *userdata = vm->mig.userdata;
        migration_clear(vm);
        done(vm, r, err, userdata);
        us_error_free(err);
}

static void migration_check(struct us_loop_source *src, void *userdata)
{
        (void)src;
        struct vmm_vm *vm = userdata;
        struct migration *m = &vm->mig;
        const char *what = m->incoming ? "restore" : "save";
        struct us_error *err = NULL;
        int r;

        m->check = NULL;
        if (!m->active)
                return;
        if (!vmm_vm_running(vm) || !vm->qmp || (m->state == MIG_FAILED && m->incoming)) {
                /* 7.2 exits on a failed load, after its message went to its
                 * log (a MIGRATION "failed" event may come first). */
                r = exit_error(vm, -EIO, &err);
                if (m->error)
                        r = us_error_wrap(&err, r, "%s", m->error);
                r = us_error_wrap(&err, r, "vm %s: %s", vm->id, what);
                migration_end(vm, r, err);
                return;
        }
        if (m->state == MIG_RUNNING)
                return;
        if (m->state == MIG_FAILED) {
                if (!m->error) {
                        struct vmm_qmp_msg *reply = NULL;
                        const char *path[] = {"error-desc", NULL};
                        if (vmm_vm_qmp(vm, "query-migrate", NULL, &reply, NULL) == 0) {
                                yajl_val d = yajl_tree_get(reply->value, path, yajl_t_string);
                                if (d && asprintf(&m->error, "%.512s", YAJL_GET_STRING(d)) < 0)
                                        m->error = NULL;
                        }
                        vmm_qmp_msg_free(reply);
                }
                r = us_error_msg(&err, EIO, "vm %s: %s failed: %s", vm->id, what,
                                 m->error ? m->error : "QEMU gave no reason");
                migration_end(vm, r, err);
                return;
        }
        /* Completed. A clone was started with -S: it runs from here. */
        r = 0;
        if (m->incoming && (r = vmm_vm_resume(vm, &err)) < 0)
                r = us_error_wrap(&err, r, "vm %s: %s: start the guest", vm->id, what);
        migration_end(vm, r, err);
}

static void migration_check_soon(struct vmm_vm *vm)
{
        if (vm->mig.check || !vm->loop)
                return;
        /* A timer failing to arm leaves the deadline to end it. */
        (void)us_loop_add_timer(vm->loop, 0, migration_check, vm, &vm->mig.check, NULL);
}

static void migration_timeout(struct us_loop_source *src, void *userdata)
{
        (void)src;
        struct vmm_vm *vm = userdata;
        struct us_error *err = NULL;

        char status[64] = "unknown";
        vm->mig.deadline = NULL;
        if (vmm_vm_running(vm) && vm->qmp) {
                /* Where it stuck, for the message. */
                struct vmm_qmp_msg *reply = NULL;
                const char *path[] = {"status", NULL};
                if (vmm_vm_qmp(vm, "query-migrate", NULL, &reply, NULL) == 0) {
                        yajl_val v = yajl_tree_get(reply->value, path, yajl_t_string);
                        snprintf(status, sizeof(status), "%s", v ? YAJL_GET_STRING(v) : "none");
                }
                vmm_qmp_msg_free(reply);
                if (!vm->mig.incoming)
                        (void)vmm_vm_qmp(vm, "migrate_cancel", NULL, NULL, NULL);
        }
        int r = us_error_msg(&err, ETIMEDOUT, "vm %s: %s did not end within %d s (QEMU: %s)",
                             vm->id, vm->mig.incoming ? "restore" : "save",
                             MIGRATE_TIMEOUT_MS / 1000, status);
        migration_end(vm, r, err);
}

/* What a save and a restore share: QEMU's state fd by name, the
 * capabilities, the watch. */
static int migration_begin(struct vmm_vm *vm, enum vmm_template_role role, int state_fd,
                           vmm_vm_migration_fn done, void *userdata, struct us_error **err)
{
        const char *what = role == VMM_TEMPLATE_CLONE ? "restore" : "save";
        int r;

        if (!vm || !done || state_fd < 0)
                return us_error_msg(err, EINVAL, "template %s: no vm, state fd or callback", what);
        if (vm->role != role)
                return us_error_msg(err, EINVAL, "vm %s: template %s: not started as a %s", vm->id,
                                    what, role == VMM_TEMPLATE_CLONE ? "clone" : "template");
        if (vm->mig.active)
                return us_error_msg(err, EBUSY, "vm %s: a save or restore is under way", vm->id);
        /* x-ignore-shared: the RAM (a shared file in the template, the
         * same file private in a clone) is not in the stream. events: the
         * end comes as a MIGRATION event, nothing polls. */
        r = vmm_vm_qmp(vm, "migrate-set-capabilities",
                       "{\"capabilities\":[{\"capability\":\"x-ignore-shared\",\"state\":true},"
                       "{\"capability\":\"events\",\"state\":true}]}",
                       NULL, err);
        if (r < 0)
                return us_error_wrap(err, r, "template %s", what);
        /* spawn=deny rules out exec:; an fd QEMU gets over the monitor
         * needs no spawn and no path in its root. */
        if (!vm->qmp)
                return us_error_msg(err, ENOTCONN, "vm %s: qemu's monitor is closed", vm->id);
        r = vmm_qmp_execute_fd(vm->qmp, "getfd", "{\"fdname\":\"" MIGRATE_FD_NAME "\"}", state_fd,
                               NULL, err);
        qmp_drain(vm);
        if (r < 0)
                return us_error_wrap(err, r, "vm %s: template %s: pass the state file", vm->id,
                                     what);
        r = us_loop_add_timer(vm->loop, MIGRATE_TIMEOUT_MS, migration_timeout, vm,
                              &vm->mig.deadline, err);
        if (r < 0)
                return r;
        vm->mig.active = true;
        vm->mig.incoming = role == VMM_TEMPLATE_CLONE;
        vm->mig.state = MIG_RUNNING;
        vm->mig.done = done;
        vm->mig.userdata = userdata;
        return 0;
}

int vmm_vm_template_save(struct vmm_vm *vm, int state_fd, vmm_vm_migration_fn done, void *userdata,
                         struct us_error **err)
{
        int r = migration_begin(vm, VMM_TEMPLATE_SOURCE, state_fd, done, userdata, err);
        if (r < 0)
                return r;
        /* Stopped first: what is saved is one instant of the guest. Then
         * migrate answers at once; the migration thread does the rest. */
        r = vmm_vm_pause(vm, err);
        if (r >= 0)
                r = vmm_vm_qmp(vm, "migrate", "{\"uri\":\"fd:" MIGRATE_FD_NAME "\"}", NULL, err);
        if (r < 0) {
                migration_clear(vm);
                return us_error_wrap(err, r, "template save");
        }
        return 0;
}

int vmm_vm_template_restore(struct vmm_vm *vm, int state_fd, vmm_vm_migration_fn done,
                            void *userdata, struct us_error **err)
{
        int r = migration_begin(vm, VMM_TEMPLATE_CLONE, state_fd, done, userdata, err);
        if (r < 0)
                return r;
        /* Not waited for: QEMU loads the whole state from a file before it
         * answers (a file read never yields its coroutine). The answer and
         * the MIGRATION event reach qmp_message. */
        r = vmm_qmp_send(vm->qmp, "migrate-incoming", "{\"uri\":\"fd:" MIGRATE_FD_NAME "\"}",
                         vm->mig.reply_id, err);
        if (r < 0) {
                migration_clear(vm);
                return us_error_wrap(err, r, "vm %s: template restore", vm->id);
        }
        return 0;
}
