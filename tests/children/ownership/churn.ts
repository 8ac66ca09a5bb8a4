/**
 * A job loop that never closes: creates a 1 MiB named segment, fills it, unlinks it and drops it,
 * `count` times, with no `close()` and no explicit garbage collection. Run in a small private
 * `/dev/shm`, it must never fail with ENOSPC: the engine collects the dropped segments.
 *
 * Usage: `ownership/churn.ts <prefix> <count> <sync|async> [buffer|view]`; `async` yields to the
 * event loop after each segment, as a job loop awaiting work does; `view` fills the segment
 * through `view()` instead of `buffer`. Prints `result {"made": n, "handles": h}`.
 *
 * @module
 */

import { args, lib, report } from "../lib.ts";

const [prefix, count, mode, through = "buffer"] = args;
const MiB = 1024 * 1024;
let made = 0;
for (let i = 0; i < Number(count); i++) {
  const shm = lib.SharedMemory.create({ name: `${prefix}-${i}` }, MiB);
  new Uint8Array(through === "view" ? shm.view() : shm.buffer).fill(i & 0xff);
  shm.unlink();
  made++;
  if (mode === "async") await new Promise((resolve) => setTimeout(resolve, 0));
}
report({ made, handles: lib.openHandleCount() });
