//! `dpdk-fwd` against C `dpdk-testpmd --forward-mode=io` on the same two
//! `net_null` vdevs, bursts of 32, same mbuf pool size (8191), forwarding on
//! lcore 1, in the same run (alternating rounds).
//!
//! Each tool runs for a fixed time and prints its own per-second port
//! counters; the packets-per-second figures are parsed from those lines (rx of
//! both ports), the first window dropped as warm-up. The summary and the
//! ratio are printed and written to `$CARGO_TARGET_TMPDIR/fwd_vs_testpmd.json`.
//! The recorded windows are then fed to criterion (`iter_custom`: one
//! iteration = one packet at the window's rate), so its report shows the same
//! figures as time per packet and elements/s with its usual statistics.

#[path = "../tests/common/mod.rs"]
mod common;

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use criterion::{Criterion, Throughput};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

const ROUNDS: usize = 2;
const SECONDS: u64 = 8;
const MBUFS: &str = "8191";

fn eal(huge: &common::HugeDir, prefix: &str, lcores: &str) -> Vec<String> {
    let mut a = common::eal_args(huge, prefix, &["net_null0", "net_null1"]);
    a[1] = lcores.to_owned(); // "-l", "<lcores>"
    a
}

/// Run a command for `secs` seconds (SIGINT, then wait) and return its stdout.
fn run_for(mut cmd: Command, secs: u64) -> String {
    let child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    let pid = Pid::from_raw(child.id() as i32);
    let killer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_secs(secs));
        let _ = kill(pid, Signal::SIGINT);
    });
    let out = child.wait_with_output().expect("wait");
    killer.join().unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// testpmd prints `Rx-pps: N` per port per display: sum each pair.
fn testpmd_windows(huge: &common::HugeDir) -> Vec<f64> {
    let mut cmd = Command::new("dpdk-testpmd");
    cmd.args(eal(huge, "bench-testpmd", "0-1")).args([
        "--",
        "--forward-mode=io",
        "--burst=32",
        &format!("--total-num-mbufs={MBUFS}"),
        "--stats-period=1",
        "--auto-start",
    ]);
    let out = run_for(cmd, SECONDS);
    let per_port: Vec<f64> = out
        .lines()
        .filter_map(|l| l.trim().strip_prefix("Rx-pps:"))
        .filter_map(|r| r.split_whitespace().next()?.parse().ok())
        .collect();
    // The first display has no previous one to compute a rate from.
    per_port
        .chunks_exact(2)
        .map(|p| p[0] + p[1])
        .skip(1)
        .collect()
}

/// dpdk-fwd prints `stats: ... rx-pps=N ...` (both ports summed).
fn dpdk_fwd_windows(huge: &common::HugeDir) -> Vec<f64> {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_dpdk-fwd"));
    cmd.args(["--duration", &SECONDS.to_string(), "--mbufs", MBUFS, "--"])
        .args(eal(huge, "bench-fwd", "1"));
    let out = run_for(cmd, SECONDS + 5);
    out.lines()
        .filter(|l| l.starts_with("stats: "))
        .filter_map(|l| {
            l.split_whitespace()
                .find_map(|kv| kv.strip_prefix("rx-pps="))?
                .parse()
                .ok()
        })
        .skip(1)
        .collect()
}

fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    match s.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => s[n / 2],
        n => (s[n / 2 - 1] + s[n / 2]) / 2.0,
    }
}

fn main() {
    let Some(huge) = common::hugepages(256) else {
        return;
    };
    let (mut tp, mut rs) = (Vec::new(), Vec::new());
    for round in 0..ROUNDS {
        let t = testpmd_windows(&huge);
        let r = dpdk_fwd_windows(&huge);
        println!("round {round}: testpmd {t:.0?}\nround {round}: dpdk-fwd {r:.0?}");
        tp.extend(t);
        rs.extend(r);
    }
    assert!(!tp.is_empty() && !rs.is_empty(), "no stats parsed");
    let (mt, mr) = (median(&tp), median(&rs));
    let ratio = mr / mt;
    println!(
        "fwd-vs-testpmd: testpmd_mpps={:.2} dpdk_fwd_mpps={:.2} ratio={ratio:.3} (target >= 0.95; {} + {} one-second windows)",
        mt / 1e6,
        mr / 1e6,
        tp.len(),
        rs.len()
    );
    let json = format!(
        "{{\"vdevs\":\"net_null0,net_null1\",\"burst\":32,\"mbufs\":{MBUFS},\"testpmd_pps\":{tp:?},\"dpdk_fwd_pps\":{rs:?},\"testpmd_median_pps\":{mt},\"dpdk_fwd_median_pps\":{mr},\"ratio\":{ratio}}}\n"
    );
    let path = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("fwd_vs_testpmd.json");
    std::fs::File::create(&path)
        .and_then(|mut f| f.write_all(json.as_bytes()))
        .expect("write summary");
    println!("summary written to {}", path.display());

    let mut c = Criterion::default()
        .configure_from_args()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(10))
        .measurement_time(Duration::from_millis(100));
    let mut g = c.benchmark_group("fwd_io_net_null_burst32");
    g.throughput(Throughput::Elements(1));
    for (name, windows) in [("testpmd", &tp), ("dpdk-fwd", &rs)] {
        let mut next = windows.iter().cycle();
        g.bench_function(name, |b| {
            b.iter_custom(|iters| Duration::from_secs_f64(iters as f64 / next.next().unwrap()))
        });
    }
    g.finish();
    c.final_summary();
}
