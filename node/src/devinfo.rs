//! The device plugin's device-information files (NPWG Device Information
//! Specification 1.1.0, section 4.1): at Allocate, one file per allocated
//! device in `/var/run/k8s.cni.cncf.io/devinfo/dp/`, named
//! `<resource with '/' as '-'>-<device ID>-device.json`. Multus copies it
//! into the attachment's CNI device-info file before it calls the CNI, so
//! the pod's `network-status` annotation carries it even when the CNI
//! writes none (sriov-cni writes none).
//!
//! A file is replaced at each Allocate of its device and removed, for every
//! device of the pool, when the pool's plugin starts and when it stops: what
//! the SR-IOV network device plugin does, and what the specification asks
//! ("deleting the files it created when it stops running").
//!
//! The directories below `/var/run` are walked one `openat(O_NOFOLLOW)` at a
//! time and made `0700` when missing, and a file is written under a fresh
//! name (`O_CREAT|O_EXCL|O_NOFOLLOW`) and renamed over its place: a symlink
//! planted on the way is refused, one at the file's name is replaced, and a
//! reader never sees half a file. `/var/run` itself is commonly a symlink to
//! `/run` and is followed.

use std::io::Write;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use nix::errno::Errno;
use nix::fcntl::{openat, renameat, OFlag, AT_FDCWD};
use nix::sys::stat::{mkdirat, Mode};
use nix::unistd::{unlinkat, UnlinkatFlags};
use serde::Serialize;

use crate::error::{NodeError, Result};

/// Where the files go, below the root (`/`, or a fake tree in tests).
pub const DP_DIR: &str = "var/run/k8s.cni.cncf.io/devinfo/dp";
/// The part of [`DP_DIR`] that may be a symlink (`/var/run` -> `/run`).
const SYSTEM_PART: &str = "var/run";
/// The specification's version, `type` of a PCI device.
pub const VERSION: &str = "1.1.0";
pub const TYPE_PCI: &str = "pci";

/// The document: `{"type":"pci","version":"1.1.0","pci":{...}}`, fields in
/// the order the NPWG client library writes them, empty ones left out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeviceInfo {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub version: &'static str,
    pub pci: PciInfo,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PciInfo {
    #[serde(rename = "pci-address")]
    pub pci_address: String,
    #[serde(rename = "vhost-net", skip_serializing_if = "Option::is_none")]
    pub vhost_net: Option<String>,
    #[serde(rename = "rdma-device", skip_serializing_if = "Option::is_none")]
    pub rdma_device: Option<String>,
    #[serde(rename = "pf-pci-address", skip_serializing_if = "Option::is_none")]
    pub pf_pci_address: Option<String>,
}

impl DeviceInfo {
    pub fn pci(info: PciInfo) -> Self {
        DeviceInfo {
            kind: TYPE_PCI,
            version: VERSION,
            pci: info,
        }
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a device-info document always encodes")
    }
}

/// `<resource, '/' as '-'>-<device ID, '/' as '-'>-device.json`.
pub fn file_name(resource: &str, device_id: &str) -> String {
    format!(
        "{}-{}-device.json",
        resource.replace('/', "-"),
        device_id.replace('/', "-")
    )
}

/// The device plugin's device-info directory of a node.
#[derive(Debug, Clone)]
pub struct DpDir {
    root: PathBuf,
}

static TMP_SEQ: AtomicU64 = AtomicU64::new(0);

