#!/bin/bash
# vm pods (unishim.io/isolation: vm: a full libvirt VM booted from the disk
# image in the container image) through the real CRI and the node's
# libvirtd, docs/vm.md. Booting the Debian test image takes minutes under
# TCG, so the checks share two booted VMs:
#  - bad input first (no boot): an image without a disk, with two, a disk in
#    a format QEMU does not boot, a disk naming a backing file, user-data
#    over the operator's limit, user-data the operator does not allow,
#    libvirtd not reachable, a second container in a vm pod, a volume mount
#    the guest cannot see; each refused, naming what is wrong, and nothing
#    left behind
#  - a guest that ignores ACPI (a disk with nothing to boot) is destroyed
#    at the stop's grace: exit 137
#  - pod vm1 (the Debian image, with the mounts a kubelet gives every
#    container: they pass): virsh list shows its domain; the container's
#    log begins with the line that its command, env and those mounts are
#    not run or seen in the guest, then the console; cloud-init applied the
#    pod's hostname and the
#    user-data; exec returns stdout, stderr and the exit code; a container
#    pod and the vm pod reach each other by pod IP, both ways; Stats has
#    real numbers (the cgroup's CPU and memory, libvirt's figures of the
#    guest's disk); pause and resume suspend and resume the domain; QEMU
#    runs as its own uid in the pod's cgroup; at its end, over the memory
#    limit of the pod's cgroup, QEMU is OOM-killed: exit 137, reason
#    OOMKilled
#  - pod vm2, the way a mesh deploys it (the vm kind's part of the mesh
#    acceptance test, test-mesh.sh, here to share a booted VM): its
#    istio-proxy container runs on the host in the pod's netns, and with
#    Istio's rules there the VM's inbound and outbound TCP pass that proxy;
#    the proxy's end and delete leave the VM running; its stop is graceful
#    (the guest logs its shutdown), exit 0
#  - rm leaves no domain, libvirt log, tap, mount, state dir, cgroup, shim
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
IT_VM_IMAGE=1
IT_LIBVIRT=1
command -v qemu-system-x86_64 >/dev/null || it_skip "qemu-system-x86_64 missing (apt package qemu-system-x86)"
command -v qemu-img >/dev/null || it_skip "qemu-img missing (apt package qemu-utils)"
PROXY=$UNISHIM_BUILD_DIR/tests/mesh-proxy
[ -x "$PROXY" ] || {
        echo "FAIL: $PROXY is not built"
        exit 1
}
it_setup
VIRSH="virsh -c $ENV_LIBVIRT_URI"
IDS=()
PORT=8080
# Booting a distribution under TCG on a loaded 2-core machine: minutes.
BOOT_S=900

# vm_pod NAME ANNOTATIONS_JSON CONTAINERS_JSON: a pod of the unishim-vm
# handler; prints the file.
vm_pod() {
        it_pod "$1.json" --arg n "$1" --argjson a "$2" --argjson c "$3" \
                '{name: $n, runtime_handler: "unishim-vm", annotations: $a, containers: $c}'
}

# vm_ctr IMAGE: the VM's container (the CRI wants a command; it is not run).
vm_ctr() {
        jq -n --arg i "$1" '[{name: "vm", image: $i, command: ["vm"]}]'
}

# refused NAME ANNOTATIONS_JSON CONTAINERS_JSON: the pod must fail; ERR is
# unishimctl's message. Other pods may run meanwhile: what is checked is
# that nothing was added.
refused() {
        local f out rc pods shims
        pods=$(ectl ps -q)
        shims=$(env_shim_pids)
        f=$(vm_pod "$1" "$2" "$3")
        out_rc out rc ectl run "$f"
        ERR=$out
        [ "$rc" != 0 ] && pass "$1: refused" || fail "$1: ran (rc $rc): $out"
        expect_eq "$1: no pod listed" "$pods" "$(ectl ps -q)"
        expect_eq "$1: no shim left" "$shims" "$(env_shim_pids)"
        expect_eq "$1: no domain, tap, mount or state dir left" "" "$(vm_state_leftovers)"
}

# ---- bad input: refused before any boot ----
refused no-disk '{}' "$(vm_ctr "$CRI_TEST_IMAGE")"
expect_match "no disk: says where a disk goes" "no /disk/ directory" "$ERR"

