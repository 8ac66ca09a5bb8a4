/**
 * The Deno adapter: `Deno.dlopen`, zero-copy buffers through `UnsafePointerView`, and unmapping
 * on garbage collection through a `FinalizationRegistry` (Deno's external buffers take no
 * deleter).
 *
 * Because such a buffer has no deleter, a buffer moved elsewhere (to a Worker by
 * `postMessage(buf, [buf])`, or by `buf.transfer()`) would keep pointing at memory that is
 * unmapped once the original object is collected, and crash the process. This adapter therefore
 * refuses to move these buffers: see {@linkcode guardTransfers}.
 *
 * @module
 */

import { AsyncWaits } from "../async_waits.ts";
import { type Backend, commonCalls } from "../backend.ts";
import { symbols } from "../ffi.ts";
import { LIBRARY_ENV, libraryCandidates, openFirst } from "../library.ts";

type Library = Deno.DynamicLibrary<typeof symbols>;

/** Buffers this adapter made, to refuse moving them. */
const ours = new WeakSet<ArrayBuffer>();
const originalTransfer = ArrayBuffer.prototype.transfer;

function readEnv(name: string): string | undefined {
  try {
    const status = Deno.permissions.querySync({ name: "env", variable: name });
    return status.state === "granted" ? Deno.env.get(name) : undefined;
  } catch {
    return undefined;
  }
}

function packageRoot(): string {
  const url = new URL("../../", import.meta.url);
  return url.protocol === "file:" ? decodeURIComponent(url.pathname).replace(/\/$/, "") : ".";
}

/** Deno's FFI takes an i64 as a BigInt; forever (-1) is the common case, made once. */
function ns(timeoutNs: number): bigint {
  return timeoutNs === -1 ? FOREVER : BigInt(timeoutNs);
}
const FOREVER = -1n;

function cstring(pointer: Deno.PointerValue): string {
  return pointer === null ? "" : Deno.UnsafePointerView.getCString(pointer);
}

/** Opens the native library and returns the Deno backend. */
export function loadDeno(explicit?: string): Backend {
  const candidates = libraryCandidates(
    explicit,
    readEnv(LIBRARY_ENV),
    packageRoot(),
    Deno.build.os,
  );
  const [lib, path] = openFirst<Library>(
    candidates,
    (p) => Deno.dlopen(p, symbols),
    (l) => l.symbols.sb_abi_version(),
    (l) => l.close(),
  );
  const s = lib.symbols;
  const collected = new FinalizationRegistry<number>((handle) => {
    s.sb_close(handle);
  });
  guardTransfers();
  // The native wait service calls this from its threads; Deno queues each call onto this thread.
  // Referenced (holding the event loop open) only while a wait is pending.
  const woken = Deno.UnsafeCallback.threadSafe(
    { parameters: ["u64", "i32"], result: "void" } as const,
    (token, code) => waits.woken(Number(token), code),
  );
  woken.unref();
  const waits = new AsyncWaits((on) => on ? woken.ref() : woken.unref());
  return {
    runtime: "deno",
    // V8's limit for one ArrayBuffer on 64-bit targets.
    maxBufferBytes: Number.MAX_SAFE_INTEGER,
    libraryPath: path,
    ...commonCalls(s as unknown as Parameters<typeof commonCalls>[0]),
    errorName: (code) => cstring(s.sb_error_name(code)),
    errorMessage: (code) => cstring(s.sb_error_message(code)),
    address: (address) => address,
    wait: (address, expected, timeoutNs, spins) =>
      spins > 0
        ? s.sb_wait_spin(address as bigint, expected, ns(timeoutNs), spins)
        : s.sb_wait(address as bigint, expected, ns(timeoutNs)),
    // Not a `nonblocking` call: each of those holds a thread of Deno's small blocking pool, and
    // a few dozen idle waits would starve its file I/O. The native service parks them instead.
    waitAsync: (address, expected, timeoutNs) =>
      waits.wait((token) =>
        s.sb_wait_async(address as bigint, expected, ns(timeoutNs), BigInt(token), woken.pointer)
      ),
    cancelWaits: (address, length) => s.sb_wait_cancel(address as bigint, BigInt(length)),
    mutexLock: (address, timeoutNs) => s.sb_mutex_lock(address as bigint, ns(timeoutNs)),
    wrap(address, length, handle) {
      const pointer = Deno.UnsafePointer.create(address);
      if (pointer === null) throw new RangeError("null mapping address");
      const buffer = Deno.UnsafePointerView.getArrayBuffer(pointer, length);
      ours.add(buffer);
      collected.register(buffer, handle, buffer);
      return buffer;
    },
    unwrap(buffer, handle) {
      collected.unregister(buffer);
      ours.delete(buffer);
      if (!buffer.detached) originalTransfer.call(buffer, 0);
      s.sb_close(handle);
    },
  };
}

