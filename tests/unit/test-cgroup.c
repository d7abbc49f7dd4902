/* SPDX-License-Identifier: Apache-2.0 */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <linux/magic.h>
#include <sched.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/wait.h>
#include <unistd.h>

#include "unit.h"

#include "cgroup/cgroup.h"
#include "containerd/cgroups-v1-metrics.pb-c.h"

/* ---- helpers ---- */

static int rm_cb(const char *p, const struct stat *st, int flag, struct FTW *ftw)
{
        (void)st;
        (void)flag;
        (void)ftw;
        return remove(p) < 0 && errno != ENOENT ? -1 : 0;
}

static void rm_rf(const char *p)
{
        (void)nftw(p, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
}

static void put(const char *dir, const char *file, const char *content)
{
        char p[4096];
        snprintf(p, sizeof(p), "%s/%s", dir, file);
        FILE *f = fopen(p, "we");
        assert_non_null(f);
        fputs(content, f);
        fclose(f);
}

/* Contents of dir/file without a trailing newline, in a static buffer. */
static const char *get(const char *dir, const char *file)
{
        static char buf[8192];
        char p[4096];
        snprintf(p, sizeof(p), "%s/%s", dir, file);
        FILE *f = fopen(p, "re");
        if (!f)
                return NULL;
        size_t n = fread(buf, 1, sizeof(buf) - 1, f);
        fclose(f);
        buf[n] = '\0';
        while (n > 0 && buf[n - 1] == '\n')
                buf[--n] = '\0';
        return buf;
}

static void mkdirp(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void mkdirp(const char *fmt, ...)
{
        char p[4096];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(p, sizeof(p), fmt, ap);
        va_end(ap);
        for (char *s = p + 1; *s; s++)
                if (*s == '/') {
                        *s = '\0';
                        (void)mkdir(p, 0755);
                        *s = '/';
                }
        (void)mkdir(p, 0755);
}

struct fake {
        char root[256];
        char mountinfo[4096];
        struct us_cgroup_layout *layout;
};

static const char *const fake_hiers[][2] = {
        {"cpu,cpuacct", "rw,cpu,cpuacct"},
        {"cpuset", "rw,cpuset"},
        {"memory", "rw,memory"},
        {"devices", "rw,devices"},
        {"freezer", "rw,freezer"},
        {"blkio", "rw,blkio"},
        {"pids", "rw,pids"},
        {"systemd", "rw,xattr,name=systemd"},
};

/* A hybrid host in a tmpdir: plain directories, a mountinfo describing them. */
static int fake_setup(void **state)
{
        struct fake *f = calloc(1, sizeof(*f));
        assert_non_null(f);
        snprintf(f->root, sizeof(f->root), "/tmp/unishim-cgtest-XXXXXX");
        assert_non_null(mkdtemp(f->root));
        size_t off = 0;
        off += (size_t)snprintf(f->mountinfo + off, sizeof(f->mountinfo) - off,
                                "31 23 0:28 / %s rw,relatime - tmpfs tmpfs rw,mode=755\n", f->root);
        for (size_t i = 0; i < sizeof(fake_hiers) / sizeof(fake_hiers[0]); i++) {
                mkdirp("%s/%s", f->root, fake_hiers[i][0]);
                off += (size_t)snprintf(f->mountinfo + off, sizeof(f->mountinfo) - off,
                                        "%zu 31 0:%zu / %s/%s rw,relatime shared:9 - cgroup "
                                        "cgroup %s\n",
                                        32 + i, 29 + i, f->root, fake_hiers[i][0],
                                        fake_hiers[i][1]);
        }
        mkdirp("%s/unified", f->root);
        off += (size_t)snprintf(f->mountinfo + off, sizeof(f->mountinfo) - off,
                                "41 31 0:38 / %s/unified rw,relatime - cgroup2 cgroup2 rw\n",
                                f->root);
        char d[512];
        snprintf(d, sizeof(d), "%s/cpuset", f->root);
        put(d, "cpuset.cpus", "0-1\n");
        put(d, "cpuset.mems", "0\n");
        struct us_error *err = NULL;
        int r = us_cgroup_layout_parse(f->root, f->mountinfo, strlen(f->mountinfo),
                                       US_CGROUP_LAYOUT_FAKE, &f->layout, &err);
        if (r < 0)
                fail_msg("%s", us_error_text(err));
        *state = f;
        return 0;
}

static int fake_teardown(void **state)
{
        struct fake *f = *state;
        rm_rf(f->root);
        us_cgroup_layout_free(f->layout);
        free(f);
        return 0;
}

static struct us_cgroup *fake_create(struct fake *f, const char *path)
{
        struct us_cgroup *cg = NULL;
        struct us_error *err = NULL;
        int r = us_cgroup_create_in(f->layout, path, &cg, &err);
        if (r < 0)
                fail_msg("create: %s", us_error_text(err));
        return cg;
}

/* ---- paths ---- */

static void path_check(const char *p, size_t len, int want, const char *want_norm,
                       const char *want_msg)
{
        char *norm = NULL;
        struct us_error *err = NULL;
        int r = us_cgroup_path_validate(p, len, &norm, &err);
        assert_int_equal(r, want);
        if (want == 0) {
                assert_string_equal(norm, want_norm);
        } else {
                assert_null(norm);
                if (want_msg && !strstr(us_error_text(err), want_msg))
                        fail_msg("error \"%s\" lacks \"%s\"", us_error_text(err), want_msg);
        }
        free(norm);
        us_error_free(err);
}

static void path_validation(void **state)
{
        (void)state;
        path_check("/default/abc", 12, 0, "/default/abc", NULL);
        path_check("kubepods/besteffort/pod123/abc", 30, 0, "/kubepods/besteffort/pod123/abc",
                   NULL);
        path_check("abc", 3, 0, "/abc", NULL);
        path_check("..abc/x.y", 9, 0, "/..abc/x.y", NULL);
        path_check("system.slice:cri-containerd:abc", 31, -EINVAL, NULL,
                   "systemd cgroup paths are not supported");
        path_check("", 0, -EINVAL, NULL, "empty");
        path_check("/", 1, -EINVAL, NULL, "root");
        path_check("/a//b", 5, -EINVAL, NULL, "empty component");
        path_check("/a/", 3, -EINVAL, NULL, "empty component");
        path_check("/a/../b", 7, -EINVAL, NULL, "..");
        path_check("..", 2, -EINVAL, NULL, "..");
        path_check("a/.", 3, -EINVAL, NULL, "..");
        path_check("a\0b", 3, -EINVAL, NULL, "NUL");
        static char longp[5000];
        memset(longp, 'a', sizeof(longp));
        for (size_t i = 100; i < sizeof(longp); i += 100)
                longp[i] = '/';
        path_check(longp, sizeof(longp), -ENAMETOOLONG, NULL, "longer");
        char comp[300];
        memset(comp, 'b', sizeof(comp));
        path_check(comp, sizeof(comp), -ENAMETOOLONG, NULL, "component");

        /* create refuses the same paths before touching anything. */
        struct us_cgroup *cg = NULL;
        struct us_error *err = NULL;
        assert_int_equal(us_cgroup_create("/nonexistent-root", "a:b:c", &cg, &err), -EINVAL);
        assert_null(cg);
        assert_non_null(strstr(us_error_text(err), "systemd cgroup paths are not supported"));
        us_error_free(err);
}

/* ---- layout ---- */

static const char host_mountinfo[] =
        "25 30 0:23 / /sys rw,nosuid,nodev,noexec,relatime shared:7 - sysfs sysfs rw\n"
        "31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755\n"
        "32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct\n"
        "34 31 0:31 / /sys/fs/cgroup/cpuset rw,relatime - cgroup cgroup rw,cpuset\n"
        "35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory\n"
        "36 31 0:33 / /sys/fs/cgroup/devices rw,relatime - cgroup cgroup rw,devices\n"
        "37 31 0:34 / /sys/fs/cgroup/freezer rw,relatime - cgroup cgroup rw,freezer\n"
        "38 31 0:35 / /sys/fs/cgroup/blkio rw,relatime - cgroup cgroup rw,blkio\n"
        "39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids\n"
        "40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,xattr,name=systemd\n"
        "41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw,nsdelegate\n"
        /* not under the root, or nested deeper: ignored */
        "50 23 0:40 / /mnt/cg/memory rw - cgroup cgroup rw,memory\n"
        "51 41 0:41 / /sys/fs/cgroup/unified/sub rw - cgroup2 cgroup2 rw\n"
        /* garbage lines are skipped */
        "garbage\n"
        "52 23 0:42 / /x - \n";

static void layout_hybrid(void **state)
{
        (void)state;
        struct us_cgroup_layout *l = NULL;
        struct us_error *err = NULL;
        assert_int_equal(us_cgroup_layout_parse("/sys/fs/cgroup/", host_mountinfo,
                                                strlen(host_mountinfo), 0, &l, &err),
                         0);
        assert_int_equal(us_cgroup_layout_mode(l), US_CGROUP_HYBRID);
        assert_int_equal(us_cgroup_layout_count(l), 9);
        assert_string_equal(us_cgroup_layout_controller(l, "cpu"), "/sys/fs/cgroup/cpu,cpuacct");
        assert_string_equal(us_cgroup_layout_controller(l, "cpuacct"),
                            "/sys/fs/cgroup/cpu,cpuacct");
        assert_string_equal(us_cgroup_layout_controller(l, "memory"), "/sys/fs/cgroup/memory");
        assert_string_equal(us_cgroup_layout_controller(l, "name=systemd"),
                            "/sys/fs/cgroup/systemd");
        assert_string_equal(us_cgroup_layout_controller(l, "unified"), "/sys/fs/cgroup/unified");
        assert_null(us_cgroup_layout_controller(l, "hugetlb"));
        assert_null(us_cgroup_layout_controller(l, "nonsense"));
        bool v2 = false;
        assert_string_equal(us_cgroup_layout_mountpoint(l, 8, &v2), "/sys/fs/cgroup/unified");
        assert_true(v2);
        assert_null(us_cgroup_layout_mountpoint(l, 9, NULL));

        /* the cgroup's directories follow the hierarchies */
        struct us_cgroup *cg = NULL;
        assert_int_equal(us_cgroup_open_in(l, "/default/abc", &cg, &err), -ENOENT);
        us_error_free(err);
        l = us_cgroup_layout_free(l);
}

static void layout_v1_and_v2(void **state)
{
        (void)state;
        static const char v1[] = "31 23 0:28 / /cg rw - tmpfs tmpfs rw\n"
                                 "32 31 0:29 / /cg/cpu rw - cgroup cgroup rw,cpu\n"
                                 "33 31 0:30 / /cg/cpuacct rw - cgroup cgroup rw,cpuacct\n"
                                 "34 31 0:31 / /cg/my\\040mem rw - cgroup cgroup rw,memory\n"
                                 /* a later mount on the same point wins */
                                 "35 31 0:32 / /cg/cpu rw - cgroup cgroup rw,cpu,cpuset\n"
                                 "36 31 0:33 / /cg/sd rw - cgroup cgroup rw,xattr,name=systemd\n";
        struct us_cgroup_layout *l = NULL;
        struct us_error *err = NULL;
        assert_int_equal(us_cgroup_layout_parse("/cg", v1, strlen(v1), 0, &l, &err), 0);
        assert_int_equal(us_cgroup_layout_mode(l), US_CGROUP_V1);
        assert_int_equal(us_cgroup_layout_count(l), 4);
        assert_string_equal(us_cgroup_layout_controller(l, "cpuset"), "/cg/cpu");
        assert_string_equal(us_cgroup_layout_controller(l, "name=systemd"), "/cg/sd");
        assert_null(us_cgroup_layout_controller(l, "name=sd"));
        assert_string_equal(us_cgroup_layout_controller(l, "cpuacct"), "/cg/cpuacct");
        assert_string_equal(us_cgroup_layout_controller(l, "memory"), "/cg/my mem");
        assert_null(us_cgroup_layout_controller(l, "unified"));
        l = us_cgroup_layout_free(l);

        assert_int_equal(us_cgroup_layout_parse("/cg", "", 0, 0, &l, &err), -ENOENT);
        assert_non_null(strstr(us_error_text(err), "no cgroup hierarchies"));
        err = us_error_free(err);
        assert_int_equal(us_cgroup_layout_parse("relative", v1, strlen(v1), 0, &l, &err), -EINVAL);
        err = us_error_free(err);

        assert_int_equal(us_cgroup_layout_parse("/sys/fs/cgroup", NULL, 0,
                                                US_CGROUP_LAYOUT_ROOT_IS_CGROUP2, &l, &err),
                         0);
        assert_int_equal(us_cgroup_layout_mode(l), US_CGROUP_V2);
        assert_int_equal(us_cgroup_layout_count(l), 1);
        assert_string_equal(us_cgroup_layout_controller(l, "unified"), "/sys/fs/cgroup");
        assert_null(us_cgroup_layout_controller(l, "memory"));
        us_cgroup_layout_free(l);
}

static void layout_detect_host(void **state)
{
        (void)state;
        struct statfs sfs;
        if (statfs("/sys/fs/cgroup", &sfs) < 0)
                unit_skip("no /sys/fs/cgroup");
        struct us_cgroup_layout *l = NULL;
        struct us_error *err = NULL;
        int r = us_cgroup_layout_detect(NULL, &l, &err);
        if (r < 0)
                fail_msg("%s", us_error_text(err));
        if ((unsigned long)sfs.f_type == (unsigned long)CGROUP2_SUPER_MAGIC)
                assert_int_equal(us_cgroup_layout_mode(l), US_CGROUP_V2);
        else
                assert_int_not_equal(us_cgroup_layout_mode(l), US_CGROUP_V2);
        us_cgroup_layout_free(l);
}

/* ---- resources on a fake tree ---- */

static void apply_v1(void **state)
{
        struct fake *f = *state;
        struct us_cgroup *cg = fake_create(f, "/default/abc");
        char d[512];

        /* cpuset quirk: cpus/mems copied down every level */
        snprintf(d, sizeof(d), "%s/cpuset/default", f->root);
        assert_string_equal(get(d, "cpuset.cpus"), "0-1");
        snprintf(d, sizeof(d), "%s/cpuset/default/abc", f->root);
        assert_string_equal(get(d, "cpuset.cpus"), "0-1");
        assert_string_equal(get(d, "cpuset.mems"), "0");
        assert_string_equal(us_cgroup_dir(cg, "cpuacct"), us_cgroup_dir(cg, "cpu"));

        const char *mem = us_cgroup_dir(cg, "memory");
        put(mem, "memory.memsw.limit_in_bytes", "9223372036854771712\n");
        put(mem, "memory.limit_in_bytes", "9223372036854771712\n");

        struct us_oci_device_rule rules[] = {
                {.allow = false, .type = 'a', .major = -1, .minor = -1, .access = NULL},
                {.allow = true, .type = 'c', .major = 1, .minor = 3, .access = (char *)"rwm"},
                {.allow = true, .type = 'c', .major = 136, .minor = -1, .access = (char *)"rw"},
        };
        struct us_oci_resources res = {
                .devices = rules,
                .n_devices = 3,
                .memory = {.has_limit = true,
                           .limit = 1048576,
                           .has_swap = true,
                           .swap = 2097152,
                           .has_reservation = true,
                           .reservation = 524288,
                           .has_swappiness = true,
                           .swappiness = 10,
                           .has_kernel = true,
                           .kernel = 1000, /* no kmem file in the tree: ignored */
                           .has_disable_oom_killer = true,
                           .disable_oom_killer = true},
                .cpu = {.has_shares = true,
                        .shares = 512,
                        .has_quota = true,
                        .quota = 50000,
                        .has_period = true,
                        .period = 100000,
                        .cpus = (char *)"1",
                        .mems = (char *)"0"},
                .has_pids_limit = true,
                .pids_limit = 0,
                .has_blkio_weight = true,
                .blkio_weight = 300,
        };
        struct us_error *err = NULL;
        int r = us_cgroup_apply(cg, &res, &err);
        if (r < 0)
                fail_msg("%s", us_error_text(err));
        assert_string_equal(get(mem, "memory.limit_in_bytes"), "1048576");
        assert_string_equal(get(mem, "memory.memsw.limit_in_bytes"), "2097152");
        assert_string_equal(get(mem, "memory.soft_limit_in_bytes"), "524288");
        assert_string_equal(get(mem, "memory.swappiness"), "10");
        assert_string_equal(get(mem, "memory.oom_control"), "1");
        assert_null(get(mem, "memory.kmem.limit_in_bytes"));
        const char *cpu = us_cgroup_dir(cg, "cpu");
        assert_string_equal(get(cpu, "cpu.shares"), "512");
        assert_string_equal(get(cpu, "cpu.cfs_quota_us"), "50000");
        assert_string_equal(get(cpu, "cpu.cfs_period_us"), "100000");
        assert_string_equal(get(us_cgroup_dir(cg, "cpuset"), "cpuset.cpus"), "1");
        assert_string_equal(get(us_cgroup_dir(cg, "pids"), "pids.max"), "max");
        assert_string_equal(get(us_cgroup_dir(cg, "blkio"), "blkio.weight"), "300");
        const char *dev = us_cgroup_dir(cg, "devices");
        assert_string_equal(get(dev, "devices.deny"), "a *:* rwm");
        assert_string_equal(get(dev, "devices.allow"), "c 1:3 rwm\nc 136:* rw");
        /* v2 files are not touched on a hybrid host */
        assert_null(get(us_cgroup_dir(cg, "unified"), "cpu.weight"));

        /* unified keys go to the cgroup2 directory; bad keys are refused */
        struct us_oci_kv kv[] = {{(char *)"cgroup.max.depth", (char *)"5"}};
        struct us_oci_resources ures = {.unified = kv, .n_unified = 1};
        assert_int_equal(us_cgroup_apply(cg, &ures, &err), 0);
        assert_string_equal(get(us_cgroup_dir(cg, "unified"), "cgroup.max.depth"), "5");
        struct us_oci_kv bad[] = {{(char *)"../../escape", (char *)"1"}};
        struct us_oci_resources bres = {.unified = bad, .n_unified = 1};
        assert_int_equal(us_cgroup_apply(cg, &bres, &err), -EINVAL);
        assert_non_null(strstr(us_error_text(err), "invalid unified cgroup key"));
        err = us_error_free(err);
        struct us_oci_kv bad2[] = {{(char *)"a/b", (char *)"1"}};
        bres.unified = bad2;
        assert_int_equal(us_cgroup_apply(cg, &bres, &err), -EINVAL);
        err = us_error_free(err);

        /* pids: a positive limit is written as is */
        res = (struct us_oci_resources){.has_pids_limit = true, .pids_limit = 42};
        assert_int_equal(us_cgroup_apply(cg, &res, &err), 0);
        assert_string_equal(get(us_cgroup_dir(cg, "pids"), "pids.max"), "42");

        /* an error names the file and the value */
        snprintf(d, sizeof(d), "%s/pids.max", us_cgroup_dir(cg, "pids"));
        assert_int_equal(unlink(d), 0);
        assert_int_equal(mkdir(d, 0755), 0);
        assert_int_equal(us_cgroup_apply(cg, &res, &err), -EISDIR);
        assert_non_null(strstr(us_error_text(err), "set pids.max to 42: Is a directory"));
        err = us_error_free(err);
        us_cgroup_free(cg);
}

/* memory.limit_in_bytes and memsw go in runc's order: swap first when it
 * grows past the current limit, the limit first otherwise. Making memsw a
 * directory fails its write, which shows what was written before it. */
static void apply_memsw_order(void **state)
{
        struct fake *f = *state;
        struct us_cgroup *cg = fake_create(f, "/order");
        const char *mem = us_cgroup_dir(cg, "memory");
        char p[512];
        snprintf(p, sizeof(p), "%s/memory.memsw.limit_in_bytes", mem);
        assert_int_equal(mkdir(p, 0755), 0);
        struct us_error *err = NULL;

        /* lowering: current 1000000 >= new swap 600000 -> limit first */
        put(mem, "memory.limit_in_bytes", "1000000\n");
        struct us_oci_resources res = {
                .memory = {.has_limit = true, .limit = 500000, .has_swap = true, .swap = 600000}};
        assert_int_equal(us_cgroup_apply(cg, &res, &err), -EISDIR);
        assert_non_null(strstr(us_error_text(err), "set memory.memsw.limit_in_bytes to 600000"));
        err = us_error_free(err);
        assert_string_equal(get(mem, "memory.limit_in_bytes"), "500000");

        /* raising: current 100 < new swap 600000 -> swap first, limit untouched */
        put(mem, "memory.limit_in_bytes", "100\n");
        assert_int_equal(us_cgroup_apply(cg, &res, &err), -EISDIR);
        err = us_error_free(err);
        assert_string_equal(get(mem, "memory.limit_in_bytes"), "100");

        /* unlimited swap goes first too */
        put(mem, "memory.limit_in_bytes", "100\n");
        res.memory.swap = -1;
        assert_int_equal(us_cgroup_apply(cg, &res, &err), -EISDIR);
        err = us_error_free(err);
        assert_string_equal(get(mem, "memory.limit_in_bytes"), "100");

        /* without swap accounting (no memsw file) only the limit is set */
        assert_int_equal(rmdir(p), 0);
        assert_int_equal(us_cgroup_apply(cg, &res, &err), 0);
        assert_string_equal(get(mem, "memory.limit_in_bytes"), "500000");
        assert_null(get(mem, "memory.memsw.limit_in_bytes"));
        us_cgroup_free(cg);
}

static void shares_to_weight(void **state)
{
        (void)state;
        assert_int_equal(us_cgroup_shares_to_weight(0), 0);
        assert_int_equal(us_cgroup_shares_to_weight(2), 1);
        assert_int_equal(us_cgroup_shares_to_weight(1024), 39);
        assert_int_equal(us_cgroup_shares_to_weight(262144), 10000);
        assert_int_equal(us_cgroup_shares_to_weight(1u << 30), 10000);
}

static void apply_v2(void **state)
{
        (void)state;
        char root[] = "/tmp/unishim-cgv2-XXXXXX";
        assert_non_null(mkdtemp(root));
        put(root, "cgroup.controllers", "cpu memory pids");
        struct us_cgroup_layout *l = NULL;
        struct us_error *err = NULL;
        assert_int_equal(
                us_cgroup_layout_parse(root, NULL, 0,
                                       US_CGROUP_LAYOUT_ROOT_IS_CGROUP2 | US_CGROUP_LAYOUT_FAKE, &l,
                                       &err),
                0);
        struct us_cgroup *cg = NULL;
        assert_int_equal(us_cgroup_create_in(l, "kubepods/pod1/abc", &cg, &err), 0);
        assert_string_equal(us_cgroup_path(cg), "/kubepods/pod1/abc");
        const char *d = us_cgroup_dir(cg, "unified");
        char want[512];
        snprintf(want, sizeof(want), "%s/kubepods/pod1/abc", root);
        assert_string_equal(d, want);
        /* controllers were enabled in the ancestors, all in one write */
        snprintf(want, sizeof(want), "%s/kubepods/pod1", root);
        assert_string_equal(get(want, "cgroup.subtree_control"), "+cpu +memory +pids");
        /* a second cgroup: only what the parent does not list yet is
         * written (the kernel lists them without "+") */
        put(want, "cgroup.subtree_control", "cpu memory");
        struct us_cgroup *cg2 = NULL;
        assert_int_equal(us_cgroup_create_in(l, "kubepods/pod1/def", &cg2, &err), 0);
        assert_string_equal(get(want, "cgroup.subtree_control"), "+pids");
        put(want, "cgroup.subtree_control", "cpu memory pids");
        us_cgroup_free(cg2);
        cg2 = NULL;
        assert_int_equal(us_cgroup_create_in(l, "kubepods/pod1/ghi", &cg2, &err), 0);
        assert_string_equal(get(want, "cgroup.subtree_control"), "cpu memory pids");
        /* a parent of containers gives its children what it has */
        put(us_cgroup_dir(cg2, "unified"), "cgroup.controllers", "memory pids");
        assert_int_equal(us_cgroup_enable_children(cg2, &err), 0);
        assert_string_equal(get(us_cgroup_dir(cg2, "unified"), "cgroup.subtree_control"),
                            "+memory +pids");
        us_cgroup_free(cg2);

        struct us_oci_device_rule rules[] = {
                {.allow = false, .type = 'a', .major = -1, .minor = -1}};
        struct us_oci_kv kv[] = {{(char *)"memory.high", (char *)"123456"}};
        struct us_oci_resources res = {
                .devices = rules,
                .n_devices = 1,
                .memory = {.has_limit = true,
                           .limit = 1048576,
                           .has_swap = true,
                           .swap = 3145728,
                           .has_reservation = true,
                           .reservation = 4096,
                           .has_swappiness = true,
                           .swappiness = 60},
                .cpu = {.has_shares = true,
                        .shares = 1024,
                        .has_quota = true,
                        .quota = 50000,
                        .has_period = true,
                        .period = 100000},
                .has_pids_limit = true,
                .pids_limit = -1,
                .has_blkio_weight = true,
                .blkio_weight = 500,
                .unified = kv,
                .n_unified = 1,
        };
        int r = us_cgroup_apply(cg, &res, &err);
        if (r < 0)
                fail_msg("%s", us_error_text(err));
        assert_string_equal(get(d, "memory.max"), "1048576");
        assert_string_equal(get(d, "memory.swap.max"), "2097152");
        assert_string_equal(get(d, "memory.low"), "4096");
        assert_null(get(d, "memory.swappiness"));
        assert_string_equal(get(d, "cpu.weight"), "39");
        assert_string_equal(get(d, "cpu.max"), "50000 100000");
        assert_string_equal(get(d, "pids.max"), "max");
        assert_string_equal(get(d, "io.weight"), "default 4950");
        assert_string_equal(get(d, "memory.high"), "123456");
        assert_null(get(d, "devices.deny")); /* v2 devices: eBPF, not done */

        /* quota -1 with a period: "max <period>"; unlimited memory */
        res = (struct us_oci_resources){
                .memory = {.has_limit = true, .limit = -1},
                .cpu = {.has_quota = true, .quota = -1, .has_period = true, .period = 20000}};
        assert_int_equal(us_cgroup_apply(cg, &res, &err), 0);
        assert_string_equal(get(d, "cpu.max"), "max 20000");
        assert_string_equal(get(d, "memory.max"), "max");
        assert_string_equal(get(d, "memory.swap.max"), "max");

        /* swap below the limit is refused */
        res = (struct us_oci_resources){
                .memory = {.has_limit = true, .limit = 1000, .has_swap = true, .swap = 10}};
        assert_int_equal(us_cgroup_apply(cg, &res, &err), -EINVAL);
        err = us_error_free(err);

        /* freeze on v2: cgroup.freeze, then cgroup.events says frozen */
        put(d, "cgroup.events", "populated 0\nfrozen 1\n");
        assert_int_equal(us_cgroup_freeze(cg, true, &err), 0);
        assert_string_equal(get(d, "cgroup.freeze"), "1");

        /* OOM count from memory.events */
        put(d, "memory.events", "low 0\nhigh 0\nmax 3\noom 2\noom_kill 2\n");
        uint64_t n = 0;
        assert_int_equal(us_cgroup_oom_count(cg, &n, &err), 0);
        assert_int_equal(n, 2);

        /* stats map what v2 has */
        put(d, "memory.current", "4096\n");
        put(d, "memory.stat", "anon 100\nfile 200\nfile_mapped 7\npgfault 9\n");
        put(d, "cpu.stat",
            "usage_usec 1000\nuser_usec 600\nsystem_usec 400\nnr_periods 5\nnr_throttled "
            "2\nthrottled_usec 30\n");
        put(d, "pids.current", "3\n");
        Io__Containerd__Cgroups__V1__Metrics *m = NULL;
        r = us_cgroup_stats(cg, &m, &err);
        if (r < 0)
                fail_msg("%s", us_error_text(err));
        assert_int_equal(m->pids->current, 3);
        assert_int_equal(m->pids->limit, 0); /* "max" */
        assert_int_equal(m->cpu->usage->total, 1000000);
        assert_int_equal(m->cpu->usage->user, 600000);
        assert_int_equal(m->cpu->usage->kernel, 400000);
        assert_int_equal(m->cpu->throttling->throttled_periods, 2);
        assert_int_equal(m->cpu->throttling->throttled_time, 30000);
        assert_int_equal(m->memory->usage->usage, 4096);
        assert_int_equal(m->memory->usage->limit, UINT64_MAX);
        assert_int_equal(m->memory->rss, 100);
        assert_int_equal(m->memory->cache, 200);
        assert_int_equal(m->memory->mapped_file, 7);
        assert_int_equal(m->memory_oom_control->oom_kill, 2);
        us_cgroup_stats_free(m);

        /* destroy thaws first (the fake kernel reports the thaw) */
        put(d, "cgroup.events", "populated 0\nfrozen 0\n");
        r = us_cgroup_destroy(cg, &err);
        if (r < 0)
                fail_msg("%s", us_error_text(err));
        assert_int_equal(access(d, F_OK), -1);
        us_cgroup_free(cg);
        us_cgroup_layout_free(l);
        rm_rf(root);
}

static void unified_on_v1_only(void **state)
{
        (void)state;
        char root[] = "/tmp/unishim-cgv1-XXXXXX";
        assert_non_null(mkdtemp(root));
        char mi[1024];
        snprintf(mi, sizeof(mi), "1 0 0:1 / %s/memory rw - cgroup cgroup rw,memory\n", root);
        mkdirp("%s/memory", root);
        struct us_cgroup_layout *l = NULL;
        struct us_error *err = NULL;
        assert_int_equal(
                us_cgroup_layout_parse(root, mi, strlen(mi), US_CGROUP_LAYOUT_FAKE, &l, &err), 0);
        struct us_cgroup *cg = NULL;
        assert_int_equal(us_cgroup_create_in(l, "/x", &cg, &err), 0);
        struct us_oci_kv kv[] = {{(char *)"memory.high", (char *)"1"}};
        struct us_oci_resources res = {.unified = kv, .n_unified = 1};
        assert_int_equal(us_cgroup_apply(cg, &res, &err), -ENOTSUP);
        assert_non_null(strstr(us_error_text(err), "cgroup v2"));
        us_error_free(err);
        us_cgroup_free(cg);
        us_cgroup_layout_free(l);
        rm_rf(root);
}

/* ---- stats, pids, freeze, destroy on the fake v1 tree ---- */

static void stats_v1(void **state)
{
        struct fake *f = *state;
        struct us_cgroup *cg = fake_create(f, "/default/stats");
        const char *mem = us_cgroup_dir(cg, "memory");
        put(mem, "memory.stat",
            "cache 11\nrss 12\nrss_huge 13\nmapped_file 14\ndirty 15\nwriteback 16\n"
            "pgpgin 17\npgpgout 18\npgfault 19\npgmajfault 20\ninactive_anon 21\n"
            "active_anon 22\ninactive_file 23\nactive_file 24\nunevictable 25\n"
            "hierarchical_memory_limit 26\nhierarchical_memsw_limit 27\nswap 99\n"
            "total_cache 31\ntotal_rss 32\ntotal_rss_huge 33\ntotal_mapped_file 34\n"
            "total_dirty 35\ntotal_writeback 36\ntotal_pgpgin 37\ntotal_pgpgout 38\n"
            "total_pgfault 39\ntotal_pgmajfault 40\ntotal_inactive_anon 41\n"
            "total_active_anon 42\ntotal_inactive_file 43\ntotal_active_file 44\n"
            "total_unevictable 45\n");
        put(mem, "memory.usage_in_bytes", "1000\n");
        put(mem, "memory.max_usage_in_bytes", "2000\n");
        put(mem, "memory.limit_in_bytes", "9223372036854771712\n");
        put(mem, "memory.failcnt", "3\n");
        put(mem, "memory.memsw.usage_in_bytes", "1500\n");
        put(mem, "memory.memsw.limit_in_bytes", "-1\n");
        put(mem, "memory.kmem.usage_in_bytes", "77\n");
        put(mem, "memory.oom_control", "oom_kill_disable 1\nunder_oom 0\noom_kill 4\n");
        const char *cpu = us_cgroup_dir(cg, "cpuacct");
        put(cpu, "cpuacct.usage", "123456789\n");
        put(cpu, "cpuacct.usage_percpu", "100 200 \n");
        put(cpu, "cpuacct.stat", "user 250\nsystem 50\n");
        put(cpu, "cpu.stat", "nr_periods 10\nnr_throttled 4\nthrottled_time 5555\n");
        const char *pids = us_cgroup_dir(cg, "pids");
        put(pids, "pids.current", "7\n");
        put(pids, "pids.max", "max\n");
        put(us_cgroup_dir(cg, "blkio"), "blkio.throttle.io_service_bytes",
            "8:0 Read 4096\n8:0 Write 8192\n8:0 Total 12288\nTotal 12288\n");

        Io__Containerd__Cgroups__V1__Metrics *m = NULL;
        struct us_error *err = NULL;
        int r = us_cgroup_stats(cg, &m, &err);
        if (r < 0)
                fail_msg("%s", us_error_text(err));
        uint64_t ticks = (uint64_t)sysconf(_SC_CLK_TCK);
        assert_int_equal(m->cpu->usage->total, 123456789);
        assert_int_equal(m->cpu->usage->user, 250ull * 1000000000ull / ticks);
        assert_int_equal(m->cpu->usage->kernel, 50ull * 1000000000ull / ticks);
        assert_int_equal(m->cpu->usage->n_per_cpu, 2);
        assert_int_equal(m->cpu->usage->per_cpu[1], 200);
        assert_int_equal(m->cpu->throttling->periods, 10);
        assert_int_equal(m->cpu->throttling->throttled_periods, 4);
        assert_int_equal(m->cpu->throttling->throttled_time, 5555);
        assert_int_equal(m->pids->current, 7);
        assert_int_equal(m->pids->limit, 0);
        const Io__Containerd__Cgroups__V1__MemoryStat *s = m->memory;
        assert_int_equal(s->cache, 11);
        assert_int_equal(s->rss, 12);
        assert_int_equal(s->rss_huge, 13);
        assert_int_equal(s->mapped_file, 14);
        assert_int_equal(s->pg_pg_in, 17);
        assert_int_equal(s->pg_maj_fault, 20);
        assert_int_equal(s->unevictable, 25);
        assert_int_equal(s->hierarchical_memory_limit, 26);
        assert_int_equal(s->hierarchical_swap_limit, 27);
        assert_int_equal(s->total_cache, 31);
        assert_int_equal(s->total_pg_pg_out, 38);
        assert_int_equal(s->total_unevictable, 45);
        assert_int_equal(s->usage->usage, 1000);
        assert_int_equal(s->usage->max, 2000);
        assert_int_equal(s->usage->limit, 9223372036854771712ull);
        assert_int_equal(s->usage->failcnt, 3);
        assert_int_equal(s->swap->usage, 1500);
        assert_int_equal(s->swap->limit, 0); /* negative reads as 0, as containerd */
        assert_int_equal(s->kernel->usage, 77);
        assert_int_equal(m->memory_oom_control->oom_kill_disable, 1);
        assert_int_equal(m->memory_oom_control->oom_kill, 4);
        assert_int_equal(m->blkio->n_io_service_bytes_recursive, 3);
        assert_string_equal(m->blkio->io_service_bytes_recursive[1]->op, "Write");
        assert_int_equal(m->blkio->io_service_bytes_recursive[1]->value, 8192);
        assert_int_equal(m->blkio->io_service_bytes_recursive[1]->major, 8);

        /* the message packs: what `ctr task metrics` would decode */
        size_t len = protobuf_c_message_get_packed_size(&m->base);
        assert_true(len > 0);
        us_cgroup_stats_free(m);

        uint64_t n = 0;
        assert_int_equal(us_cgroup_oom_count(cg, &n, &err), 0);
        assert_int_equal(n, 4);
        put(mem, "memory.oom_control", "oom_kill_disable 0\nunder_oom 1\n");
        assert_int_equal(us_cgroup_oom_count(cg, &n, &err), 0);
        assert_int_equal(n, 1);

        /* hostile stats content is an error, not a crash */
        put(mem, "memory.stat", "cache notanumber\n");
        m = NULL;
        assert_int_equal(us_cgroup_stats(cg, &m, &err), -EINVAL);
        assert_null(m);
        assert_non_null(strstr(us_error_text(err), "memory.stat"));
        us_error_free(err);
        us_cgroup_free(cg);
}

static void pids_freeze_destroy(void **state)
{
        struct fake *f = *state;
        struct us_cgroup *cg = fake_create(f, "/default/p");
        const char *fr = us_cgroup_dir(cg, "freezer");
        put(fr, "cgroup.procs", "10\n11\n");
        mkdirp("%s/sub", fr);
        char sub[512];
        snprintf(sub, sizeof(sub), "%s/sub", fr);
        put(sub, "cgroup.procs", "12\n11\n");
        pid_t *pids = NULL;
        size_t n = 0;
        struct us_error *err = NULL;
        assert_int_equal(us_cgroup_pids(cg, &pids, &n, &err), 0);
        assert_int_equal(n, 3);
        assert_int_equal(pids[0], 10);
        assert_int_equal(pids[2], 12);
        free(pids);

        put(sub, "cgroup.procs", "12\nbogus\n");
        assert_int_equal(us_cgroup_pids(cg, &pids, &n, &err), -EINVAL);
        err = us_error_free(err);
        put(sub, "cgroup.procs", "");
        put(fr, "cgroup.procs", "");

        assert_int_equal(us_cgroup_freeze(cg, true, &err), 0);
        assert_string_equal(get(fr, "freezer.state"), "FROZEN");
        assert_int_equal(us_cgroup_freeze(cg, false, &err), 0);
        assert_string_equal(get(fr, "freezer.state"), "THAWED");

        /* enter writes the pid in every hierarchy */
        assert_int_equal(us_cgroup_enter(cg, 4242, &err), 0);
        assert_string_equal(get(us_cgroup_dir(cg, "name=systemd"), "cgroup.procs"), "4242");
        assert_string_equal(get(us_cgroup_dir(cg, "unified"), "cgroup.procs"), "4242");
        assert_string_equal(get(us_cgroup_dir(cg, "cpu"), "cgroup.procs"), "4242");
        put(us_cgroup_dir(cg, "freezer"), "cgroup.procs", "");

        /* open finds it; destroy removes it everywhere; twice is fine */
        struct us_cgroup *o = NULL;
        assert_int_equal(us_cgroup_open_in(f->layout, "/default/p", &o, &err), 0);
        o = us_cgroup_free(o);
        assert_int_equal(us_cgroup_destroy(cg, &err), 0);
        for (size_t i = 0; i < us_cgroup_layout_count(f->layout); i++) {
                char p[512];
                snprintf(p, sizeof(p), "%s/default/p",
                         us_cgroup_layout_mountpoint(f->layout, i, NULL));
                assert_int_equal(access(p, F_OK), -1);
                snprintf(p, sizeof(p), "%s/default",
                         us_cgroup_layout_mountpoint(f->layout, i, NULL));
                assert_int_equal(access(p, F_OK), 0); /* the parent stays */
        }
        assert_int_equal(us_cgroup_destroy(cg, &err), 0);
        assert_int_equal(us_cgroup_open_in(f->layout, "/default/p", &o, &err), -ENOENT);
        us_error_free(err);
        us_cgroup_free(cg);
}

/* ---- the real thing (root on a cgroup v1/hybrid host) ---- */

struct real {
        char path[64];
        struct us_cgroup *cg;
        pid_t child;
        char mnt[64];
};

static int real_setup(void **state)
{
        struct real *rt = calloc(1, sizeof(*rt));
        snprintf(rt->path, sizeof(rt->path), "/unishim-test-%d", (int)getpid());
        rt->child = -1;
        *state = rt;
        return 0;
}

static int real_teardown(void **state)
{
        struct real *rt = *state;
        if (rt->child > 0) {
                (void)kill(rt->child, SIGKILL);
                (void)waitpid(rt->child, NULL, 0);
        }
        struct us_error *err = NULL;
        if (!rt->cg)
                (void)us_cgroup_open(NULL, rt->path, &rt->cg, &err);
        if (rt->cg) {
                (void)us_cgroup_freeze(rt->cg, false, NULL);
                (void)us_cgroup_destroy(rt->cg, NULL);
        }
        us_cgroup_free(rt->cg);
        us_error_free(err);
        if (rt->mnt[0])
                (void)rmdir(rt->mnt);
        free(rt);
        return 0;
}

static bool proc_in_cgroup(pid_t pid, const char *line)
{
        char p[64], buf[4096];
        snprintf(p, sizeof(p), "/proc/%d/cgroup", (int)pid);
        FILE *f = fopen(p, "re");
        if (!f)
                return false;
        size_t n = fread(buf, 1, sizeof(buf) - 1, f);
        fclose(f);
        buf[n] = '\0';
        return strstr(buf, line) != NULL;
}

static void real_lifecycle(void **state)
{
        struct real *rt = *state;
        struct statfs sfs;
        if (geteuid() != 0)
                unit_skip("real cgroup test needs root");
        if (statfs("/sys/fs/cgroup", &sfs) < 0 ||
            (unsigned long)sfs.f_type == (unsigned long)CGROUP2_SUPER_MAGIC)
                unit_skip("real cgroup test needs a cgroup v1/hybrid host");
        struct us_error *err = NULL;
        int r = us_cgroup_create(NULL, rt->path, &rt->cg, &err);
        if (r < 0) {
                char why[256];
                snprintf(why, sizeof(why), "%s", us_error_text(err));
                us_error_free(err);
                unit_skip("cannot create a cgroup here: %s", why);
        }
        struct us_cgroup *cg = rt->cg;
        assert_non_null(us_cgroup_dir(cg, "memory"));

        rt->child = fork();
        assert_true(rt->child >= 0);
        if (rt->child == 0) {
                for (;;)
                        pause();
        }
        r = us_cgroup_enter(cg, rt->child, &err);
        if (r < 0)
                fail_msg("%s", us_error_text(err));
        char line[128];
        snprintf(line, sizeof(line), ":memory:%s\n", rt->path);
        assert_true(proc_in_cgroup(rt->child, line));
        snprintf(line, sizeof(line), ":name=systemd:%s\n", rt->path);
        assert_true(proc_in_cgroup(rt->child, line));

        struct us_oci_resources res = {
                .memory = {.has_limit = true, .limit = 64 << 20},
                .cpu = {.has_shares = true, .shares = 512},
                .has_pids_limit = true,
                .pids_limit = 50,
        };
        r = us_cgroup_apply(cg, &res, &err);
        if (r < 0)
                fail_msg("%s", us_error_text(err));
        assert_string_equal(get(us_cgroup_dir(cg, "pids"), "pids.max"), "50");
        assert_string_equal(get(us_cgroup_dir(cg, "memory"), "memory.limit_in_bytes"), "67108864");

        pid_t *pids = NULL;
        size_t n = 0;
        assert_int_equal(us_cgroup_pids(cg, &pids, &n, &err), 0);
        assert_int_equal(n, 1);
        assert_int_equal(pids[0], rt->child);
        free(pids);

        Io__Containerd__Cgroups__V1__Metrics *m = NULL;
        r = us_cgroup_stats(cg, &m, &err);
        if (r < 0)
                fail_msg("%s", us_error_text(err));
        assert_non_null(m->pids);
        assert_int_equal(m->pids->current, 1);
        assert_int_equal(m->pids->limit, 50);
        assert_int_equal(m->memory->usage->limit, 64 << 20);
        us_cgroup_stats_free(m);

        int ofd = -1;
        r = us_cgroup_oom_fd(cg, &ofd, &err);
        if (r < 0)
                fail_msg("%s", us_error_text(err));
        assert_true(fcntl(ofd, F_GETFD) & FD_CLOEXEC);
        close(ofd);
        uint64_t oom = 99;
        assert_int_equal(us_cgroup_oom_count(cg, &oom, &err), 0);
        assert_int_equal(oom, 0);

        assert_int_equal(us_cgroup_freeze(cg, true, &err), 0);
        assert_string_equal(get(us_cgroup_dir(cg, "freezer"), "freezer.state"), "FROZEN");
        assert_int_equal(us_cgroup_freeze(cg, false, &err), 0);
        assert_string_equal(get(us_cgroup_dir(cg, "freezer"), "freezer.state"), "THAWED");

        /* The container's view: a child in its own mount namespace mounts
         * it read-only and checks what it sees. */
        snprintf(rt->mnt, sizeof(rt->mnt), "/tmp/unishim-cgmnt-XXXXXX");
        assert_non_null(mkdtemp(rt->mnt));
        pid_t mp = fork();
        assert_true(mp >= 0);
        if (mp == 0) {
                if (unshare(CLONE_NEWNS) < 0 ||
                    mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
                        _exit(10);
                struct us_error *e = NULL;
                if (us_cgroup_mount(cg, rt->mnt, true, &e) < 0) {
                        fprintf(stderr, "mount: %s\n", us_error_text(e));
                        _exit(11);
                }
                char p[256];
                snprintf(p, sizeof(p), "%s/memory/memory.limit_in_bytes", rt->mnt);
                FILE *fp = fopen(p, "re");
                char buf[64] = "";
                if (!fp || !fgets(buf, sizeof(buf), fp) || strcmp(buf, "67108864\n") != 0)
                        _exit(12);
                fclose(fp);
                snprintf(p, sizeof(p), "%s/systemd/cgroup.procs", rt->mnt);
                if (access(p, F_OK) < 0)
                        _exit(13);
                snprintf(p, sizeof(p), "%s/x", rt->mnt);
                if (mkdir(p, 0755) == 0 || errno != EROFS)
                        _exit(14);
                snprintf(p, sizeof(p), "%s/memory/x", rt->mnt);
                if (mkdir(p, 0755) == 0 || errno != EROFS)
                        _exit(15);
                _exit(0);
        }
        int st = 0;
        assert_int_equal(waitpid(mp, &st, 0), mp);
        assert_true(WIFEXITED(st));
        assert_int_equal(WEXITSTATUS(st), 0);

        /* kill_all while frozen: thaws and kills */
        assert_int_equal(us_cgroup_freeze(cg, true, &err), 0);
        r = us_cgroup_kill_all(cg, SIGKILL, &err);
        if (r < 0)
                fail_msg("%s", us_error_text(err));
        assert_int_equal(waitpid(rt->child, &st, 0), rt->child);
        rt->child = -1;
        assert_true(WIFSIGNALED(st));
        assert_int_equal(WTERMSIG(st), SIGKILL);

        r = us_cgroup_destroy(cg, &err);
        if (r < 0)
                fail_msg("%s", us_error_text(err));
        static const char *const ctrls[] = {"memory", "cpu",     "pids",         "freezer",
                                            "cpuset", "devices", "name=systemd", "unified"};
        for (size_t i = 0; i < sizeof(ctrls) / sizeof(ctrls[0]); i++) {
                const char *d = us_cgroup_dir(cg, ctrls[i]);
                if (d)
                        assert_int_equal(access(d, F_OK), -1);
        }
        assert_int_equal(us_cgroup_destroy(cg, &err), 0);
        struct us_cgroup *o = NULL;
        assert_int_equal(us_cgroup_open(NULL, rt->path, &o, &err), -ENOENT);
        us_error_free(err);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(path_validation),
                cmocka_unit_test(layout_hybrid),
                cmocka_unit_test(layout_v1_and_v2),
                cmocka_unit_test(layout_detect_host),
                cmocka_unit_test_setup_teardown(apply_v1, fake_setup, fake_teardown),
                cmocka_unit_test_setup_teardown(apply_memsw_order, fake_setup, fake_teardown),
                cmocka_unit_test(shares_to_weight),
                cmocka_unit_test(apply_v2),
                cmocka_unit_test(unified_on_v1_only),
                cmocka_unit_test_setup_teardown(stats_v1, fake_setup, fake_teardown),
                cmocka_unit_test_setup_teardown(pids_freeze_destroy, fake_setup, fake_teardown),
                cmocka_unit_test_setup_teardown(real_lifecycle, real_setup, real_teardown),
        };
        return unit_exit(unit_run_group_tests(tests, NULL, NULL));
}
