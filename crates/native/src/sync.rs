//! Wait/notify, the robust mutex, and the async wait service, for the TypeScript side.
//!
//! Addresses come from JavaScript as raw pointers into mappings this library made; the
//! TypeScript side checks bounds, alignment and that the segment is open. This layer checks
//! only null and alignment (`-EINVAL`).
//!
//! Wait results: [`SB_WAIT_OK`] (0), [`SB_WAIT_NOT_EQUAL`] (1), [`SB_WAIT_TIMED_OUT`] (2), or a
//! negative code. Timeouts are nanoseconds; a negative timeout means no limit.

use std::io;
use std::time::Duration;

use crate::{code_of, guard};
use shared_buffer::sync::{
    self, AsyncStart, LockError, LockOutcome, MUTEX_ALIGN, MUTEX_SIZE, Mutex, WaitOutcome,
};

/// A wait ended by a notify, or spuriously (`Atomics.wait`'s `"ok"`).
pub const SB_WAIT_OK: i32 = 0;
/// The word did not hold the expected value (`"not-equal"`).
pub const SB_WAIT_NOT_EQUAL: i32 = 1;
/// The timeout passed (`"timed-out"`).
pub const SB_WAIT_TIMED_OUT: i32 = 2;
/// `sb_wait_async`: registered; the wake callback will be called exactly once with the token.
pub const SB_WAIT_PENDING: i32 = 0;

/// A lock was acquired.
pub const SB_LOCK_ACQUIRED: i32 = 0;
/// A lock was acquired, but its previous owner died holding it: repair the data it protects.
pub const SB_LOCK_OWNER_DIED: i32 = 1;

/// The callback that `sb_wait_async` completions call, from a native thread: `(token, result)`.
pub type SbWakeCallback = extern "C" fn(token: u64, result: i32);

fn timeout_of(timeout_ns: i64) -> Option<Duration> {
    u64::try_from(timeout_ns).ok().map(Duration::from_nanos)
}

fn wait_code(result: io::Result<WaitOutcome>) -> i32 {
    match result {
        Ok(WaitOutcome::Woken) => SB_WAIT_OK,
        Ok(WaitOutcome::NotEqual) => SB_WAIT_NOT_EQUAL,
        Ok(WaitOutcome::TimedOut) => SB_WAIT_TIMED_OUT,
        Err(err) => code_of(&err),
    }
}

fn lock_code(result: Result<LockOutcome, LockError>) -> i32 {
    match result {
        Ok(LockOutcome::Acquired) => SB_LOCK_ACQUIRED,
        Ok(LockOutcome::OwnerDied) => SB_LOCK_OWNER_DIED,
        Err(err) => code_of(&err),
    }
}

fn word_ok(addr: *const u32) -> bool {
    !addr.is_null() && addr.is_aligned()
}

/// Blocks while the 32-bit word at `addr` holds `expected`, for at most `timeout_ns`
/// nanoseconds (negative: no limit). Returns [`SB_WAIT_OK`], [`SB_WAIT_NOT_EQUAL`],
/// [`SB_WAIT_TIMED_OUT`], `-EINVAL` for a null or misaligned address, `-EFAULT` for an unmapped
/// one (Linux), `-ENOTSUP` where unsupported.
///
/// Blocks the calling thread. Deno and Bun call it synchronously, as a fast FFI call (Deno's
/// `nonblocking: true` would hold a thread of its small blocking pool per wait); their
/// `waitAsync` goes through [`sb_wait_async`].
///
/// # Safety
/// `addr` must point into a mapping this library made. On Linux the address goes straight to the
/// `futex` system call, which reads the word in the kernel with its own fault handling, so a
/// stale address gives `-EFAULT` rather than a crash; on macOS the word is read first in user
/// space, so it must be mapped for the whole call.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sb_wait(addr: *const u32, expected: u32, timeout_ns: i64) -> i32 {
    guard(|| {
        if !word_ok(addr) {
            return -libc::EINVAL;
        }
        // SAFETY: non-null and aligned; no Rust reference to the word is made, and on Linux only
        // the kernel reads it (see above).
        wait_code(unsafe { sync::wait_raw(addr, expected, timeout_of(timeout_ns)) })
    })
}

