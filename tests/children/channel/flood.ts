/**
 * A hostile peer of the channel named `<name>`: it writes committed records that deliver
 * nothing (8-byte skip records, abort records, or `fragments`: records of the largest size that
 * begin a message, continue it five times and begin another, so that none ends and none grows
 * past a limit) into the ring, moving `tail` itself and staying ahead of the receiver's `head`,
 * until the parent kills it (or for 30 s, so that a receive it holds up ends the test instead of
 * hanging it). No sender writes these faster than one skip record per lap and one abort record
 * per failed message, and every sender ends the messages it begins.
 *
 * Prints `flooding` once the first batch is in the ring.
 *
 * Usage: `channel/flood.ts <name> <skip|abort|fragments>`
 *
 * @module
 */

import { args, check, lib, say } from "../lib.ts";
import * as layout from "../../../ts/channel/layout.ts";

const [name, kind] = args;
check(kind === "skip" || kind === "abort" || kind === "fragments", `bad kind ${kind}`);
const shm = lib.SharedMemory.open({ name });
const i32 = new Int32Array(shm.buffer);
const capacity = i32[layout.OFF_CAPACITY >> 2];
const [HEAD, TAIL, DATA] = [layout.OFF_HEAD >> 2, layout.OFF_TAIL >> 2, layout.OFF_DATA >> 2];
/** The fragments' record: a payload of the largest size, half the ring with its header. */
const maxRecord = capacity / 2 - layout.RECORD_HEADER_SIZE;
/** Each record's commit word and span; `n` counts the records written. */
const next = (n: number): [number, number] =>
  kind === "fragments"
    ? [
      layout.REC_COMMITTED | layout.REC_MORE | (n % 6 === 0 ? 0 : layout.REC_CONT) | maxRecord,
      capacity / 2,
    ]
    : [layout.REC_COMMITTED | (kind === "skip" ? layout.REC_SKIP : layout.REC_ABORT), 8];
let tail = Atomics.load(i32, TAIL) & layout.POS_MASK;
let written = 0;
const stop = performance.now() + 30_000;
for (let round = 0; performance.now() < stop; round++) {
  const head = Atomics.load(i32, HEAD) & layout.POS_MASK;
  // Up to the free room, and not past the end of the ring (a record never crosses it).
  const room = capacity - ((tail - head) & layout.POS_MASK);
  const batch = Math.min(room, capacity - (tail & (capacity - 1)));
  const [, span] = next(written);
  if (batch < span) continue;
  const from = tail;
  const records = Math.floor(batch / span);
  tail = (tail + records * span) & layout.POS_MASK;
  Atomics.store(i32, TAIL, tail);
  for (let k = 0; k < records; k++) {
    const [word] = next(written++);
    Atomics.store(i32, DATA + (((from + k * span) & (capacity - 1)) >> 2), word | 0);
  }
  if (round === 0) say("flooding");
}
