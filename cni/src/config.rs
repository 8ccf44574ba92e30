//! The network configuration on stdin, checked in full before anything on
//! the node is touched.
//!
//! Field names follow sriov-cni (`deviceID`, `vlan`, `vlanQoS`, `vlanProto`,
//! `mac`, `spoofchk`, `trust`, `link_state`, `min_tx_rate`, `max_tx_rate`)
//! and its older forks (`master`, `vf`, `pfOnly`, CNI_ARGS `VF=`/`MAC=`), so
//! a NetworkAttachmentDefinition can switch `"type"` and keep working.

use std::path::PathBuf;

use crate::error::{code, CniError, Result};
use crate::node::Node;
use crate::paths;
use crate::version;
use serde::Deserialize;
use serde_json::Value;

/// Names of the ledger's own directories, which no network may take.
pub const RESERVED_NETWORK_NAMES: &[&str] = &["devices", "locks", "prebound", "quarantine"];

/// The netconf as it arrives; every field optional so each gets its own message.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RawConf {
    pub cni_version: Option<String>,
    pub name: Option<String>,
    #[serde(rename = "type")]
    pub plugin_type: Option<String>,
    pub device_type: Option<String>,
    #[serde(rename = "deviceID")]
    pub device_id: Option<String>,
    #[serde(rename = "pciBusID")]
    pub pci_bus_id: Option<String>,
    pub master: Option<String>,
    pub vf: Option<u32>,
    pub pf_only: Option<bool>,
    pub vlan: Option<u32>,
    #[serde(rename = "vlanQoS")]
    pub vlan_qos: Option<u32>,
    pub vlan_proto: Option<String>,
    pub mac: Option<String>,
    pub spoofchk: Option<String>,
    pub trust: Option<String>,
    #[serde(rename = "link_state")]
    pub link_state: Option<String>,
    #[serde(rename = "min_tx_rate")]
    pub min_tx_rate: Option<u32>,
    #[serde(rename = "max_tx_rate")]
    pub max_tx_rate: Option<u32>,
    pub ipam: Option<Value>,
    pub log_level: Option<String>,
    pub log_file: Option<String>,
    pub state_dir: Option<String>,
    pub runtime_config: Option<RuntimeConfig>,
    pub prev_result: Option<Value>,
    pub fallback: Option<String>,
    pub mtu: Option<u32>,
    pub allowed_devices: Option<Vec<String>>,
    pub mode: Option<String>,
    /// The fields a pod's annotations may override: `vlan`, `max_tx_rate`.
    pub pod_overrides: Option<Vec<String>>,
    #[serde(rename = "cni.dev/valid-attachments")]
    pub valid_attachments: Option<Vec<ValidAttachment>>,
}

/// `runtimeConfig`: what the runtime fills in for declared capabilities.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct RuntimeConfig {
    pub mac: Option<String>,
    #[serde(rename = "deviceID")]
    pub device_id: Option<String>,
    #[serde(rename = "CNIDeviceInfoFile")]
    pub device_info_file: Option<String>,
    /// The pod's annotations (CRI capability `io.kubernetes.cri.pod-annotations`).
    #[serde(rename = "io.kubernetes.cri.pod-annotations")]
    pub pod_annotations: Option<std::collections::BTreeMap<String, String>>,
}

/// An entry of `cni.dev/valid-attachments` (GC).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ValidAttachment {
    #[serde(rename = "containerID")]
    pub container_id: String,
    pub ifname: String,
}

/// Log verbosity (`logLevel`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum LogLevel {
    Panic,
    Error,
    Warning,
    Info,
    Debug,
}

/// The fields every command needs.
#[derive(Debug, Clone)]
pub struct Base {
    pub cni_version: String,
    pub name: String,
    pub state_dir: PathBuf,
    pub ipam: Option<Value>,
    pub log_level: LogLevel,
    pub log_file: Option<PathBuf>,
    /// What DEL let pass that another command refuses, for the log.
    pub warnings: Vec<String>,
}

/// Parses stdin: bad JSON is a decode failure (6), a field of the wrong type
/// an invalid netconf (7).
pub fn parse_raw(stdin: &[u8]) -> Result<(RawConf, Value)> {
    let value: Value = serde_json::from_slice(stdin).map_err(|e| {
        CniError::new(
            code::DECODE,
            format!("netconf on stdin is not valid JSON: {e}"),
        )
    })?;
    if !value.is_object() {
        return Err(CniError::new(
            code::DECODE,
            "netconf on stdin must be a JSON object",
        ));
    }
    let mut value = value;
    fold_keys(&mut value, FIELDS);
    if let Some(rc) = value.get_mut("runtimeConfig") {
        fold_keys(rc, RUNTIME_CONFIG_FIELDS);
    }
    let raw: RawConf = serde_json::from_value(value.clone())
        .map_err(|e| CniError::netconf(format!("invalid netconf: {e}")))?;
    Ok((raw, value))
}

/// The netconf's field names, as [`RawConf`] spells them.
pub const FIELDS: &[&str] = &[
    "cniVersion",
    "name",
    "type",
    "deviceType",
    "deviceID",
    "pciBusID",
    "master",
    "vf",
    "pfOnly",
    "vlan",
    "vlanQoS",
    "vlanProto",
    "mac",
    "spoofchk",
    "trust",
    "link_state",
    "min_tx_rate",
    "max_tx_rate",
    "ipam",
    "logLevel",
    "logFile",
    "stateDir",
    "runtimeConfig",
    "prevResult",
    "fallback",
    "mtu",
    "allowedDevices",
    "mode",
    "podOverrides",
];
const RUNTIME_CONFIG_FIELDS: &[&str] = &["mac", "deviceID", "CNIDeviceInfoFile"];

