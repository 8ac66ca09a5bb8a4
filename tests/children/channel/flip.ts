/**
 * A hostile peer of the channel named `<name>`: while a whole message is committed at `head`, it
 * rewrites that message's bytes over and over, alternating UTF-8 of three bytes a character
 * ("€") with ASCII ("A"), never touching a record header; until the parent kills it (or for
 * 30 s). A receiver that decoded the ring in place read a different length of text on each of
 * the decoder's two passes.
 *
 * Prints `flipping` once it runs.
 *
 * Usage: `channel/flip.ts <name>`
 *
 * @module
 */

import { args, lib, say } from "../lib.ts";
import * as layout from "../../../ts/channel/layout.ts";

const [name] = args;
const shm = lib.SharedMemory.open({ name });
const i32 = new Int32Array(shm.buffer);
const bytes = new Uint8Array(shm.buffer);
const capacity = i32[layout.OFF_CAPACITY >> 2];
const euro = new Uint8Array(capacity);
for (let i = 0; i + 3 <= capacity; i += 3) euro.set([0xe2, 0x82, 0xac], i);
const [HEAD, DATA] = [layout.OFF_HEAD >> 2, layout.OFF_DATA >> 2];
say("flipping");
const stop = performance.now() + 30_000;
for (let round = 0; (round & 1023) !== 0 || performance.now() < stop; round++) {
  const idx = (Atomics.load(i32, HEAD) & layout.POS_MASK) & (capacity - 1);
  const word = Atomics.load(i32, DATA + (idx >> 2));
  if ((word & ~layout.REC_LEN_MASK) !== (layout.REC_COMMITTED | 0)) continue;
  const len = word & layout.REC_LEN_MASK;
  const start = layout.OFF_DATA + idx + layout.RECORD_HEADER_SIZE;
  if (len < 64 || idx + layout.RECORD_HEADER_SIZE + len > capacity) continue;
  for (let flip = 0; flip < 8; flip++) {
    if (flip & 1) bytes.set(euro.subarray(0, len - (len % 3)), start);
    else bytes.fill(0x41, start, start + len);
  }
}
