# shellcheck shell=bash
# What the tests that boot a guest image in real QEMU through
# tests/tools/vmm-boot or unishimctl need (test-vmm-boot.sh, and the
# template tests through vmm-template-env.sh), or their skip: sets BUILD and
# skip, checks root and QEMU; vmm_guest_image finds the image.

BUILD=${UNISHIM_BUILD_DIR:-build}
skip() { echo "SKIP: $*"; exit 77; }

[ "$(id -u)" = 0 ] || skip "needs root (QEMU's private root, virtiofsd's and network namespaces)"
[ -x /usr/bin/qemu-system-x86_64 ] || skip "qemu-system-x86_64 missing (apt package qemu-system-x86)"

# vmm_guest_image [KERNEL [INITRD]]: sets img, kernel and initrd_src: KERNEL
# and INITRD where given (not empty: another image's), else the project
# guest image's (UNISHIM_GUEST_DIR, or the build's); skips the test when
# there is no kernel or no initrd.
vmm_guest_image() {
        local f
        img=${UNISHIM_GUEST_DIR:-$BUILD/vmm/guest-image}
        kernel=${1:-$img/vmlinux}
        initrd_src=${2:-}
        if [ -z "$initrd_src" ]; then
                for f in "$img"/initramfs.cpio "$img"/initramfs.cpio.gz; do
                        [ -f "$f" ] && initrd_src=$f && break
                done
        fi
        [ -f "$kernel" ] && [ -n "$initrd_src" ] ||
                skip "guest image not built ($img/{vmlinux,initramfs.cpio}; needs a static unishim-agent)"
}
