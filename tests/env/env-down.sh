#!/bin/bash
# Stops unishim's private containerd and removes everything it left: tasks,
# shims, container processes, CRI pods, the registry, cgroups, mounts, its
# network namespace (with the CNI bridge), its state and root dirs and
# <build dir>/env.sh; and the libvirtd env-up started, unless another user
# of it (a test) still runs or it was the machine's. Idempotent. `make
# env-down` calls this.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

[ "$(id -u)" = 0 ] || { echo "env-down: must run as root" >&2; exit 1; }
env_init "${UNISHIM_ENV_NAME:-unishim-env}"
env_stop
# After the pods: a vm pod's domain goes with its pod, through libvirtd.
env_libvirt_stop "$ENV_NAME"
rm -f "${UNISHIM_ENV_FILE:-$UNISHIM_BUILD_DIR/env.sh}"
left=$(env_mounts; env_shim_pids; env_cgroup_pids; env_template_pids)
if pid=$(_env_libvirt_holder "$ENV_NAME"); then
        left+=$'\n'"libvirt user process $pid"
fi
[ -e "$ENV_NETNS_PATH" ] && left+=$'\n'"netns $ENV_NETNS_PATH"
if [ -n "$left" ] || [ -e "$ENV_STATE" ] || [ -e "$ENV_ROOT" ]; then
        echo "env-down: $ENV_NAME left something behind:" >&2
        echo "$left" >&2
        ls -d "$ENV_STATE" "$ENV_ROOT" 2>/dev/null >&2 || true
        exit 1
fi
echo "env-down: $ENV_NAME is down"