/// [`sb_wait`], but re-reads the word up to `spins` times before parking in the kernel (see
/// [`sync::wait_spin`]); [`SB_WAIT_NOT_EQUAL`] only when it differs on the first read.
///
/// # Safety
/// `addr` must point to a word in a mapping this library made that stays mapped for the whole
/// call, on every platform: the spin phase reads it in user space.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sb_wait_spin(
    addr: *const u32,
    expected: u32,
    timeout_ns: i64,
    spins: u32,
) -> i32 {
    guard(|| {
        if !word_ok(addr) {
            return -libc::EINVAL;
        }
        // SAFETY: non-null, aligned, and mapped for the call, as the caller promises.
        wait_code(unsafe { sync::wait_spin_raw(addr, expected, timeout_of(timeout_ns), spins) })
    })
}

/// Wakes at most `count` waiters (`0xFFFF_FFFF`: all) on the word at `addr`, in any process.
/// Returns how many were woken (exact on Linux; on macOS exact for a count below all, and 1 or
/// 0 for all: woke some, or none), or `-EINVAL` for a null or misaligned address, `-EFAULT` for
/// an unmapped one.
///
/// # Safety
/// `addr` should point into a mapping this library made. The word is never read or written:
/// the address goes straight to the kernel, which only uses it to find waiters.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sb_notify(addr: *const u32, count: u32) -> i32 {
    guard(|| {
        if !word_ok(addr) {
            return -libc::EINVAL;
        }
        // SAFETY: non-null and aligned; the kernel never dereferences it for a wake.
        match unsafe { sync::notify_raw(addr, count) } {
            Ok(woken) => i32::try_from(woken).unwrap_or(i32::MAX),
            Err(err) => code_of(&err),
        }
    })
}

/// [`MUTEX_SIZE`]: the bytes a mutex occupies (64).
#[unsafe(no_mangle)]
pub extern "C" fn sb_mutex_size() -> u32 {
    MUTEX_SIZE as u32
}

/// [`MUTEX_ALIGN`]: the alignment a mutex's address needs (8).
#[unsafe(no_mangle)]
pub extern "C" fn sb_mutex_align() -> u32 {
    MUTEX_ALIGN as u32
}

fn mutex_ok(addr: *mut u8) -> bool {
    !addr.is_null() && addr as usize % MUTEX_ALIGN == 0
}

/// The mutex at `addr`, or `-EINVAL` for a null or misaligned address. Its header is checked by
/// each operation that needs it (see [`Mutex::lock`]).
///
/// # Safety
/// As [`sb_mutex_lock`].
unsafe fn mutex_at<'a>(addr: *mut u8) -> Result<&'a Mutex, i32> {
    if !mutex_ok(addr) {
        return Err(-libc::EINVAL);
    }
    // SAFETY: non-null, aligned, and (the caller promises) MUTEX_SIZE bytes of a mapping this
    // library made. A Mutex is atomics only, so any bytes are a valid value of it.
    Ok(unsafe { &*addr.cast::<Mutex>() })
}

/// Initialises a mutex in the [`MUTEX_SIZE`] zeroed bytes at `addr` (the segment creator does
/// this; racing initialisers are safe). Returns 0 if this call initialised it, 1 if it already
/// was, `-EINVAL` for a null or misaligned address or bytes that are not zero nor a mutex,
/// `-EAGAIN` if another process began initialising it over 100 ms ago and has not finished,
/// `-EXDEV` if a process in another pid namespace set it up, `-ENOTSUP` where unsupported.
///
/// # Safety
/// `addr` must point to [`MUTEX_SIZE`] bytes inside a mapping this library made, which stays
/// mapped for the whole call.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sb_mutex_init(addr: *mut u8) -> i32 {
    guard(|| {
        if !mutex_ok(addr) {
            return -libc::EINVAL;
        }
        // SAFETY: non-null, aligned, and valid, as the caller promises.
        match unsafe { Mutex::init(addr) } {
            Ok((_, sync::InitOutcome::Initialized)) => 0,
            Ok((_, sync::InitOutcome::AlreadyInitialized)) => 1,
            Err(err) => code_of(&err),
        }
    })
}

