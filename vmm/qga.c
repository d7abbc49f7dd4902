/* SPDX-License-Identifier: Apache-2.0 */
/*
 * qemu-ga client on the event loop (see qga.h for the contract).
 *
 * One request at a time: the agent answers in order and has no way to match
 * a reply to its request other than the "id" it echoes, which a hostile or
 * old agent need not echo. Calls wait in a FIFO; the head becomes the active
 * call, whose request (preceded by a sync when the channel may hold stale
 * bytes) is written and whose reply is read; an exec between two status
 * polls sleeps on a timer of its own, off the channel.
 *
 * Outcomes are never reported from where they are found: the call is marked
 * ended and a zero timer reports ended calls from the loop. So callbacks run
 * from one place only (on_work), where re-entry (new calls, cancel, attach,
 * free) is safe, and no reader or writer keeps a pointer across a callback.
 */
#include "qga.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>
#include <yajl/yajl_gen.h>
#include <yajl/yajl_parse.h>

#include "base/cleanup.h"
#include "base/fs-util.h"
#include "base/text.h"

DEFINE_CLEANUP(yajl_gen, yajl_gen_free)
DEFINE_CLEANUP(yajl_handle, yajl_free)

/* A sync reply ({"return": <int>}) is short: a longer line after a sentinel
 * is not one. */
#define SYNC_LINE_MAX 256
/* Bytes read per wakeup: other sources get their turn when the guest floods. */
#define READ_CHUNK      (64u * 1024)
#define IN_MAX          ((size_t)VMM_QGA_MAX_REPLY + 1)
#define ERROR_CLASS_MAX 64

/* ---- sanitising text from the guest ---- */

/* Length of the well-formed UTF-8 sequence at s (≤ len bytes) and its code
 * point, or 0. Overlong forms, surrogates and values past U+10FFFF are not
 * well-formed. */
static size_t utf8_decode(const unsigned char *s, size_t len, uint32_t *cp)
{
        size_t n;
        uint32_t v, min;

        if (s[0] < 0x80) {
                *cp = s[0];
                return 1;
        } else if ((s[0] & 0xE0) == 0xC0) {
                n = 2, v = s[0] & 0x1F, min = 0x80;
        } else if ((s[0] & 0xF0) == 0xE0) {
                n = 3, v = s[0] & 0x0F, min = 0x800;
        } else if ((s[0] & 0xF8) == 0xF0) {
                n = 4, v = s[0] & 0x07, min = 0x10000;
        } else {
                return 0;
        }
        if (len < n)
                return 0;
        for (size_t i = 1; i < n; i++) {
                if ((s[i] & 0xC0) != 0x80)
                        return 0;
                v = (v << 6) | (s[i] & 0x3F);
        }
        if (v < min || v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF))
                return 0;
        *cp = v;
        return n;
}

/* Code points that must not reach a log: controls, C1, line and paragraph
 * separators, the bidi controls that can reorder what a reader sees. */
static bool printable(uint32_t cp)
{
        if (cp < 0x20 || cp == 0x7F || (cp >= 0x80 && cp < 0xA0))
                return false;
        if (cp == 0x061C || cp == 0x200E || cp == 0x200F || (cp >= 0x2028 && cp <= 0x202E) ||
            (cp >= 0x2066 && cp <= 0x2069) || cp == 0xFEFF)
                return false;
        return true;
}

char *vmm_qga_sanitize(const char *s, size_t len, size_t max)
{
        const unsigned char *u = (const unsigned char *)s;
        char *out = malloc(max + 4);
        size_t o = 0, i = 0;

        if (!out)
                return NULL;
        while (i < len) {
                uint32_t cp = 0;
                size_t n = utf8_decode(u + i, len - i, &cp);
                bool ok = n > 0 && printable(cp);
                size_t w = ok ? n : 1;
                if (o + w > max) {
                        memcpy(out + o, "...", 3);
                        o += 3;
                        break;
                }
                if (ok)
                        memcpy(out + o, u + i, n);
                else
                        out[o] = '?';
                o += w;
                i += n > 0 ? n : 1;
        }
        out[o] = '\0';
        return out;
}

/* ---- base64 (the agent's captured output) ---- */

static int b64_value(unsigned char c)
{
        if (c >= 'A' && c <= 'Z')
                return c - 'A';
        if (c >= 'a' && c <= 'z')
                return c - 'a' + 26;
        if (c >= '0' && c <= '9')
                return c - '0' + 52;
        if (c == '+')
                return 62;
        if (c == '/')
                return 63;
        return -1;
}

/* Decodes padded base64, keeping at most cap bytes (*ret_cut when more were
 * dropped). The whole input is validated, the memory is at most cap. */
static int b64_decode(const unsigned char *s, size_t len, size_t cap, uint8_t **ret,
                      size_t *ret_len, bool *ret_cut)
{
        if (len % 4 != 0)
                return -EINVAL;
        size_t pad = 0;
        if (len > 0 && s[len - 1] == '=')
                pad = len > 1 && s[len - 2] == '=' ? 2 : 1;
        size_t total = len / 4 * 3 - pad;
        size_t keep = total < cap ? total : cap;
        _cleanup_free_ uint8_t *out = keep > 0 ? malloc(keep) : NULL;
        if (keep > 0 && !out)
                return -ENOMEM;

        size_t o = 0;
        for (size_t i = 0; i < len; i += 4) {
                bool last = i + 4 == len;
                int v[4];
                for (size_t k = 0; k < 4; k++) {
                        if (last && s[i + k] == '=' && k >= 4 - pad)
                                v[k] = 0;
                        else if ((v[k] = b64_value(s[i + k])) < 0)
                                return -EINVAL;
                }
                uint32_t bits = (uint32_t)v[0] << 18 | (uint32_t)v[1] << 12 | (uint32_t)v[2] << 6 |
                                (uint32_t)v[3];
                uint8_t b[3] = {(uint8_t)(bits >> 16), (uint8_t)(bits >> 8), (uint8_t)bits};
                size_t nb = last ? 3 - pad : 3;
                for (size_t k = 0; k < nb; k++, o++)
                        if (o < keep)
                                out[o] = b[k];
        }
        *ret = TAKE_PTR(out);
        *ret_len = keep;
        *ret_cut = total > keep;
        return 0;
}

