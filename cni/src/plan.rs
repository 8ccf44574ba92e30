//! An ADD or CHECK netconf checked in full into a [`Plan`]: which device,
//! in which mode, with which VF settings. Nothing on the node is looked at.

use std::path::PathBuf;

use ledger::DeviceType;
use netlink::{LinkState, MacAddr, Rate, VfSettings, Vlan, VlanProto};
use serde_json::Value;
use vfio::PciAddress;

use crate::config::{self, Base, RawConf};
use crate::env::CniEnv;
use crate::error::{CniError, Result};
use crate::log;
use crate::node::Node;
use crate::paths;

/// Which device the netconf names, before it is looked up in sysfs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeviceRef {
    Pci(PciAddress),
    PfVf {
        master: String,
        vf: u32,
    },
    /// The host interface a macvlan is made on.
    Master(String),
}

/// A checked ADD/CHECK configuration.
#[derive(Debug, Clone)]
pub struct Plan {
    pub base: Base,
    /// `None`: no `deviceType`, so the device's current driver decides, as
    /// sriov-cni does.
    pub device_type: Option<DeviceType>,
    pub device: DeviceRef,
    pub pf_only: bool,
    pub vf: VfSettings,
    pub device_info_file: Option<PathBuf>,
    pub prev_result: Option<Value>,
    /// Fall back to the kernel netdev when vfio-pci cannot be served here.
    pub fallback: bool,
    pub mtu: Option<u32>,
    /// PCI addresses or interface names a pfOnly PF must be among, when set.
    pub allowed_devices: Option<Vec<String>>,
}

fn on_off(field: &str, v: &Option<String>) -> Result<Option<bool>> {
    match v.as_deref() {
        None => Ok(None),
        Some("on") => Ok(Some(true)),
        Some("off") => Ok(Some(false)),
        Some(o) => Err(CniError::netconf(format!(
            "invalid {field} {o:?}: use \"on\" or \"off\""
        ))),
    }
}

fn parse_mac(field: &str, s: &str) -> Result<MacAddr> {
    let mac: MacAddr = s
        .parse()
        .map_err(|e| CniError::netconf(format!("invalid {field}: {e}")))?;
    if mac.is_multicast() || mac.is_zero() {
        return Err(CniError::netconf(format!(
            "invalid {field} {s:?}: a VF needs a unicast, non-zero MAC address"
        )));
    }
    Ok(mac)
}

fn parse_pci(field: &str, s: &str) -> Result<PciAddress> {
    s.parse()
        .map_err(|e: vfio::VfioError| CniError::netconf(format!("invalid {field}: {e}")))
}

/// The pod's MAC: `runtimeConfig.mac`, then CNI_ARGS `MAC=`, then `mac`.
fn pod_mac(raw: &RawConf, env: &CniEnv) -> Result<Option<MacAddr>> {
    let rc = raw.runtime_config.as_ref();
    Ok(
        if let Some(m) = rc.and_then(|r| r.mac.as_deref()).filter(|s| !s.is_empty()) {
            Some(parse_mac("runtimeConfig.mac", m)?)
        } else if let Some(m) = env.arg("MAC") {
            Some(parse_mac("CNI_ARGS MAC", m)?)
        } else if let Some(m) = raw.mac.as_deref() {
            Some(parse_mac("mac", m)?)
        } else {
            None
        },
    )
}

/// The netconf fields a pod annotation may override when `podOverrides`
/// lists them.
pub const POD_OVERRIDABLE: &[&str] = &["vlan", "max_tx_rate"];

