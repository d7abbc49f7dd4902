/* SPDX-License-Identifier: Apache-2.0 */
/*
 * shim/sandbox/agent.c (the channel to a sandbox pod's guest agent) and
 * shim/sandbox/io.c (each guest process's long polls) against a fake agent
 * (fake-agent.h) on the test's loop: the normal answers, and what a hostile
 * guest can do -- answer an error, garbage, too much, late, never, close
 * the channel mid-call, break the framing. The shim's loop never waits for
 * the guest: while one call hangs, others are answered.
 *
 * Waits are for events (run_until); its guard only tells a hang from a slow
 * machine. The short agent deadline (LATE_MS) is the thing tested.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "unit.h"

#include "fake-agent.h"

#include "base/cleanup.h"
#include "base/loop.h"
#include "shim/sandbox/agent.h"
#include "shim/sandbox/io.h"

#define ALARM_SECS (unit_wait_ms(60000) / 1000)
#define LATE_MS    50 /* the agent deadline of the lateness tests */

struct fx {
        struct us_loop *loop;
        struct fake_agent *fake;
        struct sandbox_agent a;
        int lost;
        char why[256];
        /* the container of io.c's processes */
        struct sandbox_container ctr;
        int exits;
        uint32_t exit_status;
        char exit_exec[32];
        /* run_until */
        bool (*done)(struct fx *);
        void *arg;
};

static void lost(void *userdata, const char *why)
{
        struct fx *f = userdata;
        f->lost++;
        snprintf(f->why, sizeof(f->why), "%s", why);
}

static void exited(void *owner, const char *exec_id, uint32_t status)
{
        struct fx *f = owner;
        f->exits++;
        f->exit_status = status;
        snprintf(f->exit_exec, sizeof(f->exit_exec), "%s", exec_id ? exec_id : "");
}

static struct fx *fx_new(unsigned timeout_ms)
{
        alarm(ALARM_SECS);
        struct fx *f = calloc(1, sizeof(*f));
        assert_non_null(f);
        assert_int_equal(us_loop_new(&f->loop, NULL), 0);
        f->fake = fake_agent_new(f->loop);
        f->a.pod_id = "pod-1";
        f->a.timeout_ms = timeout_ms;
        f->a.lost = lost;
        f->a.userdata = f;
        struct us_error *err = NULL;
        int r = sandbox_agent_attach(&f->a, f->loop, f->fake->shim_agent_fd,
                                     f->fake->shim_events_fd, &err);
        f->fake->shim_agent_fd = f->fake->shim_events_fd = -1;
        if (r < 0)
                fail_msg("attach: %s", us_error_text(err));
        /* Booted: the operator's deadline applies. */
        f->a.booting = false;
        f->ctr = (struct sandbox_container){
                .agent = &f->a, .loop = f->loop, .id = "ctr-1", .owner = f, .exited = exited};
        return f;
}

static void fx_free(struct fx *f)
{
        while (f->ctr.procs) {
                struct sandbox_proc *p = f->ctr.procs;
                f->ctr.procs = p->next;
                sandbox_proc_free(p);
        }
        sandbox_agent_close(&f->a);
        fake_agent_free(f->fake);
        f->loop = us_loop_free(f->loop);
        free(f);
        alarm(0);
}

static bool run_done(void *f)
{
        return ((struct fx *)f)->done(f);
}

/* Runs the loop until done(f), arg its argument. */
static int run_until(struct fx *f, bool (*done)(struct fx *), void *arg)
{
        f->arg = arg;
        f->done = done;
        return fake_run_until(f->loop, run_done, f);
}

static bool op_finished(struct fx *f)
{
        return ((struct fake_op *)f->arg)->n > 0;
}

static bool was_lost(struct fx *f)
{
        (void)f->arg;
        return f->lost > 0;
}

static bool has_exited(struct fx *f)
{
        return f->exits > 0;
}

static bool held(struct fx *f)
{
        return fake_held(f->fake, f->arg) != NULL;
}

static bool fd_readable(struct fx *f)
{
        struct pollfd p = {.fd = *(int *)f->arg, .events = POLLIN};
        return poll(&p, 1, 0) > 0;
}

/* One read of the FIFO's read end fd, once it has data or its EOF. */
static ssize_t read_fifo(struct fx *f, int fd, char *buf, size_t max)
{
        assert_int_equal(run_until(f, fd_readable, &fd), 0);
        return read(fd, buf, max);
}

static void wait_op(struct fx *f, struct fake_op *op)
{
        assert_int_equal(run_until(f, op_finished, op), 0);
        assert_int_equal(op->n, 1);
}

