//! The DRA driver's Prepare and Unprepare on a fake node (emulated sysfs, a
//! recording PF driver): the claim's VF goes through the CNI plugin's own
//! ADD and DEL (the workspace's `dpdk-cni` binary, built with the test
//! hooks), so it shares the ledger with NAD attachments. The same flow on a
//! real kubelet, containerd and scheduler is tests/vm/scenarios/k8s-dra.bats.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};

use dpdk_cni_node::config::Config;
use dpdk_cni_node::dra::prepare::Preparer;
use dpdk_cni_node::dra::slice;
use dpdk_cni_node::pool::{self, Pool};
use netlink::RecordingNetlink;
use serde_json::{json, Value};
use vfio::fake::{FakeNode, FakePf};

/// The plugin binary of this workspace's test build (it has the test hooks,
/// so it acts on the fake node only).
fn plugin() -> PathBuf {
    let p = std::env::current_exe()
        .unwrap()
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("dpdk-cni");
    let bin = std::fs::read(&p).unwrap_or_else(|e| {
        panic!(
            "{}: {e}: build the plugin with the test hooks first (cargo test --workspace --features test-hooks builds it)",
            p.display()
        )
    });
    assert!(
        bin.windows(18).any(|w| w == b"DPDK_CNI_FAKE_ROOT"),
        "{} has no test hooks: it would act on this machine (build it with --features test-hooks)",
        p.display()
    );
    p
}

/// What a plugin call printed.
#[derive(Debug)]
struct Out {
    ok: bool,
    json: Value,
}

const DRIVER: &str = "vf.dpdk-cni.io";
const UID: &str = "6f1d2c3b-0000-4000-8000-000000000001";

struct Bed {
    _tmp: tempfile::TempDir,
    node: FakeNode,
    pf: FakePf,
    nl_dir: PathBuf,
    prep: Preparer,
}

fn config(dir: &Path) -> Config {
    let p = dir.join("config.json");
    std::fs::write(
        &p,
        json!({"resourceList": [{"resourceName": "intel_sriov_dpdk", "resourcePrefix": "intel.com",
            "selectors": {"vendors": ["8086"], "devices": ["10ca"], "drivers": ["igbvf", "vfio-pci"]}}]})
        .to_string(),
    )
    .unwrap();
    dpdk_cni_node::config::load_checked(&p, "intel.com").unwrap()
}

impl Bed {
    fn new() -> Bed {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("node");
        let node = FakeNode::new(&root).unwrap();
        let pf = node
            .add_pf("0000:01:00.0".parse().unwrap(), "ens1f0", 3, 8, 0, 10)
            .unwrap();
        let nl_dir = tmp.path().join("netlink");
        RecordingNetlink::create(&nl_dir, &[("ens1f0", 3)]).unwrap();
        let sysfs = vfio::fake::emulated(&root);
        let cfg = config(tmp.path());
        let pools = pool::discover(&sysfs, &cfg, |_| false).unwrap();
        let prep = Preparer {
            driver: DRIVER.into(),
            sysfs,
            plugin: plugin(),
            plugin_env: vec![
                ("DPDK_CNI_FAKE_ROOT".into(), root.display().to_string()),
                ("DPDK_CNI_FAKE_NETLINK".into(), nl_dir.display().to_string()),
            ],
            state_dir: root.join(ledger::settings::DEFAULT_STATE_DIR),
            cdi_dir: tmp.path().join("cdi"),
            pools: Arc::new(Mutex::new(pools)),
        };
        Bed {
            _tmp: tmp,
            node,
            pf,
            nl_dir,
            prep,
        }
    }

    fn vf(&self, i: usize) -> String {
        self.pf.vfs[i].to_string()
    }

    fn driver(&self, i: usize) -> Option<String> {
        self.prep
            .sysfs
            .device(self.pf.vfs[i])
            .unwrap()
            .driver()
            .unwrap()
    }

    fn vlan(&self, i: usize) -> u16 {
        RecordingNetlink::new(&self.nl_dir).load().unwrap().links["ens1f0"].vfs[i].vlan
    }

    /// A claim as the API server returns it, allocated VF `i` (and more).
    fn claim(&self, vfs: &[usize], params: Value) -> Value {
        let results: Vec<Value> = vfs
            .iter()
            .map(|&i| {
                json!({"request": "vf", "driver": DRIVER, "pool": "node1",
                             "device": slice::device_name(self.pf.vfs[i])})
            })
            .collect();
        let mut p = json!({"apiVersion": "dpdk-cni.io/v1alpha1", "kind": "VfConfig"});
        p.as_object_mut()
            .unwrap()
            .extend(params.as_object().unwrap().clone());
        json!({"metadata": {"uid": UID, "namespace": "default", "name": "c"},
               "status": {"allocation": {"devices": {"results": results,
                   "config": [{"source": "FromClaim", "opaque": {"driver": DRIVER, "parameters": p}}]}}}})
    }

