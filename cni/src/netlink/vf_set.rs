use netlink_packet_route::link::{
    LinkAttribute, LinkMessage, LinkVfInfo, VfInfo, VfInfoLinkState, VfInfoMac, VfInfoRate,
    VfInfoSpoofCheck, VfInfoTrust, VfInfoVlan, VfLinkState, VfVlan, VfVlanInfo, VlanProtocol,
};
use rtnetlink::LinkUnspec;

use super::rtnl::{refused, RtNetlink};
use super::{LinkState, MacAddr, Result, VlanProto};

/// An RTM_SETLINK for the PF carrying one `IFLA_VFINFO_LIST` /
/// `IFLA_VF_INFO` nest with the given VF attribute.
pub fn vf_set_message(pf_index: u32, attr: VfInfo) -> LinkMessage {
    LinkUnspec::new_with_index(pf_index)
        .append_extra_attribute(LinkAttribute::VfInfoList(vec![LinkVfInfo(vec![attr])]))
        .build()
}

fn send(nl: &RtNetlink, pf: &str, vf: u32, what: String, attr: VfInfo) -> Result<()> {
    let index = nl.link_index(pf)?;
    let handle = nl.handle().clone();
    let msg = vf_set_message(index, attr);
    nl.block_on(async move { handle.link().set(msg).execute().await })
        .map_err(|e| refused(pf, vf, what, e))
}

/// Equal to `ip link set <pf> vf <vf> mac <mac>` (IFLA_VF_MAC).
pub(super) fn set_vf_mac(nl: &RtNetlink, pf: &str, vf: u32, mac: MacAddr) -> Result<()> {
    send(
        nl,
        pf,
        vf,
        format!("mac {mac}"),
        VfInfo::Mac(VfInfoMac::new(vf, &mac.0)),
    )
}

/// Equal to `ip link set <pf> vf <vf> vlan <id> qos <qos> [proto 802.1ad]`.
///
/// IFLA_VF_VLAN can only say 802.1Q; an 802.1ad tag needs IFLA_VF_VLAN_LIST,
/// which drivers without QinQ support refuse with EPROTONOSUPPORT.
pub(super) fn set_vf_vlan(
    nl: &RtNetlink,
    pf: &str,
    vf: u32,
    vlan: u16,
    qos: u8,
    proto: VlanProto,
) -> Result<()> {
    let what = format!("vlan {vlan} qos {qos} proto {proto}");
    let attr = match proto {
        VlanProto::Dot1Q => VfInfo::Vlan(VfInfoVlan::new(vf, vlan as u32, qos as u32)),
        VlanProto::Dot1Ad => VfInfo::VlanList(vec![VfVlan::Info(VfVlanInfo::new(
            vf,
            vlan as u32,
            qos as u32,
            VlanProtocol::Ieee8021Ad,
        ))]),
    };
    send(nl, pf, vf, what, attr)
}

/// Equal to `ip link set <pf> vf <vf> spoofchk on|off` (IFLA_VF_SPOOFCHK).
pub(super) fn set_vf_spoofchk(nl: &RtNetlink, pf: &str, vf: u32, on: bool) -> Result<()> {
    let what = format!("spoofchk {}", if on { "on" } else { "off" });
    send(
        nl,
        pf,
        vf,
        what,
        VfInfo::SpoofCheck(VfInfoSpoofCheck::new(vf, on)),
    )
}

/// Equal to `ip link set <pf> vf <vf> trust on|off` (IFLA_VF_TRUST).
pub(super) fn set_vf_trust(nl: &RtNetlink, pf: &str, vf: u32, on: bool) -> Result<()> {
    let what = format!("trust {}", if on { "on" } else { "off" });
    send(nl, pf, vf, what, VfInfo::Trust(VfInfoTrust::new(vf, on)))
}

/// Equal to `ip link set <pf> vf <vf> state auto|enable|disable` (IFLA_VF_LINK_STATE).
pub(super) fn set_vf_link_state(nl: &RtNetlink, pf: &str, vf: u32, state: LinkState) -> Result<()> {
    let s = match state {
        LinkState::Auto => VfLinkState::Auto,
        LinkState::Enable => VfLinkState::Enable,
        LinkState::Disable => VfLinkState::Disable,
    };
    send(
        nl,
        pf,
        vf,
        format!("link_state {state}"),
        VfInfo::LinkState(VfInfoLinkState::new(vf, s)),
    )
}

/// Equal to `ip link set <pf> vf <vf> min_tx_rate <min> max_tx_rate <max>` (IFLA_VF_RATE).
pub(super) fn set_vf_rate(nl: &RtNetlink, pf: &str, vf: u32, min: u32, max: u32) -> Result<()> {
    let what = format!("min_tx_rate {min} max_tx_rate {max}");
    send(
        nl,
        pf,
        vf,
        what,
        VfInfo::Rate(VfInfoRate::new(vf, min, max)),
    )
}
