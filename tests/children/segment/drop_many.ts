/**
 * Attaches a keyed segment `<n>` times with `createSharedBuffer`, in one synchronous loop, and
 * drops each buffer without `detachSharedBuffer`, as a program written for the seed package
 * does (it relied on the collector). Prints `result {"done": <attaches made>}`, with `code` and
 * `message` if an attach threw, then, after a turn of the event loop and a collection, how many
 * handles are left open (`left`).
 *
 * Usage: `segment/drop_many.ts <key> <n>`
 *
 * @module
 */

import { args, lib, say } from "../lib.ts";

const [key, n] = args.map(Number);
const first = lib.createSharedBuffer(key, 4096, true);
let done = 0;
let failure: { code?: string; message?: string } = {};
try {
  for (; done < n; done++) new Uint8Array(lib.createSharedBuffer(key, 4096))[0] = 1;
} catch (err) {
  failure = err as { code?: string; message?: string };
}
await new Promise((resolve) => setTimeout(resolve, 20));
(globalThis as { gc?: () => void }).gc?.();
await new Promise((resolve) => setTimeout(resolve, 20));
const left = lib.openHandleCount();
lib.detachSharedBuffer(first);
lib.SharedMemory.unlink({ key });
say(`result ${JSON.stringify({ done, code: failure.code, message: failure.message, left })}`);