/// Renames keys that match a field name but for case (`MAC`, `Mtu`,
/// `VlanQoS`) to the field's spelling, as sriov-cni's Go decoding accepts
/// them; a key spelled exactly wins over one that differs in case.
fn fold_keys(v: &mut Value, fields: &[&str]) {
    let Some(obj) = v.as_object_mut() else {
        return;
    };
    let inexact: Vec<(String, &str)> = obj
        .keys()
        .filter(|k| !fields.contains(&k.as_str()))
        .filter_map(|k| {
            fields
                .iter()
                .find(|f| f.eq_ignore_ascii_case(k))
                .map(|f| (k.clone(), *f))
        })
        .collect();
    for (k, f) in inexact {
        if let Some(val) = obj.remove(&k) {
            if !obj.contains_key(f) {
                obj.insert(f.to_string(), val);
            }
        }
    }
}

/// A CNI network name: letters, digits, `_`, `.`, `-`, starting alphanumeric.
fn valid_network_name(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b[0].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'))
}

/// Checks what every command needs: version, name, state dir, logging.
/// `strict` for every command but DEL, which proceeds past a refused
/// `stateDir` or `logFile` (noting why in `warnings`, logged to stderr).
pub fn base(raw: &RawConf, node: &Node, strict: bool) -> Result<Base> {
    let mut warnings = Vec::new();
    // A netconf without cniVersion (or the empty one libcni passes for it)
    // is 0.1.0, as libcni and the Go skeleton read it.
    let cni_version = raw
        .cni_version
        .clone()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| version::IMPLICIT.to_string());
    if !version::is_supported(&cni_version) {
        return Err(CniError::new(
            code::INCOMPATIBLE_VERSION,
            format!(
                "CNI version {cni_version:?} is not supported: use one of {}",
                version::SUPPORTED.join(", ")
            ),
        ));
    }
    let name = raw
        .name
        .clone()
        .ok_or_else(|| CniError::netconf("name is missing from the netconf"))?;
    if !valid_network_name(&name) {
        return Err(CniError::netconf(format!(
            "invalid network name {name:?}: use letters, digits, '_', '.' and '-', starting with a letter or digit"
        )));
    }
    if name == ledger::DRA_NETWORK && !node.dra {
        return Err(CniError::netconf(format!(
            "network name {name:?} is reserved for devices prepared for ResourceClaims by dpdk-cni-node: pick another name"
        )));
    }
    if RESERVED_NETWORK_NAMES.contains(&name.as_str()) {
        return Err(CniError::netconf(format!(
            "network name {name:?} is reserved for the plugin's state directory: pick another name"
        )));
    }
    if let Some(d) = &raw.state_dir {
        let msg = format!(
            "stateDir {d:?} is refused: the state directory is a node setting (stateDir in /{}), one per node, not a netconf field",
            ledger::settings::SETTINGS_FILE
        );
        if strict {
            return Err(CniError::netconf(format!("{msg}: remove it")));
        }
        warnings.push(format!(
            "{msg}; using {}",
            node.node_path(&node.settings.state_dir).display()
        ));
    }
    let log_level = match raw
        .log_level
        .as_deref()
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        None | Some("info") => LogLevel::Info,
        Some("panic") => LogLevel::Panic,
        Some("error") => LogLevel::Error,
        Some("warning") | Some("warn") => LogLevel::Warning,
        Some("debug") => LogLevel::Debug,
        Some(o) => {
            return Err(CniError::netconf(format!(
                "invalid logLevel {o:?}: use panic, error, warning, info or debug"
            )))
        }
    };
    let log_file = match &raw.log_file {
        Some(f) => match paths::confine(&node.root, f, &node.settings.log_dirs) {
            Ok(p) => Some(p),
            Err(why) => {
                let msg = format!(
                    "logFile {f:?} is refused: {why} (logDirs in /{} lists where logs may go)",
                    ledger::settings::SETTINGS_FILE
                );
                if strict {
                    return Err(CniError::netconf(msg));
                }
                warnings.push(msg);
                None
            }
        },
        None => None,
    };
    // `"ipam": {}` is no IPAM, as the SR-IOV network operator renders it.
    let ipam = raw
        .ipam
        .clone()
        .filter(|i| !i.as_object().is_some_and(|o| o.is_empty()));
    if let Some(ipam) = &ipam {
        ipam_type(ipam)?;
    }
    Ok(Base {
        cni_version,
        name,
        state_dir: node.settings.state_dir.clone(),
        ipam,
        log_level,
        log_file,
        warnings,
    })
}

/// The plugin named by `ipam.type`, which must be a plain file name.
pub fn ipam_type(ipam: &Value) -> Result<&str> {
    let t = ipam.get("type").and_then(Value::as_str).ok_or_else(|| {
        CniError::netconf("ipam has no \"type\": name the IPAM plugin, e.g. host-local")
    })?;
    if t.is_empty() || t.contains('/') || t == "." || t == ".." {
        return Err(CniError::netconf(format!(
            "invalid ipam type {t:?}: it must be a plugin name found in CNI_PATH"
        )));
    }
    Ok(t)
}
