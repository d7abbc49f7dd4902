/* SPDX-License-Identifier: Apache-2.0 */
/* A vm pod's libvirt domain XML (vmm/domain.h): what it holds, that
 * libvirt's own schema accepts it (virt-xml-validate), escaping, and the
 * values refused. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "unit.h"

#include "base/cleanup.h"
#include "vmm/domain.h"

static struct vmm_domain_config full(void)
{
        return (struct vmm_domain_config){
                .name = "unishim-web-0-0123456789ab",
                .uuid = "6b1e3f0a-8c9d-4e2f-a1b2-c3d4e5f60718",
                .vcpus = 2,
                .memory_mib = 1024,
                .disk = "/run/unishim/k8s.io/0123/disk.qcow2",
                .seed = "/run/unishim/k8s.io/0123/seed.iso",
                .tap = "us-vm0123",
                .mac = "02:00:0a:01:02:03",
                .console_socket = "/run/unishim/k8s.io/0123/console.sock",
                .agent_socket = "/run/unishim/k8s.io/0123/agent.sock",
                .backing = "/run/unishim/k8s.io/0123/base",
                .backing_format = "qcow2",
                .uid = 0x60000123,
                .gid = 0x60000123,
        };
}

/* Whether libvirt's schema accepts xml; -1 when the validator is missing. */
static int schema_accepts(const char *xml)
{
        if (access("/usr/bin/virt-xml-validate", X_OK) != 0)
                return -1;
        char path[] = "/tmp/test-vmm-domain-XXXXXX";
        int fd = mkstemp(path);
        assert_true(fd >= 0);
        assert_int_equal(write(fd, xml, strlen(xml)), (ssize_t)strlen(xml));
        close(fd);
        char cmd[128];
        snprintf(cmd, sizeof(cmd), "virt-xml-validate %s domain >/dev/null 2>&1", path);
        int rc = system(cmd);
        unlink(path);
        return rc == 0;
}

static void full_domain(void **state)
{
        (void)state;
        struct vmm_domain_config c = full();
        _cleanup_free_ char *xml = NULL;
        struct us_error *err = NULL;

        assert_int_equal(vmm_domain_xml(&c, &xml, &err), 0);
        assert_non_null(strstr(xml, "<domain type='qemu'>"));
        assert_non_null(strstr(xml, "<name>unishim-web-0-0123456789ab</name>"));
        assert_non_null(strstr(xml, "<uuid>6b1e3f0a-8c9d-4e2f-a1b2-c3d4e5f60718</uuid>"));
        assert_non_null(strstr(xml, "<memory unit='MiB'>1024</memory>"));
        assert_non_null(strstr(xml, "<vcpu>2</vcpu>"));
        assert_non_null(strstr(xml, "<type arch='x86_64' machine='pc'>hvm</type>"));
        /* TCG: a bounded translation cache (QEMU's default is 1 GiB, in
         * the pod's cgroup). */
        assert_non_null(strstr(xml, "<features><acpi/><tcg><tb-cache unit='MiB'>64</tb-cache>"
                                    "</tcg></features>"));
        assert_non_null(strstr(xml, "<on_poweroff>destroy</on_poweroff>"));
        /* The pod's own uid, never root; libvirt relabels none of our
         * files. */
        assert_non_null(strstr(xml, "relabel='yes'><label>+1610613027:+1610613027</label>"));
        assert_null(strstr(xml, "+0:"));
        assert_non_null(strstr(xml, "<emulator>/usr/bin/qemu-system-x86_64</emulator>"));
        assert_non_null(strstr(xml, "<source file='/run/unishim/k8s.io/0123/disk.qcow2'>"
                                    "<seclabel model='dac' relabel='no'/></source>"));
        assert_non_null(strstr(xml, "seed.iso'><seclabel model='dac' relabel='no'/></source>"));
        assert_non_null(strstr(xml, "<target dev='vdb' bus='virtio'/>\n      <readonly/>"));
        assert_non_null(strstr(xml, "<readonly/>"));
        assert_non_null(strstr(xml, "<target dev='us-vm0123' managed='no'/>"));
        assert_non_null(strstr(xml, "<mac address='02:00:0a:01:02:03'/>"));
        assert_non_null(strstr(xml, "<source mode='connect' "
                                    "path='/run/unishim/k8s.io/0123/console.sock'><seclabel "
                                    "model='dac' relabel='no'/></source>"));
        assert_non_null(strstr(xml, "name='org.qemu.guest_agent.0'"));
        assert_non_null(strstr(xml, "<source mode='connect' path='/run/unishim/k8s.io/0123/"
                                    "agent.sock'><seclabel model='dac' relabel='no'/></source>"));
        /* The backing chain is ours, ended explicitly: libvirt probes no
         * header of the pod's file. */
        assert_non_null(strstr(xml, "<backingStore type='file'>\n"
                                    "        <format type='qcow2'/>\n"
                                    "        <source file='/run/unishim/k8s.io/0123/base'>"
                                    "<seclabel model='dac' relabel='no'/></source>\n"
                                    "        <backingStore/>\n"));
        assert_non_null(strstr(xml, "<panic model='isa'/>"));
        assert_non_null(strstr(xml, "<memballoon model='none'/>"));
        assert_null(strstr(xml, "<resource>"));
        assert_null(strstr(xml, "host-passthrough"));
        int ok = schema_accepts(xml);
        if (ok < 0)
                unit_skip("virt-xml-validate missing (apt package libvirt-clients)");
        assert_int_equal(ok, 1);
}

