//! The node's devices as a ResourceSlice (`resource.k8s.io/v1`): one device
//! per VF (or PF) of the config's pools, with the attributes a
//! ResourceClaim selects on with CEL.

use std::path::Component;

use serde_json::{json, Map, Value};
use vfio::{PciAddress, Sysfs};

use crate::pool::{Device, Pool};

/// The standard attribute of the PCIe root complex a device sits under
/// (used to align devices of several drivers).
pub const PCIE_ROOT: &str = "resource.kubernetes.io/pcieRoot";

/// What Multus reads for a DRA-allocated network device: the PCI address
/// it hands the CNI plugin as `deviceID`, and the name a NAD's
/// `k8s.v1.cni.cncf.io/resourceName` annotation must equal (the pool's).
pub const MULTUS_DEVICE_ID: &str = "k8s.cni.cncf.io/deviceID";
pub const MULTUS_RESOURCE_NAME: &str = "k8s.cni.cncf.io/resourceName";

/// A device's name in the slice: its PCI address as a DNS label
/// (`0000:03:10.2` is `pci-0000-03-10-2`).
pub fn device_name(addr: PciAddress) -> String {
    format!("pci-{}", addr.to_string().replace([':', '.'], "-"))
}

/// The PCI address a slice device name stands for.
pub fn parse_device_name(name: &str) -> Option<PciAddress> {
    let rest = name.strip_prefix("pci-")?;
    let parts: Vec<&str> = rest.split('-').collect();
    let [dom, bus, slot, func] = parts.as_slice() else {
        return None;
    };
    let addr: PciAddress = format!("{dom}:{bus}:{slot}.{func}").parse().ok()?;
    // Only the canonical spelling names a device.
    (device_name(addr) == name).then_some(addr)
}

/// The slice's name for this node and driver: one slice, one pool per node.
pub fn slice_name(node: &str, driver: &str) -> String {
    let mut s: String = format!("{node}-{driver}")
        .chars()
        .map(|c| {
            let c = c.to_ascii_lowercase();
            if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
                c
            } else {
                '-'
            }
        })
        .collect();
    s.truncate(253);
    s
}

/// The PCIe root of a device: the `pciDDDD:BB` directory its sysfs path
/// goes through (`/sys/devices/pci0000:00/0000:00:02.0/...`).
pub fn pcie_root(sysfs: &Sysfs, addr: PciAddress) -> Option<String> {
    let real = std::fs::canonicalize(sysfs.pci_devices_dir().join(addr.to_string())).ok()?;
    real.components().find_map(|c| match c {
        Component::Normal(n) => {
            let n = n.to_str()?;
            (n.starts_with("pci") && n.len() > 3 && n[3..].contains(':')).then(|| n.to_string())
        }
        _ => None,
    })
}

fn string(v: impl Into<String>) -> Value {
    json!({ "string": v.into() })
}

fn int(v: impl Into<i64>) -> Value {
    json!({ "int": v.into() })
}

/// One device of the slice. `driver` is the kernel driver it has now.
pub fn device(sysfs: &Sysfs, pool: &Pool, d: &Device) -> Value {
    let mut a = Map::new();
    a.insert("pciAddress".into(), string(d.addr.to_string()));
    a.insert("vendor".into(), string(format!("{:04x}", d.vendor)));
    a.insert("device".into(), string(format!("{:04x}", d.device_id)));
    a.insert("pool".into(), string(pool.resource.clone()));
    a.insert(MULTUS_DEVICE_ID.into(), string(d.addr.to_string()));
    a.insert(MULTUS_RESOURCE_NAME.into(), string(pool.resource.clone()));
    if let Some(pf) = &d.pf_name {
        a.insert("pfName".into(), string(pf.clone()));
    }
    if let Some(pf) = d.pf {
        a.insert("pfPciAddress".into(), string(pf.to_string()));
    }
    if let Some(i) = d.vf_index {
        a.insert("vfIndex".into(), int(i));
    }
    let driver = sysfs
        .device(d.addr)
        .ok()
        .and_then(|x| x.driver().ok().flatten())
        .or_else(|| d.driver.clone());
    if let Some(drv) = driver {
        a.insert("driver".into(), string(drv));
    }
    if let Some(n) = d.numa {
        a.insert("numaNode".into(), int(n));
    }
    if let Some(g) = d.iommu_group {
        a.insert("iommuGroup".into(), int(g));
    }
    if let Some(r) = pcie_root(sysfs, d.addr) {
        a.insert(PCIE_ROOT.into(), string(r));
    }
    json!({ "name": device_name(d.addr), "attributes": a })
}

/// The spec of this node's slice: every device of every pool except those
/// `held_elsewhere` says a NAD's attachment holds.
pub fn spec(
    sysfs: &Sysfs,
    driver: &str,
    node: &str,
    generation: i64,
    pools: &[Pool],
    held_elsewhere: impl Fn(PciAddress) -> bool,
) -> Value {
    let devices: Vec<Value> = pools
        .iter()
        .flat_map(|p| p.devices.iter().map(move |d| (p, d)))
        .filter(|(_, d)| !held_elsewhere(d.addr))
        .map(|(p, d)| device(sysfs, p, d))
        .collect();
    json!({
        "driver": driver,
        "nodeName": node,
        "pool": { "name": node, "generation": generation, "resourceSliceCount": 1 },
        "devices": devices,
    })
}

/// The slice object to create or replace.
pub fn object(name: &str, spec: Value, resource_version: Option<&str>) -> Value {
    let mut meta = json!({ "name": name });
    if let Some(rv) = resource_version {
        meta["resourceVersion"] = json!(rv);
    }
    json!({
        "apiVersion": "resource.k8s.io/v1",
        "kind": "ResourceSlice",
        "metadata": meta,
        "spec": spec,
    })
}

/// Whether two specs list the same devices (generation aside).
pub fn same_devices(a: &Value, b: &Value) -> bool {
    a.get("devices") == b.get("devices")
        && a.get("driver") == b.get("driver")
        && a.get("nodeName") == b.get("nodeName")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_names_are_dns_labels_and_read_back() {
        let a: PciAddress = "0000:03:10.2".parse().unwrap();
        assert_eq!(device_name(a), "pci-0000-03-10-2");
        assert_eq!(parse_device_name("pci-0000-03-10-2"), Some(a));
        for bad in [
            "0000-03-10-2",
            "pci-0000-03-10",
            "pci-0000-03-10-2-1",
            "pci-0000-03-1g-2",
            "pci-0000-3-10-2",
            "pci-../../x",
        ] {
            assert_eq!(parse_device_name(bad), None, "{bad}");
        }
    }

    #[test]
    fn slice_names_are_lower_case_dns_subdomains() {
        assert_eq!(
            slice_name("Node_1", "vf.dpdk-cni.io"),
            "node-1-vf.dpdk-cni.io"
        );
    }
}
