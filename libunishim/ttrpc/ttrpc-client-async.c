/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Asynchronous ttrpc client on the event loop: the shim's channel to a guest
 * agent, where long polls (WaitProcess, ReadStream, GetOOMEvent) stay in
 * flight for minutes while short calls come and go on the same fd.
 *
 * Pending calls live in a hash keyed by stream id (for responses) and in a
 * list, oldest first (for deadlines and for failing them all). One timer
 * source is armed for the nearest deadline. Writes never block: requests wait
 * in a bounded output queue for EPOLLOUT.
 *
 * Re-entrancy: callbacks may call, cancel or free. Every entry point that
 * runs callbacks holds a depth count; _free() fails what is pending, tears
 * down the fd and sources at once, and leaves the struct to the outermost
 * entry point to release. Loops that run callbacks re-check "dead" after each
 * one and never keep a pointer to a call across a callback.
 */
#include "ttrpc.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/cleanup.h"
#include "base/fs-util.h"
#include "base/loop.h"

#define HASH_MIN_BUCKETS 16
#define NO_DEADLINE      INT64_MAX

struct acall {
        uint32_t id;
        int timeout_ms;
        int64_t deadline; /* CLOCK_MONOTONIC ms, NO_DEADLINE for none */
        struct acall *hnext;
        struct acall *prev, *next;
        us_ttrpc_reply_fn fn;
        void *userdata;
        char name[]; /* "service/method", for messages */
};

struct us_ttrpc_aclient {
        struct us_loop *loop;
        int fd;
        bool is_socket;
        struct us_loop_source *src;
        uint32_t events;
        struct us_loop_source *timer;
        int64_t timer_deadline;

        struct us_ttrpc_rbuf rbuf;
        uint8_t *out;
        size_t out_off, out_len, out_cap;

        uint32_t next_id;
        struct acall **buckets;
        size_t n_buckets; /* power of two */
        size_t n_calls;
        struct acall *first, *last;

        int broken;      /* 0, or the negative errno the connection ended with */
        int write_error; /* a write failure seen in _call(), reported from the loop */
        bool freed;
        unsigned depth; /* entry points running callbacks */

        void (*on_close)(void *userdata, int reason);
        void *on_close_userdata;
};

static bool dead(const struct us_ttrpc_aclient *c)
{
        return c->freed || c->broken != 0;
}

/* ---- pending calls ---- */

static size_t bucket_of(const struct us_ttrpc_aclient *c, uint32_t id)
{
        /* Ids are odd and sequential: drop the constant low bit. */
        return (id >> 1) & (c->n_buckets - 1);
}

static struct acall *call_find(const struct us_ttrpc_aclient *c, uint64_t id)
{
        if (c->n_buckets == 0 || id == 0 || id > UINT32_MAX)
                return NULL;
        for (struct acall *a = c->buckets[bucket_of(c, (uint32_t)id)]; a; a = a->hnext)
                if (a->id == id)
                        return a;
        return NULL;
}

/* Makes room for one more call in the hash. */
static int hash_reserve(struct us_ttrpc_aclient *c)
{
        if (c->n_calls + 1 <= c->n_buckets)
                return 0;
        size_t n = c->n_buckets ? c->n_buckets * 2 : HASH_MIN_BUCKETS;
        struct acall **b = calloc(n, sizeof(*b));
        if (!b)
                return -ENOMEM;
        struct acall **old = c->buckets;
        size_t n_old = c->n_buckets;
        c->buckets = b;
        c->n_buckets = n;
        for (size_t i = 0; i < n_old; i++) {
                while (old[i]) {
                        struct acall *a = old[i];
                        old[i] = a->hnext;
                        size_t k = bucket_of(c, a->id);
                        a->hnext = b[k];
                        b[k] = a;
                }
        }
        free(old);
        return 0;
}

static void call_link(struct us_ttrpc_aclient *c, struct acall *a)
{
        size_t k = bucket_of(c, a->id);
        a->hnext = c->buckets[k];
        c->buckets[k] = a;
        a->next = NULL;
        a->prev = c->last;
        if (c->last)
                c->last->next = a;
        else
                c->first = a;
        c->last = a;
        c->n_calls++;
}

