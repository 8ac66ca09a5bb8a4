/**
 * Opens a keyed segment, prints `ready`, spins until the parent stores 1 in `Int32[1]` (so that
 * every child starts at once), then does `Atomics.add(Int32[0], 1)` `<n>` times and prints `done`.
 *
 * Usage: `segment/count_atomically.ts <key> <n>`
 *
 * @module
 */

import { args, lib, say } from "../lib.ts";

const [key, n] = args.map(Number);
const shm = lib.SharedMemory.open({ key });
const i32 = new Int32Array(shm.buffer);
say("ready");
while (Atomics.load(i32, 1) === 0) {
  // spin: the parent releases every child at once
}
for (let i = 0; i < n; i++) Atomics.add(i32, 0, 1);
shm.close();
say("done");
