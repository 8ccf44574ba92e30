//! Discovery from what really reaches a pod under Multus: the NPWG spec fields
//! of `network-status` (Multus keeps no other device-info key) plus the
//! device's sysfs as the pod sees it.
//!
//! `data/multus-annotations` is a downward-API annotations file as the kubelet
//! writes it (`key="Go-quoted value"` lines, sorted) for a pod on Calico with
//! two SR-IOV attachments: `sriov-dpdk` (a VF the device plugin's pool keeps on
//! vfio-pci) and `sriov-kernel` (a VF on iavf, moved into the pod as `net2`).
//! Its `network-status` value is laid out as the network-attachment-definition
//! client marshals it (each entry indented by four spaces, empty fields
//! omitted): the cluster network's entry with `"default": true` and no
//! device-info, then each VF's with only `pci-address` and `pf-pci-address`.
//!
//! The sysfs side is a fake tree: `bus/pci/devices/<bdf>` links to the device
//! under `devices/pci0000:3a/`, with `driver`, `numa_node` and `net/<ifname>`
//! (sysfs shows a device's netdevs in the reader's network namespace only, so
//! in the pod `net/` lists the pod's name for it, or nothing).

use std::os::unix::fs::symlink;
use std::path::PathBuf;

use dpdk_discover::{discover, DiscoverError, Inputs, Location, NetworkStatus};

const ANNOTATIONS: &str = include_str!("data/multus-annotations");
const VF_DPDK: &str = "0000:3b:02.2";
const VF_KERNEL: &str = "0000:3b:0a.1";

const MOUNTINFO: &str = "\
22 1 0:21 / / rw,relatime - overlay overlay rw,lowerdir=/l,upperdir=/u,workdir=/w
31 22 0:45 / /dev/hugepages rw,relatime master:14 - hugetlbfs hugetlbfs rw,pagesize=2M
";

/// A pod's `proc/` and `sys/` in a temp dir: two NUMA nodes with 512 free
/// 2 MiB pages each, the annotations file in `podinfo/`, no PCI device yet.
struct Pod {
    tmp: tempfile::TempDir,
}

impl Pod {
    fn new() -> Pod {
        let pod = Pod {
            tmp: tempfile::tempdir().unwrap(),
        };
        pod.write("proc/self/mountinfo", MOUNTINFO);
        pod.write("proc/meminfo", "Hugepagesize:       2048 kB\n");
        for n in 0..2 {
            pod.write(
                &format!(
                    "sys/devices/system/node/node{n}/hugepages/hugepages-2048kB/free_hugepages"
                ),
                "512\n",
            );
        }
        pod.write("podinfo/annotations", ANNOTATIONS);
        pod
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.tmp.path().join(rel)
    }

