import assert from "node:assert/strict";
import {
  cleanup,
  collectGarbage,
  lib,
  runtime,
  test as anyTest,
  testUnless,
  uniqueName,
} from "./harness.ts";

// Node has no web Worker: tests/node_transfer.test.ts covers it with worker_threads.
const test: typeof anyTest = (name, fn) =>
  testUnless(runtime === "node" && "see node_transfer.test.ts", name, fn);

const { SharedMemory } = lib;

function worker(): {
  ask(message: unknown, transfer?: Transferable[]): Promise<number>;
  stop(): void;
} {
  const w = new Worker(new URL("./children/echo_worker.ts", import.meta.url).href, {
    type: "module",
  });
  return {
    ask: (message, transfer) =>
      new Promise((resolve, reject) => {
        w.onmessage = (e) => resolve(e.data);
        w.onerror = (e) => reject(e);
        w.postMessage(message, transfer ?? []);
      }),
    stop: () => w.terminate(),
  };
}

test("posting a shared buffer without a transfer list copies it", async () => {
  const name = uniqueName("copy");
  const w = worker();
  try {
    using shm = SharedMemory.create({ name }, 64);
    new Uint8Array(shm.buffer)[0] = 21;
    assert.equal(await w.ask(shm.buffer), 21);
    assert.equal(shm.buffer.detached, false);
  } finally {
    w.stop();
    cleanup({ name });
  }
});

if (runtime === "deno") {
  test("Deno refuses to move a shared buffer, instead of crashing later", async () => {
    const name = uniqueName("move");
    const w = worker();
    try {
      using shm = SharedMemory.create({ name }, 64);
      const buffer = shm.buffer;
      new Uint8Array(buffer)[0] = 8;
      const refused = (e: unknown) => e instanceof DOMException && e.name === "DataCloneError";
      await assert.rejects(w.ask(buffer, [buffer]), refused);
      assert.throws(() => structuredClone(buffer, { transfer: [buffer] }), refused);
      const { port1, port2 } = new MessageChannel();
      assert.throws(() => port1.postMessage(buffer, [buffer]), refused);
      assert.throws(() => port1.postMessage(buffer, { transfer: [buffer] }), refused);
      port1.close();
      port2.close();
      assert.throws(() => buffer.transfer(), TypeError);
      assert.throws(() => buffer.transfer(32), TypeError);
      assert.throws(() => buffer.transferToFixedLength(), TypeError);
      assert.equal(new Uint8Array(buffer)[0], 8, "the refused buffer is untouched");
      // Other buffers move as usual.
      const plain = new ArrayBuffer(8);
      assert.equal(structuredClone(plain, { transfer: [plain] }).byteLength, 8);
      assert.equal(new ArrayBuffer(4).transfer(16).byteLength, 16);
      // transfer(0) only detaches, so it stays allowed.
      const view = shm.view(0, 8);
      assert.equal(view.transfer(0).byteLength, 0);
      assert.equal(view.detached, true);
    } finally {
      w.stop();
      cleanup({ name });
    }
  });
} else if (runtime === "bun") {
  test("Bun moves a shared buffer to a Worker; the mapping lives until the moved copy dies", async () => {
    const name = uniqueName("move");
    const w = worker();
    try {
      const shm = SharedMemory.create({ name }, 64);
      const buffer = shm.buffer;
      new Uint8Array(buffer)[0] = 8;
      assert.equal(await w.ask(buffer, [buffer]), 8);
      assert.equal(buffer.detached, true);
      const moved = shm.view(0, 64).transfer();
      shm.close();
      // Both moved buffers still reach the memory after close().
      assert.equal(new Uint8Array(moved)[0], 8);
      assert.equal(await w.ask("again"), 8);
      using writer = SharedMemory.open({ name });
      new Uint8Array(writer.buffer)[0] = 9;
      assert.equal(await w.ask("again"), 9, "the worker's copy is still shared memory");
      assert.equal(new Uint8Array(moved)[0], 9);
    } finally {
      w.stop();
      await collectGarbage(2);
      cleanup({ name });
    }
  });
}
