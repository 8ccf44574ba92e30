//! What a ResourceClaim asks of this driver: the devices the scheduler
//! allocated (`status.allocation.devices.results`) and the opaque
//! configuration of our API group that applies to each
//! (`status.allocation.devices.config`, from the DeviceClass first, then the
//! claim, the later winning).
//!
//! A claim is tenant input: whoever may create pods in a namespace may
//! write one. The configuration is read into a closed type (unknown fields
//! refused) and only the VF admin settings in it reach the plugin's
//! netconf; the device comes from the allocation, never from the config.

use serde::Deserialize;
use serde_json::{Map, Value};
use vfio::PciAddress;

use crate::dra::slice::parse_device_name;
use crate::error::{NodeError, Result};

/// The API group and version of the opaque configuration.
pub const CONFIG_API_VERSION: &str = "dpdk-cni.io/v1alpha1";
/// Its kind.
pub const CONFIG_KIND: &str = "VfConfig";

/// How a device is handed to the pod.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
pub enum HandOver {
    /// Bound to vfio-pci at Prepare; the pod gets its group through CDI.
    #[default]
    #[serde(rename = "vfio-pci")]
    VfioPci,
    /// Left on its kernel driver for the CNI plugin to move into the pod.
    #[serde(rename = "netdevice")]
    Netdevice,
}

/// The opaque configuration: the driver, and the VF admin settings under
/// the netconf's names (sriov-cni's).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VfConfig {
    #[serde(rename = "apiVersion")]
    pub api_version: String,
    pub kind: String,
    #[serde(default)]
    pub driver: Option<HandOver>,
    #[serde(default)]
    pub vlan: Option<Value>,
    #[serde(default, rename = "vlanQoS")]
    pub vlan_qos: Option<Value>,
    #[serde(default, rename = "vlanProto")]
    pub vlan_proto: Option<Value>,
    #[serde(default)]
    pub mac: Option<Value>,
    #[serde(default)]
    pub spoofchk: Option<Value>,
    #[serde(default)]
    pub trust: Option<Value>,
    #[serde(default)]
    pub link_state: Option<Value>,
    #[serde(default)]
    pub min_tx_rate: Option<Value>,
    #[serde(default)]
    pub max_tx_rate: Option<Value>,
}

impl VfConfig {
    /// `other`'s fields over these.
    fn overlay(&mut self, other: VfConfig) {
        macro_rules! take {
            ($($f:ident),*) => { $( if other.$f.is_some() { self.$f = other.$f; } )* };
        }
        take!(
            driver,
            vlan,
            vlan_qos,
            vlan_proto,
            mac,
            spoofchk,
            trust,
            link_state,
            min_tx_rate,
            max_tx_rate
        );
    }

    pub fn hand_over(&self) -> HandOver {
        self.driver.unwrap_or_default()
    }

    /// The VF settings as netconf fields.
    pub fn netconf_fields(&self) -> Map<String, Value> {
        let mut m = Map::new();
        for (k, v) in [
            ("vlan", &self.vlan),
            ("vlanQoS", &self.vlan_qos),
            ("vlanProto", &self.vlan_proto),
            ("mac", &self.mac),
            ("spoofchk", &self.spoofchk),
            ("trust", &self.trust),
            ("link_state", &self.link_state),
            ("min_tx_rate", &self.min_tx_rate),
            ("max_tx_rate", &self.max_tx_rate),
        ] {
            if let Some(v) = v {
                m.insert(k.into(), v.clone());
            }
        }
        m
    }
}

/// The UIDs of the pods the claim is reserved for (`status.reservedFor`).
pub fn reserved_pods(claim: &Value) -> Vec<String> {
    claim
        .pointer("/status/reservedFor")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|r| r.get("resource").and_then(Value::as_str) == Some("pods"))
        .filter_map(|r| r.get("uid").and_then(Value::as_str))
        .map(str::to_string)
        .collect()
}

/// One device allocated to the claim by this driver.
#[derive(Debug, Clone, PartialEq)]
pub struct Allocated {
    pub request: String,
    pub pool: String,
    pub device: String,
    pub addr: PciAddress,
    pub config: VfConfig,
}

fn bad(claim: &str, msg: impl std::fmt::Display) -> NodeError {
    NodeError::Claim(format!("ResourceClaim {claim}: {msg}"))
}

/// Whether a config entry's `requests` covers `request` (none: every
/// request; `req/sub` entries of a subrequest match too).
fn covers(requests: Option<&Value>, request: &str) -> bool {
    match requests.and_then(Value::as_array) {
        None => true,
        Some(list) if list.is_empty() => true,
        Some(list) => list
            .iter()
            .filter_map(Value::as_str)
            .any(|r| r == request || request.split('/').next() == Some(r)),
    }
}

