//! What a container gets for the devices the kubelet allocated it, the way
//! the SR-IOV network device plugin answers Allocate (so pods, apps and
//! Multus written for it keep working): each device's nodes by its kind
//! ([`crate::grant`]: vfio group, uio, RDMA, vhost-net, or none for a VF
//! on a kernel driver), `PCIDEVICE_<PREFIX>_<NAME>` and its `_INFO`, the
//! device-info file in `devinfo/dp/` ([`crate::devinfo`]), and our own
//! extras: the pool's hugetlbfs mount, or CDI names instead of nodes.
//!
//! A vfio group's node is named here, before the sandbox exists; the CNI
//! binds the VF to vfio-pci at ADD, which creates `/dev/vfio/<group>`
//! before the app container is created (REFERENCE.md section 4).

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::time::Duration;

use ledger::{Ledger, Prebound};
use vfio::{PciAddress, PciDevice, Sysfs, VFIO_PCI};

use crate::api::{CdiDevice, ContainerAllocateResponse, Mount};
use crate::devinfo::DpDir;
use crate::error::{NodeError, Result};
use crate::grant::{grant, Info, Mode};
use crate::holders::{Claims, Holder};
use crate::pool::{Device, Pool};

pub use crate::cdi::{cdi_device_name, cdi_kind, cdi_spec};

/// How long an early bind waits for a CNI command working on the device
/// (the plugin's own wait for a device's lock).
pub const LOCK_WAIT: Duration = Duration::from_secs(10);

/// `PCIDEVICE_<PREFIX>_<NAME>`, upper case, `.` to `_`: the upstream
/// plugin's name exactly (`/` is the `_` between prefix and name; a `-`
/// stays, as it does there).
pub fn env_name(resource: &str) -> String {
    let mut s = String::from("PCIDEVICE_");
    for c in resource.chars() {
        s.push(match c {
            '.' | '/' => '_',
            c => c.to_ascii_uppercase(),
        });
    }
    s
}

/// The host and container paths of a device's vfio group node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupNode {
    pub group: u32,
    pub host: PathBuf,
    pub container: PathBuf,
}

/// Where the device's vfio group node is (or will be, once the CNI binds
/// it). With an IOMMU the group is known from sysfs before vfio-pci holds
/// the device. In no-IOMMU mode vfio-pci creates the group when it binds,
/// so a device without one is bound here, early, to learn it; the host
/// node is then `/dev/vfio/noiommu-N`, which the container sees as
/// `/dev/vfio/N` (the name DPDK opens). The driver it had is recorded first
/// in the CNI's state directory (`ledger`), so the plugin's DEL puts the
/// device back on that driver rather than leaving it on vfio-pci.
///
/// The early bind happens under the device's lock in the ledger, the one
/// the plugin's ADD and DEL take, and not at all while an attachment claims
/// the device or while any claim does not read: it never races a DEL or
/// takes a device from a pod.
pub fn group_node(sysfs: &Sysfs, addr: PciAddress, ledger: Option<&Ledger>) -> Result<GroupNode> {
    let dev = sysfs.device(addr)?;
    let mut group = dev.iommu_group()?;
    let mut bound_here = false;
    if group.is_none() && sysfs.noiommu_enabled() {
        let ledger = ledger.ok_or_else(|| {
            NodeError::Refused(format!(
                "{addr} needs binding to vfio-pci to learn its no-IOMMU group, and there is no CNI state directory to record its driver in"
            ))
        })?;
        let _lock = ledger
            .lock_device(&addr, LOCK_WAIT)
            .map_err(|e| NodeError::Refused(format!("not binding {addr} to vfio-pci: {e}")))?;
        // Look again under the lock: a command that held it may have bound it.
        group = dev.iommu_group()?;
        if group.is_none() {
            bind_early(sysfs, &dev, ledger)?;
            group = dev.iommu_group()?;
            bound_here = true;
        }
    }
    let Some(group) = group else {
        return Err(NodeError::Allocate(format!(
            "{addr} has no IOMMU group: enable the IOMMU (intel_iommu=on) or vfio's enable_unsafe_noiommu_mode"
        )));
    };
    let container = PathBuf::from(format!("/dev/vfio/{group}"));
    let noiommu = sysfs.dev_vfio_dir().join(format!("noiommu-{group}"));
    let host = if bound_here || noiommu.exists() {
        PathBuf::from(format!("/dev/vfio/noiommu-{group}"))
    } else {
        container.clone()
    };
    Ok(GroupNode {
        group,
        host,
        container,
    })
}

