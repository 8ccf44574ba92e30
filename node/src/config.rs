//! The daemon's config file: device pools in the SR-IOV network device
//! plugin's `resourceList` format, and what to set up on the node's PFs.
//!
//! ```json
//! {
//!   "resourceList": [{
//!     "resourceName": "intel_sriov_dpdk", "resourcePrefix": "intel.com",
//!     "selectors": {"vendors": ["8086"], "devices": ["10ca"], "drivers": ["igbvf"],
//!                   "pfNames": ["ens1f0#0,2-7"], "rootDevices": [], "pciAddresses": []},
//!     "hugepages": {"pageSize": "2Mi"}
//!   }],
//!   "nodeSetup": {"pfs": [{"pfName": "ens1f0", "numVfs": 8,
//!                          "vfs": [{"index": 0, "mac": "02:00:00:00:00:01", "spoofchk": "off"}]}]},
//!   "cdi": {"specDir": "/var/run/cdi"}
//! }
//! ```
//!
//! Fields the upstream plugin has and we do not use (`deviceType`,
//! `linkTypes`, `needVhostNet`) are accepted so its ConfigMap loads as is.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Deserializer};

use crate::error::{NodeError, Result};

/// The resource prefix when neither the pool nor the file names one: the
/// upstream plugin's, so resource names survive a switch to dpdk-cni.
pub const DEFAULT_PREFIX: &str = "intel.com";

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Config {
    #[serde(default)]
    pub resource_prefix: Option<String>,
    #[serde(default)]
    pub resource_list: Vec<PoolConfig>,
    #[serde(default)]
    pub node_setup: NodeSetup,
    /// Allocate answers with CDI device names and spec files in this directory.
    #[serde(default)]
    pub cdi: Option<CdiConfig>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CdiConfig {
    #[serde(default = "default_cdi_dir")]
    pub spec_dir: PathBuf,
}

fn default_cdi_dir() -> PathBuf {
    PathBuf::from("/var/run/cdi")
}

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

/// What to set up on the node's PFs at start and on every reload.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeSetup {
    #[serde(default)]
    pub pfs: Vec<PfSetup>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PfSetup {
    /// The PF's netdev name, or:
    #[serde(default)]
    pub pf_name: Option<String>,
    /// its PCI address.
    #[serde(default)]
    pub pci_address: Option<String>,
    /// `sriov_numvfs` to have.
    #[serde(default)]
    pub num_vfs: Option<u32>,
    #[serde(default)]
    pub vfs: Vec<VfSetup>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VfSetup {
    pub index: u32,
    #[serde(default)]
    pub mac: Option<String>,
    /// "on" or "off".
    #[serde(default)]
    pub spoofchk: Option<String>,
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

impl Config {
    /// Parses and checks a config.
    pub fn parse(path: &Path, data: &[u8]) -> Result<Config> {
        let bad = |msg: String| NodeError::Config {
            path: path.to_path_buf(),
            msg,
        };
        let cfg: Config = serde_json::from_slice(data).map_err(|e| bad(e.to_string()))?;
        let mut names = BTreeSet::new();
        for p in &cfg.resource_list {
            let full = p.full_name(cfg.resource_prefix.as_deref());
            if !valid_resource_name(&full) {
                return Err(bad(format!(
                    "resource name {full:?} is not <dns-prefix>/<name> of letters, digits, '-', '_' and '.'"
                )));
            }
            if !names.insert(full.clone()) {
                return Err(bad(format!("resource {full} is listed twice")));
            }
            for s in &p.selectors {
                for n in &s.pf_names {
                    n.parse::<PfName>()
                        .map_err(|e| bad(format!("{full}: {e}")))?;
                }
                for a in s.root_devices.iter().chain(&s.pci_addresses) {
                    a.parse::<vfio::PciAddress>()
                        .map_err(|e| bad(format!("{full}: {e}")))?;
                }
            }
            if let Some(h) = &p.hugepages {
                if h.size_kb().is_none() {
                    return Err(bad(format!(
                        "{full}: hugepages pageSize {:?} is not like 2Mi or 1Gi",
                        h.page_size
                    )));
                }
            }
        }
        for pf in &cfg.node_setup.pfs {
            if pf.pf_name.is_none() == pf.pci_address.is_none() {
                return Err(bad(
                    "nodeSetup: each PF needs exactly one of pfName and pciAddress".into(),
                ));
            }
            for vf in &pf.vfs {
                if let Some(m) = &vf.mac {
                    m.parse::<dpdk_cni::netlink::MacAddr>()
                        .map_err(|e| bad(format!("nodeSetup: VF {}: {e}", vf.index)))?;
                }
                if let Some(s) = &vf.spoofchk {
                    if s != "on" && s != "off" {
                        return Err(bad(format!(
                            "nodeSetup: VF {}: spoofchk {s:?} is not \"on\" or \"off\"",
                            vf.index
                        )));
                    }
                }
            }
        }
        Ok(cfg)
    }

    pub fn load(path: &Path) -> Result<Config> {
        let data = std::fs::read(path).map_err(NodeError::read(path))?;
        Config::parse(path, &data)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pf_names_with_vf_ranges() {
        let p: PfName = "ens1f0#0,2-4".parse().unwrap();
        assert_eq!(p.name, "ens1f0");
        assert_eq!(p.vfs.unwrap().into_iter().collect::<Vec<_>>(), [0, 2, 3, 4]);
        let all: PfName = "ens1f1".parse().unwrap();
        assert_eq!(all.vfs, None);
        for bad in [
            "",
            "#1",
            "ens1f0#",
            "ens1f0#3-1",
            "ens1f0#a",
            "x/y#1",
            "e#0-99999",
        ] {
            assert!(bad.parse::<PfName>().is_err(), "{bad}");
        }
    }

    #[test]
    fn upstream_configmap_loads() {
        // The shape of seed 003's ConfigMap, selectors as an object.
        let data = br#"{"resourceList": [{
            "resourceName": "mlnx_sriov_rdma", "resourcePrefix": "mellanox.com",
            "selectors": {"vendors": ["15b3"], "devices": ["101e"], "drivers": ["mlx5_core"], "isRdma": false}
          }, {
            "resourceName": "intel_sriov_dpdk", "deviceType": "netDevice",
            "selectors": [{"pfNames": ["ens1f0#0,2-7"]}, {"pciAddresses": ["0000:18:02.5"]}]
          }]}"#;
        let cfg = Config::parse(Path::new("c.json"), data).unwrap();
        assert_eq!(cfg.resource_list.len(), 2);
        assert_eq!(
            cfg.resource_list[0].full_name(None),
            "mellanox.com/mlnx_sriov_rdma"
        );
        assert_eq!(
            cfg.resource_list[1].full_name(None),
            "intel.com/intel_sriov_dpdk"
        );
        assert_eq!(cfg.resource_list[1].selectors.len(), 2);
    }

    #[test]
    fn rejects_bad_pools_and_setup() {
        for data in [
            r#"{"resourceList": [{"resourceName": "a b"}]}"#,
            r#"{"resourceList": [{"resourceName": "a"}, {"resourceName": "a"}]}"#,
            r#"{"resourceList": [{"resourceName": "a", "selectors": {"pfNames": ["p#9-1"]}}]}"#,
            r#"{"resourceList": [{"resourceName": "a", "selectors": {"pciAddresses": ["18:02.5"]}}]}"#,
            r#"{"resourceList": [{"resourceName": "a", "hugepages": {"pageSize": "3X"}}]}"#,
            r#"{"nodeSetup": {"pfs": [{"numVfs": 4}]}}"#,
            r#"{"nodeSetup": {"pfs": [{"pfName": "p", "vfs": [{"index": 0, "mac": "zz"}]}]}}"#,
            r#"{"nodeSetup": {"pfs": [{"pfName": "p", "vfs": [{"index": 0, "spoofchk": "no"}]}]}}"#,
        ] {
            assert!(
                Config::parse(Path::new("c"), data.as_bytes()).is_err(),
                "{data}"
            );
        }
    }

    #[test]
    fn hugepage_sizes() {
        assert_eq!(parse_page_size("2Mi"), Some(2048));
        assert_eq!(parse_page_size("1Gi"), Some(1048576));
        assert_eq!(parse_page_size("2048kB"), Some(2048));
        assert_eq!(parse_page_size("0Mi"), None);
        let h = Hugepages {
            page_size: "1Gi".into(),
            host_path: None,
            container_path: default_hugepage_mount(),
            pages_per_device: None,
            mount: true,
        };
        assert_eq!(h.host_path(), PathBuf::from("/dev/hugepages-1Gi"));
        assert_eq!(h.pages_per_device(), 1);
    }
}
