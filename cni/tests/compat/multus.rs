//! What reaches the plugin when Multus (thin or thick, v4) calls it through
//! libcni (v1.x) for a pod whose network selection names the NAD:
//!
//! - `name` is the NAD's name when the config has none (Multus'
//!   `getCNIConfigFromSpec`);
//! - with a `k8s.v1.cni.cncf.io/resourceName` annotation the allocated
//!   device goes in as `deviceID` and `pciBusID` (`delegateAddDeviceID`,
//!   `addDeviceIDInConfList` for every plugin of a conflist);
//! - libcni sets `name` and `cniVersion` on the plugin's config (a missing
//!   version becomes `""`; `buildOneConfig`), and sets `runtimeConfig` to
//!   the capability arguments the config declares in `capabilities`, only
//!   when one of them has a value (`injectRuntimeConfig`): Multus offers
//!   `deviceID` and `CNIDeviceInfoFile` with a resourceName, and `mac` from
//!   the selection element;
//! - CNI_ARGS `IgnoreUnknown=true;K8S_POD_NAMESPACE=..;K8S_POD_NAME=..;
//!   K8S_POD_INFRA_CONTAINER_ID=..;K8S_POD_UID=..` (`createRuntimeConf`),
//!   and for ADD `MAC=` with the selection element's mac (`DelegateAdd`);
//! - CHECK only from cniVersion 0.4.0 on, and CHECK and DEL carry the
//!   cached ADD result as `prevResult` from 0.4.0 on (`CheckNetwork`,
//!   `DelNetwork`).

use serde_json::{json, Map, Value};

use super::case::{Case, Invocation};

/// The pod whose sandbox the plugin is called for.
#[derive(Debug, Clone)]
pub struct Pod {
    pub name: String,
    pub uid: String,
    pub container_id: String,
    pub netns: String,
}

impl Pod {
    pub fn cni_args(&self) -> String {
        format!(
            "IgnoreUnknown=true;K8S_POD_NAMESPACE=default;K8S_POD_NAME={};K8S_POD_INFRA_CONTAINER_ID={};K8S_POD_UID={}",
            self.name, self.container_id, self.uid
        )
    }

    /// ADD's CNI_ARGS: Multus adds the selection element's mac.
    pub fn add_args(&self, mac: Option<&str>) -> String {
        match mac {
            Some(m) => format!("{};MAC={m}", self.cni_args()),
            None => self.cni_args(),
        }
    }
}

/// Multus' name for the device-info file it offers as `CNIDeviceInfoFile`.
pub fn device_info_path(network: &str, pod: &Pod, ifname: &str) -> String {
    format!(
        "/var/run/k8s.cni.cncf.io/devinfo/cni/{}",
        format!("{network}-{}_{ifname}", pod.container_id).replace('/', "-")
    )
}

/// The plugin's stdin for ADD, CHECK or DEL (without `prevResult`).
pub fn netconf(
    case: &Case,
    invocation: Invocation,
    device: &str,
    pod: &Pod,
    ifname: &str,
    pod_mac: Option<&str>,
) -> Result<Vec<u8>, String> {
    let text = case.text();
    if invocation == Invocation::Direct {
        return Ok(text.into_bytes());
    }
    let mut conf: Value = serde_json::from_str(&text)
        .map_err(|e| format!("Multus cannot read this spec.config: {e}"))?;
    let obj = conf.as_object_mut().ok_or("spec.config is not an object")?;
    if obj
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or("")
        .is_empty()
    {
        obj.insert("name".into(), case.nad.name.clone().into());
    }
    let name = obj["name"].as_str().unwrap_or_default().to_string();
    let version = obj
        .get("cniVersion")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    // A conflist: the sriov plugin is the first one.
    let mut plugin: Map<String, Value> = match obj.get("plugins") {
        Some(Value::Array(list)) => list
            .first()
            .and_then(Value::as_object)
            .cloned()
            .ok_or("a conflist without plugins")?,
        Some(_) => return Err("plugins is not a list".into()),
        None => obj.clone(),
    };
    if case.nad.resource_name.is_some() {
        plugin.insert("deviceID".into(), device.into());
        plugin.insert("pciBusID".into(), device.into());
    }
    plugin.insert("name".into(), name.clone().into());
    plugin.insert("cniVersion".into(), version.into());
    let mut offered = Map::new();
    if case.nad.resource_name.is_some() {
        offered.insert("deviceID".into(), device.into());
        offered.insert(
            "CNIDeviceInfoFile".into(),
            device_info_path(&name, pod, ifname).into(),
        );
    }
    if let Some(m) = pod_mac {
        offered.insert("mac".into(), m.into());
    }
    let declared: Vec<String> = plugin
        .get("capabilities")
        .and_then(Value::as_object)
        .map(|c| {
            c.iter()
                .filter(|(_, v)| v.as_bool() == Some(true))
                .map(|(k, _)| k.clone())
                .collect()
        })
        .unwrap_or_default();
    let rc: Map<String, Value> = offered
        .into_iter()
        .filter(|(k, _)| declared.contains(k))
        .collect();
    if !rc.is_empty() {
        plugin.insert("runtimeConfig".into(), Value::Object(rc));
    }
    // The one change a user makes to switch plugins.
    if plugin.get("type") != Some(&json!("sriov")) {
        return Err(format!("the plugin is {:?}, not sriov", plugin.get("type")));
    }
    plugin.insert("type".into(), "dpdk-cni".into());
    Ok(Value::Object(plugin).to_string().into_bytes())
}

/// Whether libcni sends CHECK, and `prevResult` with CHECK and DEL.
pub fn at_least_040(version: &str) -> bool {
    let parts: Vec<u32> = version.split('.').filter_map(|p| p.parse().ok()).collect();
    parts.len() == 3 && (parts[0], parts[1]) >= (0, 4)
}

/// The netconf with `prevResult` added, as libcni sends CHECK and DEL.
pub fn with_prev_result(stdin: &[u8], prev: &Value) -> Vec<u8> {
    let mut v: Value = serde_json::from_slice(stdin).expect("a netconf built above");
    v["prevResult"] = prev.clone();
    v.to_string().into_bytes()
}

/// host-local keeps its leases in `/var/lib/cni/networks` unless told
/// otherwise: the one change made to a config for the test machine's sake.
pub fn private_ipam_dir(stdin: Vec<u8>, dir: &std::path::Path) -> Vec<u8> {
    let Ok(mut v) = serde_json::from_slice::<Value>(&stdin) else {
        return stdin;
    };
    if v["ipam"]["type"] == "host-local" && v["ipam"].get("dataDir").is_none() {
        v["ipam"]["dataDir"] = dir.display().to_string().into();
        return v.to_string().into_bytes();
    }
    stdin
}
