#!/usr/bin/env bats
# The plugin killed in the middle of ADD (SIGKILL at failpoint "unbound":
# VF settings applied, driver_override set, the VF unbound from igbvf, not
# yet bound to vfio-pci):
#   a) the VF really has no driver then; DEL restores it fully (igbvf, its
#      netdev, no driver_override, vfinfo entry as before, no state left);
#   b) the same crash, then GC with "cni.dev/valid-attachments": [] restores
#      it fully as well.
# And killed in the middle of a vfio-pci DEL (failpoint "off-vfio": VF
# settings restored, the VF released by vfio-pci with driver_override naming
# igbvf, not probed yet): the record stays, and the next DEL restores it.
# And killed once VF 0 is back on igbvf under its name (failpoint
# "driver-back"), after which the PF no longer hears the VF: a function
# reset of the VF while its netdev is up, after which igbvf does not redo
# its reset handshake, so igb ignores its MAC requests (what a VF reset the
# PF sees late does to a DEL's probe); the next DEL still leaves the PF's
# vfinfo entry of VF 0 as before ADD, with a MAC in the netconf (the pin
# cleared) and without (the netdev's MAC given back).
# Only the plugin built with test hooks honours DPDK_CNI_FAILPOINT (make
# plugin-hooks); this file runs that build for every plugin call:
#   DPDK_CNI_HOOKS_BIN  default <repo>/target/x86_64-unknown-linux-gnu/release/dpdk-cni-hooks
# Run:  tests/vm/run.sh tests/vm/scenarios/crash.bats [-f REGEX]

load helpers

setup_file() {
    untrace_helpers
    local repo=${DPDK_CNI_REPO:-$VM_LIB_DIR/../..}
    export DPDK_CNI_HOOKS_BIN=${DPDK_CNI_HOOKS_BIN:-$repo/target/x86_64-unknown-linux-gnu/release/dpdk-cni-hooks}
    [ -x "$DPDK_CNI_HOOKS_BIN" ] ||
        fail "no plugin with test hooks at $DPDK_CNI_HOOKS_BIN (DPDK_CNI_HOOKS_BIN): build it with make plugin-hooks"
    export DPDK_CNI_BIN=$DPDK_CNI_HOOKS_BIN   # cni_stage: the plugin of this file
    cni_reset_node 2
    log "plugin: $CNI_BIN (from $DPDK_CNI_BIN)"
    VF0=$(vf_bdf 0)
    INFO_BEFORE=$(vf_info 0)
    STATE_BEFORE=$(device_state "$VF0")
    SNAP_BEFORE=$(node_snapshot)
    CONF=$(netconf "$VF0" '. + {vlan: 100, mac: "02:00:00:00:00:10", spoofchk: "off", trust: "on"}')
    GC_CONF=$(jq -cn --arg net "$CNI_NETWORK" '{cniVersion: "1.1.0", name: $net, type: "dpdk-cni", "cni.dev/valid-attachments": []}')
    export VF0 INFO_BEFORE STATE_BEFORE SNAP_BEFORE CONF GC_CONF
}

teardown_file() {
    pod_delete pod-crash-del
    pod_delete pod-crash-gc
    pod_delete pod-crash-undo
    pod_delete pod-crash-mbx
    pod_delete pod-crash-mbx2
}

setup() { scenario_setup chain; }
teardown() { scenario_teardown; }

# crash_add POD: ADD killed at "unbound", and the half-done state checked.
crash_add() {
    local pod=$1
    pod_create "$pod"
    log "ADD for $pod with DPDK_CNI_FAILPOINT=unbound"
    cni_add "$pod" net1 "$CONF" DPDK_CNI_FAILPOINT=unbound
    _cni_show
    assert_equal "$CNI_RC" 137            # 128 + SIGKILL
    assert_equal "$CNI_OUT" ""            # killed before any result
    assert_equal "$(pci_driver "$VF0")" ""
    refute [ -e "/sys/bus/pci/devices/$VF0/driver" ]
    assert_equal "$(driver_override "$VF0")" vfio-pci
    assert_equal "$(vf_ifname 0)" ""
    assert_vf 0 '.address == "02:00:00:00:00:10" and .vlan_list[0].vlan == 100'   # applied before the crash
    assert [ -s "$CNI_STATE_DIR/$CNI_NETWORK/$pod-net1.json" ]
    assert_equal "$(jq -r .phase "$CNI_STATE_DIR/$CNI_NETWORK/$pod-net1.json")" pending
    log "after the crash: $(device_state "$VF0"); $(vf_info 0)"
}

@test "ADD killed after unbind leaves VF 0 without a driver; DEL restores it fully, a second DEL succeeds" {
    crash_add pod-crash-del
    cni_del pod-crash-del net1 "$CONF"
    assert_cni_ok "DEL after the crash"
    assert_vf_restored "$VF0" 0 "$INFO_BEFORE" "$STATE_BEFORE" "crash + DEL"
    assert_no_state
    assert_snapshot_eq "$SNAP_BEFORE" "$(node_snapshot)" "crash + DEL"
    cni_del pod-crash-del net1 "$CONF"
    assert_cni_ok "second DEL"
    pod_delete pod-crash-del
}

