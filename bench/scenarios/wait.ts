/**
 * Wait/notify round trips between two processes, by placement, with the CPU both sides use per
 * round trip: `wait`/`notify` parking at once, spin-then-park (a fixed spin and an adaptive one),
 * and `waitAsync` on the measuring
 * side; against the runtime's Unix socket (8-byte messages), `Atomics.wait`/`notify` between two
 * Workers of one process, and the Rust futex ping-pong (`native_wait`).
 *
 * @module
 */

import {
  childCommand,
  cpuNs,
  nativeBinary,
  pinned,
  ratios,
  round,
  roundTrips,
  type Row,
  rows,
  runJson,
  runtime,
  type Scenario,
  wheres,
} from "../harness.ts";
import { pairRows } from "../streams.ts";

/** The pairs (`bench/streams.ts`): wait/notify four ways, and the Unix socket with 8-byte messages. */
const PAIRS = ["futex_park", "futex_spin", "futex_adaptive", "futex_async", "socket"];
/**
 * Round trips: at most 2000 (as the Rust ping-pong's), timed for at most 500 ms, after 1 s
 * untimed. The untimed part is long enough for the engines' optimizing compilers: on one core,
 * 2500 untimed round trips (20 ms) left Node's at 8.0 µs where 20,000 gave 6.9 µs; after 100 ms
 * Bun's compiler threads were still at work, on the same core, through the 2000 timed ones (8-9
 * µs of their CPU per round trip in each process, at load average 6); and after 400 ms Bun's
 * adaptive wait still cost 23-32 µs of CPU per round trip against 13-16 for parking at once,
 * 9-11 against 8-11 after 1 s. The Rust side needs no such warm-up.
 */
const TRIPS = { ms: 500, max: 2000, warmMs: 1000 };
/** Round trips of the Workers and of the Rust ping-pong, and untimed ones before them. */
const N = 2000;
const WARMUP = 300;

/** `wait_worker.ts` as a web Worker, or in Node.js (which has none) a `worker_threads` one. */
async function startWorker(): Promise<{
  /** Resolves with the next message the Worker posts. */
  next(): Promise<unknown>;
  postMessage(message: unknown): void;
  terminate(): void;
}> {
  if (runtime === "node") {
    const { Worker: NodeWorker } = await import("node:worker_threads");
    const w = new NodeWorker(new URL("./wait_worker.js", import.meta.url));
    let waiting: { resolve(m: unknown): void; reject(e: Error): void } | undefined;
    w.on("message", (m) => waiting?.resolve(m));
    w.on("error", (e) => waiting?.reject(e));
    return {
      next: () => new Promise((resolve, reject) => (waiting = { resolve, reject })),
      postMessage: (message) => w.postMessage(message),
      terminate: () => void w.terminate(),
    };
  }
  const w = new Worker(new URL("./wait_worker.ts", import.meta.url).href, { type: "module" });
  return {
    next: () =>
      new Promise((resolve, reject) => {
        w.onmessage = (e) => resolve(e.data);
        w.onerror = (e) => (e.preventDefault?.(), reject(new Error(e.message)));
      }),
    postMessage: (message) => w.postMessage(message),
    terminate: () => w.terminate(),
  };
}

/** Round trips of a number posted to a Worker and posted back (`postMessage`). */
async function posted() {
  const w = await startWorker();
  try {
    return await roundTrips(TRIPS, async (i) => {
      const back = w.next();
      w.postMessage(i);
      if (await back !== i) throw new Error(`the Worker answered ${i} wrongly`);
    });
  } finally {
    w.terminate();
  }
}

/** Two Workers of one process ping-ponging with Atomics.wait/notify on a SharedArrayBuffer. */
async function workers() {
  const sab = new SharedArrayBuffer(64);
  const started = await Promise.all([startWorker(), startWorker()]);
  try {
    const done = started.map((w) => w.next() as Promise<{ elapsed_ms: number[] } | null>);
    const cpu0 = cpuNs();
    started[1].postMessage({ role: "echo", sab });
    started[0].postMessage({ role: "leader", sab, n: N, warmup: WARMUP });
    const [lead] = await Promise.all(done);
    const us = Float64Array.from(lead!.elapsed_ms, (ms) => ms * 1e3).sort();
    return {
      median_us: round(us[N >> 1], 2),
      p99_us: round(us[Math.floor(N * 0.99)], 2),
      // The whole process (both Workers and the main thread) over warm-up and timed trips.
      cpu_us: round((cpuNs() - cpu0) / 1e3 / (N + WARMUP), 2),
    };
  } finally {
    for (const w of started) w.terminate();
  }
}

