/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Blocking ttrpc client: one call at a time, each bounded by a deadline. The
 * peer (containerd, or a guest agent we do not trust) may send anything:
 * responses for other streams are skipped, frames are bounded by
 * US_TTRPC_MAX_MESSAGE, and a protocol violation breaks the client for good
 * (later calls fail with -ENOTCONN) rather than resynchronising on garbage.
 */
#include "ttrpc.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "base/cleanup.h"
#include "base/loop.h"

struct us_ttrpc_client {
        int fd;
        bool is_socket;
        bool broken;
        uint32_t next_stream_id;
        struct us_ttrpc_rbuf rbuf;
};

/* Milliseconds left until deadline for poll(): -1 for none. */
static int remaining(int64_t deadline)
{
        if (deadline < 0)
                return -1;
        int64_t left = deadline - us_monotonic_ms();
        if (left <= 0)
                return 0;
        return left > INT32_MAX ? INT32_MAX : (int)left;
}

int us_ttrpc_client_from_fd(int fd, struct us_ttrpc_client **ret, struct us_error **err)
{
        _cleanup_close_ int owned = fd;
        bool is_socket;
        int r = us_ttrpc_fd_prepare(fd, "ttrpc client fd", &is_socket, err);
        if (r < 0)
                return r;
        struct us_ttrpc_client *c = calloc(1, sizeof(*c));
        if (!c)
                return us_errorf(err, ENOMEM, "allocate ttrpc client");
        c->fd = TAKE_FD(owned);
        c->is_socket = is_socket;
        c->next_stream_id = 1;
        *ret = c;
        return 0;
}

int us_ttrpc_client_connect(const char *socket_path, struct us_ttrpc_client **ret,
                            struct us_error **err)
{
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        socklen_t salen;
        const char *path = socket_path;
        /* containerd passes TTRPC_ADDRESS as a plain path; accept unix:// too. */
        if (strncmp(path, "unix://", 7) == 0)
                path += 7;
        size_t n = strlen(path);
        if (n == 0 || n >= sizeof(sa.sun_path))
                return us_error_msg(err, EINVAL, "invalid ttrpc socket path '%s'", socket_path);
        if (path[0] == '@') {
                /* abstract socket */
                memcpy(sa.sun_path + 1, path + 1, n - 1);
                salen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n);
        } else {
                memcpy(sa.sun_path, path, n);
                salen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n + 1);
        }
        _cleanup_close_ int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return us_errorf(err, errno, "socket");
        if (connect(fd, (struct sockaddr *)&sa, salen) < 0)
                return us_errorf(err, errno, "connect to %s", socket_path);
        return us_ttrpc_client_from_fd(TAKE_FD(fd), ret, err);
}

struct us_ttrpc_client *us_ttrpc_client_free(struct us_ttrpc_client *c)
{
        if (!c)
                return NULL;
        us_close(c->fd);
        us_ttrpc_rbuf_release(&c->rbuf);
        free(c);
        return NULL;
}

static int wait_fd(struct us_ttrpc_client *c, short events, int64_t deadline, struct us_error **err)
{
        for (;;) {
                struct pollfd p = {.fd = c->fd, .events = events};
                int n = poll(&p, 1, remaining(deadline));
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        return us_errorf(err, errno, "poll ttrpc connection");
                }
                if (n == 0)
                        return us_error_msg(err, ETIMEDOUT, "ttrpc call timed out");
                return 0;
        }
}

static int send_all(struct us_ttrpc_client *c, const uint8_t *p, size_t len, int64_t deadline,
                    struct us_error **err)
{
        while (len > 0) {
                ssize_t n = c->is_socket ? send(c->fd, p, len, MSG_NOSIGNAL) : write(c->fd, p, len);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        if (errno == EAGAIN || errno == EWOULDBLOCK) {
                                int r = wait_fd(c, POLLOUT, deadline, err);
                                if (r < 0)
                                        return r;
                                continue;
                        }
                        return us_errorf(err, errno, "send ttrpc request");
                }
                p += n;
                len -= (size_t)n;
        }
        return 0;
}

