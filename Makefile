# dpdk-cni: the few targets a newcomer needs. `make help` lists them.
SHELL := /bin/bash
.DEFAULT_GOAL := help
TARGET := x86_64-unknown-linux-gnu
PLUGIN := target/$(TARGET)/release/dpdk-cni
NODE := target/$(TARGET)/release/dpdk-cni-node
# The same plugin with the test hooks (fake node, recording netlink,
# failpoints): what the benches and the guest's crash scenario drive. Its own
# binary name, so it shares the release build's target directory (and its
# compiled dependencies: the same two packages, so the same features of
# each) without replacing dpdk-cni there.
PLUGIN_HOOKS := target/$(TARGET)/release/dpdk-cni-hooks
# The features that compile the fakes into the tests' builds.
TEST_FEATURES := dpdk-cni/test-hooks,dpdk-cni-node/test-hooks
CARGO ?= cargo

DPDK_TARGET := $(CURDIR)/target/dpdk

.PHONY: help deps plugin plugin-hooks release-check demo test lint unit-test fuzz vm-test bench-smoke bench dpdk-test dpdk-bench image peer-bench peer-bench-smoke

help: ## list the targets
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-16s %s\n", $$1, $$2}'

deps: ## install the Debian packages (QEMU from bookworm-backports, DPDK, CNI plugins)
	@scripts/install-deps.sh

# Both release binaries in one build, as the image ships them (docker/build-image.sh
# runs the same command, so `make image` after this compiles nothing).
plugin: ## build the static release binaries dpdk-cni and dpdk-cni-node (target/x86_64-unknown-linux-gnu/release/)
	RUSTFLAGS="-C target-feature=+crt-static" $(CARGO) build --locked --release -p dpdk-cni -p dpdk-cni-node --target $(TARGET)

plugin-hooks: ## the same static binary with the test hooks, for the benches and guest crash tests ($(PLUGIN_HOOKS))
	RUSTFLAGS="-C target-feature=+crt-static" $(CARGO) build --locked --release -p dpdk-cni -p dpdk-cni-node --features dpdk-cni/test-hooks --bin dpdk-cni-hooks --target $(TARGET)

release-check: plugin ## the release binaries carry no test fakes
	@for b in $(PLUGIN) $(NODE); do \
	  n=$$(strings $$b | grep -c -e DPDK_CNI_FAKE -e DPDK_CNI_FAILPOINT -e emulated-kernel -e fake-netlink -e api-server || true); \
	  echo "release-check: $$b: $$n test-hook strings"; [ "$$n" = 0 ] || exit 1; \
	done
	@! $(CARGO) tree --locked -e normal -p dpdk-cni-node | grep -q "dpdk-cni v" || { echo "release-check: dpdk-cni-node links the plugin crate"; exit 1; }
	@! $(CARGO) tree --locked -e normal,features -p dpdk-cni -p dpdk-cni-node | grep -e '"test-util"' -e '"fake"' -e '"test-hooks"' || { echo "release-check: a test feature reaches a release build"; exit 1; }
	@echo "release-check: no fakes in the release binaries, dpdk-cni-node does not link the plugin"

demo: deps plugin ## boot the SR-IOV guest and attach VFs to DPDK pods (testpmd, dpdk-fwd), narrated
	cd dpdk && CARGO_TARGET_DIR=$(DPDK_TARGET) $(CARGO) build --locked --bin dpdk-fwd
	tests/vm/run.sh tests/vm/demo.sh

test: deps lint release-check unit-test fuzz bench-smoke peer-bench-smoke dpdk-test vm-test image k8s-test ## install what is needed and run every test
	@echo "make test: every tier passed"

lint: ## cargo fmt --check and clippy with warnings denied, with and without the test hooks
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --locked --all-targets -- -D warnings
	$(CARGO) clippy --locked --all-targets --features $(TEST_FEATURES) -- -D warnings

unit-test: ## unit tests, fake-node tests of the binary (test-hooks build), netns and IPAM tests (root)
	$(CARGO) test --locked --workspace --features $(TEST_FEATURES)

# Seconds of fuzzing in all, shared among the targets (after their build).
FUZZ_SECONDS ?= 90

fuzz: ## coverage-guided fuzzing of the input parsers (cargo-fuzz, nightly), FUZZ_SECONDS in all
	cd fuzz && cargo +nightly fmt --check
	fuzz/run.sh $(FUZZ_SECONDS)

