//! A fake node for driving the `dpdk-cni` binary the way a runtime does:
//! a sysfs tree answered by an emulated kernel, a recording netlink fake,
//! a state directory, and helpers to run commands and compare node state.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use netlink::RecordingNetlink;
use serde_json::{json, Value};
use vfio::fake::{FakeNode, FakePf};

pub const BIN: &str = env!("CARGO_BIN_EXE_dpdk-cni");

/// The binary under test: this build's, or `DPDK_CNI_TEST_BIN` (to run the
/// same tests against another build, e.g. to see a new test fail on the
/// code before the change it guards).
pub fn bin() -> String {
    std::env::var("DPDK_CNI_TEST_BIN").unwrap_or_else(|_| BIN.to_string())
}

pub struct Bed {
    pub tmp: tempfile::TempDir,
    pub node: FakeNode,
    pub pf: FakePf,
    pub nl: RecordingNetlink,
    pub state_dir: PathBuf,
}

/// What a command printed and how it ended.
#[derive(Debug)]
pub struct Outcome {
    pub code: Option<i32>,
    pub json: Option<Value>,
    pub stdout: String,
    pub stderr: String,
}

impl Outcome {
    pub fn ok(&self) -> bool {
        self.code == Some(0)
    }
    /// The CNI error code, asserting the process failed with an error JSON.
    pub fn err_code(&self) -> u64 {
        assert_ne!(
            self.code,
            Some(0),
            "expected a failure, got {}",
            self.stdout
        );
        let j = self
            .json
            .as_ref()
            .unwrap_or_else(|| panic!("no error JSON: {:?}", self));
        j["code"]
            .as_u64()
            .unwrap_or_else(|| panic!("no code in {j}"))
    }
    pub fn msg(&self) -> String {
        self.json
            .as_ref()
            .and_then(|j| j["msg"].as_str())
            .unwrap_or_default()
            .to_string()
    }
}

/// Everything on the fake node that a command could change.
#[derive(Debug, PartialEq)]
pub struct NodeState {
    pub sysfs: BTreeMap<String, String>,
    pub vfs: Value,
    pub attachments: Vec<String>,
}

impl Bed {
    pub fn new(numvfs: u32) -> Bed {
        require_test_hooks();
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("node");
        let node = FakeNode::new(&root).unwrap();
        let pf = node
            .add_pf(
                "0000:01:00.0".parse().unwrap(),
                "ens1f0",
                numvfs,
                256.max(numvfs),
                0,
                10,
            )
            .unwrap();
        let nl =
            RecordingNetlink::create(tmp.path().join("netlink"), &[("ens1f0", numvfs)]).unwrap();
        // The node's default state directory, below the fake root.
        let state_dir = root.join(ledger::settings::DEFAULT_STATE_DIR);
        std::fs::create_dir_all(&state_dir).unwrap();
        // Multus' device-info directory exists on a node that runs it.
        std::fs::create_dir_all(root.join(dpdk_cni::paths::DEFAULT_DEVINFO_SUBDIR)).unwrap();
        Bed {
            tmp,
            node,
            pf,
            nl,
            state_dir,
        }
    }

    pub fn root(&self) -> &Path {
        self.node.root()
    }

