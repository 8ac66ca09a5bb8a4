//! macOS: wait and wake on 32-bit words shared between processes.
//!
//! Preferred: the public `os_sync_wait_on_address_with_timeout` / `os_sync_wake_by_address_any` /
//! `os_sync_wake_by_address_all` of `<os/os_sync_wait_on_address.h>`, with
//! `OS_SYNC_WAIT_ON_ADDRESS_SHARED` / `OS_SYNC_WAKE_BY_ADDRESS_SHARED` so that waits match across
//! processes. They exist from **macOS 14.4** on. Linking them directly would make the whole
//! library fail to load on older systems (dyld refuses a missing non-weak symbol), so they are
//! looked up with `dlsym` on first use. Where they are missing, the fallback is the private but
//! long-stable `__ulock_wait` / `__ulock_wake` (macOS 10.12+, used by libc++ and the Go and Zig
//! runtimes) with `UL_COMPARE_AND_WAIT_SHARED`, also looked up with `dlsym`. Neither found:
//! `Unsupported`.
//!
//! Differences from Linux, which callers handle (see [`crate::sync`]):
//! - Both kernels return *success* when the word does not hold the expected value, exactly as for
//!   a wake-up, so [`WAIT_REPORTS_NOT_EQUAL`] is false and the caller compares first.
//! - A wake reports only "woke someone" or "nobody waited" (`ENOENT`), never a count, so
//!   [`WAKE_COUNT_EXACT`] is false; see [`futex_wake`].
//! - [`crate::sync::Mutex`] parks on the low half of its 64-bit owner word here as on Linux.
//!
//! This file cannot be built for macOS on the project's Linux machines; it uses only items that
//! `libc` also has on Linux, and Linux test builds type-check it (see `os/mod.rs`). It has never
//! run on a Mac. What was checked, on Linux, before the lock was rewritten: with this file swapped
//! in for the Linux one, the whole `tests/sync.rs` suite passed against `LD_PRELOAD` stand-ins for
//! `os_sync_*` and, separately, `__ulock_*`, written over `futex` with the documented semantics.
//! The whole crate, lock included, is also checked with `cargo clippy --target
//! x86_64-apple-darwin`.

use std::ffi::{CStr, c_int, c_void};
use std::io;
use std::sync::OnceLock;
use std::time::Duration;

use super::RawWait;

/// False: the kernel reports a mismatching word as success, so callers compare first.
pub const WAIT_REPORTS_NOT_EQUAL: bool = false;

/// False: wakes report no count (see [`futex_wake`]).
pub const WAKE_COUNT_EXACT: bool = false;

/// `OS_SYNC_WAIT_ON_ADDRESS_SHARED` (and `OS_SYNC_WAKE_BY_ADDRESS_SHARED`, the same value).
const OS_SYNC_SHARED: u32 = 0x1;
/// `OS_CLOCK_MACH_ABSOLUTE_TIME`, the only `os_clockid_t`; the timeout is still nanoseconds.
const OS_CLOCK_MACH_ABSOLUTE_TIME: u32 = 32;
/// `UL_COMPARE_AND_WAIT_SHARED` from xnu's `sys/ulock.h`.
const UL_COMPARE_AND_WAIT_SHARED: u32 = 3;
/// `ULF_WAKE_ALL`.
const ULF_WAKE_ALL: u32 = 0x0000_0100;
/// `ULF_NO_ERRNO`: return `-errno` instead of setting `errno`.
const ULF_NO_ERRNO: u32 = 0x0100_0000;

/// `int os_sync_wait_on_address(void *addr, uint64_t value, size_t size, flags)`.
type OsSyncWait = unsafe extern "C" fn(*mut c_void, u64, usize, u32) -> c_int;
/// `int os_sync_wait_on_address_with_timeout(void *addr, uint64_t value, size_t size, flags,
/// os_clockid_t clockid, uint64_t timeout_ns)`: the timeout is relative, in nanoseconds.
type OsSyncWaitTimeout = unsafe extern "C" fn(*mut c_void, u64, usize, u32, u32, u64) -> c_int;
/// `int os_sync_wake_by_address_any/all(void *addr, size_t size, flags)`: 0, or -1 with
/// `errno` `ENOENT` when nobody waited.
type OsSyncWake = unsafe extern "C" fn(*mut c_void, usize, u32) -> c_int;
/// `int __ulock_wait(uint32_t op, void *addr, uint64_t value, uint32_t timeout_us)`: 0 = no
/// limit.
type UlockWait = unsafe extern "C" fn(u32, *mut c_void, u64, u32) -> c_int;
/// `int __ulock_wake(uint32_t op, void *addr, uint64_t wake_value)`.
type UlockWake = unsafe extern "C" fn(u32, *mut c_void, u64) -> c_int;

