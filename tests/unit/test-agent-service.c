/* SPDX-License-Identifier: Apache-2.0 */
/*
 * guest-agent/agent-service.c's handlers, reached the way the host reaches
 * them: ttrpc calls over a socketpair to the agent's server, both on the
 * test's loop. The host is hostile to the guest's agent too (a compromised
 * shim, a confused one): ids with '/' or "..", paths out of the agent's run
 * dir, namespaces to join, oversized fields, bytes that are no message,
 * containers and processes that do not exist. Each is refused with its
 * gRPC code before anything is made; no request here is one the agent
 * would act on (they would mount, configure the network or run a
 * container on the test's host), but for signal_to_reaped_init, which runs
 * its container in a pid and mount namespace of its own.
 */
#include <dirent.h>
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sched.h>
#include <signal.h>
#include <stdbool.h>
#include <sys/epoll.h>
#include <sys/mount.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <fcntl.h>
#include <unistd.h>

#include "unit.h"

#include "guest-agent/agent.h"
#include "base/fs-util.h"
#include "base/loop.h"
#include "ttrpc/ttrpc.h"

#define RUN_MS     unit_wait_ms(10000)
#define ALARM_SECS (unit_wait_ms(60000) / 1000)

struct fx {
        struct us_loop *loop;
        struct agent *agent;
        struct us_ttrpc_aclient *c;
        /* the last call's outcome */
        int n;
        int status;
        char msg[1024];
        uint8_t *payload;
        size_t len;
};

static struct fx *fx_new(void)
{
        alarm(ALARM_SECS);
        struct fx *f = calloc(1, sizeof(*f));
        assert_non_null(f);
        assert_int_equal(us_loop_new(&f->loop, NULL), 0);
        int sv[2];
        assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
        /* A cgroup root of its own: nothing here may touch the host's. */
        const struct agent_options opts = {.cgroup_root = "/nonexistent-unishim-test"};
        assert_int_equal(agent_new(f->loop, &opts, &f->agent, NULL), 0);
        assert_int_equal(agent_serve_fd(f->agent, sv[1], NULL), 0);
        assert_int_equal(us_ttrpc_aclient_new(f->loop, sv[0], &f->c, NULL), 0);
        return f;
}

static void fx_free(struct fx *f)
{
        f->c = us_ttrpc_aclient_free(f->c);
        f->agent = agent_free(f->agent);
        f->loop = us_loop_free(f->loop);
        free(f->payload);
        free(f);
        alarm(0);
}

static void on_reply(int status, const uint8_t *payload, size_t len, const struct us_error *err,
                     void *ud)
{
        struct fx *f = ud;
        f->n++;
        f->status = status;
        snprintf(f->msg, sizeof(f->msg), "%s", status < 0 ? us_error_text(err) : "");
        free(f->payload);
        f->payload = len ? malloc(len) : NULL;
        if (len)
                memcpy(f->payload, payload, len);
        f->len = len;
        us_loop_quit(f->loop, 0);
}

/* The hang guard: the reply quits the loop before it. */
static void guard(struct us_loop_source *src, void *ud)
{
        (void)src;
        struct fx *f = ud;
        us_loop_quit(f->loop, -ETIMEDOUT);
}

/* Sends method with msg (or the raw bytes of raw/raw_len, when msg is
 * NULL) and returns the outcome's status once it arrived. */
static int call_raw(struct fx *f, const char *method, const ProtobufCMessage *msg,
                    const uint8_t *raw, size_t raw_len)
{
        ProtobufCMessageUnknownField u = {.tag = 15,
                                          .wire_type = PROTOBUF_C_WIRE_TYPE_LENGTH_PREFIXED,
                                          .len = raw_len,
                                          .data = (uint8_t *)raw};
        Unishim__Agent__V1__Empty carrier = UNISHIM__AGENT__V1__EMPTY__INIT;
        if (!msg && raw) {
                /* Bytes as they are: a field header the packer writes, then
                 * raw_len bytes the agent must make sense of. */
                carrier.base.n_unknown_fields = 1;
                carrier.base.unknown_fields = &u;
                msg = &carrier.base;
        }
        f->n = 0;
        struct us_error *err = NULL;
        if (us_ttrpc_aclient_call(f->c, AGENT_SERVICE, method, msg, NULL, 0, 0, on_reply, f, NULL,
                                  &err) < 0)
                fail_msg("call %s: %s", method, us_error_text(err));
        struct us_loop_source *g = NULL;
        assert_int_equal(us_loop_add_timer(f->loop, (uint64_t)RUN_MS, guard, f, &g, NULL), 0);
        assert_int_equal(us_loop_run(f->loop), 0);
        us_loop_source_remove(g);
        assert_int_equal(f->n, 1);
        return f->status;
}

