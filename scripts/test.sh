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
#      verify) and etc/tmem/tmemd.conf, which the installed tmemd reads;
#   4. the Debian package (cpack -G DEB in build-deb, for /usr): installed
#      with dpkg, its files checked, the installed tmemd and tmemctl run on
#      sockets of their own, a program built through pkg-config, lintian
#      (errors fail), then purged, leaving nothing behind.  It is skipped
#      (saying why) when another tmem is installed under /usr.
# Set TMEM_TEST_QUICK=1 to run only steps 3 and 4.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
jobs=$(nproc)

if [ "${TMEM_TEST_QUICK:-0}" != 1 ]; then
    echo "== 1/4 ASan+UBSan: every test =="
    cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DTMEM_WERROR=ON -DTMEM_SANITIZE=address \
          -DTMEM_BUILD_BENCH=OFF >/dev/null
    cmake --build build-asan -j"$jobs" >/dev/null
    ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 \
        ctest --test-dir build-asan --output-on-failure -j"$jobs"

    echo "== 2/4 TSan: concurrency tests =="
    cmake -S . -B build-tsan -DCMAKE_BUILD_TYPE=Debug -DTMEM_WERROR=ON -DTMEM_SANITIZE=thread \
          -DTMEM_BUILD_BENCH=OFF >/dev/null
    cmake --build build-tsan -j"$jobs" >/dev/null
    TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1 \
        ctest --test-dir build-tsan --output-on-failure -L thread
fi

echo "== 3/4 Release: quick tests, install, pkg-config =="
cmake -S . -B build-release -DCMAKE_BUILD_TYPE=Release -DTMEM_WERROR=ON -DTMEM_BUILD_TESTS=ON -DTMEM_BUILD_BENCH=ON \
      -DCMAKE_INSTALL_PREFIX="$PWD/build-release/prefix" >/dev/null
cmake --build build-release -j"$jobs" >/dev/null
ctest --test-dir build-release --output-on-failure -L quick -j"$jobs"
prefix="$PWD/build-release/prefix"
rm -rf "$prefix"        # what an earlier run installed is not this install's
cmake --install build-release >/dev/null
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cat > "$tmp/hello.c" <<'C'
#include <stdio.h>
#include <string.h>
#include <tmem/tmem.h>
int main(int argc, char **argv)     /* argv[1]: the version libtmem must say */
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
    if (argc > 1 && strcmp(tmem_version(), argv[1]) != 0) {
        printf("pkg-config program: libtmem says %s, not %s\n", tmem_version(), argv[1]);
        ok = 0;
    }
    return !ok;
}
C
export PKG_CONFIG_PATH="$prefix/lib/pkgconfig:$prefix/lib/x86_64-linux-gnu/pkgconfig"
cc -std=c11 -Wall -Werror "$tmp/hello.c" -o "$tmp/hello" $(pkg-config --cflags --libs tmem)
LD_LIBRARY_PATH="$prefix/lib:$prefix/lib/x86_64-linux-gnu" "$tmp/hello" "$(pkg-config --modversion tmem)"
# tmemd and tmemctl in sbin, the demo not installed, the man pages gzipped
for f in sbin/tmemd sbin/tmemctl bin/tmem-cachefs bin/tmem-uswap share/man/man8/tmemd.8.gz \
         share/man/man8/tmemctl.8.gz share/man/man5/tmemd.conf.5.gz share/man/man8/tmem-cachefs.8.gz \
         share/man/man1/tmem-uswap.1.gz share/man/man3/libtmem.3.gz share/doc/tmem/copyright; do
    [ -e "$prefix/$f" ] || { echo "install: no $f under $prefix"; exit 1; }
done
for f in bin/tmemctl bin/tmem-demo sbin/tmem-demo; do
    [ ! -e "$prefix/$f" ] || { echo "install: $f should not be installed"; exit 1; }
done

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
# tmem.pc alone, no other .pc file (the codecs' -dev packages): enough
cflags=$(PKG_CONFIG_PATH= PKG_CONFIG_LIBDIR="$(dirname "$pc")" pkg-config --cflags tmem)
libs=$(PKG_CONFIG_PATH= PKG_CONFIG_LIBDIR="$(dirname "$pc")" pkg-config --libs tmem)
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

echo "== 4/4 Debian package: build, install, run, lintian, purge =="
# One run at a time on this machine: the package is installed system-wide.
exec 9>/run/lock/tmem-test-deb.lock
flock -w 600 9 || { echo "deb: another test.sh holds /run/lock/tmem-test-deb.lock"; exit 1; }
if [ "$(id -u)" != 0 ]; then
    echo "deb: SKIPPED: installing the package needs root"
