//! Loom models of the ring: every interleaving (up to the preemption bound) of one producer and
//! one consumer, and of two producers and one consumer, over a 64-byte ring.
//!
//! Run with `make test-loom`, or:
//!
//! ```text
//! RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR=target/loom \
//!     cargo test --release -p shared-buffer --lib channel::loom_tests -- --nocapture
//! ```
//!
//! (`LOOM_MAX_PREEMPTIONS` overrides the bound of 2; `--nocapture` shows how many interleavings
//! each model ran.)
//!
//! Payload bytes are loom cells, so a missing acquire or release shows up as a race on a payload
//! (or as a stale, torn message); a lost wake-up shows up as a deadlock, since the futex is
//! modelled by a loom mutex and one condition variable per word, and waits have no timeout.
//!
//! Each model covers one case, because the number of interleavings multiplies with every
//! operation in a model: one model with all the cases would take minutes. Steps that need no
//! concurrency (attaching, and messages that only move the positions to where a case begins)
//! run on one thread before the model's threads start, where loom has nothing to interleave.
//! The twelve cases:
//!
//! | model | what it covers |
//! | --- | --- |
//! | [`spsc_wrap_every_interleaving`] | a skip record at the end of the ring, a producer waiting for room, an empty message, the end of the stream |
//! | [`spsc_full_every_interleaving`] | a full ring: the producer waits for room with no skip record or close to wake the consumer |
//! | [`spsc_fragments_every_interleaving`] | a message in two fragments with a skip record between them, the second waiting for room |
//! | [`mpsc_wrap_every_interleaving`] | two producers racing for the last bytes: one writes the skip record, and in one order waits for room |
//! | [`mpsc_order_every_interleaving`] | out-of-order commits of two producers, one of them sending two messages that must stay in order |
//! | [`mpsc_close_every_interleaving`] | the receiver closes while two producers send: no send that starts after the close, or whose message was left unread, reports success |
//! | [`spsc_commit_run_every_interleaving`] | the batch commit of a sender whose protocol runs elsewhere (`sendMany` in TypeScript): three records reserved by one move of `tail`, marked and written, then committed by [`ring::commit_records`] with one wake-up for all |
//! | [`spsc_close_full_every_interleaving`] | the receiver closes while the producer waits for room: the wait ends, and a message left unread is not reported sent |
//! | [`mpsc_sweep_every_interleaving`] | the receiver sweeps while a producer reserves and marks: a reservation it takes is reserved again, one it does not is left alone; the message arrives once, and the ring ends all zero |
//! | [`mpsc_sweeps_after_reservation_every_interleaving`] | the receiver sweeps twice once the producer's tail CAS is seen, so every sweep races the claim: the same |
//! | [`mpsc_two_sweeps_every_interleaving`] | two sweeps back to back racing the whole send: the same |
//! | [`mpsc_stale_mark_every_interleaving`] | a stale mark where the producer reserves: its claim takes it over while the receiver's liveness check takes it as one word, then sweeps; the same |
//!
//! Every model ends with both sides checking that nothing more is there, and reservations are
//! marked before they are committed, so the consumer meets records reserved, marked and
//! committed in every order the threads allow.
//!
//! The `zeroing` word has no model beyond the sweep's: no other live peer's ordering depends on
//! it. Producers read it only to check a claim made during a sweep (that model covers it); the
//! other reader is a consumer that has just attached, which no other consumer runs beside
//! (it holds `consumer_pid`). Its predecessor either detached alive, leaving `zeroing == head`
//! with its stores ordered before the attach by the AcqRel CASes of `consumer_pid`, or was killed,
//! and a killed process's executed stores are all in memory before another can see it dead:
//! an ordering of the kernel, not of the program, which a model of threads cannot express. The
//! crafted killed-mid-zeroing rings of `tests/channel.rs` and the kill loop of
//! `tests/channel_cross.test.ts` check it instead.

use super::*;
use loom::sync::Arc;
use loom::sync::atomic::{
    AtomicBool,
    Ordering::{Relaxed, SeqCst},
};
use loom::thread;
use std::sync::atomic::{AtomicUsize, Ordering as StdOrdering};

/// A payload that names its producer, sequence number and length in every byte.
fn payload(producer: u8, seq: u8, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| 0x80 | (producer << 5) | (seq << 3) | (i as u8 & 7))
        .collect()
}

