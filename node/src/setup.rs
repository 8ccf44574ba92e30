//! Node setup from the config: how many VFs each PF has (`sriov_numvfs`),
//! and per-VF MAC and spoofchk through the PF (`ip link set <pf> vf N mac M
//! spoofchk off`, as seed 003 does by hand). Applied at start and on every
//! reload; only what differs is changed, so applying twice changes nothing.

use std::collections::BTreeSet;

use netlink::{MacAddr, VfAttr, VfNetlink};
use vfio::{PciAddress, Sysfs};

use crate::config::{NodeSetup, PfSetup};
use crate::error::NodeError;

fn setup_err(pf: &str, msg: impl std::fmt::Display) -> NodeError {
    NodeError::Setup {
        pf: pf.to_string(),
        msg: msg.to_string(),
    }
}

/// The PF's address and netdev name.
fn resolve(sysfs: &Sysfs, pf: &PfSetup) -> Result<(PciAddress, String), NodeError> {
    let label = pf
        .pf_name
        .clone()
        .or_else(|| pf.pci_address.clone())
        .unwrap_or_default();
    let addr = match (&pf.pf_name, &pf.pci_address) {
        (Some(name), _) => sysfs.device_of_netdev(name)?,
        (None, Some(a)) => a.parse()?,
        (None, None) => return Err(setup_err(&label, "no pfName or pciAddress")),
    };
    let name = match &pf.pf_name {
        Some(n) => n.clone(),
        None => sysfs
            .device(addr)?
            .net_names()?
            .into_iter()
            .next()
            .ok_or_else(|| setup_err(&label, format!("{addr} has no network interface")))?,
    };
    Ok((addr, name))
}

/// Writes `sriov_numvfs` when it differs. The kernel only changes a
/// non-zero count through 0, which destroys every VF: refused while a pod
/// holds one of them.
fn set_numvfs(
    sysfs: &Sysfs,
    addr: PciAddress,
    name: &str,
    want: u32,
    claimed: &BTreeSet<String>,
) -> Result<bool, NodeError> {
    let dev = sysfs.device(addr)?;
    let Some(now) = dev.sriov_numvfs()? else {
        return Err(setup_err(name, format!("{addr} has no SR-IOV capability")));
    };
    if now == want {
        return Ok(false);
    }
    let total = dev.sriov_totalvfs()?.unwrap_or(0);
    if want > total {
        return Err(setup_err(
            name,
            format!("numVfs {want} is more than sriov_totalvfs {total}"),
        ));
    }
    if now > 0 {
        let held: Vec<String> = dev
            .virtfns()?
            .into_iter()
            .map(|(_, a)| a.to_string())
            .filter(|a| claimed.contains(a))
            .collect();
        if !held.is_empty() {
            return Err(setup_err(
                name,
                format!(
                    "not changing sriov_numvfs from {now} to {want}: pods hold {}",
                    held.join(", ")
                ),
            ));
        }
        sysfs.write(&dev.dir().join("sriov_numvfs"), "0")?;
    }
    if want > 0 {
        sysfs.write(&dev.dir().join("sriov_numvfs"), &want.to_string())?;
    }
    Ok(true)
}

/// Applies the setup; returns what failed (the rest is still applied).
pub fn apply(
    sysfs: &Sysfs,
    setup: &NodeSetup,
    nl: &mut dyn VfNetlink,
    claimed: &BTreeSet<String>,
) -> Vec<NodeError> {
    let mut errors = Vec::new();
    for pf in &setup.pfs {
        let (addr, name) = match resolve(sysfs, pf) {
            Ok(v) => v,
            Err(e) => {
                errors.push(e);
                continue;
            }
        };
        if let Some(want) = pf.num_vfs {
            match set_numvfs(sysfs, addr, &name, want, claimed) {
                Ok(true) => crate::log::info(&format!("{name}: sriov_numvfs set to {want}")),
                Ok(false) => {}
                Err(e) => errors.push(e),
            }
        }
        for vf in &pf.vfs {
            if let Err(e) = apply_vf(nl, &name, vf) {
                errors.push(e);
            }
        }
    }
    errors
}

