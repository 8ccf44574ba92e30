//! Undoing an attachment, for DEL, GC and a failed ADD alike: IPAM, the
//! device-info file, then the mode's own teardown against the record.
//!
//! A record is checked against the node before the device is touched: the
//! device must still be a network device, held by this attachment (its
//! claim), and a VF of the PF the record names. What cannot be restored is
//! reported, not retried: the claim and the record go in any case, so a
//! vanished VF, PF or pod never leaves DEL failing forever.

use ledger::{Attachment, Claim, Ledger, LedgerError};
use vfio::{PciAddress, VFIO_PCI};

use crate::driver::DelCtx;
use crate::error::Result;
use crate::guards::NETWORK_CLASS;
use crate::ipam;
use crate::log;
use crate::mode;
use crate::node::Node;

/// Undoes `att` whatever part of ADD ran; IPAM DEL only when `ipam_held`.
/// Returns what could not be restored (already logged); `Err` only when the
/// ledger itself cannot be written.
pub fn release(ctx: &mut DelCtx<'_>, att: &Attachment, ipam_held: bool) -> Result<Vec<String>> {
    let mut errors: Vec<String> = Vec::new();
    let what = format!("{} {}", att.device_type, att.device);

    if ipam_held {
        if let Some(c) = ipam::release_netconf(ctx.conf, att) {
            if let Err(e) = ipam::call(ctx.env, att, "DEL", &c) {
                errors.push(e.msg);
            }
        }
    }
    if let (Some(p), true) = (&att.device_info_file, att.device_info_written) {
        match std::fs::remove_file(p) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => errors.push(format!("failed to remove {}: {e}", p.display())),
        }
    }
    match device_is_ours(ctx, att) {
        Ok(()) => mode::driver(att.device_type).teardown(ctx, att, &mut errors),
        Err(why) => log::warn(&format!("{what}: left as it is: {why}")),
    }
    if !errors.is_empty() {
        log::warn(&format!(
            "could not fully release {what} of {} {}: {}",
            att.container_id,
            att.ifname,
            errors.join("; ")
        ));
    }
    if let Some(dev) = att.device.pci() {
        ctx.ledger.clear_prebound(dev)?;
        ctx.ledger.release_claim(dev, &att.claim())?;
    }
    ctx.ledger.remove(att)?;
    log::info(&format!(
        "released {what} of {} {}",
        att.container_id, att.ifname
    ));
    Ok(errors)
}

/// Whether the record's device may be touched: a network device that no
/// other attachment holds, and, for a VF, one of the PF the record names.
/// A device that is gone is fine: each step then finds nothing to do.
fn device_is_ours(ctx: &DelCtx<'_>, att: &Attachment) -> std::result::Result<(), String> {
    let Some(dev) = att.device.pci() else {
        return Ok(());
    };
    match ctx.ledger.claim(dev) {
        // The pod's own ResourceClaim holds it: this attachment undoes
        // what it changed, the claim's Unprepare the rest.
        Ok(Some(holder))
            if att.dra_claim.is_some() && holder.dra_claim() == att.dra_claim.as_deref() => {}
        Ok(Some(holder)) if holder != att.claim() => {
            return Err(format!(
                "it is held by container {} (network {}, interface {})",
                holder.container_id, holder.network, holder.ifname
            ))
        }
        Ok(_) => {}
        Err(LedgerError::Corrupt { .. }) => {}
        Err(e) => return Err(e.to_string()),
    }
    let sysfs = &ctx.node.sysfs;
    let Ok(d) = sysfs.device(dev) else {
        return Ok(());
    };
    match d.class() {
        Ok(c) if c >> 16 == NETWORK_CLASS => {}
        Ok(c) => return Err(format!("it is not a network device (class 0x{c:06x})")),
        Err(e) => return Err(e.to_string()),
    }
    if let (Some(pf), Some(vf)) = (att.pf, att.vf_index) {
        let physfn = d.physfn().map_err(|e| e.to_string())?;
        let index = d.vf_index().ok();
        if physfn != Some(pf) || index != Some(vf) {
            return Err(format!(
                "the record says VF {vf} of {pf}, the node says {} of {}",
                index.map_or("no VF".into(), |i| format!("VF {i}")),
                physfn.map_or("no PF".into(), |p| p.to_string())
            ));
        }
        if let (Some(name), Ok(names)) =
            (&att.pf_ifname, sysfs.device(pf).and_then(|p| p.net_names()))
        {
            if !names.is_empty() && !names.contains(name) {
                return Err(format!("{pf}'s interface is {names:?}, not {name}"));
            }
        }
    }
    Ok(())
}

/// DEL of an attachment whose record was unusable or never written: each
/// device it still claims goes back to its kernel driver if it sits on
/// vfio-pci, and its claim is released.
pub fn release_claims_of(node: &Node, ledger: &Ledger, claim: &Claim) -> Result<()> {
    for dev in ledger.claimed_by(claim)? {
        let _lock = ledger.lock_device(&dev, crate::driver::LOCK_WAIT)?;
        release_claim_at(node, ledger, dev, claim)?;
    }
    Ok(())
}

/// [`release_claims_of`] for one device, whose lock the caller holds.
pub fn release_claim_at(
    node: &Node,
    ledger: &Ledger,
    dev: PciAddress,
    claim: &Claim,
) -> Result<()> {
    // The device-info file of the plugin's own naming, which the
    // attachment that holds the device wrote.
    let _ = std::fs::remove_file(crate::devinfo::default_path_of(&node.root, claim));
    restore_by_address(node, dev);
    ledger.clear_prebound(dev)?;
    ledger.release_claim(dev, claim)?;
    log::info(&format!(
        "released {dev} of {} {} from its claim alone",
        claim.container_id, claim.ifname
    ));
    Ok(())
}

/// A network device on vfio-pci goes back to whatever driver the kernel
/// picks for it (the record that named its first driver is lost); anything
/// else is left alone.
fn restore_by_address(node: &Node, dev: PciAddress) {
    let sysfs = &node.sysfs;
    let Ok(d) = sysfs.device(dev) else {
        return;
    };
    let network = d.class().is_ok_and(|c| c >> 16 == NETWORK_CLASS);
    if !network || d.driver().ok().flatten().as_deref() != Some(VFIO_PCI) {
        return;
    }
    if let Err(e) = sysfs.reprobe(dev, node.bind) {
        log::warn(&format!("{dev}: could not leave vfio-pci: {e}"));
    }
}
