/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/*
 * Internal to the sandbox backend (backend-sandbox.c: the pod, the VM and
 * the Task operations; sandbox-io.c: each guest process's long polls --
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
#include "ttrpc.h"

#define GUEST_SHARE_TAG     "unishim"
#define GUEST_SHARE_DIR     "/run/unishim/shared"
#define POD_STATE_ROOT      "/run/unishim"
#define AGENT_BOOT_MS       60000 /* TCG on a loaded 2-core host is slow */
#define AGENT_CALL_MS       30000
#define READ_CHUNK          65536
#define MEMORY_OVERHEAD_MIB 64 /* guest kernel + agent on top of the pod's limit */

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
        char *share; /* host dir of this container under the pod's share */
        size_t n_binds;
        struct sandbox_proc *procs;
        struct us_oci_spec *spec;
};

struct sandbox_pod {
        struct us_loop *loop;
        void (*process_exited)(void *cookie, const char *exec_id, uint32_t status);
        void (*oom)(void *cookie);
        char *id;
        char *state_dir;
        char *share_dir;
        char *netns;
        char *hostname; /* the sandbox spec's, for host-side sidecars */
        bool wired;
        struct us_cgroup *cgroup;
        struct vmm_vm *vm;
        struct us_ttrpc_client *agent;
        struct us_ttrpc_aclient *events;
        uint64_t oom_call;
        struct sandbox_task *tasks;
        bool dead; /* QEMU gone */
        bool torn_down;
};

/* A short synchronous call to the guest agent ("unishim.agent" port). With
 * resp_desc, *ret is the unpacked reply (caller frees); a reply that does not
 * unpack is -EBADMSG. */
int sandbox_agent_call(struct sandbox_pod *pod, const char *method, const ProtobufCMessage *req,
                       const ProtobufCMessageDescriptor *resp_desc, ProtobufCMessage **ret,
                       int timeout_ms, struct us_error **err);

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
