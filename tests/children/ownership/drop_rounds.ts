/**
 * Rounds of a job that fills a small `/dev/shm` with segments it drops without `close()`: each
 * round a function creates 16 segments of 1 MiB, fills and unlinks each, and returns; then one
 * more is created at once, with no turn of the event loop. The create's relief must free the
 * dropped ones (in a 17 MiB `/dev/shm`, nothing else fits). With `node`, through the Node.js
 * entry, as a program that imports it by path runs it in Deno or Bun (on Bun's Node-API, its
 * relief reported external memory, for which Bun does not collect, and the round failed).
 *
 * Usage: `ownership/drop_rounds.ts <prefix> <rounds> [node]`. Prints `result {"rounds": [..]}`,
 * each round's `"ok"` or the code of the error its create got.
 *
 * @module
 */

import { args, lib as own, report } from "../lib.ts";

const [prefix, rounds, entry] = args;
const lib: typeof own = entry === "node" ? await import("../../../node.ts") : own;
const MiB = 1024 * 1024;

/** Creates, fills, unlinks and drops 16 segments of 1 MiB. */
function fill(round: number): void {
  for (let i = 0; i < 16; i++) {
    const shm = lib.SharedMemory.create({ name: `${prefix}-${round}-${i}` }, MiB);
    new Uint8Array(shm.buffer).fill(1);
    shm.unlink();
  }
}

const outcomes: string[] = [];
for (let round = 0; round < Number(rounds); round++) {
  try {
    fill(round);
    const shm = lib.SharedMemory.create({ name: `${prefix}-${round}` }, MiB);
    shm.unlink();
    shm.close();
    outcomes.push("ok");
  } catch (err) {
    outcomes.push(String((err as { code?: unknown }).code ?? err));
  }
}
report({ rounds: outcomes });
