/**
 * Thousands of pending `waitAsync` calls: file I/O, timers and new waits keep working while they
 * pend, the native service watches them on few threads, another process wakes them all, and
 * closing the segment ends the ones still pending with `EBADF`.
 *
 * @module
 */

import assert from "node:assert/strict";
import { readdirSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { fileURLToPath } from "node:url";
import {
  type Child,
  cleanup,
  collectGarbage,
  finished,
  killAll,
  lib,
  other,
  runtime,
  sleep,
  spawn,
  test,
  uniqueKey,
  uniqueName,
  within,
} from "./harness.ts";

const { SharedMemory, SharedMemoryError, createSharedBuffer, detachSharedBuffer, waitAsync } = lib;

/** Distinct words waited on, each by one waitAsync. */
const DISTINCT = 1950;
/** waitAsync calls that share word 0. */
const SHARED = 50;

/** This process's thread count, or undefined where /proc does not say. */
function threads(): number | undefined {
  try {
    return readdirSync("/proc/self/task").length;
  } catch {
    return undefined;
  }
}

test(
  `${DISTINCT + SHARED} pending waitAsync: file reads, timers and new waits still run; a ${
    other(runtime)
  } process wakes them all`,
  async () => {
    const name = uniqueName("many");
    const children: Child[] = [];
    try {
      using shm = SharedMemory.create({ name }, 4 * (DISTINCT + 2));
      const i32 = new Int32Array(shm.buffer);
      const before = threads();
      const pending: Promise<string>[] = [];
      for (let i = 1; i <= DISTINCT; i++) pending.push(waitAsync(i32, i, 0));
      for (let i = 0; i < SHARED; i++) pending.push(waitAsync(i32, 0, 0));
      let settled = 0;
      for (const p of pending) p.then(() => settled++);

      // The event loop, file I/O and timers are not starved.
      const self = fileURLToPath(import.meta.url);
      const text = await within(readFile(self, "utf8"), 30_000, "a file read with waits pending");
      assert.ok(text.includes("pending waitAsync"));
      await within(sleep(5), 30_000, "a timer with waits pending");
      const extra = new Int32Array(shm.buffer, 4 * (DISTINCT + 1), 1);
      const late = waitAsync(extra, 0, 0, 20);
      assert.equal(await within(late, 30_000, "one more waitAsync"), "timed-out");
      assert.equal(settled, 0, "nothing ended before the notify");

      const during = threads();
      if (before !== undefined && during !== undefined) {
        // One native thread per 127 distinct words plus one per wait on the shared word, not one
        // per wait (the runtimes' own threads come and go too: allow some).
        const added = during - before;
        assert.ok(added < 200, `${added} threads for ${pending.length} waits`);
      }

      const notifier = spawn(children, other(runtime), "wait/notify_each.ts", [
        name,
        String(DISTINCT),
      ]);
      const done = await finished(notifier, "notifier");
      const woken = Number(done.stdout.match(/notified (\d+)/)?.[1]);
      const results = await within(Promise.all(pending), 60_000, "every wait to end");
      assert.ok(results.every((r) => r === "ok"), "every wait woke");
      // A wait whose thread was re-arming when its notify came ends through the changed word,
      // uncounted; none is counted twice.
      assert.ok(woken > 0 && woken <= pending.length, `notify counted ${woken}`);
    } finally {
      killAll(children);
      cleanup({ name });
    }
  },
);

test("close() ends pending waitAsync calls with EBADF; other segments' waits go on", async () => {
  const a = SharedMemory.create({ name: uniqueName("close-a") }, 4096);
  using b = SharedMemory.create({ name: uniqueName("close-b") }, 4096);
  try {
    const ia = new Int32Array(a.buffer);
    const ib = new Int32Array(b.buffer);
    const onA = Array.from({ length: 100 }, (_, i) => waitAsync(ia, i % 10, 0));
    const onB = waitAsync(ib, 0, 0, 30_000);
    a.close();
    const outcomes = await within(Promise.allSettled(onA), 30_000, "waits on the closed segment");
    for (const o of outcomes) {
      assert.equal(o.status, "rejected");
      const err = (o as PromiseRejectedResult).reason;
      assert.ok(err instanceof SharedMemoryError, String(err));
      assert.equal(err.code, "EBADF");
      assert.match(
        err.message,
        /waitAsync on element \d: the mapping went while the wait was pending: its segment was closed/,
      );
    }
    Atomics.store(ib, 0, 1);
    lib.notify(ib, 0);
    assert.equal(await within(onB, 30_000, "the other segment's wait"), "ok");
  } finally {
    a.close();
    cleanup(a.id);
    cleanup(b.id);
  }
});

test("detachSharedBuffer ends pending waitAsync calls on that buffer with EBADF", async () => {
  const key = uniqueKey();
  try {
    const buffer = createSharedBuffer(key, 64, true);
    const pending = waitAsync(new Int32Array(buffer), 3, 0);
    detachSharedBuffer(buffer);
    await assert.rejects(
      within(pending, 30_000, "the wait"),
      (e: unknown) => e instanceof SharedMemoryError && e.code === "EBADF",
    );
  } finally {
    cleanup({ key });
  }
});

// A pending wait held its view (an async function keeps its arguments), so the buffer was never
// collected and the wait never ended: the process never exited.
for (const how of ["createSharedBuffer", "SharedMemory"]) {
  test(`a pending waitAsync holds nothing of its view: a buffer of ${how} dropped without close() is collected and ends the wait with EBADF`, async () => {
    const key = uniqueKey();
    try {
      const start = () => {
        const buffer = how === "createSharedBuffer"
          ? createSharedBuffer(key, 4096, true)
          : SharedMemory.create({ key }, 4096).buffer;
        return waitAsync(new Int32Array(buffer), 5, 0).then(
          () => "ended",
          (e) => e instanceof SharedMemoryError ? e.code : String(e),
        );
      };
      const pending = start();
      let outcome: string | undefined;
      pending.then((o) => outcome = o);
      for (let i = 0; i < 100 && outcome === undefined; i++) await collectGarbage(1);
      assert.equal(await within(pending, 10_000, "the wait"), "EBADF");
    } finally {
      cleanup({ key });
    }
  });
}

test("past the most async waits a process keeps, waitAsync and a channel's recvAsync and sendAsync reject with EAGAIN saying so, at once", async () => {
  const { Channel } = lib;
  const MOST = 16_384; // 4,096 where each wait has a thread: the waits past it reject the same way
  const id = { name: uniqueName("wait-most") };
  const channelId = { name: uniqueName("wait-most-ch") };
  const shm = SharedMemory.create(id, 4 * (MOST + 1));
  const words = new Int32Array(shm.buffer);
  const eagain = (what: string) => (e: unknown) => {
    assert.ok(e instanceof SharedMemoryError && e.code === "EAGAIN", `${what}: ${e}`);
    assert.match(e.message, /16,384 async waits pending already/, what);
    return true;
  };
  try {
    const pending = Array.from(
      { length: MOST },
      (_, i) => waitAsync(words, i, 0, 60_000).then(() => "ended", (e) => e.code),
    );
    await assert.rejects(waitAsync(words, MOST, 0, 60_000), eagain("waitAsync"));
    using ch = Channel.create(channelId, { capacity: 4096 });
    SharedMemory.unlink(channelId);
    const rx = ch.receiver({ spin: 0 });
    const tx = ch.sender({ spin: 0 });
    // Before, the wait that did not start was taken for a wake-up: the receive looked again at
    // once, over and over, held the event loop until its deadline, then timed out.
    await assert.rejects(rx.recvAsync(2000), eagain("recvAsync"));
    const message = new Uint8Array(100);
    while (tx.trySend(message));
    await assert.rejects(tx.sendAsync(message, 2000), eagain("sendAsync"));
    // The channel goes on: what was sent is there, and a send fits once a message is taken.
    assert.equal(rx.recv(0)?.length, 100);
    tx.send(message, 0);
    shm.close();
    const ends = await Promise.all(pending);
    assert.ok(ends.every((end) => end === "EBADF" || end === "EAGAIN"), "closed: EBADF");
  } finally {
    shm.close();
    cleanup(id);
    cleanup(channelId);
  }
});
