#!/bin/bash
# The VMM against real QEMU: vmm_vm_start() boots the project's guest image
# (vmm/guest-image) in a microvm, both agent virtio-serial sockets accept,
# the console shows output, QMP stop/cont change the run state, quit ends
# QEMU, and no QEMU, no virtiofsd and no socket is left behind. Run once
# without shares and once with a virtio-fs share (virtiofsd helper).
#
# VMM_KERNEL / VMM_INITRD override the image (e.g. a bare busybox initramfs).
set -euo pipefail

BUILD=${UNISHIM_BUILD_DIR:-build}
BOOT=$BUILD/tests/vmm-boot
skip() { echo "SKIP: $*"; exit 77; }

kernel=${VMM_KERNEL:-$BUILD/vmm/guest-image/vmlinux}
initrd=${VMM_INITRD:-}
if [ -z "$initrd" ]; then
        for f in "$BUILD"/vmm/guest-image/initramfs.cpio "$BUILD"/vmm/guest-image/initramfs.cpio.gz; do
                [ -f "$f" ] && initrd=$f && break
        done
fi
[ "$(id -u)" = 0 ] || skip "needs root (virtiofsd namespaces)"
[ -x /usr/bin/qemu-system-x86_64 ] || skip "qemu-system-x86_64 missing (apt package qemu-system-x86)"
[ -f "$kernel" ] && [ -n "$initrd" ] ||
        skip "guest image not built ($BUILD/vmm/guest-image/{vmlinux,initramfs.cpio}; needs a static unishim-agent)"
[ -x "$BOOT" ] || { echo "FAIL: $BOOT not built"; exit 1; }

tmp=$(mktemp -d /tmp/test-vmm-boot.XXXXXX)
boot_pid=
# Kill only what this test started: the driver, and any process whose command
# line names our private state dir (QEMU's console path, virtiofsd's source).
cleanup() {
        [ -n "$boot_pid" ] && kill -KILL "$boot_pid" 2>/dev/null || true
        for p in /proc/[0-9]*; do
                if { tr '\0' ' ' <"$p/cmdline"; } 2>/dev/null | grep -qF -- "$tmp/"; then
                        kill -KILL "${p#/proc/}" 2>/dev/null || true
                fi
        done
        rm -rf "$tmp"
}
trap cleanup EXIT

leftovers() {
        local found=0
        for p in /proc/[0-9]*; do
                if { tr '\0' ' ' <"$p/cmdline"; } 2>/dev/null | grep -qF -- "$tmp/"; then
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
                --accel auto --timeout 90 "$@" >"$tmp/$name.out" 2>&1 &
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
        for k in agent_connect=ok events_connect=ok pause_resume=ok result=ok; do
                grep -qx "$k" "$tmp/$name.out" || { echo "FAIL: $name: no $k"; return 1; }
        done
        grep -q '^first_console_s=' "$tmp/$name.out" || { echo "FAIL: $name: no console output"; return 1; }
        leftovers || return 1
        echo "ok: $name"
}

mkdir -p "$tmp/share"
echo hello >"$tmp/share/file"
fail=0
run plain || fail=1
run virtiofs --share "virtiofs:rootfs:$tmp/share" || fail=1

# A kernel that does not exist: vmm_vm_start fails cleanly, nothing is left.
mkdir -p "$tmp/bad"
if timeout -s KILL 60 "$BOOT" --kernel /nonexistent/vmlinux --initrd "$initrd" --state-dir "$tmp/bad" \
        --accel tcg --share "virtiofs:rootfs:$tmp/share" --timeout 20 >"$tmp/bad.out" 2>&1; then
        echo "FAIL: start with a missing kernel succeeded"; fail=1
elif ! grep -q "qemu" "$tmp/bad.out"; then
        echo "FAIL: missing-kernel error does not mention qemu:"; cat "$tmp/bad.out"; fail=1
else
        echo "ok: missing kernel -> $(grep FAIL "$tmp/bad.out" | head -1)"
fi
leftovers || fail=1

[ $fail = 0 ] && echo "PASS: test-vmm-boot" || exit 1
