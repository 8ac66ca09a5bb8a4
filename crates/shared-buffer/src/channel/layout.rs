//! The channel's byte layout: the one definition of where every word lives, checked at compile
//! time below and written into `ts/channel/layout.ts` for the TypeScript implementation
//! ([`typescript`], `make generate`). [`TABLE`] lists every constant and offset by name.
//!
//! What follows is `docs/channel.md`: the channel's use, and its protocol word by word.
//!
#![doc = include_str!("../../../../docs/channel.md")]

use std::mem::{align_of, offset_of, size_of};

/// `"SBCH"` read as a little-endian `u32`.
pub const MAGIC: u32 = u32::from_le_bytes(*b"SBCH");
/// The layout version; a region with another version is refused.
pub const VERSION: u32 = 9;
/// Bytes before the data area.
pub const HEADER_SIZE: usize = 1024;
/// The smallest data area.
pub const MIN_CAPACITY: u32 = 64;
/// The largest data area: 2^28 bytes (256 MiB), so that a record's length (at most half of it)
/// fits in [`REC_LEN_MASK`].
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

/// `rx_waiting` value: the consumer may be parked on the word.
pub const RX_PARKED: u32 = 1;
/// `rx_waiting` value: the consumer closed the channel (after setting [`FLAG_RX_CLOSED`]). It
/// is final: wakers clear only [`RX_PARKED`] (CAS 1 -> 0), so every producer's wake-up after a
/// commit sees it.
pub const RX_CLOSED: u32 = 2;

