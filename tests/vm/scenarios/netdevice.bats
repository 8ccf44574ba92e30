#!/usr/bin/env bats
# The kernel-mode fallback on real igbvf VFs (deviceType netdevice):
#   ADD VF 0 (admin MAC pinned by the PF beforehand) for pod-a (MAC, MTU
#   1400) and VF 1 (MAC chosen by its driver) for pod-b, with Debian's
#   host-local IPAM: each VF netdev is in its pod as net1 with its address
#   and MTU; pod-a pings pod-b through the NIC's VF switch;
#   CHECK passes; DEL pod-a: the netdev is back on the node under its name,
#   MAC and MTU, the VF's vfinfo entry as before, the pin set again, the
#   lease released;
#   pod-b's namespace is deleted BEFORE its DEL (the kernel hands the VF's
#   netdev back to the node on its own): DEL finds it by PCI address and
#   restores it too.
# Run:  tests/vm/run.sh tests/vm/scenarios/netdevice.bats [-f REGEX]

load helpers

# netdev_facts IFNAME: name, MTU and MAC of a node netdev.
netdev_facts() { ip -j link show "$1" | jq -r '.[0] | "\(.ifname) \(.mtu) \(.address)"'; }

setup_file() {
    untrace_helpers
    export PIN0=02:00:00:00:00:10 IPAM_DIR=$CNI_WORK/ipam
    cni_reset_node 2
    VF0=$(vf_bdf 0); VF1=$(vf_bdf 1)
    PF=$(pf_ifname)
    # VF 0 starts with an administrative MAC pinned by the PF (as node setup
    # leaves it; igb then refuses the VF driver any other MAC), VF 1 with a
    # MAC its driver chose (the all-zero admin MAC clears a pin). igbvf
    # learns either only when it probes, so both are rebound.
    ip link set "$PF" vf 0 mac "$PIN0"
    ip link set "$PF" vf 1 mac 00:00:00:00:00:00
    bind_kernel "$VF0"; bind_kernel "$VF1"
    IF0=$(vf_ifname 0); IF1=$(vf_ifname 1)
    INFO0=$(vf_info 0); INFO1=$(vf_info 1)
    FACTS0=$(netdev_facts "$IF0"); FACTS1=$(netdev_facts "$IF1")
    log "VF netdevs before: $FACTS0 / $FACTS1"
    local ipam='{type: "host-local", dataDir: $d, ranges: [[{subnet: "10.200.0.0/24"}]]}'
    CONF_A=$(netconf "$VF0" --arg d "$IPAM_DIR" ". + {deviceType: \"netdevice\", mac: \"02:00:00:00:01:0a\", mtu: 1400, ipam: $ipam}")
    CONF_B=$(netconf "$VF1" --arg d "$IPAM_DIR" ". + {deviceType: \"netdevice\", mac: \"02:00:00:00:01:0b\", ipam: $ipam}")
    export PF VF0 VF1 IF0 IF1 INFO0 INFO1 FACTS0 FACTS1 CONF_A CONF_B
    pod_create pod-a
    pod_create pod-b
}

teardown_file() {
    pod_delete pod-a
    pod_delete pod-b
}

setup() { scenario_setup chain; }
teardown() { scenario_teardown; }

@test "ADD VF 0 (its MAC pinned) for pod-a and VF 1 for pod-b as netdevs: VF 0's netdev is pod-a's net1 with the ADD's MAC, MTU 1400 and its address" {
    # before ADD: VF 0's netdev took the MAC the PF pinned
    assert_equal "$(netdev_mac "$IF0")" "$PIN0"
    vf_mac_pinned 0 || fail "VF 0's MAC is not pinned after the PF set it"

    cni_add pod-a net1 "$CONF_A"; assert_cni_ok "ADD $VF0 ($IF0) as a netdev for pod-a"
    jq -c . <<< "$CNI_OUT"
    IP_A=$(jq -r '.ips[0].address' <<< "$CNI_OUT")
    cni_add pod-b net1 "$CONF_B"; assert_cni_ok "ADD $VF1 ($IF1) as a netdev for pod-b"
    IP_B=$(jq -r '.ips[0].address' <<< "$CNI_OUT")
    share IP_A IP_B

    refute ip link show "$IF0"      # gone from the node
    ip -n pod-a -j link show net1 | jq -c .
    assert_equal "$(ip -n pod-a -j link show net1 | jq -r '.[0] | "\(.mtu) \(.address)"')" "1400 02:00:00:00:01:0a"
    assert_equal "$(ip -n pod-a -j addr show net1 | jq -r '.[0].addr_info[] | select(.family == "inet") | "\(.local)/\(.prefixlen)"')" "$IP_A"
    # VF 0 stays on igbvf; the device-info file says netdevice and names the af_packet vdev
    assert_equal "$(basename "$(readlink "/sys/bus/pci/devices/$VF0/driver")")" igbvf
    assert_regex "$(jq -r '.pci | "\(."device-type") / \(."eal-vdev")"' "$(devinfo_path pod-a)")" "netdevice.* / .*net_af_packet0,iface=net1"
}

@test "pod-a pings pod-b over two VFs of one PF" {
    wait_for 10 "pod-a to reach pod-b (${IP_B%/*})" ip netns exec pod-a ping -c 1 -W 1 "${IP_B%/*}"
}

@test "CHECK pod-a passes" {
    cni_check pod-a net1 "$CONF_A"
    assert_cni_ok "CHECK pod-a"
}

@test "DEL pod-a: the netdev's name, MTU and MAC, the vfinfo entry and the MAC pin come back; the lease is released" {
    cni_del pod-a net1 "$CONF_A"
    assert_cni_ok "DEL pod-a"
    assert_equal "$(netdev_facts "$IF0")" "$FACTS0"
    assert_equal "$(vf_info 0)" "$INFO0"
    vf_mac_pinned 0 || fail "VF 0's MAC is not pinned after DEL; it was before ADD"
    refute ip -n pod-a link show net1
    refute [ -e "$IPAM_DIR/$CNI_NETWORK/${IP_A%/*}" ]
}

@test "DEL pod-b after its namespace is gone restores VF 1; its MAC stays the driver's to choose" {
    log "deleting pod-b's namespace before its DEL"
    pod_delete pod-b
    cni_del pod-b net1 "$CONF_B"
    assert_cni_ok "DEL pod-b after its namespace is gone"
    assert_equal "$(netdev_facts "$IF1")" "$FACTS1"
    assert_equal "$(vf_info 1)" "$INFO1"
    if vf_mac_pinned 1; then
        fail "VF 1's MAC is pinned after DEL; it was not before ADD"
    fi
}

@test "a second DEL pod-b succeeds and no state remains" {
    cni_del pod-b net1 "$CONF_B"
    assert_cni_ok "second DEL pod-b"
    assert_no_state
}
