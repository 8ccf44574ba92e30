# shellcheck shell=bash
# Helpers for scenarios that drive the dpdk-cni plugin in the guest the way a
# container runtime does.  Source it after lib.sh:
#
#   . "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
#   . "$(dirname "${BASH_SOURCE[0]}")/cni.sh"
#
# (the bats scenarios get both through scenarios/helpers.bash).
#
# Sections:  the plugin and its calls · netconf · node snapshots and checks ·
#            pods and testpmd · resetting the node between scenarios.
#
# Environment (optional):
#   DPDK_CNI_BIN   the plugin binary (default: the static release build
#                  <repo>/target/x86_64-unknown-linux-gnu/release/dpdk-cni;
#                  scenarios/crash.bats sets it to the build with test hooks)
#   TESTPMD_START_TIMEOUT  seconds to wait for testpmd's first packet (120)

CNI_NETWORK=sriov-dpdk                              # the NAD / network name
CNI_STATE_DIR=/var/lib/cni/dpdk-cni                 # the plugin's default stateDir
CNI_DEVINFO_DIR=/var/run/k8s.cni.cncf.io/devinfo/cni
CNI_IFNAME_DEFAULT=net1
POD_HUGEDIR=/pod/hugepages                          # the container's hugetlbfs mount
CNI_BIN=""                                          # set by cni_stage
CNI_WORK=${CNI_WORK:-/tmp/cni-vm}
[ -d "$CNI_WORK" ] || mkdir -p "$CNI_WORK"

command -v jq >/dev/null || fail "jq is missing on the host (tests/vm/prepare.sh installs it)"
# Plain output: the console is a tty, and colours would garble logs.
jq() { command jq -M "$@"; }
# The guest's devtmpfs has no /dev/fd (bash process substitution needs it).
[ -e /dev/fd ] || ln -s /proc/self/fd /dev/fd

# ------------------------------------------------- the plugin and its calls ---

# cni_stage: copy the plugin to tmpfs once (starting it from 9p is slow) and
# set CNI_BIN.
cni_stage() {
    local src=${DPDK_CNI_BIN:-${DPDK_CNI_REPO:-$VM_LIB_DIR/../..}/target/x86_64-unknown-linux-gnu/release/dpdk-cni}
    [ -x "$src" ] || fail "no plugin binary at $src (build it: see tests/vm/README.md)"
    CNI_BIN=$(stage_bin "$src")
}

# cni_call CMD CONTAINERID IFNAME CONF [VAR=VALUE...]
# Run the plugin like a runtime: a clean environment with CNI_COMMAND,
# CNI_CONTAINERID, CNI_NETNS (/var/run/netns/<containerID>: the pod's netns
# has the container's name here), CNI_IFNAME, CNI_PATH, plus VAR=VALUE; the
# netconf on stdin.  Sets CNI_RC (exit status), CNI_OUT (stdout), CNI_ERR
# (stderr).  Never fails by itself: check with assert_cni_ok / assert_cni_err.
cni_call() {
    local cmd=$1 cid=$2 ifname=$3 conf=$4
    shift 4
    [ -n "$CNI_BIN" ] || cni_stage
    CNI_RC=0
    CNI_OUT=$(printf '%s' "$conf" | env -i PATH="$PATH" \
        CNI_COMMAND="$cmd" CNI_CONTAINERID="$cid" CNI_NETNS="/var/run/netns/$cid" \
        CNI_IFNAME="$ifname" CNI_PATH=/usr/lib/cni \
        CNI_ARGS="IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=$cid" \
        "$@" "$CNI_BIN" 2>"$CNI_WORK/stderr") || CNI_RC=$?
    CNI_ERR=$(< "$CNI_WORK/stderr")
}

cni_add()   { cni_call ADD "$@"; }
cni_del()   { cni_call DEL "$@"; }
cni_check() { cni_call CHECK "$@"; }
# cni_gc CONF: GC (CONF carries cni.dev/valid-attachments); no container env.
cni_gc() {
    [ -n "$CNI_BIN" ] || cni_stage
    CNI_RC=0
    CNI_OUT=$(printf '%s' "$1" | env -i PATH="$PATH" CNI_COMMAND=GC CNI_PATH=/usr/lib/cni \
        "$CNI_BIN" 2>"$CNI_WORK/stderr") || CNI_RC=$?
    CNI_ERR=$(< "$CNI_WORK/stderr")
}

