//! [`Mutex`]: a robust lock living at an offset inside shared memory.

use std::cell::UnsafeCell;
use std::io;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use crate::Segment;

/// Bytes a [`Mutex`] occupies in shared memory. Reserve exactly this many, at an offset that is a
/// multiple of [`MUTEX_ALIGN`].
pub const MUTEX_SIZE: usize = 64;

/// Alignment a [`Mutex`] needs (its offset must be a multiple of this). Placing it on its own
/// 64-byte cache line avoids false sharing, but is not required.
pub const MUTEX_ALIGN: usize = 8;

/// Bytes before the native lock: the state word and a reserved word.
const HEADER: usize = 8;

/// State word: zeroed memory, nobody has started initialising.
const UNINIT: u32 = 0;
/// State word: one process is writing the native lock.
const INITIALISING: u32 = 1;
/// State word: the native lock is ready.
const READY: u32 = 2;

/// How long [`Mutex::from_ptr`] and a losing [`Mutex::init`] wait for another process that is in
/// the middle of initialising (a few microseconds normally).
const INIT_WAIT: Duration = Duration::from_millis(100);

// The native lock: glibc's robust pthread mutex on Linux, the process-id lock on macOS.
#[cfg(target_os = "macos")]
use super::pidlock as imp;
#[cfg(target_os = "linux")]
use crate::os::robust_mutex as imp;

#[cfg(not(any(target_os = "linux", target_os = "macos")))]
mod imp {
    //! No robust process-shared lock on this platform: every call is `Unsupported`.
    use std::io;
    use std::time::Duration;

    pub const SIZE: usize = 0;
    pub const ALIGN: usize = 1;

    fn unsupported<T>() -> io::Result<T> {
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "the cross-process mutex is not supported on this platform",
        ))
    }
    pub unsafe fn init(_p: *mut u8) -> io::Result<()> {
        unsupported()
    }
    pub unsafe fn lock(_p: *mut u8, _timeout: Option<Duration>) -> io::Result<bool> {
        unsupported()
    }
    pub unsafe fn try_lock(_p: *mut u8) -> io::Result<bool> {
        unsupported()
    }
    pub unsafe fn unlock(_p: *mut u8) -> io::Result<()> {
        unsupported()
    }
}

/// The native lock must fit in the bytes after the header, at an offset it can be aligned to.
const _: () = assert!(imp::SIZE <= MUTEX_SIZE - HEADER);
const _: () = assert!(imp::ALIGN <= MUTEX_ALIGN && HEADER % imp::ALIGN == 0);

