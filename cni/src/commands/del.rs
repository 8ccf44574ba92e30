//! CNI DEL: succeeds when there is nothing (left) to release.

use ledger::Ledger;
use serde_json::Value;

use crate::config::{self, RawConf};
use crate::driver::{DelCtx, LOCK_WAIT};
use crate::env::CniEnv;
use crate::error::Result;
use crate::log;
use crate::node::Node;
use crate::release::release;

pub fn del(node: &mut Node, env: &CniEnv, raw: &RawConf, conf: &Value) -> Result<()> {
    let base = config::base(raw, &node.root)?;
    let ledger = Ledger::new(&base.state_dir);
    let Some(att) = ledger.load(&base.name, &env.container_id, &env.ifname)? else {
        log::debug(&format!(
            "DEL {} {}: no attachment recorded",
            env.container_id, env.ifname
        ));
        return Ok(());
    };
    let _lock = ledger.lock_device(&att.device, LOCK_WAIT)?;
    // Re-read under the lock: a concurrent DEL may have finished it.
    let Some(att) = ledger.load(&base.name, &env.container_id, &env.ifname)? else {
        return Ok(());
    };
    let ipam_held = att.ipam.is_some();
    let mut ctx = DelCtx {
        node,
        env,
        conf: Some(conf),
        ledger: &ledger,
    };
    release(&mut ctx, &att, ipam_held)
}
