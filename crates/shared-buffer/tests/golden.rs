//! Golden byte traces of the channel protocol: a fixed sequence of operations on a small ring,
//! with the region's bytes after each step, checked into `tests/golden/`. The TypeScript
//! implementation runs the same steps (`tests/channel_golden.test.ts`) and must produce the same
//! bytes, so the two implementations cannot drift apart unnoticed.
//!
//! `SB_GENERATE=1` (`make generate`) rewrites the files from this implementation instead of
//! comparing.
#![cfg(not(loom))]

use std::fmt::Write;
use std::time::Duration;

use shared_buffer::channel::{Channel, Config, Mode, WaitOptions, error_code, layout, region_size};
use test_support::Heap;

/// The trace so far: one block per step, the non-zero words of the region; pid words and the
/// pid namespace (which differ between runs and machines) show as 1.
struct Trace {
    text: String,
    step: usize,
}

impl Trace {
    fn new() -> Self {
        Self {
            text: String::new(),
            step: 0,
        }
    }

    fn step(&mut self, heap: &Heap, what: &str) {
        self.step += 1;
        let _ = writeln!(self.text, "# {} {what}", self.step);
        for (i, word) in heap.bytes().chunks_exact(4).enumerate() {
            let offset = 4 * i;
            let mut value = u32::from_le_bytes(word.try_into().unwrap());
            let pid_word = offset == layout::OFF_CONSUMER_PID
                || offset == layout::OFF_PID_NAMESPACE
                || (layout::OFF_PRODUCER_PIDS..layout::OFF_PRODUCER_PIDS + 4 * 64)
                    .contains(&offset);
            if pid_word && value != 0 {
                value = 1;
            }
            if value != 0 {
                let _ = writeln!(self.text, "{offset:04x} {value:08x}");
            }
        }
    }

    fn check(&self, file: &str) {
        let path = format!("{}/../../tests/golden/{file}", env!("CARGO_MANIFEST_DIR"));
        if std::env::var_os("SB_GENERATE").is_some() {
            std::fs::write(&path, &self.text).unwrap();
            return;
        }
        let golden = std::fs::read_to_string(&path).unwrap();
        if golden != self.text {
            let first = golden
                .lines()
                .zip(self.text.lines())
                .position(|(a, b)| a != b)
                .unwrap_or(0);
            panic!(
                "{file} differs from this implementation from line {}: golden {:?}, now {:?} \
                 (make generate rewrites it, if the change is meant)",
                first + 1,
                golden.lines().nth(first),
                self.text.lines().nth(first)
            );
        }
    }
}

fn options() -> WaitOptions {
    WaitOptions {
        spin: 0,
        liveness_interval: Duration::from_secs(3600),
    }
}

/// Byte `j` of a traced message of `len` bytes.
fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|j| (j as u8).wrapping_mul(7).wrapping_add(seed))
        .collect()
}

fn channel(heap: &mut Heap, capacity: u32, mode: Mode) -> Channel {
    *heap = Heap::new(region_size(capacity));
    // SAFETY: the heap region outlives the channel (both live until the test ends).
    unsafe { Channel::create_raw(heap.ptr(), heap.len(), Config { capacity, mode }) }.unwrap()
}

const EAGAIN: i32 = libc::EAGAIN;

