//! What the PCI modes (vfio-pci, netdevice, userspace) share: the checks
//! before any change, the device lock and claim, the record of the original
//! state, the VF admin settings through the PF, and the end of ADD.

use ledger::{
    Attachment, Claim, DeviceType, Ledger, LedgerError, OriginalLink, Phase, RECORD_VERSION,
};
use serde_json::Value;
use vfio::{IommuMode, VFIO_PCI};

use crate::allocation;
use crate::devinfo;
use crate::driver::{AddCtx, DelCtx, Prepared, LOCK_WAIT};
use crate::error::{code, CniError, Result};
use crate::failpoint;
use crate::log;
use crate::node::Node;
use crate::plan::Plan;
use crate::resolve::Target;
use crate::result;

/// Checks made before the mode's own: VF settings need the PF's netdev,
/// and the IPAM plugin must exist.
pub fn precheck(ctx: &AddCtx<'_>, target: &Target) -> Result<()> {
    if !ctx.plan.vf.is_empty() && target.pf_ifname.is_none() {
        return Err(CniError::new(
            code::DEVICE_NOT_FOUND,
            format!(
                "VF settings need the PF's netdev, but the PF of {} has none (is it bound to its kernel driver?)",
                target.device
            ),
        ));
    }
    ctx.check_ipam()
}

/// A container has at most one attachment per network and interface name.
/// A record that was unusable is moved aside by the read and does not
/// count: the device claims still say what is held.
pub fn refuse_second_attachment(ledger: &Ledger, me: &Claim) -> Result<()> {
    let found = match ledger.load(&me.network, &me.container_id, &me.ifname) {
        Ok(found) => found.is_some(),
        Err(e @ LedgerError::Quarantined { .. }) => {
            log::warn(&e.to_string());
            false
        }
        Err(e) => return Err(e.into()),
    };
    if found {
        return Err(CniError::new(
            code::DEVICE_BUSY,
            format!(
                "container {} already has an attachment {} on network {}: DEL it first",
                me.container_id, me.ifname, me.network
            ),
        ));
    }
    Ok(())
}

/// How the mode will hand the device over, as the record keeps it.
#[derive(Debug)]
pub struct Handover {
    pub kind: DeviceType,
    pub iommu_group: Option<u32>,
    pub iommu_mode: Option<IommuMode>,
    pub original_link: Option<OriginalLink>,
    pub fallback_reason: Option<String>,
}

/// Whether the ResourceClaim `uid` was prepared for this ADD's pod (its
/// `K8S_POD_UID`, which the runtime passes): Multus hands a pod its own
/// claim's device.
fn pods_own_claim(ctx: &AddCtx<'_>, uid: &str) -> Result<bool> {
    let Some(pod) = ctx.env.arg("K8S_POD_UID").filter(|p| !p.is_empty()) else {
        return Ok(false);
    };
    Ok(ctx
        .ledger
        .dra_claim(uid)?
        .is_some_and(|c| c.pods.iter().any(|p| p == pod)))
}

/// This ADD's claim on a device, and who holds the device now.
#[derive(Debug)]
pub struct Holding {
    pub me: Claim,
    /// The device is the pod's own ResourceClaim's (its UID): the claim
    /// keeps it, this attachment only uses it.
    pub dra_claim: Option<String>,
}

