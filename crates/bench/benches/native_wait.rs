//! Native wait/notify costs between two processes, printed as one JSON object on stdout.
//!
//! `cargo bench --bench native_wait [-- --pin same|split|none] [--n ROUND_TRIPS]`
//!
//! - `park`: ping-pong through a named segment, both sides parking in the kernel at once.
//! - `spin_then_park`: the same with [`wait_spin`] and [`DEFAULT_SPINS`].
//! - `async_service`: this process waits through the async wait service (a pool thread parks,
//!   then a completion wakes this thread: the path Bun takes, minus JavaScript); the child parks.
//! - `notify_no_waiter_ns`: one notify on a word nobody waits on.
//! - `mutex_uncontended_ns`: one lock plus unlock of the mutex, nobody else using it (see
//!   `native_lock.rs` for the lock against the pthread one it replaced).
//! - `async_handoff`: in one process, register a wait and notify it at once, until the
//!   completion has run: through the reused pool, and with a thread spawned per wait.
//!
//! `--pin same` puts both processes (and every thread) on CPU 0, `split` this one on CPU 0 and
//! the child on CPU 1, `none` (default) lets the scheduler choose. Round-trip figures are
//! median and 99th percentile, in nanoseconds.

use std::env;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Instant;

use shared_buffer::sync::{
    self, AsyncStart, DEFAULT_SPINS, Mutex, NOTIFY_ALL, WaitOutcome, notify, wait, wait_spin,
};
use shared_buffer::{Options, Segment, SegmentId};
use test_support::{Kids, TestSeg, echo};

const WARMUP: u32 = 1_000;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Pin {
    Same,
    Split,
    None,
}

impl Pin {
    fn name(self) -> &'static str {
        match self {
            Pin::Same => "same",
            Pin::Split => "split",
            Pin::None => "none",
        }
    }
    /// CPUs for (this process, the child).
    fn cpus(self) -> (Option<usize>, Option<usize>) {
        match self {
            Pin::Same => (Some(0), Some(0)),
            Pin::Split => (Some(0), Some(1)),
            Pin::None => (None, None),
        }
    }
}

#[cfg(target_os = "linux")]
fn pin_to(cpu: usize) {
    // SAFETY: cpu_set_t is plain data; sched_setaffinity reads it and pins the calling thread
    // (threads it spawns later inherit the mask).
    let ret = unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set)
    };
    assert_eq!(ret, 0, "sched_setaffinity to CPU {cpu} failed");
}

#[cfg(not(target_os = "linux"))]
fn pin_to(_cpu: usize) {
    eprintln!("--pin is ignored on this platform");
}

/// Median and 99th percentile of the samples, in nanoseconds.
fn stats(samples: &mut [u64]) -> (u64, u64) {
    samples.sort_unstable();
    let n = samples.len();
    (samples[n / 2], samples[(n * 99 / 100).min(n - 1)])
}

/// The child: echoes word 0 into word 1 until it reads `u32::MAX`.
fn child_main() {
    let name = env::var("SB_NW_SEG").expect("SB_NW_SEG");
    let spins: u32 = env::var("SB_NW_SPINS")
        .expect("SB_NW_SPINS")
        .parse()
        .unwrap();
    if let Ok(cpu) = env::var("SB_NW_CPU") {
        pin_to(cpu.parse().unwrap());
    }
    let id = SegmentId::name(&name).unwrap();
    echo(
        &Segment::open(&id, None, &Options::default()).unwrap(),
        spins,
    );
}

#[derive(Clone, Copy)]
enum Side {
    Park,
    Spin,
    Async,
}

/// The word the async completion sets, and this thread parks on.
static DONE: AtomicU32 = AtomicU32::new(0);

fn await_pong(pong: &AtomicU32, round: u32, side: Side) {
    loop {
        let now = pong.load(Ordering::Acquire);
        if now == round {
            return;
        }
        match side {
            Side::Park => {
                wait(pong, now, None).unwrap();
            }
            Side::Spin => {
                wait_spin(pong, now, None, DEFAULT_SPINS).unwrap();
            }
            Side::Async => {
                DONE.store(0, Ordering::Release);
                // SAFETY: a word of the segment, which outlives this wait (it ends, through the
                // completion, before this function returns).
                let start = unsafe {
                    sync::wait_async(pong.as_ptr(), now, None, |_| {
                        DONE.store(1, Ordering::Release);
                        notify(&DONE, 1).unwrap();
                    })
                }
                .unwrap();
                if start == AsyncStart::Pending {
                    while DONE.load(Ordering::Acquire) == 0 {
                        wait(&DONE, 0, None).unwrap();
                    }
                }
            }
        }
    }
}

/// Round-trip samples of one ping-pong run against a fresh child.
fn ping_pong(side: Side, child_spins: u32, pin: Pin, n: u32) -> (u64, u64) {
    let seg = TestSeg::new("nw-pp");
    let mut cmd = Command::new(env::current_exe().unwrap());
    cmd.env("SB_NW_ROLE", "echo")
        .env("SB_NW_SEG", seg.name())
        .env("SB_NW_SPINS", child_spins.to_string())
        .stdout(Stdio::null());
    if let Some(cpu) = pin.cpus().1 {
        cmd.env("SB_NW_CPU", cpu.to_string());
    }
    let mut child = Kids::default();
    child.spawn(&mut cmd);
    let (ping, pong) = (seg.word(0), seg.word(1));
    let mut samples = Vec::with_capacity(n as usize);
    for round in 1..=WARMUP + n {
        let start = Instant::now();
        ping.store(round, Ordering::Release);
        notify(ping, 1).unwrap();
        await_pong(pong, round, side);
        if round > WARMUP {
            samples.push(start.elapsed().as_nanos() as u64);
        }
    }
    ping.store(u32::MAX, Ordering::Release);
    notify(ping, NOTIFY_ALL).unwrap();
    child.join_all();
    stats(&mut samples)
}

