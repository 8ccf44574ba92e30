# shellcheck shell=bash
# Loaded first by every guest scenario (`load helpers` in scenarios/*.bats):
# bats-support and bats-assert, then the test bed's lib.sh and cni.sh, and the
# few things the scenarios share on top of them.
#
#   BATS_LIB_DIR  where bats-support/ and bats-assert/ are (Debian's
#                 bats-support and bats-assert packages: /usr/lib/bats)
#
# lib.sh's `fail` replaces bats-support's: with a message it ends the test at
# once (exit 1, also from a helper called in a condition or in $(...)); with
# no arguments it passes on the message bats-assert pipes into it and
# returns 1.  Both fail the test.
#
# Each test runs in a process of its own: a value a later test needs is
# exported by setup_file, or handed on with `share` (scenario_setup loads it).

BATS_LIB_DIR=${BATS_LIB_DIR:-/usr/lib/bats}
# Every test is a new process that loads all this again.  The libraries'
# load.bash run `dirname` once per file they source (15 pairs of processes,
# about 1.5 s per test under TCG), so their src/*.bash files are sourced here
# directly, as load.bash would.
for _f in "$BATS_LIB_DIR"/bats-support/src/{output,error,lang}.bash "$BATS_LIB_DIR"/bats-assert/src/*.bash; do
    [ -f "$_f" ] || { echo "helpers.bash: no $_f (bats-support and bats-assert in $BATS_LIB_DIR?)" >&2; exit 1; }
    # shellcheck disable=SC1090
    . "$_f"
done
unset _f
# shellcheck source=../lib.sh
. "$BATS_TEST_DIRNAME/../lib.sh"
# shellcheck source=../cni.sh
. "$BATS_TEST_DIRNAME/../cni.sh"

# share VAR...: hand these variables (arrays too) to the later tests of this
# file.
share() {
    local v
    for v in "$@"; do
        declare -p "$v" | sed -e 's/^declare -- /declare -g /' -e 's/^declare -\([a-zA-Z]\+\) /declare -g\1 /' \
            >> "$BATS_FILE_TMPDIR/shared.env"
    done
}

# untrace_helpers: at the start of setup_file (scenario_setup does it for the
# tests).  bats runs a DEBUG trap before every command of a test, helpers'
# commands included (set -T), to know the line of a failure; under TCG that
# costs more than the commands themselves.  With `set +T` from here on, only
# the commands of the test's own body are traced: a failure is reported at
# the test line that called the helper (lib.sh's `fail` says where inside).
untrace_helpers() { set +T; }

# scenario_setup [chain]: in setup().  Loads what earlier tests shared.  With
# `chain` (a file whose tests build on each other: ADD in one test, DEL in a
# later one), a test is skipped once an earlier test of the file failed, as
# the rest of a script stopped at its first failure.
scenario_setup() {
    untrace_helpers
    if [ "${1:-}" = chain ] && [ -s "$BATS_FILE_TMPDIR/chain-broken" ]; then
        skip "$(< "$BATS_FILE_TMPDIR/chain-broken")"
    fi
    # shellcheck disable=SC1091
    if [ -f "$BATS_FILE_TMPDIR/shared.env" ]; then . "$BATS_FILE_TMPDIR/shared.env"; fi
}

# scenario_teardown: in teardown().  If the test failed: shows the end of the
# log of every testpmd it left running and marks the chain broken.  Stops
# those testpmd instances.
scenario_teardown() {
    local n
    if [ -z "${BATS_TEST_COMPLETED:-}" ] && [ -z "${BATS_TEST_SKIPPED:-}" ]; then
        for n in "${TESTPMD_RUNNING[@]}"; do
            echo "---- testpmd $n: the end of $CNI_WORK/$n.log"
            { grep -ai 'link\|error\|fail\|warn' "$CNI_WORK/$n.log" | head -n 20; tail -n 12 "$CNI_WORK/$n.log"; } || true
        done
        echo "an earlier test of this file failed: $BATS_TEST_DESCRIPTION" > "$BATS_FILE_TMPDIR/chain-broken"
    fi
    testpmd_cleanup
}

# tap_note MSG...: a line in the TAP stream (a "# " comment), shown whether
# the test passes or not.
tap_note() { printf '# %s\n' "$*" >&3; }
