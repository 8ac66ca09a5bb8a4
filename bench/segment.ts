/**
 * The core benchmarks of shared-buffer, in one runtime-neutral file:
 *
 * 1. **attach**: open + `.buffer` + `close()` of a 4 KiB and a 1 GiB segment that already exist
 *    and are populated, so that only the attach path is timed. The same run times the same system
 *    calls from Rust (`bench/native_segment.rs`) and the seed package (npm `shared-buffer@1.4.0`)
 *    in Node, and reports each one's 1 GiB / 4 KiB ratio and the project's ratio over the native
 *    one.
 * 2. **throughput**: a Float64Array sum and a 64 MiB `Uint8Array.set` over a 64 MiB shared buffer
 *    against a plain `ArrayBuffer`, as a shared / plain ratio.
 *
 * `deno run -A bench/segment.ts` is the driver: it makes the segments, runs every child (in
 * rounds, each in its own process) and prints one JSON object. The children are this file run as
 * `segment.ts attach` or `segment.ts throughput` under Deno and under Bun, the native benchmark
 * and `bench/seed/attach.mjs` under Node. Knobs (environment): `SB_BENCH_ROUNDS` (default 5),
 * `SB_BENCH_BLOCKS` (blocks per size and variant per round, default 8), `SB_BENCH_BLOCK_MS`
 * (default 10), `SB_BENCH_CPUS` (a `taskset -c` list for every child; default unpinned),
 * `NATIVE_SEGMENT_BIN`, `SB_SEED_STATUS` (why the seed is missing, from `run.sh`), `DENO`, `BUN`,
 * `NODE`.
 *
 * @module
 */

import { appendFileSync, existsSync, mkdirSync, rmSync } from "node:fs";
import process from "node:process";
import {
  calibrate,
  checkInterrupted,
  env,
  envInt,
  median,
  nativeBinary as nativeBinaryOf,
  placed,
  placement,
  progress,
  root,
  round,
  run,
  runtime,
  scriptCommand,
  timeBlock,
} from "./common.ts";

const entry = runtime === "bun" ? "../bun.ts" : "../mod.ts";
const lib: typeof import("../mod.ts") = await import(entry);
const { SharedMemory, SharedMemoryError, createSharedBuffer, detachSharedBuffer } = lib;

const SMALL = 4096;
const LARGE = 1 << 30;
const THROUGHPUT_BYTES = 64 << 20;
const GOAL_ATTACH = 1.2;
const GOAL_THROUGHPUT = 0.95;

/** Blocks of one variant on one segment size: the count per block and ns per call of each. */
interface Blocks {
  iters: number;
  ns_per_op: number[];
}

/** What an attach child prints. */
interface AttachResult {
  impl: string;
  version?: string;
  variants: Record<string, { small: Blocks; large: Blocks }>;
  handles_left?: number;
}

/** What a throughput child prints: GB/s of each repetition. */
interface ThroughputResult {
  impl: string;
  version: string;
  bytes: number;
  passes: number;
  kernels: Record<string, { shared_gbps: number[]; plain_gbps: number[] }>;
}

function version(): string {
  if (runtime === "bun") {
    return `bun ${(globalThis as unknown as { Bun: { version: string } }).Bun.version}`;
  }
  return `deno ${Deno.version.deno}`;
}

// ---- children ---------------------------------------------------------------------------------

function segmentIds(): { keys: [number, number]; names: [string, string] } {
  const need = (name: string) => {
    const value = env(name);
    if (value === undefined) throw new Error(`${name} is not set: run bench/segment.ts alone`);
    return value;
  };
  return {
    keys: [Number(need("SB_BENCH_KEY_SMALL")), Number(need("SB_BENCH_KEY_LARGE"))],
    names: [need("SB_BENCH_NAME_SMALL"), need("SB_BENCH_NAME_LARGE")],
  };
}

/**
 * Times each variant on both segments in alternating blocks of the same number of calls,
 * round-robin over variants.
 */