/// Checks that the [`MUTEX_SIZE`] bytes at `addr` hold a ready mutex of this layout. Returns 0,
/// `-EINVAL` for a null or misaligned address, an uninitialised mutex or bytes that are not one
/// (another layout included), `-EAGAIN` if another process began initialising it over 100 ms ago
/// and has not finished, `-EXDEV` if a process in another pid namespace set it up.
///
/// # Safety
/// As [`sb_mutex_init`].
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sb_mutex_open(addr: *mut u8) -> i32 {
    guard(|| {
        if !mutex_ok(addr) {
            return -libc::EINVAL;
        }
        // SAFETY: non-null, aligned, and valid, as the caller promises.
        match unsafe { Mutex::from_ptr(addr) } {
            Ok(_) => 0,
            Err(err) => code_of(&err),
        }
    })
}

/// How many locks that live threads of this process hold in the `len` bytes from `addr` (the
/// check before closing or detaching memory: see `sb_close`). Where a handle of this library maps
/// the whole range, a lock counts only while its owner word names its thread (one its thread
/// unlocked through another mapping of the segment does not); elsewhere the memory is not read.
/// Returns a count (0 or more).
#[unsafe(no_mangle)]
pub extern "C" fn sb_mutex_held_in(addr: *const u8, len: u64) -> i32 {
    guard(|| {
        let len = usize::try_from(len).unwrap_or(usize::MAX);
        i32::try_from(crate::segment::held_in(addr as usize, len)).unwrap_or(i32::MAX)
    })
}

/// Locks the mutex at `addr`, waiting at most `timeout_ns` nanoseconds (negative: no limit).
/// Returns [`SB_LOCK_ACQUIRED`] (0), [`SB_LOCK_OWNER_DIED`] (1: acquired, and the previous owner
/// died holding it, or another process left bytes that name no live owner), `-ETIMEDOUT`,
/// `-EDEADLK` (this thread holds it), `-EINVAL` (null, misaligned, or not initialised),
/// `-EAGAIN` (still being initialised after 100 ms, or after `timeout_ns` if shorter; at once
/// from [`sb_mutex_trylock`]), `-ENOTRECOVERABLE` (another process overwrote the
/// lock's header), `-ENOLCK` (this thread holds 64 locks already).
///
/// Blocks the calling thread while the lock is held elsewhere. The lock belongs to the calling
/// thread: unlock it from the same thread (with Deno's `nonblocking: true` the call runs on a
/// helper thread, so use it only for a try-lock style or keep lock and unlock on one thread).
///
/// # Safety
/// `addr` must point to [`MUTEX_SIZE`] bytes inside a mapping this library made, which stays
/// mapped while the call runs and while the lock is held.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sb_mutex_lock(addr: *mut u8, timeout_ns: i64) -> i32 {
    guard(|| {
        // SAFETY: forwarded from the caller.
        match unsafe { mutex_at(addr) } {
            Ok(mutex) => lock_code(mutex.lock(timeout_of(timeout_ns))),
            Err(code) => code,
        }
    })
}

/// Locks the mutex at `addr` if it is free, without waiting. Returns as [`sb_mutex_lock`], with
/// `-EBUSY` when another thread or process holds it (`-EDEADLK` when the calling thread does).
///
/// # Safety
/// As [`sb_mutex_lock`].
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sb_mutex_trylock(addr: *mut u8) -> i32 {
    guard(|| {
        // SAFETY: forwarded from the caller.
        match unsafe { mutex_at(addr) } {
            Ok(mutex) => lock_code(mutex.try_lock()),
            Err(code) => code,
        }
    })
}

/// Unlocks the mutex at `addr`. Returns 0, `-EPERM` when the calling thread does not hold it
/// (also when another process overwrote the owner meanwhile), `-EINVAL` (null, misaligned, or
/// not initialised).
///
/// # Safety
/// As [`sb_mutex_lock`].
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sb_mutex_unlock(addr: *mut u8) -> i32 {
    guard(|| {
        // SAFETY: forwarded from the caller.
        match unsafe { mutex_at(addr) } {
            Ok(mutex) => match mutex.unlock() {
                Ok(()) => 0,
                Err(err) => code_of(&err),
            },
            Err(code) => code,
        }
    })
}

