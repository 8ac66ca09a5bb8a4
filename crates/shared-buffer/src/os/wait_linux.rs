//! Linux: `futex` wait and wake on 32-bit words shared between processes, and the robust,
//! process-shared `pthread_mutex_t` behind [`crate::sync::Mutex`].
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

/// The robust, process-shared, error-checking `pthread_mutex_t` that [`crate::sync::Mutex`]
/// places in shared memory.
///
/// - `PTHREAD_PROCESS_SHARED`: its futex is a shared one, usable from every process mapping it.
/// - `PTHREAD_MUTEX_ROBUST`: glibc lists every held robust mutex in the thread's robust list,
///   which the kernel walks when the thread dies (including `SIGKILL`); it marks each held mutex
///   `FUTEX_OWNER_DIED` and wakes a waiter, whose lock then returns `EOWNERDEAD`.
/// - `PTHREAD_MUTEX_ERRORCHECK`: relocking by the owner is `EDEADLK` and unlocking by anyone else
///   `EPERM`, instead of a deadlock or silent corruption.
///
/// Uncontended lock and unlock are a compare-and-swap in user space (plus list bookkeeping), no
/// system call. Ownership belongs to the locking *thread*.
pub mod robust_mutex {
    use std::io;
    use std::time::Duration;

    /// Bytes the native mutex occupies.
    pub const SIZE: usize = std::mem::size_of::<libc::pthread_mutex_t>();
    /// Alignment the native mutex needs.
    pub const ALIGN: usize = std::mem::align_of::<libc::pthread_mutex_t>();

    // glibc 2.30+. Not in the libc crate; a lock with a deadline on CLOCK_MONOTONIC is immune to
    // wall-clock jumps, which pthread_mutex_timedlock (CLOCK_REALTIME) is not.
    #[cfg(target_env = "gnu")]
    unsafe extern "C" {
        fn pthread_mutex_clocklock(
            mutex: *mut libc::pthread_mutex_t,
            clockid: libc::clockid_t,
            abstime: *const libc::timespec,
        ) -> libc::c_int;
    }

    fn rc(code: libc::c_int) -> io::Result<()> {
        if code == 0 {
            Ok(())
        } else {
            Err(io::Error::from_raw_os_error(code))
        }
    }

    /// Writes a fresh mutex at `p`.
    ///
    /// # Safety
    /// `p` must be valid for writes of [`SIZE`] bytes, aligned to [`ALIGN`], and nobody may use
    /// the mutex until this returns.
    ///
    /// # Errors
    /// Whatever `pthread_mutexattr_*` or `pthread_mutex_init` report (`ENOTSUP` where robust or
    /// shared mutexes are missing).
    pub unsafe fn init(p: *mut u8) -> io::Result<()> {
        let mut attr = std::mem::MaybeUninit::<libc::pthread_mutexattr_t>::uninit();
        // SAFETY: pthread_mutexattr_init initialises the attribute object it is given.
        rc(unsafe { libc::pthread_mutexattr_init(attr.as_mut_ptr()) })?;
        let attr_ptr = attr.as_mut_ptr();
        // SAFETY: `attr_ptr` was initialised above and is destroyed exactly once below; `p` is
        // valid and aligned for a pthread_mutex_t, as the caller promises.
        let result = unsafe {
            rc(libc::pthread_mutexattr_settype(
                attr_ptr,
                libc::PTHREAD_MUTEX_ERRORCHECK,
            ))
            .and_then(|()| {
                rc(libc::pthread_mutexattr_setpshared(
                    attr_ptr,
                    libc::PTHREAD_PROCESS_SHARED,
                ))
            })
            .and_then(|()| {
                rc(libc::pthread_mutexattr_setrobust(
                    attr_ptr,
                    libc::PTHREAD_MUTEX_ROBUST,
                ))
            })
            .and_then(|()| rc(libc::pthread_mutex_init(p.cast(), attr_ptr)))
        };
        // SAFETY: initialised above, destroyed once; a mutex does not keep its attributes.
        unsafe { libc::pthread_mutexattr_destroy(attr_ptr) };
        result
    }

