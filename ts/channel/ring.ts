/**
 * The channel's ring protocol over a region of shared memory, in JavaScript: the same protocol
 * as `crates/shared-buffer/src/channel/ring.rs`; `docs/channel.md` describes it word by word. The hot
 * path is plain JavaScript with `Atomics`: sending to an awake receiver, or receiving from an
 * awake sender, makes no FFI call and no system call. JavaScript's `Atomics` operations are all
 * sequentially consistent, which gives the release/acquire orderings and the SeqCst fences of the
 * Rust side without explicit fences.
 *
 * @module
 */

import { errorOf, type SharedMemoryError } from "../errors.ts";
import {
  bytesView,
  dataViewByteLength,
  isUint8Array,
  isView,
  newBytes,
  typedArrayName,
  viewBuffer,
  viewByteLength,
  viewByteOffset,
  viewDetached,
  viewLength,
} from "../intrinsics.ts";
import {
  PUT_HEAD_SEEN,
  PUT_RX_CLOSED,
  PUT_TAG,
  PUT_TAIL,
  TAKE_HEAD,
  TAKE_LOOKED,
  TAKE_TAIL_SEEN,
} from "../ffi.ts";
import * as L from "./layout.ts";

/**
 * The `Atomics` functions this module calls, taken at load: a script that replaces one later would
 * run in the middle of a send or a receive (between moving `tail` and a commit, say).
 */
const {
  add: atomicAdd,
  compareExchange: atomicCompareExchange,
  exchange: atomicExchange,
  load: atomicLoad,
  or: atomicOr,
  store: atomicStore,
} = Atomics;

/**
 * Whether `bytes` looks like a plain `Uint8Array`: made by `Uint8Array` itself, not by a subclass,
 * whose `subarray` and friends it inherits, and with elements of one byte (an array of wider
 * elements given `Uint8Array`'s prototype counts its elements as its length, and `set` converts
 * them: as bytes its length is its `byteLength`, and native code copies bytes). Its `length` may
 * still lie (an own property defined on it), and a Proxy can look like one: the length of any
 * array a caller hands in is read with {@linkcode byteCount}, which refuses what is not a typed
 * array. Other arrays are used through {@linkcode plainView}.
 */
export function plainBytes(bytes: unknown): bytes is Uint8Array {
  if (!(bytes instanceof Uint8Array) || bytes.constructor !== Uint8Array) return false;
  const n = bytes.length;
  // At 0 they agree whatever the elements: the engine's tag tells (not at every call: it is a
  // call into the runtime in JavaScriptCore, some 19 ns). One of wider elements taken for plain
  // bytes at 0, over a resizable buffer, was counted by its elements once the buffer grew.
  return bytes.byteLength === n && (n !== 0 || isUint8Array(bytes));
}

const setOf = Object.getPrototypeOf(Uint8Array.prototype).set as (
  this: Uint8Array,
  source: Uint8Array,
  offset?: number,
) => void;

/**
 * Built-ins a `sendMany` run calls between moving `tail` and committing, taken when this module
 * loads: a script may replace the globals later, and its code would then run in the middle of
 * the run.
 */
const setPrototypeOf = Object.setPrototypeOf;
const Int32 = Int32Array;

/** An empty array without a prototype. */
function noPrototype<T>(): T[] {
  return setPrototypeOf([], null);
}

/**
 * Copies `source` into `target` from byte `offset` on with the engine's own `set`, taken at
 * load: a method of the target's own (a property defined on a plain array), or a `set` a script
 * put on the prototype later, would run the caller's code in the middle of a send or a receive.
 */
export function copyInto(target: Uint8Array, source: Uint8Array, offset = 0): void {
  setOf.call(target, source, offset);
}

/**
 * Zeroes the bytes `start..end` of `ring`'s region word by word where it can: no built-in a
 * script can replace (and make throw) is called, as this runs where a copy failed or grew.
 */
function zeroBytes(ring: Ring, start: number, end: number): void {
  const bytes = ring.bytes;
  const i32 = ring.i32;
  let i = start;
  for (; i < end && (i & 3) !== 0; i++) bytes[i] = 0;
  for (; i + 4 <= end; i += 4) i32[i >> 2] = 0;
  for (; i < end; i++) bytes[i] = 0;
}

/**
 * A copy of `source` in a new array, made with the engine's own constructor and `set` (a
 * `slice` a script put on the prototype would run in the middle of a receive, with the message
 * lent).
 */
export function copyOf(source: Uint8Array): Uint8Array {
  const copy = newBytes(viewLength(source));
  setOf.call(copy, source, 0);
  return copy;
}

/**
 * The number of bytes of `bytes` as the engine counts them, whatever its `length` property says:
 * a record reserved by a `length` that claims less than the array holds would be overrun by
 * `Uint8Array.prototype.set` (which copies the real length), and a receive into a target that
 * claims more would drop what does not fit.
 *
 * @throws {TypeError} If `bytes` is not really a typed array (a Proxy of one, say).
 */
export function byteCount(bytes: Uint8Array): number {
  return viewLength(bytes);
}

/**
 * {@linkcode byteCount} for the hot paths, where only the caller's own code may run before
 * anything is reserved or taken. JavaScriptCore runs the engine's `length` getter, called as a
 * function, as a call into the runtime (about 10 ns in Bun), while it reads `bytes.length`
 * inline. `bytes.length` may lie (an own property, a getter on a prototype), but a typed array's
 * elements are its own and no script can change them: `n` is its length exactly when element
 * `n - 1` exists and element `n` does not. That holds for a real typed array only (a DataView or
 * any other object given a typed array's prototype has ordinary properties, which can lie): so
 * the quick count is taken only for `known`, an array this endpoint counted before with the
 * engine's getter, which also refuses what is not really a typed array. Anything else is
 * counted by {@linkcode byteCount}.
 */
export function quickByteCount(bytes: Uint8Array, known: Uint8Array | undefined): number {
  if (bytes === known) {
    const n = bytes.length;
    if (
      typeof n === "number" && bytes[n] === undefined && (n === 0 || bytes[n - 1] !== undefined)
    ) {
      return n + 0; // -0 is 0
    }
  }
  return byteCount(bytes);
}

/**
 * What a caller's message or target is, for {@linkcode sameSpan}, when an endpoint made a plain
 * `Uint8Array` of its bytes (see {@linkcode viewedFrom}): one of the `VIEWED_` constants.
 */
export type Viewed = 0 | 1 | 2 | 3 | 4;
/** Nothing to use again: the plain array itself, a string, or an empty substitute. */
export const VIEWED_NONE = 0;
/** A `Uint8Array` of a subclass (Node.js's `Buffer`): its elements are its bytes. */
export const VIEWED_BYTES = 1;
/** A typed array of wider elements (or one given another type's prototype). */
export const VIEWED_TYPED = 2;
/** A `DataView`. */
export const VIEWED_DATA_VIEW = 3;
/** An `ArrayBuffer`, of which the view was made whole (it follows a resizable one). */
export const VIEWED_BUFFER = 4;

/**
 * How many bytes `own`, the plain view an endpoint made of `from` (of the kind `kind`, see
 * {@linkcode Viewed}) at an earlier call, spans when `from` still spans the same bytes, so that
 * `own` can stand for it again without a new view; else -1. A view's buffer and offset never
 * change; its length can (a view that follows a resizable buffer, one out of its bounds, one
 * detached), while `own`, of fixed length, only drops to 0 (and a view made of a whole
 * `ArrayBuffer` follows it). `own` and a `Uint8Array` are counted as {@linkcode quickByteCount}
 * counts, by their elements, which are their own; the others by the engine's getters. No code
 * of the caller's runs after `own.length` is read (a getter a script put on the prototype runs
 * there, before anything is checked), and a `length` that lies only makes the answer -1.
 */
export function sameSpan(from: object, kind: Viewed, own: Uint8Array): number {
  if (kind === VIEWED_BUFFER) return viewLength(own);
  const n = own.length;
  if (typeof n !== "number" || own[n] !== undefined || (n !== 0 && own[n - 1] === undefined)) {
    return -1;
  }
  const count = n + 0; // -0 is 0
  if (kind === VIEWED_BYTES) {
    const bytes = from as Uint8Array;
    return bytes[n] === undefined && (n === 0 || bytes[n - 1] !== undefined) ? count : -1;
  }
  if (kind === VIEWED_TYPED) return viewByteLength(from as ArrayBufferView) === n ? count : -1;
  try {
    return dataViewByteLength(from as DataView) === n ? count : -1;
  } catch {
    return -1; // detached, or out of the bounds of a resizable buffer that shrank
  }
}

/**
 * What `message`, of which {@linkcode plainView} or `bytesOf` made `own`, is for a later call's
 * {@linkcode sameSpan}: `VIEWED_NONE` when it is `own` itself, not a view or a buffer, or an
 * `ArrayBuffer` that `own` does not view (the empty array made for an empty one).
 */
export function viewedFrom(message: unknown, own: Uint8Array): Viewed {
  if (message === own || typeof message !== "object" || message === null) return VIEWED_NONE;
  if (isView(message)) {
    const name = typedArrayName(message);
    return name === "Uint8Array"
      ? VIEWED_BYTES
      : name === undefined
      ? VIEWED_DATA_VIEW
      : VIEWED_TYPED;
  }
  return viewBuffer(own) === message ? VIEWED_BUFFER : VIEWED_NONE;
}

/**
 * `bytes` itself when it is a plain `Uint8Array` ({@linkcode plainBytes}), else a new plain view
 * of the same bytes, made from the engine's own accessors (which a subclass cannot redefine).
 *
 * @throws {TypeError} If `bytes` is not really a typed array (a Proxy, say).
 */
export function plainView(bytes: Uint8Array): Uint8Array {
  return plainBytes(bytes) ? bytes : freshView(bytes);
}

/**
 * A new plain view of the bytes of `bytes`, made from the engine's own accessors: an empty array
 * for a detached buffer, which has no bytes to view (and of which no view can be made).
 */
export function freshView(bytes: Uint8Array): Uint8Array {
  if (!ArrayBuffer.isView(bytes)) throw new TypeError("expected a Uint8Array, got another object");
  const length = viewByteLength(bytes);
  if (length === 0) return new Uint8Array(0);
  return new Uint8Array(viewBuffer(bytes), viewByteOffset(bytes), length);
}

/** A protocol failure as a SharedMemoryError with `code`. */
export function channelError(code: string, message: string): SharedMemoryError {
  return errorOf(code, message);
}

const W = (offset: number) => offset >> 2;
const HEAD = W(L.OFF_HEAD);
const ZEROING = W(L.OFF_ZEROING);
const SWEEPS = W(L.OFF_SWEEPS);
const TAIL = W(L.OFF_TAIL);
const FLAGS = W(L.OFF_FLAGS);
const RX_WAITING = W(L.OFF_RX_WAITING);
const TX_WAITING = W(L.OFF_TX_WAITING);
const CONSUMER_PID = W(L.OFF_CONSUMER_PID);
const PID_NAMESPACE = W(L.OFF_PID_NAMESPACE);
const PRODUCER_PIDS = W(L.OFF_PRODUCER_PIDS);
const ORPHANS = W(L.OFF_ORPHANS);
const DATA = W(L.OFF_DATA);
const COMMITTED = L.REC_COMMITTED | 0;
const SWEPT = L.SWEPT | 0;
const TAIL_CLOSED = L.TAIL_CLOSED | 0;
const RX_PARKED = L.RX_PARKED;
const RX_CLOSED = L.RX_CLOSED;
/** Records up to this many bytes are zeroed word by word: cheaper than `fill` for small ones. */
const SMALL_ZERO = 256;
/**
 * A receiver taking a batch ({@linkcode Consumer.consume}) publishes `head` once this many bytes
 * (or a quarter of a smaller ring) are consumed and unpublished, and at the end of the batch. One
 * taking messages one by one ({@linkcode Consumer.release}) publishes it before the receive returns:
 * between receives a sender may start to wait for that room (and the receiver may never receive
 * again). A receiver that takes over from a killed one starts at the published `head`, and gets
 * the records consumed after it again (they are zeroed only when `head` is published).
 */
export const PUBLISH_EVERY = 4096;

/**
 * A receiver stores `head` as soon as it is done with a message, so a sender that looks for
 * room after a receive returned finds it. But it looks for parked senders to wake (a load of
 * `tx_waiting` after the `Atomics.store` of `head`, whose fence it waits for: a receive of 64 B
 * in Node.js took 92-95 ns of CPU with it, 72-80 without, in a pair on one core) only once this
 * many bytes (or a quarter of a smaller ring) were handed back since it last looked; when a
 * receive leaves no message committed after it (a plain read of the next commit word: the
 * receiver may not receive again soon); whenever it finds nothing to take, before it waits; and
 * when it closes. A sender parked in between, on a full ring whose receiver has stopped taking
 * while messages still wait, finds the room when its park ends: every 100 ms at most
 * (`PARK_MS`; the Rust sender's `SENDER_PARK_MAX`). The Rust receiver does the same
 * (`WAKE_LOOK_BYTES` in `ring.rs`).
 */
export const WAKE_LOOK_BYTES = 4096;