    /// Writes the node's settings file (root-owned, 0644, as on a node).
    pub fn settings(&self, s: Value) {
        use std::os::unix::fs::PermissionsExt;
        let p = self.root().join(ledger::settings::SETTINGS_FILE);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, serde_json::to_vec(&s).unwrap()).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
    }

    pub fn vf(&self, i: usize) -> String {
        self.pf.vfs[i].to_string()
    }

    /// A netconf for VF `i` with our state dir, overlaid with `extra`.
    pub fn conf(&self, i: usize, extra: Value) -> Value {
        let mut c = json!({
            "cniVersion": "1.1.0",
            "name": "sriov-dpdk",
            "type": "dpdk-cni",
            "deviceType": "vfio-pci",
            "deviceID": self.vf(i),
        });
        if let (Some(o), Some(e)) = (c.as_object_mut(), extra.as_object()) {
            for (k, v) in e {
                if v.is_null() {
                    o.remove(k);
                } else {
                    o.insert(k.clone(), v.clone());
                }
            }
        }
        c
    }

    pub fn command(
        &self,
        cmd: &str,
        container: &str,
        ifname: &str,
        env: &[(&str, &str)],
    ) -> Command {
        let mut c = Command::new(bin());
        c.env_clear()
            .env("CNI_COMMAND", cmd)
            .env("CNI_CONTAINERID", container)
            .env("CNI_IFNAME", ifname)
            .env("CNI_NETNS", format!("/var/run/netns/{container}"))
            .env("CNI_PATH", "/usr/lib/cni")
            .env("DPDK_CNI_FAKE_ROOT", self.root())
            .env("DPDK_CNI_FAKE_NETLINK", self.nl.path());
        for (k, v) in env {
            c.env(k, v);
        }
        c
    }

    pub fn run_with(
        &self,
        cmd: &str,
        container: &str,
        ifname: &str,
        conf: &Value,
        env: &[(&str, &str)],
    ) -> Outcome {
        let c = self.command(cmd, container, ifname, env);
        run_process(c, conf.to_string().as_bytes())
    }

    pub fn run(&self, cmd: &str, container: &str, conf: &Value) -> Outcome {
        self.run_with(cmd, container, "net1", conf, &[])
    }

    pub fn state(&self) -> NodeState {
        let mut attachments = Vec::new();
        collect_files(&self.state_dir, &self.state_dir, &mut attachments);
        // The ledger lives below the fake root too; its files are compared
        // as `attachments` (its directories and locks do not count).
        let ledger = self
            .state_dir
            .strip_prefix(self.root())
            .unwrap()
            .to_path_buf();
        let mut sysfs = self.node.snapshot();
        sysfs.retain(|k, _| !std::path::Path::new(k).starts_with(&ledger));
        NodeState {
            sysfs,
            vfs: serde_json::to_value(self.nl.load().unwrap()).unwrap(),
            attachments,
        }
    }

    /// What the node daemon's no-IOMMU Allocate does to VF `i`: records the
    /// driver it had, then binds it to vfio-pci.
    pub fn prebind(&self, i: usize, first_driver: &str) {
        ledger::Ledger::new(&self.state_dir)
            .set_prebound(
                self.pf.vfs[i],
                &ledger::Prebound {
                    driver: Some(first_driver.into()),
                    driver_override: None,
                },
            )
            .unwrap();
        vfio::fake::emulated(self.root())
            .bind_driver(self.pf.vfs[i], "vfio-pci", Default::default())
            .unwrap();
    }

    pub fn driver(&self, i: usize) -> Option<String> {
        self.node
            .sysfs()
            .device(self.pf.vfs[i])
            .unwrap()
            .driver()
            .unwrap()
    }
}

/// Files that record attachments or claims (locks and probes do not count).
fn collect_files(root: &Path, dir: &Path, out: &mut Vec<String>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let p = e.path();
        if p.is_dir() {
            if p.file_name().is_some_and(|n| n == "locks") {
                continue;
            }
            collect_files(root, &p, out);
        } else {
            out.push(p.strip_prefix(root).unwrap().display().to_string());
        }
    }
    out.sort();
}

pub fn run_process(mut c: Command, stdin: &[u8]) -> Outcome {
    let mut child = c
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    let out: Output = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    Outcome {
        code: out.status.code(),
        json: serde_json::from_str(stdout.trim()).ok(),
        stdout,
        stderr: String::from_utf8_lossy(&out.stderr).to_string(),
    }
}

/// Asserts two node states are equal, naming only what differs.
#[track_caller]
pub fn assert_same(before: &NodeState, after: &NodeState) {
    let mut diffs = Vec::new();
    for (k, v) in &before.sysfs {
        match after.sysfs.get(k) {
            None => diffs.push(format!("removed {k} ({v:?})")),
            Some(w) if w != v => diffs.push(format!("changed {k}: {v:?} -> {w:?}")),
            _ => {}
        }
    }
    for (k, v) in &after.sysfs {
        if !before.sysfs.contains_key(k) {
            diffs.push(format!("added {k} ({v:?})"));
        }
    }
    if before.vfs != after.vfs {
        diffs.push(format!("VF state {} -> {}", before.vfs, after.vfs));
    }
    if before.attachments != after.attachments {
        diffs.push(format!(
            "state dir {:?} -> {:?}",
            before.attachments, after.attachments
        ));
    }
    assert!(diffs.is_empty(), "node changed:\n  {}", diffs.join("\n  "));
}

/// These tests drive the binary's fakes, which only the test-hooks build has.
#[cfg(feature = "test-hooks")]
fn require_test_hooks() {}

#[cfg(not(feature = "test-hooks"))]
fn require_test_hooks() {
    panic!(
        "these tests drive the test-hooks build of dpdk-cni: cargo test -p dpdk-cni --features test-hooks (make unit-test)"
    );
}
