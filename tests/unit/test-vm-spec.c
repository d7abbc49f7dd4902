/* SPDX-License-Identifier: Apache-2.0 */
/* shim/vm/spec.c: which mounts of the VM's container pass, and the line
 * that heads its log. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "unit.h"

#include "shim/vm/spec.h"

#define UID     "0c1ba5e0-7d2a-4f8e-9d3c-3a5b7e9f1a2b"
#define SANDBOX "8f2c3c6e0d1b4a5f9e8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b3a2f1e0d9c8b7a6f"
#define KUBELET "/var/lib/kubelet/pods/" UID
#define CRI     "/run/containerd/io.containerd.grpc.v1.cri/sandboxes/" SANDBOX

/* What a kubelet 1.23 and containerd 1.6's CRI give a container whose pod
 * automounts its service account token: containerd's default spec (less
 * /run, which the CRI drops), its /sys/fs/cgroup, the sandbox's files and
 * shm, and the kubelet's /etc/hosts, termination log and token. */
#define EVERY_CONTAINER                                                                            \
        "{\"destination\": \"/proc\", \"type\": \"proc\", \"source\": \"proc\","                   \
        " \"options\": [\"nosuid\", \"noexec\", \"nodev\"]},"                                      \
        " {\"destination\": \"/dev\", \"type\": \"tmpfs\", \"source\": \"tmpfs\","                 \
        " \"options\": [\"nosuid\", \"strictatime\", \"mode=755\", \"size=65536k\"]},"             \
        " {\"destination\": \"/dev/pts\", \"type\": \"devpts\", \"source\": \"devpts\"},"          \
        " {\"destination\": \"/dev/mqueue\", \"type\": \"mqueue\", \"source\": \"mqueue\"},"       \
        " {\"destination\": \"/sys\", \"type\": \"sysfs\", \"source\": \"sysfs\"},"                \
        " {\"destination\": \"/sys/fs/cgroup\", \"type\": \"cgroup\", \"source\": \"cgroup\"},"    \
        " {\"destination\": \"/etc/hosts\", \"type\": \"bind\", \"source\": \"" KUBELET            \
        "/etc-hosts\", \"options\": [\"rbind\", \"rprivate\", \"rw\"]},"                           \
        " {\"destination\": \"/dev/termination-log\", \"type\": \"bind\", \"source\": \"" KUBELET  \
        "/containers/vm/3f8a9c2e\", \"options\": [\"rbind\", \"rprivate\", \"rw\"]},"              \
        " {\"destination\": \"/etc/hostname\", \"type\": \"bind\", \"source\": \"" CRI             \
        "/hostname\", \"options\": [\"rbind\", \"rprivate\", \"rw\"]},"                            \
        " {\"destination\": \"/etc/resolv.conf\", \"type\": \"bind\", \"source\": \"" CRI          \
        "/resolv.conf\", \"options\": [\"rbind\", \"rprivate\", \"rw\"]},"                         \
        " {\"destination\": \"/dev/shm\", \"type\": \"bind\", \"source\": \"" CRI                  \
        "/shm\", \"options\": [\"rbind\", \"rprivate\", \"rw\"]},"                                 \
        " {\"destination\": \"/var/run/secrets/kubernetes.io/serviceaccount\", \"type\":"          \
        " \"bind\", \"source\": \"" KUBELET                                                        \
        "/volumes/kubernetes.io~projected/kube-api-access-x\","                                    \
        " \"options\": [\"rbind\", \"rprivate\", \"ro\"]}"

/* The VM's container with the given mounts (JSON array members) and
 * extra annotations (JSON members, may be empty). */
static struct us_oci_spec *spec_with(const char *mounts, const char *annotations)
{
        char json[8192];
        snprintf(json, sizeof(json),
                 "{\"ociVersion\": \"1.0.2\", \"process\": {\"args\": [\"vm\", \"--secret=x\"],"
                 " \"env\": [\"PATH=/bin\", \"KUBERNETES_SERVICE_HOST=10.0.0.1\"], \"cwd\": \"/\"},"
                 " \"root\": {\"path\": \"rootfs\"}, \"mounts\": [%s],"
                 " \"annotations\": {\"io.kubernetes.cri.container-type\": \"container\","
                 " \"io.kubernetes.cri.container-name\": \"vm\","
                 " \"io.kubernetes.cri.sandbox-id\": \"" SANDBOX "\","
                 " \"io.kubernetes.cri.sandbox-uid\": \"" UID "\"%s%s}}",
                 mounts, *annotations ? ", " : "", annotations);
        struct us_oci_spec *spec = NULL;
        struct us_error *err = NULL;
        if (us_oci_spec_parse(json, strlen(json), &spec, &err) < 0)
                fail_msg("parse: %s", us_error_text(err));
        return spec;
}

static void passes(const char *mounts, const char *annotations)
{
        struct us_oci_spec *spec = spec_with(mounts, annotations);
        struct us_error *err = NULL;
        if (vm_spec_check_mounts(spec, &err) < 0)
                fail_msg("refused: %s", us_error_text(err));
        us_oci_spec_free(spec);
}