/* ---- the reply parser: yajl callbacks, no tree ---- */

/* What the next value is, by where it sits. */
enum slot {
        S_IGNORE, /* nobody looks at it (unknown members, array elements) */
        S_TOP,
        S_RETURN,
        S_ERROR,
        S_ID,
        S_PID,
        S_EXITED,
        S_EXITCODE,
        S_SIGNAL,
        S_OUT_DATA,
        S_ERR_DATA,
        S_OUT_TRUNC,
        S_ERR_TRUNC,
        S_CLASS,
        S_DESC,
        _S_MAX,
};

/* The container a depth is in. */
enum cont { C_IGNORE, C_TOP, C_RETURN, C_ERROR };

static const struct {
        enum cont cont;
        const char *key;
        enum slot slot;
} members[] = {
        {C_TOP, "return", S_RETURN},
        {C_TOP, "error", S_ERROR},
        {C_TOP, "id", S_ID},
        {C_RETURN, "pid", S_PID},
        {C_RETURN, "exited", S_EXITED},
        {C_RETURN, "exitcode", S_EXITCODE},
        {C_RETURN, "signal", S_SIGNAL},
        {C_RETURN, "out-data", S_OUT_DATA},
        {C_RETURN, "err-data", S_ERR_DATA},
        {C_RETURN, "out-truncated", S_OUT_TRUNC},
        {C_RETURN, "err-truncated", S_ERR_TRUNC},
        {C_ERROR, "class", S_CLASS},
        {C_ERROR, "desc", S_DESC},
};

static const char *slot_name(enum slot s)
{
        for (size_t i = 0; i < US_ELEMENTSOF(members); i++)
                if (members[i].slot == s)
                        return members[i].key;
        return s == S_TOP ? "reply" : "value";
}

struct pctx {
        enum vmm_qga_expect expect;
        struct vmm_qga_reply *r;
        unsigned depth;
        enum cont stack[VMM_QGA_MAX_DEPTH + 1];
        enum slot key; /* the member whose value comes next */
        uint32_t seen; /* bit per slot */
        int error;     /* set when a callback stops the parse */
        char why[96];
};

/* Stops the parse with "<what> <why>"; returns 0 for yajl. */
static int stop(struct pctx *p, int error, const char *what, const char *why)
{
        p->error = error;
        (void)snprintf(p->why, sizeof(p->why), "%s %s", what, why);
        return 0;
}

static int wrong_type(struct pctx *p, enum slot s)
{
        if (s == S_TOP)
                return stop(p, EPROTO, "reply", "is not a JSON object");
        return stop(p, EPROTO, slot_name(s), "has the wrong type");
}

/* The slot of the value that starts now. */
static enum slot value_slot(struct pctx *p)
{
        if (p->depth == 0)
                return S_TOP;
        if (p->stack[p->depth] == C_IGNORE)
                return S_IGNORE;
        enum slot s = p->key;
        p->key = S_IGNORE;
        return s;
}

static int push(struct pctx *p, enum cont c)
{
        if (p->depth >= VMM_QGA_MAX_DEPTH)
                return stop(p, EPROTO, "reply", "nested too deeply");
        p->stack[++p->depth] = c;
        return 1;
}

static int pop(void *ctx)
{
        struct pctx *p = ctx;
        p->depth--;
        return 1;
}

static bool returns_object(enum vmm_qga_expect e)
{
        return e != VMM_QGA_EXPECT_SYNC;
}

static int on_start_map(void *ctx)
{
        struct pctx *p = ctx;
        enum slot s = value_slot(p);
        switch (s) {
        case S_TOP:
                return push(p, C_TOP);
        case S_RETURN:
                if (!returns_object(p->expect))
                        return wrong_type(p, s);
                /* A ping's members are nobody's business. */
                return push(p, p->expect == VMM_QGA_EXPECT_PING ? C_IGNORE : C_RETURN);
        case S_ERROR:
                return push(p, C_ERROR);
        case S_ID:
                p->r->foreign_id = true;
                return push(p, C_IGNORE);
        case S_IGNORE:
                return push(p, C_IGNORE);
        case S_PID:
        case S_EXITED:
        case S_EXITCODE:
        case S_SIGNAL:
        case S_OUT_DATA:
        case S_ERR_DATA:
        case S_OUT_TRUNC:
        case S_ERR_TRUNC:
        case S_CLASS:
        case S_DESC:
        case _S_MAX:
                break;
        }
        return wrong_type(p, s);
}

static int on_start_array(void *ctx)
{
        struct pctx *p = ctx;
        enum slot s = value_slot(p);
        if (s == S_ID)
                p->r->foreign_id = true;
        else if (s != S_IGNORE)
                return wrong_type(p, s);
        return push(p, C_IGNORE);
}

static int on_map_key(void *ctx, const unsigned char *key, size_t len)
{
        struct pctx *p = ctx;
        enum cont c = p->stack[p->depth];
        p->key = S_IGNORE;
        if (c == C_IGNORE)
                return 1;
        for (size_t i = 0; i < US_ELEMENTSOF(members); i++) {
                if (members[i].cont != c || strlen(members[i].key) != len ||
                    memcmp(members[i].key, key, len) != 0)
                        continue;
                uint32_t bit = 1u << members[i].slot;
                if (p->seen & bit)
                        return stop(p, EPROTO, members[i].key, "twice");
                p->seen |= bit;
                p->key = members[i].slot;
                break;
        }
        return 1;
}

/* A value that is neither an integer, nor a boolean, nor a string we want. */
static int other_scalar(struct pctx *p, enum slot s)
{
        if (s == S_IGNORE)
                return 1;
        if (s == S_ID) {
                p->r->foreign_id = true;
                return 1;
        }
        return wrong_type(p, s);
}

static int on_null(void *ctx)
{
        struct pctx *p = ctx;
        return other_scalar(p, value_slot(p));
}

static int on_double(void *ctx, double d)
{
        (void)d;
        struct pctx *p = ctx;
        return other_scalar(p, value_slot(p));
}

