//! ADD, DEL, CHECK, STATUS and GC for `deviceType: vfio-pci`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{json, Value};
use vfio::{BindOptions, IommuMode, PciAddress, Sysfs, VFIO_PCI};

use crate::config::{self, Base, DeviceRef, DeviceType, Plan, RawConf};
use crate::env::CniEnv;
use crate::error::{code, CniError, Result};
use crate::failpoint;
use crate::ipam;
use crate::ledger::{Attachment, Claim, Ledger, Phase};
use crate::log;
use crate::netlink::{self, VfNetlink};
use crate::result;

/// Opens the netlink side when a command first needs it.
pub type NetlinkFactory = Box<dyn Fn() -> std::io::Result<Box<dyn VfNetlink>>>;

/// The node the plugin works on: its sysfs (and `/dev`), the root that
/// default paths live under, and how to reach rtnetlink.
pub struct Node {
    pub sysfs: Sysfs,
    pub root: PathBuf,
    pub bind: BindOptions,
    netlink_factory: NetlinkFactory,
    netlink: Option<Box<dyn VfNetlink>>,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("sysfs", &self.sysfs)
            .field("root", &self.root)
            .finish()
    }
}

/// How long a command waits for another one holding the same device.
const LOCK_WAIT: Duration = Duration::from_secs(10);

impl Node {
    pub fn new(sysfs: Sysfs, root: impl Into<PathBuf>, netlink_factory: NetlinkFactory) -> Self {
        Node {
            sysfs,
            root: root.into(),
            bind: BindOptions::default(),
            netlink_factory,
            netlink: None,
        }
    }

    pub(crate) fn nl(&mut self) -> Result<&mut dyn VfNetlink> {
        if self.netlink.is_none() {
            let nl = (self.netlink_factory)()
                .map_err(|e| CniError::io(format!("failed to open a netlink socket: {e}")))?;
            self.netlink = Some(nl);
        }
        Ok(self.netlink.as_deref_mut().expect("set above"))
    }

    /// The path user space sees for a node file (the fake root stripped).
    fn node_path(&self, p: &Path) -> PathBuf {
        match p.strip_prefix(&self.root) {
            Ok(rel) => Path::new("/").join(rel),
            Err(_) => p.to_path_buf(),
        }
    }
}

/// The device an ADD is about, found in sysfs.
#[derive(Debug, Clone)]
struct Target {
    device: PciAddress,
    pf: Option<PciAddress>,
    pf_ifname: Option<String>,
    vf_index: Option<u32>,
}

fn first_netdev(sysfs: &Sysfs, addr: PciAddress) -> Result<Option<String>> {
    Ok(sysfs.device(addr)?.net_names()?.into_iter().next())
}

/// Looks the configured device up and checks it is what the netconf says.
fn resolve(node: &Node, plan: &Plan) -> Result<Target> {
    let sysfs = &node.sysfs;
    let not_found = |what: String| CniError::new(code::DEVICE_NOT_FOUND, what);
    match &plan.device {
        DeviceRef::Pci(addr) => {
            let dev = sysfs.device(*addr).map_err(|_| {
                not_found(format!(
                    "PCI device {addr} does not exist on this node: check deviceID (ls /sys/bus/pci/devices)"
                ))
            })?;
            match dev.physfn()? {
                Some(pf) => {
                    if plan.pf_only {
                        return Err(CniError::netconf(format!(
                            "pfOnly is set but {addr} is a VF of {pf}: name the PF or drop pfOnly"
                        )));
                    }
                    let vf_index = dev.vf_index()?;
                    Ok(Target {
                        device: *addr,
                        pf: Some(pf),
                        pf_ifname: first_netdev(sysfs, pf)?,
                        vf_index: Some(vf_index),
                    })
                }
                None if plan.pf_only => pf_target(sysfs, *addr),
                None => Err(CniError::netconf(format!(
                    "{addr} is not a VF (it has no physfn): to hand the whole PF to the pod set \"pfOnly\": true"
                ))),
            }
        }
        DeviceRef::Master(m) => Err(CniError::netconf(format!(
            "master {m:?} names a macvlan parent, not a device to hand over"
        ))),
        DeviceRef::PfVf { master, vf } => {
            let pf = sysfs.device_of_netdev(master).map_err(|_| {
                not_found(format!(
                    "master {master:?} is not a PCI network interface on this node"
                ))
            })?;
            if plan.pf_only {
                return pf_target(sysfs, pf);
            }
            let pfdev = sysfs.device(pf)?;
            let numvfs = pfdev.sriov_numvfs()?.unwrap_or(0);
            if *vf >= numvfs {
                return Err(CniError::netconf(format!(
                    "VF index {vf} is past sriov_numvfs {numvfs} of {master} ({pf}): use 0 to {} or create more VFs",
                    numvfs.saturating_sub(1)
                )));
            }
            let device = pfdev
                .virtfn(*vf)?
                .ok_or_else(|| not_found(format!("{master} ({pf}) has no virtfn{vf} link")))?;
            Ok(Target {
                device,
                pf: Some(pf),
                pf_ifname: Some(master.clone()),
                vf_index: Some(*vf),
            })
        }
    }
}

