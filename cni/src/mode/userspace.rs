//! A device found on a user-space driver (igb_uio, uio_pci_generic) with no
//! `deviceType`: it stays on that driver, as the operator bound it; ADD sets
//! its VF admin state through the PF and reports it, DEL puts the state back.

use ledger::{Attachment, DeviceType};
use serde_json::Value;

use crate::driver::{AddCtx, DelCtx, DeviceMode, Prepared};
use crate::error::{code, CniError, Result};
use crate::failpoint;
use crate::log;
use crate::mode::pci::{self, Handover};
use crate::node::Node;
use crate::resolve::{resolve, Target};

#[derive(Debug)]
pub struct Userspace;

/// The record of a device left on its user-space driver.
pub fn prepare_target(ctx: &mut AddCtx<'_>, target: &Target) -> Result<Prepared> {
    pci::precheck(ctx, target)?;
    pci::record(
        ctx,
        target,
        Handover {
            kind: DeviceType::Userspace,
            iommu_group: None,
            iommu_mode: None,
            original_link: None,
            fallback_reason: None,
        },
    )
}

impl DeviceMode for Userspace {
    fn prepare(&self, ctx: &mut AddCtx<'_>) -> Result<Prepared> {
        let target = resolve(ctx.node, ctx.plan)?;
        prepare_target(ctx, &target)
    }

    fn setup(&self, ctx: &mut AddCtx<'_>, att: &mut Attachment) -> Result<Value> {
        failpoint::hit("recorded")?;
        pci::apply_vf(ctx.node, ctx.plan, att)?;
        failpoint::hit("vf-configured")?;
        let ipam_result = ctx.run_ipam(att)?;
        failpoint::hit("ipam-done")?;
        let res = pci::complete(ctx, att, ipam_result.as_ref())?;
        log::info(&format!(
            "ADD {} {}: {} stays on {}",
            att.container_id,
            att.ifname,
            att.device,
            att.original_driver.as_deref().unwrap_or("no driver")
        ));
        Ok(res)
    }

    fn teardown(&self, ctx: &mut DelCtx<'_>, att: &Attachment, errors: &mut Vec<String>) {
        pci::restore_vf(ctx, att, errors);
    }

    fn check(&self, node: &mut Node, att: &Attachment) -> Result<()> {
        let Some(dev) = att.device.pci() else {
            return Ok(());
        };
        let now = node
            .sysfs
            .device(dev)
            .and_then(|d| d.driver())
            .map_err(|e| CniError::new(code::CHECK_FAILED, e.to_string()))?;
        if now != att.original_driver {
            return Err(CniError::new(
                code::CHECK_FAILED,
                format!(
                    "{dev} is on {}, not {}: something rebound it behind the plugin's back",
                    now.as_deref().unwrap_or("no driver"),
                    att.original_driver.as_deref().unwrap_or("no driver")
                ),
            ));
        }
        Ok(())
    }
}
