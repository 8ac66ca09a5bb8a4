//! The async wait service: a wait that returns at once and reports its end later, from a native
//! thread, through a completion.
//!
//! Neither runtime's FFI can park a call on a thread of its own without cost: Bun's FFI has no
//! calls off its JavaScript thread, and Deno's `nonblocking` calls occupy a thread of its small
//! blocking pool each, so a few dozen idle waits starve its file I/O. Both runtimes therefore
//! register waits here and get a thread-safe callback when each ends.
//!
//! # Design
//!
//! Linux 5.16 and later: **groups**. One native thread sleeps on up to 127 waits at once with
//! `futex_waitv`, plus one private control word that this process bumps to add or cancel a wait.
//! A group watches each word at most once, so that a notify of `n` wakes `n` threads and ends
//! exactly `n` waits, as with one thread per wait: waits on distinct words share threads (2,000
//! of them take 16 threads), waits on one word take one thread each. When the call returns, the
//! thread completes the wait it was woken for and parks again on the rest; a word that changed
//! meanwhile makes the kernel refuse to park, and then each word is checked in the kernel (a
//! changed one completes as woken). A group whose waits all ended exits after 30 s without work;
//! one is kept.
//!
//! Elsewhere (macOS, older Linux): a **pool** of threads, one parked per pending wait, reused;
//! idle threads beyond one exit after 30 s. At most [`POOL_MAX_WAITS`] waits pend there.
//!
//! Either way a pending wait is in one registry, so that [`cancel_waits`] can end every wait on
//! a range of addresses (a segment being closed) at once.
//!
//! Semantics: see [`wait_async`].

use std::collections::{BTreeMap, VecDeque};
use std::io;
use std::ops::Bound;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use super::{WaitOutcome, wait_kernel, wait_raw};

/// The most waits that may be pending at once; one more is `EAGAIN`.
pub const MAX_ASYNC_WAITS: usize = 16_384;

/// The most waits pending at once where each takes a thread (no `futex_waitv`).
pub const POOL_MAX_WAITS: usize = 4096;

/// Threads beyond the first exit after this long without work.
const IDLE_EXIT: Duration = Duration::from_secs(30);

/// Stack of a service thread: it only waits and runs completions (for the runtimes, a
/// thread-safe callback, which only queues a task for the JavaScript thread).
const STACK_SIZE: usize = 256 * 1024;

/// How [`wait_async`] began.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AsyncStart {
    /// Registered: the completion will run exactly once.
    Pending,
    /// The word did not hold the expected value; nothing was registered.
    NotEqual,
    /// The timeout was zero and the word held the expected value; nothing was registered.
    TimedOut,
}

/// A snapshot of the service, for tests and diagnostics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ServiceStats {
    /// Service threads alive now.
    pub threads: usize,
    /// Of those, how many have no wait to watch.
    pub idle: usize,
    /// Waits registered and not yet completed.
    pub pending: usize,
    /// Service threads spawned since the process started.
    pub spawned: u64,
    /// How many waits one thread watches: 127 with `futex_waitv`, else 1.
    pub per_thread: usize,
}

type Completion = Box<dyn FnOnce(io::Result<WaitOutcome>) + Send>;

/// One pending wait.
struct Entry {
    serial: u64,
    /// The word's address (an integer, so that an Entry is Send; only the kernel reads it).
    addr: usize,
    expected: u32,
    /// `None`: no limit.
    deadline: Option<Instant>,
    /// Taken by whoever completes the wait first: the service thread, or [`cancel_waits`].
    done: Mutex<Option<Completion>>,
    /// Watched by a pool thread of its own (else by a group).
    pooled: bool,
    /// Who registered it ([`wait_async_owned`]; 0: nobody in particular), for [`cancel_owned`].
    owner: u64,
}

impl Entry {
    /// Runs the completion unless it already ran; true if this call ran it.
    fn complete(&self, result: io::Result<WaitOutcome>) -> bool {
        let Some(done) = self.take() else {
            return false;
        };
        call(done, result);
        true
    }

    /// Ends the wait unless it ended already, and hands back its completion, not yet called.
    fn take(&self) -> Option<Completion> {
        let done = lock(&self.done).take()?;
        lock(&REGISTRY).pending.remove(&self.key());
        Some(done)
    }

