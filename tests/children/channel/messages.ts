/**
 * The message protocol of `channel_cross.test.ts` and its `cx_*` child scripts: what message
 * `seq` of producer `producer` is, for a seed and a size profile, so that a receiver can rebuild
 * and check every message on its own, and the running hash both sides report. No imports and no
 * runtime APIs, so the test can use it without loading a child script.
 *
 * Message `seq` of `producer` is `size(...)` bytes of a little-endian word stream: word 0 is
 * `seq`, word 1 is `producer`, and the rest comes from a xorshift32 generator seeded with
 * `mix(seed, producer, seq)`. A message shorter than 8 bytes is a prefix of that stream (so a
 * 0-byte message is still a message).
 *
 * @module
 */

/** The size profiles. */
export type Profile = "mixed" | "tagged" | "fixed";

/** Channel capacity of the "mixed" and "tagged" profiles' channels. */
export const MIXED_CAPACITY = 64 * 1024;
/** The largest payload of one record in a ring of {@linkcode MIXED_CAPACITY}. */
export const MIXED_MAX_RECORD = MIXED_CAPACITY / 2 - 8;
/** Payload sizes of the "fixed" profile. */
export const FIXED_SIZE = 1000;

/** A 32-bit hash of three words (murmur3's finaliser over a simple combination). */
export function mix(a: number, b: number, c: number): number {
  let h = Math.imul(a ^ 0x9e3779b9, 0x85ebca6b) ^ Math.imul(b + 0x7f4a7c15, 0xc2b2ae35) ^
    Math.imul(c ^ 0x165667b1, 0x27d4eb2f);
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/**
 * Sizes of the "mixed" profile, that stress a 64 KiB ring: the edges around one record and
 * around the capacity, 0 and tiny sizes.
 */
export const EDGES = [
  0,
  1,
  7,
  8,
  9,
  MIXED_MAX_RECORD - 1,
  MIXED_MAX_RECORD,
  MIXED_MAX_RECORD + 1,
  MIXED_CAPACITY / 2,
  MIXED_CAPACITY - 8,
  MIXED_CAPACITY,
  MIXED_CAPACITY + 1,
];

/**
 * The byte length of message `seq` of `producer`.
 *
 * - "mixed": 0 to 48 KiB skewed to small sizes (60% up to 128 bytes, 25% up to 4 KiB, 4% up to
 *   48 KiB), 0.6% edge sizes ({@linkcode EDGES}) and 0.3% between 64 KiB and 192 KiB (longer than
 *   the ring: sent in fragments);
 * - "tagged": the same at least 8 bytes (so the receiver can read who sent it) and without the
 *   48 KiB class, for several producers;
 * - "fixed": {@linkcode FIXED_SIZE}.
 */
export function messageSize(profile: Profile, seed: number, producer: number, seq: number): number {
  if (profile === "fixed") return FIXED_SIZE;
  const r = mix(seed, producer, seq ^ 0x51ce);
  const r2 = mix(r, seq, 0x2545);
  const bucket = r % 1000;
  let size: number;
  if (bucket < 600) size = r2 % 129;
  else if (bucket < 850) size = 129 + r2 % 3968;
  else if (bucket < 890) {
    size = profile === "mixed" ? 4096 + r2 % (48 * 1024 - 4096 + 1) : r2 % 1024;
  } else if (bucket < 896) size = EDGES[r2 % EDGES.length];
  else if (bucket < 899) size = MIXED_CAPACITY + 1 + r2 % (128 * 1024);
  else size = r2 % 1024;
  return profile === "tagged" ? Math.max(8, size) : size;
}

/** The seed of the xorshift stream after the two header words. */
function streamSeed(seed: number, producer: number, seq: number): number {
  return mix(seed ^ 0x6a09e667, producer, seq) || 0x9e3779b9;
}

/** Word `i` of a message, given the previous state of the stream; see the module docs. */
function next(x: number): number {
  x ^= x << 13;
  x ^= x >>> 17;
  x ^= x << 5;
  return x >>> 0;
}

/** Writes message `seq` of `producer` into `out` (its whole length). */
export function fillMessage(out: Uint8Array, seed: number, producer: number, seq: number): void {
  const len = out.length;
  let x = streamSeed(seed, producer, seq);
  const words = len >>> 2;
  const aligned = out.byteOffset % 4 === 0;
  const u32 = aligned ? new Uint32Array(out.buffer, out.byteOffset, words) : undefined;
  let w = 0;
  for (let i = 0; i < words; i++) {
    if (i === 0) w = seq >>> 0;
    else if (i === 1) w = producer >>> 0;
    else w = x = next(x);
    if (u32) {
      u32[i] = w;
    } else {
      const at = i * 4;
      out[at] = w;
      out[at + 1] = w >>> 8;
      out[at + 2] = w >>> 16;
      out[at + 3] = w >>> 24;
    }
  }
  const rest = len & 3;
  if (rest !== 0) {
    const i = words;
    w = i === 0 ? seq >>> 0 : i === 1 ? producer >>> 0 : next(x);
    for (let k = 0; k < rest; k++) out[i * 4 + k] = w >>> (8 * k);
  }
}

/** A fresh copy of message `seq` of `producer`. */
export function makeMessage(
  profile: Profile,
  seed: number,
  producer: number,
  seq: number,
): Uint8Array {
  const out = new Uint8Array(messageSize(profile, seed, producer, seq));
  fillMessage(out, seed, producer, seq);
  return out;
}

/** The checksum of a message's bytes (FNV-1a over little-endian words, then the length). */
export function checksum(bytes: Uint8Array): number {
  const len = bytes.length;
  const words = len >>> 2;
  let h = 0x811c9dc5;
  if (bytes.byteOffset % 4 === 0) {
    const u32 = new Uint32Array(bytes.buffer, bytes.byteOffset, words);
    for (let i = 0; i < words; i++) h = Math.imul(h ^ u32[i], 0x01000193);
  } else {
    for (let i = 0; i < words; i++) {
      const at = i * 4;
      const w = bytes[at] | bytes[at + 1] << 8 | bytes[at + 2] << 16 | bytes[at + 3] << 24;
      h = Math.imul(h ^ w, 0x01000193);
    }
  }
  let tail = 0;
  for (let k = 0; k < (len & 3); k++) tail |= bytes[words * 4 + k] << (8 * k);
  h = Math.imul(h ^ tail, 0x01000193);
  return mix(h, len, 0x7e57) >>> 0;
}

/** The running hash after one more message of `len` bytes with checksum `sum`. */
export function combine(hash: number, len: number, sum: number): number {
  return mix(hash, len, sum);
}

/** The running hash's start value. */
export const HASH_START = 0x0123_4567;

/** The running hash of messages `0..count` of `producer`, computed here without a channel. */
export function expectedHash(
  profile: Profile,
  seed: number,
  producer: number,
  count: number,
): number {
  let hash = HASH_START;
  for (let seq = 0; seq < count; seq++) {
    const m = makeMessage(profile, seed, producer, seq);
    hash = combine(hash, m.length, checksum(m));
  }
  return hash;
}

/**
 * Reads who sent a "tagged" message (at least 8 bytes): `[producer, seq]`, or undefined if it is
 * too short to say.
 */
export function tagOf(bytes: Uint8Array): [number, number] | undefined {
  if (bytes.length < 8) return undefined;
  const dv = new DataView(bytes.buffer, bytes.byteOffset, 8);
  return [dv.getUint32(4, true), dv.getUint32(0, true)];
}

/**
 * Checks that `got` is message `seq` of `producer`: returns undefined if it is, else what differs
 * (its length, or the first differing byte, and the sequence number it carries).
 */
export function mismatch(
  got: Uint8Array,
  profile: Profile,
  seed: number,
  producer: number,
  seq: number,
): string | undefined {
  const want = makeMessage(profile, seed, producer, seq);
  const carried = tagOf(got);
  const what = carried ? ` (it carries producer ${carried[0]} seq ${carried[1]})` : "";
  if (got.length !== want.length) {
    return `message ${seq} of producer ${producer}: ${got.length} bytes, expected ${want.length}${what}`;
  }
  for (let i = 0; i < want.length; i++) {
    if (got[i] !== want[i]) {
      return `message ${seq} of producer ${producer} (${want.length} bytes): byte ${i} is ${
        got[i]
      }, expected ${want[i]}${what}`;
    }
  }
  return undefined;
}

/** Int32 index in a control segment: the start flag (the parent stores 1 and notifies). */
export const CTL_GO = 0;
/** Int32 index in a control segment: how many children are ready. */
export const CTL_READY = 1;
/** Bytes of a control segment. */
export const CTL_BYTES = 4096;

/** `channel/stamped.ts` control word: a message failed the check (its sequence number + 1). */
export const CTL_BAD = 0;
/** `channel/stamped.ts` control word: the parent stores 1 when the sender is to close. */
export const CTL_STOP = 2;
/** `channel/stamped.ts` control word of receiver `i`: the first sequence number it got, or -1. */
export const CTL_FIRST = (i: number): number => 4 + 2 * i;
/** `channel/stamped.ts` control word of receiver `i`: the last sequence number it got, or -1. */
export const CTL_LAST = (i: number): number => 5 + 2 * i;
/**
 * `channel/stamped.ts` with many senders: the most senders, and the index of receiver `i`'s
 * words for sender `s` ({@linkcode CTL_FIRST} and {@linkcode CTL_LAST} of that index).
 */
export const STAMPED_SENDERS = 4;
export const CTL_OF = (i: number, s: number): number => i * STAMPED_SENDERS + s;
