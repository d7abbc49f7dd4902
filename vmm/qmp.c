/* SPDX-License-Identifier: Apache-2.0 */
#include "qmp.h"

#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "base/cleanup.h"
#include "base/fs-util.h"
#include "base/loop.h"

struct vmm_qmp {
        int fd;
        int timeout_ms;
        uint64_t next_id;
        size_t events;
        bool broken;
        char *buf; /* VMM_QMP_MAX_LINE + 1 */
        size_t len;
        vmm_qmp_msg_fn handler;
        void *handler_data;
};

static void hand_over(struct vmm_qmp *q, const struct vmm_qmp_msg *msg)
{
        if (q->handler)
                q->handler(msg, q->handler_data);
}

/* yajl has no depth limit and yajl_tree_free() recurses: refuse deep input
 * before yajl sees it. Also refuses embedded NULs (yajl_tree_parse wants a C
 * string and would silently stop there). */
static int check_depth(const char *buf, size_t len, struct us_error **err)
{
        unsigned depth = 0;
        bool in_string = false, escaped = false;

        for (size_t i = 0; i < len; i++) {
                char c = buf[i];
                if (c == '\0')
                        return us_error_msg(err, EBADMSG, "qmp: NUL byte in message");
                if (in_string) {
                        if (escaped)
                                escaped = false;
                        else if (c == '\\')
                                escaped = true;
                        else if (c == '"')
                                in_string = false;
                        continue;
                }
                if (c == '"')
                        in_string = true;
                else if (c == '{' || c == '[') {
                        if (++depth > VMM_QMP_MAX_DEPTH)
                                return us_error_msg(err, EBADMSG,
                                                    "qmp: message nested deeper than %d",
                                                    VMM_QMP_MAX_DEPTH);
                } else if ((c == '}' || c == ']') && depth > 0)
                        depth--;
        }
        return 0;
}

static int dup_string(yajl_val v, char **ret)
{
        const char *src = YAJL_GET_STRING(v);
        if (!src)
                return -EBADMSG;
        char *s = strdup(src);
        if (!s)
                return -ENOMEM;
        *ret = s;
        return 0;
}

/* The "id" member: we only send strings, but echo anything scalar. */
static int dup_id(yajl_val v, char **ret)
{
        if (YAJL_IS_STRING(v))
                return dup_string(v, ret);
        if (YAJL_IS_NUMBER(v) && YAJL_GET_NUMBER(v)) {
                char *s = strndup(YAJL_GET_NUMBER(v), 64);
                if (!s)
                        return -ENOMEM;
                *ret = s;
                return 0;
        }
        return -EBADMSG;
}

struct vmm_qmp_msg *vmm_qmp_msg_free(struct vmm_qmp_msg *msg)
{
        if (!msg)
                return NULL;
        free(msg->id);
        free(msg->event);
        free(msg->error_class);
        free(msg->error_desc);
        if (msg->tree)
                yajl_tree_free(msg->tree);
        free(msg);
        return NULL;
}

DEFINE_CLEANUP(struct vmm_qmp_msg *, vmm_qmp_msg_free)

