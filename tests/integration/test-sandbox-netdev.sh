#!/bin/bash
# Network devices in a sandbox pod (unishim.io/isolation: sandbox), through
# the real CRI: the guest kernel loads their modules on demand, as a stock
# host kernel does (the agent is its modprobe helper, docs/guest.md).
#  - a container with only CAP_NET_ADMIN, first in a fresh VM (so its
#    requests load the modules), and a privileged container in another pod
#    create a bridge (brctl's ioctl and rtnetlink), a veth pair, a dummy, a
#    vxlan, a vlan and a macvlan
#  - a container without CAP_NET_ADMIN is refused ("not permitted"), as on
#    a host
#  - a device whose module the image does not ship fails, and the helper
#    says so in the kernel log; a file a privileged container puts at the
#    helper's path in its own root is not what the kernel runs
#  - rm leaves nothing of the pods
# Not covered: iptables/nft (the test image is busybox, which has neither).
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
IT_CRI=1
command -v qemu-system-x86_64 >/dev/null || it_skip "qemu-system-x86_64 missing (apt package qemu-system-x86)"
it_setup
SB='{"unishim.io/isolation": "sandbox"}'
IDS=()
PODS=()

# pod NAME PRIVILEGED CONTAINERS: runs a sandbox pod and records it.
pod() { # NAME PRIVILEGED CONTAINERS
        run_pod "$1" unishim "$SB" "{\"privileged\": $2}" "$3"
}
ctr() { # NAME EXTRA-JSON
        jq -cn --arg n "$1" --arg img "$CRI_TEST_IMAGE" --argjson x "$2" \
                '{name: $n, image: $img, command: ["sleep", "3600"]} + $x'
}

# One line per device kind: "KIND ok" or "KIND failed: ERROR". The pod's
# containers share its network namespace: names carry a prefix.
NETDEVS='p=$1
try() { k=$1; shift; if o=$("$@" 2>&1); then echo "$k ok"; else echo "$k failed: $o"; fi; }
try brctl brctl addbr ${p}b0
try bridge ip link add ${p}br type bridge
try veth ip link add ${p}v0 type veth peer name ${p}v1
try dummy ip link add ${p}d0 type dummy
try vxlan ip link add ${p}vx type vxlan id 42 dstport 4789
try vlan ip link add link ${p}d0 name ${p}d0.5 type vlan id 5
try macvlan ip link add ${p}mv link ${p}d0 type macvlan
try enslave ip link set ${p}v0 master ${p}br
try up ip link set ${p}br up'
WANT=$(printf '%s ok\n' brctl bridge veth dummy vxlan vlan macvlan enslave up)

pod nd-admin false "[$(ctr admin '{"add_capabilities": ["NET_ADMIN"]}'), $(ctr plain '{}')]"
out_rc out rc ectl exec nd-admin -c admin -- sh -c "$NETDEVS" sh a
expect_eq "CAP_NET_ADMIN only, fresh guest: every device kind is created (modules loaded on demand)" "$WANT" "$out"
out_rc out rc ectl exec nd-admin -c admin -- ip -o link show
for d in ab0 abr ad0 avx ad0.5 amv; do
        expect_match "CAP_NET_ADMIN only: $d is listed" "[0-9]+: $d[:@]" "$out"
done
expect_match "CAP_NET_ADMIN only: the veth is in the bridge" "master abr" "$(grep -E ': av0[:@]' <<<"$out" || true)"
out_rc out rc ectl exec nd-admin -c plain -- ip link add pd0 type dummy
[ "$rc" != 0 ] && [[ $out = *"not permitted"* ]] && pass "without CAP_NET_ADMIN: refused ($out)" ||
        fail "without CAP_NET_ADMIN: rc $rc: $out"

pod nd-priv true "[$(ctr priv '{"privileged": true}')]"
out_rc out rc ectl exec nd-priv -c priv -- sh -c "$NETDEVS" sh p
expect_eq "privileged: every device kind is created" "$WANT" "$out"
out_rc out rc ectl exec nd-priv -c priv -- cat /proc/sys/kernel/modprobe
expect_eq "the kernel's modprobe helper is the agent's" "/run/modules/modprobe" "$out"
# A helper of the container's own at that path, in its own root: the
# kernel resolves the path in the agent's root and never runs this one.
out_rc out rc ectl exec nd-priv -c priv -- sh -c 'mkdir -p /run/modules &&
        printf "#!/bin/sh\necho UNISHIM-HIJACK >/dev/kmsg\n" >/run/modules/modprobe &&
        chmod 755 /run/modules/modprobe && ! ip link add pc0 type vcan 2>/dev/null && dmesg'
expect_match "a module the image lacks: the helper says so in the kernel log" \
        "unishim-modprobe: module rtnl-link-vcan: not in the guest image" "$out"
expect_no_match "the container's file at the helper's path did not run" "UNISHIM-HIJACK" "$out"
expect_no_match "no module failed to load" "unishim-modprobe: .*load module" "$out"

for p in "${PODS[@]}"; do
        out_rc out rc ectl rm --timeout 0 "$p"
        expect_eq "rm $p" 0 "$rc"
done
wait_until 15 outputs_nothing sandbox_leftovers "${IDS[@]}" || true
expect_eq "nothing of the pods left (shim, QEMU, virtiofsd, dirs, mounts, cgroups)" "" "$(sandbox_leftovers "${IDS[@]}")"

it_finish