fn pf_target(sysfs: &Sysfs, pf: PciAddress) -> Result<Target> {
    let numvfs = sysfs.device(pf)?.sriov_numvfs()?.unwrap_or(0);
    if numvfs > 0 {
        return Err(CniError::netconf(format!(
            "pfOnly: {pf} has {numvfs} VFs enabled; a PF with VFs cannot go to a pod (echo 0 > sriov_numvfs first)"
        )));
    }
    Ok(Target {
        device: pf,
        pf: None,
        pf_ifname: None,
        vf_index: None,
    })
}

fn claim_of(a: &Attachment) -> Claim {
    Claim {
        network: a.network.clone(),
        container_id: a.container_id.clone(),
        ifname: a.ifname.clone(),
    }
}

/// The netconf the IPAM plugin gets: ours as given, or rebuilt from the record (GC).
fn ipam_netconf(stdin_conf: Option<&Value>, a: &Attachment) -> Option<Value> {
    let ipam = a.ipam.as_ref()?;
    match stdin_conf {
        Some(c) if c.get("ipam").is_some() => Some(c.clone()),
        _ => Some(
            json!({ "cniVersion": a.cni_version, "name": a.network, "type": "dpdk-cni", "ipam": ipam }),
        ),
    }
}

pub(crate) fn ipam_call(
    env: &CniEnv,
    a: &Attachment,
    command: &str,
    conf: &Value,
) -> Result<Option<Value>> {
    let ty = config::ipam_type(conf.get("ipam").unwrap_or(&Value::Null))?;
    let bin = ipam::find(ty, &env.path)?;
    let args = env
        .args
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(";");
    let path = env
        .path
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(":");
    let call = ipam::Call {
        binary: &bin,
        container_id: &a.container_id,
        netns: &a.netns,
        ifname: &a.ifname,
        args: &args,
        cni_path: &path,
    };
    ipam::exec(&call, command, conf)
}

/// A container has at most one attachment per network and interface name.
pub(crate) fn refuse_second_attachment(ledger: &Ledger, me: &Claim) -> Result<()> {
    if ledger
        .load(&me.network, &me.container_id, &me.ifname)?
        .is_some()
    {
        return Err(CniError::new(
            code::DEVICE_BUSY,
            format!(
                "container {} already has an attachment {} on network {}: DEL it first",
                me.container_id, me.ifname, me.network
            ),
        ));
    }
    Ok(())
}

/// Applies the netconf's VF settings through the PF, if the device is a VF
/// and any are set.
pub(crate) fn apply_vf(node: &mut Node, plan: &Plan, att: &Attachment) -> Result<()> {
    if let (Some(pf), Some(vf), Some(orig)) = (&att.pf_ifname, att.vf_index, &att.original_vf) {
        netlink::apply_vf_settings(node.nl()?, pf, vf, &plan.vf, orig)?;
    }
    Ok(())
}

