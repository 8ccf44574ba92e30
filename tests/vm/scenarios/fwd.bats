#!/usr/bin/env bats
# dpdk-fwd (the Rust forwarder of dpdk/) in a pod with two VFs, started from
# discovery alone:
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
# Run:  tests/vm/run.sh tests/vm/scenarios/fwd.bats [-f REGEX]

load helpers

setup_file() {
    untrace_helpers
    fwd_bin > /dev/null   # fails early when dpdk-fwd is not built
    export MAC0=02:00:00:00:0f:00 MAC1=02:00:00:00:0f:01 MAC2=02:00:00:00:0f:02
    export FWD_LOG=$CNI_WORK/pod-fwd.log
    cni_reset_node 3
    VF0=$(vf_bdf 0); VF1=$(vf_bdf 1); VF2=$(vf_bdf 2)
    INFO0=$(vf_info 0); INFO1=$(vf_info 1); INFO2=$(vf_info 2)
    STATE0=$(device_state "$VF0"); STATE1=$(device_state "$VF1"); STATE2=$(device_state "$VF2")
    CONF0=$(conf "$VF0" "$MAC0"); CONF1=$(conf "$VF1" "$MAC1"); CONF2=$(conf "$VF2" "$MAC2")
    export VF0 VF1 VF2 INFO0 INFO1 INFO2 STATE0 STATE1 STATE2 CONF0 CONF1 CONF2
    pod_create pod-fwd
    pod_create pod-gen
}

teardown_file() {
    pod_delete pod-fwd
    pod_delete pod-gen
}

setup() { scenario_setup chain; }
teardown() { scenario_teardown; }

conf() { netconf "$1" --arg mac "$2" '. + {vlan: 100, mac: $mac, spoofchk: "off"}'; }

@test "ADD VF 0 (net1) and VF 1 (net2) for pod-fwd, VF 2 (net1) for pod-gen" {
    cni_add pod-fwd net1 "$CONF0"; assert_cni_ok "ADD $VF0 for pod-fwd as net1"
    cni_add pod-fwd net2 "$CONF1"; assert_cni_ok "ADD $VF1 for pod-fwd as net2"
    cni_add pod-gen net1 "$CONF2"; assert_cni_ok "ADD $VF2 for pod-gen as net1"
}

@test "dpdk-fwd with no EAL arguments finds pod-fwd's two VFs from its annotation and forwards what testpmd in pod-gen sends to VF 0" {
    G0=$(iommu_group "$VF0"); G1=$(iommu_group "$VF1")
    # The pod's network-status annotation, as Multus writes it.
    ANNOTATIONS=$CNI_WORK/pod-fwd.annotations
    pod_annotations "$ANNOTATIONS" pod-fwd net1 net2
    log "pod-fwd annotations: $(< "$ANNOTATIONS")"
    # The traffic source: testpmd txonly on VF 2, addressed to VF 0.
    testpmd_start pod-gen pod-gen "$(devinfo_path pod-gen)" --forward-mode=txonly --eth-peer="0,$MAC0"
    testpmd_wait_stat pod-gen TX-packets
    # dpdk-fwd with no EAL arguments: everything from discovery.
    log "dpdk-fwd in pod-fwd (/dev/vfio/{vfio,$G0,$G1}), no EAL arguments"
    rc=0
    fwd_run pod-fwd "$G0,$G1" "$ANNOTATIONS" "$FWD_LOG" --duration 8 --stats-period 2 || rc=$?
    testpmd_stop pod-gen
    grep -a -E '^(discovery|eal-args|stats|fwd-result)' "$FWD_LOG" || tail -n 30 "$FWD_LOG"
    assert_equal "$rc" 0

    # discovery: both VFs of pod-fwd, none of pod-gen, a hugetlbfs mount, a file prefix
    EAL=$(grep -a '^eal-args: ' "$FWD_LOG")
    assert_regex "$EAL" "-a $VF0"
    assert_regex "$EAL" "-a $VF1"
    refute_regex "$EAL" "-a $VF2"
    assert_regex "$EAL" "--huge-dir /"
    assert_regex "$EAL" "--file-prefix "
    # received on port 0 (from pod-gen), forwarded, transmitted on port 1
    assert [ "$(fwd_result "$FWD_LOG" rx)" -gt 0 ]
    assert [ "$(fwd_result "$FWD_LOG" forwarded)" -gt 0 ]
    assert [ "$(fwd_result "$FWD_LOG" tx)" -gt 0 ]
}

@test "DEL of all three in the reverse order restores every VF and its netdev's name" {
    # Each VF's driver comes back with the first free ethN, which was another
    # VF's name; DEL gives each its own name back.
    cni_del pod-gen net1 "$CONF2"; assert_cni_ok "DEL pod-gen net1"
    cni_del pod-fwd net2 "$CONF1"; assert_cni_ok "DEL pod-fwd net2"
    cni_del pod-fwd net1 "$CONF0"; assert_cni_ok "DEL pod-fwd net1"
    assert_vf_restored "$VF0" 0 "$INFO0" "$STATE0" "pod-fwd net1 DEL"
    assert_vf_restored "$VF1" 1 "$INFO1" "$STATE1" "pod-fwd net2 DEL"
    assert_vf_restored "$VF2" 2 "$INFO2" "$STATE2" "pod-gen DEL"
    assert_no_state
}
