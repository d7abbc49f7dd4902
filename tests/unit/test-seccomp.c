/* SPDX-License-Identifier: Apache-2.0 */
#include <errno.h>
#include <libgen.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/personality.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <sched.h>
#include <unistd.h>

#include "unit.h"

#include "base/cleanup.h"
#include "oci/oci-spec.h"
#include "engine/seccomp-filter.h"

static struct us_oci_spec *parse(const char *json)
{
        struct us_oci_spec *s = NULL;
        struct us_error *err = NULL;
        if (us_oci_spec_parse(json, strlen(json), &s, &err) < 0)
                fail_msg("parse: %s", us_error_text(err));
        assert_non_null(s->linux_.seccomp);
        return s;
}

static struct us_oci_spec *parse_fixture(const char *name)
{
        char *src = strdup(__FILE__);
        char *path = NULL;
        assert_true(asprintf(&path, "%s/fixtures", dirname(src)) > 0);
        struct us_oci_spec *s = NULL;
        struct us_error *err = NULL;
        /* load wants <bundle>/config.json; read the fixture by hand instead. */
        char *file = NULL;
        assert_true(asprintf(&file, "%s/%s", path, name) > 0);
        FILE *f = fopen(file, "re");
        assert_non_null(f);
        char *buf = malloc(1 << 20);
        size_t n = fread(buf, 1, 1 << 20, f);
        fclose(f);
        if (us_oci_spec_parse(buf, n, &s, &err) < 0)
                fail_msg("parse: %s", us_error_text(err));
        free(buf);
        free(file);
        free(path);
        free(src);
        return s;
}

#define SECCOMP_JSON(default_action, syscalls)                                                     \
        "{\"ociVersion\":\"1\",\"linux\":{\"seccomp\":{\"defaultAction\":\"" default_action        \
        "\",\"syscalls\":[" syscalls "]}}}"

static void expect_build_error(const char *json, int code, const char *want)
{
        struct us_oci_spec *s = parse(json);
        struct us_error *err = NULL;
        scmp_filter_ctx ctx = NULL;
        int r = us_seccomp_build(s->linux_.seccomp, &ctx, &err);
        if (r >= 0)
                fail_msg("built, expected error %s", want);
        assert_int_equal(r, -code);
        assert_null(ctx);
        if (!strstr(us_error_text(err), want))
                fail_msg("error \"%s\" does not contain \"%s\"", us_error_text(err), want);
        us_error_free(err);
        us_oci_spec_free(s);
}

static void bad_inputs(void **state)
{
        (void)state;
        expect_build_error(
                "{\"ociVersion\":\"1\",\"linux\":{\"seccomp\":{\"defaultAction\":"
                "\"SCMP_ACT_ALLOW\",\"architectures\":[\"SCMP_ARCH_X86_64\","
                "\"SCMP_ARCH_VAX\"]}}}",
                EINVAL, "linux.seccomp.architectures[1]: unknown architecture \"SCMP_ARCH_VAX\"");
        expect_build_error("{\"ociVersion\":\"1\",\"linux\":{\"seccomp\":{\"defaultAction\":"
                           "\"SCMP_ACT_ALLOW\",\"architectures\":[\"x86_64\"]}}}",
                           EINVAL, "linux.seccomp.architectures[0]: unknown architecture");
        expect_build_error(SECCOMP_JSON("SCMP_ACT_ALLOW", "{\"names\":[\"getcwd\"],"
                                                          "\"action\":\"SCMP_ACT_NOTIFY\"}"),
                           ENOTSUP, "linux.seccomp.syscalls[0]: SCMP_ACT_NOTIFY is not supported");
        expect_build_error(SECCOMP_JSON("SCMP_ACT_NOTIFY", ""), ENOTSUP,
                           "linux.seccomp.defaultAction: SCMP_ACT_NOTIFY is not supported");
        expect_build_error("{\"ociVersion\":\"1\",\"linux\":{\"seccomp\":{\"defaultAction\":"
                           "\"SCMP_ACT_ALLOW\",\"flags\":[\"SECCOMP_FILTER_FLAG_NOPE\"]}}}",
                           EINVAL, "linux.seccomp.flags[0]: unknown seccomp flag");
        expect_build_error(SECCOMP_JSON("SCMP_ACT_ALLOW", "{\"names\":[\"getcwd\"],\"action\":"
                                                          "\"SCMP_ACT_ERRNO\",\"errnoRet\":70000}"),
                           EINVAL, "linux.seccomp.syscalls[0]: errnoRet 70000 out of range");

        /* The parser already refuses index 6; a hand-made struct reaches the builder. */
        struct us_oci_spec *s = parse(SECCOMP_JSON(
                "SCMP_ACT_ALLOW", "{\"names\":[\"getcwd\"],\"action\":\"SCMP_ACT_ERRNO\",\"args\":"
                                  "[{\"index\":5,\"value\":1,\"op\":\"SCMP_CMP_EQ\"}]}"));
        s->linux_.seccomp->rules[0].args[0].index = 6;
        struct us_error *err = NULL;
        scmp_filter_ctx ctx = NULL;
        assert_int_equal(us_seccomp_build(s->linux_.seccomp, &ctx, &err), -EINVAL);
        assert_string_equal(us_error_text(err),
                            "linux.seccomp.syscalls[0].args[0].index: out of range (0..5)");
        us_error_free(err);
        us_oci_spec_free(s);
}

