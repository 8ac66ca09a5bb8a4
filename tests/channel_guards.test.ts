// Misuse of a channel from one thread: a synchronous call that would wait for what only its own
// thread can do fails with EDEADLK instead of hanging, and a receive never writes into a ring.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import process from "node:process";
import {
  childrenTest,
  cleanup,
  collectGarbage,
  detached,
  finished,
  HANG_MS,
  lib,
  other,
  resultOf,
  runtime,
  scriptCommand,
  start,
  test,
  uniqueKey,
  uniqueName,
  within,
} from "./harness.ts";
import * as layout from "../ts/channel/layout.ts";
import { labelCount } from "../ts/channel/local.ts";

const { Channel, SharedMemory, SharedMemoryError } = lib;
type Channel = ReturnType<typeof Channel.open>;

const code = (c: string) => (e: unknown) => e instanceof SharedMemoryError && e.code === c;

/** Messages of 56 bytes: records of 64, so `capacity / 64` of them fill the ring exactly. */
const SMALL = 56;

function message(n: number, length = SMALL): Uint8Array {
  return new Uint8Array(length).fill(n & 0xff);
}

/** A channel, and (with `twice`) a second opening of its segment: two mappings of one ring. */
function channels(capacity: number, twice = false, producers: "one" | "many" = "one") {
  const name = uniqueName("guard");
  const id = twice && producers === "many" ? { key: uniqueKey() } : { name };
  const a = Channel.create(id, { capacity, producers });
  let b: Channel = a;
  try {
    // The same name without its leading '/' is the same segment.
    if (twice) b = Channel.open("name" in id ? { name: name.slice(1) } : id);
  } finally {
    cleanup(id);
  }
  return { a, b, [Symbol.dispose]: () => (a.close(), b.close()) };
}

/** Fills the ring with SMALL-byte messages numbered from 0; how many. */
function fill(tx: { trySend(m: Uint8Array): boolean }): number {
  let n = 0;
  while (tx.trySend(message(n))) n++;
  return n;
}

/** Receives everything left without waiting; each message's first byte, in order. */
function drain(rx: { tryRecv(): Uint8Array | null | undefined }): number[] {
  const got: number[] = [];
  for (let m = rx.tryRecv(); m; m = rx.tryRecv()) got.push(m.length === SMALL ? m[0] : -m.length);
  return got;
}

