//! Loom models of the ring: every interleaving (up to the preemption bound) of one producer and
//! one consumer, and of two producers and one consumer, over a 64-byte ring whose messages wrap;
//! and one producer sending a message in fragments, with a skip record between them.
//!
//! Run with:
//!
//! ```text
//! LOOM_MAX_PREEMPTIONS=2 RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR=target/loom \
//!     cargo test --release --lib channel::loom_tests
//! ```
//!
//! Payload bytes are loom atomics accessed with relaxed ordering, so a missing acquire or release
//! shows up as a stale byte (a torn message); a lost wake-up shows up as a deadlock, since the
//! futex is modelled by a loom mutex and condition variable and waits have no timeout.

use super::*;
use loom::thread;

/// A payload that names its producer, sequence number and length in every byte.
fn payload(producer: u8, seq: u8, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| 0x80 | (producer << 5) | (seq << 3) | (i as u8 & 7))
        .collect()
}

/// Runs a model with the preemption bound from `LOOM_MAX_PREEMPTIONS`, or 2.
fn model(f: impl Fn() + Sync + Send + 'static) {
    let mut builder = loom::model::Builder::new();
    if builder.preemption_bound.is_none() {
        builder.preemption_bound = Some(2);
    }
    builder.check(f);
}

fn options() -> WaitOptions {
    WaitOptions {
        spin: 0,
        liveness_interval: Duration::from_secs(3600),
    }
}

/// Spans 24 + 32 + 16 + 8 = 80 bytes through a 64-byte ring: the third message needs a skip
/// record and the producer must wait for room.
const SPSC_SIZES: [usize; 4] = [12, 20, 4, 0];

#[test]
fn spsc_every_interleaving() {
    spsc_model(&SPSC_SIZES);
}

/// One record holds at most 24 bytes here, so the 30-byte message goes as two fragments: 24
/// bytes at 24..56 (span 32), then a skip record over 56..64 and the last 6 bytes at 0..16,
/// which must wait until the first message is consumed. Spans 24 + 32 + 8 + 16 + 8 = 88 bytes.
const FRAGMENT_SIZES: [usize; 3] = [12, 30, 0];

#[test]
fn spsc_fragments_every_interleaving() {
    spsc_model(&FRAGMENT_SIZES);
}

fn spsc_model(sizes: &'static [usize]) {
    model(move || {
        let channel = Channel::model(Config {
            capacity: 64,
            mode: Mode::Spsc,
        });
        let mut tx = channel.sender(options()).unwrap();
        let mut rx = channel.receiver(options()).unwrap();
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

/// Producer 0 sends two messages, producer 1 one. Their spans, 24 + 16 + 32 = 72 bytes, do not
/// fit in 64: in every order one of them needs a skip record and waits for room. (They start at
/// position 16, after the two producers' abort records, which attaching commits and the model
/// consumes before the producers start, to keep the model small.)
const MPSC_SIZES: [&[usize]; 2] = [&[12, 4], &[20]];

#[test]
fn mpsc_every_interleaving() {
    model(|| {
        let channel = Channel::model(Config {
            capacity: 64,
            mode: Mode::Mpsc,
        });
        let mut rx = channel.receiver(options()).unwrap();
        // Attaching commits an abort record; these two are consumed before the model proper.
        let senders: Vec<_> = (0..2).map(|_| channel.sender(options()).unwrap()).collect();
        assert_eq!(rx.try_recv().unwrap_err(), ChannelError::Empty);
        let producers: Vec<_> = senders
            .into_iter()
            .zip(0..2u8)
            .map(|(mut tx, p)| {
                thread::spawn(move || {
                    for (seq, &len) in MPSC_SIZES[p as usize].iter().enumerate() {
                        tx.send(&payload(p, seq as u8, len), None).unwrap();
                    }
                })
            })
            .collect();
        let mut next = [0usize; 2];
        for _ in 0..3 {
            let got = rx.recv(None).unwrap().expect("a message, not the end");
            // Which producer: every byte says it (no message is empty).
            let p = ((got[0] >> 5) & 3) as usize;
            let seq = next[p];
            assert!(
                seq < MPSC_SIZES[p].len(),
                "duplicate message from producer {p}"
            );
            assert_eq!(
                got,
                payload(p as u8, seq as u8, MPSC_SIZES[p][seq]),
                "producer {p} message {seq}"
            );
            next[p] += 1;
        }
        assert_eq!(next, [2, 1]);
        for producer in producers {
            producer.join().unwrap();
        }
        assert_eq!(rx.try_recv().unwrap_err(), ChannelError::Empty);
    });
}
