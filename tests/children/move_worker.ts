/**
 * A Worker that keeps the buffer it was sent and, on request, reads one byte of it or writes one.
 *
 * Messages: `{ buffer }` keeps it and replies with its length; `{ read: i }` replies with byte
 * `i`; `{ write: i, value }` writes byte `i` and replies with it.
 *
 * @module
 */

let kept: ArrayBuffer | undefined;
const scope = globalThis as unknown as {
  onmessage: (e: MessageEvent) => void;
  postMessage: (message: unknown) => void;
};
scope.onmessage = (e: MessageEvent) => {
  const m = e.data as { buffer?: ArrayBuffer; read?: number; write?: number; value?: number };
  if (m.buffer) {
    kept = m.buffer;
    scope.postMessage(kept.byteLength);
  } else if (m.read !== undefined) {
    scope.postMessage(kept ? new Uint8Array(kept)[m.read] : -1);
  } else if (m.write !== undefined) {
    new Uint8Array(kept!)[m.write] = m.value!;
    scope.postMessage(new Uint8Array(kept!)[m.write]);
  }
};
