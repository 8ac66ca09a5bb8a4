/**
 * The Mutex against what can go wrong around it: a Worker terminated while holding it, a peer
 * process writing garbage or a crafted owner into it (held or free), a holder whose lock a peer
 * overwrites, and closing memory that holds a lock of this process.
 *
 * Each test owns a named segment (or key) and removes it in `finally`, kills its children in
 * `finally`, and bounds every wait.
 *
 * @module
 */

import assert from "node:assert/strict";
import { readlinkSync } from "node:fs";
import process from "node:process";
import type { Mutex as Lock, SharedMemory as Segment } from "../mod.ts";
import {
  type Child,
  childrenTestUnless,
  cleanup,
  finished,
  HANG_MS,
  killAll,
  lib,
  noPidNamespace,
  ownerDiedCount,
  pid,
  resultOf,
  runtime,
  runtimes,
  scriptCommand,
  spawn,
  start,
  test,
  uniqueKey,
  uniqueName,
  UNSHARE_PID,
  within,
} from "./harness.ts";

const { Mutex, SharedMemory, SharedMemoryError, createSharedBuffer, detachSharedBuffer } = lib;

/** Where the tests put their lock; not 0, to catch offset mix-ups between processes. */
const AT = 64;
/** Int32 index of the owner word's low half (the thread id on Linux) for the lock at AT. */
const OWNER_LO = AT / 4 + 2;
const OWNER_HI = AT / 4 + 3;

const failsWith = (code: string) => (e: unknown) => {
  assert.ok(e instanceof SharedMemoryError, `a SharedMemoryError, got ${e}`);
  assert.equal(e.code, code);
  return true;
};

async function withSegment(
  tag: string,
  body: (name: string, shm: Segment) => Promise<void> | void,
): Promise<void> {
  const name = uniqueName(tag);
  try {
    const shm = SharedMemory.create({ name }, 4096);
    try {
      await body(name, shm);
    } finally {
      if (!shm.closed) shm.close();
    }
  } finally {
    cleanup({ name });
  }
}

/** Runs the scribbler child in `which`, writing `writes` (`index=value`) into the lock at AT. */
async function scribble(which: (typeof runtimes)[number], name: string, writes: string[]) {
  const children: Child[] = [];
  try {
    const c = spawn(children, which, "lock/scribble.ts", [name, String(AT), ...writes]);
    const r = await finished(c, `${which} scribbler`);
    assert.match(r.stdout, /^written$/m);
  } finally {
    killAll(children);
  }
}

/**
 * Starts `children/lock/lock_in_worker.ts` (a web Worker in Deno and Bun, a `node:worker_threads` Worker in
 * Node.js), asks it to take the lock at AT in segment `name`, and gives its reply and a way to
 * terminate it.
 */
async function lockWorker(
  name: string,
): Promise<{ reply: Promise<Record<string, unknown>>; terminate: () => void }> {
  const message = { name, offset: AT };
  if (runtime === "node") {
    const { Worker: NodeWorker } = await import("node:worker_threads");
    const w = new NodeWorker(new URL("./children/lock/lock_in_worker.js", import.meta.url));
    const reply = new Promise<Record<string, unknown>>((resolve, reject) => {
      w.once("message", resolve);
      w.once("error", (e) => reject(new Error(`worker error: ${e.message}`)));
    });
    w.postMessage(message);
    return { reply, terminate: () => void w.terminate() };
  }
  const url = new URL("./children/lock/lock_in_worker.ts", import.meta.url).href;
  const w = new Worker(url, { type: "module" });
  const reply = new Promise<Record<string, unknown>>((resolve, reject) => {
    w.onmessage = (e) => resolve(e.data);
    w.onerror = (e) => reject(new Error(`worker error: ${e.message}`));
  });
  w.postMessage(message);
  return { reply, terminate: () => w.terminate() };
}

// ---- Close while held ----------------------------------------------------------------------------

