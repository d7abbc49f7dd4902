/* SPDX-License-Identifier: Apache-2.0 */
/* The container kind: libunishim's namespaced engine on the host. */
#include <errno.h>
#include <signal.h>

#include "backend.h"
#include "cgroup/cgroup.h"

static int container_create(const struct shim_backend_env *env, void *task_cookie,
                            const struct shim_pod_decision *decision, void **ret_impl, int *ret_pty,
                            struct shim_op *op, struct us_error **err)
{
        (void)op;
        (void)task_cookie;
        /* The engine holds what init would lose to an early TERM on the
         * shim's loop (signal-hold.h). */
        struct us_container_config cfg = decision->container;
        cfg.loop = env->loop;
        struct us_container *c = NULL;
        int r = us_container_create(&cfg, &c, ret_pty, err);
        if (r < 0)
                return r;
        *ret_impl = c;
        return 0;
}

static pid_t container_pid(void *impl)
{
        return us_container_pid(impl);
}

static int container_start(void *impl, struct shim_op *op, struct us_error **err)
{
        (void)op;
        return us_container_start(impl, err);
}

static int container_exec(void *impl, const char *exec_id, const struct us_oci_process *p,
                          const char *json, size_t json_len, const struct us_stdio *stdio,
                          pid_t *ret_pid, int *ret_pty, struct shim_op *op, struct us_error **err)
{
        (void)op;
        (void)exec_id;
        (void)json;
        (void)json_len;
        return us_container_exec(impl, p, stdio, ret_pid, ret_pty, err);
}

static int container_kill(void *impl, int sig, bool all, struct shim_op *op, struct us_error **err)
{
        (void)op;
        return us_container_kill(impl, sig, all, err);
}

static int container_kill_exec(void *impl, const char *exec_id, pid_t pid, int sig,
                               struct shim_op *op, struct us_error **err)
{
        (void)op;
        (void)impl;
        if (kill(pid, sig) < 0)
                return us_errorf(err, errno, "signal exec %s", exec_id);
        return 0;
}

static int container_pause(void *impl, struct shim_op *op, struct us_error **err)
{
        (void)op;
        return us_container_pause(impl, err);
}

static int container_resume(void *impl, struct shim_op *op, struct us_error **err)
{
        (void)op;
        return us_container_resume(impl, err);
}

static int container_update(void *impl, const struct us_oci_resources *res, const char *json,
                            size_t json_len, struct shim_op *op, struct us_error **err)
{
        (void)op;
        (void)json;
        (void)json_len;
        return us_container_update(impl, res, err);
}

static struct us_cgroup *cgroup_of(void *impl, struct us_error **err)
{
        struct us_cgroup *cg = us_container_cgroup(impl);
        if (!cg)
                us_error_msg(err, ENOENT, "container has no cgroup");
        return cg;
}

static int container_stats(void *impl, uint8_t **ret, size_t *ret_len, struct shim_op *op,
                           struct us_error **err)
{
        (void)op;
        struct us_cgroup *cg = cgroup_of(impl, err);
        return cg ? us_cgroup_stats_packed(cg, ret, ret_len, err) : -ENOENT;
}

static int container_pids(void *impl, pid_t **ret, size_t *ret_n, struct shim_op *op,
                          struct us_error **err)
{
        (void)op;
        struct us_cgroup *cg = cgroup_of(impl, err);
        return cg ? us_cgroup_pids(cg, ret, ret_n, err) : -ENOENT;
}

static int container_oom_watch(void *impl, int *ret_fd, uint64_t *ret_count, struct us_error **err)
{
        struct us_cgroup *cg = cgroup_of(impl, err);
        if (!cg)
                return -ENOENT;
        uint64_t count = 0;
        int r = us_cgroup_oom_count(cg, &count, err);
        if (r < 0)
                return r;
        r = us_cgroup_oom_fd(cg, ret_fd, err);
        if (r < 0)
                return r;
        *ret_count = count;
        return 0;
}

static int container_oom_event(void *impl, int fd, uint64_t *count, bool *ret_oom,
                               struct us_error **err)
{
        struct us_cgroup *cg = cgroup_of(impl, err);
        return cg ? us_cgroup_oom_event(cg, fd, count, ret_oom, err) : -ENOENT;
}

static int container_destroy(void *impl, struct us_error **err)
{
        return us_container_destroy(impl, err);
}

static void container_free(void *impl)
{
        us_container_free(impl);
}

const struct shim_backend shim_backend_container = {
        .name = "container",
        .host_pty = true,
        .create = container_create,
        .pid = container_pid,
        .start = container_start,
        .exec = container_exec,
        .kill = container_kill,
        .kill_exec = container_kill_exec,
        .pause = container_pause,
        .resume = container_resume,
        .update = container_update,
        .stats = container_stats,
        .pids = container_pids,
        .oom_watch = container_oom_watch,
        .oom_event = container_oom_event,
        .destroy = container_destroy,
        .free = container_free,
};
