/* SPDX-License-Identifier: Apache-2.0 */
/*
 * cgroup v2 device programs: bad rules are refused with the v1 path's
 * messages, and compiled programs enforce for real on a cgroup2 directory
 * this test makes (a child moved into it opens and mknods devices).
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <unistd.h>
#include <linux/magic.h>

#include "unit.h"

#include "cgroup/cgroup-devices.h"
#include "base/cleanup.h"
#include "base/error.h"

#define RULE(a, t, maj, min, acc)                                                                  \
        {                                                                                          \
                .allow = (a), .type = (t), .major = (maj), .minor = (min), .access = (char *)(acc) \
        }

static void expect_compile_error(const struct us_oci_device_rule *rules, size_t n, const char *want)
{
        struct us_error *err = NULL;
        struct bpf_insn *insns = NULL;
        size_t ni = 0;
        int r = us_cg_devices_compile(rules, n, &insns, &ni, &err);
        assert_int_equal(r, -EINVAL);
        assert_null(insns);
        if (!strstr(us_error_text(err), want))
                fail_msg("error \"%s\" does not name \"%s\"", us_error_text(err), want);
        us_error_free(err);
}

static void test_bad_type(void **state)
{
        (void)state;
        struct us_oci_device_rule rules[] = {RULE(false, 'a', -1, -1, "rwm"),
                                             RULE(true, 'x', 1, 3, "rwm")};
        expect_compile_error(rules, 2, "invalid device rule type 'x'");
}

static void test_bad_access(void **state)
{
        (void)state;
        struct us_oci_device_rule rules[] = {RULE(true, 'c', 1, 3, "rwx")};
        expect_compile_error(rules, 1, "invalid device access \"rwx\"");
        struct us_oci_device_rule rules2[] = {RULE(true, 'c', 1, 3, "rwmr")};
        expect_compile_error(rules2, 1, "invalid device access \"rwmr\"");
}

static void test_bad_number(void **state)
{
        (void)state;
        struct us_oci_device_rule rules[] = {RULE(true, 'c', 1, 4294967296LL, "r")};
        expect_compile_error(rules, 1, "invalid device minor 4294967296 in rule 0");
}

/* cgroup v1 ignores a deny inside a wider allow exception; runc refuses it
 * and so do we, rather than enforce something else than v1 would. */
static void test_hole_punch(void **state)
{
        (void)state;
        struct us_oci_device_rule rules[] = {RULE(false, 'a', -1, -1, "rwm"),
                                             RULE(true, 'c', 1, -1, "rwm"),
                                             RULE(false, 'c', 1, 3, "w")};
        expect_compile_error(rules, 3, "device rule 2 (deny c 1:3 w) cannot punch a hole");
        /* No overlap in access: fine. */
        struct us_oci_device_rule ok[] = {RULE(false, 'a', -1, -1, "rwm"),
                                          RULE(true, 'c', 1, -1, "r"), RULE(false, 'c', 1, 3, "w")};
        struct bpf_insn *insns = NULL;
        size_t n = 0;
        struct us_error *err = NULL;
        if (us_cg_devices_compile(ok, 3, &insns, &n, &err) < 0)
                fail_msg("%s", us_error_text(err));
        free(insns);
}

static void test_too_many(void **state)
{
        (void)state;
        size_t n = US_CG_DEVICES_MAX_RULES + 1;
        struct us_oci_device_rule *rules = calloc(n, sizeof(*rules));
        assert_non_null(rules);
        for (size_t i = 0; i < n; i++)
                rules[i] = (struct us_oci_device_rule)RULE(true, 'c', 1, (int64_t)i, "r");
        expect_compile_error(rules, n, "too many device rules");
        free(rules);
}

/* ---- real enforcement on a cgroup2 directory ---- */

struct fixture {
        char cgroup[256]; /* "" when none was made */
        char tmpdir[64];
        int dirfd;
        char why[512]; /* why the test skips */
};

