/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/*
 * The shim's channel to a sandbox pod's guest agent, and the one owner of
 * it: two virtio-serial ports to one agent service (guest-agent/).
 * "unishim.agent" stays connected but carries no call; every call goes on
 * "unishim.events" with the asynchronous client, answered from the loop, so
 * that the shim never waits for a guest.
 *
 * Calls (sandbox_agent_acall) have the operator's deadline
 * (sandbox.agent_timeout_ms; more while the pod boots). A guest that takes
 * a call and never answers costs its own pod that deadline, never the
 * shim's loop: when it passes, or when the guest closes or breaks the
 * channel, the agent is dead and lost() tells the pod. Long polls
 * (sandbox_agent_poll: a process's exit and output, OOM kills) wait as long
 * as the guest wants.
 *
 * Everything the guest sends is hostile: a reply is unpacked with its
 * descriptor (a reply that does not unpack is that call's error).
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "agent/agent-contract.h"
#include "agent/agent.pb-c.h"
#include "shim/backend.h"
#include "base/loop.h"
#include "ttrpc/ttrpc.h"

struct sandbox_acall;
struct sandbox_proc;
struct vmm_vm;

struct sandbox_agent {
        const char *pod_id;  /* for messages (the pod's, outlives the agent) */
        unsigned timeout_ms; /* the operator's sandbox.agent_timeout_ms */
        /* The "unishim.agent" port, kept open (the guest serves it) but no
         * longer called: every call goes on events, asynchronously. */
        struct us_ttrpc_client *agent;
        struct us_ttrpc_aclient *events;
        struct sandbox_acall *acalls; /* in flight on events */
        bool booting;                 /* until the agent has the pod's storage and network */
        bool dead;    /* a call's deadline passed or the channel broke: the pod goes */
        bool stopped; /* the VM is gone (the pod says so): nothing would answer */
        /* The agent died (why, for the log). Called from the loop, inside
         * the agent's own callbacks: the pod must not go at once. */
        void (*lost)(void *userdata, const char *why);
        void *userdata;
};

/* Connects both ports of vm (booting): a's pod_id, timeout_ms, lost and
 * userdata are the caller's to set first. */
int sandbox_agent_open(struct sandbox_agent *a, struct us_loop *loop, struct vmm_vm *vm,
                       struct us_error **err);
/* The same over two connected stream fds, the "unishim.agent" and the
 * "unishim.events" port (sandbox_agent_open's, or a test's fake agent):
 * both owned by a from now on, also on failure. */
int sandbox_agent_attach(struct sandbox_agent *a, struct us_loop *loop, int agent_fd, int events_fd,
                         struct us_error **err);
/* Closes both ports: every call in flight ends with -ECANCELED. */
void sandbox_agent_close(struct sandbox_agent *a);

/* The answer to an asynchronous call: r 0 with resp (unpacked with the
 * call's descriptor; NULL without one) or a negative errno with *err
 * (-ECANCELED: the pod's VM or the owner went first; c->owner is then
 * NULL). resp and *err are freed after it returns. */
typedef void (*sandbox_acall_fn)(struct sandbox_acall *c, int r, ProtobufCMessage *resp,
                                 struct us_error **err);

struct sandbox_acall {
        struct sandbox_acall *next;
        struct sandbox_agent *agent;
        /* What the call belongs to (the caller's: a task, the pod), for fn;
         * cancelled with it (sandbox_agent_cancel_owner). */
        void *owner;
        uint64_t id;
        const char *method;
        unsigned timeout_ms; /* the call's deadline, as given to ttrpc */
        const ProtobufCMessageDescriptor *resp_desc;
        sandbox_acall_fn fn;
        struct shim_op *op; /* the Task API op it finishes; NULL: nobody waits */
        void *ctx;          /* fn's */
        /* fn's context and the op's result slots (in the op's allocation) */
        struct sandbox_proc *proc;
        pid_t *ret_pid;
        int *ret_pty;
        uint8_t **ret_data;
        size_t *ret_len;
        pid_t **ret_pids;
};

/* Sends method to the guest agent with the pod's deadline and returns
 * -EINPROGRESS: fn runs later, from the loop, exactly once (with
 * -ECANCELED if the owner or the pod goes first). *ret (optional) is the
 * call, for its context fields, valid until fn returns. Fails at once
 * (negative errno, fn never runs) when the agent is gone. */
int sandbox_agent_acall(struct sandbox_agent *a, void *owner, const char *method,
                        const ProtobufCMessage *req, const ProtobufCMessageDescriptor *resp_desc,
                        sandbox_acall_fn fn, struct shim_op *op, struct sandbox_acall **ret,
                        struct us_error **err);
/* The same, its deadline the pod's at most cap_ms (0: no cap) and never
 * stretched for a booting guest: a call whose own deadline is shorter. */
int sandbox_agent_acall_within(struct sandbox_agent *a, void *owner, const char *method,
                               const ProtobufCMessage *req,
                               const ProtobufCMessageDescriptor *resp_desc, sandbox_acall_fn fn,
                               struct shim_op *op, struct sandbox_acall **ret, unsigned cap_ms,
                               struct us_error **err);
/* Cancels owner's calls: their fn runs now, with -ECANCELED. */
void sandbox_agent_cancel_owner(struct sandbox_agent *a, void *owner);
/* Finishes c->op with r (taking *err), or logs a failure nobody waits for. */
void sandbox_acall_finish(struct sandbox_acall *c, int r, struct us_error **err);
/* A sandbox_acall_fn for replies that carry nothing: sandbox_acall_finish. */
void sandbox_acall_plain(struct sandbox_acall *c, int r, ProtobufCMessage *resp,
                         struct us_error **err);

/* A long poll, or a call whose lateness is the caller's business
 * (timeout_ms; 0: none): fn gets the raw reply, the agent stays alive when
 * it is late. *ret_id is the call until fn runs (for sandbox_agent_cancel).
 * Negative errno when the channel is closed. */
int sandbox_agent_poll(struct sandbox_agent *a, const char *method, const ProtobufCMessage *req,
                       unsigned timeout_ms, us_ttrpc_reply_fn fn, void *userdata, uint64_t *ret_id);
/* Cancels a call of sandbox_agent_poll (its fn runs with -ECANCELED). */
void sandbox_agent_cancel(struct sandbox_agent *a, uint64_t id);
