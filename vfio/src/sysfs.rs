use std::fmt;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::{PciAddress, PciDevice, Result, VfioError};

/// Reacts to a write the way the kernel would; only the fake tree sets one.
pub(crate) type WriteHook = fn(&Sysfs, &Path, &str) -> Result<()>;

/// The sysfs and `/dev` of one node, rooted at a path.
///
/// `Sysfs::new("/")` is the real node. Tests build a tree in a temporary
/// directory (see the `test-util` feature) and pass its path.
#[derive(Clone)]
pub struct Sysfs {
    root: PathBuf,
    pub(crate) on_write: Option<WriteHook>,
}

impl fmt::Debug for Sysfs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sysfs")
            .field("root", &self.root)
            .field("emulated", &self.on_write.is_some())
            .finish()
    }
}

impl Sysfs {
    /// The node whose `sys/` and `dev/` directories are under `root`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Sysfs {
            root: root.into(),
            on_write: None,
        }
    }

    /// The root this value was made with.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Whether writes are answered by an emulated kernel (fake trees only).
    pub fn is_emulated(&self) -> bool {
        self.on_write.is_some()
    }

    /// `/sys/bus/pci/devices`.
    pub fn pci_devices_dir(&self) -> PathBuf {
        self.root.join("sys/bus/pci/devices")
    }

    /// `/sys/bus/pci/drivers/<driver>`.
    pub fn driver_dir(&self, driver: &str) -> PathBuf {
        self.root.join("sys/bus/pci/drivers").join(driver)
    }

    /// `/sys/bus/pci/drivers_probe`.
    pub fn drivers_probe_path(&self) -> PathBuf {
        self.root.join("sys/bus/pci/drivers_probe")
    }

    /// `/sys/kernel/iommu_groups`.
    pub fn iommu_groups_dir(&self) -> PathBuf {
        self.root.join("sys/kernel/iommu_groups")
    }

    /// `/dev/vfio`.
    pub fn dev_vfio_dir(&self) -> PathBuf {
        self.root.join("dev/vfio")
    }

    /// `/sys/class/net`.
    pub fn class_net_dir(&self) -> PathBuf {
        self.root.join("sys/class/net")
    }

    /// The device at `addr`, or an error naming the missing sysfs directory.
    pub fn device(&self, addr: PciAddress) -> Result<PciDevice<'_>> {
        let dir = self.pci_devices_dir().join(addr.to_string());
        if !dir.exists() {
            return Err(VfioError::NoSuchDevice(addr, dir));
        }
        Ok(PciDevice::new(self, addr, dir))
    }

    /// Every PCI device on the node, in address order.
    pub fn devices(&self) -> Result<Vec<PciAddress>> {
        let dir = self.pci_devices_dir();
        let mut out: Vec<PciAddress> = read_dir_names(&dir)?
            .iter()
            .filter_map(|n| n.parse().ok())
            .collect();
        out.sort();
        Ok(out)
    }

    /// The PCI device behind a network interface (`/sys/class/net/<ifname>/device`).
    pub fn device_of_netdev(&self, ifname: &str) -> Result<PciAddress> {
        if ifname.is_empty() || ifname.contains('/') || ifname == "." || ifname == ".." {
            return Err(VfioError::Parse {
                path: self.class_net_dir(),
                content: ifname.to_string(),
            });
        }
        let link = self.class_net_dir().join(ifname).join("device");
        read_link_name(&link)?
            .parse()
            .map_err(|_| VfioError::Parse {
                path: link,
                content: ifname.to_string(),
            })
    }

    /// Writes `data` to a sysfs attribute, the way `echo -n data > path` does.
    pub fn write(&self, path: &Path, data: &str) -> Result<()> {
        let werr = |source| VfioError::Write {
            path: path.to_path_buf(),
            data: data.to_string(),
            source,
        };
        // sysfs attributes must be written in one write(2); no O_CREAT on the
        // real tree, where every attribute already exists.
        let mut f = fs::OpenOptions::new()
            .write(true)
            .truncate(self.on_write.is_some())
            .open(path)
            .map_err(werr)?;
        f.write_all(data.as_bytes()).map_err(werr)?;
        drop(f);
        if let Some(hook) = self.on_write {
            hook(self, path, data)?;
        }
        Ok(())
    }
}

pub(crate) fn read_trimmed(path: &Path) -> Result<String> {
    fs::read_to_string(path)
        .map(|s| s.trim().to_string())
        .map_err(|source| VfioError::Read {
            path: path.to_path_buf(),
            source,
        })
}

/// The last component of a symlink's target, e.g. `igbvf` for `driver`.
pub(crate) fn read_link_name(path: &Path) -> Result<String> {
    let target = fs::read_link(path).map_err(|source| VfioError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    target
        .file_name()
        .and_then(|n| n.to_str())
        .map(str::to_string)
        .ok_or_else(|| VfioError::Parse {
            path: path.to_path_buf(),
            content: target.display().to_string(),
        })
}

pub(crate) fn read_dir_names(dir: &Path) -> Result<Vec<String>> {
    let rd = fs::read_dir(dir).map_err(|source| VfioError::Read {
        path: dir.to_path_buf(),
        source,
    })?;
    let mut names = Vec::new();
    for entry in rd {
        let entry = entry.map_err(|source| VfioError::Read {
            path: dir.to_path_buf(),
            source,
        })?;
        if let Some(n) = entry.file_name().to_str() {
            names.push(n.to_string());
        }
    }
    names.sort();
    Ok(names)
}
