#!/usr/bin/env bash
# dpdk-cni demo, narrated, in the QEMU SR-IOV guest (about 1.5 minutes):
#   the NIC and its VFs -> the NetworkAttachmentDefinition -> CNI ADD as the
#   runtime calls it, and its result -> the VF on vfio-pci -> the device-info
#   file and the network-status annotation the pod would see -> dpdk-testpmd
#   in the pod, sending packets -> dpdk-fwd (Rust) in the same pod with a
#   second VF, its EAL arguments found from the pod's annotation alone,
#   forwarding what a third VF sends -> CNI DEL -> the VFs as they were.
# Exits non-zero if any step fails.
# Run:  tests/vm/run.sh tests/vm/demo.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
. "$(dirname "${BASH_SOURCE[0]}")/cni.sh"
trap testpmd_cleanup EXIT

POD=dpdk-app-7d4b9
NAMESPACE=default
IFNAME=net1
MAC=02:00:00:00:00:10
step=0
say() { echo; step=$((step + 1)); echo "=== $step. $* ==="; }
note() { echo "    # $*"; }
indent() { sed 's/^/    /'; }

fwd_bin > /dev/null   # fails early when dpdk-fwd is not built
cni_reset_node 3
PF=$(pf_ifname); PF_BDF=$(pf_bdf); VF0=$(vf_bdf 0); VF1=$(vf_bdf 1); VF2=$(vf_bdf 2)

# ------------------------------------------------------------------------
say "The node: an Intel 82576 (igb) PF with 3 SR-IOV VFs, an IOMMU, vfio-pci"
lspci_line() {
    local d=/sys/bus/pci/devices/$1 n="" x
    for x in "$d"/net/*; do [ -e "$x" ] && n+="${x##*/}"; done
    printf '%s  [%s:%s] class %s  driver %-8s iommu_group %-3s numa %-3s netdev %s\n' "$1" \
        "$(cut -c3- < "$d/vendor")" "$(cut -c3- < "$d/device")" "$(cut -c3-6 < "$d/class")" \
        "$(pci_driver "$1")" "$(iommu_group "$1")" "$(< "$d/numa_node")" "${n:--}"
}
{ lspci_line "$PF_BDF"; lspci_line "$VF0"; lspci_line "$VF1"; lspci_line "$VF2"; } | indent
note "sriov_numvfs $(< /sys/bus/pci/devices/$PF_BDF/sriov_numvfs) of $(< /sys/bus/pci/devices/$PF_BDF/sriov_totalvfs); vfio-pci loaded: $([ -d /sys/bus/pci/drivers/vfio-pci ] && echo yes)"
echo "    \$ ip link show $PF"
ip link show "$PF" | indent
LINE_BEFORE=$(vf_line 0)
INFO_BEFORE=$(vf_info 0); INFO1=$(vf_info 1); INFO2=$(vf_info 2)
STATE_BEFORE=$(device_state "$VF0"); STATE1=$(device_state "$VF1"); STATE2=$(device_state "$VF2")

# ------------------------------------------------------------------------
say "The NetworkAttachmentDefinition (what a user writes)"
CONF=$(netconf "$VF0" --arg mac "$MAC" '. + {vlan: 100, mac: $mac, spoofchk: "off", trust: "on",
    ipam: {type: "host-local", subnet: "10.56.217.0/24", rangeStart: "10.56.217.171", rangeEnd: "10.56.217.181"}}')
cat <<NAD | indent
apiVersion: k8s.cni.cncf.io/v1
kind: NetworkAttachmentDefinition
metadata:
  name: $CNI_NETWORK
  annotations:
    k8s.v1.cni.cncf.io/resourceName: intel.com/sriov_dpdk
spec:
  config: '$(jq -c 'del(.deviceID)' <<< "$CONF")'
