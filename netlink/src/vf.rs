//! The VF half of [`RtNetlink`]: one VF's entry of the PF's
//! `IFLA_VFINFO_LIST`, and one `IFLA_VF_*` attribute set at a time.

use futures::TryStreamExt;
use netlink_packet_route::link::{
    LinkAttribute, LinkExtentMask, LinkMessage, LinkVfInfo, VfInfo, VfInfoLinkState, VfInfoMac,
    VfInfoRate, VfInfoSpoofCheck, VfInfoTrust, VfInfoVlan, VfLinkState, VfVlan, VfVlanInfo,
    VlanProtocol,
};
use netlink_packet_route::AddressFamily;
use rtnetlink::LinkUnspec;

use crate::error::{NetlinkError, Result};
use crate::rtnl::RtNetlink;
use crate::types::{LinkState, MacAddr, VfAttr, VfNetlink, VfState, VlanProto};

impl VfNetlink for RtNetlink {
    fn vf_state(&mut self, pf: &str, vf: u32) -> Result<VfState> {
        vf_state(self, pf, vf)
    }

    fn set_vf(&mut self, pf: &str, vf: u32, attr: VfAttr) -> Result<()> {
        let index = self.link_index(pf)?;
        let handle = self.handle().clone();
        let msg = vf_set_message(index, vf_info(vf, attr));
        self.block_on(async move { handle.link().set(msg).execute().await })
            .map_err(|e| refused(pf, vf, attr.to_string(), e))
    }
}

/// An RTM_SETLINK for the PF carrying one `IFLA_VFINFO_LIST` /
/// `IFLA_VF_INFO` nest with the given VF attribute.
pub fn vf_set_message(pf_index: u32, attr: VfInfo) -> LinkMessage {
    LinkUnspec::new_with_index(pf_index)
        .append_extra_attribute(LinkAttribute::VfInfoList(vec![LinkVfInfo(vec![attr])]))
        .build()
}

/// The kernel attribute for one setting. An 802.1Q VLAN is `IFLA_VF_VLAN`;
/// that one cannot say 802.1ad, which needs `IFLA_VF_VLAN_LIST` (drivers
/// without QinQ support refuse it with EPROTONOSUPPORT).
fn vf_info(vf: u32, attr: VfAttr) -> VfInfo {
    match attr {
        VfAttr::Mac(mac) => VfInfo::Mac(VfInfoMac::new(vf, &mac.0)),
        VfAttr::Vlan(v) => match v.proto {
            VlanProto::Dot1Q => VfInfo::Vlan(VfInfoVlan::new(vf, v.id.into(), v.qos.into())),
            VlanProto::Dot1Ad => VfInfo::VlanList(vec![VfVlan::Info(VfVlanInfo::new(
                vf,
                v.id.into(),
                v.qos.into(),
                VlanProtocol::Ieee8021Ad,
            ))]),
        },
        VfAttr::SpoofChk(on) => VfInfo::SpoofCheck(VfInfoSpoofCheck::new(vf, on)),
        VfAttr::Trust(on) => VfInfo::Trust(VfInfoTrust::new(vf, on)),
        VfAttr::LinkState(s) => VfInfo::LinkState(VfInfoLinkState::new(
            vf,
            match s {
                LinkState::Auto => VfLinkState::Auto,
                LinkState::Enable => VfLinkState::Enable,
                LinkState::Disable => VfLinkState::Disable,
            },
        )),
        VfAttr::Rate(r) => VfInfo::Rate(VfInfoRate::new(vf, r.min, r.max)),
    }
}

/// Equal to `ip link show <pf>`, reading the entry of VF `vf` from
/// `IFLA_VFINFO_LIST` (asked for with `RTEXT_FILTER_VF`).
fn vf_state(nl: &RtNetlink, pf: &str, vf: u32) -> Result<VfState> {
    let index = nl.link_index(pf)?;
    let handle = nl.handle().clone();
    let msg = nl.block_on(async move {
        let mut req = handle.link().get().match_index(index);
        req = req.set_filter_mask(AddressFamily::Unspec, vec![LinkExtentMask::Vf]);
        req.execute().try_next().await
    });
    let msg = match msg {
        Ok(Some(m)) => m,
        Ok(None) => return Err(NetlinkError::NoSuchLink(pf.to_string())),
        Err(e) => {
            return Err(NetlinkError::Other {
                pf: pf.to_string(),
                msg: e.to_string(),
            })
        }
    };
    let list: Vec<LinkVfInfo> = msg
        .attributes
        .into_iter()
        .find_map(|a| match a {
            LinkAttribute::VfInfoList(l) => Some(l),
            _ => None,
        })
        .unwrap_or_default();
    let count = list.len();
    list.iter()
        .find_map(|info| parse_vf_info(info, vf))
        .ok_or(NetlinkError::NoSuchVf {
            pf: pf.to_string(),
            vf,
            count,
        })
}

/// The state of VF `vf` if `info` is its entry.
fn parse_vf_info(info: &LinkVfInfo, vf: u32) -> Option<VfState> {
    let mut st = VfState::default();
    let mut mine = false;
    for attr in &info.0 {
        match attr {
            VfInfo::Mac(m) => {
                mine = m.vf_id == vf;
                let mut mac = [0u8; 6];
                mac.copy_from_slice(&m.mac[..6]);
                st.mac = MacAddr(mac);
            }
            VfInfo::Vlan(v) => {
                st.vlan = v.vlan_id as u16;
                st.qos = v.qos as u8;
            }
            VfInfo::VlanList(list) => {
                // The first entry carries the protocol of the VF's VLAN.
                if let Some(VfVlan::Info(i)) = list.first() {
                    st.proto = match i.protocol {
                        VlanProtocol::Ieee8021Ad => VlanProto::Dot1Ad,
                        _ => VlanProto::Dot1Q,
                    };
                }
            }
            VfInfo::Rate(r) => {
                st.min_tx_rate = r.min_tx_rate;
                st.max_tx_rate = r.max_tx_rate;
            }
            VfInfo::SpoofCheck(s) => st.spoofchk = Some(s.enabled),
            VfInfo::Trust(t) => st.trust = Some(t.enabled),
            VfInfo::LinkState(l) => {
                st.link_state = match l.state {
                    VfLinkState::Enable => LinkState::Enable,
                    VfLinkState::Disable => LinkState::Disable,
                    _ => LinkState::Auto,
                }
            }
            _ => {}
        }
    }
    mine.then_some(st)
}

/// Turns an rtnetlink error for a VF call into ours, keeping the errno.
fn refused(pf: &str, vf: u32, what: String, e: rtnetlink::Error) -> NetlinkError {
    match e {
        rtnetlink::Error::NetlinkError(msg) => NetlinkError::Refused {
            pf: pf.to_string(),
            vf,
            what,
            source: std::io::Error::from_raw_os_error(-msg.raw_code()),
        },
        other => NetlinkError::Other {
            pf: pf.to_string(),
            msg: other.to_string(),
        },
    }
}
