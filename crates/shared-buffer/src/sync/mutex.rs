//! [`Mutex`]: a lock living at an offset inside shared memory, robust against dead owners and
//! against whatever another process writes into it.

use std::fmt;
use std::io;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::held;
use crate::Segment;
use crate::channel::liveness;
use crate::os::{self, Liveness, RawWait};

/// Bytes a [`Mutex`] occupies in shared memory. Reserve exactly this many, at an offset that is a
/// multiple of [`MUTEX_ALIGN`].
pub const MUTEX_SIZE: usize = 64;

/// Alignment a [`Mutex`] needs (its offset must be a multiple of this). Placing it on its own
/// 64-byte cache line avoids false sharing, but is not required.
pub const MUTEX_ALIGN: usize = 8;

/// State word: zeroed memory, nobody has started initialising.
const UNINIT: u32 = 0;
/// State word: one process is writing the lock.
const INITIALISING: u32 = 1;
/// State word: the lock is ready.
const READY: u32 = 2;

/// The layout word of this lock (bytes 4..8). Version 1, the glibc `pthread_mutex_t` of earlier
/// releases, left these bytes 0.
pub const MUTEX_LAYOUT: u32 = 2;

/// How long [`Mutex::from_ptr`] and a losing [`Mutex::init`] wait for another process that is in
/// the middle of initialising (a few microseconds normally); [`Mutex::lock`] waits as long at
/// most, and no longer than its timeout, and [`Mutex::try_lock`] does not wait.
const INIT_WAIT: Duration = Duration::from_millis(100);
/// Yields before the wait for an initialising process naps instead.
const INIT_YIELDS: u32 = 64;

/// Bit 31 of the owner word: a waiter may be parked, so unlock must wake one.
const WAITERS: u64 = 1 << 31;
/// Bits of the owner word that hold the owner's token (bit 30 is always 0 in a valid word).
const TOKEN_MASK: u64 = (1 << 30) - 1;

/// How long a parked waiter sleeps before it checks that the owner still lives (a dead process
/// or thread wakes nobody). Also the longest a waiter takes to notice a killed owner.
pub const LIVENESS_POLL: Duration = Duration::from_millis(10);

/// Spin rounds (about 50 ns each) before a locker parks: a lock held for a few microseconds
/// changes hands without a system call.
const SPINS: u32 = 100;
/// Lost races (a compare-and-swap that failed) between two looks at the clock.
const RACES_PER_LOOK: u32 = 64;

/// The owner word of `(token, stamp)`: token in the low 32 bits (the futex word), stamp above.
fn encode(token: u32, stamp: u32) -> u64 {
    (u64::from(stamp) << 32) | (u64::from(token) & TOKEN_MASK)
}

