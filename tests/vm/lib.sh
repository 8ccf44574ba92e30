# shellcheck shell=bash
# Helpers for test-bed scenarios.  Source it from a script running inside
# the guest (tests/vm/run.sh <script>):
#
#   . "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
#
# The bats scenarios (scenarios/*.bats) get it through scenarios/helpers.bash.
# It enables `set -euo pipefail`.  All waits are bounded; every failure goes
# through `fail`, which prints "FAIL: <message>" (plus the calling line) on
# stderr and exits 1, so a script's exit status is 0 only if it completes
# (and a bats test fails at its first failed check).
#
# Sections:  messages/asserts · waiting · PF/VF discovery · driver binding ·
#            hugepages · binaries on tmpfs · the pod sandbox (run_pod_app).

set -euo pipefail

# (No process: a bats test sources this file again in every test.)
VM_LIB_DIR=${BASH_SOURCE[0]%/*}
[ "$VM_LIB_DIR" != "${BASH_SOURCE[0]}" ] || VM_LIB_DIR=.
[[ "$VM_LIB_DIR" == /* ]] || VM_LIB_DIR=$PWD/$VM_LIB_DIR
PF_VENDOR=0x8086
PF_DEVICE=0x10c9        # 82576 PF, emulated by QEMU's -device igb
VF_DRIVER=igbvf
VM_BIN_DIR=/run/vm/bin  # tmpfs; binaries copied here start fast (see stage_bin)

# ------------------------------------------------------ messages / asserts ---

# log MSG...: progress message on stdout, prefixed with the time since boot.
log() {
    local up
    read -r up _ < /proc/uptime
    printf '[%7s] %s\n' "$up" "$*"
}

# fail MSG...: print "FAIL: MSG (at file:line)" on stderr and exit 1 (also
# from a helper called in a condition or in $(...), where `return 1` would be
# taken for an answer).
# fail (no arguments): copy stdin to stderr and return 1.  That is the
# bats-support `fail` bats-assert pipes its messages into: lib.sh, sourced
# after bats-support (tests/vm/scenarios/helpers.bash), replaces it with this.
fail() {
    if [ $# -eq 0 ]; then
        cat >&2
        return 1
    fi
    local src=${BASH_SOURCE[1]:-} line=${BASH_LINENO[0]}
    # When called from an assert_* helper, report the scenario's line instead.
    if [[ "${FUNCNAME[1]:-}" == assert_* || "${FUNCNAME[1]:-}" == wait_for ]]; then
        src=${BASH_SOURCE[2]:-} line=${BASH_LINENO[1]}
    fi
    # bats runs a preprocessed copy of the test file (same line numbers).
    if [[ "$src" == */bats.*.src && -n "${BATS_TEST_FILENAME:-}" ]]; then
        src=$BATS_TEST_FILENAME
    fi
    echo "FAIL: $* (at ${src##*/}:$line)" >&2
    # bats: the test line that called us is the failure's place (bats takes
    # the command before it when a test exits without its ERR trap).
    # shellcheck disable=SC2034
    if [ -n "${BATS_TEST_NAME:-}" ]; then BATS_DEBUG_LAST_STACK_TRACE_IS_VALID=1; fi
    exit 1
}

# pass MSG...: print "ok: MSG".
pass() { echo "ok: $*"; }

# assert_eq EXPECTED ACTUAL [WHAT]
assert_eq() {
    [ "$1" == "$2" ] || fail "${3:-values differ}: expected '$1', got '$2'"
    pass "${3:-value} = '$2'"
}

# assert_ne UNEXPECTED ACTUAL [WHAT]
assert_ne() {
    [ "$1" != "$2" ] || fail "${3:-value} must not be '$1'"
    pass "${3:-value} = '$2' (not '$1')"
}

# assert_match STRING ERE [WHAT]: STRING matches the extended regex ERE.
assert_match() {
    [[ "$1" =~ $2 ]] || fail "${3:-string} does not match /$2/: '$1'"
    pass "${3:-string} matches /$2/"
}

# assert_gt A B [WHAT]: integer A > B.
assert_gt() {
    [[ "$1" =~ ^-?[0-9]+$ ]] || fail "${3:-value} is not an integer: '$1'"
    [ "$1" -gt "$2" ] || fail "${3:-value} must be > $2, got $1"
    pass "${3:-value} = $1 (> $2)"
}

# assert_ok WHAT CMD...: CMD succeeds.
assert_ok() {
    local what=$1; shift
    "$@" || fail "$what: command failed (status $?): $*"
    pass "$what"
}