static int on_boolean(void *ctx, int b)
{
        struct pctx *p = ctx;
        enum slot s = value_slot(p);
        if (s == S_EXITED)
                p->r->exited = b;
        else if (s == S_OUT_TRUNC)
                p->r->res.out_truncated |= !!b;
        else if (s == S_ERR_TRUNC)
                p->r->res.err_truncated |= !!b;
        else
                return other_scalar(p, s);
        return 1;
}

static int on_integer(void *ctx, long long v)
{
        struct pctx *p = ctx;
        enum slot s = value_slot(p);
        if (s == S_RETURN && p->expect == VMM_QGA_EXPECT_SYNC) {
                p->r->value = v;
        } else if (s == S_ID) {
                p->r->has_id = true;
                p->r->id = v;
        } else if (s == S_PID) {
                p->r->value = v;
        } else if (s == S_EXITCODE || s == S_SIGNAL) {
                /* Whatever the guest claims must fit the int it lands in. */
                if (v < -1024 || v > 1024)
                        return stop(p, EPROTO, slot_name(s), "out of range");
                p->r->res.code = (int)v;
                p->r->res.signalled |= s == S_SIGNAL;
        } else {
                return other_scalar(p, s);
        }
        return 1;
}

static int on_string(void *ctx, const unsigned char *str, size_t len)
{
        struct pctx *p = ctx;
        struct vmm_qga_reply *r = p->r;
        enum slot s = value_slot(p);

        if (s == S_CLASS || s == S_DESC) {
                char **dst = s == S_CLASS ? &r->error_class : &r->error_desc;
                *dst = vmm_qga_sanitize((const char *)str, len,
                                        s == S_CLASS ? ERROR_CLASS_MAX : VMM_QGA_MAX_DESC);
                return *dst ? 1 : stop(p, ENOMEM, slot_name(s), "out of memory");
        }
        if (s == S_OUT_DATA || s == S_ERR_DATA) {
                bool out = s == S_OUT_DATA, cut = false;
                int k = b64_decode(str, len, VMM_QGA_MAX_OUTPUT, out ? &r->res.out : &r->res.err,
                                   out ? &r->res.out_len : &r->res.err_len, &cut);
                if (k == -ENOMEM)
                        return stop(p, ENOMEM, slot_name(s), "out of memory");
                if (k < 0)
                        return stop(p, EPROTO, slot_name(s), "is not base64");
                if (out)
                        r->res.out_truncated |= cut;
                else
                        r->res.err_truncated |= cut;
                return 1;
        }
        return other_scalar(p, s);
}

static const yajl_callbacks parse_callbacks = {
        .yajl_null = on_null,
        .yajl_boolean = on_boolean,
        .yajl_integer = on_integer,
        .yajl_double = on_double,
        .yajl_string = on_string,
        .yajl_start_map = on_start_map,
        .yajl_map_key = on_map_key,
        .yajl_end_map = pop,
        .yajl_start_array = on_start_array,
        .yajl_end_array = pop,
};

struct vmm_qga_reply *vmm_qga_reply_free(struct vmm_qga_reply *r)
{
        if (!r)
                return NULL;
        free(r->error_class);
        free(r->error_desc);
        free(r->res.out);
        free(r->res.err);
        free(r);
        return NULL;
}

DEFINE_CLEANUP(struct vmm_qga_reply *, vmm_qga_reply_free)

static bool seen(const struct pctx *p, enum slot s)
{
        return p->seen & (1u << s);
}

/* What a complete reply must hold, by what it answers. */
static int check_reply(struct pctx *p, struct us_error **err)
{
        struct vmm_qga_reply *r = p->r;

        if (seen(p, S_RETURN) == seen(p, S_ERROR))
                return us_error_msg(err, EPROTO,
                                    "malformed reply: not exactly one of return and error");
        if (seen(p, S_ERROR)) {
                if (!r->error_class || !r->error_desc)
                        return us_error_msg(err, EPROTO,
                                            "malformed reply: error lacks string class and desc");
                r->is_error = true;
                return 0;
        }
        switch (p->expect) {
        case VMM_QGA_EXPECT_SYNC:
        case VMM_QGA_EXPECT_PING:
                return 0;
        case VMM_QGA_EXPECT_EXEC:
                if (!seen(p, S_PID) || r->value <= 0)
                        return us_error_msg(err, EPROTO, "malformed reply: no pid");
                return 0;
        case VMM_QGA_EXPECT_EXEC_STATUS:
                if (!seen(p, S_EXITED))
                        return us_error_msg(err, EPROTO, "malformed reply: no exited");
                if (!r->exited) {
                        /* Output comes with the exit only; drop any early. */
                        r->res.out = (free(r->res.out), NULL);
                        r->res.err = (free(r->res.err), NULL);
                        r->res = (struct vmm_qga_exec_result){};
                        return 0;
                }
                if (!seen(p, S_EXITCODE) && !seen(p, S_SIGNAL))
                        return us_error_msg(err, EPROTO,
                                            "malformed reply: exited without exitcode or signal");
                if (seen(p, S_EXITCODE) && seen(p, S_SIGNAL))
                        return us_error_msg(err, EPROTO,
                                            "malformed reply: both exitcode and signal");
                return 0;
        }
        return us_error_msg(err, EINVAL, "unknown reply kind");
}

int vmm_qga_reply_parse(const char *buf, size_t len, enum vmm_qga_expect expect,
                        struct vmm_qga_reply **ret, struct us_error **err)
{
        _cleanup_(vmm_qga_reply_free_cleanupp) struct vmm_qga_reply *r = NULL;
        _cleanup_(yajl_free_cleanupp) yajl_handle h = NULL;

        if (!buf && len > 0)
                return us_error_msg(err, EINVAL, "no reply buffer");
        if (len > VMM_QGA_MAX_REPLY)
                return us_error_msg(err, EMSGSIZE, "reply of %zu bytes exceeds %u", len,
                                    VMM_QGA_MAX_REPLY);
        while (len > 0 && (buf[len - 1] == '\n' || buf[len - 1] == '\r'))
                len--;
        r = calloc(1, sizeof(*r));
        if (!r)
                return us_errorf(err, ENOMEM, "allocate reply");
        struct pctx p = {.expect = expect, .r = r};
        h = yajl_alloc(&parse_callbacks, NULL, &p);
        if (!h)
                return us_errorf(err, ENOMEM, "allocate reply parser");

