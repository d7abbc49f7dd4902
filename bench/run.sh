#!/bin/bash
# unishim vs containerd's runc shim, in the same run, on one private containerd:
#  - wall time of `ctr run --rm <image> <id> true`, alternating the runtimes
#    (BENCH_WARMUP warm-ups each, then BENCH_N measured runs each): median, p90
#  - idle shim memory: PSS (smaps_rollup) of the shim of a `sleep` container
#  - through the CRI (unishimctl, handlers `unishim` and `runc`, alternating,
#    BENCH_POD_WARMUP + BENCH_POD_N each): pod start (RunPodSandbox +
#    CreateContainer + StartContainer, from `unishimctl run --timing`) and pod
#    teardown (`unishimctl rm --timeout 0`: stop + remove, wall time), median
#    and p90; the PSS of the pod's shim with one running container
#  - sandbox pods (unishim.io/isolation: sandbox, a QEMU microvm; bench/sandbox.sh,
#    BENCH_SANDBOX=0 skips): start split into phases, the bare-QEMU floor, PSS
#    of an idle sandbox pod vs a bare QEMU, start time under density
#  - sandbox pods from a VM template (bench/template.sh, BENCH_TEMPLATE=0
#    skips; issue 10's goals): restored and cold 9p pod start vs the stock
#    bare-QEMU floor, the restore alone, the template's build, two at once,
#    idle PSS averaged over BENCH_TPL_IDLE pods with its parts, one more
#    pod's start with BENCH_TPL_DENSITY idle restored pods running
#  - vm pods (unishim.io/isolation: vm, the Debian test image booted by
#    libvirtd; bench/vm.sh, BENCH_VM=0 skips): start to the guest agent vs a
#    bare `virsh create` of the same guest to guest-ping, the pod's fixed
#    host memory beyond QEMU, the shared libvirtd's
#  - pods through a kubelet (bench/k8s.sh, BENCH_K8S=0 skips; skipped with a
#    note without the Kubernetes binaries): create -> Ready for each kind
#    against the runc RuntimeClass
# Writes <build>/bench/results.json (a list of {name, unit, unishim, baseline,
# ratio}) and <build>/bench/results.md, and prints the table.
# A benchmark measures; it does not judge numbers. It exits non-zero only when
# a runtime could not be measured at all (reported as such, never as a number).
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/../tests/env/lib.sh"

N=${BENCH_N:-30}
WARMUP=${BENCH_WARMUP:-3}
POD_N=${BENCH_POD_N:-20}
POD_WARMUP=${BENCH_POD_WARMUP:-2}
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
        [ "${K8S_UP:-0}" = 0 ] || "$UNISHIM_SOURCE_DIR/tests/k8s/k8s-down.sh" >/dev/null 2>&1
        declare -F template_cleanup >/dev/null && template_cleanup
        env_stop
        [ "${ENV_LIBVIRT:-0}" = 0 ] || env_libvirt_stop "$ENV_NAME"
        rm -rf "$work"
        exit "$rc"
}
# The vm rows need the vm image in the registry and libvirtd.
BENCH_VM=${BENCH_VM:-1}
command -v libvirtd >/dev/null && command -v qemu-img >/dev/null || BENCH_VM=0
export UNISHIM_ENV_VM_IMAGE=$BENCH_VM UNISHIM_ENV_LIBVIRT=$BENCH_VM
# The sandbox rows (and the kubelet's) keep measuring the cold path
# (virtio-fs, the stock cloud image, templates off), as they always have;
# the default path, VM templates, has rows of its own (bench/template.sh).
export UNISHIM_TEST_SANDBOX_PATH=cold
env_init unishim-bench
trap cleanup EXIT
trap 'exit 130' INT TERM
[ "$BENCH_VM" = 0 ] || env_vm_image_build
env_start
[ "$BENCH_VM" = 0 ] || env_libvirt_start "$ENV_NAME"
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

