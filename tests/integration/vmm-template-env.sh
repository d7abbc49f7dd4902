# shellcheck shell=bash
# What the template tests against real QEMU need (test-vmm-template.sh,
# test-vmm-template-signal.sh), or their skip: sets BUILD, CTL, skip, img,
# kernel and initrd_src (the project guest image's: vmm-image-env.sh).

. "$(dirname "${BASH_SOURCE[0]}")/vmm-image-env.sh"
vmm_guest_image
CTL=$BUILD/cri/unishimctl
[ -c /dev/net/tun ] || skip "no /dev/net/tun"
