#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# test.sh - installs what is missing, builds, and passes every test:
#   1. the whole suite under AddressSanitizer + UndefinedBehaviorSanitizer
#      (Debug, warnings are errors), the replay of the committed fuzz corpus
#      included (ctest fuzz_replay_*: fuzz/, docs/fuzzing.md);
#   2. the concurrency tests under ThreadSanitizer;
#   3. a Release build (warnings are errors), the quick tests, and the
#      installed library used through pkg-config by a fresh program; then a
#      second install under another prefix (cmake --install --prefix), where
#      pkg-config, the program and tmem-uswap find everything in that prefix;
#      in both, tmemd.service (ExecStart= that prefix's tmemd; systemd-analyze
#      verify) and etc/tmem/tmemd.conf, which the installed tmemd reads.
# Set TMEM_TEST_QUICK=1 to run only step 3.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
jobs=$(nproc)

if [ "${TMEM_TEST_QUICK:-0}" != 1 ]; then
    echo "== 1/3 ASan+UBSan: every test =="
    cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DTMEM_WERROR=ON -DTMEM_SANITIZE=address \
          -DTMEM_BUILD_BENCH=OFF >/dev/null
    cmake --build build-asan -j"$jobs" >/dev/null
    ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 \
        ctest --test-dir build-asan --output-on-failure -j"$jobs"

    echo "== 2/3 TSan: concurrency tests =="
    cmake -S . -B build-tsan -DCMAKE_BUILD_TYPE=Debug -DTMEM_WERROR=ON -DTMEM_SANITIZE=thread \
          -DTMEM_BUILD_BENCH=OFF >/dev/null
    cmake --build build-tsan -j"$jobs" >/dev/null
    TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1 \
        ctest --test-dir build-tsan --output-on-failure -L thread
fi

echo "== 3/3 Release: quick tests, install, pkg-config =="
cmake -S . -B build-release -DCMAKE_BUILD_TYPE=Release -DTMEM_WERROR=ON -DTMEM_BUILD_TESTS=ON -DTMEM_BUILD_BENCH=ON \
      -DCMAKE_INSTALL_PREFIX="$PWD/build-release/prefix" >/dev/null
cmake --build build-release -j"$jobs" >/dev/null
ctest --test-dir build-release --output-on-failure -L quick -j"$jobs"
cmake --install build-release >/dev/null
prefix="$PWD/build-release/prefix"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cat > "$tmp/hello.c" <<'C'
#include <stdio.h>
#include <string.h>
#include <tmem/tmem.h>
int main(void)
{
    tmem_t *t = tmem_open(NULL);
    tmem_client_t *c = tmem_client_open(t, "hello");
    tmem_uuid_t u = { 0, 0 };
    int p = tmem_new_pool(c, u, TMEM_POOL_PERSIST);
    char in[TMEM_PAGE_SIZE] = "hello, tmem", out[TMEM_PAGE_SIZE];
    tmem_oid_t oid = { { 1, 2, 3 } };
    int ok = p >= 0 && tmem_put_page(c, (unsigned)p, oid, 0, in) == 0 &&
             tmem_get_page(c, (unsigned)p, oid, 0, out) == 0 && !strcmp(in, out);
    tmem_close(t);
    puts(ok ? "pkg-config program: put and get work" : "pkg-config program: FAILED");
    return !ok;
}
C
export PKG_CONFIG_PATH="$prefix/lib/pkgconfig:$prefix/lib/x86_64-linux-gnu/pkgconfig"
cc -std=c11 -Wall -Werror "$tmp/hello.c" -o "$tmp/hello" $(pkg-config --cflags --libs tmem)
LD_LIBRARY_PATH="$prefix/lib:$prefix/lib/x86_64-linux-gnu" "$tmp/hello"