/* Unknown syscalls are skipped, rules equal to the default are skipped,
 * repeated indexes and the full containerd profile build. */
static void builds(void **state)
{
        (void)state;
        static const char *const specs[] = {
                SECCOMP_JSON("SCMP_ACT_ERRNO",
                             "{\"names\":[\"no_such_syscall\",\"getcwd\"],\"action\":"
                             "\"SCMP_ACT_ALLOW\"},{\"names\":[\"uname\"],\"action\":"
                             "\"SCMP_ACT_ERRNO\"},{\"names\":[\"read\"],\"action\":"
                             "\"SCMP_ACT_ERRNO\",\"errnoRet\":5},{\"names\":[\"write\"],"
                             "\"action\":\"SCMP_ACT_LOG\"},{\"names\":[\"kill\"],\"action\":"
                             "\"SCMP_ACT_TRACE\"},{\"names\":[\"tkill\"],\"action\":"
                             "\"SCMP_ACT_TRAP\"},{\"names\":[\"mount\"],\"action\":"
                             "\"SCMP_ACT_KILL_PROCESS\"},{\"names\":[\"umount2\"],\"action\":"
                             "\"SCMP_ACT_KILL\"}"),
                SECCOMP_JSON("SCMP_ACT_ALLOW",
                             "{\"names\":[\"socket\"],\"action\":\"SCMP_ACT_ERRNO\",\"args\":["
                             "{\"index\":0,\"value\":40,\"op\":\"SCMP_CMP_EQ\"},"
                             "{\"index\":0,\"value\":16,\"op\":\"SCMP_CMP_EQ\"},"
                             "{\"index\":1,\"value\":3,\"op\":\"SCMP_CMP_GE\"}]}"),
                "{\"ociVersion\":\"1\",\"linux\":{\"seccomp\":{\"defaultAction\":"
                "\"SCMP_ACT_ALLOW\",\"flags\":[\"SECCOMP_FILTER_FLAG_TSYNC\","
                "\"SECCOMP_FILTER_FLAG_SPEC_ALLOW\",\"SECCOMP_FILTER_FLAG_LOG\"]}}}",
        };
        for (size_t i = 0; i < US_ELEMENTSOF(specs); i++) {
                struct us_oci_spec *s = parse(specs[i]);
                struct us_error *err = NULL;
                scmp_filter_ctx ctx = NULL;
                if (us_seccomp_build(s->linux_.seccomp, &ctx, &err) < 0)
                        fail_msg("spec %zu: %s", i, us_error_text(err));
                assert_non_null(ctx);
                ctx = us_seccomp_free(ctx);
                us_oci_spec_free(s);
        }

        struct us_oci_spec *s = parse_fixture("cri-container.json");
        struct us_error *err = NULL;
        FILE *bpf = tmpfile();
        assert_non_null(bpf);
        if (us_seccomp_export_bpf(s->linux_.seccomp, fileno(bpf), &err) < 0)
                fail_msg("%s", us_error_text(err));
        /* Several hundred instructions of 8 bytes each. */
        assert_true(lseek(fileno(bpf), 0, SEEK_END) > 8 * 100);
        fclose(bpf);
        us_oci_spec_free(s);
}

/* Runs fn in a child after loading the filter; fn's return is the exit
 * code (0 = all checks passed, else the number of the failed check). */
static void run_filtered(const char *json, bool from_fixture, int (*fn)(void))
{
        struct us_oci_spec *s = from_fixture ? parse_fixture(json) : parse(json);
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
                if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
                        _exit(100);
                struct us_error *err = NULL;
                if (us_seccomp_load(s->linux_.seccomp, &err) < 0) {
                        fprintf(stderr, "load: %s\n", us_error_text(err));
                        _exit(101);
                }
                _exit(fn());
        }
        int status;
        assert_int_equal(waitpid(pid, &status, 0), pid);
        us_oci_spec_free(s);
        if (!WIFEXITED(status))
                fail_msg("child killed by signal %d", WTERMSIG(status));
        if (WEXITSTATUS(status) != 0)
                fail_msg("child failed check %d", WEXITSTATUS(status));
}