# row NAME UNIT UNISHIM BASELINE: one row of results.json (values or null).
row() { # NAME UNIT UNISHIM BASELINE
        jq -cn --arg name "$1" --arg unit "$2" --argjson u "$3" --argjson b "$4" \
                '{name: $name, unit: $unit, unishim: $u, baseline: $b,
                  ratio: (if $u != null and $b != null and $b != 0 then (($u / $b) * 1000 | round) / 1000 else null end)}'
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

# ---- pods through the CRI -----------------------------------------------------
HANDLERS=(unishim runc)
declare -A HKEY=([unishim]=unishim [runc]=baseline) PFAILED=() PERROR=()
[ -x "$UNISHIMCTL" ] || { echo "bench: $UNISHIMCTL not built" >&2; exit 1; }
echo "bench: pods through the CRI, $POD_WARMUP warm-ups + $POD_N runs per handler, alternating"
for h in "${HANDLERS[@]}"; do : >"$work/${HKEY[$h]}.start"; : >"$work/${HKEY[$h]}.stop"; done
pod_seq=0
# pod_once HANDLER: run (timed by unishimctl) + rm (wall time) of a
# one-container pod; appends µs to the .start/.stop files when MEASURE=1.
pod_once() {
        local h=$1 name f t0 t1 timing
        pod_seq=$((pod_seq + 1))
        name=bench-$h-$pod_seq
        f=$work/$name.json
        env_pod_json "$f" --arg n "$name" --arg h "$h" '{name: $n, runtime_handler: $h,
                containers: [{name: "app", image: $img, command: ["sleep", "3600"]}]}'
        if ! ectl run --timing "$f" >/dev/null 2>"$work/timing"; then
                PFAILED[$h]=1
                PERROR[$h]=$(tr -d '\0' <"$work/timing" | head -c 300 | tr '\n' ' ')
                CTR_TIMEOUT=20 ectl rm --timeout 0 "$name" >/dev/null 2>&1 || true
                return 1
        fi
        timing=$(grep '^{' "$work/timing" | tail -n1)
        t0=$(now_us)
        if ! ectl rm --timeout 0 "$name" >/dev/null 2>"$work/rm.err"; then
                PFAILED[$h]=1
                PERROR[$h]="rm: $(head -c 300 "$work/rm.err" | tr '\n' ' ')"
                return 1
        fi
        t1=$(now_us)
        if [ "$MEASURE" = 1 ]; then
                jq -r '((.RunPodSandbox + .CreateContainer + .StartContainer) * 1000) | round' \
                        <<<"$timing" >>"$work/${HKEY[$h]}.start"
                echo $((t1 - t0)) >>"$work/${HKEY[$h]}.stop"
        fi
}
for ((i = 0; i < POD_WARMUP + POD_N; i++)); do
        MEASURE=$((i >= POD_WARMUP ? 1 : 0))
        for h in "${HANDLERS[@]}"; do
                [ -n "${PFAILED[$h]:-}" ] && continue
                pod_once "$h" || echo "bench: handler $h FAILED: ${PERROR[$h]}" >&2
        done
done

