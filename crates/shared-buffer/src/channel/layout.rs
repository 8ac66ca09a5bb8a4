//! The channel's byte layout: the one definition of where every word lives.
//!
//! Everything here is shared with the TypeScript implementation of the same protocol, which reads
//! and writes the region through an `Int32Array` (32-bit `Atomics`) and a `DataView`. [`TABLE`]
//! lists every constant and offset by name so that a test can compare the TypeScript copy with
//! this one.
//!
//! # The region
//!
//! A channel region is a [`HEADER_SIZE`]-byte header followed by a data area of `capacity` bytes
//! (a power of two, [`MIN_CAPACITY`]`..=`[`MAX_CAPACITY`]). All integers are little-endian `u32`
//! at 4-byte-aligned offsets; the region itself must be 8-byte aligned (shared-memory mappings are
//! page aligned). Words that change while the channel runs are accessed only atomically; the
//! header is split into 128-byte blocks so that words written by different sides never share a
//! cache line (nor an adjacent-line prefetch pair).
//!
//! | offset | size | name | written by | meaning |
//! | ---: | ---: | --- | --- | --- |
//! | 0 | 4 | `magic` | creator, once, last (release) | [`MAGIC`] = `0x48434253`, the bytes `"SBCH"` |
//! | 4 | 4 | `version` | creator, once | [`VERSION`] (1) |
//! | 8 | 4 | `header_size` | creator, once | [`HEADER_SIZE`] (1024): the data area's offset |
//! | 12 | 4 | `capacity` | creator, once | data area bytes: a power of two, 64..=2^28 |
//! | 16 | 4 | `max_message` | creator, once | `max_record = capacity / 2 - 8`: the largest payload of one record (fragment) |
//! | 20 | 4 | `mode` | creator, once | [`MODE_SPSC`] (0) or [`MODE_MPSC`] (1) |
//! | 24 | 4 | `flags` | consumer (atomic OR) | bit 0 [`FLAG_RX_CLOSED`]: the consumer has gone |
//! | 28 | 4 | `consumer_pid` | consumer (CAS) | pid of the attached consumer, 0 = none |
//! | 32 | 4 | `max_producers` | creator, once | [`MAX_PRODUCERS`] (64): slots in `producer_pids` |
//! | 36 | 92 | reserved | | zero |
//! | 128 | 4 | `head` | consumer (store, release) | consumer position (see *Positions*) |
//! | 132 | 124 | padding | | zero |
//! | 256 | 4 | `tail` | producers (SPSC: store; MPSC: CAS) | producer reservation position; bit 31 [`TAIL_CLOSED`] |
//! | 260 | 124 | padding | | zero |
//! | 384 | 4 | `rx_waiting` | consumer sets 1, producers swap to 0 | 1 = the consumer may be parked on this word |
//! | 388 | 124 | padding | | zero |
//! | 512 | 4 | `tx_waiting` | producers set 1, consumer swaps to 0 | 1 = a producer may be parked on this word |
//! | 516 | 124 | padding | | zero |
//! | 640 | 256 | `producer_pids[64]` | each producer (CAS) | pid of an attached producer, 0 = free slot |
//! | 896 | 128 | reserved | | zero |
//! | 1024 | capacity | data area | | records |
//!
//! # Positions
//!
//! `head` and `tail` are byte positions that count modulo 2^31 ([`POS_MASK`]); they are always
//! multiples of 8. The byte index of a position in the data area is `pos & (capacity - 1)`, and
//! the bytes in use are `(tail - head) & POS_MASK`, which is never more than `capacity`. Bit 31 of
//! `tail` is [`TAIL_CLOSED`]: set once by a sender's close, it stops any further reservation (a
//! CAS on `tail` fails when the bit is set) and tells the consumer that the stream ends at that
//! position. Bit 31 of `head` is always 0.
//!
//! # Records
//!
//! ```text
//! +--------------+----------------+---------------------+---------------+
//! | commit (u32) | producer (u32) | payload (len bytes) | zero pad to 8 |
//! +--------------+----------------+---------------------+---------------+
//! ```
//!
//! A record starts at an 8-aligned position with an 8-byte header ([`RecordHeader`]). Its span is
//! `8 + round_up(len, 8)` bytes and never crosses the end of the data area. The commit word is 0
//! while the record is being written (all free space is zero: the creator zeroes it, the consumer
//! zeroes what it consumed) and is stored last, with release ordering:
//!
//! | bits | name | value | meaning |
//! | --- | --- | --- | --- |
//! | 31 | [`REC_COMMITTED`] | `0x8000_0000` | set in every committed record (so a committed empty message is not 0) |
//! | 30 | [`REC_SKIP`] | `0x4000_0000` | a skip record (padding before the wrap, or an abandoned reservation): stepped over |
//! | 29 | [`REC_MORE`] | `0x2000_0000` | a fragment; more fragments of the same message follow from the same producer |
//! | 28 | [`REC_ABORT`] | `0x1000_0000` | an abort record: the producer gave up the fragmented message it had begun |
//! | 0..=27 | [`REC_LEN_MASK`] | `0x0FFF_FFFF` | the payload length (for a skip record: span − 8) |
//!
//! `max_record = capacity / 2 - 8` (the header field `max_message`) is the largest payload of one
//! record. A committed record's commit word is exactly one of:
//!
//! - `COMMITTED | len` with `len <= max_record`: a whole message, or the last fragment of one;
//! - `COMMITTED | MORE | max_record`: a fragment that is not the last, always `max_record` bytes;
//! - `COMMITTED | ABORT` (length 0): an abort record;
//! - `COMMITTED | SKIP | (span - 8)`: a skip record.
//!
//! Anything else is `EBADMSG`; in particular SKIP, MORE and ABORT are never combined.
//!
//! The `producer` word (byte 4, [`OFF_REC_PRODUCER`]) is the sending producer's slot + 1
//! (`1..=64`) in MPSC mode, written with a plain store before the commit word's release store;
//! it is 0 in SPSC mode and in skip records. The pad bytes are never written and stay zero.
//!
//! # Messages and fragments
//!
//! A message is `0..=`[`MAX_MESSAGE_LEN`] (`2^31 - 1`) bytes. One of at most `max_record` bytes
//! is sent as one record. A longer one is split into `n = ceil(len / max_record)` fragments, sent
//! in order: `n - 1` records of exactly `max_record` bytes with `REC_MORE`, then one record of the
//! remaining `1..=max_record` bytes without it. Each fragment is reserved, committed and
//! announced (consumer woken) like a message of its own, so a fragmented send waits for room
//! fragment by fragment; skip records, and in MPSC other producers' records, may come between
//! fragments. Zero-copy reservations and non-waiting sends are single records
//! (`len <= max_record`, else `EMSGSIZE`): only a waiting send is fragmented.
//!
//! **Aborts.** A producer *owes an abort record* when
//!
//! 1. a fragmented send failed (timed out, the channel closed, the consumer died, corruption)
//!    after committing at least one of its fragments: it then tries at once, without waiting, to
//!    reserve and commit an abort record, and owes one only if that fails; or
//! 2. it attaches in MPSC mode: right after its slot CAS succeeds it tries, without waiting, to
//!    commit an abort record, and owes it only if that fails. (A producer that owed an abort may
//!    have detached without paying it; the next producer in its slot so clears the slot's
//!    partial message before its own first message. SPSC has one producer for the channel's
//!    life and no such record.)
//!
//! An abort record is `COMMITTED | ABORT` with length 0 and the producer word, 8 bytes. A
//! producer that owes one commits it before its next record of any kind (send, try-send,
//! reservation), waiting for room as that call waits (within the same timeout); if that fails,
//! the call fails with nothing sent and the producer still owes it.
//!
//! **Reassembly.** The consumer keeps one partial message per producer: by slot
//! (`producer - 1`) in MPSC, a single one in SPSC (where the producer word is not read). For each
//! data record, in ring order:
//!
//! - `ABORT`: empty the producer's partial message (if any); consume the record.
//! - `MORE`: `EBADMSG` if the partial message would grow beyond [`MAX_MESSAGE_LEN`] bytes (the
//!   record is not consumed); else append the payload to it and consume the record.
//! - neither, partial message empty: a whole message, delivered in place.
//! - neither, partial message non-empty: the last fragment. Append it (with the same limit),
//!   consume the record, and deliver the partial message, which is empty again.
//!
//! In MPSC the producer word is read for `MORE` and `ABORT` records, and for other data records
//! while some partial message is non-empty (a fragment payload is never empty, so "non-empty"
//! means "begun"); a value outside `1..=64` is `EBADMSG` (the record is not consumed).
//!
//! At the end of the stream the consumer discards every partial message. That happens when
//! another MPSC producer closes the channel while one is between fragments (that one's next
//! fragment fails with `EPIPE`), or when a producer closes after a fragmented send failed. A
//! producer process that dies between fragments leaves its partial message until the end of the
//! stream (its slot keeps its pid, so no other producer takes it). A consumer that takes over
//! from a dead one starts with no partial messages: if the dead one had consumed the first
//! fragments of a message, the new one receives the remaining fragments as a shorter message.
//!
//! # Protocol
//!
//! "Load" and "store" below are atomic 32-bit accesses (`Atomics.load` / `Atomics.store` in
//! JavaScript, which are sequentially consistent and so at least as strong as asked); payload
//! bytes are plain reads and writes. `POS_MASK`, `cap` = capacity, `data[i]` = byte
//! `HEADER_SIZE + i` of the region, `commit@i` = the word at `data[i]`.
//!
//! **Create** (nobody else uses the region yet): store `magic = 0`; zero every other header word
//! and (unless the memory is fresh) the data area; write `version`, `header_size`, `capacity`,
//! `max_message`, `mode`, `max_producers`; last, store `magic = MAGIC` with release.
//!
//! **Open**: load `magic` with acquire: 0 is `EAGAIN` (not initialised yet, retry), another value
//! `EBADMSG`. `version != 1` is `EPROTONOSUPPORT`. Then `EBADMSG` unless `header_size == 1024`,
//! `capacity` is a power of two in `64..=2^28` with `1024 + capacity <= region length`,
//! `max_message == capacity / 2 - 8`, `mode` is 0 or 1, `max_producers == 64`, `flags` has no
//! bit but bit 0, both waiter words are 0 or 1, `head & 0x8000_0007 == 0`, `tail & 7 == 0` and
//! `((tail & POS_MASK) - head) & POS_MASK <= capacity` (a live channel moves: re-read `head`
//! then `tail` up to 4 times before failing).
//!
//! **Attach**. Consumer: `EPIPE` if `flags & FLAG_RX_CLOSED`; CAS `consumer_pid` 0 → own pid; if
//! it holds a dead pid, CAS that pid → own pid (take-over); a live pid is `EBUSY`. Producer:
//! `EPIPE` if `FLAG_RX_CLOSED` or `tail & TAIL_CLOSED`; SPSC: CAS `producer_pids[0]` 0 → own pid,
//! a live holder is `EBUSY`, a dead one `ECONNRESET`; MPSC: the first slot whose CAS 0 → own pid
//! succeeds, none is `EBUSY`, and then an abort record if there is room now (see *Aborts*).
//!
//! **Send** a `len`-byte message: `EMSGSIZE` if `len > MAX_MESSAGE_LEN`; as one record, or as
//! fragments (see above), each sent as follows. **Send a record** with a `len`-byte payload
//! (`len <= max_record`): `EPIPE` if `flags & FLAG_RX_CLOSED`. `span = 8 + round_up(len, 8)`.
//! Reserve, in a loop: with `t` the tail
//! position and `h` a head, `idx = t & (cap - 1)`, `to_end = cap - idx`,
//! `need = min(span, to_end)`, `used = (t - h) & POS_MASK`; the ring is full if
//! `cap - used < need`.
//! - SPSC: the producer keeps `t` itself and a cached `h`; when the cache says full it loads
//!   `head` with acquire and recomputes (`used > cap` is `EBADMSG`). To reserve it stores
//!   `tail = (t + need) & POS_MASK` (relaxed is enough).
//! - MPSC: load `head` (acquire), then `tail` (acquire); `TAIL_CLOSED` set is `EPIPE`, `tail & 7`
//!   is `EBADMSG`; `used > cap` means `head` moved between the loads: retry (the same pair seen
//!   twice in a row is `EBADMSG`). Reserve with CAS `tail`: `t` → `(t + need) & POS_MASK`
//!   (acq_rel); a failed CAS retries.
//!
//! If `need < span` the reservation is a skip record up to the end of the data area: store
//! `commit@idx = REC_COMMITTED | REC_SKIP | (to_end - 8)` with release, wake the consumer, and
//! reserve again (now at index 0). Otherwise write the payload to `data[idx + 8 ..]` and, in
//! MPSC, the producer word `data[idx + 4 .. idx + 8] = slot + 1`; then store
//! `commit@idx = REC_COMMITTED | kind | len` with release (`kind` is 0, `REC_MORE` or
//! `REC_ABORT`), and wake the consumer. A reservation given up is zeroed and committed as a skip
//! record of its own span (its producer word stays 0).
//!
//! **Wake the consumer** (after every commit and close): SeqCst fence; if `rx_waiting` loads
//! non-zero and `exchange(rx_waiting, 0)` returns non-zero, `futex_wake(rx_waiting, 1)`. **Wake the
//! producers** (after every `head` store and on the receiver's close): the same on `tx_waiting`,
//! waking all. An awake peer therefore costs a fence and a load, never a system call.
//!
//! **Receive**, with the consumer's own position `h`: load `commit@(h & (cap - 1))` with
//! acquire.
//! - 0: load `tail` (acquire). Its position equal to `h`: end of stream if `TAIL_CLOSED` is set,
//!   else empty. Otherwise a record is reserved but not committed (in flight) — or, when the
//!   position is more than `cap` ahead, `EBADMSG`.
//! - else `EBADMSG` unless it is one of the commit words listed under *Records*, its span fits
//!   before the end of the data area, and it ends at or before the `tail` position (re-load
//!   `tail` only when a cached value is not far enough).
//! - a skip record: store `commit@idx = 0`, advance, and look again.
//! - a data record: its payload is `data[idx + 8 .. idx + 8 + len]`; it goes through
//!   *Reassembly* above. When done with it (copied out, or the borrowed slice released), zero
//!   `data[idx .. idx + 8 + len]` (plain writes: commit word, producer word and payload) and
//!   advance. A receive returns once a whole message is delivered (or at the end of the stream,
//!   or when it would wait); the fragments it consumed meanwhile stay in the partial message.
//!
//! Advance: `h = (h + span) & POS_MASK`; store `head = h` with release; wake the producers.
//!
//! **Park** (after optional spinning). Consumer, empty or in flight: `exchange(rx_waiting, 1)`;
//! SeqCst fence; look again (`commit@idx != 0`, or the `TAIL_CLOSED` bit changed since the last
//! look): if so don't sleep, else `futex_wait(rx_waiting, 1, slice)`; then
//! `exchange(rx_waiting, 0)`. Producer, full: `exchange(tx_waiting, 1)`; SeqCst fence; look again
//! (`head` differs from the one that made the ring full, or `FLAG_RX_CLOSED`, or `TAIL_CLOSED`):
//! if so don't sleep, else `futex_wait(tx_waiting, 1, slice)`; an SPSC producer then exchanges
//! `tx_waiting` back to 0 (an MPSC producer leaves it: others may be parked on it). Waits use a
//! shared (non-private) futex, with `slice` at most the liveness interval.
//!
//! **Close**. A sender: `fetch_or(tail, TAIL_CLOSED)` (acq_rel), wake the consumer, wake the
//! producers; an SPSC sender closes when dropped too. Detaching: CAS own pid → 0 in its slot.
//! The receiver: `fetch_or(flags, FLAG_RX_CLOSED)`, CAS `consumer_pid` own pid → 0, wake the
//! producers.
//!
//! **Liveness** (only while parked, once per liveness interval). A pid is dead if
//! `kill(pid, 0)` fails with `ESRCH` or `/proc/<pid>/stat` shows state `Z` or `X`. Consumer:
//! empty, with at least one registered producer and all of them dead: `ECONNRESET`; in flight
//! and some registered producer dead: `ECONNRESET` at once in SPSC, and in MPSC when the same
//! `head` was in flight at the previous check too. Producer, full: `consumer_pid` non-zero and
//! dead: `ECONNRESET`.

