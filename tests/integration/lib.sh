# shellcheck shell=bash
# Helpers for the integration tests (tests/integration/test-*.sh). Each test
# sources this, calls it_setup, runs its checks and ends with it_finish.
#
# Every test run gets a PRIVATE containerd (environment name unishim-it-<pid>:
# state /run/unishim-it-<pid>, root /var/lib/unishim-it-<pid>, namespace of the
# same name), torn down by an EXIT trap whatever happens; containerd's log is
# printed when a check failed.
#
#   RUNTIME=io.containerd.runc.v2 bash tests/integration/test-basic.sh
# runs the same checks against containerd's runc shim: that is how the tests
# themselves are validated. The default is unishim's runtime.

. "$(dirname "${BASH_SOURCE[0]}")/../env/lib.sh"

RUNTIME=${RUNTIME:-$UNISHIM_RUNTIME}
IT_FAILURES=0
IT_CHECKS=0
IT_TMP=

it_skip() {
        echo "SKIP: $*"
        exit 77
}

# sandbox_template_summary: on the template path, how many sandbox pods
# were restored and why the others were not (the shims' lines in
# containerd's log), while the env is up.
sandbox_template_summary() {
        [ "${ENV_SANDBOX_PATH:-}" = template ] && [ -s "${ENV_LOG:-}" ] || return 0
        local miss='VM template .*: boots cold\|no VM template'
        echo "# template path: $(grep -ac ': restored from VM template ' "$ENV_LOG") pods restored," \
                "$(grep -ac "$miss" "$ENV_LOG") not:"
        # (none missed: grep's 1 must not end a caller under set -e)
        grep -a "$miss" "$ENV_LOG" | grep -o 'pod [0-9a-f]\{12\}.*' | cut -c1-600 | sed 's/^/#   /' || true
        return 0
}

it_cleanup() {
        local rc=$?
        trap - EXIT INT TERM
        set +e
        trap '' PIPE # a closed stdout (| head) must not stop the cleanup
        if [ "$rc" != 0 ] || [ "$IT_FAILURES" != 0 ]; then
                if [ -n "${ENV_LOG:-}" ] && [ -s "$ENV_LOG" ]; then
                        echo "---- containerd log ($ENV_LOG, last 200 lines) ----"
                        tail -n 200 "$ENV_LOG" | tr -d '\0'
                        echo "---- end of containerd log ----"
                fi
        fi
        sandbox_template_summary
        # IT_CLEANUP_HOOK: the name of a function (a command line here
        # would be split, not parsed: no quotes, no variables).
        [ -n "${IT_CLEANUP_HOOK:-}" ] && "$IT_CLEANUP_HOOK"
        [ -n "${ENV_NAME:-}" ] && env_stop
        # (after the pods; a no-op unless it_setup started it)
        [ -n "${ENV_NAME:-}" ] && env_libvirt_stop "$ENV_NAME"
        [ -n "$IT_TMP" ] && rm -rf "$IT_TMP"
        exit "$rc"
}

# it_setup: checks the machine, starts the private containerd. IT_CRI=1
# (the test-cri-* tests) starts it with the CRI plugin, its netns, CNI bridge
# and registry; otherwise ctr only (faster). What only some tests need, they
# ask for before it_setup:
#   IT_VM_IMAGE=1  the vm kind's test disk in the registry as $CRI_VM_IMAGE
#                  (implies IT_CRI=1). Built once per build dir and cached
#                  (<build>/vm-image; a cold build takes minutes); a build
#                  that fails fails the test, with the end of its log.
#   IT_LIBVIRT=1   libvirtd answering on $ENV_LIBVIRT_URI (qemu:///system)
#                  for the test's lifetime: the machine's, else one started
#                  for it and stopped after its last concurrent user.
it_setup() {
        [ "$(id -u)" = 0 ] || it_skip "integration tests need root"
        local b
        for b in containerd ctr runc jq timeout setsid; do
                command -v "$b" >/dev/null || it_skip "$b not installed (make deps-runtime)"
        done
        UNISHIM_ENV_VM_IMAGE=${IT_VM_IMAGE:-0}
        [ "$UNISHIM_ENV_VM_IMAGE" = 1 ] && IT_CRI=1
        UNISHIM_ENV_LIBVIRT=${IT_LIBVIRT:-0}
        if [ "$UNISHIM_ENV_LIBVIRT" = 1 ]; then
                for b in libvirtd virtlogd virsh; do
                        command -v "$b" >/dev/null || it_skip "$b not installed (apt package libvirt-daemon-system)"
                done
        fi
        UNISHIM_ENV_CRI=${IT_CRI:-0}
        if [ "$UNISHIM_ENV_CRI" = 1 ]; then
                for b in docker-registry nsenter ip cc; do
                        command -v "$b" >/dev/null || it_skip "$b not installed (make deps-runtime)"
                done
                [ -x /usr/lib/cni/bridge ] || it_skip "containernetworking-plugins not installed (make deps-runtime)"
                if [ ! -x "$UNISHIM_BUILD_DIR/cri/unishimctl" ]; then
                        echo "FAIL: $UNISHIM_BUILD_DIR/cri/unishimctl is not built"
                        exit 1
                fi
        fi
        [ -x /bin/busybox ] || it_skip "busybox-static not installed (make deps-runtime)"
        if [ "$RUNTIME" = "$UNISHIM_RUNTIME" ] && [ ! -x "$(env_shim_binary)" ]; then
                # Not a machine limitation: the build is incomplete. Fail.
                echo "FAIL: $(env_shim_binary) is not built"
                exit 1
        fi
        # Before containerd: a cold build takes minutes, and its failure is
        # the test's, told by the build's log rather than containerd's.
        if [ "$UNISHIM_ENV_VM_IMAGE" = 1 ] && ! env_vm_image_build; then
                echo "FAIL: the vm image $VM_IMAGE could not be built (log $ENV_VM_IMAGE_DIR/build.log)"
                exit 1
        fi
        IT_TMP=$(mktemp -d /tmp/unishim-it.XXXXXX)
        env_init "unishim-it-$$"
        trap it_cleanup EXIT
        trap 'exit 130' INT TERM
        env_start
        echo "# runtime $RUNTIME, containerd $ENV_ADDR (namespace $ENV_NS, log $ENV_LOG)"
        if [ "$ENV_VM_IMAGE" = 1 ]; then
                echo "# vm image $CRI_VM_IMAGE (from $ENV_VM_IMAGE_DIR/image.tar)"
        fi
        if [ "$ENV_LIBVIRT" = 1 ]; then
                # (it prints libvirtd's log when it fails)
                env_libvirt_start "$ENV_NAME" $$ || {
                        echo "FAIL: libvirtd did not come up"
                        exit 1
                }
                echo "# libvirt $ENV_LIBVIRT_URI: $(env_libvirt_describe)"
        fi
}

