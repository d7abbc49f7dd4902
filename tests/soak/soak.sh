#!/bin/bash
# Soak: SOAK_CYCLES (500) pod cycles through the CRI of a private containerd,
# mixing container and sandbox (QEMU microvm) pods with execs, stops, removals
# and failures, then a leak report of everything a pod leaves on the host.
#
# Cycle rule (cycle numbers 1..N, deterministic, no randomness):
#   c % 10 == 5   bogus:     a pod with unishim.io/isolation: bogus; its run
#                            must fail naming the annotation and leave nothing
#   c % 25 == 7   qemu-kill: a sandbox pod; exec; kill -9 of its QEMU; its
#                            container must be reported Exited, an exec must
#                            fail, and rm must work and leave nothing
#   other odd c   container: run, exec, rm (grace 0); nothing left
#   other even c  sandbox:   run, exec, stop (grace 0, the VM gone), rm;
#                            nothing left
# (the two special rules never coincide: 7 + 25k ends in 7 or 2). 12 cycles
# hold every kind: 1 C, 2 S, 3 C, 4 S, 5 bogus, 6 S, 7 qemu-kill, 8 S, ...;
# 500 hold 190 container, 240 sandbox, 50 bogus and 20 qemu-kill cycles.
#
# Two long-lived pods, one of each kind, run through all cycles; every cycle
# execs once into each (by c % 3: output + stderr, `exit 3`, `cat` of a
# missing file; on qemu-kill cycles an exec that times out after 1 s), and on
# c % 10 == 2 also an exec of a missing binary (in the background). Their
# shims' fd counts (and the sandbox pod's QEMU's and virtiofsd's) are sampled
# after a warm-up and after the cycles: they must not grow by more than
# SOAK_FD_SLACK (2); the report classes the new fds.
#
# The report (table on stdout, JSON in SOAK_REPORT, default
# <build>/soak/report.json) compares a census before the first pod with one
# after the last: processes of this environment (shims, qemu-system-x86_64,
# virtiofsd, container processes), zombies, the long-lived shims' fds and
# children, mounts under the env's dirs and under /run/unishim, the CRI netns
# bind mounts, us-tap0 taps in any netns, iptables UNISHIM-* chains in any
# surviving netns, cgroup dirs, /run/unishim/<namespace>/* state dirs, pod
# IPs, shim sockets, pods/containers/tasks, execs containerd failed to delete
# (its log: "Failed to delete exec process"), and df of /run (KiB, shown, not
# judged: /run is shared). Other environments may run beside this one: a
# machine-wide resource (state dirs, /run/unishim mounts, taps, chains) counts
# as leaked only when it is this environment's (its pod id is one this
# containerd created: from `run` or containerd's log; its netns is held by
# this environment's mounts or processes) or new in the host netns. The
# script exits non-zero when a cycle failed or any row leaked, and says which.
# Nothing here asserts a time: the waits are hang guards.
set -euo pipefail
SOAK_SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
. "$SOAK_SRC/../integration/lib.sh"
IT_CRI=1

CYCLES=${SOAK_CYCLES:-500}
FD_SLACK=${SOAK_FD_SLACK:-2}
if ! [[ $CYCLES =~ ^[1-9][0-9]*$ ]] || ! [[ $FD_SLACK =~ ^[0-9]+$ ]]; then
        echo "FAIL: SOAK_CYCLES must be a positive integer and SOAK_FD_SLACK a number"
        exit 1
fi
REPORT=${SOAK_REPORT:-$UNISHIM_BUILD_DIR/soak/report.json}
for b in qemu-system-x86_64 iptables-save ip6tables-save nsenter ip df find; do
        command -v "$b" >/dev/null || it_skip "$b not installed (make deps-runtime)"
done
it_setup
HOST_KERNEL=$(uname -r)
CRI_NETNS_DIR=$ENV_STATE/io.containerd.grpc.v1.cri/netns
T_START=$SECONDS
STARTED=$(date -u +%FT%TZ)

# ---- the process table: one pass over /proc, no forks ----

declare -A PT_PPID=() PT_STATE=() PT_COMM=() PT_ARGS=() PT_OWNER=()
# Pod and container ids this environment's containerd created (values: 1).
declare -A OUR_IDS=()

ptable() {
        PT_PPID=() PT_STATE=() PT_COMM=() PT_ARGS=()
        local d p line rest f a
        for d in /proc/[0-9]*; do
                p=${d#/proc/}
                { read -r line <"$d/stat"; } 2>/dev/null || continue
                rest=${line##*) }
                read -r -a f <<<"$rest"
                PT_STATE[$p]=${f[0]}
                PT_PPID[$p]=${f[1]}
                line=${line#*(}
                PT_COMM[$p]=${line%)*}
                a=()
                { mapfile -d '' -t a <"$d/cmdline"; } 2>/dev/null || true
                PT_ARGS[$p]="${a[*]:-}"
                # virtiofsd's command line names no pod (its share is at
                # /mnt in its own mount namespace): its VM cgroup does.
                if [ "${PT_COMM[$p]}" = virtiofsd ]; then
                        a=()
                        { mapfile -t a <"$d/cgroup"; } 2>/dev/null || true
                        PT_ARGS[$p]+=" cgroup ${a[*]:-}"
                fi
        done
}

# id_in_args ARGS: the pod id a QEMU (-name unishim-<id>) or virtiofsd
# (its cgroup, which ptable adds) names, if any.
id_in_args() {
        if [[ $1 =~ unishim-([0-9a-f]{64}) ]] || [[ $1 =~ /run/unishim/[^/\ ]+/([0-9a-f]{64}) ]] ||
                [[ $1 = *virtiofsd*" cgroup "* && $1 =~ /([0-9a-f]{64}) ]]; then
                echo "${BASH_REMATCH[1]}"
        fi
}

# ptable_owners: PT_OWNER[pid] = ours | foreign | host. Roots: this env's
# containerd, registry and shims (-address ENV_ADDR) are ours, every other
# containerd, docker-registry or containerd-shim-* is foreign; a process
# belongs to its nearest root ancestor, else to the host. A QEMU or virtiofsd
# naming one of our pod ids is ours even when orphaned.
ptable_owners() {
        PT_OWNER=()
        local -A root=()
        local p args first q n o cpid rpid id
        cpid=$(env_containerd_pid 2>/dev/null || true)
        rpid=$(env_registry_pid 2>/dev/null || true)
        for p in "${!PT_ARGS[@]}"; do
                args=${PT_ARGS[$p]}
                first=${args%% *}
                case $first in
                *containerd-shim*)
                        if [[ " $args " = *" -address $ENV_ADDR "* ]]; then root[$p]=ours; else root[$p]=foreign; fi
                        ;;
                containerd | */containerd | docker-registry | */docker-registry)
                        if [ "$p" = "$cpid" ] || [ "$p" = "$rpid" ]; then root[$p]=ours; else root[$p]=foreign; fi
                        ;;
                esac
        done
        for p in "${!PT_PPID[@]}"; do
                q=$p n=0 o=host
                while [ -n "$q" ] && [ "$q" -gt 1 ] && [ "$n" -lt 64 ]; do
                        if [ -n "${root[$q]:-}" ]; then
                                o=${root[$q]}
                                break
                        fi
                        q=${PT_PPID[$q]:-}
                        n=$((n + 1))
                done
                if [ "$o" = host ]; then
                        case ${PT_COMM[$p]} in
                        qemu-system-x86* | virtiofsd)
                                id=$(id_in_args "${PT_ARGS[$p]}")
                                [ -n "$id" ] && [ -n "${OUR_IDS[$id]:-}" ] && o=ours
                                ;;
                        esac
                fi
                PT_OWNER[$p]=$o
        done
}

