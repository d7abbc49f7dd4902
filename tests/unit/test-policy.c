/* SPDX-License-Identifier: Apache-2.0 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "unit.h"

#include "policy/policy.h"

#define KV(k, v)                                                                                   \
        {                                                                                          \
                (char *)(k), (char *)(v)                                                           \
        }

static struct policy_config *parse_ok(const char *json)
{
        struct policy_config *cfg = NULL;
        struct us_error *err = NULL;
        if (policy_config_parse(json, strlen(json), "/etc/unishim/config.json", &cfg, &err) < 0)
                fail_msg("parse: %s", us_error_text(err));
        return cfg;
}

static void parse_fails(const char *json, const char *needle)
{
        struct policy_config *cfg = NULL;
        struct us_error *err = NULL;
        assert_true(policy_config_parse(json, strlen(json), "cfg.json", &cfg, &err) < 0);
        assert_null(cfg);
        if (!strstr(us_error_text(err), needle))
                fail_msg("error \"%s\" lacks \"%s\"", us_error_text(err), needle);
        us_error_free(err);
}

static void defaults_allow_everything_default_container(void **state)
{
        (void)state;
        struct policy_config *cfg = NULL;
        assert_int_equal(policy_config_default(&cfg, NULL), 0);
        enum policy_isolation k = POLICY_ISOLATION_VM;
        assert_int_equal(policy_pod_isolation(cfg, NULL, 0, &k, NULL), 0);
        assert_int_equal(k, POLICY_ISOLATION_CONTAINER);
        struct us_oci_kv a[] = {KV("io.kubernetes.cri.sandbox-id", "x"),
                                KV("unishim.io/isolation", "sandbox")};
        assert_int_equal(policy_pod_isolation(cfg, a, 2, &k, NULL), 0);
        assert_int_equal(k, POLICY_ISOLATION_SANDBOX);
        assert_true(policy_is_mesh_sidecar(cfg, "istio-proxy"));
        assert_false(policy_is_mesh_sidecar(cfg, "app"));
        policy_config_free(cfg);
}

static void unknown_value_names_annotation_value_and_allowed(void **state)
{
        (void)state;
        struct policy_config *cfg =
                parse_ok("{\"isolation\": {\"allowed\": [\"container\", \"vm\"]}}");
        struct us_oci_kv a[] = {KV("unishim.io/isolation", "bogus")};
        enum policy_isolation k;
        struct us_error *err = NULL;
        assert_int_equal(policy_pod_isolation(cfg, a, 1, &k, &err), -EINVAL);
        const char *m = us_error_text(err);
        assert_non_null(strstr(m, "unishim.io/isolation"));
        assert_non_null(strstr(m, "\"bogus\""));
        assert_non_null(strstr(m, "allowed here: container, vm"));
        us_error_free(err);
        policy_config_free(cfg);
}

static void kind_not_allowed_names_config(void **state)
{
        (void)state;
        struct policy_config *cfg = parse_ok("{\"isolation\": {\"allowed\": [\"container\"]}}");
        struct us_oci_kv a[] = {KV("unishim.io/isolation", "vm")};
        enum policy_isolation k;
        struct us_error *err = NULL;
        assert_int_equal(policy_pod_isolation(cfg, a, 1, &k, &err), -EPERM);
        assert_non_null(
                strstr(us_error_text(err), "\"vm\" is not allowed by /etc/unishim/config.json"));
        assert_non_null(strstr(us_error_text(err), "(allowed: container)"));
        us_error_free(err);
        policy_config_free(cfg);
}

static void annotation_allow_list(void **state)
{
        (void)state;
        struct policy_config *cfg = parse_ok("{\"annotations\": {\"allowed\": []}}");
        struct us_oci_kv a[] = {KV("unishim.io/isolation", "container")};
        enum policy_isolation k;
        struct us_error *err = NULL;
        assert_int_equal(policy_pod_isolation(cfg, a, 1, &k, &err), -EPERM);
        assert_non_null(
                strstr(us_error_text(err), "annotation unishim.io/isolation is not allowed"));
        assert_non_null(strstr(us_error_text(err), "pods may set: none"));
        err = us_error_free(err);
        /* Foreign annotations are none of our business. */
        struct us_oci_kv other[] = {KV("io.kubernetes.cri.container-type", "sandbox")};
        assert_int_equal(policy_pod_isolation(cfg, other, 1, &k, NULL), 0);
        policy_config_free(cfg);

        struct policy_config *def = NULL;
        assert_int_equal(policy_config_default(&def, NULL), 0);
        struct us_oci_kv unknown[] = {KV("unishim.io/cpus", "4")};
        assert_int_equal(policy_pod_isolation(def, unknown, 1, &k, &err), -EPERM);
        assert_non_null(strstr(us_error_text(err), "unishim.io/cpus is not allowed"));
        us_error_free(err);
        policy_config_free(def);
}