_cni_show() { echo "  exit status $CNI_RC; stdout: $CNI_OUT"; [ -z "$CNI_ERR" ] || echo "  stderr: $CNI_ERR"; }

# assert_cni_ok WHAT: the last call exited 0.
assert_cni_ok() {
    [ "$CNI_RC" = 0 ] || fail "$1: plugin failed (status $CNI_RC): $CNI_OUT ${CNI_ERR:+/ stderr: $CNI_ERR}"
    pass "$1 (plugin exit 0)"
}

# assert_cni_err CODE WHAT [MSG_ERE]: the last call exited non-zero with the
# CNI error JSON {"code": CODE, "msg": ...} on stdout (msg matching MSG_ERE).
assert_cni_err() {
    local want=$1 what=$2 re=${3:-} got msg
    _cni_show
    [ "$CNI_RC" != 0 ] || fail "$what: plugin succeeded, expected error code $want"
    got=$(jq -r '.code // empty' <<< "$CNI_OUT" 2>/dev/null) || got=""
    msg=$(jq -r '.msg // empty' <<< "$CNI_OUT" 2>/dev/null) || msg=""
    [ "$got" = "$want" ] || fail "$what: expected CNI error code $want, got '${got}' (status $CNI_RC): $CNI_OUT"
    [ -n "$msg" ] || fail "$what: error JSON without msg: $CNI_OUT"
    if [ -n "$re" ] && ! [[ "$msg" =~ $re ]]; then
        fail "$what: error message does not match /$re/: $msg"
    fi
    pass "$what: code $want${re:+, msg matches /$re/}"
}

# ------------------------------------------------------------------ netconf ---

# netconf DEVICE [JQ_ARGS... JQ_FILTER]: the netconf (compact JSON) a NAD
# with this config would give, for DEVICE (deviceID), transformed by
# JQ_FILTER (with jq options such as --arg before it).
netconf() {
    local dev=$1
    shift
    [ $# -gt 0 ] || set -- .
    jq -cn --arg dev "$dev" --arg net "$CNI_NETWORK" \
        '{cniVersion: "1.1.0", name: $net, type: "dpdk-cni", deviceType: "vfio-pci", deviceID: $dev}' |
        jq -c "$@"
}

# devinfo_path CONTAINERID [IFNAME]: the default device-info file of an attachment.
devinfo_path() { echo "$CNI_DEVINFO_DIR/$CNI_NETWORK-$1-${2:-$CNI_IFNAME_DEFAULT}-device.json"; }

# devinfo_get FILE KEY: one key of the file's "pci" object.
devinfo_get() { jq -r --arg k "$2" '.pci[$k] | tostring' "$1"; }

# ------------------------------------------- node snapshots and checks ---

# vf_info N [PF_IFNAME]: VF N's entry in the PF's vfinfo_list (`ip -j link
# show <pf>`: vf, address, broadcast, vlan_list, rate, spoofchk, link_state,
# trust...) as compact JSON with sorted keys.  Two entries are equal only if
# every VF setting the PF reports is.
vf_info() {
    local pf=${2:-$(pf_ifname)} out
    out=$(ip -j link show "$pf" | jq -cS --argjson n "$1" '.[0].vfinfo_list[]? | select(.vf == $n)')
    [ -n "$out" ] || fail "no VF $1 in the vfinfo_list of ip -j link show $pf"
    echo "$out"
}

# vf_field N JQ_FILTER: a field of VF N's entry, raw (e.g. .address,
# '.vlan_list[0].vlan // 0', .spoofchk, .trust).  (One jq per call: under
# TCG a jq start costs the better part of a second.)
vf_field() {
    local pf
    pf=$(pf_ifname)
    ip -j link show "$pf" | jq -r --argjson n "$1" ".[0].vfinfo_list[]? | select(.vf == \$n) | ($2)"
}

# assert_vf N [JQ_ARGS...] JQ_EXPR: JQ_EXPR is true of VF N's entry (with
# JQ_ARGS such as --arg before it); the entry is printed if not.
assert_vf() {
    local n=$1 pf out
    shift
    pf=$(pf_ifname)
    out=$(ip -j link show "$pf" |
        jq -cS "${@:1:$#-1}" --argjson vf_index "$n" ".[0].vfinfo_list[]? | select(.vf == \$vf_index) | [(${!#}), .]")
    [ -n "$out" ] || fail "no VF $n in the vfinfo_list of ip -j link show $pf"
    [[ "$out" == "[true,"* ]] || fail "VF $n: not true of its vfinfo entry: ${!#}; [result, entry]: $out"
    pass "VF $n: ${!#}"
}

# vf_line N [PF_IFNAME]: VF N's line of `ip link show <pf>`, white space
# squeezed - for people (the demo prints it); checks use vf_info.
vf_line() {
    local pf=${2:-$(pf_ifname)}
    ip link show "$pf" | grep -E "^[[:space:]]+vf $1 " | tr -s ' \t' ' ' | sed 's/^ //'
}

# netdev_mac IFNAME [NETNS]: the MAC address of a netdev.
netdev_mac() {
    ip ${2:+-n "$2"} -j link show "$1" | jq -r '.[0].address'
}

# driver_override BDF: its driver_override ("" when unset).
driver_override() {
    local o
    o=$(< "/sys/bus/pci/devices/$1/driver_override")
    [ "$o" = "(null)" ] && o=""
    echo "$o"
}

# device_state BDF: driver, driver_override and netdev names of a device.
device_state() {
    local n names=""
    for n in /sys/bus/pci/devices/"$1"/net/*; do [ -e "$n" ] && names+="${n##*/} "; done
    echo "$1 driver=$(pci_driver "$1") override=$(driver_override "$1") netdev=${names% }"
}

