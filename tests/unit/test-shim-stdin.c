/* SPDX-License-Identifier: Apache-2.0 */
/* A process's stdin through the shim (shim/task-io.c), with a real FIFO,
 * pipes and the loop, no container: CloseIO gives the process EOF only
 * after every byte written to the FIFO before it, whatever still sits in
 * the FIFO or the pump, whether CloseIO comes before the process exists or
 * while the client's writer is still open; a terminal gets ^D after the
 * data; an exec's FIFO opens at its Start. Nothing waits in the loop for a
 * slow reader. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/stat.h>
#include <unistd.h>

#include "unit.h"
#include "unit-loop.h"

#include "base/cleanup.h"
#include "base/loop.h"
#include "shim/task-io.h"

struct fixture {
        struct us_loop *loop;
        char dir[32];
        char fifo[64];
};

static int setup(void **state)
{
        struct fixture *f = calloc(1, sizeof(*f));
        assert_non_null(f);
        snprintf(f->dir, sizeof(f->dir), "/tmp/us-taskio.XXXXXX");
        assert_non_null(mkdtemp(f->dir));
        snprintf(f->fifo, sizeof(f->fifo), "%s/stdin", f->dir);
        assert_int_equal(mkfifo(f->fifo, 0600), 0);
        assert_int_equal(us_loop_new(&f->loop, NULL), 0);
        *state = f;
        return 0;
}

static int teardown(void **state)
{
        struct fixture *f = *state;
        us_loop_free(f->loop);
        unlink(f->fifo);
        rmdir(f->dir);
        free(f);
        return 0;
}

/* containerd's side: writes data into the FIFO from the loop, then closes
 * its end and, as a client does once its input ended, sends CloseIO. */
struct writer {
        struct us_loop *loop;
        int fd;
        struct us_loop_source *src;
        const uint8_t *data;
        size_t len, off;
        struct shim_stdio *stdio; /* CloseIO once written (NULL: not) */
        bool keep_open;           /* CloseIO, but the FIFO stays open */
        bool quit;                /* quit the loop once written */
        bool done;
};

static void writer_finish(struct writer *w)
{
        w->src = us_loop_source_remove(w->src);
        w->done = true;
        if (!w->keep_open)
                w->fd = us_close(w->fd);
        if (w->stdio)
                shim_stdio_close_stdin(w->stdio);
        if (w->quit)
                us_loop_quit(w->loop, 0);
}

static void writer_ready(struct us_loop_source *src, int fd, uint32_t events, void *userdata)
{
        (void)src;
        (void)events;
        struct writer *w = userdata;
        while (w->off < w->len) {
                ssize_t n = write(fd, w->data + w->off, w->len - w->off);
                if (n < 0 && errno == EAGAIN)
                        return;
                assert_true(n > 0);
                w->off += (size_t)n;
        }
        writer_finish(w);
}

static void writer_start(struct writer *w, const char *fifo)
{
        /* The shim holds a reader: this open does not block. */
        w->fd = open(fifo, O_WRONLY | O_NONBLOCK | O_CLOEXEC);
        assert_true(w->fd >= 0);
        if (w->len == 0) {
                writer_finish(w);
                return;
        }
        assert_int_equal(us_loop_add_fd(w->loop, w->fd, EPOLLOUT, writer_ready, w, &w->src, NULL),
                         0);
}

static uint8_t *pattern(size_t n)
{
        uint8_t *b = malloc(n ? n : 1);
        assert_non_null(b);
        for (size_t i = 0; i < n; i++)
                b[i] = (uint8_t)(i * 7 + i / 251);
        return b;
}

/* Opens the stdio; *ret_child is the process's stdin (a dup, as the
 * process holds its own copy once the stdio is attached). */
static struct shim_stdio *open_stdio(struct fixture *f, bool terminal, int *ret_child)
{
        struct shim_stdio *s = NULL;
        struct us_stdio fds;
        struct us_error *err = NULL;
        assert_int_equal(
                shim_stdio_open(f->loop, f->fifo, NULL, NULL, terminal, false, &s, &fds, &err), 0);
        if (ret_child) {
                assert_true(fds.in >= 0);
                *ret_child = fcntl(fds.in, F_DUPFD_CLOEXEC, 3);
                assert_true(*ret_child >= 0);
        }
        return s;
}