test("close() and detachSharedBuffer() while this process holds a lock inside: EBUSY, nothing closed", async () => {
  await withSegment("lk-close", (_, shm) => {
    const mutex = Mutex.init(shm.buffer, AT);
    const view = shm.view(0, 256);
    const far = shm.view(1024, 256);
    const guard = mutex.lock();
    assert.throws(() => shm.close(), failsWith("EBUSY"));
    assert.equal(shm.closed, false, "still open");
    assert.equal(shm.buffer.byteLength, 4096, "the buffer is still attached");
    assert.throws(() => detachSharedBuffer(view), failsWith("EBUSY"));
    assert.equal(view.byteLength, 256, "the view is still attached");
    detachSharedBuffer(far); // no lock inside it
    assert.equal(far.byteLength, 0);
    // The lock still works through both.
    assert.throws(() => Mutex.open(view, AT).lock(0), failsWith("EDEADLK"));
    guard.unlock();
    detachSharedBuffer(view);
    shm.close();
    assert.equal(shm.closed, true);
  });
});

test("a lock taken through one mapping and freed through another: close() of the first works, the lock being free", async () => {
  await withSegment("lk-alias", (name, shm) => {
    using other = SharedMemory.open({ name });
    Mutex.init(shm.buffer, AT).lock();
    assert.throws(() => shm.close(), failsWith("EBUSY"), "held through this mapping");
    // The other mapping's unlock frees it (its owner word names this thread)...
    Mutex.open(other.buffer, AT).unlock();
    assert.equal(Atomics.load(new Int32Array(other.buffer), OWNER_LO), 0);
    // ...and the first mapping no longer counts it: close() refused with EBUSY for a free lock.
    const again = Mutex.open(shm.view(0, 256), AT);
    const guard = again.lock(0);
    assert.throws(() => shm.close(), failsWith("EBUSY"), "held again");
    guard.unlock();
    Mutex.open(shm.buffer, AT).lock(0);
    Mutex.open(other.buffer, AT).unlock();
    shm.close();
    assert.equal(shm.closed, true);
    // A lock written free by a peer is not held either.
    using third = SharedMemory.open({ name });
    Mutex.open(third.buffer, AT).lock(0);
    Atomics.store(new Int32Array(other.buffer), OWNER_LO, 0);
    Atomics.store(new Int32Array(other.buffer), OWNER_HI, 0);
    third.close();
    assert.equal(third.closed, true);
  });
});

test("an unlock through a buffer moved away while this thread holds the lock says it stays held, and how to unlock it", async () => {
  if (!("transfer" in ArrayBuffer.prototype)) return; // Node 20: nothing moves a buffer
  await withSegment("lk-moved", (_, shm) => {
    const view = shm.view(0, 256);
    const guard = Mutex.init(view, AT).lock();
    const moved = (view as ArrayBuffer & { transfer(): ArrayBuffer }).transfer();
    assert.throws(() => guard.unlock(), (e: unknown) => {
      failsWith("EBADF")(e);
      assert.match((e as Error).message, /if this thread held the lock, it still does/);
      assert.match((e as Error).message, /Mutex\.open\(shm\.buffer, offset\)\.unlock\(\)/);
      return true;
    });
    assert.throws(() => shm.close(), failsWith("EBUSY"), "still held");
    Mutex.open(shm.buffer, AT).unlock();
    shm.close();
    assert.equal(moved.byteLength, 256, "the moved buffer keeps its own reference");
  });
});

test("a guard of a hold the Mutex ended directly does not release a later hold: unlock() and dispose do nothing", async () => {
  await withSegment("lk-guard", (_, shm) => {
    const mutex = Mutex.init(shm.buffer, AT);
    const old = mutex.lock();
    mutex.unlock(); // directly, not through the guard
    const now = mutex.lock();
    old.unlock();
    assert.throws(() => mutex.lock(0), failsWith("EDEADLK"), "still held");
    {
      using _stale = old;
    }
    assert.throws(() => mutex.lock(0), failsWith("EDEADLK"), "still held after the dispose");
    now.unlock();
    const free = mutex.tryLock();
    assert.ok(free, "free once its own guard unlocked it");
    free.unlock();
    // A `using` block that unlocks directly, then locks again: the dispose leaves the new hold.
    let inner: ReturnType<typeof mutex.lock> | undefined;
    {
      using guard = mutex.lock();
      assert.equal(guard.ownerDied, false);
      mutex.unlock();
      inner = mutex.lock();
    }
    assert.throws(() => mutex.lock(0), failsWith("EDEADLK"), "the later hold stands");
    inner.unlock();
    assert.throws(() => mutex.unlock(), failsWith("EPERM"));
    assert.throws(
      () => mutex.unlock(),
      /Mutex\.unlock at byte \d+: this thread does not hold the lock/,
    );
  });
});

