/**
 * Run by Deno with `--allow-ffi` scoped to the native library's path, and nothing else (so it
 * imports the library statically: a dynamic import, as `../lib.ts` makes, needs `--allow-read`,
 * which a user's static import does not): uses a segment, wait/notify, a Mutex and a channel's
 * blocking calls, then `waitAsync` and a channel's `recvAsync`, which Node-API wakes (a
 * `Deno.UnsafeCallback` needed unscoped `--allow-ffi`). Prints `result {"sync": "ok", "async":
 * "ok", "errors": "ok"}`, or `{ name, message }` of what failed in place of "ok". "errors" are
 * the codes of refused calls, whose names and messages the library gives (Deno's
 * `UnsafePointerView` reads a C string only with unscoped `--allow-ffi`).
 *
 * Usage: `library/scoped_ffi.ts <segment name> <channel name>`
 *
 * @module
 */

import {
  Channel,
  Mutex,
  notify,
  SharedMemory,
  SharedMemoryError,
  wait,
  waitAsync,
} from "../../../mod.ts";

const [name, channelName] = Deno.args;

function check(ok: boolean, message: string): asserts ok {
  if (!ok) throw new Error(message);
}

/** Checks that `run` throws a SharedMemoryError of `code`. */
function refused(code: string, run: () => unknown): void {
  try {
    run();
  } catch (err) {
    if (err instanceof SharedMemoryError && err.code === code) return;
    throw err;
  }
  throw new Error(`no ${code}`);
}

/** "ok" if `run` completes, else what it threw as `{ name, message }`. */
async function outcome(run: () => unknown): Promise<"ok" | { name: string; message: string }> {
  try {
    await run();
    return "ok";
  } catch (err) {
    return { name: (err as Error).name, message: (err as Error).message };
  }
}

const shm = SharedMemory.create({ name }, 4096);
const channel = Channel.create({ name: channelName }, { capacity: 1024 });
try {
  const words = new Int32Array(shm.buffer);
  const tx = channel.sender();
  const rx = channel.receiver();
  const result = {
    sync: await outcome(() => {
      Atomics.store(words, 0, 7);
      check(wait(words, 0, 0) === "not-equal", "wait: not-equal");
      check(wait(words, 0, 7, 1) === "timed-out", "wait: timed-out");
      check(notify(words, 0) === 0, "notify: nobody waits");
      Mutex.init(shm.buffer, 64).lock().unlock();
      tx.send("through the ring");
      check(rx.recvText(0) === "through the ring", "a blocking receive");
      // One array sent and received into again and again: from the second time on, it passes
      // by its address, which the library tells (sb_address_of).
      const message = new TextEncoder().encode("again");
      const target = new Uint8Array(16);
      for (let i = 0; i < 4; i++) {
        tx.send(message);
        check(rx.recvInto(target, 0) === message.length, "a receive into one array");
        check(new TextDecoder().decode(target.subarray(0, 5)) === "again", "its bytes");
      }
    }),
    async: await outcome(async () => {
      const woken = waitAsync(words, 0, 7, 5000);
      Atomics.store(words, 0, 8);
      notify(words, 0);
      check(await woken === "ok", "waitAsync: woken");
      const received = rx.recvAsync(5000);
      tx.send("later");
      check(new TextDecoder().decode((await received)!) === "later", "recvAsync: the message");
    }),
    errors: await outcome(() => {
      refused("ENOENT", () => SharedMemory.open({ name: `${name}-none` }));
      refused("EEXIST", () => SharedMemory.create({ name }, 4096));
      refused("EINVAL", () => Mutex.open(shm.buffer, 128));
      refused("ENOENT", () => Channel.open({ name: `${channelName}-none` }));
    }),
  };
  console.log(`result ${JSON.stringify(result)}`);
} finally {
  channel.close();
  channel.unlink();
  shm.close();
  shm.unlink();
}
