/**
 * `<rounds>` times in turn: a `node:worker_threads` Worker takes the receiver of a new channel and
 * drops it without `close()` (so it may be collected), stays alive until it is terminated, and is;
 * this thread then takes the receiver over (retrying `EBUSY` for up to 10 s while the Worker's end
 * reaches the library; a round that never does ends the rounds). In Bun, with the library imported
 * statically (by a script written for the run), the Worker's buffers were released, and its mapping
 * of the segment unmapped, before the library heard of the Worker's end: the place was never marked
 * gone and stayed held for good (in 3 to 4 rounds of 5). Elsewhere the Worker runs this file.
 *
 * Usage: `channel/worker_receiver_gone.ts <name> <rounds>`. Prints `result {taken, rounds}`: in
 * how many rounds this thread took the receiver over.
 *
 * @module
 */

import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { isMainThread, parentPort, Worker, workerData } from "node:worker_threads";
import { args, lib, report, runtime } from "../lib.ts";

/**
 * The Worker's script: in Bun, one written for the run that imports the library statically (a
 * file of its own: one in the tree would have the type checks of the other runtimes check Bun's
 * entry); elsewhere this file.
 */
function workerScript(): URL {
  if (runtime !== "bun") return new URL(import.meta.url);
  const file = join(mkdtempSync(join(tmpdir(), "sb-worker-")), "worker.mjs");
  const entry = JSON.stringify(new URL("../../../bun.ts", import.meta.url).href);
  writeFileSync(
    file,
    `import { parentPort, workerData } from "node:worker_threads";
import { Channel } from ${entry};
Channel.open({ name: workerData }).receiver(); // dropped, never closed
parentPort.postMessage("ready");
setInterval(() => {}, 1000); // alive until terminated
`,
  );
  return pathToFileURL(file);
}

if (isMainThread) {
  const [name, roundsArg] = args;
  const rounds = Number(roundsArg);
  let taken = 0;
  const script = workerScript();
  for (let round = 0; round < rounds; round++) {
    const id = { name: `${name}-${round}` };
    using channel = lib.Channel.create(id, { capacity: 4096 });
    try {
      const worker = new Worker(script, { workerData: id.name });
      await new Promise((resolve, reject) => {
        worker.once("message", resolve);
        worker.once("error", reject);
      });
      await worker.terminate();
      // `terminate()` returns before the Worker's teardown, which takes its time on a loaded
      // machine.
      for (const end = Date.now() + 10_000;;) {
        try {
          channel.receiver().close();
          taken++;
          break;
        } catch (err) {
          const busy = err instanceof lib.SharedMemoryError && err.code === "EBUSY";
          if (!busy || Date.now() > end) break;
          await new Promise((resolve) => setTimeout(resolve, 20));
        }
      }
      // A round that never took the place is the failure: the report says so at once.
      if (taken !== round + 1) break;
    } finally {
      lib.Channel.unlink(id);
    }
  }
  if (runtime === "bun") rmSync(dirname(fileURLToPath(script)), { recursive: true });
  report({ taken, rounds });
} else {
  lib.Channel.open({ name: workerData as string }).receiver(); // dropped, never closed
  parentPort!.postMessage("ready");
  setInterval(() => {}, 1000); // alive until terminated
}
