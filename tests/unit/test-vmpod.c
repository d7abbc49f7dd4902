/* SPDX-License-Identifier: Apache-2.0 */
/* shim/vmpod.c: what a VM kind's pod decides and finds without a VM. */
#include <errno.h>
#include <limits.h>
#include <sched.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "unit.h"

#include "base/fs-util.h"

#include "shim/vmpod.h"

/* A CRI sandbox spec with the given annotations (JSON members, may be
 * empty) and linux.resources (a JSON object, or NULL). */
static struct us_oci_spec *spec_with(const char *annotations, const char *resources)
{
        char json[2048];
        snprintf(json, sizeof(json),
                 "{\"ociVersion\": \"1.0.2\", \"process\": {\"args\": [\"sh\"], \"cwd\": \"/\"},"
                 " \"root\": {\"path\": \"rootfs\"}, \"hostname\": \"pod-a\","
                 " \"annotations\": {\"io.kubernetes.cri.container-type\": \"sandbox\"%s%s},"
                 " \"linux\": {\"namespaces\": [{\"type\": \"network\", \"path\":"
                 " \"/var/run/netns/cni-1\"}]%s%s}}",
                 *annotations ? ", " : "", annotations, resources ? ", \"resources\": " : "",
                 resources ? resources : "");
        struct us_oci_spec *spec = NULL;
        struct us_error *err = NULL;
        if (us_oci_spec_parse(json, strlen(json), &spec, &err) < 0)
                fail_msg("parse: %s", us_error_text(err));
        return spec;
}

static struct policy_config *bounded(void)
{
        const char *json = "{\"sandbox\": {\"vcpus\": 1, \"max_vcpus\": 2, \"memory_mib\": 256,"
                           " \"max_memory_mib\": 1024}}";
        struct policy_config *cfg = NULL;
        struct us_error *err = NULL;
        if (policy_config_parse(json, strlen(json), "cfg.json", &cfg, &err) < 0)
                fail_msg("config: %s", us_error_text(err));
        return cfg;
}

static void size_is(const char *annotations, const char *resources, unsigned vcpus,
                    unsigned memory_mib)
{
        struct policy_config *cfg = bounded();
        struct us_oci_spec *spec = spec_with(annotations, resources);
        struct policy_vm_size size = {0, 0};
        struct us_error *err = NULL;
        if (vmpod_size(cfg, POLICY_ISOLATION_SANDBOX, spec, &size, &err) < 0)
                fail_msg("size: %s", us_error_text(err));
        assert_int_equal(size.vcpus, vcpus);
        assert_int_equal(size.memory_mib, memory_mib);
        us_oci_spec_free(spec);
        policy_config_free(cfg);
}

static void size_from_annotations_limits_and_defaults(void **state)
{
        (void)state;
        /* Neither: the operator's defaults. */
        size_is("", NULL, 1, 256);
        /* The limits: quota/period rounded up, the memory limit plus the
         * guest's overhead. */
        size_is("",
                "{\"cpu\": {\"quota\": 150000, \"period\": 100000},"
                " \"memory\": {\"limit\": 104857600}}",
                2, 100 + VMPOD_MEMORY_OVERHEAD_MIB);
        /* Limits beyond the operator's bounds are cut to them; a tiny memory
         * limit still gets a guest that boots. */
        size_is("",
                "{\"cpu\": {\"quota\": 800000, \"period\": 100000},"
                " \"memory\": {\"limit\": 4294967296}}",
                2, 1024);
        size_is("", "{\"memory\": {\"limit\": 1048576}}", 1, POLICY_VM_MIN_MEMORY_MIB);
        /* A CRI sandbox's spec has no limits of its own (the pause
         * container's): containerd annotates it with the pod's sums. */
        size_is("\"io.kubernetes.cri.sandbox-cpu-quota\": \"200000\","
                " \"io.kubernetes.cri.sandbox-cpu-period\": \"100000\","
                " \"io.kubernetes.cri.sandbox-memory\": \"268435456\"",
                "{\"cpu\": {\"shares\": 2}}", 2, 256 + VMPOD_MEMORY_OVERHEAD_MIB);
        /* "0": a container without a limit, so the pod has none. */
        size_is("\"io.kubernetes.cri.sandbox-cpu-quota\": \"0\","
                " \"io.kubernetes.cri.sandbox-cpu-period\": \"100000\","
                " \"io.kubernetes.cri.sandbox-memory\": \"0\"",
                NULL, 1, 256);
        /* The annotations win over the limits. */
        size_is("\"unishim.io/vcpus\": \"1\", \"unishim.io/memory-mib\": \"512\"",
                "{\"cpu\": {\"quota\": 200000, \"period\": 100000},"
                " \"memory\": {\"limit\": 104857600}}",
                1, 512);
}