/// The devices `driver` was allocated in `claim` (the object as the API
/// server returns it), each with its configuration. `id` names the claim
/// in messages (`namespace/name`).
pub fn allocated(claim: &Value, driver: &str, id: &str) -> Result<Vec<Allocated>> {
    let alloc = claim.pointer("/status/allocation/devices").ok_or_else(|| {
        bad(
            id,
            "it has no allocation yet: the scheduler allocates it before the pod starts",
        )
    })?;
    let empty = Vec::new();
    let configs = alloc
        .get("config")
        .and_then(Value::as_array)
        .unwrap_or(&empty);
    // Ours, in order: the class's first, then the claim's (the API server
    // orders them so).
    let mut ours = Vec::new();
    for c in configs {
        let Some(op) = c.get("opaque") else { continue };
        if op.get("driver").and_then(Value::as_str) != Some(driver) {
            continue;
        }
        let params = op.get("parameters").cloned().unwrap_or(Value::Null);
        let cfg: VfConfig = serde_json::from_value(params).map_err(|e| {
            bad(
                id,
                format!(
                    "its {driver} configuration is not a {CONFIG_API_VERSION} {CONFIG_KIND}: {e} (fields: driver, vlan, vlanQoS, vlanProto, mac, spoofchk, trust, link_state, min_tx_rate, max_tx_rate)"
                ),
            )
        })?;
        if cfg.api_version != CONFIG_API_VERSION || cfg.kind != CONFIG_KIND {
            return Err(bad(
                id,
                format!(
                    "its {driver} configuration is apiVersion {:?} kind {:?}: use apiVersion {CONFIG_API_VERSION:?}, kind {CONFIG_KIND:?}",
                    cfg.api_version, cfg.kind
                ),
            ));
        }
        ours.push((c.get("requests").cloned(), cfg));
    }
    let mut out = Vec::new();
    for r in alloc
        .get("results")
        .and_then(Value::as_array)
        .unwrap_or(&empty)
    {
        if r.get("driver").and_then(Value::as_str) != Some(driver) {
            continue;
        }
        let field = |k: &str| -> Result<String> {
            r.get(k)
                .and_then(Value::as_str)
                .map(str::to_string)
                .ok_or_else(|| bad(id, format!("an allocation result has no {k}")))
        };
        let (request, pool, device) = (field("request")?, field("pool")?, field("device")?);
        let addr = parse_device_name(&device).ok_or_else(|| {
            bad(
                id,
                format!("device {device:?} is not one this driver publishes"),
            )
        })?;
        let mut config = VfConfig::default();
        for (reqs, c) in &ours {
            if covers(reqs.as_ref(), &request) {
                config.overlay(c.clone());
            }
        }
        out.push(Allocated {
            request,
            pool,
            device,
            addr,
            config,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const D: &str = "vf.dpdk-cni.io";

    fn claim(configs: Value) -> Value {
        json!({"metadata": {"name": "c", "namespace": "ns", "uid": "u1"},
               "status": {"allocation": {"devices": {
                   "results": [
                       {"request": "vf", "driver": D, "pool": "node1", "device": "pci-0000-03-10-0"},
                       {"request": "gpu", "driver": "gpu.example.com", "pool": "p", "device": "g0"},
                       {"request": "data", "driver": D, "pool": "node1", "device": "pci-0000-03-10-2"}
                   ],
                   "config": configs}}}})
    }

    fn vf(params: Value) -> Value {
        let mut p = json!({"apiVersion": CONFIG_API_VERSION, "kind": CONFIG_KIND});
        p.as_object_mut()
            .unwrap()
            .extend(params.as_object().unwrap().clone());
        p
    }

    #[test]
    fn only_this_drivers_results_with_the_configs_that_cover_them() {
        let c = claim(json!([
            {"source": "FromClass", "opaque": {"driver": D, "parameters": vf(json!({"spoofchk": "off", "vlan": 5}))}},
            {"source": "FromClaim", "requests": ["data"], "opaque": {"driver": D, "parameters": vf(json!({"vlan": 100, "trust": "on"}))}},
            {"source": "FromClaim", "opaque": {"driver": "gpu.example.com", "parameters": {"anything": 1}}}
        ]));
        let a = allocated(&c, D, "ns/c").unwrap();
        assert_eq!(a.len(), 2);
        assert_eq!(a[0].addr.to_string(), "0000:03:10.0");
        assert_eq!(a[0].request, "vf");
        assert_eq!(
            Value::Object(a[0].config.netconf_fields()),
            json!({"vlan": 5, "spoofchk": "off"})
        );
        assert_eq!(
            Value::Object(a[1].config.netconf_fields()),
            json!({"vlan": 100, "spoofchk": "off", "trust": "on"})
        );
        assert_eq!(a[1].config.hand_over(), HandOver::VfioPci);
    }

    #[test]
    fn a_config_with_an_unknown_field_or_kind_is_refused_by_name() {
        let c = claim(
            json!([{"opaque": {"driver": D, "parameters": vf(json!({"deviceID": "0000:00:1f.0"}))}}]),
        );
        let e = allocated(&c, D, "ns/c").unwrap_err().to_string();
        assert!(e.contains("ns/c") && e.contains("deviceID"), "{e}");
        let c = claim(
            json!([{"opaque": {"driver": D, "parameters": {"apiVersion": "v1", "kind": "VfConfig"}}}]),
        );
        let e = allocated(&c, D, "ns/c").unwrap_err().to_string();
        assert!(e.contains("dpdk-cni.io/v1alpha1"), "{e}");
        let c = claim(
            json!([{"opaque": {"driver": D, "parameters": vf(json!({"driver": "igb_uio"}))}}]),
        );
        assert!(allocated(&c, D, "ns/c").is_err());
    }

    #[test]
    fn an_unallocated_claim_or_a_foreign_device_name_is_refused() {
        let e = allocated(&json!({"status": {}}), D, "ns/c")
            .unwrap_err()
            .to_string();
        assert!(e.contains("no allocation"), "{e}");
        let mut c = claim(json!([]));
        c["status"]["allocation"]["devices"]["results"][0]["device"] = json!("../../etc");
        let e = allocated(&c, D, "ns/c").unwrap_err().to_string();
        assert!(e.contains("not one this driver publishes"), "{e}");
    }
}
