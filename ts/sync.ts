/**
 * Cross-process wait/notify and a robust lock, shaped like `Atomics.wait` / `Atomics.notify`.
 *
 * JavaScript's own `Atomics.wait` refuses buffers over foreign memory and only wakes threads of
 * one process. These functions park in the kernel instead (Linux: a `futex` without
 * `FUTEX_PRIVATE_FLAG`; macOS: `os_sync_wait_on_address` with the shared flag), so a waiter in one
 * process is woken by a `notify` in any other, in either runtime.
 *
 * @module
 */

import { type Address, backend } from "./backend.ts";
import { errorOf, tooManyAsyncWaits } from "./errors.ts";
import { LOCK_OWNER_DIED, WAIT_NOT_EQUAL, WAIT_OK, WAIT_TIMED_OUT } from "./ffi.ts";
import {
  addressOf,
  isDetached,
  type Mapping,
  mappingOf,
  placeOf,
  throwCode,
} from "./shared_memory.ts";
import {
  bufferByteLength,
  isView,
  viewBuffer,
  viewByteLength,
  viewByteOffset,
} from "./intrinsics.ts";
import { SPIN_EXPECTED, Spinner } from "./spin.ts";
import * as check from "./validate.ts";

/**
 * The `Atomics` functions this module calls, taken at load: a script that replaces one later would
 * run in the middle of a send or a receive (between moving `tail` and a commit, say).
 */
const { load: atomicLoad } = Atomics;

/** How a wait ended, as `Atomics.wait` reports it. */
export type WaitResult = "ok" | "not-equal" | "timed-out";

/** Options for {@linkcode wait}. */
export interface WaitOptions {
  /**
   * How long to check the word before parking in the kernel. Spinning trades CPU for latency
   * when the other process answers within microseconds from another core; on one core it only
   * delays the other process.
   *
   * - `0` (default): park at once, as `Atomics.wait` does.
   * - A number: check the word this many times (about 50 ns each) first.
   * - `"adaptive"`: spin while spinning has been catching changes of this word in this thread,
   *   for a time learned from its last slow wake-up (20-250 µs), and park at once while it has
   *   not, trying again now and then, as a channel's endpoints do (`docs/channel.md`, _Spin
   *   before parking_).
   */
  spin?: number | "adaptive";
}

/** The results by code: an array, so that the lookup is one element load. */
const RESULTS: WaitResult[] = [];
RESULTS[WAIT_OK] = "ok";
RESULTS[WAIT_NOT_EQUAL] = "not-equal";
RESULTS[WAIT_TIMED_OUT] = "timed-out";

/** What the calls on one view keep: its buffer's mapping, and each word's address by index. */
interface ViewWords {
  mapping: Mapping;
  /** The address of the view's first element. */
  base: bigint;
  at: Map<number, Address>;
  /**
   * The view's words as the engine places them, for an adaptive wait's spin (made on its first):
   * an array that only claims to be an Int32Array reads other bytes through its own elements.
   */
  words?: Int32Array;
}

/**
 * The views waited on or notified, each with the addresses of its words in the form the
 * runtime's calls take (see `Backend.address`). Between two processes a call comes
 * right after a context switch, with nothing in the caches: making the address on every call (a
 * BigInt sum, in Node a conversion) and reading `view.buffer` (a call into the engine) cost a
 * Deno round trip on one core about a tenth of its time.
 */
const views = new WeakMap<Int32Array, ViewWords>();
/** Word addresses one view keeps, at most; further words make theirs on every call. */
const MAX_WORDS = 64;

