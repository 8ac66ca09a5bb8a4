/**
 * Deno or Bun running the Node.js entry (`node.ts`, which a program may import by path), whose
 * `node:worker_threads` Workers open a segment and end: they must leave none of its mappings
 * open. (Through their Node-API, Deno never ran the finalizer that owned a `SharedMemory`'s
 * handle at a Worker's end, nor Bun for one already dropped, and Bun's Workers kept every buffer
 * they moved mapped until the process ended: Deno and Bun now run this entry on their own FFI, as
 * `mod.ts` and `bun.ts`.)
 *
 * Usage: `ownership/node_entry_workers.ts <name> <route>`, where `route` is
 * - `keep`: 5 Workers in turn open the segment 5 times each, with its buffer, keep them, and
 *   return;
 * - `drop`: the same, dropping them without `close()`;
 * - `terminate`: as `keep`, each terminated once it has opened them;
 * - `opening`: 20 Workers in turn open and close or drop the segment in a loop that never ends,
 *   each terminated after 0 to 28 ms (in Bun, some end between an open and the object that owns
 *   it; Deno stops a Worker only between turns of its event loop, which the loop then takes);
 * - `moved`: 3 Workers in turn each move the buffer of 200 openings away (`transfer()`) and
 *   close them, and return;
 * - `posted`: one Worker writes 42 into the segment, moves its buffer (`transfer()`), hands the
 *   moved buffer to this thread with a transfer list, and returns; this thread then reads it and
 *   writes 7 through it, after collections (Bun unmapped it at the Worker's end: SIGSEGV);
 * - `posted-close`: the same, the Worker then taking a new `.buffer`, having the engine collect
 *   (the original, detached by the move) and closing its `SharedMemory` before it returns
 *   (through Node-API, Bun finalized the original buffer though its memory had moved, and the
 *   close took the mapping's last reference: SIGSEGV, 10 of 10).
 *
 * Prints `result {before, after, handles}`: this process's mappings of the segment before the
 * Workers and after their ends (and at least five collections, more until they settle), and the
 * library's open handles then (1: the main thread's own `SharedMemory`); for `posted` and
 * `posted-close`, `result {seen, written}`: the byte read through the moved buffer (42) and the one
 * the segment then holds (7).
 *
 * @module
 */

import { readFileSync } from "node:fs";
import process from "node:process";
import { isMainThread, parentPort, Worker, workerData } from "node:worker_threads";

const lib: typeof import("../../../mod.ts") = await import("../../../node.ts");

interface Job {
  name: string;
  route: string;
}

/** This process's mappings of the segment named `name`. */
function mappings(name: string): number {
  return readFileSync("/proc/self/maps", "utf8").split("\n")
    .filter((line) => line.includes(`/dev/shm${name}`)).length;
}

/** A full collection in this runtime (Deno runs its children with `gc` exposed). */
function collect(): void {
  const bun = (globalThis as { Bun?: { gc(force: boolean): void } }).Bun;
  if (bun !== undefined) bun.gc(true);
  else (globalThis as unknown as { gc(): void }).gc();
}

const turn = (ms = 0) => new Promise((resolve) => setTimeout(resolve, ms));

/** Runs one Worker of `job`; terminates it once it has said it opened, or after `ms`. */
async function runWorker(job: Job, terminate: boolean | number): Promise<void> {
  const worker = new Worker(new URL(import.meta.url), { workerData: job });
  const exited = new Promise((resolve) => worker.once("exit", resolve));
  const said = new Promise((resolve, reject) => {
    worker.once("message", resolve);
    worker.once("error", reject);
  });
  if (terminate !== false) {
    await said;
    if (typeof terminate === "number") await turn(terminate);
    await worker.terminate();
  }
  await exited;
}

if (isMainThread) {
  const [name, route] = process.argv.slice(2);
  const shm = lib.SharedMemory.create({ name }, 4096);
  try {
    const before = mappings(name);
    const job: Job = { name, route };
    if (route.startsWith("posted")) {
      const worker = new Worker(new URL(import.meta.url), { workerData: job });
      const exited = new Promise((resolve) => worker.once("exit", resolve));
      const moved = await new Promise<ArrayBuffer>((resolve, reject) => {
        worker.once("message", resolve);
        worker.once("error", reject);
      });
      await exited;
      for (let i = 0; i < 5; i++) {
        collect();
        await turn(20);
      }
      const bytes = new Uint8Array(moved);
      const seen = bytes[0];
      bytes[1] = 7;
      console.log(`result ${JSON.stringify({ seen, written: new Uint8Array(shm.buffer)[1] })}`);
    } else {
      if (route === "opening") {
        for (let k = 0; k < 20; k++) await runWorker(job, (k * 7) % 29);
      } else {
        const workers = route === "moved" ? 3 : 5;
        for (let k = 0; k < workers; k++) await runWorker(job, route === "terminate");
      }
      // Five collections and turns, then more until the Workers' mappings and handles are gone:
      // at a Worker's `exit` event Deno still held some (66 mappings after `opening`), gone 20 ms
      // later on an idle machine, later on a loaded one. What leaks stays, and is reported after
      // 30 s; what a later collection would take too many of, the five show.
      for (let round = 0, give = Date.now() + 30_000;; round++) {
        collect();
        await turn(20);
        if (round < 4) continue;
        if (mappings(name) === before && lib.openHandleCount() === 1) break;
        if (Date.now() > give) break;
      }
      const after = mappings(name);
      console.log(`result ${JSON.stringify({ before, after, handles: lib.openHandleCount() })}`);
    }
  } finally {
    shm.close();
    lib.SharedMemory.unlink({ name });
  }
} else {
  const { name, route } = workerData as Job;
  if (route === "opening") {
    parentPort!.postMessage("opening");
    // Deno's `terminate()` stops a Worker only between turns of its event loop (a loop that
    // never yields runs on, past the "exit" event): there it yields now and then.
    const yields = "Deno" in globalThis;
    for (let i = 0;; i++) {
      const shm = lib.SharedMemory.open({ name });
      new Uint8Array(shm.buffer)[0];
      if (i % 2 === 0) shm.close();
      if (yields && i % 64 === 63) await turn();
    }
  } else if (route.startsWith("posted")) {
    const shm = lib.SharedMemory.open({ name });
    new Uint8Array(shm.buffer)[0] = 42;
    const moved = (shm.buffer as ArrayBuffer & { transfer(): ArrayBuffer }).transfer();
    parentPort!.postMessage(moved, [moved]);
    if (route === "posted-close") {
      // A new `.buffer` replaces the detached original in the SharedMemory, which is garbage now.
      new Uint8Array(shm.buffer)[2] = 1;
      for (let i = 0; i < 3; i++) {
        collect();
        await turn(10);
      }
      shm.close();
    }
  } else if (route === "moved") {
    for (let i = 0; i < 200; i++) {
      const shm = lib.SharedMemory.open({ name });
      (shm.buffer as ArrayBuffer & { transfer(): ArrayBuffer }).transfer();
      shm.close();
    }
    parentPort!.postMessage("moved");
  } else {
    const kept: unknown[] = [];
    for (let i = 0; i < 5; i++) {
      const shm = lib.SharedMemory.open({ name });
      new Uint8Array(shm.buffer)[0] = i;
      if (route !== "drop") kept.push(shm);
    }
    (globalThis as { kept?: unknown[] }).kept = kept;
    parentPort!.postMessage("opened");
    // Until terminated; else it returns, and the Worker ends.
    if (route === "terminate") setInterval(() => {}, 1000);
  }
}
