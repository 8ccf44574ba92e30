//! Build DPDK EAL arguments from what a Kubernetes pod sees, without DPDK.
//!
//! The inputs are files and variables the pod is given by the rest of the
//! SR-IOV stack: NPWG device-info documents (the ones dpdk-cni writes, in the
//! device-info directory, or their spec fields as Multus copies them into the
//! `k8s.v1.cni.cncf.io/network-status` annotation, read from a downward-API
//! file), the device plugin's `PCIDEVICE_*` variables, each named device's
//! sysfs (its driver, NUMA node and interfaces as the pod sees them), the
//! pod's hugetlbfs mount (`/proc/self/mountinfo`) and the per-NUMA free
//! hugepage counts in sysfs. [`discover`] turns them into an [`EalPlan`]:
//! `-a <bdf>` per device on vfio-pci (or a UIO driver), `--vdev` per kernel
//! interface, `--socket-mem` on the devices' NUMA nodes, `--huge-dir`,
//! `--file-prefix` and optionally `-l`. The proc and sys roots are
//! parameters, so everything here is testable on temp dirs.

mod cpus;
mod devinfo;
mod env;
mod error;
mod hugepages;
mod resolve;
mod sysfs;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

pub use cpus::{cpus_from_affinity, cpus_from_cpuset, format_cpu_list, node_cpus, parse_cpu_list};
pub use devinfo::{
    parse_device_info, parse_network_status, read_annotation, read_devinfo_dir,
    NETWORK_STATUS_ANNOTATION,
};
pub use env::devices_from_env;
pub use error::{DiscoverError, Result};
pub use hugepages::{free_hugepages, hugetlbfs_mounts, numa_nodes, parse_size_kb, HugeMount};
pub use resolve::{af_packet_vdev, resolve_device, DeviceClaim};
pub use sysfs::{pci_device_dir, read_pci, SysfsPci, BIFURCATED_DRIVERS, USERSPACE_DRIVERS};
/// The PCI address type the plugin reports with (`dddd:bb:dd.f`).
pub use vfio::PciAddress;

/// Where dpdk-cni writes device-info documents when the runtime names no file.
pub const DEFAULT_DEVINFO_DIR: &str = "/var/run/k8s.cni.cncf.io/devinfo/cni/";
/// Where pods conventionally mount the downward-API annotations file.
pub const DEFAULT_ANNOTATIONS_FILE: &str = "/etc/podinfo/annotations";
/// Hugepage memory per NUMA node used when the caller asks for none.
pub const DEFAULT_MEM_MB: u64 = 256;

/// A device the workload should drive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Device {
    pub kind: DeviceKind,
    /// `None` when no input knew it (or said -1).
    pub numa_node: Option<u32>,
    /// The PCI function behind it, when a source named one.
    pub pci: Option<PciAddress>,
    /// Its driver in the pod's sysfs; `None` when sysfs was not read (no
    /// address, or no such device there).
    pub driver: Option<String>,
    /// Where it was found: a file path, `network-status[i] (...)`, an env var.
    pub origin: String,
}

impl Device {
    /// The same PCI function, or the same interface (or PCI device) when
    /// either names no function.
    fn same_device(&self, other: &Device) -> bool {
        if let (Some(a), Some(b)) = (self.pci, other.pci) {
            return a == b;
        }
        match (&self.kind, &other.kind) {
            (
                DeviceKind::Netdevice { interface: a, .. },
                DeviceKind::Netdevice { interface: b, .. },
            ) => a == b,
            (a, b) => a == b,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum DeviceKind {
    /// A PCI function EAL drives itself: `-a <pci>`. Bound to vfio-pci (or
    /// igb_uio, uio_pci_generic), or to a bifurcated driver (mlx5_core).
    Vfio { pci: PciAddress },
    /// A kernel interface driven through a vdev such as af_packet: `--vdev`.
    Netdevice { interface: String, vdev: String },
}

impl std::fmt::Display for DeviceKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DeviceKind::Vfio { pci } => write!(f, "pci {pci} (-a)"),
            DeviceKind::Netdevice { interface, vdev } => {
                write!(f, "netdevice {interface} (--vdev {vdev})")
            }
        }
    }
}

/// Where to look for an optional input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location<T> {
    /// Do not look.
    Skip,
    /// Use it when it exists (the production defaults).
    IfPresent(T),
    /// It must exist: a missing file is an error.
    Required(T),
}

/// Where the network-status annotation comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NetworkStatus {
    Skip,
    /// A downward-API annotations file (`key="value"` lines).
    AnnotationsFile(Location<PathBuf>),
    /// The annotation value itself.
    Json(String),
}

