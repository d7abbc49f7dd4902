# shellcheck shell=bash
# Shared helpers for unishim's private containerd environment. Sourced by
# tests/env/env-up.sh, env-down.sh, the integration tests, bench/run.sh and
# tools/demo.sh. Bash only; callers run with `set -euo pipefail`.
#
# An environment is identified by a NAME; everything it owns derives from it:
#   state  /run/NAME         (containerd state, socket, log, pid file, PATH dir)
#   root   /var/lib/NAME     (containerd root: content, snapshots, metadata)
#   ns     NAME              (containerd namespace; cgroups /sys/fs/cgroup/*/NAME/<id>)
# so that several environments (and a system containerd) never meet.
# containerd 1.6 keeps shim sockets in /run/containerd/s/ whatever its state
# dir; they are hashed from the address, so they do not collide either.

ENV_LIB_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
UNISHIM_SOURCE_DIR=${UNISHIM_SOURCE_DIR:-$(cd "$ENV_LIB_DIR/../.." && pwd)}
# The build dir: UNISHIM_BUILD_DIR (ctest sets it), else the GNUmakefile's
# BUILD (relative to the source dir), else build/.
if [ -z "${UNISHIM_BUILD_DIR:-}" ]; then
        UNISHIM_BUILD_DIR=${BUILD:-build}
        [[ $UNISHIM_BUILD_DIR = /* ]] || UNISHIM_BUILD_DIR=$UNISHIM_SOURCE_DIR/$UNISHIM_BUILD_DIR
fi
TEST_IMAGE=${TEST_IMAGE:-docker.io/unishim/test:latest}
UNISHIM_RUNTIME=io.containerd.unishim.v2
RUNC_RUNTIME=io.containerd.runc.v2
# Every ctr call is bounded by this (seconds).
CTR_TIMEOUT=${CTR_TIMEOUT:-60}

env_log() { echo "[$(date +%H:%M:%S)] $*" >&2; }

# env_init NAME: sets the ENV_* variables for environment NAME.
env_init() {
        ENV_NAME=$1
        ENV_STATE=/run/$ENV_NAME
        ENV_ROOT=/var/lib/$ENV_NAME
        ENV_NS=$ENV_NAME
        ENV_ADDR=$ENV_STATE/containerd.sock
        ENV_CONFIG=$ENV_STATE/config.toml
        ENV_LOG=$ENV_STATE/containerd.log
        ENV_PIDFILE=$ENV_STATE/containerd.pid
        ENV_BINDIR=$ENV_STATE/bin
        ENV_IMAGE_DIR=$UNISHIM_BUILD_DIR/test-image
        ENV_ROOTFS=$ENV_IMAGE_DIR/rootfs
        export CONTAINERD_ADDRESS=$ENV_ADDR CONTAINERD_NAMESPACE=$ENV_NS TEST_IMAGE
}

# ctr against this environment, bounded by CTR_TIMEOUT.
ectr() {
        timeout -k 5 "$CTR_TIMEOUT" ctr -a "$ENV_ADDR" -n "$ENV_NS" "$@"
}

env_shim_binary() { echo "$UNISHIM_BUILD_DIR/shim/containerd-shim-unishim-v2"; }

env_containerd_pid() {
        local pid
        pid=$(cat "$ENV_PIDFILE" 2>/dev/null) || return 1
        [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 1
        # The pid file may be stale and the pid reused.
        tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$ENV_CONFIG" || return 1
        echo "$pid"
}

# True when containerd runs, answers and has the test image.
env_healthy() {
        env_containerd_pid >/dev/null || return 1
        CTR_TIMEOUT=10 ectr version >/dev/null 2>&1 || return 1
        CTR_TIMEOUT=10 ectr images ls -q 2>/dev/null | grep -qxF "$TEST_IMAGE"
}

env_render_config() {
        local disabled='"io.containerd.grpc.v1.cri"'
        [ "${UNISHIM_ENV_CRI:-0}" = 1 ] && disabled=''
        sed -e "s|@ROOT@|$ENV_ROOT|g" -e "s|@STATE@|$ENV_STATE|g" \
                -e "s|@ADDRESS@|$ENV_ADDR|g" -e "s|@DISABLED_PLUGINS@|$disabled|g" \
                -e "s|@LOG_LEVEL@|${UNISHIM_ENV_LOG_LEVEL:-info}|g" \
                -e "s|@CNI_BIN_DIR@|${CNI_BIN_DIR:-/usr/lib/cni}|g" \
                "$ENV_LIB_DIR/containerd-config.toml.in" >"$ENV_CONFIG.tmp"
        mv "$ENV_CONFIG.tmp" "$ENV_CONFIG"
}

# Builds the test image (cached in the build dir) and imports it.
env_import_image() {
        "$ENV_LIB_DIR/build-image.sh" "$ENV_IMAGE_DIR" "$TEST_IMAGE"
        ectr images import --no-unpack "$ENV_IMAGE_DIR/image.tar" >/dev/null
        ectr images ls -q | grep -qxF "$TEST_IMAGE" || {
                env_log "image $TEST_IMAGE missing after import"
                return 1
        }
}

# env_start: starts containerd for the current ENV_* (idempotent).
env_start() {
        if env_healthy; then
                return 0
        fi
        if env_containerd_pid >/dev/null; then
                env_log "containerd of $ENV_NAME runs but is unhealthy; restarting it"
                env_stop
        fi
        local shim
        shim=$(env_shim_binary)
        if [ ! -x "$shim" ]; then
                env_log "warning: $shim not built; runtime $UNISHIM_RUNTIME will not work"
        fi
        mkdir -p "$ENV_STATE" "$ENV_ROOT" "$ENV_BINDIR"
        chmod 0711 "$ENV_STATE" "$ENV_ROOT"
        ln -sfn "$shim" "$ENV_BINDIR/containerd-shim-unishim-v2"
        env_render_config
        : >>"$ENV_LOG"
        # setsid: containerd outlives env-up.sh and ignores the caller's
        # terminal signals. PATH: containerd resolves the shim of
        # io.containerd.unishim.v2 as containerd-shim-unishim-v2 on it.
        PATH="$ENV_BINDIR:$PATH" setsid containerd --config "$ENV_CONFIG" \
                </dev/null >>"$ENV_LOG" 2>&1 &
        echo $! >"$ENV_PIDFILE"
        local i
        for ((i = 0; i < 150; i++)); do
                if ! env_containerd_pid >/dev/null; then
                        env_log "containerd exited during start-up; its log ($ENV_LOG):"
                        tail -n 50 "$ENV_LOG" >&2
                        return 1
                fi
                [ -S "$ENV_ADDR" ] && CTR_TIMEOUT=5 ectr version >/dev/null 2>&1 && break
                sleep 0.2
        done
        if ((i == 150)); then
                env_log "containerd did not answer on $ENV_ADDR within 30s; its log:"
                tail -n 50 "$ENV_LOG" >&2
                return 1
        fi
        env_import_image
}

# Pids of this environment's shims: containerd-shim-* processes started with
# -address ENV_ADDR.
env_shim_pids() {
        local d args
        for d in /proc/[0-9]*; do
                args=$(tr '\0' '\n' 2>/dev/null <"$d/cmdline") || continue
                [[ ${args%%$'\n'*} = *containerd-shim-* ]] || continue
                grep -qxF -- "$ENV_ADDR" <<<"$args" && echo "${d#/proc/}"
        done
        return 0
}

# env_shim_pid ID: pid of the (serving) shim of container ID, if any: the
# containerd-shim-* process with -address ENV_ADDR and -id ID that is not the
# short-lived `start` invocation; failing that (a shim that forks without
# exec keeps the `start` argument), the parent of the task's init process.
env_shim_pid() {
        local d args pid ppid comm
        for d in /proc/[0-9]*; do
                args=$(tr '\0' '\n' 2>/dev/null <"$d/cmdline") || continue
                [[ ${args%%$'\n'*} = *containerd-shim-* ]] || continue
                grep -qxF -- "$ENV_ADDR" <<<"$args" || continue
                grep -qxF -- "$1" <<<"$args" || continue
                grep -qx -- start <<<"$args" && continue
                echo "${d#/proc/}"
                return 0
        done
        pid=$(CTR_TIMEOUT=10 ectr tasks ls 2>/dev/null | awk -v id="$1" '$1 == id { print $2 }')
        [[ $pid =~ ^[1-9][0-9]*$ ]] || return 0
        ppid=$(awk '$1 == "PPid:" { print $2 }' "/proc/$pid/status" 2>/dev/null) || return 0
        [ -n "$ppid" ] || return 0
        comm=$(tr '\0' '\n' 2>/dev/null <"/proc/$ppid/cmdline" | head -n1)
        [[ $comm = *containerd-shim-* ]] && echo "$ppid"
        return 0
}

# Pids of processes living in this environment's cgroups (containers).
env_cgroup_pids() {
        local f
        for f in /sys/fs/cgroup/*/"$ENV_NS"/*/cgroup.procs /sys/fs/cgroup/*/"$ENV_NS"/cgroup.procs; do
                [ -r "$f" ] && cat "$f" 2>/dev/null
        done | sort -un
        return 0
}

# Mount points at or under the environment's dirs, deepest first.
env_mounts() {
        awk -v r="$ENV_ROOT" -v s="$ENV_STATE" '
                function unesc(p) { gsub(/\\040/, " ", p); return p }
                { p = unesc($5); if (index(p, r) == 1 || index(p, s) == 1) print p }
        ' /proc/self/mountinfo | sort -r
        return 0
}

# env_shim_socket ID: the path containerd 1.6 gives the shim socket of ID.
env_shim_socket() {
        echo "/run/containerd/s/$(printf '%s' "$ENV_ADDR/$ENV_NS/$1" | sha256sum | cut -d' ' -f1)"
}

# env_stop: stops everything of the environment and removes its dirs. Safe to
# call on an environment that is half up or already gone.
env_stop() {
        local pid ids id i
        # Tasks and containers first, while containerd can still clean up.
        if env_containerd_pid >/dev/null && CTR_TIMEOUT=5 ectr version >/dev/null 2>&1; then
                ids=$(CTR_TIMEOUT=10 ectr containers ls -q 2>/dev/null || true)
                for id in $ids; do
                        CTR_TIMEOUT=10 ectr tasks kill -a -s SIGKILL "$id" >/dev/null 2>&1 || true
                done
                for id in $ids; do
                        CTR_TIMEOUT=15 ectr tasks delete -f "$id" >/dev/null 2>&1 || true
                        CTR_TIMEOUT=15 ectr containers delete "$id" >/dev/null 2>&1 || true
                        rm -f "$(env_shim_socket "$id")"
                done
        fi
        if pid=$(env_containerd_pid); then
                kill -TERM "$pid" 2>/dev/null || true
                for ((i = 0; i < 100; i++)); do
                        kill -0 "$pid" 2>/dev/null || break
                        sleep 0.1
                done
                kill -KILL "$pid" 2>/dev/null || true
        fi
        # Leftover shims and container processes of this environment only.
        for pid in $(env_shim_pids) $(env_cgroup_pids); do
                kill -KILL "$pid" 2>/dev/null || true
        done
        for ((i = 0; i < 50; i++)); do
                [ -z "$(env_shim_pids)$(env_cgroup_pids)" ] && break
                sleep 0.1
        done
        # Cgroups of the namespace, deepest first.
        { find /sys/fs/cgroup/*/"$ENV_NS" -depth -type d 2>/dev/null || true; } |
                while read -r d; do rmdir "$d" 2>/dev/null || true; done
        # runc keeps its container state under /run/containerd/runc/<ns>.
        rm -rf "/run/containerd/runc/$ENV_NS"
        local m
        for m in $(env_mounts); do
                umount -l "$m" 2>/dev/null || true
        done
        rm -rf "$ENV_STATE" "$ENV_ROOT"
}

# env_write_file FILE: writes the sourceable variables of the environment.
env_write_file() {
        mkdir -p "$(dirname "$1")"
        cat >"$1.tmp" <<EOF
# Written by tests/env/env-up.sh: the private containerd of unishim's tests.
export CONTAINERD_ADDRESS=$ENV_ADDR
export CONTAINERD_NAMESPACE=$ENV_NS
export TEST_IMAGE=$TEST_IMAGE
export UNISHIM_ENV_NAME=$ENV_NAME
export UNISHIM_ENV_STATE=$ENV_STATE
export UNISHIM_ENV_ROOT=$ENV_ROOT
export UNISHIM_ENV_LOG=$ENV_LOG
export UNISHIM_ENV_ROOTFS=$ENV_ROOTFS
EOF
        mv "$1.tmp" "$1"
}
