//! Administrative MAC pins. Setting a VF's MAC through the PF pins it: the
//! PF then refuses the VF driver's own requests (igb answers EADDRNOTAVAIL).
//! These probe whether a VF's MAC was pinned before ADD, and clear or set
//! the pin again so DEL leaves the VF as it found it.

use ledger::{Attachment, Ledger};
use netlink::{MacAddr, VfAttr};

use crate::error::{code, CniError, Result};
use crate::log;
use crate::node::{host_netlink, Node};

/// A unicast neighbour of `mac`: the kernel skips a change to the same
/// address, so asking a VF driver for it proves nothing.
fn neighbour_mac(mac: MacAddr) -> MacAddr {
    let mut b = mac.0;
    b[5] ^= 1;
    MacAddr(b)
}

/// Whether the PF lets the VF driver of `att`'s device choose its MAC (no
/// administrative pin): its netdev asks for a neighbour address, and the
/// answer counts only when the PF's own view follows (igbvf reports success
/// when its mailbox to the PF timed out). The MAC is put back either way; a
/// PF that pins refuses (EADDRNOTAVAIL) and nothing changes.
pub fn vf_driver_may_choose_mac(node: &mut Node, att: &Attachment) -> bool {
    let (Some(pf), Some(vf), Some(name)) =
        (&att.pf_ifname, att.vf_index, att.original_netdevs.first())
    else {
        return false;
    };
    let Ok(nl) = host_netlink() else {
        return false;
    };
    let Ok(Some(link)) = nl.link_by_name(name) else {
        return false;
    };
    let Some(mac) = link.mac else {
        return false;
    };
    let probe = neighbour_mac(mac);
    if !matches!(nl.try_set_link_mac(&link, probe), Ok(true)) {
        return false;
    }
    let taken = node
        .nl()
        .ok()
        .and_then(|n| n.vf_state(pf, vf).ok())
        .is_some_and(|s| s.mac == probe);
    if let Err(e) = nl.set_link_mac(&link, mac) {
        // The driver is unbound next; rebinding it at DEL resets the address.
        log::warn(&format!("{name}: putting MAC {mac} back failed: {e}"));
    }
    taken
}

/// How many times a DEL has the VF driver greet its PF again when the PF
/// did not take the VF's own MAC request.
const GREETINGS: usize = 2;

/// What the PF made of a VF driver's request for a MAC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PfAnswer {
    /// The PF's view of the VF shows the MAC.
    Taken,
    /// Refused (EADDRNOTAVAIL): the PF pins another MAC.
    Refused,
    /// Still not in the PF's view after every greeting.
    Unheard,
}

/// Has the VF driver of netdev `name` (VF `vf` of `pf`) ask its PF for
/// `mac`, as a change of the netdev's own MAC, and reads the PF's view
/// after each request. That view may not follow: igb ignores a VF's
/// requests after a reset of the VF it saw only after the VF driver's reset
/// message, and igbvf, once a request went unanswered, sends none until its
/// next reset, reporting success all the same. Then the netdev is closed
/// (and opened again if it was up): closing makes the driver reset the VF
/// and greet the PF; and the MAC is asked for again, [`GREETINGS`] times at
/// most.
pub fn ask_pf_for_mac(
    node: &mut Node,
    name: &str,
    pf: &str,
    vf: u32,
    mac: MacAddr,
) -> Result<PfAnswer> {
    let nl = host_netlink()?;
    for greeting in 0..=GREETINGS {
        let link = nl
            .link_by_name(name)?
            .ok_or_else(|| CniError::io(format!("{name} vanished")))?;
        if greeting > 0 {
            log::warn(&format!(
                "VF {vf} of {pf}: the PF did not take {name}'s request for MAC {mac}; \
                 closing {name} so its driver greets the PF again"
            ));
            nl.set_link_up(&link, !link.up)?;
            nl.set_link_up(&link, link.up)?;
        }
        // The kernel skips a change to the MAC the netdev has: the
        // neighbour first then.
        let mut asks = vec![mac];
        if link.mac == Some(mac) {
            asks.insert(0, neighbour_mac(mac));
        }
        let mut heard = true;
        for m in asks {
            if !nl.try_set_link_mac(&link, m)? {
                return Ok(PfAnswer::Refused);
            }
            if node.nl()?.vf_state(pf, vf)?.mac != m {
                heard = false;
                break;
            }
        }
        if heard {
            return Ok(PfAnswer::Taken);
        }
    }
    Ok(PfAnswer::Unheard)
}

