/* SPDX-License-Identifier: Apache-2.0 */
/*
 * containerd.task.v2.Task: every method containerd 1.6/1.7 calls on a v2
 * shim. Each handler unpacks its request (a NULL unpack is a malformed
 * request, INVALID_ARGUMENT), validates ids, and answers with a gRPC code
 * containerd's errdefs understand (NOT_FOUND, ALREADY_EXISTS,
 * FAILED_PRECONDITION, ...).
 */
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/cleanup.h"
#include "events.h"
#include "containerd/cgroups-v1-metrics.pb-c.h"
#include "containerd/events.pb-c.h"
#include "containerd/runtimeoptions.pb-c.h"
#include "containerd/shim.pb-c.h"
#include "base/id.h"
#include "base/log.h"
#include "rootfs.h"
#include "shim.h"
#include "sidecar.h"
#include "task.h"
#include "version.h"
#include "vmpod.h"

#define TASK_SERVICE "containerd.task.v2.Task"

/* Looks up the task (and optionally the process) or fails the call. */
static struct shim_task *need_task(struct shim *shim, struct us_ttrpc_call *call, const char *id)
{
        struct shim_task *t = id ? shim_task_find(shim, id) : NULL;
        if (!t)
                us_ttrpc_call_fail(call, US_GRPC_NOT_FOUND, "task %s not found", id ? id : "");
        return t;
}

/* Looks up the task and its process (init when exec_id is empty) or fails
 * the call. */
static struct shim_process *need_process(struct shim *shim, struct us_ttrpc_call *call,
                                         const char *id, const char *exec_id,
                                         struct shim_task **ret_task)
{
        struct shim_task *t = need_task(shim, call, id);
        if (!t)
                return NULL;
        struct shim_process *p = shim_task_process(t, exec_id);
        if (!p) {
                us_ttrpc_call_fail(call, US_GRPC_NOT_FOUND, "process %s of task %s not found",
                                   exec_id, t->id);
                return NULL;
        }
        *ret_task = t;
        return p;
}

/* ---- operations a backend may finish later (backend.h: struct shim_op) ---- */

struct pending;
/* Completes the request: reply, state, events. err is owned by the caller
 * (the finish may replace it: us_error_wrap). */
typedef void (*finish_fn)(struct pending *pd, int r, struct us_error **err);

struct pending {
        struct shim_op op; /* first: done() gets it back */
        finish_fn finish;
        struct shim *shim;
        struct us_ttrpc_call *call;
        /* By id, not pointer: the task may be deleted before the backend
         * finishes (its backend then fails the op). */
        char *task_id;
        char *exec_id;          /* NULL: the init process */
        bool flag;              /* pause (true) or resume; create: a host sidecar */
        struct shim_task *task; /* create: the task being made (in shim->creating) */
        /* the backend's results */
        pid_t pid;
        int pty;
        uint8_t *data;
        size_t len;
        pid_t *pids;
        size_t n;
};

static void pending_free(struct pending *pd)
{
        us_close(pd->pty);
        free(pd->task_id);
        free(pd->exec_id);
        free(pd->data);
        free(pd->pids);
        free(pd);
}

static void pending_done(struct shim_op *op, int r, struct us_error *err)
{
        struct pending *pd = (struct pending *)op;
        pd->finish(pd, r, &err);
        us_error_free(err);
        pending_free(pd);
}

/* A pending op for task task_id (process exec_id, NULL: the init); fails
 * the call and returns NULL without memory. */
static struct pending *pending_new(struct shim *shim, struct us_ttrpc_call *call,
                                   const char *task_id, const char *exec_id, finish_fn finish)
{
        struct pending *pd = calloc(1, sizeof(*pd));
        if (!pd || !(pd->task_id = strdup(task_id)) ||
            (exec_id && !(pd->exec_id = strdup(exec_id)))) {
                if (pd)
                        free(pd->task_id);
                free(pd);
                us_ttrpc_call_fail(call, US_GRPC_RESOURCE_EXHAUSTED, "out of memory");
                return NULL;
        }
        pd->op.done = pending_done;
        pd->finish = finish;
        pd->shim = shim;
        pd->call = call;
        pd->pty = -1;
        return pd;
}

/* After the backend's call returned r: finishes now, unless the backend
 * will (-EINPROGRESS). */
static void pending_run(struct pending *pd, int r, struct us_error *err)
{
        if (r == -EINPROGRESS) {
                us_error_free(err);
                return;
        }
        pending_done(&pd->op, r, err);
}

/* The pending op's task and process, or NULL with *err set. */
static struct shim_process *pending_process(struct pending *pd, struct shim_task **ret_task,
                                            struct us_error **err)
{
        struct shim_task *t = shim_task_find(pd->shim, pd->task_id);
        struct shim_process *p = t ? shim_task_process(t, pd->exec_id) : NULL;
        if (!p) {
                us_error_free(*err);
                *err = NULL;
                us_error_msg(err, ENOENT, "task %s went away meanwhile", pd->task_id);
                return NULL;
        }
        *ret_task = t;
        return p;
}

static int copy_str(char **dst, const char *src)
{
        *dst = strdup(src ? src : "");
        return *dst ? 0 : -ENOMEM;
}

static void on_oom(struct us_loop_source *src, int fd, uint32_t events, void *userdata)
{
        (void)src;
        (void)events;
        struct shim_task *t = userdata;
        bool oom = false;
        struct us_error *err = NULL;
        if (t->backend->oom_event(t->impl, fd, &t->oom_count, &oom, &err) < 0) {
                /* A broken notification fd would spin the loop: stop watching. */
                us_log_warn("task %s: stop watching OOM: %s", t->id, us_error_text(err));
                us_error_free(err);
                t->oom_watch = us_loop_source_remove(t->oom_watch);
                t->oom_fd = us_close(t->oom_fd);
                return;
        }
        if (oom)
                shim_task_oom(t);
}

static void watch_oom(struct shim_task *t)
{
        /* Not every host has a memory controller: no OOM events there. */
        if (t->backend->oom_watch(t->impl, &t->oom_fd, &t->oom_count, NULL) < 0) {
                t->oom_fd = -1;
                return;
        }
        if (us_loop_add_fd(t->shim->loop, t->oom_fd, EPOLLIN, on_oom, t, &t->oom_watch, NULL) < 0)
                t->oom_fd = us_close(t->oom_fd);
}

