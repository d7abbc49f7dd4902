#!/bin/bash
# Brings up a single-node Kubernetes cluster (tests/k8s/cluster.sh) on the
# test environment's containerd, bringing the environment up first when it is
# not (tests/env/env-up.sh, with its variables). Idempotent: a healthy
# cluster is only reported. `make k8s-up` calls this.
#   UNISHIM_ENV_NAME  the environment (default unishim-env)
#   K8S_BIN_DIR       the Kubernetes binaries (default ../shared/k8s beside
#                     the repository; plain or .xz)
#   K8S_DIR           certificates, kubeconfigs, logs (default <build>/k8s/NAME)
#   K8S_ENV_FILE      where to write the variables (default <build>/k8s-env.sh)
# Writes K8S_ENV_FILE with KUBECONFIG, K8S_KUBECTL (kubectl inside the netns;
# also first on PATH) and the environment's variables.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/../env/lib.sh"
. "$(dirname "${BASH_SOURCE[0]}")/cluster.sh"

[ "$(id -u)" = 0 ] || { echo "k8s-up: must run as root" >&2; exit 1; }
env_init "${UNISHIM_ENV_NAME:-unishim-env}"
k8s_init
for b in etcd openssl curl nsenter xz; do
        command -v "$b" >/dev/null || { echo "k8s-up: $b missing (make deps-runtime)" >&2; exit 1; }
done
start=$(date +%s%N)
k8s_bins || { echo "k8s-up: $(k8s_bins_howto)" >&2; exit 1; }

if k8s_healthy; then
        echo "k8s-up: the cluster of $ENV_NAME is already up (node $K8S_NODE_NAME Ready)"
        k8s_write_file "$K8S_ENV_FILE"
        exit 0
fi

env_started=0
K8S_PHASES=
_K8S_MARK=$SECONDS
if ! env_healthy; then
        "$ENV_LIB_DIR/env-up.sh"
        env_started=1
        _k8s_phase env-up
elif ! env_cri_on; then
        echo "k8s-up: the environment $ENV_NAME runs without its CRI plugin" >&2
        exit 1
fi
# On failure: stop what this run started (the logs stay in K8S_DIR/log).
cleanup() {
        local rc=$?
        trap - EXIT
        if [ "$rc" != 0 ]; then
                echo "k8s-up: failed; stopping what it started (logs in $K8S_LOG_DIR)" >&2
                set +e
                k8s_stop
                [ "$env_started" = 0 ] || "$ENV_LIB_DIR/env-down.sh" >&2
        fi
        exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
mkdir -p "$K8S_RUN"
# k8s-down stops the environment only when k8s-up started it.
[ "$env_started" = 0 ] || : >"$K8S_RUN/env-started"
k8s_start
k8s_write_file "$K8S_ENV_FILE"
ms=$((($(date +%s%N) - start) / 1000000))
echo "k8s-up: node $K8S_NODE_NAME Ready ($K8S_NODE_IP in netns $ENV_NETNS) after $((ms / 1000)).$((ms % 1000 / 100)) s;" \
        "RuntimeClasses: $(kc get runtimeclass -o name | sed 's|.*/||' | tr '\n' ' ')"
echo "k8s-up: $K8S_PHASES"
cat <<EOF2
# source $K8S_ENV_FILE, then e.g.:
#   kubectl get nodes        # ($K8S_KUBECTL: kubectl inside the netns)
# logs: $K8S_LOG_DIR/
EOF2
