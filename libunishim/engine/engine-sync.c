/* SPDX-License-Identifier: Apache-2.0 */
/* Parent <-> child messages of the container engine over a SOCK_SEQPACKET pair. */
#include "engine-internal.h"

#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "base/cleanup.h"
#include "base/fs-util.h"

int engine_send(int fd, enum engine_msg_type type, int code, int64_t value, const char *text,
                int pass_fd)
{
        struct {
                uint32_t type;
                int32_t code;
                int64_t value;
        } hdr = {.type = type, .code = code, .value = value};
        size_t tlen = text ? strnlen(text, ENGINE_MSG_TEXT_MAX - 1) : 0;
        char nul = 0;
        struct iovec iov[3] = {
                {.iov_base = &hdr, .iov_len = sizeof(hdr)},
                {.iov_base = (void *)text, .iov_len = tlen},
                {.iov_base = &nul, .iov_len = 1},
        };
        _Static_assert(offsetof(struct engine_msg, text) == 16, "engine_msg layout");
        ssize_t n = us_sendmsg_fds(fd, iov, 3, &pass_fd, pass_fd >= 0 ? 1 : 0, 0);
        return n < 0 ? (int)n : 0;
}

int engine_recv(int fd, struct engine_msg *m, int *ret_fd)
{
        struct iovec iov = {.iov_base = m, .iov_len = sizeof(*m)};
        int got_fd = -1;
        size_t n_fds;
        if (ret_fd)
                *ret_fd = -1;
        ssize_t n = us_recvmsg_fds(fd, &iov, 1, &got_fd, 1, &n_fds, 0);
        if (n < 0)
                return (int)n;
        if (n == 0) {
                us_close(got_fd);
                return 0;
        }
        if ((size_t)n < offsetof(struct engine_msg, text) + 1) {
                us_close(got_fd);
                return -EBADMSG;
        }
        ((char *)m)[n - 1] = 0;
        if (ret_fd)
                *ret_fd = got_fd;
        else
                us_close(got_fd);
        return 1;
}

int engine_expect(int fd, enum engine_msg_type type, struct engine_msg *m)
{
        int r = engine_recv(fd, m, NULL);
        if (r < 0)
                return r;
        if (r == 0)
                return -EPIPE;
        if (m->type != type)
                return -EBADMSG;
        return 0;
}

_Noreturn void engine_child_fail(int sync_fd, int r, struct us_error **errp)
{
        /* errp, not *errp: in engine_child_fail(fd, us_errorf(&err, ...), err)
         * the argument order of evaluation would be unspecified. */
        struct us_error *err = errp ? *errp : NULL;
        int code = err ? err->code : (r < 0 ? -r : EIO);
        const char *text = err ? us_error_text(err) : strerror(code);
        (void)engine_send(sync_fd, ENGINE_MSG_ERROR, code, 0, text, -1);
        _exit(127);
}

int engine_wait_pid(pid_t pid)
{
        int status;
        for (;;) {
                pid_t p = waitpid(pid, &status, __WALL);
                if (p == pid)
                        return status;
                if (p < 0 && errno != EINTR)
                        return -errno;
        }
}

#ifndef CLONE_INTO_CGROUP
#define CLONE_INTO_CGROUP 0x200000000ULL
#endif

/* struct clone_args up to its cgroup field (CLONE_ARGS_SIZE_VER2), spelled
 * out: <linux/sched.h> does not mix with glibc's <sched.h>. */
struct clone3_args {
        uint64_t flags, pidfd, child_tid, parent_tid, exit_signal, stack, stack_size, tls, set_tid,
                set_tid_size, cgroup;
};

pid_t engine_clone(int flags, int cgroup_fd, bool *ret_in_cgroup)
{
        *ret_in_cgroup = false;
#ifdef SYS_clone3
        if (cgroup_fd >= 0) {
                /* Entering the cgroup at birth skips a migration: a write to
                 * cgroup.procs costs the caller a context switch and the
                 * kernel a pass over the task's css_set. */
                struct clone3_args args = {
                        .flags = (uint64_t)(unsigned)flags | CLONE_INTO_CGROUP,
                        .exit_signal = SIGCHLD,
                        .cgroup = (uint64_t)cgroup_fd,
                };
                long pid = syscall(SYS_clone3, &args, sizeof(args));
                if (pid >= 0) {
                        *ret_in_cgroup = pid > 0;
                        return (pid_t)pid;
                }
        }
#else
        (void)cgroup_fd;
#endif
        /* Like crun's syscall_clone: no new stack, so the child continues
         * here with a copy of the address space, as after fork(). */
        return (pid_t)syscall(SYS_clone, (unsigned long)(flags | SIGCHLD), 0, 0, 0, 0);
}
