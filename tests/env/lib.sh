# shellcheck shell=bash
# Shared helpers for unishim's private containerd environment. Sourced by
# tests/env/env-up.sh, env-down.sh, the integration tests, bench/run.sh and
# tools/demo.sh. Bash only; callers run with `set -euo pipefail`.
#
# An environment is identified by a NAME; everything it owns derives from it:
#   state  /run/NAME         (containerd state, socket, log, pid file, PATH dir)
#   root   /var/lib/NAME     (containerd root: content, snapshots, metadata)
#   ns     NAME              (containerd namespace; cgroups /sys/fs/cgroup/*/NAME/<id>)
# so that several environments (and a system containerd) never meet.
# With the CRI plugin on (UNISHIM_ENV_CRI=1, the default) it also owns
#   netns    NAME            (containerd, the registry, the CNI bridge and every
#                             pod live in it: pod traffic never reaches the host)
#   bridge   us-<8 hex>      (inside that netns), subnet 10.<a>.<b>.0/24
#   registry 127.0.0.1:5000  (docker-registry inside the netns; storage in root)
#   pods     CRI namespace k8s.io; cgroups /sys/fs/cgroup/*/NAME/pods/<id> for
#            pods whose JSON sets cgroup_parent /NAME/pods (the tests do)
# containerd 1.6 keeps shim sockets in /run/containerd/s/ whatever its state
# dir; they are hashed from the address, so they do not collide either.

