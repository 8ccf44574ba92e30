//! Netlink for dpdk-cni: VF admin state through the PF netdev (what
//! `ip link set <pf> vf N ...` does, over rtnetlink `IFLA_VFINFO_LIST`, see
//! <https://docs.kernel.org/networking/netdevices.html> and
//! `include/uapi/linux/if_link.h`), and the links, addresses, routes and
//! network namespaces the kernel-mode paths need.
//!
//! Callers talk to a [`VfNetlink`]: [`RtNetlink`] is the kernel; with the
//! `fake` feature, `RecordingNetlink` is a fake PF driver that keeps VF state
//! in files and logs every call, for tests. Each VF setting is one
//! [`VfAttr`], set with [`VfNetlink::set_vf`].

mod addr;
mod error;
pub mod garp;
mod link;
mod neigh;
pub mod netns;
#[cfg(feature = "fake")]
mod record;
mod rtnl;
mod settings;
mod types;
mod vf;

pub use error::{NetlinkError, Result};
pub use link::Link;
#[cfg(feature = "fake")]
pub use record::{FakeLinks, FakePf, RecordingNetlink};
pub use rtnl::RtNetlink;
pub use settings::{apply_vf_settings, restore_vf_settings, vf_drift};
pub use types::{
    LinkState, MacAddr, Rate, VfAttr, VfNetlink, VfSettings, VfState, Vlan, VlanProto,
};
pub use vf::vf_set_message;
