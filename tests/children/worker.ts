/**
 * A Worker's side of its messages, whatever the runtime runs it as: a web Worker in Deno and Bun,
 * a `node:worker_threads` Worker in Node.js, which has no web Worker.
 *
 * @module
 */

const node = !("Deno" in globalThis) && !("Bun" in globalThis);
const port = node ? (await import("node:worker_threads")).parentPort! : undefined;
const scope = globalThis as unknown as {
  onmessage: (e: MessageEvent) => void;
  postMessage: (message: unknown) => void;
};

/** Posts `message` to the thread that started this Worker. */
export function reply(message: unknown): void {
  if (port) port.postMessage(message);
  else scope.postMessage(message);
}

/** Calls `handle` with each message the thread that started this Worker posts. */
export function onMessage(handle: (message: unknown) => void): void {
  if (port) port.on("message", handle);
  else scope.onmessage = (e: MessageEvent) => handle(e.data);
}