use std::mem::{align_of, offset_of, size_of};

/// `"SBCH"` read as a little-endian `u32`.
pub const MAGIC: u32 = u32::from_le_bytes(*b"SBCH");
/// The layout version; a region with another version is refused.
pub const VERSION: u32 = 2;
/// Bytes before the data area.
pub const HEADER_SIZE: usize = 1024;
/// The smallest data area.
pub const MIN_CAPACITY: u32 = 64;
/// The largest data area: 2^28 bytes (256 MiB), so that a record's length fits in
/// [`REC_LEN_MASK`].
pub const MAX_CAPACITY: u32 = 1 << 28;
/// Slots in the producer pid table.
pub const MAX_PRODUCERS: usize = 64;
/// The longest message, fragmented or not: `2^31 - 1` bytes.
pub const MAX_MESSAGE_LEN: usize = 0x7FFF_FFFF;

/// One producer, one consumer.
pub const MODE_SPSC: u32 = 0;
/// Many producers, one consumer.
pub const MODE_MPSC: u32 = 1;

/// `flags` bit: the consumer has closed its end; sends fail with `EPIPE`.
pub const FLAG_RX_CLOSED: u32 = 1;
/// Every `flags` bit this version knows.
pub const FLAGS_KNOWN: u32 = FLAG_RX_CLOSED;

