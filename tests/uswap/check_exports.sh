#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# check_exports.sh SHIM PRELOAD_C PRELOAD_MAP - the shim exports exactly the
# functions preload.c marks EXPORT, and preload.map lists the same names
# (ctest uswap_preload_exports): none of its copy of libtmem, none of the
# interposed functions lost.  Prints the differences and exits 1 if any.
set -euo pipefail
shim=$1 src=$2 map=$3
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
nm -D --defined-only "$shim" | awk '{ print $NF }' | sed 's/@.*//' | sort -u > "$tmp/exported"
sed -n 's/^EXPORT[^(]*[ *]\([A-Za-z_0-9]*\)(.*/\1/p' "$src" | sort -u > "$tmp/marked"
sed -n '/global:/,/local:/p' "$map" | sed '1d;$d' | tr -s ' ;\t' '\n' | sed '/^$/d' |
    sort -u > "$tmp/listed"
ok=1
if ! diff -u --label "EXPORT in $(basename "$src")" --label "exported by $(basename "$shim")" \
        "$tmp/marked" "$tmp/exported"; then
    ok=0
fi
if ! diff -u --label "EXPORT in $(basename "$src")" --label "global in $(basename "$map")" \
        "$tmp/marked" "$tmp/listed"; then
    ok=0
fi
[ -s "$tmp/marked" ] || { echo "check_exports: no EXPORT function found in $src" >&2; ok=0; }
if [ "$ok" = 1 ]; then
    echo "check_exports: the shim exports the $(wc -l < "$tmp/marked") interposed functions, nothing else"
    exit 0
fi
exit 1
