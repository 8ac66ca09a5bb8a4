/**
 * What child scripts import: the library for whichever runtime runs them.
 *
 * @module
 */

import process from "node:process";

/** The runtime running this script (Node.js runs the JavaScript built into `dist/tests/`). */
export const runtime: "deno" | "bun" | "node" = "Bun" in globalThis
  ? "bun"
  : "Deno" in globalThis
  ? "deno"
  : "node";
const entry = { bun: "../../bun.ts", deno: "../../mod.ts", node: "../../node.ts" }[runtime];
/** The library as this runtime's users import it. */
export const lib: typeof import("../../mod.ts") = await import(entry);

/**
 * How long a child waits at most for its peers or its test (a lock, a wake-up, a message, a
 * start signal): far beyond a healthy run, where the other processes' start-up on a loaded
 * machine takes seconds, and below the test's own hang guard (`HANG_MS`, 60 s), so that the child
 * says what it was waiting for.
 */
export const WAIT_MS = 30_000;

/** The script's arguments. */
export const args: string[] = process.argv.slice(2);

/** Prints one line to stdout. */
export function say(line: string): void {
  console.log(line);
}

/** This process's id. */
export const pid: number = process.pid;

const sleeper = new Int32Array(new SharedArrayBuffer(4));

/** Blocks this thread for `ms` milliseconds (the event loop does not run meanwhile). */
export function sleepSync(ms: number): void {
  Atomics.wait(sleeper, 0, 0, ms);
}

/**
 * A full garbage collection now, with no turn of the event loop (`gc` is exposed to every child:
 * see `scriptCommand` in `../harness.ts`).
 */
export function collect(): void {
  if (runtime === "bun") {
    (globalThis as unknown as { Bun: { gc(force: boolean): void } }).Bun.gc(true);
  } else {
    const gc = (globalThis as { gc?: () => void }).gc;
    check(gc !== undefined, "this child needs gc exposed (--expose-gc)");
    gc();
  }
}

/** Prints `result <json>`, the line the parent parses. */
export function report(result: Record<string, unknown>): void {
  say(`result ${JSON.stringify(result)}`);
}

/** Throws with `message` unless `ok`. */
export function check(ok: boolean, message: string): asserts ok {
  if (!ok) throw new Error(message);
}

/** A Worker to exchange messages with, each answered by one number. */
export interface TestWorker {
  /** Posts `message` (moving `transfer`) and resolves with the Worker's answer. */
  ask(message: unknown, transfer?: ArrayBuffer[]): Promise<number>;
  /** Terminates it. */
  stop(): void;
}

/**
 * A Worker running `script` (a `.ts` path under this folder, such as `ownership/move_worker.ts`): a web Worker in Deno and Bun, a
 * `node:worker_threads` Worker in Node.js (which has no web Worker) running the built `.js`.
 */
export async function startWorker(script: string): Promise<TestWorker> {
  if (runtime === "node") {
    const { Worker: NodeWorker } = await import("node:worker_threads");
    const w = new NodeWorker(new URL(`./${script.replace(/\.ts$/, ".js")}`, import.meta.url));
    return {
      ask: (message, transfer = []) =>
        new Promise((resolve, reject) => {
          w.once("message", resolve);
          w.once("error", reject);
          w.postMessage(message, transfer);
        }),
      stop: () => void w.terminate(),
    };
  }
  const w = new Worker(new URL(`./${script}`, import.meta.url).href, { type: "module" });
  return {
    ask: (message, transfer = []) =>
      new Promise<number>((resolve, reject) => {
        w.onmessage = (e) => resolve(e.data);
        w.onerror = (e) => reject(e);
        w.postMessage(message, transfer);
      }),
    stop: () => w.terminate(),
  };
}
