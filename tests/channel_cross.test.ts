/**
 * `Channel` across real processes of all three runtimes: long streams from each runtime to the next of
 * messages of every size (fragmented ones too) through every send and receive method, four
 * senders of every runtime into one receiver, the end of a stream, a peer killed with SIGKILL
 * while the other side is blocked, backpressure from a slow receiver, and the errors another
 * process sees (`EBADMSG`, `EBUSY`, `EPIPE`, `ECONNRESET`).
 *
 * The messages are defined in `children/channel/messages.ts`: every receiver rebuilds each message from
 * the seed and checks it byte for byte, per producer in order; both sides report a running hash,
 * which this process also computes on its own.
 *
 * Each test owns its segments and removes them in `finally`, kills its children in `finally`, and
 * bounds every wait, so a bug fails the test instead of hanging it. Times are only checked from
 * below.
 *
 * @module
 */

import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import type { Channel as ChannelType, ChannelReceiver } from "../mod.ts";
import {
  type Child,
  childrenTest,
  childrenTestUnless,
  cleanup,
  type Done,
  finished,
  HANG_MS,
  killAfterADeath,
  killAll,
  killInsideRecvMany,
  lib,
  mix,
  noPidNamespace,
  other,
  resultOf,
  type Runtime,
  runtime,
  runtimes,
  scriptCommand,
  sleep,
  spawn,
  start,
  test,
  uniqueName,
  UNSHARE_PID,
  until,
  within,
} from "./harness.ts";
import {
  FLAG_RX_CLOSED,
  HEADER_SIZE,
  markWord,
  OFF_CONSUMER_PID,
  OFF_DATA,
  OFF_FLAGS,
  OFF_ORPHANS,
  OFF_PID_NAMESPACE,
  OFF_PRODUCER_PIDS,
  OFF_RX_WAITING,
  OFF_TAIL,
  OFF_TX_WAITING,
  ORPHAN_ENTRIES,
  REC_COMMITTED,
  REC_SKIP,
} from "../ts/channel/layout.ts";
import {
  checksum,
  combine,
  CTL_BAD,
  CTL_BYTES,
  CTL_FIRST,
  CTL_GO,
  CTL_LAST,
  CTL_OF,
  CTL_READY,
  CTL_STOP,
  EDGES,
  expectedHash,
  FIXED_SIZE,
  HASH_START,
  makeMessage,
  messageSize,
  mismatch,
  MIXED_CAPACITY,
  MIXED_MAX_RECORD,
  type Profile,
  tagOf,
} from "./children/channel/messages.ts";
import { WAIT_MS } from "./children/lib.ts";

const { Channel, SharedMemory, SharedMemoryError, notify, wait } = lib;

/** A child's `ready` line, within `ms` (a child's own waits before it take up to `WAIT_MS`). */
function ready(child: Child, what: string, ms = HANG_MS): Promise<string> {
  return within(child.line("ready"), ms, `${what} ready`);
}

/**
 * A fresh channel for `body`, created by this process (its name and this process's handle, with
 * no endpoint taken), removed after.
 */
async function withChannel(
  tag: string,
  options: { capacity: number; producers?: "one" | "many" },
  body: (name: string, channel: ChannelType) => Promise<void>,
): Promise<void> {
  const name = uniqueName(tag);
  try {
    using channel = Channel.create({ name }, options);
    await body(name, channel);
  } finally {
    cleanup({ name });
  }
}

/** A control segment (start flag and ready count; see `channel/messages.ts`) for `body`, removed after. */
async function withControl(body: (name: string, i32: Int32Array) => Promise<void>): Promise<void> {
  const name = uniqueName("cx-ctl");
  try {
    using shm = SharedMemory.create({ name }, CTL_BYTES);
    await body(name, new Int32Array(shm.buffer, 0, 2));
  } finally {
    cleanup({ name });
  }
}

/** The arguments of `channel/receive.ts` (see that file). */
interface ReceiveArgs {
  profile: Profile;
  seed: number;
  /** Producers the messages come from (default 1). */
  producers?: number;
  /** Messages of each producer. */
  count: number;
  how: "mix" | "forawait";
  end: "null" | "count" | "none";
  /** A pause of `sleepMs` every `sleepEvery` messages (default none). */
  sleepEvery?: number;
  sleepMs?: number;
}

/** Starts `channel/receive.ts` in `which` on channel `name`. */
function startReceiver(children: Child[], which: Runtime, name: string, a: ReceiveArgs): Child {
  return spawn(children, which, "channel/receive.ts", [
    name,
    a.profile,
    String(a.seed),
    String(a.producers ?? 1),
    String(a.count),
    a.how,
    a.end,
    String(a.sleepEvery ?? 0),
    String(a.sleepMs ?? 0),
  ]);
}

/** The arguments of `channel/send.ts` (see that file). */
interface SendArgs {
  profile: Profile;
  seed: number;
  /** Its producer id (default 0). */
  producer?: number;
  count: number;
  end: "close" | "detach" | "none";
  how: "mix" | "probe";
  /** A control segment's name: attach, count in, and wait for the start flag. */
  ctl?: string;
}

/** Starts `channel/send.ts` in `which` on channel `name`. */
function startSender(children: Child[], which: Runtime, name: string, a: SendArgs): Child {
  const args = [name, a.profile, String(a.seed), String(a.producer ?? 0), String(a.count)];
  return spawn(children, which, "channel/send.ts", [
    ...args,
    a.end,
    a.how,
    ...(a.ctl === undefined ? [] : [a.ctl]),
  ]);
}

/** What `channel/send.ts` reports. */
interface Sent {
  producer: number;
  sent: number;
  hash: number;
  methods: { send: number; sendAsync: number; reserve: number; trySend: number; sendMany: number };
  full: number;
  elapsedMs: number;
}

/** What `channel/receive.ts` reports. */
interface Received {
  received: number;
  next: number[];
  hashes: number[];
  methods: Record<string, number>;
  switches: number;
  sleptMs: number;
  sleptBeforeMs: number;
  maxInRing: number;
  ends: string[];
}

/** The `{code, ...}` report of `channel/block_until_peer_ends.ts`, `channel/attach_and_hold.ts` and `channel/try_once.ts`. */
interface Outcome {
  code: string;
  message: string;
  [key: string]: unknown;
}

const isCode = (c: string) => (e: unknown) => e instanceof SharedMemoryError && e.code === c;

// ---- 1. A long stream from each runtime to the next --------------------------------------------

/**
 * Messages in each long stream. 20,000 of the "mixed" profile are about 47 MB through the 64 KiB
 * ring: over 700 times round it, with every edge size (0, 1, 7, 8, 9 bytes, one record and one
 * byte either side, half the ring, the ring less 8, the ring, the ring plus 1) at least 4 times,
 * about 400 fragmented messages and 80 longer than the ring (see the test after this one). A
 * five times longer stream went round more often, with nothing new in kind.
 */
const STREAM = 20_000;

/** The seed of the stream `from` sends. */
const streamSeed = (from: Runtime) => 0x5eed + (from === "deno" ? 1 : 2);

for (const from of runtimes) {
  const to = other(from);
  childrenTest(
    [from, to],
    `${from} sends ${STREAM} messages of 0 B..192 KiB to ${to} through a 64 KiB ring: every byte, in order`,
    async () => {
      const seed = streamSeed(from);
      await withChannel("cx-stream", { capacity: MIXED_CAPACITY }, async (name) => {
        const children: Child[] = [];
        try {
          const receiver = startReceiver(children, to, name, {
            profile: "mixed",
            seed: seed,
            count: STREAM,
            how: "mix",
            end: "null",
          });
          await ready(receiver, `${to} receiver`);
          const sender = startSender(children, from, name, {
            profile: "mixed",
            seed: seed,
            count: STREAM,
            end: "close",
            how: "mix",
          });
          const [rs, rr] = await Promise.all([
            finished(sender, `${from} sender`, HANG_MS),
            finished(receiver, `${to} receiver`, HANG_MS),
          ]);
          const sent = resultOf<Sent>(rs, "sender");
          const got = resultOf<Received>(rr, "receiver");
          const want = expectedHash("mixed", seed, 0, STREAM);
          assert.equal(sent.sent, STREAM, "messages sent");
          assert.equal(sent.hash, want, "the sender's running hash");
          assert.equal(got.received, STREAM, "messages received");
          assert.equal(got.hashes[0], want, "the receiver's running hash");
          for (const [method, n] of Object.entries(sent.methods)) {
            assert.ok(n > 0, `the sender used ${method}`);
          }
          for (const [method, n] of Object.entries(got.methods)) {
            assert.ok(n > 0, `the receiver used ${method}`);
          }
          assert.deepEqual(got.ends, ["null", "null", "null", "null", "forAwait:0"], "end");
        } finally {
          await killAll(children);
        }
      });
    },
  );
}

test("each long stream's messages include every kind of size", () => {
  for (const seed of new Set(runtimes.map(streamSeed))) {
    const sizes = Array.from({ length: STREAM }, (_, seq) => messageSize("mixed", seed, 0, seq));
    const count = (f: (n: number) => boolean) => sizes.filter(f).length;
    for (const edge of EDGES) {
      assert.ok(count((n) => n === edge) >= 4, `seed ${seed}: messages of exactly ${edge} bytes`);
    }
    assert.ok(count((n) => n > MIXED_MAX_RECORD) > 300, `seed ${seed}: fragmented messages`);
    assert.ok(count((n) => n > MIXED_CAPACITY) > 60, `seed ${seed}: messages longer than the ring`);
    assert.ok(count((n) => n <= 128) > STREAM / 2, `seed ${seed}: mostly small ones`);
    const bytes = sizes.reduce((sum, n) => sum + n, 0);
    assert.ok(bytes > 500 * MIXED_CAPACITY, `seed ${seed}: ${bytes} bytes, under 500 rings`);
  }
});

