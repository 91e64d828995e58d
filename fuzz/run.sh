#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# run.sh [SECONDS] [TARGET...] - fuzzes with libFuzzer (docs/fuzzing.md).
#
# Builds the fuzz targets with clang, -fsanitize=fuzzer + ASan + UBSan, in
# build-fuzz/ (installing clang and its libFuzzer runtime if missing), runs
# each TARGET (default: request hello ctl) for SECONDS (default 60) from its
# committed corpus fuzz/corpus/<target>/, then merges the new inputs that
# add edges back into that corpus (-merge=1): review and commit them.
# A crash, a hang or a sanitizer report stops that target with a reproducer
# in build-fuzz/artifacts/<target>/ and makes this script fail.
#
#   TMEM_FUZZ_JOBS=N      libFuzzer workers per target (default 1)
#   TMEM_FUZZ_NO_MERGE=1  keep the new inputs in build-fuzz/new/<target>/ only
set -euo pipefail
cd "$(dirname "$0")/.."
top=$PWD
secs=${1:-60}
[ $# -gt 0 ] && shift
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(request hello ctl)
build=build-fuzz

# clang and libFuzzer's runtime: a program built with -fsanitize=fuzzer must link
probe=$(mktemp -d)
trap 'rm -rf "$probe"' EXIT
echo 'int LLVMFuzzerTestOneInput(const char *d, unsigned long n) { (void)d; (void)n; return 0; }' \
    > "$probe/p.c"
if ! clang -fsanitize=fuzzer,address,undefined "$probe/p.c" -o "$probe/p" 2>/dev/null; then
    echo "run.sh: installing clang and the libFuzzer runtime"
    SUDO=; [ "$(id -u)" = 0 ] || SUDO=sudo
    $SUDO apt-get update -qq
    $SUDO apt-get install -y -qq clang >/dev/null
    major=$(clang -dumpversion | cut -d. -f1)
    $SUDO apt-get install -y -qq "libclang-rt-$major-dev" >/dev/null || true
    clang -fsanitize=fuzzer,address,undefined "$probe/p.c" -o "$probe/p"
fi

cmake -S . -B "$build" -DCMAKE_C_COMPILER=clang -DCMAKE_BUILD_TYPE=RelWithDebInfo \
      -DTMEM_SANITIZE=address -DCMAKE_C_FLAGS=-fsanitize=fuzzer-no-link \
      -DTMEM_FUZZ_LIBFUZZER=ON -DTMEM_BUILD_TESTS=OFF -DTMEM_BUILD_BENCH=OFF >/dev/null
cmake --build "$build" -j"$(nproc)" --target $(printf 'fuzz_%s ' "${targets[@]}") >/dev/null

export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
# with workers, each one's output is in build-fuzz/fuzz-N.log: into the target's log
fold_logs() {
    local f
    for f in "$build"/fuzz-[0-9]*.log; do
        [ -e "$f" ] || continue
        { echo "---- $f"; cat "$f"; } >> "$build/fuzz_$t.log"
        rm -f "$f"
    done
}

status=0
for t in "${targets[@]}"; do
    case $t in
        request) max_len=8192 ;;
        hello)   max_len=256 ;;
        ctl)     max_len=512 ;;
        *) echo "run.sh: unknown target $t" >&2; exit 2 ;;
    esac
    corpus=fuzz/corpus/$t
    new=$build/new/$t
    art=$build/artifacts/$t
    mkdir -p "$corpus" "$new" "$art"
    echo "== fuzz_$t: ${secs}s from $corpus ($(ls "$corpus" | wc -l) inputs)"
    jobs=${TMEM_FUZZ_JOBS:-1}
    par=()          # workers write fuzz-N.log into the current directory: build-fuzz
    [ "$jobs" -gt 1 ] && par=(-jobs="$jobs" -workers="$jobs")
    if ! (cd "$build" && "./fuzz/fuzz_$t" -max_total_time="$secs" -max_len="$max_len" \
            -timeout=10 "${par[@]}" -print_final_stats=1 -artifact_prefix="$top/$art/" \
            "$top/$new" "$top/$corpus" 2> "$top/$build/fuzz_$t.log"); then
        fold_logs
        status=1
        echo "fuzz_$t FAILED: see $build/fuzz_$t.log and $art/"
        grep -E "ERROR|invariant|SUMMARY|Test unit written" "$build/fuzz_$t.log" | head -20 || true
        continue
    fi
    fold_logs
    grep -E "stat::number_of_executed_units|stat::new_units_added|DONE" "$build/fuzz_$t.log" |
        tail -6 || true
    if [ "${TMEM_FUZZ_NO_MERGE:-0}" != 1 ]; then
        before=$(ls "$corpus" | wc -l)
        # edges only (no hit counts): the committed corpus stays a few hundred files
        "$build/fuzz/fuzz_$t" -merge=1 -use_counters=0 -max_len="$max_len" "$corpus" "$new" \
            2> "$build/fuzz_$t.merge.log" >/dev/null
        echo "fuzz_$t: corpus $before -> $(ls "$corpus" | wc -l) inputs"
    fi
done
exit $status
