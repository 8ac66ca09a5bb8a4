/**
 * A Worker that keeps the last buffer it was sent and reports its first byte on every message.
 *
 * @module
 */

let kept: ArrayBuffer | undefined;
const scope = globalThis as unknown as {
  onmessage: (e: MessageEvent) => void;
  postMessage: (message: unknown) => void;
};
scope.onmessage = (e: MessageEvent) => {
  if (e.data instanceof ArrayBuffer) kept = e.data;
  scope.postMessage(kept && kept.byteLength > 0 ? new Uint8Array(kept)[0] : -1);
};
