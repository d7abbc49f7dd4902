/* SPDX-License-Identifier: Apache-2.0 */
/*
 * ttrpc server on the single-threaded event loop.
 *
 * Ownership: the server owns its connections while they are open; every call
 * in flight holds a reference on its connection, so a handler may complete a
 * call long after the client went away (the completion then only frees it).
 * Reads are level-triggered and one read(2) per wakeup, so a busy connection
 * cannot starve the others; writes never block: what the socket does not take
 * now waits in the connection's output queue for EPOLLOUT.
 */
#include "ttrpc.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/cleanup.h"

/* Stop reading requests from a connection whose client does not read its
 * responses; close it when even that does not keep the queue bounded. */
#define OUTPUT_PAUSE_READ  (1u << 20)
#define MAX_STATUS_MESSAGE 4096
#define ACCEPT_BATCH       16
#define ACCEPT_RETRY_MS    100

struct method {
        char *service;
        char *method;
        us_ttrpc_method_fn fn;
        void *userdata;
};

struct conn {
        struct us_ttrpc_server *srv; /* NULL once closed */
        struct conn *prev, *next;
        unsigned refs;
        int fd;
        bool is_socket;
        bool dead;
        struct us_loop_source *src;
        uint32_t events;
        struct us_ttrpc_rbuf rbuf;
        uint8_t *out;
        size_t out_off, out_len, out_cap;
        unsigned n_calls;
        void (*on_close)(void *userdata);
        void *on_close_userdata;
};

struct us_ttrpc_call {
        struct conn *conn;
        uint32_t stream_id;
        bool in_dispatch;
        bool completed;
        Ttrpc__Request *req;
};

struct us_ttrpc_server {
        struct us_loop *loop;
        int listen_fd;
        struct us_loop_source *listen_src;
        struct us_loop_source *accept_retry;
        struct method *methods;
        size_t n_methods;
        struct conn *conns;
        unsigned n_conns;
        void (*on_connections)(unsigned n, void *userdata);
        void *on_connections_userdata;
};

static struct conn *conn_ref(struct conn *c)
{
        c->refs++;
        return c;
}

static void conn_unref(struct conn *c)
{
        if (!c || --c->refs > 0)
                return;
        us_ttrpc_rbuf_release(&c->rbuf);
        free(c->out);
        free(c);
}

static void notify_connections(struct us_ttrpc_server *srv)
{
        if (srv->on_connections)
                srv->on_connections(srv->n_conns, srv->on_connections_userdata);
}

/* Closes the fd and drops the server's reference; calls in flight keep the
 * struct alive. */
static void conn_close_full(struct conn *c, bool notify)
{
        if (c->dead)
                return;
        c->dead = true;
        c->src = us_loop_source_remove(c->src);
        c->fd = us_close(c->fd);
        us_ttrpc_rbuf_release(&c->rbuf);
        c->out = (free(c->out), NULL);
        c->out_off = c->out_len = c->out_cap = 0;

        struct us_ttrpc_server *srv = c->srv;
        c->srv = NULL;
        if (c->prev)
                c->prev->next = c->next;
        else
                srv->conns = c->next;
        if (c->next)
                c->next->prev = c->prev;
        c->prev = c->next = NULL;
        srv->n_conns--;
        if (notify)
                notify_connections(srv);
        if (notify && c->on_close)
                c->on_close(c->on_close_userdata);
        conn_unref(c);
}

static void conn_close(struct conn *c)
{
        conn_close_full(c, true);
}

static size_t conn_queued(const struct conn *c)
{
        return c->out_len - c->out_off;
}

static void conn_update_events(struct conn *c)
{
        if (c->dead)
                return;
        uint32_t ev = 0;
        if (conn_queued(c) < OUTPUT_PAUSE_READ)
                ev |= EPOLLIN;
        if (conn_queued(c) > 0)
                ev |= EPOLLOUT;
        if (ev == c->events)
                return;
        if (us_loop_source_set_events(c->src, ev, NULL) < 0) {
                conn_close(c);
                return;
        }
        c->events = ev;
}

static ssize_t conn_write(struct conn *c, const uint8_t *p, size_t n)
{
        if (c->is_socket)
                return send(c->fd, p, n, MSG_NOSIGNAL | MSG_DONTWAIT);
        return write(c->fd, p, n);
}

