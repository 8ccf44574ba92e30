//! `deviceType: vfio-pci`: the VF (or, with `pfOnly`, the PF) is rebound to
//! vfio-pci for a DPDK application in the pod; its `/dev/vfio/<group>` is
//! reported in the result and the device-info file.

use ledger::{Attachment, DeviceType};
use serde_json::Value;
use vfio::{IommuMode, PciAddress, Sysfs, VFIO_PCI};

use crate::driver::{AddCtx, DelCtx, DeviceMode, Prepared};
use crate::error::{code, CniError, Result};
use crate::failpoint;
use crate::hostlink;
use crate::log;
use crate::macpin;
use crate::mode::netdevice;
use crate::mode::pci::{self, Handover};
use crate::node::Node;
use crate::resolve::resolve;

#[derive(Debug)]
pub struct VfioPci;

/// Checks the node can give `dev` to user space through vfio-pci.
fn vfio_ready(sysfs: &Sysfs, dev: PciAddress) -> Result<(Option<u32>, IommuMode)> {
    if !sysfs.vfio_pci_loaded() {
        return Err(CniError::new(
            code::VFIO_UNAVAILABLE,
            "the vfio-pci driver is not loaded: run modprobe vfio-pci on the node",
        ));
    }
    Ok(sysfs.check_vfio_viable(dev)?)
}

impl DeviceMode for VfioPci {
    fn prepare(&self, ctx: &mut AddCtx<'_>) -> Result<Prepared> {
        let target = resolve(ctx.node, ctx.plan)?;
        let (group, mode) = match vfio_ready(&ctx.node.sysfs, target.device) {
            Ok(ready) => ready,
            Err(e) if ctx.plan.fallback && e.code == code::VFIO_UNAVAILABLE => {
                log::info(&format!(
                    "{}: vfio-pci cannot be served ({}); falling back to netdevice",
                    target.device, e.msg
                ));
                return netdevice::prepare_target(ctx, &target, Some(e.msg));
            }
            Err(e) => return Err(e),
        };
        pci::precheck(ctx, &target)?;
        pci::record(
            ctx,
            &target,
            Handover {
                kind: DeviceType::VfioPci,
                iommu_group: group,
                iommu_mode: Some(mode),
                original_link: None,
                fallback_reason: None,
            },
        )
    }

    fn setup(&self, ctx: &mut AddCtx<'_>, att: &mut Attachment) -> Result<Value> {
        failpoint::hit("recorded")?;
        let mode = att.iommu_mode.unwrap_or(IommuMode::Iommu);
        let dev = pci_of(att)?;
        let sysfs = ctx.node.sysfs.clone();

        // The pod's MAC is set through the PF, which pins it; DEL sets the
        // original back the same way. Whether it was a pin before is found
        // out now, on the VF's netdev (a real node only: a fake one has no
        // netdevs).
        let orig_mac = att.original_vf.as_ref().map(|v| v.mac);
        if ctx.plan.vf.mac.is_some()
            && orig_mac.is_some_and(|m| m != netlink::MacAddr::default())
            && ctx.node.is_real()
            && macpin::vf_driver_may_choose_mac(ctx.node, att)
        {
            att.admin_mac_driver_chosen = true;
            ctx.ledger.save(att, false)?;
        }
        // The netdev's own MAC, which a VF driver that chose it forgets when
        // vfio-pci resets the VF: DEL gives it back.
        if ctx.node.is_real() && att.original_netdev_mac.is_none() {
            if let Some(mac) = hostlink::netdev_mac(att) {
                att.original_netdev_mac = Some(mac.to_string());
                ctx.ledger.save(att, false)?;
            }
        }
        pci::apply_vf(ctx.node, ctx.plan, att)?;
        failpoint::hit("vf-configured")?;

        let driver_dir = sysfs.driver_dir(VFIO_PCI);
        if !driver_dir.exists() {
            return Err(vfio::VfioError::DriverMissing {
                driver: VFIO_PCI.into(),
                path: driver_dir,
            }
            .into());
        }
        if sysfs.device(dev)?.driver()?.as_deref() != Some(VFIO_PCI) {
            sysfs.set_driver_override(dev, Some(VFIO_PCI))?;
            failpoint::hit("override-set")?;
            sysfs.unbind(dev)?;
            failpoint::hit("unbound")?;
            sysfs.drivers_probe(dev)?;
            sysfs.wait_driver(dev, VFIO_PCI, ctx.node.bind)?;
        }
        let group = match att.iommu_group {
            Some(g) => g,
            None => sysfs.device(dev)?.iommu_group()?.ok_or_else(|| {
                CniError::new(
                    code::BIND_FAILED,
                    format!("{dev} has no IOMMU group after binding to vfio-pci"),
                )
            })?,
        };
        let group_node = sysfs.wait_vfio_group_node(group, mode, ctx.node.bind)?;
        att.iommu_group = Some(group);
        att.vfio_device = Some(ctx.node.node_path(&group_node));
        failpoint::hit("bound")?;

        let ipam_result = ctx.run_ipam(att)?;
        failpoint::hit("ipam-done")?;

        let res = pci::complete(ctx, att, ipam_result.as_ref())?;
        log::info(&format!(
            "ADD {} {}: {dev} on vfio-pci, group {group}",
            att.container_id, att.ifname
        ));
        Ok(res)
    }