for (const twice of [false, true]) {
  const how = twice ? "through a second opening of the segment" : "on the same channel";

  test(`a send inside a recvMany callback ${how} takes the room the batch consumed before its message, else fails with EDEADLK`, () => {
    using ch = channels(1 << 16, twice);
    const rx = ch.a.receiver();
    const tx = ch.b.sender();
    const n = fill(tx);
    assert.equal(n, (1 << 16) / 64, "full to the last byte");
    const big = new Uint8Array(200).fill(0xee); // a record of 208 bytes: more than one message frees
    const seen: number[] = [];
    const errors: unknown[] = [];
    rx.recvMany(
      (m) => {
        seen.push(m[0]);
        if (seen.length === 2) {
          // Only the first message (handed back after its callback) is free: 64 bytes.
          for (const send of [() => tx.send(big), () => tx.send(big, 60_000)]) {
            try {
              send();
            } catch (err) {
              errors.push(err);
            }
          }
          // Each error names the call made.
          const deadlock = (call: string) => (e: unknown) =>
            code("EDEADLK")(e) && (e as Error).message.startsWith(`ChannelSender.${call} of name `);
          assert.throws(() => tx.sendMany([big]), deadlock("sendMany"), "sendMany alike");
          assert.throws(() => tx.reserve(200), deadlock("reserve"), "reserve alike");
          assert.equal(tx.trySend(big), false, "trySend never waits");
        }
        // Messages 2, 3 and 4 were consumed before this one: with the first, 256 bytes.
        if (seen.length === 5) tx.send(big);
      },
      undefined,
      8,
    );
    assert.equal(errors.length, 2);
    for (const err of errors) {
      assert.ok(code("EDEADLK")(err), String(err));
      assert.match((err as Error).message, /recvMany callback/);
    }
    assert.deepEqual(seen, [0, 1, 2, 3, 4, 5, 6, 7]);
    const rest = drain(rx);
    assert.deepEqual(rest, [...Array(n - 8).keys()].map((i) => (i + 8) & 0xff).concat([-200]));
  });

  test(`a sendAsync inside a recvMany callback ${how} waits for the batch to end, then sends`, async () => {
    using ch = channels(4096, twice);
    const rx = ch.a.receiver();
    const tx = ch.b.sender();
    const n = fill(tx);
    let pending: Promise<void> | undefined;
    const count = rx.recvMany(
      () => {
        pending ??= tx.sendAsync(message(0xab, 1000));
      },
      undefined,
      1,
    );
    assert.equal(count, 1);
    // The send waits for room, which receiving here makes.
    const rest: number[] = [];
    while (rest.at(-1) !== -1000) {
      const m = (await rx.recvAsync())!;
      rest.push(m.length === SMALL ? m[0] : -m.length);
    }
    await pending;
    assert.equal(rest.length, n);
  });

  test(`one thread holding both ends ${how}: a send or receive without a deadline that would wait for itself is EDEADLK, one with a deadline times out`, () => {
    using ch = channels(4096, twice);
    const rx = ch.a.receiver();
    const tx = ch.b.sender();
    // One sender, and it is this thread's: an empty ring stays empty while a receive waits.
    assert.throws(() => rx.recv(), code("EDEADLK"));
    assert.throws(() => rx.recvInto(new Uint8Array(8)), code("EDEADLK"));
    assert.throws(() => rx.recvMany(() => {}), code("EDEADLK"));
    assert.throws(() => rx.recv(0), code("ETIMEDOUT"));
    const slot = tx.reserve(8);
    slot.fill(3);
    assert.throws(
      () => rx.recv(),
      code("EDEADLK"),
      "the record at head is this thread's reservation",
    );
    assert.throws(() => rx.recv(1), code("ETIMEDOUT"));
    tx.commit();
    assert.deepEqual([...rx.recv()!], [3, 3, 3, 3, 3, 3, 3, 3]);
    const n = fill(tx);
    assert.throws(
      () => tx.send(message(1)),
      code("EDEADLK"),
      "only this thread's receiver makes room",
    );
    assert.throws(() => tx.send(message(1), 1), code("ETIMEDOUT"));
    const view = rx.recvView()!;
    assert.throws(() => tx.send(new Uint8Array(200)), code("EDEADLK"), "nor while it lends a view");
    rx.release();
    assert.equal(view[0], 0, "released");
    tx.send(message(0xcc), 0);
    assert.equal(drain(rx).length, n);
  });
}

test("a receive inside sendMany (an element's getter) of this channel's only sender is EDEADLK; the messages go through", () => {
  using ch = channels(4096);
  const rx = ch.a.receiver();
  const tx = ch.a.sender();
  const got: number[] = [];
  const errors: unknown[] = [];
  const messages = [message(1), message(2), message(3)];
  Object.defineProperty(messages, 1, {
    get() {
      // A receive would wait for what this sendMany sends only once this getter returns.
      for (;;) {
        try {
          got.push(rx.recv(60_000)![0]);
        } catch (err) {
          errors.push(err);
          break;
        }
      }
      return message(2);
    },
  });
  assert.equal(tx.sendMany(messages), 3);
  assert.ok(errors.length >= 1 && errors.every(code("EDEADLK")), String(errors));
  assert.deepEqual(got.concat(drain(rx)), [1, 2, 3]);
});

test("with many senders, a receive without a deadline waits for others, but not for this thread's reservation at head", () => {
  using ch = channels(4096, true, "many");
  const rx = ch.a.receiver();
  const tx = ch.b.sender();
  const slot = tx.reserve(8);
  assert.throws(() => rx.recv(), code("EDEADLK"));
  slot.fill(9);
  tx.commit();
  assert.equal(rx.recv()![0], 9);
  // Nothing reserved: another process may send, so an empty ring is waited on.
  assert.throws(() => rx.recv(1), code("ETIMEDOUT"));
});

