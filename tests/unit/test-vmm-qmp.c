/* SPDX-License-Identifier: Apache-2.0 */
/* QMP reply parser with hostile input, and the client against a fake QEMU
 * on a socketpair (greeting, capabilities, events in between, errors, EOF). */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "unit.h"

#include "vmm/qmp.h"

/* The read timeout where the peer's bytes are bound to come (a forked peer
 * may be slow to run): a hang guard, scaled. Only "no greeting at all" has
 * a short one, since timing out is what it tests. */
#define WAIT_MS unit_wait_ms(10000)

static int parse(const char *s, struct vmm_qmp_msg **m, struct us_error **err)
{
        return vmm_qmp_msg_parse(s, strlen(s), m, err);
}

static void parses_the_four_kinds(void **state)
{
        (void)state;
        struct vmm_qmp_msg *m = NULL;

        assert_int_equal(
                parse("{\"QMP\": {\"version\": {}, \"capabilities\": [\"oob\"]}}\n", &m, NULL), 0);
        assert_int_equal(m->kind, VMM_QMP_MSG_GREETING);
        m = vmm_qmp_msg_free(m);

        assert_int_equal(
                parse("{\"return\": {\"status\": \"running\"}, \"id\": \"us-7\"}", &m, NULL), 0);
        assert_int_equal(m->kind, VMM_QMP_MSG_RETURN);
        assert_string_equal(m->id, "us-7");
        assert_true(YAJL_IS_OBJECT(m->value));
        m = vmm_qmp_msg_free(m);

        assert_int_equal(parse("{\"timestamp\": {\"seconds\": 1}, \"event\": \"STOP\"}", &m, NULL),
                         0);
        assert_int_equal(m->kind, VMM_QMP_MSG_EVENT);
        assert_string_equal(m->event, "STOP");
        m = vmm_qmp_msg_free(m);

        assert_int_equal(
                parse("{\"error\": {\"class\": \"GenericError\", \"desc\": \"nope\"}, \"id\": 3}",
                      &m, NULL),
                0);
        assert_int_equal(m->kind, VMM_QMP_MSG_ERROR);
        assert_string_equal(m->error_class, "GenericError");
        assert_string_equal(m->error_desc, "nope");
        assert_string_equal(m->id, "3");
        struct us_error *err = NULL;
        assert_int_equal(vmm_qmp_msg_to_error(m, "stop", &err), -EIO);
        assert_string_equal(us_error_text(err), "qmp stop: GenericError: nope");
        us_error_free(err);
        m = vmm_qmp_msg_free(m);

        assert_int_equal(
                parse("{\"error\": {\"class\": \"CommandNotFound\", \"desc\": \"x\"}}", &m, NULL),
                0);
        assert_int_equal(vmm_qmp_msg_to_error(m, "bogus", NULL), -ENOENT);
        vmm_qmp_msg_free(m);
        assert_null(vmm_qmp_msg_free(NULL));
}

static void rejects_bad_input(void **state)
{
        (void)state;
        static const char *const bad[] = {
                "",
                "\n",
                "not json",
                "[1,2,3]",
                "\"string\"",
                "{}",
                "{\"foo\": 1}",
                "{\"return\": {}, \"error\": {\"class\": \"a\", \"desc\": \"b\"}}",
                "{\"event\": 5}",
                "{\"error\": \"flat\"}",
                "{\"error\": {\"class\": 1, \"desc\": \"x\"}}",
                "{\"error\": {\"class\": \"x\"}}",
                "{\"QMP\": []}",
                "{\"return\": {}, \"id\": {\"a\": 1}}",
                "{\"return\": {\"a\": ",
                "{\"return\": {}} trailing",
        };
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
                struct vmm_qmp_msg *m = NULL;
                struct us_error *err = NULL;
                int r = parse(bad[i], &m, &err);
                if (r >= 0)
                        fail_msg("accepted bad input #%zu: %s", i, bad[i]);
                assert_null(m);
                assert_non_null(err);
                us_error_free(err);
        }
}

static void rejects_embedded_nul(void **state)
{
        (void)state;
        static const char s[] = "{\"return\": {}}\0{\"x\":1}";
        struct vmm_qmp_msg *m = NULL;
        assert_int_equal(vmm_qmp_msg_parse(s, sizeof(s) - 1, &m, NULL), -EBADMSG);
        assert_null(m);
}

