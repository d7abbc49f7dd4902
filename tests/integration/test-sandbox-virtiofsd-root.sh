#!/bin/bash
# The operator's opt-out sandbox.virtiofsd_unprivileged: false (docs/security.md,
# "Still open"): virtiofsd runs as host root, over the host's own mounts, for
# the pods of the handler whose config says so. Through the CRI, handler
# unishim-sandbox (its config is read per pod, when the pod's first task is
# created), two pods side by side:
#  - vfsroot, the handler's config with "sandbox": {"virtiofsd_unprivileged":
#    false} (and no shared_fs: virtio-fs then): the pod runs in a VM; a container reads its rootfs (image files
#    with their owners) and a hostPath volume (a host dir the test made),
#    writes both, and what it writes (as root, or chowned to 1000) lands on
#    the host with those owners: in the snapshot's upper dir, in the volume;
#    a volume file of a host uid beyond 65535 shows with its own uid (a root
#    virtiofsd maps nothing); exec's output and exit code; every virtiofsd of
#    the pod runs as uid and gid 0 in the host's user namespace (and one of
#    them in the share, in namespaces of its own, under seccomp), and the
#    pod holds no uid range slot
#  - vfsdefault, the handler's config as the env wrote it with shared_fs
#    "virtio-fs" (the default path's pods are on 9p), no key: every
#    virtiofsd of the pod runs as one non-root host uid and gid, root of a
#    user namespace of its own, the pod holds a uid range slot, and the same
#    beyond-65535 file shows as the overflow uid
#  - rm leaves no shim, QEMU, virtiofsd, state dir, uid range slot, mount
#    (of the pods, or of the volumes), cgroup or netns mount, and the
#    volumes' host files are intact
# The handler's config is restored right after vfsroot starts, and by the
# cleanup hook whatever happens.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
IT_CRI=1
command -v qemu-system-x86_64 >/dev/null || it_skip "qemu-system-x86_64 missing (apt package qemu-system-x86)"
it_setup
HOST_KERNEL=$(host_kernel)
IDS=()

sandbox_config_save
IT_CLEANUP_HOOK=sandbox_config_restore

# A volume per pod: a file the guest reads, and one of a host uid no
# idmapped range of 65536 maps.
HIGH=100000
for v in vol-root vol-default; do
        mkdir -p "$IT_TMP/$v"
        echo "host-content-$v" >"$IT_TMP/$v/from-host"
        echo high >"$IT_TMP/$v/high"
        chown "$HIGH:$HIGH" "$IT_TMP/$v/high"
done

# pod_procs POD_ID: VFSD, the pod's virtiofsd pids (sandbox_procs finds
# them: a /proc scan, seconds on a busy machine, so once a pod); the pod's
# QEMU, virtiofsd and shim (QEMU's parent) are added to PIDS, which rm must
# end.
PIDS=()
pod_procs() {
        local procs q shim
        procs=$(sandbox_procs "$1")
        VFSD=$(awk '$2 ~ /virtiofsd/ {print $1}' <<<"$procs")
        q=$(awk '$2 ~ /qemu-system/ {print $1}' <<<"$procs")
        shim=$(awk '$1 == "PPid:" {print $2}' "/proc/$q/status" 2>/dev/null || true)
        [[ $(tr '\0' ' ' <"/proc/$shim/cmdline" 2>/dev/null) = *containerd-shim*" -id $1 "* ]] || shim=
        echo "# pod ${1:0:12}: shim ${shim:-?}, QEMU ${q:-?}, virtiofsd $(echo $VFSD)"
        # shellcheck disable=SC2206
        PIDS+=($VFSD $q $shim)
}

# vfsd_creds PID...: one line per distinct identity of these processes:
# "uid U U U U gid G G G G userns host|own"; "none" without a pid.
vfsd_creds() {
        local pid ns out=""
        for pid in "$@"; do
                ns=own
                [ "$(stat -L -c %i "/proc/$pid/ns/user")" = "$(stat -L -c %i /proc/$$/ns/user)" ] && ns=host
                out+="$(awk '$1 == "Uid:" {u = $2 " " $3 " " $4 " " $5} $1 == "Gid:" {g = $2 " " $3 " " $4 " " $5}
                        END {print "uid " u " gid " g}' "/proc/$pid/status") userns $ns"$'\n'
        done
        [ -n "$out" ] && sort -u <<<"${out%$'\n'}" || echo none
}

