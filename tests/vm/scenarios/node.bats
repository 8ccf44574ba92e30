#!/usr/bin/env bats
# The node daemon (dpdk-cni-node) on the real igb PF, with a fake kubelet
# (node/examples/kubelet-sim) speaking the device plugin API:
#   the PF starts with 0 VFs; the daemon's nodeSetup creates 4 and sets each
#   VF's MAC (spoofchk off on VF 0 and VF 2): sriov_numvfs and the PF's
#   vfinfo say so;
#   the daemon registers its pool with the kubelet; ListAndWatch lists exactly
#   the 4 VFs, Healthy, with the NUMA node sysfs reports (none for -1);
#   GetPreferredAllocation + Allocate for 1 VF: /dev/vfio/vfio and
#   /dev/vfio/<its sysfs iommu_group>, PCIDEVICE_INTEL_COM_INTEL_SRIOV_DPDK
#   naming it, the hugetlbfs mount;
#   CNI ADD with the deviceID taken from that env (as Multus passes it):
#   the VF is on vfio-pci and /dev/vfio/<group> appears;
#   the kubelet restarts (stale sockets removed): the daemon registers again
#   and still lists the allocated VF as Healthy;
#   dpdk-testpmd in a pod sandbox that holds only what Allocate returned
#   (the device nodes, the mount, the PCI address from the env) transmits
#   with the MAC nodeSetup gave the VF;
#   DEL: the VF is back on igbvf; SIGTERM stops the daemon cleanly (its
#   socket removed, the VFs left as they are).
# At the end the node is reset to the 2 VFs the other scenarios start from.
#
# Needs the static plugin (make plugin) and the daemon and fake kubelet:
#   cargo build -p dpdk-cni-node --bins --examples
# (or DPDK_CNI_NODE_BIN / KUBELET_SIM_BIN pointing at other builds).
# The daemon outlives the test that starts it: a wrapper subshell waits for
# it and writes its exit status to $WORK/daemon.rc.
# Run:  tests/vm/run.sh tests/vm/scenarios/node.bats [-f REGEX]

load helpers
load daemon

RESOURCE=intel.com/intel_sriov_dpdk
ENDPOINT=dpdk-cni-intel.com_intel_sriov_dpdk.sock
ENV_NAME=PCIDEVICE_INTEL_COM_INTEL_SRIOV_DPDK
NUM_VFS=4
POD=pod-node
WORK=$CNI_WORK/node
KDIR=$WORK/device-plugins            # the kubelet's device-plugins directory
CONFIG=$WORK/config.json
DAEMON_LOG=$WORK/daemon.log
SIM_PID=""
vf_mac() { printf '02:00:00:00:0a:%02x' "$1"; }   # what nodeSetup gives VF N
vf_spoofchk() { if [ $(($1 % 2)) = 0 ]; then echo off; else echo on; fi; }

show_logs() {
    local f
    for f in "$DAEMON_LOG" "$WORK"/sim*.err; do
        [ -s "$f" ] || continue
        echo "---- $f (last 20 lines)"
        tail -n 20 "$f"
    done
}

