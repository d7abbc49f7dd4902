/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/*
 * Publishes task events to containerd: containerd.services.events.ttrpc.v1
 * .Events/Forward on $TTRPC_ADDRESS, one Envelope per event, with the topic
 * and type names containerd's own shims use (/tasks/exit,
 * containerd.events.TaskExit, ...).
 */

#include <protobuf-c/protobuf-c.h>
#include <time.h>

#include "google/protobuf/timestamp.pb-c.h"

#include "base/error.h"

struct shim_events;

/* A google.protobuf.Timestamp of ts (CLOCK_REALTIME), or of now when ts is
 * NULL: the time fields of events and Task replies. */
Google__Protobuf__Timestamp shim_timestamp(const struct timespec *ts);

/* Events queued at most: past it the oldest not yet on its way is dropped
 * (with a warning), so a containerd gone for good cannot take the shim's
 * memory. */
#define SHIM_EVENTS_MAX_QUEUED 4096

struct us_loop;

/* A publisher that sends from loop (which must outlive it). ttrpc_address
 * may be NULL or empty: events are then dropped (and said so once by the
 * caller). max_queued 0: SHIM_EVENTS_MAX_QUEUED. Strings are copied. */
int shim_events_new(struct us_loop *loop, const char *ttrpc_address, const char *namespace,
                    size_t max_queued, struct shim_events **ret, struct us_error **err);
/* Drops what is still queued. */
struct shim_events *shim_events_free(struct shim_events *ev);

/* Queues one event, stamped now; topic e.g. "/tasks/exit", event a message
 * whose descriptor's full name becomes the Any type url. Never blocks: the
 * events go out in order from the loop, each retried (with a growing pause,
 * at most 2 s) until containerd takes it. Fails only without memory. */
int shim_events_publish(struct shim_events *ev, const char *topic, const ProtobufCMessage *event,
                        struct us_error **err);

/* Events not yet taken by containerd. */
size_t shim_events_queued(const struct shim_events *ev);

/* fn(userdata) runs (from the loop) each time the queue becomes empty;
 * NULL to stop. For a shim that wants its last events out before it exits. */
void shim_events_on_drained(struct shim_events *ev, void (*fn)(void *userdata), void *userdata);
