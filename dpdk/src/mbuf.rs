use std::ptr::NonNull;

use dpdk_sys::rte_mbuf;

use crate::error::{DpdkError, Result};

/// One owned packet buffer (`struct rte_mbuf`), freed to its pool on drop.
///
/// The accessors read the mbuf fields directly, as DPDK's inline helpers do
/// (`rte_pktmbuf_mtod` is `buf_addr + data_off`), so no C call is made per
/// packet. This API never creates indirect or shared (refcnt > 1) mbufs, so an
/// owned `Mbuf` is the only reference to its data.
#[derive(Debug)]
#[repr(transparent)]
pub struct Mbuf {
    raw: NonNull<rte_mbuf>,
}

// SAFETY: an Mbuf is the sole owner of its buffer; freeing it to a pool with
// the MT-safe ring ops is allowed from any thread.
unsafe impl Send for Mbuf {}

impl Mbuf {
    /// Take ownership of a raw mbuf.
    ///
    /// # Safety
    /// `raw` must be a valid, direct mbuf with refcnt 1, owned by nobody else.
    #[inline]
    pub unsafe fn from_raw(raw: *mut rte_mbuf) -> Mbuf {
        Mbuf {
            // SAFETY: the caller guarantees a valid (so non-null) pointer.
            raw: unsafe { NonNull::new_unchecked(raw) },
        }
    }

    /// Give up ownership without freeing.
    #[inline]
    pub fn into_raw(self) -> *mut rte_mbuf {
        let raw = self.raw.as_ptr();
        std::mem::forget(self);
        raw
    }

    #[inline]
    pub fn as_ptr(&self) -> *mut rte_mbuf {
        self.raw.as_ptr()
    }

    #[inline]
    fn fields(&self) -> &rte_mbuf {
        // SAFETY: the mbuf is valid and owned by self for its lifetime.
        unsafe { self.raw.as_ref() }
    }

    /// Total packet length over all segments (`pkt_len`).
    #[inline]
    pub fn len(&self) -> usize {
        self.fields().pkt_len as usize
    }

    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Data length of the first segment (`data_len`).
    #[inline]
    pub fn data_len(&self) -> usize {
        self.fields().data_len as usize
    }

    /// Segments in the chain (`nb_segs`).
    #[inline]
    pub fn segments(&self) -> usize {
        self.fields().nb_segs as usize
    }

    /// The input port of a received packet (`port`).
    #[inline]
    pub fn port(&self) -> u16 {
        self.fields().port
    }

    /// Bytes before the data (`data_off`).
    #[inline]
    pub fn headroom(&self) -> usize {
        self.fields().data_off as usize
    }

    /// Bytes after the first segment's data.
    #[inline]
    pub fn tailroom(&self) -> usize {
        let f = self.fields();
        f.buf_len as usize - f.data_off as usize - f.data_len as usize
    }

    #[inline]
    fn data_ptr(&self) -> *mut u8 {
        let f = self.fields();
        // rte_pktmbuf_mtod(m, void *): buf_addr + data_off.
        // SAFETY: data_off <= buf_len, so the result stays in the buffer.
        unsafe { (f.buf_addr as *mut u8).add(f.data_off as usize) }
    }

    /// The first segment's data.
    #[inline]
    pub fn data(&self) -> &[u8] {
        // SAFETY: data_len bytes from the data pointer lie in the buffer, which
        // lives as long as the mbuf; shared borrow of self prevents writes.
        unsafe { std::slice::from_raw_parts(self.data_ptr(), self.data_len()) }
    }

    /// The first segment's data, writable.
    #[inline]
    pub fn data_mut(&mut self) -> &mut [u8] {
        // SAFETY: as for data(); the mbuf is not shared (refcnt 1, see type
        // docs) and &mut self makes this the only view.
        unsafe { std::slice::from_raw_parts_mut(self.data_ptr(), self.data_len()) }
    }

    /// Grow a single-segment packet by `n` bytes at the end and return them
    /// (`rte_pktmbuf_append`, done in Rust).
    pub fn append(&mut self, n: usize) -> Result<&mut [u8]> {
        let tailroom = self.tailroom();
        if self.segments() != 1 || n > tailroom {
            return Err(DpdkError::NoTailroom {
                tailroom,
                wanted: n,
            });
        }
        let old = self.data_len();
        // SAFETY: single segment with n bytes of tailroom: the new lengths
        // stay within buf_len; self owns the mbuf.
        unsafe {
            let f = self.raw.as_mut();
            f.data_len += n as u16;
            f.pkt_len += n as u32;
        }
        Ok(&mut self.data_mut()[old..])
    }

    /// Drop `n` bytes from the end of a single-segment packet (`rte_pktmbuf_trim`).
    pub fn trim(&mut self, n: usize) {
        let n = n.min(self.data_len()) as u16;
        // SAFETY: self owns the mbuf; lengths only shrink.
        unsafe {
            let f = self.raw.as_mut();
            f.data_len -= n;
            f.pkt_len -= u32::from(n);
        }
    }
}

impl Drop for Mbuf {
    fn drop(&mut self) {
        // SAFETY: self owns the mbuf; it is not used after this.
        unsafe { dpdk_sys::rte_pktmbuf_free(self.raw.as_ptr()) }
    }
}
