//! The fast paths for endpoints whose protocol runs in TypeScript ([`foreign`]): a foreign
//! receiver against Rust senders, a foreign sender against Rust receivers, every message length
//! across many wrap-arounds, what they must leave to the caller's own path, and corrupted rings.
#![cfg(not(loom))]

use proptest::prelude::*;
use shared_buffer::channel::foreign::{
    PUT_CLOSED, PUT_FULL, PUT_SENT, PutState, TakeState, put_from, scan_run, take_into,
};
use shared_buffer::channel::{
    Channel, ChannelError, Config, Mode, WaitOptions, layout, max_record, region_size,
};
use test_support::Heap;

const CAP: u32 = 256;

fn channel(heap: &mut Heap, mode: Mode) -> Channel {
    channel_of(heap, CAP, mode)
}

fn channel_of(heap: &mut Heap, capacity: u32, mode: Mode) -> Channel {
    // SAFETY: the heap region outlives every channel of the test (tests drop it last).
    unsafe { Channel::create_raw(heap.ptr(), heap.len(), Config { capacity, mode }) }.unwrap()
}

/// The 32-bit word at byte `offset` of the region (no other thread runs in these tests).
fn word(heap: &Heap, offset: usize) -> u32 {
    u32::from_le_bytes(heap.bytes()[offset..offset + 4].try_into().unwrap())
}

fn set_word(heap: &mut Heap, offset: usize, value: u32) {
    heap.bytes_mut()[offset..offset + 4].copy_from_slice(&value.to_le_bytes());
}

/// Message `seq` of `len` bytes: every byte derived from both.
fn message(seq: u32, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (seq as usize * 31 + i * 7) as u8)
        .collect()
}

/// The state of an endpoint that attaches to a fresh channel of capacity [`CAP`].
fn fresh_take() -> TakeState {
    TakeState {
        capacity: CAP,
        ..TakeState::default()
    }
}

/// As [`fresh_take`], for a sender.
fn fresh_put() -> PutState {
    PutState {
        capacity: CAP,
        ..PutState::default()
    }
}

fn take(heap: &mut Heap, state: &mut TakeState, into: &mut [u8]) -> i32 {
    // SAFETY: the heap holds a channel region of CAP bytes of data and outlives the call; `into`
    // holds `into.len()` bytes; the test is the region's only consumer.
    unsafe { take_into(heap.ptr(), state, into.as_mut_ptr(), into.len()) }
}

fn put(heap: &mut Heap, state: &mut PutState, msg: &[u8]) -> i32 {
    // SAFETY: as in `take`; `msg` holds `msg.len()` bytes; the test is the only producer.
    unsafe { put_from(heap.ptr(), state, msg.as_ptr(), msg.len()) }
}

/// [`scan_run`] into `out` and `lens` (all of each), at most `max` messages of `small` bytes.
fn scan(
    heap: &mut Heap,
    state: &mut TakeState,
    out: &mut [u8],
    lens: &mut [u32],
    max: usize,
    small: usize,
) -> usize {
    assert!(max <= lens.len());
    // SAFETY: as in `take`; `out` and `lens` hold what the call is told.
    let n = unsafe {
        scan_run(
            heap.ptr(),
            state,
            out.as_mut_ptr(),
            out.len(),
            lens.as_mut_ptr(),
            max,
            small,
        )
    };
    assert!(n >= 0);
    n as usize
}

#[test]
fn a_foreign_receiver_takes_every_length_from_a_rust_sender() {
    let mut heap = Heap::new(region_size(CAP));
    let ch = channel(&mut heap, Mode::Spsc);
    let mut tx = ch.sender(WaitOptions::default()).unwrap();
    let mut state = fresh_take();
    let max = max_record(CAP);
    let mut into = vec![0u8; max];
    let mut seq = 0;
    // Every length, a few times over, so that records land at every offset and wrap.
    for round in 0..4 {
        for len in 0..=max {
            let sent = message(seq, len);
            tx.try_send(&sent).unwrap();
            let got = take(&mut heap, &mut state, &mut into);
            assert_eq!(got, len as i32, "round {round}, length {len}");
            assert_eq!(&into[..len], &sent[..]);
            assert_eq!(word(&heap, layout::OFF_HEAD), state.head, "head published");
            assert_eq!(word(&heap, layout::OFF_ZEROING), state.head, "zeroing done");
            seq += 1;
        }
    }
    // Nothing left: -1, nothing moved; and the data area is zero behind the receiver.
    let before = state;
    assert_eq!(take(&mut heap, &mut state, &mut into), -1);
    assert_eq!(state, before);
    assert!(heap.bytes()[layout::OFF_DATA..].iter().all(|&b| b == 0));
    // Three messages waiting, taken in order.
    for s in 0..3 {
        tx.try_send(&message(1000 + s, 5)).unwrap();
    }
    for s in 0..3 {
        assert_eq!(take(&mut heap, &mut state, &mut into), 5);
        assert_eq!(&into[..5], &message(1000 + s, 5)[..]);
    }
}

