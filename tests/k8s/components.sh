#!/usr/bin/env bash
# Builds the Kubernetes pieces the cluster tier runs, from Go modules at the
# versions pinned below (the one place they are written):
#   kube-apiserver, kube-controller-manager, kubelet,
#   kube-scheduler, kubectl                            (modules/kubernetes)
#   etcd, etcdctl                                      (modules/etcd)
#   containerd, containerd-shim-runc-v2, ctr           (modules/containerd)
#   crictl                                             (modules/cri-tools)
# Each modules/<name>/ holds only a go.mod and go.sum that require the
# upstream module: go.sum pins every dependency, and builds run with
# -mod=readonly, so a build fetches exactly what was pinned (from the Go module
# proxy, or the local module cache when it has them).
#
#   tests/k8s/components.sh         build what the cache lacks; print K8S_<NAME>=path
#                                   lines (shell-quoted) for every binary, then
#                                   the <COMPONENT>_VERSION=... lines
#   tests/k8s/components.sh env     the same lines, building nothing (exit 1
#                                   when a binary is missing)
#   tests/k8s/components.sh build|env NAME...
#                                   only these components (kubernetes, etcd,
#                                   containerd, crictl) or binaries (kubelet, ...)
#   tests/k8s/components.sh pin     rewrite modules/*/go.mod and go.sum from
#                                   the versions below, asking the module proxy
#                                   (after changing a version; the build checks
#                                   that go.mod and this script agree)
#
# Binaries are static (CGO_ENABLED=0) so that the guest, which runs the host's
# root through 9p, can start them too.  They go to
#   $K8S_CACHE_DIR/<component>-<version>/      (default
#   ${XDG_CACHE_HOME:-$HOME/.cache}/dpdk-cni/k8s)
# with a .recipe file (Go version, tags, flags, go.sum digest); a directory
# whose recipe matches is reused as it is, so a warm run builds nothing.
# Builds run under `nice -n 19` with GOMAXPROCS=2 (K8S_BUILD_PROCS to change).
set -euo pipefail

KUBERNETES_VERSION=v1.37.2
ETCD_VERSION=v3.6.16
CONTAINERD_VERSION=v2.4.2
CRI_TOOLS_VERSION=v1.37.0

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
MODULES=$HERE/modules
CACHE=${K8S_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/dpdk-cni/k8s}
export GOTOOLCHAIN=local GOMAXPROCS=${K8S_BUILD_PROCS:-2} CGO_ENABLED=0

# The Kubernetes binaries report a build date: the release's commit time (from
# the module proxy), so that two builds of one version are byte for byte equal.
BUILD_DATE=unknown
say() { echo "[k8s-components] $*" >&2; }
die() { say "error: $*"; exit 1; }

# Kubernetes' own release builds use these tags (hack/lib/golang.sh).
KUBE_TAGS=selinux,notest,grpcnotrace
# Static containerd: the upstream STATIC=1 tags; no_btrfs because the btrfs
# snapshotter needs cgo and the btrfs headers.
CONTAINERD_TAGS=urfave_cli_no_docs,osusergo,netgo,static_build,no_btrfs
SHIM_TAGS=$CONTAINERD_TAGS,no_grpc

