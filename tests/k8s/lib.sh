# shellcheck shell=bash
# Helpers for the Kubernetes tests (tests/k8s/test-*.sh): the integration
# tests' conventions (tests/integration/lib.sh: checks counted, a failed
# check fails the test, exit 77 is a skip) with a kubelet in front of the
# shim. Each test calls k8s_setup, runs its checks, k8s_down_test, then
# it_finish.
#
# Every test run gets a PRIVATE environment and cluster (unishim-k8s-<pid>),
# brought up by tests/k8s/k8s-up.sh and taken down by k8s-down.sh, which the
# test checks; an EXIT trap takes them down whatever happens, after printing
# the end of containerd's and the cluster's logs when a check failed.

. "$(dirname "${BASH_SOURCE[0]}")/../integration/lib.sh"
. "$(dirname "${BASH_SOURCE[0]}")/cluster.sh"

K8S_DOWN_DONE=0

# k8s_setup: checks the machine (skips without root, the packages or the
# Kubernetes binaries), starts the environment and the cluster. K8S_VM=1
# (the vm kind's test) asks for what only the vm kind needs: the vm image in
# the env's registry as CRI_VM_IMAGE and libvirtd (it_setup's IT_VM_IMAGE
# and IT_LIBVIRT); the image is built (or found cached) before the cluster
# starts, and a build that fails fails the test.
k8s_setup() {
        [ "$(id -u)" = 0 ] || it_skip "Kubernetes tests need root"
        K8S_BIN_DIR=${K8S_BIN_DIR:-$(realpath -m "$UNISHIM_SOURCE_DIR/../shared/k8s")}
        k8s_bins_found || it_skip "$(k8s_bins_howto)"
        local b
        for b in containerd ctr runc jq timeout setsid nsenter ip cc docker-registry \
                etcd openssl curl xz iptables-save script; do
                command -v "$b" >/dev/null || it_skip "$b not installed (make deps-runtime)"
        done
        [ -x /usr/lib/cni/bridge ] || it_skip "containernetworking-plugins not installed (make deps-runtime)"
        [ -x /bin/busybox ] || it_skip "busybox-static not installed (make deps-runtime)"
        local vm=${K8S_VM:-0}
        if [ "$vm" = 1 ]; then
                command -v qemu-system-x86_64 >/dev/null || it_skip "qemu-system-x86_64 missing (apt package qemu-system-x86)"
                command -v qemu-img >/dev/null || it_skip "qemu-img missing (apt package qemu-utils)"
                for b in libvirtd virtlogd virsh; do
                        command -v "$b" >/dev/null || it_skip "$b not installed (apt package libvirt-daemon-system)"
                done
        fi
        for b in "$(env_shim_binary)" "$UNISHIM_BUILD_DIR/cri/unishimctl"; do
                if [ ! -x "$b" ]; then
                        # Not a machine limitation: the build is incomplete.
                        echo "FAIL: $b is not built"
                        exit 1
                fi
        done
        # Before the cluster (and its temporary dir): a cold build takes
        # minutes, and its failure is the test's, told by the build's log.
        if [ "$vm" = 1 ] && ! env_vm_image_build; then
                echo "FAIL: the vm image $VM_IMAGE could not be built (log $ENV_VM_IMAGE_DIR/build.log)"
                exit 1
        fi
        # (it_finish's summary line)
        RUNTIME="RuntimeClass ${K8S_RUNTIME_CLASS:-unishim}"
        IT_TMP=$(mktemp -d /tmp/unishim-k8s.XXXXXX)
        # The environment with what only the vm kind needs (its image,
        # libvirtd) for the vm kind's test only: k8s-up passes these on to
        # env-up.
        export UNISHIM_ENV_NAME=unishim-k8s-$$ UNISHIM_ENV_FILE=$IT_TMP/env.sh \
                K8S_ENV_FILE=$IT_TMP/k8s-env.sh K8S_DIR=$IT_TMP/k8s \
                UNISHIM_ENV_VM_IMAGE=$vm UNISHIM_ENV_LIBVIRT=$vm UNISHIM_BUILD_DIR K8S_BIN_DIR
        env_init "$UNISHIM_ENV_NAME"
        k8s_init
        K8S_SYSCTLS_BEFORE=$(_k8s_sysctls)
        IT_CLEANUP_HOOK=k8s_test_cleanup
        trap it_cleanup EXIT
        trap 'exit 130' INT TERM
        local out rc t0=$SECONDS
        out_rc out rc "$K8S_LIB_DIR/k8s-up.sh"
        if [ "$rc" != 0 ]; then
                echo "$out"
                fail "k8s-up: exit $rc"
                exit 1
        fi
        pass "k8s-up: the cluster is up ($((SECONDS - t0)) s)"
        grep '^k8s-up: ' <<<"$out" | sed 's/^/# /'
        # shellcheck disable=SC1090
        . "$K8S_ENV_FILE"
        k8s_env_checks
}

# k8s_env_checks: what k8s-up promises.
k8s_env_checks() {
        local c pid ns out
        ns=$(stat -L -c %i "$ENV_NETNS_PATH")
        for c in etcd kube-apiserver kube-controller-manager kube-scheduler kubelet; do
                pid=$(k8s_pid "$c" || true)
                if [ -n "$pid" ] && [ "$(stat -L -c %i "/proc/$pid/ns/net")" = "$ns" ]; then
                        pass "$c runs in the env's netns (pid $pid)"
                else
                        fail "$c: pid '${pid}' not running in netns $ENV_NETNS"
                fi
        done
        expect_eq "node $K8S_NODE_NAME Ready, InternalIP $K8S_NODE_IP" "True $K8S_NODE_IP" \
                "$(kc get node "$K8S_NODE_NAME" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status} {.status.addresses[?(@.type=="InternalIP")].address}' 2>&1)"
        expect_match "the node's runtime is the env's containerd" '^containerd://1\.' \
                "$(kc get node "$K8S_NODE_NAME" -o jsonpath='{.status.nodeInfo.containerRuntimeVersion}' 2>&1)"
        out=$(kc get runtimeclass -o jsonpath='{range .items[*]}{.metadata.name}={.handler} {end}' 2>&1)
        expect_eq "RuntimeClasses from deploy/runtimeclasses.yaml" \
                "unishim=unishim unishim-sandbox=unishim-sandbox unishim-vm=unishim-vm " "$out"
        k8s_sysctls_back
        expect_eq "the kubelet's sysctl changes are undone once it runs" "$K8S_SYSCTLS_BEFORE" "$(_k8s_sysctls)"
        pid=$(k8s_pid kubelet || true)
        expect_eq "the kubelet holds no fd of the machine's sysctl lock (another cluster's start would wait for it)" "" \
                "$(ls -l "/proc/${pid:-0}/fd" 2>/dev/null | grep -F "$K8S_SYSCTL_LOCK" || true)"
        expect_eq "env file: KUBECONFIG" "$K8S_DIR/admin.kubeconfig" \
                "$(env -i bash -c ". '$K8S_ENV_FILE'; echo \$KUBECONFIG")"
}

# k8s_sysctls_back: waits (up to 180 s) for the machine's sysctls to be as
# before k8s-up. They are the machine's: another cluster's kubelet starting
# meanwhile (a test run of another checkout) sets them until its own k8s-up
# undoes them; with none, there is nothing to wait for.
_k8s_sysctls_as_before() { [ "$(_k8s_sysctls)" = "$K8S_SYSCTLS_BEFORE" ]; }
k8s_sysctls_back() {
        _k8s_sysctls_as_before && return 0
        echo "# the kubelet's sysctls are set: waiting (another cluster's kubelet starting?)"
        wait_until 180 _k8s_sysctls_as_before || true
}

