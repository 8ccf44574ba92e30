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
//! Fields the upstream plugin has and we do not use (`deviceType`,
//! `linkTypes`, `needVhostNet`) are accepted so its ConfigMap loads as is.

mod pools;
mod setup;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::error::{NodeError, Result};

pub use pools::{
    parse_page_size, valid_resource_name, Hugepages, PfName, PoolConfig, Selectors, DEFAULT_PREFIX,
};
pub use setup::{NodeSetup, PfSetup, VfSetup};

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
            p.validate().map_err(|m| bad(format!("{full}: {m}")))?;
        }
        cfg.node_setup.validate().map_err(bad)?;
        Ok(cfg)
    }

    pub fn load(path: &Path) -> Result<Config> {
        let data = std::fs::read(path).map_err(NodeError::read(path))?;
        Config::parse(path, &data)
    }
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
            container_path: PathBuf::from("/dev/hugepages"),
            pages_per_device: None,
            mount: true,
        };
        assert_eq!(h.host_path(), PathBuf::from("/dev/hugepages-1Gi"));
        assert_eq!(h.pages_per_device(), 1);
    }
}
