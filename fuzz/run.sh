#!/usr/bin/env bash
# A bounded coverage-guided fuzzing run of every target in fuzz/ (cargo-fuzz,
# libFuzzer): SECONDS of fuzzing in all (default 90), shared evenly among the
# targets, after the build. Prints per target the executions run, the corpus
# size and the failures found (crash files); exits non-zero on any failure.
#
#   fuzz/run.sh [SECONDS]
#
# Installs cargo-fuzz (pinned) into CARGO_HOME's bin when it is missing. The
# committed seeds (fuzz/corpus/<target>) are read, never written; what a run
# learns goes to fuzz/target/corpus/<target> and is reused by the next run.
# Crash files land in fuzz/artifacts/<target>/: reproduce one with
#   cargo +nightly fuzz run --debug-assertions <target> fuzz/artifacts/<target>/<file>
set -euo pipefail

CARGO_FUZZ_VERSION=0.13.2
total=${1:-90}
here=$(cd "$(dirname "$0")" && pwd)
cd "$here"

export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"
if ! rustup run nightly rustc --version >/dev/null 2>&1; then
    echo "fuzz: a nightly toolchain is needed: rustup toolchain install nightly" >&2
    exit 1
fi
if [ "$(cargo fuzz --version 2>/dev/null)" != "cargo-fuzz $CARGO_FUZZ_VERSION" ]; then
    echo "fuzz: installing cargo-fuzz $CARGO_FUZZ_VERSION"
    cargo install cargo-fuzz --locked --version "$CARGO_FUZZ_VERSION"
fi

build_started=$(date +%s)
lock=$(sha256sum Cargo.lock)
# Debug assertions on: an overflow is a failure too.
cargo +nightly fuzz build --debug-assertions
# cargo-fuzz has no --locked: the committed lock file must not have moved.
if [ "$(sha256sum Cargo.lock)" != "$lock" ]; then
    echo "fuzz: the build changed fuzz/Cargo.lock: commit the new one or fix fuzz/Cargo.toml" >&2
    exit 1
fi
echo "fuzz: built in $(($(date +%s) - build_started)) s"

mapfile -t targets < <(cargo +nightly fuzz list)
per=$((total / ${#targets[@]}))
[ "$per" -ge 1 ] || per=1

# The targets make their fake nodes in TMPDIR: on tmpfs when there is one
# (much faster), in a directory of this run's own either way.
scratch_parent=/dev/shm
[ -d "$scratch_parent" ] && [ -w "$scratch_parent" ] || scratch_parent=$here/target
scratch=$(mktemp -d "$scratch_parent/dpdk-cni-fuzz.XXXXXX")
trap 'rm -rf "$scratch"' EXIT
export TMPDIR=$scratch

mkdir -p target/logs
failed=0
summary=()
run_started=$(date +%s)
for t in "${targets[@]}"; do
    work=target/corpus/$t
    mkdir -p "$work" "corpus/$t"
    rm -rf "artifacts/$t"
    mkdir -p "artifacts/$t"
    args=(-max_total_time="$per" -timeout=10 -print_final_stats=1)
    [ -f "dicts/$t.dict" ] && args+=(-dict="dicts/$t.dict")
    log=target/logs/$t.log
    rc=0
    cargo +nightly fuzz run --debug-assertions "$t" "$work" "corpus/$t" -- "${args[@]}" >"$log" 2>&1 || rc=$?
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    # libFuzzer's corpus at the end (seeds and new inputs that add coverage),
    # and the inputs kept for the next run.
    corpus=$(grep -o 'corp: [0-9]*/[0-9a-zA-Z]*' "$log" | tail -1 | cut -d' ' -f2)
    kept=$(find "$work" -type f | wc -l)
    crashes=$(find "artifacts/$t" -type f | wc -l)
    line=$(printf '%-16s %9s execs  corpus %-11s %5s kept  %d failures' \
        "$t" "${execs:-?}" "${corpus:-?}" "$kept" "$crashes")
    echo "fuzz: $line"
    summary+=("$line")
    if [ "$rc" != 0 ] || [ "$crashes" != 0 ]; then
        failed=1
        echo "fuzz: $t failed (exit $rc); the end of $here/$log:"
        grep -E "panicked at|^thread '|^==[0-9]+==|SUMMARY|Test unit written" "$log" | head -20 | sed 's/^/    /'
        find "artifacts/$t" -type f | sed 's/^/    crash file: fuzz\//'
    fi
done

echo "fuzz: ${#targets[@]} targets, ${per} s each, $(($(date +%s) - run_started)) s of fuzzing"
for l in "${summary[@]}"; do echo "  $l"; done
if [ "$failed" != 0 ]; then
    echo "fuzz: FAILED"
    exit 1
fi
echo "fuzz: no failures"
