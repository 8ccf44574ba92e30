//! The node's own settings, `/etc/dpdk-cni/node.json`: what the node's
//! administrator (or the node daemon, from its ConfigMap) decides and no
//! netconf can widen. Read by the plugin at every call.
//!
//! ```json
//! {
//!   "stateDir": "/var/lib/cni/dpdk-cni",
//!   "logDirs": ["/var/log", "/tmp"],
//!   "handoverPfs": ["0000:03:00.0", "ens2f1"],
//!   "allocationCheck": true,
//!   "podResourcesSocket": "/var/lib/kubelet/pod-resources/kubelet.sock"
//! }
//! ```
//!
//! Every path is a path on the node; on a test tree every one, the defaults
//! included, lives under the tree's root.

use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};

use serde::Deserialize;

use crate::error::{io, LedgerError, Result};

/// Where the settings live, below the node's root.
pub const SETTINGS_FILE: &str = "etc/dpdk-cni/node.json";
/// The state directory unless the settings name another: one ledger per
/// node, so claims are seen by every network.
pub const DEFAULT_STATE_DIR: &str = "var/lib/cni/dpdk-cni";
/// Where a netconf's `logFile` may be, unless the settings say otherwise.
pub const DEFAULT_LOG_DIRS: &[&str] = &["var/log", "tmp"];
/// The kubelet's pod-resources API.
pub const DEFAULT_POD_RESOURCES_SOCKET: &str = "var/lib/kubelet/pod-resources/kubelet.sock";

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Raw {
    state_dir: Option<PathBuf>,
    log_dirs: Option<Vec<PathBuf>>,
    #[serde(default)]
    handover_pfs: Vec<String>,
    #[serde(default)]
    allocation_check: bool,
    pod_resources_socket: Option<PathBuf>,
}

/// The node's settings, with every path under the node's root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeSettings {
    pub state_dir: PathBuf,
    pub log_dirs: Vec<PathBuf>,
    /// PFs (PCI address or netdev name) that may be handed to a pod whole.
    pub handover_pfs: Vec<String>,
    /// A VF is taken only if the kubelet allocated it to the very pod.
    pub allocation_check: bool,
    pub pod_resources_socket: PathBuf,
}

/// `p`, an absolute node path, below `root`; `None` for a relative path or
/// one with `..`.
pub fn under_root(root: &Path, p: &Path) -> Option<PathBuf> {
    if !p.is_absolute() || p.components().any(|c| matches!(c, Component::ParentDir)) {
        return None;
    }
    Some(root.join(p.strip_prefix("/").unwrap_or(p)))
}

impl NodeSettings {
    /// The settings when the node has no file.
    pub fn defaults(root: &Path) -> Self {
        NodeSettings {
            state_dir: root.join(DEFAULT_STATE_DIR),
            log_dirs: DEFAULT_LOG_DIRS.iter().map(|d| root.join(d)).collect(),
            handover_pfs: Vec::new(),
            allocation_check: false,
            pod_resources_socket: root.join(DEFAULT_POD_RESOURCES_SOCKET),
        }
    }

    /// Checks a settings document as [`NodeSettings::load`] would read it
    /// (for whoever writes the file, e.g. the node daemon's installer).
    pub fn check_document(data: &[u8]) -> std::result::Result<(), String> {
        let raw: Raw = serde_json::from_slice(data).map_err(|e| e.to_string())?;
        let paths = raw
            .state_dir
            .iter()
            .chain(raw.log_dirs.iter().flatten())
            .chain(raw.pod_resources_socket.iter());
        for p in paths {
            if under_root(Path::new("/"), p).is_none() {
                return Err(format!(
                    "{} must be an absolute path without '..'",
                    p.display()
                ));
            }
        }
        Ok(())
    }

    /// Reads `<root>/etc/dpdk-cni/node.json`. A missing file means the
    /// defaults; a file anyone but root could have written is refused.
    pub fn load(root: &Path) -> Result<Self> {
        let path = root.join(SETTINGS_FILE);
        let meta = match std::fs::symlink_metadata(&path) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Self::defaults(root)),
            Err(e) => return Err(io("read", &path, e)),
        };
        let bad = |msg: String| LedgerError::Settings {
            path: path.clone(),
            msg,
        };
        if !meta.file_type().is_file() {
            return Err(bad("it is not a regular file".into()));
        }
        if meta.uid() != 0 || meta.mode() & 0o022 != 0 {
            return Err(bad(format!(
                "it must be owned by root and writable by root only (owner {}, mode {:o})",
                meta.uid(),
                meta.mode() & 0o7777
            )));
        }
        let data = std::fs::read(&path).map_err(|e| io("read", &path, e))?;
        let raw: Raw = serde_json::from_slice(&data).map_err(|e| bad(e.to_string()))?;
        let node_path = |what: &str, p: &Path| {
            under_root(root, p).ok_or_else(|| {
                bad(format!(
                    "{what} {} must be an absolute path without '..'",
                    p.display()
                ))
            })
        };
        let mut s = Self::defaults(root);
        if let Some(d) = &raw.state_dir {
            s.state_dir = node_path("stateDir", d)?;
        }
        if let Some(dirs) = &raw.log_dirs {
            s.log_dirs = dirs
                .iter()
                .map(|d| node_path("logDirs entry", d))
                .collect::<Result<_>>()?;
        }
        if let Some(p) = &raw.pod_resources_socket {
            s.pod_resources_socket = node_path("podResourcesSocket", p)?;
        }
        s.handover_pfs = raw.handover_pfs;
        s.allocation_check = raw.allocation_check;
        Ok(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn defaults_live_under_the_root_and_the_file_is_root_only() {
        let t = tempfile::tempdir().unwrap();
        let s = NodeSettings::load(t.path()).unwrap();
        assert_eq!(s.state_dir, t.path().join("var/lib/cni/dpdk-cni"));
        let f = t.path().join(SETTINGS_FILE);
        std::fs::create_dir_all(f.parent().unwrap()).unwrap();
        std::fs::write(
            &f,
            r#"{"stateDir": "/srv/state", "handoverPfs": ["0000:03:00.0"]}"#,
        )
        .unwrap();
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o644)).unwrap();
        if nix::unistd::Uid::effective().is_root() {
            let s = NodeSettings::load(t.path()).unwrap();
            assert_eq!(s.state_dir, t.path().join("srv/state"));
            assert_eq!(s.handover_pfs, ["0000:03:00.0"]);
        }
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o666)).unwrap();
        let e = NodeSettings::load(t.path()).unwrap_err().to_string();
        assert!(e.contains("writable by root only"), "{e}");
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o644)).unwrap();
        std::fs::write(&f, r#"{"stateDir": "../x"}"#).unwrap();
        assert!(NodeSettings::load(t.path()).is_err());
        std::fs::write(&f, r#"{"stateDri": "/x"}"#).unwrap();
        assert!(NodeSettings::load(t.path()).is_err());
    }
}
