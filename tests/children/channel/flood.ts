/**
 * A hostile peer of the channel named `<name>`: it writes committed records that deliver
 * nothing (8-byte skip records, or abort records) into the ring, moving `tail` itself and
 * staying ahead of the receiver's `head`, until the parent kills it (or for 30 s, so that a
 * receive it holds up ends the test instead of hanging it). No sender writes these faster than
 * one skip record per lap and one abort record per failed message.
 *
 * Prints `flooding` once the first batch is in the ring.
 *
 * Usage: `channel/flood.ts <name> <skip|abort>`
 *
 * @module
 */

import { args, check, lib, say } from "../lib.ts";
import * as layout from "../../../ts/channel/layout.ts";

const [name, kind] = args;
check(kind === "skip" || kind === "abort", `bad kind ${kind}`);
const record = layout.REC_COMMITTED | (kind === "skip" ? layout.REC_SKIP : layout.REC_ABORT);
const shm = lib.SharedMemory.open({ name });
const i32 = new Int32Array(shm.buffer);
const capacity = i32[layout.OFF_CAPACITY >> 2];
const [HEAD, TAIL, DATA] = [layout.OFF_HEAD >> 2, layout.OFF_TAIL >> 2, layout.OFF_DATA >> 2];
let tail = Atomics.load(i32, TAIL) & layout.POS_MASK;
const stop = performance.now() + 30_000;
for (let round = 0; performance.now() < stop; round++) {
  const head = Atomics.load(i32, HEAD) & layout.POS_MASK;
  // Up to the free room, and not past the end of the ring (a record never crosses it).
  const room = capacity - ((tail - head) & layout.POS_MASK);
  const batch = Math.min(room, capacity - (tail & (capacity - 1)));
  if (batch < 8) continue;
  const from = tail;
  tail = (tail + batch) & layout.POS_MASK;
  Atomics.store(i32, TAIL, tail);
  for (let at = 0; at < batch; at += 8) {
    Atomics.store(i32, DATA + (((from + at) & (capacity - 1)) >> 2), record | 0);
  }
  if (round === 0) say("flooding");
}
