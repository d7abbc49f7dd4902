#!/bin/bash
# Sandbox pods leave nothing behind: SANDBOX_CYCLES (20) × run + rm of a
# one-container sandbox pod through the CRI, then no qemu-system-x86_64 or
# virtiofsd of those pods, no /run/unishim/<namespace>/<id>, no mount containing
# /run/unishim, no new us-tap0 in any network namespace, no cgroup dir of the
# pods, no shim, no netns bind mount. Also the ctr path: `ctr run --rm
# --annotation unishim.io/isolation=sandbox` prints the guest kernel and the
# exit code propagates.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
IT_CRI=1
command -v qemu-system-x86_64 >/dev/null || it_skip "qemu-system-x86_64 missing (apt package qemu-system-x86)"
it_setup
CYCLES=${SANDBOX_CYCLES:-20}
HOST_KERNEL=$(host_kernel)
# Other sandbox pods on this machine (other test runs) may own taps: only
# new ones count.
TAPS_BEFORE=$(sandbox_taps | sort)
unishim_mounts() { awk 'index($5, "/run/unishim/") == 1 { print $5 }' /proc/self/mountinfo | sort; }
# A pod of another environment running meanwhile (its shim is alive) is not
# a leak of ours: /run/unishim/<namespace>/<pod id>/... of a live shim.
others_live() {
        local m id
        while read -r m; do
                id=${m#/run/unishim/*/}
                id=${id%%/*}
                pgrep -f "containerd-shim-unishim-v2 .*-id $id( |$)" >/dev/null || echo "$m"
        done
}
MOUNTS_BEFORE=$(unishim_mounts)

# ---- ctr ----
rt=$RUNTIME
out_rc out rc ectr run --rm --runtime "$rt" --annotation unishim.io/isolation=sandbox "$TEST_IMAGE" "$(it_id)" uname -r
expect_eq "ctr run (sandbox) uname -r: exit 0" 0 "$rc"
[ -n "$out" ] && [ "$out" != "$HOST_KERNEL" ] && [[ $out =~ ^[0-9]+\.[0-9]+ ]] &&
        pass "ctr run (sandbox) prints the guest kernel ($out), not the host's ($HOST_KERNEL)" ||
        fail "ctr run (sandbox) uname -r: '$out' (host $HOST_KERNEL)"
out_rc out rc ectr run --rm --runtime "$rt" --annotation unishim.io/isolation=sandbox "$TEST_IMAGE" "$(it_id)" sh -c 'echo in-vm; exit 5'
expect_eq "ctr run (sandbox): exit code 5 propagates" 5 "$rc"
expect_eq "ctr run (sandbox): output" in-vm "$out"
# An OOM kill inside the guest (the container's memory cgroup there) reaches
# containerd as /tasks/oom, as on the host.
events_start "$IT_TMP/oom-events"
oom_id=$(it_id)
out_rc out rc ectr run --rm --runtime "$rt" --memory-limit 33554432 \
        --annotation unishim.io/isolation=sandbox "$TEST_IMAGE" "$oom_id" sh -c 'tail /dev/zero'
expect_eq "ctr run (sandbox) over its memory limit: killed (137)" 137 "$rc"
# (the event may follow ctr's return: a hang guard, not a wait)
wait_until 30 event_seen /tasks/oom "$oom_id" "$IT_TMP/oom-events" || true
events_stop
if grep -F '/tasks/oom' "$IT_TMP/oom-events" | grep -F "\"container_id\":\"$oom_id\"" >/dev/null; then
        pass "guest OOM kill reported as /tasks/oom"
else
        fail "no /tasks/oom event for $oom_id: $(grep -o '/tasks/[a-z-]*' "$IT_TMP/oom-events" | tr '\n' ' ')"
fi
# (an empty list only counts from a ctr that worked)
left=$(ectr tasks ls -q 2>/dev/null) && rc=0 || rc=$?
expect_eq "ctr: tasks ls: exit 0" 0 "$rc"
expect_eq "ctr: no task left" "" "$left"
left=$(ectr containers ls -q 2>/dev/null) && rc=0 || rc=$?
expect_eq "ctr: containers ls: exit 0" 0 "$rc"
expect_eq "ctr: no container left" "" "$left"

# ---- CRI run/rm cycles ----
IDS=()
ok=0
t0=$(date +%s)
for ((i = 0; i < CYCLES; i++)); do
        f=$(it_pod "cyc$i.json" --arg n "cyc$i" '{name: $n, runtime_handler: "unishim",
                annotations: {"unishim.io/isolation": "sandbox"},
                containers: [{name: "app", image: $img, command: ["sleep", "3600"]}]}')
        if ! out=$(ectl run "$f" 2>&1); then
                fail "cycle $i: run: $out"
                ectl rm --timeout 0 "cyc$i" >/dev/null 2>&1 || true
                continue
        fi
        IDS+=("$(head -n1 <<<"$out")")
        if ! out=$(ectl rm --timeout 0 "cyc$i" 2>&1); then
                fail "cycle $i: rm: $out"
                continue
        fi
        ok=$((ok + 1))
done
expect_eq "$CYCLES sandbox pod run/rm cycles ($(($(date +%s) - t0)) s)" "$CYCLES" "$ok"
wait_until 15 outputs_nothing sandbox_leftovers "${IDS[@]}" || true
expect_eq "no shim, QEMU, virtiofsd, /run/unishim/<namespace>/<id>, mount or cgroup of the pods" "" "$(sandbox_leftovers "${IDS[@]}")"
expect_eq "no shim of this environment" "" "$(env_shim_pids)"
expect_eq "no process in the pods' cgroups" "" "$(env_cgroup_pids)"
expect_eq "no cgroup dir under the pods' parent" "" "$(find /sys/fs/cgroup/*/"$ENV_POD_CGROUP" -mindepth 1 -type d 2>/dev/null || true)"
# (only new ones: other sandbox pods on the machine come and go meanwhile)
expect_eq "no new mount under /run/unishim/" "" "$(comm -13 <(echo "$MOUNTS_BEFORE") <(unishim_mounts) | grep . | others_live || true)"
expect_eq "no new us-tap0 in any network namespace" "" "$(comm -13 <(echo "$TAPS_BEFORE") <(sandbox_taps | sort) | grep . || true)"
expect_eq "no netns bind mount (containerd removed them)" "" "$(ls -A "$ENV_STATE/io.containerd.grpc.v1.cri/netns" 2>/dev/null || true)"
expect_eq "no pod listed" "" "$(ectl ps -q)"
expect_eq "no IP left allocated" "" "$(ls "$ENV_STATE/cni/ipam/$ENV_CNI_NET" 2>/dev/null | grep -v -e lock -e last_reserved || true)"

it_finish
