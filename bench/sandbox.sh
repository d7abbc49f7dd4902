# shellcheck shell=bash
# Sandbox-pod rows of bench/run.sh (sourced after its CRI section; uses its
# $work, ectl, env_pod_json, now_us, percentile). Bounded: BENCH_SB_N pods
# (default 5) for the phase split, a bare-QEMU floor (BENCH_SB_FLOOR_N, 3),
# one PSS comparison, and density (one more pod while BENCH_SB_DENSITY="1 5
# 10 20" idle sandbox pods run; about 1.5 minutes of the run on a 2-core TCG
# host).
#
# Phases of a sandbox pod start (ms):
#   RunPodSandbox / CreateContainer / StartContainer  from `unishimctl run --timing`
#   to QEMU spawn   RunPodSandbox start → the pod's qemu-system-x86_64 started
#                   (/proc/<pid>/stat starttime, 10 ms ticks; CRI + CNI + shim
#                   start + netplumb + virtiofsd)
#   QEMU → sandbox ready  QEMU start → RunPodSandbox returned (kernel boot,
#                   agent ready, the pause container in the guest)
#   floor           a bare QEMU of the same kernel + initramfs, same flags
#                   (without tap and virtio-fs) until the agent answers a
#                   ttrpc Check (unishim-agent-ctl); the stock (Debian
#                   package) kernel's image, the baseline of the rows
#   minimal floor   the same with the minimal kernel's image (docs/guest.md;
#                   `cmake --build build --target guest-image-minimal`),
#                   booted alternately with the stock one
# Sets SB_ROWS (newline-separated JSON rows for results.json) and SB_NOTES.

SB_N=${BENCH_SB_N:-5}
SB_FLOOR_N=${BENCH_SB_FLOOR_N:-3}
SB_DENSITY=${BENCH_SB_DENSITY:-1 5 10 20}
SB_ROWS=
SB_NOTES=
SB_ANN='{"unishim.io/isolation": "sandbox"}'
SB_MEM_MIB=256
CLK_TCK=$(getconf CLK_TCK)

sb_row() { # NAME UNIT VALUE [BASELINE]
        SB_ROWS+=$(row "$1" "$2" "$3" "${4:-null}")$'\n'
}

# sb_qemu_pid ID: the qemu-system-x86_64 with -name unishim-<id>.
sb_qemu_pid() {
        local d args
        for d in /proc/[0-9]*; do
                args=$(tr '\0' '\n' 2>/dev/null <"$d/cmdline") || continue
                [[ ${args%%$'\n'*} = *qemu-system-x86_64* ]] || continue
                grep -qE -- "^unishim-$1(,|\$)" <<<"$args" && { echo "${d#/proc/}"; return 0; }
        done
        return 0
}

# sb_start_epoch_us PID: the process's start time as epoch µs (10 ms ticks).
sb_start_epoch_us() {
        local st up now
        st=$(awk '{ print $22 }' "/proc/$1/stat" 2>/dev/null) || return 1
        now=$(now_us)
        up=$(awk '{ print $1 }' /proc/uptime)
        awk -v st="$st" -v hz="$CLK_TCK" -v up="$up" -v now="$now" \
                'BEGIN { printf "%.0f\n", now - (up - st / hz) * 1e6 }'
}

# sb_pss_tree PID...: summed PSS (KiB) of the processes.
sb_pss() {
        local p s=0 v
        for p in "$@"; do
                v=$(awk '$1 == "Pss:" { print $2 }' "/proc/$p/smaps_rollup" 2>/dev/null) || continue
                s=$((s + ${v:-0}))
        done
        echo "$s"
}

# sb_shim_pids ID: the pids of this env's shim(s) serving pod sandbox ID.
sb_shim_pids() {
        local d a
        for d in /proc/[0-9]*; do
                a=$(tr '\0' '\n' 2>/dev/null <"$d/cmdline") || continue
                [[ ${a%%$'\n'*} = *containerd-shim-* ]] && grep -qxF -- "$ENV_ADDR" <<<"$a" &&
                        grep -qxF -- "$1" <<<"$a" && echo "${d#/proc/}"
        done
        return 0
}

