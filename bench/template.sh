# shellcheck shell=bash
# VM-template rows of bench/run.sh: issue 10's goals (docs/vmm.md "VM
# templates"). Sourced after sandbox.sh (uses its sb_* helpers and run.sh's
# $work, ectl, env_pod_json, now_us, percentile, row). BENCH_TEMPLATE=0
# skips them.
#
# Pods of the unishim-sandbox handler, whose config (the env's, saved and put
# back after) is switched between two variants, both with shared_fs "9p" and
# the generic guest image (env_9p_image; built if missing), 256 MiB, 1 vCPU:
#   template  templates true, a template cache in $work: the first pod boots
#             cold and builds the template in the background (its build
#             time, from the shim's log, is a row); later pods are restored
#   cold      templates false: the cold 9p pod of the same run
# Measured, in this order:
#  - BENCH_TPL_N rounds (default 5) of: a bare-QEMU boot of the stock image
#    to the agent's Check (the floor of sandbox.sh, measured here again so
#    that it alternates with the pods), a restored pod, a cold pod; pod
#    start is RunPodSandbox + CreateContainer + StartContainer from
#    `unishimctl run --timing`. The restore alone: the clone's QEMU started
#    (/proc/<pid>/stat, 10 ms ticks) -> the shim's "restored from VM
#    template" line (the agent's Restore answered; containerd's log time).
#  - two pods started at once (two `unishimctl run` in the background, wall
#    time until both returned) against one alone (wall time, median of the
#    rounds), restored and cold
#  - idle PSS averaged over BENCH_TPL_IDLE pods (default 10), cold and
#    restored, 10 s after the last started: shim, QEMU, virtiofsd (none on
#    9p); a restored QEMU without its mapping of the template's RAM, and
#    that RAM (the holder's sealed memfd, resident pages) counted once
#  - one idle clone's CPU use over 10 s
#  - density: one more restored pod's start (median of BENCH_TPL_PROBES, 3)
#    with none and with BENCH_TPL_DENSITY idle restored pods running
#    (default "1 10 20"; the issue's 100 can be asked for, but on a 2-core
#    TCG host the idle clones saturate the CPU at 40-50 of them and pods
#    then fail: docs/performance.md, "VM templates: the goals"). The idle
#    pods are started two at a time and kept from one level to the next.
#    A level is not measured, with a note, when fewer than 2 GiB would
#    remain available, when the section has run longer than
#    BENCH_TPL_BUDGET_S (default 900), or when an idle pod fails to start
#    (a limit of the node: noted, not a failure of the run).
# Sets TPL_ROWS, TPL_NOTES and TPL_FAILED (no template, or a pod of the
# rounds, or the first pod, could not start).

TPL_N=${BENCH_TPL_N:-5}
TPL_IDLE=${BENCH_TPL_IDLE:-10}
TPL_DENSITY=${BENCH_TPL_DENSITY:-1 10 20}
TPL_BUDGET_S=${BENCH_TPL_BUDGET_S:-900}
TPL_PROBES=${BENCH_TPL_PROBES:-3}
TPL_ROWS=
TPL_NOTES=
TPL_FAILED=
TPL_SAVED=

tpl_row() { # NAME UNIT VALUE [BASELINE]
        TPL_ROWS+=$(row "template: $1" "$2" "$3" "${4:-null}")$'\n'
}
tpl_note() { TPL_NOTES+="$*"$'\n'; }

# tpl_use template|cold: the unishim-sandbox handler's config for the next
# pods (read when a pod's first task is created), replaced whole.
tpl_use() {
        cp "$work/tpl-$1.json" "$ENV_SANDBOX_CONFIG.tmp"
        mv "$ENV_SANDBOX_CONFIG.tmp" "$ENV_SANDBOX_CONFIG"
}

tpl_ctl() { "$UNISHIMCTL" template "$@" --config "$work/tpl-template.json"; }