# A fresh container id (unique even when called in subshells).
it_id() {
        echo "it-$BASHPID-$(date +%s%N | tail -c 10)"
}

# srun ID SPEC: `ctr run --rm --config SPEC` under $RUNTIME.
srun() {
        ectr run --rm --runtime "$RUNTIME" --config "$2" "$1"
}

# crun [ctr run options...] -- COMMAND...: `ctr run --rm` of the test image
# under $RUNTIME with a fresh id; stdin from /dev/null unless redirected.
crun() {
        local opts=()
        while [ $# -gt 0 ] && [ "$1" != -- ]; do
                opts+=("$1")
                shift
        done
        shift
        ectr run --rm --runtime "$RUNTIME" "${opts[@]}" "$TEST_IMAGE" "$(it_id)" "$@"
}

pass() {
        IT_CHECKS=$((IT_CHECKS + 1))
        echo "ok   - $*"
}

fail() {
        IT_CHECKS=$((IT_CHECKS + 1))
        IT_FAILURES=$((IT_FAILURES + 1))
        echo "FAIL - $*"
}

# expect_eq DESC EXPECTED ACTUAL
expect_eq() {
        if [ "$2" = "$3" ]; then
                pass "$1"
        else
                fail "$1: expected '$2', got '$3'"
        fi
}

# expect_match DESC REGEX ACTUAL
expect_match() {
        if [[ $3 =~ $2 ]]; then
                pass "$1"
        else
                fail "$1: '$3' does not match /$2/"
        fi
}

# expect_no_match DESC REGEX ACTUAL
expect_no_match() {
        if [[ $3 =~ $2 ]]; then
                fail "$1: '$3' matches /$2/"
        else
                pass "$1"
        fi
}

# out_rc VAR_OUT VAR_RC COMMAND...: runs COMMAND (stdin /dev/null), stores
# its combined output (CRs stripped) and exit status.
out_rc() {
        local __o
        # NULs (a pty's output may carry some) would upset bash: drop them.
        __o=$( { "${@:3}" </dev/null 2>&1 && echo 0 >"$IT_TMP/rc" || echo $? >"$IT_TMP/rc"; } |
                tr -d '\0')
        printf -v "$1" '%s' "${__o//$'\r'/}"
        printf -v "$2" '%s' "$(cat "$IT_TMP/rc")"
}

# out_ok VAR DESC COMMAND...: out_rc COMMAND into VAR, and the check DESC that
# it exited 0 with some output. For values compared afterwards: a failed
# command's message is no value (two equal errors would compare equal).
out_ok() {
        local __rc
        out_rc "$1" __rc "${@:3}"
        if [ "$__rc" = 0 ] && [ -n "${!1}" ]; then
                pass "$2"
        else
                fail "$2: exit $__rc: ${!1}"
        fi
}

# wait_until TIMEOUT_S COMMAND...: runs COMMAND every 0.1s until it
# succeeds, for at most TIMEOUT_S seconds of wall time (however long each
# run takes).
wait_until() {
        local end=$((${EPOCHREALTIME/./} + $1 * 1000000))
        shift
        while :; do
                "$@" >/dev/null 2>&1 && return 0
                [ "${EPOCHREALTIME/./}" -lt "$end" ] || return 1
                sleep 0.1
        done
}

# outputs_nothing COMMAND...: true when COMMAND prints nothing (for
# wait_until: `wait_until 15 test -z "$(cmd)"` would run cmd once, before
# the wait).
outputs_nothing() {
        [ -z "$("$@" 2>/dev/null)" ]
}

# task_status ID: the STATUS column of `ctr task ls` for ID.
task_status() {
        ectr tasks ls 2>/dev/null | awk -v id="$1" '$1 == id { print $3 }'
}

# task_is ID STATUS: true when the task's status is STATUS (for wait_until).
task_is() {
        [ "$(task_status "$1")" = "$2" ]
}

# no_shim_for ID: true when no shim process serves ID (for wait_until).
no_shim_for() {
        [ -z "$(env_shim_pid "$1")" ]
}

# it_spec ID ARGS_JSON [JQ_FILTER]: writes a full OCI spec for
# `ctr run --config` (containerd's default spec, the test image's rootfs copied
# to a private dir, this environment's cgroup path), edited by JQ_FILTER.
# Prints the spec's path.
it_spec() {
        local id=$1 args=$2 filter=${3:-.} dir
        dir=$IT_TMP/bundle-$id
        mkdir -p "$dir"
        cp -a "$ENV_ROOTFS" "$dir/rootfs"
        ectr oci spec |
                jq --arg root "$dir/rootfs" --arg cg "/$ENV_NS/$id" --argjson args "$args" \
                        '.root = {path: $root, readonly: false} | .linux.cgroupsPath = $cg
                         | .process.args = $args | .process.terminal = false
                         | .process.env = ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]' |
                jq "$filter" >"$dir/config.json"
        echo "$dir/config.json"
}

