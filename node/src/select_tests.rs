//! Selectors on a fake node, each against what the upstream plugin selects.

use std::fs;
use std::path::Path;

use vfio::fake::{FakeDevice, FakeNode};
use vfio::{PciAddress, Sysfs, VFIO_PCI};

use crate::config::Config;
use crate::pool::discover;

/// `ens1f0` (4 VFs, 0000:01:10.0, .2, .4, .6), `ens2f0` (2 VFs,
/// 0000:02:10.0, .2) and `ens3f0`, a PF with no VFs enabled.
fn node() -> (tempfile::TempDir, FakeNode) {
    let tmp = tempfile::tempdir().unwrap();
    let node = FakeNode::new(tmp.path()).unwrap();
    node.add_pf(addr("0000:01:00.0"), "ens1f0", 4, 8, 0, 10)
        .unwrap();
    node.add_pf(addr("0000:02:00.0"), "ens2f0", 2, 8, 1, 30)
        .unwrap();
    node.add_pf(addr("0000:03:00.0"), "ens3f0", 0, 8, 0, 50)
        .unwrap();
    (tmp, node)
}

fn addr(s: &str) -> PciAddress {
    s.parse().unwrap()
}

/// The devices of each pool of `config` (a `resourceList`), as addresses.
fn pools(node: &FakeNode, list: &str) -> Vec<Vec<String>> {
    let cfg = Config::parse(
        Path::new("t"),
        format!(r#"{{"resourceList": {list}}}"#).as_bytes(),
    )
    .unwrap();
    discover(&Sysfs::new(node.root()), &cfg, |_| false)
        .unwrap()
        .iter()
        .map(|p| p.devices.iter().map(|d| d.addr.to_string()).collect())
        .collect()
}

fn one(node: &FakeNode, selectors: &str) -> Vec<String> {
    pools(
        node,
        &format!(r#"[{{"resourceName": "p", "selectors": {selectors}}}]"#),
    )
    .remove(0)
}

fn dev_dir(node: &FakeNode, a: &str) -> std::path::PathBuf {
    Sysfs::new(node.root()).pci_devices_dir().join(a)
}

fn put(path: &Path, data: &str) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, data).unwrap();
}

