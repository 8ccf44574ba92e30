//! From what a source says about a device to how EAL should take it, with the
//! pod's sysfs as the truth for the driver.
//!
//! Under Multus a pod gets only the NPWG spec fields of a device-info document
//! (`pci-address`, `pf-pci-address`, `rdma-device`, ...): nothing says whether
//! the VF is on vfio-pci or on its kernel driver, nor its NUMA node. sysfs
//! does. Our own keys (`device-type`, `interface`, `eal-vdev`, `numa-node`)
//! still count where sysfs has nothing to say: a device absent from the pod's
//! sysfs, a NUMA node sysfs does not know.

use std::path::Path;

use crate::error::{DiscoverError, Result};
use crate::sysfs::{read_pci, SysfsPci, BIFURCATED_DRIVERS, USERSPACE_DRIVERS};
use crate::{Device, DeviceKind, PciAddress};

/// What one source says about one device, before sysfs is read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceClaim {
    /// Where it was found (becomes [`Device::origin`]).
    pub origin: String,
    /// The PCI function, when the source names one.
    pub pci: Option<PciAddress>,
    /// How the source says to drive it: our `device-type` (with `interface`
    /// and `eal-vdev`), or a device plugin allocation (a PCI device). `None`
    /// when it does not say, as in a document with the spec fields only.
    pub stated: Option<DeviceKind>,
    /// The source's NUMA node (`None`: not given, or -1).
    pub numa_node: Option<u32>,
    /// The NPWG `rdma-device`, when not empty.
    pub rdma_device: Option<String>,
}

/// The default vdev for a kernel interface.
pub fn af_packet_vdev(interface: &str) -> String {
    format!("net_af_packet_{interface},iface={interface}")
}

/// Decide how EAL takes the claimed device.
///
/// A device in `<sys_root>/bus/pci/devices/` is taken by its driver there,
/// whatever the source states: vfio-pci, igb_uio or uio_pci_generic -> a PCI
/// device (`-a`); mlx5_core or mlx4_core with an RDMA device -> a PCI device
/// too (DPDK's mlx PMDs drive it beside the kernel); another kernel driver ->
/// `net_af_packet` on its interface in this network namespace (the stated
/// interface and vdev when the source says netdevice). A device sysfs does not
/// have keeps the stated kind; without one it is an error. The source's NUMA
/// node wins over sysfs', which fills it in when the source has none.
/// Disagreements go to `notes`.
pub fn resolve_device(
    sys_root: &Path,
    claim: DeviceClaim,
    notes: &mut Vec<String>,
) -> Result<Device> {
    let DeviceClaim {
        origin,
        pci,
        stated,
        numa_node,
        rdma_device,
    } = claim;
    let Some(pci) = pci else {
        return match stated {
            Some(kind) => Ok(Device {
                kind,
                numa_node,
                pci: None,
                driver: None,
                origin,
            }),
            None => Err(DiscoverError::DeviceInfoMissing {
                origin,
                field: "pci-address",
            }),
        };
    };
    let Some(sys) = read_pci(sys_root, pci)? else {
        return match stated {
            Some(kind) => Ok(Device {
                kind,
                numa_node,
                pci: Some(pci),
                driver: None,
                origin,
            }),
            None => Err(DiscoverError::DeviceNotInSysfs {
                path: crate::sysfs::pci_device_dir(sys_root, pci),
                origin,
                pci,
            }),
        };
    };
    let numa_node = match (numa_node, sys.numa_node) {
        (Some(given), Some(seen)) if given != seen => {
            notes.push(format!(
                "{origin} says NUMA node {given} for {pci}, sysfs {seen}; keeping {given}"
            ));
            Some(given)
        }
        (given, seen) => given.or(seen),
    };
    let kind = kind_from_sysfs(
        &origin,
        pci,
        &sys,
        stated.as_ref(),
        rdma_device.is_some(),
        notes,
    )?;
    let driver = sys.driver.clone().unwrap_or_default();
    match &stated {
        None => notes.push(format!(
            "{origin}: no device-type; {pci} is bound to {driver}: {kind}"
        )),
        Some(s) if std::mem::discriminant(s) != std::mem::discriminant(&kind) => {
            notes.push(format!(
                "{origin} says {s}, but {pci} is bound to {driver}: {kind} (the driver in sysfs decides)"
            ))
        }
        Some(_) => {}
    }
    Ok(Device {
        kind,
        numa_node,
        pci: Some(pci),
        driver: sys.driver,
        origin,
    })
}

fn kind_from_sysfs(
    origin: &str,
    pci: PciAddress,
    sys: &SysfsPci,
    stated: Option<&DeviceKind>,
    rdma_in_document: bool,
    notes: &mut Vec<String>,
) -> Result<DeviceKind> {
    let unusable = |reason: String| DiscoverError::DeviceUnusable {
        origin: origin.to_owned(),
        pci,
        path: sys.dir.clone(),
        reason,
    };
    let Some(driver) = sys.driver.as_deref() else {
        return Err(unusable("it is bound to no driver".to_owned()));
    };
    if USERSPACE_DRIVERS.contains(&driver) {
        return Ok(DeviceKind::Vfio { pci });
    }
    if let Some(kind @ DeviceKind::Netdevice { .. }) = stated {
        // A kernel driver, as the source says: its interface and vdev stand.
        return Ok(kind.clone());
    }
    if BIFURCATED_DRIVERS.contains(&driver) && (rdma_in_document || !sys.rdma_devices.is_empty()) {
        return Ok(DeviceKind::Vfio { pci });
    }
    let Some(interface) = sys.netdevs.first() else {
        return Err(unusable(format!(
            "it is bound to the kernel driver {driver} and has no network interface in this \
             pod's network namespace (its net/ is empty)"
        )));
    };
    if sys.netdevs.len() > 1 {
        notes.push(format!(
            "{origin}: {pci} has several network interfaces here ({}); using {interface}",
            sys.netdevs.join(", ")
        ));
    }
    Ok(DeviceKind::Netdevice {
        interface: interface.clone(),
        vdev: af_packet_vdev(interface),
    })
}
