/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/*
 * The processes of a sandbox pod's containers, as the host sees them: each
 * one's long polls on the guest agent's channel (agent.h) -- its output
 * streams pumped into containerd's FIFOs with back-pressure, its stdin
 * written to the guest, its exit. Knows the container only as struct
 * sandbox_container, which the backend (backend.c) embeds in its task.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "agent/agent.pb-c.h"
#include "engine/engine.h"
#include "base/loop.h"
#include "agent.h"

struct sandbox_proc;

/* A container in the guest as its processes see it; outlives them. */
struct sandbox_container {
        struct sandbox_agent *agent; /* the pod's */
        struct us_loop *loop;
        const char *id;
        /* The owner of the processes' agent calls (cancelled with it), and
         * exited's argument: the backend's task. */
        void *owner;
        /* A process exited: status is its code, or 128 + its signal; 255
         * when the guest could not tell. */
        void (*exited)(void *owner, const char *exec_id, uint32_t status);
        struct sandbox_proc *procs; /* the newest first */
};

/* One output stream of a guest process, pumped into containerd's FIFO. */
struct sandbox_stream {
        struct sandbox_proc *proc;
        Unishim__Agent__V1__Stream which;
        int fd; /* the FIFO (a dup), -1 when done */
        uint64_t call;
        struct us_loop_source *out_watch;
        struct us_loop_source *retry;
        uint8_t *pending; /* read from the guest, not yet written */
        size_t pending_len, pending_off;
        bool eof;
};

struct sandbox_proc {
        struct sandbox_proc *next;
        struct sandbox_container *container;
        char *exec_id; /* NULL: the container's init */
        struct sandbox_stream out, err;
        int in_fd; /* the shim's stdin pipe (a dup), -1 */
        struct us_loop_source *in_watch;
        uint8_t *in_buf; /* read from the pipe, not yet taken by the guest */
        size_t in_len;
        uint64_t wait_call, stdin_call;
        bool exited;
        bool closing;
};

/* A guest process of container c: its stdio are dups of the shim's (FIFOs,
 * stdin pipe); linked first into c->procs. */
int sandbox_proc_new(struct sandbox_container *c, const char *exec_id, const struct us_stdio *stdio,
                     struct sandbox_proc **ret, struct us_error **err);
/* Starts its long polls: output streams, stdin, WaitProcess. */
void sandbox_proc_poll(struct sandbox_proc *p);
/* Cancels its calls (their callbacks see -ECANCELED) and frees it (not
 * unlinked: the caller does that). */
void sandbox_proc_free(struct sandbox_proc *p);
struct sandbox_proc *sandbox_proc_find(struct sandbox_container *c, const char *exec_id);
