#!/usr/bin/env bash
# The Kubernetes tier: a one-node cluster whose node is the QEMU SR-IOV guest.
#
#   tests/k8s/run.sh [BATS_OPTION...]      (make k8s-test; as root)
#
# On the host: the components (components.sh, cached), the images
# (images.sh), the control plane on the loopback (control-plane.sh: etcd,
# kube-apiserver, kube-controller-manager, kube-scheduler).  In the guest
# (tests/vm/scenarios/k8s.bats, with tests/k8s/node.bash): containerd and
# the kubelet, joined to that control plane through a second NIC whose only
# way out is QEMU's guestfwd from 10.0.2.100:<port> to the API server on
# 127.0.0.1:<port> (a socat per connection); then the project's manifests,
# applied as a user applies them.  The control plane is stopped and its
# directory removed on every exit.
#
# Environment: K8S_SCENARIOS (default "k8s k8s-dra": the scenario files, in
# this order, each on a control plane and a boot of its own; e.g.
# K8S_SCENARIOS=k8s-dra), K8S_VM_TIMEOUT (seconds for each boot, default 1000),
# K8S_VM_MEM (MiB, default 2560: no more than 2815, see VM_MEM in
# tests/vm/run.sh), K8S_VM_SMP (CPUs, default 4: three testpmd pods of one CPU
# each and the DaemonSet), K8S_VM_HUGEPAGES (2 MiB pages; default: the
# scenario's "# vm: hugepages=N": 768 in k8s.bats for three testpmd pods of
# 512 MiB, 512 in k8s-dra.bats for one), K8S_VM_NUMA (default: as the scenario's "# vm: numa" line
# says; k8s-dra.bats has it: two NUMA nodes, the igb and every hugepage on
# node 1, see VM_NUMA in tests/vm/run.sh), K8S_VM_APPEND (guest kernel words,
# default "nohz=off highres=off": a periodic tick, see tests/k8s/README.md),
# K8S_VM_BOOT_LOGLEVEL (the kernel's console loglevel while the guest boots,
# default 6: its boot messages, about 30 lines, say where a boot stopped).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
say() { echo "[k8s-test] $*" >&2; }
die() { say "error: $*"; exit 1; }
[ "$(id -u)" = 0 ] || die "run as root (the guest binds devices, the control plane is ours)"
T0=$(date +%s)

eval "$("$HERE/components.sh")"
export K8S_IMAGES=$REPO/target/k8s/images
"$HERE/images.sh" "$K8S_IMAGES"

command -v socat >/dev/null || die "socat is missing (make deps installs it)"
export K8S_KUBELET K8S_CONTAINERD K8S_CONTAINERD_SHIM_RUNC_V2 K8S_CTR K8S_KUBECTL
VM_ENV="K8S_CP_DIR K8S_APISERVER_PORT K8S_KUBELET K8S_CONTAINERD K8S_CONTAINERD_SHIM_RUNC_V2 K8S_CTR K8S_KUBECTL K8S_IMAGES"
# The scenarios, each in a boot of its own: the device plugin's, then DRA's.
read -r -a scenarios <<< "${K8S_SCENARIOS:-k8s k8s-dra}"

CP=""
# After a failure the summary is the last thing printed (stop quietly).
# (Not `> /dev/stderr`: where stderr is a file, that would truncate it.)
STOP_QUIET=0
stop_cp() {
    [ -n "$CP" ] || return 0
    if [ "$STOP_QUIET" = 1 ]; then
        "$HERE/control-plane.sh" stop "$CP" > /dev/null 2>&1 || true
    else
        "$HERE/control-plane.sh" stop "$CP" >&2 || true
    fi
    CP=""
}
trap stop_cp EXIT
trap 'exit 130' INT TERM

# attempt SCENARIO [BATS_OPTION...]: a fresh control plane, the node booted
# in the guest, the scenario file.
attempt() {
    local scenario=$REPO/tests/vm/scenarios/$1.bats
    shift
    CP=$(mktemp -d /tmp/dpdk-cni-k8s.XXXXXX)
    eval "$("$HERE/control-plane.sh" start "$CP")"
    export K8S_CP_DIR K8S_APISERVER_PORT
    # The guest's kubeconfigs: the same identities, the server at the
    # guestfwd address.
    mkdir -p "$CP/guest"
    local k
    for k in admin node; do
        cp "$CP/$k.kubeconfig" "$CP/guest/$k.kubeconfig"
        env -u KUBECONFIG "$K8S_KUBECTL" --kubeconfig "$CP/guest/$k.kubeconfig" config set-cluster test \
            --server "https://10.0.2.100:$K8S_APISERVER_PORT" >/dev/null
    done
    # One socat per guest connection (a chardev target would carry one stream only).
    printf '#!/bin/sh\nexec socat STDIO TCP:127.0.0.1:%s\n' "$K8S_APISERVER_PORT" > "$CP/guestfwd.sh"
    chmod 755 "$CP/guestfwd.sh"
    say "control plane up after $(( $(date +%s) - T0 ))s; booting the node for $(basename "$scenario")"
    rc=0
    VM_ENV=$VM_ENV VM_BINDS=$CP VM_SUMMARY=$CP/summary \
    VM_EXTRA_DEVICES="-device virtio-net-pci,netdev=k8s -netdev user,id=k8s,restrict=on,guestfwd=tcp:10.0.2.100:$K8S_APISERVER_PORT-cmd:$CP/guestfwd.sh" \
    VM_APPEND=${K8S_VM_APPEND-nohz=off highres=off} VM_BOOT_LOGLEVEL=${K8S_VM_BOOT_LOGLEVEL-6} VM_NUMA=${K8S_VM_NUMA:-} VM_MEM=${K8S_VM_MEM:-2560} VM_SMP=${K8S_VM_SMP:-4} VM_HUGEPAGES=${K8S_VM_HUGEPAGES:-} VM_TIMEOUT=${K8S_VM_TIMEOUT:-1000} \
        "$REPO/tests/vm/run.sh" "$scenario" "$@" || rc=$?
    if [ "$rc" != 0 ]; then
        local l
        for l in "$CP"/logs/*.log; do
            say "--- $l (last lines)"
            grep -av 'missing content for CA bundle' "$l" | tail -n 10 | cut -c1-300 >&2
        done
        if [ -f "$CP/summary" ]; then cat "$CP/summary" >&2; fi
    fi
    return 0
}

# An emulated guest that stalls for good (tests/vm/run.sh's exit status 123:
# a vCPU stalled, or the boot never reached the scenario) is the emulator's,
# not the code's under test: each scenario starts over once on a fresh
# control plane and a fresh boot, and the output says so.
final=0
for s in "${scenarios[@]}"; do
    attempt "$s" "$@"
    if [ "$rc" = 123 ]; then
        say "the guest stalled (above); starting $s over once"
        STOP_QUIET=1 stop_cp
        attempt "$s" "$@"
        if [ "$rc" = 0 ]; then say "$s passed on its second boot (the first stalled)"; fi
    fi
    STOP_QUIET=0
    [ "$rc" = 0 ] || { STOP_QUIET=1; final=$rc; }
    stop_cp
done
rc=$final
say "done in $(( $(date +%s) - T0 ))s (exit $rc)"
exit "$rc"
