#!/usr/bin/env bats
# Dynamic Resource Allocation on the real node of the Kubernetes tier
# (tests/k8s/node.bash: containerd with CDI, the kubelet, the scheduler on
# the host), with the project's manifests as a user applies them:
#   docker/k8s/dra (DeviceClass, DaemonSet of `dpdk-cni-node dra`) publishes
#   the guest's VFs as a ResourceSlice with their attributes;
#   a pod with docker/k8s/dra's ResourceClaimTemplate gets a VF that the
#   driver bound to vfio-pci, with the claim's VLAN, before the pod's sandbox
#   was created; dpdk-testpmd transmits with only what CDI put in the
#   container; deleting the pod restores the VF (driver, netdev, PF's vf line);
#   two pods get two VFs; a NAD's attachment holds the third, so the slice
#   leaves it out and a fourth pod waits with the scheduler's reason until the
#   attachment is gone; a NAD cannot take a VF a claim holds;
#   a CEL selector on numaNode picks only devices on that node;
#   kill -9 of the driver while a claim is prepared: the kubelet's Unprepare
#   reaches the restarted driver and the VF comes back.
# The guest has two NUMA nodes, the NIC and the hugepages on node 1 (the
# line below; VM_NUMA in tests/vm/run.sh).
# vm: numa
# One testpmd pod of 512 MiB of hugepages at a time (the pods that only hold
# a claim ask for none), so node 1 keeps memory of its own:
# vm: hugepages=512
# Needs tests/k8s/run.sh (make k8s-test).  Run: tests/k8s/run.sh [-f REGEX]

load helpers
# shellcheck source=../../k8s/node.bash
. "$DPDK_CNI_REPO/tests/k8s/node.bash"

NUM_VFS=3
DRIVER=vf.dpdk-cni.io
MANIFESTS=$DPDK_CNI_REPO/docker/k8s
DRA_LOG_GLOB="/var/log/pods/kube-system_dpdk-cni-dra-*/dpdk-cni-dra/*.log"

k8s_debug() {
    k8s_logs_tail 25
    local f
    for f in /var/log/pods/*/*/*.log; do
        [ -f "$f" ] || continue
        echo "--- $f"
        tail -n 25 "$f"
    done
    echo "--- pods"
    kc get pods -A -o wide 2>&1 || true
    kc get pods -A -o json 2>/dev/null | jq -r '.items[] | .metadata.name as $n |
        .status.conditions[]? | select(.type == "PodScheduled" and .status != "True") | "\($n): \(.message)"' || true
    echo "--- resourceclaims"
    kc get resourceclaims -A -o json 2>/dev/null | jq -c '.items[] | {name: .metadata.name, alloc: .status.allocation.devices.results}' || true
    echo "--- events"
    kc get events -A --sort-by=.lastTimestamp 2>&1 | tail -n 25 || true
}

setup_file() {
    untrace_helpers
    [ -n "${K8S_CP_DIR:-}" ] || fail "run through tests/k8s/run.sh: no control plane"
    cni_reset_node 0
    # The VFs start on their kernel driver, as created: Prepare binds them.
    create_vfs "$NUM_VFS"
    k8s_node_up || { k8s_debug; fail "the node did not come up"; }
}

teardown_file() {
    kc delete pod --all --wait=true --timeout=120s > /dev/null 2>&1 || true
    kc delete -k "$MANIFESTS/dra" --wait=true --timeout=120s > /dev/null 2>&1 || true
    k8s_node_down
}

setup() { scenario_setup chain; }
teardown() {
    [ -n "${BATS_TEST_COMPLETED:-}" ] || [ -n "${BATS_TEST_SKIPPED:-}" ] || k8s_debug
    scenario_teardown
}