static void attach(struct shim_stdio *s, int pty)
{
        struct us_error *err = NULL;
        assert_int_equal(shim_stdio_attach(s, pty, &err), 0);
}

/* The client wrote everything, closed its end and sent CloseIO while the
 * process had read nothing yet: the bytes sit in the FIFO, the pump and
 * the pipe (less than they hold together, so the client could finish). */
static void test_close_with_bytes_in_flight(void **state)
{
        struct fixture *f = *state;
        const size_t n = 100000;
        _cleanup_free_ uint8_t *data = pattern(n);
        int child = -1;
        struct shim_stdio *s = open_stdio(f, false, &child);
        attach(s, -1);
        struct writer w = {.loop = f->loop, .data = data, .len = n, .stdio = s, .quit = true};
        writer_start(&w, f->fifo);
        unit_run_loop(f->loop);
        assert_true(w.done);
        struct unit_reader rd = {.loop = f->loop, .fd = child, .until = -1};
        unit_reader_start(&rd);
        unit_run_loop(f->loop);
        assert_true(rd.eof);
        assert_int_equal(rd.len, n);
        assert_memory_equal(rd.got, data, n);
        free(rd.got);
        close(child);
        shim_stdio_free(s);
}

/* More than the way holds, the process reading all along. */
static void test_close_after_a_stream(void **state)
{
        struct fixture *f = *state;
        const size_t n = 4u << 20;
        _cleanup_free_ uint8_t *data = pattern(n);
        int child = -1;
        struct shim_stdio *s = open_stdio(f, false, &child);
        attach(s, -1);
        struct writer w = {.loop = f->loop, .data = data, .len = n, .stdio = s};
        struct unit_reader rd = {.loop = f->loop, .fd = child, .until = -1};
        unit_reader_start(&rd);
        writer_start(&w, f->fifo);
        unit_run_loop(f->loop);
        assert_true(w.done);
        assert_true(rd.eof);
        assert_int_equal(rd.len, n);
        assert_memory_equal(rd.got, data, n);
        free(rd.got);
        close(child);
        shim_stdio_free(s);
}

/* CloseIO before the process exists (a short input, or none, that the
 * client finished while the process was being started): what the FIFO
 * holds still reaches it, then EOF. */
static void run_close_before_attach(struct fixture *f, size_t n)
{
        _cleanup_free_ uint8_t *data = pattern(n);
        int child = -1;
        struct shim_stdio *s = open_stdio(f, false, &child);
        struct writer w = {.loop = f->loop, .data = data, .len = n, .stdio = s, .quit = true};
        writer_start(&w, f->fifo);
        if (!w.done)
                unit_run_loop(f->loop);
        attach(s, -1);
        struct unit_reader rd = {.loop = f->loop, .fd = child, .until = -1};
        unit_reader_start(&rd);
        unit_run_loop(f->loop);
        assert_true(rd.eof);
        assert_int_equal(rd.len, n);
        if (n)
                assert_memory_equal(rd.got, data, n);
        free(rd.got);
        close(child);
        shim_stdio_free(s);
}

static void test_close_before_attach(void **state)
{
        run_close_before_attach(*state, 3);
        run_close_before_attach(*state, 60000);
        run_close_before_attach(*state, 0);
}

/* CloseIO while the client still has the FIFO open (ctr sends it as soon
 * as its own input ended, before it closed its end): EOF comes only once
 * that end is closed, after what was written through it. */
