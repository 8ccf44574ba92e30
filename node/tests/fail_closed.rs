//! The daemon fails closed: node setup never destroys a VF (by changing
//! `sriov_numvfs`) that a claim it cannot read, a claim, a kubelet
//! allocation or another driver may hold; a VF whose claim cannot be read is
//! not offered to the kubelet; Allocate never rebinds a VF an attachment
//! holds; the plugin sockets are 0600 whatever the umask.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{two_pf_node, wait_for, wait_for_log, Daemon, FakeKubelet};
use dpdk_cni_node::api::device_plugin_client::DevicePluginClient;
use dpdk_cni_node::api::{AllocateRequest, ContainerAllocateRequest, Empty};
use dpdk_cni_node::plugin::connect_unix;
use ledger::{Claim, Ledger};
use vfio::fake::FakeNode;
use vfio::PciAddress;

const ENDPOINT: &str = "dpdk-cni-intel.com_vf.sock";
const NUMVFS: &str = "sys/bus/pci/devices/0000:01:00.0/sriov_numvfs";
const CHECKPOINT: &str = "kubelet_internal_checkpoint";

fn addr(s: &str) -> PciAddress {
    s.parse().unwrap()
}

fn claim(id: &str) -> Claim {
    Claim {
        network: "dpdk-net".into(),
        container_id: id.into(),
        ifname: "net1".into(),
    }
}

/// A fake node (ens1f0 with 4 of 8 VFs, ens2f0 with 4), the daemon's
/// directories, and a config whose node setup lowers ens1f0 to 2 VFs.
struct Fixture {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    node: FakeNode,
    kdir: PathBuf,
    state: PathBuf,
    cfg: PathBuf,
    log: PathBuf,
    netlink: PathBuf,
}

impl Fixture {
    fn new(setup: bool) -> Fixture {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("root");
        let node = two_pf_node(&root, 4);
        let cfg = tmp.path().join("config.json");
        let node_setup = if setup {
            r#", "nodeSetup": {"pfs": [{"pfName": "ens1f0", "numVfs": 2}]}"#
        } else {
            ""
        };
        fs::write(
            &cfg,
            format!(
                r#"{{"resourceList": [{{"resourceName": "vf", "selectors": {{"pfNames": ["ens1f0"]}}}}]{node_setup}}}"#
            ),
        )
        .unwrap();
        let netlink = tmp.path().join("netlink");
        netlink::RecordingNetlink::create(&netlink, &[("ens1f0", 4), ("ens2f0", 4)]).unwrap();
        let kdir = tmp.path().join("device-plugins");
        fs::create_dir_all(&kdir).unwrap();
        Fixture {
            kdir,
            state: tmp.path().join("state"),
            log: tmp.path().join("daemon.log"),
            cfg,
            root,
            node,
            netlink,
            _tmp: tmp,
        }
    }

    fn start(&self) -> Daemon {
        let nl = self.netlink.display().to_string();
        Daemon::start_logged(
            &self.root,
            &self.cfg,
            &self.kdir,
            &self.state,
            &["--no-annotate", "--fake-netlink", &nl],
            &self.log,
        )
    }

    /// Node setup runs before the plugins serve: once the socket is there,
    /// the daemon has made its first decision about sriov_numvfs.
    fn wait_serving(&self) {
        wait_for("the plugin socket", Duration::from_secs(10), || {
            self.kdir.join(ENDPOINT).exists()
        });
    }

    fn numvfs(&self) -> String {
        fs::read_to_string(self.root.join(NUMVFS))
            .unwrap()
            .trim()
            .to_string()
    }

    fn numvfs_writes(&self) -> Vec<String> {
        self.node
            .writes()
            .into_iter()
            .filter(|(p, _)| p == NUMVFS)
            .map(|(_, d)| d)
            .collect()
    }

    fn write_claim_file(&self, dev: &str, content: &str) -> PathBuf {
        let p = self.state.join("devices").join(format!("{dev}.json"));
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(&p, content).unwrap();
        p
    }

    /// The kubelet's device manager checkpoint, written the way it writes it
    /// (aside, then renamed over).
    fn write_checkpoint(&self, content: &str) {
        let tmp = self.kdir.join(".checkpoint.tmp");
        fs::write(&tmp, content).unwrap();
        fs::rename(&tmp, self.kdir.join(CHECKPOINT)).unwrap();
    }
}

