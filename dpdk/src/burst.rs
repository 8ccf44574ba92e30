use std::mem::MaybeUninit;

use dpdk_sys::rte_mbuf;

use crate::Mbuf;

/// A reusable array of up to `N` owned mbufs, the unit of rx/tx bursts.
/// Mbufs left in it are freed (in one `rte_pktmbuf_free_bulk`) on
/// [`Burst::clear`] or drop.
#[derive(Debug)]
pub struct Burst<const N: usize = 32> {
    len: usize,
    /// The first `len` slots hold owned, valid mbufs.
    slots: [MaybeUninit<Mbuf>; N],
}

impl<const N: usize> Default for Burst<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> Burst<N> {
    pub fn new() -> Self {
        Burst {
            len: 0,
            slots: [const { MaybeUninit::uninit() }; N],
        }
    }

    #[inline]
    pub const fn capacity(&self) -> usize {
        N
    }

    #[inline]
    pub fn len(&self) -> usize {
        self.len
    }

    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    #[inline]
    pub fn is_full(&self) -> bool {
        self.len == N
    }

    /// Append an mbuf; gives it back when the burst is full.
    #[inline]
    pub fn push(&mut self, m: Mbuf) -> Result<(), Mbuf> {
        if self.len == N {
            return Err(m);
        }
        self.slots[self.len].write(m);
        self.len += 1;
        Ok(())
    }

    #[inline]
    pub fn pop(&mut self) -> Option<Mbuf> {
        if self.len == 0 {
            return None;
        }
        self.len -= 1;
        // SAFETY: slot len was initialised and is now outside the live prefix,
        // so it is moved out exactly once.
        Some(unsafe { self.slots[self.len].assume_init_read() })
    }

    #[inline]
    pub fn as_slice(&self) -> &[Mbuf] {
        // SAFETY: the first len slots are initialised; MaybeUninit<Mbuf> has
        // Mbuf's layout.
        unsafe { std::slice::from_raw_parts(self.slots.as_ptr().cast::<Mbuf>(), self.len) }
    }

    #[inline]
    pub fn as_mut_slice(&mut self) -> &mut [Mbuf] {
        // SAFETY: as for as_slice, with unique access through &mut self.
        unsafe { std::slice::from_raw_parts_mut(self.slots.as_mut_ptr().cast::<Mbuf>(), self.len) }
    }

    /// Free every mbuf left, in one call.
    #[inline]
    pub fn clear(&mut self) {
        if self.len == 0 {
            return;
        }
        let n = self.len;
        self.len = 0;
        // SAFETY: the n first slots hold owned mbuf pointers (Mbuf is a
        // transparent non-null pointer); len is already 0 so none is used again.
        unsafe { dpdk_sys::rte_pktmbuf_free_bulk(self.raw_ptr(), n as u32) }
    }

    /// The slot array as `rte_mbuf **`, for rx/tx/alloc calls.
    #[inline]
    pub(crate) fn raw_ptr(&mut self) -> *mut *mut rte_mbuf {
        self.slots.as_mut_ptr().cast()
    }

    /// The first free slot and the number of free slots.
    #[inline]
    pub(crate) fn spare(&mut self) -> (*mut *mut rte_mbuf, usize) {
        let len = self.len;
        // SAFETY: len <= N, so the offset stays within (or one past) the array.
        (unsafe { self.raw_ptr().add(len) }, N - len)
    }

    /// # Safety
    /// Slots `..len` must hold owned, valid mbufs.
    #[inline]
    pub(crate) unsafe fn set_len(&mut self, len: usize) {
        debug_assert!(len <= N);
        self.len = len;
    }

    /// Forget the first `n` mbufs (handed to a driver) and move the rest down.
    #[inline]
    pub(crate) fn consume_front(&mut self, n: usize) {
        debug_assert!(n <= self.len);
        if n == self.len {
            self.len = 0;
            return;
        }
        let rest = self.len - n;
        // SAFETY: both ranges are inside the array; ptr::copy handles overlap;
        // the moved-from slots beyond `rest` are no longer in the live prefix.
        unsafe {
            let base = self.raw_ptr();
            std::ptr::copy(base.add(n), base, rest);
        }
        self.len = rest;
    }
}

impl<const N: usize> Drop for Burst<N> {
    fn drop(&mut self) {
        self.clear();
    }
}
