#!/usr/bin/env bash
# Installs the Debian packages dpdk-cni's build, tests and demo need.
# Idempotent: does nothing (and asks no mirror) when everything is there.
set -euo pipefail

# Debian bookworm's own packages.
PKGS=(
  make pkg-config clang libclang-dev          # build, bindgen
  iproute2 iputils-ping util-linux time jq    # netns tests, setpriv, peak RSS, JSON in scripts
  containernetworking-plugins                 # real IPAM plugins (host-local, static) and host-device
  dpdk-dev libdpdk-dev                        # dpdk-testpmd, headers and pkg-config files
  busybox-static cpio kmod                    # the test guest's initramfs
  bats bats-support bats-assert               # the guest scenarios written in bats
  buildah                                     # the container image (docker/build-image.sh)
  runc nftables socat openssl curl gcc libc6-dev  # the Kubernetes tier: runtime, Service address,
                                              # API server forwarding, certificates, pause image
)
# From bookworm-backports: QEMU 10 has the igb (82576) SR-IOV model.
BACKPORTS=(qemu-system-x86)

missing=()
for p in "${PKGS[@]}" "${BACKPORTS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# bookworm's own QEMU (7.2) has no igb: make sure the backports one is there.
if dpkg-query -W -f='${Version}' qemu-system-x86 2>/dev/null | grep -q '^1:7\.'; then
  missing+=(qemu-system-x86)
fi
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" != 0 ]; then
  echo "install-deps: missing ${missing[*]}; run as root (or: sudo $0)" >&2
  exit 1
fi
if ! grep -rqs 'bookworm-backports' /etc/apt/sources.list /etc/apt/sources.list.d/; then
  echo 'deb http://deb.debian.org/debian bookworm-backports main' > /etc/apt/sources.list.d/backports.list
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -y -q --no-install-recommends "${PKGS[@]}"
apt-get install -y -q --no-install-recommends -t bookworm-backports "${BACKPORTS[@]}"
