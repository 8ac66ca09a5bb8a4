/**
 * Message channels between processes over shared memory: {@linkcode Channel},
 * {@linkcode ChannelSender} and {@linkcode ChannelReceiver}.
 *
 * @module
 */

import { backend } from "../backend.ts";
import { SharedMemoryError, tooManyAsyncWaits } from "../errors.ts";
import {
  addressOf,
  detachSharedBuffer,
  isDetached,
  mappingOf,
  type Owner,
  type SegmentId,
  segmentLabel,
  SharedMemory,
  unlinkAs,
  unlinkId,
} from "../shared_memory.ts";
import * as check from "../validate.ts";
import {
  bufferByteLength,
  bytesView,
  isArray,
  isBuffer,
  isTypedArray,
  isView,
  mapSize,
  mayGrow,
  newBytes,
  viewBuffer,
  viewByteOffset,
  viewBytes,
  viewDetached,
  viewLength,
  wordsView,
} from "../intrinsics.ts";
import { PUT_CAPACITY, PUT_CLOSED, PUT_FULL, PUT_SENT, TAKE_CAPACITY } from "../ffi.ts";
import * as L from "./layout.ts";
import {
  addBuffer,
  addRing,
  addSender,
  receiverHere,
  removeRing,
  removeSender,
  ringAt,
  sendersHere,
  setReceiver,
} from "./local.ts";
import { SPIN_EXPECTED, SPIN_MS, Spinner } from "../spin.ts";
import { mustYield, nextTurn } from "./turns.ts";
import {
  byteCount,
  channelError,
  Consumer,
  copyInto,
  copyOf,
  EMPTY,
  END,
  FRAGMENT_STEP_BYTES,
  freshView,
  FULL,
  IN_FLIGHT,
  initRegion,
  type Parking,
  plainBytes,
  plainView,
  Producer,
  quickByteCount,
  RESERVED,
  Ring,
  sameSpan,
  SKIPPING,
  STEP_LIMIT,
  SWEEP_MAX,
  validateRegion,
  type Viewed,
  VIEWED_NONE,
  viewedFrom,
} from "./ring.ts";

/**
 * The `Atomics` functions this module calls, taken at load: a script that replaces one later would
 * run in the middle of a send or a receive (between moving `tail` and a commit, say).
 */
const { exchange: atomicExchange, load: atomicLoad, or: atomicOr, store: atomicStore } = Atomics;

/** Options for {@linkcode Channel.create}. */
export interface ChannelOptions {
  /**
   * Bytes of the ring: a power of two from 64 to 2^28. Messages up to `capacity / 2 - 8` bytes
   * travel as one record; longer ones are split into fragments and put back together.
   */
  capacity: number;
  /** `"one"` sender (default) or `"many"` senders into the one receiver. */
  producers?: "one" | "many";
  /** Permission bits of the segment. Default `0o600`. */
  mode?: number;
  /** Fault every page of the segment in now, so that no send pays a page fault later. */
  populate?: boolean;
  /**
   * Whose leftover segment `replace` may remove (see {@linkcode Owner}). Default: this user's
   * or root's.
   */
  owner?: Owner;
  /**
   * {@linkcode Channel.create} only: remove whatever segment is under the id first (a leftover
   * of a crashed run), as `SharedMemory.create` does with `replace`, with the same checks.
   * Processes that still map the old channel keep it, cut off from the id. Default false.
   */
  replace?: boolean;
}

/** Options for {@linkcode Channel.open}. */
export interface ChannelOpenOptions {
  /** How long to wait for the creator to finish setting the channel up, in ms. Default 1000. */
  timeoutMs?: number;
  /**
   * Whose channel is accepted (see {@linkcode Owner}): another user's needs this (and a `mode`
   * from its creator that lets this user in). Default: this user's or root's.
   */
  owner?: Owner;
  /** Fault every page of the segment in now, so that no receive pays a page fault later. */
  populate?: boolean;
}

/** Options for {@linkcode Channel.sender} and {@linkcode Channel.receiver}. */
export interface EndpointOptions {
  /**
   * How often an endpoint checks that its peer processes are still alive, in milliseconds: a
   * sender whose receiver died gets `ECONNRESET` (a sender checks while it waits for room), a
   * receiver frees dead senders' places (see {@linkcode ChannelReceiver}), within about this
   * time. Default 100.
   */
  peerCheckMs?: number;
  /**
   * How long to look again before parking in the kernel: `"adaptive"` (default) spins while
   * spinning has been catching messages (or room) lately, for 20-250 µs as learned from its last
   * slow wake-up (at most 20 µs in an async call, which blocks its event loop while it spins),
   * and parks at once while it has not, probing now and then; a number looks again up to that
   * many times, never past the call's deadline or its next peer check (nor 20 µs in an async
   * call), and 0 parks at once. A synchronous send that finds the ring of a one-sender channel
   * full and spins also waits, up to 1 ms, for a quarter of it to be free while the receiver keeps
   * taking messages. See `docs/channel.md`, _Spin before parking_ and _A sender resumes on a
   * quarter of the ring_.
   */
  spin?: number | "adaptive";
}

/** What `send` accepts: bytes, or a string sent as UTF-8. */
export type Message = ArrayBufferView | ArrayBuffer | string;

const encoder = new TextEncoder();
// `ignoreBOM`: a text that starts with U+FEFF arrives as it was sent (the default drops it).
const decoder = new TextDecoder("utf-8", { ignoreBOM: true });
/**
 * The engine's `encodeInto`, taken at load: a script that replaces it later would run in the
 * middle of a send.
 */
const encodeInto = TextEncoder.prototype.encodeInto;
/** The engine's `decode`, taken at load as {@linkcode encodeInto} is. */
const decodeOf = TextDecoder.prototype.decode;
/** `Math.ceil`, taken at load: a receive reads its timeout before its state, and runs nothing there. */
const ceil = Math.ceil;
/**
 * A sender writes the UTF-8 of a string of up to this many UTF-16 units into a buffer of its own
 * (at most 3 bytes each), where `encode` would make a new array for each (see
 * {@linkcode ChannelSender}'s `#encode`).
 */
const SHORT_TEXT = 256;
/**
 * The longest message a receiver decodes out of its kept copy buffer; a longer one is copied
 * into a buffer of its own, so that one long text does not keep its size allocated.
 */
const TEXT_COPY_KEPT = 64 * 1024;
const pid: number = "Deno" in globalThis
  ? (globalThis as unknown as { Deno: { pid: number } }).Deno.pid
  : (globalThis as unknown as { process: { pid: number } }).process.pid;

/** What a message may be, for error messages. */
const MESSAGE_KINDS = "a string, an ArrayBuffer or a typed array";

/**
 * The errors of the send calls' own checks of a message (not a getter's of the caller's):
 * `sendMany` says how many messages went before the one refused.
 */
const refusals = new WeakSet<Error>();

/** `error`, noted as a refusal of a message (see {@linkcode refusals}). */
function refusal<E extends Error>(error: E): E {
  refusals.add(error);
  return error;
}

/** {@linkcode check.lookalikeError}, noted as a refusal where it is the library's own error. */
function lookalikeRefusal(error: unknown, value: unknown, must: string): unknown {
  const refused = check.lookalikeError(error, value, must);
  return refused === error ? error : refusal(refused as Error);
}

function bytesOf(message: unknown, what: string, index: number): Uint8Array {
  // `isView` first: a Proxy of a typed array passes `instanceof`, and the engine's accessors
  // would refuse it with a message that names nothing of this call.
  const view = isView(message);
  try {
    if (view && plainBytes(message)) return message;
  } catch (error) {
    // A DataView given a typed array's prototype is a view; a typed array's accessor refuses it.
    throw lookalikeRefusal(error, message, `${messageLabel(what, index)} must be ${MESSAGE_KINDS}`);
  }
  if (typeof message === "string") return encoder.encode(message);
  if (view && message instanceof Uint8Array) return freshView(message);
  // A detached buffer gives the 0 bytes it has here (no view of it can be made; `#start`
  // refuses it). Its bounds are the engine's: an own `byteOffset` or `byteLength` would send
  // other bytes than it holds.
  if (view) return viewBytes(message);
  // The engine's accessor, not `instanceof`: an `ArrayBuffer` of another realm (a `vm` context,
  // say) is one too.
  if (isBuffer(message)) {
    return bufferByteLength(message) === 0 ? new Uint8Array(0) : new Uint8Array(message);
  }
  throw refusal(
    new TypeError(
      `${messageLabel(what, index)} must be ${MESSAGE_KINDS}, got ${check.describe(message)}`,
    ),
  );
}

/**
 * The first `len` bytes of the typed array `bytes`, as it was counted, through a view of that
 * length made by the engine's constructor (it may have grown since).
 */
function countedView(bytes: Uint8Array, len: number): Uint8Array {
  return bytesView(viewBuffer(bytes), viewByteOffset(bytes), len);
}

/**
 * A validated timeout in whole milliseconds, or Infinity; reads no clock, so that a call with a
 * timeout costs nothing while it need not wait.
 */
function timeoutOf(timeoutMs: unknown): number {
  if (timeoutMs === undefined || timeoutMs === Infinity) return Infinity;
  if (typeof timeoutMs === "number" && timeoutMs >= 0 && timeoutMs <= Number.MAX_SAFE_INTEGER) {
    return ceil(timeoutMs);
  }
  return ceil(check.timeoutMs(timeoutMs));
}

/** The deadline `timeout` ms (from {@linkcode timeoutOf}) from now, in performance.now() time. */
function deadlineAfter(timeout: number): number {
  return timeout === Infinity ? Infinity : performance.now() + timeout;
}

/**
 * Messages up to this many bytes are copied out of the ring 32-bit word by word when the target
 * is 4-byte aligned (else byte by byte): no view is made and nothing is allocated. At 64 B, on
 * one thread: 10 / 20 / 41 ns (Deno / Bun / Node 20) word by word, 37 / 76 / 180 ns byte by
 * byte, 63 / 125 / 66 ns through `subarray` + `set`. A sender that sends one 4-byte aligned
 * array again and again (one it refills) copies it into the ring word by word too, where native
 * code does not send (Node.js: 63-68 → 57-60 ns of CPU per 64 B `send`, in a pair on one core).
 */
const SMALL_COPY = 256;

/** The word of the one sender's place (see `ChannelSender.#checkPlace`). */
const PLACE = L.OFF_PRODUCER_PIDS >> 2;
/** The word of the receiver's place (see `ChannelReceiver.#checkPlace`). */
const CONSUMER_PLACE = L.OFF_CONSUMER_PID >> 2;
/** The header's word that says whether the receiver knows of a death (`bereaved` in layout.rs). */
const BEREAVED = L.OFF_BEREAVED >> 2;

/** What a place's pid `word` holds, for an error: a pid, or one marked gone. */
function holderOf(word: number): string {
  return (word & L.PID_GONE) === 0
    ? String(word >>> 0)
    : `${word & ~L.PID_GONE} marked gone (an endpoint of it went without close())`;
}

/** What an async receive hands out: the view it lent, a copy of it, or its text. */
const AS_VIEW = 0;
const AS_COPY = 1;
const AS_TEXT = 2;
type As = typeof AS_VIEW | typeof AS_COPY | typeof AS_TEXT;

/**
 * recvMany copies a run of small messages that lie back to back in the ring, up to this many
 * bytes of records, into a buffer of the receiver with one `set`: cheaper per message than
 * copying each alone (the records are zeroed together when `head` is published).
 */
const RUN_BYTES = 4096;

/**
 * Makes the views a channel lends (by recvView, recvMany and reserve) on an ArrayBuffer of their
 * own over the ring's mapping, never on the buffer the channel itself reads and writes through:
 * a caller may move a lent view's buffer (`transfer()`, `postMessage` to a Worker, a byte
 * stream), which detaches it, and the channel must go on. Once that buffer is detached, the
 * next view is lent from a new one.
 */
/** The error of a public class's constructor called from outside the library. */
function noConstructor(name: string, instead: string): TypeError {
  return new TypeError(`${name} has no public constructor: use ${instead}`);
}

class Lender {
  #buffer: ArrayBuffer | undefined;
  readonly #ring: Ring;
  readonly #make: () => ArrayBuffer;
  readonly #detach: ((buffer: ArrayBuffer) => void) | undefined;

  /** `detach`: how {@linkcode end} takes back a buffer `make` made; none: it is not taken back. */
  constructor(ring: Ring, make: () => ArrayBuffer, detach?: (buffer: ArrayBuffer) => void) {
    this.#ring = ring;
    this.#make = make;
    this.#detach = detach;
  }

