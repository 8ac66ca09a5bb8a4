//! Channel benchmark between two processes: one-way throughput and round-trip latency.
//!
//! ```text
//! cargo bench --bench native_ring -- [--size 64 --size 4096 ...] [--pin same|split|none]
//!     [--seconds 1.5] [--warmup 0] [--capacity BYTES] [--mode spsc|mpsc] [--zero-copy]
//!     [--round-trips 20000] [--latency-size 64]
//! ```
//!
//! The parent process is the consumer; it re-runs this binary as the child (the producer, or the
//! echo side for latency), with `NATIVE_RING_ROLE` set. Throughput: the child sends messages of
//! one size for `--warmup` + `--seconds`, copying each from a buffer (or filling it in place with
//! `--zero-copy`), then closes; the parent copies each out (or reads it in place) and counts those
//! after the first `--warmup` seconds (from its first message), as the TypeScript pairs count.
//! Every message carries its sequence number in its first 4 bytes and a byte derived from it in
//! its last, and every receiver checks both, as the TypeScript pairs of `bench/streams.ts` do:
//! both sides of a comparison do the same work per message.
//! Latency: ping-pong over two channels, once with both sides parking at once (`spin: 0`, every
//! hop wakes a parked peer through the futex) and once with the default spin-then-park.
//!
//! `--pin same` puts both processes on CPU 0, `split` the parent on CPU 0 and the child on CPU 1,
//! `none` leaves placement to the scheduler (default `split`). Prints one JSON object.

use std::process::{Child, Command};
use std::time::{Duration, Instant};

use shared_buffer::channel::{Channel, Config, Mode, WaitOptions, region_size};
use shared_buffer::{Options, Segment, SegmentId};

const ROLE: &str = "NATIVE_RING_ROLE";
const SEG: &str = "NATIVE_RING_SEG";
const SEG2: &str = "NATIVE_RING_SEG2";
const SIZE: &str = "NATIVE_RING_SIZE";
const SECS: &str = "NATIVE_RING_SECS";
const CPU: &str = "NATIVE_RING_CPU";
const ZERO_COPY: &str = "NATIVE_RING_ZERO_COPY";
const SPIN: &str = "NATIVE_RING_SPIN";

#[derive(Debug, Clone)]
struct Args {
    sizes: Vec<usize>,
    pin: String,
    seconds: f64,
    /// Seconds of the stream not counted, from its first message.
    warmup: f64,
    capacity: Option<u32>,
    mode: Mode,
    zero_copy: bool,
    round_trips: usize,
    latency_size: usize,
}

fn parse_args() -> Args {
    let mut args = Args {
        sizes: Vec::new(),
        pin: "split".into(),
        seconds: 1.5,
        warmup: 0.0,
        capacity: None,
        mode: Mode::Spsc,
        zero_copy: false,
        round_trips: 20_000,
        latency_size: 64,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = || it.next().unwrap_or_else(|| panic!("{arg} needs a value"));
        match arg.as_str() {
            "--size" => args
                .sizes
                .extend(value().split(',').map(|s| parse_size(s.trim()))),
            "--pin" => args.pin = value(),
            "--seconds" => args.seconds = value().parse().expect("--seconds"),
            "--warmup" => args.warmup = value().parse().expect("--warmup"),
            "--capacity" => args.capacity = Some(parse_size(&value()) as u32),
            "--mode" => {
                args.mode = match value().as_str() {
                    "spsc" => Mode::Spsc,
                    "mpsc" => Mode::Mpsc,
                    other => panic!("--mode spsc|mpsc, not {other}"),
                }
            }
            "--zero-copy" => args.zero_copy = true,
            "--round-trips" => args.round_trips = value().parse().expect("--round-trips"),
            "--latency-size" => args.latency_size = parse_size(&value()),
            _ => {} // cargo passes --bench; ignore what is not ours
        }
    }
    if args.sizes.is_empty() {
        args.sizes = vec![64, 4096, 65536, 1 << 20];
    }
    assert!(
        ["same", "split", "none"].contains(&args.pin.as_str()),
        "--pin same|split|none"
    );
    args
}

/// "64", "4k", "64KiB", "1m", "1MiB".
fn parse_size(text: &str) -> usize {
    let lower = text.to_ascii_lowercase();
    let digits: String = lower.chars().take_while(char::is_ascii_digit).collect();
    let unit = &lower[digits.len()..];
    let n: usize = digits.parse().unwrap_or_else(|_| panic!("bad size {text}"));
    n * match unit {
        "" | "b" => 1,
        "k" | "kib" | "kb" => 1024,
        "m" | "mib" | "mb" => 1 << 20,
        _ => panic!("bad size {text}"),
    }
}

