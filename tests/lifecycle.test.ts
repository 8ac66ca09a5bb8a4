import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import {
  closeSync,
  mkdtempSync,
  openSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  cleanup,
  collectGarbage,
  HANG_MS,
  lacking,
  lib,
  type Missing,
  onlyLinux,
  runtime,
  scriptCommand,
  segmentMappings,
  start,
  test,
  testUnless,
  uniqueKey,
  uniqueName,
  until,
  within,
} from "./harness.ts";

const { SharedMemory, createSharedBuffer, openHandleCount } = lib;

/** How many of `keys` and `names` exist as segments in the system. */
function existing(keys: number[], names: string[]): { keyed: number; named: number } {
  const wanted = new Set(keys);
  const keyed = readFileSync("/proc/sysvipc/shm", "utf8").split("\n").slice(1)
    .filter((line) => wanted.has(Number(line.trim().split(/\s+/)[0]) >>> 0)).length;
  const files = new Set(readdirSync("/dev/shm"));
  const named = names.filter((name) => files.has(name.slice(1))).length;
  return { keyed, named };
}

testUnless(
  onlyLinux,
  "thousands of create/view/close/unlink cycles leave no mapping, handle or segment",
  async () => {
    // Objects dropped by earlier tests may be collected in the middle of the loop: collect first.
    await collectGarbage(3);
    const handles = openHandleCount();
    const keys: number[] = [];
    const names: string[] = [];
    for (let i = 0; i < 1500; i++) {
      keys.push(uniqueKey());
      names.push(uniqueName("cycle"));
      for (const id of [{ key: keys[i] }, { name: names[i] }]) {
        const shm = SharedMemory.create(id, 8192);
        if (i === 0) {
          // The check below can see these segments while they exist.
          assert.deepEqual(
            existing(keys, names),
            { keyed: "key" in id ? 1 : 0, named: "name" in id ? 1 : 0 },
            "segment visible",
          );
        }
        new Uint8Array(shm.buffer)[i % 8192] = 1;
        new Uint8Array(shm.view(4096, 16))[0] = 2;
        shm.close();
        shm.unlink();
      }
    }
    // A view dropped in the loop may have been collected before its close(): then its finalizer,
    // which Node runs on a later turn of the event loop, releases it. Let such turns run.
    await collectGarbage(2);
    assert.equal(segmentMappings(keys, names), 0, "no mapping of the segments is left");
    assert.equal(openHandleCount(), handles, "native handles return to their starting count");
    assert.deepEqual(
      existing(keys, names),
      { keyed: 0, named: 0 },
      "none of the segments made is left in the system",
    );
  },
);

test("a view outlives its SharedMemory dropped without close(), and another one's close() leaves it alone", async () => {
  const name = uniqueName("orphan");
  try {
    SharedMemory.create({ name }, 4096).close();
    await collectGarbage(3);
    const handles = openHandleCount();
    // The SharedMemory is dropped at once; only its view is kept.
    const orphan = (() => SharedMemory.open({ name }).view(0, 64))();
    new Uint8Array(orphan)[0] = 7;
    for (let round = 0; round < 30 && openHandleCount() > handles + 1; round++) {
      await collectGarbage(2);
    }
    assert.equal(openHandleCount(), handles + 1, "the dropped SharedMemory released its handle");
    // Many later SharedMemory objects take views and close: none of them may detach the orphan.
    for (let i = 0; i < 200; i++) {
      const shm = SharedMemory.open({ name });
      const view = shm.view(0, 64);
      shm.close();
      assert.equal(view.byteLength, 0, "close() detaches its own view");
    }
    assert.equal(orphan.byteLength, 64, "the orphan view is still attached");
    assert.equal(new Uint8Array(orphan)[0], 7);
    new Uint8Array(orphan)[1] = 8;
    using again = SharedMemory.open({ name });
    assert.deepEqual([...new Uint8Array(again.view(0, 2))], [7, 8], "and still maps the segment");
  } finally {
    cleanup({ name });
  }
});

