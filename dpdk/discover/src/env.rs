//! The SR-IOV device plugin's environment: `PCIDEVICE_<PREFIX>_<RESOURCE>` =
//! comma-separated PCI addresses, and `PCIDEVICE_<..>_INFO` = JSON
//! `{"<bdf>":{"generic":{...},"vfio":{...},"numa-node":N}}` (`numa-node` is
//! added by our node daemon; the upstream plugin has none). Each address is
//! claimed as a PCI device; sysfs has the last word (see [`crate::resolve`]).

use serde_json::Value;

use crate::devinfo::{parse_numa_node, parse_pci};
use crate::error::{DiscoverError, Result};
use crate::resolve::DeviceClaim;
use crate::DeviceKind;

const PREFIX: &str = "PCIDEVICE_";
const INFO_SUFFIX: &str = "_INFO";

/// The devices named by device plugin variables in `env`, in variable name
/// order.
pub fn devices_from_env(env: &[(String, String)]) -> Result<Vec<DeviceClaim>> {
    let mut vars: Vec<&(String, String)> = env
        .iter()
        .filter(|(k, _)| k.starts_with(PREFIX) && !k.ends_with(INFO_SUFFIX))
        .collect();
    vars.sort();
    let mut devices = Vec::new();
    for (var, value) in vars {
        let info_var = format!("{var}{INFO_SUFFIX}");
        let info = match env.iter().find(|(k, _)| *k == info_var) {
            Some((_, json)) => Some(serde_json::from_str::<Value>(json).map_err(|source| {
                DiscoverError::DevicePluginInfoJson {
                    var: info_var.clone(),
                    source,
                }
            })?),
            None => None,
        };
        for text in value.split(',').map(str::trim).filter(|t| !t.is_empty()) {
            let pci = parse_pci(var, text)?;
            let numa_node = match info
                .as_ref()
                .and_then(|i| i.get(text))
                .and_then(|d| d.get("numa-node"))
            {
                Some(v) => parse_numa_node(&format!("{info_var}[{text}]"), v)?,
                None => None,
            };
            devices.push(DeviceClaim {
                origin: var.clone(),
                pci: Some(pci),
                stated: Some(DeviceKind::Vfio { pci }),
                numa_node,
                rdma_device: None,
            });
        }
    }
    Ok(devices)
}
