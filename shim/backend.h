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

struct shim_backend {
        const char *name;
        /* Creates the task's init process up to "created". cfg->spec moves
         * into impl on success. *ret_pty is a pty master or -1. */
        int (*create)(const struct us_container_config *cfg, void **ret_impl, int *ret_pty,
                      struct us_error **err);
        pid_t (*pid)(void *impl);
        int (*start)(void *impl, struct us_error **err);
        int (*exec)(void *impl, const struct us_oci_process *p, const struct us_stdio *stdio,
                    pid_t *ret_pid, int *ret_pty, struct us_error **err);
        int (*kill)(void *impl, int sig, bool all, struct us_error **err);
        int (*pause)(void *impl, struct us_error **err);
        int (*resume)(void *impl, struct us_error **err);
        int (*update)(void *impl, const struct us_oci_resources *res, struct us_error **err);
        int (*stats)(void *impl, Io__Containerd__Cgroups__V1__Metrics **ret, struct us_error **err);
        void (*stats_free)(Io__Containerd__Cgroups__V1__Metrics *m);
        int (*pids)(void *impl, pid_t **ret, size_t *ret_n, struct us_error **err);
        /* An fd that becomes readable on OOM trouble (-ENOTSUP: none). */
        int (*oom_watch)(void *impl, int *ret_fd, uint64_t *ret_count, struct us_error **err);
        int (*oom_event)(void *impl, int fd, uint64_t *count, bool *ret_oom, struct us_error **err);
        /* After init is reaped: removes what is left. Idempotent. */
        int (*destroy)(void *impl, struct us_error **err);
        void (*free)(void *impl);
};

extern const struct shim_backend shim_backend_container;

/* The backend of a kind, or NULL when this build has none. */
const struct shim_backend *shim_backend_for(enum cri_isolation kind);
