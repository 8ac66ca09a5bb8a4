/**
 * Terminates a Worker with async waits pending (`wait/async_in_worker.ts`), then lives on past
 * the moments those waits would have ended, and reports what a wait of this thread sees:
 * `result {"woke": n, "fresh": r}`, where `n` is what a notify of one on word 8 (where the dead
 * Worker waited without a timeout) woke, and `r` how a `waitAsync` of word 8 made here before
 * that notify ended. A wait that outlived its Worker ended into a callback the
 * runtime had freed (Deno, Bun: the process died), or kept its place and took the wake-up
 * (Node).
 *
 * Usage: `wait/worker_ends_waiting.ts <segment name> <channel name>`
 *
 * @module
 */

import { args, lib, report, startWorker } from "../lib.ts";

const [name, channel] = args;
const shm = lib.SharedMemory.create({ name }, 4096);
const ch = lib.Channel.create({ name: channel }, { capacity: 1024 });
try {
  const words = new Int32Array(shm.buffer);
  const worker = await startWorker("wait/async_in_worker.ts");
  await worker.ask({ name, channel });
  worker.stop();
  // Past the 300 ms timeout and several of recvAsync's 100 ms slices.
  await new Promise((resolve) => setTimeout(resolve, 800));
  // A wait of this thread on the word the dead Worker waited on, parked by the service (200 ms
  // is ample when the machine is idle), then a notify of one without a change: it must wake this
  // wait. Again a little later while it wakes nobody (the wait not parked yet, on a loaded
  // machine); a notify that woke one is not repeated, whichever wait it woke.
  const fresh = lib.waitAsync(words, 8, 0, 10_000);
  await new Promise((resolve) => setTimeout(resolve, 200));
  let woke = lib.notify(words, 8, 1);
  for (const give = Date.now() + 10_000; woke === 0 && Date.now() < give;) {
    await new Promise((resolve) => setTimeout(resolve, 50));
    woke = lib.notify(words, 8, 1);
  }
  report({ woke, fresh: await fresh });
} finally {
  ch.close();
  lib.Channel.unlink({ name: channel });
  shm.close();
  lib.SharedMemory.unlink({ name });
}
