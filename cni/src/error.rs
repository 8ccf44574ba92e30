//! CNI errors: the well-known codes of the spec and ours (100 and up), and
//! the one place where the other crates' errors (`vfio`, `netlink`,
//! `ledger`) become them.

use serde::Serialize;

/// CNI error codes.
pub mod code {
    /// Incompatible CNI version.
    pub const INCOMPATIBLE_VERSION: u32 = 1;
    /// Unsupported field in the network configuration.
    pub const UNSUPPORTED_FIELD: u32 = 2;
    /// Container unknown or does not exist.
    pub const UNKNOWN_CONTAINER: u32 = 3;
    /// Invalid necessary environment variables.
    pub const INVALID_ENV: u32 = 4;
    /// I/O failure.
    pub const IO: u32 = 5;
    /// Failed to decode content.
    pub const DECODE: u32 = 6;
    /// Invalid network config.
    pub const INVALID_NETCONF: u32 = 7;
    /// Try again later.
    pub const TRY_AGAIN: u32 = 11;
    /// STATUS: the plugin is not available, cannot serve ADD.
    pub const NOT_AVAILABLE: u32 = 50;
    /// The PCI device named by the configuration does not exist or is not a VF of the PF.
    pub const DEVICE_NOT_FOUND: u32 = 100;
    /// Another attachment holds the device.
    pub const DEVICE_BUSY: u32 = 101;
    /// The device cannot be given to user space: IOMMU off, group not viable, vfio-pci missing.
    pub const VFIO_UNAVAILABLE: u32 = 102;
    /// The kernel did not bind the device to the driver in time.
    pub const BIND_FAILED: u32 = 103;
    /// The PF driver refused a VF setting.
    pub const VF_SETTING_REFUSED: u32 = 104;
    /// The IPAM plugin failed.
    pub const IPAM_FAILED: u32 = 105;
    /// The plugin lacks a capability it needs.
    pub const MISSING_CAPABILITY: u32 = 106;
    /// CHECK found the attachment differs from what ADD made.
    pub const CHECK_FAILED: u32 = 107;
    /// The node checks allocations and the kubelet did not give the device to this pod.
    pub const NOT_ALLOCATED: u32 = 108;
    /// A failure injected by `DPDK_CNI_FAILPOINT` (tests only).
    pub const INJECTED: u32 = 199;
}

/// An error as the CNI spec returns it on stdout.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[error("{msg}")]
pub struct CniError {
    pub code: u32,
    pub msg: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub details: String,
}

impl CniError {
    pub fn new(code: u32, msg: impl Into<String>) -> Self {
        CniError {
            code,
            msg: msg.into(),
            details: String::new(),
        }
    }

    pub fn with_details(mut self, details: impl Into<String>) -> Self {
        self.details = details.into();
        self
    }

    pub fn netconf(msg: impl Into<String>) -> Self {
        Self::new(code::INVALID_NETCONF, msg)
    }

    pub fn env(msg: impl Into<String>) -> Self {
        Self::new(code::INVALID_ENV, msg)
    }

    pub fn io(msg: impl Into<String>) -> Self {
        Self::new(code::IO, msg)
    }

    /// The JSON the plugin prints for this error.
    pub fn to_json(&self, cni_version: &str) -> serde_json::Value {
        let mut v = serde_json::json!({
            "cniVersion": cni_version,
            "code": self.code,
            "msg": self.msg,
        });
        if !self.details.is_empty() {
            v["details"] = self.details.clone().into();
        }
        v
    }
}

impl From<vfio::VfioError> for CniError {
    fn from(e: vfio::VfioError) -> Self {
        use vfio::VfioError as E;
        let c = match &e {
            E::InvalidAddress(_) | E::NotAVf(_) => code::INVALID_NETCONF,
            E::NoSuchDevice(..) => code::DEVICE_NOT_FOUND,
            E::IommuOff { .. } | E::GroupNotViable { .. } | E::DriverMissing { .. } => {
                code::VFIO_UNAVAILABLE
            }
            E::Timeout { .. } => code::BIND_FAILED,
            E::Read { .. } | E::Write { .. } | E::Parse { .. } => code::IO,
        };
        CniError::new(c, e.to_string())
    }
}

impl From<netlink::NetlinkError> for CniError {
    fn from(e: netlink::NetlinkError) -> Self {
        use netlink::NetlinkError as E;
        let c = match &e {
            E::NoSuchLink(_) | E::NoSuchVf { .. } => code::DEVICE_NOT_FOUND,
            E::Refused { .. } => code::VF_SETTING_REFUSED,
            E::Other { .. } => code::IO,
        };
        CniError::new(c, e.to_string())
    }
}

impl From<ledger::LedgerError> for CniError {
    fn from(e: ledger::LedgerError) -> Self {
        use ledger::LedgerError as E;
        let c = match &e {
            E::Locked { .. } => code::TRY_AGAIN,
            E::Clash { .. } => code::DEVICE_BUSY,
            E::Io { .. } | E::Corrupt { .. } | E::Settings { .. } | E::Quarantined { .. } => {
                code::IO
            }
        };
        CniError::new(c, e.to_string())
    }
}

pub type Result<T> = std::result::Result<T, CniError>;
