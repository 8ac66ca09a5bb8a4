/**
 * Ownership: what engine-owned buffers cost, per runtime, over one open segment of 4 KiB and one
 * of 1 GiB.
 *
 * - **attach**: one buffer over the whole segment, made, touched (one byte read) and released at
 *   once (`transfer(0)` and the handle closed), the way `view()` + `close()` do it; median and p90
 *   of single operations. Two ways in each runtime: `ffi`, the runtime's own FFI buffer (Deno:
 *   `UnsafePointerView.getArrayBuffer` plus a `FinalizationRegistry`, what Deno used before;
 *   Bun: `bun:ffi` `toArrayBuffer` with the native deallocator, what Bun uses), and `napi`, the
 *   Node-API module's external buffer with its finalizer (what Deno uses).
 * - **unlink**: removing a segment through the Node-API module (which reports the length it
 *   gives back to the engine) against the plain `sb_unlink_name`, for a 4 KiB and a 64 MiB
 *   segment with every page touched, and an untouched 1 GiB one.
 * - **relieve**: the full collection the library forces when a create fails with ENOSPC.
 *
 * @module
 */

import process from "node:process";
import {
  childCommand,
  type Compare,
  env,
  median,
  root,
  round,
  type Row,
  runJson,
  type Runtime,
  runtime,
  type Scenario,
} from "../harness.ts";
import { symbols } from "../../ts/ffi.ts";
import { loadNodeApi } from "../../ts/napi.ts";

const MiB = 1024 * 1024;

// deno-lint-ignore no-explicit-any
type Calls = Record<string, (...args: any[]) => any>;

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))];
}

/** Median and p90 of `rounds` timed calls of `op`, in microseconds. */
function time(rounds: number, op: () => void): { median_us: number; p90_us: number } {
  for (let i = 0; i < 20; i++) op();
  const times: number[] = [];
  for (let i = 0; i < rounds; i++) {
    const t = performance.now();
    op();
    times.push((performance.now() - t) * 1000);
  }
  times.sort((a, b) => a - b);
  return { median_us: round(median(times), 2), p90_us: round(percentile(times, 0.9), 2) };
}

async function library(): Promise<{ s: Calls; path: string; ffiWrap: FfiWrap }> {
  const path = env(
    "SHARED_BUFFER_LIB",
    `${root}/target/release/libshared_buffer_native.so`,
  );
  if (runtime === "bun") {
    const ffi = "bun:ffi";
    const { dlopen, toArrayBuffer } = await import(ffi);
    const adapter = "../../ts/bun/backend.ts"; // not followed by `deno check`
    const { bunSymbols } = await import(adapter);
    const s = dlopen(path, bunSymbols()).symbols as Calls;
    const release = s.sb_release_fn();
    return {
      s,
      path,
      ffiWrap: (address, length, handle) =>
        toArrayBuffer(Number(address), 0, length, handle, release),
    };
  }
  const s = Deno.dlopen(path, symbols).symbols as unknown as Calls;
  const registry = new FinalizationRegistry<number>((handle) => s.sb_close(handle));
  return {
    s,
    path,
    ffiWrap(address, length, handle) {
      const buffer = Deno.UnsafePointerView.getArrayBuffer(
        Deno.UnsafePointer.create(address)!,
        length,
      );
      registry.register(buffer, handle, buffer);
      return buffer;
    },
  };
}

type FfiWrap = (address: bigint, length: number, handle: number) => ArrayBuffer;