/// The ring for a message size: room for a good many messages, at least 256 KiB.
fn capacity_for(size: usize, fixed: Option<u32>) -> u32 {
    if let Some(c) = fixed {
        return c;
    }
    let want = (size + 8) * 32;
    want.next_power_of_two().clamp(256 << 10, 16 << 20) as u32
}

/// Pins this thread to `cpu` (Linux; macOS has no CPU affinity: there a placement is refused).
#[cfg(not(target_os = "linux"))]
fn pin_to(cpu: Option<usize>) {
    if let Some(cpu) = cpu {
        panic!("pinning to CPU {cpu} needs Linux's sched_setaffinity");
    }
}

/// Pins this thread to `cpu`.
#[cfg(target_os = "linux")]
fn pin_to(cpu: Option<usize>) {
    let Some(cpu) = cpu else { return };
    // SAFETY: cpu_set_t is plain data; CPU_SET writes inside it; sched_setaffinity reads it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
            panic!(
                "sched_setaffinity({cpu}): {}",
                std::io::Error::last_os_error()
            );
        }
    }
}

fn cpus(pin: &str) -> (Option<usize>, Option<usize>) {
    match pin {
        "same" => (Some(0), Some(0)),
        "split" => (Some(0), Some(1)),
        _ => (None, None),
    }
}

struct Named(SegmentId);

impl Named {
    fn new(tag: &str) -> (Self, String) {
        let name = format!("/sbbench-ring-{tag}-{}", std::process::id());
        let id = SegmentId::name(&name).unwrap();
        let _ = Segment::unlink(&id);
        (Self(id), name)
    }
}

impl Drop for Named {
    fn drop(&mut self) {
        let _ = Segment::unlink(&self.0);
    }
}

fn populate() -> Options {
    Options {
        populate: true,
        ..Options::default()
    }
}

fn create(id: &SegmentId, capacity: u32, mode: Mode) -> Channel {
    let segment = Segment::create(id, region_size(capacity), &populate()).unwrap();
    Channel::create(segment, Config { capacity, mode }).unwrap()
}

fn open(name: &str) -> Channel {
    let id = SegmentId::name(name).unwrap();
    Channel::open(Segment::open(&id, None, &populate()).unwrap()).unwrap()
}

fn spawn(role: &str, envs: &[(&str, String)]) -> Child {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.env(ROLE, role);
    for (k, v) in envs {
        cmd.env(k, v);
    }
    cmd.spawn().unwrap()
}

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_default()
}

/// Writes `seq` into the first 4 bytes of `m` (little-endian) and `seq ^ 0x5a` into its last,
/// as `stamp` in `bench/streams.ts` (a message of fewer than 4 bytes keeps what fits).
fn stamp(m: &mut [u8], seq: u32) {
    for (k, byte) in m.iter_mut().take(4).enumerate() {
        *byte = (seq >> (8 * k)) as u8;
    }
    if let Some(last) = m.last_mut() {
        *last = (seq ^ 0x5a) as u8;
    }
}

/// Panics unless the message is `size` bytes long (`len`) and carries the stamp of `seq` (see
/// [`stamp`]); `at(k)` reads its byte `k`.
fn check(seq: u32, size: usize, len: usize, at: impl Fn(usize) -> u8) {
    // In a message of at most 4 bytes the last byte took the place of part of the number.
    let number = if size > 4 { 4 } else { size.saturating_sub(1) };
    let ok = len == size
        && (size == 0 || at(size - 1) == (seq ^ 0x5a) as u8)
        && (0..number).all(|k| at(k) == (seq >> (8 * k)) as u8);
    assert!(
        ok,
        "expected message {seq} of {size} bytes, got {len} bytes"
    );
}

// ---- children -----------------------------------------------------------------------------

fn child_main(role: &str) {
    pin_to(env(CPU).parse().ok());
    match role {
        "tx" => {
            let channel = open(&env(SEG));
            let size: usize = env(SIZE).parse().unwrap();
            let secs: f64 = env(SECS).parse().unwrap();
            let zero_copy = env(ZERO_COPY) == "1";
            let mut tx = channel.sender(WaitOptions::default()).unwrap();
            let mut payload: Vec<u8> = (0..size).map(|i| i as u8).collect();
            let stop = Instant::now() + Duration::from_secs_f64(secs);
            let batch = (4 << 20) / (size + 64) + 1;
            let mut seq = 0u32;
            'outer: loop {
                for _ in 0..batch {
                    if zero_copy {
                        let mut slot = tx.reserve(size, None).unwrap();
                        // Stamp the message in place (its first and last bytes), as a producer
                        // filling it would touch them, without paying a full copy.
                        // SAFETY: the bench's receiver follows the protocol, and nothing else
                        // of this process reaches the ring.
                        stamp(unsafe { slot.as_mut_bytes() }, seq);
                        slot.commit();
                    } else {
                        stamp(&mut payload, seq);
                        tx.send(&payload, None).unwrap();
                    }
                    seq = seq.wrapping_add(1);
                }
                if Instant::now() >= stop {
                    break 'outer;
                }
            }
            tx.close();
        }
        "echo" => {
            let ping = open(&env(SEG));
            let pong = open(&env(SEG2));
            let spin: u32 = env(SPIN).parse().unwrap();
            let options = WaitOptions {
                spin,
                ..WaitOptions::default()
            };
            let mut rx = ping.receiver(options).unwrap();
            let mut tx = pong.sender(options).unwrap();
            let mut buf = Vec::new();
            while rx.recv_into(&mut buf, None).unwrap().is_some() {
                tx.send(&buf, None).unwrap();
            }
        }
        other => panic!("unknown role {other}"),
    }
}

