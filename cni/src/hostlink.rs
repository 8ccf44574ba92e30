//! The host's side of netdevs after a pod: a kernel-mode netdev brought
//! back from the pod's namespace (or found again after the namespace died)
//! with its original name, MAC, MTU and state; and, after vfio-pci DEL, the
//! VF's new netdev given the name it had before ADD.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::Path;

use ledger::{Attachment, DeviceLock, Ledger, OriginalLink};
use netlink::netns::in_netns;
use netlink::{Link, MacAddr, RtNetlink};

use crate::error::Result;
use crate::log;
use crate::macpin::{self, PfAnswer};
use crate::node::{host_netlink, Node};

/// The node's lock on the kernel's `ethN` names, for a DEL that gives a VF
/// with a netdev back to its kernel driver: held from the driver's probe,
/// where the kernel names the new netdev the first free `ethN`, to
/// [`restore_netdev_name`]. Two DELs in parallel would otherwise each be
/// handed the other's name and find its own taken; one at a time, every VF
/// comes back under a name nobody needs and leaves it for its own. A lock
/// that cannot be had in time is done without (a name clash is only a
/// warning): DEL never waits on it for good.
pub fn lock_netdev_names(ledger: &Ledger, att: &Attachment) -> Option<DeviceLock> {
    if att.original_netdevs.is_empty() {
        return None;
    }
    match ledger.lock_device(&"netdev-names", crate::driver::LOCK_WAIT) {
        Ok(l) => Some(l),
        Err(e) => {
            log::warn(&format!(
                "{} goes back to its driver without the netdev name lock: {e}",
                att.device
            ));
            None
        }
    }
}

/// After a vfio-pci DEL gave the device back to its kernel driver: the new
/// netdev gets the name it had before ADD (the kernel hands out the first
/// free `ethN`, which another device may have taken meanwhile). A name now
/// held by another link is left alone, with a warning.
pub fn restore_netdev_name(node: &Node, att: &Attachment) -> Vec<String> {
    let Some(orig) = att.original_netdevs.first() else {
        return Vec::new();
    };
    let Some(now) = att.device.pci().and_then(|a| node.current_netdev(a)) else {
        return Vec::new();
    };
    if &now == orig {
        return Vec::new();
    }
    let r = (|| -> Result<()> {
        let nl = host_netlink()?;
        if nl.link_by_name(orig)?.is_some() {
            log::warn(&format!(
                "{} is back as {now}: its name before ADD, {orig}, belongs to another link now",
                att.device
            ));
            return Ok(());
        }
        let Some(link) = nl.link_by_name(&now)? else {
            return Ok(());
        };
        if link.up {
            nl.set_link_up(&link, false)?;
        }
        nl.rename_link(&link, orig)?;
        if link.up {
            let renamed = Link {
                name: orig.clone(),
                ..link
            };
            nl.set_link_up(&renamed, true)?;
        }
        Ok(())
    })();
    match r {
        Ok(()) => Vec::new(),
        Err(e) => vec![format!("failed to rename {now} back to {orig}: {}", e.msg)],
    }
}

/// The MAC of the device's netdev before ADD (its first recorded name).
pub fn netdev_mac(att: &Attachment) -> Option<MacAddr> {
    let name = att.original_netdevs.first()?;
    host_netlink().ok()?.link_by_name(name).ok()??.mac
}

/// After a vfio-pci DEL: the VF's netdev gets the MAC it had before ADD. A
/// VF driver that had chosen its MAC picks a new one when it probes again;
/// one the PF pins refuses (EADDRNOTAVAIL), and then the PF's admin MAC,
/// which DEL has restored, is what it has. Where the PF's view of the VF
/// showed the netdev's MAC before ADD, it must show it again: the driver
/// asks its PF as [`macpin::ask_pf_for_mac`] does, greeting it again when
/// the request went unheard.
pub fn restore_netdev_mac(node: &mut Node, att: &Attachment) -> Vec<String> {
    let Some(want) = att
        .original_netdev_mac
        .as_deref()
        .and_then(|m| m.parse::<MacAddr>().ok())
    else {
        return Vec::new();
    };
    let Some(now) = att.device.pci().and_then(|a| node.current_netdev(a)) else {
        return Vec::new();
    };
    let r = (|| -> Result<()> {
        let nl = host_netlink()?;
        let Some(link) = nl.link_by_name(&now)? else {
            return Ok(());
        };
        let pf_showed = match (&att.pf_ifname, att.vf_index, &att.original_vf) {
            (Some(pf), Some(vf), Some(orig)) if orig.mac == want => Some((pf, vf)),
            _ => None,
        };
        let taken = match pf_showed {
            Some((pf, vf)) => {
                if link.mac == Some(want) && node.nl()?.vf_state(pf, vf)?.mac == want {
                    return Ok(());
                }
                match macpin::ask_pf_for_mac(node, &now, pf, vf, want)? {
                    PfAnswer::Taken => true,
                    PfAnswer::Refused => false,
                    PfAnswer::Unheard => {
                        log::warn(&format!(
                            "VF {vf} of {pf}: the PF still does not show {now}'s MAC {want}"
                        ));
                        true
                    }
                }
            }
            None if link.mac == Some(want) => return Ok(()),
            None => nl.try_set_link_mac(&link, want)?,
        };
        if !taken {
            log::warn(&format!(
                "{now}: the PF pins its MAC, so it keeps {} rather than {want}",
                link.mac.map(|m| m.to_string()).unwrap_or_default()
            ));
        }
        Ok(())
    })();
    match r {
        Ok(()) => Vec::new(),
        Err(e) => vec![format!(
            "failed to give {now} its MAC {want} back: {}",
            e.msg
        )],
    }
}

