#!/bin/bash
# The node's namespaces (Kubernetes hostNetwork, hostPID, hostIPC: CRI
# namespace mode NODE) through the real CRI (issue 9):
#  - the container kind honours them as runc does (both run in the same
#    test): a pod asking for all three sees the network namespace of
#    containerd (here the test environment's, never the machine's) and the
#    host's PID and IPC namespaces, compared by inode; the same pod without
#    them sees none of them
#  - a VM kind (sandbox, vm) cannot: RunPodSandbox fails with an error that
#    names the field and the kind, and leaves nothing behind
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
IT_CRI=1
it_setup

# ns_ino PATH: the inode of the namespace file PATH.
ns_ino() {
        stat -L -c %i "$1" 2>/dev/null || echo "none:$1"
}

# The namespaces a hostNetwork/hostPID/hostIPC pod must share: containerd's
# network namespace (it runs in the env's), the machine's PID and IPC ones.
declare -A HOST=(
        [net]=$(ns_ino "$ENV_NETNS_PATH")
        [pid]=$(ns_ino /proc/self/ns/pid)
        [ipc]=$(ns_ino /proc/self/ns/ipc)
)
expect_eq "containerd runs in the env's network namespace" "${HOST[net]}" \
        "$(ns_ino "/proc/$(env_containerd_pid)/ns/net")"

declare -A RES=()
for h in unishim runc; do
        for host in true false; do
                name=hostns-$h-$host
                f=$(it_pod "$name.json" --arg n "$name" --arg h "$h" --argjson host "$host" \
                        '{name: $n, runtime_handler: $h,
                          host_network: $host, host_pid: $host, host_ipc: $host,
                          containers: [{name: "app", image: $img, command: ["sleep", "3600"]}]}')
                out_rc out rc ectl run "$f"
                expect_eq "$h: pod with host namespaces $host runs" 0 "$rc"
                [ "$rc" = 0 ] || {
                        echo "# $out"
                        continue
                }
                [ "$h" = unishim ] && expect_match "ps: $name is a container-kind pod" \
                        "$name +default +Ready +unishim +container" "$(ectl ps)"
                for ns in net pid ipc; do
                        ino=$(ectl exec "$name" -- stat -L -c %i "/proc/self/ns/$ns" </dev/null 2>&1 || true)
                        [[ $ino =~ ^[0-9]+$ ]] || {
                                fail "$h: host $host: stat /proc/self/ns/$ns in the container: $ino"
                                continue
                        }
                        if [ "$host" = true ]; then
                                expect_eq "$h: host $host: the container's $ns namespace is the host's" \
                                        "${HOST[$ns]}" "$ino"
                        else
                                [ "$ino" != "${HOST[$ns]}" ] &&
                                        pass "$h: host $host: the container's $ns namespace is its own" ||
                                        fail "$h: host $host: the container shares the host's $ns namespace"
                        fi
                        RES[$h.$host.$ns]=$([ "$ino" = "${HOST[$ns]}" ] && echo host || echo own)
                done
                pod=$(pod_id "$name")
                out_rc out rc ectl rm "$name"
                expect_eq "$h: host $host: rm" 0 "$rc"
                wait_until 10 no_pod_shim "$pod" || true
                expect_eq "$h: host $host: nothing left" "" "$(pod_leftovers "$pod")"
        done
done
for k in true.net true.pid true.ipc false.net false.pid false.ipc; do
        expect_eq "same under unishim and runc: $k" "${RES[runc.$k]:-}" "${RES[unishim.$k]:-}"
done

# A VM kind refuses each of them by name.
for kind in sandbox vm; do
        for field in host_network host_pid host_ipc; do
                case $field in
                host_network) k8s=hostNetwork ;;
                host_pid) k8s=hostPID ;;
                host_ipc) k8s=hostIPC ;;
                esac
                name=$kind-${field//_/-}
                f=$(it_pod "$name.json" --arg n "$name" --arg k "$kind" --arg field "$field" \
                        '{name: $n, runtime_handler: "unishim", annotations: {"unishim.io/isolation": $k},
                          containers: [{name: "app", image: $img, command: ["sleep", "3600"]}]}
                         | .[$field] = true')
                pod_refused "$name" "$f"
                expect_match "$name: the error names $k8s and the $kind isolation" \
                        "$k8s is not supported by unishim's $kind isolation" "$ERR"
        done
done

it_finish