# ledger_files: the plugin's records and claims (lock files excluded: they
# are empty flock(2) targets that outlive every command by design).
ledger_files() {
    [ ! -d "$CNI_STATE_DIR" ] || find "$CNI_STATE_DIR" -name '*.json' -not -path '*/locks/*' | sort
}
devinfo_files() { [ ! -d "$CNI_DEVINFO_DIR" ] || find "$CNI_DEVINFO_DIR" -type f | sort; }

# node_snapshot: everything a plugin command could change on the node, as
# text: for every VF of every igb PF its vfinfo entry (vf_info), driver,
# override and netdevs; the PFs' drivers and netdevs; the ledger and device-info files with
# their content hashes; /dev/vfio.
node_snapshot() {
    local d pf i n f
    for d in /sys/bus/pci/devices/*; do
        [ "$(< "$d/vendor")" = "$PF_VENDOR" ] && [ "$(< "$d/device")" = "$PF_DEVICE" ] || continue
        pf=${d##*/}
        device_state "$pf"
        n=(/sys/bus/pci/devices/"$pf"/net/*)
        # Every VF's vfinfo entry at once, as vf_info prints each.
        local infos=()
        if [ -e "${n[0]}" ] && [ "$(< "$d/sriov_numvfs")" != 0 ]; then
            mapfile -t infos < <(ip -j link show "${n[0]##*/}" | jq -cS '.[0].vfinfo_list // [] | sort_by(.vf)[]')
        fi
        for ((i = 0; i < $(< "$d/sriov_numvfs"); i++)); do
            local vf
            vf=$(readlink "$d/virtfn$i"); vf=${vf##*/}
            echo "  vf $i: $(device_state "$vf")"
            [ -e "${n[0]}" ] && echo "  vf $i: ${infos[i]:-no vfinfo entry}"
        done
    done
    for f in $(ledger_files) $(devinfo_files); do
        echo "file $f $(sha256sum < "$f" | cut -c1-16)"
    done
    echo "/dev/vfio: $(ls /dev/vfio | tr '\n' ' ')"
}

# assert_snapshot_eq BEFORE AFTER WHAT: two node_snapshot outputs are equal
# (prints a diff otherwise).
assert_snapshot_eq() {
    if [ "$1" != "$2" ]; then
        diff <(echo "$1") <(echo "$2") | sed 's/^/  /' >&2 || true
        fail "$3: the node changed (diff above: < before, > after)"
    fi
    pass "$3: node unchanged ($(grep -c . <<< "$1") snapshot lines identical)"
}

# assert_no_state: no ledger record/claim and no device-info file remain.
assert_no_state() {
    local l d
    l=$(ledger_files); d=$(devinfo_files)
    [ -z "$l" ] || fail "ledger files remain: $l"
    [ -z "$d" ] || fail "device-info files remain: $d"
    pass "no ledger (<stateDir>/$CNI_NETWORK/*.json, <stateDir>/devices/*.json) or device-info file left"
}

