/* SPDX-License-Identifier: Apache-2.0 */
/*
 * gRPC unary calls over grpc core. Each call owns a pluck completion queue
 * and runs one batch (send metadata, message, close; receive metadata,
 * message, status), plucked with the call's deadline plus a margin; if grpc
 * misses even that, the call is cancelled and its completion still drained,
 * because a completion queue may only be destroyed empty.
 */
#include "client-grpc.h"

#include <errno.h>
#include <stdbool.h>
#include <grpc/grpc_security.h>
#include <grpc/slice.h>
#include <grpc/support/time.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct cri_grpc {
        grpc_channel *channel;
        char *target;
};

static void grpc_byte_buffer_destroyp(grpc_byte_buffer **b)
{
        if (*b)
                grpc_byte_buffer_destroy(*b);
}

int cri_grpc_new(const char *endpoint, struct cri_grpc **ret, struct us_error **err)
{
        if (!endpoint || !*endpoint)
                return us_error_msg(err, EINVAL, "CRI endpoint is empty");
        if (strlen(endpoint) > 4096)
                return us_error_msg(err, EINVAL, "CRI endpoint is too long");

        _cleanup_free_ char *target = NULL;
        int n;
        if (endpoint[0] == '/')
                n = asprintf(&target, "unix://%s", endpoint);
        else if (strncmp(endpoint, "unix:", 5) == 0)
                n = asprintf(&target, "%s", endpoint);
        else
                return us_error_msg(err, EINVAL,
                                    "CRI endpoint %s: only unix sockets are supported "
                                    "(unix:///path or /path)",
                                    endpoint);
        if (n < 0)
                return us_errorf(err, ENOMEM, "CRI endpoint");

        struct cri_grpc *g = calloc(1, sizeof(*g));
        if (!g)
                return us_errorf(err, ENOMEM, "CRI client");

        grpc_init();
        grpc_arg args[] = {{
                .type = GRPC_ARG_INTEGER,
                .key = (char *)GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH,
                .value.integer = (int)CRI_GRPC_MAX_RECV,
        }};
        grpc_channel_args cargs = {.num_args = US_ELEMENTSOF(args), .args = args};
        grpc_channel_credentials *creds = grpc_insecure_credentials_create();
        g->channel = grpc_channel_create(target, creds, &cargs);
        grpc_channel_credentials_release(creds);
        if (!g->channel) {
                free(g);
                grpc_shutdown();
                return us_error_msg(err, EINVAL, "create gRPC channel to %s", target);
        }
        g->target = TAKE_PTR(target);
        *ret = g;
        return 0;
}

struct cri_grpc *cri_grpc_free(struct cri_grpc *g)
{
        if (!g)
                return NULL;
        grpc_channel_destroy(g->channel);
        free(g->target);
        free(g);
        grpc_shutdown();
        return NULL;
}

const char *cri_grpc_target(const struct cri_grpc *g)
{
        return g->target;
}

int cri_grpc_pack(const ProtobufCMessage *msg, grpc_byte_buffer **ret, struct us_error **err)
{
        size_t len = protobuf_c_message_get_packed_size(msg);
        if (len > CRI_GRPC_MAX_RECV)
                return us_error_msg(err, EMSGSIZE, "request of %zu bytes is too large", len);
        _cleanup_free_ uint8_t *data = malloc(len ? len : 1);
        if (!data)
                return us_errorf(err, ENOMEM, "pack request");
        if (protobuf_c_message_pack(msg, data) != len)
                return us_error_msg(err, EPROTO, "pack request: size mismatch");
        grpc_slice s = grpc_slice_from_copied_buffer((const char *)data, len);
        grpc_byte_buffer *b = grpc_raw_byte_buffer_create(&s, 1);
        grpc_slice_unref(s);
        if (!b)
                return us_errorf(err, ENOMEM, "pack request");
        *ret = b;
        return 0;
}

