/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Calls a shim's Task API directly, as containerd does, for the integration
 * tests that need a sequence containerd's clients never send (a task
 * created and deleted without a start):
 *
 *   task-api SOCKET NAMESPACE create ID BUNDLE ROOTFS_DIR
 *   task-api SOCKET NAMESPACE start|delete|close-io|wait ID [EXEC_ID]
 *   task-api SOCKET NAMESPACE state|stats|connect ID
 *   task-api SOCKET NAMESPACE kill ID SIGNAL [EXEC_ID]
 *   task-api SOCKET NAMESPACE exec ID EXEC_ID STDIN STDOUT STDERR PROCESS_JSON
 *   task-api SOCKET NAMESPACE order-probe SLOW_ID FAST_ID
 *
 * order-probe sends Stats(SLOW_ID), Connect and Stats(FAST_ID) pipelined on
 * one connection and prints "<call> <status>" for each, in the order the
 * shim answered: a shim that waits for one pod's guest in the first call
 * without blocking its loop answers the other two first.
 *
 * SOCKET is the path in a bundle's address file (without unix://). create
 * passes ROOTFS_DIR as a read-only bind rootfs mount and no stdio. state
 * prints "<pid> <status> <exit status>", wait "<exit status>". exec adds a
 * process (an OCI process, JSON) with STDIN, STDOUT and STDERR as its FIFOs
 * ("" for none; no terminal), without starting it; close-io closes its
 * stdin (CloseIO with stdin set), in whatever order the caller chooses. Exit
 * 0 on success, 1 with the shim's error on stderr.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>

#include "base/cleanup.h"
#include "containerd/shim.pb-c.h"
#include "base/loop.h"
#include "ttrpc/ttrpc.h"

#define TASK_SERVICE "containerd.task.v2.Task"
#define CALL_MS      120000

static int call(struct us_ttrpc_client *c, const char *ns, const char *method,
                const ProtobufCMessage *req, uint8_t **ret, size_t *ret_len)
{
        const struct us_ttrpc_kv md[] = {{"containerd-namespace-ttrpc", ns}};
        struct us_error *err = NULL;
        int r = us_ttrpc_client_call(c, TASK_SERVICE, method, req, md, 1, CALL_MS, ret, ret_len,
                                     &err);
        if (r < 0)
                fprintf(stderr, "task-api: %s: %s\n", method, us_error_text(err));
        us_error_free(err);
        return r;
}

struct probe {
        struct us_loop *loop;
        int left;
};

struct probe_call {
        const char *label;
        struct probe *probe;
};

static void probe_reply(int status, const uint8_t *payload, size_t len, const struct us_error *err,
                        void *userdata)
{
        (void)payload;
        (void)len;
        struct probe_call *pc = userdata;
        printf("%s %d%s%s\n", pc->label, status, status < 0 ? " " : "",
               status < 0 ? us_error_text(err) : "");
        fflush(stdout);
        if (--pc->probe->left == 0)
                us_loop_quit(pc->probe->loop, 0);
}

