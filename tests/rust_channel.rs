//! The channel: in-process behaviour, header validation, corrupted rings (proptest), and real
//! child processes (the test binary re-run with `SB_CHANNEL_CHILD` set) for throughput, several
//! producers, end of stream and peer death. (Under `cfg(loom)` the channel has no shared-memory
//! entry points; its loom models live in `src/channel/loom_tests.rs`.)
#![cfg(not(loom))]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use proptest::prelude::*;
use shared_buffer::channel::{
    Channel, ChannelError, Config, Mode, WaitOptions, error_code, layout, max_message, region_size,
};
use shared_buffer::{Options, Segment, SegmentId};

const CHILD_ENV: &str = "SB_CHANNEL_CHILD";
const SEG_ENV: &str = "SB_CHANNEL_SEG";
const ARG_ENV: &str = "SB_CHANNEL_ARG";

// ---- helpers ------------------------------------------------------------------------------

/// A named segment that is unlinked when the test ends, however it ends.
struct Named {
    id: SegmentId,
    name: String,
}

impl Named {
    fn new(tag: &str) -> Self {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "/sb-chan-{tag}-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        Self {
            id: SegmentId::name(&name).unwrap(),
            name,
        }
    }

    fn channel(&self, capacity: u32, mode: Mode) -> Channel {
        let segment =
            Segment::create(&self.id, region_size(capacity), &Options::default()).unwrap();
        Channel::create(segment, Config { capacity, mode }).unwrap()
    }
}

impl Drop for Named {
    fn drop(&mut self) {
        let _ = Segment::unlink(&self.id);
    }
}

/// An 8-byte-aligned heap region for in-process channels.
struct Heap(Vec<u64>);

impl Heap {
    fn new(len: usize) -> Self {
        Self(vec![0; len.div_ceil(8)])
    }
    fn ptr(&mut self) -> *mut u8 {
        self.0.as_mut_ptr().cast()
    }
    fn len(&self) -> usize {
        self.0.len() * 8
    }
    fn bytes(&mut self) -> &mut [u8] {
        let len = self.len();
        // SAFETY: the Vec owns len bytes; u8 has no alignment or validity requirements.
        unsafe { std::slice::from_raw_parts_mut(self.ptr(), len) }
    }
    fn channel(&mut self, capacity: u32, mode: Mode) -> Channel {
        // SAFETY: the heap region outlives every channel of the test (tests drop it last).
        unsafe { Channel::create_raw(self.ptr(), self.len(), Config { capacity, mode }) }.unwrap()
    }
    fn open(&mut self) -> std::io::Result<Channel> {
        // SAFETY: as above.
        unsafe { Channel::open_raw(self.ptr(), self.len()) }
    }
}

fn fast() -> WaitOptions {
    WaitOptions {
        spin: 16,
        liveness_interval: Duration::from_millis(50),
    }
}

fn code(result: std::io::Result<impl std::fmt::Debug>) -> i32 {
    error_code(&result.expect_err("an error"))
}

/// A deterministic message: its size comes from (producer, seq), its bytes from a xorshift
/// seeded with both, and with `tagged` its first 8 bytes are the producer and the sequence.
fn message(producer: u32, seq: u32, min: usize, max: usize, tagged: bool) -> Vec<u8> {
    let mut x =
        (u64::from(producer) << 32 | u64::from(seq)).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let len = min + (next() % (max - min + 1) as u64) as usize;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        out.extend_from_slice(&next().to_le_bytes());
    }
    out.truncate(len);
    if tagged {
        out[..4].copy_from_slice(&producer.to_le_bytes());
        out[4..8].copy_from_slice(&seq.to_le_bytes());
    }
    out
}

/// FNV-1a over a stream of messages (length-prefixed, so boundaries count).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Checksum(u64);

impl Checksum {
    fn new() -> Self {
        Self(0xcbf2_9ce4_8422_2325)
    }
    fn add(&mut self, msg: &[u8]) {
        for &b in (msg.len() as u32).to_le_bytes().iter().chain(msg) {
            self.0 ^= u64::from(b);
            self.0 = self.0.wrapping_mul(0x100_0000_01b3);
        }
    }
}

