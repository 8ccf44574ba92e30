//! The state directory: one record per attachment, one claim per device,
//! one lock file per device.
//!
//! ```text
//! <stateDir>/<network>/<containerID>-<ifname>.json   what ADD changed and the original state
//! <stateDir>/devices/<bdf>.json                       which attachment holds the device
//! <stateDir>/locks/<bdf>.lock                         flock(2) held while a command works on it
//! ```
//!
//! The record is written before the first change to the node, atomically
//! and durably (write a temporary file, fsync, rename, fsync the directory),
//! with the original state and everything ADD is about to do, so a plugin
//! killed at any point leaves enough behind for DEL or GC to undo it: undoing
//! compares the node with the recorded original state, so it does not need to
//! know how far ADD got. Later updates (the claim, the finished result) are
//! atomic renames: a rename survives a killed process, and what a power
//! loss could lose (driver bindings, VF admin state) does not survive a
//! reboot either.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::{code, CniError, Result};
use crate::netlink::{VfSettings, VfState};

/// Whether ADD finished.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Phase {
    /// Recorded before the first change: any of ADD's changes may have been made.
    Pending,
    /// ADD finished.
    Complete,
}

/// Everything needed to undo one attachment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Attachment {
    pub network: String,
    #[serde(rename = "containerID")]
    pub container_id: String,
    pub ifname: String,
    pub netns: String,
    pub cni_version: String,
    pub phase: Phase,
    pub device_type: String,
    /// The PCI address handed to the pod.
    pub device: String,
    pub pf: Option<String>,
    pub pf_ifname: Option<String>,
    pub vf_index: Option<u32>,
    pub iommu_group: Option<u32>,
    pub iommu_mode: String,
    pub vfio_device: Option<PathBuf>,
    pub numa_node: Option<u32>,
    pub original_driver: Option<String>,
    pub original_override: Option<String>,
    pub original_netdevs: Vec<String>,
    pub original_vf: Option<VfState>,
    pub vf_settings: VfSettings,
    pub device_info_file: Option<PathBuf>,
    pub ipam: Option<Value>,
    pub result: Option<Value>,
    /// Kernel modes: the netdev as it was in the host namespace.
    #[serde(default)]
    pub original_link: Option<OriginalLink>,
    /// Macvlan mode: the name the link was created under in the host namespace.
    #[serde(default)]
    pub macvlan_name: Option<String>,
    /// Why vfio-pci was not used, when the netdevice fallback served the ADD.
    #[serde(default)]
    pub fallback_reason: Option<String>,
    /// Netdevice mode: the PF held the original admin MAC as an
    /// administrative pin (the VF driver was refused a new MAC), so ADD
    /// cleared it first and DEL sets it again after the netdev's MAC.
    #[serde(default)]
    pub admin_mac_pinned: bool,
    /// vfio-pci mode: before ADD the VF driver could choose its own MAC (no
    /// administrative pin), so DEL unpins the original MAC it sets back.
    #[serde(default)]
    pub admin_mac_driver_chosen: bool,
}

/// A netdev's name, MAC, MTU and state before ADD moved it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OriginalLink {
    pub name: String,
    pub mac: Option<String>,
    pub mtu: u32,
    pub up: bool,
}

impl From<crate::netlink::Link> for OriginalLink {
    fn from(l: crate::netlink::Link) -> Self {
        OriginalLink {
            name: l.name,
            mac: l.mac.map(|m| m.to_string()),
            mtu: l.mtu,
            up: l.up,
        }
    }
}

/// Who holds a device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Claim {
    pub network: String,
    #[serde(rename = "containerID")]
    pub container_id: String,
    pub ifname: String,
}

/// A device the node daemon bound to vfio-pci before any ADD (no-IOMMU mode:
/// the group exists only once vfio-pci holds the device): the driver it had,
/// which ADD records as the original and DEL restores.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Prebound {
    pub driver: Option<String>,
    pub driver_override: Option<String>,
}

/// The state directory.
#[derive(Debug, Clone)]
pub struct Ledger {
    dir: PathBuf,
}

/// An exclusive flock on one device, released on drop.
#[derive(Debug)]
pub struct DeviceLock {
    _lock: Flock<File>,
}

fn io_err(what: &str, path: &Path, e: impl std::fmt::Display) -> CniError {
    CniError::io(format!("failed to {what} {}: {e}", path.display()))
}

/// Writes `data` to `path` atomically; with `durable`, also fsyncs the file
/// before the rename and the directory after it.
pub fn write_atomic(path: &Path, data: &[u8], durable: bool) -> Result<()> {
    let dir = path
        .parent()
        .ok_or_else(|| io_err("find the directory of", path, "no parent"))?;
    fs::create_dir_all(dir).map_err(|e| io_err("create", dir, e))?;
    let mut tmp_name = path.file_name().unwrap_or_default().to_os_string();
    tmp_name.push(format!(".tmp{}", std::process::id()));
    let tmp = dir.join(tmp_name);
    let mut f = File::create(&tmp).map_err(|e| io_err("create", &tmp, e))?;
    f.write_all(data).map_err(|e| io_err("write", &tmp, e))?;
    if durable {
        f.sync_all().map_err(|e| io_err("fsync", &tmp, e))?;
    }
    drop(f);
    fs::rename(&tmp, path).map_err(|e| io_err("rename into place", path, e))?;
    if durable {
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| io_err("fsync", dir, e))?;
    }
    Ok(())
}

/// Reads a JSON record; `None` when there is none.
fn read_json<T: serde::de::DeserializeOwned>(path: &Path, what: &str) -> Result<Option<T>> {
    match fs::read(path) {
        Ok(b) => serde_json::from_slice(&b)
            .map(Some)
            .map_err(|e| io_err(&format!("parse {what}"), path, e)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_err("read", path, e)),
    }
}

