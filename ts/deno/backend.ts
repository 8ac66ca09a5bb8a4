/**
 * The Deno adapter: `Deno.dlopen` for every call, and buffers that the engine owns. The library
 * is loaded a second time with `process.dlopen` (from `node:process`, which needs only
 * `--allow-ffi`) as a Node-API module, whose external ArrayBuffers carry a finalizer: each buffer
 * owns one reference to its mapping, released when V8 frees the buffer's memory, wherever the
 * buffer was moved (a Worker, a stream, `transfer()`, another realm). So moving a buffer is safe
 * and nothing is patched. Unlinking goes through the same module, which tells V8 how much memory
 * the removed segment's mappings hold, so that dropped segments are collected under pressure.
 *
 * Both entries run it in Deno: `mod.ts` (see `./load.ts`, which finds the library as a Deno
 * program does) and the Node.js entry (`ts/node/backend.ts`, which finds it as Node.js does, for a
 * program that `require`s the package, imports that entry by path or runs a bundle made for
 * Node.js).
 *
 * @module
 */

import { type Backend, channelStates, commonCalls, settleHandles } from "../backend.ts";
import { symbols } from "../ffi.ts";
import * as fs from "node:fs";
import {
  askingOnce,
  fileHead,
  LIBRARY_ENV,
  type LibrarySources,
  loadNativeLibrary,
} from "../library.ts";
import { bufferDetached, detachBuffer, viewBuffer, viewByteLength } from "../intrinsics.ts";
import { noteMainThread, openWithNodeApi } from "../napi.ts";

/**
 * The symbol table, and the two channel calls once more with the array as an address
 * (`AddressCache`); the library exports each symbol once.
 */
const denoSymbols = {
  ...symbols,
  sb_channel_take_at: {
    name: "sb_channel_take",
    parameters: ["usize", "usize", "usize", "u32"],
    result: "i32",
  },
  sb_channel_put_at: {
    name: "sb_channel_put",
    parameters: ["usize", "usize", "usize", "u32"],
    result: "i32",
  },
} as const satisfies Deno.ForeignLibraryInterface;

type Library = Deno.DynamicLibrary<typeof denoSymbols>;

/** Deno's FFI takes an i64 as a BigInt; forever (-1) is the common case, made once. */
function ns(timeoutNs: number): bigint {
  return timeoutNs === -1 ? FOREVER : BigInt(timeoutNs);
}
const FOREVER = -1n;

const decoder = new TextDecoder();

/**
 * The address of a view's first byte, or 0n where Deno gives none (an empty or detached buffer)
 * and for a view with no bytes, whose offset the engine may not tell: a view out of the bounds of
 * a resizable buffer that shrank counts offset 0, and the address of the buffer's start would be
 * used once the buffer grew back under it (reading and writing the bytes before the view).
 * The buffer comes from the engine's own getter first, which also moves the bytes of a small
 * array that V8 keeps inside its heap (where a collection would move them) out to memory that
 * never moves. The address is the library's `sb_address_of` of the view, as Deno's FFI passes it:
 * `Deno.UnsafePointer` would tell it only with `--allow-ffi` unscoped, and ask for it in a
 * terminal when the permission names the library's path.
 */
function addressOfView(
  view: Uint8Array | Int32Array,
  addressOf: (view: Uint8Array | Int32Array) => number | bigint,
): bigint {
  try {
    if (viewByteLength(view) === 0) return 0n;
    viewBuffer(view);
    return BigInt(addressOf(view));
  } catch {
    return 0n; // a view Deno's FFI does not take: passed as itself, as any array seen once
  }
}

/**
 * The address of the array a channel call was last given twice in a row, so that a loop that
 * sends or receives into one array passes an address (a BigInt, about 14 ns cheaper per call
 * than a typed array in Deno's FFI) instead of the array. An array met once passes as itself:
 * finding its address costs more than the call saves. The address of an array stays valid for
 * as long as the array lives: its buffer's memory never moves, and a buffer detached or shrunk
 * since counts fewer bytes (the caller passes the engine's count), so nothing is written or read
 * past what it holds.
 */
