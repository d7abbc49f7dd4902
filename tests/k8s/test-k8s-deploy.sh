#!/bin/bash
# What an operator installs (deploy/), under a real kubelet (Kubernetes
# v1.23, K8S_BIN_DIR): k8s-up on a private environment whose containerd is
# first stripped of unishim's handlers (a node without unishim); a pod on
# RuntimeClass unishim-sandbox stays unschedulable (the RuntimeClass's
# nodeSelector). The installer's image (deploy/installer/build-image.sh) is
# pushed to the environment's registry and deploy/unishim-deploy.yaml's
# DaemonSet runs it, with the environment's containerd config, drop-in
# path, install dir and restart command as its parameters: the files are on
# the node, the drop-in keeps the CRI section and adds the handlers, the
# config imports it, containerd was restarted, the node is labelled. The
# waiting pod then runs as a sandbox VM through the installed shim, with the
# RuntimeClass's overhead in its spec and its cgroup's limit, and, as the
# node's first, builds the node's VM template in the background. Then
# deploy/unishim-cleanup.yaml's DaemonSet uninstalls: no label, no drop-in,
# the config byte for byte as before, no installed files, no template
# holder, containerd restarted without the handlers. Skipped without the Kubernetes binaries.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

k8s_setup

DEPLOY_IMAGE=$ENV_REGISTRY/unishim/deploy:test
# The installer's parameters: the environment's paths on the node.
DEPLOY_INSTALL_DIR=$ENV_STATE/opt-unishim
DEPLOY_DROPIN=$ENV_STATE/conf.d/unishim.toml
DEPLOY_RESTART=$IT_TMP/restart-containerd.sh
# (containerd's PATH starts with the env's bin dir, where env-up linked the
# build's shim)
DEPLOY_SHIM_LINK=$ENV_BINDIR/containerd-shim-unishim-v2
DEPLOY_NS=kube-system
POD_NS=deploy-test

# The restart command the installer runs on the node (what systemctl
# restart containerd is on a node): stops the environment's containerd and
# starts it as env-up does, with the config as it is now (env-up would
# render it again). It leaves the caller's cgroups first: the installer's
# pod's, which the kubelet empties when the pod goes.
cat >"$DEPLOY_RESTART" <<EOF
#!/bin/bash
set -eu
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
old=\$(cat $ENV_PIDFILE)
while IFS=: read -r _ ctrl path; do
        case \$ctrl in
        "") d=/sys/fs/cgroup/unified ;;
        name=*) d=/sys/fs/cgroup/\${ctrl#name=} ;;
        *) d=/sys/fs/cgroup/\$ctrl ;;
        esac
        echo \$\$ >"\$d\$path/cgroup.procs" 2>/dev/null || true
done </proc/\$old/cgroup
kill -TERM "\$old"
for ((i = 0; i < 600; i++)); do
        kill -0 "\$old" 2>/dev/null || break
        sleep 0.1
done
kill -KILL "\$old" 2>/dev/null || true
PATH=$ENV_BINDIR:\$PATH setsid nsenter --net=$ENV_NETNS_PATH containerd --config $ENV_CONFIG \\
        </dev/null >>$ENV_LOG 2>&1 &
echo \$! >$ENV_PIDFILE
for ((i = 0; i < 600; i++)); do
        timeout 5 ctr -a $ENV_ADDR version >/dev/null 2>&1 && exit 0
        sleep 0.1
done
echo "containerd did not answer on $ENV_ADDR after its restart" >&2
exit 1
EOF
chmod 0755 "$DEPLOY_RESTART"

cri_answers() {
        CTR_TIMEOUT=10 ectl version
}

# node_label: the node's unishim.io/installed label ("" without it).
node_label() {
        kc get node "$K8S_NODE_NAME" -o jsonpath='{.metadata.labels.unishim\.io/installed}'
}
label_is() {
        [ "$(node_label 2>/dev/null)" = "$1" ]
}

# pod_unschedulable POD: the scheduler found no node for it.
pod_unschedulable() {
        [ "$(kc -n "$POD_NS" get pod "$1" \
                -o jsonpath='{.status.conditions[?(@.type=="PodScheduled")].reason}' 2>/dev/null)" = Unschedulable ]
}

