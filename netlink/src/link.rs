//! Links: look up, rename, MAC, MTU, up/down, move between namespaces,
//! macvlan create and delete. Each is what `ip link` does, over rtnetlink.

use futures::TryStreamExt;
use netlink_packet_route::link::{LinkAttribute, LinkFlags, LinkMessage, MacVlanMode};
use rtnetlink::{LinkMacVlan, LinkUnspec};

use crate::error::{NetlinkError, Result};
use crate::rtnl::RtNetlink;
use crate::types::MacAddr;

/// What `ip link show <name>` says of a link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub index: u32,
    pub name: String,
    pub mac: Option<MacAddr>,
    pub mtu: u32,
    pub up: bool,
    /// The driver signals carrier (IFF_LOWER_UP).
    pub lower_up: bool,
}

fn from_message(m: LinkMessage) -> Link {
    let mut l = Link {
        index: m.header.index,
        name: String::new(),
        mac: None,
        mtu: 0,
        up: m.header.flags.contains(LinkFlags::Up),
        lower_up: m.header.flags.contains(LinkFlags::LowerUp),
    };
    for a in m.attributes {
        match a {
            LinkAttribute::IfName(n) => l.name = n,
            LinkAttribute::Mtu(v) => l.mtu = v,
            LinkAttribute::Address(b) if b.len() == 6 => {
                let mut mac = [0u8; 6];
                mac.copy_from_slice(&b);
                l.mac = Some(MacAddr(mac));
            }
            _ => {}
        }
    }
    l
}

fn mac_message(link: &Link, mac: MacAddr) -> LinkMessage {
    LinkUnspec::new_with_index(link.index)
        .address(mac.0.to_vec())
        .build()
}

fn failed(link: &str, what: &str, e: rtnetlink::Error) -> NetlinkError {
    match e {
        rtnetlink::Error::NetlinkError(m) => NetlinkError::Other {
            pf: link.to_string(),
            msg: format!(
                "{what}: {}",
                std::io::Error::from_raw_os_error(-m.raw_code())
            ),
        },
        other => NetlinkError::Other {
            pf: link.to_string(),
            msg: format!("{what}: {other}"),
        },
    }
}

impl RtNetlink {
    /// Equal to `ip link show <name>`; `None` when there is no such link.
    pub fn link_by_name(&self, name: &str) -> Result<Option<Link>> {
        let handle = self.handle().clone();
        let n = name.to_string();
        let res = self
            .block_on(async move { handle.link().get().match_name(n).execute().try_next().await });
        match res {
            Ok(m) => Ok(m.map(from_message)),
            Err(rtnetlink::Error::NetlinkError(e))
                if e.raw_code() == -crate::rtnl::libc_enodev() =>
            {
                Ok(None)
            }
            Err(e) => Err(failed(name, "ip link show", e)),
        }
    }

    /// Equal to `ip link show`.
    pub fn links(&self) -> Result<Vec<Link>> {
        let handle = self.handle().clone();
        let res: std::result::Result<Vec<LinkMessage>, _> =
            self.block_on(async move { handle.link().get().execute().try_collect().await });
        res.map(|v| v.into_iter().map(from_message).collect())
            .map_err(|e| failed("*", "ip link show", e))
    }

    fn change_raw(&self, msg: LinkMessage) -> std::result::Result<(), rtnetlink::Error> {
        let handle = self.handle().clone();
        self.block_on(async move { handle.link().change(msg).execute().await })
    }

    fn change(&self, name: &str, what: &str, msg: LinkMessage) -> Result<()> {
        self.change_raw(msg).map_err(|e| failed(name, what, e))
    }

    /// Equal to `ip link set <link> up` or `down`.
    pub fn set_link_up(&self, link: &Link, up: bool) -> Result<()> {
        let b = LinkUnspec::new_with_index(link.index);
        let msg = if up { b.up() } else { b.down() }.build();
        self.change(
            &link.name,
            if up {
                "ip link set up"
            } else {
                "ip link set down"
            },
            msg,
        )
    }

