/* SPDX-License-Identifier: Apache-2.0 */
/* The Agent ttrpc service: containers and processes in the guest, run by the
 * same engine as on the host. Every handler starts with
 * agent_request_decode() (agent-request.c), so what reaches the code below is
 * structurally valid. */
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/reboot.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <inttypes.h>
#include <unistd.h>

#include "agent.h"
#include "base/cleanup.h"
#include "base/fs-util.h"
#include "base/log.h"
#include "engine/signal-hold.h"
#include "containerd/cgroups-v1-metrics.pb-c.h"

#ifndef UNISHIM_VERSION
#define UNISHIM_VERSION "0.0.0"
#endif

struct agent_container;

struct agent_process {
        struct agent_container *ctr;
        struct agent_process *next; /* execs list */
        char *exec_id;              /* NULL for init */
        pid_t pid;
        bool exited;
        bool exit_delivered;
        int exit_status;
        struct agent_stdin in; /* pipe write end or pty master dup */
        int pty;               /* pty master for resize; -1 */
        struct agent_stream out, err;
        struct us_signal_hold hold; /* signals it would lose as PID 1 */
        struct us_ttrpc_call *waiters[AGENT_MAX_WAITERS];
        size_t n_waiters;
};

struct agent_container {
        struct agent *agent;
        struct agent_container *next;
        char *id;
        struct us_container *c;
        bool started;
        struct agent_process init;
        struct agent_process *execs;
        size_t n_execs;
        int oom_fd;
        uint64_t oom_count;
        struct us_loop_source *oom_src;
        char *overlay_dir; /* the bundle dir holding its rootfs overlay; NULL: none */
};

struct agent {
        struct us_loop *loop;
        struct us_ttrpc_server *srv;
        struct agent_options opts;
        struct agent_container *containers;
        size_t n_containers;
        char *oom_queue[AGENT_OOM_QUEUE];
        size_t n_oom;
        struct us_ttrpc_call *oom_waiters[AGENT_OOM_WAITERS];
        size_t n_oom_waiters;
        bool shutting_down;
        bool prewarm_scheduled;
        bool local_mounted; /* GUEST_POD_LOCAL_DIR's tmpfs */
        pid_t pidns_init;   /* the pod's shared PID namespace; 0: none yet */
};

/* ---- lookup and lifetime ---- */

static struct agent_container *find_container(struct agent *a, const char *id)
{
        for (struct agent_container *c = a->containers; c; c = c->next)
                if (!strcmp(c->id, id))
                        return c;
        return NULL;
}

static struct agent_process *find_process(struct agent_container *c, const char *exec_id)
{
        if (!exec_id || !exec_id[0])
                return &c->init;
        for (struct agent_process *p = c->execs; p; p = p->next)
                if (!strcmp(p->exec_id, exec_id))
                        return p;
        return NULL;
}

static void process_release(struct agent_process *p)
{
        for (size_t i = 0; i < p->n_waiters; i++)
                us_ttrpc_call_fail(p->waiters[i], US_GRPC_NOT_FOUND, "process removed");
        p->n_waiters = 0;
        us_signal_forget(&p->hold);
        agent_stream_release(&p->out);
        agent_stream_release(&p->err);
        agent_stdin_release(&p->in);
        p->pty = us_close(p->pty);
        free(p->exec_id);
        p->exec_id = NULL;
}

/* An exec is forgotten once its exit was delivered and both streams have
 * reported EOF: the API has no delete for execs, and this bounds memory. */
static void exec_maybe_gc(struct agent_process *p)
{
        if (!p->exec_id || !p->exited || !p->exit_delivered || !p->out.eof_reported ||
            !p->err.eof_reported)
                return;
        struct agent_container *c = p->ctr;
        for (struct agent_process **pp = &c->execs; *pp; pp = &(*pp)->next)
                if (*pp == p) {
                        *pp = p->next;
                        break;
                }
        c->n_execs--;
        process_release(p);
        free(p);
}

static void container_free(struct agent_container *c)
{
        process_release(&c->init);
        while (c->execs) {
                struct agent_process *p = c->execs;
                c->execs = p->next;
                process_release(p);
                free(p);
        }
        c->oom_src = us_loop_source_remove(c->oom_src);
        c->oom_fd = us_close(c->oom_fd);
        us_container_free(c->c);
        if (c->overlay_dir)
                (void)agent_rootfs_overlay_remove(c->overlay_dir, NULL);
        free(c->overlay_dir);
        free(c->id);
        free(c);
}

static void process_init(struct agent_process *p, struct agent_container *c)
{
        memset(p, 0, sizeof(*p));
        p->ctr = c;
        agent_stdin_init(&p->in, -1, false);
        p->pty = -1;
        us_signal_hold_init(&p->hold);
        agent_stream_init(&p->out, -1);
        agent_stream_init(&p->err, -1);
}

/* ---- exits ---- */

static void answer_waiters(struct agent_process *p)
{
        Unishim__Agent__V1__WaitProcessResponse resp =
                UNISHIM__AGENT__V1__WAIT_PROCESS_RESPONSE__INIT;
        resp.exit_status = (uint32_t)p->exit_status;
        for (size_t i = 0; i < p->n_waiters; i++)
                us_ttrpc_call_reply(p->waiters[i], &resp.base);
        if (p->n_waiters)
                p->exit_delivered = true;
        p->n_waiters = 0;
}

