/* SPDX-License-Identifier: Apache-2.0 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>

#include "unit.h"

#include "rootfs.h"

static void overlay_options_become_data(void **state)
{
        (void)state;
        char *opts[] = {"index=off", "workdir=/w", "upperdir=/u", "lowerdir=/l1:/l2", "ro"};
        unsigned long flags = 0, prop = 0;
        char *data = NULL;
        assert_int_equal(shim_mount_options(opts, 5, &flags, &prop, &data, NULL), 0);
        assert_int_equal(flags, MS_RDONLY);
        assert_int_equal(prop, 0);
        assert_string_equal(data, "index=off,workdir=/w,upperdir=/u,lowerdir=/l1:/l2");
        free(data);
}

static void bind_flags_and_propagation(void **state)
{
        (void)state;
        char *opts[] = {"rbind", "nosuid", "nodev", "rprivate", "rw"};
        unsigned long flags = 0, prop = 0;
        char *data = NULL;
        assert_int_equal(shim_mount_options(opts, 5, &flags, &prop, &data, NULL), 0);
        assert_int_equal(flags, MS_BIND | MS_REC | MS_NOSUID | MS_NODEV);
        assert_int_equal(prop, MS_PRIVATE | MS_REC);
        assert_null(data);
}

static void clearing_options_win_in_order(void **state)
{
        (void)state;
        char *opts[] = {"ro", "rw", "noexec", "exec", "nosuid"};
        unsigned long flags = 0, prop = 0;
        char *data = NULL;
        assert_int_equal(shim_mount_options(opts, 5, &flags, &prop, &data, NULL), 0);
        assert_int_equal(flags, MS_NOSUID);
        free(data);
}

static void oversized_data_is_refused(void **state)
{
        (void)state;
        size_t n = 40;
        char *big = malloc(4001);
        memset(big, 'x', 4000);
        big[4000] = '\0';
        char **opts = calloc(n, sizeof(*opts));
        for (size_t i = 0; i < n; i++)
                opts[i] = big;
        unsigned long flags, prop;
        char *data = NULL;
        struct us_error *err = NULL;
        assert_int_equal(shim_mount_options(opts, n, &flags, &prop, &data, &err), -E2BIG);
        assert_non_null(strstr(us_error_text(err), "too long"));
        assert_null(data);
        us_error_free(err);
        free(opts);
        free(big);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(overlay_options_become_data),
                cmocka_unit_test(bind_flags_and_propagation),
                cmocka_unit_test(clearing_options_win_in_order),
                cmocka_unit_test(oversized_data_is_refused),
        };
        return unit_exit(unit_run_group_tests(tests, NULL, NULL));
}
