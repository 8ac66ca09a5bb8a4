/**
 * Rounds of a job that fills a small `/dev/shm` with segments it drops without `close()`: each
 * round a function creates 16 segments of 1 MiB, fills and unlinks each, and returns; then one
 * more is created at once, with no turn of the event loop. The create's relief must free the
 * dropped ones (in a 17 MiB `/dev/shm`, nothing else fits). With `node`, through the Node.js
 * entry, as a program that imports it by path runs it in Deno or Bun (on Bun's Node-API, its
 * relief reported external memory, for which Bun does not collect, and the round failed).
 *
 * Node.js runs the finalizers of what its engine collected by itself (for the memory the unlinked
 * segments were reported as) only when the event loop turns, and the relief cannot tell those
 * buffers from moved ones (`docs/node.md`): there an `ENOSPC` that says so is followed by a turn
 * of the event loop and one more try, as the error advises (the round's outcome is `"turn"`).
 *
 * Usage: `ownership/drop_rounds.ts <prefix> <rounds> [node]`. Prints `result {"rounds": [..]}`,
 * each round's `"ok"`, `"turn"` or the code of the error its create got.
 *
 * @module
 */

import { args, lib as own, report, runtime } from "../lib.ts";

const [prefix, rounds, entry] = args;
const lib: typeof own = entry === "node" ? await import("../../../node.ts") : own;
const MiB = 1024 * 1024;
/** Whether this round's creates needed a turn of the event loop (Node.js). */
let turned = false;

/**
 * Creates the segment `name`. In Node.js, an `ENOSPC` that asks for a turn of the event loop is
 * followed by one and one more try, up to 5 times (a collection the engine made by itself during
 * a turn leaves its finalizers to the next).
 */
async function create(name: string): Promise<ReturnType<typeof own.SharedMemory.create>> {
  for (let turns = 0;; turns++) {
    try {
      return lib.SharedMemory.create({ name }, MiB);
    } catch (err) {
      if (
        runtime !== "node" || turns === 5 || !/only when the event loop turns/.test(String(err))
      ) throw err;
      turned = true;
      await new Promise((resolve) => setImmediate(resolve));
    }
  }
}

/** Creates, fills, unlinks and drops 16 segments of 1 MiB. */
async function fill(round: number): Promise<void> {
  for (let i = 0; i < 16; i++) {
    const shm = await create(`${prefix}-${round}-${i}`);
    new Uint8Array(shm.buffer).fill(1);
    shm.unlink();
  }
}

const outcomes: string[] = [];
for (let round = 0; round < Number(rounds); round++) {
  turned = false;
  try {
    await fill(round);
    const shm = await create(`${prefix}-${round}`);
    shm.unlink();
    shm.close();
    outcomes.push(turned ? "turn" : "ok");
  } catch (err) {
    outcomes.push(String((err as { code?: unknown }).code ?? err));
  }
}
report({ rounds: outcomes });
