//! CNI DEL: succeeds when there is nothing (left) to release, and whenever
//! the ledger can be written: what could not be restored is logged.

use ledger::{Claim, LedgerError};
use serde_json::Value;

use crate::config::{self, RawConf};
use crate::driver::{DelCtx, LOCK_WAIT};
use crate::env::CniEnv;
use crate::error::Result;
use crate::log;
use crate::node::Node;
use crate::release::{release, release_claims_of};

pub fn del(node: &mut Node, env: &CniEnv, raw: &RawConf, conf: &Value) -> Result<()> {
    let base = config::base(raw, node, false)?;
    let ledger = node.ledger();
    let me = Claim {
        network: base.name.clone(),
        container_id: env.container_id.clone(),
        ifname: env.ifname.clone(),
    };
    let load = || ledger.load(&me.network, &me.container_id, &me.ifname);
    let att = match load() {
        Ok(Some(att)) => att,
        Ok(None) => {
            log::debug(&format!(
                "DEL {} {}: no attachment recorded",
                env.container_id, env.ifname
            ));
            // A claim without its record: an ADD killed before its record.
            return release_claims_of(node, &ledger, &me);
        }
        // Another attachment's record under this one's file name: not ours.
        Err(e @ LedgerError::Clash { .. }) => {
            log::warn(&format!("DEL {} {}: {e}", env.container_id, env.ifname));
            return release_claims_of(node, &ledger, &me);
        }
        Err(e @ LedgerError::Quarantined { .. }) => {
            log::warn(&format!("DEL {} {}: {e}", env.container_id, env.ifname));
            return release_claims_of(node, &ledger, &me);
        }
        Err(e) => return Err(e.into()),
    };
    let _lock = ledger.lock_device(&att.device, LOCK_WAIT)?;
    // Re-read under the lock: a concurrent DEL may have finished it.
    let Some(att) = load()? else {
        return Ok(());
    };
    let ipam_held = att.ipam.is_some();
    let mut ctx = DelCtx {
        node,
        env,
        conf: Some(conf),
        ledger: &ledger,
    };
    release(&mut ctx, &att, ipam_held).map(|_| ())
}