/// Checks the node can give `dev` to user space through vfio-pci.
fn vfio_ready(sysfs: &Sysfs, dev: PciAddress) -> Result<(Option<u32>, IommuMode)> {
    if !sysfs.vfio_pci_loaded() {
        return Err(CniError::new(
            code::VFIO_UNAVAILABLE,
            "the vfio-pci driver is not loaded: run modprobe vfio-pci on the node",
        ));
    }
    Ok(sysfs.check_vfio_viable(dev)?)
}

/// CNI ADD.
pub fn add(node: &mut Node, env: &CniEnv, raw: &RawConf, conf: &Value) -> Result<Value> {
    let plan = config::plan(raw, env, &node.root)?;
    let ledger = Ledger::new(&plan.base.state_dir);
    if plan.device_type == DeviceType::Macvlan {
        return crate::kernel::add_macvlan(node, env, &plan, conf, &ledger);
    }
    let target = resolve(node, &plan)?;
    let dev = target.device;
    let sysfs = node.sysfs.clone();

    let mut kind = plan.device_type;
    let mut fallback_reason = None;
    let (mut group, mut mode) = (None, IommuMode::Iommu);
    if kind == DeviceType::VfioPci {
        match vfio_ready(&sysfs, dev) {
            Ok((g, m)) => (group, mode) = (g, m),
            Err(e) if plan.fallback && e.code == code::VFIO_UNAVAILABLE => {
                log::info(&format!(
                    "{dev}: vfio-pci cannot be served ({}); falling back to netdevice",
                    e.msg
                ));
                kind = DeviceType::Netdevice;
                fallback_reason = Some(e.msg);
            }
            Err(e) => return Err(e),
        }
    }
    if !plan.vf.is_empty() && target.pf_ifname.is_none() {
        return Err(CniError::new(
            code::DEVICE_NOT_FOUND,
            format!("VF settings need the PF's netdev, but the PF of {dev} has none (is it bound to its kernel driver?)"),
        ));
    }
    if let Some(ipam) = &plan.base.ipam {
        ipam::find(config::ipam_type(ipam)?, &env.path)?;
    }
    // The kernel path looks at the netdev before anything changes.
    let host_link = match kind {
        DeviceType::Netdevice => Some(crate::kernel::check_netdevice(
            node,
            &plan,
            dev,
            target.pf.is_none(),
        )?),
        _ => None,
    };

    let _lock = ledger.lock_device(&dev.to_string(), LOCK_WAIT)?;
    let me = Claim {
        network: plan.base.name.clone(),
        container_id: env.container_id.clone(),
        ifname: env.ifname.clone(),
    };
    if let Some(holder) = ledger.claim(&dev.to_string())? {
        let msg = if holder == me {
            format!(
                "{dev} is already attached to container {} as {}: DEL it before adding it again",
                me.container_id, me.ifname
            )
        } else {
            format!(
                "{dev} is in use by container {} (network {}, interface {}): pick another device or DEL that attachment",
                holder.container_id, holder.network, holder.ifname
            )
        };
        return Err(CniError::new(code::DEVICE_BUSY, msg));
    }
    refuse_second_attachment(&ledger, &me)?;

    let d = sysfs.device(dev)?;
    // A device the node daemon bound early (no-IOMMU Allocate) goes back to
    // the driver it had before that, not to vfio-pci.
    let (mut original_driver, mut original_override) = (d.driver()?, d.driver_override()?);
    if original_driver.as_deref() == Some(VFIO_PCI) {
        if let Some(p) = ledger.prebound(&dev.to_string())? {
            (original_driver, original_override) = (p.driver, p.driver_override);
        }
    }
    let original_vf = match (&target.pf_ifname, target.vf_index) {
        (Some(pf), Some(vf)) if !plan.vf.is_empty() => Some(node.nl()?.vf_state(pf, vf)?),
        _ => None,
    };
    let mut att = Attachment {
        network: me.network.clone(),
        container_id: me.container_id.clone(),
        ifname: me.ifname.clone(),
        netns: env.netns.clone(),
        cni_version: plan.base.cni_version.clone(),
        phase: Phase::Pending,
        device_type: kind.as_str().into(),
        device: dev.to_string(),
        pf: target.pf.map(|p| p.to_string()),
        pf_ifname: target.pf_ifname.clone(),
        vf_index: target.vf_index,
        iommu_group: group,
        iommu_mode: mode.as_str().into(),
        vfio_device: None,
        numa_node: d.numa_node()?,
        original_driver,
        original_override,
        original_netdevs: d.net_names()?,
        original_vf,
        vf_settings: plan.vf.clone(),
        device_info_file: None,
        ipam: plan.base.ipam.clone(),
        result: None,
        original_link: host_link.map(Into::into),
        macvlan_name: None,
        fallback_reason,
        admin_mac_pinned: false,
        admin_mac_driver_chosen: false,
    };
    att.device_info_file = Some(
        plan.device_info_file
            .clone()
            .unwrap_or_else(|| crate::devinfo::default_path(&node.root, &att)),
    );
    // The one durable write: from here on DEL or GC can undo whatever happens.
    ledger.save(&att, true)?;
    ledger.set_claim(&att.device, &me)?;
    log::info(&format!(
        "ADD {} {}: {dev} as {} (driver {:?}, group {group:?}, NUMA {:?})",
        att.container_id, att.ifname, att.device_type, att.original_driver, att.numa_node
    ));

    let mut ipam_held = false;
    let res = match kind {
        DeviceType::VfioPci => add_steps(node, env, &plan, conf, &ledger, &mut att, &mut ipam_held),
        _ => crate::kernel::netdevice_steps(
            node,
            env,
            &plan,
            conf,
            &ledger,
            &mut att,
            &mut ipam_held,
        ),
    };
    match res {
        Ok(v) => Ok(v),
        Err(e) => {
            log::warn(&format!("ADD of {dev} failed, rolling back: {}", e.msg));
            match teardown(node, env, Some(conf), &ledger, &att, ipam_held) {
                Ok(()) => Err(e),
                Err(te) => Err(e.with_details(format!("rollback also failed: {}", te.msg))),
            }
        }
    }
}

