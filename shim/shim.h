/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/*
 * The serving shim: one process per pod (or per ungrouped container), owning
 * every task of that pod. State lives in struct shim, passed down; there are
 * no globals.
 */

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>

#include "engine/engine.h"
#include "policy/policy.h"
#include "base/error.h"
#include "base/loop.h"
#include "ttrpc/ttrpc.h"

struct shim_backend;
struct shim_events;
struct shim_task;

/* What containerd told us on the command line and in the environment. */
struct shim_args {
        const char *namespace;      /* -namespace */
        const char *address;        /* -address: containerd's grpc socket */
        const char *publish_binary; /* -publish-binary */
        const char *id;             /* -id */
        const char *bundle;         /* -bundle (delete only; else the cwd) */
        const char *ttrpc_address;  /* $TTRPC_ADDRESS: where events go */
        bool debug;
};

struct shim {
        const struct shim_args *args;
        struct us_loop *loop;
        struct us_ttrpc_server *server;
        struct shim_events *events;
        struct us_loop_source *signal_src;
        int signal_fd;
        char *socket_path; /* removed on exit */
        struct shim_task *tasks;
        struct shim_task *creating; /* whose backend's create has not finished */
        struct us_loop_source *idle_timer;
        bool shutting_down;
        /* The pod's policy: loaded and decided by its first task. */
        struct policy_config *config;
        bool kind_decided;
        enum policy_isolation kind;
        const struct shim_backend *backend; /* the pod's, once decided */
        void *backend_pod;                  /* the backend's per-pod object */
};

/* Registers the containerd.task.v2.Task methods on shim->server. */
int shim_service_register(struct shim *shim, struct us_error **err);

/* Reaps every exited child (SIGCHLD) and turns exits into task state, events
 * and Wait replies. */
void shim_reap(struct shim *shim);

/* Exits the loop if no task is left (after the last Delete, or Shutdown). */
void shim_maybe_exit(struct shim *shim, bool now);

/* Publishes an event to containerd; a failure is logged, not fatal. */
#include <protobuf-c/protobuf-c.h>
void shim_publish(struct shim *shim, const char *topic, const ProtobufCMessage *msg);
