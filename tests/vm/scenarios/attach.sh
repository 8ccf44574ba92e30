#!/usr/bin/env bash
# Scenario 1 - vfio-pci attachment of VF 0 to a pod, end to end:
#   before: VF 0's `ip link show <pf>` line, driver (igbvf) and netdev;
#   ADD (vlan 100, mac, spoofchk off, trust on) -> the PF shows the settings,
#   the VF is on vfio-pci with /dev/vfio/<group>, the device-info file says so;
#   dpdk-testpmd (txonly) in the pod, with EAL arguments built from the
#   device-info file, starts on the VF with the MAC ADD set and transmits;
#   DEL -> the VF is back on igbvf with its netdev, its VF line equals the one
#   from before ADD, its MAC is not left pinned by the PF (VF 0 starts with a
#   MAC its driver chose), no ledger or device-info file remains; a second
#   DEL succeeds.
# Run:  tests/vm/run.sh tests/vm/scenarios/attach.sh
. "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
. "$(dirname "${BASH_SOURCE[0]}")/../cni.sh"
trap testpmd_cleanup EXIT

POD=pod-a
MAC=02:00:00:00:00:10
cni_reset_node 2
PF=$(pf_ifname); PF_BDF=$(pf_bdf); VF0=$(vf_bdf 0)
# VF 0's MAC is its driver's choice (no administrative pin): the all-zero
# admin MAC clears a pin, and igbvf picks and registers a MAC when it probes.
ip link set "$PF" vf 0 mac 00:00:00:00:00:00
bind_kernel "$VF0"

# ------------------------------------------------------------- before ADD
LINE_BEFORE=$(vf_line 0)
STATE_BEFORE=$(device_state "$VF0")
NETDEV_BEFORE=$(vf_ifname 0)
GROUP=$(iommu_group "$VF0")
log "before ADD: $STATE_BEFORE; group $GROUP"
log "before ADD: $LINE_BEFORE"
assert_eq "$VF_DRIVER" "$(pci_driver "$VF0")" "VF0 driver before ADD"
assert_ne "" "$NETDEV_BEFORE" "VF0 netdev before ADD"

# -------------------------------------------------------------------- ADD
pod_create "$POD"
CONF=$(netconf "$VF0" --arg mac "$MAC" '. + {vlan: 100, mac: $mac, spoofchk: "off", trust: "on"}')
log "ADD $POD: $CONF"
cni_add "$POD" net1 "$CONF"
assert_cni_ok "ADD $VF0 for $POD"
echo "$CNI_OUT" | jq .
assert_eq "$VF0" "$(jq -r '.interfaces[0].pciID' <<< "$CNI_OUT")" "result interfaces[0].pciID"
assert_eq "$MAC" "$(jq -r '.interfaces[0].mac' <<< "$CNI_OUT")" "result interfaces[0].mac"
assert_eq "/var/run/netns/$POD" "$(jq -r '.interfaces[0].sandbox' <<< "$CNI_OUT")" "result interfaces[0].sandbox"

LINE=$(vf_line 0)
log "after ADD: $LINE"
assert_match "$LINE" "link/ether $MAC " "VF 0 MAC in ip link show $PF"
assert_match "$LINE" 'vlan 100[, ]' "VF 0 VLAN in ip link show $PF"
assert_match "$LINE" 'spoof checking off' "VF 0 spoofchk in ip link show $PF"
assert_match "$LINE" 'trust on' "VF 0 trust in ip link show $PF"
assert_eq vfio-pci "$(pci_driver "$VF0")" "VF0 driver after ADD"
assert_ok "/dev/vfio/$GROUP is a char device" test -c "/dev/vfio/$GROUP"
assert_eq "" "$(vf_ifname 0)" "VF0 netdev while on vfio-pci"

INFO=$(devinfo_path "$POD")
assert_ok "device-info file $INFO exists" test -s "$INFO"
jq . "$INFO"
assert_eq "$VF0" "$(devinfo_get "$INFO" pci-address)" "device-info pci-address"
assert_eq "$PF_BDF" "$(devinfo_get "$INFO" pf-pci-address)" "device-info pf-pci-address"
assert_eq "$GROUP" "$(devinfo_get "$INFO" iommu-group)" "device-info iommu-group"
assert_eq "/dev/vfio/$GROUP" "$(devinfo_get "$INFO" vfio-device)" "device-info vfio-device"
assert_eq "$(< "/sys/bus/pci/devices/$VF0/numa_node")" "$(devinfo_get "$INFO" numa-node)" "device-info numa-node (sysfs numa_node)"
assert_eq "$VF_DRIVER" "$(devinfo_get "$INFO" original-driver)" "device-info original-driver"
assert_ne "" "$(ledger_files)" "ledger files while attached"

# ---------------------------------------------------------- testpmd in the pod
testpmd_start "$POD" "$POD" "$INFO" --forward-mode=txonly
testpmd_wait_stat "$POD" TX-packets
sleep 2
testpmd_stop "$POD"
testpmd_summary "$POD"
assert_eq 0 "$TESTPMD_RC" "testpmd exit status"
assert_gt "$(testpmd_stat "$POD" TX-packets)" 0 "testpmd TX-packets on $VF0"
assert_match "$(grep -a 'Port 0: ' "$CNI_WORK/$POD.log" | head -n1)" "Port 0: ${MAC^^}" "testpmd sees the MAC ADD set"

# -------------------------------------------------------------------- DEL
log "DEL $POD"
cni_del "$POD" net1 "$CONF"
assert_cni_ok "DEL $VF0 for $POD"
assert_vf_restored "$VF0" 0 "$LINE_BEFORE" "$STATE_BEFORE" "after DEL"
assert_eq "$NETDEV_BEFORE" "$(vf_ifname 0)" "VF0 netdev name after DEL"
! vf_mac_pinned 0 || fail "VF0's MAC is pinned by the PF after DEL; its driver chose it before ADD"
pass "VF0's MAC is its driver's choice again after DEL"
assert_fails "/dev/vfio/$GROUP removed" test -e "/dev/vfio/$GROUP"
assert_no_state
log "after DEL: $(vf_line 0)"

cni_del "$POD" net1 "$CONF"
assert_cni_ok "second DEL (nothing left to release)"
assert_no_state
pod_delete "$POD"
log "attach: all assertions passed"