/**
 * Takes a hold through `one`, ends it through `two` and takes another there: the first hold's
 * guard, stale, must leave the later hold alone.
 */
function staleGuardLeavesLaterHold(one: Lock, two: Lock): void {
  const old = one.lock();
  two.unlock(); // the hold `old` names ends through the other object
  const now = two.lock();
  old.unlock(); // a stale guard: nothing
  assert.throws(() => one.lock(0), failsWith("EDEADLK"), "the later hold stands");
  now.unlock();
}

test("a guard releases only its own hold when two Mutex objects share one lock (one per module of a program)", async () => {
  await withSegment("lk-twice", (_, shm) => {
    const one = Mutex.init(shm.buffer, AT);
    const two = Mutex.open(shm.buffer, AT);
    staleGuardLeavesLaterHold(one, two);
    // And the other way round: a hold taken through `one` ended by `now`'s object.
    const first = one.tryLock();
    assert.ok(first, "free once its own guard unlocked it");
    two.unlock();
    const second = one.lock();
    first.unlock();
    assert.throws(() => two.lock(0), failsWith("EDEADLK"), "the second hold stands");
    second.unlock();
    assert.throws(() => one.unlock(), failsWith("EPERM"), "nothing is held");
  });
});

// Two mappings of one segment show one lock at two addresses: the guards' bookkeeping went by
// address, and a stale guard of one released a hold taken through the other.
test("a guard releases only its own hold when the lock is reached through two mappings of its segment (two opens, a view, createSharedBuffer)", async () => {
  await withSegment("lk-maps", (name, shm) => {
    using other = SharedMemory.open({ name });
    const views: [ArrayBuffer, number][] = [
      [other.buffer, AT],
      [other.view(AT - 8, 128), 8],
    ];
    for (const [buffer, at] of views) {
      const one = Mutex.init(shm.buffer, AT);
      staleGuardLeavesLaterHold(one, Mutex.open(buffer, at));
      assert.throws(() => one.unlock(), failsWith("EPERM"), "nothing is held");
    }
  });
  const key = uniqueKey();
  try {
    const first = createSharedBuffer(key, 4096, true);
    const second = createSharedBuffer(key, 4096);
    staleGuardLeavesLaterHold(Mutex.init(first, AT), Mutex.open(second, AT));
    detachSharedBuffer(first);
    detachSharedBuffer(second);
  } finally {
    cleanup({ key });
  }
});

test("detachSharedBuffer() of a createSharedBuffer() buffer holding a lock of this thread: EBUSY until unlocked", () => {
  const key = uniqueKey();
  try {
    const buffer = createSharedBuffer(key, 4096, true);
    const guard = Mutex.init(buffer, 0).lock();
    assert.throws(() => detachSharedBuffer(buffer), failsWith("EBUSY"));
    assert.equal(buffer.byteLength, 4096);
    guard.unlock();
    detachSharedBuffer(buffer);
    assert.equal(buffer.byteLength, 0);
  } finally {
    cleanup({ key });
  }
});

// ---- A Worker terminated while holding the lock --------------------------------------------------

test("a Worker terminated while holding the lock: lock() in this thread and in a Deno and a Bun process see ownerDied", async () => {
  await withSegment("lk-worker", async (name, shm) => {
    const mutex = Mutex.init(shm.buffer, AT);
    const children: Child[] = [];
    try {
      // 1. This thread's next lock.
      let worker = await lockWorker(name);
      assert.deepEqual(await within(worker.reply, HANG_MS, "the worker's lock"), {
        locked: true,
        ownerDied: false,
      });
      assert.equal(mutex.tryLock(), null, "the worker holds it");
      worker.terminate();
      const recovered = mutex.lock(20_000);
      assert.equal(recovered.ownerDied, true, "ownerDied after the worker was terminated");
      recovered.unlock();
      const again = mutex.lock(1000);
      assert.equal(again.ownerDied, false);
      again.unlock();

      // 2. Processes of both runtimes already waiting in lock() when the worker goes.
      worker = await lockWorker(name);
      await within(worker.reply, HANG_MS, "the second worker's lock");
      const waiters = runtimes.map((which) =>
        spawn(children, which, "lock/take_lock.ts", [name, String(AT), "open", "unlock"])
      );
      await within(
        Promise.all(waiters.map((c) => c.line("locking "))),
        20_000,
        "the waiters' lock calls",
      );
      worker.terminate();
      const results = await Promise.all(
        waiters.map((c, i) => finished(c, `${runtimes[i]} waiter`)),
      );
      assert.equal(ownerDiedCount(results), 1, "waiters told ownerDied");
    } finally {
      killAll(children);
    }
  });
});

