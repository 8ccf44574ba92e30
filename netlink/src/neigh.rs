//! Neighbour entries: what `ip neigh replace` and `ip neigh change ... use`
//! do, over rtnetlink RTM_NEWNEIGH (see rtnetlink(7) and
//! `include/uapi/linux/neighbour.h`).

use std::net::IpAddr;

use netlink_packet_route::neighbour::{NeighbourFlags, NeighbourState};

use crate::error::{NetlinkError, Result};
use crate::link::Link;
use crate::rtnl::RtNetlink;
use crate::types::MacAddr;

fn failed(what: String, e: impl std::fmt::Display) -> NetlinkError {
    NetlinkError::Other {
        pf: what,
        msg: e.to_string(),
    }
}

impl RtNetlink {
    /// Equal to `ip neigh replace <ip> lladdr <mac> nud stale dev <link>`: an
    /// entry the kernel takes as known but unconfirmed.
    pub fn replace_stale_neighbour(&self, link: &Link, ip: IpAddr, mac: MacAddr) -> Result<()> {
        let handle = self.handle().clone();
        let index = link.index;
        self.block_on(async move {
            handle
                .neighbours()
                .add(index, ip)
                .state(NeighbourState::Stale)
                .link_layer_address(&mac.0)
                .replace()
                .execute()
                .await
        })
        .map_err(|e| {
            failed(
                format!(
                    "ip neigh replace {ip} lladdr {mac} nud stale dev {}",
                    link.name
                ),
                e,
            )
        })
    }

    /// Equal to `ip neigh change <ip> dev <link> use`: NTF_USE makes the
    /// kernel treat the entry as used by outgoing traffic (neigh_event_send),
    /// which starts its resolution timers as a packet to it would.
    pub fn use_neighbour(&self, link: &Link, ip: IpAddr) -> Result<()> {
        let handle = self.handle().clone();
        let index = link.index;
        self.block_on(async move {
            handle
                .neighbours()
                .add(index, ip)
                .state(NeighbourState::None)
                .flags(NeighbourFlags::Use)
                .replace()
                .execute()
                .await
        })
        .map_err(|e| failed(format!("ip neigh change {ip} dev {} use", link.name), e))
    }
}
