/* SPDX-License-Identifier: Apache-2.0 */
/* A pipe drained on the event loop into a capped, rotated log file. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "base/cleanup.h"
#include "logpipe.h"
#include "base/loop.h"

#define MAX_NAME 64
#define CHUNK    (64u << 10)
/* Per loop wakeup: a guest that never stops writing must not starve the
 * other sources of the loop (epoll is level-triggered: the rest comes next
 * round). */
#define LOOP_BUDGET (1u << 20)
/* After a wakeup the read end is left alone this long, so output is read in
 * batches: QEMU's 16550 writes the console one byte per write(), and a
 * wakeup per byte lets a chatty guest spend the host process's CPU
 * (measured under TCG, a guest printing 2 MB as fast as it can: 6.8 s of
 * the reader's CPU with a wakeup per byte, 0.2 s in 20 ms batches). At the
 * ~200 KB/s of that guest a batch is ~4 KiB, far below what the pipe holds:
 * the guest is not slowed down by it. */
#define BATCH_MS 20
/* vmm_logpipe_drain(): more than a pipe holds (64 KiB by default, 1 MiB at
 * most without CAP_SYS_RESOURCE; the VMM sets at most 1 MiB), so a dead
 * writer's output is read completely, while a live writer that outpaces us
 * cannot keep the caller here. */
#define DRAIN_BUDGET (4u << 20)

struct vmm_logpipe {
        int dir_fd;  /* O_PATH is enough: every access is *at() */
        int read_fd; /* -1 after EOF */
        int file_fd; /* -1 while an open failed: output is dropped until one works */
        struct us_loop *loop;
        struct us_loop_source *src;
        struct us_loop_source *rearm; /* pending BATCH_MS timer */
        char name[MAX_NAME + 1];
        char old_name[MAX_NAME + 3]; /* name.1 */
        size_t half;                 /* rotate when <name> would pass this */
        size_t size;                 /* bytes in <name> now (we are its only writer) */
        uint64_t written, dropped, rotations;
        uint8_t *buf;
};

static int open_file(struct vmm_logpipe *lp)
{
        lp->file_fd =
                openat(lp->dir_fd, lp->name,
                       O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_NOFOLLOW | O_CLOEXEC, 0600);
        lp->size = 0;
        return lp->file_fd < 0 ? -errno : 0;
}

/* <name> -> <name>.1, then a fresh <name>. If the rename fails the O_TRUNC
 * of the reopen still empties <name>: the cap holds either way. */
static void rotate(struct vmm_logpipe *lp)
{
        lp->file_fd = us_close(lp->file_fd);
        (void)renameat(lp->dir_fd, lp->name, lp->dir_fd, lp->old_name);
        (void)open_file(lp);
        lp->rotations++;
}

static void store(struct vmm_logpipe *lp, const uint8_t *p, size_t n)
{
        if (lp->file_fd < 0)
                (void)open_file(lp);
        while (n > 0) {
                if (lp->size >= lp->half)
                        rotate(lp);
                size_t k = n < lp->half - lp->size ? n : lp->half - lp->size;
                size_t done = 0;
                while (lp->file_fd >= 0 && done < k) {
                        ssize_t w = write(lp->file_fd, p + done, k - done);
                        if (w < 0 && errno == EINTR)
                                continue;
                        if (w <= 0)
                                break; /* ENOSPC, EIO, ...: drop the rest of k */
                        done += (size_t)w;
                }
                lp->size += done;
                lp->written += done;
                lp->dropped += k - done;
                p += k;
                n -= k;
        }
}

static void stop(struct vmm_logpipe *lp)
{
        lp->rearm = us_loop_source_remove(lp->rearm);
        lp->src = us_loop_source_remove(lp->src);
        lp->read_fd = us_close(lp->read_fd);
}

