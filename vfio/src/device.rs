use std::path::{Path, PathBuf};

use crate::sysfs::{read_dir_names, read_link_name, read_trimmed};
use crate::{PciAddress, Result, Sysfs, VfioError};

/// One PCI function under `/sys/bus/pci/devices/<bdf>/`.
///
/// Every accessor reads sysfs afresh: the kernel changes these files under us.
#[derive(Debug, Clone)]
pub struct PciDevice<'a> {
    sysfs: &'a Sysfs,
    addr: PciAddress,
    dir: PathBuf,
}

impl<'a> PciDevice<'a> {
    pub(crate) fn new(sysfs: &'a Sysfs, addr: PciAddress, dir: PathBuf) -> Self {
        PciDevice { sysfs, addr, dir }
    }

    pub fn address(&self) -> PciAddress {
        self.addr
    }

    /// `/sys/bus/pci/devices/<bdf>`.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn sysfs(&self) -> &'a Sysfs {
        self.sysfs
    }

    /// The last component of the symlink `name`, parsed; `None` when there is no such link.
    fn link_attr<T: std::str::FromStr>(&self, name: &str) -> Result<Option<T>> {
        let link = self.dir.join(name);
        if link.symlink_metadata().is_err() {
            return Ok(None);
        }
        let target = read_link_name(&link)?;
        target.parse().map(Some).map_err(|_| VfioError::Parse {
            path: link,
            content: target,
        })
    }

    fn hex_attr(&self, name: &str) -> Result<u32> {
        let path = self.dir.join(name);
        let s = read_trimmed(&path)?;
        let digits = s.strip_prefix("0x").unwrap_or(&s);
        u32::from_str_radix(digits, 16).map_err(|_| VfioError::Parse { path, content: s })
    }

    /// `vendor`, e.g. 0x8086.
    pub fn vendor(&self) -> Result<u16> {
        self.hex_attr("vendor").map(|v| v as u16)
    }

    /// `device`, e.g. 0x10ca for an 82576 VF.
    pub fn device_id(&self) -> Result<u16> {
        self.hex_attr("device").map(|v| v as u16)
    }

    /// `class`, e.g. 0x020000 for an Ethernet controller.
    pub fn class(&self) -> Result<u32> {
        self.hex_attr("class")
    }

    /// The bound driver's name (`driver` symlink), or `None` when unbound.
    pub fn driver(&self) -> Result<Option<String>> {
        let link = self.dir.join("driver");
        if link.symlink_metadata().is_err() {
            return Ok(None);
        }
        read_link_name(&link).map(Some)
    }

    /// `driver_override`, or `None` when it reads `(null)` or is absent.
    pub fn driver_override(&self) -> Result<Option<String>> {
        let path = self.dir.join("driver_override");
        if !path.exists() {
            return Ok(None);
        }
        let s = read_trimmed(&path)?;
        Ok(if s.is_empty() || s == "(null)" {
            None
        } else {
            Some(s)
        })
    }

    /// `numa_node`; `None` when the kernel says -1 (no affinity) or omits it.
    pub fn numa_node(&self) -> Result<Option<u32>> {
        let path = self.dir.join("numa_node");
        if !path.exists() {
            return Ok(None);
        }
        let s = read_trimmed(&path)?;
        match s.parse::<i64>() {
            Ok(n) if n < 0 => Ok(None),
            Ok(n) => Ok(Some(n as u32)),
            Err(_) => Err(VfioError::Parse { path, content: s }),
        }
    }

    /// The IOMMU group number (`iommu_group` symlink), or `None` without an IOMMU.
    pub fn iommu_group(&self) -> Result<Option<u32>> {
        self.link_attr("iommu_group")
    }

    /// Every device in this device's IOMMU group, itself included.
    pub fn iommu_group_members(&self) -> Result<Vec<PciAddress>> {
        let Some(group) = self.iommu_group()? else {
            return Ok(Vec::new());
        };
        let dir = self
            .sysfs
            .iommu_groups_dir()
            .join(group.to_string())
            .join("devices");
        Ok(read_dir_names(&dir)?
            .iter()
            .filter_map(|n| n.parse().ok())
            .collect())
    }

    /// The PF of a VF (`physfn` symlink); `None` for anything that is not a VF.
    pub fn physfn(&self) -> Result<Option<PciAddress>> {
        self.link_attr("physfn")
    }

    /// The VFs of a PF as `(index, address)` from its `virtfnN` links, by index.
    pub fn virtfns(&self) -> Result<Vec<(u32, PciAddress)>> {
        let mut out = Vec::new();
        for name in read_dir_names(&self.dir)? {
            let Some(idx) = name.strip_prefix("virtfn") else {
                continue;
            };
            let Ok(idx) = idx.parse::<u32>() else {
                continue;
            };
            let link = self.dir.join(&name);
            let target = read_link_name(&link)?;
            let addr = target.parse().map_err(|_| VfioError::Parse {
                path: link,
                content: target,
            })?;
            out.push((idx, addr));
        }
        out.sort();
        Ok(out)
    }

    /// `virtfn<index>` of a PF.
    pub fn virtfn(&self, index: u32) -> Result<Option<PciAddress>> {
        self.link_attr(&format!("virtfn{index}"))
    }

    /// `sriov_numvfs`; `None` when the device has no SR-IOV capability.
    pub fn sriov_numvfs(&self) -> Result<Option<u32>> {
        self.opt_decimal("sriov_numvfs")
    }

    /// `sriov_totalvfs`; `None` when the device has no SR-IOV capability.
    pub fn sriov_totalvfs(&self) -> Result<Option<u32>> {
        self.opt_decimal("sriov_totalvfs")
    }

    fn opt_decimal(&self, name: &str) -> Result<Option<u32>> {
        let path = self.dir.join(name);
        if !path.exists() {
            return Ok(None);
        }
        let s = read_trimmed(&path)?;
        s.parse()
            .map(Some)
            .map_err(|_| VfioError::Parse { path, content: s })
    }

    /// The network interfaces of this function (`net/`), empty when it has none.
    pub fn net_names(&self) -> Result<Vec<String>> {
        let dir = self.dir.join("net");
        if !dir.exists() {
            return Ok(Vec::new());
        }
        read_dir_names(&dir)
    }

    /// The index of this VF on its PF.
    ///
    /// Computed from the PF's `sriov_offset` and `sriov_stride` (a VF's
    /// routing ID is the PF's plus offset plus index times stride, PCIe SR-IOV
    /// 3.3.9-10) and confirmed by the `virtfn<index>` link, so it costs the
    /// same on a PF with 256 VFs as with 2; falls back to scanning the links.
    pub fn vf_index(&self) -> Result<u32> {
        let pf = self.physfn()?.ok_or(VfioError::NotAVf(self.addr))?;
        let pf = self.sysfs.device(pf)?;
        if let (Some(off), Some(stride)) = (
            pf.opt_decimal("sriov_offset")?,
            pf.opt_decimal("sriov_stride")?,
        ) {
            let rid = |a: PciAddress| {
                (u32::from(a.bus) << 8) | (u32::from(a.device) << 3) | u32::from(a.function)
            };
            let delta = i64::from(rid(self.addr)) - i64::from(rid(pf.address())) - i64::from(off);
            if stride > 0
                && self.addr.domain == pf.address().domain
                && delta >= 0
                && delta % i64::from(stride) == 0
            {
                let idx = (delta / i64::from(stride)) as u32;
                if pf.virtfn(idx)? == Some(self.addr) {
                    return Ok(idx);
                }
            }
        }
        pf.virtfns()?
            .into_iter()
            .find(|(_, a)| *a == self.addr)
            .map(|(i, _)| i)
            .ok_or(VfioError::NotAVf(self.addr))
    }
}
