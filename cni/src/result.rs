//! The ADD result, shaped for the netconf's CNI version.

use serde_json::{json, Map, Value};

use crate::version;

/// Builds the result: one interface for the device (with `pciID` from 1.1.0
/// on), and the IPAM plugin's addresses, routes and DNS, whatever version
/// the IPAM plugin answered in.
pub fn add_result(
    cni_version: &str,
    ifname: &str,
    mac: Option<String>,
    sandbox: &str,
    pci: &str,
    ipam: Option<&Value>,
) -> Value {
    if !version::at_least(cni_version, "0.3.0") {
        return legacy_result(cni_version, ipam);
    }
    let mut iface = Map::new();
    iface.insert("name".into(), ifname.into());
    if let Some(m) = mac {
        iface.insert("mac".into(), m.into());
    }
    iface.insert("sandbox".into(), sandbox.into());
    if version::at_least(cni_version, "1.1.0") {
        iface.insert("pciID".into(), pci.into());
    }
    let mut out = json!({ "cniVersion": cni_version, "interfaces": [Value::Object(iface)] });
    let Some(ipam) = ipam else {
        out["dns"] = json!({});
        return out;
    };
    let old_style = !version::at_least(cni_version, "1.0.0");
    let ips: Vec<Value> = ipam
        .get("ips")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .map(|mut ip| {
            if let Some(o) = ip.as_object_mut() {
                o.insert("interface".into(), 0.into());
                if old_style {
                    let v6 = o
                        .get("address")
                        .and_then(Value::as_str)
                        .is_some_and(|a| a.contains(':'));
                    o.insert("version".into(), if v6 { "6" } else { "4" }.into());
                } else {
                    o.remove("version");
                }
            }
            ip
        })
        .collect();
    out["ips"] = ips.into();
    if let Some(r) = ipam.get("routes") {
        out["routes"] = r.clone();
    }
    out["dns"] = ipam.get("dns").cloned().unwrap_or_else(|| json!({}));
    out
}

/// The 0.1.0/0.2.0 shape: no interfaces, an `ip4` and an `ip6` block each
/// with the first address of its family, its gateway and the routes.
fn legacy_result(cni_version: &str, ipam: Option<&Value>) -> Value {
    let mut out = json!({ "cniVersion": cni_version, "dns": {} });
    let Some(ipam) = ipam else {
        return out;
    };
    // An IPAM plugin may have answered in either shape.
    for (key, v6) in [("ip4", false), ("ip6", true)] {
        if let Some(block) = ipam.get(key) {
            out[key] = block.clone();
            continue;
        }
        let is_v6 = |s: &str| s.contains(':');
        let first = ipam
            .get("ips")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .find(|ip| {
                ip.get("address")
                    .and_then(Value::as_str)
                    .is_some_and(|a| is_v6(a) == v6)
            });
        if let Some(ip) = first {
            let mut block = json!({ "ip": ip["address"] });
            if let Some(g) = ip.get("gateway") {
                block["gateway"] = g.clone();
            }
            let routes: Vec<Value> = ipam
                .get("routes")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter(|r| {
                    r.get("dst")
                        .and_then(Value::as_str)
                        .is_some_and(|d| is_v6(d) == v6)
                })
                .cloned()
                .collect();
            if !routes.is_empty() {
                block["routes"] = routes.into();
            }
            out[key] = block;
        }
    }
    if let Some(d) = ipam.get("dns") {
        out["dns"] = d.clone();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_per_version() {
        let ipam = json!({"cniVersion":"1.0.0","ips":[{"address":"10.1.0.5/24","gateway":"10.1.0.1"}],"routes":[{"dst":"0.0.0.0/0"}]});
        let new = add_result(
            "1.1.0",
            "net1",
            Some("02:00:00:00:00:01".into()),
            "/run/netns/p",
            "0000:01:10.0",
            Some(&ipam),
        );
        assert_eq!(new["interfaces"][0]["pciID"], "0000:01:10.0");
        assert_eq!(new["ips"][0]["interface"], 0);
        assert!(new["ips"][0].get("version").is_none());
        let old = add_result(
            "0.3.1",
            "net1",
            None,
            "/run/netns/p",
            "0000:01:10.0",
            Some(&ipam),
        );
        assert!(old["interfaces"][0].get("pciID").is_none());
        assert_eq!(old["ips"][0]["version"], "4");
        assert_eq!(old["routes"][0]["dst"], "0.0.0.0/0");
        let oldest = add_result(
            "0.2.0",
            "net1",
            None,
            "/run/netns/p",
            "0000:01:10.0",
            Some(&ipam),
        );
        assert!(oldest.get("interfaces").is_none());
        assert_eq!(oldest["ip4"]["ip"], "10.1.0.5/24");
        assert_eq!(oldest["ip4"]["gateway"], "10.1.0.1");
        assert_eq!(oldest["ip4"]["routes"][0]["dst"], "0.0.0.0/0");
        assert!(oldest.get("ip6").is_none());
    }
}
