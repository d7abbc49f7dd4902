/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The sandbox backend (shim/sandbox/backend.c) against a fake guest agent
 * (fake-agent.h), without QEMU: a pod's boot steps, a container's create,
 * start, exec, kill, exit, stats, pids and delete, the OOM events, and
 * what a hostile or broken guest does to each -- an error, garbage, too
 * much, no answer (the pod is declared dead at its deadline, from the
 * loop), events for containers it does not have.
 *
 * The backend's pod and task are private to backend.c, which is included
 * here: the test builds a pod as pod_start() leaves one -- without its
 * host side (state dir, network, cgroup, share, VM), which needs root and
 * QEMU and has its own tests -- with its agent channel on the fake
 * (sandbox_agent_attach). A container's spec is sent as the guest gets it
 * (send_create), without the share its rootfs would be bind-mounted into.
 *
 * Waits are for events (fake_run_until's guard only tells a hang from a
 * slow machine); LATE_MS, the agent deadline of the lateness tests, is the
 * thing tested.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include "unit.h"

#include "shim/sandbox/backend.c"

#include <fcntl.h>
#include <sys/stat.h>

#include "containerd/shim.pb-c.h"
#include "shim/events.h"
#include "base/fs-util.h"
#include "shim/shim.h"
#include "shim/task.h"

#include "fake-agent.h"

#define ALARM_SECS (unit_wait_ms(60000) / 1000)
#define LATE_MS    50

/* What containerd would hear of one task (its cookie). */
struct task_events {
        int exits;
        uint32_t status;
        char exec[32];
        int ooms;
};

static void ev_exited(void *cookie, const char *exec_id, uint32_t status)
{
        struct task_events *e = cookie;
        e->exits++;
        e->status = status;
        snprintf(e->exec, sizeof(e->exec), "%s", exec_id ? exec_id : "");
}

static void ev_oom(void *cookie)
{
        ((struct task_events *)cookie)->ooms++;
}

struct bx {
        struct us_loop *loop;
        struct fake_agent *fake;
        void *pod_slot;
        struct shim_backend_env env;
};

static struct sandbox_pod *pod_of(struct bx *b)
{
        return b->pod_slot;
}

/* A pod as pod_start() leaves it, its agent on the fake, booting. */
static struct bx *bx_new(unsigned timeout_ms)
{
        alarm(ALARM_SECS);
        struct bx *b = calloc(1, sizeof(*b));
        assert_non_null(b);
        assert_int_equal(us_loop_new(&b->loop, NULL), 0);
        b->fake = fake_agent_new(b->loop);
        b->env = (struct shim_backend_env){.loop = b->loop,
                                           .namespace = "test",
                                           .pod = &b->pod_slot,
                                           .process_exited = ev_exited,
                                           .oom = ev_oom};
        struct sandbox_pod *pod = calloc(1, sizeof(*pod));
        assert_non_null(pod);
        pod->process_exited = ev_exited;
        pod->oom = ev_oom;
        sandbox_idmap_init(&pod->idmap);
        pod->cold.tap_fd = -1;
        pod->tentry = (struct vmm_template_entry)VMM_TEMPLATE_ENTRY_INIT;
        pod->vmpod.loop = b->loop;
        pod->vmpod.id = strdup("pod-1");
        pod->vmpod.hostname = strdup("pod-host");
        pod->vmpod.teardown = pod_teardown_cb;
        pod->vmpod.userdata = pod;
        pod->agent.pod_id = pod->vmpod.id;
        pod->agent.timeout_ms = timeout_ms;
        pod->agent.lost = agent_lost;
        pod->agent.userdata = pod;
        struct us_error *err = NULL;
        if (sandbox_agent_attach(&pod->agent, b->loop, b->fake->shim_agent_fd,
                                 b->fake->shim_events_fd, &err) < 0)
                fail_msg("attach: %s", us_error_text(err));
        b->fake->shim_agent_fd = b->fake->shim_events_fd = -1;
        b->pod_slot = pod;
        return b;
}

static void bx_free(struct bx *b)
{
        struct sandbox_pod *pod = pod_of(b);
        while (pod && pod->tasks)
                sandbox_free(pod->tasks);
        pod_free(pod);
        fake_agent_free(b->fake);
        b->loop = us_loop_free(b->loop);
        free(b);
        alarm(0);
}

/* A task of the pod as sandbox_create() makes it, and its create_ctx. */
static struct create_ctx *task_new(struct bx *b, const char *id, bool is_vm, bool started_pod,
                                   struct task_events *ev, struct fake_op *op)
{
        struct sandbox_pod *pod = pod_of(b);
        struct sandbox_task *t = calloc(1, sizeof(*t));
        struct create_ctx *ctx = calloc(1, sizeof(*ctx));
        assert_non_null(t);
        assert_non_null(ctx);
        t->id = strdup(id);
        t->pod = pod;
        t->cookie = ev;
        t->is_vm = is_vm;
        /* Its files are in the pod's share (there is none here). */
        t->shared = !is_vm;
        t->ctr = (struct sandbox_container){.agent = &pod->agent,
                                            .loop = pod->vmpod.loop,
                                            .id = t->id,
                                            .owner = t,
                                            .exited = task_process_exited};
        t->next = pod->tasks;
        pod->tasks = t;
        struct sandbox_proc *init = NULL;
        const struct us_stdio none = {-1, -1, -1};
        assert_int_equal(sandbox_proc_new(&t->ctr, NULL, &none, &init, NULL), 0);
        fake_op_init(op);
        ctx->t = t;
        ctx->op = &op->op;
        ctx->pod_slot = &b->pod_slot;
        ctx->started_pod = started_pod;
        ctx->ret_impl = &op->impl;
        ctx->ret_pty = &op->pty;
        if (!is_vm) {
                ctx->json = strdup("{\"ociVersion\": \"1.0.2\"}");
                ctx->json_len = strlen(ctx->json);
        }
        return ctx;
}