static void rejects_deep_nesting(void **state)
{
        (void)state;
        size_t depth = 100000;
        char *s = malloc(depth * 2 + 32);
        assert_non_null(s);
        char *p = s + sprintf(s, "{\"return\": ");
        for (size_t i = 0; i < depth; i++)
                *p++ = '[';
        for (size_t i = 0; i < depth; i++)
                *p++ = ']';
        *p++ = '}';
        struct vmm_qmp_msg *m = NULL;
        struct us_error *err = NULL;
        /* Either too long or too deep, never a crash. */
        assert_true(vmm_qmp_msg_parse(s, (size_t)(p - s), &m, &err) < 0);
        us_error_free(err);
        err = NULL;

        /* Just past the limit, and short. */
        p = s + sprintf(s, "{\"return\": ");
        for (size_t i = 0; i < VMM_QMP_MAX_DEPTH; i++)
                *p++ = '[';
        for (size_t i = 0; i < VMM_QMP_MAX_DEPTH; i++)
                *p++ = ']';
        *p++ = '}';
        assert_int_equal(vmm_qmp_msg_parse(s, (size_t)(p - s), &m, &err), -EBADMSG);
        us_error_free(err);

        /* Brackets inside strings do not count. */
        p = s + sprintf(s, "{\"return\": \"");
        for (size_t i = 0; i < 200; i++)
                *p++ = '[';
        p += sprintf(p, "\\\"\"}");
        assert_int_equal(vmm_qmp_msg_parse(s, (size_t)(p - s), &m, NULL), 0);
        vmm_qmp_msg_free(m);
        free(s);
}

static void rejects_oversized(void **state)
{
        (void)state;
        size_t len = VMM_QMP_MAX_LINE + 1;
        char *s = malloc(len);
        assert_non_null(s);
        memset(s, ' ', len);
        struct vmm_qmp_msg *m = NULL;
        assert_int_equal(vmm_qmp_msg_parse(s, len, &m, NULL), -E2BIG);
        free(s);
}

/* --- client against a scripted fake QEMU -------------------------------- */

static void send_str(int fd, const char *s)
{
        size_t len = strlen(s);
        assert_int_equal(write(fd, s, len), (ssize_t)len);
}

/* Reads one command line from the client; returns its id (static buffer). */
static const char *recv_cmd(int fd, const char *expect)
{
        static char buf[4096];
        size_t n = 0;
        while (n < sizeof(buf) - 1) {
                ssize_t r = read(fd, buf + n, 1);
                if (r <= 0)
                        break;
                if (buf[n++] == '\n')
                        break;
        }
        buf[n] = '\0';
        if (expect && !strstr(buf, expect))
                return NULL;
        char *id = strstr(buf, "\"id\":\"");
        if (!id)
                return NULL;
        id += 6;
        *strchr(id, '"') = '\0';
        return id;
}

static void reply(int fd, const char *id, const char *body)
{
        char line[8192];
        snprintf(line, sizeof(line), "{%s, \"id\": \"%s\"}\n", body, id);
        send_str(fd, line);
}

/* A fake QEMU in a child: greets and accepts qmp_capabilities on sv[1],
 * then returns 0 in the child (which goes on with its script on sv[1] and
 * _exits) and the child's pid in the parent (which talks on sv[0]). */
static pid_t fake_qemu(int sv[2])
{
        assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid > 0) {
                close(sv[1]);
                return pid;
        }
        close(sv[0]);
        send_str(sv[1], "{\"QMP\": {\"version\": {\"qemu\": {\"major\": 7}}, "
                        "\"capabilities\": []}}\r\n");
        const char *id = recv_cmd(sv[1], "qmp_capabilities");
        if (!id)
                _exit(1);
        reply(sv[1], id, "\"return\": {}");
        return 0;
}

