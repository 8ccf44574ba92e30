//! CNI GC: releases every attachment of this network not in
//! `cni.dev/valid-attachments`, and claims whose record is gone.

use ledger::Ledger;

use crate::config::{self, RawConf};
use crate::driver::{DelCtx, LOCK_WAIT};
use crate::env::CniEnv;
use crate::error::{CniError, Result};
use crate::log;
use crate::node::Node;
use crate::release::release;

pub fn gc(node: &mut Node, env: &CniEnv, raw: &RawConf) -> Result<()> {
    let base = config::base(raw, &node.root)?;
    let valid = raw.valid_attachments.clone().ok_or_else(|| {
        CniError::netconf(
            "GC needs cni.dev/valid-attachments in the netconf (an empty list releases everything)",
        )
    })?;
    let ledger = Ledger::new(&base.state_dir);
    let mut errors = Vec::new();
    for att in ledger.list(&base.name)? {
        if valid
            .iter()
            .any(|v| v.container_id == att.container_id && v.ifname == att.ifname)
        {
            continue;
        }
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
        let res = ledger
            .lock_device(&att.device, LOCK_WAIT)
            .map_err(CniError::from)
            .and_then(|_lock| release(&mut ctx, &att, att.ipam.is_some()));
        if let Err(e) = res {
            errors.push(e.msg);
        }
    }
    // Claims whose record is gone (a crash between the two writes).
    for (device, claim) in ledger.claims()? {
        if claim.network == base.name
            && ledger
                .load(&claim.network, &claim.container_id, &claim.ifname)?
                .is_none()
        {
            ledger.release_claim(device, &claim)?;
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
