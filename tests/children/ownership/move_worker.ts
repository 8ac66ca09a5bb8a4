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

type Message = { buffer?: ArrayBuffer; read?: number; write?: number; value?: number };

let kept: ArrayBuffer | undefined;
const node = !("Deno" in globalThis) && !("Bun" in globalThis);
const port = node ? (await import("node:worker_threads")).parentPort! : undefined;
const scope = globalThis as unknown as {
  onmessage: (e: MessageEvent) => void;
  postMessage: (message: unknown) => void;
};
const reply = (message: unknown) => port ? port.postMessage(message) : scope.postMessage(message);

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

if (port) port.on("message", answer);
else scope.onmessage = (e: MessageEvent) => answer(e.data as Message);
