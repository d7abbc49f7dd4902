#!/bin/bash
# The VM template cache against real QEMU (vmm/template-cache.h, docs/vmm.md
# "VM templates"): `unishimctl template build` boots the project guest image
# with the template layout (9p device at the jail's /share/0, a tap in a
# throwaway network namespace, virtio-rng, the RAM in a memfd), saves it and
# leaves a holder keeping the sealed memfd; a second build of the same key
# meanwhile is busy at once (and so is a lookup); two clones restored from
# the cache at the same time (tests/tools/vmm-boot --template-cache), their
# agent ports connected before the load as the shim connects them, both
# answer the agent's Restore, sent once, with boot_ids of their own, and
# each QEMU maps the holder's memfd (the same inode); a corrupt state
# file makes the lookup say broken; `template gc` removes a dead
# builder's directory and the temporary file of a failed-build record
# whose writer died (not one whose writer lives) and keeps the live
# template; a changed input (the initrd
# touched) gives another key, whose build removes the old key's entry
# (stale) and stops its holder;
# a build that fails (not a kernel) is recorded in .failed-<key>, its
# count grows with the next failure; `template rm KEY` of that key (a
# record alone) removes it, says so and exits 0, and exits 1 naming the
# key once nothing is left; `template rm --all` leaves no holder, no entry
# and no record. Times, sizes and PSS are printed,
# never asserted.
#
# Needs root (QEMU's private root, network namespaces), QEMU and the guest
# image with the agent (build/vmm/guest-image).
set -euo pipefail

. "$(dirname "${BASH_SOURCE[0]}")/vmm-template-env.sh"
BOOT=$BUILD/tests/vmm-boot
AGENT_CTL=$BUILD/guest-agent/unishim-agent-ctl
for b in "$BOOT" "$CTL" "$AGENT_CTL"; do
        [ -x "$b" ] || { echo "FAIL: $b not built"; exit 1; }
done

