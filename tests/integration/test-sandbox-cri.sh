#!/bin/bash
# Sandbox pods (unishim.io/isolation: sandbox: the pod runs in a QEMU microvm
# with the guest agent) through the real CRI, one shared environment:
#  - uname -r in the pod is the guest's kernel, not the host's
#  - device rules hold in the guest (cgroup v2 BPF device program)
#  - ExecSync: separate stdout/stderr, exit code 7, a missing binary fails
#  - the CRI log file has the container's output (and unishimctl logs)
#  - two containers in one VM share localhost (httpd in one, wget from the other)
#  - a sandbox pod and a container pod reach each other's IPs, both ways
#  - localhost:PORT in the pod netns (what the CRI's port forwarding dials)
#    reaches the app in the guest
#  - hostPath volumes (rw, ro, a single file) reach the guest; ro ones are
#    read-only in virtiofsd's own mount namespace too
#  - files keep their owners both ways: image files root's (and 1000's) in
#    the guest; what root creates, chowns or makes setuid in the guest is
#    stored with those owners in the snapshot's upper dir; a runAsUser 1000
#    container writes what uid 1000 may, and only that
#  - a container whose volume's filesystem refuses idmapped mounts (an
#    overlay) is refused with an error saying so; its pod stays
#  - stop with a grace period: TERM trapped → exit 0, TERM ignored → 137
#  - rm leaves no shim, QEMU, virtiofsd, /run/unishim/<namespace>/<id>, mount or cgroup
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
IT_CRI=1
command -v qemu-system-x86_64 >/dev/null || it_skip "qemu-system-x86_64 missing (apt package qemu-system-x86)"
it_setup
HOST_KERNEL=$(host_kernel)
PORT=8080
SB='{"unishim.io/isolation": "sandbox"}'
IDS=()

# A sandbox pod with the given containers (JSON list); prints the file.
sbpod() {
        it_pod "$1.json" --arg n "$1" --argjson a "$SB" --argjson c "$2" \
                '{name: $n, runtime_handler: "unishim", annotations: $a, containers: $c}'
}

# ---- one pod: kernel, exec, logs ----
f=$(sbpod sb1 '[{"name": "app", "image": "'"$CRI_TEST_IMAGE"'", "command": ["/bin/sh", "-c"],
        "args": ["echo hello-from-sandbox; echo to-stderr >&2; exec sleep 3600"]}]')
out_rc out rc ectl run "$f"
expect_eq "run sandbox pod sb1" 0 "$rc"
id1=$(pod_id sb1)
IDS+=("$id1")
expect_match "ps: sb1 with kind sandbox" "sb1 +default +Ready +unishim +sandbox" "$(ectl ps)"
qpid=$(sandbox_qemu_pid "$id1")
[ -n "$qpid" ] && pass "a QEMU runs for sb1 (pid $qpid)" || fail "no qemu-system-x86_64 with -name unishim-$id1"
out_rc kern rc ectl exec sb1 -- uname -r
expect_eq "exec uname -r: exit 0" 0 "$rc"
[ -n "$kern" ] && [ "$kern" != "$HOST_KERNEL" ] && pass "uname -r in the pod ($kern) is not the host's ($HOST_KERNEL)" ||
        fail "uname -r in the pod: '$kern', host: '$HOST_KERNEL'"
expect_match "the guest kernel is the guest image's" "$(cat "$(sandbox_guest_dir)/kernel-release" 2>/dev/null || echo cloud-amd64)" "$kern"

so=$(ectl exec sb1 -- sh -c 'echo out; echo err >&2; exit 7' 2>"$IT_TMP/err" </dev/null) && rc=0 || rc=$?
expect_eq "ExecSync exit code 7" 7 "$rc"
expect_eq "ExecSync stdout" out "$so"
expect_eq "ExecSync stderr" err "$(cat "$IT_TMP/err")"
out_rc out rc ectl exec sb1 -- /no/such/binary
[ "$rc" != 0 ] && pass "ExecSync of a missing binary fails (rc $rc)" || fail "missing binary: rc 0: $out"
[[ ${out,,} = *"no such file"* ]] && pass "ExecSync of a missing binary says why, at once" ||
        fail "ExecSync of a missing binary: $out"