@test "the same crash, then GC with no valid attachments restores VF 0 fully; a second GC and the runtime's DEL change nothing" {
    crash_add pod-crash-gc
    log "GC: $GC_CONF"
    cni_gc "$GC_CONF"
    assert_cni_ok "GC with no valid attachments"
    assert_vf_restored "$VF0" 0 "$INFO_BEFORE" "$STATE_BEFORE" "crash + GC"
    assert_no_state
    assert_snapshot_eq "$SNAP_BEFORE" "$(node_snapshot)" "crash + GC"
    cni_gc "$GC_CONF"
    assert_cni_ok "second GC (nothing to release)"
    cni_del pod-crash-gc net1 "$CONF"
    assert_cni_ok "DEL after GC"
    assert_snapshot_eq "$SNAP_BEFORE" "$(node_snapshot)" "after the runtime's DEL"
    pod_delete pod-crash-gc
}

@test "DEL killed with VF 0 off vfio-pci and not yet probed leaves it without a driver; the next DEL restores it fully" {
    pod_create pod-crash-undo
    cni_add pod-crash-undo net1 "$CONF"
    assert_cni_ok "ADD"
    assert_equal "$(pci_driver "$VF0")" vfio-pci
    log "DEL with DPDK_CNI_FAILPOINT=off-vfio"
    cni_del pod-crash-undo net1 "$CONF" DPDK_CNI_FAILPOINT=off-vfio
    _cni_show
    assert_equal "$CNI_RC" 137            # 128 + SIGKILL
    assert_equal "$(pci_driver "$VF0")" ""
    assert_equal "$(driver_override "$VF0")" igbvf
    assert_equal "$(vf_ifname 0)" ""
    assert [ -s "$CNI_STATE_DIR/$CNI_NETWORK/pod-crash-undo-net1.json" ]
    log "after the crash: $(device_state "$VF0"); $(vf_info 0)"
    cni_del pod-crash-undo net1 "$CONF"
    assert_cni_ok "DEL after the crash"
    assert_vf_restored "$VF0" 0 "$INFO_BEFORE" "$STATE_BEFORE" "crashed DEL + DEL"
    assert_no_state
    assert_snapshot_eq "$SNAP_BEFORE" "$(node_snapshot)" "crashed DEL + DEL"
    pod_delete pod-crash-undo
}

# deaf_vf_del POD CONF: ADD with CONF, DEL killed at "driver-back" (VF 0
# back on igbvf under its name), then VF 0 made deaf to the PF; the next
# DEL must still leave the PF's vfinfo entry of VF 0 as before ADD.
deaf_vf_del() {
    local pod=$1 conf=$2 n
    pod_create "$pod"
    cni_add "$pod" net1 "$conf"
    assert_cni_ok "ADD"
    log "DEL with DPDK_CNI_FAILPOINT=driver-back"
    cni_del "$pod" net1 "$conf" DPDK_CNI_FAILPOINT=driver-back
    _cni_show
    assert_equal "$CNI_RC" 137            # 128 + SIGKILL
    assert_equal "$(device_state "$VF0")" "$STATE_BEFORE"
    assert [ -s "$CNI_STATE_DIR/$CNI_NETWORK/$pod-net1.json" ]
    n=$(vf_ifname 0)
    # Unpinned (a killed DEL that had a MAC to restore pinned it again), the
    # PF takes what the VF asks for, if it hears it. igbvf resets the VF
    # before a function reset and not after it when the netdev is up; igb
    # then ignores the VF's requests, and igbvf, its mailbox timed out,
    # stops sending them until its next reset.
    ip link set "$(pf_ifname)" vf 0 mac 00:00:00:00:00:00
    ip link set "$n" up
    echo 1 > "/sys/bus/pci/devices/$VF0/reset"
    ip link set "$n" address 02:00:00:00:00:42
    assert_ne 02:00:00:00:00:42 "$(vf_field 0 .address)" "the PF's view of VF 0 after its unheard request"
    log "after the crash and the reset: $(vf_info 0)"
    cni_del "$pod" net1 "$conf"
    assert_cni_ok "DEL after the crash and the reset"
    assert_vf_restored "$VF0" 0 "$INFO_BEFORE" "$STATE_BEFORE" "crashed DEL, reset + DEL"
    assert_no_state
    # Up only for the reset above. (Closing it resets the VF, so igbvf asks
    # the PF for its MAC once more: not before the checks.)
    ip link set "$(vf_ifname 0)" down
    assert_snapshot_eq "$SNAP_BEFORE" "$(node_snapshot)" "crashed DEL, reset + DEL"
    pod_delete "$pod"
}

@test "DEL killed with VF 0 back on igbvf, which then stops being heard by the PF (a function reset igbvf does not follow up): the next DEL still unpins VF 0's MAC and the PF shows it" {
    deaf_vf_del pod-crash-mbx "$CONF"
}

@test "the same with no MAC in the netconf: the next DEL still gives VF 0's netdev its MAC back and the PF shows it" {
    deaf_vf_del pod-crash-mbx2 "$(netconf "$VF0" '. + {vlan: 100}')"
}
