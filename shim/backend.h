/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/*
 * One operations table per isolation kind (policy/policy.h's enum
 * policy_isolation). The Task service speaks only to these; a kind whose slot
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
#include "containerd/types.pb-c.h"
#include "engine/engine.h"
#include "base/error.h"
#include "oci/oci-spec.h"
#include "policy/policy.h"

/* What the shim gives a backend: its loop, a per-pod slot, and the way
 * back for exits and OOM kills the backend learns of itself (the VM kinds
 * hear of them from their guest, not from waitpid). */
struct shim_backend_env {
        struct us_loop *loop;
        const char *namespace; /* containerd's: ids are unique only within it */
        bool debug;            /* containerd runs the shim with -debug */
        /* The backend's per-pod object; one shim serves one pod. The backend
         * creates it with the pod's first task and frees it in pod_free. */
        void **pod;
        void (*process_exited)(void *task_cookie, const char *exec_id, uint32_t exit_status);
        void (*oom)(void *task_cookie);
};

/* What the Task service decided for a task's create (shim/service.c), once,
 * from the operator's config and the task's config.json, and handed whole
 * to the backend: the backend reads no unishim.io/ annotation and derives
 * none of this again. A struct of its own rather than more fields of
 * us_container_config (libunishim's engine, shared with the guest agent,
 * knows nothing of pods, policies or VMs) or of shim_backend_env (what the
 * shim is, the same for every task). The pod's first task decides for the
 * pod; a later task's decision has been checked to agree with it. */
struct shim_pod_decision {
        /* The pod's kind. A mesh sidecar of a VM-kind pod keeps it, though
         * its backend is the container one (shim/sidecar.h). */
        enum policy_isolation kind;
        const struct policy_config *config; /* the operator's, for the pod's life */
        /* A VM kind's vCPUs and guest memory (vmpod_size): the pod's
         * annotations, else its limits, within the operator's bounds, else
         * the defaults; never 0. Computed, and so checked, for every kind. */
        struct policy_vm_size size;
        /* The task itself: id, bundle, rootfs, stdio, and its spec,
         * validated, with the config.json text it was parsed from. */
        struct us_container_config container;
        /* What containerd mounted container.rootfs from (the request's,
         * valid during create only): a VM kind mounts it anew for its
         * guest. */
        Containerd__Types__Mount *const *rootfs_mounts;
        size_t n_rootfs_mounts;
};

/* An operation a backend may finish later, from the loop: a VM kind waits
 * for its guest that way, so that a guest that never answers never blocks
 * the shim. An op given one returns 0 or a negative errno when it finished
 * at once (done is then not called), or -EINPROGRESS, and then calls
 * op->done(op, r, err) exactly once, later, from the loop (err may be NULL;
 * done frees it). Results go to the out-parameters the op was given, which
 * live in the same allocation as op (the caller's), before done. op NULL:
 * nobody waits for the result (the backend finishes alone and logs). */
struct shim_op {
        void (*done)(struct shim_op *op, int r, struct us_error *err);
};

struct shim_backend {
        const char *name;
        /* With a terminal, does the process get a pty on this host (which
         * the shim pumps)? VM kinds keep the pty in the guest. */
        bool host_pty;
        /* Creates the task's init process up to "created", as decided.
         * decision->container.spec moves into impl on success, and to the
         * backend when it returns -EINPROGRESS (nothing else of decision is
         * used after it returns). *ret_impl and *ret_pty (a pty master or
         * -1) are set by the time op is done. task_cookie is passed back to
         * env's callbacks; env->pod stays valid. */
        int (*create)(const struct shim_backend_env *env, void *task_cookie,
                      const struct shim_pod_decision *decision, void **ret_impl, int *ret_pty,
                      struct shim_op *op, struct us_error **err);
        pid_t (*pid)(void *impl);
        int (*start)(void *impl, struct shim_op *op, struct us_error **err);
        /* p is the parsed process, json the runtime-spec Process text it
         * came from (VM kinds pass it on to their guest). */
        int (*exec)(void *impl, const char *exec_id, const struct us_oci_process *p,
                    const char *json, size_t json_len, const struct us_stdio *stdio, pid_t *ret_pid,
                    int *ret_pty, struct shim_op *op, struct us_error **err);
        /* Signals the init (exec_id NULL), or with all every process. */
        int (*kill)(void *impl, int sig, bool all, struct shim_op *op, struct us_error **err);
        /* Signals one exec'd process. -ESRCH when it is gone. */
        int (*kill_exec)(void *impl, const char *exec_id, pid_t pid, int sig, struct shim_op *op,
                         struct us_error **err);
        /* Resizes a guest-side terminal; NULL when ptys are on the host. */
        int (*resize)(void *impl, const char *exec_id, unsigned width, unsigned height,
                      struct shim_op *op, struct us_error **err);
        /* Stdin of a process reached EOF (CloseIO); NULL when the process
         * reads the shim's pipe directly. */
        int (*close_stdin)(void *impl, const char *exec_id, struct us_error **err);
        int (*pause)(void *impl, struct shim_op *op, struct us_error **err);
        int (*resume)(void *impl, struct shim_op *op, struct us_error **err);
        int (*update)(void *impl, const struct us_oci_resources *res, const char *json,
                      size_t json_len, struct shim_op *op, struct us_error **err);
        /* containerd's io.containerd.cgroups.v1.Metrics, packed; *ret is
         * malloc()ed, owned by the caller. */
        int (*stats)(void *impl, uint8_t **ret, size_t *ret_len, struct shim_op *op,
                     struct us_error **err);
        int (*pids)(void *impl, pid_t **ret, size_t *ret_n, struct shim_op *op,
                    struct us_error **err);
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
        /* `shim delete` after the serving shim died (kill -9), or for the
         * pod's own task after its Delete (shim_manager_delete): removes
         * what the backend made on the host for task id, found from
         * namespace, id and the bundle's spec alone. 0 when there is
         * nothing of it. NULL: the bundle's cleanup is all there is. */
        int (*cleanup_dead)(const char *namespace, const char *id, const struct us_oci_spec *spec,
                            struct us_error **err);
};

extern const struct shim_backend shim_backend_container;
extern const struct shim_backend shim_backend_sandbox;
extern const struct shim_backend shim_backend_vm;

/* The backend of a kind, or NULL when this build has none. */
const struct shim_backend *shim_backend_for(enum policy_isolation kind);

/* Every backend's cleanup_dead for the task (the dead shim's kind is not
 * known): the first error, after all have run. */
int shim_backends_cleanup_dead(const char *namespace, const char *id,
                               const struct us_oci_spec *spec, struct us_error **err);