function transferList(arg: unknown): unknown[] {
  if (Array.isArray(arg)) return arg;
  if (typeof arg === "object" && arg !== null && "transfer" in arg) {
    const list = (arg as { transfer?: unknown }).transfer;
    return Array.isArray(list) ? list : [];
  }
  return [];
}

function refuseMove(arg: unknown, where: string): void {
  for (const item of transferList(arg)) {
    if (item instanceof ArrayBuffer && ours.has(item)) {
      throw new DOMException(
        `${where}: an ArrayBuffer over shared memory cannot be transferred in Deno (the receiver would outlive the mapping); post it without a transfer list to copy it, or send the segment's name or key and open it in the receiver`,
        "DataCloneError",
      );
    }
  }
}

let guarded = false;

/**
 * Makes every way of moving a shared-memory buffer in Deno throw instead of crashing later:
 * `postMessage` with a transfer list (Worker, MessagePort, a worker's own `postMessage`),
 * `structuredClone` with `transfer`, and `ArrayBuffer.prototype.transfer` /
 * `transferToFixedLength` to a non-zero length. Other buffers are untouched; copying (posting
 * without a transfer list) still works.
 */
function guardTransfers(): void {
  if (guarded) return;
  guarded = true;
  const proto = ArrayBuffer.prototype;
  for (const method of ["transfer", "transferToFixedLength"] as const) {
    const original = proto[method];
    Object.defineProperty(proto, method, {
      configurable: true,
      writable: true,
      value: function (this: ArrayBuffer, newLength?: number) {
        if (ours.has(this) && newLength !== 0) {
          throw new TypeError(
            `ArrayBuffer.prototype.${method}: a shared-memory buffer cannot be moved in Deno; use transfer(0) to detach it, or copy it with slice()`,
          );
        }
        return original.call(this, newLength);
      },
    });
  }
  const clone = globalThis.structuredClone as (value: unknown, options?: unknown) => unknown;
  globalThis.structuredClone = function (value: unknown, options?: unknown) {
    refuseMove(options, "structuredClone");
    return clone(value, options);
  } as typeof structuredClone;
  const targets: { prototype: { postMessage: (...args: never[]) => void } }[] = [];
  if (typeof Worker === "function") targets.push(Worker);
  if (typeof MessagePort === "function") targets.push(MessagePort);
  for (const target of targets) {
    const post = target.prototype.postMessage as (
      this: unknown,
      message: unknown,
      transfer?: unknown,
    ) => void;
    target.prototype.postMessage = function (
      this: unknown,
      message: unknown,
      transfer?: unknown,
    ) {
      refuseMove(transfer, "postMessage");
      return post.call(this, message, transfer);
    } as never;
  }
  const self = globalThis as { postMessage?: (m: unknown, t?: unknown) => void };
  if (typeof self.postMessage === "function" && typeof Worker !== "undefined") {
    const post = self.postMessage;
    self.postMessage = function (message: unknown, transfer?: unknown) {
      refuseMove(transfer, "postMessage");
      return post.call(globalThis, message, transfer);
    };
  }
}