static void kvm_minimal_and_escaped(void **state)
{
        (void)state;
        struct vmm_domain_config c = full();
        _cleanup_free_ char *xml = NULL;
        struct us_error *err = NULL;

        c.kvm = true;
        c.tcg_tb_cache_mib = 16;
        c.uuid = NULL;
        c.seed = NULL;
        c.tap = NULL;
        c.backing = NULL;
        c.agent_socket = NULL;
        c.partition = "/kubepods.slice/kubepods-pod1.slice";
        c.disk = "/run/a'b&c<d>\"e/disk.qcow2";
        assert_int_equal(vmm_domain_xml(&c, &xml, &err), 0);
        assert_non_null(strstr(xml, "<domain type='kvm'>"));
        assert_non_null(strstr(xml, "<cpu mode='host-passthrough'/>"));
        /* KVM has no translation cache: libvirt refuses TCG features. */
        assert_non_null(strstr(xml, "<features><acpi/></features>"));
        assert_null(strstr(xml, "<tcg>"));
        assert_non_null(strstr(xml, "<partition>/kubepods.slice/kubepods-pod1.slice</partition>"));
        assert_non_null(strstr(xml, "/run/a&apos;b&amp;c&lt;d&gt;&quot;e/disk.qcow2"));
        assert_null(strstr(xml, "<uuid>"));
        assert_null(strstr(xml, "vdb"));
        assert_null(strstr(xml, "<interface"));
        assert_non_null(strstr(xml, "      <backingStore/>\n      <target dev='vda'"));
        assert_null(strstr(xml, "<source mode='connect' path='/run/unishim/k8s.io/0123/agent"));
        int ok = schema_accepts(xml);
        if (ok < 0)
                unit_skip("virt-xml-validate missing (apt package libvirt-clients)");
        assert_int_equal(ok, 1);
}