/// Positions count modulo 2^31.
pub const POS_MASK: u32 = 0x7FFF_FFFF;
/// `tail` bit: closed by a sender.
pub const TAIL_CLOSED: u32 = 0x8000_0000;

/// Bytes of a record header.
pub const RECORD_HEADER_SIZE: usize = 8;
/// Records start at multiples of this.
pub const RECORD_ALIGN: usize = 8;
/// Byte offset, inside a record, of its `producer` word (the sender's slot + 1 in MPSC).
pub const OFF_REC_PRODUCER: usize = 4;
/// Commit word bit: the record is complete.
pub const REC_COMMITTED: u32 = 0x8000_0000;
/// Commit word bit: a skip record (padding or abandoned reservation).
pub const REC_SKIP: u32 = 0x4000_0000;
/// Commit word bit: a fragment (exactly `max_record` bytes) of a longer message; the rest
/// follows in later records of the same producer.
pub const REC_MORE: u32 = 0x2000_0000;
/// Commit word bit: an abort record (no payload): the producer gave up the fragmented message it
/// had begun; the consumer drops what it collected of it.
pub const REC_ABORT: u32 = 0x1000_0000;
/// Commit word bits holding the length (bits 0..=27).
pub const REC_LEN_MASK: u32 = 0x0FFF_FFFF;

