#!/usr/bin/env bats
# vm: noiommu
# The no-IOMMU flow on a real kernel, in a guest booted without an IOMMU and
# with vfio's unsafe no-IOMMU mode on (run.sh reads the line above; see its
# VM_NOIOMMU).  A VF then has no IOMMU group until vfio-pci takes it, so the
# node daemon binds it early, at Allocate:
#   the guest has no IOMMU, enable_unsafe_noiommu_mode reads Y, VF 0 and VF 1
#   are on igbvf without a group;
#   dpdk-cni-node with a vfio pool on the PF registers with a fake kubelet
#   (kubelet-sim), which allocates VF 0: the daemon records igbvf in the
#   state directory, binds VF 0 to vfio-pci and answers host
#   /dev/vfio/noiommu-N as the container's /dev/vfio/N, N being the
#   vfio-noiommu group the kernel made;
#   CNI ADD (deviceType vfio-pci, vlan, mac) of that deviceID: the result and
#   the device-info file report the group, /dev/vfio/noiommu-N and igbvf as
#   the original driver;
#   a second ADD of VF 0 for another container fails with 101 naming the
#   holder, and neither it nor the runtime's DEL after it changes anything;
#   dpdk-testpmd in a pod sandbox holding exactly what Allocate handed out
#   (host noiommu-N bound at /dev/vfio/N), with no EAL option for it, opens
#   VF 0 in no-IOMMU mode (the kernel logs it) and transmits with the ADD's
#   MAC;
#   DEL: VF 0 is back on igbvf with its netdev and vfinfo entry, the early
#   bind record, the no-IOMMU group and its node are gone;
#   SIGTERM stops the daemon cleanly.
#
# Needs the static plugin (make plugin) and the daemon and fake kubelet
# (cargo build -p dpdk-cni-node --bins --examples).
# Run:  tests/vm/run.sh tests/vm/scenarios/noiommu.bats [-f REGEX]

load helpers
load daemon

RESOURCE=intel.com/intel_sriov_dpdk
ENV_NAME=PCIDEVICE_INTEL_COM_INTEL_SRIOV_DPDK
POD=pod-noiommu
MAC=02:00:00:00:00:30
WORK=$CNI_WORK/noiommu
KDIR=$WORK/device-plugins
CONFIG=$WORK/config.json
NOIOMMU_PARAM=/sys/module/vfio/parameters/enable_unsafe_noiommu_mode

setup_file() {
    untrace_helpers
    cni_reset_node 2
    daemon_stage
    PF=$(pf_ifname); VF0=$(vf_bdf 0); VF1=$(vf_bdf 1)
    # The PF's VFs on igbvf or vfio-pci, the pool's hugetlbfs; no nodeSetup:
    # the VFs are the 2 the node was reset to.
    jq -cn --arg pf "$PF" '{
      resourceList: [{
        resourceName: "intel_sriov_dpdk", resourcePrefix: "intel.com",
        selectors: {vendors: ["8086"], devices: ["10ca"], drivers: ["igbvf", "vfio-pci"], pfNames: [$pf]},
        hugepages: {pageSize: "2Mi"}
      }]
    }' > "$CONFIG"
    export PF VF0 VF1
    log "daemon config $CONFIG: $(< "$CONFIG")"
}

teardown_file() {
    daemon_kill_all
    pod_delete "$POD"
    pod_delete pod-other
}

setup() { scenario_setup chain; }
teardown() {
    if [ -z "${BATS_TEST_COMPLETED:-}" ] && [ -z "${BATS_TEST_SKIPPED:-}" ]; then daemon_show_logs; fi
    scenario_teardown
}

# no_group BDF: the device has no IOMMU group.
no_group() { [ ! -e "/sys/bus/pci/devices/$1/iommu_group" ]; }

