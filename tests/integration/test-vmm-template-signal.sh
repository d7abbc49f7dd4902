#!/bin/bash
# `unishimctl template build` stopped by SIGTERM at the worst moment
# (cri/unishimctl-template.c, build()): after it forked the build child and
# right before it waits for it. gdb stops the parent at its first waitpid()
# or poll() after the fork (the wait), the child is stopped (SIGSTOP) so it
# cannot publish meanwhile, and gdb resumes the parent with SIGTERM there.
# Then the child may run again. The build must end with 128 + 15 and
# publish nothing: no entry, no holder, no QEMU left. A build that waits
# for its child with a signal handler's flag checked before a blocking
# waitpid() misses this signal, lets the child finish and publishes for a
# pod that is gone.
#
# Needs root, QEMU, gdb and the guest image (as test-vmm-template.sh).
set -euo pipefail

. "$(dirname "${BASH_SOURCE[0]}")/vmm-template-env.sh"
initrd=$initrd_src
command -v gdb >/dev/null || skip "gdb missing (apt package gdb)"
# gdb must be able to run a program (ptrace) and have its Python.
# (Its whole output first: grep -q ending the pipe early would fail it
# under pipefail.)
out=$(gdb -q -batch -nx -ex 'python print("py-ok")' -ex run --args /bin/true 2>&1 || true)
grep -q "py-ok" <<<"$out" || skip "gdb has no Python here"
grep -q "exited normally" <<<"$out" || skip "gdb cannot run a program here (ptrace not allowed?)"
[ -x "$CTL" ] || { echo "FAIL: $CTL not built"; exit 1; }

tmp=$(mktemp -d /tmp/test-vmm-template-signal.XXXXXX)
cache=$tmp/cache
fail=0
ok() { echo "ok: $*"; }
bad() { echo "FAIL: $*"; fail=1; }

ours() { { tr '\0' ' ' <"$1/cmdline"; } 2>/dev/null | grep -qF "$tmp/"; }
holders() {
        local p
        for p in "$cache"/*/holder.pid "$cache"/.build-*/holder.pid; do
                [ -f "$p" ] && cat "$p"
        done
        return 0
}
gdb_pid=
cleanup() {
        set +e
        [ -n "$gdb_pid" ] && kill -KILL "$gdb_pid" 2>/dev/null
        for p in /proc/[0-9]*; do
                ours "$p" && kill -KILL "${p#/proc/}" 2>/dev/null
        done
        for h in $(holders); do kill -KILL "$h" 2>/dev/null; done
        [ -d "$cache" ] && "$CTL" template --config "$tmp/config.json" rm --all >/dev/null 2>&1
        rm -rf "$tmp"
}
trap cleanup EXIT

cat >"$tmp/config.json" <<EOF
{"sandbox": {"kernel": "$kernel", "initrd": "$initrd", "accel": "auto",
             "template_dir": "$cache"}}
EOF
published() { find "$cache" -mindepth 1 -maxdepth 1 -regextype egrep -regex '.*/[0-9a-f]{64}' 2>/dev/null | grep -q .; }

# The parent's wait is its first waitpid() or poll() after the fork; the
# breakpoints are set once the child exists, so they are the parent's
# alone (gdb detaches the child).
cat >"$tmp/gdb.cmd" <<EOF
set pagination off
set confirm off
set follow-fork-mode parent
set detach-on-fork on
handle SIGTERM nostop noprint pass
handle SIGSTOP nostop noprint pass
catch fork
run
delete
break waitpid
break poll
continue
delete
python
import os, subprocess
pid = gdb.selected_inferior().pid
kids = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()
for k in kids:
    os.kill(int(k), 19)
with open("$tmp/at-wait.tmp", "w") as f:
    f.write("%d %s\n" % (pid, " ".join(kids)))
os.rename("$tmp/at-wait.tmp", "$tmp/at-wait")
end
signal SIGTERM
EOF
gdb -q -batch -nx -x "$tmp/gdb.cmd" --args "$CTL" template --config "$tmp/config.json" build \
        >"$tmp/gdb.out" 2>&1 &
gdb_pid=$!

# Until the parent is at its wait and the child stopped (the deadline only
# guards against a hang).
for _ in $(seq 1200); do
        [ -f "$tmp/at-wait" ] && break
        kill -0 $gdb_pid 2>/dev/null || break
        sleep 0.1
done
[ -f "$tmp/at-wait" ] || { sed 's/^/  gdb: /' "$tmp/gdb.out"; bad "gdb never stopped the build at its wait"; exit 1; }
read -r parent kids <"$tmp/at-wait"
[ -n "$kids" ] || { sed 's/^/  gdb: /' "$tmp/gdb.out"; bad "the build has no child at its wait"; exit 1; }
if published; then
        # The child published before it was stopped: the signal's moment
        # was not the one this test is about.
        skip "the build published before its child could be stopped ($(ls -A "$cache"))"
fi
echo "build $parent stopped at its wait, child $kids stopped; SIGTERM delivered there"
# The signal is delivered once gdb resumes the parent: it has then exited,
# or it is back in a wait (wait4, or poll) with the signal handled.
for _ in $(seq 1200); do
        [ -d "/proc/$parent" ] || break
        sc=$(cut -d' ' -f1 "/proc/$parent/syscall" 2>/dev/null || echo)
        [ "$sc" = 61 ] || [ "$sc" = 7 ] && break
        sleep 0.1
done
# The child may go on now: a build that missed the signal lets it publish.
kill -CONT $kids 2>/dev/null || true
rc=0
for _ in $(seq 6000); do
        kill -0 $gdb_pid 2>/dev/null || break
        sleep 0.1
done
wait $gdb_pid || rc=$?
gdb_pid=
sed 's/^/  gdb: /' "$tmp/gdb.out" | grep -v -e '^  gdb: \[Thread' -e 'libthread_db' || true
if grep -q "exited with code 0217\]" "$tmp/gdb.out" &&
        grep -q "stopped by signal 15" "$tmp/gdb.out"; then
        ok "the build ended with 143 (128 + SIGTERM)"
else
        bad "the build did not end with 143 on SIGTERM (gdb exit $rc)"
fi
if published; then
        bad "the build published after its SIGTERM: $(ls -A "$cache")"
else
        ok "nothing published after SIGTERM"
fi
hs=$(holders)
left=
for h in $hs; do
        if [ -d "/proc/$h" ] && [ "$(awk '{print $3}' "/proc/$h/stat" 2>/dev/null)" != Z ]; then
                left="$left $h"
        fi
done
[ -z "$left" ] && ok "no holder left" || bad "holders left:$left"
for p in /proc/[0-9]*; do
        if ours "$p"; then
                bad "process left: ${p#/proc/} $(tr '\0' ' ' <"$p/cmdline")"
        fi
done
# The next build of the key removes what the stopped one left.
rc=0
"$CTL" template --config "$tmp/config.json" build >"$tmp/build2.out" 2>&1 || rc=$?
[ $rc = 0 ] && published && ok "a build afterwards publishes" ||
        bad "a build afterwards: exit $rc: $(cat "$tmp/build2.out")"

[ $fail = 0 ] && echo "PASS: test-vmm-template-signal" || exit 1
