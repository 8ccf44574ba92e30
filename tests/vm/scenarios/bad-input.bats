#!/usr/bin/env bats
# Bad input against the real node; every case leaves the node exactly as it
# was (vfinfo entries, drivers, overrides, netdevs, ledger and device-info
# files, /dev/vfio), also after the DEL a runtime sends next:
#   - an unknown PCI address                        -> 100
#   - the PF's own address without pfOnly           -> 7
#   - igb refuses link_state "enable" (with mac and vlan, so the settings
#     applied before the refusal must be rolled back) -> 104
#   - igb refuses vlanProto 802.1ad with a vlan     -> 104
#   - a VF whose IOMMU group is not viable          -> 102
# The last needs the second PF run.sh adds with VM_NOACS_PF=1 (the line
# below asks for it): PF2 sits behind a root port with ACS disabled, so PF2
# (bound to igb) and its VFs share one IOMMU group.  (The first PF's VFs each
# get a group of their own: QEMU's root port has ACS and Linux treats the
# 82576 as ACS-isolated between functions, so no second device can be put in
# a group with them.)
# Each case is a test of its own, starting from the node setup_file made.
# vm: noacs-pf
# Run:  tests/vm/run.sh tests/vm/scenarios/bad-input.bats [-f REGEX]

load helpers

setup_file() {
    untrace_helpers
    cni_reset_node 2
    PF_BDF=$(pf_bdf); VF0=$(vf_bdf 0)
    export PF_BDF VF0
    pod_create pod-bad
}

teardown_file() {
    local d
    for d in /sys/bus/pci/devices/*; do   # PF2's VF, if a failed test left it
        if [ "$(< "$d/vendor")" = "$PF_VENDOR" ] && [ "$(< "$d/device")" = "$PF_DEVICE" ] &&
            [ "${d##*/}" != "$PF_BDF" ] && [ "$(< "$d/sriov_numvfs")" != 0 ]; then
            echo 0 > "$d/sriov_numvfs"
        fi
    done
    pod_delete pod-bad
}

setup() { scenario_setup; }
teardown() { scenario_teardown; }

# bad_case NAME CODE MSG_ERE CONF [VAR=VALUE...]: ADD fails with CODE and the
# node is unchanged, before and after the runtime's DEL.
bad_case() {
    local name=$1 code=$2 re=$3 conf=$4 before
    shift 4
    echo "  netconf: $conf"
    before=$(node_snapshot)
    cni_add pod-bad net1 "$conf" "$@"
    assert_cni_err "$code" "$name" "$re"
    assert_snapshot_eq "$before" "$(node_snapshot)" "$name"
    cni_del pod-bad net1 "$conf"
    assert_cni_ok "$name: DEL after the failed ADD"
    assert_snapshot_eq "$before" "$(node_snapshot)" "$name, after DEL"
    assert_no_state
}

@test "an unknown PCI address fails with 100; node unchanged" {
    bad_case "unknown PCI address 0000:01:1f.6" 100 "0000:01:1f.6" \
        "$(netconf 0000:01:1f.6 '. + {vlan: 100}')"
}

@test "the PF's own address without pfOnly fails with 7; node unchanged" {
    bad_case "the PF $PF_BDF without pfOnly" 7 "pfOnly" \
        "$(netconf "$PF_BDF")"
}

@test "link_state enable after mac and vlan (igb: EOPNOTSUPP) fails with 104; settings rolled back" {
    bad_case "link_state enable (igb: EOPNOTSUPP) after mac and vlan" 104 "link_state" \
        "$(netconf "$VF0" '. + {mac: "02:00:00:00:00:10", vlan: 100, spoofchk: "off", link_state: "enable"}')"
    assert_equal "$(pci_driver "$VF0")" "$VF_DRIVER"
}

@test "vlanProto 802.1ad with vlan 100 (igb refuses) fails with 104; node unchanged" {
    bad_case "vlanProto 802.1ad with vlan 100 (igb refuses)" 104 "802.1ad" \
        "$(netconf "$VF0" '. + {vlan: 100, vlanProto: "802.1ad", mac: "02:00:00:00:00:10"}')"
    assert_equal "$(pci_driver "$VF0")" "$VF_DRIVER"
}

@test "a VF in a non-viable IOMMU group (shared with its PF on igb) fails with 102; node unchanged" {
    PF2=""
    for d in /sys/bus/pci/devices/*; do
        if [ "$(< "$d/vendor")" = "$PF_VENDOR" ] && [ "$(< "$d/device")" = "$PF_DEVICE" ] && [ "${d##*/}" != "$PF_BDF" ]; then
            PF2=${d##*/}
        fi
    done
    [ -n "$PF2" ] || fail "no second igb PF: boot with VM_NOACS_PF=1 (run.sh does when the scenario has '# vm: noacs-pf')"
    P2=/sys/bus/pci/devices/$PF2
    [ "$(< "$P2/sriov_numvfs")" = 1 ] || { [ "$(< "$P2/sriov_numvfs")" = 0 ] || echo 0 > "$P2/sriov_numvfs"; echo 1 > "$P2/sriov_numvfs"; }
    wait_for 10 "VF 0 of $PF2" test -L "$P2/virtfn0"
    PF2_VF=$(readlink "$P2/virtfn0"); PF2_VF=${PF2_VF##*/}
    wait_for 10 "netdev of $PF2_VF" _vf_has_netdev "$PF2_VF"
    G=$(iommu_group "$PF2_VF")
    log "PF2 $PF2 ($(pci_driver "$PF2")), its VF $PF2_VF ($(pci_driver "$PF2_VF")); IOMMU group $G: $(ls /sys/kernel/iommu_groups/"$G"/devices | tr '\n' ' ')"
    assert_equal "$(iommu_group "$PF2")" "$G"
    bad_case "VF $PF2_VF in IOMMU group $G with $PF2 on igb" 102 "$PF2.*igb|igb.*$PF2" \
        "$(netconf "$PF2_VF" '. + {vlan: 100, mac: "02:00:00:00:00:20"}')"
    assert_equal "$(pci_driver "$PF2_VF")" "$VF_DRIVER"
    refute [ -e "/dev/vfio/$G" ]
    echo 0 > "$P2/sriov_numvfs"
}
