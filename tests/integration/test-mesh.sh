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
# (tests/tools/mesh-proxy) runs in the pod netns as uid 1337, as a sidecar
# next to the VM would, and logs the original destination of each connection.
#
# For the runc handler (the reference: it shows the test itself detects
# interception), a unishim container pod, and a unishim sandbox pod:
#  - without the rules a connection to the pod does not pass the proxy
#  - with them, a peer pod's fetch of POD_IP:8080 passes the proxy as inbound
#    and still reaches the workload (the proxy dials it from 127.0.0.6)
#  - the workload's fetch of the peer's IP passes the proxy as outbound
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
IT_CRI=1
PROXY=$UNISHIM_BUILD_DIR/tests/mesh-proxy
[ -x "$PROXY" ] || {
        echo "FAIL: $PROXY is not built"
        exit 1
}
for b in iptables-restore setpriv; do
        command -v "$b" >/dev/null || it_skip "$b missing (apt packages iptables, util-linux)"
done
it_setup
PROXY_PIDS=()
stop_proxies() {
        local p
        for p in "${PROXY_PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
}
IT_CLEANUP_HOOK=stop_proxies

# pod_netns IP: the CRI netns bind mount whose namespace holds IP.
pod_netns() {
        local f
        for f in "$ENV_STATE"/io.containerd.grpc.v1.cri/netns/*; do
                nsenter --net="$f" ip -4 -o addr show 2>/dev/null | grep -qF " $1/" && {
                        echo "$f"
                        return 0
                }
        done
        return 0
}

# The peer: an unmeshed container pod serving "peer" on 8080.
f=$(it_pod peer.json '{name: "peer", runtime_handler: "unishim",
        containers: [{name: "web", image: $img, command: ["/bin/sh", "-c"],
          args: ["mkdir -p /www && echo peer > /www/index.html && exec httpd -f -p 8080 -h /www"]}]}')
out_rc out rc ectl run "$f"
expect_eq "run the peer pod" 0 "$rc"
peer_ip=$(pod_ip peer)

# mesh_check NAME HANDLER ANNOTATIONS_JSON
mesh_check() {
        local name=$1 handler=$2 ann=$3 ip ns log pid out rc
        f=$(it_pod "$name.json" --arg n "$name" --arg h "$handler" --argjson a "$ann" \
                '{name: $n, runtime_handler: $h, annotations: $a,
                  containers: [{name: "app", image: $img, command: ["/bin/sh", "-c"],
                    args: ["mkdir -p /www && echo app-" + $n + " > /www/index.html && exec httpd -f -p 8080 -h /www"]}]}')
        out_rc out rc ectl run "$f"
        expect_eq "$name: runs" 0 "$rc"
        [ "$rc" = 0 ] || {
                echo "# $out"
                return 0
        }
        ip=$(pod_ip "$name")
        ns=$(pod_netns "$ip")
        [ -n "$ns" ] && pass "$name: its netns holds its IP $ip" || fail "$name: no CRI netns holds $ip"
        [ -n "$ns" ] || return 0

        log=$IT_TMP/$name.proxy
        : >"$log"
        nsenter --net="$ns" setpriv --reuid=1337 --regid=1337 --clear-groups "$PROXY" - >>"$log" 2>&1 &
        pid=$!
        PROXY_PIDS+=("$pid")
        wait_until 10 grep -qx ready "$log" || true
        expect_eq "$name: the proxy listens in the pod netns" ready "$(head -n1 "$log")"

        wait_until 30 ectl exec peer -- wget -q -O /dev/null "http://$ip:8080/" || true
        out_rc out rc ectl exec -t 15 peer -- wget -qO- "http://$ip:8080/"
        expect_eq "$name: without the mesh's rules the peer reaches the app" "app-$name" "$out"
        expect_eq "$name: ... and the proxy sees nothing" "" "$(grep -v '^ready$' "$log" || true)"

        nsenter --net="$ns" iptables-restore --noflush <<'EOF'
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
-A ISTIO_OUTPUT -s 127.0.0.6/32 -o lo -j RETURN
-A ISTIO_OUTPUT ! -d 127.0.0.1/32 -o lo -p tcp -m owner --uid-owner 1337 -j ISTIO_IN_REDIRECT
-A ISTIO_OUTPUT -o lo -m owner ! --uid-owner 1337 -j RETURN
-A ISTIO_OUTPUT -m owner --uid-owner 1337 -j RETURN
-A ISTIO_OUTPUT -d 127.0.0.1/32 -j RETURN
-A ISTIO_OUTPUT -j ISTIO_REDIRECT
-A ISTIO_REDIRECT -p tcp -j REDIRECT --to-ports 15001
-I PREROUTING 1 -p tcp -j ISTIO_INBOUND
-I PREROUTING 1 -i us-tap0 -j ISTIO_REDIRECT
-I OUTPUT 1 -p tcp -j ISTIO_OUTPUT
COMMIT
EOF
        out_rc out rc ectl exec -t 15 peer -- wget -qO- "http://$ip:8080/"
        expect_eq "$name: with the mesh's rules the peer still reaches the app" "app-$name" "$out"
        grep -qxF "inbound $ip:8080" "$log" && pass "$name: ... through the proxy (inbound $ip:8080)" ||
                fail "$name: the proxy saw no inbound $ip:8080: $(tr '\n' ';' <"$log")"

        out_rc out rc ectl exec -t 15 "$name" -- wget -qO- "http://$peer_ip:8080/"
        expect_eq "$name: the app reaches the peer" peer "$out"
        grep -qxF "outbound $peer_ip:8080" "$log" && pass "$name: ... through the proxy (outbound $peer_ip:8080)" ||
                fail "$name: the proxy saw no outbound $peer_ip:8080: $(tr '\n' ';' <"$log")"
        expect_eq "$name: no connection the proxy could not forward" "" "$(grep -e dial-failed -e no-original "$log" || true)"
        echo "# proxy log of $name: $(tr '\n' ';' <"$log")"

        kill "$pid" 2>/dev/null || true
        out_rc out rc ectl rm --timeout 0 "$name"
        expect_eq "$name: removed" 0 "$rc"
}

mesh_check mesh-runc runc '{}'
mesh_check mesh-container unishim '{"unishim.io/isolation": "container"}'
if command -v qemu-system-x86_64 >/dev/null; then
        mesh_check mesh-sandbox unishim '{"unishim.io/isolation": "sandbox"}'
else
        echo "# qemu-system-x86_64 missing: the sandbox kind is not checked"
fi

ectl rm --timeout 0 peer >/dev/null 2>&1 || true
expect_eq "no pod left" "" "$(ectl ps -q)"
it_finish