ENV_LIB_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
UNISHIM_SOURCE_DIR=${UNISHIM_SOURCE_DIR:-$(cd "$ENV_LIB_DIR/../.." && pwd)}
# The build dir: UNISHIM_BUILD_DIR (ctest sets it), else the GNUmakefile's
# BUILD (relative to the source dir), else build/.
if [ -z "${UNISHIM_BUILD_DIR:-}" ]; then
        UNISHIM_BUILD_DIR=${BUILD:-build}
        [[ $UNISHIM_BUILD_DIR = /* ]] || UNISHIM_BUILD_DIR=$UNISHIM_SOURCE_DIR/$UNISHIM_BUILD_DIR
fi
TEST_IMAGE=${TEST_IMAGE:-docker.io/unishim/test:latest}
# The same images as the CRI pulls them, from the environment's registry.
ENV_REGISTRY=127.0.0.1:5000
CRI_TEST_IMAGE=$ENV_REGISTRY/unishim/test:latest
CRI_PAUSE_IMAGE=$ENV_REGISTRY/unishim/pause:latest
# The vm kind's test disk (tests/env/build-vm-image.sh, a KubeVirt-style
# containerDisk): built as VM_IMAGE, pushed to the registry as CRI_VM_IMAGE.
# Cached in the build dir, shared by every environment of that build.
VM_IMAGE=docker.io/unishim/vm-debian:12
CRI_VM_IMAGE=$ENV_REGISTRY/unishim/vm-debian:12
ENV_VM_IMAGE_DIR=$UNISHIM_BUILD_DIR/vm-image
UNISHIM_RUNTIME=io.containerd.unishim.v2
RUNC_RUNTIME=io.containerd.runc.v2
# Every ctr call is bounded by this (seconds).
CTR_TIMEOUT=${CTR_TIMEOUT:-60}

env_log() { echo "[$(date +%H:%M:%S)] $*" >&2; }

# env_init NAME: sets the ENV_* variables for environment NAME.
env_init() {
        ENV_NAME=$1
        ENV_STATE=/run/$ENV_NAME
        ENV_ROOT=/var/lib/$ENV_NAME
        ENV_NS=$ENV_NAME
        ENV_ADDR=$ENV_STATE/containerd.sock
        ENV_CONFIG=$ENV_STATE/config.toml
        ENV_LOG=$ENV_STATE/containerd.log
        ENV_PIDFILE=$ENV_STATE/containerd.pid
        ENV_BINDIR=$ENV_STATE/bin
        ENV_IMAGE_DIR=$UNISHIM_BUILD_DIR/test-image
        ENV_ROOTFS=$ENV_IMAGE_DIR/rootfs
        ENV_PAUSE_DIR=$UNISHIM_BUILD_DIR/pause-image
        ENV_CRI=${UNISHIM_ENV_CRI:-1}
        # UNISHIM_ENV_VM_IMAGE=1: CRI_VM_IMAGE in the registry too (it needs
        # the CRI's registry). env-up sets it; tests ask with IT_VM_IMAGE=1.
        ENV_VM_IMAGE=${UNISHIM_ENV_VM_IMAGE:-0}
        [ "$ENV_CRI" = 1 ] || ENV_VM_IMAGE=0
        # UNISHIM_ENV_LIBVIRT=1: the env uses the node's libvirtd
        # (env_libvirt_start); env-up sets it, tests ask with IT_LIBVIRT=1.
        ENV_LIBVIRT=${UNISHIM_ENV_LIBVIRT:-0}
        ENV_NETNS=$ENV_NAME
        ENV_NETNS_PATH=/var/run/netns/$ENV_NETNS
        ENV_BRIDGE=us-$(printf '%s' "$ENV_NAME" | sha256sum | cut -c1-8)
        local h=$((16#$(printf '%s' "$ENV_NAME" | sha256sum | cut -c9-12)))
        ENV_SUBNET=10.$((200 + h % 50)).$((h / 50 % 256)).0/24
        # UNISHIM_ENV_IPV6=1: dual-stack pods (a ULA /64 next to the IPv4 /24).
        ENV_IPV6=${UNISHIM_ENV_IPV6:-0}
        local h6
        h6=$(printf '%s' "$ENV_NAME" | sha256sum | cut -c1-8)
        # (%x: no leading zeros, as the kernel prints addresses)
        ENV_SUBNET6=$(printf 'fd75:%x:%x::/64' "$((16#${h6:0:4}))" "$((16#${h6:4:4}))")
        ENV_CNI_NET=$ENV_NAME
        ENV_REGISTRY_DIR=$ENV_ROOT/registry
        ENV_REGISTRY_PIDFILE=$ENV_STATE/registry.pid
        ENV_REGISTRY_LOG=$ENV_STATE/registry.log
        ENV_SANDBOX_CONFIG=$ENV_STATE/unishim-sandbox.json
        # The sandbox pods' path (the unishim-sandbox handler's and the
        # unishim handler's, whose config is ENV_UNISHIM_CONFIG; pods of
        # `ctr run` have no network, and boot cold with the built-in
        # defaults): UNISHIM_TEST_SANDBOX_PATH unset or "template", the
        # defaults (VM templates, 9p) on an image with 9p, with a template
        # cache of the env's own, built when the env starts and removed
        # with it; "cold": templates off, virtio-fs, the stock cloud image
        # (what the defaults were before templates).
        ENV_SANDBOX_PATH=${UNISHIM_TEST_SANDBOX_PATH:-template}
        ENV_UNISHIM_CONFIG=$ENV_STATE/unishim.json
        ENV_TEMPLATE_DIR=$ENV_STATE/templates
        ENV_VM_CONFIG=$ENV_STATE/unishim-vm.json
        ENV_POD_CGROUP=/$ENV_NS/pods
        CRI_ENDPOINT=unix://$ENV_ADDR
        UNISHIMCTL=$UNISHIM_BUILD_DIR/cri/unishimctl
        export CONTAINERD_ADDRESS=$ENV_ADDR CONTAINERD_NAMESPACE=$ENV_NS TEST_IMAGE CRI_ENDPOINT
}

# Runs a command inside the environment's network namespace (nsenter, not
# `ip netns exec`: that remounts /sys and hides the cgroup mounts).
env_nsenter() {
        nsenter --net="$ENV_NETNS_PATH" "$@"
}

# unishimctl against this environment; each call bounded by CTR_TIMEOUT.
ectl() {
        timeout -k 5 $((CTR_TIMEOUT + 10)) "$UNISHIMCTL" -e "$CRI_ENDPOINT" -T "$CTR_TIMEOUT" "$@"
}

# True when the running containerd was configured with the CRI plugin on.
env_cri_on() {
        grep -q '^disabled_plugins = \[\]' "$ENV_CONFIG" 2>/dev/null
}

# ctr against this environment, bounded by CTR_TIMEOUT.
ectr() {
        timeout -k 5 "$CTR_TIMEOUT" ctr -a "$ENV_ADDR" -n "$ENV_NS" "$@"
}

env_shim_binary() { echo "$UNISHIM_BUILD_DIR/shim/containerd-shim-unishim-v2"; }

env_containerd_pid() {
        local pid
        pid=$(cat "$ENV_PIDFILE" 2>/dev/null) || return 1
        [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 1
        # The pid file may be stale and the pid reused.
        tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$ENV_CONFIG" || return 1
        echo "$pid"
}

env_registry_pid() {
        local pid
        pid=$(cat "$ENV_REGISTRY_PIDFILE" 2>/dev/null) || return 1
        [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 1
        tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$ENV_REGISTRY_DIR/config.yml" || return 1
        echo "$pid"
}

# True when the registry answers inside the netns.
env_registry_up() {
        env_nsenter timeout 5 busybox wget -q -O /dev/null "http://$ENV_REGISTRY/v2/" 2>/dev/null
}

# True when containerd runs, answers and has the test image, with the CRI
# plugin as asked (and then: the netns, the registry and the CRI answer).
env_healthy() {
        env_containerd_pid >/dev/null || return 1
        CTR_TIMEOUT=10 ectr version >/dev/null 2>&1 || return 1
        # (captured, not piped: with pipefail, grep -q's early exit can fail
        # the pipeline with ctr's SIGPIPE)
        local images
        images=$(CTR_TIMEOUT=10 ectr images ls -q 2>/dev/null) || return 1
        grep -qxF "$TEST_IMAGE" <<<"$images" || return 1
        local on=0
        env_cri_on && on=1
        [ "$on" = "$ENV_CRI" ] || return 1
        [ "$ENV_CRI" = 1 ] || return 0
        [ -e "$ENV_NETNS_PATH" ] && env_registry_pid >/dev/null && env_registry_up || return 1
        [ ! -x "$UNISHIMCTL" ] || CTR_TIMEOUT=10 ectl version >/dev/null 2>&1
}

env_render_config() {
        local disabled='"io.containerd.grpc.v1.cri"'
        [ "$ENV_CRI" = 1 ] && disabled=''
        sed -e "s|@ROOT@|$ENV_ROOT|g" -e "s|@STATE@|$ENV_STATE|g" \
                -e "s|@ADDRESS@|$ENV_ADDR|g" -e "s|@DISABLED_PLUGINS@|$disabled|g" \
                -e "s|@LOG_LEVEL@|${UNISHIM_ENV_LOG_LEVEL:-info}|g" \
                -e "s|@CNI_BIN_DIR@|${CNI_BIN_DIR:-/usr/lib/cni}|g" \
                -e "s|@SANDBOX_IMAGE@|$CRI_PAUSE_IMAGE|g" -e "s|@REGISTRY@|$ENV_REGISTRY|g" \
                "$ENV_LIB_DIR/containerd-config.toml.in" >"$ENV_CONFIG.tmp"
        mv "$ENV_CONFIG.tmp" "$ENV_CONFIG"
}

# The CNI network of the environment: a bridge unique to it, its own subnet,
# host-local IPAM (state in the env's state dir), portmap, loopback; and the
# unishim-sandbox handler's operator config (ConfigPath).
env_write_cni() {
        mkdir -p "$ENV_STATE/cni/net.d" "$ENV_STATE/cni/ipam"
        local gw=${ENV_SUBNET%.0/24}.1
        jq -n --arg name "$ENV_CNI_NET" --arg br "$ENV_BRIDGE" --arg subnet "$ENV_SUBNET" \
                --arg gw "$gw" --arg data "$ENV_STATE/cni/ipam" \
                --argjson v6 "$([ "$ENV_IPV6" = 1 ] && echo true || echo false)" --arg subnet6 "$ENV_SUBNET6" '{
                cniVersion: "0.4.0", name: $name,
                plugins: [
                        {type: "bridge", bridge: $br, isGateway: true, ipMasq: false,
                         hairpinMode: true,
                         ipam: {type: "host-local", dataDir: $data,
                                ranges: ([[{subnet: $subnet, gateway: $gw}]]
                                         + if $v6 then [[{subnet: $subnet6}]] else [] end),
                                routes: ([{dst: "0.0.0.0/0"}] + if $v6 then [{dst: "::/0"}] else [] end)}},
                        {type: "portmap", capabilities: {portMappings: true}},
                        {type: "loopback"}
                ]}' >"$ENV_STATE/cni/net.d/10-$ENV_CNI_NET.conflist"
        jq -n '{isolation: {default: "sandbox", allowed: ["container", "sandbox", "vm"]},
                annotations: {allowed: ["unishim.io/isolation"]}}' >"$ENV_SANDBOX_CONFIG"
        # The vm handler: vm by default, the container kind for the mesh
        # sidecars next to the VM, and cloud-init user-data allowed (the
        # built-in policy does not allow it: it runs as root in the guest).
        jq -n '{isolation: {default: "vm", allowed: ["container", "vm"]},
                annotations: {allowed: ["unishim.io/isolation", "unishim.io/vcpus",
                                        "unishim.io/memory-mib", "unishim.io/disk-path",
                                        "unishim.io/cloud-init-user-data"]},
                vm: {user_data_max_bytes: 4096}}' >"$ENV_VM_CONFIG"
        env_sandbox_configs
}

# env_sandbox_configs: the sandbox path's settings (ENV_SANDBOX_PATH) in
# the unishim-sandbox handler's config and in ENV_UNISHIM_CONFIG, the
# unishim handler's (the built-in policy otherwise): env_sandbox_settings.
env_sandbox_configs() {
        local f
        if [ "$ENV_SANDBOX_PATH" = template ]; then
                if ! env_9p_image; then
                        env_log "$ENV_9P_ERR"
                        return 1
                fi
                [ "$ENV_9P_BUILT" = 0 ] || env_log "built the guest image with 9p ($ENV_9P_IMAGE)"
        fi
        for f in "$ENV_SANDBOX_CONFIG" "$ENV_UNISHIM_CONFIG"; do
                [ -f "$f" ] || echo '{}' >"$f"
                env_sandbox_settings "$ENV_SANDBOX_PATH" "$f" >"$f.tmp"
                mv "$f.tmp" "$f"
        done
}

# env_sandbox_settings PATH FILE: the config FILE with the sandbox
# settings of PATH, on stdout. template: the defaults (shared_fs and
# templates unset) on the image with 9p (ENV_9P_IMAGE: env_9p_image
# first), the env's own template cache; cold: templates off, virtio-fs,
# the stock cloud image.
env_sandbox_settings() {
        local img set
        if [ "$1" = template ]; then
                img=$ENV_9P_IMAGE
                set='.sandbox.template_dir = $t'
        else
                img=$(env_cloud_image)
                set='.sandbox.shared_fs = "virtio-fs" | .sandbox.templates = false'
        fi
        jq --arg k "$img/vmlinux" --arg i "$(env_image_initrd "$img")" --arg t "$ENV_TEMPLATE_DIR" \
                ".sandbox.kernel = \$k | .sandbox.initrd = \$i | $set" "$2"
}

# env_image_initrd DIR: the guest image's initramfs in DIR (uncompressed
# or gzip), "" when there is none.
env_image_initrd() {
        ls "$1"/initramfs.cpio "$1"/initramfs.cpio.gz 2>/dev/null | head -n1 || true
}

# env_cloud_image: the stock cloud kernel's guest image (no 9p): the
# build's cloud/ beside another default, else the build's own;
# UNISHIM_GUEST_DIR instead when set.
env_cloud_image() {
        local img=$UNISHIM_BUILD_DIR/vmm/guest-image
        if [ -n "${UNISHIM_GUEST_DIR:-}" ]; then
                echo "$UNISHIM_GUEST_DIR"
        elif [ -f "$img/cloud/vmlinux" ]; then
                echo "$img/cloud"
        else
                echo "$img"
        fi
}

# env_template_build: builds the template path's VM template before the
# env's first pod, so that every pod that can be is restored (one that
# misses boots cold, and builds it in the background). The holder it leaves
# goes with env_templates_rm. Its timeout only guards against a hang, and
# stays below the ctest timeout of the test that starts the env.
env_template_build() {
        local out t0
        t0=$(date +%s.%N)
        if ! out=$(timeout -k 5 400 "$UNISHIMCTL" template build --config "$ENV_SANDBOX_CONFIG" </dev/null 2>&1); then
                env_log "building the VM template of $ENV_SANDBOX_CONFIG failed:"
                echo "$out" >&2
                return 1
        fi
        env_log "built the VM template in $(echo "$(date +%s.%N) - $t0" | bc | cut -c1-6) s:" \
                "$(head -n1 <<<"$out")"
}

# Pids of processes that name the env's template dir or sandbox configs in
# their command line: the template path's background builds (`unishimctl
# template build --config`), their QEMUs and the templates' holders (forks
# of the builder).
env_template_pids() {
        local d a
        for d in /proc/[0-9]*; do
                mapfile -d '' -t a 2>/dev/null <"$d/cmdline" || continue
                case "${a[*]}" in
                *"$ENV_TEMPLATE_DIR"* | *"$ENV_SANDBOX_CONFIG"* | *"$ENV_UNISHIM_CONFIG"*)
                        echo "${d#/proc/}" ;;
                esac
        done
        return 0
}

# env_templates_rm: removes the env's template cache (the template path):
# `unishimctl template rm --all` stops the holders, then whatever of the
# cache still runs is killed.
env_templates_rm() {
        if [ -d "$ENV_TEMPLATE_DIR" ] && [ -x "$UNISHIMCTL" ]; then
                timeout -k 5 60 "$UNISHIMCTL" template rm --all --config "$ENV_UNISHIM_CONFIG" >/dev/null 2>&1 || true
        fi
        env_kill_listed env_template_pids
}

# env_kill_listed LISTER...: SIGKILLs the pids the listers print, then waits
# (5 s at most) until none of them prints any.
env_kill_listed() {
        local l pid i
        for l; do
                for pid in $("$l"); do
                        kill -KILL "$pid" 2>/dev/null || true
                done
        done
        for ((i = 0; i < 50; i++)); do
                [ -z "$(for l; do "$l"; done)" ] && break
                sleep 0.1
        done
}

# The network namespace containerd, the registry and the pods live in.
env_netns_up() {
        [ -e "$ENV_NETNS_PATH" ] || ip netns add "$ENV_NETNS"
        ip -n "$ENV_NETNS" link set lo up
}

# docker-registry inside the netns on 127.0.0.1:5000, storage in the env root.
env_registry_start() {
        env_registry_pid >/dev/null && return 0
        command -v docker-registry >/dev/null || {
                env_log "docker-registry missing (make deps-runtime)"
                return 1
        }
        mkdir -p "$ENV_REGISTRY_DIR/data"
        printf '%s\n' "version: 0.1" "log:" "  level: warn" "storage:" "  filesystem:" \
                "    rootdirectory: $ENV_REGISTRY_DIR/data" "  delete:" "    enabled: true" \
                "http:" "  addr: $ENV_REGISTRY" >"$ENV_REGISTRY_DIR/config.yml"
        setsid nsenter --net="$ENV_NETNS_PATH" docker-registry serve "$ENV_REGISTRY_DIR/config.yml" \
                </dev/null >>"$ENV_REGISTRY_LOG" 2>&1 &
        local pid=$! i
        echo "$pid" >"$ENV_REGISTRY_PIDFILE"
        for ((i = 0; i < 100; i++)); do
                # (the pid's cmdline names the config only once exec'd)
                kill -0 "$pid" 2>/dev/null || {
                        env_log "docker-registry exited during start-up; its log:"
                        tail -n 20 "$ENV_REGISTRY_LOG" >&2
                        return 1
                }
                env_registry_up && return 0
                sleep 0.1
        done
        env_log "docker-registry did not answer on $ENV_REGISTRY within 10s"
        return 1
}

# Pushes the test and pause images to the registry under their CRI names
# (ctr pushes from the client side, so that ctr runs inside the netns).
env_push_images() {
        "$ENV_LIB_DIR/build-pause-image.sh" "$ENV_PAUSE_DIR" docker.io/unishim/pause:latest
        ectr images import --no-unpack "$ENV_PAUSE_DIR/image.tar" >/dev/null
        ectr images tag --force "$TEST_IMAGE" "$CRI_TEST_IMAGE" >/dev/null
        ectr images tag --force docker.io/unishim/pause:latest "$CRI_PAUSE_IMAGE" >/dev/null
        local img
        for img in "$CRI_TEST_IMAGE" "$CRI_PAUSE_IMAGE"; do
                env_nsenter timeout -k 5 "$CTR_TIMEOUT" ctr -a "$ENV_ADDR" -n "$ENV_NS" \
                        images push --plain-http "$img" >/dev/null 2>"$ENV_STATE/push.err" || {
                        env_log "pushing $img to the registry failed:"
                        cat "$ENV_STATE/push.err" >&2
                        return 1
                }
        done
}

# Builds the vm kind's test disk into ENV_VM_IMAGE_DIR, or does nothing when
# the cached one is current (build-vm-image.sh decides; a cold build takes
# minutes). Concurrent callers with the same build dir wait for the one
# building (build-vm-image.sh's lock) and then find it current. On failure
# prints the end of the build's log (kept in ENV_VM_IMAGE_DIR/build.log).
env_vm_image_build() {
        local dir=$ENV_VM_IMAGE_DIR log rc=0
        mkdir -p "$dir"
        if ! (. "$ENV_LIB_DIR/oci-image.sh" && [ -s "$dir/disk.qcow2" ] &&
                oci_image_current "$dir" "$VM_IMAGE" "$ENV_LIB_DIR/build-vm-image.sh"); then
                env_log "building the vm image $VM_IMAGE in $dir, or waiting for the build" \
                        "under way (a cold build takes minutes; log $dir/build.log)"
        fi
        # A log per call: a caller waiting for the lock must not truncate the
        # log of the build under way.
        log=$(mktemp "$dir/.log.XXXXXX")
        "$ENV_LIB_DIR/build-vm-image.sh" "$dir" "$VM_IMAGE" </dev/null >"$log" 2>&1 || rc=$?
        if [ -s "$log" ]; then
                chmod 0644 "$log"
                mv "$log" "$dir/build.log"
        else
                rm -f "$log"
        fi
        if [ "$rc" != 0 ]; then
                env_log "building the vm image failed (exit $rc); the end of $dir/build.log:"
                tail -n 40 "$dir/build.log" >&2
                return 1
        fi
}

# Builds (env_vm_image_build) and imports the vm image and pushes it to the
# registry as CRI_VM_IMAGE, as env_push_images does for the others. Run again
# on a healthy environment it pushes only a digest it has not pushed yet.
env_vm_image_push() {
        env_vm_image_build || return 1
        # Hundreds of MB: more time than a small image's ctr call.
        local t=$((CTR_TIMEOUT * 5)) images digest
        CTR_TIMEOUT=$t ectr images import --no-unpack "$ENV_VM_IMAGE_DIR/image.tar" >/dev/null
        ectr images tag --force "$VM_IMAGE" "$CRI_VM_IMAGE" >/dev/null
        images=$(ectr images ls) || images=
        digest=$(awk -v n="$CRI_VM_IMAGE" '$1 == n { print $3 }' <<<"$images")
        if [ -z "$digest" ]; then
                env_log "image $CRI_VM_IMAGE missing after import"
                return 1
        fi
        [ "$(cat "$ENV_STATE/vm-image.pushed" 2>/dev/null)" = "$digest" ] && return 0
        env_nsenter timeout -k 5 "$t" ctr -a "$ENV_ADDR" -n "$ENV_NS" \
                images push --plain-http "$CRI_VM_IMAGE" >/dev/null 2>"$ENV_STATE/push.err" || {
                env_log "pushing $CRI_VM_IMAGE to the registry failed:"
                cat "$ENV_STATE/push.err" >&2
                return 1
        }
        echo "$digest" >"$ENV_STATE/vm-image.pushed"
}

# env_image_has_9p DIR: the guest image in DIR has a kernel with 9p (its
# kernel-config).
env_image_has_9p() {
        grep -qE '^CONFIG_9P_FS=[ym]$' "$1/kernel-config" 2>/dev/null &&
                grep -qE '^CONFIG_NET_9P_VIRTIO=[ym]$' "$1/kernel-config" 2>/dev/null
}

# env_9p_image: ENV_9P_IMAGE= a guest image with 9p (sandbox.shared_fs
# "9p", VM templates): UNISHIM_GUEST_DIR if it is one, else the build's
# default image when it has 9p (the generic flavour, the default, or the
# minimal kernel), else its generic/; brought up to date now through the
# guest-image-generic target (built when missing: a Debian kernel .deb
# through apt; ENV_9P_BUILT=1 when anything was rebuilt). Returns 1 with
# ENV_9P_ERR when there is none.
env_9p_image() {
        ENV_9P_BUILT=0
        ENV_9P_ERR=
        if [ -n "${UNISHIM_GUEST_DIR:-}" ] && env_image_has_9p "$UNISHIM_GUEST_DIR"; then
                ENV_9P_IMAGE=$UNISHIM_GUEST_DIR
                return 0
        fi
        ENV_9P_IMAGE=$UNISHIM_BUILD_DIR/vmm/guest-image
        env_image_has_9p "$ENV_9P_IMAGE" || ENV_9P_IMAGE=$ENV_9P_IMAGE/generic
        # Always through the target: generic/ is not part of the default
        # build, and an image older than the agent would test the old agent
        # (the target rebuilds only what changed: nothing, most of the
        # time).
        local log=$UNISHIM_BUILD_DIR/guest-image-generic.log before
        before=$(stat -c %y "$ENV_9P_IMAGE/initramfs.cpio" "$ENV_9P_IMAGE/vmlinux" 2>/dev/null || true)
        if ! cmake --build "$UNISHIM_BUILD_DIR" --target guest-image-generic >"$log" 2>&1; then
                ENV_9P_ERR="the generic guest image could not be built (log $log): $(tail -n 20 "$log")"
                return 1
        fi
        [ "$before" = "$(stat -c %y "$ENV_9P_IMAGE/initramfs.cpio" "$ENV_9P_IMAGE/vmlinux" 2>/dev/null)" ] ||
                ENV_9P_BUILT=1
        env_image_has_9p "$ENV_9P_IMAGE" || {
                ENV_9P_ERR="the image in $ENV_9P_IMAGE has no 9p (its kernel-config)"
                return 1
        }
}

# env_pod_json FILE JQ_FILTER: writes a pod description for unishimctl: the
# filter's output plus this environment's cgroup parent and a log directory in
# its state dir (nothing lands in /var/log/pods or a random cgroup).
env_pod_json() {
        local f=$1
        shift
        jq -n --arg cg "$ENV_POD_CGROUP" --arg logs "$ENV_STATE/pod-logs" --arg img "$CRI_TEST_IMAGE" \
                "$@" | jq --arg cg "$ENV_POD_CGROUP" --arg logs "$ENV_STATE/pod-logs" '
                .cgroup_parent //= $cg
                | .log_directory //= ($logs + "/" + (.namespace // "default") + "_" + .name)' >"$f"
}

# Builds the test image (cached in the build dir) and imports it.
env_import_image() {
        "$ENV_LIB_DIR/build-image.sh" "$ENV_IMAGE_DIR" "$TEST_IMAGE"
        ectr images import --no-unpack "$ENV_IMAGE_DIR/image.tar" >/dev/null
        local images
        images=$(ectr images ls -q) || images=
        grep -qxF "$TEST_IMAGE" <<<"$images" || {
                env_log "image $TEST_IMAGE missing after import"
                return 1
        }
}

# env_start: starts containerd for the current ENV_* (idempotent).
env_start() {
        if env_healthy; then
                return 0
        fi
        if env_containerd_pid >/dev/null; then
                env_log "containerd of $ENV_NAME runs but is unhealthy; restarting it"
                env_stop
        fi
        case "$ENV_SANDBOX_PATH" in
        cold | template) ;;
        *)
                env_log "UNISHIM_TEST_SANDBOX_PATH=$ENV_SANDBOX_PATH: not cold or template"
                return 1
                ;;
        esac
        local shim
        shim=$(env_shim_binary)
        if [ ! -x "$shim" ]; then
                env_log "warning: $shim not built; runtime $UNISHIM_RUNTIME will not work"
        fi
        mkdir -p "$ENV_STATE" "$ENV_ROOT" "$ENV_BINDIR"
        chmod 0711 "$ENV_STATE" "$ENV_ROOT"
        ln -sfn "$shim" "$ENV_BINDIR/containerd-shim-unishim-v2"
        env_render_config
        : >>"$ENV_LOG"
        local netns=()
        if [ "$ENV_CRI" = 1 ]; then
                env_netns_up
                env_write_cni
                if [ "$ENV_SANDBOX_PATH" = template ]; then
                        env_template_build || return 1
                fi
                env_registry_start
                netns=(nsenter --net="$ENV_NETNS_PATH")
        fi
        # setsid: containerd outlives env-up.sh and ignores the caller's
        # terminal signals. PATH: containerd resolves the shim of
        # io.containerd.unishim.v2 as containerd-shim-unishim-v2 on it.
        # nsenter execs containerd (same pid) inside the env's netns.
        PATH="$ENV_BINDIR:$PATH" setsid "${netns[@]}" containerd --config "$ENV_CONFIG" \
                </dev/null >>"$ENV_LOG" 2>&1 &
        local cpid=$!
        echo "$cpid" >"$ENV_PIDFILE"
        local i
        for ((i = 0; i < 150; i++)); do
                # Liveness only: until setsid/nsenter have exec'd containerd,
                # the pid's cmdline is still this shell's, which
                # env_containerd_pid would take for a stale pid file.
                if ! kill -0 "$cpid" 2>/dev/null; then
                        env_log "containerd exited during start-up; its log ($ENV_LOG):"
                        tail -n 50 "$ENV_LOG" >&2
                        return 1
                fi
                [ -S "$ENV_ADDR" ] && CTR_TIMEOUT=5 ectr version >/dev/null 2>&1 && break
                sleep 0.2
        done
        if ((i == 150)); then
                env_log "containerd did not answer on $ENV_ADDR within 30s; its log:"
                tail -n 50 "$ENV_LOG" >&2
                return 1
        fi
        env_import_image
        if [ "$ENV_CRI" = 1 ]; then
                env_push_images
        fi
        if [ "$ENV_VM_IMAGE" = 1 ]; then
                env_vm_image_push
        fi
}

# The /proc scans below read each process's command line with bash's own
# mapfile, no fork per process: on a loaded 2-core machine a fork per
# process made one scan of ~150 processes take 8 s.

# _env_has WORD ARGS...: true when one of ARGS is WORD.
_env_has() {
        local w=$1 a
        shift
        for a; do
                [ "$a" = "$w" ] && return 0
        done
        return 1
}

# Pids of this environment's shims: containerd-shim-* processes started with
# -address ENV_ADDR.
env_shim_pids() {
        local d a
        for d in /proc/[0-9]*; do
                mapfile -d '' -t a 2>/dev/null <"$d/cmdline" || continue
                [[ ${a[0]:-} = *containerd-shim-* ]] || continue
                _env_has "$ENV_ADDR" "${a[@]}" && echo "${d#/proc/}"
        done
        return 0
}

# env_shim_pid ID: pid of the (serving) shim of container ID, if any: the
# containerd-shim-* process with -address ENV_ADDR and -id ID that is not the
# short-lived `start` invocation; failing that, the parent of the task's init
# process.
env_shim_pid() {
        local d a pid ppid comm
        for d in /proc/[0-9]*; do
                mapfile -d '' -t a 2>/dev/null <"$d/cmdline" || continue
                [[ ${a[0]:-} = *containerd-shim-* ]] || continue
                _env_has "$ENV_ADDR" "${a[@]}" || continue
                _env_has "$1" "${a[@]}" || continue
                _env_has start "${a[@]}" && continue
                echo "${d#/proc/}"
                return 0
        done
        pid=$(CTR_TIMEOUT=10 ectr tasks ls 2>/dev/null | awk -v id="$1" '$1 == id { print $2 }')
        [[ $pid =~ ^[1-9][0-9]*$ ]] || return 0
        ppid=$(awk '$1 == "PPid:" { print $2 }' "/proc/$pid/status" 2>/dev/null) || return 0
        [ -n "$ppid" ] || return 0
        comm=$(tr '\0' '\n' 2>/dev/null <"/proc/$ppid/cmdline" | head -n1)
        [[ $comm = *containerd-shim-* ]] && echo "$ppid"
        return 0
}

# Pids of processes living in this environment's cgroups (containers, and
# pods under /NAME/pods), at any depth.
env_cgroup_pids() {
        { find /sys/fs/cgroup/*/"$ENV_NS" -name cgroup.procs -exec cat {} + 2>/dev/null || true; } | sort -un
        return 0
}

