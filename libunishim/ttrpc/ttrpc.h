/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/*
 * ttrpc (github.com/containerd/ttrpc): containerd's RPC for shims.
 *
 * Wire format: a 10-byte header -- length (u32 BE, payload bytes only),
 * stream id (u32 BE), type (u8: 1 request, 2 response), flags (u8) -- then a
 * protobuf ttrpc.Request or ttrpc.Response. Payloads above
 * US_TTRPC_MAX_MESSAGE are refused: like upstream, the server answers
 * ResourceExhausted on that stream and discards the payload without
 * buffering it; the client treats one as a protocol error. Client-initiated
 * streams use odd ids.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <protobuf-c/protobuf-c.h>

#include "base/error.h"
#include "base/loop.h"
#include "ttrpc/ttrpc.pb-c.h"

#define US_TTRPC_HEADER_SIZE   10
#define US_TTRPC_MAX_MESSAGE   (4u << 20)
#define US_TTRPC_TYPE_REQUEST  1
#define US_TTRPC_TYPE_RESPONSE 2

/* gRPC status codes carried in google.rpc.Status. */
enum us_grpc_code {
        US_GRPC_OK = 0,
        US_GRPC_CANCELLED = 1,
        US_GRPC_UNKNOWN = 2,
        US_GRPC_INVALID_ARGUMENT = 3,
        US_GRPC_DEADLINE_EXCEEDED = 4,
        US_GRPC_NOT_FOUND = 5,
        US_GRPC_ALREADY_EXISTS = 6,
        US_GRPC_PERMISSION_DENIED = 7,
        US_GRPC_RESOURCE_EXHAUSTED = 8,
        US_GRPC_FAILED_PRECONDITION = 9,
        US_GRPC_ABORTED = 10,
        US_GRPC_OUT_OF_RANGE = 11,
        US_GRPC_UNIMPLEMENTED = 12,
        US_GRPC_INTERNAL = 13,
        US_GRPC_UNAVAILABLE = 14,
        US_GRPC_DATA_LOSS = 15,
        US_GRPC_UNAUTHENTICATED = 16,
};

struct us_ttrpc_header {
        uint32_t length;
        uint32_t stream_id;
        uint8_t type;
        uint8_t flags;
};

/* Decodes a header from exactly US_TTRPC_HEADER_SIZE bytes. Fails with
 * -EMSGSIZE when length exceeds US_TTRPC_MAX_MESSAGE (the header is still
 * filled so the caller can answer on that stream). */
int us_ttrpc_header_decode(const uint8_t *buf, struct us_ttrpc_header *ret, struct us_error **err);
void us_ttrpc_header_encode(const struct us_ttrpc_header *h, uint8_t *buf);

/* Maps a negative errno to the closest gRPC code (ENOENT -> NOT_FOUND, ...). */
enum us_grpc_code us_grpc_code_from_errno(int neg_errno);

/* ---- server ---- */

struct us_ttrpc_server;
struct us_ttrpc_call; /* one request in flight; completed exactly once */

/* Handles one request. payload is the method's request message, still
 * encoded; it is valid only during the call. The handler must eventually
 * complete call with us_ttrpc_call_reply() or us_ttrpc_call_fail() -- now,
 * or later from another loop callback (Wait answers when the process exits).
 * If the client disconnects first, completing still works and sends nothing. */
typedef void (*us_ttrpc_method_fn)(struct us_ttrpc_call *call, const uint8_t *payload, size_t len,
                                   void *userdata);

/* A server accepting on listen_fd (a bound, listening unix socket; owned by
 * the server from then on) and dispatching in loop. */
int us_ttrpc_server_new(struct us_loop *loop, int listen_fd, struct us_ttrpc_server **ret,
                        struct us_error **err);
/* Closes the listener and every connection; in-flight calls are completed
 * silently when their owners complete them. */
struct us_ttrpc_server *us_ttrpc_server_free(struct us_ttrpc_server *srv);