/**
 * A receiver that looks for parked senders ({@linkcode WAKE_LOOK_BYTES}) while messages wait, in
 * a channel of one sender, wakes it only once at least this fraction of the ring (1 / the
 * divisor) is free: half, as a socket wakes its writer only when it can make significant
 * progress (Linux: when half the send buffer is free). Woken whenever any room came back, a
 * sender that shares the receiver's core took the CPU, filled that room and parked again: a
 * futex wake (a Node-API call in Node.js) and two switches every few hundred small messages, or
 * every message or two of 4 KiB. Node.js 26, `bench/pair.ts`, both processes on one core, five
 * alternating runs each, median (lowest-highest) M messages/s, waking at any room against at
 * half: 64 B 5.3 (4.7-6.0) against 6.3 (6.0-6.6), 64 B with a timeout 5.8 (5.3-5.9) against 6.2
 * (5.6-6.8), 4 KiB 1.17 (1.08-1.27) against 1.65 (1.58-1.69); the batch path (which wakes once
 * per batch) and 4 KiB between two cores (no sender parks there) unchanged. At a quarter, 4 KiB
 * gained a third as much; only when the ring is empty, more (2.1), but a sender parked until
 * then leaves a slow receiver on another core idle while it refills, where half keeps both at
 * work. A receiver that finds nothing to take wakes them whatever the room (`publish(true)`): it
 * is about to wait, and a sender behind a long record still in flight may fit in what is free;
 * so does a receive that leaves no message committed after it (it may not receive again for a
 * while). With many senders a look wakes them whatever the room: while the others keep more than
 * half the ring full, a parked one waiting for half would wait for its park to end. A sender
 * also looks again on its own after each park of at most 100 ms (`PARK_MS`). The close and the
 * takeover paths wake at once. The Rust receiver (Deno's and Bun's `recvInto`) does the same
 * (`WAKE_ROOM_DIVISOR` in `ring.rs`, with what it measured), and more exactly: after a look
 * short of half it looks again once half could be free, not a whole look's distance on, and the
 * wake stays owed to its next wait, where this receiver wakes at every wait anyway.
 */
export const WAKE_ROOM_DIVISOR = 2;

/**
 * A synchronous send that finds the ring full, in a channel of one sender, resumes once this
 * fraction of the ring (1 / the divisor) is free, not at the first record that fits, as long as
 * the receiver keeps taking messages ({@linkcode Producer.gatherRoom}). Resumed at the first
 * room, the sender writes each record right behind the receiver, into the cache lines it has just
 * read and zeroed, and reads `head` after every one, so the lines holding both cross between the
 * two cores for every message. The Rust sender does the same whenever its spin is not 0
 * (`ROOM_GATHER_DIVISOR` in `mod.rs`, with what it measured there: its 64 B stream between two
 * cores 2.4-6x as fast).
 */
export const ROOM_GATHER_DIVISOR = 4;
/**
 * How often {@linkcode Producer.gatherRoom} looks at `head` (2 µs): rarely enough that the
 * receiver's stores of it mostly find the line still its own, often enough that a receiver that
 * stops costs the sender at most a few microseconds.
 */
export const ROOM_GATHER_POLL_MS = 0.002;
/**
 * The longest {@linkcode Producer.gatherRoom} waits (1 ms): a peer that writes `head` back and
 * forth (it looks like a receiver at work) delays each wait for room (each fragment's) at most
 * this long.
 */
export const ROOM_GATHER_MAX_MS = 1;

/**
 * How far past `head` a receiver acquires the whole messages waiting, at once, in a channel of
 * one sender ({@linkcode Consumer.readAhead}). Its `Atomics.load` of the commit word of the last
 * of them orders every byte that sender wrote before that commit before this receiver's reads
 * (its commits are made in ring order), so the receives of the messages before it read their
 * commit words with plain reads ({@linkcode Consumer.takeReady}). In V8 an `Atomics.load` is a
 * call into the engine (not inlined): in a pair on one core, a receive of 64 B in Node.js took
 * 72-80 ns of CPU with one per message, 59-70 with one per 4 KiB (and the receive's checks of
 * the message and its copy in one method of their own, {@linkcode Consumer.takeReady}).
 */
export const READY_BYTES = 4096;

/** Native services the protocol needs on its slow paths. */
export interface Parking {
  /** Wakes up to `count` waiters on the header word at `offset`. */
  notify(offset: number, count: number): void;
  /** Sleeps while the header word at `offset` holds `expected`, at most `ns`. */
  wait(offset: number, expected: number, ns: number): void;
  /** The same without blocking the event loop. */
  waitAsync(offset: number, expected: number, ns: number): Promise<void>;
  /** True if the process exists and is not a zombie. */
  alive(pid: number): boolean;
  /**
   * The compare-and-swap of the pid word at header byte `offset` from `expected` to `pid` as an
   * endpoint of this thread attaches, which also notes the word when it takes it, in one call
   * that a `terminate()` cannot split: if the thread ends, or the mapping goes (the engine
   * collected the channel without `close()`), while it holds the word, the word is marked gone
   * (see `Backend.claimEndpoint`). Returns what the word held. Unset: a plain
   * `Atomics.compareExchange` (a ring over memory the library did not map, in tests).
   */
  claim?: (offset: number, expected: number, pid: number) => number;
  /** The detach's compare-and-swap of that word from `pid` to 0, forgetting the note. */
  unclaim?: (offset: number, pid: number) => void;
  /** This process's pid namespace (see `Backend.pidNamespace`), 0 if unknown. */
  readonly pidNamespace: number;
  /**
   * Where native code can receive faster than this module: one receive of a whole message of
   * at most `room` bytes into `target` (`sb_channel_take`), from the position, the position of
   * the last look for parked senders and the `tail` bound in `takeState` (at the generated
   * indices `TAKE_HEAD`, `TAKE_LOOKED` and `TAKE_TAIL_SEEN`), which it updates;
   * its length, or -1 with nothing taken (nothing there, anything but a whole message that fits,
   * a corrupt record, or a closed mapping).
   */
  take?: (target: Uint8Array, room: number) => number;
  takeState?: Int32Array;
  /**
   * Where native code can send faster than this module: one send of a `length`-byte message of
   * one record (`sb_channel_put`), from the end of the sender's last reservation, the `head` it
   * saw and the close it saw in `putState` (`PUT_TAIL`, `PUT_HEAD_SEEN`, `PUT_RX_CLOSED`), which
   * it updates, and its tag (slot + 1 with many senders, else 0, `PUT_TAG`): {@linkcode PUT_SENT},
   * {@linkcode PUT_FULL}, {@linkcode PUT_CLOSED}, or -1 with nothing reserved.
   */
  put?: (message: Uint8Array, length: number) => number;
  putState?: Int32Array;
  /**
   * Where native code can look ahead faster than this module (`sb_channel_scan_run`, with
   * `takeState`): copies the run of whole messages of at most `small` bytes each committed back
   * to back at `head` (at most `max`, and as many bytes of records as `out` holds) into `out`,
   * records and all, their lengths into `lens`; their count, 0 for none. Consumes nothing.
   */
  scanRun?: (out: Uint8Array, lens: Int32Array, max: number, small: number) => number;
  /** {@linkcode scanRun} only when at least this many bytes are known to wait; always if unset. */
  scanRunMin?: number;
  /**
   * Where native code can commit faster than this module (`sb_channel_commit_run`, with
   * `putState`): commits the `count` records of the one sender's run from data index `idx`,
   * marked and written back to back, whose payload lengths are `lens`, then wakes the receiver if
   * it is parked: 0, 1 when the receiver had closed, or -1 with nothing written.
   */
  commitRun?: (idx: number, lens: Int32Array, count: number) => number;
  /**
   * The fewest records of a run {@linkcode commitRun} commits; {@linkcode NATIVE_RUN_MIN} if
   * unset.
   */
  commitRunMin?: number;
  /**
   * Lets go of the arrays the native calls keep to know again (see {@linkcode take} and
   * {@linkcode put}): an endpoint of the channel closed.
   */
  forget?: () => void;
}

/** Writes a fresh header into zero-filled memory; `magic` is stored last. */
export function initRegion(i32: Int32Array, capacity: number, mode: number): void {
  i32[W(L.OFF_VERSION)] = L.VERSION;
  i32[W(L.OFF_HEADER_SIZE)] = L.HEADER_SIZE;
  i32[W(L.OFF_CAPACITY)] = capacity;
  i32[W(L.OFF_MAX_MESSAGE)] = L.maxRecord(capacity);
  i32[W(L.OFF_MODE)] = mode;
  i32[W(L.OFF_MAX_PRODUCERS)] = L.MAX_PRODUCERS;
  atomicStore(i32, W(L.OFF_MAGIC), L.MAGIC);
}

/**
 * What `EXDEV` says: the channel's endpoints are in pid namespace `theirs`, this process in
 * `ours`.
 */
function otherPidNamespace(theirs: number, ours: number): string {
  return `the channel's endpoints are in another pid namespace (pid:[${theirs}]; this process ` +
    `is in pid:[${ours}]): peers are told alive or dead by pid, which holds only within one ` +
    "pid namespace; run every endpoint of a channel in one (a container sharing another's " +
    "/dev/shm must share its pid namespace too)";
}

function capacityOk(capacity: number): boolean {
  return capacity >= L.MIN_CAPACITY && capacity <= L.MAX_CAPACITY &&
    (capacity & (capacity - 1)) === 0;
}

/**
 * Checks a region's header, never looping without bound; returns `[capacity, mode]`, or
 * `undefined` while the creator has not finished (magic still 0). `pidNamespace`: this
 * process's (0 if unknown); a region made in another is refused, as peers are told alive or dead
 * by pid.
 */
export function validateRegion(
  i32: Int32Array,
  bytes: number,
  pidNamespace: number,
): [number, number] | undefined {
  if (bytes < L.HEADER_SIZE + L.MIN_CAPACITY) {
    throw channelError("EINVAL", `a region of ${bytes} bytes is too small for a channel`);
  }
  const magic = atomicLoad(i32, W(L.OFF_MAGIC)) >>> 0;
  if (magic === 0) return undefined;
  if (magic !== L.MAGIC) {
    throw channelError("EBADMSG", `not a channel: magic 0x${magic.toString(16)}`);
  }
  const version = i32[W(L.OFF_VERSION)];
  if (version !== L.VERSION) {
    throw channelError(
      "EPROTONOSUPPORT",
      `channel layout version ${version}, this library speaks ${L.VERSION}`,
    );
  }
  const corrupt = (what: string) => channelError("EBADMSG", `corrupt channel header: ${what}`);
  if (i32[W(L.OFF_HEADER_SIZE)] !== L.HEADER_SIZE) throw corrupt("header size");
  const capacity = i32[W(L.OFF_CAPACITY)];
  if (!capacityOk(capacity)) throw corrupt(`capacity ${capacity}`);
  if (L.HEADER_SIZE + capacity > bytes) {
    throw corrupt(`capacity ${capacity} does not fit in ${bytes} bytes`);
  }
  if (i32[W(L.OFF_MAX_MESSAGE)] !== L.maxRecord(capacity)) throw corrupt("max_message");
  const mode = i32[W(L.OFF_MODE)];
  if (mode !== L.MODE_SPSC && mode !== L.MODE_MPSC) throw corrupt(`mode ${mode}`);
  if (i32[W(L.OFF_MAX_PRODUCERS)] !== L.MAX_PRODUCERS) throw corrupt("max_producers");
  // The namespace of the endpoints attached so far (see Ring.joinPidNamespace); unknown (0) on
  // either side: nothing to compare.
  const theirs = i32[W(L.OFF_PID_NAMESPACE)] >>> 0;
  if (theirs !== pidNamespace && theirs !== 0 && pidNamespace !== 0) {
    throw channelError("EXDEV", otherPidNamespace(theirs, pidNamespace));
  }
  if ((atomicLoad(i32, FLAGS) & ~L.FLAG_RX_CLOSED) !== 0) throw corrupt("flags");
  for (const word of [RX_WAITING, TX_WAITING]) {
    // Loaded before `flags`: a receiver's close sets the flag, then the mark.
    const value = atomicLoad(i32, word) >>> 0;
    const closed = word === RX_WAITING && value === L.RX_CLOSED &&
      (atomicLoad(i32, FLAGS) & L.FLAG_RX_CLOSED) !== 0;
    if (value > L.RX_PARKED && !closed) throw corrupt("waiter word");
  }
  let last = "";
  for (let round = 0; round < 4; round++) {
    const head = atomicLoad(i32, HEAD);
    const tail = atomicLoad(i32, TAIL);
    if ((head & ~L.POS_MASK) !== 0 || (head & 7) !== 0 || (tail & 7) !== 0) {
      last = `head 0x${(head >>> 0).toString(16)} or tail 0x${(tail >>> 0).toString(16)}`;
    } else if (((tail - head) & L.POS_MASK) > capacity) {
      last = "head and tail are more than the capacity apart";
    } else {
      return [capacity, mode];
    }
  }
  throw corrupt(last);
}

/**
 * Slots of {@linkcode Ring.copyView}'s views: a prime, so that records of any span, a power of
 * two included, spread over them.
 */
const COPY_VIEWS = 61;

/** A validated region and what every endpoint needs to reach it. */
export class Ring {
  /** The region's buffer: views of messages are made on it directly (cheaper than `subarray`). */
  readonly buffer: ArrayBuffer;
  readonly i32: Int32Array;
  readonly bytes: Uint8Array;
  readonly capacity: number;
  readonly mask: number;
  readonly maxRecord: number;
  readonly mode: number;
  readonly parking: Parking;
  /** How errors name the channel's segment: `name /jobs` or `key 0x2a`. */
  readonly label: string;
  /** What {@linkcode copyView} keeps: a view per slot, and the byte each starts at. */
  readonly #copyViews: (Uint8Array | undefined)[] = new Array(COPY_VIEWS).fill(undefined);
  readonly #copyStarts = new Int32Array(COPY_VIEWS);