# assert_vf_restored BDF VF_INDEX INFO_BEFORE DRIVER_STATE_BEFORE WHAT: the VF
# is back on its kernel driver with its netdev, no driver_override, and its
# vfinfo entry (vf_info: every field) is what it was before.
assert_vf_restored() {
    local bdf=$1 idx=$2 info=$3 state=$4 what=$5
    assert_eq "$VF_DRIVER" "$(pci_driver "$bdf")" "$what: $bdf driver"
    assert_ne "" "$(vf_ifname "$idx")" "$what: $bdf netdev"
    assert_eq "" "$(driver_override "$bdf")" "$what: $bdf driver_override"
    assert_eq "$state" "$(device_state "$bdf")" "$what: $bdf driver/override/netdev as before"
    assert_eq "$info" "$(vf_info "$idx")" "$what: VF $idx vfinfo entry of ip -j link show (MAC, vlan, spoofchk, trust...)"
}

# ----------------------------------------------------- pods and testpmd ---

# pod_create NAME: the pod sandbox's network namespace (what the runtime makes
# before CNI ADD).  pod_delete NAME removes it.
pod_create() { ip netns add "$1"; }
pod_delete() { ip netns del "$1" 2>/dev/null || true; }

# eal_for BDF HUGEDIR NUMA [FILE_PREFIX]: DPDK EAL arguments, one per line:
# -a BDF, --huge-dir, --in-memory (or --file-prefix when given), and
# --socket-mem with 64 MB on NUMA when it is >= 0.
eal_for() {
    local addr=$1 huge=$2 numa=$3 prefix=${4:-} i mem=""
    printf '%s\n' -a "$addr" --huge-dir "$huge"
    if [ -n "$prefix" ]; then printf '%s\n' --file-prefix "$prefix"; else echo --in-memory; fi
    if [[ "$numa" =~ ^[0-9]+$ ]]; then
        for ((i = 0; i < numa; i++)); do mem+="0,"; done
        printf '%s\n' --socket-mem "${mem}64"
    fi
}

# eal_args DEVINFO_FILE HUGEDIR [FILE_PREFIX]: eal_for the device the plugin
# reported in its device-info file, on the NUMA node it reported.
eal_args() {
    local info=$1 addr
    addr=$(jq -er '.pci["pci-address"] | select(type == "string" and . != "")' "$info") ||
        fail "no pci-address in $info"
    eal_for "$addr" "$2" "$(jq -r '.pci["numa-node"] // -1' "$info")" "${3:-}"
}

# vf_mac_pinned IDX: succeeds when the PF pins VF IDX's MAC (an
# administrative MAC), fails when the VF driver may choose it. The VF's
# netdev asks for another address: refused means pinned; the PF's vfinfo
# entry following means free (the MAC is then put back). igbvf can report
# success without the PF's answer (its mailbox timed out): that is asked
# again, and the scenario fails if the PF never answers either way.
vf_mac_pinned() {
    local idx=$1 ifn mac try probe=02:00:00:00:00:99
    ifn=$(vf_ifname "$idx")
    mac=$(netdev_mac "$ifn")
    for try in 1 2 3; do
        ip link set "$ifn" address "$probe" 2>/dev/null || return 0
        if [ "$(vf_field "$idx" .address)" = "$probe" ]; then
            ip link set "$ifn" address "$mac" || fail "could not put $ifn's MAC $mac back"
            return 1
        fi
        ip link set "$ifn" address "$mac" 2>/dev/null || true
        sleep 1
    done
    fail "VF $idx: the PF neither refused nor took a new MAC from $ifn ($try tries)"
}

# pod_annotations FILE POD IFNAME...: the pod's downward-API annotations file
# holding the network-status annotation Multus would write for it: the
# cluster network, then one entry per attachment IFNAME with the device-info
# of that attachment, in the key="Go-quoted value" form.
pod_annotations() {
    local file=$1 pod=$2 ifn status
    shift 2
    status='[{"name":"cbr0","interface":"eth0","ips":["10.244.1.7"],"default":true}]'
    for ifn in "$@"; do
        status=$(jq -c --arg net "default/$CNI_NETWORK" --arg ifn "$ifn" \
            --slurpfile d "$(devinfo_path "$pod" "$ifn")" \
            '. + [{name: $net, interface: $ifn, "device-info": $d[0]}]' <<< "$status")
    done
    printf 'k8s.v1.cni.cncf.io/network-status="%s"\n' "$(sed 's/\\/\\\\/g; s/"/\\"/g' <<< "$status")" > "$file"
}

