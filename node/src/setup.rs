//! Node setup from the config: how many VFs each PF has (`sriov_numvfs`),
//! and per-VF MAC and spoofchk through the PF (`ip link set <pf> vf N mac M
//! spoofchk off`, as seed 003 does by hand). Applied at start and on every
//! reload; only what differs is changed, so applying twice changes nothing.
//!
//! Changing a non-zero `sriov_numvfs` destroys every VF of the PF, so it
//! fails closed: it waits while any VF is held (see [`crate::holders`]) or
//! while who holds them cannot be known, and the daemon tries again later.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use ledger::Ledger;
use netlink::{MacAddr, VfAttr, VfNetlink};
use vfio::{PciAddress, Sysfs};

use crate::config::{NodeSetup, PfSetup};
use crate::error::NodeError;
use crate::holders::InUse;

/// How long node setup waits for a CNI command to finish with a VF.
const LOCK_WAIT: Duration = Duration::from_secs(1);

/// Where node setup learns who holds the VFs it would destroy.
#[derive(Debug, Clone)]
pub struct Guard<'a> {
    /// The CNI ledger: claims, and the per-device locks.
    pub ledger: &'a Ledger,
    /// The kubelet's device-plugins directory, with its checkpoint.
    pub kubelet_dir: &'a Path,
    /// The drivers the pools select VFs on.
    pub pool_drivers: BTreeSet<String>,
}

fn waits(pf: &str, msg: impl std::fmt::Display) -> NodeError {
    NodeError::SetupWaits {
        pf: pf.to_string(),
        msg: msg.to_string(),
    }
}

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
/// non-zero count through 0, which destroys every VF: that waits while any
/// of them is claimed (or its claim does not read), allocated by the
/// kubelet, or bound to a driver no pool uses, and while the ledger or the
/// kubelet's checkpoint does not read. Every VF's lock is held from the
/// check to the write, so no CNI command starts on one meanwhile.
fn set_numvfs(
    sysfs: &Sysfs,
    addr: PciAddress,
    name: &str,
    want: u32,
    guard: &Guard<'_>,
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
    let mut locks = Vec::new();
    if now > 0 {
        let not = format!("not changing sriov_numvfs from {now} to {want}");
        let vfs = dev.virtfns()?;
        for (_, vf) in &vfs {
            locks.push(
                guard
                    .ledger
                    .lock_device(vf, LOCK_WAIT)
                    .map_err(|e| waits(name, format!("{not}: {e}")))?,
            );
        }
        let in_use = InUse::read(guard.ledger, guard.kubelet_dir, guard.pool_drivers.clone());
        if let Some(why) = in_use.blind() {
            return Err(waits(
                name,
                format!(
                    "{not}, which would destroy its VFs: who holds them cannot be known: {why}"
                ),
            ));
        }
        let mut held = Vec::new();
        for (_, vf) in &vfs {
            if let Some(h) = in_use.holder(sysfs, *vf)? {
                held.push(format!("{vf} is {h}"));
            }
        }
        if !held.is_empty() {
            return Err(waits(name, format!("{not}: {}", held.join("; "))));
        }
        sysfs.write(&dev.dir().join("sriov_numvfs"), "0")?;
    }
    if want > 0 {
        sysfs.write(&dev.dir().join("sriov_numvfs"), &want.to_string())?;
    }
    drop(locks);
    Ok(true)
}

