//! CNI CHECK: the attachment is still what ADD made: the mode's own check,
//! the VF settings, and IPAM's CHECK.

use ledger::Phase;
use serde_json::Value;

use crate::config::RawConf;
use crate::env::CniEnv;
use crate::error::{code, CniError, Result};
use crate::ipam;
use crate::mode;
use crate::node::Node;
use crate::plan;

pub fn check(node: &mut Node, env: &CniEnv, raw: &RawConf, conf: &Value) -> Result<()> {
    let plan = plan::plan(raw, env, node)?;
    let ledger = node.ledger();
    let att = ledger
        .load(&plan.base.name, &env.container_id, &env.ifname)?
        .ok_or_else(|| {
            CniError::new(
                code::UNKNOWN_CONTAINER,
                format!(
                    "no attachment {} of container {} on network {}",
                    env.ifname, env.container_id, plan.base.name
                ),
            )
        })?;
    let fail = |m: String| CniError::new(code::CHECK_FAILED, m);
    if att.phase != Phase::Complete {
        return Err(fail(format!(
            "the ADD of {} did not finish (stopped at {:?})",
            att.device, att.phase
        )));
    }
    mode::driver(att.device_type).check(node, &att)?;
    if let (Some(pf), Some(vf)) = (&att.pf_ifname, att.vf_index) {
        if !att.vf_settings.is_empty() {
            let now = node.nl()?.vf_state(pf, vf)?;
            let drift = netlink::vf_drift(&att.vf_settings, &now);
            if !drift.is_empty() {
                return Err(fail(format!(
                    "VF {vf} of {pf} drifted: {}",
                    drift.join(", ")
                )));
            }
        }
    }
    if att.ipam.is_some() {
        ipam::call(env, &att, "CHECK", conf)?;
    }
    Ok(())
}