# pod_pss HANDLER: PSS in KiB of the shim of a pod with one running container.
pod_pss() {
        local h=$1 name=bench-pss-$1 f id pid= pss=null d args i
        f=$work/$name.json
        env_pod_json "$f" --arg n "$name" --arg h "$h" '{name: $n, runtime_handler: $h,
                containers: [{name: "app", image: $img, command: ["sleep", "3600"]}]}'
        if ectl run "$f" >"$work/pss.id" 2>/dev/null; then
                id=$(head -n1 "$work/pss.id")
                for ((i = 0; i < 50; i++)); do
                        for d in /proc/[0-9]*; do
                                args=$(tr '\0' '\n' 2>/dev/null <"$d/cmdline") || continue
                                [[ ${args%%$'\n'*} = *containerd-shim-* ]] || continue
                                grep -qxF -- "$ENV_ADDR" <<<"$args" && grep -qxF -- "$id" <<<"$args" &&
                                        { pid=${d#/proc/}; break; }
                        done
                        [ -n "$pid" ] && break
                        sleep 0.1
                done
                sleep 1 # let it settle into idle
                if [ -n "$pid" ] && [ -r "/proc/$pid/smaps_rollup" ]; then
                        pss=$(awk '$1 == "Pss:" { print $2 }' "/proc/$pid/smaps_rollup")
                fi
        fi
        CTR_TIMEOUT=20 ectl rm --timeout 0 "$name" >/dev/null 2>&1 || true
        echo "${pss:-null}"
}

declare -A PSTART_MED PSTART_P90 PSTOP_MED PSTOP_P90 PPSS
for h in "${HANDLERS[@]}"; do
        k=${HKEY[$h]}
        if [ -n "${PFAILED[$h]:-}" ] || [ "$(wc -l <"$work/$k.start")" -lt "$POD_N" ]; then
                PSTART_MED[$k]=null PSTART_P90[$k]=null PSTOP_MED[$k]=null PSTOP_P90[$k]=null PPSS[$k]=null
                PFAILED[$h]=1
                continue
        fi
        PSTART_MED[$k]=$(percentile "$work/$k.start" 50)
        PSTART_P90[$k]=$(percentile "$work/$k.start" 90)
        PSTOP_MED[$k]=$(percentile "$work/$k.stop" 50)
        PSTOP_P90[$k]=$(percentile "$work/$k.stop" 90)
        PPSS[$k]=$(pod_pss "$h")
done

# ---- sandbox pods (bench/sandbox.sh) ----------------------------------------
. "$(dirname "${BASH_SOURCE[0]}")/sandbox.sh"
SB_FAILED=
if [ "${BENCH_SANDBOX:-1}" = 1 ]; then
        sandbox_bench
fi
# ---- sandbox pods from a VM template (bench/template.sh) ----------------------
. "$(dirname "${BASH_SOURCE[0]}")/template.sh"
if [ "${BENCH_TEMPLATE:-1}" = 1 ]; then
        template_bench
fi
# ---- vm pods (bench/vm.sh) ---------------------------------------------------
. "$(dirname "${BASH_SOURCE[0]}")/vm.sh"
if [ "$BENCH_VM" = 1 ]; then
        vm_bench
fi
# ---- pods through a kubelet (bench/k8s.sh; last: the kubelet would take the
# CRI pods of the rows above for orphans) -------------------------------------
. "$(dirname "${BASH_SOURCE[0]}")/k8s.sh"
if [ "${BENCH_K8S:-1}" = 1 ]; then
        k8s_bench
fi

{
        row "ctr run --rm true, median" ms "${MED[unishim]}" "${MED[baseline]}"
        row "ctr run --rm true, p90" ms "${P90[unishim]}" "${P90[baseline]}"
        row "idle shim PSS" KiB "${PSS[unishim]}" "${PSS[baseline]}"
        row "CRI pod start (RunPodSandbox+CreateContainer+StartContainer), median" ms "${PSTART_MED[unishim]}" "${PSTART_MED[baseline]}"
        row "CRI pod start, p90" ms "${PSTART_P90[unishim]}" "${PSTART_P90[baseline]}"
        row "CRI pod teardown (stop+rm, grace 0), median" ms "${PSTOP_MED[unishim]}" "${PSTOP_MED[baseline]}"
        row "CRI pod teardown, p90" ms "${PSTOP_P90[unishim]}" "${PSTOP_P90[baseline]}"
        row "pod shim PSS (1 running container)" KiB "${PPSS[unishim]}" "${PPSS[baseline]}"
        printf '%s' "$SB_ROWS" "$TPL_ROWS" "$K8S_ROWS"
} | jq -s . >"$OUT/results.json.tmp"
mv "$OUT/results.json.tmp" "$OUT/results.json"

{
        echo "| metric | unit | unishim | runc shim (baseline) | ratio unishim/runc |"
        echo "|---|---|---:|---:|---:|"
        # (sandbox/floor/vm rows without a baseline have none by design: "—")
        jq -r '.[] | "| \(.name) | \(.unit) | \(.unishim // "FAILED") | \(.baseline // (if (.name | test("^(sandbox|floor|template|vm|the node|kubelet)")) then "—" else "FAILED" end)) | \(.ratio // "n/a") |"' \
                "$OUT/results.json"
        echo
        echo "ctr rows: $N runs per runtime after $WARMUP warm-ups; CRI pod rows: $POD_N per handler" \
                "(unishim vs runc) after $POD_WARMUP warm-ups; alternating; $(nproc) CPUs; $(uname -r);" \
                "containerd $(containerd --version | awk '{ print $3 }'); $(date -u +%Y-%m-%dT%H:%M:%SZ)."
        for rt in "${RUNTIMES[@]}"; do
                if [ -n "${FAILED[$rt]:-}" ]; then
                        echo
                        echo "**$rt could not be measured**: ${ERROR[$rt]:-fewer than $N successful runs}"
                fi
        done
        for h in "${HANDLERS[@]}"; do
                if [ -n "${PFAILED[$h]:-}" ]; then
                        echo
                        echo "**CRI handler $h could not be measured**: ${PERROR[$h]:-fewer than $POD_N successful pods}"
                fi
        done
        if [ -n "$SB_ROWS$SB_NOTES" ]; then
                echo
                echo "Sandbox rows: the cold path (virtio-fs, the stock cloud image, templates off; the default path's rows" \
                        "are the template rows), $SB_N pods after a warm-up, $SB_FLOOR_N bare-QEMU boots, ${SB_MEM_MIB} MiB guests," \
                        "accelerator $(grep -qwE 'vmx|svm' /proc/cpuinfo && [ -w /dev/kvm ] && echo 'KVM or TCG' || echo TCG)." \
                        "Spawn phase from /proc/<qemu>/stat (10 ms ticks); a ratio is sandbox/baseline."
                printf '%s' "$SB_NOTES" | sed 's/^/- /'
        fi
        if [ -n "$TPL_ROWS$TPL_NOTES" ]; then
                echo
                echo "Template rows: $TPL_N rounds (stock floor, restored pod, cold 9p pod) after the template's" \
                        "build and a warm-up, idle PSS of $TPL_IDLE pods each, density levels $TPL_DENSITY;" \
                        "the image with 9p ($ENV_9P_IMAGE), ${SB_MEM_MIB} MiB, 1 vCPU, the unishim-sandbox handler."
                printf '%s' "$TPL_NOTES" | sed 's/^/- /'
        fi
        if [ -n "$K8S_NOTES" ]; then
                echo
                printf '%s' "$K8S_NOTES" | sed 's/^/- /'
        fi
} >"$OUT/results.md"

echo
cat "$OUT/results.md"
echo
echo "bench: wrote $OUT/results.json and $OUT/results.md"
for rt in "${RUNTIMES[@]}"; do
        [ -n "${FAILED[$rt]:-}" ] && { echo "bench: $rt FAILED (see above)" >&2; exit 1; }
done
for h in "${HANDLERS[@]}"; do
        [ -n "${PFAILED[$h]:-}" ] && { echo "bench: CRI handler $h FAILED (see above)" >&2; exit 1; }
done
[ -n "$SB_FAILED" ] && { echo "bench: sandbox pods FAILED (see above)" >&2; exit 1; }
[ -n "$TPL_FAILED" ] && { echo "bench: VM template rows FAILED (see above)" >&2; exit 1; }
[ -n "$K8S_FAILED" ] && { echo "bench: pods through the kubelet FAILED (see above)" >&2; exit 1; }
exit 0