/// Binds a device to vfio-pci before any ADD, its driver recorded first;
/// the caller holds the device's lock.
fn bind_early(sysfs: &Sysfs, dev: &PciDevice<'_>, ledger: &Ledger) -> Result<()> {
    let addr = dev.address();
    let claims = Claims::read(ledger);
    if let Some(why) = claims.incomplete() {
        return Err(NodeError::Refused(format!(
            "not binding {addr} to vfio-pci: the CNI ledger does not read in full, so who holds it cannot be known: {why}"
        )));
    }
    if let Some(c) = claims.known.get(&addr) {
        return Err(NodeError::Refused(format!(
            "not binding {addr} to vfio-pci: it is {}",
            Holder::Claim(c.clone())
        )));
    }
    let first = Prebound {
        driver: dev.driver()?,
        driver_override: dev.driver_override()?,
    };
    if first.driver.as_deref() != Some(VFIO_PCI) {
        ledger
            .set_prebound(addr, &first)
            .map_err(|e| NodeError::Allocate(format!("recording the driver of {addr}: {e}")))?;
    }
    sysfs
        .bind_driver(addr, VFIO_PCI, Default::default())
        .map_err(|e| {
            NodeError::Allocate(format!(
                "binding {addr} to vfio-pci to learn its no-IOMMU group: {e}"
            ))
        })?;
    Ok(())
}

/// The container response for `ids` of `pool`: each device's nodes (one
/// per host path, as the upstream plugin dedups them), the environment, the
/// pool's hugetlbfs mount, or CDI names instead of the nodes. With
/// `devinfo`, each device's device-info file is written there once every
/// device has been served.
pub fn container_response(
    sysfs: &Sysfs,
    pool: &Pool,
    ids: &[String],
    cdi: bool,
    ledger: Option<&Ledger>,
    devinfo: Option<&DpDir>,
) -> Result<ContainerAllocateResponse> {
    let by_id: HashMap<String, &Device> = pool
        .devices
        .iter()
        .map(|d| (d.addr.to_string(), d))
        .collect();
    let mut resp = ContainerAllocateResponse::default();
    let mut info: BTreeMap<String, Info> = BTreeMap::new();
    let mut docs = Vec::new();
    for id in ids {
        let d = by_id.get(id).ok_or_else(|| {
            NodeError::Allocate(format!("device {id} is not in pool {}", pool.resource))
        })?;
        let g = grant(sysfs, pool, d, Mode::Allocate(ledger))?;
        info.insert(id.clone(), g.info);
        docs.push((id, g.devinfo));
        if cdi {
            resp.cdi_devices.push(CdiDevice {
                name: format!("{}={}", cdi_kind(&pool.resource), cdi_device_name(id)),
            });
            continue;
        }
        for spec in g.specs {
            // Devices sharing a group share its node.
            if !resp.devices.iter().any(|s| s.host_path == spec.host_path) {
                resp.devices.push(spec);
            }
        }
    }
    let name = env_name(&pool.resource);
    resp.envs.insert(name.clone(), ids.join(","));
    resp.envs.insert(
        format!("{name}_INFO"),
        serde_json::to_string(&info).expect("strings always encode"),
    );
    if let Some(h) = pool.config.hugepages.as_ref().filter(|h| h.mount) {
        resp.mounts.push(Mount {
            container_path: h.container_path.display().to_string(),
            host_path: h.host_path().display().to_string(),
            read_only: false,
        });
    }
    if let Some(dir) = devinfo {
        for (id, doc) in docs {
            dir.write(&pool.resource, id, &doc)?;
        }
    }
    Ok(resp)
}

/// Free hugepages of `size_kb` per NUMA node
/// (`/sys/devices/system/node/node<N>/hugepages/hugepages-<size>kB/free_hugepages`).
pub fn free_hugepages(sysfs: &Sysfs, size_kb: u64) -> BTreeMap<u32, u64> {
    let mut out = BTreeMap::new();
    let base = sysfs.root().join("sys/devices/system/node");
    let Ok(rd) = std::fs::read_dir(&base) else {
        return out;
    };
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(n) = name
            .strip_prefix("node")
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let p = e
            .path()
            .join(format!("hugepages/hugepages-{size_kb}kB/free_hugepages"));
        if let Some(v) = std::fs::read_to_string(p)
            .ok()
            .and_then(|s| s.trim().parse().ok())
        {
            out.insert(n, v);
        }
    }
    out
}