/// The header as a `#[repr(C)]` struct: the offsets of its fields are the layout.
///
/// It documents and checks the layout; the code reads the words at these offsets atomically
/// instead of through references to this struct.
#[repr(C, align(128))]
#[derive(Debug, Clone, Copy)]
pub struct Header {
    /// [`MAGIC`].
    pub magic: u32,
    /// [`VERSION`].
    pub version: u32,
    /// [`HEADER_SIZE`].
    pub header_size: u32,
    /// Bytes of the data area.
    pub capacity: u32,
    /// The largest payload of one record (`max_record`): `capacity / 2 - 8`. Longer messages
    /// travel in fragments of this size.
    pub max_message: u32,
    /// [`MODE_SPSC`] or [`MODE_MPSC`].
    pub mode: u32,
    /// [`FLAG_RX_CLOSED`].
    pub flags: u32,
    /// The attached consumer's pid, or 0.
    pub consumer_pid: u32,
    /// [`MAX_PRODUCERS`].
    pub max_producers: u32,
    /// Zero.
    pub reserved0: [u32; 23],
    /// The consumer's position.
    pub head: u32,
    /// Zero.
    pub pad1: [u32; 31],
    /// The producers' reservation position, with [`TAIL_CLOSED`].
    pub tail: u32,
    /// Zero.
    pub pad2: [u32; 31],
    /// 1 while the consumer may be parked.
    pub rx_waiting: u32,
    /// Zero.
    pub pad3: [u32; 31],
    /// 1 while a producer may be parked.
    pub tx_waiting: u32,
    /// Zero.
    pub pad4: [u32; 31],
    /// Attached producers' pids, 0 = free.
    pub producer_pids: [u32; MAX_PRODUCERS],
    /// Zero.
    pub reserved1: [u32; 32],
}

