//! The cross-process lock against the glibc robust `pthread_mutex_t` it replaced, printed as one
//! JSON object on stdout.
//!
//! `cargo bench --bench native_lock [-- --n HANDOFFS_PER_PROCESS] [--deaths N]`
//!
//! - `uncontended_ns`: one lock plus unlock, nobody else using the lock (median of 7 blocks of
//!   1M pairs).
//! - `handoff`: the lock passed back and forth between this process and a child `n` times each,
//!   always to a process already waiting in `lock()` (it announces, then calls `lock()`; the
//!   holder unlocks when it sees the announcement). `waiter_spinning_ns`: unlocked at once, so
//!   the waiter is usually still spinning; `waiter_parked_ns`: unlocked 200 µs later, so the
//!   waiter has parked in the kernel and must be woken (the 200 µs are taken out of the figure;
//!   `n / 10` rounds). Each side waits for the other's announcements with `wait_spin`.
//! - `hammer`: both processes take and release the lock 500,000 times each as fast as they can;
//!   `ns_per_lock` is wall time over all acquisitions, `switches` how often this process found
//!   the other had been in since its own last round.
//! - `owner_death_recovery_us`: a child takes the lock and is killed (`SIGKILL`) while this
//!   process waits in `lock()`; the time from the kill to `lock()` returning "owner died"
//!   (median and 99th percentile of `deaths` runs). The pthread lock is released by the kernel at
//!   once; the new lock is found dead by a waiter's liveness check (every
//!   `shared_buffer::sync::LIVENESS_POLL`).
//!
//! Unpinned: the scheduler places both processes.

use std::env;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use shared_buffer::sync::{DEFAULT_SPINS, LockOutcome, Mutex, notify, wait_spin};
use shared_buffer::{Options, Segment, SegmentId};

/// Where the new lock lives in the segment.
const NEW_AT: usize = 64;
/// Where the pthread lock lives (its 40 bytes on x86-64 glibc, 8-byte aligned).
const OLD_AT: usize = 192;
/// The counter both processes increment under the lock.
const COUNTER_AT: usize = 512;
/// Word index of the hand-off announcements.
const ANNOUNCE: usize = 2;
/// Rounds per process in the `hammer` run.
const HAMMER_ROUNDS: u32 = 500_000;
/// How long the holder keeps the lock after the other process asked, in the "parked" hand-off:
/// long enough for the waiter to stop spinning and park in the kernel.
const PARKED_HOLD_US: u64 = 200;
/// Word index of the child's "ready / holding" flag, and of the start flag.
const READY: usize = 0;
const GO: usize = 1;

/// A copy of the lock this library used before: glibc's robust, process-shared, error-checking
/// `pthread_mutex_t`, kept here only to compare against.
mod pthread_robust {
    /// Writes a fresh robust mutex at `m`.
    ///
    /// # Safety
    /// `m` must be valid, aligned and unused by anyone else.
    pub unsafe fn init(m: *mut libc::pthread_mutex_t) {
        let mut attr = std::mem::MaybeUninit::<libc::pthread_mutexattr_t>::uninit();
        // SAFETY: the attribute object is initialised before use and destroyed once; `m` is
        // valid as the caller promises.
        unsafe {
            assert_eq!(libc::pthread_mutexattr_init(attr.as_mut_ptr()), 0);
            let a = attr.as_mut_ptr();
            assert_eq!(
                libc::pthread_mutexattr_settype(a, libc::PTHREAD_MUTEX_ERRORCHECK),
                0
            );
            assert_eq!(
                libc::pthread_mutexattr_setpshared(a, libc::PTHREAD_PROCESS_SHARED),
                0
            );
            // Linux only: macOS has no robust mutexes (its figures are of a plain one).
            #[cfg(target_os = "linux")]
            assert_eq!(
                libc::pthread_mutexattr_setrobust(a, libc::PTHREAD_MUTEX_ROBUST),
                0
            );
            assert_eq!(libc::pthread_mutex_init(m, a), 0);
            libc::pthread_mutexattr_destroy(a);
        }
    }

    /// Locks; true when the previous owner died (the mutex is made consistent again).
    ///
    /// # Safety
    /// `m` must be a mutex made by [`init`].
    pub unsafe fn lock(m: *mut libc::pthread_mutex_t) -> bool {
        // SAFETY: as the caller promises.
        match unsafe { libc::pthread_mutex_lock(m) } {
            0 => false,
            #[cfg(target_os = "linux")]
            libc::EOWNERDEAD => {
                // SAFETY: this thread holds it after EOWNERDEAD.
                assert_eq!(unsafe { libc::pthread_mutex_consistent(m) }, 0);
                true
            }
            code => panic!("pthread_mutex_lock: {code}"),
        }
    }

