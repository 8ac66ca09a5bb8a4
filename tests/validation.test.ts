import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import {
  cleanup,
  lib,
  onlyLinux,
  runScript,
  test,
  testUnless,
  uniqueKey,
  uniqueName,
} from "./harness.ts";

const { SharedMemory, createSharedBuffer, detachSharedBuffer, SharedMemoryError } = lib;

/** Asserts `fn` throws `type` with a message naming `arg`, and that the process lives on. */
function rejects(fn: () => unknown, type: ErrorConstructor, arg: string): void {
  assert.throws(fn, (e) => {
    assert.ok(e instanceof type, `expected ${type.name}, got ${e}`);
    assert.ok(
      (e as Error).message.includes(arg),
      `message should name ${arg}: ${(e as Error).message}`,
    );
    return true;
  });
}

const badNumbers: [unknown, ErrorConstructor][] = [
  [1.5, RangeError],
  [-1, RangeError],
  [NaN, RangeError],
  [Infinity, RangeError],
  [-Infinity, RangeError],
  [10n, TypeError],
  ["10", TypeError],
  [null, TypeError],
  [undefined, TypeError],
  [{}, TypeError],
];

test("bad keys: type, range, and key 0 (IPC_PRIVATE)", () => {
  for (const [key, type] of [...badNumbers, [0, RangeError], [2 ** 32, RangeError]] as const) {
    rejects(() => createSharedBuffer(key as number, 64, true), type, "key");
    rejects(() => SharedMemory.create({ key: key as number }, 64), type, "key");
  }
  rejects(() => createSharedBuffer(0, 64, true), RangeError, "IPC_PRIVATE");
});

test("bad sizes: type, range, zero, and beyond what the OS or runtime allows", () => {
  const key = uniqueKey();
  try {
    for (const [size, type] of [...badNumbers, [0, RangeError], [2 ** 53, RangeError]] as const) {
      rejects(() => createSharedBuffer(key, size as number, true), type, "size");
      rejects(() => SharedMemory.create({ name: "/x" }, size as number), type, "size");
      if (size !== undefined) { // undefined means "the whole segment" here
        rejects(() => SharedMemory.open({ name: "/x" }, { size: size as number }), type, "size");
      }
    }
    // Larger than the kernel's limit: an OS error, not a crash. Unless the kernel overcommits
    // without limit, shmget refuses 1 TiB: ENOSPC saying so, not ENOMEM with advice about this
    // process's mappings, which it was before.
    const unlimited = readFileSync("/proc/sys/vm/overcommit_memory", "utf8").trim() === "1";
    for (const size of [2 ** 40, 2 ** 52]) {
      assert.throws(
        () => SharedMemory.create({ key }, size),
        (e) =>
          e instanceof SharedMemoryError &&
          (unlimited ? ["EINVAL", "ENOMEM", "ENOSPC"].includes(e.code) : e.code === "ENOSPC" &&
            e.message.includes("will not provide a keyed segment of this size") &&
            !e.message.includes("handles")),
        `${size} bytes`,
      );
      assert.throws(
        () => createSharedBuffer(key, size, true),
        (e) =>
          e instanceof RangeError // over the largest buffer: 4 GiB in Bun and Node 20
            ? e.message.includes("largest ArrayBuffer")
            : e instanceof SharedMemoryError && (unlimited || e.code === "ENOSPC"),
        `createSharedBuffer of ${size} bytes`,
      );
    }
    const name = uniqueName("huge");
    assert.throws(
      () => SharedMemory.create({ name }, 2 ** 52),
      (e) =>
        e instanceof SharedMemoryError && ["EFBIG", "ENOSPC", "ENOMEM", "EINVAL"].includes(e.code),
    );
    assert.throws(
      () => SharedMemory.open({ name }),
      (e) => e instanceof SharedMemoryError && e.code === "ENOENT",
    );
  } finally {
    cleanup({ key });
  }
});

// A peer can make a keyed segment far larger than this process can map (SHM_NORESERVE commits
// nothing), and a keyed segment is mapped whole: an open of its first 4 KiB said that this
// process had run out of memory or mappings, and pointed at buffers dropped without close().
testUnless(
  onlyLinux,
  "a keyed segment a peer made larger than this process can map: ENOMEM naming its size, and that a keyed segment is mapped whole",
  async () => {
    const key = uniqueKey();
    const size = 200 * 2 ** 40; // more than a process's address space (128 TiB)
    try {
      assert.match(await runScript("deno", "segment/huge_keyed.ts", [`${key}`, "200"]), /^made/);
      const says = (e: unknown) =>
        e instanceof SharedMemoryError && e.code === "ENOMEM" &&
        e.message.includes(`the segment has ${size} bytes, more than the 4096 asked for`) &&
        e.message.includes("mapped whole") && !e.message.includes("handles");
      assert.throws(() => SharedMemory.open({ key }, { size: 4096 }), says);
      assert.throws(() => createSharedBuffer(key, 4096), says);
      // Opened whole, the message named no size, only this process's handles.
      assert.throws(
        () => SharedMemory.open({ key }),
        (e) =>
          e instanceof SharedMemoryError && e.code === "ENOMEM" &&
          e.message.includes(`the segment has ${size} bytes (a keyed segment is mapped whole)`),
      );
      // The process lives on, and maps what fits.
      using small = SharedMemory.create({ key: uniqueKey() }, 4096);
      small.unlink();
      assert.equal(small.buffer.byteLength, 4096);
    } finally {
      cleanup({ key });
    }
  },
);

