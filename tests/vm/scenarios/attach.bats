#!/usr/bin/env bats
# vfio-pci attachment of VF 0 to a pod, end to end:
#   before: VF 0's vfinfo entry, driver (igbvf) and netdev;
#   ADD (vlan 100, mac, spoofchk off, trust on) -> the PF reports the
#   settings, the VF is on vfio-pci with /dev/vfio/<group>, the device-info
#   file says so;
#   dpdk-testpmd (txonly) in the pod, with EAL arguments built from the
#   device-info file, starts on the VF with the MAC ADD set and transmits;
#   DEL -> the VF is back on igbvf with its netdev, its vfinfo entry equals
#   the one from before ADD, its MAC is not left pinned by the PF (VF 0
#   starts with a MAC its driver chose), no ledger or device-info file
#   remains; a second DEL succeeds; without a mac in the netconf, the
#   netdev gets back the MAC its driver had chosen.
# Run:  tests/vm/run.sh tests/vm/scenarios/attach.bats [-f REGEX]

load helpers

setup_file() {
    untrace_helpers
    export POD=pod-a MAC=02:00:00:00:00:10
    cni_reset_node 2
    PF=$(pf_ifname); PF_BDF=$(pf_bdf); VF0=$(vf_bdf 0)
    # VF 0's MAC is its driver's choice (no administrative pin): the all-zero
    # admin MAC clears a pin, and igbvf picks and registers a MAC when it
    # probes.
    ip link set "$PF" vf 0 mac 00:00:00:00:00:00
    bind_kernel "$VF0"
    INFO_BEFORE=$(vf_info 0)
    STATE_BEFORE=$(device_state "$VF0")
    NETDEV_BEFORE=$(vf_ifname 0)
    GROUP=$(iommu_group "$VF0")
    CONF=$(netconf "$VF0" --arg mac "$MAC" '. + {vlan: 100, mac: $mac, spoofchk: "off", trust: "on"}')
    export PF PF_BDF VF0 INFO_BEFORE STATE_BEFORE NETDEV_BEFORE GROUP CONF
    log "before ADD: $STATE_BEFORE; group $GROUP; $INFO_BEFORE"
    pod_create "$POD"
}

teardown_file() {
    pod_delete "$POD"
}

setup() { scenario_setup chain; }
teardown() { scenario_teardown; }

@test "ADD: the result names VF 0; the PF reports its MAC, VLAN 100, spoofchk off, trust on; VF 0 is on vfio-pci" {
    # before ADD
    assert_equal "$(pci_driver "$VF0")" "$VF_DRIVER"
    assert_not_equal "$NETDEV_BEFORE" ""

    log "ADD $POD: $CONF"
    cni_add "$POD" net1 "$CONF"
    assert_cni_ok "ADD $VF0 for $POD"
    jq . <<< "$CNI_OUT"
    assert_equal "$(jq -r '.interfaces[0] | "\(.pciID) \(.mac) \(.sandbox)"' <<< "$CNI_OUT")" "$VF0 $MAC /var/run/netns/$POD"
    assert_vf 0 --arg mac "$MAC" \
        '.address == $mac and .vlan_list[0].vlan == 100 and .spoofchk == false and .trust == true'
    assert_equal "$(pci_driver "$VF0")" vfio-pci
    assert [ -c "/dev/vfio/$GROUP" ]
    assert_equal "$(vf_ifname 0)" ""
}

@test "ADD: the device-info file describes VF 0; the ledger holds it" {
    INFO=$(devinfo_path "$POD")
    assert [ -s "$INFO" ]
    jq . "$INFO"
    # pci-address, pf-pci-address, iommu-group, vfio-device, numa-node (sysfs), original-driver
    assert_equal "$(jq -r '.pci | [."pci-address", ."pf-pci-address", ."iommu-group", ."vfio-device", ."numa-node", ."original-driver"] | map(tostring) | join(" ")' "$INFO")" \
        "$VF0 $PF_BDF $GROUP /dev/vfio/$GROUP $(< "/sys/bus/pci/devices/$VF0/numa_node") $VF_DRIVER"
    assert_not_equal "$(ledger_files)" ""
}

@test "testpmd in the pod transmits on VF 0 with the MAC ADD set" {
    testpmd_start "$POD" "$POD" "$(devinfo_path "$POD")" --forward-mode=txonly
    testpmd_wait_stat "$POD" TX-packets
    sleep 2
    testpmd_stop "$POD"
    testpmd_summary "$POD"
    assert_equal "$TESTPMD_RC" 0
    assert [ "$(testpmd_stat "$POD" TX-packets)" -gt 0 ]
    assert_regex "$(grep -a 'Port 0: ' "$CNI_WORK/$POD.log" | head -n1)" "Port 0: ${MAC^^}"
}

@test "DEL: VF 0 is back on igbvf with its netdev name, its vfinfo entry from before ADD and an unpinned MAC; no state" {
    cni_del "$POD" net1 "$CONF"
    assert_cni_ok "DEL $VF0 for $POD"
    assert_vf_restored "$VF0" 0 "$INFO_BEFORE" "$STATE_BEFORE" "after DEL"
    assert_equal "$(vf_ifname 0)" "$NETDEV_BEFORE"
    # VF 0's MAC is its driver's choice again (vf_mac_pinned fails the test
    # by itself if the PF never answers).
    if vf_mac_pinned 0; then
        fail "VF 0's MAC is pinned by the PF after DEL; its driver chose it before ADD"
    fi
    refute [ -e "/dev/vfio/$GROUP" ]
    assert_no_state
    log "after DEL: $(vf_info 0)"
}

@test "a second DEL succeeds and leaves no state" {
    cni_del "$POD" net1 "$CONF"
    assert_cni_ok "second DEL (nothing left to release)"
    assert_no_state
}

@test "without a mac in the netconf, DEL gives VF 0's netdev back the MAC its driver had chosen" {
    # igbvf chooses a new MAC whenever it probes a VF the PF has no MAC for,
    # as after vfio-pci's reset: the plugin records the netdev's MAC.
    ip link set "$PF" vf 0 mac 00:00:00:00:00:00
    bind_kernel "$VF0"
    local ifname before conf
    ifname=$(vf_ifname 0)
    before=$(ip -j link show "$ifname" | jq -r '.[0].address')
    conf=$(netconf "$VF0" '.')
    cni_add "$POD" net2 "$conf"
    assert_cni_ok "ADD $VF0 without a mac"
    assert_equal "$(pci_driver "$VF0")" vfio-pci
    cni_del "$POD" net2 "$conf"
    assert_cni_ok "DEL $VF0"
    assert_equal "$(vf_ifname 0)" "$ifname"
    assert_equal "$(ip -j link show "$ifname" | jq -r '.[0].address')" "$before"
    assert_no_state
}