static void size_refuses_bad_annotations(void **state)
{
        (void)state;
        struct policy_config *cfg = bounded();
        struct us_oci_spec *spec = spec_with("\"unishim.io/vcpus\": \"9\"", NULL);
        struct policy_vm_size size = {7, 7};
        struct us_error *err = NULL;
        assert_true(vmpod_size(cfg, POLICY_ISOLATION_SANDBOX, spec, &size, &err) < 0);
        assert_non_null(strstr(us_error_text(err), "unishim.io/vcpus"));
        /* Nothing written on failure. */
        assert_int_equal(size.vcpus, 7);
        assert_int_equal(size.memory_mib, 7);
        us_error_free(err);
        err = NULL;
        us_oci_spec_free(spec);
        /* containerd's sums are numbers or refused, never guessed at. */
        spec = spec_with("\"io.kubernetes.cri.sandbox-memory\": \"-1\"", NULL);
        assert_true(vmpod_size(cfg, POLICY_ISOLATION_SANDBOX, spec, &size, &err) < 0);
        assert_non_null(strstr(us_error_text(err), "io.kubernetes.cri.sandbox-memory"));
        assert_int_equal(size.memory_mib, 7);
        us_error_free(err);
        us_oci_spec_free(spec);
        policy_config_free(cfg);
}

static void what_the_spec_says(void **state)
{
        (void)state;
        struct us_oci_spec *spec = spec_with("", NULL);
        assert_string_equal(vmpod_netns_of(spec), "/var/run/netns/cni-1");
        assert_true(vmpod_is_cri_sandbox(spec));
        us_oci_spec_free(spec);

        const char *json = "{\"ociVersion\": \"1.0.2\", \"process\": {\"args\": [\"sh\"],"
                           " \"cwd\": \"/\"}, \"root\": {\"path\": \"rootfs\"}}";
        assert_int_equal(us_oci_spec_parse(json, strlen(json), &spec, NULL), 0);
        assert_null(vmpod_netns_of(spec));
        assert_false(vmpod_is_cri_sandbox(spec));
        us_oci_spec_free(spec);

        struct netplumb_vm_net net = {.mac = {0x02, 0x75, 0x6e, 0x00, 0xab, 0xff}};
        char mac[18];
        vmpod_mac_text(&net, mac);
        assert_string_equal(mac, "02:75:6e:00:ab:ff");
}

/* A spec with the given linux.namespaces members. */
static void namespaces_refused(const char *namespaces, const char *field, const char *what)
{
        char json[1024];
        snprintf(json, sizeof(json),
                 "{\"ociVersion\": \"1.0.2\", \"process\": {\"args\": [\"sh\"], \"cwd\": \"/\"},"
                 " \"root\": {\"path\": \"rootfs\"}, \"linux\": {\"namespaces\": [%s]}}",
                 namespaces);
        struct us_oci_spec *spec = NULL;
        assert_int_equal(us_oci_spec_parse(json, strlen(json), &spec, NULL), 0);
        struct us_error *err = NULL;
        int r = vmpod_check_namespaces(POLICY_ISOLATION_SANDBOX, spec, &err);
        if (!field) {
                assert_int_equal(r, 0);
                assert_null(err);
        } else {
                assert_int_equal(r, -ENOTSUP);
                const char *text = us_error_text(err);
                char want[128];
                snprintf(want, sizeof(want), "%s is not supported by unishim's sandbox isolation",
                         field);
                if (!strstr(text, want) || !strstr(text, what))
                        fail_msg("%s: %s", field, text);
                us_error_free(err);
        }
        us_oci_spec_free(spec);
}