// ---- 2. Four senders of every runtime into one receiver -----------------------------------------

/**
 * Messages of each of the four senders: 40,000 in all, with about 50 fragmented ones per sender
 * among the others' messages. A receiver that reassembled every sender's fragments as one
 * message (not per sender) failed this test within its first half second.
 */
const EACH = 10_000;
const SENDERS = ["deno", "bun", "node", "deno"] as const;
/** "2 deno + 1 bun + 1 node", for test names. */
const SENDER_MIX = mix(SENDERS);

/**
 * Starts the four senders of "tagged" messages on `name` (producer ids 0..3, detaching at the
 * end), lets them go together once all are attached, and returns their reports. `receiving` runs
 * meanwhile.
 */
async function fourSenders(
  children: Child[],
  name: string,
  seed: number,
  receiving: Promise<void>,
): Promise<Sent[]> {
  let reports: Sent[] = [];
  await withControl(async (ctl, i32) => {
    const senders = SENDERS.map((which, producer) =>
      startSender(children, which, name, {
        profile: "tagged",
        seed: seed,
        producer: producer,
        count: EACH,
        end: "detach",
        how: "mix",
        ctl,
      })
    );
    await within(Promise.all(senders.map((c) => c.line("ready"))), HANG_MS, "senders ready");
    assert.equal(Atomics.load(i32, CTL_READY), SENDERS.length, "senders attached");
    Atomics.store(i32, CTL_GO, 1);
    notify(i32, CTL_GO);
    const done = await Promise.all([
      ...senders.map((c, i) => finished(c, `${SENDERS[i]} sender ${i}`, HANG_MS)),
      receiving,
    ]);
    reports = done.slice(0, SENDERS.length).map((r, i) => resultOf<Sent>(r as Done, `sender ${i}`));
  });
  return reports;
}

/** Checks the senders' reports and the receiver's per-producer counts and hashes. */
function checkFour(seed: number, sent: Sent[], next: number[], hashes: number[]): void {
  for (const [producer, report] of sent.entries()) {
    const want = expectedHash("tagged", seed, producer, EACH);
    assert.equal(report.producer, producer);
    assert.equal(report.sent, EACH, `sender ${producer}: messages sent`);
    assert.equal(report.hash, want, `sender ${producer}: running hash`);
    assert.equal(next[producer], EACH, `messages received from sender ${producer}`);
    assert.equal(hashes[producer], want, `running hash of sender ${producer}'s messages`);
  }
}

test(`${SENDER_MIX} senders send ${EACH} messages each to this process (${runtime}): each in order, none lost or twice`, async () => {
  const seed = 0xf0a1;
  await withChannel(
    "cx-many",
    { capacity: MIXED_CAPACITY, producers: "many" },
    async (name, ch) => {
      const children: Child[] = [];
      const rx = ch.receiver({ peerCheckMs: 50 });
      const total = SENDERS.length * EACH;
      const next = [0, 0, 0, 0];
      const hashes = next.map(() => HASH_START);
      let switches = 0;
      let last = -1;
      const take = (got: Uint8Array | null, i: number) => {
        assert.ok(got !== null, `the stream ended after ${i} messages`);
        const tag = tagOf(got);
        assert.ok(tag !== undefined && tag[0] < SENDERS.length, `message ${i}: no sender tag`);
        const p = tag[0];
        const bad = mismatch(got, "tagged", seed, p, next[p]);
        if (bad !== undefined) assert.fail(`after ${i} messages: ${bad}`);
        hashes[p] = combine(hashes[p], got.length, checksum(got));
        next[p]++;
        if (last !== -1 && p !== last) switches++;
        last = p;
      };
      // This process receives without blocking its event loop for long (its children's output
      // must be read meanwhile): mostly recvViewAsync and recvAsync, some short blocking recv.
      const receiving = (async () => {
        for (let i = 0; i < total; i++) {
          if (i % 3 === 0) take(await rx.recvViewAsync(20_000), i);
          else if (i % 3 === 1) take(await rx.recvAsync(20_000), i);
          else take(rx.tryRecv() ?? rx.recv(20_000), i);
        }
      })();
      try {
        const sent = await fourSenders(children, name, seed, receiving);
        checkFour(seed, sent, next, hashes);
        assert.ok(switches > 100, `the senders' messages interleaved only ${switches} times`);
        assert.equal(rx.tryRecv(), undefined, "nothing more");
      } finally {
        await killAll(children);
        await receiving.catch(() => {});
      }
    },
  );
});

for (const to of runtimes) {
  childrenTest(
    [...SENDERS, to],
    `${SENDER_MIX} senders send ${EACH} messages each to a ${to} child: each in order, none lost or twice`,
    async () => {
      const seed = 0xf0a2 + (to === "deno" ? 0 : 1);
      await withChannel(
        "cx-many",
        { capacity: MIXED_CAPACITY, producers: "many" },
        async (name) => {
          const children: Child[] = [];
          try {
            const receiver = startReceiver(children, to, name, {
              profile: "tagged",
              seed: seed,
              producers: SENDERS.length,
              count: EACH,
              how: "mix",
              end: "count",
            });
            await ready(receiver, `${to} receiver`);
            let got: Received | undefined;
            const receiving = finished(receiver, `${to} receiver`, HANG_MS).then((r) => {
              got = resultOf<Received>(r, "receiver");
            });
            const sent = await fourSenders(children, name, seed, receiving);
            assert.ok(got !== undefined);
            assert.equal(got.received, SENDERS.length * EACH, "messages received");
            checkFour(seed, sent, got.next, got.hashes);
            assert.ok(
              got.switches > 100,
              `the senders' messages interleaved ${got.switches} times`,
            );
            assert.deepEqual(got.ends, ["undefined"], "nothing more after the last message");
          } finally {
            await killAll(children);
          }
        },
      );
    },
  );
}

// `src/channel/layout.rs`, *Aborts*: a producer that attaches in MPSC mode owes an abort record,
// so that the receiver drops a partial message the slot's previous holder left behind.
for (const first of runtimes) {
  const second = other(first);
  test(`many senders: a ${second} sender taking the slot a ${first} sender left in the middle of a long message gets its first message through whole`, async () => {
    await withChannel(
      "cx-slot",
      { capacity: MIXED_CAPACITY, producers: "many" },
      async (name, ch) => {
        const children: Child[] = [];
        const rx = ch.receiver({ peerCheckMs: 50 });
        try {
          // The first sender's long message breaks off when the ring is full (nobody receives
          // yet), with no room left for its abort record; it detaches and exits.
          const a = spawn(children, first, "channel/attach_and_hold.ts", [
            name,
            "sender",
            "0",
            "break-detach",
          ]);
          const ra = resultOf<Outcome>(await finished(a, `${first} sender`), `${first} sender`);
          assert.equal(ra.code, "ETIMEDOUT", `the long message: ${ra.message}`);
          // The second sender takes the free slot (the same one) and sends one message, which
          // waits for room behind the first sender's fragments until this process takes them out.
          const b = spawn(children, second, "channel/attach_and_hold.ts", [
            name,
            "sender",
            "1",
            "detach",
          ]);
          const got = await rx.recvAsync(WAIT_MS); // the sender's start-up too
          await finished(b, `${second} sender`);
          assert.ok(got !== null, "the end of the stream");
          const bad = mismatch(got, "fixed", 0, 0, 0);
          assert.equal(bad, undefined, `the second sender's first message: ${bad}`);
          assert.equal(rx.tryRecv(), undefined, "nothing more");
        } finally {
          await killAll(children);
        }
      },
    );
  });
}

/**
 * Resolves once the receiver (or a sender) of channel `name` is parked waiting: its waiting word
 * in the header (`rx_waiting` / `tx_waiting`) reads 1.
 */
async function parkedOn(name: string, who: "receiver" | "sender", what: string): Promise<void> {
  using shm = SharedMemory.open({ name }, { size: HEADER_SIZE });
  const word = new Int32Array(shm.buffer, who === "receiver" ? OFF_RX_WAITING : OFF_TX_WAITING, 1);
  await until(() => Atomics.load(word, 0) === 1, what);
}

// ---- 3. The end of a stream ---------------------------------------------------------------------

/** "fixed" messages that fit in a 64 KiB ring together, so their sender never waits. */
const FIT = Math.floor(MIXED_CAPACITY / (8 + FIXED_SIZE));

