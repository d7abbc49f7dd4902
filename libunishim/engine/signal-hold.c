/* SPDX-License-Identifier: Apache-2.0 */
/* Signals that the kernel would drop for a container's init: a process that
 * is PID 1 of its PID namespace gets no signal whose disposition is SIG_DFL
 * (the kernel discards it at sending, SIGNAL_UNKILLABLE), and between its
 * exec and its sigaction() every disposition is SIG_DFL. A TERM sent then,
 * as a kubelet does to a pod deleted while it starts, would be lost and the
 * container would run until the KILL at the end of the grace period. Such a
 * signal is held instead and sent once the process has decided: a handler,
 * SIG_IGN or a blocked mask (signalfd, sigwait). Checked from the loop on a
 * timer that backs off, for a bounded time. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "signal-hold.h"

#include "base/cleanup.h"

static uint64_t sig_bit(int sig)
{
        return UINT64_C(1) << (sig - 1);
}

/* Signals whose default action ends the process and that a process can
 * catch: the ones a PID 1 loses while it has no handler. The others are
 * sent as they are: KILL and STOP cannot be caught (and KILL from the
 * agent, an ancestor namespace, does kill a PID 1), CONT and the stop
 * signals act at sending, CHLD, URG and WINCH are ignored by default. */
static bool holdable(int sig)
{
        if (sig < 1 || sig > 64)
                return false;
        switch (sig) {
        case SIGKILL:
        case SIGSTOP:
        case SIGCONT:
        case SIGTSTP:
        case SIGTTIN:
        case SIGTTOU:
        case SIGCHLD:
        case SIGURG:
        case SIGWINCH:
                return false;
        default:
                return true;
        }
}

static int parse_mask(const char *s, size_t n, uint64_t *ret)
{
        uint64_t v = 0;
        if (n == 0 || n > 16)
                return -EINVAL;
        for (size_t i = 0; i < n; i++) {
                char c = s[i];
                unsigned d;
                if (c >= '0' && c <= '9')
                        d = (unsigned)(c - '0');
                else if (c >= 'a' && c <= 'f')
                        d = (unsigned)(c - 'a' + 10);
                else
                        return -EINVAL;
                v = v << 4 | d;
        }
        *ret = v;
        return 0;
}

/* What a status parse has found so far. */
struct status_parse {
        struct us_signal_status st;
        unsigned seen; /* bit i: the Sig* line of masks[i]; bit 3: NSpid */
};

/* One line of /proc/PID/status, from line to eol (without the newline). */
static int status_line(struct status_parse *p, const char *line, const char *eol,
                       struct us_error **err)
{
        static const struct {
                const char *key;
                size_t off;
        } masks[] = {
                {"SigBlk:", offsetof(struct us_signal_status, blocked)},
                {"SigIgn:", offsetof(struct us_signal_status, ignored)},
                {"SigCgt:", offsetof(struct us_signal_status, caught)},
        };
        const char *v = memchr(line, ':', (size_t)(eol - line));
        if (!v)
                return 0;
        size_t klen = (size_t)(v - line) + 1;
        v++;
        while (v < eol && (*v == '\t' || *v == ' '))
                v++;
        for (size_t i = 0; i < US_ELEMENTSOF(masks); i++) {
                if (klen != strlen(masks[i].key) || memcmp(line, masks[i].key, klen) != 0)
                        continue;
                if (p->seen & (1u << i) ||
                    parse_mask(v, (size_t)(eol - v), (uint64_t *)((char *)&p->st + masks[i].off)) <
                            0)
                        return us_error_msg(err, EINVAL, "process status: bad %s line",
                                            masks[i].key);
                p->seen |= 1u << i;
                return 0;
        }
        if (klen != 6 || memcmp(line, "NSpid:", 6) != 0)
                return 0;
        /* The pid in each namespace, outermost first: the last one is the
         * process's own namespace's. */
        const char *last = eol;
        while (last > v && last[-1] != '\t' && last[-1] != ' ')
                last--;
        if (p->seen & 8 || last == eol)
                return us_error_msg(err, EINVAL, "process status: bad NSpid line");
        p->st.pidns_init = eol - last == 1 && *last == '1';
        p->seen |= 8;
        return 0;
}

static int status_end(const struct status_parse *p, struct us_signal_status *ret,
                      struct us_error **err)
{
        if (p->seen != 15)
                return us_error_msg(err, EINVAL, "process status: no NSpid or Sig* line");
        *ret = p->st;
        return 0;
}

int us_signal_status_parse(const char *text, size_t len, struct us_signal_status *ret,
                           struct us_error **err)
{
        struct status_parse p = {0};
        const char *end = text + len;
        for (const char *line = text; line < end;) {
                const char *nl = memchr(line, '\n', (size_t)(end - line));
                const char *eol = nl ? nl : end;
                int r = status_line(&p, line, eol, err);
                if (r < 0)
                        return r;
                line = nl ? nl + 1 : end;
        }
        return status_end(&p, ret, err);
}