/// Applies the setup; returns what failed (the rest is still applied).
pub fn apply(
    sysfs: &Sysfs,
    setup: &NodeSetup,
    nl: &mut dyn VfNetlink,
    guard: &Guard<'_>,
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
            match set_numvfs(sysfs, addr, &name, want, guard) {
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
    use ledger::Claim;
    use netlink::RecordingNetlink;
    use vfio::fake::FakeNode;

    fn setup(json: &str) -> NodeSetup {
        Config::parse(std::path::Path::new("t"), json.as_bytes())
            .unwrap()
            .node_setup
    }

    /// A ledger and a kubelet directory under `dir`.
    fn guard_dirs(dir: &Path) -> (Ledger, std::path::PathBuf) {
        let kdir = dir.join("kubelet");
        std::fs::create_dir_all(&kdir).unwrap();
        (Ledger::new(dir.join("state")), kdir)
    }

    fn guard<'a>(ledger: &'a Ledger, kdir: &'a Path) -> Guard<'a> {
        Guard {
            ledger,
            kubelet_dir: kdir,
            pool_drivers: BTreeSet::new(),
        }
    }

    #[test]
    fn sets_numvfs_mac_and_spoofchk_once() {
        let tmp = tempfile::tempdir().unwrap();
        let node = FakeNode::new(tmp.path().join("root")).unwrap();
        node.add_pf("0000:01:00.0".parse().unwrap(), "ens1f0", 2, 8, 0, 10)
            .unwrap();
        let sysfs = node.sysfs();
        let (ledger, kdir) = guard_dirs(tmp.path());
        let g = guard(&ledger, &kdir);
        let mut nl = RecordingNetlink::create(tmp.path().join("nl"), &[("ens1f0", 4)]).unwrap();
        let s = setup(
            r#"{"nodeSetup": {"pfs": [{"pfName": "ens1f0", "numVfs": 4,
                "vfs": [{"index": 1, "mac": "02:00:00:00:00:11", "spoofchk": "off"}]}]}}"#,
        );
        assert!(apply(&sysfs, &s, &mut nl, &g).is_empty());
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
        assert!(apply(&sysfs, &s, &mut nl, &g).is_empty());
        assert_eq!(node.writes().len(), 2);
        assert_eq!(nl.calls().len(), 2);
    }

    #[test]
    fn waits_while_vfs_are_held_and_refuses_more_than_total() {
        let tmp = tempfile::tempdir().unwrap();
        let node = FakeNode::new(tmp.path().join("root")).unwrap();
        let pf = node
            .add_pf("0000:01:00.0".parse().unwrap(), "ens1f0", 2, 8, 0, 10)
            .unwrap();
        let sysfs = node.sysfs();
        let (ledger, kdir) = guard_dirs(tmp.path());
        let mut nl = RecordingNetlink::create(tmp.path().join("nl"), &[]).unwrap();
        let holder = Claim {
            network: "dpdk-net".into(),
            container_id: "c0ffee".into(),
            ifname: "net1".into(),
        };
        ledger.set_claim(pf.vfs[0], &holder).unwrap();
        let three =
            setup(r#"{"nodeSetup": {"pfs": [{"pciAddress": "0000:01:00.0", "numVfs": 3}]}}"#);
        let errs = apply(&sysfs, &three, &mut nl, &guard(&ledger, &kdir));
        assert!(
            matches!(errs[0], NodeError::SetupWaits { .. }),
            "{}",
            errs[0]
        );
        assert!(
            errs[0]
                .to_string()
                .contains("not changing sriov_numvfs from 2 to 3: 0000:01:10.0 is claimed by container c0ffee"),
            "{}",
            errs[0]
        );
        let errs = apply(
            &sysfs,
            &setup(r#"{"nodeSetup": {"pfs": [{"pfName": "ens1f0", "numVfs": 9}]}}"#),
            &mut nl,
            &guard(&ledger, &kdir),
        );
        assert!(matches!(errs[0], NodeError::Setup { .. }), "{}", errs[0]);
        assert!(
            errs[0].to_string().contains("sriov_totalvfs 8"),
            "{}",
            errs[0]
        );
        // A CNI command working on a VF: wait for it.
        ledger.release_claim(pf.vfs[0], &holder).unwrap();
        let busy = ledger.lock_device(&pf.vfs[1], Duration::ZERO).unwrap();
        let errs = apply(&sysfs, &three, &mut nl, &guard(&ledger, &kdir));
        assert!(errs[0].to_string().contains("locked"), "{}", errs[0]);
        assert!(node.writes().is_empty());
        drop(busy);
        assert!(apply(&sysfs, &three, &mut nl, &guard(&ledger, &kdir)).is_empty());
        assert_eq!(node.writes().len(), 2);
    }

    #[test]
    fn from_zero_nothing_is_destroyed_and_nothing_is_asked() {
        let tmp = tempfile::tempdir().unwrap();
        let node = FakeNode::new(tmp.path().join("root")).unwrap();
        node.add_pf("0000:01:00.0".parse().unwrap(), "ens1f0", 0, 8, 0, 10)
            .unwrap();
        let sysfs = node.sysfs();
        let (ledger, kdir) = guard_dirs(tmp.path());
        // Even with the ledger unreadable: no VF exists to be held.
        let devices = tmp.path().join("state/devices");
        std::fs::create_dir_all(&devices).unwrap();
        std::fs::write(devices.join("0000:01:10.0.json"), "{").unwrap();
        let mut nl = RecordingNetlink::create(tmp.path().join("nl"), &[]).unwrap();
        let s = setup(r#"{"nodeSetup": {"pfs": [{"pfName": "ens1f0", "numVfs": 2}]}}"#);
        assert!(apply(&sysfs, &s, &mut nl, &guard(&ledger, &kdir)).is_empty());
        let writes: Vec<String> = node.writes().into_iter().map(|(_, d)| d).collect();
        assert_eq!(writes, ["2"]);
    }
}
