/* SPDX-License-Identifier: Apache-2.0 */
/* Signals a container's init would lose (signal-hold.c): the status parser
 * on good and bad text, and, with real processes that are PID 1 of a PID
 * namespace of their own (root only), a TERM sent before the process set a
 * handler reaches the handler once it is set; one never handled is dropped
 * after the hold, without spinning; KILL forgets it; a process that is not
 * a namespace's init, or that ignores the signal, gets it at once; one
 * held for a process that is reaped meanwhile is forgotten, pidfd and all. */
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "unit.h"

#include "base/cleanup.h"
#include "base/loop.h"
#include "engine/signal-hold.h"

#define BIT(sig) (UINT64_C(1) << ((sig)-1))

static const char STATUS[] = "Name:\ttop\n"
                             "State:\tS (sleeping)\n"
                             "Groups:\t1 2 3\n"
                             "NStgid:\t211\t1\n"
                             "NSpid:\t211\t1\n"
                             "SigQ:\t0/3857\n"
                             "SigPnd:\t0000000000000000\n"
                             "ShdPnd:\t0000000000000000\n"
                             "SigBlk:\t0000000000010000\n"
                             "SigIgn:\t0000000000001000\n"
                             "SigCgt:\t0000000000004002\n"
                             "CapInh:\t0000000000000000\n";

static void test_parse(void **state)
{
        (void)state;
        struct us_signal_status st;
        assert_int_equal(us_signal_status_parse(STATUS, strlen(STATUS), &st, NULL), 0);
        assert_true(st.pidns_init);
        assert_int_equal(st.blocked, BIT(SIGCHLD));
        assert_int_equal(st.ignored, BIT(SIGPIPE));
        assert_int_equal(st.caught, BIT(SIGTERM) | BIT(SIGINT));
        /* The last NSpid is the process's own namespace's. */
        const char *host = "NSpid:\t1\t211\nSigBlk:\t0\nSigIgn:\t0\nSigCgt:\t0";
        assert_int_equal(us_signal_status_parse(host, strlen(host), &st, NULL), 0);
        assert_false(st.pidns_init);
        const char *one = "NSpid:\t11\nSigBlk:\t0\nSigIgn:\t0\nSigCgt:\t0\n";
        assert_int_equal(us_signal_status_parse(one, strlen(one), &st, NULL), 0);
        assert_false(st.pidns_init);
}

static void test_parse_bad(void **state)
{
        (void)state;
        static const char *const bad[] = {
                "",
                "NSpid:\t1\nSigBlk:\t0\nSigIgn:\t0\n",                             /* no SigCgt */
                "SigBlk:\t0\nSigIgn:\t0\nSigCgt:\t0\n",                            /* no NSpid */
                "NSpid:\t1\nSigBlk:\t0\nSigIgn:\t0\nSigCgt:\t0g\n",                /* not hex */
                "NSpid:\t1\nSigBlk:\t0\nSigIgn:\t0\nSigCgt:\t\n",                  /* empty */
                "NSpid:\t1\nSigBlk:\t0\nSigIgn:\t0\nSigCgt:\t00000000000000001\n", /* 17 */
                "NSpid:\t1\nSigBlk:\t0\nSigIgn:\t0\nSigCgt:\t0\nSigCgt:\t0\n",     /* twice */
                "NSpid:\t1\nNSpid:\t1\nSigBlk:\t0\nSigIgn:\t0\nSigCgt:\t0\n",
                "NSpid:\t\nSigBlk:\t0\nSigIgn:\t0\nSigCgt:\t0\n",
                "NSpid:\t1 \nSigBlk:\t0\nSigIgn:\t0\nSigCgt:\t0\n",
        };
        for (size_t i = 0; i < US_ELEMENTSOF(bad); i++) {
                struct us_signal_status st = {.pidns_init = true, .caught = 7};
                struct us_error *err = NULL;
                int r = us_signal_status_parse(bad[i], strlen(bad[i]), &st, &err);
                assert_int_equal(r, -EINVAL);
                assert_non_null(err);
                us_error_free(err);
                assert_true(st.pidns_init); /* untouched */
                assert_int_equal(st.caught, 7);
        }
        /* Not NUL-terminated: the length bounds it. */
        char buf[sizeof(STATUS) - 1];
        memcpy(buf, STATUS, sizeof(buf));
        struct us_signal_status st;
        assert_int_equal(us_signal_status_parse(buf, sizeof(buf), &st, NULL), 0);
}

