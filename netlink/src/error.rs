//! The one error type of the crate.

/// Errors of netlink calls.
#[derive(Debug, thiserror::Error)]
pub enum NetlinkError {
    #[error("network interface {0} not found")]
    NoSuchLink(String),
    #[error("{pf} reports no VF {vf} (it lists {count} VFs): is SR-IOV enabled on it?")]
    NoSuchVf { pf: String, vf: u32, count: usize },
    #[error("{pf} refused to set {what} on VF {vf}: {source}")]
    Refused {
        pf: String,
        vf: u32,
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("netlink request on {pf} failed: {msg}")]
    Other { pf: String, msg: String },
}

pub type Result<T> = std::result::Result<T, NetlinkError>;