NAD
note "Multus adds deviceID ($VF0) from the device plugin's allocation; the pod asks for"
note "k8s.v1.cni.cncf.io/networks: $CNI_NETWORK plus intel.com/sriov_dpdk: 1 and hugepages-2Mi"

# ------------------------------------------------------------------------
say "The runtime creates the pod sandbox and calls CNI ADD"
pod_create "$POD"
echo "    \$ ip netns add $POD"
echo "    \$ CNI_COMMAND=ADD CNI_CONTAINERID=$POD CNI_NETNS=/var/run/netns/$POD CNI_IFNAME=$IFNAME \\"
echo "      CNI_PATH=/usr/lib/cni dpdk-cni < netconf.json"
jq . <<< "$CONF" | indent
t0=${EPOCHREALTIME/./}
cni_call ADD "$POD" "$IFNAME" "$CONF"
ms=$(( (${EPOCHREALTIME/./} - t0) / 1000 ))
assert_cni_ok "ADD in $ms ms" | indent
RESULT=$CNI_OUT
echo "    result:"
jq . <<< "$RESULT" | indent
assert_eq "$VF0" "$(jq -r '.interfaces[0].pciID' <<< "$RESULT")" "interfaces[0].pciID" | indent

# ------------------------------------------------------------------------
say "The VF now: admin settings through the PF, driver vfio-pci, /dev/vfio/<group>"
GROUP=$(iommu_group "$VF0")
echo "    \$ ip link show $PF | grep 'vf 0'"
vf_line 0 | indent
assert_vf 0 --arg mac "$MAC" '.address == $mac and .vlan_list[0].vlan == 100 and .spoofchk == false and .trust == true' | indent
lspci_line "$VF0" | indent
assert_eq vfio-pci "$(pci_driver "$VF0")" "VF0 driver" | indent
ls -l /dev/vfio | indent