    /// Its key in [`Registry::pending`].
    fn key(&self) -> (usize, u64) {
        (self.addr, self.serial)
    }

    fn finished(&self) -> bool {
        lock(&self.done).is_none()
    }

    /// Time left until the deadline (`None`: no limit).
    fn left(&self, now: Instant) -> Option<Duration> {
        self.deadline.map(|d| d.saturating_duration_since(now))
    }
}

/// Every pending wait, and the service's counters.
struct Registry {
    /// By address, then serial number: [`cancel_waits`] looks up a range.
    pending: BTreeMap<(usize, u64), Arc<Entry>>,
    next: u64,
    spawned: u64,
}

static REGISTRY: Mutex<Registry> = Mutex::new(Registry {
    pending: BTreeMap::new(),
    next: 0,
    spawned: 0,
});

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Completions run outside every lock and each update is a few field changes, so a poisoned
    // lock (impossible short of a bug here) still holds consistent data.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn spawn(name: &str, body: impl FnOnce() + Send + 'static) -> io::Result<()> {
    std::thread::Builder::new()
        .name(name.into())
        .stack_size(STACK_SIZE)
        .spawn(body)
        .map_err(|_| io::Error::from_raw_os_error(libc::EAGAIN))?;
    lock(&REGISTRY).spawned += 1;
    Ok(())
}

/// The service's current state.
pub fn service_stats() -> ServiceStats {
    let (pending, spawned) = {
        let r = lock(&REGISTRY);
        (r.pending.len(), r.spawned)
    };
    let groups = use_groups();
    let (threads, idle) = if groups {
        groups::counts()
    } else {
        pool::counts()
    };
    ServiceStats {
        threads,
        idle,
        pending,
        spawned,
        per_thread: if groups { groups::PER_GROUP } else { 1 },
    }
}

/// Registers a wait for the word at `addr` to stop holding `expected` (or to be notified), for
/// at most `timeout` (`None`: no limit), and returns at once.
///
/// First the word is checked (on Linux the kernel compares it, so a stale address gives
/// `EFAULT`, not a crash): if it does not hold `expected` the result is [`AsyncStart::NotEqual`]
/// at once, and a zero timeout gives [`AsyncStart::TimedOut`] at once; `done` never runs in
/// either case, as with `Atomics.waitAsync`. Otherwise the wait is registered
/// ([`AsyncStart::Pending`]) and `done` runs exactly once, on a service thread, with
/// [`WaitOutcome::Woken`] (notified; spuriously woken; or the word changed after registration),
/// [`WaitOutcome::TimedOut`] (the deadline, counted from this call, passed), or an error:
/// `EBADF` from [`cancel_waits`] or [`cancel_owned`] (on their caller's thread), or from the drop
/// of the [`crate::Segment`] that maps the word (on a thread started for it); never with
/// [`WaitOutcome::NotEqual`].
///
/// With `futex_waitv` (Linux 5.16+) one thread watches many waits and re-arms them now and then
/// (when another wait of its group ends or begins). A notify that lands in that moment finds
/// no waiter there: if it changed the word, the wait still ends (the change is seen on
/// re-arming) but the notify's count leaves it out; if it did not change the word, the wait
/// goes on. Change the word, then notify, as every correct use of wait/notify does, and no
/// wake-up is lost; set `SHARED_BUFFER_THREAD_PER_WAIT=1` for exact counts at a thread per wait.
///
/// A process that forks while the service has threads must not use it in the child (fork and
/// exec is fine).
///
/// # Safety
/// `addr` must be 4-byte aligned and point into memory this process maps. On Linux only the
/// kernel reads the word, now and later on the service thread: if the memory is unmapped
/// meanwhile the wait ends with `EFAULT` (or keeps waiting on the shared page until notified or
/// timed out), never with undefined behaviour; dropping a [`crate::Segment`] ends the waits on
/// its memory with `EBADF` before it unmaps. On other platforms the word is read in user space
/// during this call, so it must be mapped now; the service thread again leaves it to the kernel.
///
/// # Errors
/// `EAGAIN` when [`MAX_ASYNC_WAITS`] (or, without `futex_waitv`, [`POOL_MAX_WAITS`]) waits are
/// pending or no thread could be spawned; errors of the first check (`EFAULT`, `EINVAL`,
/// `Unsupported`).
pub unsafe fn wait_async<F>(
    addr: *const u32,
    expected: u32,
    timeout: Option<Duration>,
    done: F,
) -> io::Result<AsyncStart>
where
    F: FnOnce(io::Result<WaitOutcome>) + Send + 'static,
{
    // SAFETY: forwarded from the caller.
    unsafe { wait_async_owned(addr, expected, timeout, 0, done) }
}

