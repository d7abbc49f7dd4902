# shellcheck shell=bash
# A single-node Kubernetes cluster on top of a test environment
# (tests/env/lib.sh): etcd, kube-apiserver, kube-controller-manager,
# kube-scheduler and a kubelet that talks to the environment's containerd,
# all inside the environment's network namespace, so that probes, pod IPs,
# exec and logs work as on a node. Sourced by tests/k8s/k8s-up.sh,
# k8s-down.sh and the tests (tests/k8s/lib.sh), after tests/env/lib.sh and
# env_init. Bash only; callers run with `set -euo pipefail`.
#
# A cluster belongs to its environment (NAME) and owns:
#   config   K8S_DIR (default <build>/k8s/NAME): pki/ (certificates and keys
#            made with openssl at every start), kubeconfigs, the kubelet's
#            config, log/ (one file per component, kept after k8s-down),
#            bin/kubectl (kubectl run inside the netns)
#   state    /run/NAME/k8s (pid files, etcd's data: tmpfs, thrown away) and
#            /var/lib/NAME/k8s/kubelet (the kubelet's root dir: pod volumes)
#   netns    the environment's; the node's IP K8S_NODE_IP (10.250.0.1, outside
#            every env's pod subnet 10.200-249.x.0/24) on its lo
#   cgroups  /sys/fs/cgroup/<ctrl>/NAME/kubepods (the kubelet's cgroupRoot is
#            /NAME, so pods' cgroups go with the environment's)
#   logs     the pods' CRI logs in /var/log/pods/<ns>_<pod>_<uid> and links in
#            /var/log/containers (the kubelet 1.23 has these paths built in)
# The binaries (K8S_BIN_DIR, default ../shared/k8s beside the repository:
# plain, or .xz which are decompressed into <build>/k8s/bin) are Kubernetes
# v1.23's; etcd is Debian's etcd-server.

K8S_LIB_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
K8S_BINARIES=(kube-apiserver kube-controller-manager kube-scheduler kubelet kubectl)
# What the kubelet 1.23 sets at start (container manager's setupKernelTunables).
K8S_SYSCTLS=(vm/overcommit_memory vm/panic_on_oom kernel/panic kernel/panic_on_oops
        kernel/keys/root_maxkeys kernel/keys/root_maxbytes)
# Machine-wide: serialises the kubelet's start with the saving and restoring
# of the sysctls above between clusters. (Settable: a kubelet started by an
# older checkout held it for as long as it ran.)
K8S_SYSCTL_LOCK=${K8S_SYSCTL_LOCK:-/run/unishim-k8s-sysctl.lock}
# Bounds on waits for events (a loaded 2-core TCG machine is slow).
K8S_TIMEOUT=${K8S_TIMEOUT:-240}

# k8s_init: sets the K8S_* variables for the current environment (ENV_*).
k8s_init() {
        K8S_BIN_DIR=${K8S_BIN_DIR:-$(realpath -m "$UNISHIM_SOURCE_DIR/../shared/k8s")}
        K8S_BIN_CACHE=$UNISHIM_BUILD_DIR/k8s/bin
        K8S_DIR=${K8S_DIR:-$UNISHIM_BUILD_DIR/k8s/$ENV_NAME}
        K8S_PKI=$K8S_DIR/pki
        K8S_LOG_DIR=$K8S_DIR/log
        K8S_RUN=$ENV_STATE/k8s
        K8S_VAR=$ENV_ROOT/k8s
        K8S_KUBELET_DIR=$K8S_VAR/kubelet
        K8S_NODE_NAME=$ENV_NAME
        K8S_NODE_IP=${K8S_NODE_IP:-10.250.0.1}
        K8S_SERVICE_CIDR=10.96.0.0/16
        K8S_API=https://127.0.0.1:6443
        K8S_CGROUP_ROOT=/$ENV_NS
        KUBECONFIG=$K8S_DIR/admin.kubeconfig
        K8S_KUBECTL=$K8S_DIR/bin/kubectl
        K8S_ENV_FILE=${K8S_ENV_FILE:-$UNISHIM_BUILD_DIR/k8s-env.sh}
}

# k8s_bins_found: true when K8S_BIN_DIR has the five binaries, plain or .xz.
k8s_bins_found() {
        local b
        for b in "${K8S_BINARIES[@]}"; do
                [ -x "$K8S_BIN_DIR/$b" ] || [ -f "$K8S_BIN_DIR/$b.xz" ] || return 1
        done
}

# k8s_bins_howto: what to do when k8s_bins_found fails (one line).
k8s_bins_howto() {
        echo "no Kubernetes binaries in $K8S_BIN_DIR: put kube-apiserver," \
                "kube-controller-manager, kube-scheduler, kubelet and kubectl v1.23 there" \
                "(plain or .xz; e.g. https://dl.k8s.io/release/v1.23.0/bin/linux/amd64/<name>)," \
                "or set K8S_BIN_DIR to a directory that has them"
}

