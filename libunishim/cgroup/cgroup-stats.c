/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Metrics as containerd's io.containerd.cgroups.v1.Metrics, read the way
 * containerd's cgroups library reads them (pids.go, cpuacct.go, cpu.go,
 * memory.go, blkio.go). On a pure cgroup v2 host the same message is filled
 * with what maps (containerd itself would send its v2 Metrics type there).
 *
 * A controller file that does not exist (swap accounting off, kmem gone in
 * newer kernels, a controller not mounted) leaves its fields at zero.
 */
#include "cgroup.h"
#include "cgroup-internal.h"
#include "base/cleanup.h"

#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "containerd/cgroups-v1-metrics.pb-c.h"

typedef Io__Containerd__Cgroups__V1__Metrics Metrics;
typedef Io__Containerd__Cgroups__V1__MemoryStat MemoryStat;
typedef Io__Containerd__Cgroups__V1__MemoryEntry MemoryEntry;
typedef Io__Containerd__Cgroups__V1__BlkIOEntry BlkIOEntry;

#define MAX_PERCPU      4096
#define MAX_BLK_ENTRIES 4096

void us_cgroup_stats_free(struct _Io__Containerd__Cgroups__V1__Metrics *m)
{
        /* Everything below m was malloc'ed: the default allocator's
         * free_unpacked releases the whole tree. */
        if (m)
                protobuf_c_message_free_unpacked(&m->base, NULL);
}

DEFINE_CLEANUP(Metrics *, us_cgroup_stats_free)

/* Reads dir/file. A missing file is no error (the controller or accounting
 * is off): 0 with *ret NULL, and the caller's fields stay 0. */
static int read_opt(const char *dir, const char *file, char **ret, struct us_error **err)
{
        *ret = NULL;
        int r = us_cg_read(dir, file, ret, NULL);
        if (r == -ENOENT)
                return 0;
        if (r < 0)
                return us_errorf(err, -r, "read %s/%s", dir, file);
        return 0;
}

static int read_u64_opt(const char *dir, const char *file, uint64_t *ret, struct us_error **err)
{
        _cleanup_free_ char *t = NULL;
        int r = read_opt(dir, file, &t, err);
        if (r < 0 || !t)
                return r;
        uint64_t v;
        if (us_cg_parse_u64(t, &v) < 0)
                return us_error_msg(err, EINVAL, "parse %s/%s: not a number", dir, file);
        *ret = v;
        return 0;
}

/* Calls fn for each "key value" line of a flat-keyed file. */
typedef void (*kv_fn)(void *ud, const char *key, uint64_t v);

static int parse_kv(const char *text, const char *what, kv_fn fn, void *ud, struct us_error **err)
{
        for (const char *line = text; line && *line;) {
                const char *nl = strchr(line, '\n');
                size_t llen = nl ? (size_t)(nl - line) : strlen(line);
                const char *next = nl ? nl + 1 : NULL;
                if (llen == 0) {
                        line = next;
                        continue;
                }
                const char *sp = memchr(line, ' ', llen);
                char key[128], num[32];
                size_t klen = sp ? (size_t)(sp - line) : 0;
                size_t vlen = sp ? llen - klen - 1 : 0;
                if (!sp || klen == 0 || klen >= sizeof(key) || vlen == 0 || vlen >= sizeof(num))
                        return us_error_msg(err, EINVAL, "parse %s: bad line \"%.*s\"", what,
                                            (int)(llen > 64 ? 64 : llen), line);
                memcpy(key, line, klen);
                key[klen] = '\0';
                memcpy(num, sp + 1, vlen);
                num[vlen] = '\0';
                uint64_t v;
                if (us_cg_parse_u64(num, &v) < 0)
                        return us_error_msg(err, EINVAL, "parse %s: bad value for %s", what, key);
                fn(ud, key, v);
                line = next;
        }
        return 0;
}

/* parse_kv over dir/file (read_opt: missing is no error). */
static int parse_kv_file(const char *dir, const char *file, kv_fn fn, void *ud,
                         struct us_error **err)
{
        _cleanup_free_ char *text = NULL;
        int r = read_opt(dir, file, &text, err);
        if (r < 0 || !text)
                return r;
        return parse_kv(text, file, fn, ud, err);
}