# sb_virtiofsd_pids SHIM_PID...: the virtiofsd processes of these shims, by
# ancestry: the shim starts it (in a user namespace of its own, its command
# line names no pod path), and its namespace sandbox forks once more.
sb_virtiofsd_pids() {
        local shims=" $* " d q
        for d in /proc/[0-9]*; do
                [ "$(cat "$d/comm" 2>/dev/null)" = virtiofsd ] || continue
                q=${d#/proc/}
                for _ in 1 2 3; do
                        q=$(awk '$1 == "PPid:" { print $2 }' "/proc/$q/status" 2>/dev/null)
                        [ -n "$q" ] && [ "$q" -gt 1 ] || break
                        [[ $shims != *" $q "* ]] || { echo "${d#/proc/}"; break; }
                done
        done
        return 0
}

# sb_pod_json NAME: a one-container (sleep) sandbox pod description.
sb_pod_json() {
        env_pod_json "$work/$1.json" --arg n "$1" --argjson a "$SB_ANN" '{name: $n, runtime_handler: "unishim",
                annotations: $a, containers: [{name: "app", image: $img, command: ["sleep", "3600"]}]}'
        echo "$work/$1.json"
}

# sb_run NAME: run --timing; on success sets SB_TIMING, SB_T0 (µs before the
# call), SB_ID, SB_QEMU. Returns 1 on failure (SB_ERR).
sb_run() {
        local f
        f=$(sb_pod_json "$1")
        SB_T0=$(now_us)
        if ! ectl run --timing "$f" >"$work/sb.id" 2>"$work/sb.timing"; then
                SB_ERR=$(tr -d '\0' <"$work/sb.timing" | head -c 300 | tr '\n' ' ')
                CTR_TIMEOUT=30 ectl rm --timeout 0 "$1" >/dev/null 2>&1 || true
                return 1
        fi
        SB_TIMING=$(grep '^{' "$work/sb.timing" | tail -n1)
        SB_ID=$(head -n1 "$work/sb.id")
        SB_QEMU=$(sb_qemu_pid "$SB_ID")
}

sb_median() { [ -s "$1" ] && percentile "$1" 50 || echo null; }

# sb_images: the floor's guest images. SB_STOCK_IMG: the stock kernel's,
# the baseline (the build's own, or cloud/ when the build selected the
# minimal kernel); SB_MIN_IMG: the minimal kernel's (minimal/, or the
# build's own; "" when not built); SB_CTL: unishim-agent-ctl; SB_KHZ: the
# host's TSC rate for the guest's command line.
sb_images() {
        local img=$UNISHIM_BUILD_DIR/vmm/guest-image
        SB_CTL=$UNISHIM_BUILD_DIR/guest-agent/unishim-agent-ctl
        SB_STOCK_IMG=$img
        SB_MIN_IMG=
        [ ! -f "$img/cloud/vmlinux" ] || SB_STOCK_IMG=$img/cloud
        if [ -f "$img/minimal/vmlinux" ]; then
                SB_MIN_IMG=$img/minimal
        elif [[ $(cat "$img/kernel-release" 2>/dev/null) = *-unishim-minimal ]]; then
                SB_MIN_IMG=$img
        fi
        SB_KHZ=$(awk -F: '/^cpu MHz/ { printf "%d\n", $2 * 1000; exit }' /proc/cpuinfo)
}

# sb_bare_qemu DIR [BALLOON [IMAGE_DIR]]: starts a bare QEMU of IMAGE_DIR
# (default: the stock one) in the background with the shim's flags but no
# tap and no share, free page reporting unless BALLOON is off; sets QPID.
sb_bare_qemu() {
        local balloon=(-device virtio-balloon-device,free-page-reporting=on,deflate-on-oom=off)
        local bimg=${3:-$SB_STOCK_IMG} initrd
        [ "${2:-on}" = on ] || balloon=()
        initrd=$bimg/initramfs.cpio
        [ -f "$initrd" ] || initrd=$bimg/initramfs.cpio.gz
        mkdir -p "$1"
        qemu-system-x86_64 -name "unishim-bench-floor,debug-threads=on" \
                -M microvm,x-option-roms=off,pit=on,pic=off,isa-serial=on,rtc=on,memory-backend=mem \
                -accel tcg,tb-size=32 -cpu max -m ${SB_MEM_MIB}M \
                -object memory-backend-memfd,id=mem,size=${SB_MEM_MIB}M,share=on \
                -smp 1 -global virtio-mmio.force-legacy=false -nodefaults -no-user-config -nographic -no-reboot \
                -sandbox on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny \
                -kernel "$bimg/vmlinux" -initrd "$initrd" \
                -append "console=ttyS0 reboot=t panic=-1 pci=off quiet cryptomgr.notests tsc_early_khz=$SB_KHZ" \
                -chardev "file,id=console,path=$1/console.log" -serial chardev:console \
                -device virtio-serial-device \
                -chardev "socket,id=agent,path=$1/agent.sock,server=on,wait=off" \
                -device virtserialport,chardev=agent,name=unishim.agent \
                -chardev "socket,id=events,path=$1/events.sock,server=on,wait=off" \
                -device virtserialport,chardev=events,name=unishim.events "${balloon[@]}" \
                </dev/null >"$1/qemu.log" 2>&1 &
        QPID=$!
}

