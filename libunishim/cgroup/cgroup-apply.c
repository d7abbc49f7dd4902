/* SPDX-License-Identifier: Apache-2.0 */
/*
 * OCI LinuxResources to cgroup v1 / v2 controller files, following runc's
 * file names, conversions and write orders.
 */
#include "cgroup.h"
#include "cgroup-devices.h"
#include "cgroup-internal.h"
#include "base/cleanup.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

uint64_t us_cgroup_shares_to_weight(uint64_t shares)
{
        if (shares == 0)
                return 0;
        if (shares < 2)
                shares = 2;
        if (shares > 262144)
                shares = 262144;
        return 1 + ((shares - 2) * 9999) / 262142;
}

static void fmt_i64(char *buf, size_t n, int64_t v)
{
        snprintf(buf, n, "%" PRId64, v);
}

/* v1: memory.limit_in_bytes and memory.memsw.limit_in_bytes must keep
 * limit <= memsw at every step, so which one goes first depends on the
 * current and the new values (runc's order); on EINVAL the other order is
 * tried once more. */
static int set_limit_and_swap(const struct us_cgroup *cg, const char *dir, int64_t limit,
                              int64_t swap, struct us_error **err)
{
        char lv[32], sv[32];
        fmt_i64(lv, sizeof(lv), limit);
        fmt_i64(sv, sizeof(sv), swap);
        uint64_t cur = 0;
        if (us_cg_read_u64(dir, "memory.limit_in_bytes", &cur, NULL) < 0)
                cur = 0;
        bool swap_first = swap == -1 || cur < (uint64_t)swap;
        const char *f1 = swap_first ? "memory.memsw.limit_in_bytes" : "memory.limit_in_bytes";
        const char *v1 = swap_first ? sv : lv;
        const char *f2 = swap_first ? "memory.limit_in_bytes" : "memory.memsw.limit_in_bytes";
        const char *v2 = swap_first ? lv : sv;

        int r = us_cg_write_quiet(cg, dir, f1, v1);
        if (r == -EINVAL) {
                r = us_cg_write(cg, dir, f2, v2, err);
                if (r < 0)
                        return r;
                return us_cg_write(cg, dir, f1, v1, err);
        }
        if (r < 0)
                return us_errorf(err, -r, "set %s to %s", f1, v1);
        return us_cg_write(cg, dir, f2, v2, err);
}

static int apply_memory_v1(const struct us_cgroup *cg, const char *dir,
                           const struct us_oci_memory *m, struct us_error **err)
{
        char v[32];
        int r;
        int64_t limit = m->has_limit ? m->limit : 0;
        int64_t swap = m->has_swap ? m->swap : 0;
        bool memsw = us_cg_exists(dir, "memory.memsw.limit_in_bytes");
        /* Unlimited memory without an explicit swap means unlimited swap too. */
        if (limit == -1 && swap == 0 && memsw)
                swap = -1;
        if (!memsw)
                swap = 0; /* swap accounting is off: nothing to limit */
        if (limit != 0 && swap != 0) {
                r = set_limit_and_swap(cg, dir, limit, swap, err);
        } else {
                r = 0;
                if (limit != 0) {
                        fmt_i64(v, sizeof(v), limit);
                        r = us_cg_write(cg, dir, "memory.limit_in_bytes", v, err);
                }
                if (r == 0 && swap != 0) {
                        fmt_i64(v, sizeof(v), swap);
                        r = us_cg_write(cg, dir, "memory.memsw.limit_in_bytes", v, err);
                }
        }
        if (r < 0)
                return r;
        if (m->has_reservation && m->reservation != 0) {
                fmt_i64(v, sizeof(v), m->reservation);
                r = us_cg_write(cg, dir, "memory.soft_limit_in_bytes", v, err);
                if (r < 0)
                        return r;
        }
        /* Kernel memory limits are deprecated (gone in newer kernels):
         * skipped when the file is missing or the kernel refuses. */
        static const char *const kfiles[] = {"memory.kmem.limit_in_bytes",
                                             "memory.kmem.tcp.limit_in_bytes"};
        const bool khas[] = {m->has_kernel, m->has_kernel_tcp};
        const int64_t kval[] = {m->kernel, m->kernel_tcp};
        for (size_t i = 0; i < US_ELEMENTSOF(kfiles); i++) {
                if (!khas[i] || kval[i] == 0 || !us_cg_exists(dir, kfiles[i]))
                        continue;
                fmt_i64(v, sizeof(v), kval[i]);
                r = us_cg_write_quiet(cg, dir, kfiles[i], v);
                if (r < 0 && r != -EOPNOTSUPP && r != -ENOENT)
                        return us_errorf(err, -r, "set %s to %s", kfiles[i], v);
        }
        if (m->has_disable_oom_killer && m->disable_oom_killer) {
                r = us_cg_write(cg, dir, "memory.oom_control", "1", err);
                if (r < 0)
                        return r;
        }
        if (m->has_swappiness) {
                if (m->swappiness > 100)
                        return us_error_msg(err, EINVAL,
                                            "invalid memory swappiness %" PRIu64 ": must be 0-100",
                                            m->swappiness);
                snprintf(v, sizeof(v), "%" PRIu64, m->swappiness);
                r = us_cg_write(cg, dir, "memory.swappiness", v, err);
                if (r < 0)
                        return r;
        }
        return 0;
}

