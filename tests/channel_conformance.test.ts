/**
 * Conformance: the Rust implementation of the channel protocol (a real process running
 * `crates/native/examples/channel_peer.rs`) against the TypeScript one (this process), in both
 * directions: one sender and many, messages of every size (fragmented ones longer than the ring
 * too) through a small ring that wraps thousands of times, zero-copy sends, abort records from a
 * broken-off message, the end of the stream, and a receiver closing while the other side sends.
 * Both sides build message `i` of producer `p`
 * the same way ({@linkcode message}) and check every byte and the order per producer.
 *
 * @module
 */

import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import type { Channel as ChannelType } from "../mod.ts";
import { OFF_CONSUMER_PID, OFF_DATA, OFF_ZEROING } from "../ts/channel/layout.ts";
import {
  type Child,
  cleanup,
  finished,
  killAfterADeath,
  killAll,
  killInsideRecvMany,
  lib,
  repoRoot,
  resultOf,
  runtime,
  runtimes,
  spawn,
  start,
  test,
  uniqueName,
  within,
} from "./harness.ts";

const { Channel, SharedMemoryError } = lib;

const PEER = `${repoRoot}target/release/examples/channel_peer`;
const COUNT = 2000;

/** The same hash as the Rust peer's. */
function hash(seed: number, producer: number, index: number): number {
  let x = (seed ^ Math.imul(producer + 1, 0x9e37_79b1) ^ Math.imul(index + 1, 0x85eb_ca77)) >>> 0;
  x = (x ^ (x << 13)) >>> 0;
  x = (x ^ (x >>> 17)) >>> 0;
  return (x ^ (x << 5)) >>> 0;
}

/** Message `index` of `producer`, as the Rust peer builds it. */
function message(
  seed: number,
  producer: number,
  index: number,
  ch: { maxRecordBytes: number; capacity: number },
): Uint8Array {
  const h = hash(seed, producer, index);
  const r = h >>> 8;
  const kind = h % 16;
  const len = kind <= 9
    ? 8 + (r % 56)
    : kind <= 13
    ? 8 + (r % (ch.maxRecordBytes - 7))
    : ch.maxRecordBytes + 1 + (r % (2 * ch.capacity));
  const out = new Uint8Array(len);
  for (let j = 0; j < len; j++) out[j] = (j + index * 7 + producer * 13 + seed) & 0xff;
  const view = new DataView(out.buffer);
  view.setUint32(0, producer, true);
  view.setUint32(4, index, true);
  return out;
}

/** The bytes the records of `messages` take in the ring. */
function spans(messages: Uint8Array[]): number {
  return messages.reduce((n, m) => n + 8 + ((m.length + 7) & ~7), 0);
}

/**
 * The first seed from `from` whose first `count` messages are single records that fit the ring
 * at once, and that `ok` accepts.
 */
function seedFor(
  from: number,
  count: number,
  dims: { maxRecordBytes: number; capacity: number },
  ok: (first: Uint8Array[]) => boolean = () => true,
): number {
  for (let seed = from;; seed++) {
    const first = Array.from({ length: count }, (_, i) => message(seed, 0, i, dims));
    if (first.some((m) => m.length > dims.maxRecordBytes)) continue;
    if (spans(first) <= dims.capacity && ok(first)) return seed;
  }
}

/** The Rust peer with `args`. */
function peer(children: Child[], args: (string | number)[]): Child {
  const child = start([PEER, ...args.map(String)]);
  children.push(child);
  return child;
}

/** A channel for `body`, removed after, with the children it started killed. */
async function withChannel(
  options: { capacity: number; producers?: "one" | "many" },
  body: (name: string, ch: ChannelType, children: Child[]) => Promise<void>,
): Promise<void> {
  const name = uniqueName("conform");
  const children: Child[] = [];
  try {
    using ch = Channel.create({ name }, options);
    await body(name, ch, children);
  } finally {
    killAll(children);
    cleanup({ name });
  }
}