# ---- CRI helpers (IT_CRI=1) ----

# it_pod FILE [JQ ARGS...] FILTER: a pod description (see env_pod_json; $img
# is the CRI test image) under $IT_TMP/FILE; prints its path.
it_pod() {
        local f=$IT_TMP/$1
        shift
        env_pod_json "$f" "$@"
        echo "$f"
}

# pod_netns IP: the CRI netns bind mount whose namespace holds IP.
pod_netns() {
        local f addrs
        # (output captured first: with pipefail, `ip | grep -q` can fail when
        # grep's early exit leaves ip a SIGPIPE)
        for f in "$ENV_STATE"/io.containerd.grpc.v1.cri/netns/*; do
                addrs=$(nsenter --net="$f" ip -4 -o addr show 2>/dev/null) || continue
                if grep -qF " $1/" <<<"$addrs"; then
                        echo "$f"
                        return 0
                fi
        done
        return 0
}

# istio_rules NETNS [4|6]: Istio's sidecar-mode nat rules for one family,
# ahead of everything else in PREROUTING and OUTPUT (where its CNI plugin
# puts them), with the VM interface rerouted as
# istio.io/reroute-virtual-interfaces: us-tap0 does. The proxy runs as uid
# 1337 and dials inbound connections from 127.0.0.6 / ::6.
istio_rules() {
        local restore=iptables-restore
        [ "${2:-4}" != 6 ] || restore=ip6tables-restore
        istio_rules_text "${2:-4}" | nsenter --net="$1" "$restore" --noflush
}

# istio_rules_text [4|6]: istio_rules's input for iptables-restore.
istio_rules_text() {
        local lo=127.0.0.1/32 from=127.0.0.6/32
        if [ "${1:-4}" = 6 ]; then
                lo=::1/128 from=::6/128
        fi
        cat <<EOF
*nat
:ISTIO_INBOUND - [0:0]
:ISTIO_IN_REDIRECT - [0:0]
:ISTIO_OUTPUT - [0:0]
:ISTIO_REDIRECT - [0:0]
-A ISTIO_INBOUND -p tcp --dport 15008 -j RETURN
-A ISTIO_INBOUND -p tcp --dport 15090 -j RETURN
-A ISTIO_INBOUND -p tcp --dport 15021 -j RETURN
-A ISTIO_INBOUND -p tcp --dport 15020 -j RETURN
-A ISTIO_INBOUND -p tcp -j ISTIO_IN_REDIRECT
-A ISTIO_IN_REDIRECT -p tcp -j REDIRECT --to-ports 15006
-A ISTIO_OUTPUT -s $from -o lo -j RETURN
-A ISTIO_OUTPUT ! -d $lo -o lo -p tcp -m owner --uid-owner 1337 -j ISTIO_IN_REDIRECT
-A ISTIO_OUTPUT -o lo -m owner ! --uid-owner 1337 -j RETURN
-A ISTIO_OUTPUT -m owner --uid-owner 1337 -j RETURN
-A ISTIO_OUTPUT -d $lo -j RETURN
-A ISTIO_OUTPUT -j ISTIO_REDIRECT
-A ISTIO_REDIRECT -p tcp -j REDIRECT --to-ports 15001
-I PREROUTING 1 -p tcp -j ISTIO_INBOUND
-I PREROUTING 1 -i us-tap0 -j ISTIO_REDIRECT
-I OUTPUT 1 -p tcp -j ISTIO_OUTPUT
COMMIT
EOF
}

# kind_pod KIND: sets HANDLER and ANNOTATIONS (JSON) for a pod of KIND:
# runc (containerd's runc handler, the reference), container or sandbox.
kind_pod() {
        case $1 in
        runc) HANDLER=runc ANNOTATIONS='{}' ;;
        container) HANDLER=unishim ANNOTATIONS='{}' ;;
        sandbox) HANDLER=unishim ANNOTATIONS='{"unishim.io/isolation": "sandbox"}' ;;
        *) return 1 ;;
        esac
}

# pod_refused NAME POD_FILE: `unishimctl run POD_FILE` (pod NAME) must be
# refused by RunPodSandbox, leaving nothing behind: no pod, shim, mount,
# cgroup, process, netns or IP. Sets ERR to unishimctl's message.
pod_refused() {
        local name=$1 out rc
        out_rc out rc ectl run "$2"
        ERR=$out
        [ "$rc" != 0 ] && pass "$name: RunPodSandbox refused" || fail "$name: pod ran (rc $rc): $out"
        expect_match "$name: the error comes from RunPodSandbox" "RunPodSandbox" "$out"
        expect_eq "$name: no pod listed" "" "$(ectl ps -q)"
        expect_eq "$name: no shim left" "" "$(env_shim_pids)"
        expect_eq "$name: no mount left" "" "$(env_mounts)"
        expect_eq "$name: no cgroup left" "" "$(find /sys/fs/cgroup/*/"$ENV_POD_CGROUP" -mindepth 1 -type d 2>/dev/null || true)"
        expect_eq "$name: no process in the pods' cgroups" "" "$(env_cgroup_pids)"
        expect_eq "$name: no netns bind mount" "" "$(ls -A "$ENV_STATE/io.containerd.grpc.v1.cri/netns" 2>/dev/null || true)"
        expect_eq "$name: no IP left allocated" "" "$(ls "$ENV_STATE/cni/ipam/$ENV_CNI_NET" 2>/dev/null | grep -v -e lock -e last_reserved || true)"
}