# k8s_test_cleanup: IT_CLEANUP_HOOK: the logs' ends when something failed,
# then k8s-down (which takes the environment down too).
k8s_test_cleanup() {
        local f
        if [ "$IT_FAILURES" != 0 ] && [ -d "${K8S_LOG_DIR:-/nonexistent}" ]; then
                for f in kubelet kube-apiserver kube-controller-manager kube-scheduler etcd; do
                        [ -s "$K8S_LOG_DIR/$f.log" ] || continue
                        echo "---- $f log (last lines) ----"
                        tail -n "$([ $f = kubelet ] && echo 80 || echo 15)" "$K8S_LOG_DIR/$f.log" | cut -c1-400
                done
                echo "---- end of the cluster's logs ----"
        fi
        [ "$K8S_DOWN_DONE" = 1 ] || "$K8S_LIB_DIR/k8s-down.sh" >/dev/null 2>&1 || true
}

# kc_long ARGS...: kc for commands that wait up to K8S_TIMEOUT themselves.
kc_long() {
        KC_TIMEOUT=$((K8S_TIMEOUT + 30)) kc "$@"
}

# ---- pods ----

# k8s_container_memory POD CONTAINER: the container's memory working set in
# the kubelet's stats summary (the CRI's ContainerStats).
k8s_container_memory() {
        kc get --raw "/api/v1/nodes/$K8S_NODE_NAME/proxy/stats/summary" 2>/dev/null |
                jq -r --arg p "$1" --arg c "$2" '.pods[] | select(.podRef.name == $p)
                        | .containers[] | select(.name == $c) | .memory.workingSetBytes // empty' 2>/dev/null
}

k8s_memory_known() {
        [[ $(k8s_container_memory "$1" "$2") =~ ^[1-9][0-9]*$ ]]
}

# kce NS POD CONTAINER COMMAND...: kubectl exec (stdin /dev/null).
kce() {
        kc -n "$1" exec "$2" -c "$3" -- "${@:4}"
}

# k8s_pod_json NS POD JQ: JQ applied to the pod object.
k8s_pod_json() {
        kc -n "$1" get pod "$2" -o json 2>/dev/null | jq -r "$3" 2>/dev/null
}

# k8s_volume_checks KIND NS POD: what the init container wrote, the emptyDir
# shared by two app containers, the configMap, the secret and the projected
# service account token, seen from inside the pod.
k8s_volume_checks() {
        local kind=$1 ns=$2 pod=$3 out rc tok claims
        expect_eq "the init container ran to completion (exit 0)" 0 \
                "$(k8s_pod_json "$ns" "$pod" '.status.initContainerStatuses[0].state.terminated.exitCode')"
        out_rc out rc kce "$ns" "$pod" side cat /shared/init.txt
        expect_eq "an app container reads the file the init container wrote to an emptyDir" \
                "0 init $kind" "$rc $out"
        out_rc out rc kce "$ns" "$pod" web cat /shared/side.txt
        expect_eq "two app containers share an emptyDir (web reads what side wrote)" \
                "0 side $kind" "$rc $out"
        out_rc out rc env_nsenter timeout 30 busybox wget -q -O - "http://$(k8s_pod_json "$ns" "$pod" .status.podIP):9090/init.txt"
        expect_eq "a third container serves the emptyDir (the node fetches init.txt from it)" \
                "0 init $kind" "$rc $out"
        out_rc out rc kce "$ns" "$pod" side cat /cfg/greeting
        expect_eq "a configMap volume" "0 hello-cm $kind" "$rc $out"
        out_rc out rc kce "$ns" "$pod" side cat /sec/password
        expect_eq "a secret volume" "0 s3cr3t $kind" "$rc $out"
        out_rc tok rc kce "$ns" "$pod" side cat /var/run/secrets/tokens/token
        expect_match "a projected service account token readable inside" \
                '^0 [A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$' "$rc $tok"
        # The claims (base64url, unpadded) and the API server's own verdict.
        claims=$(cut -d. -f2 <<<"$tok" | tr '_-' '/+' | awk '{ while (length($0) % 4) $0 = $0 "="; print }' |
                base64 -d 2>/dev/null | jq -r '"\(.sub) \(.aud | join(","))"' 2>/dev/null || true)
        expect_eq "the token's subject and audience" "system:serviceaccount:$ns:default unishim-test" "$claims"
        out=$(jq -n --arg t "$tok" '{apiVersion: "authentication.k8s.io/v1", kind: "TokenReview",
                spec: {token: $t, audiences: ["unishim-test"]}}' |
                kc create -o json -f - 2>&1 | jq -r '"\(.status.authenticated) \(.status.user.username)"' 2>/dev/null || true)
        expect_eq "the API server accepts the token (TokenReview)" "true system:serviceaccount:$ns:default" "$out"
}

# k8s_bg FILE COMMAND...: kubectl COMMAND in the env's netns in the
# background, its output to FILE; its pid in K8S_BG_PID (a timeout that
# forwards the TERM to kubectl).
k8s_bg() {
        local f=$1
        shift
        timeout -k 5 "$((K8S_TIMEOUT + 60))" nsenter --net="$ENV_NETNS_PATH" \
                "$K8S_BIN/kubectl" --kubeconfig="$KUBECONFIG" --cache-dir="$K8S_DIR/kube-cache" "$@" </dev/null >"$f" 2>&1 &
        K8S_BG_PID=$!
}

k8s_bg_stop() {
        kill "$1" 2>/dev/null || true
        wait "$1" 2>/dev/null || true
}

file_has() { grep -qF -- "$2" "$1" 2>/dev/null; }

# What kubectl exec -it runs: its terminal, then its size. kubectl passes
# its size on as a resize after the exec started, which may come after the
# command's first look: it waits for a size. (busybox stty fails on a 0x0
# terminal, with a stale errno such as ECHILD, instead of printing "0 0".)
K8S_TTY_CMD='tty; until case $(stty size 2>/dev/null) in [1-9]*" "[1-9]*) true ;; *) false ;; esac; do sleep 0.2; done; stty size; echo tty-done'

