//! The device modes, one file each, and the one place that picks one.

mod macvlan;
mod netdevice;
mod pci;
mod vfio_pci;

use ledger::DeviceType;

use crate::driver::DeviceMode;

/// The mode that serves `t`.
pub fn driver(t: DeviceType) -> &'static dyn DeviceMode {
    match t {
        DeviceType::VfioPci => &vfio_pci::VfioPci,
        DeviceType::Netdevice => &netdevice::Netdevice,
        DeviceType::Macvlan => &macvlan::Macvlan,
    }
}
