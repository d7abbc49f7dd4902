/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/*
 * What the shim (shim/sandbox/backend.c) and the guest agent (guest-agent/)
 * both rely on besides the messages of agent.proto: one definition for both
 * sides.
 */

#define AGENT_SERVICE "unishim.agent.v1.Agent"

/* The VM's two virtio-serial ports, which the agent finds by name: calls
 * and their answers on the first, nothing on the second but kept open; a
 * guest without the second still serves (an older agent). */
#define AGENT_PORT_CALLS  "unishim.agent"
#define AGENT_PORT_EVENTS "unishim.events"

/* The virtio-fs tag of the pod's share (the containers' rootfs and
 * volumes), which the agent mounts. */
#define GUEST_SHARE_TAG "unishim"

/* The guest cgroup under which the shim puts each container's
 * (GUEST_CGROUP_PARENT "/<container id>"); the agent prepares it ahead of
 * the first container. */
#define GUEST_CGROUP_PARENT "/unishim"

/* A container spec's PID namespace path that means "the pod's shared one"
 * (shareProcessNamespace): the shim puts it where the CRI joins the pause
 * container's, the agent joins the namespace it keeps for the pod. No other
 * namespace path is accepted. */
#define GUEST_POD_PIDNS "/run/unishim/pod-pidns"

/* Where the agent keeps a pod's local directories (CreateContainerRequest
 * local_dirs): an emptyDir volume of a pod on a 9p share lives here, in
 * the guest's memory, as GUEST_POD_LOCAL_DIR "/<volume name>". */
#define GUEST_POD_LOCAL_DIR "/run/unishim/pod-local"
/* At most this many per CreateContainer, names of at most this many bytes
 * (a Kubernetes volume name is a DNS label). */
#define GUEST_MAX_LOCAL_DIRS     64
#define GUEST_MAX_LOCAL_DIR_NAME 63
