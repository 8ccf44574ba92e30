//! Kernel mode, whole process, side by side in one run: dpdk-cni moving a
//! VF netdev into a pod and back (`deviceType: netdevice`, ADD+DEL) against
//! Debian's `host-device` plugin moving the same kind of link the same way.
//!
//! Root only: the bench enters a network namespace of its own playing the
//! node, with a veth end standing in for the VF netdev, and a pod namespace.
//! The summary (medians of interleaved rounds, ratio) is printed and written
//! to `target/bench-summary/netdevice.json`, with where the time goes: each
//! plugin process's CPU time, and the kernel moving the same link between
//! the same namespaces with no plugin at all (every ADD and every DEL moves
//! it once, and the kernel waits for RCU grace periods in each move).

use std::io::Write;
use std::os::fd::{AsFd, AsRawFd};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use dpdk_cni_benches::{plugin_bin, write_summary};
use netlink::netns::in_netns;
use netlink::{RecordingNetlink, RtNetlink};
use nix::sys::resource::{getrusage, UsageWho};
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

    /// Runs one command; returns the CPU time (user + system) its process used.
    fn exec(&self, bin: &Path, cmd: &str, stdin: &[u8]) -> Duration {
        let before = children_cpu();
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
        children_cpu().saturating_sub(before)
    }

    /// What every ADD and DEL of either plugin makes the kernel do, done by
    /// the bench itself: the link into the pod, up and down there (as a pod
    /// uses it), and back. Returns the two moves' times.
    fn bare_moves(&self, nl: &RtNetlink) -> (Duration, Duration) {
        let pod = std::fs::File::open(format!("/var/run/netns/{}", self.pod_ns)).unwrap();
        let node = std::fs::File::open(format!("/var/run/netns/{}", self.host_ns)).unwrap();
        let link = nl
            .link_by_name(BARE_LINK)
            .unwrap()
            .expect("the bench's link");
        let t = Instant::now();
        nl.move_link_to_netns(&link, pod.as_raw_fd()).unwrap();
        let into = t.elapsed();
        let fd = node.as_raw_fd();
        let back = in_netns(
            Path::new(&format!("/var/run/netns/{}", self.pod_ns)),
            move || {
                let nl = RtNetlink::connect().unwrap();
                let link = nl.link_by_name(BARE_LINK).unwrap().expect("moved in");
                nl.set_link_up(&link, true).unwrap();
                nl.set_link_up(&link, false).unwrap();
                let t = Instant::now();
                nl.move_link_to_netns(&link, fd).unwrap();
                t.elapsed()
            },
        )
        .unwrap();
        drop(node);
        (into, back)
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

/// The link both plugins move (host-device by this name, dpdk-cni as the
/// fake VF's netdev).
const BARE_LINK: &str = "ens1f0v0";

/// CPU time (user + system) of the bench's reaped children so far.
fn children_cpu() -> Duration {
    let u = getrusage(UsageWho::RUSAGE_CHILDREN).unwrap();
    let tv = |t: nix::sys::time::TimeVal| {
        Duration::from_secs(t.tv_sec() as u64) + Duration::from_micros(t.tv_usec() as u64)
    };
    tv(u.user_time()) + tv(u.system_time())
}

impl Drop for Bed {
    fn drop(&mut self) {
        for ns in [&self.pod_ns, &self.host_ns] {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

/// One plugin's rounds: wall and CPU time of each ADD and each DEL.
#[derive(Default)]
struct Runs {
    add: Vec<Duration>,
    del: Vec<Duration>,
    add_cpu: Vec<Duration>,
    del_cpu: Vec<Duration>,
}

impl Runs {
    /// The median of ADD+DEL.
    fn cycle(&self) -> Duration {
        median(
            self.add
                .iter()
                .zip(&self.del)
                .map(|(a, d)| *a + *d)
                .collect(),
        )
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
    let (mut ours, mut theirs) = (Runs::default(), Runs::default());
    let (mut into, mut back) = (vec![], vec![]);
    let nl = RtNetlink::connect().unwrap();
    let time = |bin: &Path, conf: &[u8], runs: &mut Runs| {
        let t = Instant::now();
        runs.add_cpu.push(bed.exec(bin, "ADD", conf));
        runs.add.push(t.elapsed());
        let t = Instant::now();
        runs.del_cpu.push(bed.exec(bin, "DEL", conf));
        runs.del.push(t.elapsed());
    };
    for round in 0..rounds {
        // Rotate who goes first, so none always follows the same teardown.
        for turn in 0..3 {
            match (round + turn) % 3 {
                0 => time(&bed.bin, &bed.ours, &mut ours),
                1 => time(Path::new(HOST_DEVICE), &bed.theirs, &mut theirs),
                _ => {
                    let (i, b) = bed.bare_moves(&nl);
                    into.push(i);
                    back.push(b);
                }
            }
        }
    }
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let (o, t) = (ours.cycle(), theirs.cycle());
    let ratio = ms(o) / ms(t);
    println!("\nsummary (medians of {rounds} interleaved rounds, ADD+DEL moving a netdev into a pod and back):");
    println!("  dpdk-cni netdevice   {:>8.3} ms", ms(o));
    println!("  host-device          {:>8.3} ms", ms(t));
    println!("  ratio                {ratio:>8.2}      (target <= 0.8)");
    let (oa, ta, od, td) = (
        median(ours.add.clone()),
        median(theirs.add.clone()),
        median(ours.del.clone()),
        median(theirs.del.clone()),
    );
    for (what, o, t) in [("ADD", oa, ta), ("DEL", od, td)] {
        println!(
            "  {what} alone: dpdk-cni {:.3} ms, host-device {:.3} ms: {:.2}x",
            ms(o),
            ms(t),
            ms(o) / ms(t)
        );
    }
    // Where the time goes.
    let cpu = |v: &[Duration]| ms(median(v.to_vec()));
    let (mi, mb) = (median(into), median(back));
    let wait = |wall: &[Duration], cpu: &[Duration]| {
        ms(median(
            wall.iter()
                .zip(cpu)
                .map(|(w, c)| w.saturating_sub(*c))
                .collect(),
        ))
    };
    println!("  where the time goes (medians):");
    println!(
        "    CPU of the plugin process (user + system): dpdk-cni ADD {:.2} ms, DEL {:.2} ms; host-device ADD {:.2} ms, DEL {:.2} ms",
        cpu(&ours.add_cpu),
        cpu(&ours.del_cpu),
        cpu(&theirs.add_cpu),
        cpu(&theirs.del_cpu)
    );
    println!(
        "    waiting (wall less CPU):                   dpdk-cni ADD {:.2} ms, DEL {:.2} ms; host-device ADD {:.2} ms, DEL {:.2} ms",
        wait(&ours.add, &ours.add_cpu),
        wait(&ours.del, &ours.del_cpu),
        wait(&theirs.add, &theirs.add_cpu),
        wait(&theirs.del, &theirs.del_cpu)
    );
    println!(
        "    the kernel moving the link, no plugin:     into the pod {:.2} ms, back {:.2} ms (every ADD and DEL moves it once)",
        ms(mi),
        ms(mb)
    );
    let s = json!({"rounds": rounds, "dpdk_cni_median_us": o.as_micros(), "host_device_median_us": t.as_micros(),
        "dpdk_cni_add_median_us": oa.as_micros(), "host_device_add_median_us": ta.as_micros(),
        "dpdk_cni_del_median_us": od.as_micros(), "host_device_del_median_us": td.as_micros(), "ratio": ratio,
        "dpdk_cni_add_cpu_median_us": median(ours.add_cpu.clone()).as_micros(),
        "dpdk_cni_del_cpu_median_us": median(ours.del_cpu.clone()).as_micros(),
        "host_device_add_cpu_median_us": median(theirs.add_cpu.clone()).as_micros(),
        "host_device_del_cpu_median_us": median(theirs.del_cpu.clone()).as_micros(),
        "bare_move_into_pod_median_us": mi.as_micros(), "bare_move_back_median_us": mb.as_micros()});
    write_summary("netdevice", &s);
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(30).measurement_time(Duration::from_secs(4)).warm_up_time(Duration::from_secs(1));
    targets = bench
}
criterion_main!(benches);