# After ptable + ptable_owners: "pid args" of this env's processes of a kind.
our_shims() {
        local p
        for p in "${!PT_ARGS[@]}"; do
                [ "${PT_OWNER[$p]}" = ours ] && [[ ${PT_ARGS[$p]%% *} = *containerd-shim* ]] &&
                        [[ " ${PT_ARGS[$p]} " = *" -address $ENV_ADDR "* ]] &&
                        [[ " ${PT_ARGS[$p]} " != *" start "* ]] && echo "$p ${PT_ARGS[$p]:0:200}"
        done
        return 0
}
our_comm() { # COMM_GLOB
        local p
        for p in "${!PT_COMM[@]}"; do
                # shellcheck disable=SC2053
                [ "${PT_OWNER[$p]}" = ours ] && [[ ${PT_COMM[$p]} = $1 ]] && echo "$p ${PT_ARGS[$p]:0:200}"
        done
        return 0
}
# Container processes: in the env's cgroups, or below one of its shims
# (not QEMU, virtiofsd or a shim).
our_container_procs() {
        local p q
        declare -A seen=()
        for p in $(env_cgroup_pids); do
                seen[$p]=1
                echo "$p ${PT_COMM[$p]:-?} (in the env's cgroups)"
        done
        for p in "${!PT_PPID[@]}"; do
                [ -n "${seen[$p]:-}" ] && continue
                [ "${PT_OWNER[$p]}" = ours ] || continue
                case ${PT_COMM[$p]} in containerd* | docker-registry | qemu-system-x86* | virtiofsd) continue ;; esac
                # only below a shim, not containerd's own helpers (CNI plugins)
                q=${PT_PPID[$p]}
                while [ -n "$q" ] && [ "$q" -gt 1 ]; do
                        if [[ ${PT_ARGS[$q]:-} = *containerd-shim* ]]; then
                                echo "$p ${PT_COMM[$p]} (child of shim $q)"
                                break
                        fi
                        [[ ${PT_ARGS[$q]:-} = containerd* ]] && break
                        q=${PT_PPID[$q]:-}
                done
        done
        return 0
}
our_zombies() {
        local p pp
        for p in "${!PT_STATE[@]}"; do
                [ "${PT_STATE[$p]}" = Z ] || continue
                pp=${PT_PPID[$p]}
                [ "${PT_OWNER[$pp]:-}" = ours ] && echo "$p ${PT_COMM[$p]} (parent $pp ${PT_COMM[$pp]:-?})"
        done
        return 0
}
# children PID: the direct children of PID, "pid comm".
children() {
        local p
        for p in "${!PT_PPID[@]}"; do
                [ "${PT_PPID[$p]}" = "$1" ] && echo "$p ${PT_COMM[$p]}"
        done
        return 0
}
# procs_naming ID...: processes whose command line names one of the ids.
procs_naming() {
        local p id
        for p in "${!PT_ARGS[@]}"; do
                for id in "$@"; do
                        [ -n "$id" ] || continue
                        if [[ ${PT_ARGS[$p]} = *"$id"* ]]; then
                                echo "process $p ${PT_ARGS[$p]:0:160}"
                                break
                        fi
                done
        done
        return 0
}

# ---- per pod: what is left of it ----

# pod_left ID...: processes naming the ids, mounts, /run/unishim/<ns>/<id>
# dirs and cgroup dirs of these pods/containers. Empty when clean.
pod_left() {
        local id d
        ptable
        procs_naming "$@"
        for id in "$@"; do
                [ -n "$id" ] || continue
                awk -v id="$id" 'index($5, id) { print "mount " $5 }' /proc/self/mountinfo
                for d in /run/unishim/*/"$id" /sys/fs/cgroup/*/"$ENV_POD_CGROUP"/"$id" /sys/fs/cgroup/*/unishim/"$id"; do
                        [ -e "$d" ] && echo "dir $d"
                done
        done
        return 0
}
pod_clean() { [ -z "$(pod_left "$@")" ]; }

# ---- network namespaces (machine-wide), their taps and UNISHIM-* chains ----

# netns_census: "inode owner path" per distinct network namespace: of every
# process, held by an fd, or bind-mounted (nsfs). Owner: ours when this env's
# netns, one of its bind mounts, or a process of ours is in it or holds it;
# else foreign when another environment's (its mounts, processes); else host.
netns_census() {
        local -A own=() path=()
        local p l ino o m
        rank() { case $1 in ours) echo 3 ;; foreign) echo 2 ;; *) echo 1 ;; esac; }
        put() { # INODE OWNER PATH
                if [ -z "${own[$1]:-}" ] || [ "$(rank "$2")" -gt "$(rank "${own[$1]}")" ]; then
                        own[$1]=$2
                        [ -n "${path[$1]:-}" ] || path[$1]=$3
                fi
                [ -n "${path[$1]:-}" ] || path[$1]=$3
        }
        while read -r p l; do
                [[ $l =~ ^net:\[([0-9]+)\]$ ]] || continue
                ino=${BASH_REMATCH[1]}
                m=${p#/proc/}
                m=${m%%/*}
                put "$ino" "${PT_OWNER[$m]:-host}" "$p"
        done < <(find /proc/[0-9]*/ns/net -maxdepth 0 -printf '%p %l\n' 2>/dev/null
                find /proc/[0-9]*/fd -mindepth 1 -maxdepth 1 -lname 'net:*' -printf '%p %l\n' 2>/dev/null)
        while read -r ino m; do
                o=host
                case $m in
                "$ENV_STATE"/* | "/run/netns/$ENV_NETNS" | "/var/run/netns/$ENV_NETNS") o=ours ;;
                /run/netns/unishim-* | /var/run/netns/unishim-* | /run/unishim-*/*) o=foreign ;;
                esac
                put "$ino" "$o" "$m"
        done < <(awk '{ for (i = 7; i <= NF; i++) if ($i == "-") break;
                        if ($(i + 1) == "nsfs" && $4 ~ /^net:\[/) { gsub(/[^0-9]/, "", $4); print $4, $5 } }' /proc/self/mountinfo)
        for ino in "${!own[@]}"; do
                echo "$ino ${own[$ino]} ${path[$ino]}"
        done
        return 0
}

