#!/bin/bash
# A pod's life through the real CRI (containerd's CRI plugin, CNI bridge,
# unishimctl as kubelet): run, ps with the isolation kind, ExecSync output and
# exit codes, the CRI log file, UpdateContainerResources in the cgroup,
# ContainerStats, stop with a grace period (TERM handled -> 0, TERM ignored ->
# killed after the timeout, 137), and nothing left after rm. The same checks
# run under the `unishim` and the `runc` handlers and the results are compared.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
IT_CRI=1
it_setup

HANDLERS=(unishim runc)
declare -A RES=()

# pid1_cmdline POD: /proc/1/cmdline of POD's app container, NULs as spaces;
# the exec's exit status.
pid1_cmdline() {
        ectl exec "$1" -c app -- cat /proc/1/cmdline | tr '\0' ' '
        return "${PIPESTATUS[0]}"
}

for h in "${HANDLERS[@]}"; do
        echo "# ---- handler $h ----"
        name=life-$h
        f=$(it_pod "$name.json" --arg n "$name" --arg h "$h" '{name: $n, runtime_handler: $h,
                containers: [
                  {name: "app", image: $img, command: ["/bin/sh", "-c"],
                   args: ["echo hello-stdout; echo hello-stderr >&2; exec sleep 3600"]},
                  {name: "term", image: $img, command: ["/bin/sh", "-c"],
                   args: ["trap \"exit 0\" TERM; while :; do sleep 0.1; done"]},
                  {name: "stubborn", image: $img, command: ["/bin/sh", "-c"],
                   args: ["trap \"\" TERM; while :; do sleep 0.1; done"]}]}')
        out_rc out rc ectl run "$f"
        expect_eq "$h: run pod (RunPodSandbox, 3 x CreateContainer + StartContainer)" 0 "$rc"
        [ "$rc" = 0 ] || continue
        pod=$(pod_id "$name")
        app=$(ctr_id "$name" app)
        term=$(ctr_id "$name" term)
        stubborn=$(ctr_id "$name" stubborn)
        expect_match "$h: ps shows the pod Ready with its handler and isolation kind container" \
                "${pod:0:13} +$name +default +Ready +$h +container" "$(ectl ps)"
        expect_eq "$h: three containers running" 3 "$(ectl inspect "$name" | grep -c ' state Running ')"
        spid=$(pod_shim_pid "$pod")
        [ -n "$spid" ] && pass "$h: a shim serves the pod" || fail "$h: no shim for pod $pod"
        # (runc's shim re-execs without it; unishim's forked child hides it)
        [ -n "$spid" ] && ! tr '\0' '\n' <"/proc/$spid/cmdline" | grep -qx start &&
                pass "$h: the serving shim's command line does not say start" ||
                fail "$h: serving shim ${spid:-none}: $(tr '\0' ' ' <"/proc/$spid/cmdline" 2>/dev/null)"

        # ExecSync: the container's cgroup, output streams and exit codes.
        out_rc out rc ectl exec "$name" -c app -- cat /proc/1/cgroup
        expect_eq "$h: exec cat /proc/1/cgroup: exit 0" 0 "$rc"
        expect_match "$h: the container's cgroup is under the pod's cgroup parent" \
                "memory:$ENV_POD_CGROUP/$app" "$out"
        ectl exec "$name" -c app -- sh -c 'echo out; echo err >&2; exit 7' \
                >"$IT_TMP/x.out" 2>"$IT_TMP/x.err" </dev/null && rc=0 || rc=$?
        expect_eq "$h: exec exit code 7" 7 "$rc"
        expect_eq "$h: exec stdout" out "$(cat "$IT_TMP/x.out")"
        expect_eq "$h: exec stderr" err "$(cat "$IT_TMP/x.err")"
        out_rc out rc ectl exec "$name" -c app -- /no/such/binary
        [ "$rc" != 0 ] && pass "$h: exec of a missing binary fails (rc $rc)" || fail "$h: exec of a missing binary succeeded"
        # At once, naming the cause: an exec whose start failed must answer
        # containerd's Wait, or ExecSync waits out the CRI's deadline and the
        # exec is never deleted (its FIFOs stay open in the shim).
        [[ ${out,,} = *"no such file"* ]] && pass "$h: the failed exec says why" ||
                fail "$h: exec of a missing binary: $out"
        RES[$h.exec_missing]=$rc
        out_rc out rc ectl exec "$name" -c app -t 1 -- sleep 10
        [ "$rc" != 0 ] && pass "$h: exec timeout 1s of sleep 10 fails (rc $rc)" || fail "$h: exec timeout not enforced"
        out_rc out rc ectl exec "$name" -c app -t 1s -- true
        expect_eq "$h: exec -t 1s (not a number): usage error" 2 "$rc"
        expect_match "$h: exec -t 1s names the bad value" 'invalid --timeout 1s' "$out"
        expect_eq "$h: hostname is the pod name" "$name" "$(ectl exec "$name" -c app -- hostname </dev/null 2>&1 || true)"
        # Compared with the other handler's below: values, not error messages.
        out_ok "RES[$h.id]" "$h: exec id" ectl exec "$name" -c app -- id
        expect_match "$h: id in the container is root's" '^uid=0\(root\) gid=0\(root\)' "${RES[$h.id]}"
        out_ok "RES[$h.pid1]" "$h: exec cat /proc/1/cmdline" pid1_cmdline "$name"
        expect_match "$h: the container's pid 1 is its command" '^sleep 3600 ?$' "${RES[$h.pid1]}"

        # The CRI log file.
        log=$ENV_STATE/pod-logs/default_$name/app/0.log
        wait_until 10 grep -q hello-stderr "$log" || true
        [ -s "$log" ] && pass "$h: CRI log file $log exists" || fail "$h: no CRI log file $log"
        expect_match "$h: log file has the stdout line (CRI format)" \
                "[0-9T:.Z+-]+ stdout F hello-stdout" "$(cat "$log" 2>/dev/null)"
        expect_match "$h: log file has the stderr line" "stderr F hello-stderr" "$(cat "$log" 2>/dev/null)"
        expect_eq "$h: unishimctl logs (stdout)" hello-stdout "$(ectl logs "$name" -c app 2>/dev/null)"

        # UpdateContainerResources -> the container's memory cgroup.
        out_rc out rc ectl update "$name" -c app --memory 67108864 --cpu-quota 50000 --cpu-period 100000
        expect_eq "$h: update (64 MiB, 0.5 CPU)" 0 "$rc"
        expect_eq "$h: memory.limit_in_bytes on the host" 67108864 \
                "$(cat "/sys/fs/cgroup/memory$ENV_POD_CGROUP/$app/memory.limit_in_bytes" 2>/dev/null)"
        expect_eq "$h: memory.limit_in_bytes seen inside" 67108864 \
                "$(ectl exec "$name" -c app -- cat /sys/fs/cgroup/memory/memory.limit_in_bytes </dev/null 2>&1)"
        expect_eq "$h: cpu.cfs_quota_us on the host" 50000 \
                "$(cat "/sys/fs/cgroup/cpu$ENV_POD_CGROUP/$app/cpu.cfs_quota_us" 2>/dev/null)"

        # ContainerStats.
        out_rc out rc ectl stats "$name" -c app
        expect_eq "$h: stats: exit 0" 0 "$rc"
        mem=$(jq -r '.memory.working_set_bytes // empty' <<<"$out" 2>/dev/null || true)
        cpu=$(jq -r '.cpu.usage_core_nano_seconds // empty' <<<"$out" 2>/dev/null || true)
        [[ $mem =~ ^[1-9][0-9]*$ ]] && pass "$h: stats: memory working set $mem bytes" || fail "$h: stats: no memory: $out"
        [[ $cpu =~ ^[1-9][0-9]*$ ]] && pass "$h: stats: cpu usage $cpu ns" || fail "$h: stats: no cpu: $out"

        # Stop with a grace period: TERM handled -> 0; TERM ignored -> 137
        # after the timeout. The exit codes come from containerd's events.
        events_start "$IT_TMP/events-$h"
        t0=$(date +%s%N)
        timeout 30 "$UNISHIMCTL" -e "$CRI_ENDPOINT" stop "$name" --timeout 3 >/dev/null 2>&1 && rc=0 || rc=$?
        t1=$(date +%s%N)
        expect_eq "$h: stop --timeout 3: exit 0" 0 "$rc"
        ms=$(((t1 - t0) / 1000000))
        ((ms >= 2900)) && pass "$h: stop waited the grace period for the TERM-ignoring container (${ms} ms)" ||
                fail "$h: stop took only ${ms} ms"
        # (both exits, whichever comes first)
        wait_until 30 event_seen /tasks/exit "$stubborn" "$IT_TMP/events-$h" || true
        wait_until 30 event_seen /tasks/exit "$term" "$IT_TMP/events-$h" || true
        events_stop
        RES[$h.term]=$(event_exit_status "$term" "$IT_TMP/events-$h")
        RES[$h.stubborn]=$(event_exit_status "$stubborn" "$IT_TMP/events-$h")
        expect_eq "$h: container trapping TERM exits 0" 0 "${RES[$h.term]}"
        expect_eq "$h: container ignoring TERM is killed: 137" 137 "${RES[$h.stubborn]}"
        expect_match "$h: pod NotReady after stop" "state NotReady" "$(ectl inspect "$name" 2>&1)"

        # rm: nothing of the pod remains.
        out_rc out rc ectl rm "$name"
        expect_eq "$h: rm: exit 0" 0 "$rc"
        pods=$(ectl ps -q 2>/dev/null) && rc=0 || rc=$?
        expect_eq "$h: ps -q after rm: exit 0" 0 "$rc"
        expect_eq "$h: pod gone from ps" "" "$(grep -F "$pod" <<<"$pods" || true)"
        wait_until 10 no_pod_shim "$pod" || true
        expect_eq "$h: nothing left (shim, mounts, cgroups)" "" "$(pod_leftovers "$pod" "$app" "$term" "$stubborn")"
        expect_eq "$h: no netns bind mount left" "" "$(netns_mounts)"
        expect_eq "$h: no process left in the pods' cgroups" "" "$(env_cgroup_pids)"
done

echo "# ---- unishim vs runc ----"
for k in exec_missing id pid1 term stubborn; do
        expect_eq "same under unishim and runc: $k" "${RES[runc.$k]:-}" "${RES[unishim.$k]:-}"
done

it_finish
