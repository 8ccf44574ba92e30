//! Who holds a VF. The daemon asks before it destroys VFs (writing
//! `sriov_numvfs`) or binds one early (no-IOMMU Allocate), and a VF that may
//! be held is never counted free.
//!
//! Three sources, and a source that cannot be read in full is not guessed
//! at: while it cannot, nothing is destroyed or rebound.
//! - The CNI ledger's claims (`<stateDir>/devices/<bdf>.json`). A claim file
//!   that exists but does not read holds its device all the same.
//! - The kubelet's device manager checkpoint
//!   (`<device-plugins>/kubelet_internal_checkpoint`): every device the
//!   kubelet has allocated to a pod, for any resource, ours or another
//!   plugin's that also names devices by PCI address.
//! - The driver a VF is bound to: one that no pool selects and that serves
//!   no netdev on the host (vfio-pci, uio, pci-stub) belongs to someone else.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::io::ErrorKind;
use std::path::Path;

use ledger::{Claim, Ledger};
use serde::Deserialize;
use vfio::{PciAddress, Sysfs, VFIO_PCI};

use crate::error::Result;

/// The kubelet's device manager checkpoint, in its device-plugins directory.
pub const KUBELET_CHECKPOINT: &str = "kubelet_internal_checkpoint";

/// The claims of the CNI ledger, as far as they could be read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Claims {
    pub known: BTreeMap<PciAddress, Claim>,
    /// Claim files that exist but cannot be read, with the reason.
    pub unreadable: BTreeMap<PciAddress, String>,
    /// Why the claims could not even be listed.
    pub unlisted: Option<String>,
}

impl Claims {
    /// Reads every claim file, one by one, so that a bad one is known by its
    /// device (and the others still count).
    pub fn read(ledger: &Ledger) -> Claims {
        let dir = ledger.dir().join("devices");
        let mut out = Claims::default();
        let entries = match std::fs::read_dir(&dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == ErrorKind::NotFound => return out,
            Err(e) => {
                out.unlisted = Some(format!("cannot list {}: {e}", dir.display()));
                return out;
            }
        };
        for entry in entries {
            let path = match entry {
                Ok(e) => e.path(),
                Err(e) => {
                    out.unlisted = Some(format!("cannot list {}: {e}", dir.display()));
                    return out;
                }
            };
            if path.extension().and_then(|e| e.to_str()) != Some("json") {
                continue;
            }
            // A file not named after a PCI address names no device.
            let Some(dev) = path
                .file_stem()
                .and_then(|s| s.to_str())
                .and_then(|s| s.parse::<PciAddress>().ok())
            else {
                continue;
            };
            match ledger.claim(dev) {
                Ok(Some(c)) => {
                    out.known.insert(dev, c);
                }
                // Released since it was listed.
                Ok(None) => {}
                Err(e) => {
                    out.unreadable.insert(dev, e.to_string());
                }
            }
        }
        out
    }

    /// Why not every claim could be read, if so.
    pub fn incomplete(&self) -> Option<String> {
        if let Some(why) = &self.unlisted {
            return Some(why.clone());
        }
        let (_, why) = self.unreadable.iter().next()?;
        Some(match self.unreadable.len() {
            1 => why.clone(),
            n => format!("{why} (and {} more unreadable claims)", n - 1),
        })
    }

    /// Why nobody can tell whether `dev` is held, if so: its claim file does
    /// not read, or the claims could not be listed.
    pub fn unknown(&self, dev: PciAddress) -> Option<&str> {
        self.unlisted
            .as_deref()
            .or_else(|| self.unreadable.get(&dev).map(String::as_str))
    }

    /// Whether `dev` may be held: claimed, or its claim unknown.
    pub fn held(&self, dev: PciAddress) -> bool {
        self.known.contains_key(&dev) || self.unknown(dev).is_some()
    }
}

/// A device the kubelet allocated to a pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Allocation {
    pub pod_uid: String,
    pub container: String,
    pub resource: String,
}