fn remove_if_exists(path: &Path) -> Result<()> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_err("remove", path, e)),
    }
}

impl Ledger {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Ledger { dir: dir.into() }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn attachment_path(&self, network: &str, container_id: &str, ifname: &str) -> PathBuf {
        self.dir
            .join(network)
            .join(format!("{container_id}-{ifname}.json"))
    }

    fn claim_path(&self, device: &str) -> PathBuf {
        self.dir.join("devices").join(format!("{device}.json"))
    }

    /// Checks the state directory can be written (STATUS).
    pub fn check_writable(&self) -> Result<()> {
        fs::create_dir_all(&self.dir).map_err(|e| io_err("create", &self.dir, e))?;
        let probe = self.dir.join(format!(".probe{}", std::process::id()));
        fs::write(&probe, b"").map_err(|e| io_err("write to", &self.dir, e))?;
        remove_if_exists(&probe)
    }

    /// Takes the device's lock, waiting up to `wait` for another command to finish.
    pub fn lock_device(&self, device: &str, wait: Duration) -> Result<DeviceLock> {
        let dir = self.dir.join("locks");
        fs::create_dir_all(&dir).map_err(|e| io_err("create", &dir, e))?;
        let path = dir.join(format!("{device}.lock"));
        let start = Instant::now();
        let mut file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| io_err("open", &path, e))?;
        loop {
            match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
                Ok(lock) => return Ok(DeviceLock { _lock: lock }),
                Err((f, nix::errno::Errno::EWOULDBLOCK)) if start.elapsed() < wait => {
                    file = f;
                    std::thread::sleep(Duration::from_millis(2));
                }
                Err((_, nix::errno::Errno::EWOULDBLOCK)) => {
                    return Err(CniError::new(
                        code::TRY_AGAIN,
                        format!("device {device} is locked by another dpdk-cni command; try again"),
                    ))
                }
                Err((_, e)) => return Err(io_err("lock", &path, e)),
            }
        }
    }

    /// The record of an attachment, if there is one.
    pub fn load(
        &self,
        network: &str,
        container_id: &str,
        ifname: &str,
    ) -> Result<Option<Attachment>> {
        self.load_path(&self.attachment_path(network, container_id, ifname))
    }

    fn load_path(&self, path: &Path) -> Result<Option<Attachment>> {
        read_json(path, "the attachment record")
    }

    /// Records an attachment; `durable` before the first change to the node.
    pub fn save(&self, a: &Attachment, durable: bool) -> Result<()> {
        let path = self.attachment_path(&a.network, &a.container_id, &a.ifname);
        let data = serde_json::to_vec_pretty(a).map_err(|e| io_err("encode", &path, e))?;
        write_atomic(&path, &data, durable)
    }

    /// Forgets an attachment.
    pub fn remove(&self, a: &Attachment) -> Result<()> {
        remove_if_exists(&self.attachment_path(&a.network, &a.container_id, &a.ifname))
    }

    /// Who holds `device`, if anyone.
    pub fn claim(&self, device: &str) -> Result<Option<Claim>> {
        read_json(&self.claim_path(device), "the device claim")
    }

    pub fn set_claim(&self, device: &str, c: &Claim) -> Result<()> {
        let path = self.claim_path(device);
        let data = serde_json::to_vec(c).map_err(|e| io_err("encode", &path, e))?;
        write_atomic(&path, &data, false)
    }

    /// Releases `device` if `c` holds it.
    pub fn release_claim(&self, device: &str, c: &Claim) -> Result<()> {
        if self.claim(device)?.as_ref() == Some(c) {
            remove_if_exists(&self.claim_path(device))?;
        }
        Ok(())
    }

    /// Every attachment recorded for `network`.
    pub fn list(&self, network: &str) -> Result<Vec<Attachment>> {
        let dir = self.dir.join(network);
        let rd = match fs::read_dir(&dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io_err("read", &dir, e)),
        };
        let mut out = Vec::new();
        for entry in rd.flatten() {
            let p = entry.path();
            if p.extension().and_then(|e| e.to_str()) == Some("json") {
                if let Some(a) = self.load_path(&p)? {
                    out.push(a);
                }
            }
        }
        out.sort_by(|a, b| (&a.container_id, &a.ifname).cmp(&(&b.container_id, &b.ifname)));
        Ok(out)
    }

    fn prebound_path(&self, device: &str) -> PathBuf {
        self.dir.join("prebound").join(format!("{device}.json"))
    }

    /// What `device` was bound to before the node daemon bound it early.
    pub fn prebound(&self, device: &str) -> Result<Option<Prebound>> {
        read_json(&self.prebound_path(device), "the early-bind record")
    }

    /// Records, durably and before the rebind, the driver `device` had.
    pub fn set_prebound(&self, device: &str, p: &Prebound) -> Result<()> {
        let path = self.prebound_path(device);
        let data = serde_json::to_vec(p).map_err(|e| io_err("encode", &path, e))?;
        write_atomic(&path, &data, true)
    }

    /// Forgets an early bind, once DEL has put the device back.
    pub fn clear_prebound(&self, device: &str) -> Result<()> {
        remove_if_exists(&self.prebound_path(device))
    }

    /// Every device claimed by any network.
    pub fn claims(&self) -> Result<Vec<(String, Claim)>> {
        let dir = self.dir.join("devices");
        let rd = match fs::read_dir(&dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io_err("read", &dir, e)),
        };
        let mut out = Vec::new();
        for entry in rd.flatten() {
            let name = entry.file_name().to_string_lossy().to_string();
            if let Some(dev) = name.strip_suffix(".json") {
                if let Some(c) = self.claim(dev)? {
                    out.push((dev.to_string(), c));
                }
            }
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }
}
