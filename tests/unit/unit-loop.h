/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Running a test's event loop until the awaited event quits it, for the
 * cmocka binaries that drive a struct us_loop themselves (header-only:
 * tests/CMakeLists.txt builds each tests/unit/test-*.c alone).
 */
#pragma once

#include <errno.h>
#include <stdint.h>

#include "unit.h"

#include "base/loop.h"

struct unit_loop_guard {
        struct us_loop *loop;
        struct us_loop_source *src;
};

static inline void unit_loop_hang(struct us_loop_source *src, void *userdata)
{
        (void)src;
        struct unit_loop_guard *g = userdata;
        g->src = NULL; /* the loop removes a timer that fired */
        us_loop_quit(g->loop, -ETIMEDOUT);
}

/* Runs loop until something quits it (0), or fails the case when nothing
 * does: a hang, not a slow machine (unit_wait_ms). */
static inline void unit_run_loop(struct us_loop *loop)
{
        struct unit_loop_guard g = {.loop = loop};
        assert_int_equal(us_loop_add_timer(loop, (uint64_t)unit_wait_ms(10000), unit_loop_hang, &g,
                                           &g.src, NULL),
                         0);
        int r = us_loop_run(loop);
        us_loop_source_remove(g.src);
        assert_int_equal(r, 0);
}