static void operator_default_kind(void **state)
{
        (void)state;
        struct policy_config *cfg =
                parse_ok("{\"isolation\": {\"default\": \"sandbox\", \"allowed\": [\"sandbox\"]},"
                         " \"mesh_sidecars\": [\"envoy\"]}");
        enum policy_isolation k;
        assert_int_equal(policy_pod_isolation(cfg, NULL, 0, &k, NULL), 0);
        assert_int_equal(k, POLICY_ISOLATION_SANDBOX);
        assert_true(policy_is_mesh_sidecar(cfg, "envoy"));
        assert_false(policy_is_mesh_sidecar(cfg, "istio-proxy"));
        policy_config_free(cfg);
}

static void sandbox_section(void **state)
{
        (void)state;
        struct policy_config *cfg =
                parse_ok("{\"sandbox\": {\"kernel\": \"/k/vmlinux\", \"initrd\": "
                         "\"/k/initramfs.cpio\", \"accel\": \"tcg\", \"vcpus\": 2, "
                         "\"max_vcpus\": 4, \"memory_mib\": 512}}");
        assert_string_equal(cfg->sandbox.kernel, "/k/vmlinux");
        assert_string_equal(cfg->sandbox.accel, "tcg");
        assert_int_equal(cfg->sandbox.vcpus, 2);
        assert_int_equal(cfg->sandbox.max_vcpus, 4);
        assert_int_equal(cfg->sandbox.memory_mib, 512);
        assert_int_equal(cfg->sandbox.max_memory_mib, 16384);
        policy_config_free(cfg);
        struct policy_config *def = NULL;
        assert_int_equal(policy_config_default(&def, NULL), 0);
        assert_null(def->sandbox.kernel);
        assert_int_equal(def->sandbox.vcpus, 1);
        assert_int_equal(def->sandbox.memory_mib, 256);
        policy_config_free(def);
        parse_fails("{\"sandbox\": {\"accel\": \"hvf\"}}", "sandbox.accel: unknown accelerator");
        parse_fails("{\"sandbox\": {\"kernel\": \"vmlinux\"}}", "sandbox.kernel");
        parse_fails("{\"sandbox\": {\"vcpus\": 0}}", "sandbox.vcpus: must be at least 1");
        parse_fails("{\"sandbox\": {\"vcpus\": 8, \"max_vcpus\": 2}}", "above max_vcpus");
        parse_fails("{\"sandbox\": {\"memory_mib\": 16}}", "sandbox.memory_mib");
        parse_fails("{\"sandbox\": {\"cpus\": 1}}", "sandbox.cpus: unknown key");
}