static bool op_finished(void *op)
{
        return ((struct fake_op *)op)->n > 0;
}

static void wait_op(struct bx *b, struct fake_op *op)
{
        assert_int_equal(fake_run_until(b->loop, op_finished, op), 0);
        assert_int_equal(op->n, 1);
}

/* A call is held by the fake. */
struct held_arg {
        struct fake_agent *fake;
        const char *method;
        size_t n; /* calls of method made */
};

static bool is_held(void *arg)
{
        struct held_arg *h = arg;
        return fake_held(h->fake, h->method) != NULL;
}

static bool has_calls(void *arg)
{
        struct held_arg *h = arg;
        return fake_count(h->fake, h->method) >= h->n;
}

static void wait_held(struct bx *b, const char *method)
{
        struct held_arg h = {b->fake, method, 0};
        assert_int_equal(fake_run_until(b->loop, is_held, &h), 0);
}

static void wait_calls(struct bx *b, const char *method, size_t n)
{
        struct held_arg h = {b->fake, method, n};
        assert_int_equal(fake_run_until(b->loop, has_calls, &h), 0);
}

static bool exited(void *ev)
{
        return ((struct task_events *)ev)->exits > 0;
}

static bool torn_down(void *pod)
{
        return ((struct sandbox_pod *)pod)->vmpod.torn_down;
}

/* The pod's boot: Check, AddStorage, UpdateNetwork; the VM task is then
 * created. */
static void boot(struct bx *b, struct task_events *ev)
{
        struct fake_op op;
        struct create_ctx *ctx = task_new(b, "pod-1", true, true, ev, &op);
        struct us_error *err = NULL;
        int r = send_check(ctx, &err);
        if (r != -EINPROGRESS)
                fail_msg("boot: %d %s", r, us_error_text(err));
        wait_op(b, &op);
        if (op.r != 0)
                fail_msg("boot: %s", op.msg);
        assert_ptr_equal(op.impl, pod_of(b)->tasks);
        assert_int_equal(op.pty, -1);
        assert_false(pod_of(b)->agent.booting);
}

/* A container created in the booted pod; its impl. */
static struct sandbox_task *create(struct bx *b, const char *id, struct task_events *ev,
                                   struct fake_op *op)
{
        struct create_ctx *ctx = task_new(b, id, false, false, ev, op);
        struct us_error *err = NULL;
        int r = send_create(ctx, &err);
        if (r != -EINPROGRESS)
                fail_msg("create: %d %s", r, us_error_text(err));
        wait_op(b, op);
        return op->r == 0 ? op->impl : NULL;
}

/* The start of most cases: a booted pod (its VM task's events in *vm_ev)
 * with container ctr-1 created (its events in *ev). */
static struct sandbox_task *booted_ctr(struct bx **ret_b, struct task_events *vm_ev,
                                       struct task_events *ev, struct fake_op *op)
{
        struct bx *b = bx_new(10000);
        boot(b, vm_ev);
        struct sandbox_task *t = create(b, "ctr-1", ev, op);
        assert_non_null(t);
        *ret_b = b;
        return t;
}

/* ---- the normal paths ---- */

static void lifecycle(void **state)
{
        (void)state;
        struct bx *b = bx_new(10000);
        struct task_events vm_ev = {0}, ev = {0};
        boot(b, &vm_ev);
        /* What the boot told the guest. */
        assert_non_null(fake_call_of(b->fake, "Check", 0));
        assert_string_equal(fake_call_of(b->fake, "AddStorage", 0)->storage,
                            "virtiofs unishim /run/unishim/shared ");
        assert_non_null(fake_call_of(b->fake, "UpdateNetwork", 0));
        wait_held(b, "GetOOMEvent"); /* OOM kills are watched from now on */

        fake_set(b->fake, "WaitProcess", FAKE_HOLD, 0);
        struct fake_op op;
        struct sandbox_task *t = create(b, "ctr-1", &ev, &op);
        assert_non_null(t);
        assert_true(t->in_guest);
        assert_string_equal(fake_call_of(b->fake, "CreateContainer", 0)->container_id, "ctr-1");
        wait_held(b, "WaitProcess"); /* the init's exit is waited for */

        fake_op_init(&op);
        assert_int_equal(shim_backend_sandbox.start(t, &op.op, NULL), -EINPROGRESS);
        wait_op(b, &op);
        assert_int_equal(op.r, 0);
        assert_string_equal(fake_call_of(b->fake, "StartContainer", 0)->container_id, "ctr-1");

        fake_op_init(&op);
        const char *pjson = "{\"args\": [\"true\"], \"cwd\": \"/\"}";
        const struct us_stdio none = {-1, -1, -1};
        assert_int_equal(shim_backend_sandbox.exec(t, "e1", NULL, pjson, strlen(pjson), &none,
                                                   &op.pid, &op.pty, &op.op, NULL),
                         -EINPROGRESS);
        wait_op(b, &op);
        assert_int_equal(op.r, 0);
        assert_int_equal(op.pty, -1);
        struct fake_call *ex = fake_call_of(b->fake, "ExecProcess", 0);
        assert_string_equal(ex->container_id, "ctr-1");
        assert_string_equal(ex->exec_id, "e1");
        assert_non_null(sandbox_proc_find(&t->ctr, "e1"));

        fake_op_init(&op);
        assert_int_equal(shim_backend_sandbox.kill(t, SIGTERM, false, &op.op, NULL), -EINPROGRESS);
        wait_op(b, &op);
        assert_int_equal(op.r, 0);
        assert_non_null(fake_call_of(b->fake, "SignalProcess", 0));

        /* The exec's exit, then the init's. */
        wait_calls(b, "WaitProcess", 2);
        b->fake->exit_status = 0;
        struct fake_call *w = fake_held(b->fake, "WaitProcess");
        assert_string_equal(w->exec_id, ""); /* the init's came first */
        b->fake->exit_status = 143;
        assert_true(fake_release(b->fake, "WaitProcess", FAKE_ANSWER, 0));
        assert_int_equal(fake_run_until(b->loop, exited, &ev), 0);
        assert_int_equal(ev.exits, 1);
        assert_int_equal(ev.status, 143);
        assert_string_equal(ev.exec, "");
        b->fake->exit_status = 0;
        assert_true(fake_release(b->fake, "WaitProcess", FAKE_ANSWER, 0));
        ev.exits = 0;
        assert_int_equal(fake_run_until(b->loop, exited, &ev), 0);
        assert_int_equal(ev.status, 0);
        assert_string_equal(ev.exec, "e1");

        /* Delete: the guest removes it; the pod (with its VM task) stays. */
        assert_int_equal(shim_backend_sandbox.destroy(t, NULL), 0);
        wait_calls(b, "RemoveContainer", 1);
        assert_string_equal(fake_call_of(b->fake, "RemoveContainer", 0)->container_id, "ctr-1");
        shim_backend_sandbox.free(t);
        assert_false(pod_of(b)->vmpod.torn_down);
        assert_int_equal(vm_ev.exits, 0);
        bx_free(b);
}

