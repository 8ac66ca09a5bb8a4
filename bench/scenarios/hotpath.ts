/**
 * Where a small channel message's time goes, on one thread (`taskset -c 0`): each channel call
 * of the hot path timed in blocks of {@linkcode K} calls (a ring that always has room and a
 * message waiting, so nothing waits), and the pieces those calls are made of timed alone. The
 * report prints them side by side; `bench/README.md` explains the split.
 *
 * @module
 */

import {
  childCommand,
  lib,
  median,
  pinned,
  round,
  type Row,
  runJson,
  type Scenario,
  uniqueName,
} from "../harness.ts";

/** Messages per timed block: sent in one block, received in the next. */
const K = 256;
const SIZE = 64;
const BLOCKS = 400;

/** Median ns per call of `send` and of `receive`, each timed over blocks of K calls. */
function pairOf(send: () => void, receive: () => void): [number, number] {
  const sendNs: number[] = [];
  const recvNs: number[] = [];
  for (let b = 0; b < BLOCKS; b++) {
    const t0 = performance.now();
    send();
    const t1 = performance.now();
    receive();
    const t2 = performance.now();
    if (b >= BLOCKS / 4) sendNs.push(((t1 - t0) * 1e6) / K), recvNs.push(((t2 - t1) * 1e6) / K);
  }
  return [round(median(sendNs), 1), round(median(recvNs), 1)];
}

/** Median ns per iteration of `block`, a loop of K, over BLOCKS timed blocks. */
function blockNs(block: () => void): number {
  const ns: number[] = [];
  for (let b = 0; b < BLOCKS; b++) {
    const t0 = performance.now();
    block();
    const t1 = performance.now();
    if (b >= BLOCKS / 4) ns.push(((t1 - t0) * 1e6) / K);
  }
  return round(median(ns), 1);
}

function costsChild(): Record<string, number> {
  const name = `/${uniqueName("hot")}`;
  const channel = lib.Channel.create({ name }, { capacity: 256 * 1024 });
  lib.SharedMemory.unlink({ name });
  try {
    const tx = channel.sender();
    const rx = channel.receiver();
    const message = new Uint8Array(SIZE);
    const into = new Uint8Array(SIZE);
    const batch = Array.from({ length: K }, () => new Uint8Array(SIZE));
    let sum = 0;
    const sendK = () => {
      for (let i = 0; i < K; i++) message[0] = i, tx.send(message);
    };
    const [send, recvInto] = pairOf(sendK, () => {
      for (let i = 0; i < K; i++) sum += rx.recvInto(into)!;
    });
    const [, recvIntoTimeout] = pairOf(sendK, () => {
      for (let i = 0; i < K; i++) sum += rx.recvInto(into, 1000)!;
    });
    const [, recvView] = pairOf(sendK, () => {
      for (let i = 0; i < K; i++) sum += rx.recvView()!.length;
    });
    const [, recv] = pairOf(sendK, () => {
      for (let i = 0; i < K; i++) sum += rx.recv()!.length;
    });
    const [sendMany, recvMany] = pairOf(
      () => tx.sendMany(batch),
      () => {
        let n = 0;
        while (n < K) n += rx.recvMany((m) => sum += m[0])!;
      },
    );
    // The pieces, alone: each a loop of K in one timed block, like the calls above.
    const ring = new Uint8Array(256 * 1024 + 128);
    const i32 = new Int32Array(ring.buffer);
    const at = (i: number) => (i * 72) & 0x3fff8;
    const pieces = {
      performance_now: blockNs(() => {
        for (let i = 0; i < K; i++) sum += performance.now();
      }),
      atomics_load: blockNs(() => {
        for (let i = 0; i < K; i++) sum += Atomics.load(i32, at(i) >> 2);
      }),
      atomics_store: blockNs(() => {
        for (let i = 0; i < K; i++) Atomics.store(i32, at(i) >> 2, i);
      }),
      copy_in_set_64: blockNs(() => {
        for (let i = 0; i < K; i++) ring.set(message, at(i));
      }),
      copy_out_loop_64: blockNs(() => {
        for (let i = 0; i < K; i++) {
          const s = at(i);
          for (let j = 0; j < SIZE; j++) into[j] = ring[s + j];
        }
      }),
      copy_out_subarray_set_64: blockNs(() => {
        for (let i = 0; i < K; i++) {
          const s = at(i);
          into.set(ring.subarray(s, s + SIZE));
        }
      }),
      zero_72_words: blockNs(() => {
        for (let i = 0; i < K; i++) {
          const w = at(i) >> 2;
          for (let j = w; j < w + 18; j++) i32[j] = 0;
        }
      }),
      zero_72_fill: blockNs(() => {
        for (let i = 0; i < K; i++) {
          const s = at(i);
          ring.fill(0, s, s + 72);
        }
      }),
      empty_loop: blockNs(() => {
        for (let i = 0; i < K; i++) sum += at(i);
      }),
    };
    if (sum === -1) console.error(sum); // keeps every result alive
    return {
      send,
      send_many_per_message: sendMany,
      recv_into: recvInto,
      recv_into_timeout: recvIntoTimeout,
      recv_view: recvView,
      recv_copy: recv,
      recv_many_per_message: recvMany,
      ...pieces,
    };
  } finally {
    channel.close();
  }
}

/** The scenario. */
export const hotpath: Scenario = {
  name: "hotpath",
  method: `One thread on CPU 0, one process per runtime, ${SIZE} B messages through a 256 KiB ` +
    `ring. Channel calls: ${K} sends timed as one block, then ${K} receives of one kind as ` +
    `the next, ${BLOCKS} blocks, median of the last three quarters, ns per call: send, ` +
    "sendMany (per message, one call per block), recvInto, recvInto with a timeout, " +
    "recvView, recv (a copy), recvMany (per message). Pieces, each timed alone the same " +
    "way, a loop of the piece per block (empty_loop: the loop alone): performance.now(), Atomics.load and Atomics.store on an Int32Array, a " +
    "64-byte Uint8Array.set into a ring, 64 bytes copied out byte by byte and by " +
    "subarray()+set(), a 72-byte record zeroed word by word and by fill().",
  async run(ctx, skipped) {
    const out: Row[] = [];
    for (const rt of ctx.runtimes) {
      try {
        const got = await runJson<Record<string, number>>(
          pinned("0", childCommand(rt, "hotpath", "costs")),
        );
        for (const [what, value] of Object.entries(got)) {
          out.push({ runtime: rt, what, size: SIZE, metric: "ns", value });
        }
      } catch (err) {
        skipped(rt, err);
      }
    }
    return out;
  },
  compare: (ctx) =>
    ctx.runtimes.flatMap((rt) => [
      {
        label: "recvInto with a timeout / without",
        num: { runtime: rt, what: "recv_into_timeout", size: SIZE, metric: "ns" },
        den: { runtime: rt, what: "recv_into", size: SIZE, metric: "ns" },
      },
      {
        label: "recvMany per message / recvInto",
        num: { runtime: rt, what: "recv_many_per_message", size: SIZE, metric: "ns" },
        den: { runtime: rt, what: "recv_into", size: SIZE, metric: "ns" },
      },
      {
        label: "sendMany per message / send",
        num: { runtime: rt, what: "send_many_per_message", size: SIZE, metric: "ns" },
        den: { runtime: rt, what: "send", size: SIZE, metric: "ns" },
      },
    ]),
  children: { costs: costsChild },
};
