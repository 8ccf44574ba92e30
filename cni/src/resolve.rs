//! The device a netconf names, looked up in sysfs: a VF (by PCI address or
//! by PF netdev and VF index) or, with `pfOnly`, a whole PF.

use vfio::{PciAddress, Sysfs};

use crate::error::{code, CniError, Result};
use crate::guards;
use crate::node::Node;
use crate::plan::{DeviceRef, Plan};

/// The device an ADD is about, found in sysfs.
#[derive(Debug, Clone)]
pub struct Target {
    pub device: PciAddress,
    pub pf: Option<PciAddress>,
    pub pf_ifname: Option<String>,
    pub vf_index: Option<u32>,
}

fn first_netdev(sysfs: &Sysfs, addr: PciAddress) -> Result<Option<String>> {
    Ok(sysfs.device(addr)?.net_names()?.into_iter().next())
}

/// Looks the configured device up and checks it is what the netconf says.
pub fn resolve(node: &Node, plan: &Plan) -> Result<Target> {
    let sysfs = &node.sysfs;
    let not_found = |what: String| CniError::new(code::DEVICE_NOT_FOUND, what);
    match &plan.device {
        DeviceRef::Pci(addr) => {
            let dev = sysfs.device(*addr).map_err(|_| {
                not_found(format!(
                    "PCI device {addr} does not exist on this node: check deviceID (ls /sys/bus/pci/devices)"
                ))
            })?;
            match dev.physfn()? {
                Some(pf) => {
                    if plan.pf_only {
                        return Err(CniError::netconf(format!(
                            "pfOnly is set but {addr} is a VF of {pf}: name the PF or drop pfOnly"
                        )));
                    }
                    let vf_index = dev.vf_index()?;
                    guards::network_device(node, *addr)?;
                    Ok(Target {
                        device: *addr,
                        pf: Some(pf),
                        pf_ifname: first_netdev(sysfs, pf)?,
                        vf_index: Some(vf_index),
                    })
                }
                None if plan.pf_only => pf_target(node, plan, *addr),
                None => Err(CniError::netconf(format!(
                    "{addr} is not a VF (it has no physfn): to hand the whole PF to the pod set \"pfOnly\": true"
                ))),
            }
        }
        DeviceRef::Master(m) => Err(CniError::netconf(format!(
            "master {m:?} names a macvlan parent, not a device to hand over"
        ))),
        DeviceRef::PfVf { master, vf } => {
            let pf = sysfs.device_of_netdev(master).map_err(|_| {
                not_found(format!(
                    "master {master:?} is not a PCI network interface on this node"
                ))
            })?;
            if plan.pf_only {
                return pf_target(node, plan, pf);
            }
            let pfdev = sysfs.device(pf)?;
            let numvfs = pfdev.sriov_numvfs()?.unwrap_or(0);
            if *vf >= numvfs {
                return Err(CniError::netconf(format!(
                    "VF index {vf} is past sriov_numvfs {numvfs} of {master} ({pf}): use 0 to {} or create more VFs",
                    numvfs.saturating_sub(1)
                )));
            }
            let device = pfdev
                .virtfn(*vf)?
                .ok_or_else(|| not_found(format!("{master} ({pf}) has no virtfn{vf} link")))?;
            guards::network_device(node, device)?;
            Ok(Target {
                device,
                pf: Some(pf),
                pf_ifname: Some(master.clone()),
                vf_index: Some(*vf),
            })
        }
    }
}

fn pf_target(node: &Node, plan: &Plan, pf: PciAddress) -> Result<Target> {
    guards::network_device(node, pf)?;
    guards::whole_pf(node, plan, pf)?;
    Ok(Target {
        device: pf,
        pf: None,
        pf_ifname: None,
        vf_index: None,
    })
}
