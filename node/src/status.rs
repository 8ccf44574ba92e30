//! `dpdk-cni-node status`: the node's PFs and VFs as a table, with the pool
//! each device is in and the pod (CNI attachment) that holds it.

use std::collections::{BTreeMap, BTreeSet};

use ledger::Claim;
use vfio::Sysfs;

use crate::config::Config;
use crate::error::Result;
use crate::pool;

fn opt<T: ToString>(v: Option<T>) -> String {
    v.map(|v| v.to_string()).unwrap_or_else(|| "-".into())
}

/// The table, one line per PF and VF.
pub fn render(sysfs: &Sysfs, cfg: Option<&Config>, claims: &[(String, Claim)]) -> Result<String> {
    let claimed: BTreeSet<String> = claims.iter().map(|(a, _)| a.clone()).collect();
    let holder: BTreeMap<&str, &Claim> = claims.iter().map(|(a, c)| (a.as_str(), c)).collect();
    let mut pool_of: BTreeMap<String, String> = BTreeMap::new();
    if let Some(cfg) = cfg {
        for p in pool::discover(sysfs, cfg, |a| claimed.contains(&a.to_string()))? {
            for d in &p.devices {
                pool_of.insert(d.addr.to_string(), p.resource.clone());
            }
        }
    }
    let mut rows = vec![[
        "DEVICE", "PF", "VF", "NETDEV", "DRIVER", "NUMA", "GROUP", "POOL", "HELD BY",
    ]
    .map(String::from)];
    let mut vf_count = 0;
    let mut free = 0;
    for addr in sysfs.devices()? {
        let Ok(pf) = sysfs.device(addr) else { continue };
        let Some(total) = pf.sriov_totalvfs()? else {
            continue;
        };
        let numvfs = pf.sriov_numvfs()?.unwrap_or(0);
        let row = |a: &str, pfc: String, vf: String, d: &vfio::PciDevice| -> Result<[String; 9]> {
            Ok([
                a.to_string(),
                pfc,
                vf,
                d.net_names()?.join(","),
                opt(d.driver()?),
                opt(d.numa_node()?),
                opt(d.iommu_group()?),
                pool_of.get(a).cloned().unwrap_or_else(|| "-".into()),
                holder
                    .get(a)
                    .map(|c| format!("{} {}/{}", c.network, short(&c.container_id), c.ifname))
                    .unwrap_or_else(|| "-".into()),
            ])
        };
        rows.push(row(
            &addr.to_string(),
            "PF".into(),
            format!("{numvfs}/{total}"),
            &pf,
        )?);
        for (i, vf) in pf.virtfns()? {
            let Ok(d) = sysfs.device(vf) else { continue };
            let a = vf.to_string();
            vf_count += 1;
            if pool_of.contains_key(&a) && !holder.contains_key(a.as_str()) {
                free += 1;
            }
            rows.push(row(&a, addr.to_string(), i.to_string(), &d)?);
        }
    }
    let mut widths = [0usize; 9];
    for r in &rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut out = String::new();
    for r in &rows {
        let line: Vec<String> = r
            .iter()
            .zip(widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    out.push_str(&format!(
        "{vf_count} VFs, {} held by pods, {free} free in pools\n",
        claims.len()
    ));
    Ok(out)
}

/// The first 12 characters of a container ID, as container tools show it.
fn short(id: &str) -> &str {
    id.get(..12).unwrap_or(id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use vfio::fake::FakeNode;

    #[test]
    fn table_shows_pool_and_holder() {
        let tmp = tempfile::tempdir().unwrap();
        let node = FakeNode::new(tmp.path()).unwrap();
        node.add_pf("0000:01:00.0".parse().unwrap(), "ens1f0", 2, 8, 1, 10)
            .unwrap();
        let cfg = Config::parse(
            std::path::Path::new("t"),
            br#"{"resourceList": [{"resourceName": "vf", "selectors": {"pfNames": ["ens1f0"]}}]}"#,
        )
        .unwrap();
        let claims = vec![(
            "0000:01:10.2".to_string(),
            Claim {
                network: "dpdk-net".into(),
                container_id: "0123456789abcdef".into(),
                ifname: "net1".into(),
            },
        )];
        let t = render(&Sysfs::new(node.root()), Some(&cfg), &claims).unwrap();
        let lines: Vec<&str> = t.lines().collect();
        assert!(lines[0].starts_with("DEVICE"), "{t}");
        assert!(
            lines[1].contains("0000:01:00.0  PF") && lines[1].contains("2/8"),
            "{t}"
        );
        assert!(
            lines[2].contains("ens1f0v0") && lines[2].contains("intel.com/vf"),
            "{t}"
        );
        assert!(lines[3].contains("dpdk-net 0123456789ab/net1"), "{t}");
        assert!(lines[3].contains("  1  "), "NUMA column: {t}");
        assert_eq!(lines[4], "2 VFs, 1 held by pods, 1 free in pools");
    }
}