/* ---- memory.stat keys (v1 names as containerd maps them) ---- */

#define MS(f) offsetof(MemoryStat, f)
static const struct {
        const char *key;
        size_t off;
} memstat_v1[] = {
        {"cache", MS(cache)},
        {"rss", MS(rss)},
        {"rss_huge", MS(rss_huge)},
        {"mapped_file", MS(mapped_file)},
        {"dirty", MS(dirty)},
        {"writeback", MS(writeback)},
        {"pgpgin", MS(pg_pg_in)},
        {"pgpgout", MS(pg_pg_out)},
        {"pgfault", MS(pg_fault)},
        {"pgmajfault", MS(pg_maj_fault)},
        {"inactive_anon", MS(inactive_anon)},
        {"active_anon", MS(active_anon)},
        {"inactive_file", MS(inactive_file)},
        {"active_file", MS(active_file)},
        {"unevictable", MS(unevictable)},
        {"hierarchical_memory_limit", MS(hierarchical_memory_limit)},
        {"hierarchical_memsw_limit", MS(hierarchical_swap_limit)},
        {"total_cache", MS(total_cache)},
        {"total_rss", MS(total_rss)},
        {"total_rss_huge", MS(total_rss_huge)},
        {"total_mapped_file", MS(total_mapped_file)},
        {"total_dirty", MS(total_dirty)},
        {"total_writeback", MS(total_writeback)},
        {"total_pgpgin", MS(total_pg_pg_in)},
        {"total_pgpgout", MS(total_pg_pg_out)},
        {"total_pgfault", MS(total_pg_fault)},
        {"total_pgmajfault", MS(total_pg_maj_fault)},
        {"total_inactive_anon", MS(total_inactive_anon)},
        {"total_active_anon", MS(total_active_anon)},
        {"total_inactive_file", MS(total_inactive_file)},
        {"total_active_file", MS(total_active_file)},
        {"total_unevictable", MS(total_unevictable)},
};

/* cgroup v2 memory.stat names for the same fields. */
static const struct {
        const char *key;
        size_t off;
} memstat_v2[] = {
        {"file", MS(cache)},
        {"anon", MS(rss)},
        {"anon_thp", MS(rss_huge)},
        {"file_mapped", MS(mapped_file)},
        {"file_dirty", MS(dirty)},
        {"file_writeback", MS(writeback)},
        {"pgfault", MS(pg_fault)},
        {"pgmajfault", MS(pg_maj_fault)},
        {"inactive_anon", MS(inactive_anon)},
        {"active_anon", MS(active_anon)},
        {"inactive_file", MS(inactive_file)},
        {"active_file", MS(active_file)},
        {"unevictable", MS(unevictable)},
};
#undef MS

static void memstat_v1_fn(void *ud, const char *key, uint64_t v)
{
        for (size_t i = 0; i < US_ELEMENTSOF(memstat_v1); i++)
                if (strcmp(memstat_v1[i].key, key) == 0)
                        *(uint64_t *)((char *)ud + memstat_v1[i].off) = v;
}

static void memstat_v2_fn(void *ud, const char *key, uint64_t v)
{
        for (size_t i = 0; i < US_ELEMENTSOF(memstat_v2); i++)
                if (strcmp(memstat_v2[i].key, key) == 0)
                        *(uint64_t *)((char *)ud + memstat_v2[i].off) = v;
}

static void oom_fn(void *ud, const char *key, uint64_t v)
{
        Io__Containerd__Cgroups__V1__MemoryOomControl *o = ud;
        if (strcmp(key, "oom_kill_disable") == 0)
                o->oom_kill_disable = v;
        else if (strcmp(key, "under_oom") == 0)
                o->under_oom = v;
        else if (strcmp(key, "oom_kill") == 0)
                o->oom_kill = v;
}

