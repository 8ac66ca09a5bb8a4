import assert from "node:assert/strict";
import vm from "node:vm";
import {
  cleanup,
  HANG_MS,
  lacking,
  lib,
  runtime,
  sleep,
  test,
  testUnless,
  uniqueName,
  until,
  within,
} from "./harness.ts";

const { Mutex, notify, SharedMemory, SharedMemoryError, wait, waitAsync } = lib;

/** A fresh, already unlinked segment of `size` bytes. */
function scratch(size = 4096) {
  const name = uniqueName("sync");
  const shm = SharedMemory.create({ name }, size);
  cleanup({ name });
  return shm;
}

test("wait: not-equal at once, timed-out no earlier than asked", () => {
  using shm = scratch();
  const i32 = new Int32Array(shm.buffer);
  Atomics.store(i32, 3, 7);
  assert.equal(wait(i32, 3, 8), "not-equal");
  assert.equal(wait(i32, 3, 7, 0), "timed-out");
  const start = performance.now();
  assert.equal(wait(i32, 3, 7, 30), "timed-out");
  assert.ok(performance.now() - start >= 29.9, "never earlier than the timeout");
  assert.equal(wait(i32, 3, 7, 5, { spin: 100 }), "timed-out");
  assert.equal(wait(i32, 3, 6, undefined, { spin: 100 }), "not-equal");
});

test("wait with an adaptive spin: not-equal at once, timed-out no earlier than asked, options checked", () => {
  using shm = scratch();
  const i32 = new Int32Array(shm.buffer);
  const adaptive = { spin: "adaptive" } as const;
  Atomics.store(i32, 3, 7);
  assert.equal(wait(i32, 3, 8, undefined, adaptive), "not-equal");
  assert.equal(wait(i32, 3, 7, 0, adaptive), "timed-out");
  assert.equal(wait(i32, 3, -1 >>> 0, 0, adaptive), "not-equal", "all 32 bits compared");
  i32[4] = -1;
  assert.equal(wait(i32, 4, 0xffff_ffff, 0, adaptive), "timed-out");
  // Timeouts shorter than a spin, about one, and far longer: each ends no earlier than asked,
  // whether it ended while spinning or after parking (the spin stops at a few failures).
  for (const ms of [0.005, 0.05, 0.2, 1, 1, 1, 1, 1, 20]) {
    const start = performance.now();
    assert.equal(wait(i32, 3, 7, ms, adaptive), "timed-out");
    const took = performance.now() - start;
    assert.ok(took >= ms - 0.001, `a ${ms} ms timeout ended after ${took} ms`);
  }
  // Another view of the same word shares what its waits learned, and works the same.
  assert.equal(wait(new Int32Array(shm.buffer, 12, 1), 0, 7, 1, adaptive), "timed-out");
  for (const spin of ["fast", "ADAPTIVE", -1, 1.5, null, {}]) {
    assert.throws(
      () => wait(i32, 3, 7, 0, { spin } as never),
      (e: unknown) =>
        (e instanceof TypeError || e instanceof RangeError) && /options\.spin/.test(e.message),
      String(spin),
    );
  }
  shm.close();
  const closed = (e: unknown) => e instanceof SharedMemoryError && e.code === "EBADF";
  assert.throws(() => wait(i32, 3, 7, 0, adaptive), closed);
});

test("wait compares all 32 bits, signed or unsigned", () => {
  using shm = scratch();
  const i32 = new Int32Array(shm.buffer);
  i32[0] = -1;
  assert.equal(wait(i32, 0, 0xffff_ffff, 0), "timed-out", "-1 and 0xffffffff are the same word");
  assert.equal(wait(i32, 0, -1, 0), "timed-out");
  assert.equal(wait(i32, 0, 0, 0), "not-equal");
});