# The service: the unit under the prefix naming the installed tmemd (and
# valid for systemd, if systemd-analyze is here), the sample configuration
# in etc/tmem, which the installed tmemd reads when given no --config.
check_service() {   # PREFIX
    local unit="$1/lib/systemd/system/tmemd.service" exe
    [ -f "$unit" ] || { echo "install under $1: no lib/systemd/system/tmemd.service"; exit 1; }
    exe=$(sed -n 's/^ExecStart=\([^ ]*\).*/\1/p' "$unit")
    [ "$exe" = "$1/sbin/tmemd" ] && [ -x "$exe" ] ||
        { echo "install under $1: tmemd.service runs '$exe', not $1/sbin/tmemd"; exit 1; }
    if command -v systemd-analyze >/dev/null; then
        # any complaint fails (a bad value is only "ignoring" for systemd)
        local said
        said=$(MANPATH="$1/share/man" systemd-analyze verify "$unit" 2>&1) && [ -z "$said" ] ||
            { echo "install under $1: systemd-analyze verify tmemd.service: $said"; exit 1; }
    fi
    cmp -s "$1/etc/tmem/tmemd.conf" dist/tmemd.conf ||
        { echo "install under $1: etc/tmem/tmemd.conf is not dist/tmemd.conf"; exit 1; }
}
check_service "$prefix"
# the configured prefix's tmemd, without --config, runs on the installed file
"$prefix/sbin/tmemd" --socket "$tmp/c.sock" --control-socket "$tmp/ctl.sock" \
    --set metrics.port=0 2>"$tmp/tmemd.log" &
tmemd_pid=$!
for _ in $(seq 200); do [ -S "$tmp/ctl.sock" ] && break; sleep 0.05; done
kill -TERM "$tmemd_pid"
wait "$tmemd_pid" || { echo "installed tmemd failed:"; cat "$tmp/tmemd.log"; exit 1; }
grep -q "configuration: $prefix/etc/tmem/tmemd.conf\$" "$tmp/tmemd.log" ||
    { echo "installed tmemd did not read $prefix/etc/tmem/tmemd.conf:"; cat "$tmp/tmemd.log"; exit 1; }
echo "install: tmemd.service runs $prefix/sbin/tmemd; tmemd reads etc/tmem/tmemd.conf"

# The same build installed under another prefix than the configured one:
# tmem.pc and tmem-uswap find their files relative to where they lie.
moved="$tmp/moved"
cmake --install build-release --prefix "$moved" >/dev/null
pc=$(find "$moved" -name tmem.pc -path '*/pkgconfig/*')
libdir=$(realpath "$(dirname "$pc")/..")
cflags=$(PKG_CONFIG_PATH="$(dirname "$pc")" pkg-config --cflags tmem)
libs=$(PKG_CONFIG_PATH="$(dirname "$pc")" pkg-config --libs tmem)
set -- $cflags
[ "$(realpath "${1#-I}")" = "$(realpath "$moved/include")" ] ||
    { echo "moved install: pkg-config --cflags gives '$cflags', not $moved/include"; exit 1; }
set -- $libs
[ "$(realpath "${1#-L}")" = "$libdir" ] ||
    { echo "moved install: pkg-config --libs gives '$libs', not -L$libdir"; exit 1; }
cc -std=c11 -Wall -Werror "$tmp/hello.c" -o "$tmp/hello-moved" $cflags $libs
LD_LIBRARY_PATH="$libdir" "$tmp/hello-moved"
shim="$libdir/tmem/libtmem-uswap-preload.so"
[ -f "$shim" ] && [ ! -e "$libdir/libtmem-uswap-preload.so" ] ||
    { echo "moved install: the uswap shim is not (only) in $libdir/tmem/"; exit 1; }
if nm -D --defined-only "$shim" | awk '{ print $NF }' | grep '^tmem_' >/dev/null; then
    echo "moved install: the uswap shim exports tmem_* symbols"; exit 1
fi
found=$(env -u TMEM_USWAP_PRELOAD "$moved/bin/tmem-uswap" --print-preload)
[ "$found" = "$(realpath "$shim")" ] ||
    { echo "moved install: tmem-uswap finds '$found', not $shim"; exit 1; }
check_service "$moved"
echo "moved install: pkg-config, the program, tmem-uswap and tmemd.service use $moved"
echo "all tests passed"
