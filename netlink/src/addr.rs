//! Addresses and routes: what `ip addr add` and `ip route add` do.

use std::net::IpAddr;

use futures::{StreamExt, TryStreamExt};
use netlink_packet_core::{
    NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_APPEND, NLM_F_CREATE, NLM_F_REQUEST,
};
use netlink_packet_route::address::{AddressAttribute, AddressMessage};
use netlink_packet_route::route::{RouteAddress, RouteAttribute, RouteMessage};
use netlink_packet_route::RouteNetlinkMessage;
use rtnetlink::RouteMessageBuilder;

use crate::error::{NetlinkError, Result};
use crate::link::Link;
use crate::rtnl::RtNetlink;

fn failed(what: String, e: impl std::fmt::Display) -> NetlinkError {
    NetlinkError::Other {
        pf: what,
        msg: e.to_string(),
    }
}

impl RtNetlink {
    /// Equal to `ip addr add <ip>/<prefix> dev <link>`.
    pub fn add_address(&self, link: &Link, ip: IpAddr, prefix: u8) -> Result<()> {
        let handle = self.handle().clone();
        let index = link.index;
        self.block_on(async move { handle.address().add(index, ip, prefix).execute().await })
            .map_err(|e| failed(format!("ip addr add {ip}/{prefix} dev {}", link.name), e))
    }

    /// Equal to `ip addr show dev <link>`: the addresses with their prefix length.
    pub fn addresses(&self, link: &Link) -> Result<Vec<(IpAddr, u8)>> {
        let handle = self.handle().clone();
        let index = link.index;
        let msgs: std::result::Result<Vec<AddressMessage>, _> = self.block_on(async move {
            handle
                .address()
                .get()
                .set_link_index_filter(index)
                .execute()
                .try_collect()
                .await
        });
        let msgs = msgs.map_err(|e| failed(format!("ip addr show dev {}", link.name), e))?;
        Ok(msgs
            .into_iter()
            .filter_map(|m| {
                let prefix = m.header.prefix_len;
                m.attributes.into_iter().find_map(|a| match a {
                    AddressAttribute::Address(ip) => Some((ip, prefix)),
                    _ => None,
                })
            })
            .collect())
    }

    /// Equal to `ip route add <dst>/<prefix> [via <gw>] dev <link>`.
    pub fn add_route(
        &self,
        link: &Link,
        dst: IpAddr,
        prefix: u8,
        gw: Option<IpAddr>,
    ) -> Result<()> {
        let what = || {
            let via = gw.map(|g| format!(" via {g}")).unwrap_or_default();
            format!("ip route add {dst}/{prefix}{via} dev {}", link.name)
        };
        let mut b = RouteMessageBuilder::<IpAddr>::new()
            .destination_prefix(dst, prefix)
            .map_err(|e| failed(what(), e))?
            .output_interface(link.index);
        if let Some(g) = gw {
            b = b.gateway(g).map_err(|e| failed(what(), e))?;
        }
        // NLM_F_CREATE|NLM_F_APPEND and no NLM_F_EXCL, as the reference
        // plugins add routes: a second network may carry a default route
        // too, instead of failing with EEXIST.
        let mut req = NetlinkMessage::from(RouteNetlinkMessage::NewRoute(b.build()));
        req.header.flags = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_APPEND;
        let mut handle = self.handle().clone();
        self.block_on(async move {
            let mut response = handle.request(req)?;
            while let Some(m) = response.next().await {
                if let NetlinkPayload::Error(e) = m.payload {
                    return Err(rtnetlink::Error::NetlinkError(e));
                }
            }
            Ok(())
        })
        .map_err(|e| failed(what(), e))
    }

    /// The interfaces that carry a default route in the main table (IPv4 and IPv6).
    pub fn default_route_links(&self) -> Result<Vec<u32>> {
        let mut out = Vec::new();
        for family in [false, true] {
            let handle = self.handle().clone();
            let msg = if family {
                RouteMessageBuilder::<std::net::Ipv6Addr>::new().build()
            } else {
                RouteMessageBuilder::<std::net::Ipv4Addr>::new().build()
            };
            let routes: std::result::Result<Vec<RouteMessage>, _> =
                self.block_on(async move { handle.route().get(msg).execute().try_collect().await });
            let routes = routes.map_err(|e| failed("ip route show".into(), e))?;
            for r in routes {
                // RT_TABLE_MAIN is 254.
                if r.header.destination_prefix_length != 0 || r.header.table != 254 {
                    continue;
                }
                let has_dst = r.attributes.iter().any(|a| {
                    matches!(
                        a,
                        RouteAttribute::Destination(RouteAddress::Inet(_))
                            | RouteAttribute::Destination(RouteAddress::Inet6(_))
                    )
                });
                if has_dst {
                    continue;
                }
                for a in &r.attributes {
                    if let RouteAttribute::Oif(i) = a {
                        out.push(*i);
                    }
                }
            }
        }
        Ok(out)
    }
}