/// Checks an ADD or CHECK configuration in full.
pub fn plan(raw: &RawConf, env: &CniEnv, node: &Node) -> Result<Plan> {
    let base = config::base(raw, node, true)?;
    let device_type = match raw.device_type.as_deref() {
        None => None,
        Some("vfio-pci") => Some(DeviceType::VfioPci),
        Some("netdevice") => Some(DeviceType::Netdevice),
        Some("macvlan") => Some(DeviceType::Macvlan),
        Some(o) => {
            return Err(CniError::netconf(format!(
                "unsupported deviceType {o:?}: use \"vfio-pci\", \"netdevice\" or \"macvlan\""
            )))
        }
    };
    let fallback = match raw.fallback.as_deref() {
        None => false,
        Some("netdevice") if device_type == Some(DeviceType::VfioPci) => true,
        Some("netdevice") => return Err(CniError::netconf(
            "fallback applies to deviceType vfio-pci only: drop it or set deviceType to vfio-pci",
        )),
        Some(o) => {
            return Err(CniError::netconf(format!(
                "invalid fallback {o:?}: the only fallback is \"netdevice\""
            )))
        }
    };
    // With vfio-pci the DPDK application sets the MTU; the field is
    // accepted (as sriov-cni does) and applies only to a kernel interface.
    if let Some(m) = raw.mtu {
        if !(68..=65535).contains(&m) {
            return Err(CniError::netconf(format!(
                "invalid mtu {m}: use 68 to 65535"
            )));
        }
    }
    let pf_only = raw.pf_only.unwrap_or(false);
    let rc = raw.runtime_config.clone().unwrap_or_default();
    if device_type == Some(DeviceType::Macvlan) {
        let master = raw.master.clone().ok_or_else(|| {
            CniError::netconf(
                "deviceType macvlan needs \"master\": the host interface to attach to",
            )
        })?;
        if !crate::env::valid_ifname(&master) {
            return Err(CniError::netconf(format!(
                "invalid master {master:?}: not an interface name"
            )));
        }
        if let Some(m) = raw.mode.as_deref().filter(|m| *m != "bridge") {
            return Err(CniError::netconf(format!(
                "unsupported macvlan mode {m:?}: dpdk-cni makes bridge mode macvlans"
            )));
        }
        if pf_only || raw.device_id.is_some() || raw.vlan.is_some() {
            return Err(CniError::netconf(
                "deviceType macvlan takes master, mac, mtu and ipam: pfOnly, deviceID and VF settings do not apply",
            ));
        }
        // The pod's MAC goes on the macvlan itself, as the reference
        // macvlan plugin does with CNI_ARGS MAC= and runtimeConfig.mac.
        return Ok(Plan {
            base,
            device_type,
            device: DeviceRef::Master(master),
            pf_only: false,
            vf: VfSettings {
                mac: pod_mac(raw, env)?,
                ..VfSettings::default()
            },
            device_info_file: devinfo_file(raw, node)?,
            prev_result: raw.prev_result.clone(),
            fallback: false,
            mtu: raw.mtu,
            allowed_devices: None,
        });
    }

    // The device: runtimeConfig.deviceID (device plugin via Multus), then
    // deviceID, then Multus' pciBusID, then master with a VF index.
    let device = if let Some(d) = rc.device_id.as_deref().filter(|s| !s.is_empty()) {
        DeviceRef::Pci(parse_pci("runtimeConfig.deviceID", d)?)
    } else if let Some(d) = raw.device_id.as_deref() {
        DeviceRef::Pci(parse_pci("deviceID", d)?)
    } else if let Some(d) = raw.pci_bus_id.as_deref() {
        DeviceRef::Pci(parse_pci("pciBusID", d)?)
    } else if let Some(master) = raw.master.clone() {
        if !crate::env::valid_ifname(&master) {
            return Err(CniError::netconf(format!(
                "invalid master {master:?}: not an interface name"
            )));
        }
        let vf = match (env.arg("VF"), raw.vf) {
            (Some(v), _) => v.parse::<u32>().map_err(|_| {
                CniError::env(format!("invalid CNI_ARGS VF={v:?}: expected a VF index"))
            })?,
            (None, Some(v)) => v,
            (None, None) if pf_only => 0,
            (None, None) => {
                return Err(CniError::netconf(
                    "master is set but no VF index: set \"vf\" or pass CNI_ARGS VF=<index>",
                ))
            }
        };
        DeviceRef::PfVf { master, vf }
    } else {
        return Err(CniError::netconf(
            "no device named: set deviceID (or runtimeConfig.deviceID, pciBusID, or master with vf)",
        ));
    };

    let mut vf = VfSettings {
        mac: pod_mac(raw, env)?,
        ..VfSettings::default()
    };

    let proto = match raw
        .vlan_proto
        .as_deref()
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        None | Some("802.1q") => VlanProto::Dot1Q,
        Some("802.1ad") => VlanProto::Dot1Ad,
        Some(o) => {
            return Err(CniError::netconf(format!(
                "invalid vlanProto {o:?}: use \"802.1q\" or \"802.1ad\""
            )))
        }
    };
    match (raw.vlan, raw.vlan_qos) {
        (Some(v), _) if v > 4094 => {
            return Err(CniError::netconf(format!(
                "invalid vlan {v}: use 0 to 4094"
            )));
        }
        (_, Some(q)) if q > 7 => {
            return Err(CniError::netconf(format!(
                "invalid vlanQoS {q}: use 0 to 7"
            )));
        }
        (None | Some(0), Some(q)) if q != 0 => {
            return Err(CniError::netconf(format!(
                "vlanQoS {q} needs a non-zero vlan: set \"vlan\" too"
            )));
        }
        (None | Some(0), _) if proto == VlanProto::Dot1Ad => {
            return Err(CniError::netconf(
                "vlanProto 802.1ad needs a non-zero vlan: set \"vlan\" or drop vlanProto",
            ));
        }
        (Some(v), q) => {
            vf.vlan = Some(Vlan {
                id: v as u16,
                qos: q.unwrap_or(0) as u8,
                proto,
            });
        }
        (None, _) => {}
    }
    vf.spoofchk = on_off("spoofchk", &raw.spoofchk)?;
    vf.trust = on_off("trust", &raw.trust)?;
    vf.link_state = match raw.link_state.as_deref() {
        None => None,
        Some("auto") => Some(LinkState::Auto),
        Some("enable") => Some(LinkState::Enable),
        Some("disable") => Some(LinkState::Disable),
        Some(o) => {
            return Err(CniError::netconf(format!(
                "invalid link_state {o:?}: use \"auto\", \"enable\" or \"disable\""
            )))
        }
    };
    // Per-pod overrides from the pod's annotations (an older fork's names),
    // only of the fields the netconf opens to them: a pod must not lift
    // its network's VLAN or rate limit on its own.
    let open_to_pod = raw.pod_overrides.clone().unwrap_or_default();
    for f in &open_to_pod {
        if !POD_OVERRIDABLE.contains(&f.as_str()) {
            return Err(CniError::netconf(format!(
                "podOverrides lists {f:?}: a pod may override only {}",
                POD_OVERRIDABLE.join(" and ")
            )));
        }
    }
    let mut annotations = rc.pod_annotations.clone().unwrap_or_default();
    for (field, key) in [
        ("vlan", "networks-sriov-vlan"),
        ("max_tx_rate", "networks-sriov-txrate"),
    ] {
        if !open_to_pod.iter().any(|f| f == field) {
            if let Some(v) = annotations.remove(key) {
                log::info(&format!(
                    "pod annotation {key}={v:?} ignored: the netconf does not list {field:?} in podOverrides"
                ));
            }
        }
    }
    let mut max_tx_rate = raw.max_tx_rate;
    if let Some(v) = annotations.get("networks-sriov-vlan") {
        let id: u16 = v
            .trim()
            .parse()
            .ok()
            .filter(|id| *id <= 4094)
            .ok_or_else(|| {
                CniError::netconf(format!(
                "invalid pod annotation networks-sriov-vlan={v:?}: use a VLAN id from 0 to 4094"
            ))
            })?;
        let (qos, proto) = vf
            .vlan
            .map(|x| (x.qos, x.proto))
            .unwrap_or((0, VlanProto::Dot1Q));
        if id == 0 && (qos != 0 || proto == VlanProto::Dot1Ad) {
            return Err(CniError::netconf(
                "pod annotation networks-sriov-vlan=0 conflicts with vlanQoS/vlanProto in the netconf",
            ));
        }
        vf.vlan = Some(Vlan { id, qos, proto });
    }
    if let Some(v) = annotations.get("networks-sriov-txrate") {
        let rate: u32 = v.trim().parse().map_err(|_| {
            CniError::netconf(format!(
                "invalid pod annotation networks-sriov-txrate={v:?}: use the maximum tx rate in Mbps"
            ))
        })?;
        max_tx_rate = Some(rate);
    }
    if raw.min_tx_rate.is_some() || max_tx_rate.is_some() {
        let min = raw.min_tx_rate.unwrap_or(0);
        let max = max_tx_rate.unwrap_or(0);
        if max != 0 && min > max {
            return Err(CniError::netconf(format!(
                "min_tx_rate {min} is above max_tx_rate {max}: lower min_tx_rate or raise max_tx_rate (0 = no limit)"
            )));
        }
        vf.rate = Some(Rate { min, max });
    }
    if pf_only && !vf.is_empty() {
        return Err(CniError::netconf(
            "pfOnly hands over the whole PF: VF settings (mac, vlan, spoofchk, trust, link_state, rates) do not apply",
        ));
    }
    let allowed_devices = raw.allowed_devices.clone();
    if allowed_devices.is_some() && !pf_only {
        return Err(CniError::netconf(
            "allowedDevices restricts pfOnly: set \"pfOnly\": true or drop it",
        ));
    }
    Ok(Plan {
        base,
        device_type,
        device,
        pf_only,
        vf,
        device_info_file: devinfo_file(raw, node)?,
        prev_result: raw.prev_result.clone(),
        fallback,
        mtu: raw.mtu,
        allowed_devices,
    })
}

/// `runtimeConfig.CNIDeviceInfoFile`, confined to the device-info
/// directory.
fn devinfo_file(raw: &RawConf, node: &Node) -> Result<Option<PathBuf>> {
    let Some(f) = raw
        .runtime_config
        .as_ref()
        .and_then(|r| r.device_info_file.as_deref())
    else {
        return Ok(None);
    };
    let refused = |why: String| {
        CniError::netconf(format!(
            "runtimeConfig.CNIDeviceInfoFile {f:?} is refused: {why}"
        ))
    };
    paths::confine(&node.root, f, &[node.root.join(paths::DEVINFO_DIR)])
        .map(Some)
        .map_err(refused)
}
