#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# deps.sh - installs what tmem needs to build and test on Debian 12 (as root).
# Packages already present are left alone; nothing is fetched but Debian's.
set -euo pipefail
# build-essential brings gcc with its sanitizer runtimes (ASan, UBSan, TSan);
# libfuse3-dev and fuse3 the caching filesystem (frontends/cachefs), gnuplot
# the experiment's plots (bench/experiment).
pkgs=(build-essential cmake pkg-config liblz4-dev libzstd-dev libxxhash-dev libcmocka-dev
      libinih-dev libmicrohttpd-dev libsystemd-dev libjansson-dev
      libfuse3-dev fuse3 gnuplot-nox)
missing=()
for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" != 0 ]; then
        echo "deps.sh: missing packages: ${missing[*]}; run as root to install them" >&2
        exit 1
    fi
    echo "deps.sh: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