static bool match_exit(struct agent *a, pid_t pid, int status)
{
        for (struct agent_container *c = a->containers; c; c = c->next) {
                struct agent_process *p = NULL;
                if (c->init.pid == pid && !c->init.exited)
                        p = &c->init;
                for (struct agent_process *e = c->execs; !p && e; e = e->next)
                        if (e->pid == pid && !e->exited)
                                p = e;
                if (!p)
                        continue;
                p->exited = true;
                us_signal_forget(&p->hold);
                p->exit_status = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
                if (a->opts.debug)
                        us_log_debug("container %s %s pid %d exited %d", c->id,
                                     p->exec_id ? p->exec_id : "init", pid, p->exit_status);
                answer_waiters(p);
                /* The writers are gone: whatever is in the pipes ends in EOF. */
                if (p->exec_id)
                        exec_maybe_gc(p);
                return true;
        }
        return false;
}

void agent_reap(struct agent *a)
{
        for (;;) {
                int status;
                pid_t pid = waitpid(-1, &status, WNOHANG);
                if (pid <= 0)
                        break;
                if (pid == a->pidns_init) /* its members are gone with it */
                        a->pidns_init = 0;
                (void)match_exit(a, pid, status); /* else: an orphan reparented to PID 1 */
        }
}

/* ---- OOM ---- */

static void oom_push(struct agent *a, const char *id)
{
        if (a->n_oom_waiters > 0) {
                Unishim__Agent__V1__OOMEvent ev = UNISHIM__AGENT__V1__OOMEVENT__INIT;
                ev.container_id = (char *)id;
                us_ttrpc_call_reply(a->oom_waiters[0], &ev.base);
                memmove(a->oom_waiters, a->oom_waiters + 1,
                        --a->n_oom_waiters * sizeof(a->oom_waiters[0]));
                return;
        }
        char *dup = strdup(id);
        if (!dup)
                return;
        if (a->n_oom == AGENT_OOM_QUEUE) { /* drop the oldest: bounded memory */
                free(a->oom_queue[0]);
                memmove(a->oom_queue, a->oom_queue + 1, --a->n_oom * sizeof(a->oom_queue[0]));
        }
        a->oom_queue[a->n_oom++] = dup;
}

static void on_oom(struct us_loop_source *src, int fd, uint32_t events, void *userdata)
{
        (void)src;
        (void)events;
        struct agent_container *c = userdata;
        struct us_cgroup *cg = us_container_cgroup(c->c);
        bool oom = false;
        if (!cg || us_cgroup_oom_event(cg, fd, &c->oom_count, &oom, NULL) < 0) {
                c->oom_src = us_loop_source_remove(c->oom_src);
                c->oom_fd = us_close(c->oom_fd);
                return;
        }
        if (oom)
                oom_push(c->agent, c->id);
}

static void oom_watch(struct agent_container *c)
{
        struct us_cgroup *cg = us_container_cgroup(c->c);
        if (!cg || us_cgroup_oom_count(cg, &c->oom_count, NULL) < 0 ||
            us_cgroup_oom_fd(cg, &c->oom_fd, NULL) < 0)
                return;
        if (us_loop_add_fd(c->agent->loop, c->oom_fd, EPOLLIN, on_oom, c, &c->oom_src, NULL) < 0)
                c->oom_fd = us_close(c->oom_fd);
}

/* ---- stdio ---- */

static void on_stream_change(struct agent_stream *s, void *userdata)
{
        (void)s;
        exec_maybe_gc(userdata); /* may free the process and s: nothing follows */
}

/* Pipes for a process without a terminal: the child ends go into *stdio (the
 * caller closes them after create/exec), the agent's ends into p. */
static int make_pipes(struct agent_process *p, bool want_stdin, struct us_stdio *stdio,
                      struct us_error **err)
{
        int out[2] = {-1, -1}, er[2] = {-1, -1}, in[2] = {-1, -1};
        if (pipe2(out, O_CLOEXEC) < 0 || pipe2(er, O_CLOEXEC) < 0 ||
            (want_stdin && pipe2(in, O_CLOEXEC) < 0)) {
                int e = errno;
                us_close(out[0]), us_close(out[1]), us_close(er[0]), us_close(er[1]);
                return us_errorf(err, e, "pipe");
        }
        (void)fcntl(out[0], F_SETFL, O_NONBLOCK);
        (void)fcntl(er[0], F_SETFL, O_NONBLOCK);
        if (in[1] >= 0)
                (void)fcntl(in[1], F_SETFL, O_NONBLOCK);
        agent_stream_init(&p->out, out[0]);
        agent_stream_init(&p->err, er[0]);
        agent_stdin_init(&p->in, in[1], false);
        stdio->in = in[0];
        stdio->out = out[1];
        stdio->err = er[1];
        return 0;
}

static void close_child_ends(struct us_stdio *stdio)
{
        stdio->in = us_close(stdio->in);
        stdio->out = us_close(stdio->out);
        stdio->err = us_close(stdio->err);
}