#[derive(Clone, Copy)]
enum Api {
    OsSync {
        wait: OsSyncWait,
        wait_timeout: OsSyncWaitTimeout,
        wake_any: OsSyncWake,
        wake_all: OsSyncWake,
    },
    Ulock {
        wait: UlockWait,
        wake: UlockWake,
    },
    Missing,
}

fn symbol(name: &CStr) -> *mut c_void {
    // SAFETY: RTLD_DEFAULT searches every loaded image; `name` is NUL-terminated.
    unsafe { libc::dlsym(libc::RTLD_DEFAULT, name.as_ptr()) }
}

fn resolve() -> Api {
    let wait = symbol(c"os_sync_wait_on_address");
    let wait_timeout = symbol(c"os_sync_wait_on_address_with_timeout");
    let wake_any = symbol(c"os_sync_wake_by_address_any");
    let wake_all = symbol(c"os_sync_wake_by_address_all");
    if !wait.is_null() && !wait_timeout.is_null() && !wake_any.is_null() && !wake_all.is_null() {
        // SAFETY: each symbol is the libSystem function of that name, whose C signature is the
        // one the type alias declares (from Apple's header); a data pointer from dlsym is a
        // function pointer of the same size on every Apple platform.
        return unsafe {
            Api::OsSync {
                wait: std::mem::transmute::<*mut c_void, OsSyncWait>(wait),
                wait_timeout: std::mem::transmute::<*mut c_void, OsSyncWaitTimeout>(wait_timeout),
                wake_any: std::mem::transmute::<*mut c_void, OsSyncWake>(wake_any),
                wake_all: std::mem::transmute::<*mut c_void, OsSyncWake>(wake_all),
            }
        };
    }
    let wait = symbol(c"__ulock_wait");
    let wake = symbol(c"__ulock_wake");
    if !wait.is_null() && !wake.is_null() {
        // SAFETY: as above, with the signatures of xnu's sys/ulock.h.
        return unsafe {
            Api::Ulock {
                wait: std::mem::transmute::<*mut c_void, UlockWait>(wait),
                wake: std::mem::transmute::<*mut c_void, UlockWake>(wake),
            }
        };
    }
    Api::Missing
}

fn api() -> Api {
    static API: OnceLock<Api> = OnceLock::new();
    *API.get_or_init(resolve)
}

fn unsupported() -> io::Error {
    io::Error::new(
        io::ErrorKind::Unsupported,
        "no wait-on-address in this macOS (needs os_sync_* of 14.4 or __ulock_*)",
    )
}

