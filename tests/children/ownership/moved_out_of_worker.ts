/**
 * Node.js: a `node:worker_threads` Worker moves a buffer of the library's (`transfer()`, Node 21
 * and newer, or a byte stream's `enqueue` and read), hands the moved buffer to the main thread
 * with a transfer list, and ends (it returns, or the main thread terminates it). The main thread
 * then reads the byte the Worker wrote and writes one, through the moved buffer, after
 * collections.
 *
 * Usage: `ownership/moved_out_of_worker.ts <name> <transfer|stream> <return|terminate>`. Prints
 * `result {seen, written}`: the byte read (42) and the one the segment then holds (7).
 *
 * @module
 */

import { isMainThread, parentPort, Worker, workerData } from "node:worker_threads";
import { args, collect, lib, report } from "../lib.ts";

interface Job {
  name: string;
  route: string;
  ending: string;
}

if (isMainThread) {
  const [name, route, ending] = args;
  const shm = lib.SharedMemory.create({ name }, 4096);
  try {
    const job: Job = { name, route, ending };
    const worker = new Worker(new URL(import.meta.url), { workerData: job });
    const exited = new Promise((resolve) => worker.once("exit", resolve));
    const moved = await new Promise<ArrayBuffer>((resolve, reject) => {
      worker.once("message", resolve);
      worker.once("error", reject);
    });
    if (ending === "terminate") await worker.terminate();
    await exited;
    for (let i = 0; i < 5; i++) {
      collect();
      await new Promise((resolve) => setImmediate(resolve));
    }
    const bytes = new Uint8Array(moved);
    const seen = bytes[0];
    bytes[1] = 7;
    report({ seen, written: new Uint8Array(shm.buffer)[1] });
  } finally {
    shm.close();
    lib.SharedMemory.unlink({ name });
  }
} else {
  const job = workerData as Job;
  const shm = lib.SharedMemory.open({ name: job.name });
  new Uint8Array(shm.buffer)[0] = 42;
  let moved: ArrayBuffer;
  if (job.route === "transfer") {
    moved = (shm.buffer as ArrayBuffer & { transfer(): ArrayBuffer }).transfer();
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
  // Kept running until terminated; else it returns, and the Worker ends.
  if (job.ending === "terminate") setInterval(() => {}, 1000);
}
