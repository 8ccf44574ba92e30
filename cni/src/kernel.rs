//! The kernel-mode paths, for nodes or workloads that cannot use vfio-pci:
//! `deviceType: netdevice` moves the VF's (or, with `pfOnly`, the PF's)
//! netdev into the pod's network namespace under CNI_IFNAME, the way
//! sriov-cni does; `deviceType: macvlan` makes a bridge-mode macvlan on
//! `master` for nodes with no SR-IOV at all. IPAM addresses and routes are
//! applied in the pod, and the kernel announces them (`arp_notify`,
//! `ndisc_notify`) when the link comes up. A DPDK application reaches such
//! an interface through `net_af_packet`, which the device-info file names.

use std::fs::File;
use std::net::IpAddr;
use std::os::fd::AsRawFd;
use std::path::Path;

use serde_json::Value;
use vfio::PciAddress;

use crate::config::{self, Plan};
use crate::env::CniEnv;
use crate::error::{code, CniError, Result};
use crate::failpoint;
use crate::ledger::{Attachment, Ledger, OriginalLink, Phase};
use crate::log;
use crate::netlink::netns::in_netns;
use crate::netlink::{self, Link, MacAddr, RtNetlink};
use crate::plugin::Node;
use crate::result;

fn host_netlink() -> Result<RtNetlink> {
    RtNetlink::connect().map_err(|e| CniError::io(format!("failed to open a netlink socket: {e}")))
}

fn nl_err(e: netlink::NetlinkError) -> CniError {
    CniError::from(e)
}

/// Finds the device's netdev in the host namespace and, for a whole PF,
/// checks the pfOnly guards. Changes nothing.
pub fn check_netdevice(node: &Node, plan: &Plan, dev: PciAddress, is_pf: bool) -> Result<Link> {
    let d = node.sysfs.device(dev)?;
    let Some(name) = d.net_names()?.into_iter().next() else {
        return Err(CniError::new(
            code::DEVICE_NOT_FOUND,
            format!(
                "{dev} has no network interface (driver {}): netdevice mode needs the device on its kernel driver",
                d.driver()?.as_deref().unwrap_or("none")
            ),
        ));
    };
    let nl = host_netlink()?;
    let link = nl.link_by_name(&name).map_err(nl_err)?.ok_or_else(|| {
        CniError::new(
            code::DEVICE_NOT_FOUND,
            format!("{name}, the interface of {dev}, is not in the plugin's network namespace"),
        )
    })?;
    if is_pf {
        if let Some(allowed) = &plan.allowed_devices {
            if !allowed.iter().any(|a| *a == dev.to_string() || *a == name) {
                return Err(CniError::netconf(format!(
                    "pfOnly: {dev} ({name}) is not in allowedDevices {allowed:?}"
                )));
            }
        }
        if nl
            .default_route_links()
            .map_err(nl_err)?
            .contains(&link.index)
        {
            return Err(CniError::netconf(format!(
                "pfOnly: {name} ({dev}) carries the node's default route; moving it would cut the node off"
            )));
        }
        let used: Vec<String> = nl
            .addresses(&link)
            .map_err(nl_err)?
            .into_iter()
            // An IPv6 link-local address is the kernel's, not the host's configuration.
            .filter(
                |(ip, _)| !matches!(ip, IpAddr::V6(v6) if (v6.segments()[0] & 0xffc0) == 0xfe80),
            )
            .map(|(ip, p)| format!("{ip}/{p}"))
            .collect();
        if !used.is_empty() {
            return Err(CniError::netconf(format!(
                "pfOnly: {name} ({dev}) has addresses the host uses ({}): remove them first",
                used.join(", ")
            )));
        }
    }
    Ok(link)
}

/// An address or route from an IPAM result, parsed.
#[derive(Debug, Clone)]
struct PodIp {
    ip: IpAddr,
    prefix: u8,
    gateway: Option<IpAddr>,
}

#[derive(Debug, Clone)]
struct PodRoute {
    dst: IpAddr,
    prefix: u8,
    gw: Option<IpAddr>,
}

