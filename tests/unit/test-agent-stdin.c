/* SPDX-License-Identifier: Apache-2.0 */
/* A guest process's stdin in the agent, with real pipes and the loop, no
 * VM: a write the process does not take at once waits without blocking and
 * is answered once all of it went in; CloseStdin closes only after the last
 * byte (and ^D for a terminal); nothing is lost or reordered. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "unit.h"
#include "unit-loop.h"

#include "guest-agent/agent.h"

#define BIG (256u * 1024) /* more than a pipe holds */

/* The host's side: how its waiting write ended. */
struct done {
        int calls;
        int r;
        size_t len;
        bool eof_seen_before; /* the reader saw EOF before the write was done */
        struct unit_reader *rd;
        struct us_loop *quit; /* quits this loop when done */
};

static void on_done(struct agent_stdin *s, int r, size_t len, void *userdata)
{
        (void)s;
        struct done *d = userdata;
        d->calls++;
        d->r = r;
        d->len = len;
        d->eof_seen_before = d->rd && d->rd->eof;
        if (d->quit)
                us_loop_quit(d->quit, 0);
}

static void make_pipe(int p[2])
{
        assert_int_equal(pipe2(p, O_CLOEXEC | O_NONBLOCK), 0);
}

static uint8_t *pattern(size_t n)
{
        uint8_t *b = malloc(n);
        assert_non_null(b);
        for (size_t i = 0; i < n; i++)
                b[i] = (uint8_t)(i * 7 + i / 251);
        return b;
}

static void test_fits_at_once(void **state)
{
        (void)state;
        struct us_loop *loop = NULL;
        assert_int_equal(us_loop_new(&loop, NULL), 0);
        int p[2];
        make_pipe(p);
        struct agent_stdin s;
        agent_stdin_init(&s, p[1], false);
        struct done d = {0};
        assert_int_equal(agent_stdin_write(&s, loop, (const uint8_t *)"abc", 3, on_done, &d), 1);
        assert_int_equal(agent_stdin_write(&s, loop, NULL, 0, on_done, &d), 1);
        agent_stdin_close(&s, loop);
        assert_int_equal(s.fd, -1);
        assert_int_equal(agent_stdin_write(&s, loop, (const uint8_t *)"x", 1, on_done, &d), -EBADF);
        char buf[8];
        assert_int_equal(read(p[0], buf, sizeof(buf)), 3);
        assert_memory_equal(buf, "abc", 3);
        assert_int_equal(read(p[0], buf, sizeof(buf)), 0); /* EOF */
        assert_int_equal(d.calls, 0);
        agent_stdin_release(&s);
        close(p[0]);
        us_loop_free(loop);
}

/* A write bigger than the pipe waits for the reader; the close that comes
 * meanwhile (the host's CloseStdin) ends stdin only after its last byte. */
static void run_waiting_write(bool pty)
{
        struct us_loop *loop = NULL;
        assert_int_equal(us_loop_new(&loop, NULL), 0);
        int p[2];
        make_pipe(p);
        struct agent_stdin s;
        agent_stdin_init(&s, p[1], pty);
        struct unit_reader rd = {.loop = loop, .fd = p[0], .until = -1};
        struct done d = {.rd = &rd};
        _cleanup_free_ uint8_t *data = pattern(BIG);
        assert_int_equal(agent_stdin_write(&s, loop, data, BIG, on_done, &d), 0);
        assert_int_equal(agent_stdin_write(&s, loop, data, 1, on_done, &d), -EBUSY);
        agent_stdin_close(&s, loop);
        assert_true(s.fd >= 0); /* not before the bytes are in */
        assert_int_equal(agent_stdin_write(&s, loop, data, 1, on_done, &d), -EBADF);
        assert_int_equal(d.calls, 0);
        unit_reader_start(&rd);
        unit_run_loop(loop);
        assert_int_equal(d.calls, 1);
        assert_int_equal(d.r, 0);
        assert_int_equal(d.len, BIG);
        assert_false(d.eof_seen_before);
        assert_int_equal(rd.len, BIG + (pty ? 1 : 0));
        assert_memory_equal(rd.got, data, BIG);
        if (pty)
                assert_int_equal(rd.got[BIG], 0x04);
        assert_int_equal(s.fd, -1);
        free(rd.got);
        agent_stdin_release(&s);
        assert_int_equal(d.calls, 1); /* released after it was done: no second call */
        close(p[0]);
        us_loop_free(loop);
}

static void test_waiting_write_then_close(void **state)
{
        (void)state;
        run_waiting_write(false);
}

static void test_terminal_eof_after_data(void **state)
{
        (void)state;
        run_waiting_write(true);
}