# k8s_bins: sets K8S_BIN to a directory with the five binaries, runnable:
# K8S_BIN_DIR itself when they are plain there, else <build>/k8s/bin, where
# the .xz files are decompressed (checked against K8S_BIN_DIR/SHA256SUMS when
# it lists them) when they changed. Concurrent callers wait for each other.
k8s_bins() {
        local b plain=1 stamp fd rc=0
        k8s_bins_found || {
                env_log "$(k8s_bins_howto)"
                return 1
        }
        for b in "${K8S_BINARIES[@]}"; do
                [ -x "$K8S_BIN_DIR/$b" ] || plain=0
        done
        if [ "$plain" = 1 ]; then
                K8S_BIN=$(cd "$K8S_BIN_DIR" && pwd)
                return 0
        fi
        K8S_BIN=$K8S_BIN_CACHE
        mkdir -p "$K8S_BIN"
        stamp=$(cd "$K8S_BIN_DIR" && for b in "${K8S_BINARIES[@]}"; do
                stat -L -c '%n %s %Y' "$b.xz"
        done)
        exec {fd}>>"$K8S_BIN/.lock"
        flock -w 600 "$fd" || {
                exec {fd}>&-
                env_log "k8s: $K8S_BIN/.lock stayed taken"
                return 1
        }
        if [ "$(cat "$K8S_BIN/.stamp" 2>/dev/null)" != "$stamp" ]; then
                rc=0
                _k8s_unpack || rc=$?
                [ "$rc" = 0 ] && echo "$stamp" >"$K8S_BIN/.stamp"
        fi
        exec {fd}>&-
        return "$rc"
}

_k8s_unpack() {
        local b sum want
        env_log "k8s: decompressing the Kubernetes binaries from $K8S_BIN_DIR into $K8S_BIN"
        rm -f "$K8S_BIN/.stamp"
        for b in "${K8S_BINARIES[@]}"; do
                want=$(awk -v f="$b.xz" '$2 == f || $2 == "*" f { print $1 }' "$K8S_BIN_DIR/SHA256SUMS" 2>/dev/null)
                if [ -n "$want" ]; then
                        sum=$(sha256sum <"$K8S_BIN_DIR/$b.xz" | cut -d' ' -f1)
                        if [ "$sum" != "$want" ]; then
                                env_log "k8s: $K8S_BIN_DIR/$b.xz does not match its SHA256SUMS entry"
                                return 1
                        fi
                fi
                xz -dc "$K8S_BIN_DIR/$b.xz" >"$K8S_BIN/.$b.tmp" || {
                        env_log "k8s: cannot decompress $K8S_BIN_DIR/$b.xz"
                        rm -f "$K8S_BIN/.$b.tmp"
                        return 1
                }
                chmod 0755 "$K8S_BIN/.$b.tmp"
                mv "$K8S_BIN/.$b.tmp" "$K8S_BIN/$b"
        done
}

# kc ARGS...: kubectl against the cluster, inside the env's netns (the API
# server listens there); bounded by KC_TIMEOUT (default 120 s). Its cache is
# the cluster's: under env -i (CI) there is no HOME, and kubectl would make
# .kube/ in the current directory.
kc() {
        timeout -k 5 "${KC_TIMEOUT:-120}" nsenter --net="$ENV_NETNS_PATH" \
                "$K8S_BIN/kubectl" --kubeconfig="$KUBECONFIG" --cache-dir="$K8S_DIR/kube-cache" "$@"
}

# ---- processes ----

# k8s_pid NAME: pid of the cluster's component NAME (etcd, kube-apiserver,
# kube-controller-manager, kube-scheduler, kubelet) when it runs.
k8s_pid() {
        local pid
        pid=$(cat "$K8S_RUN/$1.pid" 2>/dev/null) || return 1
        [[ $pid =~ ^[1-9][0-9]*$ ]] && [ -e "/proc/$pid" ] || return 1
        _k8s_is_ours "$pid" || return 1
        echo "$pid"
}

# _k8s_is_ours PID: PID is one of this cluster's components: a k8s binary or
# etcd whose command line names this cluster's dirs.
_k8s_is_ours() {
        local a first x
        mapfile -d '' -t a 2>/dev/null <"/proc/$1/cmdline" || return 1
        first=${a[0]:-}
        case ${first##*/} in
        etcd | kube-apiserver | kube-controller-manager | kube-scheduler | kubelet) ;;
        *) return 1 ;;
        esac
        for x in "${a[@]}"; do
                [[ $x = *"$K8S_DIR/"* || $x = *"$K8S_RUN/"* ]] && return 0
        done
        return 1
}

