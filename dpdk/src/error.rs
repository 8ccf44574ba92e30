use std::ffi::CStr;

/// A failed DPDK call, with `rte_errno` (or the negative return value) and
/// `rte_strerror` of it.
#[derive(Debug, thiserror::Error)]
pub enum DpdkError {
    #[error("rte_eal_init failed: {msg} (rte_errno {errno})")]
    EalInit { errno: i32, msg: String },

    #[error("EAL is already initialised in this process (it can init only once)")]
    EalAlreadyInitialized,

    #[error("argument {arg:?} contains a NUL byte")]
    NulInArgument { arg: String },

    #[error("port {port}: {op} failed: {msg} (errno {errno})")]
    Port {
        port: u16,
        op: &'static str,
        errno: i32,
        msg: String,
    },

    #[error("no ethdev port {port} (ports available: {available})")]
    NoSuchPort { port: u16, available: u16 },

    #[error("no ethdev port named {name:?}")]
    NoPortNamed { name: String },

    #[error("creating mempool {name:?} failed: {msg} (rte_errno {errno})")]
    MempoolCreate {
        name: String,
        errno: i32,
        msg: String,
    },

    #[error("mempool {name:?} has no free mbuf")]
    MbufAlloc { name: String },

    #[error("mbuf has {tailroom} bytes of tailroom, {wanted} wanted")]
    NoTailroom { tailroom: usize, wanted: usize },

    #[error("rte_vdev_init({name:?}) failed: {msg} (errno {errno})")]
    Vdev {
        name: String,
        errno: i32,
        msg: String,
    },
}

pub type Result<T> = std::result::Result<T, DpdkError>;

/// `rte_strerror(errno)`: DPDK's own codes (`E_RTE_SECONDARY`, ...) and libc's.
pub fn rte_strerror(errno: i32) -> String {
    // SAFETY: rte_strerror returns a pointer to a static or thread-local
    // NUL-terminated buffer, valid until the next call on this thread; it is
    // copied out at once.
    unsafe {
        let p = dpdk_sys::rte_strerror(errno);
        if p.is_null() {
            return format!("error {errno}");
        }
        CStr::from_ptr(p).to_string_lossy().into_owned()
    }
}

/// The error fields for a DPDK call that returned `ret` (< 0): most ethdev
/// calls return `-errno`.
pub(crate) fn from_ret(ret: i32) -> (i32, String) {
    let errno = ret.checked_neg().unwrap_or(i32::MAX);
    (errno, rte_strerror(errno))
}

/// The error fields from the calling thread's `rte_errno`.
pub(crate) fn from_rte_errno() -> (i32, String) {
    let errno = dpdk_sys::rte_errno();
    (errno, rte_strerror(errno))
}
