#!/bin/bash
# Extracts the uncompressed ELF vmlinux from a bzImage (for PVH boot under
# QEMU microvm). Like the kernel's scripts/extract-vmlinux: find the magic of
# each compressor the kernel supports inside the image, decompress from that
# offset, keep the first result that is an ELF file. Trailing data after the
# compressed payload makes some decompressors complain; the ELF check decides.
# Usage: extract-vmlinux.sh BZIMAGE OUT
set -euo pipefail
img=$1 out=$2
tmp=$(mktemp "${out}.XXXXXX")
trap 'rm -f "$tmp"' EXIT

is_elf() { [ "$(head -c 4 "$1" | od -An -tx1 | tr -d ' \n')" = 7f454c46 ]; }

try() { # magic (printf escapes), decompress command
        local magic=$1; shift
        local off
        for off in $(LC_ALL=C grep -abo -- "$(printf "$magic")" "$img" 2>/dev/null | cut -d: -f1); do
                tail -c +$((off + 1)) "$img" | "$@" >"$tmp" 2>/dev/null || true
                if [ -s "$tmp" ] && is_elf "$tmp"; then
                        chmod 0644 "$tmp"; mv "$tmp" "$out"
                        trap - EXIT
                        echo "extract-vmlinux: $(basename "$1") payload at offset $off" >&2
                        return 0
                fi
        done
        return 1
}

# Debian 12 kernels are LZ4 (legacy frame); the others cover rebuilt kernels.
try '\002\041\114\030' lz4 -dc && exit 0
try '\050\265\057\375' zstd -dcq && exit 0
try '\375\067\172\130\132\000' xz -dcq && exit 0
try '\037\213\010' gzip -dcq && exit 0
try '\102\132\150' bzip2 -dcq && exit 0
echo "extract-vmlinux: no known compressed ELF payload in $img" >&2
exit 1
