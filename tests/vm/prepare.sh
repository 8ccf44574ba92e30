#!/usr/bin/env bash
# Prepare the QEMU SR-IOV test bed (idempotent; run as root).
#
#   1. apt sources: make sure bookworm-backports is configured;
#   2. packages: QEMU (with the igb device, i.e. from backports), busybox-static,
#      cpio, kmod, DPDK (dpdk-testpmd), runc, iproute2, util-linux, xz-utils;
#   3. kernel: download the backports linux-image-6.12.*-amd64-unsigned .deb
#      with apt-get, unpack it, keep vmlinuz plus the modules the guest needs
#      (with their dependencies), decompressed for busybox insmod;
#   4. initramfs: busybox + modules + tests/vm/guest-init.sh as /init.
#
# Everything is cached under <repo>/target/vm (override: VM_CACHE_DIR):
#   kernel-<kver>-<modhash>/   vmlinuz + lib/modules/<kver> (module subset)
#   initramfs-<kver>-<hash>.cpio.gz   hash over init script, modules, busybox
#   kernel.pkg                 the kernel package picked the first time
#   vm.env                     VM_KVER / VM_KERNEL / VM_INITRD for run.sh
# A second run only checks the packages (dpkg-query, no network) and returns.
#
# Environment:
#   VM_CACHE_DIR       cache directory (default <repo>/target/vm)
#   VM_KERNEL_PKG      kernel package to use (default: the cached choice, else
#                      the newest linux-image-6.12.*+deb12-amd64-unsigned)
#   VM_EXTRA_MODULES   extra module names to load in the guest (space separated)
#   VM_SKIP_APT=1      do not touch apt at all (packages must already be there)
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$SCRIPT_DIR/../.." && pwd)
VM_DIR=${VM_CACHE_DIR:-$REPO_ROOT/target/vm}
INIT_SCRIPT=$SCRIPT_DIR/guest-init.sh

BACKPORTS_LINE='deb http://deb.debian.org/debian bookworm-backports main'
BACKPORTS_LIST=/etc/apt/sources.list.d/dpdk-cni-backports.list

# Modules the guest loads (dependencies are added automatically).
GUEST_MODULES=(
    igb igbvf                                   # PF (pulls i2c-algo-bit, dca) and VF drivers
    vfio vfio_iommu_type1 vfio-pci-core vfio-pci
    netfs 9pnet 9pnet_virtio 9p overlay         # host root over 9p + overlay
    virtio_net veth                             # Kubernetes tier: API server link, pod network
    nf_tables nft_chain_nat nft_nat             # Kubernetes tier: the Service address
)
# shellcheck disable=SC2206  # word splitting intended
GUEST_MODULES+=(${VM_EXTRA_MODULES:-})

# Host packages: name -> used for
PACKAGES=(
    qemu-system-x86     # the emulator (backports: igb needs QEMU >= 8)
    busybox-static      # the initramfs userland
    cpio gzip           # initramfs archive
    kmod                # depmod / modprobe --show-depends on the unpacked kernel
    xz-utils            # .ko.xz -> .ko
    dpdk-dev            # dpdk-testpmd, run inside the guest from the host root
    libdpdk-dev         # DPDK headers and pkg-config (for building against DPDK)
    runc                # available to scenarios as an alternative sandbox
    iproute2 util-linux # ip / unshare, used by lib.sh in the guest
    jq                  # JSON in the scenarios (cni.sh: netconf, results, device-info)
    coreutils
)

log() { echo "[vm-prepare] $*" >&2; }

