//! Kernel mode, whole process, side by side in one run: dpdk-cni moving a
//! VF netdev into a pod and back (`deviceType: netdevice`, ADD+DEL) against
//! Debian's `host-device` plugin moving the same kind of link the same way.
//!
//! Root only: the bench enters a network namespace of its own playing the
//! node, with a veth end standing in for the VF netdev, and a pod namespace.
//! The summary (medians of interleaved rounds, ratio) is printed and written
//! to `target/bench-summary/netdevice.json`.

use std::io::Write;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use dpdk_cni_benches::{plugin_bin, write_summary};
use netlink::RecordingNetlink;
use serde_json::json;
use vfio::fake::FakeNode;

const HOST_DEVICE: &str = "/usr/lib/cni/host-device";

fn ip(args: &[&str]) {
    assert!(
        Command::new("ip").args(args).status().unwrap().success(),
        "ip {args:?}"
    );
}

struct Bed {
    _mem: tempfile::TempDir,
    _disk: tempfile::TempDir,
    host_ns: String,
    pod_ns: String,
    env: Vec<(String, String)>,
    ours: Vec<u8>,
    theirs: Vec<u8>,
    bin: PathBuf,
}

impl Bed {
    fn new() -> Bed {
        let pid = std::process::id();
        let (host_ns, pod_ns) = (format!("bench-node-{pid}"), format!("bench-pod-{pid}"));
        ip(&["netns", "add", &host_ns]);
        ip(&["netns", "add", &pod_ns]);
        ip(&[
            "-n", &host_ns, "link", "add", "ens1f0v0", "type", "veth", "peer", "name", "ens1f0v1",
        ]);
        // The far end up: the "VF" has carrier, as on a NIC whose PF is up.
        ip(&["-n", &host_ns, "link", "set", "ens1f0v1", "up"]);
        // From here on this process and its children live in the node namespace.
        let f = std::fs::File::open(format!("/var/run/netns/{host_ns}")).unwrap();
        nix::sched::setns(f.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET).unwrap();

        let mem = tempfile::tempdir_in("/dev/shm").unwrap();
        let disk = tempfile::tempdir().unwrap();
        let node = FakeNode::new(mem.path().join("node")).unwrap();
        dpdk_cni_benches::state_on_disk(&mem.path().join("node"), disk.path());
        let pf = node
            .add_pf("0000:3b:00.0".parse().unwrap(), "ens1f0", 2, 8, 0, 100)
            .unwrap();
        let nl = mem.path().join("netlink");
        RecordingNetlink::create(&nl, &[("ens1f0", 2)]).unwrap();
        let ours = json!({"cniVersion": "1.0.0", "name": "kernel", "type": "dpdk-cni",
            "deviceType": "netdevice", "deviceID": pf.vfs[0].to_string()});
        let theirs = json!({"cniVersion": "1.0.0", "name": "kernel", "type": "host-device", "device": "ens1f0v0"});
        let env = vec![
            ("CNI_CONTAINERID".into(), "bench".into()),
            ("CNI_IFNAME".into(), "net1".into()),
            ("CNI_NETNS".into(), format!("/var/run/netns/{pod_ns}")),
            ("CNI_PATH".into(), "/usr/lib/cni".into()),
            (
                "DPDK_CNI_FAKE_ROOT".into(),
                mem.path().join("node").display().to_string(),
            ),
            ("DPDK_CNI_FAKE_NETLINK".into(), nl.display().to_string()),
        ];
        Bed {
            _mem: mem,
            _disk: disk,
            host_ns,
            pod_ns,
            env,
            ours: serde_json::to_vec(&ours).unwrap(),
            theirs: serde_json::to_vec(&theirs).unwrap(),
            bin: plugin_bin(),
        }
    }

