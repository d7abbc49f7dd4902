/* SPDX-License-Identifier: Apache-2.0 */
/* The pod's shared PID namespace (shareProcessNamespace): what the pause
 * container is under runc. Its init must outlive every container in it (when
 * a PID namespace's init dies, the kernel kills the rest and forbids new
 * members), and it reaps what the containers orphan. It is a fork of the
 * agent that gives up everything the containers could reach through it:
 * they see it as their PID 1, and /proc/1/root of a process with
 * CAP_SYS_PTRACE (a privileged container) would otherwise be the agent's
 * root, with every container's rootfs under /run/unishim. */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "agent.h"
#include "base/cleanup.h"

#define NOBODY 65534

/* The holder's own empty, read-only root in a mount namespace of its own,
 * no fds, no capabilities, no way back (no_new_privs, non-dumpable). */
static int holder_confine(void)
{
        if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0 ||
            mount("tmpfs", "/tmp", "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC | MS_RDONLY,
                  "size=4k,mode=0555") < 0 ||
            chdir("/tmp") < 0 || syscall(SYS_pivot_root, ".", ".") < 0 ||
            umount2(".", MNT_DETACH) < 0 || chdir("/") < 0)
                return -errno;
        if (setgroups(0, NULL) < 0 || setresgid(NOBODY, NOBODY, NOBODY) < 0 ||
            setresuid(NOBODY, NOBODY, NOBODY) < 0) /* clears every capability */
                return -errno;
        if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0 || prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) < 0)
                return -errno;
        (void)prctl(PR_SET_NAME, "pause", 0, 0, 0);
        return 0;
}

_Noreturn static void holder_main(int ready_fd)
{
        /* SIGCHLD stays blocked: sigwaitinfo takes it. The others, sent
         * from the agent's namespace to an init without handlers, are
         * dropped by the kernel anyway; only SIGKILL ends it. */
        sigset_t all;
        sigfillset(&all);
        (void)sigprocmask(SIG_SETMASK, &all, NULL);
        /* Everything of the agent's but the ready pipe. */
        if (ready_fd > 3)
                (void)syscall(SYS_close_range, 3, ready_fd - 1, 0);
        (void)syscall(SYS_close_range, ready_fd + 1, ~0U, 0);
        int r = holder_confine();
        char ok = r < 0 ? 'E' : 'K';
        if (write(ready_fd, &ok, 1) != 1 || r < 0)
                _exit(1);
        close(ready_fd);
        sigset_t chld;
        sigemptyset(&chld);
        sigaddset(&chld, SIGCHLD);
        for (;;) {
                siginfo_t si;
                if (sigwaitinfo(&chld, &si) < 0 && errno != EINTR)
                        pause();
                while (waitpid(-1, NULL, WNOHANG) > 0)
                        ;
        }
}

int agent_pidns_spawn(pid_t *ret_pid, struct us_error **err)
{
        int p[2];
        if (pipe2(p, O_CLOEXEC) < 0)
                return us_errorf(err, errno, "pod PID namespace: pipe");
        _cleanup_close_ int rd = p[0];
        _cleanup_close_ int wr = p[1];
        /* fork semantics (no stack given), in a new PID and mount namespace. */
        pid_t pid = (pid_t)syscall(SYS_clone, CLONE_NEWPID | CLONE_NEWNS | SIGCHLD, NULL, NULL,
                                   NULL, NULL);
        if (pid < 0)
                return us_errorf(err, errno, "pod PID namespace: clone");
        if (pid == 0) {
                close(rd);
                holder_main(wr);
        }
        wr = us_close(wr);
        /* A few syscalls away: the reply comes at once, or EOF if it died. */
        char ok = 0;
        ssize_t n;
        do
                n = read(rd, &ok, 1);
        while (n < 0 && errno == EINTR);
        if (n != 1 || ok != 'K') {
                (void)kill(pid, SIGKILL);
                (void)waitpid(pid, NULL, 0);
                return us_error_msg(err, EIO,
                                    "pod PID namespace: its init could not confine itself");
        }
        *ret_pid = pid;
        return 0;
}
