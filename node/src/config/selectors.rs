//! A pool's `deviceType` and `selectors`, with the SR-IOV network device
//! plugin's names and meaning. What each selector matches on a node is in
//! `crate::select`; this file reads and checks them.

use std::ops::RangeInclusive;

use serde::{Deserialize, Deserializer};
use vfio::PciAddress;

/// The kind of device a pool holds (`deviceType`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum DeviceType {
    /// `netDevice` (the default): network functions, PCI class 0x02.
    #[default]
    NetDevice,
    /// `accelerator`: processing accelerators, PCI class 0x12.
    Accelerator,
    /// `auxNetDevice`: auxiliary network devices (sub-functions), which
    /// this daemon does not serve: such a pool stays empty.
    AuxNetDevice,
}

impl DeviceType {
    pub fn as_str(self) -> &'static str {
        match self {
            DeviceType::NetDevice => "netDevice",
            DeviceType::Accelerator => "accelerator",
            DeviceType::AuxNetDevice => "auxNetDevice",
        }
    }
}

impl<'de> Deserialize<'de> for DeviceType {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        match s.as_str() {
            // The upstream plugin reads an empty value as the default.
            "" | "netDevice" => Ok(DeviceType::NetDevice),
            "accelerator" => Ok(DeviceType::Accelerator),
            "auxNetDevice" => Ok(DeviceType::AuxNetDevice),
            _ => Err(serde::de::Error::custom(format!(
                "unsupported deviceType {s:?}: netDevice (the default), accelerator or auxNetDevice"
            ))),
        }
    }
}

/// One selector object. Fields are AND-ed, values within a field OR-ed.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Selectors {
    #[serde(default)]
    pub vendors: Vec<String>,
    #[serde(default)]
    pub devices: Vec<String>,
    #[serde(default)]
    pub drivers: Vec<String>,
    #[serde(default)]
    pub pci_addresses: Vec<String>,
    #[serde(default)]
    pub acpi_indexes: Vec<String>,
    #[serde(default)]
    pub pf_names: Vec<String>,
    #[serde(default)]
    pub root_devices: Vec<String>,
    #[serde(default)]
    pub link_types: Vec<String>,
    #[serde(default)]
    pub ddp_profiles: Vec<String>,
    #[serde(default)]
    pub p_keys: Vec<String>,
    #[serde(default)]
    pub aux_types: Vec<String>,
    #[serde(default)]
    pub is_rdma: bool,
    /// Allocate is to add `/dev/vhost-net` and `/dev/net/tun`; selects nothing by itself.
    #[serde(default)]
    pub need_vhost_net: bool,
    /// `virtio` or `vhost`; empty for none.
    #[serde(default)]
    pub vdpa_type: String,
}

/// The field names of [`Selectors`], as the file spells them.
pub(crate) const SELECTOR_FIELDS: &[&str] = &[
    "vendors",
    "devices",
    "drivers",
    "pciAddresses",
    "acpiIndexes",
    "pfNames",
    "rootDevices",
    "linkTypes",
    "ddpProfiles",
    "pKeys",
    "auxTypes",
    "isRdma",
    "needVhostNet",
    "vdpaType",
];

/// Link types the kernel reports for network functions (`ip link`'s names).
const KNOWN_LINK_TYPES: &[&str] = &["ether", "infiniband", "ieee80211", "loopback", "none"];

impl Selectors {
    /// Checks the values; the message names the field and what is wrong.
    pub(crate) fn validate(&self, dt: DeviceType) -> std::result::Result<(), String> {
        for n in &self.pf_names {
            n.parse::<PfName>()?;
        }
        for r in &self.root_devices {
            r.parse::<RootDevice>()?;
        }
        for a in &self.pci_addresses {
            a.parse::<PciAddress>()
                .map_err(|e| format!("pciAddresses: {e}"))?;
        }
        if !matches!(self.vdpa_type.as_str(), "" | "virtio" | "vhost") {
            return Err(format!(
                "vdpaType {:?} is not \"virtio\" or \"vhost\"",
                self.vdpa_type
            ));
        }
        if self.is_rdma && !self.vdpa_type.is_empty() {
            return Err("isRdma and vdpaType exclude each other".into());
        }
        if dt == DeviceType::AuxNetDevice {
            if self.aux_types.is_empty() {
                return Err("an auxNetDevice selector needs auxTypes".into());
            }
            if let Some(t) = self.aux_types.iter().find(|t| *t != "sf") {
                return Err(format!("auxTypes {t:?}: only \"sf\" is supported"));
            }
        }
        Ok(())
    }