static int call(struct fx *f, const char *method, const ProtobufCMessage *msg)
{
        return call_raw(f, method, msg, NULL, 0);
}

/* The call was refused with want, its message naming what. */
#define assert_refused(f, r, want, what)                                                           \
        do {                                                                                       \
                int r_ = (r);                                                                      \
                if (r_ != (want) || !strstr((f)->msg, (what)))                                     \
                        fail_msg("got %d \"%s\", want %d naming \"%s\"", r_, (f)->msg, (want),     \
                                 (what));                                                          \
        } while (0)

static void answers_check(void **state)
{
        (void)state;
        struct fx *f = fx_new();
        Unishim__Agent__V1__CheckRequest req = UNISHIM__AGENT__V1__CHECK_REQUEST__INIT;
        assert_int_equal(call(f, "Check", &req.base), 0);
        Unishim__Agent__V1__CheckResponse *resp =
                unishim__agent__v1__check_response__unpack(NULL, f->len, f->payload);
        assert_non_null(resp);
        assert_true(strlen(resp->version) > 0);
        unishim__agent__v1__check_response__free_unpacked(resp, NULL);
        assert_refused(f, call(f, "Bogus", &req.base), -ENOSYS, "Bogus");
        fx_free(f);
}

static char long_id[AGENT_MAX_ID + 2];

static const char *const bad_ids[] = {"../etc", "a/b",   "/abs", "..",  ".",
                                      "",       long_id, "-x",   "a\nb"};

/* Every id a request names passes the id rule before any lookup. */
static void hostile_ids(void **state)
{
        (void)state;
        memset(long_id, 'a', sizeof(long_id) - 1);
        struct fx *f = fx_new();
        for (size_t i = 0; i < sizeof(bad_ids) / sizeof(bad_ids[0]); i++) {
                char *id = (char *)bad_ids[i];
                Unishim__Agent__V1__ContainerRequest cr =
                        UNISHIM__AGENT__V1__CONTAINER_REQUEST__INIT;
                cr.container_id = id;
                static const char *const container_methods[] = {"StartContainer", "RemoveContainer",
                                                                "PauseContainer", "ResumeContainer",
                                                                "StatsContainer", "ListPids"};
                for (size_t m = 0; m < sizeof(container_methods) / sizeof(*container_methods); m++)
                        assert_refused(f, call(f, container_methods[m], &cr.base), -EINVAL,
                                       "container id");
                Unishim__Agent__V1__CreateContainerRequest cc =
                        UNISHIM__AGENT__V1__CREATE_CONTAINER_REQUEST__INIT;
                cc.container_id = id;
                cc.spec_json.data = (uint8_t *)"{}";
                cc.spec_json.len = 2;
                assert_refused(f, call(f, "CreateContainer", &cc.base), -EINVAL, "container id");
                /* The exec id too, with a container id that is fine. */
                Unishim__Agent__V1__ProcessRequest pr = UNISHIM__AGENT__V1__PROCESS_REQUEST__INIT;
                pr.container_id = "c1";
                pr.exec_id = id;
                if (*id) { /* an empty exec id is the container's init */
                        assert_refused(f, call(f, "WaitProcess", &pr.base), -EINVAL, "exec id");
                        assert_refused(f, call(f, "CloseStdin", &pr.base), -EINVAL, "exec id");
                        Unishim__Agent__V1__ExecProcessRequest ex =
                                UNISHIM__AGENT__V1__EXEC_PROCESS_REQUEST__INIT;
                        ex.container_id = "c1";
                        ex.exec_id = id;
                        ex.process_json.data = (uint8_t *)"{}";
                        ex.process_json.len = 2;
                        assert_refused(f, call(f, "ExecProcess", &ex.base), -EINVAL, "exec id");
                        Unishim__Agent__V1__SignalProcessRequest sp =
                                UNISHIM__AGENT__V1__SIGNAL_PROCESS_REQUEST__INIT;
                        sp.container_id = "c1";
                        sp.exec_id = id;
                        sp.signal = 9;
                        assert_refused(f, call(f, "SignalProcess", &sp.base), -EINVAL, "exec id");
                }
        }
        fx_free(f);
}