#[test]
fn a_foreign_receiver_takes_from_many_rust_senders() {
    let mut heap = Heap::new(region_size(CAP));
    let ch = channel(&mut heap, Mode::Mpsc);
    let mut a = ch.sender(WaitOptions::default()).unwrap();
    let mut b = ch.sender(WaitOptions::default()).unwrap();
    // Each sender's attach committed an abort record (for an unfinished message of its slot's
    // previous owner): not a message, so the fast path leaves it to the caller's own path.
    let mut state = fresh_take();
    let mut into = [0u8; 64];
    assert_eq!(take(&mut heap, &mut state, &mut into), -1);
    assert_eq!(state.head, 0);
    // A Rust receiver steps over them, and stays attached, idle (its drop would close).
    let mut rx = ch.receiver(WaitOptions::default()).unwrap();
    assert!(rx.try_recv().is_err(), "nothing but the abort records");
    let head = word(&heap, layout::OFF_HEAD);
    assert_ne!(head, 0);
    let mut state = TakeState {
        head,
        looked: head,
        tail_seen: head,
        capacity: CAP,
    };
    for seq in 0..200 {
        let (tx, len) = if seq % 2 == 0 {
            (&mut a, 3)
        } else {
            (&mut b, 17)
        };
        tx.try_send(&message(seq, len)).unwrap();
        assert_eq!(take(&mut heap, &mut state, &mut into), len as i32);
        assert_eq!(&into[..len], &message(seq, len)[..]);
    }
    drop(rx);
}

#[test]
fn a_rust_receiver_gets_every_length_from_a_foreign_sender() {
    let mut heap = Heap::new(region_size(CAP));
    let ch = channel(&mut heap, Mode::Spsc);
    let mut rx = ch.receiver(WaitOptions::default()).unwrap();
    let mut state = fresh_put();
    let max = max_record(CAP);
    let mut seq = 0;
    for _ in 0..4 {
        for len in 0..=max {
            let sent = message(seq, len);
            assert_eq!(put(&mut heap, &mut state, &sent), PUT_SENT);
            assert_eq!(word(&heap, layout::OFF_TAIL), state.tail, "tail stored");
            assert_eq!(rx.try_recv().unwrap().as_deref(), Some(&sent[..]));
            seq += 1;
        }
    }
}

#[test]
fn a_foreign_sender_stops_at_a_full_ring_and_learns_of_the_close() {
    let mut heap = Heap::new(region_size(CAP));
    let ch = channel(&mut heap, Mode::Spsc);
    let mut rx = ch.receiver(WaitOptions::default()).unwrap();
    let mut state = fresh_put();
    // 24-byte messages take 32-byte records: 8 fill the ring.
    let mut sent = 0;
    loop {
        let got = put(&mut heap, &mut state, &message(sent, 24));
        if got != PUT_SENT {
            assert_eq!(got, PUT_FULL);
            break;
        }
        sent += 1;
    }
    assert_eq!(sent, 8);
    let full = state;
    assert_eq!(put(&mut heap, &mut state, &message(99, 24)), PUT_FULL);
    assert_eq!(state.tail, full.tail, "nothing reserved");
    // One taken: room for one more, found by loading head again.
    assert_eq!(rx.try_recv().unwrap().unwrap(), message(0, 24));
    assert_eq!(put(&mut heap, &mut state, &message(sent, 24)), PUT_SENT);
    // The receiver drains the ring; a message sent then stays unread when it closes.
    while let Ok(Some(_)) = rx.try_recv() {}
    assert_eq!(put(&mut heap, &mut state, &message(100, 24)), PUT_SENT);
    drop(rx);
    assert_eq!(state.rx_closed, 0, "not seen yet");
    // The commit after the close finds it: that message will never be read.
    assert_eq!(put(&mut heap, &mut state, &message(101, 24)), PUT_CLOSED);
    assert_eq!(state.rx_closed, 1);
    // From then on the caller's own path answers (EPIPE at once).
    assert_eq!(put(&mut heap, &mut state, &message(102, 24)), -1);
}

#[test]
fn a_tail_a_peer_closed_stops_a_foreign_sender_that_looks_for_room() {
    // Only the one sender closes the tail, and it sends nothing after; the TypeScript sender
    // answers EPIPE when it finds the bit while looking for room, and `put_from` leaves that case
    // to it instead of sending (and wiping the bit with its tail store).
    let mut heap = Heap::new(region_size(CAP));
    let ch = channel(&mut heap, Mode::Spsc);
    let mut rx = ch.receiver(WaitOptions::default()).unwrap();
    let mut state = fresh_put();
    while put(&mut heap, &mut state, &message(0, 24)) == PUT_SENT {}
    assert!(rx.try_recv().unwrap().is_some(), "room for one more");
    let tail = word(&heap, layout::OFF_TAIL);
    set_word(&mut heap, layout::OFF_TAIL, tail | layout::TAIL_CLOSED);
    let before = state;
    assert_eq!(put(&mut heap, &mut state, &message(1, 24)), -1);
    assert_eq!(state, before, "nothing reserved");
    assert_eq!(
        word(&heap, layout::OFF_TAIL),
        tail | layout::TAIL_CLOSED,
        "the bit stays"
    );
}