/** Receives `count` messages from each of `producers` producers, checking each. */
async function receiveAll(
  ch: ChannelType,
  producers: number,
  count: number,
  seed: number,
): Promise<ReturnType<ChannelType["receiver"]>> {
  const rx = ch.receiver({ peerCheckMs: 50 });
  const next = new Array(producers).fill(0);
  for (let n = 0; n < producers * count; n++) {
    const got = n % 2 ? await rx.recvAsync(30_000) : await rx.recvViewAsync(30_000);
    assert.ok(got !== null, `the stream ended after ${n} messages`);
    const p = new DataView(got.buffer, got.byteOffset).getUint32(0, true);
    assert.ok(p < producers, `message ${n}: producer ${p}`);
    assert.deepEqual(got, message(seed, p, next[p], ch), `message ${next[p]} of producer ${p}`);
    next[p]++;
  }
  assert.deepEqual(next, new Array(producers).fill(count));
  return rx;
}

/** Sends `count` messages as `producer`, zero-copy every fifth when it fits one record. */
async function sendAll(
  ch: ChannelType,
  tx: ReturnType<ChannelType["sender"]>,
  producer: number,
  count: number,
  seed: number,
): Promise<void> {
  for (let i = 0; i < count; i++) {
    const msg = message(seed, producer, i, ch);
    if (i % 5 === 4 && msg.length <= ch.maxRecordBytes) {
      // reserve blocks the event loop while the ring is full: only when there is room.
      if (tx.trySend(msg)) continue;
    }
    await tx.sendAsync(msg, 30_000);
  }
}

type PeerResult = { ok: boolean; next?: number[]; after?: string; error?: string };

// `docs/channel.md`, *A receiver that dies*: a Rust receiver takes over from a receiver of each
// runtime killed inside a recvMany callback, in a ring small enough that a batch hands room back
// every quarter of it (1 KiB): it gets the dead receiver's batch again from the first message
// that receiver had not handed back, then every later one, then the end.
for (const killed of runtimes) {
  test(`conformance: a Rust receiver taking over from a ${killed} receiver killed inside a recvMany callback gets the batch again and every later message`, async () => {
    const capacity = 4096;
    const taken = 5;
    const total = 200;
    const dims = { capacity, maxRecordBytes: capacity / 2 - 8 };
    // A seed whose second to fourth messages stay below the quarter: one recvMany call takes
    // them all, handing back only the first.
    const seed = seedFor(100, taken, dims, (first) => spans(first.slice(1, 4)) < capacity / 4);
    await withChannel({ capacity }, async (name, ch, children) => {
      const tx = ch.sender();
      for (let i = 0; i < taken; i++) tx.send(message(seed, 0, i, ch));
      await killInsideRecvMany(children, killed, name, taken);
      const receiver = peer(children, ["recv", name, 1, total - 1, seed, "end", 1]);
      await within(receiver.line("ready"), 20_000, "Rust receiver ready");
      for (let i = taken; i < total; i++) await tx.sendAsync(message(seed, 0, i, ch), 30_000);
      tx.close();
      const r = resultOf<PeerResult>(await finished(receiver, "Rust receiver"), "Rust receiver");
      assert.equal(r.ok, true, r.error);
      assert.deepEqual(r.next, [total], "messages 1 to the last, each once, in order");
      assert.equal(r.after, "end");
    });
  });
}

// `docs/channel.md`, *Liveness* step 4: a Rust receiver taking over from a receiver of each
// runtime that had found a sender dead (nothing of it ahead, so no orphan entry is left) knows of
// the death from the header's `bereaved`, and fails once the last sender detached.
for (const killed of runtimes) {
  test(`conformance: a Rust receiver taking over from a ${killed} receiver that had found a sender dead gets ECONNRESET once the other sender detached`, async () => {
    await withChannel({ capacity: 4096, producers: "many" }, async (name, ch, children) => {
      const tx = ch.sender(); // alive until the killed receiver is gone
      await killAfterADeath(children, killed, name);
      tx.detach();
      const receiver = peer(children, ["recv", name, 1, 0, 1, "end"]);
      const r = resultOf<PeerResult>(await finished(receiver, "Rust receiver"), "Rust receiver");
      assert.equal(r.ok, true, r.error);
      assert.equal(r.after, "ECONNRESET");
    });
  });
}

