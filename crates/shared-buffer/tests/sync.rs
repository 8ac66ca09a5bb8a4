//! Wait/notify, the robust mutex and the async wait service, across real processes.
//!
//! Child processes are this test binary run again with `--exact child_entry` and the role in
//! `SB_SYNC_ROLE`; [`child_entry`] does nothing in a normal run. Every test owns a segment
//! (`TestSeg`) and unlinks it on drop, pass or fail; every child is killed and reaped on drop
//! (`Kids`).

use std::env;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use shared_buffer::sync::{
    DEFAULT_SPINS, InitOutcome, LockError, LockOutcome, MUTEX_SIZE, Mutex, NOTIFY_ALL, WaitOutcome,
    notify, wait, wait_spin,
};
use shared_buffer::{Options, Segment, SegmentId};
use test_support::{Kids, LONG, TestSeg, await_value, echo, rerun};

/// Where tests put their mutex.
const MUTEX_AT: usize = 64;
/// Where tests put the counter the mutex protects.
const COUNTER_AT: usize = 128;

// ---- helpers ------------------------------------------------------------------------------

/// Starts this binary again as a child in `role` on `seg`, with more environment `vars`.
fn spawn(kids: &mut Kids, role: &str, seg: &TestSeg, vars: &[(&str, String)]) {
    let mut cmd = rerun("child_entry");
    cmd.env("SB_SYNC_ROLE", role).env("SB_SYNC_SEG", seg.name());
    for (key, value) in vars {
        cmd.env(key, value);
    }
    kids.spawn(&mut cmd);
}

/// The errno of an OS error, or of a lock's error inside an `io::Error`.
fn errno(err: impl Into<std::io::Error>) -> i32 {
    let err = err.into();
    err.raw_os_error()
        .or_else(|| {
            let inner = err.get_ref()?.downcast_ref::<LockError>()?;
            Some(inner.errno())
        })
        .expect("an OS error or a lock's")
}

// ---- child roles --------------------------------------------------------------------------

/// The entry point of child processes; a no-op test otherwise.
#[test]
fn child_entry() {
    let Ok(role) = env::var("SB_SYNC_ROLE") else {
        return;
    };
    let name = env::var("SB_SYNC_SEG").unwrap();
    let id = SegmentId::name(&name).unwrap();
    let seg = Segment::open(&id, None, &Options::default()).unwrap();
    let var = |key: &str| env::var(key).unwrap().parse::<u32>().unwrap();
    match role.as_str() {
        "pingpong" => echo(&seg, var("SB_SYNC_SPINS")),
        "waiter" => child_waiter(&seg, var("SB_SYNC_INDEX") as usize),
        "hold" => child_hold(&seg),
        "count" => child_count(&seg, var("SB_SYNC_ROUNDS")),
        other => panic!("unknown role {other}"),
    }
}

/// Counts itself ready in word 1, waits on word 0 (expected 0), then records its outcome in
/// word 3 + index (1 woken, 2 not-equal, 3 timed out) and counts itself done in word 2.
fn child_waiter(seg: &Segment, index: usize) {
    seg.atomic_u32(4).fetch_add(1, Ordering::AcqRel);
    let outcome = wait(seg.atomic_u32(0), 0, Some(Duration::from_secs(20))).unwrap();
    let code = match outcome {
        WaitOutcome::Woken => 1,
        WaitOutcome::NotEqual => 2,
        WaitOutcome::TimedOut => 3,
    };
    seg.atomic_u32((3 + index) * 4)
        .store(code, Ordering::Release);
    seg.atomic_u32(8).fetch_add(1, Ordering::AcqRel);
}

