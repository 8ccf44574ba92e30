#!/usr/bin/env bats
# The pod's address is announced at the kernel's pace, on VFs as a node has
# them after boot: created while the PF was down, never up since, so a VF's
# first carrier comes seconds after it goes up.
#   - ADD (netdevice, host-local) of such a VF returns before the VF has
#     carrier: the plugin saw none, and no carrier wait is in its time;
#   - a peer (another VF, in its own namespace, arp_accept on) learns the
#     pod's address at the pod's MAC once carrier comes, with nothing in the
#     pod sending anything (no ping, no process left in the pod);
#   - control: arp_notify alone, which the kernel documents as announcing a
#     link that comes up, announces nothing when carrier comes after the up.
# Run:  tests/vm/run.sh tests/vm/scenarios/announce.bats

BATS_LIB_DIR=${BATS_LIB_DIR:-/usr/lib/bats}
load "$BATS_LIB_DIR/bats-support/load"
load "$BATS_LIB_DIR/bats-assert/load"
# shellcheck source=../lib.sh
. "$BATS_TEST_DIRNAME/../lib.sh"
# shellcheck source=../cni.sh
. "$BATS_TEST_DIRNAME/../cni.sh"
# bats-assert pipes its message into `fail` with no argument; lib.sh's
# `fail MSG` (which replaced bats-support's) exits with MSG.
eval "lib_$(declare -f fail)"
fail() {
    if [ $# -eq 0 ]; then cat >&2; return 1; fi
    lib_fail "$@"
}

SUBNET=10.210.0
POD_MAC=02:00:00:00:0a:01
CTL_MAC=02:00:00:00:0a:02

# The test bed's helpers run untraced: bats' DEBUG trap costs more than the
# commands themselves under TCG.
setup() { set +T; }

# carrier IFNAME [NETNS]: 1 when the link has carrier.
carrier() {
    if [ -n "${2:-}" ]; then
        ip netns exec "$2" cat "/sys/class/net/$1/carrier" 2>/dev/null || echo 0
    else
        cat "/sys/class/net/$1/carrier" 2>/dev/null || echo 0
    fi
}
has_carrier() { [ "$(carrier "$@")" = 1 ]; }
# peer_knows IP MAC: the peer's neighbour table has IP at MAC.
peer_knows() { ip -n peer neigh show "$1" dev peer0 | grep -q "lladdr $2"; }

setup_file() {
    set +T
    local pf pfdir i
    pf=$(pf_bdf); pfdir=/sys/bus/pci/devices/$pf
    PF=$(pf_ifname)
    # VFs as after boot: created while the PF is down.
    ip link set "$PF" down
    echo 0 > "$pfdir/sriov_numvfs"
    echo 3 > "$pfdir/sriov_numvfs"
    for ((i = 0; i < 3; i++)); do
        wait_for 10 "VF $i" test -L "$pfdir/virtfn$i"
        wait_for 10 "netdev of VF $i" _vf_has_netdev "$(vf_bdf "$i")"
    done
    ip link set "$PF" up
    wait_for 30 "carrier on the PF $PF" has_carrier "$PF"
    cni_reset_node 3
    # The plugin and host-local start from tmpfs, started once already: the
    # ADD below is timed, not 9p or a cold page cache.
    stage_bin /usr/lib/cni/host-local > /dev/null
    /run/vm/bin/host-local <<< '{"cniVersion": "0.3.0"}' > /dev/null 2>&1 || true
    cni_call VERSION none none '{"cniVersion": "1.0.0"}'
    VF1=$(vf_bdf 1); IF1=$(vf_ifname 1); IF2=$(vf_ifname 2)
    # The peer: VF 0 in a namespace of its own, learning addresses from
    # gratuitous ARP (arp_accept), as a router port would.
    pod_create peer
    ip link set "$(vf_ifname 0)" netns peer name peer0
    ip netns exec peer sysctl -qw net.ipv4.conf.peer0.arp_accept=1
    ip -n peer addr add "$SUBNET.1/24" dev peer0
    ip -n peer link set peer0 up
    wait_for 30 "carrier on the peer's VF" has_carrier peer0 peer
    export PF VF1 IF1 IF2
}

teardown_file() {
    pod_delete peer
    pod_delete pod-a
    pod_delete ctl
}

@test "ADD of a VF that was never up returns before its carrier, without waiting for it" {
    [ "$(( $(< "/sys/class/net/$IF1/flags") & 1 ))" = 0 ] || fail "$IF1 is up already"
    cni_stage
    local conf ms ip flags
    # cniVersion 1.0.0: what Debian's host-local speaks.
    conf=$(netconf "$VF1" --arg d "$CNI_WORK/ipam" --arg mac "$POD_MAC" --arg s "$SUBNET.0/24" \
        '. + {cniVersion: "1.0.0", deviceType: "netdevice", mac: $mac, spoofchk: "off", trust: "on",
              logLevel: "debug", logFile: "/tmp/cni-vm/announce.log",
              ipam: {type: "host-local", dataDir: $d, ranges: [[{subnet: $s}]]}}')
    echo "$conf" > "$BATS_FILE_TMPDIR/conf"
    pod_create pod-a
    # The plugin alone is timed (GNU time around the exec a runtime makes),
    # not this shell's work around it.
    run /usr/bin/time -f %e -o "$BATS_FILE_TMPDIR/add.time" env -i PATH="$PATH" \
        CNI_COMMAND=ADD CNI_CONTAINERID=pod-a CNI_NETNS=/var/run/netns/pod-a CNI_IFNAME=net1 \
        CNI_PATH=/run/vm/bin "$CNI_BIN" <<< "$conf"
    assert_success
    jq -r '.ips[0].address' <<< "$output" | cut -d/ -f1 > "$BATS_FILE_TMPDIR/pod-ip"
    ip=$(< "$BATS_FILE_TMPDIR/pod-ip")
    ms=$(awk '{ printf "%d", $1 * 1000 }' "$BATS_FILE_TMPDIR/add.time")
    # Right after ADD: no carrier yet, and nothing announced.
    flags=$(ip -n pod-a -o link show net1 | grep -o '<[^>]*>')
    ! peer_knows "$ip" "$POD_MAC" || fail "the peer knew $ip right after ADD"
    printf '# ADD took %s ms; pod-a net1 right after: %s\n' "$ms" "$flags" >&3
    sed 's/^/# /' /tmp/cni-vm/announce.log >&3
    run grep -c "no carrier yet" /tmp/cni-vm/announce.log
    assert_output 1
    # The whole ADD of a fresh VF is about 0.9 s here; the 1 s carrier wait
    # there was comes on top of that.
    [ "$ms" -lt 1500 ] || fail "ADD took $ms ms"
}

@test "a peer learns the pod's MAC once carrier comes, with nothing sent from the pod" {
    local ip t0 ms
    ip=$(< "$BATS_FILE_TMPDIR/pod-ip")
    [ -n "$ip" ] || fail "no address from the ADD test"
    t0=${EPOCHREALTIME/./}
    wait_for 20 "carrier on pod-a's net1" has_carrier net1 pod-a
    printf '# carrier %s ms after the ADD test\n' "$(( (${EPOCHREALTIME/./} - t0) / 1000 ))" >&3
    wait_for 15 "the peer to learn $ip at $POD_MAC" peer_knows "$ip" "$POD_MAC"
    printf '# the peer knows %s at %s: %s\n' "$ip" "$POD_MAC" "$(ip -n peer neigh show "$ip" dev peer0)" >&3
    run ip netns pids pod-a
    assert_output ""
}

@test "control: arp_notify alone announces nothing when carrier comes after the link went up" {
    pod_create ctl
    ip link set "$IF2" netns ctl name ctl0
    ip netns exec ctl sysctl -qw net.ipv4.conf.ctl0.arp_notify=1
    ip -n ctl link set ctl0 address "$CTL_MAC"
    ip -n ctl addr add "$SUBNET.200/24" dev ctl0
    ip -n ctl link set ctl0 up
    ! has_carrier ctl0 ctl || fail "ctl0 has carrier at once: this control needs a late carrier"
    wait_for 20 "carrier on ctl0" has_carrier ctl0 ctl
    # As long as the plugin's announcement takes at most (7 s after ADD).
    sleep 8
    run ip -n peer neigh show "$SUBNET.200" dev peer0
    refute_output --partial "$CTL_MAC"
}

@test "DEL gives the VF back" {
    cni_del pod-a net1 "$(< "$BATS_FILE_TMPDIR/conf")" CNI_PATH=/run/vm/bin
    assert_cni_ok "DEL pod-a"
    assert_ne "" "$(vf_ifname 1)" "VF 1 has its netdev on the node again"
}
