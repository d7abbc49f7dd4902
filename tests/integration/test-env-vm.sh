#!/bin/bash
# What the environment gives the vm kind (IT_VM_IMAGE=1, IT_LIBVIRT=1):
#  - CRI_VM_IMAGE is in the env's registry, and the CRI pulls it from there
#    (a runc pod whose container is the image, run with the host's static
#    busybox mounted in: the disk image carries no program);
#  - its root filesystem, as the CRI made it, holds exactly one disk under
#    disk/, a qcow2 with no backing file that qemu-img reads and checks,
#    owned by qemu (107:107) and read-only, as KubeVirt's containerDisks;
#  - asking again for the cached image builds nothing, also when two ask at
#    once (build-vm-image.sh's lock);
#  - libvirtd answers on qemu:///system, and another user's start and stop
#    meanwhile leave it running for this one.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

command -v qemu-img >/dev/null || it_skip "qemu-img missing (apt package qemu-utils)"
IT_CRI=1 IT_VM_IMAGE=1 IT_LIBVIRT=1
it_setup

# ---- the image in the registry, pulled by the CRI ----
expect_eq "CRI_VM_IMAGE is the registry's name" "$ENV_REGISTRY/unishim/vm-debian:12" "$CRI_VM_IMAGE"
repo=${CRI_VM_IMAGE#"$ENV_REGISTRY"/}
out_rc out rc env_nsenter timeout 10 busybox wget -q -O - "http://$ENV_REGISTRY/v2/${repo%:*}/tags/list"
expect_match "the registry lists its tag" "\"${CRI_VM_IMAGE##*:}\"" "$out"

pod=$(it_pod vm-image.json --arg vmimg "$CRI_VM_IMAGE" '{name: "vmimage", runtime_handler: "runc",
        containers: [{name: "disk", image: $vmimg,
                command: ["/busybox", "sleep", "1000"],
                mounts: [{host_path: "/bin/busybox", container_path: "/busybox", readonly: true}]}]}')
t0=$EPOCHREALTIME
out_rc out rc ectl run "$pod"
[ "$rc" = 0 ] && pass "a pod of CRI_VM_IMAGE runs (PullImage from the registry)" ||
        fail "a pod of CRI_VM_IMAGE: exit $rc: $out"
echo "# pull and run: $(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }') s"
cri_images=$(timeout 30 ctr -a "$ENV_ADDR" -n k8s.io images ls 2>/dev/null || true)
expect_match "the CRI pulled it (namespace k8s.io, the CRI's label)" "io.cri-containerd.image=managed" \
        "$(awk -v n="$CRI_VM_IMAGE" '$1 == n' <<<"$cri_images")"

# ---- its root filesystem: one qcow2 under disk/ ----
cid=$(ctr_id vmimage disk)
cpid=$(timeout 30 ctr -a "$ENV_ADDR" -n k8s.io tasks ls 2>/dev/null | awk -v id="$cid" '$1 == id { print $2 }')
root=/proc/${cpid:-0}/root
if [ -n "$cpid" ] && [ -d "$root/disk" ]; then
        pass "the container's root has disk/"
else
        fail "no disk/ in the container's root (container '$cid', pid '$cpid')"
fi
out_rc disks rc ectl exec vmimage -- /busybox ls -A /disk
expect_eq "disk/ holds one file, the qcow2 (ls inside the container)" "debian-12.qcow2" "$disks"
qcow=$root/disk/debian-12.qcow2
out_rc info rc qemu-img info --output=json "$qcow"
expect_eq "qemu-img info reads it" 0 "$rc"
expect_eq "its format is qcow2" qcow2 "$(jq -r .format <<<"$info" 2>/dev/null)"
expect_eq "it has no backing file" none "$(jq -r '."backing-filename" // "none"' <<<"$info" 2>/dev/null)"
out_rc chk rc qemu-img check -q "$qcow"
expect_eq "qemu-img check finds it consistent" 0 "$rc${chk:+: $chk}"
expect_eq "owned by qemu (107:107), read-only" "107:107 444" "$(stat -c '%u:%g %a' "$qcow" 2>&1)"

out_rc out rc ectl rm --timeout 0 vmimage
expect_eq "rm the pod" 0 "$rc"
expect_eq "nothing of the pod left" "" "$(pod_leftovers "$cid")"

# ---- the cache: built once ----
before=$(stat -c %Y.%i "$ENV_VM_IMAGE_DIR/image.tar")
t0=$EPOCHREALTIME
env_vm_image_build >"$IT_TMP/b1" 2>&1 & b1=$!
env_vm_image_build >"$IT_TMP/b2" 2>&1 & b2=$!
rc1=0 rc2=0
wait "$b1" || rc1=$?
wait "$b2" || rc2=$?
secs=$(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }')
expect_eq "two requests at once for the cached image succeed" "0 0" "$rc1 $rc2"
expect_eq "and build nothing (image.tar unchanged, ${secs}s)" "$before" \
        "$(stat -c %Y.%i "$ENV_VM_IMAGE_DIR/image.tar")"
expect_eq "no build work dir left" "" "$(find "$ENV_VM_IMAGE_DIR" -maxdepth 1 -name '.build.*')"

# ---- libvirt ----
env_libvirt_up && pass "libvirtd answers on $ENV_LIBVIRT_URI" || fail "libvirtd does not answer"
lvpid=$(env_libvirt_pid)
other=envtest-other-$$
if env_libvirt_start "$other" && env_libvirt_stop "$other"; then
        pass "another user's start and stop"
else
        fail "another user's start and stop"
fi
env_libvirt_up && pass "libvirtd still answers for this test after the other user's stop" ||
        fail "libvirtd stopped under this test"
expect_eq "the same libvirtd" "$lvpid" "$(env_libvirt_pid)"

it_finish
