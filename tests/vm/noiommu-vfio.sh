#!/usr/bin/env bash
# The guest's vfio module with vfio's no-IOMMU mode compiled in, for the
# no-IOMMU boot (run.sh with VM_NOIOMMU=1, or a scenario with a line
# "# vm: noiommu").  Prints the path of a small initramfs archive holding
# only lib/modules/<kver>/kernel/drivers/vfio/vfio.ko; run.sh appends it to
# prepare.sh's initramfs, and the kernel, which unpacks concatenated archives
# in order, then loads this vfio.ko instead of Debian's.
#
#   tests/vm/noiommu-vfio.sh            (run as root; prepare.sh first)
#
# Why: Debian builds its kernel without CONFIG_VFIO_NOIOMMU, so its vfio.ko
# has no enable_unsafe_noiommu_mode parameter and vfio-pci refuses a device
# without an IOMMU group.  The option only compiles code into vfio.ko
# (vfio_main.c, group.c, container.c); nothing else in the kernel depends on
# it.  So vfio.ko alone is built again: from the Debian source package of
# the very kernel prepare.sh picked (linux-source-X.Y, same version), against
# that kernel's headers (linux-headers-<kver>, -common, linux-kbuild), with
# CONFIG_VFIO_NOIOMMU defined.  The build is checked before it is used: the
# module must have the enable_unsafe_noiommu_mode parameter, the guest
# kernel's vermagic, and every symbol Debian's vfio.ko exports, with the same
# CRC (vfio-pci-core and vfio_iommu_type1 load against it unchanged).  The
# module is not signed; Debian's kernel loads it (signatures are not
# enforced without Secure Boot) and taints itself, as no-IOMMU mode does too.
#
# The packages are downloaded with apt-get download into a temporary
# directory and unpacked there; nothing is installed on the host.  Host
# tools: make, the compiler the kernel was built with (gcc-12 for bookworm's
# 6.12), xz, cpio, gzip.  The build skips BTF (pahole is not needed).
#
# Cache: <VM_CACHE_DIR>/noiommu-vfio-<kver>-<hash>.cpio.gz, keyed on this
# script, the kernel release and its package name; building took 24 s on
# an idle 2-core machine (most of it downloading 170 MB and unpacking the
# source archive), nothing when cached.
#
# Environment:
#   VM_CACHE_DIR   as for prepare.sh (default <repo>/target/vm)
#   VM_SKIP_APT=1  do not download: fail unless the archive is cached
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$SCRIPT_DIR/../.." && pwd)
VM_DIR=${VM_CACHE_DIR:-$REPO_ROOT/target/vm}