    fn teardown(&self, ctx: &mut DelCtx<'_>, att: &Attachment, errors: &mut Vec<String>) {
        // VF settings go back while no VF driver is bound, so the VF driver
        // starts from the original admin state when it probes again.
        pci::restore_vf(ctx, att, errors);
        leave_vfio(ctx.node, att, errors);
        if let Err(e) = failpoint::hit(failpoint::DEL_OFF_VFIO) {
            errors.push(e.msg);
            return;
        }
        let names = hostlink::lock_netdev_names(ctx.ledger, att);
        restore_driver(ctx.node, att, errors);
        if errors.is_empty() {
            errors.extend(hostlink::restore_netdev_name(ctx.node, att));
        }
        drop(names);
        if let Err(e) = failpoint::hit(failpoint::DEL_DRIVER_BACK) {
            errors.push(e.msg);
            return;
        }
        if att.admin_mac_driver_chosen && errors.is_empty() {
            errors.extend(macpin::unpin_vf_mac(ctx.node, att));
        }
        if errors.is_empty() {
            errors.extend(hostlink::restore_netdev_mac(ctx.node, att));
        }
    }

    fn check(&self, node: &mut Node, att: &Attachment) -> Result<()> {
        let fail = |m: String| CniError::new(code::CHECK_FAILED, m);
        let dev = pci_of(att)?;
        let d = node
            .sysfs
            .device(dev)
            .map_err(|_| fail(format!("{dev} is no longer on the node")))?;
        let driver = d.driver()?;
        if driver.as_deref() != Some(VFIO_PCI) {
            return Err(fail(format!(
                "{dev} is bound to {}, not vfio-pci: something rebound it behind the plugin's back",
                driver.as_deref().unwrap_or("no driver")
            )));
        }
        if let Some(p) = &att.vfio_device {
            let on_disk = node.root.join(p.strip_prefix("/").unwrap_or(p));
            if !on_disk.exists() {
                return Err(fail(format!("{} vanished", p.display())));
            }
        }
        Ok(())
    }
}

/// The PCI address of a vfio-pci attachment.
fn pci_of(att: &Attachment) -> Result<PciAddress> {
    att.device.pci().ok_or_else(|| {
        CniError::io(format!(
            "the record of {} {} names {} where a PCI address belongs",
            att.container_id, att.ifname, att.device
        ))
    })
}

/// Takes the device off vfio-pci without binding it anywhere yet, its
/// `driver_override` already naming the driver it goes back to: the
/// kernel's release of a vfio-pci device takes about as long as the next
/// probe, and needs no lock, so parallel DELs do it side by side and only
/// the probe waits for the netdev name lock.
fn leave_vfio(node: &Node, att: &Attachment, errors: &mut Vec<String>) {
    let (Some(dev), Some(orig)) = (att.device.pci(), att.original_driver.as_deref()) else {
        return;
    };
    let Ok(d) = node.sysfs.device(dev) else {
        return;
    };
    if orig == VFIO_PCI || d.driver().ok().flatten().as_deref() != Some(VFIO_PCI) {
        return;
    }
    let r = node
        .sysfs
        .set_driver_override(dev, Some(orig))
        .and_then(|()| node.sysfs.unbind(dev));
    if let Err(e) = r {
        errors.push(format!("failed to take {dev} off vfio-pci: {e}"));
    }
}

/// Gives the device back to the driver (and override) it had before ADD.
fn restore_driver(node: &Node, att: &Attachment, errors: &mut Vec<String>) {
    let Some(dev) = att.device.pci() else {
        return;
    };
    let sysfs = &node.sysfs;
    let Ok(d) = sysfs.device(dev) else {
        log::warn(&format!("{dev} is gone from the node; nothing to rebind"));
        return;
    };
    let now = match (d.driver(), d.driver_override()) {
        (Ok(drv), Ok(ovr)) => (drv, ovr),
        (Err(e), _) | (_, Err(e)) => {
            errors.push(e.to_string());
            return;
        }
    };
    if now == (att.original_driver.clone(), att.original_override.clone()) {
        return;
    }
    match sysfs.restore_driver(
        dev,
        att.original_driver.as_deref(),
        att.original_override.as_deref(),
        node.bind,
    ) {
        Ok(()) => {
            if !att.original_netdevs.is_empty() {
                if let Err(e) = sysfs.wait_netdev(dev, node.bind) {
                    errors.push(e.to_string());
                }
            }
        }
        Err(e) => errors.push(format!(
            "failed to give {dev} back to {:?}: {e}",
            att.original_driver
        )),
    }
}
