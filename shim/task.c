/* SPDX-License-Identifier: Apache-2.0 */
#include "task.h"

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "base/cleanup.h"
#include "containerd/events.pb-c.h"
#include "containerd/shim.pb-c.h"
#include "backend.h"
#include "events.h"
#include "base/log.h"

struct shim_task *shim_task_find(struct shim *shim, const char *id)
{
        for (struct shim_task *t = shim->tasks; t; t = t->next)
                if (strcmp(t->id, id) == 0)
                        return t;
        return NULL;
}

struct shim_process *shim_task_process(struct shim_task *t, const char *exec_id)
{
        if (!exec_id || !*exec_id)
                return &t->init;
        for (struct shim_process *p = t->execs; p; p = p->next)
                if (strcmp(p->exec_id, exec_id) == 0)
                        return p;
        return NULL;
}

static void reply_wait(struct us_ttrpc_call *call, const struct shim_process *p)
{
        Google__Protobuf__Timestamp ts = shim_timestamp(&p->exited_at);
        Containerd__Task__V2__WaitResponse resp = CONTAINERD__TASK__V2__WAIT_RESPONSE__INIT;
        resp.exit_status = p->exit_status;
        resp.exited_at = &ts;
        us_ttrpc_call_reply(call, &resp.base);
}

static void answer_waiters(struct shim_process *p)
{
        while (p->waiters) {
                struct shim_waiter *w = p->waiters;
                p->waiters = w->next;
                reply_wait(w->call, p);
                free(w);
        }
}

static void fail_waiters(struct shim_process *p)
{
        while (p->waiters) {
                struct shim_waiter *w = p->waiters;
                p->waiters = w->next;
                us_ttrpc_call_fail(w->call, US_GRPC_NOT_FOUND, "process deleted");
                free(w);
        }
}

void shim_process_add_waiter(struct shim_process *p, struct us_ttrpc_call *call)
{
        if (p->status == SHIM_PROCESS_STOPPED) {
                reply_wait(call, p);
                return;
        }
        struct shim_waiter *w = calloc(1, sizeof(*w));
        if (!w) {
                us_ttrpc_call_fail(call, US_GRPC_RESOURCE_EXHAUSTED, "out of memory");
                return;
        }
        w->call = call;
        w->next = p->waiters;
        p->waiters = w;
}

struct shim_process *shim_process_free(struct shim_process *p)
{
        if (!p)
                return NULL;
        fail_waiters(p);
        shim_stdio_free(p->stdio);
        us_oci_process_free(p->exec_spec);
        free(p->exec_spec_json);
        free(p->exec_id);
        free(p->stdin_path);
        free(p->stdout_path);
        free(p->stderr_path);
        if (p != &p->task->init)
                free(p);
        return NULL;
}

struct shim_task *shim_task_free(struct shim_task *t)
{
        if (!t)
                return NULL;
        while (t->execs) {
                struct shim_process *p = t->execs;
                t->execs = p->next;
                shim_process_free(p);
        }
        shim_process_free(&t->init);
        us_loop_source_remove(t->oom_watch);
        us_close(t->oom_fd);
        if (t->impl)
                t->backend->free(t->impl);
        free(t->id);
        free(t->bundle);
        free(t);
        return NULL;
}

static void record_exit(struct shim_process *p, uint32_t exit_status)
{
        struct shim_task *t = p->task;
        p->status = SHIM_PROCESS_STOPPED;
        p->exit_status = exit_status;
        clock_gettime(CLOCK_REALTIME, &p->exited_at);
        if (p->stdio)
                shim_stdio_drain(p->stdio);

        if (p == &t->init && t->impl) {
                /* Without a private pid namespace, the kernel does not kill
                 * the rest of the container with its init: we do, as runc's
                 * shim does. */
                (void)t->backend->kill(t->impl, SIGKILL, true, NULL, NULL);
        }

        Google__Protobuf__Timestamp ts = shim_timestamp(&p->exited_at);
        Containerd__Events__TaskExit ev = CONTAINERD__EVENTS__TASK_EXIT__INIT;
        ev.container_id = t->id;
        ev.id = p->exec_id ? p->exec_id : t->id;
        ev.pid = (uint32_t)p->pid;
        ev.exit_status = p->exit_status;
        ev.exited_at = &ts;
        shim_publish(t->shim, "/tasks/exit", &ev.base);
        answer_waiters(p);
}

