#!/usr/bin/env bats
# CHECK against the real node:
#   CHECK passes on a good attachment; fails with 107 when the VF's VLAN is
#   changed behind the plugin's back (and passes again once it is put back);
#   fails with 107 after the VF is rebound to igbvf behind the plugin's back;
#   DEL still restores the VF fully; CHECK after DEL fails with 3.
# Run:  tests/vm/run.sh tests/vm/scenarios/check.bats [-f REGEX]

load helpers

setup_file() {
    untrace_helpers
    export POD=pod-check
    cni_reset_node 2
    PF=$(pf_ifname); VF0=$(vf_bdf 0)
    INFO_BEFORE=$(vf_info 0)
    STATE_BEFORE=$(device_state "$VF0")
    CONF=$(netconf "$VF0" '. + {vlan: 100, mac: "02:00:00:00:00:10", spoofchk: "off", trust: "on"}')
    export PF VF0 INFO_BEFORE STATE_BEFORE CONF
    pod_create "$POD"
}

teardown_file() {
    pod_delete "$POD"
}

setup() { scenario_setup chain; }
teardown() { scenario_teardown; }

@test "CHECK passes on a good attachment (ADD of VF 0: vlan 100, mac, spoofchk off, trust on)" {
    cni_add "$POD" net1 "$CONF"
    assert_cni_ok "ADD"
    CHECK_CONF=$(jq -c --argjson r "$CNI_OUT" '. + {prevResult: $r}' <<< "$CONF")
    share CHECK_CONF
    cni_check "$POD" net1 "$CHECK_CONF"
    assert_cni_ok "CHECK on a good attachment"
}

@test "CHECK fails with 107 after VF 0's VLAN is changed behind the plugin's back, passes once it is put back" {
    ip link set "$PF" vf 0 vlan 200
    cni_check "$POD" net1 "$CHECK_CONF"
    assert_cni_err 107 "CHECK after the VLAN drifted" "vlan"
    ip link set "$PF" vf 0 vlan 100
    cni_check "$POD" net1 "$CHECK_CONF"
    assert_cni_ok "CHECK once the VLAN is back"
}

@test "CHECK fails with 107 after VF 0 is rebound to igbvf behind the plugin's back" {
    bind_kernel "$VF0" "$VF_DRIVER"
    assert_equal "$(pci_driver "$VF0")" "$VF_DRIVER"
    cni_check "$POD" net1 "$CHECK_CONF"
    assert_cni_err 107 "CHECK after the rogue rebind" "igbvf"
}

@test "DEL after the rogue rebind restores VF 0 fully; CHECK after DEL fails with 3" {
    cni_del "$POD" net1 "$CONF"
    assert_cni_ok "DEL after the rogue rebind"
    assert_vf_restored "$VF0" 0 "$INFO_BEFORE" "$STATE_BEFORE" "after DEL"
    assert_no_state
    cni_check "$POD" net1 "$CHECK_CONF"
    assert_cni_err 3 "CHECK after DEL (no such attachment)"
}