static void client_happy_path(void **state)
{
        (void)state;
        int sv[2];
        pid_t pid = fake_qemu(sv);
        if (pid == 0) {
                const char *id = recv_cmd(sv[1], "\"execute\":\"stop\"");
                if (!id)
                        _exit(2);
                /* An event, a stale reply to someone else, then ours,
                 * split across writes. */
                send_str(sv[1], "{\"event\": \"STOP\", \"timestamp\": {\"seconds\": 1, "
                                "\"microseconds\": 2}}\n");
                send_str(sv[1], "{\"return\": {}, \"id\": \"old-1\"}\n{\"ret");
                usleep(20000);
                char tail[128];
                snprintf(tail, sizeof(tail), "urn\": {\"ok\": true}, \"id\": \"%s\"}\n", id);
                send_str(sv[1], tail);
                id = recv_cmd(sv[1], "\"arguments\":{\"device\":\"x\"}");
                if (!id)
                        _exit(3);
                reply(sv[1], id, "\"error\": {\"class\": \"DeviceNotFound\", \"desc\": \"no x\"}");
                id = recv_cmd(sv[1], "quit");
                if (!id)
                        _exit(4);
                _exit(0); /* hang up without replying, like QEMU may on quit */
        }

        struct vmm_qmp *q = NULL;
        struct us_error *err = NULL;
        assert_int_equal(vmm_qmp_open(sv[0], WAIT_MS, &q, &err), 0);
        struct vmm_qmp_msg *m = NULL;
        assert_int_equal(vmm_qmp_execute(q, "stop", NULL, &m, &err), 0);
        assert_non_null(m);
        assert_int_equal(m->kind, VMM_QMP_MSG_RETURN);
        const char *path[] = {"ok", NULL};
        assert_non_null(yajl_tree_get(m->value, path, yajl_t_true));
        vmm_qmp_msg_free(m);
        assert_int_equal(vmm_qmp_events_seen(q), 1);

        assert_int_equal(vmm_qmp_execute(q, "device_del", "{\"device\":\"x\"}", NULL, &err),
                         -ENOENT);
        assert_string_equal(us_error_text(err), "qmp device_del: DeviceNotFound: no x");
        err = us_error_free(err);

        assert_int_equal(vmm_qmp_execute(q, "quit", NULL, NULL, &err), -ECONNRESET);
        err = us_error_free(err);
        /* Transport error: the client refuses further use. */
        assert_int_equal(vmm_qmp_execute(q, "cont", NULL, NULL, &err), -ENOTCONN);
        err = us_error_free(err);
        /* Invalid command names never reach the wire. */
        assert_int_equal(vmm_qmp_execute(q, "a\"b", NULL, NULL, NULL), -EINVAL);
        vmm_qmp_free(q);

        int st;
        assert_int_equal(waitpid(pid, &st, 0), pid);
        assert_true(WIFEXITED(st));
        assert_int_equal(WEXITSTATUS(st), 0);
}

/* Between commands the events are read as they come (QEMU would keep them
 * for an unread monitor without limit); a partial line waits for the next
 * read; a reply afterwards still finds its command; garbage breaks it. */
#define DRAIN_EVENTS 3000
static void client_drains_events(void **state)
{
        (void)state;
        int sv[2];
        pid_t pid = fake_qemu(sv);
        if (pid == 0) {
                /* More than a socket buffer holds: only a reader lets this
                 * finish. */
                for (int i = 0; i < DRAIN_EVENTS; i++)
                        send_str(sv[1], "{\"event\": \"RTC_CHANGE\", \"data\": {\"offset\": 1}, "
                                        "\"timestamp\": {\"seconds\": 1, \"microseconds\": 2}}\n");
                send_str(sv[1], "{\"event\": \"BALLOON_");
                const char *id = recv_cmd(sv[1], "\"execute\":\"stop\"");
                if (!id)
                        _exit(2);
                send_str(sv[1], "CHANGE\", \"data\": {\"actual\": 1}}\n");
                reply(sv[1], id, "\"return\": {}");
                send_str(sv[1], "not json\n");
                char c;
                while (read(sv[1], &c, 1) > 0) /* until the client is gone */
                        ;
                _exit(0);
        }

        struct vmm_qmp *q = NULL;
        struct us_error *err = NULL;
        assert_int_equal(vmm_qmp_open(sv[0], WAIT_MS, &q, &err), 0);
        assert_int_equal(vmm_qmp_fd(q), sv[0]);
        while (vmm_qmp_events_seen(q) < DRAIN_EVENTS) {
                struct pollfd p = {.fd = vmm_qmp_fd(q), .events = POLLIN};
                assert_int_equal(poll(&p, 1, WAIT_MS), 1);
                assert_int_equal(vmm_qmp_drain(q, &err), 0);
        }
        assert_int_equal(vmm_qmp_events_seen(q), DRAIN_EVENTS);
        /* The partial event is completed by the bytes before the reply. */
        assert_int_equal(vmm_qmp_execute(q, "stop", NULL, NULL, &err), 0);
        assert_int_equal(vmm_qmp_events_seen(q), DRAIN_EVENTS + 1);
        /* The garbage may have come with the reply, or come later. */
        int r;
        while ((r = vmm_qmp_drain(q, &err)) == 0) {
                struct pollfd p = {.fd = vmm_qmp_fd(q), .events = POLLIN};
                assert_int_equal(poll(&p, 1, WAIT_MS), 1);
        }
        assert_int_equal(r, -EBADMSG);
        err = us_error_free(err);
        assert_int_equal(vmm_qmp_drain(q, &err), -ENOTCONN);
        err = us_error_free(err);
        assert_int_equal(vmm_qmp_execute(q, "cont", NULL, NULL, &err), -ENOTCONN);
        err = us_error_free(err);
        vmm_qmp_free(q);
        kill(pid, SIGKILL);
        int st;
        assert_int_equal(waitpid(pid, &st, 0), pid);
}