#[test]
fn what_the_fast_paths_leave_to_the_caller() {
    let mut heap = Heap::new(region_size(CAP));
    let ch = channel(&mut heap, Mode::Spsc);
    let mut tx = ch.sender(WaitOptions::default()).unwrap();
    let max = max_record(CAP);
    let mut into = vec![0u8; max];
    // Capacities no channel has.
    for capacity in [0, 100, CAP + 1, layout::MAX_CAPACITY * 2] {
        let mut s = TakeState {
            capacity,
            ..TakeState::default()
        };
        assert_eq!(
            take(&mut heap, &mut s, &mut into),
            -1,
            "capacity {capacity}"
        );
        let mut p = PutState {
            capacity,
            ..PutState::default()
        };
        assert_eq!(put(&mut heap, &mut p, b"x"), -1, "capacity {capacity}");
    }
    // A message longer than the room: left in place, for a larger target.
    let mut state = fresh_take();
    tx.try_send(&message(1, 40)).unwrap();
    assert_eq!(take(&mut heap, &mut state, &mut into[..39]), -1);
    assert_eq!(state.head, 0);
    assert_eq!(take(&mut heap, &mut state, &mut into[..40]), 40);
    // A fragmented message: its records are the caller's to reassemble.
    tx.send(&message(2, max + 1), None).unwrap();
    let before = state;
    assert_eq!(take(&mut heap, &mut state, &mut into), -1);
    assert_eq!(state.head, before.head);
    // A record longer than one record may be: never sent in one piece.
    let mut p = fresh_put();
    assert_eq!(put(&mut heap, &mut p, &vec![0; max + 1]), -1);
    assert_eq!(p.tail, 0, "nothing reserved");
}

#[test]
fn corrupt_records_are_left_to_the_caller_untouched() {
    let mut heap = Heap::new(region_size(CAP));
    let ch = channel(&mut heap, Mode::Spsc);
    let mut tx = ch.sender(WaitOptions::default()).unwrap();
    tx.try_send(&message(1, 16)).unwrap();
    let mut into = [0u8; 64];
    let committed = word(&heap, layout::OFF_DATA);
    for bad in [
        layout::REC_COMMITTED | 500,                     // longer than a record
        layout::REC_COMMITTED | layout::REC_MORE | 16,   // a fragment of the wrong length
        layout::REC_COMMITTED | layout::REC_ABORT | 16,  // an abort with a length
        layout::REC_COMMITTED | layout::REC_SKIP | 1000, // a skip past the end
        layout::REC_COMMITTED | layout::REC_MORE | layout::REC_ABORT,
        layout::REC_COMMITTED | 120, // past the tail
    ] {
        set_word(&mut heap, layout::OFF_DATA, bad);
        let mut state = fresh_take();
        assert_eq!(take(&mut heap, &mut state, &mut into), -1, "{bad:#x}");
        assert_eq!(state.head, 0, "{bad:#x}");
        assert_eq!(
            word(&heap, layout::OFF_DATA),
            bad,
            "the record is left as found"
        );
    }
    set_word(&mut heap, layout::OFF_DATA, committed);
    let mut state = fresh_take();
    assert_eq!(take(&mut heap, &mut state, &mut into), 16);
    // A tail more than the capacity ahead, and a head the peer moved: the sender's own path
    // reports them.
    set_word(&mut heap, layout::OFF_TAIL, 4 * CAP);
    let mut p = PutState {
        capacity: CAP,
        tail: 4 * CAP,
        head_seen: 0,
        rx_closed: 0,
        tag: 0,
    };
    assert_eq!(put(&mut heap, &mut p, b"x"), -1);
}

fn proptest_config() -> ProptestConfig {
    ProptestConfig {
        cases: if cfg!(miri) { 4 } else { 256 },
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(proptest_config())]

    /// Random bytes in the data area, random positions and `tx_waiting` in the header and
    /// random positions in the caller's state: each call returns, never panics, takes at most
    /// `room` bytes and never more than the ring held, and puts only what fits.
    #[test]
    fn random_rings_never_panic(
        data in proptest::collection::vec(any::<u8>(), CAP as usize),
        head in any::<u32>(),
        tail in any::<u32>(),
        seen in any::<u32>(),
        looked in any::<u32>(),
        waiting in any::<u32>(),
        near in any::<bool>(),
        ahead in 0..=CAP,
        room in 0usize..200,
    ) {
        // Half the rings hold whole messages of 8 bytes from a position `head` up to a `tail`
        // at most the capacity ahead (`tail_seen` at `head`), among the random bytes: they are
        // taken, released and looked past, `tx_waiting` read.
        let (head, tail, seen) = if near {
            let head = head & layout::POS_MASK & !7;
            (head, head.wrapping_add(ahead & !7) & layout::POS_MASK, head)
        } else {
            (head, tail, seen)
        };
        let mut heap = Heap::new(region_size(CAP));
        drop(channel(&mut heap, Mode::Spsc));
        heap.bytes_mut()[layout::OFF_DATA..].copy_from_slice(&data);
        if near {
            for at in (0..(ahead & !7) / 16).map(|i| head.wrapping_add(i * 16)) {
                let idx = (at & (CAP - 1)) as usize;
                set_word(&mut heap, layout::OFF_DATA + idx, layout::REC_COMMITTED | 8);
            }
        }
        set_word(&mut heap, layout::OFF_HEAD, head);
        set_word(&mut heap, layout::OFF_TAIL, tail);
        // A parked sender's mark (or any word) in `tx_waiting`: the looks that leave it parked.
        set_word(&mut heap, layout::OFF_TX_WAITING, waiting);
        let mut into = vec![0u8; room];
        let mut state = TakeState { head, looked, tail_seen: seen, capacity: CAP };
        for _ in 0..16 {
            let got = take(&mut heap, &mut state, &mut into);
            prop_assert!(got == -1 || (0..=room as i32).contains(&got));
            if got < 0 { break; }
        }
        let mut p = PutState { tail, head_seen: seen, capacity: CAP, rx_closed: 0, tag: 0 };
        for len in [0usize, 7, 64, 200] {
            let got = put(&mut heap, &mut p, &vec![1; len]);
            prop_assert!([-1, PUT_SENT, PUT_FULL, PUT_CLOSED].contains(&got));
        }
    }
}