# k8s_pids: every process of this cluster (components, strays).
k8s_pids() {
        local pid
        # (comm is cut at 15 characters: kube-controller)
        for pid in $(ps -e -o pid=,comm= | awk '$2 ~ /^(etcd|kube-apiserver|kube-controller|kube-scheduler|kubelet)$/ { print $1 }'); do
                _k8s_is_ours "$pid" && echo "$pid"
        done
        return 0
}

# _k8s_spawn NAME BINARY ARGS...: starts a component in the env's netns, in
# a session of its own (it outlives k8s-up), output to its log.
_k8s_spawn() {
        local name=$1
        shift
        : >>"$K8S_LOG_DIR/$name.log"
        echo "---- $(date -Is) start" >>"$K8S_LOG_DIR/$name.log"
        (cd / && exec setsid nsenter --net="$ENV_NETNS_PATH" "$@") \
                </dev/null >>"$K8S_LOG_DIR/$name.log" 2>&1 &
        echo "$!" >"$K8S_RUN/$name.pid"
}

# _k8s_gone PID: true when PID has exited (a zombie counts as gone).
_k8s_gone() {
        local s
        ! s=$(ps -o stat= -p "$1" 2>/dev/null) || [[ $s = Z* ]]
}

# _k8s_wait NAME WHAT COMMAND...: waits until COMMAND succeeds (at most
# K8S_TIMEOUT seconds); fails at once, with the end of its log, when
# component NAME exits meanwhile.
_k8s_wait() {
        local name=$1 what=$2 pid end=$((SECONDS + K8S_TIMEOUT))
        shift 2
        pid=$(cat "$K8S_RUN/$name.pid")
        while ((SECONDS < end)); do
                "$@" >/dev/null 2>&1 && return 0
                if _k8s_gone "$pid"; then
                        env_log "k8s: $name exited before $what; the end of $K8S_LOG_DIR/$name.log:"
                        tail -n 30 "$K8S_LOG_DIR/$name.log" >&2
                        return 1
                fi
                sleep 0.2
        done
        env_log "k8s: no $what within ${K8S_TIMEOUT}s; the end of $K8S_LOG_DIR/$name.log:"
        tail -n 30 "$K8S_LOG_DIR/$name.log" >&2
        return 1
}

# _k8s_stop_components SECONDS NAME...: SIGTERM to the components NAME...
# at once, SIGKILL to those still there after SECONDS; removes their pid
# files.
_k8s_stop_components() {
        local secs=$1 name pid pids=() end
        shift
        for name in "$@"; do
                if pid=$(k8s_pid "$name"); then
                        kill -TERM "$pid" 2>/dev/null && pids+=("$pid")
                fi
                rm -f "$K8S_RUN/$name.pid"
        done
        end=$((SECONDS + secs))
        for pid in "${pids[@]}"; do
                while ! _k8s_gone "$pid" && ((SECONDS < end)); do
                        sleep 0.1
                done
                _k8s_gone "$pid" || kill -KILL "$pid" 2>/dev/null || true
        done
}

# ---- health ----

_k8s_curl() {
        env_nsenter curl -sS --max-time 5 "$@"
}

