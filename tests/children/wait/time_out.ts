import { args, check, lib, report } from "../lib.ts";
/**
 * Waits on `Int32[0]` of a named segment (which holds 0 and is never notified) with a timeout of
 * `<timeoutMs>`, through `wait` (`sync`) or `waitAsync` (`async`), and prints
 * `result {result, elapsedMs}`; elapsedMs is measured with `performance.now()` around the call.
 * Then checks that a wait for a value the word does not hold says `not-equal` at once.
 *
 * Usage: `wait/time_out.ts <name> <sync|async> <timeoutMs>`
 *
 * @module
 */

const [name, mode, timeoutArg] = args;
check(mode === "sync" || mode === "async", `bad mode ${mode}`);
const timeoutMs = Number(timeoutArg);
const shm = lib.SharedMemory.open({ name });
const i32 = new Int32Array(shm.buffer, 0, 1);
const start = performance.now();
const result = mode === "sync"
  ? lib.wait(i32, 0, 0, timeoutMs)
  : await lib.waitAsync(i32, 0, 0, timeoutMs);
const elapsedMs = performance.now() - start;
const notEqual = mode === "sync"
  ? lib.wait(i32, 0, 1, timeoutMs)
  : await lib.waitAsync(i32, 0, 1, timeoutMs);
report({ result, elapsedMs, notEqual });
shm.close();
