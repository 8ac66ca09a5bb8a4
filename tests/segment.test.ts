import assert from "node:assert/strict";
import process from "node:process";
import { inspect } from "node:util";
import { cleanup, detached, lib, repoRoot, test, uniqueKey, uniqueName } from "./harness.ts";

const { SharedMemory, SharedMemoryError } = lib;

function ids(): [string, { key: number } | { name: string }][] {
  return [["keyed", { key: uniqueKey() }], ["named", { name: uniqueName("seg") }]];
}

for (const [kind] of ids()) {
  const fresh = () => ids().find(([k]) => k === kind)![1];

  test(`${kind}: create, open, share bytes, unlink`, () => {
    const id = fresh();
    try {
      const a = SharedMemory.create(id, 4096);
      assert.equal(a.created, true);
      assert.equal(a.byteLength, 4096);
      const b = SharedMemory.open(id);
      assert.equal(b.created, false);
      assert.equal(b.byteLength, 4096, "open discovers the size from the OS");
      assert.ok(new Uint8Array(b.buffer).every((x) => x === 0), "a new segment is zero-filled");
      new Float64Array(a.buffer)[3] = Math.PI;
      assert.equal(new Float64Array(b.buffer)[3], Math.PI);
      assert.equal(a.buffer, a.buffer, "buffer is the same object on every call");
      a.close();
      b.close();
      SharedMemory.unlink(id);
      assert.throws(
        () => SharedMemory.open(id),
        (e) => e instanceof SharedMemoryError && e.code === "ENOENT",
      );
    } finally {
      cleanup(id);
    }
  });

  test(`${kind}: exclusive create fails with EEXIST and names the segment`, () => {
    const id = fresh();
    try {
      using _a = SharedMemory.create(id, 64);
      assert.throws(
        () => SharedMemory.create(id, 64),
        (e) =>
          e instanceof SharedMemoryError && e.code === "EEXIST" && e.errno === 17 &&
          e.message.includes("SharedMemory.create") &&
          e.message.includes("key" in id ? `0x${id.key.toString(16)}` : id.name),
      );
    } finally {
      cleanup(id);
    }
  });

  test(`${kind}: openOrCreate reports which happened and keeps data`, () => {
    const id = fresh();
    try {
      using a = SharedMemory.openOrCreate(id, 128);
      assert.equal(a.created, true);
      new Uint8Array(a.buffer)[5] = 77;
      using b = SharedMemory.openOrCreate(id, 128);
      assert.equal(b.created, false);
      assert.equal(new Uint8Array(b.buffer)[5], 77, "an existing segment keeps its data");
    } finally {
      cleanup(id);
    }
  });

  test(`${kind}: sizes must match; open may ask for a prefix`, () => {
    const id = fresh();
    try {
      using _a = SharedMemory.create(id, 4096);
      const mismatch = (pattern: RegExp) => (e: unknown) =>
        e instanceof SharedMemoryError && e.code === "EINVAL" && pattern.test(e.message);
      assert.throws(
        () => SharedMemory.openOrCreate(id, 8192),
        mismatch(/exists with 4096 bytes, not 8192: open it with that size, or unlink it first/),
      );
      assert.throws(
        () => SharedMemory.open(id, { size: 8192 }),
        mismatch(/has 4096 bytes, fewer than the 8192 asked for/),
      );
      assert.throws(
        () => SharedMemory.openOrCreate(id, 100),
        (e) => e instanceof SharedMemoryError && e.code === "EINVAL",
        "no silent attach to a segment of another size",
      );
      using prefix = SharedMemory.open(id, { size: 100 });
      assert.equal(prefix.byteLength, 100);
      assert.equal(prefix.buffer.byteLength, 100);
    } finally {
      cleanup(id);
    }
  });

  test(`${kind}: views are windows onto the same bytes`, () => {
    const id = fresh();
    try {
      using shm = SharedMemory.create(id, 16384, { populate: true });
      const tail = new Uint32Array(shm.view(8192, 64));
      tail[1] = 0xdeadbeef;
      assert.equal(new DataView(shm.buffer).getUint32(8196, true), 0xdeadbeef);
      assert.equal(shm.view(16384).byteLength, 0);
      assert.equal(shm.view(104).byteLength, 16280);
      // Every typed array over a view is aligned, as over any ArrayBuffer: its offset is a
      // multiple of 8 (an atomic access across a word's boundary faults on arm64, and Bun's
      // inspection of such a Float64Array aborted the process).
      new Uint8Array(shm.buffer).forEach((_, i, all) => (all[i] = i % 251));
      for (const offset of [1, 2, 3, 4, 5, 6, 7, 12, 8193]) {
        const start = offset - (offset % 8);
        let hint = "";
        assert.throws(
          () => shm.view(offset, 16),
          (e) => {
            hint = (e as Error).message.replace(/.*: /, "");
            return e instanceof RangeError &&
              e.message ===
                `SharedMemory.view: byteOffset must be a multiple of 8, got ${offset}; for bytes from there: new Uint8Array(shm.view(${start}, ${
                  offset - start + 16
                }), ${offset - start})`;
          },
        );
        // What it suggests reaches those 16 bytes.
        const bytes = new Function("shm", `return ${hint}`)(shm) as Uint8Array;
        assert.deepEqual([...bytes], [...new Uint8Array(shm.buffer, offset, 16)]);
        // An empty window is over no memory: any offset.
        assert.equal(shm.view(offset, 0).byteLength, 0);
      }
      // The end of a segment whose length is not a multiple of 8 is an empty window too.
      const odd = fresh();
      try {
        using short = SharedMemory.create(odd, 100);
        assert.equal(short.view(100).byteLength, 0);
        assert.equal(short.view(short.byteLength, 0).byteLength, 0);
        assert.equal(short.view(96).byteLength, 4);
      } finally {
        cleanup(odd);
      }
      for (const offset of [8, 16, 8200, 16384 - 8]) {
        new BigInt64Array(shm.view(offset, 8))[0] = BigInt(offset);
        assert.equal(new DataView(shm.buffer).getBigInt64(offset, true), BigInt(offset));
        assert.equal(Atomics.add(new Int32Array(shm.view(offset, 8)), 1, 1), 0);
        assert.equal(new Float64Array(shm.view(offset, 8)).length, 1);
      }
      assert.throws(() => shm.view(0, 16385), RangeError);
      // An offset that leaves too little room: the message says what bounds the length.
      assert.throws(
        () => shm.view(16384, 4096),
        (e) =>
          e instanceof RangeError &&
          e.message ===
            "byteLength (from byteOffset 16384 of the segment's 16384 bytes) must be between 0 and 0, got 4096",
      );
      assert.throws(() => shm.view(-1), RangeError);
      assert.throws(() => shm.view(1.5), RangeError);
    } finally {
      cleanup(id);
    }
  });

  test(`${kind}: close detaches every buffer and view, is idempotent, and later use throws`, () => {
    const id = fresh();
    try {
      const shm = SharedMemory.create(id, 4096);
      const whole = shm.buffer;
      const f64 = new Float64Array(whole);
      f64[0] = 1.5;
      const window = new Int32Array(shm.view(1024, 1024));
      window[0] = 9;
      // The first view is held as the buffer is, later ones are tracked: all are detached.
      const later = [shm.view(0, 8), shm.view(8, 8), shm.view(2048)];
      shm.close();
      shm.close();
      assert.equal(shm.closed, true);
      assert.ok(later.every(detached), "every later view is detached");
      assert.equal(detached(whole), true);
      assert.equal(whole.byteLength, 0);
      assert.equal(f64.length, 0);
      assert.equal(f64[0], undefined, "a stale view reads undefined, not freed memory");
      f64[0] = 2; // a write to a stale view is ignored, never a crash
      assert.equal(window.length, 0);
      assert.throws(
        () => new Int32Array(whole),
        TypeError,
        "a detached buffer cannot get new views",
      );
      const closed = (e: unknown) => e instanceof SharedMemoryError && e.code === "EBADF";
      assert.throws(() => shm.buffer, closed);
      assert.throws(() => shm.view(0, 8), closed);
      using again = SharedMemory.open(id);
      assert.equal(new Float64Array(again.buffer)[0], 1.5, "close keeps the segment itself");
    } finally {
      cleanup(id);
    }
  });

  test(`${kind}: using disposes at the end of the block`, () => {
    const id = fresh();
    let kept: ArrayBuffer;
    try {
      {
        using shm = SharedMemory.create(id, 64);
        kept = shm.buffer;
        assert.equal(kept.byteLength, 64);
      }
      assert.equal(detached(kept), true);
    } finally {
      cleanup(id);
    }
  });

  test(
    `${kind}: unlink() after close() removes this segment's ${
      kind === "keyed" ? "key" : "name"
    } only, never a newer segment's`,
    () => {
      const id = fresh();
      const gone = (e: unknown) => e instanceof SharedMemoryError && e.code === "ENOENT";
      try {
        // Its own, still there: removed.
        const a = SharedMemory.create(id, 4096);
        a.close();
        a.unlink();
        assert.throws(() => SharedMemory.open(id), gone);
        assert.throws(() => a.unlink(), /this SharedMemory removed it already/);
        // Replaced after the close: the newer segment stays.
        const b = SharedMemory.create(id, 4096);
        new Uint8Array(b.buffer)[0] = 7;
        b.close();
        using newer = SharedMemory.create(id, 8192, { replace: true });
        new Uint8Array(newer.buffer)[0] = 9;
        assert.throws(() => b.unlink(), (e: unknown) => {
          assert.ok(gone(e), String(e));
          assert.match((e as Error).message, /no longer names this segment/);
          return true;
        });
        using again = SharedMemory.open(id);
        assert.equal(again.byteLength, 8192, "the newer segment, still under its id");
        assert.equal(new Uint8Array(again.buffer)[0], 9);
        // Removed and made again by this process before the first is closed: the same.
        newer.unlink();
        using third = SharedMemory.create(id, 4096);
        newer.close();
        assert.throws(() => newer.unlink(), /removed it already/);
        third.close();
        third.unlink();
        assert.throws(() => SharedMemory.open(id), gone);
      } finally {
        cleanup(id);
      }
    },
  );

  test(`${kind}: a buffer outlives a dropped SharedMemory until it is detached`, () => {
    const id = fresh();
    try {
      const before = lib.openHandleCount();
      let shm: ReturnType<typeof SharedMemory.create> | undefined = SharedMemory.create(id, 64);
      const buffer = shm.buffer;
      shm = undefined;
      new Uint8Array(buffer)[0] = 3;
      assert.equal(new Uint8Array(buffer)[0], 3);
      lib.detachSharedBuffer(buffer);
      assert.ok(lib.openHandleCount() <= before + 1, "only the dropped object's handle may remain");
    } finally {
      cleanup(id);
    }
  });
}

