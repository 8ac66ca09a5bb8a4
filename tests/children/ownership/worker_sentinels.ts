/**
 * Node.js: a `node:worker_threads` Worker opens a segment `count` times, each time with its
 * `.buffer` and a `view()`, closing every other one, then lets its event loop turn a few times,
 * with no collection asked for. Each buffer a Worker makes retires the one-byte buffer the
 * library keeps newer than all of them (its sentinel); a retired one must be freed then, on the
 * Worker's thread, not left to the collector (Node.js 26 can crash ending a Worker while its
 * collector frees such a buffer).
 *
 * The young generation is made large enough that the Worker's loop brings on no collection: a
 * minor collection would free retired ones too (it did, in about one run in ten), and the test
 * could then pass with them left to the collector.
 *
 * Usage: `ownership/worker_sentinels.ts <name> <count>`. Prints `result {made, live}`: how many
 * sentinels the Worker's loop made (the count's rise over it) and how many are not yet freed
 * after the turns of its event loop.
 *
 * @module
 */

import process from "node:process";
import { setFlagsFromString } from "node:v8";
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
  // Before the Worker's heap is made (flags are the process's).
  setFlagsFromString("--min-semi-space-size=64");
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
  const before = napi.sentinels();
  for (let i = 0; i < job.count; i++) {
    const shm = lib.SharedMemory.open({ name: job.name });
    new Uint8Array(shm.buffer)[0];
    new Uint8Array(shm.view(0, 64))[0];
    if (i % 2 === 0) shm.close();
  }
  const made = napi.sentinels() - before;
  for (let turn = 0; turn < 3; turn++) await new Promise((resolve) => setImmediate(resolve));
  parentPort!.postMessage({ made, live: napi.sentinels() });
}
