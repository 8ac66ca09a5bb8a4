/**
 * Parts of the public API that no other test reaches: page population, the channel's `texts()`,
 * `release()`, `unlink` and getters, and the Mutex's alignment and busy-initialiser contract.
 *
 * @module
 */

import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { cleanup, lib, onlyLinux, test, testUnless, uniqueKey, uniqueName } from "./harness.ts";
import { backend } from "../ts/backend.ts";

const { Channel, Mutex, SharedMemory, SharedMemoryError } = lib;
type Id = { key: number } | { name: string };

const code = (want: string) => (err: unknown) =>
  err instanceof SharedMemoryError && err.code === want;

// ---- populate ----------------------------------------------------------------------------------

/**
 * The resident size in KiB of each mapping of segment `id` in this process, from
 * `/proc/self/smaps` (a named segment maps `/dev/shm/<name>`, a keyed one `/SYSV<key in hex>`).
 */
function residentKiB(id: Id): number[] {
  const path = "name" in id
    ? `/dev/shm/${id.name.slice(1)}`
    : `/SYSV${id.key.toString(16).padStart(8, "0")}`;
  const found: number[] = [];
  let inside = false;
  for (const line of readFileSync("/proc/self/smaps", "utf8").split("\n")) {
    if (/^[0-9a-f]+-[0-9a-f]+ /.test(line)) {
      inside = line.trimEnd().endsWith(` ${path}`) || line.trimEnd().endsWith(` ${path} (deleted)`);
    } else if (inside && line.startsWith("Rss:")) {
      found.push(Number(line.split(/\s+/)[1]));
    }
  }
  return found;
}

const SIZE = 1 << 20;
const ALL_KIB = SIZE / 1024;

/**
 * Whether a mapping of `kib` resident KiB counts as populated. The kernel may briefly unmap a
 * few pages of a populated mapping (page migration and compaction do), so "populated" means
 * most pages, where an unpopulated mapping that nothing touched has none.
 */
const populated = (kib: number) => kib >= ALL_KIB * 0.75;

for (const kind of ["key", "name"] as const) {
  testUnless(
    onlyLinux,
    `populate: true maps every page of a ${kind} segment in at once; without it none is`,
    () => {
      const id: Id = kind === "key" ? { key: uniqueKey() } : { name: uniqueName("populate") };
      try {
        {
          using lazy = SharedMemory.create(id, SIZE);
          assert.deepEqual(residentKiB(id), [0], "a new mapping, never touched");
          // A second mapping of the same segment, populated: only it is resident.
          using eager = SharedMemory.open(id, { populate: true });
          const [untouched, opened] = residentKiB(id).sort((a, b) => a - b);
          assert.equal(untouched, 0, "the first mapping, still untouched");
          assert.ok(populated(opened), `open: ${opened} KiB of ${ALL_KIB} resident`);
          void lazy, eager;
        }
        SharedMemory.unlink(id);
        using made = SharedMemory.create(id, SIZE, { populate: true });
        const [created] = residentKiB(id);
        assert.ok(populated(created), `create: ${created} KiB of ${ALL_KIB} resident`);
        made.close();
        SharedMemory.unlink(id);
        using third = SharedMemory.openOrCreate(id, SIZE, { populate: true });
        const [either] = residentKiB(id);
        assert.ok(populated(either), `openOrCreate: ${either} KiB of ${ALL_KIB} resident`);
        void third;
      } finally {
        cleanup(id);
      }
    },
  );
}

// ---- channels ----------------------------------------------------------------------------------

/** A fresh channel id of each kind. */
const channelIds = (): Id[] => [{ key: uniqueKey() }, { name: uniqueName("api-ch") }];

test("Channel: id and producers as created, and as another opener reads them", () => {
  for (const id of channelIds()) {
    for (const producers of [undefined, "one", "many"] as const) {
      try {
        using made = Channel.create(id, { capacity: 1024, producers });
        assert.deepEqual(made.id, id);
        assert.equal(made.producers, producers ?? "one");
        using opened = Channel.open(id);
        assert.deepEqual(opened.id, id);
        assert.equal(opened.producers, producers ?? "one", "read from the segment");
        assert.equal(opened.capacity, 1024);
      } finally {
        cleanup(id);
      }
    }
  }
});

