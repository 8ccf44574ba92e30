//! Test fixtures: a fake node (sysfs tree), a fake kubelet speaking the real
//! Registration API, and the daemon binary run as a DaemonSet would run it.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use dpdk_cni_node::api::registration_server::{Registration, RegistrationServer};
use dpdk_cni_node::api::{Empty, RegisterRequest};
use tokio::net::UnixListener;
use tokio::sync::mpsc;
use tonic::{Request, Response, Status};
use vfio::fake::FakeNode;

/// A fake kubelet's Registration service: passes every request on.
struct Kubelet {
    tx: mpsc::UnboundedSender<RegisterRequest>,
}

#[tonic::async_trait]
impl Registration for Kubelet {
    async fn register(&self, req: Request<RegisterRequest>) -> Result<Response<Empty>, Status> {
        let r = req.into_inner();
        if r.version != "v1beta1" {
            return Err(Status::invalid_argument("unsupported version"));
        }
        let _ = self.tx.send(r);
        Ok(Response::new(Empty {}))
    }
}

/// A kubelet on `<dir>/kubelet.sock`.
pub struct FakeKubelet {
    pub dir: PathBuf,
    task: tokio::task::JoinHandle<()>,
    pub registrations: mpsc::UnboundedReceiver<RegisterRequest>,
}

impl FakeKubelet {
    /// Starts like the kubelet does: removes every socket in the directory first.
    pub fn start(dir: &Path) -> FakeKubelet {
        std::fs::create_dir_all(dir).unwrap();
        for e in std::fs::read_dir(dir).unwrap().flatten() {
            let _ = std::fs::remove_file(e.path());
        }
        let listener = UnixListener::bind(dir.join("kubelet.sock")).unwrap();
        let (tx, rx) = mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            let _ = tonic::transport::Server::builder()
                .add_service(RegistrationServer::new(Kubelet { tx }))
                .serve_with_incoming(tokio_stream::wrappers::UnixListenerStream::new(listener))
                .await;
        });
        FakeKubelet {
            dir: dir.to_path_buf(),
            task,
            registrations: rx,
        }
    }

    pub async fn next_registration(&mut self, within: Duration) -> RegisterRequest {
        tokio::time::timeout(within, self.registrations.recv())
            .await
            .expect("no registration in time")
            .expect("kubelet stopped")
    }

    pub fn stop(self) {
        self.task.abort();
        let _ = std::fs::remove_file(self.dir.join("kubelet.sock"));
    }
}

/// A node with two PFs: `ens1f0` (NUMA 0) and `ens2f0` (NUMA 1), `vfs` VFs each.
pub fn two_pf_node(root: &Path, vfs: u32) -> FakeNode {
    let node = FakeNode::new(root).unwrap();
    node.add_pf(
        "0000:01:00.0".parse().unwrap(),
        "ens1f0",
        vfs,
        vfs.max(8),
        0,
        100,
    )
    .unwrap();
    node.add_pf(
        "0000:81:00.0".parse().unwrap(),
        "ens2f0",
        vfs,
        vfs.max(8),
        1,
        1000,
    )
    .unwrap();
    node.add_driver("pci-stub").unwrap();
    node
}

/// Free 2 MiB hugepages per NUMA node.
pub fn set_free_hugepages(root: &Path, per_node: &[(u32, u64)]) {
    for (n, free) in per_node {
        let d = root.join(format!(
            "sys/devices/system/node/node{n}/hugepages/hugepages-2048kB"
        ));
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("free_hugepages"), format!("{free}\n")).unwrap();
        std::fs::write(d.join("nr_hugepages"), format!("{free}\n")).unwrap();
    }
}

/// The daemon binary (a release build can be measured with DPDK_CNI_NODE_BIN).
pub fn daemon_bin() -> PathBuf {
    std::env::var_os("DPDK_CNI_NODE_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_dpdk-cni-node")))
}

/// The daemon, killed when dropped.
pub struct Daemon {
    pub child: Child,
}

impl Daemon {
    pub fn start(
        root: &Path,
        config: &Path,
        kubelet_dir: &Path,
        state: &Path,
        extra: &[&str],
    ) -> Daemon {
        Daemon::spawn(Daemon::command(root, config, kubelet_dir, state, extra))
    }

    /// The daemon's command line as `start` runs it, to adjust before `spawn`.
    pub fn command(
        root: &Path,
        config: &Path,
        kubelet_dir: &Path,
        state: &Path,
        extra: &[&str],
    ) -> Command {
        let mut cmd = Command::new(daemon_bin());
        daemon_args(&mut cmd, root, config, kubelet_dir, state, extra);
        cmd
    }

    /// The same, run under `umask <mask>` (set by a shell that then execs the daemon).
    pub fn command_with_umask(
        mask: &str,
        root: &Path,
        config: &Path,
        kubelet_dir: &Path,
        state: &Path,
        extra: &[&str],
    ) -> Command {
        let mut cmd = Command::new("sh");
        cmd.arg("-c")
            .arg(format!("umask {mask} && exec \"$0\" \"$@\""))
            .arg(daemon_bin());
        daemon_args(&mut cmd, root, config, kubelet_dir, state, extra);
        cmd
    }

    pub fn spawn(mut cmd: Command) -> Daemon {
        require_test_hooks();
        Daemon {
            child: cmd.spawn().expect("start dpdk-cni-node"),
        }
    }

    /// Starts the daemon with its log (stderr) in `log`.
    pub fn start_logged(
        root: &Path,
        config: &Path,
        kubelet_dir: &Path,
        state: &Path,
        extra: &[&str],
        log: &Path,
    ) -> Daemon {
        let mut cmd = Daemon::command(root, config, kubelet_dir, state, extra);
        cmd.stderr(std::fs::File::create(log).unwrap());
        Daemon::spawn(cmd)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

fn daemon_args(
    cmd: &mut Command,
    root: &Path,
    config: &Path,
    kubelet_dir: &Path,
    state: &Path,
    extra: &[&str],
) {
    cmd.arg("--sysfs-root")
        .arg(root)
        .arg("run")
        .arg("--config")
        .arg(config)
        .arg("--kubelet-dir")
        .arg(kubelet_dir)
        .arg("--state-dir")
        .arg(state)
        .arg("--emulated-kernel")
        .args(extra)
        .env_remove("KUBERNETES_SERVICE_HOST")
        .env_remove("NODE_NAME")
        .stdin(Stdio::null());
    if std::env::var_os("DPDK_CNI_NODE_QUIET").is_some() {
        cmd.stderr(Stdio::null());
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits until a line of the log file contains every one of `needles`;
/// returns that line.
pub fn wait_for_log(log: &Path, needles: &[&str], within: Duration) -> String {
    let start = Instant::now();
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if let Some(l) = text.lines().find(|l| needles.iter().all(|n| l.contains(n))) {
            return l.to_string();
        }
        assert!(
            start.elapsed() < within,
            "timed out waiting for a line with {needles:?} in the daemon's log:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits until `f` is true.
pub fn wait_for(what: &str, within: Duration, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < within, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// These tests drive the binary's fakes, which only the test-hooks build has.
#[cfg(feature = "test-hooks")]
fn require_test_hooks() {}

#[cfg(not(feature = "test-hooks"))]
fn require_test_hooks() {
    panic!(
        "these tests drive the test-hooks build of dpdk-cni-node: cargo test -p dpdk-cni-node --features test-hooks (make unit-test)"
    );
}