# census_net DIR: DIR/taps ("inode owner" of each netns with a us-tap0) and
# DIR/chains ("inode owner family: line" of each UNISHIM-* chain or jump).
census_net() {
        local dir=$1 ino o p f
        : >"$dir/taps"
        : >"$dir/chains"
        while read -r ino o p; do
                if nsenter --net="$p" ip -o link show us-tap0 >/dev/null 2>&1; then
                        echo "$ino $o" >>"$dir/taps"
                fi
                for f in iptables-save ip6tables-save; do
                        nsenter --net="$p" "$f" 2>/dev/null | grep -E '^:UNISHIM-|-j UNISHIM-' |
                                sed "s|^|$ino $o ${f%-save}: |" >>"$dir/chains" || true
                done
        done < <(netns_census)
        sort -u -o "$dir/taps" "$dir/taps"
        sort -u -o "$dir/chains" "$dir/chains"
}

# ---- census: a snapshot of everything countable, into directory $1 ----

census() {
        local dir=$1 ino o p f id
        mkdir -p "$dir"
        if [ -s "$ENV_LOG" ]; then
                while read -r id; do OUR_IDS[$id]=1; done < <(grep -oaE '[0-9a-f]{64}' "$ENV_LOG" | sort -u)
        fi
        ptable
        ptable_owners
        our_shims | sort -n >"$dir/shims"
        our_comm 'qemu-system-x86*' | sort -n >"$dir/qemu"
        our_comm virtiofsd | sort -n >"$dir/virtiofsd"
        our_container_procs | sort -n >"$dir/ctrprocs"
        our_zombies | sort -n >"$dir/zombies"
        env_mounts | sort >"$dir/mounts_env"
        awk 'index($5, "/run/unishim/") == 1 { print $5 }' /proc/self/mountinfo | sort >"$dir/mounts_unishim"
        ls -d /run/unishim/*/* 2>/dev/null | sort >"$dir/statedirs" || true
        ls -A "$CRI_NETNS_DIR" 2>/dev/null | sort >"$dir/netns_cri" || true
        census_net "$dir"
        {
                find /sys/fs/cgroup/*/"$ENV_POD_CGROUP" -mindepth 1 -type d 2>/dev/null || true
                if [ "${#OUR_IDS[@]}" -gt 0 ]; then
                        find /sys/fs/cgroup -maxdepth 6 -type d 2>/dev/null |
                                grep -F -f <(printf '%s\n' "${!OUR_IDS[@]}") || true
                fi
        } | sort -u >"$dir/cgroups"
        { ls "$ENV_STATE/cni/ipam/$ENV_CNI_NET" 2>/dev/null | grep -v -e lock -e last_reserved || true; } | sort >"$dir/ipam"
        {
                CTR_TIMEOUT=20 ectl ps -q 2>/dev/null | sed 's/^/pod /' || echo "pod ? (ps failed)"
                timeout -k 5 30 ctr -a "$ENV_ADDR" -n k8s.io containers ls -q 2>/dev/null | sed 's/^/container /' || echo "container ? (ctr failed)"
                timeout -k 5 30 ctr -a "$ENV_ADDR" -n k8s.io tasks ls -q 2>/dev/null | sed 's/^/task /' || echo "task ? (ctr failed)"
        } | sort >"$dir/cri"
        for id in "${!OUR_IDS[@]}"; do
                f=/run/containerd/s/$(printf '%s' "$ENV_ADDR/k8s.io/$id" | sha256sum | cut -d' ' -f1)
                if [ -e "$f" ]; then echo "$f (of $id)"; fi
        done | sort >"$dir/sockets"
        { grep -a 'Failed to delete exec process' "$ENV_LOG" 2>/dev/null || true; } |
                grep -oE 'exec process \\"[0-9a-f]+\\" for container \\"[0-9a-f]+' | tr -d '\\"' | sort >"$dir/exec_undeleted" || true
        df -k --output=used /run | tail -n1 | tr -d ' ' >"$dir/df_run"
        return 0
}

# ---- the rows of the report ----

