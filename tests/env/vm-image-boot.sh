#!/bin/bash
# Manual check of a VM disk image (tests/env/build-vm-image.sh's, or any
# cloud image with cloud-init and qemu-guest-agent): boots it under bare
# QEMU TCG the way libvirt starts a type='qemu' domain, with a NoCloud seed,
# and checks what the "vm" pod kind relies on.
#
#   vm-image-boot.sh DISK [RUNS]
#
# Each run (default 1): a fresh qcow2 overlay on DISK (DISK is never
# written), a seed (cidata: meta-data, user-data writing a file,
# network-config v2 with a static IPv4 address on the NIC matched by MAC),
# then
#   1. waits for the guest agent: guest-sync (as libvirt does, to flush
#      stale replies) until it answers, then guest-ping
#   2. guest-exec: hostname, the file user-data wrote, the NIC's address
#   3. shuts down: odd runs through the agent (guest-shutdown), even runs
#      through ACPI (QMP system_powerdown); QEMU must exit by itself
# and prints the times (from QEMU's start), QEMU's RSS/PSS, the console's
# first and last lines. The NIC is user-mode networking with restrict=on:
# no host interface, no traffic off the VM.
#
# Environment: QEMU (qemu-system-x86_64), VM_MEM (MiB, 1024), VM_SMP (1),
# VM_MACHINE (pc), VM_ACCEL (tcg; e.g. tcg,tb-size=128 to bound TCG's code
# cache, libvirt's <tcg><tb-cache>), BOOT_TIMEOUT (s, 600), KEEP=1 keeps the run directory,
# DEBUG=1 traces the script into it (trace).
# Needs qemu-system-x86, qemu-utils, cloud-image-utils, socat, jq.
set -euo pipefail

disk=${1:?usage: vm-image-boot.sh DISK [RUNS]}
runs=${2:-1}
disk=$(realpath "$disk")
qemu=${QEMU:-qemu-system-x86_64}
mem=${VM_MEM:-1024}
smp=${VM_SMP:-1}
machine=${VM_MACHINE:-pc}
accel=${VM_ACCEL:-tcg}
boot_timeout=${BOOT_TIMEOUT:-600}
dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
"$dir/../../tools/apt-ensure" qemu-system-x86 qemu-utils cloud-image-utils socat jq

hostname=unishim-vm-check
mac=52:54:00:5e:00:01
addr=10.0.2.15/24
marker="unishim-vm-check $(date +%s)"

tmp=$(mktemp -d /tmp/vm-image-boot.XXXXXX)
qemu_pid=
cleanup() {
        [ -n "${QGA_PID:-}" ] && kill "$QGA_PID" 2>/dev/null
        if [ -n "$qemu_pid" ] && kill -0 "$qemu_pid" 2>/dev/null; then
                kill "$qemu_pid" 2>/dev/null; sleep 1; kill -9 "$qemu_pid" 2>/dev/null || true
        fi
        if [ "${KEEP:-0}" = 1 ]; then echo "kept $tmp" >&2; else rm -rf "$tmp"; fi
}
trap cleanup EXIT
trap 'exit 1' INT TERM HUP
if [ "${DEBUG:-0}" = 1 ]; then exec 9>"$tmp/trace"; BASH_XTRACEFD=9; set -x; fi

now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }
fail() { echo "FAIL: $*" >&2; echo "--- console (last 30 lines)" >&2; tail -n 30 "$run/console.log" >&2 || true; exit 1; }

# --- the agent, over one connection (as libvirt keeps one) --------------------
# qga_open: connects (socat as a coprocess); qga_send JSON; qga_read SECONDS
# reads one reply line into $REPLY (false on timeout).
qga_open() {
        coproc QGA { exec socat - "UNIX-CONNECT:$run/qga.sock" 2>/dev/null; }
}
qga_send() { printf '%s\n' "$1" >&"${QGA[1]}"; }
qga_read() { IFS= read -r -t "$1" REPLY <&"${QGA[0]}"; }
# qga_sync SECONDS: guest-sync with a fresh id until the reply with that id
# (replies to earlier syncs, queued while the agent was not up, are skipped).
qga_sync() {
        local deadline=$(( $(date +%s) + $1 )) id
        while [ "$(date +%s)" -lt "$deadline" ]; do
                kill -0 "$qemu_pid" 2>/dev/null || fail "QEMU exited during boot"
                id=$(( RANDOM << 15 | RANDOM ))
                qga_send "{\"execute\":\"guest-sync\",\"arguments\":{\"id\":$id}}"
                while qga_read 1; do
                        [ "$(jq -c '.return' <<<"$REPLY" 2>/dev/null)" = "$id" ] && return 0
                done
                check_console
        done
        return 1
}
# qga CMD_JSON: one command after a guest-sync (as libvirt does before each
# command: a reply that came too late for an earlier command is skipped);
# its "return" in $QRET (compact JSON). Any error or timeout ends the check.
qga() {
        qga_sync 60 || fail "the agent stopped answering guest-sync"
        qga_send "$1"
        qga_read 60 || fail "no reply within 60s to $1"
        QRET=$(jq -e -c '.return' <<<"$REPLY") || fail "agent: $1: $REPLY"
}
# gexec PATH ARG...: runs it in the guest; its stdout in $GOUT, false when
# it exits non-zero (then $GOUT is its status).
gexec() {
        local path=$1 pid
        shift
        qga "$({ [ $# = 0 ] || printf '%s\n' "$@"; } | jq -cRn --arg p "$path" '{execute: "guest-exec",
                arguments: {path: $p, arg: [inputs], "capture-output": true}}')"
        pid=$(jq -e .pid <<<"$QRET") || fail "guest-exec: $QRET"
        for _ in $(seq 1 300); do
                qga "{\"execute\":\"guest-exec-status\",\"arguments\":{\"pid\":$pid}}"
                if [ "$(jq .exited <<<"$QRET")" = true ]; then
                        if [ "$(jq .exitcode <<<"$QRET")" = 0 ]; then
                                GOUT=$(jq -r '."out-data" // ""' <<<"$QRET" | base64 -d)
                                return 0
                        fi
                        GOUT=$QRET
                        return 1
                fi
                sleep 0.2
        done
        fail "guest-exec $path $* did not finish within a minute"
}

