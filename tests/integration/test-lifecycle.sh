#!/bin/bash
# Task lifecycle through containerd: detached run, exec, ps, metrics,
# pause/resume, signals, exit status, OOM, pids limit, the task events, and
# that the shim is gone after delete.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
it_setup

# containerd's event stream of this namespace, for the whole test.
events=$IT_TMP/events.txt
timeout -k 5 600 ctr -a "$ENV_ADDR" -n "$ENV_NS" events >"$events" 2>&1 &
events_pid=$!
stop_events() { kill "$events_pid" 2>/dev/null || true; }
IT_CLEANUP_HOOK=stop_events
# Subscribed once an event of our own shows (the stream is not filtered by
# the namespace): an event before the subscription is not replayed.
wait_until 60 _events_seen "$events" "events-ready-$$-$RANDOM" ||
        echo "# ctr events showed nothing within 60 s"

# event_for TOPIC CONTAINER [EXEC_ID]: prints the JSON of the first matching
# event (for /tasks/exit, the one of the process EXEC_ID, default the init).
event_for() {
        local topic=$1 cid=$2 eid=${3:-$2}
        # A line: DATE TIME ZONE UTC NAMESPACE TOPIC JSON
        awk -v t="$topic" '$6 == t { $1 = $2 = $3 = $4 = $5 = $6 = ""; print }' "$events" |
                jq -c --arg c "$cid" --arg e "$eid" \
                        'select(.container_id == $c and (.id == null or .id == $e))' 2>/dev/null | head -n1
}
has_event() { [ -n "$(event_for "$@")" ]; }
# How long to wait for an event of CONTAINER: long if its task was ever
# created (the event may still come), short if not (it never will).
ev_wait() { has_event /tasks/create "$1" && echo 10 || echo 1; }
wait_event() { wait_until "$(ev_wait "$2")" has_event "$@"; }
exit_status_of() { # CONTAINER [EXEC_ID]
        wait_event /tasks/exit "$@" || true
        event_for /tasks/exit "$@" | jq -r '.exit_status // "none"'
}

# --- detached container, exec, ps, metrics, pause/resume --------------------
id=$(it_id)
out_rc out rc ectr run -d --runtime "$RUNTIME" "$TEST_IMAGE" "$id" \
        sh -c 'trap "exit 42" TERM; while :; do sleep 0.1; done'
expect_eq "ctr run -d: exit status" 0 "$rc"
wait_until 10 task_is "$id" RUNNING && pass "task is RUNNING" ||
        fail "task status: '$(task_status "$id")'"
init_pid=$(ectr tasks ls | awk -v id="$id" '$1 == id { print $2 }')
[[ $init_pid =~ ^[0-9]+$ ]] && [ -d "/proc/$init_pid" ] && pass "task pid $init_pid exists on the host" ||
        fail "task pid '$init_pid'"

out_rc out rc ectr tasks exec --exec-id e1 "$id" sh -c 'echo exec-out; exit 5'
expect_eq "exec: output" exec-out "$out"
expect_eq "exec: exit status" 5 "$rc"
expect_eq "exec: /tasks/exit event carries 5" 5 "$(exit_status_of "$id" e1)"
out_rc out rc ectr tasks exec --exec-id e2 --user 1000 --cwd /tmp "$id" sh -c 'echo $(id -u) $(pwd) $$'
expect_match "exec: user, cwd, own pid" '^1000 /tmp [0-9]+$' "$out"
out_rc out rc ectr tasks exec --exec-id e1 "$id" true
expect_eq "exec id e1 can be reused after it exited" 0 "$rc"

out_rc out rc ectr tasks ps "$id"
if [ "$rc" = 0 ] && awk 'NR > 1 { print $1 }' <<<"$out" | grep -qx "$init_pid"; then
        pass "ctr task ps lists the init pid"
else
        fail "ctr task ps: rc $rc, '$out'"
fi

out_rc out rc ectr tasks metrics "$id"
expect_match "metrics: memory usage" 'memory\.usage(_in_bytes)?[[:space:]]+[1-9][0-9]*' "$out"
expect_match "metrics: pids.current" 'pids\.current[[:space:]]+[1-9]' "$out"

out_rc out rc ectr tasks pause "$id"
expect_eq "pause: exit status" 0 "$rc"
expect_eq "paused task is PAUSED" PAUSED "$(task_status "$id")"
frozen=$(cat "/sys/fs/cgroup/freezer/$ENV_NS/$id/freezer.state" 2>/dev/null ||
        cat "/sys/fs/cgroup/unified/$ENV_NS/$id/cgroup.freeze" 2>/dev/null || echo unknown)
[[ $frozen = FROZEN || $frozen = 1 ]] && pass "cgroup is frozen" || fail "freezer state '$frozen'"
out_rc out rc ectr tasks resume "$id"
expect_eq "resume: exit status" 0 "$rc"
expect_eq "resumed task is RUNNING" RUNNING "$(task_status "$id")"
wait_event /tasks/paused "$id" && pass "/tasks/paused event" || fail "no /tasks/paused event"
wait_event /tasks/resumed "$id" && pass "/tasks/resumed event" || fail "no /tasks/resumed event"

shim_pid=$(env_shim_pid "$id")
[ -n "$shim_pid" ] && pass "shim of $id runs (pid $shim_pid)" || fail "no shim process for $id"

