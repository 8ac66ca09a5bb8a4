/**
 * One side of the in-process reference for `bench/wait.ts`: `Atomics.wait` / `Atomics.notify`
 * ping-pong between two Workers of one process over a SharedArrayBuffer, the same protocol as the
 * cross-process variants (word 0 ping, word 1 pong, word 2 "echo ready", ping -1 stops).
 *
 * Message in: `{ role: "leader" | "echo", sab, n, warmup, cpu }`. Each Worker first pins its own
 * thread to `cpu` (null: leave it where the process's taskset put it). The leader answers with
 * `{ stats, timer, pinned }`, the echo with `{ done: true, pinned }`.
 *
 * @module
 */

import { latencyStats, pinThread, timerCost } from "./wait_lib.ts";

interface Start {
  role: "leader" | "echo";
  sab: SharedArrayBuffer;
  n: number;
  warmup: number;
  cpu: number | null;
}

const PING = 0;
const PONG = 1;
const READY = 2;
const STOP = -1;

const scope = globalThis as unknown as {
  onmessage: ((event: MessageEvent<Start>) => void) | null;
  postMessage(message: unknown): void;
  close(): void;
};

function echo(v: Int32Array): void {
  Atomics.store(v, READY, 1);
  Atomics.notify(v, READY);
  let last = 0;
  for (;;) {
    const now = Atomics.load(v, PING);
    if (now === last) {
      Atomics.wait(v, PING, last);
      continue;
    }
    if (now === STOP) return;
    last = now;
    Atomics.store(v, PONG, now);
    Atomics.notify(v, PONG, 1);
  }
}

function leader(v: Int32Array, n: number, warmup: number) {
  while (Atomics.load(v, READY) === 0) Atomics.wait(v, READY, 0, 10_000);
  const samples = new Float64Array(n);
  let start = 0;
  for (let round = 1; round <= warmup + n; round++) {
    if (round === warmup + 1) start = performance.now();
    const t0 = performance.now();
    Atomics.store(v, PING, round);
    Atomics.notify(v, PING, 1);
    for (;;) {
      const now = Atomics.load(v, PONG);
      if (now === round) break;
      Atomics.wait(v, PONG, now);
    }
    if (round > warmup) samples[round - warmup - 1] = performance.now() - t0;
  }
  const total = performance.now() - start;
  Atomics.store(v, PING, STOP);
  Atomics.notify(v, PING);
  return latencyStats(samples, total);
}

scope.onmessage = async (event) => {
  const { role, sab, n, warmup, cpu } = event.data;
  const pinned = cpu === null ? "not pinned (taskset only)" : await pinThread(cpu) ?? `CPU ${cpu}`;
  const v = new Int32Array(sab);
  if (role === "echo") {
    echo(v);
    scope.postMessage({ done: true, pinned });
  } else {
    const timer = timerCost();
    scope.postMessage({ stats: leader(v, n, warmup), timer, pinned });
  }
};
