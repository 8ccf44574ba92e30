//! Fault injection for tests: `DPDK_CNI_FAILPOINT=<name>` kills the plugin
//! with SIGKILL when it reaches `<name>`; `<name>:error` makes it fail there
//! with an error instead, so the in-process rollback runs.

use crate::error::{code, CniError, Result};

/// The variable naming the failpoint.
pub const ENV: &str = "DPDK_CNI_FAILPOINT";

/// Every failpoint of a netdevice ADD, in the order it reaches them.
pub const NETDEVICE_STEPS: &[&str] = &[
    "recorded",
    "vf-configured",
    "ipam-done",
    "moved",
    "device-info-written",
];

/// Every failpoint of a vfio-pci ADD, in the order ADD reaches them.
pub const ADD_STEPS: &[&str] = &[
    "recorded",
    "vf-configured",
    "override-set",
    "unbound",
    "bound",
    "ipam-done",
    "device-info-written",
];

pub fn hit(name: &str) -> Result<()> {
    let Ok(want) = std::env::var(ENV) else {
        return Ok(());
    };
    let (point, mode) = want.split_once(':').unwrap_or((want.as_str(), "kill"));
    if point != name {
        return Ok(());
    }
    if mode == "error" {
        return Err(CniError::new(
            code::INJECTED,
            format!("injected failure at {name}"),
        ));
    }
    // A real crash: no destructors, no flush, no rollback.
    let _ = nix::sys::signal::raise(nix::sys::signal::Signal::SIGKILL);
    std::process::abort()
}
