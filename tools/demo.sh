#!/bin/bash
# A short tour of unishim: a private containerd (CRI on, in its own netns),
# two containers run by the unishim shim through ctr (runtime
# io.containerd.unishim.v2), then three pods through the CRI with
# unishimctl, one of each kind, side by side: a container pod, a sandbox pod
# (uname -r in its VM vs the host's) and a vm pod (a Debian cloud image from
# a containerDisk, booted by libvirtd: its console, exec through its guest
# agent, virsh list), ps with each pod's isolation kind, then rm; a pod
# refused for a bogus unishim.io/isolation annotation, and everything torn
# down. The vm pod's disk is built on the first run (minutes, cached).
# `make demo` calls this. DEMO_RUNTIME=io.containerd.runc.v2 shows the same
# with containerd's runc shim.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/../tests/env/lib.sh"

RUNTIME=${DEMO_RUNTIME:-$UNISHIM_RUNTIME}
CTR_TIMEOUT=${CTR_TIMEOUT:-30}
[ "$(id -u)" = 0 ] || { echo "demo: must run as root" >&2; exit 1; }

# The vm pod needs its disk image in the registry, and libvirtd.
VM_DEMO=0
if [ "$RUNTIME" = "$UNISHIM_RUNTIME" ] && command -v libvirtd >/dev/null &&
        command -v qemu-system-x86_64 >/dev/null && command -v qemu-img >/dev/null; then
        VM_DEMO=1
fi
export UNISHIM_ENV_VM_IMAGE=$VM_DEMO UNISHIM_ENV_LIBVIRT=$VM_DEMO
env_init unishim-demo
cleanup() {
        local rc=$?
        set +e
        trap '' PIPE # a closed stdout (| head) must not stop the cleanup
        if [ "$rc" != 0 ] && [ -s "$ENV_LOG" ]; then
                echo "--- last lines of containerd's log ($ENV_LOG) ---"
                tail -n 20 "$ENV_LOG" | tr -d '\0' | cut -c1-400
        fi
        echo "==> tearing down"
        env_stop
        [ "$VM_DEMO" = 0 ] || env_libvirt_stop "$ENV_NAME"
        [ -z "${work:-}" ] || rm -rf "$work"
        exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

step() { printf '\n==> %s\n' "$*"; }
# show ID COMMAND...: prints the command line and the container's output.
show() {
        local id=$1
        shift
        printf '$ ctr run --rm --runtime %s %s %s' "$RUNTIME" "$TEST_IMAGE" "$id"
        printf ' %q' "$@"
        echo
        ectr run --rm --runtime "$RUNTIME" "$TEST_IMAGE" "$id" "$@" </dev/null
}
# must ID COMMAND...: show, and stop the demo if the container failed.
must() {
        local rc=0
        show "$@" || rc=$?
        [ "$rc" = 0 ] || { echo "demo: FAILED: ctr run exited $rc" >&2; exit 1; }
}

step "starting a private containerd (socket $ENV_ADDR)"
if [ "$VM_DEMO" = 1 ]; then
        echo "(the vm pod's disk: a Debian cloud image, built once and cached: minutes the first time)"
        env_vm_image_build
fi
env_start
[ "$VM_DEMO" = 0 ] || env_libvirt_start "$ENV_NAME"
echo "image $TEST_IMAGE (busybox), runtime $RUNTIME -> $(env_shim_binary)"

step "hello (ctr)"
must demo-hello echo hello from unishim

step "exit codes come back (ctr)"
rc=0
show demo-exit sh -c 'exit 3' || rc=$?
echo "exit code: $rc"
[ "$rc" = 3 ] || { echo "demo: expected exit code 3" >&2; exit 1; }

# ---- through the CRI, as kubelet would -------------------------------------
HANDLER=unishim
[ "$RUNTIME" = "$RUNC_RUNTIME" ] && HANDLER=runc
[ -x "$UNISHIMCTL" ] || { echo "demo: $UNISHIMCTL not built" >&2; exit 1; }
work=$(mktemp -d /tmp/unishim-demo.XXXXXX)
# cmd ARGS...: prints and runs a unishimctl command.
cmd() {
        printf '$ unishimctl'
        printf ' %q' "$@"
        echo
        ectl "$@"
}

step "a pod through the CRI (handler $HANDLER, isolation container)"
env_pod_json "$work/web.json" --arg h "$HANDLER" '{name: "demo-web", runtime_handler: $h,
        annotations: {"unishim.io/isolation": "container"},
        containers: [{name: "app", image: $img, command: ["sleep", "3600"]}]}'
