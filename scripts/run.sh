#!/usr/bin/env bash
# run.sh - the main job: installs what is missing, builds, starts tmemd on
# its embedded default configuration (sockets in a temporary directory),
# and shows what it does: tenant processes put and get real file pages,
# one is killed mid-stream, tmemctl lists clients and figures, the metrics
# endpoint answers, an administrator takes memory back; then tmemd stops
# (its exit status says whether its engine passed its self-check).
# Extra arguments go to tmem-client-demo (try --help).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
cmake -S . -B build-run -DCMAKE_BUILD_TYPE=Release -DTMEM_BUILD_TESTS=OFF \
      -DTMEM_BUILD_BENCH=OFF >/dev/null
cmake --build build-run -j"$(nproc)" --target tmemd tmemctl tmem-client-demo >/dev/null
bin=build-run
dir=$(mktemp -d /tmp/tmemd-run.XXXXXX)
sock=$dir/tmemd.sock ctl=$dir/control.sock
cleanup() { [ -n "${pid:-}" ] && kill "$pid" 2>/dev/null; rm -rf "$dir"; }
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