d=$IT_TMP/two/disk
mkdir -p "$d"
qemu-img create -q -f qcow2 "$d/a.qcow2" 16M
qemu-img create -q -f raw "$d/b.img" 16M
chmod 644 "$d"/*
img=$(vm_disk_image "$IT_TMP/two" two-disks)
refused two-disks '{}' "$(vm_ctr "$img")"
expect_match "two disks: names both" "more than one disk under /disk/ \((a\.qcow2, b\.img|b\.img, a\.qcow2)\)" "$ERR"
refused two-disks-bad-path '{"unishim.io/disk-path": "../etc/shadow"}' "$(vm_ctr "$img")"
expect_match "disk-path with ..: refused" 'unishim\.io/disk-path: "\.\./etc/shadow" is not' "$ERR"

d=$IT_TMP/vmdk/disk
mkdir -p "$d"
qemu-img create -q -f vmdk "$d/x.qcow2" 16M
chmod 644 "$d"/*
img=$(vm_disk_image "$IT_TMP/vmdk" vmdk-disk)
refused vmdk '{}' "$(vm_ctr "$img")"
expect_match "vmdk: names the format" 'format "vmdk": a vm pod boots qcow2 or raw' "$ERR"

d=$IT_TMP/backing/disk
mkdir -p "$d"
qemu-img create -q -f qcow2 -F raw -b /etc/hostname -u "$d/x.qcow2" 16M
chmod 644 "$d"/*
img=$(vm_disk_image "$IT_TMP/backing" backing-disk)
refused backing '{}' "$(vm_ctr "$img")"
expect_match "backing file: refused" "names a backing file" "$ERR"

# A volume the guest cannot see: refused at CreateContainer, before
# anything of the VM is made, naming the mount.
refused volume '{}' "$(jq -c --arg d "$IT_TMP" '.[0].mounts = [{host_path: $d, container_path: "/data"}]' \
        <<<"$(vm_ctr "$CRI_VM_IMAGE")")"
expect_match "a volume mount: refused, naming its destination and why" \
        "the mount at /data \(from [^)]*\) cannot reach the guest" "$ERR"
[[ $ERR =~ of\ vm\ pod\ ([0-9a-f]{64}) ]] && vid=${BASH_REMATCH[1]} || vid=
[ -n "$vid" ] && expect_eq "a volume mount: nothing of its pod left (domain, state dir, mounts, cgroup)" \
        "" "$(vm_state_leftovers "$vid")" || fail "a volume mount: no pod id in '$ERR'"

big=$(head -c 5000 /dev/zero | tr '\0' 'x')
refused user-data-big "$(jq -n --arg u "#cloud-config
# $big" '{"unishim.io/cloud-init-user-data": $u}')" "$(vm_ctr "$CRI_VM_IMAGE")"
expect_match "user-data over the limit: names the limit" "vm\.user_data_max_bytes" "$ERR"

f=$(it_pod ud-not-allowed.json --argjson c "$(vm_ctr "$CRI_VM_IMAGE")" \
        '{name: "ud-not-allowed", runtime_handler: "unishim",
          annotations: {"unishim.io/isolation": "vm", "unishim.io/cloud-init-user-data": "#cloud-config"},
          containers: $c}')
out_rc out rc ectl run "$f"
[ "$rc" != 0 ] && pass "user-data under the built-in policy: refused" || fail "ran: $out"
expect_match "user-data under the built-in policy: not allowed" "cloud-init-user-data is not allowed" "$out"
expect_eq "user-data under the built-in policy: nothing left" "" "$(ectl ps -q)"

# libvirtd not reachable (the handler's config is read per pod: it names a
# socket nothing listens on, for this one pod).
cp "$ENV_VM_CONFIG" "$IT_TMP/vm-config.json"
jq '.vm.libvirt_uri = "qemu:///system?socket=/run/unishim-nothing-here/libvirt-sock"' \
        "$IT_TMP/vm-config.json" >"$ENV_VM_CONFIG"
refused no-libvirt '{}' "$(vm_ctr "$CRI_VM_IMAGE")"
expect_match "libvirtd unreachable: RunPodSandbox says so" "RunPodSandbox.*not reachable at qemu:///system\?socket=" "$ERR"
cp "$IT_TMP/vm-config.json" "$ENV_VM_CONFIG"

# ---- a guest that ignores ACPI: destroyed at the grace ----
blank=$(vm_blank_image)
f=$(vm_pod deaf '{}' "$(vm_ctr "$blank")")
out_rc out rc ectl run "$f"
expect_eq "run vm pod deaf (nothing to boot)" 0 "$rc"
id=$(pod_id deaf)
IDS+=("$id")
expect_match "virsh list shows deaf's domain" "unishim-deaf-${id:0:12}" "$($VIRSH list --name)"
# A second container in a vm pod is refused, naming it (unishimctl has no
# add-a-container command: a pod of two containers, on a blank disk).
refused two-ctrs '{}' "$(jq -n --arg i "$blank" '[{name: "vm", image: $i, command: ["vm"]},
        {name: "other", image: $i, command: ["vm"]}]')"
expect_match "a second container: refused, naming the VM's" "a vm pod runs one VM \(container [0-9a-f]+\)" "$ERR"
cid=$(ctr_id deaf vm)
events_start "$IT_TMP/ev-deaf"
out_rc out rc ectl stop deaf --timeout 3
expect_eq "stop deaf: done" 0 "$rc"
events_stop
expect_eq "deaf: destroyed at the grace: exit 137" 137 "$(event_exit_status "$cid" "$IT_TMP/ev-deaf")"
out_rc out rc ectl rm deaf
expect_eq "rm deaf" 0 "$rc"
wait_until 60 no_pod_shim "$id" || true
expect_eq "deaf: nothing left" "" "$(vm_state_leftovers "$id")"

# ---- two booted VMs ----
# Each guest serves "app-<pod name>" over HTTP on $PORT (vm_app_user_data).
# (its shell ends on SIGTERM, as Envoy does: a stop waits for the VM, not
# for a grace that a PID 1 without a TERM handler would take to the end)
sidecar=$(jq -cn --arg img "$CRI_TEST_IMAGE" --arg proxy "$PROXY" \
        '[{name: "istio-proxy", image: $img, command: ["/bin/sh", "-c"],
           args: ["trap \"exit 0\" TERM; /mesh-proxy - 1337 & wait"],
           mounts: [{host_path: $proxy, container_path: "/mesh-proxy", readonly: true}]}]')
# vm1's container has what a kubelet mounts in every container besides
# containerd's own: its termination log and the service account's token.
mkdir -p "$IT_TMP/sa"
: >"$IT_TMP/termination-log"
kubelet_mounts=$(jq -cn --arg t "$IT_TMP/termination-log" --arg sa "$IT_TMP/sa" \
        '[{host_path: $t, container_path: "/dev/termination-log"},
          {host_path: $sa, container_path: "/var/run/secrets/kubernetes.io/serviceaccount", readonly: true}]')
for n in vm1 vm2; do
        more='[]' mounts='[]'
        [ "$n" = vm1 ] && mounts=$kubelet_mounts
        [ "$n" = vm2 ] && more=$sidecar
        f=$(vm_pod "$n" "$(jq -n --arg u "$(vm_app_user_data "app-$n" "$PORT")" '{"unishim.io/cloud-init-user-data": $u}')" \
                "$(jq -c --argjson more "$more" --argjson m "$mounts" '(.[0].mounts = $m) + $more' <<<"$(vm_ctr "$CRI_VM_IMAGE")")")
        out_rc out rc ectl run "$f"
        expect_eq "run vm pod $n ($(jq -r '[.containers[].name] | join(", ")' "$f"))" 0 "$rc"
        [ "$rc" = 0 ] || echo "# $out"
        IDS+=("$(pod_id "$n")")
done
f=$(it_pod peer.json '{name: "peer", runtime_handler: "unishim",
        containers: [{name: "web", image: $img, command: ["/bin/sh", "-c"],
          args: ["mkdir -p /www && echo peer > /www/index.html && exec httpd -f -p '$PORT' -h /www"]}]}')
out_rc out rc ectl run "$f"
expect_eq "run container pod peer" 0 "$rc"
IDS+=("$(pod_id peer)")
id1=$(pod_id vm1)
id2=$(pod_id vm2)
domains=$($VIRSH list --name)
expect_match "virsh list shows vm1's domain" "unishim-vm1-${id1:0:12}" "$domains"
expect_match "virsh list shows vm2's domain" "unishim-vm2-${id2:0:12}" "$domains"

# The guest's agent answers once the guest has booted that far.
agent_up() { ectl exec "$1" -c vm -- true >/dev/null 2>&1; }
for n in vm1 vm2; do
        wait_until "$BOOT_S" agent_up "$n" && pass "$n booted: its qemu-guest-agent answers" ||
                fail "$n: no answer from its guest agent within ${BOOT_S}s"
done

out_rc logs rc ectl logs vm1 -c vm
expect_match "logs: its first line says the command, env and the kubelet's mounts are not run or seen in the guest" \
        "^unishim: this container is a VM .*: its command \(vm\) and 0 args, its env \([0-9]+ variables\) and its mounts .*/dev/termination-log, .*/var/run/secrets/kubernetes\.io/serviceaccount are not run, set or seen in the guest" \
        "$(head -n 1 <<<"$logs")"