// ---- parent -------------------------------------------------------------------------------

struct Throughput {
    size: usize,
    capacity: u32,
    messages: u64,
    seconds: f64,
    /// CPU ns and voluntary switches of both processes per message, if the stream lasted.
    cost: Option<(f64, f64)>,
}

fn throughput(args: &Args, size: usize) -> Throughput {
    let (parent_cpu, child_cpu) = cpus(&args.pin);
    let capacity = capacity_for(size, args.capacity);
    let (named, name) = Named::new("tp");
    let channel = create(&named.0, capacity, args.mode);
    let mut rx = channel.receiver(WaitOptions::default()).unwrap();
    let mut child = spawn(
        "tx",
        &[
            (SEG, name),
            (SIZE, size.to_string()),
            (SECS, (args.warmup + args.seconds).to_string()),
            (CPU, child_cpu.map(|c| c.to_string()).unwrap_or_default()),
            (ZERO_COPY, if args.zero_copy { "1" } else { "0" }.into()),
        ],
    );
    pin_to(parent_cpu);
    let pids = [std::process::id(), child.id()];
    let mut buf = Vec::with_capacity(size);
    let timeout = Some(Duration::from_secs(30));
    // The clock starts at the first message, so process start-up is not counted, and counting
    // starts `warmup` seconds later, at message `base`.
    let mut messages = 0u64;
    let mut first = Instant::now();
    let mut start = first;
    let mut base = None;
    // What both processes used when counting starts and half-way through, while the child
    // still sends (as `Meter` in bench/streams.ts): the cost per message.
    let mut used = [Usage::of(&pids), Usage::default()];
    let mut cost = None;
    loop {
        let seq = messages as u32;
        let got = if args.zero_copy {
            match rx.recv_ref(timeout).unwrap() {
                Some(msg) => {
                    check(seq, size, msg.len(), |k| msg.get(k).unwrap_or(0));
                    true
                }
                None => false,
            }
        } else {
            let got = rx.recv_into(&mut buf, timeout).unwrap().is_some();
            if got {
                check(seq, size, buf.len(), |k| buf[k]);
            }
            got
        };
        if !got {
            break;
        }
        if messages == 0 {
            first = Instant::now();
        }
        match base {
            None if first.elapsed().as_secs_f64() >= args.warmup => {
                start = Instant::now();
                used[0] = Usage::of(&pids);
                base = Some(messages);
            }
            Some(base)
                if cost.is_none()
                    && (messages - base) % 1024 == 0
                    && start.elapsed().as_secs_f64() >= args.seconds / 2.0 =>
            {
                used[1] = Usage::of(&pids);
                cost = Some(used[1].per(&used[0], messages - base));
            }
            _ => {}
        }
        messages += 1;
    }
    let seconds = start.elapsed().as_secs_f64();
    assert!(child.wait().unwrap().success());
    pin_to(None);
    Throughput {
        size,
        capacity,
        // The one that started the clock is not counted.
        messages: base.map_or(0, |base| messages - base - 1),
        seconds,
        cost,
    }
}

/// CPU time (ns) and voluntary context switches of processes so far, every thread, from
/// `/proc/<pid>/task/*/schedstat` and `status`, as `usage` in bench/harness.ts reads them.
#[derive(Default, Clone, Copy)]
struct Usage {
    cpu_ns: u64,
    switches: u64,
}