impl DpDir {
    /// The directory under `root` (`/` on a node).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        DpDir { root: root.into() }
    }

    /// The directory as a path (for messages and tests).
    pub fn path(&self) -> PathBuf {
        self.root.join(DP_DIR)
    }

    /// The file of one device.
    pub fn file(&self, resource: &str, device_id: &str) -> PathBuf {
        self.path().join(file_name(resource, device_id))
    }

    /// Opens the directory, walking every component below `/var/run`
    /// without following a symlink; makes missing ones (`0700`) when `make`.
    /// `None` when it does not exist and `make` is false.
    fn open(&self, make: bool) -> Result<Option<OwnedFd>> {
        let base = self.root.join(SYSTEM_PART);
        let dir_flags = OFlag::O_DIRECTORY | OFlag::O_RDONLY | OFlag::O_CLOEXEC;
        let mut at = base.clone();
        let mut fd = match openat(AT_FDCWD, &base, dir_flags, Mode::empty()) {
            Ok(fd) => fd,
            Err(Errno::ENOENT) if !make => return Ok(None),
            Err(Errno::ENOENT) => {
                std::fs::create_dir_all(&base).map_err(NodeError::write(&base))?;
                openat(AT_FDCWD, &base, dir_flags, Mode::empty())
                    .map_err(|e| NodeError::write(&base)(e.into()))?
            }
            Err(e) => return Err(NodeError::write(&base)(e.into())),
        };
        let below = Path::new(DP_DIR)
            .strip_prefix(SYSTEM_PART)
            .expect("DP_DIR is below /var/run");
        for part in below.components() {
            at.push(part);
            let flags = dir_flags | OFlag::O_NOFOLLOW;
            let next = match openat(&fd, part.as_os_str(), flags, Mode::empty()) {
                Ok(f) => f,
                Err(Errno::ENOENT) if !make => return Ok(None),
                Err(Errno::ENOENT) => {
                    match mkdirat(&fd, part.as_os_str(), Mode::S_IRWXU) {
                        Ok(()) | Err(Errno::EEXIST) => {}
                        Err(e) => return Err(NodeError::write(&at)(e.into())),
                    }
                    openat(&fd, part.as_os_str(), flags, Mode::empty())
                        .map_err(|e| refuse_link(&at, e))?
                }
                Err(e) => return Err(refuse_link(&at, e)),
            };
            fd = next;
        }
        Ok(Some(fd))
    }

    /// Writes `info` as the file of `device_id` of `resource`, replacing the
    /// one there (atomically: a fresh file renamed into place).
    pub fn write(&self, resource: &str, device_id: &str, info: &DeviceInfo) -> Result<PathBuf> {
        let name = file_name(resource, device_id);
        let path = self.path().join(&name);
        let dir = self.open(true)?.expect("made when missing");
        let tmp = format!(
            ".{name}.{}.{}.tmp",
            std::process::id(),
            TMP_SEQ.fetch_add(1, Ordering::Relaxed)
        );
        let fd = openat(
            &dir,
            tmp.as_str(),
            OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_WRONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            // Read-only, as the NPWG client library makes them.
            Mode::S_IRUSR | Mode::S_IRGRP | Mode::S_IROTH,
        )
        .map_err(|e| NodeError::write(self.path().join(&tmp))(e.into()))?;
        let written = std::fs::File::from(fd).write_all(info.to_json().as_bytes());
        let renamed = written.map_err(NodeError::write(&path)).and_then(|()| {
            renameat(&dir, tmp.as_str(), &dir, name.as_str())
                .map_err(|e| NodeError::write(&path)(e.into()))
        });
        if renamed.is_err() {
            let _ = unlinkat(&dir, tmp.as_str(), UnlinkatFlags::NoRemoveDir);
        }
        renamed.map(|()| path)
    }

    /// Removes the files of `device_ids` of `resource` that exist; returns
    /// how many went, and the first error after trying them all.
    pub fn remove<'a>(
        &self,
        resource: &str,
        device_ids: impl IntoIterator<Item = &'a str>,
    ) -> Result<usize> {
        let Some(dir) = self.open(false)? else {
            return Ok(0);
        };
        let mut gone = 0;
        let mut first_err = None;
        for id in device_ids {
            let name = file_name(resource, id);
            match unlinkat(&dir, name.as_str(), UnlinkatFlags::NoRemoveDir) {
                Ok(()) => gone += 1,
                Err(Errno::ENOENT) => {}
                Err(e) => {
                    first_err
                        .get_or_insert_with(|| NodeError::write(self.path().join(&name))(e.into()));
                }
            }
        }
        match first_err {
            Some(e) => Err(e),
            None => Ok(gone),
        }
    }
}