// ---- Hostile peers ---------------------------------------------------------------------------------

for (const peer of runtimes) {
  test(`a ${peer} peer writing garbage into a free lock: the next lock() reports ownerDied`, async () => {
    await withSegment("lk-free", async (name, shm) => {
      const mutex = Mutex.init(shm.buffer, AT);
      for (
        const words of [
          ["2=0xdeadbeef", "3=0xdeadbeef"],
          ["2=-1", "3=-1"],
          ["2=0x80000000", "3=0"], // the waiters bit alone
          ["2=0x40000007", "3=1"], // a bit no owner has
          ["2=0", "3=12345"], // no owner token
          [`2=${pid}`, "3=1"], // this process's main thread, with the wrong start time
        ]
      ) {
        await scribble(peer, name, words);
        const guard = mutex.lock(5000);
        assert.equal(guard.ownerDied, true, `after ${words}`);
        guard.unlock();
        const next = mutex.tryLock();
        assert.ok(next !== null && !next.ownerDied, `a clean lock after ${words}`);
        next.unlock();
      }
    });
  });

  test(`a ${peer} peer overwriting a lock this process holds: unlock() is EPERM, the lock recovers, close() works`, async () => {
    await withSegment("lk-held", async (name, shm) => {
      const mutex = Mutex.init(shm.buffer, AT);
      const guard = mutex.lock();
      await scribble(peer, name, ["2=0x12345678", "3=0x9abcdef0"]);
      assert.throws(() => guard.unlock(), failsWith("EPERM"));
      const again = mutex.lock(5000);
      assert.equal(again.ownerDied, true);
      await scribble(peer, name, ["2=0", "3=0"]); // freed under the holder
      assert.throws(() => again.unlock(), failsWith("EPERM"));
      // Freed under the holder again, and taken anew: held once, not once for each hold.
      const third = mutex.lock(5000);
      await scribble(peer, name, ["2=0", "3=0"]);
      const fourth = mutex.lock(5000);
      assert.equal(fourth.ownerDied, false);
      fourth.unlock();
      third.unlock(); // a hold that was lost: nothing to do
      shm.close(); // nothing counts as held any more
    });
  });

  test(`a ${peer} peer overwriting the lock's header: ENOTRECOVERABLE, Mutex.open EINVAL, no crash`, async () => {
    await withSegment("lk-header", async (name, shm) => {
      const mutex = Mutex.init(shm.buffer, AT);
      for (const words of [["0=7"], ["0=-1"], ["1=1"], ["1=0"]]) {
        await scribble(peer, name, words);
        assert.throws(() => mutex.lock(1000), failsWith("ENOTRECOVERABLE"), `${words}`);
        // The message says what happened and what to do, not only the code's text.
        assert.throws(
          () => mutex.tryLock(),
          (e) =>
            failsWith("ENOTRECOVERABLE")(e) &&
            /Mutex\.tryLock .*its bytes were overwritten.*call Mutex\.init again/
              .test((e as Error).message),
          `${words}`,
        );
        assert.throws(() => Mutex.open(shm.buffer, AT), failsWith("EINVAL"), `${words}`);
        assert.throws(() => Mutex.init(shm.buffer, AT), failsWith("EINVAL"), `${words}`);
        await scribble(peer, name, ["0=2", "1=2"]);
        mutex.lock(1000).unlock();
      }
      // "Being set up", which a ready lock never goes back to: tryLock() does not wait for it,
      // lock() no longer than its timeout (Rust's tests check the waits).
      await scribble(peer, name, ["0=1"]);
      assert.throws(() => mutex.tryLock(), failsWith("EAGAIN"), "initialising");
      assert.throws(() => mutex.lock(1), failsWith("EAGAIN"), "initialising");
      await scribble(peer, name, ["0=2"]);
      mutex.lock(1000).unlock();
      await scribble(peer, name, ["0=0"]);
      assert.throws(
        () => mutex.lock(1000),
        (e) =>
          failsWith("EINVAL")(e) &&
          /Mutex\.lock .*the lock's state word is zero.*call Mutex\.init there again/
            .test((e as Error).message),
        "zeroed state",
      );
    });
  });

  test(`a ${peer} peer copying a live holder's identity into a free lock: busy until that holder dies, then ownerDied`, async () => {
    await withSegment("lk-crafted", async (name, shm) => {
      const victim = 512; // the crafted lock
      const mutex = Mutex.init(shm.buffer, AT);
      const target = Mutex.init(shm.buffer, victim);
      const children: Child[] = [];
      try {
        // A live holder of the lock at AT, in another process.
        const holder = spawn(children, peer, "lock/take_lock.ts", [
          name,
          String(AT),
          "open",
          "hold",
        ]);
        await within(holder.line("locked"), HANG_MS, "the holder's lock");
        const i32 = new Int32Array(shm.buffer);
        const lo = Atomics.load(i32, OWNER_LO);
        const hi = Atomics.load(i32, OWNER_HI);
        assert.notEqual(lo, 0, "the holder's owner word");
        const writer = spawn(children, peer, "lock/scribble.ts", [
          name,
          String(victim),
          `2=${lo}`,
          `3=${hi}`,
        ]);
        await finished(writer, "scribbler");
        assert.equal(target.tryLock(), null, "named by a live thread: busy");
        assert.throws(() => target.lock(50), failsWith("ETIMEDOUT"));
        // The error says which lock, and how long the call waited.
        assert.throws(
          () => target.lock(50),
          /^SharedMemoryError: Mutex\.lock at byte 512 \(waited 50 ms\): /,
        );
        assert.throws(() => target.unlock(), failsWith("EPERM"));
        assert.throws(
          () => target.unlock(),
          /^SharedMemoryError: Mutex\.unlock at byte 512: this thread does not hold/,
        );
        holder.kill("SIGKILL");
        await within(holder.done, 10_000, "the killed holder");
        const taken = target.lock(5000);
        assert.equal(taken.ownerDied, true, "the named thread is dead now");
        taken.unlock();
        const original = mutex.lock(5000);
        assert.equal(original.ownerDied, true);
        original.unlock();
      } finally {
        killAll(children);
      }
    });
  });

  test(`this process overwriting a ${peer} holder's lock: the holder's unlock() is EPERM, it survives and relocks with ownerDied`, async () => {
    await withSegment("lk-victim", async (name, shm) => {
      const flag = 800;
      Mutex.init(shm.buffer, AT);
      const children: Child[] = [];
      try {
        const victim = spawn(children, peer, "lock/overwritten_holder.ts", [
          name,
          String(AT),
          String(flag),
        ]);
        assert.equal(
          await within(victim.line("locked"), HANG_MS, "the victim's lock"),
          "locked ownerDied=false",
        );
        const i32 = new Int32Array(shm.buffer);
        Atomics.store(i32, OWNER_LO, 0x7fff_fff0);
        Atomics.store(i32, OWNER_HI, 0x1234);
        Atomics.store(i32, flag, 1);
        lib.notify(i32, flag);
        const r = await finished(victim, `${peer} victim`);
        assert.match(r.stdout, /^unlock EPERM$/m);
        assert.match(r.stdout, /^relocked ownerDied=true$/m);
      } finally {
        killAll(children);
      }
    });
  });
}

