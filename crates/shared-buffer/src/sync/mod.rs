//! Synchronisation between processes through a shared segment: wait/notify on 32-bit words, a
//! robust mutex, and an async wait service for runtimes that cannot block off their main thread.
//!
//! # Wait and notify
//!
//! [`wait`] blocks while a shared [`AtomicU32`] holds an expected value, until [`notify`] is
//! called on the same word by any process mapping it, the timeout passes, or a spurious wake-up
//! happens. This is `Atomics.wait` / `Atomics.notify` across processes: Linux `futex` without
//! `FUTEX_PRIVATE_FLAG`, macOS `os_sync_wait_on_address` with the `SHARED` flags (or
//! `__ulock_wait` before macOS 14.4), `Unsupported` elsewhere. As with `Atomics.wait`, a
//! [`WaitOutcome::Woken`] does not prove the value changed: re-check it in a loop.
//!
//! The usual protocol: the writer stores the new value, then notifies; the reader loops
//! `while word.load() == seen { wait(word, seen, ..) }`. No wake-up can be lost, because the
//! kernel compares the word and queues the waiter atomically.
//!
//! [`wait_spin`] first spins, re-reading the word, for a number of rounds before it parks; a
//! change that comes during the spin costs the waiter no system call (the notifier still makes
//! one). Spinning pays when the other side answers within microseconds on another core (a round
//! trip drops from about 21 µs to 0.4 µs here); when both processes share one core it only burns
//! the time slice the other side needs (4.5 µs becomes 18 µs). See `bench/native_wait.rs`.
//!
//! Timeouts never end early; they may end up to the thread's timer slack late (50 µs by default
//! on Linux). A zero timeout only compares the word, without sleeping.
//!
//! # Mutex
//!
//! [`Mutex`] is a lock that lives at an offset inside shared memory, survives its holder's death
//! and holds no pointer; see its docs. [`held_in`] tells whether a thread of this process holds
//! a lock inside an address range (closing a segment refuses then).
//!
//! # Async wait
//!
//! [`wait_async`] registers a wait and returns at once; a small pool of reusable native threads
//! carries it out (one parked thread per pending wait, idle threads reused) and calls a
//! completion when it ends. The bindings of every runtime resolve a Promise from it through a
//! Node-API thread-safe function; [`wait_async_owned`] tags a wait with its environment, and
//! [`cancel_owned`] ends an environment's waits when it goes away (a terminated Worker). The C
//! ABI's `sb_wait_async` calls a plain function pointer.
//!
//! # Examples
//!
//! ```
//! use shared_buffer::sync::{notify, wait, WaitOutcome};
//! use shared_buffer::{Options, Segment, SegmentId};
//! use std::sync::atomic::Ordering;
//! use std::time::Duration;
//!
//! let id = SegmentId::name(&format!("/sync-doc-{}", std::process::id()))?;
//! let seg = Segment::create(&id, 64, &Options::default())?;
//! let word = seg.atomic_u32(0);
//! // Not the expected value: returns at once.
//! assert_eq!(wait(word, 5, None)?, WaitOutcome::NotEqual);
//! // Nobody notifies: times out.
//! assert_eq!(wait(word, 0, Some(Duration::from_millis(1)))?, WaitOutcome::TimedOut);
//! word.store(1, Ordering::Release);
//! assert_eq!(notify(word, 1)?, 0); // nobody was waiting
//! Segment::unlink(&id)?;
//! # Ok::<(), std::io::Error>(())
//! ```

mod async_wait;
mod held;
mod mutex;

pub(crate) use async_wait::cancel_waits_elsewhere;
pub use async_wait::{
    AsyncStart, MAX_ASYNC_WAITS, POOL_MAX_WAITS, ServiceStats, cancel_owned, cancel_waits,
    service_stats, wait_async, wait_async_owned,
};
pub use held::{MAX_HELD, forget_in as forget_held_in, held_in, held_in_mapped};
pub use mutex::{
    InitOutcome, LIVENESS_POLL, LockError, LockOutcome, MUTEX_ALIGN, MUTEX_LAYOUT, MUTEX_SIZE,
    Mutex, MutexGuard,
};

