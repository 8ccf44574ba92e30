#!/usr/bin/env bash
# Scenario: dpdk-fwd (the Rust forwarder of dpdk/) in a pod with two VFs,
# started from discovery alone:
#   ADD VF 0 (net1) and VF 1 (net2) for pod-fwd, VF 2 (net1) for pod-gen,
#   all in VLAN 100; pod-fwd's network-status annotation is built from its
#   two device-info files, as Multus would, and is all the pod sees of them
#   (downward-API file /etc/podinfo/annotations; the node's device-info
#   directory is hidden); its /dev/vfio holds both groups;
#   dpdk-fwd runs with no EAL arguments: discovery finds both VFs, the
#   hugetlbfs mount and the file prefix; testpmd txonly in pod-gen sends to
#   VF 0's MAC; dpdk-fwd receives on port 0 and forwards out port 1;
#   DEL of all three, in the reverse order, restores every VF and its
#   netdev's name.
# Needs dpdk-fwd built in the dpdk workspace (make vm-test does it):
#   cd dpdk && CARGO_TARGET_DIR=../target/dpdk cargo build --bin dpdk-fwd
# Run:  tests/vm/run.sh tests/vm/scenarios/fwd.sh
. "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
. "$(dirname "${BASH_SOURCE[0]}")/../cni.sh"
trap testpmd_cleanup EXIT

fwd_bin > /dev/null   # fails early when dpdk-fwd is not built
MAC0=02:00:00:00:0f:00
MAC1=02:00:00:00:0f:01
MAC2=02:00:00:00:0f:02
cni_reset_node 3
VF0=$(vf_bdf 0); VF1=$(vf_bdf 1); VF2=$(vf_bdf 2)
LINE0=$(vf_line 0); LINE1=$(vf_line 1); LINE2=$(vf_line 2)
STATE0=$(device_state "$VF0"); STATE1=$(device_state "$VF1"); STATE2=$(device_state "$VF2")

conf() { netconf "$1" --arg mac "$2" '. + {vlan: 100, mac: $mac, spoofchk: "off"}'; }
CONF0=$(conf "$VF0" "$MAC0"); CONF1=$(conf "$VF1" "$MAC1"); CONF2=$(conf "$VF2" "$MAC2")
pod_create pod-fwd
pod_create pod-gen
cni_add pod-fwd net1 "$CONF0"; assert_cni_ok "ADD $VF0 for pod-fwd as net1"
cni_add pod-fwd net2 "$CONF1"; assert_cni_ok "ADD $VF1 for pod-fwd as net2"
cni_add pod-gen net1 "$CONF2"; assert_cni_ok "ADD $VF2 for pod-gen as net1"
G0=$(iommu_group "$VF0"); G1=$(iommu_group "$VF1")

# The pod's network-status annotation, as Multus writes it.
ANNOTATIONS=$CNI_WORK/pod-fwd.annotations
pod_annotations "$ANNOTATIONS" pod-fwd net1 net2
log "pod-fwd annotations: $(< "$ANNOTATIONS")"

# The traffic source: testpmd txonly on VF 2, addressed to VF 0.
testpmd_start pod-gen pod-gen "$(devinfo_path pod-gen)" --forward-mode=txonly --eth-peer="0,$MAC0"
testpmd_wait_stat pod-gen TX-packets

# dpdk-fwd with no EAL arguments: everything from discovery.
FWD_LOG=$CNI_WORK/pod-fwd.log
log "dpdk-fwd in pod-fwd (/dev/vfio/{vfio,$G0,$G1}), no EAL arguments"
rc=0
fwd_run pod-fwd "$G0,$G1" "$ANNOTATIONS" "$FWD_LOG" --duration 8 --stats-period 2 || rc=$?
testpmd_stop pod-gen
grep -a -E '^(discovery|eal-args|stats|fwd-result)' "$FWD_LOG" || tail -n 30 "$FWD_LOG"
assert_eq 0 "$rc" "dpdk-fwd exit status"

EAL=$(grep -a '^eal-args: ' "$FWD_LOG")
assert_match "$EAL" "-a $VF0" "discovery: VF 0 from the network-status annotation"
assert_match "$EAL" "-a $VF1" "discovery: VF 1 from the network-status annotation"
assert_fails "discovery: no device of pod-gen" grep -q -- "-a $VF2" <<< "$EAL"
assert_match "$EAL" "--huge-dir /" "discovery: a hugetlbfs mount"
assert_match "$EAL" "--file-prefix " "discovery: a file prefix"
assert_gt "$(fwd_result "$FWD_LOG" rx)" 0 "dpdk-fwd received (port 0, from pod-gen)"
assert_gt "$(fwd_result "$FWD_LOG" forwarded)" 0 "dpdk-fwd forwarded"
assert_gt "$(fwd_result "$FWD_LOG" tx)" 0 "dpdk-fwd transmitted (port 1)"

# DEL in the reverse order: each VF's driver comes back with the first free
# ethN, which was another VF's name; DEL gives each its own name back.
cni_del pod-gen net1 "$CONF2"; assert_cni_ok "DEL pod-gen net1"
cni_del pod-fwd net2 "$CONF1"; assert_cni_ok "DEL pod-fwd net2"
cni_del pod-fwd net1 "$CONF0"; assert_cni_ok "DEL pod-fwd net1"
assert_vf_restored "$VF0" 0 "$LINE0" "$STATE0" "pod-fwd net1 DEL"
assert_vf_restored "$VF1" 1 "$LINE1" "$STATE1" "pod-fwd net2 DEL"
assert_vf_restored "$VF2" 2 "$LINE2" "$STATE2" "pod-gen DEL"
assert_no_state
pod_delete pod-fwd
pod_delete pod-gen
log "fwd: all assertions passed"
