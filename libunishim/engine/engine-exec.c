/* SPDX-License-Identifier: Apache-2.0 */
/* us_container_exec: a new process in a running container's namespaces and
 * cgroup. */
#include "engine-internal.h"

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "base/cleanup.h"

#ifndef CLONE_NEWTIME
#define CLONE_NEWTIME 0x00000080
#endif

static const struct {
        int type;
        const char *name;
} exec_ns[] = {
        {CLONE_NEWUSER, "user"},     {CLONE_NEWIPC, "ipc"}, {CLONE_NEWUTS, "uts"},
        {CLONE_NEWNET, "net"},       {CLONE_NEWPID, "pid"}, {CLONE_NEWTIME, "time"},
        {CLONE_NEWCGROUP, "cgroup"}, {CLONE_NEWNS, "mnt"},
};

/* Every namespace of init that differs from ours gets joined: that covers
 * both the ones the container created and the ones it joined by path. */
static int plan_from_pid(pid_t pid, struct engine_ns_plan *plan, struct us_error **err)
{
        struct engine_ns_plan p = {0};
        for (size_t i = 0; i < US_ELEMENTSOF(exec_ns); i++) {
                char path[64];
                snprintf(path, sizeof(path), "/proc/%d/ns/%s", (int)pid, exec_ns[i].name);
                int fd = open(path, O_RDONLY | O_CLOEXEC);
                if (fd < 0) {
                        if (errno == ENOENT && exec_ns[i].type == CLONE_NEWTIME)
                                continue; /* kernel without time namespaces */
                        int r = us_errorf(err, errno, "open %s", path);
                        engine_ns_plan_close(&p);
                        return r;
                }
                char self[64];
                struct stat a, b;
                snprintf(self, sizeof(self), "/proc/self/ns/%s", exec_ns[i].name);
                if (fstat(fd, &a) == 0 && stat(self, &b) == 0 && a.st_ino == b.st_ino &&
                    a.st_dev == b.st_dev) {
                        us_close(fd);
                        continue;
                }
                p.join[p.n_join].type = exec_ns[i].type;
                p.join[p.n_join].fd = fd;
                p.n_join++;
                if (exec_ns[i].type == CLONE_NEWPID || exec_ns[i].type == CLONE_NEWTIME)
                        p.need_fork = true;
        }
        *plan = p;
        return 0;
}

struct exec_child_ctx {
        struct engine_ns_plan ns;
        int sync_fd;
        const struct us_stdio *stdio;
        struct engine_proc_opts opts;
};

_Noreturn static void exec_child_main(struct exec_child_ctx *ctx)
{
        struct us_error *err = NULL;
        int sync_fd = ctx->sync_fd;
        const struct us_oci_process *p = ctx->opts.p;
        int r;

        engine_child_reset_signals();

        struct engine_msg *m = malloc(sizeof(*m));
        if (!m)
                engine_child_fail(sync_fd, -ENOMEM, NULL);
        r = engine_expect(sync_fd, ENGINE_MSG_GO, m);
        if (r == -EPIPE)
                _exit(1);
        if (r < 0)
                engine_child_fail(sync_fd, us_errorf(&err, -r, "read from parent"), &err);
        free(m);

        int devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
        if (devnull < 0)
                engine_child_fail(sync_fd, us_errorf(&err, errno, "open /dev/null"), &err);
        /* oom_score_adj through the host's /proc, before leaving it. */
        if ((r = engine_set_oom_score_adj(p, &err)) < 0)
                engine_child_fail(sync_fd, r, &err);
        if ((r = engine_ns_join(&ctx->ns, &err)) < 0)
                engine_child_fail(sync_fd, r, &err);
        engine_ns_plan_close(&ctx->ns);
        if (ctx->ns.need_fork) {
                pid_t pid = fork();
                if (pid < 0)
                        engine_child_fail(sync_fd,
                                          us_errorf(&err, errno, "fork into pid namespace"), &err);
                if (pid > 0) {
                        (void)engine_send(sync_fd, ENGINE_MSG_PID, 0, pid, NULL, -1);
                        _exit(0);
                }
        }
        if (setsid() < 0)
                engine_child_fail(sync_fd, us_errorf(&err, errno, "setsid"), &err);
        if (p->terminal)
                r = engine_pty_setup(sync_fd, p, &err);
        else
                r = engine_setup_stdio(ctx->stdio, devnull, &err);
        if (r < 0)
                engine_child_fail(sync_fd, r, &err);
        devnull = us_close(devnull);
        engine_close_fds_except(&sync_fd, 1);
        if ((r = engine_set_rlimits(p, &err)) < 0 ||
            (r = engine_process_prepare(&ctx->opts, &err)) < 0)
                engine_child_fail(sync_fd, r, &err);
        r = engine_process_exec(&ctx->opts, &err);
        engine_child_fail(sync_fd, r, &err);
}