/* sandbox.console_log_max_bytes: the cap of a VM's console log on the host. */
static void console_log_cap(void **state)
{
        (void)state;
        struct policy_config *def = NULL;
        assert_int_equal(policy_config_default(&def, NULL), 0);
        assert_int_equal(def->sandbox.console_log_max_bytes, 1048576);
        policy_config_free(def);
        /* Absent from a file: the default. */
        struct policy_config *cfg = parse_ok("{\"sandbox\": {\"vcpus\": 1}}");
        assert_int_equal(cfg->sandbox.console_log_max_bytes, POLICY_CONSOLE_LOG_DEFAULT_BYTES);
        policy_config_free(cfg);
        /* Both bounds are allowed. */
        cfg = parse_ok("{\"sandbox\": {\"console_log_max_bytes\": 65536}}");
        assert_int_equal(cfg->sandbox.console_log_max_bytes, 65536);
        policy_config_free(cfg);
        cfg = parse_ok("{\"sandbox\": {\"console_log_max_bytes\": 1073741824}}");
        assert_int_equal(cfg->sandbox.console_log_max_bytes, 1073741824);
        policy_config_free(cfg);
        /* Out of range or not a byte count: the error names the key and the range. */
        parse_fails("{\"sandbox\": {\"console_log_max_bytes\": 65535}}",
                    "sandbox.console_log_max_bytes: 65535 is not within 65536..1073741824");
        parse_fails("{\"sandbox\": {\"console_log_max_bytes\": 1073741825}}",
                    "sandbox.console_log_max_bytes: 1073741825 is not within");
        parse_fails("{\"sandbox\": {\"console_log_max_bytes\": 0}}",
                    "sandbox.console_log_max_bytes: 0 is not within");
        parse_fails("{\"sandbox\": {\"console_log_max_bytes\": -1}}",
                    "sandbox.console_log_max_bytes");
        parse_fails("{\"sandbox\": {\"console_log_max_bytes\": \"1M\"}}",
                    "sandbox.console_log_max_bytes");
        parse_fails("{\"sandbox\": {\"console_log_max_bytes\": 1.5e6}}",
                    "sandbox.console_log_max_bytes");
        parse_fails("{\"sandbox\": {\"console_log_max_bytes\": 99999999999999999999999}}",
                    "sandbox.console_log_max_bytes");
        parse_fails("{\"sandbox\": {\"console_log_max\": 65536}}",
                    "sandbox.console_log_max: unknown key");
}

static void agent_timeout(void **state)
{
        (void)state;
        struct policy_config *cfg = parse_ok("{\"sandbox\": {\"vcpus\": 1}}");
        assert_int_equal(cfg->sandbox.agent_timeout_ms, POLICY_AGENT_TIMEOUT_DEFAULT_MS);
        policy_config_free(cfg);
        cfg = parse_ok("{\"sandbox\": {\"agent_timeout_ms\": 1000}}");
        assert_int_equal(cfg->sandbox.agent_timeout_ms, 1000);
        policy_config_free(cfg);
        cfg = parse_ok("{\"sandbox\": {\"agent_timeout_ms\": 600000}}");
        assert_int_equal(cfg->sandbox.agent_timeout_ms, 600000);
        policy_config_free(cfg);
        parse_fails("{\"sandbox\": {\"agent_timeout_ms\": 999}}",
                    "sandbox.agent_timeout_ms: 999 is not within 1000..600000");
        parse_fails("{\"sandbox\": {\"agent_timeout_ms\": 600001}}",
                    "sandbox.agent_timeout_ms: 600001 is not within");
        parse_fails("{\"sandbox\": {\"agent_timeout_ms\": \"30s\"}}", "sandbox.agent_timeout_ms");
}

static void vm_size_fails(const struct policy_config *cfg, const char *key, const char *value,
                          const char *needle)
{
        struct us_oci_kv a[] = {KV(key, value)};
        struct policy_vm_size size = {7, 7};
        struct us_error *err = NULL;
        assert_int_equal(policy_pod_vm_size(cfg, a, 1, &size, &err), -EINVAL);
        assert_int_equal(size.vcpus, 7); /* untouched on error */
        if (!strstr(us_error_text(err), needle))
                fail_msg("error \"%s\" lacks \"%s\"", us_error_text(err), needle);
        us_error_free(err);
}

