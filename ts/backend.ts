/**
 * What each runtime adapter provides, and the slot the active adapter is installed in.
 *
 * `mod.ts` installs the Deno adapter, `bun.ts` the Bun one and `node.ts` the Node.js one (Deno's
 * or Bun's when they run it); everything else in `ts/` is runtime-neutral and reaches the native
 * library only through {@linkcode Backend}.
 *
 * @module
 */

import { CHANNEL_STATE_BYTES } from "./ffi.ts";
import { SharedMemoryError } from "./errors.ts";
import { describe } from "./validate.ts";

/**
 * An address in the form this runtime's FFI takes fastest for a `usize` parameter: a BigInt in
 * Deno (a number there costs a slow conversion), a number in Bun and Node.js.
 */
export type Address = bigint | number;

/**
 * One channel's native fast paths in the form this runtime calls fastest, with the endpoint state
 * each call reads and updates (this process's own memory, which no peer reaches). A runtime whose
 * calls into the library cost more than a receive or a send (Node.js, through Node-API) leaves
 * out {@linkcode take} and {@linkcode put}, and keeps {@linkcode scanRun} and
 * {@linkcode commitRun}, made once per run of messages.
 */
export interface ChannelCalls {
  /** `sb_channel_take` with {@linkcode takeState}. */
  take?(target: Uint8Array, room: number): number;
  /** `sb_channel_put` with {@linkcode putState}. */
  put?(message: Uint8Array, length: number): number;
  /** `sb_channel_scan_run` with {@linkcode takeState}. */
  scanRun(out: Uint8Array, lens: Int32Array, max: number, small: number): number;
  /**
   * The fewest bytes a receiver must know to be waiting at `head` (up to the `tail` it last read)
   * for a {@linkcode scanRun} call, where that call costs more than looking at a few messages in
   * TypeScript; unset, always.
   */
  readonly scanRunMin?: number;
  /** `sb_channel_commit_run` with {@linkcode putState}. */
  commitRun?(idx: number, lens: Int32Array, count: number): number;
  /**
   * The fewest records of a run worth a {@linkcode commitRun} call where that call costs more
   * than the default's (4) commit stores.
   */
  readonly commitRunMin?: number;
  /**
   * Lets go of the arrays {@linkcode take} and {@linkcode put} keep to know again, where they
   * keep any: an endpoint closed, and its caller's arrays must not live on through the channel.
   */
  forget?(): void;
  readonly takeState: Int32Array;
  readonly putState: Int32Array;
}

/** The two states of {@linkcode ChannelCalls}, in buffers the engine never moves. */
export function channelStates(): [Int32Array, Int32Array] {
  const state = () => new Int32Array(new ArrayBuffer(CHANNEL_STATE_BYTES));
  return [state(), state()];
}

/** Native calls and buffer plumbing, implemented once per runtime. */
export interface Backend {
  /** The runtime and its version, for messages ("Node.js 20.19.5"). */
  readonly runtimeName: string;
  /** Largest ArrayBuffer the runtime makes over foreign memory, in bytes. */
  readonly maxBufferBytes: number;
  /**
   * Where collections do not release what they collected (Node.js runs the finalizers of
   * collected buffers only on a later turn of the event loop): how many mappings this process
   * may have (`vm.max_map_count`). A synchronous loop that drops buffers without `close()`
   * keeps every mapping until the event loop turns, and once the process has no mapping left the
   * engine's own allocations fail (Node 20 aborts). So past an eighth of this an open has the
   * engine collect first ({@linkcode relieve}), and past seven eighths it is refused with
   * `ENOMEM`, leaving the rest to the engine. Undefined where collections release mappings
   * themselves.
   */
  readonly mappingLimit?: number;
  /** Where the native library was loaded from. */
  readonly libraryPath: string;
  /**
   * True on the process's main thread, false in a Worker: only a Worker can be terminated while
   * a wait of its own blocks it (see `park` in `sync.ts`).
   */
  readonly mainThread: boolean;

