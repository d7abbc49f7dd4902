/* SPDX-License-Identifier: Apache-2.0 */
/*
 * ttrpc: framing, envelope decoding, error mapping, and a real server and
 * client over a unix socket in a temp dir. The server's loop runs in a thread
 * that touches nothing but the loop's own state; the test thread talks to it
 * only through sockets. Every wait is for an event and bounded, and alarm()
 * ends a hung test; the bounds (unit_wait_ms()) only tell a hang from a slow
 * machine, never measure speed.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "unit.h"

#include "base/cleanup.h"
#include "base/loop.h"
#include "ttrpc/ttrpc.h"
#include "ttrpc-fixtures.h"

#define SERVICE "unishim.test.v1.Test"
/* The timeout of a call or read that must not time out: a hang guard. */
#define TIMEOUT_MS    unit_wait_ms(10000)
#define ALARM_SECS(s) ((unsigned)(unit_wait_ms((s)*1000) / 1000))

/* ---- pure framing ---- */

static void header_roundtrip(void **state)
{
        (void)state;
        struct us_ttrpc_header h = {.length = 0x01020304,
                                    .stream_id = 0xa0b0c0d1,
                                    .type = US_TTRPC_TYPE_RESPONSE,
                                    .flags = 7};
        uint8_t buf[US_TTRPC_HEADER_SIZE];
        us_ttrpc_header_encode(&h, buf);
        const uint8_t want[] = {1, 2, 3, 4, 0xa0, 0xb0, 0xc0, 0xd1, 2, 7};
        assert_memory_equal(buf, want, sizeof(want));

        struct us_ttrpc_header d;
        struct us_error *err = NULL;
        /* 0x01020304 > 4 MiB: refused, but the header is still filled. */
        assert_int_equal(us_ttrpc_header_decode(buf, &d, &err), -EMSGSIZE);
        assert_non_null(err);
        err = us_error_free(err);
        assert_int_equal(d.stream_id, 0xa0b0c0d1);

        h.length = US_TTRPC_MAX_MESSAGE;
        us_ttrpc_header_encode(&h, buf);
        assert_int_equal(us_ttrpc_header_decode(buf, &d, &err), 0);
        assert_int_equal(d.length, US_TTRPC_MAX_MESSAGE);
        assert_int_equal(d.type, US_TTRPC_TYPE_RESPONSE);
        assert_int_equal(d.flags, 7);
}

static size_t make_frame(uint8_t *buf, uint32_t stream, uint8_t type, const void *p, uint32_t len)
{
        struct us_ttrpc_header h = {.length = len, .stream_id = stream, .type = type};
        us_ttrpc_header_encode(&h, buf);
        memcpy(buf + US_TTRPC_HEADER_SIZE, p, len);
        return US_TTRPC_HEADER_SIZE + len;
}

static void rbuf_partial_and_oversized(void **state)
{
        (void)state;
        uint8_t stream[256];
        size_t n = make_frame(stream, 1, 1, "hello", 5);
        n += make_frame(stream + n, 3, 1, "", 0);
        /* An oversized frame: header claims MAX+1, then 20 payload bytes we
         * feed (the rest never comes in this test). */
        struct us_ttrpc_header big = {
                .length = US_TTRPC_MAX_MESSAGE + 1, .stream_id = 5, .type = 1};
        us_ttrpc_header_encode(&big, stream + n);
        n += US_TTRPC_HEADER_SIZE;
        memset(stream + n, 'x', 20);
        n += 20;

        struct us_ttrpc_rbuf b = {0};
        struct us_ttrpc_header h;
        const uint8_t *p;
        int frames = 0;
        /* One byte at a time: every partial state must say "need more". */
        for (size_t i = 0; i < n; i++) {
                assert_int_equal(us_ttrpc_rbuf_append(&b, stream + i, 1), 0);
                int r;
                while ((r = us_ttrpc_rbuf_next(&b, &h, &p, NULL)) != 0) {
                        if (r == 1 && frames == 0) {
                                assert_int_equal(h.stream_id, 1);
                                assert_int_equal(h.length, 5);
                                assert_memory_equal(p, "hello", 5);
                        } else if (r == 1 && frames == 1) {
                                assert_int_equal(h.stream_id, 3);
                                assert_int_equal(h.length, 0);
                        } else {
                                assert_int_equal(r, -EMSGSIZE);
                                assert_int_equal(frames, 2);
                                assert_int_equal(h.stream_id, 5);
                        }
                        frames++;
                }
        }
        assert_int_equal(frames, 3);
        /* The oversized payload is skipped, not buffered. */
        assert_true(b.discard == US_TTRPC_MAX_MESSAGE + 1 - 20);
        assert_true(b.cap <= 8192);
        us_ttrpc_rbuf_release(&b);

        /* Truncated: a header promising 100 bytes, only 50 arrive. */
        uint8_t trunc[US_TTRPC_HEADER_SIZE + 50];
        struct us_ttrpc_header th = {.length = 100, .stream_id = 1, .type = 1};
        us_ttrpc_header_encode(&th, trunc);
        memset(trunc + US_TTRPC_HEADER_SIZE, 0, 50);
        assert_int_equal(us_ttrpc_rbuf_append(&b, trunc, sizeof(trunc)), 0);
        assert_int_equal(us_ttrpc_rbuf_next(&b, &h, &p, NULL), 0);
        us_ttrpc_rbuf_release(&b);
}