# template_cleanup: the env's handler config back, the bench's templates
# (their holders outlive the pods) removed. run.sh's cleanup calls it too.
template_cleanup() {
        [ -n "$TPL_SAVED" ] || return 0
        cp "$work/sandbox-config.json" "$ENV_SANDBOX_CONFIG"
        [ ! -d "$work/templates" ] || tpl_ctl rm --all >/dev/null 2>&1 || true
        TPL_SAVED=
}

# tpl_pod NAME: a one-container (sleep) pod of the unishim-sandbox handler.
tpl_pod() {
        env_pod_json "$work/$1.json" --arg n "$1" '{name: $n, runtime_handler: "unishim-sandbox",
                containers: [{name: "app", image: $img, command: ["sleep", "3600"]}]}'
}

# tpl_run NAME: runs pod NAME; sets TPL_ID, TPL_START (µs, the three CRI
# calls), TPL_WALL (µs, the whole `unishimctl run`). Returns 1 with TPL_ERR.
tpl_run() {
        local t0 t1
        tpl_pod "$1"
        t0=$(now_us)
        if ! CTR_TIMEOUT=$((CTR_TIMEOUT * 4)) ectl run --timing "$work/$1.json" >"$work/$1.id" 2>"$work/$1.timing"; then
                # (|| true: head's early exit fails the pipeline under pipefail)
                TPL_ERR="$1: $(tr -d '\0' <"$work/$1.timing" | head -c 300 | tr '\n' ' ')" || true
                CTR_TIMEOUT=30 ectl rm --timeout 0 "$1" >/dev/null 2>&1 || true
                return 1
        fi
        t1=$(now_us)
        TPL_WALL=$((t1 - t0))
        TPL_ID=$(head -n1 "$work/$1.id")
        TPL_START=$(grep '^{' "$work/$1.timing" | tail -n1 |
                jq -r '((.RunPodSandbox + .CreateContainer + .StartContainer) * 1000) | round')
}

tpl_rm() { CTR_TIMEOUT=30 ectl rm --timeout 0 "$@" >/dev/null 2>&1 || true; }

# tpl_rm_all NAME...: removes the pods, four at a time.
tpl_rm_all() {
        local pids=() n
        for n in "$@"; do
                tpl_rm "$n" &
                pids+=($!)
                if [ "${#pids[@]}" = 4 ]; then
                        wait "${pids[@]}"
                        pids=()
                fi
        done
        [ "${#pids[@]}" = 0 ] || wait "${pids[@]}"
}

# tpl_log_us TEXT: containerd's log time of the first line with TEXT, as
# epoch µs; returns 1 when there is none.
tpl_log_us() {
        local line ts
        line=$(grep -m1 -aF -- "$1" "$ENV_LOG")
        ts=$(sed -n 's/^time="\([^"]*\)".*/\1/p' <<<"$line")
        [ -n "$ts" ] || return 1
        date -u -d "$ts" +%s%6N
}

# tpl_restored ID: the shim logged pod ID's restore (the agent's Restore
# answered). The line is written before RunPodSandbox answers; containerd
# copies the shim's log asynchronously, so a short wait for it.
tpl_restored() {
        local i
        for ((i = 0; i < 50; i++)); do
                grep -aqF -- "pod $1: restored from VM template" "$ENV_LOG" && return 0
                grep -aqE -- "pod $1: .*boots cold" "$ENV_LOG" && return 1
                sleep 0.1
        done
        return 1
}

tpl_ready() { tpl_ctl list 2>/dev/null | grep -q ' state=ready '; }

# tpl_template_pss_kib PID: PSS (KiB) of PID's mappings of the template RAM.
tpl_template_pss_kib() {
        awk '/^[0-9a-f]+-[0-9a-f]+ / { t = ($0 ~ /memfd:unishim-template/) }
             t && $1 == "Pss:" { s += $2 } END { print s + 0 }' "/proc/$1/smaps" 2>/dev/null || echo 0
}