/** The Int32Array element's address, after every check. */
function locate(view: unknown, index: unknown, caller: string): Address {
  // `isView` first: it asks nothing of a Proxy, where `instanceof` asks for its prototype, which
  // a revoked one answers with an error that names nothing of this call.
  if (!isView(view) || !(view instanceof Int32Array)) {
    throw new TypeError(
      `${caller}: view must be an Int32Array over shared memory, got ${
        view === null ? "null" : check.lookalike(view) ?? check.kindOf(view)
      }${check.otherRealm(view, "Int32Array")}`,
    );
  }
  // The engine's own count of the view's bytes (see intrinsics.ts): a `length` or `byteOffset`
  // redefined by a subclass or on the array would point the native call, which reads the word
  // in user space while it spins, outside the mapping. Bytes, not elements: an array of another
  // type given Int32Array's prototype passes `instanceof`. 0 once the buffer is detached (its
  // segment closed): this library's buffers never resize.
  let length: number;
  try {
    length = viewByteLength(view) >> 2;
  } catch (error) {
    // A Proxy of one, or a DataView given its prototype, passes `instanceof`; the engine's
    // accessor refuses it with a message that names nothing of this call.
    throw check.lookalikeError(
      error,
      view,
      `${caller}: view must be an Int32Array over shared memory`,
    );
  }
  if (typeof index !== "number" || !(index >= 0 && index < length) || !Number.isInteger(index)) {
    // The buffer first (a closed segment's views are empty: EBADF, not a bad index).
    addressOf(viewBuffer(view), caller);
    check.integer(index, "index", 0, Math.max(length - 1, 0));
    throw new RangeError(`${caller}: view is empty`);
  }
  let words = views.get(view);
  if (words === undefined || words.mapping.released) {
    const mapping = mappingOf(viewBuffer(view), caller); // throws for a closed or foreign buffer
    const base = mapping.address + BigInt(viewByteOffset(view));
    if ((base & 3n) !== 0n) {
      // This library's buffers start at a multiple of 8 (see `SharedMemory.view`), but an array
      // of bytes given Int32Array's prototype passes `instanceof` at any offset: the kernel waits
      // on aligned words only, and the native call says only "invalid argument" (EINVAL).
      throw new RangeError(
        `${caller}: view starts at a byte that is not a multiple of 4 (a typed array of another type given Int32Array's prototype?)`,
      );
    }
    words = { mapping, base, at: new Map() };
    views.set(view, words);
  }
  let address = words.at.get(index);
  if (address === undefined) {
    address = backend().address(words.base + BigInt(index * 4));
    if (words.at.size < MAX_WORDS) words.at.set(index, address);
  }
  return address;
}

const FOREVER = -1;
/** What Mutex's private constructor takes first, so that no caller outside this module can run it. */
const CONSTRUCT: unique symbol = Symbol("Mutex");
/** This platform's `EBUSY`, read from the native library on first use. */
let EBUSY = 0;
/** This platform's `ETIMEDOUT`, read from the native library on first use. */
let ETIMEDOUT = 0;

/**
 * The longest a blocking native call of a Worker parks at once (ns). A thread parked in the kernel
 * cannot be stopped: terminating a Worker that waited without a timeout (and, in Node.js,
 * `process.exit`, which waits for its Workers) hung for as long as the wait lasted. Longer waits
 * in a Worker park in slices, and the engine ends a terminated Worker between two of them; an
 * idle wait wakes 10 times a second for it.
 */
const SLICE_NS = 100_000_000;

/**
 * Runs a blocking native call for `ns` (-1: forever; more than {@linkcode SLICE_NS}: shorter
 * waits make the call once themselves, with no closure) in slices of at most `SLICE_NS`:
 * `call(sliceNs, first)` again while it returns `timedOut` and time is left.
 */
function sliced(ns: number, timedOut: number, call: (sliceNs: number, first: boolean) => number) {
  const deadline = ns < 0 ? Infinity : performance.now() + ns / 1e6;
  for (let first = true;; first = false) {
    const left = Math.ceil((deadline - performance.now()) * 1e6); // Infinity without a timeout
    if (left <= 0) return timedOut;
    const code = call(left < SLICE_NS ? left : SLICE_NS, first);
    if (code !== timedOut || left <= SLICE_NS) return code;
  }
}

/**
 * `backend().wait` for `ns` (-1: forever); in a Worker, in slices. After the first slice, a word
 * found changed counts as a wake-up (`WAIT_OK`): it held `value` when the wait began. A `notify`
 * that changes nothing and comes in the instant between two slices finds no thread parked and is
 * missed: so the main thread, which nothing terminates, parks in one call (as `Mutex.lock` does
 * there), and a notify there is never missed once the wait has begun.
 */