        yajl_status st = yajl_parse(h, (const unsigned char *)buf, len);
        if (st == yajl_status_ok)
                st = yajl_complete_parse(h);
        if (st == yajl_status_client_canceled)
                return us_error_msg(err, p.error, "malformed reply: %s", p.why);
        if (st != yajl_status_ok) {
                unsigned char *e = yajl_get_error(h, 0, NULL, 0);
                _cleanup_free_ char *why =
                        e ? vmm_qga_sanitize((const char *)e, strlen((const char *)e), 96) : NULL;
                if (e)
                        yajl_free_error(h, e);
                return us_error_msg(err, EPROTO, "malformed reply: invalid JSON: %s",
                                    why ? why : "?");
        }
        int k = check_reply(&p, err);
        if (k < 0)
                return k;
        *ret = TAKE_PTR(r);
        return 0;
}

/* ---- the client ---- */

enum call_state {
        CALL_QUEUED,    /* waits for the channel */
        CALL_ACTIVE,    /* its request is on the channel */
        CALL_SLEEPING,  /* an exec between two status polls */
        CALL_ENDED,     /* outcome known, to be reported from on_work */
        CALL_REPORTING, /* its callback runs */
};

enum call_step { STEP_PING, STEP_EXEC, STEP_STATUS };

static const char *const step_command[] = {
        [STEP_PING] = "guest-ping",
        [STEP_EXEC] = "guest-exec",
        [STEP_STATUS] = "guest-exec-status",
};

static const enum vmm_qga_expect step_expect[] = {
        [STEP_PING] = VMM_QGA_EXPECT_PING,
        [STEP_EXEC] = VMM_QGA_EXPECT_EXEC,
        [STEP_STATUS] = VMM_QGA_EXPECT_EXEC_STATUS,
};

struct vmm_qga_call {
        struct vmm_qga *q;
        struct vmm_qga_call *qnext; /* q's send queue */
        enum call_state state;
        enum call_step step;
        bool sent;           /* a request of it went out on the current channel */
        char *exec_args;     /* guest-exec's "arguments" object */
        unsigned timeout_ms; /* the exec as a whole */
        int64_t exec_deadline;
        int64_t pid;
        unsigned poll_ms;
        struct us_loop_source *sleep;
        int result;                   /* CALL_ENDED */
        struct us_error *error;       /* CALL_ENDED with result < 0 */
        struct vmm_qga_reply *status; /* CALL_ENDED exec: the final status */
        vmm_qga_done_fn done;
        void *userdata;
};

/* Where the reader is in the active request's answer. */
enum rx_mode {
        RX_SENTINEL, /* discarding up to the agent's 0xFF */
        RX_SYNC,     /* a line after it: our sync reply, or not */
        RX_REPLY,    /* the reply to the request */
};

struct vmm_qga {
        struct us_loop *loop;
        unsigned call_timeout_ms;

        int fd;
        unsigned gen; /* bumped whenever the channel changes */
        struct us_loop_source *src;
        uint32_t events;
        bool need_sync;
        int64_t sync_id;
        int64_t next_id;

        struct vmm_qga_call *calls[VMM_QGA_MAX_CALLS]; /* oldest first */
        size_t n_calls;
        struct vmm_qga_call *head, *tail; /* send queue */

        struct vmm_qga_call *active;
        int64_t active_id;
        int64_t active_timeout_ms; /* the active request's, for messages */
        struct us_loop_source *deadline;
        enum rx_mode rx;
        char *in;
        size_t in_len, in_cap;
        size_t in_scanned; /* RX_REPLY: bytes of in known to hold no newline */
        char *out;
        size_t out_off, out_len;

        struct us_loop_source *work; /* zero timer: reports, then starts the next */
        unsigned depth;              /* on_work frames running callbacks */
        bool freed;
};

static void on_work(struct us_loop_source *src, void *userdata);

/* Asks the loop to run on_work soon. A failure to add the timer is an
 * allocation failure that leaves calls unreported until the next event
 * schedules again; every later event retries. */
static void schedule(struct vmm_qga *q)
{
        if (!q->work && !q->freed)
                (void)us_loop_add_timer(q->loop, 0, on_work, q, &q->work, NULL);
}

static void queue_push(struct vmm_qga *q, struct vmm_qga_call *c)
{
        c->qnext = NULL;
        if (q->tail)
                q->tail->qnext = c;
        else
                q->head = c;
        q->tail = c;
        c->state = CALL_QUEUED;
        schedule(q);
}

static void queue_remove(struct vmm_qga *q, struct vmm_qga_call *c)
{
        struct vmm_qga_call *prev = NULL;
        for (struct vmm_qga_call *i = q->head; i; prev = i, i = i->qnext) {
                if (i != c)
                        continue;
                if (prev)
                        prev->qnext = c->qnext;
                else
                        q->head = c->qnext;
                if (q->tail == c)
                        q->tail = prev;
                c->qnext = NULL;
                return;
        }
}

static void call_unlink(struct vmm_qga *q, struct vmm_qga_call *c)
{
        for (size_t i = 0; i < q->n_calls; i++) {
                if (q->calls[i] != c)
                        continue;
                memmove(q->calls + i, q->calls + i + 1, (q->n_calls - i - 1) * sizeof(c));
                q->n_calls--;
                return;
        }
}

static struct vmm_qga_call *call_free(struct vmm_qga_call *c)
{
        if (!c)
                return NULL;
        us_loop_source_remove(c->sleep);
        free(c->exec_args);
        us_error_free(c->error);
        vmm_qga_reply_free(c->status);
        free(c);
        return NULL;
}

DEFINE_CLEANUP(struct vmm_qga_call *, call_free)

static void input_reset(struct vmm_qga *q)
{
        q->in = (free(q->in), NULL);
        q->in_len = q->in_cap = q->in_scanned = 0;
}

static void output_reset(struct vmm_qga *q)
{
        q->out = (free(q->out), NULL);
        q->out_off = q->out_len = 0;
}

