#!/bin/sh
# run.sh - builds tmem in Release (build-bench/) and runs the engine
# benchmarks (tmem-bench): prints the table of ratios against their floors
# and writes it to bench/results/ (git-ignored), as Markdown and TSV.
#
#   bench/run.sh            the full run (a few minutes at most)
#   bench/run.sh --quick    small sizes, 5 rounds (under a minute)
#   bench/run.sh --only copy,lz4 --rounds 9 ...   any tmem-bench option
#
# See docs/benchmarks.md for what each figure means.
set -eu

root=$(cd "$(dirname "$0")/.." && pwd)
build="$root/build-bench"
results="$root/bench/results"
cd "$root"

echo "run.sh: building (Release) in $build" >&2
log="$build/build.log"
mkdir -p "$build"
if ! { cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release -DTMEM_BUILD_TESTS=OFF &&
       cmake --build "$build" --target tmem-bench -j "$(nproc)"; } >"$log" 2>&1; then
    cat "$log" >&2
    echo "run.sh: build failed" >&2
    exit 1
fi
if grep -q "warning:" "$log"; then
    grep -A3 "warning:" "$log" >&2
fi

mode=full
for a in "$@"; do
    [ "$a" = "--quick" ] && mode=quick
done
mkdir -p "$results"
stamp=$(date -u +%Y%m%dT%H%M%SZ)
base="$results/bench-$stamp-$mode"
rev=$(git -C "$root" describe --always --dirty 2>/dev/null || echo unknown)

echo "run.sh: running tmem-bench $* (results in $base.md)" >&2
{
    "$build/bench/tmem-bench" --tsv "$base.tsv" "$@"
    echo
    echo "git: $rev"
} | tee "$base.md"
cp "$base.md" "$results/latest-$mode.md"