/// Refuses (101) a device another attachment or another pod's
/// ResourceClaim holds, or this attachment already. [`record`] asks again
/// under the lock.
pub fn refuse_held(ctx: &AddCtx<'_>, dev: vfio::PciAddress) -> Result<Holding> {
    let me = Claim {
        network: ctx.plan.base.name.clone(),
        container_id: ctx.env.container_id.clone(),
        ifname: ctx.env.ifname.clone(),
    };
    if let Some(holder) = ctx.ledger.claim(dev)? {
        if let Some(uid) = holder.dra_claim() {
            if pods_own_claim(ctx, uid)? {
                return Ok(Holding {
                    me,
                    dra_claim: Some(uid.to_string()),
                });
            }
        }
        let msg = if let Some(uid) = holder.dra_claim() {
            format!(
                "{dev} is prepared for ResourceClaim {uid} by the dpdk-cni DRA driver: a device allocated through DRA goes only to its claim's pod; pick another device"
            )
        } else if holder == me {
            format!(
                "{dev} is already attached to container {} as {}: DEL it before adding it again",
                me.container_id, me.ifname
            )
        } else {
            format!(
                "{dev} is in use by container {} (network {}, interface {}): pick another device or DEL that attachment",
                holder.container_id, holder.network, holder.ifname
            )
        };
        return Err(CniError::new(code::DEVICE_BUSY, msg));
    }
    Ok(Holding {
        me,
        dra_claim: None,
    })
}

/// Takes the device's lock, refuses a device another attachment holds, and
/// records the device's original state.
pub fn record(ctx: &mut AddCtx<'_>, target: &Target, how: Handover) -> Result<Prepared> {
    let dev = target.device;
    let ledger = ctx.ledger;
    let sysfs = ctx.node.sysfs.clone();
    let group = sysfs.device(dev)?.iommu_group()?;
    let mut locks = Vec::new();
    if let Some(g) = group {
        locks.push(ledger.lock_device(&format!("group-{g}"), LOCK_WAIT)?);
    }
    locks.push(ledger.lock_device(&dev, LOCK_WAIT)?);
    log::debug(&format!("{dev}: locked"));
    let Holding { me, dra_claim } = refuse_held(ctx, dev)?;
    refuse_second_attachment(ledger, &me)?;
    // The pod's own ResourceClaim is its allocation.
    if dra_claim.is_none() {
        allocation::check(ctx.node, ctx.env, dev)?;
    }
    if let (DeviceType::VfioPci, Some(g)) = (how.kind, group) {
        group_is_free(&sysfs, ledger, dev, g, &me, dra_claim.as_deref())?;
    }

    let d = sysfs.device(dev)?;
    // A device the node daemon bound early (no-IOMMU Allocate) goes back to
    // the driver it had before that, not to vfio-pci.
    let (mut original_driver, mut original_override) = (d.driver()?, d.driver_override()?);
    if original_driver.as_deref() == Some(VFIO_PCI) {
        if let Some(p) = ledger.prebound(dev)? {
            (original_driver, original_override) = (p.driver, p.driver_override);
        }
    }
    let original_vf = match (&target.pf_ifname, target.vf_index) {
        (Some(pf), Some(vf)) if !ctx.plan.vf.is_empty() => Some(ctx.node.nl()?.vf_state(pf, vf)?),
        _ => None,
    };
    let att = Attachment {
        version: RECORD_VERSION,
        network: me.network,
        container_id: me.container_id,
        ifname: me.ifname,
        netns: ctx.env.netns.clone(),
        cni_version: ctx.plan.base.cni_version.clone(),
        phase: Phase::Pending,
        device_type: how.kind,
        device: dev.into(),
        pf: target.pf,
        pf_ifname: target.pf_ifname.clone(),
        vf_index: target.vf_index,
        iommu_group: how.iommu_group,
        iommu_mode: how.iommu_mode,
        vfio_device: None,
        numa_node: d.numa_node()?,
        original_driver,
        original_override,
        original_netdevs: d.net_names()?,
        original_vf,
        vf_settings: ctx.plan.vf.clone(),
        device_info_file: None,
        device_info_written: false,
        ipam: ctx.plan.base.ipam.clone(),
        result: None,
        original_link: how.original_link,
        macvlan_name: None,
        fallback_reason: how.fallback_reason,
        admin_mac_pinned: false,
        admin_mac_driver_chosen: false,
        original_netdev_mac: None,
        dra_claim,
    };
    Ok(Prepared { att, locks })
}