setup_file() {
    untrace_helpers
    # cni_reset_node 0: the PF up, no VF, no pod netns, no ledger or device-info.
    log "resetting the node to a PF without VFs"
    cni_reset_node 0
    local repo=${DPDK_CNI_REPO:-$VM_LIB_DIR/../..} node_src sim_src
    node_src=${DPDK_CNI_NODE_BIN:-$repo/target/debug/dpdk-cni-node}
    sim_src=${KUBELET_SIM_BIN:-$repo/target/debug/examples/kubelet-sim}
    rm -rf "$WORK"
    mkdir -p "$WORK"
    [ -x "$node_src" ] || fail "no daemon binary at $node_src (cargo build -p dpdk-cni-node --bins --examples)"
    [ -x "$sim_src" ] || fail "no kubelet-sim at $sim_src (cargo build -p dpdk-cni-node --bins --examples)"
    local t0=${EPOCHREALTIME/./}
    NODE=$(stage_bin "$node_src")
    SIM=$(stage_bin "$sim_src")
    log "staged $NODE and $SIM in $(( (${EPOCHREALTIME/./} - t0) / 1000 )) ms"
    PF=$(pf_ifname); PF_BDF=$(pf_bdf)
    PFDIR=/sys/bus/pci/devices/$PF_BDF
    export NODE SIM PF PF_BDF PFDIR

    # The daemon's config.
    local vfs_json i
    vfs_json=$(for ((i = 0; i < NUM_VFS; i++)); do
        printf '{"index":%d,"mac":"%s","spoofchk":"%s"}\n' "$i" "$(vf_mac "$i")" "$(vf_spoofchk "$i")"
    done | paste -sd,)
    jq -cn --arg pf "$PF" --argjson n "$NUM_VFS" --argjson vfs "[$vfs_json]" '{
      resourceList: [{
        resourceName: "intel_sriov_dpdk", resourcePrefix: "intel.com",
        selectors: {vendors: ["8086"], devices: ["10ca"], drivers: ["igbvf", "vfio-pci"], pfNames: [$pf]},
        hugepages: {pageSize: "2Mi"}
      }],
      nodeSetup: {pfs: [{pfName: $pf, numVfs: $n, vfs: $vfs}]}
    }' > "$CONFIG"
    log "daemon config $CONFIG: $(< "$CONFIG")"
}

teardown_file() {
    local pid
    pid=$(daemon_pid)
    if _alive "$pid"; then kill -KILL "$pid" 2>/dev/null || true; fi
    pkill_sims
    pod_delete "$POD"
}

# pkill_sims: kill the kubelet-sim instances whose PIDs are recorded.
pkill_sims() {
    local f pid
    for f in "$WORK"/sim*.pid; do
        [ -e "$f" ] || continue
        pid=$(< "$f")
        if _alive "$pid"; then kill -KILL "$pid" 2>/dev/null || true; fi
    done
}

setup() { scenario_setup chain; }
teardown() {
    if [ -z "${BATS_TEST_COMPLETED:-}" ] && [ -z "${BATS_TEST_SKIPPED:-}" ]; then show_logs; fi
    scenario_teardown
}

# pod_testpmd_start NAME NETNS GROUP HUGEDIR BDF NUMA [TESTPMD_ARGS...]:
# testpmd_launch (cni.sh) for a container built from an Allocate answer: the
# vfio group and hugetlbfs from its device specs and mount, the PCI address
# from its env, --socket-mem on NUMA when that is >= 0.  Stop it with
# testpmd_stop NAME.
pod_testpmd_start() {
    local name=$1 netns=$2 group=$3 huge=$4 bdf=$5 numa=$6
    shift 6
    # shellcheck disable=SC2034  # testpmd_launch reads it
    mapfile -t TESTPMD_EAL < <(eal_for "$bdf" "$huge" "$numa")
    testpmd_launch "$name" "$netns" "$group" "$huge" "$@"
}

@test "on a PF without VFs (it supports 4) the daemon starts; a kubelet (sim1) gets its registration and an Allocate" {
    refute [ -e "$PFDIR/virtfn0" ]
    assert_equal "$(< "$PFDIR/sriov_numvfs")" 0
    assert [ "$(< "$PFDIR/sriov_totalvfs")" -ge "$NUM_VFS" ]

    kubelet_sim sim1 --allocate 1
    daemon_start "$CONFIG"
    kubelet_sim_wait sim1
    assert _alive "$(daemon_pid)"
    sed 's/^/  daemon: /' "$DAEMON_LOG"
    sed 's/^/  kubelet-sim: /' "$WORK/sim1.out"
}

