/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The qemu-ga client: its reply parser with hostile input, and the client
 * against a scripted fake agent on the other end of a socketpair, both on one
 * us_loop in this thread (the fake writes through a queue of its own, so a
 * reply of megabytes never blocks the loop). Last, the real qemu-ga (listening
 * on a unix socket in a temporary directory, every RPC but ping, sync and
 * exec blocked) runs `echo` and `true` on this host; skipped without it.
 *
 * Waits are for events; RUN_MS only tells a hang from a slow machine. Short
 * call timeouts appear only where a timeout is what is tested.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "unit.h"

#include "base/cleanup.h"
#include "base/loop.h"
#include "vmm/qga.h"
#include "base/text.h"

#define RUN_MS  unit_wait_ms(10000)
#define CALL_MS ((unsigned)unit_wait_ms(10000))
/* A timeout that is the behaviour under test. */
#define SHORT_MS 100

/* ---- the parser ---- */

static int parse(const char *s, enum vmm_qga_expect e, struct vmm_qga_reply **r,
                 struct us_error **err)
{
        return vmm_qga_reply_parse(s, strlen(s), e, r, err);
}

static void parses_replies(void **state)
{
        (void)state;
        struct vmm_qga_reply *r = NULL;

        assert_int_equal(parse("{\"return\": 1234}\n", VMM_QGA_EXPECT_SYNC, &r, NULL), 0);
        assert_false(r->is_error);
        assert_int_equal(r->value, 1234);
        r = vmm_qga_reply_free(r);

        assert_int_equal(parse("{\"return\": {\"x\": [1, {\"y\": null}]}, \"id\": 7}",
                               VMM_QGA_EXPECT_PING, &r, NULL),
                         0);
        assert_true(r->has_id);
        assert_int_equal(r->id, 7);
        r = vmm_qga_reply_free(r);

        assert_int_equal(parse("{\"return\": {\"pid\": 25470}}", VMM_QGA_EXPECT_EXEC, &r, NULL), 0);
        assert_int_equal(r->value, 25470);
        r = vmm_qga_reply_free(r);

        /* What qemu-ga 7.2 sent for sh -c 'echo out; echo err >&2; echo $FOO; exit 3'. */
        assert_int_equal(parse("{\"return\": {\"exitcode\": 3, \"err-data\": \"ZXJyCg==\", "
                               "\"out-data\": \"b3V0CmJhcgo=\", \"err-truncated\": false, "
                               "\"out-truncated\": false, \"exited\": true}}",
                               VMM_QGA_EXPECT_EXEC_STATUS, &r, NULL),
                         0);
        assert_true(r->exited);
        assert_false(r->res.signalled);
        assert_int_equal(r->res.code, 3);
        assert_int_equal(r->res.out_len, 8);
        assert_memory_equal(r->res.out, "out\nbar\n", 8);
        assert_int_equal(r->res.err_len, 4);
        assert_memory_equal(r->res.err, "err\n", 4);
        r = vmm_qga_reply_free(r);

        assert_int_equal(parse("{\"return\": {\"signal\": 9, \"exited\": true}}",
                               VMM_QGA_EXPECT_EXEC_STATUS, &r, NULL),
                         0);
        assert_true(r->res.signalled);
        assert_int_equal(r->res.code, 9);
        assert_null(r->res.out);
        r = vmm_qga_reply_free(r);

        assert_int_equal(
                parse("{\"return\": {\"exited\": false}}", VMM_QGA_EXPECT_EXEC_STATUS, &r, NULL),
                0);
        assert_false(r->exited);
        r = vmm_qga_reply_free(r);

        assert_int_equal(parse("{\"error\": {\"class\": \"GenericError\", \"desc\": \"Invalid "
                               "parameter 'pid'\"}}",
                               VMM_QGA_EXPECT_EXEC_STATUS, &r, NULL),
                         0);
        assert_true(r->is_error);
        assert_string_equal(r->error_class, "GenericError");
        assert_string_equal(r->error_desc, "Invalid parameter 'pid'");
        r = vmm_qga_reply_free(r);

        /* A foreign id is noted, not an error. */
        assert_int_equal(parse("{\"return\": {}, \"id\": \"abc\"}", VMM_QGA_EXPECT_PING, &r, NULL),
                         0);
        assert_true(r->foreign_id);
        vmm_qga_reply_free(r);
        assert_null(vmm_qga_reply_free(NULL));
}

