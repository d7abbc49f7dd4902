#!/bin/bash
# The guest is hostile (issue 7): attacks run inside a sandbox pod's VM, the
# checks are on the host.
#  - a privileged container mounts the pod's virtio-fs share and tries to
#    rename, replace (by a symlink to a host directory), create and fill
#    what the host walks and mounts onto: every attempt fails with EROFS, the
#    host's view of the share is unchanged, and removing the containers
#    touches no host file outside the pod (the host directory the symlink
#    would have pointed at keeps its files)
#  - a container task created and deleted without a start (what containerd
#    does when a start fails after the shim's create) goes without taking
#    the pod's VM with it
#  - Stats of the pod's VM task after its kill (before its delete) answers
#    with an error, and the shim still serves the pod
#  - the pod's QEMU runs as a uid of its own (another pod's differs), with
#    no capability and no_new_privs, in a private root (only /usr, the boot
#    files and a few device nodes) and namespaces of its own; virtiofsd is
#    rooted in the share and runs as the pod's own unprivileged uid range
#    (root of a user namespace of its own: uid_map 0 X 65536, host uid X),
#    another pod's range apart from it
#  - nothing of the pod is left afterwards
# On the VM-template path (the default: 9p, no virtiofsd) QEMU is the file
# server: it holds the 9p server's capabilities in the pod's user namespace
# and a procfs of its own (per-process part only), and a second mount of
# the 9p tag is refused; the same pod is then run over virtio-fs
# (sandbox_virtiofs_config), for virtiofsd's checks and the attacks on the
# share's structure.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
IT_CRI=1
command -v qemu-system-x86_64 >/dev/null || it_skip "qemu-system-x86_64 missing (apt package qemu-system-x86)"
it_setup
# A pod's shim, called directly in the CRI's namespace (tests/tools/task-api.c).
task_api() { timeout -k 5 "$CTR_TIMEOUT" "$UNISHIM_BUILD_DIR/tests/task-api" "$1" k8s.io "${@:2}"; }

CANARY=$IT_TMP/canary
mkdir -p "$CANARY/sub"
echo precious >"$CANARY/file"
echo precious >"$CANARY/sub/file"
canary_sum() { (cd "$CANARY" && find . -printf '%p %s %y\n' | sort | sha256sum); }
CANARY_SUM=$(canary_sum)