static int write_pid_file(const char *bundle, pid_t pid)
{
        char path[PATH_MAX];
        if (snprintf(path, sizeof(path), "%s/init.pid", bundle) >= (int)sizeof(path))
                return -ENAMETOOLONG;
        _cleanup_fclose_ FILE *f = fopen(path, "we");
        if (!f)
                return -errno;
        fprintf(f, "%d", (int)pid);
        return 0;
}

/* The config path an operator gave the runtime handler (containerd's
 * runtimeoptions.v1.Options, as for Kata's ConfigPath), or NULL. */
static char *options_config_path(const Containerd__Task__V2__CreateTaskRequest *req)
{
        if (!req->options || !req->options->type_url)
                return NULL;
        const char *url = req->options->type_url;
        const char *slash = strrchr(url, '/');
        if (strcmp(slash ? slash + 1 : url, "runtimeoptions.v1.Options") != 0)
                return NULL;
        Runtimeoptions__V1__Options *o = runtimeoptions__v1__options__unpack(
                NULL, req->options->value.len, req->options->value.data);
        if (!o)
                return NULL;
        char *path = o->config_path && *o->config_path ? strdup(o->config_path) : NULL;
        runtimeoptions__v1__options__free_unpacked(o, NULL);
        return path;
}

static const char *available_kinds(char *buf, size_t size)
{
        size_t o = 0;
        buf[0] = '\0';
        for (int k = 0; k < POLICY_ISOLATION__COUNT; k++) {
                if (!shim_backend_for((enum policy_isolation)k))
                        continue;
                int n = snprintf(buf + o, size - o, "%s%s", o ? ", " : "",
                                 policy_isolation_name((enum policy_isolation)k));
                if (n < 0 || (size_t)n >= size - o)
                        break;
                o += (size_t)n;
        }
        return buf;
}

/* A mesh sidecar of a VM-kind pod: its spec rewritten to run on the host in
 * the pod's network namespace, by the container backend (shim/sidecar.h). */
static int host_sidecar(struct shim *shim, struct us_oci_spec *spec,
                        const struct shim_backend **ret, struct us_error **err)
{
        const char *netns = NULL, *hostname = NULL;
        const char *name = us_oci_spec_annotation(spec, CRI_CONTAINER_NAME);
        int r = shim->backend->host_namespaces(shim->backend_pod, &netns, &hostname, err);
        if (r >= 0)
                r = shim_sidecar_spec(spec, netns, hostname, err);
        if (r < 0)
                return us_error_wrap(err, r, "mesh sidecar %s", name);
        *ret = &shim_backend_container;
        return 0;
}

/* containerd hands a pod's annotations to the runtime only if the handler's
 * pod_annotations lists them: without that, a pod's unishim.io/isolation
 * never reaches us and the pod silently gets the default kind. We cannot
 * tell "not set" from "not passed", so say it once per pod, where the
 * operator looks, when a CRI pod starts without any of ours. */
static void note_missing_annotations(const struct us_oci_spec *spec, enum policy_isolation kind)
{
        if (!us_oci_spec_annotation(spec, CRI_CONTAINER_TYPE))
                return; /* not a CRI pod: ctr passes what it is given */
        for (size_t i = 0; i < spec->n_annotations; i++)
                if (strncmp(spec->annotations[i].key, UNISHIM_ANNOTATION_PREFIX,
                            strlen(UNISHIM_ANNOTATION_PREFIX)) == 0)
                        return;
        us_log_info("pod %s: no %s* annotation reached the shim: it runs as \"%s\" (the default). "
                    "If the pod sets one, list it in the runtime handler's pod_annotations "
                    "(pod_annotations = [\"%s*\"])",
                    us_oci_spec_annotation(spec, CRI_SANDBOX_NAME)
                            ?: us_oci_spec_annotation(spec, CRI_SANDBOX_ID) ?: "?",
                    UNISHIM_ANNOTATION_PREFIX, policy_isolation_name(kind), UNISHIM_ANNOTATION_PREFIX);
}

/* The pod's decision (kind, size, the operator's config) from the
 * operator's policy and the pod's annotations, and the backend that runs the
 * task: the kind's, or the container backend for a VM-kind pod's mesh
 * sidecars (*ret_sidecar). ret_decision->container is the caller's to
 * fill. */
static int decide_backend(struct shim *shim, const Containerd__Task__V2__CreateTaskRequest *req,
                          struct us_oci_spec *spec, struct shim_pod_decision *ret_decision,
                          const struct shim_backend **ret, bool *ret_sidecar, struct us_error **err)
{
        *ret_sidecar = false;
        if (!shim->config) {
                _cleanup_free_ char *path = options_config_path(req);
                int r = policy_config_load(path, &shim->config, err);
                if (r < 0)
                        return r;
        }
        enum policy_isolation kind;
        int r = policy_pod_isolation(shim->config, spec->annotations, spec->n_annotations, &kind,
                                     err);
        if (r < 0)
                return r;
        /* Decided, and so checked, for every kind, so that a bad value never
         * passes silently; only the VM kinds use it. */
        struct policy_vm_size size;
        r = vmpod_size(shim->config, kind, spec, &size, err);
        if (r < 0)
                return r;
        if (shim->kind_decided && kind != shim->kind)
                return us_error_msg(err, EINVAL,
                                    "annotation %s: container asks for isolation kind \"%s\" "
                                    "but its pod runs as \"%s\"",
                                    UNISHIM_ANNOTATION_ISOLATION, policy_isolation_name(kind),
                                    policy_isolation_name(shim->kind));
        const struct shim_backend *b = shim_backend_for(kind);
        if (!b) {
                char buf[64];
                const char *value = us_oci_spec_annotation(spec, UNISHIM_ANNOTATION_ISOLATION);
                return us_error_msg(err, ENOTSUP,
                                    "annotation %s: isolation kind \"%s\"%s is not available "
                                    "in this build (available: %s)",
                                    UNISHIM_ANNOTATION_ISOLATION, policy_isolation_name(kind),
                                    value ? "" : " (the configured default)",
                                    available_kinds(buf, sizeof(buf)));
        }
        ret_decision->kind = kind;
        ret_decision->config = shim->config;
        ret_decision->size = size;
        *ret = b;
        if (!shim->kind_decided)
                note_missing_annotations(spec, kind);
        if (!shim->kind_decided || !shim->backend || !shim->backend->host_namespaces)
                return 0;
        enum shim_sidecar_place place = shim_sidecar_place(shim->config, spec);
        if (place == SHIM_SIDECAR_NONE)
                return 0;
        /* Any pod can name a container istio-proxy: on the host it has the
         * container kind's isolation, which only a policy that allows that
         * kind may give it. Otherwise it stays in the VM with the rest. */
        if (place == SHIM_SIDECAR_IN_GUEST) {
                us_log_warn("container %s is a mesh sidecar but %s does not allow the container "
                            "kind: it runs in the VM",
                            us_oci_spec_annotation(spec, CRI_CONTAINER_NAME),
                            shim->config->path ? shim->config->path : "the built-in default");
                return 0;
        }
        *ret_sidecar = true;
        return host_sidecar(shim, spec, ret, err);
}

