/**
 * Adds 1 to a plain (non-atomic) Float64 counter `<n>` times, each time as a read, a short busy
 * delay and a write, so that unsynchronised writers would overwrite each other's updates.
 *
 * The segment's layout is in `counter_layout.ts`; the parent sets up the Mutex.
 *
 * `<guard>` `lock`: every update holds the Mutex (`tryLock()`, and when another process holds
 * it, `lock(WAIT_MS)`); `none`: no lock at all. Prints `ready`, then, after the start flag,
 * `result {n, overlaps, contended}`: this child's count of entries that found another child
 * inside, and of `tryLock()` calls that found the lock taken.
 *
 * Usage: `lock/count_under_lock.ts <name> <n> <lock|none>`
 *
 * @module
 */

import { args, check, lib, report, say, WAIT_MS } from "../lib.ts";
import { COUNTER_BYTE, GO, INSIDE, OVERLAPS, READY } from "./counter_layout.ts";

const [name, nArg, guard] = args;
check(guard === "lock" || guard === "none", `bad guard ${guard}`);
const n = Number(nArg);
const shm = lib.SharedMemory.open({ name });
const mutex = lib.Mutex.open(shm.buffer, 0);
const counter = new Float64Array(shm.buffer, COUNTER_BYTE, 1);
const i32 = new Int32Array(shm.buffer);

Atomics.add(i32, READY, 1);
say("ready");
while (Atomics.load(i32, GO) === 0) {
  check(lib.wait(i32, GO, 0, WAIT_MS) !== "timed-out", `no start signal within ${WAIT_MS} ms`);
}

let sink = 0;
let overlaps = 0;
let contended = 0;
for (let i = 0; i < n; i++) {
  let held = null;
  if (guard === "lock") {
    held = mutex.tryLock();
    if (held === null) {
      contended++; // another process holds it right now
      held = mutex.lock(WAIT_MS);
    }
  }
  check(held === null || !held.ownerDied, "a lock holder died");
  if (Atomics.add(i32, INSIDE, 1) !== 0) {
    overlaps++;
    Atomics.add(i32, OVERLAPS, 1);
  }
  const value = counter[0];
  for (let k = 0; k < 40; k++) sink += Math.sqrt(k + value); // widen the read-write window
  counter[0] = value + 1;
  Atomics.sub(i32, INSIDE, 1);
  held?.unlock();
}
report({ n, overlaps, contended, sink: sink > 0 });
shm.close();