for (const from of runtimes) {
  const to = other(from);
  test(`a ${from} sender sends ${FIT} messages, closes and exits; a ${to} receiver started after drains them, then sees the end`, async () => {
    await withChannel("cx-end", { capacity: MIXED_CAPACITY }, async (name, ch) => {
      const children: Child[] = [];
      try {
        const sender = spawn(children, from, "channel/attach_and_hold.ts", [
          name,
          "sender",
          String(FIT),
          "close",
        ]);
        await finished(sender, `${from} sender`);
        // The stream is closed: no process can attach a sender any more.
        assert.throws(() => ch.sender(), isCode("EPIPE"), "a sender after the close");
        const receiver = startReceiver(children, to, name, {
          profile: "fixed",
          seed: 0,
          count: FIT,
          how: "mix",
          end: "null",
        });
        const got = resultOf<Received>(await finished(receiver, `${to} receiver`), "receiver");
        assert.equal(got.received, FIT, "messages received");
        assert.equal(got.hashes[0], expectedHash("fixed", 0, 0, FIT), "running hash");
        assert.deepEqual(got.ends, ["null", "null", "null", "null", "forAwait:0"], "end");
      } finally {
        await killAll(children);
      }
    });
  });

  childrenTest(
    [from, to],
    `a ${to} receiver waiting in for await gets 2000 messages (some longer than the ring) from a ${from} sender, and the loop ends at its close`,
    async () => {
      const seed = 0xe0d + (from === "deno" ? 0 : 1);
      await withChannel("cx-end", { capacity: MIXED_CAPACITY }, async (name) => {
        const children: Child[] = [];
        try {
          const receiver = startReceiver(children, to, name, {
            profile: "mixed",
            seed: seed,
            count: 2000,
            how: "forawait",
            end: "null",
          });
          await ready(receiver, `${to} receiver`);
          await parkedOn(name, "receiver", `the ${to} receiver to park in for await`);
          const sender = startSender(children, from, name, {
            profile: "mixed",
            seed: seed,
            count: 2000,
            end: "close",
            how: "mix",
          });
          const [rs, rr] = await Promise.all([
            finished(sender, `${from} sender`),
            finished(receiver, `${to} receiver`),
          ]);
          const want = expectedHash("mixed", seed, 0, 2000);
          assert.equal(resultOf<Sent>(rs, "sender").hash, want, "the sender's running hash");
          const got = resultOf<Received>(rr, "receiver");
          assert.equal(got.received, 2000, "messages received");
          assert.equal(got.methods.forAwait, 2000, "all through for await");
          assert.equal(got.hashes[0], want, "the receiver's running hash");
          assert.deepEqual(got.ends, ["null", "null", "null", "null", "forAwait:0"], "end");
        } finally {
          await killAll(children);
        }
      });
    },
  );
}

// ---- 4. A peer killed while the other side is blocked -------------------------------------------

/** How long this process lets a blocked child block before it kills the peer. */
const BLOCK_MS = 200;
/** Messages the sender sends before it is killed, and the receiver takes before it blocks. */
const BEFORE = 3;

/** What `block_until_peer_ends.ts` reports. */
interface Blocked extends Outcome {
  received: number;
  sent: number;
  blockedMs: number;
  ticks: number;
}

/**
 * Waits for `blocker` (`block_until_peer_ends.ts`) to block, then for each of `steps` (each kills
 * or closes a peer): lets it block {@linkcode BLOCK_MS}, checks that it is still blocked, and runs
 * the step. Returns its report. Its wait has no timeout: only the last peer's end can end it.
 */
async function blockThen(
  blocker: Child,
  what: string,
  steps: (() => void | Promise<void>)[],
): Promise<Blocked> {
  let exited = false;
  blocker.done.then(() => (exited = true));
  await within(blocker.line("blocking"), HANG_MS, `${what} blocking`);
  for (const step of steps) {
    await sleep(BLOCK_MS);
    assert.equal(exited, false, `${what} stopped blocking while a peer was still there`);
    await step();
  }
  return resultOf<Blocked>(await finished(blocker, what, HANG_MS), what);
}

/** Checks a blocked child's report: `code`, after blocking at least BLOCK_MS, its timer as said. */
function assertBlocked(r: Blocked, code: string, mode: "sync" | "async", what: string): void {
  assert.equal(r.code, code, `${what}: ${r.message}`);
  assert.ok(r.blockedMs >= BLOCK_MS - 5, `${what} blocked only ${r.blockedMs} ms`);
  if (mode === "sync") {
    assert.equal(r.ticks, 0, `${what}: timer ticks while blocked in a sync call`);
  } else assert.ok(r.ticks > 0, `${what}: its timers did not tick while it waited`);
}

/**
 * One way a channel peer goes away while the other side (the survivor, always of another runtime)
 * waits, and what the survivor must see. The survivor runs `block_until_peer_ends.ts`: a receiver
 * that first takes the {@linkcode BEFORE} messages the dead sender sent, or a sender that first
 * fills the ring ({@linkcode FIT} messages); either then calls `mode`'s blocking method with no
 * timeout, and must end with `ECONNRESET`.
 */
interface PeerGone {
  /** The test's name, given the runtime of the peer that goes away and of the survivor. */
  name: (gone: string, survivor: string) => string;
  /** The peer that goes away (`attach_and_hold.ts`): its endpoint, and what it is doing. */
  peer: "sender" | "receiver";
  /**
   * `hold`: alive and idle; `reserve`: between reserve and commit; `fragment`: partway through
   * a message four times the ring (parked on the full ring); `exit`: exits without closing.
   */
  state: "hold" | "reserve" | "fragment" | "exit";
  /** Messages the peer sends before it gets to `state`. */
  before: number;
  /**
   * `blocked`: SIGKILLed while the survivor is blocked; `before`: gone before the survivor
   * starts, which then finds the peer dead when it blocks.
   */
  when: "blocked" | "before";
  /** The survivor's blocking call: `recv`/`recvAsync` or `send`/`sendAsync`. */
  mode: "sync" | "async";
  /** One such peer of every runtime (a channel of many senders), killed one by one. */
  everyRuntime?: true;
}

const recvCall = (mode: "sync" | "async") => (mode === "sync" ? "recv()" : "recvAsync()");
const sendCall = (mode: "sync" | "async") => (mode === "sync" ? "send()" : "sendAsync()");

/** Every way a peer goes away, each run with the peer of every runtime. */
const PEER_GONE: PeerGone[] = [
  ...(["sync", "async"] as const).flatMap((mode): PeerGone[] => [
    {
      name: (gone, survivor) =>
        `a ${gone} sender killed with SIGKILL: a ${survivor} receiver blocked in ${
          recvCall(mode)
        } with no timeout gets ECONNRESET`,
      peer: "sender",
      state: "hold",
      before: BEFORE,
      when: "blocked",
      mode,
    },
    {
      name: (gone, survivor) =>
        `a ${gone} receiver killed with SIGKILL: a ${survivor} sender blocked in ${
          sendCall(mode)
        } on a full ring gets ECONNRESET`,
      peer: "receiver",
      state: "hold",
      before: 0,
      when: "blocked",
      mode,
    },
  ]),
  {
    name: (gone, survivor) =>
      `a ${gone} sender that exits without closing: the ${survivor} receiver gets every message, then ECONNRESET`,
    peer: "sender",
    state: "exit",
    before: BEFORE,
    when: "before",
    mode: "sync",
  },
  {
    name: (gone, survivor) =>
      `a ${gone} sender killed between reserve and commit: the ${survivor} receiver gets the messages before, then ECONNRESET`,
    peer: "sender",
    state: "reserve",
    before: BEFORE,
    when: "blocked",
    mode: "async",
  },
  {
    name: (gone, survivor) =>
      `a ${gone} sender killed halfway through a message longer than the ring: the ${survivor} receiver gets no part of it, and ECONNRESET`,
    peer: "sender",
    state: "fragment",
    before: BEFORE,
    when: "before",
    mode: "sync",
  },
  {
    name: (_, survivor) =>
      `many senders: a ${survivor} receiver blocked in recvAsync() with no timeout waits while one of its senders (one per runtime) lives, and gets ECONNRESET once all were killed`,
    peer: "sender",
    state: "hold",
    before: 0,
    when: "blocked",
    mode: "async",
    everyRuntime: true,
  },
];

/** Runs one {@linkcode PeerGone} case: a `gone` peer (or one of every runtime), a `survivor`. */
async function peerGone(c: PeerGone, gone: Runtime, survivor: Runtime): Promise<void> {
  const producers = c.everyRuntime ? "many" : "one";
  await withChannel("cx-gone", { capacity: MIXED_CAPACITY, producers }, async (name) => {
    const children: Child[] = [];
    try {
      const peers = (c.everyRuntime ? runtimes : [gone]).map((which) =>
        spawn(children, which, "channel/attach_and_hold.ts", [
          name,
          c.peer,
          String(c.before),
          c.state,
        ])
      );
      const what = peers.map((_, i) => `${c.everyRuntime ? runtimes[i] : gone} ${c.peer}`);
      if (c.state === "exit") {
        await Promise.all(peers.map((p, i) => finished(p, what[i])));
      } else await Promise.all(peers.map((p, i) => ready(p, what[i])));
      if (c.state === "fragment") {
        // It fills the ring with fragments of the long message, then waits for room.
        await parkedOn(name, "sender", `the ${gone} sender to wait partway through the message`);
      }
      const kill = (p: Child) => async () => {
        p.kill("SIGKILL");
        const dead = await within(p.done, HANG_MS, "a killed peer to exit");
        assert.deepEqual([dead.code, dead.signal], [null, "SIGKILL"], "the killed peer's exit");
        assert.ok(!dead.stdout.includes("sent the long message"), "the long message went out");
      };
      if (c.when === "before" && c.state !== "exit") { for (const p of peers) await kill(p)(); }
      const role = c.peer === "sender" ? "recv" : "send";
      const blocker = spawn(children, survivor, "channel/block_until_peer_ends.ts", [
        name,
        role,
        c.mode,
        String(c.peer === "sender" ? c.before : 0),
      ]);
      const who = `${survivor} ${role === "recv" ? "receiver" : "sender"}`;
      const r = c.when === "blocked"
        ? await blockThen(blocker, who, peers.map(kill))
        : resultOf<Blocked>(await finished(blocker, who, HANG_MS), who);
      if (c.when === "blocked") assertBlocked(r, "ECONNRESET", c.mode, who);
      else assert.equal(r.code, "ECONNRESET", `${who}: ${r.message}`);
      if (role === "recv") assert.equal(r.received, c.before, "messages received before the end");
      else assert.equal(r.sent, FIT, "messages that fit before the ring was full");
    } finally {
      await killAll(children);
    }
  });
}

