/**
 * Wait/notify round trips between two processes, by placement, with the CPU both sides use per
 * round trip: `wait`/`notify` parking at once, spin-then-park, and `waitAsync` on the measuring
 * side; against the runtime's Unix socket (8-byte messages), `Atomics.wait`/`notify` between two
 * Workers of one process, and the Rust futex ping-pong (`native_wait`).
 *
 * @module
 */

import process from "node:process";
import {
  childCommand,
  type Compare,
  cpuNs,
  lib,
  nativeBinary,
  pinned,
  type Placement,
  PLACEMENTS,
  roundTrips,
  type Row,
  rows,
  runJson,
  type Runtime,
  runtime,
  type Scenario,
  start,
  uniqueName,
} from "../harness.ts";
import { pairs } from "./channel.ts";

const N = 2000;
const WARMUP = 300;
/** The spin count of the spin-then-park variant, as the Rust side's default. */
const SPINS = 256;
// Words of the ping-pong segment.
const [PING, PONG, READY, PID] = [0, 1, 2, 3];
const STOP = -1;

type Variant = "park" | "spin" | "async";

function openWords(name: string) {
  const shm = lib.SharedMemory.open({ name });
  return { v: new Int32Array(shm.buffer, 0, 16), shm };
}

/** The echo side: answers every ping until STOP. */
function echo({ name, variant }: { name: string; variant: Variant }): void {
  const { v, shm } = openWords(name);
  const options = variant === "spin" ? { spin: SPINS } : undefined;
  Atomics.store(v, PID, process.pid);
  Atomics.store(v, READY, 1);
  lib.notify(v, READY);
  for (let last = 0;;) {
    const now = Atomics.load(v, PING);
    if (now === last) {
      lib.wait(v, PING, last, undefined, options);
      continue;
    }
    if (now === STOP) break;
    last = now;
    Atomics.store(v, PONG, now);
    lib.notify(v, PONG, 1);
  }
  shm.close();
}

/** The measuring side: times the round trips, waiting synchronously or with waitAsync. */
async function leader({ name, variant }: { name: string; variant: Variant }) {
  const { v, shm } = openWords(name);
  const options = variant === "spin" ? { spin: SPINS } : undefined;
  const deadline = performance.now() + 30_000;
  while (Atomics.load(v, READY) === 0) {
    if (performance.now() > deadline) throw new Error("the echo process never became ready");
    lib.wait(v, READY, 0, 100);
  }
  const latency = await roundTrips(N, WARMUP, async (i) => {
    Atomics.store(v, PING, i + 1);
    lib.notify(v, PING, 1);
    for (let now = Atomics.load(v, PONG); now !== i + 1; now = Atomics.load(v, PONG)) {
      if (variant === "async") await lib.waitAsync(v, PONG, now);
      else lib.wait(v, PONG, now, undefined, options);
    }
  }, Atomics.load(v, PID));
  Atomics.store(v, PING, STOP);
  lib.notify(v, PING);
  shm.close();
  return latency;
}

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
    return await roundTrips(N, WARMUP, async (i) => {
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
    const samples = Float64Array.from(lead!.elapsed_ms).sort();
    return {
      median_us: Math.round(samples[N >> 1] * 1e5) / 100,
      p99_us: Math.round(samples[Math.floor(N * 0.99)] * 1e5) / 100,
      // The whole process (both Workers and the main thread) over warm-up and timed trips.
      cpu_us: Math.round((cpuNs() - cpu0) / (N + WARMUP) / 10) / 100,
    };
  } finally {
    for (const w of started) w.terminate();
  }
}