# k8s_stream_checks KIND NS POD: kubectl exec -it on a terminal, exec -i
# with 100000 bytes of stdin, logs -f, cp both ways, port-forward.
k8s_stream_checks() {
        local kind=$1 ns=$2 pod=$3 out rc cmd f pid port sum
        # A terminal for kubectl (its stdin must be one for -t): script's
        # pty, sized 33x101. As in tests/integration/test-basic.sh, timeout
        # stays in the terminal's foreground process group (--foreground):
        # in a group of its own, kubectl's tcsetattr (raw mode) stops it
        # with SIGTTOU, for good and without output. A shell that exec's
        # its last command hides that (timeout, then a session leader,
        # cannot leave its group); dash, script's shell when SHELL is unset
        # (CI: env -i), forks it. SHELL is pinned as well.
        cmd=$(printf '%q ' timeout --foreground -k 5 "$K8S_TIMEOUT" nsenter --net="$ENV_NETNS_PATH" \
                "$K8S_BIN/kubectl" --kubeconfig="$KUBECONFIG" --cache-dir="$K8S_DIR/kube-cache" -n "$ns" exec -it "$pod" -c side -- \
                sh -c "$K8S_TTY_CMD")
        out=$(SHELL=/bin/sh script -qec "stty rows 33 cols 101; $cmd" /dev/null </dev/null 2>&1 |
                tr -d '\r\0' | sed 's/\^@//g' || true)
        # (script sends a NUL at its stdin's EOF, which the terminal in the
        # container echoes as ^@ wherever the output is then)
        expect_match "kubectl exec -it: a terminal in the container (tty)" '/dev/pts/[0-9]+'$'\n''33 101' "$out"
        expect_match "kubectl exec -it: the terminal's size is kubectl's (stty size)" \
                $'\n''33 101'$'\n''tty-done' "$out"
        out=$(head -c 100000 /dev/zero | kc -n "$ns" exec -i "$pod" -c side -- wc -c 2>&1 | tr -d ' ' || true)
        expect_eq "kubectl exec -i: 100000 bytes of stdin reach the process (wc -c)" 100000 "$out"

        # logs -f: a line written after it started reaches it; stopped.
        f=$IT_TMP/follow-$kind.log
        k8s_bg "$f" -n "$ns" logs -f "$pod" -c side
        pid=$K8S_BG_PID
        wait_until 60 file_has "$f" "side $kind started" &&
                pass "kubectl logs -f: the output so far" || fail "kubectl logs -f: '$(head -c 300 "$f")'"
        kce "$ns" "$pod" side sh -c "echo follow-mark-$kind >/proc/1/fd/1" >/dev/null 2>&1 ||
                fail "kubectl exec: write to the container's stdout"
        wait_until 60 file_has "$f" "follow-mark-$kind" &&
                pass "kubectl logs -f: a line written after it started" ||
                fail "kubectl logs -f: no new line: '$(tail -c 300 "$f")'"
        kill -0 "$pid" 2>/dev/null && pass "kubectl logs -f still follows" ||
                fail "kubectl logs -f ended by itself"
        k8s_bg_stop "$pid"

        # cp both ways (kubectl cp runs tar in the container: busybox's).
        head -c 65536 /dev/urandom >"$IT_TMP/cp-up"
        sum=$(md5sum <"$IT_TMP/cp-up" | cut -d' ' -f1)
        out_rc out rc kc cp "$IT_TMP/cp-up" "$ns/$pod:/tmp/cp-up" -c side
        expect_eq "kubectl cp to the container" "0 " "$rc $out"
        out_rc out rc kce "$ns" "$pod" side sh -c 'md5sum </tmp/cp-up'
        expect_eq "kubectl cp: the container has the same bytes" "0 $sum  -" "$rc $out"
        out_rc out rc kc cp "$ns/$pod:/tmp/cp-up" "$IT_TMP/cp-down" -c side
        expect_eq "kubectl cp from the container: exit 0" 0 "$rc"
        expect_eq "kubectl cp from the container: the same bytes" "$sum" \
                "$(md5sum <"$IT_TMP/cp-down" 2>/dev/null | cut -d' ' -f1)"

        # port-forward to the app's port (containerd dials localhost:8080
        # in the pod netns: for a VM pod, netplumb sends it to the guest).
        f=$IT_TMP/pf-$kind.log
        k8s_bg "$f" -n "$ns" port-forward --address 127.0.0.1 "pod/$pod" :8080
        pid=$K8S_BG_PID
        wait_until 60 file_has "$f" "Forwarding from 127.0.0.1:" || true
        port=$(sed -n 's/^Forwarding from 127\.0\.0\.1:\([0-9]*\) .*/\1/p' "$f" | head -n 1)
        expect_match "kubectl port-forward: listening" '^[0-9]+$' "$port"
        out_rc out rc env_nsenter timeout 60 busybox wget -q -O - "http://127.0.0.1:${port:-1}/index.html"
        expect_eq "kubectl port-forward: the app's page through it" "0 hello from $kind" "$rc $out"
        k8s_bg_stop "$pid"
        [ "$rc" = 0 ] || echo "# port-forward: $(head -c 600 "$f")"
}

k8s_restarted() {
        [ "$(k8s_pod_json "$1" "$2" '.status.containerStatuses[] | select(.name == "side") | .restartCount')" -ge 1 ] 2>/dev/null
}

# k8s_liveness_restart KIND NS POD ID IP: side's exec liveness probe starts
# failing; the kubelet restarts side (restartCount 1), in the same pod
# (same IP; for a VM pod the same QEMU), and the pod gets Ready again.
k8s_liveness_restart() {
        local kind=$1 ns=$2 pod=$3 id=$4 ip=$5 q0 q1 out rc
        [ "$kind" != sandbox ] || q0=$(sandbox_qemu_pid "$id")
        out_rc out rc kce "$ns" "$pod" side touch /tmp/dead
        expect_eq "kubectl exec: make side's liveness probe fail" "0 " "$rc $out"
        wait_until "$K8S_TIMEOUT" k8s_restarted "$ns" "$pod" &&
                pass "the failing liveness probe restarted side" ||
                fail "side not restarted: $(k8s_pod_json "$ns" "$pod" '.status.containerStatuses[] | select(.name == "side")')"
        out_rc out rc kc_long -n "$ns" wait --for=condition=Ready "pod/$pod" --timeout="${K8S_TIMEOUT}s"
        expect_eq "the pod is Ready again" 0 "$rc"
        expect_eq "restart counts: side 1, the others 0" "files=0 side=1 web=0" \
                "$(k8s_pod_json "$ns" "$pod" '[.status.containerStatuses | sort_by(.name)[] | "\(.name)=\(.restartCount)"] | join(" ")')"
        expect_eq "the same pod IP after the restart" "$ip" "$(k8s_pod_json "$ns" "$pod" .status.podIP)"
        out_rc out rc kce "$ns" "$pod" side sh -c 'test ! -e /tmp/dead && cat /shared/init.txt'
        expect_eq "the restarted side: a fresh /tmp, the pod's emptyDir" "0 init $kind" "$rc $out"
        if [ "$kind" = sandbox ]; then
                q1=$(sandbox_qemu_pid "$id")
                [ -n "$q0" ] && [ "$q0" = "$q1" ] && pass "the same VM after the restart (QEMU pid $q0)" ||
                        fail "QEMU pid '$q0' before, '$q1' after the restart"
        fi
}