static void refuses_bad_values(void **state)
{
        (void)state;
        static const struct {
                const char *field, *value;
        } cases[] = {
                {"name", ""},
                {"name", "12345"},
                {"name", "a/b"},
                {"name", "a b"},
                {"name", "x<y"},
                {"uuid", "6b1e3f0a-8c9d-4e2f-a1b2-c3d4e5f6071"},
                {"uuid", "6b1e3f0a_8c9d-4e2f-a1b2-c3d4e5f60718"},
                {"disk", "relative.qcow2"},
                {"disk", "/run/../etc/shadow"},
                {"disk", "/run/x/.."},
                {"disk", "/run/x\ny"},
                {"seed", "seed.iso"},
                {"tap", "a-very-long-tap-name"},
                {"tap", "a/b"},
                {"mac", "02:00:0a:01:02"},
                {"console", "console.sock"},
                {"agent", "agent.sock"},
                {"backing", "base"},
                {"backing_format", "vmdk"},
                {"emulator", "qemu"},
        };
        for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
                struct vmm_domain_config c = full();
                const char *f = cases[i].field, *v = cases[i].value;
                if (!strcmp(f, "name"))
                        c.name = v;
                else if (!strcmp(f, "uuid"))
                        c.uuid = v;
                else if (!strcmp(f, "disk"))
                        c.disk = v;
                else if (!strcmp(f, "seed"))
                        c.seed = v;
                else if (!strcmp(f, "tap"))
                        c.tap = v;
                else if (!strcmp(f, "mac"))
                        c.mac = v;
                else if (!strcmp(f, "console"))
                        c.console_socket = v;
                else if (!strcmp(f, "agent"))
                        c.agent_socket = v;
                else if (!strcmp(f, "backing"))
                        c.backing = v;
                else if (!strcmp(f, "backing_format"))
                        c.backing_format = v;
                else
                        c.emulator = v;
                char *xml = NULL;
                struct us_error *err = NULL;
                int r = vmm_domain_xml(&c, &xml, &err);
                if (r != -EINVAL)
                        fail_msg("%s '%s' accepted", f, v);
                assert_null(xml);
                us_error_free(err);
        }
        struct vmm_domain_config c = full();
        char *xml = NULL;
        struct us_error *err = NULL;
        c.vcpus = 0;
        assert_int_equal(vmm_domain_xml(&c, &xml, &err), -EINVAL);
        err = us_error_free(err);
        c = full();
        c.memory_mib = 8;
        assert_int_equal(vmm_domain_xml(&c, &xml, &err), -EINVAL);
        err = us_error_free(err);
        c = full();
        c.tcg_tb_cache_mib = VMM_DOMAIN_TB_CACHE_MAX_MIB + 1;
        assert_int_equal(vmm_domain_xml(&c, &xml, &err), -EINVAL);
        assert_non_null(strstr(us_error_text(err), "tb-cache"));
        err = us_error_free(err);
        c = full();
        c.tcg_tb_cache_mib = 16;
        assert_int_equal(vmm_domain_xml(&c, &xml, &err), 0);
        assert_non_null(strstr(xml, "<tb-cache unit='MiB'>16</tb-cache>"));
        free(xml);
        xml = NULL;
        /* QEMU never runs as root. */
        c = full();
        c.uid = 0;
        assert_int_equal(vmm_domain_xml(&c, &xml, &err), -EINVAL);
        assert_non_null(strstr(us_error_text(err), "root"));
        err = us_error_free(err);
        c = full();
        c.gid = 0;
        assert_int_equal(vmm_domain_xml(&c, &xml, &err), -EINVAL);
        err = us_error_free(err);
        /* The console socket must fit sun_path. */
        c = full();
        char longsock[160] = "/run/";
        memset(longsock + 5, 's', 110);
        c.console_socket = longsock;
        assert_int_equal(vmm_domain_xml(&c, &xml, &err), -EINVAL);
        us_error_free(err);
}

static void names(void **state)
{
        (void)state;
        char buf[VMM_DOMAIN_NAME_MAX + 1];
        vmm_domain_name("web-0", "0123456789abcdef", buf);
        assert_string_equal(buf, "unishim-web-0-0123456789ab");
        vmm_domain_name("a_b c/d", "ff", buf);
        assert_string_equal(buf, "unishim-a-b-c-d-ff");
        vmm_domain_name(NULL, NULL, buf);
        assert_string_equal(buf, "unishim-x");
        char longname[300];
        memset(longname, 'n', sizeof(longname) - 1);
        longname[sizeof(longname) - 1] = '\0';
        vmm_domain_name(longname, "0123456789abcdef", buf);
        assert_int_equal(strlen(buf), VMM_DOMAIN_NAME_MAX);
        assert_string_equal(buf + VMM_DOMAIN_NAME_MAX - 13, "-0123456789ab");
        /* Whatever the pod's name, the result is a valid domain name. */
        struct vmm_domain_config c = full();
        char *xml = NULL;
        struct us_error *err = NULL;
        c.name = buf;
        assert_int_equal(vmm_domain_xml(&c, &xml, &err), 0);
        free(xml);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(full_domain),
                cmocka_unit_test(kvm_minimal_and_escaped),
                cmocka_unit_test(refuses_bad_values),
                cmocka_unit_test(names),
        };
        return unit_exit(unit_run_group_tests(tests, NULL, NULL));
}
