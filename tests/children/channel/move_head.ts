/**
 * A hostile peer of the full channel named `<name>`, whose `head` stands at 0: it moves `head`
 * over the first record and back (0, 8, ... 64, 0, ...), a step a microsecond, as a receiver at
 * work would move it, never freeing more than 64 bytes; until the parent kills it (or for 30 s).
 * A sender that waited for a quarter of the ring while `head` moves would wait until its
 * deadline.
 *
 * Prints `moving` once it runs.
 *
 * Usage: `channel/move_head.ts <name>`
 *
 * @module
 */

import { args, lib, say } from "../lib.ts";
import * as layout from "../../../ts/channel/layout.ts";

const [name] = args;
const shm = lib.SharedMemory.open({ name });
const i32 = new Int32Array(shm.buffer);
const HEAD = layout.OFF_HEAD >> 2;
say("moving");
const stop = performance.now() + 30_000;
for (let step = 0; performance.now() < stop; step = (step + 1) % 9) {
  Atomics.store(i32, HEAD, step * 8);
  const moved = performance.now();
  while (performance.now() - moved < 0.001) {
    // a microsecond between two moves
  }
}
