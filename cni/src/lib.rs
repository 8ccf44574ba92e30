//! dpdk-cni: a CNI plugin that hands SR-IOV VFs (or whole PFs) to DPDK pods
//! through vfio-pci.
//!
//! This crate is the protocol edge: CNI environment and netconf in, result
//! or error JSON out ([`cli`]). Device work goes through the `vfio` crate, VF
//! admin state through [`netlink`], and every change is recorded first in
//! the [`ledger`] so DEL and GC can undo it after a crash.

pub mod cli;
pub mod config;
pub mod devinfo;
pub mod env;
pub mod error;
pub mod failpoint;
pub mod ipam;
pub mod kernel;
pub mod ledger;
pub mod log;
pub mod netlink;
pub mod plugin;
pub mod result;
pub mod version;