for (const c of PEER_GONE) {
  for (const gone of runtimes) {
    const survivor = other(gone);
    childrenTest(
      c.everyRuntime ? [...runtimes, survivor] : [gone, survivor],
      c.name(gone, survivor),
      () => peerGone(c, gone, survivor),
    );
  }
}

for (const killed of runtimes) {
  const rejoiner = other(killed);
  test(`many senders: a ${killed} sender killed holding a reservation is reclaimed while senders of every runtime go on; a ${rejoiner} sender then takes a place`, async () => {
    const seed = 0xdead + (killed === "deno" ? 0 : 1);
    const each = 2000;
    await withChannel(
      "cx-reclaim",
      { capacity: MIXED_CAPACITY, producers: "many" },
      async (name, ch) => {
        const children: Child[] = [];
        const rx = ch.receiver({ peerCheckMs: 50 });
        const died: number[] = [];
        rx.addEventListener("senderdied", (e) => died.push(e.pid));
        try {
          // It reserves a record and never commits it: the ring stops there until it is found
          // dead.
          const dying = spawn(children, killed, "channel/attach_and_hold.ts", [
            name,
            "sender",
            "0",
            "reserve",
          ]);
          const dyingPid = Number((await ready(dying, `${killed} sender`)).split(" ")[1]);
          const live = runtimes.map((which, producer) =>
            startSender(children, which, name, {
              profile: "tagged",
              seed: seed,
              producer: producer,
              count: each,
              end: "detach",
              how: "mix",
            })
          );
          await Promise.all(live.map((c, i) => ready(c, `${runtimes[i]} sender`)));
          dying.kill("SIGKILL");
          const next = runtimes.map(() => 0);
          for (let i = 0; i < runtimes.length * each; i++) {
            const got = await rx.recvAsync(30_000);
            assert.ok(got !== null, `the stream ended after ${i} messages`);
            const tag = tagOf(got);
            assert.ok(tag !== undefined && tag[0] < runtimes.length, `message ${i}: no sender tag`);
            const bad = mismatch(got, "tagged", seed, tag[0], next[tag[0]]);
            if (bad !== undefined) assert.fail(`after ${i} messages: ${bad}`);
            next[tag[0]]++;
          }
          assert.deepEqual(
            next,
            runtimes.map(() => each),
            "every live sender's messages, in order",
          );
          assert.deepEqual(died, [dyingPid], "one senderdied event, for the killed sender");
          await Promise.all(live.map((c, i) => finished(c, `${runtimes[i]} sender`)));
          // A new sender of the other runtime attaches, sends and ends the stream.
          const late = spawn(children, rejoiner, "channel/attach_and_hold.ts", [
            name,
            "sender",
            "3",
            "close",
          ]);
          await finished(late, `${rejoiner} sender`);
          for (let seq = 0; seq < 3; seq++) {
            const got = await rx.recvAsync(10_000);
            assert.ok(got !== null, "the end of the stream before the new sender's messages");
            assert.equal(mismatch(got, "fixed", 0, 0, seq), undefined);
          }
          assert.equal(await rx.recvAsync(10_000), null);
        } finally {
          killAll(children);
        }
      },
    );
  });
}

for (const killed of runtimes) {
  const taker = other(killed);
  childrenTest(
    [killed, taker],
    `many senders: a ${killed} receiver killed after finding more dead senders with records ahead than the channel has entries for leaves every one of them to a ${taker} receiver, which gets the message after them`,
    async () => {
      await withChannel("cx-orphans", { capacity: 1024, producers: "many" }, async (name) => {
        const children: Child[] = [];
        using shm = SharedMemory.open({ name });
        const i32 = new Int32Array(shm.buffer);
        // 17 dead senders' marked reservations of 40 bytes (a record of 48), then a 5-byte
        // message of slot 39. The last dead sender's payload looks like records: a message of 16
        // bytes, then a skip record; a receiver that took that sender's mark for a stale one
        // handed it out (freed unrecorded by the killed receiver, its mark looked stale).
        const senders = ORPHAN_ENTRIES + 1;
        const dead = spawnSync("true").pid!;
        const record = (at: number, words: number[]) => i32.set(words, (OFF_DATA + at) >> 2);
        for (let slot = 0; slot < senders; slot++) {
          record(48 * slot, [markWord(slot, 48), slot + 1, ...new Array(10).fill(0x5a5a_5a5a)]);
          Atomics.store(i32, (OFF_PRODUCER_PIDS >> 2) + slot, dead);
        }
        const fake = [REC_COMMITTED | 16, 1, ...new Array(4).fill(0x6666_6666)];
        record(48 * (senders - 1) + 8, [...fake, REC_COMMITTED | REC_SKIP | 8, 0, 0, 0]);
        record(48 * senders, [REC_COMMITTED | 5, 40, 0x0505_0505, 5]);
        Atomics.store(i32, OFF_TAIL >> 2, 48 * senders + 16);
        const pids = () =>
          Array.from({ length: senders }, (_, slot) => i32[(OFF_PRODUCER_PIDS >> 2) + slot]);
        try {
          const first = spawn(children, killed, "channel/attach_and_hold.ts", [
            name,
            "receiver",
            "0",
            "check-hold",
          ]);
          await ready(first, `${killed} receiver`);
          assert.deepEqual(pids(), [...new Array(senders - 1).fill(0), dead], "the last held");
          const tags = Array.from(
            { length: ORPHAN_ENTRIES },
            (_, i) => i32[(OFF_ORPHANS >> 2) + 2 * i],
          );
          assert.deepEqual(tags, Array.from({ length: ORPHAN_ENTRIES }, (_, i) => i + 1));
          first.kill("SIGKILL");
          await first.done;
          const next = spawn(children, taker, "channel/attach_and_hold.ts", [
            name,
            "receiver",
            "0",
            "recv1-hold",
          ]);
          assert.equal(
            await within(next.line("got "), HANG_MS, `${taker} receiver`),
            "got 5",
            "the message, not one made of a dead sender's payload",
          );
        } finally {
          await killAll(children);
        }
      });
    },
  );
}

// A receiver that takes over from a killed one knows of a death the killed one found, also once
// that sender's records are passed and no table of the ring holds it: the header's `bereaved`
// (layout version 9). Before, the new receiver waited for good where the killed one would have
// failed with ECONNRESET (a review's pool whose closing sender and then receiver were killed).
{
  const killed = other(runtime);
  test(`many senders: a ${runtime} receiver taking over from a killed ${killed} receiver that had found a sender dead gets ECONNRESET once the other sender detached, as the killed one would have`, async () => {
    await withChannel("cx-bereaved", { capacity: 4096, producers: "many" }, async (name, ch) => {
      const children: Child[] = [];
      try {
        const tx = ch.sender(); // alive until the killed receiver is gone
        await killAfterADeath(children, killed, name);
        tx.detach();
        using rx = ch.receiver({ peerCheckMs: 20 });
        assert.throws(() => rx.recv(5_000), { code: "ECONNRESET" });
      } finally {
        await killAll(children);
      }
    });
  });
}

// A peer that writes the header can forge messages; what it must not do with one write is mix
// the messages of two live senders for as long as they live. A sender's slot, freed by the peer,
// goes to the next sender that attaches. With many senders the receiver puts fragments together
// by slot: a review's peer got 1,306 mixed messages in 3.5 s so, and a sender now sends a
// fragment only while its slot holds its pid. With one sender the two would write the ring from
// tails of their own: the sender now sends nothing while its place holds another pid, and its
// close leaves the stream to the other. This runner receives; the two senders are the other two
// runtimes.
{
  const victim = other(runtime);
  const thief = other(victim);
  for (const producers of ["many", "one"] as const) {
    const many = producers === "many";
    const what = many
      ? `the ${victim} sender's message in fragments fails with EBADMSG, the rest arrive whole`
      : `every send of the ${victim} sender fails with EBADMSG and its close ends nothing`;
    test(`${producers} sender${many ? "s" : ""}: a peer that frees a live ${victim} sender's slot, which a ${thief} sender then takes, mixes no messages: ${what}`, async () => {
      await withChannel("cx-slot", { capacity: 4096, producers }, async (name, ch) => {
        const children: Child[] = [];
        using rx = ch.receiver();
        using shm = SharedMemory.open({ name });
        const slot0 = () => Atomics.load(new Int32Array(shm.buffer), OFF_PRODUCER_PIDS >> 2);
        try {
          await withControl(async (ctl, i32) => {
            const a = spawn(children, victim, "channel/slot_taken.ts", [name, ctl, "1"]);
            const aPid = Number((await ready(a, `${victim} sender`)).split(" ")[1]);
            assert.equal(slot0(), aPid, "the first sender in the first slot");
            Atomics.store(new Int32Array(shm.buffer), OFF_PRODUCER_PIDS >> 2, 0); // the peer
            const b = spawn(children, thief, "channel/slot_taken.ts", [name, ctl, "2"]);
            const bPid = Number((await ready(b, `${thief} sender`)).split(" ")[1]);
            assert.equal(slot0(), bPid, "the freed slot taken by the next sender");
            Atomics.store(i32, CTL_GO, 1);
            notify(i32, CTL_GO);
            const big = ch.maxRecordBytes * 3.5;
            const got: string[] = [];
            for (let i = 0; i < (many ? 3 : 2); i++) {
              const message = await rx.recvAsync(HANG_MS);
              assert.ok(message !== null, `the end of the stream after ${i} messages`);
              const fill = message[0];
              assert.ok(
                message.every((byte) => byte === fill),
                `message ${i} (${message.length} bytes) mixes two senders' bytes`,
              );
              got.push(`${message.length} of ${fill}`);
            }
            const [aDone, bDone] = await Promise.all([
              finished(a, `${victim} sender`),
              finished(b, `${thief} sender`),
            ]);
            assert.deepEqual(resultOf(aDone, `${victim} sender`), {
              fragmented: "EBADMSG",
              whole: many ? "ok" : "EBADMSG",
            });
            assert.deepEqual(resultOf(bDone, `${thief} sender`), {
              fragmented: "ok",
              whole: "ok",
            });
            assert.deepEqual(
              got.sort(),
              [...many ? ["16 of 1"] : [], "16 of 2", `${big} of 2`].sort(),
            );
            if (many) assert.equal(rx.tryRecv(), undefined, "nothing more");
            else assert.equal(rx.recv(0), null, "the end of the stream, by the second sender");
          });
        } finally {
          await killAll(children);
        }
      });
    });
  }
}

