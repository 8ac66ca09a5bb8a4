//! The channel: in-process behaviour, header validation, corrupted rings (proptest), and real
//! child processes (the test binary re-run with `SB_CHANNEL_CHILD` set) for throughput, several
//! producers, end of stream and peer death. (Under `cfg(loom)` the channel has no shared-memory
//! entry points; its loom models live in `src/channel/loom_tests.rs`.)
#![cfg(not(loom))]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::{Duration, Instant};

use proptest::prelude::*;
use shared_buffer::channel::{
    Channel, ChannelError, ClosedBy, Config, Mode, Receiver, Sender, WaitOptions, error_code,
    layout, liveness, max_record, region_size,
};
use shared_buffer::{Options, Segment, SegmentId};
use test_support::{Heap, Scratch, await_value, rerun};

const CHILD_ENV: &str = "SB_CHANNEL_CHILD";
const SEG_ENV: &str = "SB_CHANNEL_SEG";
const ARG_ENV: &str = "SB_CHANNEL_ARG";

// ---- helpers ------------------------------------------------------------------------------

/// A channel in a new segment of `seg` (a named one: children open it by name).
fn channel_in(seg: &Scratch, capacity: u32, mode: Mode) -> Channel {
    let segment = Segment::create(&seg.0, region_size(capacity), &Options::default()).unwrap();
    Channel::create(segment, Config { capacity, mode }).unwrap()
}

/// A reservation's bytes, read through its atomics.
fn reserved(slot: &shared_buffer::channel::Reservation<'_>) -> Vec<u8> {
    slot.as_atomic()
        .iter()
        .map(|b| b.load(Ordering::Relaxed))
        .collect()
}

/// In-process channels over a [`Heap`] region.
trait HeapChannel {
    fn channel(&mut self, capacity: u32, mode: Mode) -> Channel;
    fn open(&mut self) -> shared_buffer::channel::Result<Channel>;
}

