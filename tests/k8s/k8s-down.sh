#!/bin/bash
# Stops the Kubernetes test cluster of the environment and removes what it
# made (tests/k8s/cluster.sh: k8s_stop), then the environment itself when
# k8s-up started it. Fails when anything is left. Idempotent. `make
# k8s-down` calls this.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/../env/lib.sh"
. "$(dirname "${BASH_SOURCE[0]}")/cluster.sh"

[ "$(id -u)" = 0 ] || { echo "k8s-down: must run as root" >&2; exit 1; }
env_init "${UNISHIM_ENV_NAME:-unishim-env}"
k8s_init
env_started=0
[ ! -e "$K8S_RUN/env-started" ] || env_started=1
k8s_stop
rm -f "$K8S_ENV_FILE"
left=$(k8s_leftovers "${K8S_POD_UIDS[@]}")
if [ "$env_started" = 1 ]; then
        "$ENV_LIB_DIR/env-down.sh"
fi
if [ -n "$left" ]; then
        echo "k8s-down: the cluster of $ENV_NAME left something behind:" >&2
        echo "$left" >&2
        exit 1
fi
echo "k8s-down: the cluster of $ENV_NAME is down (logs in $K8S_LOG_DIR)"