@test "no IOMMU in this guest, vfio's no-IOMMU mode on; VF 0 and VF 1 are on igbvf with no IOMMU group" {
    log "kernel command line: $(< /proc/cmdline)"
    assert_equal "$(< "$NOIOMMU_PARAM")" Y
    assert_equal "$(ls /sys/class/iommu)" ""
    refute_regex "$(< /proc/cmdline)" 'intel_iommu=on'
    for vf in "$VF0" "$VF1"; do
        assert_equal "$(pci_driver "$vf")" "$VF_DRIVER"
        assert no_group "$vf"
    done
    INFO_BEFORE=$(vf_info 0)
    STATE_BEFORE=$(device_state "$VF0")
    NETDEV_BEFORE=$(vf_ifname 0)
    assert_not_equal "$NETDEV_BEFORE" ""
    share INFO_BEFORE STATE_BEFORE NETDEV_BEFORE
    log "before Allocate: $STATE_BEFORE; $INFO_BEFORE"
}

@test "Allocate of VF 0: the daemon records igbvf, binds VF 0 to vfio-pci and hands out host /dev/vfio/noiommu-N as /dev/vfio/N" {
    kubelet_sim sim1 --devices "$VF0"
    daemon_start "$CONFIG"
    kubelet_sim_wait sim1
    sed 's/^/  daemon: /' "$WORK/daemon.log"
    # The early bind: VF 0 on vfio-pci, in a group vfio made for it.
    assert_equal "$(pci_driver "$VF0")" vfio-pci
    GROUP=$(iommu_group "$VF0")
    PREBOUND=$CNI_STATE_DIR/prebound/$VF0.json
    share GROUP PREBOUND
    assert_equal "$(< "/sys/kernel/iommu_groups/$GROUP/name")" vfio-noiommu
    assert [ -c "/dev/vfio/noiommu-$GROUP" ]
    refute [ -e "/dev/vfio/$GROUP" ]
    assert no_group "$VF1"
    # The record of the driver VF 0 had, in the plugin's state directory.
    assert [ -s "$PREBOUND" ]
    assert_equal "$(jq -r '.driver' "$PREBOUND")" "$VF_DRIVER"
    # The container's view, from the Allocate answer: the request, the env,
    # the device specs (container host permissions), the _INFO vfio node.
    mapfile -t A < <(rpc sim1 Allocate --arg e "$ENV_NAME" '
        (.response.envs[$e] // "") as $id
        | (.response.envs[$e + "_INFO"] // "{}" | fromjson | .[$id] // {}) as $info
        | (.request.devices_ids | join(",")),
          $id,
          ([.response.devices[] | "\(.container_path) \(.host_path) \(.permissions)"] | join("|")),
          ($info.vfio["dev-mount"] // ""),
          (.response.mounts[0].container_path // "")')
    [ "${#A[@]}" = 5 ] || fail "could not read the Allocate answer: ${A[*]}"
    HUGEDIR=${A[4]}
    share HUGEDIR
    assert_equal "${A[0]}" "$VF0"
    assert_equal "${A[1]}" "$VF0"
    assert_equal "${A[2]}" "/dev/vfio/vfio /dev/vfio/vfio rw|/dev/vfio/$GROUP /dev/vfio/noiommu-$GROUP rw"
    assert_equal "${A[3]}" "/dev/vfio/$GROUP"
    assert_equal "$HUGEDIR" /dev/hugepages
}

@test "CNI ADD (vfio-pci) of the allocated VF: the result and the device-info file report the no-IOMMU group and igbvf as the original driver" {
    CONF=$(netconf "$VF0" --arg mac "$MAC" '. + {vlan: 100, mac: $mac}')
    share CONF
    pod_create "$POD"
    log "ADD $POD: $CONF"
    cni_add "$POD" net1 "$CONF"
    assert_cni_ok "ADD $VF0 (bound early, no IOMMU) for $POD"
    jq -c . <<< "$CNI_OUT"
    assert_equal "$(jq -r '.interfaces[0] | "\(.pciID) \(.mac)"' <<< "$CNI_OUT")" "$VF0 $MAC"
    INFO=$(devinfo_path "$POD")
    jq -c . "$INFO"
    # pci-address, iommu-group, vfio-device, original-driver, device-type
    assert_equal "$(jq -r '.pci | [."pci-address", ."iommu-group", ."vfio-device", ."original-driver", ."device-type"] | map(tostring) | join(" ")' "$INFO")" \
        "$VF0 $GROUP /dev/vfio/noiommu-$GROUP $VF_DRIVER vfio-pci"
    assert_equal "$(pci_driver "$VF0")" vfio-pci
    assert [ -c "/dev/vfio/noiommu-$GROUP" ]
    assert_vf 0 --arg mac "$MAC" '.address == $mac and .vlan_list[0].vlan == 100'
}

@test "a second ADD of VF 0 for another container fails with 101 naming the holder; it and the DEL after it change nothing" {
    BEFORE=$(node_snapshot)
    pod_create pod-other
    cni_add pod-other net1 "$CONF"
    assert_cni_err 101 "ADD of $VF0, held by $POD, for pod-other" "in use by container $POD"
    cni_del pod-other net1 "$CONF"
    assert_cni_ok "the runtime's DEL of pod-other after its failed ADD"
    assert_snapshot_eq "$BEFORE" "$(node_snapshot)" "after pod-other's ADD and DEL"
    pod_delete pod-other
}

@test "testpmd with exactly what Allocate handed out (host noiommu-N as /dev/vfio/N) opens VF 0 in no-IOMMU mode and transmits with the ADD's MAC" {
    # The container's /dev/vfio/N is the host's noiommu-N.  DPDK opens
    # /dev/vfio/N, reads enable_unsafe_noiommu_mode, takes vfio's no-IOMMU
    # container type and IOVA as physical addresses by itself: no EAL
    # option for it.  The kernel logs each open of a no-IOMMU device.
    opened="vfio-pci $VF0: vfio-noiommu device opened by user (dpdk-testpmd:"
    OPENS_BEFORE=$(dmesg | grep -cF "$opened" || true)
    mapfile -t TESTPMD_EAL < <(eal_for "$VF0" "$HUGEDIR" -1)
    testpmd_launch "$POD" "$POD" "noiommu-$GROUP:$GROUP" "$HUGEDIR" --forward-mode=txonly
    testpmd_wait_stat "$POD" TX-packets
    sleep 2
    testpmd_stop "$POD"
    testpmd_summary "$POD"
    assert_equal "$TESTPMD_RC" 0
    assert [ "$(testpmd_stat "$POD" TX-packets)" -gt 0 ]
    assert_regex "$(grep -a 'Port 0: ' "$CNI_WORK/$POD.log" | head -n1)" "Port 0: ${MAC^^}"
    dmesg | grep -F "$opened" | tail -n 1
    assert_equal "$(dmesg | grep -cF "$opened")" "$((OPENS_BEFORE + 1))"
}

@test "DEL: VF 0 is back on igbvf with its netdev and vfinfo entry; the early bind record, the group and its node are gone" {
    cni_del "$POD" net1 "$CONF"
    assert_cni_ok "DEL $VF0 for $POD"
    assert_vf_restored "$VF0" 0 "$INFO_BEFORE" "$STATE_BEFORE" "after DEL"
    assert_equal "$(vf_ifname 0)" "$NETDEV_BEFORE"
    refute [ -e "$PREBOUND" ]
    assert no_group "$VF0"
    refute [ -e "/dev/vfio/noiommu-$GROUP" ]
    assert_no_state
    pod_delete "$POD"
}

@test "SIGTERM stops the daemon cleanly: exit 0, its socket removed" {
    daemon_stop
    refute [ -e "$KDIR/dpdk-cni-intel.com_intel_sriov_dpdk.sock" ]
    daemon_log_ends_cleanly
}