// The other way round: this runtime's receiver taking over from a Rust receiver that found a
// sender dead (of this runtime, nothing of it ahead) and was killed.
test(`conformance: a ${runtime} receiver taking over from a Rust receiver that had found a sender dead gets ECONNRESET once the other sender detached`, async () => {
  await withChannel({ capacity: 4096, producers: "many" }, async (name, ch, children) => {
    const tx = ch.sender(); // alive until the killed receiver is gone
    const gone = spawn(children, runtime, "channel/attach_and_hold.ts", [
      name,
      "sender",
      "0",
      "hold",
    ]);
    await within(gone.line("ready"), 20_000, "sender ready");
    gone.kill("SIGKILL");
    await gone.done;
    const first = peer(children, ["check-hold", name]);
    await within(first.line("ready"), 20_000, "Rust receiver ready");
    first.kill("SIGKILL");
    await first.done;
    tx.detach();
    using rx = ch.receiver({ peerCheckMs: 20 });
    assert.throws(() => rx.recv(5_000), { code: "ECONNRESET" });
  });
});

// `docs/channel.md`, *A receiver that dies*: what a receiver killed while it zeroed what it
// consumed leaves (crafted here: `zeroing` ahead of `head`, the first records zeroed, the next
// one's commit word and half its payload too, the last intact): a Rust receiver taking over
// finishes the zeroing and gets every message after those, in order, then the end.
test("conformance: a Rust receiver taking over from a receiver killed while it zeroed what it consumed gets every later message", async () => {
  const capacity = 4096;
  const consumed = 4;
  const total = 200;
  const dims = { capacity, maxRecordBytes: capacity / 2 - 8 };
  const seed = seedFor(300, consumed + 1, dims);
  await withChannel({ capacity }, async (name, ch, children) => {
    const tx = ch.sender();
    const sent = Array.from({ length: consumed + 1 }, (_, i) => message(seed, 0, i, ch));
    for (const m of sent) tx.send(m);
    // The first records zeroed, then the last consumed one's header and half its payload.
    const to = spans(sent.slice(0, consumed));
    const lastSpan = spans(sent.slice(consumed - 1, consumed));
    const zeroTo = to - lastSpan + 8 + (lastSpan - 8) / 2;
    using raw = lib.SharedMemory.open({ name });
    const i32 = new Int32Array(raw.buffer);
    for (let pos = 0; pos < (zeroTo & ~3); pos += 4) Atomics.store(i32, (OFF_DATA + pos) >> 2, 0);
    Atomics.store(i32, OFF_ZEROING >> 2, to);
    Atomics.store(i32, OFF_CONSUMER_PID >> 2, spawnSync("true").pid!);
    const receiver = peer(children, ["recv", name, 1, total - consumed, seed, "end", consumed]);
    await within(receiver.line("ready"), 20_000, "Rust receiver ready");
    for (let i = consumed + 1; i < total; i++) await tx.sendAsync(message(seed, 0, i, ch), 30_000);
    tx.close();
    const r = resultOf<PeerResult>(await finished(receiver, "Rust receiver"), "Rust receiver");
    assert.equal(r.ok, true, r.error);
    assert.deepEqual(r.next, [total], "messages after the consumed ones, each once, in order");
    assert.equal(r.after, "end");
  });
});

test("conformance: a Rust sender to a TypeScript receiver, one sender, fragments and wrap-around, then the end", async () => {
  await withChannel({ capacity: 4096 }, async (name, ch, children) => {
    const seed = 11;
    const sender = peer(children, ["send", name, 0, COUNT, seed, "close"]);
    const rx = await receiveAll(ch, 1, COUNT, seed);
    assert.equal(await rx.recvAsync(30_000), null, "the end of the stream");
    const r = resultOf<PeerResult>(await finished(sender, "Rust sender"), "Rust sender");
    assert.equal(r.ok, true, r.error);
  });
});

