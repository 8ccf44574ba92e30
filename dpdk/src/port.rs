use std::cell::Cell;
use std::ffi::CString;
use std::marker::PhantomData;

use crate::error::{from_ret, DpdkError, Result};
use crate::{Burst, Eal, Mempool};

/// Queues and descriptor ring sizes for [`Port::setup`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortConfig {
    pub rx_queues: u16,
    pub tx_queues: u16,
    pub rx_desc: u16,
    pub tx_desc: u16,
}

impl Default for PortConfig {
    /// One queue each way, 1024 descriptors (DPDK's examples use 1024).
    fn default() -> Self {
        PortConfig {
            rx_queues: 1,
            tx_queues: 1,
            rx_desc: 1024,
            tx_desc: 1024,
        }
    }
}

/// Basic counters (`struct rte_eth_stats`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PortStats {
    pub ipackets: u64,
    pub opackets: u64,
    pub ibytes: u64,
    pub obytes: u64,
    /// Dropped by the hardware: rx queues full.
    pub imissed: u64,
    pub ierrors: u64,
    pub oerrors: u64,
    /// Rx mbuf allocation failures.
    pub rx_nombuf: u64,
}

/// One ethdev port. Stopped and closed (`rte_eth_dev_stop`,
/// `rte_eth_dev_close`) on drop. `Send` but not `Sync`: DPDK's rx/tx burst
/// functions are not safe to call on one queue from two threads.
#[derive(Debug)]
pub struct Port<'eal> {
    id: u16,
    started: bool,
    /// Pools the rx queues allocate from, kept alive until the port is closed.
    pools: Vec<Mempool<'eal>>,
    _eal: PhantomData<&'eal Eal>,
    _not_sync: PhantomData<Cell<()>>,
}

impl<'eal> Port<'eal> {
    /// The port with id `id` (`rte_eth_dev_is_valid_port`).
    pub fn open(eal: &'eal Eal, id: u16) -> Result<Self> {
        // SAFETY: EAL is initialised; any id may be checked.
        if unsafe { dpdk_sys::rte_eth_dev_is_valid_port(id) } == 0 {
            return Err(DpdkError::NoSuchPort {
                port: id,
                available: eal.port_count(),
            });
        }
        Ok(Port {
            id,
            started: false,
            pools: Vec::new(),
            _eal: PhantomData,
            _not_sync: PhantomData,
        })
    }

    /// The port of a device by its name (`0000:01:10.0`, `net_ring0`).
    pub fn by_name(eal: &'eal Eal, name: &str) -> Result<Self> {
        let not_found = || DpdkError::NoPortNamed {
            name: name.to_owned(),
        };
        let c_name = CString::new(name).map_err(|_| not_found())?;
        let mut id = 0u16;
        // SAFETY: c_name is a valid string; id is a valid out pointer.
        let ret = unsafe { dpdk_sys::rte_eth_dev_get_port_by_name(c_name.as_ptr(), &mut id) };
        if ret != 0 {
            return Err(not_found());
        }
        Self::open(eal, id)
    }

    #[inline]
    pub fn id(&self) -> u16 {
        self.id
    }

    fn check(&self, op: &'static str, ret: i32) -> Result<()> {
        if ret < 0 {
            let (errno, msg) = from_ret(ret);
            return Err(DpdkError::Port {
                port: self.id,
                op,
                errno,
                msg,
            });
        }
        Ok(())
    }

    /// The NUMA socket of the device, `None` when unknown (vdevs, no NUMA).
    pub fn socket_id(&self) -> Option<u32> {
        // SAFETY: the port id is valid.
        let s = unsafe { dpdk_sys::rte_eth_dev_socket_id(self.id) };
        u32::try_from(s).ok()
    }

    /// `rte_eth_dev_configure` with `rx_queues`/`tx_queues` and a default
    /// (all-zero) `rte_eth_conf`: no offloads, no RSS.
    pub fn configure(&mut self, rx_queues: u16, tx_queues: u16) -> Result<()> {
        let conf = dpdk_sys::rte_eth_conf::default();
        // SAFETY: the port id is valid; conf is read during the call only.
        let ret = unsafe { dpdk_sys::rte_eth_dev_configure(self.id, rx_queues, tx_queues, &conf) };
        self.check("rte_eth_dev_configure", ret)
    }

    fn queue_socket(&self) -> u32 {
        self.socket_id().unwrap_or(dpdk_sys::SOCKET_ID_ANY as u32)
    }

    /// `rte_eth_rx_queue_setup` on the port's socket, receiving into `pool`.
    pub fn rx_queue_setup(&mut self, queue: u16, nb_desc: u16, pool: &Mempool<'eal>) -> Result<()> {
        // SAFETY: the port id is valid; a null rx_conf asks for the driver's
        // defaults; the pool is kept alive in self.pools until close.
        let ret = unsafe {
            dpdk_sys::rte_eth_rx_queue_setup(
                self.id,
                queue,
                nb_desc,
                self.queue_socket(),
                std::ptr::null(),
                pool.as_ptr(),
            )
        };
        self.check("rte_eth_rx_queue_setup", ret)?;
        if !self.pools.iter().any(|p| p.as_ptr() == pool.as_ptr()) {
            self.pools.push(pool.clone());
        }
        Ok(())
    }