static void rejects_bad_replies(void **state)
{
        (void)state;
        static const struct {
                enum vmm_qga_expect e;
                const char *s;
        } bad[] = {
                {VMM_QGA_EXPECT_PING, ""},
                {VMM_QGA_EXPECT_PING, "\n"},
                {VMM_QGA_EXPECT_PING, "not json"},
                {VMM_QGA_EXPECT_PING, "[1,2]"},
                {VMM_QGA_EXPECT_PING, "42"},
                {VMM_QGA_EXPECT_PING, "{}"},
                {VMM_QGA_EXPECT_PING, "{\"foo\": 1}"},
                {VMM_QGA_EXPECT_PING,
                 "{\"return\": {}, \"error\": {\"class\": \"a\", \"desc\": \"b\"}}"},
                {VMM_QGA_EXPECT_PING, "{\"return\": {}, \"return\": {}}"},
                {VMM_QGA_EXPECT_PING, "{\"return\": 1}"},
                {VMM_QGA_EXPECT_PING, "{\"return\": []}"},
                {VMM_QGA_EXPECT_PING, "{\"return\": {}} {\"return\": {}}"},
                {VMM_QGA_EXPECT_PING, "{\"return\": {}} trailing"},
                {VMM_QGA_EXPECT_PING, "{\"return\": {\"a\": "},
                {VMM_QGA_EXPECT_PING, "{\"error\": \"flat\"}"},
                {VMM_QGA_EXPECT_PING, "{\"error\": {\"class\": 1, \"desc\": \"x\"}}"},
                {VMM_QGA_EXPECT_PING, "{\"error\": {\"class\": \"x\"}}"},
                {VMM_QGA_EXPECT_PING, "{\"return\": {}, \"x\": \"\xff\xfe\"}"},
                {VMM_QGA_EXPECT_SYNC, "{\"return\": \"1234\"}"},
                {VMM_QGA_EXPECT_SYNC, "{\"return\": 1.5}"},
                {VMM_QGA_EXPECT_SYNC, "{\"return\": 99999999999999999999999}"},
                {VMM_QGA_EXPECT_SYNC, "{\"return\": {}}"},
                {VMM_QGA_EXPECT_EXEC, "{\"return\": {}}"},
                {VMM_QGA_EXPECT_EXEC, "{\"return\": {\"pid\": \"42\"}}"},
                {VMM_QGA_EXPECT_EXEC, "{\"return\": {\"pid\": 0}}"},
                {VMM_QGA_EXPECT_EXEC, "{\"return\": {\"pid\": -5}}"},
                {VMM_QGA_EXPECT_EXEC, "{\"return\": {\"pid\": 1, \"pid\": 2}}"},
                {VMM_QGA_EXPECT_EXEC_STATUS, "{\"return\": {}}"},
                {VMM_QGA_EXPECT_EXEC_STATUS, "{\"return\": {\"exited\": 1}}"},
                {VMM_QGA_EXPECT_EXEC_STATUS, "{\"return\": {\"exited\": true}}"},
                {VMM_QGA_EXPECT_EXEC_STATUS,
                 "{\"return\": {\"exited\": true, \"exitcode\": 0, \"signal\": 9}}"},
                {VMM_QGA_EXPECT_EXEC_STATUS, "{\"return\": {\"exited\": true, \"exitcode\": 1e3}}"},
                {VMM_QGA_EXPECT_EXEC_STATUS,
                 "{\"return\": {\"exited\": true, \"exitcode\": 2147483648}}"},
                {VMM_QGA_EXPECT_EXEC_STATUS,
                 "{\"return\": {\"exited\": true, \"exitcode\": 0, \"out-data\": 5}}"},
                {VMM_QGA_EXPECT_EXEC_STATUS,
                 "{\"return\": {\"exited\": true, \"exitcode\": 0, \"out-data\": \"abc\"}}"},
                {VMM_QGA_EXPECT_EXEC_STATUS,
                 "{\"return\": {\"exited\": true, \"exitcode\": 0, \"out-data\": \"ab=c\"}}"},
                {VMM_QGA_EXPECT_EXEC_STATUS,
                 "{\"return\": {\"exited\": true, \"exitcode\": 0, \"out-data\": \"a===\"}}"},
                {VMM_QGA_EXPECT_EXEC_STATUS,
                 "{\"return\": {\"exited\": true, \"exitcode\": 0, \"out-data\": \"a*bc\"}}"},
                {VMM_QGA_EXPECT_EXEC_STATUS,
                 "{\"return\": {\"exited\": true, \"exitcode\": 0, \"out-truncated\": \"no\"}}"},
        };
        for (size_t i = 0; i < US_ELEMENTSOF(bad); i++) {
                struct vmm_qga_reply *r = NULL;
                struct us_error *err = NULL;
                int k = parse(bad[i].s, bad[i].e, &r, &err);
                if (k != -EPROTO)
                        fail_msg("bad reply #%zu (%s): got %d", i, bad[i].s, k);
                assert_null(r);
                assert_non_null(err);
                us_error_free(err);
        }
}

static void rejects_nul_depth_size(void **state)
{
        (void)state;
        struct vmm_qga_reply *r = NULL;
        static const char nul[] = "{\"return\": {}}\0{\"x\":1}";
        assert_int_equal(vmm_qga_reply_parse(nul, sizeof(nul) - 1, VMM_QGA_EXPECT_PING, &r, NULL),
                         -EPROTO);

        size_t n = 100000;
        char *s = malloc(2 * n + 32);
        assert_non_null(s);
        char *p = s + sprintf(s, "{\"return\": {\"x\": ");
        memset(p, '[', n);
        p += n;
        memset(p, ']', n);
        p += n;
        p += sprintf(p, "}}");
        assert_int_equal(vmm_qga_reply_parse(s, (size_t)(p - s), VMM_QGA_EXPECT_PING, &r, NULL),
                         -EPROTO);
        /* Within the limit. */
        p = s + sprintf(s, "{\"return\": {\"x\": ");
        for (int i = 0; i < VMM_QGA_MAX_DEPTH - 2; i++)
                *p++ = '[';
        for (int i = 0; i < VMM_QGA_MAX_DEPTH - 2; i++)
                *p++ = ']';
        p += sprintf(p, "}}");
        assert_int_equal(vmm_qga_reply_parse(s, (size_t)(p - s), VMM_QGA_EXPECT_PING, &r, NULL), 0);
        r = vmm_qga_reply_free(r);
        free(s);

        size_t big = VMM_QGA_MAX_REPLY + 1;
        s = malloc(big);
        assert_non_null(s);
        memset(s, ' ', big);
        assert_int_equal(vmm_qga_reply_parse(s, big, VMM_QGA_EXPECT_PING, &r, NULL), -EMSGSIZE);
        free(s);
}

static void sanitizes(void **state)
{
        (void)state;
        static const struct {
                const char *in, *out;
                size_t max;
        } cases[] = {
                {"plain text", "plain text", 64},
                {"esc \x1b[31mred", "esc ?[31mred", 64},
                {"nl\r\ntab\t", "nl??tab?", 64},
                {"caf\xc3\xa9 \xe2\x80\x9cq\xe2\x80\x9d", "caf\xc3\xa9 \xe2\x80\x9cq\xe2\x80\x9d",
                 64},
                {"bad \xff\xfe utf8 \xc3", "bad ?? utf8 ?", 64},
                {"overlong \xc0\xaf", "overlong ??", 64},
                {"surrogate \xed\xa0\x80", "surrogate ???", 64},
                {"bidi \xe2\x80\xae!", "bidi ?!", 64},
                {"c1 \xc2\x85!", "c1 ?!", 64},
                {"abcdefghij", "abcd...", 4},
                {"ab\xc3\xa9", "ab...", 3},
        };
        for (size_t i = 0; i < US_ELEMENTSOF(cases); i++) {
                char *s = vmm_qga_sanitize(cases[i].in, strlen(cases[i].in), cases[i].max);
                assert_non_null(s);
                if (strcmp(s, cases[i].out) != 0)
                        fail_msg("sanitize #%zu: \"%s\" != \"%s\"", i, s, cases[i].out);
                free(s);
        }
        char *s = vmm_qga_sanitize("a\0b", 3, 8);
        assert_string_equal(s, "a?b");
        free(s);
}

