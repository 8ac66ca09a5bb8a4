//! Linux: `futex` wait and wake on 32-bit words shared between processes.
//!
//! The futex calls never use `FUTEX_PRIVATE_FLAG`: a private futex is keyed by this process's
//! address space, so a waiter in another process mapping the same page would never be found. A
//! shared futex is keyed by the page's backing object and offset, which is the same in every
//! process whatever address each one mapped the segment at.

use std::io;
use std::time::Duration;

use super::RawWait;

/// True where [`futex_wait`] itself tells [`RawWait::NotEqual`] apart from a wake-up (the kernel
/// compares the word and says so), so callers need not read the word first.
pub const WAIT_REPORTS_NOT_EQUAL: bool = true;

/// True where [`futex_wake`] returns exactly how many waiters it woke.
pub const WAKE_COUNT_EXACT: bool = true;

fn timespec_of(d: Duration) -> libc::timespec {
    libc::timespec {
        tv_sec: libc::time_t::try_from(d.as_secs()).unwrap_or(libc::time_t::MAX),
        // Always below 1e9, so it fits every c_long.
        tv_nsec: d.subsec_nanos() as libc::c_long,
    }
}

/// Blocks while the word at `addr` holds `expected`, for at most `timeout` (`None`: no limit).
/// One call, no retry: [`RawWait::Interrupted`] is reported, not hidden. A zero timeout only
/// compares, without sleeping. A timeout may end up to the thread's timer slack late (50 µs by
/// default), never early.
///
/// # Safety
/// `addr` should be the address of a 4-byte aligned word in memory mapped by this process.
/// Only the kernel reads it, under its own fault handling: an unmapped address gives `EFAULT`
/// and a misaligned one `EINVAL`, never undefined behaviour; the contract is kept `unsafe` so
/// that it is the same on every platform.
///
/// # Errors
/// `EFAULT`, `EINVAL`, or any other error of the kernel.
pub unsafe fn futex_wait(
    addr: *const u32,
    expected: u32,
    timeout: Option<Duration>,
) -> io::Result<RawWait> {
    if timeout == Some(Duration::ZERO) {
        // SAFETY: forwarded from the caller.
        return unsafe { futex_compare(addr, expected) };
    }
    let ts = timeout.map(timespec_of);
    let ts_ptr = ts
        .as_ref()
        .map_or(std::ptr::null(), |t| t as *const libc::timespec);
    // SAFETY: FUTEX_WAIT reads the word at `addr` inside the kernel with its own fault handling
    // (a bad address is EFAULT, not a crash) and writes nothing; no Rust reference to the word is
    // made. `ts_ptr` is null or points to a timespec that outlives the call. The timeout is
    // relative and measured on CLOCK_MONOTONIC. No FUTEX_PRIVATE_FLAG: other processes wake it.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_futex,
            addr,
            libc::FUTEX_WAIT,
            expected,
            ts_ptr,
            std::ptr::null::<u32>(),
            0u32,
        )
    };
    if ret == 0 {
        return Ok(RawWait::Woken);
    }
    let err = io::Error::last_os_error();
    match err.raw_os_error() {
        Some(libc::EAGAIN) => Ok(RawWait::NotEqual),
        Some(libc::ETIMEDOUT) => Ok(RawWait::TimedOut),
        Some(libc::EINTR) => Ok(RawWait::Interrupted),
        _ => Err(err),
    }
}

/// A zero-timeout wait: compares the word in the kernel without sleeping.
///
/// `FUTEX_WAIT` with a zero timeout is no good for this: the kernel arms its timer with the
/// thread's timer slack (50 µs by default), so it *sleeps* up to that long (65 µs measured
/// here), and an absolute deadline in the past does the same. `FUTEX_CMP_REQUEUE` with nothing to
/// wake or requeue compares the word with `expected` (`EAGAIN` when it differs) and returns at
/// once (about 0.5 µs here), still reading it only inside the kernel.
///
/// # Safety
/// As [`futex_wait`].
unsafe fn futex_compare(addr: *const u32, expected: u32) -> io::Result<RawWait> {
    // SAFETY: as in futex_wait: the kernel reads the word with its own fault handling. The
    // fourth argument is nr_requeue (0), the fifth the requeue target (the same word), the
    // sixth the value to compare; nr_wake is 0, so nobody is woken or moved.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_futex,
            addr,
            libc::FUTEX_CMP_REQUEUE,
            0 as libc::c_int,
            std::ptr::null::<libc::timespec>(),
            addr,
            expected,
        )
    };
    if ret >= 0 {
        return Ok(RawWait::TimedOut);
    }
    let err = io::Error::last_os_error();
    match err.raw_os_error() {
        Some(libc::EAGAIN) => Ok(RawWait::NotEqual),
        _ => Err(err),
    }
}

/// Wakes at most `count` waiters on the word at `addr` (`u32::MAX`: all) and returns how many it
/// woke, exactly.
///
/// # Safety
/// As [`futex_wait`]: the kernel does not read or write the word for a wake at all, it only uses
/// the address to find the waiters, so a bad address is `EFAULT`.
///
/// # Errors
/// `EFAULT`, `EINVAL`.
pub unsafe fn futex_wake(addr: *const u32, count: u32) -> io::Result<usize> {
    let count = libc::c_int::try_from(count).unwrap_or(libc::c_int::MAX);
    // SAFETY: FUTEX_WAKE only looks the address up among the kernel's waiters (the page must be
    // mapped, else EFAULT); it touches no user memory. Not private, as for futex_wait.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_futex,
            addr,
            libc::FUTEX_WAKE,
            count,
            std::ptr::null::<libc::timespec>(),
            std::ptr::null::<u32>(),
            0u32,
        )
    };
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(usize::try_from(ret).unwrap_or(0))
    }
}