static int order_probe(const char *path, const char *ns, const char *slow, const char *fast)
{
        struct us_error *err = NULL;
        struct probe probe = {.left = 3};
        struct us_ttrpc_aclient *c = NULL;
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
                fprintf(stderr, "task-api: connect %s: %m\n", path);
                return 1;
        }
        if (us_loop_new(&probe.loop, &err) < 0 ||
            us_ttrpc_aclient_new(probe.loop, fd, &c, &err) < 0) {
                fprintf(stderr, "task-api: %s\n", us_error_text(err));
                return 1;
        }
        const struct us_ttrpc_kv md[] = {{"containerd-namespace-ttrpc", ns}};
        Containerd__Task__V2__StatsRequest slow_req = CONTAINERD__TASK__V2__STATS_REQUEST__INIT;
        slow_req.id = (char *)slow;
        Containerd__Task__V2__ConnectRequest conn_req = CONTAINERD__TASK__V2__CONNECT_REQUEST__INIT;
        conn_req.id = (char *)fast;
        Containerd__Task__V2__StatsRequest fast_req = CONTAINERD__TASK__V2__STATS_REQUEST__INIT;
        fast_req.id = (char *)fast;
        struct probe_call calls[] = {
                {"stats-slow", &probe}, {"connect", &probe}, {"stats-fast", &probe}};
        const ProtobufCMessage *reqs[] = {&slow_req.base, &conn_req.base, &fast_req.base};
        const char *methods[] = {"Stats", "Connect", "Stats"};
        for (size_t i = 0; i < 3; i++) {
                if (us_ttrpc_aclient_call(c, TASK_SERVICE, methods[i], reqs[i], md, 1, 0,
                                          probe_reply, &calls[i], NULL, &err) < 0) {
                        fprintf(stderr, "task-api: %s\n", us_error_text(err));
                        return 1;
                }
        }
        (void)us_loop_run(probe.loop);
        us_ttrpc_aclient_free(c);
        us_loop_free(probe.loop);
        return 0;
}

