#!/bin/bash
# Brings up unishim's private containerd (idempotent: if it is already up
# and healthy, only prints where it is). `make env-up` calls this.
#   UNISHIM_ENV_NAME   environment name (default unishim-env): state in
#                      /run/NAME, root in /var/lib/NAME, namespace NAME
#   UNISHIM_BUILD_DIR  build dir with shim/containerd-shim-unishim-v2
#   UNISHIM_ENV_FILE   where to write the variables (default <build dir>/env.sh)
# Writes <build dir>/env.sh with CONTAINERD_ADDRESS, CONTAINERD_NAMESPACE,
# TEST_IMAGE and prints them.
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
# source $env_file, then e.g.:
#   ctr run --rm --runtime $UNISHIM_RUNTIME \$TEST_IMAGE t1 echo hello
EOF2
