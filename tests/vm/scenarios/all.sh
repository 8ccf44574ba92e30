#!/usr/bin/env bash
# The guest scenarios in ONE boot (boot and testpmd start-up are the slow
# parts), run by bats: these files, in this order, each starting from a reset
# node (its setup_file calls cni_reset_node):
#   attach two-pods crash bad-input check netdevice dropin node fwd timing announce
# (noiommu.bats is not among them: it needs a boot of its own, with no IOMMU;
# `make vm-test` runs it in a second boot: tests/vm/run.sh
# tests/vm/scenarios/noiommu.bats)
#
#   all.sh [BATS_OPTION...] [NAME|FILE.bats...]
#
# NAME is a file of this directory without .bats (attach, crash, ...);
# default: all of the above.  BATS_OPTIONs go to bats, e.g. -f REGEX to run
# only the tests whose names match.  Output: bats' TAP stream (with each
# test's time), then bats' summary line ("# bats: N tests, M failures ...",
# from its pretty report) with the wall time.  Exit status: bats' own.
# Before anything runs, every file is counted with the same filter: a file
# that would run no test fails the run (exit 1), so nothing passes silently.
# run.sh runs a single .bats file through this script too.
# A file with a line "# vm: noiommu" runs only in a guest booted without an
# IOMMU (run.sh gives it one when it is the file run.sh was handed), every
# other file only in a guest with one: a file in the wrong boot fails the
# run at once, saying how to run it.
# vm: noacs-pf
# Run:  tests/vm/run.sh tests/vm/scenarios/all.sh [BATS_OPTION...] [NAME...]
set -euo pipefail

DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ORDER=(attach two-pods crash bad-input check netdevice dropin node fwd timing announce)

usage() { echo "usage: $0 [BATS_OPTION...] [NAME|FILE.bats...]" >&2; exit 2; }

OPTS=()       # for bats
FILTER=()     # the options that select tests, for bats --count too
FILES=()
while [ $# -gt 0 ]; do
    case "$1" in
        -f|--filter)
            [ $# -ge 2 ] || usage
            OPTS+=("$1" "$2"); FILTER+=("$1" "$2"); shift 2 ;;
        -F|--formatter|--report-formatter|-o|--output|-j|--jobs|--filter-status|--code-quote-style|--gather-test-outputs-in)
            [ $# -ge 2 ] || usage
            OPTS+=("$1" "$2"); shift 2 ;;
        -*) OPTS+=("$1"); shift ;;
        *.bats)
            [ -f "$1" ] || { echo "all.sh: no such file $1" >&2; exit 2; }
            FILES+=("$1"); shift ;;
        *)
            [ -f "$DIR/$1.bats" ] || { echo "all.sh: no scenario $DIR/$1.bats" >&2; exit 2; }
            FILES+=("$DIR/$1.bats"); shift ;;
    esac
done
if [ ${#FILES[@]} -eq 0 ]; then
    for n in "${ORDER[@]}"; do FILES+=("$DIR/$n.bats"); done
fi
command -v bats > /dev/null || { echo "all.sh: bats is missing (scripts/install-deps.sh installs it)" >&2; exit 1; }

# The boot: with an IOMMU (QEMU's intel-iommu registers one) or without.
iommu=no
if compgen -G '/sys/class/iommu/*' > /dev/null; then iommu=yes; fi
for f in "${FILES[@]}"; do
    if grep -qx '# vm: noiommu' "$f"; then
        [ "$iommu" = no ] || {
            echo "all.sh: $f needs a guest without an IOMMU, and this one has one: run it alone, tests/vm/run.sh $f" >&2
            exit 2
        }
    elif [ "$iommu" = no ]; then
        echo "all.sh: $f needs the IOMMU, and this guest was booted without one (VM_NOIOMMU=1 or a \"# vm: noiommu\" file)" >&2
        exit 2
    fi
done

for f in "${FILES[@]}"; do
    n=$(bats --count "${FILTER[@]}" "$f") || { echo "all.sh: bats cannot read $f" >&2; exit 1; }
    if ! [ "$n" -gt 0 ] 2>/dev/null; then
        echo "all.sh: $f runs no test${FILTER[*]:+ matching ${FILTER[*]}} - failing the run" >&2
        exit 1
    fi
done

REPORT=$(mktemp -d /tmp/bats-report.XXXXXX)
rc=0
bats --tap --timing --report-formatter pretty --output "$REPORT" "${OPTS[@]}" "${FILES[@]}" || rc=$?
# bats' own summary line, from its pretty report (colours stripped).
summary=$(sed 's/\x1b\[[0-9;]*[A-Za-z]//g' "$REPORT/report.log" 2>/dev/null | grep -E '^[0-9]+ tests?, ' | tail -n1 || true)
echo "# bats: ${summary:-no summary (see above)} in ${SECONDS} s; exit status $rc"
rm -rf "$REPORT"
exit "$rc"