test("waitAsync: not-equal, timed-out, and a wake-up while timers keep running", async () => {
  using shm = scratch();
  const i32 = new Int32Array(shm.buffer);
  assert.equal(await waitAsync(i32, 0, 1), "not-equal");
  const start = performance.now();
  assert.equal(await waitAsync(i32, 0, 0, 30), "timed-out");
  assert.ok(performance.now() - start >= 29.9);
  // The event loop runs while the wait is pending: a timer ticks five times before anything
  // changes the word. (Were the loop blocked, no tick would come and the test would hang.)
  let settled = false;
  const woken = waitAsync(i32, 1, 0, HANG_MS).finally(() => (settled = true));
  let ticks = 0;
  await new Promise<void>((resolve) => {
    const timer = setInterval(() => {
      if (++ticks < 5) return;
      clearInterval(timer);
      resolve();
    }, 1);
  });
  assert.equal(settled, false, "the wait ended before any notify");
  Atomics.store(i32, 1, 1);
  notify(i32, 1);
  assert.equal(await woken, "ok");
});

test("notify wakes waitAsync waiters one at a time, then all", async () => {
  using shm = scratch();
  const i32 = new Int32Array(shm.buffer);
  const results: string[] = [];
  const waiters = [0, 1, 2].map(() => waitAsync(i32, 2, 0, HANG_MS).then((r) => results.push(r)));
  assert.equal(notify(i32, 2, 0), 0, "a count of 0 wakes nobody");
  assert.equal(notify(i32, 2, -0), 0, "nor does -0 (which Deno's FFI refuses as unsigned)");
  // notify(1) wakes exactly one waiter once one has parked in the kernel; until then it wakes
  // nobody (the word never changes, so a waiter that has not parked yet parks later).
  await until(() => notify(i32, 2, 1) === 1, "a waiter to park and be woken by notify(1)");
  await Promise.race(waiters);
  assert.deepEqual(results, ["ok"], "exactly one woke");
  // The other two, however many notifies it takes for both to have parked.
  let woken = 0;
  await until(() => (woken += notify(i32, 2)) === 2, "the other two waiters to be woken");
  await Promise.all(waiters);
  assert.deepEqual(results, ["ok", "ok", "ok"]);
  assert.equal(notify(i32, 2), 0, "nobody is left waiting");
});

test("wait/notify misuse: clear errors, the process lives on", async () => {
  const shm = scratch();
  const i32 = new Int32Array(shm.buffer);
  const typeError = (what: string) => (e: unknown) =>
    e instanceof TypeError && e.message.includes(what);
  assert.throws(() => wait(new Int32Array(4), 0, 0, 0), typeError("SharedMemory"));
  assert.throws(
    () => wait(new Int32Array(new SharedArrayBuffer(16)), 0, 0, 0),
    typeError("not a plain ArrayBuffer, a SharedArrayBuffer"),
  );
  assert.throws(() => wait(new Uint32Array(shm.buffer) as never, 0, 0, 0), typeError("Int32Array"));
  assert.throws(() => notify([0] as never, 0), typeError("Int32Array"));
  assert.throws(() => wait(i32, i32.length, 0, 0), RangeError);
  assert.throws(() => wait(i32, -1, 0, 0), RangeError);
  assert.throws(() => wait(i32, 0.5, 0, 0), RangeError);
  assert.throws(() => wait(i32, 0, 2 ** 32, 0), RangeError);
  assert.throws(() => wait(i32, 0, 1.5, 0), RangeError);
  assert.throws(() => wait(i32, 0, "0" as never, 0), TypeError);
  assert.throws(() => wait(i32, 0, 0, -1), RangeError);
  assert.throws(() => wait(i32, 0, 0, NaN), RangeError);
  assert.throws(() => wait(i32, 0, 0, "1" as never), TypeError);
  assert.throws(() => wait(i32, 0, 0, 0, { spin: -1 }), RangeError);
  assert.throws(
    () => wait(i32, 0, 0, 0, { spin: "x" as never }),
    /options\.spin must be "adaptive" or a number of rounds, got string "x"$/,
  );
  assert.throws(() => notify(i32, 0, -1), RangeError);
  await assert.rejects(waitAsync(new Int32Array(4), 0, 0), TypeError);
  const offset = new Int32Array(shm.buffer, 64, 4);
  Atomics.store(offset, 3, 5);
  assert.equal(wait(offset, 3, 5, 0), "timed-out", "a view at an offset reaches the right word");
  shm.close();
  const closed = (e: unknown) => e instanceof SharedMemoryError && e.code === "EBADF";
  assert.throws(() => wait(i32, 0, 0, 0), closed);
  assert.throws(() => notify(i32, 0), closed);
  await assert.rejects(waitAsync(i32, 0, 0, 0), closed);
});