  openKey(
    key: number,
    size: bigint,
    how: number,
    flags: number,
    mode: number,
    owner: bigint,
    out: BigUint64Array,
  ): number;
  openName(
    name: Uint8Array,
    size: bigint,
    how: number,
    flags: number,
    mode: number,
    owner: bigint,
    out: BigUint64Array,
  ): number;
  /** The login name of `uid`, or undefined if the user database has none. */
  userName(uid: number): string | undefined;
  unlinkKey(key: number): number;
  unlinkName(name: Uint8Array): number;
  /**
   * Removes `key` if it still holds the segment whose identity (the last two words an open wrote,
   * `SbMapping.identity`) is `identity`, open or closed here: 0, `-ENOENT` if it holds another
   * segment now or none, or another negative code.
   */
  unlinkKeyOwn(key: number, identity: BigUint64Array): number;
  /** The same for a named segment. */
  unlinkNameOwn(name: Uint8Array, identity: BigUint64Array): number;
  dup(handle: number): number;
  close(handle: number): number;
  /**
   * A channel endpoint of this thread attaching: the compare-and-swap of its pid word at `address`
   * from `expected` to `pid`, in the Node-API module (which hears of a Worker's end in every
   * runtime), which notes the word when it takes it, in the same call. If the thread ends while
   * it holds the word (a Worker terminated, or ended without closing it), or the mapping goes
   * (the engine collected a channel dropped without `close()`, on any thread), the word is marked
   * `PID_GONE`, and peers take the endpoint for dead. Returns what the word held (as an int32).
   */
  claimEndpoint(address: bigint, expected: number, pid: number): number;
  /** The endpoint detaching: the word from `pid` to 0, and its note forgotten, in one call. */
  unclaimEndpoint(address: bigint, pid: number): number;
  handleCount(): number;
  errorName(code: number): string;
  errorMessage(code: number): string;
  /** This platform's positive error number for a symbolic name (`sb_errno`), 0 if unknown. */
  errno(name: string): number;

  /**
   * The native fast paths of the channel whose region is at `region` (`sb_channel_take`,
   * `sb_channel_put`, `sb_channel_scan_run` and `sb_channel_commit_run`, see `Parking`): those
   * that cost less than the TypeScript path they stand for in this runtime.
   */
  channelCalls(region: Address): ChannelCalls;
  /** Converts an address for the calls below. */
  address(address: bigint): Address;
  /** `sb_wait` (spins 0) or `sb_wait_spin`; timeouts are in ns, -1 for none. */
  wait(address: Address, expected: number, timeoutNs: number, spins: number): number;
  /** The same without blocking the event loop; resolves with the same codes, or -EBADF. */
  waitAsync(address: Address, expected: number, timeoutNs: number): Promise<number>;
  /** Ends the pending waits on `length` bytes from `address` with -EBADF; returns how many. */
  cancelWaits(address: Address, length: number): number;
  notify(address: Address, count: number): number;
  mutexInit(address: Address): number;
  /** `sb_mutex_open`: 0 if a ready mutex is at `address`. */
  mutexOpen(address: Address): number;
  /** `sb_mutex_held_in`: how many locks this process holds in `length` bytes at `address`. */
  mutexHeldIn(address: Address, length: number): number;
  mutexLock(address: Address, timeoutNs: number): number;
  mutexTryLock(address: Address): number;
  mutexUnlock(address: Address): number;
  /** True if process `pid` exists and is not a zombie (`sb_process_alive`). */
  processAlive(pid: number): boolean;
  /**
   * This process's pid namespace as a channel's header records it (`sb_pid_namespace`: the
   * inode number of `/proc/self/ns/pid`), 0 where it cannot be told.
   */
  readonly pidNamespace: number;
  /** `sb_mutex_size()`. */
  readonly mutexSize: number;

