/**
 * Blocks on the channel named `<name>` with no timeout, until something ends the wait, and
 * reports how it ended: for the tests of a peer that dies or closes.
 *
 * `<role>` `recv`: takes the receiver, receives `<first>` "fixed" messages of producer 0 (see
 * `messages.ts`; a timeout of `WAIT_MS` each) and checks them, prints `blocking`, then calls `recv()`
 * (`sync`) or `recvAsync()` (`async`) with no timeout.
 *
 * `<role>` `send`: takes a sender, sends "fixed" messages with `trySend` until the ring is full,
 * prints `blocking`, then calls `send()` or `sendAsync()` with one more, with no timeout.
 *
 * Both take `peerCheckMs` 50. A 10 ms timer ticks meanwhile. Prints `result {code, message,
 * received, sent, blockedMs, ticks}`: the error's code (`none` if the call returned, with what it
 * returned in `message`), and the time from just before `blocking` was printed to the end of the
 * call.
 *
 * Usage: `channel/block_until_peer_ends.ts <name> <recv|send> <sync|async> <first>`
 *
 * @module
 */

import { args, lib, say, WAIT_MS } from "../lib.ts";
import { check, describe, report } from "./common.ts";
import { makeMessage, mismatch } from "./messages.ts";

const [name, role, mode, firstArg] = args;
check(role === "recv" || role === "send", `bad role ${role}`);
check(mode === "sync" || mode === "async", `bad mode ${mode}`);
const first = Number(firstArg);
const channel = lib.Channel.open({ name });

let ticks = 0;
const timer = setInterval(() => ticks++, 10);
let received = 0;
let sent = 0;
let outcome: { code: string; message: string };
let start: number;

if (role === "recv") {
  const rx = channel.receiver({ peerCheckMs: 50 });
  for (; received < first; received++) {
    const got = rx.recv(WAIT_MS);
    check(got !== null, `the stream ended after ${received} messages`);
    const bad = mismatch(got, "fixed", 0, 0, received);
    check(bad === undefined, bad ?? "");
  }
  start = performance.now();
  say("blocking");
  ticks = 0;
  try {
    const got = mode === "sync" ? rx.recv() : await rx.recvAsync();
    outcome = { code: "none", message: got === null ? "null" : `${got.length} bytes` };
  } catch (err) {
    outcome = describe(err);
  }
} else {
  const tx = channel.sender({ peerCheckMs: 50 });
  while (tx.trySend(makeMessage("fixed", 0, 0, sent))) sent++;
  start = performance.now();
  say("blocking");
  ticks = 0;
  try {
    const message = makeMessage("fixed", 0, 0, sent);
    if (mode === "sync") tx.send(message);
    else await tx.sendAsync(message);
    outcome = { code: "none", message: "sent" };
  } catch (err) {
    outcome = describe(err);
  }
}
const blockedMs = performance.now() - start;
clearInterval(timer);
report({ ...outcome, received, sent, blockedMs, ticks });