test("init records the pid namespace in the lock; an init or open where another is recorded is EXDEV, and none recorded is no check", async () => {
  await withSegment("lk-pidns-word", (_name, shm) => {
    const mutex = Mutex.init(shm.buffer, AT);
    const words = new Uint32Array(shm.buffer);
    const word = AT / 4 + 4; // bytes 16..20 of the lock
    const ours = words[word];
    if (process.platform !== "linux") return; // no pid namespaces: nothing recorded, no check
    assert.equal(`pid:[${ours}]`, readlinkSync("/proc/self/ns/pid"), "the namespace init recorded");
    const theirs = (ours + 1) >>> 0;
    words[word] = theirs;
    const refused = (call: string) => (e: unknown) =>
      e instanceof SharedMemoryError && e.code === "EXDEV" &&
      e.message.startsWith(`${call} at byte ${AT}: the lock was set up in another pid namespace`) &&
      e.message.includes(`(pid:[${theirs}]; this process is in pid:[${ours}])`);
    assert.throws(() => Mutex.open(shm.buffer, AT), refused("Mutex.open"));
    assert.throws(() => Mutex.init(shm.buffer, AT), refused("Mutex.init"));
    // None recorded, as in a lock of an earlier release: no check.
    words[word] = 0;
    Mutex.open(shm.buffer, AT).lock(1000).unlock();
    mutex.lock(1000).unlock();
  });
});

