//! The async wait service: a wait that returns at once and reports its end later, from a native
//! thread, through a completion.
//!
//! Bun's FFI cannot run a call off its JavaScript thread (Deno can, with `nonblocking: true`,
//! and simply calls the blocking [`super::wait`]). So Bun registers a wait here and gets a
//! thread-safe callback when it ends.
//!
//! # Design
//!
//! A small pool of reusable native threads. Each pending wait occupies one thread, blocked in
//! the kernel's wait call on the word (so an idle wait costs no CPU); when the wait ends, that
//! thread runs the completion and goes back to the pool. Idle threads sleep on a condition
//! variable, costing no CPU either. A new thread is spawned only when no idle one is free; one
//! idle thread is kept forever, the others exit after 30 s without work. At most
//! [`MAX_ASYNC_WAITS`] waits may be pending at once.
//!
//! Why not one thread waiting on many words (Linux `futex_waitv`)? It is Linux-only (macOS has no
//! equivalent), caps at 128 words, has one timeout for all of them, and needs a control word to
//! add waits; one parked thread per pending wait is simple, portable and, reused, cheap (see
//! `bench/native_wait.rs` for spawn against reuse).
//!
//! Semantics: see [`wait_async`].

use std::collections::VecDeque;
use std::io;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use super::{WaitOutcome, wait_kernel, wait_raw};

/// The most waits that may be pending at once; one more is `EAGAIN`.
pub const MAX_ASYNC_WAITS: usize = 1024;

/// Idle threads beyond the first exit after this long without work.
const IDLE_EXIT: Duration = Duration::from_secs(30);

/// Idle threads that never exit.
const KEEP_IDLE: usize = 1;

/// Stack of a pool thread: it only waits and runs the completion (for Bun, a thread-safe
/// JSCallback, which only queues a task for the JavaScript thread).
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

/// A snapshot of the pool, for tests and diagnostics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ServiceStats {
    /// Pool threads alive now.
    pub threads: usize,
    /// Of those, how many are idle.
    pub idle: usize,
    /// Waits registered and not yet completed.
    pub pending: usize,
    /// Pool threads spawned since the process started.
    pub spawned: u64,
}

type Completion = Box<dyn FnOnce(io::Result<WaitOutcome>) + Send>;

struct Job {
    /// The word's address (an integer, so that a Job is Send; only the kernel reads it on Linux).
    addr: usize,
    expected: u32,
    /// `None`: no limit.
    deadline: Option<Instant>,
    done: Completion,
}

struct Pool {
    jobs: VecDeque<Job>,
    threads: usize,
    idle: usize,
    pending: usize,
    spawned: u64,
}

static POOL: Mutex<Pool> = Mutex::new(Pool {
    jobs: VecDeque::new(),
    threads: 0,
    idle: 0,
    pending: 0,
    spawned: 0,
});
static WORK: Condvar = Condvar::new();

fn pool() -> MutexGuard<'static, Pool> {
    // Completions run outside the lock and every update is a few counter changes, so a poisoned
    // lock (impossible short of a bug here) still holds consistent data.
    POOL.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The pool's current state.
pub fn service_stats() -> ServiceStats {
    let pool = pool();
    ServiceStats {
        threads: pool.threads,
        idle: pool.idle,
        pending: pool.pending,
        spawned: pool.spawned,
    }
}

/// Registers a wait for the word at `addr` to stop holding `expected` (or to be notified), for
/// at most `timeout` (`None`: no limit), and returns at once.
///
/// First the word is checked (on Linux the kernel compares it, so a stale address gives
/// `EFAULT`, not a crash): if it does not hold `expected` the result is [`AsyncStart::NotEqual`]
/// at once, and a zero timeout gives [`AsyncStart::TimedOut`] at once; `done` never runs in
/// either case, as with `Atomics.waitAsync`. Otherwise the wait is registered
/// ([`AsyncStart::Pending`]) and `done` runs exactly once, on a pool thread, with
/// [`WaitOutcome::Woken`] (notified; spuriously woken; or the word changed after registration,
/// before the pool thread parked, which is the same as a notify that came early),
/// [`WaitOutcome::TimedOut`] (the deadline, counted from this call, passed), or an error; never
/// with [`WaitOutcome::NotEqual`].
///
/// Each pending wait occupies one pool thread parked in the kernel (no CPU); idle threads are
/// reused, one is kept forever and the others exit after 30 s without work. A process that
/// forks while the pool has threads must not use this in the child (fork and exec is fine).
///
/// # Safety
/// `addr` must be 4-byte aligned and point into memory this process maps. On Linux only the
/// kernel reads the word, now and later on the pool thread: if the memory is unmapped meanwhile
/// the wait ends with `EFAULT` (or keeps waiting on the shared page until notified or timed
/// out), never with undefined behaviour. On other platforms the word is read in user space
/// during this call, so it must be mapped now; the pool thread again leaves it to the kernel.
///
/// # Errors
/// `EAGAIN` when [`MAX_ASYNC_WAITS`] waits are pending or no thread could be spawned; errors of the
/// first check (`EFAULT`, `EINVAL`, `Unsupported`).
pub unsafe fn wait_async<F>(
    addr: *const u32,
    expected: u32,
    timeout: Option<Duration>,
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
    let job = Job {
        addr: addr as usize,
        expected,
        deadline: timeout.and_then(|t| Instant::now().checked_add(t)),
        done: Box::new(done),
    };
    let mut pool = pool();
    if pool.pending >= MAX_ASYNC_WAITS {
        return Err(io::Error::from_raw_os_error(libc::EAGAIN));
    }
    // Every queued job needs a thread that will look at the queue without first blocking on a
    // wait: an idle one (each takes one job), or a new one.
    if pool.jobs.len() + 1 > pool.idle {
        std::thread::Builder::new()
            .name("sb-wait".into())
            .stack_size(STACK_SIZE)
            .spawn(worker)
            .map_err(|_| io::Error::from_raw_os_error(libc::EAGAIN))?;
        pool.threads += 1;
        pool.spawned += 1;
    }
    pool.jobs.push_back(job);
    pool.pending += 1;
    drop(pool);
    WORK.notify_one();
    Ok(AsyncStart::Pending)
}

fn worker() {
    let mut pool = pool();
    loop {
        if let Some(job) = pool.jobs.pop_front() {
            drop(pool);
            run(job);
            pool = self::pool();
            pool.pending -= 1;
            continue;
        }
        pool.idle += 1;
        let timed_out = if pool.idle > KEEP_IDLE {
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

fn run(job: Job) {
    let left = job
        .deadline
        .map(|deadline| deadline.saturating_duration_since(Instant::now()));
    // SAFETY: wait_async's caller promised an aligned address; only the kernel reads it here,
    // with its own fault handling (see wait_async).
    let result = unsafe { wait_kernel(job.addr as *const u32, job.expected, left) }.map(|o| {
        // It held `expected` at registration, so a difference now is a change (see the docs).
        if o == WaitOutcome::NotEqual {
            WaitOutcome::Woken
        } else {
            o
        }
    });
    let done = job.done;
    // A panicking completion must not take the pool thread (and its bookkeeping) with it.
    let _ = catch_unwind(AssertUnwindSafe(move || done(result)));
}
