//! PCI devices as the Linux kernel shows them in sysfs, and the vfio-pci
//! driver model on top of them.
//!
//! Everything here goes through a [`Sysfs`] value whose root is a path: `/` on a
//! node, a temporary directory in tests. It reads device facts under
//! `/sys/bus/pci/devices/<bdf>/` (vendor, class, driver, `driver_override`,
//! `numa_node`, `iommu_group`, `physfn`, `virtfnN`, `sriov_numvfs`, `net/`),
//! rebinds a device with `driver_override` + `unbind` + `drivers_probe`, waits
//! for `/dev/vfio/<group>`, and checks that an IOMMU group can be handed to user
//! space. It knows nothing about CNI.
//!
//! See <https://docs.kernel.org/driver-api/vfio.html> and
//! <https://docs.kernel.org/PCI/sysfs-pci.html>.

mod addr;
mod bind;
mod device;
mod error;
#[cfg(feature = "test-util")]
pub mod fake;
mod iommu;
mod sysfs;

pub use addr::PciAddress;
pub use bind::{BindOptions, VFIO_PCI};
pub use device::PciDevice;
pub use error::{Result, VfioError};
pub use iommu::{GroupMember, IommuMode};
pub use sysfs::Sysfs;