static int update_events(struct vmm_qga *q)
{
        if (!q->src)
                return 0;
        /* Read only while a reply is awaited: a guest that talks out of
         * turn fills its own socket buffer, and the next request syncs. */
        uint32_t ev =
                EPOLLRDHUP | (q->active ? EPOLLIN : 0) | (q->out_off < q->out_len ? EPOLLOUT : 0);
        if (ev == q->events)
                return 0;
        int r = us_loop_source_set_events(q->src, ev, NULL);
        if (r < 0)
                return r;
        q->events = ev;
        return 0;
}

/* The active request is over, one way or another. */
static struct vmm_qga_call *active_take(struct vmm_qga *q)
{
        struct vmm_qga_call *c = TAKE_PTR(q->active);
        q->deadline = us_loop_source_remove(q->deadline);
        output_reset(q);
        input_reset(q);
        schedule(q);
        return c;
}

/* Marks c ended with r (and a message for r < 0); on_work reports it. */
static void call_end(struct vmm_qga *q, struct vmm_qga_call *c, int r, const char *fmt, ...)
        __attribute__((format(printf, 4, 5)));

static void call_end(struct vmm_qga *q, struct vmm_qga_call *c, int r, const char *fmt, ...)
{
        if (c->state == CALL_QUEUED)
                queue_remove(q, c);
        c->sleep = us_loop_source_remove(c->sleep);
        c->state = CALL_ENDED;
        c->result = r;
        if (r < 0 && fmt) {
                va_list ap;
                va_start(ap, fmt);
                _cleanup_free_ char *msg = NULL;
                if (vasprintf(&msg, fmt, ap) < 0)
                        msg = NULL;
                va_end(ap);
                (void)us_error_msg(&c->error, -r, "qga %s: %s", step_command[c->step],
                                   msg ? msg : strerror(-r));
        }
        schedule(q);
}

static void close_channel(struct vmm_qga *q)
{
        q->src = us_loop_source_remove(q->src);
        q->fd = us_close(q->fd);
        q->events = 0;
        q->gen++;
        if (q->active)
                q->active->state = CALL_QUEUED; /* ended by the caller */
        (void)active_take(q);
}

/* The channel is gone (EOF, an I/O error): what went out on it ends with
 * -ECONNRESET, what did not with -ENOTCONN. */
static void channel_lost(struct vmm_qga *q, const char *why)
{
        close_channel(q);
        for (size_t i = 0; i < q->n_calls; i++) {
                struct vmm_qga_call *c = q->calls[i];
                if (c->state == CALL_ENDED || c->state == CALL_REPORTING)
                        continue;
                if (c->sent)
                        call_end(q, c, -ECONNRESET, "%s", why);
                else
                        call_end(q, c, -ENOTCONN, "no channel to the guest agent: %s", why);
        }
}

static void io_failed(struct vmm_qga *q, const char *op, int r)
{
        char why[96];
        (void)snprintf(why, sizeof(why), "%s the guest agent channel: %s", op, strerror(-r));
        channel_lost(q, why);
}

/* Writes what the socket takes now. 0 or a negative errno. */
static int flush(struct vmm_qga *q)
{
        ssize_t n = us_write_some(q->fd, q->out + q->out_off, q->out_len - q->out_off, true);
        if (n < 0)
                return (int)n;
        q->out_off += (size_t)n;
        if (q->out_off == q->out_len)
                output_reset(q);
        return update_events(q);
}

/* A sync id the guest cannot predict: a late reply that matches it by
 * chance is the only way a stale answer could pass the sync. */
static int64_t new_sync_id(struct vmm_qga *q)
{
        uint32_t v = 0;
        if (getrandom(&v, sizeof(v), GRND_NONBLOCK) != sizeof(v))
                v = (uint32_t)us_monotonic_ms() * 2654435761u;
        int64_t id = (int64_t)(v & 0x7fffffff) + 1;
        return id == q->sync_id ? id + 1 : id;
}

static void on_deadline(struct us_loop_source *src, void *userdata)
{
        (void)src;
        struct vmm_qga *q = userdata;
        q->deadline = NULL; /* the loop removed it */
        int64_t now = us_monotonic_ms();
        struct vmm_qga_call *c = active_take(q);
        q->need_sync = true;
        if (!c)
                return;
        if (c->step == STEP_STATUS && now >= c->exec_deadline)
                call_end(q, c, -ETIMEDOUT, "the process did not exit within %u ms", c->timeout_ms);
        else
                call_end(q, c, -ETIMEDOUT, "no reply from the guest agent within %" PRId64 " ms",
                         q->active_timeout_ms);
        (void)update_events(q);
}

/* Writes the head of the queue: its request, after a sync if needed. */
static void start_next(struct vmm_qga *q)
{
        if (q->active || q->fd < 0 || !q->head)
                return;

        /* Bytes nobody asked for are waiting: they must not be taken for the
         * reply to what we send now. */
        char b;
        ssize_t n = recv(q->fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);
        if (n == 0) {
                channel_lost(q, "the guest agent closed the channel");
                return;
        }
        if (n > 0)
                q->need_sync = true;
        else if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
                io_failed(q, "read", -errno);
                return;
        }

        struct vmm_qga_call *c = q->head;
        queue_remove(q, c);
        int64_t now = us_monotonic_ms();
        if (c->step == STEP_EXEC)
                c->exec_deadline = now + c->timeout_ms;
        if (c->step != STEP_PING && now >= c->exec_deadline) {
                call_end(q, c, -ETIMEDOUT, "the process did not exit within %u ms", c->timeout_ms);
                return;
        }

        struct us_text t = {};
        int64_t id = ++q->next_id;
        if (q->need_sync) {
                q->sync_id = new_sync_id(q);
                /* The leading 0xFF makes the agent drop a request we left
                 * half-written; the one it sends back marks where our
                 * sync reply starts. */
                us_text_add(
                        &t,
                        "\xff{\"execute\":\"guest-sync-delimited\",\"arguments\":{\"id\":%" PRId64
                        "}}\n",
                        q->sync_id);
        }
        switch (c->step) {
        case STEP_PING:
                us_text_add(&t, "{\"execute\":\"guest-ping\",\"id\":%" PRId64 "}\n", id);
                break;
        case STEP_EXEC:
                us_text_add(&t,
                            "{\"execute\":\"guest-exec\",\"arguments\":%s,\"id\":%" PRId64 "}\n",
                            c->exec_args, id);
                break;
        case STEP_STATUS:
                us_text_add(&t,
                            "{\"execute\":\"guest-exec-status\",\"arguments\":{\"pid\":%" PRId64
                            "},\"id\":%" PRId64 "}\n",
                            c->pid, id);
                break;
        }
        size_t len = t.len;
        char *req = us_text_take(&t);
        if (!req) {
                call_end(q, c, -ENOMEM, "build the request");
                return;
        }

        int64_t deadline = now + q->call_timeout_ms;
        if (c->step != STEP_PING && c->exec_deadline < deadline)
                deadline = c->exec_deadline;
        int r = us_loop_add_timer(q->loop, (uint64_t)(deadline - now), on_deadline, q, &q->deadline,
                                  NULL);
        if (r < 0) {
                free(req);
                call_end(q, c, r, "arm the request's deadline");
                return;
        }
        q->out = req;
        q->out_off = 0;
        q->out_len = len;
        q->active = c;
        q->active_id = id;
        q->active_timeout_ms = deadline - now;
        q->rx = q->need_sync ? RX_SENTINEL : RX_REPLY;
        c->state = CALL_ACTIVE;
        c->sent = true;

        r = flush(q);
        if (r < 0)
                io_failed(q, "write to", r);
}