/// Runs a model with the preemption bound from `LOOM_MAX_PREEMPTIONS`, or 2, and prints how
/// many interleavings it ran.
fn model(f: impl Fn() + Sync + Send + 'static) {
    let mut builder = loom::model::Builder::new();
    if builder.preemption_bound.is_none() {
        builder.preemption_bound = Some(2);
    }
    let runs = std::sync::Arc::new(AtomicUsize::new(0));
    let counter = std::sync::Arc::clone(&runs);
    builder.check(move || {
        counter.fetch_add(1, StdOrdering::Relaxed);
        f();
    });
    eprintln!(
        "{}: {} interleavings",
        std::thread::current().name().unwrap_or("loom model"),
        runs.load(StdOrdering::Relaxed)
    );
}

fn options() -> WaitOptions {
    WaitOptions {
        spin: 0,
        liveness_interval: Duration::from_secs(3600),
    }
}

fn ring(mode: Mode) -> Channel {
    Channel::model(Config { capacity: 64, mode })
}

/// Sends and receives one message of `len` bytes on this thread: moves both positions by its
/// span before a model's threads start.
fn advance(tx: &mut Sender, rx: &mut Receiver, len: usize) {
    tx.send(&payload(3, 0, len), None).unwrap();
    assert_eq!(rx.try_recv().unwrap(), Some(payload(3, 0, len)));
}

/// One producer thread sends `sizes` and closes; the consumer receives them in order, then the
/// end of the stream.
fn spsc(start: &'static [usize], sizes: &'static [usize]) {
    model(move || {
        let channel = ring(Mode::Spsc);
        let mut tx = channel.sender(options()).unwrap();
        let mut rx = channel.receiver(options()).unwrap();
        for &len in start {
            advance(&mut tx, &mut rx, len);
        }
        let producer = thread::spawn(move || {
            for (seq, &len) in sizes.iter().enumerate() {
                tx.send(&payload(0, seq as u8, len), None).unwrap();
            }
            tx.close();
        });
        for (seq, &len) in sizes.iter().enumerate() {
            let got = rx.recv(None).unwrap().expect("a message, not the end");
            assert_eq!(got, payload(0, seq as u8, len), "message {seq}");
        }
        assert_eq!(rx.recv(None).unwrap(), None, "end of stream after close");
        producer.join().unwrap();
    });
}

/// From position 16: 20 bytes at 16..48 (span 32); 12 bytes (span 24) do not fit before the
/// end, so a skip record fills 48..64 and the record goes to 0..24, which is free only once the
/// first message is consumed; then an empty message at 24..32 and the close.
#[test]
fn spsc_wrap_every_interleaving() {
    spsc(&[8], &[20, 12, 0]);
}

/// Three records of 32 bytes: the first two fill the ring exactly, the third goes to 0..32
/// without a skip record and waits until the first is consumed. No skip record or close wakes
/// the consumer meanwhile: only the commits do, so a commit that forgets to wake it deadlocks.
#[test]
fn spsc_full_every_interleaving() {
    spsc(&[], &[24, 24, 24]);
}

/// One record holds at most 24 bytes here, so the 30-byte message goes as two fragments: 24
/// bytes at 24..56 (span 32), then a skip record over 56..64 and the last 6 bytes at 0..16,
/// which must wait until the first message is consumed.
#[test]
fn spsc_fragments_every_interleaving() {
    spsc(&[], &[12, 30]);
}

/// Two producer threads send `sizes[0]` and `sizes[1]`; the consumer receives every message
/// once, each producer's in order, and then finds the ring empty.
fn mpsc(start: &'static [usize], sizes: [&'static [usize]; 2]) {
    model(move || {
        let channel = ring(Mode::Mpsc);
        let mut rx = channel.receiver(options()).unwrap();
        // Attaching commits an abort record each (positions 0..16), consumed here.
        let mut senders: Vec<_> = (0..2).map(|_| channel.sender(options()).unwrap()).collect();
        assert_eq!(rx.try_recv().unwrap_err(), ChannelError::Empty);
        for &len in start {
            advance(&mut senders[0], &mut rx, len);
        }
        let producers: Vec<_> = senders
            .into_iter()
            .zip(0..2u8)
            .map(|(mut tx, p)| {
                thread::spawn(move || {
                    for (seq, &len) in sizes[p as usize].iter().enumerate() {
                        tx.send(&payload(p, seq as u8, len), None).unwrap();
                    }
                })
            })
            .collect();
        let mut next = [0usize; 2];
        for _ in 0..sizes[0].len() + sizes[1].len() {
            let got = rx.recv(None).unwrap().expect("a message, not the end");
            // Which producer: every byte says it (no message is empty).
            let p = ((got[0] >> 5) & 3) as usize;
            let seq = next[p];
            assert!(seq < sizes[p].len(), "duplicate message from producer {p}");
            assert_eq!(
                got,
                payload(p as u8, seq as u8, sizes[p][seq]),
                "producer {p} message {seq}"
            );
            next[p] += 1;
        }
        for producer in producers {
            producer.join().unwrap();
        }
        assert_eq!(rx.try_recv().unwrap_err(), ChannelError::Empty);
    });
}