test("bad names: empty, dot or dot-dot, too long, inner slash, NUL, lone surrogate, wrong type", () => {
  const cases: [unknown, ErrorConstructor, string][] = [
    ["", RangeError, "empty"],
    ["/", RangeError, "empty"],
    // Each failed with an EEXIST that suggested `replace: true`: they name a folder.
    ["/.", RangeError, '"." or ".."'],
    [".", RangeError, '"." or ".."'],
    ["/..", RangeError, '"." or ".."'],
    ["..", RangeError, '"." or ".."'],
    ["a/b", RangeError, "'/'"],
    ["/a/b", RangeError, "'/'"],
    ["a\0b", RangeError, "NUL"],
    // Each would have opened "/a\ufffd": UTF-8 cannot encode half a surrogate pair.
    ["a\ud800", RangeError, "surrogate"],
    ["/a\udc00b", RangeError, "surrogate"],
    ["x".repeat(256), RangeError, "255"],
    ["é".repeat(128), RangeError, "255"],
    [42, TypeError, "string"],
    [null, TypeError, "string"],
  ];
  for (const [name, type, detail] of cases) {
    rejects(() => SharedMemory.create({ name: name as string }, 64), type, "name");
    rejects(() => SharedMemory.open({ name: name as string }), type, detail);
    rejects(() => SharedMemory.unlink({ name: name as string }), type, "name");
  }
  // Dots are fine in any other name.
  for (const tag of ["...", ".a", "a."]) {
    const dotted = `/${tag}${uniqueName("dots").slice(1)}`;
    try {
      SharedMemory.create({ name: dotted }, 64).close();
    } finally {
      cleanup({ name: dotted });
    }
  }
  // A whole pair is one character, and fine.
  const pair = uniqueName("pair-\u{1f600}");
  try {
    SharedMemory.create({ name: pair }, 64).close();
    assert.throws(
      () => SharedMemory.open({ name: pair.replace("\u{1f600}", "\ufffd") }),
      (e) => e instanceof SharedMemoryError && e.code === "ENOENT",
    );
  } finally {
    cleanup({ name: pair });
  }
  // The longest legal name works.
  const name = "/" + "n".repeat(255 - 20) + Math.random().toString(36).slice(2, 12).padEnd(20, "z");
  try {
    using shm = SharedMemory.create({ name }, 64);
    assert.equal(shm.byteLength, 64);
  } finally {
    cleanup({ name });
  }
});

