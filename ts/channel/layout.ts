// Generated from crates/shared-buffer/src/channel/layout.rs by `make generate`: do not edit.

/**
 * The channel's byte layout: the constants and offsets of `layout.rs`, whose docs (and
 * `docs/channel.md`) describe every word and the protocol.
 *
 * @module
 */

/** `"SBCH"` read as a little-endian u32. */
export const MAGIC = 0x4843_4253;

/** The layout version; a region with another version is refused. */
export const VERSION = 9;

/** Bytes before the data area. */
export const HEADER_SIZE = 1024;

/** The smallest data area. */
export const MIN_CAPACITY = 64;

/** The largest data area: 2^28 bytes. */
export const MAX_CAPACITY = 268435456;

/** Slots in the producer pid table. */
export const MAX_PRODUCERS = 64;

/** The longest message, fragmented or not. */
export const MAX_MESSAGE_LEN = 0x7fff_ffff;

/** One producer, one consumer. */
export const MODE_SPSC = 0;

/** Many producers, one consumer. */
export const MODE_MPSC = 1;

/** `flags` bit: the consumer has closed its end. */
export const FLAG_RX_CLOSED = 1;

/** `rx_waiting` value: the consumer may be parked on the word. */
export const RX_PARKED = 1;

/** `rx_waiting` value: the consumer closed the channel; final. */
export const RX_CLOSED = 2;

/** Positions count modulo 2^31. */
export const POS_MASK = 0x7fff_ffff;

/** Pid word bit: the endpoint went without closing while its process lives on (its Worker ended, or the engine collected it); no pid, so peers take it for dead. */
export const PID_GONE = 0x8000_0000;

/** `tail` bit: closed by a sender. */
export const TAIL_CLOSED = 0x8000_0000;

/** `tail` bits a sender sets when it finds `tail` gone back over records not read yet: off the record boundary, refused as corrupt. */
export const TAIL_BROKEN = 4;

/** Bytes of a record header. */
export const RECORD_HEADER_SIZE = 8;

/** Records start at multiples of this. */
export const RECORD_ALIGN = 8;

/** Byte offset of a record's producer word. */
export const OFF_REC_PRODUCER = 4;

/** Commit word bit: the record is complete. */
export const REC_COMMITTED = 0x8000_0000;

/** Commit word bit: a skip record (alone: a reservation mark). */
export const REC_SKIP = 0x4000_0000;

/** Commit word bit: a fragment; more of the message follow. */
export const REC_MORE = 0x2000_0000;

/** Commit word bit: the producer gave up its fragmented message. */
export const REC_ABORT = 0x1000_0000;

/** Commit word bit: a fragment that continues a message (not its first). */
export const REC_CONT = 0x0800_0000;

/** Commit word bits naming a record's kind; none: a whole message. */
export const REC_KINDS = 0x7800_0000;

/** Commit word bits holding the length. */
export const REC_LEN_MASK = 0x07ff_ffff;

/** Reservation mark bits holding the producer's slot. */
export const MARK_SLOT_MASK = 0x3f00_0000;

/** How far a reservation mark's slot is shifted. */
export const MARK_SLOT_SHIFT = 24;

/** Reservation mark bits holding `(span - 8) / 8`. */
export const MARK_UNITS_MASK = 0x00ff_ffff;

/** A word of a reservation the consumer took back: a skip record of 8 bytes. */
export const SWEPT = 0xc000_0000;

/** A taken mark, until its record is zeroed; its span as a mark holds it. */
export const DROPPING = 0xd000_0000;

/** Byte offset of `magic`. */
export const OFF_MAGIC = 0;

/** Byte offset of `version`. */
export const OFF_VERSION = 4;

/** Byte offset of `header_size`. */
export const OFF_HEADER_SIZE = 8;

/** Byte offset of `capacity`. */
export const OFF_CAPACITY = 12;

/** Byte offset of `max_message` (the largest record payload). */
export const OFF_MAX_MESSAGE = 16;

/** Byte offset of `mode`. */
export const OFF_MODE = 20;

/** Byte offset of `flags`. */
export const OFF_FLAGS = 24;

/** Byte offset of `consumer_pid`. */
export const OFF_CONSUMER_PID = 28;

/** Byte offset of `max_producers`. */
export const OFF_MAX_PRODUCERS = 32;

/** Byte offset of `pid_namespace`. */
export const OFF_PID_NAMESPACE = 40;

/** Byte offset of `sweeps`. */
export const OFF_SWEEPS = 44;

/** Byte offset of `bereaved`. */
export const OFF_BEREAVED = 48;

/** Byte offset of `head`. */
export const OFF_HEAD = 128;

/** Byte offset of `zeroing`. */
export const OFF_ZEROING = 132;

/** Byte offset of `tail`. */
export const OFF_TAIL = 256;

/** Byte offset of `rx_waiting`. */
export const OFF_RX_WAITING = 384;

/** Byte offset of `tx_waiting`. */
export const OFF_TX_WAITING = 512;

/** Byte offset of `producer_pids[0]`. */
export const OFF_PRODUCER_PIDS = 640;

/** Byte offset of `orphans[0]`: pairs of a dead sender's slot + 1 and its records' end. */
export const OFF_ORPHANS = 896;

/** Entries in `orphans`. */
export const ORPHAN_ENTRIES = 16;

/** Byte offset of the data area. */
export const OFF_DATA = 1024;

/** The largest payload of one record: `capacity / 2 - 8`. */
export function maxRecord(capacity: number): number {
  return capacity / 2 - RECORD_HEADER_SIZE;
}

/** The bytes a record with a `len`-byte payload occupies. */
export function recordSpan(len: number): number {
  return RECORD_HEADER_SIZE + ((len + 7) & ~7);
}

/** The reservation mark of producer slot `slot` (0 in SPSC) over `span` bytes. */
export function markWord(slot: number, span: number): number {
  return REC_SKIP | (slot << MARK_SLOT_SHIFT) | ((span - RECORD_HEADER_SIZE) >>> 3);
}

/** The word over a taken mark's record of `span` bytes until it is zeroed. */
export function droppingWord(span: number): number {
  return DROPPING | ((span - RECORD_HEADER_SIZE) >>> 3);
}

/** The span of `word` if it is a {@linkcode droppingWord}, else 0. */
export function droppingSpan(word: number): number {
  return (word & ~MARK_UNITS_MASK) === (DROPPING | 0)
    ? ((word & MARK_UNITS_MASK) << 3) + RECORD_HEADER_SIZE
    : 0;
}
