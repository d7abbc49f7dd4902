/* SPDX-License-Identifier: Apache-2.0 */
/*
 * ttrpc framing shared by the server and the client: the 10-byte header, the
 * frame reader that copes with partial reads and oversized frames, the
 * envelope (ttrpc.Request/Response) decoders, and the errno <-> gRPC code
 * mapping.
 */
#include "ttrpc.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cleanup.h"

/* Reads are at least this big, so many small frames cost one syscall. */
#define RBUF_MIN_READ 4096

static uint32_t get_be32(const uint8_t *p)
{
        return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

static void put_be32(uint8_t *p, uint32_t v)
{
        p[0] = (uint8_t)(v >> 24);
        p[1] = (uint8_t)(v >> 16);
        p[2] = (uint8_t)(v >> 8);
        p[3] = (uint8_t)v;
}

int us_ttrpc_header_decode(const uint8_t *buf, struct us_ttrpc_header *ret, struct us_error **err)
{
        struct us_ttrpc_header h = {
                .length = get_be32(buf),
                .stream_id = get_be32(buf + 4),
                .type = buf[8],
                .flags = buf[9],
        };
        /* Filled even on failure: the server answers on that stream. */
        *ret = h;
        if (h.length > US_TTRPC_MAX_MESSAGE)
                return us_error_msg(err, EMSGSIZE,
                                    "ttrpc message length %" PRIu32 " exceeds maximum of %u",
                                    h.length, US_TTRPC_MAX_MESSAGE);
        return 0;
}

void us_ttrpc_header_encode(const struct us_ttrpc_header *h, uint8_t *buf)
{
        put_be32(buf, h->length);
        put_be32(buf + 4, h->stream_id);
        buf[8] = h->type;
        buf[9] = h->flags;
}

enum us_grpc_code us_grpc_code_from_errno(int neg_errno)
{
        switch (neg_errno < 0 ? -neg_errno : neg_errno) {
        case 0:
                return US_GRPC_OK;
        case ECANCELED:
                return US_GRPC_CANCELLED;
        case EINVAL:
        case E2BIG:
        case ENAMETOOLONG:
                return US_GRPC_INVALID_ARGUMENT;
        case ETIMEDOUT:
        case ETIME:
                return US_GRPC_DEADLINE_EXCEEDED;
        case ENOENT:
        case ESRCH:
        case ENXIO:
        case ENODEV:
                return US_GRPC_NOT_FOUND;
        case EEXIST:
        case EALREADY:
                return US_GRPC_ALREADY_EXISTS;
        case EPERM:
        case EACCES:
        case EROFS:
                return US_GRPC_PERMISSION_DENIED;
        case ENOMEM:
        case ENOSPC:
        case ENOBUFS:
        case EMFILE:
        case ENFILE:
        case EMSGSIZE:
        case EDQUOT:
                return US_GRPC_RESOURCE_EXHAUSTED;
        case EBUSY:
        case ENOTEMPTY:
        case ENOTDIR:
        case EISDIR:
                return US_GRPC_FAILED_PRECONDITION;
        case ECONNABORTED:
        case EDEADLK:
                return US_GRPC_ABORTED;
        case ERANGE:
        case EOVERFLOW:
                return US_GRPC_OUT_OF_RANGE;
        case ENOSYS:
        case EOPNOTSUPP:
                return US_GRPC_UNIMPLEMENTED;
        case EREMOTEIO:
        case EPROTO:
                return US_GRPC_INTERNAL;
        case EAGAIN:
        case ENOTCONN:
        case ECONNREFUSED:
        case ECONNRESET:
        case EPIPE:
        case EHOSTUNREACH:
                return US_GRPC_UNAVAILABLE;
        case EBADMSG:
                return US_GRPC_DATA_LOSS;
        default:
                return US_GRPC_UNKNOWN;
        }
}

int us_errno_from_grpc_code(int code)
{
        switch (code) {
        case US_GRPC_OK:
                return 0;
        case US_GRPC_CANCELLED:
                return -ECANCELED;
        case US_GRPC_INVALID_ARGUMENT:
                return -EINVAL;
        case US_GRPC_DEADLINE_EXCEEDED:
                return -ETIMEDOUT;
        case US_GRPC_NOT_FOUND:
                return -ENOENT;
        case US_GRPC_ALREADY_EXISTS:
                return -EEXIST;
        case US_GRPC_PERMISSION_DENIED:
                return -EPERM;
        case US_GRPC_RESOURCE_EXHAUSTED:
                return -ENOSPC;
        case US_GRPC_FAILED_PRECONDITION:
                return -EBUSY;
        case US_GRPC_ABORTED:
                return -ECONNABORTED;
        case US_GRPC_OUT_OF_RANGE:
                return -ERANGE;
        case US_GRPC_UNIMPLEMENTED:
                return -ENOSYS;
        case US_GRPC_INTERNAL:
                return -EREMOTEIO;
        case US_GRPC_UNAVAILABLE:
                return -ENOTCONN;
        case US_GRPC_DATA_LOSS:
                return -EBADMSG;
        case US_GRPC_UNAUTHENTICATED:
                return -EACCES;
        case US_GRPC_UNKNOWN:
        default:
                return -EIO;
        }
}

int us_ttrpc_decode_request(const uint8_t *buf, size_t len, Ttrpc__Request **ret,
                            struct us_error **err)
{
        if (len > US_TTRPC_MAX_MESSAGE)
                return us_error_msg(err, EMSGSIZE, "ttrpc request of %zu bytes too large", len);
        Ttrpc__Request *req = ttrpc__request__unpack(NULL, len, buf);
        if (!req)
                return us_error_msg(err, EBADMSG, "unmarshal request error: invalid protobuf");
        int r = 0;
        if (!req->service || !*req->service || !req->method || !*req->method)
                r = us_error_msg(err, EINVAL, "request without service or method");
        else if (req->n_metadata > US_TTRPC_MAX_METADATA)
                r = us_error_msg(err, EINVAL, "request with %zu metadata entries (max %d)",
                                 req->n_metadata, US_TTRPC_MAX_METADATA);
        if (r < 0) {
                ttrpc__request__free_unpacked(req, NULL);
                return r;
        }
        *ret = req;
        return 0;
}

int us_ttrpc_decode_response(const uint8_t *buf, size_t len, Ttrpc__Response **ret,
                             struct us_error **err)
{
        if (len > US_TTRPC_MAX_MESSAGE)
                return us_error_msg(err, EMSGSIZE, "ttrpc response of %zu bytes too large", len);
        Ttrpc__Response *resp = ttrpc__response__unpack(NULL, len, buf);
        if (!resp)
                return us_error_msg(err, EBADMSG, "unmarshal response error: invalid protobuf");
        *ret = resp;
        return 0;
}

int us_ttrpc_frame_build(uint32_t stream_id, uint8_t type, const ProtobufCMessage *msg,
                         uint8_t **ret_buf, size_t *ret_len, struct us_error **err)
{
        size_t n = protobuf_c_message_get_packed_size(msg);
        if (n > US_TTRPC_MAX_MESSAGE)
                return us_error_msg(err, EMSGSIZE,
                                    "ttrpc message of %zu bytes exceeds maximum of %u", n,
                                    US_TTRPC_MAX_MESSAGE);
        uint8_t *buf = malloc(US_TTRPC_HEADER_SIZE + n);
        if (!buf)
                return us_errorf(err, ENOMEM, "allocate ttrpc frame");
        struct us_ttrpc_header h = {.length = (uint32_t)n, .stream_id = stream_id, .type = type};
        us_ttrpc_header_encode(&h, buf);
        (void)protobuf_c_message_pack(msg, buf + US_TTRPC_HEADER_SIZE);
        *ret_buf = buf;
        *ret_len = US_TTRPC_HEADER_SIZE + n;
        return 0;
}

/* ---- frame reader ---- */

/* Skips what is buffered of an oversized frame's payload. */
static void rbuf_skip(struct us_ttrpc_rbuf *b)
{
        size_t avail = b->len - b->off;
        size_t n = b->discard < avail ? (size_t)b->discard : avail;
        b->off += n;
        b->discard -= n;
}

/* Moves unconsumed bytes to the front and makes room for the next read. */
static int rbuf_prepare(struct us_ttrpc_rbuf *b, size_t *ret_room)
{
        if (b->off > 0) {
                memmove(b->data, b->data + b->off, b->len - b->off);
                b->len -= b->off;
                b->off = 0;
        }
        size_t want = US_TTRPC_HEADER_SIZE;
        if (b->discard == 0 && b->len >= US_TTRPC_HEADER_SIZE) {
                uint32_t length = get_be32(b->data);
                if (length <= US_TTRPC_MAX_MESSAGE)
                        want = US_TTRPC_HEADER_SIZE + length;
        }
        if (want < RBUF_MIN_READ)
                want = RBUF_MIN_READ;
        if (b->cap < want) {
                uint8_t *d = realloc(b->data, want);
                if (!d)
                        return -ENOMEM;
                b->data = d;
                b->cap = want;
        }
        *ret_room = b->cap - b->len;
        return 0;
}

ssize_t us_ttrpc_rbuf_fill(struct us_ttrpc_rbuf *b, int fd)
{
        size_t room;
        int r = rbuf_prepare(b, &room);
        if (r < 0)
                return r;
        if (room == 0)
                return -ENOBUFS; /* a complete frame is waiting: call next() */
        ssize_t n = read(fd, b->data + b->len, room);
        if (n < 0)
                return -errno;
        b->len += (size_t)n;
        return n;
}

int us_ttrpc_rbuf_append(struct us_ttrpc_rbuf *b, const uint8_t *data, size_t len)
{
        while (len > 0) {
                size_t room;
                int r = rbuf_prepare(b, &room);
                if (r < 0)
                        return r;
                if (room == 0)
                        return -ENOBUFS;
                size_t n = len < room ? len : room;
                memcpy(b->data + b->len, data, n);
                b->len += n;
                data += n;
                len -= n;
                /* Drop skipped bytes as we go so an oversized frame never
                 * accumulates. */
                if (b->discard > 0)
                        rbuf_skip(b);
        }
        return 0;
}

int us_ttrpc_rbuf_next(struct us_ttrpc_rbuf *b, struct us_ttrpc_header *ret_hdr,
                       const uint8_t **ret_payload, struct us_error **err)
{
        if (b->discard > 0) {
                rbuf_skip(b);
                if (b->discard > 0)
                        return 0;
        }
        size_t avail = b->len - b->off;
        if (avail < US_TTRPC_HEADER_SIZE)
                return 0;
        struct us_ttrpc_header h;
        int r = us_ttrpc_header_decode(b->data + b->off, &h, err);
        if (r < 0) {
                b->off += US_TTRPC_HEADER_SIZE;
                b->discard = h.length;
                rbuf_skip(b);
                *ret_hdr = h;
                return r;
        }
        if (avail - US_TTRPC_HEADER_SIZE < h.length)
                return 0;
        *ret_payload = b->data + b->off + US_TTRPC_HEADER_SIZE;
        *ret_hdr = h;
        b->off += US_TTRPC_HEADER_SIZE + h.length;
        return 1;
}

void us_ttrpc_rbuf_trim(struct us_ttrpc_rbuf *b)
{
        if (b->off == b->len) {
                free(b->data);
                b->data = NULL;
                b->off = b->len = b->cap = 0;
        }
}

void us_ttrpc_rbuf_release(struct us_ttrpc_rbuf *b)
{
        free(b->data);
        *b = (struct us_ttrpc_rbuf){0};
}