static void num_or_max(char *buf, size_t n, int64_t v)
{
        if (v < 0)
                snprintf(buf, n, "max");
        else
                fmt_i64(buf, n, v);
}

static int apply_memory_v2(const struct us_cgroup *cg, const char *dir,
                           const struct us_oci_memory *m, struct us_error **err)
{
        char v[32];
        int r;
        int64_t limit = m->has_limit ? m->limit : 0;
        int64_t swap = m->has_swap ? m->swap : 0;
        /* memory.swap.max is swap alone; the spec's swap is memory+swap. */
        int64_t swap2;
        if (limit == -1 && swap == 0)
                swap2 = -1;
        else if (swap == -1 || swap == 0)
                swap2 = swap;
        else if (limit == 0 || limit == -1)
                return us_error_msg(err, EINVAL, "unable to set swap limit without memory limit");
        else if (limit < 0)
                return us_error_msg(err, EINVAL, "invalid memory limit %" PRId64, limit);
        else if (swap < limit)
                return us_error_msg(err, EINVAL,
                                    "memory+swap limit %" PRId64 " is below memory limit %" PRId64,
                                    swap, limit);
        else
                swap2 = swap - limit;
        if (swap2 != 0 || swap > 0) {
                num_or_max(v, sizeof(v), swap2);
                r = us_cg_write_quiet(cg, dir, "memory.swap.max", v);
                /* Without swap, "max" and "0" are what it is already. */
                if (r < 0 && !(r == -ENOENT && swap2 <= 0))
                        return us_errorf(err, -r, "set memory.swap.max to %s", v);
        }
        if (limit != 0) {
                num_or_max(v, sizeof(v), limit);
                r = us_cg_write(cg, dir, "memory.max", v, err);
                if (r < 0)
                        return r;
        }
        if (m->has_reservation && m->reservation != 0) {
                num_or_max(v, sizeof(v), m->reservation);
                r = us_cg_write(cg, dir, "memory.low", v, err);
                if (r < 0)
                        return r;
        }
        /* swappiness, kernel limits and the OOM-killer switch have no v2
         * files; runc ignores them there too. */
        return 0;
}

static int apply_cpu_v1(const struct us_cgroup *cg, const char *dir, const struct us_oci_cpu *c,
                        struct us_error **err)
{
        char v[32];
        int r;
        if (c->has_shares && c->shares != 0) {
                snprintf(v, sizeof(v), "%" PRIu64, c->shares);
                r = us_cg_write(cg, dir, "cpu.shares", v, err);
                if (r < 0)
                        return r;
        }
        uint64_t period = c->has_period ? c->period : 0;
        int64_t quota = c->has_quota ? c->quota : 0;
        bool period_pending = false;
        char pv[32];
        snprintf(pv, sizeof(pv), "%" PRIu64, period);
        if (period != 0) {
                r = us_cg_write_quiet(cg, dir, "cpu.cfs_period_us", pv);
                /* A shorter period may be refused until the quota fits:
                 * retry after the quota. */
                if (r == -EINVAL && quota != 0)
                        period_pending = true;
                else if (r < 0)
                        return us_errorf(err, -r, "set cpu.cfs_period_us to %s", pv);
        }
        if (quota != 0) {
                fmt_i64(v, sizeof(v), quota);
                r = us_cg_write(cg, dir, "cpu.cfs_quota_us", v, err);
                if (r < 0)
                        return r;
                if (period_pending) {
                        r = us_cg_write(cg, dir, "cpu.cfs_period_us", pv, err);
                        if (r < 0)
                                return r;
                }
        }
        if (c->has_realtime_period && c->realtime_period != 0) {
                snprintf(v, sizeof(v), "%" PRIu64, c->realtime_period);
                r = us_cg_write(cg, dir, "cpu.rt_period_us", v, err);
                if (r < 0)
                        return r;
        }
        if (c->has_realtime_runtime && c->realtime_runtime != 0) {
                fmt_i64(v, sizeof(v), c->realtime_runtime);
                r = us_cg_write(cg, dir, "cpu.rt_runtime_us", v, err);
                if (r < 0)
                        return r;
        }
        return 0;
}