# k8s_deployment_test KIND: a Deployment of one pod on RuntimeClass
# K8S_RUNTIME_CLASS (default unishim; runc, made here for the env's runc
# handler, runs the container kind's checks against containerd's runc shim:
# that is how the test itself is checked),
# of isolation KIND (container: no annotation, the default; sandbox:
# unishim.io/isolation: sandbox), an init container writing to an emptyDir,
# and three containers: busybox httpd (web: httpGet readiness, tcpSocket
# liveness), a shell (side: exec readiness and liveness; the configMap,
# secret and projected token volumes) and httpd serving the emptyDir (files:
# tcpSocket readiness, httpGet liveness). The pod gets Running and Ready (the
# probes pass: the kubelet's HTTP and TCP to the pod IP and its ExecSync),
# runs as KIND, kubectl exec and logs work, the node reaches the pod IP, the
# kubelet has the containers' stats; then k8s_volume_checks,
# k8s_stream_checks and k8s_liveness_restart; deleting the Deployment leaves
# nothing of the pod on the host.
k8s_deployment_test() {
        local kind=$1 ns=k8s-$1 app=web-$1 f out rc t0 pod id uid ip web side files side2 spid kernel
        local rtc=${K8S_RUNTIME_CLASS:-unishim}
        echo "# ---- a Deployment of the $kind kind, RuntimeClass $rtc ----"
        if [ "$rtc" != unishim ]; then
                printf 'apiVersion: node.k8s.io/v1\nkind: RuntimeClass\nmetadata: {name: %s}\nhandler: %s\n' \
                        "$rtc" "$rtc" | kc apply -f - >/dev/null
        fi
        kc create namespace "$ns" >/dev/null
        wait_until 60 kc -n "$ns" get serviceaccount default ||
                fail "no default service account in namespace $ns"
        kc -n "$ns" create configmap cfg --from-literal=greeting="hello-cm $kind" >/dev/null ||
                fail "kubectl create configmap"
        kc -n "$ns" create secret generic sec --from-literal=password="s3cr3t $kind" >/dev/null ||
                fail "kubectl create secret"
        f=$IT_TMP/$app.yaml
        cat >"$f" <<EOF
apiVersion: apps/v1
kind: Deployment
metadata:
  name: $app
  namespace: $ns
spec:
  replicas: 1
  selector:
    matchLabels: {app: $app}
  template:
    metadata:
      labels: {app: $app}
$([ "$kind" = container ] || echo "      annotations: {unishim.io/isolation: $kind}")
    spec:
      runtimeClassName: $rtc
      terminationGracePeriodSeconds: 5
      enableServiceLinks: false
      volumes:
      - {name: shared, emptyDir: {}}
      - {name: cfg, configMap: {name: cfg}}
      - {name: sec, secret: {secretName: sec}}
      - name: token
        projected:
          sources:
          - serviceAccountToken: {path: token, audience: unishim-test, expirationSeconds: 3600}
      initContainers:
      - name: init
        image: $CRI_TEST_IMAGE
        imagePullPolicy: IfNotPresent
        command: [/bin/sh, -c, 'echo "init $kind" >/shared/init.txt']
        volumeMounts: [{name: shared, mountPath: /shared}]
      containers:
      - name: web
        image: $CRI_TEST_IMAGE
        imagePullPolicy: IfNotPresent
        command: [/bin/sh, -c, 'mkdir -p /www && echo "hello from $kind" >/www/index.html && echo "web $kind started" && exec httpd -f -p 8080 -h /www']
        ports: [{containerPort: 8080}]
        volumeMounts: [{name: shared, mountPath: /shared}]
        readinessProbe:
          httpGet: {path: /index.html, port: 8080}
          periodSeconds: 2
          # (not the default 1 s: a TCG guest on a loaded machine answers
          # later; what is tested is that it answers)
          timeoutSeconds: 10
        # (liveness probes that pass: a generous threshold, the
        # container's start is not what they test)
        livenessProbe:
          tcpSocket: {port: 8080}
          periodSeconds: 5
          timeoutSeconds: 10
          failureThreshold: 30
      - name: side
        image: $CRI_TEST_IMAGE
        imagePullPolicy: IfNotPresent
        command: [/bin/sh, -c, 'trap "exit 0" TERM; echo "side $kind" >/shared/side.txt; touch /tmp/ready; echo "side $kind started"; while :; do sleep 1; done']
        volumeMounts:
        - {name: shared, mountPath: /shared}
        - {name: cfg, mountPath: /cfg}
        - {name: sec, mountPath: /sec}
        - {name: token, mountPath: /var/run/secrets/tokens}
        readinessProbe:
          exec: {command: [cat, /tmp/ready]}
          periodSeconds: 2
          # (not the default 1 s: an exec in a TCG guest on a loaded
          # machine took longer; what is tested is that it answers)
          timeoutSeconds: 10
        # Fails once /tmp/dead exists (kubectl exec touches it): the
        # kubelet restarts the container, whose fresh /tmp has none.
        livenessProbe:
          exec: {command: [/bin/sh, -c, 'test ! -e /tmp/dead']}
          periodSeconds: 2
          timeoutSeconds: 10
      - name: files
        image: $CRI_TEST_IMAGE
        imagePullPolicy: IfNotPresent
        command: [httpd, -f, -p, '9090', -h, /shared]
        ports: [{containerPort: 9090}]
        volumeMounts: [{name: shared, mountPath: /shared}]
        readinessProbe:
          tcpSocket: {port: 9090}
          periodSeconds: 2
          timeoutSeconds: 10
        livenessProbe:
          httpGet: {path: /init.txt, port: 9090}
          periodSeconds: 5
          timeoutSeconds: 10
          failureThreshold: 30
EOF
        t0=$SECONDS
        out_rc out rc kc apply -f "$f"
        expect_eq "kubectl apply the Deployment" 0 "$rc"
        out_rc out rc kc_long -n "$ns" rollout status "deployment/$app" --timeout="${K8S_TIMEOUT}s"
        expect_eq "rollout status: the Deployment's pod is available" 0 "$rc"
        echo "# pod available $((SECONDS - t0)) s after apply"
        pod=$(kc -n "$ns" get pods -l "app=$app" -o jsonpath='{.items[*].metadata.name}' 2>/dev/null || true)
        expect_match "one pod" '^[a-z0-9-]+$' "$pod"
        out=$(kc -n "$ns" get pod "$pod" -o json 2>/dev/null || true)
        expect_eq "pod phase Running" Running "$(jq -r .status.phase <<<"$out" 2>/dev/null)"
        expect_eq "pod Ready, its containers ready (httpGet, exec and tcpSocket probes passed)" \
                "True true true true" \
                "$(jq -r '[(.status.conditions[] | select(.type == "Ready") | .status),
                        (.status.containerStatuses | sort_by(.name)[] | .ready | tostring)] | join(" ")' <<<"$out" 2>/dev/null)"
        expect_eq "no restarts (the liveness probes pass)" "0 0 0" \
                "$(jq -r '[.status.containerStatuses | sort_by(.name)[] | .restartCount | tostring] | join(" ")' <<<"$out" 2>/dev/null)"
        expect_eq "pod on RuntimeClass $rtc, on this node" "$rtc $K8S_NODE_IP" \
                "$(jq -r '"\(.spec.runtimeClassName) \(.status.hostIP)"' <<<"$out" 2>/dev/null)"
        uid=$(jq -r '.metadata.uid // empty' <<<"$out" 2>/dev/null || true)
        ip=$(jq -r '.status.podIP // empty' <<<"$out" 2>/dev/null || true)
        expect_match "pod IP in the env's pod subnet $ENV_SUBNET" "^${ENV_SUBNET%.0/24}\.[0-9]+\$" "$ip"

        # The runtime's view: the CRI pod the kubelet made, its shim, its kind.
        id=$(pod_id "$ns/$pod")
        expect_match "the CRI has the pod sandbox" '^[0-9a-f]{64}$' "$id"
        expect_match "unishimctl ps: Ready, handler $rtc, isolation $kind" \
                "${id:0:13} +$pod +$ns +Ready +$rtc +$kind" "$(ectl ps 2>&1)"
        web=$(ctr_id "$ns/$pod" web)
        side=$(ctr_id "$ns/$pod" side)
        files=$(ctr_id "$ns/$pod" files)
        spid=$(pod_shim_pid "$id")
        expect_match "the pod's shim is containerd-shim-$rtc-v2" "/containerd-shim-$rtc-v2\$" \
                "$([ -z "$spid" ] || tr '\0' '\n' <"/proc/$spid/cmdline" 2>/dev/null | head -n 1)"
        if [ "$kind" = sandbox ]; then
                [ -n "$(sandbox_qemu_pid "$id")" ] && pass "the pod's QEMU runs" || fail "no QEMU for pod $id"
        else
                expect_eq "no QEMU or virtiofsd for a container pod" "" "$(sandbox_procs "$id")"
        fi

        # kubectl exec and logs (the API server -> the kubelet -> the CRI's
        # streaming server -> the shim).
        out_ok kernel "kubectl exec uname -r" kc -n "$ns" exec "$pod" -c web -- uname -r
        if [ "$kind" = sandbox ]; then
                [ -n "$kernel" ] && [ "$kernel" != "$(host_kernel)" ] &&
                        pass "exec runs in the VM (guest kernel $kernel)" ||
                        fail "exec: kernel '$kernel', the host's is $(host_kernel)"
        else
                expect_eq "exec runs on the host kernel" "$(host_kernel)" "$kernel"
        fi
        out_rc out rc kc -n "$ns" exec "$pod" -c web -- cat /www/index.html
        expect_eq "kubectl exec cat: the file the container wrote" "0 hello from $kind" "$rc $out"
        kc -n "$ns" exec "$pod" -c web -- sh -c 'echo out; echo err >&2; exit 3' \
                </dev/null >"$IT_TMP/x.out" 2>"$IT_TMP/x.err" && rc=0 || rc=$?
        expect_eq "kubectl exec: the command's exit code" 3 "$rc"
        expect_eq "kubectl exec: its stdout" out "$(cat "$IT_TMP/x.out")"
        expect_eq "kubectl exec: its stderr" err "$(head -n 1 "$IT_TMP/x.err")"
        out_rc out rc kc -n "$ns" exec "$pod" -c side -- hostname
        expect_eq "kubectl exec in the other container: hostname is the pod's name" "0 $pod" "$rc $out"
        wait_until 30 log_has "web $kind started" kc -n "$ns" logs "$pod" -c web &&
                pass "kubectl logs web: its output" ||
                fail "kubectl logs web: $(kc -n "$ns" logs "$pod" -c web 2>&1 | head -n 5)"
        wait_until 30 log_has "side $kind started" kc -n "$ns" logs "$pod" -c side &&
                pass "kubectl logs side: its output" ||
                fail "kubectl logs side: $(kc -n "$ns" logs "$pod" -c side 2>&1 | head -n 5)"
        out_rc out rc env_nsenter timeout 30 busybox wget -q -O - "http://$ip:8080/index.html"
        expect_eq "the node fetches the page at the pod IP" "0 hello from $kind" "$rc $out"
        wait_until 60 k8s_memory_known "$pod" web &&
                pass "the kubelet's stats summary has web's memory ($(k8s_container_memory "$pod" web) bytes)" ||
                fail "no memory stats for web in the kubelet's summary: '$(k8s_container_memory "$pod" web)'"
        k8s_volume_checks "$kind" "$ns" "$pod"
        k8s_stream_checks "$kind" "$ns" "$pod"
        k8s_liveness_restart "$kind" "$ns" "$pod" "$id" "$ip"
        side2=$(k8s_pod_json "$ns" "$pod" '.status.containerStatuses[] | select(.name == "side") | .containerID | sub("^containerd://"; "")')
        [[ $side2 =~ ^[0-9a-f]{64}$ ]] && [ "$side2" != "$side" ] &&
                pass "the restarted side is a new container" || fail "side: '$side' before, '$side2' after the restart"

        # Delete: the kubelet stops the pod (the API object goes once it
        # has: containers, sandbox, volumes, cgroup).
        local nets ipam=$ENV_STATE/cni/ipam/$ENV_CNI_NET
        t0=$SECONDS
        out_rc out rc kc -n "$ns" delete deployment "$app" --wait=false
        expect_eq "kubectl delete deployment" 0 "$rc"
        out_rc out rc kc_long -n "$ns" wait --for=delete "pod/$pod" --timeout="${K8S_TIMEOUT}s"
        expect_eq "the pod object is gone" 0 "$rc"
        echo "# pod object gone $((SECONDS - t0)) s after delete"
        wait_until 60 no_pod_shim "$id" || true
        expect_eq "no shim serves the pod" "" "$(pod_shim_pid "$id")"
        expect_eq "no QEMU or virtiofsd of the pod" "" "$(sandbox_procs "$id")"
        expect_eq "no state dir of the pod under /run/unishim" "" "$(ls -d /run/unishim/*/"$id" 2>/dev/null)"
        expect_eq "no process left in the pods' cgroups" "" "$(env_cgroup_pids)"
        wait_until 60 test ! -e "$K8S_KUBELET_DIR/pods/$uid" || true
        expect_eq "the kubelet removed the pod's dir (volumes)" "" "$(ls -d "$K8S_KUBELET_DIR/pods/$uid" 2>/dev/null)"
        expect_eq "no mount of the pod" "" "$(grep -F -e "$uid" -e "$id" /proc/self/mountinfo | cut -d' ' -f5)"
        # (Not in the cgroup2 hierarchy of this hybrid host: the runtime
        # makes the pod's dir there for its containers', and the kubelet
        # 1.23 removes the pod's dirs of the v1 hierarchies only; runc
        # leaves the same empty dir. k8s-down removes it.)
        expect_eq "no cgroup of the pod (v1 hierarchies)" "" \
                "$(find /sys/fs/cgroup/*/"$ENV_NS" -path "/sys/fs/cgroup/unified/*" -prune -o -type d \
                        \( -name "pod$uid" -o -name "$id" \) -print 2>/dev/null)"
        expect_eq "no netns bind mount left" "" "$(netns_mounts)"
        nets=$(ls "$ipam" 2>/dev/null || true)
        expect_eq "the pod IP is released" "" "$(grep -xF -- "$ip" <<<"$nets" || true)"
        expect_eq "nothing of the pod left (shim, processes, state dirs, mounts, cgroups)" "" \
                "$(sandbox_leftovers "$id" "$web" "$side" "$files" "$side2")"
        # What stays until the kubelet's container GC (once a minute)
        # removes it: the CRI's record of the stopped sandbox and the pod's
        # log dir. Not waited for: once, under load, a kubelet 1.23.0 whose
        # pod worker had failed a second kill (NotFound: its container
        # deletor had removed the container) never removed them. k8s-down
        # does; its checks include the log dir.
        expect_match "the CRI's pod sandbox is stopped (NotReady) or removed" '^(NotReady)?$' \
                "$(ectl ps 2>/dev/null | awk -v id="${id:0:13}" '$1 == id { print $4 }')"
        K8S_TEST_UIDS+=("$uid")
        kc delete namespace "$ns" --wait=false >/dev/null 2>&1 || true
}

# k8s_down_test: k8s-down takes down the cluster and the environment
# k8s-up started, and leaves nothing.
k8s_down_test() {
        local out rc t0=$SECONDS
        sandbox_template_summary
        echo "# ---- k8s-down ----"
        out_rc out rc "$K8S_LIB_DIR/k8s-down.sh"
        K8S_DOWN_DONE=1
        expect_eq "k8s-down: exit 0 (it fails when something is left)" 0 "$rc"
        [ "$rc" = 0 ] || echo "$out"
        echo "# k8s-down took $((SECONDS - t0)) s"
        expect_eq "no process of the cluster left" "" "$(k8s_pids)"
        expect_eq "no containerd of the env left" "" "$(env_containerd_pid || true)"
        expect_eq "the env's netns is gone" "" "$(ls -d "$ENV_NETNS_PATH" 2>/dev/null)"
        expect_eq "no mount under the env's dirs" "" "$(env_mounts)"
        expect_eq "no cgroup of the env" "" "$(find /sys/fs/cgroup/*/"$ENV_NS" -maxdepth 0 2>/dev/null)"
        expect_eq "the env's dirs are gone" "" "$(ls -d "$ENV_STATE" "$ENV_ROOT" 2>/dev/null)"
        expect_eq "no pod log dirs of the cluster left" "" "$(_k8s_pod_log_dirs "${K8S_TEST_UIDS[@]}")"
        k8s_sysctls_back
        expect_eq "the machine's sysctls are as before k8s-up" "$K8S_SYSCTLS_BEFORE" "$(_k8s_sysctls)"
        # Gone for good: the EXIT trap need not stop it again.
        [ "$rc" != 0 ] || ENV_NAME=
}
K8S_TEST_UIDS=()
K8S_REFUSED_UID=

