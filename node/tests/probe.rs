//! `dpdk-cni-node probe`, the DaemonSet's liveness and readiness checks,
//! against the daemon on a fake node: it passes while every pool's plugin
//! answers and fails when the daemon is stopped, killed, or not serving a
//! pool of the config.

mod common;

use std::fs;
use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use common::{daemon_bin, two_pf_node, Daemon, FakeKubelet};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

const CONFIG: &str = r#"{"resourceList": [
  {"resourceName": "a", "selectors": {"pfNames": ["ens1f0"]}},
  {"resourceName": "b", "selectors": {"pfNames": ["ens2f0"]}}
]}"#;

fn probe(cfg: &Path, kdir: &Path, extra: &[&str]) -> Output {
    Command::new(daemon_bin())
        .arg("probe")
        .arg("--config")
        .arg(cfg)
        .arg("--kubelet-dir")
        .arg(kdir)
        .args(["--timeout-ms", "700"])
        .args(extra)
        .output()
        .unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "status {:?}; stdout {}; stderr {}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[tokio::test(flavor = "current_thread")]
async fn probe_passes_while_the_plugins_answer_and_fails_when_they_do_not() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    let _node = two_pf_node(&root, 2);
    let cfg = tmp.path().join("config.json");
    fs::write(&cfg, CONFIG).unwrap();
    let kdir = tmp.path().join("device-plugins");

    // Nothing serves yet: both fail, naming the missing socket.
    fs::create_dir_all(&kdir).unwrap();
    let o = probe(&cfg, &kdir, &[]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        text(&o).contains("dpdk-cni-intel.com_a.sock does not exist"),
        "{}",
        text(&o)
    );

    let mut kubelet = FakeKubelet::start(&kdir);
    let mut d = Daemon::start(
        &root,
        &cfg,
        &kdir,
        &tmp.path().join("state"),
        &["--no-annotate"],
    );
    for _ in 0..2 {
        kubelet.next_registration(Duration::from_secs(10)).await;
    }
    let o = probe(&cfg, &kdir, &[]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout)
            .contains("alive: 2 plugin(s) answer: intel.com/a, intel.com/b"),
        "{}",
        text(&o)
    );
    let o = probe(&cfg, &kdir, &["--ready"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).starts_with("ready: 2"),
        "{}",
        text(&o)
    );

    // A pool the daemon does not serve (another config): fails.
    let other = tmp.path().join("other.json");
    fs::write(
        &other,
        r#"{"resourceList": [{"resourceName": "c", "selectors": {"pfNames": ["ens1f0"]}}]}"#,
    )
    .unwrap();
    let o = probe(&other, &kdir, &[]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("intel.com/c"), "{}", text(&o));

    // A config that does not read: not ready, but alive while the sockets
    // present answer (a restart would not fix the file).
    let broken = tmp.path().join("broken.json");
    fs::write(&broken, "{not json").unwrap();
    let o = probe(&broken, &kdir, &["--ready"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("not ready"), "{}", text(&o));
    let o = probe(&broken, &kdir, &[]);
    assert!(o.status.success(), "{}", text(&o));

    // The daemon stops answering (SIGSTOP): liveness fails within its timeout.
    let pid = Pid::from_raw(d.pid() as i32);
    kill(pid, Signal::SIGSTOP).unwrap();
    let o = probe(&cfg, &kdir, &[]);
    kill(pid, Signal::SIGCONT).unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("no answer within 700 ms"), "{}", text(&o));
    let o = probe(&cfg, &kdir, &[]);
    assert!(o.status.success(), "after SIGCONT: {}", text(&o));

    // Killed: its sockets stay behind and nobody answers.
    d.child.kill().unwrap();
    d.child.wait().unwrap();
    assert!(kdir.join("dpdk-cni-intel.com_a.sock").exists());
    let o = probe(&cfg, &kdir, &[]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("connecting"), "{}", text(&o));
}