out_rc out rc ectl exec sb1 -- cat /proc/1/cmdline
expect_eq "ExecSync sees the container's pid 1 (sleep)" "sleep3600" "$(tr -d '\0' <<<"$out")"

# The guest's cgroups are pure v2: the CRI's device rules (deny all, then
# runc's defaults: mknod of any node, use of null, zero, tty, ...) are a BPF
# program on the container's cgroup there. The container has CAP_MKNOD and
# root may write /dev/kmsg (c 1:11) without a capability, so only that
# program stops the write; unfiltered, a missing block device would say
# ENXIO, not EPERM. (The nodes go in the container's /dev, the guest's
# tmpfs: the rootfs, served by an unprivileged virtiofsd, takes none.)
out_rc out rc ectl exec sb1 -- sh -c 'mknod /dev/null2 c 1 3 && echo ok > /dev/null2 && echo allowed'
expect_eq "device rules in the guest: mknod and write of c 1:3 (allowed)" allowed "$out"
out_rc out rc ectl exec sb1 -- sh -c 'mknod /dev/kmsg2 c 1 11 && echo x > /dev/kmsg2'
[ "$rc" != 0 ] && [[ $out = *"not permitted"* ]] && pass "device rules in the guest: writing c 1:11 refused ($out)" ||
        fail "write to c 1:11 in the guest: rc $rc: $out"
out_rc out rc ectl exec sb1 -- sh -c 'mknod /dev/blk b 8 0 && cat /dev/blk'
[ "$rc" != 0 ] && [[ $out = *"not permitted"* ]] && pass "device rules in the guest: opening b 8:0 refused ($out)" ||
        fail "open b 8:0 in the guest: rc $rc: $out"

logf=$(find "$ENV_STATE/pod-logs/default_sb1" -name 0.log 2>/dev/null | head -n1)
wait_until 10 grep -q hello-from-sandbox "$logf" || true
expect_match "CRI log file has stdout" "stdout F hello-from-sandbox" "$(cat "$logf" 2>/dev/null)"
expect_match "CRI log file has stderr" "stderr F to-stderr" "$(cat "$logf" 2>/dev/null)"
expect_eq "unishimctl logs (stdout)" hello-from-sandbox "$(ectl logs sb1 2>/dev/null)"

# ---- two containers in one VM, sharing localhost ----
# (no `wget -T`: busybox-static 1.35 segfaults with it, on the host kernel too)
f=$(sbpod sbweb '[{"name": "server", "image": "'"$CRI_TEST_IMAGE"'", "command": ["/bin/sh", "-c"],
        "args": ["mkdir -p /www && echo served-by-sbweb > /www/index.html && exec httpd -f -p '$PORT' -h /www"]},
        {"name": "side", "image": "'"$CRI_TEST_IMAGE"'", "command": ["sleep", "3600"]}]')
out_rc out rc ectl run "$f"
expect_eq "run 2-container sandbox pod sbweb" 0 "$rc"
[ "$rc" = 0 ] || echo "# $out"
idw=$(pod_id sbweb)
IDS+=("$idw")
nq=$(sandbox_procs "$idw" | grep -c qemu-system || true)
expect_eq "one QEMU for the 2-container pod" 1 "$nq"
out_ok ks "uname -r in sbweb/server" ectl exec sbweb -c server -- uname -r
out_ok kc "uname -r in sbweb/side" ectl exec sbweb -c side -- uname -r
expect_match "sbweb/server: a kernel release" '^[0-9]+\.[0-9]+\.[0-9]+[^[:space:]]*$' "$ks"
expect_eq "both containers run on the same guest kernel" "$ks" "$kc"
[ "$ks" != "$HOST_KERNEL" ] && pass "sbweb runs on the guest's kernel ($ks), not the host's" ||
        fail "sbweb: uname -r is the host's ($HOST_KERNEL)"
