#!/bin/bash
# Sandbox pods whose files reach the guest over 9p (sandbox.shared_fs "9p":
# QEMU's own virtio-9p device, no virtiofsd; docs/vmm.md "Shares"), through
# the CRI, handler unishim-sandbox, its config edited per pod (read when the
# pod's first task is created, as test-sandbox-virtiofsd-root.sh does):
#  - shared_fs "9p" with a guest kernel without 9p (the cloud image): the
#    pod is refused at RunPodSandbox, the error naming sandbox.shared_fs and
#    the kernel's config, and nothing of it is left
#  - ninep: shared_fs "9p" on the generic image (built through the
#    guest-image-generic target, its time printed when it rebuilt): the
#    volume is a 9p mount in the guest, the rootfs an overlay over the 9p
#    rootfs (its writes in guest memory); the container reads its rootfs
#    with the image's owners, writes into it as root, setuid, and chowns
#    to 1000, and reads it back; none of it reaches the host's snapshot
#    (the design: docs/vmm.md); a fifo made and used, and a unix socket
#    bound and connected by path (tests/tools/unix-socket), on the rootfs's
#    /tmp, which is no tmpfs; 16 MiB written to the rootfs are charged to
#    the container's memory cgroup; a hostPath volume read and written, owners
#    kept both ways; exec's output and exit code; no virtiofsd runs for the pod;
#    QEMU runs as the pod's uid range root (the slot's base) in a user
#    namespace of its own, with exactly CAP_CHOWN, CAP_DAC_OVERRIDE,
#    CAP_FOWNER and CAP_FSETID (effective, permitted, bounding; none
#    inheritable or ambient), no_new_privs and seccomp
#  - ed: an emptyDir volume (a host dir at the kubelet's
#    pods/<uid>/volumes/kubernetes.io~empty-dir/<name>, with an fsGroup's
#    group and setgid) mounted by two containers of a 9p pod is a dir of the
#    pod's own in the guest (its tmpfs), with the host dir's mode and
#    owners: a unix socket, a fifo and a file made by one container are
#    seen by the other, a line passes through the fifo from one to the
#    other, and the host dir stays empty; container b mounts it
#    HostToContainer (the same dir); another pod's emptyDir bound in by
#    path stays on the share; a subPath of an emptyDir is refused, naming
#    the volume
#  - vfs: shared_fs "virtio-fs" on the same generic image beside it (its
#    virtiofsd runs; its rootfs is the virtio-fs share itself, its writes
#    in the snapshot's upper dir): the start of both pods is printed, not
#    asserted
#  - rm leaves nothing: shim, QEMU, virtiofsd, state dir, uid slot, mounts
#    (of the pods or of the volumes), cgroup, netns mount
#  - hostile: a privileged container of a 9p pod cannot mount the share's
#    tag a second time (EBUSY: the agent's mount holds its one channel)
#  - killed: a 9p pod whose shim is killed -9: its QEMU dies with it, and
#    rm (after containerd's shim delete) leaves nothing
# The handler's config is restored after each pod, and by the cleanup hook
# whatever happens.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
IT_CRI=1
command -v qemu-system-x86_64 >/dev/null || it_skip "qemu-system-x86_64 missing (apt package qemu-system-x86)"
UNIX_SOCKET=$UNISHIM_BUILD_DIR/tests/unix-socket
[ -x "$UNIX_SOCKET" ] || { echo "FAIL: $UNIX_SOCKET missing (built with the tests)"; exit 1; }

sandbox_9p_image
# An image without 9p for the refusal: the build's default (cloud) image,
# or its cloud/ beside a minimal default.
NO9P=
for d in "$UNISHIM_BUILD_DIR/vmm/guest-image" "$UNISHIM_BUILD_DIR/vmm/guest-image/cloud"; do
        if [ -f "$d/vmlinux" ] && [ -f "$d/kernel-config" ] && ! env_image_has_9p "$d"; then
                NO9P=$d
                break
        fi
done

