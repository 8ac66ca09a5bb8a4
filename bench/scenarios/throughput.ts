/**
 * Throughput: a Float64Array sum and a 64 MiB `Uint8Array.set` over a 64 MiB shared buffer
 * against a plain `ArrayBuffer`, in each runtime and in Rust (`native_segment throughput`).
 *
 * @module
 */

import type { SharedMemory as SharedMemoryType } from "../../mod.ts";
import {
  childCommand,
  type Compare,
  lib,
  median,
  nativeBinary,
  round,
  type Row,
  runJson,
  type Scenario,
} from "../harness.ts";

const BYTES = 64 << 20;
const PASSES = 3;
const REPS = 7;

/** GB/s of each repetition, per kernel and buffer, as the Rust anchor prints them too. */
type Kernels = Record<string, { shared_gbps: number[]; plain_gbps: number[] }>;

function throughputChild(): { kernels: Kernels } {
  const { SharedMemory, SharedMemoryError } = lib;
  let shm: SharedMemoryType | undefined;
  for (let tries = 0; shm === undefined; tries++) {
    const key = 0x5b40_0000 + Math.floor(Math.random() * 0x3f_ffff);
    try {
      shm = SharedMemory.create({ key }, BYTES, { populate: true });
      shm.unlink(); // the mapping stays; nothing is left behind on a crash
    } catch (err) {
      if (!(err instanceof SharedMemoryError && err.code === "EEXIST") || tries > 100) throw err;
    }
  }
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
    const out: Kernels = {};
    for (const [name, kernel] of Object.entries(kernels)) {
      out[name] = { shared_gbps: [], plain_gbps: [] };
      for (let i = 0; i < 3; i++) kernel(buffers.shared), kernel(buffers.plain);
    }
    for (let rep = 0; rep < REPS; rep++) {
      for (const [name, kernel] of Object.entries(kernels)) {
        for (const which of rep % 2 ? ["plain", "shared"] as const : ["shared", "plain"] as const) {
          const start = performance.now();
          for (let p = 0; p < PASSES; p++) kernel(buffers[which]);
          const gbps = (PASSES * BYTES) / ((performance.now() - start) / 1e3) / 1e9;
          out[name][`${which}_gbps`].push(gbps);
        }
      }
    }
    return { kernels: out };
  } finally {
    shm.close();
  }
}

/** The scenario. */
export const throughput: Scenario = {
  name: "throughput",
  method: `Float64Array sum and Uint8Array.set (64 MiB copied in) over a 64 MiB shared buffer ` +
    `(SharedMemory.create, populated) against new ArrayBuffer (touched once); GB/s medians over ` +
    `${REPS} repetitions of ${PASSES} passes, shared and plain alternating. native: the same ` +
    `kernels in Rust over a populated keyed segment against a heap Vec.`,
  async run(ctx, skipped) {
    const out: Row[] = [];
    const jobs = [
      ["native", async () => [await nativeBinary("native_segment"), "throughput"]] as const,
      ...ctx.runtimes.map((rt) => [rt, () => childCommand(rt, "throughput", "run")] as const),
    ];
    for (const [who, command] of ctx.run % 2 ? jobs.reverse() : jobs) {
      try {
        const { kernels } = await runJson<{ kernels: Kernels }>(await command(), {
          env: { SB_BENCH_TP_REPS: String(REPS) },
        });
        for (const [what, k] of Object.entries(kernels)) {
          for (const [metric, list] of Object.entries(k)) {
            out.push({ runtime: who, what, metric, value: round(median(list), 2) });
          }
        }
      } catch (err) {
        skipped(who, err);
      }
    }
    return out;
  },
  compare: (ctx) =>
    ctx.runtimes.flatMap((rt): Compare[] =>
      ["f64_sum", "u8_set"].map((what) => ({
        label: `${what} over a shared buffer: GB/s / a plain ArrayBuffer's`,
        num: { runtime: rt, what, metric: "shared_gbps" },
        den: { runtime: rt, what, metric: "plain_gbps" },
      }))
    ).concat(["f64_sum", "u8_set"].map((what) => ({
      label: `${what} in Rust: shared / plain (the limit)`,
      num: { runtime: "native", what, metric: "shared_gbps" },
      den: { runtime: "native", what, metric: "plain_gbps" },
    }))),
  children: { run: throughputChild },
};
