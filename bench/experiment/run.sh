#!/bin/sh
# SPDX-License-Identifier: MIT
# run.sh - the multi-tenant experiment, from the sources to the plots:
# builds tmem-experiment and tmemd in Release (build-bench/, shared with
# bench/run.sh), runs the experiment (it starts and stops its own tmemd on
# temporary sockets), writes its table and TSV files to bench/results/
# (git-ignored) and draws the plots with gnuplot.
#
#   bench/experiment/run.sh            the full run (a few minutes): results in
#                                      bench/results/, plots in docs/plots/, and
#                                      the table in docs/experiment.md replaced
#   bench/experiment/run.sh --quick    a smoke run of seconds: results and plots
#                                      in bench/results/ only
#   bench/experiment/run.sh --no-docs  a full run that leaves docs/ alone
#
# Any other option goes to tmem-experiment (see its --help), e.g.
#   bench/experiment/run.sh --no-docs --configs static,tmem-zstd --io-delay-us 500
#
# docs/experiment.md explains the experiment and its figures.
set -eu

root=$(cd "$(dirname "$0")/../.." && pwd)
build="$root/build-bench"
results="$root/bench/results"
cd "$root"

mode=full
docs=1
args=""
while [ $# -gt 0 ]; do
    case "$1" in
    --quick) mode=quick; docs=0; args="$args --quick" ;;
    --no-docs) docs=0 ;;
    *) args="$args $1" ;;
    esac
    shift
done
# options other than --quick change what is run: the docs keep the default run
[ -n "$(echo "$args" | sed 's/--quick//g' | tr -d ' ')" ] && docs=0

echo "run.sh: building (Release) in $build: tmem-experiment tmemd" >&2
mkdir -p "$build"
log="$build/build-experiment.log"
if ! { cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release -DTMEM_BUILD_TESTS=OFF &&
       cmake --build "$build" --target tmem-experiment tmemd -j "$(nproc)"; } >"$log" 2>&1; then
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
base="$results/experiment-$stamp-$mode"
echo "run.sh: $(uptime)" >&2
echo "run.sh: running tmem-experiment$args (results in $base.md)" >&2
status="$base.status"
# shellcheck disable=SC2086
{
    if "$build/bench/experiment/tmem-experiment" --tsv "$base.tsv" --runs-tsv "$base.runs.tsv" \
           --phases-tsv "$base.phases.tsv" $args; then
        echo 0 >"$status"
    else
        echo $? >"$status"
    fi
    echo
    echo "- git: $rev; command: bench/experiment/run.sh$args"
} | tee "$base.md"
rc=$(cat "$status" 2>/dev/null || echo 1)
rm -f "$status"
if [ "$rc" != 0 ]; then
    echo "run.sh: tmem-experiment failed (status $rc)" >&2
    exit 1
fi
cp "$base.md" "$results/experiment-latest-$mode.md"

# ---- plots ------------------------------------------------------------------------
if [ "$docs" = 1 ]; then
    plots="$root/docs/plots"
else
    plots="$base-plots"
fi
if command -v gnuplot >/dev/null 2>&1; then
    mkdir -p "$plots"
    subtitle="$(date -u +%Y-%m-%d), $(nproc) CPUs, git $rev ($mode run)"
    gnuplot -e "summary='$base.tsv'; phases='$base.phases.tsv'; outdir='$plots'; fmt='svg'; subtitle='$subtitle'" \
        "$root/bench/experiment/plots.gp"
    echo "run.sh: plots in $plots" >&2
else
    echo "run.sh: gnuplot is missing (scripts/deps.sh installs gnuplot-nox): no plots" >&2
fi

# ---- the table in docs/experiment.md ------------------------------------------------
if [ "$docs" = 1 ]; then
    doc="$root/docs/experiment.md"
    if grep -q '^<!-- experiment:begin -->' "$doc" && grep -q '^<!-- experiment:end -->' "$doc"; then
        tmp="$doc.tmp.$$"
        # the title line of the output becomes a third-level heading
        awk -v res="$base.md" '
            /^<!-- experiment:begin -->/ {
                print
                while ((getline line < res) > 0) {
                    if (line ~ /^## /) line = "###" substr(line, 3)
                    print line
                }
                skip = 1
                next
            }
            /^<!-- experiment:end -->/ { skip = 0 }
            !skip { print }
        ' "$doc" >"$tmp" && mv "$tmp" "$doc"
        echo "run.sh: the results in $doc replaced" >&2
    else
        echo "run.sh: $doc has no <!-- experiment:begin/end --> markers: left alone" >&2
    fi
fi
