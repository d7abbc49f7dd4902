# shellcheck shell=bash
# Pod start through a kubelet: rows of bench/run.sh (sourced last, after the
# vm rows: the kubelet would take the CRI pods of the rows before for
# orphans; uses its $work, now_us, percentile, row, sb_median and the
# sandbox rows' $work/sb.total). A single-node cluster (tests/k8s/cluster.sh,
# Kubernetes v1.23 from K8S_BIN_DIR) comes up on the bench's containerd and
# goes after. For each kind, BENCH_K8S_N pods (default 10) after
# BENCH_K8S_WARMUP (default 1), kinds alternating, one pod at a time:
#
#   from `kubectl create` of a one-container pod (`sleep`) to `kubectl wait
#   --for=condition=Ready` returning (the same kubectl overhead in every
#   kind), then the pod deleted and waited for before the next
#
#   baseline  the runc RuntimeClass (the env's runc handler)
#   container RuntimeClass unishim, no annotation
#   sandbox   RuntimeClass unishim, unishim.io/isolation: sandbox
#   vm        RuntimeClass unishim, unishim.io/isolation: vm (the Debian
#             image; Ready when the domain runs, not when the guest booted),
#             BENCH_K8S_VM_N (default 2), only with the vm rows' image
#
# The kubelet learns of a started container at its relist (~1 s), so a
# figure moves in steps of about a second: the medians need the pods.
# Without the Kubernetes binaries the rows are skipped with a note.

K8S_NOTES=
K8S_ROWS=
K8S_FAILED=

# k8s_row NAME UNIT VALUE [BASELINE]: run.sh's row, kept apart from the
# sandbox rows (their notes go with them).
k8s_row() {
        K8S_ROWS+=$(row "$1" "$2" "$3" "${4:-null}")$'\n'
}
K8S_N=${BENCH_K8S_N:-10}
K8S_WARMUP=${BENCH_K8S_WARMUP:-1}
K8S_VM_N=${BENCH_K8S_VM_N:-2}

# k8s_pod_yaml NAME KIND: a pod of KIND (runc, container, sandbox, vm).
k8s_pod_yaml() {
        local name=$1 kind=$2 rtc=unishim image=$CRI_TEST_IMAGE cmd='[sleep, "3600"]'
        [ "$kind" != runc ] || rtc=runc
        if [ "$kind" = vm ]; then
                image=$CRI_VM_IMAGE
                cmd='[vm]'
        fi
        cat <<EOF
apiVersion: v1
kind: Pod
metadata:
  name: $name
  namespace: bench
$(case $kind in sandbox | vm) echo "  annotations: {unishim.io/isolation: $kind}" ;; esac)
spec:
  runtimeClassName: $rtc
  terminationGracePeriodSeconds: 1
  enableServiceLinks: false
  containers:
  - name: main
    image: $image
    imagePullPolicy: IfNotPresent
    command: $cmd
EOF
}

