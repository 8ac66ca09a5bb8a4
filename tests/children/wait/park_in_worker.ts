/**
 * A Worker that opens the named segment it is sent, says `"parking"`, and then waits without a
 * timeout: in `wait()` on word 0 (which nobody changes), or in `lock()` of the Mutex at byte 64
 * (which its parent holds). It never returns by itself; its parent terminates it.
 *
 * Message in: `{ name, what: "wait" | "lock" }`. A web Worker in Deno and Bun; a
 * `node:worker_threads` Worker in Node.js.
 *
 * @module
 */

const scope = globalThis as unknown as {
  onmessage: (e: MessageEvent) => void;
  postMessage: (message: unknown) => void;
};
const node = !("Deno" in globalThis) && !("Bun" in globalThis);

async function park(m: { name: string; what: string }, say: (message: unknown) => void) {
  const { lib } = await import("../lib.ts");
  const shm = lib.SharedMemory.open({ name: m.name });
  say("parking");
  if (m.what === "wait") lib.wait(new Int32Array(shm.buffer), 0, 0);
  else lib.Mutex.open(shm.buffer, 64).lock();
  say("returned"); // never: the parent neither notifies nor unlocks
}

if (node) {
  const port = (await import("node:worker_threads")).parentPort!;
  port.on("message", (m) => park(m, (message) => port.postMessage(message)));
} else {
  scope.onmessage = (e: MessageEvent) => park(e.data, scope.postMessage);
}