test("bad ids and options", () => {
  rejects(() => SharedMemory.create(null as never, 64), TypeError, "id");
  rejects(() => SharedMemory.create("jobs" as never, 64), TypeError, "id");
  rejects(() => SharedMemory.create({} as never, 64), TypeError, "id");
  rejects(
    () => SharedMemory.create({ key: 5, name: "/x" } as never, 64),
    TypeError,
    "exactly one of",
  );
  // Nothing but the key or name, as options take nothing unknown; the value in the message.
  rejects(
    () => SharedMemory.create({ key: uniqueKey(), nmae: "/x" } as never, 64),
    TypeError,
    `id has a property "nmae": a segment's id is { key: number } or { name: string }`,
  );
  rejects(
    () => SharedMemory.create(5 as never, 64),
    TypeError,
    "id must be { key: number } or { name: string }, got 5",
  );
  rejects(() => SharedMemory.create([] as never, 64), TypeError, "got an array");
  // A key or name that is undefined is absent, as an option is: `{ name, key: opts.key }`.
  rejects(
    () => SharedMemory.create({ key: undefined, name: undefined } as never, 64),
    TypeError,
    `id must have exactly one of "key" and "name" (one that is undefined counts as absent)`,
  );
  {
    const name = uniqueName("undefined-key");
    try {
      const shm = SharedMemory.create({ name, key: undefined }, 64);
      assert.deepEqual(shm.id, { name }, "the name's segment, its id without the key");
      shm.close();
      using again = SharedMemory.open({ key: undefined, name });
      assert.equal(again.byteLength, 64);
    } finally {
      cleanup({ name });
    }
  }
  rejects(
    () => SharedMemory.create({ key: uniqueKey(), name: undefined }, 64, { mode: 0o1000 }),
    RangeError,
    "mode",
  );
  rejects(
    () => SharedMemory.open(Object.create({ name: "/x" })),
    TypeError,
    "id.name is inherited, not the object's own property",
  );
  rejects(() => lib.Channel.unlink({ name: "/x", size: 5 } as never), TypeError, `"size"`);
  rejects(
    () => createSharedBuffer(0x5ead, 64, true, { owner: "me" } as never),
    TypeError,
    `options.owner must be "any" or a user id (a number), got`,
  );
  rejects(() => SharedMemory.create({ name: "/x" }, 64, 5 as never), TypeError, "options");
  for (const mode of [-1, 0o1000, 0o7777, 1.5, NaN]) {
    rejects(() => SharedMemory.create({ name: "/x" }, 64, { mode }), RangeError, "mode");
  }
  // Out of range either way, in octal as modes are written.
  for (const [mode, got] of [[-1, "-1"], [0o1000, "0o1000"]] as const) {
    rejects(
      () => SharedMemory.create({ name: "/x" }, 64, { mode }),
      RangeError,
      `options.mode must be between 0o0 and 0o777, got ${got}`,
    );
  }
  // A segment its owner cannot map for reading and writing: no later open by its owner works.
  for (const mode of [0o400, 0o200, 0o000, 0o066]) {
    const key = uniqueKey();
    try {
      rejects(() => SharedMemory.create({ key }, 64, { mode }), RangeError, "owner");
      rejects(() => SharedMemory.openOrCreate({ key }, 64, { mode }), RangeError, "owner");
      assert.throws(
        () => SharedMemory.open({ key }),
        (e) => e instanceof SharedMemoryError && e.code === "ENOENT",
        "nothing was created",
      );
    } finally {
      cleanup({ key });
    }
  }
  rejects(
    () => SharedMemory.create({ name: "/x" }, 64, { mode: "600" as never }),
    TypeError,
    "mode",
  );
  rejects(
    () => SharedMemory.create({ name: "/x" }, 64, { populate: 1 as never }),
    TypeError,
    "populate",
  );
  // null is named as null, not as its typeof ("object").
  rejects(
    () => SharedMemory.open({ name: "/x" }, { populate: null as never }),
    TypeError,
    "options.populate must be a boolean, got null",
  ); // A misspelt option is named, before anything is created.
  const typo = { name: uniqueName("typo") };
  rejects(
    () => SharedMemory.create(typo, 64, { mdoe: 0o644 } as never),
    TypeError,
    'options has no option "mdoe"; the options are mode, populate, owner, replace',
  );
  rejects(
    () => SharedMemory.openOrCreate(typo, 64, { replace: true } as never),
    TypeError,
    "options.replace works with SharedMemory.create only",
  );
  // replace: false asks for nothing (the options of a create, passed on); its type is checked.
  SharedMemory.openOrCreate(typo, 64, { replace: false } as never).close();
  SharedMemory.unlink(typo);
  rejects(
    () => SharedMemory.openOrCreate(typo, 64, { replace: 1 } as never),
    TypeError,
    "options.replace must be a boolean",
  );
  // openOrCreate does not list the option it refuses.
  rejects(
    () => SharedMemory.openOrCreate(typo, 64, { mdoe: 0o644 } as never),
    TypeError,
    'options has no option "mdoe"; the options are mode, populate, owner',
  );
  // Opening does not apply a mode, so the rule for creating (the owner reads and writes) is not
  // checked; its type still is.
  const keyed = uniqueKey();
  assert.throws(
    () => createSharedBuffer(keyed, 64, false, { mode: 0o444 }),
    (e) => e instanceof SharedMemoryError && e.code === "ENOENT",
  );
  rejects(() => createSharedBuffer(keyed, 64, false, { mode: "rw" as never }), TypeError, "mode");
  rejects(() => createSharedBuffer(keyed, 64, true, { mode: 0o444 }), RangeError, "0o600");
  // null is no mode (it was taken for the default), as it is no value of any other option.
  for (const create of [true, false]) {
    rejects(
      () => createSharedBuffer(keyed, 64, create, { mode: null as never }),
      TypeError,
      "options.mode must be",
    );
  }
  rejects(
    () => SharedMemory.create({ key: keyed }, 64, { mode: null as never }),
    TypeError,
    "options.mode must be",
  );
  rejects(() => SharedMemory.open(typo, { sise: 64 } as never), TypeError, '"sise"');
  rejects(
    () => createSharedBuffer(uniqueKey(), 64, true, { mdoe: 0o666 } as never),
    TypeError,
    "mdoe",
  );
  rejects(
    () => lib.Channel.create(typo, { capacity: 4096, producer: "many" } as never),
    TypeError,
    "producer",
  );
  rejects(() => lib.Channel.open(typo, { timeout: 5 } as never), TypeError, "timeout");
  assert.throws(
    () => SharedMemory.open(typo),
    (e) => e instanceof SharedMemoryError && e.code === "ENOENT",
  );
});