static void unlink_from(struct shim_task **list, struct shim_task *t)
{
        for (struct shim_task **pp = list; *pp; pp = &(*pp)->next) {
                if (*pp == t) {
                        *pp = t->next;
                        return;
                }
        }
}

/* Undoes a task whose create failed (any part of it). */
static void create_undo(struct shim *shim, struct shim_task *t)
{
        if (t->creating)
                unlink_from(&shim->creating, t);
        t->creating = false;
        if (t->impl) {
                (void)t->backend->kill(t->impl, SIGKILL, true, NULL, NULL);
                (void)t->backend->destroy(t->impl, NULL);
        }
        if (t->rootfs_mounted)
                (void)shim_rootfs_unmount(t->bundle, NULL);
        shim_task_free(t);
        /* The pod's first task failed and took its pod with it: the next
         * first task decides again. */
        if (!shim->tasks && !shim->creating && !shim->backend_pod) {
                shim->kind_decided = false;
                shim->backend = NULL;
        }
}

/* Everything of a Create up to the backend's: 0 when the backend finished
 * at once, -EINPROGRESS when it will (finish_create either way), or a
 * failure with nothing left. The task waits in shim->creating. */
static int create_task(struct shim *shim, const Containerd__Task__V2__CreateTaskRequest *req,
                       struct pending *pd, struct us_error **err)
{
        struct shim_task *t = calloc(1, sizeof(*t));
        if (!t)
                return us_errorf(err, ENOMEM, "allocate task");
        t->shim = shim;
        t->oom_fd = -1;
        t->init.task = t;
        int r = 0;
        /* Before the first goto: cleanup variables must not be jumped over. */
        _cleanup_free_ char *spec_json = NULL;
        size_t spec_json_len = 0;
        _cleanup_(us_oci_spec_free_cleanupp) struct us_oci_spec *spec = NULL;
        if (copy_str(&t->id, req->id) < 0 || copy_str(&t->bundle, req->bundle) < 0 ||
            copy_str(&t->init.stdin_path, req->stdin) < 0 ||
            copy_str(&t->init.stdout_path, req->stdout) < 0 ||
            copy_str(&t->init.stderr_path, req->stderr) < 0) {
                r = us_errorf(err, ENOMEM, "allocate task");
                goto fail;
        }
        t->init.terminal = req->terminal;

        r = us_oci_spec_read(req->bundle, &spec_json, &spec_json_len, err);
        if (r >= 0)
                r = us_oci_spec_parse(spec_json, spec_json_len, &spec, err);
        if (r < 0)
                goto fail;
        if (!spec->process) {
                r = us_error_msg(err, EINVAL, "config.json has no process");
                goto fail;
        }
        struct shim_pod_decision decision = {.kind = POLICY_ISOLATION_CONTAINER};
        bool sidecar = false;
        r = decide_backend(shim, req, spec, &decision, &t->backend, &sidecar, err);
        if (r < 0)
                goto fail;
        if (spec->process->terminal != req->terminal) {
                r = us_error_msg(err, EINVAL, "terminal is %s in config.json but %s in the request",
                                 spec->process->terminal ? "on" : "off",
                                 req->terminal ? "on" : "off");
                goto fail;
        }

        r = shim_rootfs_mount(req->bundle, req->rootfs, req->n_rootfs, err);
        if (r < 0)
                goto fail;
        t->rootfs_mounted = req->n_rootfs > 0;

        r = shim_stdio_open(shim->loop, req->stdin, req->stdout, req->stderr,
                            req->terminal && t->backend->host_pty, false, &t->init.stdio,
                            &t->init.stdio_fds, err);
        if (r < 0)
                goto fail;

        char rootfs[PATH_MAX];
        const char *root = spec->root_path ? spec->root_path : "rootfs";
        if (root[0] == '/')
                snprintf(rootfs, sizeof(rootfs), "%s", root);
        else if (snprintf(rootfs, sizeof(rootfs), "%s/%s", req->bundle, root) >=
                 (int)sizeof(rootfs)) {
                r = us_error_msg(err, ENAMETOOLONG, "rootfs path too long");
                goto fail;
        }

        decision.container = (struct us_container_config){
                .id = req->id,
                .bundle = req->bundle,
                .rootfs = rootfs,
                .spec = spec,
                .spec_json = spec_json,
                .spec_json_len = spec_json_len,
                .stdio = t->init.stdio_fds,
        };
        decision.rootfs_mounts = req->rootfs;
        decision.n_rootfs_mounts = req->n_rootfs;
        struct shim_backend_env env = {
                .loop = shim->loop,
                .namespace = shim->args->namespace,
                .debug = shim->args->debug,
                .pod = &shim->backend_pod,
                .process_exited = shim_task_process_exited,
                .oom = shim_task_oom,
        };
        t->creating = true;
        t->next = shim->creating;
        shim->creating = t;
        pd->task = t;
        pd->flag = sidecar;
        /* The pod's kind is decided now, not when the create finishes: a VM
         * backend's boot runs on the loop, and what the shim reaps meanwhile
         * (QEMU, virtiofsd) must reach it (shim_reap asks shim->backend). */
        if (!sidecar && !shim->kind_decided) {
                shim->kind = decision.kind;
                shim->kind_decided = true;
                shim->backend = t->backend;
        }
        r = t->backend->create(&env, t, &decision, &t->impl, &pd->pty, &pd->op, err);
        if (r == -EINPROGRESS || r >= 0) {
                spec = NULL; /* the backend's now */
                return r;
        }
        pd->task = NULL;
fail:
        create_undo(shim, t);
        return r;
}

