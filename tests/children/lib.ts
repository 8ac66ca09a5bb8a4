/**
 * What child scripts import: the library for whichever runtime runs them.
 *
 * @module
 */

export const runtime: "deno" | "bun" = "Bun" in globalThis ? "bun" : "deno";
const entry = runtime === "bun" ? "../../bun.ts" : "../../mod.ts";
/** The library as this runtime's users import it. */
export const lib: typeof import("../../mod.ts") = await import(entry);

/** The script's arguments. */
export const args: string[] = runtime === "bun"
  ? (globalThis as unknown as { process: { argv: string[] } }).process.argv.slice(2)
  : Deno.args;

/** Prints one line to stdout. */
export function say(line: string): void {
  console.log(line);
}

/** This process's id. */
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
