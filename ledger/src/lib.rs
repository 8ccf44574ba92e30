//! The dpdk-cni ledger: the state directory the CNI plugin and the node
//! daemon share. One record per attachment, one claim per device, one lock
//! file per device.
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

mod error;
mod fsutil;
mod records;
pub mod settings;

use std::fmt::Display;
use std::fs::{self, File, OpenOptions};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::fcntl::{Flock, FlockArg};
use vfio::PciAddress;

pub use error::{LedgerError, Result};
pub use fsutil::write_atomic;
pub use records::{
    valid_ifname, Attachment, Claim, DeviceId, DeviceType, DraClaim, OriginalLink, Phase, Prebound,
    RECORD_VERSION,
};
pub use settings::NodeSettings;

/// The network under which the node daemon's DRA driver records the
/// devices it prepares for ResourceClaims: the container ID is
/// `claim-<claim UID>`. No netconf may use this name, so no NAD can list,
/// take or garbage-collect these attachments.
pub const DRA_NETWORK: &str = "dpdk-cni-dra";

use error::io;
use fsutil::{read_json, remove_if_exists};

/// The state directory.
#[derive(Debug, Clone)]
pub struct Ledger {
    dir: PathBuf,
    /// Where a record's device-info file may be (validation of records).
    devinfo_dir: Option<PathBuf>,
}

/// An exclusive flock on one device, released on drop.
#[derive(Debug)]
pub struct DeviceLock {
    _lock: Flock<File>,
}

fn encode(what: &'static str, path: &Path, v: &impl serde::Serialize) -> Result<Vec<u8>> {
    serde_json::to_vec_pretty(v).map_err(|e| io(what, path, std::io::Error::other(e)))
}