UUID_RE='^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$'
out_ok bs "boot_id in sbweb/server" ectl exec sbweb -c server -- cat /proc/sys/kernel/random/boot_id
out_ok bc "boot_id in sbweb/side" ectl exec sbweb -c side -- cat /proc/sys/kernel/random/boot_id
expect_match "sbweb/server: a boot_id" "$UUID_RE" "$bs"
expect_eq "both containers in the same VM (boot_id)" "$bs" "$bc"
wait_until 10 ectl exec sbweb -c side -- wget -q -O /dev/null "http://127.0.0.1:$PORT/" || true
out_rc out rc ectl exec -t 15 sbweb -c side -- wget -qO- "http://127.0.0.1:$PORT/"
expect_eq "side fetches the server's page over 127.0.0.1 inside the VM" "served-by-sbweb" "$out"
out_ok hs "hostname in sbweb/server" ectl exec sbweb -c server -- hostname
out_ok hc "hostname in sbweb/side" ectl exec sbweb -c side -- hostname
expect_eq "same hostname in both containers" "$hs" "$hc"
expect_eq "hostname is the pod name" sbweb "$hs"

# ---- sandbox pod <-> container pod over the pod IPs ----
f=$(it_pod cweb.json --arg n cweb '{name: $n, runtime_handler: "unishim",
        containers: [{name: "server", image: $img, command: ["/bin/sh", "-c"],
          args: ["mkdir -p /www && echo served-by-cweb > /www/index.html && exec httpd -f -p 8080 -h /www"]}]}')
out_rc out rc ectl run "$f"
expect_eq "run container pod cweb" 0 "$rc"
IDS+=("$(pod_id cweb)")
ipw=$(pod_ip sbweb)
ipc=$(pod_ip cweb)
expect_match "sandbox pod has an IP in the env's subnet" "^${ENV_SUBNET%.0/24}\." "$ipw"
wait_until 10 ectl exec cweb -- wget -q -O /dev/null "http://$ipw:$PORT/" || true
out_rc out rc ectl exec -t 15 cweb -- wget -qO- "http://$ipw:$PORT/"
expect_eq "container pod fetches the sandbox pod's page at $ipw" served-by-sbweb "$out"
out_rc out rc ectl exec -t 15 sbweb -c side -- wget -qO- "http://$ipc:$PORT/"
expect_eq "sandbox pod fetches the container pod's page at $ipc" served-by-cweb "$out"
# What containerd's CRI PortForward (kubectl port-forward) does: dial
# localhost:PORT inside the pod netns; netplumb sends it to the guest.
out_rc out rc nsenter --net="$(pod_netns "$ipw")" timeout 30 busybox wget -qO- "http://127.0.0.1:$PORT/"
expect_eq "localhost:$PORT in the pod netns reaches the server in the guest (port forwarding)" \
        "0 served-by-sbweb" "$rc $out"
out_rc out rc ectl exec sbweb -c side -- sh -c "ip -4 -o addr show | grep -v ' lo '"
echo "# guest addresses: $out"

# ---- volumes: hostPath directories and a single file, rw and ro ----
mkdir -p "$IT_TMP/vol-rw" "$IT_TMP/vol-ro"
echo ro-content >"$IT_TMP/vol-ro/file"
echo single-file >"$IT_TMP/single"
f=$(it_pod sbvol.json --arg rw "$IT_TMP/vol-rw" --arg ro "$IT_TMP/vol-ro" --arg one "$IT_TMP/single" \
        --argjson a "$SB" '{name: "sbvol", runtime_handler: "unishim", annotations: $a,
        containers: [{name: "app", image: $img, command: ["sleep", "3600"],
          mounts: [{host_path: $rw, container_path: "/data"},
                   {host_path: $ro, container_path: "/config", readonly: true},
                   {host_path: $one, container_path: "/etc/single", readonly: true}]}]}')