/// [`wait_async`] on behalf of `owner` (0: nobody in particular): [`cancel_owned`] ends every
/// wait of an owner at once, as an environment that goes away (a terminated Worker) must, or its
/// waits would stay registered, taking wake-ups from live waiters and room in the service, and
/// complete into nothing.
///
/// # Safety
/// As [`wait_async`].
///
/// # Errors
/// As [`wait_async`].
pub unsafe fn wait_async_owned<F>(
    addr: *const u32,
    expected: u32,
    timeout: Option<Duration>,
    owner: u64,
    done: F,
) -> io::Result<AsyncStart>
where
    F: FnOnce(io::Result<WaitOutcome>) + Send + 'static,
{
    // SAFETY: forwarded from the caller. A zero timeout only compares (in the kernel on Linux).
    if unsafe { wait_raw(addr, expected, Some(Duration::ZERO)) }? == WaitOutcome::NotEqual {
        return Ok(AsyncStart::NotEqual);
    }
    if timeout == Some(Duration::ZERO) {
        return Ok(AsyncStart::TimedOut);
    }
    register(addr, expected, timeout, Box::new(done), use_groups(), owner)
}

/// Registers a wait that passed its first check, with the groups or with the pool.
fn register(
    addr: *const u32,
    expected: u32,
    timeout: Option<Duration>,
    done: Completion,
    groups: bool,
    owner: u64,
) -> io::Result<AsyncStart> {
    let entry = {
        let mut registry = lock(&REGISTRY);
        let limit = if groups {
            MAX_ASYNC_WAITS
        } else {
            POOL_MAX_WAITS
        };
        if registry.pending.len() >= limit {
            return Err(io::Error::from_raw_os_error(libc::EAGAIN));
        }
        registry.next += 1;
        let entry = Arc::new(Entry {
            serial: registry.next,
            addr: addr as usize,
            expected,
            deadline: timeout.and_then(|t| Instant::now().checked_add(t)),
            done: Mutex::new(Some(done)),
            pooled: !groups,
            owner,
        });
        registry.pending.insert(entry.key(), Arc::clone(&entry));
        entry
    };
    let added = if groups {
        groups::add(Arc::clone(&entry))
    } else {
        pool::add(Arc::clone(&entry))
    };
    if let Err(err) = added {
        // Never handed to a thread: unregister without running the completion.
        drop(entry.take());
        return Err(err);
    }
    Ok(AsyncStart::Pending)
}

/// Calls a completion. A panicking one must not take the calling thread (a service thread and
/// its bookkeeping, say) with it.
fn call(done: Completion, result: io::Result<WaitOutcome>) {
    let _ = catch_unwind(AssertUnwindSafe(move || done(result)));
}

/// Ends every pending wait on a word in `start..start + len` now, each completion called once
/// with `EBADF` (from this thread), and returns how many it ended. For a segment about to be
/// unmapped: its waits can never be woken through it again.
pub fn cancel_waits(start: usize, len: usize) -> usize {
    end_all(in_range(start, len))
}

/// [`cancel_waits`] for memory that the calling thread unmaps next (a [`crate::Segment`]'s drop):
/// the waits end now, so that none is woken or watched after this returns, but their completions
/// are called on a thread of their own, which this does not wait for. The dropping thread may
/// hold what a completion takes (a lock of the caller's), or run inside an engine's collector.
/// Where no thread can be started, they are called here. Returns how many it ended.
pub(crate) fn cancel_waits_elsewhere(start: usize, len: usize) -> usize {
    let hit = in_range(start, len);
    let taken: Vec<Completion> = hit.iter().filter_map(|e| e.take()).collect();
    let ended = taken.len();
    if ended == 0 {
        return 0;
    }
    settle(&hit);
    // Shared with the thread, so that they are still here to call if it cannot start.
    let taken = Arc::new(Mutex::new(taken));
    let end = |taken: &Mutex<Vec<Completion>>| {
        for done in std::mem::take(&mut *lock(taken)) {
            call(done, Err(io::Error::from_raw_os_error(libc::EBADF)));
        }
    };
    let theirs = Arc::clone(&taken);
    let started = std::thread::Builder::new()
        .name("sb-wait-cancel".into())
        .spawn(move || end(&theirs));
    if started.is_err() {
        end(&taken);
    }
    ended
}

