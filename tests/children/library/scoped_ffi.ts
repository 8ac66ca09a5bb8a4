/**
 * Run by Deno with `--allow-ffi` scoped to the native library's path, and nothing else (so it
 * imports the library statically: a dynamic import, as `../lib.ts` makes, needs `--allow-read`,
 * which a user's static import does not): uses a
 * segment, wait/notify, a Mutex and a channel's blocking calls (none needs more), then tries
 * `waitAsync` and a channel's `recvAsync`, which need unscoped `--allow-ffi` (see
 * `ts/deno/backend.ts`). Prints `result {"sync": "ok", "waitAsync": error, "recvAsync": error}`,
 * each error as `{ name, message }`.
 *
 * Usage: `library/scoped_ffi.ts <segment name> <channel name>`
 *
 * @module
 */

import { Channel, Mutex, notify, SharedMemory, wait, waitAsync } from "../../../mod.ts";

const [name, channelName] = Deno.args;

function check(ok: boolean, message: string): asserts ok {
  if (!ok) throw new Error(message);
}

/** What `run` threw, as `{ name, message }`, or `{ name: "none" }` if it did not. */
async function failure(run: () => Promise<unknown>): Promise<{ name: string; message?: string }> {
  try {
    await run();
    return { name: "none" };
  } catch (err) {
    return { name: (err as Error).name, message: (err as Error).message };
  }
}

const shm = SharedMemory.create({ name }, 4096);
const channel = Channel.create({ name: channelName }, { capacity: 1024 });
try {
  const words = new Int32Array(shm.buffer);
  Atomics.store(words, 0, 7);
  check(wait(words, 0, 0) === "not-equal", "wait: not-equal");
  check(wait(words, 0, 7, 1) === "timed-out", "wait: timed-out");
  check(notify(words, 0) === 0, "notify: nobody waits");
  const mutex = Mutex.init(shm.buffer, 64);
  mutex.lock().unlock();
  const tx = channel.sender();
  const rx = channel.receiver();
  tx.send("through the ring");
  check(rx.recvText(0) === "through the ring", "a blocking receive");
  const result = {
    sync: "ok",
    waitAsync: await failure(() => waitAsync(words, 0, 7, 1000)),
    recvAsync: await failure(() => rx.recvAsync(1000)),
  };
  console.log(`result ${JSON.stringify(result)}`);
} finally {
  channel.close();
  channel.unlink();
  shm.close();
  shm.unlink();
}