# log_has LINE COMMAND...: COMMAND prints LINE (for wait_until).
log_has() {
        local line=$1 out
        shift
        out=$("$@" 2>/dev/null) || true
        grep -qxF -- "$line" <<<"$out"
}

# pod_id NAME: the full id of the ready pod NAME ("" if none).
pod_id() {
        ectl inspect "$1" 2>/dev/null | awk '$1 == "pod" { print $2; exit }'
}

# pod_ip NAME: the pod's IP (PodSandboxStatus).
pod_ip() {
        ectl inspect "$1" 2>/dev/null | awk '$1 == "pod" { for (i = 1; i < NF; i++) if ($i == "ip") print $(i + 1); exit }'
}

# ctr_id POD NAME: the id of container NAME of POD.
ctr_id() {
        ectl inspect "$1" 2>/dev/null | awk -v n="$2" '$1 == "container" && $4 == n { print $2; exit }'
}

# run_pod NAME HANDLER ANNOTATIONS EXTRA CONTAINERS: runs pod NAME through
# unishimctl ({name, runtime_handler, annotations, containers} + EXTRA, all
# JSON but the first two) and checks that it ran; records it in PODS and
# IDS for the test's teardown. Leaves the run's output and exit code in
# out and rc.
run_pod() {
        local f
        f=$(it_pod "$1.json" --arg n "$1" --arg h "$2" --argjson a "$3" --argjson x "$4" --argjson c "$5" \
                '{name: $n, runtime_handler: $h, annotations: $a, containers: $c} + $x')
        out_rc out rc ectl run "$f"
        expect_eq "run pod $1 ($2)" 0 "$rc"
        [ "$rc" = 0 ] || echo "# $out"
        PODS+=("$1")
        IDS+=("$(pod_id "$1" || true)")
}

# early_term_round NAME HANDLER ANNOTATIONS GRACE: a pod of busybox top
# that unishimctl stops with GRACE seconds of grace as soon as
# StartContainer answered, in the same process, as a kubelet does for a pod
# deleted while it starts. top exits 143 by its own TERM handler; a TERM
# lost between its exec and its sigaction leaves it to the KILL at the end
# of the grace (137), or, with a grace beyond ectl's hang guard (240 s
# here), fails the run. Records the pod in PODS and IDS; sets ET_RC and
# ET_OUT (the run's exit code and output) and ET_STATE (the container's
# "state":"...","exit_code":N, or the whole status when it has none).
early_term_round() {
        local f st src
        f=$(it_pod "$1.json" --arg n "$1" --arg h "$2" --argjson a "$3" \
                '{name: $n, runtime_handler: $h, annotations: $a,
                  containers: [{name: "top", image: $img, command: ["top"]}]}')
        CTR_TIMEOUT=240 out_rc ET_OUT ET_RC ectl run --stop-after-start "$4" "$f"
        IDS+=("$(pod_id "$1" || true)")
        PODS+=("$1")
        out_rc st src ectl status "$1" -c top
        ET_STATE=$(grep -o '"state":"[A-Za-z]*","exit_code":[0-9]*' <<<"$st" || echo "$st")
}

# early_term_rounds LABEL HANDLER ANNOTATIONS GRACE ROUNDS [report]: ROUNDS
# early_term_round's, pods top-LABEL-1...; each checked (the run returns 0,
# top exited 143), or with "report" only printed. ET_LOST: how many rounds
# lost the TERM.
early_term_rounds() {
        local i
        ET_LOST=0
        for i in $(seq "$5"); do
                early_term_round "top-$1-$i" "$2" "$3" "$4"
                [[ $ET_STATE = '"state":"Exited","exit_code":143' ]] || ET_LOST=$((ET_LOST + 1))
                if [ "${6:-}" = report ]; then
                        echo "# $1 round $i: run $ET_RC, $ET_STATE"
                        continue
                fi
                expect_eq "$1 round $i: run with StopContainer right after StartContainer" 0 "$ET_RC"
                [ "$ET_RC" = 0 ] || echo "# $ET_OUT"
                [[ $ET_STATE = '"state":"Exited","exit_code":143' ]] &&
                        pass "$1 round $i: top ended by its own TERM handler (143)" ||
                        fail "$1 round $i: top after the stop (the TERM was lost?): $ET_STATE"
        done
}

# ---- mount propagation (test-cri-propagation.sh, test-sandbox-propagation.sh) ----