static int memory_new(Metrics *m)
{
        m->memory = malloc(sizeof(*m->memory));
        if (!m->memory)
                return -ENOMEM;
        io__containerd__cgroups__v1__memory_stat__init(m->memory);
        MemoryEntry **e[] = {&m->memory->usage, &m->memory->swap, &m->memory->kernel,
                             &m->memory->kernel_tcp};
        for (size_t i = 0; i < US_ELEMENTSOF(e); i++) {
                *e[i] = malloc(sizeof(MemoryEntry));
                if (!*e[i])
                        return -ENOMEM;
                io__containerd__cgroups__v1__memory_entry__init(*e[i]);
        }
        m->memory_oom_control = malloc(sizeof(*m->memory_oom_control));
        if (!m->memory_oom_control)
                return -ENOMEM;
        io__containerd__cgroups__v1__memory_oom_control__init(m->memory_oom_control);
        return 0;
}

static int memory_v1(const char *dir, Metrics *m, struct us_error **err)
{
        int r = memory_new(m);
        if (r < 0)
                return r;
        r = parse_kv_file(dir, "memory.stat", memstat_v1_fn, m->memory, err);
        if (r < 0)
                return r;
        r = parse_kv_file(dir, "memory.oom_control", oom_fn, m->memory_oom_control, err);
        if (r < 0)
                return r;
        static const char *const modules[] = {"memory.", "memory.memsw.", "memory.kmem.",
                                              "memory.kmem.tcp."};
        MemoryEntry *entries[] = {m->memory->usage, m->memory->swap, m->memory->kernel,
                                  m->memory->kernel_tcp};
        for (size_t i = 0; i < US_ELEMENTSOF(modules); i++) {
                static const char *const names[] = {"usage_in_bytes", "max_usage_in_bytes",
                                                    "failcnt", "limit_in_bytes"};
                uint64_t *fields[] = {&entries[i]->usage, &entries[i]->max, &entries[i]->failcnt,
                                      &entries[i]->limit};
                for (size_t j = 0; j < US_ELEMENTSOF(names); j++) {
                        char file[64];
                        snprintf(file, sizeof(file), "%s%s", modules[i], names[j]);
                        r = read_u64_opt(dir, file, fields[j], err);
                        if (r < 0)
                                return r;
                }
        }
        return 0;
}

static void events_fn(void *ud, const char *key, uint64_t v)
{
        Io__Containerd__Cgroups__V1__MemoryOomControl *o = ud;
        if (strcmp(key, "oom_kill") == 0)
                o->oom_kill = v;
        else if (strcmp(key, "oom") == 0)
                o->under_oom = v; /* v2 counts OOM events; v1 has a 0/1 state */
}

static int memory_v2(const char *dir, Metrics *m, struct us_error **err)
{
        int r = memory_new(m);
        if (r < 0)
                return r;
        r = parse_kv_file(dir, "memory.stat", memstat_v2_fn, m->memory, err);
        if (r < 0)
                return r;
        r = parse_kv_file(dir, "memory.events", events_fn, m->memory_oom_control, err);
        if (r < 0)
                return r;
        const struct {
                const char *file;
                uint64_t *v;
        } files[] = {
                {"memory.current", &m->memory->usage->usage},
                {"memory.max", &m->memory->usage->limit},
                {"memory.peak", &m->memory->usage->max},
                {"memory.swap.current", &m->memory->swap->usage},
                {"memory.swap.max", &m->memory->swap->limit},
        };
        for (size_t i = 0; i < US_ELEMENTSOF(files); i++) {
                r = read_u64_opt(dir, files[i].file, files[i].v, err);
                if (r < 0)
                        return r;
        }
        return 0;
}

static int pids_stat(const char *dir, Metrics *m, struct us_error **err)
{
        m->pids = malloc(sizeof(*m->pids));
        if (!m->pids)
                return -ENOMEM;
        io__containerd__cgroups__v1__pids_stat__init(m->pids);
        int r = read_u64_opt(dir, "pids.current", &m->pids->current, err);
        if (r < 0)
                return r;
        uint64_t max = 0;
        r = read_u64_opt(dir, "pids.max", &max, err);
        if (r < 0)
                return r;
        m->pids->limit = max == UINT64_MAX ? 0 : max; /* "max" reads as 0, as containerd */
        return 0;
}

