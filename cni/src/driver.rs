//! What every device mode does, and what it is given to do it.
//!
//! A mode is chosen once, by [`crate::mode::driver`], from the netconf's
//! `deviceType` for ADD and from the record for everything after it. ADD
//! runs [`DeviceMode::prepare`] (look, change nothing), writes the record
//! durably, then [`DeviceMode::setup`]; a failure there, DEL and GC run
//! [`DeviceMode::teardown`] against the record; CHECK runs
//! [`DeviceMode::check`].

use std::time::Duration;

use ledger::{Attachment, DeviceLock, Ledger};
use serde_json::Value;

use crate::env::CniEnv;
use crate::error::Result;
use crate::ipam;
use crate::node::Node;
use crate::plan::Plan;

/// How long a command waits for another one holding the same device.
pub const LOCK_WAIT: Duration = Duration::from_secs(10);

/// What ADD works with.
pub struct AddCtx<'a> {
    pub node: &'a mut Node,
    pub env: &'a CniEnv,
    pub plan: &'a Plan,
    /// The netconf as it came, for the IPAM plugin.
    pub conf: &'a Value,
    pub ledger: &'a Ledger,
    /// IPAM ADD succeeded, so undoing the ADD must call IPAM DEL.
    pub ipam_held: bool,
}

impl std::fmt::Debug for AddCtx<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AddCtx")
            .field("plan", &self.plan)
            .field("ipam_held", &self.ipam_held)
            .finish()
    }
}

impl AddCtx<'_> {
    /// Checks the IPAM plugin can be found, before anything changes.
    pub fn check_ipam(&self) -> Result<()> {
        if let Some(conf) = &self.plan.base.ipam {
            ipam::find(crate::config::ipam_type(conf)?, &self.env.path)?;
        }
        Ok(())
    }

    /// Runs IPAM ADD if the netconf has IPAM.
    pub fn run_ipam(&mut self, att: &Attachment) -> Result<Option<Value>> {
        if att.ipam.is_none() {
            return Ok(None);
        }
        // The IPAM plugin cleans up after its own failed ADD; asking it to
        // DEL a configuration it just rejected would fail again. So only a
        // successful ADD makes the rollback call IPAM DEL.
        let r = ipam::call(self.env, att, "ADD", self.conf)?;
        self.ipam_held = true;
        Ok(r)
    }
}

/// What DEL, GC and a rolled-back ADD work with.
pub struct DelCtx<'a> {
    pub node: &'a mut Node,
    pub env: &'a CniEnv,
    /// The netconf, when the runtime gave one (GC rebuilds it from the record).
    pub conf: Option<&'a Value>,
    pub ledger: &'a Ledger,
}

impl std::fmt::Debug for DelCtx<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DelCtx").field("node", &self.node).finish()
    }
}

/// What `prepare` found: the record to write, and the device's lock, held
/// until the command ends.
#[derive(Debug)]
pub struct Prepared {
    pub att: Attachment,
    /// The device's lock (and its IOMMU group's, taken first).
    pub locks: Vec<DeviceLock>,
}

/// A way of handing a device to a pod.
pub trait DeviceMode {
    /// Looks the device up and checks the node can serve the ADD, changing
    /// nothing; returns the record of the original state.
    fn prepare(&self, ctx: &mut AddCtx<'_>) -> Result<Prepared>;

    /// Makes the ADD's changes after the record is on disk; returns the
    /// CNI result.
    fn setup(&self, ctx: &mut AddCtx<'_>, att: &mut Attachment) -> Result<Value>;

    /// Puts the device back as the record says it was, whatever part of
    /// `setup` ran. Carries on past failures, noting each in `errors`.
    fn teardown(&self, ctx: &mut DelCtx<'_>, att: &Attachment, errors: &mut Vec<String>);

    /// CHECK: the device is still as `setup` left it.
    fn check(&self, node: &mut Node, att: &Attachment) -> Result<()>;
}
