//! The `dpdk-cni` binary: wiring only; see the library.

use std::io::Read;

fn main() {
    let mut stdin = Vec::new();
    // VERSION may come with no stdin at all; an unreadable stdin is an empty one.
    let _ = std::io::stdin().read_to_end(&mut stdin);
    let get = |k: &str| std::env::var(k).ok();
    let code = dpdk_cni::cli::main_with(&get, &stdin, &mut std::io::stdout().lock());
    std::process::exit(code);
}
