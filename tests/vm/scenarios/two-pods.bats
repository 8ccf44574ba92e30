#!/usr/bin/env bats
# Two pods, two VFs at once, real traffic between them:
#   ADD VF 0 for pod-a and VF 1 for pod-b (each with its own MAC, both on
#   VLAN 100): both on vfio-pci, each with its own /dev/vfio/<group>;
#   a third ADD (pod-c) for VF 0 fails with code 101 naming pod-a and changes
#   nothing (drivers, vfinfo entries, ledger and device-info files
#   identical), nor does the DEL the runtime sends after it;
#   testpmd rxonly on VF 1 in pod-b, testpmd txonly on VF 0 in pod-a addressed
#   to VF 1's MAC (QEMU's igb switches VF-to-VF frames by destination MAC):
#   pod-a transmits, pod-b receives;
#   DEL both: both VFs back on igbvf with their vfinfo entries as before.
# Run:  tests/vm/run.sh tests/vm/scenarios/two-pods.bats [-f REGEX]

load helpers

setup_file() {
    untrace_helpers
    export MAC_A=02:00:00:00:00:0a MAC_B=02:00:00:00:00:0b
    cni_reset_node 2
    VF0=$(vf_bdf 0); VF1=$(vf_bdf 1)
    INFO0=$(vf_info 0); INFO1=$(vf_info 1)
    STATE0=$(device_state "$VF0"); STATE1=$(device_state "$VF1")
    CONF_A=$(netconf "$VF0" --arg mac "$MAC_A" '. + {vlan: 100, mac: $mac, spoofchk: "on", trust: "off"}')
    CONF_B=$(netconf "$VF1" --arg mac "$MAC_B" '. + {vlan: 100, mac: $mac, spoofchk: "on", trust: "off"}')
    CONF_C=$(netconf "$VF0" '. + {vlan: 200, mac: "02:00:00:00:00:0c"}')
    export VF0 VF1 INFO0 INFO1 STATE0 STATE1 CONF_A CONF_B CONF_C
    pod_create pod-a
    pod_create pod-b
}

teardown_file() {
    pod_delete pod-a
    pod_delete pod-b
    pod_delete pod-c
}

setup() { scenario_setup chain; }
teardown() { scenario_teardown; }

@test "ADD VF 0 for pod-a and VF 1 for pod-b: both on vfio-pci in distinct IOMMU groups, with their pods' MACs and VLAN 100" {
    cni_add pod-a net1 "$CONF_A"; assert_cni_ok "ADD $VF0 for pod-a"
    cni_add pod-b net1 "$CONF_B"; assert_cni_ok "ADD $VF1 for pod-b"
    G0=$(iommu_group "$VF0"); G1=$(iommu_group "$VF1")
    assert_equal "$(pci_driver "$VF0")" vfio-pci
    assert_equal "$(pci_driver "$VF1")" vfio-pci
    assert_not_equal "$G1" "$G0"
    assert [ -c "/dev/vfio/$G0" ]
    assert [ -c "/dev/vfio/$G1" ]
    assert_vf 0 --arg mac "$MAC_A" '.address == $mac and .vlan_list[0].vlan == 100'
    assert_vf 1 --arg mac "$MAC_B" '.address == $mac and .vlan_list[0].vlan == 100'
    assert_equal "$(ledger_files | wc -l)" 4     # 2 records + 2 claims
}

@test "a third ADD for VF 0 (pod-c) fails with 101 naming pod-a and changes nothing, nor does the DEL after it" {
    BEFORE=$(node_snapshot)
    pod_create pod-c
    cni_add pod-c net1 "$CONF_C"
    assert_cni_err 101 "ADD of $VF0 (held by pod-a) for pod-c" "pod-a"
    assert_snapshot_eq "$BEFORE" "$(node_snapshot)" "after the refused ADD for pod-c"
    # The runtime calls DEL after a failed ADD: it must not touch pod-a's VF.
    cni_del pod-c net1 "$CONF_C"
    assert_cni_ok "DEL for pod-c after its failed ADD"
    assert_snapshot_eq "$BEFORE" "$(node_snapshot)" "after DEL for pod-c"
    pod_delete pod-c
}

@test "testpmd txonly in pod-a (VF 0) to VF 1's MAC is received by testpmd rxonly in pod-b" {
    testpmd_start pod-b pod-b "$(devinfo_path pod-b)" --forward-mode=rxonly
    testpmd_wait_forwarding pod-b
    testpmd_start pod-a pod-a "$(devinfo_path pod-a)" --forward-mode=txonly --eth-peer="0,$MAC_B"
    testpmd_wait_stat pod-a TX-packets
    testpmd_wait_stat pod-b RX-packets
    sleep 1
    testpmd_stop pod-a
    sleep 1
    testpmd_stop pod-b
    RC_B=$TESTPMD_RC
    testpmd_summary pod-a
    testpmd_summary pod-b
    assert_equal "$RC_B" 0
    assert [ "$(testpmd_stat pod-a TX-packets)" -gt 0 ]
    assert [ "$(testpmd_stat pod-b RX-packets)" -gt 0 ]
}

@test "DEL both: each VF is back on igbvf with its vfinfo entry from before; no state" {
    cni_del pod-a net1 "$CONF_A"; assert_cni_ok "DEL pod-a"
    cni_del pod-b net1 "$CONF_B"; assert_cni_ok "DEL pod-b"
    assert_vf_restored "$VF0" 0 "$INFO0" "$STATE0" "pod-a DEL"
    assert_vf_restored "$VF1" 1 "$INFO1" "$STATE1" "pod-b DEL"
    assert_no_state
}
