//! The error codes of the mutex calls that only a broken peer can cause, as the C layer reports
//! them: a lock whose header another program overwrote is `ENOTRECOVERABLE` to every later lock
//! and try-lock, never a hang or a crash; its holder can still unlock it; and a lock whose owner
//! thread ended is taken with "owner died".

use std::ffi::CStr;
use std::sync::atomic::{AtomicU32, Ordering};

use shared_buffer_native as ffi;

#[repr(C, align(64))]
struct Slot([u8; 64]);

/// Word `index` (0 state, 1 layout) of the lock at `addr`.
///
/// # Safety
/// `addr` must be a live, 8-aligned lock of 64 bytes.
unsafe fn header<'a>(addr: *mut u8, index: usize) -> &'a AtomicU32 {
    // SAFETY: as the caller promises; the words are 4-aligned and inside the lock.
    unsafe { AtomicU32::from_ptr(addr.add(4 * index).cast()) }
}

#[test]
fn an_overwritten_header_is_not_recoverable_and_a_dead_owner_is_reported() {
    let mut slot = Slot([0; 64]);
    let addr = slot.0.as_mut_ptr();
    // SAFETY: 64 zeroed, 64-aligned bytes that outlive every call below; only this test's
    // threads touch them.
    unsafe {
        assert_eq!(ffi::sb_mutex_init(addr), 0);
        let shared = addr as usize;
        // A thread that ends holding the lock: its owner died.
        std::thread::spawn(move || {
            assert_eq!(ffi::sb_mutex_lock(shared as *mut u8, -1), 0);
        })
        .join()
        .unwrap();
        assert_eq!(ffi::sb_mutex_lock(addr, -1), ffi::SB_LOCK_OWNER_DIED);
        // Another program overwrites the header while this thread holds the lock.
        for (index, value) in [(0, 7), (0, u32::MAX), (1, 1)] {
            header(addr, index).store(value, Ordering::Release);
            for _ in 0..2 {
                let code = ffi::sb_mutex_lock(addr, -1);
                assert_eq!(code, -libc::ENOTRECOVERABLE, "word {index} = {value}");
                let name = CStr::from_ptr(ffi::sb_error_name(code));
                assert_eq!(name, c"ENOTRECOVERABLE");
            }
            assert_eq!(ffi::sb_mutex_trylock(addr), -libc::ENOTRECOVERABLE);
            assert_eq!(ffi::sb_mutex_open(addr), -libc::EINVAL);
            assert_eq!(ffi::sb_mutex_init(addr), -libc::EINVAL);
            header(addr, 0).store(2, Ordering::Release);
            header(addr, 1).store(2, Ordering::Release);
        }
        header(addr, 0).store(99, Ordering::Release);
        // The holder can still release it.
        assert_eq!(ffi::sb_mutex_unlock(addr), 0);
        assert_eq!(ffi::sb_mutex_held_in(addr, 64), 0);
    }
}