#[test]
fn a_rust_receiver_gets_what_foreign_senders_send_among_rust_ones() {
    let mut heap = Heap::new(region_size(CAP));
    let ch = channel(&mut heap, Mode::Mpsc);
    let mut a = ch.sender(WaitOptions::default()).unwrap();
    let b = ch.sender(WaitOptions::default()).unwrap();
    let mut rx = ch.receiver(WaitOptions::default()).unwrap();
    // The abort records the senders' attaches committed.
    assert!(rx.try_recv().is_err());
    // A foreign sender in the slot of `b` (slot 1, tag 2), from the tail as it is now.
    let tail = word(&heap, layout::OFF_TAIL);
    let mut state = PutState {
        tail,
        head_seen: word(&heap, layout::OFF_HEAD),
        tag: 2,
        ..fresh_put()
    };
    let max = max_record(CAP);
    for seq in 0..300u32 {
        let len = seq as usize % (max + 1);
        let sent = message(seq, len);
        if seq % 3 == 0 {
            a.try_send(&sent).unwrap();
        } else {
            assert_eq!(put(&mut heap, &mut state, &sent), PUT_SENT, "message {seq}");
            let at = state
                .tail
                .wrapping_sub(layout::RECORD_ALIGN as u32 + len.next_multiple_of(8) as u32);
            let idx = (at & (CAP - 1)) as usize;
            assert_eq!(
                word(&heap, layout::OFF_DATA + idx + layout::OFF_REC_PRODUCER),
                2,
                "tagged"
            );
        }
        assert_eq!(
            rx.try_recv().unwrap().as_deref(),
            Some(&sent[..]),
            "message {seq}"
        );
    }
    // Tags no slot has are the caller's to refuse.
    let mut bad = PutState {
        tag: layout::MAX_PRODUCERS as u32 + 1,
        ..state
    };
    assert_eq!(put(&mut heap, &mut bad, b"x"), -1);
    drop(b);
}

#[test]
fn a_commit_after_the_close_is_sent_if_head_passed_it_however_far() {
    // Between a commit and its look at `head`, other senders' records may go round the ring many
    // times: a `head` more than a ring ahead still means consumed.
    let len = 24;
    let end = 32u32; // the first record's end: 8 bytes of header and 24 of payload
    for (head, expect) in [
        (end, PUT_SENT),
        (end + 8, PUT_SENT),
        (end + 3 * CAP, PUT_SENT),
        (end + 1000 * CAP, PUT_SENT),
        (0, PUT_CLOSED),
        (end.wrapping_sub(CAP) & layout::POS_MASK, PUT_CLOSED),
    ] {
        let mut heap = Heap::new(region_size(CAP));
        drop(channel(&mut heap, Mode::Spsc));
        // The receiver's close: its flag, then its mark.
        set_word(&mut heap, layout::OFF_FLAGS, layout::FLAG_RX_CLOSED);
        set_word(&mut heap, layout::OFF_RX_WAITING, layout::RX_CLOSED);
        set_word(&mut heap, layout::OFF_HEAD, head & layout::POS_MASK);
        let mut state = fresh_put();
        assert_eq!(
            put(&mut heap, &mut state, &message(0, len)),
            expect,
            "head {head:#x}"
        );
        assert_eq!(state.rx_closed, 1);
    }
}

/// The record span of a `len`-byte payload.
fn span(len: usize) -> usize {
    (8 + len).next_multiple_of(8)
}

