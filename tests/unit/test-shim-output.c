/* SPDX-License-Identifier: Apache-2.0 */
/* A process's output FIFOs, as containerd reads them: a reader that opens
 * its FIFO late, after the process is gone, still gets every byte and then
 * EOF, instead of waiting forever in its open. containerd opens its readers
 * on goroutines of their own (containerd/fifo, O_NONBLOCK), which a loaded
 * machine may run after a short exec has come and gone; its CRI ExecSync
 * then waits for that EOF without a deadline. The readers here are
 * processes doing the same blocking open(O_RDONLY). */
#include <errno.h>
#include <fcntl.h>
#include <linux/close_range.h>
#include <pty.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/epoll.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "unit.h"

#include "base/cleanup.h"
#include "base/loop.h"
#include "shim/task-io.h"

struct reader {
        pid_t pid;
        int fd; /* what the reader read, then EOF when it saw EOF */
        struct us_loop_source *watch;
        char buf[256];
        size_t len;
        bool done;
};

struct fixture {
        char dir[64], out[96], err[96];
        struct us_loop *loop;
        struct reader readers[2];
        size_t n_readers;
        struct us_loop_source *guard;
        bool timed_out;
        int idle_fd; /* always readable: run_until checks its condition each turn */
        bool (*until)(struct fixture *f);
};

static int setup(void **state)
{
        struct fixture *f = calloc(1, sizeof(*f));
        assert_non_null(f);
        snprintf(f->dir, sizeof(f->dir), "/tmp/test-task-io-XXXXXX");
        assert_non_null(mkdtemp(f->dir));
        snprintf(f->out, sizeof(f->out), "%s/stdout", f->dir);
        snprintf(f->err, sizeof(f->err), "%s/stderr", f->dir);
        assert_int_equal(mkfifo(f->out, 0600), 0);
        assert_int_equal(mkfifo(f->err, 0600), 0);
        assert_int_equal(us_loop_new(&f->loop, NULL), 0);
        f->idle_fd = -1;
        *state = f;
        return 0;
}

static int teardown(void **state)
{
        struct fixture *f = *state;
        for (size_t i = 0; i < f->n_readers; i++) {
                struct reader *r = &f->readers[i];
                us_loop_source_remove(r->watch);
                us_close(r->fd);
                if (r->pid > 0) {
                        (void)kill(r->pid, SIGKILL);
                        (void)waitpid(r->pid, NULL, 0);
                }
        }
        us_close(f->idle_fd);
        us_loop_free(f->loop);
        unlink(f->out);
        unlink(f->err);
        rmdir(f->dir);
        free(f);
        return 0;
}

/* In a child: keeps only the fds listed (moved to 3, 4, ...). */
static void keep_only(const int *fds, int n)
{
        for (int i = 0; i < n; i++)
                if (dup2(fds[i], 3 + i) < 0)
                        _exit(120);
        (void)syscall(SYS_close_range, (unsigned)(3 + n), ~0U, 0);
}

/* The container process: writes out and err on its stdout and stderr, as
 * the shim set them up, and exits. Only its stdio crosses, as with the
 * engine (close_range before execve). */
static void run_process(const struct us_stdio *fds, const char *out, const char *err)
{
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
                if ((fds->out >= 0 && dup2(fds->out, 1) < 0) ||
                    (fds->err >= 0 && dup2(fds->err, 2) < 0))
                        _exit(121);
                keep_only(NULL, 0);
                if ((out && write(1, out, strlen(out)) < 0) ||
                    (err && write(2, err, strlen(err)) < 0))
                        _exit(122);
                _exit(3);
        }
        int status;
        assert_int_equal(waitpid(pid, &status, 0), pid);
        assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 3);
}

static void reader_readable(struct us_loop_source *src, int fd, uint32_t events, void *userdata)
{
        (void)src;
        (void)events;
        struct reader *r = userdata;
        ssize_t n = read(fd, r->buf + r->len, sizeof(r->buf) - 1 - r->len);
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
                return;
        if (n > 0) {
                r->len += (size_t)n;
                return;
        }
        r->done = true;
        r->watch = us_loop_source_remove(r->watch);
}

/* containerd's reader: a blocking open(O_RDONLY) of path, then read to
 * EOF; what it read comes back through a pipe. */
static void start_reader(struct fixture *f, const char *path)
{
        struct reader *r = &f->readers[f->n_readers++];
        int p[2];
        assert_int_equal(pipe2(p, O_CLOEXEC), 0);
        r->pid = fork();
        assert_true(r->pid >= 0);
        if (r->pid == 0) {
                keep_only(&p[1], 1);
                int fd = open(path, O_RDONLY | O_CLOEXEC);
                if (fd < 0)
                        _exit(123);
                char buf[256];
                ssize_t n;
                while ((n = read(fd, buf, sizeof(buf))) > 0)
                        if (write(3, buf, (size_t)n) != n)
                                _exit(124);
                _exit(n == 0 ? 0 : 125);
        }
        us_close(p[1]);
        r->fd = p[0];
        assert_int_equal(fcntl(r->fd, F_SETFL, O_NONBLOCK), 0);
        assert_int_equal(
                us_loop_add_fd(f->loop, r->fd, EPOLLIN, reader_readable, r, &r->watch, NULL), 0);
}

static void guard_fired(struct us_loop_source *src, void *userdata)
{
        (void)src;
        struct fixture *f = userdata;
        f->guard = NULL;
        f->timed_out = true;
        us_loop_quit(f->loop, 0);
}

static void idle_turn(struct us_loop_source *src, int fd, uint32_t events, void *userdata)
{
        (void)src;
        (void)fd;
        (void)events;
        struct fixture *f = userdata;
        if (f->until(f))
                us_loop_quit(f->loop, 0);
}