# prop_shared_dirs DIR NAME...: DIR/NAME, each a shared mount point (a bind
# of itself), for volumes whose propagation is checked.
prop_shared_dirs() {
        local d=$1 v
        shift
        for v in "$@"; do
                mkdir -p "$d/$v"
                mount --bind "$d/$v" "$d/$v"
                mount --make-shared "$d/$v"
        done
}

# prop_unmount_tmp: every mount under the test's temp dir, deepest first:
# the test's shared mount points and what propagated onto them (an
# IT_CLEANUP_HOOK).
prop_unmount_tmp() {
        local mp
        for mp in $(awk -v d="$IT_TMP/" 'index($5, d) == 1 { print $5 }' /proc/self/mountinfo | sort -r); do
                umount -l "$mp" 2>/dev/null || true
        done
}

# prop_host_mount DIR: a tmpfs on DIR/sub holding the file f ("from-host").
prop_host_mount() {
        mkdir -p "$1/sub"
        mount -t tmpfs -o size=1m "h2c-$$" "$1/sub"
        echo from-host >"$1/sub/f"
}

# prop_in_ctr NAME COMMAND: sh -c COMMAND in the pod's container app; its
# output.
prop_in_ctr() {
        ectl exec "$1" -c app -- sh -c "$2" </dev/null 2>&1 || true
}

# prop_mount_inside NAME VOLUME: mounts a tmpfs at /VOLUME/in inside the
# pod's container app with the file f ("from-VOLUME"); "mounted" when done.
prop_mount_inside() {
        prop_in_ctr "$1" "mkdir -p /$2/in && mount -t tmpfs -o size=1m in-$2 /$2/in &&
                echo from-$2 >/$2/in/f && echo mounted"
}

# pod_shim_pid POD_ID: the shim serving the pod: the containerd-shim-* process
# of this env with -id POD_ID (the short-lived `start` call is gone by then).
pod_shim_pid() {
        local d a
        for d in /proc/[0-9]*; do
                mapfile -d '' -t a 2>/dev/null <"$d/cmdline" || continue
                [[ ${a[0]:-} = *containerd-shim-* ]] || continue
                _env_has "$ENV_ADDR" "${a[@]}" || continue
                _env_has "$1" "${a[@]}" || continue
                echo "${d#/proc/}"
                return 0
        done
        return 0
}

# no_pod_shim POD_ID: for wait_until.
no_pod_shim() {
        [ -z "$(pod_shim_pid "$1")" ]
}

# pod_leftovers ID...: everything of these pods/containers still on the
# machine: shim processes, mounts under the env dirs, cgroup dirs, netns
# mounts of the pod. Empty when clean.
pod_leftovers() {
        local id
        for id in "$@"; do
                [ -n "$id" ] || continue
                local s
                s=$(pod_shim_pid "$id")
                [ -n "$s" ] && echo "shim $s of $id"
                env_mounts | grep -F -- "$id" | sed 's/^/mount /'
                find /sys/fs/cgroup/*/"$ENV_NS" -type d -name "$id" 2>/dev/null | sed 's/^/cgroup /'
        done
        return 0
}

# netns_mounts: the pod netns bind mounts of this environment.
netns_mounts() {
        env_mounts | grep -F /netns/ || true
}

it_finish() {
        echo "# $IT_CHECKS checks, $IT_FAILURES failed (runtime $RUNTIME)"
        [ "$IT_FAILURES" = 0 ]
}

# ---- sandbox pods (unishim.io/isolation: sandbox: a QEMU microvm) ----

# rss_kib PID: a process's resident memory, KiB (for QEMU: the guest RAM
# it backs, a shared or template memfd's pages included).
rss_kib() {
        awk '$1 == "VmRSS:" { print $2 }' "/proc/$1/status"
}
# rss_below PID KIB: for wait_until.
rss_below() {
        local v
        v=$(rss_kib "$1") && [ -n "$v" ] && [ "$v" -lt "$2" ]
}

# sandbox_qemu_pid POD_ID: the qemu-system-x86_64 of the sandbox pod: its
# command line has `-name unishim-<id>[,...]`. Empty when none.
sandbox_qemu_pid() {
        local d a x
        for d in /proc/[0-9]*; do
                mapfile -d '' -t a 2>/dev/null <"$d/cmdline" || continue
                [[ ${a[0]:-} = *qemu-system-x86_64* ]] || continue
                for x in "${a[@]}"; do
                        if [[ $x = "unishim-$1" || $x = "unishim-$1,"* ]]; then
                                echo "${d#/proc/}"
                                return 0
                        fi
                done
        done
        return 0
}

# sandbox_procs ID...: "pid cmdline" of every qemu-system-x86_64 or virtiofsd
# process of one of the ids (QEMU: -name unishim-<id> on its command line;
# virtiofsd, whose share is at the same path for every pod: the pod's VM
# cgroup, which names the id, or a source under /run/unishim/<ns>/<id>/).
sandbox_procs() {
        local d a args first id cg
        for d in /proc/[0-9]*; do
                mapfile -d '' -t a 2>/dev/null <"$d/cmdline" || continue
                first=${a[0]:-}
                [[ $first = *qemu-system-x86_64* || $first = *virtiofsd* ]] || continue
                args="${a[*]} "
                cg=
                [[ $first = *virtiofsd* ]] && cg=$(cat "$d/cgroup" 2>/dev/null)
                for id in "$@"; do
                        [ -n "$id" ] || continue
                        if [[ $args = *"unishim-$id"* || $args = *"/run/unishim/"*"/$id/"* || $cg = *"$id"* ]]; then
                                echo "${d#/proc/} $args"
                                break
                        fi
                done
        done
        return 0
}

# sandbox_net_namespaces: one path per distinct network namespace on the
# machine (of any process, and the netns bind mounts of this environment).
sandbox_net_namespaces() {
        local d ino
        declare -A seen=()
        for d in /proc/[0-9]*/ns/net "$ENV_STATE"/io.containerd.grpc.v1.cri/netns/* /var/run/netns/*; do
                ino=$(stat -L -c %i "$d" 2>/dev/null) || continue
                [ -n "${seen[$ino]:-}" ] && continue
                seen[$ino]=1
                echo "$d"
        done
        return 0
}

# sandbox_taps: the network namespaces that still have a us-tap0 (netplumb's
# tap of a sandbox pod), as "tap in NS_PATH". Other environments' sandbox pods
# on the machine would show too: call it only when none of ours should run
# and compare with sandbox_taps_before (taken at setup).
sandbox_taps() {
        local ns
        for ns in $(sandbox_net_namespaces); do
                nsenter --net="$ns" ip -o link show us-tap0 >/dev/null 2>&1 && echo "tap in $ns"
        done
        return 0
}

# sandbox_uid_slots: the uid range slots (shim/sandbox/idmap.h) whose file
# no live pod's state dir records, one "uid-slot N" line each: a pod gone
# without giving its range back. (A pod starting right now shows for a
# moment, between taking its slot and recording it: wait for an empty list.)
sandbox_uid_slots() {
        local f n
        for f in /run/unishim/.uid-slots/*; do
                [ -e "$f" ] || continue
                n=${f##*/}
                grep -qsx "$n" /run/unishim/*/*/uid-slot || echo "uid-slot $n"
        done
        return 0
}

