#!/bin/bash
# The container kind under a real kubelet (Kubernetes v1.23, K8S_BIN_DIR):
# k8s-up on a private environment; a Deployment on RuntimeClass unishim
# without an annotation gets its pod Running and Ready through an httpGet and
# an exec readiness probe, runs as the container kind (host kernel),
# kubectl exec (output, stderr, exit code) and logs work, the node reaches
# the pod IP, the kubelet's stats summary has the containers' memory;
# an init container, an emptyDir shared by app containers, configMap and
# secret volumes and a projected service account token; kubectl exec -it (a
# terminal of kubectl's size), exec -i with 100000 bytes of stdin, logs -f,
# cp both ways, port-forward; liveness probes (tcpSocket, exec, httpGet) and
# a tcpSocket readiness probe, and a failing exec liveness probe restarting
# its container in the same pod (same IP);
# deleting the Deployment leaves nothing of the pod on the host; then
# (k8s_lifecycle_test) a container over its memory limit is OOMKilled, the
# RuntimeClass's overhead is in pod.spec.overhead, a hostNetwork pod runs in
# the node's netns, an Istio-style istio-init + istio-proxy pair sends the
# app's inbound and outbound TCP through the proxy, a graceful delete's
# SIGTERM reaches the app which ends by itself, a forced delete, and
# nothing of these pods left on the host; k8s-down
# leaves nothing of the cluster or the environment. Skipped without the
# Kubernetes binaries.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

k8s_setup
k8s_deployment_test container
k8s_lifecycle_test container
k8s_down_test
it_finish