/* StartContainer {ctr-1} with op; -EINPROGRESS. */
static void start(struct fx *f, struct fake_op *op)
{
        *op = (struct fake_op){.op.done = fake_op_done};
        Unishim__Agent__V1__ContainerRequest req = UNISHIM__AGENT__V1__CONTAINER_REQUEST__INIT;
        req.container_id = "ctr-1";
        struct us_error *err = NULL;
        int r = sandbox_agent_acall(&f->a, f, "StartContainer", &req.base, NULL,
                                    sandbox_acall_plain, &op->op, NULL, &err);
        if (r != -EINPROGRESS)
                fail_msg("acall: %d %s", r, us_error_text(err));
}

/* start() and its answer: the call's result. */
static int start_and_wait(struct fx *f, struct fake_op *op)
{
        start(f, op);
        wait_op(f, op);
        return op->r;
}

/* ---- the channel ---- */

static void answered(void **state)
{
        (void)state;
        struct fx *f = fx_new(10000);
        struct fake_op op;
        start(f, &op);
        assert_int_equal(op.n, 0); /* never from inside the call */
        wait_op(f, &op);
        assert_int_equal(op.r, 0);
        struct fake_call *c = fake_call_of(f->fake, "StartContainer", 0);
        assert_non_null(c);
        assert_string_equal(c->container_id, "ctr-1");
        assert_int_equal(f->lost, 0);
        fx_free(f);
}

/* An error status is that call's error, with the guest's words; the agent
 * lives on. */
static void error_status(void **state)
{
        (void)state;
        struct fx *f = fx_new(10000);
        fake_set(f->fake, "StartContainer", FAKE_FAIL, US_GRPC_NOT_FOUND);
        struct fake_op op;
        assert_int_equal(start_and_wait(f, &op), -ENOENT);
        assert_non_null(strstr(op.msg, "guest agent StartContainer"));
        assert_non_null(strstr(op.msg, "the fake agent refuses StartContainer"));
        assert_false(f->a.dead);
        fake_set(f->fake, "StartContainer", FAKE_ANSWER, 0);
        assert_int_equal(start_and_wait(f, &op), 0);
        assert_int_equal(f->lost, 0);
        fx_free(f);
}

/* Bytes that are no reply message fail the call that expected one. */
static void garbage_reply(void **state)
{
        (void)state;
        struct fx *f = fx_new(10000);
        fake_set(f->fake, "ExecProcess", FAKE_GARBAGE, 0);
        struct fake_op op = {.op.done = fake_op_done};
        Unishim__Agent__V1__ExecProcessRequest req = UNISHIM__AGENT__V1__EXEC_PROCESS_REQUEST__INIT;
        req.container_id = "ctr-1";
        req.exec_id = "e1";
        assert_int_equal(sandbox_agent_acall(&f->a, f, "ExecProcess", &req.base,
                                             &unishim__agent__v1__exec_process_response__descriptor,
                                             sandbox_acall_plain, &op.op, NULL, NULL),
                         -EINPROGRESS);
        wait_op(f, &op);
        assert_int_equal(op.r, -EBADMSG);
        assert_non_null(strstr(op.msg, "guest agent ExecProcess: malformed reply"));
        assert_int_equal(f->lost, 0);
        fx_free(f);
}

/* A call the guest answers late costs the pod its deadline, not the shim's
 * loop: another call is answered meanwhile; at the deadline the call fails,
 * the agent is declared dead once, and its late answer is dropped. */
static void late_reply(void **state)
{
        (void)state;
        struct fx *f = fx_new(LATE_MS);
        fake_set(f->fake, "StartContainer", FAKE_HOLD, 0);
        struct fake_op late, other = {.op.done = fake_op_done};
        start(f, &late);
        assert_int_equal(run_until(f, held, "StartContainer"), 0);
        Unishim__Agent__V1__CheckRequest check = UNISHIM__AGENT__V1__CHECK_REQUEST__INIT;
        assert_int_equal(sandbox_agent_acall(&f->a, f, "Check", &check.base, NULL,
                                             sandbox_acall_plain, &other.op, NULL, NULL),
                         -EINPROGRESS);
        wait_op(f, &other);
        assert_int_equal(other.r, 0);
        wait_op(f, &late);
        assert_int_equal(late.r, -ETIMEDOUT);
        assert_int_equal(f->lost, 1);
        assert_non_null(strstr(f->why, "did not answer StartContainer within 50 ms"));
        assert_true(f->a.dead);
        /* Dead: nothing more is sent. */
        struct us_error *err = NULL;
        struct fake_op after = {.op.done = fake_op_done};
        assert_int_equal(sandbox_agent_acall(&f->a, f, "Check", &check.base, NULL,
                                             sandbox_acall_plain, &after.op, NULL, &err),
                         -ENOTCONN);
        assert_non_null(strstr(us_error_text(err), "guest agent of pod pod-1 is gone"));
        us_error_free(err);
        /* The late answer finds nobody. */
        assert_true(fake_release(f->fake, "StartContainer", FAKE_ANSWER, 0));
        assert_int_equal(run_until(f, was_lost, NULL), 0);
        assert_int_equal(late.n, 1);
        assert_int_equal(after.n, 0);
        assert_int_equal(f->lost, 1);
        fx_free(f);
}