function park(address: Address, value: number, ns: number, spins: number): number {
  const b = backend();
  if ((ns >= 0 && ns <= SLICE_NS) || b.mainThread) return b.wait(address, value, ns, spins);
  return sliced(ns, WAIT_TIMED_OUT, (slice, first) => {
    const code = b.wait(address, value, slice, first ? spins : 0);
    return code === WAIT_NOT_EQUAL && !first ? WAIT_OK : code;
  });
}

/** Converts a timeout in milliseconds to nanoseconds; -1 for none. */
function timeoutNs(timeoutMs: unknown, what = "timeoutMs"): number {
  const ms = check.timeoutMs(timeoutMs, what);
  const ns = Math.ceil(ms * 1e6);
  return ns > Number.MAX_SAFE_INTEGER ? FOREVER : ns;
}

/** The value as the kernel compares it: the 32 bits of an Int32Array element. */
function word(expected: unknown): number {
  // An Int32Array element, the common case, passes without the full check.
  if (typeof expected === "number" && (expected | 0) === expected) return expected >>> 0;
  return check.integer(expected, "expected", -(2 ** 31), 2 ** 32 - 1) >>> 0;
}

function result(code: number, caller: string): WaitResult {
  if (code < 0) throwCode(code, caller);
  return RESULTS[code];
}

/**
 * Blocks the calling thread while `view[index]` holds `expected`, until another process (or
 * thread) calls {@linkcode notify} on the same element, or `timeoutMs` passes.
 *
 * In a Worker, a wait longer than 100 ms parks in slices of 100 ms, so that the Worker can be
 * terminated (Node.js and Bun end it between two; Deno 2.9.6 does not end a Worker, web or
 * `node:worker_threads`, that never returns to its event loop, waiting here or not: give waits
 * there a timeout); a change of the word is seen across slices, but a `notify` that changes
 * nothing and comes in the instant between two is missed. Store, then notify (as the example
 * does).
 *
 * @param view An Int32Array over a segment of this library.
 * @param index The element to wait on.
 * @param expected The value to wait for a change from (compared as 32 bits).
 * @param timeoutMs How long to wait at most; default forever. It may end slightly later, never
 *   earlier.
 * @returns `"ok"` when woken (spurious wake-ups are possible: re-check your condition, as with
 *   `Atomics.wait`), `"not-equal"` if the value already differed, `"timed-out"`.
 * @param options How long to spin before parking (see {@linkcode WaitOptions}).
 * @throws {TypeError} If `view` is not an Int32Array over this library's memory, or `options`
 *   is not an object.
 * @throws {RangeError} For a bad index, expected value or timeout, or a view (of bytes, given
 *   Int32Array's prototype) whose first element is not at a multiple of 4 bytes.
 * @throws {SharedMemoryError} `EBADF` if the segment was closed.
 *
 * @example
 * ```ts
 * const flags = new Int32Array(shm.buffer);
 * while (Atomics.load(flags, 0) === 0) wait(flags, 0, 0);
 * ```
 */
export function wait(
  view: Int32Array,
  index: number,
  expected: number,
  timeoutMs?: number,
  options?: WaitOptions,
): WaitResult {
  const address = locate(view, index, "wait");
  const value = word(expected);
  const ns = timeoutNs(timeoutMs);
  const spin = options === undefined
    ? undefined
    : check.options<WaitOptions>(options, "options", ["spin"]).spin;
  if (spin === "adaptive") {
    const found = views.get(view)!; // made by `locate`
    const words = found.words ??= honestWords(view);
    // Misaligned (not really an Int32Array; `locate` refuses those first): the native call says.
    if (words === undefined) return result(park(address, value, ns, 0), "wait");
    return waitAdaptive(words, index, spinnerAt(address), address, value, ns);
  }
  const spins = spin === undefined
    ? 0
    : check.integer(spin, "options.spin", 0, 2 ** 32 - 1, SPIN_EXPECTED);
  return result(park(address, value, ns, spins), "wait");
}

/**
 * What adaptive waits on each word learned, by address: module state, so per thread, as each
 * thread's waits are its own; every view of the word shares it. The oldest word is forgotten
 * beyond {@linkcode MAX_SPINNERS}.
 */