@test "node setup: 4 VFs on igbvf with their MACs and spoofchk" {
    assert_equal "$(< "$PFDIR/sriov_numvfs")" "$NUM_VFS"
    assert_regex "$(< "$DAEMON_LOG")" "$PF: sriov_numvfs set to $NUM_VFS"
    VFS=()
    for ((i = 0; i < NUM_VFS; i++)); do
        VFS+=("$(vf_bdf "$i")")
        wait_for 10 "netdev of VF $i (${VFS[i]})" _vf_has_netdev "${VFS[i]}"
        assert_equal "$(pci_driver "${VFS[i]}")" "$VF_DRIVER"
        assert_vf "$i" --arg mac "$(vf_mac "$i")" --argjson spoofchk "$([ "$(vf_spoofchk "$i")" = on ] && echo true || echo false)" \
            '.address == $mac and .spoofchk == $spoofchk'
    done
    share VFS
}

@test "Register (version, resource name, endpoint, preferred allocation), the plugin socket; ListAndWatch: exactly the 4 VFs, Healthy, NUMA as sysfs" {
    assert_equal "$(rpc sim1 Register '"\(.request.version) \(.request.resource_name) \(.request.endpoint) \(.request.options.get_preferred_allocation_available)"')" \
        "v1beta1 $RESOURCE $ENDPOINT true"
    assert [ -S "$KDIR/$ENDPOINT" ]
    # One "ID health topology" line per device, sorted by ID; the expected
    # lines come from sysfs: every VF of the PF, Healthy, its numa_node (null
    # for -1).
    WANT=$(for bdf in "${VFS[@]}"; do
        numa=$(< "/sys/bus/pci/devices/$bdf/numa_node")
        if [ "$numa" -ge 0 ]; then topo="{\"nodes\":[{\"ID\":$numa}]}"; else topo=null; fi
        echo "$bdf Healthy $topo"
    done | sort)
    assert_equal "$(rpc sim1 ListAndWatch '.response.devices | sort_by(.ID)[] | "\(.ID) \(.health) \(.topology | tojson)"')" "$WANT"
}