static const char *cgroup2_mount(void)
{
        static const char *const candidates[] = {"/sys/fs/cgroup/unified", "/sys/fs/cgroup"};
        for (size_t i = 0; i < US_ELEMENTSOF(candidates); i++) {
                struct statfs st;
                if (statfs(candidates[i], &st) == 0 && st.f_type == CGROUP2_SUPER_MAGIC)
                        return candidates[i];
        }
        return NULL;
}

static int setup_cgroup(void **state)
{
        struct fixture *f = calloc(1, sizeof(*f));
        assert_non_null(f);
        f->dirfd = -1;
        *state = f;
        snprintf(f->tmpdir, sizeof(f->tmpdir), "/tmp/us-devtest-XXXXXX");
        assert_non_null(mkdtemp(f->tmpdir));
        const char *mnt = cgroup2_mount();
        if (!mnt) {
                snprintf(f->why, sizeof(f->why), "no cgroup2 mount");
                return 0; /* the test skips */
        }
        snprintf(f->cgroup, sizeof(f->cgroup), "%s/unishim-test-devices-%d-%ld", mnt, (int)getpid(),
                 (long)random());
        if (mkdir(f->cgroup, 0755) < 0) {
                snprintf(f->why, sizeof(f->why), "mkdir %s: %s", f->cgroup, strerror(errno));
                f->cgroup[0] = '\0';
                return 0;
        }
        f->dirfd = open(f->cgroup, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        assert_true(f->dirfd >= 0);
        return 0;
}

static int teardown_cgroup(void **state)
{
        struct fixture *f = *state;
        us_close(f->dirfd);
        /* Attached programs go with the cgroup; the children were reaped. */
        if (f->cgroup[0] && rmdir(f->cgroup) < 0)
                fprintf(stderr, "rmdir %s: %s\n", f->cgroup, strerror(errno));
        char node[128];
        snprintf(node, sizeof(node), "%s/node", f->tmpdir);
        (void)unlink(node);
        (void)rmdir(f->tmpdir);
        free(f);
        return 0;
}

/* The fixture; the test skips without a writable cgroup2 mount. */
static struct fixture *need_cgroup(void **state)
{
        struct fixture *f = *state;
        if (!f->cgroup[0])
                unit_skip("no writable cgroup2 mount (%s)", f->why);
        return f;
}

enum op { OP_OPEN, OP_MKNOD };

struct check {
        enum op op;
        const char *path; /* OP_OPEN */
        int flags;
        unsigned major, minor; /* OP_MKNOD */
        int want_errno;        /* 0 = must succeed */
};

/* A child joins the cgroup and runs the checks; the first that goes wrong
 * comes back through a pipe as a sentence. */
static void run_in_cgroup(struct fixture *f, const struct check *checks, size_t n)
{
        int p[2];
        assert_int_equal(pipe2(p, O_CLOEXEC), 0);
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
                char msg[512] = "";
                char procs[300];
                snprintf(procs, sizeof(procs), "%s/cgroup.procs", f->cgroup);
                int fd = open(procs, O_WRONLY | O_CLOEXEC);
                if (fd < 0 || write(fd, "0", 1) != 1) {
                        snprintf(msg, sizeof(msg), "join %s: %s", procs, strerror(errno));
                        goto out;
                }
                close(fd);
                for (size_t i = 0; i < n && !msg[0]; i++) {
                        const struct check *c = &checks[i];
                        int r, e;
                        char what[160];
                        if (c->op == OP_OPEN) {
                                r = open(c->path, c->flags | O_CLOEXEC);
                                e = errno;
                                if (r >= 0)
                                        close(r);
                                snprintf(what, sizeof(what), "open %s %s", c->path,
                                         (c->flags & O_ACCMODE) == O_RDONLY   ? "O_RDONLY"
                                         : (c->flags & O_ACCMODE) == O_WRONLY ? "O_WRONLY"
                                                                              : "O_RDWR");
                        } else {
                                char node[128];
                                snprintf(node, sizeof(node), "%s/node", f->tmpdir);
                                r = mknod(node, S_IFCHR | 0600, makedev(c->major, c->minor));
                                e = errno;
                                if (r == 0)
                                        unlink(node);
                                snprintf(what, sizeof(what), "mknod c %u:%u", c->major, c->minor);
                        }
                        if (c->want_errno == 0 && r < 0)
                                snprintf(msg, sizeof(msg), "check %zu: %s failed: %s", i, what,
                                         strerror(e));
                        else if (c->want_errno != 0 && r >= 0)
                                snprintf(msg, sizeof(msg), "check %zu: %s succeeded, want %s", i,
                                         what, strerror(c->want_errno));
                        else if (c->want_errno != 0 && e != c->want_errno)
                                snprintf(msg, sizeof(msg), "check %zu: %s: %s, want %s", i, what,
                                         strerror(e), strerror(c->want_errno));
                }
        out:
                if (msg[0])
                        (void)!write(p[1], msg, strlen(msg));
                _exit(msg[0] ? 1 : 0);
        }
        close(p[1]);
        char buf[513];
        ssize_t k = read(p[0], buf, sizeof(buf) - 1);
        close(p[0]);
        int status = 0;
        assert_int_equal(waitpid(pid, &status, 0), pid);
        if (k > 0) {
                buf[k] = '\0';
                fail_msg("in the cgroup: %s", buf);
        }
        assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

static size_t attached(struct fixture *f)
{
        uint32_t ids[8];
        size_t n = 0;
        struct us_error *err = NULL;
        if (us_cg_devices_query(f->dirfd, ids, US_ELEMENTSOF(ids), &n, &err) < 0)
                fail_msg("%s", us_error_text(err));
        return n;
}

/* Returns false, with the reason in f->why, when this machine cannot load
 * BPF at all: the test skips on its first apply. */
static bool apply(struct fixture *f, const struct us_oci_device_rule *rules, size_t n)
{
        struct us_error *err = NULL;
        int r = us_cg_devices_apply(f->cgroup, rules, n, &err);
        if (r == -ENOSYS || r == -EPERM) {
                snprintf(f->why, sizeof(f->why), "cannot load a cgroup device program here: %s",
                         us_error_text(err));
                us_error_free(err);
                return false;
        }
        if (r < 0)
                fail_msg("apply: %s", us_error_text(err));
        return true;
}

#define OPEN_OK(p, fl)                                                                             \
        {                                                                                          \
                OP_OPEN, (p), (fl), 0, 0, 0                                                        \
        }
#define OPEN_FAILS(p, fl, e)                                                                       \
        {                                                                                          \
                OP_OPEN, (p), (fl), 0, 0, (e)                                                      \
        }
#define MKNOD_OK(maj, min)                                                                         \
        {                                                                                          \
                OP_MKNOD, NULL, 0, (maj), (min), 0                                                 \
        }
#define MKNOD_FAILS(maj, min, e)                                                                   \
        {                                                                                          \
                OP_MKNOD, NULL, 0, (maj), (min), (e)                                               \
        }

static void test_enforced(void **state)
{
        struct fixture *f = need_cgroup(state);
        assert_int_equal(attached(f), 0);

        /* The usual spec: deny all, then allows. */
        struct us_oci_device_rule spec1[] = {
                RULE(false, 'a', -1, -1, "rwm"), RULE(true, 'c', 1, 3, "rwm"), /* /dev/null */
                RULE(true, 'c', 1, 5, "r"), /* /dev/zero, read only */
        };
        if (!apply(f, spec1, US_ELEMENTSOF(spec1)))
                unit_skip("%s", f->why);
        assert_int_equal(attached(f), 1);
        const struct check c1[] = {
                OPEN_OK("/dev/null", O_RDWR),
                OPEN_OK("/dev/zero", O_RDONLY),
                OPEN_FAILS("/dev/zero", O_WRONLY, EPERM),
                OPEN_FAILS("/dev/zero", O_RDWR, EPERM),
                OPEN_FAILS("/dev/full", O_RDONLY, EPERM),
                MKNOD_FAILS(1, 7, EPERM), /* 'm' */
                MKNOD_OK(1, 3),           /* rwm includes mknod */
        };
        run_in_cgroup(f, c1, US_ELEMENTSOF(c1));

        /* Update: allow all replaces the filter; one program stays. */
        struct us_oci_device_rule spec2[] = {RULE(true, 'a', -1, -1, "rwm")};
        assert_true(apply(f, spec2, US_ELEMENTSOF(spec2)));
        assert_int_equal(attached(f), 1);
        const struct check c2[] = {
                OPEN_OK("/dev/full", O_RDWR), OPEN_OK("/dev/zero", O_WRONLY),
                MKNOD_OK(1, 7), /* proves mknod here fails only by the filter */
        };
        run_in_cgroup(f, c2, US_ELEMENTSOF(c2));

        /* A later deny overrides an earlier allow: the same pattern (v1's
         * own semantics), and a wider one (deny wins over narrower allows). */
        struct us_oci_device_rule spec3[] = {
                RULE(false, 'a', -1, -1, "rwm"), RULE(true, 'c', 1, 3, "rwm"),
                RULE(true, 'c', 1, 7, "rwm"),    RULE(true, 'c', 1, 5, "rwm"),
                RULE(false, 'c', 1, 7, "rwm"),   RULE(false, 'c', 1, -1, "m"),
                RULE(false, 'c', 1, 5, "w"),
        };
        assert_true(apply(f, spec3, US_ELEMENTSOF(spec3)));
        assert_int_equal(attached(f), 1);
        const struct check c3[] = {
                OPEN_OK("/dev/null", O_RDWR),   OPEN_FAILS("/dev/full", O_RDONLY, EPERM),
                OPEN_OK("/dev/zero", O_RDONLY), OPEN_FAILS("/dev/zero", O_WRONLY, EPERM),
                MKNOD_FAILS(1, 3, EPERM),
        };
        run_in_cgroup(f, c3, US_ELEMENTSOF(c3));

        /* Allow-all with deny exceptions: a deny matches on any shared
         * access bit, as v1 does ("deny w" also stops O_RDWR). */
        struct us_oci_device_rule spec4[] = {
                RULE(true, 'a', -1, -1, "rwm"),
                RULE(false, 'c', 1, 7, "w"),
                RULE(false, 'c', -1, -1, "m"),
        };
        assert_true(apply(f, spec4, US_ELEMENTSOF(spec4)));
        assert_int_equal(attached(f), 1);
        const struct check c4[] = {
                OPEN_OK("/dev/full", O_RDONLY),
                OPEN_FAILS("/dev/full", O_WRONLY, EPERM),
                OPEN_FAILS("/dev/full", O_RDWR, EPERM),
                OPEN_OK("/dev/zero", O_RDWR),
                MKNOD_FAILS(1, 5, EPERM),
        };
        run_in_cgroup(f, c4, US_ELEMENTSOF(c4));

        /* A list without a leading "a" rule: default deny, as runc. */
        struct us_oci_device_rule spec5[] = {RULE(true, 'c', 1, 3, "rw")};
        assert_true(apply(f, spec5, US_ELEMENTSOF(spec5)));
        assert_int_equal(attached(f), 1);
        const struct check c5[] = {
                OPEN_OK("/dev/null", O_RDWR),
                OPEN_FAILS("/dev/zero", O_RDONLY, EPERM),
        };
        run_in_cgroup(f, c5, US_ELEMENTSOF(c5));
}

/* A failed apply leaves the previous filter alone. */
static void test_failure_keeps_filter(void **state)
{
        struct fixture *f = need_cgroup(state);
        struct us_oci_device_rule spec1[] = {RULE(false, 'a', -1, -1, "rwm"),
                                             RULE(true, 'c', 1, 3, "rwm")};
        if (!apply(f, spec1, US_ELEMENTSOF(spec1)))
                unit_skip("%s", f->why);
        uint32_t before[2] = {0};
        size_t n = 0;
        assert_int_equal(us_cg_devices_query(f->dirfd, before, 2, &n, NULL), 0);
        assert_int_equal(n, 1);

        /* A program the verifier refuses (reads r0 unset): the error carries
         * the verifier's words and nothing changes. */
        struct bpf_insn bad[] = {{.code = BPF_JMP | BPF_EXIT}};
        struct us_error *err = NULL;
        assert_int_equal(us_cg_devices_attach(f->dirfd, bad, 1, &err), -EACCES);
        if (!strstr(us_error_text(err), "verifier: ") || !strstr(us_error_text(err), "R0"))
                fail_msg("no verifier log in \"%s\"", us_error_text(err));
        us_error_free(err);

        uint32_t after[2] = {0};
        assert_int_equal(us_cg_devices_query(f->dirfd, after, 2, &n, NULL), 0);
        assert_int_equal(n, 1);
        assert_int_equal(after[0], before[0]);
        const struct check c[] = {OPEN_FAILS("/dev/zero", O_RDONLY, EPERM)};
        run_in_cgroup(f, c, US_ELEMENTSOF(c));
}

static uint32_t attached_id(int dirfd)
{
        uint32_t ids[2] = {0};
        size_t n = 0;
        assert_int_equal(us_cg_devices_query(dirfd, ids, 2, &n, NULL), 0);
        assert_int_equal(n, 1);
        return ids[0];
}

/* The same rules share one loaded program: across cgroups, when preloaded,
 * and when a cgroup is updated to the rules it already has (attaching the
 * same program twice would be EEXIST); other rules get another program. */
static void test_program_shared(void **state)
{
        struct fixture *f = need_cgroup(state);
        struct us_oci_device_rule deny_zero[] = {RULE(false, 'a', -1, -1, "rwm"),
                                                 RULE(true, 'c', 1, 3, "rwm"),
                                                 RULE(true, 'c', 1, 9, "r")};
        struct us_error *err = NULL;
        int r = us_cg_devices_preload(deny_zero, US_ELEMENTSOF(deny_zero), &err);
        if (r == -ENOSYS || r == -EPERM) {
                snprintf(f->why, sizeof(f->why), "cannot preload a cgroup device program: %s",
                         us_error_text(err));
                us_error_free(err);
                unit_skip("%s", f->why);
        }
        assert_int_equal(r, 0);
        assert_true(apply(f, deny_zero, US_ELEMENTSOF(deny_zero)));
        uint32_t id = attached_id(f->dirfd);

        char second[300];
        snprintf(second, sizeof(second), "%s-2", f->cgroup);
        assert_int_equal(mkdir(second, 0755), 0);
        int fd2 = open(second, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        assert_true(fd2 >= 0);
        r = us_cg_devices_apply(second, deny_zero, US_ELEMENTSOF(deny_zero), &err);
        if (r < 0)
                fail_msg("%s", us_error_text(err));
        assert_int_equal(attached_id(fd2), id);
        close(fd2);
        assert_int_equal(rmdir(second), 0);

        assert_true(apply(f, deny_zero, US_ELEMENTSOF(deny_zero)));
        assert_int_equal(attached_id(f->dirfd), id);
        const struct check c[] = {OPEN_OK("/dev/null", O_RDWR),
                                  OPEN_FAILS("/dev/zero", O_RDONLY, EPERM)};
        run_in_cgroup(f, c, US_ELEMENTSOF(c));

        struct us_oci_device_rule allow_all[] = {RULE(true, 'a', -1, -1, "rwm")};
        assert_true(apply(f, allow_all, US_ELEMENTSOF(allow_all)));
        assert_true(attached_id(f->dirfd) != id);
        assert_true(apply(f, deny_zero, US_ELEMENTSOF(deny_zero)));
        assert_int_equal(attached_id(f->dirfd), id);
        run_in_cgroup(f, c, US_ELEMENTSOF(c));
}

int main(void)
{
        srandom((unsigned)getpid());
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_bad_type),
                cmocka_unit_test(test_bad_access),
                cmocka_unit_test(test_bad_number),
                cmocka_unit_test(test_hole_punch),
                cmocka_unit_test(test_too_many),
                cmocka_unit_test_setup_teardown(test_enforced, setup_cgroup, teardown_cgroup),
                cmocka_unit_test_setup_teardown(test_failure_keeps_filter, setup_cgroup,
                                                teardown_cgroup),
                cmocka_unit_test_setup_teardown(test_program_shared, setup_cgroup, teardown_cgroup),
        };
        return unit_exit(unit_run_group_tests(tests, NULL, NULL));
}
