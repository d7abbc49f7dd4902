/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The shared part of the unit test binaries (unit.h): skip bookkeeping on
 * top of cmocka 1.1, and the scale of the tests' hang guards.
 *
 * cmocka calls a case's setup, the case and its teardown with nothing that
 * names the case, so the state lives in this file's one global, and every
 * case gets a setup trampoline that notes which case starts. cmocka runs a
 * group's cases in array order and calls each setup once, before its case.
 */
#include "unit.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#if defined(__SANITIZE_ADDRESS__)
#define UNIT_SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define UNIT_SANITIZED 1
#endif
#endif

struct unit_skipped {
        char *name;
        char *reason;
};

static struct {
        const struct CMUnitTest *group; /* the group running, as main passed it */
        size_t n, next;                 /* its cases, the next one to set up */
        const char *current;            /* the case running, NULL between groups */
        unsigned cases;
        struct unit_skipped *skipped;
        size_t n_skipped, cap_skipped;
} unit;

void unit_skip_note(const char *fmt, ...)
{
        char reason[512];
        va_list ap;
        va_start(ap, fmt);
        (void)vsnprintf(reason, sizeof(reason), fmt, ap);
        va_end(ap);
        /* One line per skip: the reason must not break it. */
        for (char *p = reason; *p; p++)
                if (*p == '\n' || *p == '\r')
                        *p = ' ';
        const char *name = unit.current ? unit.current : "(group setup)";
        print_message("SKIP: %s\n", reason);
        if (unit.n_skipped == unit.cap_skipped) {
                size_t cap = unit.cap_skipped ? 2 * unit.cap_skipped : 16;
                struct unit_skipped *p = realloc(unit.skipped, cap * sizeof(*p));
                if (!p)
                        abort(); /* a test binary: nothing to save */
                unit.skipped = p;
                unit.cap_skipped = cap;
        }
        struct unit_skipped *s = &unit.skipped[unit.n_skipped++];
        s->name = strdup(name);
        s->reason = strdup(reason);
        if (!s->name || !s->reason)
                abort();
}

static int unit_case_setup(void **state)
{
        if (unit.next >= unit.n)
                abort(); /* cmocka ran more cases than it was given */
        const struct CMUnitTest *t = &unit.group[unit.next++];
        unit.current = t->name;
        return t->setup_func ? t->setup_func(state) : 0;
}

int unit_run_group(const char *group_name, const struct CMUnitTest *tests, size_t n,
                   CMFixtureFunction group_setup, CMFixtureFunction group_teardown)
{
        struct CMUnitTest *run = calloc(n ? n : 1, sizeof(*run));
        if (!run)
                abort();
        for (size_t i = 0; i < n; i++) {
                run[i] = tests[i];
                run[i].setup_func = unit_case_setup;
        }
        unit.group = tests;
        unit.n = n;
        unit.next = 0;
        unit.cases += (unsigned)n;
        int failed = _cmocka_run_group_tests(group_name, run, n, group_setup, group_teardown);
        unit.group = NULL;
        unit.current = NULL;
        free(run);
        return failed;
}

int unit_exit(int failed)
{
        for (size_t i = 0; i < unit.n_skipped; i++) {
                print_message("unit-skip: %s: %s\n", unit.skipped[i].name, unit.skipped[i].reason);
                free(unit.skipped[i].name);
                free(unit.skipped[i].reason);
        }
        size_t skipped = unit.n_skipped;
        free(unit.skipped);
        unit.skipped = NULL;
        unit.n_skipped = unit.cap_skipped = 0;
        fflush(stdout);
        /* Not the count: 77 failures must not read as "skipped". */
        if (failed)
                return 1;
        if (unit.cases > 0 && skipped >= unit.cases) {
                print_message("unit: all %u cases skipped\n", unit.cases);
                fflush(stdout);
                return 77;
        }
        return 0;
}

int unit_wait_ms(int ms)
{
        long scale = 1;
#ifdef UNIT_SANITIZED
        scale = 4;
#endif
        const char *env = getenv("UNISHIM_TEST_TIMEOUT_SCALE");
        if (env && *env) {
                char *end = NULL;
                long s = strtol(env, &end, 10);
                if (*end == '\0' && s > 0)
                        scale = s;
        }
        long long scaled = (long long)ms * scale;
        return scaled > INT_MAX ? INT_MAX : (int)scaled;
}

void unit_write_file(const char *path, const char *text)
{
        FILE *f = fopen(path, "we");
        assert_non_null(f);
        assert_true(fputs(text, f) >= 0);
        assert_int_equal(fclose(f), 0);
}
