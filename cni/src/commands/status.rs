//! CNI STATUS: can this node serve ADD?

use ledger::Ledger;

use crate::config::{self, RawConf};
use crate::error::{code, CniError, Result};
use crate::node::Node;

pub fn status(node: &Node, raw: &RawConf) -> Result<()> {
    let base = config::base(raw, node, true)?;
    let mut problems = Vec::new();
    if !node.sysfs.vfio_pci_loaded() {
        problems.push("the vfio-pci driver is not loaded (modprobe vfio-pci)".to_string());
    }
    if node.sysfs.iommu_mode().is_none() {
        problems.push("no IOMMU is on: enable intel_iommu=on/amd_iommu=on (or vfio's enable_unsafe_noiommu_mode)".to_string());
    }
    if let Err(e) = Ledger::new(&base.state_dir).check_writable() {
        problems.push(format!("the state directory is not writable: {e}"));
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(CniError::new(
            code::NOT_AVAILABLE,
            format!("dpdk-cni cannot serve ADD: {}", problems.join("; ")),
        ))
    }
}