/* service e.g. "containerd.task.v2.Task", method e.g. "Create". Strings are
 * copied. Unregistered methods answer UNIMPLEMENTED. */
int us_ttrpc_server_register(struct us_ttrpc_server *srv, const char *service, const char *method,
                             us_ttrpc_method_fn fn, void *userdata, struct us_error **err);

/* Called when the number of open connections changes (the shim exits when
 * containerd has gone and no task is left). Optional. */
void us_ttrpc_server_on_connections(struct us_ttrpc_server *srv,
                                    void (*fn)(unsigned n_connections, void *userdata),
                                    void *userdata);

/* The value of metadata key in the call's request, or NULL. Valid until the
 * call is completed. ("containerd-namespace-ttrpc" carries the namespace.) */
const char *us_ttrpc_call_metadata(const struct us_ttrpc_call *call, const char *key);
const char *us_ttrpc_call_method(const struct us_ttrpc_call *call);

/* Completes call with status OK and msg (may be NULL for an empty payload)
 * packed as the payload. Frees call. */
void us_ttrpc_call_reply(struct us_ttrpc_call *call, const ProtobufCMessage *msg);

/* Completes call with the given code and formatted message. Frees call. */
void us_ttrpc_call_fail(struct us_ttrpc_call *call, enum us_grpc_code code, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));

/* Completes call with us_grpc_code_from_errno(r) and err's text, the way a
 * handler answers a failed operation. Takes err (may be NULL) and frees it.
 * Frees call. */
void us_ttrpc_call_fail_error(struct us_ttrpc_call *call, int r, struct us_error *err);

/* Validates an unpacked request: 0, or a negative errno with *err. */
typedef int (*us_ttrpc_check_fn)(const ProtobufCMessage *msg, struct us_error **err);

/* Unpacks the request payload of method as a desc message, at most
 * US_TTRPC_MAX_MESSAGE bytes, and runs check (optional) on it. Returns 0
 * with *ret owned by the caller (protobuf_c_message_free_unpacked(), or
 * _cleanup_pb_), or -EMSGSIZE ("<method>: request too large"), -EBADMSG
 * ("<method>: malformed request") or check's error wrapped as "<method>:
 * ..." with *err; *ret is untouched then. No side effects. */
int us_ttrpc_request_unpack(const char *method, const ProtobufCMessageDescriptor *desc,
                            us_ttrpc_check_fn check, const uint8_t *payload, size_t len,
                            ProtobufCMessage **ret, struct us_error **err);

/* The same for a handler's call: the unpacked message (owned by the caller),
 * or NULL when call has been failed with INVALID_ARGUMENT and the reason
 * (then call is freed and the handler returns). */
void *us_ttrpc_call_unpack(struct us_ttrpc_call *call, const ProtobufCMessageDescriptor *desc,
                           us_ttrpc_check_fn check, const uint8_t *payload, size_t len);

/* ---- client (blocking; for events now, the guest agent later) ---- */

struct us_ttrpc_client;

int us_ttrpc_client_connect(const char *socket_path, struct us_ttrpc_client **ret,
                            struct us_error **err);
/* Takes ownership of a connected stream socket fd (e.g. a virtio-serial port). */
int us_ttrpc_client_from_fd(int fd, struct us_ttrpc_client **ret, struct us_error **err);
struct us_ttrpc_client *us_ttrpc_client_free(struct us_ttrpc_client *c);

struct us_ttrpc_kv {
        const char *key;
        const char *value;
};

/* Sends service/method with req packed as payload and the given metadata,
 * waits at most timeout_ms for the response. On OK, *ret_payload (malloc'ed,
 * caller frees) and *ret_len hold the response payload. A non-OK status is
 * returned as a negative errno (-ENOENT for NOT_FOUND, -ETIMEDOUT for
 * DEADLINE_EXCEEDED, ...) with the server's message in *err. */
int us_ttrpc_client_call(struct us_ttrpc_client *c, const char *service, const char *method,
                         const ProtobufCMessage *req, const struct us_ttrpc_kv *metadata,
                         size_t n_metadata, int timeout_ms, uint8_t **ret_payload, size_t *ret_len,
                         struct us_error **err);