static int setup_pty(struct agent_process *p, int master, struct us_error **err)
{
        (void)fcntl(master, F_SETFL, O_NONBLOCK);
        int rd = fcntl(master, F_DUPFD_CLOEXEC, 3);
        int wr = fcntl(master, F_DUPFD_CLOEXEC, 3);
        if (rd < 0 || wr < 0) {
                int e = errno;
                us_close(rd), us_close(wr), us_close(master);
                return us_errorf(err, e, "dup pty");
        }
        agent_stream_init(&p->out, rd);
        agent_stream_init(&p->err, -1); /* with a terminal everything is on stdout */
        agent_stdin_init(&p->in, wr, true);
        p->pty = master;
        return 0;
}

static int watch_streams(struct agent *a, struct agent_process *p, struct us_error **err)
{
        int r = agent_stream_watch(&p->out, a->loop, on_stream_change, p, err);
        if (r >= 0)
                r = agent_stream_watch(&p->err, a->loop, on_stream_change, p, err);
        return r;
}

/* ---- handlers ---- */

#define DECODE(type, var)                                                                          \
        _cleanup_pb_ type *var = agent_call_decode(call, payload, len);                            \
        if (!var)                                                                                  \
        return

static const Unishim__Agent__V1__Empty empty_msg = UNISHIM__AGENT__V1__EMPTY__INIT;

#define LOOKUP(a, id)                                                                              \
        struct agent_container *ctr = find_container(a, id);                                       \
        if (!ctr) {                                                                                \
                us_ttrpc_call_fail(call, US_GRPC_NOT_FOUND, "container %s not found", id);         \
                return;                                                                            \
        }

static void h_check(struct us_ttrpc_call *call, const uint8_t *payload, size_t len, void *ud)
{
        (void)ud;
        DECODE(Unishim__Agent__V1__CheckRequest, req);
        struct utsname u;
        (void)uname(&u);
        Unishim__Agent__V1__CheckResponse resp = UNISHIM__AGENT__V1__CHECK_RESPONSE__INIT;
        resp.version = (char *)UNISHIM_VERSION;
        resp.kernel_release = u.release;
        us_ttrpc_call_reply(call, &resp.base);
}

static void h_add_storage(struct us_ttrpc_call *call, const uint8_t *payload, size_t len, void *ud)
{
        (void)ud;
        DECODE(Unishim__Agent__V1__AddStorageRequest, req);
        for (size_t i = 0; i < req->n_storages; i++) {
                struct us_error *err = NULL;
                int r = agent_mount_storage(req->storages[i], &err);
                if (r < 0)
                        return us_ttrpc_call_fail_error(call, r, err);
        }
        us_ttrpc_call_reply(call, &empty_msg.base);
}

static void prewarm(struct us_loop_source *src, void *userdata)
{
        (void)src;
        struct agent *a = userdata;
        struct us_error *err = NULL;
        int64_t t0 = us_monotonic_ms();
        if (us_container_prewarm(a->opts.cgroup_root, GUEST_CGROUP_PARENT, &err) < 0)
                us_log_warn("prewarm: %s", us_error_text(err)); /* creates do it themselves */
        else
                us_log_debug("prewarmed in %" PRId64 " ms", us_monotonic_ms() - t0);
        us_error_free(err);
}

static void h_update_network(struct us_ttrpc_call *call, const uint8_t *payload, size_t len,
                             void *ud)
{
        struct agent *a = ud;
        DECODE(Unishim__Agent__V1__UpdateNetworkRequest, req);
        struct us_error *err = NULL;
        int r = agent_net_update(req, &err);
        if (r < 0)
                return us_ttrpc_call_fail_error(call, r, err);
        us_ttrpc_call_reply(call, &empty_msg.base);
        /* The host's last boot call: until its first CreateContainer, which
         * takes containerd tens of ms to send, the guest idles. The first
         * create's cgroup and device program work (~30 ms under TCG) is done
         * now instead, after the reply has left. */
        if (!a->prewarm_scheduled && us_loop_add_timer(a->loop, 0, prewarm, a, NULL, NULL) >= 0)
                a->prewarm_scheduled = true;
}

/* Namespaces a guest spec joins by path: only the pod's shared PID
 * namespace, started with the first container that asks for it. The rest
 * are new ones, or dropped by the shim (network and IPC: the guest's own). */
static int join_pod_namespaces(struct agent *a, struct us_oci_spec *spec, struct us_error **err)
{
        for (size_t i = 0; i < spec->linux_.n_namespaces; i++) {
                struct us_oci_namespace *ns = &spec->linux_.namespaces[i];
                if (!ns->path)
                        continue;
                if (ns->type != CLONE_NEWPID || strcmp(ns->path, GUEST_POD_PIDNS) != 0)
                        return us_error_msg(err, EINVAL,
                                            "namespace path %s: only the pod's PID namespace "
                                            "(" GUEST_POD_PIDNS ") may be joined",
                                            ns->path);
                if (a->pidns_init == 0) {
                        int r = agent_pidns_spawn(&a->pidns_init, err);
                        if (r < 0)
                                return r;
                }
                char *path = NULL;
                if (asprintf(&path, "/proc/%d/ns/pid", (int)a->pidns_init) < 0)
                        return us_errorf(err, ENOMEM, "pod PID namespace");
                free(ns->path);
                ns->path = path;
        }
        return 0;
}