# ---- lifecycle, resources, host namespaces, a mesh's sidecars ----

# k8s_lifecycle_test KIND: pods of KIND, run at once in one namespace:
#  grace: its app traps SIGTERM, writes a marker to a hostPath dir, exits 0
#    after a second; `kubectl delete --grace-period=30` -> the marker, exit
#    code 0 (it ended by itself, not SIGKILLed at the grace's end), nothing
#    of the pod left on the host;
#  force: an app that ignores SIGTERM; `kubectl delete --force
#    --grace-period=0` -> the object goes at once, then nothing on the host;
#  res: limits cpu 1500m, memory 256Mi in all (app 1400m/224Mi, hog
#    100m/32Mi; with unishim-sandbox's 250m overhead a 2-core node has room
#    for it); the sandbox kind on RuntimeClass unishim-sandbox: its VM has
#    2 vCPUs (rounded up) and 256 + 64 MiB (nproc, MemTotal); the RuntimeClass's
#    overhead in pod.spec.overhead; hog allocates 100 MiB and is OOMKilled;
#  hostnet (hostNetwork: true): the container kind runs in the node's netns
#    (the env's); a VM kind never runs and its events name hostNetwork;
#  mesh + peer: Istio's injected pair, an istio-init init container
#    (NET_ADMIN, NET_RAW; the host's iptables-restore and its libraries
#    mounted in: the test image has none) installing the redirect rules and
#    an istio-proxy container (tests/tools/mesh-proxy, uid 1337); a peer's
#    connection to the app and the app's to the peer pass the proxy.
k8s_lifecycle_test() {
        local kind=$1 ns=k8s-life-$1 rtc=${K8S_RUNTIME_CLASS:-unishim} res_rtc f ann=""
        local xt xtlib ld proxy=$UNISHIM_BUILD_DIR/tests/mesh-proxy p out rc t0=$SECONDS
        echo "# ---- lifecycle, resources, hostNetwork, a mesh sidecar pair: the $kind kind ----"
        [ "$kind" = container ] || ann="  annotations: {unishim.io/isolation: $kind}"
        res_rtc=$rtc
        [ "$kind" != sandbox ] || res_rtc=unishim-sandbox
        xt=$(readlink -f "$(command -v iptables-restore)")
        xtlib=$(dirname "$(ldd "$xt" | awk '$1 ~ /^libxtables/ { print $3 }')")
        ld=$(ldd "$xt" | awk '$1 ~ /^\/.*ld-linux/ { print $1 }')
        kc create namespace "$ns" >/dev/null
        wait_until 60 kc -n "$ns" get serviceaccount default || fail "no default service account in namespace $ns"
        mkdir -p "$IT_TMP/grace-$kind"
        f=$IT_TMP/life-$kind.yaml
        cat >"$f" <<EOF
$(_k8s_pod_head grace "$ns" "$rtc" "$ann")
  terminationGracePeriodSeconds: 60
  enableServiceLinks: false
  volumes: [{name: mark, hostPath: {path: $IT_TMP/grace-$kind, type: Directory}}]
  containers:
$(_k8s_ctr app)
    command: [/bin/sh, -c, 'trap "echo term >/mark/term; sleep 1; echo done >/mark/done; exit 0" TERM; echo started >/mark/started; while :; do sleep 1; done']
    volumeMounts: [{name: mark, mountPath: /mark}]
---
$(_k8s_pod_head force "$ns" "$rtc" "$ann")
  # (the kubelet kills a pod whose object was force-deleted with the
  # spec's grace: the object's is gone)
  terminationGracePeriodSeconds: 10
  enableServiceLinks: false
  containers:
$(_k8s_ctr app)
    command: [/bin/sh, -c, 'trap "" TERM; while :; do sleep 1; done']
---
$(_k8s_pod_head res "$ns" "$res_rtc" "$ann")
  terminationGracePeriodSeconds: 2
  restartPolicy: Never
  enableServiceLinks: false
  containers:
$(_k8s_ctr app)
    command: [/bin/sh, -c, 'trap "exit 0" TERM; while :; do sleep 1; done']
    resources: {limits: {cpu: 1400m, memory: 224Mi}}
  # (dd's 100 MiB block: read from /dev/zero, every page of it touched)
$(_k8s_ctr hog)
    command: [dd, if=/dev/zero, of=/dev/null, bs=100M, count=1]
    resources: {limits: {cpu: 100m, memory: 32Mi}}
---
$(_k8s_hostnet_pod "$ns" "$rtc" "$ann")
---
$(_k8s_pod_head peer "$ns" "$rtc" "")
  terminationGracePeriodSeconds: 2
  enableServiceLinks: false
  containers:
$(_k8s_ctr web)
    command: [/bin/sh, -c, 'mkdir -p /www && echo peer >/www/index.html && exec httpd -f -p 8080 -h /www']
---
$(_k8s_pod_head mesh "$ns" "$rtc" "$ann")
  terminationGracePeriodSeconds: 2
  enableServiceLinks: false
  volumes:
  - {name: istio-rules, configMap: {name: istio-rules}}
  - {name: xt, hostPath: {path: $xt, type: File}}
  - {name: xtlib, hostPath: {path: $xtlib, type: Directory}}
  - {name: proxy, hostPath: {path: $proxy, type: File}}
  initContainers:
$(_k8s_ctr istio-init)
    command: [/bin/sh, -c, 'XTABLES_LIBDIR=/xt/lib/xtables /xt/lib/${ld##*/} --library-path /xt/lib /xt/iptables-restore --noflush </etc/istio-rules/rules']
    securityContext:
      runAsUser: 0
      runAsNonRoot: false
      capabilities: {add: [NET_ADMIN, NET_RAW], drop: [ALL]}
    volumeMounts:
    - {name: istio-rules, mountPath: /etc/istio-rules}
    - {name: xt, mountPath: /xt/iptables-restore, readOnly: true}
    - {name: xtlib, mountPath: /xt/lib, readOnly: true}
  containers:
$(_k8s_ctr app)
    command: [/bin/sh, -c, 'mkdir -p /www && echo app-mesh >/www/index.html && exec httpd -f -p 8080 -h /www']
$(_k8s_ctr istio-proxy)
    command: [/mesh-proxy, '-', '1337']
    securityContext:
      runAsUser: 1337
      runAsGroup: 1337
    volumeMounts: [{name: proxy, mountPath: /mesh-proxy, readOnly: true}]
EOF
        istio_rules_text >"$IT_TMP/istio-rules"
        kc -n "$ns" create configmap istio-rules --from-file=rules="$IT_TMP/istio-rules" >/dev/null ||
                fail "kubectl create configmap istio-rules"
        out_rc out rc kc apply -f "$f"
        expect_eq "kubectl apply the grace, force, res, hostnet, peer and mesh pods" 0 "$rc"
        [ "$rc" = 0 ] || echo "# $out"
        for p in grace force peer mesh $([ "$kind" != container ] || echo hostnet); do
                out_rc out rc kc_long -n "$ns" wait --for=condition=Ready "pod/$p" --timeout="${K8S_TIMEOUT}s"
                expect_eq "pod $p Ready" 0 "$rc"
        done
        k8s_resources_checks "$kind" "$ns" "$res_rtc"
        k8s_hostnet_checks "$kind" "$ns"
        k8s_mesh_checks "$kind" "$ns"
        k8s_grace_checks "$kind" "$ns"
        kc delete namespace "$ns" --wait=false >/dev/null 2>&1 || true
        echo "# lifecycle pods: $((SECONDS - t0)) s"
}