function timeVariants(
  variants: Record<string, [() => void, () => void]>,
): Record<string, { small: Blocks; large: Blocks }> {
  const blocks = envInt("SB_BENCH_BLOCKS", 8);
  const blockMs = envInt("SB_BENCH_BLOCK_MS", 10);
  const out: Record<string, { small: Blocks; large: Blocks }> = {};
  for (const [name, [small, large]] of Object.entries(variants)) {
    for (let i = 0; i < 500; i++) small(), large();
    // One count for both sizes, sized on the small one: both then spread any GC alike.
    const iters = calibrate(blockMs, small);
    out[name] = { small: { iters, ns_per_op: [] }, large: { iters, ns_per_op: [] } };
  }
  for (let b = 0; b < blocks; b++) {
    for (const [name, [small, large]] of Object.entries(variants)) {
      const r = out[name];
      const pairs: [Blocks, () => void][] = [[r.small, small], [r.large, large]];
      if (b % 2) pairs.reverse();
      for (const [into, op] of pairs) {
        into.ns_per_op.push(round(timeBlock(into.iters, op), 1));
      }
    }
  }
  return out;
}

function attachChild(): AttachResult {
  const { keys, names } = segmentIds();
  let sink = 0;
  const openKey = (key: number) => () => {
    const shm = SharedMemory.open({ key });
    sink += shm.buffer.byteLength;
    shm.close();
  };
  const openName = (name: string) => () => {
    const shm = SharedMemory.open({ name });
    sink += shm.buffer.byteLength;
    shm.close();
  };
  const openKeyView = (key: number) => () => {
    const shm = SharedMemory.open({ key });
    sink += shm.view(0, SMALL).byteLength;
    shm.close();
  };
  const seedApi = (key: number, size: number) => () => {
    const buffer = createSharedBuffer(key, size);
    sink += buffer.byteLength;
    detachSharedBuffer(buffer);
  };
  for (const [key, size] of [[keys[0], SMALL], [keys[1], LARGE]]) {
    const shm = SharedMemory.open({ key });
    if (shm.buffer.byteLength !== size) {
      throw new Error(`key ${key}: ${shm.buffer.byteLength} bytes, expected ${size}`);
    }
    shm.close();
  }
  const variants = timeVariants({
    key: [openKey(keys[0]), openKey(keys[1])],
    key_view: [openKeyView(keys[0]), openKeyView(keys[1])],
    name: [openName(names[0]), openName(names[1])],
    seed_api: [seedApi(keys[0], SMALL), seedApi(keys[1], LARGE)],
  });
  if (sink === 0) throw new Error("unreachable: keeps sink alive");
  return { impl: runtime, version: version(), variants, handles_left: lib.openHandleCount() };
}

function sum(values: Float64Array): number {
  let total = 0;
  for (let i = 0; i < values.length; i++) total += values[i];
  return total;
}

function throughputChild(): ThroughputResult {
  const reps = envInt("SB_BENCH_TP_REPS", 9);
  const passes = 3;
  let shm: import("../mod.ts").SharedMemory | undefined;
  for (let tries = 0; shm === undefined; tries++) {
    const key = 0x5b40_0000 + Math.floor(Math.random() * 0x3f_ffff);
    try {
      shm = SharedMemory.create({ key }, THROUGHPUT_BYTES, { populate: true });
      // The mapping stays until close(); removing the key now leaves nothing behind on a crash.
      shm.unlink();
    } catch (err) {
      if (!(err instanceof SharedMemoryError && err.code === "EEXIST") || tries > 100) throw err;
    }
  }
  try {
    const buffers = { shared: shm.buffer, plain: new ArrayBuffer(THROUGHPUT_BYTES) };
    // The copy source holds the same doubles as the targets, so the sum stays checkable.
    const source = new Uint8Array(THROUGHPUT_BYTES);
    let expected = 0;
    for (const buffer of [source.buffer, ...Object.values(buffers)]) {
      const f64 = new Float64Array(buffer);
      expected = 0;
      for (let i = 0; i < f64.length; i++) expected += f64[i] = i & 1023;
    }
    const kernels: Record<string, (buffer: ArrayBuffer) => void> = {
      f64_sum: (buffer) => {
        if (sum(new Float64Array(buffer)) !== expected) throw new Error("wrong sum");
      },
      u8_set: (buffer) => new Uint8Array(buffer).set(source),
    };
    const out: ThroughputResult["kernels"] = {};
    for (const [name, kernel] of Object.entries(kernels)) {
      out[name] = { shared_gbps: [], plain_gbps: [] };
      for (let i = 0; i < 3; i++) kernel(buffers.shared), kernel(buffers.plain);
    }
    for (let rep = 0; rep < reps; rep++) {
      for (const [name, kernel] of Object.entries(kernels)) {
        const order = (["shared", "plain"] as const).slice();
        if (rep % 2) order.reverse();
        for (const which of order) {
          const buffer = buffers[which];
          const start = performance.now();
          for (let p = 0; p < passes; p++) kernel(buffer);
          const seconds = (performance.now() - start) / 1e3;
          out[name][`${which}_gbps`].push(round((passes * THROUGHPUT_BYTES) / seconds / 1e9));
        }
      }
    }
    return { impl: runtime, version: version(), bytes: THROUGHPUT_BYTES, passes, kernels: out };
  } finally {
    shm.close();
  }
}

