/* SPDX-License-Identifier: Apache-2.0 */
/* The guest image's kernel config: whether a pod's share can be 9p. */
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

#include "shim/sandbox/image.h"

static bool has_9p(const char *text)
{
        return sandbox_image_config_has_9p(text, strlen(text));
}

static void config_lines(void **state)
{
        (void)state;
        /* Debian's generic flavour: modules. */
        assert_true(has_9p("CONFIG_NET_9P=m\nCONFIG_NET_9P_VIRTIO=m\nCONFIG_9P_FS=m\n"));
        /* The minimal kernel: built in; the last line without its newline. */
        assert_true(has_9p("CONFIG_9P_FS=y\nCONFIG_9P_FS_POSIX_ACL=y\nCONFIG_NET_9P_VIRTIO=y"));
        /* The cloud flavour. */
        assert_false(has_9p("# CONFIG_NET_9P is not set\nCONFIG_VIRTIO_FS=m\n"));
        /* One of the two is not enough. */
        assert_false(has_9p("CONFIG_9P_FS=m\n"));
        assert_false(has_9p("CONFIG_NET_9P_VIRTIO=y\n"));
        assert_false(has_9p("# CONFIG_9P_FS is not set\nCONFIG_NET_9P_VIRTIO=y\n"));
        /* Only whole lines with y or m count. */
        assert_false(has_9p("CONFIG_9P_FS=n\nCONFIG_NET_9P_VIRTIO=y\n"));
        assert_false(has_9p("CONFIG_9P_FS_POSIX_ACL=y\nCONFIG_NET_9P_VIRTIO=y\n"));
        assert_false(has_9p("XCONFIG_9P_FS=y\nCONFIG_NET_9P_VIRTIO=y\n"));
        assert_false(has_9p("CONFIG_9P_FS=yes\nCONFIG_NET_9P_VIRTIO=y\n"));
        assert_false(has_9p("#CONFIG_9P_FS=y\nCONFIG_NET_9P_VIRTIO=y\n"));
        assert_false(has_9p(""));
        assert_false(sandbox_image_config_has_9p("CONFIG_9P_FS=y\nCONFIG_NET_9P_VIRTIO=y", 20));
}

/* An image directory with a vmlinux and, unless config is NULL, a
 * kernel-config; returns the vmlinux path (static buffer). */
static const char *image(const char *dir, const char *config)
{
        static char kernel[256];
        char path[256];
        snprintf(kernel, sizeof(kernel), "%s/vmlinux", dir);
        unit_write_file(kernel, "kernel bytes");
        snprintf(path, sizeof(path), "%s/kernel-config", dir);
        if (config)
                unit_write_file(path, config);
        else
                (void)unlink(path);
        return kernel;
}

/* shared_fs KERNEL WANT: sandbox_image_shared_fs's answer (1: 9p, 0:
 * virtio-fs) or its negative errno. */
static int shared_fs(const char *kernel, enum policy_shared_fs want, struct us_error **err)
{
        bool ninep = true;
        int r = sandbox_image_shared_fs(want, kernel, &ninep, err);
        return r < 0 ? r : ninep;
}

static void shared_fs_beside_the_kernel(void **state)
{
        (void)state;
        char dir[] = "/tmp/test-sandbox-image-XXXXXX", path[256];
        assert_non_null(mkdtemp(dir));
        struct us_error *err = NULL;

        const char *k = image(dir, "CONFIG_9P_FS=m\nCONFIG_NET_9P_VIRTIO=m\n");
        assert_int_equal(shared_fs(k, POLICY_SHARED_FS_9P, &err), 1);
        assert_int_equal(shared_fs(k, POLICY_SHARED_FS_AUTO, &err), 1);
        assert_int_equal(shared_fs(k, POLICY_SHARED_FS_VIRTIOFS, &err), 0);
        assert_null(err);
        /* The cloud image: 9p refused, naming the key, the kernel and the
         * config file; unset, virtio-fs. */
        k = image(dir, "# CONFIG_NET_9P is not set\n");
        assert_int_equal(shared_fs(k, POLICY_SHARED_FS_9P, &err), -ENOTSUP);
        const char *msg = us_error_text(err);
        assert_non_null(strstr(msg, "sandbox.shared_fs"));
        assert_non_null(strstr(msg, k));
        assert_non_null(strstr(msg, "kernel-config"));
        assert_non_null(strstr(msg, "guest-image-generic"));
        err = us_error_free(err);
        assert_int_equal(shared_fs(k, POLICY_SHARED_FS_AUTO, &err), 0);
        assert_int_equal(shared_fs(k, POLICY_SHARED_FS_VIRTIOFS, &err), 0);
        assert_null(err);
        /* No config beside it (an operator's own kernel): 9p not judged,
         * unset means virtio-fs. */
        k = image(dir, NULL);
        assert_int_equal(shared_fs(k, POLICY_SHARED_FS_9P, &err), 1);
        assert_int_equal(shared_fs(k, POLICY_SHARED_FS_AUTO, &err), 0);
        assert_null(err);
        /* One that cannot be read (a fifo: never waited on; a directory):
         * 9p is refused naming it, unset means virtio-fs. */
        snprintf(path, sizeof(path), "%s/kernel-config", dir);
        assert_int_equal(mkfifo(path, 0600), 0);
        assert_int_equal(shared_fs(k, POLICY_SHARED_FS_AUTO, &err), 0);
        assert_true(shared_fs(k, POLICY_SHARED_FS_9P, &err) < 0);
        assert_non_null(strstr(us_error_text(err), "kernel-config"));
        err = us_error_free(err);
        assert_int_equal(unlink(path), 0);
        assert_int_equal(mkdir(path, 0700), 0);
        assert_int_equal(shared_fs(k, POLICY_SHARED_FS_AUTO, &err), 0);
        assert_true(shared_fs(k, POLICY_SHARED_FS_9P, &err) < 0);
        err = us_error_free(err);
        assert_int_equal(rmdir(path), 0);

        snprintf(path, sizeof(path), "%s/vmlinux", dir);
        assert_int_equal(unlink(path), 0);
        assert_int_equal(rmdir(dir), 0);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(config_lines),
                cmocka_unit_test(shared_fs_beside_the_kernel),
        };
        return unit_exit(unit_run_group_tests(tests, NULL, NULL));
}