# vol_mounts NAME: the mount points, in the host's mount namespace, of the
# volume dir NAME or anything below it (mountinfo's 4th field is the path
# inside the mounted filesystem: the test dir's own name and below).
vol_mounts() {
        awk -v t="/$(basename "$IT_TMP")/$1" 'index($4, t) {print $5}' /proc/self/mountinfo
}

# ---- vfsroot: the handler's config opts out ----
jq '.sandbox.virtiofsd_unprivileged = false' "$IT_TMP/sandbox-config.json" >"$IT_TMP/cfg-root.json"
cp "$IT_TMP/cfg-root.json" "$ENV_SANDBOX_CONFIG"
run_volume_pod vfsroot "$IT_TMP/vol-root" "handler config: sandbox.virtiofsd_unprivileged false"
sandbox_config_restore
expect_eq "the handler's config is the env's again" "" "$(cmp "$IT_TMP/sandbox-config.json" "$ENV_SANDBOX_CONFIG" 2>&1)"
idr=$(pod_id vfsroot)
IDS+=("$idr")
volume_pod_checks vfsroot "virtiofs virtiofs"
[ "$KERN" != "$HOST_KERNEL" ] && pass "vfsroot runs on the guest's kernel ($KERN)" || fail "vfsroot: uname -r is the host's ($KERN)"

# The rootfs's writes land in the snapshot's upper dir on the host, with
# the owners the guest gave them.
tag=vfsroot$$
out_rc out rc ectl exec vfsroot -- sh -c "echo guest-wrote > /$tag-root && touch /$tag-user &&
        chown 1000:1000 /$tag-user && cat /$tag-root"
expect_eq "vfsroot writes its rootfs (as root, and a file chowned to 1000)" guest-wrote "$out"
expect_eq "on the host, the rootfs file root wrote is uid 0's, in the upper dir" "0:0 644" "$(snapshot_upper_stat "$tag-root")"
expect_eq "on the host, the rootfs file chowned to 1000 is 1000's" "1000:1000 644" "$(snapshot_upper_stat "$tag-user")"
expect_eq "on the host, its content" guest-wrote \
        "$(cat "$ENV_ROOT"/io.containerd.snapshotter.v1.overlayfs/snapshots/*/fs/"$tag-root" 2>&1)"

# The volume: read, written, the owners kept both ways.
out_rc out rc ectl exec vfsroot -- sh -c 'cat /data/from-host; stat -c %u:%g /data/high;
        echo from-guest > /data/from-guest && touch /data/user && chown 1000:1000 /data/user'
expect_eq "vfsroot reads the volume, its beyond-65535 file with the host's uid" \
        "$(printf 'host-content-vol-root\n%s:%s' $HIGH $HIGH)" "$out"
expect_eq "vfsroot's write to the volume reaches the host" from-guest "$(cat "$IT_TMP/vol-root/from-guest" 2>&1)"
expect_eq "on the host, the volume's files are root's and 1000's" "$(printf '0:0\n1000:1000')" \
        "$(stat -c %u:%g "$IT_TMP/vol-root/from-guest" "$IT_TMP/vol-root/user" 2>&1)"

# virtiofsd is host root; no uid range is taken.
# (The config file is the env's again by now: the pod keeps what it read.)
pod_procs "$idr"
# shellcheck disable=SC2086
expect_eq "every virtiofsd of vfsroot runs as uid and gid 0 in the host's user namespace" \
        "uid 0 0 0 0 gid 0 0 0 0 userns host" "$(vfsd_creds $VFSD)"
