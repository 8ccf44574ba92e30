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
# Environment: K8S_SCENARIOS (default "k8s k8s-dra": the scenario files run
# in one boot, in this order; e.g. K8S_SCENARIOS=k8s-dra), K8S_VM_TIMEOUT (seconds for the guest, default 1500),
# K8S_VM_MEM (MiB, default 2560: no more than 2815, see VM_MEM in
# tests/vm/run.sh), K8S_VM_SMP (CPUs, default 4: three testpmd pods of one CPU
# each and the DaemonSet), K8S_VM_HUGEPAGES (2 MiB pages, default 768: three
# pods of 512 MiB).
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

CP=$(mktemp -d /tmp/dpdk-cni-k8s.XXXXXX)
trap '"$HERE/control-plane.sh" stop "$CP" >&2 || true' EXIT
trap 'exit 130' INT TERM
eval "$("$HERE/control-plane.sh" start "$CP")"
export K8S_CP_DIR K8S_APISERVER_PORT

# The guest's kubeconfigs: the same identities, the server at the guestfwd
# address.
mkdir -p "$CP/guest"
for k in admin node; do
    cp "$CP/$k.kubeconfig" "$CP/guest/$k.kubeconfig"
    env -u KUBECONFIG "$K8S_KUBECTL" --kubeconfig "$CP/guest/$k.kubeconfig" config set-cluster test \
        --server "https://10.0.2.100:$K8S_APISERVER_PORT" >/dev/null
done
# One socat per guest connection (a chardev target would carry one stream only).
cat > "$CP/guestfwd.sh" <<EOF
#!/bin/sh
exec socat STDIO TCP:127.0.0.1:$K8S_APISERVER_PORT
EOF
chmod 755 "$CP/guestfwd.sh"
command -v socat >/dev/null || die "socat is missing (make deps installs it)"

export K8S_KUBELET K8S_CONTAINERD K8S_CONTAINERD_SHIM_RUNC_V2 K8S_CTR K8S_KUBECTL
VM_ENV="K8S_CP_DIR K8S_APISERVER_PORT K8S_KUBELET K8S_CONTAINERD K8S_CONTAINERD_SHIM_RUNC_V2 K8S_CTR K8S_KUBECTL K8S_IMAGES"
# The scenarios, in one boot: the device plugin's, then DRA's. The guest
# runs the files given after the options first, then the one run.sh names.
read -r -a scenarios <<< "${K8S_SCENARIOS:-k8s k8s-dra}"
n=${#scenarios[@]}
first=$REPO/tests/vm/scenarios/${scenarios[n-1]}.bats
rest=()
for s in "${scenarios[@]:0:n-1}"; do rest+=("$REPO/tests/vm/scenarios/$s.bats"); done
say "control plane up after $(( $(date +%s) - T0 ))s; booting the node"
rc=0
VM_ENV=$VM_ENV VM_BINDS=$CP \
VM_EXTRA_DEVICES="-device virtio-net-pci,netdev=k8s -netdev user,id=k8s,restrict=on,guestfwd=tcp:10.0.2.100:$K8S_APISERVER_PORT-cmd:$CP/guestfwd.sh" \
VM_MEM=${K8S_VM_MEM:-2560} VM_SMP=${K8S_VM_SMP:-4} VM_HUGEPAGES=${K8S_VM_HUGEPAGES:-768} VM_TIMEOUT=${K8S_VM_TIMEOUT:-1500} \
    "$REPO/tests/vm/run.sh" "$first" "$@" "${rest[@]}" || rc=$?
if [ "$rc" != 0 ]; then
    for l in "$CP"/logs/*.log; do say "--- $l (last lines)"; tail -n 15 "$l" >&2; done
fi
say "done in $(( $(date +%s) - T0 ))s (exit $rc)"
exit "$rc"
