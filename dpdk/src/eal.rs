use std::ffi::{c_char, CString};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use crate::error::{from_rte_errno, DpdkError, Result};

/// Set once `rte_eal_init` has been called: EAL cannot init twice in a process,
/// even after `rte_eal_cleanup`.
static INITIALIZED: AtomicBool = AtomicBool::new(false);

/// Mempools dropped while mbufs were still out; their memory must outlive
/// those mbufs, so EAL is not cleaned up.
pub(crate) static LEAKED_POOLS: AtomicUsize = AtomicUsize::new(0);

/// The initialised EAL. Ports and mempools borrow it, so they are gone before
/// it is dropped; dropping it calls `rte_eal_cleanup`.
#[derive(Debug)]
pub struct Eal {
    _private: (),
}

impl Eal {
    /// `rte_eal_init` with `args` (EAL options only, without a program name;
    /// `dpdk` is passed as `argv[0]`). Fails on a second call in a process.
    pub fn init(args: Vec<String>) -> Result<Eal> {
        let mut c_args = Vec::with_capacity(args.len() + 1);
        for arg in std::iter::once("dpdk".to_owned()).chain(args) {
            c_args.push(CString::new(arg).map_err(|e| DpdkError::NulInArgument {
                arg: String::from_utf8_lossy(&e.into_vec()).into_owned(),
            })?);
        }
        if INITIALIZED.swap(true, Ordering::SeqCst) {
            return Err(DpdkError::EalAlreadyInitialized);
        }
        // EAL keeps pointers into argv (it permutes it and some options keep
        // their value strings), so the strings live for the whole process.
        let c_args: &'static mut [CString] = c_args.leak();
        let argv: &'static mut [*mut c_char] = c_args
            .iter_mut()
            .map(|a| a.as_ptr() as *mut c_char)
            .collect::<Vec<_>>()
            .leak();
        let argc = argv.len() as i32;
        // SAFETY: argv holds argc pointers to NUL-terminated strings that are
        // never freed; INITIALIZED guarantees a single call per process.
        let ret = unsafe { dpdk_sys::rte_eal_init(argc, argv.as_mut_ptr()) };
        if ret < 0 {
            let (errno, msg) = from_rte_errno();
            return Err(DpdkError::EalInit { errno, msg });
        }
        Ok(Eal { _private: () })
    }

    /// Ethdev ports probed (PCI devices given with `-a`, vdevs, ...).
    pub fn port_count(&self) -> u16 {
        // SAFETY: EAL is initialised (self exists); no arguments.
        unsafe { dpdk_sys::rte_eth_dev_count_avail() }
    }

    /// Create a virtual device after init, as `--vdev name,args` would.
    pub fn vdev_init(&self, name: &str, args: &str) -> Result<()> {
        let err = |errno: i32| DpdkError::Vdev {
            name: name.to_owned(),
            errno,
            msg: crate::rte_strerror(errno),
        };
        let c_name = CString::new(name).map_err(|_| err(libc::EINVAL))?;
        let c_args = CString::new(args).map_err(|_| err(libc::EINVAL))?;
        // SAFETY: both are valid NUL-terminated strings for the call.
        let ret = unsafe { dpdk_sys::rte_vdev_init(c_name.as_ptr(), c_args.as_ptr()) };
        if ret < 0 {
            return Err(err(-ret));
        }
        Ok(())
    }
}

impl Drop for Eal {
    fn drop(&mut self) {
        if LEAKED_POOLS.load(Ordering::SeqCst) > 0 {
            // Mbufs of a leaked pool may still be alive: keep their memory.
            return;
        }
        // SAFETY: every Port and Mempool borrowed self and is dropped; EAL is
        // not used after this (INITIALIZED stays set, so no re-init).
        unsafe {
            dpdk_sys::rte_eal_cleanup();
        }
    }
}

/// The calling thread's lcore id (`rte_lcore_id`), `u32::MAX` for a thread
/// EAL did not create.
pub fn lcore_id() -> u32 {
    // SAFETY: reads a thread-local set by EAL; valid on any thread.
    unsafe { dpdk_sys::rte_lcore_id() }
}

/// The NUMA socket of the calling thread (`rte_socket_id`).
pub fn socket_id() -> u32 {
    // SAFETY: reads a thread-local set by EAL; valid on any thread.
    unsafe { dpdk_sys::rte_socket_id() }
}
