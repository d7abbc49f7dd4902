#!/bin/bash
# Builds the test image offline from Debian's busybox-static and packs it as
# an OCI image layout tar that `ctr images import` accepts.
#
#   build-image.sh OUT_DIR [IMAGE_NAME]
#
# Writes OUT_DIR/rootfs/ (the unpacked root filesystem, for tests that run a
# hand-written OCI spec with `ctr run --config`) and OUT_DIR/image.tar.
# Deterministic: the same busybox gives the same digests. Idempotent: does
# nothing when OUT_DIR/image.tar is newer than this script, oci-image.sh and
# busybox.
set -euo pipefail

out=${1:?usage: build-image.sh OUT_DIR [IMAGE_NAME]}
name=${2:-docker.io/unishim/test:latest}
busybox=${BUSYBOX:-/bin/busybox}
# shellcheck source=tests/env/oci-image.sh
. "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/oci-image.sh"

[ -x "$busybox" ] || { echo "build-image: $busybox missing (apt-get install busybox-static)" >&2; exit 1; }
if ! file -L "$busybox" 2>/dev/null | grep -q 'statically linked' && ldd "$busybox" >/dev/null 2>&1; then
        echo "build-image: $busybox is not static (install busybox-static)" >&2
        exit 1
fi

if [ -d "$out/rootfs/bin" ] && oci_image_current "$out" "$name" "$0" "$busybox"; then
        exit 0
fi

mkdir -p "$out"
work=$(mktemp -d "$out/.build.XXXXXX")
trap 'rm -rf "$work"' EXIT

# --- root filesystem ---------------------------------------------------------
rootfs=$work/rootfs
mkdir -p "$rootfs"/{bin,sbin,usr/bin,usr/sbin,etc,proc,sys,dev,tmp,root,home/user,var/tmp,run}
chmod 1777 "$rootfs/tmp" "$rootfs/var/tmp"
chmod 0700 "$rootfs/root"
install -m 0755 "$busybox" "$rootfs/bin/busybox"
# Applet links at their usual places (bin/sh, usr/bin/id, sbin/ip, ...).
"$busybox" --list-full | while read -r applet; do
        [ "$applet" = bin/busybox ] && continue
        dir=$(dirname "$applet")
        mkdir -p "$rootfs/$dir"
        rel=$(realpath -ms --relative-to="/$dir" /bin/busybox)
        ln -sf "$rel" "$rootfs/$applet"
done
cat >"$rootfs/etc/passwd" <<'PASSWD'
root:x:0:0:root:/root:/bin/sh
user:x:1000:1000:user:/home/user:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
PASSWD
cat >"$rootfs/etc/group" <<'GROUP'
root:x:0:
user:x:1000:
nogroup:x:65534:
GROUP
echo "unishim-test" >"$rootfs/etc/hostname"
chown 1000:1000 "$rootfs/home/user"

# --- OCI image layout ----------------------------------------------------------
# Files are root-owned (we run as root) except home/user (uid 1000): keep
# the real owners (no --owner/--group for the layer), the rest is fixed.
oci_image_tar "$rootfs" "$name" \
        '{"Env":["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],"Cmd":["/bin/sh"],"WorkingDir":"/"}' \
        "unishim tests/env/build-image.sh (busybox-static)" "$work/image.tar"

# Publish atomically (rootfs first: image.tar is the "done" marker).
rm -rf "$out/rootfs"
mv "$rootfs" "$out/rootfs"
echo "$name" >"$out/image.name"
mv "$work/image.tar" "$out/image.tar"
