/**
 * Tries to open a segment and prints the outcome as one JSON line starting with `result `:
 * `{ ok: true, byteLength, marker }` (after reading `Int32[0]` into `marker` and storing `<reply>`
 * in `Int32[1]`), or `{ ok: false, error, code }` when opening throws.
 *
 * Usage: `segment/open.ts <kind> <id> <reply>`
 *
 * @module
 */

import { args, lib, say } from "../lib.ts";
import { parseId } from "./common.ts";

const [kind, value, reply] = args;
let shm;
try {
  shm = lib.SharedMemory.open(parseId(kind, value));
} catch (err) {
  const e = err as { name?: string; code?: string; message?: string };
  say(`result ${
    JSON.stringify({
      ok: false,
      error: e.name,
      isSharedMemoryError: err instanceof lib.SharedMemoryError,
      code: e.code,
      message: e.message,
    })
  }`);
}
if (shm) {
  const i32 = new Int32Array(shm.buffer);
  const marker = Atomics.load(i32, 0);
  Atomics.store(i32, 1, Number(reply));
  say(`result ${JSON.stringify({ ok: true, byteLength: shm.byteLength, marker })}`);
  shm.close();
}
