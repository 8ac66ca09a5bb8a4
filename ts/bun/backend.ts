/**
 * The Bun adapter: `bun:ffi`'s `dlopen` with the shared symbol table converted to Bun's format,
 * and zero-copy buffers through `toArrayBuffer` with a native deallocator: each buffer owns one
 * handle, closed by the deallocator when the buffer is collected or detached (`transfer(0)`),
 * and carried along when the buffer is moved (to a Worker, or by `transfer()`), so moving one is
 * safe in Bun.
 *
 * @module
 */

import { CString, dlopen, toArrayBuffer } from "bun:ffi";
import type { Backend } from "../backend.ts";
import { symbols } from "../ffi.ts";
import { LIBRARY_ENV, libraryCandidates, openFirst } from "../library.ts";

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
  usize: "u64",
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

/** Opens the native library and returns the Bun backend. */
export function loadBun(explicit?: string): Backend {
  const candidates = libraryCandidates(
    explicit,
    process.env[LIBRARY_ENV],
    `${import.meta.dir}/../..`,
    process.platform,
  );
  const table = bunSymbols();
  const [lib, path] = openFirst(
    candidates,
    // deno-lint-ignore no-explicit-any
    (p) => dlopen(p, table as any),
    (l) => (l.symbols as Symbols).sb_abi_version(),
    (l) => l.close(),
  );
  const s = lib.symbols as Symbols;
  const release = s.sb_release_fn();
  return {
    runtime: "bun",
    // JavaScriptCore refuses larger external ArrayBuffers ("Out of memory").
    maxBufferBytes: 2 ** 32,
    libraryPath: path,
    openKey: (key, size, how, flags, mode, out) => s.sb_open_key(key, size, how, flags, mode, out),
    openName: (name, size, how, flags, mode, out) =>
      s.sb_open_name(name, name.length, size, how, flags, mode, out),
    unlinkKey: (key) => s.sb_unlink_key(key),
    unlinkName: (name) => s.sb_unlink_name(name, name.length),
    dup: (handle) => s.sb_dup(handle),
    close: (handle) => s.sb_close(handle),
    handleCount: () => s.sb_handle_count(),
    errorName: (code) => new CString(s.sb_error_name(code)).toString(),
    errorMessage: (code) => new CString(s.sb_error_message(code)).toString(),
    wrap: (address, length, handle) =>
      // The handle rides along as the deallocator's context; sb_release closes it.
      toArrayBuffer(Number(address), 0, length, handle as never, release),
    unwrap(buffer) {
      // Detaching runs the deallocator now, which closes the handle. A buffer already moved
      // elsewhere carries its handle with it, and the deallocator runs when that copy dies.
      if (!buffer.detached) buffer.transfer(0);
    },
  };
}
