//! CNI ADD: check the netconf, let the mode look at the node, claim the
//! device and write the record durably, then make the changes; undo them
//! all on a failure.

use serde_json::Value;

use crate::config::RawConf;
use crate::devinfo;
use crate::driver::{AddCtx, DelCtx, Prepared};
use crate::env::CniEnv;
use crate::error::{CniError, Result};
use crate::log;
use crate::mode;
use crate::node::Node;
use crate::plan;
use crate::release::release;

pub fn add(node: &mut Node, env: &CniEnv, raw: &RawConf, conf: &Value) -> Result<Value> {
    log::debug(&format!("ADD {} {}: start", env.container_id, env.ifname));
    let plan = plan::plan(raw, env, node)?;
    let existing = plan
        .device_info_file
        .clone()
        .filter(|p| p.symlink_metadata().is_ok());
    let ledger = node.ledger();
    let mut ctx = AddCtx {
        node,
        env,
        plan: &plan,
        conf,
        ledger: &ledger,
        ipam_held: false,
    };
    // The netconf's mode looks; the record says which mode serves (the
    // vfio-pci mode may have fallen back to netdevice).
    let Prepared { mut att, locks } = mode::for_plan(&plan).prepare(&mut ctx)?;
    log::debug(&format!("{}: prepared", att.device));
    if let Some(p) = existing {
        // Nothing has changed on the node yet: the locks go with `Prepared`.
        if let Err(why) = devinfo::adoptable(&p, &att) {
            return Err(CniError::netconf(format!(
                "runtimeConfig.CNIDeviceInfoFile {} exists already and is not {}'s device-info file ({why}): the plugin replaces only the file Multus copied for this device",
                ctx.node.node_path(&p).display(),
                att.device
            )));
        }
    }
    att.device_info_file = Some(
        plan.device_info_file
            .clone()
            .unwrap_or_else(|| devinfo::default_path(&ctx.node.root, &att)),
    );
    // New, or the copy Multus made for this device: ADD writes it, DEL
    // removes it.
    att.device_info_written = true;
    // The claim first, then the record, both durable: from here on DEL or
    // GC can undo whatever happens, and no other ADD can take the device.
    // A device the pod's ResourceClaim holds stays the claim's.
    if let (Some(dev), None) = (att.device.pci(), &att.dra_claim) {
        ledger.set_claim(dev, &att.claim())?;
    }
    if let Err(e) = ledger.save(&att, true) {
        if let Some(dev) = att.device.pci() {
            let _ = ledger.release_claim(dev, &att.claim());
        }
        return Err(e.into());
    }
    log::info(&format!(
        "ADD {} {}: {} as {} (driver {:?}, group {:?}, NUMA {:?})",
        att.container_id,
        att.ifname,
        att.device,
        att.device_type,
        att.original_driver,
        att.iommu_group,
        att.numa_node
    ));

    let res = mode::driver(att.device_type).setup(&mut ctx, &mut att);
    let ipam_held = ctx.ipam_held;
    let out = match res {
        Ok(v) => Ok(v),
        Err(e) => {
            log::warn(&format!(
                "ADD of {} failed, rolling back: {}",
                att.device, e.msg
            ));
            let mut del = DelCtx {
                node: ctx.node,
                env,
                conf: Some(conf),
                ledger: &ledger,
            };
            match release(&mut del, &att, ipam_held) {
                Ok(left) if left.is_empty() => Err(e),
                Ok(left) => Err(e.with_details(format!(
                    "rollback could not restore everything: {}",
                    left.join("; ")
                ))),
                Err(te) => Err(e.with_details(format!("rollback also failed: {}", te.msg))),
            }
        }
    };
    drop(locks);
    out
}
