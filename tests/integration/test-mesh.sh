#!/bin/bash
# The mesh acceptance test (docs/network.md, design.md "Network: one model for
# all kinds"): with a service mesh's iptables rules in the pod netns and a
# transparent proxy next to the workload, every inbound and outbound TCP
# connection of the workload passes the proxy, whatever the pod's kind.
#
# The rules are Istio's sidecar-mode nat rules (ISTIO_INBOUND -> 15006,
# ISTIO_OUTPUT -> 15001, uid 1337 and 127.0.0.6 exempt) plus the rule Istio
# adds for a VM interface named in istio.io/reroute-virtual-interfaces
# (-i us-tap0 -> ISTIO_REDIRECT). Istio's CNI plugin installs them at CNI ADD,
# before the runtime starts anything: inserting them at the top of PREROUTING
# and OUTPUT after the pod runs gives the same order. The proxy
# (tests/tools/mesh-proxy) runs in the pod netns as uid 1337 and logs the
# original destination of each connection.
#
# For the runc handler (the reference: it shows the test itself detects
# interception), a unishim container pod, and a unishim sandbox pod, with the
# proxy started in the pod netns by the test:
#  - without the rules a connection to the pod does not pass the proxy
#  - with them, a peer pod's fetch of POD_IP:8080 passes the proxy as inbound
#    and still reaches the workload (the proxy dials it from 127.0.0.6)
#  - the workload's fetch of the peer's IP passes the proxy as outbound
# Then the way a mesh really deploys it: a sandbox pod whose proxy is its
# `istio-proxy` container. unishim runs that sidecar on the host in the pod
# netns (host kernel, the pod's hostname) next to the VM (guest kernel), and
# the same two connections pass it; removing the pod leaves nothing.
# The vm kind's part is in test-vm-cri.sh, on one of the VMs it boots
# anyway (a distribution's boot under TCG takes minutes).
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
IT_CRI=1
PROXY=$UNISHIM_BUILD_DIR/tests/mesh-proxy
[ -x "$PROXY" ] || {
        echo "FAIL: $PROXY is not built"
        exit 1
}
command -v iptables-restore >/dev/null || it_skip "iptables-restore missing (apt package iptables)"
it_setup
PROXY_PIDS=()
stop_proxies() {
        local p
        for p in "${PROXY_PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
}
IT_CLEANUP_HOOK=stop_proxies

# The peer: an unmeshed container pod serving "peer" on 8080.
f=$(it_pod peer.json '{name: "peer", runtime_handler: "unishim",
        containers: [{name: "web", image: $img, command: ["/bin/sh", "-c"],
          args: ["mkdir -p /www && echo peer > /www/index.html && exec httpd -f -p 8080 -h /www"]}]}')
out_rc out rc ectl run "$f"
expect_eq "run the peer pod" 0 "$rc"
peer_ip=$(pod_ip peer)

# through_proxy NAME IP LOG_COMMAND...: with the rules in place, a peer's
# fetch of IP:8080 and NAME's fetch of the peer work and pass the proxy,
# whose log LOG_COMMAND prints.
through_proxy() {
        local name=$1 ip=$2 out rc log
        shift 2
        out_rc out rc ectl exec -t 15 peer -- wget -qO- "http://$ip:8080/"
        expect_eq "$name: with the mesh's rules the peer still reaches the app" "app-$name" "$out"
        out_rc out rc ectl exec -t 15 "$name" -c app -- wget -qO- "http://$peer_ip:8080/"
        expect_eq "$name: the app reaches the peer" peer "$out"
        wait_until 5 log_has "outbound $peer_ip:8080" "$@" || true
        out_ok log "$name: the proxy's log" "$@"
        grep -qxF "inbound $ip:8080" <<<"$log" && pass "$name: ... the peer's connection passed the proxy (inbound $ip:8080)" ||
                fail "$name: the proxy saw no inbound $ip:8080: $(tr '\n' ';' <<<"$log")"
        grep -qxF "outbound $peer_ip:8080" <<<"$log" && pass "$name: ... the app's connection passed the proxy (outbound $peer_ip:8080)" ||
                fail "$name: the proxy saw no outbound $peer_ip:8080: $(tr '\n' ';' <<<"$log")"
        expect_eq "$name: no connection the proxy could not forward" "" "$(grep -e dial-failed -e no-original <<<"$log" || true)"
        echo "# proxy log of $name: $(tr '\n' ';' <<<"$log")"
}

