#!/usr/bin/env bash
# Builds the test cluster's images with buildah, FROM scratch (no registry is
# reachable, none is needed), and writes each as a docker-archive the guest's
# containerd imports (`ctr -n k8s.io images import`):
#
#   localhost/pause:dev          the sandbox image (images/pause.c, static)
#   localhost/dpdk-cni:dev       the project's image (docker/build-image.sh)
#   localhost/dpdk-testpmd:dev   Debian's dpdk-testpmd with its libraries and
#                                drivers, dpdk-discover (static) and busybox
#                                as /bin/sh
#
#   tests/k8s/images.sh OUTDIR    writes OUTDIR/{pause,dpdk-cni,dpdk-testpmd}.tar
#
# Storage and isolation as docker/build-image.sh (BUILDAH_STORAGE, default vfs).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
OUT=${1:?usage: images.sh OUTDIR}
STORAGE=${BUILDAH_STORAGE:-vfs}
TARGET=x86_64-unknown-linux-gnu
say() { echo "[k8s-images] $*" >&2; }
die() { say "error: $*"; exit 1; }
buildah() { command buildah --storage-driver "$STORAGE" "$@"; }

for c in buildah gcc ldd busybox; do
    command -v "$c" >/dev/null || die "$c is missing (make k8s-deps installs it)"
done
mkdir -p "$OUT"
WORK=$(mktemp -d)
CTR=""
cleanup() {
    [ -z "$CTR" ] || buildah rm "$CTR" >/dev/null 2>&1 || true
    rm -rf "$WORK"
}
trap cleanup EXIT

# A static binary has no program interpreter: FROM scratch has no loader.
static() { ! readelf -lW "$1" | grep -q 'Requesting program interpreter'; }

# archive NAME: writes localhost/NAME:dev to OUT/NAME.tar.
archive() {
    local image=localhost/$1:dev
    rm -f "$OUT/$1.tar"
    buildah push --quiet "$image" "docker-archive:$OUT/$1.tar:$image" >/dev/null
    say "$image: $(du -h "$OUT/$1.tar" | cut -f1)"
}

# commit NAME: commits $CTR as localhost/NAME:dev and archives it.
commit() {
    buildah commit --quiet --rm "$CTR" "localhost/$1:dev" >/dev/null
    CTR=""
    archive "$1"
}

t0=$(date +%s)

# --- pause ---------------------------------------------------------------
gcc -static -Os -Wall -Wextra -Werror -o "$WORK/pause" "$HERE/images/pause.c"
CTR=$(buildah from scratch)
buildah copy --quiet "$CTR" "$WORK/pause" /pause >/dev/null
buildah config --entrypoint '["/pause"]' --cmd '' "$CTR"
commit pause

# --- dpdk-cni --------------------------------------------------------------
"$REPO/docker/build-image.sh" >&2
archive dpdk-cni

# --- dpdk-testpmd ----------------------------------------------------------
# dpdk-discover, static: it runs before any library of the image is needed.
(cd "$REPO/dpdk" && RUSTFLAGS="-C target-feature=+crt-static" \
    CARGO_TARGET_DIR="$REPO/target/dpdk-static" cargo build --locked --release -q \
    --target "$TARGET" -p dpdk-discover --bin dpdk-discover)
DISCOVER=$REPO/target/dpdk-static/$TARGET/release/dpdk-discover
static "$DISCOVER" || die "dpdk-discover is not static"
TESTPMD=$(command -v dpdk-testpmd) || die "dpdk-testpmd is missing (apt-get install dpdk)"
PMDS=$(find /usr/lib/x86_64-linux-gnu/dpdk -maxdepth 1 -name 'pmds-*' -type d | sort | tail -n1)
[ -d "$PMDS" ] || die "no DPDK driver directory under /usr/lib/x86_64-linux-gnu/dpdk"
ROOT=$WORK/testpmd
# Debian's merged /usr: /lib and /lib64 are links into /usr.
mkdir -p "$ROOT/bin" "$ROOT/usr/bin" "$ROOT/usr/lib64" "$ROOT/etc" "$ROOT/run" "$ROOT/var" "$ROOT/tmp"
chmod 1777 "$ROOT/tmp"
ln -s ../run "$ROOT/var/run"      # EAL's runtime directory is /var/run/dpdk
ln -s usr/lib "$ROOT/lib"
ln -s usr/lib64 "$ROOT/lib64"
# Every library testpmd and its drivers load (the drivers directory is read
# by EAL at start: a driver whose library is missing stops EAL), with the
# paths the loader looks at, plus the loader itself.
{
    ldd "$TESTPMD"
    for f in "$PMDS"/*.so*; do ldd "$f"; done
} | awk '$2 == "=>" && $3 ~ /^\// {print $3} $1 ~ /^\/.*ld-linux/ {print $1}' | sort -u > "$WORK/libs"
# Each file goes where it really lives, under the name it is asked for.
while read -r lib; do
    real=$(readlink -f "$lib")
    real=/usr${real#/usr}
    mkdir -p "$ROOT$(dirname "$real")"
    cp -n "$real" "$ROOT$real"
    asked=$(dirname "$lib" | sed 's|^/lib|/usr/lib|')/$(basename "$lib")
    [ "$asked" = "$real" ] || ln -sfn "$real" "$ROOT$asked"
done < "$WORK/libs"
echo /usr/lib/x86_64-linux-gnu > "$ROOT/etc/ld.so.conf"
ldconfig -r "$ROOT"
mkdir -p "$ROOT$PMDS"
cp -a "$PMDS/." "$ROOT$PMDS/"
# The drivers directory holds symlinks to the librte_*.so.N files: copied above.
for l in "$ROOT$PMDS"/*; do
    [ -e "$l" ] || die "driver link $(basename "$l") points outside the image"
done
cp "$TESTPMD" "$ROOT/usr/bin/dpdk-testpmd"
cp "$DISCOVER" "$ROOT/usr/bin/dpdk-discover"
cp "$(command -v busybox)" "$ROOT/bin/busybox"
static "$ROOT/bin/busybox" || die "busybox is not static (apt-get install busybox-static)"
for a in sh cat ls sleep grep ip; do ln -s busybox "$ROOT/bin/$a"; done
echo 'root:x:0:0:root:/root:/bin/sh' > "$ROOT/etc/passwd"
CTR=$(buildah from scratch)
buildah copy --quiet "$CTR" "$ROOT" / >/dev/null
buildah config --env PATH=/usr/bin:/bin --entrypoint '[]' --cmd '["/bin/sh"]' "$CTR"
commit dpdk-testpmd

say "images in $OUT ($(( $(date +%s) - t0 ))s)"