const spinners = new Map<Address, Spinner>();
const MAX_SPINNERS = 1024;

function spinnerAt(address: Address): Spinner {
  let spinner = spinners.get(address);
  if (spinner === undefined) {
    if (spinners.size >= MAX_SPINNERS) spinners.delete(spinners.keys().next().value!);
    spinner = new Spinner("adaptive");
    spinners.set(address, spinner);
  }
  return spinner;
}

/** The words of `view` from the engine's own buffer, offset and length; undefined if misaligned. */
function honestWords(view: Int32Array): Int32Array | undefined {
  const offset = viewByteOffset(view);
  if ((offset & 3) !== 0) return undefined;
  return new Int32Array(viewBuffer(view) as ArrayBuffer, offset, viewByteLength(view) >> 2);
}

/**
 * {@linkcode wait} with an adaptive spin: the word is checked here, with `Atomics.load`, for the
 * spin's budget (ending early at the deadline), then the native call parks for the time left.
 * Results as `sb_wait_spin`'s: `"not-equal"` only if the word differed at the first look.
 */
function waitAdaptive(
  words: Int32Array,
  index: number,
  spinner: Spinner,
  address: Address,
  value: number,
  ns: number,
): WaitResult {
  if (atomicLoad(words, index) >>> 0 !== value) return "not-equal";
  if (ns === 0) return "timed-out";
  // Without a timeout, a wait that parks at once reads no clock.
  const start = spinner.start(ns > 0);
  const deadline = ns < 0 ? Infinity : start + ns / 1e6;
  while (spinner.keepSpinning()) {
    if (atomicLoad(words, index) >>> 0 !== value) {
      spinner.end(true);
      return "ok";
    }
    // The latest reading, taken every few rounds by the spin: a deadline passes a little late,
    // never early.
    if (spinner.now() >= deadline) break;
  }
  const now = spinner.now();
  if (now >= deadline) {
    spinner.end(false);
    return "timed-out";
  }
  spinner.parking();
  const left = ns < 0 ? FOREVER : Math.max(1, Math.ceil((deadline - now) * 1e6));
  const code = park(address, value, left, 0);
  spinner.end(code === WAIT_OK || code === WAIT_NOT_EQUAL);
  // It held `value` at the first look, so a difference now means it changed.
  return code === WAIT_NOT_EQUAL ? "ok" : result(code, "wait");
}

/**
 * Like {@linkcode wait}, but returns a Promise and never blocks the event loop: timers, I/O and
 * other promises keep running while it waits.
 *
 * The native library parks the wait in the kernel on a thread of its own (on Linux one thread
 * watches up to 127 waits) and wakes the JavaScript thread through a Node-API thread-safe
 * function, in every runtime: thousands of waits may pend at once, an idle wait costs no CPU,
 * and file I/O and timers keep running. Closing the segment ends its pending waits: they reject
 * with a `SharedMemoryError` whose code is `EBADF`, as they do when the mapping goes away
 * otherwise (its last buffer or view detached or collected); a Worker that ends ends its own.
 * Unlike `Atomics.waitAsync`, a pending wait does not keep its buffer alive: keep a reference
 * to the buffer (or the `SharedMemory`) for as long as you wait on it.
 *
 * A notify that lands while a wait is being re-armed (when another wait begins or ends) is seen
 * only if the word changed: change the word, then notify, as the example does.
 *
 * @example
 * ```ts
 * const flags = new Int32Array(shm.buffer);
 * if (await waitAsync(flags, 0, 0, 1000) === "timed-out") console.log("nobody answered");
 * ```
 */
export function waitAsync(
  view: Int32Array,
  index: number,
  expected: number,
  timeoutMs?: number,
): Promise<WaitResult> {
  let address: Address, value: number, ns: number;
  try {
    address = locate(view, index, "waitAsync");
    value = word(expected);
    ns = timeoutNs(timeoutMs);
  } catch (err) {
    return rejected(err);
  }
  // Not an async function itself: one keeps its arguments while it waits, and `view` kept its
  // buffer from the collector, whose collection is one way the wait ends (with EBADF).
  return waitAsyncAt(address, value, ns, index);
}

