/**
 * A Worker that grows a growable `SharedArrayBuffer` 8 bytes at a time, filling each new 8 bytes
 * with 0xab (some 8 MB a second), until word 0 of its stop flag is set or the buffer is at its
 * largest: a view that follows the buffer's length grows under a send made on the main thread.
 *
 * Message: `{ buffer, stop }` (both `SharedArrayBuffer`s; `stop` of 4 bytes or more). It replies
 * 1 at once, then grows; when it has stopped it replies the buffer's length, once asked again.
 *
 * @module
 */

import { onMessage, reply } from "../worker.ts";

type Growable = SharedArrayBuffer & { grow(length: number): void; maxByteLength: number };
type Message = { buffer: Growable; stop: SharedArrayBuffer };

let grown: Promise<number> | undefined;

function grow({ buffer, stop }: Message): number {
  const bytes = new Uint8Array(buffer); // follows the buffer's length
  const flag = new Int32Array(stop);
  while (Atomics.load(flag, 0) === 0) {
    const n = buffer.byteLength;
    if (n + 8 > buffer.maxByteLength) break;
    buffer.grow(n + 8);
    bytes.fill(0xab, n, n + 8);
    // A pause of about 1 µs: the main thread's views stay well under a record's length.
    for (let i = 0; i < 256; i++) Atomics.load(flag, 0);
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