static void vm_size_annotations(void **state)
{
        (void)state;
        struct policy_config *cfg =
                parse_ok("{\"sandbox\": {\"max_vcpus\": 2, \"max_memory_mib\": 1024}}");
        struct policy_vm_size size = {7, 7};
        assert_int_equal(policy_pod_vm_size(cfg, NULL, 0, &size, NULL), 0);
        assert_int_equal(size.vcpus, 0);
        assert_int_equal(size.memory_mib, 0);

        struct us_oci_kv a[] = {KV("unishim.io/vcpus", "2"), KV("unishim.io/memory-mib", "192"),
                                KV("other/vcpus", "99")};
        assert_int_equal(policy_pod_vm_size(cfg, a, 3, &size, NULL), 0);
        assert_int_equal(size.vcpus, 2);
        assert_int_equal(size.memory_mib, 192);
        /* Allowed by default, so policy_pod_isolation lets them through. */
        enum policy_isolation k;
        assert_int_equal(policy_pod_isolation(cfg, a, 3, &k, NULL), 0);

        vm_size_fails(cfg, "unishim.io/vcpus", "3",
                      "annotation unishim.io/vcpus: \"3\" is not within 1..2 (sandbox.max_vcpus "
                      "in /etc/unishim/config.json)");
        vm_size_fails(cfg, "unishim.io/vcpus", "0", "not within 1..2");
        vm_size_fails(cfg, "unishim.io/vcpus", "-1", "\"-1\" is not within");
        vm_size_fails(cfg, "unishim.io/vcpus", " 1", "not within");
        vm_size_fails(cfg, "unishim.io/vcpus", "1x", "not within");
        vm_size_fails(cfg, "unishim.io/vcpus", "", "not within");
        vm_size_fails(cfg, "unishim.io/vcpus", "99999999999999999999", "not within");
        vm_size_fails(cfg, "unishim.io/memory-mib", "64",
                      "annotation unishim.io/memory-mib: \"64\" is not within 128..1024 "
                      "(sandbox.max_memory_mib");
        vm_size_fails(cfg, "unishim.io/memory-mib", "1025", "128..1024");
        vm_size_fails(cfg, "unishim.io/memory-mib", "256M", "not within");
        policy_config_free(cfg);

        /* An operator who lists only the isolation annotation keeps pods from
         * sizing their VMs. */
        cfg = parse_ok("{\"annotations\": {\"allowed\": [\"unishim.io/isolation\"]}}");
        struct us_error *err = NULL;
        assert_int_equal(policy_pod_isolation(cfg, a, 1, &k, &err), -EPERM);
        assert_non_null(strstr(us_error_text(err), "annotation unishim.io/vcpus is not allowed"));
        us_error_free(err);
        policy_config_free(cfg);
}

/* The vm kind's guest: the disk's path, cloud-init user-data (not allowed
 * by default), the vm section. */
