//! A Rust endpoint of a channel, for the conformance tests that run it against the TypeScript
//! implementation (`tests/channel_conformance.test.ts`): it sends or receives a deterministic
//! stream of messages on a channel another process created, and prints one `result` line of JSON.
//!
//! ```text
//! channel_peer send <name> <producer> <count> <seed> <close|detach> [break]
//! channel_peer recv <name> <producers> <count-each> <seed> [end|-] [first]
//! channel_peer until-closed <name> <producer> <seed>
//! channel_peer check-hold <name>
//! ```
//!
//! A receiver with `first` expects each producer's stream to start at message `first` (a
//! receiver that takes over from one that died gets what that one did not hand back).
//!
//! A sender with `break` first sends a message longer than twice the ring with a zero timeout,
//! which breaks off after some fragments (so the receiver gets an abort record), prints
//! `broken`, and then sends its stream. Message `i` of producer `p` is [`message`]`(seed, p, i,
//! max_record, capacity)`; the TypeScript tests build the same bytes.
//!
//! `until-closed` sends that stream until a send fails (the receiver closes meanwhile), then
//! tries `send`, `try_send` and `reserve` once each, and reports how many sends succeeded and the
//! errno of the failing send and of each try (0 if one succeeded).
//!
//! `check-hold` takes the receiver, lets its liveness check fall due, receives with a short
//! timeout (which checks on the senders: it must time out, some sender being alive), prints
//! `ready`, and stays alive without receiving again, for a test to kill it.

use std::time::Duration;

use shared_buffer::channel::{Channel, ChannelError, WaitOptions};
use shared_buffer::{Options, Segment, SegmentId};

/// A 32-bit hash of (seed, producer, index): xorshift over a mix of the three.
fn hash(seed: u32, producer: u32, index: u32) -> u32 {
    let mut x =
        seed ^ (producer + 1).wrapping_mul(0x9E37_79B1) ^ (index + 1).wrapping_mul(0x85EB_CA77);
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    x
}

/// Message `index` of `producer`: mostly small, some up to one record, some fragmented (up to
/// twice the ring); its first 8 bytes are the producer and the index (little-endian).
fn message(seed: u32, producer: u32, index: u32, max_record: usize, capacity: usize) -> Vec<u8> {
    let h = hash(seed, producer, index);
    let r = (h >> 8) as usize;
    let len = match h % 16 {
        0..=9 => 8 + r % 56,
        10..=13 => 8 + r % (max_record - 7),
        _ => max_record + 1 + r % (2 * capacity),
    };
    let mut out: Vec<u8> = (0..len)
        .map(|j| (j as u32 + index * 7 + producer * 13 + seed) as u8)
        .collect();
    out[..4].copy_from_slice(&producer.to_le_bytes());
    out[4..8].copy_from_slice(&index.to_le_bytes());
    out
}

