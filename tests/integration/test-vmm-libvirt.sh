#!/bin/bash
# A vm pod's domain through the node's libvirtd (vmm/libvirt.h, the XML of
# vmm/domain.h), with libvirt's events on our own loop (tests/tools/
# vm-libvirt):
#  - the domain starts, `virsh list` shows it by name, its QEMU runs as the
#    uid it was given (never root), its serial console
#    connects to our socket, suspend and resume come back as events, and a
#    destroy as the Stopped event; nothing is listed after;
#  - its stats: vCPUs, memory and disks as libvirt reports them;
#  - the caller's loop keeps answering while libvirtd does not (stopped
#    with SIGSTOP, when the test started it);
#  - started paused, it is paused until resumed;
#  - kill -9 of the connection's owner takes the domain with it
#    (AUTODESTROY);
#  - a domain libvirt refuses is an error naming the cause, nothing left;
#  - the shim binary does not link libvirt (it is loaded by vm pods only).
# Uses the machine's libvirtd, or starts one (and virtlogd) when none runs:
# env_libvirt_start in tests/env/lib.sh, which stops it after the last of
# its concurrent users is done.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

BUILD=${UNISHIM_BUILD_DIR:-build}
TOOL=$BUILD/tests/vm-libvirt
[ "$(id -u)" = 0 ] || it_skip "needs root (libvirtd)"
command -v libvirtd >/dev/null || it_skip "libvirtd missing (apt package libvirt-daemon-system)"
command -v qemu-img >/dev/null || it_skip "qemu-img missing (apt package qemu-utils)"
[ -x "$TOOL" ] || { echo "FAIL: $TOOL not built"; exit 1; }

