#!/bin/bash
# Wire compatibility of our generated protobuf-c code with containerd's own
# .proto files: every message we speak is filled with per-field values by
# tests/tools/proto-sample, encoded with our code, decoded by protoc with the
# upstream definitions, and the text must match exactly. A wrong field number
# or type shows up as another field name, another value or an unknown field.
set -euo pipefail

BUILD=${UNISHIM_BUILD_DIR:-build}
SAMPLE=$BUILD/tests/proto-sample
GOSRC=/usr/share/gocode/src

skip() { echo "SKIP: $*"; exit 77; }
command -v protoc >/dev/null || skip "protoc missing (apt package protobuf-compiler)"
[ -d "$GOSRC/github.com/containerd/containerd" ] ||
        skip "containerd sources missing (apt package golang-github-containerd-containerd-dev)"
[ -x "$SAMPLE" ] || { echo "FAIL: $SAMPLE not built"; exit 1; }

INCLUDES=(-I"$GOSRC" -I"$GOSRC/github.com/gogo/protobuf" -I"$GOSRC/github.com/gogo/googleapis"
          -I/usr/include)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

fail=0 n=0
while IFS=$'\t' read -r ours upstream file; do
        n=$((n + 1))
        "$SAMPLE" encode "$ours" >"$tmp/bin"
        "$SAMPLE" expect "$ours" >"$tmp/want"
        if ! protoc "${INCLUDES[@]}" --decode="$upstream" "$file" <"$tmp/bin" >"$tmp/got" 2>"$tmp/err"; then
                echo "FAIL: $ours: protoc --decode=$upstream $file:"; cat "$tmp/err"
                fail=1; continue
        fi
        if ! diff -u "$tmp/want" "$tmp/got" >"$tmp/diff"; then
                echo "FAIL: $ours differs from upstream $upstream ($file):"; cat "$tmp/diff"
                fail=1; continue
        fi
        echo "ok: $ours ($(wc -l <"$tmp/want") lines)"
done < <("$SAMPLE" list)

[ "$n" -gt 50 ] || { echo "FAIL: only $n messages listed"; exit 1; }

# Spot checks on the messages the shim depends on most, so that a broken
# helper cannot make everything pass vacuously.
"$SAMPLE" encode containerd.task.v2.StateResponse |
        protoc "${INCLUDES[@]}" --decode=containerd.task.v2.StateResponse \
                github.com/containerd/containerd/runtime/v2/task/shim.proto >"$tmp/state"
for want in 'status: PAUSING' 'exit_status: ' 'exited_at {' 'exec_id: "exec_id"' 'pid: '; do
        grep -q "$want" "$tmp/state" || { echo "FAIL: StateResponse lacks '$want'"; fail=1; }
done
"$SAMPLE" encode containerd.events.TaskExit |
        protoc "${INCLUDES[@]}" --decode=containerd.events.TaskExit \
                github.com/containerd/containerd/api/events/task.proto >"$tmp/exit"
grep -q 'container_id: "container_id"' "$tmp/exit" || { echo "FAIL: TaskExit container_id"; fail=1; }

# A hand-written negative control: field 3 of StateResponse (pid) sent as a
# string must not decode cleanly as pid -- proves the comparison can fail.
printf '\x1a\x03abc' >"$tmp/bad"
if protoc "${INCLUDES[@]}" --decode=containerd.task.v2.StateResponse \
        github.com/containerd/containerd/runtime/v2/task/shim.proto <"$tmp/bad" 2>/dev/null |
        grep -q '^pid:'; then
        echo "FAIL: negative control decoded as pid"; fail=1
fi

[ "$fail" = 0 ] && echo "PASS: $n messages wire-compatible with upstream"
exit "$fail"
