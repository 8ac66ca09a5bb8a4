/**
 * A Worker that opens the named segment it is sent, takes the Mutex at the given offset and
 * reports `{ locked, ownerDied }`, then keeps the lock (and its mapping) until it is terminated.
 *
 * Message in: `{ name, offset }`. A web Worker in Deno and Bun; a `node:worker_threads` Worker in
 * Node.js.
 *
 * @module
 */

const scope = globalThis as unknown as {
  onmessage: (e: MessageEvent) => void;
  postMessage: (message: unknown) => void;
};
const node = !("Deno" in globalThis) && !("Bun" in globalThis);

/** What the worker keeps alive until it is terminated. */
const kept: unknown[] = [];

/** Opens the segment, takes the lock and keeps both; the reply to send. */
async function take(m: { name: string; offset: number }): Promise<unknown> {
  try {
    const { lib, WAIT_MS } = await import("../lib.ts");
    const shm = lib.SharedMemory.open({ name: m.name });
    const guard = lib.Mutex.open(shm.buffer, m.offset).lock(WAIT_MS);
    kept.push(shm, guard); // held until the Worker is terminated
    return { locked: true, ownerDied: guard.ownerDied };
  } catch (err) {
    return { locked: false, error: String(err) };
  }
}

if (node) {
  // A `node:worker_threads` Worker: Node.js has no web Worker.
  const port = (await import("node:worker_threads")).parentPort!;
  port.on("message", async (m) => port.postMessage(await take(m)));
} else {
  // Set before any await: Bun drops messages that arrive while a worker's module is still
  // evaluating a top-level await.
  scope.onmessage = async (e: MessageEvent) => scope.postMessage(await take(e.data));
}
