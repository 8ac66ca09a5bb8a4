/**
 * Throughput: a Float64Array sum and a 64 MiB `Uint8Array.set` over a 64 MiB shared buffer
 * against a plain `ArrayBuffer`, in each runtime and in Rust (`native_segment throughput`).
 *
 * @module
 */

import {
  childCommand,
  createKeyed,
  each,
  leftovers,
  median,
  nativeBinary,
  ratios,
  round,
  runJson,
  type Scenario,
  timeOps,
  wheres,
} from "../harness.ts";

const BYTES = 64 << 20;
/** Each block: passes for about this long (two to four of 64 MiB). */
const BLOCK_MS = 80;
const REPS = 7;

/** GB/s of each repetition, per kernel and buffer, as the Rust anchor prints them too. */
type Kernels = Record<string, { shared_gbps: number[]; plain_gbps: number[] }>;

/** GB/s of each kernel over the shared and the plain buffer, in alternating blocks. */
function throughputChild(): { kernels: Kernels } {
  const { key, shm } = createKeyed(BYTES);
  shm.unlink(); // the mapping stays; nothing is left behind on a crash
  leftovers("remove", [`key:${key}`]);
  try {
    const buffers = { shared: shm.buffer, plain: new ArrayBuffer(BYTES) };
    const source = new Uint8Array(BYTES);
    let expected = 0;
    for (const buffer of [source.buffer, buffers.shared, buffers.plain]) {
      const f64 = new Float64Array(buffer);
      expected = 0;
      for (let i = 0; i < f64.length; i++) expected += f64[i] = i & 1023;
    }
    const sum = (buffer: ArrayBuffer) => {
      const f64 = new Float64Array(buffer);
      let total = 0;
      for (let i = 0; i < f64.length; i++) total += f64[i];
      if (total !== expected) throw new Error("wrong sum");
    };
    const kernels: Record<string, (buffer: ArrayBuffer) => void> = {
      f64_sum: sum,
      u8_set: (buffer) => new Uint8Array(buffer).set(source),
    };
    // One phase per kernel, its two buffers alternating. With the kernels interleaved (the order
    // run forward, then back), the copy into the shared buffer came right after a sum in half its
    // blocks and the copy into the plain one never did, and a copy right after a sum is slower
    // into either buffer (bench/README.md, "The throughput's phases").
    const ns: Record<string, number[]> = {};
    for (const [name, kernel] of Object.entries(kernels)) {
      Object.assign(
        ns,
        timeOps(
          Object.fromEntries(
            (["shared", "plain"] as const).map((b) => [`${name} ${b}`, () => kernel(buffers[b])]),
          ),
          { blocks: REPS, blockMs: BLOCK_MS, warmup: 3 },
        ),
      );
    }
    const gbps = (name: string) => ns[name].map((per) => BYTES / per);
    return {
      kernels: Object.fromEntries(
        Object.keys(kernels).map((k) => [k, {
          shared_gbps: gbps(`${k} shared`),
          plain_gbps: gbps(`${k} plain`),
        }]),
      ),
    };
  } finally {
    shm.close();
  }
}

/** The scenario. */
export const throughput: Scenario = {
  name: "throughput",
  method: `Float64Array sum and Uint8Array.set (64 MiB copied in) over a 64 MiB shared buffer ` +
    `(SharedMemory.create, populated) against new ArrayBuffer (touched once); one phase per kernel, ` +
    `GB/s medians over ${REPS} blocks of passes (about ${BLOCK_MS} ms each), shared and plain ` +
    `alternating. native: the same kernels in Rust over a populated keyed segment against a heap ` +
    `Vec, in phases too. Node's f64_sum is slow over ` +
    `both buffers alike: after a few dozen calls V8 there (Node 26, and Node 20 in part) replaces the ` +
    `sum's fast on-stack-replaced code with a version about 5x slower (seen with --trace-opt ` +
    `--trace-deopt, in a script without this library too); its ratio is what to read.`,
  run: (ctx, skipped) =>
    each(ctx, skipped, ["native", ...ctx.runtimes], async (who) => {
      const command = who === "native"
        ? [await nativeBinary("native_segment"), "throughput"]
        : childCommand(who, "throughput", "run");
      const { kernels } = await runJson<{ kernels: Kernels }>(command, {
        env: { SB_BENCH_TP_REPS: String(REPS) },
      });
      return Object.entries(kernels).flatMap(([what, k]) =>
        Object.entries(k).map(([metric, list]) => ({
          runtime: who,
          what,
          metric,
          value: round(median(list), 2),
        }))
      );
    }),
  compare: (ctx) =>
    ratios([
      "shared_gbps f64_sum / f64_sum:plain_gbps = f64_sum over a shared buffer: GB/s / a plain ArrayBuffer's",
      "shared_gbps u8_set / u8_set:plain_gbps = u8_set over a shared buffer: GB/s / a plain ArrayBuffer's",
    ], wheres(ctx.runtimes)).concat(ratios([
      "shared_gbps f64_sum / f64_sum:plain_gbps = f64_sum in Rust: shared / plain (the limit)",
      "shared_gbps u8_set / u8_set:plain_gbps = u8_set in Rust: shared / plain (the limit)",
    ], wheres(["native"]))),
  children: { run: throughputChild },
};
