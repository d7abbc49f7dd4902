#!/bin/bash
# Dual-stack pods (UNISHIM_ENV_IPV6=1: the env's CNI gives every pod an IPv4
# address and a ULA IPv6 address): a sandbox pod keeps its IPv6 identity too
# (docs/network.md, "IPv6").
#  - the pod netns has the pod's global IPv6 address; the guest has
#    fd75:6e69:7368::2/126, usable at once (no DAD: not tentative), and a
#    default route via the tap's fd75:6e69:7368::1
#  - a container pod fetches the sandbox pod's page at its pod IPv6 address
#    (DNAT to the guest), and the sandbox pod fetches the container pod's at
#    its IPv6 address (SNAT to the pod's)
#  - through a mesh (Istio's nat rules for both families and a transparent
#    proxy in the pod netns, as test-mesh does for IPv4): the container pod's
#    IPv6 connection to the sandbox pod passes the proxy as inbound and is
#    dialled on from ::6 to the guest, and the guest's IPv6 connection to the
#    container pod passes it as outbound
#  - rm leaves nothing
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
IT_CRI=1
export UNISHIM_ENV_IPV6=1
command -v qemu-system-x86_64 >/dev/null || it_skip "qemu-system-x86_64 missing (apt package qemu-system-x86)"
PROXY=$UNISHIM_BUILD_DIR/tests/mesh-proxy
[ -x "$PROXY" ] || {
        echo "FAIL: $PROXY is not built"
        exit 1
}
it_setup
PROXY_PID=
stop_proxy() { [ -z "$PROXY_PID" ] || kill "$PROXY_PID" 2>/dev/null || true; }
IT_CLEANUP_HOOK=stop_proxy

# web_pod NAME ANNOTATIONS_JSON: a pod serving NAME on 8080.
web_pod() {
        local f out rc
        f=$(it_pod "$1.json" --arg n "$1" --argjson a "$2" '{name: $n, runtime_handler: "unishim",
                annotations: $a, containers: [{name: "web", image: $img, command: ["/bin/sh", "-c"],
                args: ["mkdir -p /www && echo " + $n + " > /www/index.html && exec httpd -f -p 8080 -h /www"]}]}')
        out_rc out rc ectl run "$f"
        expect_eq "run $1" 0 "$rc"
        [ "$rc" = 0 ] || echo "# $out"
}

# global_ip6 NETNS: the global IPv6 address of eth0 in NETNS.
global_ip6() {
        local out
        out=$(nsenter --net="$1" ip -6 -o addr show dev eth0 scope global 2>/dev/null) || return 0
        awk '{ sub("/.*", "", $4); print $4; exit }' <<<"$out"
}

web_pod c6 '{}'
web_pod s6 '{"unishim.io/isolation": "sandbox"}'
ids=$(pod_id s6)
out_ok guest "exec ip -6 addr in the guest" ectl exec s6 -- ip -6 -o addr show dev eth0 scope global
expect_match "the guest has fd75:6e69:7368::2/126" "inet6 fd75:6e69:7368::2/126 " "$guest"
[[ $guest != *tentative* ]] && pass "the guest's IPv6 address is usable at once (not tentative)" ||
        fail "the guest's address is tentative: $guest"
expect_match "the guest's default IPv6 route is the tap" "default via fd75:6e69:7368::1" \
        "$(ectl exec s6 -- ip -6 route </dev/null 2>&1 || true)"

c6=$(global_ip6 "$(pod_netns "$(pod_ip c6)")")
s6=$(global_ip6 "$(pod_netns "$(pod_ip s6)")")
expect_match "the container pod has an IPv6 address in the env's /64" "^${ENV_SUBNET6%::/64}:" "$c6"
expect_match "the sandbox pod's netns has its pod IPv6 address" "^${ENV_SUBNET6%::/64}:" "$s6"

wait_until 30 ectl exec c6 -- wget -q -O /dev/null "http://[$s6]:8080/" || true
out_rc out rc ectl exec -t 15 c6 -- wget -qO- "http://[$s6]:8080/"
expect_eq "the container pod fetches the sandbox pod's page at [$s6]" s6 "$out"
out_rc out rc ectl exec -t 15 s6 -- wget -qO- "http://[$c6]:8080/"
expect_eq "the sandbox pod fetches the container pod's page at [$c6]" c6 "$out"

# ---- the mesh over IPv6: inbound through ::6, outbound from the tap ----
ns=$(pod_netns "$(pod_ip s6)")
log=$IT_TMP/s6.proxy
: >"$log"
# (Istio's init gives lo ::6 for its inbound passthrough, as 127.0.0.6 is
# loopback anyway)
nsenter --net="$ns" ip -6 addr add ::6/128 dev lo
nsenter --net="$ns" "$PROXY" - 1337 >>"$log" 2>&1 &
PROXY_PID=$!
wait_until 10 grep -qx ready "$log" || true
istio_rules "$ns" 4
istio_rules "$ns" 6
out_rc out rc ectl exec -t 15 c6 -- wget -qO- "http://[$s6]:8080/"
expect_eq "with the mesh's rules the container pod still reaches the sandbox pod over IPv6" s6 "$out"
grep -qxF "inbound [$s6]:8080" "$log" && pass "... through the proxy (inbound [$s6]:8080, dialled on from ::6)" ||
        fail "the proxy saw no inbound [$s6]:8080: $(tr '\n' ';' <"$log")"
out_rc out rc ectl exec -t 15 s6 -- wget -qO- "http://[$c6]:8080/"
expect_eq "with the mesh's rules the sandbox pod still reaches the container pod over IPv6" c6 "$out"
wait_until 5 log_has "outbound [$c6]:8080" cat "$log" || true
grep -qxF "outbound [$c6]:8080" "$log" && pass "... through the proxy (outbound [$c6]:8080)" ||
        fail "the proxy saw no outbound [$c6]:8080: $(tr '\n' ';' <"$log")"
expect_eq "no connection the proxy could not forward" "" "$(grep -e dial-failed -e no-original "$log" || true)"
echo "# proxy log: $(tr '\n' ';' <"$log")"
kill "$PROXY_PID" 2>/dev/null || true

for p in c6 s6; do
        out_rc out rc ectl rm --timeout 0 "$p"
        expect_eq "rm $p" 0 "$rc"
done
wait_until 15 outputs_nothing sandbox_leftovers "$ids" || true
expect_eq "nothing of the sandbox pod left" "" "$(sandbox_leftovers "$ids")"
expect_eq "no pod listed" "" "$(ectl ps -q)"
it_finish