    /// Turns a lock result into "acquired" (`false`) or "acquired, previous owner died"
    /// (`true`), making the mutex consistent again in the second case.
    ///
    /// # Safety
    /// `m` must be an initialised mutex; when `code` is `EOWNERDEAD` this thread holds it.
    unsafe fn finish(m: *mut libc::pthread_mutex_t, code: libc::c_int) -> io::Result<bool> {
        match code {
            0 => Ok(false),
            libc::EOWNERDEAD => {
                // We hold the lock, but it stays "inconsistent" (and becomes unusable forever
                // after our unlock) until marked consistent. The caller is told the owner died
                // and repairs the data while holding it.
                // SAFETY: this thread holds `m` (EOWNERDEAD means the lock was taken).
                let code = unsafe { libc::pthread_mutex_consistent(m) };
                if code != 0 {
                    // SAFETY: as above; release what we cannot hand out.
                    unsafe { libc::pthread_mutex_unlock(m) };
                    return Err(io::Error::from_raw_os_error(code));
                }
                Ok(true)
            }
            code => Err(io::Error::from_raw_os_error(code)),
        }
    }

    /// `now + timeout` on `clock`, saturating.
    fn deadline(clock: libc::clockid_t, timeout: Duration) -> libc::timespec {
        let mut now = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: `now` is a valid, writable timespec; the clocks used here always exist.
        unsafe { libc::clock_gettime(clock, &mut now) };
        let secs = libc::time_t::try_from(timeout.as_secs()).unwrap_or(libc::time_t::MAX);
        let mut sec = now.tv_sec.saturating_add(secs);
        let mut nsec = now.tv_nsec + timeout.subsec_nanos() as libc::c_long;
        if nsec >= 1_000_000_000 {
            nsec -= 1_000_000_000;
            sec = sec.saturating_add(1);
        }
        libc::timespec {
            tv_sec: sec,
            tv_nsec: nsec,
        }
    }

    /// Locks, waiting at most `timeout` (`None`: no limit). `Ok(true)` when the previous owner
    /// died holding it.
    ///
    /// # Safety
    /// `p` must point to a mutex made by [`init`], valid while the call runs.
    ///
    /// # Errors
    /// `ETIMEDOUT`, `EDEADLK` (this thread holds it), `ENOTRECOVERABLE`, `EINVAL`.
    pub unsafe fn lock(p: *mut u8, timeout: Option<Duration>) -> io::Result<bool> {
        let m = p.cast::<libc::pthread_mutex_t>();
        let code = match timeout {
            // SAFETY: `m` is an initialised mutex, as the caller promises.
            None => unsafe { libc::pthread_mutex_lock(m) },
            Some(timeout) => {
                #[cfg(target_env = "gnu")]
                {
                    let at = deadline(libc::CLOCK_MONOTONIC, timeout);
                    // SAFETY: as above; `at` outlives the call.
                    unsafe { pthread_mutex_clocklock(m, libc::CLOCK_MONOTONIC, &at) }
                }
                #[cfg(not(target_env = "gnu"))]
                {
                    let at = deadline(libc::CLOCK_REALTIME, timeout);
                    // SAFETY: as above; `at` outlives the call.
                    unsafe { libc::pthread_mutex_timedlock(m, &at) }
                }
            }
        };
        // SAFETY: `m` is initialised; on EOWNERDEAD this thread holds it.
        unsafe { finish(m, code) }
    }

    /// Locks if free, at once. `Ok(true)` when the previous owner died holding it.
    ///
    /// # Safety
    /// As [`lock`].
    ///
    /// # Errors
    /// `EBUSY` when another thread holds it, `EDEADLK` when this thread does (glibc's robust
    /// error-checking trylock), `ENOTRECOVERABLE`, `EINVAL`.
    pub unsafe fn try_lock(p: *mut u8) -> io::Result<bool> {
        let m = p.cast::<libc::pthread_mutex_t>();
        // SAFETY: `m` is an initialised mutex, as the caller promises.
        let code = unsafe { libc::pthread_mutex_trylock(m) };
        // SAFETY: as above; on EOWNERDEAD this thread holds it.
        unsafe { finish(m, code) }
    }

    /// Unlocks.
    ///
    /// # Safety
    /// As [`lock`].
    ///
    /// # Errors
    /// `EPERM` when this thread does not hold it.
    pub unsafe fn unlock(p: *mut u8) -> io::Result<()> {
        // SAFETY: `p` is an initialised mutex, as the caller promises; the error-checking type
        // makes an unlock by a non-owner EPERM rather than undefined behaviour.
        rc(unsafe { libc::pthread_mutex_unlock(p.cast()) })
    }
}
