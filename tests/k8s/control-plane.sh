#!/usr/bin/env bash
# A throwaway Kubernetes control plane on the host's loopback: etcd,
# kube-apiserver, kube-controller-manager and kube-scheduler, with their own
# CA, in a fresh directory.
#
#   tests/k8s/control-plane.sh start [DIR]
#                                        start it; print K8S_CP_DIR=<dir> and the
#                                        other NAME=value lines below on stdout.
#                                        DIR: an empty directory made with
#                                        mktemp -d /tmp/dpdk-cni-k8s.XXXXXX, for
#                                        a caller that must know it before start
#                                        returns (to stop it when interrupted)
#   tests/k8s/control-plane.sh stop DIR  stop what start left running in DIR and
#                                        remove DIR (idempotent)
#
# start prints (shell-quoted, ready for eval):
#   K8S_CP_DIR            the run directory (certificates, data, logs/)
#   KUBECONFIG_ADMIN      kubeconfig of a cluster admin (system:masters)
#   KUBECONFIG_NODE       kubeconfig of the node $K8S_NODE_NAME (client
#                         certificate in system:nodes, for the Node authorizer)
#   K8S_APISERVER_PORT    the API server's port on 127.0.0.1
#
# Environment:
#   K8S_NODE_NAME         the node the kubelet kubeconfig is for (dpdk-guest)
#   K8S_NODE_SERVER       the API server URL written into the node kubeconfig
#                         (default https://127.0.0.1:<port>; a guest reaching
#                         the host through a QEMU guestfwd uses its own address)
#   K8S_ADVERTISE_ADDRESS the API server's address in the `kubernetes` Service
#                         (default 10.0.2.100: the QEMU guestfwd address the
#                         guest reaches the host's loopback at, see VM.md;
#                         the API server refuses a loopback address here, and
#                         nothing on the host connects to it)
#   K8S_APISERVER_SANS    extra IP addresses in the serving certificate
#                         (default: the advertise address)
#   K8S_APISERVER_ARGS    extra kube-apiserver arguments (word-split), after ours
#   K8S_WAIT              seconds to wait for each daemon (default 120)
#   K8S_CACHE_DIR         as for components.sh (the binaries are not built here:
#                         run components.sh first)
#
# Nothing outside DIR is written: every daemon listens on 127.0.0.1 only, on
# ports that were free when start looked.  A failed start stops what it had
# started and removes DIR.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
NODE=${K8S_NODE_NAME:-dpdk-guest}
WAIT=${K8S_WAIT:-120}
SERVICE_CIDR=10.96.0.0/16
SERVICE_IP=10.96.0.1
ADVERTISE=${K8S_ADVERTISE_ADDRESS:-10.0.2.100}

say() { echo "[k8s-cp] $*" >&2; }
die() { say "error: $*"; exit 1; }
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN{printf "%.1f", b-a}'; }

# Kills the daemons recorded in DIR/pids (newest first), then removes DIR.
# A pid is only signalled while its command line still names DIR, so a
# recycled pid is never hit.
stop_dir() {
    local dir=$1 pid name
    [ -d "$dir" ] || { say "nothing to stop: $dir does not exist"; return 0; }
    if [ -f "$dir/pids" ]; then
        tac "$dir/pids" | while read -r pid name; do
            ours "$pid" "$dir" || continue
            kill -TERM "$pid" 2>/dev/null || true
            for _ in $(seq 1 50); do ours "$pid" "$dir" || break; sleep 0.2; done
            if ours "$pid" "$dir"; then
                say "$name ($pid) ignored SIGTERM for 10s; killing it"
                kill -KILL "$pid" 2>/dev/null || true
            fi
            say "stopped $name ($pid)"
        done
    fi
    rm -rf "$dir"
}
ours() { [ -r "/proc/$1/cmdline" ] && tr '\0' ' ' < "/proc/$1/cmdline" | grep -qF -- "$2"; }

