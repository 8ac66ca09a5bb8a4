import { args, check, lib, pid, say } from "../lib.ts";
/**
 * Prints `waiting <pid>`, waits on `Int32[0]` of a named segment while it holds 0 (`sync`:
 * `wait`, `adaptive`: `wait` with `{ spin: "adaptive" }`, `async`: `waitAsync`), then adds 1 to
 * `Int32[1]` (the parent's count of woken waiters) and prints `woken <result>`. One wait, no
 * retry, so a spurious wake-up would show as one too many.
 *
 * Usage: `wait/wait_once.ts <name> <sync|adaptive|async> <timeoutMs>`
 *
 * @module
 */

const [name, mode, timeoutMs] = args;
check(mode === "sync" || mode === "adaptive" || mode === "async", `bad mode ${mode}`);
const shm = lib.SharedMemory.open({ name });
const i32 = new Int32Array(shm.buffer, 0, 2);
say(`waiting ${pid}`);
const result = mode === "async"
  ? await lib.waitAsync(i32, 0, 0, Number(timeoutMs))
  : lib.wait(i32, 0, 0, Number(timeoutMs), mode === "adaptive" ? { spin: "adaptive" } : undefined);
Atomics.add(i32, 1, 1);
say(`woken ${result}`);
shm.close();
