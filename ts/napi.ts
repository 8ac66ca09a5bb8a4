/**
 * The Node-API half of the native library: the same library file, loaded a second time with
 * `process.dlopen` (from `node:process`), which registers it as a Node-API module. Its buffers are
 * owned by the JavaScript engine: each one holds one reference to its mapping and the engine's
 * own finalizer releases it when the buffer is collected, wherever the buffer was moved.
 *
 * The contract of each export is in `crates/native/src/napi/mod.rs`.
 *
 * @module
 */

import process from "node:process";
import { ABI_VERSION } from "./ffi.ts";

/** What the Node-API module exports. */
export interface NodeApiModule {
  /** The library's ABI version; must equal {@linkcode ABI_VERSION}. */
  readonly abiVersion: number;
  /** The address of this copy's `sb_release`: Bun's FFI must have opened the same copy. */
  readonly releaseFn: number;
  /** The file this copy was loaded from, where the platform tells (`dladdr`). */
  readonly libraryFile?: string;
  /** `sb_error_name(code)`, as a string. */
  errorName(code: number): string;
  /** `sb_error_message(code)`, as a string. */
  errorMessage(code: number): string;
  /**
   * An ArrayBuffer over `length` bytes at `address`, inside the mapping `handle` references. The
   * buffer takes over `handle` and closes it when the engine collects it.
   *
   * @throws {Error} With `code` `"EBADF"` if `handle` is not open.
   * @throws {RangeError} If the bytes are not inside the mapping.
   */
  wrap(handle: number, address: bigint, length: number, group?: number): ArrayBuffer;
  /**
   * The buffers `wrap` made with `group` (an open handle, matched by its serial number) that
   * have not been collected (detached ones included), forgetting them.
   */
  takeViews(group: number): ArrayBuffer[];
  /**
   * A weak reference to `object`, by a number: unlike a `WeakRef`, it does not keep `object`
   * alive until the end of the job that made it. {@linkcode derefWeak} gives `object`, or
   * undefined once it is collected; {@linkcode dropWeak} deletes the reference.
   */
  weakRef(object: object): number;
  /** The object of a {@linkcode weakRef}, or undefined once collected (or dropped). */
  derefWeak(id: number): unknown;
  /** Deletes a {@linkcode weakRef}. */
  dropWeak(id: number): void;
  /**
   * Parks a wait for the 32-bit word at `address` to stop holding `expected` on the native
   * service, for `timeoutNs` at most (negative: no limit), and resolves with the code `wait`
   * returns. The environment's teardown (a terminated Worker) ends its pending waits.
   */
  waitAsync(address: number, expected: number, timeoutNs: number): Promise<number>;
  /**
   * `object` takes over `handle` and closes it when the engine finalizes `object`.
   *
   * @throws {Error} With `code` `"EBADF"` if `handle` is not open.
   */
  addFinalizer(object: object, handle: number): void;
  /**
   * Closes `handle`, that of `buffer`, which a close has just detached; but if the mapping goes,
   * its addresses stay reserved as private memory until the engine collects `buffer`: Node's own
   * native code may still be writing through a pointer into it (an `fs.read` on its thread
   * pool), which would otherwise fault, or write into a segment mapped there next. A handle
   * closed already (by the buffer's finalizer, where the engine runs it in the detach) is left
   * alone.
   */
  retire(buffer: ArrayBuffer, handle: number): void;
  /**
   * From now on, `wrap` and `addFinalizer` track what they make for `relieve`: once this process
   * holds 16 handles, or over a mapping of 64 KiB or more, or everything after `keepMovedAtEnd`.
   */
  trackAll(): void;
  /**
   * From now on, when this environment is torn down (a Worker's end, however it ends: Node.js
   * then finalizes every buffer the environment made), keeps until the process ends the mappings
   * of the buffers made here whose memory may have moved to another buffer (seen detached), and
   * closes the handles opened here that no object took over (a `terminate()` in between).
   */
  keepMovedAtEnd(): void;
  /**
   * Bun's Workers: `openKey`, `openName` and `dup` (of the Node-API module) note the handles they
   * open until {@linkcode handedOver}, and the environment's teardown closes those still noted.
   */
  noteUnowned(): void;
  /** An object owns `handle` now (a buffer whose deallocator closes it): no longer noted. */
  handedOver(handle: number): void;
  /**
   * `sb_unlink_key`, after which each of this process's mappings of the segment is reported to
   * the engine as the memory its collection would free. Returns 0 or a negative code.
   */
  unlinkKey(key: number): number;
  /** The same for a named segment (the name as validated, with or without its `/`). */
  unlinkName(name: string): number;
  /**
   * The same for the segment whose `SbMapping.identity` is `identity`, if the key still names it
   * (`sb_unlink_key_own`).
   */
  unlinkKeyOwn(key: number, identity: BigUint64Array): number;
  /** The same for a named segment (`sb_unlink_name_own`). */
  unlinkNameOwn(name: string, identity: BigUint64Array): number;
  /**
   * The compare-and-swap of a channel endpoint's pid word at `address` from `expected` to `pid`,
   * noting the word when it takes it: marked `PID_GONE` at the environment's teardown, or when
   * its mapping goes, if still held (not once the process is ending). What the word held.
   */
  claimEndpoint(address: bigint, expected: number, pid: number): number;
  /** The word from `pid` to 0, its note forgotten; what it held. */
  unclaimEndpoint(address: bigint, pid: number): number;
  /** This environment is a main thread's: its teardown marks no endpoint gone. */
  noteMainThread(): void;
  /** Forgets this environment's channel endpoints' notes now, without marking them. */
  leaveEndpoints(): void;
  /**
   * Forces a full garbage collection through the engine's memory-pressure path: reports a huge
   * amount for a moment and takes it back. For `ENOSPC` only; it costs a full collection.
   */
  relieve(): number;
  /**
   * Forgets the buffers `wrap` made that are detached or collected, and arms the next
   * `relieve` (call it right before) to close the handles of the buffers its collection
   * collects, at once rather than when the engine runs their finalizers. Returns how many
   * buffers are still tracked.
   */
  forgetDetached(): number;
  /** Bytes this environment has reported and not yet taken back. */
  reportedBytes(): number;
  /**
   * How many of the one-byte buffers `keepMovedAtEnd` keeps newer than every other are not yet
   * freed in this process (for tests): one per Worker, the current, once its event loop turns.
   */
  sentinels(): number;
  /**
   * How many finalizers that close a handle (those of `wrap` and `addFinalizer`) the engines
   * hold in this process (for tests): none of an environment's is left once it has ended.
   */
  owners(): number;
}