# sb_floor_boot DIR IMAGE_DIR OUT: one bare boot of IMAGE_DIR (sb_images
# first) to the agent's Check answer, its time (µs) appended to OUT;
# returns 1 with SB_FLOOR_ERR when the agent did not answer.
sb_floor_boot() {
        local t0 t1 qpid rc=0
        t0=$(now_us)
        sb_bare_qemu "$1" on "$2"
        qpid=$QPID
        if timeout 60 "$SB_CTL" --wait-ms 50000 "$1/agent.sock" check >"$1/check" 2>&1; then
                t1=$(now_us)
                echo $((t1 - t0)) >>"$3"
        else
                SB_FLOOR_ERR="bare QEMU boot $1 ($2): no agent Check answer: $(head -c 200 "$1/check")"
                rc=1
        fi
        kill -KILL "$qpid" 2>/dev/null || true
        wait "$qpid" 2>/dev/null || true
        return "$rc"
}

sandbox_bench() {
        local i name t rps qs qrel d
        if ! command -v qemu-system-x86_64 >/dev/null; then
                SB_NOTES+="sandbox rows skipped: qemu-system-x86_64 missing."$'\n'
                return 0
        fi
        echo "bench: sandbox pods ($SB_N starts, floor $SB_FLOOR_N boots, PSS, density: $SB_DENSITY)"
        for t in rps cc sc total spawn boot; do : >"$work/sb.$t"; done
        # warm-up (image pulled, page cache)
        sb_run bench-sb-warm && CTR_TIMEOUT=30 ectl rm --timeout 0 bench-sb-warm >/dev/null 2>&1 || true
        for ((i = 0; i < SB_N; i++)); do
                name=bench-sb-$i
                if ! sb_run "$name"; then
                        SB_NOTES+="**sandbox pod start failed**: $SB_ERR"$'\n'
                        echo "bench: sandbox pod FAILED: $SB_ERR" >&2
                        SB_FAILED=1
                        break
                fi
                jq -r '(.RunPodSandbox * 1000 | round)' <<<"$SB_TIMING" >>"$work/sb.rps"
                jq -r '(.CreateContainer * 1000 | round)' <<<"$SB_TIMING" >>"$work/sb.cc"
                jq -r '(.StartContainer * 1000 | round)' <<<"$SB_TIMING" >>"$work/sb.sc"
                jq -r '((.RunPodSandbox + .CreateContainer + .StartContainer) * 1000 | round)' <<<"$SB_TIMING" >>"$work/sb.total"
                if [ -n "$SB_QEMU" ] && qs=$(sb_start_epoch_us "$SB_QEMU"); then
                        # RunPodSandbox starts after the image checks (ImagePull).
                        rps=$(jq -r '(.ImagePull * 1000 | round)' <<<"$SB_TIMING")
                        qrel=$((qs - SB_T0 - rps))
                        echo "$qrel" >>"$work/sb.spawn"
                        jq -r --argjson q "$qrel" '((.RunPodSandbox * 1000 | round) - $q)' <<<"$SB_TIMING" >>"$work/sb.boot"
                fi
                [ -f /run/unishim/*/"$SB_ID"/console.log ] && cp /run/unishim/*/"$SB_ID"/console.log "$work/console-$i.log"
                CTR_TIMEOUT=30 ectl rm --timeout 0 "$name" >/dev/null 2>&1 || true
        done

        # The floor: bare QEMU, same kernel/initramfs/flags, no tap/virtio-fs.
        sb_images
        local stock_img=$SB_STOCK_IMG min_img=$SB_MIN_IMG ctl=$SB_CTL qpid fdir
        [ -n "$min_img" ] || SB_NOTES+="minimal kernel rows skipped: its image is not built (cmake --build \$UNISHIM_BUILD_DIR --target guest-image-minimal)."$'\n'
        : >"$work/sb.floor"
        : >"$work/sb.floor-min"
        if [ -f "$stock_img/vmlinux" ] && [ -x "$ctl" ]; then
                # Alternating, so that the host's load hits both alike.
                for ((i = 0; i < SB_FLOOR_N; i++)); do
                        sb_floor_boot "$work/floor-$i" "$stock_img" "$work/sb.floor" || SB_NOTES+="$SB_FLOOR_ERR"$'\n'
                        [ -z "$min_img" ] || sb_floor_boot "$work/floor-min-$i" "$min_img" "$work/sb.floor-min" ||
                                SB_NOTES+="$SB_FLOOR_ERR"$'\n'
                done
        else
                SB_NOTES+="floor skipped: guest image or unishim-agent-ctl not built."$'\n'
        fi

        # PSS: an idle sandbox pod (shim + QEMU + virtiofsd) vs a bare QEMU.
        local pss_pod=null pss_bare=null shim vfs
        if sb_run bench-sb-pss; then
                sleep 10 # settle (the guest reports blocks free for ~2 s)
                shim=$(sb_shim_pids "$SB_ID")
                vfs=$(sb_virtiofsd_pids $shim)
                pss_pod=$(sb_pss $shim $SB_QEMU $vfs)
                SB_NOTES+="idle sandbox pod PSS: shim $(sb_pss $shim) KiB, QEMU $(sb_pss $SB_QEMU) KiB, virtiofsd ($(echo $vfs | wc -w) processes) $(sb_pss $vfs) KiB."$'\n'
                CTR_TIMEOUT=30 ectl rm --timeout 0 bench-sb-pss >/dev/null 2>&1 || true
        fi
        # The bare QEMU idle, with free page reporting (as the shim starts
        # it) and without, one after the other: what the guest gives back.
        # And the minimal kernel's bare QEMU, with free page reporting.
        local pss_bare_nobal=null pss_bare_min=null bal
        if [ -f "$stock_img/vmlinux" ] && [ -x "$ctl" ]; then
                for bal in on off min; do
                        [ "$bal" != min ] || [ -n "$min_img" ] || continue
                        fdir=$work/floor-pss-$bal
                        if [ "$bal" = min ]; then sb_bare_qemu "$fdir" on "$min_img"; else sb_bare_qemu "$fdir" "$bal"; fi
                        qpid=$QPID
                        if timeout 60 "$ctl" --wait-ms 50000 "$fdir/agent.sock" check >/dev/null 2>&1; then
                                # the guest reports blocks free for ~2 s
                                sleep 10
                                case $bal in
                                on) pss_bare=$(sb_pss "$qpid") ;;
                                off) pss_bare_nobal=$(sb_pss "$qpid") ;;
                                min) pss_bare_min=$(sb_pss "$qpid") ;;
                                esac
                        fi
                        kill -KILL "$qpid" 2>/dev/null || true
                        wait "$qpid" 2>/dev/null || true
                done
        fi
        [ -z "$min_img" ] || SB_NOTES+="vmlinux: stock $(($(stat -c %s "$stock_img/vmlinux") / 1024)) KiB ($(cat "$stock_img/kernel-release" 2>/dev/null)), minimal $(($(stat -c %s "$min_img/vmlinux") / 1024)) KiB ($(cat "$min_img/kernel-release" 2>/dev/null))."$'\n'

        # Two pods started at once: each start vs one alone (the medians
        # above). Under TCG each VM needs a core of its own to boot.
        # (the env's daemons are this shell's children too: wait for these
        # two only; the deadline is a hang guard, two boots on a loaded
        # host take longer than one)
        local j pids=()
        : >"$work/sb.two"
        for j in 0 1; do
                (f=$(sb_pod_json "bench-sb-two-$j")
                 CTR_TIMEOUT=$((CTR_TIMEOUT * 4)) ectl run --timing "$f" >/dev/null \
                        2>"$work/sb.two-$j.timing" || true) &
                pids+=($!)
        done
        wait "${pids[@]}"
        for j in 0 1; do
                t=$(grep '^{' "$work/sb.two-$j.timing" 2>/dev/null | tail -n1)
                if [ -n "$t" ]; then
                        jq -r '((.RunPodSandbox + .CreateContainer + .StartContainer) * 1000 | round)' <<<"$t" >>"$work/sb.two"
                else
                        SB_NOTES+="2 at once, pod $j failed: $(tr -d '\0' <"$work/sb.two-$j.timing" | head -c 200 | tr '\n' ' ')"$'\n'
                fi
                CTR_TIMEOUT=30 ectl rm --timeout 0 "bench-sb-two-$j" >/dev/null 2>&1 || true
        done
        [ ! -s "$work/sb.two" ] || SB_NOTES+="2 at once: each start (ms) $(awk '{ printf "%.0f ", $1 / 1000 }' "$work/sb.two")"$'\n'

        # Density: start time of one more pod while N idle sandbox pods run.
        local n k started dens=()
        for n in $SB_DENSITY; do
                started=0
                for ((k = 0; k < n; k++)); do
                        sb_run "bench-sb-idle-$k" >/dev/null 2>&1 && started=$((started + 1)) || break
                done
                if [ "$started" = "$n" ] && sb_run bench-sb-probe; then
                        dens+=("$n:$(jq -r '((.RunPodSandbox + .CreateContainer + .StartContainer) * 1000 | round) / 1000' <<<"$SB_TIMING")")
                else
                        dens+=("$n:null")
                        SB_NOTES+="density $n: only $started idle pods started: ${SB_ERR:-}"$'\n'
                fi
                CTR_TIMEOUT=30 ectl rm --timeout 0 bench-sb-probe >/dev/null 2>&1 || true
                for ((k = 0; k < started; k++)); do
                        CTR_TIMEOUT=30 ectl rm --timeout 0 "bench-sb-idle-$k" >/dev/null 2>&1 || true
                done
        done

        local cmed
        cmed=$(sb_median "$work/baseline.start")
        sb_row "sandbox pod start (RunPodSandbox+CreateContainer+StartContainer), median; baseline: runc pod" ms "$(sb_median "$work/sb.total")" "$cmed"
        sb_row "sandbox pod start vs unishim container pod, median" ms "$(sb_median "$work/sb.total")" "$(sb_median "$work/unishim.start")"
        sb_row "sandbox RunPodSandbox (boots the VM), median" ms "$(sb_median "$work/sb.rps")"
        sb_row "sandbox phase: RunPodSandbox start -> QEMU process started, median" ms "$(sb_median "$work/sb.spawn")"
        sb_row "sandbox phase: QEMU started -> RunPodSandbox returned (boot, agent ready, pause), median; baseline: bare QEMU floor" ms "$(sb_median "$work/sb.boot")" "$(sb_median "$work/sb.floor")"
        sb_row "sandbox CreateContainer, median" ms "$(sb_median "$work/sb.cc")"
        sb_row "sandbox StartContainer, median" ms "$(sb_median "$work/sb.sc")"
        sb_row "floor: bare QEMU boot (same kernel/initramfs/flags) to agent Check, median" ms "$(sb_median "$work/sb.floor")"
        # (without its image: no rows, the note says why; a null would read
        # as a failure)
        [ -z "$min_img" ] ||
                sb_row "minimal kernel floor: bare QEMU boot of the minimal kernel's image to agent Check, median; baseline: the stock floor" ms \
                        "$(sb_median "$work/sb.floor-min")" "$(sb_median "$work/sb.floor")"
        sb_row "idle sandbox pod PSS (shim+QEMU+virtiofsd, ${SB_MEM_MIB} MiB guest); baseline: bare QEMU" KiB "$pss_pod" "$pss_bare"
        sb_row "bare QEMU idle PSS with free page reporting; baseline: without" KiB "$pss_bare" "$pss_bare_nobal"
        [ -z "$min_img" ] ||
                sb_row "bare QEMU idle PSS, minimal kernel; baseline: stock kernel" KiB "$pss_bare_min" "$pss_bare"
        sb_row "sandbox pod start, 2 at once (each, the slower); baseline: one alone, median" ms \
                "$([ "$(wc -l <"$work/sb.two")" = 2 ] && percentile "$work/sb.two" 100 || echo null)" "$(sb_median "$work/sb.total")"
        local kv
        for kv in "${dens[@]}"; do
                sb_row "sandbox pod start with ${kv%%:*} idle sandbox pods running; baseline: no other pod" ms "${kv#*:}" \
                        "$(sb_median "$work/sb.total")"
        done
        # The guest console of the last measured pod (kernel timestamps, agent ready).
        if [ -f "$work/console-$((SB_N - 1)).log" ]; then
                SB_NOTES+="guest console of the last measured pod: $(tr -d '\0' <"$work/console-$((SB_N - 1)).log" | grep -E '^\[|agent ready' | tr '\n' ' ' | head -c 400)"$'\n'
        fi
        return 0
}