test("conformance: a TypeScript sender to a Rust receiver, one sender, fragments and wrap-around, then the end", async () => {
  await withChannel({ capacity: 4096 }, async (name, ch, children) => {
    const seed = 12;
    const receiver = peer(children, ["recv", name, 1, COUNT, seed, "end"]);
    await within(receiver.line("ready"), 20_000, "Rust receiver ready");
    const tx = ch.sender();
    await sendAll(ch, tx, 0, COUNT, seed);
    tx.close();
    const r = resultOf<PeerResult>(await finished(receiver, "Rust receiver"), "Rust receiver");
    assert.equal(r.ok, true, r.error);
    assert.deepEqual(r.next, [COUNT]);
    assert.equal(r.after, "end");
  });
});

test("conformance: two Rust senders and a TypeScript sender into a TypeScript receiver", async () => {
  await withChannel({ capacity: 4096, producers: "many" }, async (name, ch, children) => {
    const seed = 13;
    const senders = [0, 1].map((p) => peer(children, ["send", name, p, COUNT, seed, "detach"]));
    const tx = ch.sender();
    const receiving = receiveAll(ch, 3, COUNT, seed);
    await Promise.all([sendAll(ch, tx, 2, COUNT, seed), receiving]);
    for (const [i, s] of senders.entries()) {
      const r = resultOf<PeerResult>(await finished(s, `Rust sender ${i}`), "Rust sender");
      assert.equal(r.ok, true, r.error);
    }
  });
});

test("conformance: two TypeScript senders and a Rust sender into a Rust receiver", async () => {
  await withChannel({ capacity: 4096, producers: "many" }, async (name, ch, children) => {
    const seed = 14;
    const receiver = peer(children, ["recv", name, 3, COUNT, seed]);
    await within(receiver.line("ready"), 20_000, "Rust receiver ready");
    const rustSender = peer(children, ["send", name, 2, COUNT, seed, "detach"]);
    const [a, b] = [ch.sender(), ch.sender()];
    await Promise.all([sendAll(ch, a, 0, COUNT, seed), sendAll(ch, b, 1, COUNT, seed)]);
    const r = resultOf<PeerResult>(await finished(receiver, "Rust receiver"), "Rust receiver");
    assert.equal(r.ok, true, r.error);
    assert.deepEqual(r.next, [COUNT, COUNT, COUNT]);
    await finished(rustSender, "Rust sender");
  });
});

test("conformance: a Rust sender's broken-off long message (an abort record) never reaches a TypeScript receiver", async () => {
  await withChannel({ capacity: 1024 }, async (name, ch, children) => {
    const seed = 15;
    const sender = peer(children, ["send", name, 0, 300, seed, "close", "break"]);
    await within(sender.line("broken"), 20_000, "the Rust sender's broken message");
    const rx = await receiveAll(ch, 1, 300, seed);
    assert.equal(await rx.recvAsync(30_000), null, "the end of the stream");
    await finished(sender, "Rust sender");
  });
});

test("conformance: a TypeScript sender's broken-off long message (an abort record) never reaches a Rust receiver", async () => {
  await withChannel({ capacity: 1024, producers: "many" }, async (name, ch, children) => {
    const seed = 16;
    const tx = ch.sender();
    assert.throws(
      () => tx.send(new Uint8Array(2 * 1024 + 1).fill(0xee), 0),
      (e: unknown) => e instanceof SharedMemoryError && e.code === "ETIMEDOUT",
    );
    const receiver = peer(children, ["recv", name, 1, 300, seed, "end"]);
    await within(receiver.line("ready"), 20_000, "Rust receiver ready");
    await sendAll(ch, tx, 0, 300, seed);
    tx.close();
    const r = resultOf<PeerResult>(await finished(receiver, "Rust receiver"), "Rust receiver");
    assert.equal(r.ok, true, r.error);
    assert.equal(r.after, "end");
  });
});