int us_container_exec(struct us_container *c, const struct us_oci_process *p,
                      const struct us_stdio *stdio, pid_t *ret_pid, int *ret_pty_master,
                      struct us_error **err)
{
        int r;
        if (!p || !p->args || !p->args[0])
                return us_error_msg(err, EINVAL, "exec in container %s: process has no args",
                                    c->id);
        if (c->pid <= 0 || c->destroyed)
                return us_error_msg(err, ESRCH, "exec in container %s: container is not running",
                                    c->id);

        struct exec_child_ctx ctx = {
                .stdio = stdio,
                .opts = {.p = p,
                         .seccomp = c->spec->linux_.seccomp,
                         .apparmor_enabled = c->apparmor_enabled,
                         .cap_last_cap = c->cap_last_cap},
        };
        for (size_t i = 0; i < c->spec->linux_.n_namespaces; i++)
                ctx.opts.in_userns |= c->spec->linux_.namespaces[i].type == CLONE_NEWUSER;
        if ((r = plan_from_pid(c->pid, &ctx.ns, err)) < 0)
                return us_error_wrap(err, r, "exec in container %s", c->id);

        int sv[2];
        if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0) {
                r = us_errorf(err, errno, "exec in container %s: socketpair", c->id);
                engine_ns_plan_close(&ctx.ns);
                return r;
        }
        bool in_cgroup = false;
        int cgfd = us_cgroup_clone_fd(c->cg);
        pid_t child = engine_clone(0, cgfd, &in_cgroup);
        if (child == 0) {
                us_close(sv[0]);
                ctx.sync_fd = sv[1];
                exec_child_main(&ctx);
        }
        int clone_errno = errno;
        us_close(cgfd);
        us_close(sv[1]);
        bool need_fork = ctx.ns.need_fork;
        engine_ns_plan_close(&ctx.ns);
        _cleanup_close_ int sync_fd = sv[0];
        if (child < 0)
                return us_errorf(err, clone_errno, "exec in container %s: fork", c->id);

        _cleanup_free_ struct engine_msg *m = malloc(sizeof(*m));
        pid_t pid = need_fork ? -1 : child;
        bool child_reaped = false;
        int pty = -1;
        if (!m)
                r = us_errorf(err, ENOMEM, "allocate");
        else if (!in_cgroup && (r = us_cgroup_enter(c->cg, child, err)) < 0)
                r = us_error_wrap(err, r, "enter cgroup");
        else if ((r = engine_send(sync_fd, ENGINE_MSG_GO, 0, 0, NULL, -1)) < 0)
                r = us_errorf(err, -r, "signal process");
        while (r >= 0) {
                int fd = -1;
                r = engine_recv(sync_fd, m, &fd);
                if (r < 0) {
                        r = us_errorf(err, -r, "read from process");
                        break;
                }
                if (r == 0)
                        break; /* execve closed the socket */
                if (m->type == ENGINE_MSG_PID && need_fork && pid < 0) {
                        pid = (pid_t)m->value;
                        int status = engine_wait_pid(child);
                        child_reaped = true;
                        if (status < 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
                                r = us_error_msg(err, ECHILD,
                                                 "intermediate process failed (status %d)", status);
                } else if (m->type == ENGINE_MSG_PTY && fd >= 0) {
                        us_close(pty);
                        pty = fd;
                } else if (m->type == ENGINE_MSG_ERROR) {
                        us_close(fd);
                        r = us_error_msg(err, m->code > 0 ? m->code : EIO, "%s", m->text);
                } else {
                        us_close(fd);
                        r = us_error_msg(err, EBADMSG, "unexpected message %u", m->type);
                }
        }
        if (r >= 0 && pid <= 0)
                r = us_error_msg(err, EPIPE, "process exited before reporting its pid");
        if (r >= 0 && p->terminal && pty < 0)
                r = us_error_msg(err, EBADMSG, "process sent no pty master");
        if (r < 0) {
                us_close(pty);
                sync_fd = us_close(sync_fd);
                if (need_fork && !child_reaped) {
                        (void)kill(child, SIGKILL);
                        (void)engine_wait_pid(child);
                        child_reaped = true;
                }
                if (pid > 0) {
                        (void)kill(pid, SIGKILL);
                        (void)engine_wait_pid(pid);
                } else if (!child_reaped) {
                        (void)kill(child, SIGKILL);
                        (void)engine_wait_pid(child);
                }
                return us_error_wrap(err, r, "exec in container %s", c->id);
        }
        *ret_pid = pid;
        if (ret_pty_master)
                *ret_pty_master = pty;
        else
                us_close(pty);
        return 0;
}
