#!/bin/bash
# Boots the sandbox guest image (vmlinux + initramfs with unishim-agent as
# PID 1) in QEMU microvm, talks to the agent over the virtio-serial port and
# checks: Check answers with the guest's kernel release (not the host's), and
# Shutdown powers the VM off so QEMU exits. KVM only with vmx/svm, else TCG.
# UNISHIM_GUEST_DIR names another image's directory (as for the shim).
set -euo pipefail
BUILD=${UNISHIM_BUILD_DIR:-$(cd "$(dirname "$0")/../.." && pwd)/build}
img=${UNISHIM_GUEST_DIR:-$BUILD/vmm/guest-image}
ctl=$BUILD/guest-agent/unishim-agent-ctl
skip() { echo "SKIP: $*"; exit 77; }
command -v qemu-system-x86_64 >/dev/null || skip "qemu-system-x86_64 not installed"
[ -f "$img/vmlinux" ] || skip "no guest image in $img (static agent not built?)"
[ -x "$ctl" ] || skip "no $ctl"
initrd=$(ls "$img"/initramfs.cpio* | head -1)

work=$(mktemp -d /tmp/unishim-guest-boot.XXXXXX)
qpid=
cleanup() {
        [ -n "$qpid" ] && kill -9 "$qpid" 2>/dev/null || true
        rm -rf "$work"
}
trap cleanup EXIT

accel="tcg,tb-size=64" extra=""
if grep -qE '\b(vmx|svm)\b' /proc/cpuinfo && [ -w /dev/kvm ]; then
        accel=kvm
else
        # Under TCG the guest cannot calibrate its TSC against the PIT on a
        # loaded host; hand it the host's rate.
        mhz=$(awk -F: '/^cpu MHz/ {printf "%d", $2 * 1000; exit}' /proc/cpuinfo)
        [ -n "$mhz" ] && extra="tsc_early_khz=$mhz"
fi
start=$(date +%s%N)
qemu-system-x86_64 -M microvm,x-option-roms=off,pit=on,pic=off,isa-serial=on,rtc=on \
        -accel "$accel" -cpu max -m 256 -smp 1 -kernel "$img/vmlinux" -initrd "$initrd" \
        -append "console=ttyS0 reboot=t panic=-1 quiet unishim.debug=1 virtio-mmio.force-legacy=false $extra" \
        -nodefaults -no-user-config -nographic -no-reboot -serial "file:$work/console.log" \
        -device virtio-serial-device \
        -chardev "socket,id=agent,path=$work/agent.sock,server=on,wait=off" \
        -device virtserialport,chardev=agent,name=unishim.agent >"$work/qemu.log" 2>&1 &
qpid=$!
# Bounds here are hang guards (a loaded machine starts QEMU late).
for _ in $(seq 600); do [ -S "$work/agent.sock" ] && break; sleep 0.1; done
[ -S "$work/agent.sock" ] || { cat "$work/qemu.log"; echo "FAIL: QEMU did not create the socket"; exit 1; }

if ! out=$(timeout 90 "$ctl" --wait-ms 60000 "$work/agent.sock" check); then
        echo "--- console ---"; tail -30 "$work/console.log"; echo "FAIL: Check"; exit 1
fi
ready=$(date +%s%N)
echo "agent: $out; boot-to-agent-ready $(( (ready - start) / 1000000 )) ms ($accel)"
guest_rel=${out#* }
[ -n "$guest_rel" ] || { echo "FAIL: empty kernel release"; exit 1; }
[ "$guest_rel" != "$(uname -r)" ] || { echo "FAIL: kernel release is the host's"; exit 1; }
[ "$guest_rel" = "$(cat "$img/kernel-release")" ] || { echo "FAIL: release $guest_rel is not the image's"; exit 1; }

timeout 30 "$ctl" --wait-ms 20000 "$work/agent.sock" shutdown || { echo "FAIL: Shutdown"; exit 1; }
for _ in $(seq 1200); do kill -0 "$qpid" 2>/dev/null || break; sleep 0.1; done
if kill -0 "$qpid" 2>/dev/null; then
        tail -20 "$work/console.log"; echo "FAIL: QEMU still running 120 s after Shutdown"; exit 1
fi
wait "$qpid" || true
qpid=
echo "PASS: guest boot, Check, Shutdown"
