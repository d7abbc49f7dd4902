#!/bin/bash
# Builds the test environment's sandbox ("pause") image offline: tests/env/pause.c
# compiled static (cc -static -Os; libc6-dev has libc.a) as /pause, packed as
# an OCI image layout tar that `ctr images import` accepts.
#
#   build-pause-image.sh OUT_DIR [IMAGE_NAME]
#
# Writes OUT_DIR/image.tar. Idempotent: does nothing when it is newer than
# this script, oci-image.sh and pause.c and was built for the same name.
set -euo pipefail

out=${1:?usage: build-pause-image.sh OUT_DIR [IMAGE_NAME]}
name=${2:-docker.io/unishim/pause:latest}
dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
src=$dir/pause.c
# shellcheck source=tests/env/oci-image.sh
. "$dir/oci-image.sh"
cc=${CC:-cc}

if oci_image_current "$out" "$name" "$0" "$src"; then
        exit 0
fi

mkdir -p "$out"
work=$(mktemp -d "$out/.build.XXXXXX")
trap 'rm -rf "$work"' EXIT

rootfs=$work/rootfs
mkdir -p "$rootfs"
if ! "$cc" -static -Os -o "$rootfs/pause" "$src" 2>"$work/cc.log"; then
        echo "build-pause-image: cannot build a static pause (libc6-dev provides libc.a):" >&2
        cat "$work/cc.log" >&2
        exit 1
fi
strip "$rootfs/pause" 2>/dev/null || true
chmod 0755 "$rootfs/pause"

oci_image_tar "$rootfs" "$name" '{"Entrypoint":["/pause"],"WorkingDir":"/"}' \
        "unishim tests/env/build-pause-image.sh (pause.c)" "$work/image.tar" --owner=0 --group=0

echo "$name" >"$out/image.name"
mv "$work/image.tar" "$out/image.tar"