/// Takes the mutex, says so in word 0, and holds it until killed.
fn child_hold(seg: &Segment) {
    let mutex = Mutex::open_in(seg, MUTEX_AT).unwrap();
    mutex.lock(Some(LONG)).unwrap();
    seg.atomic_u32(0).store(1, Ordering::Release);
    notify(seg.atomic_u32(0), NOTIFY_ALL).unwrap();
    loop {
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// Increments the plain counter under the mutex `rounds` times.
fn child_count(seg: &Segment, rounds: u32) {
    let mutex = Mutex::open_in(seg, MUTEX_AT).unwrap();
    for _ in 0..rounds {
        bump(seg, mutex);
    }
}

/// One plain (non-atomic) read-modify-write of the counter, under the lock.
fn bump(seg: &Segment, mutex: &Mutex) {
    let guard = mutex.guard(Some(LONG)).unwrap();
    assert!(!guard.owner_died());
    // SAFETY: inside the segment, 8-byte aligned, and only ever touched under the mutex.
    unsafe {
        let counter = seg.as_ptr().add(COUNTER_AT).cast::<u64>();
        counter.write(counter.read() + 1);
    }
}

// ---- wait and notify ----------------------------------------------------------------------

#[test]
fn wait_returns_not_equal_at_once() {
    let word = AtomicU32::new(7);
    assert_eq!(wait(&word, 8, None).unwrap(), WaitOutcome::NotEqual);
    assert_eq!(wait(&word, 8, Some(LONG)).unwrap(), WaitOutcome::NotEqual);
    assert_eq!(
        wait_spin(&word, 8, None, DEFAULT_SPINS).unwrap(),
        WaitOutcome::NotEqual
    );
}

#[test]
fn wait_times_out_no_earlier_than_the_timeout() {
    let word = AtomicU32::new(0);
    assert_eq!(
        wait(&word, 0, Some(Duration::ZERO)).unwrap(),
        WaitOutcome::TimedOut
    );
    for ms in [1, 20, 60] {
        let timeout = Duration::from_millis(ms);
        let start = Instant::now();
        assert_eq!(
            wait(&word, 0, Some(timeout)).unwrap(),
            WaitOutcome::TimedOut
        );
        assert!(start.elapsed() >= timeout);
        let start = Instant::now();
        assert_eq!(
            wait_spin(&word, 0, Some(timeout), DEFAULT_SPINS).unwrap(),
            WaitOutcome::TimedOut
        );
        assert!(start.elapsed() >= timeout);
    }
}

static SIGNALS: AtomicUsize = AtomicUsize::new(0);

extern "C" fn count_signal(_: libc::c_int) {
    SIGNALS.fetch_add(1, Ordering::SeqCst);
}

#[test]
fn wait_retries_after_a_signal_with_the_time_left() {
    // SAFETY: installs a handler that only bumps an atomic; no SA_RESTART, so the futex call
    // returns EINTR to user space.
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = count_signal as *const () as usize;
        libc::sigemptyset(&mut action.sa_mask);
        assert_eq!(
            libc::sigaction(libc::SIGUSR1, &action, std::ptr::null_mut()),
            0
        );
    }
    let timeout = Duration::from_millis(300);
    let (tx, rx) = std::sync::mpsc::channel();
    let waiter = std::thread::spawn(move || {
        // SAFETY: pthread_self has no preconditions.
        tx.send(unsafe { libc::pthread_self() }).unwrap();
        let word = AtomicU32::new(0);
        let start = Instant::now();
        let outcome = wait(&word, 0, Some(timeout)).unwrap();
        (outcome, start.elapsed())
    });
    let thread = rx.recv().unwrap();
    let before = SIGNALS.load(Ordering::SeqCst);
    for _ in 0..5 {
        std::thread::sleep(Duration::from_millis(30));
        // SAFETY: the thread is alive until it is joined below (its wait lasts 300 ms).
        unsafe { libc::pthread_kill(thread, libc::SIGUSR1) };
    }
    let (outcome, elapsed) = waiter.join().unwrap();
    assert!(SIGNALS.load(Ordering::SeqCst) > before, "no signal arrived");
    assert_eq!(outcome, WaitOutcome::TimedOut);
    assert!(elapsed >= timeout, "returned after {elapsed:?}");
}

fn ping_pong(test: &str, spins: u32) {
    let seg = TestSeg::new(test);
    let mut kids = Kids::default();
    spawn(
        &mut kids,
        "pingpong",
        &seg,
        &[("SB_SYNC_SPINS", spins.to_string())],
    );
    let (ping, pong) = (seg.word(0), seg.word(1));
    for round in 1..=1000 {
        ping.store(round, Ordering::Release);
        notify(ping, 1).unwrap();
        loop {
            let now = pong.load(Ordering::Acquire);
            if now == round {
                break;
            }
            let outcome = wait_spin(pong, now, Some(LONG), spins).unwrap();
            assert_ne!(outcome, WaitOutcome::TimedOut, "lost wake-up at {round}");
        }
    }
    ping.store(u32::MAX, Ordering::Release);
    notify(ping, 1).unwrap();
    kids.join_all();
}

#[test]
fn ping_pong_1000_round_trips_between_processes() {
    ping_pong("pingpong-park", 0);
}

#[test]
fn ping_pong_1000_round_trips_spin_then_park() {
    ping_pong("pingpong-spin", DEFAULT_SPINS);
}

#[test]
fn notify_one_wakes_exactly_one_process_and_all_wakes_the_rest() {
    let seg = TestSeg::new("notify");
    let mut kids = Kids::default();
    for index in 0..3 {
        spawn(
            &mut kids,
            "waiter",
            &seg,
            &[("SB_SYNC_INDEX", index.to_string())],
        );
    }
    let (word, ready, done) = (seg.word(0), seg.word(1), seg.word(2));
    await_value(ready, 3);
    // A child counts itself ready just before it parks: notify until the kernel says it woke one.
    let start = Instant::now();
    while notify(word, 1).unwrap() == 0 {
        assert!(start.elapsed() < LONG, "no child ever parked");
        std::thread::sleep(Duration::from_millis(5));
    }
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        done.load(Ordering::Acquire),
        1,
        "notify(1) woke more than one"
    );
    // (Counts from a notify-all are exact on Linux only, so watch the children instead.)
    let start = Instant::now();
    while done.load(Ordering::Acquire) < 3 {
        assert!(start.elapsed() < LONG, "the others never parked");
        notify(word, NOTIFY_ALL).unwrap();
        std::thread::sleep(Duration::from_millis(5));
    }
    kids.join_all();
    assert_eq!(done.load(Ordering::Acquire), 3);
    for index in 0..3 {
        assert_eq!(
            seg.word(3 + index).load(Ordering::Acquire),
            1,
            "child {index}"
        );
    }
}