static void test_would_drop(void **state)
{
        (void)state;
        struct us_signal_status init = {.pidns_init = true};
        assert_true(us_signal_would_drop(&init, SIGTERM));
        assert_true(us_signal_would_drop(&init, SIGINT));
        assert_true(us_signal_would_drop(&init, SIGUSR1));
        assert_true(us_signal_would_drop(&init, SIGRTMIN));
        assert_false(us_signal_would_drop(&init, SIGKILL));
        assert_false(us_signal_would_drop(&init, SIGSTOP));
        assert_false(us_signal_would_drop(&init, SIGCONT));
        assert_false(us_signal_would_drop(&init, SIGCHLD));
        assert_false(us_signal_would_drop(&init, SIGWINCH));
        assert_false(us_signal_would_drop(&init, 0));
        assert_false(us_signal_would_drop(&init, 65));
        struct us_signal_status decided[] = {
                {.pidns_init = true, .caught = BIT(SIGTERM)},
                {.pidns_init = true, .ignored = BIT(SIGTERM)},
                {.pidns_init = true, .blocked = BIT(SIGTERM)},
                {.pidns_init = false},
        };
        for (size_t i = 0; i < US_ELEMENTSOF(decided); i++)
                assert_false(us_signal_would_drop(&decided[i], SIGTERM));
}

/* ---- real processes ---- */

enum child_kind { CHILD_LATE_HANDLER, CHILD_NEVER, CHILD_IGNORES };

static void on_term(int sig)
{
        (void)sig;
        _exit(43);
}

/* The child: SIG_DFL everywhere, tells it runs (one byte on ready), then
 * for CHILD_LATE_HANDLER waits for "go" and sets a TERM handler; then
 * waits for signals. */
static void child_main(enum child_kind kind, int go, int ready)
{
        /* A failed assertion leaves the test without reaping: the child
         * goes with it (a KILL from the parent's namespace reaches a PID 1). */
        (void)prctl(PR_SET_PDEATHSIG, SIGKILL);
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        for (int s = 1; s < 32; s++)
                if (s != SIGKILL && s != SIGSTOP)
                        signal(s, SIG_DFL);
        if (kind == CHILD_IGNORES)
                signal(SIGTERM, SIG_IGN);
        char c = 'r';
        if (write(ready, &c, 1) != 1)
                _exit(2);
        if (kind == CHILD_LATE_HANDLER) {
                if (read(go, &c, 1) != 1)
                        _exit(3);
                struct sigaction sa = {.sa_handler = on_term};
                sigaction(SIGTERM, &sa, NULL);
                if (write(ready, &c, 1) != 1)
                        _exit(2);
        }
        for (;;)
                pause();
}

struct child {
        pid_t pid;
        int go, ready; /* parent's ends */
};

/* Starts a child, PID 1 of a new PID namespace when own_pidns; returns
 * false (and skips) when that needs privileges this run lacks. */
static bool child_start(struct child *ch, enum child_kind kind, bool own_pidns)
{
        int go[2], ready[2];
        assert_int_equal(pipe2(go, O_CLOEXEC), 0);
        assert_int_equal(pipe2(ready, O_CLOEXEC), 0);
        long pid = syscall(SYS_clone, (own_pidns ? CLONE_NEWPID : 0) | SIGCHLD, 0, 0, 0, 0);
        if (pid < 0 && (errno == EPERM || errno == EINVAL)) {
                close(go[0]), close(go[1]), close(ready[0]), close(ready[1]);
                return false;
        }
        assert_true(pid >= 0);
        if (pid == 0)
                child_main(kind, go[0], ready[1]);
        close(go[0]);
        close(ready[1]);
        ch->pid = (pid_t)pid;
        ch->go = go[1];
        ch->ready = ready[0];
        char c;
        assert_int_equal(read(ch->ready, &c, 1), 1);
        return true;
}

static int child_reap(struct child *ch)
{
        int status = 0;
        assert_int_equal(waitpid(ch->pid, &status, 0), ch->pid);
        close(ch->go);
        close(ch->ready);
        return status;
}

