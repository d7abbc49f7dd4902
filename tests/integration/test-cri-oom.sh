#!/bin/bash
# A container over its memory limit is OOM-killed and reported so through
# the real CRI (issue 9), as kubelet reads it: ContainerStatus says Exited,
# exit code 137 and reason OOMKilled (containerd's CRI sets that reason from
# the shim's /tasks/oom event, which the test also looks for in
# `ctr events`). The container (32 MiB limit) pipes 200 MiB without a
# newline into busybox tail, which holds it all. Kinds: OOM_KINDS (default
# "runc container sandbox"; runc is the reference).
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
IT_CRI=1
read -r -a KINDS <<<"${OOM_KINDS:-runc container sandbox}"
for k in "${KINDS[@]}"; do
        if [ "$k" = sandbox ]; then
                command -v qemu-system-x86_64 >/dev/null ||
                        it_skip "qemu-system-x86_64 missing (apt package qemu-system-x86)"
        fi
done
it_setup

# ctr_status POD: `unishimctl status` of the pod's container "hog".
ctr_status() {
        ectl status "$1" -c hog 2>/dev/null || true
}

# hog_exited POD: for wait_until.
hog_exited() {
        [ "$(jq -r .state <<<"$(ctr_status "$1")" 2>/dev/null)" = Exited ]
}

for kind in "${KINDS[@]}"; do
        kind_pod "$kind"
        name=oom-$kind
        events_start "$IT_TMP/events-$kind"
        f=$(it_pod "$name.json" --arg n "$name" --arg h "$HANDLER" --argjson a "$ANNOTATIONS" \
                '{name: $n, runtime_handler: $h, annotations: $a,
                  containers: [{name: "hog", image: $img, command: ["/bin/sh", "-c"],
                    args: ["head -c 200m /dev/zero | tail"],
                    resources: {memory_limit_bytes: 33554432}}]}')
        out_rc out rc ectl run "$f"
        expect_eq "$kind: run the pod" 0 "$rc"
        if [ "$rc" != 0 ]; then
                echo "# $out"
                events_stop
                continue
        fi
        pod=$(pod_id "$name")
        cid=$(ctr_id "$name" hog)
        # (a hang guard: the allocation takes a moment, more under TCG)
        wait_until 180 hog_exited "$name" || true
        st=$(ctr_status "$name")
        expect_eq "$kind: the container exited" Exited "$(jq -r .state <<<"$st" 2>/dev/null)"
        expect_eq "$kind: exit code 137 (SIGKILL)" 137 "$(jq -r .exit_code <<<"$st" 2>/dev/null)"
        expect_eq "$kind: ContainerStatus reason OOMKilled" OOMKilled "$(jq -r .reason <<<"$st" 2>/dev/null)"
        events_stop
        grep -F '/tasks/oom' "$IT_TMP/events-$kind" | grep -F "\"container_id\":\"$cid\"" >/dev/null &&
                pass "$kind: a /tasks/oom event for the container" ||
                fail "$kind: no /tasks/oom event for $cid"
        out_rc out rc ectl rm --timeout 0 "$name"
        expect_eq "$kind: rm" 0 "$rc"
        wait_until 30 outputs_nothing sandbox_leftovers "$pod" "$cid" || true
        expect_eq "$kind: nothing left" "" "$(sandbox_leftovers "$pod" "$cid")"
done

it_finish