# assert_fails WHAT CMD...: CMD fails (e.g. a setting the driver refuses).
assert_fails() {
    local what=$1; shift
    if "$@"; then fail "$what: command unexpectedly succeeded: $*"; fi
    pass "$what (failed as expected)"
}

# --------------------------------------------------------------- waiting ---

# wait_for TIMEOUT_S WHAT CMD...: run CMD (output discarded) every 50 ms until it succeeds;
# fail with "timed out after TIMEOUT_S s waiting for WHAT" otherwise.
# TIMEOUT_S may be fractional.  Uses $EPOCHREALTIME (no process per poll).
wait_for() {
    local timeout=$1 what=$2; shift 2
    local now limit
    limit=$(( ${EPOCHREALTIME/./} + $(awk -v t="$timeout" 'BEGIN { printf "%d", t * 1000000 }') ))
    while ! "$@" >/dev/null 2>&1; do
        now=${EPOCHREALTIME/./}
        [ "$now" -lt "$limit" ] || fail "timed out after ${timeout}s waiting for $what"
        sleep 0.05
    done
}

# ---------------------------------------------------- PF / VF discovery ---

# pf_bdf: PCI address of the igb PF (8086:10c9), e.g. 0000:01:00.0.
pf_bdf() {
    local d
    for d in /sys/bus/pci/devices/*; do
        if [ "$(< "$d/vendor")" = "$PF_VENDOR" ] && [ "$(< "$d/device")" = "$PF_DEVICE" ]; then
            echo "${d##*/}"
            return 0
        fi
    done
    fail "no PCI device $PF_VENDOR:$PF_DEVICE (igb PF) in the guest"
}

# pf_ifname: the PF's netdev name (waits up to 10 s for igb to create it).
pf_ifname() {
    local pf
    pf=$(pf_bdf)
    wait_for 10 "netdev of PF $pf" compgen -G "/sys/bus/pci/devices/$pf/net/*"
    local n=(/sys/bus/pci/devices/"$pf"/net/*)
    echo "${n[0]##*/}"
}

# vf_bdf N: PCI address of VF N of the PF.
vf_bdf() {
    local pf link
    pf=$(pf_bdf)
    link=/sys/bus/pci/devices/$pf/virtfn$1
    [ -L "$link" ] || fail "PF $pf has no VF $1"
    link=$(readlink "$link")
    echo "${link##*/}"
}

# vf_index BDF: the number of VF BDF on the PF (the inverse of vf_bdf).
vf_index() {
    local l
    for l in "/sys/bus/pci/devices/$(pf_bdf)"/virtfn*; do
        [ "$(basename "$(readlink -f "$l")")" = "$1" ] && { echo "${l##*virtfn}"; return 0; }
    done
    fail "$1 is not a VF of $(pf_bdf)"
}

# vf_ifname N: netdev name of VF N (empty if it has none, e.g. bound to vfio-pci).
vf_ifname() {
    local bdf n
    bdf=$(vf_bdf "$1")
    for n in /sys/bus/pci/devices/"$bdf"/net/*; do
        [ -e "$n" ] && { echo "${n##*/}"; return 0; }
    done
    echo ""
}

# iommu_group BDF: the device's IOMMU group number.
iommu_group() {
    local g
    g=$(readlink "/sys/bus/pci/devices/$1/iommu_group") || fail "$1 has no IOMMU group"
    echo "${g##*/}"
}

# pci_driver BDF: name of the bound driver, empty if none.
pci_driver() {
    local l
    if l=$(readlink "/sys/bus/pci/devices/$1/driver" 2>/dev/null); then echo "${l##*/}"; else echo ""; fi
}

_vf_has_netdev() { compgen -G "/sys/bus/pci/devices/$1/net/*" >/dev/null; }

# create_vfs N: bring the PF link up, create N VFs on the igb PF (resetting
# to 0 first if a different number exists), and wait until each VF is bound
# to igbvf and has its netdev.  The PF goes up first, as on a real node: a
# VF's link follows the PF's (DPDK waits for link up), and igbvf can only
# talk to an open PF, so each VF registers its (random) MAC with the PF at
# probe time - `ip link show <pf>` then shows the same VF MAC before and
# after a VF is rebound, instead of 00:00:00:00:00:00 turning into a random
# MAC on the first rebind.
create_vfs() {
    local n=$1 pf pfdir cur i bdf
    pf=$(pf_bdf)
    pfdir=/sys/bus/pci/devices/$pf
    ip link set "$(pf_ifname)" up
    [ "$n" -le "$(< "$pfdir/sriov_totalvfs")" ] || fail "PF supports only $(< "$pfdir/sriov_totalvfs") VFs, asked $n"
    cur=$(< "$pfdir/sriov_numvfs")
    if [ "$cur" != "$n" ]; then
        [ "$cur" = 0 ] || echo 0 > "$pfdir/sriov_numvfs"
        echo "$n" > "$pfdir/sriov_numvfs" || fail "writing $n to $pfdir/sriov_numvfs"
    fi
    for ((i = 0; i < n; i++)); do
        wait_for 10 "VF $i of $pf" test -L "$pfdir/virtfn$i"
        bdf=$(vf_bdf "$i")
        wait_for 10 "netdev of VF $i ($bdf)" _vf_has_netdev "$bdf"
    done
}

