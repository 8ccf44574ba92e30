//! A fake node for tests: a sysfs and `/dev` tree in a directory, with PFs,
//! VFs, drivers, IOMMU groups and NUMA nodes, and an emulated kernel that
//! answers `unbind`, `driver_override` and `drivers_probe` writes the way
//! Linux does (moving the `driver` link, creating `/dev/vfio/<group>`,
//! removing and restoring `net/<ifname>`).
//!
//! Fake-only bookkeeping lives in a `.fake/` directory inside each device.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

use crate::sysfs::read_trimmed;
use crate::{PciAddress, Result, Sysfs, VfioError};

/// Builder and handle for a fake node rooted at a directory.
#[derive(Debug, Clone)]
pub struct FakeNode {
    root: PathBuf,
}

/// One PCI function to add to a [`FakeNode`].
#[derive(Debug, Clone)]
pub struct FakeDevice {
    pub address: PciAddress,
    pub vendor: u16,
    pub device: u16,
    pub class: u32,
    pub driver: Option<String>,
    /// The driver `drivers_probe` picks when no `driver_override` is set.
    pub default_driver: Option<String>,
    pub iommu_group: Option<u32>,
    pub numa_node: i32,
    /// The netdev name the device has while bound to its default driver.
    pub netdev: Option<String>,
}

/// A PF with VFs, as [`FakeNode::add_pf`] lays it out.
#[derive(Debug, Clone)]
pub struct FakePf {
    pub address: PciAddress,
    pub ifname: String,
    pub vfs: Vec<PciAddress>,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> VfioError + '_ {
    move |source| VfioError::Write {
        path: path.to_path_buf(),
        data: String::new(),
        source,
    }
}

fn put(path: &Path, data: &str) -> Result<()> {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).map_err(io(parent))?;
    }
    fs::write(path, data).map_err(io(path))
}

fn link(target: &Path, at: &Path) -> Result<()> {
    let _ = fs::remove_file(at);
    symlink(target, at).map_err(io(at))
}

