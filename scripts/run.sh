#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# run.sh - the main job: installs what is missing, builds, starts tmemd on
# its embedded default configuration (sockets in a temporary directory),
# and shows what it does: tenant processes put and get real file pages,
# one is killed mid-stream, tmemctl lists clients and figures, the metrics
# endpoint answers; a caching filesystem (tmem-cachefs, FUSE) reads a slow
# directory through cleancache; a sort runs in twice its memory budget,
# paged through frontswap (tmem-uswap); an administrator takes memory back; then
# tmemd stops (its exit status says whether its engine passed its
# self-check).
# Extra arguments go to tmem-client-demo (try --help).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
cmake -S . -B build-run -DCMAKE_BUILD_TYPE=Release -DTMEM_BUILD_TESTS=OFF \
      -DTMEM_BUILD_BENCH=OFF >/dev/null
cmake --build build-run -j"$(nproc)" --target tmemd tmemctl tmem-client-demo tmem-cachefs \
      tmem-uswap tmem-uswap-preload uswap-sort >/dev/null
bin=build-run
dir=$(mktemp -d /tmp/tmemd-run.XXXXXX)
sock=$dir/tmemd.sock ctl=$dir/control.sock
cleanup() {
    for m in "$dir"/mnt-*; do [ -d "$m" ] && { fusermount3 -u "$m" 2>/dev/null || fusermount3 -u -z "$m" 2>/dev/null || true; }; done
    [ -n "${pid:-}" ] && kill "$pid" 2>/dev/null
    rm -rf "$dir"
}
trap cleanup EXIT

echo "== tmemd, embedded default configuration (logs: $dir/tmemd.log)"
$bin/tmemd --socket "$sock" --control-socket "$ctl" 2>"$dir/tmemd.log" &
pid=$!
for _ in $(seq 100); do [ -S "$sock" ] && [ -S "$ctl" ] && break; sleep 0.1; done
[ -S "$sock" ] || { cat "$dir/tmemd.log"; echo "tmemd did not start" >&2; exit 1; }
sed 's/^/  | /' "$dir/tmemd.log"
export TMEM_CONTROL_SOCKET=$ctl

echo "== tenants (each a process of its own, through shared memory)"
$bin/tmem-client-demo --socket "$sock" "$@"
echo "== tmemctl stats"
$bin/tmemctl stats
echo "== tmemctl list (one long-lived tenant connected meanwhile)"
$bin/tmem-client-demo --socket "$sock" --tenants 1 --pages 2048 >/dev/null &
demo=$!
sleep 0.3
$bin/tmemctl list || true
wait "$demo"
port=$($bin/tmemctl stats --json 2>/dev/null | sed -n 's/.*"metrics_port": *\([0-9]*\).*/\1/p')
if [ -n "$port" ] && [ "$port" != 0 ] && command -v curl >/dev/null; then
    echo "== metrics (http://127.0.0.1:$port/metrics, a few lines)"
    curl -s "http://127.0.0.1:$port/metrics" | grep -E '^tmem_(pages|bytes_held|puts_total|gets_total|connections)' | head -12 || true
fi
cachefs_demo() {
    # a slow backing directory (200 us per page read, like a disk), 8 MiB of
    # files, and a 1 MiB local cache: without tmem every pass reads the
    # backing store again; with it, pages the local cache evicts come back
    # from cleancache in tmemd
    mkdir -p "$dir/back" "$dir/mnt-plain" "$dir/mnt-tmem"
    for i in 1 2 3 4; do head -c 2M /dev/urandom > "$dir/back/file$i"; done
    $bin/frontends/cachefs/tmem-cachefs --no-tmem -c 256 -D 200 "$dir/back" "$dir/mnt-plain"
    $bin/frontends/cachefs/tmem-cachefs --socket "$sock" -n cachefs-demo -c 256 -D 200 \
        "$dir/back" "$dir/mnt-tmem"
    for m in plain tmem; do
        local t0 t1
        cat "$dir/mnt-$m"/file* > /dev/null                 # first pass: the backing store
        t0=$(date +%s%N)
        for _ in 1 2 3; do cat "$dir/mnt-$m"/file* > /dev/null; done
        t1=$(date +%s%N)
        cmp -s <(cat "$dir/back"/file*) <(cat "$dir/mnt-$m"/file*) || { echo "cachefs: data differs!" >&2; return 1; }
        awk -v m="$m" -v ms=$(( (t1 - t0) / 1000000 )) '
            { v[$1] = $2 }
            END { printf "  %-6s 3 passes over 8 MiB: %5d ms; backing reads %5d pages, cleancache hits %5d, local hits %5d\n",
                  (m == "tmem" ? "tmem" : "no tmem"), ms, v["backing_reads"], v["cc_succ_gets"], v["local_hits"] }' \
            "$dir/mnt-$m/.cachefs-stats"
    done
    fusermount3 -u "$dir/mnt-plain"
    fusermount3 -u "$dir/mnt-tmem"
    echo "  (every byte read through both mounts matched the backing files)"
}
if [ -e /dev/fuse ] && [ "$(id -u)" = 0 ]; then
    echo "== tmem-cachefs: a FUSE mount in front of a slow directory, with and without cleancache"
    cachefs_demo
else
    echo "== tmem-cachefs skipped (needs root and /dev/fuse)"
fi
if [ "$(id -u)" = 0 ]; then
    echo "== tmem-uswap: a merge sort of 16 MiB in an 8 MiB resident budget, paged through frontswap"
    # the sort checks its own answer (exit status 1 if it is wrong)
    $bin/frontends/uswap/tmem-uswap --budget 8M --socket "$sock" --stats-file "$dir/uswap.stats" \
        -- $bin/frontends/uswap/uswap-sort -m 16 | sed 's/^/  | /'
    sed 's/^/  | /' "$dir/uswap.stats"
else
    echo "== tmem-uswap skipped (userfaultfd needs root)"
fi
echo "== tmemctl freeable; tmemctl flush 16M (an administrator takes memory back)"
$bin/tmemctl freeable
$bin/tmemctl flush 16M
echo "== stopping tmemd"
kill -TERM "$pid"
rc=0; wait "$pid" || rc=$?
pid=
tail -n 4 "$dir/tmemd.log" | sed 's/^/  | /'
echo "tmemd exit status $rc (0: its engine passed the self-check)"
exit $rc