// ---- mutex ------------------------------------------------------------------------------

#[test]
fn mutex_reports_a_killed_owner_and_stays_usable() {
    let seg = TestSeg::new("mutex-kill");
    let (mutex, how) = Mutex::init_in(&seg, MUTEX_AT).unwrap();
    assert_eq!(how, InitOutcome::Initialized);
    let flag = seg.word(0);

    // 1. Killed while this process waits in lock().
    let mut kids = Kids::default();
    spawn(&mut kids, "hold", &seg, &[]);
    await_value(flag, 1);
    assert_eq!(errno(mutex.try_lock().unwrap_err()), libc::EBUSY);
    assert_eq!(errno(mutex.unlock().unwrap_err()), libc::EPERM);
    let start = Instant::now();
    let timeout = Duration::from_millis(100);
    assert_eq!(
        errno(mutex.lock(Some(timeout)).unwrap_err()),
        libc::ETIMEDOUT
    );
    assert!(start.elapsed() >= timeout);
    std::thread::scope(|scope| {
        let waiter = scope.spawn(|| {
            let outcome = mutex.lock(Some(LONG)).unwrap();
            mutex.unlock().unwrap();
            outcome
        });
        std::thread::sleep(Duration::from_millis(100));
        kids.kill_last();
        assert_eq!(waiter.join().unwrap(), LockOutcome::OwnerDied);
    });
    assert_eq!(mutex.lock(None).unwrap(), LockOutcome::Acquired);
    mutex.unlock().unwrap();

    // 2. Killed with nobody waiting: the next lock finds out.
    flag.store(0, Ordering::Release);
    spawn(&mut kids, "hold", &seg, &[]);
    await_value(flag, 1);
    kids.kill_last();
    let guard = mutex.guard(Some(LONG)).unwrap();
    assert!(guard.owner_died());
    drop(guard);
    assert_eq!(mutex.try_lock().unwrap(), LockOutcome::Acquired);
    mutex.unlock().unwrap();
}