# sandbox_leftovers ID...: everything of these sandbox pods still on the
# machine, one line each: pod_leftovers (shim, env mounts, cgroup dirs),
# QEMU/virtiofsd processes, /run/unishim/<namespace>/<id>, mounts under
# it, uid range slots no pod holds. Empty when clean. (Taps: sandbox_taps.)
sandbox_leftovers() {
        local id d
        pod_leftovers "$@"
        sandbox_uid_slots
        sandbox_procs "$@" | sed 's/^/process /'
        for id in "$@"; do
                [ -n "$id" ] || continue
                for d in /run/unishim/*/"$id"; do
                        [ -e "$d" ] && echo "dir $d"
                done
                awk -v id="/$id/" 'index($5, "/run/unishim/") == 1 && index($5 "/", id) { print "mount " $5 }' /proc/self/mountinfo
                find /sys/fs/cgroup/ -maxdepth 6 -type d -name "*$id*" 2>/dev/null | sed 's/^/cgroup /'
        done
        return 0
}

# sandbox_path_template: true when the env's sandbox pods take the
# VM-template path (the default; UNISHIM_TEST_SANDBOX_PATH=cold is the
# other, tests/env/lib.sh): 9p, an image with 9p, no virtiofsd, most pods
# restored.
sandbox_path_template() { [ "$ENV_SANDBOX_PATH" = template ]; }

# sandbox_guest_dir: the guest image the env's CRI sandbox pods boot (the
# template path's 9p image, else the cold path's cloud image).
sandbox_guest_dir() {
        if sandbox_path_template; then
                [ -n "${ENV_9P_IMAGE:-}" ] || env_9p_image || return 1
                echo "$ENV_9P_IMAGE"
        else
                env_cloud_image
        fi
}

# not_checked REASON: says that a check is left out, and why (never a pass).
not_checked() { echo "# not checked: $*"; }

# sandbox_9p_image: GEN= the image with 9p (env_9p_image: built now if
# missing, its time printed). A build that fails fails the test.
sandbox_9p_image() {
        local t0
        t0=$(date +%s.%N)
        if ! env_9p_image; then
                echo "FAIL: $ENV_9P_ERR"
                exit 1
        fi
        GEN=$ENV_9P_IMAGE
        [ "$ENV_9P_BUILT" = 0 ] || echo "# built the generic guest image in $(echo "$(date +%s.%N) - $t0" | bc | cut -c1-6) s ($GEN)"
}

# sandbox_volume_pod NAME VOLUME: a pod of the unishim-sandbox handler
# (sandbox by default), one container of the test image sleeping with the
# host dir VOLUME at /data; prints the file (it_pod).
sandbox_volume_pod() {
        it_pod "$1.json" --arg n "$1" --arg v "$2" '{name: $n, runtime_handler: "unishim-sandbox",
                containers: [{name: "app", image: $img, command: ["sleep", "3600"],
                              mounts: [{host_path: $v, container_path: "/data"}]}]}'
}

# run_volume_pod NAME VOLUME DESC: runs sandbox_volume_pod NAME with the
# host dir VOLUME through unishimctl and checks that it ran (DESC says
# how); T: how long the run took, in seconds. Leaves out and rc.
run_volume_pod() {
        local f t0
        f=$(sandbox_volume_pod "$1" "$2")
        t0=$(date +%s.%N)
        out_rc out rc ectl run "$f"
        T=$(echo "$(date +%s.%N) - $t0" | bc)
        expect_eq "run $1 ($3)" 0 "$rc"
        [ "$rc" = 0 ] || echo "# $out"
}

# sandbox_config_save: keeps the unishim-sandbox handler's config (the
# env's) in $IT_TMP/sandbox-config.json, for a test that edits it for a
# pod; sandbox_config_restore puts it back (the config is read when a pod's
# first task is created: the next pod gets the env's).
sandbox_config_save() { cp "$ENV_SANDBOX_CONFIG" "$IT_TMP/sandbox-config.json"; }
sandbox_config_restore() { cp "$IT_TMP/sandbox-config.json" "$ENV_SANDBOX_CONFIG"; }

# sandbox_virtiofs_config: both sandbox handlers' configs (unishim-sandbox's
# and unishim's) on the cold path's settings, virtio-fs, templates off, the
# stock cloud image, for the next pod: what a check of virtiofsd needs on
# the default (template) path; sandbox_virtiofs_restore puts the env's
# back once that pod runs (each pod reads its handler's config when its
# first task is created).
sandbox_virtiofs_config() {
        local f
        for f in "$ENV_SANDBOX_CONFIG" "$ENV_UNISHIM_CONFIG"; do
                cp "$f" "$IT_TMP/${f##*/}.env"
                env_sandbox_settings cold "$IT_TMP/${f##*/}.env" >"$f"
        done
}
sandbox_virtiofs_restore() {
        local f
        for f in "$ENV_SANDBOX_CONFIG" "$ENV_UNISHIM_CONFIG"; do
                cp "$IT_TMP/${f##*/}.env" "$f"
        done
}

