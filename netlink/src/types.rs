use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::Result as NlResult;

/// The VF admin operations, in the kernel's terms.
pub trait VfNetlink {
    /// The admin state the PF reports for VF `vf` (`ip link show <pf>`).
    fn vf_state(&mut self, pf: &str, vf: u32) -> NlResult<VfState>;
    /// Equal to `ip link set <pf> vf <vf> <attr>`.
    fn set_vf(&mut self, pf: &str, vf: u32, attr: VfAttr) -> NlResult<()>;
}

/// An Ethernet address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MacAddr(pub [u8; 6]);

impl FromStr for MacAddr {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad =
            || format!("invalid MAC address {s:?}: expected six hex bytes like 02:00:00:00:00:01");
        let mut out = [0u8; 6];
        let mut parts = s.split(':');
        for b in out.iter_mut() {
            let p = parts.next().ok_or_else(bad)?;
            if p.len() != 2 {
                return Err(bad());
            }
            *b = u8::from_str_radix(p, 16).map_err(|_| bad())?;
        }
        if parts.next().is_some() {
            return Err(bad());
        }
        Ok(MacAddr(out))
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            b[0], b[1], b[2], b[3], b[4], b[5]
        )
    }
}

impl MacAddr {
    pub fn is_multicast(&self) -> bool {
        self.0[0] & 1 == 1
    }
    pub fn is_zero(&self) -> bool {
        self.0 == [0; 6]
    }
}

impl Serialize for MacAddr {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for MacAddr {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// The VLAN tag protocol of a VF VLAN (`vlanProto`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum VlanProto {
    #[default]
    #[serde(rename = "802.1q")]
    Dot1Q,
    #[serde(rename = "802.1ad")]
    Dot1Ad,
}

impl fmt::Display for VlanProto {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            VlanProto::Dot1Q => "802.1q",
            VlanProto::Dot1Ad => "802.1ad",
        })
    }
}

/// A VF's administrative link state (`link_state`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LinkState {
    #[default]
    Auto,
    Enable,
    Disable,
}

impl fmt::Display for LinkState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LinkState::Auto => "auto",
            LinkState::Enable => "enable",
            LinkState::Disable => "disable",
        })
    }
}

/// What the PF reports about one VF.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct VfState {
    pub mac: MacAddr,
    pub vlan: u16,
    pub qos: u8,
    pub proto: VlanProto,
    /// `None` when the driver does not report it.
    pub spoofchk: Option<bool>,
    pub trust: Option<bool>,
    pub link_state: LinkState,
    pub min_tx_rate: u32,
    pub max_tx_rate: u32,
}

/// A VF VLAN setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Vlan {
    pub id: u16,
    pub qos: u8,
    pub proto: VlanProto,
}

/// VF tx rate limits in Mbps; 0 means no limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rate {
    pub min: u32,
    pub max: u32,
}

/// The VF settings a netconf asks for; `None` leaves a field as it is.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct VfSettings {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<MacAddr>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vlan: Option<Vlan>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spoofchk: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trust: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link_state: Option<LinkState>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate: Option<Rate>,
}

impl VfSettings {
    pub fn is_empty(&self) -> bool {
        *self == VfSettings::default()
    }

    /// The settings asked for, in the order they are applied.
    pub fn attrs(&self) -> Vec<VfAttr> {
        let mut out = Vec::new();
        out.extend(self.mac.map(VfAttr::Mac));
        out.extend(self.vlan.map(VfAttr::Vlan));
        out.extend(self.spoofchk.map(VfAttr::SpoofChk));
        out.extend(self.trust.map(VfAttr::Trust));
        out.extend(self.link_state.map(VfAttr::LinkState));
        out.extend(self.rate.map(VfAttr::Rate));
        out
    }

    /// Notes `attr` as set.
    pub fn set(&mut self, attr: VfAttr) {
        match attr {
            VfAttr::Mac(m) => self.mac = Some(m),
            VfAttr::Vlan(v) => self.vlan = Some(v),
            VfAttr::SpoofChk(on) => self.spoofchk = Some(on),
            VfAttr::Trust(on) => self.trust = Some(on),
            VfAttr::LinkState(l) => self.link_state = Some(l),
            VfAttr::Rate(r) => self.rate = Some(r),
        }
    }
}

/// One VF admin setting, as `ip link set <pf> vf N <attr>` sets it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VfAttr {
    Mac(MacAddr),
    Vlan(Vlan),
    SpoofChk(bool),
    Trust(bool),
    LinkState(LinkState),
    Rate(Rate),
}