// ---- driver -----------------------------------------------------------------------------------

interface Segments {
  env: Record<string, string>;
  remove(): void;
}

/**
 * Keeps `bench/out/.segments` listing the segments this driver made (`key <n>` or `name <s>`
 * lines), so that `run.sh` can remove them if the driver is killed before it cleans up. Best
 * effort: without write permission nothing is recorded.
 */
function leftovers(action: "add" | "clear", id?: { key: number } | { name: string }): void {
  const file = `${root}/bench/out/.segments`;
  try {
    if (action === "clear") {
      rmSync(file, { force: true });
    } else if (id) {
      mkdirSync(`${root}/bench/out`, { recursive: true });
      appendFileSync(file, "key" in id ? `key ${id.key}\n` : `name ${id.name}\n`);
    }
  } catch {
    // No permission to write: the driver's own cleanup still runs.
  }
}

/** Creates, populates and unmaps the four segments under test; they stay until `remove()`. */
function makeSegments(): Segments {
  const made: ({ key: number } | { name: string })[] = [];
  const tag = `${process.pid}-${Math.random().toString(36).slice(2, 8)}`;
  const create = (id: { key: number } | { name: string }, size: number) => {
    const shm = SharedMemory.create(id, size, { populate: true });
    made.push(id);
    shm.close();
    leftovers("add", id);
  };
  const freshKey = (size: number) => {
    for (let tries = 0;; tries++) {
      const key = 0x5bc0_0000 + Math.floor(Math.random() * 0x3f_ffff);
      try {
        create({ key }, size);
        return key;
      } catch (err) {
        if (!(err instanceof SharedMemoryError && err.code === "EEXIST") || tries > 100) {
          throw err;
        }
      }
    }
  };
  const remove = () => {
    for (const id of made.splice(0)) {
      try {
        SharedMemory.unlink(id);
      } catch (err) {
        progress(`could not remove ${JSON.stringify(id)}: ${err}`);
      }
    }
    leftovers("clear");
  };
  try {
    const keySmall = freshKey(SMALL);
    const keyLarge = freshKey(LARGE);
    const nameSmall = `/sb-bench-${tag}-small`;
    const nameLarge = `/sb-bench-${tag}-large`;
    create({ name: nameSmall }, SMALL);
    create({ name: nameLarge }, LARGE);
    return {
      env: {
        SB_BENCH_KEY_SMALL: String(keySmall),
        SB_BENCH_KEY_LARGE: String(keyLarge),
        SB_BENCH_NAME_SMALL: nameSmall,
        SB_BENCH_NAME_LARGE: nameLarge,
      },
      remove,
    };
  } catch (err) {
    remove();
    throw err;
  }
}

/** The native benchmark's executable (`NATIVE_SEGMENT_BIN`, or built by cargo). */
function nativeBinary(): { path?: string; error?: string } {
  return nativeBinaryOf("native_segment", "NATIVE_SEGMENT_BIN");
}