/// From position 24, spans 24 and 32 (56 bytes) in the 40 bytes left before the end: the second
/// reservation writes a skip record and starts again at 0. If the 24-byte one goes first, the
/// other needs 0..32 and waits until it is consumed; the other way round, 0..24 is free.
#[test]
fn mpsc_wrap_every_interleaving() {
    mpsc(&[0], [&[12], &[20]]);
}

/// From position 16, three records of 16 bytes fill the ring to its end: producer 0's two
/// messages and producer 1's one, reserved and committed in every order.
#[test]
fn mpsc_order_every_interleaving() {
    mpsc(&[], [&[4, 4], &[4]]);
}

/// What a producer thread of a close model saw: for each message, whether the send reported
/// success.
type Sent = Vec<bool>;

/// One producer's sends in a close model: `sizes` in order. A send that starts after the
/// receiver's close is known (`closed`, set once the close returned) must fail with `EPIPE`,
/// and once one send failed so must every later one.
fn send_through_close(tx: &mut Sender, p: u8, sizes: &[usize], closed: &AtomicBool) -> Sent {
    let mut sent = Vec::new();
    for (seq, &len) in sizes.iter().enumerate() {
        let after_close = closed.load(SeqCst);
        let ok = match tx.send(&payload(p, seq as u8, len), None) {
            Ok(()) => {
                assert!(
                    !after_close,
                    "producer {p} message {seq}: sent after the close"
                );
                assert!(
                    sent.iter().all(|&ok| ok),
                    "producer {p} message {seq}: sent after a send failed"
                );
                true
            }
            Err(err) => {
                assert_eq!(err, ChannelError::Closed(ClosedBy::Receiver));
                false
            }
        };
        sent.push(ok);
    }
    sent
}

/// Checks a close model's outcome: every message the receiver got was reported sent (a failed
/// send's message is never read), in each producer's order.
fn check_close(got: &[Vec<u8>], sizes: &[&[usize]], sent: &[Sent]) {
    let mut next = vec![0usize; sizes.len()];
    for message in got {
        let p = ((message[0] >> 5) & 3) as usize;
        let seq = next[p];
        assert_eq!(message, &payload(p as u8, seq as u8, sizes[p][seq]));
        assert!(
            sent[p][seq],
            "producer {p} message {seq} was read but reported failed"
        );
        next[p] += 1;
    }
}

/// The receiver takes what is there (at most one message), then closes, while two producers
/// send (the first two messages, the second one): every interleaving of the close with the
/// reservations, commits and wake-ups. A waker that cleared the close mark (an exchange to 0
/// instead of a CAS from 1) lets a send that starts after the close report success: this model
/// fails on it.
#[test]
fn mpsc_close_every_interleaving() {
    const SIZES: [&[usize]; 2] = [&[4, 4], &[4]];
    model(|| {
        let channel = ring(Mode::Mpsc);
        let mut rx = channel.receiver(options()).unwrap();
        let senders: Vec<_> = (0..2).map(|_| channel.sender(options()).unwrap()).collect();
        assert_eq!(rx.try_recv().unwrap_err(), ChannelError::Empty);
        let closed = Arc::new(AtomicBool::new(false));
        let producers: Vec<_> = senders
            .into_iter()
            .zip(0..2u8)
            .map(|(mut tx, p)| {
                let closed = Arc::clone(&closed);
                thread::spawn(move || send_through_close(&mut tx, p, SIZES[p as usize], &closed))
            })
            .collect();
        let got: Vec<_> = rx.try_recv().ok().flatten().into_iter().collect();
        drop(rx);
        closed.store(true, SeqCst);
        let sent: Vec<_> = producers.into_iter().map(|p| p.join().unwrap()).collect();
        check_close(&got, &SIZES, &sent);
    });
}