/* sandbox.shared_fs "9p": the same boot, the share mounted as 9p with the
 * options the guest needs (the agent checks each: no comma in one). */
static void ninep_storage(void **state)
{
        (void)state;
        struct bx *b = bx_new(10000);
        struct task_events vm_ev = {0};
        pod_of(b)->ninep = true;
        boot(b, &vm_ev);
        assert_string_equal(fake_call_of(b->fake, "AddStorage", 0)->storage,
                            "9p unishim /run/unishim/shared "
                            "trans=virtio,version=9p2000.L,cache=mmap,msize=524288");
        for (size_t i = 0; i < US_ELEMENTSOF(ninep_options); i++)
                assert_null(strchr(ninep_options[i], ','));
        bx_free(b);
}

/* OOM events: the known container's reaches containerd; one for a
 * container the pod does not have, or garbage, is dropped and the watch
 * goes on. */
static void oom_events(void **state)
{
        (void)state;
        struct bx *b;
        struct task_events vm_ev = {0}, ev = {0};
        struct fake_op op;
        (void)booted_ctr(&b, &vm_ev, &ev, &op);
        wait_held(b, "GetOOMEvent");
        b->fake->oom_id = "ghost";
        assert_true(fake_release(b->fake, "GetOOMEvent", FAKE_ANSWER, 0));
        wait_calls(b, "GetOOMEvent", 2);
        assert_true(fake_release(b->fake, "GetOOMEvent", FAKE_GARBAGE, 0));
        wait_calls(b, "GetOOMEvent", 3);
        b->fake->oom_id = "../ctr-1";
        assert_true(fake_release(b->fake, "GetOOMEvent", FAKE_ANSWER, 0));
        wait_calls(b, "GetOOMEvent", 4);
        assert_int_equal(ev.ooms + vm_ev.ooms, 0);
        b->fake->oom_id = "ctr-1";
        assert_true(fake_release(b->fake, "GetOOMEvent", FAKE_ANSWER, 0));
        wait_calls(b, "GetOOMEvent", 5);
        assert_int_equal(ev.ooms, 1);
        assert_int_equal(vm_ev.ooms, 0);
        assert_int_equal(pod_of(b)->agent.dead, false);
        bx_free(b);
}

static bool oom_paused(void *pod)
{
        return ((struct sandbox_pod *)pod)->oom_paused != NULL;
}

/* An error the guest answers to GetOOMEvent does not end the watch (it
 * used to, for good); answered at once, forever, it is paced like any
 * other answer. */
static void oom_error_answers(void **state)
{
        (void)state;
        struct bx *b;
        struct task_events vm_ev = {0}, ev = {0};
        struct fake_op op;
        (void)booted_ctr(&b, &vm_ev, &ev, &op);
        wait_held(b, "GetOOMEvent");
        assert_true(fake_release(b->fake, "GetOOMEvent", FAKE_FAIL, US_GRPC_INTERNAL));
        wait_held(b, "GetOOMEvent");
        assert_int_equal(fake_count(b->fake, "GetOOMEvent"), 2);
        fake_set(b->fake, "GetOOMEvent", FAKE_FAIL, US_GRPC_INTERNAL);
        assert_true(fake_release(b->fake, "GetOOMEvent", FAKE_FAIL, US_GRPC_INTERNAL));
        assert_int_equal(fake_run_until(b->loop, oom_paused, pod_of(b)), 0);
        assert_int_equal(fake_count(b->fake, "GetOOMEvent"), OOM_POLL_BURST);
        assert_int_equal(ev.ooms, 0);
        assert_int_equal(pod_of(b)->agent.dead, false);
        bx_free(b);
}

/* A guest that answers GetOOMEvent at once, forever, naming a real
 * container: after OOM_POLL_BURST answers the shim pauses instead of
 * polling (and publishing) in a busy loop, then polls again. */
static void oom_flood(void **state)
{
        (void)state;
        struct bx *b;
        struct task_events vm_ev = {0}, ev = {0};
        struct fake_op op;
        (void)booted_ctr(&b, &vm_ev, &ev, &op);
        wait_held(b, "GetOOMEvent");
        fake_set(b->fake, "GetOOMEvent", FAKE_ANSWER, 0);
        b->fake->oom_id = "ctr-1";
        assert_true(fake_release(b->fake, "GetOOMEvent", FAKE_ANSWER, 0));
        assert_int_equal(fake_run_until(b->loop, oom_paused, pod_of(b)), 0);
        assert_int_equal(fake_count(b->fake, "GetOOMEvent"), OOM_POLL_BURST);
        assert_int_equal(pod_of(b)->oom_call, 0);
        assert_int_equal(ev.ooms, 1);
        /* A container created meanwhile does not end the pause. */
        struct fake_op op2;
        assert_non_null(create(b, "ctr-2", &ev, &op2));
        assert_int_equal(fake_count(b->fake, "GetOOMEvent"), OOM_POLL_BURST);
        assert_int_equal(pod_of(b)->oom_pause_ms, OOM_POLL_PAUSE_MS);
        wait_calls(b, "GetOOMEvent", OOM_POLL_BURST + 1);
        /* The next burst pauses twice as long. */
        assert_int_equal(fake_run_until(b->loop, oom_paused, pod_of(b)), 0);
        assert_int_equal(fake_count(b->fake, "GetOOMEvent"), 2 * OOM_POLL_BURST);
        assert_int_equal(pod_of(b)->oom_pause_ms, 2 * OOM_POLL_PAUSE_MS);
        assert_int_equal(pod_of(b)->agent.dead, false);
        bx_free(b);
}

