/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/*
 * What a VM kind's pod has on the host, whatever runs in its VM (the
 * sandbox kind, shim/sandbox/: a microvm with our guest agent):
 *
 * - its state dir, VMPOD_STATE_ROOT/<namespace>/<pod id>, private to the
 *   host, new for each pod (one a killed shim left is `shim delete`'s);
 * - its network: the VM's tap wired into the pod's CNI netns and NATed to
 *   the pod IP (netplumb, docs/network.md), and the netns and hostname the
 *   pod's host-side mesh sidecars join (shim/sidecar.h);
 * - the VM's cgroup: the CRI sandbox's cgroups path, else /unishim/<pod id>;
 * - its size (vmpod_size): vCPUs and memory within the operator's bounds;
 * - the bookkeeping of its end: a pod that cannot go on is torn down once,
 *   from the loop (vmpod_lost), and what a killed shim left is removed by
 *   `shim delete` (vmpod_cleanup_dead).
 *
 * A kind embeds struct vmpod in its own per-pod object. Its pod's start
 * calls vmpod_start before it starts the VM; its teardown calls
 * vmpod_teardown_begin, stops the VM and the guest's side, then
 * vmpod_teardown_host, removes what it made in the state dir's mounts, and
 * vmpod_teardown_state last; vmpod_fini frees the fields.
 */

#include <stdbool.h>
#include <stddef.h>

#include "cgroup/cgroup.h"
#include "base/error.h"
#include "base/loop.h"
#include "netplumb/netplumb.h"
#include "oci/oci-spec.h"
#include "policy/policy.h"

#define VMPOD_STATE_ROOT "/run/unishim"
/* A pod's QEMU runs as uid and gid VMPOD_QEMU_UID_BASE + its shim's pid
 * (vmpod_qemu_uid): one shim per pod and QEMU dies with it (or with the
 * shim's libvirt connection), so no two running VMs share one. Pids are
 * below 2^22: far above login users and the usual subuid ranges. Not in
 * /etc/passwd, owning no file but what the pod's QEMU is given. */
#define VMPOD_QEMU_UID_BASE 0x60000000u
/* Guest kernel and agent on top of the pod's memory limit. */
#define VMPOD_MEMORY_OVERHEAD_MIB 64

struct vmpod {
        struct us_loop *loop;
        char *id;
        char *state_dir;
        bool state_made;                 /* state_dir is ours to remove */
        char *netns;                     /* the pod's CNI netns; NULL: none */
        struct netplumb_pod_net *podnet; /* its interface as CNI left it */
        char *hostname;                  /* the sandbox spec's, for host-side sidecars */
        bool wired;                      /* the VM's tap is wired into netns */
        struct us_cgroup *cgroup;
        struct us_loop_source *dead_timer;
        bool torn_down;
        /* The kind's whole teardown, which vmpod_lost runs from the loop. */
        void (*teardown)(void *userdata);
        void *userdata;
};

/* The pod's network namespace (the path the spec joins), or NULL. */
const char *vmpod_netns_of(const struct us_oci_spec *spec);

/* True for the CRI sandbox task: in a VM kind, the pod's VM itself. */
bool vmpod_is_cri_sandbox(const struct us_oci_spec *spec);

/* 0 when spec (the pod's first task's: in a CRI pod the sandbox's) has
 * network, PID and IPC namespaces of its own; else -ENOTSUP, the message
 * naming the Kubernetes field (hostNetwork, hostPID, hostIPC) that the
 * kind's VM cannot honour. vmpod_start checks it before it makes
 * anything. */
int vmpod_check_namespaces(enum policy_isolation kind, const struct us_oci_spec *spec,
                           struct us_error **err);

/* The VM's size for the pod of spec: its unishim.io/vcpus and
 * unishim.io/memory-mib, else what its limits give (vCPUs: the CPU quota
 * over the period, rounded up; memory: its limit plus
 * VMPOD_MEMORY_OVERHEAD_MIB; the limits: the spec's, else the pod's sums
 * that containerd annotates a CRI sandbox's spec with,
 * CRI_SANDBOX_CPU_QUOTA and friends), within the operator's sandbox.max_ bounds,
 * else the operator's defaults for the kind (sandbox.memory_mib, or
 * vm.memory_mib for a full distribution's guest). Both fields of *ret are
 * set, never 0. Errors are the annotations' (policy_pod_vm_size). */