static void finish_create(struct pending *pd, int r, struct us_error **err)
{
        struct shim *shim = pd->shim;
        struct shim_task *t = pd->task;
        if (r >= 0) {
                t->init.pid = t->backend->pid(t->impl);
                t->init.status = SHIM_PROCESS_CREATED;
                r = shim_stdio_attach(t->init.stdio, TAKE_FD(pd->pty), err);
        }
        if (r < 0) {
                create_undo(shim, t);
                us_error_wrap(err, r, "create task %s", pd->task_id);
                us_log_error("%s", us_error_text(*err));
                us_ttrpc_call_fail_error(pd->call, r, TAKE_PTR(*err));
                shim_maybe_exit(shim, false);
                return;
        }
        unlink_from(&shim->creating, t);
        t->creating = false;
        watch_oom(t);
        (void)write_pid_file(t->bundle, t->init.pid);
        t->next = shim->tasks;
        shim->tasks = t;
        shim->idle_timer = us_loop_source_remove(shim->idle_timer);

        /* The request is gone by now: its event fields come from its bytes. */
        Containerd__Task__V2__CreateTaskRequest *req =
                containerd__task__v2__create_task_request__unpack(NULL, pd->len, pd->data);
        Containerd__Task__V2__CreateTaskResponse resp =
                CONTAINERD__TASK__V2__CREATE_TASK_RESPONSE__INIT;
        resp.pid = (uint32_t)t->init.pid;
        us_ttrpc_call_reply(pd->call, &resp.base);
        if (!req)
                return;
        Containerd__Events__TaskIO io = CONTAINERD__EVENTS__TASK_IO__INIT;
        io.stdin = req->stdin;
        io.stdout = req->stdout;
        io.stderr = req->stderr;
        io.terminal = req->terminal;
        Containerd__Events__TaskCreate ev = CONTAINERD__EVENTS__TASK_CREATE__INIT;
        ev.container_id = req->id;
        ev.bundle = req->bundle;
        ev.n_rootfs = req->n_rootfs;
        ev.rootfs = req->rootfs;
        ev.io = &io;
        ev.pid = (uint32_t)t->init.pid;
        shim_publish(shim, "/tasks/create", &ev.base);
        containerd__task__v2__create_task_request__free_unpacked(req, NULL);
}

static void handle_create(struct us_ttrpc_call *call, const uint8_t *payload, size_t len,
                          void *userdata)
{
        struct shim *shim = userdata;
        _cleanup_pb_ Containerd__Task__V2__CreateTaskRequest *req = us_ttrpc_call_unpack(
                call, &containerd__task__v2__create_task_request__descriptor, NULL, payload, len);
        if (!req)
                return;

        if (!us_id_valid(req->id)) {
                us_ttrpc_call_fail(call, US_GRPC_INVALID_ARGUMENT, "invalid task id \"%s\"",
                                   req->id);
                return;
        }
        if (req->bundle[0] != '/') {
                us_ttrpc_call_fail(call, US_GRPC_INVALID_ARGUMENT,
                                   "bundle path \"%s\" is not absolute", req->bundle);
                return;
        }
        if (req->checkpoint[0]) {
                us_ttrpc_call_fail(call, US_GRPC_UNIMPLEMENTED,
                                   "restoring from a checkpoint is not supported");
                return;
        }
        if (shim_task_find(shim, req->id)) {
                us_ttrpc_call_fail(call, US_GRPC_ALREADY_EXISTS, "task %s already exists", req->id);
                return;
        }
        if (shim->shutting_down) {
                us_ttrpc_call_fail(call, US_GRPC_FAILED_PRECONDITION, "shim is shutting down");
                return;
        }

        struct shim_task *creating = shim->creating;
        while (creating && strcmp(creating->id, req->id) != 0)
                creating = creating->next;
        if (creating) {
                us_ttrpc_call_fail(call, US_GRPC_ALREADY_EXISTS, "task %s is being created",
                                   req->id);
                return;
        }
        struct pending *pd = pending_new(shim, call, req->id, NULL, finish_create);
        if (!pd)
                return;
        if (!(pd->data = malloc(len ? len : 1))) {
                pending_free(pd);
                us_ttrpc_call_fail(call, US_GRPC_RESOURCE_EXHAUSTED, "out of memory");
                return;
        }
        memcpy(pd->data, payload, len);
        pd->len = len;
        struct us_error *err = NULL;
        int r = create_task(shim, req, pd, &err);
        if (r < 0 && r != -EINPROGRESS) {
                us_error_wrap(&err, r, "create task %s", req->id);
                us_log_error("%s", us_error_text(err));
                us_ttrpc_call_fail_error(call, r, err);
                pending_free(pd);
                shim_maybe_exit(shim, false);
                return;
        }
        pending_run(pd, r, err);
}

static void finish_start(struct pending *pd, int r, struct us_error **err)
{
        struct shim_task *t = NULL;
        struct shim_process *p = pending_process(pd, &t, err);
        if (p)
                p->starting = false;
        else
                r = -ENOENT;
        if (r >= 0 && pd->exec_id) {
                p->pid = pd->pid;
                p->status = SHIM_PROCESS_RUNNING;
                p->exec_spec = us_oci_process_free(p->exec_spec);
                free(p->exec_spec_json);
                p->exec_spec_json = NULL;
                r = shim_stdio_attach(p->stdio, TAKE_FD(pd->pty), err);
        }
        if (r < 0) {
                if (p && p->status == SHIM_PROCESS_CREATED)
                        shim_process_start_failed(p);
                us_error_wrap(err, r, "start %s %s", pd->exec_id ? "exec" : "task",
                              pd->exec_id ? pd->exec_id : pd->task_id);
                us_log_error("%s", us_error_text(*err));
                us_ttrpc_call_fail_error(pd->call, r, TAKE_PTR(*err));
                return;
        }
        if (!pd->exec_id)
                p->status = SHIM_PROCESS_RUNNING;

        Containerd__Task__V2__StartResponse resp = CONTAINERD__TASK__V2__START_RESPONSE__INIT;
        resp.pid = (uint32_t)p->pid;
        us_ttrpc_call_reply(pd->call, &resp.base);

        if (pd->exec_id) {
                Containerd__Events__TaskExecStarted ev =
                        CONTAINERD__EVENTS__TASK_EXEC_STARTED__INIT;
                ev.container_id = t->id;
                ev.exec_id = p->exec_id;
                ev.pid = (uint32_t)p->pid;
                shim_publish(pd->shim, "/tasks/exec-started", &ev.base);
        } else {
                Containerd__Events__TaskStart ev = CONTAINERD__EVENTS__TASK_START__INIT;
                ev.container_id = t->id;
                ev.pid = (uint32_t)p->pid;
                shim_publish(pd->shim, "/tasks/start", &ev.base);
        }
}