test("console.log and util.inspect show a segment's id, length and state, closed too", () => {
  // Its state is private: it showed as `SharedMemory {}`.
  const name = uniqueName("inspect");
  try {
    const shm = SharedMemory.create({ name }, 4096);
    const shown = (s: unknown) => inspect(s, { compact: true, breakLength: Infinity });
    const open = shown(shm);
    assert.match(open, /^SharedMemory \{ id: \{ name: ['"]\/?sbtest-inspect/, open);
    assert.match(open, /byteLength: 4096, created: true, closed: false \}$/, open);
    // Through a Proxy, or on an object made from the prototype, it reads no private state: it
    // threw ("Cannot read private member").
    for (const stranger of [new Proxy(shm, {}), Object.create(SharedMemory.prototype)]) {
      assert.match(shown(stranger), /SharedMemory/, "printed without throwing");
    }
    shm.close();
    assert.match(shown([shm]), /closed: true \}/, "closed");
    using again = SharedMemory.open({ name });
    assert.match(shown(again), /created: false, closed: false \}$/, "opened");
  } finally {
    cleanup({ name });
  }
});

test("named: the leading slash is optional", () => {
  const name = uniqueName("slash");
  try {
    using a = SharedMemory.create({ name }, 64);
    using b = SharedMemory.open({ name: name.slice(1) });
    new Uint8Array(a.buffer)[0] = 1;
    assert.equal(new Uint8Array(b.buffer)[0], 1);
  } finally {
    cleanup({ name });
  }
});

test("keyed and named segments with equal numbers are distinct", () => {
  const key = uniqueKey();
  const name = `/${key}`;
  try {
    using a = SharedMemory.create({ key }, 64);
    using b = SharedMemory.create({ name }, 64);
    new Uint8Array(a.buffer)[0] = 1;
    assert.equal(new Uint8Array(b.buffer)[0], 0);
  } finally {
    cleanup({ key });
    cleanup({ name });
  }
});

test("named: unlink while mapped keeps the memory, frees the name", () => {
  const name = uniqueName("unlink");
  try {
    using a = SharedMemory.create({ name }, 64);
    new Uint8Array(a.buffer)[0] = 42;
    a.unlink();
    assert.equal(new Uint8Array(a.buffer)[0], 42);
    using b = SharedMemory.create({ name }, 64);
    assert.equal(new Uint8Array(b.buffer)[0], 0, "a new segment under the same name");
  } finally {
    cleanup({ name });
  }
});

test("unlink of a missing segment is ENOENT", () => {
  assert.throws(
    () => SharedMemory.unlink({ name: uniqueName("missing") }),
    (e) => e instanceof SharedMemoryError && e.code === "ENOENT",
  );
  assert.throws(
    () => SharedMemory.unlink({ key: uniqueKey() }),
    (e) => e instanceof SharedMemoryError && e.code === "ENOENT",
  );
});

test(`the library path is reported and loadLibrary refuses a second path, or one not a string`, () => {
  const path = lib.loadLibrary();
  // Without SHARED_BUFFER_LIB, the library is the build next to the package.
  const root = repoRoot;
  const file = process.platform === "darwin"
    ? "libshared_buffer_native.dylib"
    : "libshared_buffer_native.so";
  assert.equal(path, process.env.SHARED_BUFFER_LIB || `${root}target/release/${file}`);
  assert.equal(lib.loadLibrary(path), path);
  assert.throws(
    () => lib.loadLibrary("/elsewhere/libshared_buffer_native.so"),
    (e) =>
      e instanceof SharedMemoryError && e.code === "EBUSY" &&
      e.message.startsWith(`loadLibrary: the native library is already loaded from ${path}; call`),
  );
  // Not a string: a TypeError naming the argument (it was "already loaded from ..." here, and
  // before the first load a search for the value as a path).
  for (const bad of [5, null, { path }, new URL(`file://${path}`)]) {
    assert.throws(
      () => lib.loadLibrary(bad as never),
      (e) => e instanceof TypeError && /^loadLibrary: path must be a string, got /.test(e.message),
      String(bad),
    );
  }
});

for (const [kind, id] of ids()) {
  test(`${kind}: errors name what was attempted and on which segment`, () => {
    try {
      const shm = SharedMemory.create(id, 64);
      const label = "key" in id ? `key 0x${id.key.toString(16)}` : `name ${id.name}`;
      shm.close();
      assert.throws(
        () => shm.buffer,
        (e: unknown) =>
          e instanceof SharedMemoryError && e.code === "EBADF" &&
          e.message === `SharedMemory.buffer of ${label}: this SharedMemory was closed (EBADF)`,
      );
      assert.throws(
        () => shm.view(0, 8),
        (e: unknown) =>
          e instanceof SharedMemoryError && e.message.startsWith(`SharedMemory.view of ${label}:`),
      );
      SharedMemory.unlink(id);
      assert.throws(
        () => SharedMemory.unlink(id),
        (e: unknown) =>
          e instanceof SharedMemoryError && e.code === "ENOENT" &&
          e.message.startsWith(`SharedMemory.unlink of ${label}: `),
      );
      assert.throws(
        () => SharedMemory.open(id),
        (e: unknown) =>
          e instanceof SharedMemoryError &&
          e.message ===
            `SharedMemory.open of ${label}: no segment exists under this id (create it first, or check the name or key) (ENOENT)`,
      );
    } finally {
      cleanup(id);
    }
  });
}