// The receiver's place, freed by a peer, goes to the next receiver that attaches; two receivers
// taking from one `head` would deliver messages twice and move `head` back and forth. A receiver
// now takes a message only while its place holds its pid. This runner's receiver loses its place
// to a receiver of the next runtime, which a sender of the third feeds.
{
  const thief = other(runtime);
  const from = other(thief);
  const COUNT = 300;
  for (const producers of ["one", "many"] as const) {
    test(`${producers} sender${producers === "many" ? "s" : ""}: a peer that frees this ${runtime} receiver's place, which a ${thief} receiver then takes, duplicates nothing: every message of a ${from} sender arrives there once, this receiver's receives fail with EBADMSG and its close leaves the channel open`, async () => {
      await withChannel("cx-rxplace", { capacity: 4096, producers }, async (name, ch) => {
        const children: Child[] = [];
        const rx = ch.receiver();
        using shm = SharedMemory.open({ name });
        const words = new Int32Array(shm.buffer);
        try {
          Atomics.store(words, OFF_CONSUMER_PID >> 2, 0); // the peer
          const receiver = startReceiver(children, thief, name, {
            profile: "fixed",
            seed: 0,
            count: COUNT,
            how: "mix",
            end: "null",
          });
          const rPid = Number((await ready(receiver, `${thief} receiver`)).split(" ")[1]);
          assert.equal(Atomics.load(words, OFF_CONSUMER_PID >> 2), rPid, "the place taken");
          const sender = startSender(children, from, name, {
            profile: "fixed",
            seed: 0,
            count: COUNT,
            end: "close",
            how: "mix",
          });
          // While it sends, this receiver takes nothing.
          for (let i = 0; i < 20; i++) {
            assert.throws(
              () => rx.tryRecv(),
              (e) => isCode("EBADMSG")(e) && (e as Error).message.includes(`holds ${rPid} `),
            );
            await sleep(2);
          }
          rx.close();
          assert.equal(Atomics.load(words, OFF_FLAGS >> 2) & FLAG_RX_CLOSED, 0, "still open");
          const [rs, rr] = await Promise.all([
            finished(sender, `${from} sender`),
            finished(receiver, `${thief} receiver`),
          ]);
          const want = expectedHash("fixed", 0, 0, COUNT);
          assert.equal(resultOf<Received>(rr, "receiver").received, COUNT, "messages received");
          assert.equal(resultOf<Received>(rr, "receiver").hashes[0], want, "their running hash");
          assert.equal(resultOf<Sent>(rs, "sender").hash, want, "the sender's running hash");
        } finally {
          rx.close();
          await killAll(children);
        }
      });
    });
  }
}

// A process that ends holding an endpoint leaves its pid in the place, to die with it: peers then
// report a dead process. Its runtime's teardown (Deno, Bun), or its finalization of the buffers
// at a normal end (Node.js), marked the place gone, as for an endpoint that went without close()
// while its process lives on (`thread: true`, "its Worker ended, or the engine collected it").
for (const which of runtimes) {
  test(`a ${which} child that ends holding a sender or a receiver, however it ends, leaves its pid to die with it: a dead process, not an endpoint gone`, async () => {
    for (const ending of ["end", "exit", "throw"]) {
      const name = uniqueName("cx-end");
      try {
        using ch = Channel.create({ name }, { capacity: 4096, producers: "many" });
        const rx = ch.receiver({ peerCheckMs: 5 });
        const died: [number, boolean][] = [];
        rx.addEventListener("senderdied", (e) => died.push([e.pid, e.thread]));
        const child = start(
          scriptCommand(which, "channel/hold_and_end.ts", [name, "sender", ending]),
        );
        const childPid = Number((await ready(child, `the ${which} sender`)).split(" ")[1]);
        const { code } = await within(child.done, HANG_MS, `the ${which} sender to end`);
        assert.equal(code, ending === "throw" ? 1 : 0, `the ${which} sender's ${ending}`);
        assert.deepEqual(Array.from(rx.recv(HANG_MS)!), [42]);
        assert.throws(() => rx.recv(HANG_MS), isCode("ECONNRESET"), `after the ${ending}`);
        assert.deepEqual(died, [[childPid, false]], `the ${which} sender's ${ending}`);
      } finally {
        cleanup({ name });
      }
    }
    const name = uniqueName("cx-end-rx");
    try {
      using ch = Channel.create({ name }, { capacity: 4096 });
      const tx = ch.sender({ peerCheckMs: 5 });
      const child = start(
        scriptCommand(which, "channel/hold_and_end.ts", [name, "receiver", "end"]),
      );
      await ready(child, `the ${which} receiver`);
      assert.equal((await within(child.done, HANG_MS, `the ${which} receiver to end`)).code, 0);
      assert.throws(
        () => {
          for (;;) tx.send(new Uint8Array(1000), HANG_MS);
        },
        (e: unknown) =>
          isCode("ECONNRESET")(e) && /\(process \d+\) died/.test((e as Error).message),
        "a send into the full ring: the receiver's process died",
      );
    } finally {
      cleanup({ name });
    }
  });
}

// ---- 5. Backpressure from a slow receiver -------------------------------------------------------

const SLOW_COUNT = 400;
const SLOW_EVERY = 4;
const SLOW_MS = 2;

for (const from of runtimes) {
  const to = other(from);
  childrenTest(
    [from, to],
    `a ${from} sender blocks on a full 16 KiB ring while a slow ${to} receiver catches up, and loses nothing`,
    async () => {
      await withChannel("cx-slow", { capacity: 16 * 1024 }, async (name) => {
        const children: Child[] = [];
        try {
          const receiver = startReceiver(children, to, name, {
            profile: "fixed",
            seed: 0,
            count: SLOW_COUNT,
            how: "mix",
            end: "null",
            sleepEvery: SLOW_EVERY,
            sleepMs: SLOW_MS,
          });
          await ready(receiver, `${to} receiver`);
          const sender = startSender(children, from, name, {
            profile: "fixed",
            seed: 0,
            count: SLOW_COUNT,
            end: "close",
            how: "probe",
          });
          const [rs, rr] = await Promise.all([
            finished(sender, `${from} sender`),
            finished(receiver, `${to} receiver`),
          ]);
          const sent = resultOf<Sent>(rs, "sender");
          const got = resultOf<Received>(rr, "receiver");
          const want = expectedHash("fixed", 0, 0, SLOW_COUNT);
          assert.equal(got.received, SLOW_COUNT, "messages received");
          assert.equal(got.hashes[0], want, "the receiver's running hash");
          assert.equal(sent.hash, want, "the sender's running hash");
          assert.equal(got.maxInRing, 16, "messages the ring holds");
          // The sender found the ring full, and waited: it cannot have sent its last message
          // before the receiver had taken all but the ring's worth of messages, which took the
          // receiver's sleeps until then.
          assert.ok(sent.full > 0, "trySend never found the ring full");
          assert.ok(got.sleptBeforeMs > 100, `the receiver slept only ${got.sleptBeforeMs} ms`);
          assert.ok(
            sent.elapsedMs >= got.sleptBeforeMs - 1,
            `the sender took ${sent.elapsedMs} ms, the receiver slept ${got.sleptBeforeMs} ms`,
          );
        } finally {
          await killAll(children);
        }
      });
    },
  );
}

// `src/channel/layout.rs`, *Receive*: when the receiver is done with a message (copied out, or
// the borrowed slice released) it frees its room; `recv` returns a copy.
for (const from of runtimes) {
  const to = other(from);
  childrenTest(
    [from, to],
    `a ${to} receiver's recv() gives the message's room back: a ${from} sender blocked on the full ring goes on`,
    async () => {
      await withChannel("cx-room", { capacity: MIXED_CAPACITY }, async (name) => {
        const children: Child[] = [];
        try {
          const sender = spawn(children, from, "channel/block_until_peer_ends.ts", [
            name,
            "send",
            "sync",
            "0",
          ]);
          await within(sender.line("blocking"), HANG_MS, `${from} sender blocking`);
          // The receiver takes a copy of one message and then receives nothing more.
          const receiver = spawn(children, to, "channel/attach_and_hold.ts", [
            name,
            "receiver",
            "0",
            "recv1-hold",
          ]);
          await ready(receiver, `${to} receiver`);
          const r = await within(
            sender.done,
            HANG_MS,
            `the ${from} sender's send, after the ${to} receiver's recv() returned a copy,`,
          );
          assert.equal(r.code, 0, r.stderr);
          const outcome = resultOf<Blocked>(r, "sender");
          assert.equal(outcome.code, "none", outcome.message);
          assert.equal(outcome.sent, FIT, "messages that fit before the ring was full");
        } finally {
          await killAll(children);
        }
      });
    },
  );
}