static void handle_start(struct us_ttrpc_call *call, const uint8_t *payload, size_t len,
                         void *userdata)
{
        struct shim *shim = userdata;
        _cleanup_pb_ Containerd__Task__V2__StartRequest *req = us_ttrpc_call_unpack(
                call, &containerd__task__v2__start_request__descriptor, NULL, payload, len);
        if (!req)
                return;
        struct shim_task *t = NULL;
        struct shim_process *p = need_process(shim, call, req->id, req->exec_id, &t);
        if (!p)
                return;
        if (p->status != SHIM_PROCESS_CREATED || p->starting) {
                us_ttrpc_call_fail(call, US_GRPC_FAILED_PRECONDITION,
                                   "process %s of task %s is not in created state",
                                   p->exec_id ? p->exec_id : t->id, t->id);
                return;
        }
        if (p->exec_id && t->paused) {
                /* A process entering a frozen cgroup would freeze before
                 * its execve, and the call with it. */
                us_ttrpc_call_fail(call, US_GRPC_FAILED_PRECONDITION,
                                   "cannot exec in task %s: it is paused", t->id);
                return;
        }
        if (p->exec_id && t->init.status != SHIM_PROCESS_RUNNING) {
                us_ttrpc_call_fail(call, US_GRPC_FAILED_PRECONDITION,
                                   "cannot exec in task %s: it is not running", t->id);
                return;
        }
        struct pending *pd = pending_new(shim, call, t->id, p->exec_id, finish_start);
        if (!pd)
                return;
        struct us_error *err = NULL;
        p->starting = true;
        int r = 0;
        if (p->exec_id && p->stdio)
                r = shim_stdio_open_stdin(p->stdio, &p->stdio_fds, &err);
        if (r >= 0)
                r = p->exec_id ? t->backend->exec(t->impl, p->exec_id, p->exec_spec,
                                                  p->exec_spec_json, p->exec_spec_json_len,
                                                  &p->stdio_fds, &pd->pid, &pd->pty, &pd->op, &err)
                               : t->backend->start(t->impl, &pd->op, &err);
        pending_run(pd, r, err);
}

static void handle_delete(struct us_ttrpc_call *call, const uint8_t *payload, size_t len,
                          void *userdata)
{
        struct shim *shim = userdata;
        _cleanup_pb_ Containerd__Task__V2__DeleteRequest *req = us_ttrpc_call_unpack(
                call, &containerd__task__v2__delete_request__descriptor, NULL, payload, len);
        if (!req)
                return;
        struct shim_task *t = NULL;
        struct shim_process *p = need_process(shim, call, req->id, req->exec_id, &t);
        if (!p)
                return;
        if (p->status == SHIM_PROCESS_RUNNING || p->starting) {
                us_ttrpc_call_fail(call, US_GRPC_FAILED_PRECONDITION,
                                   "cannot delete %s process %s of task %s",
                                   p->starting ? "starting" : "running",
                                   p->exec_id ? p->exec_id : t->id, t->id);
                return;
        }
        if (p->status == SHIM_PROCESS_CREATED) {
                /* Never started: nothing will report its exit. The backend
                 * kills it: its pid may be the pod's VM, shared by every
                 * task of a sandbox pod. */
                struct us_error *kerr = NULL;
                int kr = p->exec_id
                                 ? (p->pid > 0 ? t->backend->kill_exec(t->impl, p->exec_id, p->pid,
                                                                       SIGKILL, NULL, &kerr)
                                               : 0)
                                 : t->backend->kill(t->impl, SIGKILL, true, NULL, &kerr);
                if (kr < 0 && kr != -ESRCH)
                        us_log_warn("delete task %s: kill the unstarted process: %s", t->id,
                                    us_error_text(kerr));
                us_error_free(kerr);
                p->status = SHIM_PROCESS_STOPPED;
                p->exit_status = 128 + SIGKILL;
                clock_gettime(CLOCK_REALTIME, &p->exited_at);
        }

        Google__Protobuf__Timestamp ts = shim_timestamp(&p->exited_at);
        Containerd__Task__V2__DeleteResponse resp = CONTAINERD__TASK__V2__DELETE_RESPONSE__INIT;
        resp.pid = (uint32_t)p->pid;
        resp.exit_status = p->exit_status;
        resp.exited_at = &ts;

        if (p->exec_id) {
                for (struct shim_process **pp = &t->execs; *pp; pp = &(*pp)->next) {
                        if (*pp == p) {
                                *pp = p->next;
                                break;
                        }
                }
                us_ttrpc_call_reply(call, &resp.base);
                shim_process_free(p);
                return;
        }

        struct us_error *err = NULL;
        if (t->backend->destroy(t->impl, &err) < 0) {
                us_log_warn("delete task %s: %s", t->id, us_error_text(err));
                err = us_error_free(err);
        }
        if (t->rootfs_mounted && shim_rootfs_unmount(t->bundle, &err) < 0) {
                us_log_warn("delete task %s: %s", t->id, us_error_text(err));
                err = us_error_free(err);
        }
        us_ttrpc_call_reply(call, &resp.base);

        Containerd__Events__TaskDelete ev = CONTAINERD__EVENTS__TASK_DELETE__INIT;
        ev.container_id = t->id;
        ev.pid = (uint32_t)p->pid;
        ev.exit_status = p->exit_status;
        ev.exited_at = &ts;
        ev.id = t->id;
        shim_publish(shim, "/tasks/delete", &ev.base);

        unlink_from(&shim->tasks, t);
        shim_task_free(t);
        shim_maybe_exit(shim, false);
}

static Containerd__V1__Types__Status status_of(const struct shim_task *t,
                                               const struct shim_process *p)
{
        switch (p->status) {
        case SHIM_PROCESS_CREATED:
                return CONTAINERD__V1__TYPES__STATUS__CREATED;
        case SHIM_PROCESS_RUNNING:
                return t->paused ? CONTAINERD__V1__TYPES__STATUS__PAUSED
                                 : CONTAINERD__V1__TYPES__STATUS__RUNNING;
        case SHIM_PROCESS_STOPPED:
                return CONTAINERD__V1__TYPES__STATUS__STOPPED;
        }
        return CONTAINERD__V1__TYPES__STATUS__UNKNOWN;
}

