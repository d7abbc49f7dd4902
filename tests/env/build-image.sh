#!/bin/bash
# Builds the test image offline from Debian's busybox-static and packs it as
# an OCI image layout tar that `ctr images import` accepts.
#
#   build-image.sh OUT_DIR [IMAGE_NAME]
#
# Writes OUT_DIR/rootfs/ (the unpacked root filesystem, for tests that run a
# hand-written OCI spec with `ctr run --config`) and OUT_DIR/image.tar.
# Deterministic: the same busybox gives the same digests. Idempotent: does
# nothing when OUT_DIR/image.tar is newer than this script and busybox.
set -euo pipefail

out=${1:?usage: build-image.sh OUT_DIR [IMAGE_NAME]}
name=${2:-docker.io/unishim/test:latest}
busybox=${BUSYBOX:-/bin/busybox}

[ -x "$busybox" ] || { echo "build-image: $busybox missing (apt-get install busybox-static)" >&2; exit 1; }
if ! file -L "$busybox" 2>/dev/null | grep -q 'statically linked' && ldd "$busybox" >/dev/null 2>&1; then
        echo "build-image: $busybox is not static (install busybox-static)" >&2
        exit 1
fi

if [ -s "$out/image.tar" ] && [ -d "$out/rootfs/bin" ] &&
        [ "$out/image.tar" -nt "$0" ] && [ "$out/image.tar" -nt "$busybox" ] &&
        [ "$(cat "$out/image.name" 2>/dev/null)" = "$name" ]; then
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
layout=$work/layout
mkdir -p "$layout/blobs/sha256"

blob() { # FILE -> moves it into blobs, prints "digest size"
        local d s
        d=$(sha256sum "$1" | cut -d' ' -f1)
        s=$(stat -c %s "$1")
        mv "$1" "$layout/blobs/sha256/$d"
        echo "sha256:$d $s"
}

# Files are root-owned (we run as root) except home/user (uid 1000): keep
# the real owners, fix everything else that varies between builds.
tar --sort=name --numeric-owner --mtime=@0 --format=gnu -C "$rootfs" -cf "$work/layer.tar" .
read -r layer_digest layer_size < <(blob "$work/layer.tar")

printf '%s' "$(jq -cn --arg diff "$layer_digest" '{
        architecture: "amd64", os: "linux",
        config: {
                Env: ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
                Cmd: ["/bin/sh"], WorkingDir: "/"
        },
        rootfs: {type: "layers", diff_ids: [$diff]},
        history: [{created_by: "unishim tests/env/build-image.sh (busybox-static)"}]
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

# Publish atomically (rootfs first: image.tar is the "done" marker).
rm -rf "$out/rootfs"
mv "$rootfs" "$out/rootfs"
echo "$name" >"$out/image.name"
mv "$work/image.tar" "$out/image.tar"