test("an Int32Array or a receive target of another realm (node:vm) is refused with what to do", () => {
  using shm = scratch();
  const foreign = vm.runInNewContext("new Int32Array(b)", { b: shm.buffer }) as Int32Array;
  // Where node:vm makes its arrays in this realm (Deno), they are this realm's: nothing to refuse.
  if (foreign instanceof Int32Array) return;
  const says = /got Int32Array of another realm \(node:vm\?\): make one in this realm/;
  assert.throws(() => wait(foreign, 0, 1), (e) => e instanceof TypeError && says.test(e.message));
  assert.throws(() => notify(foreign, 0), (e) => e instanceof TypeError && says.test(e.message));
  const name = uniqueName("realm");
  try {
    using ch = lib.Channel.create({ name }, { capacity: 1024 });
    using rx = ch.receiver();
    const target = vm.runInNewContext("new Uint8Array(8)") as Uint8Array;
    assert.throws(
      () => rx.recvInto(target, 0),
      (e) => e instanceof TypeError && /Uint8Array of another realm/.test(e.message),
    );
  } finally {
    cleanup({ name });
  }
});

test("wait, waitAsync and notify over view()s reach the word at the view's own offset", async () => {
  using shm = scratch();
  Atomics.store(new Int32Array(shm.buffer), 2, 5);
  const window = new Int32Array(shm.view(8, 16));
  assert.equal(wait(window, 0, 5, 0), "timed-out");
  assert.equal(wait(window, 0, 4, 0), "not-equal");
  assert.equal(wait(window, 0, 5, 0, { spin: "adaptive" }), "timed-out");
  assert.equal(await waitAsync(window, 0, 4, 0), "not-equal");
  // Woken through another view of the same word (notified until the wait is parked).
  const woken = waitAsync(window, 0, 5, 10_000);
  const whole = new Int32Array(shm.view(0, 16));
  await until(() => notify(whole, 2) === 1, "a waiter woken through the other view");
  assert.equal(await woken, "ok");
  // A view() is never misaligned, but an array of bytes given Int32Array's prototype passes
  // `instanceof` at any offset: a RangeError that says so, before the call (not EINVAL).
  const misaligned = (e: unknown) =>
    e instanceof RangeError &&
    /not a multiple of 4 \(a typed array of another type/.test(e.message);
  for (const start of [1, 2, 3, 6]) {
    const bytes = Object.setPrototypeOf(
      new Uint8Array(shm.buffer, start, 16),
      Int32Array.prototype,
    );
    assert.throws(() => wait(bytes, 0, 1, 0), misaligned, `wait, byte ${start}`);
    assert.throws(() => wait(bytes, 0, 1, 0, { spin: 10 }), misaligned, `spin, byte ${start}`);
    assert.throws(() => wait(bytes, 0, 1, 0, { spin: "adaptive" }), misaligned);
    assert.throws(() => notify(bytes, 0), misaligned, `notify, byte ${start}`);
    await assert.rejects(waitAsync(bytes, 0, 1, 0), misaligned, `waitAsync, byte ${start}`);
  }
});

test("wait: options must be an object (or undefined)", () => {
  // A string was read as "no options" and the wait went ahead.
  using shm = scratch();
  const i32 = new Int32Array(shm.buffer);
  for (const options of ["x", 5, null, true, [1]]) {
    assert.throws(
      () => wait(i32, 0, 1, 0, options as never),
      (e) => e instanceof TypeError && /^options must be an object, got /.test(e.message),
      `options ${String(options)}`,
    );
  }
  assert.equal(wait(i32, 0, 1, 0, undefined), "not-equal");
  assert.equal(wait(i32, 0, 0, 0, {}), "timed-out");
  // A misspelt option was taken for none, as no other call's options are.
  assert.throws(
    () => wait(i32, 0, 0, 0, { spn: 100 } as never),
    (e) =>
      e instanceof TypeError &&
      e.message === 'options has no option "spn"; the options are spin',
  );
});

test("timeout errors of wait, waitAsync and lock are worded as a channel's", async () => {
  // wait and lock said "got object" for null where a channel said "got null", and "must be at
  // least 0 (or Infinity)" where a channel said "must be between 0 and 9007199254740991".
  using shm = scratch();
  const i32 = new Int32Array(shm.buffer);
  const mutex = Mutex.init(shm.buffer, 64);
  using channel = lib.Channel.create({ name: uniqueName("sync-timeouts") }, { capacity: 1024 });
  channel.unlink();
  const rx = channel.receiver();
  // NaN was "must be an integer" though fractions are taken.
  const from = "timeoutMs must be a number of milliseconds from 0 (Infinity or undefined for none)";
  const cases: [unknown, ErrorConstructor, string][] = [
    [null, TypeError, "timeoutMs must be a number, got null"],
    ["1", TypeError, 'timeoutMs must be a number, got string "1"'],
    [-1, RangeError, `${from}, got -1`],
    [-0.5, RangeError, `${from}, got -0.5`],
    [-Infinity, RangeError, `${from}, got -Infinity`],
    [NaN, RangeError, `${from}, got NaN`],
  ];
  for (const [timeout, type, message] of cases) {
    const is = (e: unknown) => e instanceof type && (e as Error).message === message;
    const t = timeout as number;
    assert.throws(() => rx.recv(t), is, `recv(${String(timeout)}): the wording to match`);
    assert.throws(() => wait(i32, 0, 0, t), is, `wait(${String(timeout)})`);
    assert.throws(() => mutex.lock(t), is, `lock(${String(timeout)})`);
    await assert.rejects(waitAsync(i32, 0, 0, t), is, `waitAsync(${String(timeout)})`);
  }
  // A fraction of a millisecond is a timeout here, as before.
  assert.equal(wait(i32, 0, 0, 0.25), "timed-out");
  // Past Number.MAX_SAFE_INTEGER a timeout is none, in every call alike (a channel refused it).
  channel.sender().send("waiting");
  for (const huge of [2 ** 53, 1e300, Number.MAX_VALUE]) {
    assert.equal(wait(i32, 0, 1, huge), "not-equal");
    assert.equal(await waitAsync(i32, 0, 1, huge), "not-equal");
    const guard = mutex.lock(huge);
    assert.equal(guard.ownerDied, false);
    guard.unlock();
  }
  assert.equal(new TextDecoder().decode(rx.recv(1e300) ?? undefined), "waiting");
});

test("wait and notify reach each buffer's own word, and none after its segment closed", () => {
  const a = scratch();
  using b = scratch();
  const [wa, wb] = [new Int32Array(a.buffer), new Int32Array(b.buffer)];
  Atomics.store(wa, 5, 1);
  Atomics.store(wb, 5, 2);
  // The same word twice in each buffer: the second call finds the address the first made.
  for (let round = 0; round < 2; round++) {
    assert.equal(wait(wa, 5, 1, 0), "timed-out", "a's word holds 1");
    assert.equal(wait(wb, 5, 1, 0), "not-equal", "b's word holds 2, not a's 1");
    assert.equal(wait(new Int32Array(b.buffer, 20, 1), 0, 2, 0), "timed-out", "byte 20 is word 5");
    assert.equal(notify(wa, 5), 0);
  }
  a.close();
  const closed = (e: unknown) => e instanceof SharedMemoryError && e.code === "EBADF";
  assert.throws(() => wait(wa, 5, 1, 0), closed, "a word used before the close");
  assert.throws(() => notify(wa, 5), closed);
  assert.throws(() => wait(wa, 9, 1, 0), closed, "any index of a closed segment's view");
  assert.equal(wait(wb, 5, 2, 0), "timed-out", "the other segment works on");
});

test("arrays and buffers that lie about their size or place reach no word outside their mapping", async () => {
  using shm = scratch();
  const words = 4096 / 4;
  const beyond = 1 << 26; // 256 MiB past the mapping: a read there ends the process
  const outside = (e: unknown) => e instanceof RangeError && /index/.test(e.message);
  class Longer extends Int32Array {
    override get length() {
      return 1 << 28;
    }
    override get byteLength() {
      return 1 << 30;
    }
  }
  class Shifted extends Int32Array {
    override get byteOffset() {
      return 1 << 30;
    }
  }
  const own = new Int32Array(shm.buffer);
  Object.defineProperty(own, "length", { value: 1 << 28 });
  Object.defineProperty(own, "byteLength", { value: 1 << 30 });
  // A byte array given Int32Array's prototype: `instanceof` passes, its element count is 4x its
  // word count.
  const bytes = Object.setPrototypeOf(new Uint8Array(shm.buffer), Int32Array.prototype);
  for (const view of [new Longer(shm.buffer), own, bytes]) {
    assert.throws(() => wait(view, beyond, 0, 0, { spin: 100 }), outside);
    assert.throws(() => wait(view, words, 0, 0, { spin: 100 }), outside);
    assert.throws(() => notify(view, beyond), outside);
    await assert.rejects(waitAsync(view, beyond, 0, 0), outside);
    Atomics.store(new Int32Array(shm.buffer), words - 1, 7);
    assert.equal(wait(view, words - 1, 7, 0), "timed-out", "the last word is still reached");
    // An adaptive spin reads the word itself: the word the native wait parks on, not what the
    // array's own elements show (byte 1023 of the byte array, which holds 0).
    assert.throws(() => wait(view, beyond, 0, 0, { spin: "adaptive" }), outside);
    for (const ms of [0, 0.2]) {
      assert.equal(wait(view, words - 1, 7, ms, { spin: "adaptive" }), "timed-out", `${ms} ms`);
    }
    assert.equal(wait(view, words - 1, 0, 0, { spin: "adaptive" }), "not-equal");
  }
  // The engine's byteOffset, not the subclass's: word 3 of the segment.
  Atomics.store(new Int32Array(shm.buffer), 3, 9);
  assert.equal(wait(new Shifted(shm.buffer), 3, 9, 0, { spin: 100 }), "timed-out");
  // Not a typed array at all: the engine's accessors refuse it.
  const fake = Object.create(Int32Array.prototype);
  const looks = (call: string) => ({
    name: "TypeError",
    message: new RegExp(`^${call}: view must be an Int32Array.*only looks like a typed array`),
  });
  assert.throws(() => wait(fake, 0, 0, 0), looks("wait"));
  assert.throws(() => notify(new Proxy(new Int32Array(shm.buffer), {}), 0), looks("notify"));
  // A revoked Proxy: the engine's own error at `instanceof` named nothing of the call.
  const revoked = Proxy.revocable(new Int32Array(shm.buffer), {});
  revoked.revoke();
  const refused = (call: string) => ({
    name: "TypeError",
    message: new RegExp(`^${call}: view must be an Int32Array over shared memory, got .*revoked`),
  });
  assert.throws(() => wait(revoked.proxy, 0, 0, 0), refused("wait"));
  assert.throws(() => notify(revoked.proxy, 0), refused("notify"));
  await assert.rejects(async () => await waitAsync(revoked.proxy, 0, 0, 0), refused("waitAsync"));
  const dataView = Object.setPrototypeOf(new DataView(shm.buffer), Int32Array.prototype);
  assert.throws(() => wait(dataView, 0, 0, 0), {
    name: "TypeError",
    message: /^wait: view must be an Int32Array .*a DataView given a typed array's prototype/,
  });

  // A buffer whose byteLength or detached flag was redefined on it: the engine's count bounds a
  // mutex's place, and a detached buffer stays detached.
  const buffer = shm.buffer;
  Object.defineProperty(buffer, "byteLength", { value: 2 ** 40 });
  assert.throws(() => Mutex.init(buffer, 2 ** 39), RangeError);
  assert.throws(() => Mutex.init(buffer, 4096), RangeError);
  Mutex.init(buffer, 4096 - Mutex.BYTE_LENGTH).lock().unlock();
  const other = scratch();
  const gone = other.view();
  Object.defineProperty(gone, "detached", { value: false });
  Object.defineProperty(gone, "byteLength", { value: 4096 });
  other.close();
  const closed = (e: unknown) => e instanceof SharedMemoryError && e.code === "EBADF";
  assert.throws(() => Mutex.init(gone, 0), closed);
  assert.throws(() => wait(new Int32Array(4), 0, 0, 0), TypeError);
});

test("Mutex: lock, tryLock, unlock, guards with using", () => {
  using shm = scratch();
  const mutex = Mutex.init(shm.buffer, 64);
  assert.equal(Mutex.BYTE_LENGTH, 64);
  {
    using guard = mutex.lock();
    assert.equal(guard.ownerDied, false);
    assert.throws(
      () => mutex.lock(0),
      (e) => e instanceof SharedMemoryError && e.code === "EDEADLK",
      "relocking on the same thread is an error, not a hang",
    );
  }
  const guard = mutex.tryLock();
  assert.ok(guard, "free again after the using block");
  guard.unlock();
  guard.unlock(); // a guard unlocks once
  assert.throws(
    () => mutex.unlock(),
    (e) => e instanceof SharedMemoryError && e.code === "EPERM",
    "unlocking a lock you do not hold is an error",
  );
  // A second init attaches to the same mutex; open finds it.
  const again = Mutex.init(shm.buffer, 64);
  const opened = Mutex.open(shm.view(0, 256), 64);
  using held = again.lock(1000);
  assert.throws(
    () => opened.lock(0),
    (e) => e instanceof SharedMemoryError && e.code === "EDEADLK",
  );
  assert.equal(held.ownerDied, false);
});

test("Mutex misuse: bad buffers and offsets, no mutex there, closed segment", () => {
  const shm = scratch();
  assert.throws(() => Mutex.init(new ArrayBuffer(64)), TypeError);
  assert.throws(
    () => Mutex.init(shm.buffer, 4),
    (e) => e instanceof RangeError && /multiple of 8/.test(e.message),
  );
  assert.throws(() => Mutex.init(shm.buffer, 4096 - 32), RangeError);
  assert.throws(() => Mutex.init(shm.buffer, -8), RangeError);
  // A buffer shorter than a mutex: it said "byteOffset must be between 0 and -32".
  for (const init of [Mutex.init, Mutex.open]) {
    assert.throws(
      () => init(shm.view(0, 32)),
      (e) =>
        e instanceof RangeError &&
        /^Mutex\.(init|open): a mutex takes 64 bytes, the buffer has 32$/.test(e.message),
    );
  }
  assert.throws(
    () => Mutex.open(shm.buffer, 128),
    (e) => e instanceof SharedMemoryError && e.code === "EINVAL" && /Mutex.init/.test(e.message),
  );
  const mutex = Mutex.init(shm.buffer, 0);
  assert.throws(() => mutex.lock(-5), RangeError);
  shm.close();
  const closed = (e: unknown) => e instanceof SharedMemoryError && e.code === "EBADF";
  assert.throws(() => mutex.lock(), closed);
  assert.throws(() => mutex.tryLock(), closed);
  assert.throws(() => mutex.unlock(), closed);
});

test("a wait longer than one park (100 ms) still times out no earlier than asked", () => {
  using shm = scratch();
  const i32 = new Int32Array(shm.buffer);
  Atomics.store(i32, 3, 7);
  for (const options of [undefined, { spin: "adaptive" as const }]) {
    const start = performance.now();
    assert.equal(wait(i32, 3, 7, 250, options), "timed-out");
    assert.ok(performance.now() - start >= 249.9, "never earlier than the timeout");
  }
});

testUnless(
  runtime !== "node" &&
    lacking(
      "an awaitable Worker.terminate(): Deno's returns at once and its process then stays up after a Worker busy in any loop (a plain for (;;) {} too)",
    ),
  "a Worker parked without a timeout in wait() or lock() can be terminated",
  async () => {
    const name = uniqueName("parked");
    try {
      using shm = SharedMemory.create({ name }, 4096);
      using _held = Mutex.init(shm.buffer, 64).lock();
      const { Worker: NodeWorker } = await import("node:worker_threads");
      for (const what of ["wait", "lock"]) {
        const url = new URL("./children/wait/park_in_worker.js", import.meta.url);
        const w = new NodeWorker(url);
        const said: unknown[] = [];
        w.on("message", (m) => said.push(m));
        w.postMessage({ name, what });
        await until(() => said.includes("parking"), `the ${what} Worker to park`);
        await sleep(50);
        // A thread parked in the kernel for good would hold terminate() for good.
        await within(w.terminate(), 10_000, `terminate() of a Worker parked in ${what}()`);
        assert.deepEqual(said, ["parking"]);
      }
    } finally {
      cleanup({ name });
    }
  },
);
