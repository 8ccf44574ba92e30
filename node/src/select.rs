//! Which of the node's PCI functions a pool's selectors take, with the SR-IOV
//! network device plugin's meaning, read from sysfs.
//!
//! - `netDevice` pools take network functions (class 0x02): VFs, and PFs
//!   with no VFs enabled; never a function whose netdev carries the IPv4
//!   default route (`/proc/net/route`, the main table, as upstream's netlink
//!   query). `accelerator` pools take class 0x12 functions and read only
//!   `vendors`, `devices`, `drivers` and `pciAddresses`. `auxNetDevice`
//!   pools take nothing: auxiliary devices are not served here.
//! - `vendors` and `devices` compare as hex numbers; `drivers`,
//!   `acpiIndexes` (`acpi_index`), `linkTypes` and `pKeys` as strings.
//! - `pfNames` and `rootDevices` select VFs only (a PF has no PF), by the
//!   PF's netdev name (ignoring case) or PCI address, and the VF's index
//!   when the entry has ranges (`#0,2-7`).
//! - `linkTypes`: the kernel's type of the function's netdev, or of its PF's
//!   when it has none (a VF on vfio-pci): `ether`, `infiniband`, ...
//! - `pKeys`: the InfiniBand default partition key (index 0 of port 1 in
//!   `infiniband/<dev>/ports/1/pkeys/`), only for `infiniband` links.
//! - `isRdma`: only functions with an RDMA device (`infiniband/`).
//! - `ddpProfiles` and `vdpaType` select nothing: that is what the upstream
//!   plugin does on a node without DDP tooling or vDPA devices, and this
//!   daemon queries neither.
//! - `needVhostNet` selects nothing by itself (it is for Allocate).

use std::collections::{BTreeSet, HashMap};
use std::fs;
use std::path::Path;

use vfio::{PciAddress, PciDevice, Sysfs, VFIO_PCI};

use crate::config::{DeviceType, PfName, RootDevice, Selectors};
use crate::error::Result;
use crate::pool::Device;

/// PCI class (base class byte) of network controllers.
const CLASS_NETWORK: u32 = 0x02;
/// PCI class (base class byte) of processing accelerators.
const CLASS_ACCELERATOR: u32 = 0x12;
/// The network subclass of InfiniBand controllers (class 0x0207).
const SUBCLASS_INFINIBAND: u32 = 0x07;

/// Facts about a candidate device, read once per discovery.
#[derive(Debug, Clone)]
pub(crate) struct Candidate {
    pub dev: Device,
    /// The 24-bit PCI class code.
    class: u32,
    /// The PF's netdev names (VFs only).
    pf_names: Vec<String>,
    /// A PF with VFs enabled.
    pf_with_vfs: bool,
    link_type: String,
    acpi_index: String,
    rdma: bool,
    pkey: String,
    default_route: bool,
}

fn hex_match(list: &[String], v: u16) -> bool {
    list.is_empty()
        || list.iter().any(|s| {
            let s = s.trim().trim_start_matches("0x");
            u16::from_str_radix(s, 16).ok() == Some(v)
        })
}

fn str_match(list: &[String], v: &str) -> bool {
    list.is_empty() || list.iter().any(|s| s == v)
}

/// Whether a pool of type `dt` may take `c` at all.
pub(crate) fn takes(dt: DeviceType, c: &Candidate) -> bool {
    match dt {
        DeviceType::NetDevice => {
            c.class >> 16 == CLASS_NETWORK && !c.pf_with_vfs && !c.default_route
        }
        DeviceType::Accelerator => c.class >> 16 == CLASS_ACCELERATOR,
        DeviceType::AuxNetDevice => false,
    }
}

/// Whether `sel` takes `c` in a pool of type `dt`. `claimed`: the CNI
/// ledger says a pod holds (or may hold) the device, so it is on vfio-pci
/// whatever its pool's `drivers` say.
pub(crate) fn selector_matches(
    sel: &Selectors,
    dt: DeviceType,
    c: &Candidate,
    claimed: bool,
) -> bool {
    let d = &c.dev;
    let generic = hex_match(&sel.vendors, d.vendor)
        && hex_match(&sel.devices, d.device_id)
        && (sel.drivers.is_empty()
            || d.driver
                .as_deref()
                .is_some_and(|drv| sel.drivers.iter().any(|s| s == drv))
            || (claimed && d.driver.as_deref() == Some(VFIO_PCI)))
        && (sel.pci_addresses.is_empty()
            || sel
                .pci_addresses
                .iter()
                .any(|a| a.parse::<PciAddress>().ok() == Some(d.addr)));
    match dt {
        DeviceType::Accelerator => generic,
        DeviceType::AuxNetDevice => false,
        DeviceType::NetDevice => {
            generic
                && str_match(&sel.acpi_indexes, &c.acpi_index)
                && (sel.pf_names.is_empty()
                    || (d.pf.is_some()
                        && sel.pf_names.iter().any(|n| {
                            n.parse::<PfName>().is_ok_and(|p| {
                                c.pf_names.iter().any(|pf| p.matches(pf, d.vf_index))
                            })
                        })))
                && (sel.root_devices.is_empty()
                    || d.pf.is_some_and(|pf| {
                        sel.root_devices.iter().any(|r| {
                            r.parse::<RootDevice>()
                                .is_ok_and(|r| r.matches(pf, d.vf_index))
                        })
                    }))
                && str_match(&sel.link_types, &c.link_type)
                && sel.ddp_profiles.is_empty()
                && (sel.p_keys.is_empty()
                    || (!c.pkey.is_empty() && str_match(&sel.p_keys, &c.pkey)))
                && (!sel.is_rdma || c.rdma)
                && sel.vdpa_type.is_empty()
        }
    }
}

