#!/bin/bash
# kill -9 of a pod's shim, for a container pod and a sandbox pod: containerd
# sees the shim go, reports the tasks exited and runs `shim delete` for each;
# afterwards nothing of the pod is left on the host (no container process,
# QEMU, virtiofsd, /run/unishim/<namespace>/<id>, share or rootfs bind,
# cgroup, tap, virtiofsd's uid range slot), and the pods can still be
# removed through the CRI.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
IT_CRI=1
command -v qemu-system-x86_64 >/dev/null || it_skip "qemu-system-x86_64 missing (apt package qemu-system-x86)"
it_setup
TAPS_BEFORE=$(sandbox_taps)

mkdir -p "$IT_TMP/vol"
f=$(it_pod kc.json '{name: "kc", runtime_handler: "unishim",
        containers: [{name: "app", image: $img, command: ["sleep", "3600"]}]}')
out_rc out rc ectl run "$f"
expect_eq "run container pod kc" 0 "$rc"
f=$(it_pod ks.json --arg vol "$IT_TMP/vol" '{name: "ks", runtime_handler: "unishim",
        annotations: {"unishim.io/isolation": "sandbox"},
        containers: [{name: "a", image: $img, command: ["sleep", "3600"],
                      mounts: [{host_path: $vol, container_path: "/data", readonly: true}]},
                     {name: "b", image: $img, command: ["sleep", "3600"]}]}')
out_rc out rc ectl run "$f"
expect_eq "run sandbox pod ks" 0 "$rc"
[ "$rc" = 0 ] || echo "# $out"
idc=$(pod_id kc)
ids=$(pod_id ks)
ns_s=$(pod_netns "$(pod_ip ks)")
chains() { nsenter --net="$ns_s" iptables-save 2>/dev/null | grep -c UNISHIM- || true; }
[ "$(chains)" -gt 0 ] && pass "the sandbox pod's netns has netplumb's rules" || fail "no UNISHIM- rules in $ns_s"
# The container pod's sleep (the sandbox pod's run in its VM): its task's pid.
ca=$(ctr_id kc app)
PIDS_BEFORE=$(timeout 30 ctr -a "$ENV_ADDR" -n k8s.io tasks ls 2>/dev/null | awk -v id="$ca" '$1 == id { print $2 }')
[ -n "$PIDS_BEFORE" ] && pass "the container pod's process is $PIDS_BEFORE" || fail "no task pid for $ca"
shim_c=$(pod_shim_pid "$idc")
shim_s=$(pod_shim_pid "$ids")
q=$(sandbox_qemu_pid "$ids")
[ -n "$shim_c" ] && [ -n "$shim_s" ] && [ -n "$q" ] && pass "found both shims ($shim_c, $shim_s) and the QEMU ($q)" ||
        fail "shims '$shim_c' '$shim_s', QEMU '$q'"
[ -d "$(echo /run/unishim/*/"$ids")/mounts" ] && pass "the sandbox pod's share exists" || fail "no share of $ids"
# Its virtiofsd's uid range: a slot file it holds locked, recorded in its
# state dir for shim delete.
slot=$(cat "$(echo /run/unishim/*/"$ids")/uid-slot" 2>/dev/null || true)
[ -n "$slot" ] && [ -e "/run/unishim/.uid-slots/$slot" ] && pass "the sandbox pod holds uid range slot $slot" ||
        fail "no uid range slot for $ids: '$slot'"

kill -KILL "$shim_c" "$shim_s"
exited() {
        [ "$(ctr_state kc app)" = Exited ] && [ "$(ctr_state ks a)" = Exited ] &&
                [ "$(ctr_state ks b)" = Exited ]
}
wait_until 60 exited && pass "every container reported Exited after kill -9 of the shims" ||
        fail "containers after kill -9 of the shims: kc/app=$(ctr_state kc app) ks/a=$(ctr_state ks a) ks/b=$(ctr_state ks b)"
# (the CRI's own shm mount of the sandbox stays until RemovePodSandbox)
ours() { sandbox_leftovers "$@" | grep -v '/io.containerd.grpc.v1.cri/sandboxes/[^/]*/shm$' || true; }
wait_until 30 outputs_nothing ours "$ids" || true
expect_eq "nothing of the sandbox pod left after shim delete (before any CRI call)" "" "$(ours "$ids")"
[ -n "$slot" ] && { [ ! -e "/run/unishim/.uid-slots/$slot" ] || grep -qsx "$slot" /run/unishim/*/*/uid-slot; } &&
        pass "shim delete removed its uid range slot file (or another pod holds it now)" ||
        fail "uid range slot $slot left behind"
expect_eq "the sandbox pod's tap is gone" "$TAPS_BEFORE" "$(sandbox_taps)"
expect_eq "netplumb's rules are gone from the pod netns (still there until rm)" 0 "$(chains)"
left=""
for p in $PIDS_BEFORE; do
        [ -d "/proc/$p" ] && [ "$(awk '{print $3}' "/proc/$p/stat" 2>/dev/null)" != Z ] && left="$left $p"
done
expect_eq "no container process of the container pod left" "" "$left"

for p in kc ks; do
        out_rc out rc ectl rm --timeout 0 "$p"
        expect_eq "rm $p after its shim died" 0 "$rc"
        [ "$rc" = 0 ] || echo "# $out"
done
wait_until 15 outputs_nothing sandbox_leftovers "$ids" "$idc" || true
expect_eq "nothing of the pods left after rm" "" "$(sandbox_leftovers "$ids" "$idc")"
expect_eq "no pod listed" "" "$(ectl ps -q)"

it_finish