test("Channel.unlink and channel.unlink(): the id is gone, the open channel keeps working", () => {
  for (const id of channelIds()) {
    for (const how of ["static", "method"] as const) {
      try {
        using ch = Channel.create(id, { capacity: 1024 });
        if (how === "static") Channel.unlink(id);
        else ch.unlink();
        assert.throws(() => Channel.open(id), code("ENOENT"), `${how}: open after unlink`);
        assert.throws(() => Channel.unlink(id), code("ENOENT"), `${how}: a second unlink`);
        // Its errors name the channel's call, not the segment's beneath it.
        assert.throws(() => Channel.unlink(id), /: Channel\.unlink of /, how);
        assert.throws(
          () => ch.unlink(),
          how === "method"
            ? /: Channel\.unlink of .*: this Channel removed it already/
            : /: Channel\.unlink of .*: it no longer names this segment/,
          how,
        );
        using tx = ch.sender();
        using rx = ch.receiver();
        tx.send("still here");
        assert.equal(rx.recvText(0), "still here");
        // A new channel can be made under the same id at once.
        using again = Channel.create(id, { capacity: 1024 });
        assert.equal(again.capacity, 1024);
      } finally {
        cleanup(id);
      }
    }
  }
});

test("ChannelReceiver.texts() yields every message as a string, in order, until the end", async () => {
  const id = { name: uniqueName("api-texts") };
  try {
    using ch = Channel.create(id, { capacity: 1024 });
    using rx = ch.receiver();
    const tx = ch.sender();
    const long = "é".repeat(ch.maxRecordBytes); // 2 bytes each: fragmented
    const sent = ["", "plain", "ünïcödé ✓", long, "last"];
    const done = (async () => {
      const got: string[] = [];
      for await (const text of rx.texts()) got.push(text);
      return got;
    })();
    for (const text of sent) await tx.sendAsync(text);
    tx.close();
    assert.deepEqual(await done, sent);
  } finally {
    cleanup(id);
  }
});

test("ChannelReceiver.release(): a lent message's room goes back to the senders only then", () => {
  const id = { name: uniqueName("api-release") };
  try {
    using ch = Channel.create(id, { capacity: 256 });
    using tx = ch.sender();
    using rx = ch.receiver();
    const message = new Uint8Array(ch.maxRecordBytes).fill(7);
    let sent = 0;
    while (tx.trySend(message)) sent++;
    assert.ok(sent > 0, "the ring took messages");
    const view = rx.recvView(0);
    assert.deepEqual(view, message, "the first message, lent");
    assert.equal(tx.trySend(message), false, "no room while the message is lent");
    rx.release();
    assert.equal(tx.trySend(message), true, "room once released");
    rx.release(); // nothing lent: does nothing
    for (let i = 0; i < sent; i++) assert.deepEqual(rx.recv(0), message);
    assert.equal(rx.tryRecv(), undefined, "nothing more");
  } finally {
    cleanup(id);
  }
});

// ---- Mutex -------------------------------------------------------------------------------------

test("Mutex.ALIGNMENT: every multiple of it holds a mutex, other offsets are refused", () => {
  const name = uniqueName("api-align");
  try {
    using shm = SharedMemory.create({ name }, 4096);
    assert.equal(Mutex.BYTE_LENGTH, backend().mutexSize, "BYTE_LENGTH is the library's size");
    assert.ok(Mutex.ALIGNMENT >= 4 && (Mutex.ALIGNMENT & (Mutex.ALIGNMENT - 1)) === 0);
    // Side by side, each one alignment unit off a multiple of BYTE_LENGTH.
    const step = Mutex.BYTE_LENGTH;
    for (let offset = Mutex.ALIGNMENT; offset + step <= 4096; offset += step) {
      Mutex.init(shm.buffer, offset).lock().unlock();
    }
    for (const bad of [1, Mutex.ALIGNMENT / 2, Mutex.ALIGNMENT + 1]) {
      assert.throws(
        () => Mutex.init(shm.buffer, 2048 + bad),
        (e) => e instanceof RangeError && e.message.includes(`multiple of ${Mutex.ALIGNMENT}`),
        `offset ${2048 + bad}`,
      );
    }
  } finally {
    cleanup({ name });
  }
});