  /**
   * A zero-copy ArrayBuffer over `length` bytes at `address`. The buffer owns `handle` (one
   * reference to the mapping), and the engine's own finalizer closes it when the buffer is
   * collected, wherever it was moved (a Worker, a stream, `transfer()`, another realm). A move the
   * runtime cannot make safe must be refused by the runtime with its own error.
   */
  wrap(address: bigint, length: number, handle: number, group?: number): ArrayBuffer;
  /**
   * Where the runtime tracks views natively (Node-API: Deno, Node.js): `wrap` with a `group` (the
   * handle of the `SharedMemory` that made the view) keeps a weak reference to the view, and this
   * hands back the group's views not yet collected, forgetting them; `close()` detaches those
   * still here. A weak Node-API reference costs less than a `WeakRef` and, unlike one, does not
   * keep its view alive until the end of the job that made it. Absent: the caller keeps
   * `WeakRef`s (Bun, where they are cheap).
   */
  takeViews?(group: number): ArrayBuffer[];
  /**
   * Weak references that do not keep their target alive until the end of the job that made them
   * (Node-API: Deno, Node.js), as a `WeakRef` does in V8: a synchronous loop that drops what they
   * refer to lets the engine collect it at once. Absent: the caller keeps `WeakRef`s (Bun,
   * whose engine does not keep them to the end of the job).
   */
  weak?: {
    ref(target: object): number;
    deref(id: number): unknown;
    drop(id: number): void;
  };
  /**
   * Makes `owner` (a `SharedMemory`) hold `handle`, released by the engine when `owner` is
   * collected without `close()`. Returns what `owner` must keep for that (the "anchor"): a private
   * one-byte buffer over `address` that owns the handle where a buffer's finalizer runs during the
   * collection itself (Deno, Bun), nothing where a finalizer on `owner` itself does as well
   * (Node.js, which runs either kind on a later turn of the event loop). Throws, leaving
   * `handle` open, if it cannot.
   */
  anchor(owner: object, address: bigint, handle: number): ArrayBuffer | undefined;
  /**
   * For `close()`: if `buffer` is still in this process (not detached), detaches it and closes
   * `handle` now. A buffer already moved or detached is left to its finalizer, so a moved buffer
   * keeps working until it is collected.
   */
  unwrap(buffer: ArrayBuffer, handle: number): void;
  /**
   * For `close()`: releases `handle`, owned by what {@linkcode anchor} returned (which the caller
   * drops; nothing reads it again). Where the finalizer checks which handle it owns (Node-API),
   * the handle is closed without detaching the anchor, which would cost the engine a new empty
   * buffer; where it does not (`bun:ffi`'s deallocator closes a handle by number, which may be
   * given out again), the anchor is detached, which runs the finalizer now.
   */
  dropAnchor(anchor: ArrayBuffer | undefined, handle: number): void;
  /**
   * Called when creating a segment failed with `ENOSPC`: asks the engine for a full garbage
   * collection now, then returns once collected buffers have released their mappings (the
   * handle count stops falling), so that the caller can retry once. Returns how many handles
   * were released (0: retrying cannot help, as far as this process goes).
   */
  relieve(): number;
}

/** The calls both adapters make the same way. */
export type CommonCalls = Pick<
  Backend,
  | "openKey"
  | "openName"
  | "unlinkKey"
  | "unlinkName"
  | "unlinkKeyOwn"
  | "unlinkNameOwn"
  | "dup"
  | "close"
  | "handleCount"
  | "userName"
  | "notify"
  | "mutexInit"
  | "mutexOpen"
  | "mutexHeldIn"
  | "mutexTryLock"
  | "mutexUnlock"
  | "processAlive"
  | "pidNamespace"
  | "mutexSize"
  | "errno"
>;

// deno-lint-ignore no-explicit-any
type Calls = Record<string, (...args: any[]) => any>;

/**
 * The {@linkcode CommonCalls} over a loaded library's symbols (Deno's or Bun's). Addresses pass
 * through as each runtime's {@linkcode Backend.address} made them.
 */