/* Reads up to budget bytes. True at EOF. */
static bool pump(struct vmm_logpipe *lp, size_t budget)
{
        size_t got = 0;

        while (lp->read_fd >= 0 && got < budget) {
                ssize_t n = read(lp->read_fd, lp->buf, CHUNK);
                if (n > 0) {
                        store(lp, lp->buf, (size_t)n);
                        got += (size_t)n;
                        continue;
                }
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0 && errno == EAGAIN)
                        return false;
                /* EOF, or a read error that will not go away: stop either way,
                 * a source that stays readable would spin the loop. */
                stop(lp);
        }
        return lp->read_fd < 0;
}

static void on_rearm(struct us_loop_source *src, void *userdata)
{
        (void)src;
        struct vmm_logpipe *lp = userdata;
        lp->rearm = NULL; /* the loop drops a fired timer itself */
        /* ENOMEM only; try again rather than leave the pipe unwatched. */
        if (lp->src && us_loop_source_set_events(lp->src, EPOLLIN, NULL) < 0)
                (void)us_loop_add_timer(lp->loop, BATCH_MS, on_rearm, lp, &lp->rearm, NULL);
}

static void on_readable(struct us_loop_source *src, int fd, uint32_t events, void *userdata)
{
        (void)fd;
        (void)events;
        struct vmm_logpipe *lp = userdata;
        if (pump(lp, LOOP_BUDGET) || lp->rearm)
                return;
        /* Sleep on it for a batch. EPOLLHUP is reported even with no events
         * asked for: the writer's exit still wakes us at once. If the timer
         * cannot be set, just stay armed. */
        if (us_loop_add_timer(lp->loop, BATCH_MS, on_rearm, lp, &lp->rearm, NULL) < 0)
                return;
        if (us_loop_source_set_events(src, 0, NULL) < 0)
                lp->rearm = us_loop_source_remove(lp->rearm);
}

int vmm_logpipe_new(struct us_loop *loop, int dir_fd, const char *name, size_t cap,
                    int *ret_write_fd, struct vmm_logpipe **ret, struct us_error **err)
{
        int p[2] = {-1, -1};
        int r;

        if (!name || !*name || strlen(name) > MAX_NAME || strchr(name, '/') ||
            strcmp(name, ".") == 0 || strcmp(name, "..") == 0)
                return us_error_msg(err, EINVAL, "log name \"%s\" is not a plain file name",
                                    name ? name : "");
        if (cap < VMM_LOGPIPE_MIN_CAP)
                return us_error_msg(err, EINVAL, "log %s: cap %zu bytes is below %u", name, cap,
                                    VMM_LOGPIPE_MIN_CAP);
        if (!ret || !ret_write_fd)
                return us_error_msg(err, EINVAL, "log %s: no result", name);

        struct vmm_logpipe *lp = calloc(1, sizeof(*lp));
        if (!lp)
                return us_errorf(err, ENOMEM, "log %s", name);
        lp->dir_fd = lp->read_fd = lp->file_fd = -1;
        snprintf(lp->name, sizeof(lp->name), "%s", name);
        snprintf(lp->old_name, sizeof(lp->old_name), "%s.1", name);
        lp->half = cap / 2;
        lp->buf = malloc(CHUNK);
        if (!lp->buf) {
                r = us_errorf(err, ENOMEM, "log %s", name);
                goto fail;
        }
        lp->dir_fd = fcntl(dir_fd, F_DUPFD_CLOEXEC, 3);
        if (lp->dir_fd < 0) {
                r = us_errorf(err, errno, "log %s: dup directory fd", name);
                goto fail;
        }
        /* Left from an earlier run in the same directory: it would pass for
         * this run's older half. */
        if (unlinkat(lp->dir_fd, lp->old_name, 0) < 0 && errno != ENOENT) {
                r = us_errorf(err, errno, "log %s: remove %s", name, lp->old_name);
                goto fail;
        }
        r = open_file(lp);
        if (r < 0) {
                r = us_errorf(err, -r, "log %s: open", name);
                goto fail;
        }
        if (pipe2(p, O_CLOEXEC | O_NONBLOCK) < 0) {
                r = us_errorf(err, errno, "log %s: pipe", name);
                goto fail;
        }
        lp->read_fd = p[0];
        /* The writer is a child that dup2()s onto 0..2 or gets the fd by
         * number: keep the write end off stdio (a shim started with closed
         * stdio gets low numbers). */
        if (p[1] <= 2) {
                int moved = fcntl(p[1], F_DUPFD_CLOEXEC, 3);
                if (moved < 0) {
                        r = us_errorf(err, errno, "log %s: dup pipe", name);
                        us_close(p[1]);
                        goto fail;
                }
                us_close(p[1]);
                p[1] = moved;
        }
        if (loop) {
                lp->loop = loop;
                r = us_loop_add_fd(loop, lp->read_fd, EPOLLIN, on_readable, lp, &lp->src, err);
                if (r < 0) {
                        us_close(p[1]);
                        r = us_error_wrap(err, r, "log %s", name);
                        goto fail;
                }
        }
        *ret_write_fd = p[1];
        *ret = lp;
        return 0;
fail:
        vmm_logpipe_free(lp);
        return r;
}

