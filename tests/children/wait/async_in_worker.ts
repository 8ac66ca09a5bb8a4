/**
 * A Worker that leaves async waits pending and answers 1: on the named segment it is sent, a
 * `waitAsync` of word 4 with a 300 ms timeout and five of word 8 without, and on the named channel
 * a `recvAsync` without a timeout (which parks in slices of 100 ms). Nobody changes the words or
 * sends; its parent terminates it with them pending.
 *
 * Message in: `{ name, channel }`. A web Worker in Deno and Bun; a `node:worker_threads` Worker
 * in Node.js.
 *
 * @module
 */

const scope = globalThis as unknown as {
  onmessage: (e: MessageEvent) => void;
  postMessage: (message: unknown) => void;
};
const node = !("Deno" in globalThis) && !("Bun" in globalThis);

async function leave(m: { name: string; channel: string }, say: (message: unknown) => void) {
  const { lib } = await import("../lib.ts");
  const shm = lib.SharedMemory.open({ name: m.name });
  const words = new Int32Array(shm.buffer);
  lib.waitAsync(words, 4, 0, 300).catch(() => {});
  for (let i = 0; i < 5; i++) lib.waitAsync(words, 8, 0).catch(() => {});
  lib.Channel.open({ name: m.channel }).receiver().recvAsync().catch(() => {});
  say(1);
}

if (node) {
  const port = (await import("node:worker_threads")).parentPort!;
  port.on("message", (m) => leave(m, (message) => port.postMessage(message)));
} else {
  scope.onmessage = (e: MessageEvent) => leave(e.data, scope.postMessage);
}
