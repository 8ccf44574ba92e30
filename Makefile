# dpdk-cni: the few targets a newcomer needs. `make help` lists them.
SHELL := /bin/bash
.DEFAULT_GOAL := help
TARGET := x86_64-unknown-linux-gnu
PLUGIN := target/$(TARGET)/release/dpdk-cni
CARGO ?= cargo

DPDK_TARGET := $(CURDIR)/target/dpdk

.PHONY: help deps plugin plugin-hooks demo test lint unit-test vm-test bench-smoke bench dpdk-test dpdk-bench image

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

deps: ## install the Debian packages (QEMU from bookworm-backports, DPDK, CNI plugins)
	@scripts/install-deps.sh

plugin: ## build the static dpdk-cni binary (target/x86_64-unknown-linux-gnu/release/dpdk-cni)
	RUSTFLAGS="-C target-feature=+crt-static" $(CARGO) build --locked --release -p dpdk-cni --target $(TARGET)

plugin-hooks: ## the same with test hooks (failpoints), for the guest's crash scenario (target/hooks/...)
	RUSTFLAGS="-C target-feature=+crt-static" $(CARGO) build --locked --release -p dpdk-cni --features test-hooks --target $(TARGET) --target-dir target/hooks

demo: deps plugin ## boot the SR-IOV guest and attach VFs to DPDK pods (testpmd, dpdk-fwd), narrated
	cd dpdk && CARGO_TARGET_DIR=$(DPDK_TARGET) $(CARGO) build --locked --bin dpdk-fwd
	tests/vm/run.sh tests/vm/demo.sh

test: deps lint unit-test bench-smoke dpdk-test vm-test image ## install what is needed and run every test
	@echo "make test: every tier passed"

lint: ## cargo fmt --check and clippy with warnings denied
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --locked --all-targets -- -D warnings

unit-test: ## unit tests, fake-node tests of the binary, netns and IPAM tests (root)
	$(CARGO) test --locked --workspace

vm-test: plugin plugin-hooks ## every QEMU guest scenario in one boot (bats, TAP output)
	$(CARGO) build --locked -p dpdk-cni-node --bins --examples
	cd dpdk && CARGO_TARGET_DIR=$(DPDK_TARGET) $(CARGO) build --locked --bin dpdk-fwd
	VM_TIMEOUT=$${VM_TIMEOUT:-900} tests/vm/run.sh tests/vm/scenarios/all.sh

bench-smoke: plugin ## the plugin bench, short: proves it runs and prints its summary
	BENCH_ROUNDS=20 $(CARGO) bench --locked -p dpdk-cni-benches -- --test

bench: deps plugin ## the full plugin bench (criterion); summary in target/bench-summary/
	$(CARGO) bench --locked -p dpdk-cni-benches

image: ## build the container image with buildah (FROM scratch) and run its install-cni entrypoint
	docker/build-image.sh

dpdk-test: ## the dpdk crates (own workspace): lint, discovery unit tests, EAL forwarding on real hugepages (root)
	cd dpdk && CARGO_TARGET_DIR=$(DPDK_TARGET) $(CARGO) fmt --all -- --check
	cd dpdk && CARGO_TARGET_DIR=$(DPDK_TARGET) $(CARGO) clippy --locked --all-targets -- -D warnings
	cd dpdk && CARGO_TARGET_DIR=$(DPDK_TARGET) $(CARGO) test --locked

dpdk-bench: deps ## dpdk-fwd against dpdk-testpmd on net_null vdevs, and burst/mbuf micro-benchmarks
	cd dpdk && CARGO_TARGET_DIR=$(DPDK_TARGET) $(CARGO) bench --locked