static void decode_garbage(void **state)
{
        (void)state;
        struct us_error *err = NULL;
        Ttrpc__Request *req = NULL;
        /* field 1, wire type 2, length 200 -- but only 3 bytes follow */
        const uint8_t garbage[] = {0x0a, 0xc8, 0x01, 'a', 'b', 'c'};
        assert_int_equal(us_ttrpc_decode_request(garbage, sizeof(garbage), &req, &err), -EBADMSG);
        assert_null(req);
        err = us_error_free(err);
        const uint8_t badwire[] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
                                   0xff, 0xff, 0xff, 0xff, 0x01};
        assert_int_equal(us_ttrpc_decode_request(badwire, sizeof(badwire), &req, &err), -EBADMSG);
        err = us_error_free(err);
        /* Empty message: no service/method. */
        assert_int_equal(us_ttrpc_decode_request(garbage, 0, &req, &err), -EINVAL);
        err = us_error_free(err);
        assert_int_equal(us_ttrpc_decode_request(garbage, US_TTRPC_MAX_MESSAGE + 1, &req, &err),
                         -EMSGSIZE);
        err = us_error_free(err);

        /* Too many metadata entries. */
        Ttrpc__Request m = TTRPC__REQUEST__INIT;
        m.service = "s";
        m.method = "m";
        size_t nmd = US_TTRPC_MAX_METADATA + 1;
        Ttrpc__KeyValue *kv = calloc(nmd, sizeof(*kv));
        Ttrpc__KeyValue **kvp = calloc(nmd, sizeof(*kvp));
        for (size_t i = 0; i < nmd; i++) {
                ttrpc__key_value__init(&kv[i]);
                kv[i].key = "k";
                kv[i].value = "v";
                kvp[i] = &kv[i];
        }
        m.metadata = kvp;
        m.n_metadata = nmd;
        size_t len = ttrpc__request__get_packed_size(&m);
        uint8_t *buf = malloc(len);
        ttrpc__request__pack(&m, buf);
        assert_int_equal(us_ttrpc_decode_request(buf, len, &req, &err), -EINVAL);
        err = us_error_free(err);
        m.n_metadata = 2;
        len = ttrpc__request__pack(&m, buf);
        assert_int_equal(us_ttrpc_decode_request(buf, len, &req, &err), 0);
        assert_string_equal(req->service, "s");
        assert_int_equal(req->n_metadata, 2);
        ttrpc__request__free_unpacked(req, NULL);
        free(buf);
        free(kv);
        free(kvp);

        Ttrpc__Response *resp = NULL;
        assert_int_equal(us_ttrpc_decode_response(garbage, sizeof(garbage), &resp, &err), -EBADMSG);
        err = us_error_free(err);
}

static void errno_mapping(void **state)
{
        (void)state;
        assert_int_equal(us_grpc_code_from_errno(0), US_GRPC_OK);
        assert_int_equal(us_grpc_code_from_errno(-ENOENT), US_GRPC_NOT_FOUND);
        assert_int_equal(us_grpc_code_from_errno(-EEXIST), US_GRPC_ALREADY_EXISTS);
        assert_int_equal(us_grpc_code_from_errno(-EINVAL), US_GRPC_INVALID_ARGUMENT);
        assert_int_equal(us_grpc_code_from_errno(-ETIMEDOUT), US_GRPC_DEADLINE_EXCEEDED);
        assert_int_equal(us_grpc_code_from_errno(-ENOSYS), US_GRPC_UNIMPLEMENTED);
        assert_int_equal(us_grpc_code_from_errno(-EBUSY), US_GRPC_FAILED_PRECONDITION);
        assert_int_equal(us_grpc_code_from_errno(-EHWPOISON), US_GRPC_UNKNOWN);
        const int errnos[] = {ECANCELED, EINVAL,   ETIMEDOUT, ENOENT,      EEXIST,
                              EPERM,     ENOSPC,   EBUSY,     ERANGE,      ENOSYS,
                              EREMOTEIO, ENOTCONN, EBADMSG,   ECONNABORTED};
        for (size_t i = 0; i < US_ELEMENTSOF(errnos); i++)
                assert_int_equal(us_errno_from_grpc_code(us_grpc_code_from_errno(-errnos[i])),
                                 -errnos[i]);
        assert_int_equal(us_errno_from_grpc_code(US_GRPC_UNKNOWN), -EIO);
        assert_int_equal(us_errno_from_grpc_code(999), -EIO);
        assert_int_equal(us_errno_from_grpc_code(-1), -EIO);
}

/* ---- a real server in a thread ---- */

struct fixture {
        char dir[64];
        char path[128];
        pthread_t thread;
        struct us_loop *loop;
        struct us_ttrpc_server *srv;
        int quit_pipe[2];
        struct us_loop_source *quit_src;
        /* server thread only: the calls deferred by Wait */
        struct ttrpc_fx_held pending;
        /* shared: */
        atomic_uint n_conns;
        atomic_uint n_conn_events;
};

/* Echo: replies {key: payload's key, value: the namespace metadata}. */
static void m_echo(struct us_ttrpc_call *call, const uint8_t *p, size_t len, void *ud)
{
        (void)ud;
        ttrpc_fx_echo(call, p, len, "");
}

/* A key the request check refuses. */
static int check_kv(const ProtobufCMessage *m, struct us_error **err)
{
        const Ttrpc__KeyValue *kv = (const void *)m;
        if (strcmp(kv->key, "refused") == 0)
                return us_error_msg(err, EPERM, "key %s", kv->key);
        return 0;
}

/* Checked: unpacks with check_kv; key "gone" fails through
 * us_ttrpc_call_fail_error() with -ESRCH and value as the message. */