int cri_grpc_unpack(grpc_byte_buffer *buf, const ProtobufCMessageDescriptor *desc, size_t max,
                    ProtobufCMessage **ret, struct us_error **err)
{
        if (!buf)
                return us_error_msg(err, EBADMSG, "no reply message");
        size_t len = grpc_byte_buffer_length(buf);
        if (len > max)
                return us_error_msg(err, EMSGSIZE, "reply of %zu bytes exceeds the limit of %zu",
                                    len, max);

        grpc_byte_buffer_reader reader;
        if (!grpc_byte_buffer_reader_init(&reader, buf))
                return us_error_msg(err, EBADMSG, "cannot read reply (bad compression?)");
        grpc_slice s = grpc_byte_buffer_reader_readall(&reader);
        grpc_byte_buffer_reader_destroy(&reader);

        size_t slen = GRPC_SLICE_LENGTH(s);
        ProtobufCMessage *m = NULL;
        if (slen <= max)
                m = protobuf_c_message_unpack(desc, NULL, slen, GRPC_SLICE_START_PTR(s));
        grpc_slice_unref(s);
        if (slen > max)
                return us_error_msg(err, EMSGSIZE, "reply of %zu bytes exceeds the limit of %zu",
                                    slen, max);
        if (!m)
                return us_error_msg(err, EBADMSG, "malformed %s reply", desc->name);
        *ret = m;
        return 0;
}

int cri_grpc_status_errno(grpc_status_code code)
{
        switch (code) {
        case GRPC_STATUS_OK:
                return 0;
        case GRPC_STATUS_CANCELLED:
                return -ECANCELED;
        case GRPC_STATUS_UNKNOWN:
                return -EIO;
        case GRPC_STATUS_INVALID_ARGUMENT:
                return -EINVAL;
        case GRPC_STATUS_DEADLINE_EXCEEDED:
                return -ETIMEDOUT;
        case GRPC_STATUS_NOT_FOUND:
                return -ENOENT;
        case GRPC_STATUS_ALREADY_EXISTS:
                return -EEXIST;
        case GRPC_STATUS_PERMISSION_DENIED:
                return -EACCES;
        case GRPC_STATUS_RESOURCE_EXHAUSTED:
                return -EMSGSIZE;
        case GRPC_STATUS_FAILED_PRECONDITION:
                return -EBUSY;
        case GRPC_STATUS_ABORTED:
                return -ECONNABORTED;
        case GRPC_STATUS_OUT_OF_RANGE:
                return -ERANGE;
        case GRPC_STATUS_UNIMPLEMENTED:
                return -EOPNOTSUPP;
        case GRPC_STATUS_INTERNAL:
                return -EPROTO;
        case GRPC_STATUS_UNAVAILABLE:
                return -ECONNREFUSED;
        case GRPC_STATUS_DATA_LOSS:
                return -EIO;
        case GRPC_STATUS_UNAUTHENTICATED:
                return -EACCES;
        case GRPC_STATUS__DO_NOT_USE:
                break;
        }
        return -EIO;
}

int cri_grpc_status_error(const char *method, grpc_status_code code, const char *details,
                          size_t details_len, struct us_error **err)
{
        int r = cri_grpc_status_errno(code);
        if (r == 0)
                r = -EIO; /* not an error: a caller bug, still never 0 */

        const char *name = method ? strrchr(method, '/') : NULL;
        name = name ? name + 1 : (method ? method : "rpc");

        bool truncated = details_len > CRI_GRPC_MAX_DETAILS;
        size_t len = truncated ? CRI_GRPC_MAX_DETAILS : details_len;
        _cleanup_free_ char *text = malloc(len + 1);
        if (!text)
                return us_errorf(err, ENOMEM, "%s: rpc error code %d", name, (int)code);
        for (size_t i = 0; i < len; i++) {
                unsigned char ch = (unsigned char)details[i];
                text[i] = (ch < 0x20 && ch != '\n' && ch != '\t') || ch == 0x7f ? '?' : (char)ch;
        }
        text[len] = '\0';
        us_error_msg(err, -r, "%s: rpc error code %d: %s%s", name, (int)code, text,
                     truncated ? "..." : "");
        return r;
}

