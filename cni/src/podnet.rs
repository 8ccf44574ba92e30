//! The pod's side of the kernel modes: the interface moved into the pod's
//! network namespace, renamed, given its MAC, MTU, IPAM addresses and
//! routes, brought up and announced; and CHECK of it there.

use std::fs::File;
use std::net::IpAddr;
use std::os::fd::AsRawFd;
use std::path::Path;

use ledger::{Attachment, DeviceType, Ledger, Phase};
use netlink::netns::in_netns;
use netlink::{Link, MacAddr, RtNetlink};
use serde_json::Value;

use crate::devinfo;
use crate::env::CniEnv;
use crate::error::{code, CniError, Result};
use crate::failpoint;
use crate::log;
use crate::node::host_netlink;
use crate::plan::Plan;
use crate::result;

/// An address or route from an IPAM result, parsed.
#[derive(Debug, Clone)]
pub struct PodIp {
    ip: IpAddr,
    prefix: u8,
    gateway: Option<IpAddr>,
}

#[derive(Debug, Clone)]
pub struct PodRoute {
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

/// A 0.1.0/0.2.0 IPAM answer (`ip4`/`ip6` blocks with `ip`, `gateway`,
/// `routes`) in the current shape (`ips`, `routes`), as libcni converts it.
fn from_legacy(r: &Value) -> Value {
    let (mut ips, mut routes) = (Vec::new(), Vec::new());
    for key in ["ip4", "ip6"] {
        let Some(b) = r.get(key) else { continue };
        let mut ip = serde_json::json!({"address": b.get("ip").cloned().unwrap_or(Value::Null)});
        if let Some(g) = b.get("gateway") {
            ip["gateway"] = g.clone();
        }
        ips.push(ip);
        routes.extend(
            b.get("routes")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .cloned(),
        );
    }
    serde_json::json!({"ips": ips, "routes": routes})
}

pub fn ipam_config(ipam: Option<&Value>) -> Result<(Vec<PodIp>, Vec<PodRoute>)> {
    let Some(r) = ipam else {
        return Ok((Vec::new(), Vec::new()));
    };
    let bad = |what: &str, v: &Value| {
        CniError::new(
            code::IPAM_FAILED,
            format!("the IPAM result has an invalid {what}: {v}"),
        )
    };
    let current;
    let r = if r.get("ips").is_none() && (r.get("ip4").is_some() || r.get("ip6").is_some()) {
        current = from_legacy(r);
        &current
    } else {
        r
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
pub struct PodIface {
    pub from: String,
    pub to: String,
    pub mac: Option<MacAddr>,
    pub mtu: Option<u32>,
    pub ips: Vec<PodIp>,
    pub routes: Vec<PodRoute>,
}

fn write_sysctl(path: &str, value: &str) {
    // Best effort: IPv6 may be disabled in the pod.
    let _ = std::fs::write(path, value);
}

/// Inside the pod: rename, MAC, MTU, addresses, up (announced), routes.
fn configure_in_pod(cfg: PodIface) -> Result<Link> {
    let nl = host_netlink()?;
    let mut link = nl.link_by_name(&cfg.from)?.ok_or_else(|| {
        CniError::io(format!(
            "{} did not arrive in the pod's network namespace",
            cfg.from
        ))
    })?;
    if link.up {
        nl.set_link_up(&link, false)?;
    }
    if cfg.from != cfg.to {
        if nl.link_by_name(&cfg.to)?.is_some() {
            return Err(CniError::new(
                code::INVALID_ENV,
                format!(
                    "the pod already has an interface named {}: pick another CNI_IFNAME",
                    cfg.to
                ),
            ));
        }
        nl.rename_link(&link, &cfg.to)?;
        link.name = cfg.to.clone();
    }
    if let Some(mac) = cfg.mac {
        nl.set_link_mac(&link, mac)?;
    }
    if let Some(mtu) = cfg.mtu {
        nl.set_link_mtu(&link, mtu)?;
    }
    // Let the kernel announce address changes too: arp_notify sends a
    // gratuitous ARP when the link goes up with carrier and when its MAC
    // changes; ndisc_notify an unsolicited NA once IPv6 DAD completes, which
    // waits for carrier. See Documentation/networking/ip-sysctl.rst.
    write_sysctl(
        &format!("/proc/sys/net/ipv4/conf/{}/arp_notify", cfg.to),
        "1",
    );
    write_sysctl(
        &format!("/proc/sys/net/ipv6/conf/{}/ndisc_notify", cfg.to),
        "1",
    );
    for ip in &cfg.ips {
        nl.add_address(&link, ip.ip, ip.prefix)?;
    }
    nl.set_link_up(&link, true)?;
    log::debug(&format!("{}: configured and up in the pod", cfg.to));
    for r in &cfg.routes {
        nl.add_route(&link, r.dst, r.prefix, r.gw)?;
    }
    let link = nl
        .link_by_name(&cfg.to)?
        .ok_or_else(|| CniError::io(format!("{} vanished from the pod", cfg.to)))?;
    announce(&nl, &link, &cfg.ips);
    Ok(link)
}

/// Announces the pod's IPv4 addresses without waiting for carrier.
///
/// With carrier, a gratuitous ARP goes out now. Without it (a VF that was
/// never up gets carrier seconds after ADD), a frame sent now would be
/// dropped, and the kernel sends nothing of its own when carrier comes:
/// arp_notify fires on NETDEV_UP, NETDEV_CHANGEADDR and NETDEV_NOTIFY_PEERS
/// (net/ipv4/devinet.c), not on a carrier change. So the announcement is
/// handed to the kernel's neighbour timers: an entry for the pod's own
/// address, stale at the broadcast MAC and marked used, waits
/// `delay_first_probe_time` (5 s by default) and then probes it
/// `ucast_solicit` times (3), `retrans_time_ms` apart (1 s) - each probe an
/// ARP request for our own address from our own address to the broadcast
/// MAC, which is a gratuitous ARP (net/core/neighbour.c, net/ipv4/arp.c
/// arp_solicit). The kernel sends them after this process is gone, and
/// stops by itself: no reply comes, the entry ends FAILED.
fn announce(nl: &RtNetlink, link: &Link, ips: &[PodIp]) {
    let Some(mac) = link.mac else { return };
    for ip in ips {
        let IpAddr::V4(v4) = ip.ip else { continue };
        let r = if link.lower_up {
            netlink::garp::send_gratuitous_arp(link.index, mac, v4).map_err(|e| e.to_string())
        } else {
            nl.replace_stale_neighbour(link, ip.ip, MacAddr([0xff; 6]))
                .and_then(|()| nl.use_neighbour(link, ip.ip))
                .map_err(|e| e.to_string())
        };
        match r {
            Ok(()) if link.lower_up => {}
            Ok(()) => log::info(&format!(
                "{} has no carrier yet: the kernel announces {v4} once its neighbour timer fires",
                link.name
            )),
            Err(e) => log::warn(&format!("announcing {v4} on {} failed: {e}", link.name)),
        }
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
pub fn move_and_configure(
    env: &CniEnv,
    att: &Attachment,
    link: &Link,
    cfg: PodIface,
) -> Result<Link> {
    let host = host_netlink()?;
    let ns = open_netns(&env.netns)?;
    if link.up {
        host.set_link_up(link, false)?;
    }
    host.move_link_to_netns(link, ns.as_raw_fd())?;
    log::debug(&format!("{}: moved to {}", link.name, env.netns));
    failpoint::hit("moved")?;
    let netns = att.netns.clone();
    in_netns(Path::new(&netns), move || configure_in_pod(cfg))
        .map_err(|e| CniError::io(format!("failed to enter {netns}: {e}")))?
}

pub fn finish(
    plan: &Plan,
    ledger: &Ledger,
    att: &mut Attachment,
    link: &Link,
    ipam_result: Option<&Value>,
) -> Result<Value> {
    if let Some(p) = &att.device_info_file {
        devinfo::write(p, att)?;
    }
    failpoint::hit("device-info-written")?;
    let pci = match att.device_type {
        DeviceType::Macvlan => String::new(),
        _ => att.device.to_string(),
    };
    let mut res = result::add_result(
        &att.cni_version,
        &att.ifname,
        link.mac.map(|m| m.to_string()),
        &att.netns,
        &pci,
        ipam_result,
    );
    if pci.is_empty() {
        if let Some(i) = res["interfaces"][0].as_object_mut() {
            i.remove("pciID");
        }
    }
    // The interface's MTU as the pod sees it (what sriov-cni reports and
    // Multus copies into network-status), from 1.0.0 on.
    let mtu = plan.mtu.unwrap_or(link.mtu);
    if mtu != 0 && crate::version::at_least(&att.cni_version, "1.0.0") {
        res["interfaces"][0]["mtu"] = mtu.into();
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
        host_netlink().and_then(|nl| Ok(nl.link_by_name(&ifname)?))
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

    #[test]
    fn a_legacy_ipam_answer_configures_the_pod_too() {
        // host-local asked with cniVersion 0.1.0 answers with ip4/ip6 blocks.
        let r = serde_json::json!({"cniVersion":"0.1.0",
            "ip4":{"ip":"10.56.217.2/24","gateway":"10.56.217.1","routes":[{"dst":"0.0.0.0/0"}]},
            "ip6":{"ip":"fd00::2/64"}});
        let (ips, routes) = ipam_config(Some(&r)).unwrap();
        let got: Vec<String> = ips
            .iter()
            .map(|i| format!("{}/{}", i.ip, i.prefix))
            .collect();
        assert_eq!(got, ["10.56.217.2/24", "fd00::2/64"]);
        assert_eq!(ips[0].gateway, Some("10.56.217.1".parse().unwrap()));
        assert_eq!(routes.len(), 1);
        assert_eq!(routes[0].gw, Some("10.56.217.1".parse().unwrap()));
    }
}