out_rc out rc ectl run "$f"
expect_eq "run sandbox pod sbvol with volumes" 0 "$rc"
[ "$rc" = 0 ] || echo "# $out"
idv=$(pod_id sbvol)
IDS+=("$idv")
out_rc out rc ectl exec sbvol -- sh -c 'echo from-guest > /data/written && cat /config/file /etc/single'
expect_eq "the guest reads the ro directory and the single file" "$(printf 'ro-content\nsingle-file')" "$out"
expect_eq "a write in the rw volume reaches the host" from-guest "$(cat "$IT_TMP/vol-rw/written" 2>/dev/null)"
out_rc out rc ectl exec sbvol -- sh -c 'echo x > /config/new'
[ "$rc" != 0 ] && [ ! -e "$IT_TMP/vol-ro/new" ] && pass "a write in the ro volume fails (rc $rc)" ||
        fail "write in the ro volume: rc $rc, host file: $(ls "$IT_TMP/vol-ro")"
# The guest kernel is not the boundary: the file server's own view of the
# ro volumes is read-only, so a guest that remounts them rw still gets
# EROFS. The server is virtiofsd, or QEMU itself for a 9p pod (the template
# path). (mountinfo's 4th field is the path inside the source filesystem:
# match the test dir's own name and below.)
server=virtiofsd
sandbox_path_template && server=qemu
vfs=$(sandbox_procs "$idv" | awk -v s="$server" '$2 ~ s {print "/proc/" $1 "/mountinfo"}')
t=/$(basename "$IT_TMP")
mount_opts() { [ -n "$vfs" ] && awk -v p="$t/$1" 'substr($4, length($4) - length(p) + 1) == p {print $6}' $vfs | cut -d, -f1 | sort -u; }
expect_eq "$server serves the ro volume read-only" ro "$(mount_opts vol-ro)"
expect_eq "$server serves the ro single file read-only" ro "$(mount_opts single)"
expect_eq "$server serves the rw volume read-write" rw "$(mount_opts vol-rw)"

# ---- owners: what the guest sees, and what lands on the host's disk ----
# virtiofsd runs as an unprivileged host uid range, root of a user namespace
# of the pod's own, and serves the rootfs through an overlay of idmapped
# layers: files keep their real owners both ways.
f=$(sbpod sbown '[{"name": "root", "image": "'"$CRI_TEST_IMAGE"'", "command": ["sleep", "3600"]},
        {"name": "user", "image": "'"$CRI_TEST_IMAGE"'", "command": ["sleep", "3600"],
         "run_as_user": 1000, "run_as_group": 1000}]')
out_rc out rc ectl run "$f"
expect_eq "run sandbox pod sbown (a root and a runAsUser 1000 container)" 0 "$rc"
[ "$rc" = 0 ] || echo "# $out"
ido=$(pod_id sbown)
IDS+=("$ido")
out_rc out rc ectl exec sbown -c root -- sh -c 'ls -ln /bin/busybox | awk "{print \$3, \$4}"; stat -c "%u %g" /home/user'
expect_eq "image files keep their owners in the guest (busybox root's, /home/user 1000's)" "$(printf '0 0\n1000 1000')" "$out"
tag=own$$
out_rc out rc ectl exec sbown -c root -- sh -c "touch /$tag-root /$tag-user && chown 1000:1000 /$tag-user &&
        cp /bin/busybox /$tag-suid && chmod 4755 /$tag-suid && chown 1000:1000 /etc/group &&
        stat -c '%u:%g %a' /$tag-root /$tag-user /$tag-suid /etc/group"
expect_eq "root in the guest creates, chowns (a copy-up too) and sets setuid" \
        "$(printf '0:0 644\n1000:1000 644\n0:0 4755\n1000:1000 644')" "$out"
# The container's writable layer: the snapshot's upper dir on the host.
upper_stat() { find "$ENV_ROOT/io.containerd.snapshotter.v1.overlayfs/snapshots" -mindepth 3 -maxdepth 6 \
        -path "*/fs/$1" -printf '%U:%G %m\n' 2>/dev/null; }
