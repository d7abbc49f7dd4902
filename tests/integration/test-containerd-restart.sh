#!/bin/bash
# containerd paused, then restarted, while unishim pods run (a container pod
# and a sandbox pod):
#  - containers that exit while containerd is paused have their /tasks/exit
#    delivered once it continues: none lost (a publisher that gives up after
#    a few seconds would lose them), in the order they exited, with their
#    exit codes; meanwhile the shim keeps answering the Task API
#  - after containerd is killed and started again, it reconnects to the
#    running shims: exec, stop and rm still work, and nothing is left
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
IT_CRI=1
command -v qemu-system-x86_64 >/dev/null || it_skip "qemu-system-x86_64 missing (apt package qemu-system-x86)"
it_setup
CPID=
resume_containerd() { [ -n "$CPID" ] && kill -CONT "$CPID" 2>/dev/null; events_stop; }
IT_CLEANUP_HOOK=resume_containerd
task_api() { timeout -k 5 "$CTR_TIMEOUT" "$UNISHIM_BUILD_DIR/tests/task-api" "$1" k8s.io "${@:2}"; }

T=$IT_TMP/trig
mkdir -p "$T"
# A container that exits with code $2 once the file $1 appears in /t.
waiter() { echo '{"name": "'"$3"'", "image": "'"$CRI_TEST_IMAGE"'", "command": ["/bin/sh", "-c",
        "while [ ! -e /t/'"$1"' ]; do sleep 0.1; done; exit '"$2"'"],
        "mounts": [{"host_path": "'"$T"'", "container_path": "/t"}]}'; }
SLEEPER='{"name": "z", "image": "'"$CRI_TEST_IMAGE"'", "command": ["sleep", "3600"]}'
f=$(it_pod rc.json --argjson c "[$(waiter go1 7 x), $(waiter go2 8 y), $SLEEPER]" \
        '{name: "rc", runtime_handler: "unishim", containers: $c}')
out_rc out rc ectl run "$f"
expect_eq "run container pod rc" 0 "$rc"
f=$(it_pod rs.json --argjson c "[$(waiter go3 9 s), $SLEEPER]" \
        '{name: "rs", runtime_handler: "unishim", annotations: {"unishim.io/isolation": "sandbox"}, containers: $c}')
out_rc out rc ectl run "$f"
expect_eq "run sandbox pod rs" 0 "$rc"
[ "$rc" = 0 ] || echo "# $out"
idc=$(pod_id rc)
ids=$(pod_id rs)
cx=$(ctr_id rc x)
cy=$(ctr_id rc y)
cs=$(ctr_id rs s)
cz=$(ctr_id rc z)
sock=$(sed 's|^unix://||' "$ENV_STATE/io.containerd.runtime.v2.task/k8s.io/$cz/address" 2>/dev/null || true)

# ---- containerd paused while tasks exit ----
events_start "$IT_TMP/events"
CPID=$(env_containerd_pid)
kill -STOP "$CPID"
gone() { ! pgrep -f "/t/$1 \]" >/dev/null; }
touch "$T/go1"
wait_until 30 gone go1 && pass "x exited while containerd is paused" || fail "x still runs"
touch "$T/go2"
wait_until 30 gone go2 && pass "y exited while containerd is paused" || fail "y still runs"
touch "$T/go3"
# Longer than a publisher that tries twice for 5 s would wait before it
# dropped an event (not a condition of the pass: the events must come
# whatever the pause).
sleep 12
t0=$(date +%s%N)
out_rc out rc task_api "$sock" state "$cz"
ms=$((($(date +%s%N) - t0) / 1000000))
expect_match "the pod's shim answers State while containerd is paused" "^[0-9]+ 2 " "$out"
echo "# State answered in ${ms} ms with containerd paused and exit events pending"
kill -CONT "$CPID"
CPID=
delivered() { grep -F /tasks/exit "$IT_TMP/events" | grep -F "\"container_id\":\"$1\"" >/dev/null; }
wait_until 60 delivered "$cs" || true
for c in "$cx" "$cy" "$cs"; do
        delivered "$c" && pass "the /tasks/exit of $c reached containerd" || fail "no /tasks/exit for $c"
done
expect_eq "x's exit code" 7 "$(event_exit_status "$cx" "$IT_TMP/events")"
expect_eq "y's exit code" 8 "$(event_exit_status "$cy" "$IT_TMP/events")"
expect_eq "s's exit code (in the VM)" 9 "$(event_exit_status "$cs" "$IT_TMP/events")"
first=$(grep -F /tasks/exit "$IT_TMP/events" | grep -oE "\"container_id\":\"($cx|$cy)\"" | head -n1)
expect_eq "x's exit came before y's, as they exited" "\"container_id\":\"$cx\"" "$first"
events_stop
y_exited() { [ "$(ctr_state rc y)" = Exited ]; }
wait_until 15 y_exited || true
expect_eq "the CRI has y exited" Exited "$(ctr_state rc y)"

# ---- containerd killed and started again ----
old=$(env_containerd_pid)
kill -KILL "$old"
dead() { [ ! -d "/proc/$1" ] || [ "$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null)" = Z ]; }
wait_until 30 dead "$old" && pass "containerd killed" || fail "containerd $old still runs"
env_start
[ "$(env_containerd_pid)" != "$old" ] && pass "containerd started again" || fail "containerd not restarted"
out_rc out rc ectl exec rc -c z -- echo alive
expect_eq "exec in the container pod after the restart" alive "$out"
out_rc out rc ectl exec rs -c z -- echo alive
expect_eq "exec in the sandbox pod after the restart" alive "$out"
for p in rc rs; do
        out_rc out rc ectl rm --timeout 2 "$p"
        expect_eq "rm $p after the restart" 0 "$rc"
        [ "$rc" = 0 ] || echo "# $out"
done
wait_until 15 outputs_nothing sandbox_leftovers "$idc" "$ids" || true
expect_eq "nothing of the pods left" "" "$(sandbox_leftovers "$idc" "$ids")"

it_finish