# --------------------------------------------------------- driver binding ---

_dev_vfio_exists() { [ -c "/dev/vfio/$1" ]; }
_driver_is() { [ "$(pci_driver "$1")" = "$2" ]; }

# bind_vfio BDF: rebind the device to vfio-pci through sysfs (driver_override,
# unbind, drivers_probe); waits for /dev/vfio/<group> and prints the group.
bind_vfio() {
    local bdf=$1 dev=/sys/bus/pci/devices/$1 grp
    grp=$(iommu_group "$bdf")
    echo vfio-pci > "$dev/driver_override"
    if [ -e "$dev/driver" ]; then echo "$bdf" > "$dev/driver/unbind"; fi
    echo "$bdf" > /sys/bus/pci/drivers_probe
    wait_for 10 "$bdf bound to vfio-pci" _driver_is "$bdf" vfio-pci
    wait_for 10 "/dev/vfio/$grp" _dev_vfio_exists "$grp"
    echo "$grp"
}

# bind_kernel BDF [DRIVER]: give the device back to its kernel driver (default
# igbvf): unbind, clear driver_override, drivers_probe; waits for the driver
# and, for igbvf, the netdev.
bind_kernel() {
    local bdf=$1 drv=${2:-$VF_DRIVER} dev=/sys/bus/pci/devices/$1
    if [ -e "$dev/driver" ]; then echo "$bdf" > "$dev/driver/unbind"; fi
    echo > "$dev/driver_override"
    echo "$bdf" > /sys/bus/pci/drivers_probe
    wait_for 10 "$bdf bound to $drv" _driver_is "$bdf" "$drv"
    if [ "$drv" = "$VF_DRIVER" ]; then
        wait_for 10 "netdev of $bdf" _vf_has_netdev "$bdf"
    fi
}

# -------------------------------------------------------------- hugepages ---

# hugepages_reserve N: make sure at least N 2 MiB pages are reserved (init
# already reserves VM_HUGEPAGES, default 256).
hugepages_reserve() {
    local f=/sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages
    [ "$(< "$f")" -ge "$1" ] || echo "$1" > "$f"
    [ "$(< "$f")" -ge "$1" ] || fail "could only reserve $(< "$f") of $1 hugepages"
}

# hugepages_free: number of free 2 MiB pages.
hugepages_free() { cat /sys/kernel/mm/hugepages/hugepages-2048kB/free_hugepages; }

# mount_hugetlbfs DIR: mount a (new) 2 MiB hugetlbfs on DIR unless DIR already
# is a hugetlbfs.  /dev/hugepages is mounted at boot.
mount_hugetlbfs() {
    mkdir -p "$1"
    [ "$(stat -f -c %T "$1")" = hugetlbfs ] || mount -t hugetlbfs -o pagesize=2M nodev "$1"
}

# -------------------------------------------------- binaries on tmpfs ---

# stage_bin NAME|PATH: copy an executable from the host root (9p: slow to
# start, every exec re-reads it) to $VM_BIN_DIR on tmpfs once; print the copy's
# path.  The copy keeps the source's name and modification time; it is
# replaced when its size or mtime differs (another build of the same name,
# e.g. the plugin with test hooks).  Shared libraries still come from the
# host root.
stage_bin() {
    local src dst
    src=$(command -v "$1") || fail "no such command: $1"
    src=$(realpath "$src")
    case "$src" in
        /run/*|/tmp/*|/dev/shm/*) echo "$src"; return 0 ;;   # already on tmpfs
    esac
    dst=$VM_BIN_DIR/${src##*/}
    if [ ! -x "$dst" ] || [ "$(stat -c '%s %Y' "$dst")" != "$(stat -c '%s %Y' "$src")" ]; then
        mkdir -p "$VM_BIN_DIR"
        cp -p "$src" "$dst.tmp.$$" && chmod 755 "$dst.tmp.$$" && mv "$dst.tmp.$$" "$dst"
    fi
    echo "$dst"
}