static void refused(const char *mounts, const char *annotations, const char *want)
{
        struct us_oci_spec *spec = spec_with(mounts, annotations);
        struct us_error *err = NULL;
        assert_int_equal(vm_spec_check_mounts(spec, &err), -ENOTSUP);
        if (!strstr(us_error_text(err), want))
                fail_msg("'%s' does not say '%s'", us_error_text(err), want);
        if (!strstr(us_error_text(err), "cannot reach the guest"))
                fail_msg("'%s' does not say why", us_error_text(err));
        us_error_free(err);
        us_oci_spec_free(spec);
}

static void what_every_container_has_passes(void **state)
{
        (void)state;
        passes("", "");
        passes(EVERY_CONTAINER, "");
        /* containerd's own default of /run and its tmpfs /dev/shm (without
         * the CRI) */
        passes("{\"destination\": \"/run\", \"type\": \"tmpfs\", \"source\": \"tmpfs\"},"
               " {\"destination\": \"/dev/shm/\", \"type\": \"tmpfs\", \"source\": \"shm\"}",
               "");
        /* A terminationMessagePath of the pod's own: found by the kubelet's
         * source, or by its annotation where containerd passes it. */
        passes("{\"destination\": \"/tmp/why\", \"type\": \"bind\", \"source\": \"" KUBELET
               "/containers/vm/77aa\", \"options\": [\"rbind\"]}",
               "");
        passes("{\"destination\": \"/tmp/why\", \"type\": \"bind\", \"source\": \"/elsewhere/x\","
               " \"options\": [\"rbind\"]}",
               "\"" VM_SPEC_TERMINATION_MESSAGE_PATH "\": \"/tmp/why\"");
}

static void volumes_are_refused_by_destination(void **state)
{
        (void)state;
        refused(EVERY_CONTAINER ", {\"destination\": \"/etc/config\", \"type\": \"bind\","
                                " \"source\": \"" KUBELET "/volumes/kubernetes.io~configmap/cfg\","
                                " \"options\": [\"rbind\", \"ro\"]}",
                "",
                "the mount at /etc/config (from " KUBELET "/volumes/kubernetes.io~configmap/cfg");
        refused("{\"destination\": \"/data\", \"type\": \"tmpfs\", \"source\": \"tmpfs\"}", "",
                "the mount at /data (a file system of type tmpfs)");
        /* A bind without a type is a bind all the same. */
        refused("{\"destination\": \"/data\", \"source\": \"/srv\", \"options\": [\"rbind\"]}", "",
                "the mount at /data (from /srv)");
        /* Where a kernel file system goes, a volume is still a volume: an
         * emptyDir for a bigger /dev/shm, a hostPath at /sys. */
        refused("{\"destination\": \"/dev/shm\", \"type\": \"bind\", \"source\": \"" KUBELET
                "/volumes/kubernetes.io~empty-dir/shm\", \"options\": [\"rbind\"]}",
                "", "the mount at /dev/shm");
        refused("{\"destination\": \"/sys\", \"type\": \"bind\", \"source\": \"/sys\","
                " \"options\": [\"rbind\"]}",
                "", "the mount at /sys (from /sys)");
        /* Another container's termination log dir, or a deeper path under
         * its own, is not the kubelet's file for this one. */
        refused("{\"destination\": \"/x\", \"type\": \"bind\", \"source\": \"" KUBELET
                "/containers/other/77aa\", \"options\": [\"rbind\"]}",
                "", "the mount at /x");
        refused("{\"destination\": \"/x\", \"type\": \"bind\", \"source\": \"" KUBELET
                "/containers/vm/77aa/b\", \"options\": [\"rbind\"]}",
                "", "the mount at /x");
        /* A path that only begins like an allowed one. */
        refused("{\"destination\": \"/etc/hostsfile\", \"type\": \"bind\", \"source\": \"/h\","
                " \"options\": [\"rbind\"]}",
                "", "the mount at /etc/hostsfile");
}

static void the_note_says_what_is_not_run(void **state)
{
        (void)state;
        struct us_oci_spec *spec = spec_with(EVERY_CONTAINER, "");
        char buf[1024];
        size_t n = vm_spec_note(spec, buf, sizeof(buf));
        assert_int_equal(n, strlen(buf));
        assert_string_equal(
                buf, "unishim: this container is a VM booted from its image's disk: its command "
                     "(vm) and 1 args, its env (2 variables) and its mounts /etc/hosts, "
                     "/dev/termination-log, /var/run/secrets/kubernetes.io/serviceaccount are not "
                     "run, set or seen in the guest: configure it through cloud-init, "
                     "docs/vm.md\n");
        /* Neither the args nor the env's values: they may be secrets. */
        assert_null(strstr(buf, "--secret"));
        assert_null(strstr(buf, "10.0.0.1"));
        /* Cut to fit, still one line. */
        char small[40];
        n = vm_spec_note(spec, small, sizeof(small));
        assert_int_equal(n, sizeof(small) - 1);
        assert_int_equal(small[n - 1], '\n');
        assert_ptr_equal(strchr(small, '\n'), small + n - 1);
        us_oci_spec_free(spec);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(what_every_container_has_passes),
                cmocka_unit_test(volumes_are_refused_by_destination),
                cmocka_unit_test(the_note_says_what_is_not_run),
        };
        return unit_exit(unit_run_group_tests(tests, NULL, NULL));
}