impl VfAttr {
    /// The setting's name, as a PF driver refuses it (`vlan_proto` is an
    /// 802.1ad VLAN, which needs QinQ support).
    pub fn kind(&self) -> &'static str {
        match self {
            VfAttr::Mac(_) => "mac",
            VfAttr::Vlan(v) if v.proto == VlanProto::Dot1Ad => "vlan_proto",
            VfAttr::Vlan(_) => "vlan",
            VfAttr::SpoofChk(_) => "spoofchk",
            VfAttr::Trust(_) => "trust",
            VfAttr::LinkState(_) => "link_state",
            VfAttr::Rate(_) => "rate",
        }
    }

    /// The field's name and value, for messages: `("vlan", "100 qos 0 proto 802.1q")`.
    pub fn field_value(&self) -> (&'static str, String) {
        match self {
            VfAttr::Mac(m) => ("mac", m.to_string()),
            VfAttr::Vlan(v) => ("vlan", format!("{} qos {} proto {}", v.id, v.qos, v.proto)),
            VfAttr::SpoofChk(on) => ("spoofchk", on_off(*on).into()),
            VfAttr::Trust(on) => ("trust", on_off(*on).into()),
            VfAttr::LinkState(l) => ("link_state", l.to_string()),
            VfAttr::Rate(r) => ("min/max tx rate", format!("{}/{} Mbps", r.min, r.max)),
        }
    }

    /// Whether `self` and `other` set the same field.
    pub fn same_field(&self, other: &VfAttr) -> bool {
        std::mem::discriminant(self) == std::mem::discriminant(other)
    }

    /// The value of the same field in `st`; `None` when the driver does not
    /// report it.
    pub fn current(&self, st: &VfState) -> Option<VfAttr> {
        match self {
            VfAttr::Mac(_) => Some(VfAttr::Mac(st.mac)),
            VfAttr::Vlan(_) => Some(VfAttr::Vlan(Vlan {
                id: st.vlan,
                qos: st.qos,
                proto: st.proto,
            })),
            VfAttr::SpoofChk(_) => st.spoofchk.map(VfAttr::SpoofChk),
            VfAttr::Trust(_) => st.trust.map(VfAttr::Trust),
            VfAttr::LinkState(_) => Some(VfAttr::LinkState(st.link_state)),
            VfAttr::Rate(_) => Some(VfAttr::Rate(Rate {
                min: st.min_tx_rate,
                max: st.max_tx_rate,
            })),
        }
    }

    /// Writes the setting into `st`, as the PF would after accepting it.
    pub fn apply_to(&self, st: &mut VfState) {
        match *self {
            VfAttr::Mac(m) => st.mac = m,
            VfAttr::Vlan(v) => {
                st.vlan = v.id;
                st.qos = v.qos;
                st.proto = v.proto;
            }
            VfAttr::SpoofChk(on) => st.spoofchk = Some(on),
            VfAttr::Trust(on) => st.trust = Some(on),
            VfAttr::LinkState(l) => st.link_state = l,
            VfAttr::Rate(r) => {
                st.min_tx_rate = r.min;
                st.max_tx_rate = r.max;
            }
        }
    }
}

fn on_off(on: bool) -> &'static str {
    if on {
        "on"
    } else {
        "off"
    }
}

/// As `ip link` words: `mac 02:..`, `vlan 10 qos 0 proto 802.1q`, `trust on`.
impl fmt::Display for VfAttr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VfAttr::Mac(m) => write!(f, "mac {m}"),
            VfAttr::Vlan(v) => write!(f, "vlan {} qos {} proto {}", v.id, v.qos, v.proto),
            VfAttr::SpoofChk(on) => write!(f, "spoofchk {}", on_off(*on)),
            VfAttr::Trust(on) => write!(f, "trust {}", on_off(*on)),
            VfAttr::LinkState(l) => write!(f, "link_state {l}"),
            VfAttr::Rate(r) => write!(f, "min_tx_rate {} max_tx_rate {}", r.min, r.max),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mac_parse_print() {
        let m: MacAddr = "02:AB:00:00:00:01".parse().unwrap();
        assert_eq!(m.to_string(), "02:ab:00:00:00:01");
        for bad in [
            "",
            "02:ab:00:00:00",
            "02:ab:00:00:00:01:02",
            "2:ab:00:00:00:01",
            "zz:ab:00:00:00:01",
            "02-ab-00-00-00-01",
        ] {
            assert!(bad.parse::<MacAddr>().is_err(), "{bad}");
        }
        assert!("01:00:5e:00:00:01"
            .parse::<MacAddr>()
            .unwrap()
            .is_multicast());
    }
}