jq -c 'del(.cgroup_parent, .log_directory)' "$work/web.json"
cmd run "$work/web.json"
cmd exec demo-web -- cat /proc/1/cgroup
cmd inspect demo-web
pods=(demo-web)

if [ "$HANDLER" = unishim ] && command -v qemu-system-x86_64 >/dev/null; then
        step "a sandbox pod: the same image in a QEMU microvm (isolation sandbox)"
        env_pod_json "$work/sb.json" '{name: "demo-sandbox", runtime_handler: "unishim",
                annotations: {"unishim.io/isolation": "sandbox"},
                containers: [{name: "app", image: $img, command: ["sleep", "3600"]}]}'
        jq -c 'del(.cgroup_parent, .log_directory)' "$work/sb.json"
        cmd run --timing "$work/sb.json"
        printf '$ uname -r   # the host\n'
        uname -r
        cmd exec demo-sandbox -- uname -r
        guest=$(ectl exec demo-sandbox -- uname -r </dev/null 2>/dev/null || true)
        if [ -z "$guest" ] || [ "$guest" = "$(uname -r)" ]; then
                echo "demo: the sandbox pod does not run its own kernel ('$guest')" >&2
                exit 1
        fi
        pods+=(demo-sandbox)
fi

if [ "$VM_DEMO" = 1 ]; then
        step "a vm pod: a Debian cloud image from a containerDisk, booted by libvirtd (isolation vm)"
        env_pod_json "$work/deb.json" --arg i "$CRI_VM_IMAGE" '{name: "demo-debian",
                runtime_handler: "unishim", annotations: {"unishim.io/isolation": "vm"},
                containers: [{name: "vm", image: $i, command: ["vm"]}]}'
        jq -c 'del(.cgroup_parent, .log_directory)' "$work/deb.json"
        cmd run --timing "$work/deb.json"
        printf '$ virsh list\n'
        virsh -c "$ENV_LIBVIRT_URI" list
        pods+=(demo-debian)
fi

step "the pods side by side, one of each kind"
cmd ps

if [ "$VM_DEMO" = 1 ]; then
        step "the vm pod boots (under TCG: a minute or more); its console is its log"
        deadline=$((SECONDS + 900))
        until ectl exec demo-debian -- true </dev/null >/dev/null 2>&1; do
                if [ "$SECONDS" -ge "$deadline" ]; then
                        echo "demo: the vm pod's guest agent did not answer within 900 s" >&2
                        exit 1
                fi
                sleep 2
        done
        printf '$ unishimctl logs demo-debian | grep -a -m3 ...\n'
        ectl logs demo-debian | grep -a -m3 -e "Linux version" -e "cloud-init" -e "login:" | cut -c1-160
        cmd exec demo-debian -- hostname
        cmd exec demo-debian -- sh -c '. /etc/os-release; echo "$PRETTY_NAME, kernel $(uname -r)"'
fi

step "rm: each pod and everything it had on the host goes"
cmd rm "${pods[@]}" --timeout 10
cmd ps
[ "$VM_DEMO" = 0 ] || { printf '$ virsh list\n'; virsh -c "$ENV_LIBVIRT_URI" list; }

step "a pod with unishim.io/isolation: bogus is refused"
env_pod_json "$work/bogus.json" --arg h "$HANDLER" '{name: "demo-bogus", runtime_handler: $h,
        annotations: {"unishim.io/isolation": "bogus"},
        containers: [{name: "app", image: $img, command: ["sleep", "3600"]}]}'
jq -c 'del(.cgroup_parent, .log_directory)' "$work/bogus.json"
rc=0
cmd run "$work/bogus.json" || rc=$?
echo "exit code: $rc"
if [ "$HANDLER" = unishim ] && [ "$rc" = 0 ]; then
        echo "demo: the bogus pod was not refused" >&2
        exit 1
fi
cmd ps
rm -rf "$work"

step "done"