/* ---- additions (beyond the first draft of this header) ---- */

/* Maps a gRPC code to a negative errno (0 for OK; NOT_FOUND -> -ENOENT,
 * DEADLINE_EXCEEDED -> -ETIMEDOUT, UNIMPLEMENTED -> -ENOSYS, ...; unknown
 * codes -> -EIO). The inverse of us_grpc_code_from_errno() for the errnos
 * that function maps specifically. */
int us_errno_from_grpc_code(int code);

/* Adds an already connected stream fd (e.g. the guest side of a virtio-serial
 * port) as a server connection. fd is owned by the server afterwards, also on
 * failure. us_ttrpc_server_new() accepts listen_fd = -1 for a server that only
 * serves such connections. */
int us_ttrpc_server_add_connection(struct us_ttrpc_server *srv, int fd, struct us_error **err);

/* The same, and on_close(userdata) runs once when this connection ends by
 * itself (peer gone, protocol error) -- not when the server is freed. The
 * guest agent reopens its virtio-serial port from there. */
int us_ttrpc_server_add_connection_notify(struct us_ttrpc_server *srv, int fd,
                                          void (*on_close)(void *userdata), void *userdata,
                                          struct us_error **err);

/* Limits the server applies per connection. */
#define US_TTRPC_MAX_CALLS_PER_CONN 1024        /* in-flight; more get RESOURCE_EXHAUSTED */
#define US_TTRPC_MAX_QUEUED_OUTPUT  (16u << 20) /* more queued output closes the conn */
#define US_TTRPC_MAX_METADATA       256         /* key/value pairs in one request */

/* The request's timeout in nanoseconds as the client sent it (0 = none). */
int64_t us_ttrpc_call_timeout_nano(const struct us_ttrpc_call *call);

/* ---- internals, exposed for the client, the server, tests and fuzzing ---- */

/* Unpacks and validates the payload of a request frame: size (at most
 * US_TTRPC_MAX_MESSAGE), protobuf, non-empty service and method, at most
 * US_TTRPC_MAX_METADATA metadata entries. On success *ret is owned by the
 * caller (free with protobuf_c_message_free_unpacked(&req->base, NULL)).
 * Errors: -EMSGSIZE, -EBADMSG, -EINVAL. */
int us_ttrpc_decode_request(const uint8_t *buf, size_t len, Ttrpc__Request **ret,
                            struct us_error **err);

/* Same for a response frame's payload. */
int us_ttrpc_decode_response(const uint8_t *buf, size_t len, Ttrpc__Response **ret,
                             struct us_error **err);

/* Makes fd, a connection's stream fd (unix socket, virtio-serial port),
 * non-blocking, so that no write can outlive a deadline, and tells in
 * *ret_is_socket whether it is a socket (sent to with MSG_NOSIGNAL). what
 * names the fd in the message. Shared by the clients and the server. */
int us_ttrpc_fd_prepare(int fd, const char *what, bool *ret_is_socket, struct us_error **err);

/* Builds one complete frame (header + packed msg) in a malloc'ed buffer.
 * Fails with -EMSGSIZE when msg packs to more than US_TTRPC_MAX_MESSAGE. */
int us_ttrpc_frame_build(uint32_t stream_id, uint8_t type, const ProtobufCMessage *msg,
                         uint8_t **ret_buf, size_t *ret_len, struct us_error **err);

/* A read buffer that assembles frames from a byte stream with partial reads.
 * Holds at most one frame (<= US_TTRPC_HEADER_SIZE + US_TTRPC_MAX_MESSAGE)
 * plus one read's worth; an oversized frame's payload is skipped as it
 * arrives, never buffered. Zero-initialise it; release with
 * us_ttrpc_rbuf_release(). */
struct us_ttrpc_rbuf {
        uint8_t *data;
        size_t off; /* start of unconsumed bytes */
        size_t len; /* end of valid bytes */
        size_t cap;
        uint64_t discard; /* payload bytes of an oversized frame still to skip */
};

