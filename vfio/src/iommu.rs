use std::path::Path;

use crate::sysfs::read_trimmed;
use crate::{PciAddress, Result, Sysfs, VfioError, VFIO_PCI};

/// How vfio reaches a device's memory: through an IOMMU, or without one
/// (`enable_unsafe_noiommu_mode`, which gives `/dev/vfio/noiommu-<group>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IommuMode {
    Iommu,
    NoIommu,
}

/// A device sharing an IOMMU group, with the driver it is bound to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupMember {
    pub address: PciAddress,
    pub driver: Option<String>,
}

// Drivers that may hold a device of a group handed to user space: the
// kernel's vfio core allows only these besides vfio-pci itself
// (drivers/vfio/group.c, vfio_dev_driver_allowed), and PCIe ports whose
// driver does no DMA.
const DRIVERS_ALLOWED_IN_GROUP: &[&str] = &[VFIO_PCI, "pci-stub", "pcieport"];

impl IommuMode {
    pub fn as_str(self) -> &'static str {
        match self {
            IommuMode::Iommu => "iommu",
            IommuMode::NoIommu => "noiommu",
        }
    }
}

/// As [`IommuMode::as_str`] says it.
impl serde::Serialize for IommuMode {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> serde::Deserialize<'de> for IommuMode {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        match s.as_ref() {
            "iommu" => Ok(IommuMode::Iommu),
            "noiommu" => Ok(IommuMode::NoIommu),
            o => Err(serde::de::Error::custom(format!(
                "unknown IOMMU mode {o:?}: expected iommu or noiommu"
            ))),
        }
    }
}

impl Sysfs {
    /// Whether vfio-pci is loaded (its driver directory exists).
    pub fn vfio_pci_loaded(&self) -> bool {
        self.driver_dir(VFIO_PCI).exists()
    }

    /// Whether vfio runs in unsafe no-IOMMU mode
    /// (`/sys/module/vfio/parameters/enable_unsafe_noiommu_mode` reads Y).
    pub fn noiommu_enabled(&self) -> bool {
        let p = self
            .root()
            .join("sys/module/vfio/parameters/enable_unsafe_noiommu_mode");
        matches!(read_trimmed(&p).as_deref(), Ok("Y") | Ok("1"))
    }

    /// The IOMMU mode of the node: an IOMMU when it has any IOMMU group,
    /// no-IOMMU when vfio allows it, `None` when neither.
    pub fn iommu_mode(&self) -> Option<IommuMode> {
        if has_entries(&self.iommu_groups_dir()) {
            Some(IommuMode::Iommu)
        } else if self.noiommu_enabled() {
            Some(IommuMode::NoIommu)
        } else {
            None
        }
    }

    /// The other members of the device's IOMMU group with their drivers.
    pub fn group_peers(&self, addr: PciAddress) -> Result<Vec<GroupMember>> {
        let dev = self.device(addr)?;
        let mut out = Vec::new();
        for member in dev.iommu_group_members()? {
            if member == addr {
                continue;
            }
            let driver = match self.device(member) {
                Ok(d) => d.driver()?,
                Err(VfioError::NoSuchDevice(..)) => None,
                Err(e) => return Err(e),
            };
            out.push(GroupMember {
                address: member,
                driver,
            });
        }
        Ok(out)
    }

    /// Checks that `addr` can be handed to user space through vfio, and
    /// returns its group and the IOMMU mode.
    ///
    /// A group is viable only when every other member is unbound or bound to
    /// vfio-pci (or a driver the vfio core tolerates). A device without a
    /// group is usable only in no-IOMMU mode, where the group vfio-pci will
    /// create is not known before binding: `None` then.
    pub fn check_vfio_viable(&self, addr: PciAddress) -> Result<(Option<u32>, IommuMode)> {
        let dev = self.device(addr)?;
        let Some(group) = dev.iommu_group()? else {
            if self.noiommu_enabled() {
                return Ok((None, IommuMode::NoIommu));
            }
            return Err(VfioError::IommuOff { device: addr });
        };
        for peer in self.group_peers(addr)? {
            if let Some(driver) = peer.driver {
                if !DRIVERS_ALLOWED_IN_GROUP.contains(&driver.as_str()) {
                    return Err(VfioError::GroupNotViable {
                        device: addr,
                        group,
                        member: peer.address,
                        driver,
                    });
                }
            }
        }
        let mode = if self.group_is_noiommu(group) {
            IommuMode::NoIommu
        } else {
            IommuMode::Iommu
        };
        Ok((Some(group), mode))
    }

    /// Whether `group` is one vfio made in no-IOMMU mode (its group is named
    /// `vfio-noiommu` and its node is `/dev/vfio/noiommu-<group>`): a device
    /// bound early in that mode has a group, but no IOMMU behind it.
    pub fn group_is_noiommu(&self, group: u32) -> bool {
        let name = self.iommu_groups_dir().join(group.to_string()).join("name");
        matches!(read_trimmed(&name).as_deref(), Ok("vfio-noiommu"))
            || self
                .dev_vfio_dir()
                .join(format!("noiommu-{group}"))
                .exists()
    }
}

fn has_entries(dir: &Path) -> bool {
    std::fs::read_dir(dir)
        .map(|mut rd| rd.next().is_some())
        .unwrap_or(false)
}
