//! The process-id lock: [`super::Mutex`]'s native lock where the OS has no robust
//! process-shared pthread mutex (macOS). Linux builds it only for its tests, which run the same
//! code over Linux's futex.
//!
//! The lock word holds 0 when free, else the owner's process id with bit 31 set when some
//! process may be parked waiting ("contended", as in Drepper's "Futexes Are Tricky" mutex 3). A
//! second word holds an id of the owning thread inside its process, so that two threads of one
//! process exclude each other and only the owning thread may unlock.
//!
//! A dead owner is found by `kill(pid, 0)` failing with `ESRCH`: when a locker finds the lock
//! held, and every [`LIVENESS_POLL`] while it waits (a dead process wakes nobody). The first
//! waiter to swap its own id over the dead one's wins, and is told the owner died.

use std::io;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::os;

/// Bytes the lock occupies.
pub const SIZE: usize = std::mem::size_of::<Raw>();
/// Alignment it needs.
pub const ALIGN: usize = std::mem::align_of::<Raw>();

/// Bit 31 of the lock word: a waiter may be parked, so unlock must wake one.
const CONTENDED: u32 = 1 << 31;
/// The owner's process id in the lock word.
const PID_MASK: u32 = !CONTENDED;
/// How often a parked waiter wakes to check that the owner still lives.
const LIVENESS_POLL: Duration = Duration::from_millis(50);

#[repr(C)]
struct Raw {
    word: AtomicU32,
    _pad: AtomicU32,
    /// The owning thread's [`thread_id`], 0 while free. Only compared by threads of the owning
    /// process (the process id in `word` is checked first).
    owner_thread: AtomicU64,
}

const _: () = assert!(SIZE == 16 && ALIGN == 8);

/// A number that tells this thread apart from every other live thread of this process: the
/// address of a thread-local. (After a fork, the child's thread has its parent's address but
/// another process id, and the two are always compared together.)
fn thread_id() -> u64 {
    thread_local! {
        static ANCHOR: u8 = const { 0 };
    }
    ANCHOR.with(|anchor| std::ptr::from_ref(anchor) as usize as u64)
}

/// # Safety
/// `p` must be aligned to [`ALIGN`] and valid for [`SIZE`] bytes for `'a`.
unsafe fn raw<'a>(p: *mut u8) -> &'a Raw {
    // SAFETY: as the caller promises; Raw has atomics only, so shared access is allowed.
    unsafe { &*p.cast::<Raw>() }
}

fn errno(code: i32) -> io::Error {
    io::Error::from_raw_os_error(code)
}

/// Writes a free lock at `p`.
///
/// # Safety
/// `p` must be aligned to [`ALIGN`] and valid for [`SIZE`] bytes, unused by anyone else now.
///
/// # Errors
/// Never fails; `io::Result` to match the other native locks.
pub unsafe fn init(p: *mut u8) -> io::Result<()> {
    // SAFETY: forwarded from the caller.
    let raw = unsafe { raw(p) };
    raw.owner_thread.store(0, Ordering::Relaxed);
    raw.word.store(0, Ordering::Release);
    Ok(())
}

/// Locks, waiting at most `timeout`. `Ok(true)` when the previous owner died holding it.
///
/// # Safety
/// `p` must point to a lock made by [`init`], valid for the whole call.
///
/// # Errors
/// `ETIMEDOUT`, `EDEADLK` (this thread holds it), or errors of the wait call.
pub unsafe fn lock(p: *mut u8, timeout: Option<Duration>) -> io::Result<bool> {
    // SAFETY: forwarded from the caller.
    let raw = unsafe { raw(p) };
    let me = os::current_pid();
    if raw
        .word
        .compare_exchange(0, me, Ordering::Acquire, Ordering::Relaxed)
        .is_ok()
    {
        raw.owner_thread.store(thread_id(), Ordering::Relaxed);
        return Ok(false);
    }
    raw.lock_slow(me, timeout)
}

impl Raw {
    /// Takes the lock from `cur` (free, or a dead owner's), marked contended since others may be
    /// parked. True on success.
    fn take(&self, cur: u32, me: u32) -> bool {
        let won = self
            .word
            .compare_exchange(cur, me | CONTENDED, Ordering::Acquire, Ordering::Relaxed)
            .is_ok();
        if won {
            self.owner_thread.store(thread_id(), Ordering::Relaxed);
        }
        won
    }