fn apply_vf(
    nl: &mut dyn VfNetlink,
    pf: &str,
    vf: &crate::config::VfSetup,
) -> Result<(), NodeError> {
    let e = |m: netlink::NetlinkError| setup_err(pf, format!("VF {}: {m}", vf.index));
    let now = nl.vf_state(pf, vf.index).map_err(e)?;
    if let Some(mac) = &vf.mac {
        let mac: MacAddr = mac.parse().map_err(|m| setup_err(pf, m))?;
        if now.mac != mac {
            nl.set_vf(pf, vf.index, VfAttr::Mac(mac)).map_err(e)?;
        }
    }
    if let Some(s) = &vf.spoofchk {
        let on = s == "on";
        if now.spoofchk != Some(on) {
            nl.set_vf(pf, vf.index, VfAttr::SpoofChk(on)).map_err(e)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Config, NodeSetup};
    use netlink::RecordingNetlink;
    use vfio::fake::FakeNode;

    fn setup(json: &str) -> NodeSetup {
        Config::parse(std::path::Path::new("t"), json.as_bytes())
            .unwrap()
            .node_setup
    }

    #[test]
    fn sets_numvfs_mac_and_spoofchk_once() {
        let tmp = tempfile::tempdir().unwrap();
        let node = FakeNode::new(tmp.path().join("root")).unwrap();
        node.add_pf("0000:01:00.0".parse().unwrap(), "ens1f0", 2, 8, 0, 10)
            .unwrap();
        let sysfs = node.sysfs();
        let mut nl = RecordingNetlink::create(tmp.path().join("nl"), &[("ens1f0", 4)]).unwrap();
        let s = setup(
            r#"{"nodeSetup": {"pfs": [{"pfName": "ens1f0", "numVfs": 4,
                "vfs": [{"index": 1, "mac": "02:00:00:00:00:11", "spoofchk": "off"}]}]}}"#,
        );
        assert!(apply(&sysfs, &s, &mut nl, &BTreeSet::new()).is_empty());
        let writes: Vec<String> = node
            .writes()
            .into_iter()
            .map(|(p, d)| format!("{p}={d}"))
            .collect();
        assert_eq!(
            writes,
            [
                "sys/bus/pci/devices/0000:01:00.0/sriov_numvfs=0",
                "sys/bus/pci/devices/0000:01:00.0/sriov_numvfs=4"
            ]
        );
        let calls = nl.calls();
        assert_eq!(calls.len(), 2, "{calls:?}");
        let vf1 = &nl.load().unwrap().links["ens1f0"].vfs[1];
        assert_eq!(vf1.mac.to_string(), "02:00:00:00:00:11");
        assert_eq!(vf1.spoofchk, Some(false));
        // Idempotent: nothing more is written.
        assert!(apply(&sysfs, &s, &mut nl, &BTreeSet::new()).is_empty());
        assert_eq!(node.writes().len(), 2);
        assert_eq!(nl.calls().len(), 2);
    }

    #[test]
    fn refuses_to_destroy_held_vfs_or_exceed_total() {
        let tmp = tempfile::tempdir().unwrap();
        let node = FakeNode::new(tmp.path()).unwrap();
        let pf = node
            .add_pf("0000:01:00.0".parse().unwrap(), "ens1f0", 2, 8, 0, 10)
            .unwrap();
        let sysfs = node.sysfs();
        let mut nl = RecordingNetlink::create(tmp.path().join("nl"), &[]).unwrap();
        let held = BTreeSet::from([pf.vfs[0].to_string()]);
        let errs = apply(
            &sysfs,
            &setup(r#"{"nodeSetup": {"pfs": [{"pciAddress": "0000:01:00.0", "numVfs": 3}]}}"#),
            &mut nl,
            &held,
        );
        assert!(
            errs[0].to_string().contains("pods hold 0000:01:10.0"),
            "{}",
            errs[0]
        );
        let errs = apply(
            &sysfs,
            &setup(r#"{"nodeSetup": {"pfs": [{"pfName": "ens1f0", "numVfs": 9}]}}"#),
            &mut nl,
            &held,
        );
        assert!(
            errs[0].to_string().contains("sriov_totalvfs 8"),
            "{}",
            errs[0]
        );
        assert!(node.writes().is_empty());
    }
}
