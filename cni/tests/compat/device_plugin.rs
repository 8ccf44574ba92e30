//! The device plugin data (`tests/compat/device-plugin/`): ConfigMap
//! `config.json` bodies with the pools the upstream SR-IOV network device
//! plugin builds from them on the node `node.json` describes.
//! `node/tests/compat_device_plugin.rs` runs dpdk-cni-node with each and
//! checks `expected`, our outcome. Here the outcome each file records for
//! upstream (`expected`, or `difference.upstream` where ours differs on
//! purpose) is checked against a model of the upstream selection (v3.11.0:
//! cmd/sriovdp/manager.go, pkg/netdevice/netDeviceProvider.go,
//! pkg/resources/deviceSelectors.go, pkg/factory/factory.go), so data bent
//! to fit our daemon, or a slip in it, shows here.

use std::collections::{BTreeMap, BTreeSet};

use serde::Deserialize;
use serde_json::{Map, Value};

use super::case::{data_dir, Source};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Device {
    pub address: String,
    pub vendor: String,
    pub device: String,
    pub class: String,
    pub driver: Option<String>,
    pub netdev: Option<String>,
    pub numa_node: i32,
    #[serde(default)]
    pub sriov_totalvfs: Option<u32>,
    #[serde(default)]
    pub sriov_numvfs: Option<u32>,
    #[serde(default)]
    pub physfn: Option<String>,
    #[serde(default)]
    pub vf_index: Option<u32>,
    #[serde(default)]
    pub default_route: bool,
    #[serde(default)]
    pub rdma: bool,
    #[serde(default)]
    pub link_type: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Node {
    pub description: String,
    pub devices: Vec<Device>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Daemon {
    #[serde(rename = "resourcePrefix")]
    pub resource_prefix: String,
    pub why: String,
}

#[derive(Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pool {
    pub resource: String,
    pub devices: Vec<String>,
}

/// `refused`: part of upstream's reason; `ours`: of dpdk-cni-node's, when
/// it words it otherwise.
#[derive(Debug, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum Loads {
    Yes(bool),
    Refused {
        refused: String,
        #[serde(default)]
        ours: Option<String>,
    },
}

#[derive(Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expected {
    pub loads: Loads,
    pub pools: Vec<Pool>,
    pub not_advertised: Vec<String>,
}

/// dpdk-cni-node's outcome (`expected`) differs from upstream's on purpose.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Difference {
    pub ours: String,
    pub why: String,
    /// Upstream's outcome.
    pub upstream: Expected,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DpCase {
    pub source: Source,
    #[serde(default)]
    pub render: Option<Value>,
    pub daemon: Daemon,
    pub node: String,
    #[serde(default)]
    pub config: Option<Value>,
    #[serde(default)]
    pub config_text: Option<String>,
    pub upstream: String,
    #[serde(default)]
    pub difference: Option<Difference>,
    pub expected: Expected,
}

/// A key of `obj`, matched as Go's encoding/json does (case-insensitively).
fn get<'a>(obj: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    obj.get(key).or_else(|| {
        obj.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v)
    })
}

fn strings(obj: &Map<String, Value>, key: &str) -> Option<Vec<String>> {
    get(obj, key)?.as_array().map(|a| {
        a.iter()
            .filter_map(Value::as_str)
            .map(str::to_string)
            .collect()
    })
}

/// `name` or `name#0,2-7`, as isSelected reads it: whether VF `idx` of a
/// PF called `pf` is taken.
fn pf_entry_selects(entry: &str, pf: &str, idx: Option<u32>) -> bool {
    let mut parts = entry.splitn(2, '#');
    if !parts.next().unwrap_or("").eq_ignore_ascii_case(pf) {
        return false;
    }
    let Some(ranges) = parts.next() else {
        return true;
    };
    let Some(idx) = idx else { return false };
    ranges.split(',').any(|r| match r.split_once('-') {
        Some((a, b)) => match (a.parse::<u32>(), b.parse::<u32>()) {
            (Ok(a), Ok(b)) => (a..=b).contains(&idx),
            _ => false,
        },
        None => r.parse::<u32>() == Ok(idx),
    })
}

