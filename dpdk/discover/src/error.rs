use std::path::PathBuf;

use crate::PciAddress;

/// Why EAL arguments could not be built from what the pod sees.
#[derive(Debug, thiserror::Error)]
pub enum DiscoverError {
    #[error("no DPDK devices found (looked in {looked_in})")]
    NoDevices { looked_in: String },

    #[error("failed to read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },

    #[error("{origin}: bad PCI address {value:?} (want dddd:bb:dd.f)")]
    BadPciAddress { origin: String, value: String },

    #[error("{origin}: device-info is not valid JSON: {source}")]
    DeviceInfoJson {
        origin: String,
        source: serde_json::Error,
    },

    #[error("{origin}: device-info has no {field:?}")]
    DeviceInfoMissing { origin: String, field: &'static str },

    #[error("{origin}: device-info field {field:?} is {value}, want {want}")]
    DeviceInfoField {
        origin: String,
        field: &'static str,
        value: String,
        want: &'static str,
    },

    #[error("{origin}: numa-node {value} is not a number")]
    BadNumaNode { origin: String, value: String },

    #[error("{origin}: unknown device-type {value:?} (want vfio-pci or netdevice)")]
    UnknownDeviceType { origin: String, value: String },

    #[error(
        "{origin}: PCI device {pci} is not in the pod's sysfs ({path}): with no device-type \
         in its device-info, its driver cannot be known"
    )]
    DeviceNotInSysfs {
        origin: String,
        pci: PciAddress,
        path: PathBuf,
    },

    #[error("{origin}: PCI device {pci} ({path}) cannot be used: {reason}")]
    DeviceUnusable {
        origin: String,
        pci: PciAddress,
        path: PathBuf,
        reason: String,
    },

    #[error("{origin}: network-status is not a valid JSON list: {source}")]
    NetworkStatusJson {
        origin: String,
        source: serde_json::Error,
    },

    #[error("{path}:{line}: bad downward-API annotation line: {reason}")]
    AnnotationLine {
        path: PathBuf,
        line: usize,
        reason: String,
    },

    #[error("{var}: device plugin info is not valid JSON: {source}")]
    DevicePluginInfoJson {
        var: String,
        source: serde_json::Error,
    },

    #[error("no hugetlbfs mount in {path}")]
    NoHugetlbfsMount { path: PathBuf },

    #[error("{path}: bad mountinfo line {line:?}")]
    BadMountInfo { path: PathBuf, line: String },

    #[error("bad hugepage size {value:?}")]
    BadPageSize { value: String },

    #[error("{path}: {value:?} is not a page count")]
    BadHugepageCount { path: PathBuf, value: String },

    #[error("NUMA node {node} of device {device} does not exist under {path}")]
    UnknownNumaNode {
        node: u32,
        device: String,
        path: PathBuf,
    },

    #[error("no free {size_kb} kB hugepages on NUMA node {node}")]
    NoFreeHugepages { node: u32, size_kb: u64 },

    #[error(
        "NUMA node {node} has {free} free {size_kb} kB hugepages, {needed} needed for {mem_mb} MiB"
    )]
    NotEnoughHugepages {
        node: u32,
        size_kb: u64,
        free: u64,
        needed: u64,
        mem_mb: u64,
    },

    #[error("bad CPU list {value:?}")]
    BadCpuList { value: String },

    #[error("sched_getaffinity failed: {0}")]
    Affinity(#[source] nix::Error),

    #[error("no CPUs to run lcores on")]
    NoCpus,
}

pub type Result<T> = std::result::Result<T, DiscoverError>;