static void call_unlink(struct us_ttrpc_aclient *c, struct acall *a)
{
        for (struct acall **p = &c->buckets[bucket_of(c, a->id)]; *p; p = &(*p)->hnext) {
                if (*p == a) {
                        *p = a->hnext;
                        break;
                }
        }
        if (a->prev)
                a->prev->next = a->next;
        else
                c->first = a->next;
        if (a->next)
                a->next->prev = a->prev;
        else
                c->last = a->prev;
        a->prev = a->next = a->hnext = NULL;
        c->n_calls--;
}

/* Unlinks a, frees it, then runs its callback: nothing of a is touched once
 * user code runs. The caller holds the depth count. */
static void call_finish(struct us_ttrpc_aclient *c, struct acall *a, int status,
                        const uint8_t *payload, size_t len, const struct us_error *err)
{
        assert(c->depth > 0);
        us_ttrpc_reply_fn fn = a->fn;
        void *userdata = a->userdata;
        call_unlink(c, a);
        free(a);
        fn(status, status == 0 ? payload : NULL, status == 0 ? len : 0, status == 0 ? NULL : err,
           userdata);
}

/* Finishes a with status and "<service/method>: <why>". */
static void call_fail(struct us_ttrpc_aclient *c, struct acall *a, int status, const char *why)
{
        struct us_error *e = NULL;
        (void)us_error_msg(&e, -status, "%s: %s", a->name, why);
        call_finish(c, a, status, NULL, 0, e);
        us_error_free(e);
}

static void fail_all(struct us_ttrpc_aclient *c, int status, const char *why)
{
        /* Callbacks may free the client (which fails the rest itself) or
         * cancel others: always take the current head. */
        while (c->first)
                call_fail(c, c->first, status, why);
}

/* ---- lifetime ---- */

static void enter(struct us_ttrpc_aclient *c)
{
        c->depth++;
}

static void destroy(struct us_ttrpc_aclient *c)
{
        free(c->buckets);
        free(c);
}

static void leave(struct us_ttrpc_aclient *c)
{
        assert(c->depth > 0);
        if (--c->depth == 0 && c->freed)
                destroy(c);
}

/* Releases the fd, the sources and the buffers. Pending calls stay. */
static void teardown_io(struct us_ttrpc_aclient *c)
{
        c->src = us_loop_source_remove(c->src);
        c->timer = us_loop_source_remove(c->timer);
        c->timer_deadline = NO_DEADLINE;
        c->fd = us_close(c->fd);
        us_ttrpc_rbuf_release(&c->rbuf);
        c->out = (free(c->out), NULL);
        c->out_off = c->out_len = c->out_cap = 0;
}

/* The connection has ended: fail everything pending with reason, then tell
 * the owner. The caller holds the depth count and touches neither the read
 * buffer nor any call afterwards. */
static void break_conn(struct us_ttrpc_aclient *c, int reason, const char *why)
{
        assert(c->depth > 0);
        if (dead(c))
                return;
        c->broken = reason;
        teardown_io(c);
        fail_all(c, reason, why);
        if (!c->freed && c->on_close)
                c->on_close(c->on_close_userdata, reason);
}

static void break_io(struct us_ttrpc_aclient *c, const char *op, int r)
{
        char why[128];
        (void)snprintf(why, sizeof(why), "%s ttrpc connection: %s", op, strerror(-r));
        break_conn(c, -ECONNRESET, why);
}

/* ---- timer: one source, armed for the nearest deadline ---- */

static void on_timer(struct us_loop_source *src, void *userdata);

static int arm_timer(struct us_ttrpc_aclient *c, int64_t deadline)
{
        if (deadline == NO_DEADLINE || (c->timer && c->timer_deadline <= deadline))
                return 0;
        int64_t left = deadline - us_monotonic_ms();
        struct us_loop_source *t = NULL;
        int r = us_loop_add_timer(c->loop, left > 0 ? (uint64_t)left : 0, on_timer, c, &t, NULL);
        if (r < 0)
                return r;
        /* Replace only once the new one exists: a failure keeps the old. */
        us_loop_source_remove(c->timer);
        c->timer = t;
        c->timer_deadline = deadline;
        return 0;
}