/// Whether one selector object takes `d` (a candidate already).
fn selects(sel: &Map<String, Value>, d: &Device, node: &Node) -> bool {
    let pf = d
        .physfn
        .as_ref()
        .and_then(|a| node.devices.iter().find(|p| &p.address == a));
    let within = |key: &str, v: Option<&str>| match strings(sel, key) {
        Some(list) if !list.is_empty() => v.is_some_and(|v| list.iter().any(|x| x == v)),
        _ => true,
    };
    let by_pf = |key: &str, name: Option<&str>| match strings(sel, key) {
        Some(list) if !list.is_empty() => {
            name.is_some_and(|n| list.iter().any(|e| pf_entry_selects(e, n, d.vf_index)))
        }
        _ => true,
    };
    let link_type = d
        .link_type
        .clone()
        .or_else(|| pf.and_then(|p| p.link_type.clone()));
    within("vendors", Some(&d.vendor))
        && within("devices", Some(&d.device))
        && within("drivers", d.driver.as_deref())
        && within("pciAddresses", Some(&d.address))
        && by_pf("pfNames", pf.and_then(|p| p.netdev.as_deref()))
        && by_pf("rootDevices", pf.map(|p| p.address.as_str()))
        && within("linkTypes", link_type.as_deref())
        // No PF on the node has a DDP profile loaded, no VF a vDPA device.
        && within("ddpProfiles", None::<&str>)
        && get(sel, "vdpaType").and_then(Value::as_str).unwrap_or("").is_empty()
        && (!get(sel, "isRdma").and_then(Value::as_bool).unwrap_or(false) || d.rdma)
}

/// Upstream's outcome for a config: refused (why), or the pools by
/// resource name, every configured name present (empty: not advertised).
pub fn upstream_pools(
    conf: &Value,
    prefix: &str,
    node: &Node,
) -> Result<BTreeMap<String, BTreeSet<String>>, String> {
    let list = conf
        .get("resourceList")
        .and_then(Value::as_array)
        .ok_or("no resourceList")?;
    // Candidates: network functions, not a PF with VFs, not carrying the
    // default route (AddTargetDevices).
    let candidates: Vec<&Device> = node
        .devices
        .iter()
        .filter(|d| d.class.starts_with("0x02"))
        .filter(|d| !d.default_route)
        .filter(|d| !(d.sriov_totalvfs.is_some() && d.sriov_numvfs.unwrap_or(0) > 0))
        .collect();
    let mut taken = BTreeSet::new();
    let mut out = BTreeMap::new();
    for rc in list {
        let rc = rc.as_object().ok_or("a resource that is not an object")?;
        let name = get(rc, "resourceName")
            .and_then(Value::as_str)
            .unwrap_or("");
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            return Err(format!(
                "resource name {name:?} contains invalid characters"
            ));
        }
        let p = get(rc, "resourcePrefix")
            .and_then(Value::as_str)
            .unwrap_or(prefix);
        let full = format!("{p}/{name}");
        if out.contains_key(&full) {
            return Err(format!("resource name {full:?} already exists"));
        }
        match get(rc, "deviceType").and_then(Value::as_str) {
            None | Some("netDevice") => {}
            Some(t) => return Err(format!("deviceType {t:?} is outside this model")),
        }
        let sels: Vec<&Map<String, Value>> = match get(rc, "selectors") {
            Some(Value::Object(o)) => vec![o],
            Some(Value::Array(a)) if !a.is_empty() => {
                a.iter().filter_map(Value::as_object).collect()
            }
            _ => return Err(format!("{full}: need at least one selector")),
        };
        for s in &sels {
            let rdma = get(s, "isRdma").and_then(Value::as_bool).unwrap_or(false);
            let vdpa = get(s, "vdpaType").and_then(Value::as_str).unwrap_or("");
            if rdma && !vdpa.is_empty() {
                return Err("VdpaType and IsRdma are mutually exclusive options".into());
            }
        }
        let mut pool = BTreeSet::new();
        for s in sels {
            for d in &candidates {
                if !taken.contains(&d.address) && selects(s, d, node) {
                    taken.insert(d.address.clone());
                    pool.insert(d.address.clone());
                }
            }
        }
        out.insert(full, pool);
    }
    Ok(out)
}