function seedCommand(): { command?: string[]; error?: string } {
  const addon = `${root}/bench/seed/node_modules/shared-buffer/build/Release/shared-buffer.node`;
  if (!existsSync(addon)) {
    return { error: env("SB_SEED_STATUS") ?? `the seed package is not built (${addon} missing)` };
  }
  return { command: [env("NODE", "node"), "--expose-gc", `${root}/bench/seed/attach.mjs`] };
}

/** Parses a child's stdout: the last line that is a JSON object. */
function parseChild<T>(stdout: string): T {
  const line = stdout.trim().split("\n").filter((l) => l.startsWith("{")).pop();
  if (line === undefined) throw new Error(`no JSON in the output:\n${stdout.slice(0, 500)}`);
  return JSON.parse(line) as T;
}

interface VariantSummary {
  small_us: number;
  large_us: number;
  ratio: number;
  round_ratios: number[];
  mean_small_us: number;
  mean_large_us: number;
  mean_ratio: number;
  blocks: number;
}

/**
 * Per-call medians of each size, and the 1 GiB / 4 KiB ratio as the median over block pairs: the
 * two sizes' blocks run back to back, so each pair saw the same load on this shared machine.
 */
function summarize(runs: AttachResult[]): Record<string, VariantSummary> {
  const out: Record<string, VariantSummary> = {};
  const pairRatios = (r: AttachResult, name: string) => {
    const { small, large } = r.variants[name];
    return small.ns_per_op.map((ns, i) => large.ns_per_op[i] / ns);
  };
  for (const name of Object.keys(runs[0].variants)) {
    const small = runs.flatMap((r) => r.variants[name].small.ns_per_op);
    const large = runs.flatMap((r) => r.variants[name].large.ns_per_op);
    // Blocks of one variant have the same count for both sizes, so the mean over blocks is the
    // total time over the total calls: it keeps the occasional GC-heavy block that medians drop.
    const mean = (values: number[]) => values.reduce((a, b) => a + b, 0) / values.length / 1e3;
    out[name] = {
      small_us: round(median(small) / 1e3),
      large_us: round(median(large) / 1e3),
      ratio: round(median(runs.flatMap((r) => pairRatios(r, name)))),
      round_ratios: runs.map((r) => round(median(pairRatios(r, name)))),
      mean_small_us: round(mean(small)),
      mean_large_us: round(mean(large)),
      mean_ratio: round(mean(large) / mean(small)),
      blocks: small.length,
    };
  }
  return out;
}

type Impl = "native" | "deno" | "bun" | "node_seed";

/** Runs the throughput child of each runtime and the native one `rounds` times, pooled. */
function throughputRounds(rounds: number, nativeBin?: string): Record<string, unknown> {
  const pooled: Record<string, ThroughputResult> = {};
  const failed: Record<string, string> = {};
  const commands: Record<string, string[]> = {
    deno: scriptCommand("deno", "segment.ts", ["throughput"]),
    bun: scriptCommand("bun", "segment.ts", ["throughput"]),
  };
  if (nativeBin) commands.native = [nativeBin, "throughput"];
  else failed.native = "the native benchmark could not be built";
  const order = Object.keys(commands);
  for (let r = 0; r < rounds; r++) {
    const turn = [...order.slice(r % order.length), ...order.slice(0, r % order.length)];
    for (const which of turn) {
      if (failed[which]) continue;
      progress(`throughput round ${r + 1}/${rounds}: ${which}`);
      const result = run(placed(commands[which]));
      checkInterrupted(result);
      if (result.error) {
        failed[which] = result.error;
        continue;
      }
      const parsed = parseChild<ThroughputResult>(result.stdout);
      const into = pooled[which];
      if (!into) {
        pooled[which] = parsed;
        continue;
      }
      for (const [name, k] of Object.entries(parsed.kernels)) {
        into.kernels[name].shared_gbps.push(...k.shared_gbps);
        into.kernels[name].plain_gbps.push(...k.plain_gbps);
      }
    }
  }
  const out: Record<string, unknown> = {};
  const nativeRatio: Record<string, number> = {};
  for (const which of ["native", "deno", "bun"]) {
    if (failed[which] || !pooled[which]) {
      out[which] = { skipped: failed[which] ?? "no runs" };
      continue;
    }
    const kernels: Record<string, unknown> = {};
    for (const [name, k] of Object.entries(pooled[which].kernels)) {
      const shared = median(k.shared_gbps);
      const plain = median(k.plain_gbps);
      const ratio = shared / plain;
      const pairs = k.shared_gbps.map((s, i) => s / k.plain_gbps[i]);
      const summary: Record<string, unknown> = {
        shared_gbps: round(shared, 2),
        plain_gbps: round(plain, 2),
        ratio: round(ratio),
        pair_ratios: {
          median: round(median(pairs)),
          min: round(Math.min(...pairs)),
          max: round(Math.max(...pairs)),
          n: pairs.length,
        },
      };
      if (which === "native") {
        nativeRatio[name] = ratio;
      } else {
        if (nativeRatio[name] !== undefined) {
          summary.over_native_ratio = round(ratio / nativeRatio[name]);
        }
        summary.goal_met = ratio >= GOAL_THROUGHPUT;
      }
      kernels[name] = summary;
    }
    out[which] = { version: pooled[which].version, passes: pooled[which].passes, ...kernels };
  }
  return out;
}