/// The pending waits on a word in `start..start + len`: a look at that range alone, with
/// thousands of waits pending elsewhere.
fn in_range(start: usize, len: usize) -> Vec<Arc<Entry>> {
    // Serial numbers start at 1: (address, 0) comes before every wait on that address.
    let end = start
        .checked_add(len)
        .map_or(Bound::Unbounded, |end| Bound::Excluded((end, 0)));
    lock(&REGISTRY)
        .pending
        .range((Bound::Included((start, 0)), end))
        .map(|(_, e)| Arc::clone(e))
        .collect()
}

/// Ends every pending wait that `owner` registered ([`wait_async_owned`]) now, each completion
/// called once with `EBADF` (from this thread), and returns how many it ended.
pub fn cancel_owned(owner: u64) -> usize {
    if owner == 0 {
        return 0;
    }
    cancel_where(|e| e.owner == owner)
}

/// Ends the pending waits that `pick` picks (see [`cancel_waits`]).
fn cancel_where(pick: impl Fn(&Entry) -> bool) -> usize {
    let hit = lock(&REGISTRY)
        .pending
        .values()
        .filter(|e| pick(e))
        .cloned()
        .collect();
    end_all(hit)
}

/// Ends each of `hit` with `EBADF` (those not ended already), and returns how many it ended.
fn end_all(hit: Vec<Arc<Entry>>) -> usize {
    let mut ended = 0;
    for entry in &hit {
        if entry.complete(Err(io::Error::from_raw_os_error(libc::EBADF))) {
            ended += 1;
        }
    }
    if ended > 0 {
        settle(&hit);
    }
    ended
}

/// Lets the threads that watched the ended waits of `hit` drop them.
fn settle(hit: &[Arc<Entry>]) {
    groups::nudge_all();
    for entry in hit.iter().filter(|e| e.pooled) {
        pool::release(entry);
    }
}

/// The environment variable that, set to `1`, makes the service park one thread per wait even
/// where `futex_waitv` exists: exact `notify` counts under concurrent notifies, at the cost of a
/// thread per pending wait (see [`wait_async`]). Linux only: elsewhere every wait has its thread.
#[cfg(target_os = "linux")]
pub const THREAD_PER_WAIT_ENV: &str = "SHARED_BUFFER_THREAD_PER_WAIT";

/// True if this kernel has `futex_waitv` and [`THREAD_PER_WAIT_ENV`] is not set (decided once).
fn use_groups() -> bool {
    #[cfg(target_os = "linux")]
    {
        use std::sync::atomic::{AtomicU8, Ordering};
        static STATE: AtomicU8 = AtomicU8::new(0); // 0 unknown, 1 yes, 2 no
        match STATE.load(Ordering::Relaxed) {
            1 => true,
            2 => false,
            _ => {
                // SAFETY: no words: the kernel checks the arguments and reads nothing.
                let probe = unsafe { crate::os::futex_waitv(&[], Some(Duration::ZERO)) };
                let forced = std::env::var_os(THREAD_PER_WAIT_ENV).is_some_and(|v| v == "1");
                let yes =
                    !forced && !matches!(&probe, Err(e) if e.raw_os_error() == Some(libc::ENOSYS));
                STATE.store(if yes { 1 } else { 2 }, Ordering::Relaxed);
                yes
            }
        }
    }
    #[cfg(not(target_os = "linux"))]
    false
}

/// Linux 5.16+: many waits per thread through `futex_waitv`.
#[cfg(target_os = "linux")]
mod groups {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;
    use crate::os::{self, Waitv, WaitvWord};

    /// Waits one thread watches: `futex_waitv` takes 128 words, one of them the control word.
    pub(super) const PER_GROUP: usize = os::WAITV_MAX - 1;