/* ---- a hostile or broken guest ---- */

/* A boot step the guest refuses: the create fails naming it, and the pod
 * it started goes with it. */
static void boot_step_fails(void **state)
{
        (void)state;
        static const char *const steps[] = {"Check", "AddStorage", "UpdateNetwork"};
        for (size_t i = 0; i < sizeof(steps) / sizeof(steps[0]); i++) {
                struct bx *b = bx_new(10000);
                fake_set(b->fake, steps[i], FAKE_FAIL, US_GRPC_INTERNAL);
                struct task_events ev = {0};
                struct fake_op op;
                struct create_ctx *ctx = task_new(b, "pod-1", true, true, &ev, &op);
                assert_int_equal(send_check(ctx, NULL), -EINPROGRESS);
                wait_op(b, &op);
                assert_int_equal(op.r, -EREMOTEIO);
                char want[64];
                snprintf(want, sizeof(want), "start sandbox VM: guest agent %s", steps[i]);
                if (!strstr(op.msg, want))
                        fail_msg("%s: \"%s\"", steps[i], op.msg);
                assert_null(op.impl);
                assert_null(b->pod_slot);
                bx_free(b);
        }
}

/* The pod's VM task as a clone of the template being restored: its
 * create waits for the restore's end (pod_restored). */
static struct create_ctx *clone_boot(struct bx *b, struct task_events *ev, struct fake_op *op)
{
        struct sandbox_pod *pod = pod_of(b);
        struct create_ctx *ctx = task_new(b, "pod-1", true, true, ev, op);
        ctx->vmnet = calloc(1, sizeof(*ctx->vmnet));
        assert_non_null(ctx->vmnet);
        memcpy(ctx->vmnet->mac, "\x0a\x58\x0a\x01\x02\x03", 6);
        ctx->vmnet->mtu = 1500;
        pod->restoring = true;
        pod->restore_pending = true;
        assert_int_equal(boot_begin(ctx, NULL), -EINPROGRESS);
        assert_ptr_equal(pod->boot_ctx, ctx);
        assert_int_equal(b->fake->n_calls, 0); /* nothing before the restore's end */
        return ctx;
}

/* A clone of the template: Restore first (host entropy and clock), then
 * the usual boot, AddStorage naming the template's 9p tag and
 * UpdateNetwork the template's MAC as device_mac. */
static void restore_boot(void **state)
{
        (void)state;
        struct bx *b = bx_new(10000);
        struct sandbox_pod *pod = pod_of(b);
        struct task_events ev = {0};
        struct fake_op op;
        clone_boot(b, &ev, &op);
        pod->ninep = true;
        struct timespec now;
        clock_gettime(CLOCK_REALTIME, &now);
        pod_restored(NULL, 0, NULL, pod);
        wait_op(b, &op);
        if (op.r != 0)
                fail_msg("restored boot: %s", op.msg);
        static const char *const order[] = {"Restore", "Check", "AddStorage", "UpdateNetwork"};
        for (size_t i = 0; i < 4; i++)
                assert_string_equal(b->fake->calls[i].method, order[i]);
        const struct fake_call *r = fake_call_of(b->fake, "Restore", 0);
        assert_true(r->entropy_len >= 32 && r->entropy_len <= 512);
        assert_true(r->realtime_ns / 1000000000 >= now.tv_sec - 1);
        assert_non_null(strstr(fake_call_of(b->fake, "AddStorage", 0)->storage,
                               "9p " VMM_TEMPLATE_SHARE_TAG " "));
        assert_string_equal(fake_call_of(b->fake, "UpdateNetwork", 0)->device_mac,
                            VMM_TEMPLATE_MAC);
        assert_false(pod->restoring);
        assert_true(pod->restored);
        assert_null(pod->boot_ctx);
        bx_free(b);
}

/* A clone whose agent refuses Restore, or a later step of its boot, or
 * whose restore QEMU could not do: not the pod's failure but its cold
 * boot, which here, without a QEMU, fails on its own: the create's error
 * is the cold boot's, never the clone's. */
static void clone_fails_boots_cold(void **state)
{
        (void)state;
        static const char *const steps[] = {"Restore", "Check", "AddStorage", "UpdateNetwork",
                                            NULL};
        for (size_t i = 0; i < US_ELEMENTSOF(steps); i++) {
                struct bx *b = bx_new(10000);
                struct task_events ev = {0};
                struct fake_op op;
                if (steps[i])
                        fake_set(b->fake, steps[i], FAKE_FAIL, US_GRPC_INTERNAL);
                clone_boot(b, &ev, &op);
                struct us_error *qerr = NULL;
                if (steps[i]) {
                        pod_restored(NULL, 0, NULL, pod_of(b));
                } else { /* the load failed: QEMU's words */
                        us_error_msg(&qerr, EINVAL, "load of migration failed");
                        pod_restored(NULL, -EINVAL, qerr, pod_of(b));
                        us_error_free(qerr);
                }
                wait_op(b, &op);
                assert_int_equal(b->fake->n_calls, steps[i] ? i + 1 : 0);
                assert_int_not_equal(op.r, 0);
                if (!strstr(op.msg, "has no share") || (steps[i] && strstr(op.msg, steps[i])))
                        fail_msg("%s: \"%s\"", steps[i] ? steps[i] : "load", op.msg);
                assert_null(b->pod_slot);
                bx_free(b);
        }
}

