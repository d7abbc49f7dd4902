#!/bin/bash
# Brings up unishim's private containerd (idempotent: if it is already up
# and healthy, only prints where it is). `make env-up` calls this.
#   UNISHIM_ENV_NAME   environment name (default unishim-env): state in
#                      /run/NAME, root in /var/lib/NAME, namespace NAME
#   UNISHIM_BUILD_DIR  build dir with shim/containerd-shim-unishim-v2
#   UNISHIM_ENV_FILE   where to write the variables (default <build dir>/env.sh)
#   UNISHIM_ENV_CRI    1 (default): CRI plugin on, containerd in its own netns
#                      with a CNI bridge and a local registry; 0: ctr only
# Writes <build dir>/env.sh with CONTAINERD_ADDRESS, CONTAINERD_NAMESPACE,
# TEST_IMAGE, CRI_ENDPOINT, CRI_TEST_IMAGE, CRI_PAUSE_IMAGE, UNISHIM_ENV_NETNS
# (and more) and prints the main ones.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

[ "$(id -u)" = 0 ] || { echo "env-up: must run as root" >&2; exit 1; }
env_init "${UNISHIM_ENV_NAME:-unishim-env}"
if env_healthy; then
        echo "env-up: $ENV_NAME already up (containerd pid $(env_containerd_pid))"
else
        env_start
        echo "env-up: $ENV_NAME up (containerd pid $(env_containerd_pid), log $ENV_LOG)"
fi
env_file=${UNISHIM_ENV_FILE:-$UNISHIM_BUILD_DIR/env.sh}
env_write_file "$env_file"
cat <<EOF2
export CONTAINERD_ADDRESS=$ENV_ADDR
export CONTAINERD_NAMESPACE=$ENV_NS
export TEST_IMAGE=$TEST_IMAGE
EOF2
if [ "$ENV_CRI" = 1 ]; then
        cat <<EOF2
export CRI_ENDPOINT=$CRI_ENDPOINT
export CRI_TEST_IMAGE=$CRI_TEST_IMAGE
export CRI_PAUSE_IMAGE=$CRI_PAUSE_IMAGE
export UNISHIM_ENV_NETNS=$ENV_NETNS   # containerd, registry, bridge $ENV_BRIDGE ($ENV_SUBNET), pods
EOF2
fi
cat <<EOF2
# source $env_file, then e.g.:
#   ctr run --rm --runtime $UNISHIM_RUNTIME \$TEST_IMAGE t1 echo hello
#   $UNISHIMCTL run pod.json   # see docs/unishimctl.md; cgroup_parent $ENV_POD_CGROUP
EOF2