/// A checkpoint in the kubelet's format (v2: device IDs per NUMA node).
fn checkpoint(entries: &[(&str, &str, &str, &[&str])]) -> String {
    let entries: Vec<serde_json::Value> = entries
        .iter()
        .map(|(uid, container, resource, ids)| {
            serde_json::json!({
                "PodUID": uid, "ContainerName": container, "ResourceName": resource,
                "DeviceIDs": {"0": ids}, "AllocResp": "CgA=",
            })
        })
        .collect();
    serde_json::json!({
        "Data": {"PodDeviceEntries": entries,
                 "RegisteredDevices": {"intel.com/vf": ["0000:01:10.0", "0000:01:10.2", "0000:01:10.4", "0000:01:10.6"]}},
        "Checksum": 2_401_326_453u32,
    })
    .to_string()
}

const SOON: Duration = Duration::from_secs(10);

#[test]
fn a_claim_that_cannot_be_read_keeps_sriov_numvfs_until_every_claim_reads() {
    let t = Fixture::new(true);
    let vf = addr("0000:01:10.0");
    let file = t.write_claim_file("0000:01:10.0", r#"{"network": "dpdk-net", "contai"#);
    let _d = t.start();
    t.wait_serving();
    assert_eq!(
        t.numvfs(),
        "4",
        "sriov_numvfs changed while a claim could not be read; writes: {:?}",
        t.numvfs_writes()
    );
    let line = wait_for_log(&t.log, &["not changing sriov_numvfs"], SOON);
    assert!(line.contains(&file.display().to_string()), "{line}");

    // The claim reads again and names a pod: still refused, naming it.
    Ledger::new(&t.state)
        .set_claim(vf, &claim("c0ffee"))
        .unwrap();
    wait_for_log(
        &t.log,
        &["not changing sriov_numvfs", "0000:01:10.0", "c0ffee"],
        SOON,
    );
    assert_eq!(t.numvfs(), "4");

    // The pod goes: the change goes through on a retry.
    Ledger::new(&t.state)
        .release_claim(vf, &claim("c0ffee"))
        .unwrap();
    wait_for("sriov_numvfs 2", SOON, || t.numvfs() == "2");
    assert_eq!(t.numvfs_writes(), ["0", "2"]);
}

#[test]
fn a_vf_the_kubelet_allocated_keeps_sriov_numvfs() {
    let t = Fixture::new(true);
    let pod = "6f1c7a3e-5b0d-4c1e-9a55-2f3d4e5f6a7b";
    // An unreadable checkpoint: nothing is known to be free.
    t.write_checkpoint(r#"{"Data": {"PodDeviceEntries": [{"PodUID": "#);
    let _d = t.start();
    t.wait_serving();
    assert_eq!(
        t.numvfs(),
        "4",
        "sriov_numvfs changed while the kubelet checkpoint could not be read; writes: {:?}",
        t.numvfs_writes()
    );
    wait_for_log(&t.log, &["not changing sriov_numvfs", CHECKPOINT], SOON);

    // The checkpoint names one of ens1f0's VFs (and one of ens2f0's).
    t.write_checkpoint(&checkpoint(&[
        (pod, "testpmd", "intel.com/vf", &["0000:01:10.4"]),
        ("1b2c", "fwd", "intel.com/other", &["0000:81:10.0"]),
    ]));
    let line = wait_for_log(
        &t.log,
        &["not changing sriov_numvfs", "0000:01:10.4", pod],
        SOON,
    );
    assert!(line.contains("intel.com/vf"), "{line}");
    assert_eq!(t.numvfs(), "4");

    // The kubelet lets it go: the change goes through.
    t.write_checkpoint(&checkpoint(&[(
        "1b2c",
        "fwd",
        "intel.com/other",
        &["0000:81:10.0"],
    )]));
    wait_for("sriov_numvfs 2", SOON, || t.numvfs() == "2");
}

#[test]
fn a_vf_bound_to_a_driver_outside_the_pools_keeps_sriov_numvfs() {
    let t = Fixture::new(true);
    let vf = addr("0000:01:10.6");
    let sysfs = t.node.sysfs();
    // Someone else's DPDK application holds it on vfio-pci (no claim).
    sysfs
        .bind_driver(vf, vfio::VFIO_PCI, Default::default())
        .unwrap();
    let _d = t.start();
    t.wait_serving();
    assert_eq!(
        t.numvfs(),
        "4",
        "sriov_numvfs changed under a VF on vfio-pci; writes: {:?}",
        t.numvfs_writes()
    );
    wait_for_log(
        &t.log,
        &["not changing sriov_numvfs", "0000:01:10.6", "vfio-pci"],
        SOON,
    );

    // Back on its own driver: the change goes through.
    sysfs
        .restore_driver(vf, Some("igbvf"), None, Default::default())
        .unwrap();
    wait_for("sriov_numvfs 2", SOON, || t.numvfs() == "2");
}

#[tokio::test(flavor = "current_thread")]
async fn a_vf_whose_claim_cannot_be_read_is_not_offered_to_the_kubelet() {
    let t = Fixture::new(false);
    t.write_claim_file("0000:01:10.2", "{}");
    let mut kubelet = FakeKubelet::start(&t.kdir);
    let _d = t.start();
    kubelet.next_registration(SOON).await;
    let mut client = DevicePluginClient::new(connect_unix(&t.kdir.join(ENDPOINT)).await.unwrap());
    let mut stream = client.list_and_watch(Empty {}).await.unwrap().into_inner();
    let health = |m: dpdk_cni_node::api::ListAndWatchResponse| {
        m.devices
            .into_iter()
            .map(|d| (d.id, d.health))
            .collect::<std::collections::BTreeMap<_, _>>()
    };
    let first = health(stream.message().await.unwrap().unwrap());
    assert_eq!(first.len(), 4, "{first:?}");
    assert_eq!(first["0000:01:10.2"], "Unhealthy", "{first:?}");
    assert_eq!(first["0000:01:10.0"], "Healthy", "{first:?}");

    // The claim reads again (a pod holds the VF, which the kubelet knows).
    Ledger::new(&t.state)
        .set_claim(addr("0000:01:10.2"), &claim("c0ffee"))
        .unwrap();
    let next = tokio::time::timeout(Duration::from_secs(3), stream.message())
        .await
        .expect("no update after the claim was repaired")
        .unwrap()
        .unwrap();
    let next = health(next);
    assert!(next.values().all(|h| h == "Healthy"), "{next:?}");
}

#[tokio::test(flavor = "current_thread")]
async fn allocate_never_rebinds_a_vf_an_attachment_holds() {
    let t = Fixture::new(false);
    t.node.enable_noiommu().unwrap();
    // A pool of VFs the CNI binds to vfio-pci (a kernel-driver pool gets
    // no vfio node, so nothing to bind early).
    fs::write(
        &t.cfg,
        r#"{"resourceList": [{"resourceName": "vf", "selectors": {"pfNames": ["ens1f0"], "drivers": ["igbvf", "vfio-pci"]}}]}"#,
    )
    .unwrap();
    let held = addr("0000:01:10.2");
    let free = addr("0000:01:10.0");
    let ledger = Ledger::new(&t.state);
    ledger.set_claim(held, &claim("c0ffee")).unwrap();
    let _d = t.start();
    t.wait_serving();
    let mut client = DevicePluginClient::new(connect_unix(&t.kdir.join(ENDPOINT)).await.unwrap());
    let alloc = |id: PciAddress| AllocateRequest {
        container_requests: vec![ContainerAllocateRequest {
            devices_ids: vec![id.to_string()],
        }],
    };
    let sysfs = t.node.sysfs();
    let driver = |a| sysfs.device(a).unwrap().driver().unwrap();

    let err = client
        .allocate(alloc(held))
        .await
        .expect_err("Allocate bound a VF an attachment holds");
    assert_eq!(err.code(), tonic::Code::FailedPrecondition, "{err:?}");
    assert!(
        err.message().contains("c0ffee") && err.message().contains("dpdk-net"),
        "{}",
        err.message()
    );
    assert_eq!(driver(held).as_deref(), Some("igbvf"));
    assert_eq!(ledger.prebound(held).unwrap(), None);

    // A free VF is bound early, its first driver recorded.
    let r = client.allocate(alloc(free)).await.unwrap().into_inner();
    let host = &r.container_responses[0].devices[1].host_path;
    assert!(host.starts_with("/dev/vfio/noiommu-"), "{host}");
    assert_eq!(driver(free).as_deref(), Some(vfio::VFIO_PCI));
    assert_eq!(
        ledger.prebound(free).unwrap().unwrap().driver.as_deref(),
        Some("igbvf")
    );
}

#[tokio::test(flavor = "current_thread")]
async fn plugin_sockets_are_0600_whatever_the_umask() {
    let t = Fixture::new(false);
    let mut kubelet = FakeKubelet::start(&t.kdir);
    let _d = Daemon::spawn(Daemon::command_with_umask(
        "000",
        &t.root,
        &t.cfg,
        &t.kdir,
        &t.state,
        &["--no-annotate"],
    ));
    kubelet.next_registration(SOON).await;
    let mode = |p: &Path| {
        format!(
            "{:o}",
            fs::metadata(p).unwrap().permissions().mode() & 0o7777
        )
    };
    assert_eq!(
        mode(&t.kdir.join(ENDPOINT)),
        "600",
        "{ENDPOINT} under umask 000"
    );
    // And again when the kubelet restarts and the socket is served anew.
    kubelet.stop();
    let mut kubelet = FakeKubelet::start(&t.kdir);
    kubelet.next_registration(SOON).await;
    wait_for("the plugin socket", SOON, || t.kdir.join(ENDPOINT).exists());
    assert_eq!(mode(&t.kdir.join(ENDPOINT)), "600");
}