# A TCP port on 127.0.0.1 that nothing listens on now and that this run has
# not handed out yet.
TAKEN=" "
free_port() {
    local p
    for _ in $(seq 1 200); do
        p=$((20000 + RANDOM % 40000))
        case $TAKEN in *" $p "*) continue ;; esac
        if [ -z "$(ss -Htln "sport = :$p")" ]; then TAKEN+="$p "; echo "$p"; return; fi
    done
    die "no free TCP port found on 127.0.0.1"
}

# Runs a daemon in the background with its output in logs/<name>.log.
launch() { # name cmd...
    local name=$1
    shift
    "$@" > "$DIR/logs/$name.log" 2>&1 &
    LAST_PID=$!
    echo "$LAST_PID $name" >> "$DIR/pids"
}

# Waits until `check` succeeds, at most $WAIT seconds, while the daemon lives.
wait_for() { # name pid check...
    local name=$1 pid=$2 t0
    shift 2
    t0=$(now)
    while ! "$@" >/dev/null 2>&1; do
        kill -0 "$pid" 2>/dev/null || {
            tail -n 20 "$DIR/logs/$name.log" >&2
            die "$name exited during start-up (log above, full log in $DIR/logs/$name.log)"
        }
        if awk -v a="$t0" -v b="$(now)" -v w="$WAIT" 'BEGIN{exit !(b-a > w)}'; then
            tail -n 20 "$DIR/logs/$name.log" >&2
            die "$name not ready after ${WAIT}s (K8S_WAIT); log above"
        fi
        sleep 0.2
    done
    say "$name ready in $(since "$t0")s"
}

# --- certificates -------------------------------------------------------
# One short-lived P-256 CA signs everything; a leaf gets a CN, an optional O,
# its extended key usages and its subject alternative names.
make_ca() {
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
        -keyout "$PKI/ca.key" -out "$PKI/ca.crt" -days 2 -subj /CN=dpdk-cni-test-ca \
        -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign \
        2>/dev/null
}
make_cert() { # name cn o eku [san]
    local name=$1 subj="/CN=$2" ext="$PKI/$1.ext"
    [ -z "$3" ] || subj="/O=$3$subj"
    {
        echo "basicConstraints=critical,CA:FALSE"
        echo "keyUsage=critical,digitalSignature,keyEncipherment"
        echo "extendedKeyUsage=$4"
        [ -z "${5:-}" ] || echo "subjectAltName=$5"
    } > "$ext"
    openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
        -keyout "$PKI/$name.key" -out "$PKI/$name.csr" -subj "$subj" 2>/dev/null
    openssl x509 -req -in "$PKI/$name.csr" -CA "$PKI/ca.crt" -CAkey "$PKI/ca.key" \
        -CAcreateserial -days 2 -extfile "$ext" -out "$PKI/$name.crt" 2>/dev/null
    rm -f "$PKI/$name.csr" "$ext"
}
make_kubeconfig() { # file server user cert
    local k=(env -u KUBECONFIG "$KUBECTL" --kubeconfig "$1" config)
    "${k[@]}" set-cluster test --server "$2" --certificate-authority "$PKI/ca.crt" --embed-certs >/dev/null
    "${k[@]}" set-credentials "$3" --client-certificate "$PKI/$4.crt" \
        --client-key "$PKI/$4.key" --embed-certs >/dev/null
    "${k[@]}" set-context test --cluster test --user "$3" >/dev/null
    "${k[@]}" use-context test >/dev/null
}

# A start that fails leaves nothing behind.
on_exit() {
    local rc=$?
    [ "$rc" = 0 ] || stop_dir "$DIR"
    exit "$rc"
}

