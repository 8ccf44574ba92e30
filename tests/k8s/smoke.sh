#!/usr/bin/env bash
# The Kubernetes pieces work on this machine: builds them (components.sh,
# free when cached), starts the loopback control plane, asks it real
# questions, and starts containerd in a private root to prove its CRI
# answers.  No kubelet runs on the host (it would take over the host's
# cgroups); that is the guest's job.  Exit status 0 only when every check
# passed; the first failure says what broke and where its log is.
#
#   tests/k8s/smoke.sh          (make k8s-smoke)
#
# Environment: as for components.sh and control-plane.sh; K8S_WAIT bounds
# every wait (default 120 s).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
WAIT=${K8S_WAIT:-120}
say() { echo "[k8s-smoke] $*" >&2; }
fail() { say "FAILED: $*"; exit 1; }
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN{printf "%.1f", b-a}'; }
T_ALL=$(now)

CP_DIR=""
CTRD_DIR=""
CTRD_PID=""
cleanup() {
    local rc=$?
    if [ -n "$CTRD_DIR" ]; then stop_containerd || rc=1; fi
    if [ -n "$CP_DIR" ]; then "$HERE/control-plane.sh" stop "$CP_DIR" || rc=1; fi
    if [ "$rc" = 0 ]; then say "PASSED in $(since "$T_ALL")s"; else say "exit status $rc after $(since "$T_ALL")s"; fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- build --------------------------------------------------------------
t0=$(now)
bins=$("$HERE/components.sh") || fail "building the components (output above)"
eval "$bins"
say "components ready in $(since "$t0")s"

# --- control plane --------------------------------------------------------
# The directory is made here, so that a stop on the way out has its name even
# when a signal comes while start runs.
t0=$(now)
CP_DIR=$(mktemp -d /tmp/dpdk-cni-k8s.XXXXXX)
cp_env=$("$HERE/control-plane.sh" start "$CP_DIR") || fail "control-plane.sh start (output above)"
eval "$cp_env"
say "control plane up in $(since "$t0")s ($CP_DIR)"
kc() { env -u KUBECONFIG "$K8S_KUBECTL" --kubeconfig "$KUBECONFIG_ADMIN" --request-timeout 30s "$@"; }
kn() { env -u KUBECONFIG "$K8S_KUBECTL" --kubeconfig "$KUBECONFIG_NODE" --request-timeout 30s "$@"; }

t0=$(now)
out=$(kc get --raw /readyz) || fail "GET /readyz: $out (log: $CP_DIR/logs/kube-apiserver.log)"
[ "$out" = ok ] || fail "GET /readyz answered '$out', not ok"
say "ok: /readyz"

out=$(kc version) || fail "kubectl version: $out"
grep -qx "Client Version: $KUBERNETES_VERSION" <<< "$out" || fail "kubectl calls itself '$(head -1 <<< "$out")', expected $KUBERNETES_VERSION"
grep -qx "Server Version: $KUBERNETES_VERSION" <<< "$out" || fail "the API server calls itself '$(grep Server <<< "$out")', expected $KUBERNETES_VERSION"
say "ok: client and server are $KUBERNETES_VERSION"

out=$(kc api-resources) || fail "kubectl api-resources: $out"
grep -Eq '^resourceslices +resource\.k8s\.io/v1 +false +ResourceSlice$' <<< "$out" ||
    fail "no resourceslices in resource.k8s.io/v1 (dynamic resource allocation): $(grep -i resource.k8s.io <<< "$out" || echo none)"
grep -Eq '^resourceclaims +resource\.k8s\.io/v1 +true +ResourceClaim$' <<< "$out" ||
    fail "no resourceclaims in resource.k8s.io/v1"
say "ok: resource.k8s.io/v1 serves resourceslices and resourceclaims"

ns=smoke-$RANDOM
value="vf-$RANDOM"
kc create namespace "$ns" >/dev/null || fail "creating namespace $ns"
kc -n "$ns" create configmap probe --from-literal "pf=$value" >/dev/null || fail "creating a ConfigMap in $ns"
got=$(kc -n "$ns" get configmap probe -o 'jsonpath={.data.pf}') || fail "reading the ConfigMap back"
[ "$got" = "$value" ] || fail "the ConfigMap read back holds '$got', not '$value'"
say "ok: namespace $ns and a ConfigMap written and read back through etcd"

who=$(kn auth whoami -o 'jsonpath={.status.userInfo.username}') || fail "the node kubeconfig is not accepted"
[ "$who" = "system:node:${K8S_NODE_NAME:-dpdk-guest}" ] || fail "the node kubeconfig authenticates as '$who'"
if err=$(kn -n "$ns" get configmap probe 2>&1); then
    fail "the node identity may read any ConfigMap: Node,RBAC authorization is not in force"
fi
grep -q Forbidden <<< "$err" || fail "the node's read of a ConfigMap failed for another reason: $err"
say "ok: the node kubeconfig is $who and the Node authorizer refuses it a ConfigMap"
say "API checks in $(since "$t0")s"

"$HERE/control-plane.sh" stop "$CP_DIR" || fail "control-plane.sh stop"
[ ! -e "$CP_DIR" ] || fail "control-plane.sh stop left $CP_DIR behind"
CP_DIR=""

# --- containerd's CRI -----------------------------------------------------
# Host paths containerd would use by default; a private root must leave
# them as they were.
HOST_PATHS=(/run/containerd /var/lib/containerd /opt/containerd /var/run/nri /etc/containerd)
host_state() { local p; for p in "${HOST_PATHS[@]}"; do [ -e "$p" ] && echo "$p"; done; true; }
before=$(host_state)

# Stops containerd if it runs, then removes its directory.
stop_containerd() {
    if [ -n "$CTRD_PID" ]; then
        kill -TERM "$CTRD_PID" 2>/dev/null || true
        for _ in $(seq 1 50); do kill -0 "$CTRD_PID" 2>/dev/null || break; sleep 0.2; done
        if kill -0 "$CTRD_PID" 2>/dev/null; then kill -KILL "$CTRD_PID" 2>/dev/null || true; fi
        wait "$CTRD_PID" 2>/dev/null || true
        CTRD_PID=""
    fi
    if grep -qF " $CTRD_DIR/" /proc/self/mounts; then
        say "mounts left under $CTRD_DIR; not removing it"
        return 1
    fi
    rm -rf "$CTRD_DIR"
    CTRD_DIR=""
}

t0=$(now)
CTRD_DIR=$(mktemp -d /tmp/dpdk-cni-ctrd.XXXXXX)
mkdir -p "$CTRD_DIR/cni/conf" "$CTRD_DIR/cni/bin" "$CTRD_DIR/cdi"
sock=$CTRD_DIR/containerd.sock
cat > "$CTRD_DIR/config.toml" <<EOF
# generated by tests/k8s/smoke.sh: every path private to this run, no imports
# from /etc/containerd, NRI (a socket under /var/run/nri) off.
version = 4
root = "$CTRD_DIR/root"
state = "$CTRD_DIR/state"
temp = "$CTRD_DIR/tmp"
imports = ["$CTRD_DIR/conf.d/*.toml"]
disabled_plugins = ["io.containerd.nri.v1.nri"]
[plugins."io.containerd.server.v1.grpc"]
  address = "$sock"
[plugins."io.containerd.server.v1.ttrpc"]
  address = "$sock.ttrpc"
[plugins."io.containerd.server.v1.debug"]
  address = ""
[plugins."io.containerd.internal.v1.opt"]
  path = "$CTRD_DIR/opt"
[plugins."io.containerd.image-verifier.v1.bindir"]
  bin_dir = "$CTRD_DIR/verifiers"
[plugins."io.containerd.cri.v1.runtime"]
  cdi_spec_dirs = ["$CTRD_DIR/cdi"]
  [plugins."io.containerd.cri.v1.runtime".cni]
    bin_dirs = ["$CTRD_DIR/cni/bin"]
    conf_dir = "$CTRD_DIR/cni/conf"
EOF
# crictl reads /etc/crictl.yaml unless given its own file.
printf 'runtime-endpoint: unix://%s\nimage-endpoint: unix://%s\ntimeout: 10\n' "$sock" "$sock" > "$CTRD_DIR/crictl.yaml"
# containerd ignores keys it does not know: check the configuration it would
# run with before it runs.  Every path setting must be inside CTRD_DIR; the
# only exception is the arguments of the image decryption stream processors,
# which run only to pull an encrypted image.
dump=$("$K8S_CONTAINERD" --config "$CTRD_DIR/config.toml" config dump 2>&1) || fail "containerd config dump: $dump"
if host=$(grep -E "^ *[a-z_]+ = .*'/" <<< "$dump" | grep -vF "'$CTRD_DIR" | grep -Ev '^ *args = '); then
    fail "the generated containerd configuration names host paths: $host"
fi
"$K8S_CONTAINERD" --config "$CTRD_DIR/config.toml" > "$CTRD_DIR/containerd.log" 2>&1 &
CTRD_PID=$!
cri() { "$K8S_CRICTL" --config "$CTRD_DIR/crictl.yaml" "$@"; }
start=$(now)
until out=$(cri version 2>&1); do
    kill -0 "$CTRD_PID" 2>/dev/null || { tail -n 20 "$CTRD_DIR/containerd.log" >&2; fail "containerd exited (log above)"; }
    awk -v a="$start" -v b="$(now)" -v w="$WAIT" 'BEGIN{exit !(b-a > w)}' &&
        { tail -n 20 "$CTRD_DIR/containerd.log" >&2; fail "containerd's CRI did not answer in ${WAIT}s: $out"; }
    sleep 0.2
done
say "containerd's CRI answered in $(since "$start")s"
grep -Eq '^RuntimeName: +containerd$' <<< "$out" || fail "crictl version: not containerd: $out"
grep -Eq "^RuntimeVersion: +$CONTAINERD_VERSION\$" <<< "$out" || fail "crictl version: containerd is not $CONTAINERD_VERSION: $out"
grep -Eq '^RuntimeApiVersion: +v1$' <<< "$out" || fail "crictl version: CRI is not v1: $out"
say "ok: crictl version: $(tr -s ' \n' ' ' <<< "$out")"
conds=$(cri info -o go-template --template '{{range .status.conditions}}{{.type}}={{.status}} {{end}}') ||
    fail "crictl info: $conds"
# No CNI configuration is given, so the network is not ready; the runtime is.
grep -qw 'RuntimeReady=true' <<< "$conds" || fail "containerd's CRI reports the runtime not ready: $conds"
grep -qw 'NetworkReady=false' <<< "$conds" || fail "containerd's CRI reports a pod network with no CNI configuration: $conds"
say "ok: crictl info: $conds"
if grep -q 'level=error' "$CTRD_DIR/containerd.log"; then
    grep 'level=error' "$CTRD_DIR/containerd.log" | head -n 5 >&2
    fail "containerd logged errors (above)"
fi
stop_containerd || fail "stopping containerd"
[ "$(host_state)" = "$before" ] || fail "containerd touched the host: $(diff <(echo "$before") <(host_state) || true)"
say "ok: containerd stopped, its temp root removed, host paths untouched; CRI check in $(since "$t0")s"