expect_match "logs: the serial console (the kernel's boot)" "Linux version" "$logs"
out_ok host "exec hostname" ectl exec vm1 -- hostname
expect_eq "cloud-init applied the pod's hostname" vm1 "$host"
wait_until 120 log_has written-by-cloud-init ectl exec vm1 -- cat /run/unishim-user-data &&
        pass "cloud-init ran the user-data (exec reads the file it wrote)" ||
        fail "no /run/unishim-user-data: $(ectl exec vm1 -- cat /run/unishim-user-data 2>&1)"
so=$(ectl exec vm1 -- sh -c 'echo out; echo err >&2; exit 7' 2>"$IT_TMP/err" </dev/null) && rc=0 || rc=$?
expect_eq "exec: exit code 7" 7 "$rc"
expect_eq "exec: stdout" out "$so"
expect_eq "exec: stderr" err "$(cat "$IT_TMP/err")"
out_rc out rc ectl exec vm1 -- /no/such/binary
expect_eq "exec of a missing binary: 127" 127 "$rc"
expect_match "exec of a missing binary says why" "No such file" "$out"

# Network, both ways, by pod IP.
ip1=$(pod_ip vm1)
ip2=$(pod_ip vm2)
ipp=$(pod_ip peer)
out_rc out rc ectl exec vm1 -- ip -4 -o addr
expect_match "the guest has netplumb's link address" "198\.18\.75\.2/30" "$out"
fetch_from_peer() { ectl exec -t 15 peer -- wget -qO- "http://$1:$PORT/" 2>/dev/null; }
# (the responder starts when cloud-init's last stage has run)
wait_until 300 fetch_from_peer "$ip1" >/dev/null || true
out_rc got rc fetch_from_peer "$ip1"
expect_eq "container pod -> vm pod by pod IP" app-vm1 "$got"
fetch_from_vm() { # POD: the guest's HTTP GET of the peer, the body
        ectl exec "$1" -c vm -- bash -c "exec 3<>/dev/tcp/$ipp/$PORT; printf 'GET / HTTP/1.0\r\n\r\n' >&3; sed '1,/^\r\?\$/d' <&3"
}
out_rc got rc fetch_from_vm vm1
expect_eq "vm pod -> container pod by pod IP" peer "$got"

