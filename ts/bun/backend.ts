/**
 * The Bun adapter: `bun:ffi`'s `dlopen` with the shared symbol table converted to Bun's format,
 * and zero-copy buffers through `toArrayBuffer` with a native deallocator: each buffer owns one
 * handle, closed by the deallocator when the buffer is collected or detached (`transfer(0)`),
 * and carried along when the buffer is moved (to a Worker, or by `transfer()`), so moving one is
 * safe in Bun.
 *
 * Both entries run it in Bun: `bun.ts` (see `./load.ts`, which finds the library as a Bun
 * program does) and the Node.js entry (`ts/node/backend.ts`, which finds it as Node.js does).
 * So `bun:ffi` is given to it, not imported here: Node.js and Deno load this module too (the
 * Node.js entry's), and have none.
 *
 * @module
 */

import process from "node:process";
import { type Backend, channelStates, commonCalls, settleHandles } from "../backend.ts";
import { symbols } from "../ffi.ts";
import { type LibrarySources, loadNativeLibrary } from "../library.ts";
import { bufferDetached, detachBuffer, viewByteLength } from "../intrinsics.ts";
import { type NodeApiModule, noteMainThread, openWithNodeApi } from "../napi.ts";
import type { NodeCalls } from "../node/backend.ts";

/**
 * What this adapter uses of `bun:ffi` (its own types would make Deno and Node.js, which check
 * and build the Node.js entry, resolve a module they do not have).
 */
export interface BunFfi {
  dlopen(path: string, symbols: Record<string, unknown>): FfiLibrary;
  toArrayBuffer(
    address: number,
    offset: number,
    length: number,
    context: never,
    deallocator: unknown,
  ): ArrayBuffer;
  ptr(view: ArrayBufferView): number;
  CString: new (address: unknown) => { toString(): string };
}

/** Deno's FFI type names to Bun's. */
const BUN_TYPES: Record<string, string> = {
  u8: "u8",
  i8: "i8",
  u16: "u16",
  i16: "i16",
  u32: "u32",
  i32: "i32",
  u64: "u64",
  i64: "i64",
  usize: "ptr", // addresses only in this table (see ts/ffi.ts)
  isize: "i64",
  f32: "f32",
  f64: "f64",
  bool: "bool",
  void: "void",
  buffer: "ptr",
  pointer: "ptr",
  function: "function",
};

/** The shared symbol table in Bun's `dlopen` format. */
export function bunSymbols(): Record<string, { args: string[]; returns: string }> {
  const table: Record<string, { args: string[]; returns: string }> = {};
  for (const [name, def] of Object.entries(symbols)) {
    const convert = (t: string) => {
      const bun = BUN_TYPES[t];
      if (!bun) throw new Error(`no Bun FFI type for ${t} (in ${name})`);
      return bun;
    };
    table[name] = {
      args: (def.parameters as readonly string[]).map(convert),
      returns: convert(def.result),
    };
  }
  return table;
}

// deno-lint-ignore no-explicit-any
type Symbols = Record<string, (...args: any[]) => any>;

/** A library as `bun:ffi` opens it. */
interface FfiLibrary {
  readonly symbols: unknown;
  close(): void;
}

/**
 * The FFI's library, opened again from the Node-API module's file where the two are separate
 * copies (their `sb_release` at two addresses): a `bun build --compile` program writes its
 * embedded library out once for `bun:ffi` and once for `process.dlopen`. Two copies keep two
 * tables of handles, of pending async waits and of claims, and a call of one made for the other
 * missed: a Worker's buffers closed the main thread's handles of the same numbers (a crash), a
 * `close()` did not end the `waitAsync`s on its segment, a main thread's channel endpoint could
 * not attach. Where they cannot be made one, the load fails.
 */
function oneCopy(
  first: FfiLibrary,
  nodeApi: NodeApiModule,
  path: string,
  open: (file: string) => FfiLibrary,
): FfiLibrary {
  const releaseOf = (lib: FfiLibrary) => Number((lib.symbols as Symbols).sb_release_fn());
  if (releaseOf(first) === nodeApi.releaseFn) return first;
  const again = nodeApi.libraryFile === undefined ? undefined : open(nodeApi.libraryFile);
  if (again === undefined || releaseOf(again) !== nodeApi.releaseFn) {
    again?.close();
    throw new Error(
      `shared-buffer: ${path} loaded as two copies of the library (bun:ffi's and ` +
        `process.dlopen's), which could not be made one from ${nodeApi.libraryFile ?? "its file"}`,
    );
  }
  first.close();
  return again;
}