static int cpu_new(Metrics *m)
{
        if (m->cpu)
                return 0;
        m->cpu = malloc(sizeof(*m->cpu));
        if (!m->cpu)
                return -ENOMEM;
        io__containerd__cgroups__v1__cpustat__init(m->cpu);
        m->cpu->usage = malloc(sizeof(*m->cpu->usage));
        m->cpu->throttling = malloc(sizeof(*m->cpu->throttling));
        if (!m->cpu->usage || !m->cpu->throttling)
                return -ENOMEM;
        io__containerd__cgroups__v1__cpuusage__init(m->cpu->usage);
        io__containerd__cgroups__v1__throttle__init(m->cpu->throttling);
        return 0;
}

struct cpustat_ud {
        Io__Containerd__Cgroups__V1__CPUStat *cpu;
        uint64_t scale; /* 1000 for v2's microseconds */
        bool v2;
};

static void cpustat_fn(void *ud, const char *key, uint64_t v)
{
        struct cpustat_ud *c = ud;
        if (strcmp(key, "nr_periods") == 0)
                c->cpu->throttling->periods = v;
        else if (strcmp(key, "nr_throttled") == 0)
                c->cpu->throttling->throttled_periods = v;
        else if (strcmp(key, c->v2 ? "throttled_usec" : "throttled_time") == 0)
                c->cpu->throttling->throttled_time = v * c->scale;
        else if (c->v2 && strcmp(key, "usage_usec") == 0)
                c->cpu->usage->total = v * 1000;
        else if (c->v2 && strcmp(key, "user_usec") == 0)
                c->cpu->usage->user = v * 1000;
        else if (c->v2 && strcmp(key, "system_usec") == 0)
                c->cpu->usage->kernel = v * 1000;
}

static int cpu_stat_file(const char *dir, Metrics *m, bool v2, struct us_error **err)
{
        int r = cpu_new(m);
        if (r < 0)
                return r;
        struct cpustat_ud ud = {.cpu = m->cpu, .scale = v2 ? 1000 : 1, .v2 = v2};
        return parse_kv_file(dir, "cpu.stat", cpustat_fn, &ud, err);
}

static uint64_t clock_ticks(void)
{
        long t = sysconf(_SC_CLK_TCK);
        return t > 0 ? (uint64_t)t : 100;
}

static void cpuacct_fn(void *ud, const char *key, uint64_t v)
{
        Io__Containerd__Cgroups__V1__CPUUsage *u = ud;
        uint64_t ns = v * 1000000000ull / clock_ticks();
        if (strcmp(key, "user") == 0)
                u->user = ns;
        else if (strcmp(key, "system") == 0)
                u->kernel = ns;
}

static int cpuacct_stat(const char *dir, Metrics *m, struct us_error **err)
{
        int r = cpu_new(m);
        if (r < 0)
                return r;
        r = read_u64_opt(dir, "cpuacct.usage", &m->cpu->usage->total, err);
        if (r < 0)
                return r;
        r = parse_kv_file(dir, "cpuacct.stat", cpuacct_fn, m->cpu->usage, err);
        if (r < 0)
                return r;
        _cleanup_free_ char *text = NULL;
        r = read_opt(dir, "cpuacct.usage_percpu", &text, err);
        if (r < 0 || !text)
                return r;
        uint64_t *v = calloc(MAX_PERCPU, sizeof(*v));
        if (!v)
                return -ENOMEM;
        size_t n = 0;
        char *save = NULL;
        for (char *t = strtok_r(text, " \n\t", &save); t; t = strtok_r(NULL, " \n\t", &save)) {
                if (n == MAX_PERCPU || us_cg_parse_u64(t, &v[n]) < 0) {
                        free(v);
                        return us_error_msg(err, EINVAL, "parse %s/cpuacct.usage_percpu", dir);
                }
                n++;
        }
        m->cpu->usage->per_cpu = v;
        m->cpu->usage->n_per_cpu = n;
        return 0;
}