IT_TMP=$(mktemp -d /tmp/test-vmm-libvirt.XXXXXX)
tag=${IT_TMP##*-libvirt.}
VIRSH="virsh -q -c $ENV_LIBVIRT_URI"
LIBVIRT_USER=test-vmm-libvirt-$$
vl_pid=
cleanup() {
        local rc=$?
        set +e
        [ -n "$vl_pid" ] && kill -9 "$vl_pid" 2>/dev/null
        for d in $($VIRSH list --name 2>/dev/null | grep -F "unishim-it-$tag"); do
                $VIRSH destroy "$d" >/dev/null 2>&1
        done
        # libvirt keeps a log of every domain it ran, forever.
        rm -f /var/log/libvirt/qemu/unishim-it-"$tag"-*.log
        env_libvirt_stop "$LIBVIRT_USER"
        rm -rf "$IT_TMP"
        exit "$rc"
}
trap cleanup EXIT INT TERM

# (it prints libvirtd's log when it fails)
env_libvirt_start "$LIBVIRT_USER" $$ || { echo "FAIL: libvirtd did not come up"; exit 1; }
echo "# $(env_libvirt_describe)"
qemu-img create -q -f qcow2 "$IT_TMP/disk.qcow2" 16M
# QEMU runs as a uid of its own (never root): it gets the disk and the dir.
QUID=$((0x60000000 + $$))
chown "$QUID:$QUID" "$IT_TMP/disk.qcow2"
chmod 0711 "$IT_TMP"

# vl_start NAME [ARGS...]: the tool as a coprocess; vl_say CMD; vl_expect
# REGEX [SECONDS]: reads its lines until one matches (the line in $vl_line;
# every line read so far in $vl_seen: some come in either order).
vl_start() {
        local name=$1
        shift
        vl_seen=
        coproc VL { exec "$TOOL" --name "$name" --disk "$IT_TMP/disk.qcow2" \
                --console "$IT_TMP/$name.sock" --uid "$QUID" "$@" 2>&1; }
        vl_pid=$VL_PID
}
vl_say() { echo "$1" >&"${VL[1]}"; }
vl_expect() {
        local re=$1 t=${2:-120}
        vl_line=
        while IFS= read -r -t "$t" vl_line <&"${VL[0]}"; do
                echo "# vm-libvirt: $vl_line"
                vl_seen+=$vl_line$'\n'
                [[ $vl_line =~ $re ]] && return 0
        done
        return 1
}
listed() { $VIRSH list --name | grep -qxF "$1"; }

# ---- start, console, suspend/resume, destroy ----
name=unishim-it-$tag-a
vl_start "$name"
vl_expect '^(created|error)' && [ "$vl_line" = created ] && pass "the domain is created" ||
        fail "create: '$vl_line'"
listed "$name" && pass "virsh list shows $name" || fail "virsh list: $($VIRSH list --name | tr '\n' ' ')"
qpid=$(cat "/run/libvirt/qemu/$name.pid" 2>/dev/null || true)
quid=$(awk '$1 == "Uid:" { print $2 }' "/proc/$qpid/status" 2>/dev/null || true)
expect_eq "its QEMU runs as the uid given, not root" "$QUID" "$quid"
expect_eq "libvirt left the disk's owner alone (relabel='no')" "$QUID:$QUID" \
        "$(stat -c %u:%g "$IT_TMP/disk.qcow2")"
vl_say state
vl_expect '^state ' && expect_eq "it runs (VIR_DOMAIN_RUNNING)" "state 1" "$vl_line" ||
        fail "no state: '$vl_line'"
{ [[ $vl_seen = *"console connected"* ]] || vl_expect '^console connected'; } &&
        pass "its serial console connected to our socket" || fail "no console connection: '$vl_line'"
vl_say stats
vl_expect '^(stats|error)' && [[ $vl_line =~ ^stats\ vcpus=1\ memory_kib=131072\ disks=vda: ]] &&
        pass "stats: 1 vCPU, 128 MiB, disk vda" || fail "stats: '$vl_line'"
# libvirtd stopped mid-call: the call waits, the loop does not.
ldpid=$(_env_libvirt_ours libvirtd || true)
if [ -n "$ldpid" ]; then
        kill -STOP $ldpid
        vl_say state
        vl_say ping
        vl_expect '^(pong|state|error)' && expect_eq "the loop answers while libvirtd is stopped" \
                pong "$vl_line" || fail "no answer while libvirtd is stopped: '$vl_line'"
        kill -CONT $ldpid
        vl_expect '^(state|error)' && expect_eq "the call made meanwhile ends once libvirtd is back" \
                "state 1" "$vl_line" || fail "after libvirtd's stop: '$vl_line'"
else
        echo "# libvirtd is the machine's, not this test's: not stopping it"
fi
vl_say suspend
vl_expect '^event 3 ' && pass "suspend: the Suspended event" || fail "suspend: '$vl_line'"
vl_say resume
vl_expect '^event 4 ' && pass "resume: the Resumed event" || fail "resume: '$vl_line'"
vl_say destroy
vl_expect '^event 5 ' && expect_eq "destroy: the Stopped event, detail destroyed" "event 5 1" "$vl_line" ||
        fail "destroy: no Stopped event: '$vl_line'"
kill -9 "$vl_pid" 2>/dev/null || true # ended by the Stopped event, or not
wait "$vl_pid" 2>/dev/null || true
vl_pid=
listed "$name" && fail "$name still listed after its destroy" || pass "nothing listed after the destroy"

# ---- started paused ----
name=unishim-it-$tag-p
vl_start "$name" --paused
vl_expect '^(created|error)' && [ "$vl_line" = created ] && pass "created paused" || fail "create paused: '$vl_line'"
vl_say state
vl_expect '^state ' && expect_eq "it is paused (VIR_DOMAIN_PAUSED)" "state 3" "$vl_line" ||
        fail "no state: '$vl_line'"
vl_say resume
vl_expect '^event 4 ' && pass "resumed" || fail "resume: '$vl_line'"
vl_say state
vl_expect '^state ' && expect_eq "it runs after the resume" "state 1" "$vl_line" ||
        fail "no state: '$vl_line'"

# ---- the owner killed: AUTODESTROY ----
kill -9 "$vl_pid"
wait "$vl_pid" 2>/dev/null || true
vl_pid=
wait_until 60 sh -c "! $VIRSH list --name | grep -qxF '$name'" &&
        pass "kill -9 of the connection's owner destroyed its domain" ||
        fail "$name still listed after its owner was killed"

# ---- refused ----
out=$(echo | "$TOOL" --name "unishim-it-$tag-bad" --disk "$IT_TMP/missing.qcow2" \
        --console "$IT_TMP/bad.sock" --uid "$QUID" 2>&1) && rc=0 || rc=$?
[ "$rc" != 0 ] && [[ $out = *"create domain"*missing.qcow2* ]] &&
        pass "a domain libvirt refuses is an error naming the cause" || fail "refused domain: rc $rc: $out"
listed "unishim-it-$tag-bad" && fail "the refused domain is listed" || pass "nothing left of the refused domain"

# ---- libvirt is loaded by vm pods only ----
shim=$BUILD/shim/containerd-shim-unishim-v2
[ -x "$shim" ] && ! ldd "$shim" | grep -q libvirt && pass "the shim binary does not link libvirt" ||
        fail "the shim links libvirt: $(ldd "$shim" | grep libvirt)"

it_finish