/* Writes one after the other, as the host sends them, each answered before
 * the next: everything arrives in order. */
static void test_writes_in_order(void **state)
{
        (void)state;
        struct us_loop *loop = NULL;
        assert_int_equal(us_loop_new(&loop, NULL), 0);
        int p[2];
        make_pipe(p);
        struct agent_stdin s;
        agent_stdin_init(&s, p[1], false);
        struct unit_reader rd = {.loop = loop, .fd = p[0], .until = -1};
        unit_reader_start(&rd);
        _cleanup_free_ uint8_t *data = pattern(4 * BIG);
        size_t sent = 0;
        const size_t chunk = 65536;
        struct done d = {.rd = &rd};
        while (sent < 4 * BIG) {
                int r = agent_stdin_write(&s, loop, data + sent, chunk, on_done, &d);
                assert_true(r >= 0);
                if (r == 0) {
                        /* Until this write is done (the reader drains
                         * meanwhile), as the host waits for its answer. */
                        int calls = d.calls;
                        d.quit = loop;
                        unit_run_loop(loop);
                        d.quit = NULL;
                        assert_int_equal(d.calls, calls + 1);
                        assert_int_equal(d.r, 0);
                        assert_int_equal(d.len, chunk);
                }
                sent += chunk;
        }
        agent_stdin_close(&s, loop);
        unit_run_loop(loop);
        assert_int_equal(rd.len, 4 * BIG);
        assert_memory_equal(rd.got, data, 4 * BIG);
        free(rd.got);
        agent_stdin_release(&s);
        close(p[0]);
        us_loop_free(loop);
}

/* The process went away with bytes waiting: the write fails, stdin closes. */
static void test_reader_gone(void **state)
{
        (void)state;
        struct us_loop *loop = NULL;
        assert_int_equal(us_loop_new(&loop, NULL), 0);
        int p[2];
        make_pipe(p);
        struct agent_stdin s;
        agent_stdin_init(&s, p[1], false);
        struct done d = {0};
        _cleanup_free_ uint8_t *data = pattern(BIG);
        assert_int_equal(agent_stdin_write(&s, loop, data, BIG, on_done, &d), 0);
        close(p[0]);
        d.quit = loop;
        unit_run_loop(loop);
        assert_int_equal(d.calls, 1);
        assert_int_equal(d.r, -EPIPE);
        assert_int_equal(s.fd, -1);
        assert_int_equal(agent_stdin_write(&s, loop, data, 1, on_done, &d), -EBADF);
        agent_stdin_release(&s);
        us_loop_free(loop);
}

/* The process is removed with a write waiting: the host's call is failed. */
static void test_release_cancels(void **state)
{
        (void)state;
        struct us_loop *loop = NULL;
        assert_int_equal(us_loop_new(&loop, NULL), 0);
        int p[2];
        make_pipe(p);
        struct agent_stdin s;
        agent_stdin_init(&s, p[1], false);
        struct done d = {0};
        _cleanup_free_ uint8_t *data = pattern(BIG);
        assert_int_equal(agent_stdin_write(&s, loop, data, BIG, on_done, &d), 0);
        agent_stdin_release(&s);
        assert_int_equal(d.calls, 1);
        assert_int_equal(d.r, -ECANCELED);
        assert_int_equal(s.fd, -1);
        agent_stdin_release(&s); /* twice is fine */
        assert_int_equal(d.calls, 1);
        close(p[0]);
        us_loop_free(loop);
}

static void test_no_stdin(void **state)
{
        (void)state;
        struct us_loop *loop = NULL;
        assert_int_equal(us_loop_new(&loop, NULL), 0);
        struct agent_stdin s;
        agent_stdin_init(&s, -1, false);
        struct done d = {0};
        assert_int_equal(agent_stdin_write(&s, loop, (const uint8_t *)"a", 1, on_done, &d), -EBADF);
        agent_stdin_close(&s, loop);
        agent_stdin_release(&s);
        assert_int_equal(d.calls, 0);
        us_loop_free(loop);
}

int main(void)
{
        signal(SIGPIPE, SIG_IGN); /* as the agent: a gone reader is EPIPE */
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_fits_at_once),
                cmocka_unit_test(test_waiting_write_then_close),
                cmocka_unit_test(test_terminal_eof_after_data),
                cmocka_unit_test(test_writes_in_order),
                cmocka_unit_test(test_reader_gone),
                cmocka_unit_test(test_release_cancels),
                cmocka_unit_test(test_no_stdin),
        };
        return unit_exit(unit_run_group_tests(tests, NULL, NULL));
}
