/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/*
 * A minimal gRPC unary client over grpc core's C API, for the CRI client.
 * One channel per struct cri_grpc; each call is one batch on its own pluck
 * completion queue, so calls are synchronous and need no threads of ours.
 *
 * Requests are protobuf-c messages packed into a raw byte buffer; replies are
 * hostile input: bounded in size (CRI_GRPC_MAX_RECV bytes, enforced both by
 * grpc's channel limit and again before unpacking) and unpacked by protobuf-c,
 * whose NULL (malformed message) becomes -EBADMSG.
 */

#include <grpc/byte_buffer.h>
#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc.h>
#include <protobuf-c/protobuf-c.h>
#include <stddef.h>
#include <stdint.h>

#include "base/cleanup.h"
#include "base/error.h"

/* gRPC's default receive limit; enough for any CRI reply we ask for. */
#define CRI_GRPC_MAX_RECV (4u * 1024 * 1024)
/* A server's status message is kept up to this many bytes (then "..."). */
#define CRI_GRPC_MAX_DETAILS 16384

struct cri_grpc;

/* Opens a channel to endpoint: "unix:///abs/path.sock", "unix:/abs/path",
 * or a bare absolute path (taken as a unix socket). Calls grpc_init()
 * (reference-counted by grpc; cri_grpc_free calls the matching shutdown).
 * Connecting is lazy: an unreachable endpoint fails the first call with
 * -ECONNREFUSED (gRPC UNAVAILABLE). On success *ret is owned by the caller. */
int cri_grpc_new(const char *endpoint, struct cri_grpc **ret, struct us_error **err);

/* Destroys the channel; accepts NULL; returns NULL. */
struct cri_grpc *cri_grpc_free(struct cri_grpc *g);
DEFINE_CLEANUP(struct cri_grpc *, cri_grpc_free)

/* The target string grpc was given ("unix:///..."); owned by g. */
const char *cri_grpc_target(const struct cri_grpc *g);

/* One unary call: method is the full path ("/runtime.v1.RuntimeService/Version"),
 * req the request, resp_desc the reply's descriptor, timeout_ms the deadline
 * (> 0). On success *ret_resp is the unpacked reply, owned by the caller
 * (free with protobuf_c_message_free_unpacked(m, NULL)). On failure returns a
 * negative errno: a non-OK gRPC status maps by cri_grpc_status_errno() and *err
 * reads "<Method>: rpc error code <n>: <server's message>". */
int cri_grpc_call(struct cri_grpc *g, const char *method, const ProtobufCMessage *req,
                  const ProtobufCMessageDescriptor *resp_desc, int64_t timeout_ms,
                  ProtobufCMessage **ret_resp, struct us_error **err);

/* ---- the pieces of a call, exposed for unit tests ---- */

/* Packs msg into a new raw byte buffer (*ret owned by the caller:
 * grpc_byte_buffer_destroy). */
int cri_grpc_pack(const ProtobufCMessage *msg, grpc_byte_buffer **ret, struct us_error **err);

/* Unpacks buf (NULL = no message received: -EBADMSG) as desc, refusing more
 * than max bytes. *ret owned by the caller. */
int cri_grpc_unpack(grpc_byte_buffer *buf, const ProtobufCMessageDescriptor *desc, size_t max,
                    ProtobufCMessage **ret, struct us_error **err);

/* The negative errno for a gRPC status code (0 for GRPC_STATUS_OK, -EIO for
 * codes outside the known range). */
int cri_grpc_status_errno(grpc_status_code code);

/* Sets *err to "<short method>: rpc error code <code>: <details>" (details
 * bounded, NULs and control characters other than \n and \t shown as '?') and
 * returns cri_grpc_status_errno(code). method may be a full path; its last
 * component is used. */
int cri_grpc_status_error(const char *method, grpc_status_code code, const char *details,
                          size_t details_len, struct us_error **err);