/* A clone whose agent never answers Restore: the call's deadline is
 * Restore's own (the pod's agent_timeout_ms at most, never the booting
 * guest's minute, which a CRI caller would not wait out), then the cold
 * boot; the template is to be rebuilt. */
static void clone_restore_unanswered(void **state)
{
        (void)state;
        struct bx *b = bx_new(LATE_MS);
        struct task_events ev = {0};
        struct fake_op op;
        fake_set(b->fake, "Restore", FAKE_HOLD, 0);
        clone_boot(b, &ev, &op);
        assert_true(pod_of(b)->agent.booting);
        pod_restored(NULL, 0, NULL, pod_of(b));
        wait_op(b, &op);
        assert_int_equal(b->fake->n_calls, 1);
        assert_int_not_equal(op.r, 0);
        if (!strstr(op.msg, "has no share"))
                fail_msg("\"%s\"", op.msg);
        bx_free(b);
}

/* CreateContainer refused or never answered (a container that never
 * starts): the task is gone; at the deadline the pod is declared dead and
 * torn down from the loop. */
static void create_fails(void **state)
{
        (void)state;
        struct bx *b = bx_new(LATE_MS);
        struct task_events vm_ev = {0}, ev = {0};
        boot(b, &vm_ev);
        fake_set(b->fake, "CreateContainer", FAKE_FAIL, US_GRPC_INVALID_ARGUMENT);
        struct fake_op op;
        assert_null(create(b, "ctr-1", &ev, &op));
        assert_int_equal(op.r, -EINVAL);
        assert_non_null(strstr(op.msg, "guest agent CreateContainer"));
        assert_null(task_find(pod_of(b), "ctr-1"));
        assert_false(pod_of(b)->agent.dead);

        fake_set(b->fake, "CreateContainer", FAKE_HOLD, 0);
        assert_null(create(b, "ctr-2", &ev, &op));
        assert_int_equal(op.r, -ETIMEDOUT);
        assert_null(task_find(pod_of(b), "ctr-2"));
        assert_true(pod_of(b)->agent.dead);
        assert_int_equal(fake_run_until(b->loop, torn_down, pod_of(b)), 0);
        /* A dead pod takes no more containers. */
        struct us_error *err = NULL;
        fake_op_init(&op);
        struct create_ctx *ctx = task_new(b, "ctr-3", false, false, &ev, &op);
        assert_int_equal(send_create(ctx, &err), -ENOTCONN);
        us_error_free(err);
        task_free(ctx->t);
        create_ctx_free(ctx);
        bx_free(b);
}

/* An exec the guest refuses or answers with garbage is not a process. */
static void exec_fails(void **state)
{
        (void)state;
        struct bx *b;
        struct task_events vm_ev = {0}, ev = {0};
        struct fake_op op;
        struct sandbox_task *t = booted_ctr(&b, &vm_ev, &ev, &op);
        const char *pjson = "{\"args\": [\"true\"], \"cwd\": \"/\"}";
        const struct us_stdio none = {-1, -1, -1};
        static const enum fake_mode modes[] = {FAKE_FAIL, FAKE_GARBAGE};
        static const int want[] = {-ENOENT, -EBADMSG};
        for (size_t i = 0; i < 2; i++) {
                fake_set(b->fake, "ExecProcess", modes[i], US_GRPC_NOT_FOUND);
                fake_op_init(&op);
                assert_int_equal(shim_backend_sandbox.exec(t, "e1", NULL, pjson, strlen(pjson),
                                                           &none, &op.pid, &op.pty, &op.op, NULL),
                                 -EINPROGRESS);
                wait_op(b, &op);
                assert_int_equal(op.r, want[i]);
                assert_null(sandbox_proc_find(&t->ctr, "e1"));
        }
        /* No exec in the VM task. */
        struct us_error *err = NULL;
        assert_int_equal(shim_backend_sandbox.exec(task_find(pod_of(b), "pod-1"), "e2", NULL, pjson,
                                                   strlen(pjson), &none, &op.pid, &op.pty, &op.op,
                                                   &err),
                         -EINVAL);
        us_error_free(err);
        bx_free(b);
}

/* A signal for a process the guest no longer has is ESRCH, as on a
 * host. */
static void kill_gone(void **state)
{
        (void)state;
        struct bx *b;
        struct task_events vm_ev = {0}, ev = {0};
        struct fake_op op;
        struct sandbox_task *t = booted_ctr(&b, &vm_ev, &ev, &op);
        fake_set(b->fake, "SignalProcess", FAKE_FAIL, US_GRPC_NOT_FOUND);
        fake_op_init(&op);
        assert_int_equal(shim_backend_sandbox.kill_exec(t, "e9", 0, SIGKILL, &op.op, NULL),
                         -EINPROGRESS);
        wait_op(b, &op);
        assert_int_equal(op.r, -ESRCH);
        bx_free(b);
}

/* Stats: the guest's bytes go on only if they are Metrics. Pids: at most
 * 65536 of them. */
