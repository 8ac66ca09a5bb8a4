/**
 * Receives `<producers> * <countEach>` messages (see `messages.ts`) from the channel named
 * `<name>` and checks every one against the message it must be: per producer in order, none lost,
 * none twice, each byte. With one producer (profiles "mixed" and "fixed") message `i` is message
 * `i` of producer 0; with "tagged" the producer is read from the message.
 *
 * `<how>` `mix`: each message through one of `recv`, `recvView`, `recvAsync`, `recvViewAsync`,
 * `recvInto` (into a `Uint8Array` or a `Buffer`), `recvMany` (every message ready) or `tryRecv`
 * (then `recv` if nothing was ready), with a `for await` run of 50 messages every 1000;
 * `forawait`: one `for await` over the whole stream (which must end after the last message).
 *
 * `<end>` `null`: the stream must then end (`recv`, `recvAsync` and `tryRecv` give `null`, and a
 * `for await` yields nothing); `count`: nothing more is ready; `none`: no check.
 *
 * With `<slowEvery>` > 0 it sleeps `<slowMs>` (blocking) after every `<slowEvery>`-th message, and
 * reports in `sleptBeforeMs` the time it had slept before receiving the message
 * `total - maxInRing - 1`, where `maxInRing` is how many "fixed" messages the ring holds at most:
 * a sender cannot have finished before then.
 *
 * Prints `ready <pid>` once attached, then `result {received, next, hashes, methods, switches,
 * sleptMs, sleptBeforeMs, maxInRing}` (`next[p]` is how many came from producer `p`, `hashes[p]`
 * their running hash, `switches` how often the producer changed between consecutive messages).
 *
 * Usage: `channel/receive.ts <name> <profile> <seed> <producers> <countEach> <mix|forawait>
 * <null|count|none> <slowEvery> <slowMs>`
 *
 * @module
 */

import { Buffer } from "node:buffer";
import { args, lib } from "../lib.ts";
import { check, readyThenGo, report, sleepSync } from "./common.ts";
import {
  checksum,
  combine,
  FIXED_SIZE,
  HASH_START,
  mismatch,
  mix,
  type Profile,
  tagOf,
} from "./messages.ts";

const [name, profileArg, seedArg, producersArg, countArg, how, end, slowEveryArg, slowMsArg] = args;
const profile = profileArg as Profile;
const seed = Number(seedArg);
const producers = Number(producersArg);
const total = producers * Number(countArg);
const slowEvery = Number(slowEveryArg);
const slowMs = Number(slowMsArg);
check(how === "mix" || how === "forawait", `bad how ${how}`);
check(end === "null" || end === "count" || end === "none", `bad end ${end}`);
const TIMEOUT_MS = 20_000;

const channel = lib.Channel.open({ name });
const rx = channel.receiver({ peerCheckMs: 50 });
readyThenGo(undefined);

const next: number[] = new Array(producers).fill(0);
const hashes: number[] = new Array(producers).fill(HASH_START);
const methods = {
  recv: 0,
  recvView: 0,
  recvAsync: 0,
  recvViewAsync: 0,
  tryRecv: 0,
  recvInto: 0,
  recvMany: 0,
  forAwait: 0,
};
/**
 * recvInto's targets: room for the largest message of any profile, as a plain `Uint8Array` and as
 * a Node.js `Buffer` (a subclass, met again as a receiver meets the plain one), in turns of 64.
 */
const intos = [new Uint8Array(256 * 1024), Buffer.alloc(256 * 1024)];
let received = 0;
let switches = 0;
let last = -1;
let sleptMs = 0;
let sleptBeforeMs = -1;
const maxInRing = Math.floor(channel.capacity / (8 + ((FIXED_SIZE + 7) & ~7)));
const markAt = total - maxInRing - 1;

/** Checks one message and counts it. */
function take(got: Uint8Array | null | undefined): void {
  check(got !== null, `the stream ended after ${received} of ${total} messages`);
  check(got !== undefined, `no message ready after ${received} messages`);
  let p = 0;
  if (profile === "tagged") {
    const tag = tagOf(got);
    check(tag !== undefined, `message ${received}: ${got.length} bytes, too short for a tag`);
    p = tag[0];
    check(p < producers, `message ${received}: from producer ${p} of ${producers}`);
  }
  const bad = mismatch(got, profile, seed, p, next[p]);
  if (bad !== undefined) throw new Error(`after ${received} messages: ${bad}`);
  hashes[p] = combine(hashes[p], got.length, checksum(got));
  next[p]++;
  if (received === markAt) sleptBeforeMs = sleptMs;
  received++;
  if (last !== -1 && p !== last) switches++;
  last = p;
  if (slowEvery > 0 && received % slowEvery === 0) {
    const t = performance.now();
    sleepSync(slowMs);
    sleptMs += performance.now() - t;
  }
}

if (how === "forawait") {
  for await (const message of rx) {
    take(message);
    methods.forAwait++;
  }
  check(received === total, `for await ended after ${received} of ${total} messages`);
} else {
  let forAwaitAt = 500;
  while (received < total) {
    if (received >= forAwaitAt && total - received >= 50) {
      forAwaitAt += 1000;
      let n = 0;
      for await (const message of rx) {
        take(message);
        if (++n === 50) break;
      }
      methods.forAwait += n;
      continue;
    }
    switch (mix(seed, received, 0x7ec0) % 7) {
      case 0:
        take(rx.recv(TIMEOUT_MS));
        methods.recv++;
        break;
      case 1:
        take(rx.recvView(TIMEOUT_MS));
        methods.recvView++;
        break;
      case 2:
        take(await rx.recvAsync(TIMEOUT_MS));
        methods.recvAsync++;
        break;
      case 3:
        take(await rx.recvViewAsync(TIMEOUT_MS));
        methods.recvViewAsync++;
        break;
      case 4: {
        const into = intos[(received >> 6) & 1];
        const len = rx.recvInto(into, TIMEOUT_MS);
        take(len === null ? null : into.subarray(0, len));
        methods.recvInto++;
        break;
      }
      case 5:
        // Everything ready, in one call (never past this stream's last message).
        methods.recvMany += rx.recvMany(take, TIMEOUT_MS, total - received) ?? 0;
        break;
      default: {
        const got = rx.tryRecv();
        take(got === undefined ? rx.recv(TIMEOUT_MS) : got);
        methods.tryRecv++;
      }
    }
  }
}

const ends: string[] = [];
if (end === "null") {
  // Every way of receiving says the stream has ended, and keeps saying it.
  ends.push(String(rx.recv(TIMEOUT_MS)));
  ends.push(String(await rx.recvAsync(TIMEOUT_MS)));
  ends.push(String(rx.tryRecv()));
  ends.push(String(rx.recvView(TIMEOUT_MS)));
  let more = 0;
  for await (const _ of rx) more++;
  ends.push(`forAwait:${more}`);
} else if (end === "count") {
  ends.push(String(rx.tryRecv()));
}
report({
  received,
  next,
  hashes,
  methods,
  switches,
  sleptMs,
  sleptBeforeMs,
  maxInRing,
  ends,
});
rx.close();
channel.close();