/* Waits for the response on stream_id; returns it unpacked. */
static int recv_response(struct us_ttrpc_client *c, uint32_t stream_id, int64_t deadline,
                         Ttrpc__Response **ret, struct us_error **err)
{
        for (;;) {
                struct us_ttrpc_header h;
                const uint8_t *payload = NULL;
                int r = us_ttrpc_rbuf_next(&c->rbuf, &h, &payload, err);
                if (r < 0) {
                        c->broken = true;
                        return us_error_wrap(err, -EPROTO, "ttrpc peer sent an oversized frame");
                }
                if (r == 1) {
                        if (h.type != US_TTRPC_TYPE_RESPONSE || h.stream_id != stream_id)
                                continue; /* a late answer to an abandoned call, or noise */
                        r = us_ttrpc_decode_response(payload, h.length, ret, err);
                        if (r < 0) {
                                c->broken = true;
                                return us_error_wrap(err, -EPROTO, "ttrpc stream %" PRIu32,
                                                     stream_id);
                        }
                        return 0;
                }
                us_ttrpc_rbuf_trim(&c->rbuf);
                ssize_t n = us_ttrpc_rbuf_fill(&c->rbuf, c->fd);
                if (n == -EAGAIN || n == -EWOULDBLOCK) {
                        r = wait_fd(c, POLLIN, deadline, err);
                        if (r < 0)
                                return r;
                        continue;
                }
                if (n == -EINTR)
                        continue;
                if (n == 0) {
                        c->broken = true;
                        return us_error_msg(err, ECONNRESET, "ttrpc connection closed by peer");
                }
                if (n < 0) {
                        c->broken = true;
                        return us_errorf(err, (int)-n, "read ttrpc response");
                }
        }
}

int us_ttrpc_client_call(struct us_ttrpc_client *c, const char *service, const char *method,
                         const ProtobufCMessage *req, const struct us_ttrpc_kv *metadata,
                         size_t n_metadata, int timeout_ms, uint8_t **ret_payload, size_t *ret_len,
                         struct us_error **err)
{
        if (c->broken)
                return us_error_msg(err, ENOTCONN, "ttrpc connection is broken");
        if (c->next_stream_id > UINT32_MAX - 2) {
                c->broken = true; /* ids may not be reused on one connection */
                return us_error_msg(err, ENOTCONN, "ttrpc stream ids exhausted");
        }
        int64_t deadline = timeout_ms < 0 ? -1 : us_monotonic_ms() + timeout_ms;

        uint32_t stream_id = c->next_stream_id;
        c->next_stream_id += 2;
        _cleanup_free_ uint8_t *frame = NULL;
        size_t flen;
        int r = us_ttrpc_request_frame_build(stream_id, service, method, req, metadata, n_metadata,
                                             timeout_ms, &frame, &flen, err);
        if (r < 0)
                return r;
        r = send_all(c, frame, flen, deadline, err);
        if (r < 0) {
                /* A half-written frame leaves the stream unusable. */
                c->broken = true;
                return us_error_wrap(err, r, "%s/%s", service, method);
        }

        Ttrpc__Response *resp = NULL;
        r = recv_response(c, stream_id, deadline, &resp, err);
        us_ttrpc_rbuf_trim(&c->rbuf);
        if (r < 0)
                return us_error_wrap(err, r, "%s/%s", service, method);

        _cleanup_free_ char *what = NULL;
        if (asprintf(&what, "%s/%s", service, method) < 0)
                what = NULL;
        r = us_ttrpc_response_status(resp, what ? what : method, err);
        if (r < 0) {
                ttrpc__response__free_unpacked(resp, NULL);
                return r;
        }
        uint8_t *out = NULL;
        size_t olen = resp->payload.len;
        if (olen > 0) {
                out = malloc(olen);
                if (!out) {
                        ttrpc__response__free_unpacked(resp, NULL);
                        return us_errorf(err, ENOMEM, "allocate ttrpc response");
                }
                memcpy(out, resp->payload.data, olen);
        }
        ttrpc__response__free_unpacked(resp, NULL);
        if (ret_payload)
                *ret_payload = out;
        else
                free(out);
        if (ret_len)
                *ret_len = olen;
        return 0;
}
