/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/*
 * A single-threaded epoll event loop shared by the shim and the guest agent.
 * Sources may be removed from inside any callback, including their own: the
 * loop frees them only after the current dispatch batch.
 *
 * Every call here is for the loop's own thread, except
 * us_loop_mailbox_post: another thread hands the loop work through a
 * mailbox (a library whose API blocks, run on a thread of its own).
 */

#include <stdbool.h>
#include <stdint.h>

#include "error.h"

struct us_loop;
struct us_loop_source;

/* Called with the epoll events (EPOLLIN, EPOLLOUT, EPOLLHUP, ...) ready on fd. */
typedef void (*us_loop_fd_fn)(struct us_loop_source *src, int fd, uint32_t events, void *userdata);

/* Called once when a timer fires (one-shot). */
typedef void (*us_loop_timer_fn)(struct us_loop_source *src, void *userdata);

int us_loop_new(struct us_loop **ret, struct us_error **err);
struct us_loop *us_loop_free(struct us_loop *loop);

/* Watches fd (not owned: the caller closes it after removing the source).
 * *ret_src (optional) is owned by the loop; drop it with us_loop_source_remove(). */
int us_loop_add_fd(struct us_loop *loop, int fd, uint32_t events, us_loop_fd_fn fn, void *userdata,
                   struct us_loop_source **ret_src, struct us_error **err);

/* Changes the epoll event mask of an fd source. */
int us_loop_source_set_events(struct us_loop_source *src, uint32_t events, struct us_error **err);

/* CLOCK_MONOTONIC in milliseconds, the clock of the loop's timers: for
 * deadlines and elapsed times. */
int64_t us_monotonic_ms(void);

/* One-shot timer after msec milliseconds (monotonic clock). */
int us_loop_add_timer(struct us_loop *loop, uint64_t msec, us_loop_timer_fn fn, void *userdata,
                      struct us_loop_source **ret_src, struct us_error **err);

/* Stops watching and frees the source (deferred while dispatching). NULL is fine.
 * Returns NULL. */
struct us_loop_source *us_loop_source_remove(struct us_loop_source *src);

struct us_loop *us_loop_source_loop(const struct us_loop_source *src);

/* Runs until us_loop_quit(); returns the code given to it. */
int us_loop_run(struct us_loop *loop);
void us_loop_quit(struct us_loop *loop, int code);

/* ---- work from other threads ---- */

/* A message, embedded in the sender's own struct: posting allocates
 * nothing, so it cannot fail, and a reply is never lost. fn runs on the
 * loop's thread and owns the enclosing struct from then on. */
struct us_loop_mail {
        struct us_loop_mail *next;
        void (*fn)(struct us_loop_mail *mail);
};

struct us_loop_mailbox;

int us_loop_mailbox_new(struct us_loop *loop, struct us_loop_mailbox **ret, struct us_error **err);
/* From any thread: mail->fn(mail) runs on the loop's thread, after the
 * mail posted before it by the same thread. */
void us_loop_mailbox_post(struct us_loop_mailbox *mb, struct us_loop_mail *mail,
                          void (*fn)(struct us_loop_mail *mail));
/* On the loop's thread, once no other thread posts any more: mail still
 * queued is delivered first. Returns NULL. */
struct us_loop_mailbox *us_loop_mailbox_free(struct us_loop_mailbox *mb);