/** One futex pair: the echo on the peer CPU, the measuring side on CPU 0. */
async function futexPair(rt: Runtime, placement: Placement, variant: Variant) {
  const name = `/${uniqueName("wait")}`;
  using _shm = lib.SharedMemory.create({ name }, 4096);
  try {
    const args = { name, variant };
    const peer = start(pinned(PLACEMENTS[placement].peer, childCommand(rt, "wait", "echo", args)));
    try {
      return await runJson<Record<string, number>>(
        pinned(PLACEMENTS[placement].measuring, childCommand(rt, "wait", "leader", args)),
      );
    } finally {
      await peer.done.catch(() => peer.kill());
    }
  } finally {
    lib.SharedMemory.unlink({ name });
  }
}

/** What native_wait prints (the parts used here). */
type NativeWait = Record<
  "park" | "spin_then_park" | "async_service",
  { median_ns: number; p99_ns: number }
>;

const LOOP = "wait/notify blocks the thread; the socket side runs an async event loop";

/** The ratios the report shows (see the channel scenario's list for the fields). */
const RATIOS: [string, string, string, string, boolean?][] = [
  ["median_us", "park", "socket", "round trip: wait/notify (park) / Unix socket", true],
  ["median_us", "park", "native.park", "round trip: wait/notify (park) / Rust futex"],
  ["median_us", "native.park", "socket", "round trip: Rust futex / Unix socket"],
  ["median_us", "spin", "socket", "round trip: spin-then-park / Unix socket", true],
  ["median_us", "spin", "native.spin", "round trip: spin-then-park / Rust spin-then-park"],
  ["median_us", "async", "socket", "round trip: waitAsync / Unix socket"],
  ["median_us", "async", "native.async", "round trip: waitAsync / Rust async service"],
  ["median_us", "park", "workers", "round trip: wait/notify (park) / Atomics between Workers"],
  ["median_us", "async", "posted", "round trip: waitAsync / a Worker's postMessage"],
  ["cpu_us", "park", "socket", "CPU per round trip: wait/notify (park) / Unix socket", true],
  ["cpu_us", "spin", "park", "CPU per round trip: spin-then-park / park"],
];

/** The scenario. */
export const wait: Scenario = {
  name: "wait",
  method: `Round trips between two processes through one 4 KiB segment (word 0 ping, word 1 ` +
    `pong): the measuring side (CPU 0) stores and notifies, the echo side answers; ${N} timed ` +
    `after ${WARMUP} untimed, each timed with performance.now(). park: wait/notify parking at ` +
    `once; spin: wait with { spin: ${SPINS} } on both sides; async: waitAsync on the measuring ` +
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
        for (const variant of ["park", "spin", "async"] as const) {
          try {
            out.push(...rows({ ...base, what: variant }, await futexPair(rt, placement, variant)));
          } catch (err) {
            skipped(`${placement} ${rt} ${variant}`, err);
          }
        }
        try {
          const plan = { transport: "socket", size: 8, stream: false, trips: N };
          const [got] = await pairs(rt, "channel", placement, [plan]);
          if ("error" in got) throw new Error(got.error);
          out.push(...rows({ ...base, what: "socket" }, got.latency!));
        } catch (err) {
          skipped(`${placement} ${rt} socket`, err);
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
        for (
          const [what, from] of [["park", "park"], ["spin", "spin_then_park"], [
            "async",
            "async_service",
          ]] as const
        ) {
          const { median_ns, p99_ns } = got[from];
          out.push(...rows({ runtime: "native", what, placement }, {
            median_us: median_ns / 1e3,
            p99_us: p99_ns / 1e3,
          }));
        }
      } catch (err) {
        skipped(`${placement} native`, err);
      }
    }
    return out;
  },
  compare: (ctx) =>
    ctx.placements.flatMap((placement) =>
      ctx.runtimes.flatMap((rt) =>
        RATIOS.map(([metric, num, den, label, loop]): Compare => {
          const side = (w: string) => {
            const [runtime, what] = w.includes(".") ? w.split(".") : [rt, w];
            return { runtime, what, placement, metric };
          };
          return { label, num: side(num), den: side(den), note: loop ? LOOP : undefined };
        })
      )
    ),
  children: { echo, leader, workers, posted },
};
