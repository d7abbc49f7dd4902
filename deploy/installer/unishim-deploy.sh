#!/bin/sh
# unishim's node installer, in the style of kata-deploy: run by the
# DaemonSet of deploy/unishim-deploy.yaml (install) and of
# deploy/unishim-cleanup.yaml (uninstall) in a privileged container with the
# node's root filesystem mounted at HOST_ROOT, or by hand on a node.
#
#   unishim-deploy.sh install   [--wait]
#   unishim-deploy.sh uninstall [--wait]
#
# install: copies the shim, unishimctl, the guest image (vmlinux,
#   initramfs.cpio, kernel-config) and the handlers' configs to INSTALL_DIR
#   on the node;
#   registers the runtime handlers unishim, unishim-sandbox and unishim-vm with
#   containerd through a drop-in file (CONTAINERD_DROPIN) that
#   CONTAINERD_CONFIG imports; restarts containerd; labels the node
#   NODE_LABEL=true. Running it again replaces what an earlier run installed.
# uninstall: removes the label, the drop-in and the import (the config file
#   is left byte for byte as before install), restarts containerd, removes
#   the node's VM templates (`unishimctl template rm --all` per handler
#   config: their holders keep guest memory) and INSTALL_DIR.
# --wait: then creates /tmp/unishim-deploy.done (the DaemonSets' readiness
#   probe) and sleeps until terminated (a DaemonSet's container must not
#   exit).
#
# Parameters (environment; paths are the node's, without HOST_ROOT):
#   HOST_ROOT           the node's / in this container (/host)
#   INSTALL_DIR         where the files go (/opt/unishim)
#   CONTAINERD_CONFIG   containerd's main config (/etc/containerd/config.toml)
#   CONTAINERD_DROPIN   the drop-in (<config's dir>/conf.d/unishim.toml)
#   CONTAINERD_VERSION  1 or 2 (default: from `containerd --version` on the node)
#   CONTAINERD_BIN      containerd on the node, for its version and `config dump`
#                       (containerd)
#   HOST_EXEC           the prefix that runs a command on the node: in its
#                       mount namespace, through PID 1 (the pod has hostPID)
#                       ("nsenter --target 1 --mount --")
#   CONTAINERD_RESTART  the node's command that restarts containerd
#                       ("systemctl restart containerd"); "none": the
#                       installer says how and does not restart it
#   SHIM_LINK           a link to the installed shim on containerd's PATH
#                       (/usr/local/bin/containerd-shim-unishim-v2): containerd
#                       1.6 starts a pod's shim by name from its PATH whatever
#                       the handler's runtime_path; "none": no link
#   NODE_NAME           the node to label (the DaemonSet sets it from
#                       spec.nodeName); empty: no label
#   NODE_LABEL          the label (unishim.io/installed)
#   KUBECTL             kubectl (the pod's service account: in-cluster config)
#   ARTIFACTS           what is installed, in this image (the script's dir)
#
# containerd 1.6 and 1.7 replace a plugin's whole section with an imported
# file's (containerd issue 5837): their drop-in holds the node's whole CRI
# section (from `containerd config dump`, without the drop-in) and the
# handlers. containerd 2.x merges imports key by key: its drop-in holds only
# the handlers (config version 3).
set -eu

# (empty: this is the node)
HOST_ROOT=${HOST_ROOT-/host}
INSTALL_DIR=${INSTALL_DIR:-/opt/unishim}
CONTAINERD_CONFIG=${CONTAINERD_CONFIG:-/etc/containerd/config.toml}
CONTAINERD_DROPIN=${CONTAINERD_DROPIN:-$(dirname "$CONTAINERD_CONFIG")/conf.d/unishim.toml}
CONTAINERD_VERSION=${CONTAINERD_VERSION:-}
CONTAINERD_BIN=${CONTAINERD_BIN:-containerd}
HOST_EXEC=${HOST_EXEC:-nsenter --target 1 --mount --}
CONTAINERD_RESTART=${CONTAINERD_RESTART:-systemctl restart containerd}
SHIM_LINK=${SHIM_LINK:-/usr/local/bin/containerd-shim-unishim-v2}
NODE_NAME=${NODE_NAME:-}
NODE_LABEL=${NODE_LABEL:-unishim.io/installed}
KUBECTL=${KUBECTL:-kubectl}
ARTIFACTS=${ARTIFACTS:-$(cd "$(dirname "$0")" && pwd)}
HANDLERS="unishim unishim-sandbox unishim-vm"
# The line this installer adds to CONTAINERD_CONFIG when it has no imports.
MARK="# unishim-deploy: removed by unishim-deploy.sh uninstall"

log() { echo "unishim-deploy: $*" >&2; }
die() {
        log "error: $*"
        exit 1
}