use std::io;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use crate::os;

/// How a wait ended. The names follow `Atomics.wait`'s `"ok"`, `"not-equal"`, `"timed-out"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WaitOutcome {
    /// Woken by a notify, or spuriously (`"ok"`). Re-check the word.
    Woken,
    /// The word did not hold the expected value when the wait began (`"not-equal"`).
    NotEqual,
    /// The timeout passed (`"timed-out"`).
    TimedOut,
}

/// `count` for [`notify`] that wakes every waiter.
pub const NOTIFY_ALL: u32 = u32::MAX;

/// A spin count for [`wait_spin`]: about 12 µs of spinning on the project's machines (a CPU
/// spin hint costs about 47 ns there; far less on older CPUs), several times a cross-core round
/// trip between two spinning processes (0.4 µs), and well under the cost of parking and being
/// woken on another core (about 20 µs). See `bench/native_wait.rs`.
pub const DEFAULT_SPINS: u32 = 256;

/// Blocks while `word` holds `expected`, for at most `timeout` (`None`: no limit).
///
/// A signal interrupting the wait is retried with the time left. Works across processes when
/// `word` is in shared memory (for example [`crate::Segment::atomic_u32`]).
///
/// # Errors
/// `Unsupported` on platforms without a wait-on-address call; otherwise only errors of the
/// kernel that a valid word does not cause.
pub fn wait(word: &AtomicU32, expected: u32, timeout: Option<Duration>) -> io::Result<WaitOutcome> {
    // SAFETY: a reference is a live, aligned word for the whole call.
    unsafe { wait_raw(word.as_ptr(), expected, timeout) }
}

/// [`wait`], but first re-reads the word up to `spins` times (with a CPU spin hint between
/// reads) and only then parks in the kernel.
///
/// Returns [`WaitOutcome::NotEqual`] only if the word differs on the first read; a change seen
/// later (while spinning or when parking) is [`WaitOutcome::Woken`]. `spins == 0` is [`wait`].
///
/// # Errors
/// As [`wait`].
pub fn wait_spin(
    word: &AtomicU32,
    expected: u32,
    timeout: Option<Duration>,
    spins: u32,
) -> io::Result<WaitOutcome> {
    // SAFETY: a reference is a live, aligned word for the whole call.
    unsafe { wait_spin_raw(word.as_ptr(), expected, timeout, spins) }
}

/// Wakes at most `count` waiters on `word` ([`NOTIFY_ALL`]: every one), in any process, and
/// returns how many it woke.
///
/// The count is exact on Linux. macOS gives none: there the result is exact for `count` below
/// [`NOTIFY_ALL`] (one wake-one call per waiter), and for [`NOTIFY_ALL`] it is 1 when at least
/// one waiter was woken and 0 when none was.
///
/// # Errors
/// `Unsupported` on platforms without a wait-on-address call.
pub fn notify(word: &AtomicU32, count: u32) -> io::Result<usize> {
    // SAFETY: a reference is a live, aligned word for the whole call.
    unsafe { notify_raw(word.as_ptr(), count) }
}

/// [`wait`] on a raw address, as the C ABI needs it.
///
/// # Safety
/// `addr` must be 4-byte aligned and point into memory this process maps. On Linux the word is
/// read only by the kernel, with its own fault handling: an address that is no longer mapped
/// gives `EFAULT`, never undefined behaviour, and no Rust reference to the word is made. On
/// other platforms the word is first read with an atomic load, so it must be mapped and
/// readable for the whole call.
///
/// # Errors
/// As [`wait`]; `EFAULT` for an unmapped address on Linux, `EINVAL` for a misaligned one.
pub unsafe fn wait_raw(
    addr: *const u32,
    expected: u32,
    timeout: Option<Duration>,
) -> io::Result<WaitOutcome> {
    if !os::WAIT_REPORTS_NOT_EQUAL {
        // SAFETY: on these platforms the caller promises a mapped, aligned, readable word;
        // atomic access is how every process touches it.
        let now = unsafe { AtomicU32::from_ptr(addr.cast_mut()) }.load(Ordering::Acquire);
        if now != expected {
            return Ok(WaitOutcome::NotEqual);
        }
    }
    // SAFETY: forwarded from the caller.
    unsafe { wait_kernel(addr, expected, timeout) }
}

