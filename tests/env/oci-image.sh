# shellcheck shell=bash
# Sourced by tests/env/build-image.sh and build-pause-image.sh: packs a root
# filesystem as a single-layer OCI image layout tar that `ctr images import`
# accepts. Reproducible: sorted tars with fixed mtimes, compact jq output.
#
#   oci_image_tar ROOTFS NAME CONFIG CREATED_BY OUT [LAYER_TAR_OPTION...]
#
# ROOTFS     directory packed as the image's only layer
# NAME       image reference (io.containerd.image.name; the part after the
#            last ':' is the org.opencontainers.image.ref.name)
# CONFIG     the image config's "config" object as JSON (Entrypoint, Cmd,
#            Env, WorkingDir, Labels, ...), serialised in the given key order
# CREATED_BY the history entry's created_by
# OUT        the image tar to write; its directory must be a scratch
#            directory (the layout is assembled in a temporary directory
#            there, removed on success, left for the caller's cleanup on
#            failure)
# LAYER_TAR_OPTION... extra options for the layer tar (e.g. --owner=0
#            --group=0 to not keep the files' real owners)
#
#   oci_image_current OUT_DIR NAME INPUT...
#
# True when OUT_DIR/image.tar exists, is newer than every INPUT and than this
# file, and was built for NAME (OUT_DIR/image.name): the build can be skipped.
#
# The caller runs with `set -euo pipefail`; needs jq, sha256sum, GNU tar.

oci_image_current() {
        local out=$1 name=$2 f
        shift 2
        [ -s "$out/image.tar" ] || return 1
        for f in "${BASH_SOURCE[0]}" "$@"; do
                [ "$out/image.tar" -nt "$f" ] || return 1
        done
        [ "$(cat "$out/image.name" 2>/dev/null)" = "$name" ]
}

# _oci_image_blob LAYOUT FILE: moves FILE into LAYOUT's blobs, prints
# "digest size".
_oci_image_blob() {
        local d s
        d=$(sha256sum "$2" | cut -d' ' -f1)
        s=$(stat -c %s "$2")
        mv "$2" "$1/blobs/sha256/$d"
        echo "sha256:$d $s"
}

oci_image_tar() {
        local rootfs=$1 name=$2 config=$3 created_by=$4 out=$5
        shift 5
        local tmp layout
        tmp=$(mktemp -d "$(dirname "$out")/.oci.XXXXXX")
        layout=$tmp/layout
        mkdir -p "$layout/blobs/sha256"

        local layer_digest layer_size config_digest config_size manifest_digest manifest_size
        tar --sort=name "$@" --numeric-owner --mtime=@0 --format=gnu -C "$rootfs" -cf "$tmp/layer.tar" .
        read -r layer_digest layer_size < <(_oci_image_blob "$layout" "$tmp/layer.tar")

        printf '%s' "$(jq -cn --arg diff "$layer_digest" --argjson config "$config" \
                --arg created_by "$created_by" '{
                architecture: "amd64", os: "linux",
                config: $config,
                rootfs: {type: "layers", diff_ids: [$diff]},
                history: [{created_by: $created_by}]
        }')" >"$tmp/config.json"
        read -r config_digest config_size < <(_oci_image_blob "$layout" "$tmp/config.json")

        printf '%s' "$(jq -cn --arg cd "$config_digest" --argjson cs "$config_size" \
                --arg ld "$layer_digest" --argjson ls "$layer_size" '{
                schemaVersion: 2,
                mediaType: "application/vnd.oci.image.manifest.v1+json",
                config: {mediaType: "application/vnd.oci.image.config.v1+json", digest: $cd, size: $cs},
                layers: [{mediaType: "application/vnd.oci.image.layer.v1.tar", digest: $ld, size: $ls}]
        }')" >"$tmp/manifest.json"
        read -r manifest_digest manifest_size < <(_oci_image_blob "$layout" "$tmp/manifest.json")

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

        tar --sort=name --owner=0 --group=0 --numeric-owner --mtime=@0 -C "$layout" -cf "$out" .
        rm -rf "$tmp"
}