upper=$(find "$ENV_ROOT/io.containerd.snapshotter.v1.overlayfs/snapshots" -mindepth 3 -maxdepth 3 \
        -path "*/fs/$tag-root" -printf '%h\n' 2>/dev/null)
if sandbox_path_template; then
        # A 9p pod's rootfs is an overlay in the guest whose writes stay in
        # the guest's memory (docs/vmm.md, "The 9p share as built"): nothing
        # the guest writes there reaches the host's disk, a device node
        # included (the container's device rules still govern its use).
        out_rc out rc ectl exec sbown -c root -- sh -c "mknod /$tag-null c 1 3 && stat -c %t:%T /$tag-null"
        expect_eq "the guest makes a device node in its rootfs, the guest's overlay" "1:3" "$out"
        expect_eq "on the host, nothing of what root wrote to the rootfs in the guest" "" \
                "$(upper_stat "$tag-root")$(upper_stat "$tag-user")$(upper_stat "$tag-suid")$(upper_stat "$tag-null")"
else
        # Device nodes: only the host's root may make them on a disk; the
        # guest's root is not (virtiofsd is root of a user namespace only).
        out_rc out rc ectl exec sbown -c root -- sh -c "mknod /$tag-null c 1 3"
        [ "$rc" != 0 ] && [[ $out = *"not permitted"* ]] && pass "the guest cannot make a device node in its rootfs ($out)" ||
                fail "mknod in the guest's rootfs: rc $rc: $out"
        expect_eq "on the host, a file root created in the guest is uid 0's" "0:0 644" "$(upper_stat "$tag-root")"
        expect_eq "on the host, a file chowned to 1000 in the guest is uid 1000's" "1000:1000 644" "$(upper_stat "$tag-user")"
        expect_eq "on the host, the setuid copy is root's, setuid" "0:0 4755" "$(upper_stat "$tag-suid")"
        expect_eq "on the host, the copied-up /etc/group is uid 1000's" "1000:1000 644" \
                "$([ -n "$upper" ] && stat -c '%u:%g %a' "$upper/etc/group" 2>&1)"
fi
out_rc out rc ectl exec sbown -c user -- sh -c "id -u; id -g; touch /home/user/$tag && stat -c %u:%g /home/user/$tag"
expect_eq "a runAsUser 1000 container runs as 1000 and writes its home" "$(printf '1000\n1000\n1000:1000')" "$out"
if sandbox_path_template; then
        expect_eq "on the host, nothing of its file (the guest's overlay)" "" "$(upper_stat "home/user/$tag")"
else
        expect_eq "on the host, its file is uid 1000's" "1000:1000 644" "$(upper_stat "home/user/$tag")"
fi
out_rc out rc ectl exec sbown -c user -- sh -c "touch /$tag-denied"
[ "$rc" != 0 ] && [[ ${out,,} = *"permission denied"* ]] && pass "uid 1000 may not write / (root's): $out" ||
        fail "uid 1000 writing /: rc $rc: $out"
expect_eq "nothing of the denied write on the host" "" "$(upper_stat "$tag-denied")"

# ---- a volume whose filesystem refuses idmapped mounts ----
# (an overlay-backed hostPath, as on kind nodes): the container is refused
# with an error naming the volume and why; the pod and its VM stay.
mkdir -p "$IT_TMP/ovl/lower" "$IT_TMP/ovl/upper" "$IT_TMP/ovl/work" "$IT_TMP/ovl/merged"
mount -t overlay overlay -o "lowerdir=$IT_TMP/ovl/lower,upperdir=$IT_TMP/ovl/upper,workdir=$IT_TMP/ovl/work" \
        "$IT_TMP/ovl/merged"
unmount_ovl() { umount -l "$IT_TMP/ovl/merged" 2>/dev/null || true; }
IT_CLEANUP_HOOK=unmount_ovl
f=$(it_pod sbovl.json --arg v "$IT_TMP/ovl/merged" --argjson a "$SB" '{name: "sbovl", runtime_handler: "unishim",
        annotations: $a, containers: [{name: "app", image: $img, command: ["sleep", "3600"]},
          {name: "vol", image: $img, command: ["sleep", "3600"],
           mounts: [{host_path: $v, container_path: "/data"}]}]}')
