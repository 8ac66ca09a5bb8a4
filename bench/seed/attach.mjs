// The anchor of the attach benchmark: the seed package (npm `shared-buffer@1.4.0`, a node-gyp
// addon) in Node attaching the segments that bench/scenarios/attach.ts made, timed as the other children
// are and printed in the same JSON shape (see bench/scenarios/attach.ts).
//
// The seed's createSharedBuffer(key, size) is shmget(key, size, 0666) + shmat, without IPC_STAT.
// Its detachSharedBuffer does not unmap: shmdt runs when the buffer is garbage-collected, so a
// full GC (node --expose-gc) is forced after every block, outside the timed part, to keep the
// mappings from piling up: variant seed_key leaves that GC (and so the unmap) out of the timing,
// seed_key_gc includes it.

import { createRequire } from "node:module";
import process from "node:process";

// SEED_PACKAGE (a folder) or a relative path: the bare name would resolve to this repository's own package.json, which is
// also called "shared-buffer".
const require = createRequire(import.meta.url);
const { createSharedBuffer, detachSharedBuffer } = require(
  process.env.SEED_PACKAGE ?? "./node_modules/shared-buffer",
);

const SMALL = 4096;
const LARGE = 1 << 30;

function envInt(name, fallback) {
  const value = Number.parseInt(process.env[name] ?? "", 10);
  return Number.isFinite(value) ? value : fallback;
}

function need(name) {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set: run bench/run.ts attach`);
  return Number(value);
}

const gc = globalThis.gc;
if (typeof gc !== "function") throw new Error("run with node --expose-gc");

const blocks = envInt("SB_BENCH_BLOCKS", 8);
const blockMs = envInt("SB_BENCH_BLOCK_MS", 10);
const keys = [need("SB_BENCH_KEY_SMALL"), need("SB_BENCH_KEY_LARGE")];

let sink = 0;
const attach = (key, size) => () => {
  const buffer = createSharedBuffer(key, size);
  sink += buffer.byteLength;
  detachSharedBuffer(buffer);
};
const small = attach(keys[0], SMALL);
const large = attach(keys[1], LARGE);

function timeBlock(iters, op, gcInside) {
  const start = performance.now();
  for (let i = 0; i < iters; i++) op();
  if (gcInside) gc();
  const ns = ((performance.now() - start) * 1e6) / iters;
  if (!gcInside) gc();
  return Math.round(ns * 10) / 10;
}

function calibrate(op) {
  for (let iters = 16;; iters *= 4) {
    const start = performance.now();
    for (let i = 0; i < iters; i++) op();
    const spent = performance.now() - start;
    gc();
    if (spent >= blockMs / 4 || iters >= 1 << 16) {
      // Each call leaves a mapping until GC; stay well under vm.max_map_count (65530).
      return Math.min(30000, Math.max(16, Math.round((iters * blockMs) / Math.max(spent, 1e-3))));
    }
  }
}

for (let i = 0; i < 500; i++) small(), large();
gc();
// One count for both sizes, so that the per-block GC of seed_key_gc is spread alike.
const count = calibrate(small);
const iters = [count, count];
// seed_key leaves the GC (and so the shmdt) out of the timing; seed_key_gc times one forced full
// GC per block with it, which unmaps the block's buffers: the seed's whole cycle, amortized.
const variants = {};
for (const name of ["seed_key", "seed_key_gc"]) {
  variants[name] = {
    small: { iters: iters[0], ns_per_op: [] },
    large: { iters: iters[1], ns_per_op: [] },
  };
}
for (let b = 0; b < blocks; b++) {
  for (const [name, out] of Object.entries(variants)) {
    const pairs = [[out.small, small], [out.large, large]];
    if (b % 2) pairs.reverse();
    for (const [into, op] of pairs) {
      into.ns_per_op.push(timeBlock(into.iters, op, name === "seed_key_gc"));
    }
  }
}
if (sink === 0) throw new Error("unreachable: keeps sink alive");
console.log(
  JSON.stringify({
    impl: "node_seed",
    version: `node ${process.version}`,
    variants,
  }),
);