test("Mutex: a peer that began setting a mutex up and never finished gets EAGAIN, not a hang", () => {
  const name = uniqueName("api-eagain");
  try {
    using shm = SharedMemory.create({ name }, 4096);
    // The mutex's first word says "being initialised" (1) until its initialiser finishes: here
    // a peer wrote it and stopped (killed, or hostile).
    Atomics.store(new Int32Array(shm.buffer, 64, 1), 0, 1);
    assert.throws(() => Mutex.init(shm.buffer, 64), code("EAGAIN"), "init");
    // A mutex that was ready, then claimed again by a peer: lock and tryLock report EAGAIN too.
    const mutex = Mutex.init(shm.buffer, 128);
    Atomics.store(new Int32Array(shm.buffer, 128, 1), 0, 1);
    assert.throws(() => mutex.lock(), code("EAGAIN"), "lock");
    assert.throws(() => mutex.tryLock(), code("EAGAIN"), "tryLock");
  } finally {
    cleanup({ name });
  }
});

test("the private constructors of Mutex and SharedMemory refuse every caller but the library", () => {
  // TypeScript's `private` is gone at run time: a Mutex constructed at an address of the
  // caller's choosing made lock() write there (SIGSEGV), and a SharedMemory constructed from a
  // handle and address of the caller's choosing made buffers over memory never mapped.
  const key = uniqueKey();
  try {
    using shm = SharedMemory.create({ key }, 4096);
    const forge = (cls: unknown, args: unknown[]) =>
      Reflect.construct(cls as new (...a: unknown[]) => object, args);
    for (const address of [8n, 4096n, 0n]) {
      assert.throws(
        () => (forge(Mutex, [shm.buffer, address]) as { lock(ms: number): unknown }).lock(1),
        (e) => e instanceof TypeError && /no public constructor/.test(e.message),
      );
    }
    // The library's own handle numbers are small and guessable: 1 is as good as any.
    for (const handle of [1, 2, 3]) {
      assert.throws(
        () => {
          const forged = forge(SharedMemory, [{ key }, "forged", [handle, 8n, 4096, false]]);
          new Uint8Array((forged as { buffer: ArrayBuffer }).buffer)[0] = 1;
        },
        (e) => e instanceof TypeError && /no public constructor/.test(e.message),
      );
    }
    // The real ones still work, and the segment is untouched.
    const mutex = Mutex.init(shm.buffer, 64);
    mutex.lock().unlock();
    assert.equal(new Uint8Array(shm.buffer)[0], 0);
  } finally {
    cleanup({ key });
  }
});

test("a MutexGuard made from outside with a real Mutex and a guessed hold releases nothing", () => {
  const { MutexGuard } = lib;
  const key = uniqueKey();
  try {
    using shm = SharedMemory.create({ key }, 4096);
    const mutex = Mutex.init(shm.buffer, 0);
    const guard = mutex.lock(1000);
    for (const hold of [0, 1, 2, 3]) {
      assert.throws(
        () => Reflect.construct(MutexGuard, [mutex, true, hold]),
        (e) => e instanceof TypeError && /^MutexGuard has no public constructor/.test(e.message),
        `hold ${hold}`,
      );
    }
    // Still this thread's: a second lock here is a deadlock, and its guard unlocks it.
    assert.throws(
      () => mutex.tryLock(),
      (e) => e instanceof SharedMemoryError && e.code === "EDEADLK",
    );
    guard.unlock();
    mutex.lock(1000).unlock();
  } finally {
    cleanup({ key });
  }
});

test("Channel, its endpoints and MutexGuard say they have no public constructor, as SharedMemory and Mutex do", () => {
  const { ChannelSender, ChannelReceiver, MutexGuard } = lib;
  for (const cls of [Channel, ChannelSender, ChannelReceiver, MutexGuard]) {
    for (const args of [[], [{}, {}, new Set()]]) {
      assert.throws(
        () => Reflect.construct(cls as unknown as new (...a: unknown[]) => object, args),
        (e) => e instanceof TypeError && /^\w+ has no public constructor: use /.test(e.message),
        cls.name,
      );
    }
  }
});