/* Runs the loop until(f) holds, checked after every turn; fails on a hang. */
static void run_until(struct fixture *f, bool (*until)(struct fixture *f))
{
        struct us_loop_source *idle = NULL;
        if (f->idle_fd < 0) {
                f->idle_fd = eventfd(1, EFD_CLOEXEC);
                assert_true(f->idle_fd >= 0);
        }
        f->until = until;
        f->timed_out = false;
        if (until(f))
                return;
        assert_int_equal(us_loop_add_fd(f->loop, f->idle_fd, EPOLLIN, idle_turn, f, &idle, NULL),
                         0);
        assert_int_equal(us_loop_add_timer(f->loop, (uint64_t)unit_wait_ms(10000), guard_fired, f,
                                           &f->guard, NULL),
                         0);
        us_loop_run(f->loop);
        us_loop_source_remove(idle);
        f->guard = us_loop_source_remove(f->guard);
        assert_false(f->timed_out);
}

static bool readers_done(struct fixture *f)
{
        for (size_t i = 0; i < f->n_readers; i++)
                if (!f->readers[i].done)
                        return false;
        return true;
}

/* True when path has no reader: a writer's non-blocking open fails. */
static bool no_reader(const char *path)
{
        int fd = open(path, O_WRONLY | O_NONBLOCK | O_CLOEXEC);
        if (fd >= 0) {
                us_close(fd);
                return false;
        }
        return errno == ENXIO;
}

/* The shim is done with the process's output: whatever it keeps of the
 * FIFOs, no reader of its own is left (so the readers started next open
 * them after the shim stopped moving bytes: the latest they can be). */
static bool shim_reads_nothing(struct fixture *f)
{
        return no_reader(f->out) && no_reader(f->err);
}

static void check_reader(struct fixture *f, size_t i, const char *want)
{
        struct reader *r = &f->readers[i];
        r->buf[r->len] = '\0';
        assert_string_equal(r->buf, want);
        int status;
        assert_int_equal(waitpid(r->pid, &status, 0), r->pid);
        r->pid = 0;
        assert_true(WIFEXITED(status));
        assert_int_equal(WEXITSTATUS(status), 0);
}

/* Exec and start with nobody reading yet; the process writes and exits;
 * the readers open their FIFOs only then. */
static void late_readers(struct fixture *f, const char *out, const char *err)
{
        struct shim_stdio *s = NULL;
        struct us_stdio fds;
        assert_int_equal(
                shim_stdio_open(f->loop, NULL, f->out, f->err, false, false, &s, &fds, NULL), 0);
        run_process(&fds, out, err);
        assert_int_equal(shim_stdio_attach(s, -1, NULL), 0);
        shim_stdio_drain(s); /* as record_exit does */
        run_until(f, shim_reads_nothing);

        start_reader(f, f->out);
        start_reader(f, f->err);
        run_until(f, readers_done);
        check_reader(f, 0, out ? out : "");
        check_reader(f, 1, err ? err : "");
        shim_stdio_free(s);
}

/* The exec of the soak's hang: `sh -c 'exit 3'`, no output at all. */
static void late_readers_of_a_silent_exec(void **state)
{
        late_readers(*state, NULL, NULL);
}

/* Its output is kept for them. */
static void late_readers_get_the_output(void **state)
{
        late_readers(*state, "out-1\n", "err-1\n");
}

/* The usual order, readers first: the process's output reaches them. */
static void readers_first(void **state)
{
        struct fixture *f = *state;
        start_reader(f, f->out);
        start_reader(f, f->err);
        struct shim_stdio *s = NULL;
        struct us_stdio fds;
        assert_int_equal(
                shim_stdio_open(f->loop, NULL, f->out, f->err, false, false, &s, &fds, NULL), 0);
        run_process(&fds, "out-2\n", "err-2\n");
        assert_int_equal(shim_stdio_attach(s, -1, NULL), 0);
        shim_stdio_drain(s);
        run_until(f, readers_done);
        check_reader(f, 0, "out-2\n");
        check_reader(f, 1, "err-2\n");
        shim_stdio_free(s);
}

/* With a terminal the shim pumps the pty into the FIFO: a late reader
 * still gets what the process wrote. */
static void late_reader_of_a_terminal(void **state)
{
        struct fixture *f = *state;
        struct shim_stdio *s = NULL;
        struct us_stdio fds;
        assert_int_equal(shim_stdio_open(f->loop, NULL, f->out, NULL, true, false, &s, &fds, NULL),
                         0);
        int master, slave;
        assert_int_equal(openpty(&master, &slave, NULL, NULL, NULL), 0);
        assert_int_equal(fcntl(master, F_SETFD, FD_CLOEXEC), 0);
        struct us_stdio tty = {.in = slave, .out = slave, .err = slave};
        run_process(&tty, "tty-3\n", NULL);
        us_close(slave);
        assert_int_equal(shim_stdio_attach(s, master, NULL), 0);
        shim_stdio_drain(s);
        run_until(f, shim_reads_nothing);

        start_reader(f, f->out);
        run_until(f, readers_done);
        check_reader(f, 0, "tty-3\r\n");
        shim_stdio_free(s);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(late_readers_of_a_silent_exec, setup, teardown),
                cmocka_unit_test_setup_teardown(late_readers_get_the_output, setup, teardown),
                cmocka_unit_test_setup_teardown(readers_first, setup, teardown),
                cmocka_unit_test_setup_teardown(late_reader_of_a_terminal, setup, teardown),
        };
        return unit_exit(unit_run_group_tests(tests, NULL, NULL));
}
