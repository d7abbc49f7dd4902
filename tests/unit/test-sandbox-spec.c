/* SPDX-License-Identifier: Apache-2.0 */
#include <errno.h>
#include <sched.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "unit.h"

#include "oci/oci-spec.h"
#include "shim/sandbox/spec.h"

static const char spec[] =
        "{\"ociVersion\":\"1.0.2\",\"process\":{\"args\":[\"sh\"],\"cwd\":\"/\"},"
        "\"root\":{\"path\":\"rootfs\",\"readonly\":true},"
        "\"hooks\":{\"prestart\":[{\"path\":\"/usr/bin/host-hook\"}]},"
        "\"mounts\":[{\"destination\":\"/proc\",\"type\":\"proc\",\"source\":\"proc\"},"
        "{\"destination\":\"/etc/hosts\",\"type\":\"bind\",\"source\":\"/var/lib/x/hosts\","
        "\"options\":[\"rbind\",\"ro\"]},"
        "{\"destination\":\"/dev/shm\",\"type\":\"bind\",\"source\":\"/run/x/shm\","
        "\"options\":[\"rbind\"]}],"
        "\"linux\":{\"cgroupsPath\":\"/kubepods/pod1/c1\","
        "\"resources\":{\"memory\":{\"limit\":9223372036854771712}},"
        "\"namespaces\":[{\"type\":\"pid\"},{\"type\":\"network\",\"path\":\"/var/run/netns/"
        "cni-1\"},"
        "{\"type\":\"ipc\",\"path\":\"/proc/42/ns/ipc\"},{\"type\":\"uts\",\"path\":\"/proc/42/ns/"
        "uts\"},"
        "{\"type\":\"mount\"}]}}";

static void rewrites_paths_namespaces_and_drops_hooks(void **state)
{
        (void)state;
        const char *sources[] = {NULL, "/run/unishim/shared/c1/mounts/1", NULL};
        const bool drop[] = {false, false, true};
        const struct sandbox_spec_rewrite rw = {
                .root_path = "/run/unishim/shared/c1/rootfs",
                .cgroups_path = "/unishim/c1",
                .n_mounts = 3,
                .mount_sources = sources,
                .drop_mount = drop,
                .drop_namespaces = CLONE_NEWNET | CLONE_NEWIPC,
                .unjoin_namespaces = CLONE_NEWUTS | CLONE_NEWPID,
        };
        char *out = NULL;
        size_t len = 0;
        struct us_error *err = NULL;
        assert_int_equal(sandbox_spec_rewrite(spec, strlen(spec), &rw, &out, &len, &err), 0);
        assert_int_equal(strlen(out), len);

        /* What the guest's engine sees. */
        struct us_oci_spec *s = NULL;
        if (us_oci_spec_parse(out, len, &s, &err) < 0)
                fail_msg("%s\n%s", us_error_text(err), out);
        assert_string_equal(s->root_path, "/run/unishim/shared/c1/rootfs");
        assert_true(s->root_readonly);
        assert_string_equal(s->linux_.cgroups_path, "/unishim/c1");
        assert_int_equal(s->hooks.prestart.n_hooks, 0);
        assert_int_equal(s->n_mounts, 2);
        assert_string_equal(s->mounts[0].source, "proc");
        assert_string_equal(s->mounts[1].source, "/run/unishim/shared/c1/mounts/1");
        assert_string_equal(s->mounts[1].destination, "/etc/hosts");
        assert_int_equal(s->linux_.n_namespaces, 3);
        for (size_t i = 0; i < s->linux_.n_namespaces; i++) {
                assert_null(s->linux_.namespaces[i].path);
                assert_true(s->linux_.namespaces[i].type != CLONE_NEWNET);
                assert_true(s->linux_.namespaces[i].type != CLONE_NEWIPC);
        }
        /* Large values survive the round trip exactly. */
        assert_non_null(strstr(out, "9223372036854771712"));
        us_oci_spec_free(s);
        free(out);
}

static void adds_cgroups_path_when_missing(void **state)
{
        (void)state;
        const char *in = "{\"ociVersion\":\"1.0.2\",\"process\":{\"args\":[\"true\"],\"cwd\":\"/"
                         "\"},\"root\":{\"path\":\"r\"},"
                         "\"linux\":{}}";
        const struct sandbox_spec_rewrite rw = {.root_path = "/g", .cgroups_path = "/unishim/x"};
        char *out = NULL;
        size_t len;
        assert_int_equal(sandbox_spec_rewrite(in, strlen(in), &rw, &out, &len, NULL), 0);
        assert_non_null(strstr(out, "\"cgroupsPath\":\"/unishim/x\""));
        assert_non_null(strstr(out, "\"path\":\"/g\""));
        free(out);
}

/* shareProcessNamespace: the pause container's PID namespace (a host path)
 * becomes the pod's in the guest; a new one stays new. */
static void joins_the_pods_pid_namespace(void **state)
{
        (void)state;
        const char *shared =
                "{\"ociVersion\":\"1.0.2\",\"process\":{\"args\":[\"true\"],\"cwd\":\"/"
                "\"},\"root\":{\"path\":\"r\"},"
                "\"linux\":{\"namespaces\":[{\"type\":\"pid\",\"path\":\"/proc/42/ns/pid\"},"
                "{\"type\":\"uts\",\"path\":\"/proc/42/ns/uts\"},{\"type\":\"mount\"}]}}";
        const char *own =
                "{\"process\":{\"args\":[\"true\"],\"cwd\":\"/\"},\"root\":{\"path\":"
                "\"r\"},\"linux\":{\"namespaces\":[{\"type\":\"pid\"},{\"type\":\"mount\"}]}}";
        const struct sandbox_spec_rewrite rw = {
                .root_path = "/g",
                .unjoin_namespaces = CLONE_NEWUTS | CLONE_NEWPID,
                .pod_pid_namespace = "/run/unishim/pod-pidns",
        };
        char *out = NULL;
        size_t len;
        struct us_oci_spec *s = NULL;
        assert_int_equal(sandbox_spec_rewrite(shared, strlen(shared), &rw, &out, &len, NULL), 0);
        assert_int_equal(us_oci_spec_parse(out, len, &s, NULL), 0);
        assert_int_equal(s->linux_.n_namespaces, 3);
        assert_int_equal(s->linux_.namespaces[0].type, CLONE_NEWPID);
        assert_string_equal(s->linux_.namespaces[0].path, "/run/unishim/pod-pidns");
        assert_null(s->linux_.namespaces[1].path); /* uts: new */
        us_oci_spec_free(s);
        free(out);
        assert_int_equal(sandbox_spec_rewrite(own, strlen(own), &rw, &out, &len, NULL), 0);
        assert_null(strstr(out, "pod-pidns"));
        free(out);
}

static void refuses_garbage(void **state)
{
        (void)state;
        const struct sandbox_spec_rewrite rw = {0};
        char *out = NULL;
        size_t len;
        struct us_error *err = NULL;
        assert_int_equal(sandbox_spec_rewrite("[1,2]", 5, &rw, &out, &len, &err), -EINVAL);
        assert_null(out);
        us_error_free(err);
        err = NULL;
        assert_int_equal(sandbox_spec_rewrite("{\"a\":", 5, &rw, &out, &len, &err), -EINVAL);
        us_error_free(err);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(rewrites_paths_namespaces_and_drops_hooks),
                cmocka_unit_test(adds_cgroups_path_when_missing),
                cmocka_unit_test(joins_the_pods_pid_namespace),
                cmocka_unit_test(refuses_garbage),
        };
        return unit_exit(unit_run_group_tests(tests, NULL, NULL));
}