fn fail(what: &str, errno: i32, err: &dyn std::fmt::Display) -> ! {
    println!(
        "result {{\"ok\":false,\"errno\":{errno},\"error\":{:?}}}",
        format!("{what}: {err}")
    );
    std::process::exit(1);
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize| args.get(i).map(String::as_str).unwrap_or("");
    let num = |i: usize| arg(i).parse::<u32>().expect("a number argument");
    let id = SegmentId::name(arg(1)).expect("a segment name");
    let segment = Segment::open(&id, None, &Options::default()).unwrap_or_else(|e| {
        let e = std::io::Error::from(e);
        fail("open", e.raw_os_error().unwrap_or(0), &e)
    });
    let channel = Channel::open(segment).unwrap_or_else(|e| fail("Channel::open", e.errno(), &e));
    let (max, cap) = (channel.max_record(), channel.capacity() as usize);
    let options = WaitOptions {
        liveness_interval: Duration::from_millis(50),
        ..WaitOptions::default()
    };
    let patience = Some(Duration::from_secs(30));
    match arg(0) {
        "send" => {
            let (producer, count, seed) = (num(2), num(3), num(4));
            let mut tx = channel
                .sender(options)
                .unwrap_or_else(|e| fail("sender", e.errno(), &e));
            if arg(6) == "break" {
                let long = vec![0xEE; 2 * cap + 1];
                match tx.send(&long, Some(Duration::ZERO)) {
                    Err(ChannelError::Timeout) => println!("broken"),
                    other => panic!("the long message should have broken off: {other:?}"),
                }
            }
            for i in 0..count {
                let msg = message(seed, producer, i, max, cap);
                if i % 5 == 4 && msg.len() <= max {
                    let mut slot = tx
                        .reserve(msg.len(), patience)
                        .unwrap_or_else(|e| fail("reserve", e.errno(), &e));
                    slot.copy_from_slice(&msg);
                    slot.commit();
                } else {
                    tx.send(&msg, patience)
                        .unwrap_or_else(|e| fail("send", e.errno(), &e));
                }
            }
            if arg(5) == "close" {
                tx.close();
            }
            println!("result {{\"ok\":true,\"sent\":{count}}}");
        }
        "recv" => {
            let (producers, count, seed) = (num(2), num(3), num(4));
            let mut rx = channel
                .receiver(options)
                .unwrap_or_else(|e| fail("receiver", e.errno(), &e));
            println!("ready");
            let first = arg(6).parse::<u32>().unwrap_or(0);
            let mut next = vec![first; producers as usize];
            let mut buf = Vec::new();
            for n in 0..producers * count {
                let got = if n % 2 == 0 {
                    rx.recv_into(&mut buf, patience)
                        .map(|m| m.map(|_| buf.clone()))
                } else {
                    rx.recv_ref(patience).map(|m| m.map(|m| m.to_vec()))
                };
                let msg = match got {
                    Ok(Some(msg)) => msg,
                    Ok(None) => fail("recv", 0, &"the stream ended early"),
                    Err(e) => fail("recv", e.errno(), &e),
                };
                let p = u32::from_le_bytes(msg[..4].try_into().unwrap());
                let want = next.get(p as usize).map(|&i| message(seed, p, i, max, cap));
                if want.as_deref() != Some(&msg[..]) {
                    let err = format!(
                        "message {n}: {} bytes from producer {p}, not the expected one",
                        msg.len()
                    );
                    fail("recv", 0, &err);
                }
                next[p as usize] += 1;
            }
            // With `end`: the stream must end after the last message.
            let end = match arg(5) {
                "end" => match rx.recv(patience) {
                    Ok(None) => "end",
                    Ok(Some(_)) => "more",
                    Err(e) if e.errno() == libc::ECONNRESET => "ECONNRESET",
                    Err(_) => "error",
                },
                _ => "not asked",
            };
            println!("result {{\"ok\":true,\"next\":{next:?},\"after\":\"{end}\"}}");
        }
        "check-hold" => {
            let mut rx = channel
                .receiver(options)
                .unwrap_or_else(|e| fail("receiver", e.errno(), &e));
            std::thread::sleep(options.liveness_interval + Duration::from_millis(10));
            match rx.recv(Some(Duration::from_millis(30))) {
                Err(ChannelError::Timeout) => println!("ready"),
                other => fail("recv", 0, &format!("{other:?}, not a timeout")),
            }
            loop {
                std::thread::sleep(Duration::from_secs(60));
            }
        }
        "until-closed" => {
            let (producer, seed) = (num(2), num(3));
            let mut tx = channel
                .sender(options)
                .unwrap_or_else(|e| fail("sender", e.errno(), &e));
            println!("ready");
            let mut sent = 0;
            let first = loop {
                match tx.send(&message(seed, producer, sent, max, cap), patience) {
                    Ok(()) => sent += 1,
                    Err(e) => break e,
                }
            };
            let msg = message(seed, producer, sent, max, cap);
            let errno = |r: Result<(), ChannelError>| r.err().map_or(0, |e| e.errno());
            let later = [
                errno(tx.send(&msg, patience)),
                errno(tx.try_send(&msg[..msg.len().min(max)])),
                errno(tx.reserve(8, patience).map(drop)),
            ];
            println!(
                "result {{\"ok\":true,\"sent\":{sent},\"errno\":{},\"error\":{:?},\"later\":{later:?}}}",
                first.errno(),
                first.to_string()
            );
        }
        other => panic!("unknown role {other:?}"),
    }
}
