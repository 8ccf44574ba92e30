//! Device pools, in the SR-IOV network device plugin's `resourceList`
//! format: a resource name, selectors, and the hugepages its pods get.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use serde::{Deserialize, Deserializer};

use crate::error::{NodeError, Result};

/// The resource prefix when neither the pool nor the file names one: the
/// upstream plugin's, so resource names survive a switch to dpdk-cni.
pub const DEFAULT_PREFIX: &str = "intel.com";

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PoolConfig {
    pub resource_name: String,
    #[serde(default)]
    pub resource_prefix: Option<String>,
    #[serde(default)]
    pub device_type: Option<String>,
    /// Leave TopologyInfo out of the device list.
    #[serde(default)]
    pub exclude_topology: bool,
    #[serde(default, deserialize_with = "one_or_many")]
    pub selectors: Vec<Selectors>,
    #[serde(default)]
    pub hugepages: Option<Hugepages>,
    /// Extra `PCIDEVICE_<..>_INFO` entries (`"extra"`), per PCI address or
    /// `"*"` for every device, as the upstream plugin's `additionalInfo`.
    #[serde(default)]
    pub additional_info: Option<BTreeMap<String, BTreeMap<String, String>>>,
}

/// A hugetlbfs mount handed to every container that gets a device of the pool.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Hugepages {
    /// "2Mi" or "1Gi".
    pub page_size: String,
    /// The host's hugetlbfs mount of that page size (default
    /// `/dev/hugepages` for 2Mi, `/dev/hugepages-1Gi` for 1Gi).
    #[serde(default)]
    pub host_path: Option<PathBuf>,
    #[serde(default = "default_hugepage_mount")]
    pub container_path: PathBuf,
    /// Pages a device is expected to need, for NUMA placement (default 1 GiB worth).
    #[serde(default)]
    pub pages_per_device: Option<u64>,
    /// Hand the mount to containers; false when pods mount an
    /// `emptyDir: {medium: HugePages-2Mi}` themselves and the page size is
    /// only for NUMA placement.
    #[serde(default = "yes")]
    pub mount: bool,
}

fn yes() -> bool {
    true
}

fn default_hugepage_mount() -> PathBuf {
    PathBuf::from("/dev/hugepages")
}

impl Hugepages {
    /// The page size in kB, as sysfs names it (`hugepages-2048kB`).
    pub fn size_kb(&self) -> Option<u64> {
        parse_page_size(&self.page_size)
    }

    pub fn host_path(&self) -> PathBuf {
        match &self.host_path {
            Some(p) => p.clone(),
            None if self.size_kb() == Some(2048) => PathBuf::from("/dev/hugepages"),
            None => PathBuf::from(format!("/dev/hugepages-{}", self.page_size)),
        }
    }

    pub fn pages_per_device(&self) -> u64 {
        self.pages_per_device.unwrap_or_else(|| {
            let kb = self.size_kb().unwrap_or(2048).max(1);
            (1024 * 1024 / kb).max(1)
        })
    }
}

/// "2Mi", "2M", "2048kB", "1Gi", "1G" to kB.
pub fn parse_page_size(s: &str) -> Option<u64> {
    let s = s.trim();
    let (num, mult) = if let Some(n) = s.strip_suffix("kB").or_else(|| s.strip_suffix("Ki")) {
        (n, 1)
    } else if let Some(n) = s.strip_suffix("Mi").or_else(|| s.strip_suffix('M')) {
        (n, 1024)
    } else if let Some(n) = s.strip_suffix("Gi").or_else(|| s.strip_suffix('G')) {
        (n, 1024 * 1024)
    } else {
        return None;
    };
    num.parse::<u64>().ok().map(|n| n * mult).filter(|&n| n > 0)
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Selectors {
    #[serde(default)]
    pub vendors: Vec<String>,
    #[serde(default)]
    pub devices: Vec<String>,
    #[serde(default)]
    pub drivers: Vec<String>,
    #[serde(default)]
    pub pf_names: Vec<String>,
    #[serde(default)]
    pub root_devices: Vec<String>,
    #[serde(default)]
    pub pci_addresses: Vec<String>,
    #[serde(default)]
    pub link_types: Vec<String>,
    #[serde(default)]
    pub is_rdma: bool,
    #[serde(default)]
    pub need_vhost_net: bool,
}

/// The upstream plugin accepts `selectors` as one object or a list of them.
fn one_or_many<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<Vec<Selectors>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(Selectors),
        Many(Vec<Selectors>),
    }
    Ok(match OneOrMany::deserialize(d)? {
        OneOrMany::One(s) => vec![s],
        OneOrMany::Many(v) => v,
    })
}