kube_ldflags() {
    local v=${KUBERNETES_VERSION#v} p out=""
    local major=${v%%.*} rest=${v#*.}
    local minor=${rest%%.*}
    for p in k8s.io/client-go/pkg/version k8s.io/component-base/version; do
        out+=" -X $p.gitVersion=$KUBERNETES_VERSION -X $p.gitMajor=$major -X $p.gitMinor=$minor"
        out+=" -X $p.gitTreeState=clean -X $p.buildDate=$BUILD_DATE"
    done
    echo "-s -w$out"
}

# name|module dir|version|tags|ldflags|output=package ...
components() {
    local cd=github.com/containerd/containerd/v2
    echo "kubernetes|kubernetes|$KUBERNETES_VERSION|$KUBE_TAGS|$(kube_ldflags)|kube-apiserver=k8s.io/kubernetes/cmd/kube-apiserver"
    echo "kubernetes|kubernetes|$KUBERNETES_VERSION|$KUBE_TAGS|$(kube_ldflags)|kube-controller-manager=k8s.io/kubernetes/cmd/kube-controller-manager"
    echo "kubernetes|kubernetes|$KUBERNETES_VERSION|$KUBE_TAGS|$(kube_ldflags)|kubelet=k8s.io/kubernetes/cmd/kubelet"
    echo "kubernetes|kubernetes|$KUBERNETES_VERSION|$KUBE_TAGS|$(kube_ldflags)|kube-scheduler=k8s.io/kubernetes/cmd/kube-scheduler"
    echo "kubernetes|kubernetes|$KUBERNETES_VERSION|$KUBE_TAGS|$(kube_ldflags)|kubectl=k8s.io/kubernetes/cmd/kubectl"
    echo "etcd|etcd|$ETCD_VERSION||-s -w|etcd=go.etcd.io/etcd/server/v3 etcdctl=go.etcd.io/etcd/etcdctl/v3"
    local cl="-s -w -X $cd/version.Version=$CONTAINERD_VERSION -X $cd/version.Package=$cd"
    echo "containerd|containerd|$CONTAINERD_VERSION|$CONTAINERD_TAGS|$cl|containerd=$cd/cmd/containerd ctr=$cd/cmd/ctr"
    echo "containerd|containerd|$CONTAINERD_VERSION|$SHIM_TAGS|$cl|containerd-shim-runc-v2=$cd/cmd/containerd-shim-runc-v2"
    echo "crictl|cri-tools|$CRI_TOOLS_VERSION||-s -w -X sigs.k8s.io/cri-tools/pkg/version.Version=${CRI_TOOLS_VERSION#v}|crictl=sigs.k8s.io/cri-tools/cmd/crictl"
}

# ONLY: the components (kubernetes, etcd, containerd, crictl) or binaries
# named on the command line; all when none is.
ONLY=()
wanted() { # name outs
    local w o
    [ ${#ONLY[@]} = 0 ] && return 0
    for w in "${ONLY[@]}"; do
        [ "$w" = "$1" ] && return 0
        for o in $2; do [ "$w" = "${o%%=*}" ] && return 0; done
    done
    return 1
}

names() { local o r=""; for o in $1; do r+="${o%%=*} "; done; echo "${r% }"; }

# The cache directory of one binary: <binary>-<version> for the Kubernetes
# binaries (built one by one), <component>-<version> for the others.
cache_dir() { # name version first-output
    case $1 in kubernetes) echo "$CACHE/$3-$2" ;; *) echo "$CACHE/$1-$2" ;; esac
}

recipe() { # moddir tags ldflags
    printf 'go=%s cgo=0 tags=%s\nldflags=%s\nmodules=%s\n' "$(go env GOVERSION)" "$2" \
        "${3//$BUILD_DATE/<date>}" "$(cat "$MODULES/$1/go.mod" "$MODULES/$1/go.sum" | sha256sum | cut -c1-16)"
}

# Checks that the committed go.mod requires the version pinned above.
check_pin() { # moddir module version
    local have
    have=$(cd "$MODULES/$1" && go list -m -mod=readonly -f '{{.Version}}' "$2" 2>/dev/null) ||
        die "modules/$1/go.mod does not require $2; run: tests/k8s/components.sh pin"
    [ "$have" = "$3" ] ||
        die "modules/$1/go.mod pins $2 $have but components.sh says $3; run: tests/k8s/components.sh pin"
}

build_all() { # build=1 builds what is missing; 0 only reports
    local build=$1 name moddir version tags ldflags outs dir first o t0 secs missing=0
    if [ "$build" = 1 ]; then
        command -v go >/dev/null || die "no Go toolchain on PATH (Go >= 1.26.8 is needed)"
        check_pin kubernetes k8s.io/kubernetes "$KUBERNETES_VERSION"
        check_pin etcd go.etcd.io/etcd/server/v3 "$ETCD_VERSION"
        check_pin etcd go.etcd.io/etcd/etcdctl/v3 "$ETCD_VERSION"
        check_pin containerd github.com/containerd/containerd/v2 "$CONTAINERD_VERSION"
        check_pin cri-tools sigs.k8s.io/cri-tools "$CRI_TOOLS_VERSION"
        BUILD_DATE=$(cd "$MODULES/kubernetes" &&
            go list -m -mod=readonly -f '{{.Time.UTC.Format "2006-01-02T15:04:05Z"}}' k8s.io/kubernetes) ||
            die "cannot read the release time of k8s.io/kubernetes $KUBERNETES_VERSION"
    fi
    while IFS='|' read -r name moddir version tags ldflags outs; do
        wanted "$name" "$outs" || continue
        first=${outs%%=*}
        dir=$(cache_dir "$name" "$version" "$first")
        local want have=""
        if [ "$build" = 1 ]; then
            want=$(recipe "$moddir" "$tags" "$ldflags")
            [ -f "$dir/.recipe.$first" ] && have=$(cat "$dir/.recipe.$first")
        fi
        local all_there=1
        for o in $outs; do [ -x "$dir/${o%%=*}" ] || all_there=0; done
        if [ "$build" = 0 ]; then
            [ "$all_there" = 1 ] || { say "missing: $dir/$first (run tests/k8s/components.sh)"; missing=1; }
        elif [ "$all_there" = 1 ] && [ "$have" = "$want" ]; then
            say "$name $version: $(names "$outs") from cache ($dir)"
        else
            [ "$all_there" = 1 ] && say "$name $version: cached build has another recipe, rebuilding"
            t0=$(date +%s.%N)
            local tmp
            tmp=$(mktemp -d "$CACHE/.build.XXXXXX")
            for o in $outs; do
                say "$name $version: building ${o%%=*} (${o#*=}, tags ${tags:-none})"
                (cd "$MODULES/$moddir" &&
                    nice -n 19 go build -mod=readonly -buildvcs=false -trimpath \
                        ${tags:+-tags "$tags"} -ldflags "$ldflags" -o "$tmp/${o%%=*}" "${o#*=}") ||
                    { rm -rf "$tmp"; die "building ${o%%=*} from ${o#*=} $version failed"; }
            done
            mkdir -p "$dir"
            for o in $outs; do mv -f "$tmp/${o%%=*}" "$dir/${o%%=*}"; done
            echo "$want" > "$dir/.recipe.$first"
            rmdir "$tmp"
            secs=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN{printf "%.0f", b-a}')
            say "$name $version: built $(names "$outs") in ${secs}s ($dir)"
        fi
        for o in $outs; do
            local var=${o%%=*}
            var=${var//-/_}
            printf 'K8S_%s=%q\n' "${var^^}" "$dir/${o%%=*}"
        done
    done < <(components)
    printf '%s=%q\n' KUBERNETES_VERSION "$KUBERNETES_VERSION" ETCD_VERSION "$ETCD_VERSION" \
        CONTAINERD_VERSION "$CONTAINERD_VERSION" CRI_TOOLS_VERSION "$CRI_TOOLS_VERSION"
    [ "$missing" = 0 ]
}

# Rewrites one wrapper module: go.mod requiring the given packages at their
# version (plus the extra go.mod lines), go.sum with every hash they need.
pin_module() { # moddir "extra go.mod edits" tags pkg@version...
    local moddir=$1 edits=$2 tags=$3 work
    shift 3
    work=$(mktemp -d)
    (
        cd "$work"
        export GOFLAGS=-mod=mod
        go mod init "dpdk-cni.test/k8s/$moddir" >/dev/null 2>&1
        [ -z "$edits" ] || eval "$edits"
        go get ${tags:+-tags "$tags"} "$@"
        local pkgs=("${@%@*}")
        GOFLAGS=-mod=readonly go list ${tags:+-tags "$tags"} -deps "${pkgs[@]}" >/dev/null
    ) || { rm -rf "$work"; die "pinning modules/$moddir failed"; }
    mkdir -p "$MODULES/$moddir"
    cp "$work/go.mod" "$work/go.sum" "$MODULES/$moddir/"
    rm -rf "$work"
    say "modules/$moddir: $(grep -c . "$MODULES/$moddir/go.sum") go.sum lines"
}

# Kubernetes' go.mod points its staging modules (k8s.io/api, client-go, ...)
# at ./staging; outside its tree they come from the proxy at v0.<minor>.<patch>.
kube_replaces() {
    local dir staging=v0.${KUBERNETES_VERSION#v1.} m
    dir=$(GOFLAGS=-mod=mod go mod download -json "k8s.io/kubernetes@$KUBERNETES_VERSION" |
        sed -n 's/^\t"Dir": "\(.*\)",$/\1/p')
    [ -f "$dir/go.mod" ] || die "cannot download k8s.io/kubernetes@$KUBERNETES_VERSION"
    grep '^godebug ' "$dir/go.mod" | while read -r _ kv; do echo "go mod edit -godebug=$kv;"; done
    awk '$2 == "=>" && $3 ~ /^\.\/staging\// {print $1}' "$dir/go.mod" | while read -r m; do
        echo "go mod edit -replace=$m=$m@$staging;"
    done
}

pin() {
    local cd=github.com/containerd/containerd/v2 k=k8s.io/kubernetes/cmd
    pin_module kubernetes "$(kube_replaces)" "$KUBE_TAGS" \
        "$k/kube-apiserver@$KUBERNETES_VERSION" "$k/kube-controller-manager@$KUBERNETES_VERSION" \
        "$k/kubelet@$KUBERNETES_VERSION" \
        "$k/kube-scheduler@$KUBERNETES_VERSION" "$k/kubectl@$KUBERNETES_VERSION"
    pin_module etcd "" "" "go.etcd.io/etcd/server/v3@$ETCD_VERSION" "go.etcd.io/etcd/etcdctl/v3@$ETCD_VERSION"
    pin_module containerd "" "$CONTAINERD_TAGS" "$cd/cmd/containerd@$CONTAINERD_VERSION" \
        "$cd/cmd/ctr@$CONTAINERD_VERSION" "$cd/cmd/containerd-shim-runc-v2@$CONTAINERD_VERSION"
    pin_module cri-tools "" "" "sigs.k8s.io/cri-tools/cmd/crictl@$CRI_TOOLS_VERSION"
}

mkdir -p "$CACHE"
cmd=${1:-build}
[ $# = 0 ] || shift
ONLY=("$@")
for w in "${ONLY[@]}"; do
    grep -Fq -e "|$w=" -e " $w=" -e "$w|" <<< "$(components)" || { echo "unknown component or binary: $w" >&2; exit 2; }
done
case $cmd in
    build) build_all 1 ;;
    env) build_all 0 ;;
    pin) [ $# = 0 ] || { echo "pin takes no names" >&2; exit 2; }; pin ;;
    *) echo "usage: $0 [build|env [NAME...]] | pin" >&2; exit 2 ;;
esac