impl Usage {
    fn of(pids: &[u32]) -> Self {
        let mut u = Self::default();
        for pid in pids {
            let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
                continue; // the process ended
            };
            for task in tasks.flatten() {
                let dir = task.path();
                let read = |name: &str| std::fs::read_to_string(dir.join(name)).unwrap_or_default();
                let first = |text: String| text.split_whitespace().next().map(str::to_owned);
                u.cpu_ns += first(read("schedstat"))
                    .and_then(|n| n.parse().ok())
                    .unwrap_or(0);
                u.switches += read("status")
                    .lines()
                    .find_map(|line| line.strip_prefix("voluntary_ctxt_switches:"))
                    .and_then(|n| n.trim().parse::<u64>().ok())
                    .unwrap_or(0);
            }
        }
        u
    }

    /// CPU ns and switches per message since `before`, over `messages` messages.
    fn per(&self, before: &Self, messages: u64) -> (f64, f64) {
        let n = messages.max(1) as f64;
        (
            self.cpu_ns.saturating_sub(before.cpu_ns) as f64 / n,
            self.switches.saturating_sub(before.switches) as f64 / n,
        )
    }
}

struct Latency {
    round_trips: usize,
    median_us: f64,
    p99_us: f64,
    mean_us: f64,
}

fn latency(args: &Args, spin: u32) -> Latency {
    let (parent_cpu, child_cpu) = cpus(&args.pin);
    let (ping_named, ping_name) = Named::new("ping");
    let (pong_named, pong_name) = Named::new("pong");
    let ping = create(&ping_named.0, 64 << 10, Mode::Spsc);
    let pong = create(&pong_named.0, 64 << 10, Mode::Spsc);
    let options = WaitOptions {
        spin,
        ..WaitOptions::default()
    };
    let mut tx = ping.sender(options).unwrap();
    let mut rx = pong.receiver(options).unwrap();
    let mut child = spawn(
        "echo",
        &[
            (SEG, ping_name),
            (SEG2, pong_name),
            (SPIN, spin.to_string()),
            (CPU, child_cpu.map(|c| c.to_string()).unwrap_or_default()),
        ],
    );
    pin_to(parent_cpu);
    let size = args.latency_size;
    let mut msg = vec![1u8; size];
    let mut buf = Vec::new();
    let warmup = args.round_trips / 10 + 10;
    let mut samples = Vec::with_capacity(args.round_trips);
    for i in 0..warmup + args.round_trips {
        let seq = i as u32;
        let t0 = Instant::now();
        stamp(&mut msg, seq);
        tx.send(&msg, None).unwrap();
        rx.recv_into(&mut buf, Some(Duration::from_secs(30)))
            .unwrap()
            .unwrap();
        check(seq, size, buf.len(), |k| buf[k]);
        if i >= warmup {
            samples.push(t0.elapsed().as_secs_f64() * 1e6);
        }
    }
    tx.close();
    assert!(child.wait().unwrap().success());
    pin_to(None);
    samples.sort_by(f64::total_cmp);
    let at = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize];
    Latency {
        round_trips: samples.len(),
        median_us: at(0.5),
        p99_us: at(0.99),
        mean_us: samples.iter().sum::<f64>() / samples.len() as f64,
    }
}

fn main() {
    if let Ok(role) = std::env::var(ROLE) {
        child_main(&role);
        return;
    }
    let args = parse_args();
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let started = Instant::now();
    let mut parts = Vec::new();
    for &size in &args.sizes {
        let t = throughput(&args, size);
        let rate = t.messages as f64 / t.seconds;
        let cost = t.cost.map_or(String::new(), |(cpu, vcs)| {
            format!(",\"cpu_ns_per_msg\":{cpu:.1},\"vcs_per_msg\":{vcs:.4}")
        });
        parts.push(format!(
            "{{\"size\":{},\"capacity\":{},\"messages\":{},\"seconds\":{:.3},\"msgs_per_s\":{:.0},\"bytes_per_s\":{:.0},\"gb_per_s\":{:.3}{}}}",
            t.size,
            t.capacity,
            t.messages,
            t.seconds,
            rate,
            rate * t.size as f64,
            rate * t.size as f64 / 1e9,
            cost
        ));
    }
    let parked = latency(&args, 0);
    let spin = latency(&args, WaitOptions::default().spin);
    let lat = |l: &Latency| {
        format!(
            "{{\"round_trips\":{},\"median_us\":{:.2},\"p99_us\":{:.2},\"mean_us\":{:.2}}}",
            l.round_trips, l.median_us, l.p99_us, l.mean_us
        )
    };
    println!(
        "{{\"bench\":\"native_ring\",\"pin\":\"{}\",\"mode\":\"{}\",\"zero_copy\":{},\"cpus\":{},\"throughput\":[{}],\"latency_size\":{},\"latency_parked\":{},\"latency_spin_then_park\":{},\"total_seconds\":{:.1}}}",
        args.pin,
        if args.mode == Mode::Spsc {
            "spsc"
        } else {
            "mpsc"
        },
        args.zero_copy,
        cpus,
        parts.join(","),
        args.latency_size,
        lat(&parked),
        lat(&spin),
        started.elapsed().as_secs_f64()
    );
}