/// The header of every record.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct RecordHeader {
    /// 0 until committed; then [`REC_COMMITTED`], maybe one of [`REC_SKIP`], [`REC_MORE`] or
    /// [`REC_ABORT`], and the length.
    pub commit: u32,
    /// MPSC: the sending producer's slot + 1 (`1..=64`); SPSC and skip records: 0.
    pub producer: u32,
}

/// Byte offset of `magic`.
pub const OFF_MAGIC: usize = offset_of!(Header, magic);
/// Byte offset of `version`.
pub const OFF_VERSION: usize = offset_of!(Header, version);
/// Byte offset of `header_size`.
pub const OFF_HEADER_SIZE: usize = offset_of!(Header, header_size);
/// Byte offset of `capacity`.
pub const OFF_CAPACITY: usize = offset_of!(Header, capacity);
/// Byte offset of `max_message` (the largest record payload, `max_record`).
pub const OFF_MAX_MESSAGE: usize = offset_of!(Header, max_message);
/// Byte offset of `mode`.
pub const OFF_MODE: usize = offset_of!(Header, mode);
/// Byte offset of `flags`.
pub const OFF_FLAGS: usize = offset_of!(Header, flags);
/// Byte offset of `consumer_pid`.
pub const OFF_CONSUMER_PID: usize = offset_of!(Header, consumer_pid);
/// Byte offset of `max_producers`.
pub const OFF_MAX_PRODUCERS: usize = offset_of!(Header, max_producers);
/// Byte offset of `head`.
pub const OFF_HEAD: usize = offset_of!(Header, head);
/// Byte offset of `tail`.
pub const OFF_TAIL: usize = offset_of!(Header, tail);
/// Byte offset of `rx_waiting`.
pub const OFF_RX_WAITING: usize = offset_of!(Header, rx_waiting);
/// Byte offset of `tx_waiting`.
pub const OFF_TX_WAITING: usize = offset_of!(Header, tx_waiting);
/// Byte offset of `producer_pids[0]`.
pub const OFF_PRODUCER_PIDS: usize = offset_of!(Header, producer_pids);
/// Byte offset of the data area.
pub const OFF_DATA: usize = HEADER_SIZE;