impl FakeNode {
    /// An empty node under `root` with the vfio-pci, igb and igbvf drivers,
    /// `/dev/vfio/vfio`, and an IOMMU.
    pub fn new(root: impl Into<PathBuf>) -> Result<Self> {
        let node = FakeNode { root: root.into() };
        let sysfs = Sysfs::new(&node.root);
        for dir in [
            sysfs.pci_devices_dir(),
            sysfs.iommu_groups_dir(),
            sysfs.dev_vfio_dir(),
            sysfs.class_net_dir(),
        ] {
            fs::create_dir_all(&dir).map_err(io(&dir))?;
        }
        put(&sysfs.drivers_probe_path(), "")?;
        put(&sysfs.dev_vfio_dir().join("vfio"), "")?;
        for drv in [crate::VFIO_PCI, "igb", "igbvf"] {
            node.add_driver(drv)?;
        }
        Ok(node)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// A [`Sysfs`] over this tree whose writes the emulated kernel answers.
    pub fn sysfs(&self) -> Sysfs {
        emulated(&self.root)
    }

    /// Adds `/sys/bus/pci/drivers/<name>` with its `unbind` attribute.
    pub fn add_driver(&self, name: &str) -> Result<()> {
        let dir = Sysfs::new(&self.root).driver_dir(name);
        put(&dir.join("unbind"), "")?;
        put(&dir.join("bind"), "")
    }

    /// Removes a driver, as if its module were unloaded.
    pub fn remove_driver(&self, name: &str) -> Result<()> {
        let dir = Sysfs::new(&self.root).driver_dir(name);
        fs::remove_dir_all(&dir).map_err(io(&dir))
    }

    /// Removes every IOMMU group link: the node then has the IOMMU off.
    pub fn disable_iommu(&self) -> Result<()> {
        let sysfs = Sysfs::new(&self.root);
        for addr in sysfs.devices()? {
            let _ = fs::remove_file(
                sysfs
                    .pci_devices_dir()
                    .join(addr.to_string())
                    .join("iommu_group"),
            );
        }
        let groups = sysfs.iommu_groups_dir();
        fs::remove_dir_all(&groups).map_err(io(&groups))?;
        fs::create_dir_all(&groups).map_err(io(&groups))
    }

    /// Turns the IOMMU off and vfio's no-IOMMU mode on: vfio-pci then makes
    /// a group (`/dev/vfio/noiommu-N`) for each device it binds.
    pub fn enable_noiommu(&self) -> Result<()> {
        self.disable_iommu()?;
        put(
            &self
                .root
                .join("sys/module/vfio/parameters/enable_unsafe_noiommu_mode"),
            "Y\n",
        )
    }

    /// Adds one PCI function.
    pub fn add_device(&self, d: &FakeDevice) -> Result<PathBuf> {
        let sysfs = Sysfs::new(&self.root);
        let dir = sysfs.pci_devices_dir().join(d.address.to_string());
        fs::create_dir_all(dir.join(".fake")).map_err(io(&dir))?;
        put(&dir.join("vendor"), &format!("0x{:04x}\n", d.vendor))?;
        put(&dir.join("device"), &format!("0x{:04x}\n", d.device))?;
        put(&dir.join("class"), &format!("0x{:06x}\n", d.class))?;
        put(&dir.join("numa_node"), &format!("{}\n", d.numa_node))?;
        put(&dir.join("driver_override"), "(null)\n")?;
        if let Some(def) = &d.default_driver {
            put(&dir.join(".fake/default_driver"), def)?;
        }
        if let Some(n) = &d.netdev {
            put(&dir.join(".fake/netdev"), n)?;
        }
        if let Some(g) = d.iommu_group {
            let gdir = sysfs.iommu_groups_dir().join(g.to_string());
            fs::create_dir_all(gdir.join("devices")).map_err(io(&gdir))?;
            link(&dir, &gdir.join("devices").join(d.address.to_string()))?;
            link(&gdir, &dir.join("iommu_group"))?;
        }
        if let Some(drv) = &d.driver {
            attach(&sysfs, d.address, drv)?;
        }
        Ok(dir)
    }

    /// Adds an Intel 82576-like PF (`igb`) at `address` named `ifname`, with
    /// `numvfs` VFs (`igbvf`, netdevs `<ifname>v<N>`) at functions following it,
    /// each VF in its own IOMMU group starting at `first_group`.
    pub fn add_pf(
        &self,
        address: PciAddress,
        ifname: &str,
        numvfs: u32,
        totalvfs: u32,
        numa_node: i32,
        first_group: u32,
    ) -> Result<FakePf> {
        let pf_dir = self.add_device(&FakeDevice {
            address,
            vendor: 0x8086,
            device: 0x10c9,
            class: 0x020000,
            driver: Some("igb".into()),
            default_driver: Some("igb".into()),
            iommu_group: Some(first_group),
            numa_node,
            netdev: Some(ifname.into()),
        })?;
        put(&pf_dir.join("sriov_numvfs"), &format!("{numvfs}\n"))?;
        put(&pf_dir.join("sriov_totalvfs"), &format!("{totalvfs}\n"))?;
        // Routing IDs as an Intel 82576 lays them out: first VF at offset
        // 0x80, stride 2 (0000:01:00.0 -> 0000:01:10.0, 0000:01:10.2, ...).
        const OFFSET: u32 = 0x80;
        const STRIDE: u32 = 2;
        put(&pf_dir.join("sriov_offset"), &format!("{OFFSET}\n"))?;
        put(&pf_dir.join("sriov_stride"), &format!("{STRIDE}\n"))?;
        let pf_rid = (u32::from(address.bus) << 8)
            | (u32::from(address.device) << 3)
            | u32::from(address.function);
        let mut vfs = Vec::new();
        for i in 0..numvfs {
            let rid = pf_rid + OFFSET + i * STRIDE;
            let vf = PciAddress {
                domain: address.domain,
                bus: (rid >> 8) as u8,
                device: ((rid >> 3) & 0x1f) as u8,
                function: (rid & 7) as u8,
            };
            let vf_dir = self.add_device(&FakeDevice {
                address: vf,
                vendor: 0x8086,
                device: 0x10ca,
                class: 0x020000,
                driver: Some("igbvf".into()),
                default_driver: Some("igbvf".into()),
                iommu_group: Some(first_group + 1 + i),
                numa_node,
                netdev: Some(format!("{ifname}v{i}")),
            })?;
            link(&pf_dir, &vf_dir.join("physfn"))?;
            link(&vf_dir, &pf_dir.join(format!("virtfn{i}")))?;
            vfs.push(vf);
        }
        Ok(FakePf {
            address,
            ifname: ifname.to_string(),
            vfs,
        })
    }

    /// Moves `address` into IOMMU group `group` (made if new), as devices
    /// behind a bridge without ACS share one.
    pub fn join_group(&self, address: PciAddress, group: u32) -> Result<()> {
        let sysfs = Sysfs::new(&self.root);
        let dir = sysfs.pci_devices_dir().join(address.to_string());
        if let Ok(old) = fs::read_link(dir.join("iommu_group")) {
            let _ = fs::remove_file(old.join("devices").join(address.to_string()));
        }
        let gdir = sysfs.iommu_groups_dir().join(group.to_string());
        fs::create_dir_all(gdir.join("devices")).map_err(io(&gdir))?;
        link(&dir, &gdir.join("devices").join(address.to_string()))?;
        link(&gdir, &dir.join("iommu_group"))
    }

    /// Gives `address` another PCI class, e.g. 0x010802 (NVMe) or 0x030000 (VGA).
    pub fn set_class(&self, address: PciAddress, class: u32) -> Result<()> {
        let dir = Sysfs::new(&self.root)
            .pci_devices_dir()
            .join(address.to_string());
        put(&dir.join("class"), &format!("0x{class:06x}\n"))
    }

    /// Makes `drivers_probe` leave the device unbound when it tries `driver`,
    /// as when a driver's probe fails.
    pub fn refuse_bind(&self, address: PciAddress, driver: &str) -> Result<()> {
        let dir = Sysfs::new(&self.root)
            .pci_devices_dir()
            .join(address.to_string());
        put(&dir.join(".fake/refuse"), driver)
    }

    /// Every file, its content and every link target under the root, for
    /// asserting that an operation changed nothing.
    pub fn snapshot(&self) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        walk(&self.root, &self.root, &mut out);
        out
    }
}

fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, String>) {
    let Ok(rd) = fs::read_dir(dir) else { return };
    for entry in rd.flatten() {
        let path = entry.path();
        let rel = path
            .strip_prefix(root)
            .unwrap_or(&path)
            .display()
            .to_string();
        if rel == WRITE_LOG {
            continue;
        }
        let Ok(meta) = path.symlink_metadata() else {
            continue;
        };
        if meta.file_type().is_symlink() {
            let t = fs::read_link(&path)
                .map(|t| t.display().to_string())
                .unwrap_or_default();
            out.insert(rel, format!("-> {t}"));
        } else if meta.is_dir() {
            out.insert(rel, "<dir>".into());
            walk(root, &path, out);
        } else {
            out.insert(rel, fs::read_to_string(&path).unwrap_or_default());
        }
    }
}

/// A [`Sysfs`] over a fake tree at `root` whose writes the emulated kernel answers.
pub fn emulated(root: impl Into<PathBuf>) -> Sysfs {
    let mut s = Sysfs::new(root);
    s.on_write = Some(react);
    s
}

fn device_dir(sysfs: &Sysfs, addr: PciAddress) -> PathBuf {
    sysfs.pci_devices_dir().join(addr.to_string())
}

fn fake_attr(dir: &Path, name: &str) -> Option<String> {
    read_trimmed(&dir.join(".fake").join(name))
        .ok()
        .filter(|s| !s.is_empty())
}

/// Binds `addr` to `driver` in the fake tree with the side effects Linux has.
fn attach(sysfs: &Sysfs, addr: PciAddress, driver: &str) -> Result<()> {
    let dir = device_dir(sysfs, addr);
    let ddir = sysfs.driver_dir(driver);
    link(&ddir, &dir.join("driver"))?;
    link(&dir, &ddir.join(addr.to_string()))?;
    if driver == crate::VFIO_PCI {
        match sysfs.device(addr).and_then(|d| d.iommu_group()) {
            Ok(Some(g)) => put(&sysfs.dev_vfio_dir().join(g.to_string()), "")?,
            Ok(None) if sysfs.noiommu_enabled() => noiommu_group(sysfs, addr)?,
            _ => {}
        }
    } else if fake_attr(&dir, "default_driver").as_deref() == Some(driver) {
        if let Some(name) = fake_attr(&dir, "netdev") {
            put(&dir.join("net").join(&name).join("ifindex"), "1\n")?;
            let class = sysfs.class_net_dir().join(&name);
            fs::create_dir_all(&class).map_err(io(&class))?;
            link(&dir, &class.join("device"))?;
        }
    }
    Ok(())
}

/// vfio-pci in no-IOMMU mode: a new group for `addr` and its noiommu node.
fn noiommu_group(sysfs: &Sysfs, addr: PciAddress) -> Result<()> {
    let groups = sysfs.iommu_groups_dir();
    fs::create_dir_all(&groups).map_err(io(&groups))?;
    let next = fs::read_dir(&groups)
        .map_err(io(&groups))?
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .max()
        .map_or(0, |n| n + 1);
    let gdir = groups.join(next.to_string());
    fs::create_dir_all(gdir.join("devices")).map_err(io(&gdir))?;
    let dir = device_dir(sysfs, addr);
    link(&dir, &gdir.join("devices").join(addr.to_string()))?;
    link(&gdir, &dir.join("iommu_group"))?;
    put(&gdir.join("name"), "vfio-noiommu\n")?;
    put(&sysfs.dev_vfio_dir().join(format!("noiommu-{next}")), "")
}