    /// Equal to `ip link set <link> name <name>` (the link must be down).
    pub fn rename_link(&self, link: &Link, name: &str) -> Result<()> {
        let msg = LinkUnspec::new_with_index(link.index)
            .name(name.to_string())
            .build();
        self.change(&link.name, &format!("ip link set name {name}"), msg)
    }

    /// Equal to `ip link set <link> address <mac>`.
    pub fn set_link_mac(&self, link: &Link, mac: MacAddr) -> Result<()> {
        self.change(
            &link.name,
            &format!("ip link set address {mac}"),
            mac_message(link, mac),
        )
    }

    /// Like [`Self::set_link_mac`], but `Ok(false)` when the driver answers
    /// EADDRNOTAVAIL: a VF driver whose PF holds an administrative MAC for it
    /// (igb refuses the VF any MAC while one is set, even the same one).
    pub fn try_set_link_mac(&self, link: &Link, mac: MacAddr) -> Result<bool> {
        match self.change_raw(mac_message(link, mac)) {
            Ok(()) => Ok(true),
            Err(rtnetlink::Error::NetlinkError(m)) if -m.raw_code() == libc::EADDRNOTAVAIL => {
                Ok(false)
            }
            Err(e) => Err(failed(&link.name, &format!("ip link set address {mac}"), e)),
        }
    }

    /// Equal to `ip link set <link> mtu <mtu>`.
    pub fn set_link_mtu(&self, link: &Link, mtu: u32) -> Result<()> {
        let msg = LinkUnspec::new_with_index(link.index).mtu(mtu).build();
        self.change(&link.name, &format!("ip link set mtu {mtu}"), msg)
    }

    /// Equal to `ip link set <link> netns <fd>`: moves it to the network
    /// namespace open at `fd` (IFLA_NET_NS_FD).
    pub fn move_link_to_netns(&self, link: &Link, fd: std::os::fd::RawFd) -> Result<()> {
        let msg = LinkUnspec::new_with_index(link.index)
            .setns_by_fd(fd)
            .build();
        self.change(&link.name, "ip link set netns", msg)
    }

    /// Equal to `ip link set <link> netns <fd> name <name>`: one request
    /// that moves the link and gives it `name` in the target namespace (the
    /// kernel closes the link for the move, so it need not be down first).
    /// `Ok(false)` when `name` is taken there (EEXIST): the kernel may have
    /// refused before the move or moved the link under its current name
    /// and refused the rename, so look for it in both namespaces.
    pub fn move_link_to_netns_as(
        &self,
        link: &Link,
        fd: std::os::fd::RawFd,
        name: &str,
    ) -> Result<bool> {
        let msg = LinkUnspec::new_with_index(link.index)
            .setns_by_fd(fd)
            .name(name.to_string())
            .build();
        match self.change_raw(msg) {
            Ok(()) => Ok(true),
            Err(rtnetlink::Error::NetlinkError(m)) if -m.raw_code() == libc::EEXIST => Ok(false),
            Err(e) => Err(failed(
                &link.name,
                &format!("ip link set netns name {name}"),
                e,
            )),
        }
    }

    /// Equal to `ip link add <name> link <master> type macvlan mode bridge`.
    pub fn add_macvlan(&self, name: &str, master: &Link) -> Result<()> {
        let handle = self.handle().clone();
        let msg = LinkMacVlan::new(name, master.index, MacVlanMode::Bridge).build();
        self.block_on(async move { handle.link().add(msg).execute().await })
            .map_err(|e| {
                failed(
                    name,
                    &format!("ip link add link {} type macvlan", master.name),
                    e,
                )
            })
    }

    /// Equal to `ip link del <link>`.
    pub fn delete_link(&self, link: &Link) -> Result<()> {
        let handle = self.handle().clone();
        let index = link.index;
        self.block_on(async move { handle.link().del(index).execute().await })
            .map_err(|e| failed(&link.name, "ip link del", e))
    }
}
