#!/usr/bin/env bash
# Inner half of lib.sh's run_pod_app: runs as PID 1 of fresh mount + PID
# namespaces (created by unshare with private propagation), builds the app
# container's view, then execs the app inside the pod's network namespace.
#
#   pod-sandbox.sh NETNS GROUP HUGEDIR CMD [ARGS...]
#
# GROUP may be empty: then /dev/vfio holds only the container node `vfio`;
# or a comma-separated list, each entry a group or HOST:CONTAINER (the host's
# /dev/vfio/noiommu-6 as the container's /dev/vfio/6). With POD_ANNOTATIONS set, that file is the
# pod's /etc/podinfo/annotations and the node's device-info files are hidden.
set -euo pipefail
netns=$1 group=$2 huge=$3
shift 3

die() { echo "pod-sandbox: $*" >&2; exit 126; }

# Our PID as the guest sees it: /proc is still the guest's proc mount here.
# (This shell later execs the app, so it is the app's PID too.)
# The status file is opened by this shell itself (a builtin redirection), and
# its Pid: field is relative to the guest's PID namespace, not our new one.
if [ -n "${POD_APP_PIDFILE:-}" ]; then
    while read -r key val; do
        if [ "$key" = Pid: ]; then echo "$val" > "$POD_APP_PIDFILE"; break; fi
    done < /proc/self/status
fi
# A /proc for the new PID namespace.
mount -t proc proc /proc || die "mount /proc"

# /dev/vfio: a fresh tmpfs holding bind mounts of exactly /dev/vfio/vfio and
# /dev/vfio/GROUP.  It is assembled in a staging dir (the host nodes are
# hidden once anything is mounted over /dev/vfio) and then moved into place.
stage=$(mktemp -d /run/pod-vfio.XXXXXX)
mount -t tmpfs -o mode=0755,size=64k pod-vfio "$stage" || die "tmpfs for /dev/vfio"
for node in vfio ${group//,/ }; do
    touch "$stage/${node#*:}"
    mount --bind "/dev/vfio/${node%%:*}" "$stage/${node#*:}" || die "bind /dev/vfio/${node%%:*} as ${node#*:}"
done
mount --move "$stage" /dev/vfio || die "move /dev/vfio"
rmdir "$stage" 2>/dev/null || true   # the empty dir on the shared /run

# Hugepages: the pod's hugetlbfs (a private mount unless HUGEDIR already is one).
mkdir -p "$huge"
if [ "$(stat -f -c %T "$huge")" != hugetlbfs ]; then
    mount -t hugetlbfs -o pagesize=2M pod-hugepages "$huge" || die "hugetlbfs on $huge"
fi

# The downward-API annotations; the node's device-info directory is not the pod's.
if [ -n "${POD_ANNOTATIONS:-}" ]; then
    mkdir -p /etc/podinfo
    mount -t tmpfs -o mode=0755,size=64k podinfo /etc/podinfo || die "tmpfs for /etc/podinfo"
    touch /etc/podinfo/annotations
    mount --bind "$POD_ANNOTATIONS" /etc/podinfo/annotations || die "bind the annotations"
    if [ -d /run/k8s.cni.cncf.io ]; then
        mount -t tmpfs -o mode=0755,size=64k empty /run/k8s.cni.cncf.io || die "hide the device-info directory"
    fi
fi

# Enter the pod network namespace and become the app.
exec ip netns exec "$netns" "$@"