# host CMD...: CMD on the node (HOST_EXEC).
host() {
        # shellcheck disable=SC2086
        $HOST_EXEC "$@"
}

containerd_major() {
        if [ -n "$CONTAINERD_VERSION" ]; then
                echo "${CONTAINERD_VERSION%%.*}"
                return
        fi
        # "containerd github.com/containerd/containerd v1.7.2 <commit>" or
        # Debian's "... 1.6.20~ds1 1.6.20~ds1-1+deb12u3"
        host "$CONTAINERD_BIN" --version | awk '{ v = $3; sub(/^v/, "", v); split(v, p, "."); print p[1]; exit }'
}

# ---- the containerd config ----

# toml_string S: S as a TOML basic string.
toml_string() {
        printf '"%s"' "$(printf '%s' "$1" | sed 's/\\/\\\\/g; s/"/\\"/g')"
}

# imports_add: CONTAINERD_DROPIN into CONTAINERD_CONFIG's imports (a line of
# its own, marked, when it has none). Only a one-line imports array is edited.
imports_add() {
        local_cfg=$HOST_ROOT$CONTAINERD_CONFIG
        q=$(toml_string "$CONTAINERD_DROPIN")
        if grep -qF "$q" "$local_cfg"; then
                return 0
        fi
        if grep -q '^[[:space:]]*imports[[:space:]]*=' "$local_cfg"; then
                grep -q '^[[:space:]]*imports[[:space:]]*=[[:space:]]*\[.*\]' "$local_cfg" ||
                        die "$CONTAINERD_CONFIG: its imports array spans lines; add $q to it by hand"
                # After the last element, so the drop-in is merged last.
                sed -i "/^[[:space:]]*imports[[:space:]]*=/s|\[[[:space:]]*\]|[$q]|" "$local_cfg"
                grep -qF "$q" "$local_cfg" ||
                        sed -i "s|^\([[:space:]]*imports[[:space:]]*=[[:space:]]*\[.*[^[:space:]]\)[[:space:]]*\]|\1, $q]|;
                        s|^\([[:space:]]*imports[[:space:]]*=[[:space:]]*\)\[[[:space:]]*, |\1[|" "$local_cfg"
        else
                # A top-level key must come before the first table: the file's
                # first line.
                sed -i "1i imports = [$q] $MARK" "$local_cfg"
        fi
        grep -qF "$q" "$local_cfg" || die "$CONTAINERD_CONFIG: could not add $q to its imports"
}

# imports_remove: undoes imports_add.
imports_remove() {
        local_cfg=$HOST_ROOT$CONTAINERD_CONFIG
        [ -f "$local_cfg" ] || return 0
        q=$(toml_string "$CONTAINERD_DROPIN")
        grep -qF "$q" "$local_cfg" || return 0
        # (| is not in a path we write: sed's delimiter)
        qe=$(printf '%s' "$q" | sed 's/[].[*^$\\/]/\\&/g')
        sed -i "/^imports = \[$qe\] $MARK\$/d" "$local_cfg"
        sed -i "/^[[:space:]]*imports[[:space:]]*=/{
                s|, $qe||
                s|$qe, ||
                s|$qe||
        }" "$local_cfg"
        ! grep -qF "$q" "$local_cfg" || die "$CONTAINERD_CONFIG: could not remove $q from its imports"
}

# cri_section_v1: the CRI plugin's section of the node's effective config
# (containerd 1.x, config version 2), without the handlers installed here.
cri_section_v1() {
        dump=$(host "$CONTAINERD_BIN" --config "$CONTAINERD_CONFIG" config dump) || return 1
        printf '%s\n' "$dump" | awk -v handlers="$HANDLERS" '
                BEGIN {
                        n = split(handlers, h, " ")
                        cri = "plugins.\"io.containerd.grpc.v1.cri\""
                }
                /^[[:space:]]*\[/ {
                        t = $0
                        sub(/^[[:space:]]*\[+/, "", t)
                        sub(/\]+[[:space:]]*$/, "", t)
                        keep = (t == cri || index(t, cri ".") == 1)
                        for (i = 1; i <= n && keep; i++) {
                                r = cri ".containerd.runtimes." h[i]
                                r2 = cri ".containerd.runtimes.\"" h[i] "\""
                                if (t == r || index(t, r ".") == 1 || t == r2 || index(t, r2 ".") == 1)
                                        keep = 0
                        }
                }
                /^[[:space:]]*\[/ || keep { if (keep) print }
        '
}

# dropin_handlers PREFIX: the three handlers' tables under PREFIX (the CRI
# runtime plugin's key of the config version).
dropin_handlers() {
        pfx=$1
        bin=$(toml_string "$INSTALL_DIR/bin/containerd-shim-unishim-v2")
        for h in $HANDLERS; do
                cat <<EOF

[$pfx.containerd.runtimes.$h]
  runtime_type = "io.containerd.unishim.v2"
  runtime_path = $bin
  pod_annotations = ["unishim.io/*"]
  [$pfx.containerd.runtimes.$h.options]
    ConfigPath = $(toml_string "$INSTALL_DIR/etc/$h.json")
EOF
        done
}

dropin_write() {
        major=$1
        out=$HOST_ROOT$CONTAINERD_DROPIN
        mkdir -p "$(dirname "$out")"
        {
                echo "# unishim's runtime handlers, written by unishim-deploy.sh install"
                echo "# (deploy/installer/); removed by its uninstall."
                if [ "$major" -ge 2 ]; then
                        echo "version = 3"
                        dropin_handlers "plugins.'io.containerd.cri.v1.runtime'"
                else
                        echo "# containerd $major.x replaces the CRI plugin's whole section with an"
                        echo "# imported one: this is the node's, from \`containerd config dump\`."
                        echo "version = 2"
                        echo
                        cri=$(cri_section_v1) || die "containerd config dump of $CONTAINERD_CONFIG failed"
                        [ -n "$cri" ] || die "containerd config dump of $CONTAINERD_CONFIG: no CRI plugin section"
                        printf '%s\n' "$cri"
                        dropin_handlers 'plugins."io.containerd.grpc.v1.cri"'
                fi
        } >"$out.tmp"
        mv "$out.tmp" "$out"
}

containerd_restart() {
        if [ "$CONTAINERD_RESTART" = none ]; then
                log "containerd was not restarted (CONTAINERD_RESTART=none): restart it on node" \
                        "${NODE_NAME:-this node} (e.g. systemctl restart containerd) for the change to take effect"
                return 0
        fi
        log "restarting containerd: $CONTAINERD_RESTART"
        # shellcheck disable=SC2086
        host sh -c "$CONTAINERD_RESTART" ||
                die "restarting containerd ($CONTAINERD_RESTART) failed; restart it on the node by hand"
}

# ---- the node's label ----

node_label() {
        [ -n "$NODE_NAME" ] || {
                log "NODE_NAME is not set: the node is not labelled $NODE_LABEL"
                return 0
        }
        i=0
        # The API may be unreachable for a moment while containerd restarts
        # (a CNI whose pods run in it).
        until "$KUBECTL" label node "$NODE_NAME" --overwrite "$1" >/dev/null; do
                i=$((i + 1))
                [ "$i" -lt 30 ] || die "kubectl label node $NODE_NAME $1 failed"
                sleep 2
        done
        log "node $NODE_NAME: label $1"
}

# ---- install, uninstall ----

install_files() {
        a=$ARTIFACTS
        for f in bin/containerd-shim-unishim-v2 bin/unishimctl share/unishim/vmlinux \
                share/unishim/initramfs.cpio share/unishim/kernel-config; do
                [ -f "$a/$f" ] || die "$a/$f missing from the installer's image"
        done
        d=$HOST_ROOT$INSTALL_DIR
        # A new tree beside the old one, then swapped: a shim starting
        # meanwhile finds a whole one.
        rm -rf "$d.new"
        mkdir -p "$d.new/bin" "$d.new/share/unishim" "$d.new/etc"
        cp "$a/bin/containerd-shim-unishim-v2" "$a/bin/unishimctl" "$d.new/bin/"
        cp "$a/share/unishim/vmlinux" "$a/share/unishim/initramfs.cpio" \
                "$a/share/unishim/kernel-config" "$d.new/share/unishim/"
        for h in $HANDLERS; do
                cp "$a/etc/$h.json" "$d.new/etc/$h.json"
        done
        chmod 0755 "$d.new/bin/containerd-shim-unishim-v2" "$d.new/bin/unishimctl"
        rm -rf "$d.old"
        [ ! -e "$d" ] || mv "$d" "$d.old"
        mv "$d.new" "$d"
        rm -rf "$d.old"
        # The shim is linked against the node's libraries (libseccomp,
        # libnl, yajl, protobuf-c, libcap, libisofs): say which are missing.
        missing=$(host ldd "$INSTALL_DIR/bin/containerd-shim-unishim-v2" 2>/dev/null | grep 'not found' || true)
        [ -z "$missing" ] || log "warning: the node lacks libraries of the shim: $(echo "$missing" | tr '\n' ' ')"
        for b in qemu-system-x86_64 virtiofsd; do
                host sh -c "command -v $b || [ -x /usr/libexec/$b ] || [ -x /usr/lib/qemu/$b ]" >/dev/null 2>&1 ||
                        log "warning: $b not found on the node: the sandbox kind needs it (docs/kubernetes.md)"
        done
}

# shim_link: SHIM_LINK -> the installed shim. A link elsewhere is replaced
# (an earlier install's); a file is not (a shim installed by other means).
shim_link() {
        [ "$SHIM_LINK" != none ] || return 0
        l=$HOST_ROOT$SHIM_LINK
        if [ -e "$l" ] && [ ! -L "$l" ]; then
                die "$SHIM_LINK exists and is not a link: remove it (another install of unishim?) or set SHIM_LINK"
        fi
        mkdir -p "$(dirname "$l")"
        ln -sfn "$INSTALL_DIR/bin/containerd-shim-unishim-v2" "$l"
}

shim_unlink() {
        [ "$SHIM_LINK" != none ] || return 0
        l=$HOST_ROOT$SHIM_LINK
        [ -L "$l" ] && [ "$(readlink "$l")" = "$INSTALL_DIR/bin/containerd-shim-unishim-v2" ] || return 0
        rm -f "$l"
}

do_install() {
        [ -d "$HOST_ROOT/" ] || die "HOST_ROOT $HOST_ROOT is not a directory"
        [ -f "$HOST_ROOT$CONTAINERD_CONFIG" ] ||
                die "$CONTAINERD_CONFIG not found on the node (CONTAINERD_CONFIG; k3s: see docs/kubernetes.md)"
        major=$(containerd_major)
        case $major in
        1 | 2) ;;
        *) die "containerd version '$major' not understood (set CONTAINERD_VERSION)" ;;
        esac
        log "installing to $INSTALL_DIR; containerd $major.x, $CONTAINERD_CONFIG, drop-in $CONTAINERD_DROPIN"
        install_files
        shim_link
        # (the dump must not see an earlier run's drop-in)
        imports_remove
        rm -f "$HOST_ROOT$CONTAINERD_DROPIN"
        dropin_write "$major"
        imports_add
        containerd_restart
        node_label "$NODE_LABEL=true"
        log "installed"
}

# templates_remove: the VM templates the installed shims built (each
# handler config's template_dir): their holders, which keep a template's
# guest memory, end with them. After containerd's restart without the
# handlers: no new pod starts a build meanwhile. Builds still running (a
# pod's background build; `rm --all` passes over a busy key, and the build
# would publish after it) are stopped first: SIGTERM makes one end
# without publishing.
templates_remove() {
        ctl=$INSTALL_DIR/bin/unishimctl
        # shellcheck disable=SC2016
        host sh -c 'builds() {
                for p in /proc/[0-9]*; do
                        [ "$(readlink "$p/exe" 2>/dev/null)" = "$1" ] &&
                                [ "$(cat "$p/comm" 2>/dev/null)" != unishim-tmpl ] && echo "${p#/proc/}"
                done
        }
        b=$(builds "$1")
        [ -z "$b" ] || kill -TERM $b
        i=0
        while [ -n "$(builds "$1")" ]; do
                [ $i -lt 300 ] || exit 1
                sleep 0.1
                i=$((i + 1))
        done' sh "$ctl" 2>/dev/null || log "warning: template builds of $ctl still run"
        for h in $HANDLERS; do
                [ -x "$HOST_ROOT$INSTALL_DIR/bin/unishimctl" ] && [ -f "$HOST_ROOT$INSTALL_DIR/etc/$h.json" ] ||
                        continue
                host "$INSTALL_DIR/bin/unishimctl" template rm --all --config "$INSTALL_DIR/etc/$h.json" >/dev/null ||
                        log "warning: the VM templates of $h were not all removed (unishimctl template rm --all)"
        done
}

do_uninstall() {
        log "uninstalling from $INSTALL_DIR (drop-in $CONTAINERD_DROPIN)"
        # Unlabelled first: no new pod of these handlers is scheduled here.
        node_label "$NODE_LABEL-"
        imports_remove
        rm -f "$HOST_ROOT$CONTAINERD_DROPIN"
        rmdir "$(dirname "$HOST_ROOT$CONTAINERD_DROPIN")" 2>/dev/null || true
        containerd_restart
        templates_remove
        shim_unlink
        rm -rf "$HOST_ROOT$INSTALL_DIR"
        log "uninstalled"
}

case ${1:-} in
install) do_install ;;
uninstall) do_uninstall ;;
*)
        echo "usage: unishim-deploy.sh install|uninstall [--wait]" >&2
        exit 2
        ;;
esac
if [ "${2:-}" = --wait ]; then
        # (the DaemonSets' readiness probe)
        : >/tmp/unishim-deploy.done
        # (a shell's sleep would not end on the pod's SIGTERM)
        trap 'exit 0' TERM INT
        while :; do
                sleep 3600 &
                wait $! || true
        done
fi
