#!/bin/bash
# unishim vs containerd's runc shim, in the same run, on one private containerd:
#  - wall time of `ctr run --rm <image> <id> true`, alternating the runtimes
#    (BENCH_WARMUP warm-ups each, then BENCH_N measured runs each): median, p90
#  - idle shim memory: PSS (smaps_rollup) of the shim of a `sleep` container
# Writes <build>/bench/results.json (a list of {name, unit, unishim, baseline,
# ratio}) and <build>/bench/results.md, and prints the table.
# A benchmark measures; it does not judge numbers. It exits non-zero only when
# a runtime could not be measured at all (reported as such, never as a number).
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/../tests/env/lib.sh"

N=${BENCH_N:-30}
WARMUP=${BENCH_WARMUP:-3}
CTR_TIMEOUT=${BENCH_CTR_TIMEOUT:-30}
OUT=$UNISHIM_BUILD_DIR/bench
RUNTIMES=("$UNISHIM_RUNTIME" "$RUNC_RUNTIME")
declare -A KEY=(["$UNISHIM_RUNTIME"]=unishim ["$RUNC_RUNTIME"]=baseline)

[ "$(id -u)" = 0 ] || { echo "bench: must run as root" >&2; exit 1; }
command -v jq >/dev/null || { echo "bench: jq missing (make deps-runtime)" >&2; exit 1; }

work=$(mktemp -d /tmp/unishim-bench.XXXXXX)
cleanup() {
        local rc=$?
        set +e
        trap '' PIPE # a closed stdout (| head) must not stop the cleanup
        env_stop
        rm -rf "$work"
        exit "$rc"
}
env_init unishim-bench
trap cleanup EXIT
trap 'exit 130' INT TERM
env_start
mkdir -p "$OUT"
echo "bench: containerd $ENV_ADDR, $WARMUP warm-ups + $N runs per runtime, alternating"

declare -A FAILED=() ERROR=()
seq_no=0

now_us() { local t=${EPOCHREALTIME/./}; echo "${t#0}"; }

# run_once RUNTIME: one `ctr run --rm true`; sets RUN_US to its wall time
# in µs, or marks the runtime failed and returns 1.
run_once() {
        local rt=$1 id t0 t1 out
        seq_no=$((seq_no + 1))
        id=bench-${KEY[$rt]}-$seq_no
        t0=$(now_us)
        if ! out=$(ectr run --rm --runtime "$rt" "$TEST_IMAGE" "$id" true </dev/null 2>&1 | tr -d '\0'; exit "${PIPESTATUS[0]}"); then
                FAILED[$rt]=1
                ERROR[$rt]=$(head -c 300 <<<"$out" | tr '\n' ' ')
                # A half-created container must not stay.
                CTR_TIMEOUT=10 ectr tasks kill -s SIGKILL "$id" >/dev/null 2>&1 || true
                CTR_TIMEOUT=10 ectr tasks delete -f "$id" >/dev/null 2>&1 || true
                CTR_TIMEOUT=10 ectr containers delete "$id" >/dev/null 2>&1 || true
                return 1
        fi
        t1=$(now_us)
        RUN_US=$((t1 - t0))
}

for rt in "${RUNTIMES[@]}"; do : >"$work/${KEY[$rt]}.us"; done
for ((i = 0; i < WARMUP + N; i++)); do
        for rt in "${RUNTIMES[@]}"; do
                [ -n "${FAILED[$rt]:-}" ] && continue
                if run_once "$rt"; then
                        ((i >= WARMUP)) && echo "$RUN_US" >>"$work/${KEY[$rt]}.us"
                else
                        echo "bench: $rt FAILED: ${ERROR[$rt]}" >&2
                fi
        done
done

# percentile FILE P: nearest-rank percentile of the µs samples, in ms (3 decimals).
percentile() {
        sort -n "$1" | awk -v p="$2" '{ v[NR] = $1 } END {
                if (NR == 0) { print "null"; exit }
                r = int((p / 100) * NR + 0.999999); if (r < 1) r = 1; if (r > NR) r = NR
                printf "%.3f\n", v[r] / 1000 }'
}