#[test]
fn mpsc_trace() {
    let mut heap = Heap::new(0);
    let mut t = Trace::new();
    let ch = channel(&mut heap, 256, Mode::Mpsc);
    t.step(&heap, "create: many senders, capacity 256");
    let mut rx = ch.receiver(options()).unwrap();
    t.step(&heap, "the receiver attaches");
    let a = ch.sender(options()).unwrap();
    t.step(&heap, "sender A attaches (slot 0, an abort record)");
    let mut b = ch.sender(options()).unwrap();
    t.step(&heap, "sender B attaches (slot 1, an abort record)");
    let mut a = a;
    a.try_send(b"hello").unwrap();
    t.step(&heap, "A try_send 'hello'");
    b.send(&pattern(200, 1), Some(Duration::ZERO)).unwrap();
    t.step(&heap, "B sends 200 bytes: two fragments");
    assert_eq!(rx.try_recv().unwrap().unwrap(), b"hello");
    t.step(&heap, "receive 'hello' (after both abort records)");
    assert_eq!(rx.try_recv().unwrap().unwrap(), pattern(200, 1));
    t.step(&heap, "receive the 200 bytes");
    {
        let mut slot = a.reserve(16, Some(Duration::ZERO)).unwrap();
        slot.copy_from_slice(&pattern(16, 2));
        slot.commit();
    }
    t.step(
        &heap,
        "A reserves 16 bytes (a skip record, then wraps), fills and commits them",
    );
    drop(b.try_reserve(24).unwrap());
    t.step(&heap, "B reserves 24 bytes and abandons them");
    let err = b.send(&pattern(300, 3), Some(Duration::ZERO)).unwrap_err();
    assert_eq!(error_code(&err), libc::ETIMEDOUT);
    t.step(
        &heap,
        "B sends 300 bytes: one fragment, then the ring is full: an abort record",
    );
    assert_eq!(rx.try_recv().unwrap().unwrap(), pattern(16, 2));
    t.step(&heap, "receive A's 16 bytes");
    assert_eq!(error_code(&rx.try_recv().unwrap_err()), EAGAIN);
    t.step(
        &heap,
        "receive nothing: the abandoned record and B's aborted fragment",
    );
    a.close();
    t.step(&heap, "A closes the stream");
    assert_eq!(rx.try_recv().unwrap(), None);
    t.step(&heap, "receive the end of the stream");
    rx.close();
    t.step(&heap, "the receiver closes");
    drop(b);
    t.check("channel_mpsc.txt");
}

#[test]
fn spsc_trace() {
    let mut heap = Heap::new(0);
    let mut t = Trace::new();
    let ch = channel(&mut heap, 64, Mode::Spsc);
    t.step(&heap, "create: one sender, capacity 64");
    let mut rx = ch.receiver(options()).unwrap();
    t.step(&heap, "the receiver attaches");
    let mut tx = ch.sender(options()).unwrap();
    t.step(&heap, "the sender attaches");
    tx.try_send(&pattern(10, 4)).unwrap();
    t.step(&heap, "try_send 10 bytes");
    assert_eq!(rx.try_recv().unwrap().unwrap(), pattern(10, 4));
    t.step(&heap, "receive them");
    tx.send(&pattern(30, 5), Some(Duration::ZERO)).unwrap();
    t.step(
        &heap,
        "send 30 bytes: a fragment, a skip record, the last fragment at 0",
    );
    assert_eq!(rx.try_recv().unwrap().unwrap(), pattern(30, 5));
    t.step(&heap, "receive the 30 bytes");
    {
        let mut slot = tx.reserve(4, None).unwrap();
        slot.copy_from_slice(&pattern(4, 6));
        slot.commit();
    }
    t.step(&heap, "reserve 4 bytes, fill and commit them");
    tx.close();
    t.step(&heap, "the sender closes");
    assert_eq!(rx.try_recv().unwrap().unwrap(), pattern(4, 6));
    t.step(&heap, "receive the 4 bytes");
    assert_eq!(rx.try_recv().unwrap(), None);
    t.step(&heap, "receive the end of the stream");
    t.check("channel_spsc.txt");
}

/// Stores `value` into the region's word at byte `offset`, as a peer (or a dead sender) would.
fn set_word(heap: &mut Heap, offset: usize, value: u32) {
    heap.bytes_mut()[offset..offset + 4].copy_from_slice(&value.to_le_bytes());
}

/// A process that has exited and been reaped: a dead sender's or receiver's pid.
fn dead_pid() -> u32 {
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let pid = child.id();
    child.wait().unwrap();
    pid
}

