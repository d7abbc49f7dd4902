#!/bin/bash
# A sandbox pod whose VM dies: `kill -9` of the pod's QEMU (the
# qemu-system-x86_64 with `-name unishim-<sandbox id>`) → within a bounded
# time the CRI reports the pod's containers EXITED with a non-zero exit code
# (containerd's /tasks/exit events carry it: ContainerStatus.exit_code), and
# the pod can still be stopped and removed, leaving no shim, virtiofsd,
# /run/unishim/<namespace>/<id>, mount, cgroup or netns behind. The same
# when only its virtiofsd is killed: the guest has lost its files, the pod
# is declared dead. And when root in the guest unbinds the virtio-serial
# driver, closing the agent's channels under it.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
IT_CRI=1
command -v qemu-system-x86_64 >/dev/null || it_skip "qemu-system-x86_64 missing (apt package qemu-system-x86)"
it_setup
IT_CLEANUP_HOOK=events_stop
BOUND_S=20

f=$(it_pod crash.json '{name: "crash", runtime_handler: "unishim",
        annotations: {"unishim.io/isolation": "sandbox"},
        containers: [{name: "a", image: $img, command: ["sleep", "3600"]},
                     {name: "b", image: $img, command: ["/bin/sh", "-c", "trap \"\" TERM; while :; do sleep 1; done"]}]}')
out_rc out rc ectl run "$f"
expect_eq "run 2-container sandbox pod" 0 "$rc"
[ "$rc" = 0 ] || echo "# $out"
id=$(pod_id crash)
ca=$(ctr_id crash a)
cb=$(ctr_id crash b)
q=$(sandbox_qemu_pid "$id")
[ -n "$q" ] && pass "found the pod's QEMU (pid $q)" || fail "no qemu-system-x86_64 with -name unishim-$id"
expect_eq "container a Running" Running "$(ctr_state crash a)"

events_start "$IT_TMP/events"
t0=$(date +%s%N)
[ -n "$q" ] && kill -KILL "$q"
exited() { [ "$(ctr_state crash a)" = Exited ] && [ "$(ctr_state crash b)" = Exited ]; }
if wait_until "$BOUND_S" exited; then
        ms=$((($(date +%s%N) - t0) / 1000000))
        pass "both containers reported Exited ${ms} ms after kill -9 of QEMU"
else
        fail "containers not Exited ${BOUND_S}s after kill -9 of QEMU: a=$(ctr_state crash a) b=$(ctr_state crash b)"
fi
both_exit_events() { event_seen /tasks/exit "$ca" "$IT_TMP/events" && event_seen /tasks/exit "$cb" "$IT_TMP/events"; }
wait_until 60 both_exit_events || true
events_stop
sa=$(event_exit_status "$ca" "$IT_TMP/events")
sb=$(event_exit_status "$cb" "$IT_TMP/events")
echo "# exit codes: a=$sa b=$sb; /tasks/exit events:"
grep -F /tasks/exit "$IT_TMP/events" | sed 's/^/#   /' || true
[[ $sa =~ ^[1-9][0-9]*$ ]] && pass "container a: non-zero exit code ($sa)" || fail "container a: exit code '$sa'"
[[ $sb =~ ^[1-9][0-9]*$ ]] && pass "container b: non-zero exit code ($sb)" || fail "container b: exit code '$sb'"
wait_until 10 outputs_nothing sandbox_procs "$id" || true
expect_eq "no QEMU/virtiofsd of the pod left after the crash" "" "$(sandbox_procs "$id")"
out_rc out rc ectl exec crash -c a -- true
[ "$rc" != 0 ] && pass "ExecSync into the dead VM fails (rc $rc)" || fail "ExecSync into a dead VM succeeded"

t0=$(date +%s%N)
out_rc out rc ectl rm --timeout 2 crash
ms=$((($(date +%s%N) - t0) / 1000000))
expect_eq "rm of the crashed pod (${ms} ms; a hang ends in ectl's timeout)" 0 "$rc"
[ "$rc" = 0 ] || echo "# $out"
wait_until 10 outputs_nothing sandbox_leftovers "$id" || true
expect_eq "nothing of the pod left" "" "$(sandbox_leftovers "$id")"
expect_eq "no pod listed" "" "$(ectl ps -q)"
expect_eq "no netns bind mount" "" "$(ls -A "$ENV_STATE/io.containerd.grpc.v1.cri/netns" 2>/dev/null || true)"