/* A long poll the guest never answers waits, without blocking anything,
 * until its owner cancels it; a call that is never answered ends at its
 * deadline. */
static void never_answers(void **state)
{
        (void)state;
        struct fx *f = fx_new(LATE_MS);
        fake_set(f->fake, "WaitProcess", FAKE_HOLD, 0);
        int fd[2];
        assert_int_equal(pipe2(fd, O_CLOEXEC), 0);
        struct us_stdio stdio = {-1, fd[1], -1};
        struct sandbox_proc *p = NULL;
        assert_int_equal(sandbox_proc_new(&f->ctr, "e1", &stdio, &p, NULL), 0);
        close(fd[1]);
        f->fake->read_data = (const uint8_t *)"out";
        f->fake->read_len = 3;
        sandbox_proc_poll(p);
        assert_int_equal(run_until(f, held, "WaitProcess"), 0);
        /* Past the agent's deadline the long poll still waits, and the
         * output streams are answered meanwhile. */
        char buf[8] = "";
        assert_int_equal(read_fifo(f, fd[0], buf, sizeof(buf)), 3);
        assert_memory_equal(buf, "out", 3);
        struct fake_op op;
        assert_int_equal(start_and_wait(f, &op), 0);
        assert_int_equal(f->exits, 0);
        assert_int_equal(f->lost, 0);
        assert_true(us_ttrpc_aclient_pending(f->a.events) >= 1);
        /* A call nobody answers: the deadline. */
        fake_set(f->fake, "PauseContainer", FAKE_HOLD, 0);
        Unishim__Agent__V1__ContainerRequest req = UNISHIM__AGENT__V1__CONTAINER_REQUEST__INIT;
        req.container_id = "ctr-1";
        struct fake_op pause = {.op.done = fake_op_done};
        assert_int_equal(sandbox_agent_acall(&f->a, f, "PauseContainer", &req.base, NULL,
                                             sandbox_acall_plain, &pause.op, NULL, NULL),
                         -EINPROGRESS);
        wait_op(f, &pause);
        assert_int_equal(pause.r, -ETIMEDOUT);
        assert_int_equal(f->lost, 1);
        /* The process's owner goes: its polls end without an exit. */
        f->ctr.procs = p->next;
        sandbox_proc_free(p);
        assert_int_equal(f->exits, 0);
        close(fd[0]);
        fx_free(f);
}

/* The guest closes its channel in the middle of a call. */
static void closed_mid_call(void **state)
{
        (void)state;
        struct fx *f = fx_new(10000);
        fake_set(f->fake, "StartContainer", FAKE_HOLD, 0);
        struct fake_op op;
        start(f, &op);
        assert_int_equal(run_until(f, held, "StartContainer"), 0);
        fake_agent_hang_up(f->fake);
        wait_op(f, &op);
        assert_int_equal(op.r, -ECONNRESET);
        assert_int_equal(f->lost, 1);
        assert_string_equal(f->why, "the guest agent closed its channel");
        assert_true(f->a.dead);
        fx_free(f);
}

/* A frame longer than ttrpc allows is never buffered: the channel ends. */
static void oversized_frame(void **state)
{
        (void)state;
        struct fx *f = fx_new(10000);
        fake_set(f->fake, "StartContainer", FAKE_HOLD, 0);
        struct fake_op op;
        start(f, &op);
        assert_int_equal(run_until(f, held, "StartContainer"), 0);
        uint8_t hdr[US_TTRPC_HEADER_SIZE];
        us_ttrpc_header_encode(&(struct us_ttrpc_header){.length = US_TTRPC_MAX_MESSAGE + 1,
                                                         .stream_id = 1,
                                                         .type = US_TTRPC_TYPE_RESPONSE},
                               hdr);
        assert_int_equal(write(f->fake->raw, hdr, sizeof(hdr)), (ssize_t)sizeof(hdr));
        wait_op(f, &op);
        assert_int_equal(op.r, -EPROTO);
        assert_int_equal(f->lost, 1);
        assert_string_equal(f->why, "the guest agent broke the protocol");
        fx_free(f);
}

