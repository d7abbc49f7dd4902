/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The asynchronous ttrpc client against the real libunishim ttrpc server, both
 * on one us_loop in this thread, over a socketpair; and against a fake peer
 * (the other end of the socketpair, written raw) for hostile input. The loop
 * is driven by run_until(), a ticking timer that quits it when a condition
 * holds or a deadline passes; alarm() ends a test that hangs anyway.
 *
 * Waits are for events: the deadlines (RUN_MS, CALL_MS, ALARM_SECS, scaled
 * by unit_wait_ms()) only tell a hang from a slow machine. The short call
 * timeouts that remain are the thing tested, and run_for() only checks that
 * nothing more happens.
 */
#include <errno.h>
#include <poll.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "unit.h"

#include "base/cleanup.h"
#include "base/loop.h"
#include "ttrpc/ttrpc.h"
#include "ttrpc-fixtures.h"

#define SERVICE  "unishim.test.v1.Test"
#define MAX_RECS 256
/* How long the loop may run for an event bound to happen. */
#define RUN_MS unit_wait_ms(10000)
/* The timeout of a call that must not time out during its test. */
#define CALL_MS    unit_wait_ms(10000)
#define ALARM_SECS (unit_wait_ms(60000) / 1000)

struct fx;

/* What one call's callback saw. */
struct rec {
        struct fx *f;
        int n; /* invocations: must end at exactly 1 */
        int status;
        int seq; /* completion order */
        size_t len;
        char key[64];
        char value[64];
        char msg[512];
        /* Re-entrancy hooks. */
        int chain; /* issue this many more Echo calls, one from each callback */
        bool free_client;
        bool call_from_cb; /* try a call from the callback, record its result */
        int call_from_cb_r;
};

struct fx {
        struct us_loop *loop;
        struct us_ttrpc_server *srv;
        struct us_ttrpc_aclient *c;
        int peer;                  /* raw other end (fake peer tests), else -1 */
        struct ttrpc_fx_held held; /* the calls deferred by Hold */
        struct rec recs[MAX_RECS];
        int seq;
        int closes;
        int close_reason;
        bool free_on_close;
        /* run_until */
        bool (*done)(struct fx *);
        int64_t deadline;
        size_t want_held; /* run_until_held */
};

