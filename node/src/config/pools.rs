//! Device pools, in the SR-IOV network device plugin's `resourceList`
//! format: a resource name, selectors, and the hugepages its pods get.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Deserializer};
use serde_json::Value;
use vfio::PciAddress;

use super::selectors::{DeviceType, Selectors};

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
    pub device_type: DeviceType,
    /// Leave TopologyInfo out of the device list.
    #[serde(default)]
    pub exclude_topology: bool,
    #[serde(default, deserialize_with = "one_or_many")]
    pub selectors: Vec<Selectors>,
    /// Extra key/values for a device's `PCIDEVICE_<..>_INFO` entry
    /// (`extraInfo`): under `"*"` for every device, under a PCI address for
    /// that one (its values win).
    #[serde(default)]
    pub additional_info: BTreeMap<String, BTreeMap<String, String>>,
    #[serde(default)]
    pub hugepages: Option<Hugepages>,
}

/// The field names of [`PoolConfig`], as the file spells them.
pub(crate) const POOL_FIELDS: &[&str] = &[
    "resourceName",
    "resourcePrefix",
    "deviceType",
    "excludeTopology",
    "selectors",
    "additionalInfo",
    "hugepages",
];

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

/// The upstream plugin accepts `selectors` as one object or a list of them;
/// an empty list selects nothing, so it is refused.
fn one_or_many<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<Vec<Selectors>, D::Error> {
    use serde::de::Error;
    let one = |v: Value, at: &str| {
        serde_json::from_value::<Selectors>(v).map_err(|e| D::Error::custom(format!("{at}: {e}")))
    };
    match Value::deserialize(d)? {
        v @ Value::Object(_) => Ok(vec![one(v, "selectors")?]),
        Value::Array(items) if items.is_empty() => Err(D::Error::custom(
            "selectors is an empty list: give at least one selector ({} selects every device)",
        )),
        Value::Array(items) => items
            .into_iter()
            .enumerate()
            .map(|(i, v)| one(v, &format!("selectors[{i}]")))
            .collect(),
        _ => Err(D::Error::custom(
            "selectors must be an object or a list of objects",
        )),
    }
}

impl PoolConfig {
    /// `<prefix>/<name>`, the extended resource the kubelet advertises.
    pub fn full_name(&self, default_prefix: Option<&str>) -> String {
        let prefix = self
            .resource_prefix
            .as_deref()
            .filter(|p| !p.is_empty())
            .or(default_prefix)
            .unwrap_or(DEFAULT_PREFIX);
        format!("{prefix}/{}", self.resource_name)
    }

    /// The `additionalInfo` for the device at `addr`: the `"*"` entries,
    /// overridden by the device's own.
    pub fn extra_info(&self, addr: PciAddress) -> BTreeMap<String, String> {
        let mut out = self.additional_info.get("*").cloned().unwrap_or_default();
        for (k, v) in &self.additional_info {
            if k.parse::<PciAddress>().ok() == Some(addr) {
                out.extend(v.clone());
            }
        }
        out
    }

    /// Checks the selectors and hugepages; the message names what is wrong.
    pub(crate) fn validate(&self) -> std::result::Result<(), String> {
        if self.selectors.is_empty() {
            // The upstream plugin stops on a pool without selectors.
            return Err("no selectors: give at least one ({} selects every device)".into());
        }
        let many = self.selectors.len() > 1;
        for (i, s) in self.selectors.iter().enumerate() {
            s.validate(self.device_type).map_err(|e| {
                if many {
                    format!("selectors[{i}]: {e}")
                } else {
                    format!("selectors: {e}")
                }
            })?;
        }
        for k in self.additional_info.keys() {
            if k != "*" && k.parse::<PciAddress>().is_err() {
                return Err(format!(
                    "additionalInfo key {k:?} is not \"*\" or a PCI address like 0000:86:00.0"
                ));
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

    /// What the pool's selectors do differently from the upstream plugin or
    /// cannot do on this daemon, one line each.
    pub fn warnings(&self) -> Vec<String> {
        let many = self.selectors.len() > 1;
        self.selectors
            .iter()
            .enumerate()
            .flat_map(|(i, s)| {
                s.warnings(self.device_type).into_iter().map(move |w| {
                    if many {
                        format!("selectors[{i}]: {w}")
                    } else {
                        format!("selectors: {w}")
                    }
                })
            })
            .collect()
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