fn parse_cidr(s: &str) -> Option<(IpAddr, u8)> {
    let (a, p) = s.split_once('/')?;
    let ip: IpAddr = a.parse().ok()?;
    let prefix: u8 = p.parse().ok()?;
    let max = if ip.is_ipv4() { 32 } else { 128 };
    (prefix <= max).then_some((ip, prefix))
}

fn ipam_config(ipam: Option<&Value>) -> Result<(Vec<PodIp>, Vec<PodRoute>)> {
    let Some(r) = ipam else {
        return Ok((Vec::new(), Vec::new()));
    };
    let bad = |what: &str, v: &Value| {
        CniError::new(
            code::IPAM_FAILED,
            format!("the IPAM result has an invalid {what}: {v}"),
        )
    };
    let mut ips = Vec::new();
    for ip in r.get("ips").and_then(Value::as_array).into_iter().flatten() {
        let (addr, prefix) = ip
            .get("address")
            .and_then(Value::as_str)
            .and_then(parse_cidr)
            .ok_or_else(|| bad("address", ip))?;
        let gateway = match ip.get("gateway").and_then(Value::as_str) {
            Some(g) => Some(g.parse().map_err(|_| bad("gateway", ip))?),
            None => None,
        };
        ips.push(PodIp {
            ip: addr,
            prefix,
            gateway,
        });
    }
    let mut routes = Vec::new();
    for rt in r
        .get("routes")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let (dst, prefix) = rt
            .get("dst")
            .and_then(Value::as_str)
            .and_then(parse_cidr)
            .ok_or_else(|| bad("route", rt))?;
        let gw = match rt.get("gw").and_then(Value::as_str) {
            Some(g) => Some(g.parse().map_err(|_| bad("route gateway", rt))?),
            // As CNI's ipam helpers do: a route without gw goes via the
            // gateway of the first address of its family.
            None => ips
                .iter()
                .find(|i| i.ip.is_ipv4() == dst.is_ipv4())
                .and_then(|i| i.gateway),
        };
        routes.push(PodRoute { dst, prefix, gw });
    }
    Ok((ips, routes))
}

/// What to do to the link once it is in the pod's namespace.
#[derive(Debug, Clone)]
struct PodIface {
    from: String,
    to: String,
    mac: Option<MacAddr>,
    mtu: Option<u32>,
    ips: Vec<PodIp>,
    routes: Vec<PodRoute>,
}

fn write_sysctl(path: &str, value: &str) {
    // Best effort: IPv6 may be disabled in the pod.
    let _ = std::fs::write(path, value);
}

/// Inside the pod: rename, MAC, MTU, addresses, up (announced), routes.
fn configure_in_pod(cfg: PodIface) -> Result<Link> {
    let nl = host_netlink()?;
    let mut link = nl.link_by_name(&cfg.from).map_err(nl_err)?.ok_or_else(|| {
        CniError::io(format!(
            "{} did not arrive in the pod's network namespace",
            cfg.from
        ))
    })?;
    if link.up {
        nl.set_link_up(&link, false).map_err(nl_err)?;
    }
    if cfg.from != cfg.to {
        if nl.link_by_name(&cfg.to).map_err(nl_err)?.is_some() {
            return Err(CniError::new(
                code::INVALID_ENV,
                format!(
                    "the pod already has an interface named {}: pick another CNI_IFNAME",
                    cfg.to
                ),
            ));
        }
        nl.rename_link(&link, &cfg.to).map_err(nl_err)?;
        link.name = cfg.to.clone();
    }
    if let Some(mac) = cfg.mac {
        nl.set_link_mac(&link, mac).map_err(nl_err)?;
    }
    if let Some(mtu) = cfg.mtu {
        nl.set_link_mtu(&link, mtu).map_err(nl_err)?;
    }
    // Let the kernel announce address changes too: arp_notify on MAC
    // changes, ndisc_notify an unsolicited NA once IPv6 DAD completes.
    // See Documentation/networking/ip-sysctl.rst.
    write_sysctl(
        &format!("/proc/sys/net/ipv4/conf/{}/arp_notify", cfg.to),
        "1",
    );
    write_sysctl(
        &format!("/proc/sys/net/ipv6/conf/{}/ndisc_notify", cfg.to),
        "1",
    );
    for ip in &cfg.ips {
        nl.add_address(&link, ip.ip, ip.prefix).map_err(nl_err)?;
    }
    nl.set_link_up(&link, true).map_err(nl_err)?;
    for r in &cfg.routes {
        nl.add_route(&link, r.dst, r.prefix, r.gw).map_err(nl_err)?;
    }
    let link = wait_for_carrier(&nl, &cfg.to)?;
    if !link.lower_up {
        log::info(&format!(
            "{} has no carrier yet; not announcing its addresses",
            cfg.to
        ));
    } else if let Some(mac) = link.mac {
        for ip in &cfg.ips {
            if let IpAddr::V4(v4) = ip.ip {
                if let Err(e) = netlink::garp::send_gratuitous_arp(link.index, mac, v4) {
                    log::warn(&format!(
                        "gratuitous ARP for {v4} on {} failed: {e}",
                        cfg.to
                    ));
                }
            }
        }
    }
    Ok(link)
}