/// The checkpoint as the kubelet writes it (`checkpoint.Data`), the parts
/// read here. `DeviceIDs` is a map of NUMA node to IDs since Kubernetes
/// 1.20 and a plain list before; Go writes a nil slice or map as `null`.
#[derive(Deserialize)]
struct Checkpoint {
    #[serde(rename = "Data")]
    data: CheckpointData,
}

#[derive(Deserialize)]
struct CheckpointData {
    #[serde(rename = "PodDeviceEntries", default)]
    entries: Option<Vec<PodDevicesEntry>>,
}

#[derive(Deserialize)]
struct PodDevicesEntry {
    #[serde(rename = "PodUID", default)]
    pod_uid: String,
    #[serde(rename = "ContainerName", default)]
    container_name: String,
    #[serde(rename = "ResourceName", default)]
    resource_name: String,
    #[serde(rename = "DeviceIDs", default)]
    device_ids: Option<DeviceIds>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum DeviceIds {
    PerNuma(BTreeMap<String, Option<Vec<String>>>),
    Flat(Vec<String>),
}

/// The devices the kubelet's checkpoint says are allocated, by PCI address
/// (IDs that are not PCI addresses are other plugins' devices). No
/// checkpoint means nothing allocated; one that does not read is an error.
pub fn allocations(
    kubelet_dir: &Path,
) -> std::result::Result<BTreeMap<PciAddress, Allocation>, String> {
    let path = kubelet_dir.join(KUBELET_CHECKPOINT);
    let data = match std::fs::read(&path) {
        Ok(d) => d,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(BTreeMap::new()),
        Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
    };
    let cp: Checkpoint = serde_json::from_slice(&data)
        .map_err(|e| format!("cannot parse {}: {e}", path.display()))?;
    let mut out = BTreeMap::new();
    for e in cp.data.entries.unwrap_or_default() {
        let ids: Vec<String> = match e.device_ids {
            Some(DeviceIds::PerNuma(m)) => m.into_values().flatten().flatten().collect(),
            Some(DeviceIds::Flat(v)) => v,
            None => Vec::new(),
        };
        for id in ids {
            if let Ok(dev) = id.parse::<PciAddress>() {
                out.insert(
                    dev,
                    Allocation {
                        pod_uid: e.pod_uid.clone(),
                        container: e.container_name.clone(),
                        resource: e.resource_name.clone(),
                    },
                );
            }
        }
    }
    Ok(out)
}

/// Who holds a VF.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Holder {
    /// A CNI attachment, by its claim.
    Claim(Claim),
    /// A claim file that does not read.
    UnreadableClaim(String),
    /// A pod, by the kubelet's checkpoint.
    Kubelet(Allocation),
    /// A driver none of the pools uses.
    Driver(String),
}

impl fmt::Display for Holder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Holder::Claim(c) => write!(
                f,
                "claimed by container {} (network {}, interface {})",
                c.container_id, c.network, c.ifname
            ),
            Holder::UnreadableClaim(why) => {
                write!(f, "claimed, by a claim that does not read: {why}")
            }
            Holder::Kubelet(a) => write!(
                f,
                "allocated by the kubelet to pod {} (container {}, resource {})",
                a.pod_uid, a.container, a.resource
            ),
            Holder::Driver(d) => write!(f, "bound to {d}, a driver no pool uses"),
        }
    }
}

/// Everything that may hold the node's VFs, read at one time.
#[derive(Debug)]
pub struct InUse {
    pub claims: Claims,
    pub allocated: std::result::Result<BTreeMap<PciAddress, Allocation>, String>,
    /// The drivers the pools select VFs on (their selectors' `drivers`).
    pub pool_drivers: BTreeSet<String>,
}

impl InUse {
    pub fn read(ledger: &Ledger, kubelet_dir: &Path, pool_drivers: BTreeSet<String>) -> InUse {
        InUse {
            claims: Claims::read(ledger),
            allocated: allocations(kubelet_dir),
            pool_drivers,
        }
    }

