#!/usr/bin/env bats
# A real Kubernetes node on the SR-IOV guest: containerd and the kubelet
# (tests/k8s/node.bash) joined to the control plane tests/k8s/run.sh started
# on the host; then the project's manifests as a user applies them:
#   the DaemonSet from docker/k8s (kubectl apply -k) with the example pools
#   (sriovdp-config.yaml) is Running and Ready; its init container installed
#   dpdk-cni into the kubelet's CNI directory; its device plugin registered
#   with the kubelet: the Node's capacity and allocatable of the pool's
#   resource equal the VFs; the Node carries the free-VF annotations;
#   the testpmd pod of docker/k8s (resource, hugepages) runs dpdk-testpmd
#   with EAL arguments dpdk-discover finds from what the pod sees, on a VF the
#   kubelet allocated, and transmits; a second pod on another VF receives
#   its frames (rxonly) through the NIC's VF switch;
#   kill -9 of the daemon's container and a kubelet restart while a pod holds
#   a VF: the plugin registers again, a new pod gets a VF no other pod has;
#   deleting the pods gives the VFs back to allocatable.
# Three testpmd pods of 512 MiB of hugepages each:
# vm: hugepages=768
# Needs tests/k8s/run.sh (make k8s-test): it builds and passes everything.
# Run:  tests/k8s/run.sh [-f REGEX]

load helpers
# shellcheck source=../../k8s/node.bash
. "$DPDK_CNI_REPO/tests/k8s/node.bash"

NUM_VFS=3
vf_mac() { printf '02:00:00:00:0b:%02x' "$1"; }
RESOURCE=intel.com/intel_sriov_dpdk
MANIFESTS=$DPDK_CNI_REPO/docker/k8s

