#!/usr/bin/env bash
# Scenario: the kernel-mode fallback on real igbvf VFs (deviceType netdevice):
#   ADD VF 0 (admin MAC pinned by the PF beforehand) for pod-a (MAC, MTU
#   1400) and VF 1 (MAC chosen by its driver) for pod-b, with
#   Debian's host-local IPAM: each VF netdev is in its pod as net1 with its
#   address and MTU; pod-a pings pod-b through the NIC's VF switch;
#   CHECK passes; DEL pod-a: the netdev is back on the node under its name,
#   MAC and MTU, the VF admin line as before, the pin set again, the lease
#   released;
#   pod-b's namespace is deleted BEFORE its DEL (the kernel hands the VF's
#   netdev back to the node on its own): DEL finds it by PCI address and
#   restores it too.
# Run:  tests/vm/run.sh tests/vm/scenarios/netdevice.sh
. "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
. "$(dirname "${BASH_SOURCE[0]}")/../cni.sh"

cni_reset_node 2
VF0=$(vf_bdf 0); VF1=$(vf_bdf 1)
PF=$(pf_ifname)
# VF 0 starts with an administrative MAC pinned by the PF (as node setup
# leaves it; igb then refuses the VF driver any other MAC), VF 1 with a MAC
# its driver chose (the all-zero admin MAC clears a pin). igbvf learns
# either only when it probes, so both are rebound.
PIN0=02:00:00:00:00:10
ip link set "$PF" vf 0 mac "$PIN0"
ip link set "$PF" vf 1 mac 00:00:00:00:00:00
bind_kernel "$VF0"; bind_kernel "$VF1"
IF0=$(vf_ifname 0); IF1=$(vf_ifname 1)
assert_match "$(ip -o link show "$IF0")" "link/ether $PIN0" "$IF0 took the pinned MAC"
vf_mac_pinned 0 || fail "VF 0's MAC is not pinned after the PF set it"
pass "VF 0's MAC is pinned by the PF"
LINE0=$(vf_line 0); LINE1=$(vf_line 1)
# name, MTU and MAC of a node netdev
netdev_facts() { ip -o link show "$1" | awk '{ for (i = 1; i <= NF; i++) { if ($i == "mtu") m = $(i+1); if ($i == "link/ether") a = $(i+1) } print $2, m, a }'; }
FACTS0=$(netdev_facts "$IF0"); FACTS1=$(netdev_facts "$IF1")
log "VF netdevs before: $FACTS0 / $FACTS1"

IPAM_DIR=$CNI_WORK/ipam
ipam='{type: "host-local", dataDir: $d, ranges: [[{subnet: "10.200.0.0/24"}]]}'
CONF_A=$(netconf "$VF0" --arg d "$IPAM_DIR" ". + {deviceType: \"netdevice\", mac: \"02:00:00:00:01:0a\", mtu: 1400, ipam: $ipam}")
CONF_B=$(netconf "$VF1" --arg d "$IPAM_DIR" ". + {deviceType: \"netdevice\", mac: \"02:00:00:00:01:0b\", ipam: $ipam}")
pod_create pod-a
pod_create pod-b
cni_add pod-a net1 "$CONF_A"; assert_cni_ok "ADD $VF0 ($IF0) as a netdev for pod-a"
echo "$CNI_OUT" | jq -c .
IP_A=$(jq -r '.ips[0].address' <<< "$CNI_OUT")
cni_add pod-b net1 "$CONF_B"; assert_cni_ok "ADD $VF1 ($IF1) as a netdev for pod-b"
IP_B=$(jq -r '.ips[0].address' <<< "$CNI_OUT")

assert_fails "$IF0 is gone from the node" ip link show "$IF0"
LINK_A=$(ip -n pod-a -o link show net1)
echo "$LINK_A"
assert_match "$LINK_A" "mtu 1400" "pod-a net1 MTU"
assert_match "$LINK_A" "link/ether 02:00:00:00:01:0a" "pod-a net1 MAC"
assert_match "$(ip -n pod-a -o addr show net1)" "${IP_A%/*}" "pod-a net1 address"
assert_eq igbvf "$(basename "$(readlink "/sys/bus/pci/devices/$VF0/driver")")" "VF0 stays on igbvf"
assert_match "$(jq -r '.pci["device-type"]' "$(devinfo_path pod-a)")" netdevice "device-info device-type"
assert_match "$(jq -r '.pci["eal-vdev"]' "$(devinfo_path pod-a)")" "net_af_packet0,iface=net1" "device-info eal-vdev"

wait_for 10 "pod-a to reach pod-b (${IP_B%/*})" ip netns exec pod-a ping -c 1 -W 1 "${IP_B%/*}"
pass "pod-a pings pod-b over two VFs of one PF"

cni_check pod-a net1 "$CONF_A"; assert_cni_ok "CHECK pod-a"

cni_del pod-a net1 "$CONF_A"; assert_cni_ok "DEL pod-a"
assert_eq "$FACTS0" "$(netdev_facts "$IF0")" "$IF0 name, MTU and MAC after DEL"
assert_eq "$LINE0" "$(vf_line 0)" "VF 0 line after DEL"
vf_mac_pinned 0 || fail "VF 0's MAC is not pinned after DEL; it was before ADD"
pass "VF 0's admin MAC is pinned again after DEL"
assert_fails "pod-a has no net1 any more" ip -n pod-a link show net1
assert_fails "the lease of ${IP_A%/*} is released" test -e "$IPAM_DIR/$CNI_NETWORK/${IP_A%/*}"

log "deleting pod-b's namespace before its DEL"
pod_delete pod-b
cni_del pod-b net1 "$CONF_B"; assert_cni_ok "DEL pod-b after its namespace is gone"
assert_eq "$FACTS1" "$(netdev_facts "$IF1")" "$IF1 name, MTU and MAC after DEL"
assert_eq "$LINE1" "$(vf_line 1)" "VF 1 line after DEL"
! vf_mac_pinned 1 || fail "VF 1's MAC is pinned after DEL; it was not before ADD"
pass "VF 1's MAC is still the driver's to choose"
cni_del pod-b net1 "$CONF_B"; assert_cni_ok "second DEL pod-b"
assert_no_state
pod_delete pod-a
log "netdevice: all assertions passed"