#[test]
fn a_run_scan_finds_the_messages_takes_would_deliver_and_changes_nothing() {
    let mut heap = Heap::new(region_size(CAP));
    let ch = channel(&mut heap, Mode::Spsc);
    let mut tx = ch.sender(WaitOptions::default()).unwrap();
    let mut state = fresh_take();
    let max = max_record(CAP);
    let small = 40;
    let mut into = vec![0u8; max];
    let mut seq = 0u32;
    let mut sent: std::collections::VecDeque<Vec<u8>> = Default::default();
    let mut rounds = 0;
    // Lengths chosen so that runs end at every reason: a message over `small`, the end of the
    // data area, `max`, the room of `out`, and nothing more sent.
    let lengths = [0usize, 1, 7, 8, 16, 40, 41, 3, max, 24, 33];
    for step in 0..600usize {
        // Send what fits of the next few lengths.
        for k in 0..(step % 5) {
            let len = lengths[(step * 3 + k) % lengths.len()];
            let m = message(seq, len);
            if tx.try_send(&m).is_err() {
                break;
            }
            sent.push_back(m);
            seq += 1;
        }
        let before = heap.bytes().to_vec();
        let limit = 1 + step % 4;
        let room = [256, 64, 48, 16][step % 4];
        let mut out = vec![0u8; room];
        let mut lens = vec![0u32; limit];
        let n = scan(&mut heap, &mut state, &mut out, &mut lens, limit, small);
        assert_eq!(
            heap.bytes(),
            &before[..],
            "step {step}: the scan wrote to the region"
        );
        // What the run holds: the next messages, each whole, in their records back to back.
        let mut at = 0;
        for (k, &len) in lens[..n].iter().enumerate() {
            let m = &sent[k];
            assert_eq!(len as usize, m.len(), "step {step}, message {k}");
            assert!(m.len() <= small);
            assert_eq!(
                &out[at + 8..at + 8 + m.len()],
                &m[..],
                "step {step}, message {k}"
            );
            at += span(m.len());
        }
        assert!(at <= room);
        // Why it stopped where it did.
        let idx = state.head as usize % CAP as usize;
        let next_word = word(&heap, layout::OFF_DATA + (idx + at) % CAP as usize);
        // (A skip record is where the sender wrapped: take steps over it.)
        if n < limit && idx + at < CAP as usize && next_word & layout::REC_SKIP == 0 {
            match sent.get(n) {
                None => {}
                Some(next) => assert!(
                    next.len() > small || at + span(next.len()) > room,
                    "step {step}: stopped before a message it could take"
                ),
            }
        }
        if n > 0 {
            rounds += 1;
        }
        // Take the run (and sometimes one more) one by one, as the caller consumes it.
        let takes = if step % 3 == 0 { n + 1 } else { n.max(1) };
        for _ in 0..takes {
            match sent.front() {
                Some(m) if m.len() <= max => {
                    let got = take(&mut heap, &mut state, &mut into);
                    if got < 0 {
                        break;
                    }
                    assert_eq!(&into[..got as usize], &m[..]);
                    sent.pop_front();
                }
                _ => break,
            }
        }
    }
    assert!(rounds > 100, "runs found: {rounds}");
}

#[test]
fn a_run_scan_stops_at_a_record_the_receiver_would_report() {
    let cases: [(&str, u32); 6] = [
        ("longer than a record", layout::REC_COMMITTED | 500),
        ("a fragment", layout::REC_COMMITTED | layout::REC_MORE | 16),
        ("an abort", layout::REC_COMMITTED | layout::REC_ABORT),
        ("a skip", layout::REC_COMMITTED | layout::REC_SKIP | 8),
        ("a reservation", layout::REC_SKIP | 8),
        ("past the tail", layout::REC_COMMITTED | 8),
    ];
    for (what, bad) in cases {
        let mut heap = Heap::new(region_size(CAP));
        let ch = channel(&mut heap, Mode::Spsc);
        let mut tx = ch.sender(WaitOptions::default()).unwrap();
        for seq in 0..3 {
            tx.try_send(&message(seq, 8)).unwrap();
        }
        // The third record becomes `bad`; "past the tail" puts it after the last one instead.
        let at = if what == "past the tail" {
            3 * 16
        } else {
            2 * 16
        };
        set_word(&mut heap, layout::OFF_DATA + at, bad);
        let mut state = fresh_take();
        let (mut out, mut lens) = ([0u8; 256], [0u32; 8]);
        let n = scan(&mut heap, &mut state, &mut out, &mut lens, 8, 64);
        assert_eq!(n, at / 16, "{what}");
        assert_eq!(state.head, 0, "{what}: nothing consumed");
        // A corrupt first record: nothing.
        if what == "past the tail" {
            continue;
        }
        set_word(&mut heap, layout::OFF_DATA, bad);
        let mut state = fresh_take();
        assert_eq!(
            scan(&mut heap, &mut state, &mut out, &mut lens, 8, 64),
            0,
            "{what}"
        );
    }
    // Capacities no channel has, and no memory to copy to.
    let mut heap = Heap::new(region_size(CAP));
    let ch = channel(&mut heap, Mode::Spsc);
    ch.sender(WaitOptions::default())
        .unwrap()
        .try_send(b"abc")
        .unwrap();
    let (mut out, mut lens) = ([0u8; 64], [0u32; 4]);
    for capacity in [0, 100, CAP * 2 + 1] {
        let mut s = TakeState {
            capacity,
            ..TakeState::default()
        };
        assert_eq!(scan(&mut heap, &mut s, &mut out, &mut lens, 4, 64), 0);
    }
    let mut s = fresh_take();
    // SAFETY: null pointers are refused before anything is read or written.
    let got = unsafe {
        scan_run(
            heap.ptr(),
            &mut s,
            std::ptr::null_mut(),
            64,
            lens.as_mut_ptr(),
            4,
            64,
        )
    };
    assert_eq!(got, 0);
    // SAFETY: as above.
    let got = unsafe {
        scan_run(
            heap.ptr(),
            &mut s,
            out.as_mut_ptr(),
            64,
            std::ptr::null_mut(),
            4,
            64,
        )
    };
    assert_eq!(got, 0);
    assert_eq!(scan(&mut heap, &mut s, &mut out, &mut lens, 4, 64), 1);
    assert_eq!(&out[8..11], b"abc");
}

