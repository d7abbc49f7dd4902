/* SPDX-License-Identifier: Apache-2.0 */
/* The capped log behind the VM's console: a fake writer feeds a pipe while
 * the loop drains it; the two files never exceed the cap and keep the newest
 * bytes. */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "unit.h"

#include "base/cleanup.h"
#include "vmm/logpipe.h"
#include "base/loop.h"

struct fixture {
        char dir[64];
        int dir_fd;
        struct us_loop *loop;
};

static int setup(void **state)
{
        struct fixture *f = calloc(1, sizeof(*f));
        assert_non_null(f);
        snprintf(f->dir, sizeof(f->dir), "/tmp/test-vmm-logpipe-XXXXXX");
        assert_non_null(mkdtemp(f->dir));
        f->dir_fd = open(f->dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
        assert_true(f->dir_fd >= 0);
        assert_int_equal(us_loop_new(&f->loop, NULL), 0);
        *state = f;
        return 0;
}

static int teardown(void **state)
{
        struct fixture *f = *state;
        char cmd[128];
        us_loop_free(f->loop);
        close(f->dir_fd);
        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", f->dir);
        assert_int_equal(system(cmd), 0);
        free(f);
        return 0;
}

/* Size of dir/name, -1 if absent. */
static off_t size_of(const struct fixture *f, const char *name)
{
        struct stat st;
        return fstatat(f->dir_fd, name, &st, AT_SYMLINK_NOFOLLOW) == 0 ? st.st_size : -1;
}

/* <name>.1 followed by <name>. */
static uint8_t *read_both(const struct fixture *f, const char *name, size_t *ret_len)
{
        char old[80];
        snprintf(old, sizeof(old), "%s.1", name);
        const char *names[] = {old, name};
        size_t len = 0;
        uint8_t *buf = NULL;
        for (size_t i = 0; i < 2; i++) {
                int fd = openat(f->dir_fd, names[i], O_RDONLY | O_CLOEXEC);
                if (fd < 0)
                        continue;
                off_t sz = lseek(fd, 0, SEEK_END);
                buf = realloc(buf, len + (size_t)sz + 1);
                assert_non_null(buf);
                assert_int_equal(pread(fd, buf + len, (size_t)sz, 0), sz);
                len += (size_t)sz;
                close(fd);
        }
        *ret_len = len;
        return buf;
}

/* Byte i of the fake guest's output: position-dependent, so a reordering,
 * a gap or a duplicate shows. */
static uint8_t pattern(uint64_t i)
{
        return (uint8_t)((i * 7 + i / 251) & 0xff);
}

struct writer {
        struct fixture *f;
        struct vmm_logpipe *lp;
        int wfd;
        size_t cap;
        uint64_t total, sent;
        size_t chunk;
        int checks;
        int64_t deadline; /* only tells a hang (nothing drained) from a slow machine */
};

/* The fake writer: a chunk per loop round (a timer), and after each round
 * the invariant on disk. */
static void write_some(struct us_loop_source *src, void *userdata)
{
        (void)src;
        struct writer *w = userdata;
        uint8_t buf[8192];
        size_t n = w->chunk < sizeof(buf) ? w->chunk : sizeof(buf);

        off_t cur = size_of(w->f, "console.log"), old = size_of(w->f, "console.log.1");
        assert_true(cur >= 0);
        assert_true((uint64_t)cur <= w->cap / 2);
        assert_true(old <= (off_t)(w->cap / 2));
        assert_true((uint64_t)cur + (uint64_t)(old > 0 ? old : 0) <= w->cap);
        w->checks++;

        if (us_monotonic_ms() > w->deadline)
                fail_msg("the pipe was not drained: %ju of %ju bytes sent", (uintmax_t)w->sent,
                         (uintmax_t)w->total);
        if (w->sent >= w->total) {
                /* Writer gone: the loop sees EOF and stops watching. */
                w->wfd = us_close(w->wfd);
                us_loop_quit(w->f->loop, 0);
                return;
        }
        if (n > w->total - w->sent)
                n = (size_t)(w->total - w->sent);
        for (size_t i = 0; i < n; i++)
                buf[i] = pattern(w->sent + i);
        /* Full pipe (the loop reads in batches): try again next round, as
         * QEMU does. */
        ssize_t k = write(w->wfd, buf, n);
        if (k < 0)
                assert_int_equal(errno, EAGAIN);
        else
                w->sent += (uint64_t)k;
        assert_int_equal(us_loop_add_timer(w->f->loop, 1, write_some, w, NULL, NULL), 0);
}

static void feed_and_check(struct fixture *f, size_t cap, uint64_t total, size_t chunk)
{
        struct writer w = {.f = f,
                           .cap = cap,
                           .total = total,
                           .chunk = chunk,
                           .wfd = -1,
                           .deadline = us_monotonic_ms() + unit_wait_ms(30000)};
        struct us_error *err = NULL;

        if (vmm_logpipe_new(f->loop, f->dir_fd, "console.log", cap, &w.wfd, &w.lp, &err) < 0)
                fail_msg("new: %s", us_error_text(err));
        assert_true(w.wfd > 2);
        assert_true(fcntl(w.wfd, F_GETFL) & O_NONBLOCK);
        assert_true(fcntl(w.wfd, F_GETFD) & FD_CLOEXEC);
        assert_int_equal(us_loop_add_timer(f->loop, 0, write_some, &w, NULL, NULL), 0);
        assert_int_equal(us_loop_run(f->loop), 0);
        /* What the writer left before it closed is drained by the EOF. */
        assert_true(vmm_logpipe_drain(w.lp));
        assert_true(vmm_logpipe_eof(w.lp));
        assert_true(w.checks > 1);

        off_t cur = size_of(f, "console.log"), old = size_of(f, "console.log.1");
        assert_true((uint64_t)cur <= cap / 2);
        assert_true(old <= (off_t)(cap / 2));
        assert_int_equal(vmm_logpipe_written(w.lp), total);
        assert_int_equal(vmm_logpipe_dropped(w.lp), 0);

        /* The files hold the newest bytes, in order, without gaps: at least
         * cap/2 of them (all when fewer were written). */
        size_t len = 0;
        _cleanup_free_ uint8_t *got = read_both(f, "console.log", &len);
        uint64_t want = total < cap / 2 ? total : cap / 2;
        assert_true(len >= want);
        assert_true(len <= cap);
        for (size_t i = 0; i < len; i++)
                if (got[i] != pattern(total - len + i))
                        fail_msg("byte %zu of %zu is not byte %ju of the stream", i, len,
                                 (uintmax_t)(total - len + i));
        if (total > cap / 2)
                assert_true(vmm_logpipe_rotations(w.lp) > 0);
        else
                assert_int_equal(old, -1);

        /* The tail API sees the same newest bytes across both files. */
        char tail[3000];
        size_t t = vmm_logpipe_tail(w.lp, tail, sizeof(tail));
        assert_int_equal(t, len < sizeof(tail) - 1 ? len : sizeof(tail) - 1);
        assert_memory_equal(tail, got + len - t, t);
        assert_int_equal(tail[t], '\0');

        vmm_logpipe_free(w.lp);
}

static void small_output_no_rotation(void **state)
{
        feed_and_check(*state, 8192, 1000, 100);
}

static void exactly_half(void **state)
{
        feed_and_check(*state, 8192, 4096, 512);
}

static void flood_keeps_newest_under_cap(void **state)
{
        /* 1 MiB through a 4 KiB cap, in odd-sized chunks that straddle the
         * rotation point. */
        feed_and_check(*state, 4096, 1u << 20, 1000);
}

static void large_chunks(void **state)
{
        /* Chunks larger than the whole cap: one read spans several rotations. */
        feed_and_check(*state, 5000, 200000, 8192);
}

/* No loop: the caller drains (vmm_vm_start's failure path does). A full
 * pipe makes the writer get EAGAIN, never block; the drain then reads it all. */
static void full_pipe_never_blocks_writer(void **state)
{
        struct fixture *f = *state;
        struct vmm_logpipe *lp = NULL;
        int wfd = -1;
        assert_int_equal(vmm_logpipe_new(NULL, f->dir_fd, "qemu.log", 16384, &wfd, &lp, NULL), 0);
        uint8_t buf[4096];
        uint64_t sent = 0;
        for (;;) {
                for (size_t i = 0; i < sizeof(buf); i++)
                        buf[i] = pattern(sent + i);
                ssize_t n = write(wfd, buf, sizeof(buf));
                if (n < 0) {
                        assert_int_equal(errno, EAGAIN);
                        break;
                }
                sent += (uint64_t)n;
        }
        assert_true(sent >= 4096);
        assert_false(vmm_logpipe_drain(lp)); /* writer still open: no EOF yet */
        assert_int_equal(vmm_logpipe_written(lp), sent);
        assert_true(size_of(f, "qemu.log") <= 8192);
        assert_true(size_of(f, "qemu.log.1") <= 8192);
        close(wfd);
        assert_true(vmm_logpipe_drain(lp));
        vmm_logpipe_free(lp);
}

/* console.log is opened with O_NOFOLLOW relative to the directory: a symlink
 * planted there is not followed to its target. A stale .1 from an earlier
 * run is removed. */
static void no_symlink_follow_and_stale_old_removed(void **state)
{
        struct fixture *f = *state;
        char target[128];
        snprintf(target, sizeof(target), "%s/target", f->dir);
        assert_int_equal(symlinkat(target, f->dir_fd, "console.log"), 0);
        struct vmm_logpipe *lp = NULL;
        struct us_error *err = NULL;
        int wfd = -1;
        assert_int_equal(vmm_logpipe_new(f->loop, f->dir_fd, "console.log", 8192, &wfd, &lp, &err),
                         -ELOOP);
        assert_null(lp);
        assert_int_equal(wfd, -1);
        err = us_error_free(err);
        assert_int_equal(size_of(f, "target"), -1);
        assert_int_equal(unlinkat(f->dir_fd, "console.log", 0), 0);

        int old = openat(f->dir_fd, "console.log.1", O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
        assert_true(old >= 0);
        assert_int_equal(write(old, "stale", 5), 5);
        close(old);
        assert_int_equal(vmm_logpipe_new(f->loop, f->dir_fd, "console.log", 8192, &wfd, &lp, &err),
                         0);
        assert_int_equal(size_of(f, "console.log.1"), -1);
        struct stat st;
        assert_int_equal(fstatat(f->dir_fd, "console.log", &st, 0), 0);
        assert_int_equal(st.st_mode & 0777, 0600);
        close(wfd);
        vmm_logpipe_free(lp);
}

static void rejects_bad_arguments(void **state)
{
        struct fixture *f = *state;
        struct vmm_logpipe *lp = NULL;
        int wfd = -1;
        const char *bad[] = {"", "a/b", "..", ".", "../console.log"};
        for (size_t i = 0; i < US_ELEMENTSOF(bad); i++)
                assert_int_equal(vmm_logpipe_new(f->loop, f->dir_fd, bad[i], 8192, &wfd, &lp, NULL),
                                 -EINVAL);
        assert_int_equal(vmm_logpipe_new(f->loop, f->dir_fd, "x.log", VMM_LOGPIPE_MIN_CAP - 1, &wfd,
                                         &lp, NULL),
                         -EINVAL);
        assert_null(lp);
        assert_int_equal(wfd, -1);
        assert_null(vmm_logpipe_free(NULL));
        assert_true(vmm_logpipe_drain(NULL));
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(small_output_no_rotation, setup, teardown),
                cmocka_unit_test_setup_teardown(exactly_half, setup, teardown),
                cmocka_unit_test_setup_teardown(flood_keeps_newest_under_cap, setup, teardown),
                cmocka_unit_test_setup_teardown(large_chunks, setup, teardown),
                cmocka_unit_test_setup_teardown(full_pipe_never_blocks_writer, setup, teardown),
                cmocka_unit_test_setup_teardown(no_symlink_follow_and_stale_old_removed, setup,
                                                teardown),
                cmocka_unit_test_setup_teardown(rejects_bad_arguments, setup, teardown),
        };
        return unit_exit(unit_run_group_tests(tests, NULL, NULL));
}
