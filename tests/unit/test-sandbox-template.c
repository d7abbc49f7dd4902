/* SPDX-License-Identifier: Apache-2.0 */
/* When a sandbox pod starts from the node's VM template, and the template's
 * inputs as the shim and unishimctl compute them (one function). */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "unit.h"

#include "base/cleanup.h"
#include "shim/sandbox/template.h"

static struct policy_sandbox_config sb_on(void)
{
        return (struct policy_sandbox_config){
                .templates = true, .shared_fs = POLICY_SHARED_FS_9P, .vcpus = 1, .memory_mib = 256};
}

static void why_not(void **state)
{
        (void)state;
        struct policy_sandbox_config sb = sb_on();
        assert_null(sandbox_template_why_not(&sb, true, true));
        /* Each condition alone makes the pod boot cold, with its reason. */
        assert_non_null(strstr(sandbox_template_why_not(&sb, true, false), "no network"));
        sb.templates = false;
        assert_non_null(strstr(sandbox_template_why_not(&sb, true, true), "templates is off"));
        sb = sb_on();
        sb.shared_fs = POLICY_SHARED_FS_VIRTIOFS;
        assert_non_null(strstr(sandbox_template_why_not(&sb, false, true), "not 9p"));
        /* Unset: the image decided (a kernel without 9p). */
        sb.shared_fs = POLICY_SHARED_FS_AUTO;
        assert_non_null(strstr(sandbox_template_why_not(&sb, false, true), "has no 9p"));
        assert_null(sandbox_template_why_not(&sb, true, true));
}

/* A kernel and initrd of the test's own; inputs from the config, twice:
 * the same key; the size in the config changes it, and so does a pod's
 * size (a template per size). */
static void inputs(void **state)
{
        (void)state;
        char dir[] = "/tmp/test-sandbox-template-XXXXXX", kernel[256], initrd[256];
        assert_non_null(mkdtemp(dir));
        snprintf(kernel, sizeof(kernel), "%s/vmlinux", dir);
        snprintf(initrd, sizeof(initrd), "%s/initramfs.cpio", dir);
        for (int i = 0; i < 2; i++) {
                int fd = open(i ? initrd : kernel, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
                assert_true(fd >= 0);
                assert_int_equal(write(fd, "x", 1), 1);
                close(fd);
        }
        struct policy_sandbox_config sb = sb_on();
        sb.kernel = kernel;
        sb.initrd = initrd;
        sb.accel = (char *)"tcg";
        struct vmm_template_inputs a, b;
        struct us_error *err = NULL;
        if (sandbox_template_inputs(&sb, NULL, &a, &err) < 0)
                fail_msg("inputs: %s", us_error_text(err));
        assert_string_equal(a.kernel, kernel);
        assert_string_equal(a.initrd, initrd);
        assert_int_equal(a.vcpus, 1);
        assert_int_equal(a.memory_mib, 256);
        assert_int_equal(a.accel, VMM_ACCEL_TCG);
        assert_null(a.cmdline_extra);
        assert_non_null(a.host_id);
        assert_int_equal(sandbox_template_inputs(&sb, NULL, &b, NULL), 0);
        _cleanup_free_ char *ma = NULL, *mb = NULL, *mc = NULL, *md = NULL, *me = NULL;
        assert_int_equal(vmm_template_manifest(&a, &ma, NULL), 0);
        assert_int_equal(vmm_template_manifest(&b, &mb, NULL), 0);
        assert_string_equal(ma, mb);
        sandbox_template_inputs_free(&b);
        sb.memory_mib = 512;
        assert_int_equal(sandbox_template_inputs(&sb, NULL, &b, NULL), 0);
        assert_int_equal(vmm_template_manifest(&b, &mc, NULL), 0);
        char ka[VMM_TEMPLATE_KEY_LEN + 1], kc[VMM_TEMPLATE_KEY_LEN + 1];
        char kd[VMM_TEMPLATE_KEY_LEN + 1], ke[VMM_TEMPLATE_KEY_LEN + 1];
        vmm_template_key(ma, ka);
        vmm_template_key(mc, kc);
        assert_string_not_equal(ka, kc);
        sandbox_template_inputs_free(&b);
        /* A pod's size wins over the config's; 0 keeps the config's. */
        const struct policy_vm_size s512 = {.vcpus = 1, .memory_mib = 512};
        const struct policy_vm_size s2 = {.vcpus = 2};
        sb.memory_mib = 256;
        assert_int_equal(sandbox_template_inputs(&sb, &s512, &b, NULL), 0);
        assert_int_equal(b.memory_mib, 512);
        assert_int_equal(vmm_template_manifest(&b, &md, NULL), 0);
        vmm_template_key(md, kd);
        assert_string_equal(kd, kc);
        sandbox_template_inputs_free(&b);
        assert_int_equal(sandbox_template_inputs(&sb, &s2, &b, NULL), 0);
        assert_int_equal(b.vcpus, 2);
        assert_int_equal(b.memory_mib, 256);
        assert_int_equal(vmm_template_manifest(&b, &me, NULL), 0);
        vmm_template_key(me, ke);
        assert_string_not_equal(ke, ka);
        sandbox_template_inputs_free(&a);
        sandbox_template_inputs_free(&b);
        /* No kernel in the config: the image lookup, which names what it
         * tried (UNISHIM_GUEST_DIR here). */
        sb.kernel = NULL;
        setenv("UNISHIM_GUEST_DIR", dir, 1);
        assert_int_equal(sandbox_template_inputs(&sb, NULL, &a, NULL), 0);
        char *rk = realpath(kernel, NULL);
        assert_string_equal(a.kernel, rk);
        free(rk);
        sandbox_template_inputs_free(&a);
        unsetenv("UNISHIM_GUEST_DIR");
        unlink(kernel);
        unlink(initrd);
        rmdir(dir);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(why_not),
                cmocka_unit_test(inputs),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
