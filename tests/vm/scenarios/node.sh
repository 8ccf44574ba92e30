#!/usr/bin/env bash
# Scenario: the node daemon (dpdk-cni-node) on the real igb PF, with a fake
# kubelet (node/examples/kubelet-sim) speaking the device plugin API:
#   the PF starts with 0 VFs; the daemon's nodeSetup creates 4 and sets each
#   VF's MAC (spoofchk off on VF 0 and VF 2): sriov_numvfs and
#   `ip link show <pf>` say so;
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
# Run:  tests/vm/run.sh tests/vm/scenarios/node.sh
. "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
. "$(dirname "${BASH_SOURCE[0]}")/../cni.sh"

REPO=${DPDK_CNI_REPO:-$VM_LIB_DIR/../..}
NODE_SRC=${DPDK_CNI_NODE_BIN:-$REPO/target/debug/dpdk-cni-node}
SIM_SRC=${KUBELET_SIM_BIN:-$REPO/target/debug/examples/kubelet-sim}
RESOURCE=intel.com/intel_sriov_dpdk
ENDPOINT=dpdk-cni-intel.com_intel_sriov_dpdk.sock
ENV_NAME=PCIDEVICE_INTEL_COM_INTEL_SRIOV_DPDK
NUM_VFS=4
POD=pod-node
WORK=$CNI_WORK/node
KDIR=$WORK/device-plugins            # the kubelet's device-plugins directory
CONFIG=$WORK/config.json
DAEMON_LOG=$WORK/daemon.log
DAEMON_PID=""
SIM_PID=""
vf_mac() { printf '02:00:00:00:0a:%02x' "$1"; }   # what nodeSetup gives VF N
vf_spoofchk() { if [ $(($1 % 2)) = 0 ]; then echo off; else echo on; fi; }

_alive() { [ -n "$1" ] && kill -0 "$1" 2>/dev/null; }
_dead() { ! _alive "$1"; }
show_logs() {
    local f
    for f in "$DAEMON_LOG" "$WORK"/sim*.err; do
        [ -s "$f" ] || continue
        echo "---- $f (last 20 lines)" >&2
        tail -n 20 "$f" >&2
    done
}
cleanup() {
    local rc=$?
    testpmd_cleanup
    [ "$rc" = 0 ] || show_logs
    if _alive "$SIM_PID"; then kill -KILL "$SIM_PID" 2>/dev/null || true; fi
    if _alive "$DAEMON_PID"; then kill -KILL "$DAEMON_PID" 2>/dev/null || true; fi
    if [ "$rc" != 0 ]; then
        # Leave the node as the next scenario of the same boot expects it.
        (cni_reset_node 2) >/dev/null 2>&1 || echo "node: could not reset the node after the failure" >&2
    fi
}
trap cleanup EXIT

# kubelet_sim NAME ARGS...: start the fake kubelet in the background on
# $KDIR (it removes stale sockets and listens on kubelet.sock); its JSON
# lines go to $WORK/NAME.out, its messages to $WORK/NAME.err.
kubelet_sim() {
    local name=$1
    shift
    rm -f "$WORK/$name.out" "$WORK/$name.err"
    "$SIM" --dir "$KDIR" --resource "$RESOURCE" --timeout 60 "$@" \
        > "$WORK/$name.out" 2> "$WORK/$name.err" &
    SIM_PID=$!
    # Its message, not the socket: a quick run may be over (and the socket
    # gone) before the next look.
    wait_for 30 "kubelet-sim $name to listen on $KDIR/kubelet.sock" \
        grep -q '^kubelet-sim: serving Registration' "$WORK/$name.err"
    log "kubelet-sim $name (pid $SIM_PID) listening on $KDIR/kubelet.sock: $*"
}

# kubelet_sim_wait NAME: wait for the fake kubelet to finish; fail unless it
# exited 0, or as soon as the daemon dies.
_sim_done_or_daemon_dead() { _dead "$SIM_PID" || { [ -n "$DAEMON_PID" ] && _dead "$DAEMON_PID"; }; }
kubelet_sim_wait() {
    local rc=0
    wait_for 70 "kubelet-sim $1 to finish" _sim_done_or_daemon_dead
    if [ -n "$DAEMON_PID" ] && _dead "$DAEMON_PID"; then
        wait "$DAEMON_PID" || rc=$?
        DAEMON_PID=""
        fail "the daemon exited (status $rc) while kubelet-sim $1 waited for it"
    fi
    wait "$SIM_PID" || rc=$?
    SIM_PID=""
    [ "$rc" = 0 ] || fail "kubelet-sim $1 exited with status $rc: $(cat "$WORK/$1.err")"
    pass "kubelet-sim $1 finished (exit 0)"
    log "kubelet-sim $1: $(grep -c . "$WORK/$1.out") JSON lines"
}

