//! The NPWG device-info file (Device Information Specification 1.1.0) with
//! our extra keys: NUMA node, IOMMU group, vfio device node, original driver.

use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use crate::error::Result;
use ledger::{write_atomic, Attachment, Claim, DeviceType};

/// The file the plugin writes when the runtime names none.
pub fn default_path(root: &Path, a: &Attachment) -> PathBuf {
    default_path_of(root, &a.claim())
}

/// [`default_path`] of the attachment a claim names.
pub fn default_path_of(root: &Path, c: &Claim) -> PathBuf {
    root.join(crate::paths::DEFAULT_DEVINFO_SUBDIR)
        .join(format!(
            "{}-{}-{}-device.json",
            c.network, c.container_id, c.ifname
        ))
}

/// The device-info document for an attachment.
pub fn document(a: &Attachment) -> Value {
    let mut doc = json!({
        "type": "pci",
        "version": "1.1.0",
        "pci": {
            "pci-address": a.device.to_string(),
            "pf-pci-address": a.pf.map(|p| p.to_string()).unwrap_or_default(),
            "rdma-device": "",
            "vhost-net": "",
            "representor-device": "",
            "numa-node": a.numa_node.map(i64::from).unwrap_or(-1),
            "iommu-group": a.iommu_group.map(|g| g.to_string()).unwrap_or_default(),
            "vfio-device": a.vfio_device.as_ref().map(|p| p.display().to_string()).unwrap_or_default(),
            "original-driver": a.original_driver.clone().unwrap_or_default(),
            "device-type": a.device_type.as_str(),
        }
    });
    if matches!(a.device_type, DeviceType::Netdevice | DeviceType::Macvlan) {
        // A DPDK application reaches a kernel interface through net_af_packet.
        let pci = &mut doc["pci"];
        pci["interface"] = a.ifname.clone().into();
        pci["eal-vdev"] = format!("net_af_packet0,iface={}", a.ifname).into();
        if a.device_type == DeviceType::Macvlan {
            pci["pci-address"] = "".into();
            pci["master"] = a.device.to_string().into();
        }
        if let Some(r) = &a.fallback_reason {
            pci["fallback-reason"] = r.clone().into();
        }
    }
    doc
}

/// Whether a device-info file already at `path` may be replaced by ADD's
/// own: Multus copies the device plugin's file (`devinfo/dp/`) to the path
/// it names in `CNIDeviceInfoFile` before it calls the plugin, and the
/// specification lets the plugin update it. Only a regular file (not a
/// symlink), small, whose `pci-address` is the device this attachment
/// claims; anything else is someone else's and is left alone.
pub fn adoptable(path: &Path, a: &Attachment) -> std::result::Result<(), String> {
    const MAX: u64 = 64 * 1024;
    let meta = std::fs::symlink_metadata(path).map_err(|e| e.to_string())?;
    if !meta.file_type().is_file() {
        return Err("it is not a regular file".into());
    }
    if meta.len() > MAX {
        return Err(format!("it is larger than {MAX} bytes"));
    }
    let Some(dev) = a.device.pci() else {
        return Err(format!("{} is not a PCI device", a.device));
    };
    let doc: Value = std::fs::read(path)
        .map_err(|e| e.to_string())
        .and_then(|b| serde_json::from_slice(&b).map_err(|e| format!("it is not JSON: {e}")))?;
    let says = doc
        .pointer("/pci/pci-address")
        .and_then(Value::as_str)
        .and_then(|s| s.parse::<vfio::PciAddress>().ok());
    match says {
        Some(s) if s == dev => Ok(()),
        Some(s) => Err(format!("it describes {s}, not {dev}")),
        None => Err("it has no pci.pci-address".into()),
    }
}

pub fn write(path: &Path, a: &Attachment) -> Result<()> {
    let data = serde_json::to_vec_pretty(&document(a)).expect("a JSON value always encodes");
    Ok(write_atomic(path, &data, false)?)
}