/** `process.dlopen`'s shape. */
export type Dlopen = (module: { exports: unknown }, path: string) => void;

/**
 * For the module loaded on a main thread: the end of that thread is its process's end, when the
 * pid words of its channel endpoints still held are left to die with the process, and peers
 * report the process's death; not marked gone as those of an endpoint that went without
 * `close()` while its process lives on. Its environment's teardown marks none; and with
 * `atExit` (Node.js, which finalizes the buffers at a normal end before that teardown), neither
 * does anything after its `exit` event.
 */
export function noteMainThread(module: NodeApiModule, atExit: boolean): void {
  module.noteMainThread();
  if (atExit) process.on("exit", () => module.leaveEndpoints());
}

/**
 * Loads the library at `path` as a Node-API module.
 *
 * @param dlopen `process.dlopen` from `node:process` (Deno needs only `--allow-ffi` for it).
 * @throws {Error} If it does not register, or reports another ABI version.
 */
export function loadNodeApi(path: string, dlopen: Dlopen): NodeApiModule {
  const module = { exports: {} as Partial<NodeApiModule> };
  dlopen(module, path);
  const found = module.exports.abiVersion;
  if (found !== ABI_VERSION) {
    throw new Error(
      found === undefined
        ? `shared-buffer: ${path} did not register as a Node-API module (the runtime lacks a Node-API function it needs)`
        : `shared-buffer: ${path} has ABI version ${found} as a Node-API module, these bindings need ${ABI_VERSION}`,
    );
  }
  return module.exports as NodeApiModule;
}

/** A library opened by a runtime's FFI, with the same file loaded as a Node-API module. */
export interface WithNodeApi<L> {
  /** The FFI's library. */
  lib: L;
  /** The Node-API module; absent for a library of another ABI version. */
  nodeApi?: NodeApiModule;
}

/**
 * The `open` of `loadNativeLibrary` for Deno's and Bun's adapters, which need the library's FFI
 * and its Node-API module both: a library of this ABI version whose Node-API module does not load
 * fails as one that does not open (its FFI library closed), so that the error lists it with every
 * other place tried. (Bun's FFI finds a bare file name in the working folder, `process.dlopen`
 * does not: `SHARED_BUFFER_LIB=libshared_buffer_native.so` threw the runtime's own error.) One
 * of another version is left to the version check, which says what to do.
 */
export function openWithNodeApi<L>(
  open: (path: string) => L,
  version: (lib: L) => number,
  close: (lib: L) => void,
): (path: string) => WithNodeApi<L> {
  return (path) => {
    const lib = open(path);
    let found: number;
    try {
      found = version(lib);
    } catch {
      return { lib }; // the version check says what this is
    }
    if (found !== ABI_VERSION) return { lib };
    try {
      return { lib, nodeApi: loadNodeApi(path, process.dlopen) };
    } catch (err) {
      close(lib);
      throw err;
    }
  };
}