test("dropped buffers and objects are unmapped by the garbage collector", async () => {
  const key = uniqueKey();
  const name = uniqueName("gc");
  try {
    SharedMemory.create({ key }, 4096).close();
    SharedMemory.create({ name }, 4096).close();
    await collectGarbage(3);
    const handles = openHandleCount();
    const made = 2000;
    (() => {
      for (let i = 0; i < made / 2; i++) {
        new Uint8Array(createSharedBuffer(key, 4096))[0] = 1;
        const shm = SharedMemory.open({ name });
        new Uint8Array(shm.view(0, 64))[0] = 1;
      }
    })();
    assert.ok(segmentMappings([key], [name]) > 0, "the buffers were mapped");
    for (let round = 0; round < 30 && openHandleCount() > handles; round++) await collectGarbage(2);
    assert.equal(openHandleCount(), handles, "every dropped buffer and object released its handle");
    assert.equal(segmentMappings([key], [name]), 0, "and every mapping is gone");
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

test("a pending waitAsync ends with EBADF when its mapping goes away by a detach after its SharedMemory was collected, and watches no segment mapped there later", async () => {
  const name = uniqueName("gonewait");
  const later: { close(): void }[] = [];
  try {
    using keep = SharedMemory.create({ name }, 65536);
    const kept = new Int32Array(keep.buffer);
    let view: ArrayBuffer | undefined;
    // Through a view of its own mapping, whose SharedMemory nothing keeps.
    const pending = (() => {
      const shm = SharedMemory.open({ name });
      view = shm.view(0, 4096);
      return lib.waitAsync(new Int32Array(view), 0, 0, 30_000);
    })();
    const settled = pending.then(
      (result) => `resolved ${result}`,
      (e) => e instanceof lib.SharedMemoryError ? `rejected ${e.code}` : `threw ${e}`,
    );
    await collectGarbage(5);
    // The view holds the mapping's last reference: detaching it unmaps.
    lib.detachSharedBuffer(view!);
    // Segments mapped now may take the freed address; none of them may be watched.
    for (let i = 0; i < 8; i++) {
      const other = SharedMemory.create({ name: `${name}-${i}` }, 65536);
      cleanup({ name: `${name}-${i}` });
      later.push(other);
      assert.equal(lib.notify(new Int32Array(other.buffer), 0), 0, "a later segment's notify");
    }
    assert.equal(await settled, "rejected EBADF");
    // The segment itself lives on through the other mapping, with no wait left on it: once the
    // service thread that watched the ended wait has let it go (it may still sit in the kernel
    // for a moment, and a notify then counts it), a notify wakes nobody.
    Atomics.store(kept, 0, 1);
    await until(() => lib.notify(kept, 0) === 0, "a notify of the kept segment to wake nobody");
  } finally {
    for (const other of later) other.close();
    cleanup({ name });
  }
});

test("close() releases a SharedMemory's own handle at once; collecting the closed object later releases nothing more", async () => {
  const name = uniqueName("anchor");
  try {
    using keep = SharedMemory.create({ name }, 4096);
    const kept = new Uint8Array(keep.buffer);
    kept[0] = 7;
    await collectGarbage(3);
    const maps = segmentMappings([], [name]);
    const handles = openHandleCount();
    (() => {
      for (let i = 0; i < 500; i++) {
        const shm = SharedMemory.open({ name });
        new Uint8Array(shm.buffer)[1] = i & 0xff;
        shm.close();
      }
    })();
    assert.equal(openHandleCount(), handles, "each close() released both of its handles at once");
    assert.equal(segmentMappings([], [name]), maps, "and each mapping");
    await collectGarbage(5);
    assert.equal(
      openHandleCount(),
      handles,
      "collecting the closed objects closed no other handle",
    );
    assert.equal(kept[0], 7, "the segment kept open still reads");
    assert.equal(kept[1], 499 & 0xff, "and sees what the closed ones wrote");
  } finally {
    cleanup({ name });
  }
});

/** The most mappings a process may have, if that is few enough to run past in a test. */
function mappingLimit(): { limit: number; missing: Missing | false } {
  if (onlyLinux) return { limit: 0, missing: onlyLinux };
  const limit = Number(readFileSync("/proc/sys/vm/max_map_count", "latin1"));
  return {
    limit,
    missing: limit > 131_072
      ? lacking(`vm.max_map_count is ${limit}: too many to run past`)
      : false,
  };
}

const maps = mappingLimit();

testUnless(
  maps.missing,
  `a ${runtime} child that drops more buffers than a process may have mappings, in one synchronous loop without detachSharedBuffer, does not crash: it completes, or (Node.js) gets ENOMEM saying why near the limit, and a turn of the event loop frees them`,
  async () => {
    // The seed package's users relied on the collector. Node.js frees a dropped buffer's mapping
    // only when the event loop turns, and without the library's relief the loop ran the process
    // out of mappings: Node 20 aborted (the engine could not allocate), Node 26 threw ENOMEM.
    const n = maps.limit + 4096;
    const key = uniqueKey();
    try {
      const r = await start(
        scriptCommand(runtime, "segment/drop_many.ts", [String(key), String(n)]),
      )
        .done;
      const line = r.stdout.split("\n").find((l) => l.startsWith("result "));
      assert.ok(r.code === 0 && line, `child exited with ${r.code ?? r.signal}:\n${r.stderr}`);
      const result = JSON.parse(line.slice("result ".length));
      if (result.done !== n) {
        // Node.js frees dropped buffers' mappings only when the event loop turns; the collections
        // the library forces free what they collected, which may not be enough near the limit.
        assert.equal(runtime, "node", `${result.done} of ${n}: ${result.message}`);
        assert.equal(result.code, "ENOMEM", result.message);
        assert.match(result.message, /near its limit of \d+ mappings .*close\(\) them/);
        assert.ok(result.done > maps.limit >> 1, `failed after ${result.done}`);
      }
      assert.ok(result.left < maps.limit >> 2, `handles left open after a turn: ${result.left}`);
    } finally {
      cleanup({ key });
    }
  },
);

if (runtime === "node") {
  // `closing`: each turn also closes a view's segment, whose addresses Node.js keeps until the
  // buffer is collected: kept for every one, they ran the process out of mappings first, and the
  // engine aborted.
  for (const closing of [false, true]) {
    testUnless(
      maps.missing,
      `a node child that keeps opening segments near the mapping limit${
        closing ? ", and closes a view's segment at every turn," : ""
      } gets ENOMEM at every open from there on, and opens again once it closes some`,
      async () => {
        const key = uniqueKey();
        const argv = [String(key), String(maps.limit), ...(closing ? ["closing"] : [])];
        try {
          const r = await start(scriptCommand(runtime, "segment/hold_many.ts", argv)).done;
          const line = r.stdout.split("\n").find((l) => l.startsWith("result "));
          assert.ok(r.code === 0 && line, `child exited with ${r.code ?? r.signal}:\n${r.stderr}`);
          const result = JSON.parse(line.slice("result ".length));
          // Refused near seven eighths of the limit, before the engine runs out of mappings; and
          // every open after the first refusal, not one in 256.
          assert.equal(result.code, "ENOMEM");
          assert.ok(
            result.firstFailure > maps.limit >> 1,
            `first failure at ${result.firstFailure}`,
          );
          assert.equal(result.openedAfter, 0, "opens that mapped past the first refusal");
          assert.equal(result.reopened, true, "an open after closing a tenth");
        } finally {
          cleanup({ key });
        }
      },
    );
  }
}

// close() detaches the buffers still here, but the runtime's own native code may hold a pointer
// into one (a read on its thread pool): Node.js's crashed (SIGSEGV) once close() unmapped the
// segment under it, and a segment mapped at those addresses later got the bytes, in Node.js and
// Deno. Deno's read holds the buffer's memory, and so the mapping, until it is done; Bun's keeps
// the buffer from being detached; in Node.js the addresses stay reserved until the buffer is
// collected, and the bytes go nowhere.
testUnless(
  onlyLinux,
  `a ${runtime} child whose asynchronous read into a view is pending when close() comes lives, and the bytes land in no segment mapped later`,
  async () => {
    const name = uniqueName("read-close");
    const dir = mkdtempSync(join(tmpdir(), "sb-fifo-"));
    const fifo = join(dir, "fifo");
    let writer: number | undefined;
    try {
      const made = spawnSync("mkfifo", [fifo]);
      assert.equal(made.status, 0, `mkfifo: ${made.error ?? made.stderr}`);
      // Open for writing first (read and write, so that it does not wait for a reader): the
      // child's open for reading then does not wait either.
      writer = openSync(fifo, "r+");
      const child = start(scriptCommand(runtime, "segment/read_after_close.ts", [fifo, name]));
      await within(child.line("closed"), HANG_MS, "the child's close");
      writeSync(writer, "CORRUPT!");
      const r = await within(child.done, HANG_MS, "the child");
      assert.equal(r.code, 0, `child exited with ${r.code ?? r.signal}:\n${r.stderr}`);
      const lines = r.stdout.trim().split("\n");
      assert.deepEqual(lines.slice(1, 3), ["read 8", "others clean"]);
      // Where the bytes went: into the segment (its mapping kept), or (Node.js) nowhere.
      assert.equal(lines[3], runtime === "node" ? "old ........" : "old CORRUPT!");
    } finally {
      if (writer !== undefined) closeSync(writer);
      rmSync(dir, { recursive: true, force: true });
      cleanup({ name });
      for (let i = 0; i < 8; i++) cleanup({ name: `${name}-${i}` });
    }
  },
);