export function commonCalls(s: Calls): CommonCalls {
  const errnos = new Map<string, number>();
  return {
    openKey: (key, size, how, flags, mode, owner, out) =>
      s.sb_open_key(key, size, how, flags, mode, owner, out),
    openName: (name, size, how, flags, mode, owner, out) =>
      s.sb_open_name(name, name.length, size, how, flags, mode, owner, out),
    userName(uid) {
      let buf = new Uint8Array(64);
      let n = s.sb_user_name(uid, buf, buf.length);
      if (n > buf.length) {
        buf = new Uint8Array(n);
        n = s.sb_user_name(uid, buf, buf.length);
      }
      return n < 0 || n > buf.length ? undefined : new TextDecoder().decode(buf.subarray(0, n));
    },
    unlinkKey: (key) => s.sb_unlink_key(key),
    unlinkName: (name) => s.sb_unlink_name(name, name.length),
    unlinkKeyOwn: (key, identity) => s.sb_unlink_key_own(key, identity),
    unlinkNameOwn: (name, identity) => s.sb_unlink_name_own(name, name.length, identity),
    dup: (handle) => s.sb_dup(handle),
    close: (handle) => s.sb_close(handle),
    handleCount: () => s.sb_handle_count(),
    notify: (address, count) => s.sb_notify(address, count),
    mutexInit: (address) => s.sb_mutex_init(address),
    mutexOpen: (address) => s.sb_mutex_open(address),
    mutexHeldIn: (address, length) => s.sb_mutex_held_in(address, length),
    mutexTryLock: (address) => s.sb_mutex_trylock(address),
    mutexUnlock: (address) => s.sb_mutex_unlock(address),
    processAlive: (pid) => s.sb_process_alive(pid) !== 0,
    pidNamespace: s.sb_pid_namespace(),
    mutexSize: s.sb_mutex_size(),
    errno(name) {
      let found = errnos.get(name);
      if (found === undefined) {
        const bytes = new TextEncoder().encode(name);
        found = s.sb_errno(bytes, bytes.length) as number;
        errnos.set(name, found);
      }
      return found;
    },
  };
}

/**
 * Waits until the handle count has stopped falling for a few milliseconds (at most a quarter of
 * a second): engines release collected buffers on a sweeper thread shortly after a collection.
 * Returns how many handles were released since the count was `before` (negative if other threads
 * opened more meanwhile).
 */
export function settleHandles(handleCount: () => number, before: number): number {
  const pause = new Int32Array(new SharedArrayBuffer(4));
  let last = handleCount();
  let still = 0;
  for (let round = 0; round < 250 && still < 5; round++) {
    Atomics.wait(pause, 0, 0, 1);
    const now = handleCount();
    still = now < last ? 0 : still + 1;
    last = now;
  }
  return before - last;
}

/** A loader that opens the native library on first use. */
export type BackendLoader = (explicitPath?: string) => Backend;

let loader: BackendLoader | undefined;
let active: Backend | undefined;

/** Installs the runtime's adapter; called once by each entry (`mod.ts`, `bun.ts`, `node.ts`). */
export function installBackend(load: BackendLoader): void {
  loader ??= load;
}

/**
 * Loads the native library now. Without `path`, the library is looked for as
 * {@linkcode loadNativeLibrary} says; calling this is optional, since first use loads it too.
 *
 * @param path An explicit path to `libshared_buffer_native.so` (or `.dylib`): the only one tried.
 * @returns The path it was loaded from.
 * @throws {TypeError} If `path` is given and is not a string.
 * @throws {SharedMemoryError} `EBUSY` if it is already loaded from another path; `ELIBACC`,
 *   listing every place tried, if none loads.
 *
 * @example
 * ```ts
 * import { loadLibrary } from "./mod.ts";
 * loadLibrary("/opt/shared-buffer/libshared_buffer_native.so");
 * ```
 */
export function loadLibrary(path?: string): string {
  if (path !== undefined && typeof path !== "string") {
    throw new TypeError(`loadLibrary: path must be a string, got ${describe(path)}`);
  }
  if (active) {
    if (path !== undefined && path !== active.libraryPath) {
      // A process loads the library once: every handle and lock of it lives there.
      throw new SharedMemoryError(
        `loadLibrary: the native library is already loaded from ${active.libraryPath}; call loadLibrary(path) before any other call of the library, or with the same path (EBUSY)`,
        "EBUSY",
        active.errno("EBUSY"),
      );
    }
    return active.libraryPath;
  }
  if (!loader) {
    throw new Error(
      "shared-buffer: import it from mod.ts (Deno), bun.ts (Bun) or dist/node.js (Node.js)",
    );
  }
  active = loader(path);
  return active.libraryPath;
}

/** The active backend, loading the library on first use. */
export function backend(): Backend {
  if (!active) loadLibrary();
  return active!;
}
