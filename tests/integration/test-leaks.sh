#!/bin/bash
# Resource leaks: 50 run/delete cycles leave no shim, process, mount, cgroup,
# socket or bundle behind; a long-running shim's fd count stays flat across
# 20 exec cycles.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
it_setup

CYCLES=${LEAK_CYCLES:-50}
EXECS=${LEAK_EXECS:-20}

mounts_before=$(env_mounts)
ids=()
failed=0
for ((n = 0; n < CYCLES; n++)); do
        id=$(it_id)
        ids+=("$id")
        out_rc out rc ectr run --rm --runtime "$RUNTIME" "$TEST_IMAGE" "$id" true
        if [ "$rc" != 0 ]; then
                failed=$((failed + 1))
                [ "$failed" -le 3 ] && echo "# cycle $n: exit $rc: $out"
        fi
done
expect_eq "$CYCLES x ctr run --rm true: all exit 0" 0 "$failed"

# Give asynchronous teardown (shim exit, cgroup removal) a moment.
no_env_shims() { [ -z "$(env_shim_pids)" ]; }
wait_until 10 no_env_shims || true

shims=$(env_shim_pids)
expect_eq "no shim process of this environment left" "" "$shims"
procs=$(env_cgroup_pids)
expect_eq "no process left in the namespace's cgroups" "" "$procs"
strays=$(for d in /proc/[0-9]*; do
        tr '\0' '\n' 2>/dev/null <"$d/cmdline" | grep -qF -- "$ENV_STATE/io.containerd.runtime" &&
                echo "${d#/proc/}"
done; true)
expect_eq "no process runs from a bundle of this environment" "" "$strays"
expect_eq "mounts under $ENV_ROOT and $ENV_STATE as before" "$mounts_before" "$(env_mounts)"
cgroups=$(find /sys/fs/cgroup/*/"$ENV_NS" -mindepth 1 -type d 2>/dev/null || true)
expect_eq "no cgroup directory left under */$ENV_NS/" "" "$cgroups"
bundles=$(ls -A "$ENV_STATE/io.containerd.runtime.v2.task/$ENV_NS" 2>/dev/null || true)
expect_eq "no bundle directory left" "" "$bundles"
sockets=$(for id in "${ids[@]}"; do
        s=$(env_shim_socket "$id")
        [ -e "$s" ] && echo "$s"
done; true)
expect_eq "no shim socket left in /run/containerd/s" "" "$sockets"
expect_eq "no container left" "" "$(ectr containers ls -q 2>/dev/null)"
expect_eq "no task left" "" "$(ectr tasks ls -q 2>/dev/null)"
snaps=$(ectr snapshots ls 2>/dev/null | awk 'NR > 1 && $3 == "Active"')
expect_eq "no active snapshot left" "" "$snaps"

# fd count of a long-running shim across exec cycles.
id=$(it_id)
ectr run -d --runtime "$RUNTIME" "$TEST_IMAGE" "$id" sleep 1000 >/dev/null 2>&1 ||
        fail "run -d of the long-running container"
wait_until 10 task_is "$id" RUNNING || true
shim_pid=$(env_shim_pid "$id")
if [ -z "$shim_pid" ]; then
        fail "no shim process for $id"
else
        fds() { ls "/proc/$shim_pid/fd" 2>/dev/null | wc -l; }
        exec_once() { ectr tasks exec --exec-id "x$1" "$id" sh -c 'echo out; echo err >&2' >/dev/null 2>&1; }
        # Warm up: whatever the first execs set up once may stay.
        exec_once w1 && exec_once w2 || fail "exec in $id"
        sleep 0.5
        before=$(fds)
        bad=0
        for ((n = 0; n < EXECS; n++)); do
                exec_once "$n" || bad=$((bad + 1))
        done
        expect_eq "$EXECS execs all succeeded" 0 "$bad"
        sleep 0.5
        after=$(fds)
        echo "# shim $shim_pid fds: $before before, $after after $EXECS execs"
        [ "$before" -gt 0 ] && [ "$after" = "$before" ] && pass "shim fd count flat ($before)" ||
                fail "shim fd count $before -> $after after $EXECS execs: $(ls -l "/proc/$shim_pid/fd" 2>/dev/null | tail -n +2 | awk '{ print $NF }' | sort | uniq -c | sort -rn | head)"
        kids=$(ps -o pid= --ppid "$shim_pid" | wc -l)
        expect_eq "shim has only the init as child after the execs" 1 "$kids"
fi
ectr tasks kill -s SIGKILL "$id" >/dev/null 2>&1 || true
wait_until 10 task_is "$id" STOPPED || true
ectr tasks delete "$id" >/dev/null 2>&1 || true
ectr containers delete "$id" >/dev/null 2>&1 || true
if [ -n "$shim_pid" ]; then
        wait_until 10 test ! -d "/proc/$shim_pid" && pass "long-running shim exited after delete" ||
                fail "shim $shim_pid alive after delete"
fi

it_finish