# SIGTERM reaches the init, whose handler exits 42.
out_rc out rc ectr tasks kill -s SIGTERM "$id"
expect_eq "kill -s SIGTERM: exit status" 0 "$rc"
expect_eq "init exited through its TERM handler (42)" 42 "$(exit_status_of "$id")"
wait_until 10 task_is "$id" STOPPED && pass "task is STOPPED" ||
        fail "task status after exit: '$(task_status "$id")'"
out_rc out rc ectr tasks delete "$id"
expect_eq "task delete: exit status" 0 "$rc"
ectr containers delete "$id" >/dev/null 2>&1 || fail "container delete"
for t in /tasks/create /tasks/start /tasks/exec-added /tasks/exec-started /tasks/exit /tasks/delete; do
        wait_event "$t" "$id" && pass "event $t" || fail "no $t event for $id"
done
if [ -n "$shim_pid" ]; then
        wait_until 10 test ! -d "/proc/$shim_pid" && pass "shim pid $shim_pid gone after delete" ||
                fail "shim pid $shim_pid still alive after delete"
fi
wait_until 10 no_shim_for "$id" && pass "no shim process for $id" ||
        fail "shim process(es) $(env_shim_pid "$id") for $id after delete"
[ ! -e "$(env_shim_socket "$id")" ] && pass "shim socket removed" ||
        fail "shim socket $(env_shim_socket "$id") left behind"

# SIGKILL: killed by a signal = 128 + 9.
id=$(it_id)
ectr run -d --runtime "$RUNTIME" "$TEST_IMAGE" "$id" sleep 1000 >/dev/null
wait_until 10 task_is "$id" RUNNING || true
ectr tasks kill -s SIGKILL "$id" >/dev/null 2>&1 || fail "kill -s SIGKILL failed"
expect_eq "SIGKILL: exit status 137" 137 "$(exit_status_of "$id")"
ectr tasks delete "$id" >/dev/null 2>&1 || true
ectr containers delete "$id" >/dev/null 2>&1 || true

# kill --all reaches processes beyond the init.
id=$(it_id)
ectr run -d --runtime "$RUNTIME" "$TEST_IMAGE" "$id" sh -c 'sleep 1000 & sleep 1000 & wait' >/dev/null
wait_until 10 task_is "$id" RUNNING || true
nprocs() { ectr tasks ps "$1" 2>/dev/null | awk 'NR > 1' | wc -l; }
has_nprocs() { [ "$(nprocs "$1")" = "$2" ]; }
wait_until 10 has_nprocs "$id" 3 || true
expect_eq "ps lists init and both children" 3 "$(nprocs "$id")"
ectr tasks kill -a -s SIGKILL "$id" >/dev/null 2>&1 || fail "kill -a failed"
expect_eq "kill -a: exit status 137" 137 "$(exit_status_of "$id")"
ectr tasks delete "$id" >/dev/null 2>&1 || true
ectr containers delete "$id" >/dev/null 2>&1 || true

# --- OOM --------------------------------------------------------------------
# tail buffers /dev/zero's never-ending first line: it allocates until the
# 16 MiB limit kills it.
id=$(it_id)
out_rc out rc ectr run --rm --runtime "$RUNTIME" --memory-limit 16777216 "$TEST_IMAGE" "$id" tail /dev/zero
expect_eq "memory limit hit: exit status 137" 137 "$rc"
wait_event /tasks/oom "$id" && pass "/tasks/oom event" || fail "no /tasks/oom event for $id"

# --- pids limit (ctr run has no flag for it: a full spec) -------------------
id=$(it_id)
# busybox sh exits 2 with "can't fork" when a fork fails. sh + 7 sleeps > 6.
forker='["sh", "-c", "sleep 2 & sleep 2 & sleep 2 & sleep 2 & sleep 2 & sleep 2 & sleep 2 & echo all-forked; wait"]'
spec=$(it_spec "$id" "$forker")
out_rc out rc srun "$id" "$spec"
expect_eq "without a pids limit: 7 forks work" all-forked "$out"
id=$(it_id)
spec=$(it_spec "$id" "$forker" '.linux.resources.pids = {limit: 6}')
out_rc out rc srun "$id" "$spec"
[ "$rc" != 0 ] && [[ $out == *"can't fork"* ]] && pass "pids limit 6: the 6th fork fails" ||
        fail "pids limit 6: exit $rc, '$out'"
id=$(it_id)
spec=$(it_spec "$id" '["sleep", "1000"]' '.linux.resources.pids = {limit: 6}')
ectr run -d --runtime "$RUNTIME" --config "$spec" "$id" >/dev/null 2>&1 || fail "run -d --config failed"
max=$(cat "/sys/fs/cgroup/pids/$ENV_NS/$id/pids.max" 2>/dev/null ||
        cat "/sys/fs/cgroup/unified/$ENV_NS/$id/pids.max" 2>/dev/null || true)
expect_eq "pids.max of the container's cgroup" 6 "$max"
ectr tasks kill -s SIGKILL "$id" >/dev/null 2>&1 || true
exit_status_of "$id" >/dev/null
ectr tasks delete "$id" >/dev/null 2>&1 || true
ectr containers delete "$id" >/dev/null 2>&1 || true

stop_events
it_finish