# ------------------------------------------------------------------------
say "What the pod learns: the device-info file and Multus' network-status annotation"
INFO=$(devinfo_path "$POD" "$IFNAME")
echo "    $INFO:"
jq . "$INFO" | indent
STATUS=$(jq -n --arg name "$NAMESPACE/$CNI_NETWORK" --arg ifname "$IFNAME" \
    --argjson r "$RESULT" --slurpfile di "$INFO" '[{
        name: $name,
        interface: $ifname,
        ips: [($r.ips // [])[] | .address | sub("/.*"; "")],
        mac: ($r.interfaces[0].mac // ""),
        mtu: ($r.interfaces[0].mtu // 0),
        default: false,
        dns: ($r.dns // {}),
        "device-info": $di[0]
    } | with_entries(select(.value != "" and .value != 0 and .value != []))]')
echo "    k8s.v1.cni.cncf.io/network-status (the $CNI_NETWORK entry):"
jq . <<< "$STATUS" | indent
note "mtu is left out as Multus does for 0: a vfio-pci device has no kernel MTU, DPDK sets it"
assert_match "$(jq -r '.[0].ips[0]' <<< "$STATUS")" '^10\.56\.217\.' "network-status ips (host-local IPAM)" | indent

# ------------------------------------------------------------------------
say "The app container: dpdk-testpmd with EAL arguments from the device-info file"
mapfile -t EAL < <(eal_args "$INFO" "$POD_HUGEDIR")
echo "    EAL arguments: ${EAL[*]}"
note "the container sees only /dev/vfio/vfio, /dev/vfio/$GROUP and a hugetlbfs at $POD_HUGEDIR"
testpmd_start "$POD" "$POD" "$INFO" --forward-mode=txonly
testpmd_wait_stat "$POD" TX-packets
sleep 3
testpmd_stop "$POD"
grep -a "Port 0: " "$CNI_WORK/$POD.log" | head -n1 | indent
testpmd_summary "$POD" | indent
assert_eq 0 "$TESTPMD_RC" "testpmd exit status" | indent
assert_gt "$(testpmd_stat "$POD" TX-packets)" 0 "packets sent by the pod through $VF0" | indent

# ------------------------------------------------------------------------
say "A Rust DPDK app: dpdk-fwd, a second VF for the pod, EAL arguments from discovery"
CONF2=$(netconf "$VF1" '. + {vlan: 100, mac: "02:00:00:00:00:11"}')
cni_call ADD "$POD" net2 "$CONF2"
assert_cni_ok "ADD $VF1 for $POD as net2" | indent
GEN=traffic-gen-5f2c1
pod_create "$GEN"
CONF3=$(netconf "$VF2" '. + {vlan: 100, mac: "02:00:00:00:00:12"}')
cni_call ADD "$GEN" net1 "$CONF3"
assert_cni_ok "ADD $VF2 for a traffic source pod, $GEN" | indent
ANNOTATIONS=$CNI_WORK/$POD.annotations
pod_annotations "$ANNOTATIONS" "$POD" "$IFNAME" net2
note "the pod sees its network-status annotation at /etc/podinfo/annotations (downward API),"
note "/dev/vfio/{vfio,$GROUP,$(iommu_group "$VF1")} and a hugetlbfs; dpdk-fwd gets no EAL arguments"
testpmd_start "$GEN" "$GEN" "$(devinfo_path "$GEN")" --forward-mode=txonly --eth-peer="0,$MAC"
testpmd_wait_stat "$GEN" TX-packets
echo "    \$ dpdk-fwd --duration 6 --stats-period 2 --mem-mb 64"
rc=0
fwd_run "$POD" "$GROUP,$(iommu_group "$VF1")" "$ANNOTATIONS" "$CNI_WORK/fwd.log" \
    --duration 6 --stats-period 2 || rc=$?
testpmd_stop "$GEN"
grep -a -E '^(discovery|eal-args|stats|fwd-result)' "$CNI_WORK/fwd.log" | indent
assert_eq 0 "$rc" "dpdk-fwd exit status" | indent
FWD=$(fwd_result "$CNI_WORK/fwd.log" forwarded)
assert_gt "${FWD:-0}" 0 "packets dpdk-fwd forwarded from $VF0 to $VF1" | indent
cni_call DEL "$GEN" net1 "$CONF3"
assert_cni_ok "DEL $GEN" | indent
pod_delete "$GEN"
cni_call DEL "$POD" net2 "$CONF2"
assert_cni_ok "DEL $POD net2" | indent

# ------------------------------------------------------------------------
say "The pod goes away: CNI DEL"
echo "    \$ CNI_COMMAND=DEL CNI_CONTAINERID=$POD ... dpdk-cni < netconf.json"
t0=${EPOCHREALTIME/./}
cni_call DEL "$POD" "$IFNAME" "$CONF"
ms=$(( (${EPOCHREALTIME/./} - t0) / 1000 ))
assert_cni_ok "DEL in $ms ms" | indent
pod_delete "$POD"

say "The node is as it was before ADD"
echo "    before: $LINE_BEFORE"
echo "    after:  $(vf_line 0)"
lspci_line "$VF0" | indent
assert_vf_restored "$VF0" 0 "$INFO_BEFORE" "$STATE_BEFORE" "after DEL" | indent
assert_vf_restored "$VF1" 1 "$INFO1" "$STATE1" "after DEL" | indent
assert_vf_restored "$VF2" 2 "$INFO2" "$STATE2" "after DEL" | indent
assert_no_state | indent
[ -z "$(ls /var/lib/cni/networks/"$CNI_NETWORK" 2>/dev/null | grep -v '^last_reserved_ip\|^lock$')" ] ||
    fail "host-local still holds an address: $(ls /var/lib/cni/networks/"$CNI_NETWORK")"
pass "host-local released the pod's address" | indent
echo
echo "demo: done - the VFs went to the pods on vfio-pci, carried DPDK traffic (testpmd, dpdk-fwd), and came back unchanged"
