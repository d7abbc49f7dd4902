#!/bin/bash
# Brings up unishim's private containerd (idempotent: if it is already up
# and healthy, only prints where it is). `make env-up` calls this.
#   UNISHIM_ENV_NAME   environment name (default unishim-env): state in
#                      /run/NAME, root in /var/lib/NAME, namespace NAME
#   UNISHIM_BUILD_DIR  build dir with shim/containerd-shim-unishim-v2
#   UNISHIM_ENV_FILE   where to write the variables (default <build dir>/env.sh)
#   UNISHIM_ENV_CRI    1 (default): CRI plugin on, containerd in its own netns
#                      with a CNI bridge and a local registry; 0: ctr only
#   UNISHIM_ENV_VM_IMAGE 1 (default, with the CRI): the vm kind's test disk
#                      (tests/env/build-vm-image.sh, cached in <build dir>/
#                      vm-image; the first build takes minutes) in the
#                      registry as CRI_VM_IMAGE; 0: not
#   UNISHIM_ENV_LIBVIRT 1 (default): libvirtd answers on qemu:///system (the
#                      machine's, else one started here and stopped by
#                      env-down); 0: not
# Writes <build dir>/env.sh with CONTAINERD_ADDRESS, CONTAINERD_NAMESPACE,
# TEST_IMAGE, CRI_ENDPOINT, CRI_TEST_IMAGE, CRI_PAUSE_IMAGE, CRI_VM_IMAGE,
# UNISHIM_ENV_NETNS (and more) and prints the main ones.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

[ "$(id -u)" = 0 ] || { echo "env-up: must run as root" >&2; exit 1; }
# The environment a developer brings up has everything the three kinds need.
export UNISHIM_ENV_VM_IMAGE=${UNISHIM_ENV_VM_IMAGE:-1} UNISHIM_ENV_LIBVIRT=${UNISHIM_ENV_LIBVIRT:-1}
env_init "${UNISHIM_ENV_NAME:-unishim-env}"
if [ "$ENV_LIBVIRT" = 1 ] && ! command -v libvirtd >/dev/null; then
        echo "env-up: libvirtd missing (make deps-runtime): no libvirt, the vm kind will not work" >&2
        ENV_LIBVIRT=0
fi
if env_healthy; then
        echo "env-up: $ENV_NAME already up (containerd pid $(env_containerd_pid))"
        # Up from before the vm image was asked for, or with an older one.
        if [ "$ENV_VM_IMAGE" = 1 ]; then
                env_vm_image_push
        fi
else
        env_start
        echo "env-up: $ENV_NAME up (containerd pid $(env_containerd_pid), log $ENV_LOG)"
fi
if [ "$ENV_LIBVIRT" = 1 ]; then
        env_libvirt_start "$ENV_NAME"
        echo "env-up: libvirt at $ENV_LIBVIRT_URI: $(env_libvirt_describe)"
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
if [ "$ENV_VM_IMAGE" = 1 ]; then
        echo "export CRI_VM_IMAGE=$CRI_VM_IMAGE   # the vm kind's disk (containerDisk), $ENV_VM_IMAGE_DIR"
fi
if [ "$ENV_LIBVIRT" = 1 ]; then
        echo "export LIBVIRT_DEFAULT_URI=$ENV_LIBVIRT_URI"
fi
cat <<EOF2
# source $env_file, then e.g.:
#   ctr run --rm --runtime $UNISHIM_RUNTIME \$TEST_IMAGE t1 echo hello
#   $UNISHIMCTL run pod.json   # see docs/unishimctl.md; cgroup_parent $ENV_POD_CGROUP
EOF2
