//! The plugin binary as a runtime runs it: a whole ADD+DEL cycle on a fake
//! node (emulated sysfs, recording netlink), side by side with the exec of
//! a trivial binary, and ADD on a PF with 8 VFs against one with 256.
//!
//! Besides criterion's report, a summary with medians of interleaved runs,
//! the ratios and the plugin's peak RSS is printed and written to
//! `target/bench-summary/plugin.json`.
//!
//! The plugin is the static release build with the test hooks (`make plugin-hooks`):
//! `DPDK_CNI_BIN`, or `target/x86_64-unknown-linux-gnu/release/dpdk-cni-hooks`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use dpdk_cni_benches::{plugin_bin, run_on_fake_node, write_summary};
use netlink::RecordingNetlink;
use serde_json::{json, Value};
use vfio::fake::FakeNode;

/// A fake node with one PF of `numvfs` VFs, ready for ADD on VF 1.
///
/// The fake sysfs and the fake PF driver's state live on tmpfs, as sysfs and
/// the kernel's VF state live in memory on a node; the state directory is on
/// the disk, as `/var/lib/cni` is, so its fsync is paid as on a node.
struct Bed {
    _tmp: tempfile::TempDir,
    _mem: tempfile::TempDir,
    root: PathBuf,
    netlink: PathBuf,
    conf: Vec<u8>,
    bin: PathBuf,
}

impl Bed {
    fn new(numvfs: u32) -> Bed {
        let tmp = tempfile::tempdir().unwrap();
        let mem = tempfile::tempdir_in("/dev/shm").unwrap();
        let root = mem.path().join("node");
        let node = FakeNode::new(&root).unwrap();
        let pf = node
            .add_pf(
                "0000:3b:00.0".parse().unwrap(),
                "ens2f0",
                numvfs,
                numvfs,
                0,
                100,
            )
            .unwrap();
        std::fs::create_dir_all(root.join(dpdk_cni::paths::DEFAULT_DEVINFO_SUBDIR)).unwrap();
        dpdk_cni_benches::state_on_disk(&root, tmp.path());
        let netlink = mem.path().join("netlink");
        RecordingNetlink::create(&netlink, &[("ens2f0", numvfs)]).unwrap();
        let conf = json!({
            "cniVersion": "1.1.0", "name": "sriov-dpdk", "type": "dpdk-cni",
            "deviceType": "vfio-pci", "deviceID": pf.vfs[1].to_string(),
            "vlan": 100, "mac": "02:00:00:00:00:10", "spoofchk": "off", "trust": "on",
        });
        Bed {
            root,
            netlink,
            conf: serde_json::to_vec(&conf).unwrap(),
            bin: plugin_bin(),
            _tmp: tmp,
            _mem: mem,
        }
    }