  constructor(
    buffer: ArrayBuffer,
    capacity: number,
    mode: number,
    parking: Parking,
    label: string,
  ) {
    this.buffer = buffer;
    this.i32 = new Int32Array(buffer, 0, (L.HEADER_SIZE + capacity) >> 2);
    this.bytes = new Uint8Array(buffer, 0, L.HEADER_SIZE + capacity);
    this.capacity = capacity;
    this.mask = capacity - 1;
    this.maxRecord = L.maxRecord(capacity);
    this.mode = mode;
    this.parking = parking;
    this.label = label;
  }

  /**
   * An error of `caller` (`ChannelReceiver.recv`) on this channel, naming its segment as the
   * segment's own errors do: `ChannelReceiver.recv of name /jobs: what (EBADMSG)`.
   */
  error(code: string, caller: string, what: string): SharedMemoryError {
    return errorOf(code, `${caller} of ${this.label}: ${what}`);
  }

  /**
   * A view of `len` bytes at byte `start` of the region: `new Uint8Array(buffer, ...)` costs
   * 40-80 ns against 190-290 ns for `subarray` in Deno and Bun (no species lookup).
   */
  view(start: number, len: number): Uint8Array {
    return new Uint8Array(this.buffer, start, len);
  }

  /**
   * {@linkcode view} for a copy this library makes and drops at once, never one it hands out: the
   * last view made at each of a few starts is kept and given again while the same length is
   * asked for there, so a loop of same-sized messages makes no array once round the ring. In
   * Node.js, `recvInto` copies a message over 256 bytes out through one, and `recvMany` each run
   * of small messages (a new view and its collection cost 15-30 ns more per copy there).
   */
  copyView(start: number, len: number): Uint8Array {
    const slot = (start >>> 3) % COPY_VIEWS;
    const kept = this.#copyViews[slot];
    // A view of a detached buffer counts 0 bytes, and is made again (which throws).
    // The engine's count: a `length` a script defines on the prototype is not asked.
    if (kept !== undefined && this.#copyStarts[slot] === start && viewLength(kept) === len) {
      return kept;
    }
    const view = this.#copyViews[slot] = this.view(start, len);
    this.#copyStarts[slot] = start;
    return view;
  }

  /**
   * After a commit or a close: wake the receiver only if it may be parked. Returns true if the
   * receiver has closed the channel (`RX_CLOSED`, which no waker clears): the one load a commit
   * makes anyway is how senders learn of the close.
   */
  wakeConsumer(): boolean {
    const seen = atomicLoad(this.i32, RX_WAITING);
    if (seen === 0) return false;
    return this.#wakeSlow(seen);
  }

  /**
   * {@linkcode wakeConsumer} for a non-zero `rx_waiting`: apart, so that the common case (an
   * awake receiver) stays small enough for JavaScriptCore to inline (2-5 ns per send in Bun).
   * A parked mark is cleared by a CAS from 1, never an exchange: that would erase a close mark.
   */
  #wakeSlow(seen: number): boolean {
    if (seen === RX_PARKED) {
      seen = atomicCompareExchange(this.i32, RX_WAITING, RX_PARKED, 0);
      if (seen === RX_PARKED) {
        this.parking.notify(L.OFF_RX_WAITING, 1);
        return false;
      }
    }
    if (seen !== RX_CLOSED) return false;
    // The receiver's close sets its flag first: a mark without it is a peer's write, not a close
    // (the receiver, alive, may be parked under it: woken). A commit that took it for one
    // reported a failure for a message the receiver then took, and refused every later send.
    if (this.rxClosed()) return true;
    this.parking.notify(L.OFF_RX_WAITING, 1);
    return false;
  }

  /** After freeing space or closing: wake every parked sender, if any. */
  wakeProducers(): void {
    if (
      atomicLoad(this.i32, TX_WAITING) !== 0 && atomicExchange(this.i32, TX_WAITING, 0) !== 0
    ) {
      this.parking.notify(L.OFF_TX_WAITING, 0xffff_ffff);
    }
  }

  tailClosed(): boolean {
    return (atomicLoad(this.i32, TAIL) & TAIL_CLOSED) !== 0;
  }

  rxClosed(): boolean {
    return (atomicLoad(this.i32, FLAGS) & L.FLAG_RX_CLOSED) !== 0;
  }

  /**
   * Refuses to attach to a header a peer overwrote since the channel was opened (its flags would
   * be read as whatever the peer wrote: all ones read as closed, `EPIPE`): `EBADMSG`.
   */
  #checkMagic(what: string): void {
    const magic = atomicLoad(this.i32, W(L.OFF_MAGIC)) >>> 0;
    if (magic !== L.MAGIC) {
      throw this.error(
        "EBADMSG",
        what,
        `the channel's header was overwritten since it was opened (magic 0x${magic.toString(16)})`,
      );
    }
  }

  /**
   * Makes this process's pid namespace the channel's if none is yet (the first endpoint to
   * attach does), else checks that it is the same: peers are told alive or dead by pid.
   */
  #joinPidNamespace(what: string): void {
    const ours = this.parking.pidNamespace;
    if (ours === 0) return;
    const theirs = atomicCompareExchange(this.i32, PID_NAMESPACE, 0, ours | 0) >>> 0;
    if (theirs !== 0 && theirs !== ours) {
      throw this.error("EXDEV", what, otherPidNamespace(theirs, ours));
    }
  }

  /**
   * Registers `pid` as the receiver; returns the position it starts at, checked (a `head` loaded
   * again later could be one a peer wrote since).
   */
  attachConsumer(pid: number): number {
    this.#checkMagic("Channel.receiver");
    if (this.rxClosed()) {
      throw this.error("EPIPE", "Channel.receiver", "a receiver already closed the channel");
    }
    this.#joinPidNamespace("Channel.receiver");
    for (let round = 0; round < 8; round++) {
      const holder = this.#claim(CONSUMER_PID, 0, pid);
      if (holder === 0) return this.#attachedConsumer(pid);
      if (holder === pid) {
        throw this.error(
          "EBUSY",
          "Channel.receiver",
          "this process already has the channel's receiver (in this thread, or in a Worker, " +
            "which frees it when it ends, closing it or not; Deno ends a terminated Worker only " +
            "once its code returns to the event loop; one dropped without close() is freed " +
            "once the engine has collected its channel and every view it lent, which in Node.js " +
            "takes a turn of the event loop)",
        );
      }
      if (this.parking.alive(holder)) {
        throw this.error(
          "EBUSY",
          "Channel.receiver",
          `process ${holder} already receives from this channel`,
        );
      }
      if (this.#claim(CONSUMER_PID, holder, pid) === holder) {
        return this.#attachedConsumer(pid);
      }
    }
    throw this.error("EBUSY", "Channel.receiver", "another process is attaching as the receiver");
  }

  /**
   * A receiver that closed between the check and its pid's release: its close is final, so
   * this one must not receive, nor ever park.
   */
  #attachedConsumer(pid: number): number {
    // The receiver starts at `head`, which a peer may have rewritten since the channel was
    // opened (the Rust receiver would index a misaligned word): refused alike.
    const head = atomicLoad(this.i32, HEAD);
    let bad = `head 0x${(head >>> 0).toString(16)}`;
    if (!this.rxClosed() && (head & ~(L.POS_MASK & ~7)) === 0) {
      // A receiver killed in the middle of a sweep left `sweeps` odd, which would send every
      // sender's claim down its slow path. Raising it is safe: a sender relies only on seeing it
      // odd or changed after a sweep took its word, and the dead one's raise came first. Raised
      // before the dead one's zeroing is finished, as in Rust (where a release fence then orders
      // it before the zeros); here the zeros are `fill`'s plain stores, which the JavaScript
      // model does not order, but the dead one's own raise is in memory before it can be seen
      // dead, before its SWEPT words were taken.
      if ((atomicLoad(this.i32, SWEEPS) & 1) !== 0) atomicAdd(this.i32, SWEEPS, 1);
      const zeroing = this.#finishZeroing(head);
      if (typeof zeroing === "number") return zeroing;
      bad = zeroing;
    }
    this.#unclaim(CONSUMER_PID, pid);
    if (!this.rxClosed()) {
      throw this.error("EBADMSG", "Channel.receiver", `corrupt channel ${bad}`);
    }
    throw this.error("EPIPE", "Channel.receiver", "a receiver already closed the channel");
  }

  /**
   * Run by a receiver that has just attached (no other receiver runs), at `head`: if the
   * receiver before it was killed between announcing the records it zeroes (`zeroing` ahead of
   * `head`, see {@linkcode Consumer.announce}) and storing `head`, finishes its job: zeroes
   * `[head, zeroing)` (records it had consumed, some zeroed already) and stores `head =
   * zeroing`. Returns the position the receiver starts at (`head`, or `zeroing` once done), or
   * what is wrong with a `zeroing` that is neither `head` nor a position after it and at or
   * before `tail`'s (a peer wrote it).
   */
  #finishZeroing(head: number): number | string {
    const to = atomicLoad(this.i32, ZEROING);
    if (to === head) return this.#finishDrop(head);
    // Loaded after `zeroing`: the tail only moves on, and it was at or past `zeroing` before.
    const tail = atomicLoad(this.i32, TAIL) & L.POS_MASK;
    const ahead = (to - head) & L.POS_MASK;
    const used = (tail - head) & L.POS_MASK;
    if ((to & ~(L.POS_MASK & ~7)) !== 0 || used > this.capacity || ahead > used) {
      return `zeroing 0x${(to >>> 0).toString(16)}: not a position from head ` +
        `0x${head.toString(16)} to tail 0x${tail.toString(16)}`;
    }
    const idx = head & this.mask;
    const toEnd = this.capacity - idx;
    const start = L.OFF_DATA + idx;
    this.bytes.fill(0, start, start + Math.min(ahead, toEnd));
    if (ahead > toEnd) this.bytes.fill(0, L.OFF_DATA, L.OFF_DATA + ahead - toEnd);
    atomicStore(this.i32, HEAD, to);
    this.wakeProducers();
    return to;
  }

  /**
   * Run by {@linkcode #finishZeroing} when the receiver before this one left no zeroing to
   * finish: if it was killed in {@linkcode Consumer.dropMark} after taking a mark and before
   * announcing the zeroing, the word at `head` ({@linkcode L.droppingWord}) says how far the
   * record goes; finishes the job. Returns where the receiver starts. A record longer than any
   * message's, or that runs past `tail` or the end of the data area, is a peer's: left alone, for
   * the first receive to report (`EBADMSG`), as any corrupt record.
   */
  #finishDrop(head: number): number {
    const idx = head & this.mask;
    const span = L.droppingSpan(atomicLoad(this.i32, DATA + (idx >> 2)));
    if (span === 0) return head;
    const used = ((atomicLoad(this.i32, TAIL) & L.POS_MASK) - head) & L.POS_MASK;
    if (
      used > this.capacity || span > used || span > this.capacity - idx ||
      span > L.recordSpan(this.maxRecord)
    ) return head;
    // As in dropMark: a claim that reads one of these zeros sees `sweeps` changed.
    atomicAdd(this.i32, SWEEPS, 1);
    const to = this.dropRecord(head, span);
    atomicAdd(this.i32, SWEEPS, 1);
    return to;
  }

  /**
   * Consumes the `span`-byte record at `head` whose mark the receiver took (its commit word holds
   * {@linkcode L.droppingWord} until the record is zeroed): stores `zeroing` past it, zeroes its
   * producer word and payload, stores 0 into its commit word (after the raise of `sweeps` and
   * `zeroing`: a claim that reads this zero sees both), then `head`. Returns the new `head`.
   */
  dropRecord(head: number, span: number): number {
    const to = (head + span) & L.POS_MASK;
    const word = DATA + ((head & this.mask) >> 2);
    atomicStore(this.i32, ZEROING, to);
    this.i32.fill(0, word + 1, word + (span >> 2));
    atomicStore(this.i32, word, 0);
    atomicStore(this.i32, HEAD, to);
    this.wakeProducers();
    return to;
  }

  /**
   * The receiver's close (after it published `head`): `FLAG_RX_CLOSED` (what attaching and
   * error messages read), then `RX_CLOSED` into `rx_waiting` (what committing senders see); both
   * are final.
   */
  detachConsumer(pid: number): void {
    atomicOr(this.i32, FLAGS, L.FLAG_RX_CLOSED);
    atomicExchange(this.i32, RX_WAITING, L.RX_CLOSED);
    this.unclaimConsumer(pid);
    this.wakeProducers();
  }

  /**
   * Lets go of the receiver's place if it holds `pid`, and of this thread's note of the claim
   * (see {@linkcode #claim}) either way.
   */
  unclaimConsumer(pid: number): void {
    this.#unclaim(CONSUMER_PID, pid);
  }

  /**
   * Registers `pid` as a sender; returns its slot and the `tail` it starts at, checked (one
   * loaded again later could be one a peer wrote since).
   */
  attachProducer(pid: number): [slot: number, tail: number] {
    this.#checkMagic("Channel.sender");
    if (this.rxClosed() || this.tailClosed()) throw this.closedError("Channel.sender");
    this.#joinPidNamespace("Channel.sender");
    const slots = this.mode === L.MODE_SPSC ? 1 : L.MAX_PRODUCERS;
    let dead = 0;
    for (let slot = 0; slot < slots; slot++) {
      // A slot held is passed over with a load: a claim is a call into the native module.
      const seen = atomicLoad(this.i32, PRODUCER_PIDS + slot);
      const holder = seen !== 0 ? seen : this.#claim(PRODUCER_PIDS + slot, 0, pid);
      if (holder === 0) return this.#attachedProducer(slot, pid);
      if (dead === 0 && holder !== pid && !this.parking.alive(holder)) dead = holder;
    }
    if (dead !== 0) {
      const who = (dead & L.PID_GONE) === 0
        ? `process ${dead}, which died`
        : `an endpoint of process ${
          dead & L.POS_MASK
        } that went without close() (its Worker ended, or the engine collected it)`;
      throw this.error(
        "EAGAIN",
        "Channel.sender",
        `a sender's place is held by ${who}; ` +
          "the receiver frees it within its peerCheckMs while it receives",
      );
    }
    throw this.error(
      "EBUSY",
      "Channel.sender",
      this.mode === L.MODE_SPSC
        ? "this one-sender channel already has a live sender; a channel created with " +
          `{ producers: "many" } takes up to ${L.MAX_PRODUCERS}`
        : `all ${L.MAX_PRODUCERS} sender slots are taken`,
    );
  }

  /**
   * The one sender starts at `tail`, which a peer may have rewritten since the channel was
   * opened (the Rust sender would index a misaligned word): refused alike. Returns `slot` and
   * that `tail`.
   */
  #attachedProducer(slot: number, pid: number): [slot: number, tail: number] {
    const tail = atomicLoad(this.i32, TAIL);
    if (this.mode !== L.MODE_SPSC || (tail & 7) === 0) return [slot, tail];
    this.detachProducer(slot, pid);
    throw this.error(
      "EBADMSG",
      "Channel.sender",
      `corrupt channel tail 0x${(tail >>> 0).toString(16)}`,
    );
  }

  /** `EPIPE`, saying who closed the channel: the receiver, or a sender (the stream ended). */
  closedError(caller: string): SharedMemoryError {
    return this.error(
      "EPIPE",
      caller,
      this.rxClosed()
        ? "the receiver closed the channel"
        : "a sender closed the channel; the stream has ended",
    );
  }

  detachProducer(slot: number, pid: number): void {
    this.#unclaim(PRODUCER_PIDS + slot, pid);
  }

  /**
   * Stores this process's `pid` into the pid word `word` (an index) of an endpoint this thread
   * attaches if it holds `expected`; what it held. Through {@linkcode Parking.claim} where there
   * is one (a channel's), which notes the word in the same call.
   */
  #claim(word: number, expected: number, pid: number): number {
    const claim = this.parking.claim;
    return claim === undefined
      ? atomicCompareExchange(this.i32, word, expected, pid)
      : claim(word << 2, expected, pid);
  }

  /** Clears the pid word `word` of this thread's endpoint if it holds `pid` (see #claim). */
  #unclaim(word: number, pid: number): void {
    const unclaim = this.parking.unclaim;
    if (unclaim === undefined) atomicCompareExchange(this.i32, word, pid, 0);
    else unclaim(word << 2, pid);
  }

  /** The pid in sender slot `slot` (0: free). */
  producerPid(slot: number): number {
    return atomicLoad(this.i32, PRODUCER_PIDS + slot);
  }

  /** Frees the slot of a dead sender `pid`; false if it changed meanwhile. */
  reclaimProducer(slot: number, pid: number): boolean {
    return atomicCompareExchange(this.i32, PRODUCER_PIDS + slot, pid, 0) === pid;
  }

  consumerPid(): number {
    return atomicLoad(this.i32, CONSUMER_PID);
  }

  /**
   * Records in the region that the records of the dead sender in `slot` end before `end` (see
   * `orphans` in layout.rs): in the slot's entry if it has one (an earlier sender of it died with
   * records still ahead, which end before `end` too), else in the first empty one. Returns how to
   * put the entry back if the slot is not reclaimed after all, or undefined if every entry is
   * taken. Read only by a receiver that takes over from this one, after this one detached or
   * died (as `zeroing`, see {@linkcode Consumer.announce}); the end first, so that an entry
   * killed halfway is empty or holds an end that is still true. `Atomics.store`, not plain
   * stores, which the compiler may reorder (off the hot path: a sender died).
   */
  recordOrphan(slot: number, end: number): (() => void) | undefined {
    const i32 = this.i32;
    const tag = slot + 1;
    let at = -1;
    for (let i = 0; i < L.ORPHAN_ENTRIES && at < 0; i++) if (i32[ORPHANS + 2 * i] === tag) at = i;
    for (let i = 0; i < L.ORPHAN_ENTRIES && at < 0; i++) if (i32[ORPHANS + 2 * i] === 0) at = i;
    if (at < 0) return undefined;
    const word = ORPHANS + 2 * at;
    const [tagBefore, endBefore] = [i32[word], i32[word + 1]];
    atomicStore(i32, word + 1, end);
    atomicStore(i32, word, tag);
    // The tag first: halfway, the entry is the old one's or holds the new end, which is still
    // true of a tag that was the slot's already.
    return () => {
      atomicStore(i32, word, tagBefore);
      atomicStore(i32, word + 1, endBefore);
    };
  }

  /**
   * Empties the region's entries that `ours` (the receiver's own orphans) does not account for.
   * The receiver alone writes entries, and it loaded those of the receivers before it when it
   * attached: any other is a peer's, which would keep a dead sender of this receiver's
   * unrecorded.
   */
  forgetStrangers(ours: (slot: number, end: number) => boolean): void {
    for (let i = 0; i < L.ORPHAN_ENTRIES; i++) {
      const word = ORPHANS + 2 * i;
      const tag = this.i32[word];
      if (tag !== 0 && !ours(tag - 1, this.i32[word + 1])) atomicStore(this.i32, word, 0);
    }
  }

  /**
   * Empties the region's entry for the dead sender of `slot` whose records end at `end`, once
   * they are behind `head` (not one that a later death of a sender of the slot moved on).
   */
  forgetOrphan(slot: number, end: number): void {
    for (let i = 0; i < L.ORPHAN_ENTRIES; i++) {
      const word = ORPHANS + 2 * i;
      if (this.i32[word] === slot + 1 && this.i32[word + 1] === end) this.i32[word] = 0;
    }
  }

  /**
   * The dead senders that the receivers before this one recorded in the region whose records are
   * still ahead of `head`, as [slot, end] pairs; empties the entries that are not (left by a
   * receiver killed as it passed their end, or written by a peer).
   */
  loadOrphans(head: number): [slot: number, end: number][] {
    const slots = this.mode === L.MODE_MPSC ? L.MAX_PRODUCERS : 1;
    const used = ((atomicLoad(this.i32, TAIL) & L.POS_MASK) - head) & L.POS_MASK;
    const ahead = (end: number) => (end - head) & L.POS_MASK;
    // By slot + 1: the entry's index and end.
    const found = new Map<number, [index: number, end: number]>();
    for (let i = 0; i < L.ORPHAN_ENTRIES; i++) {
      const word = ORPHANS + 2 * i;
      const tag = this.i32[word];
      if (tag === 0) continue;
      const end = this.i32[word + 1];
      if (
        !(tag > 0 && tag <= slots && (end & ~(L.POS_MASK & ~7)) === 0 && ahead(end) !== 0 &&
          ahead(end) <= Math.min(used, this.capacity))
      ) {
        this.i32[word] = 0;
        continue;
      }
      // A receiver never records one slot twice: of a peer's second entry for a slot, the one
      // whose end is further ahead is kept (taking a live sender's mark for a dead one's loses
      // a message; the other way round reads a payload as records), the other emptied.
      const kept = found.get(tag);
      if (kept === undefined) found.set(tag, [i, end]);
      else {
        const further = ahead(end) > ahead(kept[1]);
        this.i32[ORPHANS + 2 * (further ? kept[0] : i)] = 0;
        if (further) found.set(tag, [i, end]);
      }
    }
    return [...found].map(([tag, [, end]]) => [tag - 1, end]);
  }
}