int vmm_qmp_msg_parse(const char *buf, size_t len, struct vmm_qmp_msg **ret, struct us_error **err)
{
        _cleanup_(vmm_qmp_msg_free_cleanupp) struct vmm_qmp_msg *msg = NULL;
        _cleanup_free_ char *copy = NULL;
        char errbuf[128] = "";
        int r;

        if (!buf && len > 0)
                return us_error_msg(err, EINVAL, "qmp: no buffer");
        if (len > VMM_QMP_MAX_LINE)
                return us_error_msg(err, E2BIG, "qmp: message of %zu bytes exceeds %d", len,
                                    VMM_QMP_MAX_LINE);
        while (len > 0 && (buf[len - 1] == '\n' || buf[len - 1] == '\r'))
                len--;
        if (len == 0)
                return us_error_msg(err, EBADMSG, "qmp: empty message");
        r = check_depth(buf, len, err);
        if (r < 0)
                return r;

        copy = strndup(buf, len);
        if (!copy)
                return us_errorf(err, ENOMEM, "qmp: copy message");
        msg = calloc(1, sizeof(*msg));
        if (!msg)
                return us_errorf(err, ENOMEM, "qmp: allocate message");
        msg->tree = yajl_tree_parse(copy, errbuf, sizeof(errbuf));
        if (!msg->tree) {
                errbuf[strcspn(errbuf, "\n")] = '\0';
                return us_error_msg(err, EBADMSG, "qmp: invalid JSON: %s", errbuf);
        }
        if (!YAJL_IS_OBJECT(msg->tree))
                return us_error_msg(err, EBADMSG, "qmp: message is not a JSON object");

        yajl_val greeting = NULL, retval = NULL, error = NULL, event = NULL, id = NULL;
        size_t n = YAJL_GET_OBJECT(msg->tree)->len;
        for (size_t i = 0; i < n; i++) {
                const char *key = YAJL_GET_OBJECT(msg->tree)->keys[i];
                yajl_val v = YAJL_GET_OBJECT(msg->tree)->values[i];
                if (!key)
                        continue;
                if (strcmp(key, "QMP") == 0)
                        greeting = v;
                else if (strcmp(key, "return") == 0)
                        retval = v;
                else if (strcmp(key, "error") == 0)
                        error = v;
                else if (strcmp(key, "event") == 0)
                        event = v;
                else if (strcmp(key, "id") == 0)
                        id = v;
        }
        if (!!greeting + !!retval + !!error + !!event != 1)
                return us_error_msg(
                        err, EBADMSG,
                        "qmp: message must have exactly one of QMP, return, error, event");
        if (id) {
                r = dup_id(id, &msg->id);
                if (r == -ENOMEM)
                        return us_errorf(err, ENOMEM, "qmp: copy id");
                if (r < 0)
                        return us_error_msg(err, EBADMSG, "qmp: id is not a string or number");
        }

        if (greeting) {
                if (!YAJL_IS_OBJECT(greeting))
                        return us_error_msg(err, EBADMSG, "qmp: greeting is not an object");
                msg->kind = VMM_QMP_MSG_GREETING;
                msg->value = greeting;
        } else if (retval) {
                msg->kind = VMM_QMP_MSG_RETURN;
                msg->value = retval;
        } else if (event) {
                msg->kind = VMM_QMP_MSG_EVENT;
                r = dup_string(event, &msg->event);
                if (r == -ENOMEM)
                        return us_errorf(err, ENOMEM, "qmp: copy event");
                if (r < 0)
                        return us_error_msg(err, EBADMSG, "qmp: event name is not a string");
        } else {
                msg->kind = VMM_QMP_MSG_ERROR;
                if (!YAJL_IS_OBJECT(error))
                        return us_error_msg(err, EBADMSG, "qmp: error is not an object");
                const char *cls_path[] = {"class", NULL}, *desc_path[] = {"desc", NULL};
                yajl_val cls = yajl_tree_get(error, cls_path, yajl_t_string);
                yajl_val desc = yajl_tree_get(error, desc_path, yajl_t_string);
                if (!cls || !desc)
                        return us_error_msg(err, EBADMSG, "qmp: error lacks string class and desc");
                if (dup_string(cls, &msg->error_class) < 0 ||
                    dup_string(desc, &msg->error_desc) < 0)
                        return us_errorf(err, ENOMEM, "qmp: copy error");
        }
        *ret = TAKE_PTR(msg);
        return 0;
}

int vmm_qmp_msg_to_error(const struct vmm_qmp_msg *msg, const char *command, struct us_error **err)
{
        const char *cls = msg && msg->error_class ? msg->error_class : "unknown";
        const char *desc = msg && msg->error_desc ? msg->error_desc : "no description";
        int code = EIO;

        if (strcmp(cls, "CommandNotFound") == 0 || strcmp(cls, "DeviceNotFound") == 0)
                code = ENOENT;
        /* desc comes from QEMU: bound what we copy into our error text. */
        return us_error_msg(err, code, "qmp %s: %s: %.512s", command ? command : "?", cls, desc);
}