    fn exec(&self, bin: &Path, cmd: &str, stdin: &[u8]) {
        let mut child = Command::new(bin)
            .env_clear()
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .env("CNI_COMMAND", cmd)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(stdin).unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{} {cmd}: {} {}",
            bin.display(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn ours(&self) {
        self.exec(&self.bin, "ADD", &self.ours);
        self.exec(&self.bin, "DEL", &self.ours);
    }

    fn theirs(&self) {
        self.exec(Path::new(HOST_DEVICE), "ADD", &self.theirs);
        self.exec(Path::new(HOST_DEVICE), "DEL", &self.theirs);
    }
}

impl Drop for Bed {
    fn drop(&mut self) {
        for ns in [&self.pod_ns, &self.host_ns] {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn bench(c: &mut Criterion) {
    if !nix::unistd::Uid::effective().is_root() || !Path::new(HOST_DEVICE).exists() {
        panic!("the netdevice bench needs root and {HOST_DEVICE} (make deps installs it)");
    }
    let bed = Bed::new();
    let mut g = c.benchmark_group("netdevice_add_del");
    g.bench_function("dpdk-cni netdevice", |b| b.iter(|| bed.ours()));
    g.bench_function("host-device", |b| b.iter(|| bed.theirs()));
    g.finish();

    let rounds: usize = std::env::var("BENCH_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(100);
    let (mut ours, mut theirs) = (vec![], vec![]);
    let (mut ours_add, mut theirs_add) = (vec![], vec![]);
    let time = |bin: &Path, conf: &[u8], adds: &mut Vec<Duration>, cycles: &mut Vec<Duration>| {
        let t = Instant::now();
        bed.exec(bin, "ADD", conf);
        adds.push(t.elapsed());
        bed.exec(bin, "DEL", conf);
        cycles.push(t.elapsed());
    };
    for round in 0..rounds {
        // Alternate who goes first, so neither always follows the other's teardown.
        if round % 2 == 0 {
            time(&bed.bin, &bed.ours, &mut ours_add, &mut ours);
            time(
                Path::new(HOST_DEVICE),
                &bed.theirs,
                &mut theirs_add,
                &mut theirs,
            );
        } else {
            time(
                Path::new(HOST_DEVICE),
                &bed.theirs,
                &mut theirs_add,
                &mut theirs,
            );
            time(&bed.bin, &bed.ours, &mut ours_add, &mut ours);
        }
    }
    let dels = |cycles: &[Duration], adds: &[Duration]| -> Vec<Duration> {
        cycles.iter().zip(adds).map(|(c, a)| *c - *a).collect()
    };
    let (od, td) = (
        median(dels(&ours, &ours_add)),
        median(dels(&theirs, &theirs_add)),
    );
    let (oa, ta) = (median(ours_add), median(theirs_add));
    let (o, t) = (median(ours), median(theirs));
    let ratio = o.as_secs_f64() / t.as_secs_f64();
    println!("\nsummary (medians of {rounds} interleaved rounds, ADD+DEL moving a netdev into a pod and back):");
    println!("  dpdk-cni netdevice   {:>8.3} ms", o.as_secs_f64() * 1e3);
    println!("  host-device          {:>8.3} ms", t.as_secs_f64() * 1e3);
    println!("  ratio                {ratio:>8.2}      (target <= 0.8)");
    for (what, o, t) in [("ADD", oa, ta), ("DEL", od, td)] {
        println!(
            "  {what} alone: dpdk-cni {:.3} ms, host-device {:.3} ms: {:.2}x",
            o.as_secs_f64() * 1e3,
            t.as_secs_f64() * 1e3,
            o.as_secs_f64() / t.as_secs_f64()
        );
    }
    let s = json!({"rounds": rounds, "dpdk_cni_median_us": o.as_micros(), "host_device_median_us": t.as_micros(),
        "dpdk_cni_add_median_us": oa.as_micros(), "host_device_add_median_us": ta.as_micros(),
        "dpdk_cni_del_median_us": od.as_micros(), "host_device_del_median_us": td.as_micros(), "ratio": ratio});
    write_summary("netdevice", &s);
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(30).measurement_time(Duration::from_secs(4)).warm_up_time(Duration::from_secs(1));
    targets = bench
}
criterion_main!(benches);
