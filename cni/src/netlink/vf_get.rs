use futures::TryStreamExt;
use netlink_packet_route::link::{
    LinkAttribute, LinkExtentMask, LinkVfInfo, VfInfo, VfLinkState, VfVlan, VlanProtocol,
};
use netlink_packet_route::AddressFamily;

use super::rtnl::RtNetlink;
use super::{LinkState, MacAddr, NetlinkError, Result, VfState, VlanProto};

/// Equal to `ip link show <pf>`, reading the entry of VF `vf` from
/// `IFLA_VFINFO_LIST` (asked for with `RTEXT_FILTER_VF`).
pub(super) fn vf_state(nl: &RtNetlink, pf: &str, vf: u32) -> Result<VfState> {
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
pub(super) fn parse_vf_info(info: &LinkVfInfo, vf: u32) -> Option<VfState> {
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
