#!/usr/bin/env bats
# Smoke test of the test bed itself (no dpdk-cni involved):
#   1. create 2 VFs on the igb PF;
#   2. VF admin settings through the PF (mac, vlan, spoofchk, trust) show up
#      in the PF's vfinfo, and reset to the defaults; igb refuses link-state;
#   3. rebind VF 0 to vfio-pci through sysfs, /dev/vfio/<group> appears;
#   4. dpdk-testpmd (txonly) on VF 0 in a pod sandbox transmits packets;
#   5. rebind VF 0 to igbvf, its netdev returns.
# Not part of all.sh.
# Run:  tests/vm/run.sh tests/vm/scenarios/smoke.bats
# Env:  SMOKE_TESTPMD_TIMEOUT  max seconds to wait for testpmd TX (default 120)

load helpers

setup_file() {
    untrace_helpers
    log "creating 2 VFs"
    create_vfs 2
    PF=$(pf_ifname); PF_BDF=$(pf_bdf); VF0=$(vf_bdf 0); VF1=$(vf_bdf 1)
    GROUP=$(iommu_group "$VF0")
    export PF PF_BDF VF0 VF1 GROUP
    log "PF $PF_BDF ($PF, driver $(pci_driver "$PF_BDF")), VF0 $VF0 ($(vf_ifname 0)), VF1 $VF1 ($(vf_ifname 1))"
    log "IOMMU groups: PF $(iommu_group "$PF_BDF"), VF0 $GROUP, VF1 $(iommu_group "$VF1")"
}

teardown_file() {
    pod_delete smoke-pod
}

setup() { scenario_setup chain; }
teardown() { scenario_teardown; }

@test "2 VFs: VF 0 on igbvf, VF 1 in another IOMMU group" {
    ip link show "$PF"
    assert_equal "$(pci_driver "$VF0")" igbvf
    assert_not_equal "$(iommu_group "$VF1")" "$(iommu_group "$VF0")"
}

@test "VF settings through the PF (mac, vlan, spoofchk, trust) show in VF 0's vfinfo entry and reset to the defaults; igb refuses link-state" {
    log "setting VF 0: mac 02:00:00:00:00:10 vlan 100 spoofchk off trust on"
    ip link set "$PF" vf 0 mac 02:00:00:00:00:10 vlan 100 spoofchk off trust on
    vf_info 0
    assert_vf 0 '.address == "02:00:00:00:00:10" and .vlan_list[0].vlan == 100 and .spoofchk == false and .trust == true'
    refute ip link set "$PF" vf 0 state enable
    log "resetting VF 0"
    ip link set "$PF" vf 0 mac 00:00:00:00:00:00 vlan 0 spoofchk on trust off
    vf_info 0
    assert_vf 0 '.address == "00:00:00:00:00:00" and (.vlan_list[0].vlan // 0) == 0 and .spoofchk == true and .trust == false'
}

@test "VF 0 rebinds to vfio-pci: /dev/vfio/<group>, no netdev" {
    log "rebinding $VF0 to vfio-pci (group $GROUP)"
    t0=${EPOCHREALTIME/./}
    bind_vfio "$VF0" > /dev/null
    log "bound in $(( (${EPOCHREALTIME/./} - t0) / 1000 )) ms"
    assert_equal "$(pci_driver "$VF0")" vfio-pci
    assert [ -c "/dev/vfio/$GROUP" ]
    assert_equal "$(vf_ifname 0)" ""
    ls -l /dev/vfio
}

@test "dpdk-testpmd txonly on VF 0 in a pod sandbox transmits" {
    ip netns add smoke-pod
    # 100 pages (200 MiB) are plenty for one testpmd with a small mbuf pool.
    [ "$(hugepages_free)" -ge 100 ] || fail "only $(hugepages_free) free hugepages"
    # shellcheck disable=SC2034  # testpmd_launch reads it
    TESTPMD_EAL=(-a "$VF0" --in-memory --huge-dir "$POD_HUGEDIR")
    TESTPMD_START_TIMEOUT=${SMOKE_TESTPMD_TIMEOUT:-120} \
        testpmd_launch smoke smoke-pod "$GROUP" "$POD_HUGEDIR" --forward-mode=txonly
    TESTPMD_START_TIMEOUT=${SMOKE_TESTPMD_TIMEOUT:-120} testpmd_wait_stat smoke TX-packets
    sleep 3
    testpmd_stop smoke
    testpmd_summary smoke
    assert_equal "$TESTPMD_RC" 0
    assert [ "$(testpmd_stat smoke TX-packets)" -gt 0 ]
    ip netns del smoke-pod
}

@test "VF 0 rebinds to igbvf: its netdev returns, /dev/vfio/<group> goes" {
    log "rebinding $VF0 to igbvf"
    t0=${EPOCHREALTIME/./}
    bind_kernel "$VF0" igbvf
    log "bound in $(( (${EPOCHREALTIME/./} - t0) / 1000 )) ms"
    assert_equal "$(pci_driver "$VF0")" igbvf
    assert_not_equal "$(vf_ifname 0)" ""
    refute [ -e "/dev/vfio/$GROUP" ]
    ip link show "$(vf_ifname 0)"
}