bool us_signal_would_drop(const struct us_signal_status *st, int sig)
{
        if (!holdable(sig) || !st->pidns_init)
                return false;
        uint64_t b = sig_bit(sig);
        return !((st->blocked | st->ignored | st->caught) & b);
}

static int read_status(pid_t pid, struct us_signal_status *ret, struct us_error **err)
{
        char path[32];
        snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
        _cleanup_fclose_ FILE *f = fopen(path, "re");
        if (!f)
                return us_errorf(err, errno, "open %s", path);
        /* Line by line: Groups can be long (65536 ids), and is not needed. */
        _cleanup_free_ char *line = NULL;
        size_t cap = 0;
        struct status_parse p = {0};
        ssize_t n;
        while ((n = getline(&line, &cap, f)) > 0) {
                const char *eol = line + n - (line[n - 1] == '\n');
                int r = status_line(&p, line, eol, err);
                if (r < 0)
                        return r;
        }
        if (ferror(f))
                return us_errorf(err, EIO, "read %s", path);
        return status_end(&p, ret, err);
}

void us_signal_hold_init(struct us_signal_hold *h)
{
        memset(h, 0, sizeof(*h));
        h->pidfd = -1;
        h->hold_ms = US_SIGNAL_HOLD_MS;
}

void us_signal_forget(struct us_signal_hold *h)
{
        h->timer = us_loop_source_remove(h->timer);
        h->pidfd = us_close(h->pidfd);
        h->sigs = 0;
}

static int pidfd_signal(int pidfd, int sig)
{
        return (int)syscall(SYS_pidfd_send_signal, pidfd, sig, NULL, 0);
}

static void hold_check(struct us_loop_source *src, void *userdata);

static int hold_arm(struct us_signal_hold *h, struct us_error **err)
{
        int64_t left = h->until_ms - us_monotonic_ms();
        uint64_t delay = h->delay_ms;
        if (left < (int64_t)delay)
                delay = left > 0 ? (uint64_t)left : 0;
        return us_loop_add_timer(h->loop, delay, hold_check, h, &h->timer, err);
}

static void hold_check(struct us_loop_source *src, void *userdata)
{
        (void)src;
        struct us_signal_hold *h = userdata;
        h->timer = NULL; /* the loop removed the one-shot source */
        struct us_signal_status st;
        /* The status read is the held process's only if the pidfd still
         * signals after it: until it is reaped, no other takes its pid. */
        if (read_status(h->pid, &st, NULL) < 0 || pidfd_signal(h->pidfd, 0) < 0) {
                us_signal_forget(h);
                return;
        }
        for (int sig = 1; sig <= 64; sig++) {
                if (!(h->sigs & sig_bit(sig)) || us_signal_would_drop(&st, sig))
                        continue;
                h->sigs &= ~sig_bit(sig);
                /* Failing, it has exited since: nothing left to tell. */
                (void)pidfd_signal(h->pidfd, sig);
        }
        /* Never decided by the end: a program that runs as PID 1 without
         * handling the signal, which the kernel would drop anyway. */
        if (!h->sigs || us_monotonic_ms() >= h->until_ms) {
                us_signal_forget(h);
                return;
        }
        h->delay_ms =
                h->delay_ms * 2 > US_SIGNAL_CHECK_MAX_MS ? US_SIGNAL_CHECK_MAX_MS : h->delay_ms * 2;
        if (hold_arm(h, NULL) < 0) {
                /* No timer: send them now rather than keep them forever. */
                for (int sig = 1; sig <= 64; sig++)
                        if (h->sigs & sig_bit(sig))
                                (void)pidfd_signal(h->pidfd, sig);
                us_signal_forget(h);
        }
}

int us_signal_send(struct us_signal_hold *h, struct us_loop *loop, pid_t pid, int sig,
                   struct us_error **err)
{
        if (sig == SIGKILL)
                us_signal_forget(h);
        struct us_signal_status st;
        /* A status that cannot be read: the kill below tells why (ESRCH), or
         * the signal goes as it is; so does one without a pidfd (a kernel
         * before 5.3) rather than be held for another process. */
        if (holdable(sig) && read_status(pid, &st, NULL) >= 0 && us_signal_would_drop(&st, sig)) {
                if (h->sigs && h->pid == pid) {
                        h->sigs |= sig_bit(sig);
                        return 0;
                }
                _cleanup_close_ int pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
                us_signal_forget(h);
                h->loop = loop;
                h->pid = pid;
                h->delay_ms = US_SIGNAL_CHECK_FIRST_MS;
                h->until_ms = us_monotonic_ms() + (int64_t)h->hold_ms;
                if (pidfd >= 0 && hold_arm(h, NULL) >= 0) {
                        h->pidfd = TAKE_FD(pidfd);
                        h->sigs = sig_bit(sig);
                        return 0;
                }
        }
        if (kill(pid, sig) < 0)
                return us_errorf(err, errno, "kill %d with signal %d", (int)pid, sig);
        return 0;
}
