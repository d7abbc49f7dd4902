/* SPDX-License-Identifier: Apache-2.0 */
/* The container's init before execve: runs in the cloned child. */
#include "engine-internal.h"

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/cleanup.h"

static struct engine_msg *child_msg(void)
{
        /* The parent's heap is ours after clone: allocate, never freed (we
         * exec or _exit). */
        return malloc(sizeof(struct engine_msg));
}

static int wait_for(int sync_fd, enum engine_msg_type type, struct engine_msg *m,
                    struct us_error **err)
{
        int r = engine_expect(sync_fd, type, m);
        if (r == -EPIPE)
                _exit(1); /* the parent gave up on us */
        if (r < 0)
                return us_errorf(err, -r, "read from parent");
        return 0;
}

/* Joins/creates namespaces; afterwards the caller is the process that
 * becomes init (the intermediate, if any, has exited). */
static int enter_namespaces(struct engine_init_ctx *ctx, struct engine_msg *m,
                            struct us_error **err)
{
        int r;
        if ((r = engine_ns_join(&ctx->ns, err)) < 0)
                return r;
        engine_ns_plan_close(&ctx->ns);
        if (ctx->ns.unshare_flags && unshare(ctx->ns.unshare_flags) < 0)
                return us_errorf(err, errno, "unshare namespaces %#x", ctx->ns.unshare_flags);
        if (ctx->ns.new_userns) {
                if ((r = engine_send(ctx->sync_fd, ENGINE_MSG_USERMAP, 0, 0, NULL, -1)) < 0)
                        return us_errorf(err, -r, "request id maps");
                if ((r = wait_for(ctx->sync_fd, ENGINE_MSG_ACK, m, err)) < 0)
                        return r;
                if (setresgid(0, 0, 0) < 0 || setresuid(0, 0, 0) < 0)
                        return us_errorf(err, errno, "become root in the user namespace");
        }
        if (ctx->ns.need_fork) {
                pid_t pid = fork();
                if (pid < 0)
                        return us_errorf(err, errno, "fork into pid namespace");
                if (pid > 0) {
                        /* Intermediate: report the pid (as our pid ns sees
                         * it, which is the caller's) and leave; init is
                         * reparented to the subreaper caller. */
                        (void)engine_send(ctx->sync_fd, ENGINE_MSG_PID, 0, pid, NULL, -1);
                        _exit(0);
                }
                if ((r = wait_for(ctx->sync_fd, ENGINE_MSG_GO, m, err)) < 0)
                        return r;
        }
        return 0;
}

_Noreturn void engine_init_main(struct engine_init_ctx *ctx)
{
        struct us_error *err = NULL;
        const struct us_oci_spec *spec = ctx->spec;
        const struct us_oci_process *proc = spec->process;
        struct engine_msg *m = child_msg();
        int sync_fd = ctx->sync_fd;
        int r;

        if (!m)
                engine_child_fail(sync_fd, -ENOMEM, NULL);
        /* The caller may block signals for its own loop (signalfd): start
         * from a clean mask, as runc's init does. */
        engine_child_reset_signals();

        /* The parent enters us into the cgroup, then says go. */
        if ((r = wait_for(sync_fd, ENGINE_MSG_GO, m, &err)) < 0)
                engine_child_fail(sync_fd, r, &err);

        /* Host files first, while the host's root and /proc are ours. */
        int devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
        if (devnull < 0)
                engine_child_fail(sync_fd, us_errorf(&err, errno, "open /dev/null"), &err);
        if ((r = enter_namespaces(ctx, m, &err)) < 0)
                engine_child_fail(sync_fd, r, &err);
        if (setsid() < 0)
                engine_child_fail(sync_fd, us_errorf(&err, errno, "setsid"), &err);
        if (!proc->terminal && (r = engine_setup_stdio(&ctx->cfg->stdio, devnull, &err)) < 0)
                engine_child_fail(sync_fd, r, &err);
        int keep[] = {sync_fd, devnull};
        engine_close_fds_except(keep, US_ELEMENTSOF(keep));
        if ((r = engine_set_rlimits(proc, &err)) < 0 ||
            (r = engine_set_oom_score_adj(proc, &err)) < 0)
                engine_child_fail(sync_fd, r, &err);

        umask(0); /* device and directory modes are exact */
        if ((r = engine_rootfs_prepare(ctx, &err)) < 0)
                engine_child_fail(sync_fd, r, &err);

        const struct us_oci_hooks *h = &spec->hooks;
        if (engine_hooks_any(&h->prestart) || engine_hooks_any(&h->create_runtime) ||
            engine_hooks_any(&h->create_container) || engine_hooks_any(&h->start_container)) {
                /* The parent runs createRuntime hooks and sends the state. */
                if ((r = engine_send(sync_fd, ENGINE_MSG_HOOKS, 0, 0, NULL, -1)) < 0)
                        engine_child_fail(sync_fd, us_errorf(&err, -r, "request hooks"), &err);
                if ((r = wait_for(sync_fd, ENGINE_MSG_ACK, m, &err)) < 0)
                        engine_child_fail(sync_fd, r, &err);
                if ((r = engine_hooks_run(&h->create_container, "createContainer", m->text, &err)) <
                    0)
                        engine_child_fail(sync_fd, r, &err);
        }

        if ((r = engine_rootfs_pivot(ctx->cfg->rootfs, &err)) < 0 ||
            (r = engine_rootfs_finalize(ctx, &err)) < 0)
                engine_child_fail(sync_fd, r, &err);
        devnull = us_close(devnull);

        if (proc->terminal && (r = engine_pty_setup(sync_fd, proc, &err)) < 0)
                engine_child_fail(sync_fd, r, &err);

        struct engine_proc_opts o = {.p = proc,
                                     .seccomp = spec->linux_.seccomp,
                                     .apparmor_enabled = ctx->apparmor_enabled,
                                     .cap_last_cap = ctx->cap_last_cap,
                                     .in_userns = ctx->in_userns};
        if ((r = engine_process_prepare(&o, &err)) < 0)
                engine_child_fail(sync_fd, r, &err);

        if ((r = engine_send(sync_fd, ENGINE_MSG_READY, 0, 0, NULL, -1)) < 0)
                _exit(127);
        if ((r = wait_for(sync_fd, ENGINE_MSG_START, m, &err)) < 0)
                engine_child_fail(sync_fd, r, &err);
        if (engine_hooks_any(&h->start_container) &&
            (r = engine_hooks_run(&h->start_container, "startContainer", m->text, &err)) < 0)
                engine_child_fail(sync_fd, r, &err);
        r = engine_process_exec(&o, &err);
        engine_child_fail(sync_fd, r, &err);
}
