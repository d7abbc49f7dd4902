/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/*
 * An asynchronous client of the QEMU guest agent (qemu-ga) on the shim's
 * event loop: guest-ping, and guest-exec with its output captured, polled
 * with guest-exec-status until the process exits.
 *
 * The agent runs in a guest that is not trusted: what it sends may be
 * garbage, huge, slow, never come, or answer requests never made. So:
 *   - one request is on the channel at a time (the agent answers in order);
 *     the others wait in a queue of at most VMM_QGA_MAX_CALLS calls;
 *   - every request must be answered within the client's call timeout of
 *     its first byte being written (a guest that does not read counts too),
 *     and an exec as a whole within its own timeout;
 *   - after a timeout, a malformed or oversized reply, or bytes nobody asked
 *     for, the next request is preceded by guest-sync-delimited with a random
 *     id: everything up to the agent's 0xFF sentinel and the matching sync
 *     reply is discarded, which is how late replies are skipped;
 *   - a reply line is at most VMM_QGA_MAX_REPLY bytes and is parsed without
 *     building a tree; decoded output is capped at VMM_QGA_MAX_OUTPUT per
 *     stream; text from the guest that goes into an error message is
 *     bounded and reduced to printable UTF-8;
 *   - the fd is read only while a reply is awaited, so a guest that floods
 *     the channel fills its own socket buffer, not the host's memory.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/error.h"
#include "base/loop.h"

/* One reply line (without its newline). qemu-ga base64-encodes captured
 * output of up to 16 MiB per stream in one reply; more than this fails the
 * call with -EMSGSIZE rather than make the host buffer it. */
#define VMM_QGA_MAX_REPLY (4u << 20)
/* Decoded stdout and stderr kept per exec, each; the rest is dropped and
 * flagged *_truncated. */
#define VMM_QGA_MAX_OUTPUT (1u << 20)
/* Deepest JSON nesting accepted in a reply. */
#define VMM_QGA_MAX_DEPTH 32
/* Bytes of the agent's error "desc" kept (after sanitising). */
#define VMM_QGA_MAX_DESC 512
/* A request we build (guest-exec with its path, args and env). */
#define VMM_QGA_MAX_REQUEST (1u << 20)
/* Calls queued or in flight on one client. */
#define VMM_QGA_MAX_CALLS 64
/* guest-exec-status polls: the first after this, then doubling up to the
 * maximum. */
#define VMM_QGA_POLL_FIRST_MS 10
#define VMM_QGA_POLL_MAX_MS   500

struct vmm_qga;      /* one per VM */
struct vmm_qga_call; /* one call queued or in flight */

struct vmm_qga_exec_result {
        bool signalled; /* killed by a signal: code is the signal */
        int code;       /* exit code, or signal */
        uint8_t *out;   /* decoded stdout (not NUL-terminated; NULL when empty) */
        size_t out_len;
        bool out_truncated; /* the agent or we dropped some of it */
        uint8_t *err;       /* decoded stderr, likewise */
        size_t err_len;
        bool err_truncated;
};

/*
 * The end of a call. r is 0 or a negative errno:
 *   -ETIMEDOUT   the agent did not answer in time (or the process outran the
 *                exec's timeout; it is left running in the guest)
 *   -ENOTCONN    the channel closed before the call's request was written
 *   -ECONNRESET  the channel closed or was replaced after it was written
 *   -EPROTO      a malformed reply
 *   -EMSGSIZE    a reply longer than VMM_QGA_MAX_REPLY
 *   -EIO         the agent answered with an error: err says
 *                "qga <command>: <class>: <desc>"
 *   -ENOMEM      and other errnos of the host
 * res is non-NULL only for an exec that finished (r == 0), err only when
 * r < 0; both are valid only during the callback. Called once, from the loop
 * (never from inside a vmm_qga_* function), unless the call was cancelled or
 * the client freed. The callback may call any vmm_qga_* function, including
 * vmm_qga_free(), but not vmm_qga_cancel() on its own call.
 */
typedef void (*vmm_qga_done_fn)(void *userdata, int r, const struct vmm_qga_exec_result *res,
                                const struct us_error *err);

/* A client without a channel yet. loop must outlive it. call_timeout_ms
 * (> 0) bounds each request: from its first byte written to its reply. */
int vmm_qga_new(struct us_loop *loop, unsigned call_timeout_ms, struct vmm_qga **ret,
                struct us_error **err);