int main(int argc, char **argv)
{
        if (argc == 6 && strcmp(argv[3], "order-probe") == 0)
                return order_probe(argv[1], argv[2], argv[4], argv[5]);
        if (argc < 5) {
                fprintf(stderr,
                        "usage: %s SOCKET NAMESPACE create ID BUNDLE ROOTFS_DIR\n"
                        "       %s SOCKET NAMESPACE start|delete|close-io|wait ID [EXEC_ID]\n"
                        "       %s SOCKET NAMESPACE state|stats|connect ID\n"
                        "       %s SOCKET NAMESPACE kill ID SIGNAL [EXEC_ID]\n"
                        "       %s SOCKET NAMESPACE exec ID EXEC_ID STDIN STDOUT STDERR "
                        "PROCESS_JSON\n",
                        argv[0], argv[0], argv[0], argv[0], argv[0]);
                return 2;
        }
        const char *ns = argv[2], *op = argv[3], *id = argv[4];
        struct us_ttrpc_client *c = NULL;
        struct us_error *err = NULL;
        if (us_ttrpc_client_connect(argv[1], &c, &err) < 0) {
                fprintf(stderr, "task-api: connect %s: %s\n", argv[1], us_error_text(err));
                us_error_free(err);
                return 1;
        }
        _cleanup_free_ uint8_t *resp = NULL;
        size_t len = 0;
        int r = -EINVAL;
        if (strcmp(op, "create") == 0 && argc == 7) {
                Containerd__Types__Mount m = CONTAINERD__TYPES__MOUNT__INIT;
                char *opts[] = {"rbind", "ro"};
                m.type = "bind";
                m.source = argv[6];
                m.n_options = 2;
                m.options = opts;
                Containerd__Types__Mount *mounts[] = {&m};
                Containerd__Task__V2__CreateTaskRequest req =
                        CONTAINERD__TASK__V2__CREATE_TASK_REQUEST__INIT;
                req.id = (char *)id;
                req.bundle = argv[5];
                req.n_rootfs = 1;
                req.rootfs = mounts;
                r = call(c, ns, "Create", &req.base, &resp, &len);
        } else if ((strcmp(op, "start") == 0 || strcmp(op, "delete") == 0) &&
                   (argc == 5 || argc == 6)) {
                Containerd__Task__V2__DeleteRequest req =
                        CONTAINERD__TASK__V2__DELETE_REQUEST__INIT;
                req.id = (char *)id;
                if (argc == 6)
                        req.exec_id = argv[5];
                /* StartRequest and DeleteRequest are both {id, exec_id}. */
                r = call(c, ns, strcmp(op, "start") == 0 ? "Start" : "Delete", &req.base, &resp,
                         &len);
        } else if (strcmp(op, "close-io") == 0 && (argc == 5 || argc == 6)) {
                Containerd__Task__V2__CloseIORequest req =
                        CONTAINERD__TASK__V2__CLOSE_IOREQUEST__INIT;
                req.id = (char *)id;
                if (argc == 6)
                        req.exec_id = argv[5];
                req.stdin = 1;
                r = call(c, ns, "CloseIO", &req.base, &resp, &len);
        } else if (strcmp(op, "wait") == 0 && (argc == 5 || argc == 6)) {
                Containerd__Task__V2__WaitRequest req = CONTAINERD__TASK__V2__WAIT_REQUEST__INIT;
                req.id = (char *)id;
                if (argc == 6)
                        req.exec_id = argv[5];
                r = call(c, ns, "Wait", &req.base, &resp, &len);
                if (r >= 0) {
                        Containerd__Task__V2__WaitResponse *w =
                                containerd__task__v2__wait_response__unpack(NULL, len, resp);
                        if (!w) {
                                fprintf(stderr, "task-api: Wait: malformed reply\n");
                                r = -EBADMSG;
                        } else {
                                printf("%u\n", w->exit_status);
                                containerd__task__v2__wait_response__free_unpacked(w, NULL);
                        }
                }
        } else if (strcmp(op, "exec") == 0 && argc == 10) {
                Google__Protobuf__Any spec = GOOGLE__PROTOBUF__ANY__INIT;
                spec.type_url = "types.containerd.io/opencontainers/runtime-spec/1/Process";
                spec.value.data = (uint8_t *)argv[9];
                spec.value.len = strlen(argv[9]);
                Containerd__Task__V2__ExecProcessRequest req =
                        CONTAINERD__TASK__V2__EXEC_PROCESS_REQUEST__INIT;
                req.id = (char *)id;
                req.exec_id = argv[5];
                req.stdin = argv[6];
                req.stdout = argv[7];
                req.stderr = argv[8];
                req.spec = &spec;
                r = call(c, ns, "Exec", &req.base, &resp, &len);
        } else if (strcmp(op, "kill") == 0 && (argc == 6 || argc == 7)) {
                Containerd__Task__V2__KillRequest req = CONTAINERD__TASK__V2__KILL_REQUEST__INIT;
                req.id = (char *)id;
                req.signal = (uint32_t)atoi(argv[5]);
                if (argc == 7)
                        req.exec_id = argv[6];
                r = call(c, ns, "Kill", &req.base, &resp, &len);
        } else if (strcmp(op, "stats") == 0 && argc == 5) {
                Containerd__Task__V2__StatsRequest req = CONTAINERD__TASK__V2__STATS_REQUEST__INIT;
                req.id = (char *)id;
                r = call(c, ns, "Stats", &req.base, &resp, &len);
                if (r >= 0)
                        printf("%zu bytes\n", len);
        } else if (strcmp(op, "connect") == 0 && argc == 5) {
                Containerd__Task__V2__ConnectRequest req =
                        CONTAINERD__TASK__V2__CONNECT_REQUEST__INIT;
                req.id = (char *)id;
                r = call(c, ns, "Connect", &req.base, &resp, &len);
        } else if (strcmp(op, "state") == 0 && argc == 5) {
                Containerd__Task__V2__StateRequest req = CONTAINERD__TASK__V2__STATE_REQUEST__INIT;
                req.id = (char *)id;
                r = call(c, ns, "State", &req.base, &resp, &len);
                if (r >= 0) {
                        Containerd__Task__V2__StateResponse *s =
                                containerd__task__v2__state_response__unpack(NULL, len, resp);
                        if (!s) {
                                fprintf(stderr, "task-api: State: malformed reply\n");
                                r = -EBADMSG;
                        } else {
                                printf("%u %d %u\n", s->pid, (int)s->status, s->exit_status);
                                containerd__task__v2__state_response__free_unpacked(s, NULL);
                        }
                }
        } else {
                fprintf(stderr, "task-api: bad arguments for %s\n", op);
                us_ttrpc_client_free(c);
                return 2;
        }
        us_ttrpc_client_free(c);
        return r < 0 ? 1 : 0;
}
