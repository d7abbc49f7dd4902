#!/bin/bash
# Builds the "vm" pod kind's test disk: a lean Debian 12 cloud image (kernel,
# GRUB for BIOS, systemd, cloud-init limited to NoCloud, qemu-guest-agent)
# made from Debian's apt archive, as qcow2, and packs it as a KubeVirt-style
# containerDisk: an OCI image layout tar whose only layer holds
# disk/debian-12.qcow2 (`ctr images import` accepts it).
#
#   build-vm-image.sh OUT_DIR [IMAGE_NAME]
#
# IMAGE_NAME defaults to docker.io/unishim/vm-debian:12. Writes
#   OUT_DIR/disk.qcow2   the disk, for tests that boot it without containerd
#                        (boot it through an overlay: it must stay unwritten)
#   OUT_DIR/image.tar    the containerDisk (its disk is the same file)
#   OUT_DIR/image.name   the name image.tar was built for
#   OUT_DIR/debs/        downloaded .debs kept for the next build
#   OUT_DIR/build.lock   serialises builds into OUT_DIR (flock; a caller
#                        waits VM_IMAGE_LOCK_TIMEOUT seconds, 1800)
# Idempotent: does nothing when OUT_DIR/image.tar is newer than this script
# and oci-image.sh and was built for the same name. A rebuild takes minutes
# (mmdebstrap installs ~200 packages; the first one downloads ~150 MB).
#
# Made the way a distribution's cloud image is made, nothing unishim-specific
# in the guest: anything that boots a cloud image with a NoCloud seed
# (cidata) and talks to qemu-guest-agent on org.qemu.guest_agent.0 boots this
# one. Choices that keep it fast under TCG:
#   - no recommends, no docs/man/locales (dpkg path-exclude stays in the
#     image, as in Debian's container images)
#   - linux-image-cloud-amd64 (virtio, ACPI, iso9660 as modules; fewer
#     modules than linux-image-amd64)
#   - GRUB for BIOS (SeaBIOS, QEMU's default), timeout 0, console on ttyS0
#   - cloud-init with datasource_list [ NoCloud, None ] (no probing of cloud
#     metadata services), locale C.UTF-8 (no locale-gen at first boot),
#     systemd-networkd as its network renderer (part of systemd: no
#     ifupdown/dhclient), wait-online bounded to 30 s
#   - apt-daily and e2scrub timers off (no CPU-heavy jobs during a test)
#   - no openssh, no root password (log in through the agent or cloud-init)
#
# Needs no loop device and mounts nothing outside a private mount
# namespace: mmdebstrap runs under `unshare -m`, the root filesystem is
# made with `mkfs.ext4 -d`, GRUB's boot sector and core image are written
# into the raw disk with dd (what grub-bios-setup does for an MBR disk).
set -euo pipefail

out=${1:?usage: build-vm-image.sh OUT_DIR [IMAGE_NAME]}
name=${2:-docker.io/unishim/vm-debian:12}
dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=tests/env/oci-image.sh
. "$dir/oci-image.sh"