    /// Unlocks.
    ///
    /// # Safety
    /// `m` must be a mutex made by [`init`], held by this thread.
    pub unsafe fn unlock(m: *mut libc::pthread_mutex_t) {
        // SAFETY: as the caller promises.
        assert_eq!(unsafe { libc::pthread_mutex_unlock(m) }, 0);
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    New,
    Pthread,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::New => "new",
            Kind::Pthread => "pthread",
        }
    }
}

/// Both locks in one segment.
struct Locks<'a> {
    seg: &'a Segment,
    new: &'a Mutex,
    old: *mut libc::pthread_mutex_t,
}

// SAFETY: the pthread mutex is process-shared memory made for use from any thread.
unsafe impl Sync for Locks<'_> {}

impl<'a> Locks<'a> {
    fn open(seg: &'a Segment) -> Self {
        Self {
            seg,
            new: Mutex::open_in(seg, NEW_AT).unwrap(),
            // SAFETY: OLD_AT + 40 is inside the 4 KiB segment and 8-byte aligned.
            old: unsafe { seg.as_ptr().add(OLD_AT).cast() },
        }
    }

    /// Locks `kind`; true when its previous owner died.
    fn lock(&self, kind: Kind) -> bool {
        match kind {
            Kind::New => self.new.lock(None).unwrap() == LockOutcome::OwnerDied,
            // SAFETY: initialised by the parent before any child starts.
            Kind::Pthread => unsafe { pthread_robust::lock(self.old) },
        }
    }

    fn unlock(&self, kind: Kind) {
        match kind {
            Kind::New => self.new.unlock().unwrap(),
            // SAFETY: held by this thread.
            Kind::Pthread => unsafe { pthread_robust::unlock(self.old) },
        }
    }

    fn word(&self, index: usize) -> &AtomicU32 {
        self.seg.atomic_u32(index * 4)
    }

    fn counter(&self) -> *mut u64 {
        // SAFETY: inside the segment, 8-byte aligned.
        unsafe { self.seg.as_ptr().add(COUNTER_AT).cast() }
    }
}

/// The named segment of one run, unlinked on drop.
struct Seg {
    id: SegmentId,
    name: String,
    seg: Segment,
}

impl Seg {
    fn new() -> Self {
        let name = format!("/sbbench-nl-{}", std::process::id());
        let id = SegmentId::name(&name).expect("segment name");
        let _ = Segment::unlink(&id);
        let seg = Segment::create(&id, 4096, &Options::default()).expect("create segment");
        Mutex::init_in(&seg, NEW_AT).unwrap();
        // SAFETY: fresh, aligned, unused.
        unsafe { pthread_robust::init(seg.as_ptr().add(OLD_AT).cast()) };
        Self { id, name, seg }
    }

    fn spawn(&self, role: &str, kind: Kind, n: u32, vars: &[(&str, String)]) -> Child {
        Command::new(env::current_exe().unwrap())
            .envs(vars.iter().map(|(k, v)| (*k, v.as_str())))
            .env("SB_NL_ROLE", role)
            .env("SB_NL_SEG", &self.name)
            .env("SB_NL_KIND", kind.name())
            .env("SB_NL_N", n.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .expect("spawn child")
    }
}

impl Drop for Seg {
    fn drop(&mut self) {
        let _ = Segment::unlink(&self.id);
    }
}

fn await_flag(word: &AtomicU32, value: u32) {
    let start = Instant::now();
    while word.load(Ordering::Acquire) != value {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "child never got ready"
        );
        std::thread::sleep(Duration::from_micros(200));
    }
}

fn child_main(role: &str) {
    let id = SegmentId::name(&env::var("SB_NL_SEG").unwrap()).unwrap();
    let seg = Segment::open(&id, None, &Options::default()).unwrap();
    let locks = Locks::open(&seg);
    let kind = if env::var("SB_NL_KIND").unwrap() == "new" {
        Kind::New
    } else {
        Kind::Pthread
    };
    let n: u32 = env::var("SB_NL_N").unwrap().parse().unwrap();
    match role {
        "hold" => {
            locks.lock(kind);
            locks.word(READY).store(1, Ordering::Release);
            loop {
                std::thread::sleep(Duration::from_secs(60));
            }
        }
        "hammer" => {
            locks.word(READY).store(1, Ordering::Release);
            while locks.word(GO).load(Ordering::Acquire) == 0 {
                std::hint::spin_loop();
            }
            hammer(&locks, kind, n, 1);
        }
        "handoff" => {
            let hold: u64 = env::var("SB_NL_HOLD").unwrap().parse().unwrap();
            locks.word(READY).store(1, Ordering::Release);
            ping_pong(&locks, kind, n, false, hold);
        }
        other => panic!("unknown role {other}"),
    }
}

