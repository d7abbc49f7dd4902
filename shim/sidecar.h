/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/*
 * Mesh sidecars of a VM-kind pod run on the host, next to the VM, not in it.
 *
 * A service mesh puts its rules in the pod's network namespace on the host
 * (Istio's CNI plugin, or its init container) and expects its proxy there:
 * inbound connections are REDIRECTed to the proxy's port in that namespace,
 * and the VM's outbound traffic enters it through the tap (docs/network.md).
 * A proxy inside the VM would leave every redirected connection without a
 * listener. So the containers the operator names in "mesh_sidecars" (Istio's
 * istio-proxy and istio-init, Linkerd's, by default) run as namespaced
 * containers on the host: in the pod's network namespace (containerd points
 * them at the sandbox task's, which for a VM kind is QEMU's, not the pod's),
 * with their own IPC, UTS (the pod's hostname) and PID namespaces, in their
 * own cgroup under the pod's.
 *
 * On the host a sidecar has the container kind's isolation, and any pod can
 * name a container istio-proxy: so this happens only where the operator's
 * policy allows the container kind (the shim's check); under a VM-only
 * policy every container stays in the VM.
 */

#include <stdbool.h>

#include "base/error.h"
#include "oci/oci-spec.h"
#include "policy/policy.h"

enum shim_sidecar_place {
        SHIM_SIDECAR_NONE,    /* not a mesh sidecar: where its pod's kind puts it */
        SHIM_SIDECAR_HOST,    /* a mesh sidecar: on the host, next to the VM */
        SHIM_SIDECAR_IN_GUEST /* a mesh sidecar the policy keeps in the VM */
};

/* Where a VM-kind pod's container goes: a CRI container (not the sandbox)
 * whose name the operator lists as a mesh sidecar runs on the host if the
 * policy allows the container kind. */
enum shim_sidecar_place shim_sidecar_place(const struct policy_config *cfg,
                                           const struct us_oci_spec *spec);

/* Rewrites the spec's namespaces for the host: the network namespace is
 * netns, the joined IPC, UTS and PID namespaces become new ones, and the
 * hostname is the pod's. */
int shim_sidecar_spec(struct us_oci_spec *spec, const char *netns, const char *hostname,
                      struct us_error **err);