# fwd_bin: dpdk-fwd as built in the dpdk workspace (DPDK_FWD_BIN overrides).
fwd_bin() {
    local b=${DPDK_FWD_BIN:-${DPDK_CNI_REPO:-$VM_LIB_DIR/../..}/target/dpdk/debug/dpdk-fwd}
    [ -x "$b" ] || fail "no dpdk-fwd at $b: cd dpdk && CARGO_TARGET_DIR=../target/dpdk cargo build --bin dpdk-fwd"
    echo "$b"
}

# fwd_run NETNS GROUPS ANNOTATIONS LOG [DPDK_FWD_ARGS...]: dpdk-fwd in a pod
# sandbox (/dev/vfio/{vfio,GROUPS}, ANNOTATIONS as its downward-API file, the
# pod's hugetlbfs) with no EAL arguments, 64 MiB of hugepages and 4095
# mbufs; its output goes to LOG. Returns its exit status.
fwd_run() {
    local netns=$1 groups=$2 ann=$3 out=$4 bin
    shift 4
    bin=$(fwd_bin)
    POD_ANNOTATIONS=$ann POD_APP_TIMEOUT=150 \
        run_pod_app "$netns" "$groups" "$POD_HUGEDIR" -- \
        "$bin" --mem-mb 64 --mbufs 4095 "$@" > "$out" 2>&1
}

# fwd_result LOG KEY: a number from dpdk-fwd's final "fwd-result:" line
# (forwarded, rx, tx, dropped...), empty if there is none.
fwd_result() {
    sed -n "s/^fwd-result: .* $2=\([0-9]*\).*/\1/p" "$1"
}

# testpmd_launch NAME NETNS GROUP HUGEDIR [TESTPMD_ARGS...]: start
# dpdk-testpmd in the background in a pod sandbox (run_pod_app:
# /dev/vfio/{vfio,GROUP}, the hugetlbfs HUGEDIR, netns NETNS) with the EAL
# arguments in the array TESTPMD_EAL.  Output goes to $CNI_WORK/NAME.log.
# The job does not inherit fd 3 (bats waits for every holder of its fd 3).
testpmd_launch() {
    local name=$1 netns=$2 group=$3 huge=$4 log
    shift 4
    log=$CNI_WORK/$name.log
    log "testpmd $name: dpdk-testpmd -l 0-1 -n 1 ${TESTPMD_EAL[*]} -- $* (netns $netns, /dev/vfio/{vfio,$group})"
    : > "$log"
    rm -f "$log.pid"
    POD_APP_PIDFILE=$log.pid POD_APP_TIMEOUT=$(( ${TESTPMD_START_TIMEOUT:-120} + 60 )) \
        run_pod_app "$netns" "$group" "$huge" -- \
        dpdk-testpmd -l 0-1 -n 1 "${TESTPMD_EAL[@]}" --log-level=lib.eal:notice \
            -- --stats-period 1 --nb-cores=1 --total-num-mbufs=2048 --rxd=256 --txd=256 "$@" \
        > "$log" 2>&1 3>&- &
    echo $! > "$log.job"
    TESTPMD_RUNNING+=("$name")
}

# testpmd_start NAME NETNS DEVINFO_FILE [TESTPMD_ARGS...]: testpmd_launch with
# the EAL arguments and the group from the device-info file the plugin wrote.
testpmd_start() {
    local name=$1 netns=$2 info=$3
    shift 3
    mapfile -t TESTPMD_EAL < <(eal_args "$info" "$POD_HUGEDIR")
    [ "${#TESTPMD_EAL[@]}" -ge 4 ] || fail "could not build EAL arguments from $info"
    testpmd_launch "$name" "$netns" "$(devinfo_get "$info" iommu-group)" "$POD_HUGEDIR" "$@"
}

# testpmd_stat NAME KEY: the largest "KEY: N" testpmd printed (KEY e.g.
# TX-packets, RX-packets), 0 if none.
testpmd_stat() {
    grep -ao "$2: *[0-9]*" "$CNI_WORK/$1.log" 2>/dev/null | awk '{ if ($2 > m) m = $2 } END { print m + 0 }'
}
_testpmd_job_alive() { kill -0 "$(< "$CNI_WORK/$1.log.job")" 2>/dev/null; }
_testpmd_stat_or_dead() { [ "$(testpmd_stat "$1" "$2")" -gt 0 ] || ! _testpmd_job_alive "$1"; }
_testpmd_forwarding_or_dead() { grep -aq 'Port statistics' "$CNI_WORK/$1.log" || ! _testpmd_job_alive "$1"; }

