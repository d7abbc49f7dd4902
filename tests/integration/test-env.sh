#!/bin/bash
# The test environment itself: env-up brings up a private containerd with the
# test image and unishim registered, is idempotent, writes the env file;
# env-down leaves nothing behind (processes, mounts, cgroups, dirs, the netns
# with the CNI bridge, the registry). (Runs containers with the runc shim only:
# what is tested here is the environment, not unishim.)
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
RUNTIME=$RUNC_RUNTIME # only for the summary line: unishim is not under test here

[ "$(id -u)" = 0 ] || it_skip "needs root"
for b in containerd ctr jq; do
        command -v "$b" >/dev/null || it_skip "$b not installed (make deps-runtime)"
done
[ -x /bin/busybox ] || it_skip "busybox-static not installed (make deps-runtime)"

IT_TMP=$(mktemp -d /tmp/unishim-it.XXXXXX)
export UNISHIM_ENV_NAME=unishim-envtest-$$ UNISHIM_ENV_FILE=$IT_TMP/env.sh
env_init "$UNISHIM_ENV_NAME"
trap it_cleanup EXIT
ENVDIR=$(dirname "${BASH_SOURCE[0]}")/../env

out_rc out rc "$ENVDIR/env-up.sh"
expect_eq "env-up: exit status" 0 "$rc"
expect_match "env-up prints CONTAINERD_ADDRESS" "export CONTAINERD_ADDRESS=$ENV_ADDR" "$out"
[ -s "$UNISHIM_ENV_FILE" ] && pass "env file written" || fail "no env file $UNISHIM_ENV_FILE"
vars=$(env -i bash -c ". '$UNISHIM_ENV_FILE'; echo \$CONTAINERD_ADDRESS \$CONTAINERD_NAMESPACE \$TEST_IMAGE")
expect_eq "env file exports address, namespace, image" "$ENV_ADDR $ENV_NS $TEST_IMAGE" "$vars"
pid1=$(env_containerd_pid || true)
[ -n "$pid1" ] && pass "containerd runs (pid $pid1)" || fail "containerd not running"
out_rc out rc "$ENVDIR/env-up.sh"
expect_match "env-up again: already up" "already up" "$out"
pid2=$(env_containerd_pid || true)
[ -n "$pid2" ] && [ "$pid2" = "$pid1" ] && pass "env-up again: same containerd (pid $pid2)" ||
        fail "env-up again: containerd pid '$pid2', before '$pid1'"

expect_eq "test image imported" "$TEST_IMAGE" "$(ectr images ls -q | grep -xF "$TEST_IMAGE")"
link=$(readlink "$ENV_BINDIR/containerd-shim-unishim-v2" || true)
expect_eq "shim linked on containerd's PATH" "$(env_shim_binary)" "$link"
env_path=$(tr '\0' '\n' <"/proc/$pid1/environ" | sed -n 's/^PATH=//p')
expect_eq "containerd's PATH starts with the shim dir" "$ENV_BINDIR" "${env_path%%:*}"
grep -q 'restrict_oom_score_adj = true' "$ENV_CONFIG" && pass "restrict_oom_score_adj = true" ||
        fail "restrict_oom_score_adj missing from $ENV_CONFIG"
out_rc out rc ectr run --rm --runtime "$RUNC_RUNTIME" "$TEST_IMAGE" envtest-1 sh -c 'id user; ls /bin/busybox'
expect_eq "image: busybox, root and user 1000" "uid=1000(user) gid=1000(user) groups=1000(user)
/bin/busybox" "$out"

# The CRI side: netns, registry, CNI bridge, handlers, images by pull.
expect_eq "env file exports the CRI endpoint and images" \
        "$CRI_ENDPOINT $CRI_TEST_IMAGE $CRI_PAUSE_IMAGE $ENV_NETNS" \
        "$(env -i bash -c ". '$UNISHIM_ENV_FILE'; echo \$CRI_ENDPOINT \$CRI_TEST_IMAGE \$CRI_PAUSE_IMAGE \$UNISHIM_ENV_NETNS")"