static void test_close_while_writer_open(void **state)
{
        struct fixture *f = *state;
        _cleanup_free_ uint8_t *data = pattern(5000);
        int child = -1;
        struct shim_stdio *s = open_stdio(f, false, &child);
        attach(s, -1);
        struct writer w = {.loop = f->loop,
                           .data = data,
                           .len = 3000,
                           .stdio = s,
                           .keep_open = true,
                           .quit = true};
        writer_start(&w, f->fifo);
        if (!w.done)
                unit_run_loop(f->loop);
        /* More through the same end, after CloseIO, then it closes. */
        assert_int_equal(write(w.fd, data + 3000, 2000), 2000);
        struct unit_reader rd = {.loop = f->loop, .fd = child, .until = -1};
        unit_reader_start(&rd);
        w.fd = us_close(w.fd);
        unit_run_loop(f->loop);
        assert_true(rd.eof);
        assert_int_equal(rd.len, 5000);
        assert_memory_equal(rd.got, data, 5000);
        free(rd.got);
        close(child);
        shim_stdio_free(s);
}

/* Before CloseIO, containerd's writer may come and go: no EOF meanwhile. */
static void test_no_eof_without_close(void **state)
{
        struct fixture *f = *state;
        int child = -1;
        struct shim_stdio *s = open_stdio(f, false, &child);
        attach(s, -1);
        struct writer w = {.loop = f->loop, .data = (const uint8_t *)"ab", .len = 2, .quit = true};
        writer_start(&w, f->fifo);
        if (!w.done)
                unit_run_loop(f->loop);
        /* The writer closed without CloseIO: the process gets the bytes
         * and keeps waiting; then a later writer and CloseIO end it. */
        struct unit_reader rd = {.loop = f->loop, .fd = child, .until = 'b'};
        unit_reader_start(&rd);
        unit_run_loop(f->loop);
        assert_false(rd.eof);
        assert_int_equal(rd.len, 2);
        rd.until = -1;
        unit_reader_start(&rd);
        struct writer w2 = {.loop = f->loop, .data = (const uint8_t *)"cd", .len = 2, .stdio = s};
        writer_start(&w2, f->fifo);
        unit_run_loop(f->loop);
        assert_true(rd.eof);
        assert_int_equal(rd.len, 4);
        assert_memory_equal(rd.got, "abcd", 4);
        free(rd.got);
        close(child);
        shim_stdio_free(s);
}

/* A terminal has no half-close: its EOF (^D) follows the data. A pipe
 * stands in for the pty master, its other end for the terminal's input. */
static void test_terminal_eot_after_data(void **state)
{
        struct fixture *f = *state;
        const size_t n = 100000;
        _cleanup_free_ uint8_t *data = pattern(n);
        for (size_t i = 0; i < n; i++)
                if (data[i] == 0x04)
                        data[i] = 0x05; /* the reader stops at ^D */
        struct shim_stdio *s = open_stdio(f, true, NULL);
        int p[2];
        assert_int_equal(pipe2(p, O_CLOEXEC), 0);
        attach(s, p[1]); /* the stdio owns it now */
        struct writer w = {.loop = f->loop, .data = data, .len = n, .stdio = s, .quit = true};
        writer_start(&w, f->fifo);
        unit_run_loop(f->loop);
        assert_true(w.done);
        struct unit_reader rd = {.loop = f->loop, .fd = p[0], .until = 0x04};
        unit_reader_start(&rd);
        unit_run_loop(f->loop);
        assert_int_equal(rd.len, n + 1);
        assert_memory_equal(rd.got, data, n);
        assert_int_equal(rd.got[n], 0x04);
        free(rd.got);
        close(p[0]);
        shim_stdio_free(s);
}

/* An exec's stdin FIFO opens only at its Start: until then no client can
 * open it for writing (nor finish its input, nor send CloseIO for an EOF
 * ahead of knowing the process). A CloseIO that comes first anyway (the
 * CRI's, for empty input) still ends stdin once the FIFO is opened. */