/* An exec waits before its next status poll, within its deadline. */
static void on_sleep(struct us_loop_source *src, void *userdata)
{
        (void)src;
        struct vmm_qga_call *c = userdata;
        c->sleep = NULL;
        queue_push(c->q, c);
}

static void call_sleep(struct vmm_qga *q, struct vmm_qga_call *c)
{
        int64_t left = c->exec_deadline - us_monotonic_ms();
        uint64_t ms = c->poll_ms;
        c->poll_ms = c->poll_ms * 2 > VMM_QGA_POLL_MAX_MS ? VMM_QGA_POLL_MAX_MS : c->poll_ms * 2;
        if (left < (int64_t)ms)
                /* Poll once more at the deadline: start_next ends it there. */
                ms = left > 0 ? (uint64_t)left : 0;
        c->state = CALL_SLEEPING;
        int r = us_loop_add_timer(q->loop, ms, on_sleep, c, &c->sleep, NULL);
        if (r < 0)
                call_end(q, c, r, "arm the poll timer");
}

static void handle_reply(struct vmm_qga *q, struct vmm_qga_reply *reply)
{
        _cleanup_(vmm_qga_reply_free_cleanupp) struct vmm_qga_reply *owned = reply;
        bool leftover = q->in_len > 0;
        struct vmm_qga_call *c = active_take(q);
        /* More after the reply was not asked for. */
        if (leftover)
                q->need_sync = true;

        if (reply->is_error) {
                call_end(q, c, -EIO, "%s: %s", reply->error_class, reply->error_desc);
                return;
        }
        switch (c->step) {
        case STEP_PING:
                call_end(q, c, 0, NULL);
                return;
        case STEP_EXEC:
                c->pid = reply->value;
                c->step = STEP_STATUS;
                c->poll_ms = VMM_QGA_POLL_FIRST_MS;
                call_sleep(q, c);
                return;
        case STEP_STATUS:
                if (!reply->exited) {
                        call_sleep(q, c);
                        return;
                }
                c->status = TAKE_PTR(owned);
                call_end(q, c, 0, NULL);
                return;
        }
}

static void consume(struct vmm_qga *q, size_t n)
{
        memmove(q->in, q->in + n, q->in_len - n);
        q->in_len -= n;
        q->in_scanned = 0;
}

/* The reply failed: the channel may hold the rest of it. */
static void reply_failed(struct vmm_qga *q, int r, const struct us_error *e)
{
        struct vmm_qga_call *c = active_take(q);
        q->need_sync = true;
        call_end(q, c, r, "%s", us_error_text(e));
}

/* Works through what was read. Returns when more input is needed or the
 * active request is over. */
static void process_input(struct vmm_qga *q)
{
        while (q->active) {
                switch (q->rx) {
                case RX_SENTINEL: {
                        char *p = memchr(q->in, 0xFF, q->in_len);
                        if (!p) {
                                q->in_len = 0;
                                q->in_scanned = 0;
                                return;
                        }
                        consume(q, (size_t)(p - q->in) + 1);
                        q->rx = RX_SYNC;
                        break;
                }
                case RX_SYNC: {
                        size_t i = 0;
                        while (i < q->in_len && q->in[i] != '\n' && q->in[i] != '\xff')
                                i++;
                        if (i == q->in_len) {
                                if (q->in_len > SYNC_LINE_MAX) {
                                        q->in_len = 0;
                                        q->rx = RX_SENTINEL;
                                }
                                return;
                        }
                        if (q->in[i] == '\xff') {
                                /* A new sentinel: what came before was not ours. */
                                consume(q, i + 1);
                                break;
                        }
                        struct vmm_qga_reply *r = NULL;
                        bool ours =
                                i <= SYNC_LINE_MAX &&
                                vmm_qga_reply_parse(q->in, i, VMM_QGA_EXPECT_SYNC, &r, NULL) == 0 &&
                                !r->is_error && r->value == q->sync_id;
                        vmm_qga_reply_free(r);
                        consume(q, i + 1);
                        if (ours) {
                                q->need_sync = false;
                                q->rx = RX_REPLY;
                        } else {
                                q->rx = RX_SENTINEL;
                        }
                        break;
                }
                case RX_REPLY: {
                        /* A long line comes in many reads: scan each byte once. */
                        char *nl = memchr(q->in + q->in_scanned, '\n', q->in_len - q->in_scanned);
                        if (!nl) {
                                q->in_scanned = q->in_len;
                                if (q->in_len > VMM_QGA_MAX_REPLY) {
                                        struct us_error *e = NULL;
                                        (void)us_error_msg(&e, EMSGSIZE,
                                                           "reply longer than %u bytes",
                                                           VMM_QGA_MAX_REPLY);
                                        reply_failed(q, -EMSGSIZE, e);
                                        us_error_free(e);
                                }
                                return;
                        }
                        size_t len = (size_t)(nl - q->in);
                        struct vmm_qga_reply *r = NULL;
                        struct us_error *e = NULL;
                        int k = vmm_qga_reply_parse(q->in, len, step_expect[q->active->step], &r,
                                                    &e);
                        consume(q, len + 1);
                        if (k < 0) {
                                reply_failed(q, k, e);
                                us_error_free(e);
                                return;
                        }
                        if (r->foreign_id || (r->has_id && r->id != q->active_id)) {
                                /* An answer to some other request: skipped. */
                                vmm_qga_reply_free(r);
                                break;
                        }
                        handle_reply(q, r);
                        return;
                }
                }
        }
}

