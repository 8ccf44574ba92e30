use std::path::PathBuf;
use std::time::Duration;

use crate::PciAddress;

/// Errors of the `vfio` crate.
#[derive(Debug, thiserror::Error)]
pub enum VfioError {
    #[error("invalid PCI address {0:?}: expected dddd:bb:dd.f in hexadecimal, e.g. 0000:18:02.5")]
    InvalidAddress(String),
    #[error("PCI device {0} not found: no {1}")]
    NoSuchDevice(PciAddress, PathBuf),
    #[error("failed to read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("failed to write {data:?} to {path}: {source}")]
    Write {
        path: PathBuf,
        data: String,
        #[source]
        source: std::io::Error,
    },
    #[error("unexpected content {content:?} in {path}")]
    Parse { path: PathBuf, content: String },
    #[error("device {0} is not an SR-IOV virtual function (it has no physfn link)")]
    NotAVf(PciAddress),
    #[error("device {device} has no IOMMU group and the IOMMU is off: enable intel_iommu=on/amd_iommu=on on the kernel command line (or vfio's enable_unsafe_noiommu_mode)")]
    IommuOff { device: PciAddress },
    #[error("IOMMU group {group} of {device} is not viable: {member} in the same group is bound to {driver}; bind it to vfio-pci or unbind it first")]
    GroupNotViable {
        device: PciAddress,
        group: u32,
        member: PciAddress,
        driver: String,
    },
    #[error(
        "driver {driver} is not available: {path} does not exist (load it with modprobe {driver})"
    )]
    DriverMissing { driver: String, path: PathBuf },
    #[error("timed out after {waited:?} waiting for {what}")]
    Timeout { what: String, waited: Duration },
}

/// Result of the `vfio` crate.
pub type Result<T> = std::result::Result<T, VfioError>;