void shim_process_start_failed(struct shim_process *p)
{
        p->status = SHIM_PROCESS_STOPPED;
        p->exit_status = 128 + SIGKILL;
        clock_gettime(CLOCK_REALTIME, &p->exited_at);
        /* Nothing will write its output: without our ends containerd sees
         * EOF (its failed Start waits for its I/O before it returns). */
        p->stdio = shim_stdio_free(p->stdio);
        answer_waiters(p);
}

void shim_process_exited(struct shim_process *p, int wait_status)
{
        uint32_t status = 255;
        if (WIFEXITED(wait_status))
                status = (uint32_t)WEXITSTATUS(wait_status);
        else if (WIFSIGNALED(wait_status))
                status = 128u + (uint32_t)WTERMSIG(wait_status);
        record_exit(p, status);
}

void shim_task_process_exited(void *task_cookie, const char *exec_id, uint32_t exit_status)
{
        struct shim_task *t = task_cookie;
        if (t->creating)
                return; /* its create fails: containerd hears of it there */
        struct shim_process *p = shim_task_process(t, exec_id);
        if (p && p->status != SHIM_PROCESS_STOPPED)
                record_exit(p, exit_status);
}

void shim_task_oom(void *task_cookie)
{
        struct shim_task *t = task_cookie;
        if (t->creating)
                return;
        Containerd__Events__TaskOOM ev = CONTAINERD__EVENTS__TASK_OOM__INIT;
        ev.container_id = t->id;
        shim_publish(t->shim, "/tasks/oom", &ev.base);
}

static struct shim_process *find_pid(struct shim *shim, pid_t pid)
{
        for (struct shim_task *t = shim->tasks; t; t = t->next) {
                if (t->init.pid == pid && t->init.status != SHIM_PROCESS_STOPPED)
                        return &t->init;
                for (struct shim_process *p = t->execs; p; p = p->next)
                        if (p->pid == pid && p->status != SHIM_PROCESS_STOPPED)
                                return p;
        }
        return NULL;
}

void shim_reap(struct shim *shim)
{
        for (;;) {
                int status;
                pid_t pid = waitpid(-1, &status, WNOHANG);
                if (pid <= 0)
                        return;
                if (shim->backend && shim->backend->child_exited && shim->backend_pod &&
                    shim->backend->child_exited(shim->backend_pod, pid, status))
                        continue;
                struct shim_process *p = find_pid(shim, pid);
                if (p)
                        shim_process_exited(p, status);
                /* Others are reparented orphans of the containers (we are
                 * the subreaper): nothing to report. */
        }
}

void shim_publish(struct shim *shim, const char *topic, const ProtobufCMessage *msg)
{
        struct us_error *err = NULL;
        if (shim_events_publish(shim->events, topic, msg, &err) < 0)
                us_log_warn("%s", us_error_text(err));
        us_error_free(err);
}

/* After the last task is deleted, exit even if containerd never sends
 * Shutdown (it normally does, right away). */
#define IDLE_EXIT_MS 10000

static void idle_timeout(struct us_loop_source *src, void *userdata)
{
        (void)src;
        struct shim *shim = userdata;
        shim->idle_timer = NULL;
        shim_maybe_exit(shim, true);
}

void shim_maybe_exit(struct shim *shim, bool now)
{
        if (shim->tasks || shim->creating)
                return;
        if (now) {
                shim->shutting_down = true;
                us_loop_quit(shim->loop, 0);
                return;
        }
        if (!shim->idle_timer) {
                struct us_error *err = NULL;
                if (us_loop_add_timer(shim->loop, IDLE_EXIT_MS, idle_timeout, shim,
                                      &shim->idle_timer, &err) < 0)
                        us_error_free(err);
        }
}
