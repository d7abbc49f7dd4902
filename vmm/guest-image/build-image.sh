#!/bin/bash
# Builds the sandbox guest image: vmlinux (uncompressed, for PVH boot) and an
# initramfs whose /init is unishim-agent, plus the kernel modules it loads.
#
# Usage: build-image.sh --agent PATH --out DIR --cache DIR
#                       --flavor cloud|generic|minimal [--kernel-dir DIR]
#                       [--package NAME] [--compress none|gzip] [--strip STRIP]
#
# cloud and generic: Debian's kernel package; the .deb is fetched once with
# `apt-get download` into the cache dir and reused: no network is needed
# when it is cached. minimal: the kernel build-kernel.sh wrote to
# --kernel-dir (vmlinux, kernel-config, kernel-release); it has no modules,
# so the initramfs carries none. The initramfs is reproducible: sorted
# entries, fixed mtimes (SOURCE_DATE_EPOCH), owner root.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
agent= out= cache= flavor=cloud package= compress=none strip= kdir=
while [ $# -gt 0 ]; do
        case $1 in
        --agent) agent=$2; shift 2 ;;
        --out) out=$2; shift 2 ;;
        --cache) cache=$2; shift 2 ;;
        --flavor) flavor=$2; shift 2 ;;
        --package) package=$2; shift 2 ;;
        --kernel-dir) kdir=$2; shift 2 ;;
        --compress) compress=$2; shift 2 ;;
        --strip) strip=$2; shift 2 ;;
        *) echo "build-image: unknown argument $1" >&2; exit 2 ;;
        esac
done
[ -x "$agent" ] && [ -n "$out" ] && [ -n "$cache" ] || { echo "build-image: --agent, --out and --cache are required" >&2; exit 2; }
case $flavor in
cloud) suffix=cloud-amd64 ;;
generic) suffix=amd64 ;;
minimal)
        [ -f "$kdir/vmlinux" ] && [ -f "$kdir/kernel-release" ] || {
                echo "build-image: flavor minimal needs --kernel-dir with build-kernel.sh's output" >&2; exit 2; }
        ;;
*) echo "build-image: flavor must be cloud, generic or minimal" >&2; exit 2 ;;
esac
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-1700000000}
mkdir -p "$out" "$cache"
stage=$(mktemp -d "$out/stage.XXXXXX")
trap 'rm -rf "$stage"' EXIT
# Only what the kernel and the agent read from the initramfs: the agent
# leaves it for a root of its own at boot and empties it (docs/guest.md), so
# the mount points live in that root, not here.
mkdir -p "$stage"/{dev,etc}

if [ "$flavor" = minimal ]; then
        # Everything built in: no module list, no on-demand pack (the agent
        # loads nothing and leaves the kernel's modprobe helper unset).
        if [ ! -f "$out/vmlinux" ] || ! cmp -s "$kdir/vmlinux" "$out/vmlinux"; then
                cp "$kdir/vmlinux" "$out/vmlinux.tmp"
                mv "$out/vmlinux.tmp" "$out/vmlinux"
        fi
        kver=$(cat "$kdir/kernel-release")
        config=$kdir/kernel-config