/* Well-formed calls about containers and processes the agent does not
 * run: NOT_FOUND, nothing made. */
static void unknown_containers(void **state)
{
        (void)state;
        struct fx *f = fx_new();
        Unishim__Agent__V1__ContainerRequest cr = UNISHIM__AGENT__V1__CONTAINER_REQUEST__INIT;
        cr.container_id = "nope";
        static const char *const container_methods[] = {"StartContainer", "RemoveContainer",
                                                        "PauseContainer", "ResumeContainer",
                                                        "StatsContainer", "ListPids"};
        for (size_t m = 0; m < sizeof(container_methods) / sizeof(*container_methods); m++)
                assert_refused(f, call(f, container_methods[m], &cr.base), -ENOENT,
                               "container nope not found");
        Unishim__Agent__V1__ProcessRequest pr = UNISHIM__AGENT__V1__PROCESS_REQUEST__INIT;
        pr.container_id = "nope";
        pr.exec_id = "";
        assert_refused(f, call(f, "WaitProcess", &pr.base), -ENOENT, "not found");
        assert_refused(f, call(f, "CloseStdin", &pr.base), -ENOENT, "not found");
        Unishim__Agent__V1__ReadStreamRequest rs = UNISHIM__AGENT__V1__READ_STREAM_REQUEST__INIT;
        rs.container_id = "nope";
        rs.exec_id = "e1";
        rs.stream = UNISHIM__AGENT__V1__STREAM__STREAM_STDOUT;
        rs.max_len = 16;
        assert_refused(f, call(f, "ReadStream", &rs.base), -ENOENT, "not found");
        Unishim__Agent__V1__WriteStdinRequest ws = UNISHIM__AGENT__V1__WRITE_STDIN_REQUEST__INIT;
        ws.container_id = "nope";
        ws.data.data = (uint8_t *)"x";
        ws.data.len = 1;
        assert_refused(f, call(f, "WriteStdin", &ws.base), -ENOENT, "not found");
        Unishim__Agent__V1__SignalProcessRequest sp =
                UNISHIM__AGENT__V1__SIGNAL_PROCESS_REQUEST__INIT;
        sp.container_id = "nope";
        sp.signal = 9;
        sp.all = true;
        assert_refused(f, call(f, "SignalProcess", &sp.base), -ENOENT, "not found");
        Unishim__Agent__V1__ExecProcessRequest ex = UNISHIM__AGENT__V1__EXEC_PROCESS_REQUEST__INIT;
        ex.container_id = "nope";
        ex.exec_id = "e1";
        ex.process_json.data = (uint8_t *)"{\"args\": [\"sh\"], \"cwd\": \"/\"}";
        ex.process_json.len = strlen((char *)ex.process_json.data);
        assert_refused(f, call(f, "ExecProcess", &ex.base), -ENOENT, "not found");
        Unishim__Agent__V1__ResizePtyRequest rp = UNISHIM__AGENT__V1__RESIZE_PTY_REQUEST__INIT;
        rp.container_id = "nope";
        rp.width = 80;
        rp.height = 24;
        assert_refused(f, call(f, "ResizePty", &rp.base), -ENOENT, "not found");
        Unishim__Agent__V1__UpdateContainerRequest uc =
                UNISHIM__AGENT__V1__UPDATE_CONTAINER_REQUEST__INIT;
        uc.container_id = "nope";
        uc.resources_json.data = (uint8_t *)"{}";
        uc.resources_json.len = 2;
        assert_refused(f, call(f, "UpdateContainer", &uc.base), -ENOENT, "not found");
        fx_free(f);
}

