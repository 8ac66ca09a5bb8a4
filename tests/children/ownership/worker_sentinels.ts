/**
 * Node.js: a `node:worker_threads` Worker opens a segment `count` times, each time with its
 * `.buffer` and a `view()`, closing every other one, then lets its event loop turn a few times,
 * with no collection asked for. Each buffer a Worker makes retires the one-byte buffer the
 * library keeps newer than all of them (its sentinel); a retired one must be freed then, on the
 * Worker's thread, not left to the collector (Node.js 26 can crash ending a Worker while its
 * collector frees such a buffer).
 *
 * Usage: `ownership/worker_sentinels.ts <name> <count>`. Prints `result {made, live}`: how many
 * sentinels the Worker made, counted by its buffers, and how many are not yet freed.
 *
 * @module
 */

import process from "node:process";
import { isMainThread, parentPort, Worker, workerData } from "node:worker_threads";
import { args, lib, report } from "../lib.ts";
import { loadNodeApi } from "../../../ts/napi.ts";

interface Job {
  name: string;
  count: number;
}

if (isMainThread) {
  const [name, count] = args;
  const shm = lib.SharedMemory.create({ name }, 4096);
  try {
    const job: Job = { name, count: Number(count) };
    const worker = new Worker(new URL(import.meta.url), { workerData: job });
    const result = await new Promise<Record<string, unknown>>((resolve, reject) => {
      worker.once("message", resolve);
      worker.once("error", reject);
    });
    await worker.terminate();
    report(result);
  } finally {
    shm.close();
    lib.SharedMemory.unlink({ name });
  }
} else {
  const job = workerData as Job;
  const napi = loadNodeApi(lib.loadLibrary(), process.dlopen);
  for (let i = 0; i < job.count; i++) {
    const shm = lib.SharedMemory.open({ name: job.name });
    new Uint8Array(shm.buffer)[0];
    new Uint8Array(shm.view(0, 64))[0];
    if (i % 2 === 0) shm.close();
  }
  for (let turn = 0; turn < 3; turn++) await new Promise((resolve) => setImmediate(resolve));
  parentPort!.postMessage({ made: 2 * job.count, live: napi.sentinels() });
}