# A test that fails shows the daemons' and the pods' last words.
k8s_debug() {
    k8s_logs_tail 25
    local f
    for f in /var/log/pods/*/*/*.log; do
        [ -f "$f" ] || continue
        echo "--- $f"
        case $f in
            */testpmd/*) grep -av '^[^ ]* stdout F   \|Port statistics\|\[2J' "$f" | head -n 60 ;;
        esac
        tail -n 20 "$f"
    done
    echo "--- pods"
    kc get pods -A -o wide 2>&1 || true
    echo "--- why pods are not scheduled"
    kc get pods -A -o json 2>/dev/null | jq -r '.items[] | .metadata.name as $n |
        .status.conditions[]? | select(.type == "PodScheduled" and .status != "True") | "\($n): \(.message)"' || true
    kc describe node "$K8S_NODE" 2>/dev/null | sed -n '/Allocated resources/,/Events/p' || true
    echo "--- events"
    kc get events -A --sort-by=.lastTimestamp 2>&1 | tail -n 25 || true
}

setup_file() {
    untrace_helpers
    [ -n "${K8S_CP_DIR:-}" ] || fail "run through tests/k8s/run.sh: no control plane"
    cni_reset_node 0
    create_vfs "$NUM_VFS"
    # Without Multus (see tests/k8s/README.md) no CNI ADD binds a VF: the
    # VFs are on vfio-pci before the daemon starts, each with its MAC set
    # through the PF, as the device plugin alone needs them.
    local i pf
    pf=$(pf_ifname)
    for ((i = 0; i < NUM_VFS; i++)); do
        ip link set "$pf" vf "$i" mac "$(vf_mac "$i")"
        bind_vfio "$(vf_bdf "$i")" > /dev/null
    done
    k8s_node_up || { k8s_debug; fail "the node did not come up"; }
}

teardown_file() {
    k8s_node_down
}

setup() { scenario_setup chain; }
teardown() {
    [ -n "${BATS_TEST_COMPLETED:-}" ] || [ -n "${BATS_TEST_SKIPPED:-}" ] || k8s_debug
    scenario_teardown
}

# node_resource capacity|allocatable: the Node's count of the pool's resource.
node_resource() {
    kc get node "$K8S_NODE" -o json | jq -r --arg r "$RESOURCE" --arg f "$1" '.status[$f][$r] // "none"'
}
allocatable_is() { [ "$(node_resource allocatable)" = "$1" ]; }
registered_more_than() { [ "$(grep -c 'Got registration request from device plugin' "$K8S_LOGS/kubelet.log")" -gt "$1" ]; }
# unschedulable_for POD RESOURCE: the scheduler says the pod waits for RESOURCE.
unschedulable_for() {
    kc get pod "$1" -o json | jq -e --arg r "$2" '.status.conditions[]? |
        select(.type == "PodScheduled" and .reason == "Unschedulable") | .message | contains($r)'
}
annotated() { kc get node "$K8S_NODE" -o json | jq -e '.metadata.annotations["dpdk-cni.io/free-vfs"]'; }

@test "the DaemonSet from docker/k8s runs, installs the plugin and serves the pool to the kubelet" {
    local t0 n
    kc label node "$K8S_NODE" feature.node.kubernetes.io/network-sriov.capable=true
    kc apply -f "$MANIFESTS/sriovdp-config.yaml"
    kc apply -k "$MANIFESTS"
    t0=$(k8s_now)
    kc -n kube-system rollout status daemonset/dpdk-cni-node --timeout=600s
    tap_note "DaemonSet rolled out (pod Ready) in $(k8s_since "$t0")s"
    # The init container's copy is the image's plugin, and answers.
    [ -x /opt/cni/bin/dpdk-cni ] || fail "no /opt/cni/bin/dpdk-cni"
    CNI_COMMAND=VERSION /opt/cni/bin/dpdk-cni < /dev/null | jq -e '.supportedVersions | index("1.0.0")'
    [ -f /etc/dpdk-cni/node.json ] || fail "the node settings were not installed"
    # Registered with the real kubelet: capacity and allocatable are the VFs.
    k8s_wait "$RESOURCE in the Node's allocatable" 120 allocatable_is "$NUM_VFS"
    assert_eq "$NUM_VFS/$NUM_VFS" "$(node_resource capacity)/$(node_resource allocatable)" \
        "capacity/allocatable of $RESOURCE"
    # The daemon keeps the Node's free-VF annotation and label.
    k8s_wait "free-VF annotation" 60 annotated
    kc get node "$K8S_NODE" -o json | jq '.metadata.annotations | with_entries(select(.key | startswith("dpdk-cni.io/")))'
    assert_eq "$NUM_VFS" "$(kc get node "$K8S_NODE" -o json | jq -r '.metadata.annotations["dpdk-cni.io/free-vfs"]')" \
        "free-VF annotation"
    assert_eq true "$(kc get node "$K8S_NODE" -o json | jq -r '.metadata.labels["sriov/freeVFAvailable"]')" \
        "sriov/freeVFAvailable label"
}

@test "the testpmd pod of docker/k8s starts dpdk-testpmd with what dpdk-discover finds, and transmits" {
    local t0 bdf
    t0=$(k8s_now)
    kc apply -f "$MANIFESTS/testpmd-pod.yaml"
    k8s_wait "pod dpdk-testpmd Running" 180 k8s_pod_running dpdk-testpmd
    tap_note "testpmd pod created -> Running in $(k8s_since "$t0")s"
    k8s_wait "dpdk-testpmd transmitting" 120 k8s_pod_stat_positive dpdk-testpmd TX-packets
    k8s_pod_log dpdk-testpmd | grep -a 'dpdk-discover:'
    bdf=$(k8s_pod_vf dpdk-testpmd)
    [ -n "$bdf" ] || fail "no -a <PCI address> in dpdk-discover's EAL arguments"
    vf_index "$bdf" > /dev/null
    assert_eq vfio-pci "$(pci_driver "$bdf")" "driver of the pod's VF $bdf"
    # The device plugin's env named it (the kubelet's checkpoint has it for the pod).
    grep -q "$bdf" /var/lib/kubelet/device-plugins/kubelet_internal_checkpoint ||
        fail "the kubelet's checkpoint does not hold $bdf"
    assert_gt "$(k8s_pod_stat dpdk-testpmd TX-packets)" 0 "TX-packets of the pod"
    # Its VF goes back to the pool with the pod.
    t0=$(k8s_now)
    kc delete pod dpdk-testpmd --wait=true --timeout=180s
    tap_note "testpmd pod deleted in $(k8s_since "$t0")s"
}

@test "a second pod on another VF receives the first pod's frames through the VF switch" {
    local rx_vf rx_mac tx_vf
    k8s_testpmd_pod testpmd-rx '["--forward-mode=rxonly", "--stats-period", "5"]'
    k8s_wait "pod testpmd-rx Running" 180 k8s_pod_running testpmd-rx
    k8s_wait "testpmd-rx forwarding" 120 k8s_pod_log_has testpmd-rx 'Port statistics'
    rx_vf=$(k8s_pod_vf testpmd-rx)
    [ -n "$rx_vf" ] || fail "testpmd-rx: no VF in its EAL arguments"
    rx_mac=$(vf_mac "$(vf_index "$rx_vf")")
    k8s_testpmd_pod testpmd-tx "[\"--forward-mode=txonly\", \"--eth-peer=0,$rx_mac\", \"--stats-period\", \"5\"]"
    k8s_wait "pod testpmd-tx Running" 180 k8s_pod_running testpmd-tx
    k8s_wait "testpmd-rx receiving" 120 k8s_pod_stat_positive testpmd-rx RX-packets
    tx_vf=$(k8s_pod_vf testpmd-tx)
    assert_ne "$rx_vf" "$tx_vf" "the sender's VF"
    tap_note "testpmd-rx ($rx_vf) received $(k8s_pod_stat testpmd-rx RX-packets) frames from testpmd-tx ($tx_vf)"
    RX_VF=$rx_vf TX_VF=$tx_vf
    share RX_VF TX_VF
}

@test "kill -9 of the daemon and a kubelet restart while pods hold VFs: the plugin registers again, nothing is allocated twice" {
    local regs pid t0 new_vf
    regs=$(grep -c 'Got registration request from device plugin' "$K8S_LOGS/kubelet.log")
    pid=$(pgrep -f 'dpdk-cni-node run' | head -n1)
    [ -n "$pid" ] || fail "no dpdk-cni-node run process"
    kill -9 "$pid"
    k8s_stop_pid kubelet
    t0=$(k8s_now)
    k8s_kubelet_start
    k8s_wait "the plugin registered again" 240 registered_more_than "$regs"
    tap_note "daemon killed, kubelet restarted: plugin registered again after $(k8s_since "$t0")s"
    k8s_wait "$RESOURCE back in allocatable" 120 allocatable_is "$NUM_VFS"
    kc -n kube-system rollout status daemonset/dpdk-cni-node --timeout=180s
    # The pods that held VFs still do, and still run.
    local p
    for p in testpmd-rx testpmd-tx; do
        k8s_pod_running "$p" || fail "$p is not Running after the restarts"
    done
    # One VF is left: a new pod gets exactly it; one more finds none.
    k8s_testpmd_pod testpmd-new '["--forward-mode=txonly", "--stats-period", "5"]'
    k8s_wait "pod testpmd-new Running" 180 k8s_pod_running testpmd-new
    k8s_wait "testpmd-new transmitting" 120 k8s_pod_stat_positive testpmd-new TX-packets
    new_vf=$(k8s_pod_vf testpmd-new)
    for p in "$RX_VF" "$TX_VF"; do assert_ne "$p" "$new_vf" "testpmd-new's VF"; done
    k8s_testpmd_pod testpmd-none '["--forward-mode=txonly"]'
    k8s_wait "testpmd-none Unschedulable" 120 unschedulable_for testpmd-none "$RESOURCE"
    kc get pod testpmd-none -o json | jq -r '.status.conditions[] | select(.type == "PodScheduled") | .message'
}

@test "deleting the pods gives every VF back: a pod waiting for one starts" {
    local t0
    t0=$(k8s_now)
    kc delete pod testpmd-rx testpmd-tx testpmd-new --wait=true --timeout=180s
    tap_note "3 pods deleted in $(k8s_since "$t0")s"
    # The pod that found no VF is scheduled now and runs.
    k8s_wait "pod testpmd-none Running" 180 k8s_pod_running testpmd-none
    kc delete pod testpmd-none --wait=true --timeout=180s
    # Every VF is where the node put it: on vfio-pci, with the MAC set through the PF.
    local i
    for ((i = 0; i < NUM_VFS; i++)); do
        assert_eq vfio-pci "$(pci_driver "$(vf_bdf "$i")")" "driver of VF $i"
        ip link show "$(pf_ifname)" | grep -q "vf $i .*link/ether $(vf_mac "$i")" ||
            fail "VF $i lost its MAC: $(ip link show "$(pf_ifname)" | grep "vf $i ")"
    done
}
