#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# check-spdx.sh - every tracked file but the exempt ones carries the
# license line `SPDX-License-Identifier: MIT` (LICENSE) as its first line,
# or as its second after a `#!` line, in the file's own comment syntax
# (a test: ctest check_spdx).
#
# Exempt: files whose format has no comments or that are generated data:
# the fuzz corpus (fuzz/corpus/), the plots (docs/plots/, *.svg), JSON,
# Markdown prose (*.md) and LICENSE itself.  Any other file, whatever its
# kind, is checked, so a new kind of file has to say its license too.
# Lists every file without the line and exits 1; exits 0 when none lacks it.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

exempt() {
    case "$1" in
    fuzz/corpus/*|docs/plots/*|*.svg|*.png|*.json|*.md|LICENSE) return 0 ;;
    esac
    return 1
}

if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    list() { git ls-files -z; }
else                    # a tarball: every file but the build trees
    list() { find . -path ./.git -prune -o -path './build*' -prune -o -type f -print0 |
             sed -z 's|^\./||'; }
fi

tag='SPDX-License-Identifier: MIT'
bad=0 n=0
while IFS= read -r -d '' f; do
    [ -f "$f" ] || continue
    exempt "$f" && continue
    n=$((n + 1))
    first=$(sed -n 1p "$f")
    case "$first" in
    '#!'*) line=$(sed -n 2p "$f") ;;
    *)     line=$first ;;
    esac
    # the tag after a comment leader (/*, #, .\", //), then nothing but
    # the comment's end
    if ! printf '%s\n' "$line" |
         grep -Eq '^(/\*|#|\.\\"|//) SPDX-License-Identifier: MIT( \*/)?$'; then
        echo "check-spdx: $f: no '$tag' line at its top" >&2
        bad=$((bad + 1))
    fi
done < <(list)
if [ "$bad" = 0 ]; then
    echo "check-spdx: all $n files carry '$tag'"
    exit 0
fi
echo "check-spdx: $bad of $n files lack it" >&2
exit 1