# run_app_pod NAME HANDLER ANNOTATIONS_JSON MORE_CONTAINERS_JSON: runs pod
# NAME whose container "app" serves "app-NAME" on 8080, plus the others.
run_app_pod() {
        local out rc f
        f=$(it_pod "$1.json" --arg n "$1" --arg h "$2" --argjson a "$3" --argjson more "$4" \
                '{name: $n, runtime_handler: $h, annotations: $a,
                  containers: ([{name: "app", image: $img, command: ["/bin/sh", "-c"],
                    args: ["mkdir -p /www && echo app-" + $n + " > /www/index.html && exec httpd -f -p 8080 -h /www"]}]
                    + $more)}')
        out_rc out rc ectl run "$f"
        expect_eq "$1: runs ($(jq -r '[.containers[].name] | join(", ")' "$f"))" 0 "$rc"
        [ "$rc" = 0 ] || echo "# $out"
        [ "$rc" = 0 ]
}

# mesh_check NAME HANDLER ANNOTATIONS_JSON: the proxy started by the test in
# the pod netns.
mesh_check() {
        local name=$1 handler=$2 ann=$3 ip ns log pid out rc
        run_app_pod "$name" "$handler" "$ann" '[]' || return 0
        ip=$(pod_ip "$name")
        ns=$(pod_netns "$ip")
        [ -n "$ns" ] && pass "$name: its netns holds its IP $ip" || fail "$name: no CRI netns holds $ip"
        [ -n "$ns" ] || return 0

        log=$IT_TMP/$name.proxy
        : >"$log"
        nsenter --net="$ns" "$PROXY" - 1337 >>"$log" 2>&1 &
        pid=$!
        PROXY_PIDS+=("$pid")
        wait_until 10 grep -qx ready "$log" || true
        expect_eq "$name: the proxy listens in the pod netns" ready "$(head -n1 "$log")"

        wait_until 30 ectl exec peer -- wget -q -O /dev/null "http://$ip:8080/" || true
        out_rc out rc ectl exec -t 15 peer -- wget -qO- "http://$ip:8080/"
        expect_eq "$name: without the mesh's rules the peer reaches the app" "app-$name" "$out"
        expect_eq "$name: ... and the proxy sees nothing" "" "$(grep -v '^ready$' "$log" || true)"

        istio_rules "$ns"
        through_proxy "$name" "$ip" cat "$log"

        kill "$pid" 2>/dev/null || true
        out_rc out rc ectl rm --timeout 0 "$name"
        expect_eq "$name: removed" 0 "$rc"
}

# hybrid_check: the sidecar as a mesh deploys it, a container of the pod.
hybrid_check() {
        local name=mesh-hybrid ip ns id out rc kern sidecar
        sidecar=$(jq -cn --arg img "$CRI_TEST_IMAGE" --arg proxy "$PROXY" \
                '[{name: "istio-proxy", image: $img, command: ["/mesh-proxy", "-", "1337"],
                   mounts: [{host_path: $proxy, container_path: "/mesh-proxy", readonly: true}]}]')
        run_app_pod "$name" unishim '{"unishim.io/isolation": "sandbox"}' "$sidecar" || return 0
        id=$(pod_id "$name")
        ip=$(pod_ip "$name")
        ns=$(pod_netns "$ip")
        out_ok kern "$name: exec uname -r in the app" ectl exec "$name" -c app -- uname -r
        [[ $kern =~ ^[0-9]+\.[0-9]+ ]] && [ "$kern" != "$(host_kernel)" ] &&
                pass "$name: the app runs in the VM ($kern)" ||
                fail "$name: app's uname -r '$kern' (host $(host_kernel))"
        expect_eq "$name: istio-proxy runs on the host, next to the VM" "$(host_kernel)" \
                "$(ectl exec "$name" -c istio-proxy -- uname -r </dev/null 2>&1 || true)"
        expect_match "$name: istio-proxy is in the pod netns (has the pod IP)" " $ip/" \
                "$(ectl exec "$name" -c istio-proxy -- ip -4 -o addr show </dev/null 2>&1 || true)"
        expect_eq "$name: istio-proxy has the pod's hostname" "$name" \
                "$(ectl exec "$name" -c istio-proxy -- hostname </dev/null 2>&1 || true)"
        expect_eq "$name: istio-proxy runs as uid 1337" 1337 \
                "$(ectl exec "$name" -c istio-proxy -- stat -c %u /proc/1 </dev/null 2>&1 || true)"
        wait_until 10 log_has ready ectl logs "$name" -c istio-proxy || true
        [ -n "$ns" ] && istio_rules "$ns"
        through_proxy "$name" "$ip" ectl logs "$name" -c istio-proxy
        out_rc out rc ectl rm --timeout 0 "$name"
        expect_eq "$name: removed" 0 "$rc"
        wait_until 15 outputs_nothing sandbox_leftovers "$id" || true
        expect_eq "$name: nothing of it left (shim, QEMU, virtiofsd, dirs, mounts, cgroups)" "" "$(sandbox_leftovers "$id")"
}