# k8s_log_us LINE: the epoch µs of a line of containerd's log.
k8s_log_us() {
        local line=${1#time=\"}
        date -d "${line%%\"*}" +%s%6N
}

# k8s_log_last FIXED [AND]: the last line of containerd's log (ENV_LOG) that
# has the fixed string FIXED (and AND, when given); fails when none has. The
# last: a reused env's log may hold an older pod of the same name.
k8s_log_last() {
        grep -F -- "$1" "$ENV_LOG" | grep -F -- "${2:-}" | tail -n1 | grep .
}

# k8s_cri_us NAME: µs from containerd's RunPodSandbox for the pod NAME to
# its StartContainer returning, from containerd's log: the pod's CRI calls
# as the kubelet made them, in this run. Fails when the log lacks them.
k8s_cri_us() {
        local meta="RunPodSandbox for &PodSandboxMetadata{Name:$1," t0 t1 sid cid line
        line=$(grep -F -- "$meta" "$ENV_LOG" | grep -vF 'returns sandbox id' | tail -n1 | grep .) ||
                return 1
        t0=$(k8s_log_us "$line")
        line=$(k8s_log_last "$meta" 'returns sandbox id') || return 1
        sid=$(sed -n 's/.*returns sandbox id \\"\([0-9a-f]*\)\\".*/\1/p' <<<"$line")
        [ -n "$sid" ] || return 1
        line=$(k8s_log_last "CreateContainer within sandbox \\\"$sid\\\"" 'returns container id') ||
                return 1
        cid=$(sed -n 's/.*returns container id \\"\([0-9a-f]*\)\\".*/\1/p' <<<"$line")
        [ -n "$cid" ] || return 1
        line=$(k8s_log_last "StartContainer for \\\"$cid\\\" returns successfully") || return 1
        t1=$(k8s_log_us "$line")
        echo $((t1 - t0))
}

# k8s_pod_once KIND OUTFILE: one pod to Ready; appends its µs to OUTFILE,
# and to OUTFILE.kubelet the part of it that is not the pod's CRI calls.
k8s_pod_once() {
        local kind=$1 name t0 t1 cri rc=0
        K8S_SEQ=$((K8S_SEQ + 1))
        name=bench-$kind-$K8S_SEQ
        k8s_pod_yaml "$name" "$kind" >"$work/k8s-pod.yaml"
        t0=$(now_us)
        if kc create -f "$work/k8s-pod.yaml" >/dev/null 2>"$work/k8s.err" &&
                KC_TIMEOUT=$((VM_BOOT_S + 30)) kc -n bench wait --for=condition=Ready \
                        "pod/$name" --timeout="${VM_BOOT_S}s" >/dev/null 2>>"$work/k8s.err"; then
                t1=$(now_us)
                echo $((t1 - t0)) >>"$2"
                if cri=$(k8s_cri_us "$name"); then
                        echo $((t1 - t0 - cri)) >>"$2.kubelet"
                        echo "$cri" >>"$2.cri"
                fi
        else
                rc=1
                K8S_ERR[$kind]=$(tr -d '\0' <"$work/k8s.err" | head -c 300 | tr '\n' ' ')
        fi
        KC_TIMEOUT=300 kc -n bench delete pod "$name" --wait=true --timeout=240s >/dev/null 2>&1 || rc=1
        return "$rc"
}

k8s_bench() {
        local kinds=(runc container sandbox) kind i n t
        declare -gA K8S_ERR=()
        K8S_SEQ=0
        [ "$BENCH_VM" = 0 ] || kinds+=(vm)
        export UNISHIM_ENV_NAME=$ENV_NAME K8S_DIR=$work/k8s K8S_ENV_FILE=$work/k8s-env.sh
        . "$UNISHIM_SOURCE_DIR/tests/k8s/cluster.sh"
        k8s_init
        if ! k8s_bins_found; then
                K8S_NOTES+="kubelet rows skipped: $(k8s_bins_howto)"$'\n'
                return 0
        fi
        K8S_UP=1 # (run.sh's cleanup takes the cluster down when the bench stops early)
        if ! "$UNISHIM_SOURCE_DIR/tests/k8s/k8s-up.sh" >"$work/k8s-up.log" 2>&1; then
                K8S_NOTES+="kubelet rows FAILED: k8s-up: $(tail -n 3 "$work/k8s-up.log" | tr '\n' ' ')"$'\n'
                K8S_FAILED=1
                K8S_UP=0
                "$UNISHIM_SOURCE_DIR/tests/k8s/k8s-down.sh" >/dev/null 2>&1 || true
                return 0
        fi
        k8s_bins
        printf 'apiVersion: node.k8s.io/v1\nkind: RuntimeClass\nmetadata: {name: runc}\nhandler: runc\n' |
                kc apply -f - >/dev/null
        kc create namespace bench >/dev/null
        # (the controller manager makes the namespace's service account,
        # without which the API server refuses pods)
        for ((t = 0; t < 120; t++)); do
                kc -n bench get serviceaccount default >/dev/null 2>&1 && break
                sleep 1
        done
        echo "bench: kubelet pod start, $K8S_WARMUP warm-up + $K8S_N pods per kind (${kinds[*]})"
        for kind in "${kinds[@]}"; do
                : >"$work/k8s.$kind"
                : >"$work/k8s.$kind.kubelet"
                : >"$work/k8s.$kind.cri"
                for ((i = 0; i < K8S_WARMUP; i++)); do
                        k8s_pod_once "$kind" "$work/k8s.warmup" || true
                done
        done
        for ((i = 0; i < K8S_N; i++)); do
                for kind in "${kinds[@]}"; do
                        n=$K8S_N
                        [ "$kind" != vm ] || n=$K8S_VM_N
                        [ "$i" -lt "$n" ] || continue
                        k8s_pod_once "$kind" "$work/k8s.$kind" || true
                done
        done
        K8S_UP=0
        "$UNISHIM_SOURCE_DIR/tests/k8s/k8s-down.sh" >"$work/k8s-down.log" 2>&1 ||
                K8S_NOTES+="kubelet rows: k8s-down: $(tail -n 3 "$work/k8s-down.log" | tr '\n' ' ')"$'\n'
        for kind in "${kinds[@]}"; do
                if [ ! -s "$work/k8s.$kind" ]; then
                        K8S_NOTES+="kubelet rows: the $kind kind could not be measured: ${K8S_ERR[$kind]:-no pod got Ready}"$'\n'
                        K8S_FAILED=1
                fi
        done
        local runc_ms
        runc_ms=$(sb_median "$work/k8s.runc")
        k8s_row "kubelet pod start (create -> Ready), container kind, median; baseline: runc RuntimeClass" ms "$(sb_median "$work/k8s.container")" "$runc_ms"
        k8s_row "kubelet pod start, sandbox kind, median; baseline: runc RuntimeClass" ms "$(sb_median "$work/k8s.sandbox")" "$runc_ms"
        # The goal: within one relist (~1 s) of the sandbox pod's CRI start.
        # That start is taken from the same pods (containerd's log), not from
        # the sandbox rows: with a control plane beside it on the node the
        # guest boots slower than on the idle node of those rows.
        k8s_row "kubelet pod start, sandbox kind: its CRI calls (RunPodSandbox received -> StartContainer returned, containerd's log), median" ms "$(sb_median "$work/k8s.sandbox.cri")"
        local outside
        outside=$(sb_median "$work/k8s.runc.kubelet")
        for kind in "${kinds[@]}"; do
                [ "$kind" != runc ] || continue
                k8s_row "kubelet pod start, $kind kind: the time outside its CRI calls (API server, scheduler, kubelet), median; baseline: the same for runc" ms "$(sb_median "$work/k8s.$kind.kubelet")" "$outside"
        done
        [ "$BENCH_VM" = 0 ] ||
                k8s_row "kubelet pod start, vm kind (domain running), median; baseline: runc RuntimeClass" ms "$(sb_median "$work/k8s.vm")" "$runc_ms"
        K8S_NOTES+="kubelet rows: Kubernetes v1.23 kubelet on the bench's containerd; $K8S_N pods per kind$([ "$BENCH_VM" = 0 ] || echo " ($K8S_VM_N vm)") after $K8S_WARMUP warm-up, kinds alternating; from kubectl create to kubectl wait Ready; the time outside the CRI calls is that minus each pod's RunPodSandbox..StartContainer in containerd's log."$'\n'
}