static void m_checked(struct us_ttrpc_call *call, const uint8_t *p, size_t len, void *ud)
{
        (void)ud;
        _cleanup_pb_ Ttrpc__KeyValue *in =
                us_ttrpc_call_unpack(call, &ttrpc__key_value__descriptor, check_kv, p, len);
        if (!in)
                return;
        if (strcmp(in->key, "gone") == 0) {
                struct us_error *err = NULL;
                (void)us_error_msg(&err, ESRCH, "%s", in->value);
                us_ttrpc_call_fail_error(call, -ESRCH, err);
                return;
        }
        us_ttrpc_call_reply(call, &in->base);
}

static void on_conns(unsigned n, void *ud)
{
        struct fixture *f = ud;
        atomic_store(&f->n_conns, n);
        atomic_fetch_add(&f->n_conn_events, 1);
}

static void on_quit(struct us_loop_source *src, int fd, uint32_t events, void *ud)
{
        (void)src;
        (void)fd;
        (void)events;
        struct fixture *f = ud;
        us_loop_quit(f->loop, 0);
}

static void *server_thread(void *ud)
{
        struct fixture *f = ud;
        (void)us_loop_run(f->loop);
        return NULL;
}

static int setup_server(void **state)
{
        alarm(ALARM_SECS(120));
        struct fixture *f = calloc(1, sizeof(*f));
        assert_non_null(f);
        strcpy(f->dir, "/tmp/test-ttrpc.XXXXXX");
        assert_non_null(mkdtemp(f->dir));
        snprintf(f->path, sizeof(f->path), "%s/s.sock", f->dir);

        int lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        assert_true(lfd >= 0);
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        strcpy(sa.sun_path, f->path);
        assert_int_equal(bind(lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
        assert_int_equal(listen(lfd, 64), 0);

        assert_int_equal(us_loop_new(&f->loop, NULL), 0);
        assert_int_equal(us_ttrpc_server_new(f->loop, lfd, &f->srv, NULL), 0);
        us_ttrpc_server_on_connections(f->srv, on_conns, f);
        assert_int_equal(us_ttrpc_server_register(f->srv, SERVICE, "Echo", m_echo, f, NULL), 0);
        assert_int_equal(
                us_ttrpc_server_register(f->srv, SERVICE, "Fail", ttrpc_fx_m_fail, f, NULL), 0);
        assert_int_equal(us_ttrpc_server_register(f->srv, SERVICE, "Checked", m_checked, f, NULL),
                         0);
        assert_int_equal(us_ttrpc_server_register(f->srv, SERVICE, "Wait", ttrpc_fx_m_hold,
                                                  &f->pending, NULL),
                         0);
        assert_int_equal(us_ttrpc_server_register(f->srv, SERVICE, "Release", ttrpc_fx_m_release,
                                                  &f->pending, NULL),
                         0);
        struct us_error *err = NULL;
        assert_int_equal(us_ttrpc_server_register(f->srv, SERVICE, "Echo", m_echo, f, &err),
                         -EEXIST);
        us_error_free(err);

        assert_int_equal(pipe2(f->quit_pipe, O_CLOEXEC), 0);
        assert_int_equal(
                us_loop_add_fd(f->loop, f->quit_pipe[0], EPOLLIN, on_quit, f, &f->quit_src, NULL),
                0);
        assert_int_equal(pthread_create(&f->thread, NULL, server_thread, f), 0);
        *state = f;
        return 0;
}

static int teardown_server(void **state)
{
        struct fixture *f = *state;
        assert_int_equal(write(f->quit_pipe[1], "q", 1), 1);
        assert_int_equal(pthread_join(f->thread, NULL), 0);
        /* The loop has stopped: this thread owns everything now. */
        f->srv = us_ttrpc_server_free(f->srv);
        ttrpc_fx_release_all(&f->pending); /* completing on closed connections only frees */
        us_loop_source_remove(f->quit_src);
        us_close(f->quit_pipe[0]);
        us_close(f->quit_pipe[1]);
        f->loop = us_loop_free(f->loop);
        unlink(f->path);
        rmdir(f->dir);
        free(f);
        alarm(0);
        return 0;
}

static int call_kv(struct us_ttrpc_client *c, const char *method, const char *key,
                   const char *value, int timeout_ms, Ttrpc__KeyValue **ret, struct us_error **err)
{
        Ttrpc__KeyValue in = TTRPC__KEY_VALUE__INIT;
        in.key = (char *)key;
        in.value = (char *)value;
        const struct us_ttrpc_kv md[] = {{"containerd-namespace-ttrpc", "k8s.io"}, {"x", "y"}};
        uint8_t *p = NULL;
        size_t len = 0;
        int r = us_ttrpc_client_call(c, SERVICE, method, &in.base, md, 2, timeout_ms, &p, &len,
                                     err);
        if (r < 0)
                return r;
        if (ret) {
                *ret = ttrpc__key_value__unpack(NULL, len, p);
                assert_non_null(*ret);
        }
        free(p);
        return 0;
}

static void expect_echo(struct us_ttrpc_client *c, const char *key)
{
        Ttrpc__KeyValue *out = NULL;
        struct us_error *err = NULL;
        int r = call_kv(c, "Echo", key, "", TIMEOUT_MS, &out, &err);
        if (r < 0)
                fail_msg("Echo: %s", us_error_text(err));
        assert_string_equal(out->key, key);
        assert_string_equal(out->value, "k8s.io");
        ttrpc__key_value__free_unpacked(out, NULL);
}

static void roundtrip(void **state)
{
        struct fixture *f = *state;
        struct us_ttrpc_client *c = NULL;
        assert_int_equal(us_ttrpc_client_connect(f->path, &c, NULL), 0);
        for (int i = 0; i < 50; i++)
                expect_echo(c, i % 2 ? "odd" : "even");

        /* Empty request and empty response. */
        uint8_t *p = (uint8_t *)"junk";
        size_t len = 99;
        assert_int_equal(us_ttrpc_client_call(c, SERVICE, "Release", NULL, NULL, 0, TIMEOUT_MS, &p,
                                              &len, NULL),
                         0);
        assert_null(p);
        assert_int_equal(len, 0);

        /* A large payload, close to the limit, in both directions. */
        size_t big = 3u << 20;
        char *key = malloc(big + 1);
        memset(key, 'k', big);
        key[big] = 0;
        expect_echo(c, key);
        free(key);
        c = us_ttrpc_client_free(c);

        struct us_error *err = NULL;
        assert_true(us_ttrpc_client_connect("/nonexistent/dir/sock", &c, &err) < 0);
        assert_non_null(strstr(us_error_text(err), "/nonexistent/dir/sock"));
        us_error_free(err);
}

static void unknown_method_and_service(void **state)
{
        struct fixture *f = *state;
        struct us_ttrpc_client *c = NULL;
        assert_int_equal(us_ttrpc_client_connect(f->path, &c, NULL), 0);
        struct us_error *err = NULL;
        int r = us_ttrpc_client_call(c, SERVICE, "Nope", NULL, NULL, 0, TIMEOUT_MS, NULL, NULL,
                                     &err);
        assert_int_equal(r, -ENOSYS);
        assert_non_null(strstr(us_error_text(err), "method Nope"));
        err = us_error_free(err);
        r = us_ttrpc_client_call(c, "no.Such", "Echo", NULL, NULL, 0, TIMEOUT_MS, NULL, NULL, &err);
        assert_int_equal(r, -ENOSYS);
        assert_non_null(strstr(us_error_text(err), "service no.Such"));
        err = us_error_free(err);
        /* The connection still works. */
        expect_echo(c, "after");
        us_ttrpc_client_free(c);
}

static void error_status_to_errno(void **state)
{
        struct fixture *f = *state;
        struct us_ttrpc_client *c = NULL;
        assert_int_equal(us_ttrpc_client_connect(f->path, &c, NULL), 0);
        const struct {
                int code;
                int err;
        } cases[] = {{US_GRPC_NOT_FOUND, -ENOENT},
                     {US_GRPC_ALREADY_EXISTS, -EEXIST},
                     {US_GRPC_INVALID_ARGUMENT, -EINVAL},
                     {US_GRPC_DEADLINE_EXCEEDED, -ETIMEDOUT},
                     {US_GRPC_FAILED_PRECONDITION, -EBUSY},
                     {US_GRPC_UNIMPLEMENTED, -ENOSYS},
                     {US_GRPC_INTERNAL, -EREMOTEIO},
                     {US_GRPC_OK, -EIO}}; /* a "failure" with OK is sent as UNKNOWN */
        for (size_t i = 0; i < US_ELEMENTSOF(cases); i++) {
                char code[16];
                snprintf(code, sizeof(code), "%d", cases[i].code);
                struct us_error *err = NULL;
                int r = call_kv(c, "Fail", code, "task xyz", TIMEOUT_MS, NULL, &err);
                assert_int_equal(r, cases[i].err);
                assert_non_null(err);
                assert_int_equal(err->code, -cases[i].err);
                assert_non_null(strstr(us_error_text(err), "it failed: task xyz"));
                us_error_free(err);
        }
        us_ttrpc_client_free(c);
}

/* us_ttrpc_call_unpack() and us_ttrpc_call_fail_error(), as a handler uses
 * them: a checked request, a refused one, a failed operation. */
static void handler_unpack_and_fail(void **state)
{
        struct fixture *f = *state;
        struct us_ttrpc_client *c = NULL;
        assert_int_equal(us_ttrpc_client_connect(f->path, &c, NULL), 0);
        Ttrpc__KeyValue *out = NULL;
        struct us_error *err = NULL;
        assert_int_equal(call_kv(c, "Checked", "fine", "v", TIMEOUT_MS, &out, NULL), 0);
        assert_string_equal(out->key, "fine");
        ttrpc__key_value__free_unpacked(out, NULL);

        /* The check's errno does not leak: a refused request is the client's
         * fault, whatever the check said. */
        assert_int_equal(call_kv(c, "Checked", "refused", "", TIMEOUT_MS, NULL, &err), -EINVAL);
        assert_non_null(strstr(us_error_text(err), "Checked: key refused"));
        err = us_error_free(err);

        assert_int_equal(call_kv(c, "Checked", "gone", "process 7 exited", TIMEOUT_MS, NULL, &err),
                         -ENOENT); /* ESRCH is NOT_FOUND */
        assert_non_null(strstr(us_error_text(err), "process 7 exited"));
        err = us_error_free(err);

        /* A payload that is no KeyValue: field 1 as a varint. */
        Ttrpc__Status st = TTRPC__STATUS__INIT;
        st.code = 5;
        assert_int_equal(us_ttrpc_client_call(c, SERVICE, "Checked", &st.base, NULL, 0, TIMEOUT_MS,
                                              NULL, NULL, &err),
                         -EINVAL);
        assert_non_null(strstr(us_error_text(err), "Checked: malformed request"));
        err = us_error_free(err);
        us_ttrpc_client_free(c);
}

/* us_ttrpc_request_unpack() alone: limits, garbage, the check, who frees the message. */
static void request_unpack(void **state)
{
        (void)state;
        Ttrpc__KeyValue in = TTRPC__KEY_VALUE__INIT;
        in.key = (char *)"k";
        in.value = (char *)"v";
        uint8_t buf[64];
        size_t n = protobuf_c_message_pack(&in.base, buf);

        ProtobufCMessage *m = NULL;
        assert_int_equal(
                us_ttrpc_request_unpack("M", &ttrpc__key_value__descriptor, NULL, buf, n, &m, NULL),
                0);
        assert_string_equal(((Ttrpc__KeyValue *)m)->value, "v");
        protobuf_c_message_free_unpacked(m, NULL);

        /* Refused: *ret stays untouched, the message names the method. */
        ProtobufCMessage *untouched = (ProtobufCMessage *)buf;
        m = untouched;
        struct us_error *err = NULL;
        in.key = (char *)"refused";
        n = protobuf_c_message_pack(&in.base, buf);
        assert_int_equal(us_ttrpc_request_unpack("M", &ttrpc__key_value__descriptor, check_kv, buf,
                                                 n, &m, &err),
                         -EPERM);
        assert_ptr_equal(m, untouched);
        assert_string_equal(us_error_text(err), "M: key refused");
        err = us_error_free(err);

        static const uint8_t garbage[] = {0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f};
        assert_int_equal(us_ttrpc_request_unpack("M", &ttrpc__key_value__descriptor, NULL, garbage,
                                                 sizeof(garbage), &m, &err),
                         -EBADMSG);
        assert_string_equal(us_error_text(err), "M: malformed request");
        err = us_error_free(err);

        /* Past the limit it is refused before protobuf-c reads a byte. */
        assert_int_equal(us_ttrpc_request_unpack("M", &ttrpc__key_value__descriptor, NULL, garbage,
                                                 US_TTRPC_MAX_MESSAGE + 1, &m, &err),
                         -EMSGSIZE);
        assert_string_equal(us_error_text(err), "M: request too large");
        err = us_error_free(err);
        assert_ptr_equal(m, untouched);
}

/* ---- raw protocol helpers ---- */

static int raw_connect(const struct fixture *f)
{
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        assert_true(fd >= 0);
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        strcpy(sa.sun_path, f->path);
        assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
        return fd;
}

static void raw_send(int fd, const void *p, size_t len)
{
        const uint8_t *b = p;
        while (len > 0) {
                ssize_t n = send(fd, b, len, MSG_NOSIGNAL);
                assert_true(n > 0);
                b += n;
                len -= (size_t)n;
        }
}

static void raw_frame(int fd, uint32_t stream, uint8_t type, const void *p, size_t len)
{
        uint8_t hdr[US_TTRPC_HEADER_SIZE];
        struct us_ttrpc_header h = {.length = (uint32_t)len, .stream_id = stream, .type = type};
        us_ttrpc_header_encode(&h, hdr);
        raw_send(fd, hdr, sizeof(hdr));
        if (len)
                raw_send(fd, p, len);
}

static void raw_request(int fd, uint32_t stream, const char *method, const char *key)
{
        Ttrpc__KeyValue kv = TTRPC__KEY_VALUE__INIT;
        kv.key = (char *)key;
        uint8_t pl[256];
        size_t pn = ttrpc__key_value__pack(&kv, pl);
        Ttrpc__Request req = TTRPC__REQUEST__INIT;
        req.service = SERVICE;
        req.method = (char *)method;
        req.payload.data = pl;
        req.payload.len = pn;
        uint8_t buf[512];
        size_t n = ttrpc__request__pack(&req, buf);
        raw_frame(fd, stream, US_TTRPC_TYPE_REQUEST, buf, n);
}

static void raw_read(int fd, void *p, size_t len)
{
        uint8_t *b = p;
        while (len > 0) {
                struct pollfd pfd = {.fd = fd, .events = POLLIN};
                assert_int_equal(poll(&pfd, 1, TIMEOUT_MS), 1);
                ssize_t n = read(fd, b, len);
                assert_true(n > 0);
                b += n;
                len -= (size_t)n;
        }
}

/* Reads one response frame; returns the stream id. */
static uint32_t raw_response(int fd, Ttrpc__Response **ret)
{
        uint8_t hdr[US_TTRPC_HEADER_SIZE];
        raw_read(fd, hdr, sizeof(hdr));
        struct us_ttrpc_header h;
        assert_int_equal(us_ttrpc_header_decode(hdr, &h, NULL), 0);
        assert_int_equal(h.type, US_TTRPC_TYPE_RESPONSE);
        uint8_t *p = malloc(h.length + 1);
        raw_read(fd, p, h.length);
        *ret = ttrpc__response__unpack(NULL, h.length, p);
        assert_non_null(*ret);
        assert_non_null((*ret)->status);
        free(p);
        return h.stream_id;
}

static void expect_status(int fd, uint32_t stream, int code, const char *msg_part)
{
        Ttrpc__Response *resp;
        assert_int_equal(raw_response(fd, &resp), stream);
        assert_int_equal(resp->status->code, code);
        if (msg_part)
                assert_non_null(strstr(resp->status->message, msg_part));
        ttrpc__response__free_unpacked(resp, NULL);
}

static void malformed_frames(void **state)
{
        struct fixture *f = *state;
        int fd = raw_connect(f);

        /* Garbage protobuf: INVALID_ARGUMENT on that stream. */
        const uint8_t garbage[] = {0x0a, 0xc8, 0x01, 'a'};
        raw_frame(fd, 1, US_TTRPC_TYPE_REQUEST, garbage, sizeof(garbage));
        expect_status(fd, 1, US_GRPC_INVALID_ARGUMENT, "unmarshal");

        /* Even stream id. */
        raw_request(fd, 2, "Echo", "x");
        expect_status(fd, 2, US_GRPC_INVALID_ARGUMENT, "odd");

        /* Wrong type: ignored (no answer); the next request is answered. */
        raw_frame(fd, 3, US_TTRPC_TYPE_RESPONSE, garbage, sizeof(garbage));
        raw_frame(fd, 5, 77, garbage, sizeof(garbage));
        raw_request(fd, 7, "Nope", "x");
        expect_status(fd, 7, US_GRPC_UNIMPLEMENTED, "method Nope");

        /* Oversized: RESOURCE_EXHAUSTED, payload discarded, stream continues. */
        size_t big = US_TTRPC_MAX_MESSAGE + 1;
        uint8_t *zeros = calloc(1, big);
        raw_frame(fd, 9, US_TTRPC_TYPE_REQUEST, zeros, big);
        free(zeros);
        expect_status(fd, 9, US_GRPC_RESOURCE_EXHAUSTED, "exceeds maximum");
        raw_request(fd, 11, "Echo", "still");
        Ttrpc__Response *resp;
        assert_int_equal(raw_response(fd, &resp), 11);
        assert_int_equal(resp->status->code, 0);
        Ttrpc__KeyValue *kv = ttrpc__key_value__unpack(NULL, resp->payload.len, resp->payload.data);
        assert_non_null(kv);
        assert_string_equal(kv->key, "still");
        ttrpc__key_value__free_unpacked(kv, NULL);
        ttrpc__response__free_unpacked(resp, NULL);
        close(fd);
}

static void concurrent_deferred_out_of_order(void **state)
{
        struct fixture *f = *state;
        int fd = raw_connect(f);
        raw_request(fd, 1, "Wait", "one");
        raw_request(fd, 3, "Wait", "three");
        raw_request(fd, 5, "Echo", "five"); /* answered at once, between deferred ones */
        raw_request(fd, 7, "Wait", "seven");

        Ttrpc__Response *resp;
        assert_int_equal(raw_response(fd, &resp), 5);
        ttrpc__response__free_unpacked(resp, NULL);

        /* A second client releases them; they come back 7, 3, 1. */
        struct us_ttrpc_client *c = NULL;
        assert_int_equal(us_ttrpc_client_connect(f->path, &c, NULL), 0);
        assert_int_equal(us_ttrpc_client_call(c, SERVICE, "Release", NULL, NULL, 0, TIMEOUT_MS,
                                              NULL, NULL, NULL),
                         0);
        const uint32_t order[] = {7, 3, 1};
        const char *keys[] = {"seven", "three", "one"};
        for (int i = 0; i < 3; i++) {
                assert_int_equal(raw_response(fd, &resp), order[i]);
                assert_int_equal(resp->status->code, 0);
                Ttrpc__KeyValue *kv =
                        ttrpc__key_value__unpack(NULL, resp->payload.len, resp->payload.data);
                assert_string_equal(kv->key, keys[i]);
                assert_string_equal(kv->value, "released");
                ttrpc__key_value__free_unpacked(kv, NULL);
                ttrpc__response__free_unpacked(resp, NULL);
        }
        us_ttrpc_client_free(c);
        close(fd);
}

/* Waits until the server thread reports n connections. */
static void wait_conns(struct fixture *f, unsigned n)
{
        int64_t deadline = us_monotonic_ms() + TIMEOUT_MS;
        while (atomic_load(&f->n_conns) != n && us_monotonic_ms() < deadline)
                usleep(10000);
        assert_int_equal(atomic_load(&f->n_conns), n);
}

static void disconnect_before_deferred_reply(void **state)
{
        struct fixture *f = *state;
        int fd = raw_connect(f);
        raw_request(fd, 1, "Wait", "orphan");
        raw_request(fd, 3, "Wait", "orphan2");
        wait_conns(f, 1);
        close(fd);
        wait_conns(f, 0); /* the server saw the close */

        /* Completing the orphaned calls must neither crash nor send anything. */
        struct us_ttrpc_client *c = NULL;
        assert_int_equal(us_ttrpc_client_connect(f->path, &c, NULL), 0);
        assert_int_equal(us_ttrpc_client_call(c, SERVICE, "Release", NULL, NULL, 0, TIMEOUT_MS,
                                              NULL, NULL, NULL),
                         0);
        expect_echo(c, "alive");
        us_ttrpc_client_free(c);
        wait_conns(f, 0);
}

static void stalled_client_does_not_block_others(void **state)
{
        struct fixture *f = *state;
        /* A: half a header, then silence. */
        int a = raw_connect(f);
        raw_send(a, "\x00\x00\x01", 3);
        /* B: a header promising 1 MiB and 100 bytes of it. */
        int b = raw_connect(f);
        uint8_t hdr[US_TTRPC_HEADER_SIZE];
        struct us_ttrpc_header h = {.length = 1u << 20, .stream_id = 1, .type = 1};
        us_ttrpc_header_encode(&h, hdr);
        raw_send(b, hdr, sizeof(hdr));
        uint8_t junk[100] = {0};
        raw_send(b, junk, sizeof(junk));

        /* C: never reads its responses, floods requests until its socket
         * is full; the server must stop reading it rather than block. That
         * the server stopped is inferred from a socket that stays full: two
         * polls (scaled, so a slow server is not taken for a stopped one). */
        int c = raw_connect(f);
        int fl = fcntl(c, F_GETFL);
        assert_int_equal(fcntl(c, F_SETFL, fl | O_NONBLOCK), 0);
        Ttrpc__KeyValue kv = TTRPC__KEY_VALUE__INIT;
        size_t keylen = 60000;
        kv.key = malloc(keylen + 1);
        memset(kv.key, 'z', keylen);
        kv.key[keylen] = 0;
        size_t pn = ttrpc__key_value__get_packed_size(&kv);
        uint8_t *pl = malloc(pn);
        ttrpc__key_value__pack(&kv, pl);
        Ttrpc__Request req = TTRPC__REQUEST__INIT;
        req.service = SERVICE;
        req.method = "Echo";
        req.payload.data = pl;
        req.payload.len = pn;
        size_t rn = ttrpc__request__get_packed_size(&req);
        uint8_t *frame = malloc(US_TTRPC_HEADER_SIZE + rn);
        size_t sent_frames = 0;
        for (uint32_t stream = 1; stream < 200000; stream += 2) {
                struct us_ttrpc_header rh = {
                        .length = (uint32_t)rn, .stream_id = stream, .type = 1};
                us_ttrpc_header_encode(&rh, frame);
                ttrpc__request__pack(&req, frame + US_TTRPC_HEADER_SIZE);
                size_t off = 0, tot = US_TTRPC_HEADER_SIZE + rn;
                int stuck = 0;
                while (off < tot) {
                        ssize_t n = send(c, frame + off, tot - off, MSG_NOSIGNAL);
                        if (n > 0) {
                                off += (size_t)n;
                                continue;
                        }
                        assert_true(n < 0 && errno == EAGAIN);
                        struct pollfd pfd = {.fd = c, .events = POLLOUT};
                        if (poll(&pfd, 1, unit_wait_ms(500)) == 0 && ++stuck >= 2)
                                break;
                }
                if (off < tot)
                        break; /* the server stopped reading us: good */
                sent_frames++;
        }
        assert_true(sent_frames > 20); /* more than 1 MiB of responses queued */
        free(frame);
        free(pl);
        free(kv.key);

        /* D: served in spite of A, B and C, which stay stalled: a server
         * blocked on any of them would never answer (TIMEOUT_MS is only the
         * hang guard), so no clock is needed to tell. */
        wait_conns(f, 3);
        struct us_ttrpc_client *d = NULL;
        assert_int_equal(us_ttrpc_client_connect(f->path, &d, NULL), 0);
        expect_echo(d, "prompt");
        us_ttrpc_client_free(d);
        wait_conns(f, 3);
        close(a);
        close(b);
        close(c);
        wait_conns(f, 0);
}

static void client_timeout_then_skips_stale_response(void **state)
{
        struct fixture *f = *state;
        struct us_ttrpc_client *c = NULL;
        assert_int_equal(us_ttrpc_client_connect(f->path, &c, NULL), 0);
        struct us_error *err = NULL;
        int r = call_kv(c, "Wait", "late", "", 200, NULL, &err);
        assert_int_equal(r, -ETIMEDOUT);
        err = us_error_free(err);
        /* Release answers stream 1 late, then stream 3 (Release itself). */
        assert_int_equal(us_ttrpc_client_call(c, SERVICE, "Release", NULL, NULL, 0, TIMEOUT_MS,
                                              NULL, NULL, NULL),
                         0);
        expect_echo(c, "next");
        us_ttrpc_client_free(c);
}

/* ---- the client against a hostile peer (a socketpair we script) ---- */

static void hostile_server(void **state)
{
        (void)state;
        alarm(ALARM_SECS(60));
        struct {
                const char *name;
                int expect;
        } cases[] = {{"oversized", -EPROTO},
                     {"garbage", -EPROTO},
                     {"wrong-stream", 0},
                     {"eof", -ECONNRESET},
                     {"silent", -ETIMEDOUT}};
        for (size_t i = 0; i < US_ELEMENTSOF(cases); i++) {
                int sv[2];
                assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
                struct us_ttrpc_client *c = NULL;
                assert_int_equal(us_ttrpc_client_from_fd(sv[0], &c, NULL), 0);
                const char *name = cases[i].name;
                Ttrpc__Status st = TTRPC__STATUS__INIT;
                Ttrpc__Response resp = TTRPC__RESPONSE__INIT;
                resp.status = &st;
                uint8_t buf[64];
                size_t n = ttrpc__response__pack(&resp, buf);
                if (!strcmp(name, "oversized")) {
                        uint8_t hdr[US_TTRPC_HEADER_SIZE];
                        struct us_ttrpc_header h = {
                                .length = 0xffffffff, .stream_id = 1, .type = 2};
                        us_ttrpc_header_encode(&h, hdr);
                        raw_send(sv[1], hdr, sizeof(hdr));
                } else if (!strcmp(name, "garbage")) {
                        raw_frame(sv[1], 1, US_TTRPC_TYPE_RESPONSE, "\x0a\xff", 2);
                } else if (!strcmp(name, "wrong-stream")) {
                        raw_frame(sv[1], 99, US_TTRPC_TYPE_RESPONSE, "\x0a\xff", 2);
                        raw_frame(sv[1], 1, US_TTRPC_TYPE_REQUEST, buf, n);
                        raw_frame(sv[1], 1, US_TTRPC_TYPE_RESPONSE, buf, n);
                } else if (!strcmp(name, "eof")) {
                        raw_send(sv[1], "\x00\x00", 2);
                        shutdown(sv[1], SHUT_WR);
                }
                /* The peer's bytes are all there: only "silent" may time
                 * out, and only its short timeout is part of the test. */
                int ms = cases[i].expect == -ETIMEDOUT ? 300 : TIMEOUT_MS;
                struct us_error *err = NULL;
                int r = us_ttrpc_client_call(c, SERVICE, "Echo", NULL, NULL, 0, ms, NULL, NULL,
                                             &err);
                if (r != cases[i].expect)
                        fail_msg("%s: got %d (%s), want %d", name, r, us_error_text(err),
                                 cases[i].expect);
                err = us_error_free(err);
                if (cases[i].expect == -EPROTO || cases[i].expect == -ECONNRESET) {
                        /* Broken for good: no resynchronising on garbage. */
                        r = us_ttrpc_client_call(c, SERVICE, "Echo", NULL, NULL, 0, TIMEOUT_MS,
                                                 NULL, NULL, &err);
                        assert_int_equal(r, -ENOTCONN);
                        err = us_error_free(err);
                }
                us_ttrpc_client_free(c);
                close(sv[1]);
        }
        alarm(0);
}

static void unbounded_output_closes_connection(void **state)
{
        struct fixture *f = *state;
        int fd = raw_connect(f);
        /* Deferred calls whose replies, released at once, exceed the 16 MiB
         * output bound while the client reads nothing. */
        size_t keylen = 60000, calls = 320;
        char *key = malloc(keylen + 1);
        memset(key, 'q', keylen);
        key[keylen] = 0;
        Ttrpc__KeyValue kv = TTRPC__KEY_VALUE__INIT;
        kv.key = key;
        size_t pn = ttrpc__key_value__get_packed_size(&kv);
        uint8_t *pl = malloc(pn);
        ttrpc__key_value__pack(&kv, pl);
        Ttrpc__Request req = TTRPC__REQUEST__INIT;
        req.service = SERVICE;
        req.method = "Wait";
        req.payload.data = pl;
        req.payload.len = pn;
        size_t rn = ttrpc__request__get_packed_size(&req);
        uint8_t *buf = malloc(rn);
        ttrpc__request__pack(&req, buf);
        for (uint32_t i = 0; i < calls; i++)
                raw_frame(fd, 2 * i + 1, US_TTRPC_TYPE_REQUEST, buf, rn);
        free(buf);
        free(pl);
        free(key);

        struct us_ttrpc_client *c = NULL;
        assert_int_equal(us_ttrpc_client_connect(f->path, &c, NULL), 0);
        wait_conns(f, 2);
        assert_int_equal(us_ttrpc_client_call(c, SERVICE, "Release", NULL, NULL, 0, TIMEOUT_MS,
                                              NULL, NULL, NULL),
                         0);
        wait_conns(f, 1); /* the flooded connection was dropped, not grown */
        expect_echo(c, "unaffected");
        us_ttrpc_client_free(c);
        close(fd);
}

/* A server without a listener, serving one connected fd (the guest agent's
 * virtio-serial port), driven by the loop in this thread. */
static void m_echo_quit(struct us_ttrpc_call *call, const uint8_t *p, size_t len, void *ud)
{
        m_echo(call, p, len, NULL);
        us_loop_quit(ud, 0);
}

static void serve_connected_fd(void **state)
{
        (void)state;
        alarm(ALARM_SECS(30));
        struct us_loop *loop = NULL;
        struct us_ttrpc_server *srv = NULL;
        assert_int_equal(us_loop_new(&loop, NULL), 0);
        assert_int_equal(us_ttrpc_server_new(loop, -1, &srv, NULL), 0);
        assert_int_equal(us_ttrpc_server_register(srv, SERVICE, "Echo", m_echo_quit, loop, NULL),
                         0);
        int sv[2];
        assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
        assert_int_equal(us_ttrpc_server_add_connection(srv, sv[0], NULL), 0);
        raw_request(sv[1], 1, "Echo", "agent");
        assert_int_equal(us_loop_run(loop), 0);
        Ttrpc__Response *resp;
        assert_int_equal(raw_response(sv[1], &resp), 1);
        assert_int_equal(resp->status->code, 0);
        ttrpc__response__free_unpacked(resp, NULL);
        srv = us_ttrpc_server_free(srv);
        loop = us_loop_free(loop);
        close(sv[1]);
        alarm(0);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(header_roundtrip),
                cmocka_unit_test(rbuf_partial_and_oversized),
                cmocka_unit_test(decode_garbage),
                cmocka_unit_test(errno_mapping),
                cmocka_unit_test(request_unpack),
                cmocka_unit_test_setup_teardown(handler_unpack_and_fail, setup_server,
                                                teardown_server),
                cmocka_unit_test(hostile_server),
                cmocka_unit_test(serve_connected_fd),
                cmocka_unit_test_setup_teardown(roundtrip, setup_server, teardown_server),
                cmocka_unit_test_setup_teardown(unknown_method_and_service, setup_server,
                                                teardown_server),
                cmocka_unit_test_setup_teardown(error_status_to_errno, setup_server,
                                                teardown_server),
                cmocka_unit_test_setup_teardown(malformed_frames, setup_server, teardown_server),
                cmocka_unit_test_setup_teardown(concurrent_deferred_out_of_order, setup_server,
                                                teardown_server),
                cmocka_unit_test_setup_teardown(disconnect_before_deferred_reply, setup_server,
                                                teardown_server),
                cmocka_unit_test_setup_teardown(stalled_client_does_not_block_others, setup_server,
                                                teardown_server),
                cmocka_unit_test_setup_teardown(unbounded_output_closes_connection, setup_server,
                                                teardown_server),
                cmocka_unit_test_setup_teardown(client_timeout_then_skips_stale_response,
                                                setup_server, teardown_server),
        };
        return unit_exit(unit_run_group_tests(tests, NULL, NULL));
}