/* getfd's fd arrives with the command (SCM_RIGHTS); a command sent
 * without waiting gets its reply, and the events around it, through the
 * handler, whether they come while another command waits or between
 * commands. */
struct seen {
        int events, replies, errors;
        char status[32];
        char reply_id[VMM_QMP_ID_MAX];
        char error[128];
};

static void record(const struct vmm_qmp_msg *msg, void *userdata)
{
        struct seen *s = userdata;
        const char *path[] = {"data", "status", NULL};
        if (msg->kind == VMM_QMP_MSG_EVENT) {
                s->events++;
                yajl_val v = yajl_tree_get(msg->tree, path, yajl_t_string);
                snprintf(s->status, sizeof(s->status), "%s", v ? YAJL_GET_STRING(v) : "");
        } else if (msg->kind == VMM_QMP_MSG_ERROR) {
                s->errors++;
                snprintf(s->reply_id, sizeof(s->reply_id), "%s", msg->id ? msg->id : "");
                snprintf(s->error, sizeof(s->error), "%s", msg->error_desc);
        } else {
                s->replies++;
        }
}

static void client_fd_and_send(void **state)
{
        (void)state;
        int sv[2], p[2];
        assert_int_equal(pipe2(p, O_CLOEXEC), 0);
        assert_int_equal(write(p[1], "state", 5), 5);
        close(p[1]);
        pid_t pid = fake_qemu(sv);
        if (pid == 0) {
                /* The fd comes with the command's first byte. */
                char first;
                union {
                        char buf[CMSG_SPACE(sizeof(int))];
                        struct cmsghdr align;
                } control;
                struct iovec iov = {.iov_base = &first, .iov_len = 1};
                struct msghdr mh = {.msg_iov = &iov,
                                    .msg_iovlen = 1,
                                    .msg_control = control.buf,
                                    .msg_controllen = sizeof(control.buf)};
                if (recvmsg(sv[1], &mh, 0) != 1 || first != '{')
                        _exit(2);
                struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
                int fd = -1;
                if (!c || c->cmsg_type != SCM_RIGHTS)
                        _exit(3);
                memcpy(&fd, CMSG_DATA(c), sizeof(fd));
                char got[8] = "";
                if (read(fd, got, sizeof(got)) != 5 || memcmp(got, "state", 5) != 0)
                        _exit(4);
                const char *id = recv_cmd(sv[1], "\"fdname\":\"st\"");
                if (!id)
                        _exit(5);
                reply(sv[1], id, "\"return\": {}");
                /* The unwaited command: answered only later. */
                char late[VMM_QMP_ID_MAX];
                id = recv_cmd(sv[1], "migrate-incoming");
                if (!id)
                        _exit(6);
                snprintf(late, sizeof(late), "%s", id);
                id = recv_cmd(sv[1], "query-status");
                if (!id)
                        _exit(7);
                send_str(sv[1], "{\"event\": \"MIGRATION\", \"data\": {\"status\": \"active\"}}\n");
                reply(sv[1], late, "\"error\": {\"class\": \"GenericError\", \"desc\": \"bad\"}");
                reply(sv[1], id, "\"return\": {\"status\": \"inmigrate\"}");
                send_str(sv[1], "{\"event\": \"MIGRATION\", \"data\": {\"status\": \"failed\"}}\n");
                char ch;
                while (read(sv[1], &ch, 1) > 0)
                        ;
                _exit(0);
        }

        struct vmm_qmp *q = NULL;
        struct us_error *err = NULL;
        struct seen seen = {0};
        char id[VMM_QMP_ID_MAX];
        assert_int_equal(vmm_qmp_open(sv[0], WAIT_MS, &q, &err), 0);
        vmm_qmp_set_handler(q, record, &seen);
        assert_int_equal(vmm_qmp_execute_fd(q, "getfd", "{\"fdname\":\"st\"}", p[0], NULL, &err),
                         0);
        close(p[0]);
        assert_int_equal(vmm_qmp_execute_fd(q, "getfd", NULL, -1, NULL, &err), -EBADF);
        err = us_error_free(err);
        assert_int_equal(vmm_qmp_send(q, "migrate-incoming", "{\"uri\":\"fd:st\"}", id, &err), 0);
        /* Its reply comes while another command waits: to the handler. */
        assert_int_equal(vmm_qmp_execute(q, "query-status", NULL, NULL, &err), 0);
        assert_int_equal(seen.errors, 1);
        assert_string_equal(seen.reply_id, id);
        assert_string_equal(seen.error, "bad");
        /* The last event may have come with the reply: drain first. */
        for (;;) {
                assert_int_equal(vmm_qmp_drain(q, &err), 0);
                if (seen.events >= 2)
                        break;
                struct pollfd pf = {.fd = vmm_qmp_fd(q), .events = POLLIN};
                assert_int_equal(poll(&pf, 1, WAIT_MS), 1);
        }
        assert_string_equal(seen.status, "failed");
        assert_int_equal(seen.replies, 0);
        assert_int_equal(vmm_qmp_events_seen(q), 2);
        vmm_qmp_free(q);
        int st;
        assert_int_equal(waitpid(pid, &st, 0), pid);
        assert_true(WIFEXITED(st));
        assert_int_equal(WEXITSTATUS(st), 0);
}