static void on_timer(struct us_loop_source *src, void *userdata)
{
        (void)src;
        struct us_ttrpc_aclient *c = userdata;
        /* The loop has removed this one-shot source already. */
        c->timer = NULL;
        c->timer_deadline = NO_DEADLINE;
        enter(c);
        if (c->write_error)
                break_io(c, "write", c->write_error);
        while (!dead(c)) {
                int64_t now = us_monotonic_ms();
                struct acall *a = c->first;
                while (a && a->deadline > now)
                        a = a->next;
                if (!a)
                        break;
                char why[64];
                (void)snprintf(why, sizeof(why), "ttrpc call timed out after %d ms", a->timeout_ms);
                call_fail(c, a, -ETIMEDOUT, why);
        }
        if (!dead(c)) {
                int64_t next = NO_DEADLINE;
                for (struct acall *a = c->first; a; a = a->next)
                        if (a->deadline < next)
                                next = a->deadline;
                /* Without a timer no call would ever time out. */
                int r = arm_timer(c, next);
                if (r < 0)
                        break_conn(c, r, "ttrpc client cannot arm its timer");
        }
        leave(c);
}

/* ---- output ---- */

static size_t queued(const struct us_ttrpc_aclient *c)
{
        return c->out_len - c->out_off;
}

static int update_events(struct us_ttrpc_aclient *c)
{
        uint32_t ev = EPOLLIN | (queued(c) > 0 ? EPOLLOUT : 0);
        if (ev == c->events)
                return 0;
        int r = us_loop_source_set_events(c->src, ev, NULL);
        if (r < 0)
                return r;
        c->events = ev;
        return 0;
}

/* Writes what the fd takes now. Returns 0 or the negative errno of a failed
 * write; never runs callbacks. */
static int flush(struct us_ttrpc_aclient *c)
{
        ssize_t n = us_write_some(c->fd, c->out + c->out_off, queued(c), c->is_socket);
        if (n < 0)
                return (int)n;
        c->out_off += (size_t)n;
        if (queued(c) == 0) {
                /* An idle client holds no output memory. */
                c->out = (free(c->out), NULL);
                c->out_off = c->out_len = c->out_cap = 0;
        }
        return update_events(c);
}

static int queue_output(struct us_ttrpc_aclient *c, const uint8_t *frame, size_t len)
{
        /* Room at the end: append. Else move what is queued to the front
         * (once per fill, not per frame) and grow by doubling, so that a
         * long queue costs amortised O(1) per byte, not a copy per frame. */
        if (c->out_cap - c->out_len < len && c->out_off > 0) {
                memmove(c->out, c->out + c->out_off, queued(c));
                c->out_len -= c->out_off;
                c->out_off = 0;
        }
        if (c->out_cap - c->out_len < len) {
                size_t cap = c->out_cap ? c->out_cap : 4096;
                while (cap - c->out_len < len)
                        cap *= 2;
                uint8_t *p = realloc(c->out, cap);
                if (!p)
                        return -ENOMEM;
                c->out = p;
                c->out_cap = cap;
        }
        memcpy(c->out + c->out_len, frame, len);
        c->out_len += len;
        return 0;
}

/* ---- input ---- */

static void handle_frame(struct us_ttrpc_aclient *c, const struct us_ttrpc_header *h,
                         const uint8_t *payload)
{
        /* Requests and stream data are not ours to serve: dropped, as are
         * answers to calls that timed out or were cancelled. */
        if (h->type != US_TTRPC_TYPE_RESPONSE)
                return;
        struct acall *a = call_find(c, h->stream_id);
        if (!a)
                return;
        Ttrpc__Response *resp = NULL;
        struct us_error *e = NULL;
        int r = us_ttrpc_decode_response(payload, h->length, &resp, &e);
        if (r < 0) {
                char why[160];
                (void)snprintf(why, sizeof(why), "ttrpc protocol error on stream %" PRIu32 ": %s",
                               h->stream_id, us_error_text(e));
                us_error_free(e);
                break_conn(c, -EPROTO, why);
                return;
        }
        r = us_ttrpc_response_status(resp, a->name, &e);
        call_finish(c, a, r, resp->payload.data, resp->payload.len, e);
        us_error_free(e);
        ttrpc__response__free_unpacked(resp, NULL);
}