static void handle_state(struct us_ttrpc_call *call, const uint8_t *payload, size_t len,
                         void *userdata)
{
        struct shim *shim = userdata;
        _cleanup_pb_ Containerd__Task__V2__StateRequest *req = us_ttrpc_call_unpack(
                call, &containerd__task__v2__state_request__descriptor, NULL, payload, len);
        if (!req)
                return;
        struct shim_task *t = NULL;
        struct shim_process *p = need_process(shim, call, req->id, req->exec_id, &t);
        if (!p)
                return;
        Google__Protobuf__Timestamp ts = shim_timestamp(&p->exited_at);
        Containerd__Task__V2__StateResponse resp = CONTAINERD__TASK__V2__STATE_RESPONSE__INIT;
        resp.id = t->id;
        resp.bundle = t->bundle;
        resp.pid = (uint32_t)p->pid;
        resp.status = status_of(t, p);
        resp.stdin = p->stdin_path;
        resp.stdout = p->stdout_path;
        resp.stderr = p->stderr_path;
        resp.terminal = p->terminal;
        resp.exit_status = p->exit_status;
        if (p->status == SHIM_PROCESS_STOPPED)
                resp.exited_at = &ts;
        resp.exec_id = p->exec_id ? p->exec_id : (char *)"";
        us_ttrpc_call_reply(call, &resp.base);
}

static void finish_reply(struct pending *pd, int r, struct us_error **err)
{
        if (r < 0) {
                us_ttrpc_call_fail_error(pd->call, r, TAKE_PTR(*err));
                return;
        }
        us_ttrpc_call_reply(pd->call, NULL);
}

static void finish_kill(struct pending *pd, int r, struct us_error **err)
{
        if (r == -ESRCH) {
                us_ttrpc_call_fail(pd->call, US_GRPC_NOT_FOUND, "process already finished");
                return;
        }
        finish_reply(pd, r, err);
}

static void handle_kill(struct us_ttrpc_call *call, const uint8_t *payload, size_t len,
                        void *userdata)
{
        struct shim *shim = userdata;
        _cleanup_pb_ Containerd__Task__V2__KillRequest *req = us_ttrpc_call_unpack(
                call, &containerd__task__v2__kill_request__descriptor, NULL, payload, len);
        if (!req)
                return;
        struct shim_task *t = NULL;
        struct shim_process *p = need_process(shim, call, req->id, req->exec_id, &t);
        if (!p)
                return;
        if (req->signal == 0 || req->signal >= (uint32_t)_NSIG) {
                us_ttrpc_call_fail(call, US_GRPC_INVALID_ARGUMENT, "invalid signal %u",
                                   req->signal);
                return;
        }
        int sig = (int)req->signal;
        if (p->exec_id ? p->status != SHIM_PROCESS_RUNNING
                       : p->status == SHIM_PROCESS_STOPPED && !req->all) {
                us_ttrpc_call_fail(call, US_GRPC_NOT_FOUND, "process already finished");
                return;
        }
        struct pending *pd = pending_new(shim, call, t->id, p->exec_id, finish_kill);
        if (!pd)
                return;
        struct us_error *err = NULL;
        int r = p->exec_id ? t->backend->kill_exec(t->impl, p->exec_id, p->pid, sig, &pd->op, &err)
                           : t->backend->kill(t->impl, sig, req->all, &pd->op, &err);
        pending_run(pd, r, err);
}

static void handle_exec(struct us_ttrpc_call *call, const uint8_t *payload, size_t len,
                        void *userdata)
{
        struct shim *shim = userdata;
        _cleanup_pb_ Containerd__Task__V2__ExecProcessRequest *req = us_ttrpc_call_unpack(
                call, &containerd__task__v2__exec_process_request__descriptor, NULL, payload, len);
        if (!req)
                return;
        struct shim_task *t = need_task(shim, call, req->id);
        if (!t)
                return;
        if (!us_id_valid(req->exec_id)) {
                us_ttrpc_call_fail(call, US_GRPC_INVALID_ARGUMENT, "invalid exec id \"%s\"",
                                   req->exec_id);
                return;
        }
        if (shim_task_process(t, req->exec_id)) {
                us_ttrpc_call_fail(call, US_GRPC_ALREADY_EXISTS, "exec %s already exists",
                                   req->exec_id);
                return;
        }
        if (t->init.status == SHIM_PROCESS_STOPPED) {
                us_ttrpc_call_fail(call, US_GRPC_FAILED_PRECONDITION,
                                   "cannot exec in stopped task %s", t->id);
                return;
        }
        if (!req->spec) {
                us_ttrpc_call_fail(call, US_GRPC_INVALID_ARGUMENT, "exec %s has no process spec",
                                   req->exec_id);
                return;
        }

        struct us_error *err = NULL;
        struct shim_process *p = calloc(1, sizeof(*p));
        if (!p) {
                us_ttrpc_call_fail(call, US_GRPC_RESOURCE_EXHAUSTED, "out of memory");
                return;
        }
        p->task = t;
        p->terminal = req->terminal;
        int r = 0;
        if (copy_str(&p->exec_id, req->exec_id) < 0 || copy_str(&p->stdin_path, req->stdin) < 0 ||
            copy_str(&p->stdout_path, req->stdout) < 0 ||
            copy_str(&p->stderr_path, req->stderr) < 0)
                r = us_errorf(&err, ENOMEM, "allocate exec");
        if (r >= 0)
                r = us_oci_process_parse((const char *)req->spec->value.data, req->spec->value.len,
                                         &p->exec_spec, &err);
        if (r >= 0) {
                p->exec_spec_json = malloc(req->spec->value.len + 1);
                if (!p->exec_spec_json) {
                        r = us_errorf(&err, ENOMEM, "allocate exec");
                } else {
                        memcpy(p->exec_spec_json, req->spec->value.data, req->spec->value.len);
                        p->exec_spec_json[req->spec->value.len] = '\0';
                        p->exec_spec_json_len = req->spec->value.len;
                }
        }
        if (r >= 0)
                r = shim_stdio_open(shim->loop, req->stdin, req->stdout, req->stderr,
                                    req->terminal && t->backend->host_pty, true, &p->stdio,
                                    &p->stdio_fds, &err);
        if (r < 0) {
                us_error_wrap(&err, r, "exec %s in task %s", req->exec_id, t->id);
                us_ttrpc_call_fail_error(call, r, err);
                shim_process_free(p);
                return;
        }
        p->status = SHIM_PROCESS_CREATED;
        p->next = t->execs;
        t->execs = p;
        us_ttrpc_call_reply(call, NULL);

        Containerd__Events__TaskExecAdded ev = CONTAINERD__EVENTS__TASK_EXEC_ADDED__INIT;
        ev.container_id = t->id;
        ev.exec_id = p->exec_id;
        shim_publish(shim, "/tasks/exec-added", &ev.base);
}

