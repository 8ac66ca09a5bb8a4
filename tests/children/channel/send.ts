/**
 * Sends messages `0..count` of producer `<producer>` (see `messages.ts`) on the channel named
 * `<name>`, then ends as `<end>` says: `close` (ends the stream), `detach` (leaves it to the other
 * senders) or `none` (just exits).
 *
 * Each message goes out through one of `send` (of one array refilled each time, for messages of
 * up to 256 bytes), `sendAsync`, `reserve` + `commit` (zero-copy, written in place), `trySend` or
 * `sendMany` (with up to 15 messages after it, every other one a Node.js `Buffer`), chosen from
 * its sequence number; a message longer than one record goes through `send` or `sendAsync`
 * (fragmented). A `trySend` that finds the ring full counts as `full` and the message then goes
 * through `send`. With `<probe>` = `probe`, every message is first offered to `trySend`, so
 * `full` counts how often the ring was full.
 *
 * With `<ctl>`, waits for the control segment's start flag after attaching. Prints `ready <pid>`,
 * then `result {producer, sent, hash, methods, full, elapsedMs}`, where `hash` is the running hash
 * of what it sent and `elapsedMs` runs from the first send to the return of the last.
 *
 * Usage: `channel/send.ts <name> <profile> <seed> <producer> <count> <close|detach|none> <mix|probe>
 * [ctl]`
 *
 * @module
 */

import { Buffer } from "node:buffer";
import { args, lib } from "../lib.ts";
import { check, readyThenGo, report } from "./common.ts";
import {
  checksum,
  combine,
  fillMessage,
  HASH_START,
  makeMessage,
  messageSize,
  mix,
  type Profile,
} from "./messages.ts";

const [name, profileArg, seedArg, producerArg, countArg, end, probeArg, ctl] = args;
const profile = profileArg as Profile;
const seed = Number(seedArg);
const producer = Number(producerArg);
const count = Number(countArg);
check(end === "close" || end === "detach" || end === "none", `bad end ${end}`);
check(probeArg === "mix" || probeArg === "probe", `bad probe ${probeArg}`);
const probe = probeArg === "probe";
const TIMEOUT_MS = 20_000;

const channel = lib.Channel.open({ name });
const tx = channel.sender({ peerCheckMs: 50 });
readyThenGo(ctl);

/**
 * One array `send` is given again and again for messages of up to 256 bytes, over a buffer
 * resized to each message's length and refilled with it: a sender may copy an array it sent
 * just before word by word, from a view of its own that has to follow the array's length. The
 * array is a plain `Uint8Array` or one of a subclass (as a Node.js `Buffer` is), in turns of 64
 * messages: a sender keeps a view of its own of a subclass's array.
 */
const resizable = new (ArrayBuffer as unknown as new (
  length: number,
  options: { maxByteLength: number },
) => ArrayBuffer & { resize(length: number): void })(0, { maxByteLength: 256 });
class Bytes extends Uint8Array {}
const again = [new Uint8Array(resizable), new Bytes(resizable)];
function refilled(message: Uint8Array, seq: number): Uint8Array {
  if (message.length > 256) return message;
  resizable.resize(message.length);
  const array = again[(seq >> 6) & 1];
  array.set(message);
  return array;
}

const methods = { send: 0, sendAsync: 0, reserve: 0, trySend: 0, sendMany: 0 };
let full = 0;
let hash = HASH_START;
const start = performance.now();
for (let seq = 0; seq < count; seq++) {
  const pick = mix(seed, producer, seq ^ 0x5e4d) % 8;
  let message: Uint8Array | undefined;
  if (pick === 5 || pick === 6) {
    // Zero-copy, when it fits one record: write the message straight into the ring.
    const len = messageSize(profile, seed, producer, seq);
    if (len <= tx.maxRecordBytes) {
      if (probe) {
        message = makeMessage(profile, seed, producer, seq);
        if (tx.trySend(message)) {
          methods.trySend++;
          hash = combine(hash, message.length, checksum(message));
          continue;
        }
        full++;
      }
      const slot = tx.reserve(len, TIMEOUT_MS);
      check(slot.length === len, `reserve(${len}) gave ${slot.length} bytes`);
      fillMessage(slot, seed, producer, seq);
      const sum = checksum(slot);
      tx.commit();
      methods.reserve++;
      hash = combine(hash, len, sum);
      continue;
    }
  }
  if (pick === 4 && !probe) {
    // A batch: this message and up to 15 more, in one sendMany (a run of 4 or more small ones is
    // committed in one native call).
    const batch: Uint8Array[] = [];
    const last = Math.min(count, seq + 1 + mix(seed, producer, seq) % 16);
    for (; seq < last; seq++) {
      const m = makeMessage(profile, seed, producer, seq);
      hash = combine(hash, m.length, checksum(m));
      // Every other one as a Node.js `Buffer` (a copy in Node's shared pool of small buffers).
      batch.push(seq % 2 === 0 ? m : Buffer.from(m));
    }
    seq--;
    check(tx.sendMany(batch, TIMEOUT_MS) === batch.length, "sendMany's count");
    methods.sendMany++;
    continue;
  }
  message ??= makeMessage(profile, seed, producer, seq);
  hash = combine(hash, message.length, checksum(message));
  const fits = message.length <= tx.maxRecordBytes;
  if ((probe || pick === 7) && fits) {
    if (tx.trySend(message)) {
      methods.trySend++;
      continue;
    }
    full++;
  }
  if (pick % 2 === 0) {
    tx.send(refilled(message, seq), TIMEOUT_MS);
    methods.send++;
  } else {
    await tx.sendAsync(message, TIMEOUT_MS);
    methods.sendAsync++;
  }
}
const elapsedMs = performance.now() - start;

if (end === "close") tx.close();
else if (end === "detach") tx.detach();
report({ producer, sent: count, hash, methods, full, elapsedMs });
if (end !== "none") channel.close();