/// Dead senders and the orphan table (`layout::Header::orphans`): entries a peer wrote make way
/// when the table is full, the 17th dead sender keeps its slot, a receiver taking over keeps the
/// further of two entries for one slot and records the held sender once there is room.
#[test]
#[cfg_attr(miri, ignore = "runs a process, and probes pids with kill")]
fn dead_senders_trace() {
    let mut heap = Heap::new(0);
    let mut t = Trace::new();
    let ch = channel(&mut heap, 512, Mode::Mpsc);
    t.step(&heap, "create: many senders, capacity 512");
    let checks = WaitOptions {
        spin: 0,
        liveness_interval: Duration::from_millis(1),
    };
    let rx = ch.receiver(checks).unwrap();
    t.step(&heap, "the receiver attaches");
    let dead = dead_pid();
    for slot in 0..17 {
        let at = layout::OFF_DATA + 16 * slot;
        set_word(&mut heap, at, layout::mark_word(slot, 16));
        set_word(&mut heap, at + 4, slot as u32 + 1);
        set_word(&mut heap, layout::OFF_PRODUCER_PIDS + 4 * slot, dead);
    }
    set_word(&mut heap, layout::OFF_DATA + 272, layout::REC_COMMITTED | 5);
    set_word(&mut heap, layout::OFF_DATA + 276, 40);
    heap.bytes_mut()[layout::OFF_DATA + 280..][..5].copy_from_slice(&pattern(5, 7));
    set_word(&mut heap, layout::OFF_TAIL, 288);
    for (entry, tag, end) in [(3, 70, 8), (7, 9, 0x40)] {
        set_word(&mut heap, layout::OFF_ORPHANS + 8 * entry, tag);
        set_word(&mut heap, layout::OFF_ORPHANS + 8 * entry + 4, end);
    }
    t.step(
        &heap,
        "17 dead senders' marks of 8 bytes, a message of slot 39; a peer wrote entries 3 and 7",
    );
    let mut rx = rx;
    std::thread::sleep(Duration::from_millis(5));
    assert_eq!(error_code(&rx.try_recv().unwrap_err()), EAGAIN);
    t.step(
        &heap,
        "a receive after the liveness interval: 16 dead senders recorded and freed (the peer's \
         entries make way), the 17th held",
    );
    std::mem::forget(rx);
    set_word(&mut heap, layout::OFF_CONSUMER_PID, dead);
    set_word(&mut heap, layout::OFF_ORPHANS + 8 * 15, 2);
    set_word(&mut heap, layout::OFF_ORPHANS + 8 * 15 + 4, 16);
    t.step(
        &heap,
        "the receiver is killed; a peer writes a second entry for slot 1 over entry 15",
    );
    let mut next = ch.receiver(checks).unwrap();
    t.step(
        &heap,
        "a receiver takes over: of slot 1's two entries the further is kept",
    );
    std::thread::sleep(Duration::from_millis(5));
    assert_eq!(error_code(&next.try_recv().unwrap_err()), EAGAIN);
    t.step(
        &heap,
        "a receive after the liveness interval: the held sender recorded and freed",
    );
    // Killed in a drop: its CAS took slot 0's mark (a `DROPPING` word with the record's span)
    // after it raised `sweeps`, before it announced the zeroing.
    std::mem::forget(next);
    set_word(&mut heap, layout::OFF_CONSUMER_PID, dead);
    set_word(&mut heap, layout::OFF_DATA, layout::dropping_word(16));
    set_word(&mut heap, layout::OFF_SWEEPS, 1);
    t.step(
        &heap,
        "the receiver is killed right after taking slot 0's mark: a DROPPING word, sweeps odd",
    );
    let last = ch.receiver(checks).unwrap();
    t.step(
        &heap,
        "a receiver takes over: it finishes the drop (zeroes the record, moves head past it)",
    );
    t.check("channel_dead_senders.txt");
    drop(last);
}
