/* SPDX-License-Identifier: Apache-2.0 */
/* The agent's output stream buffers with real pipes, no VM: bounded
 * buffering (back-pressure), order, EOF only after the last byte. */
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "unit.h"

#include "guest-agent/agent.h"

static void test_fill_take_eof(void **state)
{
        (void)state;
        int p[2];
        assert_int_equal(pipe2(p, O_CLOEXEC | O_NONBLOCK), 0);
        struct agent_stream s;
        agent_stream_init(&s, p[0]);
        assert_false(agent_stream_ready(&s));
        assert_int_equal(write(p[1], "hello", 5), 5);
        assert_int_equal(agent_stream_fill(&s), 5);
        assert_true(agent_stream_ready(&s));
        uint8_t *d = NULL;
        size_t n = 0;
        assert_int_equal(agent_stream_take(&s, 3, &d, &n), 0);
        assert_int_equal(n, 3);
        assert_memory_equal(d, "hel", 3);
        free(d);
        close(p[1]);
        assert_int_equal(agent_stream_fill(&s), 0);
        assert_true(s.eof);
        assert_int_equal(s.fd, -1);
        assert_int_equal(agent_stream_take(&s, 100, &d, &n), 0);
        assert_int_equal(n, 2);
        assert_memory_equal(d, "lo", 2);
        free(d);
        assert_true(agent_stream_ready(&s)); /* EOF can be reported */
        agent_stream_release(&s);
}

static void test_bounded(void **state)
{
        (void)state;
        int p[2];
        assert_int_equal(pipe2(p, O_CLOEXEC | O_NONBLOCK), 0);
        struct agent_stream s;
        agent_stream_init(&s, p[0]);
        s.max = 1000;
        char buf[4096];
        memset(buf, 'x', sizeof(buf));
        assert_int_equal(write(p[1], buf, sizeof(buf)), (ssize_t)sizeof(buf));
        assert_int_equal(agent_stream_fill(&s), 1000);
        assert_int_equal(s.len, 1000);
        assert_int_equal(agent_stream_fill(&s), 0); /* full: reads nothing more */
        uint8_t *d = NULL;
        size_t n = 0;
        size_t total = 0;
        while (total < sizeof(buf)) {
                assert_int_equal(agent_stream_take(&s, 600, &d, &n), 0);
                free(d);
                total += n;
                assert_true(agent_stream_fill(&s) >= 0);
                assert_true(s.len <= 1000);
        }
        assert_int_equal(total, sizeof(buf));
        close(p[1]);
        agent_stream_release(&s);
}

static void test_no_fd(void **state)
{
        (void)state;
        struct agent_stream s;
        agent_stream_init(&s, -1);
        assert_true(s.eof);
        assert_true(agent_stream_ready(&s));
        assert_int_equal(agent_stream_fill(&s), 0);
        agent_stream_release(&s);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_fill_take_eof),
                cmocka_unit_test(test_bounded),
                cmocka_unit_test(test_no_fd),
        };
        return unit_exit(unit_run_group_tests(tests, NULL, NULL));
}
