/* SPDX-License-Identifier: Apache-2.0 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>

#include "unit.h"

#include "base/error.h"

static void wrap_builds_outside_in(void **state)
{
        (void)state;
        struct us_error *err = NULL;
        int r = us_errorf(&err, ENOENT, "open %s", "/x");
        assert_int_equal(r, -ENOENT);
        r = us_error_wrap(&err, r, "start vm");
        r = us_error_wrap(&err, r, "create pod %s", "abc");
        assert_int_equal(r, -ENOENT);
        assert_string_equal(us_error_text(err),
                            "create pod abc: start vm: open /x: No such file or directory");
        assert_int_equal(err->code, ENOENT);
        err = us_error_free(err);
        assert_null(err);
}

static void first_error_wins(void **state)
{
        (void)state;
        struct us_error *err = NULL;
        us_error_msg(&err, EINVAL, "root cause");
        us_error_msg(&err, EPERM, "later");
        assert_string_equal(us_error_text(err), "root cause");
        assert_int_equal(err->code, EINVAL);
        us_error_free(err);
}

static void null_err_and_zero_errno(void **state)
{
        (void)state;
        assert_int_equal(us_errorf(NULL, 0, "x"), -EIO);
        assert_int_equal(us_error_wrap(NULL, -EPERM, "x"), -EPERM);
        struct us_error *err = NULL;
        us_error_wrap(&err, -EPERM, "ctx");
        assert_string_equal(us_error_text(err), "ctx: Operation not permitted");
        us_error_free(err);
        assert_string_equal(us_error_text(NULL), "unknown error");
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(wrap_builds_outside_in),
                cmocka_unit_test(first_error_wins),
                cmocka_unit_test(null_err_and_zero_errno),
        };
        return unit_exit(unit_run_group_tests(tests, NULL, NULL));
}