static void vm_guest(void **state)
{
        (void)state;
        struct policy_config *def = parse_ok("{}");
        struct us_error *err = NULL;
        enum policy_isolation kind;
        const struct us_oci_kv ud[] = {
                KV(UNISHIM_ANNOTATION_ISOLATION, "vm"),
                KV(UNISHIM_ANNOTATION_CLOUD_INIT_USER_DATA, "#cloud-config")};
        assert_true(policy_pod_isolation(def, ud, 2, &kind, &err) < 0);
        assert_non_null(strstr(us_error_text(err), "cloud-init-user-data is not allowed"));
        us_error_free(err);
        err = NULL;
        const struct us_oci_kv dp[] = {KV(UNISHIM_ANNOTATION_ISOLATION, "vm"),
                                       KV(UNISHIM_ANNOTATION_DISK_PATH, "/images/a.qcow2")};
        assert_int_equal(policy_pod_isolation(def, dp, 2, &kind, &err), 0);
        assert_int_equal(kind, POLICY_ISOLATION_VM);
        const char *path = NULL, *user = NULL;
        assert_int_equal(policy_pod_vm_guest(def, dp, 2, &path, &user, &err), 0);
        assert_string_equal(path, "images/a.qcow2");
        assert_null(user);
        assert_int_equal(def->vm.memory_mib, 1024);
        static const char *const bad_paths[] = {"",     "/",     "../x",  "a/../../x",
                                                "a//b", "a/./b", "disk/", "a\nb"};
        for (size_t i = 0; i < sizeof(bad_paths) / sizeof(*bad_paths); i++) {
                const struct us_oci_kv kv[] = {KV(UNISHIM_ANNOTATION_DISK_PATH, bad_paths[i])};
                assert_true(policy_pod_vm_guest(def, kv, 1, &path, &user, &err) < 0);
                assert_non_null(strstr(us_error_text(err), "unishim.io/disk-path"));
                us_error_free(err);
                err = NULL;
        }
        policy_config_free(def);

        struct policy_config *cfg = parse_ok(
                "{\"annotations\": {\"allowed\": [\"unishim.io/isolation\", "
                "\"unishim.io/cloud-init-user-data\"]}, \"vm\": {\"user_data_max_bytes\": 16, "
                "\"memory_mib\": 512, \"libvirt_uri\": \"qemu:///system\", \"accel\": \"tcg\"}}");
        assert_int_equal(cfg->vm.memory_mib, 512);
        assert_string_equal(cfg->vm.accel, "tcg");
        assert_int_equal(policy_pod_isolation(cfg, ud, 2, &kind, &err), 0);
        assert_int_equal(policy_pod_vm_guest(cfg, ud, 2, &path, &user, &err), 0);
        assert_string_equal(user, "#cloud-config");
        const struct us_oci_kv big[] = {
                KV(UNISHIM_ANNOTATION_CLOUD_INIT_USER_DATA, "#cloud-config\nruncmd: [true]")};
        assert_int_equal(policy_pod_vm_guest(cfg, big, 1, &path, &user, &err), -E2BIG);
        assert_non_null(strstr(us_error_text(err), "vm.user_data_max_bytes"));
        us_error_free(err);
        policy_config_free(cfg);

        /* virtiofsd without its user namespace only when the operator says so. */
        cfg = parse_ok("{}");
        assert_false(cfg->sandbox.virtiofsd_root);
        policy_config_free(cfg);
        cfg = parse_ok("{\"sandbox\": {\"virtiofsd_unprivileged\": true}}");
        assert_false(cfg->sandbox.virtiofsd_root);
        policy_config_free(cfg);
        /* The opt-out to a root virtiofsd means virtio-fs unless 9p is
         * asked for (refused below). */
        cfg = parse_ok("{\"sandbox\": {\"virtiofsd_unprivileged\": false}}");
        assert_true(cfg->sandbox.virtiofsd_root);
        assert_int_equal(cfg->sandbox.shared_fs, POLICY_SHARED_FS_VIRTIOFS);
        policy_config_free(cfg);
        parse_fails("{\"sandbox\": {\"virtiofsd_unprivileged\": \"no\"}}",
                    "virtiofsd_unprivileged");

        /* The defaults: templates on, the share as the image allows. */
        cfg = parse_ok("{}");
        assert_int_equal(cfg->sandbox.shared_fs, POLICY_SHARED_FS_AUTO);
        assert_true(cfg->sandbox.templates);
        assert_null(cfg->sandbox.template_dir);
        assert_int_equal(cfg->sandbox.template_max, POLICY_TEMPLATE_MAX_DEFAULT);
        policy_config_free(cfg);
        cfg = parse_ok("{\"sandbox\": {\"memory_mib\": 512}}");
        assert_int_equal(cfg->sandbox.shared_fs, POLICY_SHARED_FS_AUTO);
        assert_true(cfg->sandbox.templates);
        policy_config_free(cfg);
        cfg = parse_ok("{\"sandbox\": {\"templates\": false}}");
        assert_false(cfg->sandbox.templates);
        policy_config_free(cfg);
        cfg = parse_ok("{\"sandbox\": {\"shared_fs\": \"9p\", \"templates\": true, "
                       "\"template_dir\": \"/var/lib/t\", \"template_max\": 9}}");
        assert_int_equal(cfg->sandbox.shared_fs, POLICY_SHARED_FS_9P);
        assert_true(cfg->sandbox.templates);
        assert_string_equal(cfg->sandbox.template_dir, "/var/lib/t");
        assert_int_equal(cfg->sandbox.template_max, 9);
        policy_config_free(cfg);
        parse_fails("{\"sandbox\": {\"template_max\": 0}}", "template_max");
        parse_fails("{\"sandbox\": {\"template_max\": 65}}", "template_max");
        cfg = parse_ok("{\"sandbox\": {\"shared_fs\": \"virtio-fs\"}}");
        assert_int_equal(cfg->sandbox.shared_fs, POLICY_SHARED_FS_VIRTIOFS);
        policy_config_free(cfg);
        parse_fails("{\"sandbox\": {\"shared_fs\": \"nfs\"}}",
                    "unknown shared file system \"nfs\"");
        /* 9p is served in the pod's user namespace: no opt-out to root. */
        parse_fails("{\"sandbox\": {\"shared_fs\": \"9p\", \"virtiofsd_unprivileged\": false}}",
                    "virtiofsd_unprivileged false turns off");
        cfg = parse_ok("{\"sandbox\": {\"shared_fs\": \"9p\", \"virtiofsd_unprivileged\": true}}");
        assert_int_equal(cfg->sandbox.shared_fs, POLICY_SHARED_FS_9P);
        assert_false(cfg->sandbox.virtiofsd_root);
        policy_config_free(cfg);
        parse_fails("{\"sandbox\": {\"template_dir\": \"rel\"}}", "template_dir");
        parse_fails("{\"sandbox\": {\"templates\": 1}}", "templates");
        parse_fails("{\"vm\": {\"memory_mib\": 64}}", "memory_mib");
        parse_fails("{\"vm\": {\"accel\": \"xen\"}}", "unknown accelerator");
        parse_fails("{\"vm\": {\"user_data_max_bytes\": 2000000}}", "user_data_max_bytes");
        parse_fails("{\"vm\": {\"bogus\": 1}}", "bogus");
}