static void stats_and_pids(void **state)
{
        (void)state;
        struct bx *b;
        struct task_events vm_ev = {0}, ev = {0};
        struct fake_op op;
        struct sandbox_task *t = booted_ctr(&b, &vm_ev, &ev, &op);

        Io__Containerd__Cgroups__V1__Metrics m = IO__CONTAINERD__CGROUPS__V1__METRICS__INIT;
        Io__Containerd__Cgroups__V1__MemoryStat mem =
                IO__CONTAINERD__CGROUPS__V1__MEMORY_STAT__INIT;
        mem.cache = 42;
        m.memory = &mem;
        uint8_t packed[256];
        size_t n = io__containerd__cgroups__v1__metrics__pack(&m, packed);
        b->fake->metrics = packed;
        b->fake->metrics_len = n;
        fake_op_init(&op);
        assert_int_equal(shim_backend_sandbox.stats(t, &op.data, &op.len, &op.op, NULL),
                         -EINPROGRESS);
        wait_op(b, &op);
        assert_int_equal(op.r, 0);
        assert_int_equal(op.len, n);
        assert_memory_equal(op.data, packed, n);
        free(op.data);

        static const uint8_t junk[] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
        b->fake->metrics = junk;
        b->fake->metrics_len = sizeof(junk);
        fake_op_init(&op);
        assert_int_equal(shim_backend_sandbox.stats(t, &op.data, &op.len, &op.op, NULL),
                         -EINPROGRESS);
        wait_op(b, &op);
        assert_int_equal(op.r, -EBADMSG);
        assert_non_null(strstr(op.msg, "malformed metrics"));
        assert_null(op.data);

        fake_set(b->fake, "StatsContainer", FAKE_GARBAGE, 0);
        fake_op_init(&op);
        assert_int_equal(shim_backend_sandbox.stats(t, &op.data, &op.len, &op.op, NULL),
                         -EINPROGRESS);
        wait_op(b, &op);
        assert_int_equal(op.r, -EBADMSG);

        b->fake->n_pids = 70000;
        fake_op_init(&op);
        assert_int_equal(shim_backend_sandbox.pids(t, &op.pids, &op.len, &op.op, NULL),
                         -EINPROGRESS);
        wait_op(b, &op);
        assert_int_equal(op.r, 0);
        assert_int_equal(op.len, 65536);
        assert_int_equal(op.pids[65535], 65536);
        free(op.pids);
        assert_false(pod_of(b)->agent.dead);
        bx_free(b);
}

/* A call the guest answers late, after the pod's deadline: the op fails,
 * the pod is declared dead and torn down from the loop (its other calls
 * end), and the late answer finds nobody. */
static void late_answer_kills_pod(void **state)
{
        (void)state;
        struct bx *b = bx_new(LATE_MS);
        struct task_events vm_ev = {0}, ev = {0};
        boot(b, &vm_ev);
        struct fake_op op, pause;
        struct sandbox_task *t = create(b, "ctr-1", &ev, &op);
        assert_non_null(t);
        fake_set(b->fake, "StartContainer", FAKE_HOLD, 0);
        fake_set(b->fake, "PauseContainer", FAKE_HOLD, 0);
        fake_op_init(&op);
        assert_int_equal(shim_backend_sandbox.start(t, &op.op, NULL), -EINPROGRESS);
        wait_held(b, "StartContainer");
        fake_op_init(&pause);
        assert_int_equal(shim_backend_sandbox.pause(t, &pause.op, NULL), -EINPROGRESS);
        wait_op(b, &op);
        assert_int_equal(op.r, -ETIMEDOUT);
        assert_int_equal(fake_run_until(b->loop, torn_down, pod_of(b)), 0);
        /* The teardown ended the other call, which had not timed out. */
        wait_op(b, &pause);
        assert_true(pause.r == -ECANCELED || pause.r == -ETIMEDOUT);
        assert_true(fake_release(b->fake, "StartContainer", FAKE_ANSWER, 0));
        fake_op_init(&op);
        struct us_error *err = NULL;
        assert_int_equal(shim_backend_sandbox.start(t, &op.op, &err), -ENOTCONN);
        us_error_free(err);
        bx_free(b);
}

/* The guest closes its channel: the pod is dead, torn down from the loop;
 * its task's calls fail at once. */
static void guest_hangs_up(void **state)
{
        (void)state;
        struct bx *b;
        struct task_events vm_ev = {0}, ev = {0};
        struct fake_op op;
        struct sandbox_task *t = booted_ctr(&b, &vm_ev, &ev, &op);
        fake_set(b->fake, "StartContainer", FAKE_HOLD, 0);
        fake_op_init(&op);
        assert_int_equal(shim_backend_sandbox.start(t, &op.op, NULL), -EINPROGRESS);
        wait_held(b, "StartContainer");
        fake_agent_hang_up(b->fake);
        wait_op(b, &op);
        assert_int_equal(op.r, -ECONNRESET);
        assert_int_equal(fake_run_until(b->loop, torn_down, pod_of(b)), 0);
        /* Delete works on a dead pod and asks the guest nothing. */
        size_t removes = fake_count(b->fake, "RemoveContainer");
        assert_int_equal(shim_backend_sandbox.destroy(t, NULL), 0);
        assert_int_equal(fake_count(b->fake, "RemoveContainer"), removes);
        bx_free(b);
}

/* ---- the Task service (shim/service.c, task.c) over the backend ---- */

/* containerd's side of the Task API: a client on the shim's server. */
struct tx {
        struct bx *b;
        struct shim_args args;
        struct shim shim;
        struct us_ttrpc_aclient *c;
        char base[64], state[96], bundle[96];
        /* the last call's outcome */
        int n;
        int status;
        char msg[512];
        uint8_t *payload;
        size_t len;
};

static void tx_reply(int status, const uint8_t *payload, size_t len, const struct us_error *err,
                     void *ud)
{
        struct tx *x = ud;
        x->n++;
        x->status = status;
        snprintf(x->msg, sizeof(x->msg), "%s", status < 0 ? us_error_text(err) : "");
        free(x->payload);
        x->payload = len ? malloc(len) : NULL;
        if (len)
                memcpy(x->payload, payload, len);
        x->len = len;
}

static bool tx_answered(void *x)
{
        return ((struct tx *)x)->n > 0;
}

/* Sends method (containerd.task.v2.Task) without waiting. */
static void task_send(struct tx *x, const char *method, const ProtobufCMessage *msg)
{
        x->n = 0;
        struct us_error *err = NULL;
        if (us_ttrpc_aclient_call(x->c, "containerd.task.v2.Task", method, msg, NULL, 0, 0,
                                  tx_reply, x, NULL, &err) < 0)
                fail_msg("%s: %s", method, us_error_text(err));
}

/* Sends method and returns its status once answered. */
static int task_call(struct tx *x, const char *method, const ProtobufCMessage *msg)
{
        task_send(x, method, msg);
        assert_int_equal(fake_run_until(x->b->loop, tx_answered, x), 0);
        return x->status;
}

