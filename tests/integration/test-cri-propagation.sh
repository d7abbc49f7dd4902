#!/bin/bash
# Volume mount propagation through the real CRI (issue 9), as Kubernetes'
# mountPropagation asks it and CSI node plugins rely on, in the container
# kind and under runc in the same run; the results must be the same.
# A privileged pod binds three host directories, each a shared mount point
# the test makes under its own temp dir:
#  - Bidirectional (CRI PROPAGATION_BIDIRECTIONAL: an rshared bind and
#    rootfsPropagation rshared): a tmpfs mounted inside the container shows
#    on the host with the file written into it; a host mount made after the
#    start shows inside
#  - HostToContainer (rslave): a host mount made after the start shows
#    inside; a mount made inside does not reach the host
#  - None (rprivate): neither way
# and none of the container's own mounts (its rootfs, /proc, ...) appear in
# the host's mount table while it runs.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
IT_CRI=1
command -v mountpoint >/dev/null || it_skip "mountpoint not installed (util-linux)"
it_setup

HANDLERS=(unishim runc)
declare -A RES=()

IT_CLEANUP_HOOK=prop_unmount_tmp

for h in "${HANDLERS[@]}"; do
        echo "# ---- handler $h ----"
        d=$IT_TMP/prop-$h
        prop_shared_dirs "$d" bidi h2c none
        name=prop-$h
        f=$(it_pod "$name.json" --arg n "$name" --arg h "$h" --arg d "$d" '{name: $n,
                runtime_handler: $h, privileged: true,
                containers: [{name: "app", image: $img, privileged: true,
                  command: ["sleep", "3600"],
                  mounts: [
                    {host_path: ($d + "/bidi"), container_path: "/bidi", propagation: "Bidirectional"},
                    {host_path: ($d + "/h2c"), container_path: "/h2c", propagation: "HostToContainer"},
                    {host_path: ($d + "/none"), container_path: "/none", propagation: "None"}]}]}')
        out_rc out rc ectl run "$f"
        expect_eq "$h: run the privileged pod with the three volumes" 0 "$rc"
        if [ "$rc" != 0 ]; then
                echo "# $out"
                continue
        fi
        pod=$(pod_id "$name")
        app=$(ctr_id "$name" app)

        # Container -> host.
        for v in bidi h2c none; do
                out=$(prop_mount_inside "$name" $v)
                expect_eq "$h: $v: a tmpfs mounted inside the container" mounted "$out"
        done
        RES[$h.bidi_out]=$(cat "$d/bidi/in/f" 2>&1 || true)
        expect_eq "$h: Bidirectional: the container's mount shows on the host with its file" \
                from-bidi "${RES[$h.bidi_out]}"
        mountpoint -q "$d/bidi/in" && pass "$h: Bidirectional: $d/bidi/in is a mount point on the host" ||
                fail "$h: Bidirectional: $d/bidi/in is not a mount point on the host"
        for v in h2c none; do
                RES[$h.${v}_out]=$(mountpoint -q "$d/$v/in" && echo propagated || echo not-propagated)
                expect_eq "$h: $v: the container's mount stays inside" not-propagated "${RES[$h.${v}_out]}"
        done

        # Host -> container, after the start.
        for v in bidi h2c none; do
                prop_host_mount "$d/$v"
                RES[$h.${v}_in]=$(prop_in_ctr "$name" "cat /$v/sub/f 2>/dev/null || echo absent")
        done
        expect_eq "$h: Bidirectional: a host mount made after the start shows inside" from-host "${RES[$h.bidi_in]}"
        expect_eq "$h: HostToContainer: a host mount made after the start shows inside" from-host "${RES[$h.h2c_in]}"
        expect_eq "$h: None: a host mount made after the start stays outside" absent "${RES[$h.none_in]}"

        # Nothing of the container's own mount table reached the host.
        leaked=$(awk '$5 ~ /\/rootfs\// { print $5 }' /proc/self/mountinfo)
        expect_eq "$h: no mount inside a rootfs appears on the host" "" "$leaked"

        out_rc out rc ectl rm "$name"
        expect_eq "$h: rm" 0 "$rc"
        wait_until 10 no_pod_shim "$pod" || true
        expect_eq "$h: nothing left (shim, mounts, cgroups)" "" "$(pod_leftovers "$pod" "$app")"
        prop_unmount_tmp
done

echo "# ---- unishim vs runc ----"
for k in bidi_out h2c_out none_out bidi_in h2c_in none_in; do
        expect_eq "same under unishim and runc: $k" "${RES[runc.$k]:-}" "${RES[unishim.$k]:-}"
done

it_finish
