#!/bin/bash
# Volume mount propagation across the VM boundary of a sandbox pod
# (unishim.io/isolation: sandbox), through the real CRI; the container
# kind's and runc's are test-cri-propagation.sh's. virtio-fs carries host
# mounts into the guest (virtiofsd serves what its view of the share shows,
# mounts included) and nothing back. A privileged pod binds two host
# directories the test makes shared mount points under its temp dir:
#  - HostToContainer: a host mount made after the start shows inside
#  - None: it does not
#  - a tmpfs mounted inside the container on either stays in the guest
# and a pod with a Bidirectional volume is refused, the error naming the
# field and the volume (a mount made in the guest could not reach the
# host); rm leaves nothing.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
IT_CRI=1
command -v qemu-system-x86_64 >/dev/null || it_skip "qemu-system-x86_64 missing (apt package qemu-system-x86)"
command -v mountpoint >/dev/null || it_skip "mountpoint not installed (util-linux)"
it_setup
IT_CLEANUP_HOOK=prop_unmount_tmp
SB='{"unishim.io/isolation": "sandbox"}'
d=$IT_TMP/prop
prop_shared_dirs "$d" bidi h2c none
IDS=()

f=$(it_pod bidi.json --arg d "$d" --argjson a "$SB" '{name: "bidi",
        runtime_handler: "unishim", annotations: $a, privileged: true,
        containers: [{name: "app", image: $img, privileged: true, command: ["sleep", "3600"],
          mounts: [{host_path: ($d + "/bidi"), container_path: "/bidi", propagation: "Bidirectional"}]}]}')
out_rc out rc ectl run "$f"
[ "$rc" != 0 ] && [[ $out = *mountPropagation* && $out = *Bidirectional* && $out = */bidi* ]] &&
        pass "Bidirectional refused, naming the field and the volume: $(tail -c 300 <<<"$out")" ||
        fail "Bidirectional: rc $rc: $out"
IDS+=("$(pod_id bidi 2>/dev/null || true)")

f=$(it_pod sb.json --arg d "$d" --argjson a "$SB" '{name: "sb",
        runtime_handler: "unishim", annotations: $a, privileged: true,
        containers: [{name: "app", image: $img, privileged: true, command: ["sleep", "3600"],
          mounts: [
            {host_path: ($d + "/h2c"), container_path: "/h2c", propagation: "HostToContainer"},
            {host_path: ($d + "/none"), container_path: "/none", propagation: "None"}]}]}')
out_rc out rc ectl run "$f"
expect_eq "run the privileged pod with a HostToContainer and a None volume" 0 "$rc"
[ "$rc" = 0 ] || echo "# $out"
IDS+=("$(pod_id sb || true)")

# Guest -> host.
for v in h2c none; do
        expect_eq "$v: a tmpfs mounted inside the guest's container" mounted "$(prop_mount_inside sb $v)"
        got=$(mountpoint -q "$d/$v/in" && echo propagated || echo not-propagated)
        expect_eq "$v: the guest's mount stays in the guest" not-propagated "$got"
done

# Host -> guest, after the start. The guest may hold the directory's old
# entry for a moment (virtiofsd's cache=auto: 1 s): wait for what must
# come, then look for what must not.
prop_host_mount "$d/h2c"
prop_host_mount "$d/none"
sees() { [ "$(prop_in_ctr sb "cat /$1/sub/f 2>/dev/null || echo absent")" = from-host ]; }
wait_until 30 sees h2c || true
expect_eq "HostToContainer: a host mount made after the start shows in the guest" \
        from-host "$(prop_in_ctr sb "cat /h2c/sub/f 2>/dev/null || echo absent")"
expect_eq "None: a host mount made after the start stays outside the guest" \
        absent "$(prop_in_ctr sb "cat /none/sub/f 2>/dev/null || echo absent")"
out=$(prop_in_ctr sb "stat -c '%u %a' /h2c/sub/f 2>&1")
echo "# the propagated file in the guest: owner and mode $out"

out_rc out rc ectl rm sb
expect_eq "rm sb" 0 "$rc"
out_rc out rc ectl rm bidi
wait_until 20 outputs_nothing sandbox_leftovers "${IDS[@]}" || true
expect_eq "nothing of the pods left (shim, QEMU, virtiofsd, dirs, mounts, cgroups)" "" "$(sandbox_leftovers "${IDS[@]}")"

it_finish
