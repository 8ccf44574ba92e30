#!/usr/bin/env bash
# Smoke test of the test bed itself (no dpdk-cni involved):
#   1. create 2 VFs on the igb PF;
#   2. VF admin settings through the PF (mac, vlan, spoofchk, trust) show up in
#      `ip link show`, and reset to the defaults; igb refuses link-state;
#   3. rebind VF 0 to vfio-pci through sysfs, /dev/vfio/<group> appears;
#   4. dpdk-testpmd (txonly) on VF 0 in a pod sandbox transmits packets;
#   5. rebind VF 0 to igbvf, its netdev returns.
# Run:  tests/vm/run.sh tests/vm/scenarios/smoke.sh
# Env:  SMOKE_TESTPMD_TIMEOUT  max seconds to wait for testpmd TX (default 120)
. "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"

NETNS=smoke-pod
HUGEDIR=/pod/hugepages            # where the "container" sees its hugetlbfs
WORK=$(mktemp -d /tmp/smoke.XXXXXX)

# ---------------------------------------------------------------- 1. VFs
log "creating 2 VFs"
create_vfs 2
PF=$(pf_ifname)
PF_BDF=$(pf_bdf)
VF0=$(vf_bdf 0)
VF1=$(vf_bdf 1)
log "PF $PF_BDF ($PF, driver $(pci_driver "$PF_BDF")), VF0 $VF0 ($(vf_ifname 0)), VF1 $VF1 ($(vf_ifname 1))"
log "IOMMU groups: PF $(iommu_group "$PF_BDF"), VF0 $(iommu_group "$VF0"), VF1 $(iommu_group "$VF1")"
assert_eq igbvf "$(pci_driver "$VF0")" "VF0 driver"
assert_ne "$(iommu_group "$VF0")" "$(iommu_group "$VF1")" "VF1 IOMMU group (distinct from VF0's)"
ip link show "$PF"

# --------------------------------------------------- 2. VF admin settings
vf0_line() { ip link show "$PF" | grep -E '^[[:space:]]+vf 0 '; }

log "setting VF 0: mac 02:00:00:00:00:10 vlan 100 spoofchk off trust on"
ip link set "$PF" vf 0 mac 02:00:00:00:00:10 vlan 100 spoofchk off trust on
line=$(vf0_line)
echo "$line"
assert_match "$line" 'link/ether 02:00:00:00:00:10' "VF 0 MAC"
assert_match "$line" 'vlan 100' "VF 0 VLAN"
assert_match "$line" 'spoof checking off' "VF 0 spoofchk"
assert_match "$line" 'trust on' "VF 0 trust"

assert_fails "igb refuses 'state enable'" ip link set "$PF" vf 0 state enable

log "resetting VF 0"
ip link set "$PF" vf 0 mac 00:00:00:00:00:00 vlan 0 spoofchk on trust off
line=$(vf0_line)
echo "$line"
assert_match "$line" 'link/ether 00:00:00:00:00:00' "VF 0 MAC after reset"
if [[ "$line" =~ vlan\ [1-9] ]]; then fail "VF 0 VLAN still set after reset: $line"; fi
assert_match "$line" 'spoof checking on' "VF 0 spoofchk after reset"
assert_match "$line" 'trust off' "VF 0 trust after reset"

# ------------------------------------------------------ 3. bind to vfio-pci
GROUP=$(iommu_group "$VF0")
log "rebinding $VF0 to vfio-pci (group $GROUP)"
t0=${EPOCHREALTIME/./}
bind_vfio "$VF0" > /dev/null
log "bound in $(( (${EPOCHREALTIME/./} - t0) / 1000 )) ms"
assert_eq vfio-pci "$(pci_driver "$VF0")" "VF0 driver"
assert_ok "/dev/vfio/$GROUP is a char device" test -c "/dev/vfio/$GROUP"
assert_eq "" "$(vf_ifname 0)" "VF0 netdev while on vfio-pci"
ls -l /dev/vfio

# ----------------------------------------------- 4. testpmd in a pod sandbox
ip netns add "$NETNS"
# 100 pages (200 MiB) are plenty for one testpmd with a small mbuf pool.
[ "$(hugepages_free)" -ge 100 ] || fail "only $(hugepages_free) free hugepages"

# Largest "TX-packets: N" testpmd printed so far (periodic and final stats).
tx_packets() {
    grep -ao 'TX-packets: *[0-9]*' "$WORK/testpmd.log" 2>/dev/null |
        awk '{ if ($2 > m) m = $2 } END { print m + 0 }'
}
tx_positive() { [ "$(tx_packets)" -gt 0 ]; }

log "starting dpdk-testpmd on $VF0 in pod sandbox (netns $NETNS, /dev/vfio/{vfio,$GROUP}, hugetlbfs $HUGEDIR)"
t0=${EPOCHREALTIME/./}
POD_APP_PIDFILE=$WORK/testpmd.pid POD_APP_TIMEOUT=$(( ${SMOKE_TESTPMD_TIMEOUT:-120} + 30 )) \
    run_pod_app "$NETNS" "$GROUP" "$HUGEDIR" -- \
    dpdk-testpmd -l 0-1 -n 1 -a "$VF0" --in-memory --huge-dir "$HUGEDIR" \
        --log-level=lib.eal:notice \
        -- --forward-mode=txonly --stats-period 1 --nb-cores=1 \
        --total-num-mbufs=2048 --rxd=256 --txd=256 \
    > "$WORK/testpmd.log" 2>&1 &
TESTPMD_JOB=$!

# Stream testpmd's output while waiting for the first transmitted packets.
tail -n +1 -f "$WORK/testpmd.log" --pid "$TESTPMD_JOB" &
TAIL_JOB=$!
testpmd_alive_or_tx() { tx_positive || ! kill -0 "$TESTPMD_JOB" 2>/dev/null; }
wait_for "${SMOKE_TESTPMD_TIMEOUT:-120}" "testpmd to transmit" testpmd_alive_or_tx
log "first TX after $(( (${EPOCHREALTIME/./} - t0) / 1000 )) ms; letting it run 3 s"
sleep 3
pod_app_stop "$WORK/testpmd.pid" INT 20 || true
rc=0
wait "$TESTPMD_JOB" || rc=$?
sleep 0.2
kill "$TAIL_JOB" 2>/dev/null || true
wait "$TAIL_JOB" 2>/dev/null || true
log "testpmd exited with status $rc"
assert_eq 0 "$rc" "testpmd exit status"
assert_gt "$(tx_packets)" 0 "testpmd TX-packets on $VF0"
ip netns del "$NETNS"

# --------------------------------------------------------- 5. back to igbvf
log "rebinding $VF0 to igbvf"
t0=${EPOCHREALTIME/./}
bind_kernel "$VF0" igbvf
log "bound in $(( (${EPOCHREALTIME/./} - t0) / 1000 )) ms"
assert_eq igbvf "$(pci_driver "$VF0")" "VF0 driver"
assert_ne "" "$(vf_ifname 0)" "VF0 netdev"
assert_fails "/dev/vfio/$GROUP removed: test -e" test -e "/dev/vfio/$GROUP"
ip link show "$(vf_ifname 0)"

log "smoke: all assertions passed"