dra_log() { cat $DRA_LOG_GLOB 2>/dev/null; }
# slice_json: the devices of our driver's slices on this node.
slice_devices() {
    kc get resourceslices -o json | jq -c --arg d "$DRIVER" --arg n "$K8S_NODE" \
        '[.items[] | select(.spec.driver == $d and .spec.nodeName == $n) | .spec.devices[]]'
}
slice_count_is() { [ "$(slice_devices | jq length)" = "$1" ]; }
slice_has() { slice_devices | jq -e --arg a "$1" 'any(.attributes.pciAddress.string == $a)'; }
slice_lacks() { ! slice_has "$1"; }
# pod_claim_device POD: the PCI address of the device the pod's claim was allocated.
pod_claim_device() {
    local claim
    claim=$(kc get pod "$1" -o json | jq -r '.status.resourceClaimStatuses[0].resourceClaimName')
    kc get resourceclaim "$claim" -o json |
        jq -r --arg d "$DRIVER" '.status.allocation.devices.results[] | select(.driver == $d) | .device' |
        sed -E 's/^pci-([0-9a-f]{4})-([0-9a-f]{2})-([0-9a-f]{2})-([0-7])$/\1:\2:\3.\4/'
}
# dra_hold_pod NAME [TEMPLATE]: the same pod holding its claim with `sleep`
# instead of testpmd (CDI's devices still reach it): a testpmd busy-polls a
# whole vCPU of this emulated guest, and these pods only need the VF.  sleep
# as PID 1 ignores SIGTERM: a grace period of 1 s keeps deletes short.  No
# hugepages: sleep needs none.
dra_hold_pod() {
    kc create --dry-run=client -o json -f "$MANIFESTS/dra/testpmd-pod.yaml" |
        jq --arg n "$1" --arg t "${2:-dpdk-vf}" \
            '.metadata.name = $n | .spec.resourceClaims[0].resourceClaimTemplateName = $t |
             .spec.terminationGracePeriodSeconds = 1 |
             .spec.volumes = [] | .spec.containers[0].volumeMounts = [] |
             .spec.containers[0].resources.requests |= del(.["hugepages-2Mi"]) |
             .spec.containers[0].resources.limits |= del(.["hugepages-2Mi"]) |
             .spec.containers[0].command = ["sleep", "3600"] | .spec.containers[0].args = []' |
        kc apply -f -
}
unschedulable() {
    kc get pod "$1" -o json | jq -e '.status.conditions[]? |
        select(.type == "PodScheduled" and .reason == "Unschedulable")'
}
vf_of_bdf_state() { # BDF: driver, netdev names and the PF's vf line of the VF
    local i
    i=$(vf_index "$1")
    echo "$(device_state "$1") | $(vf_info "$i")"
}
# epoch of containerd's RunPodSandbox line for POD
sandbox_started_at() {
    local t
    t=$(grep -aF "RunPodSandbox for name:\\\"$1\\\"" "$K8S_LOGS/containerd.log" | head -n1 |
        sed -E 's/^time="([^"]+)".*/\1/')
    [ -n "$t" ] && date -d "$t" +%s.%N
}