suite=bookworm
mirror=${VM_IMAGE_MIRROR:-http://deb.debian.org/debian}
security_mirror=${VM_IMAGE_SECURITY_MIRROR:-http://deb.debian.org/debian-security}
disk_size=${VM_IMAGE_DISK_SIZE:-2G}
disk_file=debian-12.qcow2
packages=systemd-sysv,udev,dbus,linux-image-cloud-amd64,grub-pc,cloud-init,cloud-guest-utils,qemu-guest-agent
cmdline="console=tty0 console=ttyS0,115200"

# One build at a time per OUT_DIR: concurrent callers (test runs sharing a
# build dir) wait for the one building, then find its image current. The
# lock is held by flock(1) itself (-o), not by this script: nothing the build
# starts can keep it after the build.
if [ -z "${_BUILD_VM_IMAGE_LOCKED:-}" ]; then
        mkdir -p "$out"
        wait=${VM_IMAGE_LOCK_TIMEOUT:-1800}
        rc=0
        _BUILD_VM_IMAGE_LOCKED=1 flock -o -w "$wait" -E 75 "$out/build.lock" bash "$0" "$@" || rc=$?
        [ "$rc" != 75 ] || echo "build-vm-image: $out/build.lock stayed taken for ${wait}s" >&2
        exit "$rc"
fi

if [ -s "$out/disk.qcow2" ] && oci_image_current "$out" "$name" "$0"; then
        exit 0
fi

[ "$(id -u)" = 0 ] || { echo "build-vm-image: must run as root (mmdebstrap --mode=root, chroot)" >&2; exit 1; }
"$dir/../../tools/apt-ensure" mmdebstrap qemu-utils fdisk e2fsprogs util-linux jq

start=$(date +%s)
mkdir -p "$out" "$out/debs"
out=$(cd "$out" && pwd)
# A build killed outright leaves its work dir (a root filesystem); with the
# lock held no other build runs.
rm -rf "$out"/.build.*
work=$(mktemp -d "$out/.build.XXXXXX")
trap 'rm -rf "$work"' EXIT
trap 'exit 1' INT TERM HUP
log=$work/mmdebstrap.log

# --- root filesystem -----------------------------------------------------------
# The root's fstab entry and type come before the kernel: its initramfs then
# has fsck.ext4 and checks the root filesystem before mounting it, as an
# installed system's does (the type is given: the chroot has no device to
# probe).
# In a private mount namespace: whatever mmdebstrap mounts in the chroot
# (proc, sys, dev) goes away with it, even when it is killed.
rootfs=$work/rootfs
uuid=$(cat /proc/sys/kernel/random/uuid)
echo "build-vm-image: mmdebstrap $suite ($packages)" >&2
# shellcheck disable=SC2016 # $1 is the hooks' argument (the chroot)
if ! unshare --mount --propagation private \
        mmdebstrap --mode=root --variant=minbase --format=directory \
        --aptopt='APT::Install-Recommends "false"' \
        --dpkgopt='path-exclude=/usr/share/man/*' \
        --dpkgopt='path-exclude=/usr/share/doc/*' \
        --dpkgopt='path-include=/usr/share/doc/*/copyright' \
        --dpkgopt='path-exclude=/usr/share/locale/*' \
        --dpkgopt='path-exclude=/usr/share/info/*' \
        --include="$packages" \
        --skip=download/empty --skip=essential/unlink \
        --essential-hook="printf 'UUID=%s\\t/\\text4\\trw,discard,errors=remount-ro\\t0\\t1\\n' $uuid >\"\$1/etc/fstab\"" \
        --essential-hook='mkdir -p "$1/etc/initramfs-tools/conf.d" && echo FSTYPE=ext4 >"$1/etc/initramfs-tools/conf.d/fstype"' \
        --setup-hook='mkdir -p "$1/var/cache/apt/archives"' \
        --setup-hook="find '$out/debs' -maxdepth 1 -name '*.deb' -exec cp -t \"\$1/var/cache/apt/archives/\" {} +" \
        --customize-hook="find \"\$1/var/cache/apt/archives\" -maxdepth 1 -name '*.deb' -exec cp -t '$out/debs/' {} +" \
        "$suite" "$rootfs" \
        "deb $mirror $suite main" \
        "deb $mirror $suite-updates main" \
        "deb $security_mirror $suite-security main" >"$log" 2>&1; then
        echo "build-vm-image: mmdebstrap failed; the end of its log:" >&2
        tail -n 30 "$log" >&2
        exit 1
fi
# Keep only the newest version of each cached package.
find "$out/debs" -maxdepth 1 -name '*.deb' -printf '%f\n' | sort -t_ -k1,1 -k2,2Vr |
        awk -F_ 'seen[$1 FS $3]++ { print "'"$out/debs/"'" $0 }' | xargs -r rm -f

kver=$(find "$rootfs/boot" -maxdepth 1 -name 'vmlinuz-*' -printf '%f\n' | sed 's/^vmlinuz-//' | sort -V | tail -n1)
if [ -z "$kver" ] || [ ! -f "$rootfs/boot/initrd.img-$kver" ]; then
        echo "build-vm-image: no kernel/initrd in the root filesystem" >&2
        exit 1
fi

# --- configuration (as a cloud image has it) ----------------------------------
echo localhost >"$rootfs/etc/hostname"
chmod 0644 "$rootfs/etc/hostname"
cat >"$rootfs/etc/hosts" <<'EOF'
127.0.0.1	localhost
::1		localhost ip6-localhost ip6-loopback
ff02::1		ip6-allnodes
ff02::2		ip6-allrouters
EOF
# The builder's resolver means nothing in the guest.
rm -f "$rootfs/etc/resolv.conf"
: >"$rootfs/etc/resolv.conf"
: >"$rootfs/etc/machine-id"
rm -f "$rootfs/var/lib/dbus/machine-id"
echo 'LANG=C.UTF-8' >"$rootfs/etc/default/locale"

cat >"$rootfs/etc/cloud/cloud.cfg.d/90_unishim_nocloud.cfg" <<'EOF'
# Only the NoCloud seed (a "cidata" iso9660/vfat volume, or the kernel
# command line): no probing of metadata services that are not there.
datasource_list: [ NoCloud, None ]
# C.UTF-8 needs no locale-gen at first boot.
locale: C.UTF-8
system_info:
  network:
    renderers: [ networkd ]
EOF
# cloud-init writes .network files; networkd applies them.
chroot "$rootfs" systemctl enable systemd-networkd.service >/dev/null 2>&1
mkdir -p "$rootfs/etc/systemd/system/systemd-networkd-wait-online.service.d"
cat >"$rootfs/etc/systemd/system/systemd-networkd-wait-online.service.d/10-any.conf" <<'EOF'
# One configured link is enough, and a NIC without a DHCP server must not
# hold the boot for two minutes.
[Service]
ExecStart=
ExecStart=/lib/systemd/systemd-networkd-wait-online --any --timeout=30
EOF
# No background jobs competing with a test for the one TCG vCPU: apt's daily
# download/upgrade (no mirror is reachable anyway) and e2scrub (no LVM).
chroot "$rootfs" systemctl disable apt-daily.timer apt-daily-upgrade.timer \
        e2scrub_all.timer e2scrub_reap.service >/dev/null 2>&1
# qemu-guest-agent starts through its udev rule when the
# org.qemu.guest_agent.0 port appears (Debian's unit has no [Install]).

# GRUB: the same settings for a later update-grub in the guest.
cat >"$rootfs/etc/default/grub.d/50-cloud.cfg" <<EOF
GRUB_TIMEOUT=0
GRUB_TIMEOUT_STYLE=hidden
GRUB_CMDLINE_LINUX_DEFAULT=""
GRUB_CMDLINE_LINUX="$cmdline"
GRUB_TERMINAL="console serial"
GRUB_SERIAL_COMMAND="serial --speed=115200"
EOF
mkdir -p "$rootfs/boot/grub/i386-pc"
cp "$rootfs"/usr/lib/grub/i386-pc/*.mod "$rootfs"/usr/lib/grub/i386-pc/*.lst \
        "$rootfs"/usr/lib/grub/i386-pc/boot.img "$rootfs/boot/grub/i386-pc/"
# What grub-mkconfig makes of the settings above, reduced to the one entry.
cat >"$rootfs/boot/grub/grub.cfg" <<EOF
# Written by tests/env/build-vm-image.sh; update-grub in the guest makes
# the equivalent from /etc/default/grub.d/50-cloud.cfg.
serial --speed=115200
terminal_input console serial
terminal_output console serial
set default=0
set timeout_style=hidden
set timeout=0
insmod part_msdos
insmod ext2
search --no-floppy --fs-uuid --set=root $uuid
menuentry 'Debian GNU/Linux' {
	linux /boot/vmlinuz-$kver root=UUID=$uuid ro $cmdline
	initrd /boot/initrd.img-$kver
}
EOF
# core.img as grub-install makes it: find the root by UUID, then the rest
# of GRUB from /boot/grub.
cat >"$rootfs/boot/grub/i386-pc/load.cfg" <<EOF
search.fs_uuid $uuid root hd0,msdos1
set prefix=(\$root)'/boot/grub'
EOF
chroot "$rootfs" grub-mkimage -O i386-pc -d /usr/lib/grub/i386-pc \
        -o /boot/grub/i386-pc/core.img -c /boot/grub/i386-pc/load.cfg \
        -p '(hd0,msdos1)/boot/grub' biosdisk part_msdos ext2 search_fs_uuid
chroot "$rootfs" grub-editenv /boot/grub/grubenv create

# --- leaner --------------------------------------------------------------------
rm -rf "$rootfs"/var/cache/apt/*.bin "$rootfs"/var/cache/apt/archives/*.deb \
        "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/log/apt/* \
        "$rootfs"/var/cache/debconf/*-old "$rootfs"/var/lib/dpkg/*-old \
        "$rootfs"/tmp/* "$rootfs"/var/tmp/*
: >"$rootfs/var/log/lastlog"; : >"$rootfs/var/log/faillog"

# --- disk: MBR, one bootable ext4 partition from 1 MiB, GRUB in the gap -------
raw=$work/disk.raw
truncate -s "$disk_size" "$raw"
printf 'label: dos\nstart=2048, type=83, bootable\n' | sfdisk -q "$raw"
part_bytes=$(( $(stat -c %s "$raw") - 1024 * 1024 ))
truncate -s "$part_bytes" "$work/root.ext4"
mkfs.ext4 -q -F -L root -U "$uuid" -d "$rootfs" "$work/root.ext4"
dd if="$work/root.ext4" of="$raw" bs=1M seek=1 conv=notrunc,sparse status=none
rm -f "$work/root.ext4"
core=$rootfs/boot/grub/i386-pc/core.img
[ "$(stat -c %s "$core")" -lt $(( 2047 * 512 )) ] || { echo "build-vm-image: core.img too big" >&2; exit 1; }
# boot.img's code (not the partition table) into the MBR, its drive check
# on (two NOPs over the jmp at 0x66, as grub-bios-setup does for a hard
# disk); core.img from sector 1: boot.img loads sector 1, diskboot.img at
# its start loads the rest from sector 2 on, their defaults.
dd if="$rootfs/usr/lib/grub/i386-pc/boot.img" of="$raw" bs=440 count=1 conv=notrunc status=none
printf '\x90\x90' | dd of="$raw" bs=1 seek=$((0x66)) conv=notrunc status=none
dd if="$core" of="$raw" bs=512 seek=1 conv=notrunc status=none

mkdir -p "$work/layer/disk"
qemu-img convert -f raw -O qcow2 -c "$raw" "$work/layer/disk/$disk_file"
rm -f "$raw"

# --- containerDisk -------------------------------------------------------------
# KubeVirt's convention: the disk under /disk/, owned by qemu (107:107);
# the directories root's (the layer keeps the real owners).
chmod 0755 "$work/layer" "$work/layer/disk"
chown 107:107 "$work/layer/disk/$disk_file"
chmod 0444 "$work/layer/disk/$disk_file"
oci_image_tar "$work/layer" "$name" \
        "$(jq -cn --arg f "/disk/$disk_file" --arg k "$kver" \
                '{Labels: {"org.unishim.vm.disk": $f, "org.unishim.vm.kernel": $k}}')" \
        "unishim tests/env/build-vm-image.sh (Debian 12 $kver, mmdebstrap)" "$work/image.tar"

# Publish atomically (disk first: image.tar is the "done" marker).
mv "$work/layer/disk/$disk_file" "$out/disk.qcow2"
echo "$name" >"$out/image.name"
mv "$work/image.tar" "$out/image.tar"
echo "build-vm-image: $name ($(du -h "$out/disk.qcow2" | cut -f1) qcow2," \
        "kernel $kver) in $(( $(date +%s) - start )) s" >&2