#[test]
fn mutex_keeps_a_plain_counter_exact_across_processes() {
    const KIDS: usize = 4;
    const ROUNDS: u32 = 5_000;
    let seg = TestSeg::new("mutex-count");
    let (mutex, _) = Mutex::init_in(&seg, MUTEX_AT).unwrap();
    let mut kids = Kids::default();
    for _ in 0..KIDS {
        spawn(
            &mut kids,
            "count",
            &seg,
            &[("SB_SYNC_ROUNDS", ROUNDS.to_string())],
        );
    }
    for _ in 0..ROUNDS {
        bump(&seg, mutex);
    }
    kids.join_all();
    let _guard = mutex.guard(None).unwrap();
    // SAFETY: inside the segment, aligned, read under the lock.
    let total = unsafe { seg.as_ptr().add(COUNTER_AT).cast::<u64>().read() };
    assert_eq!(total, (KIDS as u64 + 1) * u64::from(ROUNDS));
}

#[test]
fn mutex_error_codes() {
    let seg = TestSeg::new("mutex-errors");
    assert_eq!(
        errno(Mutex::open_in(&seg, MUTEX_AT).unwrap_err()),
        libc::EINVAL,
        "an uninitialised mutex must be refused"
    );
    assert!(Mutex::init_in(&seg, MUTEX_AT + 4).is_err(), "misaligned");
    // As an io::Error, a lock's error keeps its message.
    let misplaced = std::io::Error::from(Mutex::init_in(&seg, MUTEX_AT + 4).unwrap_err());
    assert_eq!(misplaced.kind(), std::io::ErrorKind::InvalidInput);
    assert!(misplaced.to_string().contains("MUTEX_ALIGN"), "{misplaced}");
    assert!(
        Mutex::init_in(&seg, 4096 - MUTEX_SIZE + 8).is_err(),
        "out of bounds"
    );
    let (mutex, how) = Mutex::init_in(&seg, MUTEX_AT).unwrap();
    assert_eq!(how, InitOutcome::Initialized);
    let (_, how) = Mutex::init_in(&seg, MUTEX_AT).unwrap();
    assert_eq!(how, InitOutcome::AlreadyInitialized);
    let opened = Mutex::open_in(&seg, MUTEX_AT).unwrap();

    assert_eq!(errno(mutex.unlock().unwrap_err()), libc::EPERM);
    assert_eq!(mutex.lock(None).unwrap(), LockOutcome::Acquired);
    assert_eq!(errno(opened.lock(None).unwrap_err()), libc::EDEADLK);
    assert_eq!(errno(opened.try_lock().unwrap_err()), libc::EDEADLK);
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                assert_eq!(errno(mutex.unlock().unwrap_err()), libc::EPERM);
                assert_eq!(errno(mutex.try_lock().unwrap_err()), libc::EBUSY);
                let timeout = Duration::from_millis(50);
                let start = Instant::now();
                assert_eq!(
                    errno(mutex.lock(Some(timeout)).unwrap_err()),
                    libc::ETIMEDOUT
                );
                assert!(start.elapsed() >= timeout);
                assert_eq!(
                    errno(mutex.lock(Some(Duration::ZERO)).unwrap_err()),
                    libc::ETIMEDOUT
                );
            })
            .join()
            .unwrap();
    });
    mutex.unlock().unwrap();
    assert_eq!(errno(mutex.unlock().unwrap_err()), libc::EPERM);

    // Bytes that are neither zero nor a mutex.
    seg.atomic_u32(1024).store(0xdead_beef, Ordering::Relaxed);
    assert_eq!(errno(Mutex::init_in(&seg, 1024).unwrap_err()), libc::EINVAL);
}

#[test]
fn racing_initialisers_agree() {
    let seg = TestSeg::new("mutex-race");
    let outcomes: Vec<InitOutcome> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..8)
            .map(|_| scope.spawn(|| Mutex::init_in(&seg, MUTEX_AT).unwrap().1))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let firsts = outcomes
        .iter()
        .filter(|o| **o == InitOutcome::Initialized)
        .count();
    assert_eq!(firsts, 1);
    let mutex = Mutex::open_in(&seg, MUTEX_AT).unwrap();
    assert_eq!(mutex.try_lock().unwrap(), LockOutcome::Acquired);
    mutex.unlock().unwrap();
}

/// The calling thread's kernel id where `/proc` tells which system call a thread is in (Linux).
fn kernel_tid() -> Option<libc::pid_t> {
    #[cfg(target_os = "linux")]
    // SAFETY: gettid has no preconditions.
    return Some(unsafe { libc::gettid() });
    #[cfg(not(target_os = "linux"))]
    None
}