    /// What this selector does that the upstream plugin would do otherwise
    /// or that cannot be served here, one line each.
    pub(crate) fn warnings(&self, dt: DeviceType) -> Vec<String> {
        let mut w = Vec::new();
        match dt {
            DeviceType::AuxNetDevice => w.push(
                "auxNetDevice: dpdk-cni-node serves PCI functions, not auxiliary devices: \
                 selects nothing"
                    .into(),
            ),
            DeviceType::Accelerator => {
                // The upstream plugin reads only these four for accelerators.
                let ignored: Vec<&str> = [
                    ("acpiIndexes", self.acpi_indexes.is_empty()),
                    ("pfNames", self.pf_names.is_empty()),
                    ("rootDevices", self.root_devices.is_empty()),
                    ("linkTypes", self.link_types.is_empty()),
                    ("ddpProfiles", self.ddp_profiles.is_empty()),
                    ("pKeys", self.p_keys.is_empty()),
                    ("auxTypes", self.aux_types.is_empty()),
                    ("isRdma", !self.is_rdma),
                    ("needVhostNet", !self.need_vhost_net),
                    ("vdpaType", self.vdpa_type.is_empty()),
                ]
                .into_iter()
                .filter(|(_, unset)| !unset)
                .map(|(n, _)| n)
                .collect();
                if !ignored.is_empty() {
                    w.push(format!(
                        "accelerator selectors use vendors, devices, drivers and pciAddresses \
                         only: {} ignored",
                        ignored.join(", ")
                    ));
                }
            }
            DeviceType::NetDevice => {
                if !self.ddp_profiles.is_empty() {
                    w.push(
                        "ddpProfiles: dpdk-cni-node does not query DDP profiles (ddptool, \
                         devlink): selects nothing"
                            .into(),
                    );
                }
                if !self.vdpa_type.is_empty() {
                    w.push(format!(
                        "vdpaType {:?}: dpdk-cni-node does not serve vDPA devices: selects nothing",
                        self.vdpa_type
                    ));
                }
                if let Some(t) = self
                    .link_types
                    .iter()
                    .find(|t| !KNOWN_LINK_TYPES.contains(&t.as_str()))
                {
                    w.push(format!(
                        "linkTypes {t:?} is not a link type the kernel reports for a network \
                         function ({}): it matches nothing",
                        KNOWN_LINK_TYPES.join(", ")
                    ));
                }
            }
        }
        w
    }
}

/// VF indexes: `0,2-7`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VfRanges(Vec<RangeInclusive<u32>>);

impl VfRanges {
    pub fn contains(&self, index: u32) -> bool {
        self.0.iter().any(|r| r.contains(&index))
    }
}

/// The highest VF index a PF can have: `TotalVFs` is a 16-bit field
/// (PCIe SR-IOV capability).
const MAX_VF_INDEX: u32 = 65534;

/// Parses the part after `#` of `entry`.
fn parse_vf_ranges(entry: &str, ranges: &str) -> std::result::Result<VfRanges, String> {
    let bad = |why: &str| format!("{entry:?}: {why} (VF indexes after '#' are like 0,2-7)");
    let mut out = Vec::new();
    for part in ranges.split(',') {
        let part = part.trim();
        let (lo, hi) = match part.split_once('-') {
            Some((a, b)) => (a.trim(), b.trim()),
            None => (part, part),
        };
        let num = |s: &str| -> std::result::Result<u32, String> {
            s.parse::<u32>()
                .ok()
                .filter(|n| *n <= MAX_VF_INDEX)
                .ok_or_else(|| bad(&format!("{s:?} is not a VF index")))
        };
        let (lo, hi) = (num(lo)?, num(hi)?);
        if lo > hi {
            return Err(bad(&format!("range {lo}-{hi} ends before it starts")));
        }
        out.push(lo..=hi);
    }
    Ok(VfRanges(out))
}

/// No ranges: every VF; ranges: a VF whose index is known and in them.
fn vfs_match(vfs: Option<&VfRanges>, index: Option<u32>) -> bool {
    match (vfs, index) {
        (None, _) => true,
        (Some(r), Some(i)) => r.contains(i),
        (Some(_), None) => false,
    }
}

/// A `pfNames` entry: `ens1f0`, or `ens1f0#0,2-7` for some of its VFs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PfName {
    pub name: String,
    /// `None`: every VF.
    pub vfs: Option<VfRanges>,
}

impl std::str::FromStr for PfName {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, String> {
        let (name, ranges) = match s.split_once('#') {
            None => (s, None),
            Some((n, r)) => (n, Some(r)),
        };
        if name.is_empty() || name.contains('/') || name.chars().any(char::is_whitespace) {
            return Err(format!(
                "pfNames: {s:?} does not start with an interface name"
            ));
        }
        let vfs = ranges
            .map(|r| parse_vf_ranges(s, r))
            .transpose()
            .map_err(|e| format!("pfNames: {e}"))?;
        Ok(PfName {
            name: name.to_string(),
            vfs,
        })
    }
}

impl PfName {
    /// Whether the VF `vf_index` of the PF `pf_name` is meant; upstream
    /// compares PF names ignoring case.
    pub fn matches(&self, pf_name: &str, vf_index: Option<u32>) -> bool {
        self.name.eq_ignore_ascii_case(pf_name) && vfs_match(self.vfs.as_ref(), vf_index)
    }
}