out_rc st rc ectl stats vm1
expect_eq "stats vm1" 0 "$rc"
cpu=$(jq -r '.cpu.usage_core_nano_seconds // 0' <<<"$st" 2>/dev/null || echo 0)
mem=$(jq -r '.memory.working_set_bytes // 0' <<<"$st" 2>/dev/null || echo 0)
[ "$cpu" -gt 0 ] && pass "stats: CPU used ($cpu ns)" || fail "stats: no CPU: $st"
[ "$mem" -gt 100000000 ] && pass "stats: memory of the VM ($mem bytes)" || fail "stats: memory: $st"
# The Task API's metrics (what ctr and cAdvisor-less tools read): the
# guest's disk as libvirt counts it, as the blkio of the VM's container.
kctr() { timeout -k 5 "$CTR_TIMEOUT" ctr -a "$ENV_ADDR" -n k8s.io "$@"; }
cid1=$(ctr_id vm1 vm)
out_rc m rc kctr task metrics --format json "$cid1"
rd=$(jq -r '[.blkio.io_service_bytes_recursive[]? | select(.device == "vda" and .op == "Read") | .value][0] // 0' <<<"$m" 2>/dev/null || echo 0)
[ "$rd" -gt 0 ] && pass "metrics: the guest read its disk vda ($rd bytes, libvirt's count)" ||
        fail "metrics: no guest disk reads: $m"