/// What [`scan_run`] must find in `heap`: the lengths of the run at `head`, by the rules of the
/// TypeScript receiver's own look ahead (`Consumer.peekAt`), against the region's real `tail`.
fn model_run(heap: &Heap, head: u32, room: usize, max: usize, small: usize) -> Vec<u32> {
    let cap = CAP as usize;
    let start = (head & (CAP - 1)) as usize;
    let tail = word(heap, layout::OFF_TAIL) & layout::POS_MASK;
    let avail = (tail.wrapping_sub(head) & layout::POS_MASK) as usize;
    let (mut lens, mut bytes) = (Vec::new(), 0);
    while lens.len() < max {
        let idx = start + bytes;
        let w = word(heap, layout::OFF_DATA + idx);
        let kind = layout::REC_COMMITTED | layout::REC_SKIP | layout::REC_MORE | layout::REC_ABORT;
        if w & kind != layout::REC_COMMITTED {
            break;
        }
        let len = (w & layout::REC_LEN_MASK) as usize;
        let sp = span(len);
        if len > small || len > max_record(CAP) || sp > cap - idx || bytes + sp > room {
            break;
        }
        if avail > cap || bytes + sp > avail {
            break;
        }
        lens.push(len as u32);
        bytes += sp;
        if idx + sp == cap {
            break;
        }
    }
    lens
}

/// One record of a ring built for [`scan_run`]: its commit word's kind and its length.
fn record() -> impl Strategy<Value = (u32, usize)> {
    let kind = prop_oneof![
        16 => Just(layout::REC_COMMITTED),
        1 => Just(layout::REC_COMMITTED | layout::REC_SKIP),
        1 => Just(layout::REC_COMMITTED | layout::REC_MORE),
        1 => Just(layout::REC_COMMITTED | layout::REC_ABORT),
        1 => Just(layout::REC_SKIP),
        1 => Just(0),
    ];
    (kind, prop_oneof![4 => 0usize..=40, 1 => 0usize..=200])
}

proptest! {
    #![proptest_config(proptest_config())]

    /// Rings of records back to back from an aligned `head` (messages of every length, and now
    /// and then something else: a skip record, a fragment, an abort, a reservation, nothing, a
    /// length no record holds), with `tail` anywhere near them: a run scan finds exactly what
    /// the receiver's own look ahead finds, copies those records as they are, and writes
    /// nothing to the region.
    #[test]
    fn a_run_scan_finds_what_the_look_ahead_finds(
        records in proptest::collection::vec(record(), 1..24),
        at in 0u32..CAP / 8,
        rounds in 0u32..4,
        tail_shift in prop_oneof![3 => Just(0i32), 1 => -64i32..64],
        fresh in any::<bool>(),
        room in prop_oneof![Just(4096usize), 0usize..400],
        max in prop_oneof![Just(512usize), 0usize..20],
        small in prop_oneof![2 => Just(256usize), 1 => 0usize..300],
    ) {
        let mut heap = Heap::new(region_size(CAP));
        drop(channel(&mut heap, Mode::Spsc));
        let head = (rounds * CAP + at * 8) & layout::POS_MASK;
        let mut idx = (at * 8) as usize;
        let mut end = head;
        for &(kind, len) in &records {
            let sp = span(len);
            if idx + sp > CAP as usize {
                break;
            }
            set_word(&mut heap, layout::OFF_DATA + idx, kind | len as u32);
            let payload = message(idx as u32, len);
            let from = layout::OFF_DATA + idx + 8;
            heap.bytes_mut()[from..from + len].copy_from_slice(&payload);
            idx += sp;
            end = end.wrapping_add(sp as u32) & layout::POS_MASK;
        }
        let tail = end.wrapping_add_signed(tail_shift * 8) & layout::POS_MASK;
        set_word(&mut heap, layout::OFF_HEAD, head);
        set_word(&mut heap, layout::OFF_TAIL, tail);
        let before = heap.bytes().to_vec();
        let mut out = vec![0u8; room];
        let mut lens = vec![0u32; max];
        let seen = if fresh { head } else { tail };
        let mut state = TakeState { head, looked: head, tail_seen: seen, capacity: CAP };
        let n = scan(&mut heap, &mut state, &mut out, &mut lens, max, small);
        let want = model_run(&heap, head, room, max, small);
        prop_assert_eq!(&lens[..n], &want[..]);
        let bytes: usize = want.iter().map(|&len| span(len as usize)).sum();
        let from = layout::OFF_DATA + (at * 8) as usize;
        prop_assert_eq!(&out[..bytes], &before[from..from + bytes]);
        prop_assert_eq!(heap.bytes(), &before[..]);
        prop_assert_eq!(state.head, head);
    }

    /// Random bytes and positions: a run scan returns, never panics, reports at most `max`
    /// messages of at most `small` bytes in at most the room of `out`, and writes nothing to the
    /// region.
    #[test]
    fn random_rings_never_make_a_run_scan_panic(
        data in proptest::collection::vec(any::<u8>(), CAP as usize),
        head in any::<u32>(),
        tail in any::<u32>(),
        seen in any::<u32>(),
        room in 0usize..300,
        max in 0usize..40,
        small in 0usize..300,
    ) {
        let mut heap = Heap::new(region_size(CAP));
        drop(channel(&mut heap, Mode::Spsc));
        heap.bytes_mut()[layout::OFF_DATA..].copy_from_slice(&data);
        set_word(&mut heap, layout::OFF_HEAD, head);
        set_word(&mut heap, layout::OFF_TAIL, tail);
        let before = heap.bytes().to_vec();
        let mut out = vec![0u8; room];
        let mut lens = vec![0u32; max];
        let mut state = TakeState { head, looked: head, tail_seen: seen, capacity: CAP };
        let n = scan(&mut heap, &mut state, &mut out, &mut lens, max, small);
        prop_assert!(n <= max);
        prop_assert!(lens[..n].iter().all(|&len| len as usize <= small));
        prop_assert!(lens[..n].iter().map(|&len| span(len as usize)).sum::<usize>() <= room);
        prop_assert_eq!(heap.bytes(), &before[..]);
        prop_assert_eq!(state.head, head);
    }
}