int cri_grpc_call(struct cri_grpc *g, const char *method, const ProtobufCMessage *req,
                  const ProtobufCMessageDescriptor *resp_desc, int64_t timeout_ms,
                  ProtobufCMessage **ret_resp, struct us_error **err)
{
        const char *name = strrchr(method, '/');
        name = name ? name + 1 : method;
        if (timeout_ms <= 0)
                timeout_ms = 1;

        _cleanup_(grpc_byte_buffer_destroyp) grpc_byte_buffer *send = NULL;
        int r = cri_grpc_pack(req, &send, err);
        if (r < 0)
                return us_error_wrap(err, r, "%s", name);

        grpc_completion_queue *cq = grpc_completion_queue_create_for_pluck(NULL);
        if (!cq)
                return us_errorf(err, ENOMEM, "%s: completion queue", name);

        gpr_timespec now = gpr_now(GPR_CLOCK_MONOTONIC);
        gpr_timespec deadline = gpr_time_add(now, gpr_time_from_millis(timeout_ms, GPR_TIMESPAN));
        grpc_slice method_slice = grpc_slice_from_copied_string(method);
        grpc_call *call = grpc_channel_create_call(g->channel, NULL, GRPC_PROPAGATE_DEFAULTS, cq,
                                                   method_slice, NULL, deadline, NULL);
        grpc_slice_unref(method_slice);
        if (!call) {
                grpc_completion_queue_shutdown(cq);
                grpc_completion_queue_destroy(cq);
                return us_error_msg(err, EIO, "%s: cannot create call", name);
        }

        grpc_metadata_array initial_md, trailing_md;
        grpc_metadata_array_init(&initial_md);
        grpc_metadata_array_init(&trailing_md);
        grpc_byte_buffer *recv = NULL;
        grpc_status_code status = GRPC_STATUS_UNKNOWN;
        grpc_slice details = grpc_empty_slice();

        grpc_op ops[6];
        memset(ops, 0, sizeof(ops));
        ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
        ops[0].data.send_initial_metadata.count = 0;
        ops[1].op = GRPC_OP_SEND_MESSAGE;
        ops[1].data.send_message.send_message = send;
        ops[2].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
        ops[3].op = GRPC_OP_RECV_INITIAL_METADATA;
        ops[3].data.recv_initial_metadata.recv_initial_metadata = &initial_md;
        ops[4].op = GRPC_OP_RECV_MESSAGE;
        ops[4].data.recv_message.recv_message = &recv;
        ops[5].op = GRPC_OP_RECV_STATUS_ON_CLIENT;
        ops[5].data.recv_status_on_client.trailing_metadata = &trailing_md;
        ops[5].data.recv_status_on_client.status = &status;
        ops[5].data.recv_status_on_client.status_details = &details;

        void *tag = &ops; /* any unique address */
        grpc_call_error ce = grpc_call_start_batch(call, ops, US_ELEMENTSOF(ops), tag, NULL);
        bool completed = false;
        if (ce == GRPC_CALL_OK) {
                /* The call's own deadline fires first; the margin only
                 * guards against a stuck transport. */
                gpr_timespec pluck_deadline =
                        gpr_time_add(deadline, gpr_time_from_millis(5000, GPR_TIMESPAN));
                grpc_event ev = grpc_completion_queue_pluck(cq, tag, pluck_deadline, NULL);
                if (ev.type != GRPC_OP_COMPLETE) {
                        (void)grpc_call_cancel(call, NULL);
                        ev = grpc_completion_queue_pluck(cq, tag,
                                                         gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
                }
                completed = ev.type == GRPC_OP_COMPLETE && ev.success;
        }

        if (ce != GRPC_CALL_OK)
                r = us_error_msg(err, EIO, "%s: grpc_call_start_batch: error %d", name, (int)ce);
        else if (!completed && status == GRPC_STATUS_OK)
                r = us_error_msg(err, EIO, "%s: call did not complete", name);
        else if (status != GRPC_STATUS_OK)
                r = cri_grpc_status_error(method, status,
                                          (const char *)GRPC_SLICE_START_PTR(details),
                                          GRPC_SLICE_LENGTH(details), err);
        else {
                _cleanup_pb_ ProtobufCMessage *m = NULL;
                r = cri_grpc_unpack(recv, resp_desc, CRI_GRPC_MAX_RECV, &m, err);
                if (r < 0)
                        r = us_error_wrap(err, r, "%s", name);
                else
                        *ret_resp = TAKE_PTR(m);
        }

        if (recv)
                grpc_byte_buffer_destroy(recv);
        grpc_slice_unref(details);
        grpc_metadata_array_destroy(&initial_md);
        grpc_metadata_array_destroy(&trailing_md);
        grpc_call_unref(call);
        grpc_completion_queue_shutdown(cq);
        grpc_completion_queue_destroy(cq);
        return r;
}
