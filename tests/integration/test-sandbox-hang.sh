#!/bin/bash
# A sandbox pod whose guest takes calls and never answers (its QEMU is
# SIGSTOPped: the agent's port accepts, nothing comes back):
#  - the pod's shim keeps serving: a Stats of a container in the guest waits
#    for the guest, and meanwhile the same shim answers Connect and Stats of
#    the VM task (the host's own cgroup), on the same connection, first
#  - after the operator's sandbox.agent_timeout_ms the pod is declared dead:
#    its containers are reported exited, its VM and everything on the host go
#  - another sandbox pod starts while the guest hangs: its start time is
#    printed next to a reference start of the same pod before the hang
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
IT_CRI=1
command -v qemu-system-x86_64 >/dev/null || it_skip "qemu-system-x86_64 missing (apt package qemu-system-x86)"
it_setup
Q=
resume_qemu() { [ -z "$Q" ] || kill -CONT "$Q" 2>/dev/null || true; }
IT_CLEANUP_HOOK=resume_qemu
task_api() { timeout -k 5 "$CTR_TIMEOUT" "$UNISHIM_BUILD_DIR/tests/task-api" "$1" k8s.io "${@:2}"; }
# Long enough for another pod's start to fall inside the hang (the start
# time is printed, not asserted; the hang's deadline is waited for).
TIMEOUT_MS=15000
# The unishim-sandbox handler's operator config is read per pod.
jq --argjson t "$TIMEOUT_MS" '.sandbox.agent_timeout_ms = $t' "$ENV_SANDBOX_CONFIG" >"$IT_TMP/cfg"
cp "$IT_TMP/cfg" "$ENV_SANDBOX_CONFIG"

f=$(it_pod hang.json '{name: "hang", runtime_handler: "unishim-sandbox",
        containers: [{name: "app", image: $img, command: ["sleep", "3600"]},
                     {name: "b", image: $img, command: ["sleep", "3600"]}]}')
out_rc out rc ectl run "$f"
expect_eq "run the sandbox pod" 0 "$rc"
[ "$rc" = 0 ] || echo "# $out"
id=$(pod_id hang)
app=$(ctr_id hang app)
sock=$(sed 's|^unix://||' "$ENV_STATE/io.containerd.runtime.v2.task/k8s.io/$app/address" 2>/dev/null || true)
Q=$(sandbox_qemu_pid "$id")
[ -n "$Q" ] && pass "the pod's QEMU is $Q" || fail "no QEMU for $id"
out_rc out rc task_api "$sock" stats "$app"
expect_eq "Stats of a container in the guest, guest healthy" 0 "$rc"

# A reference start of another pod of the same handler, before the hang.
f=$(it_pod other.json '{name: "other", runtime_handler: "unishim-sandbox",
        containers: [{name: "app", image: $img, command: ["sleep", "3600"]}]}')
start_other() {
        local t0 rc=0
        t0=$(date +%s%N)
        ectl run "$f" >"$IT_TMP/other.out" 2>&1 || rc=$?
        echo "$rc $((($(date +%s%N) - t0) / 1000000))"
}
read -r rc ref_ms < <(start_other)
expect_eq "a reference sandbox pod runs (before the hang)" 0 "$rc"
out_rc out rc ectl rm --timeout 0 other
expect_eq "rm the reference pod" 0 "$rc"

kill -STOP "$Q"
# The same pod starts again while the guest hangs, beside the probe.
start_other >"$IT_TMP/other.start" &
other_job=$!
out_rc out rc task_api "$sock" order-probe "$app" "$id"
echo "$out" | sed 's/^/# probe: /'
expect_match "Connect answered before the Stats that waits for the guest" \
        "^connect 0"$'\n'"stats-fast 0"$'\n'"stats-slow -" "$out"
expect_match "the Stats that waited for the guest failed, not hung" "stats-slow -[0-9]+ " "$out"
exited() { [ "$(ctr_state hang app)" = Exited ] && [ "$(ctr_state hang b)" = Exited ]; }
wait_until 60 exited && pass "the dead pod's containers are reported exited" ||
        fail "after the agent timeout: app=$(ctr_state hang app) b=$(ctr_state hang b)"
wait_until 30 outputs_nothing sandbox_procs "$id" || true
expect_eq "the dead pod's QEMU and virtiofsd are gone" "" "$(sandbox_procs "$id")"
Q=

# The pod started while the guest hung runs and answers.
wait "$other_job" || true
read -r rc hang_ms <"$IT_TMP/other.start" || rc=none
echo "# another sandbox pod started in $hang_ms ms while the guest hung (its deadline: $TIMEOUT_MS ms); ${ref_ms} ms before the hang"
expect_eq "another sandbox pod runs (started while the guest hung)" 0 "$rc"
[ "$rc" = 0 ] || sed 's/^/# /' "$IT_TMP/other.out"
out_rc out rc ectl exec other -- echo fine
expect_eq "exec in the other pod" fine "$out"
ido=$(pod_id other)

for p in hang other; do
        out_rc out rc ectl rm --timeout 0 "$p"
        expect_eq "rm $p" 0 "$rc"
        [ "$rc" = 0 ] || echo "# $out"
done
wait_until 15 outputs_nothing sandbox_leftovers "$id" "$ido" || true
expect_eq "nothing of the pods left" "" "$(sandbox_leftovers "$id" "$ido")"

it_finish
