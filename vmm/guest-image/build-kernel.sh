#!/bin/bash
# Builds the minimal sandbox guest kernel (docs/guest.md): Debian's
# linux-source-6.1, `make tinyconfig` plus the fragment minimal.config, an
# uncompressed vmlinux for PVH boot. No modules: everything is built in.
#
# Usage: build-kernel.sh --out DIR --cache DIR [--config FRAGMENT] [--jobs N]
#
# Writes DIR/vmlinux, DIR/kernel-config and DIR/kernel-release. The source
# is the installed linux-source-6.1 package if there is one, else its .deb
# fetched once with `apt-get download` into the cache dir. The source is
# unpacked once per package version, and the kernel built once per (package
# version, fragment): the build tree is cached (cache/kbuild-KEY), so a
# rebuild of the project or a fresh build dir with the same cache costs
# nothing. Reproducible: fixed build user, host and timestamp
# (SOURCE_DATE_EPOCH).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out= cache= fragment=$here/minimal.config jobs=$(nproc)
while [ $# -gt 0 ]; do
        case $1 in
        --out) out=$2; shift 2 ;;
        --cache) cache=$2; shift 2 ;;
        --config) fragment=$2; shift 2 ;;
        --jobs) jobs=$2; shift 2 ;;
        *) echo "build-kernel: unknown argument $1" >&2; exit 2 ;;
        esac
done
[ -n "$out" ] && [ -n "$cache" ] && [ -f "$fragment" ] || {
        echo "build-kernel: --out and --cache are required, and the fragment must exist" >&2; exit 2; }
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-1700000000}
mkdir -p "$out" "$cache"
pkg=linux-source-6.1

# The kernel's own build needs these host tools (objtool: libelf).
missing=
for t in make gcc flex bison bc perl; do command -v "$t" >/dev/null || missing+=" $t"; done
[ -f /usr/include/libelf.h ] || missing+=" libelf-dev"
[ -z "$missing" ] || { echo "build-kernel: missing build tools:$missing (apt: flex bison bc libelf-dev)" >&2; exit 1; }

# 1. The source: the installed package, else a cached or downloaded .deb.
tarball= ver=
if [ "$(dpkg-query -W -f '${db:Status-Status}' "$pkg" 2>/dev/null)" = installed ] &&
        [ -f /usr/src/$pkg.tar.xz ]; then
        ver=$(dpkg-query -W -f '${Version}' "$pkg")
        tarball=/usr/src/$pkg.tar.xz
else
        deb=$(ls "$cache"/"${pkg}"_*.deb 2>/dev/null | sort -V | tail -1 || true)
        if [ -z "$deb" ]; then
                if ! (cd "$cache" && apt-get download -q "$pkg" >/dev/null 2>&1); then
                        echo "build-kernel: refreshing apt's package lists" >&2
                        apt-get update -qq >/dev/null 2>&1 || true
                        echo "build-kernel: downloading $pkg" >&2
                        (cd "$cache" && apt-get download -q "$pkg" >/dev/null 2>&1) || {
                                echo "build-kernel: apt-get download $pkg failed" >&2; exit 1; }
                fi
                deb=$(ls "$cache"/"${pkg}"_*.deb | sort -V | tail -1)
        fi
        ver=$(dpkg-deb -f "$deb" Version)
fi

# 2. Unpack once per package version.
src=$cache/linux-source-$ver
if [ ! -f "$src/.done" ]; then
        echo "build-kernel: unpacking $pkg $ver" >&2
        rm -rf "$src" "$src.tmp"
        mkdir -p "$src.tmp"
        if [ -n "$tarball" ]; then
                tar -xJf "$tarball" -C "$src.tmp" --strip-components=1
        else
                dpkg-deb --fsys-tarfile "$deb" | tar -xO "./usr/src/$pkg.tar.xz" |
                        tar -xJ -C "$src.tmp" --strip-components=1
        fi
        touch "$src.tmp/.done"
        mv "$src.tmp" "$src"
fi

# 3. Configure and build once per (version, fragment), out of tree.
key=$({ echo "$ver"; cat "$fragment"; } | sha256sum | cut -c1-16)
kb=$cache/kbuild-$key
kmake() {
        make -C "$src" O="$kb" ARCH=x86_64 KBUILD_BUILD_USER=unishim KBUILD_BUILD_HOST=unishim \
                KBUILD_BUILD_TIMESTAMP="@$SOURCE_DATE_EPOCH" "$@"
}
# An interrupted build resumes (make is incremental; the configuration is
# kept once it passed the check below).
if [ ! -f "$kb/.done" ] && [ ! -f "$kb/.configured" ]; then
        rm -rf "$kb"
        mkdir -p "$kb"
        kmake -s tinyconfig >"$kb/config.log" 2>&1
        "$src/scripts/kconfig/merge_config.sh" -m -O "$kb" "$kb/.config" "$fragment" >>"$kb/config.log" 2>&1
        kmake -s olddefconfig >>"$kb/config.log" 2>&1
        # Every symbol the fragment sets must have kept its value: one that
        # Kconfig dropped has a dependency the fragment lacks.
        bad=$(awk 'NR == FNR { have[$0] = 1; if (/^CONFIG_/) { s = $0; sub(/=.*/, "", s); set[s] = 1 } next }
                /^CONFIG_[A-Z0-9_]+=/ { if (!have[$0]) print }
                /^# CONFIG_[A-Z0-9_]+ is not set$/ { if (set[$2]) print }' "$kb/.config" "$fragment")
        if [ -n "$bad" ]; then
                echo "build-kernel: $fragment: not in the resulting .config (a missing dependency?):" >&2
                echo "$bad" >&2
                exit 1
        fi
        touch "$kb/.configured"
fi
if [ ! -f "$kb/.done" ]; then
        echo "build-kernel: building vmlinux ($pkg $ver, $jobs jobs; once per version and fragment)" >&2
        t0=$(date +%s)
        kmake -j"$jobs" vmlinux >>"$kb/build.log" 2>&1 || {
                tail -n 40 "$kb/build.log" >&2
                echo "build-kernel: the kernel build failed (log: $kb/build.log)" >&2
                exit 1
        }
        echo "$(($(date +%s) - t0)) s, $jobs jobs, load $(cut -d' ' -f1-3 /proc/loadavg)" >"$kb/build-time"
        kmake -s kernelrelease >"$kb/kernel-release"
        touch "$kb/.done"
        echo "build-kernel: built in $(cat "$kb/build-time")" >&2
fi

# 4. The image's kernel: symbols stripped as in a bzImage's payload (the
# PVH entry note stays; System.map stays in the cache).
objcopy -R .comment -S "$kb/vmlinux" "$out/vmlinux.tmp"
mv "$out/vmlinux.tmp" "$out/vmlinux"
cp "$kb/.config" "$out/kernel-config"
cp "$kb/kernel-release" "$out/kernel-release"
echo "build-kernel: $out/vmlinux ($(cat "$kb/kernel-release"))" >&2
