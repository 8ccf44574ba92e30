#!/usr/bin/env bash
# Builds the dpdk-cni image with buildah: both binaries static, FROM scratch
# (nothing to pull), then runs the DaemonSet's install entrypoint from the
# built image and checks the copy.
#
#   docker/build-image.sh                 # image localhost/dpdk-cni:dev
#   IMAGE=registry/dpdk-cni:1 docker/build-image.sh
#
# As root in CI, buildah's overlay storage or user namespaces may be
# unavailable: BUILDAH_STORAGE (default vfs) and BUILDAH_ISOLATION (default
# chroot) choose otherwise. CARGO_BUILD_JOBS limits the build on small machines.
set -euo pipefail
cd "$(dirname "$0")/.."

IMAGE=${IMAGE:-localhost/dpdk-cni:dev}
TARGET=x86_64-unknown-linux-gnu
TARGET_DIR=${CARGO_TARGET_DIR:-target}
STORAGE=${BUILDAH_STORAGE:-vfs}
ISOLATION=${BUILDAH_ISOLATION:-chroot}
buildah() { command buildah --storage-driver "$STORAGE" "$@"; }

command -v buildah >/dev/null || { echo "build-image: buildah is missing (apt-get install buildah)" >&2; exit 1; }
start=$(date +%s)

echo "== static binaries"
RUSTFLAGS="-C target-feature=+crt-static" cargo build --locked --release \
  --target "$TARGET" -p dpdk-cni -p dpdk-cni-node
ctx=$(mktemp -d)
out=$(mktemp -d)
ctr=""
cleanup() {
  [ -n "$ctr" ] && { buildah umount "$ctr" >/dev/null 2>&1 || true; buildah rm "$ctr" >/dev/null 2>&1 || true; }
  rm -rf "$ctx" "$out"
}
trap cleanup EXIT
for b in dpdk-cni dpdk-cni-node; do
  cp "$TARGET_DIR/$TARGET/release/$b" "$ctx/"
  # FROM scratch has no loader: the binaries must not need one.
  if readelf -lW "$ctx/$b" | grep -q 'Requesting program interpreter'; then
    echo "build-image: $b is dynamically linked" >&2; exit 1
  fi
done
cp docker/Containerfile "$ctx/"

echo "== image $IMAGE"
buildah build --isolation "$ISOLATION" --layers=false -f "$ctx/Containerfile" -t "$IMAGE" "$ctx"

echo "== install entrypoint from the image"
ctr=$(buildah from "$IMAGE")
if buildah run --isolation "$ISOLATION" -v "$out:/host/opt/cni/bin" "$ctr" -- \
     /usr/bin/dpdk-cni-node install-cni --to /host/opt/cni/bin; then
  how="buildah run"
else
  # Without namespaces for `buildah run`: the same binary from the mounted rootfs.
  mnt=$(buildah mount "$ctr")
  "$mnt/usr/bin/dpdk-cni-node" install-cni --to "$out"
  how="buildah mount"
fi
mnt=$(buildah mount "$ctr")
cmp "$out/dpdk-cni" "$mnt/usr/bin/dpdk-cni"
[ -x "$out/dpdk-cni" ]
ls "$out" | grep -qv '^dpdk-cni$' && { echo "build-image: install left other files: $(ls -A "$out")" >&2; exit 1; }
# The installed plugin answers as a runtime would call it.
CNI_COMMAND=VERSION "$out/dpdk-cni" </dev/null | grep -q cniVersion

size=$(buildah images --noheading --format '{{.Size}}' "$IMAGE" 2>/dev/null | head -1 || true)
echo "build-image: $IMAGE built; install-cni checked via $how; binaries $(du -ch "$ctx"/dpdk-cni "$ctx"/dpdk-cni-node | tail -1 | cut -f1); ${size:+image $size; }wall $(( $(date +%s) - start ))s"