static int apply_cpu_v2(const struct us_cgroup *cg, const char *dir, const struct us_oci_cpu *c,
                        struct us_error **err)
{
        char v[64];
        int r;
        if ((c->has_realtime_period && c->realtime_period != 0) ||
            (c->has_realtime_runtime && c->realtime_runtime != 0))
                return us_error_msg(err, ENOTSUP,
                                    "realtime cpu limits are not supported on "
                                    "cgroup v2");
        if (c->has_shares && c->shares != 0) {
                snprintf(v, sizeof(v), "%" PRIu64, us_cgroup_shares_to_weight(c->shares));
                r = us_cg_write(cg, dir, "cpu.weight", v, err);
                if (r < 0)
                        return r;
        }
        uint64_t period = c->has_period ? c->period : 0;
        int64_t quota = c->has_quota ? c->quota : 0;
        if (period != 0 || quota != 0) {
                int n = quota > 0 ? snprintf(v, sizeof(v), "%" PRId64, quota)
                                  : snprintf(v, sizeof(v), "max");
                if (period != 0)
                        snprintf(v + n, sizeof(v) - (size_t)n, " %" PRIu64, period);
                r = us_cg_write(cg, dir, "cpu.max", v, err);
                if (r < 0)
                        return r;
        }
        return 0;
}

static int apply_cpuset(const struct us_cgroup *cg, const char *dir, const struct us_oci_cpu *c,
                        struct us_error **err)
{
        int r;
        if (c->cpus && c->cpus[0]) {
                r = us_cg_write(cg, dir, "cpuset.cpus", c->cpus, err);
                if (r < 0)
                        return r;
        }
        if (c->mems && c->mems[0]) {
                r = us_cg_write(cg, dir, "cpuset.mems", c->mems, err);
                if (r < 0)
                        return r;
        }
        return 0;
}

static int apply_blkio(const struct us_cgroup *cg, const char *dir, bool v2, uint16_t weight,
                       struct us_error **err)
{
        char v[32];
        if (weight == 0)
                return 0;
        if (!v2) {
                snprintf(v, sizeof(v), "%u", (unsigned)weight);
                const char *f =
                        us_cg_exists(dir, "blkio.bfq.weight") ? "blkio.bfq.weight" : "blkio.weight";
                return us_cg_write(cg, dir, f, v, err);
        }
        if (us_cg_exists(dir, "io.bfq.weight")) {
                snprintf(v, sizeof(v), "%u", (unsigned)weight);
                return us_cg_write(cg, dir, "io.bfq.weight", v, err);
        }
        /* blkio weight 10..1000 to io.weight 1..10000, as runc does. */
        unsigned w = weight < 10 ? 10 : weight > 1000 ? 1000 : weight;
        snprintf(v, sizeof(v), "default %u", 1 + (w - 10) * 9999 / 990);
        return us_cg_write(cg, dir, "io.weight", v, err);
}

static int apply_devices_v1(const struct us_cgroup *cg, const char *dir,
                            const struct us_oci_resources *res, struct us_error **err)
{
        for (size_t i = 0; i < res->n_devices; i++) {
                const struct us_oci_device_rule *d = &res->devices[i];
                int r = us_cg_device_rule_check(d, i, err);
                if (r < 0)
                        return r;
                char type = d->type ? d->type : 'a';
                const char *access = d->access && d->access[0] ? d->access : "rwm";
                char rule[80];
                us_cg_device_rule_format(rule, sizeof(rule), type, d->major, d->minor, access);
                r = us_cg_write(cg, dir, d->allow ? "devices.allow" : "devices.deny", rule, err);
                if (r < 0)
                        return r;
        }
        return 0;
}