# Pause and resume: the domain is suspended and resumed.
dom1=unishim-vm1-${id1:0:12}
out_rc out rc kctr task pause "$cid1"
expect_eq "pause vm1" 0 "$rc"
expect_eq "paused: libvirt's domain is paused" paused "$($VIRSH domstate "$dom1" 2>&1 | head -n1)"
expect_match "paused: containerd says so" "PAUSED" "$(kctr task ls 2>&1 | grep -F "$cid1")"
out_rc out rc kctr task resume "$cid1"
expect_eq "resume vm1" 0 "$rc"
expect_eq "resumed: libvirt's domain runs" running "$($VIRSH domstate "$dom1" 2>&1 | head -n1)"
wait_until 300 agent_up vm1 && pass "resumed: its guest agent answers again" ||
        fail "resumed: no answer from vm1's guest agent"

qpid=$(pgrep -f "guest=unishim-vm1-${id1:0:12}" | head -n1 || true)
[ -n "$qpid" ] && pass "QEMU of vm1 runs (pid $qpid)" || fail "no QEMU for vm1"
if [ -n "$qpid" ]; then
        quid=$(awk '/^Uid:/ { print $2 }' "/proc/$qpid/status")
        [ "$quid" != 0 ] && pass "QEMU runs as its own uid ($quid), not root" || fail "QEMU runs as root"
        expect_match "QEMU is in the pod's cgroup" "$id1" "$(grep -m1 pids "/proc/$qpid/cgroup")"
fi

# The mesh, as it deploys: vm2's istio-proxy on the host, Istio's rules in
# the pod's netns, the VM's TCP through the proxy both ways.
expect_eq "vm2: istio-proxy runs on the host" "$(host_kernel)" \
        "$(ectl exec vm2 -c istio-proxy -- uname -r </dev/null 2>&1 || true)"
expect_match "vm2: istio-proxy is in the pod netns (has the pod IP)" " $ip2/" \
        "$(ectl exec vm2 -c istio-proxy -- ip -4 -o addr show </dev/null 2>&1 || true)"
expect_eq "vm2: istio-proxy has the pod's hostname" vm2 \
        "$(ectl exec vm2 -c istio-proxy -- hostname </dev/null 2>&1 || true)"
wait_until 300 fetch_from_peer "$ip2" >/dev/null || true
out_rc got rc fetch_from_peer "$ip2"
expect_eq "vm2: without the mesh's rules the peer reaches the VM" app-vm2 "$got"
ns2=$(pod_netns "$ip2")
[ -n "$ns2" ] && istio_rules "$ns2"
out_rc got rc fetch_from_peer "$ip2"
expect_eq "vm2: with the mesh's rules the peer still reaches the VM" app-vm2 "$got"
out_rc got rc fetch_from_vm vm2
expect_eq "vm2: with the mesh's rules the VM reaches the peer" peer "$got"
out_ok log "vm2: the proxy's log" ectl logs vm2 -c istio-proxy
grep -qxF "inbound $ip2:$PORT" <<<"$log" && pass "vm2: the peer's connection passed the proxy (inbound $ip2:$PORT)" ||
        fail "vm2: the proxy saw no inbound $ip2:$PORT: $(tr '\n' ';' <<<"$log")"
grep -qxF "outbound $ipp:$PORT" <<<"$log" && pass "vm2: the VM's connection passed the proxy (outbound $ipp:$PORT)" ||
        fail "vm2: the proxy saw no outbound $ipp:$PORT: $(tr '\n' ';' <<<"$log")"

# The pod over its memory limit: QEMU is OOM-killed at the limit of the
# pod's cgroup, and the container reported so, as a container's: exit 137,
# reason OOMKilled. Without a kubelet nothing limits this pod's cgroup: it
# gets a limit just above what QEMU holds now (its anonymous memory: the
# page cache would be reclaimed first), as a kubelet's pod limit would be,
# and the guest fills its memory through the guest agent. (vm1 ends here
# instead of powering itself off: the guest's own poweroff reaches the host
# as the same libvirt event as vm2's ACPI shutdown below, exit 0.)
vm1_exited() { [ "$(ctr_state vm1 vm)" = Exited ]; }
events_start "$IT_TMP/ev-vm1"
limited=
if [ -n "$qpid" ] && qcg=$(sed -n 's/^[0-9]*:memory:\(.*\)$/\1/p' "/proc/$qpid/cgroup") && [ -n "$qcg" ]; then
        mdir=/sys/fs/cgroup/memory$qcg
        rss=$(awk '$1 == "total_rss" { print $2 }' "$mdir/memory.stat")
        # (below the usage only if its page cache can go: else just above it)
        for lim in $((rss + 48 * 1048576)) $(($(cat "$mdir/memory.usage_in_bytes") + 16 * 1048576)); do
                echo "$lim" 2>/dev/null >"$mdir/memory.limit_in_bytes" && limited=1 && break
        done
        echo "# vm1: QEMU's anonymous memory $((rss / 1048576)) MiB; the pod cgroup's limit now $(($(cat "$mdir/memory.limit_in_bytes") / 1048576)) MiB"