bool vmm_logpipe_drain(struct vmm_logpipe *lp)
{
        return lp ? pump(lp, DRAIN_BUDGET) : true;
}

bool vmm_logpipe_eof(const struct vmm_logpipe *lp)
{
        return !lp || lp->read_fd < 0;
}

uint64_t vmm_logpipe_written(const struct vmm_logpipe *lp)
{
        return lp ? lp->written : 0;
}

uint64_t vmm_logpipe_dropped(const struct vmm_logpipe *lp)
{
        return lp ? lp->dropped : 0;
}

uint64_t vmm_logpipe_rotations(const struct vmm_logpipe *lp)
{
        return lp ? lp->rotations : 0;
}

/* Reads the last `want` bytes of dir/name into buf; returns the count. */
static size_t read_last(int dir_fd, const char *name, char *buf, size_t want)
{
        _cleanup_close_ int fd = openat(dir_fd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0 || want == 0)
                return 0;
        off_t end = lseek(fd, 0, SEEK_END);
        if (end <= 0)
                return 0;
        size_t take = (uint64_t)end < want ? (size_t)end : want;
        size_t got = 0;
        while (got < take) {
                ssize_t n = pread(fd, buf + got, take - got, end - (off_t)take + (off_t)got);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n <= 0)
                        break;
                got += (size_t)n;
        }
        return got;
}

size_t vmm_logpipe_tail(const struct vmm_logpipe *lp, char *buf, size_t size)
{
        if (!buf || size == 0)
                return 0;
        buf[0] = '\0';
        if (!lp)
                return 0;
        size_t want = size - 1;
        /* Newest part first, to know how much the older file must give. */
        _cleanup_close_ int fd = openat(lp->dir_fd, lp->name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
        off_t cur = fd >= 0 ? lseek(fd, 0, SEEK_END) : 0;
        size_t from_cur = cur > 0 ? ((uint64_t)cur < want ? (size_t)cur : want) : 0;
        size_t n = 0;
        if (from_cur < want)
                n = read_last(lp->dir_fd, lp->old_name, buf, want - from_cur);
        n += read_last(lp->dir_fd, lp->name, buf + n, from_cur);
        buf[n] = '\0';
        return n;
}

struct vmm_logpipe *vmm_logpipe_free(struct vmm_logpipe *lp)
{
        if (!lp)
                return NULL;
        if (lp->read_fd >= 0 && lp->buf)
                (void)pump(lp, DRAIN_BUDGET);
        stop(lp);
        us_close(lp->file_fd);
        us_close(lp->dir_fd);
        free(lp->buf);
        free(lp);
        return NULL;
}
