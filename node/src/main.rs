//! The dpdk-cni node daemon.

fn main() {
    eprintln!("dpdk-cni-node: not built yet");
    std::process::exit(2);
}