  /**
   * Detaches the buffer of every view lent so far, as the channel's close does: a receiver that
   * closes has zeroed the records they showed, and a view that stayed would read those zeros.
   */
  end(): void {
    const buffer = this.#buffer;
    this.#buffer = undefined;
    if (buffer === undefined || this.#detach === undefined || isDetached(buffer)) return;
    try {
      this.#detach(buffer);
    } catch {
      // A lock this thread holds inside it (EBUSY): the buffer stays, for the collector.
    }
  }

  /** A view of `len` bytes at byte `start` of the region (see `Ring.view`). */
  view(start: number, len: number): Uint8Array {
    if (this.#buffer !== undefined) {
      try {
        return new Uint8Array(this.#buffer, start, len);
      } catch {
        // Detached: moved by its holder. Lent afresh below.
      }
    }
    const buffer = this.#buffer = this.#make();
    addBuffer(this.#ring, buffer);
    return new Uint8Array(buffer, start, len);
  }
}

/**
 * A request to park on a header word until woken or for at most `ns` nanoseconds: a relative
 * timeout, made from the clock reading the wait decided on, so that parking reads no clock.
 */
interface Park {
  offset: number;
  ns: number;
}

function runSync<T>(steps: Generator<Park, T>, parking: Parking): T {
  for (let step = steps.next();; step = steps.next()) {
    if (step.done) return step.value;
    parking.wait(step.value.offset, 1, step.value.ns);
  }
}

async function runAsync<T>(steps: Generator<Park, T>, parking: Parking): Promise<T> {
  for (let step = steps.next();;) {
    if (step.done) return step.value;
    try {
      await parking.waitAsync(step.value.offset, 1, step.value.ns);
    } catch (err) {
      // The wait did not start: thrown where the steps wait, so that they clean up as for their
      // own errors (a reservation they hold is given up).
      step = steps.throw(err);
      continue;
    }
    step = steps.next();
  }
}

/**
 * Peer checks in a row at which the record at `head` is reserved and unmarked, with no dead
 * sender's records ahead, before it is swept: a live sender's reservation whose claim failed (a
 * peer wrote its commit word) is never marked, and one that stalls this long before its claim
 * loses only the reservation (it reserves again).
 */
const LIVE_SWEEP_CHECKS = 10;

/**
 * The most receives between two looks at the clock by a receiver that does not wait: when a
 * liveness check is due, it checks on its senders all the same (see `#lookBusy`).
 */
const BUSY_LOOK_EVERY = 1024;

/**
 * The longest one park lasts (ms), whatever `peerCheckMs` says: a thread parked in the kernel
 * cannot be stopped, and a Worker's `terminate()` waits for it (see `park` in `ts/sync.ts`).
 */
const PARK_MS = 100;

/** The nanoseconds from `now` until `until` (both performance.now() time), at least 0. */
function nsUntil(until: number, now: number): number {
  return Math.max(0, Math.ceil((until - now) * 1e6));
}

/**
 * A bounded channel of byte messages between processes, in a shared-memory segment: one side
 * creates it, the other opens it, and each takes a {@linkcode ChannelSender} or a
 * {@linkcode ChannelReceiver}.
 *
 * Sending copies the message into the ring and receiving copies it out (or lends a view of it:
 * {@linkcode ChannelReceiver.recvView}); no system call is made while the peer is awake. A full
 * ring blocks senders (backpressure): nothing is dropped or reordered. A receiver that dies
 * turns a blocked send into an `ECONNRESET` error within `peerCheckMs`; a sender that dies is
 * noticed by the receiver (see {@linkcode ChannelReceiver}). The protocol: `docs/channel.md`.
 *
 * @example
 * ```ts
 * // parent
 * using channel = Channel.create({ name: "/jobs" }, { capacity: 1 << 20 });
 * const tx = channel.sender();
 * tx.sendJson({ job: 1 });
 * tx.close();
 *
 * // worker
 * using jobs = Channel.open({ name: "/jobs" });
 * jobs.unlink(); // no other process needs the name now
 * for await (const text of jobs.receiver().texts()) console.log(JSON.parse(text));
 * ```
 */
export class Channel implements Disposable {
  /** The segment's key or name, as given: a frozen copy (see {@linkcode SharedMemory.id}). */
  readonly id: SegmentId;
  /** Bytes of the ring. */
  readonly capacity: number;
  /** The largest message that travels as one record (and can be sent zero-copy). */
  readonly maxRecordBytes: number;
  /** `"one"` or `"many"` senders. */
  readonly producers: "one" | "many";
  readonly #shm: SharedMemory;
  readonly #ring: Ring;
  readonly #lender: Lender;
  /** Makes a buffer over the whole region, for the views an endpoint lends. */
  readonly #lend: () => ArrayBuffer;
  readonly #endpoints = new Set<ChannelSender | ChannelReceiver>();

  private constructor(id: SegmentId, shm: SharedMemory, capacity: number, mode: number) {
    if (!(shm instanceof SharedMemory)) throw noConstructor("Channel", "Channel.create or open");
    this.id = id;
    this.#shm = shm;
    this.capacity = capacity;
    this.maxRecordBytes = L.maxRecord(capacity);
    this.producers = mode === L.MODE_MPSC ? "many" : "one";
    const buffer = shm.buffer;
    const base = addressOf(buffer, "Channel");
    const b = backend();
    const rx = b.address(base + BigInt(L.OFF_RX_WAITING));
    const tx = b.address(base + BigInt(L.OFF_TX_WAITING));
    const at = (offset: number) => (offset === L.OFF_RX_WAITING ? rx : tx);
    const parking: Parking = {
      notify: (offset, count) => void b.notify(at(offset), count),
      wait: (offset, expected, ns) => void b.wait(at(offset), expected, ns, 0),
      waitAsync: async (offset, expected, ns) => {
        const code = await b.waitAsync(at(offset), expected, ns);
        // Past the process's limit of pending async waits the wait does not start. Taken for a
        // wake-up, it had the async receive or send look again at once, over and over, and the
        // event loop did not run until its deadline (forever without one).
        if (code < 0 && b.errorName(code) === "EAGAIN") {
          throw tooManyAsyncWaits("a channel's async wait");
        }
      },
      // A pid word a peer may have scribbled on: what is not a pid counts as dead (as in Rust),
      // a thread's that ended (`PID_GONE`, a negative int32) too.
      alive: (other) => other > 0 && b.processAlive(other),
      // Noted natively on every thread: a Worker's end marks the words it holds gone, and so
      // does the unmapping of a channel the engine collected without close(), on a main thread
      // too (whose endpoint would otherwise hold its place until its process exits).
      claim: (offset, expected, pid) => b.claimEndpoint(base + BigInt(offset), expected, pid),
      unclaim: (offset, pid) => void b.unclaimEndpoint(base + BigInt(offset), pid),
      pidNamespace: b.pidNamespace,
      // Own properties from the start, set below where the runtime has them: one shape, and a
      // property a script puts on `Object.prototype` (`put`, `take`) is never read in their place.
      take: undefined,
      takeState: undefined,
      put: undefined,
      putState: undefined,
      scanRun: undefined,
      scanRunMin: undefined,
      commitRun: undefined,
      commitRunMin: undefined,
      forget: undefined,
    };
    const calls = b.channelCalls(b.address(base));
    // The mapping is checked right before each call: close() releases it.
    const mapping = mappingOf(buffer, "Channel");
    const { take, put, commitRun } = calls;
    parking.takeState = calls.takeState;
    parking.putState = calls.putState;
    calls.takeState[TAKE_CAPACITY] = calls.putState[PUT_CAPACITY] = capacity;
    if (take !== undefined) {
      parking.take = (target, room) => mapping.released ? -1 : take(target, room);
    }
    if (put !== undefined) parking.put = (bytes, len) => mapping.released ? -1 : put(bytes, len);
    parking.scanRun = (out, lens, max, small) =>
      mapping.released ? 0 : calls.scanRun(out, lens, max, small);
    parking.scanRunMin = calls.scanRunMin;
    if (commitRun !== undefined) {
      parking.commitRun = (idx, lens, count) => mapping.released ? -1 : commitRun(idx, lens, count);
      parking.commitRunMin = calls.commitRunMin;
    }
    parking.forget = calls.forget;
    this.#ring = new Ring(buffer, capacity, mode, parking, segmentLabel(id));
    addRing(this.#ring);
    this.#lend = () => shm.view(0, L.HEADER_SIZE + capacity);
    this.#lender = new Lender(this.#ring, this.#lend);
  }

  /**
   * Creates a new channel in a new segment (`EEXIST` if one exists under the id, unless
   * `options.replace`).
   *
   * @throws {RangeError} For a capacity that is not a power of two in 64..2^28.
   */
  static create(id: SegmentId, options: ChannelOptions): Channel {
    const opts = check.options<ChannelOptions>(options, "options", [
      "capacity",
      "producers",
      "mode",
      "populate",
      "owner",
      "replace",
    ]);
    const capacity = check.integer(
      opts.capacity,
      "options.capacity",
      L.MIN_CAPACITY,
      L.MAX_CAPACITY,
    );
    if ((capacity & (capacity - 1)) !== 0) {
      throw new RangeError(`options.capacity must be a power of two, got ${capacity}`);
    }
    const producers = opts.producers === undefined ? "one" : opts.producers;
    if (producers !== "one" && producers !== "many") {
      throw new RangeError(
        `options.producers must be "one" or "many", got ${check.describe(producers)}`,
      );
    }
    const mode = producers === "many" ? L.MODE_MPSC : L.MODE_SPSC;
    const shm = relabel(
      "Channel.create",
      () =>
        SharedMemory.create(id, L.HEADER_SIZE + capacity, {
          mode: opts.mode,
          populate: opts.populate,
          owner: opts.owner,
          replace: opts.replace,
        }),
      // The size the caller gave, not the segment's (the header's bytes added).
      [`(${L.HEADER_SIZE + capacity} bytes)`, `(capacity ${capacity})`],
    );
    try {
      initRegion(new Int32Array(shm.buffer, 0, L.HEADER_SIZE >> 2), capacity, mode);
      return new Channel(shm.id, shm, capacity, mode);
    } catch (err) {
      // Its own segment only: another process may have replaced it meanwhile.
      try {
        shm.unlink();
      } catch {
        // Not ours any more: left to its maker.
      }
      shm.close();
      throw err;
    }
  }

  /**
   * Opens a channel another process created, waiting up to `timeoutMs` (default 1000) for its
   * creator to finish setting it up. (An empty file at the name that changed in the last 2
   * seconds is waited for as {@linkcode SharedMemory.open} waits, up to those 2 seconds, whatever
   * `timeoutMs`: a creator that names its file before sizing it, which this library's do not on
   * Linux.)
   *
   * @throws {SharedMemoryError} `ENOENT` if there is none; `EINVAL` if it is too small to be a
   *   channel; `EBADMSG` if the segment is not a channel or is corrupt; `EPROTONOSUPPORT` for
   *   another layout version; `EXDEV` if its endpoints are in another pid namespace;
   *   `ETIMEDOUT` if its header stays zero for `timeoutMs` (a creator still setting it up leaves
   *   it zero for a moment, so a plain segment, whose bytes are zero, is told from one only
   *   then); those of {@linkcode SharedMemory.open} (`ENODATA` for an empty file).
   */
  static open(id: SegmentId, options?: ChannelOpenOptions): Channel {
    const opts = check.options<ChannelOpenOptions>(options, "options", [
      "timeoutMs",
      "owner",
      "populate",
    ]);
    const timeout = timeoutOf(opts.timeoutMs ?? 1000); // checked before anything is opened
    const shm = relabel(
      "Channel.open",
      () => SharedMemory.open(id, { owner: opts.owner, populate: opts.populate }),
    );
    // Counted from here: faulting the pages in (populate) is not the creator's setup.
    const deadline = deadlineAfter(timeout);
    try {
      const i32 = new Int32Array(shm.buffer, 0, Math.min(shm.byteLength, L.HEADER_SIZE) >> 2);
      for (;;) {
        const found = validateRegion(i32, shm.byteLength, backend().pidNamespace);
        if (found) return new Channel(shm.id, shm, found[0], found[1]);
        if (performance.now() >= deadline) {
          throw channelError(
            "ETIMEDOUT",
            `Channel.open of ${
              segmentLabel(shm.id)
            }: its header stayed zero for ${timeout} ms, so it was never set up as a channel: a plain segment under this id (not made by Channel.create), or a creator that died before setting it up`,
          );
        }
        backend().wait(backend().address(addressOf(shm.buffer, "Channel.open")), 0, 1e6, 0);
      }
    } catch (err) {
      shm.close();
      // The header's errors, which say nothing of the call or the segment.
      if (err instanceof SharedMemoryError && !err.message.startsWith("Channel.open")) {
        throw new SharedMemoryError(
          `Channel.open of ${segmentLabel(shm.id)}: ${err.message}`,
          err.code,
          err.errno,
        );
      }
      throw err;
    }
  }

  /**
   * Removes a channel's segment (see {@linkcode SharedMemory.unlink}): whatever segment the id
   * names, without looking inside (a corrupt channel's too).
   */
  static unlink(id: SegmentId): void {
    unlinkId(id, "Channel");
  }

  /**
   * Attaches this process as a sender.
   *
   * @throws {SharedMemoryError} `EBUSY` if a one-sender channel already has a live sender, or
   *   all 64 sender slots are taken by live ones; `EAGAIN` if the place is held by a dead sender
   *   that the receiver has not freed yet (it does within its `peerCheckMs`, while it receives;
   *   with more than 16 dead senders' messages ahead, once it has received past the dead one's or
   *   has room to record it); `EPIPE` if the receiver closed the channel or a sender ended the
   *   stream; `EBADMSG` if a peer overwrote the channel's header since it was opened.
   */
  sender(options?: EndpointOptions): ChannelSender {
    // The options before the state, as every call checks them: their getters, code of the
    // caller's, may close this channel (which then said only "detached ArrayBuffer").
    const opts = endpointOptions(
      check.options<EndpointOptions>(options, "options", ["peerCheckMs", "spin"]),
    );
    this.#checkOpen("sender");
    const endpoint = new ChannelSender(this.#ring, opts, this.#endpoints, this.#lender);
    this.#endpoints.add(endpoint);
    return endpoint;
  }

  /**
   * Attaches this process as the receiver.
   *
   * @throws {SharedMemoryError} `EBUSY` if a live process already receives; `EPIPE` if the
   *   receiver closed the channel before; `EBADMSG` if a peer overwrote the channel's header
   *   since it was opened.
   */
  receiver(options?: ReceiverOptions): ChannelReceiver {
    // Checked before the state, as in `sender()`.
    const opts = receiverOptions(options);
    this.#checkOpen("receiver");
    // Views of its own, which its close detaches (the senders' stay theirs).
    const lender = new Lender(this.#ring, this.#lend, detachSharedBuffer);
    const endpoint = new ChannelReceiver(this.#ring, opts, this.#endpoints, lender);
    this.#endpoints.add(endpoint);
    return endpoint;
  }

  /**
   * Removes the segment's name or key if it still names this channel's segment, before or after
   * {@linkcode close} (see {@linkcode SharedMemory.unlink}); the channel keeps working for who has
   * it open.
   *
   * @throws {SharedMemoryError} `ENOENT` if the name or key holds another segment now (a newer
   *   channel made there), or none.
   */
  unlink(): void {
    unlinkAs(this.#shm, "Channel");
  }

  /**
   * Disposes every endpoint made from this channel (see their `[Symbol.dispose]`), then unmaps
   * the segment. Idempotent.
   */
  close(): void {
    for (const endpoint of [...this.#endpoints]) endpoint[Symbol.dispose]();
    removeRing(this.#ring);
    this.#shm.close();
  }

  /** Same as {@linkcode close}, for `using`. */
  [Symbol.dispose](): void {
    this.close();
  }

  #checkOpen(what: string): void {
    if (this.#shm.closed) {
      throw this.#ring.error("EBADF", `Channel.${what}`, "the channel is closed");
    }
  }
}

/**
 * Runs a segment call, naming `caller` in its error instead of the SharedMemory method, and the
 * first `swap[0]` in its message `swap[1]`.
 */
function relabel<T>(caller: string, body: () => T, swap: [string, string] = ["", ""]): T {
  try {
    return body();
  } catch (err) {
    if (!(err instanceof SharedMemoryError)) throw err;
    const message = err.message.replace(/^SharedMemory\.\w+/, caller).replace(swap[0], swap[1]);
    throw new SharedMemoryError(message, err.code, err.errno);
  }
}

/** The options a receiver takes. */
const RECEIVER_OPTIONS: readonly (keyof ReceiverOptions)[] = [
  "peerCheckMs",
  "spin",
  "maxMessageBytes",
  "maxPendingBytes",
];

/** A receiver's options, checked, with their defaults (read once: getters run once). */
export function receiverOptions(options: unknown): Required<ReceiverOptions> {
  const opts = check.options<ReceiverOptions>(options, "options", RECEIVER_OPTIONS);
  return {
    ...endpointOptions(opts),
    maxMessageBytes: opts.maxMessageBytes === undefined
      ? 64 * 2 ** 20
      : check.integer(opts.maxMessageBytes, "options.maxMessageBytes", 0, L.MAX_MESSAGE_LEN),
    maxPendingBytes: opts.maxPendingBytes === undefined
      ? 256 * 2 ** 20
      : check.integer(opts.maxPendingBytes, "options.maxPendingBytes", 0, Number.MAX_SAFE_INTEGER),
  };
}

/** An endpoint's options, checked (`opts` came from `check.options`). */
function endpointOptions(opts: EndpointOptions): Required<EndpointOptions> {
  return {
    peerCheckMs: opts.peerCheckMs === undefined
      ? 100
      : check.integer(opts.peerCheckMs, "options.peerCheckMs", 1, 3_600_000),
    spin: opts.spin === undefined || opts.spin === "adaptive"
      ? "adaptive"
      : check.integer(opts.spin, "options.spin", 0, 1 << 30, SPIN_EXPECTED),
  };
}

/** What a send's errors call its message: `messages[3]` inside a sendMany (index >= 0). */
function messageLabel(what: string, index: number): string {
  return index < 0 ? `ChannelSender.${what}: message` : `ChannelSender.${what}: messages[${index}]`;
}

/** What a sendMany error adds: how many of its `total` messages were sent. */
function sentOf(sent: number, total: number): string {
  return `; ${sent} of the ${total} messages ${sent === 1 ? "was" : "were"} sent, the rest not`;
}

/** `err` with its own `sent` property: how many messages its sendMany sent (see there). */
function withSent<E extends Error>(err: E, sent: number): E {
  Object.defineProperty(err, "sent", { value: sent, enumerable: true });
  return err;
}

/** A sendMany error at message `sent` of `total`, saying that the ones before it were sent. */
function partway(err: SharedMemoryError, sent: number, total: number): SharedMemoryError {
  const suffix = ` (${err.code})`;
  const base = err.message.endsWith(suffix) ? err.message.slice(0, -suffix.length) : err.message;
  return withSent(
    new SharedMemoryError(`${base}${sentOf(sent, total)}${suffix}`, err.code, err.errno),
    sent,
  );
}

/** {@linkcode partway} for the TypeError or RangeError of a message that sendMany refused. */
function partwayRefused(err: Error, sent: number, total: number): Error {
  const Refusal = err instanceof RangeError ? RangeError : TypeError;
  const message = `${err.message}${sentOf(sent, total)}`;
  return withSent(
    new Refusal(message, "cause" in err ? { cause: err.cause } : undefined),
    sent,
  );
}

function closedError(ring: Ring, what: string): SharedMemoryError {
  return ring.error("EBADF", what, "this endpoint (or its channel) is closed");
}

/**
 * The sending end of a {@linkcode Channel}.
 *
 * @example
 * ```ts
 * const tx = channel.sender();
 * tx.send(new Uint8Array([1, 2, 3]));
 * await tx.sendAsync("hello");
 * const slot = tx.reserve(4096); // zero-copy: write in place, then commit
 * slot.fill(7);
 * tx.commit();
 * tx.close(); // the receiver drains what is left, then sees the end
 * ```
 */
export class ChannelSender implements Disposable {
  readonly #ring: Ring;
  readonly #lender: Lender;
  readonly #producer: Producer;
  readonly #options: Required<EndpointOptions>;
  readonly #spinner: Spinner;
  readonly #slot: number;
  readonly #registry: Set<unknown>;
  #closed = false;
  /** The data index of a reservation made by {@linkcode reserve}, not yet committed (-1: none). */
  #reservedIdx = -1;
  /** Its length. */
  #reservedLen = 0;
  /** An abort record is owed before the next record (see layout.rs, "Aborts"). */
  #abortOwed = false;
  /** An async send is waiting: sends do not overlap. */
  #busy = false;
  /** The length of the message {@linkcode #start} returned last. */
  #len = 0;
  /**
   * The UTF-8 of the last short string sent ({@linkcode SHORT_TEXT}), and a view of its first
   * `n` bytes at index `n`, made once per length.
   */
  #text: Uint8Array | undefined;
  /** Without a prototype: a getter a script put on `Array.prototype` never runs in a send. */
  #textViews: (Uint8Array | undefined)[] = Object.setPrototypeOf([], null);
  /**
   * {@linkcode #text} holds a message not yet copied into the ring: code of the caller's that
   * runs before the copy (a getter, a replaced built-in) and sends through this sender gets a
   * new array. Set by `#encode`; each send puts back what it found when it is done.
   */
  #textHeld = false;
  /**
   * The message {@linkcode #start} counted last: a real typed array (see `quickByteCount`), kept
   * until the next send (as a receiver keeps its last `recvInto` target).
   */
  #known: Uint8Array | undefined;
  /**
   * The caller's message {@linkcode #known} is a view of, when it is not that array itself (a
   * `Buffer`, another view, an `ArrayBuffer`; see `viewedFrom`): sent again spanning the same
   * bytes, `#known` stands for it.
   */
  #knownFrom: object | undefined;
  /** What {@linkcode #knownFrom} is (`VIEWED_NONE`: nothing kept). */
  #knownKind: Viewed = VIEWED_NONE;
  /**
   * The message {@linkcode #words} are of: an array sent again (a buffer the caller fills and
   * sends, over and over) is copied into the ring word by word, as a receiver copies into its
   * `recvInto` target (see `SMALL_COPY`).
   */
  #wordsFor: Uint8Array | undefined;
  /**
   * Its first `length >> 2` 32-bit words; undefined when it was sent only once so far (no view
   * is made for an array sent once), null when it is not 4-byte aligned.
   */
  #words: Int32Array | null | undefined;
  /** How many words {@linkcode #words} has (not its `length`, which a script can redefine). */
  #wordCount = 0;
  /**
   * An array {@linkcode #copyOut} copies whole, with `set`: one that cannot grow while it is
   * copied (a view of our own, or an array looked at by `mayGrow`).
   */
  #fixed: Uint8Array | undefined;
  /** The array {@linkcode #copyOut} copied last, looked at by `mayGrow` when it comes again. */
  #copied: Uint8Array | undefined;
  /** Inside a sendMany run, whose records are reserved but not all written. */
  #inRun = false;
  /** What this thread's receiver of the channel sees of this sender (see local.ts). */
  readonly #local = {
    inRun: (): boolean => this.#inRun,
    reserved: (): number => this.#reservedIdx,
  };

  /**
   * @internal Made by {@linkcode Channel.sender}; `lender` makes the views it lends (default: on
   * the ring's own buffer, for a ring that is not a channel's segment).
   */
  constructor(
    ring: Ring,
    options: Required<EndpointOptions>,
    registry: Set<unknown>,
    lender: Lender = new Lender(ring, () => ring.buffer),
  ) {
    if (!(ring instanceof Ring)) throw noConstructor("ChannelSender", "a channel's sender()");
    this.#ring = ring;
    this.#lender = lender;
    this.#options = options;
    this.#spinner = new Spinner(options.spin);
    const [slot, tail] = ring.attachProducer(pid);
    this.#slot = slot;
    this.#producer = new Producer(ring, slot, tail);
    this.#registry = registry;
    addSender(ring, this.#local);
    if (ring.mode === L.MODE_MPSC) {
      // A sender that left this slot mid-message may not have said so: clear its partial message
      // now if there is room, else before this sender's first record.
      this.#abortOwed = true;
      this.#owe();
    }
  }

  /** The largest message sent as one record, and the most {@linkcode reserve} can take. */
  get maxRecordBytes(): number {
    return this.#ring.maxRecord;
  }

  /**
   * Sends one message, blocking while the ring is full.
   *
   * @param message Bytes, or a string (sent as UTF-8). Any length: one longer than
   *   {@linkcode maxRecordBytes} is sent in fragments.
   * @param timeoutMs How long to wait for room at most; default forever.
   * @throws {SharedMemoryError} `ETIMEDOUT`; `EPIPE` if the receiver closed the channel or a
   *   sender ended it; `ECONNRESET` if the receiver died; `EDEADLK` if the ring is full and the
   *   receiver is this thread's: at once inside its `recvMany` callback (after the batch handed
   *   back what it could), and for a send without a timeout anywhere (see `docs/channel.md`,
   *   "Both ends in one thread"; {@linkcode sendAsync} waits instead); `EBADMSG` if the ring is
   *   corrupt, or if a message in fragments (with one sender, any message) finds this sender's
   *   slot holding another pid (a peer wrote the header).
   */
  send(message: Message, timeoutMs?: number): void {
    this.#send(message, timeoutMs, "send");
  }

  /** {@linkcode send}, its errors named after `what`. */
  #send(message: Message, timeoutMs: number | undefined, what: string): void {
    // Before `#start`, as every call checks its arguments before its state. (It called a global
    // `Math.ceil` after `#start` once: a send made from a replaced one left its own length in
    // `#len`, and a native copy of that many bytes from this message's view read past it.)
    const timeout = timeoutOf(timeoutMs);
    // Only a string is encoded into the sender's own buffer, which it holds until its send is
    // done: other messages need no `try` (3-8 ns a send).
    if (typeof message !== "string") return this.#sendOne(message, timeout, what);
    const held = this.#textHeld;
    try {
      this.#sendOne(message, timeout, what);
    } finally {
      this.#textHeld = held;
    }
  }

  /** {@linkcode #send} of one message, `timeout` from {@linkcode timeoutOf}. */
  #sendOne(message: Message, timeout: number, what: string): void {
    const bytes = this.#start(message, what);
    if (this.#tryFast(bytes, this.#len)) return;
    runSync(this.#sendSteps(bytes, timeout, true), this.#ring.parking);
  }

  /**
   * Sends each message of `messages` in order, as {@linkcode send} would: the batch path, with
   * the checks and the wake-up test of one call per message and no allocation while there is
   * room.
   *
   * @param messages The messages; each as in {@linkcode send}.
   * @param timeoutMs How long the whole call may wait for room at most, counted from the first
   *   time it has to wait; default forever.
   * @returns How many messages were sent (all of them).
   * @throws As {@linkcode send}, at the first message that fails; the messages before it were
   *   sent, the rest were not. Its errors met at a message (a `SharedMemoryError`, also one that
   *   an element's getter threw, and the `TypeError` or `RangeError` of a message refused) say
   *   how many in their message and in their own `sent` property, so that a caller can send
   *   `messages.slice(err.sent)` again; any other error of the caller's own code (an element's
   *   getter) is passed on as it is, and an error of the arguments has no `sent`.
   */
  sendMany(messages: readonly Message[], timeoutMs?: number): number {
    if (!isArray(messages)) {
      throw new TypeError(
        `ChannelSender.sendMany: messages must be an array, got ${check.describe(messages)}`,
      );
    }
    const timeout = timeoutOf(timeoutMs);
    let deadline = NaN; // read from the clock only if this call has to wait
    let i = 0;
    const held = this.#textHeld;
    try {
      for (; i < messages.length; i++) {
        if (!this.#abortOwed) {
          this.#checkUsable("sendMany");
          this.#checkPlace();
          // An element's getter runs inside the run: a receive it makes on this thread would wait
          // for the records the run has reserved (see #ownSender).
          this.#inRun = true;
          runs++;
          let next: number;
          try {
            next = this.#producer.commitRun(messages, i);
          } catch (err) {
            // The run found the receiver closed: past `i` if the receiver took some of it.
            const closed = this.#producer.runClosed;
            if (closed !== undefined && closed.error === err) i = closed.sent;
            throw err;
          } finally {
            this.#inRun = false;
            runs--;
          }
          if (next !== i) {
            i = next - 1;
            continue;
          }
        }
        const bytes = this.#start(messages[i], "sendMany", i);
        if (!this.#tryFast(bytes, this.#len)) {
          if (Number.isNaN(deadline)) deadline = deadlineAfter(timeout);
          runSync(this.#sendSteps(bytes, deadline - performance.now(), true), this.#ring.parking);
        }
        this.#textHeld = held;
      }
    } catch (err) {
      // The library's errors say how far the call got (its checks of the element too); an
      // element's own error (a getter's) is passed on.
      if (err instanceof SharedMemoryError) throw partway(err, i, messages.length);
      throw err instanceof Error && refusals.has(err)
        ? partwayRefused(err, i, messages.length)
        : err;
    } finally {
      this.#textHeld = held;
    }
    return messages.length;
  }

  /** {@linkcode send} as a Promise: waits for room without blocking the event loop. */
  async sendAsync(message: Message, timeoutMs?: number): Promise<void> {
    const held = this.#textHeld;
    let bytes: Uint8Array;
    let timeout: number;
    let sent: boolean;
    try {
      timeout = timeoutOf(timeoutMs); // before `#start`, as in `#send`
      bytes = this.#start(message, "sendAsync");
      sent = this.#tryFast(bytes, this.#len);
    } catch (err) {
      this.#textHeld = held;
      throw err;
    }
    if (sent) {
      this.#textHeld = held;
      // Sent, in call order: the event loop may have its turn before the promise settles.
      if (mustYield()) await nextTurn();
      return;
    }
    this.#busy = true;
    try {
      await runAsync(this.#sendSteps(bytes, timeout, false), this.#ring.parking);
    } finally {
      this.#busy = false;
      this.#textHeld = held;
    }
  }

  /**
   * Sends `JSON.stringify(value)`; see {@linkcode send}.
   *
   * @throws {TypeError} If `JSON.stringify` makes no text of `value` (`undefined`, a function, a
   *   symbol), or makes `null`: {@linkcode ChannelReceiver.recvJson} returns `null` at the end of
   *   the stream, so a receiver would take it for the end and stop.
   */
  sendJson(value: unknown, timeoutMs?: number): void {
    const text: string | undefined = JSON.stringify(value);
    if (text === undefined) {
      // JSON.stringify has no text for these; send would blame a "message" the caller never made.
      throw new TypeError(
        `ChannelSender.sendJson: JSON.stringify makes no text of ${
          check.describe(value)
        }; send a value JSON can hold`,
      );
    }
    if (text === "null") {
      throw new TypeError(
        `ChannelSender.sendJson: ${
          value === null ? "null" : `${check.describe(value)} (JSON null)`
        } is what recvJson returns at the end of the stream, so a receiver would stop there; ` +
          "send another value (an object that holds it), or the text with send",
      );
    }
    this.#send(text, timeoutMs, "sendJson");
  }

  /** Sends without waiting: false if the ring has no room now. */
  trySend(message: Message): boolean {
    if (typeof message !== "string") return this.#trySendOne(message);
    const held = this.#textHeld; // as in #send
    try {
      return this.#trySendOne(message);
    } finally {
      this.#textHeld = held;
    }
  }

  #trySendOne(message: Message): boolean {
    const bytes = this.#start(message, "trySend");
    const len = this.#len;
    if (len > this.#ring.maxRecord) {
      throw new RangeError(
        `ChannelSender.trySend: a message of ${len} bytes needs several records; use send or sendAsync`,
      );
    }
    if (this.#abortOwed && !this.#tryPayAbort()) return false;
    return this.#tryFast(bytes, len);
  }

  /**
   * Reserves room for a `byteLength`-byte message and returns it as a zero-filled view into the
   * ring: write the message in place, then {@linkcode commit}. For large messages this saves
   * the copy that `send` makes.
   *
   * @param byteLength At most {@linkcode maxRecordBytes}.
   */
  reserve(byteLength: number, timeoutMs?: number): Uint8Array {
    this.#checkUsable("reserve");
    const len = check.integer(byteLength, "byteLength", 0, this.#ring.maxRecord);
    this.#checkPlace();
    const timeout = timeoutOf(timeoutMs);
    let deadline = NaN; // read from the clock only if this call has to wait
    if (this.#abortOwed) {
      deadline = deadlineAfter(timeout);
      runSync(this.#owedAbortSteps(deadline, true), this.#ring.parking);
    }
    // Its commit reports nothing, so the receiver's close is looked for here.
    if (this.#ring.rxClosed()) throw this.#ring.closedError(`ChannelSender.${this.#producer.call}`);
    let idx = this.#producer.tryReserve(len);
    if (idx === FULL) {
      if (Number.isNaN(deadline)) deadline = deadlineAfter(timeout);
      idx = runSync(this.#reserveSteps(len, deadline, true), this.#ring.parking);
    }
    this.#reservedIdx = idx;
    this.#reservedLen = len;
    const start = L.OFF_DATA + idx + 8;
    return this.#lender.view(start, len);
  }

  /** Publishes the message written into the view {@linkcode reserve} returned. */
  commit(): void {
    if (this.#closed) throw closedError(this.#ring, "ChannelSender.commit");
    const idx = this.#reservedIdx;
    if (idx < 0) {
      throw this.#ring.error(
        "EINVAL",
        "ChannelSender.commit",
        "nothing is reserved (call reserve() first; each reservation is committed once)",
      );
    }
    this.#reservedIdx = -1;
    this.#producer.call = "commit";
    // A close after the reservation is reported by this sender's next call.
    this.#producer.commit(idx, this.#reservedLen, 0);
  }

  /**
   * Abandons the reservation {@linkcode reserve} made: nothing is sent, and the receiver steps
   * over its room.
   *
   * @throws {SharedMemoryError} `EINVAL` if nothing is reserved.
   */
  abandon(): void {
    if (this.#closed) throw closedError(this.#ring, "ChannelSender.abandon");
    if (this.#reservedIdx < 0) {
      throw this.#ring.error("EINVAL", "ChannelSender.abandon", "nothing is reserved");
    }
    this.#dropReservation();
  }

  /**
   * Ends the stream: the receiver drains what is left, then sees the end. Also frees this
   * process's sender slot. Idempotent. With one sender, the stream is left open if this sender's
   * place holds another pid (a peer cleared it, and another sender attached: the stream is
   * that sender's now).
   */
  close(): void {
    if (this.#closed) return;
    this.#dropReservation();
    // Not a stream that another sender holds now (see #checkPlace).
    if (this.#ring.mode === L.MODE_MPSC || this.#ring.producerPid(0) === pid) {
      atomicOr(this.#ring.i32, L.OFF_TAIL >> 2, L.TAIL_CLOSED | 0);
    }
    this.#leave();
    this.#ring.wakeConsumer();
    this.#ring.wakeProducers();
  }

  /**
   * Leaves without ending the stream, for one of many senders: other senders go on. Idempotent.
   * With one sender (`producers: "one"`), whose stream it is, the same as {@linkcode close}: the
   * stream ends, and a sender attached after it gets `EPIPE`.
   */
  detach(): void {
    if (this.#ring.mode === L.MODE_SPSC) return this.close(); // one sender for the channel's life
    if (this.#closed) return;
    this.#dropReservation();
    this.#leave();
  }

  /** One sender ({@linkcode close}s the stream) or many ({@linkcode detach}es), like Rust's drop. */
  [Symbol.dispose](): void {
    if (this.#ring.mode === L.MODE_MPSC) this.detach();
    else this.close();
  }

  #leave(): void {
    this.#closed = true;
    this.#producer.left = true;
    // The caller's arrays this sender kept to know them again, let go.
    this.#known =
      this.#knownFrom =
      this.#wordsFor =
      this.#words =
        undefined;
    this.#knownKind = VIEWED_NONE;
    this.#fixed = this.#copied = undefined;
    this.#ring.parking.forget?.();
    this.#ring.detachProducer(this.#slot, pid);
    this.#registry.delete(this);
    removeSender(this.#ring, this.#local);
    // A send of ours waiting in the kernel wakes up and reports the close. It raised
    // `tx_waiting` before it waited, and whoever cleared the word since woke it: with the word
    // clear, no send of ours waits (a system call less per detach).
    if (atomicLoad(this.#ring.i32, L.OFF_TX_WAITING >> 2) !== 0) {
      this.#ring.parking.notify(L.OFF_TX_WAITING, 0xffff_ffff);
    }
  }

  #dropReservation(): void {
    if (this.#reservedIdx >= 0) {
      this.#producer.abandon(this.#reservedIdx, this.#reservedLen);
      this.#reservedIdx = -1;
    }
  }

  #checkUsable(what: string): void {
    if (this.#closed) throw closedError(this.#ring, `ChannelSender.${what}`);
    if (this.#busy) {
      throw this.#ring.error(
        "EBUSY",
        `ChannelSender.${what}`,
        "another send is still waiting; await it first",
      );
    }
    if (this.#reservedIdx >= 0) {
      throw this.#ring.error("EBUSY", `ChannelSender.${what}`, "commit the reservation first");
    }
    this.#producer.call = what;
  }

  /**
   * The message as bytes, its length (as the engine counts it, see `byteCount`) left in
   * {@linkcode #len}: the one length the send works with.
   */
  #start(message: Message, what: string, index = -1): Uint8Array {
    this.#checkUsable(what);
    // The array of the last send was a plain one (its type never changes): no need to look again.
    const known = this.#known;
    const from = this.#knownFrom;
    // The caller's view or buffer met last time, spanning the same bytes: `spanned` of them, as
    // counted there (a second count could run a getter a script put on the prototype, between
    // the check of the caller's array and the count).
    const spanned = known !== undefined && from !== undefined && message === from
      ? sameSpan(from, this.#knownKind, known)
      : -1;
    const bytes = spanned >= 0 || (known !== undefined && message === known)
      ? known!
      : typeof message === "string" && message.length <= SHORT_TEXT && !this.#textHeld
      ? this.#encode(message)
      : bytesOf(message, what, index);
    let len: number;
    try {
      len = spanned >= 0 ? spanned : quickByteCount(bytes, this.#known);
    } catch (error) {
      // A lookalike whose own properties passed `plainBytes`.
      throw lookalikeRefusal(error, bytes, `${messageLabel(what, index)} must be ${MESSAGE_KINDS}`);
    }
    // Its getters (`constructor`, `length`) may have closed this sender or started a send; a
    // closed one keeps nothing of the caller's.
    this.#checkUsable(what);
    if (bytes !== known) {
      // A view or an encoding of our own, of fixed length (or following an `ArrayBuffer`, which
      // only this thread can resize): it never grows while it is copied.
      if (bytes !== message) this.#fixed = bytes;
      this.#known = bytes;
      this.#knownKind = viewedFrom(message, bytes);
      this.#knownFrom = this.#knownKind === VIEWED_NONE ? undefined : message as object;
    }
    if (len === 0 && typeof message !== "string" && viewDetached(message)) {
      // Moved away (transfer(), postMessage): an empty message would hide the caller's mistake.
      throw refusal(
        new TypeError(
          `${
            messageLabel(what, index)
          } is over a detached buffer (moved by transfer() or postMessage, or its segment closed): it has no bytes to send`,
        ),
      );
    }
    if (len > L.MAX_MESSAGE_LEN) {
      throw refusal(
        new RangeError(
          `${
            messageLabel(what, index)
          } has ${len} bytes; a message may have at most ${L.MAX_MESSAGE_LEN}`,
        ),
      );
    }
    this.#len = len;
    return bytes;
  }

  /**
   * The UTF-8 of `text` (of at most {@linkcode SHORT_TEXT} units) in this sender's own buffer,
   * held until the send that called this is done ({@linkcode #textHeld}): 64 characters cost
   * Node.js and Deno about 200 ns less than a new array from `encode` (see `bench/README.md`).
   */
  #encode(text: string): Uint8Array {
    const bytes = this.#text ??= bytesView(new ArrayBuffer(3 * SHORT_TEXT), 0, 3 * SHORT_TEXT);
    // Whole: a unit takes at most 3 bytes (a pair of surrogates 4, for two units).
    const { written } = encodeInto.call(encoder, text, bytes);
    this.#textHeld = true;
    return this.#textViews[written] ??= bytesView(viewBuffer(bytes), 0, written);
  }

  /** The hot path: one record with room now, for the `len` bytes of `bytes`. */
  #tryFast(bytes: Uint8Array, len: number): boolean {
    const r = this.#ring;
    // #checkPlace, written out: as a call it still cost Bun's send 3.5 ns.
    if (r.mode === L.MODE_SPSC && r.i32[PLACE] !== pid) throw this.#slotTaken(r.producerPid(0));
    if (len > r.maxRecord || this.#abortOwed) return false;
    const { put, putState } = r.parking;
    if (put !== undefined) {
      const got = this.#producer.putNative(put, putState!, bytes, len);
      if (got === PUT_SENT) return true;
      if (got === PUT_FULL) return false;
      if (got === PUT_CLOSED) throw this.#ring.closedError(`ChannelSender.${this.#producer.call}`);
    }
    if (len <= SMALL_COPY && this.#ring.mode === L.MODE_SPSC) {
      let words = this.#words;
      if (
        bytes !== this.#wordsFor ||
        (words !== null && (words === undefined || this.#wordCount !== len >> 2))
      ) words = this.#wordsOf(bytes, len);
      if (words != null && this.#producer.putWords(bytes, words, len)) return true;
    }
    const idx = this.#producer.tryReserve(len);
    if (idx === FULL) return false;
    // A detached buffer counts 0 bytes, and `set` would throw on it with the record reserved.
    if (len !== 0) {
      try {
        this.#copyOut(bytes, idx, len);
      } catch (err) {
        // Thrown by code of the caller's (a replaced `call`): the record must not stay reserved,
        // or every message after it waits behind it.
        this.#producer.abandon(idx, len);
        throw err;
      }
    }
    if (!this.#producer.commit(idx, len, 0)) {
      throw this.#ring.closedError(`ChannelSender.${this.#producer.call}`);
    }
    return true;
  }

  /**
   * Copies the `len` bytes of `bytes` (a real typed array, as `#start` counted it) into the
   * record reserved at `idx`. `set` counts its source again, and a view that follows a growable
   * `SharedArrayBuffer` may have grown since (another thread grows it at any moment): copied
   * whole into the ring, it would run past the record, over free space (which the receiver then
   * reads as a corrupt record), records not read yet or another sender's. An array not known
   * not to grow (when it comes again, `mayGrow` looks at its buffer, once per array, as
   * `#wordsOf` does) is copied whole only where everything after the record is free space to
   * the end of the data area (where `ring.bytes` ends, and `set` throws before it copies past
   * it): what a grown one wrote there is zeroed before the commit. Elsewhere it is copied into
   * a view of the record alone (an allocation, some 20 ns).
   */
  #copyOut(bytes: Uint8Array, idx: number, len: number): void {
    const at = L.OFF_DATA + idx + 8;
    const ring = this.#ring;
    if (bytes !== this.#fixed) {
      const again = bytes === this.#copied;
      this.#copied = bytes;
      if (!again || mayGrow(bytes)) {
        const producer = this.#producer;
        if (producer.freeAfter(idx, len)) {
          try {
            copyInto(ring.bytes, bytes, at);
          } catch {
            copyInto(ring.bytes, countedView(bytes, len), at); // grown past the end: none copied
            return;
          }
          // Grown (its elements are its own; it cannot shrink here): the record holds its first
          // `len` bytes, as counted.
          if (bytes[len] !== undefined) producer.clearAfter(idx, len, viewLength(bytes));
          return;
        }
        const record = bytesView(ring.buffer, at, len);
        try {
          copyInto(record, bytes);
        } catch {
          copyInto(record, countedView(bytes, len)); // grown: `set` threw before it copied
        }
        return;
      }
      this.#fixed = bytes;
    }
    copyInto(ring.bytes, bytes, at);
  }

  /**
   * The words of the `len`-byte message `bytes` (a real typed array, which `#start` counted) for
   * {@linkcode #tryFast}, made at its second send in a row from the buffer and offset the engine
   * has; remembers it. None (null) for an array over a channel's ring (a view a receive lent):
   * its record may overlap it, and `set` copies an overlapping source whole, where a loop over
   * words would copy its own output.
   */
  #wordsOf(bytes: Uint8Array, len: number): Int32Array | null | undefined {
    const again = bytes === this.#wordsFor;
    this.#wordsFor = bytes;
    this.#words = undefined;
    if (!again) return undefined;
    const buffer = viewBuffer(bytes);
    const offset = viewByteOffset(bytes);
    this.#wordCount = len >> 2;
    return this.#words = (offset & 3) === 0 && ringAt(buffer) === undefined
      ? wordsView(buffer, offset, len >> 2)
      : null;
  }

  /**
   * The slow path of a send; its deadline starts when the fast path found no room. `sync`: run
   * by {@linkcode runSync}, blocking this thread while it waits.
   */
  *#sendSteps(message: Uint8Array, timeout: number, sync: boolean): Generator<Park, void> {
    const deadline = deadlineAfter(timeout);
    // A view of our own (an empty one for a detached buffer, which has no bytes to view), read
    // only through the engine's own getters and calls, taken at load: between reserving a
    // fragment's record and committing it no code of the caller's may run (a `set`, `subarray`
    // or `length` put on a built-in prototype would, and could send through this sender).
    const bytes = freshView(message);
    const buffer = viewBuffer(bytes);
    const offset = viewByteOffset(bytes);
    if (this.#abortOwed) yield* this.#owedAbortSteps(deadline, sync);
    const max = this.#ring.maxRecord;
    const total = viewLength(bytes);
    let sent = 0;
    do {
      const len = total - sent < max ? total - sent : max;
      const kind = (sent + len < total ? L.REC_MORE : 0) | (sent > 0 ? L.REC_CONT : 0);
      let idx: number;
      try {
        idx = yield* this.#reserveSteps(len, deadline, sync);
      } catch (err) {
        // Not once it has left (closed or detached while it waited): its slot may be another's.
        if (sent > 0 && !this.#closed) this.#owe();
        throw err;
      }
      // The record is given up, the message broken off, if the caller detached or shrank the
      // message's buffer while this send waited for room (a view out of bounds has no bytes),
      // or code of the caller's threw in the copy (a replaced `call`): a record left reserved
      // would hold back every message after it.
      let copied = false;
      try {
        if (viewLength(bytes) === total) {
          const at = L.OFF_DATA + idx + 8;
          if (len !== 0) copyInto(this.#ring.bytes, bytesView(buffer, offset + sent, len), at);
          copied = true;
        }
      } finally {
        if (!copied) {
          this.#producer.abandon(idx, len);
          if (sent > 0) this.#owe();
        }
      }
      if (!copied) {
        throw refusal(
          new TypeError(
            `ChannelSender.${this.#producer.call}: the message's buffer was detached or resized during the send`,
          ),
        );
      }
      // The receiver puts fragments together by the slot they name: a slot a peer made another
      // sender's would mix the two senders' messages. No abort is owed then: one would drop
      // the other's message. (A whole message, which the receiver takes whatever its slot, goes;
      // with one sender, #reserveSteps looked at its place just before it reserved.)
      if (kind !== 0) {
        const holder = this.#ring.producerPid(this.#slot);
        if (holder !== pid) {
          this.#producer.abandon(idx, len);
          throw this.#slotTaken(holder);
        }
      }
      // A fragment the receiver will never read: the channel is closed for good, no abort owed.
      if (!this.#producer.commit(idx, len, kind)) {
        throw this.#ring.closedError(`ChannelSender.${this.#producer.call}`);
      }
      sent += len;
    } while (sent < total);
  }

  /**
   * With one sender, `EBADMSG` unless its place holds its pid: a peer that cleared the word let a
   * second sender attach, and two senders writing the ring from tails of their own would
   * overwrite each other's records. Looked at before each send and each try of a wait for room
   * ({@linkcode #reserveSteps}). A plain read of a word nobody writes: nothing is ordered after it,
   * and an `Atomics.load` (a call in V8) cost a send of 64 B 7-9 ns in Deno.
   */
  #checkPlace(): void {
    const r = this.#ring;
    if (r.mode === L.MODE_SPSC && r.i32[PLACE] !== pid) {
      throw this.#slotTaken(r.producerPid(0));
    }
  }

  /** `EBADMSG` for a message this sender cannot send: its slot holds `holder`. */
  #slotTaken(word: number): SharedMemoryError {
    const holder = holderOf(word);
    const which = this.#ring.mode === L.MODE_SPSC
      ? "every send fails so, and closing this sender does not end the stream"
      : "messages of more than maxRecordBytes fail so";
    return this.#ring.error(
      "EBADMSG",
      `ChannelSender.${this.#producer.call}`,
      `this sender's slot holds ${holder} instead of its pid ${pid} (a peer wrote the channel's ` +
        `header): the message was not sent; ${which}`,
    );
  }

  /** A fragmented message broke off: tell the receiver now if there is room, else later. */
  #owe(): void {
    this.#abortOwed = true;
    try {
      this.#tryPayAbort();
    } catch {
      // The channel is closed or broken: the receiver drops partial messages at its end.
    }
  }

  /** Commits an owed abort record if there is room now. */
  #tryPayAbort(): boolean {
    // With one sender its reservation moves `tail` from this sender's own copy (see #checkPlace).
    this.#checkPlace();
    const idx = this.#producer.tryReserve(0);
    if (idx === FULL) return false;
    this.#commitAbort(idx);
    return true;
  }

  *#owedAbortSteps(deadline: number, sync: boolean): Generator<Park, void> {
    const idx = yield* this.#reserveSteps(0, deadline, sync);
    this.#commitAbort(idx);
  }

  #commitAbort(idx: number): void {
    this.#abortOwed = false;
    // Not for a slot that is another sender's now (see #sendSteps): the record is skipped.
    if (this.#ring.producerPid(this.#slot) !== pid) return this.#producer.abandon(idx, 0);
    // Into a closed channel: the next record's reservation reports it.
    this.#producer.commit(idx, 0, L.REC_ABORT);
  }

  /**
   * Reserves a record, parking on `tx_waiting` while the ring is full; `sync` as in
   * {@linkcode #sendSteps}.
   */
  *#reserveSteps(len: number, deadline: number, sync: boolean): Generator<Park, number> {
    const r = this.#ring;
    const producer = this.#producer;
    const { peerCheckMs } = this.#options;
    const spinner = this.#spinner;
    // An async wait spins at most briefly: its event loop waits meanwhile.
    let nextCheck = spinner.start(true, sync ? Infinity : SPIN_MS) + peerCheckMs;
    spinner.bound(deadline < nextCheck ? deadline : nextCheck);
    // Not in an async wait, whose event loop waits meanwhile, nor in a wait that does not spin:
    // spinning has not been paying lately (the receiver shares this core, where it cannot run
    // while this thread spins), or no spin is wanted. Its time counts against the spin's: a
    // gather that lasts leaves room for the record.
    if (sync && r.mode === L.MODE_SPSC && spinner.spins()) producer.gatherRoom(len, deadline);
    // Whether this thread holds the receiver is looked at once, when the ring is first full.
    let ownChecked = !sync;
    for (;;) {
      if (this.#closed) throw closedError(this.#ring, `ChannelSender.${this.#producer.call}`);
      // Before each reservation: with one sender it moves `tail` from this sender's own copy,
      // over what a sender that took the place meanwhile wrote.
      this.#checkPlace();
      let idx = producer.tryReserve(len);
      if (idx === FULL && !ownChecked) {
        ownChecked = true;
        idx = ownReceiver(r, producer, len, deadline, `ChannelSender.${this.#producer.call}`);
      }
      if (idx !== FULL) {
        spinner.end(true);
        return idx;
      }
      if (spinner.keepSpinning()) continue;
      const now = spinner.now();
      if (now >= deadline) {
        spinner.end(false);
        throw this.#ring.error(
          "ETIMEDOUT",
          `ChannelSender.${this.#producer.call}`,
          "no room in the ring in time",
        );
      }
      if (now >= nextCheck) {
        const consumer = r.consumerPid();
        if (consumer !== 0 && !r.parking.alive(consumer)) {
          // A receiver that closed the channel and exited since the pid was read did not die.
          if (r.rxClosed()) throw r.closedError(`ChannelSender.${this.#producer.call}`);
          throw this.#ring.error(
            "ECONNRESET",
            `ChannelSender.${this.#producer.call}`,
            (consumer & L.PID_GONE) === 0
              ? `the channel's receiver (process ${consumer}) died`
              : `the channel's receiver, of process ${
                consumer & L.POS_MASK
              }, went without close() while its process lives on (its Worker ended, or the engine collected it)`,
          );
        }
        nextCheck = now + peerCheckMs;
      }
      atomicExchange(r.i32, L.OFF_TX_WAITING >> 2, 1);
      if (!producer.shouldWake()) {
        spinner.parking();
        yield {
          offset: L.OFF_TX_WAITING,
          ns: nsUntil(Math.min(deadline, nextCheck, now + PARK_MS), now),
        };
        // Closed while it waited (the sender, or its channel): the memory may be gone.
        if (this.#closed) throw closedError(this.#ring, `ChannelSender.${this.#producer.call}`);
      } else {
        // `head` moved since the look: look again, on a fresh clock, so that the deadline and
        // the receiver's check still come when the room it makes never fits (many senders
        // taking it first, or a peer writing `head`).
        spinner.refresh();
      }
      if (r.mode === L.MODE_SPSC) atomicExchange(r.i32, L.OFF_TX_WAITING >> 2, 0);
    }
  }
}

/** sendMany runs of this thread in progress (an element's getter may be running in one). */
let runs = 0;

/**
 * What a synchronous send that found the ring full does when this thread holds the channel's
 * receiver (through any mapping of its segment): while the send blocks the thread, that receiver
 * cannot run, and no other process can make room. Inside one of the receiver's calls (a
 * recvMany callback, a listener while a receive waits) the receiver first hands back what it
 * consumed before the callback's message; the send takes the room that makes, or fails with
 * `EDEADLK` at once, whatever its timeout. Outside them a send without a deadline fails alike
 * (it would wait forever); one with a deadline waits it out (`ETIMEDOUT`), as asked.
 * Returns the record reserved, or FULL: wait as usual.
 */
function ownReceiver(
  ring: Ring,
  producer: Producer,
  len: number,
  deadline: number,
  caller: string,
): number {
  if (ring.consumerPid() !== pid) return FULL;
  const receiver = receiverHere(ring);
  if (receiver === undefined) return FULL; // another thread of this process receives
  const inCall = receiver.inCall();
  if (inCall) {
    receiver.handBack();
    const idx = producer.tryReserve(len);
    if (idx !== FULL) return idx;
  } else if (deadline !== Infinity) return FULL;
  throw ring.error(
    "EDEADLK",
    caller,
    inCall
      ? `a send inside this channel's recvMany callback (or a receive's listener) would wait for room only that call frees when it returns; use sendAsync there, or send after the call`
      : `the ring is full and only this thread's receiver of the channel can make room, which it cannot while the send waits; receive first, or use sendAsync (or a timeout)`,
  );
}

/** Options for {@linkcode Channel.receiver}. */
export interface ReceiverOptions extends EndpointOptions {
  /**
   * The longest message the receiver puts back together from fragments, in bytes; a longer one
   * is dropped and the receive that meets it throws `EMSGSIZE`. Default 64 MiB. (A message of
   * one record, at most `maxRecordBytes`, is delivered whatever this says.)
   */
  maxMessageBytes?: number;
  /**
   * All partially received messages of all senders together, in bytes; the message whose next
   * fragment would go beyond it is dropped (`EMSGSIZE`). Default 256 MiB.
   */
  maxPendingBytes?: number;
}

/**
 * Dispatched by a {@linkcode ChannelReceiver} (event type `"senderdied"`) when it finds that a
 * sender process died without closing or detaching. Its place is free again for a new sender
 * (with more than 16 dead senders' messages ahead, once the receiver has received past this
 * one's or has room to record it); the messages it completed are still delivered, its unfinished message is dropped.
 *
 * @example
 * ```ts
 * rx.addEventListener("senderdied", (e) => console.warn(`sender ${e.pid} died`));
 * ```
 */
export class SenderDiedEvent extends Event {
  /** The dead process's id (with {@linkcode thread}, the live process of the thread that ended). */
  readonly pid: number;
  /** The sender slot it held (0 with one sender), free again (see above). */
  readonly slot: number;
  /**
   * True when the sender went without `close()` while its process lives on: its Worker ended
   * (terminated, say; the runtime tells the library of a Worker's end through Node-API), or the
   * engine collected it with its channel, once nothing held them.
   */
  readonly thread: boolean;

  /** @internal Made by the receiver, with the pid word as found. */
  constructor(word: number, slot: number) {
    super("senderdied");
    this.pid = word & L.POS_MASK;
    this.slot = slot;
    this.thread = (word & L.PID_GONE) !== 0;
  }
}

/** The events a {@linkcode ChannelReceiver} dispatches. */
export interface ChannelReceiverEventMap {
  /** A sender process died (see {@linkcode SenderDiedEvent}). */
  senderdied: SenderDiedEvent;
}

/** A partial message of one sender: its pieces and their length. */
interface Partial {
  parts: Uint8Array[];
  size: number;
}

/**
 * The receiving end of a {@linkcode Channel}. Messages come out in the order they were sent
 * (per sender, with many senders); `null` means the end of the stream: a sender closed the
 * channel and everything before was received.
 *
 * Every `peerCheckMs` it checks that its senders' processes still exist: while it waits for a
 * message, and between receives when it never waits (it looks at the clock about four times
 * a `peerCheckMs` at the pace it receives, and at least every 1,024 receives; a `recvMany`
 * batch counts its messages). A dead sender's place is freed for a new sender, the messages it
 * completed are still delivered, its unfinished message and any record it reserved but never
 * committed are dropped, and a {@linkcode SenderDiedEvent} (`"senderdied"`) is dispatched:
 * inside the receive that found it (before it takes a message), or when a `recvMany` batch
 * ends. Its listeners may not receive (`EBUSY`). A receive fails with `ECONNRESET` only when the
 * ring is empty, no sender is attached, and one died with no sender attached since (the others
 * may have closed or detached, before or after it died); a sender that attaches later is
 * received.
 *
 * @example
 * ```ts
 * const rx = channel.receiver();
 * rx.addEventListener("senderdied", (e) => console.warn(`sender ${e.pid} died`));
 * for await (const message of rx) console.log(message.length);
 * ```
 */
export class ChannelReceiver extends EventTarget implements Disposable, AsyncIterable<Uint8Array> {
  readonly #ring: Ring;
  readonly #lender: Lender;
  readonly #consumer: Consumer;
  readonly #options: Required<EndpointOptions>;
  readonly #spinner: Spinner;
  readonly #maxMessage: number;
  readonly #maxPending: number;
  readonly #registry: Set<unknown>;
  #closed = false;
  /** An async receive is waiting: receives do not overlap. */
  #busy = false;
  /** A recvMany is handing out messages: its callbacks may not receive. */
  #inBatch = false;
  /**
   * A receive is under way in this thread, past {@linkcode #begin}: code of the caller's that
   * runs inside it (a getter, a built-in a script replaced, a "senderdied" listener) may not
   * receive, and if it closes the receiver, the receive ends with `EBADF` (see
   * {@linkcode #leave}). The hot paths run nothing a script can replace between their look at
   * the state and their take, and look at this flag in that look.
   */
  #entered = false;
  /** A synchronous receive waits (and runs the "senderdied" listeners). */
  #waiting = false;
  /**
   * The last {@linkcode #tryOne} stopped after {@linkcode STEP_LIMIT} records that delivered
   * nothing.
   */
  #stalled = false;
  /**
   * In a recvMany batch, the position of the record consumed for the callback that runs (or -1:
   * its message is lent, not consumed): what the batch hands back early stops there.
   */
  #working = -1;
  /** What this thread's senders of the channel see of this receiver (see local.ts). */
  readonly #local = {
    inCall: (): boolean => this.#inBatch || this.#waiting,
    handBack: (): void => this.#handBack(),
  };
  /** A message that did not fit a recvInto target: the next receive returns it again. */
  #held: Uint8Array | undefined;
  /** A message lent by recvView: its data index (-1: none) and length, released at the next receive. */
  #lentIdx = -1;
  #lentLen = 0;
  /** The copy a text is decoded from (see {@linkcode #decode}), kept up to `TEXT_COPY_KEPT`. */
  #textCopy: Uint8Array = new Uint8Array(0);
  /** Its length, and its 32-bit words, for {@linkcode #takeSimple}. */
  #textRoom = 0;
  #textWords: Int32Array | undefined;
  /**
   * Views of its first `n` bytes at index `n`, for `n` up to {@linkcode SMALL_COPY}, made once
   * each; without a prototype, so that a getter a script put on `Array.prototype` never runs.
   */
  #textViews: (Uint8Array | undefined)[] = Object.setPrototypeOf([], null);
  /** The last recvInto target and its 32-bit words (undefined: not 4-byte aligned). */
  #target: Uint8Array | undefined;
  #targetWords: Int32Array | undefined;
  /** How many words {@linkcode #targetWords} has (not its `length`, which a script can redefine). */
  #targetWordCount = 0;
  /** The caller's array `#target` is a view of, when it is not that array (see `viewedFrom`). */
  #targetFrom: Uint8Array | undefined;
  #targetKind: Viewed = VIEWED_NONE;
  /**
   * recvMany's copy of a run of records (see {@linkcode RUN_BYTES}), the lengths of its
   * messages, and a view of each payload by its offset (a view is made again only when the
   * length at that offset changes).
   */
  #run: { bytes: Uint8Array; lens: Int32Array; views: Uint8Array[] } | undefined;
  /** Partial fragmented messages, by sender tag (0 with one sender). */
  readonly #partial = new Map<number, Partial>();
  /** Bytes of all partial messages. */
  #pendingBytes = 0;
  /** Sender slots reclaimed from dead processes whose records are still ahead: slot -> end. */
  readonly #orphans = new Map<number, number>();
  /**
   * How many entries {@linkcode #partial} and {@linkcode #orphans} hold together, counted again
   * by {@linkcode #recount} after each change: the hot paths read this field, where each map's
   * `size` through the engine's own getter (a getter a script puts on `Map.prototype` must not
   * run there) costs 7-8 ns.
   */
  #unsettled = 0;
  /**
   * Those of them whose dead sender still holds the slot: slot -> its pid. Every entry of the
   * region was taken by dead senders whose records are ahead, so the slot is freed once its
   * records are passed (a receiver taking over from this one finds it dead, as this one did).
   */
  readonly #heldSlots = new Map<number, number>();
  /** A sender died and no sender has attached since (see {@linkcode #reap}). */
  #bereaved = false;
  /**
   * The senders alive at the check that last found one dead, as slot key, pid, slot key, pid,
   * ...: a sender seen alive later that is not among them attached since.
   */
  #survivors: number[] = [];
  /** The senders alive at this check, the same way (kept to spare an array per check). */
  #alive: number[] = [];
  /** The head at which an unmarked record was seen at the last check, or -1 ... */
  #stuckAt = -1;
  /** ... and at how many checks in a row (see #checkSenders). */
  #stuckChecks = 0;
  /** When the next liveness check is due (performance.now() time), whether it waits or not ... */
  #nextCheck: number;
  /** ... and, for a receiver that does not wait, when it may reap again (see #lookBusy). */
  #nextBusyCheck = 0;
  /** Receives left before one that does not wait looks at the clock (see #lookBusy) ... */
  #countdown = 1; // the first receive looks, and learns the pace from there
  /** ... counted down from this many, since this last look. */
  #lookedAfter = 1;
  #lastLook = performance.now();
  /** Dead senders found while no listener could run (in a recvMany batch): dispatched next. */
  #died: SenderDiedEvent[] = [];

  /**
   * @internal Made by {@linkcode Channel.receiver}, `options` from `receiverOptions`; `lender` as
   * for {@linkcode ChannelSender}.
   */
  constructor(
    ring: Ring,
    options: Required<ReceiverOptions>,
    registry: Set<unknown>,
    lender: Lender = new Lender(ring, () => ring.buffer),
  ) {
    if (!(ring instanceof Ring)) throw noConstructor("ChannelReceiver", "a channel's receiver()");
    super();
    this.#lender = lender;
    this.#options = options;
    this.#spinner = new Spinner(options.spin);
    this.#nextCheck = performance.now() + options.peerCheckMs;
    this.#maxMessage = options.maxMessageBytes;
    this.#maxPending = options.maxPendingBytes;
    this.#ring = ring;
    this.#consumer = new Consumer(ring, ring.attachConsumer(pid), pid);
    // Dead senders that a receiver before this one reclaimed, whose records are still ahead.
    for (const [slot, end] of ring.loadOrphans(this.#consumer.head)) {
      this.#orphans.set(ring.mode === L.MODE_MPSC ? slot + 1 : 0, end);
    }
    this.#recount();
    // Dead senders its predecessor found (their records ahead, or passed with none attached
    // since: the header's word): it would have failed once the ring was empty with no sender
    // alive, and so does this one, unless a sender attaches after this moment.
    this.#bereaved = this.#unsettled !== 0 || atomicLoad(ring.i32, BEREAVED) !== 0;
    if (this.#bereaved) {
      // What this receiver knows, for the one that may take over from it in turn: its
      // predecessor may have died between recording an orphan and storing the word.
      atomicStore(ring.i32, BEREAVED, 1);
      this.#survivors = this.#attached();
    }
    this.#registry = registry;
    setReceiver(ring, this.#local);
  }

  // The listener and options types are the runtime's own declaration of `EventTarget`'s, not
  // the DOM's, which a Node.js project need not load; written out, as a public method's types
  // must be public.

  /** Listens for {@linkcode ChannelReceiverEventMap} events (`"senderdied"`). */
  override addEventListener<K extends keyof ChannelReceiverEventMap>(
    type: K,
    listener: (this: ChannelReceiver, event: ChannelReceiverEventMap[K]) => unknown,
    options?: Parameters<EventTarget["addEventListener"]>[2],
  ): void;
  /** Listens for any event type (EventTarget's signature). */
  override addEventListener(
    type: string,
    listener: Parameters<EventTarget["addEventListener"]>[1],
    options?: Parameters<EventTarget["addEventListener"]>[2],
  ): void;
  override addEventListener(
    type: string,
    listener: Parameters<EventTarget["addEventListener"]>[1],
    options?: Parameters<EventTarget["addEventListener"]>[2],
  ): void {
    super.addEventListener(type, listener, options);
  }

  /** Stops listening (see {@linkcode addEventListener}). */
  override removeEventListener<K extends keyof ChannelReceiverEventMap>(
    type: K,
    listener: (this: ChannelReceiver, event: ChannelReceiverEventMap[K]) => unknown,
    options?: Parameters<EventTarget["removeEventListener"]>[2],
  ): void;
  /** Stops listening (EventTarget's signature). */
  override removeEventListener(
    type: string,
    listener: Parameters<EventTarget["addEventListener"]>[1],
    options?: Parameters<EventTarget["removeEventListener"]>[2],
  ): void;
  override removeEventListener(
    type: string,
    listener: Parameters<EventTarget["addEventListener"]>[1],
    options?: Parameters<EventTarget["removeEventListener"]>[2],
  ): void {
    super.removeEventListener(type, listener, options);
  }

  /**
   * Receives the next message as a copy, blocking while there is none.
   *
   * @param timeoutMs How long to wait at most; default forever.
   * @returns The message, or `null` at the end of the stream.
   * @throws {SharedMemoryError} `ETIMEDOUT`; `ECONNRESET` if the ring is empty, no sender is
   *   attached and one died; `EMSGSIZE` if a fragmented message went beyond the receiver's
   *   limits (that message is dropped, the next receive goes on); `EBADMSG` if the ring is
   *   corrupt, or if this receiver's place holds another pid (a peer wrote the header); `EBADF` if the receiver or its
   *   channel was closed, also while the receive waited; `EDEADLK` if it would wait for a
   *   sender of this thread: inside that sender's `sendMany`, or, without a timeout, when the
   *   channel's only sender is this thread's (with many senders: when the next record is this
   *   thread's uncommitted `reserve()`). See `docs/channel.md`, "Both ends in one thread".
   */
  recv(timeoutMs?: number): Uint8Array | null {
    return this.#takeCopy(timeoutMs, "recv") ??
      this.#viewIn(timeoutOf(timeoutMs), "recv", AS_COPY) as Uint8Array | null;
  }

  /**
   * Receives the next message into `target` without allocating: the copying receive for hot
   * loops.
   *
   * @returns The message's length, or `null` at the end of the stream.
   * @throws {RangeError} If the message is longer than `target`; it stays next in line, for a
   *   receive with a larger target (or {@linkcode recv}).
   * @throws {SharedMemoryError} Those of {@linkcode recv}; `EFAULT` if `target` lies inside a
   *   channel's ring or header (a view lent by {@linkcode recvView}, a `recvMany` callback or
   *   `reserve()`, invalid once released: senders reuse that room).
   */
  recvInto(target: Uint8Array, timeoutMs?: number): number | null {
    // The target of the last receive (or the array it was adopted from) is a real Uint8Array:
    // nothing to look at again. Else `isView` first, as in sync.ts's `locate`: a revoked Proxy
    // throws at `instanceof`.
    const known = target !== undefined &&
      (target === this.#target || target === this.#targetFrom);
    if (!known && (!isView(target) || !(target instanceof Uint8Array))) {
      const realm = check.otherRealm(target, "Uint8Array");
      throw new TypeError(
        `ChannelReceiver.recvInto: target must be a Uint8Array, got ${
          realm !== ""
            ? `a Uint8Array${realm}`
            : isView(target)
            ? check.lookalike(target) ?? check.kindOf(target)
            : check.describe(target)
        }`,
      );
    }
    // The arguments before the state: a bad timeout is reported as such, also on a closed or
    // busy receiver.
    const timeout = timeoutOf(timeoutMs);
    // Before the target is looked at: a "senderdied" listener may resize or detach it.
    if (--this.#countdown <= 0) this.#lookBusy();
    // #target is plain already (an array's type never changes).
    let from: Uint8Array | undefined;
    const own = this.#target;
    // A `Buffer` given again spanning the bytes it had: their count (see `#start`), else -1.
    const spanned = target !== own && target === this.#targetFrom
      ? sameSpan(target, this.#targetKind, own!)
      : -1;
    if (target !== own) {
      if (spanned >= 0) {
        target = own!;
      } else {
        // Once per target: a Proxy of one or a DataView given its prototype passes `instanceof`.
        if (!isTypedArray(target)) {
          throw new TypeError(
            `ChannelReceiver.recvInto: target must be a Uint8Array, got ${check.describe(target)}`,
          );
        }
        from = target;
        target = plainView(target);
      }
    }
    // #target was counted by the engine's getter before (it is a real typed array).
    const room = spanned >= 0 ? spanned : quickByteCount(target, own);
    // A listener or getter above may have closed this receiver, which keeps nothing of the
    // caller's (the receive below then fails with EBADF).
    if (target !== own && !this.#closed) {
      this.#adopt(target, room);
      this.#targetKind = viewedFrom(from, target);
      this.#targetFrom = this.#targetKind === VIEWED_NONE ? undefined : from;
      if (this.#closed) this.#forgetTarget();
    }
    // The hot path: one whole message waiting, copied straight out of the ring (no view made).
    // The adoption above may have run code of the caller's (a getter met on the way), and a
    // receive made there adopted its own target: then the slow path copies.
    if (this.#simple() && this.#target === target) {
      // Entered from the look at the state to the take (see #entered).
      this.#entered = true;
      let len: number;
      try {
        let words = this.#targetWords;
        // The target recvInto adopted, but its buffer may have been resized since (a view that
        // follows its buffer's length, or one that went out of bounds and back): words of its
        // length now.
        if (words !== undefined && this.#targetWordCount !== room >> 2) {
          this.#wordsOf(target, room);
          words = this.#targetWords;
        }
        len = this.#takeSimple(target, room, words, "recvInto");
      } finally {
        this.#leave("recvInto");
      }
      if (len >= 0) return len;
    }
    return this.#recvIntoSlow(target, room, timeout);
  }

  #recvIntoSlow(target: Uint8Array, room: number, timeout: number): number | null {
    this.#begin("recvInto");
    try {
      const view = this.#view(timeout, "recvInto");
      if (view === null) return null;
      // Counted again: a "senderdied" listener that ran meanwhile may have resized or detached
      // it.
      room = byteCount(target);
      const len = viewLength(view);
      if (len > room) {
        this.#held = view;
        if (room === 0 && viewDetached(target)) {
          // As a send of such a view says: "target only 0" would hide the caller's mistake. A
          // RangeError still, as for any target without room.
          throw new RangeError(
            `ChannelReceiver.recvInto: target is over a detached buffer (moved by transfer() or postMessage, or its segment closed): it has no room for the next message (${len} bytes), which stays next`,
          );
        }
        throw new RangeError(
          `ChannelReceiver.recvInto: the next message has ${len} bytes, target only ${room}`,
        );
      }
      copyInto(target, view);
      this.#putBack();
      return len;
    } finally {
      this.#leave("recvInto");
    }
  }

  /**
   * Receives every message that is ready, handing each to `onMessage` in order: the batch path.
   * Waits (up to `timeoutMs`) only for the first; then delivers what the ring holds, up to
   * `max`, without waiting, and hands the room back to the senders once for the whole batch.
   * Each view is valid only during its `onMessage` call (copy what you keep): it points into
   * the ring, or, for a message of up to 256 bytes, into a buffer of the receiver that the next
   * message reuses. A fragmented message comes as one reassembled buffer, as from
   * {@linkcode recvView}.
   *
   * Errors are those of {@linkcode recv}, met at the same message: the messages before it were
   * delivered and consumed. If `onMessage` throws, its message counts as delivered and the
   * error propagates. A synchronous send from `onMessage` into this channel (through any
   * opening of it) that finds the ring full gets the room of the messages delivered before in
   * this batch, or fails with `EDEADLK` at once: use `sendAsync` there to wait.
   *
   * @param onMessage Called with each message.
   * @param timeoutMs How long to wait for the first message at most; default forever.
   * @param max The most messages to deliver in this call; default no limit.
   * @returns How many messages were delivered (at least 1), or `null` at the end of the
   *   stream with none delivered (the end after some messages is returned by the next call).
   */
  recvMany(
    onMessage: (message: Uint8Array) => void,
    timeoutMs?: number,
    max?: number,
  ): number | null {
    if (typeof onMessage !== "function") {
      throw new TypeError(
        `ChannelReceiver.recvMany: onMessage must be a function, got ${check.describe(onMessage)}`,
      );
    }
    const limit = max === undefined ? Infinity : check.integer(max, "max", 1, 2 ** 53 - 1);
    // From the first message on, #inBatch keeps the callbacks from receiving.
    const first = this.#viewIn(timeoutOf(timeoutMs), "recvMany", AS_VIEW) as Uint8Array | null;
    if (first === null) return null;
    const consumer = this.#consumer;
    const lender = this.#lender;
    let count = 0;
    // The batch's messages count toward the next look at the clock: a batch that never ends
    // still checks on its senders (their events wait for the batch's end).
    let look = this.#countdown;
    this.#inBatch = true;
    this.#working = -1;
    try {
      count++;
      onMessage(first);
      this.#putBack();
      while (count < limit && !this.#closed) {
        // Each run's look (a message of its own is looked at by #tryOne).
        this.#checkPlace("recvMany");
        if (count >= look) {
          this.#lookBusy();
          look = count + this.#countdown;
        }
        if (this.#unsettled === 0) {
          const idx = consumer.peek();
          if (idx >= 0 && (consumer.word & L.REC_KINDS) === 0) {
            const start = L.OFF_DATA + idx + 8;
            const len = consumer.len;
            if (len <= SMALL_COPY) {
              count += this.#deliverRun(idx, onMessage, limit - count);
              continue;
            }
            count++;
            // Consumed before the call too (its room goes back with the next one's, so a
            // receiver killed in the callback leaves it to the next): a callback that closes
            // the receiver has consumed it, as a sender that then sees the close reads `head`.
            this.#working = consumer.head;
            consumer.consume(len);
            const view = lender.view(start, len);
            // Closed by code of the caller's that ran in the view's making: its record is zeroed.
            if (this.#closed) break;
            onMessage(view);
            continue;
          }
        }
        const view = this.#tryOne();
        if (view === undefined || view === null) break; // nothing ready, or the end: next call
        if (this.#closed) break; // as above
        this.#working = -1;
        count++;
        onMessage(view);
        this.#putBack();
      }
    } finally {
      this.#inBatch = false;
      if (!this.#closed) consumer.publish();
      // Events the batch found wait for the next receive if a callback threw.
      this.#countdown = this.#died.length !== 0 ? 0 : look - count;
    }
    if (this.#died.length !== 0) this.#dispatchDied();
    return count;
  }
  /** {@linkcode recv} as a Promise: waits without blocking the event loop. */
  recvAsync(timeoutMs?: number): Promise<Uint8Array | null> {
    return this.#recvAsync(timeoutMs, "recvAsync");
  }

  /** {@linkcode recvAsync}, its errors named after `what`. */
  async #recvAsync(timeoutMs: number | undefined, what: string): Promise<Uint8Array | null> {
    const message = this.#takeCopy(timeoutMs, what) ??
      await this.#viewAsync(timeoutMs, what, AS_COPY) as Uint8Array | null;
    // Taken, in call order, and a copy: the event loop may have its turn before it is handed out.
    if (mustYield()) await nextTurn();
    return message;
  }

  /**
   * Receives the next message without copying it: the view points into the ring and stays
   * valid until the next receive on this receiver (or {@linkcode release}), when its space is
   * handed back to the senders. A fragmented message comes back as one reassembled buffer.
   */
  recvView(timeoutMs?: number): Uint8Array | null {
    // The timeout before #begin looks at the state, as in recvInto.
    return this.#viewIn(timeoutOf(timeoutMs), "recvView", AS_VIEW) as Uint8Array | null;
  }

  /**
   * {@linkcode #view} between {@linkcode #begin} and {@linkcode #leave}, handed out `as`
   * {@linkcode #made} makes it: a method of its own, as a `try` in the caller costs
   * JavaScriptCore about 3 ns per message of a `recvMany`.
   */
  #viewIn(timeout: number, what: string, as: As): Uint8Array | string | null {
    this.#begin(what);
    try {
      return this.#made(this.#view(timeout, what), as);
    } finally {
      this.#leave(what);
    }
  }

  /**
   * {@linkcode recvView} after {@linkcode #begin}, its errors named after `what` (the call the
   * user made); `timeout` from {@linkcode timeoutOf}.
   */
  #view(timeout: number, what: string): Uint8Array | null {
    const fast = this.#takeHeld() ?? this.#tryOne();
    if (fast !== undefined) return fast;
    // Busy while it waits: a "senderdied" listener runs inside the wait and may not receive.
    this.#busy = true;
    this.#waiting = true;
    try {
      return runSync(this.#recvSteps(timeout, true, what), this.#ring.parking);
    } finally {
      this.#busy = false;
      this.#waiting = false;
    }
  }

  /**
   * {@linkcode recvView} as a Promise. Until it settles, other receives of this receiver throw
   * `EBUSY`, also when the message was there at once: the view is not the caller's before then.
   */
  async recvViewAsync(timeoutMs?: number): Promise<Uint8Array | null> {
    // A view comes back with the receiver left busy (#viewAsync): other receives wait for this
    // one (EBUSY), as while a receive waits for a message, until it is handed out. (A receive
    // made before the promise settled took none, handed the view's room back, and the view
    // handed out then held zeroes or another message.)
    const view = await this.#viewAsync(timeoutMs, "recvViewAsync", AS_VIEW) as Uint8Array | null;
    if (view === null) {
      // The end, in call order, as recvAsync's: nothing lent, nothing busy.
      if (mustYield()) await nextTurn();
      return null;
    }
    try {
      if (mustYield()) await nextTurn();
    } finally {
      this.#busy = false;
    }
    // A close meanwhile handed its room back.
    if (this.#closed) throw closedError(this.#ring, "ChannelReceiver.recvViewAsync");
    return view;
  }

  /**
   * {@linkcode recvViewAsync}, its errors named after `what` (the call the user made); `as`
   * {@linkcode AS_COPY} or {@linkcode AS_TEXT}, a copy of the message or its text, made before
   * any other call of this receiver can run: a lent view handed through a settled promise could
   * be released by the next receive (a `recvAsync` not awaited before the next one copied
   * another message's bytes, or zeroes; `texts()` decoded zeroes when a receive ran in a
   * microtask in between).
   */
  async #viewAsync(
    timeoutMs: number | undefined,
    what: string,
    as: As,
  ): Promise<Uint8Array | string | null> {
    const timeout = timeoutOf(timeoutMs); // before #begin looks at the state, as in recvInto
    this.#begin(what);
    let fast: Uint8Array | null | undefined;
    try {
      fast = this.#takeHeld() ?? this.#tryOne();
      if (fast !== undefined && as !== AS_VIEW) return this.#made(fast, as);
    } finally {
      this.#leave(what);
    }
    if (fast !== undefined) {
      // A view stays lent to this call, busy, until recvViewAsync hands it out.
      if (fast !== null) this.#busy = true;
      return fast;
    }
    this.#busy = true;
    let lent = false;
    try {
      const view = await runAsync(this.#recvSteps(timeout, false, what), this.#ring.parking);
      // Entered, as after #begin: code of the caller's that runs in the copy or the decode may
      // not receive or release, and a close made there ends this receive.
      this.#entered = true;
      let made: Uint8Array | string | null;
      try {
        made = this.#made(view, as);
      } finally {
        this.#leave(what);
      }
      lent = as === AS_VIEW && made !== null; // busy until handed out, as above
      return made;
    } finally {
      if (!lent) this.#busy = false;
    }
  }

  /** What a receive hands out `as`, of the message `view` lent (a copy's or a text's room goes back). */
  #made(view: Uint8Array | null, as: As): Uint8Array | string | null {
    if (view === null || as === AS_VIEW) return view;
    if (as === AS_COPY) return this.#copy(view);
    const text = this.#decode(view);
    this.#putBack();
    return text;
  }

  /**
   * Receives without waiting: a message (a copy), `undefined` if none is ready, `null` at the end.
   * `undefined` also after 1,024 records that deliver nothing in a row (abandoned reservations,
   * aborted messages, fragments of a message not complete yet, a step per 64 KiB of them), which
   * it consumes: a message behind more of them, or of more fragments, takes more calls.
   */
  tryRecv(): Uint8Array | null | undefined {
    const fast = this.#takeCopy(undefined, "tryRecv");
    if (fast !== undefined) return fast;
    this.#begin("tryRecv");
    try {
      const view = this.#takeHeld() ?? this.#tryOne();
      return view === undefined ? undefined : this.#copy(view);
    } finally {
      this.#leave("tryRecv");
    }
  }

  /** Receives a UTF-8 message as a string (`null` at the end). */
  recvText(timeoutMs?: number): string | null {
    return this.#text(timeoutMs, "recvText");
  }

  /** {@linkcode recvText}, its errors named after `what` (the call the user made). */
  #text(timeoutMs: number | undefined, what: string): string | null {
    // Before the state is looked at, as in recvInto: the look may run a "senderdied" listener.
    if (--this.#countdown <= 0) this.#lookBusy();
    const timeout = timeoutOf(timeoutMs); // before the state is looked at, as in recvInto
    if (this.#textRoom === 0) this.#growTextCopy(SMALL_COPY);
    if (this.#simple()) {
      // As recvInto's hot path, into the copy a text is decoded from: no view of the ring.
      // Entered until the text is made: a receive made in between would write over the copy.
      this.#entered = true;
      let text: string | undefined;
      try {
        const len = this.#takeSimple(this.#textCopy, this.#textRoom, this.#textWords, what);
        if (len >= 0) text = decodeOf.call(decoder, this.#textView(len));
      } finally {
        this.#leave(what);
      }
      if (text !== undefined) return text;
    }
    return this.#viewIn(timeout, what, AS_TEXT) as string | null;
  }

  /** Nothing held, lent or in progress: a receive may take the next message as it is. */
  #simple(): boolean {
    return this.#held === undefined && this.#lentIdx < 0 && !this.#closed && !this.#busy &&
      !this.#inBatch && !this.#entered;
  }

  /** Makes the copy a text is decoded from hold `length` bytes (up to `TEXT_COPY_KEPT`). */
  #growTextCopy(length: number): void {
    const grown = Math.max(length, 2 * this.#textRoom, SMALL_COPY);
    const room = Math.min(grown, TEXT_COPY_KEPT);
    this.#textCopy = bytesView(new ArrayBuffer(room), 0, room);
    this.#textRoom = room;
    this.#textWords = wordsView(viewBuffer(this.#textCopy), 0, room >> 2);
    this.#textViews = Object.setPrototypeOf([], null);
  }

  /**
   * Decodes a lent message as UTF-8 from a private copy, never from the ring: the engines'
   * decoders read their input twice (once to size the string, once to fill it) and write past
   * the string when the bytes change in between, which a peer writing the ring can make happen
   * (a crash, seen in every runtime). The copy is one pass.
   */
  #decode(view: Uint8Array): string {
    const length = viewLength(view);
    if (length > TEXT_COPY_KEPT) return decodeOf.call(decoder, copyOf(view));
    if (this.#textRoom < length) this.#growTextCopy(length);
    copyInto(this.#textCopy, view);
    return decodeOf.call(decoder, this.#textView(length));
  }

  /** A view of the first `len` bytes of the text copy; kept per length up to `SMALL_COPY`. */
  #textView(len: number): Uint8Array {
    return len <= SMALL_COPY
      ? this.#textViews[len] ??= bytesView(viewBuffer(this.#textCopy), 0, len)
      : bytesView(viewBuffer(this.#textCopy), 0, len);
  }

  /**
   * Receives a message sent by `sendJson` (`null` at the end, which `sendJson` refuses to send).
   *
   * @throws {SyntaxError} If the message is not JSON (it was sent as bytes or text, not by
   *   `sendJson`): it is consumed, and the error says so and how long it was.
   */
  recvJson<T = unknown>(timeoutMs?: number): T | null {
    const text = this.#text(timeoutMs, "recvJson");
    if (text === null) return null;
    try {
      // A byte order mark that a peer's UTF-8 writer put first (the texts keep it) is not JSON.
      return JSON.parse(text.charCodeAt(0) === 0xfeff ? text.slice(1) : text);
    } catch (err) {
      // Another error is the caller's own (a replaced `JSON.parse`): passed on as it is.
      if (!(err instanceof SyntaxError)) throw err;
      throw new SyntaxError(
        `ChannelReceiver.recvJson: the message (${text.length} UTF-16 units) is not JSON, and ` +
          `was consumed: ${err.message}`,
        { cause: err },
      );
    }
  }

  /**
   * Hands the space of a message lent by {@linkcode recvView} back to the senders now. A message
   * that a {@linkcode recvInto} left next in line (its target too small) is not lent: it stays,
   * for the next receive.
   *
   * @throws {SharedMemoryError} `EBUSY` from code that runs inside a receive of this receiver (a
   *   getter, a replaced built-in), or from a {@linkcode recvViewAsync} that took its message
   *   and has not settled: what that receive lent is not the caller's yet. (Before it took one,
   *   nothing is lent, and this does nothing.)
   */
  release(): void {
    // Nothing lent. (A held message was dropped here once, with no error: lost.)
    if (this.#lentIdx < 0 || this.#held !== undefined) return;
    // What a receive under way has lent or holds is not the caller's yet (nor a view
    // recvViewAsync hands over through the event loop's turn). A "senderdied" listener
    // (#waiting) may release the caller's view, as any code of the caller's may.
    if (this.#entered) throw this.#reentered("release");
    if (this.#busy && !this.#waiting) {
      throw this.#ring.error(
        "EBUSY",
        "ChannelReceiver.release",
        "an async receive of this receiver has not handed out what it took yet; await it first",
      );
    }
    this.#releaseEntered();
  }

  /**
   * {@linkcode #release} entered: the zeroing calls `fill`, and code of the caller's that runs
   * there may not receive.
   */
  #releaseEntered(): void {
    const entered = this.#entered;
    this.#entered = true;
    try {
      this.#release();
    } finally {
      this.#entered = entered;
    }
  }

  /** {@linkcode release}, also inside a receive (which ends with what it took). */
  #release(): void {
    this.#held = undefined;
    const idx = this.#lentIdx;
    if (idx >= 0) {
      this.#lentIdx = -1;
      // Not into a ring another receiver reads now: `Consumer.publish` looks (see #checkPlace).
      if (!this.#closed) this.#consumer.release(this.#lentLen);
    }
  }

  /**
   * Every message until the end of the stream, as copies. An error (`EBUSY`, `ECONNRESET`, ...)
   * ends the iteration, as any async generator's throw does: a later `next()` of the same
   * iterator says `done`, which is not the end of the stream; iterate again to go on.
   */
  async *[Symbol.asyncIterator](): AsyncIterator<Uint8Array> {
    for (;;) {
      // Its errors named for what the caller wrote, not for a call it never made.
      const message = await this.#recvAsync(undefined, "[Symbol.asyncIterator] (for await)");
      if (message === null) return;
      yield message;
    }
  }

  /**
   * Every message until the end of the stream, as UTF-8 strings. An error ends the generator, as
   * in {@linkcode ChannelReceiver[Symbol.asyncIterator]}: call `texts()` again to go on.
   */
  async *texts(): AsyncGenerator<string> {
    for (;;) {
      // Decoded before any other call of this receiver can run (see #viewAsync).
      const text = await this.#viewAsync(undefined, "texts", AS_TEXT) as string | null;
      if (text === null) return;
      // Taken, in call order: the event loop may have its turn before it is handed out.
      if (mustYield()) await nextTurn();
      yield text;
    }
  }

  /**
   * Leaves the channel and closes it for good: senders get `EPIPE` from then on, and no other
   * receiver can attach. A receive still waiting ends with `EBADF`. Idempotent.
   *
   * If this receiver's place holds another pid (a peer cleared it, and another receiver
   * attached), the channel is that receiver's now and stays open.
   *
   * There is no hand-over between live receivers. A receiver's process that ends without
   * `close()` (it exits, or is killed) leaves its place to the next one, which attaches once the
   * old one is found dead and starts where it last handed room back (`docs/channel.md`, _A
   * receiver that dies_).
   */
  close(): void {
    if (this.#closed) return;
    this.#releaseEntered();
    // A place another receiver holds now (see #checkPlace): the channel is that one's to close
    // (and `publish` hands nothing back into it).
    const mine = this.#ring.consumerPid() === pid;
    this.#consumer.publish(); // detachConsumer below wakes parked senders
    this.#closed = true;
    this.#forgetTarget();
    this.#ring.parking.forget?.();
    this.#lender.end();
    // Not its close mark, but its claim's note goes (else a Worker's end marks the word gone).
    if (mine) this.#ring.detachConsumer(pid);
    else this.#ring.unclaimConsumer(pid);
    this.#registry.delete(this);
    setReceiver(this.#ring, undefined);
    // A receive of ours waiting in the kernel wakes up and reports the close.
    this.#ring.parking.notify(L.OFF_RX_WAITING, 0xffff_ffff);
  }

  /** Same as {@linkcode close}, for `using`. */
  [Symbol.dispose](): void {
    this.close();
  }

  /** Lets go of the caller's target this receiver kept to know it again (it is closed). */
  #forgetTarget(): void {
    this.#target = this.#targetWords = this.#targetFrom = undefined;
    this.#targetKind = VIEWED_NONE;
  }

  #begin(what: string): void {
    this.#consumer.call = what;
    if (--this.#countdown <= 0) this.#lookBusy();
    if (this.#closed) throw closedError(this.#ring, `ChannelReceiver.${what}`);
    if (this.#inBatch) {
      throw this.#ring.error(
        "EBUSY",
        `ChannelReceiver.${what}`,
        "called from a recvMany callback; return from it first",
      );
    }
    if (this.#busy) {
      throw this.#ring.error(
        "EBUSY",
        `ChannelReceiver.${what}`,
        "another receive is under way (waiting, or a recvViewAsync not settled yet); await it first",
      );
    }
    if (this.#entered) throw this.#reentered(what);
    // Before the lent message is handed back: its zeroing calls `fill`.
    this.#entered = true;
    if (this.#held === undefined) {
      try {
        this.#putBack();
      } catch (err) {
        this.#entered = false; // the caller's `finally` has not begun
        throw err;
      }
    }
  }

  /**
   * Ends what {@linkcode #begin} began, in a `finally`: a receiver closed meanwhile by code of
   * the caller's that ran inside the receive (which released what it had lent) ends it with
   * `EBADF`.
   */
  #leave(what: string): void {
    this.#entered = false;
    if (this.#closed) throw closedError(this.#ring, `ChannelReceiver.${what}`);
  }

  /**
   * `EBADMSG` unless this receiver's place holds its pid: a peer that cleared the word let a
   * second receiver attach, and two receivers taking from one `head` would deliver messages
   * twice and move `head` back and forth. Looked at before each take (so at each look of a wait)
   * and each run of a batch; `Consumer.publish` looks before it hands room back. A plain read (an
   * `Atomics.load` is a call in V8), as the sender's.
   */
  #checkPlace(what: string): void {
    const word = this.#ring.i32[CONSUMER_PLACE];
    // Closed by code of the caller's inside this receive (its close freed the place): the
    // receive reports that as it always has.
    if (word === pid || this.#closed) return;
    const holder = holderOf(word);
    throw this.#ring.error(
      "EBADMSG",
      `ChannelReceiver.${what}`,
      `this receiver's place holds ${holder} instead of its pid ${pid} (a peer wrote the ` +
        "channel's header): nothing was received; every receive fails so, and closing this " +
        "receiver does not close the channel",
    );
  }

  /** The error of a receive (or release) made by code that runs inside another receive. */
  #reentered(what: string): SharedMemoryError {
    return this.#ring.error(
      "EBUSY",
      `ChannelReceiver.${what}`,
      "called from code that runs inside another receive of this receiver (a getter, a replaced built-in or a listener); return from it first",
    );
  }

  /**
   * A send of this thread found the ring full inside a recvMany callback: hands back what the
   * batch consumed before the callback's message (that record and the view of it stay).
   */
  #handBack(): void {
    if (!this.#inBatch || this.#closed) return;
    if (this.#working < 0) this.#consumer.publish();
    else this.#consumer.publishTo(this.#working);
  }

  /** Consumes the message lent by recvView as a new receive starts (see Consumer.take). */
  #putBack(): void {
    const idx = this.#lentIdx;
    if (idx >= 0) {
      this.#lentIdx = -1;
      if (!this.#closed) this.#consumer.release(this.#lentLen);
    }
  }

  /** Counts {@linkcode #unsettled} again, after a change of either map. */
  #recount(): void {
    this.#unsettled = mapSize(this.#partial) + mapSize(this.#orphans);
  }

  /**
   * The hot path of {@linkcode recvInto}: copies the next message into `target` and consumes it
   * when it is one whole record that fits in the `room` bytes of `target` and nothing else is
   * pending; else -1 (nothing taken).
   */
  #takeSimple(
    target: Uint8Array,
    room: number,
    words: Int32Array | undefined,
    what: string,
  ): number {
    this.#checkPlace(what);
    if (this.#unsettled !== 0) return -1;
    const consumer = this.#consumer;
    const { take, takeState } = this.#ring.parking;
    if (take !== undefined) {
      const len = consumer.takeNative(take, takeState!, target, room);
      if (len >= 0) return len;
    }
    if (take === undefined && words !== undefined) {
      // `room >> 2` words (recvInto and recvText keep them so): not `words.length` nor
      // `Math.min`, which a script can redefine, with the state looked at.
      const len = consumer.takeReady(
        target,
        words,
        room >> 2,
        room < SMALL_COPY ? room : SMALL_COPY,
      );
      if (len >= 0) return len;
    }
    const idx = consumer.peek();
    if (idx < 0 || (consumer.word & L.REC_KINDS) !== 0) return -1;
    const len = consumer.len;
    // Where each receive runs here (no native take) into a target takeReady can copy into, the
    // small messages after a small one are acquired now, for takeReady.
    if (take === undefined && words !== undefined && len <= SMALL_COPY) {
      consumer.readAhead(room < SMALL_COPY ? room : SMALL_COPY);
    }
    if (len > room) return -1;
    const bytes = this.#ring.bytes;
    const start = L.OFF_DATA + idx + 8;
    if (len <= SMALL_COPY) {
      if (words !== undefined) {
        consumer.announce(len); // the copy zeroes the ring as it goes
        consumer.takeCleared(idx, len, this.#copyOut(start, len, words, target));
        return len;
      }
      for (let i = 0; i < len; i++) target[i] = bytes[start + i];
    } else {
      copyInto(target, this.#ring.copyView(start, len));
    }
    consumer.release(len);
    return len;
  }

  /**
   * Copies the `len`-byte payload at byte `start` of the ring into `target` (whose whole 32-bit
   * words `words` views): word by word, each ring word zeroed as it is read (one pass instead of
   * a copy and a zeroing; the payload starts 8-byte aligned), then the bytes that are left.
   * Returns how many payload words it zeroed.
   */
  #copyOut(start: number, len: number, words: Int32Array, target: Uint8Array): number {
    const i32 = this.#ring.i32;
    const bytes = this.#ring.bytes;
    const from = start >> 2;
    const n = len >> 2;
    for (let w = 0; w < n; w++) {
      words[w] = i32[from + w];
      i32[from + w] = 0;
    }
    for (let i = n << 2; i < len; i++) target[i] = bytes[start + i];
    return n;
  }

  /**
   * recvMany's path for small messages: from the one {@linkcode Consumer.peek} found at `idx`
   * (at `head`), takes the run of whole small messages that follow it back to back (at most
   * `max`, {@linkcode RUN_BYTES} of records, up to the end of the data area), copies the run
   * into this receiver's buffer with one `set` and hands each message to `onMessage` as a view
   * of that copy, consuming it just before (a message whose callback throws counts as
   * delivered). The messages after one whose callback throws, closes the receiver or detaches
   * the copy (transfers the view's buffer) stay in the ring for the next receive. Returns how
   * many messages were handed out.
   */
  #deliverRun(idx: number, onMessage: (message: Uint8Array) => void, max: number): number {
    const consumer = this.#consumer;
    let run = this.#run;
    // A callback may have detached the buffer its view lent (transferred it, as to a worker).
    if (run === undefined || run.bytes.length === 0) {
      run = this.#run = {
        bytes: new Uint8Array(RUN_BYTES),
        lens: new Int32Array(RUN_BYTES >> 3),
        views: [],
      };
    }
    const { bytes: copy, lens, views } = run;
    const { scanRun, scanRunMin, takeState } = this.#ring.parking;
    // Native code finds and copies the run in one call (0: it found none, which a peer may
    // have caused since the peek, or a failure of the call itself; this path then looks for
    // itself), where a call is worth it for the bytes known to wait (Node.js: a few messages
    // cost less to look at here).
    const worth = scanRunMin === undefined || consumer.knownAhead() >= scanRunMin;
    let n = scanRun === undefined || !worth ? 0 : consumer.scanNative(
      scanRun,
      takeState!,
      copy,
      lens,
      Math.min(max, viewLength(lens)),
      SMALL_COPY,
    );
    if (n <= 0) {
      n = 0;
      let bytes = 0;
      for (let len = consumer.len; n < max;) {
        const span = L.recordSpan(len);
        if (bytes + span > RUN_BYTES) break;
        lens[n++] = len;
        bytes += span;
        // Records never cross the end of the data area: the next one there starts at 0.
        if (idx + bytes >= this.#ring.capacity || consumer.peekAt(bytes) < 0) break;
        len = consumer.len;
        if (len > SMALL_COPY) break;
      }
      copy.set(this.#ring.copyView(L.OFF_DATA + idx, bytes));
    }
    let at = 8; // the payload of the next message in the copy
    let k = 0;
    // The built-ins this loop looks up on prototypes and globals (`length`, `set`, `buffer`,
    // `Uint8Array`) cost less than the engine's accessors taken at load (Bun: 2 ns against 5.5
    // for a `length`), and a batch is where that counts. Code of the caller's that runs in them
    // may not receive (#inBatch); a close made there is seen before each message is handed out
    // (what the copy took after it may be the zeros the close left).
    while (k < n) {
      const len = lens[k];
      let view = views[at >> 3];
      if (view === undefined || view.length !== len) {
        view = views[at >> 3] = new Uint8Array(copy.buffer, at, len);
      }
      if (this.#closed) break;
      k++;
      at += L.recordSpan(len);
      this.#working = consumer.head;
      consumer.consume(len);
      onMessage(view);
      if (this.#closed || copy.length === 0) break;
    }
    return k;
  }

  /**
   * Checks a recvInto target met for the first time, then remembers it ({@linkcode #wordsOf}):
   * it may not lie in the ring of a channel, where a view lent by recvView, recvMany or reserve
   * points (invalid once released: senders reuse that room) and where the header is.
   */
  #adopt(target: Uint8Array, room: number): void {
    const ring = ringAt(viewBuffer(target));
    if (ring !== undefined && viewByteOffset(target) < L.OFF_DATA + ring.capacity) {
      throw this.#ring.error(
        "EFAULT",
        "ChannelReceiver.recvInto",
        "the target lies inside a channel's ring (a view lent by recvView, recvMany or reserve, which is invalid once released); receive into memory of your own",
      );
    }
    this.#wordsOf(target, room);
  }

  /**
   * Remembers `target` and, if it is 4-byte aligned, a view of the whole 32-bit words of its
   * `room` bytes (its buffer and offset as the engine has them, see `freshView`).
   */
  #wordsOf(target: Uint8Array, room: number): void {
    this.#target = target;
    this.#targetWords = undefined;
    this.#targetWordCount = 0;
    if (room < 4) return; // no whole word (or a detached buffer, which has no bytes to view)
    const own = freshView(target);
    const offset = viewByteOffset(own);
    if ((offset & 3) === 0) {
      this.#targetWords = wordsView(viewBuffer(own), offset, room >> 2);
      this.#targetWordCount = room >> 2;
    }
  }

  /** A message that did not fit a recvInto target, handed out again. */
  #takeHeld(): Uint8Array | undefined {
    const held = this.#held;
    this.#held = undefined;
    return held;
  }

  /**
   * The hot path of the copying receives where native code receives ({@linkcode Parking.take}):
   * the whole message waiting at `head`, copied into a new array of its length in one call, its
   * room handed back; undefined when anything else is the case (the receive's own path then
   * looks, and reports what it finds). `timeoutMs` is checked as the receive would.
   */
  #takeCopy(timeoutMs: number | undefined, what: string): Uint8Array | undefined {
    if (--this.#countdown <= 0) this.#lookBusy();
    timeoutOf(timeoutMs); // before the state is looked at, as in recvInto
    const { take, takeState } = this.#ring.parking;
    if (
      take === undefined || this.#held !== undefined || this.#lentIdx >= 0 || this.#closed ||
      this.#busy || this.#inBatch || this.#entered || this.#unsettled !== 0
    ) return undefined;
    this.#checkPlace(what);
    // Entered from the look at the state to the take (see #entered).
    this.#entered = true;
    let copy: Uint8Array | undefined;
    try {
      const consumer = this.#consumer;
      const len = consumer.waitingLength();
      if (len < 0) return undefined;
      copy = newBytes(len);
      const got = consumer.takeNative(take, takeState!, copy, len);
      // A peer may rewrite the commit word between the two looks: what was taken is delivered.
      if (got !== len) copy = got < 0 ? undefined : copyOf(bytesView(viewBuffer(copy), 0, got));
    } finally {
      this.#leave(what);
    }
    return copy;
  }

  /** A copy of a received message, whose room goes back to the senders at once. */
  #copy(view: Uint8Array | null): Uint8Array | null {
    if (view === null) return null;
    const copy = copyOf(view);
    this.#release();
    return copy;
  }

  /**
   * One step without waiting: a message (lent, or reassembled), `null` at the end, or
   * `undefined` when nothing is ready, or when {@linkcode STEP_LIMIT} records delivered nothing
   * ({@linkcode #stalled}).
   */
  #tryOne(): Uint8Array | null | undefined {
    const consumer = this.#consumer;
    this.#checkPlace(consumer.call);
    const r = this.#ring;
    this.#stalled = false;
    for (let steps = 0;;) {
      const idx = consumer.peek(STEP_LIMIT - steps);
      steps += consumer.stepped;
      if (idx === SKIPPING) {
        consumer.publish(true);
        this.#stalled = true;
        return undefined;
      }
      if (mapSize(this.#orphans) !== 0) this.#settleOrphans();
      if (idx === END) {
        consumer.publish(true);
        // A sender ended the stream in the middle of another's message: never completed.
        this.#partial.clear();
        this.#recount();
        this.#pendingBytes = 0;
        for (const [key, end] of this.#orphans) this.#letGo(key, end);
        this.#orphans.clear();
        this.#recount();
        return null;
      }
      if (idx < 0) {
        consumer.publish(true); // nothing to take: the room of what was taken goes back now
        return undefined;
      }
      const word = consumer.word;
      const len = consumer.len;
      const start = L.OFF_DATA + idx + 8;
      const kind = word & L.REC_KINDS;
      if (kind === 0) {
        this.#lentIdx = idx;
        this.#lentLen = len;
        return this.#lender.view(start, len);
      }
      const key = this.#tagOf(idx);
      if (kind === L.REC_ABORT) {
        this.#dropPartial(key);
        consumer.release(len);
        steps++;
        continue;
      }
      let partial = this.#partial.get(key);
      if ((kind & L.REC_CONT) === 0) {
        // A first fragment. An honest sender ends what it began with its last fragment or an
        // abort record; one that died in the middle of a message ends it here.
        if (partial !== undefined) {
          this.#dropPartial(key);
          partial = undefined;
          steps++;
        }
      } else if (partial === undefined) {
        // The rest of a message this receiver did not see begin: a receiver that died consumed
        // its first fragments, or it was dropped for a limit.
        consumer.release(len);
        steps++;
        continue;
      }
      const size = (partial?.size ?? 0) + len;
      if (size > L.MAX_MESSAGE_LEN) {
        throw this.#ring.error(
          "EBADMSG",
          `ChannelReceiver.${consumer.call}`,
          "corrupt ring: a fragmented message grows without end",
        );
      }
      const more = (kind & L.REC_MORE) !== 0;
      if (size > this.#maxMessage || (more && this.#pendingBytes + len > this.#maxPending)) {
        // Its remaining fragments find no message begun, and are dropped.
        this.#dropPartial(key);
        consumer.release(len);
        throw this.#overLimit(key, size);
      }
      const chunk = copyOf(r.copyView(start, len));
      consumer.release(len);
      // Counted, with the bytes copied (see STEP_LIMIT): a peer that never completes a message
      // must not keep this look going.
      steps += 1 + ((len / FRAGMENT_STEP_BYTES) | 0); // a record is under 2 GiB
      if (more) {
        this.#pendingBytes += len;
        if (partial) {
          partial.parts.push(chunk);
          partial.size += len;
        } else {
          this.#partial.set(key, { parts: [chunk], size: len });
          this.#recount();
        }
        continue;
      }
      this.#partial.delete(key);
      this.#recount();
      this.#pendingBytes -= partial!.size;
      partial!.parts.push(chunk);
      return concat(partial!.parts, size);
    }
  }

  /** The sender tag of the record at `idx`: its producer word, or 0 with one sender. */
  #tagOf(idx: number): number {
    if (this.#ring.mode !== L.MODE_MPSC) return 0; // one sender: the word is not read
    const key = this.#consumer.tag(idx);
    if (key < 1 || key > L.MAX_PRODUCERS) {
      throw this.#ring.error(
        "EBADMSG",
        `ChannelReceiver.${this.#consumer.call}`,
        `corrupt record: producer word ${key}`,
      );
    }
    return key;
  }

  #dropPartial(key: number): void {
    const partial = this.#partial.get(key);
    if (partial === undefined) return;
    this.#pendingBytes -= partial.size;
    this.#partial.delete(key);
    this.#recount();
  }

  #overLimit(key: number, size: number): SharedMemoryError {
    const what = size > this.#maxMessage
      ? `a message of at least ${size} bytes is longer than the receiver's limit of ${this.#maxMessage} bytes (maxMessageBytes)`
      : `the partial messages of all senders would exceed the receiver's limit of ${this.#maxPending} bytes (maxPendingBytes)`;
    return this.#ring.error(
      "EMSGSIZE",
      `ChannelReceiver.${this.#consumer.call}`,
      `${what}; the message of sender slot ${Math.max(0, key - 1)} was dropped`,
    );
  }

  /** The slot key (tag) of a reclaimed slot whose records are still ahead, and their end. */
  #orphanEnd(key: number): number | undefined {
    const end = this.#orphans.get(key);
    if (end === undefined) return undefined;
    const ahead = (end - this.#consumer.head) & L.POS_MASK;
    return ahead !== 0 && ahead <= this.#ring.capacity ? end : undefined;
  }

  /** Drops the unfinished message of every reclaimed slot whose records are all behind `head`. */
  #settleOrphans(): void {
    for (const [key, end] of [...this.#orphans]) {
      if (this.#orphanEnd(key) === undefined) {
        this.#orphans.delete(key);
        this.#recount();
        this.#dropPartial(key);
        this.#letGo(key, end);
      }
    }
  }

  /**
   * Done with the orphan of `key` ending at `end`, whose records are all behind `head`: empties
   * its entry in the region, or frees the slot it still held for want of one (nothing of it is
   * ahead: nothing to record; a failed CAS is a peer's write).
   */
  #letGo(key: number, end: number): void {
    const slot = Math.max(0, key - 1);
    const pid = this.#heldSlots.get(key);
    if (pid === undefined) this.#ring.forgetOrphan(slot, end);
    else {
      this.#heldSlots.delete(key);
      this.#ring.reclaimProducer(slot, pid);
    }
  }

  /** True if the region's entry (`slot`, `end`) is one of this receiver's (see #reap). */
  #vouches(slot: number, end: number): boolean {
    const many = this.#ring.mode === L.MODE_MPSC;
    if (!many && slot !== 0) return false;
    const key = many ? slot + 1 : 0;
    return this.#orphans.get(key) === end && !this.#heldSlots.has(key);
  }

  /**
   * The slow path of a receive; its deadline starts when the fast path found nothing. `sync`:
   * run by {@linkcode runSync}, blocking this thread while it waits. `what`: the call the user
   * made, which its errors name.
   */
  *#recvSteps(timeout: number, sync: boolean, what: string): Generator<Park, Uint8Array | null> {
    const r = this.#ring;
    const consumer = this.#consumer;
    const { peerCheckMs } = this.#options;
    const spinner = this.#spinner;
    // The wait's one clock reading gives its deadline and its first peer check. An async wait
    // spins at most briefly: its event loop waits meanwhile.
    const start = spinner.start(true, sync ? Infinity : SPIN_MS);
    const deadline = start + timeout;
    // The checks go on from one wait (or busy stretch) to the next: short waits add up.
    let nextCheck = this.#nextCheck;
    spinner.bound(deadline < nextCheck ? deadline : nextCheck);
    // Whether a sender of this thread holds the record at head is looked at once.
    let ownChecked = !sync;
    for (;;) {
      if (this.#closed) throw closedError(this.#ring, `ChannelReceiver.${what}`);
      const got = this.#tryOne();
      if (got !== undefined) {
        spinner.end(true);
        return got;
      }
      if (this.#stalled) {
        // Many records that deliver nothing (abandoned reservations, or a peer writing such
        // records as fast as they are consumed): the deadline holds, and an async receive lets
        // its event loop run (a wait of a nanosecond ends through the event loop); then the
        // next look goes on from there.
        const now = spinner.refresh();
        if (now >= deadline) {
          spinner.end(false);
          throw this.#ring.error("ETIMEDOUT", `ChannelReceiver.${what}`, "no message in time");
        }
        if (!sync) {
          atomicExchange(r.i32, L.OFF_RX_WAITING >> 2, 1);
          yield { offset: L.OFF_RX_WAITING, ns: 1 };
          if (this.#closed) throw closedError(this.#ring, `ChannelReceiver.${what}`);
          atomicExchange(r.i32, L.OFF_RX_WAITING >> 2, 0);
        }
        continue;
      }
      if (!ownChecked) {
        ownChecked = true;
        this.#ownSender(timeout, what);
      }
      if (spinner.keepSpinning()) continue;
      const now = spinner.now();
      if (now >= deadline) {
        spinner.end(false);
        throw this.#ring.error("ETIMEDOUT", `ChannelReceiver.${what}`, "no message in time");
      }
      const state = consumer.peek();
      if (state >= 0 || state === END || state === SKIPPING) continue; // arrived meanwhile
      if (now >= nextCheck) {
        nextCheck = this.#nextCheck = now + peerCheckMs;
        this.#checkSenders(state, what);
        continue;
      }
      atomicExchange(r.i32, L.OFF_RX_WAITING >> 2, 1);
      const again = consumer.peek();
      if (again === state) {
        spinner.parking();
        yield {
          offset: L.OFF_RX_WAITING,
          ns: nsUntil(Math.min(deadline, nextCheck, now + PARK_MS), now),
        };
      } else {
        // The ring changed between the two looks: look again, on a fresh clock, so that the
        // deadline and the senders' check still come if it keeps changing so (a peer writing
        // `tail` or a commit word back and forth), as a waiting sender does.
        spinner.refresh();
      }
      if (this.#closed) throw closedError(this.#ring, `ChannelReceiver.${what}`);
      atomicExchange(r.i32, L.OFF_RX_WAITING >> 2, 0);
    }
  }

  /**
   * A synchronous receive found nothing to take while a sender of this thread (through any
   * mapping of the segment) may be the one it waits for, which cannot send while the receive
   * blocks the thread. With one sender, that sender is the only one: inside its sendMany run (an
   * element's getter receives) that is `EDEADLK` at once, and outside it when the receive has no
   * deadline. With many, when the record at head is the one this thread's `reserve()` holds and
   * the receive has no deadline. A receive with a deadline waits it out (`ETIMEDOUT`), as asked.
   */
  #ownSender(timeout: number, what: string): void {
    // Cheap tests first: this runs whenever a synchronous receive starts to wait.
    if (timeout !== Infinity && runs === 0) return;
    const consumer = this.#consumer;
    const state = consumer.peek();
    if (state >= 0 || state === END || state === SKIPPING) return;
    const one = this.#ring.mode === L.MODE_SPSC;
    if (one ? this.#ring.producerPid(0) !== pid : state !== RESERVED) return;
    for (const sender of sendersHere(this.#ring)) {
      if (one && sender.inRun()) {
        throw this.#ring.error(
          "EDEADLK",
          `ChannelReceiver.${what}`,
          "a receive inside a sendMany of this channel's only sender (an element's getter) would wait for what that sendMany writes when it returns",
        );
      }
      if (timeout !== Infinity) continue;
      if (one) {
        throw this.#ring.error(
          "EDEADLK",
          `ChannelReceiver.${what}`,
          "nothing to receive, and the channel's only sender is this thread's, which cannot send while the receive waits; send (or commit) first, or use recvAsync (or a timeout)",
        );
      }
      if (state === RESERVED && sender.reserved() === consumer.reservedIdx) {
        throw this.#ring.error(
          "EDEADLK",
          `ChannelReceiver.${what}`,
          "the next record is the one this thread's reserve() holds; commit (or abandon) it before receiving, or pass a timeout",
        );
      }
    }
  }

  /**
   * A receive counted down `#countdown` receives: a receiver that never waits checks on its
   * senders all the same once a check is due, so a dead sender's slot is freed for a new one
   * while the others keep it busy. The next look comes after as many receives as take about a
   * quarter of `peerCheckMs` at the pace of those since the last look, no more than twice as
   * many as last time, and no more than {@linkcode BUSY_LOOK_EVERY}: a receiver that spends long
   * on each message still checks on time. Runs as a receive starts (or between a batch's messages), before it takes anything.
   */
  #lookBusy(): void {
    // Not for a receiver whose place is another's: the receive that follows reports it.
    if (this.#closed || this.#busy || this.#entered || this.#ring.i32[CONSUMER_PLACE] !== pid) {
      this.#countdown = BUSY_LOOK_EVERY;
      return;
    }
    const now = performance.now();
    const each = (now - this.#lastLook) / this.#lookedAfter;
    const next = each > 0 ? Math.floor(this.#options.peerCheckMs / 4 / each) : BUSY_LOOK_EVERY;
    // At most twice as many as last time: one fast stretch says little of the next.
    const most = Math.min(BUSY_LOOK_EVERY, 2 * this.#lookedAfter);
    this.#countdown = this.#lookedAfter = Math.max(1, Math.min(most, next));
    this.#lastLook = now;
    // A wait's checks keep their own schedule (the steps after reaping are theirs alone).
    if (now >= this.#nextCheck && now >= this.#nextBusyCheck) {
      this.#nextBusyCheck = now + this.#options.peerCheckMs;
      this.#reap();
    }
    // With what a batch found and could not dispatch (a callback threw) too.
    if (!this.#inBatch && this.#died.length !== 0) this.#dispatchDied();
  }

  /**
   * Dispatches the "senderdied" events found. Its listeners run as inside a synchronous wait:
   * they may not receive (`EBUSY`), and a send of this thread that finds the ring full fails
   * at once (`EDEADLK`).
   */
  #dispatchDied(): void {
    const died = this.#died;
    this.#died = [];
    const [busy, waiting] = [this.#busy, this.#waiting];
    this.#busy = this.#waiting = true;
    try {
      for (const event of died) this.dispatchEvent(event);
    } finally {
      this.#busy = busy;
      this.#waiting = waiting;
    }
  }

  /** The senders attached now, as {@linkcode #survivors} lists them. */
  #attached(): number[] {
    const r = this.#ring;
    const attached: number[] = [];
    const slots = r.mode === L.MODE_MPSC ? L.MAX_PRODUCERS : 1;
    for (let slot = 0; slot < slots; slot++) {
      const other = r.producerPid(slot);
      if (other !== 0) attached.push(r.mode === L.MODE_MPSC ? slot + 1 : 0, other);
    }
    return attached;
  }

  /**
   * Reclaims dead senders' slots (their records still ahead become orphans), queues their
   * events, and returns how many senders are alive.
   *
   * A receive fails with `ECONNRESET` once the ring is empty and no sender is attached, if one
   * died and no sender has attached since, as far as the checks can tell: the senders alive when
   * a death is found are remembered, and a sender seen alive later that is not among them
   * (another pid, or another slot) attached after it. The senders that outlived a dead one and
   * then left cleanly (a pool whose workers detach when done) no longer hide its death, whenever
   * the checks ran, as they did when any sender seen alive cleared it. What the checks cannot
   * see: a sender that attached after the death but before the check that found it counts as one
   * that outlived it (a pool that respawns a crashed worker at once), and one that attached and
   * left between two checks is never seen.
   */
  #reap(): number {
    const r = this.#ring;
    const slots = r.mode === L.MODE_MPSC ? L.MAX_PRODUCERS : 1;
    let live = 0;
    let died = false;
    const alive = this.#alive;
    alive.length = 0;
    for (let slot = 0; slot < slots; slot++) {
      const other = r.producerPid(slot);
      if (other === 0) continue;
      const key = r.mode === L.MODE_MPSC ? slot + 1 : 0;
      // Found dead before and holding its slot for want of an entry: it tries again. Not probed
      // again: its number may belong to a new process by now, which no sender slot holds (a
      // sender takes only a free one).
      const held = this.#heldSlots.get(key) === other;
      if (!held && r.parking.alive(other)) {
        live++;
        alive.push(key, other);
        continue;
      }
      // Where its records end: a held one's as found, else the tail, loaded after the probe
      // found the sender dead (its records all lie before this position) and before the reclaim
      // (a sender taking the slot reserves after it). Loaded before the probe, it missed a record
      // reserved between the two by a sender killed right after.
      const end = held ? this.#orphans.get(key)! : atomicLoad(r.i32, L.OFF_TAIL >> 2) & L.POS_MASK;
      // The death in the header before the entry, for a receiver that takes over from this one:
      // never an entry without it (see `bereaved` in layout.rs).
      if (!held) atomicStore(r.i32, BEREAVED, 1);
      // In the region first, for a receiver that takes over from this one (see `orphans` in
      // layout.rs). Entries this receiver did not write are a peer's: with every entry taken,
      // those go.
      let undo = r.recordOrphan(slot, end);
      if (undo === undefined) {
        r.forgetStrangers((slot, end) => this.#vouches(slot, end));
        undo = r.recordOrphan(slot, end);
      }
      // With no entry, every entry is a dead sender's whose records are ahead: the slot stays
      // held, by a dead pid that a receiver taking over finds as this one did, until this one
      // passes its records (#letGo) or an entry frees up. Freed unrecorded, its mark looked
      // stale to a receiver taking over, which stepped onto its payload.
      const freed = undo !== undefined && r.reclaimProducer(slot, other);
      if (undo !== undefined && !freed) undo(); // a peer changed the slot's word
      if (held) {
        if (freed) this.#heldSlots.delete(key);
      } else if (freed || undo === undefined) {
        // A hold of another pid (a peer rewrote the slot's word) is gone.
        if (freed) this.#heldSlots.delete(key);
        else this.#heldSlots.set(key, other);
        this.#orphans.set(key, end);
        this.#recount();
        this.#died.push(new SenderDiedEvent(other, slot));
        died = true;
      }
    }
    if (died) {
      this.#bereaved = true;
      // The header says so already: stored before each death's entry, above.
      [this.#survivors, this.#alive] = [alive, this.#survivors];
    } else if (this.#bereaved && this.#joined(alive)) {
      this.#bereaved = false;
      atomicStore(r.i32, BEREAVED, 0);
    }
    return live;
  }

  /** Whether one of the senders `alive` lists is not among {@linkcode #survivors}. */
  #joined(alive: number[]): boolean {
    const survivors = this.#survivors;
    outer: for (let i = 0; i < alive.length; i += 2) {
      for (let j = 0; j < survivors.length; j += 2) {
        if (survivors[j] === alive[i] && survivors[j + 1] === alive[i + 1]) continue outer;
      }
      return true;
    }
    return false;
  }

  /**
   * The liveness check of a waiting receiver: reclaims dead senders' slots, steps over a
   * record at `head` that a dead sender reserved, and fails when no sender is left and one
   * died.
   */
  #checkSenders(state: number, what: string): void {
    const r = this.#ring;
    const consumer = this.#consumer;
    this.#checkPlace(what); // before the reaping's writes
    const live = this.#reap();
    if (this.#died.length !== 0) this.#dispatchDied();
    // A listener may have closed the receiver (or the channel): nothing more to do here.
    if (this.#closed) return;
    // Nor write the ring once the place is another receiver's (the listeners took their time).
    this.#checkPlace(what);
    if (state === RESERVED) {
      const many = r.mode === L.MODE_MPSC;
      const slot = consumer.reservedSlot;
      const span = consumer.reservedSpan;
      const mark = L.markWord(slot, span);
      // Loaded after the mark: it covers every record marked by then.
      const tail = atomicLoad(r.i32, L.OFF_TAIL >> 2) & L.POS_MASK;
      const pastTail = span > ((tail - consumer.head) & L.POS_MASK);
      const checks = this.#stuckAt === consumer.head ? this.#stuckChecks + 1 : 1;
      this.#stuckAt = -1;
      if (this.#orphanEnd(many ? slot + 1 : 0) !== undefined && !pastTail) {
        // The dead sender's own reservation, whole if its producer word says so.
        consumer.dropMark(mark, span, many ? slot + 1 : 0);
      } else if (many && (pastTail || r.producerPid(slot) === 0)) {
        // A mark that no live sender can have made here: it runs past the tail (a sender marks
        // only inside what it reserved), or its slot is free with no records of a dead sender
        // of it ahead. It is stale, left by a sender killed in its claim after losing its place
        // (see `Producer`'s #claim), on a reservation whose own sender takes it over, unless it
        // died (or stalls): found so at two checks in a row, its word is taken alone, the rest
        // swept.
        if (checks >= 2) consumer.dropMark(mark, 8);
        else [this.#stuckAt, this.#stuckChecks] = [consumer.head, checks];
      }
    } else if (state === IN_FLIGHT && r.mode !== L.MODE_MPSC) {
      // The only sender's last reservation, never marked: it ends where its records end.
      const end = this.#orphanEnd(0);
      if (end !== undefined && (end & 7) !== 0) {
        // A record boundary, unless a peer wrote `tail`.
        throw r.error(
          "EBADMSG",
          `ChannelReceiver.${consumer.call}`,
          `corrupt channel tail 0x${end.toString(16)}: not on a record boundary`,
        );
      }
      // Not if it has been marked since the look that found it: the next look takes what the
      // sender committed before it died.
      if (end !== undefined) consumer.skipTo(end);
    } else if (state === IN_FLIGHT) {
      // Unmarked for a whole interval while a dead sender's records are still ahead: it may be
      // that sender's, killed between reserving and marking, whose length is unknown. A sweep
      // takes back the zero words up to the next record, no further than the dead sender's
      // records go. With nobody dead, only after LIVE_SWEEP_CHECKS checks: a live sender whose
      // claim failed (a peer wrote its word) reserved again and never marks this one.
      const checks = this.#stuckAt === consumer.head ? this.#stuckChecks + 1 : 1;
      this.#stuckAt = consumer.head;
      this.#stuckChecks = checks;
      let until = -1;
      let furthest = 0;
      for (const key of this.#orphans.keys()) {
        const end = this.#orphanEnd(key);
        if (end === undefined) continue;
        const ahead = (end - consumer.head) & L.POS_MASK;
        if (ahead > furthest) [until, furthest] = [end, ahead];
      }
      if (until < 0 || checks < 2) {
        if (checks < LIVE_SWEEP_CHECKS) return;
        until = (consumer.head + r.capacity) & L.POS_MASK; // as far as the ring goes
      }
      // A sweep cut short (by its bound, or by the end of the data area) goes on at the next
      // check.
      const taken = consumer.sweep(until);
      const wrapped = taken > 0 && (consumer.head & r.mask) === 0;
      this.#stuckAt = taken === SWEEP_MAX || wrapped ? consumer.head : -1;
    } else if (state === EMPTY && this.#bereaved && live === 0) {
      throw this.#ring.error(
        "ECONNRESET",
        `ChannelReceiver.${what}`,
        "no sender is attached, and one died without closing the channel, with none attached since (those that left closed or detached); a sender that attaches later is received",
      );
    } else this.#stuckAt = -1;
  }
}

function concat(parts: Uint8Array[], total: number): Uint8Array {
  const out = new Uint8Array(total);
  let at = 0;
  for (const part of parts) {
    out.set(part, at);
    at += part.length;
  }
  return out;
}