class AddressCache {
  #addressOf: (view: Uint8Array | Int32Array) => number | bigint;
  #array: object | undefined;
  #at = 0n;
  #seen: object | undefined;

  constructor(addressOf: (view: Uint8Array | Int32Array) => number | bigint) {
    this.#addressOf = addressOf;
  }

  /** The address of `array`'s first byte if it was met before, else 0n (pass the array). */
  of(array: Uint8Array): bigint {
    if (array === this.#array) return this.#at;
    if (array !== this.#seen) {
      this.#seen = array;
      return 0n;
    }
    this.#array = array;
    return this.#at = addressOfView(array, this.#addressOf);
  }

  /** Lets go of the arrays kept: the next array passes as itself. */
  forget(): void {
    this.#array = this.#seen = undefined;
    this.#at = 0n;
  }
}

/** Whether `name` may be read without a prompt (`--allow-env` for it). */
function envReadable(name: string): boolean {
  try {
    return Deno.permissions.querySync({ name: "env", variable: name }).state === "granted";
  } catch {
    return false;
  }
}

/**
 * What Deno tells of where to look, whichever entry runs: the explicit path, the variable (read
 * only where `--allow-env` lets it be, without a prompt), a look at a file's head (only with
 * `--allow-read` for it), and this machine (`Deno.build`: `process.report` would need
 * `--allow-sys`). Each entry adds where its packages and builds are.
 */
export function denoSources(
  explicit: string | undefined,
): Pick<LibrarySources, "explicit" | "fromEnv" | "envUnreadable" | "readHead" | "platform"> {
  const envGranted = envReadable(LIBRARY_ENV);
  const { os, arch, target } = Deno.build;
  return {
    explicit,
    fromEnv: envGranted ? Deno.env.get(LIBRARY_ENV) : undefined,
    envUnreadable: !envGranted,
    readHead: (path) =>
      Deno.permissions.querySync({ name: "read", path }).state === "granted"
        ? fileHead(fs, path)
        : undefined,
    platform: {
      os,
      arch,
      libc: os === "linux" ? (target.endsWith("musl") ? "musl" : "gnu") : undefined,
    },
  };
}

/** Opens the native library, the first of `sources` that fits, and returns the Deno backend. */
export function denoBackend(sources: LibrarySources): Backend {
  const version = (l: Library) => l.symbols.sb_abi_version();
  const close = (l: Library) => l.close();
  // Node-API gives Deno what Node has: buffers the engine owns, and async waits whose thread-safe
  // function the runtime tears down with the Worker that made it (with its waits, which end).
  const { lib: loaded, path } = loadNativeLibrary(
    sources,
    // In a terminal Deno asks before it opens each path without --allow-ffi: once is enough.
    askingOnce(
      openWithNodeApi((p) => Deno.dlopen(p, denoSymbols), version, close),
      (path) => Deno.permissions.querySync({ name: "ffi", path }).state,
    ),
    (l) => version(l.lib),
    (l) => close(l.lib),
  );
  const s = loaded.lib.symbols;
  const owner = loaded.nodeApi!;
  // Deno's main thread runs in a Window, its Workers (`node:worker_threads` ones too) in a
  // DedicatedWorkerGlobalScope, which hides its name from `node:worker_threads` ones.
  const mainThread = Object.prototype.toString.call(globalThis) === "[object Window]";
  if (mainThread) noteMainThread(owner, false);
  const addressOf = (view: Uint8Array | Int32Array) => s.sb_address_of(view);
  return {
    runtimeName: `Deno ${Deno.version.deno}`,
    mainThread,
    // V8's limit for one ArrayBuffer on 64-bit targets.
    maxBufferBytes: Number.MAX_SAFE_INTEGER,
    libraryPath: path,
    ...commonCalls(s as unknown as Parameters<typeof commonCalls>[0]),
    unlinkKey: (key) => owner.unlinkKey(key),
    unlinkName: (name) => owner.unlinkName(decoder.decode(name)),
    unlinkKeyOwn: (key, identity) => owner.unlinkKeyOwn(key, identity),
    claimEndpoint: (address, expected, pid) => owner.claimEndpoint(address, expected, pid),
    unclaimEndpoint: (address, pid) => owner.unclaimEndpoint(address, pid),
    unlinkNameOwn: (name, identity) => owner.unlinkNameOwn(decoder.decode(name), identity),
    // Through the Node-API module: a C string's bytes are read by Deno's
    // `UnsafePointerView` only with `--allow-ffi` unscoped.
    errorName: (code) => owner.errorName(code),
    errorMessage: (code) => owner.errorMessage(code),
    address: (address) => address,
    channelCalls(region) {
      const r = region as bigint;
      const [takeState, putState] = channelStates();
      const [takeAt, putAt] = [
        addressOfView(takeState, addressOf),
        addressOfView(putState, addressOf),
      ];
      const targets = new AddressCache(addressOf);
      const messages = new AddressCache(addressOf);
      return {
        take(target, room) {
          const at = targets.of(target);
          return at === 0n
            ? s.sb_channel_take(r, takeAt, target, room)
            : s.sb_channel_take_at(r, takeAt, at, room);
        },
        put(message, length) {
          const at = messages.of(message);
          return at === 0n
            ? s.sb_channel_put(r, putAt, message, length)
            : s.sb_channel_put_at(r, putAt, at, length);
        },
        // Once per run of messages: the plain call, which reads each array's address itself.
        scanRun: (out, lens, max, small) =>
          s.sb_channel_scan_run(r, takeAt, out, viewByteLength(out), lens, max, small),
        commitRun: (idx, lens, count) => s.sb_channel_commit_run(r, putAt, idx, lens, count),
        forget() {
          targets.forget();
          messages.forget();
        },
        takeState,
        putState,
      };
    },
    wait: (address, expected, timeoutNs, spins) =>
      spins > 0
        ? s.sb_wait_spin(address as bigint, expected, ns(timeoutNs), spins)
        : s.sb_wait(address as bigint, expected, ns(timeoutNs)),
    // Not a `nonblocking` call: each of those holds a thread of Deno's small blocking pool, and
    // a few dozen idle waits would starve its file I/O. The native service parks them instead,
    // and resolves them through Node-API: a `Deno.UnsafeCallback` would be called after a
    // terminated Worker freed it (a crash), and needs `--allow-ffi` for every path.
    waitAsync: (address, expected, timeoutNs) =>
      owner.waitAsync(Number(address), expected, timeoutNs),
    cancelWaits: (address, length) => s.sb_wait_cancel(address as bigint, BigInt(length)),
    mutexLock: (address, timeoutNs) => s.sb_mutex_lock(address as bigint, ns(timeoutNs)),
    wrap: (address, length, handle, group) => owner.wrap(handle, address, length, group),
    takeViews: (group) => owner.takeViews(group),
    weak: {
      ref: (target) => owner.weakRef(target),
      deref: (id) => owner.derefWeak(id),
      drop: (id) => owner.dropWeak(id),
    },
    anchor: (_owner, address, handle) => owner.wrap(handle, address, 1),
    unwrap(buffer) {
      // Still here: detach it. Its finalizer closes its handle as V8 frees its memory: at once,
      // unless an operation of the runtime holds that memory still (a pending `FsFile.read`
      // into a view of it), which keeps the mapping until it is done. Closed here, the mapping
      // went under the read, whose bytes then landed in whatever was mapped there next.
      // Through the engine's own accessors: closing the handle of a buffer that a `transfer`
      // defined on it left attached unmapped memory the buffer still reached (SIGSEGV).
      if (!bufferDetached(buffer)) detachBuffer(buffer);
    },
    // The finalizer closes only the handle it was given, by serial number.
    dropAnchor: (_anchor, handle) => s.sb_close(handle),
    relieve() {
      const before = s.sb_handle_count();
      owner.relieve();
      return settleHandles(() => s.sb_handle_count(), before);
    },
  };
}