@test "DRA: the driver's DaemonSet publishes every VF in a ResourceSlice with its attributes" {
    local t0 i bdf dev pf
    kc label node "$K8S_NODE" feature.node.kubernetes.io/network-sriov.capable=true --overwrite
    kc apply -f "$MANIFESTS/sriovdp-config.yaml" -f "$MANIFESTS/configmap.yaml"
    t0=$(k8s_now)
    kc apply -k "$MANIFESTS/dra"
    kc -n kube-system rollout status daemonset/dpdk-cni-dra --timeout=600s
    k8s_wait "ResourceSlice with $NUM_VFS devices" 120 slice_count_is "$NUM_VFS"
    tap_note "DRA DaemonSet applied -> slice with $NUM_VFS devices in $(k8s_since "$t0")s"
    [ -x /opt/cni/bin/dpdk-cni ] || fail "the init container did not install the plugin"
    slice_devices | jq .
    pf=$(pf_ifname)
    for ((i = 0; i < NUM_VFS; i++)); do
        bdf=$(vf_bdf "$i")
        dev=$(slice_devices | jq -c --arg a "$bdf" '.[] | select(.attributes.pciAddress.string == $a)')
        [ -n "$dev" ] || fail "VF $i ($bdf) is not in the slice"
        assert_eq "pci-${bdf//[:.]/-}" "$(jq -r .name <<< "$dev")" "device name of $bdf"
        assert_eq "$pf" "$(jq -r .attributes.pfName.string <<< "$dev")" "pfName of $bdf"
        assert_eq "$(pf_bdf)" "$(jq -r .attributes.pfPciAddress.string <<< "$dev")" "pfPciAddress of $bdf"
        assert_eq "$i" "$(jq -r .attributes.vfIndex.int <<< "$dev")" "vfIndex of $bdf"
        assert_eq "8086/10ca" "$(jq -r '"\(.attributes.vendor.string)/\(.attributes.device.string)"' <<< "$dev")" "vendor/device of $bdf"
        assert_eq "$VF_DRIVER" "$(jq -r .attributes.driver.string <<< "$dev")" "driver of $bdf"
        assert_eq "$(iommu_group "$bdf")" "$(jq -r .attributes.iommuGroup.int <<< "$dev")" "iommuGroup of $bdf"
        assert_eq "intel.com/intel_sriov_dpdk" "$(jq -r .attributes.pool.string <<< "$dev")" "pool of $bdf"
        assert_match "$(jq -r '.attributes["resource.kubernetes.io/pcieRoot"].string' <<< "$dev")" '^pci[0-9a-f]{4}:[0-9a-f]{2}$' "pcieRoot of $bdf"
        local numa
        numa=$(< "/sys/bus/pci/devices/$bdf/numa_node")
        if [ "$numa" -ge 0 ]; then
            assert_eq "$numa" "$(jq -r .attributes.numaNode.int <<< "$dev")" "numaNode of $bdf"
        else
            assert_eq null "$(jq -r .attributes.numaNode <<< "$dev")" "numaNode of $bdf (none in sysfs)"
        fi
    done
    # The kubelet took the driver's registration.
    k8s_wait "DRA plugin registered" 60 grep -q "$DRIVER: registered with the kubelet" $DRA_LOG_GLOB
}

