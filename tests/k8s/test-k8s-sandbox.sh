#!/bin/bash
# The sandbox kind under a real kubelet (Kubernetes v1.23, K8S_BIN_DIR):
# k8s-up on a private environment; a Deployment on RuntimeClass unishim with
# the pod annotation unishim.io/isolation: sandbox gets its pod (a QEMU
# microvm) Running and Ready through an httpGet and an exec readiness probe
# (the kubelet's HTTP reaches the guest through the pod IP), kubectl exec
# runs in the guest (its kernel, not the host's; output, stderr, exit code),
# kubectl logs works, the node reaches the pod IP, the kubelet's stats
# summary has the containers' memory; the container test's volumes, streams
# and probes (tests/k8s/lib.sh), with kubectl port-forward reaching the app
# in the guest and the liveness restart in the same VM (same QEMU); deleting the Deployment leaves no
# shim, QEMU, virtiofsd, state dir, mount or cgroup of the pod; then the
# container test's lifecycle pods (k8s_lifecycle_test) as VMs: limits size
# the VM (vCPUs, memory), the OOMKilled container in the guest, a
# hostNetwork pod refused with an event naming the field, the Istio-style
# pair with istio-init and istio-proxy on the host beside the VM, graceful
# delete (SIGTERM reaches the app in the guest) and forced delete leaving no
# QEMU, virtiofsd or state dir; k8s-down
# leaves nothing of the cluster or the environment. Skipped without the
# Kubernetes binaries.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

k8s_setup
k8s_deployment_test sandbox
k8s_lifecycle_test sandbox
k8s_down_test
it_finish