static void client_bad_peers(void **state)
{
        (void)state;
        struct us_error *err = NULL;
        struct vmm_qmp *q = NULL;
        int sv[2];

        /* No greeting at all: timeout. */
        assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
        assert_int_equal(vmm_qmp_open(sv[0], 100, &q, &err), -ETIMEDOUT);
        assert_null(q);
        err = us_error_free(err);
        close(sv[1]);

        /* First line is not a greeting. */
        assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
        send_str(sv[1], "{\"return\": {}}\n");
        assert_int_equal(vmm_qmp_open(sv[0], WAIT_MS, &q, &err), -EPROTO);
        err = us_error_free(err);
        close(sv[1]);

        /* Garbage. */
        assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
        send_str(sv[1], "\x01\x02garbage\n");
        assert_int_equal(vmm_qmp_open(sv[0], WAIT_MS, &q, &err), -EBADMSG);
        err = us_error_free(err);
        close(sv[1]);

        /* A line that never ends and exceeds the limit. */
        assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
        int sz = 4 * VMM_QMP_MAX_LINE;
        setsockopt(sv[1], SOL_SOCKET, SO_SNDBUF, &sz, sizeof(sz));
        pid_t pid = fork();
        if (pid == 0) {
                char junk[4096];
                memset(junk, 'a', sizeof(junk));
                for (int i = 0; i < VMM_QMP_MAX_LINE / (int)sizeof(junk) + 2; i++)
                        if (write(sv[1], junk, sizeof(junk)) < 0)
                                break;
                _exit(0);
        }
        assert_int_equal(vmm_qmp_open(sv[0], WAIT_MS, &q, &err), -E2BIG);
        err = us_error_free(err);
        close(sv[1]);
        waitpid(pid, NULL, 0);

        /* EOF right away. */
        assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
        close(sv[1]);
        assert_int_equal(vmm_qmp_open(sv[0], WAIT_MS, &q, &err), -ECONNRESET);
        err = us_error_free(err);

        assert_int_equal(vmm_qmp_open(-1, 1000, &q, NULL), -EINVAL);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(parses_the_four_kinds), cmocka_unit_test(rejects_bad_input),
                cmocka_unit_test(rejects_embedded_nul),  cmocka_unit_test(rejects_deep_nesting),
                cmocka_unit_test(rejects_oversized),     cmocka_unit_test(client_happy_path),
                cmocka_unit_test(client_bad_peers),      cmocka_unit_test(client_drains_events),
                cmocka_unit_test(client_fd_and_send),
        };
        return unit_exit(unit_run_group_tests(tests, NULL, NULL));
}