ROWS=$IT_TMP/rows.tsv
: >"$ROWS"
# row WHAT BEFORE AFTER LEAKED JUDGED DETAIL
row() {
        local detail=${6//$'\t'/ }
        detail=${detail//$'\n'/; }
        printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" "$5" "$detail" >>"$ROWS"
}
count() { grep -c . "$1" 2>/dev/null || true; }
# new_items BEFORE AFTER: lines of AFTER not in BEFORE.
new_items() { comm -13 "$1" "$2" || true; }
# row_env WHAT FILE: an environment-only resource: every new item leaks.
row_env() {
        local items
        items=$(new_items "$B/$2" "$A/$2")
        row "$1" "$(count "$B/$2")" "$(count "$A/$2")" "$(grep -c . <<<"$items" || true)" 1 "$items"
}
# row_ids WHAT FILE: machine-wide paths /run/unishim/<ns>/<id>...: a new one
# leaks when <id> is one of ours.
row_ids() {
        local items l id ours="" foreign=0
        items=$(new_items "$B/$2" "$A/$2")
        while read -r l; do
                [ -n "$l" ] || continue
                id=$(cut -d/ -f5 <<<"$l")
                if [ -n "${OUR_IDS[$id]:-}" ]; then ours+="$l"$'\n'; else foreign=$((foreign + 1)); fi
        done <<<"$items"
        ours=${ours%$'\n'}
        local d=$ours
        [ "$foreign" -gt 0 ] && d+="${d:+; }($foreign new of other environments)"
        row "$1" "$(count "$B/$2")" "$(count "$A/$2")" "$(grep -c . <<<"$ours" || true)" 1 "$d"
}
# row_ns WHAT FILE: machine-wide "inode owner ..." lines: a line leaks when its
# netns is ours, or the host's and it is new.
row_ns() {
        local items
        items=$( {
                awk '$2 == "ours"' "$A/$2"
                new_items "$B/$2" "$A/$2" | awk '$2 == "host"'
        } | sort -u)
        row "$1" "$(count "$B/$2")" "$(count "$A/$2")" "$(grep -c . <<<"$items" || true)" 1 "$items"
}

fd_count() {
        local n
        n=$(ls "/proc/$1/fd" 2>/dev/null | wc -l) || true
        echo "${n:-0}"
}

# ---- cycles ----

declare -A N=([container]=0 [sandbox]=0 [bogus]=0 [qemu-kill]=0 [exec-long]=0 [exec-missing]=0)
declare -A NFAIL=([container]=0 [sandbox]=0 [bogus]=0 [qemu-kill]=0 [exec-long]=0 [exec-missing]=0)
declare -A FAILED_AT=([container]="" [sandbox]="" [bogus]="" [qemu-kill]="" [exec-long]="" [exec-missing]="")
BG_FILES=()
declare -A MS=([container]=0 [sandbox]=0 [bogus]=0 [qemu-kill]=0)

# cfail KIND CYCLE MESSAGE: one failed step of a cycle (printed: the first 10
# of each kind; all are counted and the cycles listed in the report).
cfail() {
        NFAIL[$1]=$((NFAIL[$1] + 1))
        FAILED_AT[$1]+=" $2"
        if [ "${NFAIL[$1]}" -le 10 ]; then
                echo "FAIL - cycle $2 ($1): ${3:0:600}"
        elif [ "${NFAIL[$1]}" = 11 ]; then
                echo "# (further $1 failures counted, not printed)"
        fi
}

cycle_kind() {
        local c=$1
        if ((c % 10 == 5)); then
                echo bogus
        elif ((c % 25 == 7)); then
                echo qemu-kill
        elif ((c % 2 == 1)); then
                echo container
        else
                echo sandbox
        fi
}

# pod_file NAME ISOLATION: a one-container pod (sleep) under this env. The
# long-lived pods' container must outlive the soak, which takes more than an
# hour on a loaded machine: a day.
pod_file() {
        it_pod "$1.json" --arg n "$1" --arg iso "$2" '{name: $n, runtime_handler: "unishim",
                annotations: {"unishim.io/isolation": $iso},
                containers: [{name: "app", image: $img, command: ["sleep", "86400"]}]}'
}

# start_pod KIND CYCLE NAME ISOLATION: run + inspect; sets POD_ID, CTR_ID;
# false (after a cfail) when the pod did not come up as asked.
start_pod() {
        local kind=$1 c=$2 name=$3 iso=$4 f out rc info
        POD_ID="" CTR_ID=""
        f=$(pod_file "$name" "$iso")
        out_rc out rc ectl run "$f"
        if [ "$rc" != 0 ]; then
                cfail "$kind" "$c" "run: exit $rc: $out"
                ectl rm --timeout 0 "$name" >/dev/null 2>&1 || true
                return 1
        fi
        POD_ID=$(head -n1 <<<"$out")
        OUR_IDS[$POD_ID]=1
        info=$(ectl inspect "$name" 2>&1) || true
        CTR_ID=$(awk '$1 == "container" && $4 == "app" { print $2; exit }' <<<"$info")
        [ -n "$CTR_ID" ] && OUR_IDS[$CTR_ID]=1
        if ! [[ $(head -n1 <<<"$info") =~ ^pod\ $POD_ID\ .*state\ Ready\ .*isolation\ $iso$ ]] ||
                ! [[ $info =~ name\ app\ state\ Running ]]; then
                cfail "$kind" "$c" "inspect: not a Ready $iso pod with a Running app: $info"
                return 1
        fi
        return 0
}

# exec_check KIND CYCLE POD: exec with stdout, stderr and exit 3.
exec_check() {
        local out rc
        out_rc out rc ectl exec "$3" -- sh -c "echo out-$2; echo err-$2 >&2; exit 3"
        if [ "$rc" != 3 ] || [[ $out != *out-$2* ]] || [[ $out != *err-$2* ]]; then
                cfail "$1" "$2" "exec: expected exit 3 with out-$2 and err-$2, got exit $rc: $out"
                return 1
        fi
        return 0
}

# rm_check KIND CYCLE NAME IDS...: rm (grace 0) works, nothing is left.
rm_check() {
        local kind=$1 c=$2 name=$3 out rc left
        shift 3
        out_rc out rc ectl rm --timeout 0 "$name"
        if [ "$rc" != 0 ]; then
                cfail "$kind" "$c" "rm: exit $rc: $out"
                return 1
        fi
        wait_until 30 pod_clean "$@" || true
        left=$(pod_left "$@")
        if [ -n "$left" ]; then
                cfail "$kind" "$c" "left after rm: $left"
                return 1
        fi
        return 0
}

cycle_container() {
        local c=$1 name=soak-$1
        start_pod container "$c" "$name" container || return 0
        exec_check container "$c" "$name" || true
        rm_check container "$c" "$name" "$POD_ID" "$CTR_ID" || true
}

cycle_sandbox() {
        local c=$1 name=soak-$1 out rc
        start_pod sandbox "$c" "$name" sandbox || return 0
        exec_check sandbox "$c" "$name" || true
        out_rc out rc ectl stop --timeout 0 "$name"
        if [ "$rc" != 0 ]; then
                cfail sandbox "$c" "stop: exit $rc: $out"
        else
                [[ $(ectl inspect "$name" 2>&1) =~ name\ app\ state\ Exited ]] ||
                        cfail sandbox "$c" "after stop: app not Exited: $(ectl inspect "$name" 2>&1)"
                vm_gone() { ptable && [ -z "$(procs_naming "unishim-$POD_ID")" ]; }
                wait_until 30 vm_gone || cfail sandbox "$c" "after stop: QEMU still runs: $(procs_naming "unishim-$POD_ID")"
        fi
        rm_check sandbox "$c" "$name" "$POD_ID" "$CTR_ID" || true
}

cycle_qemu_kill() {
        local c=$1 name=soak-$1 out rc q
        start_pod qemu-kill "$c" "$name" sandbox || return 0
        exec_check qemu-kill "$c" "$name" || true
        q=$(sandbox_qemu_pid "$POD_ID")
        if [ -z "$q" ]; then
                cfail qemu-kill "$c" "no qemu-system-x86_64 with -name unishim-$POD_ID"
        else
                kill -KILL "$q" || cfail qemu-kill "$c" "kill -9 of QEMU $q failed"
                app_exited() { [ "$(ctr_state "$name" app)" = Exited ]; }
                wait_until 60 app_exited ||
                        cfail qemu-kill "$c" "app not Exited after kill -9 of QEMU: $(ctr_state "$name" app)"
                out_rc out rc ectl exec "$name" -- true
                [ "$rc" != 0 ] || cfail qemu-kill "$c" "exec into the pod with a dead VM succeeded"
        fi
        rm_check qemu-kill "$c" "$name" "$POD_ID" "$CTR_ID" || true
}

# A refused pod leaves nothing: the env holds what it held before (the
# long-lived pods): pods, shims, netns bind mounts, IPs, cgroup dirs.
env_shape() {
        ptable
        ptable_owners
        echo "pods $(ectl ps -q 2>/dev/null | grep -c . || true)"
        echo "shims $(our_shims | grep -c . || true)"
        echo "netns $(ls -A "$CRI_NETNS_DIR" 2>/dev/null | grep -c . || true)"
        echo "ips $(ls "$ENV_STATE/cni/ipam/$ENV_CNI_NET" 2>/dev/null | grep -v -e lock -e last_reserved | grep -c . || true)"
        echo "cgroups $(find /sys/fs/cgroup/*/"$ENV_POD_CGROUP" -mindepth 1 -maxdepth 1 -type d 2>/dev/null | grep -c . || true)"
}
shape_is_base() { [ "$(env_shape)" = "$BASE_SHAPE" ]; }

cycle_bogus() {
        local c=$1 name=soak-$1 f out rc id=""
        f=$(pod_file "$name" bogus)
        out_rc out rc ectl run "$f"
        if [ "$rc" = 0 ]; then
                cfail bogus "$c" "a pod with unishim.io/isolation: bogus ran: $out"
                ectl rm --timeout 0 "$name" >/dev/null 2>&1 || true
                return 0
        fi
        [[ $out =~ RunPodSandbox.*annotation\ unishim\.io/isolation:.*\"bogus\" ]] ||
                cfail bogus "$c" "the error does not come from RunPodSandbox naming the annotation and the value: $out"
        if [[ $out =~ create\ task\ ([0-9a-f]{64}) ]]; then
                id=${BASH_REMATCH[1]}
                OUR_IDS[$id]=1
                wait_until 30 pod_clean "$id" || true
                [ -z "$(pod_left "$id")" ] || cfail bogus "$c" "left of the refused pod $id: $(pod_left "$id")"
        fi
        wait_until 30 shape_is_base || true
        [ "$(env_shape)" = "$BASE_SHAPE" ] ||
                cfail bogus "$c" "after the refused pod: $(env_shape | tr '\n' ' ')(expected $(tr '\n' ' ' <<<"$BASE_SHAPE"))"
}

# One exec into a long-lived pod, its kind chosen by the cycle: on
# c % 25 == 7 one that times out (-t 1 sleep 30), else by c % 3: output on
# both streams, `exit 3`, a command failing inside (cat of a missing file).
# Besides, on c % 10 == 2, an exec of a missing binary, in the background: a
# shim that does not settle a failed start holds its ExecSync until
# containerd's clean-up gives up (60 s) and leaks the exec's FIFOs (the soak
# section of docs/performance.md); run apart, that shows in the report
# without stalling the cycles.
exec_long() {
        local pod=$1 c=$2 out rc
        N[exec-long]=$((N[exec-long] + 1))
        ((c % 10 == 2)) && exec_missing_bg "$pod" "$c"
        if ((c % 25 == 7)); then
                out_rc out rc ectl exec "$pod" -t 1 -- sleep 30
                [ "$rc" != 0 ] || cfail exec-long "$c" "$pod: exec -t 1 sleep 30 did not time out"
        elif ((c % 3 == 0)); then
                out_rc out rc ectl exec "$pod" -- sh -c "echo out-$c; echo err-$c >&2"
                [ "$rc" = 0 ] && [[ $out = *out-$c* ]] && [[ $out = *err-$c* ]] ||
                        cfail exec-long "$c" "$pod: exec echo: exit $rc: $out"
        elif ((c % 3 == 1)); then
                out_rc out rc ectl exec "$pod" -- sh -c 'exit 3'
                [ "$rc" = 3 ] || cfail exec-long "$c" "$pod: exec exit 3: exit $rc: $out"
        else
                out_rc out rc ectl exec "$pod" -- cat /no/such/file
                [ "$rc" = 1 ] && [[ $out = */no/such/file* ]] ||
                        cfail exec-long "$c" "$pod: exec cat /no/such/file: exit $rc: $out"
        fi
        return 0
}
exec_missing_bg() { # POD CYCLE
        local f=$IT_TMP/missing-$2-$1
        N[exec-missing]=$((N[exec-missing] + 1))
        (
                t0=${EPOCHREALTIME/./}
                ectl exec "$1" -- /no/such/binary >"$f.out" 2>&1 </dev/null && rc=0 || rc=$?
                echo "$rc $(((${EPOCHREALTIME/./} - t0) / 1000))" >"$f.rc"
        ) &
        BG_FILES+=("$2 $1 $f")
}
# exec_missing_wait: waits for the background execs; each must have failed.
# Sets MISSING_MS (their ExecSync times, ms, sorted).
exec_missing_done() {
        local l
        for l in "${BG_FILES[@]}"; do [ -e "${l##* }.rc" ] || return 1; done
}
exec_missing_wait() {
        local c pod f rc ms
        # (each is bounded by ectl's timeout; polled, since bash forgets the
        # status of long-finished jobs and `wait` alone would also wait for
        # containerd, a child of this shell)
        wait_until $((CTR_TIMEOUT + 30)) exec_missing_done || true
        MISSING_MS=""
        for f in "${BG_FILES[@]}"; do
                read -r c pod f <<<"$f"
                read -r rc ms 2>/dev/null <"$f.rc" || rc="?" ms=0
                MISSING_MS+="$ms"$'\n'
                [ "$rc" != 0 ] && [ "$rc" != "?" ] ||
                        cfail exec-missing "$c" "$pod: exec of a missing binary: exit $rc: $(cat "$f.out" 2>/dev/null)"
        done
        MISSING_MS=$(sort -n <<<"$MISSING_MS" | grep . || true)
}

# fd_targets PID: what each fd of PID points to, sorted.
fd_targets() { find "/proc/$1/fd" -mindepth 1 -maxdepth 1 -printf '%l\n' 2>/dev/null | sort || true; }
# fd_new_classes PID BEFORE_TARGETS: the fds PID has now and had not then,
# by class, "N x class" joined by ", ". A CRI exec stdio FIFO is classed by
# whether containerd's log says that exec's start failed.
fd_new_classes() {
        local t cls
        comm -13 <(echo "$2") <(fd_targets "$1") | while read -r t; do
                if [[ $t =~ /io/[0-9]+/([0-9a-f]{64})-(stdout|stderr)( \(deleted\))?$ ]]; then
                        if grep -qF "start exec ${BASH_REMATCH[1]}:" "$ENV_LOG" 2>/dev/null; then
                                cls="stdio FIFO of an exec whose start failed"
                        else
                                cls="stdio FIFO of an exec"
                        fi
                else
                        case $t in
                        socket:* | pipe:*) cls=${t%%\[*} ;;
                        *) cls=$t ;;
                        esac
                fi
                echo "$cls"
        done | sort | uniq -c | awk '{ n = $1; $1 = ""; printf "%s%d x%s", (i++ ? ", " : ""), n, $0 }'
        return 0
}

# ---- before ----

B=$IT_TMP/census-before
A=$IT_TMP/census-after
M=$IT_TMP/census-mid
census "$B"
echo "# census before: $(count "$B/statedirs") state dirs and $(count "$B/taps") taps on the machine, /run used $(cat "$B/df_run") KiB"

# The long-lived pods.
LONG_C=soak-long-container
LONG_S=soak-long-sandbox
start_pod container 0 "$LONG_C" container && LONG_C_ID=$POD_ID || LONG_C_ID=""
start_pod sandbox 0 "$LONG_S" sandbox && LONG_S_ID=$POD_ID || LONG_S_ID=""
if [ -z "$LONG_C_ID" ] || [ -z "$LONG_S_ID" ]; then
        fail "the long-lived pods did not start"
        it_finish
        exit 1
fi
out_rc kern rc ectl exec "$LONG_S" -- uname -r
[ "$rc" = 0 ] && [[ $kern =~ ^[0-9]+\.[0-9]+ ]] && [ "$kern" != "$HOST_KERNEL" ] &&
        pass "the long-lived sandbox pod runs in a VM (uname -r $kern, host $HOST_KERNEL)" ||
        fail "the long-lived sandbox pod: uname -r exit $rc: '$kern' (host $HOST_KERNEL)"
# Warm-up: whatever the first execs set up once may stay.
for w in 3 4 5 7; do
        exec_long "$LONG_C" "$w"
        exec_long "$LONG_S" "$w"
done
N[exec-long]=0
ptable
ptable_owners
LONG_C_SHIM=$(pod_shim_pid "$LONG_C_ID")
LONG_S_SHIM=$(pod_shim_pid "$LONG_S_ID")
LONG_S_QEMU=$(sandbox_qemu_pid "$LONG_S_ID")
# (by the pod id its cgroup names: its command line names none)
LONG_S_VFS=$(for p in "${!PT_COMM[@]}"; do
        if [ "${PT_COMM[$p]}" = virtiofsd ] && [ "$(id_in_args "${PT_ARGS[$p]}")" = "$LONG_S_ID" ]; then
                echo "$p"
        fi
done | sort -n | tr '\n' ' ')
LONG_S_VFS=${LONG_S_VFS% }
# A virtiofsd only on the cold path: the default path's pods are on 9p
# (QEMU serves their files).
LONG_S_VFS_WANT=1
sandbox_path_template && LONG_S_VFS_WANT=0
if [ -z "$LONG_C_SHIM" ] || [ -z "$LONG_S_SHIM" ] || [ -z "$LONG_S_QEMU" ] ||
        { [ "$LONG_S_VFS_WANT" = 1 ] && [ -z "$LONG_S_VFS" ]; } ||
        { [ "$LONG_S_VFS_WANT" = 0 ] && [ -n "$LONG_S_VFS" ]; }; then
        fail "long-lived pods: shim/QEMU/virtiofsd not as expected (container shim '$LONG_C_SHIM', sandbox shim '$LONG_S_SHIM', QEMU '$LONG_S_QEMU', virtiofsd '$LONG_S_VFS', wanted: $LONG_S_VFS_WANT)"
        it_finish
        exit 1
fi
vfs_fds() {
        local p n=0
        for p in $LONG_S_VFS; do n=$((n + $(fd_count "$p"))); done
        echo "$n"
}
FD0_C=$(fd_count "$LONG_C_SHIM")
FD0_S=$(fd_count "$LONG_S_SHIM")
FD0_Q=$(fd_count "$LONG_S_QEMU")
FD0_V=$(vfs_fds)
FDT0_C=$(fd_targets "$LONG_C_SHIM")
FDT0_S=$(fd_targets "$LONG_S_SHIM")
KIDS0_C=$(children "$LONG_C_SHIM" | sort)
KIDS0_S=$(children "$LONG_S_SHIM" | sort)
FD_SAMPLES="0 $FD0_C $FD0_S $FD0_Q $FD0_V"
echo "# long-lived: container pod shim $LONG_C_SHIM ($FD0_C fds), sandbox pod shim $LONG_S_SHIM ($FD0_S fds), its QEMU $LONG_S_QEMU ($FD0_Q fds), virtiofsd $LONG_S_VFS ($FD0_V fds)"
BASE_SHAPE=$(env_shape)

# ---- the cycles ----

echo "# $CYCLES cycles: c%10==5 bogus, c%25==7 qemu-kill, other odd container, other even sandbox"
for ((c = 1; c <= CYCLES; c++)); do
        kind=$(cycle_kind "$c")
        N[$kind]=$((N[$kind] + 1))
        t0=${EPOCHREALTIME/./}
        case $kind in
        container) cycle_container "$c" ;;
        sandbox) cycle_sandbox "$c" ;;
        bogus) cycle_bogus "$c" ;;
        qemu-kill) cycle_qemu_kill "$c" ;;
        esac
        MS[$kind]=$((MS[$kind] + (${EPOCHREALTIME/./} - t0) / 1000))
        exec_long "$LONG_C" "$c"
        exec_long "$LONG_S" "$c"
        if ((c % 50 == 0 || c == CYCLES)); then
                FD_SAMPLES+=$'\n'"$c $(fd_count "$LONG_C_SHIM") $(fd_count "$LONG_S_SHIM") $(fd_count "$LONG_S_QEMU") $(vfs_fds)"
                fails=""
                for k in container sandbox bogus qemu-kill exec-long exec-missing; do fails+=" $k ${NFAIL[$k]},"; done
                el=$((SECONDS - T_START))
                printf '# [cycle %d/%d] elapsed %dm%02ds; failures:%s shim fds: container %s, sandbox %s\n' \
                        "$c" "$CYCLES" $((el / 60)) $((el % 60)) "${fails%,}" \
                        "$(fd_count "$LONG_C_SHIM")" "$(fd_count "$LONG_S_SHIM")"
        fi