mesh_check mesh-runc runc '{}'
mesh_check mesh-container unishim '{"unishim.io/isolation": "container"}'
# vm_only_check: under a policy that allows VM kinds only, a container named
# istio-proxy gets no way out of the VM (on the host it would have the
# container kind's isolation). The unishim-sandbox handler's ConfigPath file
# is read per pod: it is made VM-only for this one pod.
vm_only_check() {
        local name=mesh-vmonly sidecar app_kern proxy_kern id
        sandbox_config_save
        jq '.isolation.allowed = ["sandbox"]' "$IT_TMP/sandbox-config.json" >"$ENV_SANDBOX_CONFIG"
        sidecar=$(jq -cn --arg img "$CRI_TEST_IMAGE" --arg proxy "$PROXY" \
                '[{name: "istio-proxy", image: $img, command: ["/mesh-proxy", "-", "1337"],
                   mounts: [{host_path: $proxy, container_path: "/mesh-proxy", readonly: true}]}]')
        if run_app_pod "$name" unishim-sandbox '{}' "$sidecar"; then
                id=$(pod_id "$name")
                # Two equal error messages must not pass as one kernel.
                out_ok app_kern "$name: exec uname -r in the app" ectl exec "$name" -c app -- uname -r
                out_ok proxy_kern "$name: exec uname -r in istio-proxy" \
                        ectl exec "$name" -c istio-proxy -- uname -r
                [[ $proxy_kern =~ ^[0-9]+\.[0-9]+ ]] && [ "$proxy_kern" = "$app_kern" ] &&
                        [ "$proxy_kern" != "$(host_kernel)" ] &&
                        pass "$name: under a VM-only policy istio-proxy stays in the VM ($proxy_kern)" ||
                        fail "$name: istio-proxy on '$proxy_kern', app on '$app_kern', host $(host_kernel)"
                expect_match "$name: the shim says why" "mesh sidecar but .* does not allow the container kind" \
                        "$(grep -a 'istio-proxy is a mesh sidecar' "$ENV_LOG" | tail -n1)"
                ectl rm --timeout 0 "$name" >/dev/null 2>&1 || true
                wait_until 15 outputs_nothing sandbox_leftovers "$id" || true
        fi
        sandbox_config_restore
}

if command -v qemu-system-x86_64 >/dev/null; then
        mesh_check mesh-sandbox unishim '{"unishim.io/isolation": "sandbox"}'
        hybrid_check
        vm_only_check
else
        echo "# qemu-system-x86_64 missing: the sandbox kind is not checked"
fi

out_rc out rc ectl rm --timeout 0 peer
expect_eq "peer removed" 0 "$rc"
expect_eq "no pod left" "" "$(ectl ps -q)"
expect_eq "no process left in the pods' cgroups (the host-side sidecar included)" "" "$(env_cgroup_pids)"
expect_eq "no shim left" "" "$(env_shim_pids)"
it_finish