/// Which CPUs to pass as `-l`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lcores {
    /// No `-l` (EAL uses every CPU of its affinity), except with several
    /// NUMA nodes: then the allowed CPUs on the devices' nodes, so EAL's main
    /// lcore, the workers and the application's per-socket memory pools sit
    /// where `--socket-mem` put the memory (see [`discover`]).
    Default,
    List(Vec<usize>),
    /// The pod's cgroup cpuset under the sys root.
    Cpuset,
    /// `sched_getaffinity` of the calling thread.
    Affinity,
}

/// Everything [`discover`] reads, with the production values from
/// [`Inputs::from_process`].
#[derive(Debug, Clone)]
pub struct Inputs {
    /// Stands for `/proc`.
    pub proc_root: PathBuf,
    /// Stands for `/sys`.
    pub sys_root: PathBuf,
    pub devinfo_dir: Location<PathBuf>,
    pub network_status: NetworkStatus,
    /// Environment variables (only `PCIDEVICE_*`, `POD_NAME`, `HOSTNAME` are read).
    pub env: Vec<(String, String)>,
    /// Hugepage memory (MiB) on each NUMA node that has a device.
    pub mem_mb: u64,
    /// Use this hugetlbfs mount rather than the first one.
    pub huge_dir: Option<PathBuf>,
    /// Overrides the file prefix derived from the pod name.
    pub file_prefix: Option<String>,
    pub lcores: Lcores,
    /// The CPUs the pod may run on, for [`Lcores::Default`] on a NUMA
    /// machine; `None`: this thread's `sched_getaffinity`.
    pub allowed_cpus: Option<Vec<usize>>,
}

impl Inputs {
    /// The real paths and this process's environment.
    pub fn from_process() -> Self {
        Inputs {
            proc_root: "/proc".into(),
            sys_root: "/sys".into(),
            devinfo_dir: Location::IfPresent(DEFAULT_DEVINFO_DIR.into()),
            network_status: NetworkStatus::AnnotationsFile(Location::IfPresent(
                DEFAULT_ANNOTATIONS_FILE.into(),
            )),
            env: std::env::vars().collect(),
            mem_mb: DEFAULT_MEM_MB,
            huge_dir: None,
            file_prefix: None,
            lcores: Lcores::Default,
            allowed_cpus: None,
        }
    }

    /// Nothing but the given roots: no device sources, no environment.
    pub fn with_roots(proc_root: impl Into<PathBuf>, sys_root: impl Into<PathBuf>) -> Self {
        Inputs {
            proc_root: proc_root.into(),
            sys_root: sys_root.into(),
            devinfo_dir: Location::Skip,
            network_status: NetworkStatus::Skip,
            env: Vec::new(),
            mem_mb: DEFAULT_MEM_MB,
            huge_dir: None,
            file_prefix: None,
            lcores: Lcores::Default,
            allowed_cpus: None,
        }
    }
}

/// The EAL arguments and what they were derived from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EalPlan {
    /// Deduplicated: vfio devices first, then vdevs, in discovery order.
    pub devices: Vec<Device>,
    pub huge_mount: HugeMount,
    /// MiB per NUMA node, index = node.
    pub socket_mem: Vec<u64>,
    pub file_prefix: String,
    pub lcores: Option<Vec<usize>>,
    /// Things worth logging: skipped entries, guessed NUMA nodes.
    pub notes: Vec<String>,
}

impl EalPlan {
    /// The EAL command line (without a program name).
    pub fn args(&self) -> Vec<String> {
        let mut args = Vec::new();
        if let Some(cpus) = &self.lcores {
            args.extend(["-l".to_owned(), format_cpu_list(cpus)]);
        }
        args.extend(["--file-prefix".to_owned(), self.file_prefix.clone()]);
        args.extend([
            "--huge-dir".to_owned(),
            self.huge_mount.path.display().to_string(),
        ]);
        let mem: Vec<String> = self.socket_mem.iter().map(u64::to_string).collect();
        args.extend(["--socket-mem".to_owned(), mem.join(",")]);
        let mut any_pci = false;
        for d in &self.devices {
            match &d.kind {
                DeviceKind::Vfio { pci } => {
                    any_pci = true;
                    args.extend(["-a".to_owned(), pci.to_string()]);
                }
                DeviceKind::Netdevice { vdev, .. } => {
                    args.extend(["--vdev".to_owned(), vdev.clone()])
                }
            }
        }
        if !any_pci {
            // Without -a, EAL would probe every PCI device it can see.
            args.push("--no-pci".to_owned());
        }
        args
    }
}