/* ---- a fake agent on the loop ---- */

struct fake;
typedef void (*answer_fn)(struct fake *f, const char *line, int64_t id);

struct fake {
        struct us_loop *loop;
        int fd;
        struct us_loop_source *src;
        char in[1 << 16];
        size_t in_len;
        struct us_text out;
        size_t out_off;
        int syncs, requests, polls;
        bool silent;               /* reads, never answers */
        bool close_on_request;     /* hangs up on the next request */
        bool quit_on_request;      /* stops the loop when a request comes */
        char last[4096];           /* the last request but syncs */
        answer_fn answer;          /* NULL: default answers */
        int state;                 /* the test's */
        const char *status;        /* the guest-exec-status answer (return value) */
        int running;               /* status answers with exited:false before that */
        const char *sync_preamble; /* sent before the sentinel on a sync */
};

static void fake_update(struct fake *f)
{
        if (!f->src)
                return;
        uint32_t ev = EPOLLIN | (f->out_off < f->out.len ? EPOLLOUT : 0);
        assert_int_equal(us_loop_source_set_events(f->src, ev, NULL), 0);
}

static void fake_flush(struct fake *f)
{
        while (f->fd >= 0 && f->out_off < f->out.len) {
                ssize_t n = send(f->fd, f->out.s + f->out_off, f->out.len - f->out_off,
                                 MSG_DONTWAIT | MSG_NOSIGNAL);
                if (n <= 0)
                        break;
                f->out_off += (size_t)n;
        }
        if (f->out_off == f->out.len) {
                us_text_reset(&f->out);
                f->out_off = 0;
        }
        fake_update(f);
}

static void fake_send(struct fake *f, const char *s, size_t len)
{
        us_text_append(&f->out, s, len);
        assert_false(f->out.oom);
        fake_flush(f);
}