impl HeapChannel for Heap {
    fn channel(&mut self, capacity: u32, mode: Mode) -> Channel {
        // SAFETY: the heap region outlives every channel of the test (tests drop it last).
        unsafe { Channel::create_raw(self.ptr(), self.len(), Config { capacity, mode }) }.unwrap()
    }
    fn open(&mut self) -> shared_buffer::channel::Result<Channel> {
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

/// Sends messages of 56 `byte`s (records of 64 bytes) until the ring is full; how many went.
fn fill(tx: &mut Sender, byte: u8) -> u32 {
    let mut sent = 0;
    while tx.try_send(&[byte; 56]).is_ok() {
        sent += 1;
    }
    sent
}

fn code(result: shared_buffer::channel::Result<impl std::fmt::Debug>) -> i32 {
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
    // Whole words, then one copy into bytes: a copy per word is slow in a debug build, and the
    // cross-process tests make a third of a gigabyte of messages.
    let words: Vec<u64> = (0..len.div_ceil(8)).map(|_| next()).collect();
    // SAFETY: the words are initialised, any byte value is a valid u8, u8 needs no alignment,
    // and `len` bytes lie within the `8 * words.len()` bytes of the vector.
    let mut out = unsafe { std::slice::from_raw_parts(words.as_ptr().cast::<u8>(), len) }.to_vec();
    if tagged {
        out[..4].copy_from_slice(&producer.to_le_bytes());
        out[4..8].copy_from_slice(&seq.to_le_bytes());
    }
    out
}

fn spawn_child(role: &str, seg: &Scratch, arg: &str) -> Child {
    rerun("child_entry")
        .env(CHILD_ENV, role)
        .env(SEG_ENV, seg.name())
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

const SPSC_CAPACITY: u32 = 4096;
const SPSC_COUNT: u32 = 100_000;
/// Messages go up to 1.5 times the ring: one record, several fragments, more than the ring.
const SPSC_MAX_LEN: usize = SPSC_CAPACITY as usize * 3 / 2;
const MPSC_CAPACITY: u32 = 4096;
const MPSC_COUNT: u32 = 10_000;
const MPSC_MAX_LEN: usize = MPSC_CAPACITY as usize * 3 / 2;

/// Not a test on its own: the entry point of the child processes the other tests start.
#[test]
#[cfg_attr(miri, ignore = "maps a real segment or runs a process")]
fn child_entry() {
    let Ok(role) = std::env::var(CHILD_ENV) else {
        return;
    };
    let name = std::env::var(SEG_ENV).unwrap();
    let arg = std::env::var(ARG_ENV).unwrap_or_default();
    let id = SegmentId::name(&name).unwrap();
    let channel = Channel::open(Segment::open(&id, None, &Options::default()).unwrap()).unwrap();
    let max = channel.max_record();
    match role.as_str() {
        "spsc_producer" => {
            let mut tx = channel.sender(fast()).unwrap();
            for seq in 0..SPSC_COUNT {
                let msg = message(0, seq, 0, SPSC_MAX_LEN, false);
                if seq % 2 == 0 || msg.len() > max {
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
        }
        "mpsc_producer" => {
            let producer: u32 = arg.parse().unwrap();
            let mut tx = channel.sender(fast()).unwrap();
            for seq in 0..MPSC_COUNT {
                let msg = message(producer, seq, 8, MPSC_MAX_LEN, true);
                tx.send(&msg, Some(Duration::from_secs(30))).unwrap();
            }
            drop(tx); // frees the slot; MPSC senders do not close on drop
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

/// 100,000 messages of 0 to 6144 bytes through a 4096-byte ring (one record holds 2040): about
/// a third go in one record, the rest in 2 to 4 fragments, a third are longer than the ring.
#[test]
#[cfg_attr(miri, ignore = "maps a real segment or runs a process")]
fn spsc_100k_messages_from_a_child_process() {
    let seg = Scratch::named("chan-spsc");
    let channel = channel_in(&seg, SPSC_CAPACITY, Mode::Spsc);
    let max = channel.max_record();
    let mut rx = channel.receiver(fast()).unwrap();
    let mut child = spawn_child("spsc_producer", &seg, "");
    let mut buf = Vec::new();
    let mut seq = 0u32;
    let (mut fragmented, mut beyond_ring, mut empty) = (0, 0, 0);
    loop {
        // Alternate copying and in-place receives.
        let got: Option<Vec<u8>> = if seq % 3 == 0 {
            rx.recv_ref(Some(Duration::from_secs(30)))
                .unwrap()
                .map(|m| m.to_vec())
        } else {
            rx.recv_into(&mut buf, Some(Duration::from_secs(30)))
                .unwrap()
                .map(|_| buf.clone())
        };
        let Some(msg) = got else { break };
        assert_eq!(
            msg,
            message(0, seq, 0, SPSC_MAX_LEN, false),
            "message {seq}"
        );
        fragmented += usize::from(msg.len() > max);
        beyond_ring += usize::from(msg.len() > SPSC_CAPACITY as usize);
        empty += usize::from(msg.is_empty());
        seq += 1;
    }
    assert_eq!(seq, SPSC_COUNT);
    assert!(
        fragmented > 50_000 && beyond_ring > 20_000 && empty > 0,
        "sizes cover 0..=1.5 * capacity: {fragmented} {beyond_ring} {empty}"
    );
    assert!(child.wait().unwrap().success());
    // The stream stays ended.
    assert_eq!(rx.recv(Some(Duration::ZERO)).unwrap(), None);
}

/// Three producer processes, each sending 10,000 messages of 8 to 6144 bytes through a 4096-byte
/// ring: their fragments interleave in the ring, and each message comes back whole, in its
/// producer's order.
#[test]
#[cfg_attr(miri, ignore = "maps a real segment or runs a process")]
fn mpsc_three_producer_processes() {
    let seg = Scratch::named("chan-mpsc");
    let channel = channel_in(&seg, MPSC_CAPACITY, Mode::Mpsc);
    let max = channel.max_record();
    let mut fragmented = 0;
    let mut rx = channel.receiver(fast()).unwrap();
    let mut children: Vec<Child> = (0..3)
        .map(|p| spawn_child("mpsc_producer", &seg, &p.to_string()))
        .collect();
    let mut next = [0u32; 3];
    for _ in 0..3 * MPSC_COUNT {
        let msg = rx.recv(Some(Duration::from_secs(30))).unwrap().unwrap();
        let p = u32::from_le_bytes(msg[..4].try_into().unwrap());
        let seq = u32::from_le_bytes(msg[4..8].try_into().unwrap());
        assert!(p < 3, "producer {p}");
        assert_eq!(seq, next[p as usize], "order of producer {p}");
        assert_eq!(msg, message(p, seq, 8, MPSC_MAX_LEN, true));
        fragmented += usize::from(msg.len() > max);
        next[p as usize] += 1;
    }
    assert!(fragmented > 3 * MPSC_COUNT as usize / 2, "{fragmented}");
    for child in &mut children {
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

/// Kills `child` from another thread once this process's side is parked on the channel in
/// `seg` (its waiter word at `offset`, `OFF_RX_WAITING` or `OFF_TX_WAITING`, reads 1), so that a
/// parked call is the one that notices; then reaps it.
fn kill_when_parked(mut child: Child, seg: &Scratch, offset: usize) -> std::thread::JoinHandle<()> {
    let segment = Segment::open(&seg.0, None, &Options::default()).unwrap();
    std::thread::spawn(move || {
        await_value(segment.atomic_u32(offset), 1);
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
    })
}

#[test]
#[cfg_attr(miri, ignore = "maps a real segment or runs a process")]
fn consumer_learns_that_the_producer_was_killed() {
    let seg = Scratch::named("chan-kill-tx");
    let channel = channel_in(&seg, 4096, Mode::Spsc);
    let mut rx = channel.receiver(fast()).unwrap();
    let mut child = spawn_child("sleepy_producer", &seg, "");
    read_line(&mut child, "ready");
    for seq in 0..10 {
        let msg = rx.recv(Some(Duration::from_secs(10))).unwrap().unwrap();
        assert_eq!(msg, message(0, seq, 0, 64, false));
    }
    let killer = kill_when_parked(child, &seg, layout::OFF_RX_WAITING);
    // Noticed, not timed out: the 20 s bound is only against a hang.
    let err = rx.recv(Some(Duration::from_secs(20))).unwrap_err();
    killer.join().unwrap();
    assert_eq!(error_code(&err), libc::ECONNRESET, "{err}");
    assert!(matches!(err, ChannelError::PeerDied(_)), "{err}");
    assert_eq!(
        std::io::Error::from(err).kind(),
        std::io::ErrorKind::ConnectionReset
    );
}

#[test]
#[cfg_attr(miri, ignore = "maps a real segment or runs a process")]
fn consumer_learns_that_a_producer_died_holding_a_reservation() {
    let seg = Scratch::named("chan-kill-stuck");
    let channel = channel_in(&seg, 4096, Mode::Mpsc);
    let mut rx = channel.receiver(fast()).unwrap();
    let mut child = spawn_child("stuck_producer", &seg, "");
    read_line(&mut child, "ready");
    assert_eq!(rx.recv(None).unwrap().unwrap(), b"before");
    let killer = kill_when_parked(child, &seg, layout::OFF_RX_WAITING);
    let err = rx.recv(Some(Duration::from_secs(20))).unwrap_err();
    killer.join().unwrap();
    assert_eq!(error_code(&err), libc::ECONNRESET, "{err}");
    assert_eq!(rx.take_dead_senders().len(), 1);
}

#[test]
#[cfg_attr(miri, ignore = "maps a real segment or runs a process")]
fn producer_learns_that_the_consumer_was_killed() {
    let seg = Scratch::named("chan-kill-rx");
    let channel = channel_in(&seg, 4096, Mode::Spsc);
    let mut child = spawn_child("sleepy_consumer", &seg, "");
    read_line(&mut child, "ready");
    let mut tx = channel.sender(fast()).unwrap();
    while tx.try_send(&[7; 100]).is_ok() {}
    assert_eq!(code(tx.try_send(&[7; 100])), libc::EAGAIN);
    let killer = kill_when_parked(child, &seg, layout::OFF_TX_WAITING);
    let err = tx
        .send(&[7; 100], Some(Duration::from_secs(20)))
        .unwrap_err();
    killer.join().unwrap();
    assert_eq!(error_code(&err), libc::ECONNRESET, "{err}");
}

// ---- in process ---------------------------------------------------------------------------

#[test]
fn round_trip_sizes_wrap_and_end_of_stream() {
    let mut heap = Heap::new(region_size(256));
    let channel = heap.channel(256, Mode::Spsc);
    assert_eq!(channel.max_record(), 120);
    assert_eq!(max_record(256), 120);
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
    // try_send takes one record; send splits longer messages.
    let big = tx.try_send(&[0; 121]).unwrap_err();
    assert_eq!(error_code(&big), libc::EMSGSIZE);
    assert!(big.to_string().contains("use send"), "{big}");
    tx.send(&[9; 121], None).unwrap();
    assert_eq!(rx.try_recv().unwrap().unwrap(), [9; 121]);
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
    for i in 0..sent {
        assert_eq!(rx.try_recv().unwrap().unwrap(), i.to_le_bytes());
    }
    assert_eq!(
        code(rx.recv(Some(Duration::from_millis(60)))),
        libc::ETIMEDOUT
    );
}

#[test]
fn a_receiver_stores_head_at_once_and_wakes_parked_senders_once_half_the_ring_is_free() {
    // `tx_waiting` stored by hand stands for a parked sender: a look that wakes it takes it
    // (swaps it to 0, then wakes the futex). The receiver looks every quarter ring here, and
    // the look at a quarter leaves it parked.
    const CAP: u32 = 4096;
    let mut heap = Heap::new(region_size(CAP));
    let channel = heap.channel(CAP, Mode::Spsc);
    // No spin, and no liveness check (which ends a park) for an hour.
    let patient = WaitOptions {
        spin: 0,
        liveness_interval: Duration::from_secs(3600),
    };
    let mut tx = channel.sender(patient).unwrap();
    let mut rx = channel.receiver(fast()).unwrap();
    let sent = fill(&mut tx, 7);
    assert_eq!(sent, CAP / 64, "64-byte records fill the ring");
    set_word(&mut heap, layout::OFF_TX_WAITING, 1);
    let quarter = CAP / 4 / 64;
    let half = 2 * quarter;
    for i in 1..=half {
        assert_eq!(rx.try_recv().unwrap().unwrap(), [7; 56]);
        // A sender that looks for room now finds it, parked or not.
        assert_eq!(
            word_at(&mut heap, layout::OFF_HEAD),
            i * 64,
            "head stored at once"
        );
        let waiting = word_at(&mut heap, layout::OFF_TX_WAITING);
        assert_eq!(waiting, u32::from(i < half), "after {i} taken");
    }
    // A receive that leaves no message committed after it wakes at once: the receiver may not
    // receive again for a while. (Three messages: far from the quarter ring.)
    for _ in half..sent {
        assert_eq!(rx.try_recv().unwrap().unwrap(), [7; 56]);
    }
    for _ in 0..3 {
        tx.try_send(&[7; 56]).unwrap();
    }
    set_word(&mut heap, layout::OFF_TX_WAITING, 1);
    for (i, waiting) in [1, 1, 0].into_iter().enumerate() {
        assert_eq!(rx.try_recv().unwrap().unwrap(), [7; 56]);
        let now = word_at(&mut heap, layout::OFF_TX_WAITING);
        assert_eq!(now, waiting, "message {} of the last three", i + 1);
    }
    // A real sender parked on a full ring, with no liveness check for an hour and no deadline,
    // whose receiver takes one message and stops while the others wait (no look): it finds the
    // room when its park ends, at most 100 ms later (SENDER_PARK_MAX), not an hour later. The
    // bound below is a hundred times that: only a park as long as the liveness interval misses it.
    fill(&mut tx, 8);
    let (done, finished) = std::sync::mpsc::channel();
    let parked = std::thread::spawn(move || {
        tx.send(&[9; 56], None).unwrap();
        done.send(()).unwrap();
        tx
    });
    let started = Instant::now();
    while word_at(&mut heap, layout::OFF_TX_WAITING) == 0 {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the sender never parked"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    assert_eq!(rx.try_recv().unwrap().unwrap(), [8; 56]);
    finished
        .recv_timeout(Duration::from_secs(10))
        .expect("the parked sender found the room within 10 s");
    parked.join().unwrap();
}

#[test]
fn a_receiver_of_many_senders_wakes_parked_senders_at_every_look() {
    // While the other senders keep more than half the ring full, a parked one waiting for half
    // would wait for its park to end.
    const CAP: u32 = 4096;
    let mut heap = Heap::new(region_size(CAP));
    let channel = heap.channel(CAP, Mode::Mpsc);
    let mut tx = channel.sender(fast()).unwrap();
    let mut rx = channel.receiver(fast()).unwrap();
    let sent = fill(&mut tx, 7);
    // One fewer: a sender of many writes an abort record when it attaches (its place's last
    // holder may have owed one).
    assert_eq!(sent, CAP / 64 - 1, "64-byte records fill the ring");
    set_word(&mut heap, layout::OFF_TX_WAITING, 1);
    let quarter = CAP / 4 / 64;
    for i in 1..=quarter {
        assert_eq!(rx.try_recv().unwrap().unwrap(), [7; 56]);
        let waiting = word_at(&mut heap, layout::OFF_TX_WAITING);
        assert_eq!(waiting, u32::from(i < quarter), "after {i} taken");
    }
}

#[test]
fn a_spinning_sender_on_a_full_ring_sends_once_its_receiver_took_one_message_and_stopped() {
    // A blocked send of the only sender waits for a quarter of the ring only while `head` moves
    // (here it never does: the gather gives up at its second look, and the wait for room takes
    // the record's room once the receiver frees it). A guard on the gather's ends.
    const CAP: u32 = 4096;
    let mut heap = Heap::new(region_size(CAP));
    let channel = heap.channel(CAP, Mode::Spsc);
    let mut tx = channel.sender(fast()).unwrap();
    let mut rx = channel.receiver(fast()).unwrap();
    let full = fill(&mut tx, 8);
    let blocked = std::thread::spawn(move || {
        let started = Instant::now();
        let sent = tx.send(&[9; 56], Some(Duration::from_secs(20)));
        (sent, started.elapsed())
    });
    std::thread::sleep(Duration::from_millis(20));
    assert_eq!(rx.try_recv().unwrap().unwrap(), [8; 56]);
    let (sent, waited) = blocked.join().unwrap();
    sent.unwrap();
    // A gather with neither its stand-still rule nor its 1 ms cap would end only at the deadline.
    assert!(
        waited < Duration::from_secs(10),
        "the send took {waited:?} after one message was taken"
    );
    for _ in 1..full {
        assert_eq!(rx.try_recv().unwrap().unwrap(), [8; 56]);
    }
    assert_eq!(rx.try_recv().unwrap().unwrap(), [9; 56]);
    assert_eq!(rx.try_recv().unwrap(), None);
}

#[test]
fn a_peer_moving_head_back_and_forth_holds_a_blocked_send_only_briefly() {
    // Hostile: a full ring whose `head` a peer keeps moving, as a receiver at work would, over the
    // first record and back, never freeing more. The sender waits for a quarter of the ring only
    // while `head` moves, and at most 1 ms (`ROOM_GATHER_MAX`); then it takes the record's room
    // whenever `head` shows it. (Where the peer is descheduled, `head` stands still and the
    // gather ends by that rule instead: either way, not at the deadline.)
    const CAP: u32 = 4096;
    let mut heap = Heap::new(region_size(CAP));
    let channel = heap.channel(CAP, Mode::Spsc);
    let mut tx = channel.sender(fast()).unwrap();
    fill(&mut tx, 8);
    assert_eq!(word_at(&mut heap, layout::OFF_HEAD), 0);
    let head = heap.ptr() as usize + layout::OFF_HEAD;
    /// Stops the peer when the send returns or panics: the scope joins it before `heap` goes.
    struct Stop<'a>(&'a AtomicBool);
    impl Drop for Stop<'_> {
        fn drop(&mut self) {
            self.0.store(true, Ordering::Relaxed);
        }
    }
    let stop = AtomicBool::new(false);
    let (sent, waited) = std::thread::scope(|scope| {
        scope.spawn(|| {
            // SAFETY: `head` is a 4-aligned word of the heap region, which outlives this scoped
            // thread; every access to the region's words is atomic.
            let head = unsafe { AtomicU32::from_ptr(head as *mut u32) };
            for k in (0..9).cycle() {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                head.store(k * 8, Ordering::Release);
                let moved = Instant::now();
                while moved.elapsed() < Duration::from_micros(1) {
                    std::hint::spin_loop();
                }
            }
        });
        let _stop = Stop(&stop);
        let started = Instant::now();
        let sent = tx.send(&[9; 56], Some(Duration::from_secs(20)));
        (sent, started.elapsed())
    });
    sent.unwrap();
    assert!(waited < Duration::from_secs(10), "the send took {waited:?}");
    drop(tx);
    drop(channel);
    drop(heap);
}

#[test]
fn zero_copy_send_and_receive() {
    let mut heap = Heap::new(region_size(1024));
    let channel = heap.channel(1024, Mode::Mpsc);
    let mut tx = channel.sender(fast()).unwrap();
    let mut rx = channel.receiver(fast()).unwrap();
    {
        let mut slot = tx.try_reserve(5).unwrap();
        assert_eq!(reserved(&slot), [0; 5], "reserved bytes start out zero");
        slot.copy_from_slice(b"hello");
        slot.commit();
    }
    // Dropped without commit: skipped by the receiver.
    let mut abandoned = tx.try_reserve(300).unwrap();
    abandoned.fill(0xEE);
    drop(abandoned);
    tx.try_send(b"world").unwrap();
    assert_eq!(rx.try_recv_ref().unwrap().unwrap().to_vec(), b"hello");
    let world = rx.try_recv_ref().unwrap().unwrap();
    assert_eq!(
        (world.len(), world.get(0), world.get(5)),
        (5, Some(b'w'), None)
    );
    let mut copy = [0u8; 5];
    world.copy_to_slice(&mut copy);
    assert_eq!(&copy, b"world");
    // SAFETY: the only sender is this thread's, and it follows the protocol.
    assert_eq!(unsafe { world.as_bytes() }, b"world");
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
fn a_reservation_is_written_through_copies_that_a_peer_may_race() {
    let seg = Scratch::named("reserve");
    let segment = Segment::create(&seg.0, region_size(1024), &Options::default()).unwrap();
    // The peer's own mapping of the segment.
    let peer = Segment::open(&seg.0, None, &Options::default()).unwrap();
    let channel = Channel::create(
        segment,
        Config {
            capacity: 1024,
            mode: Mode::Spsc,
        },
    )
    .unwrap();
    let mut tx = channel.sender(fast()).unwrap();
    let mut rx = channel.receiver(fast()).unwrap();
    // Every alignment and length of a write, against a plain model of the payload.
    let mut slot = tx.try_reserve(37).unwrap();
    assert_eq!((slot.len(), slot.is_empty()), (37, false));
    let mut model = vec![0u8; 37];
    let source: Vec<u8> = (1..=37).collect();
    for offset in 0..=37 {
        for len in 0..=37 - offset {
            slot.write_at(offset, &source[..len]);
            model[offset..offset + len].copy_from_slice(&source[..len]);
            assert_eq!(reserved(&slot), model, "write of {len} at {offset}");
        }
    }
    let too_far = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        slot.write_at(30, &[0; 8]);
    }));
    assert!(too_far.is_err(), "a write past the reservation panics");
    assert_eq!(reserved(&slot), model, "and writes nothing");
    // A peer writing the reserved bytes through its own mapping is seen as written: the payload
    // is never a `&mut [u8]` that the compiler may assume no one else changes. The ring's first
    // record: its payload follows its header.
    let payload = layout::OFF_DATA + layout::RECORD_HEADER_SIZE;
    slot.fill(1);
    peer.atomic_u32(payload)
        .store(0x0202_0202, Ordering::SeqCst);
    assert_eq!(slot.as_atomic()[0].load(Ordering::Relaxed), 2);
    slot.copy_from_slice(&source);
    slot.commit();
    assert_eq!(rx.try_recv().unwrap().unwrap(), source);
}

/// `Channel::create` zeroes what it cannot know to be zero: a segment opened again (a channel
/// was there before), and one this process created but handed out first (a peer's garbage
/// written through it). Only a created segment handed to the channel untouched is taken as zero.
#[test]
fn create_starts_empty_over_old_bytes() {
    let config = Config {
        capacity: 1024,
        mode: Mode::Spsc,
    };
    let expect_empty = |channel: &Channel| {
        let mut rx = channel.receiver(fast()).unwrap();
        assert_eq!(code(rx.try_recv()), libc::EAGAIN, "a new channel is empty");
        let mut tx = channel.sender(fast()).unwrap();
        for seq in 0..40 {
            tx.send(&message(0, seq, 8, 60, true), None).unwrap();
            assert_eq!(
                rx.try_recv().unwrap().unwrap(),
                message(0, seq, 8, 60, true)
            );
        }
    };
    let seg = Scratch::named("recreate");
    let first = Channel::create(
        Segment::create(&seg.0, region_size(1024), &Options::default()).unwrap(),
        config,
    )
    .unwrap();
    let mut tx = first.sender(fast()).unwrap();
    tx.send(b"left over", None).unwrap();
    tx.send(b"and another", None).unwrap();
    // Not over a live endpoint (this process's sender here): its peers would go on over zeros.
    let again_of = |seg: &Scratch| Segment::open(&seg.0, None, &Options::default()).unwrap();
    let again = || again_of(&seg);
    let busy = Channel::create(again(), config).unwrap_err();
    assert_eq!(error_code(&busy), libc::EBUSY, "{busy}");
    let sender = format!("sender (pid {})", std::process::id());
    assert!(busy.to_string().contains(&sender), "{busy}");
    drop((tx, first));
    // Opened again: a channel was there, with messages unread.
    expect_empty(&Channel::create(again(), config).unwrap());
    // A live receiver too.
    let third = Channel::create(again(), config).unwrap();
    let rx = third.receiver(fast()).unwrap();
    let busy = Channel::create(again(), config).unwrap_err();
    assert!(busy.to_string().contains("receiver (pid"), "{busy}");
    drop((rx, third));
    // A dead receiver and sender (killed, say) do not keep it.
    let peer = again();
    peer.atomic_u32(layout::OFF_CONSUMER_PID)
        .store(dead_pid(), Ordering::SeqCst);
    peer.atomic_u32(layout::OFF_PRODUCER_PIDS)
        .store(dead_pid(), Ordering::SeqCst);
    expect_empty(&Channel::create(again(), config).unwrap());

    // Created here and never touched, while another mapping of it (another process's, say)
    // made a channel there and attached to it.
    let seg = Scratch::named("created-live");
    let created = Segment::create(&seg.0, region_size(1024), &Options::default()).unwrap();
    let theirs = Channel::create(again_of(&seg), config).unwrap();
    let rx = theirs.receiver(fast()).unwrap();
    let busy = Channel::create(created, config).unwrap_err();
    assert_eq!(error_code(&busy), libc::EBUSY, "{busy}");
    // Endpoints of another pid namespace cannot be told alive or dead from here.
    let peer = again_of(&seg);
    let ours = peer
        .atomic_u32(layout::OFF_PID_NAMESPACE)
        .load(Ordering::SeqCst);
    peer.atomic_u32(layout::OFF_PID_NAMESPACE)
        .store(ours ^ 0x4000_0000, Ordering::SeqCst);
    let other = Channel::create(again_of(&seg), config).unwrap_err();
    assert_eq!(error_code(&other), libc::EXDEV, "{other}");
    peer.atomic_u32(layout::OFF_PID_NAMESPACE)
        .store(ours, Ordering::SeqCst);
    drop((rx, theirs));

    // Created, then written through before the channel took it.
    let seg = Scratch::named("handed-out");
    let segment = Segment::create(&seg.0, region_size(1024), &Options::default()).unwrap();
    for offset in (layout::OFF_DATA..region_size(1024)).step_by(4) {
        segment
            .atomic_u32(offset)
            .store(0x8000_0018, Ordering::Relaxed);
    }
    expect_empty(&Channel::create(segment, config).unwrap());
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
fn an_open_keeps_the_capacity_it_checked_while_a_peer_rewrites_it() {
    // A peer flips the capacity word between the real one and the largest valid one while this
    // process opens the channel again and again: an open that read the word again after its
    // check took 2^28 for a region of 8 KiB one time in a few hundred thousand, and its sender
    // then wrote a message of 1 MiB past the mapping.
    let seg = Scratch::named("recheck");
    let created = Segment::create(&seg.0, region_size(4096), &Options::default()).unwrap();
    let created = Channel::create(
        created,
        Config {
            capacity: 4096,
            mode: Mode::Spsc,
        },
    )
    .unwrap();
    let peer = Segment::open(&seg.0, None, &Options::default()).unwrap();
    let open = || Segment::open(&seg.0, None, &Options::default()).unwrap();
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        s.spawn(|| {
            let capacity = peer.atomic_u32(layout::OFF_CAPACITY);
            while !stop.load(Ordering::Relaxed) {
                capacity.store(4096, Ordering::Relaxed);
                capacity.store(1 << 28, Ordering::Relaxed);
            }
            capacity.store(4096, Ordering::Relaxed);
        });
        // Asserted after the peer stops: a panic here would leave the scope waiting for it.
        let started = Instant::now();
        let (mut tries, mut opened, mut wrong) = (0u32, 0u32, None);
        while tries < 2_000_000 && started.elapsed() < Duration::from_secs(5) && wrong.is_none() {
            tries += 1;
            if let Ok(channel) = Channel::open(open()) {
                opened += 1;
                let kept = (channel.capacity(), channel.max_record());
                if kept != (4096, max_record(4096)) {
                    wrong = Some((tries, kept));
                }
            }
        }
        stop.store(true, Ordering::Relaxed);
        assert_eq!(wrong, None, "(open, (capacity, max_record)) kept");
        assert!(opened > 0, "no open of {tries} saw the real capacity");
    });
    drop(created);
}

#[test]
fn mpsc_threads_under_contention() {
    const PRODUCERS: u32 = 4;
    // Miri runs this thousands of times slower: fewer messages there.
    const COUNT: u32 = if cfg!(miri) { 60 } else { 20_000 };
    let mut heap = Heap::new(region_size(512));
    let channel = heap.channel(512, Mode::Mpsc);
    let max = channel.max_record();
    // Up to 3 fragments, and longer than the ring.
    let longest = 3 * max;
    let mut rx = channel.receiver(fast()).unwrap();
    let threads: Vec<_> = (0..PRODUCERS)
        .map(|p| {
            let mut tx = channel.sender(fast()).unwrap();
            std::thread::spawn(move || {
                for seq in 0..COUNT {
                    let msg = message(p, seq, 8, longest, true);
                    if seq % 5 == 0 && msg.len() <= max {
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
        assert_eq!(msg, message(p, seq, 8, longest, true));
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
    assert_eq!(rx.recv(None).unwrap(), None);
    t.join().unwrap();
}

#[test]
fn a_spin_of_any_length_ends_at_the_timeout() {
    let mut heap = Heap::new(region_size(1024));
    let channel = heap.channel(1024, Mode::Spsc);
    let longest = WaitOptions {
        spin: u32::MAX,
        ..WaitOptions::default()
    };
    let mut rx = channel.receiver(longest).unwrap();
    let mut tx = channel.sender(longest).unwrap();
    let started = Instant::now();
    assert_eq!(
        rx.recv(Some(Duration::from_millis(5))),
        Err(ChannelError::Timeout)
    );
    while tx.try_send(&[1; 100]).is_ok() {}
    let full = tx.send(&[2; 100], Some(Duration::from_millis(5)));
    assert_eq!(full, Err(ChannelError::Timeout));
    // 2^32 rounds take seconds; the bound is far above two 5 ms timeouts on a loaded host.
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
}

// ---- fragments ----------------------------------------------------------------------------

/// The 32-bit word at byte `offset` of a heap channel's region, read while the channel lives
/// (and, in some tests, while a sender thread writes it: so atomically, as the protocol does).
fn word_at(heap: &mut Heap, offset: usize) -> u32 {
    assert!(offset % 4 == 0 && offset + 4 <= heap.len());
    // SAFETY: in bounds and 4-aligned (the region is 8-aligned); every access to the region's
    // words, the channel's included, is atomic, and the reference does not outlive this call.
    unsafe { AtomicU32::from_ptr(heap.ptr().add(offset).cast()) }.load(Ordering::Acquire)
}

fn tail_pos(heap: &mut Heap) -> u32 {
    word_at(heap, layout::OFF_TAIL) & layout::POS_MASK
}

fn commit_at(heap: &mut Heap, idx: usize) -> u32 {
    word_at(heap, layout::OFF_DATA + idx)
}

fn producer_word_at(heap: &mut Heap, idx: usize) -> u32 {
    word_at(heap, layout::OFF_DATA + idx + layout::OFF_REC_PRODUCER)
}

const COMMITTED: u32 = layout::REC_COMMITTED;

#[test]
fn fragmented_messages_of_every_size_round_trip() {
    let mut heap = Heap::new(region_size(256));
    let base = heap.ptr() as usize;
    let end = base + heap.len();
    let channel = heap.channel(256, Mode::Spsc);
    let max = channel.max_record();
    assert_eq!(max, 120);
    let mut tx = channel.sender(fast()).unwrap();
    let mut rx = channel.receiver(fast()).unwrap();
    let mut sizes: Vec<usize> = vec![0, 1, 119, 120, 121, 239, 240, 241, 255, 256, 257, 1000];
    // Miri runs this thousands of times slower: a sample there.
    let random = if cfg!(miri) { 12 } else { 300 };
    sizes.extend((0..random).map(|i| message(9, i, 0, 2000, false).len()));
    let expected: Vec<Vec<u8>> = sizes
        .iter()
        .enumerate()
        .map(|(i, &len)| message(1, i as u32, len, len, false))
        .collect();
    let to_send = expected.clone();
    let producer = std::thread::spawn(move || {
        for msg in &to_send {
            tx.send(msg, Some(Duration::from_secs(10))).unwrap();
        }
        tx.close();
    });
    let mut buf = Vec::new();
    for (i, want) in expected.iter().enumerate() {
        match i % 3 {
            0 => {
                let got = rx.recv_ref(Some(Duration::from_secs(10))).unwrap().unwrap();
                assert_eq!(got.to_vec(), &want[..], "message {i}");
                // One record is lent in place; a reassembled message lives in the receiver.
                let at = got.as_ptr() as usize;
                if want.len() <= max && !want.is_empty() {
                    assert!(at >= base && at < end, "message {i} is in the ring");
                } else if want.len() > max {
                    assert!(at < base || at >= end, "message {i} is reassembled");
                }
            }
            1 => {
                let len = rx.recv_into(&mut buf, Some(Duration::from_secs(10)));
                assert_eq!(len.unwrap(), Some(want.len()));
                assert_eq!(&buf, want, "message {i}");
            }
            _ => {
                let got = rx.recv(Some(Duration::from_secs(10))).unwrap().unwrap();
                assert_eq!(&got, want, "message {i}");
            }
        }
    }
    assert_eq!(rx.recv(Some(Duration::from_secs(10))).unwrap(), None);
    producer.join().unwrap();
}

/// The abort rule, SPSC: a fragmented send that fails midway commits an abort record at once when
/// 8 bytes are free, else owes it and commits it before its next record; the receiver never
/// sees the fragments that went out.
#[test]
fn a_failed_fragmented_send_is_aborted() {
    let short = Some(Duration::from_millis(30));
    // 1. There is room for the abort record: it goes out at once.
    let mut heap = Heap::new(region_size(256));
    let channel = heap.channel(256, Mode::Spsc);
    let mut tx = channel.sender(fast()).unwrap();
    let mut rx = channel.receiver(fast()).unwrap();
    // Move head to 144, then fill 144..256: 128 bytes free, at index 0.
    tx.send(&[1; 120], None).unwrap();
    tx.send(&[2; 8], None).unwrap();
    assert_eq!(rx.try_recv().unwrap().unwrap(), [1; 120]);
    assert_eq!(rx.try_recv().unwrap().unwrap(), [2; 8]);
    tx.send(&[3; 104], None).unwrap();
    // 240 bytes = two fragments of 120 (spans 128): the first fits, the second does not.
    assert_eq!(code(tx.send(&[4; 240], short)), libc::ETIMEDOUT);
    assert_eq!(commit_at(&mut heap, 0), COMMITTED | layout::REC_MORE | 120);
    assert_eq!(commit_at(&mut heap, 128), COMMITTED | layout::REC_ABORT);
    assert_eq!(
        producer_word_at(&mut heap, 128),
        0,
        "SPSC records carry no producer"
    );
    assert_eq!(tail_pos(&mut heap), 256 + 128 + 8);
    assert_eq!(rx.try_recv().unwrap().unwrap(), [3; 104]);
    assert_eq!(
        code(rx.try_recv()),
        libc::EAGAIN,
        "fragment dropped by the abort"
    );
    tx.send(b"after", None).unwrap();
    assert_eq!(rx.try_recv().unwrap().unwrap(), b"after");
    assert_eq!(commit_at(&mut heap, 128), 0, "consumed records are zeroed");
    drop((tx, rx, channel));

    // 2. No room even for the abort record: it is owed, and paid before the next record.
    let mut heap = Heap::new(region_size(256));
    let channel = heap.channel(256, Mode::Spsc);
    let mut tx = channel.sender(fast()).unwrap();
    let mut rx = channel.receiver(fast()).unwrap();
    tx.send(&[1; 120], None).unwrap();
    assert_eq!(rx.try_recv().unwrap().unwrap(), [1; 120]);
    tx.send(&[3; 120], None).unwrap(); // 128..256: 128 bytes free, at index 0
    assert_eq!(code(tx.send(&[4; 240], short)), libc::ETIMEDOUT);
    assert_eq!(
        tail_pos(&mut heap),
        256 + 128,
        "the first fragment, and no abort"
    );
    // Still full: the owed abort blocks the next send too, which sends nothing.
    assert_eq!(code(tx.try_send(b"x")), libc::EAGAIN);
    assert_eq!(code(tx.send(b"x", short)), libc::ETIMEDOUT);
    assert_eq!(tail_pos(&mut heap), 256 + 128);
    assert_eq!(rx.try_recv().unwrap().unwrap(), [3; 120]);
    // The receiver collects the fragment and waits for the rest.
    assert_eq!(code(rx.try_recv()), libc::EAGAIN);
    assert_eq!(code(rx.recv(short)), libc::ETIMEDOUT);
    tx.try_send(b"x").unwrap();
    assert_eq!(commit_at(&mut heap, 128), COMMITTED | layout::REC_ABORT);
    assert_eq!(commit_at(&mut heap, 136), COMMITTED | 1);
    assert_eq!(
        rx.try_recv().unwrap().unwrap(),
        b"x",
        "not the fragment followed by x"
    );
    // A reservation pays an owed abort too.
    tx.send(&[5; 120], None).unwrap(); // 152..280: the ring is full after it
    assert_eq!(code(tx.send(&[6; 240], short)), libc::ETIMEDOUT);
    assert_eq!(rx.try_recv().unwrap().unwrap(), [5; 120]);
    {
        let mut slot = tx.reserve(3, short).unwrap();
        slot.copy_from_slice(b"abc");
        slot.commit();
    }
    assert_eq!(rx.try_recv().unwrap().unwrap(), b"abc");
    assert_eq!(code(rx.try_recv()), libc::EAGAIN);
    // The end of the stream drops a message cut off by a failed send.
    tx.send(&[7; 120], None).unwrap();
    assert_eq!(code(tx.send(&[8; 500], short)), libc::ETIMEDOUT);
    tx.close();
    assert_eq!(rx.recv(None).unwrap().unwrap(), [7; 120]);
    assert_eq!(rx.recv(None).unwrap(), None);
    assert_eq!(rx.recv(None).unwrap(), None);
}

/// The abort rule, MPSC: a producer that detached owing an abort record leaves its slot's
/// partial message behind; the next producer in that slot clears it with an abort record before
/// its first message.
#[test]
fn a_new_producer_clears_its_slots_unfinished_message() {
    let short = Some(Duration::from_millis(30));
    let mut heap = Heap::new(region_size(256));
    let channel = heap.channel(256, Mode::Mpsc);
    let mut rx = channel.receiver(fast()).unwrap();
    let mut first = channel.sender(fast()).unwrap();
    // Attaching in MPSC commits an abort record.
    assert_eq!(tail_pos(&mut heap), 8);
    first.send(&[1; 112], None).unwrap();
    assert_eq!(commit_at(&mut heap, 0), COMMITTED | layout::REC_ABORT);
    assert_eq!(producer_word_at(&mut heap, 0), 1, "slot 0");
    assert_eq!(commit_at(&mut heap, 8), COMMITTED | 112);
    assert_eq!(producer_word_at(&mut heap, 8), 1);
    assert_eq!(rx.try_recv().unwrap().unwrap(), [1; 112]);
    first.send(&[3; 120], None).unwrap(); // 128..256; 128 bytes free at index 0
    assert_eq!(code(first.send(&[4; 240], short)), libc::ETIMEDOUT);
    assert_eq!(
        tail_pos(&mut heap),
        256 + 128,
        "no room for the abort record"
    );
    drop(first); // detaches still owing it
    assert_eq!(rx.try_recv().unwrap().unwrap(), [3; 120]);
    assert_eq!(
        code(rx.try_recv()),
        libc::EAGAIN,
        "the fragment waits in slot 0"
    );
    let mut second = channel.sender(fast()).unwrap();
    second.send(b"fresh", None).unwrap();
    assert_eq!(commit_at(&mut heap, 128), COMMITTED | layout::REC_ABORT);
    assert_eq!(producer_word_at(&mut heap, 128), 1, "the same slot");
    assert_eq!(rx.try_recv().unwrap().unwrap(), b"fresh");
    // Later messages carry no abort record.
    second.send(b"again", None).unwrap();
    assert_eq!(commit_at(&mut heap, 152), COMMITTED | 5);
    assert_eq!(rx.try_recv().unwrap().unwrap(), b"again");

    // Another producer's close cuts a message off: its fragments are dropped at the end.
    let mut third = channel.sender(fast()).unwrap();
    third.send(&[5; 120], None).unwrap(); // an abort record, a skip record to the end, 0..128
    assert_eq!(tail_pos(&mut heap), 640);
    assert_eq!(rx.try_recv().unwrap().unwrap(), [5; 120]);
    second.send(&[6; 100], None).unwrap(); // 128..240
    let cut = std::thread::spawn(move || second.send(&[7; 1000], None));
    // The cut-off sender commits a skip record and its first fragment, and waits for room.
    // (The deadline only keeps a broken build from hanging.)
    let deadline = Instant::now() + Duration::from_secs(60);
    let fragment = COMMITTED | layout::REC_MORE | 120;
    while commit_at(&mut heap, 0) != fragment && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(1));
    }
    assert_eq!(commit_at(&mut heap, 0), fragment);
    assert_eq!(tail_pos(&mut heap), 896);
    third.close();
    assert_eq!(code(cut.join().unwrap()), libc::EPIPE);
    assert_eq!(rx.recv(None).unwrap().unwrap(), [6; 100]);
    assert_eq!(rx.recv(None).unwrap(), None);
}

/// A producer that attaches to a full MPSC ring owes its abort record, and pays it before its
/// first record.
#[test]
fn attaching_to_a_full_ring_owes_the_abort_record() {
    let mut heap = Heap::new(region_size(256));
    let channel = heap.channel(256, Mode::Mpsc);
    let mut rx = channel.receiver(fast()).unwrap();
    let mut first = channel.sender(fast()).unwrap();
    while first.try_send(&[1; 24]).is_ok() {}
    let full = tail_pos(&mut heap);
    assert_eq!(full, 256, "an abort record and 7 messages of 32 bytes");
    let mut second = channel.sender(fast()).unwrap();
    assert_eq!(tail_pos(&mut heap), full, "no room: owed");
    assert_eq!(code(second.try_send(b"y")), libc::EAGAIN);
    for _ in 0..7 {
        assert_eq!(rx.try_recv().unwrap().unwrap(), [1; 24]);
    }
    second.try_send(b"y").unwrap();
    assert_eq!(commit_at(&mut heap, 0), COMMITTED | layout::REC_ABORT);
    assert_eq!(producer_word_at(&mut heap, 0), 2, "slot 1");
    assert_eq!(commit_at(&mut heap, 8), COMMITTED | 1);
    assert_eq!(rx.try_recv().unwrap().unwrap(), b"y");
}

/// A peer that writes another pid into a live sender's slot (or frees it, and another sender
/// takes it) makes that sender's messages in fragments fail with `EBADMSG` before any fragment
/// goes out: the receiver puts fragments together by slot, and would mix two senders' messages.
/// An abort record it owes is skipped then: it would drop the other sender's message.
#[test]
#[cfg_attr(miri, ignore = "probes pids with kill")]
fn a_sender_whose_slot_a_peer_gave_away_sends_no_fragment() {
    let short = Some(Duration::from_millis(30));
    let mut heap = Heap::new(region_size(256));
    let channel = heap.channel(256, Mode::Mpsc);
    let mut rx = channel.receiver(fast()).unwrap();
    let mut tx = channel.sender(fast()).unwrap();
    tx.send(&[1; 112], None).unwrap(); // 8..128, after the attach's abort record
    assert_eq!(rx.try_recv().unwrap().unwrap(), [1; 112]);
    tx.send(&[3; 120], None).unwrap(); // 128..256
    assert_eq!(code(tx.send(&[4; 240], short)), libc::ETIMEDOUT);
    assert_eq!(
        tail_pos(&mut heap),
        256 + 128,
        "a fragment, and an abort record owed"
    );
    assert_eq!(rx.try_recv().unwrap().unwrap(), [3; 120]);
    assert_eq!(
        code(rx.try_recv()),
        libc::EAGAIN,
        "the fragment waits in slot 0"
    );

    // A live process's pid: the slot is another sender's now.
    let other = std::os::unix::process::parent_id();
    plant_pid(&mut heap, 0, other);
    tx.send(b"whole", None).unwrap();
    assert_eq!(
        commit_at(&mut heap, 128),
        COMMITTED | layout::REC_SKIP,
        "the abort record skipped"
    );
    assert_eq!(rx.try_recv().unwrap().unwrap(), b"whole");
    let tail = tail_pos(&mut heap);
    let err = tx.send(&[5; 300], None).unwrap_err();
    assert_eq!(error_code(&err), libc::EBADMSG, "{err}");
    assert!(
        err.to_string().contains(&format!("holds {other} ")),
        "{err}"
    );
    assert_ne!(tail_pos(&mut heap), tail, "a record reserved");
    assert_eq!(
        code(rx.try_recv()),
        libc::EAGAIN,
        "and skipped: nothing to deliver"
    );
    tx.send(b"after", None).unwrap();
    assert_eq!(rx.try_recv().unwrap().unwrap(), b"after");
    // Its slot back: its messages in fragments go again (more than the ring holds at once).
    plant_pid(&mut heap, 0, std::process::id());
    let send = std::thread::spawn(move || tx.send(&[6; 300], None));
    assert_eq!(rx.recv(None).unwrap().unwrap(), [6; 300]);
    send.join().unwrap().unwrap();
}

#[test]
fn the_one_sender_whose_place_a_peer_gave_away_sends_nothing_and_ends_nothing() {
    let mut heap = Heap::new(region_size(256));
    let channel = heap.channel(256, Mode::Spsc);
    let mut rx = channel.receiver(fast()).unwrap();
    let mut tx = channel.sender(fast()).unwrap();
    tx.send(b"first", None).unwrap();
    assert_eq!(rx.try_recv().unwrap().unwrap(), b"first");

    // A live process's pid: another sender holds the place now (one of this process would
    // write the same pid, which tells nothing apart).
    let other = std::os::unix::process::parent_id();
    plant_pid(&mut heap, 0, other);
    let tail = tail_pos(&mut heap);
    for err in [
        tx.send(b"whole", None).unwrap_err(),
        tx.send(&[2; 300], None).unwrap_err(),
        tx.try_send(b"try").unwrap_err(),
        tx.reserve(8, None).map(|_| ()).unwrap_err(),
        tx.try_reserve(8).map(|_| ()).unwrap_err(),
    ] {
        assert_eq!(error_code(&err), libc::EBADMSG, "{err}");
        assert!(
            err.to_string().contains(&format!("holds {other} ")),
            "{err}"
        );
    }
    assert_eq!(tail_pos(&mut heap), tail, "nothing reserved");
    assert_eq!(code(rx.try_recv()), libc::EAGAIN);
    // Its drop leaves the stream, which is the other sender's, open.
    drop(tx);
    assert!(!channel.is_closed());
    assert_eq!(
        word_at(&mut heap, layout::OFF_PRODUCER_PIDS),
        other,
        "the place left as it was"
    );

    // A send waiting for room when the place goes: it reserves nothing once room comes.
    plant_pid(&mut heap, 0, 0);
    let mut tx = channel.sender(fast()).unwrap();
    let sent = fill(&mut tx, 7);
    let tail = tail_pos(&mut heap);
    let send = std::thread::spawn(move || {
        let result = tx.send(&[8; 56], Some(Duration::from_secs(10)));
        (tx, result)
    });
    // Parked: it reserved nothing yet, and looked at its place.
    while word_at(&mut heap, layout::OFF_TX_WAITING) == 0 {
        std::thread::sleep(Duration::from_millis(1));
    }
    plant_pid(&mut heap, 0, other);
    for _ in 0..sent {
        assert_eq!(rx.recv(None).unwrap().unwrap(), [7; 56]);
    }
    let (tx, result) = send.join().unwrap();
    let err = result.unwrap_err();
    assert_eq!(error_code(&err), libc::EBADMSG, "{err}");
    assert_eq!(code(rx.try_recv()), libc::EAGAIN);
    assert_eq!(
        tail_pos(&mut heap),
        tail,
        "nothing reserved once room came: a reservation moves tail from the sender's own copy, \
         over what a sender that took the place wrote meanwhile"
    );
    // Its place back, it sends, and its drop ends the stream again.
    plant_pid(&mut heap, 0, std::process::id());
    let mut tx = tx;
    tx.send(b"back", None).unwrap();
    assert_eq!(rx.try_recv().unwrap().unwrap(), b"back");
    drop(tx);
    assert!(channel.is_closed());
    assert!(rx.recv(None).unwrap().is_none());
}

#[test]
fn a_receiver_whose_place_a_peer_gave_away_takes_nothing_and_closes_nothing() {
    for mode in [Mode::Spsc, Mode::Mpsc] {
        let mut heap = Heap::new(region_size(256));
        let channel = heap.channel(256, mode);
        let mut rx = channel.receiver(fast()).unwrap();
        let mut tx = channel.sender(fast()).unwrap();
        tx.send(b"first", None).unwrap();
        tx.send(b"second", None).unwrap();
        assert_eq!(rx.try_recv().unwrap().unwrap(), b"first");
        assert_eq!(&*rx.recv_ref(None).unwrap().unwrap().to_vec(), b"second");
        let head = word_at(&mut heap, layout::OFF_HEAD);

        // A live process's pid: another receiver holds the place now.
        let other = std::os::unix::process::parent_id();
        set_word(&mut heap, layout::OFF_CONSUMER_PID, other);
        tx.send(b"third", None).unwrap();
        for err in [
            rx.try_recv().unwrap_err(),
            rx.recv(Some(Duration::from_millis(10))).unwrap_err(),
            rx.try_recv_ref().map(|_| ()).unwrap_err(),
        ] {
            assert_eq!(error_code(&err), libc::EBADMSG, "{mode:?}: {err}");
            assert!(
                err.to_string().contains(&format!("holds {other} ")),
                "{err}"
            );
        }
        rx.release();
        assert_eq!(
            word_at(&mut heap, layout::OFF_HEAD),
            head,
            "{mode:?}: the message handed out is not released into the other's ring"
        );
        // Its drop leaves the channel, which is the other receiver's, open.
        drop(rx);
        assert_eq!(
            word_at(&mut heap, layout::OFF_FLAGS) & layout::FLAG_RX_CLOSED,
            0
        );
        assert_eq!(word_at(&mut heap, layout::OFF_CONSUMER_PID), other);
        tx.send(b"fourth", None).unwrap();

        // A receive waiting when the place goes takes nothing once a message comes.
        set_word(&mut heap, layout::OFF_CONSUMER_PID, 0);
        let mut rx = channel.receiver(fast()).unwrap();
        for want in [&b"second"[..], b"third", b"fourth"] {
            assert_eq!(rx.try_recv().unwrap().unwrap(), want, "{mode:?}");
        }
        let wait = std::thread::spawn(move || {
            let result = rx.recv(Some(Duration::from_secs(10))).map(|_| ());
            (rx, result)
        });
        while word_at(&mut heap, layout::OFF_RX_WAITING) == 0 {
            std::thread::sleep(Duration::from_millis(1));
        }
        set_word(&mut heap, layout::OFF_CONSUMER_PID, other);
        tx.send(b"fifth", None).unwrap();
        let (rx, result) = wait.join().unwrap();
        let err = result.unwrap_err();
        assert_eq!(error_code(&err), libc::EBADMSG, "{mode:?}: {err}");
        // Its place back, it takes the message it left.
        set_word(&mut heap, layout::OFF_CONSUMER_PID, std::process::id());
        let mut rx = rx;
        assert_eq!(rx.try_recv().unwrap().unwrap(), b"fifth", "{mode:?}");
        drop(tx);
        drop(rx);
        assert_ne!(
            word_at(&mut heap, layout::OFF_FLAGS) & layout::FLAG_RX_CLOSED,
            0
        );
    }
}

#[test]
fn one_record_limits_and_the_longest_message() {
    let mut heap = Heap::new(region_size(1024));
    let channel = heap.channel(1024, Mode::Mpsc);
    let max = channel.max_record();
    assert_eq!(max, 504);
    let mut tx = channel.sender(fast()).unwrap();
    let mut rx = channel.receiver(fast()).unwrap();
    for result in [
        tx.reserve(max + 1, None).map(|_| ()),
        tx.try_reserve(max + 1).map(|_| ()),
        tx.try_send(&vec![0; max + 1]),
    ] {
        let err = result.unwrap_err();
        assert_eq!(error_code(&err), libc::EMSGSIZE, "{err}");
        assert!(err.to_string().contains("use send"), "{err}");
    }
    let mut slot = tx.reserve(max, None).unwrap();
    slot.fill(1);
    slot.commit();
    assert_eq!(rx.try_recv().unwrap().unwrap(), vec![1; max]);
    // Longer than any message: refused before anything is sent. (calloc: the pages stay
    // untouched.)
    let huge = vec![0u8; layout::MAX_MESSAGE_LEN + 1];
    assert_eq!(code(tx.send(&huge, None)), libc::EMSGSIZE);
    drop(huge);
    assert_eq!(code(rx.try_recv()), libc::EAGAIN);
}

/// A record written by hand: (commit word, producer word, payload length to fill with 0xAB).
type Handmade = (u32, u32, usize);

/// Writes records by hand into a fresh ring of `capacity` bytes, from position 0; tail ends after
/// them.
fn handmade(capacity: u32, mode: Mode, records: &[Handmade]) -> Heap {
    let mut heap = Heap::new(region_size(capacity));
    drop(heap.channel(capacity, mode));
    let mut pos = 0;
    for &(commit, producer, len) in records {
        set_word(&mut heap, layout::OFF_DATA + pos, commit);
        set_word(&mut heap, layout::OFF_DATA + pos + 4, producer);
        let start = layout::OFF_DATA + pos + 8;
        heap.bytes_mut()[start..start + len].fill(0xAB);
        pos += layout::record_span(len);
    }
    set_word(&mut heap, layout::OFF_TAIL, pos as u32);
    heap
}

#[test]
fn malformed_fragments_are_refused() {
    const MORE: u32 = layout::REC_MORE;
    const ABORT: u32 = layout::REC_ABORT;
    const SKIP: u32 = layout::REC_SKIP;
    const CONT: u32 = layout::REC_CONT;
    let bad: &[(Mode, &[Handmade])] = &[
        // A fragment but the last shorter than max_record; a last fragment longer.
        (Mode::Spsc, &[(COMMITTED | MORE | 100, 0, 100)]),
        (Mode::Spsc, &[(COMMITTED | MORE | CONT | 100, 0, 100)]),
        (Mode::Spsc, &[(COMMITTED | CONT | 128, 0, 128)]),
        // An abort record with a length.
        (Mode::Spsc, &[(COMMITTED | ABORT | 8, 0, 8)]),
        // Flags combined.
        (Mode::Spsc, &[(COMMITTED | SKIP | MORE | 120, 0, 120)]),
        (Mode::Spsc, &[(COMMITTED | MORE | ABORT | 120, 0, 120)]),
        (Mode::Spsc, &[(COMMITTED | CONT | ABORT, 0, 0)]),
        (Mode::Spsc, &[(COMMITTED | CONT | SKIP | 120, 0, 120)]),
        // MPSC producer words out of range, on a fragment, an abort, and a last fragment.
        (Mode::Mpsc, &[(COMMITTED | MORE | 120, 0, 120)]),
        (Mode::Mpsc, &[(COMMITTED | ABORT, 65, 0)]),
        (
            Mode::Mpsc,
            &[
                (COMMITTED | MORE | 120, 3, 120),
                (COMMITTED | CONT | 5, 0xFFFF_FFFF, 5),
            ],
        ),
    ];
    for (case, (mode, records)) in bad.iter().enumerate() {
        let mut heap = handmade(256, *mode, records);
        let channel = heap.open().unwrap();
        let mut rx = channel.receiver(fast()).unwrap();
        // The same error again: the bad record is not consumed.
        assert_eq!(code(rx.try_recv()), libc::EBADMSG, "case {case}");
        assert_eq!(code(rx.recv(None)), libc::EBADMSG, "case {case}");
    }
    // Well-formed by hand: slot 2's fragment around slot 0's whole message.
    let mut heap = handmade(
        512,
        Mode::Mpsc,
        &[
            (COMMITTED | MORE | 248, 3, 248),
            (COMMITTED | 4, 1, 4),
            (COMMITTED | CONT | 10, 3, 10),
        ],
    );
    let channel = heap.open().unwrap();
    assert_eq!(channel.max_record(), 248);
    let mut rx = channel.receiver(fast()).unwrap();
    assert_eq!(rx.try_recv().unwrap().unwrap(), [0xAB; 4]);
    assert_eq!(rx.try_recv().unwrap().unwrap(), vec![0xAB; 258]);
    assert_eq!(code(rx.try_recv()), libc::EAGAIN);
    drop((rx, channel));
    // Slot 1's fragment, then its abort record: its next record is a whole message.
    let mut heap = handmade(
        512,
        Mode::Mpsc,
        &[
            (COMMITTED | MORE | 248, 2, 248),
            (COMMITTED | 4, 1, 4),
            (COMMITTED | ABORT, 2, 0),
            (COMMITTED | 3, 2, 3),
        ],
    );
    let channel = heap.open().unwrap();
    let mut rx = channel.receiver(fast()).unwrap();
    assert_eq!(rx.try_recv().unwrap().unwrap(), [0xAB; 4]);
    assert_eq!(rx.try_recv().unwrap().unwrap(), [0xAB; 3]);
    assert_eq!(code(rx.try_recv()), libc::EAGAIN);
}

/// A receiver that takes over from one that died may find a message whose first fragments the
/// dead one consumed: it drops the rest rather than deliver it as a shorter message.
#[test]
fn the_rest_of_a_message_begun_before_the_receiver_is_dropped() {
    const MORE: u32 = layout::REC_MORE;
    const CONT: u32 = layout::REC_CONT;
    // Many senders: slot 2's middle and last fragments around slot 0's whole message, then a
    // whole message of slot 2's own.
    let mut heap = handmade(
        512,
        Mode::Mpsc,
        &[
            (COMMITTED | MORE | CONT | 248, 3, 248),
            (COMMITTED | 4, 1, 4),
            (COMMITTED | CONT | 10, 3, 10),
            (COMMITTED | 5, 3, 5),
        ],
    );
    let channel = heap.open().unwrap();
    let mut rx = channel.receiver(fast()).unwrap();
    assert_eq!(rx.try_recv().unwrap().unwrap(), [0xAB; 4]);
    assert_eq!(rx.try_recv().unwrap().unwrap(), [0xAB; 5]);
    assert_eq!(code(rx.try_recv()), libc::EAGAIN);
    drop((rx, channel));
    // One sender, through every kind of receive: a last fragment alone, then a whole message,
    // then a message in two fragments.
    let records: &[Handmade] = &[
        (COMMITTED | CONT | 7, 0, 7),
        (COMMITTED | 6, 0, 6),
        (COMMITTED | MORE | 248, 0, 248),
        (COMMITTED | CONT | 9, 0, 9),
    ];
    for how in 0..3 {
        let mut heap = handmade(512, Mode::Spsc, records);
        let channel = heap.open().unwrap();
        let mut rx = channel.receiver(fast()).unwrap();
        let mut got = Vec::new();
        let mut buf = Vec::new();
        for _ in 0..2 {
            match how {
                0 => got.push(rx.try_recv().unwrap().unwrap()),
                1 => got.push(rx.recv(Some(Duration::from_secs(5))).unwrap().unwrap()),
                _ => {
                    let len = rx.recv_into(&mut buf, Some(Duration::from_secs(5)));
                    assert_eq!(len.unwrap(), Some(buf.len()));
                    got.push(buf.clone());
                }
            }
        }
        assert_eq!(got, [vec![0xAB; 6], vec![0xAB; 257]], "receive {how}");
        assert_eq!(code(rx.try_recv()), libc::EAGAIN, "receive {how}");
    }
    // A first fragment ends the unfinished message before it (its sender died without an abort
    // record): the two fill the ring, the last fragment comes after the receiver consumed them.
    let mut heap = handmade(
        512,
        Mode::Spsc,
        &[
            (COMMITTED | MORE | 248, 0, 248),
            (COMMITTED | MORE | 248, 0, 248),
        ],
    );
    heap.bytes_mut()[layout::OFF_DATA + 264..][..248].fill(0xCD);
    let channel = heap.open().unwrap();
    let mut rx = channel.receiver(fast()).unwrap();
    assert_eq!(code(rx.try_recv()), libc::EAGAIN);
    set_word(&mut heap, layout::OFF_DATA, COMMITTED | CONT | 9);
    heap.bytes_mut()[layout::OFF_DATA + 8..][..9].fill(0xEF);
    set_word(&mut heap, layout::OFF_TAIL, 512 + 24);
    let mut want = vec![0xCD; 248];
    want.extend([0xEF; 9]);
    assert_eq!(rx.try_recv().unwrap().unwrap(), want);
}

// ---- header validation --------------------------------------------------------------------

fn set_word(heap: &mut Heap, offset: usize, value: u32) {
    heap.bytes_mut()[offset..offset + 4].copy_from_slice(&value.to_le_bytes());
}

fn open_code(heap: &mut Heap) -> i32 {
    let err = heap.open().expect_err("open should fail");
    // As an io::Error, the typed error is still inside.
    let io = std::io::Error::from(err.clone());
    assert_eq!(ChannelError::find(&io), Some(&err));
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
        (channel.capacity(), channel.mode(), channel.max_record()),
        (cap, Mode::Spsc, 504)
    );
    drop(channel);

    let cases: &[(usize, u32, i32)] = &[
        (layout::OFF_MAGIC, 0, libc::EAGAIN),
        (layout::OFF_MAGIC, 0x1234_5678, libc::EBADMSG),
        (
            layout::OFF_VERSION,
            layout::VERSION + 1,
            libc::EPROTONOSUPPORT,
        ),
        (layout::OFF_HEADER_SIZE, 512, libc::EBADMSG),
        (layout::OFF_CAPACITY, 1000, libc::EBADMSG),
        (layout::OFF_CAPACITY, 32, libc::EBADMSG),
        (layout::OFF_CAPACITY, 2048, libc::EBADMSG), // larger than the region
        (layout::OFF_MAX_MESSAGE, 1000, libc::EBADMSG),
        (layout::OFF_MODE, 2, libc::EBADMSG),
        (layout::OFF_FLAGS, 0x10, libc::EBADMSG),
        (layout::OFF_MAX_PRODUCERS, 8, libc::EBADMSG),
        (layout::OFF_RX_WAITING, 7, libc::EBADMSG),
        // The close mark without the flag that the receiver's close sets first.
        (layout::OFF_RX_WAITING, layout::RX_CLOSED, libc::EBADMSG),
        (layout::OFF_TX_WAITING, layout::RX_CLOSED, libc::EBADMSG),
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
    // The first endpoint records its pid namespace; an open or an attach from another one is
    // refused, since peers' pids mean nothing across them; none recorded (0) is no check.
    let ours = liveness::pid_namespace();
    let namespace_word = |heap: &mut Heap| {
        // SAFETY: an aligned word inside the heap, which outlives the reference.
        unsafe {
            &*heap
                .ptr()
                .add(layout::OFF_PID_NAMESPACE)
                .cast::<AtomicU32>()
        }
    };
    let mut heap = fresh();
    let channel = heap.open().unwrap();
    assert_eq!(
        namespace_word(&mut heap).load(Ordering::SeqCst),
        0,
        "no endpoint yet"
    );
    let mut tx = channel.sender(WaitOptions::default()).unwrap();
    assert_eq!(namespace_word(&mut heap).load(Ordering::SeqCst), ours);
    if ours != 0 {
        let theirs = ours.wrapping_add(1);
        let names = format!("pid:[{theirs}]; this process is in pid:[{ours}]");
        namespace_word(&mut heap).store(theirs, Ordering::SeqCst);
        // An endpoint attached before keeps working; new ones are refused.
        tx.try_send(b"before").unwrap();
        let err = channel.receiver(WaitOptions::default()).unwrap_err();
        assert_eq!(error_code(&err), libc::EXDEV);
        assert!(err.to_string().contains(&names), "{err}");
        assert_eq!(open_code(&mut heap), libc::EXDEV);
        namespace_word(&mut heap).store(0, Ordering::SeqCst);
        drop(channel.receiver(WaitOptions::default()).unwrap());
        assert_eq!(namespace_word(&mut heap).load(Ordering::SeqCst), ours);
    }
    drop(tx);
    drop(channel);
    // A receiver's close (flag and mark) is fine: senders then get EPIPE.
    let mut heap = fresh();
    set_word(&mut heap, layout::OFF_FLAGS, layout::FLAG_RX_CLOSED);
    set_word(&mut heap, layout::OFF_RX_WAITING, layout::RX_CLOSED);
    let err = heap
        .open()
        .unwrap()
        .sender(WaitOptions::default())
        .unwrap_err();
    assert_eq!(err, ChannelError::Closed(ClosedBy::Receiver));
    // A closed tail at a valid position is fine.
    let mut heap = fresh();
    set_word(&mut heap, layout::OFF_TAIL, layout::TAIL_CLOSED);
    assert!(heap.open().unwrap().is_closed());
    // Too small a region.
    let mut small = Heap::new(100);
    assert_eq!(open_code(&mut small), libc::EINVAL);
}

/// The consumer's close sets its flag, then [`layout::RX_CLOSED`] into `rx_waiting`: that mark
/// alone is a peer's write, not a close. Producers took it for one: `EPIPE` for a message the
/// consumer then received, and every later send refused. Now each send succeeds, and a consumer
/// parked under the mark gets the message.
#[test]
fn a_close_mark_without_the_consumers_close_is_not_a_close() {
    for mode in [Mode::Spsc, Mode::Mpsc] {
        let cap = 4096;
        let mut heap = Heap::new(region_size(cap));
        heap.channel(cap, mode);
        let channel = heap.open().unwrap();
        let mut tx = channel.sender(fast()).unwrap();
        let mut rx = channel.receiver(fast()).unwrap();
        set_word(&mut heap, layout::OFF_RX_WAITING, layout::RX_CLOSED);
        tx.send(b"first", None).unwrap();
        tx.send(b"second", None).unwrap();
        for want in [&b"first"[..], b"second"] {
            assert_eq!(rx.try_recv().unwrap().unwrap(), want, "{mode:?}");
        }
        let wait = std::thread::spawn(move || {
            let result = rx.recv(Some(Duration::from_secs(10)));
            (rx, result)
        });
        while word_at(&mut heap, layout::OFF_RX_WAITING) != layout::RX_PARKED {
            std::thread::sleep(Duration::from_millis(1));
        }
        // SAFETY: an aligned word inside the heap, which outlives the reference; every access
        // to the region's words, the parked consumer's included, is atomic.
        unsafe { AtomicU32::from_ptr(heap.ptr().add(layout::OFF_RX_WAITING).cast()) }
            .store(layout::RX_CLOSED, Ordering::SeqCst);
        tx.send(b"third", None).unwrap();
        let (rx, result) = wait.join().unwrap();
        assert_eq!(result.unwrap().unwrap(), b"third", "{mode:?}");
        drop((tx, rx));
    }
}

/// A header a peer overwrote after the open (every bit set, so its flags read as closed): a new
/// endpoint is refused as corrupt, naming the magic, not as closed (`EPIPE`).
#[test]
fn an_endpoint_of_a_header_overwritten_after_the_open_is_corrupt() {
    let cap = 1024;
    let mut heap = Heap::new(region_size(cap));
    heap.channel(cap, Mode::Spsc);
    let channel = heap.open().unwrap();
    for offset in (0..layout::OFF_DATA).step_by(4) {
        // SAFETY: an aligned word inside the heap, which outlives the reference; every access to
        // the region's words, the channel's included, is atomic.
        unsafe { AtomicU32::from_ptr(heap.ptr().add(offset).cast()) }
            .store(u32::MAX, Ordering::SeqCst);
    }
    let receiver = channel.receiver(WaitOptions::default()).unwrap_err();
    let sender = channel.sender(WaitOptions::default()).unwrap_err();
    for err in [receiver, sender] {
        assert_eq!(error_code(&err), libc::EBADMSG, "{err}");
        assert!(
            err.to_string().contains(
                "the channel's header was overwritten since it was opened (magic 0xffffffff)"
            ),
            "{err}"
        );
    }
}

#[test]
#[cfg_attr(miri, ignore = "maps a real segment or runs a process")]
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
    let seg = Scratch::named("chan-small");
    let segment = Segment::create(&seg.0, 4096, &Options::default()).unwrap();
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
    let names: Vec<&str> = layout::TABLE.iter().map(|e| e.0).collect();
    for needed in [
        "MAGIC",
        "VERSION",
        "HEADER_SIZE",
        "OFF_HEAD",
        "OFF_ZEROING",
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

// ---- proptest: dead senders and a receiver killed between receives --------------------------

/// Cases of [`dead_senders_and_a_killed_receiver_lose_and_forge_nothing`]: each waits for a few
/// liveness checks.
fn dead_senders_config() -> ProptestConfig {
    ProptestConfig {
        cases: 48,
        ..proptest_config()
    }
}

proptest! {
    #![proptest_config(dead_senders_config())]

    /// A live sender's messages (slot 63) among the marked reservations of up to 24 dead
    /// senders, one each (more than the region's 16 entries in a third of the cases), whose
    /// payloads look like records of the live sender; a receiver killed after any number of
    /// receives, and one that takes over: the two deliver every live message once, in order, and
    /// nothing else.
    #[test]
    #[cfg_attr(miri, ignore = "probes pids with kill")]
    fn dead_senders_and_a_killed_receiver_lose_and_forge_nothing(
        // (a dead sender's mark, else a live message; payload length)
        plan in proptest::collection::vec((any::<bool>(), 0usize..=56), 1..48),
        before_kill in 0usize..48,
    ) {
        static DEAD: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
        let dead = *DEAD.get_or_init(dead_pid);
        let live_slot = layout::MAX_PRODUCERS - 1;
        let mut heap = Heap::new(region_size(4096));
        drop(heap.channel(4096, Mode::Mpsc));
        plant_pid(&mut heap, live_slot, std::process::id());
        let (mut pos, mut dead_slots, mut expected) = (0usize, 0usize, Vec::new());
        for (is_dead, len) in plan {
            let at = layout::OFF_DATA + pos;
            if is_dead {
                let slot = dead_slots;
                dead_slots += 1;
                plant_pid(&mut heap, slot, dead);
                set_word(&mut heap, at, mark(slot, len));
                set_word(&mut heap, at + 4, slot as u32 + 1);
                // What the payload holds: 8-byte records "of the live sender", 0xEE bytes.
                for word in (0..len / 16).map(|i| at + 8 + 16 * i) {
                    set_word(&mut heap, word, COMMITTED | 8);
                    set_word(&mut heap, word + 4, live_slot as u32 + 1);
                    heap.bytes_mut()[word + 8..word + 16].fill(0xEE);
                }
            } else {
                let message = vec![expected.len() as u8; len.max(1)];
                set_word(&mut heap, at, COMMITTED | message.len() as u32);
                set_word(&mut heap, at + 4, live_slot as u32 + 1);
                heap.bytes_mut()[at + 8..][..message.len()].copy_from_slice(&message);
                expected.push(message);
            }
            pos += layout::record_span(if is_dead { len } else { len.max(1) });
        }
        set_word(&mut heap, layout::OFF_TAIL, pos as u32);
        let channel = heap.open().unwrap();
        let options = WaitOptions { spin: 2, liveness_interval: Duration::from_millis(1) };
        let mut got = Vec::new();
        let mut rx = channel.receiver(options).unwrap();
        for _ in 0..before_kill.min(expected.len()) {
            match rx.recv(Some(Duration::from_millis(20))) {
                Ok(Some(message)) => got.push(message),
                Err(err) if error_code(&err) == libc::ETIMEDOUT => {}
                other => prop_assert!(false, "first receiver: {other:?}"),
            }
        }
        kill_receiver(&mut heap, rx);
        let mut next = channel.receiver(options).unwrap();
        while got.len() < expected.len() {
            match next.recv(Some(Duration::from_secs(2))) {
                Ok(Some(message)) => got.push(message),
                other => prop_assert!(false, "after {} messages: {other:?}", got.len()),
            }
        }
        prop_assert_eq!(&got, &expected);
        prop_assert_eq!(code(next.try_recv()), libc::EAGAIN);
    }
}

// ---- proptest: garbage never panics or hangs ----------------------------------------------

/// 256 cases natively; a few under Miri, which runs them thousands of times slower and cannot
/// write proptest's failure files (no file system access).
fn proptest_config() -> ProptestConfig {
    if cfg!(miri) {
        ProptestConfig {
            cases: 4,
            failure_persistence: None,
            ..ProptestConfig::default()
        }
    } else {
        ProptestConfig {
            cases: 256,
            ..ProptestConfig::default()
        }
    }
}

proptest! {
    #![proptest_config(proptest_config())]

    /// Entirely random header bytes.
    #[test]
    fn open_random_header_never_panics(header in proptest::collection::vec(any::<u8>(), 1024)) {
        let mut heap = Heap::new(region_size(256));
        heap.bytes_mut()[..1024].copy_from_slice(&header);
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

    /// Random bytes in the data area and random (valid) positions, in both modes: receiving
    /// returns messages (never longer than the ring held), `EAGAIN`, `ETIMEDOUT` or `EBADMSG`,
    /// never panics, and each call returns.
    #[test]
    #[cfg_attr(miri, ignore = "probes producers' pids with kill, which Miri cannot call")]
    fn corrupted_ring_never_panics_or_hangs(
        data in proptest::collection::vec(any::<u8>(), 256),
        head in 0u32..(1 << 28),
        used in 0u32..=32,
        // (record slot, length: a fragment's 120 or any, kind bits, producer word)
        commit_words in proptest::collection::vec(
            (0usize..32, prop_oneof![Just(120u32), 0u32..600, Just(layout::REC_LEN_MASK)], 0u32..16, 0u32..70),
            0..12,
        ),
        // Producer slots: empty, this process, a dead process, garbage.
        pids in proptest::collection::vec(0usize..4, 4),
        // More dead senders than the orphan table holds (slots 4..24).
        many_dead in any::<bool>(),
        // Orphan entries: (entry, slot + 1, an end `8 * n` past head or any word, n or the word).
        orphans in proptest::collection::vec((0usize..16, 0u32..70, any::<bool>(), any::<u32>()), 0..17),
        mpsc in any::<bool>(),
        closed in any::<bool>(),
    ) {
        let cap = 256u32;
        let mut heap = Heap::new(region_size(cap));
        drop(heap.channel(cap, if mpsc { Mode::Mpsc } else { Mode::Spsc }));
        heap.bytes_mut()[layout::OFF_DATA..].copy_from_slice(&data);
        // Plausible commit words at record boundaries, so that parsing goes deeper: any mix of
        // SKIP, MORE and ABORT, committed or not (a mark), lengths up to the largest the word
        // holds, and producer words mostly in range.
        for (slot, len, kind, producer) in commit_words {
            let flags = [layout::REC_SKIP, layout::REC_MORE, layout::REC_ABORT]
                .iter()
                .enumerate()
                .filter(|&(bit, _)| kind & (1 << bit) != 0)
                .fold(0, |acc, (_, &flag)| acc | flag);
            let len = if flags == layout::REC_ABORT && len == 120 { 0 } else { len };
            let committed = if kind & 8 == 0 { layout::REC_COMMITTED } else { 0 };
            set_word(&mut heap, layout::OFF_DATA + slot * 8, committed | flags | len);
            set_word(&mut heap, layout::OFF_DATA + slot * 8 + 4, producer);
        }
        static DEAD: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
        let dead = *DEAD.get_or_init(dead_pid);
        for (slot, which) in pids.into_iter().enumerate() {
            let pid = [0, std::process::id(), dead, 0xFFFF_FFFB][which];
            set_word(&mut heap, layout::OFF_PRODUCER_PIDS + 4 * slot, pid);
        }
        if many_dead {
            for slot in 4..24 {
                set_word(&mut heap, layout::OFF_PRODUCER_PIDS + 4 * slot, dead);
            }
        }
        let head = (head * 8) & layout::POS_MASK;
        let tail = head.wrapping_add(used * 8) & layout::POS_MASK;
        for (entry, tag, near, word) in orphans {
            let end = if near { head.wrapping_add(8 * (word % 34)) & layout::POS_MASK } else { word };
            set_word(&mut heap, layout::OFF_ORPHANS + 8 * entry, tag);
            set_word(&mut heap, layout::OFF_ORPHANS + 8 * entry + 4, end);
        }
        set_word(&mut heap, layout::OFF_HEAD, head);
        set_word(&mut heap, layout::OFF_ZEROING, head);
        set_word(&mut heap, layout::OFF_TAIL, tail | if closed { layout::TAIL_CLOSED } else { 0 });
        let channel = heap.open().unwrap();
        let mut rx = channel.receiver(WaitOptions { spin: 2, liveness_interval: Duration::from_millis(1) }).unwrap();
        let mut received = 0;
        for _ in 0..64 {
            match rx.recv(Some(Duration::from_millis(1))) {
                Ok(Some(msg)) => {
                    // Every byte delivered was in the ring, once.
                    received += msg.len();
                    prop_assert!(received <= (used * 8) as usize);
                }
                Ok(None) => break,
                Err(err) => {
                    let c = error_code(&err);
                    prop_assert!(
                        [libc::ETIMEDOUT, libc::EBADMSG, libc::ECONNRESET].contains(&c),
                        "unexpected {err}"
                    );
                    if c == libc::EBADMSG { break; }
                }
            }
        }
    }

    /// Well-formed chains of whole messages, fragments, abort and skip records from random
    /// producers (some out of range), at a random head, with a few words then overwritten:
    /// receiving never panics or hangs, and never delivers more bytes than the records held.
    #[test]
    fn fragment_chains_never_panic_or_hang(
        head in 0u32..(1 << 28),
        // (kind: whole, fragment, abort, last fragment; length; producer word)
        records in proptest::collection::vec((0u8..4, 0usize..=120, 0u32..=66), 0..24),
        edits in proptest::collection::vec((0usize..64, any::<u32>()), 0..3),
        mpsc in any::<bool>(),
        closed in any::<bool>(),
    ) {
        let cap = 256u32;
        let max = 120;
        let mut heap = Heap::new(region_size(cap));
        drop(heap.channel(cap, if mpsc { Mode::Mpsc } else { Mode::Spsc }));
        let head = (head * 8) & layout::POS_MASK;
        let mut pos = head;
        let mut payload = 0;
        for (kind, len, producer) in records {
            let (flags, len) = match kind {
                0 | 3 => (0, len),
                1 => (layout::REC_MORE, max),
                _ => (layout::REC_ABORT, 0),
            };
            let span = layout::record_span(len) as u32;
            let idx = pos & (cap - 1);
            let to_end = cap - idx;
            let pad = if span > to_end { to_end } else { 0 };
            if pos.wrapping_sub(head) + pad + span > cap {
                break;
            }
            if pad > 0 {
                let word = layout::REC_COMMITTED | layout::REC_SKIP | (pad - 8);
                set_word(&mut heap, layout::OFF_DATA + idx as usize, word);
                pos = pos.wrapping_add(pad);
            }
            let idx = (pos & (cap - 1)) as usize;
            set_word(&mut heap, layout::OFF_DATA + idx, layout::REC_COMMITTED | flags | len as u32);
            set_word(&mut heap, layout::OFF_DATA + idx + 4, producer);
            heap.bytes_mut()[layout::OFF_DATA + idx + 8..][..len].fill(0x5A);
            payload += len;
            pos = pos.wrapping_add(span);
        }
        // Without edits every payload byte was written once; edits may forge more.
        let bound = if edits.is_empty() { payload } else { cap as usize };
        for (word, value) in edits {
            set_word(&mut heap, layout::OFF_DATA + word * 4, value);
        }
        set_word(&mut heap, layout::OFF_HEAD, head);
        set_word(&mut heap, layout::OFF_ZEROING, head);
        let tail = pos & layout::POS_MASK;
        set_word(&mut heap, layout::OFF_TAIL, tail | if closed { layout::TAIL_CLOSED } else { 0 });
        let channel = heap.open().unwrap();
        let mut rx = channel.receiver(WaitOptions { spin: 2, liveness_interval: Duration::from_millis(1) }).unwrap();
        let mut received = 0;
        for _ in 0..64 {
            match rx.try_recv() {
                Ok(Some(msg)) => {
                    received += msg.len();
                    prop_assert!(received <= bound, "{received} bytes of {bound}");
                }
                Ok(None) => break,
                Err(err) => {
                    let c = error_code(&err);
                    prop_assert!([libc::EAGAIN, libc::EBADMSG].contains(&c), "unexpected {err}");
                    break;
                }
            }
        }
    }
}

// ---- dead senders, reclaimed slots, limits ------------------------------------------------

/// The pid of a process that has exited and been reaped: dead (until the kernel reuses it).
fn dead_pid() -> u32 {
    let mut child = Command::new("true").spawn().unwrap();
    let pid = child.id();
    child.wait().unwrap();
    pid
}

fn plant_pid(heap: &mut Heap, slot: usize, pid: u32) {
    set_word(heap, layout::OFF_PRODUCER_PIDS + 4 * slot, pid);
}

/// The reservation mark of producer `slot` for a `len`-byte payload.
fn mark(slot: usize, len: usize) -> u32 {
    layout::mark_word(slot, layout::record_span(len) as u32)
}

#[test]
#[cfg_attr(miri, ignore = "runs a process, and probes pids with kill")]
fn a_dead_senders_slot_is_reclaimed_while_live_senders_go_on() {
    let me = std::process::id();
    let dead = dead_pid();
    // Slot 2 (producer word 3) died after a fragment and a reservation it never committed;
    // slot 0 (producer word 1) lives and has messages on both sides of the reservation.
    let mut heap = handmade(
        512,
        Mode::Mpsc,
        &[
            (COMMITTED | layout::REC_MORE | 248, 3, 248),
            (COMMITTED | 4, 1, 4),
            (mark(2, 16), 3, 16),
            (COMMITTED | 5, 1, 5),
        ],
    );
    for (slot, pid) in [(0, me), (1, me), (2, dead)] {
        plant_pid(&mut heap, slot, pid);
    }
    let channel = heap.open().unwrap();
    let mut rx = channel.receiver(fast()).unwrap();
    assert_eq!(rx.try_recv().unwrap().unwrap(), [0xAB; 4]);
    // The reservation holds up the ring until the receiver, waiting, finds its sender dead (a
    // check between receives only reaps the slot).
    assert_eq!(code(rx.try_recv()), libc::EAGAIN);
    assert_eq!(
        rx.recv(Some(Duration::from_secs(20))).unwrap().unwrap(),
        [0xAB; 5]
    );
    let died = rx.take_dead_senders();
    assert_eq!(
        died,
        [shared_buffer::channel::DeadSender { pid: dead, slot: 2 }]
    );
    assert!(rx.take_dead_senders().is_empty(), "reported once");
    // Live senders keep the stream open: no ECONNRESET, only a timeout.
    assert_eq!(
        code(rx.recv(Some(Duration::from_millis(150)))),
        libc::ETIMEDOUT
    );
    // A new sender takes the freed slot; the dead one's fragment is not glued onto its message.
    let mut tx = channel.sender(fast()).unwrap();
    tx.send(b"rejoined", Some(Duration::from_secs(5))).unwrap();
    assert_eq!(
        rx.recv(Some(Duration::from_secs(5))).unwrap().unwrap(),
        b"rejoined"
    );
    assert_eq!(
        heap.bytes_mut()[layout::OFF_PRODUCER_PIDS + 8..][..4],
        me.to_le_bytes(),
        "the new sender holds slot 2"
    );
}

/// A receiver kept busy by live senders never waits, yet still frees a dead sender's slot once
/// a liveness check is due, and reports it: a new sender is not refused for as long as the
/// others keep it busy.
#[test]
#[cfg_attr(miri, ignore = "runs a process, and probes pids with kill")]
fn a_receiver_that_never_waits_frees_a_dead_senders_slot() {
    let dead = dead_pid();
    let mut heap = handmade(4096, Mode::Mpsc, &[]);
    plant_pid(&mut heap, 1, dead);
    let channel = heap.open().unwrap();
    let mut rx = channel.receiver(fast()).unwrap();
    let mut tx = channel.sender(fast()).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut received = 0u64;
    // Every receive finds a message waiting: `try_recv` never waits.
    while rx.take_dead_senders().is_empty() {
        assert!(
            Instant::now() < deadline,
            "not freed after {received} messages"
        );
        tx.try_send(&received.to_le_bytes()).unwrap();
        assert_eq!(rx.try_recv().unwrap().unwrap(), received.to_le_bytes());
        received += 1;
    }
    assert_eq!(
        heap.bytes_mut()[layout::OFF_PRODUCER_PIDS + 4..][..4],
        [0; 4],
        "slot 1 is free"
    );
    let mut late = channel.sender(fast()).unwrap();
    late.try_send(b"joined").unwrap();
    assert_eq!(rx.try_recv().unwrap().unwrap(), b"joined");
}

/// A busy receiver that spends long on each message looks at the clock more often: it frees a
/// dead sender's slot within a few intervals, not after 1,024 slow messages.
#[test]
#[cfg_attr(miri, ignore = "runs a process, and probes pids with kill")]
fn a_receiver_slow_on_each_message_still_checks_on_time() {
    let dead = dead_pid();
    let mut heap = handmade(4096, Mode::Mpsc, &[]);
    plant_pid(&mut heap, 1, dead);
    let channel = heap.open().unwrap();
    let mut rx = channel.receiver(fast()).unwrap();
    let mut tx = channel.sender(fast()).unwrap();
    let mut received = 0u32;
    // 5 ms of work per message, a 50 ms interval: 1,024 messages would take 5 s.
    while rx.take_dead_senders().is_empty() {
        assert!(received < 300, "not freed after {received} messages");
        tx.try_send(&received.to_le_bytes()).unwrap();
        assert_eq!(rx.try_recv().unwrap().unwrap(), received.to_le_bytes());
        std::thread::sleep(Duration::from_millis(5));
        received += 1;
    }
}

/// Receives that each wait less than a liveness interval still check on the senders, once one
/// is due: the interval runs on from one wait to the next.
#[test]
#[cfg_attr(miri, ignore = "runs a process, and probes pids with kill")]
fn short_waits_add_up_to_a_liveness_check() {
    let dead = dead_pid();
    let mut heap = handmade(4096, Mode::Mpsc, &[]);
    plant_pid(&mut heap, 1, dead);
    let channel = heap.open().unwrap();
    let mut rx = channel.receiver(fast()).unwrap();
    let _tx = channel.sender(fast()).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    // Each wait is a fifth of the 50 ms interval.
    while rx.take_dead_senders().is_empty() {
        assert!(Instant::now() < deadline, "never checked");
        assert_eq!(
            code(rx.recv(Some(Duration::from_millis(10)))),
            libc::ETIMEDOUT
        );
    }
}

/// A liveness interval too long for the clock means "never check", not a panic.
#[test]
fn a_liveness_interval_of_duration_max_is_taken() {
    let mut heap = Heap::new(region_size(512));
    let channel = heap.channel(512, Mode::Mpsc);
    let forever = WaitOptions {
        spin: 0,
        liveness_interval: Duration::MAX,
    };
    let mut rx = channel.receiver(forever).unwrap();
    let mut tx = channel.sender(forever).unwrap();
    assert_eq!(
        code(rx.recv(Some(Duration::from_millis(5)))),
        libc::ETIMEDOUT
    );
    tx.send(b"x", Some(Duration::from_secs(1))).unwrap();
    assert_eq!(rx.recv(None).unwrap().unwrap(), b"x");
}

/// A stale mark: a sender that lost its place to a sweep while it stalled, and was killed between
/// its claim's CAS (landing a lap later) and its undo, left its mark in free space. A receiver
/// finds the ring empty there, and the sender that reserves next takes the word over: nothing
/// is lost, and nothing waits.
#[test]
fn a_sender_takes_over_a_stale_mark_where_it_reserved() {
    let mut heap = handmade(512, Mode::Mpsc, &[]);
    // Free space at the tail, holding slot 5's mark over 40 bytes; slot 5 is free.
    set_word(&mut heap, layout::OFF_DATA, mark(5, 32));
    let channel = heap.open().unwrap();
    let mut rx = channel.receiver(fast()).unwrap();
    assert_eq!(code(rx.try_recv()), libc::EAGAIN, "empty, not corrupt");
    // Its abort record lands on the mark (taken over), then its message.
    let mut tx = channel.sender(fast()).unwrap();
    tx.try_send(b"taken over").unwrap();
    assert_eq!(rx.try_recv().unwrap().unwrap(), b"taken over");
    assert_eq!(
        word_at(&mut heap, layout::OFF_TAIL) as usize,
        8 + layout::record_span(10),
        "no reservation lost"
    );
}

/// One sender's mark seen before its `tail`: a sender in JavaScript stores `tail` with a plain
/// store, which only its commit orders, so a receiver may find the mark at a `tail` that has not
/// moved yet. Nothing is ready there, which is not corruption: the message arrives once committed.
#[test]
fn one_senders_mark_seen_before_its_tail_reads_as_an_empty_ring() {
    let mut heap = handmade(512, Mode::Spsc, &[]);
    let span = layout::record_span(5);
    // The mark is out, `tail` still 0: the order another core may see the two plain stores in.
    set_word(&mut heap, layout::OFF_DATA, mark(0, 5));
    let channel = heap.open().unwrap();
    let mut rx = channel.receiver(fast()).unwrap();
    assert_eq!(code(rx.try_recv()), libc::EAGAIN, "empty, not corrupt");
    assert_eq!(
        code(rx.recv(Some(Duration::from_millis(20)))),
        libc::ETIMEDOUT
    );
    // Then `tail`, the payload and the commit.
    set_word(&mut heap, layout::OFF_TAIL, span as u32);
    heap.bytes_mut()[layout::OFF_DATA + 8..][..5].fill(0xAB);
    set_word(&mut heap, layout::OFF_DATA, COMMITTED | 5);
    assert_eq!(rx.try_recv().unwrap().unwrap(), [0xAB; 5]);
    assert_eq!(code(rx.try_recv()), libc::EAGAIN);
    // A mark past a `tail` that did move is still corrupt: no sender leaves one.
    let mut heap = handmade(512, Mode::Spsc, &[(COMMITTED | 5, 0, 5)]);
    set_word(&mut heap, layout::OFF_DATA + span, mark(0, 5));
    set_word(&mut heap, layout::OFF_TAIL, span as u32 + 8);
    one_message_then_corrupt(&mut heap);
}

/// A stale mark on the first word of a reservation is left at the first liveness check that
/// finds it: the sender that reserved there, alive, takes it over in the meantime.
#[test]
#[cfg_attr(miri, ignore = "probes pids with kill")]
fn a_stale_mark_is_left_for_its_sender_until_a_second_check() {
    let unmarked: Handmade = (0, 0, 0);
    let records = [(mark(2, 16), 0, 0), unmarked, (COMMITTED | 5, 1, 5)];
    let mut heap = handmade(512, Mode::Mpsc, &records);
    plant_pid(&mut heap, 0, std::process::id());
    plant_pid(&mut heap, 3, std::process::id());
    let channel = heap.open().unwrap();
    let mut rx = channel.receiver(fast()).unwrap();
    // One check, due as the receive starts; the next would come after it ends.
    std::thread::sleep(Duration::from_millis(60));
    assert_eq!(
        code(rx.recv(Some(Duration::from_millis(40)))),
        libc::ETIMEDOUT
    );
    assert_eq!(word_at(&mut heap, layout::OFF_DATA), mark(2, 16), "left");
    assert_eq!(word_at(&mut heap, layout::OFF_SWEEPS), 0);
    // Slot 3 takes it over, writes and commits its 8 bytes.
    set_word(&mut heap, layout::OFF_DATA + 4, 4);
    heap.bytes_mut()[layout::OFF_DATA + 8..][..8].fill(0xCD);
    set_word(&mut heap, layout::OFF_DATA, COMMITTED | 8);
    let got = rx.recv(Some(Duration::from_secs(5))).unwrap().unwrap();
    assert_eq!(got, [0xCD; 8]);
    assert_eq!(
        rx.recv(Some(Duration::from_secs(5))).unwrap().unwrap(),
        [0xAB; 5]
    );
}

/// A stale mark on the first word of a reservation whose sender died before taking it over:
/// taken as one word by the receiver's liveness check, as the mark runs past the tail (nobody's),
/// its slot is free, or its slot's dead sender never wrote its producer word there. The rest of
/// the dead sender's reservation is swept; the message after it arrives.
#[test]
#[cfg_attr(miri, ignore = "runs a process, and probes pids with kill")]
fn a_stale_mark_at_head_is_dropped_and_the_others_go_on() {
    let me = std::process::id();
    let unmarked: Handmade = (0, 0, 0);
    // Slot 2's mark over 64 bytes (past the tail) or over 24 (inside it); slot 2 free or dead.
    // Then the rest of slot 3's reservation, and slot 0's message: 32 bytes in all.
    for (stale_len, slot_2_dead) in [(56, false), (16, false), (16, true)] {
        let what = format!("a mark over {stale_len} bytes, slot 2 dead: {slot_2_dead}");
        let records = [(mark(2, stale_len), 0, 0), unmarked, (COMMITTED | 5, 1, 5)];
        let mut heap = handmade(512, Mode::Mpsc, &records);
        plant_pid(&mut heap, 0, me);
        if slot_2_dead {
            plant_pid(&mut heap, 2, dead_pid());
        }
        plant_pid(&mut heap, 3, dead_pid());
        let channel = heap.open().unwrap();
        let mut rx = channel.receiver(fast()).unwrap();
        let got = rx.recv(Some(Duration::from_secs(20))).unwrap();
        assert_eq!(got.unwrap(), [0xAB; 5], "{what}");
        let dead = rx.take_dead_senders().len();
        assert_eq!(dead, 1 + usize::from(slot_2_dead), "{what}");
        let tail = word_at(&mut heap, layout::OFF_TAIL);
        assert_eq!(word_at(&mut heap, layout::OFF_HEAD), tail, "{what}");
        // The mark's word, then the sweep of the 8 zero bytes.
        assert_eq!(word_at(&mut heap, layout::OFF_SWEEPS), 4, "{what}");
        let data = &heap.bytes_mut()[layout::OFF_DATA..][..512];
        assert!(
            data.iter().all(|&b| b == 0),
            "{what}: consumed bytes are zero"
        );
    }
}

/// A sender killed between its tail CAS and its mark leaves a reservation of unknown length,
/// all zero, at `head`. Left unmarked at two liveness checks while the dead sender's records are
/// still ahead, it is swept: the receiver takes the zero words up to the next record (or the
/// tail) and goes on; the other senders lose nothing. A live sender's unmarked reservation is
/// swept only after ten checks.
#[test]
#[cfg_attr(miri, ignore = "runs a process, and probes pids with kill")]
fn a_dead_senders_reservation_never_marked_is_swept_and_the_others_go_on() {
    let me = std::process::id();
    let unmarked: Handmade = (0, 0, 0); // 8 zero bytes
    for (dead, then_more) in [(true, true), (true, false), (false, true)] {
        // Slot 0 lives; slot 2 reserved 24 bytes and wrote nothing. Then slot 1's message,
        // or nothing: the sweep stops at the tail.
        let mut records = vec![(COMMITTED | 4, 1, 4), unmarked, unmarked, unmarked];
        if then_more {
            records.push((COMMITTED | 5, 2, 5));
        }
        let mut heap = handmade(512, Mode::Mpsc, &records);
        plant_pid(&mut heap, 0, me);
        plant_pid(&mut heap, 1, me);
        plant_pid(&mut heap, 2, if dead { dead_pid() } else { me });
        let channel = heap.open().unwrap();
        let mut rx = channel.receiver(fast()).unwrap();
        assert_eq!(rx.try_recv().unwrap().unwrap(), [0xAB; 4]);
        assert_eq!(code(rx.try_recv()), libc::EAGAIN, "in flight");
        let word = |heap: &mut Heap, at: usize| {
            u32::from_le_bytes(heap.bytes_mut()[at..][..4].try_into().unwrap())
        };
        // Checks come at least 50 ms apart, the first as the receive starts to wait (one is due
        // by then). A dead sender's record is swept at the second: a receive of 40 ms makes one.
        // A live sender's at the tenth (it may still claim it; or a peer wrote over its claim,
        // and it reserved again): one of 200 ms makes five at most.
        std::thread::sleep(Duration::from_millis(60));
        let waited = rx.recv(Some(Duration::from_millis(if dead { 40 } else { 200 })));
        assert_eq!(code(waited), libc::ETIMEDOUT);
        assert_eq!(word(&mut heap, layout::OFF_SWEEPS), 0, "no sweep yet");
        if then_more {
            let got = rx.recv(Some(Duration::from_secs(20))).unwrap().unwrap();
            assert_eq!(got, [0xAB; 5]);
        } else {
            assert_eq!(
                code(rx.recv(Some(Duration::from_millis(300)))),
                libc::ETIMEDOUT
            );
        }
        assert_eq!(rx.take_dead_senders().len(), usize::from(dead));
        let tail = word(&mut heap, layout::OFF_TAIL);
        assert_eq!(
            word(&mut heap, layout::OFF_HEAD),
            tail,
            "everything consumed"
        );
        assert_eq!(word(&mut heap, layout::OFF_SWEEPS), 2, "one sweep, ended");
        let data = &heap.bytes_mut()[layout::OFF_DATA..][..512];
        assert!(data.iter().all(|&b| b == 0), "consumed bytes are zero");
        let channel = heap.open().unwrap();
        let mut tx = channel.sender(fast()).unwrap();
        tx.send(b"after", None).unwrap();
        assert_eq!(rx.recv(None).unwrap().unwrap(), b"after");
    }
}

/// A sweep stopped by the end of the data area goes on from its start at the next liveness
/// check, without waiting for two more.
#[test]
#[cfg_attr(miri, ignore = "runs a process, and probes pids with kill")]
fn a_sweep_that_reaches_the_end_of_the_ring_goes_on_at_the_next_check() {
    // From 16 (what was before is consumed): two messages at 16..448; slot 2 died with
    // 448..512 reserved, slot 3 with 0..16 of the next lap, neither marked; slot 0 lives.
    let mut heap = handmade(512, Mode::Mpsc, &[]);
    for at in [16, 232] {
        set_word(&mut heap, layout::OFF_DATA + at, COMMITTED | 208);
        set_word(&mut heap, layout::OFF_DATA + at + 4, 1);
        heap.bytes_mut()[layout::OFF_DATA + at + 8..][..208].fill(0xAB);
    }
    for word in [layout::OFF_HEAD, layout::OFF_ZEROING] {
        set_word(&mut heap, word, 16);
    }
    set_word(&mut heap, layout::OFF_TAIL, 512 + 16);
    plant_pid(&mut heap, 0, std::process::id());
    plant_pid(&mut heap, 2, dead_pid());
    plant_pid(&mut heap, 3, dead_pid());
    let channel = heap.open().unwrap();
    let mut rx = channel.receiver(fast()).unwrap();
    for _ in 0..2 {
        assert_eq!(rx.try_recv().unwrap().unwrap(), [0xAB; 208]);
    }
    // Each receive makes one check: one is due as it starts, and it ends before the next.
    one_check(&mut rx);
    assert_eq!(
        word_at(&mut heap, layout::OFF_SWEEPS),
        0,
        "not at the first check"
    );
    one_check(&mut rx);
    assert_eq!(
        word_at(&mut heap, layout::OFF_HEAD),
        512,
        "swept to the end"
    );
    one_check(&mut rx);
    assert_eq!(
        word_at(&mut heap, layout::OFF_HEAD),
        512 + 16,
        "and on at the next check"
    );
    assert_eq!(word_at(&mut heap, layout::OFF_SWEEPS), 4);
}

/// A sweep goes no further than a dead sender's records: a live sender's reservation made after
/// the receiver found the dead one is left for its claim (until ten checks have passed).
#[test]
#[cfg_attr(miri, ignore = "runs a process, and probes pids with kill")]
fn a_sweep_goes_no_further_than_the_dead_senders_records() {
    let unmarked: Handmade = (0, 0, 0);
    let records = [(COMMITTED | 4, 1, 4), unmarked, unmarked, unmarked];
    let mut heap = handmade(512, Mode::Mpsc, &records);
    plant_pid(&mut heap, 0, std::process::id());
    plant_pid(&mut heap, 2, dead_pid());
    let channel = heap.open().unwrap();
    let mut rx = channel.receiver(fast()).unwrap();
    assert_eq!(rx.try_recv().unwrap().unwrap(), [0xAB; 4]);
    let word = |heap: &mut Heap, at: usize| {
        u32::from_le_bytes(heap.bytes_mut()[at..][..4].try_into().unwrap())
    };
    // The dead sender's records end at the tail, once a check has found it dead.
    let end = word(&mut heap, layout::OFF_TAIL);
    while rx.take_dead_senders().is_empty() {
        let waited = rx.recv(Some(Duration::from_millis(60)));
        assert_eq!(code(waited), libc::ETIMEDOUT);
    }
    // Then the live sender in slot 0 reserves 16 bytes, and has not claimed them yet.
    set_word(&mut heap, layout::OFF_TAIL, end + 16);
    let waited = rx.recv(Some(Duration::from_millis(300)));
    assert_eq!(code(waited), libc::ETIMEDOUT);
    assert_eq!(
        word(&mut heap, layout::OFF_HEAD),
        end,
        "swept to the dead sender's end"
    );
    let claim = word(&mut heap, layout::OFF_DATA + end as usize);
    assert_eq!(claim, 0, "the live reservation is left for its claim");
    assert_eq!(word(&mut heap, layout::OFF_SWEEPS), 2, "one sweep");
}

/// A sender swept while it stalled before its claim (here: a sweep under way, `sweeps` odd, that
/// has consumed the 16 bytes at the tail) finds its place consumed, writes nothing there, and
/// reserves again; a receiver taking over finishes the sweep's zeroing and gets the message.
#[test]
fn a_sender_swept_before_its_claim_writes_nothing_there() {
    let mut heap = handmade(512, Mode::Mpsc, &[]);
    let channel = heap.open().unwrap();
    let mut tx = channel.sender(fast()).unwrap(); // its abort record at 0..8
    let word = |heap: &mut Heap, at: usize| {
        u32::from_le_bytes(heap.bytes_mut()[at..][..4].try_into().unwrap())
    };
    let at = word(&mut heap, layout::OFF_TAIL);
    set_word(&mut heap, layout::OFF_SWEEPS, 3);
    set_word(&mut heap, layout::OFF_ZEROING, at + 16);
    tx.send(b"x", None).unwrap();
    assert_eq!(word(&mut heap, layout::OFF_TAIL), at + 32, "reserved again");
    let claimed = word(&mut heap, layout::OFF_DATA + at as usize);
    assert_eq!(claimed, 0, "nothing claimed in the consumed place");
    let mut rx = channel.receiver(fast()).unwrap();
    assert_eq!(
        word(&mut heap, layout::OFF_SWEEPS),
        4,
        "made even at attach"
    );
    assert_eq!(
        rx.recv(Some(Duration::from_secs(5))).unwrap().unwrap(),
        b"x"
    );
}

/// A receiver killed in the middle of a sweep leaves `sweeps` odd and the words it took as skip
/// records of 8 bytes: the next receiver makes `sweeps` even when it attaches and steps over
/// them; messages after them arrive.
#[test]
fn a_receiver_killed_mid_sweep_leaves_nothing_to_trip_over() {
    let swept: Handmade = (layout::SWEPT, 0, 0);
    let mut heap = handmade(
        512,
        Mode::Mpsc,
        &[swept, swept, swept, (COMMITTED | 5, 1, 5)],
    );
    set_word(&mut heap, layout::OFF_SWEEPS, 7);
    let channel = heap.open().unwrap();
    let mut rx = channel.receiver(fast()).unwrap();
    let sweeps = u32::from_le_bytes(
        heap.bytes_mut()[layout::OFF_SWEEPS..][..4]
            .try_into()
            .unwrap(),
    );
    assert_eq!(sweeps, 8, "made even at attach");
    assert_eq!(rx.try_recv().unwrap().unwrap(), [0xAB; 5]);
    assert_eq!(code(rx.try_recv()), libc::EAGAIN);
    let data = &heap.bytes_mut()[layout::OFF_DATA..][..512];
    assert!(data.iter().all(|&b| b == 0), "consumed bytes are zero");
}

/// A receiver killed in `drop_mark` right after its CAS took a dead sender's mark leaves the
/// word that says how far that sender's record goes, over a producer word and a payload that are
/// not zero: the next receiver finishes zeroing it when it attaches, and the message after it
/// arrives. (Before, the CAS stored an 8-byte skip record, and the next receiver stepped onto the
/// payload: `EBADMSG` for good, or a record forged by its bytes.)
#[test]
fn a_receiver_killed_while_dropping_a_dead_senders_record_leaves_it_to_the_next() {
    let mut heap = handmade(
        512,
        Mode::Mpsc,
        &[(layout::dropping_word(48), 3, 40), (COMMITTED | 5, 1, 5)],
    );
    // The dead receiver raised `sweeps` before its CAS.
    set_word(&mut heap, layout::OFF_SWEEPS, 1);
    let channel = heap.open().unwrap();
    let mut rx = channel.receiver(fast()).unwrap();
    let word = |heap: &mut Heap, at: usize| {
        u32::from_le_bytes(heap.bytes_mut()[at..][..4].try_into().unwrap())
    };
    assert_eq!(
        word(&mut heap, layout::OFF_HEAD),
        48,
        "the record is consumed"
    );
    assert_eq!(word(&mut heap, layout::OFF_ZEROING), 48);
    assert_eq!(
        word(&mut heap, layout::OFF_SWEEPS),
        4,
        "even, and raised around the drop"
    );
    let dropped = &heap.bytes_mut()[layout::OFF_DATA..][..48];
    assert!(dropped.iter().all(|&b| b == 0), "the record is zero");
    assert_eq!(rx.try_recv().unwrap().unwrap(), [0xAB; 5]);
    assert_eq!(code(rx.try_recv()), libc::EAGAIN);
}

/// That word anywhere else, or running past the tail, is a peer's: `EBADMSG` at the first
/// receive that meets it, no crash.
#[test]
fn a_dropping_word_out_of_place_is_corrupt() {
    // At head, longer than what the tail covers: left alone at attach.
    let mut heap = handmade(512, Mode::Mpsc, &[(layout::dropping_word(48), 3, 40)]);
    set_word(&mut heap, layout::OFF_TAIL, 16);
    first_receive_is_corrupt(&mut heap);
    // At head, covered by the tail, but longer than any message's record (256 bytes here): a
    // killed receiver never leaves it, so it is not taken for one (it would wipe what follows).
    let mut heap = handmade(
        512,
        Mode::Mpsc,
        &[(layout::dropping_word(264), 3, 256), (COMMITTED | 5, 1, 5)],
    );
    first_receive_is_corrupt(&mut heap);
    // After a message: a receive finds it.
    let mut heap = handmade(
        512,
        Mode::Mpsc,
        &[(COMMITTED | 5, 1, 5), (layout::dropping_word(16), 1, 8)],
    );
    one_message_then_corrupt(&mut heap);
}

/// A receiver of `heap` gets `EBADMSG` at once.
fn first_receive_is_corrupt(heap: &mut Heap) {
    let channel = heap.open().unwrap();
    let mut rx = channel.receiver(fast()).unwrap();
    assert_eq!(code(rx.try_recv()), libc::EBADMSG);
}

/// A receiver of `heap` gets a message of five 0xAB bytes, then `EBADMSG`.
fn one_message_then_corrupt(heap: &mut Heap) {
    let channel = heap.open().unwrap();
    let mut rx = channel.receiver(fast()).unwrap();
    assert_eq!(rx.try_recv().unwrap().unwrap(), [0xAB; 5]);
    assert_eq!(code(rx.try_recv()), libc::EBADMSG);
}

/// A receiver that reclaims a dead sender's slot records in the region where that sender's
/// records end, and empties the entry once it is past them.
#[test]
#[cfg_attr(miri, ignore = "probes pids with kill")]
fn a_reclaimed_senders_end_is_kept_in_the_region_until_its_records_are_passed() {
    // Slot 2 reserved 24 bytes at 0 and died before marking them.
    let mut heap = handmade(512, Mode::Mpsc, &[]);
    set_word(&mut heap, layout::OFF_TAIL, 24);
    plant_pid(&mut heap, 2, dead_pid());
    let channel = heap.open().unwrap();
    let mut rx = channel.receiver(fast()).unwrap();
    // A check is due by the time the receive starts to wait: it reclaims the slot. A sweep
    // needs a second, an interval (50 ms) later.
    one_check(&mut rx);
    assert_eq!(
        word_at(&mut heap, layout::OFF_PRODUCER_PIDS + 8),
        0,
        "slot 2 freed"
    );
    assert_eq!(word_at(&mut heap, layout::OFF_ORPHANS), 3, "slot 2's entry");
    assert_eq!(
        word_at(&mut heap, layout::OFF_ORPHANS + 4),
        24,
        "its records' end"
    );
    let mut tx = channel.sender(fast()).unwrap(); // slot 0; its abort record at 24
    tx.send(b"x", None).unwrap();
    assert_eq!(
        rx.recv(Some(Duration::from_secs(5))).unwrap().unwrap(),
        b"x"
    );
    assert_eq!(
        word_at(&mut heap, layout::OFF_ORPHANS),
        0,
        "emptied once passed"
    );
}

/// A receiver killed after it reclaimed a dead sender's slot, before it reached that sender's
/// records: the one that takes over reads the region's entry, so it takes the dead sender's
/// mark for what it is (the whole record), not for a stale one (its word alone: then it stepped
/// onto the payload, `EBADMSG` for good), and with no sender alive it fails once the ring is
/// empty.
#[test]
fn a_receiver_taking_over_knows_the_dead_senders_its_predecessor_reclaimed() {
    let mut heap = handmade(
        512,
        Mode::Mpsc,
        &[(mark(2, 40), 3, 40), (COMMITTED | 5, 1, 5)],
    );
    set_word(&mut heap, layout::OFF_ORPHANS, 3);
    set_word(&mut heap, layout::OFF_ORPHANS + 4, 48);
    let channel = heap.open().unwrap();
    let mut rx = channel.receiver(fast()).unwrap();
    // What it knows, in the header for the next one: this entry goes once passed.
    assert_eq!(
        word_at(&mut heap, layout::OFF_BEREAVED),
        1,
        "bereaved at attach"
    );
    assert_eq!(
        rx.recv(Some(Duration::from_secs(5))).unwrap().unwrap(),
        [0xAB; 5]
    );
    assert_eq!(
        word_at(&mut heap, layout::OFF_ORPHANS),
        0,
        "emptied once passed"
    );
    let dropped = &heap.bytes_mut()[layout::OFF_DATA..][..48];
    assert!(
        dropped.iter().all(|&b| b == 0),
        "the dead sender's record is zero"
    );
    // No sender is alive, and the one its predecessor found dead counts: the ring drained, it
    // fails (it waited for a sender that never came).
    let err = rx.recv(Some(Duration::from_secs(5))).unwrap_err();
    assert_eq!(error_code(&err), libc::ECONNRESET, "{err}");
}

/// A receiver killed after it found a sender dead and passed its records (no entry of the
/// orphans' table is left): the one that takes over reads the header's `bereaved`, and fails once
/// the ring is empty with no sender attached, as its predecessor would have (it waited for good).
/// A sender that attaches after the takeover clears it: the receiver then waits again, and says so
/// in the header.
#[test]
fn a_receiver_taking_over_knows_of_a_death_whose_records_its_predecessor_passed() {
    let mut heap = handmade(512, Mode::Mpsc, &[]);
    set_word(&mut heap, layout::OFF_BEREAVED, 1);
    let channel = heap.open().unwrap();
    let mut rx = channel.receiver(fast()).unwrap();
    let err = rx.recv(Some(Duration::from_secs(5))).unwrap_err();
    assert_eq!(error_code(&err), libc::ECONNRESET, "{err}");
    assert_eq!(word_at(&mut heap, layout::OFF_BEREAVED), 1, "still known");
    let tx = channel.sender(fast()).unwrap();
    let err = rx.recv(Some(Duration::from_millis(200))).unwrap_err();
    assert_eq!(error_code(&err), libc::ETIMEDOUT, "{err}");
    assert_eq!(
        word_at(&mut heap, layout::OFF_BEREAVED),
        0,
        "cleared once a sender joined"
    );
    // Gone cleanly (dropped: in MPSC, a detach), that sender leaves no death behind: the
    // receiver waits.
    drop(tx);
    let err = rx.recv(Some(Duration::from_millis(200))).unwrap_err();
    assert_eq!(error_code(&err), libc::ETIMEDOUT, "{err}");
}

/// The same with one sender: the dead one's last reservation, never marked, ends where the
/// entry says, and the message of the sender that took the slot since arrives (the receiver
/// waited for that reservation forever).
#[test]
fn a_receiver_taking_over_skips_the_only_senders_unmarked_reservation() {
    let mut heap = handmade(512, Mode::Spsc, &[]);
    set_word(&mut heap, layout::OFF_TAIL, 64);
    set_word(&mut heap, layout::OFF_ORPHANS, 1);
    set_word(&mut heap, layout::OFF_ORPHANS + 4, 64);
    let channel = heap.open().unwrap();
    let mut rx = channel.receiver(fast()).unwrap();
    let mut tx = channel.sender(fast()).unwrap();
    tx.send(b"after", None).unwrap();
    assert_eq!(
        rx.recv(Some(Duration::from_secs(5))).unwrap().unwrap(),
        b"after"
    );
}

/// More dead senders with records ahead than the region has entries for: the one found when
/// every entry is taken keeps its slot until the receiver passes its records, and its mark is
/// stepped over like the others' (waiting for an entry held the ring up at its mark for good).
#[test]
#[cfg_attr(miri, ignore = "runs a process, and probes pids with kill")]
fn a_dead_sender_past_the_regions_entries_is_stepped_over_and_freed_once_passed() {
    let dead = dead_pid();
    let senders = layout::ORPHAN_ENTRIES + 1;
    let mut records: Vec<(u32, u32, usize)> = (0..senders)
        .map(|slot| (mark(slot, 8), slot as u32 + 1, 8))
        .collect();
    records.push((COMMITTED | 5, 40, 5));
    let mut heap = handmade(4096, Mode::Mpsc, &records);
    for slot in 0..senders {
        plant_pid(&mut heap, slot, dead);
    }
    let channel = heap.open().unwrap();
    let mut rx = channel.receiver(fast()).unwrap();
    assert_eq!(
        rx.recv(Some(Duration::from_secs(20))).unwrap().unwrap(),
        [0xAB; 5]
    );
    assert_eq!(rx.take_dead_senders().len(), senders);
    // The entries end at the tail loaded when their slots were freed, past the message.
    assert_eq!(code(rx.try_recv()), libc::EAGAIN);
    for slot in 0..senders {
        let pid = word_at(&mut heap, layout::OFF_PRODUCER_PIDS + 4 * slot);
        assert_eq!(pid, 0, "slot {slot} freed");
    }
    for i in 0..layout::ORPHAN_ENTRIES {
        let tag = word_at(&mut heap, layout::OFF_ORPHANS + 8 * i);
        assert_eq!(tag, 0, "entry {i} emptied once passed");
    }
}

/// The records of `senders` dead senders (slots `0..senders`), each a marked 40-byte
/// reservation with its producer word, then a 5-byte message of a live one (slot 39); the last
/// dead sender's payload looks like records (a 16-byte message of 0x66 bytes, then a skip
/// record), which a receiver that takes its mark for a stale one (its word alone) reads.
fn dead_senders_then_a_message(senders: usize, dead: u32) -> Heap {
    let mut records: Vec<Handmade> = (0..senders)
        .map(|slot| (mark(slot, 40), slot as u32 + 1, 40))
        .collect();
    records.push((COMMITTED | 5, 40, 5));
    let mut heap = handmade(4096, Mode::Mpsc, &records);
    let payload = layout::OFF_DATA + (senders - 1) * 48 + 8;
    set_word(&mut heap, payload, COMMITTED | 16);
    set_word(&mut heap, payload + 4, 1);
    heap.bytes_mut()[payload + 8..payload + 24].fill(0x66);
    set_word(&mut heap, payload + 24, COMMITTED | layout::REC_SKIP | 8);
    set_word(&mut heap, payload + 28, 0);
    heap.bytes_mut()[payload + 32..payload + 40].fill(0);
    for slot in 0..senders {
        plant_pid(&mut heap, slot, dead);
    }
    heap
}

/// What a receiver killed now leaves: its pid, dead, in `consumer_pid` (`rx` is never used
/// again, as a killed process's is not).
fn kill_receiver(heap: &mut Heap, rx: Receiver) {
    std::mem::forget(rx);
    set_word(heap, layout::OFF_CONSUMER_PID, dead_pid());
}

/// Lets a liveness check fall due (the interval of [`fast`] is 50 ms), then receives for 30 ms:
/// the receive checks on the senders once, and times out (the next check would come after it).
fn one_check(rx: &mut Receiver) {
    std::thread::sleep(Duration::from_millis(60));
    assert_eq!(
        code(rx.recv(Some(Duration::from_millis(30)))),
        libc::ETIMEDOUT
    );
}

/// A receiver killed after it found more dead senders with records ahead than the region has
/// entries for: the one past the entries still holds its slot, so the receiver that takes over
/// finds it dead as well, steps over its mark, and gets the message after it. (It was freed
/// unrecorded: the next receiver took its mark for a stale one, stepped onto its payload and
/// handed out a message made of the dead sender's bytes.)
#[test]
#[cfg_attr(miri, ignore = "runs a process, and probes pids with kill")]
fn a_receiver_killed_with_more_dead_senders_ahead_than_entries_leaves_them_all_to_the_next() {
    let dead = dead_pid();
    let senders = layout::ORPHAN_ENTRIES + 1;
    let mut heap = dead_senders_then_a_message(senders, dead);
    let channel = heap.open().unwrap();
    let mut rx = channel.receiver(fast()).unwrap();
    // A check is due by the time the receive waits: it finds every sender dead and takes the
    // first mark; the next mark waits for the next check.
    one_check(&mut rx);
    assert_eq!(rx.take_dead_senders().len(), senders);
    let pid = |heap: &mut Heap, slot: usize| word_at(heap, layout::OFF_PRODUCER_PIDS + 4 * slot);
    for slot in 0..senders - 1 {
        assert_eq!(pid(&mut heap, slot), 0, "slot {slot} freed");
        let entry = layout::OFF_ORPHANS + 8 * slot;
        assert_eq!(word_at(&mut heap, entry), slot as u32 + 1, "entry {slot}");
    }
    assert_eq!(
        pid(&mut heap, senders - 1),
        dead,
        "no entry for the last: its slot held"
    );
    kill_receiver(&mut heap, rx);
    let mut next = channel.receiver(fast()).unwrap();
    assert_eq!(
        next.recv(Some(Duration::from_secs(20))).unwrap().unwrap(),
        [0xAB; 5],
        "the message, not one made of a dead sender's payload"
    );
    assert_eq!(code(next.try_recv()), libc::EAGAIN);
    assert_eq!(
        next.take_dead_senders().len(),
        1,
        "the one it found holding its slot"
    );
    for slot in 0..senders {
        assert_eq!(pid(&mut heap, slot), 0, "slot {slot} freed once passed");
    }
    for i in 0..layout::ORPHAN_ENTRIES {
        let tag = word_at(&mut heap, layout::OFF_ORPHANS + 8 * i);
        assert_eq!(tag, 0, "entry {i} emptied once passed");
    }
}

/// A peer that writes another dead pid into a held slot and empties an entry: that pid is found
/// dead, recorded and freed as a death of its own, and no entry is left once every record is
/// passed (as in TypeScript, which kept the first pid's hold and left the entry behind).
#[test]
#[cfg_attr(miri, ignore = "runs a process, and probes pids with kill")]
fn a_held_slot_a_peer_rewrites_leaves_no_entry_behind() {
    let senders = layout::ORPHAN_ENTRIES + 1;
    let mut heap = dead_senders_then_a_message(senders, dead_pid());
    let channel = heap.open().unwrap();
    let mut rx = channel.receiver(fast()).unwrap();
    one_check(&mut rx);
    let held = senders - 1;
    plant_pid(&mut heap, held, dead_pid());
    set_word(&mut heap, layout::OFF_ORPHANS + 8 * 15, 0);
    one_check(&mut rx);
    let entry = word_at(&mut heap, layout::OFF_ORPHANS + 8 * 15);
    assert_eq!(entry, held as u32 + 1);
    let wait = Some(Duration::from_secs(20));
    assert_eq!(rx.recv(wait).unwrap().unwrap(), [0xAB; 5]);
    assert_eq!(code(rx.try_recv()), libc::EAGAIN);
    for i in 0..layout::ORPHAN_ENTRIES {
        let tag = word_at(&mut heap, layout::OFF_ORPHANS + 8 * i);
        assert_eq!(tag, 0, "entry {i} emptied once passed");
    }
    let pid = word_at(&mut heap, layout::OFF_PRODUCER_PIDS + 4 * held);
    assert_eq!(pid, 0);
}

/// Entries a peer writes while a receiver runs do not crowd out the dead senders it finds: with
/// every entry taken, those it did not write are emptied. (They stayed, and every dead sender
/// was freed unrecorded, for a receiver taking over to take its mark for a stale one.)
#[test]
#[cfg_attr(miri, ignore = "runs a process, and probes pids with kill")]
fn orphan_entries_a_peer_writes_while_the_receiver_runs_make_way_for_a_dead_sender() {
    // A live sender's (this process's, slot 0) marked reservation holds the receiver at head;
    // slot 2's after it, then a message.
    let mut heap = handmade(
        512,
        Mode::Mpsc,
        &[
            (mark(0, 40), 1, 40),
            (mark(2, 40), 3, 40),
            (COMMITTED | 5, 1, 5),
        ],
    );
    plant_pid(&mut heap, 0, std::process::id());
    let channel = heap.open().unwrap();
    let mut rx = channel.receiver(fast()).unwrap();
    for i in 0..layout::ORPHAN_ENTRIES {
        set_word(&mut heap, layout::OFF_ORPHANS + 8 * i, 9);
        set_word(&mut heap, layout::OFF_ORPHANS + 8 * i + 4, 8);
    }
    plant_pid(&mut heap, 2, dead_pid());
    one_check(&mut rx);
    let entries: Vec<(u32, u32)> = (0..layout::ORPHAN_ENTRIES)
        .map(|i| {
            let at = layout::OFF_ORPHANS + 8 * i;
            (word_at(&mut heap, at), word_at(&mut heap, at + 4))
        })
        .filter(|&(tag, _)| tag != 0)
        .collect();
    assert_eq!(
        entries,
        [(3, 112)],
        "the peer's entries emptied, slot 2's recorded"
    );
    assert_eq!(word_at(&mut heap, layout::OFF_PRODUCER_PIDS + 8), 0);
    // Killed; the live sender commits its record; the receiver that takes over gets it, steps
    // over slot 2's mark, and gets the message.
    kill_receiver(&mut heap, rx);
    set_word(&mut heap, layout::OFF_DATA, COMMITTED | 40);
    let mut next = channel.receiver(fast()).unwrap();
    let wait = Some(Duration::from_secs(5));
    assert_eq!(next.recv(wait).unwrap().unwrap(), [0xAB; 40]);
    assert_eq!(next.recv(wait).unwrap().unwrap(), [0xAB; 5]);
}

/// Two entries for one slot (only a peer writes them): a receiver attaching keeps the one whose
/// end is further ahead, whichever comes first, and empties the other, in Rust as in TypeScript.
/// (TypeScript kept the later entry, Rust both: with the nearer one last, TypeScript took the
/// dead sender's second mark for a stale one and read its payload as records.)
#[test]
fn of_two_orphan_entries_for_one_slot_the_further_is_kept() {
    for nearer_first in [true, false] {
        // Slot 2 died with two marked reservations, then a message of slot 0.
        let mut heap = handmade(
            512,
            Mode::Mpsc,
            &[
                (mark(2, 40), 3, 40),
                (mark(2, 40), 3, 40),
                (COMMITTED | 5, 1, 5),
            ],
        );
        let (first, second) = if nearer_first { (48, 96) } else { (96, 48) };
        set_word(&mut heap, layout::OFF_ORPHANS, 3);
        set_word(&mut heap, layout::OFF_ORPHANS + 4, first);
        set_word(&mut heap, layout::OFF_ORPHANS + 8, 3);
        set_word(&mut heap, layout::OFF_ORPHANS + 12, second);
        let channel = heap.open().unwrap();
        let mut rx = channel.receiver(fast()).unwrap();
        let kept = usize::from(nearer_first);
        let tag = |heap: &mut Heap, i: usize| word_at(heap, layout::OFF_ORPHANS + 8 * i);
        assert_eq!(tag(&mut heap, kept), 3, "nearer first: {nearer_first}");
        assert_eq!(tag(&mut heap, 1 - kept), 0, "nearer first: {nearer_first}");
        assert_eq!(
            rx.recv(Some(Duration::from_secs(5))).unwrap().unwrap(),
            [0xAB; 5]
        );
        assert_eq!(tag(&mut heap, kept), 0, "emptied once passed");
    }
}

/// Entries that are not a dead sender's records still ahead (behind `head`, past `tail`, off a
/// record boundary, a slot out of range) are emptied when a receiver attaches, and change
/// nothing.
#[test]
fn orphan_entries_that_cannot_be_true_are_emptied_at_attach() {
    let mut heap = handmade(512, Mode::Mpsc, &[(COMMITTED | 5, 1, 5)]);
    let bad: [(u32, u32); 5] = [(3, 0), (3, 64), (3, 12), (65, 16), (1, 0x8000_0010)];
    for (i, (tag, end)) in bad.iter().enumerate() {
        set_word(&mut heap, layout::OFF_ORPHANS + 8 * i, *tag);
        set_word(&mut heap, layout::OFF_ORPHANS + 8 * i + 4, *end);
    }
    let channel = heap.open().unwrap();
    let mut rx = channel.receiver(fast()).unwrap();
    for i in 0..bad.len() {
        assert_eq!(
            word_at(&mut heap, layout::OFF_ORPHANS + 8 * i),
            0,
            "entry {i}"
        );
    }
    assert_eq!(rx.try_recv().unwrap().unwrap(), [0xAB; 5]);
}

#[test]
#[cfg_attr(miri, ignore = "runs a process, and probes pids with kill")]
fn the_only_sender_dies_mid_message_and_a_new_one_takes_over() {
    let dead = dead_pid();
    // One whole message, a fragment, then a reservation never marked (the sender died between
    // moving the tail and marking it).
    let mut heap = handmade(
        512,
        Mode::Spsc,
        &[
            (COMMITTED | 6, 0, 6),
            (COMMITTED | layout::REC_MORE | 248, 0, 248),
        ],
    );
    let tail = u32::from_le_bytes(
        heap.bytes_mut()[layout::OFF_TAIL..][..4]
            .try_into()
            .unwrap(),
    );
    set_word(&mut heap, layout::OFF_TAIL, tail + 64);
    plant_pid(&mut heap, 0, dead);
    let channel = heap.open().unwrap();
    let mut rx = channel.receiver(fast()).unwrap();
    assert_eq!(
        code(channel.sender(fast())),
        libc::EAGAIN,
        "a dead sender's place"
    );
    assert_eq!(rx.recv(None).unwrap().unwrap(), [0xAB; 6]);
    let err = rx.recv(Some(Duration::from_secs(20))).unwrap_err();
    assert_eq!(error_code(&err), libc::ECONNRESET, "{err}");
    assert!(
        err.to_string()
            .contains("no sender is attached, and one died"),
        "{err}"
    );
    assert_eq!(rx.take_dead_senders().len(), 1);
    let mut tx = channel.sender(fast()).unwrap();
    tx.send(b"again", None).unwrap();
    assert_eq!(
        rx.recv(None).unwrap().unwrap(),
        b"again",
        "no fragment glued on"
    );
    drop(tx);
    assert_eq!(rx.recv(None).unwrap(), None);
}

#[test]
#[cfg_attr(miri, ignore = "runs a process, and probes pids with kill")]
fn a_death_found_while_another_sender_lives_ends_the_wait_once_it_leaves() {
    // A pool whose workers detach when done: one crashes while another is attached, a check
    // finds it, then the other detaches. A check that saw the other alive used to forget the
    // death, and the receiver waited for good.
    let mut heap = Heap::new(region_size(1024));
    let channel = heap.channel(1024, Mode::Mpsc);
    let mut rx = channel.receiver(fast()).unwrap();
    let tx = channel.sender(fast()).unwrap();
    plant_pid(&mut heap, 5, dead_pid());
    let waited = rx.recv(Some(Duration::from_millis(200))).unwrap_err();
    assert_eq!(error_code(&waited), libc::ETIMEDOUT, "a sender is attached");
    assert_eq!(
        rx.take_dead_senders().len(),
        1,
        "found while the other lived"
    );
    drop(tx);
    let err = rx.recv(Some(Duration::from_secs(20))).unwrap_err();
    assert_eq!(error_code(&err), libc::ECONNRESET, "{err}");
    // A sender that attaches after the death (another place) and leaves: nothing to report.
    plant_pid(&mut heap, 7, std::process::id());
    let err = rx.recv(Some(Duration::from_millis(200))).unwrap_err();
    assert_eq!(error_code(&err), libc::ETIMEDOUT, "a sender is attached");
    plant_pid(&mut heap, 7, 0);
    let err = rx.recv(Some(Duration::from_millis(200))).unwrap_err();
    assert_eq!(
        error_code(&err),
        libc::ETIMEDOUT,
        "a sender attached after the death"
    );
}

#[test]
fn limits_drop_only_the_offending_message() {
    use shared_buffer::channel::Limits;
    for limits in [
        Limits {
            max_message: 1000,
            max_pending: 1 << 20,
        },
        Limits {
            max_message: 1 << 20,
            max_pending: 600,
        },
    ] {
        let mut heap = Heap::new(region_size(1024));
        let channel = heap.channel(1024, Mode::Mpsc);
        let mut rx = channel.receiver(fast()).unwrap();
        rx.set_limits(limits);
        let mut tx = channel.sender(fast()).unwrap();
        let sending = std::thread::spawn(move || {
            tx.send(&[7; 1500], Some(Duration::from_secs(10))).unwrap();
            tx.send(b"ok", Some(Duration::from_secs(10))).unwrap();
            tx.send(&[8; 900], Some(Duration::from_secs(10))).unwrap();
        });
        let err = rx.recv(Some(Duration::from_secs(10))).unwrap_err();
        assert_eq!(error_code(&err), libc::EMSGSIZE, "{err}");
        assert!(err.to_string().contains("Limits::max_"), "{err}");
        assert_eq!(
            rx.recv(Some(Duration::from_secs(10))).unwrap().unwrap(),
            b"ok"
        );
        assert_eq!(
            rx.recv(Some(Duration::from_secs(10))).unwrap().unwrap(),
            [8; 900]
        );
        sending.join().unwrap();
    }
}

#[test]
#[cfg_attr(miri, ignore = "maps a real segment or runs a process")]
fn a_killed_sender_among_live_ones_across_processes() {
    let seg = Scratch::named("chan-kill-one");
    let channel = channel_in(&seg, MPSC_CAPACITY, Mode::Mpsc);
    let mut rx = channel.receiver(fast()).unwrap();
    let mut stuck = spawn_child("stuck_producer", &seg, "");
    read_line(&mut stuck, "ready");
    let stuck_pid = stuck.id();
    assert_eq!(rx.recv(None).unwrap().unwrap(), b"before");
    let mut live: Vec<Child> = (0..2)
        .map(|p| spawn_child("mpsc_producer", &seg, &p.to_string()))
        .collect();
    // The live senders fill the ring behind the reservation; the receiver waits on it.
    stuck.kill().unwrap();
    stuck.wait().unwrap();
    let mut next = [0u32; 2];
    for _ in 0..2 * MPSC_COUNT {
        let msg = rx.recv(Some(Duration::from_secs(30))).unwrap().unwrap();
        let p = u32::from_le_bytes(msg[..4].try_into().unwrap()) as usize;
        let seq = u32::from_le_bytes(msg[4..8].try_into().unwrap());
        assert_eq!(seq, next[p], "order of producer {p}");
        assert_eq!(msg, message(p as u32, seq, 8, MPSC_MAX_LEN, true));
        next[p] += 1;
    }
    let died = rx.take_dead_senders();
    assert_eq!(died.len(), 1);
    assert_eq!(died[0].pid, stuck_pid);
    for child in &mut live {
        assert!(child.wait().unwrap().success());
    }
    // A new sender joins and closes the stream.
    let mut tx = channel.sender(fast()).unwrap();
    tx.send(b"last", None).unwrap();
    tx.close();
    assert_eq!(rx.recv(None).unwrap().unwrap(), b"last");
    assert_eq!(rx.recv(None).unwrap(), None);
}

#[test]
fn typed_errors_say_what_happened() {
    use shared_buffer::channel::ClosedBy;
    let mut heap = Heap::new(region_size(128));
    let ch = heap.channel(128, Mode::Mpsc);
    let mut rx = ch.receiver(fast()).unwrap();
    let mut a = ch.sender(fast()).unwrap();
    let mut b = ch.sender(fast()).unwrap();
    assert_eq!(rx.try_recv().unwrap_err(), ChannelError::Empty);
    while a.try_send(b"x").is_ok() {}
    assert_eq!(a.try_send(b"x").unwrap_err(), ChannelError::Full);
    assert_eq!(
        a.send(b"x", Some(Duration::ZERO)).unwrap_err(),
        ChannelError::Timeout
    );
    assert!(matches!(
        a.try_send(&[0; 100]).unwrap_err(),
        ChannelError::TooLong(_)
    ));
    assert!(matches!(
        ch.receiver(fast()).unwrap_err(),
        ChannelError::Busy(_)
    ));
    a.close();
    // The second sender is told that a sender ended the stream, not that the receiver left.
    let err = b.try_send(b"y").unwrap_err();
    assert_eq!(err, ChannelError::Closed(ClosedBy::Sender));
    assert_eq!((err.errno(), error_code(&err)), (libc::EPIPE, libc::EPIPE));
    assert!(err.to_string().contains("a sender closed"), "{err}");
    while let Ok(Some(_)) = rx.try_recv() {}
    drop(rx);
    let mut heap2 = Heap::new(region_size(128));
    let ch2 = heap2.channel(128, Mode::Mpsc);
    let mut c = ch2.sender(fast()).unwrap();
    drop(ch2.receiver(fast()).unwrap());
    let err = c.try_send(b"z").unwrap_err();
    assert_eq!(err, ChannelError::Closed(ClosedBy::Receiver));
    assert!(err.to_string().contains("receiver closed"), "{err}");
    assert_eq!(
        ch2.sender(fast()).unwrap_err(),
        ChannelError::Closed(ClosedBy::Receiver)
    );
    let io = std::io::Error::from(err);
    assert_eq!(io.kind(), std::io::ErrorKind::BrokenPipe);
}

// ---- the receiver's close -----------------------------------------------------------------

/// Two sender threads send as fast as they can while the receiver takes some messages (the
/// last one lent in place) and closes: senders learn of the close from the wake-up check after
/// their commit, so each one's first failing send and every later one (whichever way) is
/// `EPIPE` by the receiver, and every message received was reported sent.
#[test]
#[cfg_attr(miri, ignore = "too many messages for Miri")]
fn receiver_close_stops_senders_on_their_next_commit() {
    const BEFORE_CLOSE: u32 = 2000;
    let mut heap = Heap::new(region_size(4096));
    let channel = heap.channel(4096, Mode::Mpsc);
    let mut rx = channel.receiver(fast()).unwrap();
    let senders: Vec<_> = (0..2u8)
        .map(|p| {
            let mut tx = channel.sender(fast()).unwrap();
            std::thread::spawn(move || {
                let mut msg = [p; 64];
                let mut sent = 0u32;
                let first = loop {
                    msg[4..8].copy_from_slice(&sent.to_le_bytes());
                    match tx.send(&msg, Some(Duration::from_secs(20))) {
                        Ok(()) => sent += 1,
                        Err(err) => break err,
                    }
                };
                let later = [
                    tx.send(&msg, Some(Duration::from_secs(1))).unwrap_err(),
                    tx.try_send(&msg).unwrap_err(),
                    tx.reserve(8, Some(Duration::from_secs(1))).unwrap_err(),
                    tx.try_reserve(8).unwrap_err(),
                ];
                (sent, first, later)
            })
        })
        .collect();
    let mut got = [0u32; 2];
    while got[0] < BEFORE_CLOSE || got[1] < BEFORE_CLOSE {
        let msg = rx.recv(Some(Duration::from_secs(20))).unwrap().unwrap();
        let (p, seq) = (
            msg[0] as usize,
            u32::from_le_bytes(msg[4..8].try_into().unwrap()),
        );
        assert_eq!(seq, got[p], "sender {p}'s messages in order");
        got[p] += 1;
    }
    // One more, lent in place when the receiver closes: the close consumes it first.
    let msg = rx.recv_ref(Some(Duration::from_secs(20))).unwrap().unwrap();
    got[msg.to_vec()[0] as usize] += 1;
    drop(rx);
    for (p, sender) in senders.into_iter().enumerate() {
        let (sent, first, later) = sender.join().unwrap();
        let closed = ChannelError::Closed(ClosedBy::Receiver);
        assert_eq!(first, closed, "sender {p}'s failing send");
        assert_eq!(
            later,
            [(); 4].map(|_| closed.clone()),
            "sender {p} after that"
        );
        assert!(
            got[p] <= sent,
            "sender {p}: {sent} sent, {} received",
            got[p]
        );
    }
}

/// A peer rewrites `head` after the channel was opened (validated) and before a receiver takes
/// over: the receiver refuses it (`EBADMSG`) instead of panicking at a misaligned word.
#[test]
fn a_receiver_refuses_a_head_rewritten_after_open() {
    for head in [4u32, 2, 0x8000_0000] {
        let mut heap = Heap::new(region_size(256));
        let channel = heap.channel(256, Mode::Spsc);
        set_word(&mut heap, layout::OFF_HEAD, head);
        let rx = channel.receiver(fast());
        assert_eq!(code(rx.map(|_| ())), libc::EBADMSG, "head {head:#x}");
        // The place is free again: a sound head lets a receiver attach.
        set_word(&mut heap, layout::OFF_HEAD, 0);
        let mut rx = channel.receiver(fast()).unwrap();
        assert_eq!(code(rx.try_recv()), libc::EAGAIN);
    }
}

/// The only sender died between reserving and marking, and a peer left `tail` off a record
/// boundary: the receiver that steps over the reservation to the tail refuses the position
/// (`EBADMSG`) instead of panicking at a misaligned word.
#[test]
#[cfg_attr(miri, ignore = "runs a process, and probes pids with kill")]
fn a_dead_senders_reservation_ending_off_a_record_boundary_is_refused() {
    for tail in [10u32, 12, 4] {
        let mut heap = Heap::new(region_size(256));
        let channel = heap.channel(256, Mode::Spsc);
        let mut rx = channel.receiver(fast()).unwrap();
        plant_pid(&mut heap, 0, dead_pid());
        set_word(&mut heap, layout::OFF_TAIL, tail);
        assert_eq!(
            code(rx.recv(Some(Duration::from_secs(10)))),
            libc::EBADMSG,
            "tail {tail}"
        );
    }
}

/// A peer rewrites `tail` off a record boundary after the channel was opened and before a
/// sender attaches: the sender's first send refuses it (`EBADMSG`) instead of panicking at a
/// misaligned word.
#[test]
fn a_sender_refuses_a_tail_rewritten_after_open() {
    for (mode, tail) in [
        (Mode::Spsc, 2u32),
        (Mode::Spsc, 4),
        (Mode::Mpsc, 2),
        (Mode::Mpsc, 4),
    ] {
        let mut heap = Heap::new(region_size(256));
        let channel = heap.channel(256, mode);
        set_word(&mut heap, layout::OFF_TAIL, tail);
        match channel.sender(fast()) {
            Ok(mut tx) => assert_eq!(code(tx.send(b"x", None)), libc::EBADMSG, "{mode:?} {tail}"),
            Err(err) => assert_eq!(error_code(&err), libc::EBADMSG, "{mode:?} {tail}"),
        }
    }
}

// ---- a receiver killed while it zeroed what it consumed -------------------------------------

/// A channel of `capacity` bytes (one sender) in a new named segment, with a peer's mapping of
/// the segment to plant what a killed receiver leaves; `head`, `zeroing` and `tail` start at
/// `start`.
fn zeroing_channel(scratch: &Scratch, capacity: u32, start: u32) -> (Channel, Segment) {
    let created = Segment::create(&scratch.0, region_size(capacity), &Options::default()).unwrap();
    let segment = Segment::open(&scratch.0, None, &Options::default()).unwrap();
    let config = Config {
        capacity,
        mode: Mode::Spsc,
    };
    let channel = Channel::create(created, config).unwrap();
    for offset in [layout::OFF_HEAD, layout::OFF_ZEROING, layout::OFF_TAIL] {
        segment.atomic_u32(offset).store(start, Ordering::SeqCst);
    }
    (channel, segment)
}

/// Zeroes the data-area bytes `from..to` (ring positions, multiples of 4) as a killed receiver
/// left them.
fn zero_positions(segment: &Segment, capacity: u32, from: u32, to: u32) {
    for pos in (from..to).step_by(4) {
        let at = layout::OFF_DATA + (pos & (capacity - 1)) as usize;
        segment.atomic_u32(at).store(0, Ordering::SeqCst);
    }
}

/// `docs/channel.md`, *A receiver that dies*: a receiver killed after it announced the records
/// it zeroes (`zeroing` ahead of `head`) and before it stored `head` leaves them zeroed, partly
/// zeroed or intact; the receiver that takes over finishes the zeroing, moves `head` there, and
/// gets the next message (not one the dead receiver consumed, nor one half zeroed), then every
/// later one through wrap-arounds.
#[test]
#[cfg_attr(miri, ignore = "runs a process, and probes pids with kill")]
fn a_receiver_taking_over_finishes_a_killed_receivers_zeroing() {
    const CAP: u32 = 256;
    const LEN: usize = 20; // a span of 32
    // (what, start position, records the dead receiver consumed, bytes from `head` it zeroed)
    let cases: [(&str, u32, u32, u32); 6] = [
        ("a batch, all zeroed", 0, 2, 64),
        ("a batch, the first record zeroed", 0, 2, 32),
        ("a batch, the second record's commit word zeroed", 0, 2, 36),
        ("a batch, nothing zeroed yet", 0, 2, 0),
        ("recvInto, two payload words zeroed", 0, 1, 16),
        ("a batch across the end of the ring", 192, 3, 80),
    ];
    let dead = dead_pid();
    for (what, start, consumed, zeroed) in cases {
        let scratch = Scratch::named("zeroing");
        let (channel, segment) = zeroing_channel(&scratch, CAP, start);
        let mut tx = channel.sender(fast()).unwrap();
        for seq in 0..4 {
            tx.send(&message(0, seq, LEN, LEN, true), None).unwrap();
        }
        let to = (start + 32 * consumed) & layout::POS_MASK;
        if what.starts_with("recvInto") {
            // The copy zeroes payload words, from the payload's start.
            zero_positions(&segment, CAP, start + 8, start + 8 + zeroed);
        } else {
            zero_positions(&segment, CAP, start, start + zeroed);
        }
        segment
            .atomic_u32(layout::OFF_ZEROING)
            .store(to, Ordering::SeqCst);
        segment
            .atomic_u32(layout::OFF_CONSUMER_PID)
            .store(dead, Ordering::SeqCst);
        let mut rx = channel.receiver(fast()).unwrap();
        let head = segment.atomic_u32(layout::OFF_HEAD).load(Ordering::SeqCst);
        assert_eq!(
            head, to,
            "{what}: head moved to where the dead one was zeroing"
        );
        for pos in (start..to).step_by(4) {
            let at = layout::OFF_DATA + (pos & (CAP - 1)) as usize;
            let word = segment.atomic_u32(at).load(Ordering::SeqCst);
            assert_eq!(
                word, 0,
                "{what}: the consumed records are zero (position {pos})"
            );
        }
        let next = rx.recv(Some(Duration::from_secs(10))).unwrap();
        assert_eq!(
            next,
            Some(message(0, consumed, LEN, LEN, true)),
            "{what}: the first message the dead receiver had not consumed"
        );
        // Then on as usual, through wrap-arounds.
        for seq in consumed + 1..40 {
            if seq >= 4 {
                tx.send(&message(0, seq, LEN, LEN, true), None).unwrap();
            }
            let got = rx.recv(Some(Duration::from_secs(10))).unwrap();
            assert_eq!(
                got,
                Some(message(0, seq, LEN, LEN, true)),
                "{what}: message {seq}"
            );
        }
        assert_eq!(code(rx.try_recv()), libc::EAGAIN, "{what}: nothing more");
        let words = [layout::OFF_HEAD, layout::OFF_ZEROING]
            .map(|offset| segment.atomic_u32(offset).load(Ordering::SeqCst));
        assert_eq!(words[0], words[1], "{what}: zeroing follows head");
    }
}

/// A `zeroing` word a peer wrote that is neither `head` nor a position after it and at or
/// before `tail`'s is `EBADMSG` for a receiver taking over, which leaves the place free and
/// touches nothing; `head` itself, or `tail`'s position, are sound.
#[test]
#[cfg_attr(miri, ignore = "runs a process, and probes pids with kill")]
fn a_receiver_refuses_a_zeroing_word_that_is_not_a_position_from_head_to_tail() {
    const CAP: u32 = 256;
    let dead = dead_pid();
    // head at 64, two records of span 32: tail at 128.
    for zeroing in [
        68u32,       // not a multiple of 8
        132,         // past the tail
        56,          // behind head
        0x8000_0060, // bit 31
        0x7FFF_FFF8, // far behind head (huge, counted from it)
        0xFFFF_FFF8, // huge
        64 + CAP,    // a capacity ahead
    ] {
        let scratch = Scratch::named("zeroing-bad");
        let (channel, segment) = zeroing_channel(&scratch, CAP, 64);
        let mut tx = channel.sender(fast()).unwrap();
        for seq in 0..2 {
            tx.send(&message(0, seq, 20, 20, true), None).unwrap();
        }
        let word = |offset| segment.atomic_u32(offset);
        word(layout::OFF_ZEROING).store(zeroing, Ordering::SeqCst);
        word(layout::OFF_CONSUMER_PID).store(dead, Ordering::SeqCst);
        assert_eq!(
            code(channel.receiver(fast()).map(|_| ())),
            libc::EBADMSG,
            "zeroing {zeroing:#x}"
        );
        assert_eq!(word(layout::OFF_CONSUMER_PID).load(Ordering::SeqCst), 0);
        assert_eq!(word(layout::OFF_HEAD).load(Ordering::SeqCst), 64);
        // Sound again: the receiver attaches and gets both messages.
        word(layout::OFF_ZEROING).store(64, Ordering::SeqCst);
        let mut rx = channel.receiver(fast()).unwrap();
        for seq in 0..2 {
            assert_eq!(rx.try_recv().unwrap(), Some(message(0, seq, 20, 20, true)));
        }
    }
    // `zeroing` at the tail: the dead receiver consumed everything.
    let scratch = Scratch::named("zeroing-tail");
    let (channel, segment) = zeroing_channel(&scratch, CAP, 64);
    let mut tx = channel.sender(fast()).unwrap();
    for seq in 0..2 {
        tx.send(&message(0, seq, 20, 20, true), None).unwrap();
    }
    segment
        .atomic_u32(layout::OFF_ZEROING)
        .store(128, Ordering::SeqCst);
    segment
        .atomic_u32(layout::OFF_CONSUMER_PID)
        .store(dead_pid(), Ordering::SeqCst);
    let mut rx = channel.receiver(fast()).unwrap();
    assert_eq!(code(rx.try_recv()), libc::EAGAIN, "nothing left");
    tx.send(b"next", None).unwrap();
    assert_eq!(rx.try_recv().unwrap(), Some(b"next".to_vec()));
}
