#!/bin/bash
# The VMM against real QEMU: vmm_vm_start() boots the project's guest image
# (vmm/guest-image) in a microvm, both agent virtio-serial sockets accept,
# the console shows output, QMP stop/cont change the run state, quit ends
# QEMU, and no QEMU, no virtiofsd and no socket is left behind. Run once
# without shares and once with a virtio-fs share (virtiofsd helper).
#
# The console is capped (vmm/logpipe.h): a verbose boot (loglevel=8
# initcall_debug) through a 64 KiB cap must rotate and keep the newest output
# (the agent's last lines) within the cap; a guest that floods its console
# (a busybox initramfs built here, if busybox-static is installed) must stay
# within the cap, keep its last line, and not block QEMU while the host does
# not drain (QMP answers after a stall).
#
# VM templates (docs/vmm.md "VM templates"): a template of the project image
# is saved (its RAM in a tmpfs file, its state over fd: migration), two
# clones restored from it at once both answer the agent's Restore (host
# entropy, clock) with boot_ids of their own, and each clone's QEMU has well
# under half the PSS of a cold boot's (their RAM is the template's file,
# copy-on-write); a truncated or corrupt state file
# fails the restore with QEMU's message and leaves nothing behind.
#
# VMM_KERNEL / VMM_INITRD override the image (e.g. a bare busybox initramfs);
# UNISHIM_GUEST_DIR names another image's directory (as for the shim, e.g.
# build/vmm/guest-image/minimal: the minimal kernel, docs/guest.md).
set -euo pipefail

. "$(dirname "${BASH_SOURCE[0]}")/vmm-image-env.sh"
vmm_guest_image "${VMM_KERNEL:-}" "${VMM_INITRD:-}"
initrd=$initrd_src
BOOT=$BUILD/tests/vmm-boot
[ -x "$BOOT" ] || { echo "FAIL: $BOOT not built"; exit 1; }