impl PoolConfig {
    /// `<prefix>/<name>`, the extended resource the kubelet advertises.
    pub fn full_name(&self, default_prefix: Option<&str>) -> String {
        let prefix = self
            .resource_prefix
            .as_deref()
            .or(default_prefix)
            .unwrap_or(DEFAULT_PREFIX);
        format!("{prefix}/{}", self.resource_name)
    }

    /// Checks the selectors and hugepages; the message names what is wrong.
    pub(crate) fn validate(&self) -> std::result::Result<(), String> {
        for s in &self.selectors {
            for n in &s.pf_names {
                n.parse::<PfName>().map_err(|e| e.to_string())?;
            }
            for a in s.root_devices.iter().chain(&s.pci_addresses) {
                a.parse::<vfio::PciAddress>().map_err(|e| e.to_string())?;
            }
        }
        if let Some(h) = &self.hugepages {
            if h.size_kb().is_none() {
                return Err(format!(
                    "hugepages pageSize {:?} is not like 2Mi or 1Gi",
                    h.page_size
                ));
            }
        }
        Ok(())
    }
}

/// A `pfNames` entry: `ens1f0`, or `ens1f0#0,2-7` for some of its VFs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PfName {
    pub name: String,
    /// `None`: every VF.
    pub vfs: Option<BTreeSet<u32>>,
}

impl std::str::FromStr for PfName {
    type Err = NodeError;

    fn from_str(s: &str) -> Result<Self> {
        let bad = || NodeError::Selector(s.to_string());
        let (name, ranges) = match s.split_once('#') {
            None => (s, None),
            Some((n, r)) => (n, Some(r)),
        };
        if name.is_empty() || name.contains('/') {
            return Err(bad());
        }
        let vfs = match ranges {
            None => None,
            Some(r) => {
                let mut set = BTreeSet::new();
                for part in r.split(',') {
                    let part = part.trim();
                    let (lo, hi) = match part.split_once('-') {
                        Some((a, b)) => (a.trim(), b.trim()),
                        None => (part, part),
                    };
                    let lo: u32 = lo.parse().map_err(|_| bad())?;
                    let hi: u32 = hi.parse().map_err(|_| bad())?;
                    // A PF has at most 256 VFs per bus; refuse typos like 0-99999.
                    if lo > hi || hi > 4095 {
                        return Err(bad());
                    }
                    set.extend(lo..=hi);
                }
                Some(set)
            }
        };
        Ok(PfName {
            name: name.to_string(),
            vfs,
        })
    }
}

/// `<prefix>/<name>`: the prefix a DNS subdomain, the name letters, digits,
/// `-`, `_`, `.` (what the kubelet accepts as an extended resource).
pub fn valid_resource_name(s: &str) -> bool {
    let Some((prefix, name)) = s.split_once('/') else {
        return false;
    };
    let ok = |c: char, extra: &str| c.is_ascii_alphanumeric() || extra.contains(c);
    !prefix.is_empty()
        && prefix.len() <= 253
        && prefix.chars().all(|c| ok(c, "-."))
        && !name.is_empty()
        && name.len() <= 63
        && name.chars().all(|c| ok(c, "-_."))
}