static int check_errno_rules(void)
{
        char buf[256];
        struct utsname u;
        errno = 0;
        if (syscall(SYS_getcwd, buf, sizeof(buf)) != -1 || errno != ENOSYS)
                return 1;
        errno = 0;
        if (syscall(SYS_uname, &u) != -1 || errno != EPERM) /* errnoRet defaults to EPERM */
                return 2;
        if (getpid() <= 0) /* not in the filter: allowed */
                return 3;
        return 0;
}

static void errno_in_child(void **state)
{
        (void)state;
        run_filtered(SECCOMP_JSON("SCMP_ACT_ALLOW",
                                  "{\"names\":[\"getcwd\"],\"action\":\"SCMP_ACT_ERRNO\","
                                  "\"errnoRet\":38},{\"names\":[\"uname\",\"no_such_call\"],"
                                  "\"action\":\"SCMP_ACT_ERRNO\"},{\"names\":[\"getpid\"],"
                                  "\"action\":\"SCMP_ACT_ALLOW\"}"),
                     false, check_errno_rules);
}

static int check_arg_rules(void)
{
        /* personality: only the query value 0xffffffff is allowed. */
        errno = 0;
        if (syscall(SYS_personality, 0xffffffffUL) == -1)
                return 1;
        errno = 0;
        if (syscall(SYS_personality, (unsigned long)PER_LINUX) != -1 || errno != EPERM)
                return 2;
        /* uname with arg0 == 1 OR arg0 == 2 denied (two conditions on one index);
         * without the filter these would be EFAULT. */
        errno = 0;
        if (syscall(SYS_uname, 1UL) != -1 || errno != EACCES)
                return 3;
        errno = 0;
        if (syscall(SYS_uname, 2UL) != -1 || errno != EACCES)
                return 4;
        struct utsname u;
        if (syscall(SYS_uname, &u) != 0)
                return 5;
        errno = 0;
        if (syscall(SYS_uname, 3UL) != -1 || errno != EFAULT)
                return 6;
        return 0;
}

static void arg_conditions_in_child(void **state)
{
        (void)state;
        run_filtered(SECCOMP_JSON("SCMP_ACT_ALLOW",
                                  "{\"names\":[\"personality\"],\"action\":\"SCMP_ACT_ERRNO\","
                                  "\"args\":[{\"index\":0,\"value\":4294967295,"
                                  "\"op\":\"SCMP_CMP_NE\"}]},"
                                  "{\"names\":[\"uname\"],\"action\":\"SCMP_ACT_ERRNO\","
                                  "\"errnoRet\":13,\"args\":["
                                  "{\"index\":0,\"value\":1,\"op\":\"SCMP_CMP_EQ\"},"
                                  "{\"index\":0,\"value\":2,\"op\":\"SCMP_CMP_EQ\"}]}"),
                     false, check_arg_rules);
}

/* containerd's default profile (CRI RuntimeDefault, no CAP_SYS_ADMIN). */
static int check_default_profile(void)
{
        errno = 0;
        if (syscall(SYS_clone3, NULL, 0) != -1 || errno != ENOSYS)
                return 1;
        /* clone with a namespace flag fails the MASKED_EQ rule: default EPERM. */
        errno = 0;
        if (syscall(SYS_clone, (unsigned long)(CLONE_NEWUTS | SIGCHLD), 0, 0, 0, 0) != -1 ||
            errno != EPERM)
                return 2;
        /* plain fork passes the MASKED_EQ rule */
        pid_t pid = fork();
        if (pid < 0)
                return 3;
        if (pid == 0)
                _exit(7);
        int status;
        if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status) || WEXITSTATUS(status) != 7)
                return 4;
        errno = 0;
        if (syscall(SYS_personality, 0xffffffffUL) == -1)
                return 5;
        errno = 0;
        if (syscall(SYS_personality, 0x1UL) != -1 || errno != EPERM)
                return 6;
        if (syscall(SYS_unshare, CLONE_NEWNS) != -1 || errno != EPERM)
                return 7;
        return 0;
}

static void default_profile_in_child(void **state)
{
        (void)state;
        run_filtered("cri-container.json", true, check_default_profile);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(bad_inputs),
                cmocka_unit_test(builds),
                cmocka_unit_test(errno_in_child),
                cmocka_unit_test(arg_conditions_in_child),
                cmocka_unit_test(default_profile_in_child),
        };
        return unit_exit(unit_run_group_tests(tests, NULL, NULL));
}
