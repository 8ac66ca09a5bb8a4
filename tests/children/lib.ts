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

/** Prints `result <json>`, the line the parent parses. */
export function report(result: Record<string, unknown>): void {
  say(`result ${JSON.stringify(result)}`);
}

/** Throws with `message` unless `ok`. */
export function check(ok: boolean, message: string): asserts ok {
  if (!ok) throw new Error(message);
}
