/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/*
 * ttrpc (github.com/containerd/ttrpc): containerd's RPC for shims.
 *
 * Wire format: a 10-byte header -- length (u32 BE, payload bytes only),
 * stream id (u32 BE), type (u8: 1 request, 2 response), flags (u8) -- then a
 * protobuf ttrpc.Request or ttrpc.Response. Payloads above
 * US_TTRPC_MAX_MESSAGE are refused (the server answers ResourceExhausted
 * where it still can, then closes the connection). Client-initiated streams
 * use odd ids.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <protobuf-c/protobuf-c.h>

#include "error.h"
#include "loop.h"

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
int us_ttrpc_header_decode(const uint8_t *buf, struct us_ttrpc_header *ret,
                           struct us_error **err);
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
typedef void (*us_ttrpc_method_fn)(struct us_ttrpc_call *call, const uint8_t *payload,
                                   size_t len, void *userdata);

/* A server accepting on listen_fd (a bound, listening unix socket; owned by
 * the server from then on) and dispatching in loop. */
int us_ttrpc_server_new(struct us_loop *loop, int listen_fd, struct us_ttrpc_server **ret,
                        struct us_error **err);
/* Closes the listener and every connection; in-flight calls are completed
 * silently when their owners complete them. */
struct us_ttrpc_server *us_ttrpc_server_free(struct us_ttrpc_server *srv);

/* service e.g. "containerd.task.v2.Task", method e.g. "Create". Strings are
 * copied. Unregistered methods answer UNIMPLEMENTED. */
int us_ttrpc_server_register(struct us_ttrpc_server *srv, const char *service,
                             const char *method, us_ttrpc_method_fn fn, void *userdata,
                             struct us_error **err);

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
                         size_t n_metadata, int timeout_ms, uint8_t **ret_payload,
                         size_t *ret_len, struct us_error **err);
