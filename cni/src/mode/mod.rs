//! The device modes, one file each, and the one place that picks one.

mod follow;
mod macvlan;
mod netdevice;
mod pci;
mod userspace;
mod vfio_pci;

use ledger::DeviceType;

use crate::driver::DeviceMode;
use crate::plan::Plan;

/// The mode that serves `t`.
pub fn driver(t: DeviceType) -> &'static dyn DeviceMode {
    match t {
        DeviceType::VfioPci => &vfio_pci::VfioPci,
        DeviceType::Netdevice => &netdevice::Netdevice,
        DeviceType::Macvlan => &macvlan::Macvlan,
        DeviceType::Userspace => &userspace::Userspace,
    }
}

/// The mode that prepares an ADD: the netconf's `deviceType`, or without
/// one the device's current driver's (what the record then says serves).
pub fn for_plan(plan: &Plan) -> &'static dyn DeviceMode {
    match plan.device_type {
        Some(t) => driver(t),
        None => &follow::FollowDriver,
    }
}
