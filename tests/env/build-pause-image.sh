#!/bin/bash
# Builds the test environment's sandbox ("pause") image offline: tests/env/pause.c
# compiled static (cc -static -Os; libc6-dev has libc.a) as /pause, packed as
# an OCI image layout tar that `ctr images import` accepts.
#
#   build-pause-image.sh OUT_DIR [IMAGE_NAME]
#
# Writes OUT_DIR/image.tar. Idempotent: does nothing when it is newer than
# this script and pause.c and was built for the same name.
set -euo pipefail

out=${1:?usage: build-pause-image.sh OUT_DIR [IMAGE_NAME]}
name=${2:-docker.io/unishim/pause:latest}
src=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/pause.c
cc=${CC:-cc}

if [ -s "$out/image.tar" ] && [ "$out/image.tar" -nt "$0" ] && [ "$out/image.tar" -nt "$src" ] &&
        [ "$(cat "$out/image.name" 2>/dev/null)" = "$name" ]; then
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

layout=$work/layout
mkdir -p "$layout/blobs/sha256"
blob() { # FILE -> moves it into blobs, prints "digest size"
        local d s
        d=$(sha256sum "$1" | cut -d' ' -f1)
        s=$(stat -c %s "$1")
        mv "$1" "$layout/blobs/sha256/$d"
        echo "sha256:$d $s"
}

tar --sort=name --owner=0 --group=0 --numeric-owner --mtime=@0 --format=gnu -C "$rootfs" -cf "$work/layer.tar" .
read -r layer_digest layer_size < <(blob "$work/layer.tar")
printf '%s' "$(jq -cn --arg diff "$layer_digest" '{
        architecture: "amd64", os: "linux",
        config: {Entrypoint: ["/pause"], WorkingDir: "/"},
        rootfs: {type: "layers", diff_ids: [$diff]},
        history: [{created_by: "unishim tests/env/build-pause-image.sh (pause.c)"}]
}')" >"$work/config.json"
read -r config_digest config_size < <(blob "$work/config.json")
printf '%s' "$(jq -cn --arg cd "$config_digest" --argjson cs "$config_size" \
        --arg ld "$layer_digest" --argjson ls "$layer_size" '{
        schemaVersion: 2,
        mediaType: "application/vnd.oci.image.manifest.v1+json",
        config: {mediaType: "application/vnd.oci.image.config.v1+json", digest: $cd, size: $cs},
        layers: [{mediaType: "application/vnd.oci.image.layer.v1.tar", digest: $ld, size: $ls}]
}')" >"$work/manifest.json"
read -r manifest_digest manifest_size < <(blob "$work/manifest.json")
jq -cn --arg md "$manifest_digest" --argjson ms "$manifest_size" --arg name "$name" '{
        schemaVersion: 2,
        mediaType: "application/vnd.oci.image.index.v1+json",
        manifests: [{
                mediaType: "application/vnd.oci.image.manifest.v1+json",
                digest: $md, size: $ms,
                platform: {architecture: "amd64", os: "linux"},
                annotations: {
                        "io.containerd.image.name": $name,
                        "org.opencontainers.image.ref.name": ($name | sub(".*:"; ""))
                }
        }]
}' >"$layout/index.json"
echo '{"imageLayoutVersion":"1.0.0"}' >"$layout/oci-layout"
tar --sort=name --owner=0 --group=0 --numeric-owner --mtime=@0 -C "$layout" -cf "$work/image.tar" .

echo "$name" >"$out/image.name"
mv "$work/image.tar" "$out/image.tar"
