//! The node the plugin works on: its sysfs (and `/dev`), the root default
//! paths live under, and how to reach the PFs over rtnetlink.

use std::path::{Path, PathBuf};

use ledger::{Ledger, NodeSettings};
use netlink::{RtNetlink, VfNetlink};
use vfio::{BindOptions, PciAddress, Sysfs};

use crate::error::{CniError, Result};
use crate::paths;

/// Opens the netlink side when a command first needs it.
pub type NetlinkFactory = Box<dyn Fn() -> std::io::Result<Box<dyn VfNetlink>>>;

pub struct Node {
    pub sysfs: Sysfs,
    pub root: PathBuf,
    /// The node's own settings (`/etc/dpdk-cni/node.json`), below `root`.
    pub settings: NodeSettings,
    pub bind: BindOptions,
    /// The node daemon's DRA driver is the caller (in its own process): it
    /// may use the reserved DRA network, and the allocation it acts on is
    /// the ResourceClaim's, not a device plugin's.
    pub dra: bool,
    netlink_factory: NetlinkFactory,
    netlink: Option<Box<dyn VfNetlink>>,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("sysfs", &self.sysfs)
            .field("root", &self.root)
            .finish()
    }
}

impl Node {
    /// A node with the default settings; [`Node::load_settings`] reads its file.
    pub fn new(sysfs: Sysfs, root: impl Into<PathBuf>, netlink_factory: NetlinkFactory) -> Self {
        let root = root.into();
        Node {
            sysfs,
            settings: NodeSettings::defaults(&root),
            root,
            bind: BindOptions::default(),
            dra: false,
            netlink_factory,
            netlink: None,
        }
    }

    /// This machine: sysfs at `/`, the kernel's rtnetlink.
    pub fn real() -> Self {
        Node::new(
            Sysfs::new("/"),
            "/",
            Box::new(|| Ok(Box::new(RtNetlink::connect()?) as Box<dyn VfNetlink>)),
        )
    }

    /// The node's ledger, validating what it reads.
    pub fn ledger(&self) -> Ledger {
        Ledger::new(&self.settings.state_dir).validating(self.root.join(paths::DEVINFO_DIR))
    }

    /// Reads the node's settings file.
    pub fn load_settings(&mut self) -> Result<()> {
        self.settings = NodeSettings::load(&self.root)?;
        Ok(())
    }

    /// Whether this is the machine itself rather than a fake tree.
    pub fn is_real(&self) -> bool {
        self.root == Path::new("/")
    }

    /// VF admin state through the PF, opened on first use.
    pub fn nl(&mut self) -> Result<&mut dyn VfNetlink> {
        if self.netlink.is_none() {
            let nl = (self.netlink_factory)()
                .map_err(|e| CniError::io(format!("failed to open a netlink socket: {e}")))?;
            self.netlink = Some(nl);
        }
        Ok(self.netlink.as_deref_mut().expect("set above"))
    }

    /// The path user space sees for a node file (the fake root stripped).
    pub fn node_path(&self, p: &Path) -> PathBuf {
        match p.strip_prefix(&self.root) {
            Ok(rel) => Path::new("/").join(rel),
            Err(_) => p.to_path_buf(),
        }
    }

    /// The netdev the device has in the host now, if any.
    pub fn current_netdev(&self, addr: PciAddress) -> Option<String> {
        let names = self.sysfs.device(addr).ok()?.net_names().ok()?;
        names.into_iter().next()
    }
}

/// rtnetlink in the calling thread's network namespace.
pub fn host_netlink() -> Result<RtNetlink> {
    RtNetlink::connect().map_err(|e| CniError::io(format!("failed to open a netlink socket: {e}")))
}