[ -e "$ENV_NETNS_PATH" ] && pass "netns $ENV_NETNS exists" || fail "no netns $ENV_NETNS_PATH"
expect_eq "containerd runs in the env's netns" "$(stat -L -c %i "$ENV_NETNS_PATH")" "$(stat -L -c %i "/proc/$pid1/ns/net")"
rpid=$(env_registry_pid || true)
[ -n "$rpid" ] && pass "registry runs (pid $rpid)" || fail "registry not running"
[ -n "$rpid" ] && expect_eq "registry runs in the env's netns" "$(stat -L -c %i "$ENV_NETNS_PATH")" "$(stat -L -c %i "/proc/$rpid/ns/net")"
env_registry_up && pass "registry answers on $ENV_REGISTRY inside the netns" || fail "registry does not answer"
if [ -x "$UNISHIMCTL" ]; then
        out_rc out rc ectl version
        expect_match "CRI answers (unishimctl version)" "RuntimeApiVersion: v1" "$out"
        # A runc pod (unishim is not under test here): pulls both images
        # through the CRI, gets an IP on the bridge; left running for env-down.
        env_pod_json "$IT_TMP/pod.json" '{name: "envtest", runtime_handler: "runc",
                containers: [{name: "app", image: $img, command: ["sleep", "1000"]}]}'
        out_rc out rc ectl run "$IT_TMP/pod.json"
        expect_eq "CRI pod (PullImage from the registry, CNI) runs" 0 "$rc"
        expect_match "pod has an IP in $ENV_SUBNET" "ip ${ENV_SUBNET%.0/24}\.[0-9]+ " "$(ectl inspect envtest 2>&1)"
        env_nsenter ip link show "$ENV_BRIDGE" >/dev/null 2>&1 && pass "bridge $ENV_BRIDGE in the netns" ||
                fail "no bridge $ENV_BRIDGE in the netns"
        ip link show "$ENV_BRIDGE" >/dev/null 2>&1 && fail "bridge $ENV_BRIDGE on the host" || pass "no bridge on the host"
else
        fail "$UNISHIMCTL not built"
fi
grep -q 'runtimes.unishim-sandbox.options' "$ENV_CONFIG" && grep -q "ConfigPath = \"$ENV_SANDBOX_CONFIG\"" "$ENV_CONFIG" &&
        pass "unishim-sandbox handler with ConfigPath" || fail "no unishim-sandbox handler in $ENV_CONFIG"
expect_eq "ConfigPath file defaults to sandbox" sandbox "$(jq -r .isolation.default "$ENV_SANDBOX_CONFIG" 2>/dev/null)"

# Leave a running container behind: env-down must clean it up.
ectr run -d --runtime "$RUNC_RUNTIME" "$TEST_IMAGE" envtest-2 sleep 1000 >/dev/null 2>&1 ||
        fail "run -d"
out_rc out rc "$ENVDIR/env-down.sh"
expect_eq "env-down: exit status" 0 "$rc"
[ -n "$pid1" ] && [ ! -d "/proc/$pid1" ] && pass "containerd stopped" || fail "containerd $pid1 still alive"
[ ! -e "$ENV_STATE" ] && [ ! -e "$ENV_ROOT" ] && pass "state and root dirs removed" ||
        fail "left: $(ls -d "$ENV_STATE" "$ENV_ROOT" 2>/dev/null)"
expect_eq "no mounts left" "" "$(env_mounts)"
expect_eq "no shim left" "" "$(env_shim_pids)"
expect_eq "no netns left" "" "$(ip netns list | awk '{ print $1 }' | grep -xF "$ENV_NETNS" || true)"
[ -n "${rpid:-}" ] && [ ! -d "/proc/$rpid" ] && pass "registry stopped" || fail "registry ${rpid:-?} still alive"
expect_eq "no process of the env (containerd, registry, shim, pause) left" "" \
        "$(ps -eo pid=,args= | grep -F -e "$ENV_STATE" -e "$ENV_ROOT" | grep -v grep || true)"
expect_eq "no CNI cache left" "" "$(ls /var/lib/cni/results/ 2>/dev/null | grep -F "$ENV_CNI_NET-" || true)"
expect_eq "no cgroup left" "" "$(find /sys/fs/cgroup/*/"$ENV_NS" -maxdepth 0 2>/dev/null || true)"
[ ! -e "$UNISHIM_ENV_FILE" ] && pass "env file removed" || fail "env file left"
out_rc out rc "$ENVDIR/env-down.sh"
expect_eq "env-down again: exit status" 0 "$rc"

it_finish