// `docs/channel.md`, *Advance*: a receiver may store `head` late while it goes on receiving, but
// a sender never waits for room that the receiver has already taken: a sender that starts to
// wait after the receiver's last receive gets that room although nothing is received again.
for (const which of runtimes) {
  // This process receives (and takes over): every runner runs it.
  test(
    `a ${which} sender that starts waiting after recvInto took a message gets its room, with no further receive`,
    async () => {
      // Many senders: this process fills the ring, then leaves the sending to the child.
      const options = { capacity: MIXED_CAPACITY, producers: "many" } as const;
      await withChannel("cx-late", options, async (name, channel) => {
        const children: Child[] = [];
        try {
          const rx = channel.receiver();
          const tx = channel.sender();
          let fit = 0;
          while (tx.trySend(makeMessage("fixed", 0, 0, fit))) fit++;
          assert.ok(fit >= FIT - 1, `${fit} messages filled the ring`);
          // Nobody waits for room yet: the receiver takes two messages, then receives nothing.
          const into = new Uint8Array(FIXED_SIZE);
          for (let i = 0; i < 2; i++) assert.equal(rx.recvInto(into, 0), FIXED_SIZE);
          tx.detach();
          // The child's sender finds the ring full as `head` says and waits (`WAIT_MS` at most).
          const sender = spawn(children, which, "channel/attach_and_hold.ts", [
            name,
            "sender",
            "1",
            "detach",
          ]);
          const r = await within(sender.done, HANG_MS, `the ${which} sender's send`);
          assert.equal(r.code, 0, r.stderr);
          assert.equal(resultOf<{ sent: number }>(r, "sender").sent, 1);
          rx.close();
        } finally {
          await killAll(children);
        }
      });
    },
  );
}

// A receiver killed right after a receive: the next receiver (which takes over the dead one's
// place) starts at the shared `head`, which must already be past what the dead one took.
for (const which of runtimes) {
  // This process receives (and takes over): every runner runs it.
  test(
    `a receiver taking over from a ${which} receiver killed after a recvInto gets the next message`,
    async () => {
      await withChannel("cx-rxkill", { capacity: MIXED_CAPACITY }, async (name, channel) => {
        const children: Child[] = [];
        try {
          const tx = channel.sender();
          for (let seq = 0; seq < 3; seq++) tx.send(makeMessage("fixed", 0, 0, seq));
          const receiver = spawn(children, which, "channel/attach_and_hold.ts", [
            name,
            "receiver",
            "0",
            "recvinto1-hold",
          ]);
          await ready(receiver, `${which} receiver`);
          assert.equal(
            await receiver.line("got"),
            `got ${FIXED_SIZE}`,
            "it took the first message",
          );
          receiver.kill("SIGKILL");
          await within(receiver.done, HANG_MS, `the killed ${which} receiver's exit`);
          const rx = channel.receiver();
          assert.deepEqual(rx.recv(10_000), makeMessage("fixed", 0, 0, 1), "the second message");
          assert.deepEqual(rx.recv(10_000), makeMessage("fixed", 0, 0, 2), "the third");
          rx.close();
        } finally {
          await killAll(children);
        }
      });
    },
  );
}

// `docs/channel.md`, *A receiver that dies*: a receiver killed inside a recvMany callback has
// consumed records whose room it has not handed back yet; the receiver that takes over starts at
// the shared `head` and gets them again (the one whose callback was running among them), then
// every later message, and never waits on a zeroed record.
for (const which of runtimes) {
  for (const size of [100, 600]) {
    // 100 B: copied out before the callback; 600 B: lent as a view of the ring.
    test(
      `a receiver taking over from a ${which} receiver killed inside a recvMany callback (${size} B messages) gets the batch again and every later message`,
      async () => {
        const numbered = (seq: number) => {
          const out = new Uint8Array(size).map((_, j) => (seq * 31 + j) & 0xff);
          new DataView(out.buffer).setUint32(0, seq, true);
          return out;
        };
        const seqOf = (m: Uint8Array) => new DataView(m.buffer, m.byteOffset, 4).getUint32(0, true);
        await withChannel("cx-rxbatch", { capacity: MIXED_CAPACITY }, async (name, channel) => {
          const children: Child[] = [];
          try {
            const tx = channel.sender();
            // All in the ring before the receiver starts: one recvMany call takes them.
            const before = 8;
            const total = 40;
            let seq = 0;
            for (; seq < before; seq++) tx.send(numbered(seq));
            await killInsideRecvMany(children, which, name, 5);
            for (; seq < total; seq++) tx.send(numbered(seq));
            const rx = channel.receiver();
            const got: Uint8Array[] = [];
            const first = rx.recv(10_000);
            assert.ok(first !== null, "the stream ended");
            got.push(first);
            while (got.length < total - 1) {
              rx.recvMany((m) => void got.push(m.slice()), 10_000);
            }
            // The dead receiver's first message was handed back before its callback's end.
            assert.deepEqual(
              got.map(seqOf),
              Array.from({ length: total - 1 }, (_, i) => i + 1),
              "messages 1.. in order, each once",
            );
            for (const m of got) assert.deepEqual(m, numbered(seqOf(m)));
            assert.equal(rx.tryRecv(), undefined, "nothing more");
            rx.close();
          } finally {
            await killAll(children);
          }
        });
      },
    );
  }
}

for (const which of runtimes) {
  test(`a receiver taking over from a ${which} receiver killed after it collected the first fragments of a message drops the rest, then gets the next message whole`, async () => {
    await withChannel("cx-rxsplit", { capacity: 1024 }, async (name, channel) => {
      const children: Child[] = [];
      try {
        const tx = channel.sender();
        const max = channel.maxRecordBytes;
        // Three fragments: the first two fill the ring, the last waits for room.
        // Its time covers the start-up of the receiver below.
        const sending = tx.sendAsync(new Uint8Array(2 * max + 100).fill(0x5a), WAIT_MS);
        sending.catch(() => {}); // awaited below; a failure before that ends the test anyway
        await parkedOn(name, "sender", "the sender waiting to send the last fragment");
        let receiver!: Child;
        await withControl(async (ctl, words) => {
          receiver = spawn(children, which, "channel/attach_and_hold.ts", [
            name,
            "receiver",
            "0",
            "tryrecv1-hold",
            ctl,
          ]);
          // This thread waits without its event loop: the sender cannot send the last fragment
          // until the receiver's tryRecv has returned.
          assert.notEqual(
            wait(words, CTL_READY, 0, 20_000),
            "timed-out",
            `the ${which} receiver's tryRecv`,
          );
          const got = await within(receiver.line("got"), 20_000, `the ${which} receiver's line`);
          assert.equal(got, "got none", "fragments collected, no message yet");
          await ready(receiver, `the ${which} receiver`);
        });
        // The receiver handed the room of the two fragments back: the last one is sent.
        await sending;
        receiver.kill("SIGKILL");
        const dead = await within(receiver.done, HANG_MS, `the killed ${which} receiver's exit`);
        assert.equal(dead.signal, "SIGKILL", dead.stderr);
        tx.send("next", 5000);
        const rx = channel.receiver();
        assert.equal(rx.recvText(5000), "next", "not the last fragment as a message of its own");
        assert.equal(rx.tryRecv(), undefined, "nothing more");
        rx.close();
      } finally {
        await killAll(children);
      }
    });
  });
}

/**
 * Lets `receiver` (a `channel/stamped.ts` child) get `target` messages, as `got` counts them from
 * the control words `words`, then kills it, and checks that it died of the kill and that no
 * message it got was broken.
 */
async function killAfter(
  receiver: Child,
  what: string,
  target: number,
  got: () => number,
  words: Int32Array,
): Promise<void> {
  let exited = false;
  receiver.done.then(() => (exited = true));
  await until(() => exited || got() >= target, `${what} getting ${target} messages`);
  if (exited) throw new Error(`${what} exited: ${(await receiver.done).stderr}`);
  receiver.kill("SIGKILL");
  const dead = await within(receiver.done, HANG_MS, `killed ${what}'s exit`);
  assert.equal(dead.signal, "SIGKILL", dead.stderr);
  assert.equal(Atomics.load(words, CTL_BAD), 0, `${what} got a broken message`);
}