fn detach(sysfs: &Sysfs, addr: PciAddress) -> Result<()> {
    let dir = device_dir(sysfs, addr);
    let Ok(Some(driver)) = sysfs.device(addr).and_then(|d| d.driver()) else {
        return Ok(());
    };
    let _ = fs::remove_file(dir.join("driver"));
    let _ = fs::remove_file(sysfs.driver_dir(&driver).join(addr.to_string()));
    if driver == crate::VFIO_PCI {
        if let Ok(Some(g)) = sysfs.device(addr).and_then(|d| d.iommu_group()) {
            let _ = fs::remove_file(sysfs.dev_vfio_dir().join(g.to_string()));
            // A no-IOMMU group lives only while vfio-pci holds the device.
            let noiommu = sysfs.dev_vfio_dir().join(format!("noiommu-{g}"));
            if noiommu.exists() {
                let _ = fs::remove_file(&noiommu);
                let _ = fs::remove_file(dir.join("iommu_group"));
                let _ = fs::remove_dir_all(sysfs.iommu_groups_dir().join(g.to_string()));
            }
        }
    }
    if let Some(name) = fake_attr(&dir, "netdev") {
        let _ = fs::remove_dir_all(dir.join("net"));
        let _ = fs::remove_dir_all(sysfs.class_net_dir().join(name));
    }
    Ok(())
}

/// The log of every attribute write, one `path<TAB>data` line each, paths
/// relative to the root. Not part of [`FakeNode::snapshot`].
pub const WRITE_LOG: &str = ".fake-writes.log";

fn log_write(sysfs: &Sysfs, path: &Path, data: &str) -> Result<()> {
    use std::io::Write;
    let log = sysfs.root().join(WRITE_LOG);
    let rel = path.strip_prefix(sysfs.root()).unwrap_or(path);
    let mut f = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log)
        .map_err(io(&log))?;
    writeln!(f, "{}\t{}", rel.display(), data.escape_debug()).map_err(io(&log))
}

impl FakeNode {
    /// Every attribute write so far, as `(path relative to the root, data)`.
    pub fn writes(&self) -> Vec<(String, String)> {
        fs::read_to_string(self.root.join(WRITE_LOG))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.split_once('\t'))
            .map(|(p, d)| (p.to_string(), d.to_string()))
            .collect()
    }
}

/// The emulated kernel: what Linux does after each attribute write.
fn react(sysfs: &Sysfs, path: &Path, data: &str) -> Result<()> {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    log_write(sysfs, path, data)?;
    if matches!(name, "unbind" | "bind" | "drivers_probe") {
        // Write-only attributes read back empty.
        put(path, "")?;
    }
    match name {
        "unbind" => {
            let addr: PciAddress = data.trim().parse()?;
            detach(sysfs, addr)
        }
        "driver_override" => {
            // Reading an unset override gives "(null)".
            if data.trim().is_empty() {
                put(path, "(null)\n")?;
            }
            Ok(())
        }
        "drivers_probe" => {
            let addr: PciAddress = data.trim().parse()?;
            let dev = sysfs.device(addr)?;
            if dev.driver()?.is_some() {
                return Ok(());
            }
            let dir = device_dir(sysfs, addr);
            let Some(driver) = dev
                .driver_override()?
                .or_else(|| fake_attr(&dir, "default_driver"))
            else {
                return Ok(());
            };
            if !sysfs.driver_dir(&driver).exists()
                || fake_attr(&dir, "refuse").as_deref() == Some(driver.as_str())
            {
                return Ok(());
            }
            // vfio-pci refuses a device without an IOMMU group unless noiommu is on.
            if driver == crate::VFIO_PCI && dev.iommu_group()?.is_none() && !sysfs.noiommu_enabled()
            {
                return Ok(());
            }
            attach(sysfs, addr, &driver)
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rebind_round_trip_restores_the_tree() {
        let tmp = tempfile::tempdir().unwrap();
        let node = FakeNode::new(tmp.path()).unwrap();
        let pf = node
            .add_pf("0000:01:00.0".parse().unwrap(), "ens1f0", 4, 7, 1, 20)
            .unwrap();
        let sysfs = node.sysfs();
        let before = node.snapshot();
        let vf = pf.vfs[2];
        sysfs
            .bind_driver(vf, crate::VFIO_PCI, Default::default())
            .unwrap();
        let dev = sysfs.device(vf).unwrap();
        assert_eq!(dev.driver().unwrap().as_deref(), Some("vfio-pci"));
        assert!(dev.net_names().unwrap().is_empty());
        assert!(sysfs.dev_vfio_dir().join("23").exists());
        sysfs
            .restore_driver(vf, Some("igbvf"), None, Default::default())
            .unwrap();
        assert_eq!(
            sysfs.wait_netdev(vf, Default::default()).unwrap(),
            vec!["ens1f0v2"]
        );
        assert_eq!(node.snapshot(), before);
    }
}
