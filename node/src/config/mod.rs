//! The daemon's config file: device pools in the SR-IOV network device
//! plugin's `resourceList` format ([`pools`]), and what to set up on the
//! node's PFs ([`setup`]). This file reads and checks the whole.
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
//! The upstream plugin's ConfigMap, and the one the SR-IOV network operator
//! renders per node, load as they are and mean the same: every selector and
//! pool field of upstream is read ([`selectors`]), keys match whatever their
//! case, `null` is unset and unknown keys are ignored ([`gojson`]). What
//! upstream refuses at start is refused here too, with the file and the
//! problem named: unsupported `deviceType`, `isRdma` with `vdpaType`, an
//! `auxNetDevice` pool without `auxTypes: ["sf"]`, a repeated resource name.
//! A pool upstream would skip with a warning (selectors of the wrong type,
//! an empty selector list) or selectors that would match nothing (a
//! malformed VF range, PCI address or `additionalInfo` key) refuse the file.

mod gojson;
mod load;
mod pools;
mod selectors;
mod setup;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::Value;

use crate::error::{NodeError, Result};

pub use load::{load_checked, log_loaded};
pub use pools::{parse_page_size, valid_resource_name, Hugepages, PoolConfig, DEFAULT_PREFIX};
pub use selectors::{DeviceType, PfName, RootDevice, Selectors, VfRanges};
pub use setup::{NodeSetup, PfSetup, VfSetup};

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Config {
    /// The prefix of pools that name none; after loading, the daemon's
    /// `--resource-prefix` when the file names none either.
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

/// The top-level field names, as the file spells them.
const CONFIG_FIELDS: &[&str] = &["resourcePrefix", "resourceList", "nodeSetup", "cdi"];

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CdiConfig {
    #[serde(default = "default_cdi_dir")]
    pub spec_dir: PathBuf,
}

impl Default for CdiConfig {
    fn default() -> Self {
        CdiConfig {
            spec_dir: default_cdi_dir(),
        }
    }
}

fn default_cdi_dir() -> PathBuf {
    PathBuf::from("/var/run/cdi")
}

impl Config {
    /// The drivers the pools select devices on (their selectors' `drivers`).
    pub fn pool_drivers(&self) -> BTreeSet<String> {
        self.resource_list
            .iter()
            .flat_map(|p| &p.selectors)
            .flat_map(|s| s.drivers.iter().cloned())
            .collect()
    }

    /// Parses and checks a config.
    pub fn parse(path: &Path, data: &[u8]) -> Result<Config> {
        Config::parse_with_prefix(path, data, None)
    }

    /// Parses and checks a config whose pools, when neither they nor the
    /// file name a resource prefix, take `default_prefix` (the daemon's
    /// `--resource-prefix`). Keys match fields whatever their case and
    /// `null` means unset, as in the upstream plugin (see `gojson`).
    pub fn parse_with_prefix(
        path: &Path,
        data: &[u8],
        default_prefix: Option<&str>,
    ) -> Result<Config> {
        let bad = |msg: String| NodeError::Config {
            path: path.to_path_buf(),
            msg,
        };
        let mut top: Value =
            serde_json::from_slice(data).map_err(|e| bad(format!("not valid JSON: {e}")))?;
        let Value::Object(obj) = &mut top else {
            return Err(bad("the file is not a JSON object".into()));
        };
        gojson::fold_keys(obj, CONFIG_FIELDS);
        let list = obj.remove("resourceList");
        let mut cfg: Config = serde_json::from_value(top).map_err(|e| bad(e.to_string()))?;
        if cfg.resource_prefix.as_deref().is_none_or(str::is_empty) {
            cfg.resource_prefix = default_prefix.map(str::to_string);
        }
        match list {
            None => {}
            Some(Value::Array(items)) => {
                for (i, mut item) in items.into_iter().enumerate() {
                    if let Value::Object(o) = &mut item {
                        gojson::fold_keys(o, pools::POOL_FIELDS);
                        if let Some(s) = o.get_mut("selectors") {
                            gojson::fold_object_or_list(s, selectors::SELECTOR_FIELDS);
                        }
                    }
                    let name = item
                        .get("resourceName")
                        .and_then(Value::as_str)
                        .map(|n| format!(" ({n})"))
                        .unwrap_or_default();
                    let pool: PoolConfig = serde_json::from_value(item)
                        .map_err(|e| bad(format!("resourceList[{i}]{name}: {e}")))?;
                    cfg.resource_list.push(pool);
                }
            }
            Some(_) => return Err(bad("resourceList must be a list of pools".into())),
        }
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
            p.validate().map_err(|m| bad(format!("{full}: {m}")))?;
        }
        cfg.node_setup.validate().map_err(bad)?;
        Ok(cfg)
    }

    pub fn load(path: &Path) -> Result<Config> {
        Config::load_with_prefix(path, None)
    }

    pub fn load_with_prefix(path: &Path, default_prefix: Option<&str>) -> Result<Config> {
        let data = std::fs::read(path).map_err(NodeError::read(path))?;
        Config::parse_with_prefix(path, &data, default_prefix)
    }

    /// Lines to log after loading: what the pools' selectors cannot do here.
    pub fn warnings(&self) -> Vec<String> {
        self.resource_list
            .iter()
            .flat_map(|p| {
                let name = p.full_name(self.resource_prefix.as_deref());
                p.warnings()
                    .into_iter()
                    .map(move |w| format!("{name}: {w}"))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests;