// `docs/channel.md`, *A receiver that dies*: receivers of every runtime killed (SIGKILL) at points
// of a busy stream that nothing chooses (after a number of messages, wherever the receiver then
// is: zeroing what it consumed, copying a message out, inside a callback), each taken over by the
// next. Every message delivered is whole and intact (stamp and checksum); each receiver's messages
// are consecutive; messages a killed receiver consumed without handing their room back come again;
// and a message is missing only where a killed receiver was taking it (at most one per kill: the
// receive had begun to hand its room back, or had returned it before the receiver logged it).
// Without the `zeroing` word, a receiver killed while it zeroed leaves the next one waiting at a
// zeroed record (its receive times out) or hands it a message with zeros.
childrenTest(
  [...runtimes],
  "receivers of every runtime killed at random points of a busy stream and taken over: every message intact, none lost but one a killed receiver was taking",
  async () => {
    const rounds = 60;
    const name = uniqueName("cx-rxloop");
    const ctlName = uniqueName("cx-rxloop-ctl");
    const children: Child[] = [];
    try {
      // A ring that holds thousands of messages: the sender fills it while the receiver drains it.
      using _channel = Channel.create({ name }, { capacity: 1 << 20 });
      using ctl = SharedMemory.create({ name: ctlName }, CTL_BYTES);
      const words = new Int32Array(ctl.buffer);
      for (let i = 0; i <= rounds; i++) {
        words[CTL_FIRST(i)] = -1;
        words[CTL_LAST(i)] = -1;
      }
      const sender = spawn(children, "bun", "channel/stamped.ts", ["send", name, ctlName]);
      const receive = (i: number) =>
        spawn(children, runtimes[i % runtimes.length], "channel/stamped.ts", [
          "receive",
          name,
          ctlName,
          String(i),
        ]);
      for (let i = 0; i < rounds; i++) {
        const receiver = receive(i);
        await ready(receiver, `receiver ${i}`);
        const target = 1000 + (Math.imul(i + 1, 0x9e3779b1) >>> 11) % 20_000;
        await killAfter(
          receiver,
          `receiver ${i} (${runtimes[i % runtimes.length]})`,
          target,
          () => Atomics.load(words, CTL_LAST(i)) - Atomics.load(words, CTL_FIRST(i)),
          words,
        );
      }
      const last = receive(rounds);
      await ready(last, "the last receiver");
      await until(
        () => Atomics.load(words, CTL_FIRST(rounds)) >= 0,
        "the last receiver's messages",
      );
      Atomics.store(words, CTL_STOP, 1);
      const sent = resultOf<{ sent: number }>(await finished(sender, "sender"), "sender").sent;
      const got = resultOf<{ last: number }>(await finished(last, "last receiver"), "receiver");
      assert.equal(Atomics.load(words, CTL_BAD), 0, "a broken message");
      assert.equal(got.last, sent - 1, "the last receiver got the stream to its last message");
      // Per receiver, in order: [first, last] got (first -1: none). A receiver starts at most one
      // message per kill since the last message got past that message; earlier is a message got
      // again.
      assert.equal(words[CTL_FIRST(0)], 0, "the first receiver starts at message 0");
      let frontier = -1;
      let kills = 0;
      for (let i = 0; i <= rounds; i++) {
        const [first, end] = [words[CTL_FIRST(i)], words[CTL_LAST(i)]];
        if (first >= 0) {
          assert.ok(
            first <= frontier + 1 + kills,
            `receiver ${i} starts at ${first}, more than ${kills} past message ${frontier}`,
          );
          frontier = Math.max(frontier, end);
          kills = 0;
        }
        kills++;
      }
    } finally {
      await killAll(children);
      cleanup({ name });
      cleanup({ name: ctlName });
    }
  },
);

// The same with many senders (`docs/channel.md`, *A receiver that dies*): fragments of different
// senders interleave in the ring, and a killed receiver takes the fragments it had put together
// with it; the next one drops the rest of each such message. A sender of every runtime sends small
// messages and every eighth one in three fragments (sent again when its send met the receiver
// dead); receivers of every runtime are killed and taken over. Every message delivered is whole
// and intact, each sender's in order; a kill costs at most the one message of one record being
// taken, and one message in fragments per sender.
childrenTest(
  [...runtimes],
  "many senders of every runtime, with messages in fragments among small ones, and receivers killed at random points and taken over: every message intact and in order, and a kill loses at most one small message and one in fragments per sender",
  async () => {
    const rounds = 30;
    const capacity = 64 * 1024;
    const big = 2 * (capacity / 2 - 8) + 1000; // three records
    const isBig = (seq: number) => seq % 8 === 7; // as stamped.ts sends them
    const name = uniqueName("cx-rxmany");
    const ctlName = uniqueName("cx-rxmany-ctl");
    const children: Child[] = [];
    const count = runtimes.length;
    try {
      using channel = Channel.create({ name }, { capacity, producers: "many" });
      using ctl = SharedMemory.create({ name: ctlName }, CTL_BYTES);
      const words = new Int32Array(ctl.buffer);
      for (let i = 0; i <= rounds; i++) {
        for (let s = 0; s < count; s++) {
          words[CTL_FIRST(CTL_OF(i, s))] = -1;
          words[CTL_LAST(CTL_OF(i, s))] = -1;
        }
      }
      const senders = runtimes.map((which, s) =>
        spawn(children, which, "channel/stamped.ts", ["send", name, ctlName, String(s), `${big}`])
      );
      const receive = (i: number) =>
        spawn(children, runtimes[i % count], "channel/stamped.ts", [
          "receive",
          name,
          ctlName,
          String(i),
          String(count),
          String(big),
        ]);
      /** How many messages receiver `i` got, counted from its first and last of each sender. */
      const got = (i: number) =>
        runtimes.reduce((sum, _, s) => {
          const first = Atomics.load(words, CTL_FIRST(CTL_OF(i, s)));
          return first < 0 ? sum : sum + Atomics.load(words, CTL_LAST(CTL_OF(i, s))) - first + 1;
        }, 0);
      for (let i = 0; i < rounds; i++) {
        const receiver = receive(i);
        await ready(receiver, `receiver ${i}`);
        const target = 200 + (Math.imul(i + 1, 0x9e3779b1) >>> 11) % 3000;
        await killAfter(
          receiver,
          `receiver ${i} (${runtimes[i % count]})`,
          target,
          () => got(i),
          words,
        );
      }
      const last = receive(rounds);
      await ready(last, "the last receiver");
      // Every sender gets through to it: none was left stuck by the kills.
      await until(
        () => runtimes.every((_, s) => Atomics.load(words, CTL_FIRST(CTL_OF(rounds, s))) >= 0),
        "the last receiver's messages from every sender",
      );
      Atomics.store(words, CTL_STOP, 1);
      const sent: number[] = [];
      for (const [s, sender] of senders.entries()) {
        sent.push(resultOf<{ sent: number }>(await finished(sender, `sender ${s}`), "sender").sent);
      }
      // Every sender has left: one of this process's ends the stream.
      channel.sender().close();
      const end = resultOf<{ last: number[] }>(await finished(last, "last receiver"), "receiver");
      assert.equal(Atomics.load(words, CTL_BAD), 0, "a broken message");
      assert.deepEqual(
        end.last,
        sent.map((n) => n - 1),
        "the last receiver got every stream's end",
      );
      assert.deepEqual(
        runtimes.map((_, s) =>
          Math.max(...Array.from({ length: rounds + 1 }, (_, i) => words[CTL_LAST(CTL_OF(i, s))]))
        ),
        sent.map((n) => n - 1),
        "no receiver got a message past a stream's end",
      );
      // Per sender, per receiver in order: where it starts past the last message got so far, the
      // messages between were lost, by the kills since that sender's last message was got.
      let small = 0;
      for (let s = 0; s < count; s++) {
        let frontier = -1;
        let kills = 0;
        for (let i = 0; i <= rounds; i++) {
          const [first, end] = [words[CTL_FIRST(CTL_OF(i, s))], words[CTL_LAST(CTL_OF(i, s))]];
          if (first >= 0) {
            const lost = Array.from(
              { length: Math.max(0, first - frontier - 1) },
              (_, j) => frontier + 1 + j,
            );
            const bigs = lost.filter(isBig).length;
            const what = `sender ${s} (${
              runtimes[s]
            }): receiver ${i} starts at ${first} after ${frontier}, ${kills} kills since`;
            assert.ok(bigs <= kills, `${what}: ${bigs} messages in fragments lost`);
            assert.ok(lost.length - bigs <= kills, `${what}: ${lost.length - bigs} small lost`);
            small += lost.length - bigs;
            frontier = Math.max(frontier, end);
            kills = 0;
          }
          kills++;
        }
      }
      assert.ok(small <= rounds, `${small} small messages lost in ${rounds} kills`);
    } finally {
      await killAll(children);
      cleanup({ name });
      cleanup({ name: ctlName });
    }
  },
);

// ---- 6. Errors another process sees -------------------------------------------------------------

for (const which of runtimes) {
  childrenTest(
    [which],
    `a ${which} child opening a segment that is not a channel gets EBADMSG`,
    async () => {
      const name = uniqueName("cx-notchan");
      const children: Child[] = [];
      try {
        using shm = SharedMemory.create({ name }, 1024 + MIXED_CAPACITY);
        const bytes = new Uint8Array(shm.buffer);
        for (let i = 0; i < bytes.length; i++) bytes[i] = (i * 151 + 7) & 0xff;
        const r = resultOf<Outcome>(
          await finished(spawn(children, which, "channel/try_once.ts", [name, "open"]), "child"),
          "child",
        );
        assert.equal(r.code, "EBADMSG", r.message);
      } finally {
        await killAll(children);
        cleanup({ name });
      }
    },
  );
}

for (const which of runtimes) {
  childrenTestUnless(
    noPidNamespace,
    [which],
    `a ${which} child in another pid namespace: EXDEV from a channel whose endpoints are here, and a channel it only made works here`,
    async () => {
      const name = uniqueName("cx-pidns");
      const made = uniqueName("cx-pidns-made");
      const children: Child[] = [];
      const run = async (command: string[], what: string) => {
        const child = start(command);
        children.push(child);
        return resultOf<Outcome>(await finished(child, what), what);
      };
      try {
        using channel = Channel.create({ name }, { capacity: MIXED_CAPACITY });
        using _rx = channel.receiver(); // the first endpoint: its namespace is the channel's
        const send = scriptCommand(which, "channel/try_once.ts", [name, "send"]);
        const same = await run(send, "a child in this pid namespace");
        assert.equal(same.code, "ok", same.message);
        const away = await run([...UNSHARE_PID, ...send], "a child in a new pid namespace");
        assert.equal(away.code, "EXDEV", away.message);
        assert.match(
          away.message,
          /^Channel\.open of .*another pid namespace \(pid:\[\d+\]; this process is in pid:\[\d+\]\)/,
        );
        // A creator that attaches nothing is no peer: its namespace does not matter.
        const create = scriptCommand(which, "channel/try_once.ts", [made, "create"]);
        const created = await run([...UNSHARE_PID, ...create], "a creator in a new pid namespace");
        assert.equal(created.code, "ok", created.message);
        using other = Channel.open({ name: made });
        using tx = other.sender();
        using rx = other.receiver();
        tx.send("across", 1000);
        assert.equal(rx.recvText(1000), "across");
      } finally {
        await killAll(children);
        cleanup({ name });
        cleanup({ name: made });
      }
    },
  );
}