# Pids of processes in the environment's netns (containerd, the registry, the
# shims and CNI plugins containerd started).
env_netns_pids() {
        [ -e "$ENV_NETNS_PATH" ] || return 0
        local d
        for d in /proc/[0-9]*; do
                # (-ef: the same device and inode, as stat -L tells)
                [ "$d/ns/net" -ef "$ENV_NETNS_PATH" ] && echo "${d#/proc/}"
        done
        return 0
}

# Mount points at or under the environment's dirs, deepest first.
env_mounts() {
        awk -v r="$ENV_ROOT" -v s="$ENV_STATE" '
                function unesc(p) { gsub(/\\040/, " ", p); return p }
                { p = unesc($5); if (index(p, r) == 1 || index(p, s) == 1) print p }
        ' /proc/self/mountinfo | sort -r
        return 0
}

# env_shim_socket ID: the path containerd 1.6 gives the shim socket of ID.
env_shim_socket() {
        echo "/run/containerd/s/$(printf '%s' "$ENV_ADDR/$ENV_NS/$1" | sha256sum | cut -d' ' -f1)"
}

# env_stop: stops everything of the environment and removes its dirs. Safe to
# call on an environment that is half up or already gone.
env_stop() {
        local pid ids id i
        # CRI pods first (stop + rm: CNI DEL, netns, shm), then tasks and
        # containers, while containerd can still clean up.
        if [ -x "$UNISHIMCTL" ] && env_containerd_pid >/dev/null && env_cri_on; then
                for id in $(CTR_TIMEOUT=10 ectl ps -q 2>/dev/null || true); do
                        CTR_TIMEOUT=20 ectl rm --timeout 0 "$id" >/dev/null 2>&1 || true
                done
        fi
        if env_containerd_pid >/dev/null && CTR_TIMEOUT=5 ectr version >/dev/null 2>&1; then
                ids=$(CTR_TIMEOUT=10 ectr containers ls -q 2>/dev/null || true)
                for id in $ids; do
                        CTR_TIMEOUT=10 ectr tasks kill -a -s SIGKILL "$id" >/dev/null 2>&1 || true
                done
                for id in $ids; do
                        CTR_TIMEOUT=15 ectr tasks delete -f "$id" >/dev/null 2>&1 || true
                        CTR_TIMEOUT=15 ectr containers delete "$id" >/dev/null 2>&1 || true
                        rm -f "$(env_shim_socket "$id")"
                done
        fi
        if pid=$(env_containerd_pid); then
                kill -TERM "$pid" 2>/dev/null || true
                for ((i = 0; i < 100; i++)); do
                        kill -0 "$pid" 2>/dev/null || break
                        sleep 0.1
                done
                kill -KILL "$pid" 2>/dev/null || true
        fi
        if pid=$(env_registry_pid); then
                kill -TERM "$pid" 2>/dev/null || true
                for ((i = 0; i < 50; i++)); do
                        kill -0 "$pid" 2>/dev/null || break
                        sleep 0.1
                done
                kill -KILL "$pid" 2>/dev/null || true
        fi
        # Leftover shims and container processes of this environment only,
        # and anything still in its netns.
        env_kill_listed env_shim_pids env_cgroup_pids env_netns_pids
        # After the shims: none may start another build.
        env_templates_rm
        # Cgroups of the namespace, deepest first.
        { find /sys/fs/cgroup/*/"$ENV_NS" -depth -type d 2>/dev/null || true; } |
                while read -r d; do rmdir "$d" 2>/dev/null || true; done
        # runc keeps its container state under /run/containerd/runc/<ns>.
        rm -rf "/run/containerd/runc/$ENV_NS"
        local m
        for m in $(env_mounts); do
                umount -l "$m" 2>/dev/null || true
        done
        # The netns (its bridge and veths go with it) and libcni's cache of
        # this env's network (/var/lib/cni/results/<net>-<id>-<if>).
        if [ -e "$ENV_NETNS_PATH" ]; then
                ip netns delete "$ENV_NETNS" 2>/dev/null || true
        fi
        rm -f /var/lib/cni/results/"$ENV_CNI_NET"-* 2>/dev/null || true
        rm -rf "$ENV_STATE" "$ENV_ROOT"
}

# ---- libvirtd (the vm kind's domains) ----
# The node's libvirtd, Debian's libvirt-daemon-system (libvirtd and
# virtlogd), at qemu:///system. One that already answers (an operator's,
# systemd's) is used and never stopped. On machines without one (CI runs no
# service manager) the first user starts libvirtd and virtlogd, the last one
# stops them, whether the users are env-up, tests or both at once:
#   - each user holds a shared flock on ENV_LIBVIRT_DIR/users.lock for as
#     long as it uses libvirt, through a holder process (a `tail --pid` of
#     its owner, or a `sleep` for env-up's environment that outlives
#     env-up), so that no daemon or container we start inherits the lock;
#     a holder whose owner died lets go by itself;
#   - a user done kills its holder and takes the lock exclusively without
#     waiting: if that fails another user is still there; otherwise it stops
#     the daemons recorded as started here (ENV_LIBVIRT_DIR/<daemon>.pid);
#   - starting and stopping are serialised by ENV_LIBVIRT_DIR/start.lock.
# The daemons run with Debian's /etc/libvirt unchanged; their output goes
# to ENV_LIBVIRT_DIR/<daemon>.log.
ENV_LIBVIRT_DIR=/run/unishim-libvirt
ENV_LIBVIRT_URI=qemu:///system
# Bounds on waits for events (not sleeps): a loaded machine may be slow.
ENV_LIBVIRT_TIMEOUT=${ENV_LIBVIRT_TIMEOUT:-60}

# True when libvirtd answers on its socket.
env_libvirt_up() {
        timeout 10 virsh -q -c "$ENV_LIBVIRT_URI" version >/dev/null 2>&1
}

# _env_pid_gone PID: true when PID has exited (a zombie waiting for its
# reaper is gone: it holds no socket, no lock, no file).
_env_pid_gone() {
        local s
        ! s=$(ps -o stat= -p "$1" 2>/dev/null) || [[ $s = Z* ]]
}

# _env_pid_stop PID SECONDS: SIGTERM, SIGKILL after SECONDS, reaped if it is
# our child.
_env_pid_stop() {
        local pid=$1 i
        kill -TERM "$pid" 2>/dev/null || true
        for ((i = 0; i < $2 * 10; i++)); do
                _env_pid_gone "$pid" && break
                sleep 0.1
        done
        _env_pid_gone "$pid" || kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
}

# _env_libvirt_ours DAEMON: pid of DAEMON (libvirtd, virtlogd) when it runs
# and was started here.
_env_libvirt_ours() {
        local pid
        pid=$(cat "$ENV_LIBVIRT_DIR/$1.pid" 2>/dev/null) || return 1
        [[ $pid =~ ^[1-9][0-9]*$ ]] && ! _env_pid_gone "$pid" || return 1
        [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$1" ] || return 1
        echo "$pid"
}

# _env_running NAME: pids of live processes named NAME (zombies left out).
_env_running() {
        local p
        for p in $(pgrep -x "$1"); do
                _env_pid_gone "$p" || echo "$p"
        done
        return 0
}

# _env_libvirt_holder USER: pid of USER's holder process, when it runs.
_env_libvirt_holder() {
        local pid args
        pid=$(cat "$ENV_LIBVIRT_DIR/users/$1.pid" 2>/dev/null) || return 1
        [[ $pid =~ ^[1-9][0-9]*$ ]] && ! _env_pid_gone "$pid" || return 1
        args=$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null) || return 1
        [[ $args = "unishim-libvirt-user $1 "* ]] || return 1
        echo "$pid"
}

# _env_libvirt_spawn LOCK_FD DAEMON ARGS...: DAEMON in the foreground of a
# session of its own (it outlives its starter), pid file and log in
# ENV_LIBVIRT_DIR; the start lock's fd closed for it.
_env_libvirt_spawn() {
        local fd=$1 daemon=$2
        shift 2
        # (cd /: the starter's cwd may be a temporary dir it removes)
        (cd / && exec setsid "$daemon" -p "$ENV_LIBVIRT_DIR/$daemon.pid" "$@") \
                </dev/null >>"$ENV_LIBVIRT_DIR/$daemon.log" 2>&1 {fd}>&- &
        # Its own pid file, written at once: the daemon writes the same pid
        # once it is up; a stop before that must find it too.
        echo "$!" >"$ENV_LIBVIRT_DIR/$daemon.pid"
}

# _env_libvirt_daemons LOCK_FD: starts virtlogd (unless one runs) and
# libvirtd, and waits until libvirtd answers. On failure prints libvirtd's
# log and stops what it started.
_env_libvirt_daemons() {
        local fd=$1 pid i
        if [ -z "$(_env_running virtlogd)" ]; then
                _env_libvirt_spawn "$fd" virtlogd
                pid=$(cat "$ENV_LIBVIRT_DIR/virtlogd.pid")
                # libvirtd hands each domain's console log to it.
                for ((i = 0; i < ENV_LIBVIRT_TIMEOUT * 10; i++)); do
                        [ -S /run/libvirt/virtlogd-sock ] && break
                        _env_pid_gone "$pid" && break
                        sleep 0.1
                done
                if [ ! -S /run/libvirt/virtlogd-sock ]; then
                        env_log "virtlogd did not come up; the end of $ENV_LIBVIRT_DIR/virtlogd.log:"
                        tail -n 30 "$ENV_LIBVIRT_DIR/virtlogd.log" >&2
                        _env_pid_stop "$pid" 10
                        rm -f "$ENV_LIBVIRT_DIR/virtlogd.pid"
                        return 1
                fi
        fi
        _env_libvirt_spawn "$fd" libvirtd
        pid=$(cat "$ENV_LIBVIRT_DIR/libvirtd.pid")
        for ((i = 0; i < ENV_LIBVIRT_TIMEOUT * 5; i++)); do
                env_libvirt_up && return 0
                _env_pid_gone "$pid" && break
                sleep 0.2
        done
        if _env_pid_gone "$pid"; then
                env_log "libvirtd exited during start-up; the end of $ENV_LIBVIRT_DIR/libvirtd.log:"
        else
                env_log "libvirtd did not answer on $ENV_LIBVIRT_URI within ${ENV_LIBVIRT_TIMEOUT}s;" \
                        "the end of $ENV_LIBVIRT_DIR/libvirtd.log:"
        fi
        tail -n 30 "$ENV_LIBVIRT_DIR/libvirtd.log" >&2
        _env_libvirt_stop_daemons
        return 1
}

# Stops the daemons started here (libvirtd first: it talks to virtlogd).
_env_libvirt_stop_daemons() {
        local d pid
        for d in libvirtd virtlogd; do
                if pid=$(_env_libvirt_ours "$d"); then
                        _env_pid_stop "$pid" "$ENV_LIBVIRT_TIMEOUT"
                fi
                rm -f "$ENV_LIBVIRT_DIR/$d.pid"
        done
}

# env_libvirt_start USER [OWNER_PID]: makes libvirtd answer on
# ENV_LIBVIRT_URI for USER (a name unique to the caller: the env name, or
# the test's) until env_libvirt_stop USER, or until OWNER_PID exits. Uses a
# libvirtd that answers already, else starts one. Idempotent per USER.
env_libvirt_start() {
        local user=$1 owner=${2:-} fd ufd pid f i rc=0 new=
        mkdir -p "$ENV_LIBVIRT_DIR/users"
        exec {fd}>>"$ENV_LIBVIRT_DIR/start.lock"
        if ! flock -w $((ENV_LIBVIRT_TIMEOUT * 2)) "$fd"; then
                exec {fd}>&-
                env_log "libvirt: $ENV_LIBVIRT_DIR/start.lock stayed taken for $((ENV_LIBVIRT_TIMEOUT * 2))s"
                return 1
        fi
        # Pid files of users whose holder is gone (owner killed).
        for f in "$ENV_LIBVIRT_DIR"/users/*.pid; do
                [ -e "$f" ] || continue
                f=${f##*/}
                _env_libvirt_holder "${f%.pid}" >/dev/null || rm -f "$ENV_LIBVIRT_DIR/users/$f"
        done
        if ! _env_libvirt_holder "$user" >/dev/null; then
                exec {ufd}>>"$ENV_LIBVIRT_DIR/users.lock"
                # Only a stopper takes it exclusively, holding start.lock.
                if ! flock -s -w 10 "$ufd"; then
                        exec {ufd}>&- {fd}>&-
                        env_log "libvirt: no shared lock on $ENV_LIBVIRT_DIR/users.lock"
                        return 1
                fi
                # The holder shares the locked open file; HUP and INT from a
                # terminal do not end it (env-up's outlives env-up).
                if [ -n "$owner" ]; then
                        (trap '' HUP INT && cd / && exec -a "unishim-libvirt-user $user" \
                                tail --pid="$owner" -f /dev/null) </dev/null >/dev/null 2>&1 {fd}>&- &
                else
                        (trap '' HUP INT && cd / && exec -a "unishim-libvirt-user $user" \
                                sleep infinity) </dev/null >/dev/null 2>&1 {fd}>&- &
                fi
                echo "$!" >"$ENV_LIBVIRT_DIR/users/$user.pid"
                new=$!
                exec {ufd}>&-
                # (until it has exec'd, its cmdline is this shell's)
                for ((i = 0; i < 50; i++)); do
                        _env_libvirt_holder "$user" >/dev/null && break
                        sleep 0.1
                done
        fi
        if ! env_libvirt_up; then
                pid=$(_env_running libvirtd)
                # One runs (someone else's starting, or one answering slowly
                # on a loaded machine): give it time before judging it.
                if [ -n "$pid" ]; then
                        for ((i = 0; i < ENV_LIBVIRT_TIMEOUT * 5; i++)); do
                                env_libvirt_up && break
                                sleep 0.2
                        done
                fi
                if env_libvirt_up; then
                        :
                elif [ -n "$pid" ] && ! _env_libvirt_ours libvirtd >/dev/null; then
                        # Never ours to replace.
                        env_log "libvirt: a libvirtd (pid $(tr '\n' ' ' <<<"$pid")) runs but does" \
                                "not answer on $ENV_LIBVIRT_URI within ${ENV_LIBVIRT_TIMEOUT}s"
                        rc=1
                else
                        # None, or ours stuck: (re)start ours.
                        _env_libvirt_stop_daemons
                        _env_libvirt_daemons "$fd" || rc=1
                fi
        fi
        # A user that got no libvirtd holds nothing (env-up's holder would
        # outlive the failed env-up).
        if [ "$rc" != 0 ] && [ -n "$new" ]; then
                _env_pid_stop "$new" 10
                rm -f "$ENV_LIBVIRT_DIR/users/$user.pid"
        fi
        exec {fd}>&-
        return "$rc"
}