check_console() {
        if [ -z "$t_login" ] && grep -q ' login: ' "$run/console.log" 2>/dev/null; then
                t_login=$(since "$t0")
        fi
}

# --- one boot ------------------------------------------------------------------
boot() {
        local n=$1
        run=$tmp/run$n
        mkdir -p "$run"
        qemu-img create -q -f qcow2 -F qcow2 -b "$disk" "$run/overlay.qcow2"
        cat >"$run/meta-data" <<EOF
instance-id: iid-vm-image-boot-$n
local-hostname: $hostname
EOF
        cat >"$run/user-data" <<EOF
#cloud-config
write_files:
  - path: /run/unishim-check/marker
    content: "$marker"
runcmd:
  - [ sh, -c, 'echo runcmd-ran > /run/unishim-check/runcmd' ]
EOF
        cat >"$run/network-config" <<EOF
version: 2
ethernets:
  nic0:
    match:
      macaddress: "$mac"
    addresses: [ $addr ]
    gateway4: 10.0.2.2
EOF
        cloud-localds -N "$run/network-config" "$run/seed.iso" "$run/user-data" "$run/meta-data"

        # What libvirt makes of a type='qemu' domain with a virtio disk, a
        # cdrom-less seed disk, a virtio NIC, a serial console and the
        # org.qemu.guest_agent.0 channel (less the monitor's pty/fd passing).
        t0=$(now)
        t_login=
        "$qemu" -name "vm-image-boot-$n" -machine "$machine" -accel "$accel" -cpu qemu64 \
                -m "$mem" -smp "$smp" -nodefaults -no-user-config -display none \
                -boot strict=on \
                -drive "file=$run/overlay.qcow2,format=qcow2,if=none,id=drive-virtio-disk0,cache=none,aio=threads" \
                -device virtio-blk-pci,drive=drive-virtio-disk0,id=virtio-disk0,bootindex=1 \
                -drive "file=$run/seed.iso,format=raw,if=none,id=drive-virtio-disk1,readonly=on" \
                -device virtio-blk-pci,drive=drive-virtio-disk1,id=virtio-disk1 \
                -netdev user,id=hostnet0,restrict=on \
                -device "virtio-net-pci,netdev=hostnet0,id=net0,mac=$mac" \
                -chardev "file,id=charserial0,path=$run/console.log" \
                -device isa-serial,chardev=charserial0,id=serial0 \
                -device virtio-serial-pci,id=virtio-serial0 \
                -chardev "socket,id=charchannel0,path=$run/qga.sock,server=on,wait=off" \
                -device virtserialport,bus=virtio-serial0.0,nr=1,chardev=charchannel0,id=channel0,name=org.qemu.guest_agent.0 \
                -qmp "unix:$run/qmp.sock,server=on,wait=off" \
                -device virtio-balloon-pci,id=balloon0 \
                -pidfile "$run/qemu.pid" </dev/null >"$run/qemu.log" 2>&1 &
        qemu_pid=$!

        for _ in $(seq 1 50); do [ -S "$run/qga.sock" ] && break; sleep 0.1; done
        [ -S "$run/qga.sock" ] || fail "QEMU did not create the agent socket: $(cat "$run/qemu.log")"

        qga_open
        qga_sync "$boot_timeout" || fail "the guest agent did not answer within ${boot_timeout}s"
        t_agent=$(since "$t0")
        qga '{"execute":"guest-ping"}'
        [ "$QRET" = '{}' ] || fail "guest-ping: $QRET"
        echo "run $n: agent answered guest-sync/guest-ping at ${t_agent}s"
        local rss pss
        rss=$(awk '/^VmRSS/ { print $2 }' "/proc/$qemu_pid/status")
        pss=$(awk '/^Pss:/ { print $2 }' "/proc/$qemu_pid/smaps_rollup")
        # The big mappings: guest RAM (VM_MEM MiB) and TCG's code buffer.
        echo "run $n: QEMU mappings >= 64 MiB (size/RSS kB): $(awk '
                /^[0-9a-f]+-[0-9a-f]+ / { name = $6 } /^Size:/ { size = $2 }
                /^Rss:/ && size >= 65536 { printf "%s%s/%s ", (name == "" ? "anon:" : name ":"), size, $2 }
                ' "/proc/$qemu_pid/smaps")"

        # cloud-init may still be running: its files come when it gets there.
        local got=
        for _ in $(seq 1 120); do
                gexec /bin/cat /run/unishim-check/marker && { got=$GOUT; break; }
                sleep 1
        done
        [ "$got" = "$marker" ] || fail "user-data's file: '$got' ($GOUT)"
        echo "run $n: user-data's write_files file read at $(since "$t0")s"
        local h
        gexec /bin/hostname || fail "hostname: $GOUT"
        h=$GOUT
        [ "$h" = "$hostname" ] || fail "hostname '$h', expected $hostname"
        local ips
        gexec /sbin/ip -4 -o addr show || fail "ip addr: $GOUT"
        ips=$GOUT
        grep -qF "inet $addr" <<<"$ips" || fail "no $addr in: $ips"
        qga '{"execute":"guest-network-get-interfaces"}'
        jq -e --arg a "${addr%/*}" <<<"$QRET" \
                '[.[]."ip-addresses"[]? | select(."ip-address" == $a)] | length == 1' >/dev/null ||
                fail "guest-network-get-interfaces lacks ${addr%/*}"
        for _ in $(seq 1 300); do
                gexec /bin/cat /run/unishim-check/runcmd && break
                sleep 1
        done
        [ "$GOUT" = runcmd-ran ] || fail "runcmd did not run: $GOUT"
        t_final=$(since "$t0")
        local status
        gexec /usr/bin/cloud-init status --long || true
        status=$GOUT
        echo "run $n: hostname $h, $addr on the NIC, runcmd done at ${t_final}s; cloud-init: $(tr '\n' ' ' <<<"$status")"
        local failed
        gexec /bin/systemctl --failed --no-legend --plain || true
        failed=$GOUT
        echo "run $n: failed units: ${failed:-none}"
        gexec /usr/bin/systemd-analyze time || true
        echo "run $n: systemd-analyze: $(tr '\n' ' ' <<<"$GOUT")"
        gexec /usr/bin/systemd-analyze blame --no-pager || true
        echo "run $n: slowest units: $(head -n 8 <<<"$GOUT" | tr -s ' \n' ' ')"
        for _ in $(seq 1 60); do check_console; [ -n "$t_login" ] && break; sleep 1; done
        echo "run $n: login prompt on the console at ${t_login:-never}s; QEMU RSS ${rss} kB, PSS ${pss} kB (at agent answer)"

        # Shutdown: the agent's (odd runs) or ACPI's (even runs).
        local how t_down
        t_down=$(now)
        if [ $((n % 2)) = 1 ]; then
                how=guest-shutdown
                qga_sync 60 || fail "no guest-sync before guest-shutdown"
                qga_send '{"execute":"guest-shutdown"}'
        else
                how="ACPI (QMP system_powerdown)"
                printf '%s\n' '{"execute":"qmp_capabilities"}' '{"execute":"system_powerdown"}' |
                        timeout 10 socat -t 2 - "UNIX-CONNECT:$run/qmp.sock" >"$run/qmp.out" 2>&1 || true
        fi
        for _ in $(seq 1 1200); do kill -0 "$qemu_pid" 2>/dev/null || break; sleep 0.1; done
        kill -0 "$qemu_pid" 2>/dev/null && fail "QEMU still runs 120s after $how"
        wait "$qemu_pid" || true
        qemu_pid=
        kill "$QGA_PID" 2>/dev/null || true
        wait "$QGA_PID" 2>/dev/null || true
        echo "run $n: powered off by $how in $(since "$t_down")s; QEMU exited by itself"
        echo "run $n: console first lines:"; head -n 5 "$run/console.log" | sed 's/^/    /'
        echo "run $n: console last lines:"; tail -n 8 "$run/console.log" | sed 's/^/    /'
        echo "RESULT run=$n agent=${t_agent} login=${t_login:-never} runcmd=${t_final} rss_kb=$rss pss_kb=$pss"
}

echo "disk $disk: $(qemu-img info --output=json "$disk" | jq -r '"\(.format), virtual \(."virtual-size" / 1048576) MiB, file \(."actual-size" / 1048576 | floor) MiB"')"
for n in $(seq 1 "$runs"); do
        boot "$n"
done
echo "PASS: $runs boot(s)"