/* Takes fd, a connected stream socket to the agent port (owned by the
 * client from now on, also on failure; made non-blocking). Replaces any
 * earlier channel: calls whose requests went out on it end with
 * -ECONNRESET (from the loop); calls still queued go out on the new one,
 * after a sync. */
int vmm_qga_attach(struct vmm_qga *q, int fd, struct us_error **err);

/* Whether a channel is attached (it goes away when the guest closes it). */
bool vmm_qga_attached(const struct vmm_qga *q);

/* guest-ping. On 0, done will be called (unless cancelled) and *ret (optional)
 * is the call, valid until done runs or it is cancelled. Fails without
 * calling done: -ENOTCONN (no channel), -ENOBUFS (VMM_QGA_MAX_CALLS reached),
 * -EINVAL, -ENOMEM. */
int vmm_qga_ping(struct vmm_qga *q, vmm_qga_done_fn done, void *userdata, struct vmm_qga_call **ret,
                 struct us_error **err);

/* Runs path with args (argv without argv[0]) and env ("K=V"; the agent
 * passes exactly these, none of its own) in the guest, output captured, and
 * polls guest-exec-status until the process exits: done gets its status and
 * output. timeout_ms bounds the whole exec from its first request written
 * (0: the client's call timeout); each request is also bounded by the call
 * timeout. Strings are borrowed for the duration of this function and must
 * be UTF-8 (-EINVAL otherwise); the request may not exceed
 * VMM_QGA_MAX_REQUEST (-E2BIG). Otherwise as vmm_qga_ping(). */
int vmm_qga_exec(struct vmm_qga *q, const char *path, const char *const *args, size_t n_args,
                 const char *const *env, size_t n_env, unsigned timeout_ms, vmm_qga_done_fn done,
                 void *userdata, struct vmm_qga_call **ret, struct us_error **err);

/* Forgets c: done is not called. A request of c already on the channel is
 * not taken back; its late reply is skipped by the next sync. An exec's
 * process keeps running in the guest. NULL is fine. */
void vmm_qga_cancel(struct vmm_qga_call *c);

/* Cancels every call (done is not called), closes the channel, frees the
 * client; from a done callback too. Accepts NULL; returns NULL. */
struct vmm_qga *vmm_qga_free(struct vmm_qga *q);

/* ---- the reply parser (exposed for tests and fuzzing) ---- */

/* What a reply answers, which decides what its "return" must hold. */
enum vmm_qga_expect {
        VMM_QGA_EXPECT_SYNC,        /* {"return": <int>} */
        VMM_QGA_EXPECT_PING,        /* {"return": {}} (members ignored) */
        VMM_QGA_EXPECT_EXEC,        /* {"return": {"pid": <int>}} */
        VMM_QGA_EXPECT_EXEC_STATUS, /* {"return": {"exited": <bool>, ...}} */
};

struct vmm_qga_reply {
        bool is_error;
        char *error_class; /* is_error: sanitised, bounded (owned) */
        char *error_desc;  /* is_error: sanitised, ≤ VMM_QGA_MAX_DESC bytes + "..." (owned) */
        bool has_id;       /* the reply carried an integer "id" */
        bool foreign_id;   /* ... or an id of another type (not one of ours) */
        int64_t id;
        int64_t value;                  /* SYNC: the echoed id; EXEC: the pid */
        bool exited;                    /* EXEC_STATUS */
        struct vmm_qga_exec_result res; /* EXEC_STATUS with exited; buffers owned */
};

/* Parses one reply line (without or with its newline; need not be
 * NUL-terminated) as the answer to `expect`. Returns 0 and *ret (free with
 * vmm_qga_reply_free), or -EMSGSIZE (len > VMM_QGA_MAX_REPLY), -EPROTO
 * (not JSON, nested deeper than VMM_QGA_MAX_DEPTH, not exactly one of
 * "return" and "error", a member of the wrong type, bad base64, duplicate
 * members), -ENOMEM, with *err; *ret untouched on failure. */
int vmm_qga_reply_parse(const char *buf, size_t len, enum vmm_qga_expect expect,
                        struct vmm_qga_reply **ret, struct us_error **err);

/* Accepts NULL; returns NULL. */
struct vmm_qga_reply *vmm_qga_reply_free(struct vmm_qga_reply *r);

/* Copies at most max bytes of s (len bytes, any content) into a new string
 * that holds only printable ASCII and well-formed UTF-8 of printable code
 * points: anything else (controls, C1, bidi overrides, bad sequences)
 * becomes '?'. Cut at a character boundary, with "..." when cut. NULL when
 * out of memory. */
char *vmm_qga_sanitize(const char *s, size_t len, size_t max);
