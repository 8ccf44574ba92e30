# shellcheck shell=bash
# The Kubernetes node inside the QEMU guest: containerd and the kubelet,
# joined to the control plane that tests/k8s/run.sh started on the host's
# loopback.  Sourced by tests/vm/scenarios/k8s.bats (in the guest).
#
# From the host (run.sh exports them into the guest):
#   K8S_CP_DIR           the control plane's directory (bound into the guest):
#                        guest/{admin,node}.kubeconfig, pki/ca.crt
#   K8S_APISERVER_PORT   the API server's port; the guest reaches it at
#                        $K8S_HOST_ADDR:<port> through QEMU's guestfwd
#   K8S_KUBELET K8S_CONTAINERD K8S_CONTAINERD_SHIM_RUNC_V2 K8S_CTR K8S_KUBECTL
#                        the binaries (components.sh)
#   K8S_IMAGES           directory of the docker-archives from images.sh
#
# Everything the node writes is in the guest's RAM: containerd's root and
# the kubelet's root on tmpfs, the rest on the guest's overlay.

K8S_NODE=dpdk-guest
K8S_HOST_ADDR=10.0.2.100      # the guestfwd address of the host's loopback
K8S_GUEST_ADDR=10.0.2.15/24
K8S_SERVICE_IP=10.96.0.1
K8S_RUN=/run/k8s
K8S_LOGS=$K8S_RUN/logs
K8S_WAIT=${K8S_WAIT:-300}

k8s_now() { date +%s.%N; }

# k8s_daemon NAME LOG CMD...: CMD in the background, output appended to LOG,
# its pid in $K8S_RUN/NAME.pid.  It holds no descriptor but 0-2 (/dev/null,
# LOG): bats waits for every copy of its own to close before it ends, and the
# daemons, the shims and the containers after them outlive the tests.
k8s_daemon() {
    local name=$1 log=$2
    shift 2
    (
        for fd in /proc/self/fd/*; do
            fd=${fd##*/}
            [ "$fd" -gt 2 ] && eval "exec $fd>&-"
        done
        exec "$@"
    ) >> "$log" 2>&1 < /dev/null &
    echo $! > "$K8S_RUN/$name.pid"
}
k8s_since() { awk -v a="$1" -v b="$(k8s_now)" 'BEGIN{printf "%.1f", b-a}'; }
k8s_say() { echo "[k8s-node] $*" >&2; }

kc() { "$K8S_KUBECTL" --kubeconfig "$K8S_CP_DIR/guest/admin.kubeconfig" --request-timeout 30s "$@"; }

# k8s_wait WHAT SECONDS CMD...: runs CMD until it succeeds, at most SECONDS;
# prints how long it took.  Fails with WHAT.
k8s_wait() {
    local what=$1 limit=$2 t0
    shift 2
    t0=$(k8s_now)
    until "$@" >/dev/null 2>&1; do
        if awk -v a="$t0" -v b="$(k8s_now)" -v w="$limit" 'BEGIN{exit !(b-a > w)}'; then
            k8s_say "$what: not after ${limit}s"
            return 1
        fi
        sleep 1
    done
    k8s_say "$what after $(k8s_since "$t0")s"
}