/// Collect the devices from every source, each checked against the pod's
/// sysfs ([`resolve_device`]), deduplicated: one PCI function (or one
/// interface) is one device; the first source to name it wins, a later one
/// may fill in its NUMA node.
pub fn collect_devices(inputs: &Inputs, notes: &mut Vec<String>) -> Result<Vec<Device>> {
    let mut found = Vec::new();
    let mut looked = Vec::new();
    match &inputs.devinfo_dir {
        Location::Skip => {}
        Location::IfPresent(dir) if !dir.exists() => {
            looked.push(format!("{} (absent)", dir.display()))
        }
        Location::IfPresent(dir) | Location::Required(dir) => {
            looked.push(dir.display().to_string());
            found.extend(read_devinfo_dir(dir)?);
        }
    }
    match &inputs.network_status {
        NetworkStatus::Skip => {}
        NetworkStatus::Json(json) => {
            looked.push("network-status".to_owned());
            found.extend(parse_network_status(NETWORK_STATUS_ANNOTATION, json)?);
        }
        NetworkStatus::AnnotationsFile(Location::Skip) => {}
        NetworkStatus::AnnotationsFile(Location::IfPresent(p)) if !p.exists() => {
            looked.push(format!("{} (absent)", p.display()))
        }
        NetworkStatus::AnnotationsFile(Location::IfPresent(path) | Location::Required(path)) => {
            looked.push(path.display().to_string());
            match read_annotation(path, NETWORK_STATUS_ANNOTATION)? {
                Some(json) => {
                    let origin = format!("{}: {NETWORK_STATUS_ANNOTATION}", path.display());
                    found.extend(parse_network_status(&origin, &json)?);
                }
                None => notes.push(format!(
                    "{} has no {NETWORK_STATUS_ANNOTATION}",
                    path.display()
                )),
            }
        }
    }
    looked.push("PCIDEVICE_* variables".to_owned());
    found.extend(devices_from_env(&inputs.env)?);

    let mut devices: Vec<Device> = Vec::new();
    for claim in found {
        let d = resolve_device(&inputs.sys_root, claim, notes)?;
        match devices.iter_mut().find(|e| e.same_device(&d)) {
            Some(e) => {
                if e.kind != d.kind {
                    notes.push(format!(
                        "{} gives {} for the device {} gave as {}; keeping the first",
                        d.origin, d.kind, e.origin, e.kind
                    ));
                }
                if e.numa_node.is_none() {
                    e.numa_node = d.numa_node;
                } else if d.numa_node.is_some() && d.numa_node != e.numa_node {
                    notes.push(format!(
                        "{} says NUMA node {:?} for a device {} put on {:?}; keeping the first",
                        d.origin, d.numa_node, e.origin, e.numa_node
                    ));
                }
            }
            None => devices.push(d),
        }
    }
    if devices.is_empty() {
        return Err(DiscoverError::NoDevices {
            looked_in: looked.join(", "),
        });
    }
    // Stable: vfio before vdevs, as EAL numbers PCI ports first anyway.
    devices.sort_by_key(|d| matches!(d.kind, DeviceKind::Netdevice { .. }));
    Ok(devices)
}

/// Read every input and plan the EAL command line.
pub fn discover(inputs: &Inputs) -> Result<EalPlan> {
    let mut notes = Vec::new();
    let devices = collect_devices(inputs, &mut notes)?;

    let mounts = hugetlbfs_mounts(&inputs.proc_root)?;
    let mountinfo = inputs.proc_root.join("self/mountinfo");
    let huge_mount = match &inputs.huge_dir {
        Some(dir) => mounts.into_iter().find(|m| &m.path == dir),
        None => mounts.into_iter().next(),
    }
    .ok_or(DiscoverError::NoHugetlbfsMount { path: mountinfo })?;

    let socket_mem = plan_socket_mem(inputs, &devices, &huge_mount, &mut notes)?;
    let file_prefix = file_prefix(inputs);
    let lcores = match &inputs.lcores {
        Lcores::Default => numa_local_lcores(inputs, &socket_mem, &mut notes)?,
        Lcores::List(l) => Some(l.clone()),
        Lcores::Cpuset => Some(cpus_from_cpuset(&inputs.sys_root)?),
        Lcores::Affinity => Some(cpus_from_affinity()?),
    };
    if lcores.as_ref().is_some_and(Vec::is_empty) {
        return Err(DiscoverError::NoCpus);
    }
    Ok(EalPlan {
        devices,
        huge_mount,
        socket_mem,
        file_prefix,
        lcores,
        notes,
    })
}

