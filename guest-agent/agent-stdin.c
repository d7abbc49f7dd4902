/* SPDX-License-Identifier: Apache-2.0 */
/* Stdin of container processes (agent.h): WriteStdin's bytes go into the
 * process's pipe or pty without ever blocking the agent's loop. A write the
 * process does not take at once waits, its bytes held here, until the fd is
 * writable: the host's call is answered only then, so the host sends the
 * next bytes when the process has room for them, and neither side spins on
 * a full pipe. CloseStdin closes the fd after the last byte accepted. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "agent.h"
#include "base/cleanup.h"

void agent_stdin_init(struct agent_stdin *s, int fd, bool pty)
{
        memset(s, 0, sizeof(*s));
        s->fd = fd;
        s->pty = pty;
}

static void stdin_close_fd(struct agent_stdin *s)
{
        s->src = us_loop_source_remove(s->src);
        s->fd = us_close(s->fd);
}

/* Writes what waits: 1 when all of it went, 0 when the fd is full, or a
 * negative errno. */
static int stdin_flush(struct agent_stdin *s)
{
        while (s->off < s->len) {
                ssize_t n = write(s->fd, s->buf + s->off, s->len - s->off);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0 && errno == EAGAIN)
                        return 0;
                if (n < 0)
                        return -errno;
                s->off += (size_t)n;
        }
        return 1;
}

/* Nothing waits any more (written, failed or released): the waiting write
 * learns how it went, last, since its callback may answer the host. */
static void stdin_finish(struct agent_stdin *s, int r)
{
        agent_stdin_done_fn done = s->done;
        void *userdata = s->userdata;
        size_t len = s->write_len;
        s->src = us_loop_source_remove(s->src);
        free(s->buf);
        s->buf = NULL;
        s->len = s->off = s->write_len = 0;
        s->done = NULL;
        s->userdata = NULL;
        if (r < 0 || s->closing)
                s->fd = us_close(s->fd);
        if (done)
                done(s, r, len, userdata);
}

static void stdin_writable(struct us_loop_source *src, int fd, uint32_t events, void *userdata);

static void stdin_step(struct agent_stdin *s, struct us_loop *loop)
{
        int r = stdin_flush(s);
        if (r == 0) {
                if (s->src ||
                    us_loop_add_fd(loop, s->fd, EPOLLOUT, stdin_writable, s, &s->src, NULL) == 0)
                        return;
                r = -ENOMEM;
        }
        stdin_finish(s, r < 0 ? r : 0);
}

static void stdin_writable(struct us_loop_source *src, int fd, uint32_t events, void *userdata)
{
        (void)fd;
        (void)events; /* EPOLLERR (the reader is gone) shows as write's EPIPE */
        stdin_step(userdata, us_loop_source_loop(src));
}

int agent_stdin_write(struct agent_stdin *s, struct us_loop *loop, const uint8_t *data, size_t len,
                      agent_stdin_done_fn done, void *userdata)
{
        if (s->fd < 0 || s->closing)
                return -EBADF;
        if (s->len > 0)
                return -EBUSY;
        size_t off = 0;
        while (off < len) {
                ssize_t n = write(s->fd, data + off, len - off);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0 && errno == EAGAIN)
                        break;
                if (n < 0) {
                        int r = -errno;
                        stdin_close_fd(s);
                        return r;
                }
                off += (size_t)n;
        }
        if (off == len)
                return 1;
        s->buf = malloc(len - off);
        if (!s->buf)
                return -ENOMEM;
        memcpy(s->buf, data + off, len - off);
        s->len = len - off;
        s->off = 0;
        if (us_loop_add_fd(loop, s->fd, EPOLLOUT, stdin_writable, s, &s->src, NULL) < 0) {
                free(s->buf);
                s->buf = NULL;
                s->len = 0;
                return -ENOMEM;
        }
        s->write_len = len;
        s->done = done;
        s->userdata = userdata;
        return 0;
}

void agent_stdin_close(struct agent_stdin *s, struct us_loop *loop)
{
        if (s->fd < 0 || s->closing)
                return;
        s->closing = true;
        if (s->pty) {
                /* A pty has no half-close: its EOF is ^D, after the data. */
                uint8_t *n = realloc(s->buf, s->len + 1);
                if (n) {
                        n[s->len++] = '\x04';
                        s->buf = n;
                }
        }
        if (s->off == s->len) {
                stdin_finish(s, 0);
                return;
        }
        /* A waiting write is watched already: it closes when it is done. */
        if (!s->src)
                stdin_step(s, loop);
}

void agent_stdin_release(struct agent_stdin *s)
{
        s->closing = true;
        stdin_close_fd(s);
        stdin_finish(s, -ECANCELED);
}