/// `n` lock / increment / unlock rounds as fast as possible; returns how often this process
/// found the other one had taken the lock since its own last round (the counter's top byte
/// records the last taker: 1 or 2 = `me + 1`).
fn hammer(locks: &Locks<'_>, kind: Kind, n: u32, me: u64) -> u64 {
    let mut switches = 0;
    for _ in 0..n {
        locks.lock(kind);
        // SAFETY: only touched under the lock.
        unsafe {
            let c = locks.counter();
            let v = c.read();
            let last = v >> 56;
            if last != 0 && last != me + 1 {
                switches += 1;
            }
            c.write(((v & ((1 << 56) - 1)) + 1) | ((me + 1) << 56));
        }
        locks.unlock(kind);
    }
    switches
}

/// Waits until the announcement word holds `value` (spinning briefly, then parked: on a loaded
/// machine a pure spin would take the CPU the other process needs).
fn await_announcement(word: &AtomicU32, value: u32) {
    loop {
        let now = word.load(Ordering::Acquire);
        if now == value {
            return;
        }
        wait_spin(word, now, Some(Duration::from_millis(100)), DEFAULT_SPINS).unwrap();
    }
}

/// Sets the announcement word and wakes the other process if it parked on it.
fn announce_as(word: &AtomicU32, value: u32) {
    word.store(value, Ordering::Release);
    notify(word, 1).unwrap();
}

/// Busy-waits `micros` microseconds.
fn hold_for(micros: u64) {
    if micros == 0 {
        return;
    }
    let start = Instant::now();
    while start.elapsed() < Duration::from_micros(micros) {
        std::hint::spin_loop();
    }
}