/// One producer sends three records of 32 bytes into a ring that holds two, so the third waits
/// for room; the receiver takes what is there (at most one message) and closes. The waiting
/// send must end (the close wakes it, or it finds room and commits into the closed ring): a
/// full ring that did not look for the close would keep it waiting, which this model finds as
/// a loop without end. No message left unread is reported sent once the close is seen.
#[test]
fn spsc_close_full_every_interleaving() {
    const SIZES: [&[usize]; 1] = [&[24, 24, 24]];
    model(|| {
        let channel = ring(Mode::Spsc);
        let mut tx = channel.sender(options()).unwrap();
        let mut rx = channel.receiver(options()).unwrap();
        let closed = Arc::new(AtomicBool::new(false));
        let producer = {
            let closed = Arc::clone(&closed);
            thread::spawn(move || send_through_close(&mut tx, 0, SIZES[0], &closed))
        };
        let got: Vec<_> = rx.try_recv().ok().flatten().into_iter().collect();
        drop(rx);
        closed.store(true, SeqCst);
        let sent = producer.join().unwrap();
        check_close(&got, &SIZES, &[sent]);
    });
}

/// Sends one 12-byte message from a producer thread while `sweep` runs on the receiver's
/// thread, then checks that it arrives exactly once and that the data area ends all zero (a mark
/// left behind would be nonzero; the message going unread deadlocks the model).
fn sweep_model(sweep: fn(&mut Receiver, &std::sync::Arc<Shared>)) {
    model(move || {
        let channel = ring(Mode::Mpsc);
        let mut rx = channel.receiver(options()).unwrap();
        let mut tx = channel.sender(options()).unwrap();
        assert_eq!(rx.try_recv().unwrap_err(), ChannelError::Empty);
        advance(&mut tx, &mut rx, 4);
        let producer = thread::spawn(move || {
            tx.send(&payload(0, 1, 12), None).unwrap();
            tx
        });
        let sh = std::sync::Arc::clone(&rx.shared);
        sweep(&mut rx, &sh);
        assert_eq!(rx.recv(None).unwrap(), Some(payload(0, 1, 12)));
        let tx = producer.join().unwrap();
        ends_empty(&mut rx, &sh);
        drop(tx);
    });
}

/// Once both threads are done: nothing more to receive, and the data area all zero (a mark left
/// behind would be nonzero).
fn ends_empty(rx: &mut Receiver, sh: &Shared) {
    assert_eq!(rx.try_recv().unwrap_err(), ChannelError::Empty);
    let mut data = [0xFFu8; 64];
    // SAFETY: both threads are done with the ring; it is 64 bytes after the header.
    unsafe { sh.mem.read(layout::OFF_DATA, data.as_mut_ptr(), data.len()) };
    assert_eq!(data, [0u8; 64], "the data area after the last message");
}

/// One sweep as far as the ring goes.
fn sweep_once(rx: &mut Receiver, sh: &std::sync::Arc<Shared>) {
    let until = rx.consumer.head.wrapping_add(64) & POS_MASK;
    rx.consumer.sweep(sh, until).unwrap();
}

/// The receiver waits until the producer has moved `tail` (its reservation made, its claim
/// maybe not), then sweeps twice: each sweep races the claim, and the second one a producer
/// that may have seen the first begin or end. Fails without either raise of `sweeps`.
#[test]
fn mpsc_sweeps_after_reservation_every_interleaving() {
    sweep_model(|rx, sh| {
        let start = sh.tail().load(SeqCst);
        while sh.tail().load(SeqCst) == start {
            thread::yield_now();
        }
        sweep_once(rx, sh);
        sweep_once(rx, sh);
    });
}

/// Two sweeps back to back, racing the whole send. (It does not fail without the raise at a
/// sweep's end, which is needed all the same: the first sweep would leave `sweeps` odd, the
/// second make it even, and a producer that loads it between the second's raise and its `tail`
/// load would take the quiet path after a claim that sweep consumed. No model here reaches
/// that interleaving.)
#[test]
fn mpsc_two_sweeps_every_interleaving() {
    sweep_model(|rx, sh| {
        sweep_once(rx, sh);
        sweep_once(rx, sh);
    });
}

/// A producer sends one message (from position 16, after two others) while the receiver sweeps
/// once, as it does at a record left unmarked for two liveness checks: in one interleaving the
/// sweep takes the reservation between the tail CAS and the mark, zeroes it and moves `head`
/// past it before the mark's CAS lands, which the claim must find and undo (else the mark would
/// sit in free space and the message go unread). The message arrives exactly once, and the data
/// area is zero at the end. Without the check of `sweeps` after the claim the model fails.
#[test]
fn mpsc_sweep_every_interleaving() {
    sweep_model(sweep_once);
}

