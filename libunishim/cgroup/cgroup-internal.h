/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/*
 * Internals shared by cgroup.c (layout, paths, lifecycle), cgroup-apply.c
 * (resource limits) and cgroup-stats.c (metrics). Not for other modules.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cgroup.h"
#include "base/error.h"

/* Files read from cgroupfs are tiny; anything larger is refused. */
#define US_CG_MAX_FILE (64u * 1024)

enum {
        US_CG_CPU = 1u << 0,
        US_CG_CPUACCT = 1u << 1,
        US_CG_CPUSET = 1u << 2,
        US_CG_MEMORY = 1u << 3,
        US_CG_DEVICES = 1u << 4,
        US_CG_FREEZER = 1u << 5,
        US_CG_BLKIO = 1u << 6,
        US_CG_PIDS = 1u << 7,
        US_CG_NET_CLS = 1u << 8,
        US_CG_NET_PRIO = 1u << 9,
        US_CG_PERF_EVENT = 1u << 10,
        US_CG_HUGETLB = 1u << 11,
        US_CG_RDMA = 1u << 12,
        US_CG_MISC = 1u << 13,
        US_CG_NAMED = 1u << 14, /* a name=X hierarchy (name=systemd) */
};

struct us_cgroup_hier {
        char *mountpoint;     /* absolute path of the hierarchy's mount */
        char *name;           /* basename of mountpoint ("cpu,cpuacct", "systemd", "unified") */
        char *named;          /* X of a name=X hierarchy, else NULL */
        uint32_t controllers; /* US_CG_* (v1 only) */
        bool v2;
};

struct us_cgroup_layout {
        enum us_cgroup_mode mode;
        bool fake; /* plain files: writes create files, rmdir removes them first */
        char *root;
        struct us_cgroup_hier *hiers;
        size_t n_hiers;
};

struct us_cgroup {
        struct us_cgroup_layout *layout;
        char *path;  /* normalized, with a leading '/' */
        char **dirs; /* per hierarchy: mountpoint + path */
};

/* The cgroup's directory in the v1 hierarchy holding ctrl (US_CG_*), or NULL. */
const char *us_cg_v1_dir(const struct us_cgroup *cg, uint32_t ctrl);
/* The cgroup's directory in the cgroup2 hierarchy (pure v2 or hybrid), or NULL. */
const char *us_cg_v2_dir(const struct us_cgroup *cg);
/* The cgroup2 directory only when it carries controllers (pure v2). */
const char *us_cg_v2_ctrl_dir(const struct us_cgroup *cg);

/* Writes value to dir/file; the error reads "set <file> to <value>: <strerror>". */
int us_cg_write(const struct us_cgroup *cg, const char *dir, const char *file, const char *value,
                struct us_error **err);
/* Like us_cg_write without an error message (for retries and best effort). */
int us_cg_write_quiet(const struct us_cgroup *cg, const char *dir, const char *file,
                      const char *value);
bool us_cg_exists(const char *dir, const char *file);
/* Reads dir/file (at most US_CG_MAX_FILE bytes), NUL-terminated. */
int us_cg_read(const char *dir, const char *file, char **ret, struct us_error **err);
/* Reads one unsigned number; "max" gives UINT64_MAX, negative numbers 0. */
int us_cg_read_u64(const char *dir, const char *file, uint64_t *ret, struct us_error **err);
/* Parses one unsigned number as containerd does ("max" -> UINT64_MAX,
 * negative -> 0). s may have surrounding whitespace. */
int us_cg_parse_u64(const char *s, uint64_t *ret);
/* Finds "key value" on its own line in text (flat-keyed files). */
int us_cg_find_key(const char *text, const char *key, uint64_t *ret);
