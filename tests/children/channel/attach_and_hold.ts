/**
 * Attaches to the channel named `<name>` as `<role>` and then holds it, for the tests of a peer
 * that dies, closes, or is in the way. Prints `ready <pid>` when it holds what `<then>` says, and
 * `result {role, then, sent}` if it gets to exit on its own.
 *
 * `<role>` `sender` sends `<count>` "fixed" messages of producer 0 (see `messages.ts`) first, then:
 * - `hold`: stays alive until killed;
 * - `reserve`: reserves a record and stays alive without committing it;
 * - `fragment`: prints `ready`, then sends a message four times the ring's capacity with no
 *   timeout, which blocks partway when nobody receives (it stays alive if that ever returns);
 * - `close`: closes the sender (ends the stream) and exits;
 * - `detach`: detaches (leaves the stream open) and exits;
 * - `exit`: exits without closing;
 * - `break-detach`: sends a message four times the ring's capacity with a 200 ms timeout, which
 *   breaks off partway when nobody receives (reported as `code`), then detaches and exits.
 *
 * `<role>` `receiver` takes the receiver, then:
 * - `hold`: stays alive until killed, receiving nothing;
 * - `close`: closes the receiver and exits;
 * - `recv1-hold`: receives one message with `recv()` (a copy), prints its length as `got <n>`,
 *   and stays alive without receiving again;
 * - `check-hold`: lets its liveness check fall due (60 ms), then calls `recv(30)`, which checks on
 *   the senders and must time out, and stays alive without receiving again;
 * - `recvinto1-hold`: the same with `recvInto()` (the copying receive for hot loops);
 * - `tryrecv1-hold`: calls `tryRecv()` once (which collects the fragments that are there),
 *   stores 1 into the ready word of the control segment `<ctl>` and wakes it, prints `got <n>`
 *   or `got none`, and stays alive without receiving again;
 * - `recvmany-hold`: receives with one `recvMany()` call and, inside the callback of its
 *   `<count>`-th message, stores `<count>` into the ready word of the control segment `<ctl>` and
 *   blocks there until killed (so its batch is never handed back);
 * - `go-close`: waits for the start flag of the control segment `<ctl>`, then closes the receiver
 *   and exits.
 *
 * Usage: `channel/attach_and_hold.ts <name> <sender|receiver> <count> <then> [ctl]`
 *
 * @module
 */

import { args, lib, say, sleepSync, WAIT_MS } from "../lib.ts";
import { check, describe, pid, readyThenGo, report, stayAlive } from "./common.ts";
import { CTL_READY, makeMessage } from "./messages.ts";

const [name, role, countArg, then, ctl] = args;
const count = Number(countArg);
const channel = lib.Channel.open({ name });

if (role === "sender") {
  const tx = channel.sender({ peerCheckMs: 50 });
  for (let seq = 0; seq < count; seq++) tx.send(makeMessage("fixed", 0, 0, seq), WAIT_MS);
  if (then === "hold") {
    say(`ready ${pid}`);
    stayAlive(channel, tx);
  } else if (then === "reserve") {
    tx.reserve(100);
    say(`ready ${pid}`);
    stayAlive(channel, tx);
  } else if (then === "fragment") {
    say(`ready ${pid}`);
    tx.send(new Uint8Array(4 * channel.capacity).fill(0xab));
    say("sent the long message");
    stayAlive(channel, tx);
  } else if (then === "close") {
    tx.close();
    say(`ready ${pid}`);
    report({ role, then, sent: count });
  } else if (then === "detach") {
    tx.detach();
    say(`ready ${pid}`);
    report({ role, then, sent: count });
  } else if (then === "break-detach") {
    say(`ready ${pid}`);
    let outcome = { code: "none", message: "sent" };
    try {
      tx.send(new Uint8Array(4 * channel.capacity).fill(0xab), 200);
    } catch (err) {
      outcome = describe(err);
    }
    tx.detach();
    report({ role, then, sent: count, ...outcome });
  } else {
    check(then === "exit", `bad then ${then}`);
    say(`ready ${pid}`);
    report({ role, then, sent: count });
  }
} else {
  check(role === "receiver", `bad role ${role}`);
  const rx = channel.receiver({ peerCheckMs: 50 });
  if (then === "hold") {
    say(`ready ${pid}`);
    stayAlive(channel, rx);
  } else if (then === "recv1-hold") {
    const got = rx.recv(WAIT_MS);
    check(got !== null, "the stream ended");
    say(`got ${got.length}`);
    say(`ready ${pid}`);
    stayAlive(channel, rx);
  } else if (then === "check-hold") {
    sleepSync(60);
    let outcome = "a message";
    try {
      rx.recv(30);
    } catch (err) {
      outcome = describe(err).code;
    }
    check(outcome === "ETIMEDOUT", `recv(30) gave ${outcome}, not ETIMEDOUT`);
    say(`ready ${pid}`);
    stayAlive(channel, rx);
  } else if (then === "recvinto1-hold") {
    const got = rx.recvInto(new Uint8Array(64 * 1024), WAIT_MS);
    check(got !== null, "the stream ended");
    say(`got ${got}`);
    say(`ready ${pid}`);
    stayAlive(channel, rx);
  } else if (then === "tryrecv1-hold") {
    const got = rx.tryRecv();
    const ready = new Int32Array(lib.SharedMemory.open({ name: ctl }).buffer, 0, 2);
    Atomics.store(ready, CTL_READY, 1);
    lib.notify(ready, CTL_READY);
    check(got !== null, "the stream ended");
    say(`got ${got?.length ?? "none"}`);
    say(`ready ${pid}`);
    stayAlive(channel, rx);
  } else if (then === "recvmany-hold") {
    // Through shared memory, not stdout: this thread never returns to flush anything.
    const shm = lib.SharedMemory.open({ name: ctl });
    const ready = new Int32Array(shm.buffer, 0, 2);
    let taken = 0;
    rx.recvMany(() => {
      if (++taken < count) return;
      Atomics.store(ready, CTL_READY, taken);
      for (;;) sleepSync(60_000);
    }, WAIT_MS);
    check(false, `recvMany returned after ${taken} messages`);
  } else if (then === "close") {
    rx.close();
    say(`ready ${pid}`);
    report({ role, then, sent: 0 });
  } else {
    check(then === "go-close", `bad then ${then}`);
    readyThenGo(ctl);
    rx.close();
    report({ role, then, sent: 0 });
  }
}