/// Positions count modulo 2^31.
pub const POS_MASK: u32 = 0x7FFF_FFFF;
/// `tail` bit: closed by a sender.
pub const TAIL_CLOSED: u32 = 0x8000_0000;
/// Pid word bit (`consumer_pid`, `producer_pids`): the endpoint went without closing while its
/// process lives on (a JavaScript Worker ended, or the engine collected an endpoint dropped
/// without `close()`; the bindings' native module marks it at the Worker's teardown, or when the
/// mapping goes). With it the word is no pid, so every peer takes the endpoint for dead, as it
/// would a dead process's: a receiver takes over, a sender's slot is reclaimed.
pub const PID_GONE: u32 = 0x8000_0000;
/// `tail` bits that a sender sets (atomic or) when it finds `tail` gone back over records not
/// read yet (a committed record where it has just reserved): a `tail` off the record boundary,
/// which every sender and the receiver refuse as corrupt (`EBADMSG`), so that no later
/// reservation lands inside those records.
pub const TAIL_BROKEN: u32 = 4;

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
/// Commit word bit: a fragment that continues a message (every fragment but the first). A
/// consumer that did not collect the message's beginning (its first fragments went to a consumer
/// that died) drops such records instead of taking the rest for a message.
pub const REC_CONT: u32 = 0x0800_0000;
/// Every commit word bit that names a record's kind: a committed record with none of them is a
/// whole message.
pub const REC_KINDS: u32 = REC_SKIP | REC_MORE | REC_ABORT | REC_CONT;
/// Commit word bits holding the length (bits 0..=26).
pub const REC_LEN_MASK: u32 = 0x07FF_FFFF;
/// A reservation mark ([`REC_SKIP`] without [`REC_COMMITTED`]) holds its producer's slot in
/// these bits (24..=29) ...
pub const MARK_SLOT_MASK: u32 = 0x3F00_0000;
/// ... shifted by this much ...
pub const MARK_SLOT_SHIFT: u32 = 24;
/// ... and its span in these (0..=23), as `(span - 8) / 8`.
pub const MARK_UNITS_MASK: u32 = 0x00FF_FFFF;
/// What the consumer writes, by CAS from 0, over each 8-byte word of a reservation it takes back
/// from a sender that did not mark it in time (a sweep): a skip record of 8 bytes, so that the
/// sender's own CAS of its mark fails, and a consumer taking over steps over it.
pub const SWEPT: u32 = REC_COMMITTED | REC_SKIP;
/// What the consumer writes, by CAS, over the mark of a reservation it takes from a dead (or
/// stale) producer, with the span it takes in the bits of [`MARK_UNITS_MASK`] as a mark holds
/// it: it stands there until the consumer has zeroed the record, so a consumer killed in between
/// leaves a word that says how far the record goes, and the next one finishes the job when it
/// attaches. (A [`SWEPT`] word there read as a skip record of 8 bytes, and the next consumer
/// stepped onto the dead producer's payload.) As a commit word it is a skip record with the abort
/// bit, which no producer writes: seen anywhere but at `head` when a consumer attaches, it is
/// corrupt.
pub const DROPPING: u32 = REC_COMMITTED | REC_SKIP | REC_ABORT;

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
    /// The attached consumer's pid, or 0; with [`PID_GONE`], an endpoint of it that went.
    pub consumer_pid: u32,
    /// [`MAX_PRODUCERS`].
    pub max_producers: u32,
    /// Zero. The TypeScript endpoints write a token here for a moment, and read it through
    /// another mapping of the same name, to tell whether two mappings are one segment.
    pub reserved0: u32,
    /// The pid namespace of the channel's endpoints (the inode number of `/proc/self/ns/pid`):
    /// 0 until the first endpoint attaches, which stores its own (or leaves 0 where it cannot read
    /// it). Peers are told alive or dead by pid, which holds only within one pid namespace: an
    /// open or attach from another one is refused (`EXDEV`).
    pub pid_namespace: u32,
    /// How many times the consumer began or ended a sweep (it takes back reservations nobody
    /// marked in time): odd while it sweeps. A sender whose mark lands while it is odd, or after
    /// it changed, checks that its reservation was not taken.
    pub sweeps: u32,
    /// 1 while the consumer knows of a producer that died with none attached since (its
    /// `ECONNRESET` once the ring is empty and no producer is left), else 0. Written by the
    /// consumer alone, when that changes; a consumer taking over from a killed one starts from
    /// it, as from the orphans, so that a death its predecessor found and whose records it passed
    /// is not forgotten. (Before version 9 the successor knew only the orphans, and waited for
    /// good where its predecessor would have failed.)
    pub bereaved: u32,
    /// Zero.
    pub pad0: [u32; 19],
    /// The consumer's position.
    pub head: u32,
    /// The position up to which the consumer is zeroing what it consumed: stored before it
    /// zeroes records past `head`, then `head` follows. Equal to `head` between receives; read
    /// only by a consumer taking over from a dead one.
    pub zeroing: u32,
    /// Zero.
    pub pad1: [u32; 30],
    /// The producers' reservation position, with [`TAIL_CLOSED`].
    pub tail: u32,
    /// Zero.
    pub pad2: [u32; 31],
    /// [`RX_PARKED`] while the consumer may be parked; [`RX_CLOSED`] once it closed.
    pub rx_waiting: u32,
    /// Zero.
    pub pad3: [u32; 31],
    /// 1 while a producer may be parked.
    pub tx_waiting: u32,
    /// Zero.
    pub pad4: [u32; 31],
    /// Attached producers' pids, 0 = free; with [`PID_GONE`], an endpoint of it that went.
    pub producer_pids: [u32; MAX_PRODUCERS],
    /// The consumer's record of the sender slots it reclaimed from dead processes whose records
    /// are still ahead of `head` (*orphans*): [`ORPHAN_ENTRIES`] pairs of the slot + 1 (0: an
    /// empty entry) and the `tail` position loaded when the slot was reclaimed, before which all
    /// of that sender's records lie. Written by the consumer alone, before it frees the slot; a
    /// consumer taking over from a killed one reads it when it attaches, so that it knows those
    /// records for a dead sender's (it took a reservation mark there for a stale one, and
    /// stepped onto the payload; with one sender it waited for a record that would never come).
    pub orphans: [u32; 2 * ORPHAN_ENTRIES],
}

