//! The channel's memory: a shared-memory region in real builds, loom-tracked words under loom.
//!
//! The protocol code reaches the region only through [`Mem`]: 32-bit words as atomics, and byte
//! ranges that the protocol hands to one side at a time (payloads, zeroing). Under `cfg(loom)` the
//! region is an array of loom atomics, so that loom sees every access: payload bytes go through
//! relaxed loads and stores, and a missing acquire/release shows up as a stale (torn) payload.

#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{AtomicU32, Ordering, fence};

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{AtomicU32, Ordering, fence};

#[cfg(not(loom))]
mod imp {
    use super::AtomicU32;
    use std::ptr::NonNull;

    /// A region of shared memory: `len` bytes at `base`, 8-byte aligned.
    #[derive(Debug)]
    pub(crate) struct Mem {
        base: NonNull<u8>,
        len: usize,
    }

    // SAFETY: Mem is an address range; every access goes through atomics or through byte ranges
    // that the protocol gives to exactly one side at a time (see the callers' SAFETY comments).
    unsafe impl Send for Mem {}
    // SAFETY: as above.
    unsafe impl Sync for Mem {}

    impl Mem {
        /// Wraps `len` bytes at `base`.
        ///
        /// # Safety
        /// `base` must be valid for reads and writes of `len` bytes, 8-byte aligned, for as long
        /// as the `Mem` lives, and other code may touch those bytes only atomically or as the
        /// channel protocol allows.
        pub(crate) unsafe fn new(base: *mut u8, len: usize) -> Option<Self> {
            let base = NonNull::new(base)?;
            if base.as_ptr() as usize % 8 != 0 {
                return None;
            }
            Some(Self { base, len })
        }

        /// The number of bytes.
        pub(crate) fn len(&self) -> usize {
            self.len
        }

        /// The 32-bit word at byte `offset`.
        ///
        /// # Panics
        /// If the word is not inside the region or not 4-byte aligned (a bug of this module's
        /// callers, which compute offsets from validated positions).
        #[inline]
        pub(crate) fn word(&self, offset: usize) -> &AtomicU32 {
            assert!(offset % 4 == 0 && offset < self.len && self.len - offset >= 4);
            // SAFETY: in bounds and aligned (checked above; base is 8-aligned); atomics may alias
            // memory that other processes access atomically, and the reference lives no longer
            // than &self, hence than the region.
            unsafe { AtomicU32::from_ptr(self.base.as_ptr().add(offset).cast()) }
        }

        /// Copies `src` to byte `offset`.
        ///
        /// # Safety
        /// `offset + src.len() <= len`, and the protocol must give these bytes to the caller: no
        /// other thread or process reads or writes them meanwhile.
        #[inline]
        pub(crate) unsafe fn write(&self, offset: usize, src: &[u8]) {
            debug_assert!(offset + src.len() <= self.len);
            // SAFETY: in bounds and exclusively ours, as the caller promises.
            unsafe {
                std::ptr::copy_nonoverlapping(
                    src.as_ptr(),
                    self.base.as_ptr().add(offset),
                    src.len(),
                );
            }
        }

        /// Copies `len` bytes between byte `offset` and `other`, either way (`into_region`: from
        /// `other` into the region), where `other` may be anywhere: in another mapping of the same
        /// memory, or even in this region (a stale view a JavaScript caller kept of a record
        /// since released), so the copy allows overlap.
        ///
        /// # Safety
        /// `offset + len <= self.len()`, the protocol must give these bytes of the region to the
        /// caller, and `other` must be valid for `len` bytes (reads, or writes when copying out)
        /// unless `len` is 0.
        #[inline]
        pub(crate) unsafe fn copy_foreign(
            &self,
            offset: usize,
            other: *mut u8,
            len: usize,
            into_region: bool,
        ) {
            debug_assert!(offset + len <= self.len);
            if len == 0 {
                return; // `other` may be null then (an empty or detached JavaScript buffer)
            }
            // SAFETY: in bounds and given to the caller, and `other` valid, as the caller
            // promises; `ptr::copy` is defined for overlapping ranges.
            unsafe {
                let here = self.base.as_ptr().add(offset);
                if into_region {
                    std::ptr::copy(other.cast_const(), here, len);
                } else {
                    std::ptr::copy(here.cast_const(), other, len);
                }
            }
        }

        /// Copies `len` bytes at `offset` to `dst`.
        ///
        /// # Safety
        /// `offset + len <= self.len()`, nobody may write these bytes meanwhile, and `dst` must be
        /// valid for writing `len` bytes.
        #[inline]
        pub(crate) unsafe fn read(&self, offset: usize, dst: *mut u8, len: usize) {
            debug_assert!(offset + len <= self.len);
            // SAFETY: in bounds and not written by anyone meanwhile; dst is valid, as the caller
            // promises.
            unsafe { std::ptr::copy_nonoverlapping(self.base.as_ptr().add(offset), dst, len) };
        }

