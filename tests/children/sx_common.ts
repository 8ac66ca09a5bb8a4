/**
 * Helpers for the `sx_*` child scripts of `sync_cross.test.ts`: this process's id, a blocking
 * sleep, and one JSON result line. No library calls.
 *
 * @module
 */

import { runtime, say } from "./lib.ts";

/** This process's id (printed so the parent can look at its threads in /proc). */
export const pid: number = runtime === "bun"
  ? (globalThis as unknown as { process: { pid: number } }).process.pid
  : Deno.pid;

const sleeper = new Int32Array(new SharedArrayBuffer(4));

/** Blocks this thread for `ms` milliseconds (the event loop does not run meanwhile). */
export function sleepSync(ms: number): void {
  Atomics.wait(sleeper, 0, 0, ms);
}

/** Prints `result <json>`, the line the parent parses. */
export function report(result: Record<string, unknown>): void {
  say(`result ${JSON.stringify(result)}`);
}

/** Throws with `message` unless `ok`. */
export function check(ok: boolean, message: string): asserts ok {
  if (!ok) throw new Error(message);
}
