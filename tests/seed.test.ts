import assert from "node:assert/strict";
import { cleanup, detached, lacking, lib, test, testUnless, uniqueKey } from "./harness.ts";
import { sysvSegment, whyNoOsView } from "./children/segment/os.ts";

const { createSharedBuffer, detachSharedBuffer, SharedMemory } = lib;
/** Why the kernel's tables of segments cannot be read here, or false (Linux). */
const noOsView = whyNoOsView();
const osView = noOsView === false;

test("createSharedBuffer: initialize creates, a plain call attaches to the same bytes", () => {
  const key = uniqueKey();
  try {
    const writer = createSharedBuffer(key, 80, true);
    assert.ok(writer instanceof ArrayBuffer);
    assert.equal(writer.byteLength, 80);
    const values = new Float64Array(writer);
    for (let i = 0; i < 10; i++) values[i] = 1 / i;
    const reader = createSharedBuffer(key, 80);
    assert.deepEqual([...new Float64Array(reader)], [...values]);
    detachSharedBuffer(reader);
    detachSharedBuffer(writer);
  } finally {
    cleanup({ key });
  }
});

test("the module whole is the default export, as programs written for the seed's CommonJS module import it", () => {
  // `import sb from "shared-buffer"` is how an ES module uses the seed (its exports are one
  // CommonJS object); without a default export those programs failed to load.
  const whole = lib.default;
  for (const [name, value] of Object.entries(lib)) {
    if (name !== "default") assert.equal(whole[name as keyof typeof whole], value, name);
  }
  const key = uniqueKey();
  try {
    const writer = whole.createSharedBuffer(key, 16, true);
    new Uint8Array(writer)[3] = 5;
    const reader = createSharedBuffer(key, 16);
    assert.equal(new Uint8Array(reader)[3], 5);
    whole.detachSharedBuffer(reader);
    whole.detachSharedBuffer(writer);
    assert.equal(detached(writer), true);
  } finally {
    cleanup({ key });
  }
});

test("createSharedBuffer: initialize on an existing segment keeps its data (the seed zeroed it)", () => {
  const key = uniqueKey();
  try {
    const first = createSharedBuffer(key, 64, true);
    new Uint8Array(first)[10] = 99;
    const second = createSharedBuffer(key, 64, true);
    assert.equal(new Uint8Array(second)[10], 99);
  } finally {
    cleanup({ key });
  }
});

test("createSharedBuffer: initialize is any value, taken by JavaScript truthiness as the seed did", () => {
  // It threw "initialize must be a boolean" for 1 or "true", which the seed (V8's
  // BooleanValue()) took as true: not a drop-in. Its type takes them too (no cast here): typed
  // code written for the seed compiles.
  for (const initialize of [true, 1, "true", "false", "yes", {}, [], -1]) {
    const key = uniqueKey();
    try {
      const buffer = createSharedBuffer(key, 64, initialize);
      assert.equal(buffer.byteLength, 64, `${String(initialize)} creates`);
      detachSharedBuffer(buffer);
    } finally {
      cleanup({ key });
    }
  }
  for (const initialize of [false, 0, "", null, undefined, NaN, 0n]) {
    const key = uniqueKey();
    assert.throws(
      () => createSharedBuffer(key, 64, initialize),
      (e) => e instanceof lib.SharedMemoryError && e.code === "ENOENT",
      `${String(initialize)} only opens`,
    );
    cleanup({ key });
  }
  // SharedMemory's own options stay strict.
  assert.throws(
    () => SharedMemory.create({ key: uniqueKey() }, 64, { populate: 1 as never }),
    (e) => e instanceof TypeError && /options\.populate must be a boolean/.test(e.message),
  );
});

test("createSharedBuffer: a smaller size attaches to a prefix; a larger one is refused", () => {
  const key = uniqueKey();
  try {
    createSharedBuffer(key, 64, true);
    assert.equal(createSharedBuffer(key, 16).byteLength, 16);
    assert.throws(
      () => createSharedBuffer(key, 65),
      (e) => e instanceof lib.SharedMemoryError && e.code === "EINVAL",
    );
    assert.throws(
      () => createSharedBuffer(key, 32, true),
      (e) => e instanceof lib.SharedMemoryError && e.code === "EINVAL",
      "initialize must not attach to a segment of another size",
    );
  } finally {
    cleanup({ key });
  }
});

test("detachSharedBuffer unmaps at once: the buffer and its views read as empty", () => {
  const key = uniqueKey();
  try {
    const buffer = createSharedBuffer(key, 64, true);
    const bytes = new Uint8Array(buffer);
    bytes[0] = 7;
    const before = lib.openHandleCount();
    const attached = osView ? sysvSegment(key)!.nattch : 0;
    detachSharedBuffer(buffer);
    // At most: a buffer dropped by an earlier test may be let go of meanwhile (Deno frees them on
    // a thread of its own after a collection). The segment's own count of attaches is exact.
    assert.ok(lib.openHandleCount() <= before - 1, "its mapping reference is gone");
    if (osView) assert.equal(sysvSegment(key)!.nattch, attached - 1, "it is unmapped");
    assert.equal(buffer.byteLength, 0);
    assert.equal(bytes.length, 0);
    assert.equal(bytes[0], undefined);
    bytes[0] = 1; // ignored, never a crash
    const again = createSharedBuffer(key, 64);
    assert.equal(new Uint8Array(again)[0], 7, "the segment itself stays");
  } finally {
    cleanup({ key });
  }
});