done
T_CYCLES=$((SECONDS - T_START))

# ---- after the cycles: the long-lived pods' fds, children, zombies ----

exec_missing_wait
census "$M"
FDNEW_C=$(fd_new_classes "$LONG_C_SHIM" "$FDT0_C")
FDNEW_S=$(fd_new_classes "$LONG_S_SHIM" "$FDT0_S")
FD1_C=$(fd_count "$LONG_C_SHIM")
FD1_S=$(fd_count "$LONG_S_SHIM")
FD1_Q=$(fd_count "$LONG_S_QEMU")
FD1_V=$(vfs_fds)
[ -d "/proc/$LONG_C_SHIM" ] && [ -d "/proc/$LONG_S_SHIM" ] && [ -d "/proc/$LONG_S_QEMU" ] &&
        pass "the long-lived pods' shims and QEMU ran through all cycles" ||
        fail "a long-lived shim or QEMU died during the soak (shims $LONG_C_SHIM $LONG_S_SHIM, QEMU $LONG_S_QEMU)"
ptable
KIDS1_C=$(children "$LONG_C_SHIM" | sort)
KIDS1_S=$(children "$LONG_S_SHIM" | sort)
EXECS=${N[exec-long]}

for p in "$LONG_C" "$LONG_S"; do
        out_rc out rc ectl rm --timeout 0 "$p"
        expect_eq "rm of the long-lived pod $p" 0 "$rc"