/** Results of {@linkcode Producer.tryReserve} and {@linkcode Consumer.peek} that are not indexes. */
export const FULL = -1;
export const EMPTY = -1;
export const IN_FLIGHT = -2;
export const END = -3;
/** A record reserved and marked but not committed: {@linkcode Consumer.reservedIdx} and span. */
export const RESERVED = -4;
/**
 * {@linkcode Consumer.peek} stepped over as many skip records as it was allowed without finding
 * anything else: look again once the caller has checked its deadline.
 */
export const SKIPPING = -5;
/**
 * The most records that deliver nothing (skip and abort records, the rest of a message dropped or
 * begun before this receiver) that one look at the ring steps over or consumes before it lets its
 * caller check the deadline. Senders write a skip record per lap of the ring and per abandoned reservation, and
 * an abort record per failed message; a peer writing them as fast as they are consumed would
 * otherwise keep one look going for as long as it likes. Fragments of a message being put
 * together count too, one step and one more per {@linkcode FRAGMENT_STEP_BYTES} of each: the
 * receiver's limits bound one message, but a peer that begins a new one (or aborts) before each
 * limit is reached would otherwise hold the look without end. A message of more fragments than
 * that takes more than one look, each going on where the last stopped.
 */
export const STEP_LIMIT = 1024;

/**
 * The bytes of fragments copied that count as one step against {@linkcode STEP_LIMIT}: a look
 * copies at most 64 MiB before its caller looks at the clock (one fragment of 128 MiB in a ring
 * of the largest capacity).
 */
export const FRAGMENT_STEP_BYTES = 64 * 1024;

/**
 * The fewest records of a run that {@linkcode Parking.commitRun} commits where the runtime sets
 * no {@linkcode Parking.commitRunMin}: in Deno and Bun a call costs about what 2-5 commit stores
 * cost on one thread, and between two processes each store it saves is a fence.
 */
const NATIVE_RUN_MIN = 4;

/** The messages of a run whose storage a sender keeps for the next run (more are let go). */
const RUN_KEPT = 1024;

/** The most bytes one {@linkcode Consumer.sweep} takes: 64 Ki words, 1-2 ms of CASes and stores. */
export const SWEEP_MAX = 512 << 10;

/** A sender's private state. */
export class Producer {
  /**
   * The end position of this sender's last reservation; in SPSC also the tail position (this
   * sender is its only writer).
   */
  #tail: number;
  /** This sender saw `RX_CLOSED`: the close is final, so every later send fails at once. */
  #rxClosed = false;
  /** The last `head` seen: bounds free space, and is what a parked sender waits to see move. */
  headSeen: number;
  /**
   * Its sender closed or detached (set by the sender): a {@linkcode commitRun} in progress, whose
   * element getter did that, writes nothing more.
   */
  left = false;
  /** The sender's call under way (`send`, `reserve`...), which the errors found here name. */
  call = "send";
  /**
   * The messages of the run {@linkcode commitRun} writes, each cleared once written: an array
   * without a prototype, so that no accessor a script put on `Array.prototype` runs when an
   * element is stored or read.
   */
  #picked: (Uint8Array | undefined)[] = noPrototype();
  /** Their lengths, as counted before anything was reserved. */
  #lens = new Int32(RUN_KEPT);
  /** {@linkcode commitRun} is counting a run: an element's getter that sends through this sender. */
  #counting = false;
  /**
   * The error of the last {@linkcode commitRun} that found the receiver closed before it had taken
   * the whole run, and the index of its first message not sent then (past the run's first when
   * the receiver took some of it): an error of a nested call (an element's getter sending through
   * this sender) is another object.
   */
  runClosed: { error: Error; sent: number } | undefined;
  readonly #r: Ring;
  /** 0 in SPSC; the slot + 1 in MPSC, written into each record for reassembly. */
  readonly #tag: number;

  /** `tail`: where it starts, as its attach checked it (default: as it is now). */
  constructor(ring: Ring, slot: number, tail = atomicLoad(ring.i32, TAIL)) {
    this.#r = ring;
    this.#tail = tail & L.POS_MASK;
    this.headSeen = atomicLoad(ring.i32, HEAD) & L.POS_MASK;
    this.#tag = ring.mode === L.MODE_MPSC ? slot + 1 : 0;
  }