/// Why a [`Mutex`] call failed. Each maps to one `errno` value ([`LockError::errno`]), which
/// is what the C ABI returns (negated) and what `io::Error::from` carries.
#[derive(Debug)]
#[non_exhaustive]
pub enum LockError {
    /// `try_lock`: another live thread or process holds it (`EBUSY`).
    WouldBlock,
    /// `lock`: the timeout passed (`ETIMEDOUT`).
    TimedOut,
    /// This thread already holds it (`EDEADLK`).
    Deadlock,
    /// `unlock` by a thread that does not hold it (`EPERM`).
    NotOwner,
    /// The lock's header no longer says "ready lock": another process overwrote it
    /// (`ENOTRECOVERABLE`). Nothing was changed; the bytes must be set up again by the
    /// application.
    NotRecoverable,
    /// This thread already holds [`held::MAX_HELD`] locks (`ENOLCK`).
    TooManyHeld,
    /// The bytes are not a ready lock (uninitialised, garbage, or another layout), or the
    /// offset is misaligned or out of bounds (`EINVAL`).
    Invalid(&'static str),
    /// Another process is initialising the lock and has not finished (`EAGAIN`): after 100 ms
    /// (it may have died doing so), or a lock's shorter timeout, or at once in a try-lock. A
    /// ready lock never goes back to this state: a peer that writes it there spoils the lock.
    Initialising,
    /// The lock was set up by a process in another pid namespace (`EXDEV`): its owners are
    /// named by thread ids, which mean nothing across pid namespaces (a live holder would look
    /// dead). Both are the inode numbers of `/proc/<pid>/ns/pid`.
    OtherPidNamespace {
        /// The namespace recorded in the lock.
        theirs: u32,
        /// This process's.
        ours: u32,
    },
    /// The operating system failed (waiting, or naming this thread), or the platform has no
    /// cross-process lock (`ENOTSUP`).
    Os(io::Error),
}

impl LockError {
    /// The `errno` value of this error: the one mapping from lock errors to numbers.
    pub fn errno(&self) -> i32 {
        match self {
            Self::WouldBlock => libc::EBUSY,
            Self::TimedOut => libc::ETIMEDOUT,
            Self::Deadlock => libc::EDEADLK,
            Self::NotOwner => libc::EPERM,
            Self::NotRecoverable => libc::ENOTRECOVERABLE,
            Self::TooManyHeld => libc::ENOLCK,
            Self::Invalid(_) => libc::EINVAL,
            Self::Initialising => libc::EAGAIN,
            Self::OtherPidNamespace { .. } => libc::EXDEV,
            Self::Os(err) => match (err.raw_os_error(), err.kind()) {
                (Some(code), _) => code,
                (None, io::ErrorKind::Unsupported) => libc::ENOTSUP,
                (None, io::ErrorKind::InvalidInput) => libc::EINVAL,
                (None, _) => libc::EIO,
            },
        }
    }
}

impl fmt::Display for LockError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::WouldBlock => f.write_str("the lock is held by another thread"),
            Self::TimedOut => f.write_str("timed out waiting for the lock"),
            Self::Deadlock => f.write_str("this thread already holds the lock"),
            Self::NotOwner => f.write_str("this thread does not hold the lock"),
            Self::NotRecoverable => {
                f.write_str("the lock's bytes were overwritten: it is not a lock any more")
            }
            Self::TooManyHeld => write!(f, "this thread holds {} locks already", held::MAX_HELD),
            Self::Invalid(why) => f.write_str(why),
            Self::Initialising => f.write_str("another process is still setting up the lock"),
            Self::OtherPidNamespace { theirs, ours } => write!(
                f,
                "the lock was set up in another pid namespace (pid:[{theirs}]; this process is \
                 in pid:[{ours}]): its holders are named by thread ids, which hold only within \
                 one pid namespace; share a lock only between processes of one"
            ),
            Self::Os(err) => write!(f, "{err}"),
        }
    }
}

impl std::error::Error for LockError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Os(err) => Some(err),
            _ => None,
        }
    }
}

impl From<LockError> for io::Error {
    /// An OS error as it was; any other is the typed error inside an `io::Error` of the kind of
    /// its `errno` value, as the segment's and the channel's errors are: `raw_os_error()` is
    /// `None` for it, and `get_ref()` with `downcast_ref::<LockError>()` gives it back (then
    /// [`LockError::errno`]).
    fn from(err: LockError) -> Self {
        match err {
            LockError::Os(err) => err,
            other => {
                let kind = io::Error::from_raw_os_error(other.errno()).kind();
                io::Error::new(kind, other)
            }
        }
    }
}

