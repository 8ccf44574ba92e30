//! Undoing an attachment, for DEL, GC and a failed ADD alike: IPAM, the
//! device-info file, then the mode's own teardown against the record; the
//! claim and the record go only when everything came back.

use ledger::Attachment;

use crate::driver::DelCtx;
use crate::error::{CniError, Result};
use crate::ipam;
use crate::log;
use crate::mode;

/// Undoes `att` whatever part of ADD ran; IPAM DEL only when `ipam_held`.
/// The record stays when any step failed, so that a later DEL can try again.
pub fn release(ctx: &mut DelCtx<'_>, att: &Attachment, ipam_held: bool) -> Result<()> {
    let mut errors: Vec<String> = Vec::new();
    let what = format!("{} {}", att.device_type, att.device);

    if ipam_held {
        if let Some(c) = ipam::release_netconf(ctx.conf, att) {
            if let Err(e) = ipam::call(ctx.env, att, "DEL", &c) {
                errors.push(e.msg);
            }
        }
    }
    if let Some(p) = &att.device_info_file {
        match std::fs::remove_file(p) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => errors.push(format!("failed to remove {}: {e}", p.display())),
        }
    }
    mode::driver(att.device_type).teardown(ctx, att, &mut errors);
    if !errors.is_empty() {
        return Err(CniError::io(format!(
            "could not fully release {what}: {}",
            errors.join("; ")
        )));
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
    Ok(())
}