static void handle_resize_pty(struct us_ttrpc_call *call, const uint8_t *payload, size_t len,
                              void *userdata)
{
        struct shim *shim = userdata;
        _cleanup_pb_ Containerd__Task__V2__ResizePtyRequest *req = us_ttrpc_call_unpack(
                call, &containerd__task__v2__resize_pty_request__descriptor, NULL, payload, len);
        if (!req)
                return;
        struct shim_task *t = NULL;
        struct shim_process *p = need_process(shim, call, req->id, req->exec_id, &t);
        if (!p)
                return;
        struct pending *pd = pending_new(shim, call, t->id, p->exec_id, finish_reply);
        if (!pd)
                return;
        struct us_error *err = NULL;
        int r;
        if (t->backend->resize)
                r = t->backend->resize(t->impl, p->exec_id, req->width, req->height, &pd->op, &err);
        else if (p->stdio)
                r = shim_stdio_resize(p->stdio, req->width, req->height, &err);
        else
                r = us_error_msg(&err, ENOTTY, "process has no terminal");
        pending_run(pd, r, err);
}

static void handle_close_io(struct us_ttrpc_call *call, const uint8_t *payload, size_t len,
                            void *userdata)
{
        struct shim *shim = userdata;
        _cleanup_pb_ Containerd__Task__V2__CloseIORequest *req = us_ttrpc_call_unpack(
                call, &containerd__task__v2__close_iorequest__descriptor, NULL, payload, len);
        if (!req)
                return;
        struct shim_task *t = NULL;
        struct shim_process *p = need_process(shim, call, req->id, req->exec_id, &t);
        if (!p)
                return;
        if (req->stdin && p->stdio)
                shim_stdio_close_stdin(p->stdio);
        if (req->stdin && t->backend->close_stdin) {
                struct us_error *err = NULL;
                if (t->backend->close_stdin(t->impl, p->exec_id, &err) < 0) {
                        us_log_warn("close stdin of %s: %s", p->exec_id ? p->exec_id : t->id,
                                    us_error_text(err));
                        us_error_free(err);
                }
        }
        us_ttrpc_call_reply(call, NULL);
}

static void finish_pids(struct pending *pd, int r, struct us_error **err)
{
        if (r < 0) {
                us_ttrpc_call_fail_error(pd->call, r, TAKE_PTR(*err));
                return;
        }
        size_t n = pd->n;
        _cleanup_free_ Containerd__V1__Types__ProcessInfo *infos =
                calloc(n ? n : 1, sizeof(*infos));
        _cleanup_free_ Containerd__V1__Types__ProcessInfo **ptrs = calloc(n ? n : 1, sizeof(*ptrs));
        if (!infos || !ptrs) {
                us_ttrpc_call_fail(pd->call, US_GRPC_RESOURCE_EXHAUSTED, "out of memory");
                return;
        }
        for (size_t i = 0; i < n; i++) {
                containerd__v1__types__process_info__init(&infos[i]);
                infos[i].pid = (uint32_t)pd->pids[i];
                ptrs[i] = &infos[i];
        }
        Containerd__Task__V2__PidsResponse resp = CONTAINERD__TASK__V2__PIDS_RESPONSE__INIT;
        resp.n_processes = n;
        resp.processes = ptrs;
        us_ttrpc_call_reply(pd->call, &resp.base);
}

static void handle_pids(struct us_ttrpc_call *call, const uint8_t *payload, size_t len,
                        void *userdata)
{
        struct shim *shim = userdata;
        _cleanup_pb_ Containerd__Task__V2__PidsRequest *req = us_ttrpc_call_unpack(
                call, &containerd__task__v2__pids_request__descriptor, NULL, payload, len);
        if (!req)
                return;
        struct shim_task *t = need_task(shim, call, req->id);
        if (!t)
                return;
        struct pending *pd = pending_new(shim, call, t->id, NULL, finish_pids);
        if (!pd)
                return;
        struct us_error *err = NULL;
        int r = t->backend->pids(t->impl, &pd->pids, &pd->n, &pd->op, &err);
        pending_run(pd, r, err);
}

static void finish_pause_or_resume(struct pending *pd, int r, struct us_error **err)
{
        struct shim_task *t = NULL;
        if (r >= 0 && !pending_process(pd, &t, err))
                r = -ENOENT;
        if (r < 0) {
                us_ttrpc_call_fail_error(pd->call, r, TAKE_PTR(*err));
                return;
        }
        t->paused = pd->flag;
        us_ttrpc_call_reply(pd->call, NULL);
        if (pd->flag) {
                Containerd__Events__TaskPaused ev = CONTAINERD__EVENTS__TASK_PAUSED__INIT;
                ev.container_id = t->id;
                shim_publish(pd->shim, "/tasks/paused", &ev.base);
        } else {
                Containerd__Events__TaskResumed ev = CONTAINERD__EVENTS__TASK_RESUMED__INIT;
                ev.container_id = t->id;
                shim_publish(pd->shim, "/tasks/resumed", &ev.base);
        }
}

static void pause_or_resume(struct us_ttrpc_call *call, struct shim *shim, const char *id,
                            bool pause)
{
        struct shim_task *t = need_task(shim, call, id);
        if (!t)
                return;
        if (t->init.status != SHIM_PROCESS_RUNNING) {
                us_ttrpc_call_fail(call, US_GRPC_FAILED_PRECONDITION, "task %s is not running",
                                   t->id);
                return;
        }
        struct pending *pd = pending_new(shim, call, t->id, NULL, finish_pause_or_resume);
        if (!pd)
                return;
        pd->flag = pause;
        struct us_error *err = NULL;
        int r = pause ? t->backend->pause(t->impl, &pd->op, &err)
                      : t->backend->resume(t->impl, &pd->op, &err);
        pending_run(pd, r, err);
}

static void handle_pause(struct us_ttrpc_call *call, const uint8_t *payload, size_t len,
                         void *userdata)
{
        _cleanup_pb_ Containerd__Task__V2__PauseRequest *req = us_ttrpc_call_unpack(
                call, &containerd__task__v2__pause_request__descriptor, NULL, payload, len);
        if (!req)
                return;
        pause_or_resume(call, userdata, req->id, true);
}

static void handle_resume(struct us_ttrpc_call *call, const uint8_t *payload, size_t len,
                          void *userdata)
{
        _cleanup_pb_ Containerd__Task__V2__ResumeRequest *req = us_ttrpc_call_unpack(
                call, &containerd__task__v2__resume_request__descriptor, NULL, payload, len);
        if (!req)
                return;
        pause_or_resume(call, userdata, req->id, false);
}

