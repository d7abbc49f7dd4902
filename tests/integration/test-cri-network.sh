#!/bin/bash
# Pod networking and namespace sharing through the real CRI and CNI (bridge
# inside the environment's own netns): containers of a pod share net, ipc and
# uts (busybox httpd in one, wget from the other over 127.0.0.1; same hostname;
# same ipc namespace), each pod gets an IP on the bridge, and pod B reaches pod
# A's httpd at A's IP. Runs under `unishim` and `runc` and compares.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
IT_CRI=1
it_setup

PORT=8080
declare -A RES=()
for h in unishim runc; do
        echo "# ---- handler $h ----"
        a=web-$h
        b=client-$h
        fa=$(it_pod "$a.json" --arg n "$a" --arg h "$h" --argjson port "$PORT" '{name: $n, runtime_handler: $h,
                containers: [
                  {name: "server", image: $img, command: ["/bin/sh", "-c"],
                   args: ["mkdir -p /www && echo served-by-\($n) > /www/index.html && exec httpd -f -p \($port) -h /www"]},
                  {name: "side", image: $img, command: ["sleep", "3600"]}]}')
        fb=$(it_pod "$b.json" --arg n "$b" --arg h "$h" '{name: $n, runtime_handler: $h,
                containers: [{name: "app", image: $img, command: ["sleep", "3600"]}]}')
        out_rc out rc ectl run "$fa"
        expect_eq "$h: run pod $a (httpd + side)" 0 "$rc"
        out_rc out rc ectl run "$fb"
        expect_eq "$h: run pod $b" 0 "$rc"

        # Same pod: net (127.0.0.1), uts, ipc shared; pid not (kubelet's default).
        wait_until 10 ectl exec "$a" -c side -- wget -q -O /dev/null "http://127.0.0.1:$PORT/" || true
        out_rc out rc ectl exec "$a" -c side -- wget -qO- "http://127.0.0.1:$PORT/"
        expect_eq "$h: side container fetches the server's page over 127.0.0.1" "served-by-$a" "$out"
        # Each value is checked to be one (exit 0, the expected form) before
        # it is compared: two equal error messages must not pass as equal.
        out_ok hs "$h: hostname in $a/server" ectl exec "$a" -c server -- hostname
        out_ok hc "$h: hostname in $a/side" ectl exec "$a" -c side -- hostname
        expect_eq "$h: same hostname in both containers" "$hs" "$hc"
        expect_eq "$h: hostname is the pod name" "$a" "$hs"
        out_ok is "$h: ipc namespace of $a/server" ectl exec "$a" -c server -- readlink /proc/self/ns/ipc
        out_ok ic "$h: ipc namespace of $a/side" ectl exec "$a" -c side -- readlink /proc/self/ns/ipc
        expect_match "$h: ipc namespace readable" '^ipc:\[[0-9]+\]$' "$is"
        expect_eq "$h: same ipc namespace" "$is" "$ic"
        out_ok ns "$h: net namespace of $a/server" ectl exec "$a" -c server -- readlink /proc/self/ns/net
        out_ok nc "$h: net namespace of $a/side" ectl exec "$a" -c side -- readlink /proc/self/ns/net
        expect_match "$h: net namespace readable" '^net:\[[0-9]+\]$' "$ns"
        expect_eq "$h: same net namespace" "$ns" "$nc"
        out_ok ps "$h: pid namespace of $a/server" ectl exec "$a" -c server -- readlink /proc/self/ns/pid
        out_ok pc "$h: pid namespace of $a/side" ectl exec "$a" -c side -- readlink /proc/self/ns/pid
        [[ $ps =~ ^pid:\[[0-9]+\]$ ]] && [[ $pc =~ ^pid:\[[0-9]+\]$ ]] && [ "$ps" != "$pc" ] &&
                pass "$h: pid namespace per container" || fail "$h: pid namespaces: '$ps' '$pc'"
        out_ok nb "$h: net namespace of $b" ectl exec "$b" -- readlink /proc/self/ns/net
        [[ $nb =~ ^net:\[[0-9]+\]$ ]] && [ "$nb" != "$ns" ] && pass "$h: another pod has another net namespace" ||
                fail "$h: pods share a netns: '$nb' '$ns'"
        # The pod netns is not the host's nor the environment's.
        [ "$ns" != "$(readlink /proc/self/ns/net)" ] && [ "$ns" != "$(readlink /proc/"$(env_containerd_pid)"/ns/net)" ] &&
                pass "$h: pod netns differs from the host's and containerd's" || fail "$h: pod in a shared netns"

        # Pod to pod over the env's bridge.
        ipa=$(pod_ip "$a")
        ipb=$(pod_ip "$b")
        subnet=${ENV_SUBNET%.0/24}
        expect_match "$h: pod $a has an IP in the env's subnet" "^${subnet//./\\.}\.[0-9]+$" "$ipa"
        expect_match "$h: pod $b has an IP in the env's subnet" "^${subnet//./\\.}\.[0-9]+$" "$ipb"
        [ "$ipa" != "$ipb" ] && pass "$h: distinct pod IPs" || fail "$h: same IP $ipa"
        expect_match "$h: eth0 inside pod $a carries its IP" "inet $ipa/" \
                "$(ectl exec "$a" -c side -- ip -4 addr show eth0 </dev/null 2>&1 || true)"
        # (no wget -T: busybox-static 1.35 wget segfaults with it; -t bounds the exec)
        out_rc out rc ectl exec "$b" -t 10 -- wget -qO- "http://$ipa:$PORT/"
        expect_eq "$h: pod $b fetches pod $a's page at $ipa" "served-by-$a" "$out"
        RES[$h.p2p]=${out/$a/A}
        out_rc out rc ectl exec "$b" -- ping -c 1 -W 2 "${subnet}.1"
        expect_eq "$h: the bridge gateway answers ping from the pod" 0 "$rc"
        # The bridge lives in the env's netns, not on the host.
        env_nsenter ip link show "$ENV_BRIDGE" >/dev/null 2>&1 && pass "$h: bridge $ENV_BRIDGE in the env netns" ||
                fail "$h: bridge $ENV_BRIDGE missing in netns $ENV_NETNS"
        ip link show "$ENV_BRIDGE" >/dev/null 2>&1 && fail "$h: bridge $ENV_BRIDGE on the host" ||
                pass "$h: no bridge on the host"
        RES[$h.pidsame]=$([ "$ps" = "$pc" ] && echo same || echo different)
        RES[$h.ipcsame]=$([ "$is" = "$ic" ] && echo same || echo different)

        pa=$(pod_id "$a")
        pb=$(pod_id "$b")
        out_rc out rc ectl rm "$a" "$b"
        expect_eq "$h: rm both pods" 0 "$rc"
        wait_until 10 no_pod_shim "$pa" || true
        wait_until 10 no_pod_shim "$pb" || true
        expect_eq "$h: nothing left of the pods" "" "$(pod_leftovers "$pa" "$pb")"
        expect_eq "$h: no netns bind mount left" "" "$(netns_mounts)"
        expect_eq "$h: IPs released" "" "$(ls "$ENV_STATE/cni/ipam/$ENV_CNI_NET" 2>/dev/null | grep -v -e lock -e last_reserved || true)"
        expect_eq "$h: no veth left on the bridge" "" "$(env_nsenter ip -o link show master "$ENV_BRIDGE" 2>/dev/null || true)"
done

echo "# ---- unishim vs runc ----"
for k in p2p pidsame ipcsame; do
        expect_eq "same under unishim and runc: $k" "${RES[runc.$k]:-}" "${RES[unishim.$k]:-}"
done

it_finish