/// A robust mutex shared between processes, placed at an offset inside shared memory.
///
/// # Layout
///
/// [`MUTEX_SIZE`] (64) bytes at a multiple of [`MUTEX_ALIGN`] (8):
///
/// | bytes | what |
/// | --- | --- |
/// | 0..4 | state: 0 uninitialised, 1 initialising, 2 ready (native-endian `u32`) |
/// | 4..8 | reserved, 0 |
/// | 8..64 | the native lock |
///
/// # Initialisation
///
/// The memory starts zeroed (a new segment is). Whoever creates the segment, or anyone, calls
/// [`Mutex::init`] (C: `sb_mutex_init`), which claims the state word with a compare-and-swap from
/// 0 to 1, writes the native lock and publishes 2. Several processes may race to initialise: one
/// wins ([`InitOutcome::Initialized`]), the others wait up to 100 ms for it to finish and get
/// [`InitOutcome::AlreadyInitialized`]. An opener uses [`Mutex::from_ptr`], which returns
/// `EINVAL` for an uninitialised mutex (state 0 or garbage), waits up to 100 ms while another
/// process is initialising, and gives `EAGAIN` if that takes longer (for instance because the
/// initialising process died in those microseconds; the state then stays 1 and the mutex cannot
/// be used).
///
/// # Robustness
///
/// When the process (or thread) that holds the lock dies, even by `SIGKILL`, the next
/// [`Mutex::lock`] succeeds with [`LockOutcome::OwnerDied`]: the caller holds the lock and should
/// repair the data it protects, which may be half-updated. The lock stays usable. Unlocking a
/// lock this thread does not hold is `EPERM`; relocking one it holds is `EDEADLK`.
///
/// # Platforms
///
/// - **Linux**: a glibc `pthread_mutex_t` made `PTHREAD_PROCESS_SHARED`, `PTHREAD_MUTEX_ROBUST`
///   and `PTHREAD_MUTEX_ERRORCHECK`. The kernel marks it when the holder dies, at once. Owner is
///   the locking *thread*. Timed locks use `CLOCK_MONOTONIC` (glibc 2.30+). Uncontended lock and
///   unlock make no system call.
/// - **macOS**, which has no robust process-shared pthread mutex: a word holding the owner's
///   process id, parked on with `os_sync_wait_on_address`. A waiter notices a dead owner with
///   `kill(pid, 0)` failing with `ESRCH`, checked when it first finds the lock held and every
///   50 ms while it waits. Limits: a dead owner that its parent has not yet reaped (a zombie)
///   still counts as alive; if the dead owner's pid is reused by a new process before anyone
///   notices, the lock looks held by that process until it exits; a *thread* that exits holding
///   it while its process lives is not noticed at all.
/// - Elsewhere: `Unsupported`.
///
/// Do not unmap the segment while holding the lock: the kernel can only mark a lock it can
/// still reach when the holder dies.
///
/// # Examples
///
/// ```
/// use shared_buffer::sync::{LockOutcome, Mutex, MUTEX_SIZE};
/// use shared_buffer::{Options, Segment, SegmentId};
///
/// let id = SegmentId::name(&format!("/mutex-doc-{}", std::process::id()))?;
/// let seg = Segment::create(&id, 4096, &Options::default())?;
/// let (mutex, _) = Mutex::init_in(&seg, 0)?;
/// {
///     let guard = mutex.guard(None)?;
///     assert!(!guard.owner_died());
///     // ... update the data the lock protects, e.g. at offset MUTEX_SIZE ...
/// } // unlocked here
/// assert_eq!(mutex.try_lock()?, LockOutcome::Acquired);
/// mutex.unlock()?;
/// Segment::unlink(&id)?;
/// # Ok::<(), std::io::Error>(())
/// ```
#[repr(C, align(8))]
pub struct Mutex {
    state: AtomicU32,
    _reserved: AtomicU32,
    native: UnsafeCell<[u8; MUTEX_SIZE - HEADER]>,
}

const _: () = assert!(std::mem::size_of::<Mutex>() == MUTEX_SIZE);
const _: () = assert!(std::mem::align_of::<Mutex>() == MUTEX_ALIGN);

// SAFETY: a Mutex is only ever a view of shared memory that every thread (and process) uses
// through the native lock's own synchronisation; no field is touched without it.
unsafe impl Sync for Mutex {}
// SAFETY: as above; a Mutex is never owned by value (it cannot be constructed).
unsafe impl Send for Mutex {}

impl std::fmt::Debug for Mutex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mutex")
            .field("state", &self.state.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

/// What [`Mutex::init`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum InitOutcome {
    /// This call initialised the mutex.
    Initialized,
    /// It was already initialised (or another process finished initialising it meanwhile).
    AlreadyInitialized,
}

/// How a lock was acquired. Either way the caller now holds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LockOutcome {
    /// Acquired normally.
    Acquired,
    /// Acquired, but the previous owner died holding it: the protected data may be
    /// inconsistent and should be repaired before the lock is released.
    OwnerDied,
}

fn invalid(msg: &'static str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, msg)
}

