#!/usr/bin/env bash
# Scenario 5 - CHECK against the real node:
#   CHECK passes on a good attachment; fails with 107 when the VF's VLAN is
#   changed behind the plugin's back (and passes again once it is put back);
#   fails with 107 after the VF is rebound to igbvf behind the plugin's back;
#   DEL still restores the VF fully.
# Run:  tests/vm/run.sh tests/vm/scenarios/check.sh
. "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
. "$(dirname "${BASH_SOURCE[0]}")/../cni.sh"

POD=pod-check
cni_reset_node 2
PF=$(pf_ifname); VF0=$(vf_bdf 0)
LINE_BEFORE=$(vf_line 0)
STATE_BEFORE=$(device_state "$VF0")
CONF=$(netconf "$VF0" '. + {vlan: 100, mac: "02:00:00:00:00:10", spoofchk: "off", trust: "on"}')
pod_create "$POD"
cni_add "$POD" net1 "$CONF"; assert_cni_ok "ADD"
CHECK_CONF=$(jq -c --argjson r "$CNI_OUT" '. + {prevResult: $r}' <<< "$CONF")

cni_check "$POD" net1 "$CHECK_CONF"; assert_cni_ok "CHECK on a good attachment"

log "changing VF 0's VLAN to 200 behind the plugin's back"
ip link set "$PF" vf 0 vlan 200
cni_check "$POD" net1 "$CHECK_CONF"
assert_cni_err 107 "CHECK after the VLAN drifted" "vlan"
ip link set "$PF" vf 0 vlan 100
cni_check "$POD" net1 "$CHECK_CONF"; assert_cni_ok "CHECK once the VLAN is back"

log "rebinding $VF0 to igbvf behind the plugin's back"
bind_kernel "$VF0" "$VF_DRIVER"
assert_eq "$VF_DRIVER" "$(pci_driver "$VF0")" "VF0 driver after the rogue rebind"
cni_check "$POD" net1 "$CHECK_CONF"
assert_cni_err 107 "CHECK after the rogue rebind" "igbvf"

cni_del "$POD" net1 "$CONF"; assert_cni_ok "DEL after the rogue rebind"
assert_vf_restored "$VF0" 0 "$LINE_BEFORE" "$STATE_BEFORE" "after DEL"
assert_no_state
cni_check "$POD" net1 "$CHECK_CONF"
assert_cni_err 3 "CHECK after DEL (no such attachment)"
pod_delete "$POD"
log "check: all assertions passed"
