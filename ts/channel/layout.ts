/**
 * The channel's byte layout, copied from `src/channel/layout.rs`, which documents every word and
 * the protocol. `tests/channel.test.ts` checks each constant here against the native library's
 * table (`sb_channel_constant`), so the two copies cannot drift apart.
 *
 * @module
 */

/** `"SBCH"` as a little-endian u32. */
export const MAGIC = 0x4843_4253;
/** The layout version. */
export const VERSION = 1;
/** Bytes before the data area. */
export const HEADER_SIZE = 1024;
/** The smallest data area. */
export const MIN_CAPACITY = 64;
/** The largest data area. */
export const MAX_CAPACITY = 1 << 28;
/** Producer pid slots. */
export const MAX_PRODUCERS = 64;
/** One producer, one consumer. */
export const MODE_SPSC = 0;
/** Many producers, one consumer. */
export const MODE_MPSC = 1;
/** `flags` bit: the consumer has closed its end. */
export const FLAG_RX_CLOSED = 1;
/** Positions count modulo 2^31. */
export const POS_MASK = 0x7fff_ffff;
/** `tail` bit: closed by a sender. */
export const TAIL_CLOSED = 0x8000_0000;
/** Bytes of a record header. */
export const RECORD_HEADER_SIZE = 8;
/** Commit word: the record is complete. */
export const REC_COMMITTED = 0x8000_0000;
/** Commit word: a skip record. */
export const REC_SKIP = 0x4000_0000;
/** Commit word: a fragment; more of the same message follow from the same producer. */
export const REC_MORE = 0x2000_0000;
/** Commit word: the producer gave up its fragmented message; drop what it sent of it. */
export const REC_ABORT = 0x1000_0000;
/** Commit word: the payload length. */
export const REC_LEN_MASK = 0x0fff_ffff;
/** The longest message, fragmented or not. */
export const MAX_MESSAGE_LEN = 0x7fff_ffff;

/** Byte offsets of the header words. */
export const OFF_MAGIC = 0;
export const OFF_VERSION = 4;
export const OFF_HEADER_SIZE = 8;
export const OFF_CAPACITY = 12;
export const OFF_MAX_MESSAGE = 16;
export const OFF_MODE = 20;
export const OFF_FLAGS = 24;
export const OFF_CONSUMER_PID = 28;
export const OFF_MAX_PRODUCERS = 32;
export const OFF_HEAD = 128;
export const OFF_TAIL = 256;
export const OFF_RX_WAITING = 384;
export const OFF_TX_WAITING = 512;
export const OFF_PRODUCER_PIDS = 640;
export const OFF_DATA = HEADER_SIZE;

/** The largest payload of one record: `capacity / 2 - 8`. */
export function maxRecord(capacity: number): number {
  return capacity / 2 - RECORD_HEADER_SIZE;
}

/** The bytes a record with a `len`-byte payload occupies. */
export function recordSpan(len: number): number {
  return RECORD_HEADER_SIZE + ((len + 7) & ~7);
}
