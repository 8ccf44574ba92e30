//! dpdk-cni: a CNI plugin that hands SR-IOV VFs (or whole PFs) to DPDK pods
//! through vfio-pci, or their netdevs (or a macvlan) to kernel-mode pods.
//!
//! - [`cli`] is the edge: CNI environment and netconf in, result or error
//!   JSON out; [`error`] maps every crate's errors to CNI codes.
//! - [`commands`] holds one file per verb; [`config`] and [`plan`] check the
//!   netconf, [`resolve`] finds the device it names.
//! - [`driver`] says what a device mode does; [`mode`] holds the modes
//!   (vfio-pci, netdevice, macvlan), one file each, and picks one.
//! - [`podnet`], [`hostlink`] and [`macpin`] are the pod's side, the host's
//!   side and the PF's MAC pins of a netdev; [`release`] undoes an
//!   attachment for DEL, GC and a failed ADD.
//! - Device work goes through the `vfio` crate, VF admin state through
//!   `netlink`, and every change is recorded first in the `ledger`, so DEL
//!   and GC can undo it after a crash.
//!
//! The `test-hooks` feature adds [`hooks`]: a fake node, a recording netlink
//! and failpoints chosen from the environment, for the tests. The default
//! build has none of them.

pub mod allocation;
pub mod cli;
pub mod commands;
pub mod config;
pub mod devinfo;
pub mod driver;
pub mod env;
pub mod error;
pub mod failpoint;
pub mod guards;
#[cfg(feature = "test-hooks")]
pub mod hooks;
pub mod hostlink;
pub mod ipam;
pub mod log;
pub mod macpin;
pub mod mode;
pub mod node;
pub mod paths;
pub mod plan;
pub mod podnet;
pub mod release;
pub mod resolve;
pub mod result;
pub mod version;