# dead_pod_gone NAME ID WHAT: the dead pod's processes are gone, rm works,
# and nothing of it is left.
dead_pod_gone() {
        wait_until 10 outputs_nothing sandbox_procs "$2" || true
        expect_eq "no QEMU/virtiofsd of the pod left after $3" "" "$(sandbox_procs "$2")"
        out_rc out rc ectl rm --timeout 2 "$1"
        expect_eq "rm of the pod after $3" 0 "$rc"
        wait_until 10 outputs_nothing sandbox_leftovers "$2" || true
        expect_eq "nothing of it left" "" "$(sandbox_leftovers "$2")"
}

# ---- its virtiofsd killed while QEMU runs ----
# The guest has lost every file of its containers: the pod is dead, as when
# QEMU dies, not left running on a broken share. (A 9p pod, the template
# path's, has no virtiofsd: QEMU, killed above, serves its files; this pod
# is a virtio-fs one on either path.)
sandbox_virtiofs_config
run_sandbox_sleep_pod fsd a
sandbox_virtiofs_restore
idf=$(pod_id fsd)
vfs=$(sandbox_procs "$idf" | awk '/virtiofsd/ {print $1}' | head -n1)
[ -n "$vfs" ] && pass "found the pod's virtiofsd ($vfs)" || fail "no virtiofsd for $idf"
[ -n "$vfs" ] && kill -KILL "$vfs"
fsd_exited() { [ "$(ctr_state fsd a)" = Exited ]; }
wait_until "$BOUND_S" fsd_exited && pass "container reported Exited after kill -9 of virtiofsd" ||
        fail "container after kill -9 of virtiofsd: $(ctr_state fsd a)"
dead_pod_gone fsd "$idf" "virtiofsd died"

# ---- the guest closes the agent's channels ----
# Root in the guest (a privileged container) unbinds the virtio-serial
# driver: the agent's ports vanish under it. Whatever the guest does next,
# the host must not wait on it: the pod is declared dead, its containers
# reported exited, and nothing is left after rm.
f=$(it_pod closer.json '{name: "closer", runtime_handler: "unishim",
        annotations: {"unishim.io/isolation": "sandbox"}, privileged: true,
        containers: [{name: "root", image: $img, privileged: true, command: ["sleep", "3600"]},
                     {name: "app", image: $img, command: ["sleep", "3600"]}]}')
out_rc out rc ectl run "$f"
expect_eq "run a privileged sandbox pod" 0 "$rc"
idc=$(pod_id closer)
unbind='d=/sys/bus/virtio/drivers/virtio_console; n=0
for dev in "$d"/virtio*; do [ -e "$dev" ] && n=$((n + 1)); done
[ "$n" -gt 0 ] || { echo "no virtio_console device bound"; exit 1; }
echo "unbinding $n device(s)"
setsid sh -c "sleep 1; for dev in $d/virtio*; do echo \${dev##*/} > $d/unbind; done" >/dev/null 2>&1 &'
t0=$(date +%s%N)
out_rc out rc ectl exec -t 30 closer -c root -- sh -c "$unbind"
echo "# guest: $out"
expect_match "the guest's root finds the agent's virtio-serial device" "unbinding [1-9]" "$out"
closer_exited() { [ "$(ctr_state closer root)" = Exited ] && [ "$(ctr_state closer app)" = Exited ]; }
wait_until 120 closer_exited &&
        pass "both containers reported Exited $((($(date +%s%N) - t0) / 1000000)) ms after the guest closed the channels" ||
        fail "containers after the guest closed the channels: root=$(ctr_state closer root) app=$(ctr_state closer app)"
dead_pod_gone closer "$idc" "the guest closed the channels"

# The environment still runs sandbox pods afterwards.
run_sandbox_sleep_pod after-crash a
ida=$(pod_id after-crash)
out_rc out rc ectl rm --timeout 0 after-crash
expect_eq "rm it" 0 "$rc"
wait_until 10 outputs_nothing sandbox_leftovers "$ida" || true
expect_eq "nothing of it left" "" "$(sandbox_leftovers "$ida")"

it_finish