/// Picks `size` devices from `available` (which must include
/// `must_include`) on one NUMA node when any node has enough: the node of
/// the devices that must be included if it fits, else the node with enough
/// free hugepages for the request, the most free hugepages, then the
/// tightest fit. Without a node that fits, takes the fewest nodes.
pub fn preferred(
    numa_of: &HashMap<String, Option<u32>>,
    available: &[String],
    must_include: &[String],
    size: usize,
    free_pages: &BTreeMap<u32, u64>,
    pages_needed: u64,
) -> Vec<String> {
    let mut out: Vec<String> = must_include.iter().take(size).cloned().collect();
    if out.len() >= size {
        return out;
    }
    let need = size - out.len();
    // Buckets by NUMA node (None last), devices in address order.
    let mut buckets: BTreeMap<Option<u32>, Vec<String>> = BTreeMap::new();
    for id in available {
        if out.contains(id) {
            continue;
        }
        let n = numa_of.get(id).copied().flatten();
        buckets.entry(n).or_default().push(id.clone());
    }
    for b in buckets.values_mut() {
        b.sort();
    }
    let must_node = out
        .first()
        .and_then(|id| numa_of.get(id).copied().flatten());
    let pages_ok = |n: &Option<u32>| {
        n.and_then(|n| free_pages.get(&n)).copied().unwrap_or(0) >= pages_needed * size as u64
    };
    let mut fits: Vec<(&Option<u32>, &Vec<String>)> =
        buckets.iter().filter(|(_, v)| v.len() >= need).collect();
    fits.sort_by_key(|(n, v)| {
        (
            must_node.is_none() || **n != must_node, // the must-include node first
            n.is_none(),                             // a known node before "no affinity"
            !pages_ok(n),                            // enough free hugepages
            std::cmp::Reverse(n.and_then(|n| free_pages.get(&n)).copied().unwrap_or(0)),
            v.len(), // tightest fit keeps big nodes free
            **n,
        )
    });
    if let Some((_, v)) = fits.first() {
        out.extend(v.iter().take(need).cloned());
        return out;
    }
    // No single node: largest buckets first.
    let mut all: Vec<&Vec<String>> = buckets.values().collect();
    all.sort_by_key(|v| std::cmp::Reverse(v.len()));
    for v in all {
        for id in v {
            if out.len() == size {
                return out;
            }
            out.push(id.clone());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_noiommu_group_is_learnt_by_binding_early_and_the_first_driver_recorded() {
        let tmp = tempfile::tempdir().unwrap();
        let node = vfio::fake::FakeNode::new(tmp.path().join("node")).unwrap();
        let pf = node
            .add_pf("0000:01:00.0".parse().unwrap(), "ens1f0", 2, 7, 0, 10)
            .unwrap();
        node.enable_noiommu().unwrap();
        let sysfs = node.sysfs();
        let ledger = Ledger::new(tmp.path().join("state"));
        let vf = pf.vfs[1];
        assert_eq!(sysfs.device(vf).unwrap().iommu_group().unwrap(), None);

        let g = group_node(&sysfs, vf, Some(&ledger)).unwrap();
        assert_eq!(
            sysfs.device(vf).unwrap().driver().unwrap().as_deref(),
            Some(VFIO_PCI)
        );
        assert_eq!(
            g.host,
            PathBuf::from(format!("/dev/vfio/noiommu-{}", g.group))
        );
        assert_eq!(g.container, PathBuf::from(format!("/dev/vfio/{}", g.group)));
        assert_eq!(
            ledger.prebound(vf).unwrap(),
            Some(Prebound {
                driver: Some("igbvf".into()),
                driver_override: None
            })
        );
        // Asked again (the device already on vfio-pci), the record stays the first driver.
        let again = group_node(&sysfs, vf, Some(&ledger)).unwrap();
        assert_eq!(again, g);
        assert_eq!(
            ledger.prebound(vf).unwrap().unwrap().driver.as_deref(),
            Some("igbvf")
        );
    }

    fn noiommu_node() -> (tempfile::TempDir, vfio::fake::FakeNode, Ledger, PciAddress) {
        let tmp = tempfile::tempdir().unwrap();
        let node = vfio::fake::FakeNode::new(tmp.path().join("node")).unwrap();
        let pf = node
            .add_pf("0000:01:00.0".parse().unwrap(), "ens1f0", 2, 7, 0, 10)
            .unwrap();
        node.enable_noiommu().unwrap();
        let ledger = Ledger::new(tmp.path().join("state"));
        let vf = pf.vfs[1];
        (tmp, node, ledger, vf)
    }

    #[test]
    fn an_early_bind_waits_for_the_device_lock() {
        let (_tmp, node, ledger, vf) = noiommu_node();
        let sysfs = node.sysfs();
        // A plugin DEL is putting the VF back.
        let del = ledger.lock_device(&vf, std::time::Duration::ZERO).unwrap();
        let allocate = {
            let (sysfs, ledger) = (sysfs.clone(), ledger.clone());
            std::thread::spawn(move || group_node(&sysfs, vf, Some(&ledger)))
        };
        std::thread::sleep(std::time::Duration::from_millis(300));
        assert_eq!(
            sysfs.device(vf).unwrap().driver().unwrap().as_deref(),
            Some("igbvf"),
            "bound while another command held the device's lock"
        );
        assert!(!allocate.is_finished());
        drop(del);
        let g = allocate.join().unwrap().unwrap();
        assert_eq!(
            sysfs.device(vf).unwrap().driver().unwrap().as_deref(),
            Some(VFIO_PCI)
        );
        assert!(g
            .host
            .display()
            .to_string()
            .starts_with("/dev/vfio/noiommu-"));
    }

    #[test]
    fn an_early_bind_refuses_a_vf_an_attachment_holds() {
        let (_tmp, node, ledger, vf) = noiommu_node();
        let sysfs = node.sysfs();
        let before = node.snapshot();
        let holder = ledger::Claim {
            network: "dpdk-net".into(),
            container_id: "c0ffee".into(),
            ifname: "net1".into(),
        };
        ledger.set_claim(vf, &holder).unwrap();
        let err = group_node(&sysfs, vf, Some(&ledger))
            .expect_err("bound a VF an attachment holds")
            .to_string();
        assert!(
            err.contains("c0ffee") && err.contains("dpdk-net") && err.contains("net1"),
            "{err}"
        );
        assert_eq!(node.snapshot(), before);
        assert_eq!(ledger.prebound(vf).unwrap(), None);
    }

    #[test]
    fn an_early_bind_refuses_while_a_claim_cannot_be_read() {
        let (tmp, node, ledger, vf) = noiommu_node();
        let sysfs = node.sysfs();
        let before = node.snapshot();
        // Another device's claim is cut short: who holds what is unknown.
        let devices = tmp.path().join("state/devices");
        std::fs::create_dir_all(&devices).unwrap();
        std::fs::write(devices.join("0000:01:10.0.json"), "{").unwrap();
        let err = group_node(&sysfs, vf, Some(&ledger))
            .expect_err("bound a VF with the ledger unreadable")
            .to_string();
        assert!(err.contains("0000:01:10.0.json"), "{err}");
        assert_eq!(node.snapshot(), before);
    }

    #[test]
    fn env_names_like_the_sriov_device_plugin() {
        assert_eq!(
            env_name("intel.com/intel_sriov_dpdk"),
            "PCIDEVICE_INTEL_COM_INTEL_SRIOV_DPDK"
        );
        // Only '.' becomes '_', as upstream: a '-' stays.
        assert_eq!(env_name("dpdk-cni.io/vf-a"), "PCIDEVICE_DPDK-CNI_IO_VF-A");
    }

    fn numa(list: &[(&str, Option<u32>)]) -> HashMap<String, Option<u32>> {
        list.iter().map(|(a, n)| (a.to_string(), *n)).collect()
    }

    fn ids(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn packs_on_one_numa_node() {
        let m = numa(&[
            ("a0", Some(0)),
            ("a1", Some(0)),
            ("b0", Some(1)),
            ("b1", Some(1)),
            ("b2", Some(1)),
        ]);
        let avail = ids(&["a0", "b0", "a1", "b1", "b2"]);
        let none = BTreeMap::new();
        // Tightest fit when hugepages do not decide.
        assert_eq!(preferred(&m, &avail, &[], 2, &none, 0), ids(&["a0", "a1"]));
        // Only node 1 has three.
        assert_eq!(
            preferred(&m, &avail, &[], 3, &none, 0),
            ids(&["b0", "b1", "b2"])
        );
        // Node 1 has the hugepages.
        let pages = BTreeMap::from([(0, 10), (1, 4096)]);
        assert_eq!(
            preferred(&m, &avail, &[], 2, &pages, 512),
            ids(&["b0", "b1"])
        );
        // must_include pins the node.
        assert_eq!(
            preferred(&m, &avail, &ids(&["a1"]), 2, &pages, 512),
            ids(&["a1", "a0"])
        );
        // Too big for any node: spans the fewest.
        assert_eq!(
            preferred(&m, &avail, &[], 4, &none, 0),
            ids(&["b0", "b1", "b2", "a0"])
        );
    }
}