# snapshot_upper_stat PATH: "uid:gid mode" of PATH in a snapshot's upper
# dir (where a container's writes to its rootfs land on the host).
snapshot_upper_stat() {
        find "$ENV_ROOT/io.containerd.snapshotter.v1.overlayfs/snapshots" -mindepth 3 -maxdepth 3 \
                -path "*/fs/$1" -printf '%U:%G %m\n' 2>/dev/null
}

# pids_gone PID...: none of them runs (a zombie counts as gone); for
# wait_until.
pids_gone() {
        local p
        for p in "$@"; do
                [ -e "/proc/$p" ] && ! grep -q '^State:.*Z' "/proc/$p/status" 2>/dev/null && return 1
        done
        return 0
}

# host_kernel: the host's kernel release (a sandbox pod must show another).
host_kernel() {
        uname -r
}

# events_start FILE: captures `ctr events` (all namespaces) into FILE in the
# background (bounded: 240 s); EVENTS_PID is its pid (events_stop).
events_start() {
        timeout 240 ctr -a "$ENV_ADDR" events >"$1" 2>&1 &
        EVENTS_PID=$!
        # Subscribed once an event of our own shows: a namespace made and
        # removed, again until one arrives (a loaded machine may start ctr
        # late, and an event before its subscription is not replayed).
        local probe=events-ready-$$-$RANDOM
        wait_until 60 _events_seen "$1" "$probe" ||
                echo "# events_start: ctr events showed nothing within 60 s"
}

# event_seen TOPIC ID FILE: the captured events have one of TOPIC for
# container ID (for wait_until). Never `| grep -q` on events: under
# pipefail its exit at the first match kills the grep before it with
# SIGPIPE once there is more than one write's worth of matching lines (an
# OOM-killed container of the container kind can raise dozens), and the
# pipeline fails.
event_seen() {
        grep -F "$1" "$3" 2>/dev/null | grep -F "\"container_id\":\"$2\"" >/dev/null
}

_events_seen() {
        grep -qF "$2" "$1" && return 0
        CTR_TIMEOUT=10 ectr namespaces create "$2" >/dev/null 2>&1 || true
        CTR_TIMEOUT=10 ectr namespaces remove "$2" >/dev/null 2>&1 || true
        grep -qF "$2" "$1"
}

events_stop() {
        [ -n "${EVENTS_PID:-}" ] || return 0
        kill "$EVENTS_PID" 2>/dev/null || true
        wait "$EVENTS_PID" 2>/dev/null || true
        EVENTS_PID=
}