    struct Group {
        /// Bumped (and woken, privately) whenever the thread must look at `entries` again.
        control: AtomicU32,
        entries: Mutex<Vec<Arc<Entry>>>,
    }

    impl Group {
        fn nudge(&self) {
            self.control.fetch_add(1, Ordering::Release);
            os::futex_wake_private(&self.control, 1);
        }
    }

    static GROUPS: Mutex<Vec<Arc<Group>>> = Mutex::new(Vec::new());

    /// (threads, idle threads).
    pub(super) fn counts() -> (usize, usize) {
        let groups = lock(&GROUPS);
        let idle = groups
            .iter()
            .filter(|g| lock(&g.entries).iter().all(|e| e.finished()))
            .count();
        (groups.len(), idle)
    }

    pub(super) fn add(entry: Arc<Entry>) -> io::Result<()> {
        let mut groups = lock(&GROUPS);
        for group in groups.iter() {
            let mut entries = lock(&group.entries);
            entries.retain(|e| !e.finished());
            // One kernel queue entry per word and thread: a notify of `n` then wakes `n` threads,
            // each of which ends exactly one wait, so wake counts stay exact. Waits on a word this
            // group already watches go to another group.
            if entries.len() < PER_GROUP && entries.iter().all(|e| e.addr != entry.addr) {
                entries.push(entry);
                drop(entries);
                group.nudge();
                return Ok(());
            }
        }
        let group = Arc::new(Group {
            control: AtomicU32::new(0),
            entries: Mutex::new(vec![entry]),
        });
        let runner = Arc::clone(&group);
        spawn("sb-wait", move || run(&runner))?;
        groups.push(group);
        Ok(())
    }

    pub(super) fn nudge_all() {
        for group in lock(&GROUPS).iter() {
            group.nudge();
        }
    }

    /// Leaves the group list if the group has nothing to do and is not the last one.
    fn retire(group: &Arc<Group>) -> bool {
        let mut groups = lock(&GROUPS);
        if groups.len() <= 1 || !lock(&group.entries).is_empty() {
            return false;
        }
        groups.retain(|g| !Arc::ptr_eq(g, group));
        true
    }

    fn run(group: &Arc<Group>) {
        let mut idle_since: Option<Instant> = None;
        loop {
            let seq = group.control.load(Ordering::Acquire);
            let now = Instant::now();
            let mut expired = Vec::new();
            let watched: Vec<Arc<Entry>> = {
                let mut entries = lock(&group.entries);
                entries.retain(|e| {
                    if e.finished() {
                        return false;
                    }
                    if e.deadline.is_some_and(|d| d <= now) {
                        expired.push(Arc::clone(e));
                        return false;
                    }
                    true
                });
                entries.clone()
            };
            for entry in expired {
                entry.complete(Ok(WaitOutcome::TimedOut));
            }
            if watched.is_empty() {
                let since = *idle_since.get_or_insert(now);
                if now.duration_since(since) >= IDLE_EXIT && retire(group) {
                    return;
                }
                // Nothing to watch: sleep on the control word alone, privately.
                os::futex_wait_private(&group.control, seq, IDLE_EXIT);
                continue;
            }
            idle_since = None;
            let mut words = Vec::with_capacity(watched.len() + 1);
            words.push(WaitvWord {
                addr: group.control.as_ptr(),
                expected: seq,
                private: true,
            });
            words.extend(watched.iter().map(|e| WaitvWord {
                addr: e.addr as *const u32,
                expected: e.expected,
                private: false,
            }));
            let left = watched.iter().filter_map(|e| e.left(now)).min();
            // SAFETY: the control word is ours; the others were handed to wait_async, whose
            // caller promised aligned addresses; only the kernel reads them (EFAULT if gone).
            match unsafe { os::futex_waitv(&words, left) } {
                // A wake of another word consumed by this return is seen on re-arming, if that
                // word changed (NotEqual then).
                Ok(Waitv::Woken(0)) => {}
                Ok(Waitv::Woken(i)) => {
                    watched[i - 1].complete(Ok(WaitOutcome::Woken));
                }
                // Only the control word moved: look at the list again, no need to ask the kernel.
                Ok(Waitv::NotEqual) if group.control.load(Ordering::Acquire) != seq => {}
                Ok(Waitv::NotEqual) | Err(_) => recheck(&watched),
                Ok(Waitv::TimedOut | Waitv::Interrupted) => {}
            }
        }
    }

