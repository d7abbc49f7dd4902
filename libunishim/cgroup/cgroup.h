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

#include "base/cleanup.h"
#include "base/error.h"
#include "oci/oci-spec.h"

struct us_cgroup;
/* protoc-c (1.4) tags the generated struct Io__Containerd__Cgroups__V1__Metrics
 * (no leading underscore): map the name used below onto it so callers can
 * pass an Io__Containerd__Cgroups__V1__Metrics ** without casts. */
#define _Io__Containerd__Cgroups__V1__Metrics Io__Containerd__Cgroups__V1__Metrics
struct _Io__Containerd__Cgroups__V1__Metrics;

/* Creates (mkdir -p) the cgroup in every hierarchy. root is the cgroupfs
 * mount root (normally "/sys/fs/cgroup"; tests pass a fake tree). */
int us_cgroup_create(const char *root, const char *path, struct us_cgroup **ret,
                     struct us_error **err);
/* On pure cgroup v2: enables in cg's cgroup.subtree_control every
 * controller cg has, so that creating a child later is a mkdir alone. cg
 * then may hold no processes itself (v2's no-internal-processes rule): for
 * parents of containers only. Best effort per controller; a no-op on v1 and
 * hybrid layouts. Returns 0 or a negative errno with *err set. */
int us_cgroup_enable_children(struct us_cgroup *cg, struct us_error **err);
/* Opens an existing cgroup (for cleanup after a dead shim). -ENOENT if it
 * exists in no hierarchy. */
int us_cgroup_open(const char *root, const char *path, struct us_cgroup **ret,
                   struct us_error **err);
struct us_cgroup *us_cgroup_free(struct us_cgroup *cg);
DEFINE_CLEANUP(struct us_cgroup *, us_cgroup_free)

const char *us_cgroup_path(const struct us_cgroup *cg);

/* Writes the resource limits (memory, cpu, cpuset, pids, blkio weight,
 * devices, unified) to the controller files. Also used by Update. */
int us_cgroup_apply(struct us_cgroup *cg, const struct us_oci_resources *res,
                    struct us_error **err);

/* Moves pid into the cgroup in every hierarchy. */
int us_cgroup_enter(struct us_cgroup *cg, pid_t pid, struct us_error **err);
/* An fd (close-on-exec, the caller's) of cg's directory for clone3's
 * CLONE_INTO_CGROUP, when that one directory is all of cg (pure cgroup v2):
 * a process cloned into it needs no us_cgroup_enter. -EOPNOTSUPP on v1 and
 * hybrid layouts, or a negative errno. */
int us_cgroup_clone_fd(const struct us_cgroup *cg);

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

/* The same stats, packed: what goes on the wire (a StatsResponse's Any, the
 * guest agent's StatsContainer). *ret is malloc()ed, owned by the caller. */
int us_cgroup_stats_packed(struct us_cgroup *cg, uint8_t **ret, size_t *ret_len,
                           struct us_error **err);

/* An fd (owned by the caller, O_CLOEXEC, non-blocking) that becomes readable
 * when the memory controller records an OOM event (v1: eventfd registered on
 * memory.oom_control; v2: inotify on memory.events). After it fires, call
 * us_cgroup_oom_count() and compare with the last value. */
int us_cgroup_oom_fd(struct us_cgroup *cg, int *ret_fd, struct us_error **err);
int us_cgroup_oom_count(struct us_cgroup *cg, uint64_t *ret, struct us_error **err);

/* Call when the fd from us_cgroup_oom_fd() is readable: consumes the
 * notification and sets *ret_oom when it means an OOM kill. *last_count is
 * the oom_kill count seen so far (start with us_cgroup_oom_count()); it is
 * updated. On v1 the eventfd fires when the OOM starts, before the kill is
 * counted, and also when the cgroup is removed: an event on a cgroup that
 * still exists is an OOM. On v2 memory.events changes for many reasons: only
 * a grown oom_kill count is an OOM. */
int us_cgroup_oom_event(struct us_cgroup *cg, int fd, uint64_t *last_count, bool *ret_oom,
                        struct us_error **err);