/* ---- blkio (v1) ---- */

struct blkvec {
        BlkIOEntry ***v;
        size_t *n;
};

static char *device_name(const char *partitions, uint64_t major, uint64_t minor)
{
        /* /proc/partitions: "major minor  #blocks  name" */
        for (const char *line = partitions; line && *line;) {
                const char *nl = strchr(line, '\n');
                unsigned long long ma, mi, blocks;
                char name[64];
                if (sscanf(line, "%llu %llu %llu %63s", &ma, &mi, &blocks, name) == 4 &&
                    ma == major && mi == minor) {
                        char *d = NULL;
                        if (asprintf(&d, "/dev/%s", name) < 0)
                                return NULL;
                        return d;
                }
                line = nl ? nl + 1 : NULL;
        }
        return NULL;
}

static int blkio_file(const char *dir, const char *file, const char *partitions,
                      BlkIOEntry ***ret_v, size_t *ret_n, struct us_error **err)
{
        _cleanup_free_ char *text = NULL;
        int r = read_opt(dir, file, &text, err);
        if (r < 0 || !text)
                return r;
        for (char *line = text; line && *line;) {
                char *nl = strchr(line, '\n');
                if (nl)
                        *nl = '\0';
                char *next = nl ? nl + 1 : NULL;
                char *f[4];
                size_t nf = 0;
                char *save = NULL;
                for (char *t = strtok_r(line, " :", &save); t && nf < 4;
                     t = strtok_r(NULL, " :", &save))
                        f[nf++] = t;
                if (nf == 2 && strcmp(f[0], "Total") == 0) {
                        line = next;
                        continue;
                }
                if (nf == 0) {
                        line = next;
                        continue;
                }
                if (nf < 3)
                        return us_error_msg(err, EINVAL, "parse %s/%s: bad line", dir, file);
                uint64_t major, minor, value;
                const char *op = nf == 4 ? f[2] : "";
                if (us_cg_parse_u64(f[0], &major) < 0 || us_cg_parse_u64(f[1], &minor) < 0 ||
                    us_cg_parse_u64(f[nf - 1], &value) < 0)
                        return us_error_msg(err, EINVAL, "parse %s/%s: bad line", dir, file);
                if (*ret_n >= MAX_BLK_ENTRIES)
                        return us_error_msg(err, E2BIG, "parse %s/%s: too many lines", dir, file);
                BlkIOEntry **nv = realloc(*ret_v, (*ret_n + 1) * sizeof(*nv));
                if (!nv)
                        return -ENOMEM;
                *ret_v = nv;
                BlkIOEntry *e = malloc(sizeof(*e));
                if (!e)
                        return -ENOMEM;
                io__containerd__cgroups__v1__blk_ioentry__init(e);
                nv[(*ret_n)++] = e;
                e->major = major;
                e->minor = minor;
                e->value = value;
                if (op[0] && !(e->op = strdup(op)))
                        return -ENOMEM;
                char *dev = partitions ? device_name(partitions, major, minor) : NULL;
                if (dev)
                        e->device = dev;
                line = next;
        }
        return 0;
}

