#!/bin/bash
# Every byte written to a process's stdin reaches it before it sees EOF
# (issue 9), in each kind, at the Task API as containerd's clients drive it;
# a runc pod in the same environment is the reference:
#  - exec (`ctr task exec`, a file on its stdin; ctr sends CloseIO once it
#    read EOF, the way the CRI does for `kubectl exec -i`): `wc -c` counts
#    100000 bytes and 3 bytes, STDIN_RUNS (5) times each, and 1 MiB of random
#    data arrives unchanged (md5sum), twice
#  - empty input in the CRI's order (tests/tools/task-api): CloseIO before
#    Start (runc's shim ignores that CloseIO and the exec never ends, so
#    only unishim's kinds), and after Start with no writer ever: `wc -c`
#    counts 0 and exits 0
#  - the container's own stdin (`ctr run`, fed once the task runs, as an
#    attach with stdinOnce does; the process reads only after ctr's EOF):
#    100000, 3 and 0 bytes, and 1 MiB of random data unchanged; the exec
#    that lets it read goes through the same shim while its stdin is full,
#    so a shim loop that waited for the slow reader would hang that check
# Each count is a check: a lost byte or a hang (STDIN_TIMEOUT, 60 s, a hang
# guard) fails it.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
IT_CRI=1
command -v qemu-system-x86_64 >/dev/null || it_skip "qemu-system-x86_64 missing (apt package qemu-system-x86)"
it_setup
RUNS=${STDIN_RUNS:-5}
STDIN_TIMEOUT=${STDIN_TIMEOUT:-60}
KINDS=(runc container sandbox)
declare -A CID SOCK

# ctr in the CRI's namespace, where the pods' containers are.
kctr() { timeout -k 5 "$STDIN_TIMEOUT" ctr -a "$ENV_ADDR" -n k8s.io "$@"; }
task_api() { timeout -k 5 "$STDIN_TIMEOUT" "$UNISHIM_BUILD_DIR/tests/task-api" "$1" k8s.io "${@:2}"; }

head -c 100000 /dev/zero >"$IT_TMP/in-100000"
printf abc >"$IT_TMP/in-3"
: >"$IT_TMP/in-0"
head -c 1048576 /dev/urandom >"$IT_TMP/in-random"
RANDOM_MD5=$(md5sum <"$IT_TMP/in-random" | cut -d' ' -f1)

# ---- one pod of each kind, a container that sleeps ----
for kind in "${KINDS[@]}"; do
        kind_pod "$kind"
        f=$(it_pod "$kind.json" --arg n "stdin-$kind" --arg h "$HANDLER" --argjson a "$ANNOTATIONS" \
                '{name: $n, runtime_handler: $h, annotations: $a,
                  containers: [{name: "app", image: $img, command: ["sleep", "3600"]}]}')
        out_rc out rc ectl run "$f"
        expect_eq "run the $kind pod" 0 "$rc"
        [ "$rc" = 0 ] || echo "# $out"
        CID[$kind]=$(ctr_id "stdin-$kind" app)
        SOCK[$kind]=$(sed 's|^unix://||' \
                "$ENV_STATE/io.containerd.runtime.v2.task/k8s.io/${CID[$kind]}/address" 2>/dev/null || true)
done

# ---- exec ----
# exec_out KIND FILE COMMAND...: COMMAND's output with FILE on its stdin,
# through `ctr task exec` in KIND's container; "hang" when ctr did not return.
exec_out() {
        local out rc
        out=$(kctr task exec --exec-id "stdin-$BASHPID-$RANDOM" "${CID[$1]}" "${@:3}" <"$2" 2>&1) &&
                rc=0 || rc=$?
        if [ "$rc" = 124 ] || [ "$rc" = 137 ]; then
                echo hang
        elif [ "$rc" != 0 ]; then
                echo "exit-$rc:${out//$'\n'/ }"
        else
                echo "${out//$'\r'/}"
        fi
}

# repeat N WORD: WORD N times, space-separated.
repeat() {
        local i s=
        for ((i = 0; i < $1; i++)); do s+="${s:+ }$2"; done
        echo "$s"
}

for kind in "${KINDS[@]}"; do
        for n in 100000 3; do
                got=
                for ((i = 0; i < RUNS; i++)); do
                        got+="${got:+ }$(exec_out "$kind" "$IT_TMP/in-$n" wc -c)"
                done
                expect_eq "$kind: exec, $n bytes in, wc -c in $RUNS runs" "$(repeat "$RUNS" "$n")" "$got"
        done
        got=
        for ((i = 0; i < 2; i++)); do
                got+="${got:+ }$(exec_out "$kind" "$IT_TMP/in-random" md5sum | cut -d' ' -f1)"
        done
        expect_eq "$kind: exec, 1 MiB of random data arrives unchanged (md5sum, 2 runs)" \
                "$RANDOM_MD5 $RANDOM_MD5" "$got"
done

