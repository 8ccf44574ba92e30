//! CNI GC: releases every attachment of this network not in
//! `cni.dev/valid-attachments`, and claims whose record is gone. Each
//! record is read again under its device's lock before anything is undone.

use crate::config::{self, RawConf};
use crate::driver::{DelCtx, LOCK_WAIT};
use crate::env::CniEnv;
use crate::error::{CniError, Result};
use crate::log;
use crate::node::Node;
use crate::release::{release, release_claim_at};

pub fn gc(node: &mut Node, env: &CniEnv, raw: &RawConf) -> Result<()> {
    let base = config::base(raw, node, true)?;
    let valid = raw.valid_attachments.clone().ok_or_else(|| {
        CniError::netconf(
            "GC needs cni.dev/valid-attachments in the netconf (an empty list releases everything)",
        )
    })?;
    let ledger = node.ledger();
    let mut errors = Vec::new();
    for rec in ledger.list(&base.name)? {
        let att = match rec {
            Ok(att) => att,
            Err(e) => {
                log::warn(&format!("GC: {e}"));
                continue;
            }
        };
        if valid
            .iter()
            .any(|v| v.container_id == att.container_id && v.ifname == att.ifname)
        {
            continue;
        }
        let lock = match ledger.lock_device(&att.device, LOCK_WAIT) {
            Ok(l) => l,
            Err(e) => {
                errors.push(e.to_string());
                continue;
            }
        };
        // What was listed may have changed hands since: read it again.
        let att = match ledger.load(&att.network, &att.container_id, &att.ifname) {
            Ok(Some(a)) => a,
            Ok(None) => continue,
            Err(e) => {
                log::warn(&format!("GC: {e}"));
                continue;
            }
        };
        log::info(&format!(
            "GC: releasing {} of {} {}",
            att.device, att.container_id, att.ifname
        ));
        let mut ctx = DelCtx {
            node,
            env,
            conf: None,
            ledger: &ledger,
        };
        match release(&mut ctx, &att, att.ipam.is_some()) {
            Ok(left) => errors.extend(left),
            Err(e) => errors.push(e.msg),
        }
        drop(lock);
    }
    // Claims whose record is gone (an ADD killed between the two writes).
    let claims = match ledger.claims() {
        Ok(c) => c,
        Err(e) => {
            log::warn(&format!("GC: not every claim can be read: {e}"));
            Vec::new()
        }
    };
    for (device, claim) in claims {
        if claim.network != base.name {
            continue;
        }
        let _lock = ledger.lock_device(&device, LOCK_WAIT)?;
        if ledger.claim(device)?.as_ref() == Some(&claim)
            && ledger
                .load(&claim.network, &claim.container_id, &claim.ifname)
                .is_ok_and(|a| a.is_none())
        {
            release_claim_at(node, &ledger, device, &claim)?;
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(CniError::io(format!(
            "GC could not release everything: {}",
            errors.join("; ")
        )))
    }
}