/// A stale mark (left by a producer killed between a claim that lost its place and its undo)
/// lies where the producer reserves next, over more than the ring then holds. The producer's
/// claim takes the word over while the receiver's liveness check, finding the mark past the
/// tail, takes it as one word: exactly one of the two gets it. A producer that loses reserves again, and one
/// sweep takes what it gave up. The message arrives exactly once, and the data area ends all
/// zero. The model deadlocks without the producer's check after its claim, or without the
/// receiver's first raise of `sweeps`: a claim that reads the receiver's zero store would then
/// write into room already consumed.
#[test]
fn mpsc_stale_mark_every_interleaving() {
    model(|| {
        let channel = ring(Mode::Mpsc);
        let mut rx = channel.receiver(options()).unwrap();
        let mut tx = channel.sender(options()).unwrap();
        assert_eq!(rx.try_recv().unwrap_err(), ChannelError::Empty);
        advance(&mut tx, &mut rx, 4);
        let sh = std::sync::Arc::clone(&rx.shared);
        // At position 24: slot 5's mark over 24 bytes (slot 5 is free).
        let at = sh.tail().load(SeqCst) as usize;
        sh.mem
            .word(layout::OFF_DATA + at)
            .store(layout::mark_word(5, 24), SeqCst);
        let producer = thread::spawn(move || {
            tx.send(&payload(0, 1, 4), None).unwrap();
            tx
        });
        while sh.tail().load(SeqCst) as usize == at {
            thread::yield_now();
        }
        // The liveness check at the mark (as if an interval had passed; the mark may be the
        // producer's by now, or committed, and then its CAS fails).
        let state = Peek::Reserved {
            idx: at,
            span: 24,
            slot: 5,
        };
        rx.check_senders(state).unwrap();
        sweep_once(&mut rx, &sh);
        assert_eq!(rx.recv(None).unwrap(), Some(payload(0, 1, 4)));
        let tx = producer.join().unwrap();
        ends_empty(&mut rx, &sh);
        drop(tx);
    });
}

/// The batch commit ([`ring::commit_run`], through [`ring::commit_records`]) as `sendMany` uses
/// it: the producer thread moves `tail` once for three records (4, 0 and 12 bytes), then marks
/// and writes each, as the TypeScript sender does, then commits the three with one release store
/// each and wakes the consumer once. The consumer, which may park at any of the three, receives
/// them in order. The model fails with a relaxed first commit store (the consumer meets the
/// record before the `tail` store ahead of it, and finds it past `tail`), and deadlocks without
/// the wake-up, with it before the stores, or after the first record only. The first release
/// store orders everything the sender wrote before the call: later ones only keep the commits in
/// order (a relaxed last store, or the stores in reverse order, still pass).
#[test]
fn spsc_commit_run_every_interleaving() {
    const SIZES: [usize; 3] = [4, 0, 12];
    model(|| {
        let channel = ring(Mode::Spsc);
        let mut rx = channel.receiver(options()).unwrap();
        // Attached so that the consumer sees a live sender; its own state is not used.
        let tx = channel.sender(options()).unwrap();
        let sh = std::sync::Arc::clone(&rx.shared);
        let producer = thread::spawn({
            let sh = std::sync::Arc::clone(&sh);
            move || {
                let start = sh.tail().load(SeqCst) as usize;
                let spans = SIZES.map(layout::record_span);
                sh.tail()
                    .store((start + spans.iter().sum::<usize>()) as u32, SeqCst);
                let mut at = start;
                for (seq, (&len, &span)) in SIZES.iter().zip(&spans).enumerate() {
                    sh.mem
                        .word(layout::OFF_DATA + at)
                        .store(layout::mark_word(0, span as u32), Relaxed);
                    // SAFETY: the payload of a record this thread reserved above, inside the
                    // data area; the consumer reads it only once the record is committed.
                    unsafe {
                        sh.mem.write(
                            layout::OFF_DATA + at + layout::RECORD_HEADER_SIZE,
                            &payload(0, seq as u8, len),
                        )
                    };
                    at += span;
                }
                assert_eq!(
                    ring::commit_records(&sh, start, &SIZES.map(|len| len as u32)),
                    0
                );
                tx
            }
        });
        for (seq, &len) in SIZES.iter().enumerate() {
            assert_eq!(
                rx.recv(None).unwrap(),
                Some(payload(0, seq as u8, len)),
                "message {seq}"
            );
        }
        let tx = producer.join().unwrap();
        ends_empty(&mut rx, &sh);
        drop(tx);
    });
}