test("the first endpoint records its pid namespace; an open or attach from another is EXDEV, and none recorded is no check", () => {
  const name = uniqueName("cx-pidns-word");
  try {
    using channel = Channel.create({ name }, { capacity: MIXED_CAPACITY, producers: "many" });
    using shm = SharedMemory.open({ name });
    const words = new Uint32Array(shm.buffer, 0, HEADER_SIZE >> 2);
    const word = OFF_PID_NAMESPACE >> 2;
    assert.equal(words[word], 0, "no endpoint yet");
    channel.sender().detach(); // the stream stays open for the senders below
    const ours = words[word];
    if (ours === 0) return; // not Linux, or no /proc: nothing to compare, nothing to test
    const theirs = (ours + 1) >>> 0;
    const refused = (call: string) => (e: unknown) =>
      e instanceof SharedMemoryError && e.code === "EXDEV" && e.message.startsWith(call) &&
      e.message.includes(`pid:[${theirs}]; this process is in pid:[${ours}]`);
    words[word] = theirs;
    assert.throws(
      () => Channel.open({ name }, { timeoutMs: 100 }),
      refused(`Channel.open of name ${name}: `),
    );
    // Recorded after this opening looked: its attach is refused too.
    words[word] = 0;
    using late = Channel.open({ name }, { timeoutMs: 100 });
    words[word] = theirs;
    assert.throws(() => late.sender(), refused(`Channel.sender of name ${name}: `));
    // None recorded: the next endpoint records its own.
    words[word] = 0;
    late.sender().detach();
    assert.equal(words[word], ours, "the sender recorded its namespace");
  } finally {
    cleanup({ name });
  }
});

for (const holder of runtimes) {
  const second = other(holder);
  test(`a ${second} child gets EBUSY for a second receiver or sender while a ${holder} child holds it, takes over a killed receiver, and gets EAGAIN for a killed sender's place not freed yet`, async () => {
    await withChannel("cx-busy", { capacity: MIXED_CAPACITY }, async (name, ch) => {
      const children: Child[] = [];
      try {
        const rxHolder = spawn(children, holder, "channel/attach_and_hold.ts", [
          name,
          "receiver",
          "0",
          "hold",
        ]);
        const txHolder = spawn(children, holder, "channel/attach_and_hold.ts", [
          name,
          "sender",
          "0",
          "hold",
        ]);
        await ready(rxHolder, `${holder} receiver`);
        await ready(txHolder, `${holder} sender`);
        const tries = await Promise.all(
          ["receiver", "sender"].map((action) =>
            finished(spawn(children, second, "channel/try_once.ts", [name, action]), action)
          ),
        );
        const [rx, tx] = tries.map((r) => resultOf<Outcome>(r, "cx_try"));
        assert.equal(rx.code, "EBUSY", `a second receiver: ${rx.message}`);
        assert.equal(tx.code, "EBUSY", `a second sender: ${tx.message}`);
        assert.throws(() => ch.receiver(), isCode("EBUSY"), "a receiver in this process");
        // A dead receiver's place can be taken at once; a dead sender's only once the receiver
        // (here alive but not receiving) has freed it: until then, EAGAIN.
        txHolder.kill("SIGKILL");
        await within(txHolder.done, HANG_MS, "the killed sender to exit");
        const dead = resultOf<Outcome>(
          await finished(
            spawn(children, second, "channel/try_once.ts", [name, "sender"]),
            "sender",
          ),
          "sender",
        );
        assert.equal(dead.code, "EAGAIN", `a sender after the sender died: ${dead.message}`);
        rxHolder.kill("SIGKILL");
        await within(rxHolder.done, HANG_MS, "the killed receiver to exit");
        let taken: ChannelReceiver | undefined;
        try {
          taken = ch.receiver();
        } finally {
          taken?.close();
        }
      } finally {
        await killAll(children);
      }
    });
  });

  test(`a ${second} sender blocked on a full ring gets EPIPE when the ${holder} receiver closes; later sends too`, async () => {
    await withChannel("cx-epipe", { capacity: MIXED_CAPACITY }, async (name, ch) => {
      const children: Child[] = [];
      await withControl(async (ctl, i32) => {
        try {
          const receiver = spawn(children, holder, "channel/attach_and_hold.ts", [
            name,
            "receiver",
            "0",
            "go-close",
            ctl,
          ]);
          await ready(receiver, `${holder} receiver`);
          const sender = spawn(children, second, "channel/block_until_peer_ends.ts", [
            name,
            "send",
            "sync",
            "0",
          ]);
          const r = await blockThen(sender, `${second} sender`, [() => {
            Atomics.store(i32, CTL_GO, 1);
            notify(i32, CTL_GO);
          }]);
          assertBlocked(r, "EPIPE", "sync", `${second} sender`);
          await finished(receiver, `${holder} receiver`);
          const late = resultOf<Outcome>(
            await finished(
              spawn(children, holder, "channel/try_once.ts", [name, "send"]),
              "late sender",
            ),
            "late sender",
          );
          assert.equal(late.code, "EPIPE", `a sender after the receiver closed: ${late.message}`);
          assert.throws(() => ch.receiver(), isCode("EPIPE"), "a receiver after the close");
        } finally {
          await killAll(children);
        }
      });
    });
  });
}

/** What `channel/send_until_closed.ts` reports. */
interface SentUntilClosed {
  producer: number;
  sent: number;
  first: { code: string; message: string };
  later: { code: string; message: string }[];
}

/** Messages this process takes from each sender before it closes the channel. */
const BEFORE_CLOSE = 500;
/**
 * The error a send of an attached sender gets once the receiver closed (as ever), by call, on
 * the channel of `name`.
 */
const receiverClosed = (name: string, call: string, tail = "") => ({
  code: "EPIPE",
  message: `ChannelSender.${call} of name ${name}: the receiver closed the channel${tail} (EPIPE)`,
});

// `docs/channel.md`, *Close*: senders learn of the receiver's close from the wake-up check after
// each commit (`rx_waiting` holds `RX_CLOSED`); a send whose message the receiver left unread
// fails, and so does every later one, whichever way it sends.
for (const first of runtimes) {
  const second = other(first);
  test(`the receiver closes while a ${first} and a ${second} sender send as fast as they can: each send from then on fails with EPIPE, every message received was reported sent`, async () => {
    await withChannel(
      "cx-close",
      { capacity: MIXED_CAPACITY, producers: "many" },
      async (name, ch) => {
        const children: Child[] = [];
        const rx = ch.receiver();
        try {
          await withControl(async (ctl, i32) => {
            const senders = [first, second].map((which, producer) =>
              spawn(children, which, "channel/send_until_closed.ts", [name, `${producer}`, ctl])
            );
            await within(Promise.all(senders.map((c) => c.line("ready"))), HANG_MS, "ready");
            Atomics.store(i32, CTL_GO, 1);
            notify(i32, CTL_GO);
            const got = [0, 0];
            const take = (message: Uint8Array) => {
              assert.equal(message.length, 64);
              const producer = message[0];
              const seq = new DataView(message.buffer, message.byteOffset).getUint32(4, true);
              assert.equal(seq, got[producer], `sender ${producer}'s messages in order`);
              got[producer]++;
            };
            while (got[0] < BEFORE_CLOSE || got[1] < BEFORE_CLOSE) {
              const message = rx.recv(HANG_MS);
              assert.ok(message !== null, "no end of stream");
              take(message);
            }
            // Close with the ring drained (as far as the senders let it be): their next sends
            // find room and commit before they can see the close.
            for (let n = 0; n < MIXED_CAPACITY; n++) {
              const message = rx.tryRecv();
              if (message === undefined) break;
              assert.ok(message !== null, "no end of stream");
              take(message);
            }
            rx.close();
            const reports = await Promise.all(
              senders.map((c, i) => finished(c, `sender ${i}`, HANG_MS)),
            );
            for (const [producer, r] of reports.entries()) {
              const report = resultOf<SentUntilClosed>(r, `sender ${producer}`);
              const who = `the ${[first, second][producer]} sender`;
              assert.deepEqual(report.first, receiverClosed(name, "send"), `${who}'s failing send`);
              assert.deepEqual(
                report.later,
                [
                  receiverClosed(name, "send"),
                  receiverClosed(name, "trySend"),
                  receiverClosed(name, "sendMany", "; 0 of the 2 messages were sent, the rest not"),
                  receiverClosed(name, "sendAsync"),
                  receiverClosed(name, "reserve"),
                ],
                `${who}'s send, trySend, sendMany, sendAsync and reserve after that`,
              );
              assert.ok(
                got[producer] <= report.sent,
                `${who} reported ${report.sent} sent, ${got[producer]} were received`,
              );
            }
          });
          assert.throws(() => ch.receiver(), isCode("EPIPE"), "a receiver after the close");
        } finally {
          rx.close();
          await killAll(children);
        }
      },
    );
  });
}