/// Blocks while the word at `addr` holds `expected`, for at most `timeout` (`None`: no limit).
/// One call, no retry. A word that does not hold `expected` returns [`RawWait::Woken`] at once.
/// A zero timeout returns [`RawWait::TimedOut`] without asking the kernel (`os_sync` refuses a
/// zero timeout; the caller has already compared the word).
///
/// # Safety
/// `addr` must be the address of a 4-byte aligned word in memory mapped by this process. Only
/// the kernel reads it here (a bad address gives `EFAULT`).
///
/// # Errors
/// `EFAULT`, `EINVAL`, `ENOMEM`, or `Unsupported` when neither API exists.
pub unsafe fn futex_wait(
    addr: *const u32,
    expected: u32,
    timeout: Option<Duration>,
) -> io::Result<RawWait> {
    if timeout == Some(Duration::ZERO) {
        return Ok(RawWait::TimedOut);
    }
    let ptr = addr.cast_mut().cast::<c_void>();
    match api() {
        Api::OsSync {
            wait, wait_timeout, ..
        } => {
            // SAFETY: the kernel reads the word with copyin (EFAULT on a bad address) and
            // writes nothing; no Rust reference is made. SHARED keys the wait by the physical
            // page, so wakes from other processes find it.
            let ret = unsafe {
                match timeout {
                    None => wait(ptr, u64::from(expected), 4, OS_SYNC_SHARED),
                    Some(t) => wait_timeout(
                        ptr,
                        u64::from(expected),
                        4,
                        OS_SYNC_SHARED,
                        OS_CLOCK_MACH_ABSOLUTE_TIME,
                        u64::try_from(t.as_nanos()).unwrap_or(u64::MAX),
                    ),
                }
            };
            if ret >= 0 {
                return Ok(RawWait::Woken);
            }
            let err = io::Error::last_os_error();
            match err.raw_os_error() {
                Some(libc::ETIMEDOUT) => Ok(RawWait::TimedOut),
                Some(libc::EINTR) => Ok(RawWait::Interrupted),
                _ => Err(err),
            }
        }
        Api::Ulock { wait, .. } => {
            // The timeout is u32 microseconds and 0 means "no limit": round up, and when it must
            // be cut to u32::MAX, report an early end as Interrupted so the caller goes on.
            let (micros, cut) = match timeout {
                None => (0, false),
                Some(t) => {
                    let us = t.as_nanos().div_ceil(1000).max(1);
                    match u32::try_from(us) {
                        Ok(us) => (us, false),
                        Err(_) => (u32::MAX, true),
                    }
                }
            };
            let op = UL_COMPARE_AND_WAIT_SHARED | ULF_NO_ERRNO;
            // SAFETY: as above; __ulock_wait compares the word in the kernel.
            let ret = unsafe { wait(op, ptr, u64::from(expected), micros) };
            if ret >= 0 {
                return Ok(RawWait::Woken);
            }
            match -ret {
                libc::ETIMEDOUT if cut => Ok(RawWait::Interrupted),
                libc::ETIMEDOUT => Ok(RawWait::TimedOut),
                libc::EINTR => Ok(RawWait::Interrupted),
                errno => Err(io::Error::from_raw_os_error(errno)),
            }
        }
        Api::Missing => Err(unsupported()),
    }
}

/// One wake call: `Ok(true)` if it woke someone, `Ok(false)` if nobody waited.
///
/// # Safety
/// As [`futex_wait`].
unsafe fn wake_once(addr: *const u32, all: bool) -> io::Result<bool> {
    let ptr = addr.cast_mut().cast::<c_void>();
    loop {
        let errno = match api() {
            Api::OsSync {
                wake_any, wake_all, ..
            } => {
                let wake = if all { wake_all } else { wake_any };
                // SAFETY: a wake only looks the address up among the kernel's waiters; it
                // touches no user memory.
                if unsafe { wake(ptr, 4, OS_SYNC_SHARED) } == 0 {
                    return Ok(true);
                }
                io::Error::last_os_error()
                    .raw_os_error()
                    .unwrap_or(libc::EIO)
            }
            Api::Ulock { wake, .. } => {
                let op =
                    UL_COMPARE_AND_WAIT_SHARED | ULF_NO_ERRNO | if all { ULF_WAKE_ALL } else { 0 };
                // SAFETY: as above.
                let ret = unsafe { wake(op, ptr, 0) };
                if ret >= 0 {
                    return Ok(true);
                }
                -ret
            }
            Api::Missing => return Err(unsupported()),
        };
        match errno {
            libc::ENOENT => return Ok(false),
            libc::EINTR => continue,
            errno => return Err(io::Error::from_raw_os_error(errno)),
        }
    }
}

/// Wakes at most `count` waiters on the word at `addr` (`u32::MAX`: all).
///
/// macOS gives no count, so the result is: for `count` below `u32::MAX`, exact (one
/// wake-one call per waiter, stopping at the first that finds nobody); for `u32::MAX`, one
/// wake-all call, returning **1 if it woke at least one waiter** (the true number is unknown)
/// and 0 if nobody waited.
///
/// # Safety
/// As [`futex_wait`].
///
/// # Errors
/// `EFAULT`, `EINVAL`, or `Unsupported`.
pub unsafe fn futex_wake(addr: *const u32, count: u32) -> io::Result<usize> {
    if count == u32::MAX {
        // SAFETY: forwarded from the caller.
        return Ok(usize::from(unsafe { wake_once(addr, true) }?));
    }
    let mut woken = 0;
    while woken < count as usize {
        // SAFETY: forwarded from the caller.
        if !unsafe { wake_once(addr, false) }? {
            break;
        }
        woken += 1;
    }
    Ok(woken)
}