@test "DRA: a pod's claim gets a VF bound to vfio-pci with the claim's VLAN before its sandbox; testpmd transmits with what CDI gave; delete restores the VF" {
    local t0 bdf i before=() prepared_at sandbox_at uid cdi
    for ((i = 0; i < NUM_VFS; i++)); do before[i]=$(vf_of_bdf_state "$(vf_bdf "$i")"); done
    kc apply -f "$MANIFESTS/dra/claim-templates.yaml"
    t0=$(k8s_now)
    kc apply -f "$MANIFESTS/dra/testpmd-pod.yaml"
    k8s_wait "pod dpdk-testpmd-dra Running" 180 k8s_pod_running dpdk-testpmd-dra
    tap_note "DRA testpmd pod created -> Running in $(k8s_since "$t0")s"
    k8s_wait "dpdk-testpmd-dra transmitting" 120 k8s_pod_stat_positive dpdk-testpmd-dra TX-packets
    bdf=$(pod_claim_device dpdk-testpmd-dra)
    [ -n "$bdf" ] || fail "the pod's claim has no device of $DRIVER"
    # dpdk-discover found exactly the claimed VF in what CDI injected.
    assert_eq "$bdf" "$(k8s_pod_vf dpdk-testpmd-dra)" "the VF in dpdk-discover's EAL arguments"
    # The VF's NUMA node (1 in this guest) has the memory and the lcores:
    # testpmd then builds no mbuf pool on a node without hugepages.
    local node eal
    node=$(< "/sys/bus/pci/devices/$bdf/numa_node")
    eal=$(k8s_pod_log dpdk-testpmd-dra | grep -a 'dpdk-discover: eal-args:' | tail -n1)
    assert_match "$eal" "-l $(< "/sys/devices/system/node/node$node/cpulist") " "lcores of the pod (node $node's CPUs)"
    assert_match "$eal" "--socket-mem 0,256 " "memory of the pod (node $node only)"
    k8s_pod_log dpdk-testpmd-dra | grep -a 'dpdk-discover:' | head -n 5
    i=$(vf_index "$bdf")
    assert_eq vfio-pci "$(pci_driver "$bdf")" "driver of the claimed VF"
    assert_vf "$i" '.vlan_list[0].vlan == 100 and .spoofchk == false'
    # Prepared (bound, VLAN set) before containerd created the sandbox.
    prepared_at=$(dra_log | grep -a "prepared pci-${bdf//[:.]/-} ($bdf) on vfio-pci" | head -n1 | awk '{print $4}')
    [ -n "$prepared_at" ] || { dra_log | tail -n 20; fail "no 'prepared' line in the driver's log"; }
    sandbox_at=$(sandbox_started_at dpdk-testpmd-dra) || fail "no RunPodSandbox line for the pod in containerd's log"
    awk -v p="$prepared_at" -v s="$sandbox_at" 'BEGIN{exit !(p < s)}' ||
        fail "prepared at $prepared_at, not before the sandbox ($sandbox_at)"
    tap_note "VF $bdf prepared $(awk -v p="$prepared_at" -v s="$sandbox_at" 'BEGIN{printf "%.2f", s-p}')s before the sandbox"
    # The container got its devices through CDI only: no extended resource.
    uid=$(kc get resourceclaim "$(kc get pod dpdk-testpmd-dra -o json | jq -r '.status.resourceClaimStatuses[0].resourceClaimName')" -o jsonpath='{.metadata.uid}')
    cdi=/var/run/cdi/dpdk-cni-dra-$uid.json
    [ -f "$cdi" ] || fail "no CDI spec $cdi"
    jq -c '.containerEdits.env, [.devices[].containerEdits.deviceNodes[].path]' "$cdi"
    assert_eq "null" "$(kc get pod dpdk-testpmd-dra -o json | jq -c '.spec.containers[0].resources.limits["intel.com/intel_sriov_dpdk"]')" "extended resource of the pod"
    # The same VF through a NAD's netconf: refused, nothing changes. (The
    # vfio-pci mode needs no network namespace: none is made, since `ip netns
    # add` would share /run/netns and keep containerd from removing the pods'.)
    local snap
    snap=$(node_snapshot)
    cni_add nad-pod net1 "$(netconf "$bdf")"
    assert_cni_err 101 "a NAD's ADD of the claimed VF" "ResourceClaim $uid"
    assert_snapshot_eq "$snap" "$(node_snapshot)" "the refused ADD"
    # The pod's own NAD, as Multus calls the plugin for it with the claim's
    # device as deviceID: the VF is used as it is (no rebind), and its DEL
    # leaves the VF to the claim.
    local pod_uid tx
    pod_uid=$(kc get pod dpdk-testpmd-dra -o jsonpath='{.metadata.uid}')
    cni_add nad-pod net1 "$(netconf "$bdf")" \
        CNI_ARGS="IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=dpdk-testpmd-dra;K8S_POD_UID=$pod_uid"
    assert_cni_ok "the claim's own pod's NAD ADD of its VF"
    assert_eq "$bdf" "$(jq -r '.interfaces[0].pciID' <<< "$CNI_OUT")" "pciID in the result"
    cni_del nad-pod net1 "$(netconf "$bdf")" \
        CNI_ARGS="IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=dpdk-testpmd-dra;K8S_POD_UID=$pod_uid"
    assert_cni_ok "its DEL"
    assert_eq vfio-pci "$(pci_driver "$bdf")" "driver of the claimed VF after the NAD's DEL"
    assert_vf "$i" '.vlan_list[0].vlan == 100'
    tx=$(k8s_pod_stat dpdk-testpmd-dra TX-packets)
    k8s_wait "dpdk-testpmd-dra still transmitting" 60 k8s_pod_stat_more dpdk-testpmd-dra TX-packets "$tx"
    # Deleting the pod gives the VF back as it was.
    t0=$(k8s_now)
    kc delete pod dpdk-testpmd-dra --wait=true --timeout=180s
    k8s_wait "VF $bdf back on $VF_DRIVER" 120 _driver_is "$bdf" "$VF_DRIVER"
    wait_for 10 "netdev of $bdf" _vf_has_netdev "$bdf"
    tap_note "DRA pod deleted, VF back on $VF_DRIVER in $(k8s_since "$t0")s"
    assert_eq "${before[i]}" "$(vf_of_bdf_state "$bdf")" "VF $i after Unprepare (driver, override, netdev, PF's vf entry)"
    [ ! -e "$cdi" ] || fail "the claim's CDI spec is still there"
    assert_eq "" "$(ledger_files)" "ledger files after Unprepare"
}

