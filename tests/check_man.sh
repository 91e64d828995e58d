#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# check_man.sh - the man pages (docs/man/) against what they describe (a
# test: ctest check_man):
#   - every long option in PROGRAM --help (and every -o KEY=... form) is in
#     the OPTIONS section of PROGRAM's page, and every long option in that
#     section is in --help;
#   - tmemctl: every command that --help lists is an entry of COMMANDS, and
#     every long option of `tmemctl help COMMAND` is in OPTIONS or COMMANDS
#     (and the reverse, over all the commands);
#   - tmemd.conf(5): every key of the configuration parser's table
#     (src/daemon/config.c) and of the sample dist/tmemd.conf is an entry
#     under its [section], and every entry is a key of the table;
#   - every page's .TH line names the project's version;
#   - if man(1) is here, no page makes groff or man warn.
# Usage: check_man.sh SOURCE_DIR PROGRAM=PATH...   (tmemd=build/tmemd ...)
# Prints each problem on one line and exits 1 if there is any, 0 if none.
set -euo pipefail
src=$1
shift
man_dir="$src/docs/man"
bad=0
fail() { echo "check_man: $*" >&2; bad=$((bad + 1)); }

# The lines of one .SH section of a page (its name given as a regex), with
# roff's \- turned into -.
section() {     # PAGE NAME
    awk -v want="$2" '/^\.SH/ { on = ($0 ~ "^\\.SH +\"?(" want ")\"?$"); next } on' "$1" |
        sed 's/\\-/-/g'
}
long_opts() { grep -oE -- '--[a-z][a-z0-9]*(-[a-z0-9]+)*' | sort -u || true; }
# "-o KEY=..." forms in a --help text: the keys
o_keys() { grep -oE -- '(^|[^a-z])-o +[a-z][a-z0-9_]*=' | sed -E 's/.*-o +//; s/=$//' |
           sort -u || true; }

page_of() {     # PROGRAM -> its page in docs/man
    local p
    for p in "$man_dir/$1".[1-8]; do
        [ -f "$p" ] && { echo "$p"; return 0; }
    done
    return 1
}

check_program() {   # NAME PATH
    local name=$1 exe=$2 page help opts sect sect_opts o
    page=$(page_of "$name") || { fail "$name: no man page in docs/man"; return; }
    help=$("$exe" --help 2>&1) || { fail "$name --help failed"; return; }
    opts=$(section "$page" OPTIONS)
    [ -n "$opts" ] || { fail "$(basename "$page"): no OPTIONS section"; return; }
    sect=$opts
    if [ "$name" = tmemctl ]; then
        local cmds cmd chelp commands
        commands=$(section "$page" COMMANDS)
        sect+=$'\n'$commands
        # the commands --help lists: "Commands:" up to the next blank line
        cmds=$(awk '/^Commands:/ { on = 1; next } on && /^$/ { exit } on { print $1 }' <<<"$help")
        [ -n "$cmds" ] || fail "tmemctl --help lists no commands"
        sect_opts=$(long_opts <<<"$sect")
        for cmd in $cmds; do
            [ "$cmd" = help ] && continue
            grep -qE "^\.B $cmd( |$)" <<<"$commands" ||
                fail "tmemctl.8: command '$cmd' (tmemctl --help) has no entry in COMMANDS"
            chelp=$("$exe" help "$cmd" 2>&1) || { fail "tmemctl help $cmd failed"; continue; }
            for o in $(long_opts <<<"$chelp"); do
                grep -qx -- "$o" <<<"$sect_opts" ||
                    fail "tmemctl.8: $o (tmemctl help $cmd) is not in OPTIONS or COMMANDS"
            done
            help+=$'\n'$chelp
        done
    fi
    sect_opts=$(long_opts <<<"$sect")
    local help_opts
    help_opts=$(long_opts <<<"$help")
    for o in $help_opts; do
        grep -qx -- "$o" <<<"$sect_opts" ||
            fail "$(basename "$page"): $o ($name --help) is not in the page's OPTIONS"
    done
    for o in $(o_keys <<<"$help"); do
        grep -qw -- "$o" <<<"$opts" ||
            fail "$(basename "$page"): -o $o= ($name --help) is not in the page's OPTIONS"
    done
    for o in $sect_opts; do
        grep -qx -- "$o" <<<"$help_opts" ||
            fail "$(basename "$page"): $o is in the page but not in $name --help"
    done
}

for arg in "$@"; do
    check_program "${arg%%=*}" "${arg#*=}"
done

# tmemd.conf(5): section.key of the parser's table, of the sample, of the page
conf_page="$man_dir/tmemd.conf.5"
table=$(grep -oE '^ *\{ *"[a-z]+", *"[a-z_]+",' "$src/src/daemon/config.c" |
        sed -E 's/^ *\{ *"([a-z]+)", *"([a-z_]+)",/\1.\2/' | sort -u)
sample=$(awk '/^\[[a-z]+\]/ { s = substr($1, 2, length($1) - 2); next }
              /^[a-z_]+ *=/ { sub(/ *=.*/, ""); print s "." $0 }' "$src/dist/tmemd.conf" | sort -u)
documented=$(awk '/^\.SS/ { s = $0; gsub(/^\.SS +"?\\?\[|\\?\]"?$/, "", s); next }
                  /^\.TP/ { tp = 1; next }
                  tp && /^\.B / { print s "." $2 } { tp = 0 }' "$conf_page" | sort -u)
[ -n "$table" ] || fail "no keys found in src/daemon/config.c's table"
[ -n "$sample" ] || fail "no keys found in dist/tmemd.conf"
for k in $(printf '%s\n' $table $sample | sort -u); do
    grep -qx -- "$k" <<<"$documented" ||
        fail "tmemd.conf.5: key $k (src/daemon/config.c, dist/tmemd.conf) is not documented under [${k%%.*}]"
done
for k in $sample; do
    grep -qx -- "$k" <<<"$table" ||
        fail "dist/tmemd.conf: key $k is not in src/daemon/config.c's table"
done
for k in $documented; do
    grep -qx -- "$k" <<<"$table" ||
        fail "tmemd.conf.5: documents $k, which src/daemon/config.c does not know"
done

# every page's title line names this version (project() in CMakeLists.txt)
version=$(sed -nE 's/^project\(tmem VERSION ([0-9.]+).*/\1/p' "$src/CMakeLists.txt")
for p in "$man_dir"/*.[1-8]; do
    grep -q "^\.TH .*\"tmem $version\"" "$p" ||
        fail "$(basename "$p"): its .TH line does not say \"tmem $version\" (CMakeLists.txt's version)"
done

# groff's and man's own complaints (as lintian sees them)
if command -v man >/dev/null && command -v groff >/dev/null; then
    for p in "$man_dir"/*.[1-8]; do
        said=$(LC_ALL=C.UTF-8 MANROFFSEQ='' MANWIDTH=80 \
               man --warnings -E UTF-8 -l -Tutf8 -Z "$p" 2>&1 >/dev/null) || true
        [ -z "$said" ] || fail "$(basename "$p"): man --warnings: $said"
    done
fi

if [ "$bad" != 0 ]; then
    echo "check_man: $bad problem(s)" >&2
    exit 1
fi
echo "check_man: the man pages agree with --help and the configuration keys"