    /// `rte_eth_tx_queue_setup` on the port's socket with default tx_conf.
    pub fn tx_queue_setup(&mut self, queue: u16, nb_desc: u16) -> Result<()> {
        // SAFETY: the port id is valid; a null tx_conf asks for defaults.
        let ret = unsafe {
            dpdk_sys::rte_eth_tx_queue_setup(
                self.id,
                queue,
                nb_desc,
                self.queue_socket(),
                std::ptr::null(),
            )
        };
        self.check("rte_eth_tx_queue_setup", ret)
    }

    /// Configure the port and set up every queue; rx queues use `pool`.
    pub fn setup(&mut self, conf: &PortConfig, pool: &Mempool<'eal>) -> Result<()> {
        self.configure(conf.rx_queues, conf.tx_queues)?;
        for q in 0..conf.rx_queues {
            self.rx_queue_setup(q, conf.rx_desc, pool)?;
        }
        for q in 0..conf.tx_queues {
            self.tx_queue_setup(q, conf.tx_desc)?;
        }
        Ok(())
    }

    /// `rte_eth_dev_start`.
    pub fn start(&mut self) -> Result<()> {
        // SAFETY: the port id is valid.
        let ret = unsafe { dpdk_sys::rte_eth_dev_start(self.id) };
        self.check("rte_eth_dev_start", ret)?;
        self.started = true;
        Ok(())
    }

    /// `rte_eth_dev_stop`.
    pub fn stop(&mut self) -> Result<()> {
        // SAFETY: the port id is valid.
        let ret = unsafe { dpdk_sys::rte_eth_dev_stop(self.id) };
        self.started = false;
        self.check("rte_eth_dev_stop", ret)
    }

    /// `rte_eth_promiscuous_enable`.
    pub fn promiscuous_enable(&mut self) -> Result<()> {
        // SAFETY: the port id is valid.
        let ret = unsafe { dpdk_sys::rte_eth_promiscuous_enable(self.id) };
        self.check("rte_eth_promiscuous_enable", ret)
    }

    /// `rte_eth_stats_get`.
    pub fn stats(&self) -> Result<PortStats> {
        let mut s = dpdk_sys::rte_eth_stats::default();
        // SAFETY: the port id is valid; s is a valid out pointer.
        let ret = unsafe { dpdk_sys::rte_eth_stats_get(self.id, &mut s) };
        self.check("rte_eth_stats_get", ret)?;
        Ok(PortStats {
            ipackets: s.ipackets,
            opackets: s.opackets,
            ibytes: s.ibytes,
            obytes: s.obytes,
            imissed: s.imissed,
            ierrors: s.ierrors,
            oerrors: s.oerrors,
            rx_nombuf: s.rx_nombuf,
        })
    }

    /// `rte_eth_stats_reset`.
    pub fn reset_stats(&self) -> Result<()> {
        // SAFETY: the port id is valid.
        let ret = unsafe { dpdk_sys::rte_eth_stats_reset(self.id) };
        self.check("rte_eth_stats_reset", ret)
    }

    /// The port's MAC address (`rte_eth_macaddr_get`).
    pub fn mac(&self) -> Result<[u8; 6]> {
        let mut addr = dpdk_sys::rte_ether_addr::default();
        // SAFETY: the port id is valid; addr is a valid out pointer.
        let ret = unsafe { dpdk_sys::rte_eth_macaddr_get(self.id, &mut addr) };
        self.check("rte_eth_macaddr_get", ret)?;
        Ok(addr.addr_bytes)
    }

    /// Receive into the free slots of `burst` (`rte_eth_rx_burst`, one call);
    /// returns how many arrived.
    #[inline]
    pub fn rx_burst<const N: usize>(&self, queue: u16, burst: &mut Burst<N>) -> usize {
        let (spare, room) = burst.spare();
        // SAFETY: the port id is valid and !Sync keeps a queue on one thread;
        // spare points at `room` writable slots. Before start the driver's
        // burst function is a dummy that returns 0.
        let n = unsafe { dpdk_sys::rte_eth_rx_burst(self.id, queue, spare, room as u16) } as usize;
        // SAFETY: the driver wrote n owned mbuf pointers after the live prefix.
        unsafe { burst.set_len(burst.len() + n) };
        n
    }

    /// Send from the front of `burst` (`rte_eth_tx_burst`, one call); the
    /// mbufs the driver did not take stay in `burst`. Returns how many went.
    #[inline]
    pub fn tx_burst<const N: usize>(&self, queue: u16, burst: &mut Burst<N>) -> usize {
        let len = burst.len();
        if len == 0 {
            return 0;
        }
        // SAFETY: the port id is valid and !Sync keeps a queue on one thread;
        // the first len slots hold owned mbufs, of which the driver takes
        // ownership of the first n returned.
        let n = unsafe { dpdk_sys::rte_eth_tx_burst(self.id, queue, burst.raw_ptr(), len as u16) }
            as usize;
        burst.consume_front(n);
        n
    }
}

impl Drop for Port<'_> {
    fn drop(&mut self) {
        // Best effort: errors cannot be reported from drop.
        if self.started {
            let _ = self.stop();
        }
        // SAFETY: the port id is valid; close frees the queues' mbufs back to
        // self.pools, which are dropped after this.
        unsafe {
            dpdk_sys::rte_eth_dev_close(self.id);
        }
    }
}