/* The owner's calls end with it, each once, -ECANCELED. */
static void owner_cancelled(void **state)
{
        (void)state;
        struct fx *f = fx_new(10000);
        fake_set(f->fake, "StartContainer", FAKE_HOLD, 0);
        struct fake_op op;
        start(f, &op);
        assert_int_equal(run_until(f, held, "StartContainer"), 0);
        sandbox_agent_cancel_owner(&f->a, f);
        assert_int_equal(op.n, 1);
        assert_int_equal(op.r, -ECANCELED);
        assert_null(f->a.acalls);
        /* Its late answer is not the next call's. */
        fake_set(f->fake, "StartContainer", FAKE_FAIL, US_GRPC_INTERNAL);
        assert_true(fake_release(f->fake, "StartContainer", FAKE_ANSWER, 0));
        assert_int_equal(start_and_wait(f, &op), -EREMOTEIO);
        fake_set(f->fake, "StartContainer", FAKE_ANSWER, 0);
        assert_int_equal(start_and_wait(f, &op), 0);
        assert_int_equal(f->lost, 0);
        fx_free(f);
}

/* ---- a process's long polls (io.c) ---- */

/* Output reaches containerd's FIFO, then EOF; the exit its status. */
static void process_output_and_exit(void **state)
{
        (void)state;
        struct fx *f = fx_new(10000);
        fake_set(f->fake, "WaitProcess", FAKE_HOLD, 0);
        f->fake->exit_status = 3;
        f->fake->read_data = (const uint8_t *)"hello";
        f->fake->read_len = 5;
        int fd[2];
        assert_int_equal(pipe2(fd, O_CLOEXEC), 0);
        struct us_stdio stdio = {-1, fd[1], -1};
        struct sandbox_proc *p = NULL;
        assert_int_equal(sandbox_proc_new(&f->ctr, NULL, &stdio, &p, NULL), 0);
        close(fd[1]);
        sandbox_proc_poll(p);
        assert_int_equal(run_until(f, held, "WaitProcess"), 0);
        struct fake_call *w = fake_held(f->fake, "WaitProcess");
        assert_string_equal(w->container_id, "ctr-1");
        assert_string_equal(w->exec_id, "");
        assert_true(fake_release(f->fake, "WaitProcess", FAKE_ANSWER, 0));
        assert_int_equal(run_until(f, has_exited, NULL), 0);
        assert_int_equal(f->exit_status, 3);
        assert_string_equal(f->exit_exec, "");
        /* The stream was answered with data, then the end. */
        char buf[16];
        ssize_t n, got = 0;
        while ((n = read_fifo(f, fd[0], buf + got, sizeof(buf) - (size_t)got)) > 0)
                got += n;
        assert_int_equal(n, 0);
        assert_int_equal(got, 5);
        assert_memory_equal(buf, "hello", 5);
        close(fd[0]);
        fx_free(f);
}

/* An exit status no process can have, or garbage: the process is lost,
 * 255. */
static void hostile_exit_status(void **state)
{
        (void)state;
        for (int garbage = 0; garbage < 2; garbage++) {
                struct fx *f = fx_new(10000);
                fake_set(f->fake, "ReadStream", FAKE_HOLD, 0);
                if (garbage)
                        fake_set(f->fake, "WaitProcess", FAKE_GARBAGE, 0);
                f->fake->exit_status = 128 + 65;
                struct us_stdio stdio = {-1, -1, -1};
                struct sandbox_proc *p = NULL;
                assert_int_equal(sandbox_proc_new(&f->ctr, "e1", &stdio, &p, NULL), 0);
                sandbox_proc_poll(p);
                assert_int_equal(run_until(f, has_exited, NULL), 0);
                assert_int_equal(f->exits, 1);
                assert_int_equal(f->exit_status, 255);
                assert_string_equal(f->exit_exec, "e1");
                assert_int_equal(f->lost, 0);
                fx_free(f);
        }
}

/* More output than was asked for ends the stream: nothing of it reaches
 * the FIFO. */