fn refuse_link(at: &Path, e: Errno) -> NodeError {
    let source = match e {
        // O_NOFOLLOW on a symlink: ELOOP; O_DIRECTORY on a non-directory: ENOTDIR.
        Errno::ELOOP | Errno::ENOTDIR => std::io::Error::other(format!(
            "not a directory (a symlink or a file): refusing to write device-info files through it; remove it ({e})"
        )),
        e => e.into(),
    };
    NodeError::Write {
        path: at.to_path_buf(),
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{symlink, PermissionsExt};

    fn info() -> DeviceInfo {
        DeviceInfo::pci(PciInfo {
            pci_address: "0000:01:10.0".into(),
            pf_pci_address: Some("0000:01:00.0".into()),
            ..Default::default()
        })
    }

    #[test]
    fn names_and_shape_as_the_npwg_library() {
        assert_eq!(
            file_name("intel.com/intel_sriov_dpdk", "0000:01:10.0"),
            "intel.com-intel_sriov_dpdk-0000:01:10.0-device.json"
        );
        assert_eq!(
            info().to_json(),
            r#"{"type":"pci","version":"1.1.0","pci":{"pci-address":"0000:01:10.0","pf-pci-address":"0000:01:00.0"}}"#
        );
    }

    #[test]
    fn writes_replaces_and_removes_with_private_directories() {
        let tmp = tempfile::tempdir().unwrap();
        let d = DpDir::new(tmp.path());
        let p = d.write("intel.com/a", "0000:01:10.0", &info()).unwrap();
        assert_eq!(
            p,
            tmp.path()
                .join(DP_DIR)
                .join("intel.com-a-0000:01:10.0-device.json")
        );
        for dir in [
            "var/run/k8s.cni.cncf.io",
            "var/run/k8s.cni.cncf.io/devinfo",
            DP_DIR,
        ] {
            let mode = std::fs::metadata(tmp.path().join(dir))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o700, "{dir}");
        }
        assert_eq!(
            std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o444
        );
        let mut other = info();
        other.pci.rdma_device = Some("mlx5_3".into());
        d.write("intel.com/a", "0000:01:10.0", &other).unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), other.to_json());
        // Only the file: no temporary left behind.
        assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 1);
        assert_eq!(
            d.remove("intel.com/a", ["0000:01:10.0", "0000:01:10.2"])
                .unwrap(),
            1
        );
        assert!(!p.exists());
        // Nothing to remove where nothing was made.
        let empty = tempfile::tempdir().unwrap();
        assert_eq!(
            DpDir::new(empty.path())
                .remove("intel.com/a", ["x"])
                .unwrap(),
            0
        );
        assert!(!empty.path().join("var").exists());
    }

    #[test]
    fn a_symlink_on_the_way_is_refused_and_one_at_the_name_replaced() {
        let tmp = tempfile::tempdir().unwrap();
        let victim = tmp.path().join("victim");
        std::fs::create_dir(&victim).unwrap();
        let base = tmp.path().join("var/run/k8s.cni.cncf.io/devinfo");
        std::fs::create_dir_all(&base).unwrap();
        symlink(&victim, base.join("dp")).unwrap();
        let d = DpDir::new(tmp.path());
        let err = d
            .write("intel.com/a", "0000:01:10.0", &info())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("devinfo/dp") && err.contains("symlink"),
            "{err}"
        );
        assert_eq!(std::fs::read_dir(&victim).unwrap().count(), 0);
        assert!(d.remove("intel.com/a", ["0000:01:10.0"]).is_err());

        // A symlink where the file goes is replaced, its target untouched.
        std::fs::remove_file(base.join("dp")).unwrap();
        std::fs::create_dir(base.join("dp")).unwrap();
        let target = victim.join("keep");
        std::fs::write(&target, "keep").unwrap();
        let at = d.file("intel.com/a", "0000:01:10.0");
        symlink(&target, &at).unwrap();
        d.write("intel.com/a", "0000:01:10.0", &info()).unwrap();
        assert!(!std::fs::symlink_metadata(&at)
            .unwrap()
            .file_type()
            .is_symlink());
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "keep");
    }
}
