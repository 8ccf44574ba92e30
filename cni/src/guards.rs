//! What may be handed to a pod at all, whatever the netconf says: network
//! functions only, and a whole PF only when the node's settings list it and
//! the host does not use it. A netconf can narrow these (`allowedDevices`),
//! never widen them.

use std::net::IpAddr;

use vfio::PciAddress;

use crate::error::{CniError, Result};
use crate::node::{host_netlink, Node};
use crate::plan::Plan;

/// PCI class of network controllers (`class >> 16`).
pub const NETWORK_CLASS: u32 = 0x02;

/// Refuses anything but a network controller (an NVMe drive, a GPU, a
/// crypto VF...).
pub fn network_device(node: &Node, dev: PciAddress) -> Result<()> {
    let class = node.sysfs.device(dev)?.class()?;
    if class >> 16 != NETWORK_CLASS {
        return Err(CniError::netconf(format!(
            "{dev} is not a network device (PCI class 0x{class:06x}): dpdk-cni hands over network VFs and PFs only"
        )));
    }
    Ok(())
}

/// A whole PF may go to a pod only when the node's settings list it
/// (`handoverPfs`, by PCI address or interface name) and the netconf's
/// `allowedDevices`, if any, does too; it must have no VFs enabled, and
/// its interface must carry no default route, no host address and no
/// upper device (bond, VLAN, bridge): nothing the node itself uses.
pub fn whole_pf(node: &Node, plan: &Plan, pf: PciAddress) -> Result<()> {
    let d = node.sysfs.device(pf)?;
    let names = d.net_names()?;
    let named = |list: &[String]| {
        list.iter()
            .any(|a| *a == pf.to_string() || names.contains(a))
    };
    let what = match names.first() {
        Some(n) => format!("{pf} ({n})"),
        None => pf.to_string(),
    };
    if !named(&node.settings.handover_pfs) {
        return Err(CniError::netconf(format!(
            "pfOnly: {what} is not a PF this node hands over whole: the node's administrator lists those in handoverPfs of /{}",
            ledger::settings::SETTINGS_FILE
        )));
    }
    if let Some(allowed) = &plan.allowed_devices {
        if !named(allowed) {
            return Err(CniError::netconf(format!(
                "pfOnly: {what} is not in allowedDevices {allowed:?}"
            )));
        }
    }
    let numvfs = d.sriov_numvfs()?.unwrap_or(0);
    if numvfs > 0 {
        return Err(CniError::netconf(format!(
            "pfOnly: {pf} has {numvfs} VFs enabled; a PF with VFs cannot go to a pod (echo 0 > sriov_numvfs first)"
        )));
    }
    for name in &names {
        host_unused(node, pf, name)?;
    }
    Ok(())
}

/// The PF's interface is not the node's: no default route, no address the
/// host configured, no upper device, and in the plugin's namespace.
fn host_unused(node: &Node, pf: PciAddress, name: &str) -> Result<()> {
    let refuse = |why: String| CniError::netconf(format!("pfOnly: {name} ({pf}) {why}"));
    let class_dir = node.sysfs.class_net_dir().join(name);
    if let Ok(rd) = std::fs::read_dir(&class_dir) {
        let uppers: Vec<String> = rd
            .flatten()
            .filter_map(|e| {
                let n = e.file_name().to_string_lossy().to_string();
                n.strip_prefix("upper_")
                    .map(str::to_string)
                    .or_else(|| (n == "master").then_some(n))
            })
            .collect();
        if !uppers.is_empty() {
            return Err(refuse(format!(
                "has upper devices ({}): the node uses it through them",
                uppers.join(", ")
            )));
        }
    }
    let nl = host_netlink()?;
    let Some(link) = nl.link_by_name(name)? else {
        return Err(refuse(
            "is not in the host's network namespace: another pod may hold it".into(),
        ));
    };
    if nl.default_route_links()?.contains(&link.index) {
        return Err(refuse(
            "carries the node's default route; moving it would cut the node off".into(),
        ));
    }
    let used: Vec<String> = nl
        .addresses(&link)?
        .into_iter()
        // An IPv6 link-local address is the kernel's, not the host's configuration.
        .filter(|(ip, _)| !matches!(ip, IpAddr::V6(v6) if (v6.segments()[0] & 0xffc0) == 0xfe80))
        .map(|(ip, p)| format!("{ip}/{p}"))
        .collect();
    if !used.is_empty() {
        return Err(refuse(format!(
            "has addresses the host uses ({}): remove them first",
            used.join(", ")
        )));
    }
    Ok(())
}