test("detachSharedBuffer works on a SharedMemory buffer; the object then makes a new one", () => {
  const key = uniqueKey();
  try {
    using shm = SharedMemory.create({ key }, 64);
    const old = shm.buffer;
    detachSharedBuffer(old);
    assert.equal(detached(old), true);
    assert.notEqual(shm.buffer, old);
    assert.equal(shm.buffer.byteLength, 64);
  } finally {
    cleanup({ key });
  }
});

test("createSharedBuffer and view() beyond the runtime's largest buffer: a RangeError naming the view() to use, never an abort", () => {
  // Node.js 20 cannot make an external buffer over 4 GiB; asking it to aborted the process.
  const key = uniqueKey();
  const size = 2 ** 32 + 1;
  try {
    // A keyed segment's pages are made on first touch: 4 GiB of address space, no memory.
    using shm = SharedMemory.create({ key }, size);
    const attempts: [string, () => ArrayBuffer][] = [
      ["createSharedBuffer", () => createSharedBuffer(key, size)],
      ["createSharedBuffer, initialize", () => createSharedBuffer(key, size, true)],
      ["view", () => shm.view(0, size)],
      ["buffer", () => shm.buffer],
    ];
    for (const [what, attempt] of attempts) {
      let buffer: ArrayBuffer;
      try {
        buffer = attempt();
      } catch (err) {
        assert.ok(err instanceof RangeError, `${what}: ${err}`);
        // createSharedBuffer has no view() of its own: its message names SharedMemory's.
        // (the call that opens or creates as it did, the key in hex as in every other message).
        const hex = key.toString(16);
        assert.match(
          err.message,
          what === "createSharedBuffer"
            ? new RegExp(
              `largest ArrayBuffer .* use SharedMemory\\.open\\(\\{ key: 0x${hex} \\}\\)\\.view\\(byteOffset, byteLength\\)`,
            )
            : what === "createSharedBuffer, initialize"
            ? new RegExp(
              `largest ArrayBuffer .* use SharedMemory\\.openOrCreate\\(\\{ key: 0x${hex} \\}, ${size}\\)\\.view\\(byteOffset, byteLength\\)`,
            )
            : /largest ArrayBuffer .* use view\(byteOffset, byteLength\)/,
        );
        continue;
      }
      assert.equal(buffer.byteLength, size, what);
      if (what.startsWith("createSharedBuffer")) detachSharedBuffer(buffer);
    }
    // A window that fits is the way in, in every runtime.
    const tail = new Uint8Array(shm.view(size - 17, 17)); // from a multiple of 8, to the end
    tail[16] = 7;
    assert.equal(tail[16], 7);
  } finally {
    cleanup({ key });
  }
});

testUnless(
  typeof ArrayBuffer.prototype.transfer !== "function" &&
    lacking("Node.js 20 has no ArrayBuffer.prototype.transfer"),
  "detachSharedBuffer of a buffer moved by transfer() is a TypeError; the moved buffer keeps working",
  () => {
    // It used to return as if it had unmapped the segment, while the buffer the memory moved to
    // kept it mapped.
    const key = uniqueKey();
    try {
      const buffer = createSharedBuffer(key, 64, true);
      const moved = buffer.transfer();
      assert.throws(
        () => detachSharedBuffer(buffer),
        (e) => e instanceof TypeError && /moved/.test(e.message),
      );
      new Uint8Array(moved)[3] = 5;
      assert.equal(new Uint8Array(createSharedBuffer(key, 64))[3], 5);
      assert.throws(() => detachSharedBuffer(moved), TypeError, "not this library's handle");
    } finally {
      cleanup({ key });
    }
  },
);

testUnless(
  noOsView,
  "createSharedBuffer: new segments are owner-only unless options.mode widens them, as the seed's 0o666",
  () => {
    const [mine, shared] = [uniqueKey(), uniqueKey()];
    try {
      detachSharedBuffer(createSharedBuffer(mine, 64, true));
      detachSharedBuffer(createSharedBuffer(shared, 64, true, { mode: 0o666 }));
      assert.equal(sysvSegment(mine)?.perms, "600");
      assert.equal(sysvSegment(shared)?.perms, "666");
      // The owner must keep reading and writing it, as SharedMemory.create requires.
      assert.throws(() => createSharedBuffer(uniqueKey(), 64, true, { mode: 0o444 }), RangeError);
    } finally {
      cleanup({ key: mine });
      cleanup({ key: shared });
    }
  },
);