else
        # 1. The kernel package: pinned by --package, else a cached one, else the
        # version Debian's meta package currently points to.
        deb=
        if [ -n "$package" ]; then
                deb=$(ls "$cache"/"${package}"_*.deb 2>/dev/null | sort -V | tail -1 || true)
        else
                deb=$(ls "$cache"/linux-image-[0-9]*-"$suffix"_*.deb 2>/dev/null | grep -v -- "-rt-" | { [ "$flavor" = generic ] && grep -v -- "-cloud-" || cat; } | sort -V | tail -1 || true)
        fi
        resolve_package() {
                apt-cache depends "linux-image-$suffix" 2>/dev/null |
                        sed -n 's/^ *Depends: \(linux-image-[0-9].*\)$/\1/p' | head -1
        }
        if [ -z "$deb" ]; then
                pinned=$package
                [ -n "$package" ] || package=$(resolve_package)
                # Package lists may be missing (fresh machine) or stale (the archive
                # moved on): refresh them once and try again.
                if [ -z "$package" ] || ! (cd "$cache" && apt-get download -q "$package" >/dev/null 2>&1); then
                        echo "build-image: refreshing apt's package lists" >&2
                        apt-get update -qq >/dev/null 2>&1 || true
                        [ -n "$pinned" ] || package=$(resolve_package)
                        [ -n "$package" ] || { echo "build-image: cannot resolve linux-image-$suffix" >&2; exit 1; }
                        echo "build-image: downloading $package" >&2
                        (cd "$cache" && apt-get download -q "$package" >/dev/null 2>&1) || {
                                echo "build-image: apt-get download $package failed" >&2; exit 1; }
                fi
                deb=$(ls "$cache"/"${package}"_*.deb | sort -V | tail -1)
        fi

        # 2. Unpack once per .deb.
        tree="$cache/tree-$(basename "$deb" .deb)"
        if [ ! -f "$tree/.done" ]; then
                rm -rf "$tree"
                dpkg-deb -x "$deb" "$tree"
                touch "$tree/.done"
        fi
        kver=$(ls "$tree/lib/modules" | head -1)
        config="$tree/boot/config-$kver"

        # 3. vmlinux for PVH boot.
        if [ ! -f "$out/vmlinux" ] || [ "$out/vmlinux" -ot "$deb" ] ||
                [ "$(cat "$out/kernel-release" 2>/dev/null)" != "$kver" ]; then
                "$here/extract-vmlinux.sh" "$tree/boot/vmlinuz-$kver" "$out/vmlinux"
        fi

        # 4. Modules: what the agent needs, resolved with their dependencies in load
        # order by modprobe against the unpacked tree (depmod -b: Debian ships no
        # modules.dep). Built-in ones are skipped. Optional ones may be absent in a
        # flavor (9p is not in cloud).
        depmod -b "$tree" "$kver"
        # virtio_balloon: free page reporting (vmm/qemu-argv.c).
        required="virtio_mmio virtio_console virtio_net virtiofs overlay virtio_balloon"
        optional="virtio_blk 9p 9pnet_virtio"
        [ "$flavor" = generic ] || optional="virtio_blk"
        mkdir -p "$stage/lib/modules"
        : >"$stage/lib/modules/unishim.list.tmp"
        resolve() { # module, required?
                local deps
                if ! deps=$(modprobe -d "$tree" -S "$kver" --show-depends "$1" 2>/dev/null); then
                        if [ "$2" = yes ]; then
                                echo "build-image: module $1 not found in $kver" >&2; exit 1
                        fi
                        return 0
                fi
                echo "$deps" | sed -n 's/^insmod \([^ ]*\).*/\1/p' >>"$stage/lib/modules/unishim.list.tmp"
        }
        for m in $required; do resolve "$m" yes; done
        for m in $optional; do resolve "$m" no; done
        # strip_signature KO: drops the module's appended signature (struct
        # module_signature, whose last 4 bytes are the big-endian signature length,
        # then the magic). The kernel then loads it without a PKCS#7 check, which
        # under TCG costs ~0.3 s of boot for these modules (docs/guest.md); the check
        # adds no trust here: the modules come from the apt-verified package, in the
        # same initramfs as the agent that loads them. The kernel notes the unsigned
        # module with a taint flag.
        strip_signature() {
                local f=$1 size len
                [ "$(tail -c 28 "$f" | head -c 27)" = "~Module signature appended~" ] || return 0
                size=$(stat -c %s "$f")
                len=$(tail -c 32 "$f" | head -c 4 | od -An -tu1 | awk '{ print $1 * 16777216 + $2 * 65536 + $3 * 256 + $4 }')
                [ "$len" -gt 0 ] && [ $((len + 40)) -lt "$size" ] || {
                        echo "build-image: $f: bad module signature trailer" >&2
                        return 1
                }
                truncate -s $((size - 40 - len)) "$f"
        }

        # Keep the first occurrence of each (dependency order), paths relative to
        # /lib/modules in the image.
        awk '!seen[$0]++' "$stage/lib/modules/unishim.list.tmp" | while read -r ko; do
                rel=${ko#"$tree"/lib/modules/"$kver"/}
                rel=${rel#kernel/}
                dst="$stage/lib/modules/$(basename "$ko")"
                case $ko in
                *.ko) cp "$ko" "$dst" ;;
                *.ko.xz) xz -dc "$ko" >"${dst%.xz}"; dst=${dst%.xz} ;;
                *.ko.zst) zstd -dcq "$ko" >"${dst%.zst}"; dst=${dst%.zst} ;;
                esac
                strip_signature "$dst"
                basename "$dst"
        done >"$stage/lib/modules/unishim.list"
        rm -f "$stage/lib/modules/unishim.list.tmp"

        # 4b. Modules loaded on demand: what a privileged container, or one with
        # CAP_NET_ADMIN, finds on a stock host kernel (bridges, veth, vxlan, vlans,
        # tunnels, bonding, netfilter for iptables and nft, IPVS, tc, SCTP, IPsec
        # transforms; docs/guest.md). The agent copies them out of the initramfs
        # into a store of its own and loads them when the kernel asks (it is the
        # kernel's modprobe helper). One pack of xz streams, one per module (the
        # guest kernel has no CONFIG_MODULE_DECOMPRESS: the agent decompresses),
        # so that the agent's copy at boot is one file, not hundreds; and an
        # index: "module NAME DEP..." (DEPs in load order, softdeps included),
        # "file NAME OFFSET SIZE" (its stream in the pack) and "alias PATTERN
        # NAME". Built once per kernel package and selection, in the cache.
        on_demand="net/802 net/8021q net/bridge net/ipv4 net/ipv6 net/key net/llc
                net/mpls net/netfilter net/nsh net/openvswitch net/psample net/sched
                net/sctp net/tls net/xfrm net/packet net/unix net/netlink net/l2tp
                net/dccp drivers/net/dummy.ko drivers/net/ifb.ko drivers/net/macvlan.ko
                drivers/net/macvtap.ko drivers/net/tap.ko drivers/net/ipvlan
                drivers/net/veth.ko drivers/net/vxlan drivers/net/geneve.ko
                drivers/net/tun.ko drivers/net/bonding drivers/net/team drivers/net/vrf.ko
                drivers/net/wireguard drivers/net/nlmon.ko drivers/net/macsec.ko"
        od="$cache/on-demand-pack-$(basename "$deb" .deb)-$(echo $on_demand | sha256sum | cut -c1-12)"
        if [ ! -f "$od/.done" ]; then
                echo "build-image: packing the on-demand modules (once per kernel)" >&2
                rm -rf "$od" "$od.tmp"
                mkdir -p "$od.tmp/ko"
                mdir="$tree/lib/modules/$kver"
                # The closure of the selection from depmod's own files, as modprobe
                # would load it: modules.dep lists a module's dependencies complete
                # and in reverse load order; softdeps name modules or aliases (an
                # alias of a built-in module needs nothing). Prints "module NAME
                # DEP..." for every module of the closure, and "path NAME FILE".
                (cd "$mdir/kernel" && find $on_demand -name '*.ko*' 2>/dev/null | LC_ALL=C sort |
                        sed 's|^|kernel/|') >"$od.tmp/selected"
                awk '
                function mname(p, n) { n = p; sub(/.*\//, "", n); sub(/\.ko.*$/, "", n); gsub("-", "_", n); return n }
                # resolve(NAME): the modules a softdep NAME stands for, into res[].
                function resolve(s, i) {
                        nres = 0
                        if (s in path) { res[++nres] = s; return }
                        for (i = 1; i <= nalias[s]; i++) res[++nres] = alias[s, i]
                }
                # add(NAME): NAME after everything it needs, into out[], once.
                function add(n, i, j, k, r) {
                        if (n in seen) return
                        seen[n] = 1
                        for (i = 1; i <= nsoft[n]; i++) {
                                resolve(soft[n, i]); k = nres
                                for (j = 1; j <= k; j++) r[j] = res[j]
                                for (j = 1; j <= k; j++) add(r[j])
                        }
                        for (i = ndep[n]; i >= 1; i--) add(dep[n, i])
                        out[++nout] = n
                }
                FILENAME == ARGV[1] {
                        f = $1; sub(/:$/, "", f); n = mname(f); path[n] = f; ndep[n] = NF - 1
                        for (i = 2; i <= NF; i++) dep[n, i - 1] = mname($i)
                        next
                }
                FILENAME == ARGV[2] {
                        if ($1 != "softdep") next
                        n = $2; gsub("-", "_", n); pre = 0
                        for (i = 3; i <= NF; i++) {
                                if ($i == "pre:" || $i == "post:") { pre = 1; continue }
                                if (pre) { s = $i; gsub("-", "_", s); soft[n, ++nsoft[n]] = s }
                        }
                        next
                }
                FILENAME == ARGV[3] {
                        if ($1 != "alias") next
                        a = $2; gsub("-", "_", a); m = $3; gsub("-", "_", m)
                        if (m in path) alias[a, ++nalias[a]] = m
                        next
                }
                { want[++nwant] = mname($1) }
                END {
                        for (w = 1; w <= nwant; w++) {
                                split("", seen); nout = 0; add(want[w])
                                for (i = 1; i <= nout; i++) stored[out[i]] = 1
                        }
                        for (n in stored) {
                                split("", seen); nout = 0; add(n)
                                line = "module " n
                                for (i = 1; i < nout; i++) line = line " " out[i]
                                print line
                                print "path " n " " path[n]
                        }
                }' "$mdir/modules.dep" "$mdir/modules.softdep" "$mdir/modules.alias" "$od.tmp/selected" \
                        >"$od.tmp/closure"
                grep '^path ' "$od.tmp/closure" | while read -r _ name rel; do
                        ko="$mdir/$rel" dst="$od.tmp/ko/$name.ko"
                        case $ko in
                        *.ko) cp "$ko" "$dst" ;;
                        *.ko.xz) xz -dc "$ko" >"$dst" ;;
                        *.ko.zst) zstd -dcq "$ko" >"$dst" ;;
                        esac
                        strip_signature "$dst"
                done
                # The kernel's own choice for modules: a small dictionary keeps the
                # decompressor's memory low. Preset 3, not 6: a quarter of the time
                # for 5% more bytes (docs/guest.md).
                (cd "$od.tmp/ko" && ls | xargs -r -n 32 -P "$(nproc)" xz --check=crc32 \
                        --lzma2=preset=3,dict=1MiB -T1)
                : >"$od.tmp/modules.pack"
                (cd "$od.tmp/ko" && ls | LC_ALL=C sort) | while read -r f; do
                        echo "file ${f%.ko.xz} $(stat -c %s "$od.tmp/modules.pack") $(stat -c %s "$od.tmp/ko/$f")"
                        cat "$od.tmp/ko/$f" >>"$od.tmp/modules.pack"
                done >"$od.tmp/files"
                { grep '^module ' "$od.tmp/closure" | LC_ALL=C sort -u
                  cat "$od.tmp/files"
                  awk 'NR == FNR { if ($1 == "module") have[$2] = 1; next }
                       $1 == "alias" { n = $3; gsub("-", "_", n); if (have[n]) print "alias", $2, n }' \
                        "$od.tmp/closure" "$mdir/modules.alias" | LC_ALL=C sort -u
                } >"$od.tmp/modules.idx"
                rm -rf "$od.tmp/ko" "$od.tmp/selected" "$od.tmp/closure" "$od.tmp/files"
                touch "$od.tmp/.done"
                mv "$od.tmp" "$od"
        fi
        mkdir -p "$stage/lib/modules/on-demand"
        cp "$od/modules.pack" "$od/modules.idx" "$stage/lib/modules/on-demand/"