/* One read(2) from fd into b. Returns the byte count, 0 on EOF, or a negative
 * errno (-EAGAIN on a non-blocking fd with nothing to read). */
ssize_t us_ttrpc_rbuf_fill(struct us_ttrpc_rbuf *b, int fd);
/* Appends bytes as if read from a stream (tests and fuzzing). Returns -ENOBUFS
 * when b would exceed its bound. */
int us_ttrpc_rbuf_append(struct us_ttrpc_rbuf *b, const uint8_t *data, size_t len);
/* Takes the next complete frame: returns 1 with *ret_hdr and *ret_payload
 * (valid until the next fill/append/release) set, 0 when more bytes are needed,
 * or -EMSGSIZE for an oversized frame (*ret_hdr still set; its payload will be
 * skipped). */
int us_ttrpc_rbuf_next(struct us_ttrpc_rbuf *b, struct us_ttrpc_header *ret_hdr,
                       const uint8_t **ret_payload, struct us_error **err);
/* Frees the storage when no unconsumed bytes are left (idle memory). */
void us_ttrpc_rbuf_trim(struct us_ttrpc_rbuf *b);
void us_ttrpc_rbuf_release(struct us_ttrpc_rbuf *b);

/* Appends as many of len bytes as fit now (the rest of the current frame, or
 * a read's worth) and returns that count: 0 when a complete frame is waiting
 * for us_ttrpc_rbuf_next(), or -ENOMEM. For feeding a stream in pieces
 * without knowing the frame boundaries. */
ssize_t us_ttrpc_rbuf_append_some(struct us_ttrpc_rbuf *b, const uint8_t *data, size_t len);

/* Builds a complete request frame for service/method with req packed as the
 * payload (NULL: empty), the metadata (borrowed) and timeout_ms (> 0 sets the
 * request's timeout_nano). *ret_buf is malloc'ed, the caller frees it.
 * Errors: -EINVAL (more than US_TTRPC_MAX_METADATA entries), -EMSGSIZE,
 * -ENOMEM. Shared by both clients. */
int us_ttrpc_request_frame_build(uint32_t stream_id, const char *service, const char *method,
                                 const ProtobufCMessage *req, const struct us_ttrpc_kv *metadata,
                                 size_t n_metadata, int timeout_ms, uint8_t **ret_buf,
                                 size_t *ret_len, struct us_error **err);

/* The outcome carried by a decoded response: 0 when its status is absent or
 * OK, else us_errno_from_grpc_code() of it, with "<what>: <peer's message>"
 * (message truncated to 4096 bytes) in *err. */
int us_ttrpc_response_status(const Ttrpc__Response *resp, const char *what, struct us_error **err);

/* ---- asynchronous client on the event loop (the guest agent channel) ----
 *
 * Many calls in flight on one stream fd at once, answered in any order:
 * long polls that stay outstanding for minutes next to short calls. Every
 * successful us_ttrpc_aclient_call() gets exactly one callback: the reply, an
 * error status, its timeout, the connection's end, a cancel, or the client's
 * free. The peer is not trusted: unknown stream ids and non-response frames
 * are dropped; an oversized frame or a response that does not decode is a
 * protocol error that ends the connection. Memory is bounded: at most one
 * frame being read, US_TTRPC_ACLIENT_MAX_QUEUED bytes of requests waiting to
 * be written, US_TTRPC_ACLIENT_MAX_CALLS calls in flight. The client uses at
 * most two loop sources (the fd, and one timer for the nearest deadline).
 *
 * A peer that stalls mid-frame is noticed only by the timeouts of the calls
 * that wait on it: long polls without a timeout wait until cancelled, the
 * connection ends, or the client is freed. */

#define US_TTRPC_ACLIENT_MAX_QUEUED (8u << 20)
#define US_TTRPC_ACLIENT_MAX_CALLS  US_TTRPC_MAX_CALLS_PER_CONN

