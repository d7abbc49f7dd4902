/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/*
 * One operations table per isolation kind (cri/policy.h's enum
 * cri_isolation). The Task service speaks only to these; a kind whose slot
 * is NULL is "not available in this build".
 *
 * Every op takes the backend's own per-task object (impl) made by create.
 * Errors: negative errno + us_error, as everywhere.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "containerd/cgroups-v1-metrics.pb-c.h"
#include "engine.h"
#include "error.h"
#include "oci-spec.h"
#include "policy.h"

/* What the shim gives a backend: its loop, a per-pod slot, and the way
 * back for exits and OOM kills the backend learns of itself (the VM kinds
 * hear of them from their guest, not from waitpid). */
struct shim_backend_env {
        struct us_loop *loop;
        const struct cri_config *config; /* the operator's, for the pod's life */
        const char *namespace;           /* containerd's: ids are unique only within it */
        bool debug;                      /* containerd runs the shim with -debug */
        /* The backend's per-pod object; one shim serves one pod. The backend
         * creates it with the pod's first task and frees it in pod_free. */
        void **pod;
        void (*process_exited)(void *task_cookie, const char *exec_id, uint32_t exit_status);
        void (*oom)(void *task_cookie);
};

struct shim_backend {
        const char *name;
        /* With a terminal, does the process get a pty on this host (which
         * the shim pumps)? VM kinds keep the pty in the guest. */
        bool host_pty;
        /* Creates the task's init process up to "created". cfg->spec moves
         * into impl on success. *ret_pty is a pty master or -1. task_cookie
         * is passed back to env's callbacks. */
        int (*create)(const struct shim_backend_env *env, void *task_cookie,
                      const struct us_container_config *cfg, void **ret_impl, int *ret_pty,
                      struct us_error **err);
        pid_t (*pid)(void *impl);
        int (*start)(void *impl, struct us_error **err);
        /* p is the parsed process, json the runtime-spec Process text it
         * came from (VM kinds pass it on to their guest). */
        int (*exec)(void *impl, const char *exec_id, const struct us_oci_process *p,
                    const char *json, size_t json_len, const struct us_stdio *stdio, pid_t *ret_pid,
                    int *ret_pty, struct us_error **err);
        /* Signals the init (exec_id NULL), or with all every process. */
        int (*kill)(void *impl, int sig, bool all, struct us_error **err);
        /* Signals one exec'd process. -ESRCH when it is gone. */
        int (*kill_exec)(void *impl, const char *exec_id, pid_t pid, int sig,
                         struct us_error **err);
        /* Resizes a guest-side terminal; NULL when ptys are on the host. */
        int (*resize)(void *impl, const char *exec_id, unsigned width, unsigned height,
                      struct us_error **err);
        /* Stdin of a process reached EOF (CloseIO); NULL when the process
         * reads the shim's pipe directly. */
        int (*close_stdin)(void *impl, const char *exec_id, struct us_error **err);
        int (*pause)(void *impl, struct us_error **err);
        int (*resume)(void *impl, struct us_error **err);
        int (*update)(void *impl, const struct us_oci_resources *res, const char *json,
                      size_t json_len, struct us_error **err);
        /* containerd's io.containerd.cgroups.v1.Metrics, packed; *ret is
         * malloc()ed, owned by the caller. */
        int (*stats)(void *impl, uint8_t **ret, size_t *ret_len, struct us_error **err);
        int (*pids)(void *impl, pid_t **ret, size_t *ret_n, struct us_error **err);
        /* An fd that becomes readable on OOM trouble (-ENOTSUP: none). */
        int (*oom_watch)(void *impl, int *ret_fd, uint64_t *ret_count, struct us_error **err);
        int (*oom_event)(void *impl, int fd, uint64_t *count, bool *ret_oom, struct us_error **err);
        /* After init is reaped: removes what is left. Idempotent. */
        int (*destroy)(void *impl, struct us_error **err);
        void (*free)(void *impl);
        /* A child the shim reaped: true if it was the backend's own (a VM,
         * a helper). NULL: the backend has no children of its own. */
        bool (*child_exited)(void *pod, pid_t pid, int wait_status);
        /* Frees the per-pod object when the shim exits. */
        void (*pod_free)(void *pod);
        /* For the containers a VM kind leaves on the host next to its VM
         * (mesh sidecars, shim/sidecar.h): the pod's network namespace and
         * hostname. -ENOENT when the pod has no network namespace. NULL:
         * the kind runs every container of its pod itself. */
        int (*host_namespaces)(void *pod, const char **ret_netns, const char **ret_hostname,
                               struct us_error **err);
};

extern const struct shim_backend shim_backend_container;
extern const struct shim_backend shim_backend_sandbox;

/* The backend of a kind, or NULL when this build has none. */
const struct shim_backend *shim_backend_for(enum cri_isolation kind);
