/**
 * Ownership: what engine-owned buffers cost, per runtime: attach (a buffer made, touched and
 * released), unlink with and without reporting to the engine, and the forced collection. The
 * `method` below says how.
 *
 * @module
 */

import process from "node:process";
import {
  childCommand,
  each,
  median,
  ratios,
  round,
  type Row,
  rows,
  runJson,
  runtime,
  type Scenario,
  wheres,
} from "../harness.ts";
import { backend } from "../../ts/backend.ts";
import { CREATE, OWNER_TRUSTED, REPLACE, symbols } from "../../ts/ffi.ts";
import { loadNodeApi } from "../../ts/napi.ts";

const MiB = 1024 * 1024;
const OWNER = BigInt(OWNER_TRUSTED);
const ROUNDS = 400;

/** Median and p90 of `rounds` timed calls of `op` (after 20 untimed), in microseconds. */
function time(rounds: number, op: () => void): { median_us: number; p90_us: number } {
  for (let i = 0; i < 20; i++) op();
  const times = Array.from({ length: rounds }, () => {
    const t = performance.now();
    op();
    return (performance.now() - t) * 1000;
  }).sort((a, b) => a - b);
  return { median_us: round(median(times), 2), p90_us: round(times[Math.floor(rounds * 0.9)], 2) };
}

/**
 * The child: through the library's own backend (the runtime's FFI in Deno and Bun, Node-API in
 * Node), besides the Node-API module loaded with `process.dlopen`.
 */
function measure(): Row[] {
  const b = backend();
  const napi = loadNodeApi(b.libraryPath, process.dlopen);
  const opened = new BigUint64Array(7);
  const encode = (name: string) => new TextEncoder().encode(name);
  const make = (name: string, size: number): [number, bigint] => {
    const rc = b.openName(encode(name), BigInt(size), CREATE, REPLACE, 0o600, OWNER, opened);
    if (rc !== 0) throw new Error(`create ${name}: ${b.errorName(rc)}`);
    return [Number(opened[0]), opened[1]];
  };
  // Deno's plain unlink and its own FFI buffer (what Deno used before the Node-API one).
  const deno = runtime === "deno"
    ? {
      s: Deno.dlopen(b.libraryPath, { sb_unlink_name: symbols.sb_unlink_name }).symbols,
      registry: new FinalizationRegistry<number>((handle) => b.close(handle)),
    }
    : undefined;
  const tag = `${runtime}-${process.pid}`;
  const out: Row[] = [];
  for (const size of [4096, 1024 * MiB]) {
    const name = `/sbbench-own-${tag}-${size}`;
    const [handle, address] = make(name, size);
    const touched = (buffer: ArrayBuffer) => new Uint8Array(buffer)[0];
    // The library's own way in this runtime: Node-API in Deno and Node, bun:ffi in Bun.
    const library = () => {
      const dup = b.dup(handle);
      const buffer = b.wrap(address, size, dup);
      touched(buffer);
      b.unwrap(buffer, dup);
    };
    const ways: Record<string, () => void> = runtime === "bun"
      ? {
        ffi: library,
        napi() {
          const dup = b.dup(handle);
          const buffer = napi.wrap(dup, address, size);
          touched(buffer);
          buffer.transfer(0);
          b.close(dup);
        },
      }
      : { napi: library };
    if (deno) {
      ways.ffi = () => {
        const dup = b.dup(handle);
        const pointer = Deno.UnsafePointer.create(address)!;
        const buffer = Deno.UnsafePointerView.getArrayBuffer(pointer, size);
        deno.registry.register(buffer, dup, buffer);
        touched(buffer);
        buffer.transfer(0);
        deno.registry.unregister(buffer);
        b.close(dup);
      };
    }
    for (const [way, op] of Object.entries(ways)) {
      out.push(...rows({ runtime, what: `attach_${way}`, size }, time(ROUNDS, op)));
    }
    b.close(handle);
    napi.unlinkName(name);
  }
  const plain: Record<string, ((name: string) => void) | undefined> = {
    deno: deno && ((name) => void deno.s.sb_unlink_name(encode(name), encode(name).length)),
    bun: (name) => void b.unlinkName(encode(name)),
  };
  // Creating a 1 GiB segment takes about a second (its memory is reserved): one of those per
  // way and run (the median is then over runs).
  const touches = [[4096, true, 7], [64 * MiB, true, 7], [1024 * MiB, false, 1]] as const;
  for (const [size, touch, reps] of touches) {
    const ways = { napi: (name: string) => void napi.unlinkName(name), ffi: plain[runtime] };
    for (const [way, unlinkName] of Object.entries(ways)) {
      if (!unlinkName) continue;
      const times: number[] = [];
      for (let i = 0; i < reps; i++) {
        const name = `/sbbench-own-${tag}-u${size}`;
        const [handle, address] = make(name, size);
        if (touch) {
          const dup = b.dup(handle);
          const buffer = b.wrap(address, size, dup);
          new Uint8Array(buffer).fill(1);
          b.unwrap(buffer, dup);
        }
        const t = performance.now();
        unlinkName(name);
        times.push((performance.now() - t) * 1000);
        b.close(handle);
      }
      const what = `unlink_${way}${touch ? "" : "_untouched"}`;
      out.push({ runtime, what, size, metric: "median_us", value: round(median(times), 1) });
    }
  }
  const value = time(20, () => napi.relieve()).median_us;
  return [...out, { runtime, what: "relieve", metric: "median_us", value }];
}

/** The scenario. */
export const ownership: Scenario = {
  name: "ownership",
  method:
    `Engine-owned buffers over one open 4 KiB and one 1 GiB segment. attach: one buffer over ` +
    `the whole segment made, touched (one byte) and released at once, ${ROUNDS} single ` +
    "operations timed one by one (median and p90 µs); ffi = the runtime's own FFI buffer (Deno: " +
    "getArrayBuffer + FinalizationRegistry; Bun: toArrayBuffer with the native deallocator), " +
    "napi = the Node-API module's external buffer with its finalizer (Node: this way only). unlink: removing a " +
    "segment through the Node-API module (which reports the length it gives back) against the " +
    "plain sb_unlink_name, 4 KiB and 64 MiB touched (median of 7, µs), 1 GiB untouched (once per run). " +
    "relieve: the full collection forced after ENOSPC.",
  run: (ctx, skipped) =>
    each(ctx, skipped, ctx.runtimes, (rt) =>
      runJson(childCommand(rt, "ownership", "measure"), {
        timeoutMs: 300_000, // 1 GiB segments made and filled 30 times: minutes on a busy machine
      })),
  compare: (ctx) =>
    ratios([
      "median_us attach_napi / attach_ffi = attach: Node-API buffer / the runtime's FFI buffer",
      "median_us unlink_napi / unlink_ffi = unlink: through Node-API (reporting) / plain",
      "median_us unlink_napi_untouched / unlink_ffi_untouched = unlink, untouched: through " +
      "Node-API (reporting) / plain",
    ], wheres(ctx.runtimes, [4096, 64 * MiB, 1024 * MiB])),
  children: { measure },
};