/// [`wait_spin`] on a raw address.
///
/// # Safety
/// `addr` must be 4-byte aligned and point to a word that stays mapped and readable for the whole
/// call on every platform: the spin phase reads it in user space.
///
/// # Errors
/// As [`wait`].
pub unsafe fn wait_spin_raw(
    addr: *const u32,
    expected: u32,
    timeout: Option<Duration>,
    spins: u32,
) -> io::Result<WaitOutcome> {
    // SAFETY: the caller promises a mapped, aligned, readable word for the whole call.
    let word = unsafe { AtomicU32::from_ptr(addr.cast_mut()) };
    if word.load(Ordering::Acquire) != expected {
        return Ok(WaitOutcome::NotEqual);
    }
    if timeout == Some(Duration::ZERO) {
        return Ok(WaitOutcome::TimedOut);
    }
    let start = timeout.map(|_| Instant::now());
    for round in 0..spins {
        std::hint::spin_loop();
        if word.load(Ordering::Acquire) != expected {
            return Ok(WaitOutcome::Woken);
        }
        // Look at the clock only now and then: it costs more than a spin round.
        if round % 256 == 255 {
            if let (Some(start), Some(timeout)) = (start, timeout) {
                if start.elapsed() >= timeout {
                    return Ok(WaitOutcome::TimedOut);
                }
            }
        }
    }
    let left = match (start, timeout) {
        (Some(start), Some(timeout)) => Some(timeout.saturating_sub(start.elapsed())),
        _ => None,
    };
    // SAFETY: forwarded from the caller.
    match unsafe { wait_kernel(addr, expected, left) }? {
        // It held `expected` on the first read, so a difference now means it changed.
        WaitOutcome::NotEqual => Ok(WaitOutcome::Woken),
        other => Ok(other),
    }
}

/// [`notify`] on a raw address.
///
/// # Safety
/// `addr` should be a 4-byte aligned address in memory this process maps. The word itself is
/// never read or written (the kernel only uses the address to find waiters); a bad address gives
/// `EFAULT`.
///
/// # Errors
/// As [`notify`]; `EFAULT`, `EINVAL` for bad addresses.
pub unsafe fn notify_raw(addr: *const u32, count: u32) -> io::Result<usize> {
    // The kernel's FUTEX_WAKE wakes one waiter when asked for zero; Atomics.notify(.., 0) wakes
    // none, and so does this.
    if count == 0 {
        return Ok(0);
    }
    // SAFETY: forwarded from the caller.
    unsafe { os::futex_wake(addr, count) }
}

/// The kernel wait, retried after signals with the time left. Never reads the word itself.
///
/// # Safety
/// As [`os::futex_wait`].
pub(crate) unsafe fn wait_kernel(
    addr: *const u32,
    expected: u32,
    timeout: Option<Duration>,
) -> io::Result<WaitOutcome> {
    // A deadline past the end of Instant's range is the same as no limit.
    let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
    let mut left = timeout;
    loop {
        // SAFETY: forwarded from the caller.
        match unsafe { os::futex_wait(addr, expected, left) }? {
            os::RawWait::Woken => return Ok(WaitOutcome::Woken),
            os::RawWait::NotEqual => return Ok(WaitOutcome::NotEqual),
            os::RawWait::TimedOut => return Ok(WaitOutcome::TimedOut),
            os::RawWait::Interrupted => {
                if let Some(deadline) = deadline {
                    left = Some(deadline.saturating_duration_since(Instant::now()));
                }
            }
        }
    }
}