/* CreateContainer with a spec the agent must not run: its rootfs outside
 * the run dir, a namespace of someone else's to join, no process, no
 * JSON. Refused before the bundle is made. */
static void hostile_specs(void **state)
{
        (void)state;
        struct fx *f = fx_new();
        static const struct {
                const char *root;
                const char *extra;
                int want;
                const char *what;
        } cases[] = {
                {"/run/unishim/../../etc", "", -EINVAL, "root.path"},
                {"/run/unishim/shared/../../../etc", "", -EINVAL, "root.path"},
                {"/etc", "", -EINVAL, "root.path"},
                {"/run/unishim", "", -EINVAL, "root.path"},
                {"run/unishim/shared/c1/rootfs", "", -EINVAL, "root.path"},
                {"/run/unishim/shared/c1/rootfs",
                 ", \"linux\": {\"namespaces\": [{\"type\": \"network\", \"path\":"
                 " \"/proc/1/ns/net\"}]}",
                 -EINVAL, "/proc/1/ns/net"},
                {"/run/unishim/shared/c1/rootfs",
                 ", \"linux\": {\"namespaces\": [{\"type\": \"pid\", \"path\":"
                 " \"/proc/1/ns/pid\"}]}",
                 -EINVAL, "/proc/1/ns/pid"},
        };
        for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
                char json[1024];
                snprintf(json, sizeof(json),
                         "{\"ociVersion\": \"1.0.2\", \"process\": {\"args\": [\"sh\"],"
                         " \"cwd\": \"/\"}, \"root\": {\"path\": \"%s\"}%s}",
                         cases[i].root, cases[i].extra);
                Unishim__Agent__V1__CreateContainerRequest cc =
                        UNISHIM__AGENT__V1__CREATE_CONTAINER_REQUEST__INIT;
                cc.container_id = "c1";
                cc.spec_json.data = (uint8_t *)json;
                cc.spec_json.len = strlen(json);
                assert_refused(f, call(f, "CreateContainer", &cc.base), cases[i].want,
                               cases[i].what);
        }
        static const char *const bad_json[] = {
                "{\"ociVersion\": \"1.0.2\", \"root\": {\"path\": \"/run/unishim/shared/c\"}}",
                "{\"ociVersion\": \"1.0.2\", \"process\": {\"args\": [\"sh\"], \"cwd\": \"/\"}}",
                "not json",
                "{\"ociVersion\": \"1.0.2\", \"process\": {\"args\": [\"sh\"], \"cwd\": \"/\"},",
        };
        for (size_t i = 0; i < sizeof(bad_json) / sizeof(bad_json[0]); i++) {
                Unishim__Agent__V1__CreateContainerRequest cc =
                        UNISHIM__AGENT__V1__CREATE_CONTAINER_REQUEST__INIT;
                cc.container_id = "c1";
                cc.spec_json.data = (uint8_t *)bad_json[i];
                cc.spec_json.len = strlen(bad_json[i]);
                assert_refused(f, call(f, "CreateContainer", &cc.base), -EINVAL, "");
        }
        /* A spec nested deeper than any config.json (a parser's stack). */
        size_t deep = 100000;
        char *nested = malloc(2 * deep);
        assert_non_null(nested);
        memset(nested, '[', deep);
        memset(nested + deep, ']', deep);
        Unishim__Agent__V1__CreateContainerRequest cc =
                UNISHIM__AGENT__V1__CREATE_CONTAINER_REQUEST__INIT;
        cc.container_id = "c1";
        cc.spec_json.data = (uint8_t *)nested;
        cc.spec_json.len = 2 * deep;
        assert_refused(f, call(f, "CreateContainer", &cc.base), -EINVAL, "");
        free(nested);
        /* Nothing was made: the container is unknown. */
        Unishim__Agent__V1__ContainerRequest cr = UNISHIM__AGENT__V1__CONTAINER_REQUEST__INIT;
        cr.container_id = "c1";
        assert_refused(f, call(f, "StartContainer", &cr.base), -ENOENT, "not found");
        fx_free(f);
}

