/* SPDX-License-Identifier: Apache-2.0 */
/* The growing text buffer (libunishim/base/text.h). */
#include <stdlib.h>
#include <string.h>

#include "unit.h"

#include "base/text.h"

static void builds_and_takes(void **state)
{
        (void)state;
        struct us_text t = {0};
        us_text_append(&t, "ab", 2);
        us_text_add(&t, "-%u-%s", 7u, "x");
        assert_string_equal(t.s, "ab-7-x");
        assert_int_equal(t.len, 6);
        us_text_reset(&t);
        assert_string_equal(t.s, "");
        /* Past the first allocation, through several doublings. */
        for (int i = 0; i < 1000; i++)
                us_text_add(&t, "%04d", i);
        assert_int_equal(t.len, 4000);
        assert_memory_equal(t.s + 3996, "0999", 4);
        assert_int_equal(strlen(t.s), 4000);
        char *s = us_text_take(&t);
        assert_non_null(s);
        assert_int_equal(strlen(s), 4000);
        assert_null(t.s);
        assert_int_equal(t.len, 0);
        free(s);
        /* Nothing appended: an empty string, not NULL. */
        s = us_text_take(&t);
        assert_string_equal(s, "");
        free(s);
}

static void failure_sticks(void **state)
{
        (void)state;
        struct us_text t = {0};
        us_text_add(&t, "kept");
        t.oom = true; /* as after a failed realloc */
        us_text_add(&t, "more");
        us_text_append(&t, "x", 1);
        assert_int_equal(t.len, 4);
        assert_null(us_text_take(&t));
        assert_null(t.s);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(builds_and_takes),
                cmocka_unit_test(failure_sticks),
        };
        return unit_exit(unit_run_group_tests(tests, NULL, NULL));
}
