/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/*
 * A single-threaded epoll event loop shared by the shim and the guest agent.
 * Sources may be removed from inside any callback, including their own: the
 * loop frees them only after the current dispatch batch.
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
