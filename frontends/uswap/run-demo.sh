#!/usr/bin/env bash
# run-demo.sh - uswap on real programs: a merge sort and a hash join (the
# examples) and GNU sort, each over data twice the resident budget, run
#   plain       without paging (the reference output and time)
#   tmem        through tmemd (frontswap), the swap file behind it
#   file        the swap file alone (--no-tmem; the kernel's page cache
#               holds it, so this is memory too)
#   file-direct the swap file alone with O_DIRECT (the disk)
# RUNS times each; prints the median wall time and the counters of the
# median run side by side, and checks every paged run's output against the
# plain run's.  Needs root (userfaultfd).  Exit status 1 if any output is
# wrong.
#
# usage: frontends/uswap/run-demo.sh [BUILD_DIR]   (default: build-h3rel)
# environment: BUDGET_MB (64), RUNS (3), MODES ("plain tmem file file-direct"),
#              PROGS ("sort hashjoin gnusort"), TMEMD_ARGS (more tmemd options,
#              e.g. "--set memory.compress=none")
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
bin=${1:-$root/build-h3rel}
budget=${BUDGET_MB:-64}
runs=${RUNS:-3}
modes=${MODES:-plain tmem file file-direct}
progs=${PROGS:-sort hashjoin gnusort}
data=$((2 * budget))
for f in tmemd frontends/uswap/tmem-uswap frontends/uswap/uswap-sort frontends/uswap/uswap-hashjoin; do
    [ -x "$bin/$f" ] || { echo "run-demo: $bin/$f is missing (build the tree first)" >&2; exit 1; }
done
launcher=$bin/frontends/uswap/tmem-uswap

dir=$(mktemp -d /tmp/uswap-demo.XXXXXX)
cleanup() {
    [ -n "${pid:-}" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
    rm -rf "$dir"
}
trap cleanup EXIT
sock=$dir/tmemd.sock
# room for every page the programs evict: tmem never refuses here
"$bin/tmemd" --socket "$sock" --control-socket "$dir/ctl.sock" --max-memory $((4 * data))M \
    --set metrics.port=0 --set governor.enabled=false ${TMEMD_ARGS:-} 2>"$dir/tmemd.log" &
pid=$!
for _ in $(seq 100); do [ -S "$sock" ] && break; sleep 0.1; done
[ -S "$sock" ] || { cat "$dir/tmemd.log" >&2; echo "run-demo: tmemd did not start" >&2; exit 1; }

if [[ " $progs " == *" gnusort "* ]]; then
    # lines of about 32 bytes: data MiB of them
    awk -v n=$((data * 1024 * 1024 / 32)) 'BEGIN { srand(7); for (i = 0; i < n; i++)
        printf "%08x %08x %d\n", int(rand() * 4294967295), int(rand() * 4294967295), i }' \
        > "$dir/lines"
fi

cmd_of() {          # the program's command line
    case $1 in
    sort)     echo "$bin/frontends/uswap/uswap-sort -m $((data / 2)) -s 3" ;;   # data + buffer
    hashjoin) echo "$bin/frontends/uswap/uswap-hashjoin -m $data -s 3" ;;
    gnusort)  echo "env LC_ALL=C sort -S $((3 * data))M --parallel=1 $dir/lines" ;;
    esac
}
opts_of() {
    case $1 in
    tmem)        echo "--socket $sock" ;;
    file)        echo "--no-tmem --swap-file $dir/swap" ;;
    file-direct) echo "--no-tmem --swap-direct --swap-file $dir/swap" ;;
    esac
}

stat_of() { sed -n "s/.* $2=\([0-9]*\).*/\1/p" "$1"; }
bad=0
printf '%-9s %-12s %9s %9s %10s %10s %10s %10s %8s  %s\n' program mode "time(s)" faults \
    tmem_loads tmem_store swap_reads swap_write evicted check
for p in $progs; do
    cmd=$(cmd_of "$p")
    ref=$dir/out.$p.plain
    # the reference output, also when plain runs are not asked for
    [[ " $modes " == *" plain "* ]] || $cmd > "$ref"
    for m in $modes; do
        : > "$dir/times"
        for r in $(seq "$runs"); do
            out=$dir/out.$p.$m.$r st=$dir/stats.$p.$m.$r
            rm -f "$st" "$dir"/swap.*
            t0=$(date +%s.%N)
            if [ "$m" = plain ]; then
                $cmd > "$out"
            else
                # shellcheck disable=SC2046
                "$launcher" --budget ${budget}M --threshold 256K --stats-file "$st" \
                    $(opts_of "$m") -- $cmd > "$out"
            fi
            t1=$(date +%s.%N)
            awk -v a="$t0" -v b="$t1" -v r="$r" 'BEGIN { printf "%.3f %d\n", b - a, r }' >> "$dir/times"
        done
        # the median run (by time)
        med=$(sort -n "$dir/times" | sed -n "$(((runs + 1) / 2))p")
        mt=${med% *} mr=${med#* }
        out=$dir/out.$p.$m.$mr st=$dir/stats.$p.$m.$mr
        [ "$m" = plain ] && cp "$out" "$ref"
        check=ok
        for r in $(seq "$runs"); do
            cmp -s "$dir/out.$p.$m.$r" "$ref" || check=WRONG
        done
        [ "$p" != gnusort ] && ! grep -q ', ok$' "$ref" && check=WRONG
        [ $check = ok ] || bad=1
        if [ "$m" = plain ]; then
            printf '%-9s %-12s %9.2f %9s %10s %10s %10s %10s %8s  %s\n' "$p" "$m" "$mt" - - - - - - "$check"
        else
            printf '%-9s %-12s %9.2f %9s %10s %10s %10s %10s %8s  %s\n' "$p" "$m" "$mt" \
                "$(stat_of "$st" faults)" "$(stat_of "$st" tmem_loads)" \
                "$(stat_of "$st" tmem_stores_ok)" "$(stat_of "$st" swap_reads)" \
                "$(stat_of "$st" swap_writes)" "$(stat_of "$st" evictions)" "$check"
        fi
    done
done
echo "budget ${budget} MiB, data ${data} MiB per program, median of $runs runs; tmemd $bin/tmemd"
exit $bad
