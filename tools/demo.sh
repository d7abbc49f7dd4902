#!/bin/bash
# A short tour of unishim: a private containerd, three containers run by the
# unishim shim (runtime io.containerd.unishim.v2), then everything torn down.
# `make demo` calls this. DEMO_RUNTIME=io.containerd.runc.v2 shows the same
# with containerd's runc shim.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/../tests/env/lib.sh"

RUNTIME=${DEMO_RUNTIME:-$UNISHIM_RUNTIME}
CTR_TIMEOUT=${CTR_TIMEOUT:-30}
[ "$(id -u)" = 0 ] || { echo "demo: must run as root" >&2; exit 1; }

env_init unishim-demo
cleanup() {
        local rc=$?
        set +e
        trap '' PIPE # a closed stdout (| head) must not stop the cleanup
        if [ "$rc" != 0 ] && [ -s "$ENV_LOG" ]; then
                echo "--- last lines of containerd's log ($ENV_LOG) ---"
                tail -n 20 "$ENV_LOG" | tr -d '\0' | cut -c1-400
        fi
        echo "==> tearing down"
        env_stop
        exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

step() { printf '\n==> %s\n' "$*"; }
# show ID COMMAND...: prints the command line and the container's output.
show() {
        local id=$1
        shift
        printf '$ ctr run --rm --runtime %s %s %s' "$RUNTIME" "$TEST_IMAGE" "$id"
        printf ' %q' "$@"
        echo
        ectr run --rm --runtime "$RUNTIME" "$TEST_IMAGE" "$id" "$@" </dev/null
}
# must ID COMMAND...: show, and stop the demo if the container failed.
must() {
        local rc=0
        show "$@" || rc=$?
        [ "$rc" = 0 ] || { echo "demo: FAILED: ctr run exited $rc" >&2; exit 1; }
}

step "starting a private containerd (socket $ENV_ADDR)"
env_start
echo "image $TEST_IMAGE (busybox), runtime $RUNTIME -> $(env_shim_binary)"

step "hello"
must demo-hello echo hello from unishim

step "the kernel, seen from inside the container"
must demo-uname uname -a

step "exit codes come back"
rc=0
show demo-exit sh -c 'exit 3' || rc=$?
echo "exit code: $rc"
[ "$rc" = 3 ] || { echo "demo: expected exit code 3" >&2; exit 1; }

step "done"