test("a view a receive lent, kept after release, is refused as a recvInto target: the ring and its header stay sound", () => {
  using ch = channels(4096);
  const rx = ch.a.receiver();
  const tx = ch.a.sender();
  tx.send(message(1));
  const lent = rx.recvView()!;
  let kept: Uint8Array | undefined;
  tx.send(message(2));
  tx.send(message(3, 300));
  rx.recvMany((m) => kept ??= m.length === 300 ? m : undefined); // a view into the ring
  assert.ok(kept);
  tx.send(message(4));
  tx.send(message(5));
  const ring = lent.buffer as ArrayBuffer;
  const header = new Uint8Array(ring, 0, 1024);
  const end = new Uint8Array(ring, 1024 + 4096 - 8, 8);
  for (const target of [lent, kept, header, end, new Uint8Array(ring, 0, 0)]) {
    assert.throws(() => rx.recvInto(target), code("EFAULT"));
  }
  class Sub extends Uint8Array {}
  assert.throws(() => rx.recvInto(new Sub(ring, 1100, 64)), code("EFAULT"), "a subclass");
  // The receiver goes on, and a target of its own still works after a refused one.
  const own = new Uint8Array(64);
  assert.equal(rx.recvInto(own), SMALL);
  assert.equal(own[0], 4);
  assert.throws(() => rx.recvInto(lent), code("EFAULT"), "after another target too");
  assert.equal(rx.recvInto(own), SMALL);
  assert.equal(own[0], 5);
  // Another channel's ring is refused alike.
  using other = channels(4096);
  const otherTx = other.a.sender();
  const reserved = otherTx.reserve(16);
  otherTx.commit();
  tx.send(message(6));
  assert.throws(() => rx.recvInto(reserved), code("EFAULT"));
  assert.equal(rx.recvInto(own), SMALL);
  assert.equal(own[0], 6);
  tx.close();
  assert.equal(rx.recvInto(own), null);
});

test("sending a lent view copies what it holds: the view while lent is the message, and a released one cannot break the ring", () => {
  using ch = channels(256);
  const rx = ch.a.receiver();
  const tx = ch.a.sender();
  tx.send(message(7, 40));
  const lent = rx.recvView()!;
  tx.send(lent); // forwarding a message while it is lent is a copy of it
  rx.release();
  const got = rx.recv()!;
  assert.deepEqual(got, message(7, 40));
  // The released view now covers free room, which the next records reuse (the ring wraps).
  for (let round = 0; round < 20; round++) {
    tx.send(lent);
    tx.send(message(round, 40));
    const stale = rx.recv()!;
    assert.equal(stale.length, 40);
    assert.deepEqual(rx.recv(), message(round, 40), "the ring is sound after each");
  }
});

test("a send inside a senderdied listener, which runs while a receive waits (sync or async), into the full ring of that receiver is EDEADLK", async () => {
  for (const wait of ["recv", "recvAsync"] as const) {
    const name = uniqueName("guard-listener");
    using ch = Channel.create({ name }, { capacity: 1024, producers: "many" });
    using shm = SharedMemory.open({ name });
    cleanup({ name });
    // A dead sender's reservation (marked, never committed) at head: the receiver waits there
    // until its peer check frees the slot and dispatches "senderdied".
    const i32 = new Int32Array(shm.buffer);
    const dead = spawnSync("true").pid!;
    Atomics.store(i32, layout.OFF_PRODUCER_PIDS >> 2, dead);
    i32[(layout.OFF_DATA >> 2) + 1] = 1;
    Atomics.store(i32, layout.OFF_DATA >> 2, layout.markWord(0, 16));
    Atomics.store(i32, layout.OFF_TAIL >> 2, 16);
    const tx = ch.sender(); // slot 1, this thread's
    const n = fill(tx);
    const rx = ch.receiver({ peerCheckMs: 1, spin: 0 });
    const inner: unknown[] = [];
    rx.addEventListener("senderdied", () => {
      try {
        tx.send(message(0xdd), 60_000);
        inner.push("sent");
      } catch (err) {
        inner.push(err);
      }
    });
    const got = wait === "recv" ? rx.recv(60_000) : await rx.recvAsync(60_000);
    assert.equal(got![0], 0, `${wait}: the first live message, after the dead one's reservation`);
    assert.equal(inner.length, 1);
    assert.ok(code("EDEADLK")(inner[0]), `${wait}: the listener's send: ${inner[0]}`);
    assert.equal(drain(rx).length, n - 1);
  }
});