async function measure(): Promise<Record<string, unknown>> {
  const rounds = ROUNDS;
  const { s, path, ffiWrap } = await library();
  const napi = loadNodeApi(path, process.dlopen);
  const out = new BigUint64Array(4);
  const encode = (name: string) => new TextEncoder().encode(name);
  const make = (name: string, size: number): [number, bigint] => {
    const bytes = encode(name);
    s.sb_unlink_name(bytes, bytes.length);
    const rc = s.sb_open_name(bytes, bytes.length, BigInt(size), 1, 0, 0o600, out);
    if (rc !== 0) throw new Error(`create ${name}: ${rc}`);
    return [Number(out[0]), out[1]];
  };
  const tag = `${runtime}-${process.pid}`;
  const attach: Record<string, unknown> = {};
  for (const [label, size] of [["4KiB", 4096], ["1GiB", 1024 * MiB]] as const) {
    const name = `/sbbench-own-${tag}-${label}`;
    const [handle, address] = make(name, size);
    const ways: Record<string, () => void> = {
      ffi() {
        const dup = s.sb_dup(handle);
        const b = ffiWrap(address, size, dup);
        new Uint8Array(b)[0];
        b.transfer(0);
        if (runtime === "deno") s.sb_close(dup);
      },
      napi() {
        const dup = s.sb_dup(handle);
        const b = napi.wrap(dup, address, size);
        new Uint8Array(b)[0];
        b.transfer(0);
        s.sb_close(dup);
      },
    };
    for (const [way, op] of Object.entries(ways)) attach[`${way}_${label}`] = time(rounds, op);
    s.sb_close(handle);
    const bytes = encode(name);
    s.sb_unlink_name(bytes, bytes.length);
  }
  const unlink: Record<string, unknown> = {};
  for (
    const [label, size, touch] of [["4KiB", 4096, true], ["64MiB", 64 * MiB, true], [
      "1GiB_untouched",
      1024 * MiB,
      false,
    ]] as const
  ) {
    for (const way of ["ffi", "napi"]) {
      const times: number[] = [];
      for (let i = 0; i < 7; i++) {
        const name = `/sbbench-own-${tag}-u${label}`;
        const [handle, address] = make(name, size);
        if (touch) {
          const b = napi.wrap(s.sb_dup(handle), address, size);
          new Uint8Array(b).fill(1);
          b.transfer(0);
        }
        const t = performance.now();
        if (way === "napi") napi.unlinkName(name);
        else {
          const bytes = encode(name);
          s.sb_unlink_name(bytes, bytes.length);
        }
        times.push((performance.now() - t) * 1000);
        s.sb_close(handle);
      }
      unlink[`${way}_${label}`] = round(median(times), 1);
    }
  }
  const relieve = time(20, () => napi.relieve());
  return { runtime, rounds, attach_us: attach, unlink_median_us: unlink, relieve_us: relieve };
}

const ROUNDS = 400;
const SIZES: Record<string, number> = {
  "4KiB": 4096,
  "64MiB": 64 * MiB,
  "1GiB": 1024 * MiB,
  "1GiB_untouched": 1024 * MiB,
};

/** What the `measure` child prints. */
interface Measured {
  attach_us: Record<string, { median_us: number; p90_us: number }>;
  unlink_median_us: Record<string, number>;
  relieve_us: { median_us: number; p90_us: number };
}

/** The scenario. */
export const ownership: Scenario = {
  name: "ownership",
  method:
    `Engine-owned buffers over one open 4 KiB and one 1 GiB segment. attach: one buffer over ` +
    `the whole segment made, touched (one byte) and released at once, ${ROUNDS} single ` +
    "operations timed one by one (median and p90 µs); ffi = the runtime's own FFI buffer (Deno: " +
    "getArrayBuffer + FinalizationRegistry; Bun: toArrayBuffer with the native deallocator), " +
    "napi = the Node-API module's external buffer with its finalizer. unlink: removing a " +
    "segment through the Node-API module (which reports the length it gives back) against the " +
    "plain sb_unlink_name, 4 KiB and 64 MiB touched, 1 GiB untouched (median of 7, µs). " +
    "relieve: the full collection forced after ENOSPC.",
  async run(ctx, skipped) {
    const out: Row[] = [];
    for (const rt of ctx.runtimes.filter((r): r is Runtime => r !== "node")) {
      try {
        const got = await runJson<Measured>(childCommand(rt, "ownership", "measure"), {
          timeoutMs: 300_000, // 1 GiB segments made and filled 30 times: minutes on a busy machine
        });
        for (const [k, v] of Object.entries(got.attach_us)) {
          const [way, label] = k.split("_", 2);
          const base = { runtime: rt, what: `attach ${way}`, size: SIZES[label] };
          out.push({ ...base, metric: "median_us", value: v.median_us });
          out.push({ ...base, metric: "p90_us", value: v.p90_us });
        }
        for (const [k, value] of Object.entries(got.unlink_median_us)) {
          const [way, ...label] = k.split("_");
          const what = `unlink ${way}${label.length > 1 ? ", untouched" : ""}`;
          out.push({ runtime: rt, what, size: SIZES[label[0]], metric: "median_us", value });
        }
        out.push({
          runtime: rt,
          what: "relieve",
          metric: "median_us",
          value: got.relieve_us.median_us,
        });
      } catch (err) {
        skipped(rt, err);
      }
    }
    return out;
  },
  compare: (ctx) =>
    ctx.runtimes.flatMap((rt): Compare[] => [
      ...[4096, 1024 * MiB].map((size) => ({
        label: "attach: Node-API buffer / the runtime's FFI buffer",
        num: { runtime: rt, what: "attach napi", size, metric: "median_us" },
        den: { runtime: rt, what: "attach ffi", size, metric: "median_us" },
      })),
      ...[["", 4096], ["", 64 * MiB], [", untouched", 1024 * MiB]].map(([tail, size]) => ({
        label: `unlink${tail}: through Node-API (reporting) / plain`,
        num: { runtime: rt, what: `unlink napi${tail}`, size: size as number, metric: "median_us" },
        den: { runtime: rt, what: `unlink ffi${tail}`, size: size as number, metric: "median_us" },
      })),
    ]),
  children: { measure },
};