    fn exec(&self, bin: &Path, cmd: &str) -> Value {
        let out = run_on_fake_node(bin, cmd, "bench", &self.root, &self.netlink, &self.conf);
        assert!(
            out.status.success(),
            "{bin:?} {cmd}: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        serde_json::from_slice(&out.stdout).unwrap_or(Value::Null)
    }

    fn add(&self) {
        let r = self.exec(&self.bin, "ADD");
        assert_eq!(r["interfaces"][0]["pciID"].as_str().map(str::len), Some(12));
    }

    fn del(&self) {
        self.exec(&self.bin, "DEL");
    }

    /// The plugin's peak RSS for one command, from GNU time's `%M`.
    ///
    /// Measured through a small forking parent because the `ru_maxrss` of a
    /// child spawned with vfork (as std does) includes the parent's memory.
    fn peak_rss_kib(&self, cmd: &str) -> u64 {
        let out_file = self._tmp.path().join(format!("rss-{cmd}"));
        let mut child = Command::new("/usr/bin/time")
            .arg("-f")
            .arg("%M")
            .arg("-o")
            .arg(&out_file)
            .arg(&self.bin)
            .env_clear()
            .env("CNI_COMMAND", cmd)
            .env("CNI_CONTAINERID", "bench")
            .env("CNI_IFNAME", "net1")
            .env("CNI_NETNS", "/var/run/netns/bench")
            .env("DPDK_CNI_FAKE_ROOT", &self.root)
            .env("DPDK_CNI_FAKE_NETLINK", &self.netlink)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .expect("GNU time (apt-get install time)");
        child.stdin.take().unwrap().write_all(&self.conf).unwrap();
        assert!(child.wait().unwrap().success());
        std::fs::read_to_string(out_file)
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    }

    /// The same two process starts with the same env and stdin, doing nothing.
    fn trivial_pair(&self) {
        self.exec(Path::new("/bin/true"), "ADD");
        self.exec(Path::new("/bin/true"), "DEL");
    }
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn bench(c: &mut Criterion) {
    let small = Bed::new(8);
    let large = Bed::new(256);

    let mut g = c.benchmark_group("add_del");
    g.bench_function("dpdk-cni ADD+DEL (8 VFs)", |b| {
        b.iter(|| {
            small.add();
            small.del();
        })
    });
    g.bench_function("trivial exec x2", |b| b.iter(|| small.trivial_pair()));
    g.finish();

    let mut g = c.benchmark_group("add_scaling");
    for (name, bed) in [
        ("ADD, PF with 8 VFs", &small),
        ("ADD, PF with 256 VFs", &large),
    ] {
        g.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let t = Instant::now();
                    bed.add();
                    total += t.elapsed();
                    bed.del();
                }
                total
            })
        });
    }
    g.finish();

    summary(&small, &large);
}

/// Interleaved runs of every variant, medians and ratios, peak RSS.
fn summary(small: &Bed, large: &Bed) {
    let rounds: usize = std::env::var("BENCH_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(200);
    let (mut cycle, mut trivial, mut add8, mut add256) = (vec![], vec![], vec![], vec![]);
    for _ in 0..rounds {
        let t = Instant::now();
        small.add();
        let a = t.elapsed();
        small.del();
        cycle.push(t.elapsed());
        add8.push(a);
        let t = Instant::now();
        small.trivial_pair();
        trivial.push(t.elapsed());
        let t = Instant::now();
        large.add();
        add256.push(t.elapsed());
        large.del();
    }
    let rss_kib = small.peak_rss_kib("ADD").max(small.peak_rss_kib("DEL"));
    let (c, t, a8, a256) = (median(cycle), median(trivial), median(add8), median(add256));
    let s = json!({
        "rounds": rounds,
        "add_del_median_us": c.as_micros(),
        "trivial_exec_x2_median_us": t.as_micros(),
        "plugin_over_trivial": c.as_secs_f64() / t.as_secs_f64(),
        "add_8vfs_median_us": a8.as_micros(),
        "add_256vfs_median_us": a256.as_micros(),
        "add_256_over_8": a256.as_secs_f64() / a8.as_secs_f64(),
        "peak_rss_kib": rss_kib,
    });
    println!("\nsummary (medians of {rounds} interleaved rounds):");
    println!(
        "  ADD+DEL              {:>8.3} ms   (target < 2 ms)",
        c.as_secs_f64() * 1e3
    );
    println!("  trivial exec x2      {:>8.3} ms", t.as_secs_f64() * 1e3);
    println!(
        "  ratio                {:>8.2}      (target <= 4)",
        s["plugin_over_trivial"].as_f64().unwrap()
    );
    println!("  ADD, 8 VFs           {:>8.3} ms", a8.as_secs_f64() * 1e3);
    println!(
        "  ADD, 256 VFs         {:>8.3} ms",
        a256.as_secs_f64() * 1e3
    );
    println!(
        "  ratio 256/8          {:>8.2}      (target <= 1.2)",
        s["add_256_over_8"].as_f64().unwrap()
    );
    println!("  peak RSS             {:>8} KiB (target < 8192)", rss_kib);
    write_summary("plugin", &s);
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(50).measurement_time(Duration::from_secs(5)).warm_up_time(Duration::from_secs(1));
    targets = bench
}
criterion_main!(benches);
