#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# run-demo.sh - uswap on real programs: a merge sort and a hash join (the
# examples) and GNU sort, each over data twice the resident budget, run
#   plain       without paging (the reference output and time)
#   tmem        through tmemd (frontswap), the swap file behind it
#   file        the swap file alone (--no-tmem; the kernel's page cache
#               holds it, so this is memory too)
#   file-direct the swap file alone with O_DIRECT (the disk)
#   kernel      no uswap: the kernel's own swap.  The program runs in a
#               memory cgroup limited to budget + KERNEL_SLACK_MB (v2
#               memory.max, else v1 memory.limit_in_bytes) with swap on a
#               zram device (LZ4, as tmemd compresses), both set up here and
#               torn down at exit.  Skipped with a message where zram or a
#               memory cgroup cannot be had.
# RUNS times each; prints the median wall time and the counters of the
# median run side by side, and checks every paged run's output against the
# plain run's.  The last two columns are memory really used at peak: the
# program's resident set (kernel: the cgroup's peak, page cache included)
# and the store behind it (tmem: tmemd's bytes_held, polled; kernel: the
# zram device's mem_used_max; the swap file: its page cache, not measured).
# For kernel runs, faults are the cgroup's major faults, loads and stores
# the pages swapped in and out (/proc/vmstat).  Needs root (userfaultfd).
# Exit status 1 if any output is wrong.
#
# usage: frontends/uswap/run-demo.sh [BUILD_DIR]   (default: build-h3rel)
# environment: BUDGET_MB (64), DATA_MB (2 * BUDGET_MB), RUNS (3),
#              MODES ("plain tmem file file-direct kernel"),
#              PROGS ("sort hashjoin gnusort"), KERNEL_SLACK_MB (8),
#              TMEMD_ARGS (more tmemd options, e.g. "--set memory.compress=none"),
#              USWAP_ARGS (more launcher options, e.g. "--readahead 32")
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
bin=${1:-$root/build-h3rel}
budget=${BUDGET_MB:-64}
runs=${RUNS:-3}
modes=${MODES:-plain tmem file file-direct kernel}
progs=${PROGS:-sort hashjoin gnusort}
data=${DATA_MB:-$((2 * budget))}
slack=${KERNEL_SLACK_MB:-8}
for f in tmemd tmemctl frontends/uswap/tmem-uswap frontends/uswap/uswap-sort frontends/uswap/uswap-hashjoin; do
    [ -x "$bin/$f" ] || { echo "run-demo: $bin/$f is missing (build the tree first)" >&2; exit 1; }
done
launcher=$bin/frontends/uswap/tmem-uswap

