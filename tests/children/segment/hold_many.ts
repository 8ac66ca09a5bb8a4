/**
 * Opens a keyed segment `<n>` times and keeps every `SharedMemory`, then closes a tenth of them
 * and opens once more. With `closing`, each turn also opens it once more, writes through a
 * `view()` of it and closes that (in Node.js a closed buffer's addresses are kept until the
 * buffer is collected, a later turn of the event loop: this loop never lets one come). Prints `result {"kept", "failed", "firstFailure", "openedAfter", "code",
 * "reopened"}`: how many opens succeeded, failed, where the first failure was, how many
 * succeeded after it, the first failure's code, and whether the open after the closes worked.
 *
 * Usage: `segment/hold_many.ts <key> <n> [closing]`
 *
 * @module
 */

import { args, lib, say } from "../lib.ts";

const [key, n] = args.map(Number);
const closing = args[2] === "closing";
lib.SharedMemory.create({ key }, 4096).close();
const kept: ReturnType<typeof lib.SharedMemory.open>[] = [];
let [failed, firstFailure, openedAfter] = [0, -1, 0];
let code: string | undefined;
for (let i = 0; i < n; i++) {
  try {
    if (closing) {
      const shm = lib.SharedMemory.open({ key });
      new Uint8Array(shm.view(0, 4096))[0] = 1;
      shm.close();
    }
    kept.push(lib.SharedMemory.open({ key }));
    if (firstFailure >= 0) openedAfter++;
  } catch (err) {
    if (firstFailure < 0) [firstFailure, code] = [i, (err as { code?: string }).code];
    failed++;
  }
}
for (const shm of kept.splice(0, kept.length / 10)) shm.close();
let reopened = true;
try {
  kept.push(lib.SharedMemory.open({ key }));
} catch {
  reopened = false;
}
const result = { kept: kept.length, failed, firstFailure, openedAfter, code, reopened };
for (const shm of kept) shm.close();
lib.SharedMemory.unlink({ key });
say(`result ${JSON.stringify(result)}`);
