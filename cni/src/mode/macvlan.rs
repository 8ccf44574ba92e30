//! `deviceType: macvlan`: a bridge-mode macvlan on `master` moves into the
//! pod, for nodes with no SR-IOV at all. No PCI device is held.

use std::path::Path;

use ledger::{Attachment, Claim, DeviceId, DeviceType, Phase, RECORD_VERSION};
use netlink::netns::in_netns;
use serde_json::Value;

use crate::driver::{AddCtx, DelCtx, DeviceMode, Prepared};
use crate::error::{code, CniError, Result};
use crate::failpoint;
use crate::mode::pci::refuse_second_attachment;
use crate::node::{host_netlink, Node};
use crate::plan::DeviceRef;
use crate::podnet::{self, PodIface};

#[derive(Debug)]
pub struct Macvlan;

/// A host-side name for a new macvlan, unique per attachment and at most 15 bytes.
fn macvlan_name(container_id: &str, ifname: &str) -> String {
    // FNV-1a over "<container>/<ifname>".
    let mut h: u32 = 0x811c_9dc5;
    for b in container_id.bytes().chain([b'/']).chain(ifname.bytes()) {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    format!("dcni{h:08x}")
}

impl DeviceMode for Macvlan {
    fn prepare(&self, ctx: &mut AddCtx<'_>) -> Result<Prepared> {
        let DeviceRef::Master(master) = &ctx.plan.device else {
            return Err(CniError::netconf("deviceType macvlan needs master"));
        };
        ctx.check_ipam()?;
        let host = host_netlink()?;
        if host.link_by_name(master)?.is_none() {
            return Err(CniError::new(
                code::DEVICE_NOT_FOUND,
                format!("master {master:?} does not exist on this node"),
            ));
        }
        let (env, plan) = (ctx.env, ctx.plan);
        refuse_second_attachment(
            ctx.ledger,
            &Claim {
                network: plan.base.name.clone(),
                container_id: env.container_id.clone(),
                ifname: env.ifname.clone(),
            },
        )?;
        let att = Attachment {
            version: RECORD_VERSION,
            network: plan.base.name.clone(),
            container_id: env.container_id.clone(),
            ifname: env.ifname.clone(),
            netns: env.netns.clone(),
            cni_version: plan.base.cni_version.clone(),
            phase: Phase::Pending,
            device_type: DeviceType::Macvlan,
            device: DeviceId::Netdev(master.clone()),
            pf: None,
            pf_ifname: None,
            vf_index: None,
            iommu_group: None,
            iommu_mode: None,
            vfio_device: None,
            numa_node: None,
            original_driver: None,
            original_override: None,
            original_netdevs: Vec::new(),
            original_vf: None,
            // The pod's MAC, which goes on the macvlan, not through a PF.
            vf_settings: plan.vf.clone(),
            device_info_file: None,
            device_info_written: false,
            ipam: plan.base.ipam.clone(),
            result: None,
            original_link: None,
            macvlan_name: Some(macvlan_name(&env.container_id, &env.ifname)),
            fallback_reason: None,
            admin_mac_pinned: false,
            admin_mac_driver_chosen: false,
            original_netdev_mac: None,
            dra_claim: None,
        };
        Ok(Prepared {
            att,
            locks: Vec::new(),
        })
    }

    fn setup(&self, ctx: &mut AddCtx<'_>, att: &mut Attachment) -> Result<Value> {
        failpoint::hit("recorded")?;
        let master = att.device.to_string();
        let tmp = att
            .macvlan_name
            .clone()
            .ok_or_else(|| CniError::io("no macvlan name recorded"))?;
        let ipam_result = ctx.run_ipam(att)?;
        failpoint::hit("ipam-done")?;
        let host = host_netlink()?;
        let master_link = host.link_by_name(&master)?.ok_or_else(|| {
            CniError::new(
                code::DEVICE_NOT_FOUND,
                format!("master {master:?} vanished from the node"),
            )
        })?;
        host.add_macvlan(&tmp, &master_link)?;
        let link = host
            .link_by_name(&tmp)?
            .ok_or_else(|| CniError::io(format!("macvlan {tmp} was not created")))?;
        let (ips, routes) = podnet::ipam_config(ipam_result.as_ref())?;
        let cfg = PodIface {
            from: tmp.clone(),
            to: att.ifname.clone(),
            mac: ctx.plan.vf.mac,
            mtu: ctx.plan.mtu,
            ips,
            routes,
        };
        let link = podnet::move_and_configure(ctx.env, att, &link, cfg)?;
        podnet::finish(ctx.plan, ctx.ledger, att, &link, ipam_result.as_ref())
    }

    fn teardown(&self, _ctx: &mut DelCtx<'_>, att: &Attachment, errors: &mut Vec<String>) {
        errors.extend(release_macvlan(att));
    }

    fn check(&self, _node: &mut Node, att: &Attachment) -> Result<()> {
        podnet::check_in_pod(att)
    }
}

/// Undoes a macvlan attachment: deletes the link in the pod (or, after a
/// crash before the move, in the host). Returns what could not be done.
fn release_macvlan(att: &Attachment) -> Vec<String> {
    let mut errors = Vec::new();
    if !att.netns.is_empty() && Path::new(&att.netns).exists() {
        let ifname = att.ifname.clone();
        let r = in_netns(Path::new(&att.netns), move || -> Result<()> {
            let nl = host_netlink()?;
            if let Some(l) = nl.link_by_name(&ifname)? {
                nl.delete_link(&l)?;
            }
            Ok(())
        });
        match r {
            Ok(Ok(())) => {}
            Ok(Err(e)) => errors.push(e.msg),
            Err(e) => errors.push(format!("failed to enter {}: {e}", att.netns)),
        }
    }
    if let Some(tmp) = &att.macvlan_name {
        match host_netlink().and_then(|nl| {
            if let Some(l) = nl.link_by_name(tmp)? {
                nl.delete_link(&l)?;
            }
            Ok(())
        }) {
            Ok(()) => {}
            Err(e) => errors.push(e.msg),
        }
    }
    errors
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn macvlan_names_fit_and_differ() {
        let a = macvlan_name("0123456789abcdef0123456789abcdef", "net1");
        let b = macvlan_name("0123456789abcdef0123456789abcdef", "net2");
        assert!(a.len() <= 15 && a.starts_with("dcni"));
        assert_ne!(a, b);
    }
}