# Temporary dirs removed on exit, whatever happens.
TMP_DIRS=()
cleanup() { local d; for d in "${TMP_DIRS[@]}"; do rm -rf "$d"; done; }
trap cleanup EXIT
die() { echo "[vm-prepare] ERROR: $*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "must run as root"
mkdir -p "$VM_DIR"

# --------------------------------------------------------------- apt -------
APT_UPDATED=0
apt_update_once() {
    if [ "$APT_UPDATED" = 0 ]; then
        log "apt-get update"
        apt-get update -qq
        APT_UPDATED=1
    fi
}

have_backports_source() {
    # Any deb / deb822 source that mentions the bookworm-backports suite.
    grep -rqsE '(^deb .*bookworm-backports)|(^Suites:.*bookworm-backports)' \
        /etc/apt/sources.list /etc/apt/sources.list.d/
}

ensure_backports() {
    if ! have_backports_source; then
        log "adding bookworm-backports to $BACKPORTS_LIST"
        echo "$BACKPORTS_LINE" > "$BACKPORTS_LIST"
        APT_UPDATED=0
        apt_update_once
    fi
}

pkg_installed() {
    [ "$(dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null || true)" = installed ]
}

qemu_has_igb() {
    command -v qemu-system-x86_64 >/dev/null &&
        qemu-system-x86_64 -device help 2>/dev/null | grep -q '"igb"'
}

ensure_packages() {
    local missing=() p
    for p in "${PACKAGES[@]}"; do
        pkg_installed "$p" || missing+=("$p")
    done
    if [ ${#missing[@]} -gt 0 ]; then
        apt_update_once
        log "installing: ${missing[*]}"
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
            "${missing[@]}"
    fi
    if ! qemu_has_igb; then
        apt_update_once
        log "installing qemu-system-x86 from bookworm-backports (need the igb device)"
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
            -t bookworm-backports qemu-system-x86
        qemu_has_igb || die "qemu-system-x86_64 still has no igb device"
    fi
}

# ------------------------------------------------------------ kernel -------
newest_kernel_pkg() {
    apt-cache search --names-only '^linux-image-6\.12\.[0-9]+\+deb12-amd64-unsigned$' \
        | awk '{print $1}' | sort -V | tail -n1
}

pick_kernel_pkg() {
    if [ -n "${VM_KERNEL_PKG:-}" ]; then
        echo "$VM_KERNEL_PKG"
    elif [ -s "$VM_DIR/kernel.pkg" ]; then
        cat "$VM_DIR/kernel.pkg"
    else
        local p
        p=$(newest_kernel_pkg)
        if [ -z "$p" ]; then
            apt_update_once
            p=$(newest_kernel_pkg)
        fi
        [ -n "$p" ] || die "no linux-image-6.12.*-amd64-unsigned in apt (backports configured?)"
        echo "$p"
    fi
}

# Kernel release from a package name: linux-image-<kver>-unsigned -> <kver>
pkg_kver() { local k=${1#linux-image-}; echo "${k%-unsigned}"; }

MODHASH=$(printf '%s\n' "${GUEST_MODULES[@]}" | sha256sum | cut -c1-12)

# Populates $1 (a fresh dir) with vmlinuz and lib/modules/<kver>/ (the subset).
build_kernel_dir() {
    local pkg=$1 kver=$2 out=$3 tmp deb src
    tmp=$(mktemp -d "$VM_DIR/.kernel-tmp.XXXXXX")
    TMP_DIRS+=("$tmp")

    log "downloading $pkg"
    (cd "$tmp" && apt-get download -q -o APT::Sandbox::User=root "$pkg") ||
        { apt_update_once; (cd "$tmp" && apt-get download -q -o APT::Sandbox::User=root "$pkg"); }
    deb=$(ls "$tmp"/*.deb)
    log "unpacking $(basename "$deb")"
    dpkg-deb -x "$deb" "$tmp/root"
    rm -f "$deb"
    src=$tmp/root/lib/modules/$kver
    [ -d "$src" ] || die "package $pkg has no lib/modules/$kver"
    depmod -b "$tmp/root" "$kver"

    # Dependency-ordered, de-duplicated list of module files.
    local m line path rel
    local -a order=()
    declare -A seen=()
    for m in "${GUEST_MODULES[@]}"; do
        modprobe -d "$tmp/root" -S "$kver" --show-depends "$m" > "$tmp/deps" ||
            die "module $m not found in $pkg"
        while read -r line; do
            case "$line" in
                insmod\ *) path=${line#insmod }; path=${path%% *} ;;
                *) continue ;;   # "builtin foo": nothing to load
            esac
            rel=${path#"$src"/}
            if [ -z "${seen[$rel]:-}" ]; then
                seen[$rel]=1
                order+=("$rel")
            fi
        done < "$tmp/deps"
    done

    mkdir -p "$out/lib/modules/$kver"
    cp "$tmp/root/boot/vmlinuz-$kver" "$out/vmlinuz"
    cp "$src"/modules.builtin "$src"/modules.builtin.modinfo "$src"/modules.order \
        "$out/lib/modules/$kver/"
    : > "$out/lib/modules/load.list"
    for rel in "${order[@]}"; do
        mkdir -p "$out/lib/modules/$kver/$(dirname "$rel")"
        case "$rel" in
            *.ko.xz) xz -dc "$src/$rel" > "$out/lib/modules/$kver/${rel%.xz}"; rel=${rel%.xz} ;;
            *.ko.zst) zstd -qdc "$src/$rel" > "$out/lib/modules/$kver/${rel%.zst}"; rel=${rel%.zst} ;;
            *.ko.gz) gzip -dc "$src/$rel" > "$out/lib/modules/$kver/${rel%.gz}"; rel=${rel%.gz} ;;
            *) cp "$src/$rel" "$out/lib/modules/$kver/$rel" ;;
        esac
        echo "$rel" >> "$out/lib/modules/load.list"
    done
    # Index for the subset, so modprobe/modinfo work inside the guest.
    depmod -b "$out" "$kver"
    log "guest modules: $(sed 's|.*/||; s|\.ko$||' "$out/lib/modules/load.list" | tr '\n' ' ')"
}

ensure_kernel() {
    KPKG=$(pick_kernel_pkg)
    KVER=$(pkg_kver "$KPKG")
    KDIR=$VM_DIR/kernel-$KVER-$MODHASH
    if [ -f "$KDIR/vmlinuz" ] && [ -f "$KDIR/lib/modules/load.list" ]; then
        log "kernel $KVER cached in $KDIR"
    else
        local tmpout
        tmpout=$(mktemp -d "$VM_DIR/.kdir-tmp.XXXXXX")
        TMP_DIRS+=("$tmpout")
        build_kernel_dir "$KPKG" "$KVER" "$tmpout"
        rm -rf "$KDIR"
        mv "$tmpout" "$KDIR"
        chmod 755 "$KDIR"
    fi
    echo "$KPKG" > "$VM_DIR/kernel.pkg"
}

# --------------------------------------------------------- initramfs -------
ensure_initramfs() {
    local busybox hash stage
    busybox=$(command -v busybox)
    # Static busybox only: the initramfs has no libc.
    if ldd "$busybox" >/dev/null 2>&1; then
        busybox=/bin/busybox
        ldd "$busybox" >/dev/null 2>&1 && die "$busybox is not static (install busybox-static)"
    fi
    hash=$( { sha256sum < "$INIT_SCRIPT"; sha256sum < "$busybox";
              echo "$KVER $MODHASH"; cat "$KDIR/lib/modules/load.list"; } |
            sha256sum | cut -c1-16)
    INITRD=$VM_DIR/initramfs-$KVER-$hash.cpio.gz
    if [ -f "$INITRD" ]; then
        log "initramfs cached: $INITRD"
        return
    fi
    log "building $INITRD"
    stage=$(mktemp -d "$VM_DIR/.initramfs-tmp.XXXXXX")
    TMP_DIRS+=("$stage")
    mkdir -p "$stage"/{bin,dev,proc,sys,lib/modules,lower,ovl,newroot}
    cp "$busybox" "$stage/bin/busybox"
    ln -s busybox "$stage/bin/sh"
    cp "$INIT_SCRIPT" "$stage/init"
    chmod 755 "$stage/init"
    mknod -m 600 "$stage/dev/console" c 5 1
    mknod -m 666 "$stage/dev/null" c 1 3
    cp -a "$KDIR/lib/modules/." "$stage/lib/modules/"
    (cd "$stage" && find . -print0 | LC_ALL=C sort -z |
        cpio --null -o -H newc -R 0:0 --quiet | gzip -6n) > "$INITRD.tmp"
    mv "$INITRD.tmp" "$INITRD"
    # Old initramfs images of this kernel are superseded.
    find "$VM_DIR" -maxdepth 1 -name "initramfs-$KVER-*.cpio.gz" ! -path "$INITRD" -delete
}

# ------------------------------------------------------------------ main ---
t0=$(date +%s.%N)
if [ "${VM_SKIP_APT:-0}" != 1 ]; then
    ensure_backports
    ensure_packages
fi
ensure_kernel
ensure_initramfs
cat > "$VM_DIR/vm.env.tmp" <<EOF
# written by tests/vm/prepare.sh
VM_KVER=$KVER
VM_KERNEL=$KDIR/vmlinuz
VM_INITRD=$INITRD
EOF
mv "$VM_DIR/vm.env.tmp" "$VM_DIR/vm.env"
log "ready: kernel $KVER ($(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b-a}') s)"