/* The pod's local dirs the spec's mounts name (agent.proto): made once,
 * by the first container that has them; they live as long as the guest.
 * In a tmpfs of their own, so that filling one leaves the agent's /run
 * alone; without nosuid and nodev, as an emptyDir on a node's disk is. */
static int make_local_dirs(struct agent *a, const Unishim__Agent__V1__CreateContainerRequest *req,
                           struct us_error **err)
{
        if (req->n_local_dirs == 0)
                return 0;
        int r = us_mkdir_p(GUEST_POD_LOCAL_DIR, 0755, err);
        if (r < 0)
                return r;
        if (!a->local_mounted) {
                if (mount("tmpfs", GUEST_POD_LOCAL_DIR, "tmpfs", 0, "mode=0755") < 0)
                        return us_errorf(err, errno, "mount tmpfs on %s", GUEST_POD_LOCAL_DIR);
                a->local_mounted = true;
        }
        _cleanup_close_ int base =
                open(GUEST_POD_LOCAL_DIR, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (base < 0)
                return us_errorf(err, errno, "open %s", GUEST_POD_LOCAL_DIR);
        for (size_t i = 0; i < req->n_local_dirs; i++) {
                const Unishim__Agent__V1__PodLocalDir *d = req->local_dirs[i];
                r = agent_local_dir_make(base, d->name, d->mode, d->uid, d->gid, err);
                if (r < 0)
                        return us_error_wrap(err, r, "pod-local dir");
        }
        return 0;
}

static void h_create(struct us_ttrpc_call *call, const uint8_t *payload, size_t len, void *ud)
{
        struct agent *a = ud;
        DECODE(Unishim__Agent__V1__CreateContainerRequest, req);
        struct us_error *err = NULL;
        if (find_container(a, req->container_id))
                return us_ttrpc_call_fail(call, US_GRPC_ALREADY_EXISTS, "container %s exists",
                                          req->container_id);
        if (a->n_containers >= AGENT_MAX_CONTAINERS)
                return us_ttrpc_call_fail(call, US_GRPC_RESOURCE_EXHAUSTED, "too many containers");
        struct us_oci_spec *spec = NULL;
        int r = us_oci_spec_parse((const char *)req->spec_json.data, req->spec_json.len, &spec,
                                  &err);
        if (r < 0)
                return us_ttrpc_call_fail_error(call, -EINVAL, err);
        if (!spec->process || !spec->root_path) {
                us_oci_spec_free(spec);
                return us_ttrpc_call_fail(call, US_GRPC_INVALID_ARGUMENT,
                                          "spec needs process and root");
        }
        /* The rootfs must be on the shared filesystem the agent mounted. */
        r = agent_validate_run_path("root.path", spec->root_path, &err);
        if (r < 0) {
                us_oci_spec_free(spec);
                return us_ttrpc_call_fail_error(call, r, err);
        }
        if ((r = join_pod_namespaces(a, spec, &err)) < 0 ||
            (r = make_local_dirs(a, req, &err)) < 0) {
                us_oci_spec_free(spec);
                return us_ttrpc_call_fail_error(call, r, err);
        }
        char bundle[sizeof(AGENT_BUNDLE_DIR) + AGENT_MAX_ID + 2];
        snprintf(bundle, sizeof(bundle), AGENT_BUNDLE_DIR "/%s", req->container_id);
        if (mkdir(bundle, 0700) < 0 && errno != EEXIST) {
                r = us_errorf(&err, errno, "mkdir %s", bundle);
                us_oci_spec_free(spec);
                return us_ttrpc_call_fail_error(call, r, err);
        }
        struct agent_container *c = calloc(1, sizeof(*c));
        char *id = strdup(req->container_id);
        if (!c || !id) {
                free(c), free(id), us_oci_spec_free(spec);
                return us_ttrpc_call_fail(call, US_GRPC_RESOURCE_EXHAUSTED, "out of memory");
        }
        c->agent = a;
        c->id = id;
        c->oom_fd = -1;
        process_init(&c->init, c);
        /* A rootfs on 9p runs on an overlay in the guest (agent.h). */
        _cleanup_free_ char *overlay = NULL;
        if ((r = agent_rootfs_prepare(spec->root_path, bundle, &overlay, &err)) < 0) {
                r = us_error_wrap(&err, r, "rootfs of container %s", c->id);
                goto fail;
        }
        if (overlay && !(c->overlay_dir = strdup(bundle))) {
                (void)agent_rootfs_overlay_remove(bundle, NULL);
                r = us_error_msg(&err, ENOMEM, "out of memory");
                goto fail;
        }
        struct us_stdio stdio = {-1, -1, -1};
        bool terminal = spec->process->terminal;
        if (!terminal && (r = make_pipes(&c->init, req->stdin, &stdio, &err)) < 0)
                goto fail;
        char rootfs[AGENT_MAX_PATH + 1];
        snprintf(rootfs, sizeof(rootfs), "%s", overlay ? overlay : spec->root_path);
        struct us_container_config cfg = {
                .id = c->id,
                .bundle = bundle,
                .rootfs = rootfs,
                .spec = spec,
                .stdio = stdio,
                .cgroup_root = a->opts.cgroup_root,
        };
        int master = -1;
        int64_t t0 = us_monotonic_ms();
        r = us_container_create(&cfg, &c->c, &master, &err);
        us_log_debug("container %s: created in %" PRId64 " ms", c->id, us_monotonic_ms() - t0);
        close_child_ends(&stdio);
        if (r < 0)
                goto fail;
        if (master >= 0 && (r = setup_pty(&c->init, master, &err)) < 0)
                goto fail_created;
        c->init.pid = us_container_pid(c->c);
        if ((r = watch_streams(a, &c->init, &err)) < 0)
                goto fail_created;
        oom_watch(c);
        c->next = a->containers;
        a->containers = c;
        a->n_containers++;
        Unishim__Agent__V1__CreateContainerResponse resp =
                UNISHIM__AGENT__V1__CREATE_CONTAINER_RESPONSE__INIT;
        resp.pid = (uint32_t)c->init.pid;
        us_ttrpc_call_reply(call, &resp.base);
        return;
fail:
        us_oci_spec_free(spec);
        container_free(c);
        (void)rmdir(bundle);
        return us_ttrpc_call_fail_error(call, r, err);
fail_created:
        (void)us_container_kill(c->c, SIGKILL, true, NULL);
        (void)us_container_destroy(c->c, NULL);
        container_free(c);
        (void)rmdir(bundle);
        us_ttrpc_call_fail_error(call, r, err);
}

static void h_start(struct us_ttrpc_call *call, const uint8_t *payload, size_t len, void *ud)
{
        struct agent *a = ud;
        DECODE(Unishim__Agent__V1__ContainerRequest, req);
        LOOKUP(a, req->container_id);
        if (ctr->started)
                return us_ttrpc_call_fail(call, US_GRPC_FAILED_PRECONDITION,
                                          "container %s already started", ctr->id);
        struct us_error *err = NULL;
        int64_t t0 = us_monotonic_ms();
        int r = us_container_start(ctr->c, &err);
        us_log_debug("container %s: started in %" PRId64 " ms", ctr->id, us_monotonic_ms() - t0);
        ctr->started = true; /* even on failure: init exits 127 and is reaped */
        if (r < 0)
                return us_ttrpc_call_fail_error(call, r, err);
        us_ttrpc_call_reply(call, &empty_msg.base);
}

static void h_remove(struct us_ttrpc_call *call, const uint8_t *payload, size_t len, void *ud)
{
        struct agent *a = ud;
        DECODE(Unishim__Agent__V1__ContainerRequest, req);
        LOOKUP(a, req->container_id);
        if (ctr->started && !ctr->init.exited)
                return us_ttrpc_call_fail(call, US_GRPC_FAILED_PRECONDITION,
                                          "container %s is running", ctr->id);
        struct us_error *err = NULL;
        (void)us_container_kill(ctr->c, SIGKILL, true, NULL);
        int r = us_container_destroy(ctr->c, &err);
        if (r < 0)
                return us_ttrpc_call_fail_error(call, r, err);
        for (struct agent_container **pp = &a->containers; *pp; pp = &(*pp)->next)
                if (*pp == ctr) {
                        *pp = ctr->next;
                        break;
                }
        a->n_containers--;
        char bundle[sizeof(AGENT_BUNDLE_DIR) + AGENT_MAX_ID + 2];
        snprintf(bundle, sizeof(bundle), AGENT_BUNDLE_DIR "/%s", ctr->id);
        container_free(ctr); /* its rootfs overlay first: it lives in bundle */
        (void)rmdir(bundle);
        us_ttrpc_call_reply(call, &empty_msg.base);
}

static void h_pause(struct us_ttrpc_call *call, const uint8_t *payload, size_t len, void *ud)
{
        struct agent *a = ud;
        DECODE(Unishim__Agent__V1__ContainerRequest, req);
        LOOKUP(a, req->container_id);
        struct us_error *err = NULL;
        bool pause = !strcmp(us_ttrpc_call_method(call), "PauseContainer");
        int r = pause ? us_container_pause(ctr->c, &err) : us_container_resume(ctr->c, &err);
        if (r < 0)
                return us_ttrpc_call_fail_error(call, r, err);
        us_ttrpc_call_reply(call, &empty_msg.base);
}

static void h_update(struct us_ttrpc_call *call, const uint8_t *payload, size_t len, void *ud)
{
        struct agent *a = ud;
        DECODE(Unishim__Agent__V1__UpdateContainerRequest, req);
        LOOKUP(a, req->container_id);
        struct us_error *err = NULL;
        struct us_oci_resources *res = NULL;
        int r = us_oci_resources_parse((const char *)req->resources_json.data,
                                       req->resources_json.len, &res, &err);
        if (r < 0)
                return us_ttrpc_call_fail_error(call, -EINVAL, err);
        r = us_container_update(ctr->c, res, &err);
        us_oci_resources_free(res);
        if (r < 0)
                return us_ttrpc_call_fail_error(call, r, err);
        us_ttrpc_call_reply(call, &empty_msg.base);
}

static void h_stats(struct us_ttrpc_call *call, const uint8_t *payload, size_t len, void *ud)
{
        struct agent *a = ud;
        DECODE(Unishim__Agent__V1__ContainerRequest, req);
        LOOKUP(a, req->container_id);
        struct us_error *err = NULL;
        struct us_cgroup *cg = us_container_cgroup(ctr->c);
        if (!cg)
                return us_ttrpc_call_fail(call, US_GRPC_NOT_FOUND, "container has no cgroup");
        _cleanup_free_ uint8_t *buf = NULL;
        size_t n = 0;
        int r = us_cgroup_stats_packed(cg, &buf, &n, &err);
        if (r < 0)
                return us_ttrpc_call_fail_error(call, r, err);
        Unishim__Agent__V1__StatsContainerResponse resp =
                UNISHIM__AGENT__V1__STATS_CONTAINER_RESPONSE__INIT;
        resp.metrics.data = buf;
        resp.metrics.len = n;
        us_ttrpc_call_reply(call, &resp.base);
}

static void h_list_pids(struct us_ttrpc_call *call, const uint8_t *payload, size_t len, void *ud)
{
        struct agent *a = ud;
        DECODE(Unishim__Agent__V1__ContainerRequest, req);
        LOOKUP(a, req->container_id);
        struct us_error *err = NULL;
        struct us_cgroup *cg = us_container_cgroup(ctr->c);
        if (!cg)
                return us_ttrpc_call_fail(call, US_GRPC_NOT_FOUND, "container has no cgroup");
        _cleanup_free_ pid_t *pids = NULL;
        size_t n = 0;
        int r = us_cgroup_pids(cg, &pids, &n, &err);
        if (r < 0)
                return us_ttrpc_call_fail_error(call, r, err);
        _cleanup_free_ uint32_t *out = calloc(n ? n : 1, sizeof(uint32_t));
        if (!out)
                return us_ttrpc_call_fail(call, US_GRPC_RESOURCE_EXHAUSTED, "out of memory");
        for (size_t i = 0; i < n; i++)
                out[i] = (uint32_t)pids[i];
        Unishim__Agent__V1__ListPidsResponse resp = UNISHIM__AGENT__V1__LIST_PIDS_RESPONSE__INIT;
        resp.pids = out;
        resp.n_pids = n;
        us_ttrpc_call_reply(call, &resp.base);
}

static void h_exec(struct us_ttrpc_call *call, const uint8_t *payload, size_t len, void *ud)
{
        struct agent *a = ud;
        DECODE(Unishim__Agent__V1__ExecProcessRequest, req);
        LOOKUP(a, req->container_id);
        if (!ctr->started || ctr->init.exited)
                return us_ttrpc_call_fail(call, US_GRPC_FAILED_PRECONDITION,
                                          "container %s is not running", ctr->id);
        if (find_process(ctr, req->exec_id))
                return us_ttrpc_call_fail(call, US_GRPC_ALREADY_EXISTS, "exec %s exists",
                                          req->exec_id);
        if (ctr->n_execs >= AGENT_MAX_EXECS)
                return us_ttrpc_call_fail(call, US_GRPC_RESOURCE_EXHAUSTED, "too many execs");
        struct us_error *err = NULL;
        struct us_oci_process *proc = NULL;
        int r = us_oci_process_parse((const char *)req->process_json.data, req->process_json.len,
                                     &proc, &err);
        if (r < 0)
                return us_ttrpc_call_fail_error(call, -EINVAL, err);
        struct agent_process *p = calloc(1, sizeof(*p));
        if (!p) {
                us_oci_process_free(proc);
                return us_ttrpc_call_fail(call, US_GRPC_RESOURCE_EXHAUSTED, "out of memory");
        }
        process_init(p, ctr);
        p->exec_id = strdup(req->exec_id);
        struct us_stdio stdio = {-1, -1, -1};
        if (!p->exec_id)
                r = us_error_msg(&err, ENOMEM, "out of memory");
        else if (!proc->terminal)
                r = make_pipes(p, req->stdin, &stdio, &err);
        int master = -1;
        pid_t pid = 0;
        if (r >= 0)
                r = us_container_exec(ctr->c, proc, &stdio, &pid, &master, &err);
        close_child_ends(&stdio);
        us_oci_process_free(proc);
        if (r >= 0 && master >= 0)
                r = setup_pty(p, master, &err);
        if (r >= 0) {
                p->pid = pid;
                r = watch_streams(a, p, &err);
                if (r < 0)
                        (void)kill(pid, SIGKILL); /* reaped as an unknown pid */
        }
        if (r < 0) {
                process_release(p);
                free(p);
                return us_ttrpc_call_fail_error(call, r, err);
        }
        p->next = ctr->execs;
        ctr->execs = p;
        ctr->n_execs++;
        Unishim__Agent__V1__ExecProcessResponse resp =
                UNISHIM__AGENT__V1__EXEC_PROCESS_RESPONSE__INIT;
        resp.pid = (uint32_t)pid;
        us_ttrpc_call_reply(call, &resp.base);
}

#define LOOKUP_PROCESS(a, cid, eid)                                                                \
        LOOKUP(a, cid);                                                                            \
        struct agent_process *proc = find_process(ctr, eid);                                       \
        if (!proc) {                                                                               \
                us_ttrpc_call_fail(call, US_GRPC_NOT_FOUND, "exec %s not found", eid);             \
                return;                                                                            \
        }

static void h_signal(struct us_ttrpc_call *call, const uint8_t *payload, size_t len, void *ud)
{
        struct agent *a = ud;
        DECODE(Unishim__Agent__V1__SignalProcessRequest, req);
        LOOKUP_PROCESS(a, req->container_id, req->exec_id);
        struct us_error *err = NULL;
        int r = 0, sig = (int)req->signal;
        if (sig == SIGKILL)
                us_signal_forget(&proc->hold);
        /* A reaped process's pid may belong to another process by now: only
         * the cgroup-wide signal (all) still has somewhere to go. ESRCH is
         * what the host answers containerd for a process that is gone. */
        if (proc->exited && !req->all)
                r = us_error_msg(&err, ESRCH, "process already exited");
        /* To all of the cgroup's processes, or before the start (to the
         * engine's waiting child, not the program): as it is. */
        else if (proc == &ctr->init && (req->all || !ctr->started || proc->exited))
                r = us_container_kill(ctr->c, sig, req->all, &err);
        else
                r = us_signal_send(&proc->hold, a->loop, proc->pid, sig, &err);
        if (r < 0)
                return us_ttrpc_call_fail_error(call, r, err);
        us_ttrpc_call_reply(call, &empty_msg.base);
}

static void h_wait(struct us_ttrpc_call *call, const uint8_t *payload, size_t len, void *ud)
{
        struct agent *a = ud;
        DECODE(Unishim__Agent__V1__ProcessRequest, req);
        LOOKUP_PROCESS(a, req->container_id, req->exec_id);
        if (proc->n_waiters >= AGENT_MAX_WAITERS)
                return us_ttrpc_call_fail(call, US_GRPC_RESOURCE_EXHAUSTED, "too many waiters");
        proc->waiters[proc->n_waiters++] = call;
        if (proc->exited) {
                answer_waiters(proc);
                exec_maybe_gc(proc);
        }
}

static void h_read(struct us_ttrpc_call *call, const uint8_t *payload, size_t len, void *ud)
{
        struct agent *a = ud;
        DECODE(Unishim__Agent__V1__ReadStreamRequest, req);
        LOOKUP_PROCESS(a, req->container_id, req->exec_id);
        struct agent_stream *s =
                req->stream == UNISHIM__AGENT__V1__STREAM__STREAM_STDOUT ? &proc->out : &proc->err;
        if (s->waiter)
                return us_ttrpc_call_fail(call, US_GRPC_FAILED_PRECONDITION,
                                          "a read on this stream is already pending");
        s->waiter = call;
        s->waiter_max =
                req->max_len == 0 || req->max_len > AGENT_READ_MAX ? AGENT_READ_MAX : req->max_len;
        agent_stream_answer(s, a->loop);
        exec_maybe_gc(proc);
}

static void stdin_written(struct agent_stdin *s, int r, size_t len, void *userdata)
{
        (void)s;
        struct us_ttrpc_call *call = userdata;
        if (r == -ECANCELED) {
                us_ttrpc_call_fail(call, US_GRPC_NOT_FOUND, "process removed");
                return;
        }
        if (r < 0) {
                struct us_error *err = NULL;
                r = us_errorf(&err, -r, "write stdin");
                us_ttrpc_call_fail_error(call, r, err);
                return;
        }
        Unishim__Agent__V1__WriteStdinResponse resp =
                UNISHIM__AGENT__V1__WRITE_STDIN_RESPONSE__INIT;
        resp.len = (uint32_t)len;
        us_ttrpc_call_reply(call, &resp.base);
}

static void h_write(struct us_ttrpc_call *call, const uint8_t *payload, size_t len, void *ud)
{
        struct agent *a = ud;
        DECODE(Unishim__Agent__V1__WriteStdinRequest, req);
        LOOKUP_PROCESS(a, req->container_id, req->exec_id);
        /* Answered once all of it is in the process's stdin: now, or from
         * the loop when the process has read enough (a long poll). */
        int r = agent_stdin_write(&proc->in, a->loop, req->data.data, req->data.len, stdin_written,
                                  call);
        if (r == -EBADF)
                return us_ttrpc_call_fail(call, US_GRPC_FAILED_PRECONDITION, "stdin is closed");
        if (r == -EBUSY)
                return us_ttrpc_call_fail(call, US_GRPC_FAILED_PRECONDITION,
                                          "a write to this stdin is already pending");
        if (r < 0)
                return stdin_written(&proc->in, r, 0, call);
        if (r > 0)
                stdin_written(&proc->in, 0, req->data.len, call);
}

static void h_close_stdin(struct us_ttrpc_call *call, const uint8_t *payload, size_t len, void *ud)
{
        struct agent *a = ud;
        DECODE(Unishim__Agent__V1__ProcessRequest, req);
        LOOKUP_PROCESS(a, req->container_id, req->exec_id);
        /* The process sees EOF after every byte written before. */
        agent_stdin_close(&proc->in, a->loop);
        us_ttrpc_call_reply(call, &empty_msg.base);
}

static void h_resize(struct us_ttrpc_call *call, const uint8_t *payload, size_t len, void *ud)
{
        struct agent *a = ud;
        DECODE(Unishim__Agent__V1__ResizePtyRequest, req);
        LOOKUP_PROCESS(a, req->container_id, req->exec_id);
        if (proc->pty < 0)
                return us_ttrpc_call_fail(call, US_GRPC_FAILED_PRECONDITION, "no terminal");
        struct winsize ws = {.ws_row = (unsigned short)req->height,
                             .ws_col = (unsigned short)req->width};
        if (ioctl(proc->pty, TIOCSWINSZ, &ws) < 0) {
                struct us_error *err = NULL;
                int r = us_errorf(&err, errno, "resize pty");
                return us_ttrpc_call_fail_error(call, r, err);
        }
        us_ttrpc_call_reply(call, &empty_msg.base);
}

static void h_oom(struct us_ttrpc_call *call, const uint8_t *payload, size_t len, void *ud)
{
        struct agent *a = ud;
        DECODE(Unishim__Agent__V1__Empty, req);
        if (a->n_oom > 0) {
                Unishim__Agent__V1__OOMEvent ev = UNISHIM__AGENT__V1__OOMEVENT__INIT;
                ev.container_id = a->oom_queue[0];
                us_ttrpc_call_reply(call, &ev.base);
                free(a->oom_queue[0]);
                memmove(a->oom_queue, a->oom_queue + 1, --a->n_oom * sizeof(a->oom_queue[0]));
                return;
        }
        if (a->n_oom_waiters >= AGENT_OOM_WAITERS)
                return us_ttrpc_call_fail(call, US_GRPC_RESOURCE_EXHAUSTED, "too many waiters");
        a->oom_waiters[a->n_oom_waiters++] = call;
}

void agent_kill_all(struct agent *a)
{
        for (struct agent_container *c = a->containers; c; c = c->next)
                (void)us_container_kill(c->c, SIGKILL, true, NULL);
        agent_reap(a);
        while (a->containers) {
                struct agent_container *c = a->containers;
                a->containers = c->next;
                (void)us_container_destroy(c->c, NULL);
                container_free(c);
        }
        a->n_containers = 0;
}

static void power_off(struct us_loop_source *src, void *userdata)
{
        (void)src;
        (void)userdata;
        sync();
        (void)reboot(RB_POWER_OFF);
        /* Without an ACPI power-off path the kernel halts instead; a reboot
         * ends QEMU when it runs with -no-reboot, which the VMM passes. */
        (void)reboot(RB_AUTOBOOT);
}

static void h_shutdown(struct us_ttrpc_call *call, const uint8_t *payload, size_t len, void *ud)
{
        struct agent *a = ud;
        DECODE(Unishim__Agent__V1__Empty, req);
        us_log_info("shutdown requested");
        a->shutting_down = true;
        agent_kill_all(a);
        sync();
        us_ttrpc_call_reply(call, &empty_msg.base);
        /* Power off a moment later, so the reply leaves the port first. */
        if (getpid() == 1)
                (void)us_loop_add_timer(a->loop, 100, power_off, a, NULL, NULL);
        else
                us_loop_quit(a->loop, 0);
}

static const struct {
        const char *method;
        us_ttrpc_method_fn fn;
} methods[] = {
        {"Check", h_check},
        {"AddStorage", h_add_storage},
        {"UpdateNetwork", h_update_network},
        {"CreateContainer", h_create},
        {"StartContainer", h_start},
        {"RemoveContainer", h_remove},
        {"PauseContainer", h_pause},
        {"ResumeContainer", h_pause},
        {"UpdateContainer", h_update},
        {"StatsContainer", h_stats},
        {"ListPids", h_list_pids},
        {"ExecProcess", h_exec},
        {"SignalProcess", h_signal},
        {"WaitProcess", h_wait},
        {"ReadStream", h_read},
        {"WriteStdin", h_write},
        {"CloseStdin", h_close_stdin},
        {"ResizePty", h_resize},
        {"GetOOMEvent", h_oom},
        {"Shutdown", h_shutdown},
        {"Restore", agent_h_restore},
};

int agent_new(struct us_loop *loop, const struct agent_options *opts, struct agent **ret,
              struct us_error **err)
{
        struct agent *a = calloc(1, sizeof(*a));
        if (!a)
                return us_errorf(err, ENOMEM, "agent");
        a->loop = loop;
        if (opts)
                a->opts = *opts;
        int r = us_ttrpc_server_new(loop, -1, &a->srv, err);
        if (r < 0) {
                free(a);
                return r;
        }
        for (size_t i = 0; i < US_ELEMENTSOF(methods); i++) {
                r = us_ttrpc_server_register(a->srv, AGENT_SERVICE, methods[i].method,
                                             methods[i].fn, a, err);
                if (r < 0) {
                        agent_free(a);
                        return r;
                }
        }
        *ret = a;
        return 0;
}

int agent_serve_fd(struct agent *a, int fd, struct us_error **err)
{
        return us_ttrpc_server_add_connection(a->srv, fd, err);
}

int agent_serve_fd_notify(struct agent *a, int fd, void (*on_close)(void *userdata), void *userdata,
                          struct us_error **err)
{
        return us_ttrpc_server_add_connection_notify(a->srv, fd, on_close, userdata, err);
}

struct agent *agent_free(struct agent *a)
{
        if (!a)
                return NULL;
        while (a->containers) {
                struct agent_container *c = a->containers;
                a->containers = c->next;
                container_free(c);
        }
        for (size_t i = 0; i < a->n_oom_waiters; i++)
                us_ttrpc_call_fail(a->oom_waiters[i], US_GRPC_UNAVAILABLE, "agent stopping");
        for (size_t i = 0; i < a->n_oom; i++)
                free(a->oom_queue[i]);
        us_ttrpc_server_free(a->srv);
        free(a);
        return NULL;
}
