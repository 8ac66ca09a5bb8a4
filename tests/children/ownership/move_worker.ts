/**
 * A Worker that keeps the buffer it was sent and, on request, reads one byte of it or writes one.
 *
 * Messages: `{ buffer }` keeps it and replies with its length; `{ read: i }` replies with byte
 * `i`; `{ write: i, value }` writes byte `i` and replies with it.
 *
 * A web Worker in Deno and Bun; a `node:worker_threads` Worker in Node.js, which has no web
 * Worker.
 *
 * @module
 */

import { onMessage, reply } from "../worker.ts";

type Message = { buffer?: ArrayBuffer; read?: number; write?: number; value?: number };

let kept: ArrayBuffer | undefined;

function answer(m: Message): void {
  if (m.buffer) {
    kept = m.buffer;
    reply(kept.byteLength);
  } else if (m.read !== undefined) {
    reply(kept ? new Uint8Array(kept)[m.read] : -1);
  } else if (m.write !== undefined) {
    new Uint8Array(kept!)[m.write] = m.value!;
    reply(new Uint8Array(kept!)[m.write]);
  }
}

onMessage((m) => answer(m as Message));