/// Registers a wait for the word at `addr` to stop holding `expected`, for at most `timeout_ns`
/// nanoseconds (negative: no limit), and returns at once:
///
/// - [`SB_WAIT_PENDING`] (0): registered; `cb(token, result)` will be called exactly once, from
///   a native thread (or from [`sb_wait_cancel`]'s caller), when it ends.
/// - [`SB_WAIT_NOT_EQUAL`] (1): the word already differs; nothing registered, no callback.
/// - [`SB_WAIT_TIMED_OUT`] (2): `timeout_ns` was 0 and the word holds `expected`; no callback.
/// - negative: `-EINVAL` (null or misaligned address, or no callback), `-EAGAIN` (too many
///   pending waits), `-EFAULT`; no callback.
///
/// The callback's `result` is [`SB_WAIT_OK`] (notified, or the word changed after
/// registration), [`SB_WAIT_TIMED_OUT`] (timeout counted from this call), `-EBADF` (cancelled by
/// [`sb_wait_cancel`], or its mapping unmapped: the last handle closed) or another negative
/// code. Thousands of waits may pend: on Linux 5.16+ one native thread watches up to 127 of them
/// (`futex_waitv`).
///
/// # Safety
/// `addr` must point into a mapping this library made. Closing its last handle ends the wait
/// with `-EBADF` before the unmap (the callback then runs on a thread the library starts for
/// it). On Linux only the kernel reads the word (now and later), so memory unmapped otherwise
/// while the wait is pending gives `-EFAULT` or keeps waiting on the shared page, never a
/// crash; on macOS the word is also read here in user space, so it must be mapped during this
/// call. `cb` must be callable from any thread until
/// every wait registered with it has ended, and must not block: in Bun a
/// `JSCallback(fn, { threadsafe: true })`, in Deno a `Deno.UnsafeCallback.threadSafe`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sb_wait_async(
    addr: *const u32,
    expected: u32,
    timeout_ns: i64,
    token: u64,
    cb: Option<SbWakeCallback>,
) -> i32 {
    guard(|| {
        let Some(cb) = cb else {
            return -libc::EINVAL;
        };
        // SAFETY: forwarded from the caller.
        unsafe { start_wait_async(addr, expected, timeout_ns, 0, move |code| cb(token, code)) }
    })
}

/// The body of [`sb_wait_async`] with the completion as a closure, shared with Node's
/// `waitAsync`: returns [`SB_WAIT_PENDING`] (and `done` will run exactly once, on a pool thread or
/// from [`sb_wait_cancel`], with the result code), or the code to report at once (`done` never
/// runs). `owner` (0: none) is whose wait it is, for [`sync::cancel_owned`].
///
/// # Safety
/// As [`sb_wait_async`].
pub(crate) unsafe fn start_wait_async(
    addr: *const u32,
    expected: u32,
    timeout_ns: i64,
    owner: u64,
    done: impl FnOnce(i32) + Send + 'static,
) -> i32 {
    if !word_ok(addr) {
        return -libc::EINVAL;
    }
    let done = move |result: io::Result<WaitOutcome>| done(wait_code(result));
    // SAFETY: non-null and aligned; see sb_wait_async for who reads the word.
    match unsafe { sync::wait_async_owned(addr, expected, timeout_of(timeout_ns), owner, done) } {
        Ok(AsyncStart::Pending) => SB_WAIT_PENDING,
        Ok(AsyncStart::NotEqual) => SB_WAIT_NOT_EQUAL,
        Ok(AsyncStart::TimedOut) => SB_WAIT_TIMED_OUT,
        Err(err) => code_of(&err),
    }
}

/// Ends every pending [`sb_wait_async`] wait on a word in `addr..addr + len` now: each one's
/// callback is called once with `-EBADF` before this returns (from this thread). Returns how many
/// it ended. Closing a mapping's last handle ([`crate::segment::sb_close`]) ends them for the
/// mapping's range (their callbacks on a thread of the library's); call this to end them
/// sooner, while other handles keep the mapping.
#[unsafe(no_mangle)]
pub extern "C" fn sb_wait_cancel(addr: usize, len: usize) -> i32 {
    guard(|| i32::try_from(sync::cancel_waits(addr, len)).unwrap_or(i32::MAX))
}