/// A mutex shared between processes, placed at an offset inside shared memory, that survives its
/// holder's death and anything another process writes into it.
///
/// # Layout
///
/// [`MUTEX_SIZE`] (64) bytes at a multiple of [`MUTEX_ALIGN`] (8), native-endian:
///
/// | bytes | what |
/// | --- | --- |
/// | 0..4 | state: 0 uninitialised, 1 initialising, 2 ready |
/// | 4..8 | layout: [`MUTEX_LAYOUT`] (2) |
/// | 8..16 | owner word: 0 free, else the owner's identity (below) |
/// | 16..20 | the pid namespace of the process that set it up (Linux; 0: not known) |
/// | 20..64 | reserved, 0 |
///
/// The owner word is one 64-bit atomic. Its low 32 bits are the futex word waiters park on:
/// bits 0..30 the owner's *token*, bit 31 "a waiter may be parked"; its high 32 bits are the
/// owner's *stamp*. Linux: token = thread id, stamp = low 32 bits of that thread's start time
/// (clock ticks since boot); macOS: token = process id, stamp = low 32 bits of the thread's
/// 64-bit id, never reused until reboot. Either pair names one thread for the life of the
/// machine, so a reused process or thread id never passes for a dead owner. Taking the lock is
/// one compare-and-swap from 0 to the caller's word: the identity is complete the instant the
/// lock is held. No byte of the lock is ever an address.
///
/// # Initialisation
///
/// The memory starts zeroed (a new segment is). Whoever creates the segment, or anyone, calls
/// [`Mutex::init`] (C: `sb_mutex_init`), which claims the state word with a compare-and-swap from
/// 0 to 1, writes the layout and a free owner word, and publishes 2. Several processes may race
/// to initialise: one wins ([`InitOutcome::Initialized`]), the others wait up to 100 ms for it
/// to finish and get [`InitOutcome::AlreadyInitialized`]. An opener uses [`Mutex::from_ptr`],
/// which refuses an uninitialised lock or foreign bytes ([`LockError::Invalid`], `EINVAL`), waits
/// up to 100 ms while another process is initialising, and gives [`LockError::Initialising`]
/// (`EAGAIN`) if that takes longer (the initialising process may have died in those
/// microseconds; the state then stays 1 and the lock cannot be used). `init` records the pid
/// namespace of the process that sets the lock up, and both refuse a lock set up in another
/// ([`LockError::OtherPidNamespace`], `EXDEV`), as a channel does: owners are named by thread
/// ids, and another namespace's ids would name other threads here, or none (a live holder would
/// look dead, and two threads would hold the lock). [`Mutex::lock`] and
/// [`Mutex::try_lock`] check the header too, and wait for an initialising process no longer than
/// their timeout (a try-lock not at all).
///
/// # Dead owners
///
/// When the thread that holds the lock ends, by a crash, `SIGKILL`, its process exiting, or a
/// terminated Worker, the next [`Mutex::lock`] in any thread or process succeeds with
/// [`LockOutcome::OwnerDied`]: the caller holds the lock and should repair the data it protects,
/// which may be half-updated. The lock stays usable (it never becomes "not recoverable" the way
/// a POSIX robust mutex unlocked without `pthread_mutex_consistent` does).
///
/// A dead owner wakes nobody, so a parked waiter checks the owner every [`LIVENESS_POLL`]
/// (10 ms), and before giving up at its timeout; [`Mutex::try_lock`] checks at once. A check
/// costs a `kill(tid, 0)` and one read of `/proc/<tid>/task/<tid>/stat` (Linux) or
/// `proc_pidinfo` (macOS), a few microseconds.
///
/// # Hostile peers
///
/// A process that can write the segment can spoil the lock (hold it forever under a live
/// thread's identity, free it, or write garbage), but what it writes cannot make another process
/// crash, write outside these 64 bytes, or wait without a timeout it asked for: every word read is
/// validated, an owner word that names no live thread (garbage, token 0 or too large, bit 30
/// set) counts as a dead owner, a header that is no longer "ready, layout 2" gives
/// [`LockError::NotRecoverable`], and every loop is bounded by the caller's timeout. One thing
/// it can do besides writing: shrink a named segment under the lock (`ftruncate`), after which
/// any access to the lost pages, the lock's included, is a `SIGBUS` in every process that maps
/// them ([`Segment`], *Peers*). A keyed segment cannot shrink.
///
/// Within this process, reach the lock's words only through the lock: an atomic of another
/// size over them (a [`Segment::atomic_u32`] inside the owner word, a second lock placed 8 bytes
/// into the first) is a data race, undefined behaviour, however harmless on the hardware.
///
/// # Unmapping
///
/// Ending the mapping (dropping the [`Segment`]) while a thread of this process holds a lock in
/// it leaves nothing of this process pointing at the freed memory, but the lock stays held in the
/// segment until that thread ends; the C ABI refuses to close such a segment (`EBUSY`).
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
    layout: AtomicU32,
    owner: AtomicU64,
    namespace: AtomicU32,
    _reserved: [AtomicU32; 11],
}