static void run_stdin_at_start(struct fixture *f, bool close_first)
{
        struct shim_stdio *s = NULL;
        struct us_stdio fds;
        struct us_error *err = NULL;
        assert_int_equal(shim_stdio_open(f->loop, f->fifo, NULL, NULL, false, true, &s, &fds, &err),
                         0);
        assert_int_equal(fds.in, -1);
        assert_int_equal(open(f->fifo, O_WRONLY | O_NONBLOCK | O_CLOEXEC), -1);
        assert_int_equal(errno, ENXIO); /* nobody reads it yet */
        if (close_first)
                shim_stdio_close_stdin(s);
        assert_int_equal(shim_stdio_open_stdin(s, &fds, &err), 0);
        assert_true(fds.in >= 0);
        int child = fcntl(fds.in, F_DUPFD_CLOEXEC, 3);
        assert_true(child >= 0);
        attach(s, -1);
        /* After a CloseIO first, nobody ever opens the FIFO for writing. */
        struct writer w = {.loop = f->loop, .data = (const uint8_t *)"abc", .len = 3, .stdio = s};
        if (!close_first)
                writer_start(&w, f->fifo);
        struct unit_reader rd = {.loop = f->loop, .fd = child, .until = -1};
        unit_reader_start(&rd);
        unit_run_loop(f->loop);
        assert_true(rd.eof);
        assert_int_equal(rd.len, close_first ? 0 : 3);
        if (!close_first)
                assert_memory_equal(rd.got, "abc", 3);
        free(rd.got);
        close(child);
        shim_stdio_free(s);
}

static void test_stdin_at_start(void **state)
{
        run_stdin_at_start(*state, false);
        run_stdin_at_start(*state, true);
}

/* The process went away: the pump stops instead of waiting forever, and
 * the client's writes fail rather than block. */
static void test_reader_gone(void **state)
{
        struct fixture *f = *state;
        const size_t n = 1u << 20;
        _cleanup_free_ uint8_t *data = pattern(n);
        int child = -1;
        struct shim_stdio *s = open_stdio(f, false, &child);
        attach(s, -1);
        close(child);
        struct writer w = {.loop = f->loop, .data = data, .len = n, .quit = true};
        w.fd = open(f->fifo, O_WRONLY | O_NONBLOCK | O_CLOEXEC);
        assert_true(w.fd >= 0);
        /* Writes until the shim's pump, which found the process gone,
         * closed its reader: the FIFO has none left, and a write fails
         * with EPIPE. */
        size_t off = 0;
        bool epipe = false;
        struct unit_loop_guard g = {.loop = f->loop};
        assert_int_equal(us_loop_add_timer(f->loop, (uint64_t)unit_wait_ms(10000), unit_loop_hang,
                                           &g, &g.src, NULL),
                         0);
        while (!epipe && g.src) {
                ssize_t k = write(w.fd, data + off % n, 65536);
                if (k > 0) {
                        off += (size_t)k;
                } else if (k < 0 && errno == EPIPE) {
                        epipe = true;
                } else {
                        assert_int_equal(errno, EAGAIN);
                        /* One round of the loop: the pump moves on. */
                        struct unit_loop_guard tick = {.loop = f->loop};
                        assert_int_equal(us_loop_add_timer(f->loop, 1, unit_loop_hang, &tick,
                                                           &tick.src, NULL),
                                         0);
                        (void)us_loop_run(f->loop);
                }
        }
        us_loop_source_remove(g.src);
        assert_true(epipe);
        close(w.fd);
        shim_stdio_free(s);
}

int main(void)
{
        signal(SIGPIPE, SIG_IGN); /* as the shim: a gone reader is EPIPE */
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_close_with_bytes_in_flight, setup, teardown),
                cmocka_unit_test_setup_teardown(test_close_after_a_stream, setup, teardown),
                cmocka_unit_test_setup_teardown(test_close_before_attach, setup, teardown),
                cmocka_unit_test_setup_teardown(test_close_while_writer_open, setup, teardown),
                cmocka_unit_test_setup_teardown(test_no_eof_without_close, setup, teardown),
                cmocka_unit_test_setup_teardown(test_terminal_eot_after_data, setup, teardown),
                cmocka_unit_test_setup_teardown(test_stdin_at_start, setup, teardown),
                cmocka_unit_test_setup_teardown(test_reader_gone, setup, teardown),
        };
        return unit_exit(unit_run_group_tests(tests, NULL, NULL));
}