/** An async function's rejection: the checks of {@linkcode waitAsync} reject, never throw. */
// deno-lint-ignore require-await
async function rejected(err: unknown): Promise<never> {
  throw err;
}

/** {@linkcode waitAsync} on the word at `address`, holding nothing of the caller's. */
async function waitAsyncAt(
  address: Address,
  value: number,
  ns: number,
  index: number,
): Promise<WaitResult> {
  const b = backend();
  const code = await b.waitAsync(address, value, ns);
  if (code < 0 && b.errorName(code) === "EAGAIN") {
    throw tooManyAsyncWaits(`waitAsync on element ${index}`);
  }
  if (code < 0 && b.errorName(code) === "EBADF") {
    throw errorOf(
      "EBADF",
      `waitAsync on element ${index}: the mapping went while the wait was pending: its segment was closed, or its last buffer detached or collected (a pending wait does not keep its buffer alive: keep a reference to the array or its SharedMemory until the wait settles)`,
    );
  }
  return result(code, "waitAsync");
}

/**
 * Wakes up to `count` waiters on `view[index]`, in any process.
 *
 * @param count How many to wake; default all.
 * @returns How many were woken: waits parked in the kernel on this word, in any process. A
 *   {@linkcode waitAsync} just started may not have parked yet: it is not counted, and it sees
 *   the notify only if the word changed first (change the word, then notify).
 *
 * @example
 * ```ts
 * Atomics.store(flags, 0, 1);
 * notify(flags, 0);
 * ```
 */
export function notify(view: Int32Array, index: number, count?: number): number {
  const address = locate(view, index, "notify");
  const n = count === undefined || count === Infinity
    ? 0xffff_ffff
    : check.integer(count, "count", 0, 0xffff_ffff);
  const woken = backend().notify(address, n);
  if (woken < 0) throwCode(woken, "notify");
  return woken;
}

/** Unlocks `mutex` if its hold numbered `hold` is still the one taken last (see {@linkcode Mutex}). */
let releaseHold: (mutex: Mutex, hold: number) => void;

/**
 * What every `Mutex` object of this thread over one lock shares: the number of the hold taken
 * last, 0 when none is held. A guard releases only the hold it was made for, whichever object
 * over the same bytes took or ended it (objects kept counts of their own, and a guard of one
 * released a hold taken through another). Module state is per thread (a Worker loads its own),
 * as the locks' holds are.
 */
interface Holds {
  current: number;
}

/**
 * The {@linkcode Holds} of each lock some live `Mutex` object of this thread is over, by the
 * lock's place in its segment ({@linkcode placeOf}): two mappings of one segment show one lock
 * at two addresses, and a guard taken through one must see a hold ended through the other.
 */
const holdsByPlace = new Map<string, WeakRef<Holds>>();
/** Drops the entry of a lock whose `Mutex` objects were all collected. */
const holdsDropped = new FinalizationRegistry<string>((at) => {
  if (holdsByPlace.get(at)?.deref() === undefined) holdsByPlace.delete(at);
});
/** The number of the last hold taken on this thread. */
let lastHold = 0;

function holdsAt(at: string): Holds {
  const found = holdsByPlace.get(at)?.deref();
  if (found !== undefined) return found;
  const holds = { current: 0 };
  holdsByPlace.set(at, new WeakRef(holds));
  holdsDropped.register(holds, at);
  return holds;
}

/**
 * Proof of holding a {@linkcode Mutex}: unlock it with {@linkcode MutexGuard.unlock} or let
 * `using` do it.
 *
 * @example
 * ```ts
 * const guard = mutex.tryLock();
 * if (guard) {
 *   try {
 *     if (guard.ownerDied) repair();
 *   } finally {
 *     guard.unlock();
 *   }
 * }
 * ```
 */
export class MutexGuard implements Disposable {
  /**
   * True if the previous holder died while holding the lock: the data it protects may be half
   * updated, so repair it before relying on it. The lock itself is healthy again.
   */
  readonly ownerDied: boolean;
  #mutex: Mutex | undefined;
  readonly #hold: number;