/// The first line of a sysfs attribute, trimmed; empty when absent.
fn attr(dir: &Path, name: &str) -> String {
    fs::read_to_string(dir.join(name))
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// `ip link`'s name for an ARPHRD type.
fn link_type_name(arphrd: u32) -> String {
    match arphrd {
        1 => "ether".into(),
        32 => "infiniband".into(),
        772 => "loopback".into(),
        801 => "ieee80211".into(),
        0xfffe => "none".into(),
        n => n.to_string(),
    }
}

/// The link type of the first netdev in `dev`'s `net/`, if it has one.
fn netdev_link_type(dev: &PciDevice<'_>, class: u32) -> Option<String> {
    let name = dev.net_names().ok()?.into_iter().next()?;
    let t = attr(&dev.dir().join("net").join(name), "type");
    Some(match t.parse::<u32>() {
        Ok(n) => link_type_name(n),
        // A tree without the attribute: the class says it.
        Err(_) if (class >> 8) & 0xff == SUBCLASS_INFINIBAND => "infiniband".into(),
        Err(_) => "ether".into(),
    })
}

/// The netdevs holding an IPv4 default route in the main table.
fn default_route_netdevs(root: &Path) -> BTreeSet<String> {
    let text = fs::read_to_string(root.join("proc/net/route")).unwrap_or_default();
    text.lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            // Iface Destination Gateway Flags RefCnt Use Metric Mask ...
            (f.len() >= 8 && f[1] == "00000000" && f[7] == "00000000").then(|| f[0].to_string())
        })
        .collect()
}

/// The device's RDMA devices (`infiniband/`), sorted.
fn rdma_devices(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir.join("infiniband"))
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| e.file_name().to_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// Every network and accelerator function of the node, with what the
/// selectors need to know about it.
pub(crate) fn candidates(sysfs: &Sysfs) -> Result<Vec<Candidate>> {
    let mut out = Vec::new();
    let mut pf_info: HashMap<PciAddress, (Vec<String>, Option<String>)> = HashMap::new();
    let routes = default_route_netdevs(sysfs.root());
    for addr in sysfs.devices()? {
        let Ok(d) = sysfs.device(addr) else { continue };
        let Ok(class) = d.class() else { continue };
        if class >> 16 != CLASS_NETWORK && class >> 16 != CLASS_ACCELERATOR {
            continue;
        }
        let pf = d.physfn()?;
        let pf_with_vfs = pf.is_none() && d.sriov_numvfs()?.unwrap_or(0) > 0;
        let own_names = d.net_names().unwrap_or_default();
        let own_type = netdev_link_type(&d, class);
        let (pf_name, vf_index, pf_names, link_type) = match pf {
            Some(pf) => {
                let (names, pf_type) = pf_info
                    .entry(pf)
                    .or_insert_with(|| match sysfs.device(pf) {
                        Ok(p) => {
                            let class = p.class().unwrap_or(0);
                            (
                                p.net_names().unwrap_or_default(),
                                netdev_link_type(&p, class),
                            )
                        }
                        Err(_) => (Vec::new(), None),
                    })
                    .clone();
                let link = own_type.or(pf_type).unwrap_or_default();
                (names.first().cloned(), d.vf_index().ok(), names, link)
            }
            None => (None, None, Vec::new(), own_type.unwrap_or_default()),
        };
        let rdma = rdma_devices(d.dir());
        let pkey = match (link_type.as_str(), rdma.first()) {
            ("infiniband", Some(ib)) => attr(
                &d.dir().join("infiniband").join(ib).join("ports/1/pkeys"),
                "0",
            ),
            _ => String::new(),
        };
        out.push(Candidate {
            dev: Device {
                addr,
                vendor: d.vendor()?,
                device_id: d.device_id()?,
                pf,
                pf_name,
                vf_index,
                numa: d.numa_node()?,
                iommu_group: d.iommu_group()?,
                driver: d.driver()?,
            },
            class,
            pf_names,
            pf_with_vfs,
            link_type,
            acpi_index: attr(d.dir(), "acpi_index"),
            rdma: !rdma.is_empty(),
            pkey,
            default_route: own_names.iter().any(|n| routes.contains(n)),
        });
    }
    Ok(out)
}

#[cfg(test)]
#[path = "select_tests.rs"]
mod tests;
