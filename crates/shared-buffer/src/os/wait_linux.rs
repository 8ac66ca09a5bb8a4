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

/// One word of a [`futex_waitv`] call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WaitvWord {
    /// The word's address.
    pub addr: *const u32,
    /// The value to sleep on.
    pub expected: u32,
    /// True for a word only this process uses (a private futex, keyed by this address space);
    /// false for a word in shared memory, woken from any process.
    pub private: bool,
}

/// How a [`futex_waitv`] call ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Waitv {
    /// The word at this index was woken (others may have been woken too; see [`futex_waitv`]).
    Woken(usize),
    /// Some word did not hold its expected value when the kernel looked (which one is not said).
    NotEqual,
    /// The deadline passed.
    TimedOut,
    /// A signal ended the call early.
    Interrupted,
}

/// The kernel's `struct futex_waitv` (`linux/futex.h`).
#[repr(C)]
struct FutexWaitv {
    val: u64,
    uaddr: u64,
    flags: u32,
    reserved: u32,
}

const _: () = assert!(std::mem::size_of::<FutexWaitv>() == 24);

/// `FUTEX2_SIZE_U32`: a 32-bit word.
const FUTEX2_SIZE_U32: u32 = 0x02;
/// `FUTEX2_PRIVATE` (the same bit as `FUTEX_PRIVATE_FLAG`).
const FUTEX2_PRIVATE: u32 = 128;
/// `FUTEX_WAITV_MAX`: the most words one call takes.
pub const WAITV_MAX: usize = 128;

/// Sleeps on up to [`WAITV_MAX`] words at once (Linux 5.16+), until one is woken, one does not
/// hold its expected value, or `timeout` (`None`: no limit) passes.
///
/// When the call returns, the thread is no longer queued on any word: a wake of another word
/// that lands while it returns is consumed without being reported. Callers re-check the words
/// (a changed word is seen) before waiting again; a wake without a change can be missed.
///
/// # Safety
/// Each address should be a 4-byte aligned word in memory this process maps. Only the kernel
/// reads the words, with its own fault handling (`EFAULT`), as for [`futex_wait`].
///
/// # Errors
/// `ENOSYS` on kernels before 5.16; `EFAULT`, `EINVAL`; any other error of the kernel.
pub unsafe fn futex_waitv(words: &[WaitvWord], timeout: Option<Duration>) -> io::Result<Waitv> {
    let list: Vec<FutexWaitv> = words
        .iter()
        .map(|w| FutexWaitv {
            val: u64::from(w.expected),
            uaddr: w.addr as u64,
            flags: FUTEX2_SIZE_U32 | if w.private { FUTEX2_PRIVATE } else { 0 },
            reserved: 0,
        })
        .collect();
    // futex_waitv takes an absolute deadline on the clock it is given.
    let deadline = match timeout {
        None => None,
        Some(left) => {
            let mut now = libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            };
            // SAFETY: `now` is a valid, writable timespec.
            if unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now) } != 0 {
                return Err(io::Error::last_os_error());
            }
            let at = Duration::new(now.tv_sec as u64, now.tv_nsec as u32).saturating_add(left);
            Some(timespec_of(at))
        }
    };
    let ts_ptr = deadline
        .as_ref()
        .map_or(std::ptr::null(), |t| t as *const libc::timespec);
    // SAFETY: `list` holds `list.len()` valid entries and outlives the call; the kernel reads
    // each word under its own fault handling and writes nothing; `ts_ptr` is null or a valid
    // timespec. Flags 0 is the only value the call takes.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_futex_waitv,
            list.as_ptr(),
            list.len() as libc::c_uint,
            0 as libc::c_uint,
            ts_ptr,
            libc::CLOCK_MONOTONIC,
        )
    };
    if ret >= 0 {
        return Ok(Waitv::Woken(ret as usize));
    }
    let err = io::Error::last_os_error();
    match err.raw_os_error() {
        Some(libc::EAGAIN) => Ok(Waitv::NotEqual),
        Some(libc::ETIMEDOUT) => Ok(Waitv::TimedOut),
        Some(libc::EINTR | libc::ERESTART) => Ok(Waitv::Interrupted),
        _ => Err(err),
    }
}

/// Sleeps while the private word `word` (used by this process only) holds `expected`, for at
/// most `timeout`; returns on a wake, a change, a signal or the timeout, without saying which.
pub fn futex_wait_private(word: &std::sync::atomic::AtomicU32, expected: u32, timeout: Duration) {
    let ts = timespec_of(timeout);
    // SAFETY: a valid, aligned word of this process, read by the kernel; `ts` outlives the call.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAIT | libc::FUTEX_PRIVATE_FLAG,
            expected,
            &ts as *const libc::timespec,
            std::ptr::null::<u32>(),
            0u32,
        )
    };
}

/// Wakes at most `count` threads of this process waiting on the private word `word`.
pub fn futex_wake_private(word: &std::sync::atomic::AtomicU32, count: u32) {
    let count = libc::c_int::try_from(count).unwrap_or(libc::c_int::MAX);
    // SAFETY: a valid, aligned word of this process; FUTEX_WAKE touches no user memory.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAKE | libc::FUTEX_PRIVATE_FLAG,
            count,
            std::ptr::null::<libc::timespec>(),
            std::ptr::null::<u32>(),
            0u32,
        )
    };
}