  /**
   * @internal Made by {@linkcode Mutex.lock} and {@linkcode Mutex.tryLock}, with a token no
   * caller has: a guard made from outside with a real `Mutex` and a guessed hold (a small
   * number) released a lock that other code of the thread held.
   */
  constructor(token: typeof CONSTRUCT, mutex: Mutex, ownerDied: boolean, hold: number) {
    if (token !== CONSTRUCT || !(mutex instanceof Mutex)) {
      throw new TypeError("MutexGuard has no public constructor: use a Mutex's lock or tryLock");
    }
    this.#mutex = mutex;
    this.ownerDied = ownerDied;
    this.#hold = hold;
  }

  /**
   * Unlocks the mutex, if the hold this guard was made for is still on: a second call does
   * nothing, nor does a call after the mutex was unlocked directly ({@linkcode Mutex.unlock}),
   * which would otherwise release a later lock's hold.
   */
  unlock(): void {
    const mutex = this.#mutex;
    this.#mutex = undefined;
    if (mutex !== undefined) releaseHold(mutex, this.#hold);
  }

  /** Same as {@linkcode unlock}, for `using`. */
  [Symbol.dispose](): void {
    this.unlock();
  }
}

/**
 * Throws the error of a failed `lock`, `tryLock`, `init` or `open` done as `action`: an `EAGAIN`
 * says what it means for this lock (the library's message was a bare "try again").
 */
function lockFailed(code: number, action: string): never {
  const b = backend();
  switch (b.errorName(code)) {
    case "EAGAIN":
      throw errorOf(
        "EAGAIN",
        `${action}: another process is setting this lock up (Mutex.init), or died while it did, or a peer wrote its state word, which leaves it unusable: if this persists, zero its ${b.mutexSize} bytes and call Mutex.init again`,
      );
    // The address was checked when the Mutex was made, and a closed segment is EBADF before:
    // these two are about the lock's bytes, changed since (the native call says only "invalid
    // argument" and "state not recoverable").
    case "EINVAL":
      throw errorOf(
        "EINVAL",
        `${action}: the lock's state word is zero: it was zeroed after this Mutex attached (by another process, or through a view of this one); nothing was changed: once no process uses the old lock, call Mutex.init there again`,
      );
    case "ENOTRECOVERABLE":
      throw errorOf(
        "ENOTRECOVERABLE",
        `${action}: the lock's header no longer says "ready" in this library's layout: its bytes were overwritten (by another process, or through a view of this one); nothing was changed: once no process uses the old lock, zero its ${b.mutexSize} bytes and call Mutex.init again`,
      );
  }
  throwCode(code, action);
}

/**
 * A lock shared between processes that survives its holder's death, living in
 * {@linkcode Mutex.BYTE_LENGTH} bytes at an 8-byte-aligned offset of a segment.
 *
 * When the thread holding it ends (its process killed, even by SIGKILL, or its Worker
 * terminated), the next `lock()` in any thread or process succeeds and its guard reports
 * `ownerDied`, so the caller can repair the data. A waiter notices a dead holder within about
 * 10 ms. The lock's bytes hold the owner's identity (thread id and start time) and never an
 * address, so another process writing into them can spoil the lock but not harm this one: you
 * get a clear error, a timeout or `ownerDied`. An uncontended lock or unlock is one atomic
 * instruction and no system call. The lock belongs to the thread that took it: unlock it on the
 * same thread. While a thread holds it, closing its segment throws `EBUSY`.
 *
 * @example
 * ```ts
 * using shm = SharedMemory.openOrCreate({ name: "/jobs" }, 4096);
 * const mutex = Mutex.init(shm.buffer, 0); // once per segment; later calls just attach
 * const counter = new Float64Array(shm.buffer, Mutex.BYTE_LENGTH, 1);
 * {
 *   using guard = mutex.lock();
 *   if (guard.ownerDied) counter[0] = recount();
 *   counter[0] += 1;
 * }
 * ```
 */
export class Mutex {
  /** Bytes a Mutex occupies. */
  static readonly BYTE_LENGTH = 64;
  /** Required alignment of its offset, in bytes. */
  static readonly ALIGNMENT = 8;

  #buffer: ArrayBuffer;
  #address: Address;
  /** Where the lock is in its buffer, which errors name. */
  readonly #byteOffset: number;
  /** Shared with every other object of this thread over the same lock. */
  readonly #holds: Holds;

