/* SPDX-License-Identifier: Apache-2.0 */
#include <errno.h>
#include <sched.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "unit.h"

#include "shim/sidecar.h"

/* A container of a pod whose sandbox task is pid 4242 (QEMU, for a VM kind),
 * as containerd's CRI writes it. */
static struct us_oci_spec *cri_container(const char *type, const char *name)
{
        char json[2048];
        snprintf(json, sizeof(json),
                 "{\"ociVersion\": \"1.0.2\", \"process\": {\"args\": [\"sh\"], \"cwd\": \"/\"},"
                 " \"root\": {\"path\": \"rootfs\"},"
                 " \"annotations\": {\"io.kubernetes.cri.container-type\": \"%s\","
                 "  \"io.kubernetes.cri.container-name\": \"%s\"},"
                 " \"linux\": {\"namespaces\": [{\"type\": \"pid\"}, {\"type\": \"ipc\", \"path\":"
                 " \"/proc/4242/ns/ipc\"}, {\"type\": \"uts\", \"path\": \"/proc/4242/ns/uts\"},"
                 " {\"type\": \"mount\"}, {\"type\": \"network\", \"path\":"
                 " \"/proc/4242/ns/net\"}]}}",
                 type, name);
        struct us_oci_spec *spec = NULL;
        struct us_error *err = NULL;
        if (us_oci_spec_parse(json, strlen(json), &spec, &err) < 0)
                fail_msg("parse: %s", us_error_text(err));
        return spec;
}

static struct policy_config *config(const char *json)
{
        struct policy_config *cfg = NULL;
        struct us_error *err = NULL;
        if (policy_config_parse(json, strlen(json), "cfg.json", &cfg, &err) < 0)
                fail_msg("config: %s", us_error_text(err));
        return cfg;
}

static void placement(void **state)
{
        (void)state;
        struct policy_config *all = config("{}");
        struct policy_config *vm_only =
                config("{\"isolation\": {\"default\": \"sandbox\", \"allowed\": [\"sandbox\"]}}");
        struct us_oci_spec *proxy = cri_container("container", "istio-proxy");
        struct us_oci_spec *app = cri_container("container", "app");
        struct us_oci_spec *sandbox = cri_container("sandbox", "istio-proxy");

        assert_int_equal(shim_sidecar_place(all, proxy), SHIM_SIDECAR_HOST);
        assert_int_equal(shim_sidecar_place(all, app), SHIM_SIDECAR_NONE);
        assert_int_equal(shim_sidecar_place(all, sandbox), SHIM_SIDECAR_NONE);
        /* A VM-only policy: a container named istio-proxy does not leave the
         * VM. */
        assert_int_equal(shim_sidecar_place(vm_only, proxy), SHIM_SIDECAR_IN_GUEST);
        /* The operator's own list. */
        struct policy_config *custom = config("{\"mesh_sidecars\": [\"app\"]}");
        assert_int_equal(shim_sidecar_place(custom, app), SHIM_SIDECAR_HOST);
        assert_int_equal(shim_sidecar_place(custom, proxy), SHIM_SIDECAR_NONE);

        us_oci_spec_free(proxy);
        us_oci_spec_free(app);
        us_oci_spec_free(sandbox);
        policy_config_free(all);
        policy_config_free(vm_only);
        policy_config_free(custom);
}

static const struct us_oci_namespace *ns_of(const struct us_oci_spec *spec, int type)
{
        for (size_t i = 0; i < spec->linux_.n_namespaces; i++)
                if (spec->linux_.namespaces[i].type == type)
                        return &spec->linux_.namespaces[i];
        return NULL;
}

static void spec_for_the_host(void **state)
{
        (void)state;
        struct us_oci_spec *spec = cri_container("container", "istio-proxy");
        assert_int_equal(shim_sidecar_spec(spec, "/var/run/netns/cni-1", "pod-a", NULL), 0);
        /* The pod's netns, not QEMU's; new IPC/UTS/PID, not the host's. */
        assert_string_equal(ns_of(spec, CLONE_NEWNET)->path, "/var/run/netns/cni-1");
        assert_null(ns_of(spec, CLONE_NEWIPC)->path);
        assert_null(ns_of(spec, CLONE_NEWUTS)->path);
        assert_null(ns_of(spec, CLONE_NEWPID)->path);
        assert_non_null(ns_of(spec, CLONE_NEWNS));
        assert_string_equal(spec->hostname, "pod-a");
        us_oci_spec_free(spec);

        /* No network namespace in the spec: refused, not run in the host's. */
        const char *json = "{\"ociVersion\": \"1.0.2\", \"process\": {\"args\": [\"sh\"], "
                           "\"cwd\": \"/\"}, \"root\": {\"path\": \"rootfs\"}, \"linux\": "
                           "{\"namespaces\": [{\"type\": \"mount\"}]}}";
        assert_int_equal(us_oci_spec_parse(json, strlen(json), &spec, NULL), 0);
        struct us_error *err = NULL;
        assert_int_equal(shim_sidecar_spec(spec, "/var/run/netns/cni-1", "pod-a", &err), -EINVAL);
        assert_non_null(strstr(us_error_text(err), "no network namespace"));
        us_error_free(err);
        us_oci_spec_free(spec);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(placement),
                cmocka_unit_test(spec_for_the_host),
        };
        return unit_exit(unit_run_group_tests(tests, NULL, NULL));
}
