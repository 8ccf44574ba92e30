//! A safe Rust API over DPDK's EAL, ethdev, mempool and mbuf libraries, for
//! the workloads dpdk-cni hands devices to.
//!
//! [`Eal::init`] starts the Environment Abstraction Layer (`rte_eal_init`)
//! once per process and cleans it up when dropped (`rte_eal_cleanup`).
//! [`Mempool::pktmbuf_pool`] wraps `rte_pktmbuf_pool_create`, [`Mbuf`] owns one
//! `rte_mbuf`, [`Port`] drives one ethdev port (configure, queue setup, start,
//! stop, stats, MAC address) and moves packets in bursts through a reusable
//! [`Burst`] array with `rte_eth_rx_burst`/`rte_eth_tx_burst`. Per-packet
//! accessors read the `rte_mbuf` fields in Rust instead of calling a C
//! wrapper per packet. [`discover`] (the `dpdk-discover` crate) builds the EAL
//! arguments from what a pod sees, without DPDK. The crate makes no kernel
//! calls of its own; everything goes through DPDK.

mod burst;
mod eal;
mod error;
mod mbuf;
mod mempool;
mod port;

pub use burst::Burst;
pub use dpdk_discover as discover;
pub use dpdk_sys as sys;
pub use eal::{lcore_id, socket_id, Eal};
pub use error::{rte_strerror, DpdkError, Result};
pub use mbuf::Mbuf;
pub use mempool::Mempool;
pub use port::{Port, PortConfig, PortStats};
