//! The SR-IOV device plugin's environment: `PCIDEVICE_<PREFIX>_<RESOURCE>` =
//! comma-separated PCI addresses, and `PCIDEVICE_<..>_INFO` = JSON
//! `{"<bdf>":{"generic":{...},"vfio":{...}}}` (`uio`, `rdma`, `vhost`,
//! `extra` where they apply; a `numa-node` is read when present). An address
//! whose entry has a `vfio` or `uio` key, or that has no entry, is claimed as
//! a PCI device EAL drives; one whose entry has neither (a VF left on its
//! kernel driver) states nothing. Sysfs has the last word either way (see
//! [`crate::resolve`]).

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
            let entry = info.as_ref().and_then(|i| i.get(text));
            let stated = match entry {
                Some(e) if e.get("vfio").is_none() && e.get("uio").is_none() => None,
                _ => Some(DeviceKind::Vfio { pci }),
            };
            let rdma_device = entry
                .and_then(|e| e.pointer("/rdma/rdma_dev"))
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                .map(str::to_string);
            let numa_node = match entry.and_then(|d| d.get("numa-node")) {
                Some(v) => parse_numa_node(&format!("{info_var}[{text}]"), v)?,
                None => None,
            };
            devices.push(DeviceClaim {
                origin: var.clone(),
                pci: Some(pci),
                stated,
                numa_node,
                rdma_device,
            });
        }
    }
    Ok(devices)
}
