//! Runs `dpdk-fwd` as a user would: once on two `net_null` vdevs with
//! `--packets`, once on two looping `net_ring` vdevs with injected packets,
//! and parses its `fwd-result:` line.

mod common;

use std::collections::HashMap;
use std::process::Command;

fn run_fwd(fwd_args: &[&str], eal: Vec<String>) -> HashMap<String, f64> {
    let out = Command::new(env!("CARGO_BIN_EXE_dpdk-fwd"))
        .args(fwd_args)
        .arg("--")
        .args(eal)
        .output()
        .expect("run dpdk-fwd");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "dpdk-fwd failed: {}\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let line = stdout
        .lines()
        .find_map(|l| l.strip_prefix("fwd-result: "))
        .unwrap_or_else(|| panic!("no fwd-result line in:\n{stdout}"));
    line.split_whitespace()
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap();
            (k.to_owned(), v.parse().unwrap())
        })
        .collect()
}

#[test]
fn dpdk_fwd_counts_packets() {
    let Some(huge) = common::hugepages(128) else {
        return;
    };
    let r = run_fwd(
        &["--packets", "1000000", "--stats-period", "0"],
        common::eal_args(&huge, "fwd-null", &["net_null0", "net_null1"]),
    );
    // Stops at the first round past the limit: at most one burst per port over.
    assert!(
        r["forwarded"] >= 1e6 && r["forwarded"] < 1e6 + 64.0,
        "{r:?}"
    );
    assert_eq!(r["rx"], r["forwarded"]);
    assert_eq!(r["tx"], r["forwarded"]);
    assert_eq!(r["dropped"], 0.0);

    let r = run_fwd(
        &[
            "--packets",
            "50000",
            "--inject",
            "64",
            "--stats-period",
            "0",
        ],
        common::eal_args(&huge, "fwd-ring", &["net_ring0", "net_ring1"]),
    );
    assert_eq!(r["injected"], 64.0);
    assert_eq!(r["dropped"], 0.0);
    assert!(
        r["forwarded"] >= 50000.0 && r["forwarded"] < 50064.0,
        "{r:?}"
    );
    // Port counters are read after the injection: every packet received
    // was forwarded, and the 64 injected ones are still circling.
    assert_eq!(r["tx"], r["forwarded"]);
    assert_eq!(r["rx"], r["forwarded"]);
}