/// Mean nanoseconds of `f` over `n` calls.
fn mean_ns(n: u32, mut f: impl FnMut()) -> f64 {
    let start = Instant::now();
    for _ in 0..n {
        f();
    }
    start.elapsed().as_nanos() as f64 / f64::from(n)
}

/// In-process register-then-notify latency until the completion ran: pool against a new thread
/// per wait. Returns ((median, p99) reuse, (median, p99) spawn).
fn handoff(n: u32) -> ((u64, u64), (u64, u64)) {
    static WORD: AtomicU32 = AtomicU32::new(0);
    let mut reuse = Vec::with_capacity(n as usize);
    let mut spawn = Vec::with_capacity(n as usize);
    for _ in 0..n {
        WORD.store(0, Ordering::Release);
        DONE.store(0, Ordering::Release);
        let start = Instant::now();
        // SAFETY: a static word.
        let began = unsafe {
            sync::wait_async(WORD.as_ptr(), 0, None, |_| {
                DONE.store(1, Ordering::Release);
                notify(&DONE, 1).unwrap();
            })
        }
        .unwrap();
        assert_eq!(began, AsyncStart::Pending);
        WORD.store(1, Ordering::Release);
        notify(&WORD, 1).unwrap();
        while DONE.load(Ordering::Acquire) == 0 {
            wait(&DONE, 0, None).unwrap();
        }
        reuse.push(start.elapsed().as_nanos() as u64);

        WORD.store(0, Ordering::Release);
        DONE.store(0, Ordering::Release);
        let start = Instant::now();
        let thread = std::thread::spawn(|| {
            let _: WaitOutcome = wait(&WORD, 0, None).unwrap();
            DONE.store(1, Ordering::Release);
            notify(&DONE, 1).unwrap();
        });
        WORD.store(1, Ordering::Release);
        notify(&WORD, 1).unwrap();
        while DONE.load(Ordering::Acquire) == 0 {
            wait(&DONE, 0, None).unwrap();
        }
        spawn.push(start.elapsed().as_nanos() as u64);
        thread.join().unwrap();
    }
    (stats(&mut reuse), stats(&mut spawn))
}

fn main() {
    if env::var("SB_NW_ROLE").is_ok() {
        child_main();
        return;
    }
    let mut pin = Pin::None;
    let mut n: u32 = 20_000;
    let mut args = env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--pin" => {
                pin = match args.next().as_deref() {
                    Some("same") => Pin::Same,
                    Some("split") => Pin::Split,
                    Some("none") => Pin::None,
                    other => panic!("--pin takes same, split or none, not {other:?}"),
                }
            }
            "--n" => n = args.next().and_then(|v| v.parse().ok()).expect("--n N"),
            _ => {} // cargo passes --bench
        }
    }
    if let Some(cpu) = pin.cpus().0 {
        pin_to(cpu);
    }
    let started = Instant::now();

    let park = ping_pong(Side::Park, 0, pin, n);
    let spin = ping_pong(Side::Spin, DEFAULT_SPINS, pin, n);
    let service = ping_pong(Side::Async, 0, pin, n);

    let seg = TestSeg::new("nw-solo");
    let word = seg.word(0);
    let notify_ns = mean_ns(200_000, || {
        notify(word, 1).unwrap();
    });
    let (mutex, _) = Mutex::init_in(&seg, 64).unwrap();
    let mutex_ns = mean_ns(1_000_000, || {
        mutex.lock(None).unwrap();
        mutex.unlock().unwrap();
    });
    let (reuse, spawned) = handoff(2_000);
    let pool = sync::service_stats();

    println!(
        concat!(
            "{{\"placement\":\"{}\",\"round_trips\":{},",
            "\"park\":{{\"median_ns\":{},\"p99_ns\":{}}},",
            "\"spin_then_park\":{{\"spins\":{},\"median_ns\":{},\"p99_ns\":{}}},",
            "\"async_service\":{{\"median_ns\":{},\"p99_ns\":{}}},",
            "\"notify_no_waiter_ns\":{:.1},\"mutex_uncontended_ns\":{:.1},",
            "\"async_handoff\":{{\"reuse_median_ns\":{},\"reuse_p99_ns\":{},",
            "\"spawn_median_ns\":{},\"spawn_p99_ns\":{},\"pool_threads_spawned\":{}}},",
            "\"elapsed_s\":{:.2}}}"
        ),
        pin.name(),
        n,
        park.0,
        park.1,
        DEFAULT_SPINS,
        spin.0,
        spin.1,
        service.0,
        service.1,
        notify_ns,
        mutex_ns,
        reuse.0,
        reuse.1,
        spawned.0,
        spawned.1,
        pool.spawned,
        started.elapsed().as_secs_f64(),
    );
}
