/**
 * A Worker that grows a growable `SharedArrayBuffer` 8 bytes at a time, filling each new 8 bytes
 * with 0xab, by at most 64 bytes in each round the main thread starts, until word 0 of its
 * control words is set or the buffer is at its largest: a view that follows the buffer's length
 * grows under a send made on the main thread, and no pause of that thread (a collection, another
 * process on the core) lets it grow past a record.
 *
 * Message: `{ buffer, control }`; `control` is a `SharedArrayBuffer` of two 32-bit words: stop,
 * and the round, which the main thread raises (and notifies). It replies 1 at once, then grows;
 * when it has stopped it replies the buffer's length, once asked again.
 *
 * @module
 */

import { onMessage, reply } from "../worker.ts";

type Growable = SharedArrayBuffer & { grow(length: number): void; maxByteLength: number };
type Message = { buffer: Growable; control: SharedArrayBuffer };

/** The most it grows by in one round, 8 bytes at a time. */
const ROUND_STEPS = 8;

let grown: Promise<number> | undefined;

function grow({ buffer, control }: Message): number {
  const bytes = new Uint8Array(buffer); // follows the buffer's length
  const words = new Int32Array(control);
  let round = Atomics.load(words, 1);
  let steps = 0;
  while (Atomics.load(words, 0) === 0) {
    const now = Atomics.load(words, 1);
    if (now !== round) {
      round = now;
      steps = 0;
    }
    if (steps === ROUND_STEPS) {
      Atomics.wait(words, 1, round, 100); // until the next round
      continue;
    }
    const n = buffer.byteLength;
    if (n + 8 > buffer.maxByteLength) break;
    buffer.grow(n + 8);
    bytes.fill(0xab, n, n + 8);
    steps++;
    // A pause of about 1 µs, so that a round's growth spreads over its sends.
    for (let i = 0; i < 256; i++) Atomics.load(words, 0);
  }
  return buffer.byteLength;
}

function answer(m: Message): void {
  if (grown !== undefined) {
    void grown.then(reply);
    return;
  }
  reply(1);
  // After the reply has gone: the loop holds this thread until it stops.
  grown = new Promise((resolve) => setTimeout(() => resolve(grow(m)), 0));
}

onMessage((m) => answer(m as Message));