static int64_t now_ms(void)
{
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- server side ---- */

/* Echo: {key, value: the namespace metadata or "echo"}. */
static void m_echo(struct us_ttrpc_call *call, const uint8_t *p, size_t len, void *ud)
{
        (void)ud;
        ttrpc_fx_echo(call, p, len, "echo");
}

/* ---- fixture ---- */

static void on_close(void *ud, int reason)
{
        struct fx *f = ud;
        f->closes++;
        f->close_reason = reason;
        if (f->free_on_close)
                f->c = us_ttrpc_aclient_free(f->c);
}

static struct fx *fx_new(bool with_server)
{
        alarm(ALARM_SECS);
        struct fx *f = calloc(1, sizeof(*f));
        assert_non_null(f);
        f->peer = -1;
        for (size_t i = 0; i < MAX_RECS; i++)
                f->recs[i].f = f;
        assert_int_equal(us_loop_new(&f->loop, NULL), 0);
        int sv[2];
        assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
        struct us_error *err = NULL;
        assert_int_equal(us_ttrpc_aclient_new(f->loop, sv[0], &f->c, &err), 0);
        assert_null(err);
        us_ttrpc_aclient_on_close(f->c, on_close, f);
        if (with_server) {
                assert_int_equal(us_ttrpc_server_new(f->loop, -1, &f->srv, NULL), 0);
                assert_int_equal(us_ttrpc_server_register(f->srv, SERVICE, "Echo", m_echo, f, NULL),
                                 0);
                assert_int_equal(
                        us_ttrpc_server_register(f->srv, SERVICE, "Fail", ttrpc_fx_m_fail, f, NULL),
                        0);
                assert_int_equal(us_ttrpc_server_register(f->srv, SERVICE, "Hold", ttrpc_fx_m_hold,
                                                          &f->held, NULL),
                                 0);
                assert_int_equal(us_ttrpc_server_register(f->srv, SERVICE, "Release",
                                                          ttrpc_fx_m_release, &f->held, NULL),
                                 0);
                assert_int_equal(us_ttrpc_server_add_connection(f->srv, sv[1], NULL), 0);
        } else {
                f->peer = sv[1];
        }
        return f;
}

static void fx_free(struct fx *f)
{
        f->c = us_ttrpc_aclient_free(f->c);
        /* Held calls outlive their connection: complete them (silently). */
        while (f->held.n > 0) {
                size_t i = --f->held.n;
                us_ttrpc_call_fail(f->held.call[i], US_GRPC_CANCELLED, "test over");
                free(f->held.key[i]);
        }
        f->srv = us_ttrpc_server_free(f->srv);
        if (f->peer >= 0)
                close(f->peer);
        f->loop = us_loop_free(f->loop);
        free(f);
        alarm(0);
}

static void tick(struct us_loop_source *src, void *ud)
{
        (void)src;
        struct fx *f = ud;
        if (f->done(f)) {
                us_loop_quit(f->loop, 0);
                return;
        }
        if (now_ms() >= f->deadline) {
                us_loop_quit(f->loop, -ETIMEDOUT);
                return;
        }
        assert_int_equal(us_loop_add_timer(f->loop, 2, tick, f, NULL, NULL), 0);
}

/* Runs the loop until done(f) or timeout_ms; returns 0 or -ETIMEDOUT. */
static int run_until(struct fx *f, bool (*done)(struct fx *), int timeout_ms)
{
        if (done(f))
                return 0;
        f->done = done;
        f->deadline = now_ms() + timeout_ms;
        assert_int_equal(us_loop_add_timer(f->loop, 1, tick, f, NULL, NULL), 0);
        return us_loop_run(f->loop);
}

static bool never(struct fx *f)
{
        (void)f;
        return false;
}

/* Runs the loop for ms (to see that nothing more happens). */
static void run_for(struct fx *f, int ms)
{
        assert_int_equal(run_until(f, never, ms), -ETIMEDOUT);
}

static bool holds_wanted(struct fx *f)
{
        return f->held.n >= f->want_held;
}

/* Runs the loop until the server holds n calls (they reached it). */
static void run_until_held(struct fx *f, size_t n)
{
        f->want_held = n;
        assert_int_equal(run_until(f, holds_wanted, RUN_MS), 0);
        assert_int_equal(f->held.n, n);
}

static bool no_pending(struct fx *f)
{
        return !f->c || us_ttrpc_aclient_pending(f->c) == 0;
}

static bool closed(struct fx *f)
{
        return f->closes > 0;
}

/* ---- client side ---- */

static void on_reply(int status, const uint8_t *payload, size_t len, const struct us_error *err,
                     void *ud);

static uint64_t call_kv(struct fx *f, struct rec *r, const char *method, const char *key,
                        const char *value, int timeout_ms)
{
        Ttrpc__KeyValue kv = TTRPC__KEY_VALUE__INIT;
        kv.key = (char *)key;
        kv.value = (char *)(value ? value : "");
        uint64_t id = 0;
        struct us_error *err = NULL;
        int r_ = us_ttrpc_aclient_call(f->c, SERVICE, method, &kv.base, NULL, 0, timeout_ms,
                                       on_reply, r, &id, &err);
        if (r_ < 0)
                fail_msg("call %s: %s", method, us_error_text(err));
        assert_true(id % 2 == 1);
        return id;
}

static void on_reply(int status, const uint8_t *payload, size_t len, const struct us_error *err,
                     void *ud)
{
        struct rec *r = ud;
        struct fx *f = r->f;
        r->n++;
        r->status = status;
        r->seq = f->seq++;
        if (status == 0) {
                assert_null(err);
                Ttrpc__KeyValue *kv = ttrpc__key_value__unpack(NULL, len, payload);
                if (kv) {
                        (void)snprintf(r->key, sizeof(r->key), "%s", kv->key);
                        (void)snprintf(r->value, sizeof(r->value), "%s", kv->value);
                        ttrpc__key_value__free_unpacked(kv, NULL);
                }
                r->len = len;
        } else {
                assert_null(payload);
                assert_int_equal(len, 0);
                (void)snprintf(r->msg, sizeof(r->msg), "%s", us_error_text(err));
        }
        if (r->call_from_cb && f->c) {
                Ttrpc__KeyValue kv = TTRPC__KEY_VALUE__INIT;
                kv.key = "from-cb";
                kv.value = "";
                r->call_from_cb_r = us_ttrpc_aclient_call(f->c, SERVICE, "Echo", &kv.base, NULL, 0,
                                                          0, on_reply, r + 1, NULL, NULL);
        }
        if (r->chain > 0 && f->c) {
                char key[32];
                (void)snprintf(key, sizeof(key), "chain%d", r->chain - 1);
                r[1].chain = r->chain - 1;
                (void)call_kv(f, r + 1, "Echo", key, NULL, CALL_MS);
        }
        if (r->free_client)
                f->c = us_ttrpc_aclient_free(f->c);
}

/* ---- tests against the real server ---- */

#define N_CONC 200

static bool conc_done(struct fx *f)
{
        return f->recs[N_CONC].n == 1 && no_pending(f);
}

static void concurrent_out_of_order(void **state)
{
        (void)state;
        struct fx *f = fx_new(true);
        uint64_t prev = 0;
        for (int i = 0; i < N_CONC; i++) {
                char key[16];
                (void)snprintf(key, sizeof(key), "k%d", i);
                uint64_t id = call_kv(f, &f->recs[i], "Hold", key, NULL, 0);
                assert_true(id > prev); /* odd, increasing stream ids */
                prev = id;
        }
        assert_int_equal(us_ttrpc_aclient_pending(f->c), N_CONC);
        assert_int_equal(run_until(f, conc_done, 0), -ETIMEDOUT); /* nothing answered yet */
        (void)call_kv(f, &f->recs[N_CONC], "Release", "", NULL, CALL_MS);
        assert_int_equal(run_until(f, conc_done, RUN_MS), 0);
        for (int i = 0; i < N_CONC; i++) {
                char key[16];
                (void)snprintf(key, sizeof(key), "k%d", i);
                assert_int_equal(f->recs[i].n, 1);
                assert_int_equal(f->recs[i].status, 0);
                assert_string_equal(f->recs[i].key, key);
                assert_string_equal(f->recs[i].value, "released");
                /* Answered newest first. */
                if (i > 0)
                        assert_true(f->recs[i].seq < f->recs[i - 1].seq);
        }
        run_for(f, 20);
        for (int i = 0; i <= N_CONC; i++)
                assert_int_equal(f->recs[i].n, 1);
        fx_free(f);
}

static bool echoes_done(struct fx *f)
{
        for (int i = 1; i <= 20; i++)
                if (f->recs[i].n != 1)
                        return false;
        return true;
}

static bool first_done(struct fx *f)
{
        return f->recs[0].n == 1;
}

static void long_poll_and_short_calls(void **state)
{
        (void)state;
        struct fx *f = fx_new(true);
        (void)call_kv(f, &f->recs[0], "Hold", "poll", NULL, 0);
        for (int i = 1; i <= 20; i++) {
                char key[16];
                (void)snprintf(key, sizeof(key), "e%d", i);
                (void)call_kv(f, &f->recs[i], "Echo", key, NULL, CALL_MS);
                /* Some issued while earlier ones are in flight, some after. */
                if (i % 5 == 0)
                        (void)run_until(f, echoes_done, 50);
        }
        assert_int_equal(run_until(f, echoes_done, RUN_MS), 0);
        for (int i = 1; i <= 20; i++) {
                char key[16];
                (void)snprintf(key, sizeof(key), "e%d", i);
                assert_int_equal(f->recs[i].status, 0);
                assert_string_equal(f->recs[i].key, key);
        }
        /* The long poll is still outstanding, untouched. */
        assert_int_equal(f->recs[0].n, 0);
        assert_int_equal(us_ttrpc_aclient_pending(f->c), 1);

        /* Metadata reaches the server. */
        Ttrpc__KeyValue kv = TTRPC__KEY_VALUE__INIT;
        kv.key = "md";
        kv.value = "";
        const struct us_ttrpc_kv md[] = {{"containerd-namespace-ttrpc", "k8s.io"}};
        assert_int_equal(us_ttrpc_aclient_call(f->c, SERVICE, "Echo", &kv.base, md, 1, CALL_MS,
                                               on_reply, &f->recs[21], NULL, NULL),
                         0);
        (void)call_kv(f, &f->recs[22], "Release", "", NULL, CALL_MS);
        assert_int_equal(run_until(f, first_done, RUN_MS), 0);
        assert_int_equal(run_until(f, no_pending, RUN_MS), 0);
        assert_int_equal(f->recs[0].status, 0);
        assert_string_equal(f->recs[0].key, "poll");
        assert_string_equal(f->recs[21].value, "k8s.io");
        fx_free(f);
}

static void error_status(void **state)
{
        (void)state;
        struct fx *f = fx_new(true);
        (void)call_kv(f, &f->recs[0], "Fail", "5", "no such thing", CALL_MS);
        (void)call_kv(f, &f->recs[1], "Fail", "4", "too slow", CALL_MS);
        (void)call_kv(f, &f->recs[2], "Nope", "", NULL, CALL_MS);
        assert_int_equal(run_until(f, no_pending, RUN_MS), 0);
        assert_int_equal(f->recs[0].status, -ENOENT);
        assert_non_null(strstr(f->recs[0].msg, "Test/Fail: it failed: no such thing"));
        assert_int_equal(f->recs[1].status, -ETIMEDOUT);
        assert_int_equal(f->recs[2].status, -ENOSYS);
        for (int i = 0; i < 3; i++)
                assert_int_equal(f->recs[i].n, 1);
        assert_int_equal(f->closes, 0);
        fx_free(f);
}

static bool three_timed_out(struct fx *f)
{
        return f->recs[0].n && f->recs[1].n && f->recs[2].n;
}

static void timeout_then_late_reply_dropped(void **state)
{
        (void)state;
        struct fx *f = fx_new(true);
        int64_t t0 = now_ms();
        /* Held by the server, never answered before their deadlines; the
         * one timer serves them in deadline order, not call order. */
        (void)call_kv(f, &f->recs[0], "Hold", "t300", NULL, 300);
        (void)call_kv(f, &f->recs[1], "Hold", "t100", NULL, 100);
        (void)call_kv(f, &f->recs[2], "Hold", "t200", NULL, 200);
        (void)call_kv(f, &f->recs[3], "Hold", "poll", NULL, 0);
        assert_int_equal(run_until(f, three_timed_out, RUN_MS), 0);
        int64_t elapsed = now_ms() - t0;
        assert_true(elapsed >= 300);
        assert_true(elapsed < unit_wait_ms(3000));
        for (int i = 0; i < 3; i++) {
                assert_int_equal(f->recs[i].n, 1);
                assert_int_equal(f->recs[i].status, -ETIMEDOUT);
                assert_non_null(strstr(f->recs[i].msg, "Test/Hold: ttrpc call timed out"));
        }
        assert_true(f->recs[1].seq < f->recs[2].seq);
        assert_true(f->recs[2].seq < f->recs[0].seq);
        assert_int_equal(f->recs[3].n, 0);
        assert_int_equal(us_ttrpc_aclient_pending(f->c), 1);

        /* Now the server answers all four: three are dropped. */
        (void)call_kv(f, &f->recs[4], "Release", "", NULL, CALL_MS);
        assert_int_equal(run_until(f, no_pending, RUN_MS), 0);
        run_for(f, 20);
        for (int i = 0; i < 5; i++)
                assert_int_equal(f->recs[i].n, 1);
        assert_int_equal(f->recs[3].status, 0);
        assert_string_equal(f->recs[3].key, "poll");
        assert_int_equal(f->closes, 0);
        fx_free(f);
}

static void cancel(void **state)
{
        (void)state;
        struct fx *f = fx_new(true);
        uint64_t a = call_kv(f, &f->recs[0], "Hold", "a", NULL, 0);
        uint64_t b = call_kv(f, &f->recs[1], "Hold", "b", NULL, CALL_MS);
        run_until_held(f, 2);
        us_ttrpc_aclient_cancel(f->c, a);
        /* Synchronous. */
        assert_int_equal(f->recs[0].n, 1);
        assert_int_equal(f->recs[0].status, -ECANCELED);
        assert_non_null(strstr(f->recs[0].msg, "Test/Hold"));
        us_ttrpc_aclient_cancel(f->c, a);          /* twice: no-op */
        us_ttrpc_aclient_cancel(f->c, 12345677);   /* unknown: no-op */
        us_ttrpc_aclient_cancel(f->c, 0);          /* invalid: no-op */
        us_ttrpc_aclient_cancel(f->c, UINT64_MAX); /* out of range: no-op */
        assert_int_equal(us_ttrpc_aclient_pending(f->c), 1);
        (void)call_kv(f, &f->recs[2], "Release", "", NULL, CALL_MS);
        assert_int_equal(run_until(f, no_pending, RUN_MS), 0);
        run_for(f, 20);
        assert_int_equal(f->recs[0].n, 1); /* its late answer was dropped */
        assert_int_equal(f->recs[1].n, 1);
        assert_int_equal(f->recs[1].status, 0);
        assert_string_equal(f->recs[1].key, "b");
        /* Cancelling a call that completed is a no-op too. */
        us_ttrpc_aclient_cancel(f->c, b);
        assert_int_equal(f->recs[1].n, 1);
        fx_free(f);
}

static void peer_closes_with_calls_pending(void **state)
{
        (void)state;
        struct fx *f = fx_new(true);
        for (int i = 0; i < 10; i++)
                (void)call_kv(f, &f->recs[i], "Hold", "x", NULL, i % 2 ? CALL_MS : 0);
        /* One callback tries a new call while the connection is ending. */
        f->recs[0].call_from_cb = true;
        f->recs[0].call_from_cb_r = 1;
        run_until_held(f, 10);
        f->srv = us_ttrpc_server_free(f->srv); /* closes the connection */
        assert_int_equal(run_until(f, closed, RUN_MS), 0);
        for (int i = 0; i < 10; i++) {
                assert_int_equal(f->recs[i].n, 1);
                assert_int_equal(f->recs[i].status, -ECONNRESET);
        }
        assert_int_equal(f->recs[0].call_from_cb_r, -ENOTCONN);
        assert_int_equal(f->recs[1].n, 1); /* not called by that refused call */
        assert_int_equal(f->closes, 1);
        assert_int_equal(f->close_reason, -ECONNRESET);
        assert_int_equal(us_ttrpc_aclient_pending(f->c), 0);
        struct us_error *err = NULL;
        Ttrpc__KeyValue kv = TTRPC__KEY_VALUE__INIT;
        assert_int_equal(us_ttrpc_aclient_call(f->c, SERVICE, "Echo", &kv.base, NULL, 0, 0,
                                               on_reply, &f->recs[20], NULL, &err),
                         -ENOTCONN);
        assert_non_null(err);
        us_error_free(err);
        run_for(f, 20);
        assert_int_equal(f->closes, 1);
        fx_free(f);
}

static void on_close_frees_client(void **state)
{
        (void)state;
        struct fx *f = fx_new(true);
        f->free_on_close = true;
        for (int i = 0; i < 3; i++)
                (void)call_kv(f, &f->recs[i], "Hold", "x", NULL, 0);
        run_until_held(f, 3);
        f->srv = us_ttrpc_server_free(f->srv);
        assert_int_equal(run_until(f, closed, RUN_MS), 0);
        assert_null(f->c);
        for (int i = 0; i < 3; i++) {
                assert_int_equal(f->recs[i].n, 1);
                assert_int_equal(f->recs[i].status, -ECONNRESET);
        }
        run_for(f, 20);
        fx_free(f);
}

static bool chain_done(struct fx *f)
{
        return f->recs[10].n == 1;
}

static void callback_issues_new_call(void **state)
{
        (void)state;
        struct fx *f = fx_new(true);
        f->recs[0].chain = 10;
        (void)call_kv(f, &f->recs[0], "Echo", "chain10", NULL, CALL_MS);
        assert_int_equal(run_until(f, chain_done, RUN_MS), 0);
        for (int i = 0; i <= 10; i++) {
                char key[16];
                (void)snprintf(key, sizeof(key), "chain%d", 10 - i);
                assert_int_equal(f->recs[i].n, 1);
                assert_int_equal(f->recs[i].status, 0);
                assert_string_equal(f->recs[i].key, key);
        }
        assert_int_equal(us_ttrpc_aclient_pending(f->c), 0);
        fx_free(f);
}

static bool all_five(struct fx *f)
{
        for (int i = 0; i < 5; i++)
                if (f->recs[i].n != 1)
                        return false;
        return true;
}

static void callback_frees_client(void **state)
{
        (void)state;
        struct fx *f = fx_new(true);
        for (int i = 0; i < 5; i++)
                (void)call_kv(f, &f->recs[i], "Hold", "x", NULL, i == 2 ? CALL_MS : 0);
        /* The newest is answered first; its callback frees the client and
         * a call attempted by another callback during that free is refused. */
        f->recs[4].free_client = true;
        f->recs[0].call_from_cb = true;
        f->recs[0].call_from_cb_r = 1;
        (void)call_kv(f, &f->recs[5], "Release", "", NULL, CALL_MS);
        assert_int_equal(run_until(f, all_five, RUN_MS), 0);
        assert_null(f->c);
        assert_int_equal(f->recs[4].status, 0);
        for (int i = 0; i < 4; i++)
                assert_int_equal(f->recs[i].status, -ECANCELED);
        assert_int_equal(f->recs[0].call_from_cb_r, -ENOTCONN);
        assert_int_equal(f->recs[5].n, 1); /* Release: cancelled by the free, or answered */
        run_for(f, 50);                    /* the timer of call 2 is gone with the client */
        for (int i = 0; i < 6; i++)
                assert_int_equal(f->recs[i].n, 1);
        assert_int_equal(f->closes, 0);
        fx_free(f);
}

static void free_cancels_pending(void **state)
{
        (void)state;
        struct fx *f = fx_new(true);
        for (int i = 0; i < 4; i++)
                (void)call_kv(f, &f->recs[i], "Hold", "x", NULL, i * 1000);
        f->c = us_ttrpc_aclient_free(f->c);
        for (int i = 0; i < 4; i++) {
                assert_int_equal(f->recs[i].n, 1);
                assert_int_equal(f->recs[i].status, -ECANCELED);
        }
        run_for(f, 30);
        fx_free(f);
}

/* ---- a hostile fake peer ---- */

static void peer_write(struct fx *f, const void *p, size_t n)
{
        assert_int_equal(write(f->peer, p, n), (ssize_t)n);
}

static void peer_response(struct fx *f, uint32_t stream, uint8_t type, int code, const char *key)
{
        Ttrpc__KeyValue kv = TTRPC__KEY_VALUE__INIT;
        kv.key = (char *)key;
        kv.value = "fake";
        uint8_t pl[256];
        size_t pn = ttrpc__key_value__pack(&kv, pl);
        Ttrpc__Status st = TTRPC__STATUS__INIT;
        st.code = code;
        st.message = "fake status";
        Ttrpc__Response resp = TTRPC__RESPONSE__INIT;
        resp.status = &st;
        resp.payload.data = pl;
        resp.payload.len = pn;
        uint8_t *frame = NULL;
        size_t flen;
        assert_int_equal(us_ttrpc_frame_build(stream, type, &resp.base, &frame, &flen, NULL), 0);
        peer_write(f, frame, flen);
        free(frame);
}

/* Reads one request frame the client sent. */
static void peer_read_request(struct fx *f, uint32_t *ret_stream, Ttrpc__Request **ret)
{
        uint8_t hdr[US_TTRPC_HEADER_SIZE];
        struct pollfd p = {.fd = f->peer, .events = POLLIN};
        assert_int_equal(poll(&p, 1, RUN_MS), 1);
        assert_int_equal(recv(f->peer, hdr, sizeof(hdr), MSG_WAITALL), (ssize_t)sizeof(hdr));
        struct us_ttrpc_header h;
        assert_int_equal(us_ttrpc_header_decode(hdr, &h, NULL), 0);
        assert_int_equal(h.type, US_TTRPC_TYPE_REQUEST);
        uint8_t *body = malloc(h.length + 1);
        assert_non_null(body);
        if (h.length)
                assert_int_equal(recv(f->peer, body, h.length, MSG_WAITALL), (ssize_t)h.length);
        assert_int_equal(us_ttrpc_decode_request(body, h.length, ret, NULL), 0);
        free(body);
        *ret_stream = h.stream_id;
}

static bool a_and_c_done(struct fx *f)
{
        return f->recs[0].n && f->recs[2].n;
}

static void fake_peer_requests_and_drops(void **state)
{
        (void)state;
        struct fx *f = fx_new(false);
        const int b_ms = CALL_MS; /* b waits for the end of the test */
        (void)call_kv(f, &f->recs[0], "Hold", "a", NULL, 0);
        (void)call_kv(f, &f->recs[1], "Hold", "b", NULL, b_ms);
        (void)call_kv(f, &f->recs[2], "Hold", "c", NULL, 0);
        uint32_t ids[3];
        for (int i = 0; i < 3; i++) {
                Ttrpc__Request *req = NULL;
                peer_read_request(f, &ids[i], &req);
                assert_string_equal(req->service, SERVICE);
                assert_string_equal(req->method, "Hold");
                assert_int_equal(req->timeout_nano, i == 1 ? b_ms * 1000000LL : 0);
                ttrpc__request__free_unpacked(req, NULL);
        }
        assert_int_equal(ids[0], 1);
        assert_int_equal(ids[1], 3);
        assert_int_equal(ids[2], 5);

        /* Dropped: unknown id, an even id, a request-typed frame and a data
         * frame on a pending id. */
        peer_response(f, 7, US_TTRPC_TYPE_RESPONSE, 0, "unknown");
        peer_response(f, 2, US_TTRPC_TYPE_RESPONSE, 0, "even");
        peer_response(f, 1, US_TTRPC_TYPE_REQUEST, 0, "wrong type");
        peer_response(f, 1, 3, 0, "data");
        run_for(f, 50);
        for (int i = 0; i < 3; i++)
                assert_int_equal(f->recs[i].n, 0);
        assert_int_equal(us_ttrpc_aclient_pending(f->c), 3);

        /* Out of order, one error status; several frames in one write. */
        peer_response(f, 5, US_TTRPC_TYPE_RESPONSE, 0, "c");
        peer_response(f, 1, US_TTRPC_TYPE_RESPONSE, US_GRPC_NOT_FOUND, "a");
        peer_response(f, 1, US_TTRPC_TYPE_RESPONSE, 0, "a again"); /* duplicate: dropped */
        assert_int_equal(run_until(f, a_and_c_done, RUN_MS), 0);
        assert_int_equal(f->recs[2].n, 1);
        assert_int_equal(f->recs[2].status, 0);
        assert_string_equal(f->recs[2].key, "c");
        assert_int_equal(f->recs[0].n, 1);
        assert_int_equal(f->recs[0].status, -ENOENT);
        assert_non_null(strstr(f->recs[0].msg, "Test/Hold: fake status"));
        assert_true(f->recs[2].seq < f->recs[0].seq);
        assert_int_equal(f->recs[1].n, 0);

        /* A response split into single bytes. */
        Ttrpc__Response resp = TTRPC__RESPONSE__INIT;
        uint8_t *frame = NULL;
        size_t flen;
        assert_int_equal(
                us_ttrpc_frame_build(3, US_TTRPC_TYPE_RESPONSE, &resp.base, &frame, &flen, NULL),
                0);
        for (size_t i = 0; i < flen; i++) {
                peer_write(f, frame + i, 1);
                run_for(f, 3);
        }
        free(frame);
        assert_int_equal(run_until(f, no_pending, RUN_MS), 0);
        assert_int_equal(f->recs[1].status, 0);
        /* The duplicate, read before this frame, was dropped. */
        assert_int_equal(f->recs[0].n, 1);
        assert_int_equal(f->closes, 0);
        fx_free(f);
}

static void fake_peer_half_frame_stalls(void **state)
{
        (void)state;
        struct fx *f = fx_new(false);
        (void)call_kv(f, &f->recs[0], "Hold", "a", NULL, 200);
        (void)call_kv(f, &f->recs[1], "Hold", "poll", NULL, 0);
        /* Header for 100 bytes on stream 1, then only 50 of them. */
        uint8_t buf[US_TTRPC_HEADER_SIZE + 50] = {0};
        struct us_ttrpc_header h = {.length = 100, .stream_id = 1, .type = US_TTRPC_TYPE_RESPONSE};
        us_ttrpc_header_encode(&h, buf);
        peer_write(f, buf, sizeof(buf));
        assert_int_equal(run_until(f, first_done, RUN_MS), 0);
        assert_int_equal(f->recs[0].status, -ETIMEDOUT);
        /* The long poll waits on; nothing broke. */
        assert_int_equal(f->recs[1].n, 0);
        assert_int_equal(f->closes, 0);
        /* The peer hangs up mid-frame: the long poll ends. */
        close(f->peer);
        f->peer = -1;
        assert_int_equal(run_until(f, closed, RUN_MS), 0);
        assert_int_equal(f->recs[1].status, -ECONNRESET);
        assert_int_equal(f->close_reason, -ECONNRESET);
        fx_free(f);
}

static void write_error_reported_from_loop(void **state)
{
        (void)state;
        struct fx *f = fx_new(false);
        close(f->peer);
        f->peer = -1;
        /* The write fails (EPIPE) inside the call: accepted all the same,
         * and its callback runs from the loop, never inside the call. */
        (void)call_kv(f, &f->recs[0], "Hold", "x", NULL, 0);
        assert_int_equal(f->recs[0].n, 0);
        assert_int_equal(run_until(f, closed, RUN_MS), 0);
        assert_int_equal(f->recs[0].n, 1);
        assert_int_equal(f->recs[0].status, -ECONNRESET);
        assert_int_equal(f->close_reason, -ECONNRESET);
        fx_free(f);
}

static void fake_peer_garbage_protobuf(void **state)
{
        (void)state;
        struct fx *f = fx_new(false);
        for (int i = 0; i < 3; i++)
                (void)call_kv(f, &f->recs[i], "Hold", "x", NULL, i ? 0 : CALL_MS);
        uint8_t buf[US_TTRPC_HEADER_SIZE + 8];
        struct us_ttrpc_header h = {.length = 8, .stream_id = 3, .type = US_TTRPC_TYPE_RESPONSE};
        us_ttrpc_header_encode(&h, buf);
        memset(buf + US_TTRPC_HEADER_SIZE, 0xff, 8);
        peer_write(f, buf, sizeof(buf));
        assert_int_equal(run_until(f, closed, RUN_MS), 0);
        assert_int_equal(f->close_reason, -EPROTO);
        for (int i = 0; i < 3; i++) {
                assert_int_equal(f->recs[i].n, 1);
                assert_int_equal(f->recs[i].status, -EPROTO);
                assert_non_null(strstr(f->recs[i].msg, "protocol error"));
        }
        struct us_error *err = NULL;
        Ttrpc__KeyValue kv = TTRPC__KEY_VALUE__INIT;
        assert_int_equal(us_ttrpc_aclient_call(f->c, SERVICE, "Echo", &kv.base, NULL, 0, 0,
                                               on_reply, &f->recs[9], NULL, &err),
                         -ENOTCONN);
        us_error_free(err);
        run_for(f, 20);
        assert_int_equal(f->closes, 1);
        fx_free(f);
}

static void fake_peer_oversized_frame(void **state)
{
        (void)state;
        struct fx *f = fx_new(false);
        (void)call_kv(f, &f->recs[0], "Hold", "x", NULL, 0);
        uint8_t buf[US_TTRPC_HEADER_SIZE];
        struct us_ttrpc_header h = {
                .length = US_TTRPC_MAX_MESSAGE + 1, .stream_id = 1, .type = US_TTRPC_TYPE_RESPONSE};
        us_ttrpc_header_encode(&h, buf);
        peer_write(f, buf, sizeof(buf));
        assert_int_equal(run_until(f, closed, RUN_MS), 0);
        assert_int_equal(f->close_reason, -EPROTO);
        assert_int_equal(f->recs[0].status, -EPROTO);
        fx_free(f);
}

static void fake_peer_random_garbage(void **state)
{
        (void)state;
        /* Pseudo-random bytes (fixed seed): whatever they decode to, every
         * call ends exactly once, by a drop-and-timeout, a protocol error
         * or the free. */
        unsigned seed = 12345;
        for (int round = 0; round < 20; round++) {
                struct fx *f = fx_new(false);
                f->free_on_close = (round % 2) == 0;
                for (int i = 0; i < 4; i++)
                        (void)call_kv(f, &f->recs[i], "Hold", "x", NULL, i == 0 ? 50 : 0);
                uint8_t junk[4096];
                for (size_t i = 0; i < sizeof(junk); i++)
                        junk[i] = (uint8_t)(rand_r(&seed) >> 7);
                /* Some rounds with plausible headers for pending streams. */
                if (round % 3 == 0) {
                        struct us_ttrpc_header h = {.length = (uint32_t)(rand_r(&seed) % 64),
                                                    .stream_id = 1 + 2 * (uint32_t)(round % 4),
                                                    .type = US_TTRPC_TYPE_RESPONSE};
                        us_ttrpc_header_encode(&h, junk);
                }
                peer_write(f, junk, sizeof(junk));
                run_for(f, 80);
                f->c = us_ttrpc_aclient_free(f->c);
                for (int i = 0; i < 4; i++)
                        assert_int_equal(f->recs[i].n, 1);
                assert_true(f->closes <= 1);
                fx_free(f);
        }
}

static void output_queue_bounded(void **state)
{
        (void)state;
        /* A peer that never reads: requests pile up in our queue until
         * new calls are refused, not until memory runs out. */
        struct fx *f = fx_new(false);
        size_t big = 1u << 20;
        char *value = malloc(big + 1);
        assert_non_null(value);
        memset(value, 'v', big);
        value[big] = 0;
        Ttrpc__KeyValue kv = TTRPC__KEY_VALUE__INIT;
        kv.key = "big";
        kv.value = value;
        int n_ok = 0, r = 0;
        struct us_error *err = NULL;
        while (n_ok < 64) {
                r = us_ttrpc_aclient_call(f->c, SERVICE, "Hold", &kv.base, NULL, 0, 0, on_reply,
                                          &f->recs[n_ok], NULL, &err);
                if (r < 0)
                        break;
                n_ok++;
        }
        assert_int_equal(r, -ENOBUFS);
        assert_non_null(strstr(us_error_text(err), "output queue full"));
        us_error_free(err);
        /* About 8 MiB queued plus what the socket took. */
        assert_true(n_ok >= 7 && n_ok < 20);
        assert_int_equal(us_ttrpc_aclient_pending(f->c), (size_t)n_ok);
        /* Too large for one frame: refused up front. */
        char *huge = malloc(US_TTRPC_MAX_MESSAGE + 1);
        assert_non_null(huge);
        memset(huge, 'h', US_TTRPC_MAX_MESSAGE);
        huge[US_TTRPC_MAX_MESSAGE] = 0;
        kv.value = huge;
        assert_int_equal(us_ttrpc_aclient_call(f->c, SERVICE, "Hold", &kv.base, NULL, 0, 0,
                                               on_reply, &f->recs[100], NULL, NULL),
                         -EMSGSIZE);
        free(huge);
        free(value);
        run_for(f, 20);
        f->c = us_ttrpc_aclient_free(f->c);
        for (int i = 0; i < n_ok; i++) {
                assert_int_equal(f->recs[i].n, 1);
                assert_int_equal(f->recs[i].status, -ECANCELED);
        }
        assert_int_equal(f->recs[100].n, 0);
        fx_free(f);
}

static void too_many_calls_and_bad_args(void **state)
{
        (void)state;
        struct fx *f = fx_new(false);
        Ttrpc__KeyValue kv = TTRPC__KEY_VALUE__INIT;
        int r = 0, n = 0;
        for (;;) {
                r = us_ttrpc_aclient_call(f->c, SERVICE, "Hold", &kv.base, NULL, 0, 0, on_reply,
                                          &f->recs[0], NULL, NULL);
                if (r < 0)
                        break;
                n++;
                assert_true(n <= US_TTRPC_ACLIENT_MAX_CALLS);
        }
        assert_int_equal(r, -ENOBUFS);
        assert_int_equal(n, US_TTRPC_ACLIENT_MAX_CALLS);
        assert_int_equal(us_ttrpc_aclient_call(f->c, SERVICE, "", &kv.base, NULL, 0, 0, on_reply,
                                               &f->recs[1], NULL, NULL),
                         -EINVAL);
        assert_int_equal(us_ttrpc_aclient_call(f->c, SERVICE, "Hold", &kv.base, NULL, 0, -1,
                                               on_reply, &f->recs[1], NULL, NULL),
                         -EINVAL);
        f->c = us_ttrpc_aclient_free(f->c);
        assert_int_equal(f->recs[0].n, US_TTRPC_ACLIENT_MAX_CALLS);
        assert_int_equal(f->recs[1].n, 0);
        fx_free(f);
}

static void feed_in_pieces(void **state)
{
        (void)state;
        struct fx *f = fx_new(false);
        for (int i = 0; i < 3; i++)
                (void)call_kv(f, &f->recs[i], "Hold", "x", NULL, 0);
        /* Three responses, one oversized-looking but valid large payload. */
        uint8_t *stream = NULL;
        size_t slen = 0;
        for (uint32_t id = 1; id <= 5; id += 2) {
                Ttrpc__Response resp = TTRPC__RESPONSE__INIT;
                static uint8_t pad[100000];
                resp.payload.data = pad;
                resp.payload.len = id == 3 ? sizeof(pad) : 0;
                uint8_t *frame;
                size_t flen;
                assert_int_equal(us_ttrpc_frame_build(id, US_TTRPC_TYPE_RESPONSE, &resp.base,
                                                      &frame, &flen, NULL),
                                 0);
                stream = realloc(stream, slen + flen);
                assert_non_null(stream);
                memcpy(stream + slen, frame, flen);
                slen += flen;
                free(frame);
        }
        assert_int_equal(us_ttrpc_aclient_feed(f->c, stream, slen), 0);
        free(stream);
        for (int i = 0; i < 3; i++) {
                assert_int_equal(f->recs[i].n, 1);
                assert_int_equal(f->recs[i].status, 0);
        }
        assert_int_equal(f->recs[0].len, 0);
        assert_int_equal(f->recs[1].len, 100000);
        const uint8_t junk[] = {0, 0, 0, 2, 0, 0, 0, 1, 2, 0, 0xff, 0xff};
        (void)call_kv(f, &f->recs[3], "Hold", "x", NULL, 0);
        assert_int_equal(us_ttrpc_aclient_feed(f->c, junk, sizeof(junk)), 0); /* id 1: done */
        const uint8_t junk7[] = {0, 0, 0, 2, 0, 0, 0, 7, 2, 0, 0xff, 0xff};
        assert_int_equal(us_ttrpc_aclient_feed(f->c, junk7, sizeof(junk7)), -ENOTCONN);
        assert_int_equal(f->recs[3].status, -EPROTO);
        assert_int_equal(f->closes, 1);
        fx_free(f);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(concurrent_out_of_order),
                cmocka_unit_test(long_poll_and_short_calls),
                cmocka_unit_test(error_status),
                cmocka_unit_test(timeout_then_late_reply_dropped),
                cmocka_unit_test(cancel),
                cmocka_unit_test(peer_closes_with_calls_pending),
                cmocka_unit_test(on_close_frees_client),
                cmocka_unit_test(callback_issues_new_call),
                cmocka_unit_test(callback_frees_client),
                cmocka_unit_test(free_cancels_pending),
                cmocka_unit_test(fake_peer_requests_and_drops),
                cmocka_unit_test(fake_peer_half_frame_stalls),
                cmocka_unit_test(write_error_reported_from_loop),
                cmocka_unit_test(fake_peer_garbage_protobuf),
                cmocka_unit_test(fake_peer_oversized_frame),
                cmocka_unit_test(fake_peer_random_garbage),
                cmocka_unit_test(output_queue_bounded),
                cmocka_unit_test(too_many_calls_and_bad_args),
                cmocka_unit_test(feed_in_pieces),
        };
        return unit_exit(unit_run_group_tests(tests, NULL, NULL));
}