/// Returns once thread `tid` of this process is in the `futex` system call (x86-64 number 202,
/// as `/proc` shows it), or after 100 ms where `/proc` does not tell, or after `LONG`.
fn parked_in_futex(tid: Option<libc::pid_t>) {
    #[cfg(target_os = "linux")]
    if let Some(tid) = tid {
        let deadline = Instant::now() + LONG;
        while Instant::now() < deadline {
            match std::fs::read_to_string(format!("/proc/self/task/{tid}/syscall")) {
                Ok(line) if line.starts_with(&format!("{} ", libc::SYS_futex)) => return,
                Ok(_) => std::thread::sleep(Duration::from_millis(1)),
                Err(_) => break,
            }
        }
    }
    let _ = tid;
    std::thread::sleep(Duration::from_millis(100));
}

#[test]
fn notify_zero_wakes_nobody() {
    let t = TestSeg::new("notify-zero");
    let woken = std::thread::scope(|scope| {
        let (tid_tx, tid_rx) = std::sync::mpsc::channel();
        let word = t.word(0);
        let waiter = scope.spawn(move || {
            tid_tx.send(kernel_tid()).unwrap();
            wait(word, 0, Some(LONG)).unwrap()
        });
        // Once the waiter is parked in the kernel, ask for zero wake-ups: the kernel would wake
        // one.
        parked_in_futex(tid_rx.recv().unwrap());
        assert_eq!(notify(t.word(0), 0).unwrap(), 0);
        std::thread::sleep(Duration::from_millis(50));
        assert!(!waiter.is_finished(), "notify(0) must not wake the waiter");
        let woken = notify(t.word(0), 1).unwrap();
        assert_eq!(waiter.join().unwrap(), WaitOutcome::Woken);
        woken
    });
    assert_eq!(woken, 1);
}

#[test]
fn dropping_a_segment_ends_the_async_waits_on_its_memory_alone() {
    let t = TestSeg::new("drop-ends-waits");
    let other = Segment::open(t.id(), None, &Options::default()).unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let start = |tag: &'static str, word: &AtomicU32| {
        let tx = tx.clone();
        // SAFETY: an aligned word of a live mapping; the service leaves it to the kernel.
        let started = unsafe {
            shared_buffer::sync::wait_async(word.as_ptr(), 0, Some(LONG), move |r| {
                tx.send((tag, r.map_err(|e| e.raw_os_error()))).unwrap();
            })
        };
        assert_eq!(started.unwrap(), shared_buffer::sync::AsyncStart::Pending);
    };
    // The same word through two mappings: only the one dropped ends, with EBADF.
    start("dropped", other.atomic_u32(0));
    start("kept", t.word(0));
    drop(other);
    assert_eq!(
        rx.recv_timeout(LONG).unwrap(),
        ("dropped", Err(Some(libc::EBADF)))
    );
    // The other goes on: it ends woken, below, not cancelled.
    t.word(0).store(1, Ordering::Release);
    notify(t.word(0), NOTIFY_ALL).unwrap();
    assert_eq!(
        rx.recv_timeout(LONG).unwrap(),
        ("kept", Ok(WaitOutcome::Woken))
    );
}

#[test]
fn a_segment_dropped_under_a_lock_its_wait_completion_takes_does_not_deadlock() {
    let t = TestSeg::new("drop-under-lock");
    let other = Segment::open(t.id(), None, &Options::default()).unwrap();
    let results = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let (tx, rx) = std::sync::mpsc::channel();
    let theirs = std::sync::Arc::clone(&results);
    // SAFETY: an aligned word of a live mapping; the service leaves it to the kernel.
    let started = unsafe {
        shared_buffer::sync::wait_async(other.atomic_u32(0).as_ptr(), 0, Some(LONG), move |r| {
            theirs.lock().unwrap().push(r.map_err(|e| e.raw_os_error()));
            tx.send(std::thread::current().id()).unwrap();
        })
    };
    assert_eq!(started.unwrap(), shared_buffer::sync::AsyncStart::Pending);
    {
        let _held = results.lock().unwrap();
        // A completion called here, on this thread, would wait for `_held` for ever.
        drop(other);
    }
    let ran_on = rx.recv_timeout(LONG).unwrap();
    assert_ne!(ran_on, std::thread::current().id());
    assert_eq!(*results.lock().unwrap(), [Err(Some(libc::EBADF))]);
}