/**
 * Starts `children/channel/<script>.ts` (a web Worker in Deno and Bun, a `node:worker_threads`
 * Worker in Node.js) and sends it `message`; its replies, in order, and its `terminate()`
 * (which resolves once the Worker's teardown is done, in Node.js and Bun; at once in Deno).
 */
async function startWorker(script: string, message: unknown) {
  const replies: unknown[] = [];
  const waiting: ((reply: unknown) => void)[] = [];
  const take = (reply: unknown) => {
    const wake = waiting.shift();
    if (wake) wake(reply);
    else replies.push(reply);
  };
  const next = () =>
    replies.length > 0
      ? Promise.resolve(replies.shift())
      : new Promise<unknown>((resolve) => waiting.push(resolve));
  if (runtime === "node") {
    const { Worker: NodeWorker } = await import("node:worker_threads");
    const w = new NodeWorker(new URL(`./children/channel/${script}.js`, import.meta.url));
    w.on("message", take);
    w.on("error", (e) => take({ error: `worker error: ${e.message}` }));
    w.postMessage(message);
    return { next, terminate: async () => void await w.terminate() };
  }
  const url = new URL(`./children/channel/${script}.ts`, import.meta.url).href;
  const w = new Worker(url, { type: "module" });
  w.onmessage = (e) => take(e.data);
  w.onerror = (e) => take({ error: `worker error: ${e.message}` });
  w.postMessage(message);
  // Bun's `terminate()` returns before the Worker's teardown; its "close" event comes after it
  // (the endpoints' marks included). Deno's Worker has neither.
  const closed = runtime === "bun" &&
    new Promise((resolve) => w.addEventListener("close", resolve));
  return { next, terminate: async () => (w.terminate(), void await closed) };
}

/** Starts `children/channel/receive_in_worker.ts` on channel `name`. */
const receiverWorker = (name: string) => startWorker("receive_in_worker", { name });

/**
 * Calls `attempt` until it returns without an error that `retry` accepts (a Worker's end reaches
 * the library a moment after `terminate()` in Deno), within {@linkcode HANG_MS}; its result.
 */
