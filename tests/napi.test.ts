/**
 * The Node-API module on its own, loaded a second time with `process.dlopen` as the adapters do:
 * what `wrap` refuses, and the memory report that `unlinkName` makes and takes back.
 *
 * @module
 */

import assert from "node:assert/strict";
import process from "node:process";
import { cleanup, collectGarbage, lib, runtime, test, uniqueKey, uniqueName } from "./harness.ts";
import { loadNodeApi } from "../ts/napi.ts";
import { backend } from "../ts/backend.ts";
import { OPEN, OWNER_TRUSTED } from "../ts/ffi.ts";

const { SharedMemory } = lib;
const napi = loadNodeApi(lib.loadLibrary(), process.dlopen);
const MiB = 1024 * 1024;

test("wrap refuses a closed handle, bytes outside the mapping and a non-BigInt address", async () => {
  const name = uniqueName("napi-wrap");
  // Objects dropped by earlier tests would change the handle count while this one counts.
  await collectGarbage(3);
  try {
    using shm = SharedMemory.create({ name }, 4096);
    const handles = lib.openHandleCount();
    assert.throws(
      () => napi.wrap(2 ** 31 - 7, 4096n, 16),
      (e: Error & { code?: string }) => e.code === "EBADF" && /not open/.test(e.message),
    );
    const out = new BigUint64Array(7);
    const bytes = new TextEncoder().encode(name);
    if (runtime === "node") {
      // Node.js opens through Node-API: an out array shorter than one SbMapping is refused (the
      // open would write past its end).
      const short = new BigUint64Array(6);
      assert.throws(
        () => backend().openName(bytes, 0n, OPEN, 0, 0, BigInt(OWNER_TRUSTED), short),
        /out must hold 7 elements/,
      );
      assert.equal(lib.openHandleCount(), handles, "nothing opened");
    }
    assert.equal(backend().openName(bytes, 0n, OPEN, 0, 0, BigInt(OWNER_TRUSTED), out), 0);
    const [handle, address] = [Number(out[0]), out[1]];
    assert.throws(() => napi.wrap(handle, address + 4000n, 200), RangeError);
    assert.throws(() => napi.wrap(handle, address - 1n, 1), RangeError);
    assert.throws(() => napi.wrap(handle, 2n ** 64n - 1n, 2), RangeError);
    assert.throws(() => napi.wrap(handle, Number(address) as unknown as bigint, 16), TypeError);
    assert.throws(() => napi.wrap(handle, address, 0), TypeError);
    assert.throws(() => napi.wrap(handle, address, -1), TypeError);
    assert.throws(() => napi.wrap(handle, address, 1.5), TypeError);
    assert.equal(lib.openHandleCount(), handles + 1, "a refused wrap leaves the handle open");
    if (runtime === "node") {
      // Node runs a Node-API buffer's finalizer when the buffer object is collected.
      assert.equal(napi.wrap(handle, address + 4095n, 1).byteLength, 1);
      for (let i = 0; i < 100 && lib.openHandleCount() > handles; i++) await collectGarbage(1);
    } else {
      const buffer = napi.wrap(handle, address + 4095n, 1);
      assert.equal(buffer.byteLength, 1);
      buffer.transfer(0);
      // Detaching releases the buffer's memory, and its finalizer closes the handle it took.
      for (let i = 0; i < 1000 && lib.openHandleCount() > handles; i++) {
        Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 1);
      }
    }
    assert.equal(lib.openHandleCount(), handles);
    assert.ok(backend().close(handle) < 0, "already closed by the finalizer");
    assert.equal(lib.openHandleCount(), handles, "no handle is left behind");
    assert.equal(shm.byteLength, 4096);
  } finally {
    cleanup({ name });
  }
});

