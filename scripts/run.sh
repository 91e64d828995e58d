#!/usr/bin/env bash
# run.sh - the main job: installs what is missing, builds, and runs the
# demonstration of the engine (until tmemd lands, the engine is the product).
# Extra arguments go to tmem-demo (try --help).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
cmake -S . -B build-release -DCMAKE_BUILD_TYPE=Release -DTMEM_BUILD_TESTS=OFF \
      -DTMEM_BUILD_BENCH=OFF >/dev/null
cmake --build build-release -j"$(nproc)" --target tmem-demo >/dev/null
exec ./build-release/tmem-demo "$@"
