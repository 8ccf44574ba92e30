//! `deviceType: netdevice`: the VF's (or, with `pfOnly`, the PF's) kernel
//! netdev moves into the pod's network namespace under CNI_IFNAME, the way
//! sriov-cni does, with the VF admin settings applied through the PF. Also
//! what the vfio-pci mode falls back to (`"fallback": "netdevice"`).

use ledger::{Attachment, DeviceType};
use netlink::Link;
use serde_json::Value;
use vfio::PciAddress;

use crate::driver::{AddCtx, DelCtx, DeviceMode, Prepared};
use crate::error::{code, CniError, Result};
use crate::failpoint;
use crate::hostlink;
use crate::log;
use crate::macpin;
use crate::mode::pci::{self, Handover};
use crate::node::{host_netlink, Node};
use crate::podnet::{self, PodIface};
use crate::resolve::{resolve, Target};

#[derive(Debug)]
pub struct Netdevice;

/// The netdevice half of a PCI ADD's preparation, from a resolved device;
/// `fallback_reason` says why vfio-pci was not used, when it was asked for.
pub fn prepare_target(
    ctx: &mut AddCtx<'_>,
    target: &Target,
    fallback_reason: Option<String>,
) -> Result<Prepared> {
    pci::precheck(ctx, target)?;
    // A VF another pod holds has its netdev in that pod: say so (101)
    // rather than that the netdev is missing.
    pci::refuse_held(ctx, target.device)?;
    // The kernel path looks at the netdev before anything changes.
    let link = host_link(ctx.node, target.device)?;
    pci::record(
        ctx,
        target,
        Handover {
            kind: DeviceType::Netdevice,
            iommu_group: None,
            iommu_mode: None,
            original_link: Some(link.into()),
            fallback_reason,
        },
    )
}

impl DeviceMode for Netdevice {
    fn prepare(&self, ctx: &mut AddCtx<'_>) -> Result<Prepared> {
        let target = resolve(ctx.node, ctx.plan)?;
        prepare_target(ctx, &target, None)
    }

    fn setup(&self, ctx: &mut AddCtx<'_>, att: &mut Attachment) -> Result<Value> {
        failpoint::hit("recorded")?;
        let orig = att
            .original_link
            .clone()
            .ok_or_else(|| CniError::io("no netdev recorded"))?;
        let host = host_netlink()?;
        let mut link = host.link_by_name(&orig.name)?.ok_or_else(|| {
            CniError::new(
                code::DEVICE_NOT_FOUND,
                format!("{} vanished from the host", orig.name),
            )
        })?;
        // The netdev's MAC goes first: a VF driver asks the PF for it, and the
        // PF refuses once an administrative MAC is set (igb answers
        // EADDRNOTAVAIL), even the same one. The admin MAC then pins it.
        if let Some(mac) = ctx.plan.vf.mac.filter(|m| link.mac != Some(*m)) {
            if link.up {
                host.set_link_up(&link, false)?;
                link.up = false;
            }
            if !host.try_set_link_mac(&link, mac)? {
                macpin::unpin_admin_mac(ctx.node, ctx.ledger, att)?;
                host.set_link_mac(&link, mac)?;
            }
            link.mac = Some(mac);
        }
        log::debug(&format!("{}: netdev MAC set", orig.name));
        pci::apply_vf(ctx.node, ctx.plan, att)?;
        log::debug(&format!("{}: VF admin settings applied", orig.name));
        failpoint::hit("vf-configured")?;
        let ipam_result = ctx.run_ipam(att)?;
        log::debug(&format!("{}: IPAM done", orig.name));
        failpoint::hit("ipam-done")?;
        let (ips, routes) = podnet::ipam_config(ipam_result.as_ref())?;
        let cfg = PodIface {
            from: orig.name.clone(),
            to: att.ifname.clone(),
            mac: None,
            mtu: ctx.plan.mtu,
            ips,
            routes,
        };
        let link = podnet::move_and_configure(ctx.env, att, &link, cfg)?;
        podnet::finish(ctx.plan, ctx.ledger, att, &link, ipam_result.as_ref())
    }

    fn teardown(&self, ctx: &mut DelCtx<'_>, att: &Attachment, errors: &mut Vec<String>) {
        // The admin MAC first: while one is set the PF refuses the VF
        // driver's request for a MAC (igb: "attempted to override
        // administratively set MAC address"). When the PF reported the
        // netdev's own MAC before ADD, the VF driver had chosen it: clear
        // the admin MAC rather than pin it, and let the netdev restore
        // below ask for it again, as it was. When ADD found the admin MAC
        // pinned, the netdev likewise gets its MAC back unpinned, and the
        // original pin is set again afterwards.
        let mut unpinned = att.clone();
        if let (Some(vf), Some(link)) = (unpinned.original_vf.as_mut(), &att.original_link) {
            if att.admin_mac_pinned || link.mac.as_deref() == Some(vf.mac.to_string().as_str()) {
                vf.mac = netlink::MacAddr::default();
            }
        }
        pci::restore_vf(ctx, &unpinned, errors);
        errors.extend(hostlink::release_netdevice(ctx.node, att));
        if att.admin_mac_pinned {
            macpin::repin_admin_mac(ctx.node, att, errors);
        }
    }

    fn check(&self, _node: &mut Node, att: &Attachment) -> Result<()> {
        podnet::check_in_pod(att)
    }
}

/// Finds the device's netdev in the host namespace. Changes nothing.
fn host_link(node: &Node, dev: PciAddress) -> Result<Link> {
    let d = node.sysfs.device(dev)?;
    let Some(name) = d.net_names()?.into_iter().next() else {
        return Err(CniError::new(
            code::DEVICE_NOT_FOUND,
            format!(
                "{dev} has no network interface (driver {}): netdevice mode needs the device on its kernel driver",
                d.driver()?.as_deref().unwrap_or("none")
            ),
        ));
    };
    host_netlink()?.link_by_name(&name)?.ok_or_else(|| {
        CniError::new(
            code::DEVICE_NOT_FOUND,
            format!("{name}, the interface of {dev}, is not in the plugin's network namespace"),
        )
    })
}