fn add_steps(
    node: &mut Node,
    env: &CniEnv,
    plan: &Plan,
    conf: &Value,
    ledger: &Ledger,
    att: &mut Attachment,
    ipam_held: &mut bool,
) -> Result<Value> {
    failpoint::hit("recorded")?;
    let mode = if att.iommu_mode == IommuMode::NoIommu.as_str() {
        IommuMode::NoIommu
    } else {
        IommuMode::Iommu
    };
    let dev: PciAddress = att.device.parse()?;
    let sysfs = node.sysfs.clone();

    // The pod's MAC is set through the PF, which pins it; DEL sets the
    // original back the same way. Whether it was a pin before is found out
    // now, on the VF's netdev (a real node only: a fake one has no netdevs).
    let orig_mac = att.original_vf.as_ref().map(|v| v.mac);
    if plan.vf.mac.is_some()
        && orig_mac.is_some_and(|m| m != netlink::MacAddr::default())
        && node.root == Path::new("/")
        && crate::kernel::vf_driver_may_choose_mac(node, att)
    {
        att.admin_mac_driver_chosen = true;
        ledger.save(att, false)?;
    }
    apply_vf(node, plan, att)?;
    failpoint::hit("vf-configured")?;

    let driver_dir = sysfs.driver_dir(VFIO_PCI);
    if !driver_dir.exists() {
        return Err(vfio::VfioError::DriverMissing {
            driver: VFIO_PCI.into(),
            path: driver_dir,
        }
        .into());
    }
    if sysfs.device(dev)?.driver()?.as_deref() != Some(VFIO_PCI) {
        sysfs.set_driver_override(dev, Some(VFIO_PCI))?;
        failpoint::hit("override-set")?;
        sysfs.unbind(dev)?;
        failpoint::hit("unbound")?;
        sysfs.drivers_probe(dev)?;
        sysfs.wait_driver(dev, VFIO_PCI, node.bind)?;
    }
    let group = match att.iommu_group {
        Some(g) => g,
        None => sysfs.device(dev)?.iommu_group()?.ok_or_else(|| {
            CniError::new(
                code::BIND_FAILED,
                format!("{dev} has no IOMMU group after binding to vfio-pci"),
            )
        })?,
    };
    let group_node = sysfs.wait_vfio_group_node(group, mode, node.bind)?;
    att.iommu_group = Some(group);
    att.vfio_device = Some(node.node_path(&group_node));
    failpoint::hit("bound")?;

    let mut ipam_result = None;
    if att.ipam.is_some() {
        // The IPAM plugin cleans up after its own failed ADD; asking it to
        // DEL a configuration it just rejected would fail again. So only a
        // successful ADD makes the rollback call IPAM DEL.
        ipam_result = ipam_call(env, att, "ADD", conf)?;
        *ipam_held = true;
    }
    failpoint::hit("ipam-done")?;

    if let Some(p) = &att.device_info_file {
        crate::devinfo::write(p, att)?;
    }
    failpoint::hit("device-info-written")?;

    let mac = plan.vf.mac.map(|m| m.to_string());
    let res = result::add_result(
        &att.cni_version,
        &att.ifname,
        mac,
        &att.netns,
        &att.device,
        ipam_result.as_ref(),
    );
    att.phase = Phase::Complete;
    att.result = Some(res.clone());
    ledger.save(att, false)?;
    log::info(&format!(
        "ADD {} {}: {dev} on vfio-pci, group {group}",
        att.container_id, att.ifname
    ));
    Ok(res)
}

