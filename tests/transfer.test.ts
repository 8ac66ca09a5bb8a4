/**
 * Moving a buffer over a segment, by every route the engines offer: the move either works (the
 * moved buffer still reads and writes the segment after the sender closed and dropped it, and
 * another process sees its writes) or is refused by the runtime with its own error; the process
 * never crashes. Each move runs in a child process whose exit status is checked, so a SIGSEGV
 * would fail the test instead of killing the runner.
 *
 * @module
 */

import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import {
  cleanup,
  detached,
  lacking,
  lib,
  runtime,
  scriptCommand,
  segmentMappings,
  start,
  test,
  testUnless,
  uniqueKey,
  uniqueName,
} from "./harness.ts";
import { startWorker } from "./children/lib.ts";

const { SharedMemory } = lib;

/** Every route by which an engine moves an ArrayBuffer's memory to another object. */
const ROUTES = [
  "worker",
  "port",
  "structuredClone",
  "structuredClone-set",
  "transfer",
  "captured-transfer",
  "byob-read",
  "enqueue",
  "vm",
] as const;

/** Node 21 and newer: `ArrayBuffer.prototype.transfer` exists. */
const newNode = runtime === "node" && typeof ArrayBuffer.prototype.transfer === "function";
/** Node.js posts and clones these buffers by copy (20) or refuses them (21+): never a move. */
const POSTED = ["worker", "port", "structuredClone", "structuredClone-set"];

/**
 * The routes each runtime refuses with its own error (a move that is not refused must work).
 * Deno and Bun make every move safe: Deno's Node-API buffers and Bun's `bun:ffi` buffers carry
 * their reference along. Node 21+ refuses to post or clone a Node-API buffer with a transfer list
 * (`DataCloneError`) and moves it safely otherwise; Node 20 has no `transfer()` at all.
 */
const REFUSED: Partial<Record<string, readonly string[]>> = {
  node: newNode ? POSTED : ["transfer", "captured-transfer", "vm"],
};

/** The routes that copy instead of moving: Node 20 ignores such a buffer in a transfer list. */
const COPIED: Partial<Record<string, readonly string[]>> = {
  node: newNode ? [] : POSTED,
};

/** The child's command line: this runtime, with GC exposed and the least permissions. */
function moveCommand(route: string, name: string): string[] {
  return scriptCommand(runtime, "ownership/move.ts", [route, name]);
}

for (const route of ROUTES) {
  test(`a buffer moved by ${route} survives close() and collection, or the move is refused`, async () => {
    const name = uniqueName(`mv-${route}`);
    try {
      using shm = SharedMemory.create({ name }, 64);
      new Uint8Array(shm.buffer)[3] = 0x33;
      const r = await start(moveCommand(route, name)).done;
      assert.equal(r.signal, null, `the child was killed by ${r.signal}:\n${r.stderr}`);
      assert.equal(r.code, 0, `the child failed:\n${r.stderr}`);
      const line = r.stdout.split("\n").find((l) => l.startsWith("result "));
      assert.ok(line, `no result line:\n${r.stdout}\n${r.stderr}`);
      const result = JSON.parse(line.slice("result ".length));
      if (REFUSED[runtime]?.includes(route)) {
        assert.equal(result.outcome, "refused", `the runtime refuses ${route}`);
        assert.match(result.error, /\S/, "a refusal says why");
        return;
      }
      if (COPIED[runtime]?.includes(route)) {
        assert.equal(result.outcome, "copied", `the runtime copies for ${route}`);
        return;
      }
      assert.equal(result.outcome, "moved", "the moved buffer is the segment, not a copy");
      assert.equal(result.detached, true, "the sender's buffer is detached by the move");
      const bytes = new Uint8Array(shm.buffer);
      assert.equal(result.read, 0x33, "the moved buffer read the segment after close()");
      assert.equal(bytes[1], 0x77, "its write after close() reached the segment");
      assert.equal(bytes[2], 0x42);
    } finally {
      cleanup({ name });
    }
  });
}