static int blkio_stat(const char *dir, Metrics *m, struct us_error **err)
{
        m->blkio = malloc(sizeof(*m->blkio));
        if (!m->blkio)
                return -ENOMEM;
        Io__Containerd__Cgroups__V1__BlkIOStat *b = m->blkio;
        io__containerd__cgroups__v1__blk_iostat__init(b);
        _cleanup_free_ char *partitions = NULL;
        if (us_cg_read("/proc", "partitions", &partitions, NULL) < 0)
                partitions = NULL;
        int r;
        if (us_cg_exists(dir, "blkio.io_serviced_recursive")) {
                const struct {
                        const char *file;
                        BlkIOEntry ***v;
                        size_t *n;
                } files[] = {
                        {"blkio.sectors_recursive", &b->sectors_recursive, &b->n_sectors_recursive},
                        {"blkio.io_service_bytes_recursive", &b->io_service_bytes_recursive,
                         &b->n_io_service_bytes_recursive},
                        {"blkio.io_serviced_recursive", &b->io_serviced_recursive,
                         &b->n_io_serviced_recursive},
                        {"blkio.io_queued_recursive", &b->io_queued_recursive,
                         &b->n_io_queued_recursive},
                        {"blkio.io_service_time_recursive", &b->io_service_time_recursive,
                         &b->n_io_service_time_recursive},
                        {"blkio.io_wait_time_recursive", &b->io_wait_time_recursive,
                         &b->n_io_wait_time_recursive},
                        {"blkio.io_merged_recursive", &b->io_merged_recursive,
                         &b->n_io_merged_recursive},
                        {"blkio.time_recursive", &b->io_time_recursive, &b->n_io_time_recursive},
                };
                size_t total = 0;
                for (size_t i = 0; i < US_ELEMENTSOF(files); i++) {
                        r = blkio_file(dir, files[i].file, partitions, files[i].v, files[i].n, err);
                        if (r < 0)
                                return r;
                        total += *files[i].n;
                }
                if (total > 0)
                        return 0;
        }
        /* No CFQ/BFQ statistics: the throttle policy's counters. */
        r = blkio_file(dir, "blkio.throttle.io_serviced", partitions, &b->io_serviced_recursive,
                       &b->n_io_serviced_recursive, err);
        if (r < 0)
                return r;
        return blkio_file(dir, "blkio.throttle.io_service_bytes", partitions,
                          &b->io_service_bytes_recursive, &b->n_io_service_bytes_recursive, err);
}

static int collect(struct us_cgroup *cg, Metrics *m, struct us_error **err)
{
        int r;
        const char *v2 = us_cg_v2_ctrl_dir(cg);
        const char *d;
        if (v2) {
                if ((r = pids_stat(v2, m, err)) < 0)
                        return r;
                if ((r = cpu_stat_file(v2, m, true, err)) < 0)
                        return r;
                return memory_v2(v2, m, err);
        }
        if ((d = us_cg_v1_dir(cg, US_CG_PIDS)) && (r = pids_stat(d, m, err)) < 0)
                return r;
        if ((d = us_cg_v1_dir(cg, US_CG_CPUACCT)) && (r = cpuacct_stat(d, m, err)) < 0)
                return r;
        if ((d = us_cg_v1_dir(cg, US_CG_CPU)) && (r = cpu_stat_file(d, m, false, err)) < 0)
                return r;
        if ((d = us_cg_v1_dir(cg, US_CG_MEMORY)) && (r = memory_v1(d, m, err)) < 0)
                return r;
        if ((d = us_cg_v1_dir(cg, US_CG_BLKIO)) && (r = blkio_stat(d, m, err)) < 0)
                return r;
        return 0;
}

int us_cgroup_stats(struct us_cgroup *cg, struct _Io__Containerd__Cgroups__V1__Metrics **ret,
                    struct us_error **err)
{
        _cleanup_(us_cgroup_stats_free_cleanupp) Metrics *m = malloc(sizeof(*m));
        if (!m)
                return us_errorf(err, ENOMEM, "stats of cgroup %s", us_cgroup_path(cg));
        io__containerd__cgroups__v1__metrics__init(m);
        int r = collect(cg, m, err);
        if (r < 0)
                return us_error_wrap(err, r, "stats of cgroup %s", us_cgroup_path(cg));
        *ret = TAKE_PTR(m);
        return 0;
}

int us_cgroup_stats_packed(struct us_cgroup *cg, uint8_t **ret, size_t *ret_len,
                           struct us_error **err)
{
        _cleanup_(us_cgroup_stats_free_cleanupp) Metrics *m = NULL;
        int r = us_cgroup_stats(cg, &m, err);
        if (r < 0)
                return r;
        size_t n = protobuf_c_message_get_packed_size(&m->base);
        uint8_t *buf = malloc(n ? n : 1);
        if (!buf)
                return us_errorf(err, ENOMEM, "pack stats of %s", us_cgroup_path(cg));
        protobuf_c_message_pack(&m->base, buf);
        *ret = buf;
        *ret_len = n;
        return 0;
}