static void read_input(struct vmm_qga *q)
{
        size_t want = q->in_len + READ_CHUNK < IN_MAX ? q->in_len + READ_CHUNK : IN_MAX;
        if (q->in_cap < want) {
                size_t cap = q->in_cap ? q->in_cap * 2 : 4096;
                if (cap < want)
                        cap = want;
                if (cap > IN_MAX)
                        cap = IN_MAX;
                char *p = realloc(q->in, cap);
                if (!p) {
                        struct us_error *e = NULL;
                        (void)us_error_msg(&e, ENOMEM, "no memory for the reply");
                        reply_failed(q, -ENOMEM, e);
                        us_error_free(e);
                        return;
                }
                q->in = p;
                q->in_cap = cap;
        }
        /* process_input() leaves a full buffer only for an oversized line,
         * which it fails; so there is room here. */
        ssize_t n = recv(q->fd, q->in + q->in_len, want - q->in_len, MSG_DONTWAIT);
        if (n < 0) {
                if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
                        return;
                io_failed(q, "read", -errno);
                return;
        }
        if (n == 0) {
                channel_lost(q, "the guest agent closed the channel");
                return;
        }
        q->in_len += (size_t)n;
        process_input(q);
}

static void on_io(struct us_loop_source *src, int fd, uint32_t events, void *userdata)
{
        (void)src;
        (void)fd;
        struct vmm_qga *q = userdata;

        if ((events & EPOLLOUT) && q->out_off < q->out_len) {
                int r = flush(q);
                if (r < 0) {
                        io_failed(q, "write to", r);
                        return;
                }
        }
        if (q->active && (events & (EPOLLIN | EPOLLHUP | EPOLLERR | EPOLLRDHUP))) {
                /* The read reports EOF or the error after the data before it. */
                read_input(q);
        } else if (events & (EPOLLHUP | EPOLLERR | EPOLLRDHUP)) {
                channel_lost(q, "the guest agent closed the channel");
                return;
        }
        if (q->fd >= 0 && update_events(q) < 0)
                io_failed(q, "watch", -ENOMEM);
}

static void destroy(struct vmm_qga *q)
{
        free(q);
}

static void on_work(struct us_loop_source *src, void *userdata)
{
        (void)src;
        struct vmm_qga *q = userdata;
        q->work = NULL;
        q->depth++;
        for (size_t i = 0; i < q->n_calls && !q->freed;) {
                struct vmm_qga_call *c = q->calls[i];
                if (c->state != CALL_ENDED) {
                        i++;
                        continue;
                }
                /* The list may change under the callback: start over after
                 * each one (calls are few). */
                call_unlink(q, c);
                c->state = CALL_REPORTING;
                const struct vmm_qga_exec_result *res =
                        c->result == 0 && c->status ? &c->status->res : NULL;
                c->done(c->userdata, c->result, res, c->result < 0 ? c->error : NULL);
                call_free(c);
                i = 0;
        }
        if (!q->freed)
                start_next(q);
        if (--q->depth == 0 && q->freed)
                destroy(q);
}

/* ---- public ---- */

int vmm_qga_new(struct us_loop *loop, unsigned call_timeout_ms, struct vmm_qga **ret,
                struct us_error **err)
{
        if (!loop || call_timeout_ms == 0 || call_timeout_ms > INT32_MAX)
                return us_error_msg(err, EINVAL, "qga: invalid loop or timeout");
        struct vmm_qga *q = calloc(1, sizeof(*q));
        if (!q)
                return us_errorf(err, ENOMEM, "qga: allocate client");
        q->loop = loop;
        q->call_timeout_ms = call_timeout_ms;
        q->fd = -1;
        *ret = q;
        return 0;
}

bool vmm_qga_attached(const struct vmm_qga *q)
{
        return q && q->fd >= 0;
}

int vmm_qga_attach(struct vmm_qga *q, int fd, struct us_error **err)
{
        _cleanup_close_ int owned = fd;
        struct stat st;

        if (!q || fd < 0)
                return us_error_msg(err, EINVAL, "qga: no client or fd");
        if (fstat(fd, &st) < 0)
                return us_errorf(err, errno, "qga: fstat channel");
        if (!S_ISSOCK(st.st_mode))
                return us_error_msg(err, ENOTSOCK, "qga: the channel is not a socket");
        int fl = fcntl(fd, F_GETFL);
        if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)
                return us_errorf(err, errno, "qga: make the channel non-blocking");
        struct us_loop_source *src = NULL;
        int r = us_loop_add_fd(q->loop, fd, EPOLLRDHUP, on_io, q, &src, err);
        if (r < 0)
                return us_error_wrap(err, r, "qga: watch the channel");

        /* What went out on the old channel has no answer coming on this one;
         * what is still queued goes out here. */
        close_channel(q);
        for (size_t i = 0; i < q->n_calls; i++) {
                struct vmm_qga_call *c = q->calls[i];
                if (c->sent && c->state != CALL_ENDED && c->state != CALL_REPORTING)
                        call_end(q, c, -ECONNRESET, "the guest agent channel was replaced");
                c->sent = false;
        }
        q->fd = TAKE_FD(owned);
        q->src = src;
        q->events = EPOLLRDHUP;
        q->need_sync = true;
        schedule(q);
        return 0;
}

