/* SPDX-License-Identifier: Apache-2.0 */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <sched.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/capability.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "unit.h"

#include "base/cleanup.h"
#include "oci/oci-spec.h"

/* Fixtures sit next to this source file (CMake compiles it by absolute path). */
static char *fixture_path(const char *name)
{
        char *src = strdup(__FILE__);
        assert_non_null(src);
        char *path = NULL;
        assert_true(asprintf(&path, "%s/fixtures/%s", dirname(src), name) > 0);
        free(src);
        return path;
}

static char *read_fixture(const char *name, size_t *ret_len)
{
        _cleanup_free_ char *path = fixture_path(name);
        FILE *f = fopen(path, "re");
        if (!f)
                fail_msg("cannot open fixture %s", path);
        char *buf = malloc(1 << 20);
        assert_non_null(buf);
        size_t n = fread(buf, 1, 1 << 20, f);
        fclose(f);
        *ret_len = n;
        return buf;
}

static struct us_oci_spec *parse_ok(const char *json)
{
        struct us_oci_spec *s = NULL;
        struct us_error *err = NULL;
        int r = us_oci_spec_parse(json, strlen(json), &s, &err);
        if (r < 0)
                fail_msg("unexpected error: %s", us_error_text(err));
        assert_null(err);
        return s;
}

/* Parses json and checks the error message contains want. */
static void expect_error(const char *json, size_t len, const char *want)
{
        struct us_oci_spec *s = NULL;
        struct us_error *err = NULL;
        int r = us_oci_spec_parse(json, len, &s, &err);
        if (r >= 0)
                fail_msg("parsed, expected error containing: %s", want);
        assert_null(s);
        assert_non_null(err);
        assert_int_equal(-r, err->code);
        if (!strstr(us_error_text(err), want) ||
            strncmp(us_error_text(err), "invalid config.json: ", 21) != 0)
                fail_msg("error \"%s\" does not contain \"%s\"", us_error_text(err), want);
        us_error_free(err);
}
#define EXPECT_ERROR(json, want) expect_error(json, strlen(json), want)

static bool has_cap(uint64_t set, const char *name)
{
        cap_value_t c;
        assert_int_equal(cap_from_name(name, &c), 0);
        return set & (UINT64_C(1) << c);
}