static void write_file(const char *path, const char *text)
{
        FILE *f = fopen(path, "we");
        assert_non_null(f);
        assert_int_equal(fputs(text, f) >= 0, 1);
        assert_int_equal(fclose(f), 0);
}

/* A shim serving the booted pod of b as its sandbox kind; the pod's share
 * in a state dir of its own (bind mounts: root, a private mount
 * namespace); a bundle whose config.json asks for the sandbox kind. */
static struct tx *tx_new(struct bx *b)
{
        struct tx *x = calloc(1, sizeof(*x));
        assert_non_null(x);
        x->b = b;
        snprintf(x->base, sizeof(x->base), "/tmp/test-sandbox-backend.XXXXXX");
        assert_non_null(mkdtemp(x->base));
        snprintf(x->state, sizeof(x->state), "%s/state", x->base);
        snprintf(x->bundle, sizeof(x->bundle), "%s/bundle", x->base);
        assert_int_equal(mkdir(x->state, 0700), 0);
        assert_int_equal(mkdir(x->bundle, 0700), 0);
        char path[160];
        snprintf(path, sizeof(path), "%s/rootfs", x->bundle);
        assert_int_equal(mkdir(path, 0755), 0);
        snprintf(path, sizeof(path), "%s/config.json", x->bundle);
        write_file(path, "{\"ociVersion\": \"1.0.2\", \"process\": {\"args\": [\"sh\"], \"cwd\": "
                         "\"/\"}, \"root\": {\"path\": \"rootfs\"}, \"annotations\": "
                         "{\"unishim.io/isolation\": \"sandbox\"}}");
        struct us_error *err = NULL;
        if (sandbox_share_new(x->state, &pod_of(b)->share, &err) < 0)
                fail_msg("share: %s", us_error_text(err));

        x->args = (struct shim_args){.namespace = "test", .id = "pod-1"};
        x->shim.args = &x->args;
        x->shim.loop = b->loop;
        x->shim.signal_fd = -1;
        assert_int_equal(us_ttrpc_server_new(b->loop, -1, &x->shim.server, NULL), 0);
        assert_int_equal(shim_service_register(&x->shim, NULL), 0);
        assert_int_equal(shim_events_new(b->loop, NULL, "test", 0, &x->shim.events, NULL), 0);
        assert_int_equal(policy_config_parse("{}", 2, "test", &x->shim.config, NULL), 0);
        /* The pod's first task (its VM) decided its kind. */
        x->shim.kind_decided = true;
        x->shim.kind = POLICY_ISOLATION_SANDBOX;
        x->shim.backend = &shim_backend_sandbox;
        x->shim.backend_pod = b->pod_slot;
        /* What pod_start takes from the shim's env. */
        pod_of(b)->process_exited = shim_task_process_exited;
        pod_of(b)->oom = shim_task_oom;
        int sv[2];
        assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
        assert_int_equal(us_ttrpc_server_add_connection(x->shim.server, sv[1], NULL), 0);
        assert_int_equal(us_ttrpc_aclient_new(b->loop, sv[0], &x->c, NULL), 0);
        return x;
}

static void tx_free(struct tx *x)
{
        x->c = us_ttrpc_aclient_free(x->c);
        while (x->shim.tasks) {
                struct shim_task *t = x->shim.tasks;
                x->shim.tasks = t->next;
                if (t->impl)
                        t->backend->free(t->impl);
                shim_task_free(t);
        }
        x->shim.server = us_ttrpc_server_free(x->shim.server);
        x->shim.idle_timer = us_loop_source_remove(x->shim.idle_timer);
        x->shim.events = shim_events_free(x->shim.events);
        x->shim.config = policy_config_free(x->shim.config);
        /* The pod is the backend's, in the shim's slot now. */
        x->b->pod_slot = x->shim.backend_pod;
        free(x->payload);
        free(x);
}

/* After the pod (its share's mounts) went. */
static void rm_base(const char *base)
{
        int tmp = open("/tmp", O_PATH | O_DIRECTORY | O_CLOEXEC);
        assert_true(tmp >= 0);
        struct us_error *err = NULL;
        if (us_rm_tree_at(tmp, base + strlen("/tmp/"), &err) < 0)
                fail_msg("remove %s: %s", base, us_error_text(err));
        close(tmp);
}

/* containerd's calls for a container of the pod, as for `crictl run`:
 * Create, Start, Exec and its Start, Wait, Kill, the exits, Delete; and
 * calls the shim refuses before the guest hears of them. */
