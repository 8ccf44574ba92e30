#!/usr/bin/env bash
# Boot the QEMU SR-IOV guest and run one scenario inside it.
#
#   tests/vm/run.sh <script> [args...]
#   tests/vm/run.sh <file.bats> [bats options...]
#
# The guest (see guest-init.sh) sees the host root read-only through 9p with a
# tmpfs overlay on top, so every host path - the scenario, the repo, binaries
# built on the host - is valid in the guest.  The scenario runs as root, in
# the host working directory of this invocation, stdin /dev/null: a script
# with /bin/bash and the given arguments; a .bats file with bats, through
# scenarios/all.sh (the options first, then the file; e.g. -f REGEX).
#
# How the command reaches the guest: this script writes cmd.sh (cd + exec
# bash <scenario> <args...>, all quoted with printf %q, plus the exported
# variables named in VM_ENV) into a fresh temporary directory, which QEMU
# exports as a second read-only 9p share (tag "vmrun"); the guest mounts it at
# /run/vm/host and runs /run/vm/host/cmd.sh.  No length or character limits
# apply to the arguments.  cmd.sh also exports DPDK_CNI_REPO=<repo root>.
# A scenario under /tmp, /run, /var/tmp or /var/lib/cni (hidden by tmpfs in
# the guest) is copied into that share and run from there.
#
# Exit status: the scenario's own exit status (bats' for a .bats file and for
# scenarios/all.sh), read from the line
# "DPDK_CNI_VM_EXIT=<rc>" that the guest's init prints on the console; or
#   124  the VM ran longer than VM_TIMEOUT seconds (killed)
#   123  the emulated guest stalled for good, and the VM was killed then
#        rather than left to run into VM_TIMEOUT: a vCPU stalled (the
#        kernel's RCU stall report for one grace period reached 20000
#        jiffies, 80 s; seen under QEMU's TCG with more vCPUs than host
#        cores: an idle vCPU stops getting its timer interrupts and every
#        cross-CPU call in the guest waits on it), or the guest's init did
#        not start the scenario within VM_BOOT_TIMEOUT (seen once on a CI
#        machine: the console stayed empty for 1000 s, no kernel report).
#   125  the guest died (kernel panic, init failure, QEMU error) without
#        reporting an exit status
#   2    usage error
#
# Environment:
#   VM_TIMEOUT        seconds before the VM is killed (default 300)
#   VM_BOOT_LOGLEVEL  kernel console loglevel while the guest boots (e.g. 6:
#                     the kernel's boot messages on the console); the guest's
#                     init sets VM_LOGLEVEL before the scenario starts
#   VM_BOOT_TIMEOUT   seconds from QEMU's start to the guest init's
#                     "vm-init: scenario starts" line before the VM is killed
#                     (exit 123; default 300; a boot takes about 20 s)
#   VM_ENV            names of host variables to export into the scenario
#                     (space separated), e.g. VM_ENV="RUST_LOG CNI_BIN"
#   VM_HUGEPAGES      2 MiB hugepages reserved at boot (default: N of the
#                     scenario's line "# vm: hugepages=N", else 256)
#   VM_MEM / VM_SMP   guest RAM in MiB (default 2048) / CPUs (default 2).
#                     Keep VM_MEM under 2816: from there on q35 puts RAM
#                     above 4 GiB, and QEMU's igb then leaves a VF driven by
#                     DPDK without answers from the PF's mailbox (DPDK
#                     picks a random MAC, nothing is transmitted; seen with
#                     QEMU 10.0 at 2816 and 4096, never at 2048)
#   VM_LOGLEVEL       kernel console loglevel (default 4: errors and worse)
#   VM_APPEND         extra kernel command line words
#   VM_LOG            also keep the console log in this file
#   VM_SUMMARY        on failure, also write the short summary (the last
#                     tests bats finished, the console's last lines) here
#   VM_SKIP_PREPARE=1 do not run prepare.sh first (use the cached vm.env)
#   VM_CACHE_DIR      as for prepare.sh (default <repo>/target/vm)
#   VM_NOACS_PF=1     add a second igb (PF2, bus 2) behind a root port with
#                     ACS disabled (disable-acs=on): the kernel then puts the
#                     root port, PF2 and every VF of PF2 in ONE IOMMU group,
#                     so a VF of PF2 is not viable for vfio while PF2 is on
#                     igb (the "group not viable" case of
#                     scenarios/bad-input.bats).  The first PF (0000:01:00.0)
#                     and its VFs are unchanged.  PF2's netdev is another
#                     restricted user netdev.  Default: 1 when the scenario
#                     has a line "# vm: noacs-pf", else 0.
#   VM_NOIOMMU=1      boot with no IOMMU and vfio in its unsafe no-IOMMU
#                     mode: no intel-iommu device, no intel_iommu=on
#                     iommu=pt, and vfio.enable_unsafe_noiommu_mode=1 on the
#                     kernel command line (guest-init.sh hands it to
#                     insmod).  Debian's kernel lacks CONFIG_VFIO_NOIOMMU, so
#                     noiommu-vfio.sh builds a vfio.ko with it (cached in
#                     VM_CACHE_DIR) and this boot's initramfs gets it
#                     appended.  VFs then have no IOMMU group until
#                     vfio-pci takes them, and their node is
#                     /dev/vfio/noiommu-<group>.  Not with VM_NOACS_PF.
#                     Default: 1 when the scenario has a line
#                     "# vm: noiommu", else 0.
#   VM_NUMA=1         two NUMA nodes: CPUs and RAM split in halves
#                     except that node 1 gets VM_NUMA1_MEM MiB (default
#                     1792 of the 2560 the Kubernetes tier boots with), and
#                     the igb sits behind a PCIe expander bridge (pxb-pcie)
#                     of node 1, so the PF is 0000:41:00.0 and it and its
#                     VFs report numa_node 1; hugepages are all reserved on
#                     node 1.  VM_SMP must be even.  Default: 1 when the
#                     scenario has a line "# vm: numa", else 0.
#   VM_BINDS          host directories (space separated) under the tmpfs
#                     mounts (/tmp, /run, ...) that the guest needs: bound
#                     back read-only from the host root, like a repo
#                     checked out under /tmp
#   VM_EXTRA_DEVICES  extra QEMU arguments (word-split), e.g. more -device
#                     options; add no -netdev other than user,restrict=on
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$SCRIPT_DIR/../.." && pwd)
VM_DIR=${VM_CACHE_DIR:-$REPO_ROOT/target/vm}
VM_TIMEOUT=${VM_TIMEOUT:-300}
EXIT_MARKER=DPDK_CNI_VM_EXIT