static void fake_sendf(struct fake *f, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void fake_sendf(struct fake *f, const char *fmt, ...)
{
        char *s = NULL;
        va_list ap;
        va_start(ap, fmt);
        int n = vasprintf(&s, fmt, ap);
        va_end(ap);
        assert_true(n >= 0);
        fake_send(f, s, (size_t)n);
        free(s);
}

static void fake_hangup(struct fake *f)
{
        f->src = us_loop_source_remove(f->src);
        f->fd = us_close(f->fd);
}

/* The id at the end of a request: ...,"id":N} */
static int64_t request_id(const char *line)
{
        const char *p = NULL;
        for (const char *i = strstr(line, "\"id\":"); i; i = strstr(i + 1, "\"id\":"))
                p = i;
        return p ? strtoll(p + 5, NULL, 10) : -1;
}

static void default_answer(struct fake *f, const char *line, int64_t id)
{
        if (strstr(line, "\"guest-ping\"")) {
                fake_sendf(f, "{\"return\": {}, \"id\": %" PRId64 "}\n", id);
        } else if (strstr(line, "\"guest-exec\"")) {
                fake_sendf(f, "{\"return\": {\"pid\": 42}, \"id\": %" PRId64 "}\n", id);
        } else if (strstr(line, "\"guest-exec-status\"")) {
                if (f->polls <= f->running)
                        fake_sendf(f, "{\"return\": {\"exited\": false}, \"id\": %" PRId64 "}\n",
                                   id);
                else
                        fake_sendf(f, "{\"return\": %s, \"id\": %" PRId64 "}\n", f->status, id);
        } else {
                fake_sendf(f, "{\"error\": {\"class\": \"CommandNotFound\", \"desc\": \"?\"}}\n");
        }
}

static void fake_line(struct fake *f, char *line)
{
        while (*line == '\xff')
                line++;
        if (!*line)
                return;
        if (strstr(line, "\"guest-sync-delimited\"")) {
                f->syncs++;
                if (f->sync_preamble)
                        fake_send(f, f->sync_preamble, strlen(f->sync_preamble));
                const char *p = strstr(line, "\"id\":");
                assert_non_null(p);
                if (!f->silent)
                        fake_sendf(f, "\xff{\"return\": %lld}\n", strtoll(p + 5, NULL, 10));
                return;
        }
        f->requests++;
        size_t n = strnlen(line, sizeof(f->last) - 1);
        memcpy(f->last, line, n);
        f->last[n] = '\0';
        if (strstr(line, "\"guest-exec-status\""))
                f->polls++;
        if (f->quit_on_request)
                us_loop_quit(f->loop, 0);
        if (f->close_on_request) {
                fake_hangup(f);
                return;
        }
        if (f->silent)
                return;
        (f->answer ? f->answer : default_answer)(f, line, request_id(line));
}

static void fake_io(struct us_loop_source *src, int fd, uint32_t events, void *userdata)
{
        (void)src;
        (void)fd;
        struct fake *f = userdata;
        if (events & EPOLLOUT)
                fake_flush(f);
        if (!(events & (EPOLLIN | EPOLLHUP | EPOLLERR)))
                return;
        ssize_t n = recv(f->fd, f->in + f->in_len, sizeof(f->in) - 1 - f->in_len, MSG_DONTWAIT);
        if (n <= 0) {
                if (n == 0 || (errno != EAGAIN && errno != EINTR))
                        fake_hangup(f);
                return;
        }
        f->in_len += (size_t)n;
        char *nl;
        while (f->fd >= 0 && (nl = memchr(f->in, '\n', f->in_len))) {
                *nl = '\0';
                fake_line(f, f->in);
                if (f->fd < 0)
                        return;
                size_t used = (size_t)(nl - f->in) + 1;
                memmove(f->in, f->in + used, f->in_len - used);
                f->in_len -= used;
        }
        assert_true(f->in_len < sizeof(f->in) - 1);
}

/* ---- the test fixture: a loop, a client, one fake ---- */

struct outcome {
        struct us_loop *loop;
        int calls;
        int r;
        bool has_res;
        bool signalled;
        int code;
        size_t out_len, err_len;
        bool out_truncated, err_truncated;
        char out[256], err[256];
        char msg[1024];
        struct vmm_qga **free_client; /* frees the client from the callback */
};

static void done_cb(void *userdata, int r, const struct vmm_qga_exec_result *res,
                    const struct us_error *err)
{
        struct outcome *o = userdata;
        o->calls++;
        o->r = r;
        o->has_res = res != NULL;
        if (res) {
                o->signalled = res->signalled;
                o->code = res->code;
                o->out_len = res->out_len;
                o->err_len = res->err_len;
                o->out_truncated = res->out_truncated;
                o->err_truncated = res->err_truncated;
                memcpy(o->out, res->out ? (const char *)res->out : "",
                       res->out_len < sizeof(o->out) - 1 ? res->out_len : sizeof(o->out) - 1);
                memcpy(o->err, res->err ? (const char *)res->err : "",
                       res->err_len < sizeof(o->err) - 1 ? res->err_len : sizeof(o->err) - 1);
        }
        assert_true(r == 0 || err != NULL);
        (void)snprintf(o->msg, sizeof(o->msg), "%s", r < 0 ? us_error_text(err) : "");
        if (o->free_client)
                *o->free_client = vmm_qga_free(*o->free_client);
        us_loop_quit(o->loop, 0);
}

struct fx {
        struct us_loop *loop;
        struct vmm_qga *q;
        struct fake f;
        bool hung;
};

static void on_guard(struct us_loop_source *src, void *userdata)
{
        (void)src;
        struct fx *x = userdata;
        x->hung = true;
        us_loop_quit(x->loop, 0);
}

/* Runs the loop until *count reaches n (a callback quits the loop). */
static void run_until(struct fx *x, const int *count, int n)
{
        struct us_loop_source *guard = NULL;
        assert_int_equal(us_loop_add_timer(x->loop, (uint64_t)RUN_MS, on_guard, x, &guard, NULL),
                         0);
        while (*count < n && !x->hung)
                us_loop_run(x->loop);
        if (!x->hung)
                us_loop_source_remove(guard);
        assert_false(x->hung);
}

static void on_tick(struct us_loop_source *src, void *userdata)
{
        (void)src;
        struct fx *x = userdata;
        us_loop_quit(x->loop, 0);
}

/* Runs the loop, a tick at a time, until the client has no channel. */
static void run_while_attached(struct fx *x)
{
        int64_t deadline = us_monotonic_ms() + RUN_MS;
        while (vmm_qga_attached(x->q) && us_monotonic_ms() < deadline) {
                assert_int_equal(us_loop_add_timer(x->loop, 5, on_tick, x, NULL, NULL), 0);
                us_loop_run(x->loop);
        }
}

static void fake_init(struct fx *x, struct fake *f, int fd)
{
        memset(f, 0, sizeof(*f));
        f->loop = x->loop;
        f->fd = fd;
        f->status = "{\"exited\": true, \"exitcode\": 0}";
        assert_int_equal(us_loop_add_fd(x->loop, fd, EPOLLIN, fake_io, f, &f->src, NULL), 0);
}

static void fake_fini(struct fake *f)
{
        fake_hangup(f);
        free(us_text_take(&f->out));
}

static void attach_fake(struct fx *x, struct fake *f)
{
        int sv[2];
        assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
        fake_init(x, f, sv[1]);
        struct us_error *err = NULL;
        assert_int_equal(vmm_qga_attach(x->q, sv[0], &err), 0);
        assert_null(err);
}

static void fx_setup(struct fx *x, unsigned timeout_ms)
{
        memset(x, 0, sizeof(*x));
        assert_int_equal(us_loop_new(&x->loop, NULL), 0);
        assert_int_equal(vmm_qga_new(x->loop, timeout_ms, &x->q, NULL), 0);
        attach_fake(x, &x->f);
}

static void fx_teardown(struct fx *x)
{
        x->q = vmm_qga_free(x->q);
        fake_fini(&x->f);
        us_loop_free(x->loop);
}

static void ping(struct fx *x, struct outcome *o)
{
        memset(o, 0, sizeof(*o));
        o->loop = x->loop;
        assert_int_equal(vmm_qga_ping(x->q, done_cb, o, NULL, NULL), 0);
}

static void ping_wait(struct fx *x, struct outcome *o)
{
        ping(x, o);
        run_until(x, &o->calls, 1);
        assert_int_equal(o->calls, 1);
}

static void exec_wait(struct fx *x, struct outcome *o, unsigned timeout_ms)
{
        static const char *const args[] = {"-c", "echo \"quoted\"\\n\ttab"};
        static const char *const env[] = {"PATH=/usr/bin:/bin", "A=\xc3\xa9"};
        memset(o, 0, sizeof(*o));
        o->loop = x->loop;
        assert_int_equal(
                vmm_qga_exec(x->q, "/bin/sh", args, 2, env, 2, timeout_ms, done_cb, o, NULL, NULL),
                0);
        run_until(x, &o->calls, 1);
        assert_int_equal(o->calls, 1);
}

static void ping_ok(void **state)
{
        (void)state;
        struct fx x;
        struct outcome o;
        fx_setup(&x, CALL_MS);
        ping_wait(&x, &o);
        assert_int_equal(o.r, 0);
        assert_false(o.has_res);
        /* The first request on a channel is synced, the next one is not. */
        assert_int_equal(x.f.syncs, 1);
        ping_wait(&x, &o);
        assert_int_equal(o.r, 0);
        assert_int_equal(x.f.syncs, 1);
        assert_int_equal(x.f.requests, 2);
        assert_true(vmm_qga_attached(x.q));
        fx_teardown(&x);
}

static const char *b64(const uint8_t *s, size_t len)
{
        static const char a[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        static char *buf;
        free(buf);
        buf = malloc((len + 2) / 3 * 4 + 1);
        assert_non_null(buf);
        char *o = buf;
        for (size_t i = 0; i < len; i += 3) {
                uint32_t v = (uint32_t)s[i] << 16;
                if (i + 1 < len)
                        v |= (uint32_t)s[i + 1] << 8;
                if (i + 2 < len)
                        v |= s[i + 2];
                *o++ = a[(v >> 18) & 63];
                *o++ = a[(v >> 12) & 63];
                *o++ = i + 1 < len ? a[(v >> 6) & 63] : '=';
                *o++ = i + 2 < len ? a[v & 63] : '=';
        }
        *o = '\0';
        return buf;
}

static void exec_output(void **state)
{
        (void)state;
        struct fx x;
        struct outcome o;
        char status[256];
        fx_setup(&x, CALL_MS);
        (void)snprintf(status, sizeof(status),
                       "{\"exitcode\": 3, \"out-data\": \"b3V0CmJhcgo=\", \"err-data\": "
                       "\"ZXJyCg==\", \"out-truncated\": false, \"exited\": true}");
        x.f.status = status;
        exec_wait(&x, &o, 0);
        assert_int_equal(o.r, 0);
        assert_true(o.has_res);
        assert_false(o.signalled);
        assert_int_equal(o.code, 3);
        assert_int_equal(o.out_len, 8);
        assert_string_equal(o.out, "out\nbar\n");
        assert_string_equal(o.err, "err\n");
        assert_false(o.out_truncated);
        assert_false(o.err_truncated);
        /* The request as the agent saw it: escaped by the generator. */
        assert_non_null(strstr(x.f.last, "\"guest-exec-status\",\"arguments\":{\"pid\":42}"));
        assert_int_equal(x.f.requests, 2);
        fx_teardown(&x);
}

static void exec_request_escaped(void **state)
{
        (void)state;
        struct fx x;
        struct outcome o;
        fx_setup(&x, CALL_MS);
        x.f.quit_on_request = true;
        x.f.silent = false;
        static const char *const args[] = {"-c", "echo \"quoted\"\\n\ttab"};
        static const char *const env[] = {"PATH=/usr/bin:/bin", "A=\xc3\xa9"};
        memset(&o, 0, sizeof(o));
        o.loop = x.loop;
        assert_int_equal(vmm_qga_exec(x.q, "/bin/sh", args, 2, env, 2, 0, done_cb, &o, NULL, NULL),
                         0);
        int before = x.f.requests;
        run_until(&x, &x.f.requests, before + 1);
        assert_string_equal(x.f.last,
                            "{\"execute\":\"guest-exec\",\"arguments\":{\"path\":\"/bin/sh\","
                            "\"arg\":[\"-c\",\"echo \\\"quoted\\\"\\\\n\\ttab\"],"
                            "\"env\":[\"PATH=/usr/bin:/bin\",\"A=\xc3\xa9\"],"
                            "\"capture-output\":true},\"id\":1}");
        x.f.quit_on_request = false;
        run_until(&x, &o.calls, 1);
        assert_int_equal(o.r, 0);

        /* Not UTF-8: refused before anything is sent. */
        static const char *const bad[] = {"\xff"};
        struct us_error *err = NULL;
        assert_int_equal(vmm_qga_exec(x.q, "/bin/sh", bad, 1, NULL, 0, 0, done_cb, &o, NULL, &err),
                         -EINVAL);
        err = us_error_free(err);
        assert_int_equal(vmm_qga_exec(x.q, "", NULL, 0, NULL, 0, 0, done_cb, &o, NULL, NULL),
                         -EINVAL);
        assert_int_equal(vmm_qga_exec(x.q, "/x", NULL, 1, NULL, 0, 0, done_cb, &o, NULL, NULL),
                         -EINVAL);
        /* Too big a request. */
        size_t big = VMM_QGA_MAX_REQUEST + 1;
        char *s = malloc(big + 1);
        assert_non_null(s);
        memset(s, 'a', big);
        s[big] = '\0';
        const char *const huge[] = {s};
        assert_int_equal(vmm_qga_exec(x.q, "/x", huge, 1, NULL, 0, 0, done_cb, &o, NULL, &err),
                         -E2BIG);
        err = us_error_free(err);
        free(s);
        fx_teardown(&x);
}

static void exec_signalled_after_polls(void **state)
{
        (void)state;
        struct fx x;
        struct outcome o;
        fx_setup(&x, CALL_MS);
        x.f.status = "{\"signal\": 9, \"exited\": true}";
        x.f.running = 3;
        exec_wait(&x, &o, 0);
        assert_int_equal(o.r, 0);
        assert_true(o.signalled);
        assert_int_equal(o.code, 9);
        assert_int_equal(o.out_len, 0);
        assert_int_equal(x.f.polls, 4);
        fx_teardown(&x);
}

static void answer_error(struct fake *f, const char *line, int64_t id)
{
        (void)line;
        (void)id;
        fake_sendf(f, "{\"error\": {\"class\": \"GenericError\", \"desc\": \"bad \\u001b[31m "
                      "thing\\n\"}}\n");
}

static void agent_error(void **state)
{
        (void)state;
        struct fx x;
        struct outcome o;
        fx_setup(&x, CALL_MS);
        x.f.answer = answer_error;
        ping_wait(&x, &o);
        assert_int_equal(o.r, -EIO);
        assert_string_equal(o.msg, "qga guest-ping: GenericError: bad ?[31m thing?");
        exec_wait(&x, &o, 0);
        assert_int_equal(o.r, -EIO);
        assert_false(o.has_res);
        /* An error reply is an answer: no resync needed. */
        x.f.answer = NULL;
        ping_wait(&x, &o);
        assert_int_equal(o.r, 0);
        assert_int_equal(x.f.syncs, 1);
        fx_teardown(&x);
}

static void call_timeout(void **state)
{
        (void)state;
        struct fx x;
        struct outcome o;
        fx_setup(&x, SHORT_MS);
        x.f.silent = true;
        ping_wait(&x, &o);
        assert_int_equal(o.r, -ETIMEDOUT);
        assert_string_equal(o.msg, "qga guest-ping: no reply from the guest agent within 100 ms");
        fx_teardown(&x);
}

static void timeout_then_resync(void **state)
{
        (void)state;
        struct fx x;
        struct outcome o;
        /* The exec's own short timeout bounds its first request too; the
         * client's stays long, so the call that must succeed does not
         * depend on the machine's speed. */
        fx_setup(&x, CALL_MS);
        x.f.silent = true;
        exec_wait(&x, &o, SHORT_MS);
        assert_int_equal(o.r, -ETIMEDOUT);
        assert_string_equal(o.msg, "qga guest-exec: no reply from the guest agent within 100 ms");
        /* The late answer, and more, arrive while nobody waits. */
        x.f.silent = false;
        fake_sendf(&x.f, "{\"return\": {\"pid\": 1}}\n{\"return\": {}}\ngarbage\n");
        /* And stale bytes, a false sentinel and a wrong sync id before the
         * right one. */
        x.f.sync_preamble = "{\"return\": {}}\n\xff{\"return\": 0}\n\xff{\"ret\xff";
        int syncs = x.f.syncs;
        ping_wait(&x, &o);
        assert_int_equal(o.r, 0);
        assert_int_equal(x.f.syncs, syncs + 1);
        fx_teardown(&x);
}

static void answer_garbage(struct fake *f, const char *line, int64_t id)
{
        (void)line;
        switch (f->state++) {
        case 0:
                fake_sendf(f, "not json at all\n");
                break;
        case 1:
                fake_sendf(f, "{\"return\": {\"pid\": \"12\"}, \"id\": %" PRId64 "}\n", id);
                break;
        case 2:
                /* A reply to another request is skipped, then ours. */
                fake_sendf(f,
                           "{\"return\": {}, \"id\": %" PRId64 "}\n{\"return\": {}, \"id\": "
                           "\"x\"}\n{\"return\": {}, \"id\": %" PRId64 "}\n",
                           id + 1000, id);
                break;
        default:
                default_answer(f, line, id);
        }
}

static void garbage_and_strays(void **state)
{
        (void)state;
        struct fx x;
        struct outcome o;
        fx_setup(&x, CALL_MS);
        x.f.answer = answer_garbage;
        ping_wait(&x, &o);
        assert_int_equal(o.r, -EPROTO);
        assert_non_null(strstr(o.msg, "qga guest-ping: malformed reply: invalid JSON"));
        exec_wait(&x, &o, 0);
        assert_int_equal(o.r, -EPROTO);
        assert_non_null(strstr(o.msg, "pid has the wrong type"));
        int syncs = x.f.syncs;
        ping_wait(&x, &o);
        assert_int_equal(o.r, 0);
        assert_int_equal(x.f.syncs, syncs + 1);

        /* A reply to a request never made, while idle: the next call syncs
         * and is not fooled by it. */
        syncs = x.f.syncs;
        fake_sendf(&x.f, "{\"return\": {\"exited\": true, \"exitcode\": 7}}\n");
        x.f.status = "{\"exited\": true, \"exitcode\": 5}";
        exec_wait(&x, &o, 0);
        assert_int_equal(o.r, 0);
        assert_int_equal(o.code, 5);
        assert_int_equal(x.f.syncs, syncs + 1);
        fx_teardown(&x);
}

static void answer_oversized(struct fake *f, const char *line, int64_t id)
{
        if (f->state++ > 0) {
                default_answer(f, line, id);
                return;
        }
        size_t n = VMM_QGA_MAX_REPLY + 16;
        char *s = malloc(n);
        assert_non_null(s);
        memcpy(s, "{\"return\": \"", 12);
        memset(s + 12, 'a', n - 12);
        fake_send(f, s, n);
        free(s);
        fake_sendf(f, "\"}\n");
}

static void oversized_reply(void **state)
{
        (void)state;
        struct fx x;
        struct outcome o;
        fx_setup(&x, CALL_MS);
        x.f.answer = answer_oversized;
        ping_wait(&x, &o);
        assert_int_equal(o.r, -EMSGSIZE);
        /* The rest of it is still coming: the next call syncs past it. */
        ping_wait(&x, &o);
        assert_int_equal(o.r, 0);
        assert_int_equal(x.f.syncs, 2);
        fx_teardown(&x);
}

static void output_over_cap(void **state)
{
        (void)state;
        struct fx x;
        struct outcome o;
        fx_setup(&x, CALL_MS);
        size_t n = VMM_QGA_MAX_OUTPUT + 100;
        uint8_t *data = malloc(n);
        assert_non_null(data);
        for (size_t i = 0; i < n; i++)
                data[i] = (uint8_t)('a' + i % 26);
        const char *enc = b64(data, n);
        free(data);
        char *status = NULL;
        assert_true(asprintf(&status,
                             "{\"exited\": true, \"exitcode\": 0, \"out-data\": \"%s\", "
                             "\"err-data\": \"ZXJyCg==\", \"err-truncated\": true}",
                             enc) > 0);
        x.f.status = status;
        exec_wait(&x, &o, 0);
        assert_int_equal(o.r, 0);
        assert_int_equal(o.out_len, VMM_QGA_MAX_OUTPUT);
        assert_true(o.out_truncated);
        assert_memory_equal(o.out, "abcdefghijklmnopqrstuvwxyzabc", 29);
        assert_int_equal(o.err_len, 4);
        assert_true(o.err_truncated); /* the agent said so */
        free(status);
        fx_teardown(&x);
}

static void peer_closes(void **state)
{
        (void)state;
        struct fx x;
        struct outcome o, queued;
        fx_setup(&x, CALL_MS);
        ping_wait(&x, &o);
        x.f.close_on_request = true;
        ping(&x, &o);
        memset(&queued, 0, sizeof(queued));
        queued.loop = x.loop;
        assert_int_equal(vmm_qga_ping(x.q, done_cb, &queued, NULL, NULL), 0);
        run_until(&x, &o.calls, 1);
        run_until(&x, &queued.calls, 1);
        assert_int_equal(o.r, -ECONNRESET);
        assert_int_equal(queued.r, -ENOTCONN);
        assert_false(vmm_qga_attached(x.q));
        struct us_error *err = NULL;
        assert_int_equal(vmm_qga_ping(x.q, done_cb, &o, NULL, &err), -ENOTCONN);
        us_error_free(err);
        /* Idle when the guest hangs up: noticed too. */
        struct fake f2;
        attach_fake(&x, &f2);
        ping_wait(&x, &o);
        assert_int_equal(o.r, 0);
        fake_hangup(&f2);
        run_while_attached(&x);
        assert_false(vmm_qga_attached(x.q));
        fake_fini(&f2);
        fx_teardown(&x);
}

static void attach_replaces(void **state)
{
        (void)state;
        struct fx x;
        struct outcome first, second;
        fx_setup(&x, CALL_MS);
        x.f.silent = true;
        x.f.quit_on_request = true;
        ping(&x, &first);
        memset(&second, 0, sizeof(second));
        second.loop = x.loop;
        assert_int_equal(vmm_qga_ping(x.q, done_cb, &second, NULL, NULL), 0);
        run_until(&x, &x.f.requests, 1);
        assert_int_equal(x.f.requests, 1);

        struct fake f2;
        attach_fake(&x, &f2);
        run_until(&x, &first.calls, 1);
        assert_int_equal(first.r, -ECONNRESET);
        assert_non_null(strstr(first.msg, "replaced"));
        /* The queued call goes out on the new channel, after a sync. */
        run_until(&x, &second.calls, 1);
        assert_int_equal(second.r, 0);
        assert_int_equal(f2.syncs, 1);
        assert_int_equal(f2.requests, 1);
        assert_int_equal(x.f.requests, 1);
        fake_fini(&f2);
        fx_teardown(&x);
}

static void cancel_and_free(void **state)
{
        (void)state;
        struct fx x;
        struct outcome a, b, c;
        fx_setup(&x, CALL_MS);

        /* Cancel the active call and a queued one: no callbacks; the next
         * call syncs past the late answer. */
        x.f.quit_on_request = true;
        struct vmm_qga_call *ca = NULL, *cb = NULL;
        memset(&a, 0, sizeof(a));
        memset(&b, 0, sizeof(b));
        a.loop = b.loop = x.loop;
        assert_int_equal(vmm_qga_ping(x.q, done_cb, &a, &ca, NULL), 0);
        assert_int_equal(vmm_qga_ping(x.q, done_cb, &b, &cb, NULL), 0);
        run_until(&x, &x.f.requests, 1);
        vmm_qga_cancel(ca);
        vmm_qga_cancel(cb);
        vmm_qga_cancel(NULL);
        x.f.quit_on_request = false;
        int syncs = x.f.syncs;
        ping_wait(&x, &c);
        assert_int_equal(c.r, 0);
        assert_int_equal(x.f.syncs, syncs + 1);
        assert_int_equal(a.calls, 0);
        assert_int_equal(b.calls, 0);

        /* A sleeping exec, an active ping, a queued ping: freed. */
        x.f.running = 1000;
        memset(&a, 0, sizeof(a));
        a.loop = x.loop;
        assert_int_equal(
                vmm_qga_exec(x.q, "/bin/true", NULL, 0, NULL, 0, 0, done_cb, &a, NULL, NULL), 0);
        x.f.quit_on_request = true;
        run_until(&x, &x.f.polls, 2);
        x.f.silent = true;
        ping(&x, &b);
        memset(&c, 0, sizeof(c));
        c.loop = x.loop;
        assert_int_equal(vmm_qga_ping(x.q, done_cb, &c, NULL, NULL), 0);
        x.q = vmm_qga_free(x.q);
        assert_int_equal(a.calls + b.calls + c.calls, 0);
        fx_teardown(&x);

        /* Freed from a callback while others are pending. */
        fx_setup(&x, CALL_MS);
        ping(&x, &a);
        a.free_client = &x.q;
        memset(&b, 0, sizeof(b));
        b.loop = x.loop;
        assert_int_equal(vmm_qga_ping(x.q, done_cb, &b, NULL, NULL), 0);
        run_until(&x, &a.calls, 1);
        assert_int_equal(a.r, 0);
        assert_null(x.q);
        assert_int_equal(b.calls, 0);
        fx_teardown(&x);
}

static void exec_timeout(void **state)
{
        (void)state;
        struct fx x;
        struct outcome o;
        fx_setup(&x, CALL_MS);
        x.f.running = 1u << 30;
        exec_wait(&x, &o, SHORT_MS);
        assert_int_equal(o.r, -ETIMEDOUT);
        assert_non_null(strstr(o.msg, "did not exit"));
        assert_true(x.f.polls >= 1);
        /* The channel is fine afterwards. */
        ping_wait(&x, &o);
        assert_int_equal(o.r, 0);
        fx_teardown(&x);
}

static void too_many_calls(void **state)
{
        (void)state;
        struct fx x;
        static struct outcome o[VMM_QGA_MAX_CALLS + 1];
        fx_setup(&x, CALL_MS);
        x.f.silent = true;
        for (int i = 0; i < VMM_QGA_MAX_CALLS; i++) {
                o[i] = (struct outcome){.loop = x.loop};
                assert_int_equal(vmm_qga_ping(x.q, done_cb, &o[i], NULL, NULL), 0);
        }
        assert_int_equal(vmm_qga_ping(x.q, done_cb, &o[VMM_QGA_MAX_CALLS], NULL, NULL), -ENOBUFS);
        assert_int_equal(vmm_qga_new(x.loop, 0, &(struct vmm_qga *){NULL}, NULL), -EINVAL);
        fx_teardown(&x);
}

/* ---- the real qemu-ga, on this host ---- */

#define QEMU_GA "/usr/sbin/qemu-ga"

/* Every RPC this qemu-ga has, but the four we use: it runs on the host, so
 * nothing else (fsfreeze, shutdown, files, users) may be reachable. */
static char *block_list(void)
{
        static const char *const allowed[] = {"guest-sync-delimited", "guest-ping", "guest-exec",
                                              "guest-exec-status"};
        FILE *p = popen(QEMU_GA " -b help 2>&1", "r");
        assert_non_null(p);
        struct us_text t = {};
        char line[256];
        while (fgets(line, sizeof(line), p)) {
                line[strcspn(line, "\r\n")] = '\0';
                if (strncmp(line, "guest-", 6) != 0)
                        continue;
                bool keep = false;
                for (size_t i = 0; i < US_ELEMENTSOF(allowed); i++)
                        keep |= strcmp(line, allowed[i]) == 0;
                if (!keep)
                        us_text_add(&t, "%s%s", t.len ? "," : "", line);
        }
        (void)pclose(p);
        char *s = us_text_take(&t);
        assert_non_null(s);
        assert_non_null(strstr(s, "guest-fsfreeze-freeze"));
        return s;
}

static int connect_unix(const char *path)
{
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        (void)snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        assert_true(fd >= 0);
        if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0)
                return fd;
        close(fd);
        return -1;
}

static pid_t agent_pid;

/* A failed assertion leaves real_agent() at once: the agent goes here. */
static int real_agent_teardown(void **state)
{
        (void)state;
        if (agent_pid > 0) {
                kill(agent_pid, SIGKILL);
                (void)waitpid(agent_pid, NULL, 0);
                agent_pid = 0;
        }
        return 0;
}

static void real_agent(void **state)
{
        (void)state;
        if (access(QEMU_GA, X_OK) != 0)
                unit_skip("qemu-ga missing (apt package qemu-guest-agent)");

        char dir[] = "/tmp/test-vmm-qga-XXXXXX";
        assert_non_null(mkdtemp(dir));
        char sock[128], pidf[128], logf[128];
        (void)snprintf(sock, sizeof(sock), "%s/qga.sock", dir);
        (void)snprintf(pidf, sizeof(pidf), "%s/qga.pid", dir);
        (void)snprintf(logf, sizeof(logf), "%s/qga.log", dir);
        char *blocked = block_list();
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
                /* Gone with the test, whatever way the test ends. */
                (void)prctl(PR_SET_PDEATHSIG, SIGKILL);
                execl(QEMU_GA, "qemu-ga", "-m", "unix-listen", "-p", sock, "-t", dir, "-f", pidf,
                      "-l", logf, "-b", blocked, (char *)NULL);
                _exit(127);
        }
        free(blocked);
        agent_pid = pid;

        /* Wait for its socket (an event; the deadline tells a hang). */
        int fd = -1;
        int64_t deadline = us_monotonic_ms() + RUN_MS;
        bool exited = false;
        while (fd < 0 && !exited && us_monotonic_ms() < deadline) {
                fd = connect_unix(sock);
                if (fd < 0) {
                        exited = waitpid(pid, NULL, WNOHANG) == pid;
                        (void)poll(NULL, 0, 10);
                }
        }
        if (fd < 0) {
                if (exited)
                        agent_pid = 0; /* reaped */
                fail_msg("qemu-ga did not listen on %s (log: %s)", sock, logf);
        }

        struct fx x = {};
        struct outcome o;
        assert_int_equal(us_loop_new(&x.loop, NULL), 0);
        assert_int_equal(vmm_qga_new(x.loop, CALL_MS, &x.q, NULL), 0);
        assert_int_equal(vmm_qga_attach(x.q, fd, NULL), 0);

        ping_wait(&x, &o);
        assert_int_equal(o.r, 0);

        static const char *const env[] = {"PATH=/usr/bin:/bin", "LC_ALL=C"};
        static const char *const hello[] = {"hello", "\"qga\""};
        memset(&o, 0, sizeof(o));
        o.loop = x.loop;
        assert_int_equal(
                vmm_qga_exec(x.q, "/bin/echo", hello, 2, env, 2, 0, done_cb, &o, NULL, NULL), 0);
        run_until(&x, &o.calls, 1);
        assert_int_equal(o.r, 0);
        assert_false(o.signalled);
        assert_int_equal(o.code, 0);
        assert_string_equal(o.out, "hello \"qga\"\n");
        assert_int_equal(o.err_len, 0);

        memset(&o, 0, sizeof(o));
        o.loop = x.loop;
        assert_int_equal(
                vmm_qga_exec(x.q, "/bin/true", NULL, 0, env, 2, 0, done_cb, &o, NULL, NULL), 0);
        run_until(&x, &o.calls, 1);
        assert_int_equal(o.r, 0);
        assert_int_equal(o.code, 0);
        assert_int_equal(o.out_len + o.err_len, 0);

        /* A path that does not exist: nothing runs, the agent answers an error. */
        memset(&o, 0, sizeof(o));
        o.loop = x.loop;
        assert_int_equal(
                vmm_qga_exec(x.q, "/nonexistent/x", NULL, 0, env, 2, 0, done_cb, &o, NULL, NULL),
                0);
        run_until(&x, &o.calls, 1);
        assert_int_equal(o.r, -EIO);
        assert_non_null(strstr(o.msg, "qga guest-exec: GenericError: "));

        /* A second connection replaces the first; the agent serves it. */
        x.q = vmm_qga_free(x.q);
        assert_int_equal(vmm_qga_new(x.loop, CALL_MS, &x.q, NULL), 0);
        fd = -1;
        deadline = us_monotonic_ms() + RUN_MS;
        while ((fd = connect_unix(sock)) < 0 && us_monotonic_ms() < deadline)
                (void)poll(NULL, 0, 10);
        assert_true(fd >= 0);
        assert_int_equal(vmm_qga_attach(x.q, fd, NULL), 0);
        ping_wait(&x, &o);
        assert_int_equal(o.r, 0);

        x.q = vmm_qga_free(x.q);
        us_loop_free(x.loop);
        kill(pid, SIGTERM);
        assert_int_equal(waitpid(pid, NULL, 0), pid);
        agent_pid = 0;
        (void)unlink(sock);
        (void)unlink(pidf);
        (void)unlink(logf);
        char state_file[160];
        (void)snprintf(state_file, sizeof(state_file), "%s/qga.state", dir);
        (void)unlink(state_file);
        if (rmdir(dir) < 0)
                fail_msg("qemu-ga left files in %s", dir);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(parses_replies),
                cmocka_unit_test(rejects_bad_replies),
                cmocka_unit_test(rejects_nul_depth_size),
                cmocka_unit_test(sanitizes),
                cmocka_unit_test(ping_ok),
                cmocka_unit_test(exec_output),
                cmocka_unit_test(exec_request_escaped),
                cmocka_unit_test(exec_signalled_after_polls),
                cmocka_unit_test(agent_error),
                cmocka_unit_test(call_timeout),
                cmocka_unit_test(timeout_then_resync),
                cmocka_unit_test(garbage_and_strays),
                cmocka_unit_test(oversized_reply),
                cmocka_unit_test(output_over_cap),
                cmocka_unit_test(peer_closes),
                cmocka_unit_test(attach_replaces),
                cmocka_unit_test(cancel_and_free),
                cmocka_unit_test(exec_timeout),
                cmocka_unit_test(too_many_calls),
                cmocka_unit_test_teardown(real_agent, real_agent_teardown),
        };
        return unit_exit(unit_run_group_tests(tests, NULL, NULL));
}