static int call_new(struct vmm_qga *q, enum call_step step, vmm_qga_done_fn done, void *userdata,
                    struct vmm_qga_call **ret, struct us_error **err)
{
        if (!q || !done)
                return us_error_msg(err, EINVAL, "qga: no client or callback");
        if (q->fd < 0)
                return us_error_msg(err, ENOTCONN, "qga %s: no channel to the guest agent",
                                    step_command[step]);
        if (q->n_calls >= VMM_QGA_MAX_CALLS)
                return us_error_msg(err, ENOBUFS, "qga %s: %zu calls already in flight",
                                    step_command[step], q->n_calls);
        struct vmm_qga_call *c = calloc(1, sizeof(*c));
        if (!c)
                return us_errorf(err, ENOMEM, "qga %s: allocate call", step_command[step]);
        *c = (struct vmm_qga_call){.q = q, .step = step, .done = done, .userdata = userdata};
        *ret = c;
        return 0;
}

static void call_add(struct vmm_qga *q, struct vmm_qga_call *c)
{
        q->calls[q->n_calls++] = c;
        queue_push(q, c);
}

int vmm_qga_ping(struct vmm_qga *q, vmm_qga_done_fn done, void *userdata, struct vmm_qga_call **ret,
                 struct us_error **err)
{
        struct vmm_qga_call *c = NULL;
        int r = call_new(q, STEP_PING, done, userdata, &c, err);
        if (r < 0)
                return r;
        call_add(q, c);
        if (ret)
                *ret = c;
        return 0;
}

static int gen_string(yajl_gen g, const char *s)
{
        if (!s)
                return -EINVAL;
        return yajl_gen_string(g, (const unsigned char *)s, strlen(s)) == yajl_gen_status_ok
                       ? 0
                       : -EINVAL;
}

static int gen_strings(yajl_gen g, const char *key, const char *const *v, size_t n)
{
        if (n == 0)
                return 0;
        if (!v || gen_string(g, key) < 0 || yajl_gen_array_open(g) != yajl_gen_status_ok)
                return -EINVAL;
        for (size_t i = 0; i < n; i++)
                if (gen_string(g, v[i]) < 0)
                        return -EINVAL;
        return yajl_gen_array_close(g) == yajl_gen_status_ok ? 0 : -EINVAL;
}

/* guest-exec's arguments as JSON, escaped by yajl; strings must be UTF-8. */
static int exec_args(const char *path, const char *const *args, size_t n_args,
                     const char *const *env, size_t n_env, char **ret, struct us_error **err)
{
        _cleanup_(yajl_gen_free_cleanupp) yajl_gen g = yajl_gen_alloc(NULL);
        if (!g)
                return us_errorf(err, ENOMEM, "qga guest-exec: allocate generator");
        (void)yajl_gen_config(g, yajl_gen_validate_utf8, 1);
        if (yajl_gen_map_open(g) != yajl_gen_status_ok || gen_string(g, "path") < 0 ||
            gen_string(g, path) < 0 || gen_strings(g, "arg", args, n_args) < 0 ||
            gen_strings(g, "env", env, n_env) < 0 || gen_string(g, "capture-output") < 0 ||
            yajl_gen_bool(g, 1) != yajl_gen_status_ok ||
            yajl_gen_map_close(g) != yajl_gen_status_ok)
                return us_error_msg(err, EINVAL,
                                    "qga guest-exec: path, args and env must be UTF-8 strings");
        const unsigned char *buf = NULL;
        size_t len = 0;
        if (yajl_gen_get_buf(g, &buf, &len) != yajl_gen_status_ok)
                return us_errorf(err, ENOMEM, "qga guest-exec: build request");
        if (len > VMM_QGA_MAX_REQUEST)
                return us_error_msg(err, E2BIG, "qga guest-exec: request of %zu bytes exceeds %u",
                                    len, VMM_QGA_MAX_REQUEST);
        char *s = strndup((const char *)buf, len);
        if (!s)
                return us_errorf(err, ENOMEM, "qga guest-exec: build request");
        *ret = s;
        return 0;
}

int vmm_qga_exec(struct vmm_qga *q, const char *path, const char *const *args, size_t n_args,
                 const char *const *env, size_t n_env, unsigned timeout_ms, vmm_qga_done_fn done,
                 void *userdata, struct vmm_qga_call **ret, struct us_error **err)
{
        _cleanup_(call_free_cleanupp) struct vmm_qga_call *c = NULL;
        if (!path || !*path || timeout_ms > INT32_MAX)
                return us_error_msg(err, EINVAL, "qga guest-exec: no path or a bad timeout");
        int r = call_new(q, STEP_EXEC, done, userdata, &c, err);
        if (r < 0)
                return r;
        r = exec_args(path, args, n_args, env, n_env, &c->exec_args, err);
        if (r < 0)
                return r;
        c->timeout_ms = timeout_ms ? timeout_ms : q->call_timeout_ms;
        struct vmm_qga_call *added = TAKE_PTR(c);
        call_add(q, added);
        if (ret)
                *ret = added;
        return 0;
}

void vmm_qga_cancel(struct vmm_qga_call *c)
{
        if (!c || c->state == CALL_REPORTING)
                return;
        struct vmm_qga *q = c->q;
        if (c->state == CALL_QUEUED)
                queue_remove(q, c);
        if (c->state == CALL_ACTIVE) {
                /* Its reply may still come, or the rest of its request may
                 * be lost mid-write: the next request syncs first. */
                (void)active_take(q);
                q->need_sync = true;
                (void)update_events(q);
        }
        call_unlink(q, c);
        call_free(c);
}

struct vmm_qga *vmm_qga_free(struct vmm_qga *q)
{
        if (!q || q->freed)
                return NULL;
        q->freed = true;
        q->src = us_loop_source_remove(q->src);
        q->fd = us_close(q->fd);
        q->deadline = us_loop_source_remove(q->deadline);
        q->work = us_loop_source_remove(q->work);
        q->active = NULL;
        output_reset(q);
        input_reset(q);
        while (q->n_calls > 0) {
                struct vmm_qga_call *c = q->calls[0];
                call_unlink(q, c);
                call_free(c);
        }
        q->head = q->tail = NULL;
        if (q->depth == 0)
                destroy(q);
        return NULL;
}
