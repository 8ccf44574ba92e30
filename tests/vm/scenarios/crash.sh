#!/usr/bin/env bash
# Scenario 3 - the plugin killed in the middle of ADD (SIGKILL at failpoint
# "unbound": VF settings applied, driver_override set, the VF unbound from
# igbvf, not yet bound to vfio-pci):
#   a) the VF really has no driver then; DEL restores it fully (igbvf, its
#      netdev, no driver_override, VF line as before, no state left);
#   b) the same crash, then GC with "cni.dev/valid-attachments": [] restores
#      it fully as well.
# Run:  tests/vm/run.sh tests/vm/scenarios/crash.sh
. "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
. "$(dirname "${BASH_SOURCE[0]}")/../cni.sh"

cni_reset_node 2
VF0=$(vf_bdf 0)
LINE_BEFORE=$(vf_line 0)
STATE_BEFORE=$(device_state "$VF0")
SNAP_BEFORE=$(node_snapshot)
CONF=$(netconf "$VF0" '. + {vlan: 100, mac: "02:00:00:00:00:10", spoofchk: "off", trust: "on"}')

# crash_add POD: ADD killed at "unbound", and the half-done state checked.
crash_add() {
    local pod=$1
    pod_create "$pod"
    log "ADD for $pod with DPDK_CNI_FAILPOINT=unbound"
    cni_add "$pod" net1 "$CONF" DPDK_CNI_FAILPOINT=unbound
    assert_eq 137 "$CNI_RC" "ADD exit status (128 + SIGKILL)"
    assert_eq "" "$CNI_OUT" "ADD stdout (killed before any result)"
    assert_eq "" "$(pci_driver "$VF0")" "VF0 driver right after the crash (unbound)"
    assert_fails "VF0 has no driver link" test -e "/sys/bus/pci/devices/$VF0/driver"
    assert_eq vfio-pci "$(driver_override "$VF0")" "VF0 driver_override after the crash"
    assert_eq "" "$(vf_ifname 0)" "VF0 netdev after the crash"
    assert_match "$(vf_line 0)" 'link/ether 02:00:00:00:00:10 .*vlan 100' "VF 0 settings applied before the crash"
    assert_ok "the ledger holds the pending record" test -s "$CNI_STATE_DIR/$CNI_NETWORK/$pod-net1.json"
    assert_eq pending "$(jq -r .phase "$CNI_STATE_DIR/$CNI_NETWORK/$pod-net1.json")" "recorded phase"
    log "after the crash: $(device_state "$VF0"); $(vf_line 0)"
}

# ------------------------------------------------------ a) crash, then DEL
crash_add pod-crash-del
cni_del pod-crash-del net1 "$CONF"
assert_cni_ok "DEL after the crash"
assert_vf_restored "$VF0" 0 "$LINE_BEFORE" "$STATE_BEFORE" "crash + DEL"
assert_no_state
assert_snapshot_eq "$SNAP_BEFORE" "$(node_snapshot)" "crash + DEL"
cni_del pod-crash-del net1 "$CONF"; assert_cni_ok "second DEL"
pod_delete pod-crash-del

# ------------------------------------------------------- b) crash, then GC
crash_add pod-crash-gc
GC_CONF=$(jq -cn --arg net "$CNI_NETWORK" '{cniVersion: "1.1.0", name: $net, type: "dpdk-cni", "cni.dev/valid-attachments": []}')
log "GC: $GC_CONF"
cni_gc "$GC_CONF"
assert_cni_ok "GC with no valid attachments"
assert_vf_restored "$VF0" 0 "$LINE_BEFORE" "$STATE_BEFORE" "crash + GC"
assert_no_state
assert_snapshot_eq "$SNAP_BEFORE" "$(node_snapshot)" "crash + GC"
cni_gc "$GC_CONF"; assert_cni_ok "second GC (nothing to release)"
cni_del pod-crash-gc net1 "$CONF"; assert_cni_ok "DEL after GC"
assert_snapshot_eq "$SNAP_BEFORE" "$(node_snapshot)" "after the runtime's DEL"
pod_delete pod-crash-gc
log "crash: all assertions passed"