#[test]
fn a_tail_seen_behind_head_bounds_nothing() {
    // A receiver's `tail` bound left behind `head` (as after a skip over a dead producer's
    // reservation) must be looked at again, not taken for a ring's worth of room: a record a
    // peer planted past the real tail is refused.
    let mut heap = Heap::new(region_size(CAP));
    let ch = channel(&mut heap, Mode::Spsc);
    let mut tx = ch.sender(WaitOptions::default()).unwrap();
    tx.try_send(&message(0, 8)).unwrap();
    let mut state = fresh_take();
    let mut into = [0u8; 16];
    assert_eq!(take(&mut heap, &mut state, &mut into), 8);
    assert_eq!((state.head, word(&heap, layout::OFF_TAIL)), (16, 16));
    set_word(&mut heap, layout::OFF_DATA + 16, layout::REC_COMMITTED | 8);
    for seen in [8, 0, 16u32.wrapping_sub(CAP) & layout::POS_MASK] {
        let mut stale = TakeState {
            tail_seen: seen,
            ..state
        };
        assert_eq!(
            take(&mut heap, &mut stale, &mut into),
            -1,
            "tail seen {seen}"
        );
        let (mut out, mut lens) = ([0u8; 64], [0u32; 4]);
        let mut stale = TakeState {
            tail_seen: seen,
            ..state
        };
        assert_eq!(
            scan(&mut heap, &mut stale, &mut out, &mut lens, 4, 64),
            0,
            "tail seen {seen}"
        );
    }
    // Once the sender's tail covers it, it is a message.
    set_word(&mut heap, layout::OFF_TAIL, 32);
    let mut stale = TakeState {
        tail_seen: 8,
        ..state
    };
    assert_eq!(take(&mut heap, &mut stale, &mut into), 8);
}

/// Appends `count` committed records of the kind `kind` (payload 0, span 8) at the tail of a
/// one-producer ring of `cap` bytes, then one message of `len` bytes of `fill`, as a peer writing
/// into the region would.
fn append_nothing_then(heap: &mut Heap, cap: u32, kind: u32, count: u32, len: u32, fill: u8) {
    let mut tail = word(heap, layout::OFF_TAIL) & layout::POS_MASK;
    for _ in 0..count {
        let at = layout::OFF_DATA + (tail & (cap - 1)) as usize;
        set_word(heap, at, layout::REC_COMMITTED | kind);
        tail += 8;
    }
    let at = layout::OFF_DATA + (tail & (cap - 1)) as usize;
    heap.bytes_mut()[at + 8..at + 8 + len as usize].fill(fill);
    set_word(heap, at, layout::REC_COMMITTED | len);
    tail += span(len as usize) as u32;
    set_word(heap, layout::OFF_TAIL, tail);
}