log() { echo "[vm-noiommu] $*" >&2; }
die() { echo "[vm-noiommu] ERROR: $*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "must run as root"
[ -f "$VM_DIR/vm.env" ] && [ -f "$VM_DIR/kernel.pkg" ] || die "no kernel prepared in $VM_DIR: run tests/vm/prepare.sh first"
# shellcheck disable=SC1091
. "$VM_DIR/vm.env"
KPKG=$(< "$VM_DIR/kernel.pkg")
KVER=$VM_KVER
KDIR=$(dirname "$VM_KERNEL")
STOCK=$KDIR/lib/modules/$KVER/kernel/drivers/vfio/vfio.ko
[ -f "$STOCK" ] || die "no $STOCK: the prepared kernel has no vfio module"

# The package name carries the kernel's ABI (6.12.117+deb12): the key.
HASH=$( { sha256sum < "${BASH_SOURCE[0]}"; echo "$KVER $KPKG"; } | sha256sum | cut -c1-16)
OUT=$VM_DIR/noiommu-vfio-$KVER-$HASH.cpio.gz
if [ -f "$OUT" ]; then
    echo "$OUT"
    exit 0
fi
[ "${VM_SKIP_APT:-0}" != 1 ] || die "$OUT is not built and VM_SKIP_APT=1 forbids downloading its packages"

VERSION=$(apt-cache show --no-all-versions "$KPKG" 2>/dev/null | awk '/^Version:/ { print $2; exit }')
[ -n "$VERSION" ] || die "apt knows no package $KPKG (the kernel in $VM_DIR/kernel.pkg); run apt-get update"
FLAVOUR=${KVER##*-}        # amd64
ABI=${KVER%-"$FLAVOUR"}    # 6.12.117+deb12
SERIES=$(cut -d. -f1,2 <<< "$KVER")   # 6.12

t0=$(date +%s.%N)
WORK=$(mktemp -d "$VM_DIR/.noiommu-tmp.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
cd "$WORK"

# Download only (apt's sandbox user cannot write here: apt-get says so and
# downloads as root).
log "downloading the headers and source of $KPKG $VERSION"
apt-get download -q "linux-headers-$KVER=$VERSION" "linux-headers-$ABI-common=$VERSION" \
    "linux-kbuild-$ABI=$VERSION" "linux-source-$SERIES=$VERSION" 2>&1 |
    grep -v 'Download is performed unsandboxed' >&2 || true
for p in "linux-headers-$KVER" "linux-headers-$ABI-common" "linux-kbuild-$ABI" "linux-source-$SERIES"; do
    compgen -G "${p}_*.deb" > /dev/null || die "apt-get could not download $p=$VERSION"
done

# The headers tree, unpacked under root/.  Its Makefile includes the common
# tree by absolute path (/usr/src/...): point it at the unpacked one.
mkdir root
for deb in linux-headers-*.deb linux-kbuild-*.deb; do dpkg-deb -x "$deb" root; done
HDR=$WORK/root/usr/src/linux-headers-$KVER
[ -f "$HDR/Makefile" ] && [ -f "$HDR/Module.symvers" ] || die "linux-headers-$KVER has no Makefile or Module.symvers"
sed -i "s|^include /usr/src/|include $WORK/root/usr/src/|" "$HDR/Makefile"

# drivers/vfio/ of the source, top level only (vfio.ko's files).
log "unpacking drivers/vfio from linux-source-$SERIES"
mkdir src
dpkg-deb --fsys-tarfile linux-source-"$SERIES"_*.deb |
    tar -xO "./usr/src/linux-source-$SERIES.tar.xz" | xz -dc |
    tar -x -C src --strip-components=3 --no-recursion --wildcards --no-wildcards-match-slash \
        "linux-source-$SERIES/drivers/vfio/*"
[ -f src/Makefile ] && [ -f src/vfio_main.c ] || die "no drivers/vfio in linux-source-$SERIES"

# Kbuild for vfio.ko alone: its object lines from the source's Makefile
# (kbuild fills in the kernel's CONFIG_ values), plus the one option.
{
    echo 'obj-m := vfio.o'
    grep -E '^vfio-(y|\$\(CONFIG_[A-Z0-9_]+\)) ' src/Makefile
    echo 'ccflags-y += -DCONFIG_VFIO_NOIOMMU=1'
} > src/Kbuild
log "building vfio.ko with CONFIG_VFIO_NOIOMMU ($(grep -c '^vfio-' src/Kbuild) object lines)"
make -s -C "$HDR" M="$WORK/src" CONFIG_DEBUG_INFO_BTF_MODULES= -j2 modules >&2 ||
    die "building vfio.ko failed (output above)"
KO=$WORK/src/vfio.ko
strip --strip-debug "$KO"

# The checks that make it a drop-in for the stock module.
modinfo -F parm "$KO" | grep -q '^enable_unsafe_noiommu_mode:' ||
    die "the built vfio.ko has no enable_unsafe_noiommu_mode parameter"
[ "$(modinfo -F vermagic "$KO")" = "$(modinfo -F vermagic "$STOCK")" ] ||
    die "vermagic differs: built '$(modinfo -F vermagic "$KO")', kernel '$(modinfo -F vermagic "$STOCK")'"
want=$(awk -F'\t' '$3 == "drivers/vfio/vfio" { print $2, $1 }' "$HDR/Module.symvers" | sort)
got=$(awk -F'\t' '{ print $2, $1 }' "$WORK/src/Module.symvers" | sort)
[ -n "$want" ] || die "the kernel's Module.symvers lists nothing exported by drivers/vfio/vfio"
if [ "$want" != "$got" ]; then
    diff <(echo "$want") <(echo "$got") >&2 || true
    die "the built vfio.ko does not export the stock module's symbols with the same CRCs (diff above: < stock, > built)"
fi

mkdir -p "stage/lib/modules/$KVER/kernel/drivers/vfio"
cp "$KO" "stage/lib/modules/$KVER/kernel/drivers/vfio/vfio.ko"
(cd stage && find . -print0 | LC_ALL=C sort -z | cpio --null -o -H newc -R 0:0 --quiet | gzip -6n) > "$OUT.tmp"
mv "$OUT.tmp" "$OUT"
# Archives for other builds of this kernel are superseded.
find "$VM_DIR" -maxdepth 1 -name "noiommu-vfio-$KVER-*.cpio.gz" ! -path "$OUT" -delete
log "ready: $OUT ($(grep -c . <<< "$want") exported symbols, CRCs as the stock module; $(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b-a}') s)"
echo "$OUT"