/// A `rootDevices` entry: `0000:86:00.0`, or `0000:86:00.0#0-3` for some
/// of its VFs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RootDevice {
    pub addr: PciAddress,
    pub vfs: Option<VfRanges>,
}

impl std::str::FromStr for RootDevice {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, String> {
        let (addr, ranges) = match s.split_once('#') {
            None => (s, None),
            Some((a, r)) => (a, Some(r)),
        };
        let addr = addr
            .parse::<PciAddress>()
            .map_err(|e| format!("rootDevices: {s:?}: {e}"))?;
        let vfs = ranges
            .map(|r| parse_vf_ranges(s, r))
            .transpose()
            .map_err(|e| format!("rootDevices: {e}"))?;
        Ok(RootDevice { addr, vfs })
    }
}

impl RootDevice {
    /// Whether the VF `vf_index` of the PF at `pf` is meant.
    pub fn matches(&self, pf: PciAddress, vf_index: Option<u32>) -> bool {
        self.addr == pf && vfs_match(self.vfs.as_ref(), vf_index)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pf_names_with_vf_ranges() {
        let p: PfName = "ens1f0#0,2-4".parse().unwrap();
        assert_eq!(p.name, "ens1f0");
        let picked: Vec<u32> = (0..8).filter(|i| p.matches("ens1f0", Some(*i))).collect();
        assert_eq!(picked, [0, 2, 3, 4]);
        // Names compare ignoring case, as upstream's.
        assert!(p.matches("ENS1F0", Some(3)));
        assert!(!p.matches("ens1f1", Some(0)));
        assert!(
            !p.matches("ens1f0", None),
            "a VF of unknown index is in no range"
        );
        let all: PfName = "ens1f1".parse().unwrap();
        assert_eq!(all.vfs, None);
        assert!(all.matches("ens1f1", Some(200)) && all.matches("ens1f1", None));
        for bad in [
            "",
            "#1",
            "ens1f0#",
            "ens1f0#3-1",
            "ens1f0#a",
            "x/y#1",
            "e#0-99999",
            "e#-1",
            "a b",
        ] {
            let e = bad.parse::<PfName>().unwrap_err();
            assert!(e.starts_with("pfNames: "), "{bad}: {e}");
        }
        let e = "ens1f0#3-1".parse::<PfName>().unwrap_err();
        assert!(e.contains("3-1 ends before it starts"), "{e}");
    }

    #[test]
    fn root_devices_with_vf_ranges() {
        let r: RootDevice = "0000:86:00.0#0-3".parse().unwrap();
        let pf: PciAddress = "0000:86:00.0".parse().unwrap();
        let other: PciAddress = "0000:87:00.0".parse().unwrap();
        assert!(r.matches(pf, Some(0)) && r.matches(pf, Some(3)));
        assert!(!r.matches(pf, Some(4)) && !r.matches(other, Some(0)));
        let all: RootDevice = "0000:86:00.0".parse().unwrap();
        assert!(all.matches(pf, Some(100)));
        for bad in ["86:00.0#1", "0000:86:00.0#", "0000:86:00.0#2-1", "ens1f0"] {
            let e = bad.parse::<RootDevice>().unwrap_err();
            assert!(e.starts_with("rootDevices: "), "{bad}: {e}");
        }
    }

    #[test]
    fn device_types() {
        let t = |s: &str| serde_json::from_value::<DeviceType>(serde_json::json!(s));
        assert_eq!(t("").unwrap(), DeviceType::NetDevice);
        assert_eq!(t("netDevice").unwrap(), DeviceType::NetDevice);
        assert_eq!(t("accelerator").unwrap(), DeviceType::Accelerator);
        assert_eq!(t("auxNetDevice").unwrap(), DeviceType::AuxNetDevice);
        // Upstream's lookup is exact.
        let e = t("NetDevice").unwrap_err().to_string();
        assert!(e.contains("unsupported deviceType \"NetDevice\""), "{e}");
    }

    #[test]
    fn refused_combinations() {
        let s = |v: serde_json::Value| serde_json::from_value::<Selectors>(v).unwrap();
        let net = DeviceType::NetDevice;
        let aux = DeviceType::AuxNetDevice;
        let e = s(serde_json::json!({"isRdma": true, "vdpaType": "vhost"}))
            .validate(net)
            .unwrap_err();
        assert!(e.contains("exclude each other"), "{e}");
        let e = s(serde_json::json!({"vdpaType": "vdpa"}))
            .validate(net)
            .unwrap_err();
        assert!(e.contains("vdpaType \"vdpa\""), "{e}");
        assert!(s(serde_json::json!({})).validate(aux).is_err());
        let e = s(serde_json::json!({"auxTypes": ["sf", "eth"]}))
            .validate(aux)
            .unwrap_err();
        assert!(e.contains("\"eth\""), "{e}");
        assert!(s(serde_json::json!({"auxTypes": ["sf"]}))
            .validate(aux)
            .is_ok());
        assert!(
            s(serde_json::json!({"vdpaType": "virtio", "pKeys": ["0x1"]}))
                .validate(net)
                .is_ok()
        );
    }
}