/* Reads one line (without the newline) into q->buf, honouring the deadline.
 * Returns the line length; the line stays at q->buf until the next call. */
static int read_line(struct vmm_qmp *q, int64_t deadline, size_t *ret_len, struct us_error **err)
{
        for (;;) {
                char *nl = memchr(q->buf, '\n', q->len);
                if (nl) {
                        *ret_len = (size_t)(nl - q->buf);
                        return 0;
                }
                if (q->len >= VMM_QMP_MAX_LINE)
                        return us_error_msg(err, E2BIG, "qmp: line longer than %d bytes",
                                            VMM_QMP_MAX_LINE);
                int64_t left = deadline - us_monotonic_ms();
                if (left <= 0)
                        return us_error_msg(err, ETIMEDOUT, "qmp: no reply from QEMU in time");
                struct pollfd p = {.fd = q->fd, .events = POLLIN};
                int r = poll(&p, 1, (int)left);
                if (r < 0) {
                        if (errno == EINTR)
                                continue;
                        return us_errorf(err, errno, "qmp: poll");
                }
                if (r == 0)
                        continue;
                ssize_t n = recv(q->fd, q->buf + q->len, VMM_QMP_MAX_LINE - q->len, MSG_DONTWAIT);
                if (n < 0) {
                        if (errno == EINTR || errno == EAGAIN)
                                continue;
                        return us_errorf(err, errno, "qmp: read");
                }
                if (n == 0)
                        return us_error_msg(err, ECONNRESET, "qmp: QEMU closed the monitor");
                q->len += (size_t)n;
        }
}

static void consume_line(struct vmm_qmp *q, size_t line_len)
{
        size_t used = line_len + 1;
        memmove(q->buf, q->buf + used, q->len - used);
        q->len -= used;
}

/* Takes the buffer's first line (len bytes) as a message; an event is
 * counted and skipped (*ret NULL). */
static int take_line(struct vmm_qmp *q, size_t len, struct vmm_qmp_msg **ret, struct us_error **err)
{
        struct vmm_qmp_msg *msg = NULL;
        int r = vmm_qmp_msg_parse(q->buf, len, &msg, err);
        consume_line(q, len);
        if (r < 0)
                return r;
        if (msg->kind == VMM_QMP_MSG_EVENT) {
                q->events++;
                hand_over(q, msg);
                msg = vmm_qmp_msg_free(msg);
        }
        *ret = msg;
        return 0;
}

/* Next message that is not an event. */
static int read_msg(struct vmm_qmp *q, int64_t deadline, struct vmm_qmp_msg **ret,
                    struct us_error **err)
{
        struct vmm_qmp_msg *msg = NULL;
        while (!msg) {
                size_t len = 0;
                int r = read_line(q, deadline, &len, err);
                if (r >= 0)
                        r = take_line(q, len, &msg, err);
                if (r < 0)
                        return r;
        }
        *ret = msg;
        return 0;
}

/* pass_fd >= 0 goes along with the first bytes sent. */
static int write_all(int fd, const char *s, size_t len, int pass_fd, int64_t deadline,
                     struct us_error **err)
{
        while (len > 0) {
                ssize_t n;
                if (pass_fd >= 0) {
                        struct iovec iov = {.iov_base = (void *)s, .iov_len = len};
                        n = us_sendmsg_fds(fd, &iov, 1, &pass_fd, 1, MSG_DONTWAIT);
                        if (n > 0)
                                pass_fd = -1;
                        if (n < 0) {
                                errno = (int)-n;
                                n = -1;
                        }
                } else {
                        n = send(fd, s, len, MSG_NOSIGNAL | MSG_DONTWAIT);
                }
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        if (errno == EAGAIN) {
                                int64_t left = deadline - us_monotonic_ms();
                                if (left <= 0)
                                        return us_error_msg(err, ETIMEDOUT,
                                                            "qmp: QEMU does not read");
                                struct pollfd p = {.fd = fd, .events = POLLOUT};
                                (void)poll(&p, 1, (int)left);
                                continue;
                        }
                        if (errno == EPIPE)
                                return us_error_msg(err, ECONNRESET,
                                                    "qmp: QEMU closed the monitor");
                        return us_errorf(err, errno, "qmp: write");
                }
                s += n;
                len -= (size_t)n;
        }
        return 0;
}