done
# Let asynchronous teardown finish (a hang guard, not a measurement).
settled() {
        ptable
        ptable_owners
        [ -z "$(our_shims)$(our_comm 'qemu-system-x86*')$(our_comm virtiofsd)$(env_cgroup_pids)" ] &&
                [ -z "$(ls -A "$CRI_NETNS_DIR" 2>/dev/null)" ]
}
wait_until 60 settled || true
census "$A"
# A tap or chain new in a host-owned netns may be another test's short-lived
# namespace (the netplumb unit tests make some): only what is still there a
# little later counts.
host_new() {
        { new_items "$B/taps" "$A/taps"; new_items "$B/chains" "$A/chains"; } | awk '$2 == "host"' | grep -q .
}
if host_new; then
        echo "# new us-tap0/UNISHIM-* in a host-owned netns: looking again in 15 s"
        sleep 15
        ptable
        ptable_owners
        mkdir -p "$A/again"
        census_net "$A/again"
        for f in taps chains; do
                comm -12 "$A/$f" "$A/again/$f" >"$A/$f.both" || true
                mv "$A/$f.both" "$A/$f"
        done
fi
T_TOTAL=$((SECONDS - T_START))

# ---- the report ----

fdrow() { # WHAT BEFORE AFTER [NEW_FD_CLASSES]
        local g=$(($3 - $2))
        ((g < 0)) && g=0
        row "$1" "$2" "$3" "$g" "$([ "$g" -gt "$FD_SLACK" ] && echo 1 || echo fd)" \
                "growth $g after $EXECS execs + $((N[exec-missing] / 2)) of a missing binary (slack $FD_SLACK)${4:+; new fds: $4}"
}
row_env "shim processes (this env)" shims
row_env "qemu-system-x86_64 processes (this env)" qemu
row_env "virtiofsd processes (this env)" virtiofsd
row_env "container processes (this env's cgroups, below its shims)" ctrprocs
cat "$M/zombies" "$A/zombies" | sort -u >"$A/zombies_all"
items=$(new_items "$B/zombies" "$A/zombies_all")
row "zombies (children of this env's processes; after: end of cycles + end)" "$(count "$B/zombies")" \
        "$(count "$A/zombies_all")" "$(grep -c . <<<"$items" || true)" 1 "$items"