/** What native_wait prints (the parts used here). */
type NativeWait = Record<
  "park" | "spin_then_park" | "async_service",
  { median_ns: number; p99_ns: number }
>;

const LOOP = "wait/notify blocks the thread; the socket side runs an async event loop";

/** The ratios the report shows, for each runtime and placement (see {@linkcode ratios}). */
const RATIOS = [
  "median_us park / socket = round trip: wait/notify (park) / Unix socket !",
  "median_us park / native.park = round trip: wait/notify (park) / Rust futex",
  "median_us native.park / socket = round trip: Rust futex / Unix socket",
  "median_us spin / socket = round trip: spin-then-park / Unix socket !",
  "median_us spin / native.spin = round trip: spin-then-park / Rust spin-then-park",
  "median_us adaptive / park = round trip: wait/notify (adaptive spin) / park",
  "median_us adaptive / native.spin = round trip: wait/notify (adaptive spin) / Rust spin-then-park",
  "median_us async / socket = round trip: waitAsync / Unix socket",
  "median_us async / native.async = round trip: waitAsync / Rust async service",
  "median_us park / workers = round trip: wait/notify (park) / Atomics between Workers",
  "median_us async / posted = round trip: waitAsync / a Worker's postMessage",
  "cpu_us park / socket = CPU per round trip: wait/notify (park) / Unix socket !",
  "cpu_us spin / park = CPU per round trip: spin-then-park / park",
  "cpu_us adaptive / park = CPU per round trip: wait/notify (adaptive spin) / park",
];

/** The scenario. */
export const wait: Scenario = {
  name: "wait",
  method: `Round trips between two processes through one 4 KiB segment (word 0 ping, word 1 ` +
    `pong): the measuring side (CPU 0) stores and notifies, the echo side answers; ` +
    `${TRIPS.max} (at most ${TRIPS.ms} ms of them) after ${TRIPS.warmMs} ms untimed (Workers: ${N} after ${WARMUP}), each timed with performance.now(). park: wait/notify parking at ` +
    `once; spin: wait with { spin: 256 } on both sides; adaptive: wait with { spin: ` +
    `"adaptive" } on both sides; async: waitAsync on the measuring ` +
    `side. socket: the runtime's Unix socket, 8-byte messages (async loop). workers: ` +
    `Atomics.wait/notify between two Workers of one process (process on CPU 0 for same, ` +
    `unpinned threads for split). posted: a number posted to a Worker and posted back ` +
    `(postMessage, the event loop on both threads). cpu_us: CPU of both processes (workers: the whole process) ` +
    `per round trip, from /proc/<pid>/task/*/schedstat. native: native_wait, the Rust futex ` +
    `ping-pong (park, spin-then-park, async service), pinned by sched_setaffinity.`,
  async run(ctx, skipped) {
    const out: Row[] = [];
    for (const placement of ctx.placements) {
      for (const rt of ctx.runtimes) {
        const base = { runtime: rt, placement };
        const plans = PAIRS.map((transport) => ({ transport, size: 8, trips: TRIPS }));
        // One row per variant and placement, as the Workers' and Rust's: no size.
        for (const { size: _, what, ...row } of await pairRows(rt, placement, plans, skipped)) {
          out.push({ ...row, what: what.replace("futex_", "") });
        }
        for (const what of ["workers", "posted"] as const) {
          try {
            const cpus = placement === "same" ? "0" : "0,1";
            const got = await runJson<object>(pinned(cpus, childCommand(rt, "wait", what)));
            out.push(...rows({ ...base, what }, got));
          } catch (err) {
            skipped(`${placement} ${rt} ${what}`, err);
          }
        }
      }
      try {
        const bin = await nativeBinary("native_wait");
        const got = await runJson<NativeWait>([bin, "--pin", placement, "--n", String(N)]);
        const names = { park: "park", spin: "spin_then_park", async: "async_service" } as const;
        for (const [what, from] of Object.entries(names)) {
          const { median_ns, p99_ns } = got[from];
          const base = { runtime: "native", what, placement };
          out.push(...rows(base, { median_us: median_ns / 1e3, p99_us: p99_ns / 1e3 }));
        }
      } catch (err) {
        skipped(`${placement} native`, err);
      }
    }
    return out;
  },
  compare: (ctx) => ratios(RATIOS, wheres(ctx.runtimes, undefined, ctx.placements), LOOP),
  children: { workers, posted },
};