# testpmd_wait_stat NAME KEY: wait until KEY > 0 (fails if testpmd dies first).
testpmd_wait_stat() {
    local t0=${EPOCHREALTIME/./}
    wait_for "${TESTPMD_START_TIMEOUT:-120}" "testpmd $1: $2 > 0" _testpmd_stat_or_dead "$1" "$2"
    if ! _testpmd_job_alive "$1"; then
        tail -n 30 "$CNI_WORK/$1.log" >&2
        fail "testpmd $1 exited before $2 > 0 (log above)"
    fi
    log "testpmd $1: $2 = $(testpmd_stat "$1" "$2") after $(( (${EPOCHREALTIME/./} - t0) / 1000 )) ms"
}

# testpmd_wait_forwarding NAME: wait until testpmd prints its first statistics
# (it is forwarding).
testpmd_wait_forwarding() {
    wait_for "${TESTPMD_START_TIMEOUT:-120}" "testpmd $1 to start forwarding" _testpmd_forwarding_or_dead "$1"
    _testpmd_job_alive "$1" || { tail -n 30 "$CNI_WORK/$1.log" >&2; fail "testpmd $1 exited during start-up (log above)"; }
    log "testpmd $1 is forwarding"
}

# testpmd_stop NAME: SIGINT (testpmd prints its final stats and exits), wait;
# sets TESTPMD_RC to its exit status.
testpmd_stop() {
    local job
    job=$(< "$CNI_WORK/$1.log.job")
    pod_app_stop "$CNI_WORK/$1.log.pid" INT 20 || true
    TESTPMD_RC=0
    wait "$job" || TESTPMD_RC=$?
    local keep=()
    local n
    for n in "${TESTPMD_RUNNING[@]}"; do [ "$n" = "$1" ] || keep+=("$n"); done
    TESTPMD_RUNNING=("${keep[@]}")
    log "testpmd $1 exited with status $TESTPMD_RC; TX-packets $(testpmd_stat "$1" TX-packets), RX-packets $(testpmd_stat "$1" RX-packets)"
}

# testpmd_summary NAME: testpmd's final port statistics block.
testpmd_summary() {
    sed -n '/Forward statistics for port/,/^ *-\{10,\}$/p' "$CNI_WORK/$1.log" | tail -n 8
}

# testpmd_cleanup: stop every testpmd this scenario started (EXIT trap).
TESTPMD_RUNNING=()
testpmd_cleanup() {
    local n
    for n in "${TESTPMD_RUNNING[@]}"; do
        [ -s "$CNI_WORK/$n.log.pid" ] && kill -s KILL "$(< "$CNI_WORK/$n.log.pid")" 2>/dev/null
    done
    return 0
}

# ------------------------------------------------------ resetting the node ---

# cni_reset_node [N]: the state every scenario starts from: N (default 2) VFs
# on the first PF, each on igbvf with its netdev, no driver_override, no VLAN,
# spoof checking on, trust off; no ledger, no device-info file, no pod netns.
# (VF MACs are left alone: igbvf registered them with the PF at probe time, and
# a MAC cannot be made "unset by the administrator" again through ip link.)
# VFs an earlier scenario left elsewhere (vfio-pci, no driver) go back to
# igbvf first: create_vfs waits for every VF's netdev.
cni_reset_node() {
    local n=${1:-2} i bdf pf ns link
    for ns in /run/netns/*; do [ -e "$ns" ] && pod_delete "${ns##*/}"; done
    for link in /sys/bus/pci/devices/"$(pf_bdf)"/virtfn*; do
        [ -e "$link" ] || continue
        bdf=$(readlink "$link"); bdf=${bdf##*/}
        if [ "$(pci_driver "$bdf")" != "$VF_DRIVER" ] || [ -n "$(driver_override "$bdf")" ]; then
            bind_kernel "$bdf" "$VF_DRIVER"
        fi
    done
    create_vfs "$n"
    pf=$(pf_ifname)
    for ((i = 0; i < n; i++)); do
        bdf=$(vf_bdf "$i")
        if [ "$(pci_driver "$bdf")" != "$VF_DRIVER" ] || [ -n "$(driver_override "$bdf")" ]; then
            bind_kernel "$bdf" "$VF_DRIVER"
        fi
        ip link set "$pf" vf "$i" vlan 0 spoofchk on trust off
    done
    rm -rf "$CNI_STATE_DIR" "$CNI_DEVINFO_DIR"
    mkdir -p "$CNI_DEVINFO_DIR"
    cni_stage
}
