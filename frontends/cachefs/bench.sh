#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# bench.sh - a short benchmark of tmem-cachefs: a working set larger than
# the local cache, read again and again from a slow backing directory,
# with and without tmem behind the local cache, and one tenant reading
# what another evicted into a shared pool.  Root (FUSE mounts).
#
#   frontends/cachefs/bench.sh [BUILD_DIR] [-w PAGES] [-c PAGES] [-d US] [-p PASSES]
#
#   BUILD_DIR  a build with tmemd, tmemctl, tmem-cachefs (default build-rel)
#   -w PAGES   working set in 4 KiB pages (default 4096 = 16 MiB, 8 files)
#   -c PAGES   local cache pages (default 1024 = 4 MiB)
#   -d US      backing delay per page (default 100 us: about 40 MB/s)
#   -p PASSES  timed passes over the working set (default 3)
#
# Prints, per configuration, the read rate of the timed passes and where
# the pages came from (docs/cachefs.md, "Benchmark").  Not a test: numbers
# vary with the machine and its load.
set -euo pipefail

build=build-rel
if [[ $# -gt 0 && $1 != -* ]]; then build=$1; shift; fi
ws=4096 cache=1024 delay=100 passes=3
while getopts "w:c:d:p:h" o; do
    case $o in
        w) ws=$OPTARG ;; c) cache=$OPTARG ;; d) delay=$OPTARG ;; p) passes=$OPTARG ;;
        *) sed -n '2,18p' "$0"; exit 2 ;;
    esac
done
root=$(cd "$(dirname "$0")/../.." && pwd)
[[ $build = /* ]] || build=$root/$build
tmemd=$build/tmemd tmemctl=$build/tmemctl cfs=$build/frontends/cachefs/tmem-cachefs
for b in "$tmemd" "$tmemctl" "$cfs"; do
    [[ -x $b ]] || { echo "bench.sh: $b missing (build it first)" >&2; exit 1; }
done

dir=$(mktemp -d /tmp/cachefs-bench.XXXXXX)
daemon=
mounts=()
cleanup() {
    for m in "${mounts[@]}"; do fusermount3 -u "$m" 2>/dev/null || fusermount3 -u -z "$m" 2>/dev/null || true; done
    [[ -n $daemon ]] && kill "$daemon" 2>/dev/null && wait "$daemon" 2>/dev/null || true
    rm -rf "$dir"
}
trap cleanup EXIT

mkdir "$dir/back"
nf=8
per=$(( ws / nf ))
for i in $(seq 1 $nf); do
    head -c $(( per * 4096 )) /dev/urandom > "$dir/back/f$i"
done
sleep 0.1

"$tmemd" --socket "$dir/t.sock" --control-socket "$dir/c.sock" --max-memory 512M \
    --set metrics.port=0 --set governor.enabled=false 2> "$dir/tmemd.log" &
daemon=$!
for _ in $(seq 100); do [[ -S $dir/t.sock && -S $dir/c.sock ]] && break; sleep 0.05; done

now() { date +%s.%N; }
stat_of() { awk -v k="$2" '$1 == k { print $2 }' "$1/.cachefs-stats"; }
read_all() { for i in $(seq 1 $nf); do cat "$1/f$i" > /dev/null; done; }
mount_fs() {        # name args...
    local m=$dir/$1; shift
    mkdir -p "$m"
    "$cfs" --socket "$dir/t.sock" -c "$cache" -D "$delay" "$@" "$dir/back" "$m" 2>> "$dir/mounts.log"
    mounts+=("$m")
}
report() {          # label mount seconds
    local m=$2 s=$3
    local mb; mb=$(awk -v p="$passes" -v w="$ws" 'BEGIN { print p * w * 4096 / 1048576 }')
    printf "%-26s %8.1f MB/s  local hits %7s  cleancache hits %7s  backing reads %7s\n" \
        "$1" "$(awk -v mb="$mb" -v s="$s" 'BEGIN { print mb / s }')" \
        "$(stat_of "$m" local_hits)" "$(stat_of "$m" cc_succ_gets)" "$(stat_of "$m" backing_reads)"
}
timed() {           # mount -> seconds for $passes passes
    local t0 t1; t0=$(now)
    for _ in $(seq 1 "$passes"); do read_all "$1"; done
    t1=$(now)
    awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }'
}

echo "working set $ws pages in $nf files, local cache $cache pages, backing delay $delay us/page, $passes passes"

# 1. local cache only
mount_fs plain --no-tmem
read_all "$dir/plain"                               # warm-up pass
s=$(timed "$dir/plain"); report "local cache only" "$dir/plain" "$s"
fusermount3 -u "$dir/plain"

# 2. local cache + private cleancache
mount_fs priv
read_all "$dir/priv"
s=$(timed "$dir/priv"); report "+ cleancache (private)" "$dir/priv" "$s"
fusermount3 -u "$dir/priv"

# 3. tenant B reads what tenant A evicted into the shared pool
mount_fs A --shared --rejoin-ms 100 --name cachefs-bench:A
mount_fs B --shared --rejoin-ms 100 --name cachefs-bench:B
uuid=$(stat_of "$dir/A" uuid)
"$tmemctl" --socket "$dir/c.sock" shared-auth "$(stat_of "$dir/A" client_id)" "$uuid" allow > /dev/null
"$tmemctl" --socket "$dir/c.sock" shared-auth "$(stat_of "$dir/B" client_id)" "$uuid" allow > /dev/null
for _ in $(seq 200); do
    [[ $(stat_of "$dir/A" shared) = 1 && $(stat_of "$dir/B" shared) = 1 ]] && break; sleep 0.05
done
read_all "$dir/A"                                   # A fills the pool
t0=$(now); read_all "$dir/B"; t1=$(now)
passes_save=$passes passes=1
report "shared: B's first pass" "$dir/B" "$(awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }')"
passes=$passes_save