impl Ledger {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Ledger {
            dir: dir.into(),
            devinfo_dir: None,
        }
    }

    /// Validates every record read against the node's device-info
    /// directory, and quarantines the ones that fail.
    pub fn validating(mut self, devinfo_dir: impl Into<PathBuf>) -> Self {
        self.devinfo_dir = Some(devinfo_dir.into());
        self
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn attachment_path(&self, network: &str, container_id: &str, ifname: &str) -> PathBuf {
        self.dir
            .join(network)
            .join(format!("{container_id}-{ifname}.json"))
    }

    fn claim_path(&self, device: PciAddress) -> PathBuf {
        self.dir.join("devices").join(format!("{device}.json"))
    }

    fn dra_claim_path(&self, uid: &str) -> PathBuf {
        self.dir.join("dra").join(format!("{uid}.json"))
    }

    /// The pods a prepared ResourceClaim is reserved for. `uid` is the
    /// claim's UID as [`Claim::dra_claim`] gives it.
    pub fn dra_claim(&self, uid: &str) -> Result<Option<DraClaim>> {
        if !valid_claim_uid(uid) {
            return Ok(None);
        }
        read_json(&self.dra_claim_path(uid), "the ResourceClaim record")
    }

    pub fn set_dra_claim(&self, uid: &str, c: &DraClaim) -> Result<()> {
        let path = self.dra_claim_path(uid);
        if !valid_claim_uid(uid) {
            return Err(io("name", &path, std::io::Error::other("not a claim UID")));
        }
        write_atomic(&path, &encode("encode", &path, c)?, true)
    }

    pub fn clear_dra_claim(&self, uid: &str) -> Result<()> {
        if !valid_claim_uid(uid) {
            return Ok(());
        }
        remove_if_exists(&self.dra_claim_path(uid))
    }

    fn prebound_path(&self, device: PciAddress) -> PathBuf {
        self.dir.join("prebound").join(format!("{device}.json"))
    }

    /// Checks the state directory can be written (STATUS).
    pub fn check_writable(&self) -> Result<()> {
        fs::create_dir_all(&self.dir).map_err(|e| io("create", &self.dir, e))?;
        let probe = self.dir.join(format!(".probe{}", std::process::id()));
        fs::write(&probe, b"").map_err(|e| io("write to", &self.dir, e))?;
        remove_if_exists(&probe)
    }

    /// Takes the device's lock, waiting up to `wait` for another command to finish.
    pub fn lock_device(&self, device: &impl Display, wait: Duration) -> Result<DeviceLock> {
        let dir = self.dir.join("locks");
        fs::create_dir_all(&dir).map_err(|e| io("create", &dir, e))?;
        let path = dir.join(format!("{device}.lock"));
        let start = Instant::now();
        let mut file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| io("open", &path, e))?;
        loop {
            match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
                Ok(lock) => return Ok(DeviceLock { _lock: lock }),
                Err((f, nix::errno::Errno::EWOULDBLOCK)) if start.elapsed() < wait => {
                    file = f;
                    std::thread::sleep(Duration::from_millis(2));
                }
                Err((_, nix::errno::Errno::EWOULDBLOCK)) => {
                    return Err(LedgerError::Locked {
                        device: device.to_string(),
                    })
                }
                Err((_, e)) => return Err(io("lock", &path, e.into())),
            }
        }
    }

    /// The record of an attachment, if there is one. A record that does
    /// not parse, or (with [`Ledger::validating`]) does not validate or
    /// names another attachment than its file, is moved to
    /// `quarantine/` and reported as [`LedgerError::Quarantined`].
    pub fn load(
        &self,
        network: &str,
        container_id: &str,
        ifname: &str,
    ) -> Result<Option<Attachment>> {
        let path = self.attachment_path(network, container_id, ifname);
        match self.load_file(&path)? {
            Some(a) if (a.container_id.as_str(), a.ifname.as_str()) != (container_id, ifname) => {
                Err(LedgerError::Clash {
                    path,
                    container_id: a.container_id,
                    ifname: a.ifname,
                })
            }
            other => Ok(other),
        }
    }

    /// A record by its path; it must name the attachment its path does.
    fn load_file(&self, path: &Path) -> Result<Option<Attachment>> {
        let check = |a: &Attachment| {
            if self.attachment_path(&a.network, &a.container_id, &a.ifname) != path {
                return Err("it names another attachment than its file".to_string());
            }
            match &self.devinfo_dir {
                Some(d) => a.validate(d),
                None => Ok(()),
            }
        };
        let path = path.to_path_buf();
        match read_json::<Attachment>(&path, "the attachment record") {
            Ok(Some(a)) => match check(&a) {
                Ok(()) => Ok(Some(a)),
                Err(reason) => Err(self.quarantine(&path, reason)?),
            },
            Ok(None) => Ok(None),
            Err(LedgerError::Corrupt { source, .. }) => {
                Err(self.quarantine(&path, source.to_string())?)
            }
            Err(e) => Err(e),
        }
    }

    /// Moves a bad record aside, into `quarantine/`, and says so.
    fn quarantine(&self, path: &Path, reason: String) -> Result<LedgerError> {
        let rel = path.strip_prefix(&self.dir).unwrap_or(path);
        let stamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let moved_to = self.dir.join("quarantine").join(format!(
            "{}.{stamp}",
            rel.display().to_string().replace('/', "_")
        ));
        let qdir = self.dir.join("quarantine");
        fs::create_dir_all(&qdir).map_err(|e| io("create", &qdir, e))?;
        fs::rename(path, &moved_to).map_err(|e| io("move aside", path, e))?;
        Ok(LedgerError::Quarantined {
            path: path.to_path_buf(),
            moved_to,
            reason,
        })
    }

    /// Records an attachment; `durable` before the first change to the node.
    pub fn save(&self, a: &Attachment, durable: bool) -> Result<()> {
        let path = self.attachment_path(&a.network, &a.container_id, &a.ifname);
        write_atomic(&path, &encode("encode", &path, a)?, durable)
    }

    /// Forgets an attachment.
    pub fn remove(&self, a: &Attachment) -> Result<()> {
        remove_if_exists(&self.attachment_path(&a.network, &a.container_id, &a.ifname))
    }

    /// Who holds `device`, if anyone.
    pub fn claim(&self, device: PciAddress) -> Result<Option<Claim>> {
        read_json(&self.claim_path(device), "the device claim")
    }

    pub fn set_claim(&self, device: PciAddress, c: &Claim) -> Result<()> {
        let path = self.claim_path(device);
        write_atomic(&path, &encode("encode", &path, c)?, true)
    }

    /// Releases `device` if `c` holds it. A claim that cannot be read is
    /// moved aside: whoever held it, the caller is releasing the device.
    pub fn release_claim(&self, device: PciAddress, c: &Claim) -> Result<()> {
        match self.claim(device) {
            Ok(Some(holder)) if holder == *c => remove_if_exists(&self.claim_path(device)),
            Ok(_) => Ok(()),
            Err(LedgerError::Corrupt { source, .. }) => {
                self.quarantine(&self.claim_path(device), source.to_string())?;
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// The devices that have a claim file.
    fn claimed_devices(&self) -> Result<Vec<PciAddress>> {
        let mut out: Vec<PciAddress> = json_files(&self.dir.join("devices"))?
            .iter()
            .filter_map(|p| p.file_stem()?.to_str()?.parse().ok())
            .collect();
        out.sort();
        Ok(out)
    }

    /// The devices `c` holds, skipping claims that cannot be read.
    pub fn claimed_by(&self, c: &Claim) -> Result<Vec<PciAddress>> {
        let mut out = Vec::new();
        for dev in self.claimed_devices()? {
            if let Ok(Some(holder)) = self.claim(dev) {
                if holder == *c {
                    out.push(dev);
                }
            }
        }
        Ok(out)
    }

    /// Every record of `network`, each read as [`Ledger::load`] reads one:
    /// a bad record is quarantined and reported in place, and does not stop
    /// the others.
    pub fn list(&self, network: &str) -> Result<Vec<Result<Attachment>>> {
        let mut paths = json_files(&self.dir.join(network))?;
        paths.sort();
        Ok(paths
            .iter()
            .filter_map(|p| self.load_file(p).transpose())
            .collect())
    }

    /// What `device` was bound to before the node daemon bound it early.
    pub fn prebound(&self, device: PciAddress) -> Result<Option<Prebound>> {
        read_json(&self.prebound_path(device), "the early-bind record")
    }

    /// Records, durably and before the rebind, the driver `device` had.
    pub fn set_prebound(&self, device: PciAddress, p: &Prebound) -> Result<()> {
        let path = self.prebound_path(device);
        write_atomic(&path, &encode("encode", &path, p)?, true)
    }

    /// Forgets an early bind, once DEL has put the device back.
    pub fn clear_prebound(&self, device: PciAddress) -> Result<()> {
        remove_if_exists(&self.prebound_path(device))
    }

    /// Every device claimed by any network.
    pub fn claims(&self) -> Result<Vec<(PciAddress, Claim)>> {
        let mut out = Vec::new();
        for dev in self.claimed_devices()? {
            if let Some(c) = self.claim(dev)? {
                out.push((dev, c));
            }
        }
        Ok(out)
    }
}

/// A claim UID as the API server makes them (a UUID): it names a file.
pub fn valid_claim_uid(uid: &str) -> bool {
    !uid.is_empty()
        && uid.len() <= 64
        && uid.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-')
}

/// The `*.json` files of a directory; none when it does not exist.
fn json_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let rd = match fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io("read", dir, e)),
    };
    Ok(rd
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().and_then(|e| e.to_str()) == Some("json"))
        .collect())
}
