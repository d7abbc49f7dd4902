/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/*
 * Signals that the kernel would drop for a container's init, held until the
 * process can take them (signal-hold.c says why). Used wherever a
 * container's init is signalled from outside its PID namespace: the guest
 * agent for the sandbox kind, the engine (engine.h) for the container kind.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "base/error.h"
#include "base/loop.h"

#define US_SIGNAL_HOLD_MS        30000 /* the default grace period */
#define US_SIGNAL_CHECK_FIRST_MS 2
#define US_SIGNAL_CHECK_MAX_MS   250

/* What /proc/PID/status says of a process's signals. */
struct us_signal_status {
        bool pidns_init;                   /* PID 1 of its own PID namespace (NSpid's last is 1) */
        uint64_t blocked, ignored, caught; /* SigBlk, SigIgn, SigCgt: bit sig - 1 */
};

/* Parses the text of /proc/PID/status (NSpid, SigBlk, SigIgn, SigCgt, each
 * once). No side effects. */
int us_signal_status_parse(const char *text, size_t len, struct us_signal_status *ret,
                           struct us_error **err);
/* The kernel would drop sig sent now: a catchable signal that ends the
 * process by default, to a PID-namespace init that neither handles, ignores
 * nor blocks it (SIG_DFL; the kernel protects a namespace's init). */
bool us_signal_would_drop(const struct us_signal_status *st, int sig);

/* Signals held for one process until it has decided what to do with them. */
struct us_signal_hold {
        struct us_loop *loop;
        pid_t pid;
        int pidfd;                    /* pid's, while signals are held: -1 otherwise */
        uint64_t sigs;                /* held: bit sig - 1; 0: none */
        struct us_loop_source *timer; /* the next check; NULL when none */
        uint64_t delay_ms;            /* until the check after it */
        int64_t until_ms;             /* monotonic: held signals are dropped then */
        uint64_t hold_ms;             /* US_SIGNAL_HOLD_MS unless a test sets less */
};

void us_signal_hold_init(struct us_signal_hold *h);
/* Sends sig to pid now, or, when the kernel would drop it (above), holds it
 * in h and sends it from loop once the process has a handler, ignores or
 * blocks it (checked with a back-off from US_SIGNAL_CHECK_FIRST_MS to
 * US_SIGNAL_CHECK_MAX_MS); after h->hold_ms it is dropped, as the kernel
 * would have. What is held goes to the process it was held for, through a
 * pidfd: never to another that reuses its pid, and not at all once it has
 * been reaped. SIGKILL forgets what is held. h holds for one pid at a time:
 * another pid's signal replaces what was held. Returns 0 (sent or held) or
 * the kill's negative errno. */
int us_signal_send(struct us_signal_hold *h, struct us_loop *loop, pid_t pid, int sig,
                   struct us_error **err);
/* Drops what is held and the timer (the process exited or is released). */
void us_signal_forget(struct us_signal_hold *h);