# _k8s_pod_head NAME NS RUNTIMECLASS ANNOTATIONS_LINE: a Pod's manifest up
# to its spec's runtimeClassName.
_k8s_pod_head() {
        printf 'apiVersion: v1\nkind: Pod\nmetadata:\n  name: %s\n  namespace: %s\n' "$1" "$2"
        [ -z "$4" ] || printf '%s\n' "$4"
        printf 'spec:\n  runtimeClassName: %s\n' "$3"
}

# _k8s_hostnet_pod NS RUNTIMECLASS ANNOTATIONS_LINE: the manifest of pod
# hostnet (hostNetwork: true; k8s_hostnet_checks).
_k8s_hostnet_pod() {
        cat <<EOF
$(_k8s_pod_head hostnet "$1" "$2" "$3")
  hostNetwork: true
  terminationGracePeriodSeconds: 2
  enableServiceLinks: false
  containers:
$(_k8s_ctr app)
    command: [/bin/sh, -c, 'trap "exit 0" TERM; while :; do sleep 1; done']
EOF
}

# _k8s_ctr NAME: a container of the test image, up to its command.
_k8s_ctr() {
        printf '  - name: %s\n    image: %s\n    imagePullPolicy: IfNotPresent\n' "$1" "$CRI_TEST_IMAGE"
}