say() { echo "[vm-run] $*" >&2; }

if [ $# -lt 1 ]; then
    echo "usage: $0 <scenario-script> [args...] | <file.bats> [bats options...]" >&2
    exit 2
fi
[ -f "$1" ] || { echo "[vm-run] no such scenario: $1" >&2; exit 2; }
SCENARIO=$(realpath "$1")
shift
[ "$(id -u)" = 0 ] || { echo "[vm-run] must run as root" >&2; exit 2; }

# Kernel + initramfs (cheap when cached).
if [ "${VM_SKIP_PREPARE:-0}" != 1 ]; then
    bash "$SCRIPT_DIR/prepare.sh"
fi
# shellcheck disable=SC1091
. "$VM_DIR/vm.env"
[ -f "$VM_KERNEL" ] && [ -f "$VM_INITRD" ] || { say "missing kernel/initramfs; run prepare.sh"; exit 125; }

# Per-run directory: cmd.sh for the guest, the console log for us.
RUN_DIR=$(mktemp -d /tmp/dpdk-cni-vm.XXXXXX)
trap 'rm -rf "$RUN_DIR"' EXIT
# Ctrl-C reaches QEMU too (same process group); we exit once it is gone.
trap 'exit 130' INT TERM

mkdir -p "$RUN_DIR/share"
# The guest mounts tmpfs over /tmp, /run, /var/tmp, /var/run and /var/lib/cni,
# hiding the host's files there: a scenario living in one of those, outside
# the repo, is copied into the run share and started from there (a scenario
# that sources files next to itself must live in the repo).
# A repo checked out in one of those is bind-mounted back from the host root
# by the guest's init (the share's `binds` file lists what to bind).
hidden() {
    case "$1" in /tmp/*|/run/*|/var/tmp/*|/var/run/*|/var/lib/cni/*) return 0 ;; esac
    return 1
}
: > "$RUN_DIR/share/binds"
if hidden "$REPO_ROOT/"; then echo "$REPO_ROOT" >> "$RUN_DIR/share/binds"; fi
for d in ${VM_BINDS:-}; do
    [ -d "$d" ] || { say "VM_BINDS: no directory $d"; exit 2; }
    realpath "$d" >> "$RUN_DIR/share/binds"
done
GUEST_SCENARIO=$SCENARIO
if hidden "$SCENARIO" && [ "${SCENARIO#"$REPO_ROOT"/}" = "$SCENARIO" ]; then
    case "$SCENARIO" in
        *.bats) say "a .bats scenario loads helpers.bash next to it: keep it in the repo"; exit 2 ;;
    esac
    cp "$SCENARIO" "$RUN_DIR/share/scenario.sh"
    GUEST_SCENARIO=/run/vm/host/scenario.sh
fi
{
    echo '# generated by tests/vm/run.sh'
    for v in ${VM_ENV:-}; do
        if [ -n "${!v+x}" ]; then printf 'export %s=%q\n' "$v" "${!v}"; fi
    done
    printf 'export DPDK_CNI_REPO=%q\n' "$REPO_ROOT"
    printf 'cd %q 2>/dev/null || cd /\n' "$PWD"
    case "$GUEST_SCENARIO" in
        *.bats)
            printf 'exec /bin/bash %q' "$SCRIPT_DIR/scenarios/all.sh"
            for a in "$@"; do printf ' %q' "$a"; done
            printf ' %q\n' "$GUEST_SCENARIO" ;;
        *)
            printf 'exec /bin/bash %q' "$GUEST_SCENARIO"
            for a in "$@"; do printf ' %q' "$a"; done
            printf '\n' ;;
    esac
} > "$RUN_DIR/share/cmd.sh"
LOG=$RUN_DIR/console.log

# marker WORD: the scenario has the line "# vm: WORD" (a default for a VM_* setting).
marker() { grep -qx "# vm: $1" "$SCENARIO"; }
if [ -z "${VM_NOACS_PF:-}" ]; then
    VM_NOACS_PF=0
    if marker noacs-pf; then VM_NOACS_PF=1; fi
fi
if [ -z "${VM_NOIOMMU:-}" ]; then
    VM_NOIOMMU=0
    if marker noiommu; then VM_NOIOMMU=1; fi
fi
if [ "$VM_NOIOMMU" = 1 ] && [ "$VM_NOACS_PF" = 1 ]; then
    say "VM_NOACS_PF=1 needs the IOMMU (its point is an IOMMU group), VM_NOIOMMU=1 turns it off: pick one"
    exit 2
fi
NOACS_DEV=()
if [ "$VM_NOACS_PF" = 1 ]; then
    NOACS_DEV=(-device pcie-root-port,id=rp1,chassis=1,slot=1,disable-acs=on
               -device igb,bus=rp1,netdev=n1 -netdev user,id=n1,restrict=on)
fi
# shellcheck disable=SC2206  # word splitting intended
EXTRA_DEV=(${VM_EXTRA_DEVICES:-})

if [ -z "${VM_HUGEPAGES:-}" ]; then
    VM_HUGEPAGES=$(sed -n 's/^# vm: hugepages=\([0-9][0-9]*\)$/\1/p' "$SCENARIO" | head -n1)
fi
if [ -z "${VM_NUMA:-}" ]; then
    VM_NUMA=0
    if marker numa; then VM_NUMA=1; fi
fi

# The SR-IOV NIC: an 82576 (igb) behind its own root port.  The user netdev
# is restricted: no traffic leaves the guest.  With VM_NUMA=1 the root port
# hangs off an expander bridge of NUMA node 1, given last on the command line
# (QEMU puts devices without a bus on the last PCIe bus it knows of, and the
# 9p shares must stay on the root bus); else it comes first, so it is bus 1.
NUMA=()
NUMA_APPEND=""
NIC_FIRST=()
NIC_LAST=()
if [ "$VM_NUMA" = 1 ]; then
    smp=${VM_SMP:-2}
    mem1=${VM_NUMA1_MEM:-1792}
    mem0=$(( ${VM_MEM:-2048} - mem1 ))
    if [ $((smp % 2)) != 0 ] || [ "$mem0" -lt 256 ]; then
        say "VM_NUMA=1 needs an even VM_SMP and VM_MEM at least VM_NUMA1_MEM + 256"
        exit 2
    fi
    NUMA=(-object "memory-backend-ram,id=mem0,size=${mem0}M" -object "memory-backend-ram,id=mem1,size=${mem1}M"
          -numa "node,nodeid=0,cpus=0-$((smp / 2 - 1)),memdev=mem0"
          -numa "node,nodeid=1,cpus=$((smp / 2))-$((smp - 1)),memdev=mem1")
    NIC_LAST=(-device pxb-pcie,id=pxb1,bus_nr=64,numa_node=1,bus=pcie.0
              -device pcie-root-port,id=rp0,bus=pxb1,chassis=2,slot=0
              -device igb,bus=rp0,netdev=n0 -netdev user,id=n0,restrict=on)
    NUMA_APPEND="dpdkcni.hugepages_node=1"
else
    NIC_FIRST=(-device pcie-root-port,id=rp0,slot=0
               -device igb,bus=rp0,netdev=n0 -netdev user,id=n0,restrict=on)
fi

# The IOMMU: QEMU's emulated Intel IOMMU, on in the kernel; or none, with
# vfio's no-IOMMU mode and a vfio.ko that has it (the stock initramfs plus
# an archive holding that module, which the kernel unpacks over it).
INITRD=$VM_INITRD
if [ "$VM_NOIOMMU" = 1 ]; then
    IOMMU_DEV=()
    IOMMU_APPEND="vfio.enable_unsafe_noiommu_mode=1"
    T_MOD=$(date +%s.%N)
    NOIOMMU_VFIO=$(bash "$SCRIPT_DIR/noiommu-vfio.sh") || { say "could not build the no-IOMMU vfio module (noiommu-vfio.sh)"; exit 125; }
    INITRD=$RUN_DIR/initrd-noiommu.cpio.gz
    cat "$VM_INITRD" "$NOIOMMU_VFIO" > "$INITRD"
    say "no IOMMU: vfio's no-IOMMU mode, vfio.ko from $(basename "$NOIOMMU_VFIO") ($(awk -v a="$T_MOD" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b-a}') s)"
else
    IOMMU_DEV=(-device intel-iommu,intremap=on,caching-mode=on)
    IOMMU_APPEND="intel_iommu=on iommu=pt"
fi

APPEND="console=ttyS0 $IOMMU_APPEND panic=-1 quiet loglevel=${VM_BOOT_LOGLEVEL:-${VM_LOGLEVEL:-4}} dpdkcni.loglevel=${VM_LOGLEVEL:-4}"
# nokaslr: fixed kernel addresses (see kill_qemu; the kernel's boot log calls
# the word unknown, but its decompressor has read it).
APPEND+=" nokaslr mitigations=off tsc=reliable dpdkcni.hugepages=${VM_HUGEPAGES:-256} $NUMA_APPEND ${VM_APPEND:-}"

QEMU=(
    qemu-system-x86_64
    -accel tcg,thread=multi -cpu max
    -m "${VM_MEM:-2048}" -smp "${VM_SMP:-2}" "${NUMA[@]}"
    -machine q35,kernel-irqchip=split
    "${IOMMU_DEV[@]}"
    "${NIC_FIRST[@]}" "${NOACS_DEV[@]}" "${EXTRA_DEV[@]}"
    # Host root, read-only (the guest adds a tmpfs overlay); and the run dir.
    -virtfs local,path=/,mount_tag=hostroot,security_model=none,readonly=on,multidevs=remap
    -virtfs "local,path=$RUN_DIR/share,mount_tag=vmrun,security_model=none,readonly=on"
    -kernel "$VM_KERNEL" -initrd "$INITRD"
    -append "$APPEND"
    -vga none -nographic -no-reboot
    # Keep SeaBIOS off the serial console (its screen-clearing escapes would
    # garble the log).  QEMU warns about the fw_cfg name; the warning is
    # filtered below.
    -fw_cfg name=etc/sercon-port,string=0
    -pidfile "$RUN_DIR/qemu.pid"
    # What the vCPUs were doing when the VM is killed (kill_qemu below).
    -monitor "unix:$RUN_DIR/monitor.sock,server=on,wait=off"
    "${NIC_LAST[@]}"
)

if [ "$VM_NOACS_PF" = 1 ]; then say "extra: PF2 (igb) behind root port rp1 with ACS off (one IOMMU group for PF2 and its VFs)"; fi
say "booting kernel $VM_KVER; scenario: $SCENARIO $*; timeout ${VM_TIMEOUT}s"
T0=$(date +%s.%N)
# Console to stdout and to the log, CRs stripped.  timeout(1) kills QEMU when
# the guest hangs; its 124 status tells us so.
# kill_qemu PID: first asks QEMU's monitor where each vCPU is (halted or
# not, and its instruction pointer), for the summary.
kill_qemu() {
    if command -v socat > /dev/null; then
        # The guest boots without KASLR: a RIP here is the symbol at that
        # address in /proc/kallsyms of any boot of the same kernel.
        printf 'info registers -a\n' | timeout 5 socat -t 2 - "UNIX-CONNECT:$RUN_DIR/monitor.sock" 2>&1 |
            tr -d '\r' | grep -aoE '^CPU#[0-9]+|RIP=[0-9a-f]+|HLT=[01]' | paste -sd' ' |
            sed 's/ CPU#/\nCPU#/g' > "$RUN_DIR/cpus" || true
    fi
    kill "$1"
}
# The stall watch: RCU reports a stall after 21 s and again every 63 s with
# the grace period's age in jiffies (t=...); from 20000 on, it is not coming
# back.  The boot watch: guest-init prints "vm-init: scenario starts" when it
# hands over to the scenario; a guest that has not within VM_BOOT_TIMEOUT is
# stuck.
BOOT_TIMEOUT=${VM_BOOT_TIMEOUT:-300}
watch_stall() {
    local pid waited=0
    while sleep 5; do
        waited=$((waited + 5))
        pid=$(cat "$RUN_DIR/qemu.pid" 2>/dev/null) || continue
        kill -0 "$pid" 2>/dev/null || return 0
        if grep -aqE 'rcu: .*detected by [0-9]+, t=([2-9][0-9]{4}|[0-9]{6,}) jiffies' "$LOG"; then
            echo "a vCPU of the guest stalled (RCU stall past 80 s, see the rcu lines)" > "$RUN_DIR/stalled"
        elif [ "$waited" -ge "$BOOT_TIMEOUT" ] && ! grep -aq '^vm-init: scenario starts' "$LOG"; then
            echo "the guest did not start the scenario within ${BOOT_TIMEOUT}s (VM_BOOT_TIMEOUT; its last vm-init line: $(grep -a '^vm-init: ' "$LOG" | tail -n1 | cut -c1-120 | grep . || echo none))" > "$RUN_DIR/stalled"
        else
            continue
        fi
        kill_qemu "$pid"
        return 0
    done
}
: > "$LOG"
watch_stall &
WATCH_PID=$!
set +e
timeout --kill-after=10 "$VM_TIMEOUT" "${QEMU[@]}" </dev/null 2>&1 |
    sed -u -e 's/\r$//' -e '/fw_cfg item names should be prefixed/d' | tee "$LOG"
QEMU_RC=${PIPESTATUS[0]}
set -e
kill "$WATCH_PID" 2>/dev/null || true
wait "$WATCH_PID" 2>/dev/null || true
ELAPSED=$(awk -v a="$T0" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b-a}')
[ -n "${VM_LOG:-}" ] && cp "$LOG" "$VM_LOG"

# On failure, the last lines printed say what failed: a CI log is often read
# from its tail.  bats reports a test when it ends, so after a timeout the
# test that hung is the one after the last reported.
summary() {
    {
        echo "[vm-run] summary of $(basename "$SCENARIO"): $1"
        echo "[vm-run] tests reported: $(grep -aEc '^ok [0-9]+ ' "$LOG") ok, $(grep -aEc '^not ok [0-9]+ ' "$LOG") not ok; the last ones:"
        { grep -aE '^(not )?ok [0-9]+ ' "$LOG" || true; } | tail -n 6 | cut -c1-200 | sed 's/^/    /'
        echo "[vm-run] the console's last lines:"
        { grep -avE '^(not )?ok [0-9]+ ' "$LOG" || true; } | tail -n 8 | cut -c1-200 | sed 's/^/    /'
        if [ -s "$RUN_DIR/cpus" ]; then
            echo "[vm-run] QEMU's vCPUs when it was killed:"
            sed 's/^/    /' "$RUN_DIR/cpus"
        fi
    } | tee ${VM_SUMMARY:+"$VM_SUMMARY"} >&2 || true
}

RC=$(grep -a -o "^$EXIT_MARKER=[0-9]*" "$LOG" | tail -n1 | cut -d= -f2 || true)
if [ -n "$RC" ]; then
    [ "$QEMU_RC" = 0 ] || say "warning: QEMU exited with $QEMU_RC after the scenario finished"
    if [ "$RC" = 0 ]; then
        say "scenario PASSED ($(basename "$SCENARIO"), ${ELAPSED}s)"
    else
        summary "exit status $RC after ${ELAPSED}s"
        say "scenario FAILED with exit status $RC ($(basename "$SCENARIO"), ${ELAPSED}s)"
    fi
    exit "$RC"
fi
if [ -e "$RUN_DIR/stalled" ]; then
    why=$(cat "$RUN_DIR/stalled")
    summary "$why"
    say "FAILURE: $why: VM killed after ${ELAPSED}s"
    exit 123
fi
if [ "$QEMU_RC" = 124 ] || [ "$QEMU_RC" = 137 ]; then
    summary "timed out after ${VM_TIMEOUT}s"
    say "FAILURE: VM timed out after ${VM_TIMEOUT}s (VM_TIMEOUT) without finishing the scenario"
    exit 124
fi
if grep -aq 'DPDK_CNI_VM_INIT_FAILED' "$LOG"; then
    say "FAILURE: guest init failed: $(grep -a 'DPDK_CNI_VM_INIT_FAILED' "$LOG" | tail -n1)"
elif grep -aq 'Kernel panic' "$LOG"; then
    say "FAILURE: guest kernel panic: $(grep -a 'Kernel panic' "$LOG" | tail -n1)"
else
    say "FAILURE: guest died without reporting an exit status (QEMU exit status $QEMU_RC)"
fi
summary "no exit status from the guest"

exit 125