/// Entries in [`Header::orphans`]: dead senders whose records are still ahead at once. A dead
/// sender found when all are taken (the consumer first empties those that are not its own
/// orphans', a peer's) keeps its slot, its dead pid in it, until the consumer passes its records
/// or an entry frees up; the consumer steps over its marks all the same, and a consumer taking
/// over finds it dead.
pub const ORPHAN_ENTRIES: usize = 16;

/// The header of every record.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct RecordHeader {
    /// 0 until committed; then [`REC_COMMITTED`], maybe [`REC_SKIP`], [`REC_ABORT`], or
    /// [`REC_MORE`] and [`REC_CONT`] (a fragment), and the length.
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
/// Byte offset of `pid_namespace`.
pub const OFF_PID_NAMESPACE: usize = offset_of!(Header, pid_namespace);
/// Byte offset of `sweeps`.
pub const OFF_SWEEPS: usize = offset_of!(Header, sweeps);
/// Byte offset of `bereaved`.
pub const OFF_BEREAVED: usize = offset_of!(Header, bereaved);
/// Byte offset of `head`.
pub const OFF_HEAD: usize = offset_of!(Header, head);
/// Byte offset of `zeroing`.
pub const OFF_ZEROING: usize = offset_of!(Header, zeroing);
/// Byte offset of `tail`.
pub const OFF_TAIL: usize = offset_of!(Header, tail);
/// Byte offset of `rx_waiting`.
pub const OFF_RX_WAITING: usize = offset_of!(Header, rx_waiting);
/// Byte offset of `tx_waiting`.
pub const OFF_TX_WAITING: usize = offset_of!(Header, tx_waiting);
/// Byte offset of `producer_pids[0]`.
pub const OFF_PRODUCER_PIDS: usize = offset_of!(Header, producer_pids);
/// Byte offset of `orphans[0]`.
pub const OFF_ORPHANS: usize = offset_of!(Header, orphans);
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
    assert!(OFF_PID_NAMESPACE == 40);
    assert!(OFF_SWEEPS == 44);
    assert!(OFF_BEREAVED == 48);
    assert!(OFF_HEAD == 128);
    assert!(OFF_ZEROING == 132);
    assert!(OFF_TAIL == 256);
    assert!(OFF_RX_WAITING == 384);
    assert!(OFF_TX_WAITING == 512);
    assert!(OFF_PRODUCER_PIDS == 640);
    assert!(OFF_PRODUCER_PIDS + 4 * MAX_PRODUCERS == 896);
    assert!(OFF_ORPHANS == 896);
    assert!(OFF_ORPHANS + 8 * ORPHAN_ENTRIES == HEADER_SIZE);
    assert!(size_of::<RecordHeader>() == RECORD_HEADER_SIZE);
    assert!(offset_of!(RecordHeader, producer) == OFF_REC_PRODUCER);
    assert!(align_of::<RecordHeader>() == 4);
    assert!(HEADER_SIZE % RECORD_ALIGN == 0);
    assert!(MAX_CAPACITY <= POS_MASK / 2 + 1); // capacity divides 2^31
    // A payload is at most capacity / 2 - 8 bytes; so is a skip record's length (span - 8): a
    // skip fills the end of the ring only when a record of at most capacity / 2 does not fit.
    assert!(MAX_CAPACITY as usize / 2 - RECORD_HEADER_SIZE <= REC_LEN_MASK as usize);
    assert!(REC_LEN_MASK & (REC_COMMITTED | REC_KINDS) == 0);
    // A mark's span in 8-byte units, and its slot, fit beside REC_SKIP.
    assert!(
        (MAX_CAPACITY as usize / 2 - RECORD_HEADER_SIZE) / RECORD_ALIGN <= MARK_UNITS_MASK as usize
    );
    assert!((MAX_PRODUCERS as u32 - 1) << MARK_SLOT_SHIFT == MARK_SLOT_MASK);
    assert!(MARK_SLOT_MASK & (MARK_UNITS_MASK | REC_SKIP | REC_COMMITTED) == 0);
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
        "RX_PARKED",
        RX_PARKED,
        Radix::Decimal,
        "`rx_waiting` value: the consumer may be parked on the word.",
    ),
    (
        "RX_CLOSED",
        RX_CLOSED,
        Radix::Decimal,
        "`rx_waiting` value: the consumer closed the channel; final.",
    ),
    (
        "POS_MASK",
        POS_MASK,
        Radix::Hex,
        "Positions count modulo 2^31.",
    ),
    (
        "PID_GONE",
        PID_GONE,
        Radix::Hex,
        "Pid word bit: the endpoint went without closing while its process lives on (its Worker ended, or the engine collected it); no pid, so peers take it for dead.",
    ),
    (
        "TAIL_CLOSED",
        TAIL_CLOSED,
        Radix::Hex,
        "`tail` bit: closed by a sender.",
    ),
    (
        "TAIL_BROKEN",
        TAIL_BROKEN,
        Radix::Decimal,
        "`tail` bits a sender sets when it finds `tail` gone back over records not read yet: off the record boundary, refused as corrupt.",
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
        "REC_CONT",
        REC_CONT,
        Radix::Hex,
        "Commit word bit: a fragment that continues a message (not its first).",
    ),
    (
        "REC_KINDS",
        REC_KINDS,
        Radix::Hex,
        "Commit word bits naming a record's kind; none: a whole message.",
    ),
    (
        "REC_LEN_MASK",
        REC_LEN_MASK,
        Radix::Hex,
        "Commit word bits holding the length.",
    ),
    (
        "MARK_SLOT_MASK",
        MARK_SLOT_MASK,
        Radix::Hex,
        "Reservation mark bits holding the producer's slot.",
    ),
    (
        "MARK_SLOT_SHIFT",
        MARK_SLOT_SHIFT,
        Radix::Decimal,
        "How far a reservation mark's slot is shifted.",
    ),
    (
        "MARK_UNITS_MASK",
        MARK_UNITS_MASK,
        Radix::Hex,
        "Reservation mark bits holding `(span - 8) / 8`.",
    ),
    (
        "SWEPT",
        SWEPT,
        Radix::Hex,
        "A word of a reservation the consumer took back: a skip record of 8 bytes.",
    ),
    (
        "DROPPING",
        DROPPING,
        Radix::Hex,
        "A taken mark, until its record is zeroed; its span as a mark holds it.",
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
        "OFF_PID_NAMESPACE",
        OFF_PID_NAMESPACE as u32,
        Radix::Decimal,
        "Byte offset of `pid_namespace`.",
    ),
    (
        "OFF_SWEEPS",
        OFF_SWEEPS as u32,
        Radix::Decimal,
        "Byte offset of `sweeps`.",
    ),
    (
        "OFF_BEREAVED",
        OFF_BEREAVED as u32,
        Radix::Decimal,
        "Byte offset of `bereaved`.",
    ),
    (
        "OFF_HEAD",
        OFF_HEAD as u32,
        Radix::Decimal,
        "Byte offset of `head`.",
    ),
    (
        "OFF_ZEROING",
        OFF_ZEROING as u32,
        Radix::Decimal,
        "Byte offset of `zeroing`.",
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
        "OFF_ORPHANS",
        OFF_ORPHANS as u32,
        Radix::Decimal,
        "Byte offset of `orphans[0]`: pairs of a dead sender's slot + 1 and its records' end.",
    ),
    (
        "ORPHAN_ENTRIES",
        ORPHAN_ENTRIES as u32,
        Radix::Decimal,
        "Entries in `orphans`.",
    ),
    (
        "OFF_DATA",
        OFF_DATA as u32,
        Radix::Decimal,
        "Byte offset of the data area.",
    ),
];