  /**
   * Reserves a record for a `len`-byte payload (len <= maxRecord); returns its data index, or
   * {@linkcode FULL}. Writes a skip record first when it would cross the end of the data area.
   * The receiver's close is not looked for while there is room (the {@linkcode commit} that
   * follows finds it), but FULL is never returned once the receiver has closed: `EPIPE`.
   */
  tryReserve(len: number): number {
    const r = this.#r;
    if (this.#rxClosed) throw r.closedError(`ChannelSender.${this.call}`);
    const span = L.recordSpan(len);
    return r.mode === L.MODE_SPSC ? this.#reserveSpsc(span) : this.#reserveMpsc(span);
  }

  /**
   * Run by a synchronous send that found the ring full and is about to spin (`Spinner.spins` in
   * `spin.ts`), in a channel of one sender: waits, while the receiver keeps taking messages,
   * until 1 / {@linkcode ROOM_GATHER_DIVISOR} of the ring is free (or the `len`-byte record's
   * span, if more), looking at `head` every
   * {@linkcode ROOM_GATHER_POLL_MS}. It stops as soon as `head` stood still between two looks (the
   * receiver stopped, died, or cannot run while this thread spins on its core), after
   * {@linkcode ROOM_GATHER_MAX_MS} and at `deadline` (a `performance.now()` time); the wait for
   * room then goes on as before, taking any room that fits. Reads nothing but `head`.
   */
  gatherRoom(len: number, deadline: number): void {
    const r = this.#r;
    const want = Math.max(r.capacity / ROOM_GATHER_DIVISOR, L.recordSpan(len));
    const start = performance.now();
    let last = -1;
    for (;;) {
      const head = atomicLoad(r.i32, HEAD) & L.POS_MASK;
      const used = (this.#tail - head) & L.POS_MASK;
      // Corrupt positions are the reservation's to report.
      if (used > r.capacity || r.capacity - used >= want || head === last) return;
      last = head;
      const look = performance.now();
      if (look - start >= ROOM_GATHER_MAX_MS || look >= deadline) return;
      while (performance.now() - look < ROOM_GATHER_POLL_MS) {
        // spin: no shared memory is touched until the next look
      }
    }
  }

  /**
   * A send of the `len`-byte message `bytes` of one record through {@linkcode Parking.put}: what
   * `put` returns (-1 with nothing reserved also when this sender saw the close).
   */
  putNative(
    put: (message: Uint8Array, length: number) => number,
    state: Int32Array,
    bytes: Uint8Array,
    len: number,
  ): number {
    if (this.#rxClosed) return -1;
    state[PUT_TAIL] = this.#tail;
    state[PUT_HEAD_SEEN] = this.headSeen;
    state[PUT_RX_CLOSED] = 0;
    state[PUT_TAG] = this.#tag; // every sender of the channel in this process shares the state
    const got = put(bytes, len);
    this.#tail = state[PUT_TAIL];
    this.headSeen = state[PUT_HEAD_SEEN];
    if (state[PUT_RX_CLOSED] !== 0) this.#rxClosed = true;
    return got;
  }

  #reserveSpsc(span: number): number {
    const r = this.#r;
    for (let round = 0; round < 2; round++) {
      const idx = this.#tail & r.mask;
      const toEnd = r.capacity - idx;
      const need = span < toEnd ? span : toEnd;
      let used = (this.#tail - this.headSeen) & L.POS_MASK;
      if (used > r.capacity || r.capacity - used < need) {
        if (r.tailClosed()) throw r.closedError(`ChannelSender.${this.call}`);
        this.headSeen = atomicLoad(r.i32, HEAD) & L.POS_MASK;
        used = (this.#tail - this.headSeen) & L.POS_MASK;
        if (used > r.capacity) {
          throw this.#r.error("EBADMSG", `ChannelSender.${this.call}`, "corrupt channel positions");
        }
        if (r.capacity - used < need) return this.#full();
      }
      this.#tail = (this.#tail + need) & L.POS_MASK;
      // A plain store, as the mark's below (Relaxed in Rust): the commit's Atomics.store orders
      // both before the commit, and no receiver needs `tail` sooner (this sender is its only
      // writer). An Atomics.store here would cost every message 8-10 ns in Node.
      r.i32[TAIL] = this.#tail;
      if (need === span) return this.#mark(idx, span);
      this.#commitSkip(idx, toEnd);
    }
    throw this.#r.error(
      "EBADMSG",
      `ChannelSender.${this.call}`,
      "a reservation did not fit after wrapping",
    );
  }

  /**
   * The whole send of a message of one record, in a channel of one sender, when the room this
   * sender last saw holds it before the end of the data area: reserves it (as
   * {@linkcode tryReserve}), copies the `len` bytes of `bytes` in 32-bit words from `words` (a
   * view of exactly its first `len >> 2` words, which the caller checked) and the bytes after
   * them, and commits it. False with
   * nothing reserved otherwise: the caller takes the general path, which looks at `head` again,
   * wraps and waits.
   *
   * @throws {SharedMemoryError} `EPIPE` if the receiver closed before it consumed the message.
   */
  putWords(bytes: Uint8Array, words: Int32Array, len: number): boolean {
    const r = this.#r;
    const n = len >> 2;
    if (r.mode !== L.MODE_SPSC || this.#rxClosed) return false;
    const tail = this.#tail;
    const idx = tail & r.mask;
    const span = L.recordSpan(len);
    const used = (tail - this.headSeen) & L.POS_MASK;
    if (span > r.capacity - idx || used > r.capacity || r.capacity - used < span) return false;
    this.#tail = (tail + span) & L.POS_MASK;
    const i32 = r.i32;
    i32[TAIL] = this.#tail; // plain stores, as #reserveSpsc's
    const first = DATA + (idx >> 2);
    i32[first] = L.markWord(0, span);
    const from = first + 2;
    for (let w = 0; w < n; w++) i32[from + w] = words[w];
    if ((n << 2) < len) {
      const ring = r.bytes;
      const start = from << 2; // the payload's byte offset
      for (let i = n << 2; i < len; i++) ring[start + i] = bytes[i];
    }
    if (!this.commit(idx, len, 0)) throw r.closedError(`ChannelSender.${this.call}`);
    return true;
  }

  #reserveMpsc(span: number): number {
    const r = this.#r;
    let lastHead = -1;
    let lastTail = -1;
    for (let tries = 0;; tries++) {
      // Each failed try means another sender moved `tail` (or a peer wrote it): after many, the
      // caller waits for room as when the ring is full, and checks its deadline meanwhile.
      if (tries === STEP_LIMIT) return this.#full();
      const head = atomicLoad(r.i32, HEAD) & L.POS_MASK;
      const tail = atomicLoad(r.i32, TAIL);
      this.headSeen = head;
      if ((tail & TAIL_CLOSED) !== 0) throw r.closedError(`ChannelSender.${this.call}`);
      if ((tail & 7) !== 0) {
        throw this.#r.error(
          "EBADMSG",
          `ChannelSender.${this.call}`,
          `corrupt channel tail 0x${tail.toString(16)}: not on a record boundary (a sender ` +
            "marks it so when it finds tail gone back over records not read yet)",
        );
      }
      const used = (tail - head) & L.POS_MASK;
      if (used > r.capacity) {
        if (head === lastHead && tail === lastTail) {
          throw this.#r.error("EBADMSG", `ChannelSender.${this.call}`, "corrupt channel positions");
        }
        lastHead = head;
        lastTail = tail;
        continue;
      }
      const idx = tail & r.mask;
      const toEnd = r.capacity - idx;
      const need = span < toEnd ? span : toEnd;
      if (r.capacity - used < need) return this.#full();
      const next = (tail + need) & L.POS_MASK;
      // Before the tail CAS: a sweep that ended before this load took nothing past its tail,
      // which this CAS then moves (see #claim).
      const sweeps = atomicLoad(r.i32, SWEEPS);
      if (atomicCompareExchange(r.i32, TAIL, tail, next) !== tail) continue;
      // Swept (this sender stalled before its mark) or written by a peer: reserve again.
      if (!this.#claim(idx, tail, L.markWord(this.#tag - 1, need), sweeps)) continue;
      this.#tail = next;
      if (need !== span) {
        this.#commitSkip(idx, toEnd);
        continue;
      }
      // A plain store: the commit's Atomics.store publishes it.
      r.i32[DATA + (idx >> 2) + 1] = this.#tag;
      return idx;
    }
  }

  /**
   * Marks the record just reserved at `idx` as this sender's (SPSC: nobody else writes there):
   * the commit word `markWord(0, span)`. A receiver that finds this sender dead steps over the
   * record as a skip record of that span.
   */
  #mark(idx: number, span: number): number {
    // A plain store: the commit's Atomics.store orders it before the commit, and a receiver
    // reads it only when this sender has died (an SC store here would cost every message).
    this.#r.i32[DATA + (idx >> 2)] = L.markWord(0, span);
    return idx;
  }

  /**
   * Claims the record reserved at position `pos` (data index `idx`) by a CAS of its commit word
   * from 0 to `mark` (MPSC); `sweeps` is the word as loaded before the tail CAS. False when the
   * receiver swept the reservation first (see {@linkcode Consumer.sweep}) or a peer wrote the
   * word: nothing is written, and the caller reserves again.
   *
   * A sweep CASes each word it takes from 0 to SWEPT, so one of the two CASes fails. What
   * remains is a claim that lands after a sweep took the word and zeroed it again: the sweep
   * raised `sweeps` before that, so the load below sees it changed, unless it was odd already.
   * A sweep that had ended before the first load took nothing at or past `pos`.
   *
   * A sender killed between such a CAS and its undo leaves a stale mark. Where it lands on the
   * first word of a later reservation, the sender that reserved it finds a mark where only its
   * own can be, and takes it over with a second CAS, once it has checked that its position is
   * not consumed (a mark there may also be a live sender's of a later lap, if this one stalled
   * before its first CAS long enough to be swept). The second CAS fails if the receiver took the
   * mark first ({@linkcode Consumer.dropMark}) or a stalled sender undid it: the claim then
   * fails, and never CASes again (a 0 there may be the receiver's, after it took the word).
   *
   * A committed record's word (not a skip record) at a position not consumed is no sender's of
   * this lap nor the receiver's: `tail` went back over records not read yet (a peer wrote it,
   * or stored a value it had read before). Reserving again would land inside that record's
   * payload, where a zero word or one that looks like a stale mark let this sender write over
   * another sender's message, delivered as it was: `EBADMSG` instead. (At a position consumed,
   * it is a later lap's: this sender stalled and was swept.)
   */
  #claim(idx: number, pos: number, mark: number, sweeps: number): boolean {
    const r = this.#r;
    const word = DATA + (idx >> 2);
    // Before the CAS too, when a sweep has run since: a sender swept while it stalled before
    // its claim finds its position consumed and does not CAS at all (a lap later, the word at
    // that index may be 0 again inside another sender's record, or free space at `head`). A
    // plain load: this look only narrows that window (an `Atomics` one costs 7-10 ns); the one
    // after the CAS is what the claim's soundness rests on.
    if ((sweeps & 1) !== 0 || r.i32[SWEEPS] !== sweeps) {
      if (this.#consumed(pos)) return false;
    }
    const seen = atomicCompareExchange(r.i32, word, 0, mark);
    if (seen !== 0) {
      const kind = seen & (L.REC_COMMITTED | L.REC_SKIP);
      if (kind !== L.REC_SKIP) {
        if (kind === COMMITTED && !this.#consumed(pos)) {
          // `tail` now lies inside that record: off the record boundary, every sender and the
          // receiver refuse it, and no later reservation claims a word of its payload.
          atomicOr(r.i32, TAIL, L.TAIL_BROKEN);
          throw r.error(
            "EBADMSG",
            `ChannelSender.${this.call}`,
            `a record committed (0x${(seen >>> 0).toString(16)}) at position 0x${
              pos.toString(16)
            }, which this sender has just reserved: tail went back over records not read yet`,
          );
        }
        return false;
      }
      if (this.#consumed(pos)) return false;
      if (atomicCompareExchange(r.i32, word, seen, mark) !== seen) return false;
    }
    if (this.#quiet(sweeps) || !this.#consumed(pos)) return true;
    // Swept: undo. Nobody else writes the word now (the receiver is past it, senders reach it
    // a lap later).
    atomicCompareExchange(r.i32, word, mark, 0);
    return false;
  }

  /** No sweep began or ended since `sweeps` was loaded, and none was under way then. */
  #quiet(sweeps: number): boolean {
    return (sweeps & 1) === 0 && atomicLoad(this.#r.i32, SWEEPS) === sweeps;
  }

  /**
   * Whether the receiver has consumed position `pos` (behind `head`, or between `head` and
   * `zeroing`), which it does to a record not committed only in a sweep.
   */
  #consumed(pos: number): boolean {
    const r = this.#r;
    const head = atomicLoad(r.i32, HEAD) & L.POS_MASK;
    const ahead = (pos - head) & L.POS_MASK;
    return ahead >= r.capacity || ahead < ((atomicLoad(r.i32, ZEROING) - head) & L.POS_MASK);
  }

  /** FULL, or `EPIPE` if the receiver closed: a sender waiting for room looks for the close here. */
  #full(): number {
    if (this.#r.rxClosed()) throw this.#r.closedError(`ChannelSender.${this.call}`);
    return FULL;
  }

  #commitSkip(idx: number, toEnd: number): void {
    const r = this.#r;
    atomicStore(r.i32, DATA + (idx >> 2), COMMITTED | L.REC_SKIP | (toEnd - 8));
    r.wakeConsumer();
  }

  /**
   * Publishes the record at `idx` (this sender's last reservation; its producer word was
   * written with the mark); `kind` is 0, REC_MORE or REC_ABORT. Returns false when the receiver
   * closed the channel without consuming the record: it will never be read. A record committed
   * while the receiver closes counts as sent only if the receiver consumed it before closing,
   * or if the wake-up after the commit came before the close mark (the commit then came before
   * the close, like any message the receiver leaves unread).
   */
  commit(idx: number, len: number, kind: number): boolean {
    const r = this.#r;
    atomicStore(r.i32, DATA + (idx >> 2), COMMITTED | kind | len);
    return !r.wakeConsumer() || this.#consumedBeforeClose(this.#tail);
  }

  /**
   * The receiver closed: true if it had consumed everything up to position `end` (it publishes
   * `head` before its close mark). Later sends fail at once.
   */
  #consumedBeforeClose(end: number): boolean {
    const behind = this.#behindAtClose(end);
    return behind === 0 || behind > this.#r.capacity;
  }

  /**
   * The receiver closed: how far `head` was behind position `end` then (it publishes `head` before
   * its close mark). Unconsumed: `head` up to a ring behind `end`. Consumed: `head` at `end` or
   * anywhere ahead, however far: other senders' records may have gone round the ring many times
   * between a commit and this look (positions wrap only after 2 GiB). Later sends fail at once.
   */
  #behindAtClose(end: number): number {
    this.#rxClosed = true;
    return (end - (atomicLoad(this.#r.i32, HEAD) & L.POS_MASK)) & L.POS_MASK;
  }

  /**
   * The batch path of one sender (SPSC): sends `messages[from]`, `messages[from + 1]`, ... while
   * each is a `Uint8Array` of one record and they fit, together, in the room before the end of
   * the data area. The tail moves once for all of them, and each record is marked and written in
   * order as one by one. Where native code commits a run ({@linkcode Parking.commitRun}), the
   * records are committed together after the last is written, and the receiver is woken once;
   * else each is committed as it is written, and the receiver is woken after the first and after
   * the last, if it is parked. Returns the index of the first message not sent: `from` when none
   * was (the caller then sends one by one, which waits, wraps and reports errors).
   *
   * Every element is read, checked and counted before anything is reserved: the caller's code
   * (an element's getter, a Proxy, a `length` or `constructor` of its own) runs only then, not
   * while records are reserved and not committed (see `docs/channel.md`, _The batch's commit_).
   * The writing checks that each message still holds the bytes counted, by its elements.
   */
  commitRun(messages: readonly unknown[], from: number): number {
    const r = this.#r;
    if (r.mode !== L.MODE_SPSC) return from;
    if ((atomicLoad(r.i32, FLAGS) & L.FLAG_RX_CLOSED) !== 0) return from;
    const start = this.#tail;
    const idx = start & r.mask;
    const toEnd = r.capacity - idx;
    let free = r.capacity - ((start - this.headSeen) & L.POS_MASK);
    if (free < toEnd) {
      this.headSeen = atomicLoad(r.i32, HEAD) & L.POS_MASK;
      const used = (start - this.headSeen) & L.POS_MASK;
      if (used > r.capacity) return from; // corrupt: the one-by-one path reports it
      free = r.capacity - used;
    }
    const room = free < toEnd ? free : toEnd;
    // A getter of an element sending through this sender while this run counts goes one by one:
    // the run's storage is this sender's, and this run finds `tail` moved and goes one by one too.
    if (this.#counting) return from;
    const picked = this.#picked;
    let lens = this.#lens;
    let bytes = 0;
    let n = 0;
    let counted = false;
    this.#counting = true;
    try {
      for (let end = from; end < messages.length; end++, n++) {
        let message: unknown;
        let len: number;
        try {
          message = messages[end];
          // A `Buffer` too, told by the engine's tag (which runs no code of the caller's; a
          // lookalike that `plainBytes` lets through is refused by `byteCount`). The tag only
          // where `plainBytes` says no: in JavaScriptCore it is a call into the runtime (19 ns).
          if (!plainBytes(message) && !isUint8Array(message)) break;
          len = byteCount(message); // throws if it is not really a typed array
        } catch {
          break; // the one-by-one path reads it again, and reports what threw
        }
        // One over a detached buffer goes one by one, which refuses it.
        if (len > r.maxRecord || (len === 0 && viewDetached(message))) break;
        const span = L.recordSpan(len);
        if (bytes + span > room) break;
        bytes += span;
        if (n === lens.length) {
          const grown = new Int32(n * 2);
          for (let i = 0; i < n; i++) grown[i] = lens[i]; // no `set`, which a script may replace
          lens = this.#lens = grown;
        }
        picked[n] = message as Uint8Array;
        lens[n] = len;
      }
      counted = true;
    } finally {
      this.#counting = false;
      // The array's own `length` threw: nothing is reserved, and nothing counted is kept.
      if (!counted) this.#forget(0, n);
    }
    if (n === 0) return from;
    // The getters above may have closed this sender (its close marks `tail`, which this store
    // would undo; a channel's close closes its senders, then unmaps) or sent through it (`tail`
    // moved): the one-by-one path reports or sends.
    if (this.left || atomicLoad(r.i32, TAIL) !== start) {
      this.#forget(0, n);
      return from;
    }
    this.#tail = (start + bytes) & L.POS_MASK;
    atomicStore(r.i32, TAIL, this.#tail);
    const native = n >= (r.parking.commitRunMin ?? NATIVE_RUN_MIN)
      ? r.parking.commitRun
      : undefined;
    const stop = idx + bytes;
    // `set` counts each message again, and one that follows a growable SharedArrayBuffer may
    // have grown since it was counted above (another thread grows it at any moment): copied
    // whole, it runs past its record. So into `r.bytes`, which ends with the data area, only
    // where the area after the run is free to its end (then what the copy wrote past the run is
    // zeroed below); else into a view that ends with the run (an allocation per run).
    const freeAfter = stop === r.capacity || this.#freeFrom(stop);
    const data = freeAfter ? r.bytes : bytesView(r.buffer, 0, L.OFF_DATA + stop);
    let closed = false;
    let clean = true;
    /** The length of the message that failed the check below, when it did. */
    let grown = 0;
    let at = idx;
    let k = 0;
    for (; k < n; k++) {
      const message = picked[k]!;
      picked[k] = undefined;
      const len = lens[k];
      const span = L.recordSpan(len);
      if (at + span > stop) break;
      this.#mark(at, span);
      if (len !== 0) {
        try {
          copyInto(data, message, L.OFF_DATA + at + 8);
        } catch {
          // Detached, or grown past the run: `set` threw before it copied anything. Or code of
          // the caller's threw after it did (a replaced `call`): zeroed below as after a growth.
          clean = false;
          break;
        }
      }
      // A later element's getter detached, shrank or grew this one's buffer, or another thread
      // grew it (a view that follows a growable SharedArrayBuffer) before `set` counted it: it
      // is left to the one-by-one path, and the run's rest becomes skip records. The message is
      // a real typed array (counted by the engine's getter above), whose elements are its own:
      // it held `len` bytes exactly when element `len - 1` exists and element `len` does not
      // (it cannot have shrunk since: no code of the caller's runs here, and no thread can
      // shrink a SharedArrayBuffer). Looked at after the copy, which may have written past this
      // record, over the run's next records, and past the run where `data` is `r.bytes`.
      if (
        message[len] !== undefined ||
        (len === 0 ? viewDetached(message) : message[len - 1] === undefined)
      ) {
        clean = false;
        grown = viewLength(message);
        break;
      }
      if (native === undefined) {
        atomicStore(r.i32, DATA + (at >> 2), COMMITTED | len);
        if (k === 0 && r.wakeConsumer()) closed = true;
      }
      at += span;
    }
    this.#forget(k, n);
    // What the copy wrote from `at` on is zeroed before anything there is committed (a skip
    // record's payload is zero: the receiver clears only its commit word), and before the
    // records before it are (the receiver waits at a zero word).
    if (!clean) {
      // Past the run too, in free space, up to what the message has grown to (see clearAfter).
      const past = at + 8 + grown < r.capacity ? at + 8 + grown : r.capacity;
      const end = freeAfter && past > stop ? past : stop;
      zeroBytes(r, L.OFF_DATA + at, L.OFF_DATA + end);
    }
    // Whether the receiver is still to be woken (and its close looked for) after the last store.
    let wake = true;
    if (native !== undefined && k !== 0) {
      const got = native(idx, lens, k);
      if (got >= 0) {
        closed = got === 1;
        wake = false;
      } else {
        // Nothing written (a run native code found wrong; not seen): committed here, in order.
        for (let j = 0, w = idx; j < k; w += L.recordSpan(lens[j++])) {
          atomicStore(r.i32, DATA + (w >> 2), COMMITTED | lens[j]);
        }
      }
    }
    if (at < stop) {
      this.#skipRun(at, stop);
      wake = true;
    }
    const behind = (wake && r.wakeConsumer()) || closed ? this.#behindAtClose(this.#tail) : 0;
    if (behind !== 0 && behind <= r.capacity) {
      // As one by one, a message counts as sent when the receiver took it before its close: the
      // run's records that `head` passed (one sender: `head` is at most `bytes` behind `tail`
      // when it stopped in the run, further when it stopped before it).
      const taken = behind < bytes ? bytes - behind : 0;
      let sent = 0;
      for (let end = 0; sent < k && (end += L.recordSpan(lens[sent])) <= taken;) sent++;
      const error = r.closedError(`ChannelSender.${this.call}`);
      this.runClosed = { error, sent: from + sent };
      throw error;
    }
    return from + k;
  }

  /**
   * Whether, in a channel of one sender, the data area from the end of the record of `len`
   * bytes just reserved at `idx` to the end of the area is free, as far as this sender has seen
   * (`head` only moves on; read again if what was seen says no): nobody reads there before
   * this record is committed.
   */
  freeAfter(idx: number, len: number): boolean {
    return this.#r.mode === L.MODE_SPSC && this.#freeFrom(idx + L.recordSpan(len));
  }

  /**
   * Whether, in a channel of one sender whose `tail` is past data index `end`, the data area
   * from `end` to its end is free, as far as this sender has seen.
   */
  #freeFrom(end: number): boolean {
    if (((this.#tail - this.headSeen) & L.POS_MASK) <= end) return true;
    this.headSeen = atomicLoad(this.#r.i32, HEAD) & L.POS_MASK; // a plain load on x86 and ARM64
    return ((this.#tail - this.headSeen) & L.POS_MASK) <= end;
  }

  /**
   * Zeroes what a copy of a message that grew to `grown` bytes may have written past the `len`
   * bytes of the record at `idx`, where {@linkcode freeAfter} said the area after it is free
   * (free space is zero): up to `grown` bytes from the payload's start (the message only grows,
   * and was no longer than that when `set` counted it), or the end of the area (a `set` that
   * would go past it throws before it copies anything).
   */
  clearAfter(idx: number, len: number, grown: number): void {
    const r = this.#r;
    const end = idx + 8 + grown < r.capacity ? idx + 8 + grown : r.capacity;
    zeroBytes(r, L.OFF_DATA + idx + 8 + len, L.OFF_DATA + end);
  }

  /** Commits the data indices `at..stop` of a run as skip records: the run broke off there. */
  #skipRun(at: number, stop: number): void {
    const half = this.#r.capacity / 2;
    // A skip record's length has 27 bits (`REC_LEN_MASK`): one spans at most half the ring.
    for (let span = 0; at < stop; at += span) {
      span = stop - at < half ? stop - at : half; // not a global `Math.min`
      this.#commitSkip(at, span);
    }
  }

  /**
   * Drops the messages `#picked[from..to]` of a run, the rest of them already dropped (a loop:
   * `fill` is a method a script may replace); after a run of more than {@linkcode RUN_KEPT}
   * messages, the run's storage itself, so that one long run does not hold its size for good.
   */
  #forget(from: number, to: number): void {
    if (to > RUN_KEPT) {
      this.#picked = noPrototype();
      this.#lens = new Int32(RUN_KEPT);
      return;
    }
    const picked = this.#picked;
    for (let i = from; i < to; i++) picked[i] = undefined;
  }

  /**
   * Abandons the record at `idx`: zeroes it, then its producer word, and commits it as a skip
   * record.
   */
  abandon(idx: number, len: number): void {
    const r = this.#r;
    // Not with `fill`, which a script can replace (and make throw: this runs when a copy threw).
    const start = L.OFF_DATA + idx + 8;
    zeroBytes(r, start, start + len);
    // The payload first: a receiver that finds this sender killed in between takes the whole
    // record while the producer word is there, and only the mark's word once it is gone (see
    // `Consumer.dropMark`), so the rest must be zero by then. An `Atomics` store, which the
    // engines do not move above the plain ones (this path is rare).
    atomicStore(r.i32, DATA + (idx >> 2) + 1, 0);
    atomicStore(r.i32, DATA + (idx >> 2), COMMITTED | L.REC_SKIP | (L.recordSpan(len) - 8));
    r.wakeConsumer();
  }

  /** True when a parked sender should look again: `head` moved or someone closed. */
  shouldWake(): boolean {
    const r = this.#r;
    return (atomicLoad(r.i32, HEAD) & L.POS_MASK) !== this.headSeen || r.rxClosed() ||
      r.tailClosed();
  }
}

/**
 * A receiver's private state.
 *
 * Zero only when publishing: a consumed record stays intact in the ring until `head` is stored
 * past it, and {@linkcode publish} zeroes the records it hands back just before it stores
 * `head`. A receiver that dies before that (inside a {@linkcode consume} batch, or while a view
 * of a message is lent out) leaves whole records behind the published `head`, which the receiver
 * that takes over reads again. One that dies while it zeroes has announced the range first
 * (`zeroing`, see {@linkcode announce}): the receiver that takes over finishes the zeroing
 * instead of finding a zeroed record there.
 */
export class Consumer {
  /** The receiver's call under way (`recv`, `recvMany`...), which the errors found here name. */
  call = "recv";
  /** The receiver position (this receiver is its only writer). */
  head: number;
  /** The `head` last stored into shared memory ({@linkcode consume} runs ahead of it). */
  #published: number;
  /**
   * The `head` at which this receiver last looked for parked senders (see
   * {@linkcode WAKE_LOOK_BYTES}).
   */
  #looked: number;
  /**
   * One sender: the end of the whole messages from `head` on whose bytes this receiver has
   * acquired ({@linkcode readAhead}); meaningless once `head` is past it ({@linkcode peek} sets
   * it back to `head`).
   */
  #ready: number;
  #tailSeen: number;
  /** The commit word of the message {@linkcode peek} found. */
  word = 0;
  /** Its payload length. */
  len = 0;
  /** How many skip records that peek stepped over. */
  stepped = 0;
  /** For RESERVED: the reserved record's data index, span, and the sender slot its mark names. */
  reservedIdx = 0;
  reservedSpan = 0;
  reservedSlot = 0;
  readonly #r: Ring;
  /** Unpublished bytes at which {@linkcode consume} publishes `head`. */
  readonly #publishEvery: number;
  /** Bytes handed back at which {@linkcode #store} looks for parked senders. */
  readonly #lookEvery: number;

  /**
   * The receiver's pid: {@linkcode publish} hands nothing back while the receiver's place holds
   * another (a peer cleared it, and another receiver took it: `head` is that one's). 0: not
   * looked at.
   */
  readonly #pid: number;

  /**
   * `head`: where it starts, as its attach checked it (default: as it is now); `pid`: the
   * receiver's (see {@linkcode #pid}).
   */
  constructor(ring: Ring, head = atomicLoad(ring.i32, HEAD), pid = 0) {
    this.#r = ring;
    this.#pid = pid;
    this.#publishEvery = Math.min(ring.capacity >> 2, PUBLISH_EVERY);
    this.#lookEvery = Math.min(ring.capacity >> 2, WAKE_LOOK_BYTES);
    this.head = head & L.POS_MASK;
    this.#published = this.#looked = this.#ready = this.head;
    this.#tailSeen = this.head;
  }

  /**
   * The whole receive of a message {@linkcode readAhead} acquired, into `target`, whose first
   * `count` 32-bit words `words` views: when the message at `head` is a whole one-record
   * message of at most `max` bytes and `count * 4` or fewer, among those acquired, and
   * every record before `head` is handed back, copies it out word by word, zeroing the ring as
   * it goes (one pass instead of a copy and a zeroing), zeroes the rest of its record and stores
   * `head` past it: its length. Else -1, with nothing taken: the caller peeks, and
   * {@linkcode peek} judges what this leaves (only what peek would accept is taken here).
   */
  takeReady(target: Uint8Array, words: Int32Array, count: number, max: number): number {
    const head = this.head;
    const ahead = (this.#ready - head) & L.POS_MASK;
    if (ahead === 0 || ahead > READY_BYTES || this.#published !== head) return -1;
    const r = this.#r;
    const i32 = r.i32;
    const first = DATA + ((head & r.mask) >> 2);
    // A plain read: readAhead's Atomics.load ordered its sender's store before this one. A peer
    // may have written it since: it is checked as peek would, and the message lies inside what
    // readAhead found (inside the tail, before the end of the data area).
    const word = i32[first];
    if ((word & (COMMITTED | L.REC_KINDS)) !== COMMITTED) return -1;
    const len = word & L.REC_LEN_MASK;
    const n = len >> 2;
    const span = L.recordSpan(len);
    if (len > max || len > r.maxRecord || n > count || span > ahead) return -1;
    i32[ZEROING] = (head + span) & L.POS_MASK; // see announce
    const from = first + 2;
    for (let w = 0; w < n; w++) {
      words[w] = i32[from + w];
      i32[from + w] = 0;
    }
    if ((n << 2) < len) {
      const bytes = r.bytes;
      const start = from << 2; // the payload's byte offset
      for (let i = n << 2; i < len; i++) target[i] = bytes[start + i];
    }
    for (let w = first + (span >> 2) - 1; w >= from + n; w--) i32[w] = 0;
    i32[first + 1] = 0;
    i32[first] = 0;
    this.head = (head + span) & L.POS_MASK;
    this.#store();
    return len;
  }

  /**
   * After {@linkcode peek} found a whole one-record message at `head`, in a channel of one
   * sender: finds the whole messages of at most `max` bytes that follow it back to back (plain
   * reads, up to {@linkcode READY_BYTES} past `head`, the tail last seen, the end of the data
   * area and the first longer message, which takeReady would leave to peek anyway) and acquires
   * them all with one `Atomics.load` of the last one's commit word, for
   * {@linkcode takeReady}. That sender commits in ring order, so its store of that word follows
   * its writes of every record before it. A sender that took over from a dead one wrote after
   * it: a dead process's stores have all reached memory. Several senders commit in any order, so
   * with several each message is acquired on its own.
   */
  readAhead(max: number): void {
    const r = this.#r;
    const head = this.head;
    const idx = head & r.mask;
    let end = L.recordSpan(this.len); // the message at head, which peek acquired
    this.#ready = (head + end) & L.POS_MASK;
    if (r.mode !== L.MODE_SPSC) return;
    const seen = (this.#tailSeen - head) & L.POS_MASK;
    if (seen > r.capacity) return;
    // Not `Math.min`, which a script can replace: the message at head is acquired already.
    const toEnd = r.capacity - idx;
    let limit = seen < toEnd ? seen : toEnd;
    if (limit > READY_BYTES) limit = READY_BYTES;
    const i32 = r.i32;
    let last = -1;
    let lastWord = 0;
    while (end < limit) {
      const word = i32[DATA + ((idx + end) >> 2)];
      if ((word & (COMMITTED | L.REC_KINDS)) !== COMMITTED) break;
      const len = word & L.REC_LEN_MASK;
      if (len > max || len > r.maxRecord) break;
      const span = L.recordSpan(len);
      if (span > limit - end) break;
      last = end;
      lastWord = word;
      end += span;
    }
    if (last >= 0 && atomicLoad(i32, DATA + ((idx + last) >> 2)) === lastWord) {
      this.#ready = (head + end) & L.POS_MASK;
    }
  }

  /**
   * Looks at `head`, stepping over skip records (at most `limit`: then SKIPPING; how many in
   * {@linkcode stepped}): a message's data index (its commit word and length in {@linkcode word}
   * and {@linkcode len}), or EMPTY, IN_FLIGHT, END, RESERVED or SKIPPING.
   */
  peek(limit: number = STEP_LIMIT): number {
    const r = this.#r;
    this.#ready = this.head;
    for (this.stepped = 0;; this.stepped++) {
      if (this.stepped >= limit) return SKIPPING;
      // A batch that consumed a whole ring without handing it back stands at its own oldest
      // record, not zeroed yet: hand it back first (it read as a record past the tail, EBADMSG).
      if (
        this.#published !== this.head && ((this.head - this.#published) & L.POS_MASK) >= r.capacity
      ) this.publish();
      const idx = this.head & r.mask;
      const word = atomicLoad(r.i32, DATA + (idx >> 2));
      if (word === 0) {
        const tail = atomicLoad(r.i32, TAIL);
        const pos = tail & L.POS_MASK;
        if (pos === this.head) return (tail & TAIL_CLOSED) !== 0 ? END : EMPTY;
        if (((pos - this.head) & L.POS_MASK) > r.capacity) {
          throw this.#r.error(
            "EBADMSG",
            `ChannelReceiver.${this.call}`,
            "corrupt channel: tail is more than the capacity ahead",
          );
        }
        return IN_FLIGHT;
      }
      const committed = (word & COMMITTED) !== 0;
      // A reservation mark: REC_SKIP without the commit bit, its sender's slot and its span in
      // 8-byte units (every other bit is one of those).
      const len = committed ? word & L.REC_LEN_MASK : (word & L.MARK_UNITS_MASK) << 3;
      const skip = (word & L.REC_SKIP) !== 0;
      const kind = word & L.REC_KINDS;
      const slot = (word & L.MARK_SLOT_MASK) >>> L.MARK_SLOT_SHIFT;
      const valid = !committed
        ? skip && len <= r.maxRecord && (slot === 0 || r.mode === L.MODE_MPSC)
        // A whole message, or the last fragment of one.
        : kind === 0 || kind === L.REC_CONT
        ? len <= r.maxRecord
        // A first fragment, or one in the middle.
        : kind === L.REC_MORE || kind === (L.REC_MORE | L.REC_CONT)
        ? len === r.maxRecord
        : kind === L.REC_ABORT
        ? len === 0
        : kind === L.REC_SKIP;
      if (!valid) {
        throw r.error(
          "EBADMSG",
          `ChannelReceiver.${this.call}`,
          `corrupt record at position ${this.head}: commit word 0x${(word >>> 0).toString(16)}`,
        );
      }
      const span = L.recordSpan(len);
      if (span > r.capacity - idx) {
        throw this.#r.error(
          "EBADMSG",
          `ChannelReceiver.${this.call}`,
          `corrupt record at position ${this.head}: crosses the end`,
        );
      }
      // Counted from `head`; a `tail` seen behind `head` (after a skip over a dead sender's
      // reservation) bounds nothing and is looked at again.
      const seen = (this.#tailSeen - this.head) & L.POS_MASK;
      if (seen > r.capacity || span > seen) {
        const tailWord = atomicLoad(r.i32, TAIL);
        const tail = tailWord & L.POS_MASK;
        const avail = (tail - this.head) & L.POS_MASK;
        // A mark at the tail, in free space. MPSC: a sender marks only inside what its tail CAS
        // reserved, which this load sees, so the mark is stale (see `Producer`'s #claim), and
        // the sender that reserves here takes it over. SPSC: the sender's own, whose plain store
        // of `tail` (ordered only before its commit) is not seen yet. Either way nothing is ready.
        if (!committed && avail === 0) return (tailWord & TAIL_CLOSED) !== 0 ? END : EMPTY;
        if (!committed && r.mode === L.MODE_MPSC && span > avail && avail <= r.capacity) {
          // A mark past the tail is nobody's, as above: stale.
          // The first word of a reservation, which its sender takes over, unless it died: the
          // liveness check takes the mark then (never before the sender has had an interval).
          this.reservedIdx = idx;
          this.reservedSpan = span;
          this.reservedSlot = slot;
          return RESERVED;
        }
        if (avail > r.capacity || span > avail) {
          throw this.#r.error(
            "EBADMSG",
            `ChannelReceiver.${this.call}`,
            `corrupt record at position ${this.head}: past the tail`,
          );
        }
        this.#tailSeen = tail;
      }
      if (!committed) {
        this.reservedIdx = idx;
        this.reservedSpan = span;
        this.reservedSlot = slot;
        return RESERVED;
      }
      if (!skip) {
        this.word = word;
        this.len = len;
        return idx;
      }
      if (this.#published === this.head) {
        // Its payload is zero already: only the commit word needs clearing.
        this.announce(len);
        atomicStore(r.i32, DATA + (idx >> 2), 0);
        this.head = (this.head + span) & L.POS_MASK;
        this.#store();
      } else {
        // Behind records consumed but not yet handed back: zeroed with them.
        this.head = (this.head + span) & L.POS_MASK;
      }
    }
  }

  /**
   * A receive of the whole message at `head` into `target` through {@linkcode Parking.take}, when
   * every record before `head` is handed back: its length, or -1 with nothing taken (skip
   * records at `head` may have been stepped over).
   */
  takeNative(
    take: (target: Uint8Array, room: number) => number,
    state: Int32Array,
    target: Uint8Array,
    room: number,
  ): number {
    if (this.#published !== this.head) return -1;
    state[TAKE_HEAD] = this.head;
    state[TAKE_LOOKED] = this.#looked;
    state[TAKE_TAIL_SEEN] = this.#tailSeen;
    const len = take(target, room);
    this.head = this.#published = state[TAKE_HEAD];
    this.#looked = state[TAKE_LOOKED];
    this.#tailSeen = state[TAKE_TAIL_SEEN];
    return len;
  }

  /**
   * How many bytes of records are known to wait from `head`: up to the `tail` last read (a
   * lower bound, as `tail` only moves on), 0 for a `tail` seen behind `head`.
   */
  knownAhead(): number {
    const ahead = (this.#tailSeen - this.head) & L.POS_MASK;
    return ahead > this.#r.capacity ? 0 : ahead;
  }

  /**
   * The batch path's look ahead through {@linkcode Parking.scanRun}: the run of whole messages
   * of at most `small` bytes each committed back to back at `head`, copied into `out` (records
   * and all) with their lengths in `lens`; their count (0 for none). Moves nothing.
   */
  scanNative(
    scanRun: (out: Uint8Array, lens: Int32Array, max: number, small: number) => number,
    state: Int32Array,
    out: Uint8Array,
    lens: Int32Array,
    max: number,
    small: number,
  ): number {
    state[TAKE_HEAD] = this.head;
    state[TAKE_TAIL_SEEN] = this.#tailSeen;
    const n = scanRun(out, lens, max, small);
    this.#tailSeen = state[TAKE_TAIL_SEEN];
    return n;
  }

  /**
   * The length of the whole message committed at `head`, or -1 for anything else (nothing, a
   * reservation, a skip record, a fragment, or a length no record holds): one look at its commit
   * word, validated in full by the receive that follows.
   */
  waitingLength(): number {
    const r = this.#r;
    const word = atomicLoad(r.i32, DATA + ((this.head & r.mask) >> 2));
    if ((word & (COMMITTED | L.REC_KINDS)) !== COMMITTED) return -1;
    const len = word & L.REC_LEN_MASK;
    return len <= r.maxRecord ? len : -1;
  }

  /** The tag (sender slot + 1, or 0) of the record at `idx`. */
  tag(idx: number): number {
    return this.#r.i32[DATA + (idx >> 2) + 1];
  }

  /**
   * Consumes the marked record at `head` that no sender will commit: the whole record (`span`
   * bytes) when its dead sender reserved it, or the mark's word alone (`span` 8) when the mark
   * is stale, left by a sender whose claim had lost its place (see `Producer`'s #claim). Takes
   * the mark with a CAS to its {@linkcode L.droppingWord} (which says how far the record goes
   * until it is zeroed), as a sweep takes a word, with `sweeps` raised before and after: the sender whose reservation begins on a stale mark takes it over with a CAS too, so
   * exactly one of the two has it, and a claim that reads the zero stored here sees the raise
   * and finds its position consumed. False, with nothing consumed, if the word no longer holds
   * `mark`.
   *
   * With `owner` (many senders: the slot's producer word, `slot + 1`; 0: none) the whole span is
   * taken only if the record's producer word holds it: a sender writes it once its claim
   * stands, before its payload, so a mark without it is stale (the reservation under it is
   * someone else's, of another length) or its sender died before writing anything; either way
   * the rest of the reservation is zero, and left to a sweep. Read before the CAS (for the word
   * it stores) and again once it took the mark (nobody writes that word then), which decides.
   */
  dropMark(mark: number, span: number, owner = 0): boolean {
    const r = this.#r;
    this.publish();
    const word = DATA + ((this.head & r.mask) >> 2);
    const taking = () => owner !== 0 && r.i32[word + 1] !== owner ? 8 : span;
    atomicAdd(r.i32, SWEEPS, 1);
    // Decided before the CAS too, so that the word it stores tells a receiver taking over from
    // this one, killed right after, how far the record goes (Ring.finishDrop).
    const guess = taking();
    const taken = atomicCompareExchange(r.i32, word, mark, L.droppingWord(guess)) === mark;
    if (taken) {
      const took = taking();
      if (took !== guess) atomicStore(r.i32, word, L.droppingWord(took));
      this.head = r.dropRecord(this.head, took);
      this.#published = this.#looked = this.head;
    }
    atomicAdd(r.i32, SWEEPS, 1);
    return taken;
  }

  /**
   * Sweeps (MPSC): takes back the reservations at `head` that nobody marked, because their
   * senders died between their tail CAS and their mark (or stall there), and moves `head` past
   * them; returns how many bytes it took. A sender writes nothing into its reservation before
   * its mark, so the bytes up to the next marked or committed record are zero. Each 8-byte word
   * from `head` on is claimed by a CAS of 0 to SWEPT (the CAS a sender marks with), up to the
   * first that fails (the next record), the tail, or the end of the data area; then they are
   * consumed: `zeroing`, the zeroes, `head`. `sweeps` is raised before and after, so that a
   * sender whose claim lands on a swept word finds out (see `Producer`'s #claim). A receiver
   * killed in the middle leaves skip records of 8 bytes, and `sweeps` odd (the next one makes it
   * even when it attaches).
   */
  sweep(until: number): number {
    const r = this.#r;
    this.publish();
    atomicAdd(r.i32, SWEEPS, 1);
    // After the raise: a sender reserving past this position saw `sweeps` odd, or loaded it
    // after the sweep ended.
    const tail = atomicLoad(r.i32, TAIL) & L.POS_MASK;
    const ahead = (tail - this.head) & L.POS_MASK;
    const idx = this.head & r.mask;
    let taken = 0;
    if (ahead <= r.capacity) {
      // No further than a dead sender's records go (`until`), nor more than SWEEP_MAX bytes in
      // one call (the caller goes on at its next check).
      const limit = Math.min(ahead, (until - this.head) & L.POS_MASK, r.capacity - idx, SWEEP_MAX);
      while (
        taken < limit && atomicCompareExchange(r.i32, DATA + ((idx + taken) >> 2), 0, SWEPT) === 0
      ) taken += 8;
    }
    if (taken > 0) {
      // `zeroing` before the zeroes: a sender whose claim reads one sees it.
      atomicStore(r.i32, ZEROING, (this.head + taken) & L.POS_MASK);
      for (let at = idx; at < idx + taken; at += 8) atomicStore(r.i32, DATA + (at >> 2), 0);
      this.head = (this.head + taken) & L.POS_MASK;
      this.#store();
    }
    atomicAdd(r.i32, SWEEPS, 1);
    if (ahead > r.capacity) {
      throw this.#r.error(
        "EBADMSG",
        `ChannelReceiver.${this.call}`,
        "corrupt channel: tail is more than the capacity ahead",
      );
    }
    return taken;
  }

  /**
   * Moves `head` to `to`, over a reservation its dead sender never marked (still zero). False,
   * with nothing moved, if the word at `head` is not 0 (any more): the look that found the
   * reservation unmarked came before the sender died, which may have marked and committed it,
   * and more, since.
   */
  skipTo(to: number): boolean {
    const r = this.#r;
    // Loaded after the sender was seen dead: every store it made is in memory.
    if (atomicLoad(r.i32, DATA + ((this.head & r.mask) >> 2)) !== 0) return false;
    this.head = to & L.POS_MASK;
    this.publish();
    return true;
  }

  /**
   * Consumes the `len`-byte message at `head` and publishes `head` (zeroing it): a receive that
   * hands out one message; `head` cannot wait for a later receive (see {@linkcode PUBLISH_EVERY}).
   */
  release(len: number): void {
    this.head = (this.head + L.recordSpan(len)) & L.POS_MASK;
    this.publish();
  }

  /**
   * Consumes the record at `head` like {@linkcode release}, but leaves it intact and `head`
   * unpublished: {@linkcode publish} hands the room of a whole batch back to the senders at
   * once. Every {@linkcode PUBLISH_EVERY} bytes the records consumed BEFORE this one are handed
   * back, so the record a caller is still working on is never among them.
   */
  consume(len: number): void {
    if (((this.head - this.#published) & L.POS_MASK) >= this.#publishEvery) this.publish();
    this.head = (this.head + L.recordSpan(len)) & L.POS_MASK;
  }

  /**
   * Stores `zeroing` past the `len`-byte record at `head`: the receiver is about to zero it (or,
   * for recvInto, to copy it out zeroing it as it goes) and then store `head` there. A receiver
   * killed in between leaves `zeroing` ahead of `head`, and the one that takes over finishes the
   * job (`Ring`'s attach) instead of waiting at a zeroed commit word, or delivering a message
   * half zeroed. {@linkcode publish} makes the same announcement for a whole batch.
   *
   * A plain store, not `Atomics` (which costs 18-36 ns in V8): the word matters only once this
   * process is dead (a receiver that closes alive leaves `zeroing` equal to `head`, and its
   * `Atomics` release of `consumer_pid` orders that before the next receiver attaches). A killed
   * process stops between two instructions, and every store it executed before that reaches
   * memory before another process can see it dead. Nor can the engine move the store below the
   * zeroing: those are stores to the same array at indices it cannot tell apart from this one,
   * or a `fill` of it, and the `Atomics.store` of `head` after them orders everything before it.
   */
  announce(len: number): void {
    this.#r.i32[ZEROING] = (this.head + L.recordSpan(len)) & L.POS_MASK;
  }

  /**
   * {@linkcode release} for a record whose first `cleared` payload words the caller zeroed as it
   * copied them out: zeroes the rest of the record, then its header.
   */
  takeCleared(idx: number, len: number, cleared: number): void {
    if (this.#published !== this.head) return this.release(len);
    this.head = (this.head + this.#clearRest(idx, len, cleared)) & L.POS_MASK;
    this.#store();
  }

  /**
   * The record `ahead` bytes past `head` (which must lie before the end of the data area) if it
   * is a whole one-record message, committed: its data index, with its length in
   * {@linkcode len}; else -1, for anything else (nothing, a reservation, a skip record, a
   * fragment, or a record {@linkcode peek} would call corrupt, which it does when it gets there).
   * The batch path finds a run of messages with it without moving `head`.
   */
  peekAt(ahead: number): number {
    const r = this.#r;
    const pos = (this.head + ahead) & L.POS_MASK;
    const idx = pos & r.mask;
    const word = atomicLoad(r.i32, DATA + (idx >> 2));
    if ((word & (COMMITTED | L.REC_KINDS)) !== COMMITTED) return -1;
    const len = word & L.REC_LEN_MASK;
    if (len > r.maxRecord) return -1;
    const span = L.recordSpan(len);
    if (span > r.capacity - idx) return -1;
    // Counted from `head`; a `tail` seen behind `head` (after a skip over a dead sender's
    // reservation) is looked at again.
    const seen = (this.#tailSeen - this.head) & L.POS_MASK;
    if (seen > r.capacity || ahead + span > seen) {
      const tail = atomicLoad(r.i32, TAIL) & L.POS_MASK;
      const avail = (tail - this.head) & L.POS_MASK;
      if (avail > r.capacity || ahead + span > avail) return -1;
      this.#tailSeen = tail;
    }
    this.len = len;
    return idx;
  }

  /** Zeroes the record at `idx` past its first `cleared` payload words, then its header; its span. */
  #clearRest(idx: number, len: number, cleared: number): number {
    const span = L.recordSpan(len);
    const i32 = this.#r.i32;
    const first = DATA + (idx >> 2);
    const end = first + (span >> 2);
    for (let w = first + 2 + cleared; w < end; w++) i32[w] = 0;
    i32[first + 1] = 0;
    i32[first] = 0;
    return span;
  }

  /**
   * Hands the records consumed since the last call back to the senders: zeroes them, then
   * stores `head` and, where a look is due ({@linkcode WAKE_LOOK_BYTES}), wakes parked senders
   * ({@linkcode #store}: the one sender of a channel once half the ring is free); with
   * `wakeAlways` (the receiver found nothing to take) it looks and wakes them at once, whatever
   * the room (see {@linkcode WAKE_ROOM_DIVISOR}).
   */
  publish(wakeAlways = false): void {
    const from = this.#published;
    const bytes = (this.head - from) & L.POS_MASK;
    if (bytes === 0) {
      if (wakeAlways) {
        this.#looked = this.head;
        this.#r.wakeProducers();
      }
      return;
    }
    const r = this.#r;
    // Code of the caller's (a batch's callback) may have run since the receive looked at its
    // place: a plain read, as the receive's own look.
    if (this.#pid !== 0 && r.i32[CONSUMER_PID] !== this.#pid) return;
    r.i32[ZEROING] = this.head; // a plain store: see announce
    const idx = from & r.mask;
    const toEnd = r.capacity - idx;
    if (bytes <= toEnd) this.#zero(idx, bytes);
    else {
      this.#zero(idx, toEnd);
      this.#zero(0, bytes - toEnd);
    }
    this.#store(wakeAlways);
  }

  /**
   * {@linkcode publish} of the records consumed before position `to` only (`to` lies between
   * the published `head` and {@linkcode head}): the record at `to`, which a batch's callback is
   * still working on, and those after it stay consumed and unpublished.
   */
  publishTo(to: number): void {
    const head = this.head;
    this.head = to;
    this.publish();
    this.head = head;
  }

  /**
   * Stores `head` (everything before it zeroed); where a look is due ({@linkcode WAKE_LOOK_BYTES})
   * wakes the parked sender of a channel of one once half the ring is free
   * ({@linkcode WAKE_ROOM_DIVISOR}); with no message committed next, or with `wakeAlways`, looks
   * and wakes them whatever the room.
   */
  #store(wakeAlways = false): void {
    this.#published = this.head;
    const i32 = this.#r.i32;
    atomicStore(i32, HEAD, this.head);
    // No message committed next (a plain read: a hint, see WAKE_LOOK_BYTES): woken whatever the
    // room, as this may be the last receive for a while.
    if ((i32[DATA + ((this.head & this.#r.mask) >> 2)] & COMMITTED) === 0) wakeAlways = true;
    if (wakeAlways || ((this.head - this.#looked) & L.POS_MASK) >= this.#lookEvery) {
      this.#looked = this.head;
      if (atomicLoad(i32, TX_WAITING) !== 0) this.#wakeParked(wakeAlways);
    }
  }

  /**
   * {@linkcode #store}'s wake of parked senders, apart so that the common case stays small. With
   * many senders at every look: while the others keep more than half the ring full, a parked one
   * waiting for half would wait for its park to end.
   */
  #wakeParked(wakeAlways: boolean): void {
    const r = this.#r;
    // A `tail` more than the capacity ahead (corrupt) wakes them: they find it themselves.
    const used = (atomicLoad(r.i32, TAIL) - this.head) & L.POS_MASK;
    if (
      wakeAlways || r.mode !== L.MODE_SPSC || used > r.capacity ||
      r.capacity - used >= r.capacity / WAKE_ROOM_DIVISOR
    ) r.wakeProducers();
  }

  /** Zeroes the `span` bytes (a multiple of 8) at data index `idx`. */
  #zero(idx: number, span: number): void {
    const r = this.#r;
    if (span <= SMALL_ZERO) {
      const i32 = r.i32;
      const end = DATA + ((idx + span) >> 2);
      for (let w = DATA + (idx >> 2); w < end; w++) i32[w] = 0;
    } else {
      const start = L.OFF_DATA + idx;
      r.bytes.fill(0, start, start + span);
    }
  }
}
