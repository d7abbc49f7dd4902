#!/bin/bash
# Sandbox pods (unishim.io/isolation: sandbox: the pod runs in a QEMU microvm
# with the guest agent) through the real CRI, one shared environment:
#  - uname -r in the pod is the guest's kernel, not the host's
#  - device rules hold in the guest (cgroup v2 BPF device program)
#  - ExecSync: separate stdout/stderr, exit code 7, a missing binary fails
#  - the CRI log file has the container's output (and unishimctl logs)
#  - two containers in one VM share localhost (httpd in one, wget from the other)
#  - a sandbox pod and a container pod reach each other's IPs, both ways
#  - hostPath volumes (rw, ro, a single file) reach the guest; ro ones are
#    read-only in virtiofsd's own mount namespace too
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
expect_match "the guest kernel is the guest image's" "$(cat "$UNISHIM_BUILD_DIR/vmm/guest-image/kernel-release" 2>/dev/null || echo cloud-amd64)" "$kern"

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
# ENXIO, not EPERM.
out_rc out rc ectl exec sb1 -- sh -c 'mknod /tmp/null2 c 1 3 && echo ok > /tmp/null2 && echo allowed'
expect_eq "device rules in the guest: mknod and write of c 1:3 (allowed)" allowed "$out"
out_rc out rc ectl exec sb1 -- sh -c 'mknod /tmp/kmsg c 1 11 && echo x > /tmp/kmsg'
[ "$rc" != 0 ] && [[ $out = *"not permitted"* ]] && pass "device rules in the guest: writing c 1:11 refused ($out)" ||
        fail "write to c 1:11 in the guest: rc $rc: $out"
out_rc out rc ectl exec sb1 -- sh -c 'mknod /tmp/blk b 8 0 && cat /tmp/blk'
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
# The guest kernel is not the boundary: virtiofsd's own view of the ro
# volumes is read-only, so a guest that remounts them rw still gets EROFS.
# (mountinfo's 4th field is the path inside the source filesystem: match the
# test dir's own name and below.)
vfs=$(sandbox_procs "$idv" | awk '/virtiofsd/ {print "/proc/" $1 "/mountinfo"}')
t=/$(basename "$IT_TMP")
mount_opts() { [ -n "$vfs" ] && awk -v p="$t/$1" 'substr($4, length($4) - length(p) + 1) == p {print $6}' $vfs | cut -d, -f1 | sort -u; }
expect_eq "virtiofsd serves the ro volume read-only" ro "$(mount_opts vol-ro)"
expect_eq "virtiofsd serves the ro single file read-only" ro "$(mount_opts single)"
expect_eq "virtiofsd serves the rw volume read-write" rw "$(mount_opts vol-rw)"

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
for p in sb1 sbweb cweb sbvol sbstop; do
        out_rc out rc ectl rm --timeout 0 "$p"
        expect_eq "rm $p" 0 "$rc"
done
wait_until 15 test -z "$(sandbox_leftovers "${IDS[@]}")" || true
expect_eq "nothing of the pods left (shim, QEMU, virtiofsd, dirs, mounts, cgroups)" "" "$(sandbox_leftovers "${IDS[@]}")"
expect_eq "no pod listed" "" "$(ectl ps -q)"
expect_eq "no netns bind mount" "" "$(ls -A "$ENV_STATE/io.containerd.grpc.v1.cri/netns" 2>/dev/null || true)"

it_finish