out_rc out rc ectl run --keep "$f"
[ "$rc" != 0 ] && [[ $out = *"$IT_TMP/ovl/merged"*"overlay"*"does not support idmapped mounts"* ]] &&
        pass "a container with an overlay-backed volume is refused, saying why" ||
        fail "overlay-backed volume: rc $rc: $out"
idovl=$(pod_id sbovl || true)
IDS+=("$idovl")
[ -n "$idovl" ] && [ -n "$(sandbox_qemu_pid "$idovl")" ] && pass "the pod's VM stays" || fail "the pod sbovl lost its VM"
out_rc out rc ectl exec sbovl -c app -- echo still-here
expect_eq "the pod's other container still answers" still-here "$out"
out_rc out rc ectl rm --timeout 0 sbovl
expect_eq "rm sbovl" 0 "$rc"
unmount_ovl
IT_CLEANUP_HOOK=

# ---- stop with a grace period ----
f=$(sbpod sbstop '[{"name": "trap", "image": "'"$CRI_TEST_IMAGE"'", "command": ["/bin/sh", "-c"],
        "args": ["trap \"exit 0\" TERM; while :; do sleep 0.2; done"]},
        {"name": "ignore", "image": "'"$CRI_TEST_IMAGE"'", "command": ["/bin/sh", "-c"],
        "args": ["trap \"\" TERM; while :; do sleep 0.2; done"]}]')
out_rc out rc ectl run "$f"
expect_eq "run sandbox pod sbstop" 0 "$rc"
ids=$(pod_id sbstop)
IDS+=("$ids")
ct=$(ctr_id sbstop trap)
ci=$(ctr_id sbstop ignore)
sleep 1 # the traps are set
events_start "$IT_TMP/events-stop"
t0=$(date +%s%N)
out_rc out rc ectl stop sbstop --timeout 3
t1=$(date +%s%N)
expect_eq "stop --timeout 3" 0 "$rc"
[ "$rc" = 0 ] || echo "# $out"
ms=$(((t1 - t0) / 1000000))
((ms >= 2900)) && pass "stop waited the grace period for the TERM-ignoring container (${ms} ms)" ||
        fail "stop took only ${ms} ms (grace 3 s)"
wait_until 5 grep -qF "\"container_id\":\"$ci\"" "$IT_TMP/events-stop" || true
sleep 0.3
events_stop
expect_eq "container trapping TERM exits 0" 0 "$(event_exit_status "$ct" "$IT_TMP/events-stop")"
expect_eq "container ignoring TERM is killed: 137" 137 "$(event_exit_status "$ci" "$IT_TMP/events-stop")"
expect_eq "container trap: state Exited" Exited "$(ctr_state sbstop trap)"
expect_eq "container ignore: state Exited" Exited "$(ctr_state sbstop ignore)"
expect_match "pod NotReady after stop" "state NotReady" "$(ectl inspect sbstop 2>&1)"
expect_eq "the VM is gone after StopPodSandbox" "" "$(sandbox_qemu_pid "$ids")"

# ---- removal ----
for p in sb1 sbweb cweb sbvol sbown sbstop; do
        out_rc out rc ectl rm --timeout 0 "$p"
        expect_eq "rm $p" 0 "$rc"
done
wait_until 15 outputs_nothing sandbox_leftovers "${IDS[@]}" || true
expect_eq "nothing of the pods left (shim, QEMU, virtiofsd, dirs, mounts, cgroups)" "" "$(sandbox_leftovers "${IDS[@]}")"
expect_eq "no pod listed" "" "$(ectl ps -q)"
expect_eq "no netns bind mount" "" "$(ls -A "$ENV_STATE/io.containerd.grpc.v1.cri/netns" 2>/dev/null || true)"

it_finish