/// The default lcores. On one NUMA node, or where sysfs lists no node's
/// CPUs, none (EAL's own choice). With several nodes, the allowed CPUs on the
/// nodes that got memory (the devices' nodes): left to itself EAL makes the
/// first allowed CPU the main lcore, and applications such as testpmd then
/// create a memory pool on that CPU's node too, where `--socket-mem` put
/// nothing, and run out of the pod's hugepages. None, with a note, when no
/// allowed CPU is on those nodes (or all of them are).
fn numa_local_lcores(
    inputs: &Inputs,
    socket_mem: &[u64],
    notes: &mut Vec<String>,
) -> Result<Option<Vec<usize>>> {
    let sys = &inputs.sys_root;
    let nodes = numa_nodes(sys);
    if nodes.len() < 2 {
        return Ok(None);
    }
    let device_nodes: Vec<u32> = nodes
        .iter()
        .copied()
        .filter(|&n| socket_mem.get(n as usize).is_some_and(|&m| m > 0))
        .collect();
    let mut listed = false;
    let mut local: BTreeSet<usize> = BTreeSet::new();
    for &n in &nodes {
        if let Some(cpus) = node_cpus(sys, n)? {
            listed = true;
            if device_nodes.contains(&n) {
                local.extend(cpus);
            }
        }
    }
    if !listed {
        return Ok(None);
    }
    let allowed = match &inputs.allowed_cpus {
        Some(cpus) => cpus.clone(),
        None => cpus_from_affinity()?,
    };
    let picked: Vec<usize> = allowed
        .iter()
        .copied()
        .filter(|c| local.contains(c))
        .collect();
    let node_list = device_nodes
        .iter()
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join(",");
    if picked.is_empty() {
        notes.push(format!(
            "none of the CPUs this pod may use ({}) is on NUMA node {node_list}, where its devices are: lcores left to EAL",
            format_cpu_list(&allowed)
        ));
        return Ok(None);
    }
    if picked.len() == allowed.len() {
        return Ok(None);
    }
    notes.push(format!(
        "lcores {}: the CPUs this pod may use on NUMA node {node_list}, where its devices are",
        format_cpu_list(&picked)
    ));
    Ok(Some(picked))
}

/// `inputs.mem_mb` on every NUMA node that has a device, 0 on the others,
/// after checking each such node has enough free pages of the mount's size.
fn plan_socket_mem(
    inputs: &Inputs,
    devices: &[Device],
    mount: &HugeMount,
    notes: &mut Vec<String>,
) -> Result<Vec<u64>> {
    let sys = &inputs.sys_root;
    let size_kb = mount.page_size_kb;
    let nodes = numa_nodes(sys);
    let node_dir = sys.join("devices/system/node");
    let mut used: BTreeSet<u32> = BTreeSet::new();
    for d in devices {
        match d.numa_node {
            Some(n) if nodes.is_empty() && n == 0 => {
                used.insert(0);
            }
            Some(n) if nodes.contains(&n) => {
                used.insert(n);
            }
            Some(n) => {
                return Err(DiscoverError::UnknownNumaNode {
                    node: n,
                    device: d.origin.clone(),
                    path: node_dir,
                })
            }
            None => {
                let node = guess_node(sys, &nodes, size_kb)?;
                if nodes.len() > 1 {
                    notes.push(format!(
                        "NUMA node of {} unknown: using node {node}, which has the most free hugepages",
                        d.origin
                    ));
                }
                used.insert(node);
            }
        }
    }
    let needed = (inputs.mem_mb * 1024).div_ceil(size_kb);
    for &node in &used {
        let free = free_hugepages(sys, (!nodes.is_empty()).then_some(node), size_kb)?;
        if free == 0 {
            return Err(DiscoverError::NoFreeHugepages { node, size_kb });
        }
        if free < needed {
            return Err(DiscoverError::NotEnoughHugepages {
                node,
                size_kb,
                free,
                needed,
                mem_mb: inputs.mem_mb,
            });
        }
    }
    let len = nodes.last().map_or(1, |&n| n as usize + 1);
    Ok((0..len as u32)
        .map(|n| if used.contains(&n) { inputs.mem_mb } else { 0 })
        .collect())
}

fn guess_node(sys: &Path, nodes: &[u32], size_kb: u64) -> Result<u32> {
    let mut best = (0, 0);
    for &n in nodes {
        let free = free_hugepages(sys, Some(n), size_kb)?;
        if free > best.1 {
            best = (n, free);
        }
    }
    Ok(if nodes.is_empty() { 0 } else { best.0 })
}

/// A file prefix unique per pod: the explicit one, else `POD_NAME`, else
/// `HOSTNAME` (a pod's hostname is its name), else the kernel hostname, else
/// the pid; reduced to `[A-Za-z0-9_.-]`.
fn file_prefix(inputs: &Inputs) -> String {
    let env = |k: &str| {
        inputs
            .env
            .iter()
            .find(|(n, v)| n == k && !v.is_empty())
            .map(|(_, v)| v.clone())
    };
    let name = inputs
        .file_prefix
        .clone()
        .or_else(|| env("POD_NAME"))
        .or_else(|| env("HOSTNAME"))
        .or_else(|| {
            std::fs::read_to_string(inputs.proc_root.join("sys/kernel/hostname"))
                .ok()
                .map(|h| h.trim().to_owned())
                .filter(|h| !h.is_empty())
        })
        .unwrap_or_else(|| format!("dpdk-{}", std::process::id()));
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "_.-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect()
}
