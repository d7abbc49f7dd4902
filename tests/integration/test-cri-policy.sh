#!/bin/bash
# The isolation policy through the real CRI: containerd's CRI plugin hands the
# pod's unishim.io/* annotations (pod_annotations) and the handler's options
# (ConfigPath) to the shim, which refuses what this build cannot or must not
# run. Every refused pod leaves nothing behind: no pod, shim, mount, netns.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
IT_CRI=1
it_setup

# refused NAME HANDLER ANNOTATIONS_JSON: runs a one-container pod that must be
# refused (pod_refused: ERR, nothing left).
refused() {
        local name=$1 handler=$2 ann=$3 f
        f=$(it_pod "$name.json" --arg n "$name" --arg h "$handler" --argjson a "$ann" \
                '{name: $n, runtime_handler: $h, annotations: $a,
                  containers: [{name: "app", image: $img, command: ["sleep", "3600"]}]}')
        pod_refused "$name" "$f"
}

refused bogus unishim '{"unishim.io/isolation": "bogus"}'
expect_match "bogus: names the annotation" "unishim\.io/isolation" "$ERR"
expect_match "bogus: names the value" '"bogus"' "$ERR"
expect_match "bogus: names the allowed kinds" "container.*sandbox.*vm" "$ERR"

# cloud-init user-data runs as root in a vm pod's guest: the built-in
# policy knows it and does not allow it (an operator lists it).
refused user-data unishim '{"unishim.io/isolation": "vm", "unishim.io/cloud-init-user-data": "#cloud-config"}'
expect_match "user-data: not allowed by default" "unishim\.io/cloud-init-user-data.*not allowed" "$ERR"

refused foo unishim '{"unishim.io/foo": "x"}'
expect_match "unishim.io/foo: not allowed" "unishim\.io/foo.*not allowed" "$ERR"

# VM sizes outside the operator's bounds (max_vcpus defaults to the host's
# CPUs), or not a plain number, are refused for every kind.
refused vcpus-high unishim '{"unishim.io/isolation": "sandbox", "unishim.io/vcpus": "4096"}'
expect_match "vcpus 4096: names the annotation, value and range" \
        'annotation unishim\.io/vcpus: "4096" is not within 1\.\.[0-9]+ \(sandbox\.max_vcpus' "$ERR"
refused memory-word unishim '{"unishim.io/memory-mib": "lots"}'
expect_match "memory-mib lots: names the annotation, value and range" \
        'annotation unishim\.io/memory-mib: "lots" is not within 128\.\.16384' "$ERR"

HOST_KERNEL=$(uname -r)
# in_vm NAME HANDLER ANNOTATIONS_JSON [VCPUS MEMORY_MIB]: the pod runs, and in
# a VM: `uname -r` in it is not the host's kernel, unishimctl lists it as a
# sandbox, and the VM has the vCPUs and memory asked for; rm leaves nothing.
in_vm() {
        local name=$1 handler=$2 ann=$3 vcpus=${4:-} mib=${5:-} f out rc id kern total
        f=$(it_pod "$name.json" --arg n "$name" --arg h "$handler" --argjson a "$ann" \
                '{name: $n, runtime_handler: $h, annotations: $a,
                  containers: [{name: "app", image: $img, command: ["sleep", "3600"]}]}')
        out_rc out rc ectl run "$f"
        expect_eq "$name: runs" 0 "$rc"
        [ "$rc" = 0 ] || echo "# $out"
        id=$(pod_id "$name")
        expect_match "ps: $name on $handler is a sandbox" "$name +default +Ready +$handler +sandbox\$" "$(ectl ps)"
        expect_match "inspect: $name is a sandbox" "isolation sandbox\$" "$(ectl inspect "$name" | head -n1)"
        out_ok kern "$name: exec uname -r" ectl exec "$name" -- uname -r
        [ -n "$kern" ] && [ "$kern" != "$HOST_KERNEL" ] && [[ $kern =~ ^[0-9]+\.[0-9]+ ]] &&
                pass "$name: runs in a VM (uname -r $kern, host $HOST_KERNEL)" ||
                fail "$name: uname -r '$kern' (host $HOST_KERNEL)"
        [ -n "$(sandbox_qemu_pid "$id")" ] && pass "$name: its QEMU runs" || fail "$name: no QEMU with -name unishim-$id"
        if [ -n "$vcpus" ]; then
                expect_eq "$name: the guest has $vcpus vCPUs" "$vcpus" "$(ectl exec "$name" -- nproc </dev/null 2>&1 || true)"
                total=$(ectl exec "$name" -- awk '/^MemTotal/ {print int($2 / 1024)}' /proc/meminfo </dev/null 2>&1 || true)
                # MemTotal is the guest's RAM less what its kernel reserves.
                [[ $total =~ ^[0-9]+$ ]] && [ "$total" -le "$mib" ] && [ "$total" -gt $((mib * 3 / 4)) ] &&
                        pass "$name: the guest has ${total} MiB of the $mib MiB asked for" ||
                        fail "$name: guest MemTotal '$total' MiB for $mib MiB asked"
        fi
        out_rc out rc ectl rm --timeout 0 "$name"
        expect_eq "$name: removed" 0 "$rc"
        wait_until 10 outputs_nothing sandbox_leftovers "$id" || true
        expect_eq "$name: nothing left" "" "$(sandbox_leftovers "$id")"
}

# `sandbox` is available: explicitly on unishim, and as the default of the
# unishim-sandbox handler (its ConfigPath: runtimeoptions.v1.Options), which
# is how the test knows ConfigPath reaches the shim.
in_vm sandbox unishim '{"unishim.io/isolation": "sandbox"}'
in_vm sandbox-handler unishim-sandbox '{}'
# A pod sizes its VM with annotations (the default is 1 vCPU, 256 MiB; the
# most vCPUs by default is the host's CPU count).
V=$(($(nproc) >= 2 ? 2 : 1))
in_vm sized unishim '{"unishim.io/isolation": "sandbox", "unishim.io/vcpus": "'$V'", "unishim.io/memory-mib": "320"}' $V 320

# The same pod with an explicit container kind runs on both handlers that
# allow it; annotations outside unishim.io/* never reach the shim.
for h in unishim runc; do
        f=$(it_pod "ok-$h.json" --arg n "ok-$h" --arg h "$h" \
                '{name: $n, runtime_handler: $h,
                  annotations: {"unishim.io/isolation": "container", "example.com/other": "x"},
                  containers: [{name: "app", image: $img, command: ["sleep", "3600"]}]}')
        out_rc out rc ectl run "$f"
        expect_eq "isolation container on $h: runs" 0 "$rc"
        expect_match "ps: ok-$h with kind container" "ok-$h +default +Ready +$h +container" "$(ectl ps)"
        out_rc out rc ectl rm "ok-$h"
        expect_eq "isolation container on $h: removed" 0 "$rc"
done
# The sandbox-default handler does accept an explicit container pod.
f=$(it_pod ok-sbh.json '{name: "ok-sbh", runtime_handler: "unishim-sandbox",
        annotations: {"unishim.io/isolation": "container"},
        containers: [{name: "app", image: $img, command: ["sleep", "3600"]}]}')
out_rc out rc ectl run "$f"
expect_eq "handler unishim-sandbox with isolation container: runs" 0 "$rc"
ectl rm ok-sbh >/dev/null 2>&1 || true
expect_eq "all removed: no shim left" "" "$(env_shim_pids)"

it_finish
