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

#include "error.h"

struct shim_events;

/* A google.protobuf.Timestamp of ts (CLOCK_REALTIME), or of now when ts is
 * NULL: the time fields of events and Task replies. */
Google__Protobuf__Timestamp shim_timestamp(const struct timespec *ts);

/* ttrpc_address may be NULL or empty: events are then dropped (and said so
 * once by the caller). Strings are copied. */
int shim_events_new(const char *ttrpc_address, const char *namespace, struct shim_events **ret,
                    struct us_error **err);
struct shim_events *shim_events_free(struct shim_events *ev);

/* Sends one event; topic e.g. "/tasks/exit", event a packed-able message
 * whose descriptor's full name becomes the Any type url. Reconnects once on
 * a broken connection. Blocks at most a few seconds. */
int shim_events_publish(struct shim_events *ev, const char *topic, const ProtobufCMessage *event,
                        struct us_error **err);
