/**
 * A Worker that opens the named segment it is sent, takes the Mutex at the given offset and
 * reports `{ locked, ownerDied }`, then keeps the lock (and its mapping) until it is terminated.
 *
 * Message in: `{ name, offset }`.
 *
 * @module
 */

const scope = globalThis as unknown as {
  onmessage: (e: MessageEvent) => void;
  postMessage: (message: unknown) => void;
};
const entry = "Bun" in globalThis ? "../../bun.ts" : "../../mod.ts";

/** What the worker keeps alive until it is terminated. */
const kept: unknown[] = [];
// Set before any await: Bun drops messages that arrive while a worker's module is still
// evaluating a top-level await.
scope.onmessage = async (e: MessageEvent) => {
  const { name, offset } = e.data as { name: string; offset: number };
  try {
    const lib: typeof import("../../mod.ts") = await import(entry);
    const shm = lib.SharedMemory.open({ name });
    const guard = lib.Mutex.open(shm.buffer, offset).lock(10_000);
    kept.push(shm, guard); // held until the Worker is terminated
    scope.postMessage({ locked: true, ownerDied: guard.ownerDied });
  } catch (err) {
    scope.postMessage({ locked: false, error: String(err) });
  }
};