/// After a vfio-pci DEL gave the VF back to its driver with the original
/// admin MAC (which pins it): clears the pin and has the driver ask for that
/// MAC itself, as it had before ADD (ADD found that this PF's view follows
/// the VF's own requests). Returns what could not be done.
pub fn unpin_vf_mac(node: &mut Node, att: &Attachment) -> Vec<String> {
    let (Some(pf), Some(vf), Some(orig)) = (&att.pf_ifname, att.vf_index, &att.original_vf) else {
        return Vec::new();
    };
    if orig.mac == MacAddr::default() {
        return Vec::new();
    }
    let Some(name) = att.device.pci().and_then(|a| node.current_netdev(a)) else {
        return vec![format!(
            "{}: no netdev to give MAC {} back to",
            att.device, orig.mac
        )];
    };
    let r = (|| -> Result<PfAnswer> {
        node.nl()?.set_vf(pf, vf, VfAttr::Mac(MacAddr::default()))?;
        ask_pf_for_mac(node, &name, pf, vf, orig.mac)
    })();
    match r {
        Ok(PfAnswer::Taken) => Vec::new(),
        Ok(PfAnswer::Refused) => vec![format!(
            "VF {vf} of {pf}: the PF refused {name} MAC {} right after its pin was cleared",
            orig.mac
        )],
        Ok(PfAnswer::Unheard) => {
            // The pin is gone and the netdev has its MAC; only the PF's view
            // lags. Not a reason to make the runtime repeat the DEL forever.
            log::warn(&format!(
                "VF {vf} of {pf}: the PF still does not show MAC {} after {GREETINGS} greetings of its driver",
                orig.mac
            ));
            Vec::new()
        }
        Err(e) => vec![format!(
            "failed to unpin the MAC of VF {vf} of {pf}: {}",
            e.msg
        )],
    }
}

/// Netdevice ADD: the PF refused the VF driver a new MAC, so an
/// administrative MAC pins it. Records that (DEL pins the original again),
/// then clears the pin with the all-zero MAC, which igb-like PFs take as
/// "the VF chooses".
pub fn unpin_admin_mac(node: &mut Node, ledger: &Ledger, att: &mut Attachment) -> Result<()> {
    let (Some(pf), Some(vf)) = (att.pf_ifname.clone(), att.vf_index) else {
        return Err(CniError::io(format!(
            "{} refused the MAC and has no PF to clear an admin MAC through",
            att.device
        )));
    };
    att.admin_mac_pinned = true;
    ledger.save(att, true)?;
    node.nl()?
        .set_vf(&pf, vf, VfAttr::Mac(MacAddr::default()))
        .map_err(|e| {
            CniError::new(
                code::VF_SETTING_REFUSED,
                format!("VF {vf} of {pf} has an administrative MAC that could not be cleared to set the pod's MAC: {e}"),
            )
        })
}

/// Netdevice DEL: sets the original admin MAC again, after the netdev has
/// taken it back.
pub fn repin_admin_mac(node: &mut Node, att: &Attachment, errors: &mut Vec<String>) {
    if let (Some(pf), Some(vf), Some(orig)) = (&att.pf_ifname, att.vf_index, &att.original_vf) {
        match node.nl() {
            Ok(nl) => {
                if let Err(e) = nl.set_vf(pf, vf, VfAttr::Mac(orig.mac)) {
                    errors.push(format!(
                        "failed to pin the admin MAC of VF {vf} of {pf} again: {e}"
                    ));
                }
            }
            Err(e) => errors.push(e.msg),
        }
    }
}