# ------------------------------------------------------------ pod sandbox ---

# run_pod_app NETNS GROUP HUGEDIR -- CMD [ARGS...]
#
# Run CMD like an app container of a pod would see it:
#   - its own mount namespace and PID namespace (unshare --mount --pid --fork,
#     then a fresh /proc; CMD is PID 1 there);
#   - /dev/vfio holds only `vfio` and `GROUP` (a fresh tmpfs with the two host
#     nodes bind-mounted in), as the device plugin would hand out;
#   - HUGEDIR is a hugetlbfs: if it is not one already, a private 2 MiB
#     hugetlbfs is mounted there inside the sandbox (like a HugePages emptyDir);
#   - it runs in network namespace NETNS (ip netns exec; must exist);
#   - CMD (name or path) is first copied to tmpfs with stage_bin.
# Returns CMD's exit status; stdout/stderr pass through.
#
# Optional environment:
#   POD_APP_TIMEOUT=S  stop CMD after S seconds with POD_APP_SIGNAL (default
#                      INT, which testpmd handles by printing its final stats),
#                      SIGKILL 5 s later; the status is then CMD's own (or
#                      124 if timeout(1) had to report it).
#   POD_APP_PIDFILE=F  write CMD's PID (as seen from the guest) to F, so the
#                      scenario can signal an app run in the background;
#                      see pod_app_stop.
#   POD_ANNOTATIONS=F  the pod's downward-API annotations file: bound at
#                      /etc/podinfo/annotations, and the node's device-info
#                      directory is hidden (a pod sees what Multus put in its
#                      network-status annotation, not the node's files).
#   GROUP "" or "-"    no vfio group: /dev/vfio holds only `vfio`.
#   GROUP "6,7"        several groups (a pod with several VFs).
#   GROUP "noiommu-6:6"  host node noiommu-6 seen as /dev/vfio/6 in the
#                      container (HOST:CONTAINER, as a device plugin maps a
#                      no-IOMMU group).
run_pod_app() {
    [ $# -ge 5 ] && [ "$4" = -- ] || fail "usage: run_pod_app NETNS GROUP HUGEDIR -- CMD..."
    local netns=$1 group=$2 huge=$3 bin g
    shift 4
    [ -e "/run/netns/$netns" ] || fail "network namespace '$netns' does not exist"
    [ -c /dev/vfio/vfio ] || fail "/dev/vfio/vfio missing (vfio module not loaded?)"
    if [ "$group" = - ]; then group=""; fi
    for g in ${group//,/ }; do
        [ -c "/dev/vfio/${g%%:*}" ] || fail "/dev/vfio/${g%%:*} does not exist (device not bound to vfio-pci?)"
    done
    if [ -n "${POD_ANNOTATIONS:-}" ] && [ ! -f "$POD_ANNOTATIONS" ]; then
        fail "POD_ANNOTATIONS: no file $POD_ANNOTATIONS"
    fi
    bin=$(stage_bin "$1")
    shift
    local -a wrap=()
    if [ -n "${POD_APP_TIMEOUT:-}" ]; then
        wrap=(timeout -s "${POD_APP_SIGNAL:-INT}" -k 5 "$POD_APP_TIMEOUT")
    fi
    POD_APP_PIDFILE=${POD_APP_PIDFILE:-} POD_ANNOTATIONS=${POD_ANNOTATIONS:-} \
        "${wrap[@]}" unshare --mount --pid --fork --propagation private \
        /bin/bash "$VM_LIB_DIR/pod-sandbox.sh" "$netns" "$group" "$huge" "$bin" "$@"
}

# pod_app_stop PIDFILE [SIGNAL] [TIMEOUT_S]: send SIGNAL (default INT) to the
# app whose PID run_pod_app wrote to PIDFILE, wait up to TIMEOUT_S (default
# 10) for it to exit, then SIGKILL it.  Returns 0 if it exited by itself.
pod_app_stop() {
    local pidfile=$1 sig=${2:-INT} timeout=${3:-10} pid
    wait_for 10 "pid file $pidfile" test -s "$pidfile"
    pid=$(< "$pidfile")
    kill -s "$sig" "$pid" 2>/dev/null || return 0
    local deadline=$(( ${EPOCHREALTIME/./} + timeout * 1000000 ))
    while kill -0 "$pid" 2>/dev/null; do
        if [ "${EPOCHREALTIME/./}" -ge "$deadline" ]; then
            echo "pod_app_stop: pid $pid ignored SIG$sig for ${timeout}s; killing it" >&2
            kill -s KILL "$pid" 2>/dev/null || true
            return 1
        fi
        sleep 0.1
    done
}
