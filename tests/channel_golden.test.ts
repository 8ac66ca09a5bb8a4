/**
 * The golden byte traces of `tests/golden/` (written by the Rust implementation, see
 * `crates/shared-buffer/tests/golden.rs`): the TypeScript implementation runs the same steps on
 * a ring in an ordinary ArrayBuffer and must leave the same bytes after each one.
 *
 * @module
 */

import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { repoRoot, test } from "./harness.ts";
import * as L from "../ts/channel/layout.ts";
import { initRegion, type Parking, Ring } from "../ts/channel/ring.ts";
import { ChannelReceiver, ChannelSender, receiverOptions } from "../ts/channel/channel.ts";
import { SharedMemoryError } from "../ts/errors.ts";

/** Parking that never parks: every step of the trace goes without waiting. */
const parking: Parking = {
  notify() {},
  wait() {
    throw new Error("the trace never waits");
  },
  waitAsync() {
    throw new Error("the trace never waits");
  },
  alive: () => true,
  // Any pid namespace: the trace shows it as 1, as the Rust one does.
  pidNamespace: 4026531836,
};

const options = { peerCheckMs: 3_600_000, spin: 0 };

function ring(capacity: number, mode: number): [Ring, ArrayBuffer] {
  const buffer = new ArrayBuffer(L.HEADER_SIZE + capacity);
  initRegion(new Int32Array(buffer), capacity, mode);
  return [new Ring(buffer, capacity, mode, parking, "name /golden"), buffer];
}

/** As the Rust test: the non-zero words after each step, pid words and the pid namespace as 1. */
class Trace {
  text = "";
  #step = 0;
  constructor(readonly buffer: ArrayBuffer) {}

  step(what: string): void {
    this.text += `# ${++this.#step} ${what}\n`;
    const words = new Uint32Array(this.buffer);
    for (let i = 0; i < words.length; i++) {
      const offset = 4 * i;
      let value = words[i];
      const pidWord = offset === L.OFF_CONSUMER_PID || offset === L.OFF_PID_NAMESPACE ||
        (offset >= L.OFF_PRODUCER_PIDS && offset < L.OFF_PRODUCER_PIDS + 4 * L.MAX_PRODUCERS);
      if (pidWord && value !== 0) value = 1;
      if (value !== 0) {
        this.text += `${offset.toString(16).padStart(4, "0")} ${
          value.toString(16).padStart(8, "0")
        }\n`;
      }
    }
  }

  check(file: string): void {
    const golden = readFileSync(`${repoRoot}tests/golden/${file}`, "utf8");
    const want = golden.split("\n");
    const got = this.text.split("\n");
    const first = want.findIndex((line, i) => line !== got[i]);
    assert.equal(
      first,
      -1,
      `${file} line ${first + 1}: golden ${JSON.stringify(want[first])}, TypeScript ${
        JSON.stringify(got[first])
      } (step ${want.slice(0, first + 1).filter((l) => l.startsWith("#")).pop()})`,
    );
    assert.equal(got.length, want.length);
  }
}

function pattern(length: number, seed: number): Uint8Array {
  return Uint8Array.from({ length }, (_, j) => (j * 7 + seed) & 0xff);
}

const text = (bytes: Uint8Array | null | undefined) => new TextDecoder().decode(bytes!);

test("golden trace, many senders: the TypeScript ring leaves the bytes the Rust one does", () => {
  const [r, buffer] = ring(256, L.MODE_MPSC);
  const t = new Trace(buffer);
  const registry = new Set<unknown>();
  t.step("create: many senders, capacity 256");
  const rx = new ChannelReceiver(r, receiverOptions(options), registry);
  t.step("the receiver attaches");
  const a = new ChannelSender(r, options, registry);
  t.step("sender A attaches (slot 0, an abort record)");
  const b = new ChannelSender(r, options, registry);
  t.step("sender B attaches (slot 1, an abort record)");
  assert.equal(a.trySend("hello"), true);
  t.step("A try_send 'hello'");
  b.send(pattern(200, 1), 0);
  t.step("B sends 200 bytes: two fragments");
  assert.equal(text(rx.tryRecv()), "hello");
  t.step("receive 'hello' (after both abort records)");
  assert.deepEqual(rx.tryRecv(), pattern(200, 1));
  t.step("receive the 200 bytes");
  a.reserve(16, 0).set(pattern(16, 2));
  a.commit();
  t.step("A reserves 16 bytes (a skip record, then wraps), fills and commits them");
  b.reserve(24, 0);
  b.abandon();
  t.step("B reserves 24 bytes and abandons them");
  assert.throws(
    () => b.send(pattern(300, 3), 0),
    (e: unknown) => e instanceof SharedMemoryError && e.code === "ETIMEDOUT",
  );
  t.step("B sends 300 bytes: one fragment, then the ring is full: an abort record");
  assert.deepEqual(rx.tryRecv(), pattern(16, 2));
  t.step("receive A's 16 bytes");
  assert.equal(rx.tryRecv(), undefined);
  t.step("receive nothing: the abandoned record and B's aborted fragment");
  a.close();
  t.step("A closes the stream");
  assert.equal(rx.tryRecv(), null);
  t.step("receive the end of the stream");
  rx.close();
  t.step("the receiver closes");
  t.check("channel_mpsc.txt");
});