  static {
    releaseHold = (mutex, hold) => {
      if (mutex.#holds.current === hold) mutex.unlock();
    };
  }

  private constructor(
    token: typeof CONSTRUCT,
    buffer: ArrayBuffer,
    address: bigint,
    byteOffset: number,
  ) {
    // `private` is TypeScript's word only: a lock at an address of the caller's choosing made
    // lock() write wherever it pointed (SIGSEGV, or a write into this process's own memory).
    if (token !== CONSTRUCT) {
      throw new TypeError("Mutex has no public constructor: use Mutex.init or Mutex.open");
    }
    this.#buffer = buffer;
    this.#address = backend().address(address);
    this.#byteOffset = byteOffset;
    this.#holds = holdsAt(placeOf(buffer, byteOffset, address));
  }

  /**
   * Sets up a mutex in zero-filled memory, or attaches to the one already there; safe when
   * several processes race to do it.
   *
   * @param buffer A buffer of this library (`shm.buffer`, a `view()`, or `createSharedBuffer`).
   * @param byteOffset Where in it; a multiple of {@linkcode Mutex.ALIGNMENT}. Default 0.
   */
  static init(buffer: ArrayBuffer, byteOffset = 0): Mutex {
    const address = Mutex.#locate(buffer, byteOffset, "Mutex.init");
    const b = backend();
    const code = b.mutexInit(b.address(address));
    if (code < 0) Mutex.#refused(code, buffer, byteOffset as number, "Mutex.init");
    return new Mutex(CONSTRUCT, buffer, address, byteOffset as number);
  }

  /**
   * Attaches to a mutex another process set up with {@linkcode Mutex.init}.
   *
   * @throws {SharedMemoryError} `EINVAL` if no mutex was set up there; `EXDEV` if a process in
   *   another pid namespace set it up.
   */
  static open(buffer: ArrayBuffer, byteOffset = 0): Mutex {
    const address = Mutex.#locate(buffer, byteOffset, "Mutex.open");
    const b = backend();
    const code = b.mutexOpen(b.address(address));
    if (code < 0) Mutex.#refused(code, buffer, byteOffset as number, "Mutex.open");
    return new Mutex(CONSTRUCT, buffer, address, byteOffset as number);
  }

  /** Throws the error of a failed `init` or `open`, saying what the bytes there are. */
  static #refused(code: number, buffer: ArrayBuffer, byteOffset: number, caller: string): never {
    const b = backend();
    const action = `${caller} at byte ${byteOffset}`;
    switch (b.errorName(code)) {
      case "EINVAL":
        // The address was checked (#locate): the bytes are what the library refused.
        throw errorOf(
          "EINVAL",
          caller === "Mutex.open"
            ? `${action}: no mutex was set up there (call Mutex.init), or its bytes were overwritten`
            : `${action}: the bytes there are neither zero nor a lock of this library's layout (overwritten, or another version's): zero them to set up a new lock there`,
        );
      case "EXDEV": {
        // The namespace word of the lock (bytes 16..20); read after the refusal, for the message.
        const theirs = new Uint32Array(buffer, byteOffset + 16, 1)[0];
        throw errorOf(
          "EXDEV",
          `${action}: the lock was set up in another pid namespace (pid:[${theirs}]; this process is in pid:[${b.pidNamespace}]): its holders are named by thread ids, which hold only within one pid namespace; share a lock only between processes of one (a container sharing another's /dev/shm must share its pid namespace too)`,
        );
      }
      default:
        lockFailed(code, action);
    }
  }

  static #locate(buffer: unknown, byteOffset: unknown, caller: string): bigint {
    check.arrayBuffer(buffer, caller, "an ArrayBuffer of this library");
    const base = addressOf(buffer, caller);
    const length = bufferByteLength(buffer); // the engine's, not a property defined on it
    if (length < Mutex.BYTE_LENGTH) {
      throw new RangeError(
        `${caller}: a mutex takes ${Mutex.BYTE_LENGTH} bytes, the buffer has ${length}`,
      );
    }
    const offset = check.integer(byteOffset, "byteOffset", 0, length - Mutex.BYTE_LENGTH);
    if (offset % Mutex.ALIGNMENT !== 0) {
      throw new RangeError(`byteOffset must be a multiple of ${Mutex.ALIGNMENT}, got ${offset}`);
    }
    // Aligned: this library's buffers start at a multiple of 8 (see `SharedMemory.view`).
    return base + BigInt(offset);
  }