# idle_pss RUNTIME: PSS in KiB of the shim of an idle `sleep` container.
idle_pss() {
        local rt=$1 id=bench-idle-${KEY[$1]} pid pss=null i
        if ectr run -d --runtime "$rt" "$TEST_IMAGE" "$id" sleep 1000 </dev/null >/dev/null 2>&1; then
                for ((i = 0; i < 50; i++)); do
                        pid=$(env_shim_pid "$id")
                        [ -n "$pid" ] && break
                        sleep 0.1
                done
                sleep 1 # let it settle into idle
                if [ -n "$pid" ] && [ -r "/proc/$pid/smaps_rollup" ]; then
                        pss=$(awk '$1 == "Pss:" { print $2 }' "/proc/$pid/smaps_rollup")
                fi
        fi
        CTR_TIMEOUT=10 ectr tasks kill -s SIGKILL "$id" >/dev/null 2>&1 || true
        for ((i = 0; i < 50; i++)); do
                CTR_TIMEOUT=10 ectr tasks delete "$id" >/dev/null 2>&1 && break
                sleep 0.1
        done
        CTR_TIMEOUT=10 ectr containers delete "$id" >/dev/null 2>&1 || true
        echo "${pss:-null}"
}

declare -A MED P90 PSS SAMPLES
for rt in "${RUNTIMES[@]}"; do
        k=${KEY[$rt]}
        SAMPLES[$k]=$(wc -l <"$work/$k.us")
        if [ -n "${FAILED[$rt]:-}" ] || [ "${SAMPLES[$k]}" -lt "$N" ]; then
                MED[$k]=null P90[$k]=null PSS[$k]=null
                FAILED[$rt]=1
                continue
        fi
        MED[$k]=$(percentile "$work/$k.us" 50)
        P90[$k]=$(percentile "$work/$k.us" 90)
        PSS[$k]=$(idle_pss "$rt")
done

row() { # NAME UNIT UNISHIM BASELINE
        jq -cn --arg name "$1" --arg unit "$2" --argjson u "$3" --argjson b "$4" \
                '{name: $name, unit: $unit, unishim: $u, baseline: $b,
                  ratio: (if $u != null and $b != null and $b != 0 then (($u / $b) * 1000 | round) / 1000 else null end)}'
}
{
        row "ctr run --rm true, median" ms "${MED[unishim]}" "${MED[baseline]}"
        row "ctr run --rm true, p90" ms "${P90[unishim]}" "${P90[baseline]}"
        row "idle shim PSS" KiB "${PSS[unishim]}" "${PSS[baseline]}"
} | jq -s . >"$OUT/results.json.tmp"
mv "$OUT/results.json.tmp" "$OUT/results.json"

{
        echo "| metric | unit | unishim | runc shim (baseline) | ratio unishim/runc |"
        echo "|---|---|---:|---:|---:|"
        jq -r '.[] | "| \(.name) | \(.unit) | \(.unishim // "FAILED") | \(.baseline // "FAILED") | \(.ratio // "n/a") |"' \
                "$OUT/results.json"
        echo
        echo "$N runs per runtime after $WARMUP warm-ups, alternating; $(nproc) CPUs; $(uname -r);" \
                "containerd $(containerd --version | awk '{ print $3 }'); $(date -u +%Y-%m-%dT%H:%M:%SZ)."
        for rt in "${RUNTIMES[@]}"; do
                if [ -n "${FAILED[$rt]:-}" ]; then
                        echo
                        echo "**$rt could not be measured**: ${ERROR[$rt]:-fewer than $N successful runs}"
                fi
        done
} >"$OUT/results.md"

echo
cat "$OUT/results.md"
echo
echo "bench: wrote $OUT/results.json and $OUT/results.md"
for rt in "${RUNTIMES[@]}"; do
        [ -n "${FAILED[$rt]:-}" ] && { echo "bench: $rt FAILED (see above)" >&2; exit 1; }
done
exit 0