tmp=$(mktemp -d /tmp/test-vmm-boot.XXXXXX)
# Every VM is named after the private dir (QEMU's -name unishim-<tag>-...):
# QEMU's command line names no path under $tmp (its console is a pipe).
tag=${tmp##*/}
boot_pid=
ours() { { tr '\0' ' ' <"$1/cmdline"; } 2>/dev/null | grep -qF -e "$tmp/" -e "unishim-$tag-"; }
# Kill only what this test started: the driver, and any process whose command
# line names our private state dir (virtiofsd's source) or our VMs (QEMU).
cleanup() {
        [ -n "$boot_pid" ] && kill -KILL "$boot_pid" 2>/dev/null || true
        for p in /proc/[0-9]*; do
                if ours "$p"; then
                        kill -KILL "${p#/proc/}" 2>/dev/null || true
                fi
        done
        rm -rf "$tmp" "/dev/shm/$tag"
}
trap cleanup EXIT

leftovers() {
        local found=0
        for p in /proc/[0-9]*; do
                if ours "$p"; then
                        echo "FAIL: process left: ${p#/proc/} $(tr '\0' ' ' <"$p/cmdline")"; found=1
                fi
        done
        if find "$tmp" -type s | grep -q .; then
                echo "FAIL: sockets left: $(find "$tmp" -type s)"; found=1
        fi
        return $found
}

run() {
        local name=$1; shift
        local state=$tmp/$name
        mkdir -p "$state"
        # Bounded: vmm-boot's own --timeout, and timeout(1) around it.
        timeout -s KILL 150 "$BOOT" --kernel "$kernel" --initrd "$initrd" --state-dir "$state" \
                --id "$tag-$name" --accel auto --timeout 90 "$@" >"$tmp/$name.out" 2>&1 &
        boot_pid=$!
        local rc=0
        wait "$boot_pid" || rc=$?
        boot_pid=
        sed "s/^/  $name: /" "$tmp/$name.out"
        if [ $rc -ne 0 ]; then
                echo "FAIL: $name: vmm-boot exited $rc"
                echo "  qemu.log:"; sed 's/^/    /' "$state/qemu.log" 2>/dev/null | tail -20 || true
                echo "  console (tail):"; tail -c 2000 "$state/console.log" 2>/dev/null | sed 's/^/    /' || true
                return 1
        fi
        local keys="agent_connect=ok events_connect=ok result=ok"
        # --wait-exit runs end with the guest, without pause/resume.
        grep -q '^exit_s=' "$tmp/$name.out" || keys="$keys pause_resume=ok"
        for k in $keys; do
                grep -qx "$k" "$tmp/$name.out" || { echo "FAIL: $name: no $k"; return 1; }
        done
        grep -q '^first_console_s=' "$tmp/$name.out" || { echo "FAIL: $name: no console output"; return 1; }
        leftovers || return 1
        echo "ok: $name"
}

# The console cap. vmm-boot already fails when console.log + console.log.1
# exceed it; here: it rotated, kept the newest output and dropped the oldest.
# capped NAME CAP NEWEST_TEXT OLDEST_TEXT
capped() {
        local name=$1 cap=$2 newest=$3 oldest=$4 state=$tmp/$1
        local cur old
        cur=$(stat -c %s "$state/console.log") || { echo "FAIL: $name: no console.log"; return 1; }
        old=$(stat -c %s "$state/console.log.1" 2>/dev/null) ||
                { echo "FAIL: $name: console.log never rotated (cap $cap)"; return 1; }
        if [ $((cur + old)) -gt "$cap" ] || [ "$cur" -gt $((cap / 2)) ] || [ "$old" -gt $((cap / 2)) ]; then
                echo "FAIL: $name: console.log $cur + console.log.1 $old bytes, cap $cap"; return 1
        fi
        # The newest text may sit in console.log.1: the guest goes on
        # printing after it, and a rotation can come between.
        # (grep reads a process substitution: an early match must not fail
        # the check through cat's SIGPIPE under pipefail.)
        if ! grep -qF -- "$newest" < <(cat "$state/console.log.1" "$state/console.log"); then
                echo "FAIL: $name: the newest output (\"$newest\") is in neither console.log nor console.log.1"
                return 1
        fi
        if grep -qF -- "$oldest" < <(cat "$state/console.log.1" "$state/console.log"); then
                echo "FAIL: $name: the oldest output (\"$oldest\") was kept beyond the cap"; return 1
        fi
        for f in console.log console.log.1 qemu.log; do
                [ "$(stat -c %a "$state/$f")" = 600 ] || { echo "FAIL: $name: $f is not mode 0600"; return 1; }
        done
        echo "ok: $name: console.log $cur + console.log.1 $old bytes <= $cap, newest output kept"
}

mkdir -p "$tmp/share"
echo hello >"$tmp/share/file"
fail=0
run plain || fail=1
run virtiofs --share "virtiofs:rootfs:$tmp/share" || fail=1

# A verbose boot (~100 KiB of initcall lines) through a 64 KiB cap: the
# agent's last lines, printed after all of them, are kept.
if run verbose --console-max 65536 --append "loglevel=8 initcall_debug unishim.debug=1" \
        --expect-console "agent ready on unishim.events"; then
        capped verbose 65536 "agent ready on unishim.events" "Linux version" || fail=1
else
        fail=1
fi

# A guest that floods its console: /init (busybox) prints FLOOD-START, then
# $flood bytes (the kernel hands unknown parameters to init's environment),
# FLOOD-END, and reboots (QEMU -no-reboot exits); or floods forever.
if [ -x /bin/busybox ]; then
        mkdir -p "$tmp/flood/bin"
        cp /bin/busybox "$tmp/flood/bin/"
        for a in sh yes head reboot sleep; do ln -s busybox "$tmp/flood/bin/$a"; done
        cat >"$tmp/flood/init" <<'INIT'
#!/bin/sh
echo FLOOD-START
line="flood line from the guest console, padding padding padding padding"
[ "$flood" = forever ] && yes "$line"
yes "$line" | head -c "${flood:-1000000}"
echo
echo FLOOD-END
reboot -f
sleep 1000
INIT
        chmod 755 "$tmp/flood/init"
        (cd "$tmp/flood" && find . | cpio -o -H newc --quiet -R 0:0) >"$tmp/flood.cpio"
        # 1 MB through a 64 KiB cap; the guest ends QEMU itself.
        if initrd=$tmp/flood.cpio run flood --console-max 65536 --append flood=1000000 \
                --expect-console FLOOD-END --wait-exit; then
                capped flood 65536 FLOOD-END FLOOD-START || fail=1
        else
                fail=1
        fi
        # Flooding forever while the host does not drain, until the console
        # pipe (1 MiB) is full: QEMU must still answer QMP at once, and quit.
        if initrd=$tmp/flood.cpio run flood-stall --console-max 65536 --append flood=forever \
                --expect-console FLOOD-START --hold 2 --stall 40; then
                capped flood-stall 65536 "flood line" FLOOD-START || fail=1
                out=$tmp/flood-stall.out
                qmp=$(sed -n 's/^qmp_after_stall_s=//p' "$out")
                queued=$(sed -n 's/^stall_pipe_bytes=//p' "$out")
                size=$(sed -n 's/^stall_pipe_size=//p' "$out")
                if [ -z "$size" ] || [ "$size" = 0 ] || [ "$queued" -lt "$size" ]; then
                        echo "FAIL: flood-stall: the console pipe never filled (${queued:-?} of ${size:-?} bytes)"; fail=1
                elif [ -z "$qmp" ] || awk -v t="$qmp" 'BEGIN { exit !(t > 2) }'; then
                        echo "FAIL: flood-stall: QMP answered after ${qmp:-?} s"; fail=1
                else
                        echo "ok: flood-stall: QMP answered in $qmp s with the console pipe full ($queued bytes)"
                fi
        else
                fail=1
        fi
else
        echo "SKIP (part): console flood guest, /bin/busybox missing (apt package busybox-static)"
fi

# --- VM templates ---------------------------------------------------------
. "$(dirname "${BASH_SOURCE[0]}")/vmm-bg.sh"

ctl=$BUILD/guest-agent/unishim-agent-ctl
if [ -x "$ctl" ] && [ -z "${VMM_INITRD:-}" ]; then
        # What a pod would wait for: the agent's Check answered.
        ready="$ctl --wait-ms 200000 \$AGENT_SOCK check"
        tpl=/dev/shm/$tag
        mkdir -p "$tpl"
        # The cold boot, measured the same way.
        tok=1
        bg cold
        until_ready cold || true
        finish cold || tok=0
        # The template: booted, its agent ready, saved.
        bg save --template-save "$tpl"
        until_ready save || true
        finish save || tok=0
        if [ $tok = 0 ]; then
                fail=1
        else
                # A clone's first call: Restore, which reseeds its RNG from
                # the host and only then reads boot_id (generated by that
                # read: the template never read it).
                ready="$ctl --wait-ms 200000 \$AGENT_SOCK restore" bg clone1 --template-clone "$tpl"
                ready="$ctl --wait-ms 200000 \$AGENT_SOCK restore" bg clone2 --template-clone "$tpl"
                ok=1
                until_ready clone1 || ok=0
                until_ready clone2 || ok=0
                # Both alive: the template's pages are shared between them.
                pss1=$(pss_now "$(val clone1 qemu_pid)")
                pss2=$(pss_now "$(val clone2 qemu_pid)")
                finish clone1 || ok=0
                finish clone2 || ok=0
                cold_pss=$(val cold pss_kib)
                echo "template: save $(val save save_s) s, state $(val save state_bytes) bytes," \
                        "RAM file $(du -k "$tpl/memory" | cut -f1) KiB touched"
                echo "template: agent ready after cold boot $(val cold agent_ready_s) s," \
                        "clones $(val clone1 agent_ready_s) / $(val clone2 agent_ready_s) s" \
                        "(restore $(val clone1 restore_s) / $(val clone2 restore_s) s)"
                echo "template: QEMU PSS cold ${cold_pss} KiB; clones at ready" \
                        "$(val clone1 pss_kib) / $(val clone2 pss_kib) KiB, both running $pss1 / $pss2 KiB"
                id1=$(val clone1 boot_id)
                id2=$(val clone2 boot_id)
                echo "template: boot_id clone1 ${id1:-?}, clone2 ${id2:-?}"
                if [ $ok = 0 ]; then
                        fail=1
                elif [ -z "$id1" ] || [ -z "$id2" ] || [ "$id1" = "$id2" ]; then
                        echo "FAIL: template: the clones' boot_ids are not their own"; fail=1
                elif [ -z "$cold_pss" ] || [ "$cold_pss" -le 0 ] || [ "$pss1" -le 0 ] || [ "$pss2" -le 0 ]; then
                        echo "FAIL: template: no PSS read (cold ${cold_pss:-?}, clones $pss1 / $pss2)"; fail=1
                elif [ $((pss1 * 2)) -ge "$cold_pss" ] || [ $((pss2 * 2)) -ge "$cold_pss" ]; then
                        echo "FAIL: template: a clone's PSS is not below half the cold boot's"; fail=1
                else
                        echo "ok: template: two clones answer with their own boot_id, each below half the cold boot's PSS"
                fi
                # A state file cut short, and one with its bytes garbled:
                # the restore fails with QEMU's reason, nothing is left.
                for bad in truncated corrupt; do
                        mkdir -p "$tmp/tpl-$bad"
                        ln -s "$tpl/memory" "$tmp/tpl-$bad/memory"
                        size=$(stat -c %s "$tpl/state")
                        if [ $bad = truncated ]; then
                                head -c $((size / 2)) "$tpl/state" >"$tmp/tpl-$bad/state"
                        else
                                { head -c 4096 "$tpl/state"; head -c $((size - 4096)) /dev/urandom; } \
                                        >"$tmp/tpl-$bad/state"
                        fi
                        mkdir -p "$tmp/clone-$bad"
                        if timeout -s KILL 120 "$BOOT" --kernel "$kernel" --initrd "$initrd" \
                                --state-dir "$tmp/clone-$bad" --id "$tag-clone-$bad" --accel auto \
                                --timeout 60 --ready-cmd "$ready" --template-clone "$tmp/tpl-$bad" \
                                >"$tmp/clone-$bad.out" 2>&1; then
                                echo "FAIL: template: a restore from a $bad state succeeded"; fail=1
                        elif ! grep -q "restore: qemu exited with status 1: .*load of migration failed" \
                                "$tmp/clone-$bad.out"; then
                                echo "FAIL: template: a $bad state's error does not say why:"
                                sed 's/^/    /' "$tmp/clone-$bad.out"; fail=1
                        else
                                echo "ok: template: $bad state -> $(grep FAIL "$tmp/clone-$bad.out" | head -1)"
                        fi
                done
        fi
        leftovers || fail=1
        rm -rf "$tpl"
else
        echo "SKIP (part): VM templates ($ctl not built, or VMM_INITRD set: they need the agent)"
fi

# A kernel that does not exist: vmm_vm_start fails cleanly, nothing is left.
mkdir -p "$tmp/bad"
if timeout -s KILL 60 "$BOOT" --kernel /nonexistent/vmlinux --initrd "$initrd" --state-dir "$tmp/bad" \
        --id "$tag-bad" --accel tcg --share "virtiofs:rootfs:$tmp/share" --timeout 20 >"$tmp/bad.out" 2>&1; then
        echo "FAIL: start with a missing kernel succeeded"; fail=1
elif ! grep -q "qemu" "$tmp/bad.out"; then
        echo "FAIL: missing-kernel error does not mention qemu:"; cat "$tmp/bad.out"; fail=1
else
        echo "ok: missing kernel -> $(grep FAIL "$tmp/bad.out" | head -1)"
fi
leftovers || fail=1

[ $fail = 0 ] && echo "PASS: test-vmm-boot" || exit 1