# env_libvirt_stop USER: USER is done with libvirt. The last user stops the
# daemons started here; one that was not started here is never stopped.
# Does nothing for a USER that never called env_libvirt_start.
env_libvirt_stop() {
        local user=$1 fd ufd pid
        [ -e "$ENV_LIBVIRT_DIR/users/$user.pid" ] || return 0
        exec {fd}>>"$ENV_LIBVIRT_DIR/start.lock"
        if ! flock -w $((ENV_LIBVIRT_TIMEOUT * 2)) "$fd"; then
                exec {fd}>&-
                env_log "libvirt: $ENV_LIBVIRT_DIR/start.lock stayed taken; libvirtd left running"
                return 1
        fi
        if pid=$(_env_libvirt_holder "$user"); then
                _env_pid_stop "$pid" 10
        fi
        rm -f "$ENV_LIBVIRT_DIR/users/$user.pid"
        exec {ufd}>>"$ENV_LIBVIRT_DIR/users.lock"
        if flock -x -n "$ufd"; then
                _env_libvirt_stop_daemons
        fi
        exec {ufd}>&- {fd}>&-
}

# env_libvirt_pid: the pid of the running libvirtd (ours or the machine's).
env_libvirt_pid() {
        _env_libvirt_ours libvirtd || _env_running libvirtd | head -n1
}

