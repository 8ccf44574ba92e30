//! No `deviceType`: the device's current driver decides, as sriov-cni
//! does. A kernel driver means the netdev goes into the pod (netdevice); a
//! VF already on vfio-pci stays there (vfio-pci, no rebind); one on a
//! user-space driver (igb_uio, uio_pci_generic) stays on it and only its VF
//! admin state is set (userspace). Only `prepare` is this mode's: the
//! record names the mode that serves, and everything after goes to it.

use ledger::{Attachment, DeviceType};
use serde_json::Value;
use vfio::VFIO_PCI;

use crate::driver::{AddCtx, DelCtx, DeviceMode, Prepared};
use crate::error::{CniError, Result};
use crate::mode::{netdevice, userspace, vfio_pci};
use crate::node::Node;
use crate::resolve::resolve;

/// User-space drivers a device is left on.
pub const USERSPACE_DRIVERS: &[&str] = &["igb_uio", "uio_pci_generic"];

#[derive(Debug)]
pub struct FollowDriver;

impl DeviceMode for FollowDriver {
    fn prepare(&self, ctx: &mut AddCtx<'_>) -> Result<Prepared> {
        let target = resolve(ctx.node, ctx.plan)?;
        let driver = ctx.node.sysfs.device(target.device)?.driver()?;
        match driver.as_deref() {
            Some(VFIO_PCI) => vfio_pci::VfioPci.prepare(ctx),
            Some(d) if USERSPACE_DRIVERS.contains(&d) => userspace::prepare_target(ctx, &target),
            _ => netdevice::prepare_target(ctx, &target, None),
        }
    }

    fn setup(&self, _: &mut AddCtx<'_>, att: &mut Attachment) -> Result<Value> {
        Err(not_a_record_mode(att.device_type))
    }

    fn teardown(&self, _: &mut DelCtx<'_>, att: &Attachment, errors: &mut Vec<String>) {
        errors.push(not_a_record_mode(att.device_type).msg);
    }

    fn check(&self, _: &mut Node, att: &Attachment) -> Result<()> {
        Err(not_a_record_mode(att.device_type))
    }
}

fn not_a_record_mode(t: DeviceType) -> CniError {
    CniError::io(format!(
        "following the driver only chooses a mode; the record says {t}"
    ))
}