static void task_service(void **state)
{
        (void)state;
        if (geteuid() != 0 || unshare(CLONE_NEWNS) < 0 ||
            mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
                unit_skip("needs root and a private mount namespace: the pod's share binds");
        struct bx *b = bx_new(10000);
        struct task_events vm_ev = {0};
        boot(b, &vm_ev);
        fake_set(b->fake, "WaitProcess", FAKE_HOLD, 0);
        struct tx *x = tx_new(b);

        Containerd__Task__V2__CreateTaskRequest cr =
                CONTAINERD__TASK__V2__CREATE_TASK_REQUEST__INIT;
        cr.id = "ctr-1";
        cr.bundle = x->bundle;
        if (task_call(x, "Create", &cr.base) != 0)
                fail_msg("Create: %s", x->msg);
        struct fake_call *cc = fake_call_of(b->fake, "CreateContainer", 0);
        assert_non_null(cc);
        assert_string_equal(cc->container_id, "ctr-1");
        /* A second task of that id, ids that are paths, a relative bundle,
         * a task that does not exist, bytes that are no request. */
        assert_int_equal(task_call(x, "Create", &cr.base), -EEXIST);
        cr.id = "../ctr";
        assert_int_equal(task_call(x, "Create", &cr.base), -EINVAL);
        cr.id = "ctr-2";
        cr.bundle = "bundle";
        assert_int_equal(task_call(x, "Create", &cr.base), -EINVAL);
        Containerd__Task__V2__StartRequest st = CONTAINERD__TASK__V2__START_REQUEST__INIT;
        st.id = "nope";
        assert_int_equal(task_call(x, "Start", &st.base), -ENOENT);
        ProtobufCMessageUnknownField junk_field = {.tag = 1,
                                                   .wire_type =
                                                           PROTOBUF_C_WIRE_TYPE_LENGTH_PREFIXED,
                                                   .len = 3,
                                                   .data = (uint8_t *)"\xff\xff\xff"};
        Google__Protobuf__Empty junk = GOOGLE__PROTOBUF__EMPTY__INIT;
        junk.base.n_unknown_fields = 1;
        junk.base.unknown_fields = &junk_field;
        assert_int_equal(task_call(x, "State", &junk.base), -EINVAL);
        assert_int_equal(fake_count(b->fake, "CreateContainer"), 1);

        st.id = "ctr-1";
        assert_int_equal(task_call(x, "Start", &st.base), 0);
        assert_string_equal(fake_call_of(b->fake, "StartContainer", 0)->container_id, "ctr-1");

        const char *pjson = "{\"args\": [\"true\"], \"cwd\": \"/\"}";
        Google__Protobuf__Any spec = GOOGLE__PROTOBUF__ANY__INIT;
        spec.type_url = "types.containerd.io/opencontainers/runtime-spec/1/Process";
        spec.value.data = (uint8_t *)pjson;
        spec.value.len = strlen(pjson);
        Containerd__Task__V2__ExecProcessRequest ex =
                CONTAINERD__TASK__V2__EXEC_PROCESS_REQUEST__INIT;
        ex.id = "ctr-1";
        ex.exec_id = "e1";
        ex.spec = &spec;
        assert_int_equal(task_call(x, "Exec", &ex.base), 0);
        ex.exec_id = "../e";
        assert_int_equal(task_call(x, "Exec", &ex.base), -EINVAL);
        st.exec_id = "e1";
        assert_int_equal(task_call(x, "Start", &st.base), 0);
        struct fake_call *ep = fake_call_of(b->fake, "ExecProcess", 0);
        assert_non_null(ep);
        assert_string_equal(ep->exec_id, "e1");

        Containerd__Task__V2__KillRequest kr = CONTAINERD__TASK__V2__KILL_REQUEST__INIT;
        kr.id = "ctr-1";
        kr.exec_id = "e1";
        kr.signal = SIGKILL;
        assert_int_equal(task_call(x, "Kill", &kr.base), 0);
        assert_string_equal(fake_call_of(b->fake, "SignalProcess", 0)->exec_id, "e1");

        /* The init's exit reaches a Wait sent before it. */
        Containerd__Task__V2__WaitRequest wr = CONTAINERD__TASK__V2__WAIT_REQUEST__INIT;
        wr.id = "ctr-1";
        task_send(x, "Wait", &wr.base);
        wait_calls(b, "WaitProcess", 2);
        b->fake->exit_status = 7;
        assert_true(fake_release(b->fake, "WaitProcess", FAKE_ANSWER, 0)); /* the init's */
        assert_int_equal(fake_run_until(b->loop, tx_answered, x), 0);
        assert_int_equal(x->status, 0);
        Containerd__Task__V2__WaitResponse *w =
                containerd__task__v2__wait_response__unpack(NULL, x->len, x->payload);
        assert_non_null(w);
        assert_int_equal(w->exit_status, 7);
        containerd__task__v2__wait_response__free_unpacked(w, NULL);
        b->fake->exit_status = 137;
        assert_true(fake_release(b->fake, "WaitProcess", FAKE_ANSWER, 0)); /* e1's */
        wr.exec_id = "e1";
        assert_int_equal(task_call(x, "Wait", &wr.base), 0);

        Containerd__Task__V2__DeleteRequest dr = CONTAINERD__TASK__V2__DELETE_REQUEST__INIT;
        dr.id = "ctr-1";
        dr.exec_id = "e1";
        assert_int_equal(task_call(x, "Delete", &dr.base), 0);
        dr.exec_id = "";
        assert_int_equal(task_call(x, "Delete", &dr.base), 0);
        Containerd__Task__V2__DeleteResponse *d =
                containerd__task__v2__delete_response__unpack(NULL, x->len, x->payload);
        assert_non_null(d);
        assert_int_equal(d->exit_status, 7);
        containerd__task__v2__delete_response__free_unpacked(d, NULL);
        wait_calls(b, "RemoveContainer", 1);
        assert_string_equal(fake_call_of(b->fake, "RemoveContainer", 0)->container_id, "ctr-1");
        Containerd__Task__V2__StateRequest sr = CONTAINERD__TASK__V2__STATE_REQUEST__INIT;
        sr.id = "ctr-1";
        assert_int_equal(task_call(x, "State", &sr.base), -ENOENT);
        assert_null(x->shim.tasks);
        assert_false(pod_of(b)->vmpod.torn_down);
        char base[64];
        snprintf(base, sizeof(base), "%s", x->base);
        tx_free(x);
        bx_free(b);
        rm_base(base);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(lifecycle),
                cmocka_unit_test(ninep_storage),
                cmocka_unit_test(oom_events),
                cmocka_unit_test(oom_flood),
                cmocka_unit_test(oom_error_answers),
                cmocka_unit_test(boot_step_fails),
                cmocka_unit_test(restore_boot),
                cmocka_unit_test(clone_fails_boots_cold),
                cmocka_unit_test(clone_restore_unanswered),
                cmocka_unit_test(create_fails),
                cmocka_unit_test(exec_fails),
                cmocka_unit_test(kill_gone),
                cmocka_unit_test(stats_and_pids),
                cmocka_unit_test(late_answer_kills_pod),
                cmocka_unit_test(guest_hangs_up),
                cmocka_unit_test(task_service),
        };
        return unit_exit(unit_run_group_tests(tests, NULL, NULL));
}