/* Writes what the fd takes now. Returns false when the connection died. */
static bool conn_flush(struct conn *c)
{
        while (!c->dead && conn_queued(c) > 0) {
                ssize_t n = conn_write(c, c->out + c->out_off, conn_queued(c));
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        if (errno == EAGAIN || errno == EWOULDBLOCK)
                                break;
                        conn_close(c);
                        return false;
                }
                c->out_off += (size_t)n;
        }
        if (c->dead)
                return false;
        if (conn_queued(c) == 0) {
                /* Idle connections hold no output memory. */
                c->out = (free(c->out), NULL);
                c->out_off = c->out_len = c->out_cap = 0;
        }
        conn_update_events(c);
        return !c->dead;
}

static void conn_queue(struct conn *c, const uint8_t *frame, size_t len)
{
        if (c->dead)
                return;
        if (conn_queued(c) + len > US_TTRPC_MAX_QUEUED_OUTPUT) {
                /* The client stopped reading: it gets no more of our memory. */
                conn_close(c);
                return;
        }
        /* With a client slow to read, frames pile up here. Moving the unsent
         * bytes at every frame, or growing to an exact fit (ASan's realloc
         * always copies), made that quadratic: 16 MiB of 60 KiB replies took
         * seconds under ASan. Move only when out of room, grow by doubling;
         * the bound above still caps the buffer. */
        if (c->out_cap - c->out_len < len && c->out_off > 0) {
                memmove(c->out, c->out + c->out_off, conn_queued(c));
                c->out_len -= c->out_off;
                c->out_off = 0;
        }
        if (c->out_cap - c->out_len < len) {
                size_t need = c->out_len + len;
                size_t cap = 2 * c->out_cap;
                if (cap > US_TTRPC_MAX_QUEUED_OUTPUT)
                        cap = US_TTRPC_MAX_QUEUED_OUTPUT;
                if (cap < need)
                        cap = need;
                uint8_t *p = realloc(c->out, cap);
                if (!p) {
                        conn_close(c);
                        return;
                }
                c->out = p;
                c->out_cap = cap;
        }
        memcpy(c->out + c->out_len, frame, len);
        c->out_len += len;
        (void)conn_flush(c);
}

static void send_response(struct conn *c, uint32_t stream_id, enum us_grpc_code code,
                          const char *message, const uint8_t *payload, size_t payload_len)
{
        if (c->dead)
                return;
        Ttrpc__Status st = TTRPC__STATUS__INIT;
        st.code = (int32_t)code;
        st.message = (char *)(message ? message : "");
        Ttrpc__Response resp = TTRPC__RESPONSE__INIT;
        resp.status = &st;
        resp.payload.data = (uint8_t *)payload;
        resp.payload.len = payload_len;

        _cleanup_free_ uint8_t *frame = NULL;
        size_t len;
        int r = us_ttrpc_frame_build(stream_id, US_TTRPC_TYPE_RESPONSE, &resp.base, &frame, &len,
                                     NULL);
        if (r < 0) {
                if (payload_len == 0) {
                        conn_close(c); /* cannot even say why: give up on it */
                        return;
                }
                send_response(c, stream_id, US_GRPC_RESOURCE_EXHAUSTED,
                              "response exceeds maximum message size", NULL, 0);
                return;
        }
        conn_queue(c, frame, len);
}

static __attribute__((format(printf, 4, 5))) void
send_status(struct conn *c, uint32_t stream_id, enum us_grpc_code code, const char *fmt, ...)
{
        char msg[MAX_STATUS_MESSAGE];
        va_list ap;
        va_start(ap, fmt);
        (void)vsnprintf(msg, sizeof(msg), fmt, ap);
        va_end(ap);
        send_response(c, stream_id, code, msg, NULL, 0);
}

static const struct method *find_method(const struct us_ttrpc_server *srv, const char *service,
                                        const char *method, bool *ret_service_known)
{
        *ret_service_known = false;
        for (size_t i = 0; i < srv->n_methods; i++) {
                if (strcmp(srv->methods[i].service, service) != 0)
                        continue;
                *ret_service_known = true;
                if (strcmp(srv->methods[i].method, method) == 0)
                        return &srv->methods[i];
        }
        return NULL;
}

static void call_free(struct us_ttrpc_call *call)
{
        struct conn *c = call->conn;
        c->n_calls--;
        if (call->req)
                ttrpc__request__free_unpacked(call->req, NULL);
        free(call);
        conn_unref(c);
}