@test "DRA: two claims get two VFs; a NAD's attachment takes the third out of the slice; a fourth pod waits with the scheduler's reason, then runs" {
    local a b held i
    held=$(vf_bdf 2)
    # A NAD's attachment on VF 2, as Multus would make it for a pod. There
    # is no such pod (no Multus here), so the node's allocation check, which
    # asks the kubelet which pod was given the VF, is off for the call.
    cp /etc/dpdk-cni/node.json "$BATS_TEST_TMPDIR/node.json"
    jq '.allocationCheck = false' "$BATS_TEST_TMPDIR/node.json" > /etc/dpdk-cni/node.json
    cni_add nad-pod net1 "$(netconf "$held")"
    assert_cni_ok "a NAD's ADD of VF 2"
    k8s_wait "VF 2 out of the slice" 60 slice_lacks "$held"
    # Both at once: the kubelet prepares their claims side by side.
    dra_hold_pod dra-a
    dra_hold_pod dra-b
    k8s_wait "pod dra-a Running" 180 k8s_pod_running dra-a
    k8s_wait "pod dra-b Running" 180 k8s_pod_running dra-b
    a=$(pod_claim_device dra-a); b=$(pod_claim_device dra-b)
    assert_ne "$a" "$b" "the two pods' VFs"
    for i in "$a" "$b"; do
        assert_ne "$held" "$i" "a claimed VF"
        assert_eq vfio-pci "$(pci_driver "$i")" "driver of claimed $i"
    done
    dra_hold_pod dra-c
    k8s_wait "dra-c Unschedulable" 120 unschedulable dra-c
    tap_note "dra-c: $(kc get pod dra-c -o json | jq -r '.status.conditions[] | select(.type == "PodScheduled") | .message')"
    assert_ne Running "$(k8s_pod_phase dra-c)" "dra-c's phase"
    # The attachment goes: the VF is back in the slice, and dra-c gets it.
    cni_del nad-pod net1 "$(netconf "$held")"
    assert_cni_ok "DEL of the NAD's attachment"
    cp "$BATS_TEST_TMPDIR/node.json" /etc/dpdk-cni/node.json
    k8s_wait "VF 2 back in the slice" 60 slice_has "$held"
    k8s_wait "pod dra-c Running" 180 k8s_pod_running dra-c
    assert_eq "$held" "$(pod_claim_device dra-c)" "dra-c's VF"
    kc delete pod dra-a dra-b dra-c --wait=true --timeout=180s
    for ((i = 0; i < NUM_VFS; i++)); do
        k8s_wait "VF $i back on $VF_DRIVER" 60 _driver_is "$(vf_bdf "$i")" "$VF_DRIVER"
    done
    assert_eq "" "$(ledger_files)" "ledger files after the pods"
}

