//! The daemon's footprint with 256 VFs in a fake tree, registered with a
//! fake kubelet that holds a ListAndWatch stream open as the real one does:
//! peak RSS (VmHWM) under 20 MiB, and idle CPU (utime+stime over a few
//! seconds, at the default 500 ms health tick) near zero. Prints the figures.
//! `DPDK_CNI_NODE_BIN=target/.../release/dpdk-cni-node` measures a release build.

mod common;

use std::fs;
use std::time::{Duration, Instant};

use common::{two_pf_node, Daemon, FakeKubelet};
use dpdk_cni_node::api::device_plugin_client::DevicePluginClient;
use dpdk_cni_node::api::Empty;
use dpdk_cni_node::plugin::connect_unix;

fn status_kib(pid: u32, key: &str) -> u64 {
    let s = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    s.lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// utime + stime in clock ticks (fields 14 and 15 of /proc/<pid>/stat).
fn cpu_ticks(pid: u32) -> u64 {
    let s = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after = &s[s.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = after.split_whitespace().collect();
    f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
}

/// CPU time in nanoseconds from /proc/<pid>/schedstat (finer than ticks), if the kernel has it.
fn cpu_ns(pid: u32) -> Option<u64> {
    fs::read_to_string(format!("/proc/{pid}/schedstat"))
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

#[tokio::test(flavor = "current_thread")]
async fn footprint_with_256_vfs() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    let _node = two_pf_node(&root, 128);
    let cfg = tmp.path().join("config.json");
    fs::write(
        &cfg,
        r#"{"resourceList": [{"resourceName": "vf", "selectors": {"devices": ["10ca"]}}]}"#,
    )
    .unwrap();
    let kdir = tmp.path().join("device-plugins");
    let mut kubelet = FakeKubelet::start(&kdir);
    let d = Daemon::start(
        &root,
        &cfg,
        &kdir,
        &tmp.path().join("state"),
        &["--no-annotate"],
    );
    let reg = kubelet.next_registration(Duration::from_secs(10)).await;
    let mut client =
        DevicePluginClient::new(connect_unix(&kdir.join(&reg.endpoint)).await.unwrap());
    let mut stream = client.list_and_watch(Empty {}).await.unwrap().into_inner();
    let first = stream.message().await.unwrap().unwrap();
    assert_eq!(first.devices.len(), 256);

    // Settle, then measure idle.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let hz = 100.0; // USER_HZ on Linux
    let (t0, c0, n0) = (Instant::now(), cpu_ticks(d.pid()), cpu_ns(d.pid()));
    tokio::time::sleep(Duration::from_secs(4)).await;
    let (secs, ticks) = (t0.elapsed().as_secs_f64(), cpu_ticks(d.pid()) - c0);
    let cpu_pct = match (n0, cpu_ns(d.pid())) {
        (Some(a), Some(b)) => (b - a) as f64 / 1e9 / secs * 100.0,
        _ => ticks as f64 / hz / secs * 100.0,
    };
    let hwm = status_kib(d.pid(), "VmHWM:");
    let rss = status_kib(d.pid(), "VmRSS:");
    let threads = status_kib(d.pid(), "Threads:");
    println!(
        "dpdk-cni-node, 256 VFs: VmHWM {:.1} MiB, VmRSS {:.1} MiB, threads {threads}, idle CPU {cpu_pct:.3}% (utime+stime {ticks} ticks in {secs:.1}s)",
        hwm as f64 / 1024.0,
        rss as f64 / 1024.0
    );
    assert!(hwm < 20 * 1024, "VmHWM {hwm} KiB");
    assert!(cpu_pct < 2.0, "idle CPU {cpu_pct:.2}%");
    // Still serving.
    let opts = client
        .get_device_plugin_options(Empty {})
        .await
        .unwrap()
        .into_inner();
    assert!(opts.get_preferred_allocation_available);
}
