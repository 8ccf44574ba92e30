//! The daemon's errors; each crate it uses keeps its own, wrapped here.

use std::path::PathBuf;

/// Errors of the node daemon.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("failed to read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("failed to write {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid config {path}: {msg}")]
    Config { path: PathBuf, msg: String },
    #[error("invalid selector {0:?}")]
    Selector(String),
    #[error(transparent)]
    Sysfs(#[from] vfio::VfioError),
    #[error("VF setup on {pf} failed: {msg}")]
    Setup { pf: String, msg: String },
    /// A setup step held back until its VFs are let go; tried again later.
    #[error("VF setup on {pf} waits: {msg}")]
    SetupWaits { pf: String, msg: String },
    #[error("kubernetes API: {0}")]
    Kube(String),
    /// An API request the server answered with an error status.
    #[error("kubernetes API: {msg}")]
    Api { status: u16, msg: String },
    /// A ResourceClaim the DRA driver cannot prepare, with the reason.
    #[error("{0}")]
    Claim(String),
    #[error("kubelet: {0}")]
    Kubelet(String),
    #[error(transparent)]
    Ledger(#[from] ledger::LedgerError),
    #[error(transparent)]
    Netlink(#[from] netlink::NetlinkError),
    /// An Allocate the daemon cannot serve, with the reason.
    #[error("{0}")]
    Allocate(String),
    /// An Allocate refused because the device is held, or who holds it
    /// cannot be known.
    #[error("{0}")]
    Refused(String),
}

/// Result of the node daemon.
pub type Result<T> = std::result::Result<T, NodeError>;

impl NodeError {
    pub(crate) fn read(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> NodeError {
        let path = path.into();
        move |source| NodeError::Read { path, source }
    }

    pub(crate) fn write(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> NodeError {
        let path = path.into();
        move |source| NodeError::Write { path, source }
    }
}
