/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/*
 * The shim's model of its tasks: a task is one container (its init process)
 * plus the processes exec'd into it. Processes move CREATED -> RUNNING ->
 * STOPPED; only the reaper moves them to STOPPED.
 */

#include <stdbool.h>
#include <sys/types.h>
#include <time.h>

#include "backend.h"
#include "engine/engine.h"
#include "shim.h"
#include "task-io.h"
#include "ttrpc/ttrpc.h"

enum shim_process_status {
        SHIM_PROCESS_CREATED,
        SHIM_PROCESS_RUNNING,
        SHIM_PROCESS_STOPPED,
};

struct shim_waiter {
        struct shim_waiter *next;
        struct us_ttrpc_call *call;
};

struct shim_process {
        struct shim_process *next; /* in task->execs */
        struct shim_task *task;
        char *exec_id; /* NULL for the init process */
        pid_t pid;
        enum shim_process_status status;
        bool starting; /* its Start is with the backend */
        uint32_t exit_status;
        struct timespec exited_at;
        char *stdin_path;
        char *stdout_path;
        char *stderr_path;
        bool terminal;
        struct shim_stdio *stdio;
        struct us_stdio stdio_fds;        /* what the process gets */
        struct us_oci_process *exec_spec; /* exec only, until started */
        char *exec_spec_json;             /* ... and the text it was parsed from */
        size_t exec_spec_json_len;
        struct shim_waiter *waiters; /* pending Wait calls */
};

struct shim_task {
        struct shim_task *next;
        struct shim *shim;
        char *id;
        char *bundle;
        const struct shim_backend *backend;
        void *impl; /* the backend's per-task object */
        struct shim_process init;
        struct shim_process *execs;
        bool paused;
        bool rootfs_mounted;
        bool creating; /* containerd does not know it yet: no events */
        int oom_fd;
        struct us_loop_source *oom_watch;
        uint64_t oom_count;
};

struct shim_task *shim_task_find(struct shim *shim, const char *id);
/* The init process when exec_id is empty/NULL, else that exec; NULL if none. */
struct shim_process *shim_task_process(struct shim_task *t, const char *exec_id);

/* Frees a task that is no longer in shim->tasks; fails its waiters. */
struct shim_task *shim_task_free(struct shim_task *t);
struct shim_process *shim_process_free(struct shim_process *p);

/* A process whose start failed: stopped from now on (exit status 137, as
 * for a created process that is deleted), its output closed, its Wait calls
 * answered (containerd waits on them before it deletes it, as runc's shim
 * answers them), no /tasks/exit event: containerd had the failure from
 * Start. */
void shim_process_start_failed(struct shim_process *p);
/* Records an exit (a waitpid status): status, time, event, Wait replies. */
void shim_process_exited(struct shim_process *p, int wait_status);

/* The same for an exit a backend learned itself (exit_status: the code, or
 * 128 + signal). task_cookie is the struct shim_task. */
void shim_task_process_exited(void *task_cookie, const char *exec_id, uint32_t exit_status);

/* Publishes TaskOOM for the task. */
void shim_task_oom(void *task_cookie);

/* Adds a Wait call; answers at once if the process already stopped. */
void shim_process_add_waiter(struct shim_process *p, struct us_ttrpc_call *call);
