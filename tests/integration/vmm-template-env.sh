# shellcheck shell=bash
# What the template tests against real QEMU need (test-vmm-template.sh,
# test-vmm-template-signal.sh), or their skip: sets BUILD, CTL, skip, img,
# kernel and initrd_src (the project guest image's).

BUILD=${UNISHIM_BUILD_DIR:-build}
CTL=$BUILD/cri/unishimctl
skip() { echo "SKIP: $*"; exit 77; }

img=${UNISHIM_GUEST_DIR:-$BUILD/vmm/guest-image}
kernel=$img/vmlinux
initrd_src=
for f in "$img"/initramfs.cpio "$img"/initramfs.cpio.gz; do
        [ -f "$f" ] && initrd_src=$f && break
done
[ "$(id -u)" = 0 ] || skip "needs root (QEMU's private root, network namespaces)"
[ -x /usr/bin/qemu-system-x86_64 ] || skip "qemu-system-x86_64 missing (apt package qemu-system-x86)"
[ -f "$kernel" ] && [ -n "$initrd_src" ] ||
        skip "guest image not built ($img/{vmlinux,initramfs.cpio}; needs a static unishim-agent)"
[ -c /dev/net/tun ] || skip "no /dev/net/tun"