vm-test: plugin plugin-hooks ## every QEMU guest scenario: one boot with the IOMMU (all.sh), one without (noiommu.bats)
	$(CARGO) build --locked -p dpdk-cni-node --bins --examples
	cd dpdk && CARGO_TARGET_DIR=$(DPDK_TARGET) $(CARGO) build --locked --bin dpdk-fwd
	@t0=$$(date +%s); rc=0; \
	VM_TIMEOUT=$${VM_TIMEOUT:-900} tests/vm/run.sh tests/vm/scenarios/all.sh || rc=$$?; \
	t1=$$(date +%s); rc2=0; \
	VM_TIMEOUT=$${VM_TIMEOUT_NOIOMMU:-400} tests/vm/run.sh tests/vm/scenarios/noiommu.bats || rc2=$$?; \
	t2=$$(date +%s); \
	echo "vm-test: boot with the IOMMU (all.sh): $$((t1 - t0)) s, exit status $$rc; boot without (noiommu.bats): $$((t2 - t1)) s, exit status $$rc2"; \
	[ $$rc = 0 ] && [ $$rc2 = 0 ]

bench-smoke: plugin-hooks ## the plugin bench, short: proves it runs and prints its summary
	BENCH_ROUNDS=20 $(CARGO) bench --locked -p dpdk-cni-benches -- --test

bench: deps plugin-hooks peer-bench ## the full benches (criterion, the guest beside sriov-cni); summaries in target/bench-summary/
	$(CARGO) bench --locked -p dpdk-cni-benches

# sriov-cni (the peer) is built from source by tests/vm/bench/build-sriov-cni.sh;
# where the module proxy does not serve it, SRIOV_CNI_SRC names a clone.
peer-bench: plugin ## the guest bench beside sriov-cni: 20 interleaved rounds, the table README quotes
	PEER_BIN=$$(tests/vm/bench/build-sriov-cni.sh) && \
	PEER_BIN=$$PEER_BIN PEER_ROUNDS=$${PEER_ROUNDS:-20} VM_ENV="PEER_BIN PEER_ROUNDS" \
	  tests/vm/run.sh tests/vm/bench/peer.sh

peer-bench-smoke: plugin ## the same, 3 rounds; without a sriov-cni build only dpdk-cni's column
	rc=0; PEER_BIN=$$(tests/vm/bench/build-sriov-cni.sh) || rc=$$?; \
	if [ $$rc = 3 ]; then echo "peer-bench-smoke: sriov-cni not available, measuring dpdk-cni alone"; PEER_BIN=; \
	elif [ $$rc != 0 ]; then exit $$rc; fi; \
	PEER_BIN=$$PEER_BIN PEER_ROUNDS=3 VM_ENV="PEER_BIN PEER_ROUNDS" tests/vm/run.sh tests/vm/bench/peer.sh

image: ## build the container image with buildah (FROM scratch) and run its install-cni entrypoint
	docker/build-image.sh

dpdk-test: ## the dpdk crates (own workspace): lint, discovery unit tests, EAL forwarding on real hugepages (root)
	cd dpdk && CARGO_TARGET_DIR=$(DPDK_TARGET) $(CARGO) fmt --all -- --check
	cd dpdk && CARGO_TARGET_DIR=$(DPDK_TARGET) $(CARGO) clippy --locked --all-targets -- -D warnings
	cd dpdk && CARGO_TARGET_DIR=$(DPDK_TARGET) $(CARGO) test --locked

dpdk-bench: deps ## dpdk-fwd against dpdk-testpmd on net_null vdevs, and burst/mbuf micro-benchmarks
	cd dpdk && CARGO_TARGET_DIR=$(DPDK_TARGET) $(CARGO) bench --locked

# The Kubernetes tier: its pieces built from pinned Go modules (tests/k8s/modules)
# into ~/.cache/dpdk-cni/k8s (a cold build takes tens of CPU-minutes, a warm one
# none), a control plane on the loopback, the kubelet and containerd in the guest.
.PHONY: k8s-build k8s-smoke k8s-test
k8s-build: ## build kube-apiserver, kube-controller-manager, kubelet, kube-scheduler, kubectl, etcd, containerd, crictl (cached)
	tests/k8s/components.sh >/dev/null

k8s-test: deps ## a real node in the guest (kubelet, containerd) runs docker/k8s: DaemonSet, device plugin, testpmd pods
	tests/k8s/run.sh

k8s-smoke: ## the loopback control plane answers (readyz, resource.k8s.io/v1, a ConfigMap); containerd's CRI answers
	tests/k8s/smoke.sh
