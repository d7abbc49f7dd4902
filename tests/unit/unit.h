/* SPDX-License-Identifier: Apache-2.0 */
/*
 * What every cmocka binary in tests/unit shares: skips that ctest can see,
 * and waits that do not depend on the machine's speed.
 *
 * Skips. cmocka 1.1's skip() marks a case skipped, but its run functions
 * return only the number of failures, so a binary whose every case skipped
 * exited 0 and ctest reported a pass. Here a case skips with
 * unit_skip("needs root") (a bare skip() counts too, without a reason), main
 * runs its groups with unit_run_group_tests() and returns unit_exit():
 *
 *   some case failed             1
 *   every case skipped           77 (SKIP_RETURN_CODE: ctest shows Skipped)
 *   otherwise                    0, skipped cases listed
 *
 * and prints each skipped case on a line of its own,
 *
 *   unit-skip: <case>: <reason>
 *
 * which tools/ctest-skips collects from ctest's log after a run.
 *
 * Waits. A test waits for an event (a reply, an exit, EOF), never for a
 * time; the deadline on such a wait only tells a hang from a slow machine.
 * unit_wait_ms(ms) scales a deadline that is generous on an idle machine:
 * times UNISHIM_TEST_TIMEOUT_SCALE when set (a positive integer), else
 * times 4 in a sanitizer build.
 */
#pragma once

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

/* Records why the running case skips (printed now and in unit_exit()). */
void unit_skip_note(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Skips the running case for the reason given (printf format). */
#define unit_skip(...)                                                                             \
        do {                                                                                       \
                unit_skip_note(__VA_ARGS__);                                                       \
                _skip(__FILE__, __LINE__);                                                         \
        } while (0)

/* A skip without unit_skip() still counts, so the exit code stays right. */
#undef skip
#define skip() unit_skip("(no reason given)")

/* cmocka's _cmocka_run_group_tests(), keeping count of the cases run and
 * knowing which case runs (for the skip lines). Returns the failures. */
int unit_run_group(const char *group_name, const struct CMUnitTest *tests, size_t n,
                   CMFixtureFunction group_setup, CMFixtureFunction group_teardown);

#define unit_run_group_tests(tests, group_setup, group_teardown)                                   \
        unit_run_group(#tests, tests, sizeof(tests) / sizeof((tests)[0]), group_setup,             \
                       group_teardown)
#define unit_run_group_tests_name(name, tests, group_setup, group_teardown)                        \
        unit_run_group(name, tests, sizeof(tests) / sizeof((tests)[0]), group_setup, group_teardown)

/* main's exit code from the failures of all its groups (see above). */
int unit_exit(int failed);

/* ms scaled for this build and machine (see above); at least ms. */
int unit_wait_ms(int ms);

/* Writes text to path (created or truncated); a failure fails the case. */
void unit_write_file(const char *path, const char *text);