static void handle_request(struct conn *c, const struct us_ttrpc_header *h, const uint8_t *payload)
{
        if (h->type != US_TTRPC_TYPE_REQUEST)
                return; /* ignored for forward compatibility, as upstream does */

        struct us_error *err = NULL;
        Ttrpc__Request *req = NULL;
        int r = us_ttrpc_decode_request(payload, h->length, &req, &err);
        if (r < 0) {
                send_status(c, h->stream_id, US_GRPC_INVALID_ARGUMENT, "%s", us_error_text(err));
                us_error_free(err);
                return;
        }
        if (h->stream_id % 2 != 1) {
                ttrpc__request__free_unpacked(req, NULL);
                send_status(c, h->stream_id, US_GRPC_INVALID_ARGUMENT,
                            "StreamID must be odd for client initiated streams");
                return;
        }
        bool service_known;
        const struct method *m = find_method(c->srv, req->service, req->method, &service_known);
        if (!m) {
                if (service_known)
                        send_status(c, h->stream_id, US_GRPC_UNIMPLEMENTED, "method %s",
                                    req->method);
                else
                        send_status(c, h->stream_id, US_GRPC_UNIMPLEMENTED, "service %s",
                                    req->service);
                ttrpc__request__free_unpacked(req, NULL);
                return;
        }
        if (c->n_calls >= US_TTRPC_MAX_CALLS_PER_CONN) {
                ttrpc__request__free_unpacked(req, NULL);
                send_status(c, h->stream_id, US_GRPC_RESOURCE_EXHAUSTED,
                            "too many calls in flight on this connection");
                return;
        }
        struct us_ttrpc_call *call = calloc(1, sizeof(*call));
        if (!call) {
                ttrpc__request__free_unpacked(req, NULL);
                send_status(c, h->stream_id, US_GRPC_RESOURCE_EXHAUSTED, "out of memory");
                return;
        }
        call->conn = conn_ref(c);
        c->n_calls++;
        call->stream_id = h->stream_id;
        call->req = req;
        call->in_dispatch = true;
        m->fn(call, req->payload.data, req->payload.len, m->userdata);
        call->in_dispatch = false;
        if (call->completed) {
                call_free(call);
                return;
        }
        /* Deferred: keep the metadata, not the request payload. */
        free(req->payload.data);
        req->payload.data = NULL;
        req->payload.len = 0;
}

static void conn_read(struct conn *c)
{
        ssize_t n = us_ttrpc_rbuf_fill(&c->rbuf, c->fd);
        if (n == -EAGAIN || n == -EWOULDBLOCK || n == -EINTR)
                return;
        if (n <= 0) {
                conn_close(c); /* EOF, reset or out of memory */
                return;
        }
        while (!c->dead) {
                struct us_ttrpc_header h;
                const uint8_t *payload = NULL;
                struct us_error *err = NULL;
                int r = us_ttrpc_rbuf_next(&c->rbuf, &h, &payload, &err);
                if (r == 0)
                        break;
                if (r < 0) {
                        send_status(c, h.stream_id, US_GRPC_RESOURCE_EXHAUSTED, "%s",
                                    us_error_text(err));
                        us_error_free(err);
                        continue;
                }
                handle_request(c, &h, payload);
        }
        if (!c->dead)
                us_ttrpc_rbuf_trim(&c->rbuf);
}

static void conn_io(struct us_loop_source *src, int fd, uint32_t events, void *userdata)
{
        (void)src;
        (void)fd;
        struct conn *c = conn_ref(userdata);
        if (events & EPOLLOUT)
                (void)conn_flush(c);
        if (!c->dead && (events & EPOLLIN))
                conn_read(c);
        if (!c->dead && (events & EPOLLERR))
                conn_close(c);
        /* With EPOLLIN the read above sees the EOF itself (and takes any data
         * first); without it, reading is paused and nobody will read our
         * output any more. */
        if (!c->dead && (events & EPOLLHUP) && !(events & EPOLLIN))
                conn_close(c);
        if (!c->dead)
                conn_update_events(c);
        conn_unref(c);
}

int us_ttrpc_server_add_connection(struct us_ttrpc_server *srv, int fd, struct us_error **err)
{
        return us_ttrpc_server_add_connection_notify(srv, fd, NULL, NULL, err);
}

int us_ttrpc_server_add_connection_notify(struct us_ttrpc_server *srv, int fd,
                                          void (*on_close)(void *userdata), void *userdata,
                                          struct us_error **err)
{
        _cleanup_close_ int owned = fd;
        bool is_socket;
        int r = us_ttrpc_fd_prepare(fd, "ttrpc connection", &is_socket, err);
        if (r < 0)
                return r;