# k8s_ctr_state NS POD CONTAINER: the container's state (running,
# terminated, waiting) and, terminated, its reason and exit code.
k8s_ctr_state() {
        k8s_pod_json "$1" "$2" '.status.containerStatuses[]? | select(.name == "'"$3"'") | .state
                | if .terminated then "terminated \(.terminated.reason) \(.terminated.exitCode)"
                  else keys[0] end'
}

k8s_ctr_terminated() { [[ $(k8s_ctr_state "$@") = terminated* ]]; }
k8s_ctr_running() { [ "$(k8s_ctr_state "$@")" = running ]; }

# k8s_resources_checks KIND NS RUNTIMECLASS: pod res (k8s_lifecycle_test).
k8s_resources_checks() {
        local kind=$1 ns=$2 rtc=$3 out rc want total
        wait_until "$K8S_TIMEOUT" k8s_ctr_terminated "$ns" res hog || true
        expect_eq "a container over its memory limit (32Mi, 100 MiB allocated) is OOMKilled" \
                "terminated OOMKilled 137" "$(k8s_ctr_state "$ns" res hog)"
        case $rtc in
        unishim) want="10m 4Mi" ;;
        unishim-sandbox) want="250m 160Mi" ;;
        *) want=$(kc get runtimeclass "$rtc" -o jsonpath='{.overhead.podFixed.cpu} {.overhead.podFixed.memory}' 2>&1) ;;
        esac
        expect_eq "RuntimeClass $rtc: its overhead in pod.spec.overhead" "$want" \
                "$(kc -n "$ns" get pod res -o jsonpath='{.spec.overhead.cpu} {.spec.overhead.memory}' 2>&1)"
        wait_until 60 k8s_ctr_running "$ns" res app || true
        expect_eq "the other container of the pod still runs" running "$(k8s_ctr_state "$ns" res app)"
        [ "$kind" = sandbox ] || return 0
        # cpu 1500m (1400m + 100m): 2 vCPUs (rounded up), as many as the
        # host has at most (sandbox.max_vcpus); memory 256Mi (224 + 32): a guest of
        # 256 + 64 MiB, MemTotal that less what its kernel keeps.
        want=$(($(nproc) >= 2 ? 2 : 1))
        out_rc out rc kce "$ns" res app nproc
        expect_eq "limits size the VM: $want vCPUs (nproc in the guest)" "0 $want" "$rc $out"
        total=$(kce "$ns" res app awk '/^MemTotal/ { print int($2 / 1024) }' /proc/meminfo 2>&1 || true)
        [[ $total =~ ^[0-9]+$ ]] && [ "$total" -le 320 ] && [ "$total" -gt 240 ] &&
                pass "limits size the VM: MemTotal $total MiB of a 256 + 64 MiB guest" ||
                fail "guest MemTotal '$total' MiB, want a 256 + 64 MiB guest"
}

# k8s_hostnet_checks KIND NS: pod hostnet (hostNetwork: true).
k8s_hostnet_checks() {
        local kind=$1 ns=$2 out rc
        if [ "$kind" = container ]; then
                out_rc out rc kce "$ns" hostnet app readlink /proc/self/ns/net
                expect_eq "hostNetwork: the container runs in the node's netns (the env's)" \
                        "0 net:[$(stat -L -c %i "$ENV_NETNS_PATH")]" "$rc $out"
                return 0
        fi
        wait_until 120 _k8s_events_say "$ns" hostnet hostNetwork || true
        out=$(_k8s_events "$ns" hostnet)
        expect_match "hostNetwork with the $kind kind: refused, the event names the field" \
                "FailedCreatePodSandBox: .*hostNetwork is not supported by unishim's $kind isolation" "$out"
        expect_eq "... and the pod never runs (Pending, no container started)" "Pending " \
                "$(kc -n "$ns" get pod hostnet -o jsonpath='{.status.phase} {.status.containerStatuses[*].state.running}' 2>&1)"
        # Deleted now: the log dir the kubelet made for it before it asked
        # for its sandbox is removed by the kubelet's garbage collection
        # (once a minute) only: no CRI sandbox of it tells k8s-down.
        K8S_REFUSED_UID=$(k8s_pod_json "$ns" hostnet .metadata.uid)
        out_rc out rc kc_long -n "$ns" delete pod hostnet --timeout="${K8S_TIMEOUT}s"
        expect_eq "the refused pod deleted" 0 "$rc"
}

_k8s_events_say() { _k8s_events "$1" "$2" | grep -F -- "$3" >/dev/null; }

_k8s_events() {
        kc -n "$1" get events --field-selector "involvedObject.name=$2" \
                -o jsonpath='{range .items[*]}{.reason}: {.message}{"\n"}{end}' 2>/dev/null
}