@test "GetPreferredAllocation and Allocate: one VF, its vfio nodes, PCIDEVICE_* env, the hugetlbfs mount" {
    PREF=$(rpc sim1 GetPreferredAllocation '.response.deviceIDs | join(",")')
    log "GetPreferredAllocation for 1 device: $PREF"
    assert_regex "$PREF" '^[0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]$'
    # The container's view, from the Allocate answer: the request, the env
    # naming the device, the device specs, the _INFO env's vfio node and NUMA
    # node, the mounts.
    mapfile -t A < <(rpc sim1 Allocate --arg e "$ENV_NAME" '
        (.response.envs[$e] // "") as $id
        | (.response.envs[$e + "_INFO"] // "{}" | fromjson | .[$id] // {}) as $info
        | (.request.devices_ids | join(",")),
          $id,
          ([.response.devices[] | "\(.container_path) \(.host_path) \(.permissions)"] | join("|")),
          ($info.vfio["dev-mount"] // ""),
          ($info["numa-node"] // -1),
          ([.response.mounts[] | "\(.container_path) \(.host_path) \(.read_only)"] | join("|")),
          (.response.mounts[0].container_path // "")')
    [ "${#A[@]}" = 7 ] || fail "could not read the Allocate answer: ${A[*]}"
    DEVID=${A[1]}; NUMA=${A[4]}; HUGEDIR=${A[6]}
    assert_equal "${A[0]}" "$PREF"      # the request: the preferred device
    assert_equal "$DEVID" "$PREF"       # the env
    VF_IDX=""
    for ((i = 0; i < NUM_VFS; i++)); do [ "${VFS[i]}" = "$DEVID" ] && VF_IDX=$i; done
    assert_not_equal "$VF_IDX" ""
    GROUP=$(iommu_group "$DEVID")
    # device specs: container host permissions; the group from sysfs iommu_group
    assert_equal "${A[2]}" "/dev/vfio/vfio /dev/vfio/vfio rw|/dev/vfio/$GROUP /dev/vfio/$GROUP rw"
    assert_equal "${A[3]}" "/dev/vfio/$GROUP"                                   # _INFO vfio dev-mount
    assert_equal "$NUMA" "$(< "/sys/bus/pci/devices/$DEVID/numa_node")"        # _INFO numa-node
    assert_equal "${A[5]}" "/dev/hugepages /dev/hugepages false"               # the pool's hugetlbfs
    refute [ -e "/dev/vfio/$GROUP" ]    # the CNI binds the VF, not the daemon
    share DEVID NUMA HUGEDIR VF_IDX GROUP
}

@test "CNI ADD with the deviceID from the PCIDEVICE_* env binds that VF to vfio-pci" {
    INFO_BEFORE=$(vf_info "$VF_IDX")
    STATE_BEFORE=$(device_state "$DEVID")
    CONF=$(netconf "$DEVID")
    share INFO_BEFORE STATE_BEFORE CONF
    pod_create "$POD"
    log "CNI ADD of $DEVID, the device Allocate handed out, for $POD: $CONF"
    cni_add "$POD" net1 "$CONF"
    assert_cni_ok "ADD $DEVID (deviceID from $ENV_NAME) for $POD"
    assert_equal "$(pci_driver "$DEVID")" vfio-pci
    assert [ -c "/dev/vfio/$GROUP" ]
    assert_equal "$(devinfo_get "$(devinfo_path "$POD")" iommu-group)" "$GROUP"
    assert_equal "$(vf_field "$VF_IDX" .address)" "$(vf_mac "$VF_IDX")"   # the MAC nodeSetup gave it
}

@test "after a kubelet restart the daemon registers again and lists the held VF as Healthy" {
    log "the kubelet restarts while $DEVID is in $POD"
    kubelet_sim sim2 --min-devices "$NUM_VFS"
    kubelet_sim_wait sim2
    assert_equal "$(rpc sim2 Register .request.endpoint)" "$ENDPOINT"
    # devices, their health, $DEVID's (on vfio-pci, held by $POD)
    assert_equal "$(rpc sim2 ListAndWatch --arg id "$DEVID" '.response.devices | "\(length) \(map(.health) | unique | join(",")) \(.[] | select(.ID == $id) | .health)"')" \
        "$NUM_VFS Healthy Healthy"
}

@test "testpmd with exactly what Allocate handed out transmits with the node-setup MAC" {
    pod_testpmd_start "$POD" "$POD" "$GROUP" "$HUGEDIR" "$DEVID" "$NUMA" --forward-mode=txonly
    testpmd_wait_stat "$POD" TX-packets
    sleep 2
    testpmd_stop "$POD"
    testpmd_summary "$POD"
    assert_equal "$TESTPMD_RC" 0
    assert [ "$(testpmd_stat "$POD" TX-packets)" -gt 0 ]
    MAC_UP=$(vf_mac "$VF_IDX")
    assert_regex "$(grep -a 'Port 0: ' "$CNI_WORK/$POD.log" | head -n1)" "Port 0: ${MAC_UP^^}"
}

@test "DEL: the VF is back on igbvf with its vfinfo entry; no state" {
    cni_del "$POD" net1 "$CONF"
    assert_cni_ok "DEL $DEVID for $POD"
    assert_vf_restored "$DEVID" "$VF_IDX" "$INFO_BEFORE" "$STATE_BEFORE" "after DEL"
    refute [ -e "/dev/vfio/$GROUP" ]
    assert_no_state
    pod_delete "$POD"
}

@test "SIGTERM stops the daemon cleanly: exit 0, socket removed, VFs kept, no warnings" {
    daemon_stop
    refute [ -e "$KDIR/$ENDPOINT" ]
    assert_equal "$(< "$PFDIR/sriov_numvfs")" "$NUM_VFS"
    daemon_log_ends_cleanly
}

@test "the node is reset to 2 new VFs: no MAC or spoofchk from nodeSetup left" {
    log "restoring the node: 2 VFs on igbvf, no state"
    cni_reset_node 2
    assert_equal "$(< "$PFDIR/sriov_numvfs")" 2
    for i in 0 1; do
        assert_vf "$i" '(.address | startswith("02:00:00:00:0a:") | not) and .spoofchk == true'
    done
    rm -rf "$WORK"
}
