//! ADDs in parallel, as a kubelet starting many pods at once makes them: 32
//! ADDs on 32 VFs of one PF with 256 VFs, run 8 at a time, against the same
//! 32 run one by one, in the same run. Nothing wider than one device may be
//! locked, so on 2 cores the parallel batch should take at most 0.6x the
//! serial one.
//!
//! The fake node (emulated sysfs, recording netlink) lives on tmpfs as a
//! node's sysfs and VF state live in memory; the state directory is on disk
//! as `/var/lib/cni` is, so each ADD's durable record (write, fsync, rename,
//! fsync of the directory) is paid as on a node. Besides criterion's report,
//! a summary (medians of interleaved rounds, the ratio) is printed and
//! written to `target/bench-summary/parallel.json`.

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use dpdk_cni_benches::{plugin_bin, run_on_fake_node, write_summary};
use netlink::RecordingNetlink;
use serde_json::json;
use vfio::fake::FakeNode;

const VFS: u32 = 256;
const ADDS: usize = 32;
const AT_ONCE: usize = 8;

struct Bed {
    _disk: tempfile::TempDir,
    _mem: tempfile::TempDir,
    root: PathBuf,
    netlink: PathBuf,
    confs: Vec<Vec<u8>>,
    bin: PathBuf,
}

impl Bed {
    fn new() -> Bed {
        let disk = tempfile::tempdir().unwrap();
        let mem = tempfile::tempdir_in("/dev/shm").unwrap();
        let root = mem.path().join("node");
        let node = FakeNode::new(&root).unwrap();
        let pf = node
            .add_pf("0000:3b:00.0".parse().unwrap(), "ens2f0", VFS, VFS, 0, 100)
            .unwrap();
        std::fs::create_dir_all(root.join(dpdk_cni::paths::DEFAULT_DEVINFO_SUBDIR)).unwrap();
        dpdk_cni_benches::state_on_disk(&root, disk.path());
        let netlink = mem.path().join("netlink");
        RecordingNetlink::create(&netlink, &[("ens2f0", VFS)]).unwrap();
        // Every eighth VF, so the 32 are spread over the PF.
        let confs = (0..ADDS)
            .map(|i| {
                serde_json::to_vec(&json!({
                    "cniVersion": "1.1.0", "name": "sriov-dpdk", "type": "dpdk-cni",
                    "deviceType": "vfio-pci", "deviceID": pf.vfs[i * 8].to_string(),
                    "vlan": 100, "mac": format!("02:00:00:00:01:{i:02x}"),
                    "spoofchk": "off", "trust": "on",
                }))
                .unwrap()
            })
            .collect();
        Bed {
            root,
            netlink,
            confs,
            bin: plugin_bin(),
            _disk: disk,
            _mem: mem,
        }
    }

    fn exec(&self, cmd: &str, i: usize) {
        let out = run_on_fake_node(
            &self.bin,
            cmd,
            &format!("pod{i}"),
            &self.root,
            &self.netlink,
            &self.confs[i],
        );
        assert!(
            out.status.success(),
            "{cmd} pod{i}: {}",
            String::from_utf8_lossy(&out.stdout)
        );
    }

    /// The 32 `cmd`s, `at_once` processes at a time; the wall time.
    fn batch(&self, cmd: &str, at_once: usize) -> Duration {
        let next = AtomicUsize::new(0);
        let t = Instant::now();
        std::thread::scope(|s| {
            for _ in 0..at_once {
                s.spawn(|| loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= ADDS {
                        break;
                    }
                    self.exec(cmd, i);
                });
            }
        });
        t.elapsed()
    }

    /// ADD the 32 `at_once` at a time (timed), then DEL them all (not timed).
    fn adds(&self, at_once: usize) -> Duration {
        let d = self.batch("ADD", at_once);
        self.batch("DEL", AT_ONCE);
        d
    }
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn bench(c: &mut Criterion) {
    let bed = Bed::new();
    let mut g = c.benchmark_group("parallel_add");
    for (name, at_once) in [("32 ADDs one by one", 1), ("32 ADDs, 8 at a time", AT_ONCE)] {
        g.bench_function(name, |b| {
            b.iter_custom(|iters| (0..iters).map(|_| bed.adds(at_once)).sum())
        });
    }
    g.finish();

    let rounds: usize = std::env::var("BENCH_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(30)
        // Each round is 64 ADDs and 64 DELs.
        .clamp(3, 30);
    let (mut serial, mut parallel) = (vec![], vec![]);
    for round in 0..rounds {
        if round % 2 == 0 {
            serial.push(bed.adds(1));
            parallel.push(bed.adds(AT_ONCE));
        } else {
            parallel.push(bed.adds(AT_ONCE));
            serial.push(bed.adds(1));
        }
    }
    let (s, p) = (median(serial), median(parallel));
    let ratio = p.as_secs_f64() / s.as_secs_f64();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "\nsummary (medians of {rounds} interleaved rounds, {ADDS} ADDs on {ADDS} VFs of a PF with {VFS} VFs, {cores} cores):"
    );
    println!("  one by one           {:>8.2} ms", s.as_secs_f64() * 1e3);
    println!(
        "  {AT_ONCE} at a time          {:>8.2} ms",
        p.as_secs_f64() * 1e3
    );
    println!("  ratio                {ratio:>8.2}      (target <= 0.6)");
    write_summary(
        "parallel",
        &json!({"rounds": rounds, "adds": ADDS, "vfs": VFS, "at_once": AT_ONCE, "cores": cores,
                "serial_median_us": s.as_micros(), "parallel_median_us": p.as_micros(), "ratio": ratio}),
    );
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(10).measurement_time(Duration::from_secs(5)).warm_up_time(Duration::from_secs(1));
    targets = bench
}
criterion_main!(benches);