/// A device handed to user space shares its IOMMU group, and so its
/// `/dev/vfio/<group>`, with every other member: none of them may belong
/// to another pod, whether another attachment holds it or something else
/// put it on vfio-pci.
fn group_is_free(
    sysfs: &vfio::Sysfs,
    ledger: &Ledger,
    dev: vfio::PciAddress,
    group: u32,
    me: &Claim,
    dra_claim: Option<&str>,
) -> Result<()> {
    let refuse = |m: String| CniError::new(code::VFIO_UNAVAILABLE, m);
    for peer in sysfs.group_peers(dev)? {
        let holder = ledger.claim(peer.address)?;
        match holder {
            Some(h) if h.container_id == me.container_id => {}
            // The rest of the pod's own ResourceClaim.
            Some(h) if dra_claim.is_some() && h.dra_claim() == dra_claim => {}
            Some(h) => {
                return Err(refuse(format!(
                    "{dev} shares IOMMU group {group} with {}, which container {} holds (network {}, interface {}): a group goes to one pod",
                    peer.address, h.container_id, h.network, h.ifname
                )))
            }
            None if peer.driver.as_deref() == Some(VFIO_PCI) => {
                return Err(refuse(format!(
                    "{dev} shares IOMMU group {group} with {}, which something other than dpdk-cni bound to vfio-pci: a group goes to one pod",
                    peer.address
                )))
            }
            None => {}
        }
    }
    Ok(())
}

/// Applies the netconf's VF settings through the PF, if the device is a VF
/// and any are set.
pub fn apply_vf(node: &mut Node, plan: &Plan, att: &Attachment) -> Result<()> {
    if let (Some(pf), Some(vf), Some(orig)) = (&att.pf_ifname, att.vf_index, &att.original_vf) {
        netlink::apply_vf_settings(node.nl()?, pf, vf, &plan.vf, orig)?;
    }
    Ok(())
}

/// The last steps of a PCI ADD: the device-info file, the result, the
/// record marked complete.
pub fn complete(ctx: &mut AddCtx<'_>, att: &mut Attachment, ipam: Option<&Value>) -> Result<Value> {
    if let Some(p) = &att.device_info_file {
        devinfo::write(p, att)?;
    }
    failpoint::hit("device-info-written")?;
    let mac = result_mac(ctx.node, ctx.plan, att);
    let res = result::add_result(
        &att.cni_version,
        &att.ifname,
        mac,
        &att.netns,
        &att.device.to_string(),
        ipam,
    );
    att.phase = Phase::Complete;
    att.result = Some(res.clone());
    ctx.ledger.save(att, false)?;
    Ok(res)
}

/// The MAC the result reports: the one the netconf set, else the VF's
/// admin MAC as the PF reports it (what sriov-cni reports), if it has one.
pub fn result_mac(node: &mut Node, plan: &Plan, att: &Attachment) -> Option<String> {
    if let Some(m) = plan.vf.mac {
        return Some(m.to_string());
    }
    let (pf, vf) = (att.pf_ifname.as_ref()?, att.vf_index?);
    let mac = node.nl().ok()?.vf_state(pf, vf).ok()?.mac;
    (!mac.is_zero()).then(|| mac.to_string())
}

/// Puts the VF settings ADD touched back to their recorded values.
pub fn restore_vf(ctx: &mut DelCtx<'_>, att: &Attachment, errors: &mut Vec<String>) {
    if let (Some(pf), Some(vf), Some(orig)) = (&att.pf_ifname, att.vf_index, &att.original_vf) {
        match ctx.node.nl() {
            Ok(nl) => {
                if let Err(e) = netlink::restore_vf_settings(nl, pf, vf, &att.vf_settings, orig) {
                    errors.push(format!("failed to restore VF {vf} of {pf}: {e}"));
                }
            }
            Err(e) => errors.push(e.msg),
        }
    }
}