impl Mutex {
    /// Initialises the mutex at `ptr` if nobody has, and returns it.
    ///
    /// # Safety
    /// `ptr` must be aligned to [`MUTEX_ALIGN`] and valid for reads and writes of
    /// [`MUTEX_SIZE`] bytes for `'a`, and those bytes must be zero or a mutex made by this
    /// function (in any process). Nothing else may write them.
    ///
    /// # Errors
    /// `EINVAL` when the state word holds neither 0, 1 nor 2 (the bytes are not a mutex);
    /// `EAGAIN` when another process began initialising more than 100 ms ago and has not
    /// finished; errors of the native initialisation (`Unsupported` on other platforms).
    pub unsafe fn init<'a>(ptr: *mut u8) -> io::Result<(&'a Mutex, InitOutcome)> {
        // SAFETY: the caller promises an aligned, valid range of MUTEX_SIZE bytes; a Mutex has
        // atomics and an UnsafeCell only, so shared access from other processes is allowed.
        let mutex = unsafe { &*ptr.cast::<Mutex>() };
        match mutex.state.compare_exchange(
            UNINIT,
            INITIALISING,
            Ordering::Acquire,
            Ordering::Acquire,
        ) {
            Ok(_) => {
                // SAFETY: we won the state word, so nobody else touches the native bytes until
                // READY is published; they are inside the caller's range and aligned (header is
                // a multiple of the native alignment, checked at compile time).
                if let Err(err) = unsafe { imp::init(mutex.native_ptr()) } {
                    mutex.state.store(UNINIT, Ordering::Release);
                    return Err(err);
                }
                mutex.state.store(READY, Ordering::Release);
                Ok((mutex, InitOutcome::Initialized))
            }
            Err(_) => {
                mutex.wait_ready()?;
                Ok((mutex, InitOutcome::AlreadyInitialized))
            }
        }
    }

    /// The initialised mutex at `ptr`.
    ///
    /// # Safety
    /// `ptr` must be aligned to [`MUTEX_ALIGN`] and valid for reads and writes of
    /// [`MUTEX_SIZE`] bytes for `'a`; those bytes may only ever be written by this module.
    ///
    /// # Errors
    /// `EINVAL` when it is not initialised; `EAGAIN` when another process is still initialising
    /// it after 100 ms.
    pub unsafe fn from_ptr<'a>(ptr: *mut u8) -> io::Result<&'a Mutex> {
        // SAFETY: as in `init`.
        let mutex = unsafe { &*ptr.cast::<Mutex>() };
        mutex.wait_ready()?;
        Ok(mutex)
    }

    /// [`Mutex::init`] at `offset` inside `segment`, with bounds and alignment checked.
    ///
    /// # Errors
    /// `InvalidInput` when `offset` is not a multiple of [`MUTEX_ALIGN`] or the mutex does not
    /// fit; otherwise as [`Mutex::init`].
    pub fn init_in(segment: &Segment, offset: usize) -> io::Result<(&Mutex, InitOutcome)> {
        let ptr = Self::place(segment, offset)?;
        // SAFETY: in bounds and aligned (mappings are page-aligned), and tied to the segment's
        // lifetime; the memory is shared, which a Mutex allows.
        unsafe { Self::init(ptr) }
    }

    /// [`Mutex::from_ptr`] at `offset` inside `segment`, with bounds and alignment checked.
    ///
    /// # Errors
    /// `InvalidInput` when `offset` is not a multiple of [`MUTEX_ALIGN`] or the mutex does not
    /// fit; otherwise as [`Mutex::from_ptr`].
    pub fn open_in(segment: &Segment, offset: usize) -> io::Result<&Mutex> {
        let ptr = Self::place(segment, offset)?;
        // SAFETY: as in `init_in`.
        unsafe { Self::from_ptr(ptr) }
    }

    fn place(segment: &Segment, offset: usize) -> io::Result<*mut u8> {
        if offset % MUTEX_ALIGN != 0 {
            return Err(invalid("mutex offset is not a multiple of MUTEX_ALIGN"));
        }
        if offset
            .checked_add(MUTEX_SIZE)
            .is_none_or(|end| end > segment.len())
        {
            return Err(invalid("mutex does not fit inside the segment"));
        }
        // SAFETY: offset + MUTEX_SIZE <= len, so the result stays inside the mapping.
        Ok(unsafe { segment.as_ptr().add(offset) })
    }

    fn wait_ready(&self) -> io::Result<()> {
        let mut deadline = None;
        loop {
            match self.state.load(Ordering::Acquire) {
                READY => return Ok(()),
                INITIALISING => {
                    let end = *deadline.get_or_insert_with(|| Instant::now() + INIT_WAIT);
                    if Instant::now() >= end {
                        return Err(io::Error::from_raw_os_error(libc::EAGAIN));
                    }
                    std::thread::yield_now();
                }
                UNINIT => return Err(invalid("mutex is not initialised")),
                _ => return Err(invalid("bytes are not a mutex (bad state word)")),
            }
        }
    }

    fn native_ptr(&self) -> *mut u8 {
        self.native.get().cast()
    }

    /// Locks, waiting at most `timeout` (`None`: no limit; `Some(ZERO)`: do not wait).
    ///
    /// # Errors
    /// `ETIMEDOUT` (kind `TimedOut`) when the timeout passed; `EDEADLK` when this thread
    /// already holds it; `ENOTRECOVERABLE` when a previous owner-died episode was released
    /// without being marked consistent (only possible through other code).
    pub fn lock(&self, timeout: Option<Duration>) -> io::Result<LockOutcome> {
        if timeout == Some(Duration::ZERO) {
            // A timed lock whose deadline has passed still makes a timed kernel wait (glibc),
            // which can sleep for the timer slack; a try-lock answers at once.
            return match self.try_lock() {
                Err(err) if err.raw_os_error() == Some(libc::EBUSY) => {
                    Err(io::Error::from_raw_os_error(libc::ETIMEDOUT))
                }
                other => other,
            };
        }
        // SAFETY: `self` is a READY mutex (only init/from_ptr hand one out) inside live memory.
        unsafe { imp::lock(self.native_ptr(), timeout) }.map(outcome)
    }

    /// Locks if nobody holds it, without waiting.
    ///
    /// # Errors
    /// `EBUSY` (kind `ResourceBusy`) when another thread or process holds it; `EDEADLK` when
    /// this thread does.
    pub fn try_lock(&self) -> io::Result<LockOutcome> {
        // SAFETY: as in `lock`.
        unsafe { imp::try_lock(self.native_ptr()) }.map(outcome)
    }

    /// Unlocks.
    ///
    /// # Errors
    /// `EPERM` (kind `PermissionDenied`) when this thread does not hold it.
    pub fn unlock(&self) -> io::Result<()> {
        // SAFETY: as in `lock`.
        unsafe { imp::unlock(self.native_ptr()) }
    }

    /// [`Mutex::lock`], returning a guard that unlocks when dropped.
    ///
    /// # Errors
    /// As [`Mutex::lock`].
    pub fn guard(&self, timeout: Option<Duration>) -> io::Result<MutexGuard<'_>> {
        let outcome = self.lock(timeout)?;
        Ok(MutexGuard {
            mutex: self,
            outcome,
            _not_send: PhantomData,
        })
    }

    /// [`Mutex::try_lock`], returning a guard that unlocks when dropped.
    ///
    /// # Errors
    /// As [`Mutex::try_lock`].
    pub fn try_guard(&self) -> io::Result<MutexGuard<'_>> {
        let outcome = self.try_lock()?;
        Ok(MutexGuard {
            mutex: self,
            outcome,
            _not_send: PhantomData,
        })
    }
}

fn outcome(owner_died: bool) -> LockOutcome {
    if owner_died {
        LockOutcome::OwnerDied
    } else {
        LockOutcome::Acquired
    }
}

/// Holds a [`Mutex`]; unlocks it when dropped. Not `Send`: the lock belongs to the thread that
/// took it.
#[derive(Debug)]
#[must_use = "the mutex is unlocked as soon as the guard is dropped"]
pub struct MutexGuard<'a> {
    mutex: &'a Mutex,
    outcome: LockOutcome,
    _not_send: PhantomData<*const ()>,
}

impl MutexGuard<'_> {
    /// True when the previous owner died holding the lock (see [`LockOutcome::OwnerDied`]).
    pub fn owner_died(&self) -> bool {
        self.outcome == LockOutcome::OwnerDied
    }

    /// How the lock was acquired.
    pub fn outcome(&self) -> LockOutcome {
        self.outcome
    }
}

impl Drop for MutexGuard<'_> {
    fn drop(&mut self) {
        // This thread holds the lock (the guard is not Send), so unlock cannot fail with EPERM;
        // a destructor has nobody to report any other error to.
        let _ = self.mutex.unlock();
    }
}