# The guest's second NIC (virtio-net, QEMU user networking) carries only the
# API server's traffic: 10.0.2.15 on it, the host's loopback at 10.0.2.100.
k8s_guest_net() {
    local dev="" d
    for d in /sys/class/net/*; do
        [ "$(basename "$(readlink -f "$d/device/driver" 2>/dev/null)")" = virtio_net ] && dev=$(basename "$d")
    done
    [ -n "$dev" ] || { k8s_say "no virtio-net interface (run.sh adds it)"; return 1; }
    ip link set "$dev" up
    ip addr replace "$K8S_GUEST_ADDR" dev "$dev"
    ip route replace default via 10.0.2.2 dev "$dev"
    k8s_say "API server link: $dev, ${K8S_GUEST_ADDR%/*} -> $K8S_HOST_ADDR:$K8S_APISERVER_PORT"
}

# What kube-proxy would do for the one Service the node's own pods use: the
# `kubernetes` Service's address, for host-network pods (the DaemonSet).
k8s_service_dnat() {
    nft -f - <<EOF
table ip k8s-service
delete table ip k8s-service
table ip k8s-service {
    chain output {
        type nat hook output priority -100; policy accept;
        ip daddr $K8S_SERVICE_IP tcp dport 443 dnat to $K8S_HOST_ADDR:$K8S_APISERVER_PORT
    }
}
EOF
}

# cgroup v2: the controllers the kubelet manages, for the root's children.
k8s_cgroups() {
    local c want="" have
    have=$(cat /sys/fs/cgroup/cgroup.controllers)
    for c in cpuset cpu io memory hugetlb pids; do
        case " $have " in *" $c "*) want+=" +$c" ;; esac
    done
    # shellcheck disable=SC2086
    echo $want > /sys/fs/cgroup/cgroup.subtree_control
}

k8s_containerd_start() {
    mkdir -p "$K8S_LOGS" /var/lib/containerd /etc/cni/net.d /opt/cni/bin /var/run/cdi /etc/cdi
    mountpoint -q /var/lib/containerd || mount -t tmpfs -o mode=0711 tmpfs /var/lib/containerd
    # The default pod network: the reference plugins from Debian.
    cat > /etc/cni/net.d/10-pods.conflist <<'EOF'
{
  "cniVersion": "1.0.0",
  "name": "pods",
  "plugins": [
    {"type": "ptp", "ipMasq": false,
     "ipam": {"type": "host-local", "ranges": [[{"subnet": "10.244.0.0/24"}]],
              "routes": [{"dst": "0.0.0.0/0"}]}},
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
EOF
    cat > "$K8S_RUN/containerd.toml" <<EOF
version = 3
root = "/var/lib/containerd"
state = "/run/containerd"
[grpc]
  address = "/run/containerd/containerd.sock"
[plugins.'io.containerd.cri.v1.images']
  snapshotter = "overlayfs"
  [plugins.'io.containerd.cri.v1.images'.pinned_images]
    sandbox = "localhost/pause:dev"
[plugins.'io.containerd.cri.v1.runtime']
  enable_cdi = true
  cdi_spec_dirs = ["/etc/cdi", "/var/run/cdi"]
  [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]
    runtime_type = "io.containerd.runc.v2"
    [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]
      BinaryName = "$(command -v runc)"
      SystemdCgroup = false
  [plugins.'io.containerd.cri.v1.runtime'.cni]
    bin_dirs = ["/opt/cni/bin", "/usr/lib/cni"]
    conf_dir = "/etc/cni/net.d"
EOF
    # containerd finds its shim on PATH.
    PATH=$(dirname "$K8S_CONTAINERD_SHIM_RUNC_V2"):$PATH \
        k8s_daemon containerd "$K8S_LOGS/containerd.log" "$K8S_CONTAINERD" --config "$K8S_RUN/containerd.toml"
    k8s_wait "containerd answering" 120 "$K8S_CTR" --address /run/containerd/containerd.sock version
    local t0 img
    t0=$(k8s_now)
    for img in pause dpdk-cni dpdk-testpmd; do
        "$K8S_CTR" --address /run/containerd/containerd.sock -n k8s.io images import \
            "$K8S_IMAGES/$img.tar" > "$K8S_LOGS/import-$img.log" 2>&1 ||
            { cat "$K8S_LOGS/import-$img.log" >&2; return 1; }
    done
    k8s_say "images imported in $(k8s_since "$t0")s"
}

k8s_kubelet_start() {
    mkdir -p /var/lib/kubelet "$K8S_LOGS"
    mountpoint -q /var/lib/kubelet || mount -t tmpfs -o mode=0700 tmpfs /var/lib/kubelet
    cat > "$K8S_RUN/kubelet.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
containerRuntimeEndpoint: unix:///run/containerd/containerd.sock
cgroupDriver: cgroupfs
failSwapOn: false
address: 127.0.0.1
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: false}
  x509: {clientCAFile: $K8S_CP_DIR/pki/ca.crt}
authorization: {mode: AlwaysAllow}
# The guest's root is RAM: no disk pressure to act on.
evictionHard: {memory.available: "100Mi", nodefs.available: "1%", imagefs.available: "1%"}
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
resolvConf: ""
nodeStatusUpdateFrequency: 4s
syncFrequency: 10s
EOF
    k8s_daemon kubelet "$K8S_LOGS/kubelet.log" "$K8S_KUBELET" --config "$K8S_RUN/kubelet.yaml" \
        --kubeconfig "$K8S_CP_DIR/guest/node.kubeconfig" \
        --hostname-override "$K8S_NODE" --node-ip "${K8S_GUEST_ADDR%/*}" \
        --v=1
    k8s_wait "node $K8S_NODE Ready" "$K8S_WAIT" \
        kc wait --for=condition=Ready "node/$K8S_NODE" --timeout=5s
}

# k8s_node_up: all of the above, in order.
k8s_node_up() {
    mkdir -p "$K8S_RUN" "$K8S_LOGS"
    k8s_guest_net || return 1
    k8s_service_dnat || { k8s_say "could not add the Service address rule (nft)"; return 1; }
    k8s_cgroups || { k8s_say "could not enable the cgroup controllers"; return 1; }
    k8s_wait "API server reachable from the guest" 60 kc get --raw /readyz || return 1
    k8s_wait "API server at the kubernetes Service address" 30 \
        curl -sk -o /dev/null --max-time 5 "https://$K8S_SERVICE_IP/readyz" || {
        nft list ruleset >&2
        return 1
    }
    k8s_containerd_start || return 1
    k8s_kubelet_start
}

k8s_stop_pid() { # name
    local f=$K8S_RUN/$1.pid pid
    [ -f "$f" ] || return 0
    pid=$(cat "$f")
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 30); do kill -0 "$pid" 2>/dev/null || break; sleep 1; done
    kill -KILL "$pid" 2>/dev/null || true
    rm -f "$f"
}

k8s_node_down() {
    k8s_stop_pid kubelet
    k8s_stop_pid containerd
}

# k8s_logs_tail: the last lines of each daemon's log (for a failed test).
k8s_logs_tail() {
    local f
    for f in "$K8S_LOGS"/*.log; do
        [ -f "$f" ] || continue
        echo "--- $f"
        tail -n "${1:-30}" "$f"
    done
}

# --- pods ---------------------------------------------------------------------

# k8s_pod_phase NAME [NAMESPACE]
k8s_pod_phase() { kc -n "${2:-default}" get pod "$1" -o jsonpath='{.status.phase}' 2>/dev/null; }
k8s_pod_running() { [ "$(k8s_pod_phase "$@")" = Running ]; }

# k8s_pod_log NAME [NAMESPACE]: what the pod's containers wrote, from the
# kubelet's log files (the API server on the host cannot reach the kubelet
# for `kubectl logs`).
k8s_pod_log() { cat /var/log/pods/"${2:-default}_$1"_*/*/*.log 2>/dev/null; }

k8s_pod_log_has() { k8s_pod_log "$1" | grep -aq -- "$2"; }

# k8s_pod_stat NAME KEY: the largest "KEY: N" in the pod's log (testpmd's
# TX-packets, RX-packets), 0 if none.
k8s_pod_stat() {
    k8s_pod_log "$1" | grep -ao "$2: *[0-9]*" | awk '{ if ($2 > m) m = $2 } END { print m + 0 }'
}
k8s_pod_stat_positive() { [ "$(k8s_pod_stat "$1" "$2")" -gt 0 ]; }
# k8s_pod_stat_more POD FIELD N: the largest FIELD printed by POD is above N.
k8s_pod_stat_more() { [ "$(k8s_pod_stat "$1" "$2")" -gt "$3" ]; }

# k8s_pod_vf NAME: the PCI address dpdk-discover gave EAL (-a) in the pod.
k8s_pod_vf() {
    k8s_pod_log "$1" | grep -a 'dpdk-discover: eal-args:' | tail -n1 |
        grep -o -- '-a [0-9a-f]\{4\}:[0-9a-f:.]*' | cut -d' ' -f2
}

# k8s_testpmd_pod NAME ARGS_JSON: the docker/k8s testpmd pod under another
# name with other testpmd arguments (only name and args changed).
k8s_testpmd_pod() {
    kc create --dry-run=client -o json -f "$DPDK_CNI_REPO/docker/k8s/testpmd-pod.yaml" |
        jq --arg n "$1" --argjson a "$2" '.metadata.name = $n | .spec.containers[0].args = $a' |
        kc apply -f -
}