    /// Completes every wait whose word changed (as woken) or became unreadable (with the error),
    /// asking the kernel one word at a time.
    fn recheck(watched: &[Arc<Entry>]) {
        for entry in watched {
            if entry.finished() {
                continue;
            }
            // SAFETY: as in run(): the kernel compares the word without sleeping.
            match unsafe {
                wait_kernel(
                    entry.addr as *const u32,
                    entry.expected,
                    Some(Duration::ZERO),
                )
            } {
                Ok(WaitOutcome::NotEqual) => {
                    entry.complete(Ok(WaitOutcome::Woken));
                }
                Ok(_) => {}
                Err(err) => {
                    entry.complete(Err(err));
                }
            }
        }
    }
}

/// Stand-in where `futex_waitv` cannot exist; never used there ([`use_groups`] is false).
#[cfg(not(target_os = "linux"))]
mod groups {
    use super::*;

    pub(super) const PER_GROUP: usize = 1;

    pub(super) fn counts() -> (usize, usize) {
        (0, 0)
    }
    pub(super) fn add(_entry: Arc<Entry>) -> io::Result<()> {
        Err(io::Error::from_raw_os_error(libc::ENOSYS))
    }
    pub(super) fn nudge_all() {}
}

/// One parked thread per pending wait, reused.
mod pool {
    use super::*;

    struct Pool {
        jobs: VecDeque<Arc<Entry>>,
        threads: usize,
        idle: usize,
    }

    static POOL: Mutex<Pool> = Mutex::new(Pool {
        jobs: VecDeque::new(),
        threads: 0,
        idle: 0,
    });
    static WORK: Condvar = Condvar::new();

    /// (threads, idle threads).
    pub(super) fn counts() -> (usize, usize) {
        let pool = lock(&POOL);
        (pool.threads, pool.idle)
    }

    pub(super) fn add(entry: Arc<Entry>) -> io::Result<()> {
        let mut pool = lock(&POOL);
        // Every queued job needs a thread that will look at the queue without first blocking on
        // a wait: an idle one (each takes one job), or a new one.
        if pool.jobs.len() + 1 > pool.idle {
            spawn("sb-wait", worker)?;
            pool.threads += 1;
        }
        pool.jobs.push_back(entry);
        drop(pool);
        WORK.notify_one();
        Ok(())
    }

    /// Wakes the thread parked on a cancelled wait (and, spuriously, any other waiter on that
    /// word: wait/notify allows spurious wake-ups), so that it returns to the pool.
    pub(super) fn release(entry: &Entry) {
        // SAFETY: the caller is about to unmap the segment and has not yet; a wake touches no
        // user memory, and a bad address is only EFAULT.
        let _ = unsafe { super::super::notify_raw(entry.addr as *const u32, u32::MAX) };
    }

    fn worker() {
        let mut pool = lock(&POOL);
        loop {
            if let Some(entry) = pool.jobs.pop_front() {
                drop(pool);
                run(&entry);
                pool = lock(&POOL);
                continue;
            }
            pool.idle += 1;
            // One idle thread is kept; the others leave after a while without work.
            let timed_out = if pool.idle > 1 {
                let (guard, result) = WORK
                    .wait_timeout(pool, IDLE_EXIT)
                    .unwrap_or_else(PoisonError::into_inner);
                pool = guard;
                result.timed_out()
            } else {
                pool = WORK.wait(pool).unwrap_or_else(PoisonError::into_inner);
                false
            };
            pool.idle -= 1;
            if timed_out && pool.jobs.is_empty() {
                pool.threads -= 1;
                return;
            }
        }
    }

    fn run(entry: &Entry) {
        if entry.finished() {
            return;
        }
        // SAFETY: wait_async's caller promised an aligned address; only the kernel reads it here,
        // with its own fault handling (see wait_async).
        let result = unsafe {
            wait_kernel(
                entry.addr as *const u32,
                entry.expected,
                entry.left(Instant::now()),
            )
        }
        .map(|o| {
            // It held `expected` at registration, so a difference now is a change.
            if o == WaitOutcome::NotEqual {
                WaitOutcome::Woken
            } else {
                o
            }
        });
        entry.complete(result);
    }
}