  /**
   * Waits for the lock. Blocks the calling thread.
   *
   * @param timeoutMs How long to wait at most; default forever.
   * @throws {SharedMemoryError} `ETIMEDOUT` when the time runs out; `EDEADLK` if this thread
   *   already holds it; `EBADF` if the segment was closed; `ENOTRECOVERABLE` if the lock's
   *   header was overwritten, `EINVAL` if its state word was zeroed (set it up again); `EAGAIN` if another process is still setting
   *   the lock up after 100 ms, or after `timeoutMs` if that is shorter; `ENOLCK` if this thread
   *   holds 64 locks.
   */
  lock(timeoutMs?: number): MutexGuard {
    const ns = timeoutNs(timeoutMs);
    const b = backend();
    const address = this.#checked("lock");
    // Longer waits in a Worker in slices, as `park`: the Worker can be terminated meanwhile.
    const code = (ns >= 0 && ns <= SLICE_NS) || b.mainThread
      ? b.mutexLock(address, ns)
      : sliced(ns, -(ETIMEDOUT ||= b.errno("ETIMEDOUT")), (slice) => b.mutexLock(address, slice));
    if (code < 0) {
      const timedOut = code === -(ETIMEDOUT ||= b.errno("ETIMEDOUT"));
      lockFailed(code, `${this.#at("lock")}${timedOut ? ` (waited ${timeoutMs} ms)` : ""}`);
    }
    return this.#held(code);
  }

  /**
   * Takes the lock if it is free; returns `null` if another thread or process holds it. Never
   * waits.
   *
   * @throws {SharedMemoryError} As {@linkcode lock}; `EAGAIN` at once if another process is
   *   still setting the lock up.
   */
  tryLock(): MutexGuard | null {
    const b = backend();
    const code = b.mutexTryLock(this.#checked("tryLock"));
    if (code < 0) {
      if (code === -(EBUSY ||= b.errno("EBUSY"))) return null;
      lockFailed(code, this.#at("tryLock"));
    }
    return this.#held(code);
  }

  /** The guard of a hold just taken (`code` is what the lock call returned). */
  #held(code: number): MutexGuard {
    this.#holds.current = ++lastHold;
    return new MutexGuard(CONSTRUCT, this, code === LOCK_OWNER_DIED, lastHold);
  }

  /**
   * Releases the lock.
   *
   * @throws {SharedMemoryError} `EPERM` if this thread does not hold it (or another process
   *   overwrote the lock while it was held).
   */
  unlock(): void {
    const b = backend();
    const code = b.mutexUnlock(this.#checked("unlock"));
    if (code < 0) {
      if (code === -b.errno("EPERM")) {
        this.#holds.current = 0; // whatever this thread held there, it holds no more
        throw errorOf(
          "EPERM",
          `${
            this.#at("unlock")
          }: this thread does not hold the lock (or another process overwrote it while it was held)`,
        );
      }
      throwCode(code, this.#at("unlock"));
    }
    this.#holds.current = 0;
  }

  /** `Mutex.<call> at byte <offset>`: what an error of `call` names. */
  #at(call: string): string {
    return `Mutex.${call} at byte ${this.#byteOffset}`;
  }

  #checked(what: string): Address {
    if (isDetached(this.#buffer)) {
      if (what === "unlock") {
        // A close() refuses while this thread holds a lock inside; a transfer cannot refuse.
        throw errorOf(
          "EBADF",
          "Mutex.unlock: the buffer of this Mutex was detached (its segment closed, the buffer transferred, or detachSharedBuffer); if this thread held the lock, it still does: unlock it through a buffer of the segment that is still attached, Mutex.open(shm.buffer, offset).unlock()",
        );
      }
      addressOf(this.#buffer, `Mutex.${what}`); // throws EBADF
    }
    return this.#address;
  }
}