# ---- empty input in the CRI's order, at the Task API ----
# api_empty KIND ORDER: an exec of wc -c whose stdin FIFO nobody ever opens
# for writing, CloseIO sent before or after its Start; prints "<exit status>
# <output>".
api_empty() {
        local kind=$1 order=$2 d eid cat_pid st out
        eid=api-$order
        d=$IT_TMP/api-$kind-$order
        mkdir -p "$d"
        mkfifo "$d/in" "$d/out" "$d/err"
        # (bounded: a process that never gets EOF keeps its stdout open)
        timeout -k 5 "$STDIN_TIMEOUT" cat "$d/out" >"$d/result" &
        cat_pid=$!
        timeout -k 5 "$STDIN_TIMEOUT" cat "$d/err" >"$d/errors" &
        local spec='{"args": ["wc", "-c"], "cwd": "/", "env": ["PATH=/usr/bin:/bin"],
                     "user": {"uid": 0, "gid": 0}}'
        local api=("${SOCK[$kind]}")
        st=
        task_api "${api[@]}" exec "${CID[$kind]}" "$eid" "$d/in" "$d/out" "$d/err" "$spec" ||
                st=exec-failed
        if [ -z "$st" ] && [ "$order" = before ]; then
                task_api "${api[@]}" close-io "${CID[$kind]}" "$eid" || st=close-io-failed
        fi
        if [ -z "$st" ]; then
                task_api "${api[@]}" start "${CID[$kind]}" "$eid" || st=start-failed
        fi
        if [ -z "$st" ] && [ "$order" = after ]; then
                task_api "${api[@]}" close-io "${CID[$kind]}" "$eid" || st=close-io-failed
        fi
        if [ -z "$st" ]; then
                st=$(task_api "${api[@]}" wait "${CID[$kind]}" "$eid") || st=hang
        fi
        if [ "$st" = hang ]; then
                task_api "${api[@]}" kill "${CID[$kind]}" 9 "$eid" >/dev/null 2>&1 || true
                task_api "${api[@]}" wait "${CID[$kind]}" "$eid" >/dev/null 2>&1 || true
        fi
        task_api "${api[@]}" delete "${CID[$kind]}" "$eid" >/dev/null 2>&1 || true
        # The readers end once the FIFOs have had a writer and lost it: open
        # them (O_RDWR never blocks) in case the shim never did.
        exec {fd}<>"$d/out"
        exec {fd}>&-
        exec {fd}<>"$d/err"
        exec {fd}>&-
        wait "$cat_pid" || true
        out=$(cat "$d/result")
        echo "$st ${out:-none}"
}

for kind in container sandbox; do
        expect_eq "$kind: exec of wc -c, CloseIO before Start, no input: exit 0, counts 0" "0 0" \
                "$(api_empty "$kind" before)"
done
for kind in "${KINDS[@]}"; do
        expect_eq "$kind: exec of wc -c, CloseIO after Start, no input: exit 0, counts 0" "0 0" \
                "$(api_empty "$kind" after)"
done

# ---- the container's own stdin ----
# run_out KIND FILE [COMMAND]: the output of COMMAND (wc -c) in a `ctr run`
# container, FILE fed to its stdin once its task runs (ctr closes a task's
# stdin only for an EOF it reads after the task exists, docs/testing.md).
# The process reads only once /tmp/go exists: that is created after the
# whole of FILE went to ctr and ctr had its EOF (so the shim holds the
# bytes when CloseIO comes), or at once for a FILE larger than the pipes
# and FIFOs on the way hold. "hang" when ctr did not return.
run_out() {
        local kind=$1 src=$2 cmd=${3:-wc -c} id fifo out pid feeder w rc opts=()
        case $kind in
        runc) opts=(--runtime io.containerd.runc.v2) ;;
        container) opts=(--runtime "$UNISHIM_RUNTIME") ;;
        sandbox) opts=(--runtime "$UNISHIM_RUNTIME" --annotation unishim.io/isolation=sandbox) ;;
        esac
        id=$(it_id)
        fifo=$IT_TMP/run-$id.in
        out=$IT_TMP/run-$id.out
        mkfifo "$fifo"
        timeout -k 5 "$STDIN_TIMEOUT" ctr -a "$ENV_ADDR" -n "$ENV_NS" run --rm "${opts[@]}" \
                "$TEST_IMAGE" "$id" sh -c "until [ -e /tmp/go ]; do sleep 0.1; done; exec $cmd" \
                <"$fifo" >"$out" 2>&1 &
        pid=$!
        exec {w}>"$fifo"
        if wait_until "$STDIN_TIMEOUT" task_is "$id" RUNNING; then
                timeout "$STDIN_TIMEOUT" cat "$src" >&"$w" &
                feeder=$!
                exec {w}>&-
                [ "$(stat -c %s "$src")" -gt 100000 ] || wait "$feeder" || true
                ectr task exec --exec-id "go-$id" "$id" touch /tmp/go >/dev/null 2>&1 || true
                wait "$feeder" || true
        fi
        exec {w}>&- 2>/dev/null || true
        wait "$pid" && rc=0 || rc=$?
        if [ "$rc" = 124 ] || [ "$rc" = 137 ]; then
                echo hang
        elif [ "$rc" != 0 ]; then
                echo "exit-$rc:$(tr '\n' ' ' <"$out")"
        else
                tr -d '\r' <"$out" | cut -d' ' -f1
        fi
}

for kind in "${KINDS[@]}"; do
        got=
        for n in 100000 3 0; do
                got+="${got:+ }$(run_out "$kind" "$IT_TMP/in-$n")"
        done
        expect_eq "$kind: the container's own stdin, 100000, 3 and 0 bytes in, wc -c" "100000 3 0" "$got"
        expect_eq "$kind: the container's own stdin, 1 MiB of random data arrives unchanged (md5sum)" \
                "$RANDOM_MD5" "$(run_out "$kind" "$IT_TMP/in-random" md5sum)"
done

for kind in "${KINDS[@]}"; do
        out_rc out rc ectl rm "stdin-$kind"
        expect_eq "rm the $kind pod" 0 "$rc"
done
it_finish
