#!/usr/bin/env bash
# Scenario 2 - two pods, two VFs at once, real traffic between them:
#   ADD VF 0 for pod-a and VF 1 for pod-b (each with its own MAC, both on
#   VLAN 100): both on vfio-pci, each with its own /dev/vfio/<group>;
#   a third ADD (pod-c) for VF 0 fails with code 101 naming pod-a and changes
#   nothing (drivers, ip link lines, ledger and device-info files identical);
#   testpmd rxonly on VF 1 in pod-b, testpmd txonly on VF 0 in pod-a addressed
#   to VF 1's MAC (QEMU's igb switches VF-to-VF frames by destination MAC):
#   pod-a transmits, pod-b receives;
#   DEL both: both VFs back on igbvf with their VF lines as before.
# Run:  tests/vm/run.sh tests/vm/scenarios/two-pods.sh
. "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
. "$(dirname "${BASH_SOURCE[0]}")/../cni.sh"
trap testpmd_cleanup EXIT

MAC_A=02:00:00:00:00:0a
MAC_B=02:00:00:00:00:0b
cni_reset_node 2
VF0=$(vf_bdf 0); VF1=$(vf_bdf 1)
LINE0=$(vf_line 0); LINE1=$(vf_line 1)
STATE0=$(device_state "$VF0"); STATE1=$(device_state "$VF1")

CONF_A=$(netconf "$VF0" --arg mac "$MAC_A" '. + {vlan: 100, mac: $mac, spoofchk: "on", trust: "off"}')
CONF_B=$(netconf "$VF1" --arg mac "$MAC_B" '. + {vlan: 100, mac: $mac, spoofchk: "on", trust: "off"}')
pod_create pod-a
pod_create pod-b
cni_add pod-a net1 "$CONF_A"; assert_cni_ok "ADD $VF0 for pod-a"
cni_add pod-b net1 "$CONF_B"; assert_cni_ok "ADD $VF1 for pod-b"
G0=$(iommu_group "$VF0"); G1=$(iommu_group "$VF1")
assert_eq vfio-pci "$(pci_driver "$VF0")" "VF0 driver"
assert_eq vfio-pci "$(pci_driver "$VF1")" "VF1 driver"
assert_ne "$G0" "$G1" "VF1 IOMMU group (distinct from VF0's)"
assert_ok "/dev/vfio/$G0 and /dev/vfio/$G1 exist" test -c "/dev/vfio/$G0" -a -c "/dev/vfio/$G1"
assert_match "$(vf_line 0)" "link/ether $MAC_A .*vlan 100" "VF 0 line"
assert_match "$(vf_line 1)" "link/ether $MAC_B .*vlan 100" "VF 1 line"
assert_eq 4 "$(ledger_files | wc -l)" "ledger files (2 records + 2 claims)"

# ---------------------------------------------- a third pod wants VF 0
BEFORE=$(node_snapshot)
pod_create pod-c
CONF_C=$(netconf "$VF0" '. + {vlan: 200, mac: "02:00:00:00:00:0c"}')
cni_add pod-c net1 "$CONF_C"
assert_cni_err 101 "ADD of $VF0 (held by pod-a) for pod-c" "pod-a"
assert_snapshot_eq "$BEFORE" "$(node_snapshot)" "after the refused ADD for pod-c"
# The runtime calls DEL after a failed ADD: it must not touch pod-a's VF.
cni_del pod-c net1 "$CONF_C"; assert_cni_ok "DEL for pod-c after its failed ADD"
assert_snapshot_eq "$BEFORE" "$(node_snapshot)" "after DEL for pod-c"
pod_delete pod-c

# ------------------------------------------------ traffic pod-a -> pod-b
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
assert_eq 0 "$RC_B" "testpmd pod-b exit status"
assert_gt "$(testpmd_stat pod-a TX-packets)" 0 "pod-a TX-packets (VF 0, to $MAC_B)"
assert_gt "$(testpmd_stat pod-b RX-packets)" 0 "pod-b RX-packets (VF 1, $MAC_B)"

# -------------------------------------------------------------------- DEL
cni_del pod-a net1 "$CONF_A"; assert_cni_ok "DEL pod-a"
cni_del pod-b net1 "$CONF_B"; assert_cni_ok "DEL pod-b"
assert_vf_restored "$VF0" 0 "$LINE0" "$STATE0" "pod-a DEL"
assert_vf_restored "$VF1" 1 "$LINE1" "$STATE1" "pod-b DEL"
assert_no_state
pod_delete pod-a
pod_delete pod-b
log "two-pods: all assertions passed"
