/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/*
 * The OCI config.json of a sandbox-kind container, rewritten for the guest:
 * paths point into the shared filesystem, host-only pieces (hooks, joined
 * host namespaces) are dropped. The rest -- process, capabilities, seccomp,
 * resources -- passes through unchanged for the guest's engine to apply.
 */

#include <stdbool.h>
#include <stddef.h>

#include "base/error.h"

struct sandbox_spec_rewrite {
        const char *root_path;            /* new root.path (a guest path) */
        const char *cgroups_path;         /* new linux.cgroupsPath */
        size_t n_mounts;                  /* the spec's mounts, in order */
        const char *const *mount_sources; /* new source of mount i, NULL: keep */
        const char *const *mount_types;   /* new type of mount i, NULL: keep */
        const bool *drop_mount;           /* true: leave mount i out */
        /* CLONE_NEW* bits: namespaces to leave out entirely (the guest's own
         * is the pod's), and namespaces to create anew instead of joining a
         * host path. */
        int drop_namespaces;
        int unjoin_namespaces;
        /* A PID namespace joined by host path (the CRI's shareProcessNamespace:
         * the pause container's) joins this guest path instead; NULL: it is
         * treated as unjoin_namespaces says. */
        const char *pod_pid_namespace;
};

/* Rewrites json (a config.json already validated by us_oci_spec_parse).
 * *ret is malloc()ed, NUL-terminated, owned by the caller. */
int sandbox_spec_rewrite(const char *json, size_t len, const struct sandbox_spec_rewrite *rw,
                         char **ret, size_t *ret_len, struct us_error **err);
