/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/*
 * A container's cgroup on whatever layout the host has: cgroup v1 (one
 * hierarchy per controller), v2 (unified), or hybrid (v1 controllers plus a
 * controller-less cgroup2 mount at /sys/fs/cgroup/unified, as on this
 * project's test machines). The path comes from the OCI spec's cgroupsPath in
 * cgroupfs form ("/default/abc" or "kubepods/pod1/abc"); a relative path is
 * taken under the root of each hierarchy. systemd-style "slice:prefix:name"
 * paths are rejected with a clear error (not supported yet).
 *
 * Paths are hostile input: ".." components, empty names and over-long paths
 * are refused.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "error.h"
#include "oci-spec.h"

struct us_cgroup;
struct _Io__Containerd__Cgroups__V1__Metrics;

/* Creates (mkdir -p) the cgroup in every hierarchy. root is the cgroupfs
 * mount root (normally "/sys/fs/cgroup"; tests pass a fake tree). */
int us_cgroup_create(const char *root, const char *path, struct us_cgroup **ret,
                     struct us_error **err);
/* Opens an existing cgroup (for cleanup after a dead shim). -ENOENT if it
 * exists in no hierarchy. */
int us_cgroup_open(const char *root, const char *path, struct us_cgroup **ret,
                   struct us_error **err);
struct us_cgroup *us_cgroup_free(struct us_cgroup *cg);

const char *us_cgroup_path(const struct us_cgroup *cg);

/* Writes the resource limits (memory, cpu, cpuset, pids, blkio weight,
 * devices, unified) to the controller files. Also used by Update. */
int us_cgroup_apply(struct us_cgroup *cg, const struct us_oci_resources *res,
                    struct us_error **err);

/* Moves pid into the cgroup in every hierarchy. */
int us_cgroup_enter(struct us_cgroup *cg, pid_t pid, struct us_error **err);

/* Freezes/thaws all processes (v1 freezer.state, v2 cgroup.freeze); waits
 * until the state is reached. */
int us_cgroup_freeze(struct us_cgroup *cg, bool frozen, struct us_error **err);

/* The pids in the cgroup (recursive). *ret is malloc'ed, caller frees. */
int us_cgroup_pids(struct us_cgroup *cg, pid_t **ret, size_t *ret_n, struct us_error **err);

/* Sends sig to every process in the cgroup (thawing first if frozen and sig
 * is SIGKILL). */
int us_cgroup_kill_all(struct us_cgroup *cg, int sig, struct us_error **err);

/* Stats as containerd's cgroups v1 Metrics message (what `ctr task metrics`
 * decodes). *ret is owned by the caller: free with us_cgroup_stats_free(). */
int us_cgroup_stats(struct us_cgroup *cg, struct _Io__Containerd__Cgroups__V1__Metrics **ret,
                    struct us_error **err);
void us_cgroup_stats_free(struct _Io__Containerd__Cgroups__V1__Metrics *m);

/* An fd (owned by the caller, O_CLOEXEC, non-blocking) that becomes readable
 * when the memory controller records an OOM event (v1: eventfd registered on
 * memory.oom_control; v2: inotify on memory.events). After it fires, call
 * us_cgroup_oom_count() and compare with the last value. */
int us_cgroup_oom_fd(struct us_cgroup *cg, int *ret_fd, struct us_error **err);
int us_cgroup_oom_count(struct us_cgroup *cg, uint64_t *ret, struct us_error **err);

/* Mounts the container's view of cgroups at dest (an absolute host path
 * inside the container rootfs, e.g. <rootfs>/sys/fs/cgroup), the way runc
 * does for a "cgroup" mount: a tmpfs with each v1 hierarchy's own cgroup
 * directory bind-mounted, or the cgroup2 dir. Called in the container's mount
 * namespace before pivot_root. */
int us_cgroup_mount(struct us_cgroup *cg, const char *dest, bool readonly, struct us_error **err);

/* Kills whatever is left (SIGKILL), waits briefly for the cgroup to empty,
 * then removes the directories in every hierarchy. Idempotent. */
int us_cgroup_destroy(struct us_cgroup *cg, struct us_error **err);