static void ctr_run_spec(void **state)
{
        (void)state;
        /* Load through a bundle directory, as the shim does. */
        char dir[] = "/tmp/test-oci-spec-XXXXXX";
        assert_non_null(mkdtemp(dir));
        size_t len;
        _cleanup_free_ char *json = read_fixture("ctr-run.json", &len);
        char path[PATH_MAX];
        snprintf(path, sizeof(path), "%s/config.json", dir);
        FILE *f = fopen(path, "we");
        assert_non_null(f);
        assert_int_equal(fwrite(json, 1, len, f), len);
        fclose(f);

        struct us_oci_spec *s = NULL;
        struct us_error *err = NULL;
        int r = us_oci_spec_load(dir, &s, &err);
        if (r < 0)
                fail_msg("%s", us_error_text(err));
        unlink(path);
        rmdir(dir);

        assert_string_equal(s->oci_version, "1.0.2-dev");
        struct us_oci_process *p = s->process;
        assert_non_null(p);
        assert_false(p->terminal);
        assert_string_equal(p->args[0], "sh");
        assert_null(p->args[1]);
        assert_string_equal(p->env[0],
                            "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
        assert_string_equal(p->cwd, "/");
        assert_int_equal(p->user.uid, 0);
        assert_int_equal(p->user.gid, 0);
        assert_true(p->has_capabilities);
        assert_true(has_cap(p->capabilities.bounding, "CAP_CHOWN"));
        assert_true(has_cap(p->capabilities.bounding, "CAP_AUDIT_WRITE"));
        assert_false(has_cap(p->capabilities.bounding, "CAP_SYS_ADMIN"));
        assert_int_equal(__builtin_popcountll(p->capabilities.permitted), 14);
        assert_int_equal(p->capabilities.inheritable, 0);
        assert_int_equal(p->n_rlimits, 1);
        assert_int_equal(p->rlimits[0].resource, RLIMIT_NOFILE);
        assert_int_equal(p->rlimits[0].soft, 1024);
        assert_int_equal(p->rlimits[0].hard, 1024);
        assert_true(p->no_new_privileges);
        assert_false(p->has_oom_score_adj);

        assert_string_equal(s->root_path, "rootfs");
        assert_false(s->root_readonly);
        assert_int_equal(s->n_mounts, 7);
        assert_string_equal(s->mounts[0].destination, "/proc");
        assert_string_equal(s->mounts[0].type, "proc");
        assert_string_equal(s->mounts[0].source, "proc");
        assert_string_equal(s->mounts[0].options[2], "nodev");
        assert_string_equal(s->mounts[2].options[3], "ptmxmode=0666");

        struct us_oci_linux *l = &s->linux_;
        assert_int_equal(l->n_namespaces, 5);
        assert_int_equal(l->namespaces[0].type, CLONE_NEWPID);
        assert_int_equal(l->namespaces[3].type, CLONE_NEWNS);
        assert_int_equal(l->namespaces[4].type, CLONE_NEWNET);
        assert_null(l->namespaces[4].path);
        assert_string_equal(l->cgroups_path, "/default/c1");
        assert_true(l->has_resources);
        assert_int_equal(l->resources.n_devices, 1);
        assert_false(l->resources.devices[0].allow);
        assert_int_equal(l->resources.devices[0].type, 'a');
        assert_int_equal(l->resources.devices[0].major, -1);
        assert_int_equal(l->resources.devices[0].minor, -1);
        assert_string_equal(l->resources.devices[0].access, "rwm");
        assert_string_equal(l->masked_paths[0], "/proc/acpi");
        assert_string_equal(l->masked_paths[9], "/proc/scsi");
        assert_null(l->masked_paths[10]);
        assert_string_equal(l->readonly_paths[4], "/proc/sysrq-trigger");
        assert_null(l->seccomp);
        us_oci_spec_free(s);
}

/* `ctr oci spec` leaves process.args to `ctr run`: such a spec is refused. */
static void ctr_default_spec_needs_args(void **state)
{
        (void)state;
        size_t len;
        _cleanup_free_ char *json = read_fixture("ctr-default-spec.json", &len);
        expect_error(json, len, "invalid config.json: process.args: missing required value");
}

static void cri_spec(void **state)
{
        (void)state;
        size_t len;
        _cleanup_free_ char *json = read_fixture("cri-container.json", &len);
        struct us_oci_spec *s = NULL;
        struct us_error *err = NULL;
        if (us_oci_spec_parse(json, len, &s, &err) < 0)
                fail_msg("%s", us_error_text(err));

        assert_string_equal(us_oci_spec_annotation(s, "io.kubernetes.cri.container-type"),
                            "container");
        assert_string_equal(us_oci_spec_annotation(s, "unishim.io/isolation"), "container");
        assert_null(us_oci_spec_annotation(s, "nope"));
        assert_int_equal(s->process->user.n_additional_gids, 11);
        assert_int_equal(s->process->user.additional_gids[10], 27);
        assert_true(s->process->has_oom_score_adj);
        assert_int_equal(s->process->oom_score_adj, 1000);
        assert_string_equal(s->process->apparmor_profile, "cri-containerd.apparmor.d");
        assert_string_equal(s->process->args[2], "sleep 3600");
        assert_string_equal(s->mounts[6].destination, "/etc/hosts");
        assert_string_equal(s->mounts[6].options[0], "rbind");

        struct us_oci_linux *l = &s->linux_;
        assert_int_equal(l->namespaces[1].type, CLONE_NEWIPC);
        assert_string_equal(l->namespaces[1].path, "/proc/4242/ns/ipc");
        assert_string_equal(l->namespaces[4].path, "/proc/4242/ns/net");
        assert_true(l->resources.memory.has_limit);
        assert_int_equal(l->resources.memory.limit, 134217728);
        assert_false(l->resources.memory.has_reservation);
        assert_true(l->resources.cpu.has_quota);
        assert_int_equal(l->resources.cpu.quota, 50000);
        assert_int_equal(l->resources.cpu.period, 100000);
        assert_int_equal(l->resources.cpu.shares, 102);
        assert_false(l->resources.has_pids_limit);

        struct us_oci_seccomp *sc = l->seccomp;
        assert_non_null(sc);
        assert_int_equal(sc->default_action, US_SECCOMP_ACT_ERRNO);
        assert_false(sc->has_default_errno_ret);
        assert_string_equal(sc->architectures[0], "SCMP_ARCH_X86_64");
        assert_int_equal(sc->n_rules, 10);
        assert_string_equal(sc->rules[0].names[0], "accept");
        assert_int_equal(sc->rules[0].action, US_SECCOMP_ACT_ALLOW);
        assert_int_equal(sc->rules[0].n_args, 0);
        struct us_oci_seccomp_rule *pers = &sc->rules[5];
        assert_string_equal(pers->names[0], "personality");
        assert_int_equal(pers->n_args, 1);
        assert_int_equal(pers->args[0].value, 0xffffffffu);
        assert_int_equal(pers->args[0].op, US_SECCOMP_OP_EQ);
        struct us_oci_seccomp_rule *clone = &sc->rules[8];
        assert_string_equal(clone->names[0], "clone");
        assert_int_equal(clone->args[0].op, US_SECCOMP_OP_MASKED_EQ);
        assert_int_equal(clone->args[0].value, 0x7e020000);
        assert_int_equal(clone->args[0].value_two, 0);
        struct us_oci_seccomp_rule *clone3 = &sc->rules[9];
        assert_int_equal(clone3->action, US_SECCOMP_ACT_ERRNO);
        assert_true(clone3->has_errno_ret);
        assert_int_equal(clone3->errno_ret, ENOSYS);
        us_oci_spec_free(s);
}

#define MIN_PROC "\"process\":{\"args\":[\"sh\"],\"cwd\":\"/\""

static void full_and_forward_compatible(void **state)
{
        (void)state;
        struct us_oci_spec *s = parse_ok(
                "{\"ociVersion\":\"1.1.0\",\"future\":{\"x\":[1,{}]},"
                "\"hostname\":\"h\",\"domainname\":null," MIN_PROC
                ",\"terminal\":true,\"consoleSize\":{\"height\":24,\"width\":80},"
                "\"user\":{\"uid\":4294967295,\"gid\":7,\"umask\":18,\"additionalGids\":[]},"
                "\"capabilities\":{\"ambient\":[\"CAP_NET_BIND_SERVICE\"]},"
                "\"rlimits\":[{\"type\":\"RLIMIT_CORE\",\"soft\":18446744073709551615,"
                "\"hard\":18446744073709551615}],\"selinuxLabel\":\"l\",\"newField\":1},"
                "\"root\":{\"path\":\"/abs/rootfs\",\"readonly\":true},"
                "\"hooks\":{\"createRuntime\":[{\"path\":\"/bin/hook\",\"args\":[\"hook\",\"x\"],"
                "\"env\":[\"A=1\"],\"timeout\":5}],\"poststop\":[{\"path\":\"/bin/p\"}]},"
                "\"linux\":{\"uidMappings\":[{\"containerID\":0,\"hostID\":100000,\"size\":65536}],"
                "\"namespaces\":[{\"type\":\"user\"},{\"type\":\"time\"},{\"type\":\"cgroup\"}],"
                "\"devices\":[{\"type\":\"c\",\"path\":\"/dev/fuse\",\"major\":10,\"minor\":229,"
                "\"fileMode\":438,\"uid\":0,\"gid\":0}],"
                "\"sysctl\":{\"net.ipv4.ip_forward\":\"1\"},\"rootfsPropagation\":\"rslave\","
                "\"resources\":{\"pids\":{\"limit\":-1},\"blockIO\":{\"weight\":500},"
                "\"devices\":[{\"allow\":true,\"type\":\"c\",\"major\":1,\"minor\":3,"
                "\"access\":\"rw\"}],\"unified\":{\"memory.high\":\"max\"}},"
                "\"seccomp\":{\"defaultAction\":\"SCMP_ACT_ALLOW\",\"defaultErrnoRet\":1,"
                "\"flags\":[\"SECCOMP_FILTER_FLAG_LOG\"],\"syscalls\":[{\"names\":[\"x\"],"
                "\"action\":\"SCMP_ACT_KILL_THREAD\",\"args\":[{\"index\":5,"
                "\"value\":18446744073709551615,\"valueTwo\":9223372036854775808,"
                "\"op\":\"SCMP_CMP_MASKED_EQ\"}]}]}}}");
        assert_string_equal(s->hostname, "h");
        assert_null(s->domainname);
        assert_true(s->process->terminal);
        assert_true(s->process->has_console_size);
        assert_int_equal(s->process->console_width, 80);
        assert_int_equal(s->process->user.uid, UINT32_MAX);
        assert_true(s->process->user.has_umask);
        assert_int_equal(s->process->user.umask, 18);
        assert_true(has_cap(s->process->capabilities.ambient, "CAP_NET_BIND_SERVICE"));
        assert_int_equal(s->process->rlimits[0].resource, RLIMIT_CORE);
        assert_true(s->process->rlimits[0].soft == UINT64_MAX);
        assert_string_equal(s->process->selinux_label, "l");
        assert_true(s->root_readonly);
        assert_int_equal(s->hooks.create_runtime.n_hooks, 1);
        assert_string_equal(s->hooks.create_runtime.hooks[0].args[1], "x");
        assert_int_equal(s->hooks.create_runtime.hooks[0].timeout, 5);
        assert_false(s->hooks.poststop.hooks[0].has_timeout);
        assert_int_equal(s->hooks.prestart.n_hooks, 0);
        struct us_oci_linux *l = &s->linux_;
        assert_int_equal(l->uid_mappings[0].host_id, 100000);
        assert_int_equal(l->namespaces[1].type, CLONE_NEWTIME);
        assert_int_equal(l->devices[0].type, 'c');
        assert_int_equal(l->devices[0].minor, 229);
        assert_int_equal(l->devices[0].file_mode, 0666);
        assert_string_equal(l->sysctl[0].key, "net.ipv4.ip_forward");
        assert_string_equal(l->rootfs_propagation, "rslave");
        assert_int_equal(l->resources.pids_limit, -1);
        assert_int_equal(l->resources.blkio_weight, 500);
        assert_true(l->resources.devices[0].allow);
        assert_int_equal(l->resources.devices[0].major, 1);
        assert_string_equal(l->resources.unified[0].value, "max");
        assert_int_equal(l->seccomp->rules[0].action, US_SECCOMP_ACT_KILL);
        assert_true(l->seccomp->rules[0].args[0].value == UINT64_MAX);
        assert_true(l->seccomp->rules[0].args[0].value_two == UINT64_C(9223372036854775808));
        assert_string_equal(l->seccomp->flags[0], "SECCOMP_FILTER_FLAG_LOG");
        us_oci_spec_free(s);

        /* Duplicate keys: the last wins, as in Go's encoding/json. */
        s = parse_ok("{\"ociVersion\":\"1\",\"hostname\":\"a\",\"hostname\":\"b\","
                     "\"annotations\":{\"k\":\"1\",\"k\":\"2\"}}");
        assert_string_equal(s->hostname, "b");
        assert_string_equal(us_oci_spec_annotation(s, "k"), "2");
        us_oci_spec_free(s);

        /* An escaped backslash followed by u0000 is text, not a NUL. */
        s = parse_ok("{\"ociVersion\":\"1\",\"hostname\":\"a\\\\u0000\"}");
        assert_string_equal(s->hostname, "a\\u0000");
        us_oci_spec_free(s);
}

static void hostile_inputs(void **state)
{
        (void)state;
        static const struct {
                const char *json;
                const char *want;
        } cases[] = {
                {"{", "invalid config.json: parse error"},
                {"{\"ociVersion\":\"1\"} x", "invalid config.json: "},
                {"[]", "invalid config.json: expected object, got array"},
                {"/* c */ {}", "comment at byte 0"},
                {"{}", "invalid config.json: ociVersion: missing required value"},
                {"{\"ociVersion\":1}",
                 "invalid config.json: ociVersion: expected string, got number"},
                {"{\"ociVersion\":\"1\",\"hostname\":\"a\\u0000b\"}",
                 "invalid config.json: hostname: string contains a NUL character"},
                {"{\"ociVersion\":\"1\"," MIN_PROC ",\"env\":[\"A=1\",\"B\\u0000=x\"]}}",
                 "invalid config.json: process.env[1]: string contains a NUL character"},
                {"{\"ociVersion\":\"1\",\"annotations\":{\"k\\u0000x\":\"v\"}}",
                 "invalid config.json: annotations.k: key contains a NUL character"},
                {"{\"ociVersion\":\"1\",\"process\":{\"cwd\":\"/\",\"args\":[]}}",
                 "invalid config.json: process.args: must not be empty"},
                {"{\"ociVersion\":\"1\",\"process\":{\"cwd\":\"/\",\"args\":\"sh\"}}",
                 "invalid config.json: process.args: expected array, got string"},
                {"{\"ociVersion\":\"1\",\"process\":{\"cwd\":\"/\",\"args\":[\"sh\",3]}}",
                 "invalid config.json: process.args[1]: expected string, got number"},
                {"{\"ociVersion\":\"1\",\"process\":{\"args\":[\"sh\"]}}",
                 "invalid config.json: process.cwd: missing required value"},
                {"{\"ociVersion\":\"1\",\"process\":{\"args\":[\"sh\"],\"cwd\":\"tmp\"}}",
                 "invalid config.json: process.cwd: must be an absolute path, got \"tmp\""},
                {"{\"ociVersion\":\"1\"," MIN_PROC ",\"terminal\":\"yes\"}}",
                 "invalid config.json: process.terminal: expected boolean, got string"},
                {"{\"ociVersion\":\"1\"," MIN_PROC ",\"user\":{\"uid\":-1,\"gid\":0}}}",
                 "invalid config.json: process.user.uid: must not be negative, got -1"},
                {"{\"ociVersion\":\"1\"," MIN_PROC ",\"user\":{\"uid\":0,\"gid\":4294967296}}}",
                 "invalid config.json: process.user.gid: out of range (max 4294967295), got "
                 "4294967296"},
                {"{\"ociVersion\":\"1\"," MIN_PROC ",\"user\":{\"uid\":1.5,\"gid\":0}}}",
                 "invalid config.json: process.user.uid: expected integer, got 1.5"},
                {"{\"ociVersion\":\"1\"," MIN_PROC ",\"user\":{\"uid\":1e3,\"gid\":0}}}",
                 "invalid config.json: process.user.uid: expected integer, got 1e3"},
                {"{\"ociVersion\":\"1\"," MIN_PROC
                 ",\"user\":{\"uid\":0,\"gid\":0,\"additionalGids\":[1,\"2\"]}}}",
                 "invalid config.json: process.user.additionalGids[1]: expected integer, got "
                 "string"},
                {"{\"ociVersion\":\"1\"," MIN_PROC ",\"user\":{\"gid\":0}}}",
                 "invalid config.json: process.user.uid: missing required value"},
                {"{\"ociVersion\":\"1\"," MIN_PROC ",\"oomScoreAdj\":1001}}",
                 "invalid config.json: process.oomScoreAdj: out of range (-1000..1000), got 1001"},
                {"{\"ociVersion\":\"1\"," MIN_PROC ",\"oomScoreAdj\":-99999999999999999999}}",
                 "invalid config.json: process.oomScoreAdj: number out of range"},
                {"{\"ociVersion\":\"1\"," MIN_PROC
                 ",\"capabilities\":{\"bounding\":[\"CAP_KILL\",\"CAP_FOO\"]}}}",
                 "invalid config.json: process.capabilities.bounding[1]: unknown capability "
                 "\"CAP_FOO\""},
                {"{\"ociVersion\":\"1\"," MIN_PROC ",\"capabilities\":{\"effective\":[\"kill\"]}}}",
                 "invalid config.json: process.capabilities.effective[0]: unknown capability "
                 "\"kill\""},
                {"{\"ociVersion\":\"1\"," MIN_PROC
                 ",\"rlimits\":[{\"type\":\"RLIMIT_FOO\",\"soft\":1,\"hard\":1}]}}",
                 "invalid config.json: process.rlimits[0].type: unknown rlimit type "
                 "\"RLIMIT_FOO\""},
                {"{\"ociVersion\":\"1\"," MIN_PROC
                 ",\"rlimits\":[{\"type\":\"RLIMIT_NOFILE\",\"soft\":1,\"hard\":1},"
                 "{\"type\":\"RLIMIT_NOFILE\",\"soft\":1,\"hard\":1}]}}",
                 "invalid config.json: process.rlimits[1].type: duplicate rlimit type "
                 "\"RLIMIT_NOFILE\""},
                {"{\"ociVersion\":\"1\"," MIN_PROC
                 ",\"rlimits\":[{\"type\":\"RLIMIT_NOFILE\",\"soft\":1}]}}",
                 "invalid config.json: process.rlimits[0].hard: missing required value"},
                {"{\"ociVersion\":\"1\",\"mounts\":[{\"destination\":\"/a\"},"
                 "{\"destination\":\"proc\",\"type\":\"proc\"}]}",
                 "invalid config.json: mounts[1].destination: must be an absolute path, got "
                 "\"proc\""},
                {"{\"ociVersion\":\"1\",\"mounts\":[\"/proc\"]}",
                 "invalid config.json: mounts[0]: expected object, got string"},
                {"{\"ociVersion\":\"1\",\"linux\":{\"namespaces\":[{\"type\":\"pid\"},"
                 "{\"type\":\"pid\"}]}}",
                 "invalid config.json: linux.namespaces[1].type: duplicate namespace type "
                 "\"pid\""},
                {"{\"ociVersion\":\"1\",\"linux\":{\"namespaces\":[{\"type\":\"network\","
                 "\"path\":\"run/netns/x\"}]}}",
                 "invalid config.json: linux.namespaces[0].path: must be an absolute path"},
                {"{\"ociVersion\":\"1\",\"linux\":{\"resources\":{\"memory\":{\"limit\":\"1G\"}}}}",
                 "invalid config.json: linux.resources.memory.limit: expected integer, got "
                 "string"},
                {"{\"ociVersion\":\"1\",\"linux\":{\"resources\":{\"devices\":[{\"allow\":true,"
                 "\"access\":\"rwx\"}]}}}",
                 "invalid config.json: linux.resources.devices[0].access: invalid device access"},
                {"{\"ociVersion\":\"1\",\"linux\":{\"resources\":{\"blockIO\":{\"weight\":1001}}}}",
                 "invalid config.json: linux.resources.blockIO.weight: out of range (max 1000)"},
                {"{\"ociVersion\":\"1\",\"linux\":{\"devices\":[{\"type\":\"x\",\"path\":\"/"
                 "d\"}]}}",
                 "invalid config.json: linux.devices[0].type: unknown device type \"x\""},
                {"{\"ociVersion\":\"1\",\"linux\":{\"sysctl\":{\"a\":1}}}",
                 "invalid config.json: linux.sysctl.a: expected string, got number"},
                {"{\"ociVersion\":\"1\",\"linux\":{\"rootfsPropagation\":\"weird\"}}",
                 "invalid config.json: linux.rootfsPropagation: unknown rootfs propagation "
                 "\"weird\""},
                {"{\"ociVersion\":\"1\",\"hooks\":{\"poststart\":[{\"path\":\"/"
                 "x\",\"timeout\":0}]}}",
                 "invalid config.json: hooks.poststart[0].timeout: out of range (1..2147483647)"},
                {"{\"ociVersion\":\"1\",\"linux\":{\"seccomp\":{\"defaultAction\":\"SCMP_ACT_"
                 "NOPE\"}}}",
                 "invalid config.json: linux.seccomp.defaultAction: unknown seccomp action "
                 "\"SCMP_ACT_NOPE\""},
                {"{\"ociVersion\":\"1\",\"linux\":{\"seccomp\":{\"defaultAction\":\"SCMP_ACT_"
                 "ALLOW\","
                 "\"syscalls\":[{\"names\":[\"read\"],\"action\":\"SCMP_ACT_ERRNO\",\"args\":[{"
                 "\"index\":6,\"value\":1,\"op\":\"SCMP_CMP_EQ\"}]}]}}}",
                 "invalid config.json: linux.seccomp.syscalls[0].args[0].index: out of range "
                 "(0..5), got 6"},
                {"{\"ociVersion\":\"1\",\"linux\":{\"seccomp\":{\"defaultAction\":\"SCMP_ACT_"
                 "ALLOW\","
                 "\"syscalls\":[{\"names\":[\"read\"],\"action\":\"SCMP_ACT_ERRNO\",\"args\":[{"
                 "\"index\":0,\"value\":18446744073709551616,\"op\":\"SCMP_CMP_EQ\"}]}]}}}",
                 "invalid config.json: linux.seccomp.syscalls[0].args[0].value: number out of "
                 "range"},
                {"{\"ociVersion\":\"1\",\"linux\":{\"seccomp\":{\"defaultAction\":\"SCMP_ACT_"
                 "ALLOW\","
                 "\"syscalls\":[{\"names\":[],\"action\":\"SCMP_ACT_ERRNO\"}]}}}",
                 "invalid config.json: linux.seccomp.syscalls[0].names: must not be empty"},
                {"{\"ociVersion\":\"1\",\"linux\":{\"seccomp\":{\"defaultAction\":\"SCMP_ACT_"
                 "ALLOW\","
                 "\"syscalls\":[{\"names\":[\"read\"],\"action\":\"SCMP_ACT_ERRNO\",\"args\":[{"
                 "\"index\":0,\"value\":1,\"op\":\"SCMP_CMP_XX\"}]}]}}}",
                 "invalid config.json: linux.seccomp.syscalls[0].args[0].op: unknown seccomp "
                 "operator \"SCMP_CMP_XX\""},
        };
        for (size_t i = 0; i < US_ELEMENTSOF(cases); i++)
                EXPECT_ERROR(cases[i].json, cases[i].want);
}

/* The exact text the engine will hand to containerd. */
static void error_names_the_path(void **state)
{
        (void)state;
        const char *json = "{\"ociVersion\":\"1\",\"linux\":{\"namespaces\":[{\"type\":\"pid\"},"
                           "{\"type\":\"mount\"},{\"type\":\"foo\"}]}}";
        struct us_oci_spec *s = NULL;
        struct us_error *err = NULL;
        assert_int_equal(us_oci_spec_parse(json, strlen(json), &s, &err), -EINVAL);
        assert_string_equal(us_error_text(err), "invalid config.json: linux.namespaces[2].type: "
                                                "unknown namespace type \"foo\"");
        us_error_free(err);
}

static char *repeat(const char *head, const char *item, const char *sep, size_t n, const char *tail)
{
        size_t len = strlen(head) + n * (strlen(item) + strlen(sep)) + strlen(tail) + 1;
        char *buf = malloc(len), *p = buf;
        assert_non_null(buf);
        p = stpcpy(p, head);
        for (size_t i = 0; i < n; i++) {
                p = stpcpy(p, item);
                if (i + 1 < n)
                        p = stpcpy(p, sep);
        }
        stpcpy(p, tail);
        return buf;
}

static void limits(void **state)
{
        (void)state;
        /* Nesting: 32 levels are fine (in an ignored key), 33 are not. */
        _cleanup_free_ char *deep_ok = NULL;
        _cleanup_free_ char *deep_bad = NULL;
        {
                char open[64] = "", close[64] = "";
                memset(open, '[', 31);
                memset(close, ']', 31);
                assert_true(asprintf(&deep_ok, "{\"ociVersion\":\"1\",\"x\":%s%s}", open, close) >
                            0);
                memset(open, '[', 32);
                memset(close, ']', 32);
                assert_true(asprintf(&deep_bad, "{\"ociVersion\":\"1\",\"x\":%s%s}", open, close) >
                            0);
        }
        us_oci_spec_free(parse_ok(deep_ok));
        EXPECT_ERROR(deep_bad, "invalid config.json: nesting deeper than 32 levels");
        /* A million brackets would crash yajl_tree_free's recursion without the pre-scan. */
        _cleanup_free_ char *deeper = repeat("", "[", "", 1000000, "");
        EXPECT_ERROR(deeper, "nesting deeper than 32 levels at byte 32");

        /* Too many elements in one array, named by path. */
        _cleanup_free_ char *huge =
                repeat("{\"ociVersion\":\"1\",\"process\":{\"cwd\":\"/\",\"args\":[", "\"a\"", ",",
                       US_OCI_MAX_ITEMS + 1, "]}}");
        EXPECT_ERROR(huge, "invalid config.json: process.args: too many elements in array (65537, "
                           "max 65536)");
        _cleanup_free_ char *many = repeat("{\"ociVersion\":\"1\",\"annotations\":{", "\"k\":\"v\"",
                                           ",", US_OCI_MAX_ITEMS + 1, "}}");
        EXPECT_ERROR(many, "invalid config.json: annotations: too many elements in object");
        /* Too many values in total (memory), even in ignored keys. */
        _cleanup_free_ char *values =
                repeat("{\"ociVersion\":\"1\",\"x\":[", "0", ",", US_OCI_MAX_VALUES + 1, "]}");
        EXPECT_ERROR(values, "invalid config.json: more than 524288 values");

        /* Size, and a raw NUL byte. */
        size_t big = US_OCI_MAX_CONFIG_SIZE + 1;
        _cleanup_free_ char *large = malloc(big);
        assert_non_null(large);
        memset(large, ' ', big);
        expect_error(large, big, "invalid config.json: too large (16777217 bytes, max 16777216)");
        static const char with_nul[] = "{\"ociVersion\":\"1\"}\0";
        expect_error(with_nul, sizeof(with_nul) - 1, "invalid config.json: NUL byte at offset 18");
        expect_error("", 0, "invalid config.json: ");
}

static void process_parse(void **state)
{
        (void)state;
        const char *json = "{\"args\":[\"ls\",\"-l\"],\"cwd\":\"/work\",\"terminal\":true,"
                           "\"consoleSize\":{\"height\":24,\"width\":80},\"env\":[\"A=b\"],"
                           "\"user\":{\"uid\":1000,\"gid\":1000,\"umask\":18},"
                           "\"capabilities\":{\"bounding\":[\"CAP_KILL\"]}}";
        struct us_oci_process *p = NULL;
        struct us_error *err = NULL;
        if (us_oci_process_parse(json, strlen(json), &p, &err) < 0)
                fail_msg("%s", us_error_text(err));
        assert_string_equal(p->args[1], "-l");
        assert_string_equal(p->cwd, "/work");
        assert_int_equal(p->console_height, 24);
        assert_int_equal(p->user.uid, 1000);
        assert_true(has_cap(p->capabilities.bounding, "CAP_KILL"));
        us_oci_process_free(p);

        p = NULL;
        const char *bad = "{\"cwd\":\"/\",\"args\":[\"ls\"],\"consoleSize\":{\"height\":24}}";
        assert_int_equal(us_oci_process_parse(bad, strlen(bad), &p, &err), -EINVAL);
        assert_null(p);
        assert_string_equal(us_error_text(err),
                            "invalid process spec: consoleSize.width: missing required value");
        us_error_free(err);
}

static void resources_parse(void **state)
{
        (void)state;
        const char *json = "{\"memory\":{\"limit\":-1,\"swappiness\":18446744073709551615,"
                           "\"disableOOMKiller\":false},\"cpu\":{\"shares\":1024,\"quota\":-1,"
                           "\"cpus\":\"0-1\",\"mems\":\"0\"},\"pids\":{\"limit\":100},"
                           "\"blockIO\":{\"weight\":500},\"unified\":{\"memory.high\":\"max\"}}";
        struct us_oci_resources *r = NULL;
        struct us_error *err = NULL;
        if (us_oci_resources_parse(json, strlen(json), &r, &err) < 0)
                fail_msg("%s", us_error_text(err));
        assert_true(r->memory.has_limit);
        assert_int_equal(r->memory.limit, -1);
        assert_true(r->memory.swappiness == UINT64_MAX);
        assert_true(r->memory.has_disable_oom_killer);
        assert_false(r->memory.disable_oom_killer);
        assert_int_equal(r->cpu.quota, -1);
        assert_string_equal(r->cpu.cpus, "0-1");
        assert_int_equal(r->pids_limit, 100);
        assert_int_equal(r->blkio_weight, 500);
        assert_string_equal(r->unified[0].key, "memory.high");
        us_oci_resources_free(r);

        r = NULL;
        const char *bad = "{\"memory\":{\"limit\":-2}}";
        assert_int_equal(us_oci_resources_parse(bad, strlen(bad), &r, &err), -EINVAL);
        assert_null(r);
        assert_string_equal(us_error_text(err), "invalid resources: memory.limit: out of range "
                                                "(-1..9223372036854775807), got -2");
        us_error_free(err);
}

static void load_errors(void **state)
{
        (void)state;
        struct us_oci_spec *s = NULL;
        struct us_error *err = NULL;
        assert_int_equal(us_oci_spec_load("/nonexistent-bundle", &s, &err), -ENOENT);
        assert_string_equal(us_error_text(err),
                            "open /nonexistent-bundle/config.json: No such file or directory");
        err = us_error_free(err);

        char dir[] = "/tmp/test-oci-spec-XXXXXX";
        assert_non_null(mkdtemp(dir));
        char path[PATH_MAX];
        snprintf(path, sizeof(path), "%s/config.json", dir);
        assert_int_equal(mkdir(path, 0700), 0);
        assert_int_equal(us_oci_spec_load(dir, &s, &err), -EINVAL);
        assert_non_null(strstr(us_error_text(err), "config.json: not a regular file"));
        err = us_error_free(err);
        rmdir(path);
        /* A FIFO is refused too, without blocking on its open. */
        assert_int_equal(mkfifo(path, 0600), 0);
        assert_int_equal(us_oci_spec_load(dir, &s, &err), -EINVAL);
        assert_non_null(strstr(us_error_text(err), "config.json: not a regular file"));
        err = us_error_free(err);
        unlink(path);

        FILE *f = fopen(path, "we");
        assert_non_null(f);
        fputs("{\"ociVersion\":true}", f);
        fclose(f);
        assert_int_equal(us_oci_spec_load(dir, &s, &err), -EINVAL);
        assert_string_equal(us_error_text(err),
                            "invalid config.json: ociVersion: expected string, got boolean");
        err = us_error_free(err);
        assert_null(s);
        unlink(path);
        rmdir(dir);
}

static void sysctl_namespaces(void **state)
{
        (void)state;
        assert_int_equal(us_oci_sysctl_namespace("net.core.somaxconn"), CLONE_NEWNET);
        assert_int_equal(us_oci_sysctl_namespace("net.ipv4.conf.eth0.forwarding"), CLONE_NEWNET);
        assert_int_equal(us_oci_sysctl_namespace("kernel.shm_rmid_forced"), CLONE_NEWIPC);
        assert_int_equal(us_oci_sysctl_namespace("kernel.msgmax"), CLONE_NEWIPC);
        assert_int_equal(us_oci_sysctl_namespace("fs.mqueue.msg_max"), CLONE_NEWIPC);
        assert_int_equal(us_oci_sysctl_namespace("kernel.hostname"), CLONE_NEWUTS);
        assert_int_equal(us_oci_sysctl_namespace("kernel.domainname"), CLONE_NEWUTS);
        /* The whole kernel's, and names that only look alike. */
        assert_int_equal(us_oci_sysctl_namespace("kernel.panic"), 0);
        assert_int_equal(us_oci_sysctl_namespace("kernel.msgmax2"), 0);
        assert_int_equal(us_oci_sysctl_namespace("network.x"), 0);
        assert_int_equal(us_oci_sysctl_namespace("fs.mqueue"), 0);
        assert_int_equal(us_oci_sysctl_namespace("vm.overcommit_memory"), 0);
        assert_int_equal(us_oci_sysctl_namespace(""), 0);
        assert_int_equal(us_oci_sysctl_namespace(NULL), 0);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(ctr_run_spec),
                cmocka_unit_test(ctr_default_spec_needs_args),
                cmocka_unit_test(cri_spec),
                cmocka_unit_test(full_and_forward_compatible),
                cmocka_unit_test(hostile_inputs),
                cmocka_unit_test(error_names_the_path),
                cmocka_unit_test(limits),
                cmocka_unit_test(process_parse),
                cmocka_unit_test(resources_parse),
                cmocka_unit_test(load_errors),
                cmocka_unit_test(sysctl_namespaces),
        };
        return unit_exit(unit_run_group_tests(tests, NULL, NULL));
}
