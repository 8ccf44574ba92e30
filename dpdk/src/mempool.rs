use std::ffi::CString;
use std::marker::PhantomData;
use std::ptr::NonNull;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use dpdk_sys::rte_mempool;

use crate::eal::LEAKED_POOLS;
use crate::error::{from_rte_errno, DpdkError, Result};
use crate::{Burst, Eal, Mbuf};

/// A packet mbuf pool (`rte_pktmbuf_pool_create`). Clones share the pool; it is
/// freed with the last clone, or leaked if mbufs are still out then (an mbuf
/// does not keep its pool alive, and freeing the pool under it would leave it
/// dangling).
#[derive(Debug, Clone)]
pub struct Mempool<'eal> {
    inner: Arc<PoolInner>,
    _eal: PhantomData<&'eal Eal>,
}

#[derive(Debug)]
struct PoolInner {
    raw: NonNull<rte_mempool>,
    name: String,
}

// SAFETY: pktmbuf pools use the default multi-producer/multi-consumer ring
// ops, so get/put from any thread is safe; the pointer itself is just a handle.
unsafe impl Send for PoolInner {}
// SAFETY: as above; shared access only reads counts or does MT-safe get/put.
unsafe impl Sync for PoolInner {}

impl Drop for PoolInner {
    fn drop(&mut self) {
        // SAFETY: raw is a live pool; in_use_count only reads its counters.
        let in_use = unsafe { dpdk_sys::rte_mempool_in_use_count(self.raw.as_ptr()) };
        if in_use > 0 {
            LEAKED_POOLS.fetch_add(1, Ordering::SeqCst);
            return;
        }
        // SAFETY: this is the last handle and no mbuf of the pool is alive.
        unsafe { dpdk_sys::rte_mempool_free(self.raw.as_ptr()) }
    }
}

impl<'eal> Mempool<'eal> {
    /// `rte_pktmbuf_pool_create(name, n, cache_size, 0, data_room, socket)`:
    /// `n` mbufs (best as 2^k - 1) with `data_room` bytes of buffer each
    /// (`RTE_MBUF_DEFAULT_BUF_SIZE` = 2176 holds a 1518-byte frame plus
    /// headroom), a per-lcore cache of `cache_size`, on `socket` (`None`: any).
    pub fn pktmbuf_pool(
        _eal: &'eal Eal,
        name: &str,
        n: u32,
        cache_size: u32,
        data_room: u16,
        socket: Option<u32>,
    ) -> Result<Self> {
        let c_name = CString::new(name).map_err(|_| DpdkError::NulInArgument {
            arg: name.to_owned(),
        })?;
        let socket = socket.map_or(dpdk_sys::SOCKET_ID_ANY, |s| s as i32);
        // SAFETY: EAL is initialised (an &Eal exists); c_name outlives the
        // call (the pool copies the name).
        let raw = unsafe {
            dpdk_sys::rte_pktmbuf_pool_create(c_name.as_ptr(), n, cache_size, 0, data_room, socket)
        };
        let raw = NonNull::new(raw).ok_or_else(|| {
            let (errno, msg) = from_rte_errno();
            DpdkError::MempoolCreate {
                name: name.to_owned(),
                errno,
                msg,
            }
        })?;
        Ok(Mempool {
            inner: Arc::new(PoolInner {
                raw,
                name: name.to_owned(),
            }),
            _eal: PhantomData,
        })
    }

    pub fn name(&self) -> &str {
        &self.inner.name
    }

    pub fn as_ptr(&self) -> *mut rte_mempool {
        self.inner.raw.as_ptr()
    }

    /// Free mbufs, including those in per-lcore caches.
    pub fn avail_count(&self) -> u32 {
        // SAFETY: the pool is alive while self is.
        unsafe { dpdk_sys::rte_mempool_avail_count(self.as_ptr()) }
    }

    /// Mbufs allocated and not yet freed.
    pub fn in_use_count(&self) -> u32 {
        // SAFETY: the pool is alive while self is.
        unsafe { dpdk_sys::rte_mempool_in_use_count(self.as_ptr()) }
    }

    /// One mbuf, reset, with default headroom and no data.
    pub fn alloc(&self) -> Result<Mbuf> {
        // SAFETY: the pool is a pktmbuf pool and alive while self is.
        let m = unsafe { dpdk_sys::rte_pktmbuf_alloc(self.as_ptr()) };
        NonNull::new(m)
            // SAFETY: a fresh mbuf from the pool, owned by nobody else.
            .map(|m| unsafe { Mbuf::from_raw(m.as_ptr()) })
            .ok_or_else(|| DpdkError::MbufAlloc {
                name: self.inner.name.clone(),
            })
    }

    /// Fill `burst` up to `n` mbufs in one `rte_pktmbuf_alloc_bulk` call (all
    /// or nothing).
    pub fn alloc_bulk<const N: usize>(&self, burst: &mut Burst<N>, n: usize) -> Result<()> {
        let (spare, room) = burst.spare();
        let n = n.min(room);
        // SAFETY: spare points at room >= n writable slots of the burst.
        let ret = unsafe { dpdk_sys::rte_pktmbuf_alloc_bulk(self.as_ptr(), spare, n as u32) };
        if ret != 0 {
            return Err(DpdkError::MbufAlloc {
                name: self.inner.name.clone(),
            });
        }
        // SAFETY: alloc_bulk wrote n valid, owned mbuf pointers.
        unsafe { burst.set_len(burst.len() + n) };
        Ok(())
    }
}