    /// Why it cannot be known who holds what, if so: a claim or the
    /// kubelet's checkpoint does not read.
    pub fn blind(&self) -> Option<String> {
        if let Some(why) = self.claims.incomplete() {
            return Some(format!("the CNI ledger does not read in full: {why}"));
        }
        match &self.allocated {
            Err(why) => Some(format!("the kubelet's checkpoint does not read: {why}")),
            Ok(_) => None,
        }
    }

    /// Who holds `vf`, if anyone: its claim first, then the kubelet, then
    /// its driver.
    pub fn holder(&self, sysfs: &Sysfs, vf: PciAddress) -> Result<Option<Holder>> {
        if let Some(c) = self.claims.known.get(&vf) {
            return Ok(Some(Holder::Claim(c.clone())));
        }
        if let Some(why) = self.claims.unknown(vf) {
            return Ok(Some(Holder::UnreadableClaim(why.to_string())));
        }
        if let Some(a) = self.allocated.as_ref().ok().and_then(|m| m.get(&vf)) {
            return Ok(Some(Holder::Kubelet(a.clone())));
        }
        let dev = sysfs.device(vf)?;
        let Some(driver) = dev.driver()? else {
            return Ok(None);
        };
        if self.pool_drivers.contains(&driver) {
            return Ok(None);
        }
        // The VF's own kernel driver, with its netdev on the host.
        if driver != VFIO_PCI && !dev.net_names()?.is_empty() {
            return Ok(None);
        }
        Ok(Some(Holder::Driver(driver)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vfio::fake::FakeNode;

    fn claim(id: &str) -> Claim {
        Claim {
            network: "dpdk-net".into(),
            container_id: id.into(),
            ifname: "net1".into(),
        }
    }

    #[test]
    fn a_bad_claim_file_is_known_by_its_device() {
        let tmp = tempfile::tempdir().unwrap();
        let ledger = Ledger::new(tmp.path());
        assert_eq!(Claims::read(&ledger), Claims::default());
        let a: PciAddress = "0000:01:10.0".parse().unwrap();
        let b: PciAddress = "0000:01:10.2".parse().unwrap();
        ledger.set_claim(a, &claim("c0")).unwrap();
        let devices = tmp.path().join("devices");
        std::fs::write(devices.join(format!("{b}.json")), "").unwrap();
        std::fs::write(devices.join("notes.json"), "{").unwrap();
        let c = Claims::read(&ledger);
        assert_eq!(c.known.keys().collect::<Vec<_>>(), [&a]);
        assert!(c.unknown(b).unwrap().contains(&format!("{b}.json")));
        assert!(c.held(a) && c.held(b));
        assert!(!c.held("0000:01:10.4".parse().unwrap()));
        assert!(c.incomplete().unwrap().contains(&format!("{b}.json")));
    }

    #[test]
    fn checkpoint_formats() {
        let tmp = tempfile::tempdir().unwrap();
        assert_eq!(allocations(tmp.path()), Ok(BTreeMap::new()));
        let write = |s: &str| std::fs::write(tmp.path().join(KUBELET_CHECKPOINT), s).unwrap();
        // Kubernetes 1.20 and later: device IDs per NUMA node.
        write(
            r#"{"Data":{"PodDeviceEntries":[
                {"PodUID":"u1","ContainerName":"c1","ResourceName":"intel.com/vf",
                 "DeviceIDs":{"0":["0000:01:10.0"],"1":["0000:81:10.2"],"-1":null},"AllocResp":"CgA="},
                {"PodUID":"u2","ContainerName":"c2","ResourceName":"nvidia.com/gpu",
                 "DeviceIDs":{"0":["GPU-8f0c"]},"AllocResp":""}],
              "RegisteredDevices":{"intel.com/vf":["0000:01:10.0"]}},"Checksum":1}"#,
        );
        let got = allocations(tmp.path()).unwrap();
        assert_eq!(got.len(), 2, "{got:?}");
        let a = &got[&"0000:81:10.2".parse().unwrap()];
        assert_eq!(
            (
                a.pod_uid.as_str(),
                a.container.as_str(),
                a.resource.as_str()
            ),
            ("u1", "c1", "intel.com/vf")
        );
        // Before 1.20: a plain list. No entries: null.
        write(
            r#"{"Data":{"PodDeviceEntries":[{"PodUID":"u3","ContainerName":"c","ResourceName":"r","DeviceIDs":["0000:01:10.4"]}]},"Checksum":1}"#,
        );
        assert_eq!(allocations(tmp.path()).unwrap().len(), 1);
        write(r#"{"Data":{"PodDeviceEntries":null,"RegisteredDevices":null},"Checksum":0}"#);
        assert_eq!(allocations(tmp.path()), Ok(BTreeMap::new()));
        write(r#"{"Data":{"PodDeviceEntries":[{"#);
        assert!(allocations(tmp.path())
            .unwrap_err()
            .contains(KUBELET_CHECKPOINT));
    }

    #[test]
    fn holders_in_order_and_drivers() {
        let tmp = tempfile::tempdir().unwrap();
        let node = FakeNode::new(tmp.path().join("root")).unwrap();
        let pf = node
            .add_pf("0000:01:00.0".parse().unwrap(), "ens1f0", 4, 8, 0, 10)
            .unwrap();
        node.add_driver("pci-stub").unwrap();
        let sysfs = node.sysfs();
        let ledger = Ledger::new(tmp.path().join("state"));
        let kdir = tmp.path().join("kubelet");
        std::fs::create_dir_all(&kdir).unwrap();
        let [v0, v1, v2, v3] = [pf.vfs[0], pf.vfs[1], pf.vfs[2], pf.vfs[3]];
        ledger.set_claim(v0, &claim("c0")).unwrap();
        sysfs.bind_driver(v0, VFIO_PCI, Default::default()).unwrap();
        std::fs::write(
            kdir.join(KUBELET_CHECKPOINT),
            format!(r#"{{"Data":{{"PodDeviceEntries":[{{"PodUID":"u1","ContainerName":"c","ResourceName":"r","DeviceIDs":{{"0":["{v1}"]}}}}]}}}}"#),
        )
        .unwrap();
        sysfs
            .bind_driver(v2, "pci-stub", Default::default())
            .unwrap();
        let u = InUse::read(&ledger, &kdir, BTreeSet::new());
        assert_eq!(u.blind(), None);
        let h = |v| u.holder(&sysfs, v).unwrap().map(|h| h.to_string());
        assert_eq!(
            h(v0).as_deref(),
            Some("claimed by container c0 (network dpdk-net, interface net1)")
        );
        assert!(h(v1).unwrap().contains("pod u1"));
        assert_eq!(
            h(v2).as_deref(),
            Some("bound to pci-stub, a driver no pool uses")
        );
        // On its kernel driver with its netdev, or unbound: nobody's.
        assert_eq!(h(v3), None);
        sysfs.unbind(v3).unwrap();
        assert_eq!(h(v3), None);
        // On vfio-pci with no claim: someone else's, unless a pool selects vfio-pci.
        sysfs.bind_driver(v3, VFIO_PCI, Default::default()).unwrap();
        assert_eq!(
            h(v3).as_deref(),
            Some("bound to vfio-pci, a driver no pool uses")
        );
        let u = InUse::read(&ledger, &kdir, BTreeSet::from([VFIO_PCI.to_string()]));
        assert_eq!(u.holder(&sysfs, v3).unwrap(), None);
        // A claim that does not read: blind, and the VF is held.
        std::fs::write(tmp.path().join(format!("state/devices/{v3}.json")), "{").unwrap();
        let u = InUse::read(&ledger, &kdir, BTreeSet::new());
        assert!(u.blind().unwrap().contains(&format!("{v3}.json")));
        assert!(matches!(
            u.holder(&sysfs, v3).unwrap(),
            Some(Holder::UnreadableClaim(_))
        ));
    }
}
