/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/*
 * A small synchronous QMP (QEMU Machine Protocol) client.
 *
 * QMP is line-delimited JSON over a stream socket. QEMU is not trusted more
 * than any other peer: every line is parsed by vmm_qmp_msg_parse() with a size
 * limit and a nesting limit before anything looks at it. Asynchronous events
 * that arrive while a command waits for its reply are skipped.
 */

#include <stdbool.h>
#include <stddef.h>
#include <yajl/yajl_tree.h>

#include "base/error.h"

/* One QMP line may not exceed this (replies we use are a few hundred bytes;
 * query-* answers of a small microvm stay far below). */
#define VMM_QMP_MAX_LINE (64 * 1024)
/* Deepest JSON nesting accepted (yajl_tree_free recurses). */
#define VMM_QMP_MAX_DEPTH 32

enum vmm_qmp_msg_kind {
        VMM_QMP_MSG_GREETING, /* {"QMP": {...}} */
        VMM_QMP_MSG_RETURN,   /* {"return": ...} */
        VMM_QMP_MSG_ERROR,    /* {"error": {"class": ..., "desc": ...}} */
        VMM_QMP_MSG_EVENT,    /* {"event": "NAME", ...} */
};

struct vmm_qmp_msg {
        enum vmm_qmp_msg_kind kind;
        char *id;          /* the "id" member as a string, or NULL (owned) */
        char *event;       /* EVENT: its name (owned) */
        char *error_class; /* ERROR: "GenericError", ... (owned) */
        char *error_desc;  /* ERROR: human readable (owned) */
        yajl_val tree;     /* the whole parsed line (owned) */
        yajl_val value;    /* RETURN: the "return" member; GREETING: "QMP"; points into tree */
};

/* Parses one QMP line (without or with the trailing newline; need not be
 * NUL-terminated). Rejects len > VMM_QMP_MAX_LINE, nesting deeper than
 * VMM_QMP_MAX_DEPTH, non-objects, and objects that are none of the four
 * kinds. Returns 0 and *ret (caller frees with vmm_qmp_msg_free), or -EBADMSG
 * / -E2BIG / -ENOMEM with *err; *ret untouched on failure. */
int vmm_qmp_msg_parse(const char *buf, size_t len, struct vmm_qmp_msg **ret, struct us_error **err);

/* Accepts NULL; returns NULL. */
struct vmm_qmp_msg *vmm_qmp_msg_free(struct vmm_qmp_msg *msg);

/* Converts an ERROR message into *err ("qmp <command>: <Class>: <desc>").
 * Returns -EIO (-ENOENT for CommandNotFound/DeviceNotFound). */
int vmm_qmp_msg_to_error(const struct vmm_qmp_msg *msg, const char *command, struct us_error **err);

struct vmm_qmp;

/* Takes ownership of fd (a connected stream socket to a QEMU QMP monitor;
 * closed on failure too), reads the greeting and negotiates capabilities
 * (qmp_capabilities). Every read waits at most timeout_ms. */
int vmm_qmp_open(int fd, int timeout_ms, struct vmm_qmp **ret, struct us_error **err);

/* Closes the socket; accepts NULL; returns NULL. */
struct vmm_qmp *vmm_qmp_free(struct vmm_qmp *q);

/* Runs `command` with `arguments_json` (a JSON object text, or NULL for none;
 * the caller builds it and is responsible for its escaping) and waits at
 * most the client's timeout for the matching reply, skipping events.
 * On success returns 0 and, if ret_reply is non-NULL, the RETURN message
 * (caller frees). A QMP error reply becomes -EIO/-ENOENT with *err. A peer
 * that hangs up gives -ECONNRESET; a timeout -ETIMEDOUT. After a transport
 * error (not a QMP error reply) the client is unusable. */
int vmm_qmp_execute(struct vmm_qmp *q, const char *command, const char *arguments_json,
                    struct vmm_qmp_msg **ret_reply, struct us_error **err);

/* vmm_qmp_execute that passes `fd` along (SCM_RIGHTS, with the command's
 * first bytes), for getfd. fd is not taken: QEMU holds its own copy. */
int vmm_qmp_execute_fd(struct vmm_qmp *q, const char *command, const char *arguments_json, int fd,
                       struct vmm_qmp_msg **ret_reply, struct us_error **err);

#define VMM_QMP_ID_MAX 32

/* Sends `command` and returns without waiting: its reply, whenever it
 * comes, goes to the handler (below) with the "id" copied to ret_id
 * (VMM_QMP_ID_MAX bytes). For a command QEMU answers only when a long
 * operation ends (migrate-incoming from a file loads the whole state
 * before it replies). */
int vmm_qmp_send(struct vmm_qmp *q, const char *command, const char *arguments_json,
                 char ret_id[VMM_QMP_ID_MAX], struct us_error **err);

/* Gets every message the client takes that no command waits for: events,
 * and replies to commands sent by vmm_qmp_send. msg is borrowed for the
 * call. The handler runs inside vmm_qmp_execute and vmm_qmp_drain: it must
 * not use the client (record what it needs, act later). NULL: none. */
typedef void (*vmm_qmp_msg_fn)(const struct vmm_qmp_msg *msg, void *userdata);
void vmm_qmp_set_handler(struct vmm_qmp *q, vmm_qmp_msg_fn fn, void *userdata);

/* Number of events skipped so far (for tests and diagnostics). */
size_t vmm_qmp_events_seen(const struct vmm_qmp *q);

/* The monitor's socket, for a loop to watch for input between commands. */
int vmm_qmp_fd(const struct vmm_qmp *q);

/* Reads what QEMU sent between commands, without waiting, and skips the
 * events in it: QEMU queues events for a connected monitor without limit
 * (in its own memory), and a guest can cause some (RTC_CHANGE,
 * BALLOON_CHANGE) at any time. A partial line is kept for the next read.
 * Returns 0, or a negative errno with *err when the monitor hung up or sent
 * what is not QMP (the client is unusable then, as after a transport
 * error of vmm_qmp_execute). */
int vmm_qmp_drain(struct vmm_qmp *q, struct us_error **err);
