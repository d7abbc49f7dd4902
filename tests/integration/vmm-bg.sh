# shellcheck shell=bash
# vmm-boot in the background, for the template tests (test-vmm-boot.sh,
# test-vmm-template.sh). The caller sets BOOT, kernel, initrd, tmp (its
# private dir), tag (its VMs' name prefix) and ready (the --ready-cmd).

# bg NAME ARGS: vmm-boot in the scripted flow, in the background; it quits
# once $tmp/NAME.go exists.
declare -A bg_pid
bg() {
        local name=$1; shift
        mkdir -p "$tmp/$name"
        timeout -s KILL 300 "$BOOT" --kernel "$kernel" --initrd "$initrd" --state-dir "$tmp/$name" \
                --id "$tag-$name" --accel auto --timeout 240 --ready-cmd "$ready" \
                --wait-file "$tmp/$name.go" "$@" >"$tmp/$name.out" 2>&1 &
        bg_pid[$name]=$!
}
# until_ready NAME: waits until NAME printed pss_kib= (its agent answered),
# or ended.
until_ready() {
        while ! grep -q '^pss_kib=' "$tmp/$1.out"; do
                kill -0 "${bg_pid[$1]}" 2>/dev/null || return 1
                sleep 0.2
        done
}
# finish NAME: lets NAME quit; its exit status.
finish() {
        local rc=0
        touch "$tmp/$1.go"
        wait "${bg_pid[$1]}" || rc=$?
        sed "s/^/  $1: /" "$tmp/$1.out"
        if [ $rc -ne 0 ] || ! grep -qx result=ok "$tmp/$1.out"; then
                echo "FAIL: $1: vmm-boot exited $rc"
                tail -5 "$tmp/$1/qemu.log" 2>/dev/null | sed 's/^/    /' || true
                return 1
        fi
}
# val NAME KEY: the last KEY=value NAME printed.
val() { sed -n "s/^$2=//p" "$tmp/$1.out" | tail -1; }
pss_now() { awk '/^Pss:/ { print $2 }' "/proc/$1/smaps_rollup" 2>/dev/null || echo 0; }