    /// The plugin as a runtime runs it for a NAD (not the DRA caller).
    fn cni(&self, cmd: &str, container: &str, ifname: &str, conf: &Value) -> Out {
        let mut c = Command::new(&self.prep.plugin)
            .env_clear()
            .env("CNI_COMMAND", cmd)
            .env("CNI_CONTAINERID", container)
            .env("CNI_IFNAME", ifname)
            .env("CNI_NETNS", format!("/var/run/netns/{container}"))
            .env("CNI_PATH", "/usr/lib/cni")
            .envs(self.prep.plugin_env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        c.stdin
            .take()
            .unwrap()
            .write_all(conf.to_string().as_bytes())
            .unwrap();
        let o = c.wait_with_output().unwrap();
        Out {
            ok: o.status.success(),
            json: serde_json::from_slice(&o.stdout).unwrap_or(Value::Null),
        }
    }

    fn nad(&self, cmd: &str, i: usize) -> Out {
        let conf = json!({"cniVersion": "1.0.0", "name": "sriov-dpdk", "type": "dpdk-cni",
                          "deviceType": "vfio-pci", "deviceID": self.vf(i)});
        self.cni(cmd, "nadpod", "net1", &conf)
    }

    fn ledger(&self) -> ledger::Ledger {
        ledger::Ledger::new(&self.prep.state_dir)
    }

    fn cdi(&self) -> Value {
        serde_json::from_slice(&std::fs::read(self.prep.cdi_file(UID)).unwrap()).unwrap()
    }
}

/// The devices' part of a snapshot of the fake node (sysfs and /dev).
fn devices(
    mut m: std::collections::BTreeMap<String, String>,
) -> std::collections::BTreeMap<String, String> {
    m.retain(|k, _| k.starts_with("sys") || k.starts_with("dev"));
    m
}

#[test]
fn a_netdevice_claim_holds_the_vf_on_its_driver_for_the_pods_nad() {
    let bed = Bed::new();
    let claim = bed.claim(&[1], json!({"driver": "netdevice"}));
    let devs = bed.prep.prepare(&claim, UID, "default/c").unwrap();
    assert_eq!(devs.len(), 1);
    assert_eq!(bed.driver(1).as_deref(), Some("igbvf"));
    let spec = bed.cdi();
    assert_eq!(
        spec["devices"][0]["containerEdits"]["deviceNodes"],
        json!([]),
        "no device node for a netdev"
    );
    assert_eq!(
        spec["containerEdits"]["env"][0],
        json!(format!(
            "PCIDEVICE_INTEL_COM_INTEL_SRIOV_DPDK={}",
            bed.vf(1)
        ))
    );
    let held = bed.ledger().claim(bed.pf.vfs[1]).unwrap().unwrap();
    assert_eq!(held.dra_claim(), Some(UID));
    // Not another pod's NAD.
    let out = bed.nad("ADD", 1);
    assert_eq!(out.json["code"], json!(101), "{out:?}");
    bed.prep.unprepare(UID, "default/c").unwrap();
    assert!(bed.ledger().claims().unwrap().is_empty());
    assert!(!bed.prep.cdi_file(UID).exists());
}

#[test]
fn prepare_binds_sets_the_vlan_and_writes_the_cdi_spec_unprepare_restores() {
    let bed = Bed::new();
    let before = bed.node.snapshot();
    let claim = bed.claim(&[1], json!({"vlan": 100, "spoofchk": "off"}));
    let devs = bed.prep.prepare(&claim, UID, "default/c").unwrap();
    assert_eq!(devs.len(), 1);
    let name = slice::device_name(bed.pf.vfs[1]);
    assert_eq!(devs[0].device_name, name);
    assert_eq!(devs[0].request_names, vec!["vf".to_string()]);
    assert_eq!(
        devs[0].cdi_device_ids,
        vec![format!("{DRIVER}/claim={UID}-{name}")]
    );
    assert_eq!(bed.driver(1).as_deref(), Some("vfio-pci"));
    assert_eq!(bed.vlan(1), 100);
    // The CDI spec: the group's node and the device plugin's variables.
    let spec = bed.cdi();
    assert_eq!(spec["kind"], json!(format!("{DRIVER}/claim")));
    assert_eq!(spec["devices"][0]["name"], json!(format!("{UID}-{name}")));
    let nodes: Vec<&str> = spec["devices"][0]["containerEdits"]["deviceNodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["path"].as_str().unwrap())
        .collect();
    assert_eq!(nodes, ["/dev/vfio/vfio", "/dev/vfio/12"]);
    let env: Vec<&str> = spec["containerEdits"]["env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e.as_str().unwrap())
        .collect();
    assert_eq!(
        env[0],
        format!("PCIDEVICE_INTEL_COM_INTEL_SRIOV_DPDK={}", bed.vf(1))
    );
    assert!(
        env[1].starts_with("PCIDEVICE_INTEL_COM_INTEL_SRIOV_DPDK_INFO="),
        "{env:?}"
    );
    assert!(env[1].contains("\"dev-mount\":\"/dev/vfio/12\""), "{env:?}");
    // The claim is in the plugin's ledger, under the DRA network.
    let claims = bed.ledger().claims().unwrap();
    assert_eq!(claims.len(), 1);
    assert_eq!(claims[0].1.dra_claim(), Some(UID));

    // Prepare again (the kubelet retries): the same answer, nothing redone.
    let again = bed.prep.prepare(&claim, UID, "default/c").unwrap();
    assert_eq!(again, devs);

    bed.prep.unprepare(UID, "default/c").unwrap();
    assert_eq!(bed.driver(1).as_deref(), Some("igbvf"));
    assert_eq!(bed.vlan(1), 0);
    assert!(!bed.prep.cdi_file(UID).exists());
    assert!(bed.ledger().claims().unwrap().is_empty());
    // Unprepare again: nothing held is fine.
    bed.prep.unprepare(UID, "default/c").unwrap();
    assert_eq!(devices(before), devices(bed.node.snapshot()));
}

#[test]
fn a_vf_is_held_by_a_claim_or_by_a_nad_never_both() {
    let bed = Bed::new();
    let claim = bed.claim(&[0], json!({}));
    bed.prep.prepare(&claim, UID, "default/c").unwrap();
    let e = bed.nad("ADD", 0);
    assert!(!e.ok);
    assert_eq!(e.json["code"], json!(101), "{e:?}");
    let msg = e.json["msg"].as_str().unwrap();
    assert!(msg.contains(&format!("ResourceClaim {UID}")), "{msg}");
    assert_eq!(bed.driver(0).as_deref(), Some("vfio-pci"));

    // The other way round: a NAD's attachment holds VF 2; a claim
    // allocated it (the slice was stale) fails, and changes nothing.
    assert!(bed.nad("ADD", 2).ok);
    let vlan = bed.vlan(2);
    let other = "6f1d2c3b-0000-4000-8000-000000000002";
    let mut c2 = bed.claim(&[2], json!({"vlan": 7}));
    c2["metadata"]["uid"] = json!(other);
    let e = bed
        .prep
        .prepare(&c2, other, "default/c2")
        .unwrap_err()
        .to_string();
    assert!(e.contains("in use by container nadpod"), "{e}");
    assert_eq!(bed.vlan(2), vlan);
    assert!(!bed.prep.cdi_file(other).exists());
    // The slice leaves out what a NAD holds.
    let held = bed.prep.held_by_attachments();
    assert_eq!(held.into_iter().collect::<Vec<_>>(), vec![bed.pf.vfs[2]]);
    assert!(bed.nad("DEL", 2).ok);
    bed.prep.unprepare(UID, "default/c").unwrap();
    assert_eq!(bed.driver(0).as_deref(), Some("igbvf"));
}

#[test]
fn a_claim_of_two_vfs_is_prepared_whole_or_not_at_all() {
    let bed = Bed::new();
    // VF 1 is taken by a NAD: the claim of VFs 0 and 1 fails, and VF 0,
    // prepared first, is put back.
    assert!(bed.nad("ADD", 1).ok);
    let claim = bed.claim(&[0, 1], json!({"vlan": 9}));
    let e = bed
        .prep
        .prepare(&claim, UID, "default/c")
        .unwrap_err()
        .to_string();
    assert!(e.contains("default/c"), "{e}");
    assert_eq!(bed.driver(0).as_deref(), Some("igbvf"));
    assert_eq!(bed.vlan(0), 0);
    assert!(bed
        .ledger()
        .claims()
        .unwrap()
        .iter()
        .all(|(_, c)| c.dra_claim().is_none()));
    assert!(bed.nad("DEL", 1).ok);
    // Free again: both, one CDI device each, one environment for the pool.
    let devs = bed.prep.prepare(&claim, UID, "default/c").unwrap();
    assert_eq!(devs.len(), 2);
    let env = bed.cdi()["containerEdits"]["env"][0].clone();
    assert_eq!(
        env,
        json!(format!(
            "PCIDEVICE_INTEL_COM_INTEL_SRIOV_DPDK={},{}",
            bed.vf(0),
            bed.vf(1)
        ))
    );
    bed.prep.unprepare(UID, "default/c").unwrap();
    assert_eq!(bed.driver(1).as_deref(), Some("igbvf"));
}

#[test]
fn a_prepare_killed_half_way_is_finished_by_the_next_call_or_undone_by_unprepare() {
    let bed = Bed::new();
    let claim = bed.claim(&[0], json!({"vlan": 5}));
    bed.prep.prepare(&claim, UID, "default/c").unwrap();
    // As if killed after the record, before the bind: the VF is still on
    // its driver, the record not complete, no CDI spec.
    bed.prep
        .sysfs
        .bind_driver(bed.pf.vfs[0], "igbvf", Default::default())
        .unwrap();
    let ledger = bed.ledger();
    let mut att = ledger
        .load(ledger::DRA_NETWORK, &format!("claim-{UID}"), "dev0")
        .unwrap()
        .unwrap();
    att.phase = ledger::Phase::Pending;
    ledger.save(&att, true).unwrap();
    std::fs::remove_file(bed.prep.cdi_file(UID)).unwrap();
    let devs = bed.prep.prepare(&claim, UID, "default/c").unwrap();
    assert_eq!(devs.len(), 1);
    assert_eq!(bed.driver(0).as_deref(), Some("vfio-pci"));
    assert_eq!(bed.vlan(0), 5);
    assert!(bed.prep.cdi_file(UID).exists());

    // Killed after the claim, before the record: Unprepare releases the claim.
    bed.prep.unprepare(UID, "default/c").unwrap();
    ledger
        .set_claim(
            bed.pf.vfs[2],
            &ledger::Claim {
                network: ledger::DRA_NETWORK.into(),
                container_id: format!("claim-{UID}"),
                ifname: "dev0".into(),
            },
        )
        .unwrap();
    bed.prep.unprepare(UID, "default/c").unwrap();
    assert!(ledger.claims().unwrap().is_empty());
}

#[test]
fn bad_claims_are_refused_with_the_reason_and_change_nothing() {
    let bed = Bed::new();
    let before = bed.node.snapshot();
    // A device gone from the node since the scheduler allocated it.
    let pools: Vec<Pool> = Vec::new();
    let saved = std::mem::replace(&mut *bed.prep.pools.lock().unwrap(), pools);
    let e = bed
        .prep
        .prepare(&bed.claim(&[0], json!({})), UID, "default/c")
        .unwrap_err()
        .to_string();
    assert!(e.contains("is gone from this node"), "{e}");
    *bed.prep.pools.lock().unwrap() = saved;
    // A netdevice claim leaves the VF settings to the pod's NAD.
    let e = bed
        .prep
        .prepare(
            &bed.claim(&[0], json!({"driver": "netdevice", "vlan": 3})),
            UID,
            "default/c",
        )
        .unwrap_err()
        .to_string();
    assert!(e.contains("netdevice claim takes no VF settings"), "{e}");
    // A setting the plugin refuses, with the plugin's message.
    let e = bed
        .prep
        .prepare(&bed.claim(&[0], json!({"vlan": 5000})), UID, "default/c")
        .unwrap_err()
        .to_string();
    assert!(e.contains("vlan"), "{e}");
    // A device field in the configuration is not a VfConfig field.
    let e = bed
        .prep
        .prepare(
            &bed.claim(&[0], json!({"deviceID": "0000:00:1f.0"})),
            UID,
            "default/c",
        )
        .unwrap_err()
        .to_string();
    assert!(e.contains("deviceID"), "{e}");
    // A UID that is not one (it would name files).
    let e = bed
        .prep
        .prepare(&bed.claim(&[0], json!({})), "../x", "default/c")
        .unwrap_err()
        .to_string();
    assert!(e.contains("not a UID"), "{e}");
    assert_eq!(bed.driver(0).as_deref(), Some("igbvf"));
    assert_eq!(devices(before), devices(bed.node.snapshot()));
    assert!(bed.ledger().claims().unwrap().is_empty());
}

#[test]
fn a_netconf_cannot_use_the_dra_network() {
    let bed = Bed::new();
    let conf = json!({"cniVersion": "1.0.0", "name": ledger::DRA_NETWORK, "type": "dpdk-cni",
                      "deviceType": "vfio-pci", "deviceID": bed.vf(0)});
    let out = bed.cni("ADD", &format!("claim-{UID}"), "dev0", &conf);
    assert!(!out.ok);
    assert_eq!(out.json["code"], json!(7), "{out:?}");
    assert!(
        out.json["msg"].as_str().unwrap().contains("reserved"),
        "{out:?}"
    );
    assert_eq!(bed.driver(0).as_deref(), Some("igbvf"));
    // Nor GC it: that would release the claims' devices.
    let gc = json!({"cniVersion": "1.1.0", "name": ledger::DRA_NETWORK, "type": "dpdk-cni",
                    "cni.dev/valid-attachments": []});
    let out = bed.cni("GC", "x", "net1", &gc);
    assert!(!out.ok, "{out:?}");
}
