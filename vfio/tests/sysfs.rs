//! The vfio crate against fake sysfs trees.

use std::time::Duration;

use vfio::fake::{FakeDevice, FakeNode};
use vfio::{BindOptions, IommuMode, PciAddress, VfioError};

fn addr(s: &str) -> PciAddress {
    s.parse().unwrap()
}

fn node_with_pf(numvfs: u32) -> (tempfile::TempDir, FakeNode, vfio::fake::FakePf) {
    let tmp = tempfile::tempdir().unwrap();
    let node = FakeNode::new(tmp.path()).unwrap();
    let pf = node
        .add_pf(addr("0000:18:00.0"), "ens1f0", numvfs, 63, 1, 40)
        .unwrap();
    (tmp, node, pf)
}

#[test]
fn reads_device_facts() {
    let (_t, node, pf) = node_with_pf(3);
    let sysfs = node.sysfs();
    let p = sysfs.device(pf.address).unwrap();
    assert_eq!(p.vendor().unwrap(), 0x8086);
    assert_eq!(p.device_id().unwrap(), 0x10c9);
    assert_eq!(p.class().unwrap(), 0x020000);
    assert_eq!(p.driver().unwrap().as_deref(), Some("igb"));
    assert_eq!(p.driver_override().unwrap(), None);
    assert_eq!(p.numa_node().unwrap(), Some(1));
    assert_eq!(p.sriov_numvfs().unwrap(), Some(3));
    assert_eq!(p.sriov_totalvfs().unwrap(), Some(63));
    assert_eq!(p.net_names().unwrap(), vec!["ens1f0"]);
    assert_eq!(p.physfn().unwrap(), None);
    assert_eq!(p.virtfns().unwrap().len(), 3);
    assert_eq!(p.virtfn(2).unwrap(), Some(pf.vfs[2]));
    assert_eq!(p.virtfn(3).unwrap(), None);

    let v = sysfs.device(pf.vfs[1]).unwrap();
    assert_eq!(v.physfn().unwrap(), Some(pf.address));
    assert_eq!(v.vf_index().unwrap(), 1);
    assert_eq!(v.iommu_group().unwrap(), Some(42));
    assert_eq!(v.iommu_group_members().unwrap(), vec![pf.vfs[1]]);
    assert_eq!(v.net_names().unwrap(), vec!["ens1f0v1"]);
    assert_eq!(v.sriov_numvfs().unwrap(), None);
    assert_eq!(sysfs.device_of_netdev("ens1f0").unwrap(), pf.address);
    assert!(matches!(p.vf_index(), Err(VfioError::NotAVf(a)) if a == pf.address));
}

#[test]
fn numa_minus_one_is_none_and_garbage_is_an_error() {
    let (_t, node, pf) = node_with_pf(1);
    let sysfs = node.sysfs();
    let dir = sysfs.pci_devices_dir().join(pf.vfs[0].to_string());
    std::fs::write(dir.join("numa_node"), "-1\n").unwrap();
    assert_eq!(sysfs.device(pf.vfs[0]).unwrap().numa_node().unwrap(), None);
    std::fs::write(dir.join("numa_node"), "zero\n").unwrap();
    let err = sysfs.device(pf.vfs[0]).unwrap().numa_node().unwrap_err();
    assert!(err.to_string().contains("numa_node"), "{err}");
}

#[test]
fn missing_device_names_the_path() {
    let (_t, node, _) = node_with_pf(1);
    let err = node.sysfs().device(addr("0000:99:00.0")).unwrap_err();
    assert!(matches!(err, VfioError::NoSuchDevice(..)));
    assert!(
        err.to_string().contains("sys/bus/pci/devices/0000:99:00.0"),
        "{err}"
    );
}

