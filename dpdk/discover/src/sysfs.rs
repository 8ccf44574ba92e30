//! A PCI function as the pod's own sysfs shows it: the driver it is bound to,
//! its NUMA node, its network interfaces and RDMA devices.
//!
//! sysfs is mounted per network namespace: `<bdf>/net/` lists the function's
//! netdevs that are in the reader's namespace only, so in a pod it names the
//! interface the CNI moved in (`net1`), and is empty for a netdev left on the
//! host.

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::devinfo::parse_numa_node;
use crate::error::{DiscoverError, Result};
use crate::PciAddress;

/// Drivers that hand the function to user space: EAL takes it with `-a`.
pub const USERSPACE_DRIVERS: &[&str] = &["vfio-pci", "igb_uio", "uio_pci_generic"];

/// Kernel drivers DPDK drives a function beside (its mlx PMDs, through the
/// function's RDMA device) rather than instead of.
pub const BIFURCATED_DRIVERS: &[&str] = &["mlx5_core", "mlx4_core"];

/// What `<sys>/bus/pci/devices/<bdf>/` says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SysfsPci {
    /// `<sys>/bus/pci/devices/<bdf>`.
    pub dir: PathBuf,
    /// The bound driver (last component of the `driver` link), `None` when unbound.
    pub driver: Option<String>,
    /// `numa_node`; `None` when the kernel says -1 or has no such file.
    pub numa_node: Option<u32>,
    /// `net/`: the function's interfaces in this network namespace, sorted.
    pub netdevs: Vec<String>,
    /// `infiniband/`: the function's RDMA devices visible here, sorted.
    pub rdma_devices: Vec<String>,
}

/// `<sys_root>/bus/pci/devices/<bdf>`.
pub fn pci_device_dir(sys_root: &Path, pci: PciAddress) -> PathBuf {
    sys_root.join("bus/pci/devices").join(pci.to_string())
}

/// Read the function at `pci`; `Ok(None)` when sysfs has no such device.
pub fn read_pci(sys_root: &Path, pci: PciAddress) -> Result<Option<SysfsPci>> {
    let dir = pci_device_dir(sys_root, pci);
    if !dir.is_dir() {
        return Ok(None);
    }
    let read_err = |path: &Path| {
        let path = path.to_owned();
        move |source| DiscoverError::Read { path, source }
    };
    let link = dir.join("driver");
    let driver = match link.symlink_metadata() {
        Err(_) => None,
        Ok(_) => {
            let target = std::fs::read_link(&link).map_err(read_err(&link))?;
            target.file_name().map(|n| n.to_string_lossy().into_owned())
        }
    };
    let path = dir.join("numa_node");
    let numa_node = if path.exists() {
        let text = std::fs::read_to_string(&path).map_err(read_err(&path))?;
        parse_numa_node(
            &path.display().to_string(),
            &Value::String(text.trim().to_owned()),
        )?
    } else {
        None
    };
    let names = |sub: &str| -> Result<Vec<String>> {
        let d = dir.join(sub);
        if !d.is_dir() {
            return Ok(Vec::new());
        }
        let mut names: Vec<String> = std::fs::read_dir(&d)
            .map_err(read_err(&d))?
            .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
            .collect();
        names.sort();
        Ok(names)
    };
    Ok(Some(SysfsPci {
        netdevs: names("net")?,
        rdma_devices: names("infiniband")?,
        driver,
        numa_node,
        dir,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_function() {
        let tmp = tempfile::tempdir().unwrap();
        let pci: PciAddress = "0000:3b:0a.1".parse().unwrap();
        assert_eq!(read_pci(tmp.path(), pci).unwrap(), None);

        let dir = pci_device_dir(tmp.path(), pci);
        std::fs::create_dir_all(dir.join("net/net2")).unwrap();
        std::fs::write(dir.join("numa_node"), "-1\n").unwrap();
        let dev = read_pci(tmp.path(), pci).unwrap().unwrap();
        assert_eq!(dev.driver, None);
        assert_eq!(dev.numa_node, None);
        assert_eq!(dev.netdevs, ["net2"]);
        assert!(dev.rdma_devices.is_empty());

        std::os::unix::fs::symlink("../../../../bus/pci/drivers/iavf", dir.join("driver")).unwrap();
        std::fs::write(dir.join("numa_node"), "1\n").unwrap();
        let dev = read_pci(tmp.path(), pci).unwrap().unwrap();
        assert_eq!(dev.driver.as_deref(), Some("iavf"));
        assert_eq!(dev.numa_node, Some(1));

        std::fs::write(dir.join("numa_node"), "x\n").unwrap();
        assert!(matches!(
            read_pci(tmp.path(), pci),
            Err(DiscoverError::BadNumaNode { origin, .. }) if origin.ends_with("numa_node")
        ));
    }
}