static void oversized_read(void **state)
{
        (void)state;
        struct fx *f = fx_new(10000);
        fake_set(f->fake, "WaitProcess", FAKE_HOLD, 0);
        size_t big = (64u << 10) + 1;
        uint8_t *data = calloc(1, big);
        assert_non_null(data);
        f->fake->read_data = data;
        f->fake->read_len = big;
        int fd[2];
        assert_int_equal(pipe2(fd, O_CLOEXEC), 0);
        struct us_stdio stdio = {-1, fd[1], -1};
        struct sandbox_proc *p = NULL;
        assert_int_equal(sandbox_proc_new(&f->ctr, NULL, &stdio, &p, NULL), 0);
        close(fd[1]);
        sandbox_proc_poll(p);
        assert_int_equal(run_until(f, held, "WaitProcess"), 0);
        /* The shim's dup of the FIFO is closed: EOF, no byte. */
        char buf[16];
        assert_int_equal(read_fifo(f, fd[0], buf, sizeof(buf)), 0);
        assert_int_equal(fake_count(f->fake, "ReadStream"), 1);
        assert_int_equal(f->lost, 0);
        close(fd[0]);
        free(data);
        fx_free(f);
}

static bool stdin_over(struct fx *f)
{
        struct sandbox_proc *p = f->arg;
        return p->in_fd < 0 || fake_count(f->fake, "WriteStdin") >= 2 ||
               fake_count(f->fake, "CloseStdin") > 0;
}

/* A process's stdin: what the shim's pipe gets reaches the guest, then its
 * EOF (CloseStdin). */
static void process_stdin(void **state)
{
        (void)state;
        struct fx *f = fx_new(10000);
        fake_set(f->fake, "WaitProcess", FAKE_HOLD, 0);
        int fd[2];
        assert_int_equal(pipe2(fd, O_CLOEXEC), 0);
        struct us_stdio stdio = {fd[0], -1, -1};
        struct sandbox_proc *p = NULL;
        assert_int_equal(sandbox_proc_new(&f->ctr, NULL, &stdio, &p, NULL), 0);
        close(fd[0]);
        assert_int_equal(write(fd[1], "hello", 5), 5);
        close(fd[1]);
        sandbox_proc_poll(p);
        assert_int_equal(run_until(f, stdin_over, p), 0);
        assert_int_equal(fake_count(f->fake, "WriteStdin"), 1);
        assert_int_equal(f->fake->stdin_bytes, 5);
        assert_int_equal(fake_count(f->fake, "CloseStdin"), 1);
        assert_int_equal(f->lost, 0);
        fx_free(f);
}

/* A guest that says it took less than all of a write (nothing, or one byte
 * of it): the shim does not send the rest again at once (the guest would
 * spin its loop), it ends that stdin. */
static void stdin_answered_short(long taken)
{
        struct fx *f = fx_new(10000);
        fake_set(f->fake, "WaitProcess", FAKE_HOLD, 0);
        f->fake->stdin_taken = taken;
        int fd[2];
        assert_int_equal(pipe2(fd, O_CLOEXEC), 0);
        struct us_stdio stdio = {fd[0], -1, -1};
        struct sandbox_proc *p = NULL;
        assert_int_equal(sandbox_proc_new(&f->ctr, NULL, &stdio, &p, NULL), 0);
        close(fd[0]);
        assert_int_equal(write(fd[1], "hello", 5), 5);
        sandbox_proc_poll(p);
        assert_int_equal(run_until(f, stdin_over, p), 0);
        assert_int_equal(fake_count(f->fake, "WriteStdin"), 1);
        assert_true(p->in_fd < 0);
        assert_int_equal(f->lost, 0);
        close(fd[1]);
        fx_free(f);
}

static void stdin_no_progress(void **state)
{
        (void)state;
        stdin_answered_short(0);
}

static void stdin_partial(void **state)
{
        (void)state;
        stdin_answered_short(1);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(answered),
                cmocka_unit_test(error_status),
                cmocka_unit_test(garbage_reply),
                cmocka_unit_test(late_reply),
                cmocka_unit_test(never_answers),
                cmocka_unit_test(closed_mid_call),
                cmocka_unit_test(oversized_frame),
                cmocka_unit_test(owner_cancelled),
                cmocka_unit_test(process_output_and_exit),
                cmocka_unit_test(hostile_exit_status),
                cmocka_unit_test(oversized_read),
                cmocka_unit_test(process_stdin),
                cmocka_unit_test(stdin_no_progress),
                cmocka_unit_test(stdin_partial),
        };
        return unit_exit(unit_run_group_tests(tests, NULL, NULL));
}