# rpc NAME RPC [JQ_ARGS...] [JQ_FILTER]: the last line kubelet-sim NAME
# printed for RPC, through JQ_FILTER (raw output); fails if there is none.
rpc() {
    local name=$1 r=$2
    shift 2
    [ $# -gt 0 ] || set -- .
    local filter=${!#}
    grep -q "\"rpc\":\"$r\"" "$WORK/$name.out" ||
        fail "kubelet-sim $name printed no $r line: $(cat "$WORK/$name.out")"
    jq -rn --arg r "$r" "${@:1:$#-1}" "[inputs | select(.rpc == \$r)] | last | ($filter)" "$WORK/$name.out"
}

# pod_testpmd_start NAME NETNS GROUP HUGEDIR BDF NUMA [TESTPMD_ARGS...]:
# testpmd_launch (cni.sh) for a container built from an Allocate answer: the
# vfio group and hugetlbfs from its device specs and mount, the PCI address
# from its env, --socket-mem on NUMA when that is >= 0.  Stop it with
# testpmd_stop NAME.
pod_testpmd_start() {
    local name=$1 netns=$2 group=$3 huge=$4 bdf=$5 numa=$6
    shift 6
    mapfile -t TESTPMD_EAL < <(eal_for "$bdf" "$huge" "$numa")
    testpmd_launch "$name" "$netns" "$group" "$huge" "$@"
}

# ------------------------------------------------------- a PF without VFs
# cni_reset_node 0: the PF up, no VF, no pod netns, no ledger or device-info.
log "resetting the node to a PF without VFs"
cni_reset_node 0
PF=$(pf_ifname); PF_BDF=$(pf_bdf)
PFDIR=/sys/bus/pci/devices/$PF_BDF
assert_fails "$PF_BDF has no virtfn0" test -e "$PFDIR/virtfn0"
assert_eq 0 "$(< "$PFDIR/sriov_numvfs")" "$PF ($PF_BDF) sriov_numvfs before the daemon"
_enough_vfs() { [ "$(< "$PFDIR/sriov_totalvfs")" -ge "$NUM_VFS" ]; }
assert_ok "$PF supports $NUM_VFS VFs (sriov_totalvfs $(< "$PFDIR/sriov_totalvfs"))" _enough_vfs

rm -rf "$WORK"
mkdir -p "$WORK"
[ -x "$NODE_SRC" ] || fail "no daemon binary at $NODE_SRC (cargo build -p dpdk-cni-node --bins --examples)"
[ -x "$SIM_SRC" ] || fail "no kubelet-sim at $SIM_SRC (cargo build -p dpdk-cni-node --bins --examples)"
t0=${EPOCHREALTIME/./}
NODE=$(stage_bin "$NODE_SRC")
SIM=$(stage_bin "$SIM_SRC")
log "staged $NODE and $SIM in $(( (${EPOCHREALTIME/./} - t0) / 1000 )) ms"

# ------------------------------------------------------ the daemon's config
VFS_JSON=$(for ((i = 0; i < NUM_VFS; i++)); do
    printf '{"index":%d,"mac":"%s","spoofchk":"%s"}\n' "$i" "$(vf_mac "$i")" "$(vf_spoofchk "$i")"
done | paste -sd,)
jq -cn --arg pf "$PF" --argjson n "$NUM_VFS" --argjson vfs "[$VFS_JSON]" '{
  resourceList: [{
    resourceName: "intel_sriov_dpdk", resourcePrefix: "intel.com",
    selectors: {vendors: ["8086"], devices: ["10ca"], drivers: ["igbvf", "vfio-pci"], pfNames: [$pf]},
    hugepages: {pageSize: "2Mi"}
  }],
  nodeSetup: {pfs: [{pfName: $pf, numVfs: $n, vfs: $vfs}]}
}' > "$CONFIG"
log "daemon config $CONFIG: $(< "$CONFIG")"

# ------------------------------------------------ the kubelet, then the daemon
kubelet_sim sim1 --allocate 1
log "starting dpdk-cni-node run --config $CONFIG --kubelet-dir $KDIR --state-dir $CNI_STATE_DIR"
"$NODE" run --config "$CONFIG" --kubelet-dir "$KDIR" --state-dir "$CNI_STATE_DIR" --no-annotate \
    < /dev/null 2> "$DAEMON_LOG" &
DAEMON_PID=$!
kubelet_sim_wait sim1
assert_ok "the daemon (pid $DAEMON_PID) is running" _alive "$DAEMON_PID"
sed 's/^/  daemon: /' "$DAEMON_LOG"
sed 's/^/  kubelet-sim: /' "$WORK/sim1.out"

# ----------------------------------------------- node setup on the real PF
log "checking the node setup on $PF"
assert_eq "$NUM_VFS" "$(< "$PFDIR/sriov_numvfs")" "$PF sriov_numvfs (from nodeSetup)"
assert_match "$(< "$DAEMON_LOG")" "$PF: sriov_numvfs set to $NUM_VFS" "daemon log"
VFS=()
for ((i = 0; i < NUM_VFS; i++)); do
    VFS+=("$(vf_bdf "$i")")
    wait_for 10 "netdev of VF $i (${VFS[i]})" _vf_has_netdev "${VFS[i]}"
    assert_eq "$VF_DRIVER" "$(pci_driver "${VFS[i]}")" "VF $i (${VFS[i]}) driver"
    LINE=$(vf_line "$i")
    assert_match "$LINE" "link/ether $(vf_mac "$i") .*spoof checking $(vf_spoofchk "$i")" \
        "VF $i MAC $(vf_mac "$i") and spoofchk $(vf_spoofchk "$i") in ip link show $PF"
done

# ------------------------------------------------------------ registration
log "checking what the fake kubelet got: Register, ListAndWatch, GetPreferredAllocation, Allocate"
assert_eq "v1beta1 $RESOURCE $ENDPOINT true" \
    "$(rpc sim1 Register '"\(.request.version) \(.request.resource_name) \(.request.endpoint) \(.request.options.get_preferred_allocation_available)"')" \
    "Register version, resource_name, endpoint, get_preferred_allocation_available"
assert_ok "the plugin socket $KDIR/$ENDPOINT exists" test -S "$KDIR/$ENDPOINT"

# ------------------------------------------------------------ ListAndWatch
# One "ID health topology" line per device, sorted by ID; the expected lines
# come from sysfs: every VF of the PF, Healthy, its numa_node (null for -1).
WANT=$(for bdf in "${VFS[@]}"; do
    numa=$(< "/sys/bus/pci/devices/$bdf/numa_node")
    if [ "$numa" -ge 0 ]; then topo="{\"nodes\":[{\"ID\":$numa}]}"; else topo=null; fi
    echo "$bdf Healthy $topo"
done | sort)
assert_eq "$WANT" "$(rpc sim1 ListAndWatch '.response.devices | sort_by(.ID)[] | "\(.ID) \(.health) \(.topology | tojson)"')" \
    "ListAndWatch: exactly the $NUM_VFS VFs, Healthy, NUMA as sysfs numa_node"

# ---------------------------------------------- preferred allocation, Allocate
PREF=$(rpc sim1 GetPreferredAllocation '.response.deviceIDs | join(",")')
log "GetPreferredAllocation for 1 device: $PREF"
assert_match "$PREF" '^[0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]$' "preferred allocation (one PCI address)"
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
assert_eq "$PREF" "${A[0]}" "Allocate request (the preferred device)"
assert_eq "$PREF" "$DEVID" "Allocate env $ENV_NAME"
VF_IDX=""
for ((i = 0; i < NUM_VFS; i++)); do [ "${VFS[i]}" = "$DEVID" ] && VF_IDX=$i; done
assert_ne "" "$VF_IDX" "VF index of $DEVID"
GROUP=$(iommu_group "$DEVID")
assert_eq "/dev/vfio/vfio /dev/vfio/vfio rw|/dev/vfio/$GROUP /dev/vfio/$GROUP rw" "${A[2]}" \
    "Allocate device specs (container host permissions; group $GROUP from sysfs iommu_group)"
assert_eq "/dev/vfio/$GROUP" "${A[3]}" "Allocate env ${ENV_NAME}_INFO vfio dev-mount"
assert_eq "$(< "/sys/bus/pci/devices/$DEVID/numa_node")" "$NUMA" "${ENV_NAME}_INFO numa-node (-1: none; sysfs numa_node)"
assert_eq "/dev/hugepages /dev/hugepages false" "${A[5]}" "Allocate mounts (the pool's hugetlbfs)"
assert_fails "/dev/vfio/$GROUP does not exist before ADD (the CNI binds the VF)" test -e "/dev/vfio/$GROUP"

# -------------------------------------------------- CNI ADD with that device
LINE_BEFORE=$(vf_line "$VF_IDX")
STATE_BEFORE=$(device_state "$DEVID")
pod_create "$POD"
CONF=$(netconf "$DEVID")
log "CNI ADD of $DEVID, the device Allocate handed out, for $POD: $CONF"
cni_add "$POD" net1 "$CONF"
assert_cni_ok "ADD $DEVID (deviceID from $ENV_NAME) for $POD"
assert_eq vfio-pci "$(pci_driver "$DEVID")" "$DEVID driver after ADD"
assert_ok "/dev/vfio/$GROUP is a char device" test -c "/dev/vfio/$GROUP"
INFO=$(devinfo_path "$POD")
assert_eq "$GROUP" "$(devinfo_get "$INFO" iommu-group)" "device-info iommu-group (as Allocate said)"
assert_match "$(vf_line "$VF_IDX")" "link/ether $(vf_mac "$VF_IDX") " "VF $VF_IDX keeps the MAC nodeSetup gave it"

# -------------------------- the kubelet restarts while the VF is in a pod
log "the kubelet restarts while $DEVID is in $POD"
kubelet_sim sim2 --min-devices "$NUM_VFS"
kubelet_sim_wait sim2
assert_eq "$ENDPOINT" "$(rpc sim2 Register .request.endpoint)" "registration again after the kubelet restarted"
assert_eq "$NUM_VFS Healthy Healthy" \
    "$(rpc sim2 ListAndWatch --arg id "$DEVID" '.response.devices | "\(length) \(map(.health) | unique | join(",")) \(.[] | select(.ID == $id) | .health)"')" \
    "ListAndWatch after the restart: devices, their health, $DEVID's (on vfio-pci, held by $POD)"

# -------------------- dpdk-testpmd with exactly what Allocate handed out
pod_testpmd_start "$POD" "$POD" "$GROUP" "$HUGEDIR" "$DEVID" "$NUMA" --forward-mode=txonly
testpmd_wait_stat "$POD" TX-packets
sleep 2
testpmd_stop "$POD"
testpmd_summary "$POD"
assert_eq 0 "$TESTPMD_RC" "testpmd exit status"
assert_gt "$(testpmd_stat "$POD" TX-packets)" 0 "testpmd TX-packets on $DEVID"
MAC_UP=$(vf_mac "$VF_IDX")
assert_match "$(grep -a 'Port 0: ' "$CNI_WORK/$POD.log" | head -n1)" "Port 0: ${MAC_UP^^}" \
    "testpmd sees the MAC nodeSetup gave VF $VF_IDX"

# -------------------------------------------------------------------- DEL
log "DEL $POD"
cni_del "$POD" net1 "$CONF"
assert_cni_ok "DEL $DEVID for $POD"
assert_vf_restored "$DEVID" "$VF_IDX" "$LINE_BEFORE" "$STATE_BEFORE" "after DEL"
assert_fails "/dev/vfio/$GROUP removed" test -e "/dev/vfio/$GROUP"
assert_no_state
pod_delete "$POD"

# ------------------------------------------------------ stopping the daemon
log "SIGTERM to the daemon (pid $DAEMON_PID)"
kill -TERM "$DAEMON_PID"
wait_for 10 "the daemon to stop" _dead "$DAEMON_PID"
rc=0; wait "$DAEMON_PID" || rc=$?
DAEMON_PID=""
assert_eq 0 "$rc" "daemon exit status after SIGTERM"
assert_fails "the plugin socket is removed" test -e "$KDIR/$ENDPOINT"
assert_match "$(tail -n 1 "$DAEMON_LOG")" "stopping" "daemon log ends with"
assert_eq "$NUM_VFS" "$(< "$PFDIR/sriov_numvfs")" "$PF sriov_numvfs after the daemon stopped (VFs stay)"
grep -E ' (warn|error) ' "$DAEMON_LOG" | sed 's/^/  daemon: /' || true
assert_eq 0 "$(grep -cE ' (warn|error) ' "$DAEMON_LOG" || true)" "warnings in the daemon log"

# ------------------------------------------------------------------ restore
log "restoring the node: 2 VFs on igbvf, no state"
cni_reset_node 2
assert_eq 2 "$(< "$PFDIR/sriov_numvfs")" "$PF sriov_numvfs restored for the other scenarios"
for i in 0 1; do
    LINE=$(vf_line "$i")
    [[ "$LINE" != *"link/ether 02:00:00:00:0a:"* && "$LINE" == *"spoof checking on"* ]] ||
        fail "VF $i still has a setting nodeSetup made: $LINE"
done
pass "VFs 0 and 1 are new: no MAC or spoofchk from nodeSetup left"
rm -rf "$WORK"
log "node: all assertions passed"