/// Undoes an attachment whatever part of ADD ran: IPAM (when `ipam_held`),
/// device-info file, the netdev (kernel modes), VF settings, driver, each
/// compared with the recorded original. Carries on past failures; the record
/// stays when any step failed so that a later DEL can try again.
pub(crate) fn teardown(
    node: &mut Node,
    env: &CniEnv,
    conf: Option<&Value>,
    ledger: &Ledger,
    att: &Attachment,
    ipam_held: bool,
) -> Result<()> {
    let mut errors: Vec<String> = Vec::new();
    let what = format!("{} {}", att.device_type, att.device);

    if ipam_held {
        if let Some(c) = ipam_netconf(conf, att) {
            if let Err(e) = ipam_call(env, att, "DEL", &c) {
                errors.push(e.msg);
            }
        }
    }
    if let Some(p) = &att.device_info_file {
        match std::fs::remove_file(p) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => errors.push(format!("failed to remove {}: {e}", p.display())),
        }
    }
    match att.device_type.as_str() {
        "macvlan" => errors.extend(crate::kernel::release_macvlan(att)),
        "netdevice" => {
            // The admin MAC first: while one is set the PF refuses the VF
            // driver's request for a MAC (igb: "attempted to override
            // administratively set MAC address"). When the PF reported the
            // netdev's own MAC before ADD, the VF driver had chosen it: clear
            // the admin MAC rather than pin it, and let the netdev restore
            // below ask for it again, as it was. When ADD found the admin MAC
            // pinned, the netdev likewise gets its MAC back unpinned, and the
            // original pin is set again afterwards.
            let mut unpinned = att.clone();
            if let (Some(vf), Some(link)) = (unpinned.original_vf.as_mut(), &att.original_link) {
                if att.admin_mac_pinned || link.mac.as_deref() == Some(vf.mac.to_string().as_str())
                {
                    vf.mac = netlink::MacAddr::default();
                }
            }
            restore_vf(node, &unpinned, &mut errors);
            errors.extend(crate::kernel::release_netdevice(node, att));
            if att.admin_mac_pinned {
                repin_admin_mac(node, att, &mut errors);
            }
        }
        _ => {
            // VF settings go back while no VF driver is bound, so the VF
            // driver starts from the original admin state when it probes again.
            restore_vf(node, att, &mut errors);
            restore_driver(node, att, &mut errors)?;
            if errors.is_empty() {
                errors.extend(crate::kernel::restore_netdev_name(node, att));
            }
            if att.admin_mac_driver_chosen && errors.is_empty() {
                errors.extend(crate::kernel::unpin_vf_mac(node, att));
            }
        }
    }
    if !errors.is_empty() {
        return Err(CniError::io(format!(
            "could not fully release {what}: {}",
            errors.join("; ")
        )));
    }
    if att.device_type != "macvlan" {
        ledger.clear_prebound(&att.device)?;
        ledger.release_claim(&att.device, &claim_of(att))?;
    }
    ledger.remove(att)?;
    log::info(&format!(
        "released {what} of {} {}",
        att.container_id, att.ifname
    ));
    Ok(())
}