fi
echo "$kver" >"$stage/etc/unishim-kernel-release"

# 5. /init is the agent. /dev/console lets the kernel give init a console
# before devtmpfs is mounted (only root can create the node). Stripped with
# --strip (the build's debug info stays in the build tree's binary, same
# build id): the running agent's file stays in guest memory for the VM's
# life, and the kernel unpacks every byte of it at each boot.
if [ -n "$strip" ]; then
        "$strip" --strip-all -o "$stage/init" "$agent"
        chmod 0755 "$stage/init"
else
        install -m 0755 "$agent" "$stage/init"
fi
if [ "$(id -u)" = 0 ]; then
        mknod -m 600 "$stage/dev/console" c 5 1
fi

# 6. Reproducible cpio.
find "$stage" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +
img="$out/initramfs.cpio"
(cd "$stage" && find . -mindepth 1 | LC_ALL=C sort |
        cpio -o -H newc --reproducible -R 0:0 --quiet) >"$img.tmp"
case $compress in
none) mv "$img.tmp" "$img"; rm -f "$img.gz" ;;
gzip) gzip -n -9 <"$img.tmp" >"$img.gz"; rm -f "$img.tmp" "$img" ;;
*) echo "build-image: --compress none|gzip" >&2; exit 2 ;;
esac
cp "$config" "$out/kernel-config"
echo "$kver" >"$out/kernel-release"
echo "build-image: $out/vmlinux ($kver) and $(ls "$out"/initramfs.cpio* | head -1)" >&2