/* Storages and the network: what would mount or configure anything out
 * of bounds is refused before it does. */
static void hostile_storage_and_network(void **state)
{
        (void)state;
        struct fx *f = fx_new();
        static const struct {
                const char *source, *fstype, *mount_point;
        } bad[] = {
                {"unishim", "virtiofs", "/run/unishim/../../etc"},
                {"unishim", "virtiofs", "/etc"},
                {"unishim", "virtiofs", "/run/unishim/a/"},
                {"unishim", "virtiofs", "/run/unishim//a"},
                {"../dev/sda", "virtiofs", "/run/unishim/shared"},
                {"unishim", "ext4", "/run/unishim/shared"},
                {"unishim", "bind", "/run/unishim/shared"},
        };
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
                Unishim__Agent__V1__Storage st = UNISHIM__AGENT__V1__STORAGE__INIT;
                st.source = (char *)bad[i].source;
                st.fstype = (char *)bad[i].fstype;
                st.mount_point = (char *)bad[i].mount_point;
                Unishim__Agent__V1__Storage *sts[] = {&st};
                Unishim__Agent__V1__AddStorageRequest req =
                        UNISHIM__AGENT__V1__ADD_STORAGE_REQUEST__INIT;
                req.n_storages = 1;
                req.storages = sts;
                if (call(f, "AddStorage", &req.base) != -EINVAL)
                        fail_msg("storage %zu: %d %s", i, f->status, f->msg);
        }
        /* More storages than a pod has. */
        Unishim__Agent__V1__Storage st = UNISHIM__AGENT__V1__STORAGE__INIT;
        st.source = (char *)"unishim";
        st.fstype = (char *)"virtiofs";
        st.mount_point = (char *)"/run/unishim/../x";
        Unishim__Agent__V1__Storage *many[AGENT_MAX_STORAGES + 1];
        for (size_t i = 0; i < AGENT_MAX_STORAGES + 1; i++)
                many[i] = &st;
        Unishim__Agent__V1__AddStorageRequest req = UNISHIM__AGENT__V1__ADD_STORAGE_REQUEST__INIT;
        req.n_storages = AGENT_MAX_STORAGES + 1;
        req.storages = many;
        assert_refused(f, call(f, "AddStorage", &req.base), -EINVAL, "storages");

        Unishim__Agent__V1__UpdateNetworkRequest net =
                UNISHIM__AGENT__V1__UPDATE_NETWORK_REQUEST__INIT;
        net.hostname = "a/b";
        assert_refused(f, call(f, "UpdateNetwork", &net.base), -EINVAL, "");
        net.hostname = "pod";
        Unishim__Agent__V1__UpdateNetworkRequest__SysctlsEntry sy =
                UNISHIM__AGENT__V1__UPDATE_NETWORK_REQUEST__SYSCTLS_ENTRY__INIT;
        Unishim__Agent__V1__UpdateNetworkRequest__SysctlsEntry *syp[] = {&sy};
        net.n_sysctls = 1;
        net.sysctls = syp;
        static const char *const bad_sysctls[] = {"kernel.panic", "net/../../kernel/panic",
                                                  "net..ipv4", "net.ipv4/../../../kernel/x"};
        for (size_t i = 0; i < sizeof(bad_sysctls) / sizeof(bad_sysctls[0]); i++) {
                sy.key = (char *)bad_sysctls[i];
                sy.value = "1";
                if (call(f, "UpdateNetwork", &net.base) != -EINVAL)
                        fail_msg("sysctl %s: %d %s", bad_sysctls[i], f->status, f->msg);
        }
        Unishim__Agent__V1__Interface itf = UNISHIM__AGENT__V1__INTERFACE__INIT;
        Unishim__Agent__V1__Interface *itfp[] = {&itf};
        itf.name = "../eth0";
        itf.mac = "02:00:00:00:00:01";
        net.n_sysctls = 0;
        net.n_interfaces = 1;
        net.interfaces = itfp;
        assert_refused(f, call(f, "UpdateNetwork", &net.base), -EINVAL, "");
        fx_free(f);
}