        /// Zeroes `len` bytes at `offset`.
        ///
        /// # Safety
        /// As [`Mem::write`].
        #[inline]
        pub(crate) unsafe fn zero(&self, offset: usize, len: usize) {
            debug_assert!(offset + len <= self.len);
            // SAFETY: in bounds and exclusively ours, as the caller promises.
            unsafe { std::ptr::write_bytes(self.base.as_ptr().add(offset), 0, len) };
        }

        /// The address of byte `offset`, for `len` bytes from there.
        ///
        /// # Panics
        /// If the range is not inside the region.
        #[inline]
        pub(crate) fn ptr_at(&self, offset: usize, len: usize) -> *const u8 {
            assert!(offset <= self.len && self.len - offset >= len);
            // SAFETY: in bounds (checked above).
            unsafe { self.base.as_ptr().add(offset) }
        }

        /// The bytes at `offset` as a slice.
        ///
        /// # Safety
        /// `offset + len <= self.len()`, and nobody may write these bytes while the slice lives.
        #[cfg(test)]
        pub(crate) unsafe fn slice(&self, offset: usize, len: usize) -> &[u8] {
            debug_assert!(offset + len <= self.len);
            // SAFETY: in bounds and unchanging while the slice lives, as the caller promises.
            unsafe { std::slice::from_raw_parts(self.base.as_ptr().add(offset), len) }
        }
    }
}

#[cfg(loom)]
mod imp {
    use super::{AtomicU32, Ordering::Relaxed};
    use crate::channel::layout::{HEADER_SIZE, RECORD_ALIGN};
    use loom::cell::UnsafeCell;

    /// A region modelled for loom. Each 4-byte word of the data area is two loom objects: an
    /// atomic for the accesses the protocol makes atomically (commit words) and an `UnsafeCell`
    /// for plain byte accesses (payloads). Loom reports any pair of plain accesses that no
    /// happens-before relation orders, so a missing acquire or release is a failure; plain
    /// accesses are not scheduling points, which keeps the model small. The two halves stay
    /// consistent because the protocol zeroes both whenever it consumes a record.
    #[derive(Debug)]
    pub(crate) struct Mem {
        words: Box<[AtomicU32]>,
        cells: Box<[UnsafeCell<u32>]>,
    }

    // SAFETY: as for the real Mem, the protocol decides who touches which bytes; here loom checks
    // every plain access against every other and fails the model on a race.
    unsafe impl Send for Mem {}
    // SAFETY: as above.
    unsafe impl Sync for Mem {}

    impl Mem {
        /// A zeroed region of `len` bytes (a multiple of 8).
        pub(crate) fn new_model(len: usize) -> Self {
            assert!(len % 8 == 0 && len >= HEADER_SIZE);
            Self {
                words: (0..len / 4).map(|_| AtomicU32::new(0)).collect(),
                cells: (0..(len - HEADER_SIZE) / 4)
                    .map(|_| UnsafeCell::new(0))
                    .collect(),
            }
        }

        pub(crate) fn len(&self) -> usize {
            self.words.len() * 4
        }

        pub(crate) fn word(&self, offset: usize) -> &AtomicU32 {
            assert!(offset % 4 == 0);
            &self.words[offset / 4]
        }

        fn cell(&self, offset: usize) -> &UnsafeCell<u32> {
            assert!(offset % 4 == 0 && offset >= HEADER_SIZE);
            &self.cells[(offset - HEADER_SIZE) / 4]
        }

        /// Writes whole words; the bytes past `src` up to the next multiple of 4 become zero,
        /// which is what they already are (record padding).
        pub(crate) unsafe fn write(&self, offset: usize, src: &[u8]) {
            for (i, chunk) in src.chunks(4).enumerate() {
                let mut bytes = [0u8; 4];
                bytes[..chunk.len()].copy_from_slice(chunk);
                let value = u32::from_le_bytes(bytes);
                // SAFETY: loom checks that no other access races with this one.
                self.cell(offset + 4 * i)
                    .with_mut(|p| unsafe { *p = value });
            }
        }

        pub(crate) unsafe fn read(&self, offset: usize, dst: *mut u8, len: usize) {
            for i in 0..len.div_ceil(4) {
                // SAFETY: loom checks that no other access races with this one.
                let bytes = self
                    .cell(offset + 4 * i)
                    .with(|p| unsafe { *p })
                    .to_le_bytes();
                let n = (len - 4 * i).min(4);
                // SAFETY: the caller promises dst is valid for len bytes; 4 * i + n <= len.
                unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), dst.add(4 * i), n) };
            }
        }

        /// Zeroes the plain half of every word, and the atomic half of the first word when the
        /// range starts a record (the only place a commit word lives).
        pub(crate) unsafe fn zero(&self, offset: usize, len: usize) {
            if (offset - HEADER_SIZE) % RECORD_ALIGN == 0 {
                self.words[offset / 4].store(0, Relaxed);
            }
            for i in 0..len.div_ceil(4) {
                // SAFETY: loom checks that no other access races with this one.
                self.cell(offset + 4 * i).with_mut(|p| unsafe { *p = 0 });
            }
        }
    }
}

pub(crate) use imp::Mem;
