//! The fake kubelet of `examples/kubelet-sim.rs` (used by the QEMU scenario
//! `tests/vm/scenarios/node.sh`) against the daemon on a fake node: its JSON
//! lines, and its errors.
//!
//! `cargo test -p dpdk-cni-node` builds the example next to the test
//! binaries (`target/<profile>/examples/`); `KUBELET_SIM_BIN` names another.

mod common;

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{two_pf_node, wait_for, Daemon};
use serde_json::Value;

fn sim_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("KUBELET_SIM_BIN") {
        return PathBuf::from(p);
    }
    // target/<profile>/deps/<this test> -> target/<profile>/examples/kubelet-sim
    let exe = std::env::current_exe().unwrap();
    let p = exe
        .parent()
        .and_then(Path::parent)
        .unwrap()
        .join("examples/kubelet-sim");
    assert!(
        p.exists(),
        "{} is missing: cargo build -p dpdk-cni-node --examples",
        p.display()
    );
    p
}

/// The JSON lines, by their "rpc".
fn lines(stdout: &[u8]) -> HashMap<String, Value> {
    String::from_utf8_lossy(stdout)
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"));
            (v["rpc"].as_str().unwrap().to_string(), v)
        })
        .collect()
}

#[test]
fn registration_list_preferred_and_allocate_as_json_lines() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    let node = two_pf_node(&root, 2);
    let cfg = tmp.path().join("config.json");
    fs::write(
        &cfg,
        r#"{"resourceList": [{"resourceName": "vf", "selectors": {"pfNames": ["ens2f0"], "drivers": ["igbvf", "vfio-pci"]},
            "hugepages": {"pageSize": "2Mi"}}]}"#,
    )
    .unwrap();
    let kdir = tmp.path().join("device-plugins");
    fs::create_dir_all(&kdir).unwrap();
    // A kubelet.sock left behind by a kubelet that died: removed, not fatal.
    drop(std::os::unix::net::UnixListener::bind(kdir.join("kubelet.sock")).unwrap());

    let sim = Command::new(sim_bin())
        .arg("--dir")
        .arg(&kdir)
        .args([
            "--resource",
            "intel.com/vf",
            "--allocate",
            "1",
            "--timeout",
            "30",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The new kubelet.sock accepts connections once the sim serves it.
    wait_for("kubelet-sim to listen", Duration::from_secs(10), || {
        std::os::unix::net::UnixStream::connect(kdir.join("kubelet.sock")).is_ok()
    });
    let _d = Daemon::start(
        &root,
        &cfg,
        &kdir,
        &tmp.path().join("state"),
        &["--no-annotate"],
    );
    let out = sim.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let l = lines(&out.stdout);

    let reg = &l["Register"]["request"];
    assert_eq!(reg["version"], "v1beta1");
    assert_eq!(reg["resource_name"], "intel.com/vf");
    assert_eq!(reg["endpoint"], "dpdk-cni-intel.com_vf.sock");
    assert_eq!(
        l["GetDevicePluginOptions"]["response"]["get_preferred_allocation_available"],
        true
    );
    let devices = l["ListAndWatch"]["response"]["devices"].as_array().unwrap();
    let listed: Vec<(&str, &str, &Value)> = devices
        .iter()
        .map(|d| {
            (
                d["ID"].as_str().unwrap(),
                d["health"].as_str().unwrap(),
                &d["topology"],
            )
        })
        .collect();
    let numa1 = serde_json::json!({"nodes": [{"ID": 1}]});
    assert_eq!(
        listed,
        [
            ("0000:81:10.0", "Healthy", &numa1),
            ("0000:81:10.2", "Healthy", &numa1)
        ]
    );
    assert_eq!(
        l["GetPreferredAllocation"]["response"]["deviceIDs"],
        serde_json::json!(["0000:81:10.0"])
    );

    let vf: vfio::PciAddress = "0000:81:10.0".parse().unwrap();
    let group = node
        .sysfs()
        .device(vf)
        .unwrap()
        .iommu_group()
        .unwrap()
        .unwrap();
    let alloc = &l["Allocate"];
    assert_eq!(
        alloc["request"]["devices_ids"],
        serde_json::json!(["0000:81:10.0"])
    );
    let r = &alloc["response"];
    assert_eq!(r["envs"]["PCIDEVICE_INTEL_COM_VF"], "0000:81:10.0");
    let info: Value =
        serde_json::from_str(r["envs"]["PCIDEVICE_INTEL_COM_VF_INFO"].as_str().unwrap()).unwrap();
    let g = format!("/dev/vfio/{group}");
    assert_eq!(
        info["0000:81:10.0"],
        serde_json::json!({"generic": {"deviceID": "0000:81:10.0"},
                           "vfio": {"mount": "/dev/vfio/vfio", "dev-mount": g}})
    );
    assert_eq!(
        r["devices"],
        serde_json::json!([
            {"container_path": "/dev/vfio/vfio", "host_path": "/dev/vfio/vfio", "permissions": "rw"},
            {"container_path": g, "host_path": g, "permissions": "rw"},
        ])
    );
    assert_eq!(
        r["mounts"],
        serde_json::json!([{"container_path": "/dev/hugepages", "host_path": "/dev/hugepages", "read_only": false}])
    );
    // The sim leaves no kubelet.sock behind.
    assert!(!kdir.join("kubelet.sock").exists());
}

#[test]
fn fails_clearly_without_a_registration_or_with_a_bad_request() {
    let tmp = tempfile::tempdir().unwrap();
    let kdir = tmp.path().join("dp");
    let out = Command::new(sim_bin())
        .arg("--dir")
        .arg(&kdir)
        .args(["--resource", "intel.com/vf", "--timeout", "1"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("kubelet-sim: no device plugin registered intel.com/vf within 1s"),
        "{err}"
    );
    assert!(out.stdout.is_empty());
    assert!(!kdir.join("kubelet.sock").exists());

    // --allocate and --devices exclude each other.
    let out = Command::new(sim_bin())
        .arg("--dir")
        .arg(&kdir)
        .args(["--resource", "x.io/y", "--allocate", "1", "--devices", "a"])
        .output()
        .unwrap();
    assert!(!out.status.success());
}