/* Writes the command with a new id (ret_id: VMM_QMP_ID_MAX bytes). */
static int send_command(struct vmm_qmp *q, const char *command, const char *arguments_json,
                        int pass_fd, int64_t deadline, char *ret_id, struct us_error **err)
{
        _cleanup_free_ char *line = NULL;
        int r;

        if (!q || !command)
                return us_error_msg(err, EINVAL, "qmp: no client or command");
        /* The command name goes into JSON unescaped: only allow QMP's charset. */
        for (const char *c = command; *c; c++)
                if (!((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') ||
                      (*c >= '0' && *c <= '9') || *c == '-' || *c == '_'))
                        return us_error_msg(err, EINVAL, "qmp: invalid command name");
        if (q->broken)
                return us_error_msg(err, ENOTCONN, "qmp %s: monitor connection lost earlier",
                                    command);

        snprintf(ret_id, VMM_QMP_ID_MAX, "us-%" PRIu64, q->next_id++);
        int n;
        if (arguments_json)
                n = asprintf(&line, "{\"execute\":\"%s\",\"arguments\":%s,\"id\":\"%s\"}\n",
                             command, arguments_json, ret_id);
        else
                n = asprintf(&line, "{\"execute\":\"%s\",\"id\":\"%s\"}\n", command, ret_id);
        if (n < 0) {
                line = NULL;
                return us_errorf(err, ENOMEM, "qmp %s", command);
        }
        r = write_all(q->fd, line, (size_t)n, pass_fd, deadline, err);
        if (r < 0) {
                q->broken = true;
                return us_error_wrap(err, r, "qmp %s", command);
        }
        return 0;
}

int vmm_qmp_send(struct vmm_qmp *q, const char *command, const char *arguments_json,
                 char ret_id[VMM_QMP_ID_MAX], struct us_error **err)
{
        int64_t deadline = us_monotonic_ms() + (q ? q->timeout_ms : 0);
        return send_command(q, command, arguments_json, -1, deadline, ret_id, err);
}

static int execute(struct vmm_qmp *q, const char *command, const char *arguments_json, int pass_fd,
                   struct vmm_qmp_msg **ret_reply, struct us_error **err)
{
        char id[VMM_QMP_ID_MAX];
        int r;

        int64_t deadline = us_monotonic_ms() + (q ? q->timeout_ms : 0);
        r = send_command(q, command, arguments_json, pass_fd, deadline, id, err);
        if (r < 0)
                return r;
        for (;;) {
                _cleanup_(vmm_qmp_msg_free_cleanupp) struct vmm_qmp_msg *msg = NULL;
                r = read_msg(q, deadline, &msg, err);
                if (r < 0) {
                        q->broken = true;
                        return us_error_wrap(err, r, "qmp %s", command);
                }
                /* A reply to something else (a late answer to a timed-out
                 * command) is skipped; a reply without id is taken as ours,
                 * which QEMU only sends for unparseable commands. */
                if (msg->kind == VMM_QMP_MSG_GREETING || (msg->id && strcmp(msg->id, id) != 0)) {
                        hand_over(q, msg);
                        continue;
                }
                if (msg->kind == VMM_QMP_MSG_ERROR)
                        return vmm_qmp_msg_to_error(msg, command, err);
                if (ret_reply)
                        *ret_reply = TAKE_PTR(msg);
                return 0;
        }
}

int vmm_qmp_execute(struct vmm_qmp *q, const char *command, const char *arguments_json,
                    struct vmm_qmp_msg **ret_reply, struct us_error **err)
{
        return execute(q, command, arguments_json, -1, ret_reply, err);
}

int vmm_qmp_execute_fd(struct vmm_qmp *q, const char *command, const char *arguments_json, int fd,
                       struct vmm_qmp_msg **ret_reply, struct us_error **err)
{
        if (fd < 0)
                return us_error_msg(err, EBADF, "qmp %s: no fd to pass", command ? command : "?");
        return execute(q, command, arguments_json, fd, ret_reply, err);
}

void vmm_qmp_set_handler(struct vmm_qmp *q, vmm_qmp_msg_fn fn, void *userdata)
{
        if (!q)
                return;
        q->handler = fn;
        q->handler_data = userdata;
}

struct vmm_qmp *vmm_qmp_free(struct vmm_qmp *q)
{
        if (!q)
                return NULL;
        us_close(q->fd);
        free(q->buf);
        free(q);
        return NULL;
}

DEFINE_CLEANUP(struct vmm_qmp *, vmm_qmp_free)

int vmm_qmp_open(int fd, int timeout_ms, struct vmm_qmp **ret, struct us_error **err)
{
        _cleanup_close_ int owned = fd;
        _cleanup_(vmm_qmp_free_cleanupp) struct vmm_qmp *q = NULL;
        _cleanup_(vmm_qmp_msg_free_cleanupp) struct vmm_qmp_msg *greeting = NULL;
        int r;

        if (fd < 0 || timeout_ms <= 0)
                return us_error_msg(err, EINVAL, "qmp: invalid fd or timeout");
        q = calloc(1, sizeof(*q));
        if (!q)
                return us_errorf(err, ENOMEM, "qmp: allocate client");
        q->fd = TAKE_FD(owned);
        q->timeout_ms = timeout_ms;
        q->buf = malloc(VMM_QMP_MAX_LINE + 1);
        if (!q->buf)
                return us_errorf(err, ENOMEM, "qmp: allocate buffer");

        r = read_msg(q, us_monotonic_ms() + timeout_ms, &greeting, err);
        if (r < 0)
                return us_error_wrap(err, r, "read the QMP greeting");
        if (greeting->kind != VMM_QMP_MSG_GREETING)
                return us_error_msg(err, EPROTO, "qmp: first message is not the QMP greeting");
        r = vmm_qmp_execute(q, "qmp_capabilities", NULL, NULL, err);
        if (r < 0)
                return r;
        *ret = TAKE_PTR(q);
        return 0;
}

size_t vmm_qmp_events_seen(const struct vmm_qmp *q)
{
        return q ? q->events : 0;
}

int vmm_qmp_fd(const struct vmm_qmp *q)
{
        return q ? q->fd : -1;
}

/* Skips the complete lines in the buffer: events are counted, anything else
 * between commands (a reply nobody waits for) is dropped. */
static int skip_lines(struct vmm_qmp *q, struct us_error **err)
{
        char *nl;
        while ((nl = memchr(q->buf, '\n', q->len))) {
                struct vmm_qmp_msg *msg = NULL;
                int r = take_line(q, (size_t)(nl - q->buf), &msg, err);
                if (r < 0)
                        return r;
                if (msg)
                        hand_over(q, msg);
                vmm_qmp_msg_free(msg);
        }
        if (q->len >= VMM_QMP_MAX_LINE)
                return us_error_msg(err, E2BIG, "qmp: line longer than %d bytes", VMM_QMP_MAX_LINE);
        return 0;
}

int vmm_qmp_drain(struct vmm_qmp *q, struct us_error **err)
{
        if (!q || q->broken)
                return us_error_msg(err, ENOTCONN, "qmp: the monitor is not usable");
        /* What came with a command's reply is in the buffer already. */
        int r = skip_lines(q, err);
        /* Bounded per call: a monitor that never stops talking yields the
         * loop to others; the next wakeup reads on. */
        for (int rounds = 0; rounds < 16 && r == 0; rounds++) {
                ssize_t n = recv(q->fd, q->buf + q->len, VMM_QMP_MAX_LINE - q->len, MSG_DONTWAIT);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
                        break;
                if (n < 0)
                        r = us_errorf(err, errno, "qmp: read");
                else if (n == 0)
                        r = us_error_msg(err, ECONNRESET, "qmp: QEMU closed the monitor");
                else {
                        q->len += (size_t)n;
                        r = skip_lines(q, err);
                }
        }
        if (r < 0)
                q->broken = true;
        return r;
}