struct run {
        struct us_loop *loop;
        struct us_signal_hold *h;
        struct child *ch;
        bool until_exit; /* the hold being over is not enough: the child's exit */
        bool exited, hung;
        int status;
};

/* Stops the loop when the child exited or (unless until_exit) the hold is
 * over: polled, the events are the hold's own timers. A held signal
 * delivered is not yet a child gone: its handler still has to run. */
static void poll_tick(struct us_loop_source *src, void *userdata)
{
        (void)src;
        struct run *rn = userdata;
        int status;
        if (waitpid(rn->ch->pid, &status, WNOHANG) == rn->ch->pid) {
                rn->exited = true;
                rn->status = status;
                us_loop_quit(rn->loop, 0);
                return;
        }
        if (!rn->until_exit && rn->h->sigs == 0 && !rn->h->timer) {
                us_loop_quit(rn->loop, 0);
                return;
        }
        assert_int_equal(us_loop_add_timer(rn->loop, 5, poll_tick, rn, NULL, NULL), 0);
}

static void hang_guard(struct us_loop_source *src, void *userdata)
{
        (void)src;
        struct run *rn = userdata;
        rn->hung = true;
        us_loop_quit(rn->loop, 0);
}

static void run_until_settled(struct run *rn)
{
        struct us_loop_source *guard = NULL;
        assert_int_equal(us_loop_add_timer(rn->loop, 5, poll_tick, rn, NULL, NULL), 0);
        assert_int_equal(us_loop_add_timer(rn->loop, (uint64_t)unit_wait_ms(20000), hang_guard, rn,
                                           &guard, NULL),
                         0);
        us_loop_run(rn->loop);
        us_loop_source_remove(guard);
}

/* A loop, a child and an empty hold; skips when the child cannot be PID 1
 * of a PID namespace of its own. */
struct fx {
        struct us_loop *loop;
        struct child ch;
        struct us_signal_hold h;
};

static void fx_start(struct fx *f, enum child_kind kind, bool own_pidns)
{
        assert_int_equal(us_loop_new(&f->loop, NULL), 0);
        if (!child_start(&f->ch, kind, own_pidns)) {
                f->loop = us_loop_free(f->loop);
                unit_skip("a new PID namespace needs CAP_SYS_ADMIN");
        }
        us_signal_hold_init(&f->h);
}

/* Reaps the child, which must have died of sig, and ends the fixture. */
static void fx_end_killed_by(struct fx *f, int sig)
{
        int status = child_reap(&f->ch);
        assert_true(WIFSIGNALED(status));
        assert_int_equal(WTERMSIG(status), sig);
        us_signal_forget(&f->h);
        f->loop = us_loop_free(f->loop);
}

static void test_late_handler_gets_term(void **state)
{
        (void)state;
        struct fx f;
        fx_start(&f, CHILD_LATE_HANDLER, true);
        /* No handler yet: the kernel would drop it, so it is held. */
        assert_int_equal(us_signal_send(&f.h, f.loop, f.ch.pid, SIGTERM, NULL), 0);
        assert_int_equal(f.h.sigs, BIT(SIGTERM));
        assert_non_null(f.h.timer);
        char c = 'g';
        assert_int_equal(write(f.ch.go, &c, 1), 1);
        assert_int_equal(read(f.ch.ready, &c, 1), 1); /* the handler is set */
        struct run rn = {.loop = f.loop, .h = &f.h, .ch = &f.ch, .until_exit = true};
        run_until_settled(&rn);
        if (!rn.exited) {
                kill(f.ch.pid, SIGKILL);
                rn.status = child_reap(&f.ch);
        } else {
                close(f.ch.go);
                close(f.ch.ready);
        }
        assert_false(rn.hung);
        assert_true(WIFEXITED(rn.status));
        assert_int_equal(WEXITSTATUS(rn.status), 43); /* its handler's */
        us_signal_forget(&f.h);
        us_loop_free(f.loop);
}

