#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# check-layers.sh - each part of tmem includes only what it may (a test:
# ctest check_layers; the rules are in CONTRIBUTING.md).
#
#   src/core      the engine: its own headers and the public include/ only
#   src/proto     the wire protocol: include/ only
#   src/client    the client library: include/, src/client, src/proto
#   src/util      helpers the programs share (size.h): itself only
#   src/daemon    tmemd: include/, src/daemon, src/proto, src/util
#   src/ctl       tmemctl: include/, src/ctl, src/proto, src/util
#   frontends/*   include/, their own directory, src/util
#
# A quoted include is resolved as the compiler would (the including file's
# directory, then src/, then include/); an include that resolves into a
# part the file may not use fails the check, and so does one that resolves
# nowhere.  System includes (<...>) are not checked.  Exit 0 or 1.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

allowed() {     # part of the including file -> the parts it may include
    case "$1" in
    src/core)    echo "include src/core" ;;
    src/proto)   echo "include src/proto" ;;
    src/client)  echo "include src/client src/proto" ;;
    src/util)    echo "src/util" ;;
    src/daemon)  echo "include src/daemon src/proto src/util" ;;
    src/ctl)     echo "include src/ctl src/proto src/util" ;;
    frontends/*) echo "include $1 src/util" ;;
    esac
}

part_of() {     # a path -> its part
    case "$1" in
    include/*)     echo include ;;
    src/*)         echo "$1" | cut -d/ -f1-2 ;;
    frontends/*)   echo "$1" | cut -d/ -f1-2 ;;
    *)             echo other ;;
    esac
}

bad=0
files=$(git ls-files 'src/*.c' 'src/*.h' 'frontends/*.c' 'frontends/*.h' 2>/dev/null ||
        find src frontends -name '*.[ch]')
for f in $files; do
    me=$(part_of "$f")
    ok=$(allowed "$me")
    [ -n "$ok" ] || continue
    dir=$(dirname "$f")
    while IFS= read -r inc; do
        target=""
        for base in "$dir" src include; do
            if [ -f "$base/$inc" ]; then
                target=$(realpath --relative-to="$root" "$base/$inc")
                break
            fi
        done
        if [ -z "$target" ]; then
            echo "check-layers: $f includes \"$inc\", which resolves nowhere" >&2
            bad=1
            continue
        fi
        tp=$(part_of "$target")
        case " $ok " in
        *" $tp "*) ;;
        *) echo "check-layers: $f ($me) includes $target ($tp): not allowed" >&2
           bad=1 ;;
        esac
    done < <(sed -n 's/^[[:space:]]*#[[:space:]]*include[[:space:]]*"\([^"]*\)".*/\1/p' "$f")
done
if [ "$bad" = 0 ]; then
    echo "check-layers: every part includes only what it may"
fi
exit "$bad"