test("detachSharedBuffer: foreign buffers, twice, wrong types", () => {
  rejects(
    () => detachSharedBuffer(new ArrayBuffer(8)),
    TypeError,
    "detachSharedBuffer: buffer was not made by createSharedBuffer or SharedMemory",
  );
  rejects(
    () => detachSharedBuffer(new Float64Array(8) as never),
    TypeError,
    "got a Float64Array; pass its .buffer",
  );
  rejects(
    () => detachSharedBuffer(new Uint8Array(8) as never),
    TypeError,
    "got a Uint8Array; pass its .buffer",
  );
  rejects(
    () => detachSharedBuffer(new SharedArrayBuffer(8) as never),
    TypeError,
    "got a SharedArrayBuffer",
  );
  rejects(() => detachSharedBuffer(null as never), TypeError, "buffer");
  const key = uniqueKey();
  try {
    const buffer = createSharedBuffer(key, 64, true);
    detachSharedBuffer(buffer);
    rejects(() => detachSharedBuffer(buffer), TypeError, "detachSharedBuffer: buffer was already");
    // A view of no bytes maps nothing: a plain empty ArrayBuffer, which the message says (not of
    // a foreign buffer detached).
    using shm = SharedMemory.open({ key });
    rejects(() => detachSharedBuffer(shm.view(64)), TypeError, "a view() of 0 bytes is a plain");
    const moved = new ArrayBuffer(8);
    structuredClone(moved, { transfer: [moved] });
    assert.throws(
      () => detachSharedBuffer(moved),
      (e) =>
        e instanceof TypeError &&
        e.message.endsWith("not made by createSharedBuffer or SharedMemory"),
    );
  } finally {
    cleanup({ key });
  }
});

test("detachSharedBuffer and Mutex: lookalikes of an ArrayBuffer get the library's message", () => {
  // The engine's accessors refuse these with a message that names nothing of the call
  // ("incompatible receiver"); an ArrayBuffer of another realm is one, just not this library's.
  const revoked = Proxy.revocable(new ArrayBuffer(8), {});
  revoked.revoke();
  const fakes: [string, unknown][] = [
    ["a Proxy", new Proxy(new ArrayBuffer(64), {})],
    ["an object given the prototype", Object.create(ArrayBuffer.prototype)],
    ["a revoked Proxy", revoked.proxy],
  ];
  for (const [what, fake] of fakes) {
    for (const caller of ["detachSharedBuffer", "Mutex.init", "Mutex.open"] as const) {
      const call = caller === "detachSharedBuffer"
        ? () => detachSharedBuffer(fake as never)
        : () => lib.Mutex[caller === "Mutex.init" ? "init" : "open"](fake as never, 0);
      assert.throws(call, (e) => {
        assert.ok(e instanceof TypeError, `${caller}, ${what}: ${e}`);
        assert.match(e.message, new RegExp(`^${caller}: buffer must be an ArrayBuffer`), what);
        assert.doesNotMatch(e.message, /receiver/, what);
        return true;
      });
    }
  }
  rejects(
    () => lib.Mutex.init(new Int32Array(16) as never, 0),
    TypeError,
    "Mutex.init: buffer must be an ArrayBuffer of this library, got an Int32Array; pass its .buffer",
  );
});

test("opening a missing segment is ENOENT, with the id in the message", () => {
  const key = uniqueKey();
  assert.throws(
    () => createSharedBuffer(key, 64),
    (e) =>
      e instanceof SharedMemoryError && e.code === "ENOENT" && e.message.includes(key.toString(16)),
  );
  // A name is printed as is where it reads as one, quoted where a character would not.
  const name = uniqueName("missing");
  const cases = [
    [name, `name ${name}:`],
    [`${name}\n x"`, `name "${name}\\n x\\"":`],
    // What would hide in the line or reorder it is escaped; other characters read as they are.
    [`${name}\u202e\u200b\x7f-café`, `name "${name}\\u202e\\u200b\\u007f-café":`],
  ];
  for (const [given, shown] of cases) {
    assert.throws(
      () => SharedMemory.open({ name: given }),
      (e) =>
        e instanceof SharedMemoryError && e.code === "ENOENT" &&
        e.message.includes(`SharedMemory.open of ${shown}`) && !e.message.includes("\n"),
      shown,
    );
  }
});
