#!/bin/sh
# SPDX-License-Identifier: MIT
# run.sh - builds tmem in Release (build-bench/) and runs the benchmarks:
#
#  - the engine benchmarks (tmem-bench): ratios of the engine against memcpy
#    and the raw codecs;
#  - the lent-memory benchmarks (tmem-lend-bench, part "lend"): calls through
#    a real tmemd (private pools on lent memory, shared pools through the
#    window) against the same calls on an in-process engine, sporadic and
#    back to back, quiet and loaded, one and four client processes;
#  - the daemon benchmarks (tmem-daemon-bench, part "daemon"): tmem through
#    a real tmemd against the raw shared-memory ping-pong, memcached and
#    Redis, and 1 to 4 client processes.  The benchmark starts tmemd,
#    memcached and redis-server itself on temporary sockets and free
#    loopback ports, and stops them; this script installs memcached,
#    redis-server and their client libraries with apt-get when they are
#    missing (as root, Debian).
#
# Each prints its table of ratios against their floors and writes it to
# bench/results/ (git-ignored), as Markdown and TSV.
#
#   bench/run.sh                 everything (engine, lend, then daemon)
#   bench/run.sh --quick         small sizes, few rounds (a smoke test)
#   bench/run.sh --only lend     the lent-memory benchmarks only (--quick: 2-3 minutes)
#   bench/run.sh --only daemon   the daemon benchmarks only (--quick: 1-2 minutes)
#   bench/run.sh --only copy,lz4 --rounds 9 ...   engine parts; other options go to tmem-bench
#
# --quick, --rounds N and --settle S apply to every program; --only takes
# the engine parts (copy, lz4, density, threads, latency, churn), "lend"
# and "daemon"; any other option goes to tmem-bench.  Options of
# tmem-daemon-bench alone go in $DAEMON_BENCH_ARGS, of tmem-lend-bench in
# $LEND_BENCH_ARGS (see their --help).
#
# See docs/benchmarks.md for what each figure means.
set -eu

root=$(cd "$(dirname "$0")/.." && pwd)
build="$root/build-bench"
results="$root/bench/results"
cd "$root"

# ---- what to run --------------------------------------------------------
mode=full
only=""
engine_args=""
daemon_args=""
lend_args=""
want_engine=1
want_lend=1
want_daemon=1
daemon_explicit=0
while [ $# -gt 0 ]; do
    case "$1" in
    --quick)
        mode=quick
        engine_args="$engine_args --quick"; daemon_args="$daemon_args --quick"
        lend_args="$lend_args --quick" ;;
    --rounds|--settle)
        [ $# -ge 2 ] || { echo "run.sh: $1 needs a value" >&2; exit 2; }
        engine_args="$engine_args $1 $2"; daemon_args="$daemon_args $1 $2"
        lend_args="$lend_args $1 $2"; shift ;;
    --only)
        [ $# -ge 2 ] || { echo "run.sh: --only needs a list" >&2; exit 2; }
        only="$2"; shift ;;
    --only=*)
        only="${1#--only=}" ;;
    *)
        engine_args="$engine_args $1" ;;
    esac
    shift
done
if [ -n "$only" ]; then
    rest=""
    want_daemon=0
    want_lend=0
    for part in $(echo "$only" | tr ',' ' '); do
        if [ "$part" = daemon ]; then
            want_daemon=1
            daemon_explicit=1
        elif [ "$part" = lend ]; then
            want_lend=1
        else
            rest="${rest:+$rest,}$part"
        fi
    done
    if [ -n "$rest" ]; then
        engine_args="$engine_args --only $rest"
    else
        want_engine=0
    fi
fi

