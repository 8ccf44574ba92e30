//! What can go wrong with the state directory.

use std::path::PathBuf;

/// Errors of the ledger; the plugin maps them to CNI codes at its edge.
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    /// A file system call on the state directory failed.
    #[error("failed to {what} {}: {source}", path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A record could not be read as what it should hold.
    #[error("failed to parse {what} {}: {source}", path.display())]
    Corrupt {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    /// The node's settings file cannot be used.
    #[error("the node settings {} are refused: {msg}", path.display())]
    Settings { path: PathBuf, msg: String },
    /// A record failed to parse or to validate and was moved aside.
    #[error("the record {} is unusable ({reason}); moved to {}", path.display(), moved_to.display())]
    Quarantined {
        path: PathBuf,
        moved_to: PathBuf,
        reason: String,
    },
    /// The record file of an attachment holds another one's (their
    /// container ID and interface name join to the same file name).
    #[error("{} holds the record of container {container_id} interface {ifname}", path.display())]
    Clash {
        path: PathBuf,
        container_id: String,
        ifname: String,
    },
    /// Another command held the device's lock for longer than the wait.
    #[error("device {device} is locked by another dpdk-cni command; try again")]
    Locked { device: String },
}

pub type Result<T> = std::result::Result<T, LedgerError>;

pub(crate) fn io(
    what: &'static str,
    path: impl Into<PathBuf>,
    source: std::io::Error,
) -> LedgerError {
    LedgerError::Io {
        what,
        path: path.into(),
        source,
    }
}