# env_libvirt_describe: one line on the libvirtd in use.
env_libvirt_describe() {
        local pid
        if pid=$(_env_libvirt_ours libvirtd); then
                echo "libvirtd pid $pid, started for the tests (log $ENV_LIBVIRT_DIR/libvirtd.log)"
        else
                echo "the machine's libvirtd (pid $(env_libvirt_pid))"
        fi
}

# env_write_file FILE: writes the sourceable variables of the environment.
env_write_file() {
        mkdir -p "$(dirname "$1")"
        cat >"$1.tmp" <<EOF
# Written by tests/env/env-up.sh: the private containerd of unishim's tests.
export CONTAINERD_ADDRESS=$ENV_ADDR
export CONTAINERD_NAMESPACE=$ENV_NS
export TEST_IMAGE=$TEST_IMAGE
export UNISHIM_ENV_NAME=$ENV_NAME
export UNISHIM_ENV_STATE=$ENV_STATE
export UNISHIM_ENV_ROOT=$ENV_ROOT
export UNISHIM_ENV_LOG=$ENV_LOG
export UNISHIM_ENV_ROOTFS=$ENV_ROOTFS
export UNISHIM_ENV_CRI=$ENV_CRI
export UNISHIM_ENV_NETNS=$ENV_NETNS
export UNISHIM_ENV_BRIDGE=$ENV_BRIDGE
export UNISHIM_ENV_SUBNET=$ENV_SUBNET
export UNISHIM_ENV_IPV6=$ENV_IPV6
export UNISHIM_ENV_SUBNET6=$ENV_SUBNET6
export UNISHIM_POD_CGROUP=$ENV_POD_CGROUP
export CRI_ENDPOINT=$CRI_ENDPOINT
export CRI_TEST_IMAGE=$CRI_TEST_IMAGE
export CRI_PAUSE_IMAGE=$CRI_PAUSE_IMAGE
export UNISHIMCTL=$UNISHIMCTL
export UNISHIM_ENV_VM_IMAGE=$ENV_VM_IMAGE
export UNISHIM_ENV_LIBVIRT=$ENV_LIBVIRT
export UNISHIM_TEST_SANDBOX_PATH=$ENV_SANDBOX_PATH
EOF
        # Only when it is in the registry: a test can tell by its presence.
        if [ "$ENV_VM_IMAGE" = 1 ]; then
                echo "export CRI_VM_IMAGE=$CRI_VM_IMAGE" >>"$1.tmp"
        fi
        if [ "$ENV_LIBVIRT" = 1 ]; then
                echo "export LIBVIRT_DEFAULT_URI=$ENV_LIBVIRT_URI" >>"$1.tmp"
        fi
        mv "$1.tmp" "$1"
}