/** Opens the native library, the first of `sources` that fits, and returns the Bun backend. */
export function bunBackend(ffi: BunFfi, sources: LibrarySources): Backend {
  const { dlopen, toArrayBuffer, ptr, CString } = ffi;
  const table = bunSymbols();
  const version = (l: FfiLibrary) => (l.symbols as Symbols).sb_abi_version();
  const close = (l: FfiLibrary) => l.close();
  // Async waits resolve through Node-API, which Bun implements: a thread-safe `JSCallback` would
  // be called after a terminated Worker freed it (a crash), while Node-API tears a Worker's
  // thread-safe function down with it (and the library ends its waits then).
  const { lib: first, path } = loadNativeLibrary(
    sources,
    openWithNodeApi((p) => dlopen(p, table), version, close),
    (l) => version(l.lib),
    (l) => close(l.lib),
  );
  const nodeApi = first.nodeApi!;
  const s = oneCopy(first.lib, nodeApi, path, (file) => dlopen(file, table))
    .symbols as Symbols;
  const mainThread = (globalThis as unknown as { Bun: { isMainThread: boolean } }).Bun.isMainThread;
  const release = s.sb_release_fn();
  // A Worker terminated between an open and the buffer that takes its handle over would leave
  // the handle, and its mapping, open for good: in a Worker, handles are opened through Node-API,
  // which notes them until `handedOver` and closes those still noted at the Worker's teardown.
  const calls = commonCalls(s as unknown as Parameters<typeof commonCalls>[0]);
  // The module exports Node's calls too (see `NodeCalls`): these four take what Backend's do.
  const opens = mainThread ? undefined : nodeApi as NodeCalls;
  if (mainThread) noteMainThread(nodeApi, false);
  else nodeApi.noteUnowned();
  return {
    runtimeName: `Bun ${process.versions.bun}`,
    mainThread,
    // JavaScriptCore refuses larger external ArrayBuffers ("Out of memory").
    maxBufferBytes: 2 ** 32,
    libraryPath: path,
    ...calls,
    ...(opens && {
      openKey: opens.openKey,
      openName: opens.openName,
      dup: opens.dup,
      close: opens.close,
    }),
    // Noted in the Node-API module, which hears of a Worker's end (see Backend).
    claimEndpoint: (address, expected, pid) => nodeApi.claimEndpoint(address, expected, pid),
    unclaimEndpoint: (address, pid) => nodeApi.unclaimEndpoint(address, pid),
    errorName: (code) => new CString(s.sb_error_name(code)).toString(),
    errorMessage: (code) => new CString(s.sb_error_message(code)).toString(),
    address: (address) => Number(address),
    channelCalls(region) {
      // Typed arrays pass as pointers for a few nanoseconds here: nothing to cache.
      const [takeState, putState] = channelStates();
      const [takeAt, putAt] = [ptr(takeState), ptr(putState)];
      return {
        take: (target, room) => s.sb_channel_take(region, takeAt, target, room),
        put: (message, length) => s.sb_channel_put(region, putAt, message, length),
        scanRun: (out, lens, max, small) =>
          s.sb_channel_scan_run(region, takeAt, out, viewByteLength(out), lens, max, small),
        commitRun: (idx, lens, count) => s.sb_channel_commit_run(region, putAt, idx, lens, count),
        takeState,
        putState,
      };
    },
    wait: (address, expected, timeoutNs, spins) =>
      spins > 0
        ? s.sb_wait_spin(address, expected, timeoutNs, spins)
        : s.sb_wait(address, expected, timeoutNs),
    // Addresses are numbers here (`address` above).
    waitAsync: (address, expected, timeoutNs) =>
      nodeApi.waitAsync(address as number, expected, timeoutNs),
    cancelWaits: (address, length) => s.sb_wait_cancel(address, length),
    mutexLock: (address, timeoutNs) => s.sb_mutex_lock(address, timeoutNs),
    wrap(address, length, handle) {
      // The handle rides along as the deallocator's context; sb_release closes it.
      const buffer = toArrayBuffer(Number(address), 0, length, handle as never, release);
      if (opens) nodeApi.handedOver(handle);
      return buffer;
    },
    anchor(_owner, address, handle) {
      const anchor = toArrayBuffer(Number(address), 0, 1, handle as never, release);
      if (opens) nodeApi.handedOver(handle);
      return anchor;
    },
    unwrap(buffer) {
      // Detaching runs the deallocator now, which closes the handle. A buffer already moved
      // elsewhere carries its handle with it, and the deallocator runs when that copy dies.
      // Through the engine's own accessors: a `transfer` or `detached` defined on the buffer
      // left it attached after close().
      if (!bufferDetached(buffer)) detachBuffer(buffer);
    },
    // The deallocator closes its handle by number: detach now, while the number is still its.
    dropAnchor: (anchor) => void detachBuffer(anchor!),
    relieve() {
      const before = s.sb_handle_count();
      (globalThis as unknown as { Bun: { gc(force: boolean): void } }).Bun.gc(true);
      return settleHandles(() => s.sb_handle_count(), before);
    },
  };
}
