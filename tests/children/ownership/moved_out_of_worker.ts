/**
 * Node.js: a `node:worker_threads` Worker moves a buffer of the library's (`transfer()`, Node 21
 * and newer, or a byte stream's `enqueue` and read), hands the moved buffer to the main thread
 * with a transfer list, and ends (it returns, or the main thread terminates it). The main thread
 * then reads the byte the Worker wrote and writes one, through the moved buffer, after
 * collections.
 *
 * Usage: `ownership/moved_out_of_worker.ts <name> <transfer|view|stream> <return|close|terminate>`
 * (`view`: `transfer()` of a `view()`; `close`: the Worker closes the segment, then returns;
 * `terminate`: the Worker keeps running, with its segment open, until terminated). Prints
 * `result {seen, written}`: the byte read (42) and the one the segment then holds (7).
 *
 * With the route `drop`, the Worker instead opens the segment 500 times, reads each buffer and
 * drops it without `close()`, has the engine collect, opens one more that it keeps and one that
 * it closes, and calls `process.exit()` (ending `exit`) or waits to be terminated (ending
 * `terminate`): nothing moved, so nothing of it may be kept. Prints `result {before, after,
 * sentinels, owners}`: this process's mappings of the segment before the Worker and after its end
 * (and a few turns of the event loop), how many of the one-byte buffers the library keeps newest in
 * a Worker are left in the process then (none: each Worker frees its own, terminated or not), and
 * how many more finalizers of the library's the engine holds than before the Worker (none).
 *
 * With the route `opening`, 30 Workers in turn open the segment in a loop that never ends (a
 * `SharedMemory` with its `.buffer` and a `view()`, closed or dropped),
 * each terminated after 0 to 28 ms, so that some end between an open and the object that takes
 * its handle over. Prints `result {before, after, sentinels, owners}` as for `drop`.
 *
 * @module
 */

import { readFileSync } from "node:fs";
import process from "node:process";
import { isMainThread, parentPort, Worker, workerData } from "node:worker_threads";
import { args, collect, lib, report } from "../lib.ts";
import { loadNodeApi } from "../../../ts/napi.ts";

/** This process's mappings of the segment named `name`. */
function mappings(name: string): number {
  return readFileSync("/proc/self/maps", "utf8").split("\n")
    .filter((line) => line.endsWith(`/dev/shm${name}`)).length;
}

/** Collections, each with a turn of the event loop, when Node.js runs finalizers. */
async function settle(): Promise<void> {
  for (let i = 0; i < 5; i++) {
    collect();
    await new Promise((resolve) => setImmediate(resolve));
  }
}

interface Job {
  name: string;
  route: string;
  ending: string;
}

if (isMainThread) {
  const [name, route, ending] = args;
  const napi = loadNodeApi(lib.loadLibrary(), process.dlopen);
  const shm = lib.SharedMemory.create({ name }, 4096);
  try {
    const job: Job = { name, route, ending };
    const before = mappings(name);
    const owners = napi.owners();
    const worker = new Worker(new URL(import.meta.url), { workerData: job });
    const exited = new Promise((resolve) => worker.once("exit", resolve));
    if (route === "opening") {
      worker.terminate(); // the first is not needed: each Worker below is one of its own
      await exited;
      for (let k = 0; k < 30; k++) {
        const opener = new Worker(new URL(import.meta.url), { workerData: job });
        const ended = new Promise((resolve) => opener.once("exit", resolve));
        await new Promise((resolve) => opener.once("message", resolve));
        await new Promise((resolve) => setTimeout(resolve, (k * 7) % 29));
        await opener.terminate();
        await ended;
      }
      await settle();
      report({
        before,
        after: mappings(name),
        sentinels: napi.sentinels(),
        owners: napi.owners() - owners,
      });
    } else if (route === "drop") {
      if (ending === "terminate") {
        await new Promise((resolve) => worker.once("message", resolve));
        await worker.terminate();
      }
      await exited;
      await settle();
      report({
        before,
        after: mappings(name),
        sentinels: napi.sentinels(),
        owners: napi.owners() - owners,
      });
    } else {
      const moved = await new Promise<ArrayBuffer>((resolve, reject) => {
        worker.once("message", resolve);
        worker.once("error", reject);
      });
      if (ending === "terminate") await worker.terminate();
      await exited;
      await settle();
      const bytes = new Uint8Array(moved);
      const seen = bytes[0];
      bytes[1] = 7;
      report({ seen, written: new Uint8Array(shm.buffer)[1] });
    }
  } finally {
    shm.close();
    lib.SharedMemory.unlink({ name });
  }
} else if ((workerData as Job).route === "opening") {
  const job = workerData as Job;
  parentPort!.postMessage("started");
  for (let i = 0;; i++) {
    const shm = lib.SharedMemory.open({ name: job.name });
    new Uint8Array(shm.buffer)[0];
    new Uint8Array(shm.view(0, 64))[0];
    if (i % 2 === 0) shm.close();
  }
} else if ((workerData as Job).route === "drop") {
  const job = workerData as Job;
  let sum = 0;
  for (let i = 0; i < 500; i++) {
    sum += new Uint8Array(lib.SharedMemory.open({ name: job.name }).buffer)[0];
  }
  collect();
  // One still open, with its buffer and a view attached; one closed.
  const held = lib.SharedMemory.open({ name: job.name });
  sum += new Uint8Array(held.buffer)[0] + new Uint8Array(held.view(0, 64))[0];
  lib.SharedMemory.open({ name: job.name }).close();
  if (job.ending === "terminate") {
    // Kept running until terminated.
    parentPort!.postMessage(sum);
    setInterval(() => {}, 1000);
  } else {
    process.exit(sum === 0 ? 0 : 1);
  }
} else {
  const job = workerData as Job;
  const shm = lib.SharedMemory.open({ name: job.name });
  new Uint8Array(shm.buffer)[0] = 42;
  let moved: ArrayBuffer;
  if (job.route === "transfer" || job.route === "view") {
    // Views of the segment (two, as programs make several) are a group, which `close()` takes back.
    const buffer = job.route === "view" ? (shm.view(0, 16), shm.view(0, 2048)) : shm.buffer;
    moved = (buffer as ArrayBuffer & { transfer(): ArrayBuffer }).transfer();
  } else {
    const stream = new ReadableStream({
      type: "bytes",
      start(controller) {
        controller.enqueue(new Uint8Array(shm.buffer));
        controller.close();
      },
    });
    const { value } = await stream.getReader().read();
    moved = value!.buffer as ArrayBuffer;
  }
  parentPort!.postMessage(moved, [moved]);
  // The Worker's `close()` leaves the moved memory to its finalizer.
  if (job.ending === "close") shm.close();
  // Kept running until terminated; else it returns, and the Worker ends.
  if (job.ending === "terminate") setInterval(() => {}, 1000);
}