/* Dispatches every complete frame in the read buffer. */
static void process_frames(struct us_ttrpc_aclient *c)
{
        while (!dead(c)) {
                struct us_ttrpc_header h;
                const uint8_t *payload = NULL;
                struct us_error *e = NULL;
                int r = us_ttrpc_rbuf_next(&c->rbuf, &h, &payload, &e);
                if (r == 0)
                        break;
                if (r < 0) {
                        char why[160];
                        (void)snprintf(why, sizeof(why), "ttrpc protocol error: %s",
                                       us_error_text(e));
                        us_error_free(e);
                        break_conn(c, -EPROTO, why);
                        return;
                }
                handle_frame(c, &h, payload);
        }
        if (!dead(c))
                us_ttrpc_rbuf_trim(&c->rbuf);
}

static void read_input(struct us_ttrpc_aclient *c)
{
        /* One read per wakeup (level-triggered): other sources get their
         * turn even when the peer floods us. */
        ssize_t n = us_ttrpc_rbuf_fill(&c->rbuf, c->fd);
        if (n == -EAGAIN || n == -EWOULDBLOCK || n == -EINTR)
                return;
        if (n == 0) {
                break_conn(c, -ECONNRESET, "ttrpc connection closed by peer");
                return;
        }
        if (n == -ENOMEM) {
                break_conn(c, -ENOMEM, "ttrpc client out of memory for a response");
                return;
        }
        if (n < 0) {
                break_io(c, "read", (int)n);
                return;
        }
        process_frames(c);
}

static void on_io(struct us_loop_source *src, int fd, uint32_t events, void *userdata)
{
        (void)src;
        (void)fd;
        struct us_ttrpc_aclient *c = userdata;
        enter(c);
        if (c->write_error)
                break_io(c, "write", c->write_error);
        if (!dead(c) && (events & EPOLLOUT)) {
                int r = flush(c);
                if (r < 0)
                        break_io(c, "write", r);
        }
        /* EPOLLHUP/EPOLLERR: the read reports the EOF or the error, after
         * taking whatever data came first. */
        if (!dead(c) && (events & (EPOLLIN | EPOLLHUP | EPOLLERR)))
                read_input(c);
        leave(c);
}

/* ---- public ---- */

int us_ttrpc_aclient_new(struct us_loop *loop, int fd, struct us_ttrpc_aclient **ret,
                         struct us_error **err)
{
        _cleanup_close_ int owned = fd;
        bool is_socket;
        int r = us_ttrpc_fd_prepare(fd, "ttrpc client fd", &is_socket, err);
        if (r < 0)
                return r;
        struct us_ttrpc_aclient *c = calloc(1, sizeof(*c));
        if (!c)
                return us_errorf(err, ENOMEM, "allocate ttrpc client");
        c->loop = loop;
        c->is_socket = is_socket;
        c->next_id = 1;
        c->timer_deadline = NO_DEADLINE;
        c->events = EPOLLIN;
        r = us_loop_add_fd(loop, fd, c->events, on_io, c, &c->src, err);
        if (r < 0) {
                free(c);
                return us_error_wrap(err, r, "watch ttrpc client fd");
        }
        c->fd = TAKE_FD(owned);
        *ret = c;
        return 0;
}