tmp=$(mktemp -d /tmp/test-vmm-template.XXXXXX)
tag=${tmp##*/}
cache=$tmp/cache
fail=0
ok() { echo "ok: $*"; }
bad() { echo "FAIL: $*"; fail=1; }

# The clones' QEMUs are named unishim-<tag>-...; the template's QEMU is
# unishimctl's child and dies with it (PR_SET_PDEATHSIG), holders are
# found by their pid files.
ours() { { tr '\0' ' ' <"$1/cmdline"; } 2>/dev/null | grep -qF -e "$tmp/" -e "unishim-$tag-"; }
holders() {
        local p
        for p in "$cache"/*/holder.pid; do
                [ -f "$p" ] && cat "$p"
        done
        return 0
}
cleanup() {
        set +e
        for p in /proc/[0-9]*; do
                ours "$p" && kill -KILL "${p#/proc/}" 2>/dev/null
        done
        [ -d "$cache" ] && "$CTL" template --config "$tmp/config.json" rm --all >/dev/null 2>&1
        for h in $(holders); do kill -KILL "$h" 2>/dev/null; done
        rm -rf "$tmp"
}
trap cleanup EXIT

# The initrd is a copy: touching it changes the key without touching the
# build tree.
initrd=$tmp/initramfs.cpio
cp "$initrd_src" "$initrd"
cat >"$tmp/config.json" <<EOF
{"sandbox": {"kernel": "$kernel", "initrd": "$initrd", "accel": "auto",
             "template_dir": "$cache"}}
EOF
echo "guest kernel: $(cat "$img/kernel-release" 2>/dev/null || echo ?)," \
        "9p: $(grep -E '^CONFIG_NET_9P=' "$img/kernel-config" 2>/dev/null || echo 'not built (no driver for the 9p device)')"

# --- build, and a second build meanwhile -----------------------------------
t0=$(date +%s.%N)
"$CTL" template --config "$tmp/config.json" build >"$tmp/build1.out" 2>&1 &
build_pid=$!
# Until the first build holds the key (its temporary directory exists).
for _ in $(seq 600); do
        compgen -G "$cache/.build-*" >/dev/null && break
        kill -0 $build_pid 2>/dev/null || break
        sleep 0.1
done
if compgen -G "$cache/.build-*" >/dev/null; then
        t1=$(date +%s.%N)
        rc=0
        "$CTL" template --config "$tmp/config.json" build >"$tmp/build2.out" 2>&1 || rc=$?
        t2=$(date +%s.%N)
        mkdir -p "$tmp/busy"
        lrc=0
        timeout -s KILL 60 "$BOOT" --kernel "$kernel" --initrd "$initrd" --state-dir "$tmp/busy" \
                --id "$tag-busy" --accel auto --template-cache "$cache" --ready-cmd true \
                >"$tmp/busy.out" 2>&1 || lrc=$?
        still=0
        kill -0 $build_pid 2>/dev/null && still=1
        echo "second build: exit $rc after $(awk "BEGIN {print $t2 - $t1}") s: $(cat "$tmp/build2.out")"
        if [ $still = 0 ]; then
                bad "the first build ended before the second was refused: busy not tested"
        elif [ $rc = 3 ] && grep -q "busy" "$tmp/build2.out"; then
                ok "a second build while one runs is busy (exit 3)"
        else
                bad "a second build while one runs: exit $rc"
        fi
        if [ $lrc = 3 ] && grep -qx "lookup=busy" "$tmp/busy.out"; then
                ok "a lookup while the template builds: busy"
        else
                bad "a lookup while the template builds: exit $lrc, $(grep lookup "$tmp/busy.out")"
        fi
else
        bad "the first build never started building"
fi
rc=0
wait $build_pid || rc=$?
sed 's/^/  build: /' "$tmp/build1.out"
[ $rc = 0 ] || { bad "template build exited $rc"; exit 1; }
key=$(sed -n 's/^key //p' "$tmp/build1.out")
holder=$(sed -n 's/^holder //p' "$tmp/build1.out")
echo "template: built in $(sed -n 's/^build_s //p' "$tmp/build1.out") s" \
        "(boot to the agent $(sed -n 's/^boot_s //p' "$tmp/build1.out") s," \
        "save $(sed -n 's/^save_s //p' "$tmp/build1.out") s), state" \
        "$(sed -n 's/^state_bytes //p' "$tmp/build1.out") bytes; wall $(awk "BEGIN {print $(date +%s.%N) - $t0}") s"

# The holder: a daemon of its own session, stdio on /dev/null, the memfd.
if [ -n "$holder" ] && [ -d "/proc/$holder" ]; then
        sid=$(awk '{print $6}' "/proc/$holder/stat")
        fd0=$(readlink "/proc/$holder/fd/0")
        memfd_ino=$(stat -L -c %i "/proc/$holder/fd/3" 2>/dev/null || echo)
        if [ "$sid" != "$(awk '{print $6}' /proc/$$/stat)" ]; then
                [ "$fd0" = /dev/null ] && [ "$(readlink "/proc/$holder/fd/3")" = "/memfd:unishim-template (deleted)" ] &&
                        ok "holder $holder: own session, stdio /dev/null, keeps the memfd (inode $memfd_ino)," \
                                "$(awk '/^VmRSS/ {print $2 " KiB RSS"}' "/proc/$holder/status")" ||
                        bad "holder $holder: fd 0 $fd0, fd 3 $(readlink "/proc/$holder/fd/3")"
        else
                bad "holder $holder is in the test's session"
        fi
else
        bad "no holder running ($holder)"
fi
"$CTL" template --config "$tmp/config.json" list >"$tmp/list1.out" 2>&1 || true
sed 's/^/  list: /' "$tmp/list1.out"
grep -q "^$key state=ready holder=$holder " "$tmp/list1.out" && ok "list: $key ready, holder $holder" ||
        bad "list does not show the template ready with its holder"

# --- two clones at once ----------------------------------------------------
. "$(dirname "${BASH_SOURCE[0]}")/vmm-bg.sh"
# A clone made as the shim makes one (--ports-first: both agent ports
# connected before the restore and held), its first call Restore (host
# entropy, clock, then boot_id) sent once on the events port: a clone that
# drops it fails here, where a client that reconnects and sends again
# would hide it. (The agent that dropped it, docs/vmm.md "Why clones
# hung", is gone from the image: a builder that saved templates in that
# state again would no longer show here.) The deadline only detects a
# hang.
ready="$AGENT_CTL --wait-ms 200000 fd:\$AGENT_EVENTS_FD restore"
# The guest RAM mapping in QEMU's maps: the memfd's inode.
maps_ino() { awk '/memfd:unishim-template/ {print $5; exit}' "/proc/$1/maps" 2>/dev/null; }

bg clone1 --template-cache "$cache" --ports-first
bg clone2 --template-cache "$cache" --ports-first
cok=1
until_ready clone1 || cok=0
until_ready clone2 || cok=0
q1=$(val clone1 qemu_pid)
q2=$(val clone2 qemu_pid)
m1=$(maps_ino "$q1")
m2=$(maps_ino "$q2")
pss1=$(pss_now "$q1")
pss2=$(pss_now "$q2")
finish clone1 || cok=0
finish clone2 || cok=0
id1=$(val clone1 boot_id)
id2=$(val clone2 boot_id)
echo "clones: restore $(val clone1 restore_s) / $(val clone2 restore_s) s, agent ready" \
        "$(val clone1 agent_ready_s) / $(val clone2 agent_ready_s) s after QEMU's start," \
        "lookup $(val clone1 lookup_s) / $(val clone2 lookup_s) s; QEMU PSS at ready" \
        "$(val clone1 pss_kib) / $(val clone2 pss_kib) KiB, both running $pss1 / $pss2 KiB"
echo "clones: boot_id ${id1:-?} / ${id2:-?}; RAM inode in maps ${m1:-?} / ${m2:-?}, holder's ${memfd_ino:-?}"
if [ $cok = 0 ]; then
        bad "the clones did not both restore and answer"
elif [ -z "$id1" ] || [ -z "$id2" ] || [ "$id1" = "$id2" ]; then
        bad "the clones' boot_ids are not their own"
else
        ok "two clones restored at once answer Restore with their own boot_id"
fi
if [ -n "$m1" ] && [ "$m1" = "$m2" ] && [ "$m1" = "$memfd_ino" ] &&
        [ "$(val clone1 memory_ino)" = "$memfd_ino" ]; then
        ok "both clones' QEMUs map the holder's memfd (inode $m1)"
else
        bad "the clones' RAM is not the holder's memfd"
fi

# --- a corrupt state file ---------------------------------------------------
st=$cache/$key/state
cp "$st" "$tmp/state.saved"
size=$(stat -c %s "$st")
printf '\xff' | dd of="$st" bs=1 seek=$((size / 2)) conv=notrunc status=none
mkdir -p "$tmp/corrupt"
lrc=0
timeout -s KILL 60 "$BOOT" --kernel "$kernel" --initrd "$initrd" --state-dir "$tmp/corrupt" \
        --id "$tag-corrupt" --accel auto --template-cache "$cache" --ready-cmd true \
        >"$tmp/corrupt.out" 2>&1 || lrc=$?
"$CTL" template --config "$tmp/config.json" list >"$tmp/list2.out" 2>&1 || true
if [ $lrc = 3 ] && grep -qx "lookup=broken" "$tmp/corrupt.out" &&
        grep -q "truncated or corrupt" "$tmp/corrupt.out" && grep -q "^$key state=broken" "$tmp/list2.out"; then
        ok "a corrupt state: $(sed -n 's/^lookup_error=//p' "$tmp/corrupt.out")"
else
        bad "a corrupt state: exit $lrc: $(cat "$tmp/corrupt.out") / $(cat "$tmp/list2.out")"
fi
cp "$tmp/state.saved" "$st"
truncate -s $((size / 2)) "$st"
lrc=0
timeout -s KILL 60 "$BOOT" --kernel "$kernel" --initrd "$initrd" --state-dir "$tmp/corrupt" \
        --id "$tag-corrupt" --accel auto --template-cache "$cache" --ready-cmd true \
        >"$tmp/truncated.out" 2>&1 || lrc=$?
[ $lrc = 3 ] && grep -qx "lookup=broken" "$tmp/truncated.out" &&
        ok "a truncated state: broken" || bad "a truncated state: exit $lrc: $(cat "$tmp/truncated.out")"
cp "$tmp/state.saved" "$st"

# --- gc with nothing stale -------------------------------------------------------
# A builder that died left its directory (its key's lock is free), and one
# killed between writing a failed-build record and its rename left the
# temporary file: gc removes both; the live template stays, its holder
# too, and so does the temporary file of a writer that lives (this shell).
mkdir "$cache/.build-$key-dead00"
bash -c 'exit 0' &
dead=$!
wait $dead || true
printf '1 5\nkilled\n' >"$cache/.failed-$key.tmp-$dead"
printf '1 5\nbeing written\n' >"$cache/.failed-$key.tmp-$$"
rc=0
"$CTL" template --config "$tmp/config.json" gc >"$tmp/gc1.out" 2>&1 || rc=$?
sed 's/^/  gc: /' "$tmp/gc1.out"
want=$(printf '%s\n' ".build-$key-dead00 left by a builder or remover that died" \
        ".failed-$key.tmp-$dead a failed-build record its writer died before renaming" | sort)
if [ $rc = 0 ] && [ "$(sort "$tmp/gc1.out")" = "$want" ] &&
        [ ! -e "$cache/.build-$key-dead00" ] && [ ! -e "$cache/.failed-$key.tmp-$dead" ] &&
        [ -e "$cache/.failed-$key.tmp-$$" ] && [ -d "$cache/$key" ] && [ -d "/proc/$holder" ]; then
        ok "gc: a dead builder's directory and record file removed, a live writer's file," \
                "the live template and its holder kept"
else
        bad "gc with a live template: exit $rc, $(cat "$tmp/gc1.out"), entries: $(ls -A "$cache")"
fi
rm -f "$cache/.failed-$key.tmp-$$"

# --- a changed input ----------------------------------------------------------
touch "$initrd"
mkdir -p "$tmp/changed"
lrc=0
timeout -s KILL 60 "$BOOT" --kernel "$kernel" --initrd "$initrd" --state-dir "$tmp/changed" \
        --id "$tag-changed" --accel auto --template-cache "$cache" --ready-cmd true \
        >"$tmp/changed.out" 2>&1 || lrc=$?
[ $lrc = 3 ] && grep -qx "lookup=none" "$tmp/changed.out" &&
        ok "after the initrd changed, no template for the new inputs" ||
        bad "after the initrd changed: exit $lrc: $(cat "$tmp/changed.out")"
rc=0
"$CTL" template --config "$tmp/config.json" build >"$tmp/build3.out" 2>&1 || rc=$?
key2=$(sed -n 's/^key //p' "$tmp/build3.out")
if [ $rc = 0 ] && [ -n "$key2" ] && [ "$key2" != "$key" ]; then
        ok "the changed initrd built another key ($key2, in $(sed -n 's/^build_s //p' "$tmp/build3.out") s)"
else
        bad "rebuild after the change: exit $rc, key ${key2:-?} (was $key): $(cat "$tmp/build3.out")"
fi
"$CTL" template --config "$tmp/config.json" list | cut -c1-90 | sed 's/^/  list: /'
# The rebuild's gc: the old key can never be hit again (its initrd's stat
# changed), so it went, and its holder with it.
if grep -qx "removed $key its initrd $initrd was replaced or rewritten" "$tmp/build3.out" &&
        [ ! -e "$cache/$key" ] && [ -d "$cache/$key2" ] &&
        { [ ! -d "/proc/$holder" ] || [ "$(awk '{print $3}' "/proc/$holder/stat" 2>/dev/null)" = Z ]; }; then
        ok "the rebuild removed the stale template $key and stopped its holder $holder"
else
        bad "the rebuild's gc: $(grep '^removed' "$tmp/build3.out"), entries: $(ls -A "$cache")," \
                "holder $holder $(cat "/proc/$holder/comm" 2>/dev/null || echo gone)"
fi

# --- a build that fails: recorded for the shim's backoff --------------------------
# Not a kernel: QEMU refuses it and exits, the build fails at once. (9p
# named: unset, a kernel without a kernel-config beside it means virtio-fs,
# for which unishimctl builds no template at all.)
head -c 65536 "$initrd" >"$tmp/not-a-kernel"
sed -e "s|\"kernel\": \"$kernel\"|\"kernel\": \"$tmp/not-a-kernel\"|" \
        -e 's|"accel": "auto",|"accel": "auto", "shared_fs": "9p",|' "$tmp/config.json" >"$tmp/broken.json"
rc1=0
"$CTL" template --config "$tmp/broken.json" build >"$tmp/broken1.out" 2>&1 || rc1=$?
rec1=$(cat "$cache"/.failed-* 2>/dev/null | head -1 || true)
rc2=0
"$CTL" template --config "$tmp/broken.json" build >"$tmp/broken2.out" 2>&1 || rc2=$?
rec2=$(cat "$cache"/.failed-* 2>/dev/null | head -1 || true)
echo "a failing build: $(tail -1 "$tmp/broken1.out" | cut -c1-200)"
if [ $rc1 = 1 ] && [ $rc2 = 1 ] && [ "${rec1%% *}" = 1 ] && [ "${rec2%% *}" = 2 ] &&
        [ "$(ls -d "$cache"/.failed-* | wc -l)" = 1 ]; then
        ok "failed builds recorded for the backoff: $(ls -A "$cache" | grep failed | cut -c1-20)...: '$rec1', then '$rec2'"
else
        bad "failed builds: exit $rc1/$rc2, records '$rec1' / '$rec2': $(ls -A "$cache")"
fi
fkey=$(ls -A "$cache" | sed -n 's/^\.failed-//p' | head -1)
"$CTL" template --config "$tmp/config.json" list >"$tmp/list3.out" 2>&1 || true
sed 's/^/  list: /' "$tmp/list3.out" | cut -c1-200
if [ -n "$fkey" ] && grep -q "^$fkey state=failed holder=- " "$tmp/list3.out" &&
        grep -qE "^  2 failed build\(s\) in a row, the last [0-9]+ s ago; a shim builds it again in [0-9]+ s: .*qemu exited" "$tmp/list3.out"; then
        ok "list: the failed key and its record"
else
        bad "list does not show the failed builds of ${fkey:-?}"
fi

# --- rm of a key with its failed-build record alone ----------------------------
# It removes the record, says so and exits 0; once nothing of the key is
# left, rm is an error naming the key. The record is put back for rm --all.
if [ -n "$fkey" ]; then
        cp "$cache/.failed-$fkey" "$tmp/failed.saved"
        rc1=0
        "$CTL" template --config "$tmp/config.json" rm "$fkey" >"$tmp/rm1.out" 2>&1 || rc1=$?
        rc2=0
        "$CTL" template --config "$tmp/config.json" rm "$fkey" >"$tmp/rm2.out" 2>&1 || rc2=$?
        sed 's/^/  rm: /' "$tmp/rm1.out" "$tmp/rm2.out" | cut -c1-200
        if [ $rc1 = 0 ] && [ "$(cat "$tmp/rm1.out")" = ".failed-$fkey the key's failed-build record" ] &&
                [ ! -e "$cache/.failed-$fkey" ]; then
                ok "rm of a key with a failed-build record alone: removed, said so, exit 0"
        else
                bad "rm of a key with a failed-build record alone: exit $rc1: $(cat "$tmp/rm1.out")"
        fi
        if [ $rc2 = 1 ] && grep -q "template rm: no template $fkey in $cache" "$tmp/rm2.out"; then
                ok "rm of a key with nothing left: exit 1, naming the key"
        else
                bad "rm of a key with nothing left: exit $rc2: $(cat "$tmp/rm2.out")"
        fi
        cp "$tmp/failed.saved" "$cache/.failed-$fkey"
fi

# --- a build killed with SIGKILL: its state directory goes at the next gc ---
# (The one end a build cannot clean up after: its child and QEMU die with it.)
"$CTL" template --config "$tmp/config.json" build >"$tmp/killed.out" 2>&1 &
kpid=$!
sdir=
for _ in $(seq 1200); do
        sdir=$(ls -d /tmp/unishim-template-"$kpid"-* 2>/dev/null | head -n1 || true)
        [ -n "$sdir" ] && break
        kill -0 $kpid 2>/dev/null || break
        sleep 0.1
done
kill -KILL $kpid 2>/dev/null || true
wait $kpid 2>/dev/null || true
if [ -z "$sdir" ]; then
        bad "the killed build made no state directory /tmp/unishim-template-$kpid-*: $(cat "$tmp/killed.out")"
elif [ ! -d "$sdir" ]; then
        bad "the killed build's state directory $sdir went by itself (the test's premise)"
else
        rc=0
        "$CTL" template --config "$tmp/config.json" gc >"$tmp/gc2.out" 2>&1 || rc=$?
        if [ $rc = 0 ] && [ ! -e "$sdir" ] && grep -qF "$sdir the state directory of a killed build (pid $kpid)" "$tmp/gc2.out"; then
                ok "gc removed the state directory of a build killed with SIGKILL ($sdir)"
        else
                bad "gc after a killed build: exit $rc, $sdir $([ -e "$sdir" ] && echo left || echo gone): $(cat "$tmp/gc2.out")"
        fi
fi

# --- rm --all -----------------------------------------------------------------
hs=$(holders)
rc=0
"$CTL" template --config "$tmp/config.json" rm --all || rc=$?
left=
for h in $hs; do
        # Gone or a zombie its new parent has yet to reap.
        if [ -d "/proc/$h" ] && [ "$(awk '{print $3}' "/proc/$h/stat" 2>/dev/null)" != Z ]; then
                left="$left $h"
        fi
done
entries=$(find "$cache" -mindepth 1 -maxdepth 1 ! -name lock | wc -l)
if [ $rc = 0 ] && [ -z "$left" ] && [ "$entries" = 0 ]; then
        ok "rm --all: holders$(printf ' %s' $hs) stopped, no entry and no failed-build record left"
else
        bad "rm --all: exit $rc, holders left:${left:- none}, entries: $(ls -A "$cache")"
fi

for p in /proc/[0-9]*; do
        if ours "$p"; then
                bad "process left: ${p#/proc/} $(tr '\0' ' ' <"$p/cmdline")"
        fi
done
if find "$tmp" -type s | grep -q .; then
        bad "sockets left: $(find "$tmp" -type s)"
fi
ls -d /tmp/unishim-template-* 2>/dev/null | sed 's/^/  (a build state dir, maybe another run: /; s/$/)/' || true

[ $fail = 0 ] && echo "PASS: test-vmm-template" || exit 1