test("golden trace, one sender: the TypeScript ring leaves the bytes the Rust one does", () => {
  const [r, buffer] = ring(64, L.MODE_SPSC);
  const t = new Trace(buffer);
  const registry = new Set<unknown>();
  t.step("create: one sender, capacity 64");
  const rx = new ChannelReceiver(r, receiverOptions(options), registry);
  t.step("the receiver attaches");
  const tx = new ChannelSender(r, options, registry);
  t.step("the sender attaches");
  assert.equal(tx.trySend(pattern(10, 4)), true);
  t.step("try_send 10 bytes");
  assert.deepEqual(rx.tryRecv(), pattern(10, 4));
  t.step("receive them");
  tx.send(pattern(30, 5), 0);
  t.step("send 30 bytes: a fragment, a skip record, the last fragment at 0");
  assert.deepEqual(rx.tryRecv(), pattern(30, 5));
  t.step("receive the 30 bytes");
  tx.reserve(4).set(pattern(4, 6));
  tx.commit();
  t.step("reserve 4 bytes, fill and commit them");
  tx.close();
  t.step("the sender closes");
  assert.deepEqual(rx.tryRecv(), pattern(4, 6));
  t.step("receive the 4 bytes");
  assert.equal(rx.tryRecv(), null);
  t.step("receive the end of the stream");
  t.check("channel_spsc.txt");
});

test("golden trace, dead senders and the orphan table: the TypeScript receiver leaves the bytes the Rust one does", () => {
  // A pid that the probe finds dead, as the Rust trace's is (the trace shows pids as 1).
  const dead = 0x7fff_fff0;
  const probing: Parking = { ...parking, alive: (pid) => pid !== dead };
  const buffer = new ArrayBuffer(L.HEADER_SIZE + 512);
  const i32 = new Int32Array(buffer);
  initRegion(i32, 512, L.MODE_MPSC);
  const r = new Ring(buffer, 512, L.MODE_MPSC, probing, "name /golden");
  const t = new Trace(buffer);
  const registry = new Set<unknown>();
  const checks = { peerCheckMs: 1, spin: 0 };
  /** Blocks this thread past a liveness interval. */
  const pause = () => Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 5);
  t.step("create: many senders, capacity 512");
  const rx = new ChannelReceiver(r, receiverOptions(checks), registry);
  t.step("the receiver attaches");
  for (let slot = 0; slot < 17; slot++) {
    const at = (L.OFF_DATA >> 2) + 4 * slot;
    i32[at] = L.markWord(slot, 16);
    i32[at + 1] = slot + 1;
    i32[(L.OFF_PRODUCER_PIDS >> 2) + slot] = dead;
  }
  i32.set([L.REC_COMMITTED | 5, 40], (L.OFF_DATA + 272) >> 2);
  new Uint8Array(buffer).set(pattern(5, 7), L.OFF_DATA + 280);
  i32[L.OFF_TAIL >> 2] = 288;
  for (const [entry, tag, end] of [[3, 70, 8], [7, 9, 0x40]]) {
    i32.set([tag, end], (L.OFF_ORPHANS >> 2) + 2 * entry);
  }
  t.step(
    "17 dead senders' marks of 8 bytes, a message of slot 39; a peer wrote entries 3 and 7",
  );
  pause();
  assert.equal(rx.tryRecv(), undefined);
  t.step(
    "a receive after the liveness interval: 16 dead senders recorded and freed (the peer's entries make way), the 17th held",
  );
  i32[L.OFF_CONSUMER_PID >> 2] = dead; // killed: never used again
  i32.set([2, 16], (L.OFF_ORPHANS >> 2) + 2 * 15);
  t.step("the receiver is killed; a peer writes a second entry for slot 1 over entry 15");
  const next = new ChannelReceiver(r, receiverOptions(checks), registry);
  t.step("a receiver takes over: of slot 1's two entries the further is kept");
  pause();
  assert.equal(next.tryRecv(), undefined);
  t.step("a receive after the liveness interval: the held sender recorded and freed");
  // Killed in a drop: its CAS took slot 0's mark (a `DROPPING` word with the record's span)
  // after it raised `sweeps`, before it announced the zeroing.
  i32[L.OFF_CONSUMER_PID >> 2] = dead;
  i32[L.OFF_DATA >> 2] = L.droppingWord(16);
  i32[L.OFF_SWEEPS >> 2] = 1;
  t.step(
    "the receiver is killed right after taking slot 0's mark: a DROPPING word, sweeps odd",
  );
  const last = new ChannelReceiver(r, receiverOptions(checks), registry);
  t.step(
    "a receiver takes over: it finishes the drop (zeroes the record, moves head past it)",
  );
  t.check("channel_dead_senders.txt");
  last.close();
});
