/* SPDX-License-Identifier: Apache-2.0 */
/*
 * ttrpc framing shared by the server and the client: the 10-byte header, the
 * frame reader that copes with partial reads and oversized frames, the
 * envelope (ttrpc.Request/Response) decoders, and the errno <-> gRPC code
 * mapping.
 */
#include "ttrpc.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/cleanup.h"

/* Reads are at least this big, so many small frames cost one syscall. */
#define RBUF_MIN_READ 4096
/* Longest peer-supplied status message we pass on. */
#define MAX_STATUS_TEXT 4096

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

int us_ttrpc_request_frame_build(uint32_t stream_id, const char *service, const char *method,
                                 const ProtobufCMessage *req, const struct us_ttrpc_kv *metadata,
                                 size_t n_metadata, int timeout_ms, uint8_t **ret_buf,
                                 size_t *ret_len, struct us_error **err)
{
        if (n_metadata > US_TTRPC_MAX_METADATA)
                return us_error_msg(err, EINVAL, "too many ttrpc metadata entries");
        size_t plen = req ? protobuf_c_message_get_packed_size(req) : 0;
        if (plen > US_TTRPC_MAX_MESSAGE)
                return us_error_msg(err, EMSGSIZE, "ttrpc request of %zu bytes too large", plen);
        _cleanup_free_ uint8_t *pbuf = plen ? malloc(plen) : NULL;
        if (plen && !pbuf)
                return us_errorf(err, ENOMEM, "allocate ttrpc request");
        if (plen)
                (void)protobuf_c_message_pack(req, pbuf);

        _cleanup_free_ Ttrpc__KeyValue *kvbuf = NULL;
        _cleanup_free_ Ttrpc__KeyValue **kvp = NULL;
        if (n_metadata > 0) {
                kvbuf = calloc(n_metadata, sizeof(*kvbuf));
                kvp = calloc(n_metadata, sizeof(*kvp));
                if (!kvbuf || !kvp)
                        return us_errorf(err, ENOMEM, "allocate ttrpc metadata");
                for (size_t i = 0; i < n_metadata; i++) {
                        ttrpc__key_value__init(&kvbuf[i]);
                        kvbuf[i].key = (char *)metadata[i].key;
                        kvbuf[i].value = (char *)metadata[i].value;
                        kvp[i] = &kvbuf[i];
                }
        }
        Ttrpc__Request r_msg = TTRPC__REQUEST__INIT;
        r_msg.service = (char *)service;
        r_msg.method = (char *)method;
        r_msg.payload.data = pbuf;
        r_msg.payload.len = plen;
        r_msg.timeout_nano = timeout_ms > 0 ? (int64_t)timeout_ms * 1000000 : 0;
        r_msg.n_metadata = n_metadata;
        r_msg.metadata = kvp;
        return us_ttrpc_frame_build(stream_id, US_TTRPC_TYPE_REQUEST, &r_msg.base, ret_buf, ret_len,
                                    err);
}

int us_ttrpc_response_status(const Ttrpc__Response *resp, const char *what, struct us_error **err)
{
        if (!resp->status || resp->status->code == US_GRPC_OK)
                return 0;
        int r = us_errno_from_grpc_code(resp->status->code);
        /* The peer picks the message: keep what reaches logs and containerd
         * readable. */
        return us_error_msg(err, -r, "%s: %.*s", what, MAX_STATUS_TEXT,
                            resp->status->message && *resp->status->message
                                    ? resp->status->message
                                    : "error without message");
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
        /* What the peer sent never moves these past each other: lengths are
         * checked before they size anything. */
        assert(b->off <= b->len && b->len <= b->cap);
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

ssize_t us_ttrpc_rbuf_append_some(struct us_ttrpc_rbuf *b, const uint8_t *data, size_t len)
{
        size_t room;
        int r = rbuf_prepare(b, &room);
        if (r < 0)
                return r;
        size_t n = len < room ? len : room;
        if (n > 0)
                memcpy(b->data + b->len, data, n);
        b->len += n;
        /* Drop skipped bytes as we go so an oversized frame never
         * accumulates. */
        if (b->discard > 0)
                rbuf_skip(b);
        return (ssize_t)n;
}

int us_ttrpc_rbuf_append(struct us_ttrpc_rbuf *b, const uint8_t *data, size_t len)
{
        while (len > 0) {
                ssize_t n = us_ttrpc_rbuf_append_some(b, data, len);
                if (n < 0)
                        return (int)n;
                if (n == 0)
                        return -ENOBUFS;
                data += n;
                len -= (size_t)n;
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
        assert(b->off <= b->len);
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

int us_ttrpc_fd_prepare(int fd, const char *what, bool *ret_is_socket, struct us_error **err)
{
        struct stat st;
        if (fstat(fd, &st) < 0)
                return us_errorf(err, errno, "fstat %s", what);
        int fl = fcntl(fd, F_GETFL);
        if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)
                return us_errorf(err, errno, "make %s non-blocking", what);
        *ret_is_socket = S_ISSOCK(st.st_mode);
        return 0;
}
