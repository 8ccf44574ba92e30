//! `node.json` (a node's PCI functions as the device plugin sees them) laid
//! out as a fake sysfs tree: `vfio::fake::FakeNode` gives each function its
//! IDs, class, NUMA node, IOMMU group, driver and netdev; this file adds what
//! the selectors read beyond those: `sriov_totalvfs`/`sriov_numvfs`, the
//! `physfn` and `virtfnN` links, each netdev's link `type`, `infiniband/`
//! for an RDMA device, and `/proc/net/route` for the default route.

use std::collections::BTreeSet;
use std::fs;
use std::os::unix::fs::symlink;
use std::path::Path;

use serde::Deserialize;
use vfio::fake::{FakeDevice, FakeNode};
use vfio::{PciAddress, Sysfs};

use super::case::data_dir;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Device {
    pub address: String,
    pub vendor: String,
    pub device: String,
    pub class: String,
    pub driver: Option<String>,
    pub netdev: Option<String>,
    pub numa_node: i32,
    #[serde(default)]
    pub sriov_totalvfs: Option<u32>,
    #[serde(default)]
    pub sriov_numvfs: Option<u32>,
    #[serde(default)]
    pub physfn: Option<String>,
    #[serde(default)]
    pub vf_index: Option<u32>,
    #[serde(default)]
    pub default_route: bool,
    #[serde(default)]
    pub rdma: bool,
    #[serde(default)]
    pub link_type: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeDesc {
    pub description: String,
    pub devices: Vec<Device>,
}

pub fn load_node(name: &str) -> NodeDesc {
    let p = data_dir().join(name);
    let t = fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    serde_json::from_str(&t).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

impl NodeDesc {
    pub fn device(&self, addr: &str) -> Option<&Device> {
        self.devices.iter().find(|d| d.address == addr)
    }

    /// What makes the description one the tree cannot be built from.
    pub fn problems(&self) -> Vec<String> {
        let mut p = Vec::new();
        let mut seen = BTreeSet::new();
        for d in &self.devices {
            if !seen.insert(&d.address) {
                p.push(format!("{} twice", d.address));
            }
            if d.address.parse::<PciAddress>().is_err() {
                p.push(format!("{}: not a PCI address", d.address));
            }
            if let Some(pf) = &d.physfn {
                let ok = self
                    .device(pf)
                    .is_some_and(|p| d.vf_index.is_some_and(|i| p.sriov_numvfs.unwrap_or(0) > i));
                if !ok {
                    p.push(format!(
                        "{}: its PF {pf} is not on the node or has no VF {:?}",
                        d.address, d.vf_index
                    ));
                }
            }
        }
        p
    }
}

fn hex16(s: &str) -> u16 {
    u16::from_str_radix(s.trim_start_matches("0x"), 16).unwrap_or_else(|e| panic!("{s}: {e}"))
}

/// The kernel's ARPHRD number for `ip link`'s name of a link type.
fn arphrd(link_type: &str) -> u32 {
    match link_type {
        "ether" => 1,
        "infiniband" => 32,
        t => panic!("node.json: link type {t:?} is not one this harness lays out"),
    }
}

/// Lays the node out under `root`.
pub fn build(root: &Path, node: &NodeDesc) -> FakeNode {
    let fake = FakeNode::new(root).unwrap();
    let drivers: BTreeSet<&str> = node
        .devices
        .iter()
        .filter_map(|d| d.driver.as_deref())
        .collect();
    for drv in drivers {
        fake.add_driver(drv).unwrap();
    }
    let sysfs = Sysfs::new(root);
    let dir = |addr: &str| sysfs.pci_devices_dir().join(addr);
    for (i, d) in node.devices.iter().enumerate() {
        fake.add_device(&FakeDevice {
            address: d.address.parse().unwrap(),
            vendor: hex16(&d.vendor),
            device: hex16(&d.device),
            class: u32::from_str_radix(d.class.trim_start_matches("0x"), 16).unwrap(),
            driver: d.driver.clone(),
            // The emulated kernel gives a function its netdev while it is on
            // this driver: a VF on vfio-pci has none.
            default_driver: d.netdev.as_ref().and(d.driver.clone()),
            iommu_group: Some(i as u32 + 1),
            numa_node: d.numa_node,
            netdev: d.netdev.clone(),
        })
        .unwrap();
        let at = dir(&d.address);
        if let Some(total) = d.sriov_totalvfs {
            fs::write(at.join("sriov_totalvfs"), format!("{total}\n")).unwrap();
            fs::write(
                at.join("sriov_numvfs"),
                format!("{}\n", d.sriov_numvfs.unwrap_or(0)),
            )
            .unwrap();
        }
        if let Some(name) = &d.netdev {
            // A VF's netdev has its PF's link type.
            let pf = d.physfn.as_deref().and_then(|a| node.device(a));
            let t = d
                .link_type
                .as_deref()
                .or(pf.and_then(|p| p.link_type.as_deref()))
                .unwrap_or("ether");
            fs::write(
                at.join("net").join(name).join("type"),
                format!("{}\n", arphrd(t)),
            )
            .unwrap();
        }
        if d.rdma {
            fs::create_dir_all(at.join("infiniband").join(format!("mlx5_{i}"))).unwrap();
        }
    }
    for d in &node.devices {
        if let (Some(pf), Some(idx)) = (&d.physfn, d.vf_index) {
            symlink(dir(pf), dir(&d.address).join("physfn")).unwrap();
            symlink(dir(&d.address), dir(pf).join(format!("virtfn{idx}"))).unwrap();
        }
    }
    // /proc/net/route: the default route (destination and mask 0) on the
    // netdevs that carry it.
    let mut route = String::from(
        "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n",
    );
    for n in node.devices.iter().filter(|d| d.default_route) {
        let name = n
            .netdev
            .as_deref()
            .expect("a netdev carries the default route");
        route.push_str(&format!(
            "{name}\t00000000\t0100000A\t0003\t0\t0\t100\t00000000\t0\t0\t0\n"
        ));
    }
    fs::create_dir_all(root.join("proc/net")).unwrap();
    fs::write(root.join("proc/net/route"), route).unwrap();
    fake
}
