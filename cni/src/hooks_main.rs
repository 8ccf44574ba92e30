//! `dpdk-cni-hooks`: the plugin built with the test hooks (fake node,
//! recording netlink, failpoints) for the benches and the guest's crash
//! tests. Built only with the `test-hooks` feature, into the same target
//! directory as the release binaries, whose dependencies it shares.

fn main() {
    dpdk_cni::cli::process_main()
}