static void test_never_handled_is_dropped(void **state)
{
        (void)state;
        struct fx f;
        fx_start(&f, CHILD_NEVER, true);
        f.h.hold_ms = 300;
        assert_int_equal(us_signal_send(&f.h, f.loop, f.ch.pid, SIGTERM, NULL), 0);
        assert_int_equal(us_signal_send(&f.h, f.loop, f.ch.pid, SIGUSR1, NULL), 0);
        assert_int_equal(f.h.sigs, BIT(SIGTERM) | BIT(SIGUSR1));
        struct run rn = {.loop = f.loop, .h = &f.h, .ch = &f.ch};
        run_until_settled(&rn);
        assert_false(rn.hung);
        assert_false(rn.exited); /* as the kernel would: PID 1 ignores them */
        assert_int_equal(f.h.sigs, 0);
        assert_null(f.h.timer); /* nothing left running */
        assert_int_equal(us_signal_send(&f.h, f.loop, f.ch.pid, SIGKILL, NULL), 0);
        fx_end_killed_by(&f, SIGKILL);
}

static void test_kill_forgets(void **state)
{
        (void)state;
        struct fx f;
        fx_start(&f, CHILD_NEVER, true);
        assert_int_equal(us_signal_send(&f.h, f.loop, f.ch.pid, SIGTERM, NULL), 0);
        assert_int_equal(f.h.sigs, BIT(SIGTERM));
        assert_int_equal(us_signal_send(&f.h, f.loop, f.ch.pid, SIGKILL, NULL), 0);
        assert_int_equal(f.h.sigs, 0);
        assert_null(f.h.timer);
        fx_end_killed_by(&f, SIGKILL);
}

/* Held for a process that exits and is reaped before deciding: the next
 * check finds its pidfd dead and lets go of everything. */
static void test_reaped_forgets(void **state)
{
        (void)state;
        struct fx f;
        fx_start(&f, CHILD_NEVER, true);
        assert_int_equal(us_signal_send(&f.h, f.loop, f.ch.pid, SIGTERM, NULL), 0);
        assert_int_equal(f.h.sigs, BIT(SIGTERM));
        assert_true(f.h.pidfd >= 0);
        assert_int_equal(kill(f.ch.pid, SIGKILL), 0);
        int status = child_reap(&f.ch);
        assert_true(WIFSIGNALED(status));
        struct run rn = {.loop = f.loop, .h = &f.h, .ch = &f.ch};
        run_until_settled(&rn);
        assert_false(rn.hung);
        assert_int_equal(f.h.sigs, 0);
        assert_null(f.h.timer);
        assert_int_equal(f.h.pidfd, -1);
        us_loop_free(f.loop);
}

/* Not a namespace's init: SIG_DFL TERM ends it, sent at once. */
static void test_not_init_at_once(void **state)
{
        (void)state;
        struct fx f;
        fx_start(&f, CHILD_NEVER, false);
        assert_int_equal(us_signal_send(&f.h, f.loop, f.ch.pid, SIGTERM, NULL), 0);
        assert_int_equal(f.h.sigs, 0);
        assert_null(f.h.timer);
        fx_end_killed_by(&f, SIGTERM);
}

/* An init that ignores TERM has decided: nothing is held. */
static void test_ignored_not_held(void **state)
{
        (void)state;
        struct fx f;
        fx_start(&f, CHILD_IGNORES, true);
        assert_int_equal(us_signal_send(&f.h, f.loop, f.ch.pid, SIGTERM, NULL), 0);
        assert_int_equal(f.h.sigs, 0);
        assert_null(f.h.timer);
        pid_t pid = f.ch.pid;
        kill(pid, SIGKILL);
        struct us_loop *loop = f.loop;
        f.loop = NULL;
        fx_end_killed_by(&f, SIGKILL);
        /* A process that is gone: the kill's error. */
        struct us_error *err = NULL;
        assert_int_equal(us_signal_send(&f.h, loop, pid, SIGTERM, &err), -ESRCH);
        us_error_free(err);
        us_loop_free(loop);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_parse),
                cmocka_unit_test(test_parse_bad),
                cmocka_unit_test(test_would_drop),
                cmocka_unit_test(test_late_handler_gets_term),
                cmocka_unit_test(test_never_handled_is_dropped),
                cmocka_unit_test(test_kill_forgets),
                cmocka_unit_test(test_reaped_forgets),
                cmocka_unit_test(test_not_init_at_once),
                cmocka_unit_test(test_ignored_not_held),
        };
        return unit_exit(unit_run_group_tests(tests, NULL, NULL));
}
