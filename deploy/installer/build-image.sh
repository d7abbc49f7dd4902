#!/bin/bash
# Builds the node installer's image (deploy/unishim-deploy.yaml) without a
# container engine: busybox-static (tests/env/build-image.sh's root
# filesystem), a static kubectl, the installer script and what it installs,
# packed by tests/env/oci-image.sh as an OCI image layout tar that
# `ctr images import` (or skopeo, crane) takes and pushes to a registry.
#
#   build-image.sh OUT_DIR [IMAGE_NAME]
#
#   UNISHIM_BUILD_DIR  the build with shim/containerd-shim-unishim-v2,
#                      cri/unishimctl, vmm/guest-image/{vmlinux,initramfs.cpio}
#                      (default <source>/build)
#   KUBECTL            a statically linked kubectl (default: the one on PATH)
#
# Writes OUT_DIR/image.tar and OUT_DIR/image.name. The shim and unishimctl
# are the build's, linked against the build machine's libraries: the nodes
# need the same distribution's (docs/kubernetes.md).
set -euo pipefail

out=${1:?usage: build-image.sh OUT_DIR [IMAGE_NAME]}
name=${2:-docker.io/unishim/deploy:latest}
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
src=$(cd "$here/../.." && pwd)
build=${UNISHIM_BUILD_DIR:-$src/build}
kubectl=${KUBECTL:-$(command -v kubectl || true)}
# shellcheck source=tests/env/oci-image.sh
. "$src/tests/env/oci-image.sh"

shim=$build/shim/containerd-shim-unishim-v2
ctl=$build/cri/unishimctl
guest=$build/vmm/guest-image
for f in "$shim" "$ctl" "$guest/vmlinux" "$guest/initramfs.cpio" "$guest/kernel-config"; do
        [ -f "$f" ] || { echo "build-image: $f missing (make build)" >&2; exit 1; }
done
[ -n "$kubectl" ] && [ -x "$kubectl" ] || { echo "build-image: no kubectl (set KUBECTL)" >&2; exit 1; }
if ldd "$kubectl" >/dev/null 2>&1; then
        echo "build-image: $kubectl is not statically linked: the image has no libc" >&2
        exit 1
fi

mkdir -p "$out"
work=$(mktemp -d "$out/.build.XXXXXX")
trap 'rm -rf "$work"' EXIT

# The busybox root filesystem of the test image, built in the work dir.
"$src/tests/env/build-image.sh" "$work/base" docker.io/unishim/deploy-base:latest >/dev/null
rootfs=$work/base/rootfs
a=$rootfs/opt/unishim-artifacts
mkdir -p "$a/bin" "$a/share/unishim" "$a/etc" "$rootfs/usr/local/bin"
install -m 0755 "$here/unishim-deploy.sh" "$a/unishim-deploy.sh"
install -m 0755 "$shim" "$ctl" "$a/bin/"
install -m 0644 "$guest/vmlinux" "$guest/initramfs.cpio" "$guest/kernel-config" "$a/share/unishim/"
install -m 0644 "$here"/etc/unishim*.json "$a/etc/"
install -m 0755 "$kubectl" "$rootfs/usr/local/bin/kubectl"

oci_image_tar "$rootfs" "$name" \
        '{"Env":["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],"Entrypoint":["/opt/unishim-artifacts/unishim-deploy.sh"],"Cmd":["install","--wait"],"WorkingDir":"/"}' \
        "unishim deploy/installer/build-image.sh" "$work/image.tar" --owner=0 --group=0
echo "$name" >"$out/image.name"
mv "$work/image.tar" "$out/image.tar"