    fn lock_slow(&self, me: u32, timeout: Option<Duration>) -> io::Result<bool> {
        let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
        let tid = thread_id();
        loop {
            let cur = self.word.load(Ordering::Relaxed);
            if cur == 0 {
                if self.take(0, me) {
                    return Ok(false);
                }
                continue;
            }
            let owner = cur & PID_MASK;
            if owner == me {
                if self.owner_thread.load(Ordering::Relaxed) == tid {
                    return Err(errno(libc::EDEADLK));
                }
            } else if !os::process_alive(owner) {
                if self.take(cur, me) {
                    return Ok(true);
                }
                continue;
            }
            if cur & CONTENDED == 0
                && self
                    .word
                    .compare_exchange(cur, cur | CONTENDED, Ordering::Relaxed, Ordering::Relaxed)
                    .is_err()
            {
                continue;
            }
            let slice = match (timeout, deadline) {
                (Some(_), Some(deadline)) => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return Err(errno(libc::ETIMEDOUT));
                    }
                    left.min(LIVENESS_POLL)
                }
                // No limit, or one past Instant's range.
                _ => LIVENESS_POLL,
            };
            // SAFETY: the word is inside the caller's valid range for the whole call.
            unsafe { os::futex_wait(self.word.as_ptr(), cur | CONTENDED, Some(slice)) }?;
        }
    }
}