# event_exit_status ID FILE: exit_status of the last /tasks/exit event of
# container ID in the captured events (protobuf JSON omits a 0 status); ""
# when there is none. This is what the CRI's ContainerStatus.exit_code reports.
event_exit_status() {
        local ev
        ev=$(grep -F '/tasks/exit' "$2" | grep -F "\"container_id\":\"$1\"" | tail -n1)
        [ -n "$ev" ] || return 0
        if [[ $ev =~ \"exit_status\":([0-9]+) ]]; then
                echo "${BASH_REMATCH[1]}"
        else
                echo 0
        fi
}

# ctr_state POD NAME: the CRI state of container NAME of POD (inspect).
ctr_state() {
        ectl inspect "$1" 2>/dev/null | awk -v n="$2" '$1 == "container" && $4 == n { print $6; exit }'
}

# ---- vm pods (unishim.io/isolation: vm: a libvirt VM from the image's disk) ----

# vm_disk_image DIR NAME: packs DIR (holding disk/...) as a containerDisk
# image and pushes it to the env's registry; prints its CRI name.
vm_disk_image() {
        local dir=$1 name=$2 out
        out=$(mktemp -d "$IT_TMP/img.XXXXXX")
        (
                . "$UNISHIM_SOURCE_DIR/tests/env/oci-image.sh"
                oci_image_tar "$dir" "docker.io/unishim/$name:1" '{}' "test disk" "$out/image.tar" \
                        --owner=0 --group=0
        )
        ectr images import --no-unpack "$out/image.tar" >/dev/null
        ectr images tag --force "docker.io/unishim/$name:1" "$ENV_REGISTRY/unishim/$name:1" >/dev/null
        env_nsenter ctr -a "$ENV_ADDR" -n "$ENV_NS" images push --plain-http \
                "$ENV_REGISTRY/unishim/$name:1" >/dev/null
        echo "$ENV_REGISTRY/unishim/$name:1"
}

# vm_blank_image: a containerDisk whose disk boots nothing (SeaBIOS finds no
# bootable disk and waits): a vm pod without the minutes of a boot.
vm_blank_image() {
        local d=$IT_TMP/blank/disk
        mkdir -p "$d"
        qemu-img create -q -f qcow2 "$d/blank.qcow2" 16M
        chmod 644 "$d/blank.qcow2"
        vm_disk_image "$IT_TMP/blank" blank-disk
}

# vm_app_user_data BODY PORT: cloud-init user-data for the vm image: the
# guest serves BODY over HTTP on PORT (a socket-activated responder that
# cloud-init's last stage starts), and cloud-init leaves
# /run/unishim-user-data ("written-by-cloud-init").
vm_app_user_data() {
        cat <<EOF
#cloud-config
write_files:
  - path: /run/unishim-user-data
    content: written-by-cloud-init
  - path: /usr/local/bin/app-http
    permissions: '0755'
    content: |
      #!/bin/bash
      while read -r l && [ -n "\${l%\$'\\r'}" ]; do :; done
      printf 'HTTP/1.0 200 OK\\r\\nContent-Type: text/plain\\r\\n\\r\\n$1\\n'
runcmd:
  - [systemd-run, --unit=app-http, systemd-socket-activate, -l, '$2', --inetd, -a, /usr/local/bin/app-http]
EOF
}

# vm_state_leftovers [ID...]: what vm pods left on the host: their domains,
# libvirt logs, state dirs, and pod_leftovers' shims, mounts and cgroups;
# without IDs, the domains of pods that do not run now. And taps never
# moved into a pod's netns (usvm*: a running pod's tap is in its netns).
vm_state_leftovers() {
        local id d running virsh="virsh -c ${ENV_LIBVIRT_URI:-qemu:///system}"
        pod_leftovers "$@"
        for id in "$@"; do
                [ -n "$id" ] || continue
                $virsh list --all --name 2>/dev/null | grep -F -- "${id:0:12}" | sed 's/^/domain /'
                ls /var/log/libvirt/qemu/ 2>/dev/null | grep -F -- "${id:0:12}" | sed 's/^/libvirt log /'
                [ -e "/run/unishim/k8s.io/$id" ] && echo "state dir /run/unishim/k8s.io/$id"
        done
        if [ $# = 0 ]; then
                running=$(ectl ps -q 2>/dev/null | cut -c1-12)
                for d in $($virsh list --all --name 2>/dev/null | grep -E '^unishim-.*-[0-9a-f]{12}$' || true); do
                        grep -qxF -- "${d: -12}" <<<"$running" || echo "domain $d"
                done
        fi
        ip -br link 2>/dev/null | awk '$1 ~ /^usvm/ { print "tap " $1 }'
        return 0
}

# run_sandbox_sleep_pod NAME CONTAINER: run_pod NAME, a sandbox pod
# (handler unishim, unishim.io/isolation: sandbox) of one container,
# CONTAINER, of the test image sleeping for an hour.
run_sandbox_sleep_pod() {
        run_pod "$1" unishim '{"unishim.io/isolation": "sandbox"}' '{}' \
                "$(jq -cn --arg n "$2" --arg img "$CRI_TEST_IMAGE" '[{name: $n, image: $img, command: ["sleep", "3600"]}]')"
}

# volume_pod_checks NAME FS: the first checks of a running pod NAME of
# sandbox_volume_pod: `ps` lists it Ready, kind sandbox; exec's output and
# exit code; its rootfs and /data are mounts of the filesystems FS ("ROOT
# DATA", as /proc/mounts names them) in the guest; it reads its rootfs
# (/etc/passwd, the image's owners root's and 1000's). KERN: the guest's
# uname -r, for the caller's check of the kernel.
volume_pod_checks() {
        expect_match "ps: $1 runs, kind sandbox" "$1 +default +Ready +unishim-sandbox +sandbox" "$(ectl ps)"
        out_ok KERN "exec uname -r in $1" ectl exec "$1" -- uname -r
        out_rc out rc ectl exec "$1" -- sh -c 'echo out; echo err >&2; exit 3'
        expect_eq "exec in $1: exit code 3" 3 "$rc"
        expect_eq "exec in $1: its output" "$(printf 'out\nerr')" "$out"
        out_rc out rc ectl exec "$1" -- awk '$2 == "/" {r = $3} $2 == "/data" {d = $3} END {print r, d}' /proc/mounts
        expect_eq "$1's rootfs and volume mounts in the guest: $2" "$2" "$out"
        out_rc out rc ectl exec "$1" -- sh -c 'head -n1 /etc/passwd; stat -c "%u:%g" /bin/busybox /home/user'
        expect_eq "$1 reads its rootfs (/etc/passwd, owners root's and 1000's)" \
                "$(printf 'root:x:0:0:root:/root:/bin/sh\n0:0\n1000:1000')" "$out"
}
