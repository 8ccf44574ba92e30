//! What one allocated device gives a container, by the kind of device, as
//! the SR-IOV network device plugin's info providers give it:
//!
//! | provider  | when | device nodes | `_INFO` keys |
//! |-----------|------|--------------|--------------|
//! | `generic` | always | none | `deviceID` |
//! | `vfio`    | on vfio-pci, or on a kernel driver in a pool whose `drivers` list `vfio-pci` (the CNI binds it at ADD) | `/dev/vfio/vfio`, `/dev/vfio/<group>` | `mount`, `dev-mount` |
//! | `uio`     | on `igb_uio`, `uio` or `uio_pci_generic` | `/dev/uioN` (from `<bdf>/uio/`) | `mount` |
//! | `extra`   | the pool has `additionalInfo` | none | its `"*"` and `"<bdf>"` entries |
//! | `rdma`    | a selector has `isRdma` | the RDMA character devices | `uverbs`, `umad`, `issm`, `rdma_cm`, `rdma_dev` |
//! | `vhost`   | a selector has `needVhostNet` | `/dev/vhost-net`, `/dev/net/tun` | `net-mount`, `tun-mount` |
//!
//! A device on a kernel driver (a netdevice pool) gets only `generic`: no
//! vfio group node, since the CNI moves its netdev into the pod instead.
//! Where the upstream plugin quietly hands out less (a uio device without a
//! `uio` entry, an RDMA pool's device without RDMA, no `/dev/vhost-net`),
//! Allocate is refused with what to fix: a pod started without the device
//! node it asked for fails later and less clearly.

use std::collections::BTreeMap;

use ledger::Ledger;
use vfio::{Sysfs, VFIO_PCI};

use crate::allocate::group_node;
use crate::api::DeviceSpec;
use crate::devinfo::{DeviceInfo, PciInfo};
use crate::error::{NodeError, Result};
use crate::pool::{Device, Pool};
use crate::rdma;

/// The `_INFO` entries of one device: provider name to its keys.
pub type Info = BTreeMap<String, BTreeMap<String, String>>;

/// The drivers that make a device a uio device (`uio` and `igb_uio` are the
/// upstream plugin's; `uio_pci_generic` makes `/dev/uioN` the same way).
pub const UIO_DRIVERS: [&str; 3] = ["igb_uio", "uio", "uio_pci_generic"];
pub const VFIO_CONTAINER: &str = "/dev/vfio/vfio";
pub const VHOST_NET: &str = "/dev/vhost-net";
pub const TUN: &str = "/dev/net/tun";

/// How a device reaches the container.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// vfio-pci: the group node.
    Vfio,
    /// igb_uio / uio_pci_generic: `/dev/uioN`.
    Uio,
    /// A kernel driver: the CNI moves its netdev; no device node.
    Kernel,
}

/// The kind of a device on `driver` in `pool`.
pub fn kind_of(pool: &Pool, driver: Option<&str>) -> Kind {
    match driver {
        Some(VFIO_PCI) => Kind::Vfio,
        Some(d) if UIO_DRIVERS.contains(&d) => Kind::Uio,
        // Kernel-driven or unbound: vfio only where the pool asks for
        // vfio-pci devices, which dpdk-cni's ADD makes them.
        _ if pool_wants_vfio(pool) => Kind::Vfio,
        _ => Kind::Kernel,
    }
}

fn pool_wants_vfio(pool: &Pool) -> bool {
    pool.config
        .selectors
        .iter()
        .any(|s| s.drivers.iter().any(|d| d == VFIO_PCI))
}

fn is_rdma(pool: &Pool) -> bool {
    pool.config.selectors.iter().any(|s| s.is_rdma)
}

fn needs_vhost(pool: &Pool) -> bool {
    pool.config.selectors.iter().any(|s| s.need_vhost_net)
}

/// What one device gives: its device nodes (in provider order), its
/// `_INFO` entries and its device-info document.
#[derive(Debug, Clone, PartialEq)]
pub struct Grant {
    pub kind: Kind,
    pub specs: Vec<DeviceSpec>,
    pub info: Info,
    pub devinfo: DeviceInfo,
}

impl Grant {
    /// A device whose netdev the CNI plugin hands over: no node, its
    /// address in the `_INFO` entry.
    pub fn netdev(dev: &Device) -> Grant {
        let id = dev.addr.to_string();
        let mut info = Info::new();
        info.insert("generic".into(), entry([("deviceID", id.clone())]));
        Grant {
            kind: Kind::Kernel,
            specs: Vec::new(),
            info,
            devinfo: DeviceInfo::pci(PciInfo {
                pci_address: id,
                pf_pci_address: dev.pf.map(|p| p.to_string()),
                ..Default::default()
            }),
        }
    }
}

/// At Allocate (the no-IOMMU early bind may happen, recorded in `ledger`),
/// or only to describe the device (a CDI spec): no change on the node, and
/// a group not known yet is left out.
#[derive(Debug, Clone, Copy)]
pub enum Mode<'a> {
    Allocate(Option<&'a Ledger>),
    Describe,
}