/// The lock passed back and forth `2n` times between this process (`first`, which holds it
/// when the run starts) and the child, always to a process already waiting in `lock()`. Steps
/// of the announcement word, round `i`, `k = 4i`: the child says `k+1` and calls `lock()`; the
/// holder, `hold_us` after seeing it, unlocks; the child, holding it, says `k+2`; this process
/// says `k+3` and calls `lock()`; the child unlocks `hold_us` after seeing it; this process,
/// holding it, says `k+4`. (Each waits for the other's "holding" before asking again, or the
/// one that just unlocked could take the lock back first.)
fn ping_pong(locks: &Locks<'_>, kind: Kind, n: u32, first: bool, hold_us: u64) {
    let announce = locks.word(ANNOUNCE);
    for i in 0..n {
        let k = 4 * i;
        if first {
            await_announcement(announce, k + 1);
            hold_for(hold_us);
            locks.unlock(kind);
            await_announcement(announce, k + 2);
            announce_as(announce, k + 3);
            locks.lock(kind);
            announce_as(announce, k + 4);
        } else {
            announce_as(announce, k + 1);
            locks.lock(kind);
            announce_as(announce, k + 2);
            await_announcement(announce, k + 3);
            hold_for(hold_us);
            locks.unlock(kind);
            await_announcement(announce, k + 4);
        }
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn uncontended(locks: &Locks<'_>, kind: Kind) -> f64 {
    let blocks: Vec<f64> = (0..7)
        .map(|_| {
            let n = 1_000_000u32;
            let start = Instant::now();
            for _ in 0..n {
                locks.lock(kind);
                locks.unlock(kind);
            }
            start.elapsed().as_nanos() as f64 / f64::from(n)
        })
        .collect();
    median(blocks)
}

/// Runs `hammer` in this process and a child at once: (ns per acquisition, switches seen by
/// this process, exact).
fn hammered(seg: &Seg, locks: &Locks<'_>, kind: Kind, n: u32) -> (f64, u64, bool) {
    locks.word(READY).store(0, Ordering::Release);
    locks.word(GO).store(0, Ordering::Release);
    // SAFETY: nobody else runs yet.
    unsafe { locks.counter().write(0) };
    let mut child = seg.spawn("hammer", kind, n, &[]);
    await_flag(locks.word(READY), 1);
    let start = Instant::now();
    locks.word(GO).store(1, Ordering::Release);
    let switches = hammer(locks, kind, n, 0);
    assert!(child.wait().unwrap().success());
    let elapsed = start.elapsed();
    // SAFETY: the child has exited.
    let total = unsafe { locks.counter().read() } & ((1 << 56) - 1);
    (
        elapsed.as_nanos() as f64 / (2.0 * f64::from(n)),
        switches,
        total == 2 * u64::from(n),
    )
}

/// Nanoseconds per hand-off to a waiting process, the holding time taken out.
fn handoff(seg: &Seg, locks: &Locks<'_>, kind: Kind, n: u32, hold_us: u64) -> f64 {
    locks.word(READY).store(0, Ordering::Release);
    locks.word(ANNOUNCE).store(0, Ordering::Release);
    locks.lock(kind);
    let mut child = seg.spawn("handoff", kind, n, &[("SB_NL_HOLD", hold_us.to_string())]);
    await_flag(locks.word(READY), 1);
    let start = Instant::now();
    ping_pong(locks, kind, n, true, hold_us);
    let elapsed = start.elapsed();
    locks.unlock(kind);
    assert!(child.wait().unwrap().success());
    elapsed.as_nanos() as f64 / (2.0 * f64::from(n)) - (hold_us * 1000) as f64
}

/// Microseconds from SIGKILL of a holder to this process's `lock()` returning owner-died.
fn recovery(seg: &Seg, locks: &Locks<'_>, kind: Kind, runs: u32) -> Vec<f64> {
    (0..runs)
        .map(|_| {
            locks.word(READY).store(0, Ordering::Release);
            let mut child = seg.spawn("hold", kind, 0, &[]);
            await_flag(locks.word(READY), 1);
            let pid = child.id() as libc::pid_t;
            let (tx, rx) = std::sync::mpsc::channel();
            std::thread::scope(|s| {
                s.spawn(|| {
                    let died = locks.lock(kind);
                    let at = Instant::now();
                    locks.unlock(kind);
                    tx.send((died, at)).unwrap();
                });
                // Let the waiter park in the kernel before the kill.
                std::thread::sleep(Duration::from_millis(30));
                let killed = Instant::now();
                // SAFETY: our own child.
                unsafe { libc::kill(pid, libc::SIGKILL) };
                let (died, at) = rx.recv().unwrap();
                assert!(
                    died,
                    "{}: the waiter was not told the owner died",
                    kind.name()
                );
                child.wait().unwrap();
                at.saturating_duration_since(killed).as_nanos() as f64 / 1000.0
            })
        })
        .collect()
}

fn main() {
    if let Ok(role) = env::var("SB_NL_ROLE") {
        child_main(&role);
        return;
    }
    let mut n: u32 = 2_000;
    let mut deaths: u32 = 15;
    let mut args = env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--n" => n = args.next().and_then(|v| v.parse().ok()).expect("--n N"),
            "--deaths" => {
                deaths = args
                    .next()
                    .and_then(|v| v.parse().ok())
                    .expect("--deaths N")
            }
            _ => {} // cargo passes --bench
        }
    }
    let started = Instant::now();
    let seg = Seg::new();
    let locks = Locks::open(&seg.seg);
    let mut parts = Vec::new();
    for kind in [Kind::New, Kind::Pthread] {
        let solo = uncontended(&locks, kind);
        let spinning = handoff(&seg, &locks, kind, n, 0);
        let parked = handoff(&seg, &locks, kind, n / 10, PARKED_HOLD_US);
        let (per_lock, switches, hammer_exact) = hammered(&seg, &locks, kind, HAMMER_ROUNDS);
        let mut rec = recovery(&seg, &locks, kind, deaths);
        rec.sort_by(f64::total_cmp);
        let p99 = rec[(rec.len() * 99 / 100).min(rec.len() - 1)];
        parts.push(format!(
            concat!(
                "\"{}\":{{\"uncontended_ns\":{:.1},",
                "\"handoff\":{{\"rounds\":{},\"waiter_spinning_ns\":{:.0},",
                "\"waiter_parked_ns\":{:.0}}},",
                "\"hammer\":{{\"locks_per_process\":{},\"ns_per_lock\":{:.1},",
                "\"switches\":{},\"exact\":{}}},",
                "\"owner_death_recovery_us\":{{\"runs\":{},\"median\":{:.1},\"p99\":{:.1},",
                "\"min\":{:.1}}}}}"
            ),
            kind.name(),
            solo,
            n,
            spinning,
            parked,
            HAMMER_ROUNDS,
            per_lock,
            switches,
            hammer_exact,
            deaths,
            rec[rec.len() / 2],
            p99,
            rec[0],
        ));
    }
    println!(
        "{{\"placement\":\"unpinned\",{},\"elapsed_s\":{:.2}}}",
        parts.join(","),
        started.elapsed().as_secs_f64()
    );
}