/* Bytes that are no request, and a stdin write over the limit. */
static void garbage_and_oversized(void **state)
{
        (void)state;
        struct fx *f = fx_new();
        static const uint8_t junk[] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
        static const char *const methods[] = {
                "CreateContainer", "StartContainer", "ExecProcess", "SignalProcess",
                "WaitProcess",     "ReadStream",     "WriteStdin",  "AddStorage",
                "UpdateNetwork",   "ResizePty",      "CloseStdin",  "UpdateContainer"};
        for (size_t i = 0; i < sizeof(methods) / sizeof(methods[0]); i++) {
                /* A length-prefixed field whose length runs past the end. */
                assert_int_equal(call_raw(f, methods[i], NULL, junk, sizeof(junk)), -EINVAL);
        }
        size_t big = AGENT_STDIN_MAX + 1;
        uint8_t *data = calloc(1, big);
        assert_non_null(data);
        Unishim__Agent__V1__WriteStdinRequest ws = UNISHIM__AGENT__V1__WRITE_STDIN_REQUEST__INIT;
        ws.container_id = "c1";
        ws.data.data = data;
        ws.data.len = big;
        assert_refused(f, call(f, "WriteStdin", &ws.base), -EINVAL, "");
        free(data);
        /* The agent still serves. */
        Unishim__Agent__V1__CheckRequest req = UNISHIM__AGENT__V1__CHECK_REQUEST__INIT;
        assert_int_equal(call(f, "Check", &req.base), 0);
        fx_free(f);
}

/* ---- a signal for a reaped init ---- */

#define REUSE_CTR    "c1"
#define REUSE_ROOTFS AGENT_RUN_DIR "/shared/" REUSE_CTR "/rootfs"

static void on_sigchld(struct us_loop_source *src, int fd, uint32_t events, void *ud)
{
        (void)src;
        (void)events;
        struct signalfd_siginfo si;
        while (read(fd, &si, sizeof(si)) == (ssize_t)sizeof(si))
                ;
        agent_reap(ud);
}

/* call() without cmocka's asserts (it runs in a forked child): the
 * outcome's status, or 1 when the call could not be made or hung. */
static int child_call(struct fx *f, const char *method, const ProtobufCMessage *msg)
{
        f->n = 0;
        struct us_loop_source *g = NULL;
        if (us_ttrpc_aclient_call(f->c, AGENT_SERVICE, method, msg, NULL, 0, 0, on_reply, f, NULL,
                                  NULL) < 0 ||
            us_loop_add_timer(f->loop, (uint64_t)RUN_MS, guard, f, &g, NULL) < 0)
                return 1;
        int r = us_loop_run(f->loop);
        us_loop_source_remove(g);
        if (r < 0 || f->n != 1) {
                fprintf(stderr, "%s: no answer\n", method);
                return 1;
        }
        if (f->status < 0)
                fprintf(stderr, "%s: %d %s\n", method, f->status, f->msg);
        return f->status;
}

static int copy_busybox(void)
{
        int in = open("/bin/busybox", O_RDONLY | O_CLOEXEC);
        int out = open(REUSE_ROOTFS "/bin/busybox", O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0755);
        char buf[65536];
        ssize_t n = 0;
        while (in >= 0 && out >= 0 && (n = read(in, buf, sizeof(buf))) > 0)
                if (write(out, buf, (size_t)n) != n)
                        n = -1;
        close(in);
        close(out);
        return in >= 0 && out >= 0 && n == 0 ? 0 : -1;
}

/* Whether SIGTERM is pending for pid (queued to it or to its process). */
static bool term_pending(pid_t pid)
{
        char path[64], line[256];
        unsigned long long mask = 0, m;
        snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
        FILE *fp = fopen(path, "re");
        while (fp && fgets(line, sizeof(line), fp))
                if (sscanf(line, "SigPnd: %llx", &m) == 1 || sscanf(line, "ShdPnd: %llx", &m) == 1)
                        mask |= m;
        if (fp)
                fclose(fp);
        return mask & (1ULL << (SIGTERM - 1));
}