#[cfg(all(test, not(loom), not(miri)))]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::mpsc;

    /// What a test's completion reports: its word's index, and how the wait ended.
    type Ended = (usize, Result<WaitOutcome, Option<i32>>);

    /// Taken by each test here: the registry is the process's, and a cancel that runs to the end
    /// of the address space ends another test's waits too.
    static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

    /// The next two completions, in the order of their words.
    fn next_two(rx: &mpsc::Receiver<Ended>) -> [Ended; 2] {
        let long = Duration::from_secs(30);
        let mut ended = [
            rx.recv_timeout(long).unwrap(),
            rx.recv_timeout(long).unwrap(),
        ];
        ended.sort_by_key(|e| e.0);
        ended
    }

    /// The pool (one thread per wait), which macOS and older kernels use: woken, timed out,
    /// cancelled, each completion exactly once.
    #[test]
    fn the_pool_wakes_times_out_and_cancels() {
        let _alone = lock(&ONE_AT_A_TIME);
        static WORDS: [AtomicU32; 4] = [const { AtomicU32::new(0) }; 4];
        let (tx, rx) = mpsc::channel();
        let start = |i: usize, timeout: Option<Duration>| {
            let tx = tx.clone();
            let done: Completion =
                Box::new(move |r| tx.send((i, r.map_err(|e| e.raw_os_error()))).unwrap());
            register(WORDS[i].as_ptr(), 0, timeout, done, false, 0).unwrap()
        };
        let long = Duration::from_secs(30);
        for i in 0..3 {
            assert_eq!(start(i, Some(long)), AsyncStart::Pending);
        }
        assert_eq!(
            start(3, Some(Duration::from_millis(20))),
            AsyncStart::Pending
        );
        assert_eq!(
            rx.recv_timeout(long).unwrap(),
            (3, Ok(WaitOutcome::TimedOut))
        );
        WORDS[0].store(1, Ordering::Release);
        // SAFETY: a static word.
        unsafe { super::super::notify_raw(WORDS[0].as_ptr(), 1) }.unwrap();
        assert_eq!(rx.recv_timeout(long).unwrap(), (0, Ok(WaitOutcome::Woken)));
        let first = WORDS[1].as_ptr() as usize;
        assert_eq!(cancel_waits(first, 8), 2);
        assert_eq!(
            next_two(&rx),
            [(1, Err(Some(libc::EBADF))), (2, Err(Some(libc::EBADF)))]
        );
        assert!(
            rx.recv_timeout(Duration::from_millis(50)).is_err(),
            "each completion once"
        );
    }

    /// `cancel_waits` ends the waits on the words of its range alone, at both of its ends, and
    /// a range that runs past the end of the address space.
    #[test]
    fn cancel_waits_ends_its_range_alone() {
        let _alone = lock(&ONE_AT_A_TIME);
        static WORDS: [AtomicU32; 4] = [const { AtomicU32::new(0) }; 4];
        let (tx, rx) = mpsc::channel();
        let long = Duration::from_secs(30);
        for (i, word) in WORDS.iter().enumerate() {
            let tx = tx.clone();
            let done: Completion =
                Box::new(move |r| tx.send((i, r.map_err(|e| e.raw_os_error()))).unwrap());
            let groups = use_groups();
            assert_eq!(
                register(word.as_ptr(), 0, Some(long), done, groups, 0).unwrap(),
                AsyncStart::Pending
            );
        }
        let at = |i: usize| WORDS[i].as_ptr() as usize;
        // Words 1 and 2: from the first byte of one to the last byte of the other.
        assert_eq!(cancel_waits(at(1), at(2) + 4 - at(1)), 2);
        assert_eq!(
            next_two(&rx),
            [(1, Err(Some(libc::EBADF))), (2, Err(Some(libc::EBADF)))]
        );
        assert_eq!(
            cancel_waits(at(3), usize::MAX),
            1,
            "to the end of the address space"
        );
        assert_eq!(rx.recv_timeout(long).unwrap(), (3, Err(Some(libc::EBADF))));
        assert_eq!(cancel_waits(at(0), 4), 1);
        assert_eq!(rx.recv_timeout(long).unwrap(), (0, Err(Some(libc::EBADF))));
        assert_eq!(cancel_waits(at(0), 16), 0, "each once");
    }
}
