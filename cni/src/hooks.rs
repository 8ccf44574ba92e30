//! The `test-hooks` build's fakes, chosen from the environment: a fake node
//! (sysfs and `/dev`) answered by an emulated kernel, a recording netlink
//! fake, and the failpoint variable. Not compiled into the default build.

use std::path::PathBuf;

use netlink::{RecordingNetlink, RtNetlink, VfNetlink};

use crate::node::{NetlinkFactory, Node};

/// A fake node at this path; every default path, the state directory
/// included, lives under it.
pub const FAKE_ROOT_ENV: &str = "DPDK_CNI_FAKE_ROOT";
/// The state directory of the recording netlink fake.
pub const FAKE_NETLINK_ENV: &str = "DPDK_CNI_FAKE_NETLINK";
/// `<point>` or `<point>:error`: see [`crate::failpoint`].
pub const FAILPOINT_ENV: &str = "DPDK_CNI_FAILPOINT";

/// The node the environment names: the real one unless the fakes are set.
pub fn node_from_env(get: &dyn Fn(&str) -> Option<String>) -> Node {
    let (sysfs, root) = match get(FAKE_ROOT_ENV) {
        Some(r) => (vfio::fake::emulated(&r), PathBuf::from(r)),
        None => (vfio::Sysfs::new("/"), PathBuf::from("/")),
    };
    let factory: NetlinkFactory = match get(FAKE_NETLINK_ENV) {
        Some(p) => Box::new(move || Ok(Box::new(RecordingNetlink::new(&p)) as Box<dyn VfNetlink>)),
        None => Box::new(|| Ok(Box::new(RtNetlink::connect()?) as Box<dyn VfNetlink>)),
    };
    Node::new(sysfs, root, factory)
}