test("conformance: a Rust sender that starts waiting after the TypeScript receiver's last recvInto gets the room it took", async () => {
  // Many senders: this process fills the ring, then leaves the sending to the Rust peer.
  await withChannel({ capacity: 64 * 1024, producers: "many" }, async (name, ch, children) => {
    const rx = ch.receiver();
    const tx = ch.sender();
    const filler = new Uint8Array(1000);
    while (tx.trySend(filler));
    // Nobody waits for room yet: the receiver takes two messages, then receives nothing.
    for (let i = 0; i < 2; i++) assert.equal(rx.recvInto(new Uint8Array(1000), 0), 1000);
    tx.detach();
    // A seed whose first message fits in the room the receiver took (2016 bytes).
    let seed = 1;
    while (message(seed, 0, 0, ch).length > 512) seed++;
    const sender = peer(children, ["send", name, 0, 1, seed, "detach"]);
    const r = resultOf<PeerResult>(await finished(sender, "Rust sender"), "Rust sender");
    assert.equal(r.ok, true, r.error);
    rx.close();
  });
});

type UntilClosed = { ok: boolean; sent: number; errno: number; error: string; later: number[] };
const EPIPE = 32;

test("conformance: the TypeScript receiver closes while a Rust sender sends: its failing send and every later one get EPIPE", async () => {
  await withChannel({ capacity: 4096 }, async (name, ch, children) => {
    const seed = 17;
    const sender = peer(children, ["until-closed", name, 0, seed]);
    await within(sender.line("ready"), 20_000, "Rust sender ready");
    const rx = await receiveAll(ch, 1, COUNT, seed);
    rx.close();
    const r = resultOf<UntilClosed>(await finished(sender, "Rust sender"), "Rust sender");
    assert.equal(r.ok, true, r.error);
    assert.equal(r.errno, EPIPE, r.error);
    assert.match(r.error, /the receiver closed the channel/);
    assert.deepEqual(r.later, [EPIPE, EPIPE, EPIPE], "send, try_send and reserve after that");
    assert.ok(r.sent >= COUNT, `${r.sent} sent, ${COUNT} received`);
  });
});

test("conformance: a Rust receiver closes while a TypeScript sender sends: its failing send and every later one get EPIPE", async () => {
  await withChannel({ capacity: 4096 }, async (name, ch, children) => {
    const seed = 18;
    const receiver = peer(children, ["recv", name, 1, COUNT, seed]);
    await within(receiver.line("ready"), 20_000, "Rust receiver ready");
    const tx = ch.sender();
    let sent = 0;
    let failed: unknown;
    for (; failed === undefined; sent++) {
      try {
        await tx.sendAsync(message(seed, 0, sent, ch), 30_000);
      } catch (err) {
        failed = err;
      }
    }
    sent--;
    const closed = (call: string) => (e: unknown) =>
      e instanceof SharedMemoryError && e.code === "EPIPE" &&
      e.message ===
        `ChannelSender.${call} of name ${name}: the receiver closed the channel (EPIPE)`;
    assert.ok(closed("sendAsync")(failed), `the failing send: ${failed}`);
    assert.throws(
      () => tx.send(message(seed, 0, sent, ch), 1000),
      closed("send"),
      "send after that",
    );
    assert.throws(() => tx.trySend(new Uint8Array(8)), closed("trySend"), "trySend after that");
    assert.throws(() => tx.reserve(8, 1000), closed("reserve"), "reserve after that");
    const r = resultOf<PeerResult>(await finished(receiver, "Rust receiver"), "Rust receiver");
    assert.equal(r.ok, true, r.error);
    assert.deepEqual(r.next, [COUNT]);
    assert.ok(sent >= COUNT, `${sent} sent, ${COUNT} received`);
    tx.close();
  });
});