#[test]
fn group_with_a_kernel_driver_peer_is_not_viable() {
    let (_t, node, pf) = node_with_pf(1);
    // Put a second device, still on a kernel driver, into the VF's group.
    node.add_device(&FakeDevice {
        address: addr("0000:30:00.0"),
        vendor: 0x8086,
        device: 0x1234,
        class: 0x020000,
        driver: Some("igb".into()),
        default_driver: Some("igb".into()),
        iommu_group: Some(41),
        numa_node: 0,
        netdev: None,
    })
    .unwrap();
    let sysfs = node.sysfs();
    let err = sysfs.check_vfio_viable(pf.vfs[0]).unwrap_err();
    match &err {
        VfioError::GroupNotViable {
            group,
            member,
            driver,
            ..
        } => {
            assert_eq!(*group, 41);
            assert_eq!(member.to_string(), "0000:30:00.0");
            assert_eq!(driver, "igb");
        }
        other => panic!("unexpected {other}"),
    }
    // Once the peer is on vfio-pci the group is viable.
    sysfs
        .bind_driver(addr("0000:30:00.0"), "vfio-pci", BindOptions::default())
        .unwrap();
    assert_eq!(
        sysfs.check_vfio_viable(pf.vfs[0]).unwrap(),
        (Some(41), IommuMode::Iommu)
    );
}

#[test]
fn no_iommu_is_a_clear_error() {
    let (_t, node, pf) = node_with_pf(1);
    node.disable_iommu().unwrap();
    let sysfs = node.sysfs();
    assert_eq!(sysfs.iommu_mode(), None);
    let err = sysfs.check_vfio_viable(pf.vfs[0]).unwrap_err();
    assert!(err.to_string().contains("intel_iommu=on"), "{err}");
}

#[test]
fn bind_that_never_happens_times_out_clearly() {
    let (_t, node, pf) = node_with_pf(1);
    node.refuse_bind(pf.vfs[0], "vfio-pci").unwrap();
    let sysfs = node.sysfs();
    let opts = BindOptions {
        timeout: Duration::from_millis(50),
    };
    let err = sysfs.bind_driver(pf.vfs[0], "vfio-pci", opts).unwrap_err();
    assert!(matches!(err, VfioError::Timeout { .. }), "{err}");
    assert!(err.to_string().contains("to bind to vfio-pci"), "{err}");
}

#[test]
fn missing_vfio_pci_driver_is_reported_before_anything_is_written() {
    let (_t, node, pf) = node_with_pf(1);
    node.remove_driver("vfio-pci").unwrap();
    let before = node.snapshot();
    let err = node
        .sysfs()
        .bind_driver(pf.vfs[0], "vfio-pci", BindOptions::default())
        .unwrap_err();
    assert!(err.to_string().contains("modprobe vfio-pci"), "{err}");
    assert_eq!(node.snapshot(), before);
}

#[test]
fn bind_writes_override_unbind_and_probe_and_creates_the_group_node() {
    let (_t, node, pf) = node_with_pf(2);
    let sysfs = node.sysfs();
    let vf = pf.vfs[1];
    sysfs
        .bind_driver(vf, "vfio-pci", BindOptions::default())
        .unwrap();
    let dev = sysfs.device(vf).unwrap();
    assert_eq!(dev.driver_override().unwrap().as_deref(), Some("vfio-pci"));
    let writes = node.writes();
    let want = [
        (
            format!("sys/bus/pci/devices/{vf}/driver_override"),
            "vfio-pci".to_string(),
        ),
        (
            "sys/bus/pci/drivers/igbvf/unbind".to_string(),
            vf.to_string(),
        ),
        ("sys/bus/pci/drivers_probe".to_string(), vf.to_string()),
    ];
    assert_eq!(writes, want);
    let node_path = sysfs
        .wait_vfio_group_node(42, IommuMode::Iommu, BindOptions::default())
        .unwrap();
    assert!(node_path.ends_with("dev/vfio/42"));
    // Handing it back clears the override and brings the netdev back.
    sysfs
        .restore_driver(vf, Some("igbvf"), None, BindOptions::default())
        .unwrap();
    assert_eq!(dev.driver_override().unwrap(), None);
    assert_eq!(dev.driver().unwrap().as_deref(), Some("igbvf"));
    assert!(!node_path.exists());
}