# k8s_mesh_checks KIND NS: pods mesh and peer.
k8s_mesh_checks() {
        local kind=$1 ns=$2 mip pip out rc log app_kern proxy_kern
        expect_eq "istio-init installed the rules (exit 0)" 0 \
                "$(k8s_pod_json "$ns" mesh '.status.initContainerStatuses[0].state.terminated.exitCode')"
        mip=$(k8s_pod_json "$ns" mesh .status.podIP)
        pip=$(k8s_pod_json "$ns" peer .status.podIP)
        wait_until 30 log_has ready kc -n "$ns" logs mesh -c istio-proxy || true
        out_rc out rc kce "$ns" mesh istio-proxy stat -c %u /proc/1
        expect_eq "istio-proxy runs as uid 1337" "0 1337" "$rc $out"
        if [ "$kind" != container ]; then
                app_kern=$(kce "$ns" mesh app uname -r 2>&1 || true)
                proxy_kern=$(kce "$ns" mesh istio-proxy uname -r 2>&1 || true)
                [ "$app_kern" != "$(host_kernel)" ] && [ "$proxy_kern" = "$(host_kernel)" ] &&
                        pass "the app in the VM ($app_kern), istio-proxy on the host" ||
                        fail "app kernel '$app_kern', istio-proxy '$proxy_kern', host $(host_kernel)"
        fi
        # (not wget -T: busybox's wget crashes with it)
        out_rc out rc kce "$ns" peer web timeout 20 wget -qO- "http://$mip:8080/"
        expect_eq "mesh: a peer reaches the app" "0 app-mesh" "$rc $out"
        out_rc out rc kce "$ns" mesh app timeout 20 wget -qO- "http://$pip:8080/"
        expect_eq "mesh: the app reaches the peer" "0 peer" "$rc $out"
        wait_until 10 log_has "outbound $pip:8080" kc -n "$ns" logs mesh -c istio-proxy || true
        log=$(kc -n "$ns" logs mesh -c istio-proxy 2>&1 || true)
        grep -qxF "inbound $mip:8080" <<<"$log" && pass "mesh: the peer's connection passed istio-proxy (inbound $mip:8080)" ||
                fail "mesh: istio-proxy saw no inbound $mip:8080: $(tr '\n' ';' <<<"$log")"
        grep -qxF "outbound $pip:8080" <<<"$log" && pass "mesh: the app's connection passed istio-proxy (outbound $pip:8080)" ||
                fail "mesh: istio-proxy saw no outbound $pip:8080: $(tr '\n' ';' <<<"$log")"
        expect_eq "mesh: no connection istio-proxy could not forward" "" \
                "$(grep -e dial-failed -e no-original <<<"$log" || true)"
}

# _k8s_pod_leftovers ID...: sandbox_leftovers but for the uid range slots
# no pod records, which are the machine's: another pod of this test, or of
# another test run, may hold one for a moment. Checked once none of this
# test's pods runs.
_k8s_pod_leftovers() {
        sandbox_leftovers "$@" | grep -v '^uid-slot ' || true
}

# k8s_grace_checks KIND NS: pods grace and force, then the others deleted;
# nothing of any of them left on the host.
k8s_grace_checks() {
        local kind=$1 ns=$2 out rc mark w pid p id ids=() uids=() others
        mark=$IT_TMP/grace-$kind
        others="res $([ "$kind" != container ] || echo hostnet) peer mesh"
        for p in grace force $others; do
                uids+=("$(k8s_pod_json "$ns" "$p" .metadata.uid)")
                # (none for a pod refused before its sandbox ran)
                id=$(pod_id "$ns/$p" || true)
                [ -z "$id" ] || ids+=("$id")
        done
        expect_eq "the app wrote its start marker to the hostPath dir" started "$(cat "$mark/started" 2>&1)"
        w=$IT_TMP/grace-$kind.watch
        k8s_bg "$w" -n "$ns" get pod grace -w -o json
        pid=$K8S_BG_PID
        # (the watch is on before the delete: a container pod can be gone
        # before a late watch would start)
        wait_until 60 file_has "$w" '"name": "grace"' || fail "kubectl get -w: '$(head -c 300 "$w")'"
        id=$(pod_id "$ns/grace" || true)
        out_rc out rc kc -n "$ns" delete pod grace --grace-period=30 --wait=false
        expect_eq "kubectl delete pod --grace-period=30" 0 "$rc"
        out_rc out rc kc_long -n "$ns" wait --for=delete pod/grace --timeout="${K8S_TIMEOUT}s"
        expect_eq "the pod object is gone" 0 "$rc"
        k8s_bg_stop "$pid"
        expect_eq "SIGTERM reached the app (its trap wrote the marker)" term "$(cat "$mark/term" 2>&1)"
        expect_eq "the app's handler ran to its end" "done" "$(cat "$mark/done" 2>&1)"
        expect_eq "the app ended by itself within the grace (exit code 0, not SIGKILL's 137)" 0 \
                "$(jq -rs 'map(.status.containerStatuses[]? | select(.name == "app")
                        | .state.terminated.exitCode // empty) | last // "none"' "$w" 2>&1)"
        wait_until 60 outputs_nothing _k8s_pod_leftovers "$id" || true
        expect_eq "graceful delete: nothing of the pod left (shim, QEMU, virtiofsd, state dir, mounts, cgroups)" "" \
                "$(_k8s_pod_leftovers "$id")"

        id=$(pod_id "$ns/force" || true)
        out_rc out rc kc -n "$ns" delete pod force --force --grace-period=0
        expect_eq "kubectl delete pod --force --grace-period=0 (its app ignores SIGTERM)" 0 "$rc"
        expect_match "the pod object is gone at once" 'NotFound' "$(kc -n "$ns" get pod force 2>&1)"
        wait_until 120 outputs_nothing _k8s_pod_leftovers "$id" || true
        expect_eq "forced delete: nothing of the pod left (shim, QEMU, virtiofsd, state dir, mounts, cgroups)" "" \
                "$(_k8s_pod_leftovers "$id")"

        out_rc out rc kc -n "$ns" delete pod $others --wait=false
        expect_eq "kubectl delete the other pods" 0 "$rc"
        for p in $others; do
                kc_long -n "$ns" wait --for=delete "pod/$p" --timeout="${K8S_TIMEOUT}s" >/dev/null 2>&1 ||
                        fail "pod $p not deleted"
        done
        wait_until 60 outputs_nothing sandbox_leftovers "${ids[@]}" || true
        expect_eq "nothing left of the lifecycle pods (shims, QEMU, virtiofsd, host-side sidecars, dirs, mounts, cgroups)" "" \
                "$(sandbox_leftovers "${ids[@]}")"
        expect_eq "no process left in the pods' cgroups" "" "$(env_cgroup_pids)"
        expect_eq "no netns bind mount left" "" "$(netns_mounts)"
        K8S_TEST_UIDS+=("${uids[@]}")
        if [ -n "${K8S_REFUSED_UID:-}" ]; then
                wait_until 120 outputs_nothing _k8s_pod_log_dirs "$K8S_REFUSED_UID" || true
                expect_eq "the kubelet removed the refused pod's log dir" "" "$(_k8s_pod_log_dirs "$K8S_REFUSED_UID")"
                K8S_TEST_UIDS+=("$K8S_REFUSED_UID")
        fi
}