it_setup
IDS=()

sandbox_config_save
cleanup_9p() {
        sandbox_config_restore
        prop_unmount_tmp
}
IT_CLEANUP_HOOK=cleanup_9p
# use_config SHARED_FS IMAGE_DIR: the handler's config with those.
use_config() {
        local ir
        ir=$(env_image_initrd "$2")
        jq --arg fs "$1" --arg k "$2/vmlinux" --arg i "$ir" \
                '.sandbox.shared_fs = $fs | .sandbox.kernel = $k | .sandbox.initrd = $i' \
                "$IT_TMP/sandbox-config.json" >"$ENV_SANDBOX_CONFIG"
}

for v in vol-9p vol-vfs; do
        mkdir -p "$IT_TMP/$v"
        echo "host-content-$v" >"$IT_TMP/$v/from-host"
        echo user >"$IT_TMP/$v/user-file"
        chown 1000:1000 "$IT_TMP/$v/user-file"
        chmod 600 "$IT_TMP/$v/user-file"
done
# Run from the volume: the test image's busybox has no unix sockets.
cp "$UNIX_SOCKET" "$IT_TMP/vol-9p/unix-socket"

# ---- refused: 9p with a kernel without it ----
if [ -n "$NO9P" ]; then
        use_config 9p "$NO9P"
        f=$(sandbox_volume_pod refused "$IT_TMP/vol-9p")
        dirs_before=$(ls -d /run/unishim/"$ENV_NS"/* 2>/dev/null || true)
        pod_refused "9p on the image without 9p ($NO9P)" "$f"
        sandbox_config_restore
        expect_match "the refusal names sandbox.shared_fs" 'sandbox\.shared_fs is \\?"9p' "$ERR"
        expect_match "the refusal names the image's kernel config" "$NO9P/kernel-config has no CONFIG_9P_FS" "$ERR"
        expect_eq "the refused pod left no state dir" "$dirs_before" "$(ls -d /run/unishim/"$ENV_NS"/* 2>/dev/null || true)"
        expect_eq "the refused pod holds no uid slot" "" "$(sandbox_uid_slots)"
else
        echo "# not checked: the refusal of 9p without it (no image without 9p in $UNISHIM_BUILD_DIR/vmm/guest-image)"
fi

# ---- ninep: the generic image, shared_fs 9p ----
use_config 9p "$GEN"
# run_pod NAME VOLUME DESC: runs the pod with the config in place, then
# restores the config; T: how long ectl run took; its id goes to IDS.
run_pod() {
        run_volume_pod "$@"
        sandbox_config_restore
        IDS+=("$(pod_id "$1")")
}
run_pod ninep "$IT_TMP/vol-9p" "handler config: sandbox.shared_fs 9p, the generic image"
t_9p=$T
id9=$(pod_id ninep)
# The rootfs is the agent's overlay over the 9p rootfs.
volume_pod_checks ninep "overlay 9p"
expect_eq "ninep runs the generic image's kernel" "$(cat "$GEN/kernel-release")" "$KERN"

tag=ninep$$
out_rc out rc ectl exec ninep -- sh -c "echo guest-wrote > /$tag-root && touch /$tag-user &&
        chown 1000:1000 /$tag-user && chmod 4755 /$tag-root && stat -c '%u:%g %a' /$tag-root /$tag-user && cat /$tag-root"
expect_eq "ninep writes its rootfs (as root, setuid, and a file chowned to 1000)" \
        "$(printf '0:0 4755\n1000:1000 644\nguest-wrote')" "$out"
# The design: a 9p pod's rootfs writes live in the guest's overlay (its
# memory), not in the snapshot (the vfs pod below shows where they land
# without it, through the same snapshot_upper_stat).
expect_eq "on the host, ninep's rootfs writes are in no snapshot's upper dir" "" \
        "$(snapshot_upper_stat "$tag-root"; snapshot_upper_stat "$tag-user")"
out_rc out rc ectl exec ninep -- sh -c 'rm /etc/passwd; test -e /etc/passwd; echo $?'
expect_eq "a file of the image removed in the guest is gone for it" 1 "$out"
expect_eq "on the host, the image's file is still in the container's rootfs (no whiteout)" \
        "" "$(find "$ENV_ROOT"/io.containerd.snapshotter.v1.overlayfs/snapshots \
                -mindepth 4 -maxdepth 4 -path '*/fs/etc/passwd' -type c 2>/dev/null)"

# Fifos and unix sockets on the rootfs (QEMU's 9p cannot make them: the
# overlay's upper dir does). /tmp is the rootfs's own here, no tmpfs.
out_rc out rc ectl exec ninep -- awk '$2 == "/" || $2 == "/tmp" {print $2, $3}' /proc/mounts
expect_eq "ninep's /tmp is no mount of its own: it is the rootfs's, the overlay" "/ overlay" "$out"
out_rc out rc ectl exec ninep -- sh -c 'mkfifo /tmp/f && test -p /tmp/f && { echo through-the-fifo > /tmp/f & } && cat /tmp/f'
expect_eq "ninep makes a fifo on its rootfs and passes a line through it" through-the-fifo "$out"
out_rc out rc ectl exec ninep -- sh -c '/data/unix-socket /tmp/sock && test -S /tmp/sock && echo is-a-socket'
expect_eq "ninep binds a unix socket on its rootfs and connects to it by path" \
        "$(printf 'bound\nconnected\nping\npong\nis-a-socket')" "$out"
out_rc out rc ectl exec ninep -- sh -c 'echo in-tmp > /tmp/written && cat /tmp/written'
expect_eq "ninep writes a file in its rootfs's /tmp and reads it back" in-tmp "$out"
expect_eq "on the host, none of them is in a snapshot" "" \
        "$(snapshot_upper_stat tmp/f; snapshot_upper_stat tmp/sock; snapshot_upper_stat tmp/written)"
# They are guest memory, charged to the container's memory cgroup (its
# limit bounds them): 16 MiB written raise its memory.current by about as
# much (at least 14 MiB: the cgroup may drop some page cache meanwhile).
# (/sys/fs/cgroup is the container's own cgroup in its cgroup namespace.)
out_rc out rc ectl exec ninep -- sh -c 'b=$(cat /sys/fs/cgroup/memory.current) &&
        dd if=/dev/zero of=/big bs=1M count=16 2>/dev/null && a=$(cat /sys/fs/cgroup/memory.current) &&
        rm /big && echo $(((a - b) >> 20))'
if [ "$rc" = 0 ] && [ "$out" -ge 14 ] 2>/dev/null; then
        pass "16 MiB written to ninep's rootfs are charged to its container's memory cgroup (+$out MiB)"
else
        fail "16 MiB written to ninep's rootfs: memory.current grew by '$out' MiB (rc $rc)"
        ectl exec ninep -- sh -c 'cat /proc/self/cgroup; grep cgroup /proc/mounts; ls /sys/fs/cgroup' 2>&1 | sed 's/^/# /' || true
fi

out_rc out rc ectl exec ninep -- sh -c 'cat /data/from-host; stat -c %u:%g /data/user-file;
        echo from-guest > /data/from-guest && touch /data/user && chown 1000:1000 /data/user'
expect_eq "ninep reads the volume, with the host's owners" \
        "$(printf 'host-content-vol-9p\n1000:1000')" "$out"
expect_eq "ninep's write to the volume reaches the host" from-guest "$(cat "$IT_TMP/vol-9p/from-guest" 2>&1)"
expect_eq "on the host, the volume's new files are root's and 1000's" "$(printf '0:0\n1000:1000')" \
        "$(stat -c %u:%g "$IT_TMP/vol-9p/from-guest" "$IT_TMP/vol-9p/user" 2>&1)"
# What guest root may do to files it does not own, which QEMU does for it:
# read and append to 1000's 0600 file (DAC_OVERRIDE), create in 1000's
# directory (DAC_OVERRIDE), chmod and set the times of 1000's file
# (FOWNER), make it setgid for a group QEMU is not in (FSETID).
out_rc out rc ectl exec ninep -- sh -c 'cat /data/user-file && echo more >> /data/user-file &&
        touch /home/user/by-root && chmod 2750 /data/user && touch -d "2001-02-03 04:05:06" /data/user &&
        stat -c "%u:%g %a %Y" /data/user && stat -c "%u:%g %a" /home/user/by-root'
expect_eq "guest root reads, appends to, creates in, chmods and dates what 1000 owns" \
        "$(printf 'user\n1000:1000 2750 981173106\n0:0 644')" "$out"
out_rc out rc ectl exec ninep -- sh -c 'ln -s from-host /data/link && ln /data/from-host /data/hard &&
        readlink /data/link && cat /data/hard'
expect_eq "a symlink and a hard link made in the volume" "$(printf 'from-host\nhost-content-vol-9p')" "$out"
expect_eq "on the host, they are what the guest made" "symbolic link 2" \
        "$(stat -c %F "$IT_TMP/vol-9p/link") $(stat -c %h "$IT_TMP/vol-9p/from-host")"
# Not asserted: QEMU 7.2's fix of CVE-2023-2861 (Debian's) refuses every
# open of a special file, its own O_PATH open that sets a new node's mode
# included, so a fifo or a socket cannot be made on a volume, which stays
# on the 9p share (docs/vmm.md, "The 9p share as built").
out_rc out rc ectl exec ninep -- mkfifo /data/fifo
echo "# mkfifo on the 9p volume: exit $rc ${out:-(no output)}"
expect_eq "on the host, 1000's volume file got the append, and its mode" \
        "$(printf 'user\nmore\n1000:1000 2750')" "$(cat "$IT_TMP/vol-9p/user-file"; stat -c '%u:%g %a' "$IT_TMP/vol-9p/user")"

# The pod's processes: QEMU alone, as the uid range's root.
procs=$(sandbox_procs "$id9")
q9=$(awk '$2 ~ /qemu-system/ {print $1}' <<<"$procs")
expect_eq "no virtiofsd runs for ninep" "" "$(awk '$2 ~ /virtiofsd/ {print $1}' <<<"$procs")"
state9=$(echo /run/unishim/*/"$id9")
slot=$(cat "$state9/uid-slot" 2>/dev/null || echo none)
base=$([ "$slot" != none ] && echo $((0x70000000 + slot * 65536)) || echo none)
expect_eq "ninep's QEMU runs as the pod's uid range root (slot $slot)" \
        "uid $base $base $base $base gid $base $base $base $base" \
        "$(awk '$1 == "Uid:" {u = $2 " " $3 " " $4 " " $5} $1 == "Gid:" {g = $2 " " $3 " " $4 " " $5} END {print "uid " u " gid " g}' "/proc/$q9/status" 2>&1)"
[ "$(stat -L -c %i "/proc/$q9/ns/user" 2>/dev/null)" != "$(stat -L -c %i /proc/$$/ns/user)" ] &&
        pass "ninep's QEMU is in a user namespace of its own" || fail "ninep's QEMU ($q9) is in the host's user namespace"
# CAP_CHOWN 0, CAP_DAC_OVERRIDE 1, CAP_FOWNER 3, CAP_FSETID 4.
caps=$(awk '$1 ~ /^Cap(Inh|Prm|Eff|Bnd|Amb):$/ {printf "%s %s ", $1, $2} $1 ~ /^(NoNewPrivs|Seccomp):$/ {printf "%s %s ", $1, $2}' "/proc/$q9/status" 2>&1)
expect_eq "ninep's QEMU holds only the 9p server's capabilities, no_new_privs, seccomp" \
        "CapInh: 0000000000000000 CapPrm: 000000000000001b CapEff: 000000000000001b CapBnd: 000000000000001b CapAmb: 0000000000000000 NoNewPrivs: 1 Seccomp: 2 " \
        "$caps"

# ---- ed: an emptyDir volume of a 9p pod lives in the guest ----
# A host dir where the kubelet puts an emptyDir (its fsGroup's group and
# setgid, as SetVolumeOwnership leaves it), mounted by two containers: in
# the guest, one directory of the pod's own, with the host dir's owner and
# mode, where fifos and sockets work across the containers; nothing of it
# on the host.
# (The pod's uid names its kubelet dir: another pod's emptyDir, bound in
# by hostPath, stays on the share: "other" below.)
ed_uid=0c0ffee0-ed00-4000-8000-000000000001
# (HostToContainer needs its source on a shared mount, as the kubelet's
# root dir is on a node: the CRI refuses it otherwise.)
prop_shared_dirs "$IT_TMP/kubelet" pods
ed=$IT_TMP/kubelet/pods/$ed_uid/volumes/kubernetes.io~empty-dir/shared
other=$IT_TMP/kubelet/pods/0c0ffee0-ed00-4000-8000-000000000002/volumes/kubernetes.io~empty-dir/shared
mkdir -p "$ed" "$other"
chown 0:2000 "$ed"
chmod 2777 "$ed"
echo other-pods >"$other/file"
use_config 9p "$GEN"
f=$(it_pod ed.json --arg ed "$ed" --arg o "$other" --arg v "$IT_TMP/vol-9p" --arg u "$ed_uid" '{name: "ed", uid: $u,
        runtime_handler: "unishim-sandbox",
        containers: [{name: "a", image: $img, command: ["sleep", "3600"],
                      mounts: [{host_path: $ed, container_path: "/shared"}, {host_path: $v, container_path: "/data"},
                               {host_path: $o, container_path: "/other"}]},
                     {name: "b", image: $img, command: ["sleep", "3600"],
                      mounts: [{host_path: $ed, container_path: "/shared", propagation: "HostToContainer"}]}]}')
out_rc out rc ectl run "$f"
expect_eq "run ed (9p, two containers sharing an emptyDir)" 0 "$rc"
[ "$rc" = 0 ] || echo "# $out"
sandbox_config_restore
IDS+=("$(pod_id ed)")
for c in a b; do
        out_rc out rc ectl exec ed -c "$c" -- sh -c 'stat -c "%a %u:%g" /shared; awk '"'"'$2 == "/shared" {print $3}'"'"' /proc/mounts'
        expect_eq "ed/$c: /shared has the host dir's mode and owners, on the guest's own tmpfs" \
                "$(printf '2777 0:2000\ntmpfs')" "$out"
done
out_rc out rc ectl exec ed -c a -- sh -c '/data/unix-socket /shared/sock >/dev/null && echo from-a > /shared/file && mkfifo /shared/fifo && echo made'
expect_eq "ed/a binds a unix socket, writes a file and makes a fifo in the emptyDir" made "$out"
out_rc out rc ectl exec ed -c b -- sh -c 'test -S /shared/sock && test -p /shared/fifo && cat /shared/file'
expect_eq "ed/b sees a's socket, fifo and file" from-a "$out"
# A line through the fifo, from a writer in a to a reader in b (the
# writer's open waits for the reader).
ectl exec ed -c a -- sh -c 'echo across-containers > /shared/fifo' >"$IT_TMP/ed-writer.out" 2>&1 &
writer=$!
out_rc out rc ectl exec ed -c b -- cat /shared/fifo
expect_eq "a line written by ed/a reaches ed/b through the emptyDir's fifo" across-containers "$out"
wait "$writer" || true
expect_eq "on the host, the emptyDir's dir stays empty" "" "$(ls -A "$ed" 2>&1)"
expect_eq "on the host, the emptyDir's dir keeps its mode and owners" "2777 0:2000" "$(stat -c '%a %u:%g' "$ed")"
out_rc out rc ectl exec ed -c a -- sh -c 'awk '"'"'$2 == "/other" {print $3}'"'"' /proc/mounts; cat /other/file'
expect_eq "another pod's emptyDir bound in by path stays on the share" "$(printf '9p\nother-pods')" "$out"
# A subPath of an emptyDir of a 9p pod: refused, naming the volume (its
# data is in the guest, which the kubelet's subPath bind cannot reach).
sub_uid=0c0ffee0-ed00-4000-8000-000000000003
mkdir -p "$IT_TMP/kubelet/pods/$sub_uid/volumes/kubernetes.io~empty-dir/conf" \
        "$IT_TMP/kubelet/pods/$sub_uid/volume-subpaths/conf/app/0"
use_config 9p "$GEN"
f=$(it_pod edsub.json --arg s "$IT_TMP/kubelet/pods/$sub_uid/volume-subpaths/conf/app/0" --arg u "$sub_uid" \
        '{name: "edsub", uid: $u, runtime_handler: "unishim-sandbox",
          containers: [{name: "app", image: $img, command: ["sleep", "3600"],
                        mounts: [{host_path: $s, container_path: "/etc/app.conf"}]}]}')
out_rc out rc ectl run "$f"
sandbox_config_restore
[ "$rc" != 0 ] && pass "edsub (a subPath of an emptyDir, 9p) is refused (rc $rc)" || fail "edsub ran: $out"
expect_match "the refusal names the volume and subPath" "volume conf at /etc/app.conf: a subPath of an emptyDir is not supported" "$out"
id_sub=$(pod_id edsub 2>/dev/null || true)
[ -z "$id_sub" ] || { IDS+=("$id_sub"); ectl rm --timeout 0 edsub >/dev/null 2>&1 || true; }

# ---- vfs: the same image over virtio-fs, for the start time ----
use_config virtio-fs "$GEN"
run_pod vfs "$IT_TMP/vol-vfs" "shared_fs virtio-fs, the generic image"
t_vfs=$T
idv=$(pod_id vfs)
out_rc out rc ectl exec vfs -- awk '$2 == "/" {r = $3} $2 == "/data" {d = $3} END {print r, d}' /proc/mounts
expect_eq "vfs's rootfs and volume are virtio-fs mounts" "virtiofs virtiofs" "$out"
out_rc out rc ectl exec vfs -- sh -c "echo vfs-wrote > /$tag-vfs"
expect_eq "vfs writes its rootfs" 0 "$rc"
expect_eq "on the host, vfs's rootfs write is in its snapshot's upper dir" "0:0 644" "$(snapshot_upper_stat "$tag-vfs")"
[ -n "$(sandbox_procs "$idv" | awk '$2 ~ /virtiofsd/')" ] && pass "a virtiofsd runs for vfs" || fail "no virtiofsd for vfs"
echo "# pod start (ectl run: RunPodSandbox + CreateContainer + StartContainer), generic kernel, load $(cut -d' ' -f1 /proc/loadavg): 9p ${t_9p:0:6} s, virtio-fs ${t_vfs:0:6} s"

for v in vol-9p vol-vfs; do
        n=$(awk -v t="/$(basename "$IT_TMP")/$v" 'index($4, t) {print $5}' /proc/self/mountinfo | wc -l)
        [ "$n" -ge 1 ] && pass "$v is mounted in its pod's share on the host ($n mounts)" || fail "no mount of $v on the host"
done

# ---- removal ----
PIDS=($q9 $(sandbox_procs "$idv" | awk '{print $1}') $(sandbox_procs "$(pod_id ed)" | awk '{print $1}'))
for p in ninep vfs ed; do
        out_rc out rc ectl rm --timeout 0 "$p"
        expect_eq "rm $p" 0 "$rc"
done
wait_until 30 pids_gone "${PIDS[@]}" && pass "the pods' QEMUs and virtiofsd exit (${#PIDS[@]} processes)" ||
        fail "still running after rm: $(for p in "${PIDS[@]}"; do [ -e "/proc/$p" ] && tr '\0' ' ' <"/proc/$p/cmdline"; done)"
no_leftovers() {
        LEFT=$(sandbox_leftovers "${IDS[@]}")
        [ -z "$LEFT" ]
}
wait_until 10 no_leftovers || true
expect_eq "nothing of the pods left (shim, QEMU, virtiofsd, dirs, uid slots, mounts, cgroups)" "" "$LEFT"
expect_eq "no mount of the volumes left" "" "$(awk -v t="/$(basename "$IT_TMP")/vol-" 'index($4, t) {print $5}' /proc/self/mountinfo)"
expect_eq "no pod listed" "" "$(ectl ps -q)"
expect_eq "no netns bind mount" "" "$(ls -A "$ENV_STATE/io.containerd.grpc.v1.cri/netns" 2>/dev/null || true)"
expect_eq "the volumes' host files are intact" \
        "$(printf 'host-content-vol-9p\nfrom-guest\nhost-content-vol-vfs')" \
        "$(cat "$IT_TMP/vol-9p/from-host" "$IT_TMP/vol-9p/from-guest" "$IT_TMP/vol-vfs/from-host" 2>&1)"

# ---- hostile: root in the guest reaches for the 9p share ----
# Over virtio-fs a privileged container mounts the pod's share a second
# time and finds its structure read-only (test-sandbox-hostile.sh). A 9p
# tag is one virtio channel, which the agent's mount holds: a second mount
# is refused in the guest. (The structure is read-only for QEMU in any
# case, its capabilities notwithstanding: test-vmm-jail.c.)
use_config 9p "$GEN"
f=$(it_pod hostile.json '{name: "hostile", runtime_handler: "unishim-sandbox", privileged: true,
        containers: [{name: "attacker", image: $img, privileged: true, command: ["sleep", "3600"]}]}')
out_rc out rc ectl run "$f"
expect_eq "run hostile (9p, a privileged container)" 0 "$rc"
[ "$rc" = 0 ] || echo "# $out"
sandbox_config_restore
IDS+=("$(pod_id hostile)")
# The share's tag: a cold pod's "unishim", a restored pod's the template's "pod".
tag=unishim
grep -aq "pod $(pod_id hostile): restored from VM template" "$ENV_LOG" && tag=pod
out_rc out rc ectl exec hostile -c attacker -- sh -c "mkdir -p /mnt/share &&
        mount -t 9p -o trans=virtio,version=9p2000.L $tag /mnt/share"
[ "$rc" != 0 ] && [[ $out = *"Device or resource busy"* ]] &&
        pass "a privileged container cannot mount the share's 9p tag again (the agent holds its channel)" ||
        fail "the attacker's mount of the 9p tag $tag: rc $rc: $out"
out_rc out rc ectl rm --timeout 0 hostile
expect_eq "rm hostile" 0 "$rc"

# ---- killed: a 9p pod's shim killed, QEMU goes with it ----
use_config 9p "$GEN"
run_pod killed "$IT_TMP/vol-9p" "shared_fs 9p, its shim to be killed"
idk=$(pod_id killed)
qk=$(sandbox_qemu_pid "$idk")
shimk=$(awk '$1 == "PPid:" {print $2}' "/proc/$qk/status" 2>/dev/null || true)
if [ -n "$qk" ] && [[ $(tr '\0' ' ' <"/proc/$shimk/cmdline" 2>/dev/null) = *containerd-shim*" -id $idk "* ]]; then
        kill -9 "$shimk"
        wait_until 20 pids_gone "$qk" && pass "killed's QEMU (in its user namespace, capabilities dropped) dies with its shim" ||
                fail "killed's QEMU $qk outlived its shim"
else
        fail "killed: no QEMU ('$qk') or shim ('$shimk') found"
fi
out_rc out rc ectl rm --timeout 0 killed
expect_eq "rm killed (shim delete cleans up after the dead shim)" 0 "$rc"
wait_until 10 no_leftovers || true
expect_eq "nothing of killed left (state dir, uid slot, mounts, cgroup)" "" "$LEFT"

it_finish
