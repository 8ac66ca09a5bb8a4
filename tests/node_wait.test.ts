/**
 * `waitAsync` in Node.js never blocks the event loop nor Node's own thread pool: three thousand
 * pending waits leave timers, file reads (which run on that pool) and other promises running,
 * and each ends with its own notify.
 *
 * @module
 */

import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { cleanup, lib, runtime, test, uniqueName, within } from "./harness.ts";

const { SharedMemory, notify, waitAsync } = lib;
const PENDING = 3000;

if (runtime === "node") {
  test(`${PENDING} pending waitAsync calls leave timers, file reads and promises running`, async () => {
    const name = uniqueName("nodewait");
    try {
      using shm = SharedMemory.create({ name }, PENDING * 4);
      const words = new Int32Array(shm.buffer);
      const settled: string[] = [];
      const waits = Array.from(
        { length: PENDING },
        (_, i) => waitAsync(words, i, 0).then((r) => (settled[i] = r)),
      );
      // Node's thread pool has 4 threads: a file read waits behind anything that occupies them.
      const reads = await within(
        Promise.all(Array.from({ length: 16 }, () => readFile("/proc/self/stat", "utf8"))),
        30_000,
        "file reads while waits are pending",
      );
      assert.equal(reads.length, 16);
      await within(new Promise((resolve) => setTimeout(resolve, 5)), 30_000, "a timer");
      assert.equal(settled.filter(Boolean).length, 0, "no wait ended by itself");
      for (let i = 0; i < PENDING; i += 2) {
        Atomics.store(words, i, 1);
        // At most its one waiter; a wait whose native thread was re-arming when the notify came
        // ends through the changed word, uncounted.
        assert.ok(notify(words, i) <= 1, `word ${i} had one waiter`);
      }
      await within(Promise.all(waits.filter((_, i) => i % 2 === 0)), 30_000, "the even waits");
      assert.equal(settled.filter(Boolean).length, PENDING / 2, "only the notified waits ended");
      for (let i = 1; i < PENDING; i += 2) {
        Atomics.store(words, i, 1);
        notify(words, i);
      }
      await within(Promise.all(waits), 30_000, "the odd waits");
      assert.deepEqual(new Set(settled), new Set(["ok"]));
    } finally {
      cleanup({ name });
    }
  });
}