@test "DRA: a CEL selector on numaNode picks only the devices on that NUMA node" {
    local node i bdf other
    # The tier's guest (VM_NUMA=1) has its igb on NUMA node 1.
    node=$(< "/sys/bus/pci/devices/$(vf_bdf 0)/numa_node")
    [ "$node" -ge 0 ] || fail "the VFs have no NUMA node: the tier boots the guest with VM_NUMA=1"
    for ((i = 0; i < NUM_VFS; i++)); do
        assert_eq "$node" "$(< "/sys/bus/pci/devices/$(vf_bdf "$i")/numa_node")" "NUMA node of VF $i"
    done
    other=$(( node == 0 ? 1 : 0 ))
    # claim-templates.yaml's dpdk-vf-numa0, its node changed, under another name.
    numa_template() {
        kc get resourceclaimtemplate dpdk-vf-numa0 -o json |
            jq --arg n "dpdk-vf-numa$1" --argjson node "$1" \
                'del(.metadata.uid, .metadata.resourceVersion, .metadata.creationTimestamp, .metadata.managedFields) |
                 .metadata.name = $n |
                 .spec.spec.devices.requests[0].exactly.selectors[0].cel.expression |= sub("== 0$"; "== \($node)")' |
            kc apply -f -
    }
    [ "$other" = 0 ] || numa_template "$other"
    [ "$node" = 0 ] || numa_template "$node"
    kc get resourceclaimtemplate "dpdk-vf-numa$node" -o jsonpath='{.spec.spec.devices.requests[0].exactly.selectors[0].cel.expression}' |
        grep -q "numaNode == $node" || fail "the template for node $node does not select it"
    # Node $other has no VF: that claim cannot be allocated.
    dra_hold_pod "dra-numa$other" "dpdk-vf-numa$other"
    k8s_wait "dra-numa$other Unschedulable" 120 unschedulable "dra-numa$other"
    tap_note "node $other: $(kc get pod "dra-numa$other" -o json | jq -r '.status.conditions[] | select(.type == "PodScheduled") | .message')"
    # Node $node has them all: the pod runs with one.
    dra_hold_pod "dra-numa$node" "dpdk-vf-numa$node"
    k8s_wait "pod dra-numa$node Running" 180 k8s_pod_running "dra-numa$node"
    bdf=$(pod_claim_device "dra-numa$node")
    [ -n "$bdf" ] || fail "dra-numa$node has no device"
    assert_eq "$node" "$(< "/sys/bus/pci/devices/$bdf/numa_node")" "NUMA node of dra-numa$node's VF $bdf"
    assert_eq vfio-pci "$(pci_driver "$bdf")" "driver of $bdf"
    k8s_pod_running "dra-numa$other" && fail "dra-numa$other runs without a VF on node $other"
    kc delete pod "dra-numa$other" "dra-numa$node" --wait=true --timeout=180s
    k8s_wait "VF $bdf back on $VF_DRIVER" 120 _driver_is "$bdf" "$VF_DRIVER"
}

@test "DRA: kill -9 of the driver while a claim is prepared; the restarted driver unprepares it when the pod goes" {
    local bdf pid i before
    dra_hold_pod dra-k
    k8s_wait "pod dra-k Running" 180 k8s_pod_running dra-k
    bdf=$(pod_claim_device dra-k)
    assert_eq vfio-pci "$(pci_driver "$bdf")" "driver of claimed $bdf"
    pid=$(pgrep -f 'dpdk-cni-node dra' | head -n1)
    [ -n "$pid" ] || fail "no dpdk-cni-node dra process"
    kill -9 "$pid"
    k8s_wait "the driver running again" 120 pgrep -f 'dpdk-cni-node dra'
    kc -n kube-system rollout status daemonset/dpdk-cni-dra --timeout=180s
    kc delete pod dra-k --wait=true --timeout=180s
    k8s_wait "VF $bdf back on $VF_DRIVER" 120 _driver_is "$bdf" "$VF_DRIVER"
    assert_eq "" "$(ledger_files)" "ledger files after the pod"
    for ((i = 0; i < NUM_VFS; i++)); do
        assert_eq "$VF_DRIVER" "$(pci_driver "$(vf_bdf "$i")")" "driver of VF $i"
    done
}
