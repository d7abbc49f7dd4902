/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/*
 * Internal to the sandbox backend (backend.c: the pod, the VM and
 * the Task operations; io.c: each guest process's long polls --
 * output streams, stdin, exit). Not for other components.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "agent/agent-contract.h"
#include "agent/agent.pb-c.h"
#include "backend.h"
#include "cgroup.h"
#include "loop.h"
#include "sandbox/share.h"
#include "ttrpc.h"
#include "vmpod.h"

#define GUEST_SHARE_TAG "unishim"
#define GUEST_SHARE_DIR "/run/unishim/shared"
#define AGENT_BOOT_MS   60000 /* TCG on a loaded 2-core host is slow */
/* A pod's QEMU runs as uid and gid QEMU_UID_BASE + its shim's pid (pids are
 * below 2^22): far above login users and the usual subuid ranges. */
#define QEMU_UID_BASE 0x60000000u
#define READ_CHUNK    65536

struct sandbox_pod;
struct sandbox_task;
struct vmm_vm;

/* One output stream of a guest process, pumped into containerd's FIFO. */
struct stream {
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
        struct sandbox_task *task;
        char *exec_id; /* NULL: the container's init */
        struct stream out, err;
        int in_fd; /* the shim's stdin pipe (a dup), -1 */
        struct us_loop_source *in_watch;
        uint8_t *in_buf; /* read from the pipe, not yet taken by the guest */
        size_t in_len, in_off;
        uint64_t wait_call, stdin_call;
        bool exited;
        bool closing;
};

struct sandbox_task {
        struct sandbox_task *next;
        struct sandbox_pod *pod;
        void *cookie;
        char *id;
        bool is_vm; /* the CRI sandbox: the VM itself */
        bool in_guest;
        bool shared; /* its rootfs and binds are in the pod's share */
        struct sandbox_proc *procs;
        struct us_oci_spec *spec;
};

struct sandbox_pod {
        struct vmpod vmpod; /* state dir, network, cgroup, the end's bookkeeping */
        void (*process_exited)(void *cookie, const char *exec_id, uint32_t status);
        void (*oom)(void *cookie);
        struct sandbox_share *share;
        struct vmm_vm *vm;
        /* The "unishim.agent" port, kept open (the guest serves it) but no
         * longer called: every call goes on events, asynchronously. */
        struct us_ttrpc_client *agent;
        struct us_ttrpc_aclient *events;
        uint64_t oom_call;
        struct sandbox_task *tasks;
        struct sandbox_acall *acalls; /* in flight on events */
        unsigned agent_timeout_ms;    /* the operator's sandbox.agent_timeout_ms */
        bool booting;                 /* until the agent has the pod's storage and network */
        bool dead;                    /* QEMU gone */
        bool agent_dead;              /* a call's deadline passed: the pod goes */
};

/* ---- calls the shim does not wait for (agent.c) ---- */

struct sandbox_acall;
/* The answer to an asynchronous call: r 0 with resp (unpacked with the
 * call's descriptor; NULL without one) or a negative errno with *err
 * (-ECANCELED: the pod's VM or the task went first; c->task is then NULL).
 * resp and *err are freed after it returns. */
typedef void (*sandbox_acall_fn)(struct sandbox_acall *c, int r, ProtobufCMessage *resp,
                                 struct us_error **err);

struct sandbox_acall {
        struct sandbox_acall *next;
        struct sandbox_pod *pod;
        struct sandbox_task *task; /* cancelled with it; NULL: the pod's */
        uint64_t id;
        const char *method;
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
 * -ECANCELED if the task or the pod goes first). *ret (optional) is the
 * call, for its context fields, valid until fn returns. Fails at once
 * (negative errno, fn never runs) when the agent is gone. */
int sandbox_agent_acall(struct sandbox_pod *pod, struct sandbox_task *task, const char *method,
                        const ProtobufCMessage *req, const ProtobufCMessageDescriptor *resp_desc,
                        sandbox_acall_fn fn, struct shim_op *op, struct sandbox_acall **ret,
                        struct us_error **err);
/* Cancels the task's calls: their fn runs now, with -ECANCELED. */
void sandbox_agent_cancel_task(struct sandbox_pod *pod, struct sandbox_task *task);
/* Finishes c->op with r (taking *err), or logs a failure nobody waits for. */
void sandbox_acall_finish(struct sandbox_acall *c, int r, struct us_error **err);
/* A sandbox_acall_fn for replies that carry nothing: sandbox_acall_finish. */
void sandbox_acall_plain(struct sandbox_acall *c, int r, ProtobufCMessage *resp,
                         struct us_error **err);
/* A call's deadline passed: the agent is dead. Reports the pod's tasks
 * exited and tears the VM down, from the loop (not inside the caller). */
void sandbox_pod_agent_dead(struct sandbox_pod *pod, const char *method);

/* A guest process of task t: its stdio are dups of the shim's (FIFOs, stdin
 * pipe); linked first into t->procs. */
int sandbox_proc_new(struct sandbox_task *t, const char *exec_id, const struct us_stdio *stdio,
                     struct sandbox_proc **ret, struct us_error **err);
/* Starts its long polls: output streams, stdin, WaitProcess. */
void sandbox_proc_poll(struct sandbox_proc *p);
/* Cancels its calls (their callbacks see -ECANCELED) and frees it (not
 * unlinked: the caller does that). */
void sandbox_proc_free(struct sandbox_proc *p);
struct sandbox_proc *sandbox_proc_find(struct sandbox_task *t, const char *exec_id);