const _: () = {
    assert!(size_of::<Header>() == HEADER_SIZE);
    assert!(align_of::<Header>() == 128);
    assert!(OFF_MAGIC == 0);
    assert!(OFF_VERSION == 4);
    assert!(OFF_HEADER_SIZE == 8);
    assert!(OFF_CAPACITY == 12);
    assert!(OFF_MAX_MESSAGE == 16);
    assert!(OFF_MODE == 20);
    assert!(OFF_FLAGS == 24);
    assert!(OFF_CONSUMER_PID == 28);
    assert!(OFF_MAX_PRODUCERS == 32);
    assert!(OFF_HEAD == 128);
    assert!(OFF_TAIL == 256);
    assert!(OFF_RX_WAITING == 384);
    assert!(OFF_TX_WAITING == 512);
    assert!(OFF_PRODUCER_PIDS == 640);
    assert!(OFF_PRODUCER_PIDS + 4 * MAX_PRODUCERS == 896);
    assert!(size_of::<RecordHeader>() == RECORD_HEADER_SIZE);
    assert!(offset_of!(RecordHeader, producer) == OFF_REC_PRODUCER);
    assert!(align_of::<RecordHeader>() == 4);
    assert!(HEADER_SIZE % RECORD_ALIGN == 0);
    assert!(MAX_CAPACITY <= POS_MASK / 2 + 1); // capacity divides 2^31
    // A skip record's length (span - 8) reaches capacity - 8; a payload, capacity / 2 - 8.
    assert!(MAX_CAPACITY as usize - RECORD_HEADER_SIZE <= REC_LEN_MASK as usize);
    assert!(REC_LEN_MASK & (REC_COMMITTED | REC_SKIP | REC_MORE | REC_ABORT) == 0);
    assert!(MAX_MESSAGE_LEN == POS_MASK as usize);
    assert!(MAGIC == 0x4843_4253);
};

/// How [`TABLE`] writes a value in generated code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Radix {
    /// `1024`
    Decimal,
    /// `0x8000_0000`
    Hex,
}