static void handle_checkpoint(struct us_ttrpc_call *call, const uint8_t *payload, size_t len,
                              void *userdata)
{
        (void)payload;
        (void)len;
        (void)userdata;
        us_ttrpc_call_fail(call, US_GRPC_UNIMPLEMENTED, "checkpoint is not supported by unishim");
}

static void finish_update(struct pending *pd, int r, struct us_error **err)
{
        if (r < 0)
                us_error_wrap(err, r, "update task %s", pd->task_id);
        finish_reply(pd, r, err);
}

static void handle_update(struct us_ttrpc_call *call, const uint8_t *payload, size_t len,
                          void *userdata)
{
        struct shim *shim = userdata;
        _cleanup_pb_ Containerd__Task__V2__UpdateTaskRequest *req = us_ttrpc_call_unpack(
                call, &containerd__task__v2__update_task_request__descriptor, NULL, payload, len);
        if (!req)
                return;
        struct shim_task *t = need_task(shim, call, req->id);
        if (!t)
                return;
        if (!req->resources) {
                us_ttrpc_call_fail(call, US_GRPC_INVALID_ARGUMENT,
                                   "update of task %s has no resources", t->id);
                return;
        }
        struct pending *pd = pending_new(shim, call, t->id, NULL, finish_update);
        if (!pd)
                return;
        struct us_error *err = NULL;
        struct us_oci_resources *res = NULL;
        int r = us_oci_resources_parse((const char *)req->resources->value.data,
                                       req->resources->value.len, &res, &err);
        /* res and the text are ours until the backend returns: one that
         * finishes later keeps what it needs. */
        if (r >= 0)
                r = t->backend->update(t->impl, res, (const char *)req->resources->value.data,
                                       req->resources->value.len, &pd->op, &err);
        us_oci_resources_free(res);
        pending_run(pd, r, err);
}

static void handle_wait(struct us_ttrpc_call *call, const uint8_t *payload, size_t len,
                        void *userdata)
{
        struct shim *shim = userdata;
        _cleanup_pb_ Containerd__Task__V2__WaitRequest *req = us_ttrpc_call_unpack(
                call, &containerd__task__v2__wait_request__descriptor, NULL, payload, len);
        if (!req)
                return;
        struct shim_task *t = NULL;
        struct shim_process *p = need_process(shim, call, req->id, req->exec_id, &t);
        if (!p)
                return;
        shim_process_add_waiter(p, call);
}

static void finish_stats(struct pending *pd, int r, struct us_error **err)
{
        if (r < 0) {
                us_ttrpc_call_fail_error(pd->call, r, TAKE_PTR(*err));
                return;
        }
        Google__Protobuf__Any any = GOOGLE__PROTOBUF__ANY__INIT;
        any.type_url = (char *)io__containerd__cgroups__v1__metrics__descriptor.name;
        any.value.data = pd->data;
        any.value.len = pd->len;
        Containerd__Task__V2__StatsResponse resp = CONTAINERD__TASK__V2__STATS_RESPONSE__INIT;
        resp.stats = &any;
        us_ttrpc_call_reply(pd->call, &resp.base);
}

static void handle_stats(struct us_ttrpc_call *call, const uint8_t *payload, size_t len,
                         void *userdata)
{
        struct shim *shim = userdata;
        _cleanup_pb_ Containerd__Task__V2__StatsRequest *req = us_ttrpc_call_unpack(
                call, &containerd__task__v2__stats_request__descriptor, NULL, payload, len);
        if (!req)
                return;
        struct shim_task *t = need_task(shim, call, req->id);
        if (!t)
                return;
        struct pending *pd = pending_new(shim, call, t->id, NULL, finish_stats);
        if (!pd)
                return;
        struct us_error *err = NULL;
        int r = t->backend->stats(t->impl, &pd->data, &pd->len, &pd->op, &err);
        pending_run(pd, r, err);
}

static void handle_connect(struct us_ttrpc_call *call, const uint8_t *payload, size_t len,
                           void *userdata)
{
        struct shim *shim = userdata;
        _cleanup_pb_ Containerd__Task__V2__ConnectRequest *req = us_ttrpc_call_unpack(
                call, &containerd__task__v2__connect_request__descriptor, NULL, payload, len);
        if (!req)
                return;
        Containerd__Task__V2__ConnectResponse resp = CONTAINERD__TASK__V2__CONNECT_RESPONSE__INIT;
        resp.shim_pid = (uint32_t)getpid();
        struct shim_task *t = shim_task_find(shim, req->id);
        if (t)
                resp.task_pid = (uint32_t)t->init.pid;
        resp.version = (char *)shim_version;
        us_ttrpc_call_reply(call, &resp.base);
}

static void handle_shutdown(struct us_ttrpc_call *call, const uint8_t *payload, size_t len,
                            void *userdata)
{
        struct shim *shim = userdata;
        _cleanup_pb_ Containerd__Task__V2__ShutdownRequest *req = us_ttrpc_call_unpack(
                call, &containerd__task__v2__shutdown_request__descriptor, NULL, payload, len);
        if (!req)
                return;
        us_ttrpc_call_reply(call, NULL);
        /* Other tasks of the pod keep the shim alive; containerd asks for
         * every task it deletes. */
        shim_maybe_exit(shim, true);
}

static const struct {
        const char *method;
        us_ttrpc_method_fn fn;
} task_methods[] = {
        {"State", handle_state},
        {"Create", handle_create},
        {"Start", handle_start},
        {"Delete", handle_delete},
        {"Pids", handle_pids},
        {"Pause", handle_pause},
        {"Resume", handle_resume},
        {"Checkpoint", handle_checkpoint},
        {"Kill", handle_kill},
        {"Exec", handle_exec},
        {"ResizePty", handle_resize_pty},
        {"CloseIO", handle_close_io},
        {"Update", handle_update},
        {"Wait", handle_wait},
        {"Stats", handle_stats},
        {"Connect", handle_connect},
        {"Shutdown", handle_shutdown},
};

int shim_service_register(struct shim *shim, struct us_error **err)
{
        for (size_t i = 0; i < US_ELEMENTSOF(task_methods); i++) {
                int r = us_ttrpc_server_register(shim->server, TASK_SERVICE, task_methods[i].method,
                                                 task_methods[i].fn, shim, err);
                if (r < 0)
                        return r;
        }
        return 0;
}