#[test]
fn pf_names_and_root_devices_take_vfs_only() {
    let (_t, node) = node();
    // ens3f0 has no VFs: a candidate, but it has no PF, so neither
    // pfNames nor rootDevices take it.
    assert!(one(&node, r#"{"pfNames": ["ens3f0"]}"#).is_empty());
    assert!(one(&node, r#"{"rootDevices": ["0000:03:00.0"]}"#).is_empty());
    assert_eq!(
        one(&node, r#"{"pciAddresses": ["0000:03:00.0"]}"#),
        ["0000:03:00.0"]
    );
    // A PF with VFs enabled is never a candidate.
    assert!(one(&node, r#"{"pciAddresses": ["0000:01:00.0"]}"#).is_empty());
    // PF names compare ignoring case, as upstream's.
    assert_eq!(
        one(&node, r#"{"pfNames": ["ENS2F0"]}"#),
        ["0000:02:10.0", "0000:02:10.2"]
    );
}

#[test]
fn root_devices_with_vf_ranges() {
    let (_t, node) = node();
    assert_eq!(
        one(
            &node,
            r#"{"rootDevices": ["0000:01:00.0#1-2", "0000:02:00.0#1"]}"#
        ),
        ["0000:01:10.2", "0000:01:10.4", "0000:02:10.2"]
    );
    assert_eq!(
        one(
            &node,
            r#"[{"rootDevices": ["0000:01:00.0#0"]}, {"pfNames": ["ens1f0#3"]}]"#
        ),
        ["0000:01:10.0", "0000:01:10.6"]
    );
}

#[test]
fn link_types_from_the_netdev_or_its_pf() {
    let (_t, node) = node();
    // ens2f0 is InfiniBand (ARPHRD 32); its VF 1 has no netdev (vfio-pci)
    // and takes its PF's type.
    put(
        &dev_dir(&node, "0000:02:00.0").join("net/ens2f0/type"),
        "32\n",
    );
    put(
        &dev_dir(&node, "0000:02:10.0").join("net/ens2f0v0/type"),
        "32\n",
    );
    node.sysfs()
        .bind_driver(addr("0000:02:10.2"), VFIO_PCI, Default::default())
        .unwrap();
    assert_eq!(
        one(&node, r#"{"linkTypes": ["infiniband"]}"#),
        ["0000:02:10.0", "0000:02:10.2"]
    );
    let ether = one(&node, r#"{"linkTypes": ["ether"]}"#);
    assert_eq!(ether.len(), 5, "{ether:?}");
    assert!(ether.iter().all(|a| !a.starts_with("0000:02:")));
    // Not a type the kernel names: nothing, as upstream.
    assert!(one(&node, r#"{"linkTypes": ["eth"]}"#).is_empty());
}

#[test]
fn acpi_indexes() {
    let (_t, node) = node();
    put(&dev_dir(&node, "0000:01:10.2").join("acpi_index"), "101\n");
    assert_eq!(
        one(&node, r#"{"acpiIndexes": ["101", "7"]}"#),
        ["0000:01:10.2"]
    );
}

#[test]
fn rdma_and_partition_keys() {
    let (_t, node) = node();
    assert!(
        one(&node, r#"{"isRdma": true}"#).is_empty(),
        "no RDMA device on the node: isRdma selects nothing"
    );
    let vf = dev_dir(&node, "0000:02:10.0");
    put(&vf.join("infiniband/mlx5_2/ports/1/pkeys/0"), "0x8001\n");
    put(&vf.join("infiniband/mlx5_2/ports/1/pkeys/1"), "0x0066\n");
    let vf2 = dev_dir(&node, "0000:02:10.2");
    put(&vf2.join("infiniband/mlx5_3/ports/1/pkeys/0"), "0x0066\n");
    assert_eq!(
        one(&node, r#"{"isRdma": true}"#),
        ["0000:02:10.0", "0000:02:10.2"]
    );
    // pKeys: the default (index 0) key, and only on InfiniBand links.
    assert!(one(&node, r#"{"pKeys": ["0x8001"]}"#).is_empty());
    put(&vf.join("net/ens2f0v0/type"), "32\n");
    put(&vf2.join("net/ens2f0v1/type"), "32\n");
    assert_eq!(one(&node, r#"{"pKeys": ["0x8001"]}"#), ["0000:02:10.0"]);
    assert_eq!(one(&node, r#"{"pKeys": ["0x0066"]}"#), ["0000:02:10.2"]);
}

#[test]
fn a_netdev_with_the_default_route_is_never_taken() {
    let (_t, node) = node();
    put(
        &node.root().join("proc/net/route"),
        "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n\
         ens3f0\t00000000\t0102A8C0\t0003\t0\t0\t0\t00000000\t0\t0\t0\n\
         ens1f0v1\t0002A8C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n",
    );
    assert!(one(&node, r#"{"pciAddresses": ["0000:03:00.0"]}"#).is_empty());
    // A route that is not the default one does not count.
    assert_eq!(one(&node, r#"{"pfNames": ["ens1f0#1"]}"#), ["0000:01:10.2"]);
}

#[test]
fn what_is_not_served_selects_nothing() {
    let (_t, node) = node();
    for s in [
        r#"{"ddpProfiles": ["GTP"]}"#,
        r#"{"vdpaType": "vhost"}"#,
        r#"{"vdpaType": "virtio", "pfNames": ["ens1f0"]}"#,
    ] {
        assert!(one(&node, s).is_empty(), "{s}");
    }
    let aux = pools(
        &node,
        r#"[{"resourceName": "sf", "deviceType": "auxNetDevice",
             "selectors": {"pfNames": ["ens1f0"], "auxTypes": ["sf"]}}]"#,
    );
    assert!(aux[0].is_empty());
    // needVhostNet is for Allocate: it narrows nothing.
    assert_eq!(
        one(&node, r#"{"needVhostNet": true, "pfNames": ["ens2f0"]}"#).len(),
        2
    );
}

#[test]
fn accelerators_by_class_and_four_selectors() {
    let (_t, node) = node();
    // An Intel FEC accelerator VF (class 0x120000) on vfio-pci.
    node.add_device(&FakeDevice {
        address: addr("0000:b1:00.1"),
        vendor: 0x8086,
        device: 0x0d5d,
        class: 0x120000,
        driver: Some(VFIO_PCI.into()),
        default_driver: None,
        iommu_group: Some(90),
        numa_node: 1,
        netdev: None,
    })
    .unwrap();
    let p = pools(
        &node,
        r#"[{"resourceName": "fec", "deviceType": "accelerator",
              "selectors": {"vendors": ["8086"], "drivers": ["vfio-pci"], "pfNames": ["nothing"]}},
            {"resourceName": "net", "selectors": {"vendors": ["8086"]}}]"#,
    );
    // pfNames means nothing to an accelerator pool (upstream ignores it).
    assert_eq!(p[0], ["0000:b1:00.1"]);
    // A network pool never takes an accelerator.
    assert_eq!(p[1].len(), 7, "{:?}", p[1]);
    assert!(!p[1].contains(&"0000:b1:00.1".to_string()));
}
