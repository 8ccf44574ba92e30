#!/usr/bin/env bash
# Runs bats files in the guest, TAP on the console:
#
#   tests/vm/run.sh tests/vm/run-bats.sh tests/vm/scenarios/announce.bats [more.bats...]
#
# bats, bats-support and bats-assert are Debian packages on the host
# (scripts/install-deps.sh), seen in the guest through the shared root.
set -euo pipefail
[ $# -gt 0 ] || { echo "usage: $0 FILE.bats..." >&2; exit 2; }
# The guest's devtmpfs has no /dev/fd; bats uses process substitution.
[ -e /dev/fd ] || ln -s /proc/self/fd /dev/fd
command -v bats >/dev/null || { echo "bats is missing on the host (make deps installs it)" >&2; exit 2; }
exec bats --tap "$@"