function driver(): unknown {
  const rounds = envInt("SB_BENCH_ROUNDS", 5);
  const commands: Partial<Record<Impl, string[]>> = {};
  const skipped: Partial<Record<Impl, string>> = {};
  const native = nativeBinary();
  if (native.path) commands.native = [native.path];
  else skipped.native = native.error;
  commands.deno = scriptCommand("deno", "segment.ts", ["attach"]);
  commands.bun = scriptCommand("bun", "segment.ts", ["attach"]);
  const seed = seedCommand();
  if (seed.command) commands.node_seed = seed.command;
  else skipped.node_seed = seed.error;

  progress("creating and populating the 4 KiB and 1 GiB segments (keyed and named)");
  const segments = makeSegments();
  const childEnv = {
    ...segments.env,
    SB_BENCH_BLOCKS: String(envInt("SB_BENCH_BLOCKS", 8)),
    SB_BENCH_BLOCK_MS: String(envInt("SB_BENCH_BLOCK_MS", 10)),
  };
  const runs: Partial<Record<Impl, AttachResult[]>> = {};
  const versions: Partial<Record<Impl, string>> = {};
  const throughput: Record<string, unknown> = {};
  try {
    const order = Object.keys(commands) as Impl[];
    for (let r = 0; r < rounds; r++) {
      // Rotate the order each round so that no implementation always runs first or last.
      const turn = [...order.slice(r % order.length), ...order.slice(0, r % order.length)];
      for (const impl of turn) {
        if (skipped[impl]) continue;
        progress(`attach round ${r + 1}/${rounds}: ${impl}`);
        const result = run(placed(commands[impl]!), childEnv);
        checkInterrupted(result);
        if (result.error) {
          skipped[impl] = `round ${r + 1} failed: ${result.error}`;
          delete runs[impl];
          continue;
        }
        const parsed = parseChild<AttachResult>(result.stdout);
        if (parsed.handles_left) {
          skipped[impl] = `left ${parsed.handles_left} handles open: the benchmark is wrong`;
          continue;
        }
        (runs[impl] ??= []).push(parsed);
        if (parsed.version) versions[impl] = parsed.version;
      }
    }
  } finally {
    segments.remove();
  }
  Object.assign(throughput, throughputRounds(rounds, native.path));

  const results: Record<string, unknown> = {};
  const summaries: Partial<Record<Impl, Record<string, VariantSummary>>> = {};
  for (const impl of ["native", "deno", "bun", "node_seed"] as const) {
    const list = runs[impl];
    if (skipped[impl] || !list?.length) {
      results[impl] = { skipped: skipped[impl] ?? "no runs" };
      continue;
    }
    summaries[impl] = summarize(list);
    results[impl] = { version: versions[impl], ...summaries[impl] };
  }
  const goal: Record<string, unknown> = {};
  const reference = {
    key: "raw_key",
    key_view: "raw_key",
    seed_api: "raw_key",
    seed_key: "raw_key",
    seed_key_gc: "raw_key",
    name: "raw_name",
  };
  const nat = summaries.native;
  for (const impl of ["deno", "bun", "node_seed"] as const) {
    const mine = summaries[impl];
    if (!mine || !nat) continue;
    for (const [variant, s] of Object.entries(mine)) {
      const ref = nat[reference[variant as keyof typeof reference]];
      if (!ref) continue;
      const quotient = s.ratio / ref.ratio;
      goal[`${impl}.${variant}`] = {
        ratio: s.ratio,
        native_ratio: ref.ratio,
        native_variant: reference[variant as keyof typeof reference],
        quotient: round(quotient),
        round_quotients: s.round_ratios.map((r, i) => round(r / ref.round_ratios[i])),
        overhead_small_us: round(s.small_us - ref.small_us),
        goal_met: impl === "node_seed" ? null : quotient <= GOAL_ATTACH,
      };
    }
  }
  return {
    section: "segment",
    placement: placement(),
    attach: {
      what:
        "open + .buffer + close() of an existing, populated segment; no page touched. Each process times blocks of the same number of calls for both sizes, alternating. small_us / large_us: medians over blocks of the per-call time; ratio: median over back-to-back block pairs of 1 GiB / 4 KiB; round_ratios: the same per process (round); mean_*: total time over total calls (keeps GC-heavy blocks); goal quotient = ratio / the native libc ratio",
      variants: {
        "native.raw_key": "libc shmget(key,0,0) + shmctl(IPC_STAT) + shmat + shmdt",
        "native.raw_name": "libc shm_open + fstat + mmap + close + munmap",
        "native.segment_key": "shared_buffer::Segment::open(key) + drop",
        "native.segment_name": "shared_buffer::Segment::open(name) + drop",
        key: "SharedMemory.open({ key }) + .buffer + close()",
        key_view:
          "SharedMemory.open({ key }) + .view(0, 4096) + close(): the whole segment mapped, a 4 KiB ArrayBuffer made",
        name: "SharedMemory.open({ name }) + .buffer + close()",
        seed_api: "createSharedBuffer(key, size) + detachSharedBuffer(buffer)",
        "node_seed.seed_key":
          "npm shared-buffer@1.4.0 in Node: createSharedBuffer(key, size) (shmget + shmat, no IPC_STAT) + detachSharedBuffer, which does not unmap: shmdt runs in GC, forced between blocks outside the timing",
        "node_seed.seed_key_gc":
          "the same with the forced full GC that unmaps the block's buffers inside the timing (amortized over the block)",
      },
      small_bytes: SMALL,
      large_bytes: LARGE,
      rounds,
      blocks_per_round: envInt("SB_BENCH_BLOCKS", 8),
      block_ms: envInt("SB_BENCH_BLOCK_MS", 10),
      results,
      goal: {
        target:
          `ratio / native ratio <= ${GOAL_ATTACH} (the same-kind libc variant is the native reference)`,
        ...goal,
      },
    },
    throughput: {
      what:
        "Float64Array sum and Uint8Array.set (64 MiB copied in) over a 64 MiB shared buffer (SharedMemory.create, populated) vs new ArrayBuffer (touched once); GB/s medians over timed repetitions of a few passes, shared and plain alternating, pooled over rounds (one process per runtime and round); pair_ratios are shared/plain of back-to-back pairs. native: the same kernels in Rust (sum of f64s, memcpy) over a populated keyed segment vs a heap Vec, the limit the runtimes can reach",
      bytes: THROUGHPUT_BYTES,
      rounds,
      target: `shared / plain >= ${GOAL_THROUGHPUT}`,
      ...throughput,
    },
  };
}

const mode = process.argv[2] ?? "driver";
if (mode === "attach") {
  console.log(JSON.stringify(attachChild()));
} else if (mode === "throughput") {
  console.log(JSON.stringify(throughputChild()));
} else if (mode === "driver") {
  console.log(JSON.stringify(driver(), null, 2));
} else {
  throw new Error(`unknown mode ${mode}: use attach, throughput or nothing (driver)`);
}