fdrow "fds: long-lived container pod's shim" "$FD0_C" "$FD1_C" "$FDNEW_C"
fdrow "fds: long-lived sandbox pod's shim" "$FD0_S" "$FD1_S" "$FDNEW_S"
fdrow "fds: long-lived sandbox pod's QEMU" "$FD0_Q" "$FD1_Q"
fdrow "fds: long-lived sandbox pod's virtiofsd" "$FD0_V" "$FD1_V"
kid_row() { # WHAT BEFORE AFTER
        local items
        items=$(comm -13 <(echo "$2") <(echo "$3") | grep . || true)
        row "$1" "$(grep -c . <<<"$2" || true)" "$(grep -c . <<<"$3" || true)" "$(grep -c . <<<"$items" || true)" 1 "$items"
}
kid_row "children of the long-lived container pod's shim" "$KIDS0_C" "$KIDS1_C"
kid_row "children of the long-lived sandbox pod's shim" "$KIDS0_S" "$KIDS1_S"
row_env "mounts under $ENV_STATE and $ENV_ROOT" mounts_env
row_ids "mounts under /run/unishim (machine-wide; leaked: this env's)" mounts_unishim
row_env "network namespaces (CRI netns bind mounts of this env)" netns_cri
row_ns "netns with us-tap0 (machine-wide; leaked: this env's or new in the host's)" taps
row_ns "iptables UNISHIM-* chains and jumps in surviving netns (machine-wide)" chains
row_env "cgroup dirs (under $ENV_POD_CGROUP, or named by a pod id of this env)" cgroups
row_ids "state dirs /run/unishim/<namespace>/* (machine-wide; leaked: this env's)" statedirs
row_env "pod IPs allocated (this env's CNI)" ipam
row_env "pods, containers, tasks in this env's containerd (k8s.io)" cri
row_env "shim sockets /run/containerd/s of this env's pod ids" sockets
items=$(new_items "$B/exec_undeleted" "$A/exec_undeleted")
row "execs containerd failed to delete (its log: Failed to delete exec process)" \
        "$(count "$B/exec_undeleted")" "$(count "$A/exec_undeleted")" "$(grep -c . <<<"$items" || true)" 1 "$items"