static void hostile_configs(void **state)
{
        (void)state;
        parse_fails("", "invalid cfg.json");
        parse_fails("[]", "invalid cfg.json");
        parse_fails("{\"isolaton\": {}}", "isolaton: unknown key");
        parse_fails("{\"isolation\": {\"default\": \"kvm\"}}",
                    "isolation.default: unknown isolation kind \"kvm\"");
        parse_fails("{\"isolation\": {\"allowed\": []}}",
                    "isolation.allowed: must list at least one kind");
        parse_fails("{\"isolation\": {\"allowed\": [\"vm\", 3]}}", "isolation.allowed[1]");
        parse_fails("{\"isolation\": {\"default\": \"vm\", \"allowed\": [\"container\"]}}",
                    "default kind \"vm\" is not in isolation.allowed");
        parse_fails("{\"annotations\": {\"allowed\": [\"unishim.io/nope\"]}}",
                    "unknown annotation");
        parse_fails("{\"mesh_sidecars\": \"istio-proxy\"}", "mesh_sidecars");
        char *big = malloc(POLICY_CONFIG_MAX_SIZE + 2);
        memset(big, ' ', POLICY_CONFIG_MAX_SIZE + 1);
        big[POLICY_CONFIG_MAX_SIZE + 1] = '\0';
        parse_fails(big, "too large");
        free(big);
}

static void load_paths(void **state)
{
        (void)state;
        struct policy_config *cfg = NULL;
        struct us_error *err = NULL;
        assert_int_equal(policy_config_load("/nonexistent/unishim.json", &cfg, &err), -ENOENT);
        assert_non_null(strstr(us_error_text(err), "/nonexistent/unishim.json"));
        err = us_error_free(err);

        char path[] = "/tmp/test-policy-XXXXXX";
        int fd = mkstemp(path);
        assert_true(fd >= 0);
        const char *json = "{\"isolation\": {\"default\": \"vm\"}}";
        assert_int_equal(write(fd, json, strlen(json)), (ssize_t)strlen(json));
        close(fd);
        assert_int_equal(policy_config_load(path, &cfg, NULL), 0);
        assert_int_equal(cfg->default_isolation, POLICY_ISOLATION_VM);
        assert_string_equal(cfg->path, path);
        policy_config_free(cfg);
        unlink(path);

        /* A FIFO is refused without blocking on its open. */
        assert_int_equal(mkfifo(path, 0600), 0);
        assert_int_equal(policy_config_load(path, &cfg, &err), -EINVAL);
        assert_non_null(strstr(us_error_text(err), "not a regular file"));
        err = us_error_free(err);
        unlink(path);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(defaults_allow_everything_default_container),
                cmocka_unit_test(unknown_value_names_annotation_value_and_allowed),
                cmocka_unit_test(kind_not_allowed_names_config),
                cmocka_unit_test(annotation_allow_list),
                cmocka_unit_test(operator_default_kind),
                cmocka_unit_test(sandbox_section),
                cmocka_unit_test(console_log_cap),
                cmocka_unit_test(agent_timeout),
                cmocka_unit_test(vm_size_annotations),
                cmocka_unit_test(vm_guest),
                cmocka_unit_test(hostile_configs),
                cmocka_unit_test(load_paths),
        };
        return unit_exit(unit_run_group_tests(tests, NULL, NULL));
}