int vmpod_size(const struct policy_config *cfg, enum policy_isolation kind,
               const struct us_oci_spec *spec, struct policy_vm_size *ret, struct us_error **err);

/* The uid (and gid) the pod's QEMU runs as. */
uid_t vmpod_qemu_uid(void);

/* The MAC address as text, "02:...". */
void vmpod_mac_text(const struct netplumb_vm_net *net, char buf[static 18]);

/* Makes the pod's host side from its first task's spec (in a CRI pod the
 * sandbox's): the state dir (marked with the pod's kind, for
 * vmpod_dead_state_dir), the VM's wiring into the pod's netns and the
 * VM's cgroup. teardown(userdata) is the kind's, for vmpod_lost. On
 * success *ret_net is the VM's network for its guest (malloc()ed, the
 * caller's) and *ret_tap_fd the tap for the VMM (the caller's), NULL and
 * -1 when the pod has no netns. ret_net and ret_tap_fd NULL: the pod's
 * interface is inspected, nothing is wired yet (vmpod_wire, for a VMM
 * that opens its tap itself). On failure what was made is recorded in
 * vp: the kind's teardown removes it. */
int vmpod_start(struct vmpod *vp, enum policy_isolation kind, struct us_loop *loop,
                const char *namespace, const char *id, const struct us_oci_spec *spec,
                void (*teardown)(void *userdata), void *userdata, struct netplumb_vm_net **ret_net,
                int *ret_tap_fd, struct us_error **err);

/* What the guest will be given once wired (vmpod_wire), for a guest
 * configured before the VM starts: -ENOENT when the pod has no netns. */
int vmpod_net_plan(const struct vmpod *vp, struct netplumb_vm_net *ret, struct us_error **err);

/* Wires the VM into the pod's netns through host_tap, a tap in the VMM's
 * network namespace (at vmm_netns) the VMM opened (netplumb_vm_opts.
 * host_tap): it is moved into the pod's netns. *ret_net (malloc()ed, the
 * caller's) as for vmpod_start. */
int vmpod_wire(struct vmpod *vp, const char *vmm_netns, const char *host_tap,
               struct netplumb_vm_net **ret_net, struct us_error **err);

/* The pod cannot go on (why, for the log): vp->teardown runs from the loop
 * (not inside the caller, which may be one of the pod's own callbacks),
 * once. */
void vmpod_lost(struct vmpod *vp, const char *why);

/* A teardown's first step: false when the pod was torn down already. */
bool vmpod_teardown_begin(struct vmpod *vp);
/* After the VM stopped: unwires its tap and removes its cgroup (with
 * whatever still runs in it). Idempotent. */
void vmpod_teardown_host(struct vmpod *vp);
/* Last: removes the state dir, with what the VMM and the kind left in it
 * (mounts detached first: the caller's). Idempotent. */
void vmpod_teardown_state(struct vmpod *vp);
/* After the teardown: frees vp's fields (not vp) and removes the
 * namespace's dir if the pod's was its last. Accepts a vp never started. */
void vmpod_fini(struct vmpod *vp);

/* For shim_backend.host_namespaces: -ENOENT without a network namespace. */
int vmpod_host_namespaces(const struct vmpod *vp, const char **ret_netns, const char **ret_hostname,
                          struct us_error **err);

/* `shim delete` after the pod's shim died: true when task id (of
 * namespace, with spec) belongs to a VM pod of that kind whose state dir is
 * still there (every kind's cleanup is asked; only the pod's own acts); buf is then that dir and
 * *ret_pod_id the pod's id (in id or spec). */
bool vmpod_dead_state_dir(const char *namespace, const char *id, const struct us_oci_spec *spec,
                          enum policy_isolation kind, char *buf, size_t size,
                          const char **ret_pod_id);
/* Removes what a dead shim's pod left on the host besides the kind's own:
 * the tap's wiring, the VM's cgroup and the state dir (its mounts already
 * detached). The first error, after all have run. */
int vmpod_cleanup_dead(const char *state_dir, const char *pod_id, const struct us_oci_spec *spec,
                       struct us_error **err);
