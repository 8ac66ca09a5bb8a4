/**
 * Sets `Int32[1..=count]` of a named segment to 1 and notifies each one, then `Int32[0]` (the
 * word many waiters share) to 1 and notifies all; prints `notified <sum of wake counts>`.
 *
 * Usage: `wait/notify_each.ts <name> <count>`
 *
 * @module
 */

import { args, lib, say } from "../lib.ts";

const [name, count] = args;
const shm = lib.SharedMemory.open({ name });
const i32 = new Int32Array(shm.buffer);
let woken = 0;
for (let i = 1; i <= Number(count); i++) {
  Atomics.store(i32, i, 1);
  woken += lib.notify(i32, i);
}
Atomics.store(i32, 0, 1);
woken += lib.notify(i32, 0);
say(`notified ${woken}`);
shm.close();