/// Brings a netdev back to the host under its original name, MAC, MTU and
/// state, wherever a crashed or finished ADD left it. Returns what could
/// not be done.
pub fn release_netdevice(node: &Node, att: &Attachment) -> Vec<String> {
    let mut errors = Vec::new();
    let Some(orig) = att.original_link.clone() else {
        return errors;
    };
    let host_ns = match File::open("/proc/self/ns/net") {
        Ok(f) => f,
        Err(e) => return vec![format!("cannot open the host network namespace: {e}")],
    };
    // 1. From the pod back to the host, if the pod and the link are still there.
    if !att.netns.is_empty() && Path::new(&att.netns).exists() {
        let (ifname, orig_name) = (att.ifname.clone(), orig.name.clone());
        let fd = host_ns.as_raw_fd();
        let r = in_netns(Path::new(&att.netns), move || -> Result<()> {
            let nl = host_netlink()?;
            let found = match nl.link_by_name(&ifname)? {
                Some(l) => Some(l),
                None => nl.link_by_name(&orig_name)?,
            };
            if let Some(l) = found {
                // Back under its own name in one request. When that name is
                // taken on the node the kernel refuses, before or after the
                // move: if the link is still here, move it as it is; the
                // rename below then reports the clash.
                if !nl.move_link_to_netns_as(&l, fd, &orig_name)?
                    && nl.link_by_name(&l.name)?.is_some()
                {
                    nl.set_link_up(&l, false)?;
                    nl.move_link_to_netns(&l, fd)?;
                }
            }
            Ok(())
        });
        match r {
            Ok(Ok(())) => {}
            Ok(Err(e)) => errors.push(e.msg),
            Err(e) => errors.push(format!("failed to enter {}: {e}", att.netns)),
        }
    }
    // 2. In the host: find it by its names or, when the kernel brought it
    //    back from a deleted namespace under another name, by PCI address.
    let nl = match host_netlink() {
        Ok(nl) => nl,
        Err(e) => {
            errors.push(e.msg);
            return errors;
        }
    };
    let find = |errors: &mut Vec<String>| {
        let mut candidates = vec![orig.name.clone(), att.ifname.clone()];
        if let Some(addr) = att.device.pci() {
            if let Ok(d) = node.sysfs.device(addr) {
                candidates.extend(d.net_names().unwrap_or_default());
            }
        }
        for c in &candidates {
            match nl.link_by_name(c) {
                Ok(Some(l)) => return Some(l),
                Ok(None) => {}
                Err(e) => errors.push(e.to_string()),
            }
        }
        None
    };
    let mut link = find(&mut errors);
    if link.is_none() {
        // The pod's namespace is being torn down: the kernel hands a
        // physical netdev back to the host asynchronously. Wait (bounded)
        // for it to show up under its PCI device again.
        if let Some(addr) = att.device.pci() {
            let bound = node
                .sysfs
                .device(addr)
                .and_then(|d| d.driver())
                .ok()
                .flatten()
                .is_some();
            if bound && node.sysfs.wait_netdev(addr, node.bind).is_ok() {
                link = find(&mut errors);
            }
        }
    }
    let Some(link) = link else {
        // A virtual stand-in dies with its namespace; a real VF always comes back.
        log::warn(&format!(
            "the netdev {} of {} is gone; nothing to restore",
            orig.name, att.device
        ));
        return errors;
    };
    if let Err(e) = restore_link(&nl, link, &orig) {
        errors.push(e.to_string());
    }
    errors
}

fn restore_link(nl: &RtNetlink, mut link: Link, orig: &OriginalLink) -> netlink::Result<()> {
    let orig_mac: Option<MacAddr> = orig.mac.as_deref().and_then(|m| m.parse().ok());
    let needs_down = link.name != orig.name || (orig_mac.is_some() && link.mac != orig_mac);
    if needs_down && link.up {
        nl.set_link_up(&link, false)?;
        link.up = false;
    }
    if link.name != orig.name {
        nl.rename_link(&link, &orig.name)?;
        link.name = orig.name.clone();
    }
    if let Some(m) = orig_mac {
        if link.mac != Some(m) {
            nl.set_link_mac(&link, m)?;
        }
    }
    if link.mtu != orig.mtu && orig.mtu != 0 {
        nl.set_link_mtu(&link, orig.mtu)?;
    }
    if link.up != orig.up {
        nl.set_link_up(&link, orig.up)?;
    }
    Ok(())
}