elif dpkg-query -W -f='${Status}' tmem 2>/dev/null | grep -q "ok installed"; then
    echo "deb: SKIPPED: a tmem package is installed here; this stage would replace and remove it"
elif [ -e /usr/sbin/tmemd ] || [ -e /usr/sbin/tmemctl ] || [ -e /usr/include/tmem ]; then
    echo "deb: SKIPPED: tmem is installed under /usr (not by dpkg); this stage would remove it"
else
    # Debian's flags (hardening, as lintian expects); warnings are stage 3's job
    cmake -S . -B build-deb -DCMAKE_BUILD_TYPE=Release -DCMAKE_INSTALL_PREFIX=/usr \
          -DTMEM_BUILD_TESTS=OFF -DTMEM_BUILD_BENCH=OFF -DTMEM_BUILD_FUZZ=OFF \
          -DCMAKE_C_FLAGS="$(DEB_BUILD_MAINT_OPTIONS=hardening=+all dpkg-buildflags --get CFLAGS) $(DEB_BUILD_MAINT_OPTIONS=hardening=+all dpkg-buildflags --get CPPFLAGS)" \
          -DCMAKE_EXE_LINKER_FLAGS="$(DEB_BUILD_MAINT_OPTIONS=hardening=+all dpkg-buildflags --get LDFLAGS)" \
          -DCMAKE_SHARED_LINKER_FLAGS="$(DEB_BUILD_MAINT_OPTIONS=hardening=+all dpkg-buildflags --get LDFLAGS)" \
          -DCMAKE_MODULE_LINKER_FLAGS="$(DEB_BUILD_MAINT_OPTIONS=hardening=+all dpkg-buildflags --get LDFLAGS)" \
          >/dev/null
    cmake --build build-deb -j"$jobs" >/dev/null
    rm -f build-deb/tmem_*.deb
    (cd build-deb && cpack -G DEB >"$tmp/cpack.log" 2>&1) || { cat "$tmp/cpack.log"; exit 1; }
    deb=$(ls build-deb/tmem_*.deb)
    version=$(dpkg-deb -f "$deb" Version)
    dpkg-deb -f "$deb" Depends | grep -q liblz4 ||
        { echo "deb: Depends: lacks the libraries (dpkg-shlibdeps): $(dpkg-deb -f "$deb" Depends)"; exit 1; }
    # whatever happens from here, the machine is left without the package
    deb_cleanup() {
        [ -n "${deb_pid:-}" ] && kill -TERM "$deb_pid" 2>/dev/null && wait "$deb_pid" 2>/dev/null
        dpkg-query -W tmem >/dev/null 2>&1 && dpkg --purge tmem >/dev/null 2>&1
        rm -rf "$tmp"
    }
    trap deb_cleanup EXIT
    dpkg -i "$deb" >"$tmp/dpkg.log" 2>&1 || { cat "$tmp/dpkg.log"; exit 1; }
    ma=$(dpkg-architecture -qDEB_HOST_MULTIARCH)
    unit_dir=$(pkg-config --variable=systemdsystemunitdir systemd)
    expected=(/usr/sbin/tmemd /usr/sbin/tmemctl /usr/bin/tmem-cachefs /usr/bin/tmem-uswap
              "/usr/lib/$ma/libtmem.so.0" "/usr/lib/$ma/tmem/libtmem-uswap-preload.so"
              /usr/include/tmem/tmem.h "/usr/lib/$ma/pkgconfig/tmem.pc"
              "$unit_dir/tmemd.service" /etc/tmem/tmemd.conf
              /usr/share/man/man8/tmemd.8.gz /usr/share/man/man8/tmemctl.8.gz
              /usr/share/man/man5/tmemd.conf.5.gz /usr/share/man/man8/tmem-cachefs.8.gz
              /usr/share/man/man1/tmem-uswap.1.gz /usr/share/man/man3/libtmem.3.gz
              /usr/share/doc/tmem/copyright /usr/share/doc/tmem/changelog.Debian.gz)
    listed=$(dpkg -L tmem)
    for f in "${expected[@]}"; do
        grep -qx -- "$f" <<<"$listed" && [ -e "$f" ] ||
            { echo "deb: $f is not installed by the package (dpkg -L tmem)"; exit 1; }
    done
    ! grep -q tmem-demo <<<"$listed" || { echo "deb: the package installs tmem-demo"; exit 1; }
    dpkg-query -W -f='${Conffiles}' tmem | grep -q '^ /etc/tmem/tmemd.conf ' ||
        { echo "deb: /etc/tmem/tmemd.conf is not a conffile"; exit 1; }
    # an upgrade (here: the same package again) keeps the administrator's edit
    echo "# edited by test.sh" >>/etc/tmem/tmemd.conf
    dpkg -i "$deb" >"$tmp/dpkg.log" 2>&1 </dev/null || { cat "$tmp/dpkg.log"; exit 1; }
    grep -qx "# edited by test.sh" /etc/tmem/tmemd.conf ||
        { echo "deb: reinstalling the package lost the edit of /etc/tmem/tmemd.conf"; exit 1; }
    grep -qx "ExecStart=/usr/sbin/tmemd .*" "$unit_dir/tmemd.service" ||
        { echo "deb: tmemd.service does not run /usr/sbin/tmemd"; exit 1; }
    # nothing enabled or started by the package
    if [ -n "$(find /etc/systemd/system -name tmemd.service 2>/dev/null)" ]; then
        echo "deb: installing the package enabled tmemd.service"; exit 1
    fi
    # the installed programs: tmemd on sockets of its own, reading the
    # conffile; tmemctl against it; a program built through pkg-config
    [ "$(/usr/sbin/tmemd --version)" = "tmemd ${version%-*}" ] ||
        { echo "deb: tmemd --version says '$(/usr/sbin/tmemd --version)', not ${version%-*}"; exit 1; }
    /usr/sbin/tmemd --socket "$tmp/deb.sock" --control-socket "$tmp/deb-ctl.sock" \
        --max-memory 64M --set metrics.port=0 2>"$tmp/deb-tmemd.log" &
    deb_pid=$!
    for _ in $(seq 200); do [ -S "$tmp/deb-ctl.sock" ] && break; sleep 0.05; done
    /usr/sbin/tmemctl --socket "$tmp/deb-ctl.sock" stats >"$tmp/deb-stats" 2>&1 ||
        { echo "deb: tmemctl stats failed:"; cat "$tmp/deb-stats" "$tmp/deb-tmemd.log"; exit 1; }
    grep -qi "clients" "$tmp/deb-stats" ||
        { echo "deb: tmemctl stats printed:"; cat "$tmp/deb-stats"; exit 1; }
    kill -TERM "$deb_pid"
    wait "$deb_pid" || { echo "deb: the installed tmemd failed:"; cat "$tmp/deb-tmemd.log"; exit 1; }
    deb_pid=
    grep -q "configuration: /etc/tmem/tmemd.conf\$" "$tmp/deb-tmemd.log" ||
        { echo "deb: tmemd did not read /etc/tmem/tmemd.conf:"; cat "$tmp/deb-tmemd.log"; exit 1; }
    (unset PKG_CONFIG_PATH
     cc -std=c11 -Wall -Werror "$tmp/hello.c" -o "$tmp/hello-deb" $(pkg-config --cflags --libs tmem)
     "$tmp/hello-deb" "${version%-*}")
    [ "$(env -u TMEM_USWAP_PRELOAD /usr/bin/tmem-uswap --print-preload)" = \
      "/usr/lib/$ma/tmem/libtmem-uswap-preload.so" ] ||
        { echo "deb: tmem-uswap does not find the installed shim"; exit 1; }
    if command -v man >/dev/null; then
        for page in tmemd.8 tmemd.conf.5 tmemctl.8 tmem-cachefs.8 tmem-uswap.1 libtmem.3; do
            man -w "${page##*.}" "${page%.*}" >/dev/null ||
                { echo "deb: man does not find ${page%.*}(${page##*.})"; exit 1; }
        done
    fi
    # lintian: errors fail; warnings are listed
    lint_rc=0
    lintian --fail-on error "$deb" >"$tmp/lintian.log" 2>&1 || lint_rc=$?
    grep -v '^running with root privileges' "$tmp/lintian.log" || true
    [ "$lint_rc" = 0 ] || { echo "deb: lintian reports errors (status $lint_rc)"; exit 1; }
    # purge: nothing of the package is left
    dpkg --purge tmem >"$tmp/dpkg.log" 2>&1 || { cat "$tmp/dpkg.log"; exit 1; }
    ! dpkg -L tmem >/dev/null 2>&1 || { echo "deb: dpkg -L tmem still lists files"; exit 1; }
    for f in "${expected[@]}" /etc/tmem /usr/include/tmem "/usr/lib/$ma/tmem" /usr/share/doc/tmem; do
        [ ! -e "$f" ] || { echo "deb: $f is left after dpkg --purge tmem"; exit 1; }
    done
    echo "deb: $(basename "$deb") installs, runs (tmemd, tmemctl, pkg-config, tmem-uswap), passes lintian and purges cleanly"
fi
echo "all tests passed"
