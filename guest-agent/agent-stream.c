/* SPDX-License-Identifier: Apache-2.0 */
/* Output streams of container processes: a bounded buffer per stream, filled
 * from the pipe/pty in the loop, drained by ReadStream long polls. A full
 * buffer stops reading the fd, so a process whose output the host does not
 * collect blocks in write() instead of growing the agent's memory. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "agent.h"
#include "base/cleanup.h"

void agent_stream_init(struct agent_stream *s, int fd)
{
        memset(s, 0, sizeof(*s));
        s->fd = fd;
        s->max = AGENT_STREAM_MAX;
        s->eof = fd < 0;
}

static void stream_close_fd(struct agent_stream *s)
{
        s->src = us_loop_source_remove(s->src);
        s->fd = us_close(s->fd);
        s->eof = true;
}

static int stream_reserve(struct agent_stream *s, size_t want)
{
        /* Compact first: the live bytes move to the front. */
        if (s->head > 0 && s->head + s->len + want > s->cap) {
                memmove(s->buf, s->buf + s->head, s->len);
                s->head = 0;
        }
        if (s->head + s->len + want <= s->cap)
                return 0;
        size_t ncap = s->cap ? s->cap : 4096;
        while (ncap < s->len + want)
                ncap *= 2;
        if (ncap > s->max)
                ncap = s->max;
        uint8_t *n = realloc(s->buf, ncap);
        if (!n)
                return -ENOMEM;
        s->buf = n;
        s->cap = ncap;
        return 0;
}

ssize_t agent_stream_fill(struct agent_stream *s)
{
        ssize_t total = 0;
        while (s->fd >= 0 && s->len < s->max) {
                size_t want = s->max - s->len;
                if (want > 65536)
                        want = 65536;
                if (stream_reserve(s, want) < 0)
                        return total > 0 ? total : -ENOMEM;
                size_t room = s->cap - s->head - s->len;
                if (room > want)
                        room = want;
                ssize_t n = read(s->fd, s->buf + s->head + s->len, room);
                if (n > 0) {
                        s->len += (size_t)n;
                        total += n;
                        continue;
                }
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0 && errno == EAGAIN)
                        break;
                /* 0 = EOF; EIO = the pty's slave side is gone. Both end it. */
                int e = n < 0 ? errno : 0;
                stream_close_fd(s);
                if (e && e != EIO)
                        return total > 0 ? total : -e;
                break;
        }
        return total;
}

bool agent_stream_ready(const struct agent_stream *s)
{
        return s->len > 0 || s->eof;
}

int agent_stream_take(struct agent_stream *s, size_t max, uint8_t **ret, size_t *ret_len)
{
        size_t n = s->len < max ? s->len : max;
        uint8_t *out = NULL;
        if (n > 0) {
                out = malloc(n);
                if (!out)
                        return -ENOMEM;
                memcpy(out, s->buf + s->head, n);
                s->head += n;
                s->len -= n;
                if (s->len == 0) {
                        s->head = 0;
                        /* Idle streams give their memory back. */
                        if (s->cap > 65536) {
                                free(s->buf);
                                s->buf = NULL;
                                s->cap = 0;
                        }
                }
        }
        *ret = out;
        *ret_len = n;
        return 0;
}

static void stream_on_fd(struct us_loop_source *src, int fd, uint32_t events, void *userdata)
{
        (void)src;
        (void)fd;
        (void)events;
        struct agent_stream *s = userdata;
        struct us_loop *loop = us_loop_source_loop(src);
        (void)agent_stream_fill(s);
        if (s->fd >= 0 && s->len >= s->max && !s->paused) {
                /* Full: stop watching until a ReadStream frees room. */
                s->src = us_loop_source_remove(s->src);
                s->paused = true;
        }
        agent_stream_answer(s, loop);
        if (s->on_change)
                s->on_change(s, s->userdata);
}

int agent_stream_watch(struct agent_stream *s, struct us_loop *loop,
                       void (*on_change)(struct agent_stream *s, void *userdata), void *userdata,
                       struct us_error **err)
{
        s->on_change = on_change;
        s->userdata = userdata;
        if (s->fd < 0)
                return 0;
        return us_loop_add_fd(loop, s->fd, EPOLLIN, stream_on_fd, s, &s->src, err);
}

void agent_stream_resume(struct agent_stream *s, struct us_loop *loop)
{
        if (!s->paused || s->fd < 0 || s->len >= s->max)
                return;
        if (us_loop_add_fd(loop, s->fd, EPOLLIN, stream_on_fd, s, &s->src, NULL) == 0)
                s->paused = false;
}

void agent_stream_answer(struct agent_stream *s, struct us_loop *loop)
{
        if (!s->waiter || !(s->len > 0 || s->eof))
                return;
        Unishim__Agent__V1__ReadStreamResponse resp =
                UNISHIM__AGENT__V1__READ_STREAM_RESPONSE__INIT;
        _cleanup_free_ uint8_t *data = NULL;
        size_t n = 0;
        if (agent_stream_take(s, s->waiter_max, &data, &n) < 0) {
                us_ttrpc_call_fail(TAKE_PTR(s->waiter), US_GRPC_RESOURCE_EXHAUSTED,
                                   "out of memory");
                return;
        }
        resp.data.data = data;
        resp.data.len = n;
        /* EOF travels only with the last byte, so the host never loses data. */
        resp.eof = s->eof && s->len == 0;
        if (resp.eof)
                s->eof_reported = true;
        us_ttrpc_call_reply(TAKE_PTR(s->waiter), &resp.base);
        if (loop)
                agent_stream_resume(s, loop);
}

void agent_stream_release(struct agent_stream *s)
{
        if (s->waiter)
                us_ttrpc_call_fail(TAKE_PTR(s->waiter), US_GRPC_NOT_FOUND, "process removed");
        s->src = us_loop_source_remove(s->src);
        s->fd = us_close(s->fd);
        free(s->buf);
        s->buf = NULL;
        s->len = s->cap = s->head = 0;
        s->eof = true;
}