/// Every constant and offset of the layout by name, with its radix and a one-line description:
/// what [`typescript`] turns into `ts/channel/layout.ts`.
pub const TABLE: &[(&str, u32, Radix, &str)] = &[
    (
        "MAGIC",
        MAGIC,
        Radix::Hex,
        "`\"SBCH\"` read as a little-endian u32.",
    ),
    (
        "VERSION",
        VERSION,
        Radix::Decimal,
        "The layout version; a region with another version is refused.",
    ),
    (
        "HEADER_SIZE",
        HEADER_SIZE as u32,
        Radix::Decimal,
        "Bytes before the data area.",
    ),
    (
        "MIN_CAPACITY",
        MIN_CAPACITY,
        Radix::Decimal,
        "The smallest data area.",
    ),
    (
        "MAX_CAPACITY",
        MAX_CAPACITY,
        Radix::Decimal,
        "The largest data area: 2^28 bytes.",
    ),
    (
        "MAX_PRODUCERS",
        MAX_PRODUCERS as u32,
        Radix::Decimal,
        "Slots in the producer pid table.",
    ),
    (
        "MAX_MESSAGE_LEN",
        MAX_MESSAGE_LEN as u32,
        Radix::Hex,
        "The longest message, fragmented or not.",
    ),
    (
        "MODE_SPSC",
        MODE_SPSC,
        Radix::Decimal,
        "One producer, one consumer.",
    ),
    (
        "MODE_MPSC",
        MODE_MPSC,
        Radix::Decimal,
        "Many producers, one consumer.",
    ),
    (
        "FLAG_RX_CLOSED",
        FLAG_RX_CLOSED,
        Radix::Decimal,
        "`flags` bit: the consumer has closed its end.",
    ),
    (
        "POS_MASK",
        POS_MASK,
        Radix::Hex,
        "Positions count modulo 2^31.",
    ),
    (
        "TAIL_CLOSED",
        TAIL_CLOSED,
        Radix::Hex,
        "`tail` bit: closed by a sender.",
    ),
    (
        "RECORD_HEADER_SIZE",
        RECORD_HEADER_SIZE as u32,
        Radix::Decimal,
        "Bytes of a record header.",
    ),
    (
        "RECORD_ALIGN",
        RECORD_ALIGN as u32,
        Radix::Decimal,
        "Records start at multiples of this.",
    ),
    (
        "OFF_REC_PRODUCER",
        OFF_REC_PRODUCER as u32,
        Radix::Decimal,
        "Byte offset of a record's producer word.",
    ),
    (
        "REC_COMMITTED",
        REC_COMMITTED,
        Radix::Hex,
        "Commit word bit: the record is complete.",
    ),
    (
        "REC_SKIP",
        REC_SKIP,
        Radix::Hex,
        "Commit word bit: a skip record (alone: a reservation mark).",
    ),
    (
        "REC_MORE",
        REC_MORE,
        Radix::Hex,
        "Commit word bit: a fragment; more of the message follow.",
    ),
    (
        "REC_ABORT",
        REC_ABORT,
        Radix::Hex,
        "Commit word bit: the producer gave up its fragmented message.",
    ),
    (
        "REC_LEN_MASK",
        REC_LEN_MASK,
        Radix::Hex,
        "Commit word bits holding the length.",
    ),
    (
        "OFF_MAGIC",
        OFF_MAGIC as u32,
        Radix::Decimal,
        "Byte offset of `magic`.",
    ),
    (
        "OFF_VERSION",
        OFF_VERSION as u32,
        Radix::Decimal,
        "Byte offset of `version`.",
    ),
    (
        "OFF_HEADER_SIZE",
        OFF_HEADER_SIZE as u32,
        Radix::Decimal,
        "Byte offset of `header_size`.",
    ),
    (
        "OFF_CAPACITY",
        OFF_CAPACITY as u32,
        Radix::Decimal,
        "Byte offset of `capacity`.",
    ),
    (
        "OFF_MAX_MESSAGE",
        OFF_MAX_MESSAGE as u32,
        Radix::Decimal,
        "Byte offset of `max_message` (the largest record payload).",
    ),
    (
        "OFF_MODE",
        OFF_MODE as u32,
        Radix::Decimal,
        "Byte offset of `mode`.",
    ),
    (
        "OFF_FLAGS",
        OFF_FLAGS as u32,
        Radix::Decimal,
        "Byte offset of `flags`.",
    ),
    (
        "OFF_CONSUMER_PID",
        OFF_CONSUMER_PID as u32,
        Radix::Decimal,
        "Byte offset of `consumer_pid`.",
    ),
    (
        "OFF_MAX_PRODUCERS",
        OFF_MAX_PRODUCERS as u32,
        Radix::Decimal,
        "Byte offset of `max_producers`.",
    ),
    (
        "OFF_HEAD",
        OFF_HEAD as u32,
        Radix::Decimal,
        "Byte offset of `head`.",
    ),
    (
        "OFF_TAIL",
        OFF_TAIL as u32,
        Radix::Decimal,
        "Byte offset of `tail`.",
    ),
    (
        "OFF_RX_WAITING",
        OFF_RX_WAITING as u32,
        Radix::Decimal,
        "Byte offset of `rx_waiting`.",
    ),
    (
        "OFF_TX_WAITING",
        OFF_TX_WAITING as u32,
        Radix::Decimal,
        "Byte offset of `tx_waiting`.",
    ),
    (
        "OFF_PRODUCER_PIDS",
        OFF_PRODUCER_PIDS as u32,
        Radix::Decimal,
        "Byte offset of `producer_pids[0]`.",
    ),
    (
        "OFF_DATA",
        OFF_DATA as u32,
        Radix::Decimal,
        "Byte offset of the data area.",
    ),
];