fn spawn_child(role: &str, seg: &Named, arg: &str) -> Child {
    Command::new(std::env::current_exe().unwrap())
        .args(["child_entry", "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, role)
        .env(SEG_ENV, &seg.name)
        .env(ARG_ENV, arg)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Reads the child's stdout until a line containing `prefix`; returns what follows it.
fn read_line(child: &mut Child, prefix: &str) -> String {
    let stdout = child.stdout.as_mut().unwrap();
    let mut reader = BufReader::new(stdout);
    let mut line = String::new();
    loop {
        line.clear();
        assert!(
            reader.read_line(&mut line).unwrap() > 0,
            "child ended before printing {prefix}"
        );
        // The harness may have printed "test child_entry ... " on the same line.
        if let Some(at) = line.find(prefix) {
            return line[at + prefix.len()..].trim_end().to_owned();
        }
    }
}

// ---- the children -------------------------------------------------------------------------

const SPSC_CAPACITY: u32 = 8192;
const SPSC_COUNT: u32 = 100_000;
const MPSC_CAPACITY: u32 = 16384;
const MPSC_COUNT: u32 = 30_000;

/// Not a test on its own: the entry point of the child processes the other tests start.
#[test]
fn child_entry() {
    let Ok(role) = std::env::var(CHILD_ENV) else {
        return;
    };
    let name = std::env::var(SEG_ENV).unwrap();
    let arg = std::env::var(ARG_ENV).unwrap_or_default();
    let id = SegmentId::name(&name).unwrap();
    let channel = Channel::open(Segment::open(&id, None, &Options::default()).unwrap()).unwrap();
    let max = channel.max_message();
    match role.as_str() {
        "spsc_producer" => {
            let mut tx = channel.sender(fast()).unwrap();
            let mut sum = Checksum::new();
            for seq in 0..SPSC_COUNT {
                let msg = message(0, seq, 0, max, false);
                sum.add(&msg);
                if seq % 2 == 0 {
                    tx.send(&msg, Some(Duration::from_secs(30))).unwrap();
                } else {
                    let mut slot = tx
                        .reserve(msg.len(), Some(Duration::from_secs(30)))
                        .unwrap();
                    slot.copy_from_slice(&msg);
                    slot.commit();
                }
            }
            tx.close();
            println!("checksum={}", sum.0);
        }
        "mpsc_producer" => {
            let producer: u32 = arg.parse().unwrap();
            let mut tx = channel.sender(fast()).unwrap();
            let mut sum = Checksum::new();
            for seq in 0..MPSC_COUNT {
                let msg = message(producer, seq, 8, max, true);
                sum.add(&msg);
                tx.send(&msg, Some(Duration::from_secs(30))).unwrap();
            }
            drop(tx); // frees the slot; MPSC senders do not close on drop
            println!("checksum={}", sum.0);
        }
        "sleepy_producer" => {
            let mut tx = channel.sender(fast()).unwrap();
            for seq in 0..10 {
                tx.send(&message(0, seq, 0, 64, false), None).unwrap();
            }
            println!("ready");
            std::thread::sleep(Duration::from_secs(60));
        }
        "stuck_producer" => {
            let mut tx = channel.sender(fast()).unwrap();
            tx.send(b"before", None).unwrap();
            let slot = tx.try_reserve(100).unwrap();
            println!("ready");
            std::thread::sleep(Duration::from_secs(60));
            drop(slot);
        }
        "sleepy_consumer" => {
            let _rx = channel.receiver(fast()).unwrap();
            println!("ready");
            std::thread::sleep(Duration::from_secs(60));
        }
        other => panic!("unknown child role {other}"),
    }
    std::process::exit(0);
}

// ---- cross-process ------------------------------------------------------------------------

#[test]
fn spsc_100k_messages_from_a_child_process() {
    let seg = Named::new("spsc");
    let channel = seg.channel(SPSC_CAPACITY, Mode::Spsc);
    let max = channel.max_message();
    let mut rx = channel.receiver(fast()).unwrap();
    let mut child = spawn_child("spsc_producer", &seg, "");
    let mut sum = Checksum::new();
    let mut buf = Vec::new();
    let mut seq = 0u32;
    let (mut big, mut empty) = (0, 0);
    loop {
        // Alternate copying and in-place receives.
        let got: Option<Vec<u8>> = if seq % 3 == 0 {
            rx.recv_ref(Some(Duration::from_secs(30)))
                .unwrap()
                .map(<[u8]>::to_vec)
        } else {
            rx.recv_into(&mut buf, Some(Duration::from_secs(30)))
                .unwrap()
                .map(|_| buf.clone())
        };
        let Some(msg) = got else { break };
        assert_eq!(msg, message(0, seq, 0, max, false), "message {seq}");
        big += usize::from(msg.len() > max / 2);
        empty += usize::from(msg.is_empty());
        sum.add(&msg);
        seq += 1;
    }
    assert_eq!(seq, SPSC_COUNT);
    assert!(
        big > 1000 && empty > 0,
        "sizes cover 0..=max: {big} {empty}"
    );
    let theirs: u64 = read_line(&mut child, "checksum=").parse().unwrap();
    assert_eq!(sum.0, theirs);
    assert!(child.wait().unwrap().success());
    // The stream stays ended.
    assert_eq!(rx.recv(Some(Duration::ZERO)).unwrap(), None);
}

#[test]
fn mpsc_three_producer_processes() {
    let seg = Named::new("mpsc");
    let channel = seg.channel(MPSC_CAPACITY, Mode::Mpsc);
    let max = channel.max_message();
    let mut rx = channel.receiver(fast()).unwrap();
    let mut children: Vec<Child> = (0..3)
        .map(|p| spawn_child("mpsc_producer", &seg, &p.to_string()))
        .collect();
    let mut next = [0u32; 3];
    let mut sums = [Checksum::new(); 3];
    for _ in 0..3 * MPSC_COUNT {
        let msg = rx.recv(Some(Duration::from_secs(30))).unwrap().unwrap();
        let p = u32::from_le_bytes(msg[..4].try_into().unwrap());
        let seq = u32::from_le_bytes(msg[4..8].try_into().unwrap());
        assert!(p < 3, "producer {p}");
        assert_eq!(seq, next[p as usize], "order of producer {p}");
        assert_eq!(msg, message(p, seq, 8, max, true));
        sums[p as usize].add(&msg);
        next[p as usize] += 1;
    }
    for (p, child) in children.iter_mut().enumerate() {
        let theirs: u64 = read_line(child, "checksum=").parse().unwrap();
        assert_eq!(sums[p].0, theirs, "checksum of producer {p}");
        assert!(child.wait().unwrap().success());
    }
    // Producers that detached cleanly leave the channel open and empty...
    assert_eq!(code(rx.try_recv()), libc::EAGAIN);
    assert_eq!(
        code(rx.recv(Some(Duration::from_millis(120)))),
        libc::ETIMEDOUT
    );
    // ...until a sender closes it.
    channel.sender(fast()).unwrap().close();
    assert_eq!(rx.recv(None).unwrap(), None);
}

/// Kills `child` after `delay` on another thread, reaps it, and returns when it was killed.
fn kill_later(mut child: Child, delay: Duration) -> std::thread::JoinHandle<Instant> {
    std::thread::spawn(move || {
        std::thread::sleep(delay);
        child.kill().unwrap(); // SIGKILL
        let killed = Instant::now();
        child.wait().unwrap();
        killed
    })
}

#[test]
fn consumer_learns_that_the_producer_was_killed() {
    let seg = Named::new("kill-tx");
    let channel = seg.channel(4096, Mode::Spsc);
    let mut rx = channel.receiver(fast()).unwrap();
    let mut child = spawn_child("sleepy_producer", &seg, "");
    read_line(&mut child, "ready");
    for seq in 0..10 {
        let msg = rx.recv(Some(Duration::from_secs(10))).unwrap().unwrap();
        assert_eq!(msg, message(0, seq, 0, 64, false));
    }
    let killer = kill_later(child, Duration::from_millis(200));
    let err = rx.recv(Some(Duration::from_secs(20))).unwrap_err();
    let noticed = Instant::now();
    let killed = killer.join().unwrap();
    assert_eq!(error_code(&err), libc::ECONNRESET, "{err}");
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionReset);
    let delay = noticed.saturating_duration_since(killed);
    assert!(
        delay < Duration::from_millis(50 + 1500),
        "noticed {delay:?} after the kill"
    );
}

#[test]
fn consumer_learns_that_a_producer_died_holding_a_reservation() {
    let seg = Named::new("kill-stuck");
    let channel = seg.channel(4096, Mode::Mpsc);
    let mut rx = channel.receiver(fast()).unwrap();
    let mut child = spawn_child("stuck_producer", &seg, "");
    read_line(&mut child, "ready");
    assert_eq!(rx.recv(None).unwrap().unwrap(), b"before");
    let killer = kill_later(child, Duration::from_millis(200));
    let err = rx.recv(Some(Duration::from_secs(20))).unwrap_err();
    let noticed = Instant::now();
    let killed = killer.join().unwrap();
    assert_eq!(error_code(&err), libc::ECONNRESET, "{err}");
    let delay = noticed.saturating_duration_since(killed);
    assert!(
        delay < Duration::from_millis(2 * 50 + 1500),
        "noticed {delay:?} after the kill"
    );
}

#[test]
fn producer_learns_that_the_consumer_was_killed() {
    let seg = Named::new("kill-rx");
    let channel = seg.channel(4096, Mode::Spsc);
    let mut child = spawn_child("sleepy_consumer", &seg, "");
    read_line(&mut child, "ready");
    let mut tx = channel.sender(fast()).unwrap();
    while tx.try_send(&[7; 100]).is_ok() {}
    assert_eq!(code(tx.try_send(&[7; 100])), libc::EAGAIN);
    let killer = kill_later(child, Duration::from_millis(200));
    let err = tx
        .send(&[7; 100], Some(Duration::from_secs(20)))
        .unwrap_err();
    let noticed = Instant::now();
    let killed = killer.join().unwrap();
    assert_eq!(error_code(&err), libc::ECONNRESET, "{err}");
    assert!(noticed.saturating_duration_since(killed) < Duration::from_millis(50 + 1500));
}

// ---- in process ---------------------------------------------------------------------------

#[test]
fn round_trip_sizes_wrap_and_end_of_stream() {
    let mut heap = Heap::new(region_size(256));
    let channel = heap.channel(256, Mode::Spsc);
    assert_eq!(channel.max_message(), 120);
    assert_eq!(max_message(256), 120);
    let mut tx = channel.sender(fast()).unwrap();
    let mut rx = channel.receiver(fast()).unwrap();
    // Many laps with every size: wraps happen at every offset.
    for round in 0..50u32 {
        for len in [0usize, 1, 7, 8, 9, 63, 64, 119, 120] {
            let msg = message(round, len as u32, len, len, false);
            tx.try_send(&msg).unwrap();
            assert_eq!(rx.try_recv().unwrap().unwrap(), msg);
        }
    }
    assert_eq!(code(rx.try_recv()), libc::EAGAIN);
    assert_eq!(code(tx.try_send(&[0; 121])), libc::EMSGSIZE);
    let big = tx.try_send(&[0; 121]).unwrap_err();
    assert_eq!(big.raw_os_error(), Some(libc::EMSGSIZE));
    tx.send(b"last", None).unwrap();
    tx.close();
    assert!(channel.is_closed());
    assert_eq!(rx.recv(None).unwrap().unwrap(), b"last");
    assert_eq!(rx.recv(None).unwrap(), None);
    assert_eq!(rx.try_recv().unwrap(), None);
    drop(rx);
    drop(channel);
    drop(heap);
}

#[test]
fn full_ring_pushes_back_and_never_drops() {
    let mut heap = Heap::new(region_size(128));
    let channel = heap.channel(128, Mode::Spsc);
    let mut tx = channel.sender(fast()).unwrap();
    let mut rx = channel.receiver(fast()).unwrap();
    let mut sent = 0u32;
    while tx.try_send(&sent.to_le_bytes()).is_ok() {
        sent += 1;
    }
    assert_eq!(sent, 128 / 16);
    assert_eq!(code(tx.try_send(b"x")), libc::EAGAIN);
    let started = Instant::now();
    assert_eq!(
        code(tx.send(b"x", Some(Duration::from_millis(100)))),
        libc::ETIMEDOUT
    );
    assert!(started.elapsed() >= Duration::from_millis(100));
    assert!(started.elapsed() < Duration::from_secs(2));
    for i in 0..sent {
        assert_eq!(rx.try_recv().unwrap().unwrap(), i.to_le_bytes());
    }
    assert_eq!(
        code(rx.recv(Some(Duration::from_millis(60)))),
        libc::ETIMEDOUT
    );
}

#[test]
fn zero_copy_send_and_receive() {
    let mut heap = Heap::new(region_size(1024));
    let channel = heap.channel(1024, Mode::Mpsc);
    let mut tx = channel.sender(fast()).unwrap();
    let mut rx = channel.receiver(fast()).unwrap();
    {
        let mut slot = tx.try_reserve(5).unwrap();
        assert_eq!(&*slot, &[0; 5], "reserved bytes start out zero");
        slot.copy_from_slice(b"hello");
        slot.commit();
    }
    // Dropped without commit: skipped by the receiver.
    let mut abandoned = tx.try_reserve(300).unwrap();
    abandoned.fill(0xEE);
    drop(abandoned);
    tx.try_send(b"world").unwrap();
    assert_eq!(rx.try_recv_ref().unwrap().unwrap(), b"hello");
    assert_eq!(rx.try_recv_ref().unwrap().unwrap(), b"world");
    rx.release();
    assert_eq!(code(rx.try_recv_ref()), libc::EAGAIN);
    // The abandoned record's bytes were zeroed: after many laps no 0xEE shows up.
    for i in 0..200u32 {
        let msg = vec![0u8; (i % 400) as usize];
        tx.try_send(&msg).unwrap();
        assert_eq!(rx.try_recv().unwrap().unwrap(), msg);
    }
}

#[test]
fn attach_rules() {
    let mut heap = Heap::new(region_size(1024));
    let spsc = heap.channel(1024, Mode::Spsc);
    let tx = spsc.sender(fast()).unwrap();
    assert_eq!(code(spsc.sender(fast())), libc::EBUSY);
    let mut rx = spsc.receiver(fast()).unwrap();
    assert_eq!(code(spsc.receiver(fast())), libc::EBUSY);
    drop(tx); // SPSC: closes
    assert_eq!(code(spsc.sender(fast())), libc::EPIPE);
    assert_eq!(rx.recv(None).unwrap(), None);
    drop(rx);
    assert_eq!(code(spsc.receiver(fast())), libc::EPIPE);

    let mut heap2 = Heap::new(region_size(1024));
    let mpsc = heap2.channel(1024, Mode::Mpsc);
    let senders: Vec<_> = (0..layout::MAX_PRODUCERS)
        .map(|_| mpsc.sender(fast()).unwrap())
        .collect();
    assert_eq!(code(mpsc.sender(fast())), libc::EBUSY);
    drop(senders);
    let mut tx = mpsc.sender(fast()).unwrap();
    let rx = mpsc.receiver(fast()).unwrap();
    drop(rx); // the receiver went away: sends fail
    assert_eq!(code(tx.try_send(b"x")), libc::EPIPE);
    assert_eq!(code(tx.send(b"x", None)), libc::EPIPE);
}

#[test]
fn mpsc_threads_under_contention() {
    const PRODUCERS: u32 = 4;
    const COUNT: u32 = 20_000;
    let mut heap = Heap::new(region_size(512));
    let channel = heap.channel(512, Mode::Mpsc);
    let max = channel.max_message();
    let mut rx = channel.receiver(fast()).unwrap();
    let threads: Vec<_> = (0..PRODUCERS)
        .map(|p| {
            let mut tx = channel.sender(fast()).unwrap();
            std::thread::spawn(move || {
                for seq in 0..COUNT {
                    let msg = message(p, seq, 8, max, true);
                    if seq % 5 == 0 {
                        let mut slot = tx.reserve(msg.len(), None).unwrap();
                        slot.copy_from_slice(&msg);
                        slot.commit();
                    } else {
                        tx.send(&msg, None).unwrap();
                    }
                }
            })
        })
        .collect();
    let mut next = [0u32; PRODUCERS as usize];
    for _ in 0..PRODUCERS * COUNT {
        let msg = rx.recv(Some(Duration::from_secs(30))).unwrap().unwrap();
        let p = u32::from_le_bytes(msg[..4].try_into().unwrap());
        let seq = u32::from_le_bytes(msg[4..8].try_into().unwrap());
        assert_eq!(seq, next[p as usize]);
        assert_eq!(msg, message(p, seq, 8, max, true));
        next[p as usize] += 1;
    }
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(code(rx.try_recv()), libc::EAGAIN);
}

#[test]
fn blocking_receive_wakes_on_send_and_on_close() {
    let mut heap = Heap::new(region_size(4096));
    let channel = heap.channel(4096, Mode::Spsc);
    let mut rx = channel.receiver(WaitOptions { spin: 0, ..fast() }).unwrap();
    let mut tx = channel.sender(WaitOptions { spin: 0, ..fast() }).unwrap();
    let t = std::thread::spawn(move || {
        for i in 0..1000u32 {
            tx.send(&i.to_le_bytes(), None).unwrap();
            if i % 100 == 0 {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        std::thread::sleep(Duration::from_millis(20));
        tx.close();
    });
    for i in 0..1000u32 {
        assert_eq!(rx.recv(None).unwrap().unwrap(), i.to_le_bytes());
    }
    let started = Instant::now();
    assert_eq!(rx.recv(None).unwrap(), None);
    assert!(started.elapsed() < Duration::from_secs(2));
    t.join().unwrap();
}

// ---- header validation --------------------------------------------------------------------

fn set_word(heap: &mut Heap, offset: usize, value: u32) {
    heap.bytes()[offset..offset + 4].copy_from_slice(&value.to_le_bytes());
}

fn open_code(heap: &mut Heap) -> i32 {
    let err = heap.open().expect_err("open should fail");
    assert!(ChannelError::find(&err).is_some(), "{err}");
    error_code(&err)
}

#[test]
fn open_refuses_bad_headers() {
    let cap = 1024;
    let fresh = || {
        let mut heap = Heap::new(region_size(cap));
        heap.channel(cap, Mode::Spsc);
        heap
    };
    let mut ok = fresh();
    let channel = ok.open().unwrap();
    assert_eq!(
        (channel.capacity(), channel.mode(), channel.max_message()),
        (cap, Mode::Spsc, 504)
    );
    drop(channel);

    let cases: &[(usize, u32, i32)] = &[
        (layout::OFF_MAGIC, 0, libc::EAGAIN),
        (layout::OFF_MAGIC, 0x1234_5678, libc::EBADMSG),
        (layout::OFF_VERSION, 2, libc::EPROTONOSUPPORT),
        (layout::OFF_HEADER_SIZE, 512, libc::EBADMSG),
        (layout::OFF_CAPACITY, 1000, libc::EBADMSG),
        (layout::OFF_CAPACITY, 32, libc::EBADMSG),
        (layout::OFF_CAPACITY, 2048, libc::EBADMSG), // larger than the region
        (layout::OFF_MAX_MESSAGE, 1000, libc::EBADMSG),
        (layout::OFF_MODE, 2, libc::EBADMSG),
        (layout::OFF_FLAGS, 0x10, libc::EBADMSG),
        (layout::OFF_MAX_PRODUCERS, 8, libc::EBADMSG),
        (layout::OFF_RX_WAITING, 7, libc::EBADMSG),
        (layout::OFF_HEAD, 4, libc::EBADMSG), // not a multiple of 8
        (layout::OFF_HEAD, 0x8000_0000, libc::EBADMSG), // bit 31
        (layout::OFF_TAIL, 2048, libc::EBADMSG), // more than capacity ahead
        (layout::OFF_TAIL, 12, libc::EBADMSG), // not a multiple of 8
        (layout::OFF_TAIL, 0x7FFF_FFF8, libc::EBADMSG), // behind head
    ];
    for &(offset, value, expected) in cases {
        let mut heap = fresh();
        set_word(&mut heap, offset, value);
        assert_eq!(open_code(&mut heap), expected, "word {offset} = {value:#x}");
    }
    // A closed tail at a valid position is fine.
    let mut heap = fresh();
    set_word(&mut heap, layout::OFF_TAIL, layout::TAIL_CLOSED);
    assert!(heap.open().unwrap().is_closed());
    // Too small a region.
    let mut small = Heap::new(100);
    assert_eq!(open_code(&mut small), libc::EINVAL);
}

#[test]
fn create_refuses_bad_configs() {
    let mut heap = Heap::new(region_size(1024));
    for capacity in [0, 32, 1000, 1 << 31] {
        // SAFETY: the heap region outlives the call.
        let err = unsafe {
            Channel::create_raw(
                heap.ptr(),
                heap.len(),
                Config {
                    capacity,
                    mode: Mode::Spsc,
                },
            )
        }
        .unwrap_err();
        assert_eq!(error_code(&err), libc::EINVAL, "capacity {capacity}");
    }
    // SAFETY: as above.
    let err = unsafe {
        Channel::create_raw(
            heap.ptr(),
            heap.len(),
            Config {
                capacity: 2048,
                mode: Mode::Spsc,
            },
        )
    }
    .unwrap_err();
    assert_eq!(error_code(&err), libc::EINVAL);
    // A segment of the wrong size.
    let seg = Named::new("small");
    let segment = Segment::create(&seg.id, 4096, &Options::default()).unwrap();
    let err = Channel::create(
        segment,
        Config {
            capacity: 4096,
            mode: Mode::Mpsc,
        },
    )
    .unwrap_err();
    assert_eq!(error_code(&err), libc::EINVAL);
}

#[test]
fn layout_table_is_complete() {
    let names: Vec<&str> = layout::TABLE.iter().map(|(n, _)| *n).collect();
    for needed in [
        "MAGIC",
        "VERSION",
        "HEADER_SIZE",
        "OFF_HEAD",
        "OFF_TAIL",
        "OFF_RX_WAITING",
        "OFF_TX_WAITING",
        "OFF_PRODUCER_PIDS",
        "REC_COMMITTED",
        "REC_SKIP",
        "TAIL_CLOSED",
    ] {
        assert!(names.contains(&needed), "{needed}");
    }
    assert_eq!(layout::region_size(64), 1088);
}

// ---- proptest: garbage never panics or hangs ----------------------------------------------

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, .. ProptestConfig::default() })]

    /// Entirely random header bytes.
    #[test]
    fn open_random_header_never_panics(header in proptest::collection::vec(any::<u8>(), 1024)) {
        let mut heap = Heap::new(region_size(256));
        heap.bytes()[..1024].copy_from_slice(&header);
        if let Ok(channel) = heap.open() {
            if let Ok(mut rx) = channel.receiver(fast()) {
                for _ in 0..64 {
                    if !matches!(rx.try_recv(), Ok(Some(_))) { break; }
                }
            }
        }
    }

    /// A valid header with a few words replaced: gets past the magic check far more often.
    #[test]
    fn open_mutated_header_never_panics(
        edits in proptest::collection::vec((0usize..256, any::<u32>()), 1..6),
        mpsc in any::<bool>(),
    ) {
        let mut heap = Heap::new(region_size(256));
        drop(heap.channel(256, if mpsc { Mode::Mpsc } else { Mode::Spsc }));
        for (word, value) in edits {
            set_word(&mut heap, word * 4, value);
        }
        if let Ok(channel) = heap.open() {
            if let Ok(mut rx) = channel.receiver(fast()) {
                let _ = rx.try_recv();
            }
            if let Ok(mut tx) = channel.sender(fast()) {
                let _ = tx.try_send(b"probe");
            }
        }
    }

    /// Random bytes in the data area and random (valid) positions: receiving returns messages,
    /// `EAGAIN`, `ETIMEDOUT` or `EBADMSG`, never panics, and each call returns.
    #[test]
    fn corrupted_ring_never_panics_or_hangs(
        data in proptest::collection::vec(any::<u8>(), 256),
        head in 0u32..(1 << 28),
        used in 0u32..=32,
        commit_words in proptest::collection::vec((0usize..32, 0u32..600, any::<bool>()), 0..8),
        closed in any::<bool>(),
    ) {
        let cap = 256u32;
        let mut heap = Heap::new(region_size(cap));
        drop(heap.channel(cap, Mode::Spsc));
        heap.bytes()[layout::OFF_DATA..].copy_from_slice(&data);
        // Plausible commit words at record boundaries, so that parsing goes deeper.
        for (slot, len, skip) in commit_words {
            let word = layout::REC_COMMITTED | if skip { layout::REC_SKIP } else { 0 } | len;
            set_word(&mut heap, layout::OFF_DATA + slot * 8, word);
        }
        let head = (head * 8) & layout::POS_MASK;
        let tail = head.wrapping_add(used * 8) & layout::POS_MASK;
        set_word(&mut heap, layout::OFF_HEAD, head);
        set_word(&mut heap, layout::OFF_TAIL, tail | if closed { layout::TAIL_CLOSED } else { 0 });
        let channel = heap.open().unwrap();
        let mut rx = channel.receiver(WaitOptions { spin: 2, liveness_interval: Duration::from_millis(1) }).unwrap();
        let started = Instant::now();
        for _ in 0..64 {
            match rx.recv(Some(Duration::from_millis(1))) {
                Ok(Some(msg)) => prop_assert!(msg.len() <= channel.max_message()),
                Ok(None) => break,
                Err(err) => {
                    let c = error_code(&err);
                    prop_assert!(
                        [libc::ETIMEDOUT, libc::EBADMSG].contains(&c),
                        "unexpected {err}"
                    );
                    if c == libc::EBADMSG { break; }
                }
            }
        }
        prop_assert!(started.elapsed() < Duration::from_secs(5));
    }
}