# hostile_pod NAME NINEP: runs the privileged pod NAME (an attacker and a
# victim with the rw volume $IT_TMP/vol-NAME) and attacks its share from
# the guest; NINEP 1: the env's path's pod (9p on the template path), 0: a
# virtio-fs pod (sandbox_virtiofs_config before it). Sets id, victim,
# state, qpid, quid, vuid.
hostile_pod() {
        local name=$1 ninep=$2 vol=$IT_TMP/vol-$1 f out rc line what attack q ns
        mkdir -p "$vol"
        [ "$ninep" = 1 ] || sandbox_virtiofs_config
        f=$(it_pod "$name.json" --arg n "$name" --arg vol "$vol" '{name: $n, runtime_handler: "unishim",
                annotations: {"unishim.io/isolation": "sandbox"}, privileged: true,
                containers: [{name: "attacker", image: $img, privileged: true, command: ["sleep", "3600"]},
                             {name: "victim", image: $img, command: ["sleep", "3600"],
                              mounts: [{host_path: $vol, container_path: "/data"}]}]}')
        out_rc out rc ectl run "$f"
        [ "$ninep" = 1 ] || sandbox_virtiofs_restore
        expect_eq "run the privileged sandbox pod $name" 0 "$rc"
        [ "$rc" = 0 ] || echo "# $out"
        id=$(pod_id "$name")
        victim=$(ctr_id "$name" victim)
        attacker=$(ctr_id "$name" attacker)
        state=$(echo /run/unishim/*/"$id")
        qpid=$(sandbox_qemu_pid "$id")
        [ -d "$state/shared" ] && pass "the pod's share is at $state/shared" || fail "no share dir for pod $id: $state"
        host_view() { (cd "$state/shared" && find . -xdev -printf '%p %y\n' | sort); }
        # QEMU with least privilege: a uid of its own, no capability, no_new_privs.
        status_of() { awk -v k="$2:" '$1 == k { print $2 }' "/proc/$1/status" 2>/dev/null; }
        ns_of() { stat -L -c %i "/proc/$1/ns/$2" 2>/dev/null; }
        quid=$(status_of "$qpid" Uid)
        [ -n "$quid" ] && [ "$quid" != 0 ] && pass "QEMU runs as uid $quid, not root" || fail "QEMU's uid: '$quid'"
        if [ "$ninep" = 1 ]; then
                # A 9p pod's QEMU is the file server: root of the pod's user
                # namespace with the 9p server's capabilities there (CAP_CHOWN,
                # CAP_DAC_OVERRIDE, CAP_FOWNER, CAP_FSETID), none on the host.
                [ "$(ns_of "$qpid" user)" != "$(ns_of $$ user)" ] && pass "QEMU (the 9p server) is in a user namespace of its own" ||
                        fail "QEMU's user namespace is the host's"
                expect_eq "QEMU has only the 9p server's capabilities (in its namespace)" 000000000000001b "$(status_of "$qpid" CapEff)"
                expect_eq "QEMU permits only the 9p server's capabilities" 000000000000001b "$(status_of "$qpid" CapPrm)"
        else
                expect_eq "QEMU has no effective capability" 0000000000000000 "$(status_of "$qpid" CapEff)"
                expect_eq "QEMU has no permitted capability" 0000000000000000 "$(status_of "$qpid" CapPrm)"
        fi
        expect_eq "QEMU runs with no_new_privs" 1 "$(status_of "$qpid" NoNewPrivs)"
        # Its private root (vmm/jail.h): /usr, the boot files and a few device
        # nodes; nothing of the host's state, in namespaces of its own.
        qroot=$(ls -A "/proc/$qpid/root" 2>/dev/null | tr '\n' ' ')
        expect_match "QEMU's root holds /usr and the boot files" '(^| )boot .*dev .*usr' "$qroot"
        if [ "$ninep" = 1 ]; then
                # QEMU's 9p server sets a new file's mode through /proc/self/fd/N:
                # a 9p pod's QEMU has a procfs of its own, read-only, with only the
                # per-process part and only its own processes (vmm/jail.c).
                expect_no_match "QEMU's root holds nothing of the host's state" '(^| )(etc|sys|run|var|tmp|root|home)( |$)' "$qroot"
                expect_match "QEMU's /proc (the 9p server's) is read-only, its pids only, no kernel state" \
                        '^ro(,[^ ]*)? .* - proc [^ ]+ [^ ]*(hidepid=invisible[^ ]*subset=pid|subset=pid[^ ]*hidepid=invisible)' \
                        "$(awk '$5 == "/proc" {print $6, $0}' "/proc/$qpid/mountinfo" 2>/dev/null)"
                [ ! -e "/proc/$qpid/root/proc/sys" ] && [ ! -e "/proc/$qpid/root/proc/meminfo" ] &&
                        pass "QEMU's /proc has no /proc/sys or /proc/meminfo" || fail "QEMU's /proc shows kernel state"
        else
                expect_no_match "QEMU's root holds nothing of the host's state" '(^| )(etc|proc|sys|run|var|tmp|root|home)( |$)' "$qroot"
        fi
        expect_eq "QEMU's devices" "null random urandom zero" "$(ls "/proc/$qpid/root/dev" 2>/dev/null | tr '\n' ' ' | sed 's/ $//')"
        for ns in mnt net ipc; do
                q=$(ns_of "$qpid" $ns)
                [ -n "$q" ] && [ "$q" != "$(ns_of $$ $ns)" ] && pass "QEMU has a $ns namespace of its own" ||
                        fail "QEMU's $ns namespace: '$q', the host's $(ns_of $$ $ns)"
        done
        # virtiofsd (root: it serves files of every uid) sees only the share: it
        # pivots into it in mount, pid and net namespaces of its own. (The template
        # path has none: QEMU serves 9p from its jail, checked above.)
        share_ino=$(stat -c %d:%i "$state/shared")
        vfsd_in_share=0
        while read -r vpid _; do
                [ "$(stat -L -c %d:%i "/proc/$vpid/root" 2>/dev/null)" = "$share_ino" ] || continue
                [ "$(ns_of "$vpid" mnt)" != "$(ns_of $$ mnt)" ] && [ "$(ns_of "$vpid" net)" != "$(ns_of $$ net)" ] || continue
                [ "$(status_of "$vpid" Seccomp)" = 2 ] && [ "$(status_of "$vpid" NoNewPrivs)" = 1 ] || continue
                vfsd_in_share=$((vfsd_in_share + 1))
        done < <(sandbox_procs "$id" | grep virtiofsd)
        if [ "$ninep" = 1 ]; then
                expect_eq "no virtiofsd runs for the 9p pod" "" "$(sandbox_procs "$id" | grep virtiofsd)"
        else
                [ "$vfsd_in_share" -ge 1 ] && pass "virtiofsd serves from its own namespaces, rooted in the share, under seccomp" ||
                        fail "no virtiofsd of pod $id is rooted in $state/shared: $(sandbox_procs "$id" | grep virtiofsd)"
        fi
        # ... and as the pod's own unprivileged host uid range: root of a user
        # namespace of its own mapping ns 0..65535 onto host X..X+65535, so on the
        # host it is uid and gid X and has no capability outside that namespace
        # (status shows its capabilities in its own namespace).
        # vfsd_uid POD_ID: X when every virtiofsd of the pod is so, else why not.
        vfsd_uid() {
                local pid uids gids map gmap x="" n=0
                for pid in $(sandbox_procs "$1" | awk '$2 ~ /virtiofsd/ {print $1}'); do
                        uids=$(awk '$1 == "Uid:" {print $2, $3, $4, $5}' "/proc/$pid/status")
                        gids=$(awk '$1 == "Gid:" {print $2, $3, $4, $5}' "/proc/$pid/status")
                        map=$(awk '{print $1, $2, $3}' "/proc/$pid/uid_map")
                        gmap=$(awk '{print $1, $2, $3}' "/proc/$pid/gid_map")
                        set -- $uids
                        if [ "$1" = 0 ] || [ "$uids" != "$1 $1 $1 $1" ] || [ "$gids" != "$uids" ] ||
                                [ "$map" != "0 $1 65536" ] || [ "$gmap" != "$map" ] ||
                                [ "$(ns_of "$pid" user)" = "$(ns_of $$ user)" ] || { [ -n "$x" ] && [ "$x" != "$1" ]; }; then
                                echo "virtiofsd $pid: uids $uids gids $gids uid_map '$map' gid_map '$gmap' userns $(ns_of "$pid" user)"
                                return 0
                        fi
                        x=$1
                        n=$((n + 1))
                done
                [ "$n" -ge 1 ] && echo "$x" || echo "no virtiofsd"
        }
        vuid=$(vfsd_uid "$id")
        if [ "$ninep" = 0 ]; then
                [[ $vuid =~ ^[0-9]+$ ]] && pass "virtiofsd runs as host uid and gid $vuid, root of its own user namespace (uid_map 0 $vuid 65536)" ||
                        fail "virtiofsd's ids: $vuid"
        fi
        VIEW_BEFORE=$(host_view)

        # ---- the share, attacked from inside the VM ----
        if [ "$ninep" = 1 ]; then
                # A 9p tag is one virtio channel, which the agent's mount
                # holds (the template's tag is "pod"): a second mount is
                # refused in the guest, so the attacks below (run on the
                # virtio-fs pod) have nothing to act on.
                out_rc out rc ectl exec "$name" -c attacker -- sh -c 'mkdir -p /mnt/share &&
                        mount -t 9p -o trans=virtio,version=9p2000.L pod /mnt/share'
                [ "$rc" != 0 ] && [[ $out = *"Device or resource busy"* ]] &&
                        pass "the attacker cannot mount the share's 9p tag again (the agent holds its channel)" ||
                        fail "the attacker's mount of the 9p tag: rc $rc: $out"
        else
                out_rc out rc ectl exec "$name" -c attacker -- sh -c 'mkdir -p /mnt/share && mount -t virtiofs unishim /mnt/share && ls /mnt/share'
                expect_eq "the attacker mounts the share (virtiofs tag unishim) in the guest" 0 "$rc"
                expect_match "the attacker sees the victim's directory" "$victim" "$out"
                # Each attempt prints "<what>: ok" when it worked.
                attack=$(
                        cat <<EOF
V=/mnt/share/$victim
try() { what=\$1; shift; if "\$@" 2>/tmp/err; then echo "\$what: ok"; else echo "\$what: \$(cat /tmp/err)"; fi; }
try swap-victim sh -c "mv \$V \$V.old && ln -s $CANARY \$V"
try plant-symlink ln -s $CANARY /mnt/share/$victim.link
try replace-mounts sh -c "mv \$V/mounts \$V/mounts.old && ln -s $CANARY \$V/mounts"
try replace-rootfs-parent mv \$V/rootfs \$V/rootfs.old
try create-top touch /mnt/share/planted
try create-in-container touch \$V/planted
try mkdir-future mkdir /mnt/share/future-container
try fill dd if=/dev/zero of=/mnt/share/fill bs=1M count=64
try chmod-top chmod 777 /mnt/share
try remount-rw mount -o remount,rw /mnt/share
try fill-after-remount dd if=/dev/zero of=/mnt/share/fill2 bs=1M count=8
EOF
                )
                out_rc out rc ectl exec -t 60 "$name" -c attacker -- sh -c "$attack"
                echo "$out" | sed 's/^/# guest: /'
                for what in swap-victim plant-symlink replace-mounts replace-rootfs-parent create-top \
                        create-in-container mkdir-future fill chmod-top fill-after-remount; do
                        line=$(grep "^$what: " <<<"$out" || true)
                        [ -n "$line" ] && [[ $line != *": ok" ]] && [[ $line = *"Read-only file system"* ]] &&
                                pass "guest attack $what fails with EROFS" || fail "guest attack $what: '${line:-no result}'"
                done
        fi
        expect_eq "the host's view of the share is unchanged" "$VIEW_BEFORE" "$(host_view)"
        # The container's own writable layer and its rw volume stay writable.
        out_rc out rc ectl exec "$name" -c victim -- sh -c 'echo x > /written && echo y > /data/written'
        expect_eq "the victim still writes its rootfs and its rw volume" 0 "$rc"
        expect_eq "the rw volume write reached the host" y "$(cat "$vol/written" 2>/dev/null)"
}
NINEP=0
sandbox_path_template && NINEP=1
hostile_pod hostile "$NINEP"

# vfsd_ranges_apart VUID VUID2 QUID QUID2: two virtio-fs pods' virtiofsd
# uid ranges (vfsd_uid) do not overlap, and neither is its pod's QEMU uid.
vfsd_ranges_apart() {
        local vuid=$1 vuid2=$2 quid=$3 quid2=$4
        [[ $vuid2 =~ ^[0-9]+$ ]] && [[ $vuid =~ ^[0-9]+$ ]] && ((vuid2 >= vuid + 65536 || vuid >= vuid2 + 65536)) &&
                pass "another pod's virtiofsd has a range of its own ($vuid2..$((vuid2 + 65535)), not $vuid..$((vuid + 65535)))" ||
                fail "two pods' virtiofsd uids: '$vuid' '$vuid2'"
        [[ $vuid =~ ^[0-9]+$ && $vuid2 =~ ^[0-9]+$ ]] && [ "$vuid" != "$quid" ] && [ "$vuid2" != "$quid2" ] &&
                pass "virtiofsd's uids are not QEMU's" ||
                fail "virtiofsd and QEMU share a uid: $vuid $vuid2 $quid $quid2"
}

# ---- a task created and deleted without a start keeps the VM ----
# (containerd deletes a task this way when its start fails after the
# shim's create; driven at the Task API, as containerd does)
run_sandbox_sleep_pod unstarted good
idu=$(pod_id unstarted)
good=$(ctr_id unstarted good)
qu=$(sandbox_qemu_pid "$idu")
gbundle=$ENV_STATE/io.containerd.runtime.v2.task/k8s.io/$good
sock=$(sed 's|^unix://||' "$gbundle/address" 2>/dev/null || true)
mkdir -p "$IT_TMP/unstarted/rootfs"
jq '.process.args = ["sleep", "3600"]' "$gbundle/config.json" >"$IT_TMP/unstarted/config.json"
# Its rootfs: a read-only directory with the spec's mount points (the guest's
# engine makes none in it). The other container's rootfs is not mounted on
# the host: the guest's overlay is the shim's own, over idmapped layers.
ROOTFS=$IT_TMP/unstarted-root
mkdir -p "$ROOTFS"
while read -r src dst; do
        [ -f "$src" ] && { mkdir -p "$ROOTFS$(dirname "$dst")" && touch "$ROOTFS$dst"; } || mkdir -p "$ROOTFS$dst"
done < <(jq -r '.mounts[] | "\(.source) \(.destination)"' "$gbundle/config.json")
out_rc out rc task_api "$sock" create unstarted1 "$IT_TMP/unstarted" "$ROOTFS"
expect_eq "Task API Create of a second container in the pod" 0 "$rc"
[ "$rc" = 0 ] || echo "# $out"
out_rc out rc task_api "$sock" state unstarted1
expect_match "the task is created (status 1), not started" "^[0-9]+ 1 " "$out"
out_rc out rc task_api "$sock" delete unstarted1
expect_eq "Task API Delete of the never-started task" 0 "$rc"
[ "$rc" = 0 ] || echo "# $out"
quid2=$(status_of "$qu" Uid)
[ -n "$quid2" ] && [ "$quid2" != 0 ] && [ "$quid2" != "$quid" ] &&
        pass "another pod's QEMU has another uid ($quid2)" || fail "two pods' QEMU uids: '$quid' '$quid2'"
if sandbox_path_template; then
        # QEMU is the root of the pod's uid range there.
        [[ $quid =~ ^[0-9]+$ && $quid2 =~ ^[0-9]+$ ]] && ((quid2 >= quid + 65536 || quid >= quid2 + 65536)) &&
                pass "another pod's QEMU has a uid range of its own ($quid2.., not $quid..$((quid + 65535)))" ||
                fail "two pods' QEMU uids: '$quid' '$quid2'"
else
        vfsd_ranges_apart "$vuid" "$(vfsd_uid "$idu")" "$quid" "$quid2"
fi
[ -n "$qu" ] && [ "$(sandbox_qemu_pid "$idu")" = "$qu" ] && pass "the pod's VM survives the delete (QEMU $qu)" ||
        fail "the pod's VM is gone after Delete of a never-started task (QEMU was '$qu')"
out_rc out rc ectl exec unstarted -c good -- echo still-here
expect_eq "the pod's other container still answers" "still-here" "$out"
out_rc out rc ectl rm --timeout 0 unstarted
expect_eq "rm the unstarted pod" 0 "$rc"

# ---- the victim's removal: no host file outside the pod touched ----
out_rc out rc ectl rm --timeout 0 hostile
expect_eq "rm the hostile pod" 0 "$rc"
[ "$rc" = 0 ] || echo "# $out"
expect_eq "the host directory the guest aimed at keeps its files" "$CANARY_SUM" "$(canary_sum)"
wait_until 15 outputs_nothing sandbox_leftovers "$id" "$idu" || true
expect_eq "nothing of the pods left" "" "$(sandbox_leftovers "$id" "$idu")"
[ -z "$qpid" ] || [ ! -d "/proc/$qpid" ] && pass "the hostile pod's QEMU is gone" || fail "QEMU $qpid still runs"

# ---- the same on a virtio-fs pod ----
# The template path's pods have no virtiofsd: its checks and the attacks on
# a second mount of the share run on a pod of the operator's other choice.
if [ "$NINEP" = 1 ]; then
        hostile_pod hostile-vfs 0
        # A second virtio-fs pod beside it: the two virtiofsd's ranges.
        sandbox_virtiofs_config
        run_sandbox_sleep_pod vfs2 app
        sandbox_virtiofs_restore
        idv2=$(pod_id vfs2)
        vfsd_ranges_apart "$vuid" "$(vfsd_uid "$idv2")" "$quid" "$(status_of "$(sandbox_qemu_pid "$idv2")" Uid)"
        for p in hostile-vfs vfs2; do
                out_rc out rc ectl rm --timeout 0 "$p"
                expect_eq "rm $p (virtio-fs)" 0 "$rc"
        done
        expect_eq "the host directory the guest aimed at keeps its files (virtio-fs)" "$CANARY_SUM" "$(canary_sum)"
        wait_until 15 outputs_nothing sandbox_leftovers "$id" "$idv2" || true
        expect_eq "nothing of the virtio-fs pods left" "" "$(sandbox_leftovers "$id" "$idv2")"
fi

# ---- Stats of the VM task after its kill ----
# StopPodSandbox kills the VM task and only then deletes it: a Stats in
# between (kubelet polls them) must be answered. containerd is paused so that
# it cannot delete the task first.
run_sandbox_sleep_pod stats app
ids=$(pod_id stats)
sock=$(sed 's|^unix://||' "$ENV_STATE/io.containerd.runtime.v2.task/k8s.io/$ids/address" 2>/dev/null || true)
out_rc out rc task_api "$sock" stats "$ids"
expect_eq "Stats of the running VM task" 0 "$rc"
CPID=$(env_containerd_pid)
kill -STOP "$CPID"
resume_containerd() { kill -CONT "$CPID" 2>/dev/null || true; }
IT_CLEANUP_HOOK=resume_containerd
out_rc out rc task_api "$sock" kill "$ids" 9
expect_eq "Task API Kill of the VM task" 0 "$rc"
out_rc out rc task_api "$sock" stats "$ids"
[ "$rc" != 0 ] && [[ $out = *stopped* ]] && pass "Stats after the kill is an error naming why ($out)" ||
        fail "Stats after the kill: rc $rc: $out"
# (before containerd continues: then it deletes the tasks and the shim may
# exit, as it should)
out_rc out rc task_api "$sock" connect "$ids"
expect_eq "the shim still answers after Stats of the killed VM task (Connect)" 0 "$rc"
kill -CONT "$CPID"
IT_CLEANUP_HOOK=
# containerd handles the exits the shim queued while it was stopped; a
# RemoveContainer before it did is refused ("still running").
stats_app_exited() { [ "$(ctr_state stats app)" = Exited ]; }
wait_until 60 stats_app_exited || fail "the stats pod's container not reported Exited: $(ctr_state stats app)"
out_rc out rc ectl rm --timeout 0 stats
expect_eq "rm the stats pod" 0 "$rc"
wait_until 15 outputs_nothing sandbox_leftovers "$ids" || true
expect_eq "nothing of the stats pod left" "" "$(sandbox_leftovers "$ids")"

it_finish