# tpl_holder_resident_kib: resident KiB of the template RAM the holder keeps
# (its sealed memfd), "null" when no holder or memfd is found.
tpl_holder_resident_kib() {
        local holder fd
        holder=$(tpl_ctl list 2>/dev/null | awk '$2 == "state=ready" { sub("holder=", "", $3); print $3; exit }')
        [ -n "$holder" ] || { echo null; return; }
        for fd in /proc/"$holder"/fd/*; do
                [[ $(readlink "$fd" 2>/dev/null) = *memfd:unishim-template* ]] || continue
                fincore --bytes --noheadings --raw --output RES "$fd" 2>/dev/null | awk '{ print int($1 / 1024) }'
                return
        done
        echo null
}

tpl_avg() { awk '{ s += $1; n++ } END { if (n) printf "%.0f\n", s / n; else print "null" }' "$1"; }

# tpl_idle_pss KIND ID...: the pods' PSS parts (KiB) into
# $work/tpl.pss-KIND.{shim,qemu,tmap,qemu-own,vfs,nvfs}, one line per pod
# (tmap: QEMU's mapping of the template's RAM; qemu-own: QEMU without it).
tpl_idle_pss() {
        local kind=$1 id shim q vfs tp
        shift
        for id in "$@"; do
                shim=$(sb_shim_pids "$id")
                q=$(sb_qemu_pid "$id")
                vfs=$(sb_virtiofsd_pids $shim)
                # (the cold pods map no template: tp is 0)
                tp=$([ -n "$q" ] && tpl_template_pss_kib "$q" || echo 0)
                sb_pss $shim >>"$work/tpl.pss-$kind.shim"
                sb_pss $q >>"$work/tpl.pss-$kind.qemu"
                echo "$tp" >>"$work/tpl.pss-$kind.tmap"
                echo $(($(sb_pss $q) - tp)) >>"$work/tpl.pss-$kind.qemu-own"
                sb_pss $vfs >>"$work/tpl.pss-$kind.vfs"
                echo $vfs | wc -w >>"$work/tpl.pss-$kind.nvfs"
        done
}

# tpl_two KIND: two pods of the current config started at once; appends the
# wall time until both `unishimctl run` returned (µs) to $work/tpl.two-KIND.
tpl_two() {
        local j pids=() t0 t1 ok=1
        for j in 0 1; do tpl_pod "bench-tpl-two-$1-$j"; done
        t0=$(now_us)
        for j in 0 1; do
                CTR_TIMEOUT=$((CTR_TIMEOUT * 4)) ectl run --timing "$work/bench-tpl-two-$1-$j.json" \
                        >"$work/two-$1-$j.id" 2>"$work/two-$1-$j.timing" &
                pids+=($!)
        done
        # (the env's daemons are this shell's children too: wait for these two)
        for j in 0 1; do wait "${pids[$j]}" || ok=0; done
        t1=$(now_us)
        if [ "$ok" = 1 ]; then
                echo $((t1 - t0)) >>"$work/tpl.two-$1"
                if [ "$1" = restored ]; then
                        for j in 0 1; do
                                tpl_restored "$(head -n1 "$work/two-$1-$j.id")" ||
                                        tpl_note "2 restored at once: pod $j booted cold (see containerd's log)"
                        done
                fi
        else
                tpl_note "2 $1 pods at once: a pod failed: $(cat "$work/two-$1-0.timing" "$work/two-$1-1.timing" | tr -d '\0' | grep -v '^{' | head -c 300 | tr '\n' ' ')"
        fi
        tpl_rm_all "bench-tpl-two-$1-0" "bench-tpl-two-$1-1"
}

template_bench() {
        local t_begin i ir q qs rs key
        t_begin=$(now_us)
        if ! command -v qemu-system-x86_64 >/dev/null; then
                tpl_note "template rows skipped: qemu-system-x86_64 missing."
                return 0
        fi
        if ! env_9p_image; then
                tpl_note "**template rows not measured**: $ENV_9P_ERR"
                TPL_FAILED=1
                return 0
        fi
        [ "$ENV_9P_BUILT" = 0 ] || tpl_note "the generic guest image was built for these rows ($ENV_9P_IMAGE)."
        sb_images
        echo "bench: VM templates ($TPL_N rounds of floor/restored/cold, 2 at once, PSS of $TPL_IDLE idle pods, density: $TPL_DENSITY)"

        cp "$ENV_SANDBOX_CONFIG" "$work/sandbox-config.json"
        TPL_SAVED=1
        ir=$ENV_9P_IMAGE/initramfs.cpio
        [ -f "$ir" ] || ir=$ENV_9P_IMAGE/initramfs.cpio.gz
        mkdir -m 0700 "$work/templates"
        jq --arg k "$ENV_9P_IMAGE/vmlinux" --arg i "$ir" --arg t "$work/templates" --argjson m "$SB_MEM_MIB" \
                '.sandbox.shared_fs = "9p" | .sandbox.templates = true | .sandbox.kernel = $k
                 | .sandbox.initrd = $i | .sandbox.template_dir = $t | .sandbox.memory_mib = $m | .sandbox.vcpus = 1' \
                "$work/sandbox-config.json" >"$work/tpl-template.json"
        jq '.sandbox.templates = false' "$work/tpl-template.json" >"$work/tpl-cold.json"

        # ---- the template: built by the first pod in the background ----
        tpl_use template
        if ! tpl_run bench-tpl-first; then
                tpl_note "**template: the first pod failed**: $TPL_ERR"
                TPL_FAILED=1
                template_cleanup
                return 0
        fi
        local first=$TPL_ID build_ms=null b0 b1
        # The deadline only guards against a hang: a cold boot and a save.
        for ((i = 0; i < 1200; i++)); do
                tpl_ready && break
                grep -aqE -- "pod $first: (building VM template .* failed|VM template .* not built)" "$ENV_LOG" && break
                sleep 0.5
        done
        if ! tpl_ready; then
                tpl_note "**template: not built**: $(tpl_ctl list 2>&1 | head -c 200); $(grep -a "pod $first" "$ENV_LOG" | grep -a 'VM template' | tail -n2 | head -c 400)"
                TPL_FAILED=1
                tpl_rm bench-tpl-first
                template_cleanup
                return 0
        fi
        key=$(tpl_ctl list 2>/dev/null | awk '$2 == "state=ready" { print $1; exit }')
        if b0=$(tpl_log_us "pod $first: building VM template $key in the background") &&
                b1=$(tpl_log_us "pod $first: VM template $key built"); then
                build_ms=$(awk -v d=$((b1 - b0)) 'BEGIN { printf "%.3f\n", d / 1000 }')
        fi
        tpl_rm bench-tpl-first

        # ---- rounds: floor, restored, cold ----
        : >"$work/tpl.floor"
        for f in r.start r.wall r.restore c.start c.wall; do : >"$work/tpl.$f"; done
        local cold_fallbacks=0
        # warm-up: the first clone of a template (page cache of its state)
        tpl_run bench-tpl-warm && tpl_rm bench-tpl-warm
        for ((i = 0; i < TPL_N; i++)); do
                if [ -f "$SB_STOCK_IMG/vmlinux" ] && [ -x "$SB_CTL" ]; then
                        sb_floor_boot "$work/tpl-floor-$i" "$SB_STOCK_IMG" "$work/tpl.floor" || tpl_note "$SB_FLOOR_ERR"
                fi
                tpl_use template
                if ! tpl_run "bench-tpl-r-$i"; then
                        tpl_note "**restored pod failed**: $TPL_ERR"
                        TPL_FAILED=1
                        break
                fi
                q=$(sb_qemu_pid "$TPL_ID")
                if tpl_restored "$TPL_ID"; then
                        echo "$TPL_START" >>"$work/tpl.r.start"
                        echo "$TPL_WALL" >>"$work/tpl.r.wall"
                        if [ -n "$q" ] && qs=$(sb_start_epoch_us "$q") &&
                                rs=$(tpl_log_us "pod $TPL_ID: restored from VM template"); then
                                echo $((rs - qs)) >>"$work/tpl.r.restore"
                        fi
                else
                        cold_fallbacks=$((cold_fallbacks + 1))
                fi
                tpl_rm "bench-tpl-r-$i"
                tpl_use cold
                if ! tpl_run "bench-tpl-c-$i"; then
                        tpl_note "**cold 9p pod failed**: $TPL_ERR"
                        TPL_FAILED=1
                        break
                fi
                echo "$TPL_START" >>"$work/tpl.c.start"
                echo "$TPL_WALL" >>"$work/tpl.c.wall"
                tpl_rm "bench-tpl-c-$i"
        done
        [ "$cold_fallbacks" = 0 ] ||
                tpl_note "$cold_fallbacks of $TPL_N pods meant to be restored booted cold (not counted as restored; containerd's log says why)"

        # ---- two at once ----
        : >"$work/tpl.two-restored"
        : >"$work/tpl.two-cold"
        tpl_use template
        tpl_two restored
        tpl_use cold
        tpl_two cold

        # ---- idle PSS: cold pods ----
        local names=() ids=() k
        for ((k = 0; k < TPL_IDLE; k++)); do
                tpl_run "bench-tpl-cidle-$k" || {
                        tpl_note "idle cold pods: only $k of $TPL_IDLE started: $TPL_ERR"
                        break
                }
                names+=("bench-tpl-cidle-$k")
                ids+=("$TPL_ID")
        done
        if [ "${#ids[@]}" -gt 0 ]; then
                sleep 10 # settle (the guest reports blocks free for ~2 s)
                tpl_idle_pss cold "${ids[@]}"
        fi
        tpl_rm_all "${names[@]}"

        # ---- idle PSS of restored pods, CPU of one, density ----
        tpl_use template
        local levels n cpu=null started=0 fails=0 pss_n=0 need_kib avail_kib t_probe dens=() tmpl_kib=null
        local st0 st1 pids failed err pid
        # (level 0: the probes' baseline, taken in the same minutes as the
        # levels, not from the rounds, which other load may have hit)
        levels=$(printf '%s\n' 0 "$TPL_IDLE" $TPL_DENSITY | sort -nu)
        names=()
        ids=()
        for n in $levels; do
                if (($(now_us) - t_begin > TPL_BUDGET_S * 1000000)); then
                        tpl_note "density from $n idle pods on not measured: the section ran past BENCH_TPL_BUDGET_S=$TPL_BUDGET_S s"
                        break
                fi
                # ~80 MiB per restored pod (measured: shim + QEMU); keep 2 GiB
                avail_kib=$(awk '$1 == "MemAvailable:" { print $2 }' /proc/meminfo)
                need_kib=$(((n - started) * 80 * 1024 + 2 * 1024 * 1024))
                if [ "$avail_kib" -lt "$need_kib" ]; then
                        tpl_note "density from $n idle pods on not measured: $((avail_kib / 1024)) MiB available, $((need_kib / 1024)) MiB wanted"
                        break
                fi
                while [ "$started" -lt "$n" ]; do
                        pids=()
                        for k in "$started" $((started + 1)); do
                                [ "$k" -lt "$n" ] || break
                                tpl_run "bench-tpl-idle-$k" >/dev/null 2>&1 &
                                pids+=($!)
                                names+=("bench-tpl-idle-$k")
                        done
                        for k in "${!pids[@]}"; do
                                wait "${pids[$k]}" || {
                                        fails=$((fails + 1))
                                        failed=bench-tpl-idle-$((started + k))
                                }
                        done
                        started=$((started + ${#pids[@]}))
                        [ "$fails" = 0 ] || break
                        if [ "$cpu" = null ]; then
                                # One idle clone's CPU: what each idle pod costs
                                # the pods that start next.
                                q=$(sb_qemu_pid "$(head -n1 "$work/bench-tpl-idle-0.id")")
                                sleep 5
                                if [ -n "$q" ] && st0=$(awk '{ print $14 + $15 }' "/proc/$q/stat"); then
                                        sleep 10
                                        st1=$(awk '{ print $14 + $15 }' "/proc/$q/stat")
                                        cpu=$(awk -v d=$((st1 - st0)) -v hz="$CLK_TCK" 'BEGIN { printf "%.2f\n", d / hz / 10 * 100 }')
                                else
                                        cpu=unknown
                                fi
                        fi
                done
                if [ "$fails" != 0 ]; then
                        # A limit of the node, not a failure of the bench: noted,
                        # and the levels from here on are not measured.
                        err=$(tr -d '\0' <"$work/$failed.timing" | grep -v '^{' | tr '\n' ' ') || true
                        pid=$(grep -oE '[0-9a-f]{64}' <<<"$err" | head -n1 || true)
                        tpl_note "**density from $n idle pods on not measured: $fails of $started idle restored pods failed to start** (load average $(cut -d' ' -f1 /proc/loadavg)); $failed: ${err:0:700}"
                        [ -z "$pid" ] ||
                                tpl_note "the containerd log of $failed: $(grep -a -- "$pid" "$ENV_LOG" | grep -aE 'level=(warning|error)' | tail -n3 | cut -c1-400 | tr '\n' ' ')"
                        break
                fi
                if [ "$n" = "$TPL_IDLE" ]; then
                        ids=()
                        for k in "${names[@]}"; do ids+=("$(head -n1 "$work/$k.id")"); done
                        sleep 10 # settle, as the cold pods did
                        tpl_idle_pss restored "${ids[@]}"
                        pss_n=${#ids[@]}
                        tmpl_kib=$(tpl_holder_resident_kib)
                        k=0
                        for q in "${ids[@]}"; do tpl_restored "$q" || k=$((k + 1)); done
                        [ "$k" = 0 ] || tpl_note "PSS: $k of the $pss_n idle pods meant to be restored booted cold"
                fi
                if [ "$n" = 0 ] || [[ " $TPL_DENSITY " = *" $n "* ]]; then
                        : >"$work/tpl.probe"
                        for ((k = 0; k < TPL_PROBES; k++)); do
                                if tpl_run bench-tpl-probe; then
                                        if tpl_restored "$TPL_ID"; then
                                                echo "$TPL_START" >>"$work/tpl.probe"
                                        else
                                                tpl_note "density $n: a probe pod booted cold (not counted)"
                                        fi
                                else
                                        tpl_note "density $n: a probe pod failed: $TPL_ERR"
                                fi
                                tpl_rm bench-tpl-probe
                        done
                        dens+=("$n:$(sb_median "$work/tpl.probe")")
                        avail_kib=$(awk '$1 == "MemAvailable:" { print $2 }' /proc/meminfo)
                        tpl_note "density $n: probe starts (ms) $(awk '{ printf "%.0f ", $1 / 1000 }' "$work/tpl.probe"), load average $(cut -d' ' -f1 /proc/loadavg), $((avail_kib / 1024)) MiB available"
                fi
        done
        k=0
        for q in "${names[@]}"; do
                [ -s "$work/$q.id" ] && ! tpl_restored "$(head -n1 "$work/$q.id")" && k=$((k + 1))
        done
        [ "$k" = 0 ] || tpl_note "$k of the ${#names[@]} idle pods meant to be restored booted cold"
        tpl_rm_all "${names[@]}"

        # ---- rows ----
        local floor rmed cmed
        floor=$(sb_median "$work/tpl.floor")
        rmed=$(sb_median "$work/tpl.r.start")
        cmed=$(sb_median "$work/tpl.c.start")
        tpl_row "restored sandbox pod start (RunPodSandbox+CreateContainer+StartContainer), median; baseline: stock floor (bare QEMU boot of the stock image to agent Check, alternating)" ms "$rmed" "$floor"
        tpl_row "cold 9p sandbox pod start, median; baseline: stock floor" ms "$cmed" "$floor"
        tpl_row "restored pod start; baseline: cold 9p pod start, medians" ms "$rmed" "$cmed"
        tpl_row "stock floor alternating with these pods, median" ms "$floor"
        tpl_row "restore alone: clone's QEMU started -> agent's Restore answered (shim's log), median; baseline: stock floor" ms \
                "$(sb_median "$work/tpl.r.restore")" "$floor"
        tpl_row "template build by the first pod, in the background (shim's log: started -> built)" ms "$build_ms"
        tpl_row "2 restored pods started at once, wall time until both returned; baseline: one alone (wall, median)" ms \
                "$(sb_median "$work/tpl.two-restored")" "$(sb_median "$work/tpl.r.wall")"
        tpl_row "2 cold 9p pods started at once, wall time until both returned; baseline: one alone (wall, median)" ms \
                "$(sb_median "$work/tpl.two-cold")" "$(sb_median "$work/tpl.c.wall")"
        local r_shim r_own r_vfs c_shim c_qemu c_vfs r_pod=null c_pod=null tmpl_per=null
        r_shim=$(tpl_avg "$work/tpl.pss-restored.shim" 2>/dev/null || echo null)
        r_own=$(tpl_avg "$work/tpl.pss-restored.qemu-own" 2>/dev/null || echo null)
        r_vfs=$(tpl_avg "$work/tpl.pss-restored.vfs" 2>/dev/null || echo null)
        c_shim=$(tpl_avg "$work/tpl.pss-cold.shim" 2>/dev/null || echo null)
        c_qemu=$(tpl_avg "$work/tpl.pss-cold.qemu" 2>/dev/null || echo null)
        c_vfs=$(tpl_avg "$work/tpl.pss-cold.vfs" 2>/dev/null || echo null)
        if [ "$r_shim" != null ] && [ "$r_own" != null ] && [ "$tmpl_kib" != null ] && [ "$pss_n" -gt 0 ]; then
                tmpl_per=$((tmpl_kib / pss_n))
                r_pod=$((r_shim + r_own + ${r_vfs/null/0} + tmpl_per))
        fi
        [ "$c_shim" = null ] || [ "$c_qemu" = null ] || c_pod=$((c_shim + c_qemu + ${c_vfs/null/0}))
        tpl_row "idle restored pod PSS, average of $pss_n (shim + QEMU without the template's RAM + virtiofsd + the template's resident RAM / $pss_n); baseline: idle cold 9p pod (shim + QEMU + virtiofsd), average" KiB "$r_pod" "$c_pod"
        tpl_row "idle pod PSS part: shim, average; baseline: cold" KiB "$r_shim" "$c_shim"
        tpl_row "idle pod PSS part: QEMU without the template's RAM, average; baseline: cold QEMU" KiB "$r_own" "$c_qemu"
        tpl_row "idle pod PSS part: QEMU's mapping of the template's RAM, average (counted in the next row instead)" KiB \
                "$(tpl_avg "$work/tpl.pss-restored.tmap" 2>/dev/null || echo null)"
        tpl_row "idle pod PSS part: the template's resident RAM (the holder's memfd, once per node) / $pss_n" KiB "$tmpl_per"
        tpl_row "idle pod PSS part: virtiofsd, average (none on 9p); baseline: cold" KiB "$r_vfs" "$c_vfs"
        tpl_row "idle restored QEMU CPU over 10 s, % of one core" "%" "${cpu/unknown/null}"
        local kv d0=null
        for kv in "${dens[@]}"; do
                [ "${kv%%:*}" != 0 ] || d0=${kv#*:}
        done
        for kv in "${dens[@]}"; do
                [ "${kv%%:*}" != 0 ] || continue
                tpl_row "restored pod start with ${kv%%:*} idle restored pods running, median of $TPL_PROBES; baseline: none running, the same probe just before" ms \
                        "${kv#*:}" "$d0"
        done
        [ ! -s "$work/tpl.pss-restored.nvfs" ] ||
                tpl_note "virtiofsd processes per pod: restored $(sort -u "$work/tpl.pss-restored.nvfs" | tr '\n' ' '), cold $(sort -u "$work/tpl.pss-cold.nvfs" 2>/dev/null | tr '\n' ' ')"
        tpl_note "template: key ${key:0:12}, the template's RAM resident ${tmpl_kib} KiB; image $ENV_9P_IMAGE ($(cat "$ENV_9P_IMAGE/kernel-release" 2>/dev/null)); the floor's image $SB_STOCK_IMG ($(cat "$SB_STOCK_IMG/kernel-release" 2>/dev/null))"
        tpl_note "the section took $((($(now_us) - t_begin) / 1000000)) s; load average at its end $(cut -d' ' -f1-3 /proc/loadavg)"
        template_cleanup
        return 0
}