/// Sets the original admin MAC again, after the netdev has taken it back.
fn repin_admin_mac(node: &mut Node, att: &Attachment, errors: &mut Vec<String>) {
    if let (Some(pf), Some(vf), Some(orig)) = (&att.pf_ifname, att.vf_index, &att.original_vf) {
        match node.nl() {
            Ok(nl) => {
                if let Err(e) = nl.set_vf_mac(pf, vf, orig.mac) {
                    errors.push(format!(
                        "failed to pin the admin MAC of VF {vf} of {pf} again: {e}"
                    ));
                }
            }
            Err(e) => errors.push(e.msg),
        }
    }
}

fn restore_vf(node: &mut Node, att: &Attachment, errors: &mut Vec<String>) {
    if let (Some(pf), Some(vf), Some(orig)) = (&att.pf_ifname, att.vf_index, &att.original_vf) {
        match node.nl() {
            Ok(nl) => {
                if let Err(e) = netlink::restore_vf_settings(nl, pf, vf, &att.vf_settings, orig) {
                    errors.push(format!("failed to restore VF {vf} of {pf}: {e}"));
                }
            }
            Err(e) => errors.push(e.msg),
        }
    }
}

fn restore_driver(node: &Node, att: &Attachment, errors: &mut Vec<String>) -> Result<()> {
    let dev: PciAddress = att.device.parse()?;
    let sysfs = &node.sysfs;
    let Ok(d) = sysfs.device(dev) else {
        log::warn(&format!("{dev} is gone from the node; nothing to rebind"));
        return Ok(());
    };
    let now = (d.driver()?, d.driver_override()?);
    if now == (att.original_driver.clone(), att.original_override.clone()) {
        return Ok(());
    }
    match sysfs.restore_driver(
        dev,
        att.original_driver.as_deref(),
        att.original_override.as_deref(),
        node.bind,
    ) {
        Ok(()) => {
            if !att.original_netdevs.is_empty() {
                if let Err(e) = sysfs.wait_netdev(dev, node.bind) {
                    errors.push(e.to_string());
                }
            }
        }
        Err(e) => errors.push(format!(
            "failed to give {dev} back to {:?}: {e}",
            att.original_driver
        )),
    }
    Ok(())
}

/// CNI DEL: succeeds when there is nothing (left) to release.
pub fn del(node: &mut Node, env: &CniEnv, raw: &RawConf, conf: &Value) -> Result<()> {
    let base = config::base(raw, &node.root)?;
    let ledger = Ledger::new(&base.state_dir);
    let Some(att) = ledger.load(&base.name, &env.container_id, &env.ifname)? else {
        log::debug(&format!(
            "DEL {} {}: no attachment recorded",
            env.container_id, env.ifname
        ));
        return Ok(());
    };
    let _lock = ledger.lock_device(&att.device, LOCK_WAIT)?;
    // Re-read under the lock: a concurrent DEL may have finished it.
    let Some(att) = ledger.load(&base.name, &env.container_id, &env.ifname)? else {
        return Ok(());
    };
    let ipam_held = att.ipam.is_some();
    teardown(node, env, Some(conf), &ledger, &att, ipam_held)
}