/* Mounts the container's view of cgroups at dest (an absolute host path
 * inside the container rootfs, e.g. <rootfs>/sys/fs/cgroup), the way runc
 * does for a "cgroup" mount: a tmpfs with each v1 hierarchy's own cgroup
 * directory bind-mounted, or the cgroup2 dir. Called in the container's mount
 * namespace before pivot_root. */
int us_cgroup_mount(struct us_cgroup *cg, const char *dest, bool readonly, struct us_error **err);

/* Kills whatever is left (SIGKILL), waits briefly for the cgroup to empty,
 * then removes the directories in every hierarchy. Idempotent. */
int us_cgroup_destroy(struct us_cgroup *cg, struct us_error **err);

/* ---- Additions: layout detection (injectable for tests), path checks ---- */

enum us_cgroup_mode {
        US_CGROUP_V1,     /* tmpfs root with one cgroup v1 mount per hierarchy */
        US_CGROUP_HYBRID, /* v1 plus a controller-less cgroup2 at <root>/unified */
        US_CGROUP_V2,     /* the root itself is cgroup2 */
};

/* The cgroup hierarchies found under a root. */
struct us_cgroup_layout;

/* Flags for us_cgroup_layout_parse(). */
enum {
        /* The root is a cgroup2 mount (pure v2): mountinfo is not consulted. */
        US_CGROUP_LAYOUT_ROOT_IS_CGROUP2 = 1u << 0,
        /* The tree is plain files and directories (unit tests): writes
         * create missing files, destroy removes files before rmdir, nothing
         * is polled or signalled beyond what plain files allow. */
        US_CGROUP_LAYOUT_FAKE = 1u << 1,
};

/* Detects the layout under root (NULL = "/sys/fs/cgroup") from statfs() of
 * root and /proc/self/mountinfo. *ret is owned by the caller. */
int us_cgroup_layout_detect(const char *root, struct us_cgroup_layout **ret, struct us_error **err);
/* Builds the layout from mountinfo text (len bytes, need not be
 * NUL-terminated): every "cgroup"/"cgroup2" mount whose mount point is a
 * direct child of root is a hierarchy. flags: US_CGROUP_LAYOUT_*. */
int us_cgroup_layout_parse(const char *root, const char *mountinfo, size_t len, unsigned flags,
                           struct us_cgroup_layout **ret, struct us_error **err);
struct us_cgroup_layout *us_cgroup_layout_free(struct us_cgroup_layout *l);
DEFINE_CLEANUP(struct us_cgroup_layout *, us_cgroup_layout_free)
enum us_cgroup_mode us_cgroup_layout_mode(const struct us_cgroup_layout *l);
size_t us_cgroup_layout_count(const struct us_cgroup_layout *l);
/* Mount point of hierarchy i (< count), and whether it is cgroup2. */
const char *us_cgroup_layout_mountpoint(const struct us_cgroup_layout *l, size_t i, bool *ret_v2);
/* Mount point of the v1 hierarchy carrying controller ("memory", "cpuacct",
 * "name=systemd", ...), or NULL. */
const char *us_cgroup_layout_controller(const struct us_cgroup_layout *l, const char *controller);

/* Like us_cgroup_create()/us_cgroup_open() on a given layout (copied; the
 * caller keeps l). */
int us_cgroup_create_in(const struct us_cgroup_layout *l, const char *path, struct us_cgroup **ret,
                        struct us_error **err);
int us_cgroup_open_in(const struct us_cgroup_layout *l, const char *path, struct us_cgroup **ret,
                      struct us_error **err);

/* Validates a cgroupsPath of len bytes: cgroupfs form only (a ':' means the
 * systemd form: "systemd cgroup paths are not supported"), no "." or ".."
 * or empty components, no NUL, at most 4096 bytes, not the root itself.
 * *ret (optional) is the normalized path with one leading '/', malloc'ed. */
int us_cgroup_path_validate(const char *path, size_t len, char **ret, struct us_error **err);

/* The cgroup's directory in the hierarchy of v1 controller ("memory",
 * "name=systemd") or, with "unified", in the cgroup2 hierarchy; NULL if
 * the host has no such hierarchy. Owned by cg. */
const char *us_cgroup_dir(const struct us_cgroup *cg, const char *controller);

/* cpu.shares (v1) to cpu.weight (v2) as runc converts: 0 stays 0 (unset). */
uint64_t us_cgroup_shares_to_weight(uint64_t shares);