test("Mutex.init over bytes that are neither zero nor a lock says so, and what to do", async () => {
  await withSegment("lk-garbage", (_name, shm) => {
    new Uint32Array(shm.buffer, AT, 16).fill(0xdeadbeef);
    assert.throws(
      () => Mutex.init(shm.buffer, AT),
      (e) =>
        e instanceof SharedMemoryError && e.code === "EINVAL" &&
        e.message ===
          `Mutex.init at byte ${AT}: the bytes there are neither zero nor a lock of this library's layout (overwritten, or another version's): zero them to set up a new lock there (EINVAL)`,
    );
    new Uint32Array(shm.buffer, AT, 16).fill(0);
    Mutex.init(shm.buffer, AT).lock(1000).unlock();
  });
});

test("a lock whose set-up never finished (its state word left at 1) is EAGAIN everywhere, saying what to do", async () => {
  await withSegment("lk-stuck", (_name, shm) => {
    new Uint32Array(shm.buffer, AT, 1)[0] = 1; // `initialising`, as a process that died in init
    const says = (call: string) => (e: unknown) =>
      e instanceof SharedMemoryError && e.code === "EAGAIN" &&
      e.message ===
        `${call} at byte ${AT}: another process is setting this lock up (Mutex.init), or died while it did, or a peer wrote its state word, which leaves it unusable: if this persists, zero its 64 bytes and call Mutex.init again (EAGAIN)`;
    assert.throws(() => Mutex.open(shm.buffer, AT), says("Mutex.open"));
    assert.throws(() => Mutex.init(shm.buffer, AT), says("Mutex.init"));
    new Uint32Array(shm.buffer, AT, 16).fill(0);
    Mutex.init(shm.buffer, AT).lock(1000).unlock();
  });
});

for (const which of runtimes) {
  childrenTestUnless(
    noPidNamespace,
    [which],
    `a ${which} child in another pid namespace: EXDEV from a lock set up here (a holder here would look dead to it), and a lock it set up is EXDEV here`,
    async () => {
      await withSegment("lk-pidns", async (name, shm) => {
        const children: Child[] = [];
        const run = async (how: "init" | "open", at: number, away: boolean) => {
          const command = scriptCommand(which, "lock/try_open.ts", [name, String(at), how]);
          const child = start(away ? [...UNSHARE_PID, ...command] : command);
          children.push(child);
          const what = `a child ${away ? "in a new" : "in this"} pid namespace`;
          return resultOf<{ code: string; message: string }>(await finished(child, what), what);
        };
        try {
          using _guard = Mutex.init(shm.buffer, AT).lock(); // held here throughout
          const here = await run("open", AT, false);
          assert.equal(
            here.code,
            "ETIMEDOUT",
            `a child here waits for the holder: ${here.message}`,
          );
          for (const how of ["open", "init"] as const) {
            const away = await run(how, AT, true);
            assert.equal(away.code, "EXDEV", away.message);
            assert.match(away.message, /another pid namespace \(pid:\[\d+\]; this process is in/);
          }
          // A lock the other namespace set up is refused here.
          const made = await run("init", 2 * AT, true);
          assert.equal(made.code, "ok", made.message);
          assert.throws(() => Mutex.open(shm.buffer, 2 * AT), failsWith("EXDEV"));
        } finally {
          await killAll(children);
        }
      });
    },
  );
}
