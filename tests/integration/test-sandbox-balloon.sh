#!/bin/bash
# Memory a sandbox pod's guest frees goes back to the host (free page
# reporting: a virtio-balloon that is never inflated, docs/guest.md),
# through the real CRI:
#  - QEMU has the balloon device with free-page-reporting=on, and the
#    guest's virtio_balloon driver is bound to it
#  - 60 MiB a container writes to /dev/shm and removes again: QEMU's
#    resident memory grows, then shrinks by at least 32 MiB without any
#    request from the host (without reporting it never shrinks)
#  - the guest's memory stays its size (MemTotal within the 256 MiB guest),
#    and a container's memory limit in the pod still holds (OOM kill, 137)
#  - rm leaves nothing of the pod
# On the VM-template path (the default; not UNISHIM_TEST_SANDBOX_PATH=cold) the same
# holds for a pod restored from a template: its RAM is the template's file
# mapped privately, and what it frees goes back while the template keeps
# its pages (vmm_qemu_clone_filter); it says which path the pod took.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
IT_CRI=1
command -v qemu-system-x86_64 >/dev/null || it_skip "qemu-system-x86_64 missing (apt package qemu-system-x86)"
it_setup
SB='{"unishim.io/isolation": "sandbox"}'

hog_status() {
        ectl status bl -c hog 2>/dev/null || true
}
hog_exited() {
        [ "$(jq -r .state <<<"$(hog_status)" 2>/dev/null)" = Exited ]
}

# hog: a container over its limit in the same guest (the balloon gives
# nothing beyond it).
f=$(it_pod bl.json --argjson a "$SB" '{name: "bl", runtime_handler: "unishim", annotations: $a,
        containers: [{name: "app", image: $img, command: ["sleep", "3600"]},
                     {name: "hog", image: $img, command: ["/bin/sh", "-c"],
                      args: ["head -c 200m /dev/zero | tail"], resources: {memory_limit_bytes: 33554432}}]}')
out_rc out rc ectl run "$f"
expect_eq "run the sandbox pod" 0 "$rc"
[ "$rc" = 0 ] || { echo "# $out"; it_finish; exit 1; }
pod=$(pod_id bl)
qpid=$(sandbox_qemu_pid "$pod")
expect_match "the pod's QEMU runs" '^[0-9]+$' "$qpid"
if sandbox_path_template; then
        # (the env built the template at its start)
        expect_eq "the pod was restored from the env's VM template" 1 \
                "$(grep -qa "pod $pod: restored from VM template" "$ENV_LOG" && echo 1 || echo 0)"
fi
expect_match "QEMU has a balloon with free page reporting" \
        '(^|\s)virtio-balloon-device,free-page-reporting=on,deflate-on-oom=off(\s|$)' \
        "$(tr '\0' ' ' <"/proc/$qpid/cmdline" 2>/dev/null || true)"
out_rc out rc ectl exec bl -c app -- ls /sys/bus/virtio/drivers/virtio_balloon
expect_match "the guest's virtio_balloon driver is bound to a device" '(^|\s)virtio[0-9]+(\s|$)' "$out"

# (a hang guard: the allocation takes a moment, more under TCG)
wait_until 180 hog_exited || true
st=$(hog_status)
expect_eq "a container over its 32 MiB limit is killed (137)" 137 "$(jq -r .exit_code <<<"$st" 2>/dev/null)"
expect_eq "ContainerStatus reason OOMKilled" OOMKilled "$(jq -r .reason <<<"$st" 2>/dev/null)"

out_rc out rc ectl exec bl -c app -- awk '/^MemTotal/ { print int($2 / 1024) }' /proc/meminfo
[ "$rc" = 0 ] && [ "$out" -gt 128 ] 2>/dev/null && [ "$out" -le 256 ] &&
        pass "the guest has its size: MemTotal $out MiB of a 256 MiB guest" ||
        fail "guest MemTotal '$out' (rc $rc), want 129..256 MiB"

out_rc out rc ectl exec bl -c app -- dd if=/dev/zero of=/dev/shm/fill bs=1M count=60
expect_eq "write 60 MiB to the guest's /dev/shm" 0 "$rc"
filled=$(rss_kib "$qpid")
out_rc out rc ectl exec bl -c app -- rm /dev/shm/fill
expect_eq "remove it" 0 "$rc"
# The guest reports free 2 MiB blocks a few seconds after they were freed
# (more under TCG): a hang guard, not a timing.
if wait_until 120 rss_below "$qpid" $((filled - 32 * 1024)); then
        pass "QEMU's RSS went down by 32 MiB or more after the guest freed 60 MiB ($filled KiB -> $(rss_kib "$qpid") KiB)"
else
        fail "QEMU's RSS stayed at $(rss_kib "$qpid") KiB (was $filled KiB with the 60 MiB written)"
fi

out_rc out rc ectl rm --timeout 0 bl
expect_eq "rm the pod" 0 "$rc"
wait_until 30 outputs_nothing sandbox_leftovers "$pod" || true
expect_eq "nothing of the pod left" "" "$(sandbox_leftovers "$pod")"
it_finish
