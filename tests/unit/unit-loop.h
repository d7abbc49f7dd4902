/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Running a test's event loop until the awaited event quits it, and a
 * reader that collects a pipe's bytes on it, for the cmocka binaries that
 * drive a struct us_loop themselves (header-only: tests/CMakeLists.txt
 * builds each tests/unit/test-*.c alone).
 */
#pragma once

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <unistd.h>

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

/* The reading end of a process's stdin: reads fd from the loop once
 * started, keeps what it read, and quits the loop at EOF (eof set) or at
 * the byte until (for a terminal, which has no EOF to see here; -1: at EOF
 * only). */
struct unit_reader {
        struct us_loop *loop;
        int fd;
        struct us_loop_source *src;
        uint8_t *got; /* the caller frees it */
        size_t len, cap;
        int until;
        bool eof;
};

static inline void unit_reader_ready(struct us_loop_source *src, int fd, uint32_t events,
                                     void *userdata)
{
        (void)src;
        (void)events;
        struct unit_reader *rd = userdata;
        for (;;) {
                if (rd->cap - rd->len < 4096) {
                        rd->cap = rd->cap ? rd->cap * 2 : 65536;
                        rd->got = realloc(rd->got, rd->cap);
                        assert_non_null(rd->got);
                }
                ssize_t n = read(fd, rd->got + rd->len, rd->cap - rd->len);
                if (n > 0) {
                        rd->len += (size_t)n;
                        if (rd->until >= 0 && rd->got[rd->len - 1] == (uint8_t)rd->until) {
                                rd->src = us_loop_source_remove(rd->src);
                                us_loop_quit(rd->loop, 0);
                                return;
                        }
                        continue;
                }
                if (n < 0 && errno == EAGAIN)
                        return;
                assert_int_equal(n, 0);
                rd->eof = true;
                rd->src = us_loop_source_remove(rd->src);
                us_loop_quit(rd->loop, 0);
                return;
        }
}

static inline void unit_reader_start(struct unit_reader *rd)
{
        assert_int_equal(fcntl(rd->fd, F_SETFL, O_NONBLOCK), 0);
        assert_int_equal(
                us_loop_add_fd(rd->loop, rd->fd, EPOLLIN, unit_reader_ready, rd, &rd->src, NULL),
                0);
}