    fn write(&self, rel: &str, text: &str) {
        let p = self.path(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }

    /// A PCI function in the pod's sysfs, bound to `driver` (or to none),
    /// on NUMA node `numa` (as the kernel prints it), with these netdevs
    /// visible in the pod's network namespace.
    fn pci(&self, bdf: &str, driver: Option<&str>, numa: &str, netdevs: &[&str]) {
        let rel = format!("sys/devices/pci0000:3a/0000:3a:00.0/{bdf}");
        let dir = self.path(&rel);
        std::fs::create_dir_all(&dir).unwrap();
        self.write(&format!("{rel}/numa_node"), &format!("{numa}\n"));
        self.write(&format!("{rel}/vendor"), "0x8086\n");
        self.write(&format!("{rel}/device"), "0x1889\n");
        self.write(&format!("{rel}/class"), "0x020000\n");
        if let Some(driver) = driver {
            std::fs::create_dir_all(self.path(&format!("sys/bus/pci/drivers/{driver}"))).unwrap();
            symlink(
                format!("../../../../bus/pci/drivers/{driver}"),
                dir.join("driver"),
            )
            .unwrap();
        }
        for name in netdevs {
            std::fs::create_dir_all(dir.join("net").join(name)).unwrap();
        }
        let link = self.path(&format!("sys/bus/pci/devices/{bdf}"));
        std::fs::create_dir_all(link.parent().unwrap()).unwrap();
        symlink(
            format!("../../../devices/pci0000:3a/0000:3a:00.0/{bdf}"),
            link,
        )
        .unwrap();
    }

    fn remove_pci(&self, bdf: &str) {
        std::fs::remove_file(self.path(&format!("sys/bus/pci/devices/{bdf}"))).unwrap();
        std::fs::remove_dir_all(self.path(&format!("sys/devices/pci0000:3a/0000:3a:00.0/{bdf}")))
            .unwrap();
    }

    /// Both VFs as the fixture's pod sees them, on NUMA node 1.
    fn both_vfs(&self, dpdk_driver: &str) {
        self.pci(VF_DPDK, Some(dpdk_driver), "1", &[]);
        self.pci(VF_KERNEL, Some("iavf"), "1", &["net2"]);
    }

    /// The network-status annotation from the downward-API file, nothing else.
    fn inputs(&self) -> Inputs {
        let mut i = Inputs::with_roots(self.path("proc"), self.path("sys"));
        i.network_status =
            NetworkStatus::AnnotationsFile(Location::Required(self.path("podinfo/annotations")));
        i.env = vec![("POD_NAME".into(), "dpdk-app-5d8f7c9b4-x7k2p".into())];
        i
    }
}

fn args(inputs: &Inputs) -> String {
    discover(inputs).unwrap().args().join(" ")
}

fn err(inputs: &Inputs) -> DiscoverError {
    discover(inputs).expect_err("discovery should fail")
}

#[test]
fn spec_only_network_status_follows_each_vfs_driver_in_sysfs() {
    for driver in ["vfio-pci", "igb_uio", "uio_pci_generic"] {
        let pod = Pod::new();
        pod.both_vfs(driver);
        let plan = discover(&pod.inputs()).unwrap();
        // The user-space VF is a PCI device for EAL; the iavf one is used
        // through af_packet on the name the pod sees; both on NUMA node 1,
        // which only sysfs knows.
        assert_eq!(
            plan.args().join(" "),
            format!(
                "--file-prefix dpdk-app-5d8f7c9b4-x7k2p --huge-dir /dev/hugepages \
                 --socket-mem 0,256 -a {VF_DPDK} --vdev net_af_packet_net2,iface=net2"
            ),
            "{driver}"
        );
        assert_eq!(plan.devices[0].driver.as_deref(), Some(driver));
        assert_eq!(plan.devices[1].driver.as_deref(), Some("iavf"));
        assert!(
            plan.devices[1].origin.contains("dpdk/sriov-kernel net2"),
            "{}",
            plan.devices[1].origin
        );
        // Each decision sysfs made is noted.
        assert_eq!(plan.notes.len(), 2, "{:?}", plan.notes);
        assert!(plan.notes[0].contains(driver), "{:?}", plan.notes);
        assert!(plan.notes[1].contains("iavf"), "{:?}", plan.notes);
    }
}

#[test]
fn spec_only_device_missing_from_sysfs_is_an_error_naming_it() {
    let pod = Pod::new();
    pod.both_vfs("vfio-pci");
    pod.remove_pci(VF_KERNEL);
    let e = err(&pod.inputs());
    let msg = e.to_string();
    assert!(
        matches!(&e, DiscoverError::DeviceNotInSysfs { pci, .. } if pci.to_string() == VF_KERNEL),
        "{e:?}"
    );
    assert!(msg.contains(VF_KERNEL), "{msg}");
    assert!(msg.contains("dpdk/sriov-kernel net2"), "{msg}");
    assert!(msg.contains("podinfo/annotations"), "{msg}");
    assert!(
        msg.contains(&format!("bus/pci/devices/{VF_KERNEL}")),
        "{msg}"
    );
}

#[test]
fn kernel_driver_without_a_netdev_in_the_pod_or_no_driver_is_an_error() {
    // iavf, but the netdev is in another network namespace (never moved in).
    let pod = Pod::new();
    pod.pci(VF_DPDK, Some("vfio-pci"), "1", &[]);
    pod.pci(VF_KERNEL, Some("iavf"), "1", &[]);
    let e = err(&pod.inputs());
    assert!(matches!(e, DiscoverError::DeviceUnusable { .. }), "{e:?}");
    let msg = e.to_string();
    assert!(msg.contains(VF_KERNEL), "{msg}");
    assert!(msg.contains("iavf"), "{msg}");
    assert!(msg.contains("network namespace"), "{msg}");

    // Bound to no driver at all.
    let pod = Pod::new();
    pod.pci(VF_DPDK, None, "1", &[]);
    pod.pci(VF_KERNEL, Some("iavf"), "1", &["net2"]);
    let e = err(&pod.inputs());
    assert!(matches!(e, DiscoverError::DeviceUnusable { .. }), "{e:?}");
    let msg = e.to_string();
    assert!(msg.contains(VF_DPDK), "{msg}");
    assert!(msg.contains("no driver"), "{msg}");
}

/// Our own device-info keys still decide when the device is not in sysfs,
/// but sysfs is the truth for the driver when they disagree.
#[test]
fn sysfs_driver_wins_over_device_type() {
    let pod = Pod::new();
    pod.pci(VF_DPDK, Some("iavf"), "0", &["net1"]);
    pod.pci(VF_KERNEL, Some("vfio-pci"), "0", &[]);
    let dir = pod.path("devinfo");
    pod.write(
        "devinfo/a.json",
        &format!(
            r#"{{"type":"pci","version":"1.1.0","pci":{{"pci-address":"{VF_DPDK}","numa-node":0,"device-type":"vfio-pci","vfio-device":"/dev/vfio/71"}}}}"#
        ),
    );
    pod.write(
        "devinfo/b.json",
        &format!(
            r#"{{"type":"pci","version":"1.1.0","pci":{{"pci-address":"{VF_KERNEL}","numa-node":0,"device-type":"netdevice","interface":"net2"}}}}"#
        ),
    );
    let mut i = pod.inputs();
    i.network_status = NetworkStatus::Skip;
    i.devinfo_dir = Location::Required(dir);
    let plan = discover(&i).unwrap();
    assert!(
        plan.args().join(" ").ends_with(&format!(
            "-a {VF_KERNEL} --vdev net_af_packet_net1,iface=net1"
        )),
        "{:?}",
        plan.args()
    );
    // Each disagreement is noted.
    assert_eq!(plan.notes.len(), 2, "{:?}", plan.notes);
    assert!(
        plan.notes.iter().any(|n| n.contains("iavf")),
        "{:?}",
        plan.notes
    );
}

#[test]
fn numa_node_from_sysfs_only_when_the_document_has_none() {
    let pod = Pod::new();
    pod.pci(VF_DPDK, Some("vfio-pci"), "1", &[]);
    let doc = |numa: &str| {
        format!(
            r#"{{"type":"pci","pci":{{"pci-address":"{VF_DPDK}","device-type":"vfio-pci","numa-node":{numa}}}}}"#
        )
    };
    let mut i = pod.inputs();
    i.network_status = NetworkStatus::Skip;
    i.devinfo_dir = Location::Required(pod.path("devinfo"));
    pod.write("devinfo/a.json", &doc("-1"));
    assert!(args(&i).contains("--socket-mem 0,256"), "{}", args(&i));
    // The document's own node is kept (and the disagreement noted).
    pod.write("devinfo/a.json", &doc("0"));
    let plan = discover(&i).unwrap();
    assert_eq!(plan.socket_mem, vec![256, 0]);
    assert_eq!(plan.notes.len(), 1, "{:?}", plan.notes);
}

#[test]
fn device_plugin_variables_are_checked_against_sysfs_too() {
    let pod = Pod::new();
    pod.both_vfs("vfio-pci");
    // The device plugin's allocation alone: the upstream plugin gives no NUMA
    // node, sysfs does.
    let mut i = pod.inputs();
    i.network_status = NetworkStatus::Skip;
    i.env.push((
        "PCIDEVICE_INTEL_COM_INTEL_SRIOV_DPDK".into(),
        VF_DPDK.into(),
    ));
    i.env.push((
        "PCIDEVICE_INTEL_COM_INTEL_SRIOV_NETDEVICE".into(),
        VF_KERNEL.into(),
    ));
    assert!(
        args(&i).ends_with(&format!(
            "--socket-mem 0,256 -a {VF_DPDK} --vdev net_af_packet_net2,iface=net2"
        )),
        "{}",
        args(&i)
    );
    // With network-status as well: each VF once.
    i.network_status = pod.inputs().network_status;
    let plan = discover(&i).unwrap();
    assert_eq!(plan.devices.len(), 2, "{:?}", plan.devices);
}

#[test]
fn mlx5_vf_is_a_pci_device_only_with_its_rdma_device() {
    // A bifurcated driver: DPDK's mlx5 PMD drives the VF beside mlx5_core
    // through its RDMA device; without one only af_packet can use it.
    let pod = Pod::new();
    pod.pci(VF_DPDK, Some("vfio-pci"), "1", &[]);
    pod.pci(VF_KERNEL, Some("mlx5_core"), "1", &["net2"]);
    assert!(
        args(&pod.inputs()).ends_with("--vdev net_af_packet_net2,iface=net2"),
        "{}",
        args(&pod.inputs())
    );
    std::fs::create_dir_all(pod.path(&format!(
        "sys/devices/pci0000:3a/0000:3a:00.0/{VF_KERNEL}/infiniband/mlx5_3"
    )))
    .unwrap();
    assert!(
        args(&pod.inputs()).ends_with(&format!("-a {VF_DPDK} -a {VF_KERNEL}")),
        "{}",
        args(&pod.inputs())
    );
}
