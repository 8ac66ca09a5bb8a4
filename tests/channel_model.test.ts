/**
 * The receive calls in random order against a queue: a seeded sequence of sends of one record
 * each and of receives (`recvInto`, also into a target too small; `tryRecv`; `recvView` and
 * `release()`; `recvMany`; `recvViewAsync` and `recvAsync` of a message already there, with other
 * calls made before they settle) delivers each message once, whole and in order, and a call that
 * cannot deliver leaves the queue as it was. (Texts, fragments and the async receives' waits have
 * tests of their own in `channel.test.ts`.) Two of the defects this
 * catches were found so: `release()` dropped the message a too-small `recvInto` target left next,
 * and a receive made before a `recvViewAsync` settled took the next message and handed its view's
 * room back.
 *
 * @module
 */

import assert from "node:assert/strict";
import { cleanup, lib, test, uniqueName } from "./harness.ts";

const { Channel, SharedMemoryError } = lib;

const STEPS = 1500;
const SEEDS = [1, 2, 3, 4];

/** xorshift32: the same sequence in every runtime. */
function random(seed: number): (below: number) => number {
  let x = seed * 2654435761 >>> 0 || 1;
  return (below) => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return (x >>> 0) % below;
  };
}

/** Message `seq` of `length` bytes: its number in the first bytes, then a pattern of it. */
function message(seq: number, length: number): Uint8Array {
  const bytes = new Uint8Array(length);
  for (let i = 0; i < length; i++) bytes[i] = (seq * 31 + i * 7) & 0xff;
  if (length >= 4) new DataView(bytes.buffer).setUint32(0, seq);
  return bytes;
}

const busy = (e: unknown) => e instanceof SharedMemoryError && e.code === "EBUSY";
const timedOut = (e: unknown) => e instanceof SharedMemoryError && e.code === "ETIMEDOUT";

for (const seed of SEEDS) {
  test(`sends and receives in a random order (seed ${seed}) deliver each message once, whole and in order`, async () => {
    const name = uniqueName("model");
    using ch = Channel.create({ name }, { capacity: 2048 });
    cleanup({ name });
    const tx = ch.sender();
    const rx = ch.receiver();
    const next = random(seed);
    const queue: Uint8Array[] = []; // sent, not received yet
    let sent = 0;
    let got = 0;
    const take = (what: string, bytes: Uint8Array | null | undefined, step: number) => {
      assert.ok(bytes, `step ${step}, ${what}: a message was waiting`);
      assert.deepEqual(bytes, queue.shift(), `step ${step}, ${what}: message ${got}`);
      got++;
    };
    for (let step = 0; step < STEPS; step++) {
      const op = next(10);
      if (op <= 2) {
        // Lengths around the receive targets' sizes, and empty messages.
        const m = message(sent, next(4) === 0 ? 0 : next(200));
        if (tx.trySend(m)) queue.push(m), sent++;
      } else if (op === 3) {
        const target = new Uint8Array(next(220));
        const waiting = queue[0];
        if (waiting === undefined) {
          assert.throws(() => rx.recvInto(target, 0), timedOut, `step ${step}: recvInto`);
        } else if (waiting.byteLength > target.byteLength) {
          assert.throws(() => rx.recvInto(target, 0), RangeError, `step ${step}: too small`);
        } else {
          const len = rx.recvInto(target, 0);
          take("recvInto", target.subarray(0, len!), step);
        }
      } else if (op === 4) {
        rx.release(); // of a lent view, or of nothing: never of a message not received
      } else if (op === 5) {
        if (queue.length === 0) assert.equal(rx.tryRecv(), undefined, `step ${step}: tryRecv`);
        else take("tryRecv", rx.tryRecv(), step);
      } else if (op === 6) {
        if (queue.length === 0) {
          assert.throws(() => rx.recvView(0), timedOut, `step ${step}: recvView`);
        } else {
          // Copied before the next receive, which hands its room back.
          const view = rx.recvView(0);
          take("recvView", view && view.slice(), step);
        }
      } else if (op === 7) {
        if (queue.length === 0) {
          assert.throws(() => rx.recvMany(() => {}, 0), timedOut, `step ${step}: recvMany`);
        } else {
          const max = 1 + next(4);
          const n = rx.recvMany((view) => take("recvMany", view.slice(), step), 0, max);
          assert.ok(
            n! >= 1 && n! <= max,
            `step ${step}: recvMany delivered ${n} of at most ${max}`,
          );
        }
      } else if (op === 8 && queue.length !== 0) {
        // Until it settles, the view is not the caller's: every other receive and release()
        // wait for it.
        const pending = rx.recvViewAsync(0);
        assert.throws(() => rx.tryRecv(), busy, `step ${step}: tryRecv before it settled`);
        assert.throws(() => rx.release(), busy, `step ${step}: release before it settled`);
        const view = await pending;
        take("recvViewAsync", view && view.slice(), step);
      } else if (op === 9 && queue.length !== 0) {
        // A copy is taken at once, before the promise settles: the next receive takes the next.
        const first = queue.shift();
        got++;
        const copy = rx.recvAsync(0);
        if (queue.length === 0) {
          assert.throws(() => rx.recv(0), timedOut, `step ${step}: recv after recvAsync`);
        } else take("recv after recvAsync", rx.recv(0), step);
        assert.deepEqual(await copy, first, `step ${step}: recvAsync`);
      }
    }
    tx.close();
    for (let m = rx.recv(0); m !== null; m = rx.recv(0)) take("the drain", m, STEPS);
    assert.equal(queue.length, 0, "every message was received");
    assert.ok(got > STEPS / 10, `the sequence received ${got} messages`);
  });
}
