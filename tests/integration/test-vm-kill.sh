#!/bin/bash
# kill -9 of a vm pod's shim (unishim.io/isolation: vm): libvirtd destroys
# the domain with the shim's connection (AUTODESTROY), containerd sees the
# tasks exit and runs `shim delete`, which removes what the pod had on the
# host: the disk's mount, the state dir, the tap and netplumb's rules in the
# pod's netns, libvirt's log of the domain, the cgroup. The pod can still be
# removed through the CRI. The VM boots nothing (a blank disk): this is
# about the host side, not the guest.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
IT_CRI=1
IT_LIBVIRT=1
command -v qemu-system-x86_64 >/dev/null || it_skip "qemu-system-x86_64 missing (apt package qemu-system-x86)"
command -v qemu-img >/dev/null || it_skip "qemu-img missing (apt package qemu-utils)"
it_setup
VIRSH="virsh -c $ENV_LIBVIRT_URI"

img=$(vm_blank_image)
f=$(it_pod kv.json --arg i "$img" '{name: "kv", runtime_handler: "unishim-vm",
        containers: [{name: "vm", image: $i, command: ["vm"]}]}')
out_rc out rc ectl run "$f"
expect_eq "run vm pod kv" 0 "$rc"
[ "$rc" = 0 ] || echo "# $out"
id=$(pod_id kv)
ns=$(pod_netns "$(pod_ip kv)")
chains() { nsenter --net="$ns" iptables-save 2>/dev/null | grep -c UNISHIM- || true; }
[ "$(chains)" -gt 0 ] && pass "the pod's netns has netplumb's rules" || fail "no UNISHIM- rules in $ns"
expect_match "the pod's netns has the VM's tap" "us-tap0" "$(nsenter --net="$ns" ip -br link 2>/dev/null)"
dom=$($VIRSH list --name | grep -F -- "${id:0:12}" || true)
[ -n "$dom" ] && pass "its domain runs ($dom)" || fail "no domain for $id"
[ -d "/run/unishim/k8s.io/$id/vm" ] && pass "its state dir exists" || fail "no state dir"
expect_match "the image's disk is mounted in it" " /run/unishim/k8s.io/$id/vm/base " "$(cat /proc/self/mountinfo)"
shim=$(pod_shim_pid "$id")
[ -n "$shim" ] && pass "found its shim ($shim)" || fail "no shim for $id"

kill -9 "$shim"
gone() { [ -z "$($VIRSH list --all --name | grep -F -- "${id:0:12}" || true)" ]; }
wait_until 120 gone && pass "libvirtd destroyed the domain with the shim's connection" ||
        fail "the domain outlived its shim: $($VIRSH list --all --name)"
cleaned() { [ ! -e "/run/unishim/k8s.io/$id" ]; }
wait_until 120 cleaned && pass "shim delete removed the state dir" || fail "/run/unishim/k8s.io/$id is still there"
expect_eq "no mount of the pod's state left" "" "$(grep -F " /run/unishim/k8s.io/$id/" /proc/self/mountinfo || true)"
expect_eq "no netplumb rules left in the pod's netns" 0 "$(chains)"
expect_no_match "no tap left in the pod's netns" "us-tap0" "$(nsenter --net="$ns" ip -br link 2>/dev/null)"
expect_eq "nothing of the pod's VM left (domain, libvirt log, state dir, host tap)" "" \
        "$(vm_state_leftovers "$id" | grep -v -e '^shim ' -e '^cgroup ' -e '/sandboxes/[^/]*/shm$' || true)"

out_rc out rc ectl rm --timeout 0 kv
expect_eq "the pod can be removed through the CRI" 0 "$rc"
wait_until 30 outputs_nothing vm_state_leftovers "$id" || true
expect_eq "nothing of the pod left after rm" "" "$(vm_state_leftovers "$id")"
it_finish