#[test]
fn a_look_steps_over_a_bounded_number_of_records_that_deliver_nothing() {
    // The ring's STEP_LIMIT: what one look steps over or consumes without finding a message.
    const LIMIT: u32 = 1024;
    const BIG: u32 = 1 << 16;
    let mut heap = Heap::new(region_size(BIG));
    let ch = channel_of(&mut heap, BIG, Mode::Spsc);
    // The foreign fast path: each take steps over at most LIMIT skip records, then leaves the
    // rest to a later call.
    append_nothing_then(&mut heap, BIG, layout::REC_SKIP, 2 * LIMIT + 100, 3, 0x33);
    let mut state = TakeState {
        capacity: BIG,
        ..TakeState::default()
    };
    let mut into = [0u8; 16];
    let mut takes = vec![];
    while takes.last() != Some(&3) && takes.len() < 10 {
        let before = state.head;
        takes.push(take(&mut heap, &mut state, &mut into));
        assert!(state.head - before <= LIMIT * 8 + span(3) as u32);
    }
    assert_eq!(takes, [-1, -1, 3]);
    assert_eq!(&into[..3], &[0x33; 3]);
    drop(ch);
    // The Rust receiver: the same for skip and abort records, and a receive with a deadline
    // looks as often as it takes.
    let mut heap = Heap::new(region_size(BIG));
    let ch = channel_of(&mut heap, BIG, Mode::Spsc);
    let mut rx = ch.receiver(WaitOptions::default()).unwrap();
    for kind in [layout::REC_SKIP, layout::REC_ABORT] {
        append_nothing_then(&mut heap, BIG, kind, 2 * LIMIT + 100, 3, 0x33);
        let mut looks = 0;
        let got = loop {
            looks += 1;
            match rx.try_recv() {
                Ok(got) => break got,
                Err(err) => assert!(matches!(err, ChannelError::Empty), "{err}"),
            }
            assert!(looks < 10);
        };
        assert_eq!(got, Some(vec![0x33; 3]));
        assert!((2..=4).contains(&looks), "{looks} looks");
        append_nothing_then(&mut heap, BIG, kind, 3 * LIMIT, 4, 0x44);
        let got = rx.recv(Some(std::time::Duration::from_secs(60))).unwrap();
        assert_eq!(got, Some(vec![0x44; 4]));
    }
}

#[test]
fn fragments_of_messages_a_peer_never_ends_cannot_hold_a_receive_past_its_deadline() {
    use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
    use std::time::{Duration, Instant};
    // Fragments of 8 MiB: the receiver copies each for milliseconds, in which the peer fills
    // the other half of the ring, so the ring is never empty (an empty ring ends a look).
    const BIG: u32 = 1 << 24;
    let mut heap = Heap::new(region_size(BIG));
    let ch = channel_of(&mut heap, BIG, Mode::Spsc);
    let mut rx = ch.receiver(WaitOptions::default()).unwrap();
    let base = heap.ptr() as usize;
    let stop = std::sync::Arc::new(AtomicBool::new(false));
    // The peer: a first fragment, five more, a new first fragment..., as fast as they are
    // consumed, for 20 s at most (a receive it holds would hold the test that long).
    let peer = std::thread::spawn({
        let stop = std::sync::Arc::clone(&stop);
        move || {
            // SAFETY: aligned words inside the heap region, which outlives this thread (joined
            // before the heap drops); the receiver reads them as atomics too.
            let w = |offset: usize| unsafe { AtomicU32::from_ptr((base + offset) as *mut u32) };
            let span = BIG / 2;
            let mut tail = w(layout::OFF_TAIL).load(Ordering::Acquire) & layout::POS_MASK;
            let until = Instant::now() + Duration::from_secs(20);
            let mut n = 0u32;
            while !stop.load(Ordering::Relaxed) && Instant::now() < until {
                let head = w(layout::OFF_HEAD).load(Ordering::Acquire) & layout::POS_MASK;
                if (tail.wrapping_sub(head) & layout::POS_MASK) + span > BIG {
                    std::hint::spin_loop();
                    continue;
                }
                let at = layout::OFF_DATA + (tail & (BIG - 1)) as usize;
                tail = (tail + span) & layout::POS_MASK;
                w(layout::OFF_TAIL).store(tail, Ordering::Release);
                let cont = if n % 6 == 0 { 0 } else { layout::REC_CONT };
                let word = layout::REC_COMMITTED | layout::REC_MORE | cont | (BIG / 2 - 8);
                w(at).store(word, Ordering::Release);
                n += 1;
            }
            n
        }
    });
    // The CPU time of this thread, not the time on the clock: a loaded machine stretches the
    // latter (a run beside other work took more than 3 s of it), while a receive held until the
    // peer stops copies all along, and so spends that CPU time too.
    let cpu = || {
        let mut now = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: a valid out-pointer; this clock exists on every Linux and macOS.
        let status = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut now) };
        assert_eq!(status, 0);
        Duration::new(now.tv_sec as u64, now.tv_nsec as u32)
    };
    let started = cpu();
    for _ in 0..5 {
        let err = rx.recv(Some(Duration::from_millis(100))).unwrap_err();
        assert!(matches!(err, ChannelError::Timeout), "{err}");
    }
    let spent = cpu() - started;
    stop.store(true, Ordering::Relaxed);
    let written = peer.join().unwrap();
    assert!(written > 10, "the peer wrote {written} fragments");
    // A look that only ended when the ring emptied held each receive until the peer stopped.
    assert!(
        spent < Duration::from_secs(3),
        "5 receives of 100 ms took {spent:?} of CPU time"
    );
    drop(rx);
    drop(ch);
}
