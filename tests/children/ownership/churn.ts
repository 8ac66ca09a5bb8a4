/**
 * A job loop that never closes: creates a 1 MiB named segment, fills it, unlinks it and drops it,
 * `count` times, with no `close()` and no explicit garbage collection (but in `collect` mode).
 * Run in a small private `/dev/shm`, it must never fail with ENOSPC: the engine collects the
 * dropped segments (in Node.js, some only once the event loop turns, as its ENOSPC says).
 *
 * Usage: `ownership/churn.ts <prefix> <count> <sync|async|collect> [buffer|view|channel] [bytes]
 * [node]` (`bytes`: of each segment, 1 MiB if not given, or `-`; `node`: through the Node.js entry,
 * as a program that imports it by path runs it in Deno or Bun); `async` yields
 * to the event loop after each segment, as a job loop awaiting work does; `collect` stays
 * synchronous and has the engine collect after every fourth segment, as its own collections do
 * under allocation or load; `view` fills the segment through `view()` instead of `buffer`;
 * `channel` makes a channel of 1 MiB instead, sends a message through it and receives it.
 * A create that fails with `ENOSPC` is tried once more after one turn of the event loop (a
 * `setImmediate`).
 * Prints `result {"made": n, "handles": h, "waited": w, "firstWait": message}` (`waited`: how many
 * creates needed that turn; `firstWait`: the first one's error message), with the `code` and
 * `message` of the `SharedMemoryError` that stopped the loop, if one did.
 *
 * @module
 */

import { args, collect, lib as own, report } from "../lib.ts";

const [prefix, count, mode, through = "buffer", bytes, entry] = args;
const lib: typeof own = entry === "node" ? await import("../../../node.ts") : own;
const MiB = 1024 * 1024;
const size = bytes === undefined || bytes === "-" ? MiB : Number(bytes);
let made = 0;
/** The messages of the ENOSPC errors met, each followed by one turn of the event loop. */
const waited: string[] = [];
let failed: { code: unknown; message: string } | undefined;
type Segment = ReturnType<typeof lib.SharedMemory.create>;
type Channel = ReturnType<typeof lib.Channel.create>;
/** Creates segment (or channel) `i`. */
function create(i: number): Segment | Channel {
  const id = { name: `${prefix}-${i}` };
  return through === "channel"
    ? lib.Channel.create(id, { capacity: MiB })
    : lib.SharedMemory.create(id, size);
}
/** Creates segment `i`, or returns undefined if that fails with `ENOSPC` (noting its message). */
function tryCreate(i: number): Segment | Channel | undefined {
  try {
    return create(i);
  } catch (err) {
    if (!(err instanceof lib.SharedMemoryError) || err.code !== "ENOSPC") throw err;
    waited.push(err.message);
    return undefined;
  }
}
/**
 * What Node.js's ENOSPC says to do: lets the event loop run once, to its check phase, where Node
 * runs the finalizers of collected buffers (a `setTimeout` of 0 may fire in the timers phase it
 * was set in, before them: docs/node.md), then creates segment `i`.
 */
async function createAfterATurn(i: number): Promise<Segment | Channel> {
  await new Promise((resolve) => setImmediate(resolve));
  return create(i);
}
try {
  for (let i = 0; i < Number(count); i++) {
    const item = tryCreate(i) ?? await createAfterATurn(i);
    if (item instanceof lib.Channel) {
      const tx = item.sender();
      const rx = item.receiver();
      tx.send(new Uint8Array(64).fill(i & 0xff));
      if (rx.recv()?.[63] !== (i & 0xff)) throw new Error(`message ${i} not received whole`);
    } else new Uint8Array(through === "view" ? item.view() : item.buffer).fill(i & 0xff);
    item.unlink();
    made++;
    if (mode === "async") await new Promise((resolve) => setTimeout(resolve, 0));
    // A collection of the engine's own between two creates, with no turn of the event loop.
    if (mode === "collect" && i % 4 === 3) collect();
  }
} catch (err) {
  if (!(err instanceof lib.SharedMemoryError)) throw err;
  failed = { code: err.code, message: err.message };
}
report({
  made,
  handles: lib.openHandleCount(),
  waited: waited.length,
  firstWait: waited[0],
  ...failed,
});