stater=$(echo /run/unishim/*/"$idr")
# Root, it keeps the rest of its confinement (docs/security.md): one of
# them serves from the share, in mount and net namespaces of its own, under
# seccomp with no_new_privs.
ns_of() { stat -L -c %i "/proc/$1/ns/$2" 2>/dev/null; }
confined=
for p in $VFSD; do
        [ "$(stat -L -c %d:%i "/proc/$p/root" 2>/dev/null)" = "$(stat -c %d:%i "$stater/shared")" ] &&
                [ "$(ns_of "$p" mnt)" != "$(ns_of $$ mnt)" ] && [ "$(ns_of "$p" net)" != "$(ns_of $$ net)" ] &&
                grep -q '^Seccomp:[[:space:]]*2$' "/proc/$p/status" && grep -q '^NoNewPrivs:[[:space:]]*1$' "/proc/$p/status" &&
                confined=$p
done
[ -n "$confined" ] && pass "vfsroot's virtiofsd $confined: rooted in the share, own mount and net namespaces, seccomp, no_new_privs" ||
        fail "no virtiofsd of vfsroot confined: $(for p in $VFSD; do echo "$p root $(readlink "/proc/$p/root") $(grep -E '^(Seccomp|NoNewPrivs):' "/proc/$p/status" | tr -s '\t\n' '  ')"; done)"
[ -d "$stater" ] && [ ! -e "$stater/uid-slot" ] && pass "vfsroot holds no uid range slot" ||
        fail "vfsroot's state dir '$stater': $(ls "$stater" 2>&1 | tr '\n' ' ')"

# ---- vfsdefault: the env's config over virtio-fs, no key ----
jq '.sandbox.shared_fs = "virtio-fs"' "$IT_TMP/sandbox-config.json" >"$ENV_SANDBOX_CONFIG"
f=$(sandbox_volume_pod vfsdefault "$IT_TMP/vol-default")
out_rc out rc ectl run "$f"
sandbox_config_restore
expect_eq "run vfsdefault (the handler's config with shared_fs virtio-fs, no virtiofsd key)" 0 "$rc"
[ "$rc" = 0 ] || echo "# $out"
idd=$(pod_id vfsdefault)
IDS+=("$idd")
expect_match "ps: vfsdefault runs, kind sandbox" "vfsdefault +default +Ready +unishim-sandbox +sandbox" "$(ectl ps)"
out_rc out rc ectl exec vfsdefault -- sh -c 'cat /data/from-host; stat -c %u:%g /data/high'
expect_eq "vfsdefault reads its volume, the beyond-65535 file as the overflow uid" \
        "$(printf 'host-content-vol-default\n65534:65534')" "$out"
pod_procs "$idd"
# shellcheck disable=SC2086
creds=$(vfsd_creds $VFSD)
read -r _ u1 u2 u3 u4 _ g1 g2 g3 g4 _ uns <<<"$creds" || true
if [ "$(wc -l <<<"$creds")" = 1 ] && [[ ${u1:-} =~ ^[1-9][0-9]*$ ]] && [ "$uns" = own ] &&
        [ "$u2 $u3 $u4 $g1 $g2 $g3 $g4" = "$u1 $u1 $u1 $u1 $u1 $u1 $u1" ]; then
        pass "every virtiofsd of vfsdefault runs as host uid and gid $u1, in a user namespace of its own"
else
        fail "vfsdefault's virtiofsd: $creds"
fi
stated=$(echo /run/unishim/*/"$idd")
[ -s "$stated/uid-slot" ] && pass "vfsdefault holds a uid range slot ($(cat "$stated/uid-slot"))" ||
        fail "vfsdefault's state dir '$stated': $(ls "$stated" 2>&1 | tr '\n' ' ')"

# The shim binds the volumes into the pods' share on the host: what rm
# must undo.
for v in vol-root vol-default; do
        n=$(vol_mounts "$v" | wc -l)
        [ "$n" -ge 1 ] && pass "$v is mounted in its pod's share on the host ($n mounts)" ||
                fail "no mount of $v on the host"
done

# ---- removal ----
for p in vfsroot vfsdefault; do
        out_rc out rc ectl rm --timeout 0 "$p"
        expect_eq "rm $p" 0 "$rc"
done
# (each pod: its shim, QEMU and at least one virtiofsd, recorded above)
[ "${#PIDS[@]}" -ge 6 ] && wait_until 30 pids_gone "${PIDS[@]}" && pass "the pods' shims, QEMUs and virtiofsds exit (${#PIDS[@]} processes)" ||
        fail "still running after rm: $(for p in "${PIDS[@]}"; do [ -e "/proc/$p" ] && tr '\0' ' ' <"/proc/$p/cmdline"; done)"
# The uid range slots are the machine's: another environment's pod may be
# between taking one and recording it (lib.sh). Each try scans /proc.
no_leftovers() {
        LEFT=$(sandbox_leftovers "${IDS[@]}")
        [ -z "$LEFT" ]
}
wait_until 1 no_leftovers || true
expect_eq "nothing of the pods left (shim, QEMU, virtiofsd, dirs, uid slots, mounts, cgroups)" "" "$LEFT"
expect_eq "no mount of the volumes left" "" "$(vol_mounts vol-)"
expect_eq "no pod listed" "" "$(ectl ps -q)"
expect_eq "no netns bind mount" "" "$(ls -A "$ENV_STATE/io.containerd.grpc.v1.cri/netns" 2>/dev/null || true)"
expect_eq "the volumes' host files are intact" \
        "$(printf 'host-content-vol-root\nfrom-guest\nhost-content-vol-default')" \
        "$(cat "$IT_TMP/vol-root/from-host" "$IT_TMP/vol-root/from-guest" "$IT_TMP/vol-default/from-host" 2>&1)"

it_finish