int us_ttrpc_aclient_call(struct us_ttrpc_aclient *c, const char *service, const char *method,
                          const ProtobufCMessage *req, const struct us_ttrpc_kv *metadata,
                          size_t n_metadata, int timeout_ms, us_ttrpc_reply_fn fn, void *userdata,
                          uint64_t *ret_call_id, struct us_error **err)
{
        if (!fn || !service || !*service || !method || !*method || timeout_ms < 0)
                return us_error_msg(err, EINVAL, "invalid ttrpc call arguments");
        if (dead(c))
                return us_error_msg(err, ENOTCONN, "%s/%s: ttrpc connection has ended", service,
                                    method);
        if (c->next_id > UINT32_MAX - 2)
                /* Ids may not be reused on one connection. */
                return us_error_msg(err, ENOTCONN, "%s/%s: ttrpc stream ids exhausted", service,
                                    method);
        if (c->n_calls >= US_TTRPC_ACLIENT_MAX_CALLS)
                return us_error_msg(err, ENOBUFS, "%s/%s: %zu ttrpc calls already in flight",
                                    service, method, c->n_calls);

        _cleanup_free_ uint8_t *frame = NULL;
        size_t flen;
        int r = us_ttrpc_request_frame_build(c->next_id, service, method, req, metadata, n_metadata,
                                             timeout_ms, &frame, &flen, err);
        if (r < 0)
                return us_error_wrap(err, r, "%s/%s", service, method);
        if (queued(c) + flen > US_TTRPC_ACLIENT_MAX_QUEUED)
                return us_error_msg(err, ENOBUFS,
                                    "%s/%s: ttrpc output queue full (%zu bytes not yet written)",
                                    service, method, queued(c));

        size_t ls = strlen(service), lm = strlen(method);
        _cleanup_free_ struct acall *a = malloc(sizeof(*a) + ls + 1 + lm + 1);
        if (!a)
                return us_errorf(err, ENOMEM, "%s/%s: allocate ttrpc call", service, method);
        *a = (struct acall){.id = c->next_id,
                            .timeout_ms = timeout_ms,
                            .deadline =
                                    timeout_ms > 0 ? us_monotonic_ms() + timeout_ms : NO_DEADLINE,
                            .fn = fn,
                            .userdata = userdata};
        memcpy(a->name, service, ls);
        a->name[ls] = '/';
        memcpy(a->name + ls + 1, method, lm + 1);

        /* Everything that can fail comes before the request is queued: once
         * queued it goes out and the call is committed. */
        r = hash_reserve(c);
        if (r < 0)
                return us_errorf(err, -r, "%s/%s: allocate ttrpc call", service, method);
        r = arm_timer(c, a->deadline);
        if (r < 0)
                return us_errorf(err, -r, "%s/%s: arm ttrpc call timer", service, method);
        r = queue_output(c, frame, flen);
        if (r < 0)
                return us_errorf(err, -r, "%s/%s: queue ttrpc request", service, method);

        c->next_id += 2;
        uint64_t id = a->id;
        call_link(c, TAKE_PTR(a));
        if (!c->write_error) {
                r = flush(c);
                if (r < 0) {
                        /* Callbacks run from the loop only: report it from
                         * the timer, armed to fire now. */
                        c->write_error = r;
                        if (arm_timer(c, us_monotonic_ms()) < 0 &&
                            us_loop_source_set_events(c->src, EPOLLIN | EPOLLOUT, NULL) == 0)
                                c->events = EPOLLIN | EPOLLOUT;
                }
        }
        if (ret_call_id)
                *ret_call_id = id;
        return 0;
}

void us_ttrpc_aclient_cancel(struct us_ttrpc_aclient *c, uint64_t call_id)
{
        if (!c || c->freed)
                return;
        struct acall *a = call_find(c, call_id);
        if (!a)
                return;
        enter(c);
        call_fail(c, a, -ECANCELED, "ttrpc call cancelled");
        leave(c);
}

void us_ttrpc_aclient_on_close(struct us_ttrpc_aclient *c, void (*fn)(void *userdata, int reason),
                               void *userdata)
{
        c->on_close = fn;
        c->on_close_userdata = userdata;
}

size_t us_ttrpc_aclient_pending(const struct us_ttrpc_aclient *c)
{
        return c->n_calls;
}

struct us_ttrpc_aclient *us_ttrpc_aclient_free(struct us_ttrpc_aclient *c)
{
        if (!c || c->freed)
                return NULL;
        c->freed = true;
        enter(c);
        /* The fd goes first: nothing more is read or written while the
         * callbacks below run. */
        teardown_io(c);
        fail_all(c, -ECANCELED, "ttrpc client closed");
        leave(c);
        return NULL;
}

int us_ttrpc_aclient_feed(struct us_ttrpc_aclient *c, const uint8_t *data, size_t len)
{
        if (dead(c))
                return -ENOTCONN;
        int r = 0;
        bool stuck = false;
        enter(c);
        while (len > 0 && !dead(c)) {
                ssize_t n = us_ttrpc_rbuf_append_some(&c->rbuf, data, len);
                if (n < 0) {
                        r = (int)n;
                        break;
                }
                if (n == 0) {
                        /* process_frames() drains every complete frame, so
                         * the next append has room; this is a safeguard. */
                        if (stuck) {
                                r = -ENOBUFS;
                                break;
                        }
                        stuck = true;
                } else {
                        stuck = false;
                }
                data += n;
                len -= (size_t)n;
                process_frames(c);
        }
        if (r == 0 && dead(c))
                r = -ENOTCONN;
        leave(c);
        return r;
}