fi
[ -n "$limited" ] && pass "vm1: its pod's cgroup has a memory limit" || fail "vm1: no memory limit set on QEMU's cgroup"
# (the filler grows until the guest's own OOM killer or the host's ends it;
# its exec ends with the VM)
CTR_TIMEOUT=600 ectl exec vm1 -- python3 -c 'l = []
while True: l.append(b"x" * (16 << 20))' >/dev/null 2>&1 &
filler=$!
wait_until 600 vm1_exited && pass "vm1 ended at its pod's memory limit" || fail "vm1 still running over its pod's memory limit"
wait "$filler" 2>/dev/null || true
events_stop
st=$(ectl status vm1 -c vm 2>&1 || true)
expect_eq "over its memory limit: exit code 137, reason OOMKilled" "137 OOMKilled" \
        "$(jq -r '"\(.exit_code) \(.reason)"' <<<"$st" 2>/dev/null || echo "$st")"
expect_eq "over its memory limit: the exit event says 137" 137 "$(event_exit_status "$cid1" "$IT_TMP/ev-vm1")"
grep -F '/tasks/oom' "$IT_TMP/ev-vm1" | grep -F "\"container_id\":\"$cid1\"" >/dev/null &&
        pass "over its memory limit: a /tasks/oom event for the VM's container" ||
        fail "over its memory limit: no /tasks/oom event for $cid1"

# A pod's stop ends its containers in any order. The sidecar first: once
# its task is deleted containerd runs `shim delete` for it, while the pod's
# shim serves on; that must leave the pod's VM running (it destroyed the
# domain, named after the pod: the stop below then said 137).
dom2=unishim-vm2-${id2:0:12}
pcid2=$(ctr_id vm2 istio-proxy)
kctr task kill "$pcid2" >/dev/null 2>&1 || true
proxy_exited() { [ "$(ctr_state vm2 istio-proxy)" = Exited ]; }
wait_until 120 proxy_exited && pass "vm2: its istio-proxy ended first" ||
        fail "vm2: istio-proxy still runs after its SIGTERM"
expect_eq "vm2: its VM runs on after the sidecar's delete" running \
        "$($VIRSH domstate "$dom2" 2>&1 | head -n1)"
expect_match "vm2: its disk stays mounted" " /run/unishim/k8s.io/$id2/vm/base " \
        "$(cat /proc/self/mountinfo)"

# A graceful stop: ACPI power button, the guest shuts down.
cid2=$(ctr_id vm2 vm)
events_start "$IT_TMP/ev-vm2"
# (the guest's shutdown takes a while under TCG: unishimctl waits for it)
CTR_TIMEOUT=700 out_rc out rc ectl stop vm2 --timeout 600
expect_eq "stop vm2" 0 "$rc"
events_stop
expect_eq "stop: the guest shut down: exit 0" 0 "$(event_exit_status "$cid2" "$IT_TMP/ev-vm2")"
out_rc logs rc ectl logs vm2 -c vm
expect_match "stop: the guest logged its shutdown" "reboot: Power down" "$logs"

for n in vm1 vm2 peer; do
        out_rc out rc ectl rm "$n"
        expect_eq "rm $n" 0 "$rc"
done
for id in "${IDS[@]}"; do
        wait_until 60 no_pod_shim "$id" || true
done
expect_eq "rm: nothing of the pods left" "" "$(vm_state_leftovers "${IDS[@]}")"
expect_eq "rm: no domain left" "" "$($VIRSH list --all --name | grep unishim- || true)"
expect_eq "rm: no process left in the pods' cgroups (the host-side sidecar included)" "" "$(env_cgroup_pids)"
it_finish
