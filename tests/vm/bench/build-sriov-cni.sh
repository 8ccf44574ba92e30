#!/usr/bin/env bash
# Builds the peer the guest bench measures us against: sriov-cni's
# cmd/sriov at a pinned release, with the Go toolchain on the machine and
# its dependencies from the Go module proxy (GOFLAGS=-mod=mod, GOPROXY as
# configured). Prints the binary's path. The build is cached under
# target/peer/, keyed by version, commit and Go version.
#
# Where the source comes from, in order:
#   1. the Go module proxy: the module at the pseudo-version of the release
#      commit (the v2 tags carry no /v2 module path, so Go names the commit);
#   2. SRIOV_CNI_SRC: a git repository (bare or not) holding the release
#      commit, or a directory with that release's tree.
# Exit status 3 when neither has it: the caller decides whether the peer is
# optional (the smoke run) or not (the full bench).
set -euo pipefail

VERSION=v2.10.0
COMMIT=6e57b33abf15d8f5d49d27ff61d7deab4bbb78a2
PSEUDO=v0.0.0-20250716060549-6e57b33abf15
MODULE=github.com/k8snetworkplumbingwg/sriov-cni

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)
say() { echo "[peer-build] $*" >&2; }
command -v go >/dev/null || { say "no Go toolchain"; exit 3; }
GOV=$(go env GOVERSION)
OUT=$REPO_ROOT/target/peer/sriov-cni-$VERSION-${COMMIT:0:12}-$GOV
if [ -x "$OUT/sriov" ]; then echo "$OUT/sriov"; exit 0; fi

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
export GOFLAGS=-mod=mod GOTOOLCHAIN=local
src=""
if dir=$(go mod download -json "$MODULE@$PSEUDO" 2>/dev/null | sed -n 's/^\t"Dir": "\(.*\)",$/\1/p') && [ -n "$dir" ]; then
    say "source: the Go module $MODULE@$PSEUDO ($VERSION)"
    cp -r "$dir" "$WORK/src" && chmod -R u+w "$WORK/src"
    src=$WORK/src
elif [ -n "${SRIOV_CNI_SRC:-}" ]; then
    if git -C "$SRIOV_CNI_SRC" rev-parse -q --verify "$COMMIT^{commit}" >/dev/null 2>&1; then
        say "source: $SRIOV_CNI_SRC at $COMMIT ($VERSION)"
        mkdir "$WORK/src"
        git -C "$SRIOV_CNI_SRC" archive "$COMMIT" | tar -C "$WORK/src" -xf -
        src=$WORK/src
    elif grep -qx "module $MODULE" "$SRIOV_CNI_SRC/go.mod" 2>/dev/null; then
        say "source: the tree at $SRIOV_CNI_SRC (taken as $VERSION)"
        cp -r "$SRIOV_CNI_SRC" "$WORK/src"
        src=$WORK/src
    else
        say "SRIOV_CNI_SRC=$SRIOV_CNI_SRC holds neither commit $COMMIT nor a $MODULE tree"
        exit 3
    fi
else
    say "the Go module proxy does not serve $MODULE here; set SRIOV_CNI_SRC to a clone holding $VERSION ($COMMIT)"
    exit 3
fi
say "building $MODULE/cmd/sriov $VERSION with $GOV"
(cd "$src" && go build -trimpath -o "$WORK/sriov" ./cmd/sriov)
mkdir -p "$OUT"
mv "$WORK/sriov" "$OUT/sriov"
echo "$OUT/sriov"