        struct conn *c = calloc(1, sizeof(*c));
        if (!c)
                return us_errorf(err, ENOMEM, "allocate ttrpc connection");
        c->refs = 1;
        c->fd = fd;
        c->is_socket = is_socket;
        c->events = EPOLLIN;
        c->srv = srv;
        c->on_close = on_close;
        c->on_close_userdata = userdata;
        r = us_loop_add_fd(srv->loop, fd, c->events, conn_io, c, &c->src, err);
        if (r < 0) {
                free(c);
                return us_error_wrap(err, r, "watch ttrpc connection");
        }
        owned = -1;
        c->next = srv->conns;
        if (srv->conns)
                srv->conns->prev = c;
        srv->conns = c;
        srv->n_conns++;
        notify_connections(srv);
        return 0;
}

static void listen_io(struct us_loop_source *src, int fd, uint32_t events, void *userdata);

static void accept_resume(struct us_loop_source *src, void *userdata)
{
        (void)src;
        struct us_ttrpc_server *srv = userdata;
        srv->accept_retry = NULL;
        (void)us_loop_source_set_events(srv->listen_src, EPOLLIN, NULL);
}

static void listen_io(struct us_loop_source *src, int fd, uint32_t events, void *userdata)
{
        (void)events;
        struct us_ttrpc_server *srv = userdata;
        for (int i = 0; i < ACCEPT_BATCH; i++) {
                int cfd = accept4(fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
                if (cfd < 0) {
                        if (errno == EINTR || errno == ECONNABORTED)
                                continue;
                        if (errno == EAGAIN || errno == EWOULDBLOCK)
                                return;
                        /* Out of fds or memory: a level-triggered listener
                         * would spin, so pause accepting for a while. */
                        if (!srv->accept_retry && us_loop_source_set_events(src, 0, NULL) == 0 &&
                            us_loop_add_timer(srv->loop, ACCEPT_RETRY_MS, accept_resume, srv,
                                              &srv->accept_retry, NULL) < 0)
                                (void)us_loop_source_set_events(src, EPOLLIN, NULL);
                        return;
                }
                (void)us_ttrpc_server_add_connection(srv, cfd, NULL);
        }
}

int us_ttrpc_server_new(struct us_loop *loop, int listen_fd, struct us_ttrpc_server **ret,
                        struct us_error **err)
{
        _cleanup_close_ int lfd = listen_fd;
        struct us_ttrpc_server *srv = calloc(1, sizeof(*srv));
        if (!srv)
                return us_errorf(err, ENOMEM, "allocate ttrpc server");
        srv->loop = loop;
        srv->listen_fd = -1;
        if (lfd >= 0) {
                int fl = fcntl(lfd, F_GETFL);
                if (fl < 0 || fcntl(lfd, F_SETFL, fl | O_NONBLOCK) < 0) {
                        int r = us_errorf(err, errno, "make ttrpc listener non-blocking");
                        free(srv);
                        return r;
                }
                int r = us_loop_add_fd(loop, lfd, EPOLLIN, listen_io, srv, &srv->listen_src, err);
                if (r < 0) {
                        free(srv);
                        return us_error_wrap(err, r, "watch ttrpc listener");
                }
                srv->listen_fd = TAKE_FD(lfd);
        }
        *ret = srv;
        return 0;
}

struct us_ttrpc_server *us_ttrpc_server_free(struct us_ttrpc_server *srv)
{
        if (!srv)
                return NULL;
        while (srv->conns)
                conn_close_full(srv->conns, false);
        srv->accept_retry = us_loop_source_remove(srv->accept_retry);
        srv->listen_src = us_loop_source_remove(srv->listen_src);
        us_close(srv->listen_fd);
        for (size_t i = 0; i < srv->n_methods; i++) {
                free(srv->methods[i].service);
                free(srv->methods[i].method);
        }
        free(srv->methods);
        free(srv);
        return NULL;
}

int us_ttrpc_server_register(struct us_ttrpc_server *srv, const char *service, const char *method,
                             us_ttrpc_method_fn fn, void *userdata, struct us_error **err)
{
        bool known;
        if (find_method(srv, service, method, &known))
                return us_error_msg(err, EEXIST, "ttrpc method %s/%s already registered", service,
                                    method);
        struct method *m = realloc(srv->methods, (srv->n_methods + 1) * sizeof(*m));
        if (!m)
                return us_errorf(err, ENOMEM, "register ttrpc method");
        srv->methods = m;
        struct method nm = {.service = strdup(service),
                            .method = strdup(method),
                            .fn = fn,
                            .userdata = userdata};
        if (!nm.service || !nm.method) {
                free(nm.service);
                free(nm.method);
                return us_errorf(err, ENOMEM, "register ttrpc method");
        }
        srv->methods[srv->n_methods++] = nm;
        return 0;
}

void us_ttrpc_server_on_connections(struct us_ttrpc_server *srv,
                                    void (*fn)(unsigned n_connections, void *userdata),
                                    void *userdata)
{
        srv->on_connections = fn;
        srv->on_connections_userdata = userdata;
}

const char *us_ttrpc_call_metadata(const struct us_ttrpc_call *call, const char *key)
{
        for (size_t i = 0; i < call->req->n_metadata; i++) {
                const Ttrpc__KeyValue *kv = call->req->metadata[i];
                if (kv && kv->key && strcmp(kv->key, key) == 0)
                        return kv->value;
        }
        return NULL;
}

const char *us_ttrpc_call_method(const struct us_ttrpc_call *call)
{
        return call->req->method;
}

int64_t us_ttrpc_call_timeout_nano(const struct us_ttrpc_call *call)
{
        return call->req->timeout_nano;
}

static void call_complete(struct us_ttrpc_call *call)
{
        call->completed = true;
        if (!call->in_dispatch)
                call_free(call);
}

void us_ttrpc_call_reply(struct us_ttrpc_call *call, const ProtobufCMessage *msg)
{
        struct conn *c = call->conn;
        if (!c->dead) {
                size_t n = msg ? protobuf_c_message_get_packed_size(msg) : 0;
                if (n > US_TTRPC_MAX_MESSAGE) {
                        send_status(c, call->stream_id, US_GRPC_RESOURCE_EXHAUSTED,
                                    "response of %zu bytes exceeds maximum message size", n);
                } else {
                        uint8_t *p = n ? malloc(n) : NULL;
                        if (n && !p) {
                                send_status(c, call->stream_id, US_GRPC_RESOURCE_EXHAUSTED,
                                            "out of memory");
                        } else {
                                if (n)
                                        (void)protobuf_c_message_pack(msg, p);
                                send_response(c, call->stream_id, US_GRPC_OK, NULL, p, n);
                                free(p);
                        }
                }
        }
        call_complete(call);
}

void us_ttrpc_call_fail(struct us_ttrpc_call *call, enum us_grpc_code code, const char *fmt, ...)
{
        struct conn *c = call->conn;
        if (!c->dead) {
                char msg[MAX_STATUS_MESSAGE];
                va_list ap;
                va_start(ap, fmt);
                (void)vsnprintf(msg, sizeof(msg), fmt, ap);
                va_end(ap);
                /* OK carries no message and would read as success. */
                send_response(c, call->stream_id, code == US_GRPC_OK ? US_GRPC_UNKNOWN : code, msg,
                              NULL, 0);
        }
        call_complete(call);
}

void us_ttrpc_call_fail_error(struct us_ttrpc_call *call, int r, struct us_error *err)
{
        us_ttrpc_call_fail(call, us_grpc_code_from_errno(r), "%s", us_error_text(err));
        us_error_free(err);
}

int us_ttrpc_request_unpack(const char *method, const ProtobufCMessageDescriptor *desc,
                            us_ttrpc_check_fn check, const uint8_t *payload, size_t len,
                            ProtobufCMessage **ret, struct us_error **err)
{
        if (len > US_TTRPC_MAX_MESSAGE)
                return us_error_msg(err, EMSGSIZE, "%s: request too large", method);
        ProtobufCMessage *m = protobuf_c_message_unpack(desc, NULL, len, payload);
        if (!m)
                return us_error_msg(err, EBADMSG, "%s: malformed request", method);
        if (check) {
                int r = check(m, err);
                if (r < 0) {
                        protobuf_c_message_free_unpacked(m, NULL);
                        return us_error_wrap(err, r, "%s", method);
                }
        }
        *ret = m;
        return 0;
}

void *us_ttrpc_call_unpack(struct us_ttrpc_call *call, const ProtobufCMessageDescriptor *desc,
                           us_ttrpc_check_fn check, const uint8_t *payload, size_t len)
{
        ProtobufCMessage *m = NULL;
        struct us_error *err = NULL;
        int r = us_ttrpc_request_unpack(us_ttrpc_call_method(call), desc, check, payload, len, &m,
                                        &err);
        if (r < 0) {
                /* Whatever the check said, the request is the client's fault. */
                us_ttrpc_call_fail(call, US_GRPC_INVALID_ARGUMENT, "%s", us_error_text(err));
                us_error_free(err);
                return NULL;
        }
        return m;
}