fn spec(host: &str, container: &str) -> DeviceSpec {
    DeviceSpec {
        container_path: container.into(),
        host_path: host.into(),
        permissions: "rw".into(),
    }
}

fn entry<const N: usize>(kv: [(&str, String); N]) -> BTreeMap<String, String> {
    kv.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
}

/// What `dev` of `pool` gives a container now.
pub fn grant(sysfs: &Sysfs, pool: &Pool, dev: &Device, mode: Mode<'_>) -> Result<Grant> {
    let addr = dev.addr;
    let id = addr.to_string();
    let driver = sysfs.device(addr)?.driver()?;
    let kind = kind_of(pool, driver.as_deref());
    let mut specs = Vec::new();
    let mut info = Info::new();
    let mut pci = PciInfo {
        pci_address: id.clone(),
        pf_pci_address: dev.pf.map(|p| p.to_string()),
        ..Default::default()
    };
    info.insert("generic".into(), entry([("deviceID", id.clone())]));
    match kind {
        Kind::Vfio => {
            let node = match mode {
                Mode::Allocate(ledger) => Some(group_node(sysfs, addr, ledger)?),
                Mode::Describe => describe_group(sysfs, dev),
            };
            specs.push(spec(VFIO_CONTAINER, VFIO_CONTAINER));
            let mut v = entry([("mount", VFIO_CONTAINER.to_string())]);
            if let Some(n) = node {
                let container = n.container.display().to_string();
                specs.push(spec(&n.host.display().to_string(), &container));
                v.insert("dev-mount".into(), container);
            }
            info.insert("vfio".into(), v);
        }
        Kind::Uio => {
            let dir = sysfs.pci_devices_dir().join(&id).join("uio");
            let mut names: Vec<String> = std::fs::read_dir(&dir)
                .into_iter()
                .flatten()
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect();
            names.sort();
            let Some(first) = names.first() else {
                return Err(NodeError::Allocate(format!(
                    "{id} is on {} but {} lists no uio device: reload the driver or rebind the device",
                    driver.as_deref().unwrap_or("a uio driver"),
                    dir.display()
                )));
            };
            let node = format!("/dev/{first}");
            specs.push(spec(&node, &node));
            info.insert("uio".into(), entry([("mount", node)]));
        }
        Kind::Kernel => {}
    }
    if !pool.config.additional_info.is_empty() {
        info.insert("extra".into(), pool.config.extra_info(addr));
    }
    if is_rdma(pool) {
        let names = rdma::devices_of(sysfs, addr);
        if names.is_empty() {
            return Err(NodeError::Allocate(format!(
                "{id} is in RDMA pool {} but has no RDMA device in {}: load its RDMA driver (e.g. mlx5_ib)",
                pool.resource,
                sysfs.pci_devices_dir().join(&id).join("infiniband").display()
            )));
        }
        let mut r = BTreeMap::new();
        for name in &names {
            for node in rdma::char_devices(sysfs, name) {
                for key in ["uverbs", "umad", "issm", "rdma_cm"] {
                    if node.contains(key) {
                        r.insert(key.to_string(), node.clone());
                    }
                }
                specs.push(spec(&node, &node));
            }
        }
        r.insert("rdma_dev".into(), names[0].clone());
        info.insert("rdma".into(), r);
        pci.rdma_device = Some(names.join(","));
    }
    if needs_vhost(pool) {
        for node in [VHOST_NET, TUN] {
            if !sysfs.root().join(&node[1..]).exists() {
                return Err(NodeError::Allocate(format!(
                    "pool {} needs vhost-net but {node} does not exist on the node: load the vhost_net and tun modules",
                    pool.resource
                )));
            }
            specs.push(spec(node, node));
        }
        info.insert(
            "vhost".into(),
            entry([
                ("net-mount", VHOST_NET.to_string()),
                ("tun-mount", TUN.to_string()),
            ]),
        );
        pci.vhost_net = Some(VHOST_NET.to_string());
    }
    Ok(Grant {
        kind,
        specs,
        info,
        devinfo: DeviceInfo::pci(pci),
    })
}

/// The group node as far as it is known without changing anything: the
/// group found at discovery, `noiommu-N` on the host when that exists.
fn describe_group(sysfs: &Sysfs, dev: &Device) -> Option<crate::allocate::GroupNode> {
    let g = sysfs
        .device(dev.addr)
        .ok()
        .and_then(|d| d.iommu_group().ok().flatten())
        .or(dev.iommu_group)?;
    let container = std::path::PathBuf::from(format!("/dev/vfio/{g}"));
    let noiommu = sysfs.dev_vfio_dir().join(format!("noiommu-{g}"));
    let host = if noiommu.exists() {
        std::path::PathBuf::from(format!("/dev/vfio/noiommu-{g}"))
    } else {
        container.clone()
    };
    Some(crate::allocate::GroupNode {
        group: g,
        host,
        container,
    })
}