# ---- what the daemon benchmark needs ----------------------------------------
# A missing piece is fatal when the daemon part was asked for by name, and
# skips it (with a warning) in a run of everything.
skip_daemon() {
    if [ "$daemon_explicit" = 1 ]; then
        echo "run.sh: $1" >&2
        exit 1
    fi
    echo "run.sh: $1: the daemon benchmarks are skipped" >&2
    want_daemon=0
}
mkdir -p "$build"
if [ "$want_daemon" = 1 ]; then
    need=""
    command -v memcached >/dev/null 2>&1 || need="$need memcached"
    command -v redis-server >/dev/null 2>&1 || need="$need redis-server"
    pkg-config --exists libmemcached 2>/dev/null || need="$need libmemcached-dev"
    pkg-config --exists hiredis 2>/dev/null || need="$need libhiredis-dev"
    if [ -n "$need" ]; then
        if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
            echo "run.sh: installing$need (apt-get)" >&2
            if ! { apt-get update -qq &&
                   DEBIAN_FRONTEND=noninteractive apt-get install -y -q $need; } \
                   >"$build/apt.log" 2>&1; then
                cat "$build/apt.log" >&2
                skip_daemon "could not install$need"
            fi
        else
            skip_daemon "missing$need (install them, as root: apt-get install$need)"
        fi
    fi
fi

# ---- build ----------------------------------------------------------------------
targets=""
[ "$want_engine" = 1 ] && targets="$targets tmem-bench"
[ "$want_lend" = 1 ] && targets="$targets tmem-lend-bench"
[ "$want_daemon" = 1 ] && targets="$targets tmem-daemon-bench"
echo "run.sh: building (Release) in $build:$targets" >&2
log="$build/build.log"
mkdir -p "$build"
if ! { cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release -DTMEM_BUILD_TESTS=OFF &&
       cmake --build "$build" --target $targets -j "$(nproc)"; } >"$log" 2>&1; then
    cat "$log" >&2
    echo "run.sh: build failed" >&2
    exit 1
fi
if grep -q "warning:" "$log"; then
    grep -A3 "warning:" "$log" >&2
fi

mkdir -p "$results"
stamp=$(date -u +%Y%m%dT%H%M%SZ)
rev=$(git -C "$root" describe --always --dirty 2>/dev/null || echo unknown)

# ---- run --------------------------------------------------------------------------
if [ "$want_engine" = 1 ]; then
    base="$results/bench-$stamp-$mode"
    echo "run.sh: running tmem-bench$engine_args (results in $base.md)" >&2
    # shellcheck disable=SC2086
    {
        "$build/bench/tmem-bench" --tsv "$base.tsv" $engine_args
        echo
        echo "git: $rev"
    } | tee "$base.md"
    cp "$base.md" "$results/latest-$mode.md"
fi
if [ "$want_lend" = 1 ]; then
    base="$results/lend-$stamp-$mode"
    lend_args="$lend_args ${LEND_BENCH_ARGS:-}"
    echo "run.sh: running tmem-lend-bench$lend_args (results in $base.md)" >&2
    status="$build/lend-bench.status"
    rm -f "$status"
    # shellcheck disable=SC2086
    {
        if "$build/bench/tmem-lend-bench" --tsv "$base.tsv" $lend_args; then
            echo 0 >"$status"
        else
            echo $? >"$status"
        fi
        echo
        echo "git: $rev"
    } | tee "$base.md"
    rc=$(cat "$status" 2>/dev/null || echo 1)
    if [ "$rc" != 0 ]; then
        echo "run.sh: tmem-lend-bench failed (status $rc)" >&2
        exit 1
    fi
    cp "$base.md" "$results/latest-lend-$mode.md"
fi
if [ "$want_daemon" = 1 ]; then
    base="$results/daemon-$stamp-$mode"
    daemon_args="$daemon_args ${DAEMON_BENCH_ARGS:-}"
    echo "run.sh: running tmem-daemon-bench$daemon_args (results in $base.md)" >&2
    # the pipe would hide its exit status; a failure must fail the script
    status="$build/daemon-bench.status"
    rm -f "$status"
    # shellcheck disable=SC2086
    {
        if "$build/bench/tmem-daemon-bench" --tsv "$base.tsv" $daemon_args; then
            echo 0 >"$status"
        else
            echo $? >"$status"
        fi
        echo
        echo "git: $rev"
    } | tee "$base.md"
    rc=$(cat "$status" 2>/dev/null || echo 1)
    if [ "$rc" != 0 ]; then
        echo "run.sh: tmem-daemon-bench failed (status $rc)" >&2
        exit 1
    fi
    cp "$base.md" "$results/latest-daemon-$mode.md"
fi