dir=$(mktemp -d /tmp/uswap-demo.XXXXXX)
zdev= cg= cgv=
cleanup() {
    [ -n "${pid:-}" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
    kernel_teardown
    rm -rf "$dir"
}
# ---- kernel mode: a memory cgroup and swap on zram, ours alone ----
kernel_setup() {     # 0, or 1 with the reason on stderr
    [ "$(id -u)" = 0 ] || { echo "run-demo: kernel mode needs root" >&2; return 1; }
    [ -e /sys/class/zram-control/hot_add ] || modprobe zram 2>/dev/null || true
    [ -e /sys/class/zram-control/hot_add ] ||
        { echo "run-demo: kernel mode: no zram here (modprobe zram failed)" >&2; return 1; }
    zdev=$(cat /sys/class/zram-control/hot_add) ||
        { zdev=; echo "run-demo: kernel mode: cannot add a zram device" >&2; return 1; }
    local z=/sys/block/zram$zdev
    echo lz4 > $z/comp_algorithm 2>/dev/null || true
    echo $((4 * data))M > $z/disksize &&
    mkswap /dev/zram$zdev >/dev/null &&
    swapon -p 32767 /dev/zram$zdev ||
        { echo "run-demo: kernel mode: cannot swap on /dev/zram$zdev" >&2; return 1; }
    local limit=$(((budget + slack) * 1024 * 1024))
    if grep -qw memory /sys/fs/cgroup/cgroup.controllers 2>/dev/null; then
        cgv=2 cg=/sys/fs/cgroup/uswap-demo.$$
        grep -qw memory /sys/fs/cgroup/cgroup.subtree_control ||
            echo +memory > /sys/fs/cgroup/cgroup.subtree_control
        mkdir "$cg" && echo $limit > "$cg/memory.max" && echo max > "$cg/memory.swap.max"
    elif [ -d /sys/fs/cgroup/memory ]; then
        cgv=1 cg=/sys/fs/cgroup/memory/uswap-demo.$$
        mkdir "$cg" && echo $limit > "$cg/memory.limit_in_bytes"
    else
        false
    fi || { echo "run-demo: kernel mode: no writable memory cgroup" >&2; cg=; return 1; }
    echo "run-demo: kernel mode: cgroup v$cgv $cg limited to $((budget + slack)) MiB," \
         "swap on /dev/zram$zdev ($(cat $z/comp_algorithm | sed 's/.*\[\(.*\)\].*/\1/'))" >&2
}
kernel_teardown() {
    if [ -n "$cg" ]; then rmdir "$cg" 2>/dev/null || true; cg=; fi
    if [ -n "$zdev" ]; then
        swapoff /dev/zram$zdev 2>/dev/null || true
        echo 1 > /sys/block/zram$zdev/reset 2>/dev/null || true
        echo "$zdev" > /sys/class/zram-control/hot_remove 2>/dev/null || true
        zdev=
    fi
}
vmstat_of() { awk -v k="$1" '$1 == k { print $2 }' /proc/vmstat; }
cg_majfault() {
    if [ "$cgv" = 2 ]; then awk '$1 == "pgmajfault" { print $2 }' "$cg/memory.stat"
    else awk '$1 == "total_pgmajfault" { print $2 }' "$cg/memory.stat"; fi
}
cg_peak() {          # bytes
    if [ "$cgv" = 2 ]; then cat "$cg/memory.peak"; else cat "$cg/memory.max_usage_in_bytes"; fi
}
cg_reset_peak() {
    if [ "$cgv" = 2 ]; then echo 0 > "$cg/memory.peak" 2>/dev/null || true
    else echo 0 > "$cg/memory.max_usage_in_bytes"; fi
    echo 0 > /sys/block/zram$zdev/mem_used_max
}
# Runs "$@" in the cgroup, writing the kernel's counters to the stats file
# $st and the wall time to $dir/ktime.  A run the cgroup's OOM killer ends
# (SIGKILL: it happens here, in try_charge at swap-in, with the limit tight)
# is run again, up to KERNEL_TRIES (5) times; the kills are counted
# (oom_kills=, shown in the check column).  If every try is killed, the run
# counts as wrong (its output is cut short) and its time as 9999 s.
kernel_run() {
    local in0 out0 maj0 in1 out1 maj1 t0 t1 rc kills=0
    while :; do
        cg_reset_peak
        in0=$(vmstat_of pswpin) out0=$(vmstat_of pswpout) maj0=$(cg_majfault)
        t0=$(date +%s.%N)
        rc=0
        sh -c 'echo $$ > "$1"; shift; exec "$@"' sh "$cg/cgroup.procs" "$@" || rc=$?
        t1=$(date +%s.%N)
        in1=$(vmstat_of pswpin) out1=$(vmstat_of pswpout) maj1=$(cg_majfault)
        [ $rc = 137 ] && [ $kills -lt $((${KERNEL_TRIES:-5} - 1)) ] || break
        kills=$((kills + 1))
    done
    # a run that never finished sorts last (its time means nothing)
    awk -v a="$t0" -v b="$t1" -v rc=$rc 'BEGIN { printf "%.3f\n", rc ? 9999 : b - a }' > "$dir/ktime"
    echo "kernel: faults=$((maj1 - maj0)) tmem_loads=$((in1 - in0)) tmem_stores_ok=$((out1 - out0))" \
         "rss_kb=$(($(cg_peak) / 1024)) store_kb=$(($(awk '{ print $5 }' /sys/block/zram$zdev/mm_stat) / 1024))" \
         "oom_kills=$kills" > "$st"
    return $rc
}
# the peak of tmemd's bytes_held while process $1 lives, in KiB, to file $2
poll_tmem() {
    local max=0 b
    while kill -0 "$1" 2>/dev/null; do
        b=$("$bin/tmemctl" --socket "$dir/ctl.sock" stats --json 2>/dev/null |
            sed -n 's/.*"bytes_held": *\([0-9]*\).*/\1/p' | head -1)
        [ -n "$b" ] && [ "$b" -gt "$max" ] && max=$b
        sleep 0.2
    done
    echo $((max / 1024)) > "$2"
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
mib() { [ -n "$1" ] && awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }' || echo -; }
printf '%-9s %-12s %9s %9s %10s %10s %10s %10s %8s %8s %8s  %s\n' program mode "time(s)" faults \
    tmem_loads tmem_store swap_reads swap_write evicted "rss(MiB)" "store" check
kernel_ok=
for p in $progs; do
    cmd=$(cmd_of "$p")
    ref=$dir/out.$p.plain
    # the reference output, also when plain runs are not asked for
    [[ " $modes " == *" plain "* ]] || $cmd > "$ref"
    for m in $modes; do
        if [ "$m" = kernel ]; then
            [ -z "$kernel_ok" ] && { kernel_setup && kernel_ok=1 || kernel_ok=0; }
            if [ "$kernel_ok" != 1 ]; then
                printf '%-9s %-12s %9s  %s\n' "$p" "$m" - "skipped (see above)"
                continue
            fi
        fi
        : > "$dir/times"
        for r in $(seq "$runs"); do
            out=$dir/out.$p.$m.$r st=$dir/stats.$p.$m.$r
            rm -f "$st" "$dir"/swap.*
            t0=$(date +%s.%N)
            if [ "$m" = plain ]; then
                $cmd > "$out"
            elif [ "$m" = kernel ]; then
                # shellcheck disable=SC2086
                kernel_run $cmd > "$out" || true
            else
                rm -f "$dir/rss" "$dir/held"
                # shellcheck disable=SC2046
                /usr/bin/time -f %M -o "$dir/rss" \
                    "$launcher" --budget ${budget}M --threshold 256K --stats-file "$st" \
                    ${USWAP_ARGS:-} $(opts_of "$m") -- $cmd > "$out" &
                rp=$!
                pp=
                if [ "$m" = tmem ]; then poll_tmem $rp "$dir/held" & pp=$!; fi
                wait $rp
                [ -n "$pp" ] && wait $pp
                echo " rss_kb=$(tail -1 "$dir/rss") store_kb=$(cat "$dir/held" 2>/dev/null)" >> "$st"
            fi
            t1=$(date +%s.%N)
            [ "$m" = kernel ] && t0=0 t1=$(cat "$dir/ktime")     # the run that finished
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
        if [ "$m" = kernel ]; then
            k=$(cat "$dir"/stats."$p".kernel.* | sed -n 's/.* oom_kills=\([0-9]*\).*/\1/p' |
                awk '{ s += $1 } END { print s + 0 }')
            [ "$k" = 0 ] || check="$check, $k OOM-killed runs redone"
        fi
        if [ "$m" = plain ]; then
            printf '%-9s %-12s %9.2f %9s %10s %10s %10s %10s %8s %8s %8s  %s\n' "$p" "$m" "$mt" \
                - - - - - - - - "$check"
        else
            printf '%-9s %-12s %9.2f %9s %10s %10s %10s %10s %8s %8s %8s  %s\n' "$p" "$m" "$mt" \
                "$(stat_of "$st" faults)" "$(stat_of "$st" tmem_loads)" \
                "$(stat_of "$st" tmem_stores_ok)" "$(stat_of "$st" swap_reads | head -1)" \
                "$(stat_of "$st" swap_writes | head -1)" "$(stat_of "$st" evictions | head -1)" \
                "$(mib "$(stat_of "$st" rss_kb)")" "$(mib "$(stat_of "$st" store_kb)")" "$check"
        fi
    done
done
echo "budget ${budget} MiB, data ${data} MiB per program, median of $runs runs; tmemd $bin/tmemd;" \
     "kernel: cgroup limit $((budget + slack)) MiB, swap on zram"
exit $bad