/* No rules, no program (as v1 writes nothing): an Update without devices
 * keeps the filter in place. A fake tree has no kernel to attach to; its
 * rules are still compiled so that bad ones fail the same way. */
static int apply_devices_v2(const struct us_cgroup *cg, const char *dir,
                            const struct us_oci_resources *res, struct us_error **err)
{
        if (res->n_devices == 0)
                return 0;
        if (cg->layout->fake) {
                _cleanup_free_ struct bpf_insn *insns = NULL;
                size_t n = 0;
                return us_cg_devices_compile(res->devices, res->n_devices, &insns, &n, err);
        }
        return us_cg_devices_apply(dir, res->devices, res->n_devices, err);
}

static int apply_unified(const struct us_cgroup *cg, const struct us_oci_resources *res,
                         struct us_error **err)
{
        if (res->n_unified == 0)
                return 0;
        const char *dir = us_cg_v2_dir(cg);
        if (!dir)
                return us_error_msg(err, ENOTSUP,
                                    "unified cgroup resources need cgroup v2 (this host has v1 "
                                    "only)");
        for (size_t i = 0; i < res->n_unified; i++) {
                const char *k = res->unified[i].key;
                const char *val = res->unified[i].value ? res->unified[i].value : "";
                if (!k || !k[0] || strchr(k, '/') || strstr(k, ".."))
                        return us_error_msg(err, EINVAL, "invalid unified cgroup key \"%s\"",
                                            k ? k : "");
                int r = us_cg_write(cg, dir, k, val, err);
                if (r < 0)
                        return r;
        }
        return 0;
}

static int apply(struct us_cgroup *cg, const struct us_oci_resources *res, struct us_error **err)
{
        int r;
        const char *v2 = us_cg_v2_ctrl_dir(cg);
        const char *d;

        if ((d = v2 ? v2 : us_cg_v1_dir(cg, US_CG_MEMORY))) {
                r = v2 ? apply_memory_v2(cg, d, &res->memory, err)
                       : apply_memory_v1(cg, d, &res->memory, err);
                if (r < 0)
                        return r;
        }
        if ((d = v2 ? v2 : us_cg_v1_dir(cg, US_CG_CPU))) {
                r = v2 ? apply_cpu_v2(cg, d, &res->cpu, err) : apply_cpu_v1(cg, d, &res->cpu, err);
                if (r < 0)
                        return r;
        }
        if ((d = v2 ? v2 : us_cg_v1_dir(cg, US_CG_CPUSET))) {
                r = apply_cpuset(cg, d, &res->cpu, err);
                if (r < 0)
                        return r;
        }
        if (res->has_pids_limit && (d = v2 ? v2 : us_cg_v1_dir(cg, US_CG_PIDS))) {
                char v[32];
                num_or_max(v, sizeof(v), res->pids_limit <= 0 ? -1 : res->pids_limit);
                r = us_cg_write(cg, d, "pids.max", v, err);
                if (r < 0)
                        return r;
        }
        if (res->has_blkio_weight && (d = v2 ? v2 : us_cg_v1_dir(cg, US_CG_BLKIO))) {
                r = apply_blkio(cg, d, v2 != NULL, res->blkio_weight, err);
                if (r < 0)
                        return r;
        }
        /* v2 device control needs an eBPF program attached to the cgroup
         * (cgroup-devices.c). Only on pure v2: on a hybrid host the v1
         * devices controller enforces and v2 is NULL here. */
        if (v2) {
                r = apply_devices_v2(cg, v2, res, err);
                if (r < 0)
                        return r;
        } else if ((d = us_cg_v1_dir(cg, US_CG_DEVICES))) {
                r = apply_devices_v1(cg, d, res, err);
                if (r < 0)
                        return r;
        }
        return apply_unified(cg, res, err);
}

int us_cgroup_apply(struct us_cgroup *cg, const struct us_oci_resources *res, struct us_error **err)
{
        if (!res)
                return 0;
        int r = apply(cg, res, err);
        if (r < 0)
                return us_error_wrap(err, r, "apply resources to cgroup %s", cg->path);
        return 0;
}