k8s_etcd_up() { [[ $(_k8s_curl http://127.0.0.1:2379/health 2>/dev/null) = *'"health":"true"'* ]]; }
k8s_api_up() { [ "$(_k8s_curl --cacert "$K8S_PKI/ca.crt" "$K8S_API/readyz" 2>/dev/null)" = ok ]; }
# (their /healthz is readable without credentials; their serving
# certificates are self-signed in memory)
k8s_cm_up() { [ "$(_k8s_curl -k https://127.0.0.1:10257/healthz 2>/dev/null)" = ok ]; }
k8s_sched_up() { [ "$(_k8s_curl -k https://127.0.0.1:10259/healthz 2>/dev/null)" = ok ]; }
k8s_node_ready() {
        [ "$(KC_TIMEOUT=20 kc get node "$K8S_NODE_NAME" \
                -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null)" = True ]
}
_k8s_default_sa() {
        KC_TIMEOUT=20 kc -n default get serviceaccount default &&
                KC_TIMEOUT=20 kc -n default get configmap kube-root-ca.crt
}

# k8s_healthy: every component runs and answers, the node is Ready.
k8s_healthy() {
        local c
        for c in etcd kube-apiserver kube-controller-manager kube-scheduler kubelet; do
                k8s_pid "$c" >/dev/null || return 1
        done
        [ -n "${K8S_BIN:-}" ] || return 1
        k8s_api_up && k8s_cm_up && k8s_sched_up && k8s_node_ready
}

# ---- certificates (openssl, ECDSA P-256) ----

_k8s_openssl() {
        openssl "$@" >>"$K8S_PKI/openssl.log" 2>&1 || {
                env_log "k8s: openssl $1 failed; the end of $K8S_PKI/openssl.log:"
                tail -n 20 "$K8S_PKI/openssl.log" >&2
                return 1
        }
}

# _k8s_cert NAME SUBJECT EXTENDED_KEY_USAGE [SUBJECT_ALT_NAMES]: NAME.key and
# NAME.crt, signed by the cluster's CA.
_k8s_cert() {
        local p=$K8S_PKI name=$1
        {
                echo "basicConstraints = critical,CA:FALSE"
                echo "keyUsage = critical,digitalSignature,keyEncipherment"
                echo "extendedKeyUsage = $3"
                echo "subjectKeyIdentifier = hash"
                echo "authorityKeyIdentifier = keyid"
                [ -z "${4:-}" ] || echo "subjectAltName = $4"
        } >"$p/$name.ext"
        _k8s_openssl req -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 \
                -keyout "$p/$name.key" -subj "$2" -out "$p/$name.csr" || return 1
        _k8s_openssl x509 -req -in "$p/$name.csr" -CA "$p/ca.crt" -CAkey "$p/ca.key" \
                -set_serial "0x$(openssl rand -hex 16)" -days 365 -sha256 \
                -extfile "$p/$name.ext" -out "$p/$name.crt" || return 1
        rm -f "$p/$name.csr" "$p/$name.ext"
}

# k8s_pki: a fresh CA, the components' certificates and the service
# account signing key in K8S_PKI.
k8s_pki() {
        local p=$K8S_PKI
        rm -rf "$p"
        mkdir -p "$p"
        chmod 0700 "$p"
        cat >"$p/ca.cnf" <<'EOF'
[req]
distinguished_name = dn
[dn]
[v3_ca]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign,digitalSignature
subjectKeyIdentifier = hash
EOF
        _k8s_openssl req -x509 -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 \
                -config "$p/ca.cnf" -extensions v3_ca -keyout "$p/ca.key" -out "$p/ca.crt" \
                -days 3650 -sha256 -subj "/CN=unishim-k8s-ca $ENV_NAME" || return 1
        local svc_ip=${K8S_SERVICE_CIDR%.0/*}.1
        _k8s_cert apiserver /CN=kube-apiserver serverAuth \
                "DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local,DNS:localhost,IP:127.0.0.1,IP:$K8S_NODE_IP,IP:$svc_ip" || return 1
        # kubeadm's choice: the API server's client to kubelets is a master.
        _k8s_cert apiserver-kubelet-client "/O=system:masters/CN=kube-apiserver-kubelet-client" clientAuth || return 1
        _k8s_cert admin "/O=system:masters/CN=kubernetes-admin" clientAuth || return 1
        _k8s_cert controller-manager /CN=system:kube-controller-manager clientAuth || return 1
        _k8s_cert scheduler /CN=system:kube-scheduler clientAuth || return 1
        _k8s_cert kubelet-client "/O=system:nodes/CN=system:node:$K8S_NODE_NAME" clientAuth || return 1
        _k8s_cert kubelet "/CN=$K8S_NODE_NAME" serverAuth "DNS:$K8S_NODE_NAME,IP:$K8S_NODE_IP" || return 1
        _k8s_openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$p/sa.key" || return 1
        _k8s_openssl pkey -in "$p/sa.key" -pubout -out "$p/sa.pub" || return 1
        rm -f "$p/ca.cnf"
}

# _k8s_kubeconfig FILE USER CERT: a kubeconfig for USER with CERT.{crt,key}.
_k8s_kubeconfig() {
        cat >"$1" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: $ENV_NAME
  cluster:
    server: $K8S_API
    certificate-authority-data: $(base64 -w0 "$K8S_PKI/ca.crt")
users:
- name: $2
  user:
    client-certificate-data: $(base64 -w0 "$K8S_PKI/$3.crt")
    client-key-data: $(base64 -w0 "$K8S_PKI/$3.key")
contexts:
- name: $2@$ENV_NAME
  context:
    cluster: $ENV_NAME
    user: $2
current-context: $2@$ENV_NAME
EOF
        chmod 0600 "$1"
}

_k8s_kubelet_config() {
        cat >"$K8S_DIR/kubelet-config.yaml" <<EOF
# The kubelet of tests/k8s (cluster.sh).
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: $K8S_NODE_IP
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 10248
tlsCertFile: $K8S_PKI/kubelet.crt
tlsPrivateKeyFile: $K8S_PKI/kubelet.key
authentication:
  anonymous:
    enabled: false
  webhook:
    enabled: true
  x509:
    clientCAFile: $K8S_PKI/ca.crt
authorization:
  mode: Webhook
# Debian 12 here: cgroup v1 (hybrid). Pod cgroups under the environment's
# (/NAME/kubepods/...), removed with it.
cgroupDriver: cgroupfs
cgroupRoot: $K8S_CGROUP_ROOT
cgroupsPerQOS: true
enforceNodeAllocatable: [pods]
failSwapOn: false
# No KUBE-* chains: the kubelet runs in the env's netns, whose rules belong
# to the environment.
makeIPTablesUtilChains: false
# A test machine's disk is shared: no eviction or image GC because of it.
evictionHard:
  memory.available: 100Mi
  nodefs.available: 1%
  nodefs.inodesFree: 1%
  imagefs.available: 1%
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
serializeImagePulls: false
clusterDomain: cluster.local
# A sandbox pod boots a VM in RunPodSandbox: under TCG that takes seconds.
runtimeRequestTimeout: 4m
staticPodPath: ""
EOF
}

# ---- the node's pieces in the environment ----

# _k8s_cgroup_root: /NAME in every cgroup v1 hierarchy (the kubelet checks
# that its cgroupRoot exists), cpuset's filled from its parent. Where /NAME
# is not there yet, in the cgroup2 one of a hybrid host too (the runtimes
# make the pods' dirs there), it is listed in K8S_RUN/cgroups-created for
# k8s_stop.
_k8s_cgroup_root() {
        local m type c
        while read -r m type; do
                [ ! -d "$m$K8S_CGROUP_ROOT" ] || continue
                echo "$m$K8S_CGROUP_ROOT" >>"$K8S_RUN/cgroups-created"
                [ "$type" = cgroup ] || continue
                mkdir "$m$K8S_CGROUP_ROOT"
                if [ "${m##*/}" = cpuset ]; then
                        for c in cpus mems; do
                                cat "$m/cpuset.$c" >"$m$K8S_CGROUP_ROOT/cpuset.$c"
                        done
                fi
        done < <(awk '($9 == "cgroup" || $9 == "cgroup2") && index($5, "/sys/fs/cgroup/") == 1 { print $5, $9 }' /proc/self/mountinfo)
}

# _k8s_sysctls: the machine's values of K8S_SYSCTLS, "path value" per line.
_k8s_sysctls() {
        local s
        for s in "${K8S_SYSCTLS[@]}"; do
                echo "$s $(cat "/proc/sys/$s")"
        done
}

# _k8s_sysctls_restore: writes back the values saved in K8S_RUN/sysctl.saved
# (where they differ) and removes the file.
_k8s_sysctls_restore() {
        local s v
        [ -f "$K8S_RUN/sysctl.saved" ] || return 0
        while read -r s v; do
                [ -n "$s" ] && [ "$(cat "/proc/sys/$s")" != "$v" ] || continue
                echo "$v" >"/proc/sys/$s" || env_log "k8s: cannot restore /proc/sys/$s to $v"
        done <"$K8S_RUN/sysctl.saved"
        rm -f "$K8S_RUN/sysctl.saved"
}

# ---- start ----

# _k8s_phase WHAT: appends "WHAT N s" (the time since the last phase) to
# K8S_PHASES, which k8s-up prints.
_k8s_phase() {
        local now=$SECONDS
        K8S_PHASES+="${K8S_PHASES:+, }$1 $((now - ${_K8S_MARK:-now})) s"
        _K8S_MARK=$now
}

# k8s_start: starts the cluster on the running environment (ENV_*; its CRI
# on). Idempotent: a healthy cluster is left as it is. K8S_BIN must be set
# (k8s_bins).
k8s_start() {
        if k8s_healthy; then
                return 0
        fi
        if [ -n "$(k8s_pids)" ]; then
                env_log "k8s: the cluster of $ENV_NAME runs but is unhealthy; restarting it"
                k8s_stop
        fi
        local minor
        minor=$("$K8S_BIN/kubelet" --version | sed -n 's/^Kubernetes v1\.\([0-9]*\)\..*/\1/p')
        if [ -z "$minor" ]; then
                env_log "k8s: $K8S_BIN/kubelet --version: not Kubernetes 1.x"
                return 1
        fi
        mkdir -p "$K8S_DIR/bin" "$K8S_LOG_DIR" "$K8S_RUN" "$K8S_KUBELET_DIR"
        chmod 0700 "$K8S_RUN" "$K8S_VAR"
        [ -d /var/log/pods ] || echo pods >>"$K8S_RUN/var-log-created"
        [ -d /var/log/containers ] || echo containers >>"$K8S_RUN/var-log-created"

        _K8S_MARK=$SECONDS
        k8s_pki || return 1
        _k8s_kubeconfig "$KUBECONFIG" kubernetes-admin admin
        _k8s_kubeconfig "$K8S_DIR/controller-manager.kubeconfig" system:kube-controller-manager controller-manager
        _k8s_kubeconfig "$K8S_DIR/scheduler.kubeconfig" system:kube-scheduler scheduler
        _k8s_kubeconfig "$K8S_DIR/kubelet.kubeconfig" "system:node:$K8S_NODE_NAME" kubelet-client
        _k8s_kubelet_config
        cat >"$K8S_KUBECTL" <<EOF
#!/bin/sh
# kubectl for the test cluster of $ENV_NAME: its API server listens inside
# the environment's network namespace (written by tests/k8s/cluster.sh).
exec nsenter --net=$ENV_NETNS_PATH $K8S_BIN/kubectl --kubeconfig=$KUBECONFIG "\$@"
EOF
        chmod 0755 "$K8S_KUBECTL"

        ip -n "$ENV_NETNS" addr replace "$K8S_NODE_IP/32" dev lo
        _k8s_cgroup_root

        _k8s_spawn etcd etcd --name "$K8S_NODE_NAME" --data-dir "$K8S_RUN/etcd" \
                --listen-client-urls http://127.0.0.1:2379 --advertise-client-urls http://127.0.0.1:2379 \
                --listen-peer-urls http://127.0.0.1:2380 --initial-advertise-peer-urls http://127.0.0.1:2380 \
                --initial-cluster "$K8S_NODE_NAME=http://127.0.0.1:2380" --listen-metrics-urls "" \
                --logger zap --log-outputs stderr
        _k8s_phase certificates
        _k8s_wait etcd "an answer on 127.0.0.1:2379" k8s_etcd_up || return 1
        _k8s_phase etcd

        local p=$K8S_PKI
        _k8s_spawn kube-apiserver "$K8S_BIN/kube-apiserver" \
                --etcd-servers=http://127.0.0.1:2379 \
                --bind-address=0.0.0.0 --secure-port=6443 --advertise-address="$K8S_NODE_IP" \
                --service-cluster-ip-range="$K8S_SERVICE_CIDR" \
                --client-ca-file="$p/ca.crt" --tls-cert-file="$p/apiserver.crt" --tls-private-key-file="$p/apiserver.key" \
                --kubelet-client-certificate="$p/apiserver-kubelet-client.crt" \
                --kubelet-client-key="$p/apiserver-kubelet-client.key" \
                --kubelet-certificate-authority="$p/ca.crt" --kubelet-preferred-address-types=InternalIP \
                --service-account-key-file="$p/sa.pub" --service-account-signing-key-file="$p/sa.key" \
                --service-account-issuer=https://kubernetes.default.svc.cluster.local \
                --authorization-mode=Node,RBAC --enable-admission-plugins=NodeRestriction \
                --allow-privileged=true --profiling=false
        _k8s_wait kube-apiserver "/readyz ok" k8s_api_up || return 1
        _k8s_phase "API server"

        local kcm=$K8S_DIR/controller-manager.kubeconfig ks=$K8S_DIR/scheduler.kubeconfig
        _k8s_spawn kube-controller-manager "$K8S_BIN/kube-controller-manager" \
                --kubeconfig="$kcm" --authentication-kubeconfig="$kcm" --authorization-kubeconfig="$kcm" \
                --bind-address=127.0.0.1 --leader-elect=false --use-service-account-credentials=true \
                --service-account-private-key-file="$p/sa.key" --root-ca-file="$p/ca.crt" \
                --cluster-signing-cert-file="$p/ca.crt" --cluster-signing-key-file="$p/ca.key" \
                --allocate-node-cidrs=false --profiling=false
        _k8s_spawn kube-scheduler "$K8S_BIN/kube-scheduler" \
                --kubeconfig="$ks" --authentication-kubeconfig="$ks" --authorization-kubeconfig="$ks" \
                --bind-address=127.0.0.1 --leader-elect=false --profiling=false

        local kubelet_args=(--config="$K8S_DIR/kubelet-config.yaml" --kubeconfig="$K8S_DIR/kubelet.kubeconfig"
                --container-runtime-endpoint="unix://$ENV_ADDR"
                --pod-infra-container-image="$CRI_PAUSE_IMAGE"
                --root-dir="$K8S_KUBELET_DIR" --cert-dir="$K8S_PKI"
                --volume-plugin-dir="$K8S_KUBELET_DIR/volume-plugins"
                --hostname-override="$K8S_NODE_NAME" --node-ip="$K8S_NODE_IP" --v=2)
        # (1.24 removed the flag: remote is all there is)
        [ "$minor" -ge 24 ] || kubelet_args+=(--container-runtime=remote)
        # The kubelet sets K8S_SYSCTLS machine-wide when its container
        # manager starts (it has no way to leave them be): the machine's
        # values are put back once it has (the node is Ready then), under a
        # lock so that another cluster's kubelet starting meanwhile does not
        # take the kubelet's values for the machine's.
        local fd rc=0
        exec {fd}>>"$K8S_SYSCTL_LOCK"
        if ! flock -w "$K8S_TIMEOUT" "$fd"; then
                exec {fd}>&-
                env_log "k8s: $K8S_SYSCTL_LOCK stayed taken for ${K8S_TIMEOUT}s"
                return 1
        fi
        _k8s_sysctls >"$K8S_RUN/sysctl.saved"
        # (the lock's fd closed for it: a kubelet that inherits it holds
        # the lock for as long as it runs)
        _k8s_spawn kubelet "$K8S_BIN/kubelet" "${kubelet_args[@]}" {fd}>&-
        _k8s_wait kubelet "node $K8S_NODE_NAME Ready" k8s_node_ready || rc=1
        _k8s_sysctls_restore
        exec {fd}>&-
        [ "$rc" = 0 ] || return 1
        _k8s_phase "node Ready"

        _k8s_wait kube-controller-manager "/healthz ok" k8s_cm_up || return 1
        _k8s_wait kube-scheduler "/healthz ok" k8s_sched_up || return 1
        # The default service account and the root CA's configmap: a pod
        # created before them is refused, or waits for its token volume.
        _k8s_wait kube-controller-manager "the default service account" _k8s_default_sa || return 1
        kc apply -f "$UNISHIM_SOURCE_DIR/deploy/runtimeclasses.yaml" >"$K8S_LOG_DIR/apply.log" 2>&1 || {
                env_log "k8s: kubectl apply -f deploy/runtimeclasses.yaml failed:"
                cat "$K8S_LOG_DIR/apply.log" >&2
                return 1
        }
        # The environment's containerd has unishim's handlers: the node is
        # what the installer (deploy/) labels, and the RuntimeClasses'
        # nodeSelector asks for the label.
        kc label --overwrite node "$K8S_NODE_NAME" unishim.io/installed=true >>"$K8S_LOG_DIR/apply.log" 2>&1 || {
                env_log "k8s: kubectl label node $K8S_NODE_NAME failed:"
                cat "$K8S_LOG_DIR/apply.log" >&2
                return 1
        }
        _k8s_phase "controllers, RuntimeClasses"
}

# ---- stop ----

# k8s_kubelet_sandboxes: ids of the CRI pod sandboxes the kubelet made (they
# carry its io.kubernetes.pod.uid label), each with the pod's uid.
k8s_kubelet_sandboxes() {
        env_containerd_pid >/dev/null || return 0
        local ids id uid
        ids=$(CTR_TIMEOUT=15 timeout -k 5 20 ctr -a "$ENV_ADDR" -n k8s.io containers ls -q \
                'labels."io.cri-containerd.kind"==sandbox,labels."io.kubernetes.pod.uid"' 2>/dev/null) || return 0
        for id in $ids; do
                uid=$(timeout -k 5 20 ctr -a "$ENV_ADDR" -n k8s.io containers info "$id" 2>/dev/null |
                        jq -r '.Labels["io.kubernetes.pod.uid"] // empty' 2>/dev/null) || uid=
                echo "$id $uid"
        done
        return 0
}

# _k8s_pod_log_dirs UID...: the pods' CRI log dirs and links in /var/log.
_k8s_pod_log_dirs() {
        local uid l
        for uid in "$@"; do
                [ -n "$uid" ] || continue
                compgen -G "/var/log/pods/*_$uid" || true
                for l in /var/log/containers/*.log; do
                        [ -L "$l" ] && [[ $(readlink "$l") = /var/log/pods/*_"$uid"/* ]] && echo "$l"
                done
        done
        return 0
}

# k8s_stop: stops the cluster and removes what it made: its pods (through the
# CRI, the kubelet stopped first), their volumes' mounts and log dirs, the
# kubepods cgroups, the node IP, K8S_RUN and K8S_VAR; the sysctls a
# kubelet start left. Leaves K8S_DIR (its logs). Sets K8S_POD_UIDS (the
# kubelet's pods it removed). Safe on a cluster half up or gone.
k8s_stop() {
        local c id uid m d created cgroups
        K8S_POD_UIDS=()
        created=$(cat "$K8S_RUN/var-log-created" 2>/dev/null) || created=
        cgroups=$(cat "$K8S_RUN/cgroups-created" 2>/dev/null) || cgroups=
        # (kube-scheduler 1.23 without leader election leaves on SIGTERM
        # only once a pod comes to schedule: it is not waited for)
        _k8s_stop_components 1 kube-scheduler
        _k8s_stop_components 30 kube-controller-manager kubelet
        # The pods the kubelet knew, and those the CRI has.
        for d in "$K8S_KUBELET_DIR"/pods/*/; do
                [ -d "$d" ] && K8S_POD_UIDS+=("$(basename "$d")")
        done
        while read -r id uid; do
                [ -n "$id" ] || continue
                [ -n "$uid" ] && K8S_POD_UIDS+=("$uid")
                if [ -x "$UNISHIMCTL" ]; then
                        CTR_TIMEOUT=60 ectl rm --timeout 0 "$id" >/dev/null 2>&1 || true
                fi
        done < <(k8s_kubelet_sandboxes)
        _k8s_stop_components 30 kube-apiserver
        _k8s_stop_components 30 etcd
        for c in $(k8s_pids); do
                kill -KILL "$c" 2>/dev/null || true
        done
        _k8s_sysctls_restore
        # The kubelet's root dir (bind-mounted on itself, rshared) and the
        # pods' volumes under it, deepest first.
        for m in $(awk -v r="$K8S_VAR/" -v s="$K8S_RUN/" '
                function unesc(p) { gsub(/\\040/, " ", p); return p }
                { p = unesc($5) "/"; if (index(p, r) == 1 || index(p, s) == 1) print unesc($5) }
                ' /proc/self/mountinfo | sort -r); do
                umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true
        done
        rm -rf "$K8S_VAR" "$K8S_RUN"
        for d in $(_k8s_pod_log_dirs "${K8S_POD_UIDS[@]}"); do
                rm -rf "$d"
        done
        for d in $created; do
                rmdir "/var/log/$d" 2>/dev/null || true
        done
        { find /sys/fs/cgroup/*"$K8S_CGROUP_ROOT"/kubepods -depth -type d 2>/dev/null || true; } |
                while read -r d; do rmdir "$d" 2>/dev/null || true; done
        # The environment's cgroup root where k8s-up made it (the env makes
        # it again when it needs it; one it uses meanwhile is not empty).
        for d in $cgroups; do
                rmdir "$d" 2>/dev/null || true
        done
        if [ -e "$ENV_NETNS_PATH" ]; then
                ip -n "$ENV_NETNS" addr del "$K8S_NODE_IP/32" dev lo 2>/dev/null || true
        fi
        rm -f "$K8S_KUBECTL"
        return 0
}

# k8s_leftovers [UID...]: what of the cluster is still on the machine, one
# line each: its processes, mounts and dirs, kubepods cgroups, the kubelet's
# sandboxes in the CRI, the node IP and KUBE-* iptables chains in the netns,
# the log dirs of the pods UID..., sysctls not restored. Empty when clean.
k8s_leftovers() {
        local pid d
        for pid in $(k8s_pids); do
                echo "process $pid $(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | cut -c1-120)"
        done
        awk -v r="$K8S_VAR" -v s="$K8S_RUN" '
                { p = $5 "/"; if (index(p, r "/") == 1 || index(p, s "/") == 1) print "mount " $5 }
        ' /proc/self/mountinfo
        for d in "$K8S_VAR" "$K8S_RUN"; do
                [ -e "$d" ] && echo "dir $d"
        done
        { find /sys/fs/cgroup/*"$K8S_CGROUP_ROOT"/kubepods -maxdepth 0 -type d 2>/dev/null || true; } | sed 's/^/cgroup /'
        k8s_kubelet_sandboxes | sed 's/^/CRI pod sandbox /'
        if [ -e "$ENV_NETNS_PATH" ]; then
                ip -n "$ENV_NETNS" -o addr show dev lo 2>/dev/null | grep -F " $K8S_NODE_IP/" |
                        sed 's/^/node IP: /' || true
                env_nsenter iptables-save 2>/dev/null | grep -E '^:KUBE-' | sed 's/^/iptables chain /' || true
        fi
        _k8s_pod_log_dirs "$@" | sed 's/^/pod log /'
        return 0
}

# k8s_write_file FILE: the sourceable variables of the cluster (and the
# environment's, from UNISHIM_ENV_FILE).
k8s_write_file() {
        local env_file=${UNISHIM_ENV_FILE:-$UNISHIM_BUILD_DIR/env.sh}
        mkdir -p "$(dirname "$1")"
        cat >"$1.tmp" <<EOF
# Written by tests/k8s/k8s-up.sh: the Kubernetes test cluster on $ENV_NAME.
[ ! -r $env_file ] || . $env_file
export KUBECONFIG=$KUBECONFIG
# kubectl on the host: the API server listens inside the netns; this one
# enters it (root only).
export K8S_KUBECTL=$K8S_KUBECTL
export PATH=$K8S_DIR/bin:\$PATH
export K8S_BIN=$K8S_BIN
export K8S_DIR=$K8S_DIR
export K8S_LOG_DIR=$K8S_LOG_DIR
export K8S_NODE_NAME=$K8S_NODE_NAME
export K8S_NODE_IP=$K8S_NODE_IP
export K8S_API=$K8S_API
export K8S_KUBELET_DIR=$K8S_KUBELET_DIR
export K8S_NETNS=$ENV_NETNS
EOF
        mv "$1.tmp" "$1"
}
