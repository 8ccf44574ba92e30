//! What the benches share: finding the plugin binary they measure.

use std::path::{Path, PathBuf};

/// The static release binary with the test hooks (the benches run it on a
/// fake node), as `make plugin-hooks` builds it, or `DPDK_CNI_BIN`.
pub fn plugin_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("DPDK_CNI_BIN") {
        return p.into();
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or(root.join("target"));
    let p = target.join("x86_64-unknown-linux-gnu/release/dpdk-cni-hooks");
    assert!(
        p.exists(),
        "{} is missing: run make plugin-hooks first (make bench does)",
        p.display()
    );
    p
}

/// Puts the fake node's state directory (the default one below its root) on
/// `disk`, so the ledger's fsyncs cost what they cost on a node, while the
/// fake sysfs stays in memory.
pub fn state_on_disk(root: &Path, disk: &Path) {
    let state = root.join("var/lib/cni/dpdk-cni");
    std::fs::create_dir_all(state.parent().unwrap()).unwrap();
    std::fs::create_dir_all(disk.join("state")).unwrap();
    std::os::unix::fs::symlink(disk.join("state"), &state).unwrap();
}

/// Runs `bin` as a runtime runs a CNI plugin on the fake node at `root`
/// (test hooks: DPDK_CNI_FAKE_ROOT, DPDK_CNI_FAKE_NETLINK), container
/// `container` with `net1` in `/var/run/netns/<container>`, `conf` on stdin.
pub fn run_on_fake_node(
    bin: &Path,
    cmd: &str,
    container: &str,
    root: &Path,
    netlink: &Path,
    conf: &[u8],
) -> std::process::Output {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let mut child = Command::new(bin)
        .env_clear()
        .env("CNI_COMMAND", cmd)
        .env("CNI_CONTAINERID", container)
        .env("CNI_IFNAME", "net1")
        .env("CNI_NETNS", format!("/var/run/netns/{container}"))
        .env("CNI_PATH", "/usr/lib/cni")
        .env("DPDK_CNI_FAKE_ROOT", root)
        .env("DPDK_CNI_FAKE_NETLINK", netlink)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    // A trivial binary exits without reading stdin: a broken pipe is fine.
    let _ = child.stdin.take().unwrap().write_all(conf);
    child.wait_with_output().unwrap()
}

/// Writes a bench summary to `target/bench-summary/<name>.json`.
pub fn write_summary(name: &str, summary: &serde_json::Value) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/bench-summary");
    let _ = std::fs::create_dir_all(&dir);
    let _ = std::fs::write(
        dir.join(format!("{name}.json")),
        serde_json::to_vec_pretty(summary).unwrap_or_default(),
    );
}