# deploy_render FILE: FILE (an operator's manifest of deploy/) with the
# image from the environment's registry and the environment's paths as the
# installer's parameters; the API server at the node IP (this cluster runs
# no kube-proxy for the service IP).
deploy_render() {
        local kubelet
        kubelet=$(k8s_pid kubelet)
        sed -e "s|image: docker.io/unishim/deploy:latest|image: $DEPLOY_IMAGE|" \
                -e "s|{name: INSTALL_DIR, value: /opt/unishim}|{name: INSTALL_DIR, value: $DEPLOY_INSTALL_DIR}|" \
                -e "s|{name: CONTAINERD_CONFIG, value: /etc/containerd/config.toml}|{name: CONTAINERD_CONFIG, value: $ENV_CONFIG}|" \
                -e "s|{name: CONTAINERD_DROPIN, value: /etc/containerd/conf.d/unishim.toml}|{name: CONTAINERD_DROPIN, value: $DEPLOY_DROPIN}|" \
                -e "s|{name: CONTAINERD_RESTART, value: systemctl restart containerd}|{name: CONTAINERD_RESTART, value: $DEPLOY_RESTART}|" \
                -e "s|{name: SHIM_LINK, value: /usr/local/bin/containerd-shim-unishim-v2}|{name: SHIM_LINK, value: $DEPLOY_SHIM_LINK}|" \
                -e "s|{name: HOST_EXEC, value: nsenter --target 1 --mount --}|{name: HOST_EXEC, value: nsenter --target $kubelet --mount --}\\
        - {name: KUBERNETES_SERVICE_HOST, value: \"$K8S_NODE_IP\"}\\
        - {name: KUBERNETES_SERVICE_PORT, value: \"6443\"}|" \
                "$UNISHIM_SOURCE_DIR/deploy/$1"
}

# deploy_rendered_ok FILE: every parameter was replaced (a default left
# would touch the machine's own containerd).
deploy_rendered_ok() {
        ! grep -v '^[[:space:]]*#' "$1" |
                grep -qE '/etc/containerd|value: /opt/unishim\}|/usr/local/bin|--target 1 |systemctl|docker.io/' &&
                [ "$(grep -c "KUBERNETES_SERVICE_HOST" "$1")" = 1 ]
}

# deploy_run NAME OUT WHAT: deploy/NAME.yaml rendered (deploy_render) into
# OUT, applied, and its DaemonSet NAME rolled out (its pod Ready: WHAT).
deploy_run() {
        local out rc t0=$SECONDS
        deploy_render "$1.yaml" >"$2"
        deploy_rendered_ok "$2" && pass "deploy/$1.yaml: the parameters are the environment's" ||
                fail "deploy/$1.yaml: a parameter was not replaced: $(grep -E 'image:|value:' "$2")"
        out_rc out rc kc apply -f "$2"
        expect_eq "kubectl apply deploy/$1.yaml" 0 "$rc"
        out_rc out rc kc_long -n "$DEPLOY_NS" rollout status "ds/$1" --timeout="${K8S_TIMEOUT}s"
        expect_eq "DaemonSet $1 rolled out (its pod Ready: $3)" 0 "$rc"
        echo "# $3 $((SECONDS - t0)) s after apply"
}

# pss PID...: the processes' summed PSS in KiB.
pss() {
        local p t=0 v
        for p in "$@"; do
                v=$(awk '$1 == "Pss:" { print $2 }' "/proc/$p/smaps_rollup" 2>/dev/null) || v=0
                t=$((t + ${v:-0}))
        done
        echo "$t"
}

# ---- a node without unishim ----
echo "# ---- a node without unishim's handlers ----"
out_rc out rc env -u KUBECONFIG KUBECTL="$K8S_BIN/kubectl" UNISHIM_BUILD_DIR="$UNISHIM_BUILD_DIR" \
        "$UNISHIM_SOURCE_DIR/deploy/installer/build-image.sh" "$IT_TMP/deploy-image" "$DEPLOY_IMAGE"
expect_eq "deploy/installer/build-image.sh builds the installer's image" 0 "$rc"
[ "$rc" = 0 ] || echo "$out"
ectr images import --no-unpack "$IT_TMP/deploy-image/image.tar" >/dev/null
out_rc out rc env_nsenter timeout -k 5 "$CTR_TIMEOUT" ctr -a "$ENV_ADDR" -n "$ENV_NS" \
        images push --plain-http "$DEPLOY_IMAGE"
expect_eq "the image is in the environment's registry" 0 "$rc"

awk '/^[[:space:]]*\[/ { skip = ($0 ~ /\.runtimes\.unishim/) } !skip' "$ENV_CONFIG" >"$ENV_CONFIG.new"
mv "$ENV_CONFIG.new" "$ENV_CONFIG"
kc label node "$K8S_NODE_NAME" unishim.io/installed- >/dev/null 2>&1 || true
out_rc out rc "$DEPLOY_RESTART"
expect_eq "containerd restarted without unishim's handlers" 0 "$rc"
wait_until 60 cri_answers || fail "the CRI does not answer after the restart"
config_before=$(sha256sum <"$ENV_CONFIG")
expect_eq "containerd's effective config has no unishim handler" "" \
        "$(containerd --config "$ENV_CONFIG" config dump 2>&1 | grep -F 'runtimes.unishim' || true)"

kc create namespace "$POD_NS" >/dev/null
wait_until 60 kc -n "$POD_NS" get serviceaccount default || fail "no default service account in $POD_NS"
cat >"$IT_TMP/pod.yaml" <<EOF
apiVersion: v1
kind: Pod
metadata:
  name: vm1
  namespace: $POD_NS
spec:
  runtimeClassName: unishim-sandbox
  terminationGracePeriodSeconds: 2
  enableServiceLinks: false
  containers:
  - name: app
    image: $CRI_TEST_IMAGE
    imagePullPolicy: IfNotPresent
    command: [/bin/sh, -c, 'trap "exit 0" TERM; while :; do sleep 1; done']
    resources:
      limits: {cpu: "1", memory: 128Mi}
EOF
out_rc out rc kc apply -f "$IT_TMP/pod.yaml"
expect_eq "kubectl apply a pod of RuntimeClass unishim-sandbox" 0 "$rc"
wait_until 60 pod_unschedulable vm1 &&
        pass "no node for it: the RuntimeClass's nodeSelector (unishim.io/installed=true)" ||
        fail "pod vm1 not Unschedulable: $(kc -n "$POD_NS" get pod vm1 -o jsonpath='{.status}' 2>&1)"

# ---- install: the DaemonSet ----
echo "# ---- install: deploy/unishim-deploy.yaml ----"
containerd_before=$(env_containerd_pid || true)
deploy_run unishim-deploy "$IT_TMP/deploy.yaml" installed
ipod=$(kc -n "$DEPLOY_NS" get pods -l name=unishim-deploy -o jsonpath='{.items[*].metadata.name}' 2>/dev/null || true)
expect_match "the installer's log says it restarted containerd and labelled the node" \
        "restarting containerd: $DEPLOY_RESTART.*label unishim.io/installed=true.*installed" \
        "$(kc -n "$DEPLOY_NS" logs "$ipod" 2>&1 | tr '\n' ' ')"
expect_eq "node label unishim.io/installed=true" true "$(node_label 2>&1)"
for f in bin/containerd-shim-unishim-v2:shim/containerd-shim-unishim-v2 bin/unishimctl:cri/unishimctl \
        share/unishim/vmlinux:vmm/guest-image/vmlinux share/unishim/initramfs.cpio:vmm/guest-image/initramfs.cpio \
        share/unishim/kernel-config:vmm/guest-image/kernel-config; do
        cmp -s "$DEPLOY_INSTALL_DIR/${f%%:*}" "$UNISHIM_BUILD_DIR/${f#*:}" &&
                pass "installed: ${f%%:*}" || fail "$DEPLOY_INSTALL_DIR/${f%%:*} is not the build's ${f#*:}"
done
for h in unishim unishim-sandbox unishim-vm; do
        cmp -s "$DEPLOY_INSTALL_DIR/etc/$h.json" "$UNISHIM_SOURCE_DIR/deploy/installer/etc/$h.json" &&
                pass "installed: etc/$h.json" || fail "$DEPLOY_INSTALL_DIR/etc/$h.json missing or different"
done
expect_eq "the shim on containerd's PATH is the installed one" "$DEPLOY_INSTALL_DIR/bin/containerd-shim-unishim-v2" \
        "$(readlink "$DEPLOY_SHIM_LINK")"
expect_match "the config imports the drop-in" "^imports = \\[\"$DEPLOY_DROPIN\"\\]" "$(head -n 1 "$ENV_CONFIG")"
containerd_after=$(env_containerd_pid || true)
[ -n "$containerd_after" ] && [ "$containerd_after" != "$containerd_before" ] &&
        pass "containerd was restarted (pid $containerd_before -> $containerd_after)" ||
        fail "containerd not restarted: pid '$containerd_before' -> '$containerd_after'"
expect_no_match "the new containerd is not in the installer pod's cgroup" kubepods \
        "$(cat "/proc/$containerd_after/cgroup" 2>&1)"
dump=$(containerd --config "$ENV_CONFIG" config dump 2>&1 || true)
expect_eq "effective config: the three handlers, through the installed shim" \
        "unishim unishim-sandbox unishim-vm" \
        "$(awk -v p="runtime_path = \"$DEPLOY_INSTALL_DIR/bin/containerd-shim-unishim-v2\"" '
                /^[[:space:]]*\[.*\.runtimes\./ { h = $0; sub(/.*\.runtimes\./, "", h); sub(/\].*/, "", h) }
                index($0, p) { print h }' <<<"$dump" | sort -u | tr '\n' ' ' | sed 's/ $//')"
expect_match "effective config: the node's CRI section kept (its CNI dir, runc)" \
        "conf_dir = \"$ENV_STATE/cni/net.d\".*runtimes\\.runc\\]" "$(tr '\n' ' ' <<<"$dump")"

# ---- the waiting pod runs ----
echo "# ---- the pod of RuntimeClass unishim-sandbox ----"
out_rc out rc kc_long -n "$POD_NS" wait --for=condition=Ready pod/vm1 --timeout="${K8S_TIMEOUT}s"
expect_eq "pod vm1 scheduled and Ready once the node is labelled" 0 "$rc"
id=$(pod_id "$POD_NS/vm1")
spid=$(pod_shim_pid "$id")
expect_eq "its shim is the installed one" "$DEPLOY_INSTALL_DIR/bin/containerd-shim-unishim-v2" \
        "$([ -z "$spid" ] || readlink "/proc/$spid/exe")"
qpid=$(sandbox_qemu_pid "$id")
[ -n "$qpid" ] && pass "its QEMU runs (pid $qpid)" || fail "no QEMU for pod $id"
out_ok kernel "kubectl exec uname -r" kc -n "$POD_NS" exec vm1 -- uname -r
[ -n "$kernel" ] && [ "$kernel" != "$(host_kernel)" ] && pass "exec runs in the VM (guest kernel $kernel)" ||
        fail "exec: kernel '$kernel', the host's is $(host_kernel)"
expect_eq "the RuntimeClass's overhead is in the pod's spec" "250m 160Mi" \
        "$(kc -n "$POD_NS" get pod vm1 -o jsonpath='{.spec.overhead.cpu} {.spec.overhead.memory}' 2>&1)"
uid=$(kc -n "$POD_NS" get pod vm1 -o jsonpath='{.metadata.uid}' 2>/dev/null || true)
cg=$(find "/sys/fs/cgroup/memory/$ENV_NS/kubepods" -type d -name "pod$uid" 2>/dev/null | head -n 1)
expect_eq "the pod's memory cgroup limit: its limit + the overhead (128 + 160 MiB)" $(((128 + 160) << 20)) \
        "$(cat "$cg/memory.limit_in_bytes" 2>&1)"
# What the overhead is measured from (docs/kubernetes.md, "Overhead").
qemu_pss=$(pss "$qpid")
guest_pss=$(awk '/^[0-9a-f]+-[0-9a-f]+ .*memfd:memory-backend/ { m = 1; next }
        /^[0-9a-f]+-[0-9a-f]+ / { m = 0 } m && $1 == "Pss:" { t += $2 } END { print t + 0 }' "/proc/$qpid/smaps" 2>/dev/null)
vfs=$(sandbox_procs "$id" | awk '$2 ~ /virtiofsd/ { print $1 }')
echo "# measured (idle, 128 MiB limit: 192 MiB guest): pod cgroup $(($(cat "$cg/memory.usage_in_bytes") >> 10)) KiB;" \
        "PSS: shim $(pss "$spid") KiB, QEMU $qemu_pss KiB (guest RAM $guest_pss KiB, the rest" \
        "$((qemu_pss - guest_pss)) KiB), virtiofsd $(pss $vfs) KiB ($(wc -w <<<"$vfs") processes)"
# The node's first sandbox pod misses the VM template (on by default) and
# builds it once it runs, with the installed unishimctl and the handler's
# installed config (the default template_dir); uninstall stops its holder.
# The deadline only detects a hang.
ICTL=$DEPLOY_INSTALL_DIR/bin/unishimctl
ICFG=$DEPLOY_INSTALL_DIR/etc/unishim-sandbox.json
installed_ready() { "$ICTL" template list --config "$ICFG" 2>/dev/null | grep -q 'state=ready'; }
# installed_holders: the holders of templates built through the install.
installed_holders() {
        local h
        for h in $(pgrep -x unishim-tmpl || true); do
                grep -qsF "$DEPLOY_INSTALL_DIR/" "/proc/$h/cmdline" && echo "$h"
        done
        return 0
}
deploy_cleanup() {
        local h
        for h in $(installed_holders); do kill -KILL "$h" 2>/dev/null || true; done
        k8s_test_cleanup
}
IT_CLEANUP_HOOK=deploy_cleanup
wait_until 400 installed_ready && pass "vm1 built the node's VM template in the background (installed unishimctl)" ||
        fail "no ready VM template after vm1: $("$ICTL" template list --config "$ICFG" 2>&1 | tail -n 3)"
[ -n "$(installed_holders)" ] && pass "its holder runs ($(installed_holders | tr '\n' ' '))" ||
        fail "no holder of the installed template"
out_rc out rc kc_long -n "$POD_NS" delete pod vm1 --timeout="${K8S_TIMEOUT}s"
expect_eq "kubectl delete pod vm1" 0 "$rc"
wait_until 60 no_pod_shim "$id" || true
expect_eq "nothing of the pod left" "" "$(sandbox_leftovers "$id")"

# ---- uninstall: the cleanup DaemonSet ----
echo "# ---- uninstall: deploy/unishim-cleanup.yaml ----"
out_rc out rc kc_long -n "$DEPLOY_NS" delete ds unishim-deploy --timeout="${K8S_TIMEOUT}s"
expect_eq "kubectl delete the installer's DaemonSet" 0 "$rc"
containerd_before=$(env_containerd_pid || true)
deploy_run unishim-cleanup "$IT_TMP/cleanup.yaml" uninstalled
expect_eq "no label unishim.io/installed" "" "$(node_label 2>&1)"
expect_eq "no installed files" "" "$(ls -d "$DEPLOY_INSTALL_DIR"* 2>/dev/null)"
expect_eq "no holder of the installed VM template left" "" "$(installed_holders)"
expect_eq "no link to the shim on containerd's PATH" "" "$(ls -d "$DEPLOY_SHIM_LINK" 2>/dev/null)"
expect_eq "no drop-in (nor its dir)" "" "$(ls -d "$DEPLOY_DROPIN" "$(dirname "$DEPLOY_DROPIN")" 2>/dev/null)"
expect_eq "containerd's config byte for byte as before install" "$config_before" "$(sha256sum <"$ENV_CONFIG")"
containerd_after=$(env_containerd_pid || true)
[ -n "$containerd_after" ] && [ "$containerd_after" != "$containerd_before" ] &&
        pass "containerd was restarted (pid $containerd_before -> $containerd_after)" ||
        fail "containerd not restarted: pid '$containerd_before' -> '$containerd_after'"
wait_until 60 cri_answers && pass "the CRI answers" || fail "the CRI does not answer after the uninstall"
expect_eq "containerd's effective config has no unishim handler" "" \
        "$(containerd --config "$ENV_CONFIG" config dump 2>&1 | grep -F 'runtimes.unishim' || true)"
out_rc out rc kc delete -f "$IT_TMP/cleanup.yaml" -f "$IT_TMP/deploy.yaml" --ignore-not-found
expect_eq "kubectl delete the cleanup DaemonSet and the installer's account" 0 "$rc"
kc delete namespace "$POD_NS" --wait=false >/dev/null 2>&1 || true

k8s_down_test
it_finish
