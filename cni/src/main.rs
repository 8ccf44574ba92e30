//! The `dpdk-cni` binary: wiring only; see the library.

fn main() {
    dpdk_cni::cli::process_main()
}