async function eventually<T>(attempt: () => T, retry: (err: unknown) => boolean): Promise<T> {
  for (const end = Date.now() + HANG_MS;;) {
    try {
      return attempt();
    } catch (err) {
      if (!retry(err) || Date.now() > end) throw err;
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  }
}

/**
 * A Worker (importing the library through `entry`, if given) takes a channel's receiver and is
 * terminated holding it: a receiver of this thread then takes the place over and gets what is
 * sent.
 */
async function receiverTakenOver(entry?: "node"): Promise<void> {
  const name = uniqueName("guard-gone-rx");
  using ch = Channel.create({ name }, { capacity: 4096 });
  try {
    const tx = ch.sender();
    tx.send(message(1));
    const worker = await startWorker("hold_in_worker", { name, role: "receiver", entry });
    assert.deepEqual(await within(worker.next(), HANG_MS, "the worker"), { held: "receiver" });
    assert.throws(() => ch.receiver(), code("EBUSY"), "held while the worker lives");
    await worker.terminate();
    const rx = await eventually(() => ch.receiver(), code("EBUSY"));
    tx.send(message(2));
    assert.deepEqual(drain(rx), [2], "the worker took the first; the second comes here");
  } finally {
    cleanup({ name });
  }
}

test(
  "a Worker terminated while it holds a channel's receiver: another thread takes the receiver over and gets what is sent",
  () => receiverTakenOver(),
);

// `isMainThread` of `node:worker_threads` says true in a Deno web Worker: the Node.js entry took
// such a Worker for a main thread, whose end forgets its places without marking them, and the
// receiver of a terminated one stayed held (EBUSY) until the process exited.
if (runtime !== "node") {
  test(
    "a web Worker terminated while it holds a channel's receiver taken through the Node.js entry: another thread takes the receiver over",
    () => receiverTakenOver("node"),
  );
}

// Bun released a terminated Worker's buffers, unmapping its segment, before the library heard of
// the Worker's end: a receiver the Worker dropped (not closed) kept its place, EBUSY for good, in
// 3 to 4 rounds of 5. The mapping now marks the places claimed in it as it goes.
childrenTest(
  ["bun"],
  "bun: a Worker terminated with a channel's receiver it dropped without close() leaves the place to another thread",
  async () => {
    const name = uniqueName("guard-gone-static");
    try {
      const child = start(scriptCommand("bun", "channel/worker_receiver_gone.ts", [name, "5"]));
      const done = resultOf(await finished(child, "the child"), "the child");
      assert.deepEqual(done, { taken: 5, rounds: 5 });
    } finally {
      for (let round = 0; round < 5; round++) cleanup({ name: `${name}-${round}` });
    }
  },
);

// Not in Deno: its `terminate()` returns before the Worker stops, and stops it only between turns
// of its event loop, where this Worker holds no place; the checks would race a Worker still
// running, and no missing mark could fail them.
if (runtime !== "deno") {
  test("Workers terminated at random while they attach and detach senders leave every place free or marked gone, never held", async () => {
    const name = uniqueName("guard-gone-churn");
    using _channel = Channel.create({ name }, { capacity: 4096, producers: "many" });
    using shm = SharedMemory.open({ name });
    const words = new Int32Array(shm.buffer, layout.OFF_PRODUCER_PIDS, layout.MAX_PRODUCERS);
    try {
      for (let round = 0; round < 12; round++) {
        const worker = await startWorker("hold_in_worker", { name, role: "churn" });
        assert.deepEqual(await within(worker.next(), HANG_MS, "the worker"), { held: "churn" });
        await new Promise((resolve) => setTimeout(resolve, Math.random() * 20));
        await worker.terminate();
      }
      // Each Worker's place, if it had one when it ended, is free or marked gone.
      for (const word of words) {
        assert.ok(
          word === 0 || (word & layout.PID_GONE) !== 0,
          `${word} in [${words}] (this process: ${process.pid})`,
        );
      }
    } finally {
      cleanup({ name });
    }
  });

  // A receiver whose place another process took leaves the place alone as it closes, but not its
  // note of the claim: a note left behind marked the word gone at the Worker's end, by then the
  // place of another receiver of this process, which then failed (and a third could attach).
  test("a Worker's receiver that closes after losing its place leaves no claim behind: the receiver that takes the place next keeps it past the Worker's end", async () => {
    const name = uniqueName("guard-lost-rx");
    using ch = Channel.create({ name }, { capacity: 4096 });
    using shm = SharedMemory.open({ name });
    const place = new Int32Array(shm.buffer, layout.OFF_CONSUMER_PID, 1);
    try {
      const tx = ch.sender();
      const worker = await startWorker("hold_in_worker", { name, role: "loses-place" });
      assert.deepEqual(await within(worker.next(), HANG_MS, "the worker"), {
        held: "loses-place",
      });
      Atomics.store(place, 0, process.ppid); // a peer gives the place to a live process
      assert.deepEqual(await within(worker.next(), HANG_MS, "the worker's close"), {
        closed: "EBADMSG",
      });
      assert.equal(Atomics.load(place, 0), process.ppid, "its close left the place alone");
      Atomics.store(place, 0, 0); // that receiver gone
      const rx = ch.receiver();
      await worker.terminate();
      assert.equal(Atomics.load(place, 0), process.pid, "not marked gone");
      tx.send(message(1));
      assert.deepEqual(drain(rx), [1]);
      assert.throws(() => ch.receiver(), code("EBUSY"));
    } finally {
      cleanup({ name });
    }
  });
}

test(
  "a Worker terminated while it holds a channel's sender: the receiver gets its message, then a senderdied event for it (thread: true) and ECONNRESET, and a new sender attaches",
  async () => {
    const name = uniqueName("guard-gone-tx");
    using ch = Channel.create({ name }, { capacity: 4096 });
    try {
      const rx = ch.receiver({ peerCheckMs: 20 });
      const died: [number, number, boolean][] = [];
      rx.addEventListener("senderdied", (e) => died.push([e.pid, e.slot, e.thread]));
      const worker = await startWorker("hold_in_worker", { name, role: "sender" });
      assert.deepEqual(await within(worker.next(), HANG_MS, "the worker"), { held: "sender" });
      assert.throws(() => ch.sender(), code("EBUSY"), "one sender, the worker's, alive");
      await worker.terminate();
      assert.deepEqual([...rx.recv(1000)!], [1, 2, 3], "what the worker sent");
      // Receives time out until the receiver finds the sender gone: then the stream is reset.
      const reset = await eventually(() => {
        try {
          rx.recv(50);
        } catch (err) {
          if (code("ECONNRESET")(err)) return err;
          throw err;
        }
        throw new Error("a message or the end, where the stream was to be reset");
      }, code("ETIMEDOUT"));
      assert.ok(reset);
      assert.deepEqual(died, [[process.pid, 0, true]]);
      const tx = await eventually(() => ch.sender(), code("EAGAIN"));
      tx.send(message(3));
      assert.deepEqual(drain(rx), [3]);
    } finally {
      cleanup({ name });
    }
  },
);

/**
 * Fills the ring of `ch` (segment `name`) from this thread while a Worker takes its receiver,
 * then sends one more message without a deadline: it parks until the Worker drains the ring.
 */
async function sendToWorker(ch: Channel, name: string): Promise<void> {
  const worker = await receiverWorker(name);
  try {
    const tx = ch.sender();
    const n = fill(tx);
    assert.deepEqual(await within(worker.next(), HANG_MS, "the worker's receiver"), {
      attached: true,
    });
    tx.send(message(0xee, 1000)); // parks until the worker, which waits for that, drains
    assert.deepEqual(await within(worker.next(), HANG_MS, "the worker's messages"), {
      received: n + 1,
      last: 1000,
    });
  } finally {
    worker.terminate();
  }
}

test("a receiver in a Worker of this process is another thread: a send without a deadline into the full ring waits for it", async () => {
  const name = uniqueName("guard-worker");
  using ch = Channel.create({ name }, { capacity: 4096 });
  try {
    await sendToWorker(ch, name);
  } finally {
    cleanup({ name });
  }
});

test("a channel made again under the name of one this thread still holds both ends of is another segment: a send into it waits for its receiver in a Worker", async () => {
  const name = uniqueName("guard-again");
  // The first segment of the name, with both ends in this thread and nothing received: its
  // header words agree with those of the second one below in everything but identity.
  using old = Channel.create({ name }, { capacity: 4096 });
  const oldRx = old.receiver();
  const oldTx = old.sender();
  cleanup({ name });
  using ch = Channel.create({ name }, { capacity: 4096 });
  try {
    await sendToWorker(ch, name);
    // The first segment is untouched, its ends still usable.
    oldTx.send(message(7));
    assert.deepEqual(drain(oldRx), [7]);
  } finally {
    cleanup({ name });
  }
});

/** Moves `view`'s buffer into a byte stream, which detaches it (every runtime can). */
function enqueue(view: Uint8Array): void {
  new ReadableStream({ type: "bytes", start: (c) => c.enqueue(view) });
}

/** Moves `view`'s buffer by `transfer()` where the runtime has it (not Node 20), else enqueue. */
function transfer(view: Uint8Array): void {
  const buffer = view.buffer as ArrayBuffer & { transfer?: () => ArrayBuffer };
  if (typeof buffer.transfer === "function") buffer.transfer();
  else enqueue(view);
}

test("moving a lent view's buffer away (transfer(), a byte stream) detaches only the lent views, and the channel goes on", () => {
  using ch = channels(4096);
  const rx = ch.a.receiver();
  const tx = ch.a.sender();
  let n = 0;
  for (const move of [transfer, enqueue]) {
    for (const how of ["recvView", "recvMany", "reserve"] as const) {
      const what = `${how}, ${move.name}`;
      let moved: Uint8Array | undefined;
      if (how === "reserve") {
        moved = tx.reserve(300);
        moved.fill(n & 0xff);
        move(moved);
        tx.commit();
        assert.deepEqual(rx.recv(), new Uint8Array(300).fill(n & 0xff), what);
      } else {
        tx.send(message(n, 300));
        if (how === "recvView") {
          moved = rx.recvView()!;
          move(moved);
        } else {
          rx.recvMany((m) => {
            moved = m;
            move(m);
          });
        }
      }
      assert.ok(detached(moved!.buffer as ArrayBuffer), `${what}: the lent view's buffer moved`);
      // Everything goes on: sends, every kind of receive, new lent views.
      tx.send(message(n + 1));
      const view = rx.recvView()!;
      assert.deepEqual(view, message(n + 1), what);
      tx.sendMany([message(n + 2), message(n + 3, 300)]);
      const got: number[] = [];
      rx.recvMany((m) => got.push(m[0]));
      assert.deepEqual(got, [(n + 2) & 0xff, (n + 3) & 0xff], what);
      const into = new Uint8Array(64);
      tx.send(message(n + 4));
      assert.equal(rx.recvInto(into), SMALL, what);
      assert.equal(into[0], (n + 4) & 0xff, what);
      n += 5;
    }
  }
  rx.close();
  assert.throws(() => tx.send("x"), code("EPIPE"), "the receiver's close reached the ring");
});

test("channels dropped without close() leave nothing in this thread's registry of ends once collected", async () => {
  await collectGarbage(3);
  const before = labelCount();
  const names: string[] = [];
  try {
    (() => {
      for (let i = 0; i < 20; i++) {
        names.push(uniqueName("guard-drop"));
        const ch = Channel.create({ name: names[i] }, { capacity: 4096 });
        ch.sender();
        ch.receiver();
      }
    })();
    for (let round = 0; round < 30 && labelCount() > before; round++) await collectGarbage(2);
    assert.ok(labelCount() <= before, `${labelCount() - before} names left`);
  } finally {
    for (const name of names) cleanup({ name });
  }
});

// A main thread's endpoint held its place until its process exited: a receiver dropped without
// close() (an exception between receiver() and the `using`, say) made every later receiver of the
// process EBUSY, and a dropped sender was never reported. Its channel's mapping, once collected,
// marks the place gone, as a Worker's end does.
test("a receiver dropped without close() on this thread frees its place once the engine collects its channel", async () => {
  const name = uniqueName("guard-rx-dropped");
  try {
    using ch = Channel.create({ name }, { capacity: 4096 });
    using shm = SharedMemory.open({ name });
    const place = new Int32Array(shm.buffer, layout.OFF_CONSUMER_PID, 1);
    const tx = ch.sender();
    (() => void Channel.open({ name }).receiver())();
    assert.equal(Atomics.load(place, 0), process.pid, "held by the dropped receiver");
    assert.throws(() => ch.receiver(), code("EBUSY"), "while its channel is not collected");
    for (let round = 0; round < 30 && Atomics.load(place, 0) === process.pid; round++) {
      await collectGarbage(2);
    }
    assert.equal(Atomics.load(place, 0), process.pid | layout.PID_GONE, "marked gone");
    tx.send(message(7));
    const rx = ch.receiver();
    assert.deepEqual(drain(rx), [7]);
    assert.equal(Atomics.load(place, 0), process.pid, "taken over");
    rx.close();
    assert.equal(Atomics.load(place, 0), 0, "and let go of at its close");
  } finally {
    cleanup({ name });
  }
});

test("a receiver dropped without close() on this thread, once collected, leaves its place to a process of another runtime", async () => {
  const name = uniqueName("guard-rx-dropped-x");
  try {
    using ch = Channel.create({ name }, { capacity: 4096 });
    using shm = SharedMemory.open({ name });
    const place = new Int32Array(shm.buffer, layout.OFF_CONSUMER_PID, 1);
    using tx = ch.sender();
    (() => void Channel.open({ name }).receiver())();
    for (let round = 0; round < 30 && Atomics.load(place, 0) === process.pid; round++) {
      await collectGarbage(2);
    }
    assert.equal(Atomics.load(place, 0), process.pid | layout.PID_GONE, "marked gone");
    const which = other(runtime);
    const child = start(scriptCommand(which, "channel/try_once.ts", [name, "receiver"]));
    const done = resultOf(await finished(child, `the ${which} receiver`), "the child");
    assert.equal(done.code, "ok", `the ${which} receiver: ${done.message}`);
    assert.equal(Atomics.load(place, 0), 0, "its close let go of the place");
    assert.throws(() => tx.send(message(1)), code("EPIPE"), "and closed the channel");
  } finally {
    cleanup({ name });
  }
});

test("a sender dropped without close() on this thread is reported once the engine collects its channel: senderdied, then ECONNRESET", async () => {
  const name = uniqueName("guard-tx-dropped");
  try {
    using ch = Channel.create({ name }, { capacity: 4096, producers: "many" });
    const rx = ch.receiver({ peerCheckMs: 5 });
    const died: [number, number, boolean][] = [];
    rx.addEventListener("senderdied", (e) => died.push([e.pid, e.slot, e.thread]));
    using kept = ch.sender();
    kept.send(message(1));
    (() => void Channel.open({ name }).sender().send(message(2)))();
    kept.detach();
    assert.deepEqual(drain(rx), [1, 2], "its messages are delivered");
    let end: unknown;
    for (let round = 0; round < 30 && end === undefined; round++) {
      await collectGarbage(2);
      try {
        assert.equal(rx.recv(20), null, "nothing more");
      } catch (err) {
        if (!code("ETIMEDOUT")(err)) end = err;
      }
    }
    assert.ok(code("ECONNRESET")(end), `ECONNRESET once collected, got ${end}`);
    assert.deepEqual(died, [[process.pid, 1, true]], "one senderdied, of this process");
    using again = Channel.open({ name }).sender();
    again.send(message(3));
    assert.deepEqual(drain(rx), [3], "a new sender is received");
  } finally {
    cleanup({ name });
  }
});

test("a closed sender or receiver keeps none of the arrays it was given, which are collected while it lives", async () => {
  const name = uniqueName("guard-keep");
  const ch = Channel.create({ name }, { capacity: 4096 });
  const tx = ch.sender();
  const rx = ch.receiver();
  try {
    // Each kind of array the endpoints know again when it comes back: a plain array sent and
    // received into twice, a view of an ArrayBuffer's, and an ArrayBuffer.
    const refs = (() => {
      const plain = new Uint8Array(64).fill(1);
      const into = new Uint8Array(64);
      const view = new DataView(new ArrayBuffer(64));
      const raw = new ArrayBuffer(64);
      const intoView = new Uint8Array(new ArrayBuffer(80), 16, 64);
      for (const message of [plain, plain, view, view, raw, raw]) {
        tx.send(message);
        assert.equal(rx.recvInto(message === plain ? into : intoView, 1000), 64);
      }
      return [plain, into, view, raw, intoView].map((array) => new WeakRef(array));
    })();
    tx.close();
    rx.close();
    const alive = () => refs.filter((ref) => ref.deref() !== undefined).length;
    for (let round = 0; round < 30 && alive() > 0; round++) await collectGarbage(2);
    assert.deepEqual(refs.map((ref) => ref.deref() !== undefined), [
      false,
      false,
      false,
      false,
      false,
    ], "arrays kept by closed endpoints");
    // Still usable as closed endpoints.
    assert.throws(() => tx.send(new Uint8Array(4)), code("EBADF"));
    assert.throws(() => rx.recvInto(new Uint8Array(4), 0), code("EBADF"));
  } finally {
    ch.close();
    cleanup({ name });
  }
});

test("a sender or receiver closed by code of the caller's inside its own call keeps none of the arrays of that call", async () => {
  const name = uniqueName("guard-keep-inside");
  const ch = Channel.create({ name }, { capacity: 4096 });
  const tx = ch.sender();
  const rx = ch.receiver();
  try {
    tx.send(new Uint8Array(64), 1000); // a message waiting: recvInto would take it
    // A subclass whose `constructor` getter closes the endpoint: the library reads it while it
    // looks at the array, before the send or the receive.
    const refs = (() => {
      class Sub extends Uint8Array {}
      const message = new Sub(64);
      const target = new Sub(64);
      Object.defineProperty(message, "constructor", {
        get: () => (tx.close(), Sub),
      });
      Object.defineProperty(target, "constructor", {
        get: () => (rx.close(), Sub),
      });
      assert.throws(() => tx.send(message), code("EBADF"), "the send");
      assert.throws(() => rx.recvInto(target, 0), code("EBADF"), "the receive");
      return [new WeakRef(message), new WeakRef(target)];
    })();
    const alive = () => refs.filter((ref) => ref.deref() !== undefined).length;
    for (let round = 0; round < 30 && alive() > 0; round++) await collectGarbage(2);
    assert.deepEqual(
      refs.map((ref) => ref.deref() !== undefined),
      [false, false],
      "arrays kept by endpoints closed inside their call",
    );
  } finally {
    ch.close();
    cleanup({ name });
  }
});