/* PID 1 of a pid and mount namespace of the test's own: runs a container
 * whose init exits, lets a new process take the reaped pid, and signals
 * the init. The number of the step that failed, 0 if none. */
static int reused_pid_child(const char *cgroup)
{
        if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0 ||
            mount("proc", "/proc", "proc", 0, NULL) < 0 ||
            mount("tmpfs", "/run", "tmpfs", 0, "mode=755") < 0)
                return 2;
        if (us_mkdir_p(AGENT_BUNDLE_DIR, 0755, NULL) < 0 ||
            us_mkdir_p(REUSE_ROOTFS "/bin", 0755, NULL) < 0 || copy_busybox() < 0)
                return 3;
        sigset_t mask;
        sigemptyset(&mask);
        sigaddset(&mask, SIGCHLD);
        int sfd = -1;
        if (sigprocmask(SIG_BLOCK, &mask, NULL) < 0 ||
            (sfd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK)) < 0)
                return 4;

        struct fx *f = calloc(1, sizeof(*f));
        int sv[2];
        const struct agent_options opts = {0};
        if (!f || us_loop_new(&f->loop, NULL) < 0 ||
            socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0 ||
            agent_new(f->loop, &opts, &f->agent, NULL) < 0 ||
            agent_serve_fd(f->agent, sv[1], NULL) < 0 ||
            us_ttrpc_aclient_new(f->loop, sv[0], &f->c, NULL) < 0 ||
            us_loop_add_fd(f->loop, sfd, EPOLLIN, on_sigchld, f->agent, NULL, NULL) < 0)
                return 5;

        char spec[512];
        snprintf(spec, sizeof(spec),
                 "{\"ociVersion\": \"1.0.2\", \"process\": {\"args\": [\"/bin/busybox\", \"true\"],"
                 " \"cwd\": \"/\"}, \"root\": {\"path\": \"" REUSE_ROOTFS "\"},"
                 " \"linux\": {\"cgroupsPath\": \"%s\", \"namespaces\": [{\"type\": \"mount\"}]}}",
                 cgroup);
        Unishim__Agent__V1__CreateContainerRequest cc =
                UNISHIM__AGENT__V1__CREATE_CONTAINER_REQUEST__INIT;
        cc.container_id = REUSE_CTR;
        cc.spec_json.data = (uint8_t *)spec;
        cc.spec_json.len = strlen(spec);
        if (child_call(f, "CreateContainer", &cc.base) != 0)
                return 6;
        Unishim__Agent__V1__ContainerRequest cr = UNISHIM__AGENT__V1__CONTAINER_REQUEST__INIT;
        cr.container_id = REUSE_CTR;
        if (child_call(f, "StartContainer", &cr.base) != 0)
                return 7;
        Unishim__Agent__V1__ProcessRequest wp = UNISHIM__AGENT__V1__PROCESS_REQUEST__INIT;
        wp.container_id = REUSE_CTR;
        if (child_call(f, "WaitProcess", &wp.base) != 0)
                return 8;
        Unishim__Agent__V1__WaitProcessResponse *wr =
                unishim__agent__v1__wait_process_response__unpack(NULL, f->len, f->payload);
        if (!wr || wr->exit_status != 0)
                return 9;
        unishim__agent__v1__wait_process_response__free_unpacked(wr, NULL);

        /* The init (this namespace's only other process so far) is reaped:
         * the next fork takes its pid. */
        int init_pid = 0;
        FILE *lp = fopen("/proc/sys/kernel/ns_last_pid", "r+");
        if (!lp || fscanf(lp, "%d", &init_pid) != 1 || init_pid < 2 || fseek(lp, 0, SEEK_SET) < 0 ||
            fprintf(lp, "%d", init_pid - 1) < 0 || fclose(lp) != 0)
                return 10;
        /* It holds SIGTERM blocked from its first instruction: a signal
         * sent to it stays pending where the test can see it. */
        sigset_t term, old;
        sigemptyset(&term);
        sigaddset(&term, SIGTERM);
        (void)sigprocmask(SIG_BLOCK, &term, &old);
        pid_t victim = fork();
        if (victim == 0) {
                for (;;)
                        pause();
        }
        (void)sigprocmask(SIG_SETMASK, &old, NULL);
        if (victim != init_pid)
                return 11;

        Unishim__Agent__V1__SignalProcessRequest sp =
                UNISHIM__AGENT__V1__SIGNAL_PROCESS_REQUEST__INIT;
        sp.container_id = REUSE_CTR;
        sp.signal = SIGTERM;
        int r = child_call(f, "SignalProcess", &sp.base);
        bool alive = !term_pending(victim);
        (void)kill(victim, SIGKILL);
        (void)waitpid(victim, NULL, 0);
        bool named = strstr(f->msg, "already exited");
        (void)child_call(f, "RemoveContainer", &cr.base);
        fx_free(f);
        if (!alive)
                return 12; /* the signal went to the process that took the pid */
        if (r != -ENOENT || !named)
                return 13; /* not NOT_FOUND, the code for a process that is gone */
        return 0;
}

