import assert from "node:assert/strict";
import { readdirSync, readFileSync } from "node:fs";
import {
  cleanup,
  collectGarbage,
  lib,
  pid,
  runtime,
  test,
  uniqueKey,
  uniqueName,
} from "./harness.ts";

const { SharedMemory, createSharedBuffer, openHandleCount } = lib;

/** Lines of /proc/self/maps that are shared-memory segments made by these tests. */
function segmentMappings(): number {
  return readFileSync("/proc/self/maps", "utf8").split("\n")
    .filter((line) => line.includes("/SYSV5b") || line.includes("/dev/shm/sbtest-")).length;
}

/** Keyed segments (any owner) and named segments of this process that exist system-wide. */
function systemSegments(): { keyed: number; named: number } {
  const keyed = readFileSync("/proc/sysvipc/shm", "utf8").split("\n").slice(1)
    .filter((line) => line.trim() !== "").length;
  const named = readdirSync("/dev/shm").filter((f) => f.includes(`-${runtime}-${pid}-`)).length;
  return { keyed, named };
}

test("thousands of create/view/close/unlink cycles leave no mapping, handle or segment", async () => {
  // Objects dropped by earlier tests may be collected in the middle of the loop: collect first.
  await collectGarbage(3);
  const maps = segmentMappings();
  const handles = openHandleCount();
  const system = systemSegments();
  for (let i = 0; i < 1500; i++) {
    for (const id of [{ key: uniqueKey() }, { name: uniqueName("cycle") }]) {
      const shm = SharedMemory.create(id, 8192);
      new Uint8Array(shm.buffer)[i % 8192] = 1;
      new Uint8Array(shm.view(4096, 16))[0] = 2;
      shm.close();
      shm.unlink();
    }
  }
  assert.equal(segmentMappings(), maps, "mappings return to their starting count");
  assert.equal(openHandleCount(), handles, "native handles return to their starting count");
  assert.deepEqual(
    systemSegments(),
    system,
    "segments in the system return to their starting count",
  );
});

test("dropped buffers and objects are unmapped by the garbage collector", async () => {
  const key = uniqueKey();
  const name = uniqueName("gc");
  try {
    SharedMemory.create({ key }, 4096).close();
    SharedMemory.create({ name }, 4096).close();
    await collectGarbage(3);
    const maps = segmentMappings();
    const handles = openHandleCount();
    const made = 2000;
    (() => {
      for (let i = 0; i < made / 2; i++) {
        new Uint8Array(createSharedBuffer(key, 4096))[0] = 1;
        const shm = SharedMemory.open({ name });
        new Uint8Array(shm.view(0, 64))[0] = 1;
      }
    })();
    assert.ok(segmentMappings() > maps, "the buffers were mapped");
    for (let round = 0; round < 30 && openHandleCount() > handles; round++) await collectGarbage(2);
    assert.equal(openHandleCount(), handles, "every dropped buffer and object released its handle");
    assert.equal(segmentMappings(), maps, "and every mapping is gone");
  } finally {
    cleanup({ key });
    cleanup({ name });
  }
});

test("a buffer kept alive stays mapped while its siblings are collected", async () => {
  const key = uniqueKey();
  try {
    const kept = createSharedBuffer(key, 4096, true);
    new Uint8Array(kept)[1] = 5;
    (() => {
      for (let i = 0; i < 200; i++) createSharedBuffer(key, 4096);
    })();
    await collectGarbage(5);
    assert.equal(new Uint8Array(kept)[1], 5);
    lib.detachSharedBuffer(kept);
  } finally {
    cleanup({ key });
  }
});