/// CNI CHECK: the device is still on vfio-pci with its group node and the
/// VF settings ADD made.
pub fn check(node: &mut Node, env: &CniEnv, raw: &RawConf, conf: &Value) -> Result<()> {
    let plan = config::plan(raw, env, &node.root)?;
    let ledger = Ledger::new(&plan.base.state_dir);
    let att = ledger
        .load(&plan.base.name, &env.container_id, &env.ifname)?
        .ok_or_else(|| {
            CniError::new(
                code::UNKNOWN_CONTAINER,
                format!(
                    "no attachment {} of container {} on network {}",
                    env.ifname, env.container_id, plan.base.name
                ),
            )
        })?;
    let fail = |m: String| CniError::new(code::CHECK_FAILED, m);
    if att.phase != Phase::Complete {
        return Err(fail(format!(
            "the ADD of {} did not finish (stopped at {:?})",
            att.device, att.phase
        )));
    }
    if att.device_type == "vfio-pci" {
        check_vfio(node, &att)?;
    } else {
        crate::kernel::check_in_pod(&att)?;
    }
    if let (Some(pf), Some(vf)) = (&att.pf_ifname, att.vf_index) {
        if !att.vf_settings.is_empty() {
            let now = node.nl()?.vf_state(pf, vf)?;
            let drift = netlink::vf_drift(&att.vf_settings, &now);
            if !drift.is_empty() {
                return Err(fail(format!(
                    "VF {vf} of {pf} drifted: {}",
                    drift.join(", ")
                )));
            }
        }
    }
    if att.ipam.is_some() {
        ipam_call(env, &att, "CHECK", conf)?;
    }
    Ok(())
}

fn check_vfio(node: &Node, att: &Attachment) -> Result<()> {
    let fail = |m: String| CniError::new(code::CHECK_FAILED, m);
    let dev: PciAddress = att.device.parse()?;
    let d = node
        .sysfs
        .device(dev)
        .map_err(|_| fail(format!("{dev} is no longer on the node")))?;
    let driver = d.driver()?;
    if driver.as_deref() != Some(VFIO_PCI) {
        return Err(fail(format!(
            "{dev} is bound to {}, not vfio-pci: something rebound it behind the plugin's back",
            driver.as_deref().unwrap_or("no driver")
        )));
    }
    if let Some(p) = &att.vfio_device {
        let on_disk = node.root.join(p.strip_prefix("/").unwrap_or(p));
        if !on_disk.exists() {
            return Err(fail(format!("{} vanished", p.display())));
        }
    }
    Ok(())
}

/// CNI STATUS: can this node serve ADD?
pub fn status(node: &Node, raw: &RawConf) -> Result<()> {
    let base: Base = config::base(raw, &node.root)?;
    let mut problems = Vec::new();
    if !node.sysfs.vfio_pci_loaded() {
        problems.push("the vfio-pci driver is not loaded (modprobe vfio-pci)".to_string());
    }
    if node.sysfs.iommu_mode().is_none() {
        problems.push("no IOMMU is on: enable intel_iommu=on/amd_iommu=on (or vfio's enable_unsafe_noiommu_mode)".to_string());
    }
    if let Err(e) = Ledger::new(&base.state_dir).check_writable() {
        problems.push(format!("the state directory is not writable: {}", e.msg));
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(CniError::new(
            code::NOT_AVAILABLE,
            format!("dpdk-cni cannot serve ADD: {}", problems.join("; ")),
        ))
    }
}

/// CNI GC: releases every attachment of this network not in `cni.dev/valid-attachments`.
pub fn gc(node: &mut Node, env: &CniEnv, raw: &RawConf) -> Result<()> {
    let base = config::base(raw, &node.root)?;
    let valid = raw.valid_attachments.clone().ok_or_else(|| {
        CniError::netconf(
            "GC needs cni.dev/valid-attachments in the netconf (an empty list releases everything)",
        )
    })?;
    let ledger = Ledger::new(&base.state_dir);
    let mut errors = Vec::new();
    for att in ledger.list(&base.name)? {
        if valid
            .iter()
            .any(|v| v.container_id == att.container_id && v.ifname == att.ifname)
        {
            continue;
        }
        log::info(&format!(
            "GC: releasing {} of {} {}",
            att.device, att.container_id, att.ifname
        ));
        let res = ledger
            .lock_device(&att.device, LOCK_WAIT)
            .and_then(|_lock| teardown(node, env, None, &ledger, &att, att.ipam.is_some()));
        if let Err(e) = res {
            errors.push(e.msg);
        }
    }
    // Claims whose record is gone (a crash between the two writes).
    for (device, claim) in ledger.claims()? {
        if claim.network == base.name
            && ledger
                .load(&claim.network, &claim.container_id, &claim.ifname)?
                .is_none()
        {
            ledger.release_claim(&device, &claim)?;
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(CniError::io(format!(
            "GC could not release everything: {}",
            errors.join("; ")
        )))
    }
}