/// How long ADD waits for carrier before announcing the addresses anyway.
const CARRIER_WAIT: std::time::Duration = std::time::Duration::from_millis(1000);

/// Waits (bounded) for the link to report carrier: an announcement sent
/// before it would go nowhere.
fn wait_for_carrier(nl: &RtNetlink, name: &str) -> Result<Link> {
    let start = std::time::Instant::now();
    loop {
        let link = nl
            .link_by_name(name)
            .map_err(nl_err)?
            .ok_or_else(|| CniError::io(format!("{name} vanished from the pod")))?;
        if link.lower_up || start.elapsed() >= CARRIER_WAIT {
            if !link.lower_up {
                log::warn(&format!(
                    "{name} has no carrier after {CARRIER_WAIT:?}; announcing anyway"
                ));
            }
            return Ok(link);
        }
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
}

fn open_netns(path: &str) -> Result<File> {
    File::open(path).map_err(|e| {
        CniError::new(
            code::UNKNOWN_CONTAINER,
            format!("cannot open the pod's network namespace {path:?}: {e}"),
        )
    })
}

/// Moves `link` from the host into the pod and configures it there.
fn move_and_configure(env: &CniEnv, att: &Attachment, link: &Link, cfg: PodIface) -> Result<Link> {
    let host = host_netlink()?;
    let ns = open_netns(&env.netns)?;
    if link.up {
        host.set_link_up(link, false).map_err(nl_err)?;
    }
    host.move_link_to_netns(link, ns.as_raw_fd())
        .map_err(nl_err)?;
    failpoint::hit("moved")?;
    let netns = att.netns.clone();
    in_netns(Path::new(&netns), move || configure_in_pod(cfg))
        .map_err(|e| CniError::io(format!("failed to enter {netns}: {e}")))?
}

fn finish(
    plan: &Plan,
    ledger: &Ledger,
    att: &mut Attachment,
    link: &Link,
    ipam_result: Option<&Value>,
) -> Result<Value> {
    if let Some(p) = &att.device_info_file {
        crate::devinfo::write(p, att)?;
    }
    failpoint::hit("device-info-written")?;
    let pci = if att.device_type == "macvlan" {
        ""
    } else {
        att.device.as_str()
    };
    let mut res = result::add_result(
        &att.cni_version,
        &att.ifname,
        link.mac.map(|m| m.to_string()),
        &att.netns,
        pci,
        ipam_result,
    );
    if pci.is_empty() {
        if let Some(i) = res["interfaces"][0].as_object_mut() {
            i.remove("pciID");
        }
    }
    if let Some(m) = plan.mtu {
        res["interfaces"][0]["mtu"] = m.into();
    }
    att.phase = Phase::Complete;
    att.result = Some(res.clone());
    ledger.save(att, false)?;
    log::info(&format!(
        "ADD {} {}: {} in the pod as {}",
        att.container_id, att.ifname, att.device_type, att.ifname
    ));
    Ok(res)
}

/// The netdevice steps of ADD, after the record is written.
pub fn netdevice_steps(
    node: &mut Node,
    env: &CniEnv,
    plan: &Plan,
    conf: &Value,
    ledger: &Ledger,
    att: &mut Attachment,
    ipam_held: &mut bool,
) -> Result<Value> {
    failpoint::hit("recorded")?;
    let orig = att
        .original_link
        .clone()
        .ok_or_else(|| CniError::io("no netdev recorded"))?;
    let host = host_netlink()?;
    let mut link = host
        .link_by_name(&orig.name)
        .map_err(nl_err)?
        .ok_or_else(|| {
            CniError::new(
                code::DEVICE_NOT_FOUND,
                format!("{} vanished from the host", orig.name),
            )
        })?;
    // The netdev's MAC goes first: a VF driver asks the PF for it, and the
    // PF refuses once an administrative MAC is set (igb answers
    // EADDRNOTAVAIL), even the same one. The admin MAC then pins it.
    if let Some(mac) = plan.vf.mac.filter(|m| link.mac != Some(*m)) {
        if link.up {
            host.set_link_up(&link, false).map_err(nl_err)?;
            link.up = false;
        }
        if !host.try_set_link_mac(&link, mac).map_err(nl_err)? {
            unpin_admin_mac(node, ledger, att)?;
            host.set_link_mac(&link, mac).map_err(nl_err)?;
        }
        link.mac = Some(mac);
    }
    crate::plugin::apply_vf(node, plan, att)?;
    failpoint::hit("vf-configured")?;
    let ipam_result = run_ipam(env, att, conf, ipam_held)?;
    failpoint::hit("ipam-done")?;
    let (ips, routes) = ipam_config(ipam_result.as_ref())?;
    let cfg = PodIface {
        from: orig.name.clone(),
        to: att.ifname.clone(),
        mac: None,
        mtu: plan.mtu,
        ips,
        routes,
    };
    let link = move_and_configure(env, att, &link, cfg)?;
    finish(plan, ledger, att, &link, ipam_result.as_ref())
}

/// The PF refused the VF driver a new MAC: an administrative MAC pins it.
/// Records that (DEL pins the original again), then clears the pin with
/// the all-zero MAC, which igb-like PFs take as "the VF chooses".
fn unpin_admin_mac(node: &mut Node, ledger: &Ledger, att: &mut Attachment) -> Result<()> {
    let (Some(pf), Some(vf)) = (att.pf_ifname.clone(), att.vf_index) else {
        return Err(CniError::io(format!(
            "{} refused the MAC and has no PF to clear an admin MAC through",
            att.device
        )));
    };
    att.admin_mac_pinned = true;
    ledger.save(att, true)?;
    node.nl()?
        .set_vf_mac(&pf, vf, MacAddr::default())
        .map_err(|e| {
            CniError::new(
                code::VF_SETTING_REFUSED,
                format!("VF {vf} of {pf} has an administrative MAC that could not be cleared to set the pod's MAC: {e}"),
            )
        })
}

/// After a vfio-pci DEL gave the device back to its kernel driver: the new
/// netdev gets the name it had before ADD (the kernel hands out the first
/// free `ethN`, which another device may have taken meanwhile). A name now
/// held by another link is left alone, with a warning.
pub fn restore_netdev_name(node: &Node, att: &Attachment) -> Vec<String> {
    let Some(orig) = att.original_netdevs.first() else {
        return Vec::new();
    };
    let Some(now) = current_netdev(node, att) else {
        return Vec::new();
    };
    if &now == orig {
        return Vec::new();
    }
    let r = (|| -> Result<()> {
        let nl = host_netlink()?;
        if nl.link_by_name(orig).map_err(nl_err)?.is_some() {
            log::warn(&format!(
                "{} is back as {now}: its name before ADD, {orig}, belongs to another link now",
                att.device
            ));
            return Ok(());
        }
        let Some(link) = nl.link_by_name(&now).map_err(nl_err)? else {
            return Ok(());
        };
        if link.up {
            nl.set_link_up(&link, false).map_err(nl_err)?;
        }
        nl.rename_link(&link, orig).map_err(nl_err)?;
        if link.up {
            let renamed = Link {
                name: orig.clone(),
                ..link
            };
            nl.set_link_up(&renamed, true).map_err(nl_err)?;
        }
        Ok(())
    })();
    match r {
        Ok(()) => Vec::new(),
        Err(e) => vec![format!("failed to rename {now} back to {orig}: {}", e.msg)],
    }
}

/// The netdev the attachment's device has in the host now, if any.
fn current_netdev(node: &Node, att: &Attachment) -> Option<String> {
    let addr = att.device.parse::<PciAddress>().ok()?;
    let names = node.sysfs.device(addr).ok()?.net_names().ok()?;
    names.into_iter().next()
}

/// A unicast neighbour of `mac`: the kernel skips a change to the same
/// address, so asking a VF driver for it proves nothing.
fn neighbour_mac(mac: MacAddr) -> MacAddr {
    let mut b = mac.0;
    b[5] ^= 1;
    MacAddr(b)
}

/// Whether the PF lets the VF driver of `att`'s device choose its MAC (no
/// administrative pin): its netdev asks for a neighbour address, and the
/// answer counts only when the PF's own view follows (igbvf reports success
/// when its mailbox to the PF timed out). The MAC is put back either way; a
/// PF that pins refuses (EADDRNOTAVAIL) and nothing changes.
pub fn vf_driver_may_choose_mac(node: &mut Node, att: &Attachment) -> bool {
    let (Some(pf), Some(vf), Some(name)) =
        (&att.pf_ifname, att.vf_index, att.original_netdevs.first())
    else {
        return false;
    };
    let Ok(nl) = host_netlink() else {
        return false;
    };
    let Ok(Some(link)) = nl.link_by_name(name) else {
        return false;
    };
    let Some(mac) = link.mac else {
        return false;
    };
    let probe = neighbour_mac(mac);
    if !matches!(nl.try_set_link_mac(&link, probe), Ok(true)) {
        return false;
    }
    let taken = node
        .nl()
        .ok()
        .and_then(|n| n.vf_state(pf, vf).ok())
        .is_some_and(|s| s.mac == probe);
    if let Err(e) = nl.set_link_mac(&link, mac) {
        // The driver is unbound next; rebinding it at DEL resets the address.
        log::warn(&format!("{name}: putting MAC {mac} back failed: {e}"));
    }
    taken
}

/// After a vfio-pci DEL gave the VF back to its driver with the original
/// admin MAC (which pins it): clears the pin and has the driver ask for that
/// MAC itself, as it had before ADD. Returns what could not be done.
pub fn unpin_vf_mac(node: &mut Node, att: &Attachment) -> Vec<String> {
    let (Some(pf), Some(vf), Some(orig)) = (&att.pf_ifname, att.vf_index, &att.original_vf) else {
        return Vec::new();
    };
    if orig.mac == MacAddr::default() {
        return Vec::new();
    }
    let Some(name) = current_netdev(node, att) else {
        return vec![format!(
            "{}: no netdev to give MAC {} back to",
            att.device, orig.mac
        )];
    };
    let r = (|| -> Result<()> {
        let nl = host_netlink()?;
        let link = nl
            .link_by_name(&name)
            .map_err(nl_err)?
            .ok_or_else(|| CniError::io(format!("{name} vanished")))?;
        node.nl()?.set_vf_mac(pf, vf, MacAddr::default())?;
        nl.set_link_mac(&link, neighbour_mac(orig.mac))
            .map_err(nl_err)?;
        nl.set_link_mac(&link, orig.mac).map_err(nl_err)
    })();
    match r {
        Ok(()) => Vec::new(),
        Err(e) => vec![format!(
            "failed to unpin the MAC of VF {vf} of {pf}: {}",
            e.msg
        )],
    }
}

fn run_ipam(
    env: &CniEnv,
    att: &Attachment,
    conf: &Value,
    ipam_held: &mut bool,
) -> Result<Option<Value>> {
    if att.ipam.is_none() {
        return Ok(None);
    }
    let r = crate::plugin::ipam_call(env, att, "ADD", conf)?;
    *ipam_held = true;
    Ok(r)
}

/// A host-side name for a new macvlan, unique per attachment and at most 15 bytes.
fn macvlan_name(container_id: &str, ifname: &str) -> String {
    // FNV-1a over "<container>/<ifname>".
    let mut h: u32 = 0x811c_9dc5;
    for b in container_id.bytes().chain([b'/']).chain(ifname.bytes()) {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    format!("dcni{h:08x}")
}

/// ADD for `deviceType: macvlan`.
pub fn add_macvlan(
    node: &mut Node,
    env: &CniEnv,
    plan: &Plan,
    conf: &Value,
    ledger: &Ledger,
) -> Result<Value> {
    let config::DeviceRef::Master(master) = &plan.device else {
        return Err(CniError::netconf("deviceType macvlan needs master"));
    };
    if let Some(ipam) = &plan.base.ipam {
        crate::ipam::find(config::ipam_type(ipam)?, &env.path)?;
    }
    let host = host_netlink()?;
    let master_link = host.link_by_name(master).map_err(nl_err)?.ok_or_else(|| {
        CniError::new(
            code::DEVICE_NOT_FOUND,
            format!("master {master:?} does not exist on this node"),
        )
    })?;
    crate::plugin::refuse_second_attachment(
        ledger,
        &crate::ledger::Claim {
            network: plan.base.name.clone(),
            container_id: env.container_id.clone(),
            ifname: env.ifname.clone(),
        },
    )?;
    let tmp = macvlan_name(&env.container_id, &env.ifname);
    let mut att = Attachment {
        network: plan.base.name.clone(),
        container_id: env.container_id.clone(),
        ifname: env.ifname.clone(),
        netns: env.netns.clone(),
        cni_version: plan.base.cni_version.clone(),
        phase: Phase::Pending,
        device_type: "macvlan".into(),
        device: master.clone(),
        pf: None,
        pf_ifname: None,
        vf_index: None,
        iommu_group: None,
        iommu_mode: String::new(),
        vfio_device: None,
        numa_node: None,
        original_driver: None,
        original_override: None,
        original_netdevs: Vec::new(),
        original_vf: None,
        vf_settings: Default::default(),
        device_info_file: None,
        ipam: plan.base.ipam.clone(),
        result: None,
        original_link: None,
        macvlan_name: Some(tmp.clone()),
        fallback_reason: None,
        admin_mac_pinned: false,
        admin_mac_driver_chosen: false,
    };
    att.device_info_file = Some(
        plan.device_info_file
            .clone()
            .unwrap_or_else(|| crate::devinfo::default_path(&node.root, &att)),
    );
    ledger.save(&att, true)?;
    let mut ipam_held = false;
    let res = (|| {
        failpoint::hit("recorded")?;
        let ipam_result = run_ipam(env, &att, conf, &mut ipam_held)?;
        failpoint::hit("ipam-done")?;
        host.add_macvlan(&tmp, &master_link).map_err(nl_err)?;
        let link = host
            .link_by_name(&tmp)
            .map_err(nl_err)?
            .ok_or_else(|| CniError::io(format!("macvlan {tmp} was not created")))?;
        let (ips, routes) = ipam_config(ipam_result.as_ref())?;
        let cfg = PodIface {
            from: tmp.clone(),
            to: att.ifname.clone(),
            mac: None,
            mtu: plan.mtu,
            ips,
            routes,
        };
        let link = move_and_configure(env, &att, &link, cfg)?;
        finish(plan, ledger, &mut att, &link, ipam_result.as_ref())
    })();
    match res {
        Ok(v) => Ok(v),
        Err(e) => {
            log::warn(&format!(
                "ADD of a macvlan on {master} failed, rolling back: {}",
                e.msg
            ));
            match crate::plugin::teardown(node, env, Some(conf), ledger, &att, ipam_held) {
                Ok(()) => Err(e),
                Err(te) => Err(e.with_details(format!("rollback also failed: {}", te.msg))),
            }
        }
    }
}

/// Undoes a macvlan attachment: deletes the link in the pod (or, after a
/// crash before the move, in the host). Returns what could not be done.
pub fn release_macvlan(att: &Attachment) -> Vec<String> {
    let mut errors = Vec::new();
    if !att.netns.is_empty() && Path::new(&att.netns).exists() {
        let ifname = att.ifname.clone();
        let r = in_netns(Path::new(&att.netns), move || -> Result<()> {
            let nl = host_netlink()?;
            if let Some(l) = nl.link_by_name(&ifname).map_err(nl_err)? {
                nl.delete_link(&l).map_err(nl_err)?;
            }
            Ok(())
        });
        match r {
            Ok(Ok(())) => {}
            Ok(Err(e)) => errors.push(e.msg),
            Err(e) => errors.push(format!("failed to enter {}: {e}", att.netns)),
        }
    }
    if let Some(tmp) = &att.macvlan_name {
        match host_netlink().and_then(|nl| {
            if let Some(l) = nl.link_by_name(tmp).map_err(nl_err)? {
                nl.delete_link(&l).map_err(nl_err)?;
            }
            Ok(())
        }) {
            Ok(()) => {}
            Err(e) => errors.push(e.msg),
        }
    }
    errors
}

/// Brings a netdev back to the host under its original name, MAC, MTU and
/// state, wherever a crashed or finished ADD left it. Returns what could
/// not be done.
pub fn release_netdevice(node: &Node, att: &Attachment) -> Vec<String> {
    let mut errors = Vec::new();
    let Some(orig) = att.original_link.clone() else {
        return errors;
    };
    let host_ns = match File::open("/proc/self/ns/net") {
        Ok(f) => f,
        Err(e) => return vec![format!("cannot open the host network namespace: {e}")],
    };
    // 1. From the pod back to the host, if the pod and the link are still there.
    if !att.netns.is_empty() && Path::new(&att.netns).exists() {
        let (ifname, orig_name) = (att.ifname.clone(), orig.name.clone());
        let fd = host_ns.as_raw_fd();
        let r = in_netns(Path::new(&att.netns), move || -> Result<()> {
            let nl = host_netlink()?;
            let found = match nl.link_by_name(&ifname).map_err(nl_err)? {
                Some(l) => Some(l),
                None => nl.link_by_name(&orig_name).map_err(nl_err)?,
            };
            if let Some(l) = found {
                nl.set_link_up(&l, false).map_err(nl_err)?;
                nl.move_link_to_netns(&l, fd).map_err(nl_err)?;
            }
            Ok(())
        });
        match r {
            Ok(Ok(())) => {}
            Ok(Err(e)) => errors.push(e.msg),
            Err(e) => errors.push(format!("failed to enter {}: {e}", att.netns)),
        }
    }
    // 2. In the host: find it by its names or, when the kernel brought it
    //    back from a deleted namespace under another name, by PCI address.
    let nl = match host_netlink() {
        Ok(nl) => nl,
        Err(e) => {
            errors.push(e.msg);
            return errors;
        }
    };
    let find = |errors: &mut Vec<String>| {
        let mut candidates = vec![orig.name.clone(), att.ifname.clone()];
        if let Ok(addr) = att.device.parse::<PciAddress>() {
            if let Ok(d) = node.sysfs.device(addr) {
                candidates.extend(d.net_names().unwrap_or_default());
            }
        }
        for c in &candidates {
            match nl.link_by_name(c) {
                Ok(Some(l)) => return Some(l),
                Ok(None) => {}
                Err(e) => errors.push(e.to_string()),
            }
        }
        None
    };
    let mut link = find(&mut errors);
    if link.is_none() {
        // The pod's namespace is being torn down: the kernel hands a
        // physical netdev back to the host asynchronously. Wait (bounded)
        // for it to show up under its PCI device again.
        if let Ok(addr) = att.device.parse::<PciAddress>() {
            let bound = node
                .sysfs
                .device(addr)
                .and_then(|d| d.driver())
                .ok()
                .flatten()
                .is_some();
            if bound && node.sysfs.wait_netdev(addr, node.bind).is_ok() {
                link = find(&mut errors);
            }
        }
    }
    let Some(link) = link else {
        // A virtual stand-in dies with its namespace; a real VF always comes back.
        log::warn(&format!(
            "the netdev {} of {} is gone; nothing to restore",
            orig.name, att.device
        ));
        return errors;
    };
    if let Err(e) = restore_link(&nl, link, &orig) {
        errors.push(e.to_string());
    }
    errors
}

fn restore_link(nl: &RtNetlink, mut link: Link, orig: &OriginalLink) -> netlink::Result<()> {
    let orig_mac: Option<MacAddr> = orig.mac.as_deref().and_then(|m| m.parse().ok());
    let needs_down = link.name != orig.name || (orig_mac.is_some() && link.mac != orig_mac);
    if needs_down && link.up {
        nl.set_link_up(&link, false)?;
        link.up = false;
    }
    if link.name != orig.name {
        nl.rename_link(&link, &orig.name)?;
        link.name = orig.name.clone();
    }
    if let Some(m) = orig_mac {
        if link.mac != Some(m) {
            nl.set_link_mac(&link, m)?;
        }
    }
    if link.mtu != orig.mtu && orig.mtu != 0 {
        nl.set_link_mtu(&link, orig.mtu)?;
    }
    if link.up != orig.up {
        nl.set_link_up(&link, orig.up)?;
    }
    Ok(())
}

/// CHECK for the kernel modes: the interface is in the pod under CNI_IFNAME.
pub fn check_in_pod(att: &Attachment) -> Result<()> {
    let ns = att.netns.clone();
    if !Path::new(&ns).exists() {
        return Err(CniError::new(
            code::CHECK_FAILED,
            format!("the pod's network namespace {ns} is gone"),
        ));
    }
    let ifname = att.ifname.clone();
    let found = in_netns(Path::new(&ns), move || {
        host_netlink().and_then(|nl| nl.link_by_name(&ifname).map_err(nl_err))
    })
    .map_err(|e| CniError::io(format!("failed to enter {ns}: {e}")))??;
    match found {
        Some(l) if l.up => Ok(()),
        Some(_) => Err(CniError::new(
            code::CHECK_FAILED,
            format!("{} in the pod is down", att.ifname),
        )),
        None => Err(CniError::new(
            code::CHECK_FAILED,
            format!("the pod has no interface {}", att.ifname),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn macvlan_names_fit_and_differ() {
        let a = macvlan_name("0123456789abcdef0123456789abcdef", "net1");
        let b = macvlan_name("0123456789abcdef0123456789abcdef", "net2");
        assert!(a.len() <= 15 && a.starts_with("dcni"));
        assert_ne!(a, b);
    }

    #[test]
    fn ipam_routes_without_gw_use_the_address_gateway() {
        let r = serde_json::json!({"ips":[{"address":"10.1.0.5/24","gateway":"10.1.0.1"}],
                                    "routes":[{"dst":"0.0.0.0/0"},{"dst":"192.168.0.0/16","gw":"10.1.0.254"}]});
        let (ips, routes) = ipam_config(Some(&r)).unwrap();
        assert_eq!(ips[0].prefix, 24);
        assert_eq!(routes[0].gw, Some("10.1.0.1".parse().unwrap()));
        assert_eq!(routes[1].gw, Some("10.1.0.254".parse().unwrap()));
        let bad = serde_json::json!({"ips":[{"address":"10.1.0.5/40"}]});
        assert_eq!(ipam_config(Some(&bad)).unwrap_err().code, code::IPAM_FAILED);
    }
}