static void host_namespaces_are_refused(void **state)
{
        (void)state;
        namespaces_refused("{\"type\": \"pid\"}, {\"type\": \"ipc\"}, {\"type\": \"uts\"},"
                           " {\"type\": \"mount\"}, {\"type\": \"network\", \"path\": \"/n\"}",
                           NULL, NULL);
        namespaces_refused("{\"type\": \"pid\"}, {\"type\": \"ipc\"}, {\"type\": \"mount\"}",
                           "hostNetwork", "network namespace");
        namespaces_refused("{\"type\": \"network\"}, {\"type\": \"ipc\"}", "hostPID",
                           "PID namespace");
        namespaces_refused("{\"type\": \"network\"}, {\"type\": \"pid\"}", "hostIPC",
                           "IPC namespace");
}

static void dead_state_dir_is_only_ours(void **state)
{
        (void)state;
        struct us_oci_spec *spec = spec_with("", NULL);
        char buf[PATH_MAX];
        const char *pod_id = NULL;
        /* Ids that could leave VMPOD_STATE_ROOT never name a dir. */
        assert_false(vmpod_dead_state_dir("k8s.io", "../etc", spec, POLICY_ISOLATION_SANDBOX, buf,
                                          sizeof(buf), &pod_id));
        assert_false(vmpod_dead_state_dir("..", "abc", spec, POLICY_ISOLATION_SANDBOX, buf,
                                          sizeof(buf), &pod_id));
        /* A pod that left nothing. */
        assert_false(vmpod_dead_state_dir("unishim-test-none", "no-such-pod", spec,
                                          POLICY_ISOLATION_SANDBOX, buf, sizeof(buf), &pod_id));
        assert_null(pod_id);

        /* Each kind's cleanup acts on its own kind's pods only: the dir's
         * mark says which; no mark is a sandbox pod's. Needs root (the
         * state root is /run's). */
        char ns[64], dir[PATH_MAX], kind[PATH_MAX + 8];
        snprintf(ns, sizeof(ns), "unishim-test-%d", (int)getpid());
        snprintf(dir, sizeof(dir), VMPOD_STATE_ROOT "/%s/pod1", ns);
        snprintf(kind, sizeof(kind), "%s/kind", dir);
        struct us_error *err = NULL;
        if (us_mkdir_p(dir, 0700, &err) < 0) {
                us_error_free(err);
                us_oci_spec_free(spec);
                unit_skip("cannot make %s (not root?)", dir);
        }
        assert_true(vmpod_dead_state_dir(ns, "pod1", spec, POLICY_ISOLATION_SANDBOX, buf,
                                         sizeof(buf), &pod_id));
        assert_string_equal(pod_id, "pod1");
        assert_false(vmpod_dead_state_dir(ns, "pod1", spec, POLICY_ISOLATION_VM, buf, sizeof(buf),
                                          &pod_id));
        FILE *f = fopen(kind, "w");
        assert_non_null(f);
        fputs("vm", f);
        fclose(f);
        assert_false(vmpod_dead_state_dir(ns, "pod1", spec, POLICY_ISOLATION_SANDBOX, buf,
                                          sizeof(buf), &pod_id));
        assert_true(vmpod_dead_state_dir(ns, "pod1", spec, POLICY_ISOLATION_VM, buf, sizeof(buf),
                                         &pod_id));
        unlink(kind);
        rmdir(dir);
        snprintf(dir, sizeof(dir), VMPOD_STATE_ROOT "/%s", ns);
        rmdir(dir);
        us_oci_spec_free(spec);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(size_from_annotations_limits_and_defaults),
                cmocka_unit_test(size_refuses_bad_annotations),
                cmocka_unit_test(what_the_spec_says),
                cmocka_unit_test(host_namespaces_are_refused),
                cmocka_unit_test(dead_state_dir_is_only_ours),
        };
        return unit_exit(unit_run_group_tests(tests, NULL, NULL));
}
