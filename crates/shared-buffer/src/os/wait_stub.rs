//! Every target without a known wait-on-address call: the crate builds, and every wait or wake
//! reports [`io::ErrorKind::Unsupported`].

use std::io;
use std::time::Duration;

use super::RawWait;

/// Callers compare the word themselves (nothing waits here anyway).
pub const WAIT_REPORTS_NOT_EQUAL: bool = false;

/// No wake counts here.
pub const WAKE_COUNT_EXACT: bool = false;

fn unsupported<T>() -> io::Result<T> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "cross-process wait and wake are not supported on this platform",
    ))
}

/// Unsupported here.
///
/// # Safety
/// None needed; `unsafe` only to match the other platforms.
///
/// # Errors
/// Always `Unsupported`.
pub unsafe fn futex_wait(
    _addr: *const u32,
    _expected: u32,
    _timeout: Option<Duration>,
) -> io::Result<RawWait> {
    unsupported()
}

/// Unsupported here.
///
/// # Safety
/// None needed; `unsafe` only to match the other platforms.
///
/// # Errors
/// Always `Unsupported`.
pub unsafe fn futex_wake(_addr: *const u32, _count: u32) -> io::Result<usize> {
    unsupported()
}
