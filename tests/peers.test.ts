/**
 * What a careless or hostile peer can leave at a segment's id, and what each gets: odd files at a
 * name (a clear error of its own, at once), and a peer that shrinks a segment (keyed segments
 * cannot shrink; a named one can, which kills its mappers: the documented hazard, tested so the
 * documentation stays true). A leftover of a crashed run (`replace`) is tested in
 * `cross_process.test.ts`, with the other creators killed with SIGKILL.
 *
 * @module
 */

import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { linkSync, mkdirSync, rmSync, symlinkSync, truncateSync, writeFileSync } from "node:fs";
import {
  type Child,
  cleanup,
  finished,
  killAll,
  lib,
  other,
  runtime,
  runtimes,
  spawn,
  test,
  uniqueKey,
  uniqueName,
  within,
} from "./harness.ts";
import { idArgs } from "./children/segment/common.ts";

const { SharedMemory, SharedMemoryError } = lib;

/** Asserts that `fn` throws a SharedMemoryError with `code` and a message matching `pattern`. */
function throwsCode(fn: () => unknown, code: string, pattern: RegExp): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof SharedMemoryError, `not a SharedMemoryError: ${e}`);
    assert.equal(e.code, code, e.message);
    assert.match(e.message, pattern);
    return true;
  });
}

/** A path in /dev/shm for a fresh name, removed (whatever it holds) when the test ends. */
function planted(tag: string): { name: string; path: string; [Symbol.dispose](): void } {
  const name = uniqueName(tag);
  const path = `/dev/shm${name}`;
  return { name, path, [Symbol.dispose]: () => rmSync(path, { recursive: true, force: true }) };
}

// ---- Odd files at a name ---------------------------------------------------------------------

test("a symbolic link at a name is ELOOP, never followed", () => {
  const target = { name: uniqueName("odd-target") };
  try {
    SharedMemory.create(target, 64).close();
    using link = planted("odd-link");
    symlinkSync(`/dev/shm${target.name}`, link.path);
    throwsCode(
      () => SharedMemory.open({ name: link.name }),
      "ELOOP",
      new RegExp(`SharedMemory.open of name ${link.name}: .*symbolic link`),
    );
  } finally {
    cleanup(target);
  }
});

test("a directory at a name is EISDIR", () => {
  using dir = planted("odd-dir");
  mkdirSync(dir.path);
  throwsCode(() => SharedMemory.open({ name: dir.name }), "EISDIR", /directory/);
  throwsCode(
    () => SharedMemory.create({ name: dir.name }, 64, { replace: true }),
    "EISDIR",
    /directory/,
  );
});

test("a FIFO at a name is EFTYPE at once (the open does not block)", () => {
  using fifo = planted("odd-fifo");
  const made = spawnSync("mkfifo", ["-m", "600", fifo.path]);
  assert.equal(made.status, 0, "mkfifo");
  throwsCode(() => SharedMemory.open({ name: fifo.name }), "EFTYPE", /holds a FIFO, not a segment/);
  throwsCode(
    () => SharedMemory.openOrCreate({ name: fifo.name }, 64),
    "EFTYPE",
    /holds a FIFO/,
  );
});

test("a hard link to a segment is EFTYPE at either name: no open hands one segment out as another", () => {
  // Another user who may open a segment of ours (made with mode 0o666 to share it) links it at a
  // name we open later; here this user makes the link, which the same check refuses.
  const shared = { name: uniqueName("odd-shared") };
  try {
    const mine = SharedMemory.create(shared, 64, { mode: 0o666 });
    new Uint8Array(mine.buffer)[0] = 7;
    using link = planted("odd-hardlink");
    linkSync(`/dev/shm${shared.name}`, link.path);
    const why = /holds a file with other names too \(hard links\), so not a segment's own name/;
    throwsCode(() => SharedMemory.open({ name: link.name }), "EFTYPE", why);
    throwsCode(() => SharedMemory.openOrCreate({ name: link.name }, 64), "EFTYPE", why);
    throwsCode(() => lib.Channel.open({ name: link.name }), "EFTYPE", why);
    throwsCode(() => SharedMemory.open(shared), "EFTYPE", why);
    // The mapping made before the link is untouched; with the link gone the name opens again.
    assert.equal(new Uint8Array(mine.buffer)[0], 7);
    rmSync(link.path);
    using again = SharedMemory.open(shared);
    assert.equal(new Uint8Array(again.buffer)[0], 7);
    mine.close();
  } finally {
    cleanup(shared);
  }
});

test("an empty file at a name is ENODATA, saying why", () => {
  using empty = planted("odd-empty");
  writeFileSync(empty.path, "", { mode: 0o600 });
  throwsCode(
    () => SharedMemory.open({ name: empty.name }),
    "ENODATA",
    /an empty file: not a segment, or one whose creator died or stalled before sizing it/,
  );
});

test("a file shorter than asked for is EINVAL naming both sizes", () => {
  using short = planted("odd-short");
  writeFileSync(short.path, new Uint8Array(100), { mode: 0o600 });
  throwsCode(
    () => SharedMemory.open({ name: short.name }, { size: 4096 }),
    "EINVAL",
    /has 100 bytes, fewer than the 4096 asked for/,
  );
});

// ---- A peer that shrinks the segment ---------------------------------------------------------

test(`keyed segments cannot shrink: after a ${other(runtime)} peer removes the key and makes a 64-byte segment under it, this process still reads and writes all of its mapping`, async () => {
  const id = { key: uniqueKey() };
  const children: Child[] = [];
  try {
    using shm = SharedMemory.create(id, 1 << 20);
    const bytes = new Uint8Array(shm.buffer);
    bytes.fill(0x5a);
    SharedMemory.unlink(id); // the peer's first step needs the key free; the mapping stays
    const peer = spawn(children, other(runtime), "segment/create.ts", [...idArgs(id), "64"]);
    await finished(peer, "peer making a small segment under the key");
    let sum = 0;
    for (let i = 0; i < bytes.length; i++) sum += bytes[i];
    assert.equal(sum, 0x5a * bytes.length, "every byte of the old mapping is still there");
    bytes[bytes.length - 1] = 1;
    assert.equal(bytes[bytes.length - 1], 1);
    using small = SharedMemory.open(id);
    assert.equal(small.byteLength, 64, "the peer's segment is another one");
  } finally {
    killAll(children);
    cleanup(id);
  }
});

for (const which of runtimes) {
  test(`the documented hazard: truncating a named segment kills a ${which} process that maps it with SIGBUS`, async () => {
    const id = { name: uniqueName("truncate") };
    const children: Child[] = [];
    try {
      SharedMemory.create(id, 1 << 16).close();
      const reader = spawn(children, which, "segment/read_forever.ts", idArgs(id));
      await within(reader.line("mapped"), 30_000, "reader to map the segment");
      truncateSync(`/dev/shm${id.name}`, 0);
      const r = await within(reader.done, 30_000, "reader to die");
      assert.equal(r.signal, "SIGBUS", `reader ended with ${r.code ?? r.signal}:\n${r.stderr}`);
    } finally {
      killAll(children);
      cleanup(id);
    }
  });
}