test("takeViews hands back the views of one group only, once, and wrap refuses a closed group", () => {
  const name = uniqueName("napi-views");
  const b = backend();
  try {
    using one = SharedMemory.create({ name }, 4096);
    using two = SharedMemory.open({ name });
    const out = new BigUint64Array(7);
    const bytes = new TextEncoder().encode(name);
    const open = () => {
      assert.equal(b.openName(bytes, 0n, OPEN, 0, 0, BigInt(OWNER_TRUSTED), out), 0);
      return [Number(out[0]), out[1]] as const;
    };
    const [groupA, address] = open();
    const [groupB, addressB] = open();
    const views = (group: number, at: bigint, count: number) =>
      Array.from({ length: count }, (_, i) => napi.wrap(b.dup(group), at + BigInt(i), 8, group));
    const a = views(groupA, address, 3);
    const other = views(groupB, addressB, 2);
    const plain = napi.wrap(b.dup(groupA), address, 8);
    const taken = napi.takeViews(groupA);
    assert.equal(taken.length, 3);
    assert.ok(a.every((view) => taken.includes(view)), "exactly the group's views");
    assert.deepEqual(napi.takeViews(groupA), [], "forgotten once handed back");
    assert.deepEqual(napi.takeViews(groupB), other);
    assert.ok(!taken.includes(plain), "a buffer made without a group is never handed back");
    const closed = b.dup(groupA);
    assert.equal(b.close(closed), 0);
    const refused = b.dup(groupA);
    assert.throws(
      () => napi.wrap(refused, address, 8, closed),
      (e: Error & { code?: string }) => e.code === "EBADF" && /group handle/.test(e.message),
    );
    assert.equal(b.close(refused), 0, "a refused wrap leaves its handle open");
    assert.throws(
      () => napi.takeViews(closed),
      (e: Error & { code?: string }) => e.code === "EBADF",
    );
    assert.equal(one.byteLength + two.byteLength, 8192);
    b.close(groupA);
    b.close(groupB);
  } finally {
    cleanup({ name });
  }
});

test("unlinking a segment this process maps reports its length, taken back when it is unmapped", () => {
  const name = uniqueName("napi-report");
  try {
    const before = napi.reportedBytes();
    const shm = SharedMemory.create({ name }, MiB);
    new Uint8Array(shm.buffer).fill(1);
    assert.equal(napi.reportedBytes(), before, "a linked segment is not reported");
    assert.equal(napi.unlinkName(name), 0);
    assert.equal(napi.reportedBytes(), before + MiB, "one mapping of 1 MiB, reported once");
    assert.ok(napi.unlinkName(name) < 0, "a second unlink fails (ENOENT)");
    assert.equal(napi.reportedBytes(), before + MiB);
    shm.close();
    assert.equal(napi.reportedBytes(), before, "taken back once the mapping is gone");
  } finally {
    cleanup({ name });
  }
});

test("wrap of more bytes than the runtime's largest buffer is an error, not an abort", () => {
  // Node.js 20 refuses an external buffer over 4 GiB and runs its finalizer at once; freeing the
  // finalizer's data again after the refusal aborted the process ("double free").
  const key = uniqueKey();
  const b = backend();
  try {
    // A keyed segment's pages are made on first touch: 4 GiB of address space, no memory.
    using _shm = SharedMemory.create({ key }, 2 ** 32 + 4096);
    const handles = lib.openHandleCount();
    const out = new BigUint64Array(7);
    assert.equal(b.openKey(key, 0n, OPEN, 0, 0, BigInt(OWNER_TRUSTED), out), 0);
    const [handle, address] = [Number(out[0]), out[1]];
    let made: ArrayBuffer | undefined;
    try {
      made = napi.wrap(handle, address, 2 ** 32 + 1);
    } catch (err) {
      assert.ok(err instanceof Error, `refused with an Error: ${err}`);
      b.close(handle); // closed already where the engine ran the finalizer
      assert.equal(lib.openHandleCount(), handles, "a refused wrap leaves no handle behind");
    }
    if (made) {
      assert.equal(made.byteLength, 2 ** 32 + 1);
      made.transfer(0);
    }
  } finally {
    cleanup({ key });
  }
});

// Bun tells by it whether its FFI opened the same copy of the library as `process.dlopen`: in a
// `bun build --compile` program it did not, and opens the FFI again from `libraryFile`.
test("releaseFn is the address of the module's own sb_release, the FFI's where they are one library", () => {
  assert.ok(Number.isSafeInteger(napi.releaseFn) && napi.releaseFn > 0, `${napi.releaseFn}`);
  const deno = (globalThis as unknown as { Deno?: DenoFfi }).Deno;
  // Bun: `make test-install` runs a compiled program, where the two are two files at first.
  if (runtime !== "deno" || deno === undefined) return;
  const ffi = deno.dlopen(lib.loadLibrary(), {
    sb_release_fn: { parameters: [], result: "usize" },
  });
  try {
    assert.equal(Number(ffi.symbols.sb_release_fn()), napi.releaseFn);
  } finally {
    ffi.close();
  }
});

/** The part of Deno's FFI this file calls (typed here: the suite also compiles for Node.js). */
interface DenoFfi {
  dlopen(
    path: string,
    symbols: { sb_release_fn: { parameters: []; result: "usize" } },
  ): { symbols: { sb_release_fn(): number | bigint }; close(): void };
}