row "/run used, KiB (df; shared with the machine: shown, not judged)" "$(cat "$B/df_run")" "$(cat "$A/df_run")" \
        "$(($(cat "$A/df_run") - $(cat "$B/df_run")))" 0 "delta in KiB"

echo
echo "# soak: $CYCLES cycles in ${T_CYCLES} s (${T_TOTAL} s with setup of the long-lived pods and teardown)"
for k in container sandbox bogus qemu-kill; do
        avg=0
        [ "${N[$k]}" -gt 0 ] && avg=$((MS[$k] / N[$k]))
        printf '#   %-10s %4d cycles, %3d failed steps, mean %5d ms per cycle\n' "$k" "${N[$k]}" "${NFAIL[$k]}" "$avg"
done
printf '#   %-10s %4d execs into the long-lived pods, %3d failed\n' exec-long "${N[exec-long]}" "${NFAIL[exec-long]}"
printf '#   %-10s %4d execs of a missing binary (background), %3d failed; ExecSync ms: min %s, max %s\n' exec-missing \
        "${N[exec-missing]}" "${NFAIL[exec-missing]}" "$(head -n1 <<<"$MISSING_MS")" "$(tail -n1 <<<"$MISSING_MS")"
echo "# shim fd samples (cycle: container shim, sandbox shim, QEMU, virtiofsd):"
while read -r s c1 s1 q1 v1; do echo "#   $s: $c1 $s1 $q1 $v1"; done <<<"$FD_SAMPLES"
echo
printf '%-80s %10s %10s %8s\n' what before after leaked
LEAKS=()
while IFS=$'\t' read -r what before after leaked judged detail; do
        mark=""
        case $judged in
        0) mark=" (info)" ;;
        fd) mark=" (≤ slack)" ;;
        1) [ "$leaked" != 0 ] && mark=" LEAK" && LEAKS+=("$what") ;;
        esac
        printf '%-80s %10s %10s %8s%s\n' "$what" "$before" "$after" "$leaked" "$mark"
        [ "$judged" = 1 ] && [ "$leaked" != 0 ] && echo "    $(head -c 1500 <<<"$detail")"
done <"$ROWS"
echo

# JSON
mkdir -p "$(dirname "$REPORT")"
fd_json=$(awk 'NF == 5 { printf "%s{\"cycle\":%s,\"container_shim\":%s,\"sandbox_shim\":%s,\"qemu\":%s,\"virtiofsd\":%s}", (n++ ? "," : ""), $1, $2, $3, $4, $5 }' <<<"$FD_SAMPLES")
kinds_json=$(for k in container sandbox bogus qemu-kill exec-long exec-missing; do
        jq -n --arg k "$k" --argjson n "${N[$k]}" --argjson f "${NFAIL[$k]}" --argjson ms "${MS[$k]:-0}" \
                --arg at "${FAILED_AT[$k]}" \
                '{kind: $k, count: $n, failed_steps: $f, total_ms: $ms,
                  failed_cycles: ($at | split(" ") | map(select(. != "") | tonumber) | unique)}'
done | jq -s .)
jq -R -s --argjson cycles "$CYCLES" --argjson cs "$T_CYCLES" --argjson ts "$T_TOTAL" \
        --arg started "$STARTED" --arg finished "$(date -u +%FT%TZ)" --arg kernel "$HOST_KERNEL" \
        --arg containerd "$(containerd --version 2>/dev/null | awk '{print $3}')" --argjson slack "$FD_SLACK" \
        --argjson execs "$EXECS" --argjson fds "[$fd_json]" --argjson kinds "$kinds_json" \
        --arg rule "c%10==5 bogus; c%25==7 qemu-kill; other odd container; other even sandbox" '
        (split("\n") | map(select(length > 0) | split("\t")
                | {what: .[0], before: (.[1] | tonumber), after: (.[2] | tonumber), leaked: (.[3] | tonumber),
                   judged: (.[4] != "0"), leak: (.[4] == "1" and .[3] != "0"),
                   detail: (.[5] // "" | split("; ") | map(select(length > 0)))})) as $rows
        | {cycles: $cycles, cycle_rule: $rule, started: $started, finished: $finished,
           cycles_seconds: $cs, total_seconds: $ts, host_kernel: $kernel, containerd: $containerd,
           fd_slack: $slack, long_lived_execs_per_pod: $execs, fd_samples: $fds, kinds: $kinds,
           rows: $rows, leaks: ($rows | map(select(.leak) | .what)),
           passed: (($rows | map(select(.leak)) | length) == 0 and ($kinds | map(.failed_steps) | add) == 0)}' \
        "$ROWS" >"$REPORT"
echo "# report: $REPORT"

for k in container sandbox bogus qemu-kill; do
        expect_eq "$k cycles: ${N[$k]} without a failed step (failed cycles:${FAILED_AT[$k]:- none})" 0 "${NFAIL[$k]}"
done
expect_eq "${N[exec-long]} execs into the long-lived pods as expected" 0 "${NFAIL[exec-long]}"
expect_eq "${N[exec-missing]} execs of a missing binary failed as expected" 0 "${NFAIL[exec-missing]}"
while IFS=$'\t' read -r what before after leaked judged detail; do
        case $judged in
        1) [ "$leaked" = 0 ] && pass "no leak: $what ($before -> $after)" ||
                fail "LEAK: $what: $leaked ($before -> $after): $(head -c 600 <<<"$detail")" ;;
        fd) pass "fds flat within slack $FD_SLACK: $what ($before -> $after)" ;;
        esac
done <"$ROWS"
if [ "${#LEAKS[@]}" -gt 0 ]; then
        echo "# LEAKS: $(printf '%s; ' "${LEAKS[@]}")"
fi
it_finish