/* Removes cgroup (a path below a hierarchy's root) and its parent, in the
 * unified hierarchy and in each v1 one: on a hybrid host the engine makes
 * it in all of them. */
static void rmdir_with_parent(char *path)
{
        (void)rmdir(path);
        *strrchr(path, '/') = '\0';
        (void)rmdir(path);
}

static void rmdir_cgroup_everywhere(const char *cgroup)
{
        char p[512];
        DIR *d = opendir("/sys/fs/cgroup");
        struct dirent *de;
        while (d && (de = readdir(d))) {
                if (de->d_name[0] == '.')
                        continue;
                snprintf(p, sizeof(p), "/sys/fs/cgroup/%s%s", de->d_name, cgroup);
                rmdir_with_parent(p);
        }
        if (d)
                closedir(d);
        snprintf(p, sizeof(p), "/sys/fs/cgroup%s", cgroup);
        rmdir_with_parent(p);
}

/* A non-"all" signal for a container whose init exited and was reaped
 * answers NOT_FOUND (ESRCH in the guest) and signals no one: the pid may
 * have been given to another process of the guest. */
static void signal_to_reaped_init(void **state)
{
        (void)state;
        if (geteuid() != 0)
                unit_skip("needs root (pid and mount namespaces, cgroups)");
        if (access("/bin/busybox", X_OK) != 0)
                unit_skip("needs /bin/busybox (package busybox-static)");
        char cgroup[64];
        snprintf(cgroup, sizeof(cgroup), "/unishim-test-agent-%d/" REUSE_CTR, (int)getpid());
        alarm(ALARM_SECS);
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
                if (unshare(CLONE_NEWNS | CLONE_NEWPID) < 0)
                        _exit(1);
                pid_t init = fork();
                if (init == 0)
                        _exit(reused_pid_child(cgroup));
                int st = 0;
                if (init < 0 || waitpid(init, &st, 0) != init)
                        _exit(1);
                _exit(WIFEXITED(st) ? WEXITSTATUS(st) : 100);
        }
        int st = 0;
        assert_int_equal(waitpid(pid, &st, 0), pid);
        rmdir_cgroup_everywhere(cgroup);
        alarm(0);
        assert_true(WIFEXITED(st));
        if (WEXITSTATUS(st) != 0)
                fail_msg("step %d failed (see reused_pid_child)", WEXITSTATUS(st));
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(answers_check),
                cmocka_unit_test(hostile_ids),
                cmocka_unit_test(unknown_containers),
                cmocka_unit_test(hostile_specs),
                cmocka_unit_test(hostile_storage_and_network),
                cmocka_unit_test(garbage_and_oversized),
                cmocka_unit_test(signal_to_reaped_init),
        };
        return unit_exit(unit_run_group_tests(tests, NULL, NULL));
}