pub fn load_node(name: &str) -> Node {
    let p = data_dir().join("device-plugin").join(name);
    let t = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    serde_json::from_str(&t).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// Every config file (all but node descriptions), sorted.
pub fn load_cases() -> Vec<(String, DpCase)> {
    let dir = data_dir().join("device-plugin");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .filter(|p| !p.file_name().unwrap().to_string_lossy().starts_with("node"))
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().to_string();
            let t = std::fs::read_to_string(&p).unwrap();
            let c: DpCase = serde_json::from_str(&t).unwrap_or_else(|e| panic!("{name}: {e}"));
            (name, c)
        })
        .collect()
}

/// What is wrong with one case, if anything.
pub fn check_case(name: &str, c: &DpCase) -> Vec<String> {
    let mut bad = Vec::new();
    let node = load_node(&c.node);
    let known: BTreeSet<&str> = node.devices.iter().map(|d| d.address.as_str()).collect();
    let conf = match (&c.config, &c.config_text) {
        (Some(v), None) => Ok(v.clone()),
        (None, Some(t)) => match serde_json::from_str::<Value>(t) {
            Ok(_) => {
                bad.push("config_text is valid JSON: give it as config".into());
                return bad;
            }
            Err(e) => Err(format!("not valid JSON: {e}")),
        },
        _ => {
            bad.push("give exactly one of config and config_text".into());
            return bad;
        }
    };
    let model = conf.and_then(|v| upstream_pools(&v, &c.daemon.resource_prefix, &node));
    let up = match &c.difference {
        None => &c.expected,
        Some(d) => {
            if d.ours.is_empty() || d.why.is_empty() {
                bad.push("a difference says what ours does and why".into());
            }
            if d.upstream == c.expected {
                bad.push("difference.upstream is the expected outcome: no difference".into());
            }
            &d.upstream
        }
    };
    for p in &c.expected.pools {
        for d in &p.devices {
            if !known.contains(d.as_str()) {
                bad.push(format!("{}: {d} is not on the node", p.resource));
            }
        }
    }
    match (&up.loads, model) {
        (Loads::Refused { refused, .. }, Err(why)) => {
            if !why.contains(refused.as_str()) {
                bad.push(format!(
                    "refused for {why:?}, which does not name {refused:?}"
                ));
            }
            if !up.pools.is_empty() || !up.not_advertised.is_empty() {
                bad.push(
                    "a refused config advertises nothing: pools and not_advertised stay empty"
                        .into(),
                );
            }
        }
        (Loads::Refused { .. }, Ok(_)) => {
            bad.push("expected refused, but upstream loads it".into())
        }
        (Loads::Yes(false), _) => bad.push("loads is true or {\"refused\": why}".into()),
        (Loads::Yes(true), Err(why)) => {
            bad.push(format!("expected to load, but upstream refuses it: {why}"))
        }
        (Loads::Yes(true), Ok(pools)) => {
            let mut want: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
            for p in &up.pools {
                let set: BTreeSet<String> = p.devices.iter().cloned().collect();
                if set.is_empty() {
                    bad.push(format!(
                        "{}: an empty pool belongs in not_advertised",
                        p.resource
                    ));
                }
                want.insert(p.resource.clone(), set);
            }
            for r in &up.not_advertised {
                want.insert(r.clone(), BTreeSet::new());
            }
            if want != pools {
                bad.push(format!(
                    "expected pools {want:?}, upstream's selection gives {pools:?}"
                ));
            }
        }
    }
    bad.extend(c.source.problems());
    if c.upstream.is_empty() || c.daemon.why.is_empty() {
        bad.push(
            "upstream and daemon.why say what upstream does and where the prefix comes from".into(),
        );
    }
    if name.starts_with("operator-") && c.render.as_ref().and_then(|r| r.get("by")).is_none() {
        bad.push("an operator render says how it was rendered (\"render\": {\"by\": ..})".into());
    }
    bad
}