/// The TypeScript module `ts/channel/layout.ts`: every [`TABLE`] entry as an exported constant,
/// and the two span helpers. `make generate` writes it; a test fails when the checked-in file
/// differs.
pub fn typescript() -> String {
    use std::fmt::Write;
    let mut out = String::from(
        "// Generated from crates/shared-buffer/src/channel/layout.rs by `make generate`: do \
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
         return RECORD_HEADER_SIZE + ((len + 7) & ~7);\n}\n\n\
         /** The reservation mark of producer slot `slot` (0 in SPSC) over `span` bytes. */\n\
         export function markWord(slot: number, span: number): number {\n  \
         return REC_SKIP | (slot << MARK_SLOT_SHIFT) | ((span - RECORD_HEADER_SIZE) >>> 3);\n}\n\n\
         /** The word over a taken mark's record of `span` bytes until it is zeroed. */\n\
         export function droppingWord(span: number): number {\n  \
         return DROPPING | ((span - RECORD_HEADER_SIZE) >>> 3);\n}\n\n\
         /** The span of `word` if it is a {@linkcode droppingWord}, else 0. */\n\
         export function droppingSpan(word: number): number {\n  \
         return (word & ~MARK_UNITS_MASK) === (DROPPING | 0)\n    \
         ? ((word & MARK_UNITS_MASK) << 3) + RECORD_HEADER_SIZE\n    : 0;\n}\n",
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

/// The reservation mark of producer slot `slot` (0 in SPSC) over `span` bytes (a multiple of 8,
/// at most `capacity / 2`): [`REC_SKIP`], the slot, and the span in 8-byte units.
pub const fn mark_word(slot: usize, span: u32) -> u32 {
    REC_SKIP
        | ((slot as u32) << MARK_SLOT_SHIFT)
        | ((span - RECORD_HEADER_SIZE as u32) / RECORD_ALIGN as u32)
}

/// True if commit word `word` is a reservation mark: [`REC_SKIP`] without [`REC_COMMITTED`].
pub const fn is_mark(word: u32) -> bool {
    word & (REC_COMMITTED | REC_SKIP) == REC_SKIP
}

/// The span of the reservation mark `word`.
pub const fn mark_span(word: u32) -> u32 {
    (word & MARK_UNITS_MASK) * RECORD_ALIGN as u32 + RECORD_HEADER_SIZE as u32
}

/// The producer slot of the reservation mark `word`.
pub const fn mark_slot(word: u32) -> usize {
    ((word & MARK_SLOT_MASK) >> MARK_SLOT_SHIFT) as usize
}

/// The word that stands over a taken mark's record of `span` bytes until it is zeroed:
/// [`DROPPING`] and the span in 8-byte units, as [`mark_word`] holds it.
pub const fn dropping_word(span: u32) -> u32 {
    DROPPING | ((span - RECORD_HEADER_SIZE as u32) / RECORD_ALIGN as u32)
}

/// The span of `word` if it is a [`dropping_word`].
pub const fn dropping_span(word: u32) -> Option<u32> {
    if word & !MARK_UNITS_MASK == DROPPING {
        Some(mark_span(word))
    } else {
        None
    }
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
        assert_eq!(get("REC_CONT"), Some(0x0800_0000));
        assert_eq!(get("REC_KINDS"), Some(0x7800_0000));
        assert_eq!(get("REC_LEN_MASK"), Some(0x07FF_FFFF));
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

    #[test]
    fn marks_round_trip() {
        for (slot, span) in [(0, 8), (63, 8), (5, 16), (63, MAX_CAPACITY / 2)] {
            let word = mark_word(slot, span);
            assert_eq!(word & (REC_COMMITTED | REC_SKIP), REC_SKIP);
            assert_eq!((mark_slot(word), mark_span(word)), (slot, span));
        }
    }
}
