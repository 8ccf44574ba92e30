#!/usr/bin/env bash
# Every dpdk-cni scenario in ONE boot (boot and testpmd start-up are the slow
# parts), in sequence, each as its own bash process starting from a reset
# node (cni_reset_node: VFs on igbvf, default VF settings, no state):
#   attach, two-pods, crash, bad-input, check, netdevice, node, fwd, timing
# Prints "vm: N passed, M failed" and exits non-zero if any failed.
# Arguments: scenario names to run only those (default: all).
# vm: noacs-pf
# Run:  tests/vm/run.sh tests/vm/scenarios/all.sh [name...]
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
. "$(dirname "${BASH_SOURCE[0]}")/../cni.sh"

DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
SCENARIOS=(attach two-pods crash bad-input check netdevice node fwd timing)
[ $# -eq 0 ] || SCENARIOS=("$@")
PASSED=(); FAILED=(); TIMES=()
for s in "${SCENARIOS[@]}"; do
    [ -f "$DIR/$s.sh" ] || fail "no scenario $DIR/$s.sh"
    echo
    log "======================================== $s"
    t0=${EPOCHREALTIME/./}
    rc=0
    bash "$DIR/$s.sh" 2>&1 | tee "$CNI_WORK/$s.out" || rc=${PIPESTATUS[0]}
    secs=$(awk -v us=$(( ${EPOCHREALTIME/./} - t0 )) 'BEGIN { printf "%.1f", us / 1e6 }')
    TIMES+=("$s ${secs}s")
    # A scenario that exits 0 without a single passed assertion did not run.
    if [ "$rc" = 0 ] && ! grep -q '^ok: ' "$CNI_WORK/$s.out"; then
        log "$s exited 0 without one passed assertion"
        rc=1
    fi
    if [ "$rc" = 0 ]; then
        PASSED+=("$s"); log "======================================== $s: PASSED (${secs}s)"
    else
        FAILED+=("$s"); log "======================================== $s: FAILED with status $rc (${secs}s)"
    fi
done
echo
grep -h '^timing: ' "$CNI_WORK"/timing.out 2>/dev/null || true
echo "times: ${TIMES[*]}"
[ "${#FAILED[@]}" = 0 ] || echo "failed: ${FAILED[*]}"
echo "vm: ${#PASSED[@]} passed, ${#FAILED[@]} failed"
[ "${#FAILED[@]}" = 0 ]