const _: () = assert!(std::mem::size_of::<Mutex>() == MUTEX_SIZE);
const _: () = assert!(std::mem::align_of::<Mutex>() == MUTEX_ALIGN);
const _: () = assert!(std::mem::offset_of!(Mutex, owner) == 8);
const _: () = assert!(std::mem::offset_of!(Mutex, namespace) == 16);

impl fmt::Debug for Mutex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Mutex")
            .field("state", &self.state.load(Ordering::Relaxed))
            .field(
                "owner",
                &format_args!("{:#x}", self.owner.load(Ordering::Relaxed)),
            )
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
    /// Acquired, but the previous owner died holding it (or another process wrote something
    /// into the lock that names no live owner): the protected data may be inconsistent and
    /// should be repaired before the lock is released.
    OwnerDied,
}

/// Who the owner word names.
enum Owner {
    Free,
    Me,
    /// Nothing a lock holds: counts as a dead owner.
    Invalid,
    Other {
        token: u32,
        stamp: u32,
    },
}

impl Mutex {
    /// Initialises the mutex at `ptr` if nobody has, and returns it.
    ///
    /// # Safety
    /// `ptr` must be aligned to [`MUTEX_ALIGN`] and valid for reads and writes of
    /// [`MUTEX_SIZE`] bytes for `'a` (other processes may write them).
    ///
    /// # Errors
    /// [`LockError::Invalid`] when the bytes are neither zero nor a lock of this layout;
    /// [`LockError::Initialising`] when another process began initialising more than 100 ms ago
    /// and has not finished.
    pub unsafe fn init<'a>(ptr: *mut u8) -> Result<(&'a Mutex, InitOutcome), LockError> {
        // SAFETY: the caller promises an aligned, valid range of MUTEX_SIZE bytes; a Mutex has
        // atomics only, so shared access from other processes is allowed.
        let mutex = unsafe { &*ptr.cast::<Mutex>() };
        match mutex.state.compare_exchange(
            UNINIT,
            INITIALISING,
            Ordering::Acquire,
            Ordering::Acquire,
        ) {
            Ok(_) => {
                mutex.owner.store(0, Ordering::Relaxed);
                mutex.layout.store(MUTEX_LAYOUT, Ordering::Relaxed);
                mutex
                    .namespace
                    .store(liveness::pid_namespace(), Ordering::Relaxed);
                mutex.state.store(READY, Ordering::Release);
                Ok((mutex, InitOutcome::Initialized))
            }
            Err(_) => {
                mutex.wait_ready(INIT_WAIT)?;
                mutex.check_namespace()?;
                Ok((mutex, InitOutcome::AlreadyInitialized))
            }
        }
    }

    /// The initialised mutex at `ptr`.
    ///
    /// # Safety
    /// `ptr` must be aligned to [`MUTEX_ALIGN`] and valid for reads and writes of
    /// [`MUTEX_SIZE`] bytes for `'a` (other processes may write them).
    ///
    /// # Errors
    /// [`LockError::Invalid`] when it is not initialised or not a lock of this layout;
    /// [`LockError::Initialising`] when another process is still initialising it after 100 ms.
    pub unsafe fn from_ptr<'a>(ptr: *mut u8) -> Result<&'a Mutex, LockError> {
        // SAFETY: as in `init`.
        let mutex = unsafe { &*ptr.cast::<Mutex>() };
        mutex.wait_ready(INIT_WAIT)?;
        mutex.check_namespace()?;
        Ok(mutex)
    }

    /// Refuses a lock set up in another pid namespace. Checked where a lock is set up or opened
    /// (the bindings do one of the two before they lock), not at each lock: the uncontended lock
    /// stays one compare-and-swap. A namespace of 0 (not known where the lock was set up, or here) is no
    /// check; so are the locks of earlier releases, which left these bytes 0.
    fn check_namespace(&self) -> Result<(), LockError> {
        let theirs = self.namespace.load(Ordering::Relaxed);
        let ours = liveness::pid_namespace();
        if theirs == 0 || ours == 0 || theirs == ours {
            return Ok(());
        }
        Err(LockError::OtherPidNamespace { theirs, ours })
    }

    /// [`Mutex::init`] at `offset` inside `segment`, with bounds and alignment checked.
    ///
    /// # Errors
    /// [`LockError::Invalid`] when `offset` is not a multiple of [`MUTEX_ALIGN`] or the mutex
    /// does not fit; otherwise as [`Mutex::init`].
    pub fn init_in(segment: &Segment, offset: usize) -> Result<(&Mutex, InitOutcome), LockError> {
        let ptr = Self::place(segment, offset)?;
        // SAFETY: in bounds and aligned (mappings are page-aligned), and tied to the segment's
        // lifetime; the memory is shared, which a Mutex allows.
        unsafe { Self::init(ptr) }
    }

    /// [`Mutex::from_ptr`] at `offset` inside `segment`, with bounds and alignment checked.
    ///
    /// # Errors
    /// [`LockError::Invalid`] when `offset` is not a multiple of [`MUTEX_ALIGN`] or the mutex
    /// does not fit; otherwise as [`Mutex::from_ptr`].
    pub fn open_in(segment: &Segment, offset: usize) -> Result<&Mutex, LockError> {
        let ptr = Self::place(segment, offset)?;
        // SAFETY: as in `init_in`.
        unsafe { Self::from_ptr(ptr) }
    }

    fn place(segment: &Segment, offset: usize) -> Result<*mut u8, LockError> {
        if offset % MUTEX_ALIGN != 0 {
            return Err(LockError::Invalid(
                "mutex offset is not a multiple of MUTEX_ALIGN",
            ));
        }
        if offset
            .checked_add(MUTEX_SIZE)
            .is_none_or(|end| end > segment.len())
        {
            return Err(LockError::Invalid("mutex does not fit inside the segment"));
        }
        // SAFETY: offset + MUTEX_SIZE <= len, so the result stays inside the mapping.
        Ok(unsafe { segment.as_ptr().add(offset) })
    }

    /// Waits, at most `limit`, while another process is initialising the lock (a few
    /// microseconds normally): a few yields first, then naps of a millisecond, so that a header
    /// a peer left "initialising" does not keep a core busy for the whole wait.
    fn wait_ready(&self, limit: Duration) -> Result<(), LockError> {
        let mut deadline = None;
        let mut rounds = 0u32;
        loop {
            match self.state.load(Ordering::Acquire) {
                READY if self.layout.load(Ordering::Relaxed) == MUTEX_LAYOUT => return Ok(()),
                READY => {
                    return Err(LockError::Invalid(
                        "bytes are a lock of another layout (an older version of this library?)",
                    ));
                }
                INITIALISING => {
                    let now = Instant::now();
                    let left = deadline
                        .get_or_insert(now + limit)
                        .saturating_duration_since(now);
                    if left.is_zero() {
                        return Err(LockError::Initialising);
                    }
                    rounds += 1;
                    if rounds < INIT_YIELDS {
                        std::thread::yield_now();
                    } else {
                        std::thread::sleep(left.min(Duration::from_millis(1)));
                    }
                }
                UNINIT => return Err(LockError::Invalid("mutex is not initialised")),
                _ => return Err(LockError::Invalid("bytes are not a mutex (bad state word)")),
            }
        }
    }

    /// Ok while the header says "ready, this layout". Otherwise: zeroed bytes are
    /// [`LockError::Invalid`], a lock being set up is waited for, at most `limit` (then
    /// [`LockError::Initialising`]), and anything else was written by another process:
    /// [`LockError::NotRecoverable`].
    #[inline]
    fn check_header(&self, limit: Duration) -> Result<(), LockError> {
        if self.header_ready() {
            return Ok(());
        }
        match self.wait_ready(limit) {
            Err(LockError::Invalid(_)) if self.state.load(Ordering::Relaxed) != UNINIT => {
                Err(LockError::NotRecoverable)
            }
            other => other,
        }
    }

    /// The header says "ready, this layout" (the fast path of every lock call).
    #[inline]
    fn header_ready(&self) -> bool {
        self.state.load(Ordering::Acquire) == READY
            && self.layout.load(Ordering::Relaxed) == MUTEX_LAYOUT
    }

    fn addr(&self) -> usize {
        std::ptr::from_ref(self) as usize
    }

    /// Whether the owner word of the lock at `addr` names `identity` (the waiters bit aside):
    /// whether that thread still holds it, as the word says.
    ///
    /// # Safety
    /// The [`MUTEX_SIZE`] bytes at `addr` must be mapped and readable during the call, and `addr`
    /// aligned to [`MUTEX_ALIGN`]. Any bytes will do: another process may write them at any
    /// time, and they are read with one atomic load.
    pub(super) unsafe fn names(addr: usize, identity: u64) -> bool {
        // SAFETY: mapped, readable and aligned (the caller's promise); an AtomicU64 may alias
        // memory that other processes write atomically.
        let owner = unsafe { &*(addr as *const Mutex) }
            .owner
            .load(Ordering::Relaxed);
        owner & !WAITERS == identity
    }

    /// The futex word: the low 32 bits of the owner word.
    fn futex_word(&self) -> *const u32 {
        let base = self.owner.as_ptr().cast::<u32>().cast_const();
        if cfg!(target_endian = "little") {
            base
        } else {
            base.wrapping_add(1)
        }
    }

    fn classify(word: u64, me: u64) -> Owner {
        if word == 0 {
            return Owner::Free;
        }
        let base = word & !WAITERS;
        if base == me {
            return Owner::Me;
        }
        let low = base as u32;
        let token = low & TOKEN_MASK as u32;
        if low != token || token == 0 || token > os::OWNER_TOKEN_MAX {
            return Owner::Invalid;
        }
        Owner::Other {
            token,
            stamp: (word >> 32) as u32,
        }
    }

    /// True when `word` names an owner that is not known to live.
    fn owner_dead(word: u64, me: u64) -> bool {
        match Self::classify(word, me) {
            Owner::Invalid => true,
            Owner::Other { token, stamp } => os::thread_liveness(token, stamp) == Liveness::Dead,
            Owner::Free | Owner::Me => false,
        }
    }

    /// Takes the lock if it is free (the uncontended path: one compare-and-swap). True on
    /// success.
    #[inline]
    fn take_free(&self, me: u64) -> bool {
        self.owner
            .compare_exchange(0, me, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
    }

    /// Takes the lock over from `word` (a dead owner's), marked "waiters" since some may be
    /// parked. True on success.
    fn take_over(&self, word: u64, me: u64) -> bool {
        self.owner
            .compare_exchange(word, me | WAITERS, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
    }

    /// Locks, waiting at most `timeout` (`None`: no limit; `Some(ZERO)`: do not wait).
    ///
    /// # Errors
    /// [`LockError::TimedOut`] when the timeout passed; [`LockError::Deadlock`] when this thread
    /// already holds it; [`LockError::NotRecoverable`] when another process overwrote the
    /// lock's header; [`LockError::TooManyHeld`]; [`LockError::Os`] when waiting failed.
    #[inline]
    pub fn lock(&self, timeout: Option<Duration>) -> Result<LockOutcome, LockError> {
        let timeout = if self.header_ready() {
            timeout
        } else {
            // A header being initialised is waited for 100 ms at most, and never past the
            // timeout, which that wait uses up as much as it took.
            let began = Instant::now();
            self.check_header(timeout.map_or(INIT_WAIT, |t| t.min(INIT_WAIT)))?;
            timeout.map(|t| t.saturating_sub(began.elapsed()))
        };
        held::acquire(encode, self.addr(), |me| {
            if self.take_free(me) {
                return Ok(LockOutcome::Acquired);
            }
            if timeout == Some(Duration::ZERO) {
                return match self.try_slow(me) {
                    Err(LockError::WouldBlock) => Err(LockError::TimedOut),
                    other => other,
                };
            }
            self.lock_slow(me, timeout)
        })
    }

    fn lock_slow(&self, me: u64, timeout: Option<Duration>) -> Result<LockOutcome, LockError> {
        // Spin a little first: a lock held for microseconds changes hands without parking.
        for _ in 0..SPINS {
            std::hint::spin_loop();
            let word = self.owner.load(Ordering::Relaxed);
            match Self::classify(word, me) {
                Owner::Free => {
                    if self.take_free(me) {
                        return Ok(LockOutcome::Acquired);
                    }
                }
                Owner::Me => return Err(LockError::Deadlock),
                Owner::Invalid => break,
                Owner::Other { .. } => {}
            }
        }
        let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
        let mut races = 0u32;
        loop {
            let word = self.owner.load(Ordering::Relaxed);
            let lost = match Self::classify(word, me) {
                Owner::Free => {
                    // Others may be parked: keep the waiters bit so that our unlock wakes one.
                    if self
                        .owner
                        .compare_exchange(0, me | WAITERS, Ordering::Acquire, Ordering::Relaxed)
                        .is_ok()
                    {
                        return Ok(LockOutcome::Acquired);
                    }
                    true
                }
                Owner::Me => return Err(LockError::Deadlock),
                Owner::Invalid => {
                    if self.take_over(word, me) {
                        return Ok(LockOutcome::OwnerDied);
                    }
                    true
                }
                Owner::Other { .. } => false,
            };
            if lost {
                // A race lost to another locker: look again at once, but at the clock too now
                // and then, or a peer writing the word as fast as it changes would keep this
                // loop from its deadline.
                races += 1;
                if races % RACES_PER_LOOK == 0 && deadline.is_some_and(|d| Instant::now() >= d) {
                    return Err(LockError::TimedOut);
                }
                continue;
            }
            let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
            if left == Some(Duration::ZERO) {
                // A last look before giving up: the owner may have died.
                if Self::owner_dead(word, me) && self.take_over(word, me) {
                    return Ok(LockOutcome::OwnerDied);
                }
                return Err(LockError::TimedOut);
            }
            if word & WAITERS == 0
                && self
                    .owner
                    .compare_exchange(word, word | WAITERS, Ordering::Relaxed, Ordering::Relaxed)
                    .is_err()
            {
                continue;
            }
            let slice = left.map_or(LIVENESS_POLL, |left| left.min(LIVENESS_POLL));
            // SAFETY: the futex word is inside this lock, which is mapped while `self` lives.
            // Only the kernel reads it here.
            let parked =
                unsafe { os::futex_wait(self.futex_word(), (word | WAITERS) as u32, Some(slice)) }
                    .map_err(LockError::Os)?;
            if parked == RawWait::TimedOut {
                let now = self.owner.load(Ordering::Relaxed);
                if Self::owner_dead(now, me) && self.take_over(now, me) {
                    return Ok(LockOutcome::OwnerDied);
                }
            }
        }
    }

    /// Locks if free, or if its owner is dead, without waiting.
    ///
    /// # Errors
    /// [`LockError::WouldBlock`] when another live thread or process holds it;
    /// [`LockError::Deadlock`] when this thread does; [`LockError::NotRecoverable`];
    /// [`LockError::TooManyHeld`].
    #[inline]
    pub fn try_lock(&self) -> Result<LockOutcome, LockError> {
        self.check_header(Duration::ZERO)?;
        held::acquire(encode, self.addr(), |me| {
            if self.take_free(me) {
                return Ok(LockOutcome::Acquired);
            }
            self.try_slow(me)
        })
    }

    fn try_slow(&self, me: u64) -> Result<LockOutcome, LockError> {
        // Bounded: another process flipping the word cannot keep this call busy.
        for _ in 0..64 {
            let word = self.owner.load(Ordering::Relaxed);
            match Self::classify(word, me) {
                Owner::Free => {
                    if self.take_free(me) {
                        return Ok(LockOutcome::Acquired);
                    }
                }
                Owner::Me => return Err(LockError::Deadlock),
                Owner::Invalid => {
                    if self.take_over(word, me) {
                        return Ok(LockOutcome::OwnerDied);
                    }
                }
                Owner::Other { token, stamp } => {
                    if os::thread_liveness(token, stamp) != Liveness::Dead {
                        return Err(LockError::WouldBlock);
                    }
                    if self.take_over(word, me) {
                        return Ok(LockOutcome::OwnerDied);
                    }
                }
            }
        }
        Err(LockError::WouldBlock)
    }

    /// Unlocks, waking one parked waiter if any may be parked.
    ///
    /// # Errors
    /// [`LockError::NotOwner`] when this thread does not hold it (including when another
    /// process overwrote the owner word meanwhile).
    #[inline]
    pub fn unlock(&self) -> Result<(), LockError> {
        // Whatever the word says, this thread stops counting the lock as held.
        let me = held::release(self.addr());
        let mut word = self.owner.load(Ordering::Relaxed);
        // From this thread's word to 0, never from another: a word that changed since the look
        // (another process wrote it, and a locker may have taken the lock over from that) is not
        // this thread's to clear. Only the waiters bit may change under a holder; a peer flipping
        // it for ever gets the plain swap after a bounded number of tries.
        let mut tries = 0;
        let prev = loop {
            if me == 0 || word & !WAITERS != me {
                return Err(LockError::NotOwner);
            }
            tries += 1;
            if tries > RACES_PER_LOOK {
                break self.owner.swap(0, Ordering::Release);
            }
            match self
                .owner
                .compare_exchange(word, 0, Ordering::Release, Ordering::Relaxed)
            {
                Ok(prev) => break prev,
                Err(now) => word = now,
            }
        };
        if prev & WAITERS != 0 {
            // SAFETY: the futex word is inside this lock, mapped while `self` lives; a wake
            // only uses the address to find waiters. It cannot fail for a mapped, aligned word;
            // the lock is free either way, so an error would have nobody to tell.
            let _ = unsafe { os::futex_wake(self.futex_word(), 1) };
        }
        Ok(())
    }

    /// [`Mutex::lock`], returning a guard that unlocks when dropped.
    ///
    /// # Errors
    /// As [`Mutex::lock`].
    pub fn guard(&self, timeout: Option<Duration>) -> Result<MutexGuard<'_>, LockError> {
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
    pub fn try_guard(&self) -> Result<MutexGuard<'_>, LockError> {
        let outcome = self.try_lock()?;
        Ok(MutexGuard {
            mutex: self,
            outcome,
            _not_send: PhantomData,
        })
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
        // This thread holds the lock (the guard is not Send), so unlock fails only if another
        // process overwrote the lock meanwhile; a destructor has nobody to tell.
        let _ = self.mutex.unlock();
    }
}