start() {
    local bins t0 etcd_c etcd_p api sched kcm sans ip
    bins=$("$HERE/components.sh" env etcd kube-apiserver kube-controller-manager kube-scheduler kubectl) ||
        die "the binaries are not built: run tests/k8s/components.sh"
    eval "$bins"
    for b in "$K8S_ETCD" "$K8S_ETCDCTL" "$K8S_KUBE_APISERVER" "$K8S_KUBE_CONTROLLER_MANAGER" \
        "$K8S_KUBE_SCHEDULER" "$K8S_KUBECTL"; do
        [ -x "$b" ] || die "missing binary $b"
    done
    KUBECTL=$K8S_KUBECTL
    command -v openssl >/dev/null || die "openssl is needed (apt-get install openssl)"

    if [ -n "${1:-}" ]; then
        DIR=$1
        cp_dir "$DIR"
        if [ ! -d "$DIR" ] || [ -n "$(ls -A "$DIR")" ]; then die "$DIR is not an empty directory"; fi
    else
        DIR=$(mktemp -d /tmp/dpdk-cni-k8s.XXXXXX)
    fi
    trap on_exit EXIT
    trap 'exit 130' INT TERM
    PKI=$DIR/pki
    mkdir -p "$PKI" "$DIR/logs" "$DIR/etcd"
    chmod 700 "$DIR"
    : > "$DIR/pids"

    etcd_c=$(free_port); etcd_p=$(free_port); api=$(free_port); sched=$(free_port); kcm=$(free_port)

    t0=$(now)
    sans="IP:127.0.0.1,IP:$SERVICE_IP,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default"
    sans+=",DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local"
    for ip in ${K8S_APISERVER_SANS-$ADVERTISE}; do sans+=",IP:$ip"; done
    make_ca
    make_cert etcd etcd "" serverAuth,clientAuth "IP:127.0.0.1,DNS:localhost"
    make_cert apiserver-etcd-client kube-apiserver-etcd-client "" clientAuth
    make_cert apiserver kube-apiserver "" serverAuth "$sans"
    make_cert apiserver-kubelet-client kube-apiserver-kubelet-client system:masters clientAuth
    make_cert admin kubernetes-admin system:masters clientAuth
    make_cert scheduler system:kube-scheduler "" clientAuth
    make_cert controller-manager system:kube-controller-manager "" clientAuth
    make_cert node "system:node:$NODE" system:nodes clientAuth
    openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:prime256v1 -out "$PKI/sa.key" 2>/dev/null
    openssl pkey -in "$PKI/sa.key" -pubout -out "$PKI/sa.pub" 2>/dev/null
    local server=https://127.0.0.1:$api
    make_kubeconfig "$DIR/admin.kubeconfig" "$server" kubernetes-admin admin
    make_kubeconfig "$DIR/scheduler.kubeconfig" "$server" system:kube-scheduler scheduler
    make_kubeconfig "$DIR/controller-manager.kubeconfig" "$server" system:kube-controller-manager controller-manager
    make_kubeconfig "$DIR/node.kubeconfig" "${K8S_NODE_SERVER:-$server}" "system:node:$NODE" node
    say "certificates and kubeconfigs in $(since "$t0")s ($DIR)"

    local etcd_tls=(--cacert "$PKI/ca.crt" --cert "$PKI/apiserver-etcd-client.crt"
        --key "$PKI/apiserver-etcd-client.key" --endpoints "https://127.0.0.1:$etcd_c")
    launch etcd "$K8S_ETCD" --name cp --data-dir "$DIR/etcd" \
        --listen-client-urls "https://127.0.0.1:$etcd_c" --advertise-client-urls "https://127.0.0.1:$etcd_c" \
        --listen-peer-urls "https://127.0.0.1:$etcd_p" --initial-advertise-peer-urls "https://127.0.0.1:$etcd_p" \
        --initial-cluster "cp=https://127.0.0.1:$etcd_p" --initial-cluster-state new \
        --cert-file "$PKI/etcd.crt" --key-file "$PKI/etcd.key" --trusted-ca-file "$PKI/ca.crt" \
        --client-cert-auth --peer-cert-file "$PKI/etcd.crt" --peer-key-file "$PKI/etcd.key" \
        --peer-trusted-ca-file "$PKI/ca.crt" --peer-client-cert-auth \
        --unsafe-no-fsync --log-level warn
    wait_for etcd "$LAST_PID" "$K8S_ETCDCTL" "${etcd_tls[@]}" endpoint health

    # shellcheck disable=SC2206  # word splitting intended
    local extra=(${K8S_APISERVER_ARGS:-})
    launch kube-apiserver "$K8S_KUBE_APISERVER" \
        --bind-address 127.0.0.1 --advertise-address "$ADVERTISE" --secure-port "$api" \
        --etcd-servers "https://127.0.0.1:$etcd_c" --etcd-cafile "$PKI/ca.crt" \
        --etcd-certfile "$PKI/apiserver-etcd-client.crt" --etcd-keyfile "$PKI/apiserver-etcd-client.key" \
        --tls-cert-file "$PKI/apiserver.crt" --tls-private-key-file "$PKI/apiserver.key" \
        --client-ca-file "$PKI/ca.crt" \
        --kubelet-client-certificate "$PKI/apiserver-kubelet-client.crt" \
        --kubelet-client-key "$PKI/apiserver-kubelet-client.key" \
        --service-account-issuer https://kubernetes.default.svc.cluster.local \
        --service-account-key-file "$PKI/sa.pub" --service-account-signing-key-file "$PKI/sa.key" \
        --service-cluster-ip-range "$SERVICE_CIDR" \
        --authorization-mode Node,RBAC --enable-admission-plugins NodeRestriction \
        --allow-privileged=true --profiling=false --v=1 "${extra[@]}"
    wait_for kube-apiserver "$LAST_PID" \
        env -u KUBECONFIG "$KUBECTL" --kubeconfig "$DIR/admin.kubeconfig" --request-timeout 5s get --raw /readyz

    # The controllers a DaemonSet, its pods' service accounts and their
    # token's CA need (every default controller runs).
    launch kube-controller-manager "$K8S_KUBE_CONTROLLER_MANAGER" \
        --kubeconfig "$DIR/controller-manager.kubeconfig" \
        --authentication-kubeconfig "$DIR/controller-manager.kubeconfig" \
        --authorization-kubeconfig "$DIR/controller-manager.kubeconfig" \
        --service-account-private-key-file "$PKI/sa.key" --root-ca-file "$PKI/ca.crt" \
        --use-service-account-credentials --cluster-name dpdk-cni-test \
        --bind-address 127.0.0.1 --secure-port "$kcm" --leader-elect=false --profiling=false --v=1
    wait_for kube-controller-manager "$LAST_PID" \
        curl -fsS --max-time 5 -k "https://127.0.0.1:$kcm/healthz"

    launch kube-scheduler "$K8S_KUBE_SCHEDULER" \
        --kubeconfig "$DIR/scheduler.kubeconfig" \
        --authentication-kubeconfig "$DIR/scheduler.kubeconfig" \
        --authorization-kubeconfig "$DIR/scheduler.kubeconfig" \
        --bind-address 127.0.0.1 --secure-port "$sched" --leader-elect=false --profiling=false --v=1
    wait_for kube-scheduler "$LAST_PID" \
        curl -fsS --max-time 5 -k "https://127.0.0.1:$sched/healthz"

    printf 'K8S_CP_DIR=%q\n' "$DIR"
    printf 'KUBECONFIG_ADMIN=%q\n' "$DIR/admin.kubeconfig"
    printf 'KUBECONFIG_NODE=%q\n' "$DIR/node.kubeconfig"
    printf 'K8S_APISERVER_PORT=%q\n' "$api"
}

# Only directories named like start's own are stopped and removed.
cp_dir() {
    case $1 in
        /tmp/dpdk-cni-k8s.*/* | */..* | *..*) ;;
        /tmp/dpdk-cni-k8s.?*) return 0 ;;
    esac
    die "refusing to use $1: not a control-plane directory (/tmp/dpdk-cni-k8s.XXXXXX)"
}

case ${1:-} in
    start)
        [ $# -le 2 ] || { echo "usage: $0 start [dir]" >&2; exit 2; }
        start "${2:-}" ;;
    stop)
        [ $# = 2 ] || { echo "usage: $0 stop <dir printed by start>" >&2; exit 2; }
        cp_dir "$2"
        stop_dir "$2" ;;
    *) echo "usage: $0 start [dir] | stop <dir>" >&2; exit 2 ;;
esac