test("a byteLength, id or created assigned or defined on a SharedMemory changes nothing it does", () => {
  // TypeScript's `readonly` is gone at run time: view() took its bounds from a byteLength
  // assigned from outside, and Bun made a buffer reaching past the mapping (SIGSEGV on access).
  const name = uniqueName("readonly");
  const other = uniqueName("readonly-other");
  try {
    const shm = SharedMemory.create({ name }, 4096);
    using spared = SharedMemory.create({ name: other }, 64);
    const attempts = [
      () => Object.assign(shm, { byteLength: 1 << 30, id: { name: other }, created: false }),
      () =>
        Object.defineProperties(shm, {
          byteLength: { value: 1 << 30 },
          id: { value: { name: other } },
          created: { value: false },
        }),
    ];
    for (const attempt of attempts) {
      try {
        attempt();
      } catch (err) {
        assert.ok(err instanceof TypeError, `refused with a TypeError: ${err}`); // a getter only
      }
    }
    assert.throws(() => shm.view(0, 1 << 30), RangeError);
    assert.throws(() => shm.view(1 << 29, 16), RangeError);
    assert.equal(shm.view().byteLength, 4096);
    assert.equal(shm.buffer.byteLength, 4096);
    shm.close();
    shm.unlink(); // its own name, not the one defined on it
    assert.equal(spared.byteLength, 64);
    assert.throws(
      () => SharedMemory.open({ name }),
      (e) => e instanceof SharedMemoryError && e.code === "ENOENT",
    );
    SharedMemory.open({ name: other }).close();
  } finally {
    cleanup({ name });
    cleanup({ name: other });
  }
});

test("an id object changed after open: unlink() and id still name the segment opened", () => {
  // SharedMemory and Channel kept the caller's own object: after `id.name = "/b"`, unlink()
  // removed "/b" and `id` returned the changed object.
  for (const kind of ["SharedMemory", "Channel"] as const) {
    for (const how of ["create", "open"] as const) {
      const [a, b] = [uniqueName("id-copy-a"), uniqueName("id-copy-b")];
      const [keyA, keyB] = [uniqueKey(), uniqueKey()];
      try {
        using spared = SharedMemory.create({ name: b }, 4096);
        using sparedKey = SharedMemory.create({ key: keyB }, 4096);
        for (const id of [{ name: a }, { key: keyA }] as Record<string, unknown>[]) {
          const made = kind === "SharedMemory"
            ? SharedMemory.create(id as Id, 4096)
            : Channel.create(id as Id, { capacity: 1024 });
          const given: Record<string, unknown> = how === "create" ? id : { ...id };
          const opened = how === "create"
            ? made
            : kind === "SharedMemory"
            ? SharedMemory.open(given as Id)
            : Channel.open(given as Id);
          const original = { ...given };
          if ("name" in given) given.name = b;
          else given.key = keyB;
          assert.deepEqual(opened.id, original, `${kind}.${how}: id after the change`);
          assert.ok(Object.isFrozen(opened.id), `${kind}.${how}: id is frozen`);
          assert.notEqual(opened.id, given, `${kind}.${how}: id is a copy`);
          opened.unlink();
          assert.throws(
            () => SharedMemory.open(original as Id),
            code("ENOENT"),
            `${kind}.${how}: the segment opened is gone`,
          );
          if (opened !== made) opened.close();
          made.close();
        }
        // The ids the objects were changed to are untouched.
        SharedMemory.open({ name: b }).close();
        SharedMemory.open({ key: keyB }).close();
        void spared, sparedKey;
      } finally {
        for (const id of [{ name: a }, { name: b }, { key: keyA }, { key: keyB }]) cleanup(id);
      }
    }
  }
});

test("a Mutex in a view() from any offset view() takes", () => {
  // view() starts at multiples of 8 only, a Mutex's alignment (72: not one of 16 or 64). It was a SharedMemoryError
  // EINVAL "Mutex.init at byte 0: invalid argument", then a RangeError of Mutex's own, over a
  // view() from byte 1, 4 or 12.
  const key = uniqueKey();
  try {
    using shm = SharedMemory.create({ key }, 4096);
    for (const start of [8, 72, 4096 - Mutex.BYTE_LENGTH]) {
      Mutex.init(shm.view(start, Mutex.BYTE_LENGTH), 0).lock().unlock();
      // The same lock through the whole buffer.
      Mutex.open(shm.buffer, start).lock().unlock();
    }
    assert.throws(() => shm.view(12, 256), RangeError);
  } finally {
    cleanup({ key });
  }
});