/// The TypeScript module `ts/channel/layout.ts`: every [`TABLE`] entry as an exported constant,
/// and the two span helpers. `make gen-layout` writes it; a test fails when the checked-in file
/// differs.
pub fn typescript() -> String {
    use std::fmt::Write;
    let mut out = String::from(
        "// Generated from crates/shared-buffer/src/channel/layout.rs by `make gen-layout`: do \
         not edit.\n\n/**\n * The channel's byte layout: the constants and offsets of \
         `layout.rs`, whose docs (and\n * `docs/channel.md`) describe every word and the \
         protocol.\n *\n * @module\n */\n",
    );
    for &(name, value, radix, doc) in TABLE {
        let value = match radix {
            Radix::Decimal => value.to_string(),
            Radix::Hex => {
                let hex = format!("{value:08x}");
                format!("0x{}_{}", &hex[..4], &hex[4..])
            }
        };
        // Writing to a String cannot fail.
        let _ = write!(out, "\n/** {doc} */\nexport const {name} = {value};\n");
    }
    out.push_str(
        "\n/** The largest payload of one record: `capacity / 2 - 8`. */\n\
         export function maxRecord(capacity: number): number {\n  \
         return capacity / 2 - RECORD_HEADER_SIZE;\n}\n\n\
         /** The bytes a record with a `len`-byte payload occupies. */\n\
         export function recordSpan(len: number): number {\n  \
         return RECORD_HEADER_SIZE + ((len + 7) & ~7);\n}\n",
    );
    out
}

/// The region size for a data area of `capacity` bytes: header plus data.
pub const fn region_size(capacity: u32) -> usize {
    HEADER_SIZE.saturating_add(capacity as usize)
}

/// The largest payload of one record of a channel of `capacity` bytes: `capacity / 2 - 8`.
/// Longer messages are sent as fragments of exactly this size (the last one shorter).
pub const fn max_record(capacity: u32) -> usize {
    capacity as usize / 2 - RECORD_HEADER_SIZE
}

/// The bytes a record with a `len`-byte payload occupies: header plus payload rounded up to 8.
pub const fn record_span(len: usize) -> usize {
    RECORD_HEADER_SIZE + len.div_ceil(RECORD_ALIGN) * RECORD_ALIGN
}

/// True if `capacity` is a valid data area size.
pub const fn capacity_ok(capacity: u32) -> bool {
    capacity.is_power_of_two() && capacity >= MIN_CAPACITY && capacity <= MAX_CAPACITY
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_names_are_unique_and_match() {
        let mut names: Vec<_> = TABLE.iter().map(|e| e.0).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), TABLE.len());
        let get = |n: &str| TABLE.iter().find(|e| e.0 == n).map(|e| e.1);
        assert_eq!(get("OFF_TAIL"), Some(256));
        assert_eq!(get("MAGIC"), Some(0x4843_4253));
        assert_eq!(get("REC_MORE"), Some(0x2000_0000));
        assert_eq!(get("REC_ABORT"), Some(0x1000_0000));
        assert_eq!(get("REC_LEN_MASK"), Some(0x0FFF_FFFF));
        assert_eq!(get("MAX_CAPACITY"), Some(1 << 28));
        assert_eq!(get("MAX_MESSAGE_LEN"), Some(0x7FFF_FFFF));
        assert_eq!(get("OFF_REC_PRODUCER"), Some(4));
    }

    #[test]
    fn spans_and_limits() {
        assert_eq!(record_span(0), 8);
        assert_eq!(record_span(1), 16);
        assert_eq!(record_span(8), 16);
        assert_eq!(record_span(9), 24);
        assert_eq!(max_record(64), 24);
        assert_eq!(record_span(max_record(64)), 32);
        assert_eq!(max_record(MAX_CAPACITY), (1 << 27) - 8);
        assert!(capacity_ok(64) && capacity_ok(1 << 28));
        assert!(!capacity_ok(32) && !capacity_ok(96) && !capacity_ok(1 << 29));
        assert!(!capacity_ok(1 << 30) && !capacity_ok(1 << 31));
    }
}
