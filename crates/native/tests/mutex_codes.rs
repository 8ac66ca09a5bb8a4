//! The error codes of the mutex calls that only a broken peer can cause, as the C layer reports
//! them: a mutex whose owner-died episode another program released without repairing it is
//! `ENOTRECOVERABLE` to every later lock, never a hang or a crash.

#![cfg(target_os = "linux")]

use std::ffi::CStr;

use shared_buffer_native as ffi;

/// The bytes before the native `pthread_mutex_t` in a mutex (its state word and a reserved word).
const NATIVE_AT: usize = 8;

#[repr(C, align(64))]
struct Slot([u8; 64]);

#[test]
fn a_mutex_released_without_repair_is_not_recoverable() {
    let mut slot = Slot([0; 64]);
    let addr = slot.0.as_mut_ptr();
    // SAFETY: 64 zeroed, 64-aligned bytes that outlive every call below; only this test's
    // threads touch them.
    assert_eq!(unsafe { ffi::sb_mutex_init(addr) }, 0);
    let shared = addr as usize;
    // A thread that ends holding the lock: its owner died.
    std::thread::spawn(move || {
        // SAFETY: as above.
        assert_eq!(unsafe { ffi::sb_mutex_lock(shared as *mut u8, -1) }, 0);
    })
    .join()
    .unwrap();
    // Another program (not this library) takes it, and releases it without
    // pthread_mutex_consistent: from then on the lock cannot be recovered.
    // SAFETY: the native lock lives NATIVE_AT bytes in, initialised by sb_mutex_init.
    unsafe {
        let native = addr.add(NATIVE_AT).cast::<libc::pthread_mutex_t>();
        assert_eq!(libc::pthread_mutex_lock(native), libc::EOWNERDEAD);
        assert_eq!(libc::pthread_mutex_unlock(native), 0);
    }
    for _ in 0..2 {
        // SAFETY: as above.
        let code = unsafe { ffi::sb_mutex_lock(addr, -1) };
        assert_eq!(code, -libc::ENOTRECOVERABLE);
        // SAFETY: a static NUL-terminated string.
        let name = unsafe { CStr::from_ptr(ffi::sb_error_name(code)) };
        assert_eq!(name, c"ENOTRECOVERABLE");
    }
    // (A try-lock says the same; glibc's leaves the lock held by the calling thread afterwards,
    // so it comes last.)
    // SAFETY: as above.
    let code = unsafe { ffi::sb_mutex_trylock(addr) };
    assert_eq!(code, -libc::ENOTRECOVERABLE);
}
