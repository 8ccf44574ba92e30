//! Fault injection, in the `test-hooks` build only: `DPDK_CNI_FAILPOINT=<name>`
//! kills the plugin with SIGKILL when it reaches `<name>`; `<name>:error`
//! makes it fail there with an error instead, so the in-process rollback
//! runs. The default build compiles every point to nothing and reads no
//! variable.

use crate::error::Result;

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

/// The failpoint of a vfio-pci DEL: the device is off vfio-pci, its
/// `driver_override` names its own driver, and it is not probed yet.
pub const DEL_OFF_VFIO: &str = "off-vfio";

/// The failpoint of a vfio-pci DEL after the device is back on its own
/// driver under its own netdev name, before its MAC is handed back to it.
pub const DEL_DRIVER_BACK: &str = "driver-back";

#[cfg(not(feature = "test-hooks"))]
#[inline(always)]
pub fn hit(_name: &str) -> Result<()> {
    Ok(())
}

#[cfg(feature = "test-hooks")]
pub fn hit(name: &str) -> Result<()> {
    use crate::error::{code, CniError};
    let Ok(want) = std::env::var(crate::hooks::FAILPOINT_ENV) else {
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