test("posting a shared buffer without a transfer list copies it", async () => {
  const name = uniqueName("copy");
  const w = await startWorker("ownership/move_worker.ts");
  const ask = (message: unknown) => w.ask(message);
  try {
    using shm = SharedMemory.create({ name }, 64);
    new Uint8Array(shm.buffer)[0] = 21;
    assert.equal(await ask({ buffer: shm.buffer }), 64);
    assert.equal(detached(shm.buffer), false);
    assert.equal(await ask({ read: 0 }), 21);
    new Uint8Array(shm.buffer)[0] = 22;
    assert.equal(await ask({ read: 0 }), 21, "the Worker holds a copy");
  } finally {
    w.stop();
    cleanup({ name });
  }
});

const noTransfer = runtime === "node" && !newNode &&
  lacking("Node 20 has no ArrayBuffer.prototype.transfer");
testUnless(
  noTransfer,
  "close() detaches the buffers still here and releases their references at once",
  () => {
    const name = uniqueName("close");
    try {
      const before = lib.openHandleCount();
      const shm = SharedMemory.create({ name }, 4096);
      const buffer = shm.buffer;
      const view = shm.view(0, 16);
      const bytes = new Uint8Array(buffer);
      const moved = shm.view(16, 16).transfer();
      new Uint8Array(moved)[0] = 5;
      shm.close();
      assert.equal(buffer.detached, true);
      assert.equal(view.detached, true);
      assert.equal(bytes.length, 0);
      assert.equal(bytes[0], undefined, "nothing touches the old memory");
      // The moved buffer keeps its own reference until it is collected (at most one more: a
      // buffer dropped by an earlier test may be let go of meanwhile, on a thread of the engine's),
      // and with it the segment's mapping, which this process can see on Linux.
      assert.ok(lib.openHandleCount() <= before + 1, "close() released the rest at once");
      if (existsSync("/proc/self/maps")) {
        assert.equal(segmentMappings([], [name]), 1, "the moved buffer keeps the segment mapped");
      }
      new Uint8Array(moved)[1] = 6;
      using again = SharedMemory.open({ name });
      assert.deepEqual([...new Uint8Array(again.view(16, 2))], [5, 6]);
    } finally {
      cleanup({ name });
    }
  },
);

test("a transfer or detached defined on a buffer does not keep close() or detachSharedBuffer() from detaching it", () => {
  // Deno and Node.js closed the buffer's reference after calling the buffer's own `transfer`:
  // a no-op one left it attached to unmapped memory, and the next access was a SIGSEGV. Bun
  // left it attached and readable after close().
  const name = uniqueName("own-transfer");
  const key = uniqueKey();
  const engineByteLength = Object.getOwnPropertyDescriptor(ArrayBuffer.prototype, "byteLength")!
    .get!;
  try {
    const shm = SharedMemory.create({ name }, 1 << 16);
    SharedMemory.unlink({ name }); // its memory goes with the last reference
    const seed = lib.createSharedBuffer(key, 4096, true);
    SharedMemory.unlink({ key });
    const buffers = [shm.buffer, shm.view(0, 4096), shm.view(4096), seed];
    for (const buffer of buffers) {
      Object.defineProperty(buffer, "transfer", { value: () => buffer });
      Object.defineProperty(buffer, "detached", { value: true });
    }
    const arrays = buffers.map((buffer) => new Uint8Array(buffer));
    shm.close();
    lib.detachSharedBuffer(seed);
    for (const [i, buffer] of buffers.entries()) {
      assert.equal(engineByteLength.call(buffer), 0, `buffer ${i} is detached`);
    }
    // Whatever is mapped now where the old segments were, nothing reaches it through them.
    using other = SharedMemory.create({ name }, 1 << 16);
    new Uint8Array(other.buffer).fill(9);
    for (const array of arrays) {
      assert.equal(array.length, 0);
      assert.equal(array[0], undefined);
    }
  } finally {
    cleanup({ name });
    cleanup({ key });
  }
});