struct us_ttrpc_aclient;

/* The outcome of one call. status is 0, or a negative errno: the server's
 * gRPC status as us_ttrpc_client_call() maps it (-ENOENT for NOT_FOUND, ...),
 * -ETIMEDOUT (the call's timeout passed), -ECONNRESET (the peer closed the
 * connection or a read/write on it failed), -EPROTO (the peer broke the
 * protocol), -ECANCELED (us_ttrpc_aclient_cancel() or _free()).
 * On 0, payload/len is the response message, still encoded (len may be 0);
 * on failure payload is NULL and err says why ("service/method: ..."; NULL
 * only when even the message could not be allocated: print it with
 * us_error_text()). payload and err are valid only during the callback.
 * The callback may call us_ttrpc_aclient_call(), _cancel() and _free() on the
 * same client. */
typedef void (*us_ttrpc_reply_fn)(int status, const uint8_t *payload, size_t len,
                                  const struct us_error *err, void *userdata);

/* A client on fd, a connected stream fd (unix socket, virtio-serial port),
 * made non-blocking and owned by the client from now on -- also on failure.
 * Dispatched in loop, which must outlive the client. */
int us_ttrpc_aclient_new(struct us_loop *loop, int fd, struct us_ttrpc_aclient **ret,
                         struct us_error **err);

/* Sends service/method with req packed as the payload (NULL: empty) and the
 * metadata (borrowed for the duration of this function), on the next odd
 * stream id. timeout_ms > 0 bounds the call (and is sent to the server);
 * 0 means none (long polls). Returns 0 and sets *ret_call_id (optional;
 * never 0) when fn will be called, later, from the loop (or from inside
 * _cancel()/_free()) -- never from inside this function. Fails, without
 * calling fn, with -ENOTCONN (the connection has ended), -ENOBUFS (too many
 * calls in flight or too much queued output), -EINVAL, -EMSGSIZE, -ENOMEM. */
int us_ttrpc_aclient_call(struct us_ttrpc_aclient *c, const char *service, const char *method,
                          const ProtobufCMessage *req, const struct us_ttrpc_kv *metadata,
                          size_t n_metadata, int timeout_ms, us_ttrpc_reply_fn fn, void *userdata,
                          uint64_t *ret_call_id, struct us_error **err);

/* Completes call_id with -ECANCELED: its callback runs synchronously, inside
 * this function. A call that already completed (or an unknown id) is left
 * alone. The server is not told (ttrpc has no cancel message); its late
 * answer is dropped. */
void us_ttrpc_aclient_cancel(struct us_ttrpc_aclient *c, uint64_t call_id);

/* fn(userdata, reason) is called once when the connection ends by itself:
 * reason -ECONNRESET (peer closed, read/write failed), -EPROTO (protocol
 * error) or -ENOMEM (no memory for a response or the timer), after all
 * pending calls have been failed with that status. Not called by _free().
 * The client stays valid (calls fail with -ENOTCONN) until freed; fn may
 * free it. */
void us_ttrpc_aclient_on_close(struct us_ttrpc_aclient *c, void (*fn)(void *userdata, int reason),
                               void *userdata);

/* Number of calls in flight (awaiting their callback). */
size_t us_ttrpc_aclient_pending(const struct us_ttrpc_aclient *c);

/* Fails every pending call with -ECANCELED -- their callbacks run inside this
 * function, which they may re-enter (new calls are refused) -- then closes
 * the fd and frees the client (deferred to the end of the current dispatch
 * when called from one of its callbacks). Accepts NULL; returns NULL. */
struct us_ttrpc_aclient *us_ttrpc_aclient_free(struct us_ttrpc_aclient *c);

/* Processes len bytes as if read from the connection (tests and fuzzing).
 * Returns 0, -ENOTCONN when the connection has ended (possibly during this
 * feed), or -ENOMEM. */
int us_ttrpc_aclient_feed(struct us_ttrpc_aclient *c, const uint8_t *data, size_t len);