/// Locks if free (or if its owner is dead), without waiting.
///
/// # Safety
/// As [`lock`].
///
/// # Errors
/// `EBUSY` when another live thread or process holds it; `EDEADLK` when this thread does.
pub unsafe fn try_lock(p: *mut u8) -> io::Result<bool> {
    // SAFETY: forwarded from the caller.
    let raw = unsafe { raw(p) };
    let me = os::current_pid();
    loop {
        let cur = raw.word.load(Ordering::Relaxed);
        if cur == 0 {
            if raw
                .word
                .compare_exchange(0, me, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
            {
                raw.owner_thread.store(thread_id(), Ordering::Relaxed);
                return Ok(false);
            }
            continue;
        }
        let owner = cur & PID_MASK;
        if owner == me {
            if raw.owner_thread.load(Ordering::Relaxed) == thread_id() {
                return Err(errno(libc::EDEADLK));
            }
        } else if !os::process_alive(owner) {
            if raw.take(cur, me) {
                return Ok(true);
            }
            continue;
        }
        return Err(errno(libc::EBUSY));
    }
}

/// Unlocks, waking one parked waiter if any may be parked.
///
/// # Safety
/// As [`lock`].
///
/// # Errors
/// `EPERM` when this thread does not hold it.
pub unsafe fn unlock(p: *mut u8) -> io::Result<()> {
    // SAFETY: forwarded from the caller.
    let raw = unsafe { raw(p) };
    let cur = raw.word.load(Ordering::Relaxed);
    if cur & PID_MASK != os::current_pid()
        || raw.owner_thread.load(Ordering::Relaxed) != thread_id()
    {
        return Err(errno(libc::EPERM));
    }
    raw.owner_thread.store(0, Ordering::Relaxed);
    // Only the owner clears the word; others only add CONTENDED to it meanwhile.
    let prev = raw.word.swap(0, Ordering::Release);
    if prev & CONTENDED != 0 {
        // SAFETY: the word is inside the caller's valid range.
        unsafe { os::futex_wake(raw.word.as_ptr(), 1) }?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    /// A lock (and a counter and a flag) in anonymous shared memory, which a forked child
    /// shares with the test.
    struct Shared {
        ptr: *mut u8,
        len: usize,
    }

    // SAFETY: the mapping is plain shared memory used through atomics only.
    unsafe impl Send for Shared {}
    // SAFETY: as above.
    unsafe impl Sync for Shared {}

    impl Shared {
        fn new() -> Self {
            let len = 4096;
            // SAFETY: an anonymous shared mapping; the result is checked.
            let ptr = unsafe {
                libc::mmap(
                    std::ptr::null_mut(),
                    len,
                    libc::PROT_READ | libc::PROT_WRITE,
                    libc::MAP_SHARED | libc::MAP_ANONYMOUS,
                    -1,
                    0,
                )
            };
            assert_ne!(ptr, libc::MAP_FAILED);
            let shared = Self {
                ptr: ptr.cast(),
                len,
            };
            // SAFETY: fresh, aligned, unused.
            unsafe { init(shared.ptr) }.unwrap();
            shared
        }
        fn counter(&self) -> *mut u64 {
            // SAFETY: offset 64 is inside the page.
            unsafe { self.ptr.add(64).cast() }
        }
    }

    impl Drop for Shared {
        fn drop(&mut self) {
            // SAFETY: exactly the mapping made in `new`.
            unsafe { libc::munmap(self.ptr.cast(), self.len) };
        }
    }

    fn code(err: io::Error) -> i32 {
        err.raw_os_error().unwrap()
    }

    #[test]
    fn lock_unlock_and_error_checks() {
        let s = Shared::new();
        // SAFETY: (all calls below) `s.ptr` is a lock made by init, mapped for the test.
        unsafe {
            assert_eq!(code(unlock(s.ptr).unwrap_err()), libc::EPERM);
            assert!(!lock(s.ptr, None).unwrap());
            assert_eq!(code(lock(s.ptr, None).unwrap_err()), libc::EDEADLK);
            assert_eq!(code(try_lock(s.ptr).unwrap_err()), libc::EDEADLK);
            let p = s.ptr as usize;
            std::thread::spawn(move || {
                let p = p as *mut u8;
                assert_eq!(code(unlock(p).unwrap_err()), libc::EPERM);
                assert_eq!(code(try_lock(p).unwrap_err()), libc::EBUSY);
                let start = Instant::now();
                let err = lock(p, Some(Duration::from_millis(120))).unwrap_err();
                assert_eq!(code(err), libc::ETIMEDOUT);
                assert!(start.elapsed() >= Duration::from_millis(120));
            })
            .join()
            .unwrap();
            unlock(s.ptr).unwrap();
            assert!(!try_lock(s.ptr).unwrap());
            unlock(s.ptr).unwrap();
        }
    }

    #[test]
    fn threads_exclude_each_other() {
        let s = Arc::new(Shared::new());
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let s = Arc::clone(&s);
                std::thread::spawn(move || {
                    for _ in 0..20_000 {
                        // SAFETY: a valid lock; the counter is only touched under it.
                        unsafe {
                            assert!(!lock(s.ptr, None).unwrap());
                            let c = s.counter();
                            c.write(c.read() + 1);
                            unlock(s.ptr).unwrap();
                        }
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        // SAFETY: all threads have finished.
        assert_eq!(unsafe { s.counter().read() }, 80_000);
    }

    /// Forks a child that takes the lock, waits `hold`, then `_exit`s without unlocking.
    /// Returns its pid. The child runs only atomics, getpid, futex calls and `_exit`.
    fn fork_holder(s: &Shared, hold: Duration) -> libc::pid_t {
        // SAFETY: offset 128 is inside the page and 4-byte aligned; only atomics touch it.
        let flag = unsafe { AtomicU32::from_ptr(s.ptr.add(128).cast()) };
        flag.store(0, Ordering::SeqCst);
        // SAFETY: the child below calls only async-signal-safe operations before _exit.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0);
        if pid == 0 {
            // SAFETY: the lock is valid in the child's copy of the shared mapping.
            let ok = unsafe { lock(s.ptr, None) }.is_ok();
            flag.store(1, Ordering::SeqCst);
            let ns = libc::timespec {
                tv_sec: hold.as_secs() as libc::time_t,
                tv_nsec: hold.subsec_nanos() as libc::c_long,
            };
            // SAFETY: nanosleep with a valid timespec; _exit ends the child without unwinding.
            unsafe {
                libc::nanosleep(&ns, std::ptr::null_mut());
                libc::_exit(if ok { 0 } else { 1 });
            }
        }
        let start = Instant::now();
        while flag.load(Ordering::SeqCst) == 0 {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "child never locked"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
        pid
    }

    fn reap(pid: libc::pid_t) -> i32 {
        let mut status = 0;
        // SAFETY: our own child; `status` is writable.
        assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
        status
    }

    #[test]
    fn dead_owner_is_detected_on_lock_and_try_lock() {
        let s = Shared::new();
        let pid = fork_holder(&s, Duration::ZERO);
        assert_eq!(reap(pid), 0);
        // SAFETY: a valid lock.
        unsafe {
            assert!(
                try_lock(s.ptr).unwrap(),
                "try_lock must report the dead owner"
            );
            unlock(s.ptr).unwrap();
            assert!(!lock(s.ptr, None).unwrap());
            unlock(s.ptr).unwrap();
        }
        let pid = fork_holder(&s, Duration::ZERO);
        assert_eq!(reap(pid), 0);
        // SAFETY: a valid lock.
        unsafe {
            assert!(lock(s.ptr, Some(Duration::from_secs(5))).unwrap());
            unlock(s.ptr).unwrap();
        }
    }

    #[test]
    fn parked_waiter_notices_owner_death() {
        let s = Shared::new();
        let pid = fork_holder(&s, Duration::from_millis(150));
        // Reap on another thread so that the dead child stops being a zombie.
        let reaper = std::thread::spawn(move || reap(pid));
        // SAFETY: a valid lock.
        let died = unsafe { lock(s.ptr, Some(Duration::from_secs(10))) }.unwrap();
        assert!(died);
        assert_eq!(reaper.join().unwrap(), 0);
        // SAFETY: a valid lock, held by this thread.
        unsafe { unlock(s.ptr) }.unwrap();
    }
}
