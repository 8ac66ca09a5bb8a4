/**
 * Where a small channel message's time goes, on one thread (`taskset -c 0`): each channel call
 * of the hot path timed in blocks of {@linkcode K} calls (a ring that always has room and a
 * message waiting, so nothing waits), and the pieces those calls are made of timed alone. The
 * report prints them side by side; `bench/README.md` explains the split.
 *
 * @module
 */

import { Buffer } from "node:buffer";
import {
  childCommand,
  each,
  lib,
  median,
  perCall,
  pinned,
  ratios,
  round,
  runJson,
  type Scenario,
  uniqueName,
  whats,
  wheres,
} from "../harness.ts";

/** Messages per timed block: sent in one block, received in the next. */
const K = 256;
const SIZE = 64;
const BLOCKS = 400;
/**
 * The sizes of the `batch_of_<B>` parts: a worker pool's few messages at a time. Each is measured
 * in a process of its own: after the shorter batches in the same process, Node.js ran batches of
 * 16 about a fifth slower than alone, its engine having compiled the paths the shorter ones took.
 */
const SMALL_BATCHES = [2, 4, 8, 16];

/**
 * The other kinds of message a `send_<kind>` part sends, each over the same 64 bytes that the
 * part refills before each send, as `send` refills its plain `Uint8Array`; and a string of 64
 * ASCII characters.
 */
const SENT_KINDS = {
  buffer: "Buffer",
  dataview: "DataView",
  arraybuffer: "ArrayBuffer",
  int32array: "Int32Array",
  string: "string",
};

/** "a" or "an", as `name` is read. */
const article = (name: string) => /^[AEIO]/.test(name) ? "an" : "a";

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
    if (b >= BLOCKS / 4) {
      sendNs.push(((t1 - t0) * 1e6) / K), recvNs.push(((t2 - t1) * 1e6) / K);
    }
  }
  return [round(median(sendNs), 1), round(median(recvNs), 1)];
}

/**
 * What one child measures: a receive of one kind (with the sends before it), the batch calls, or
 * the pieces. Each in a process of its own: in one process, the call measured later ran slower
 * (the engines compile the shared code again as it meets other calls and other channels; see
 * "Processes" in `bench/README.md`).
 */
const PARTS = [
  "recv_into",
  "recv_into_timeout",
  "recv_view",
  "recv_copy",
  "recv_text",
  "batch",
  ...SMALL_BATCHES.map((b) => `batch_of_${b}`),
  ...Object.keys(SENT_KINDS).map((kind) => `send_${kind}`),
  "pieces",
];

function costsChild({ part }: { part: string }): Record<string, number> {
  if (part === "pieces") return piecesOf();
  const name = `/${uniqueName("hot")}`;
  const channel = lib.Channel.create({ name }, { capacity: 256 * 1024 });
  lib.SharedMemory.unlink({ name });
  try {
    const tx = channel.sender();
    const rx = channel.receiver();
    const message = new Uint8Array(SIZE);
    const into = new Uint8Array(SIZE);
    let sum = 0;
    const result = (figures: Record<string, number>) => {
      if (sum === -1) console.error(sum); // keeps every result alive
      return figures;
    };
    if (part === "batch") {
      const batch = Array.from({ length: K }, () => new Uint8Array(SIZE));
      const [sendMany, recvMany] = pairOf(
        () => tx.sendMany(batch),
        () => {
          let n = 0;
          while (n < K) n += rx.recvMany((m) => sum += m[0])!;
        },
      );
      return result({ send_many_per_message: sendMany, recv_many_per_message: recvMany });
    }
    if (part.startsWith("batch_of_")) {
      // A `sendMany` of B messages, then `recvMany` until all B are in, K / B times a block: the
      // send and the receive of each message, where runs are as short as the batches.
      const b = Number(part.slice("batch_of_".length));
      const batch = Array.from({ length: b }, () => new Uint8Array(SIZE));
      const [both] = pairOf(() => {
        for (let i = 0; i < K; i += b) {
          tx.sendMany(batch);
          let n = 0;
          while (n < b) n += rx.recvMany((m) => sum += m[0])!;
        }
      }, () => {});
      return result({ [`${part}_per_message`]: both });
    }
    if (part.startsWith("send_")) {
      // K sends of a message of another kind, then K plain receives: the sends are timed.
      const memory = new ArrayBuffer(SIZE);
      const bytes = new Uint8Array(memory);
      const kinds: Record<string, ArrayBufferView | ArrayBuffer | string> = {
        send_buffer: Buffer.from(memory),
        send_dataview: new DataView(memory),
        send_arraybuffer: memory,
        send_int32array: new Int32Array(memory),
        send_string: "x".repeat(SIZE), // sent as its UTF-8, 64 bytes
      };
      const sent = kinds[part];
      if (sent === undefined) throw new Error(`no part ${part}`);
      const [send] = pairOf(
        () => {
          for (let i = 0; i < K; i++) bytes[0] = i, tx.send(sent);
        },
        () => {
          for (let i = 0; i < K; i++) sum += rx.recvInto(into)!;
        },
      );
      return result({ [part]: send });
    }
    // K sends, then K receives of this kind, timed block by block.
    const receives: Record<string, () => void> = {
      recv_into: () => sum += rx.recvInto(into)!,
      recv_into_timeout: () => sum += rx.recvInto(into, 1000)!,
      recv_view: () => sum += rx.recvView()!.length,
      recv_copy: () => sum += rx.recv()!.length,
      recv_text: () => sum += rx.recvText()!.length, // 64 bytes of ASCII
    };
    const receive = receives[part];
    if (receive === undefined) throw new Error(`no part ${part}`);
    const [send, received] = pairOf(
      () => {
        for (let i = 0; i < K; i++) message[0] = i, tx.send(message);
      },
      () => {
        for (let i = 0; i < K; i++) receive();
      },
    );
    // The sends of the plain recvInto's process stand for `send`.
    return result(part === "recv_into" ? { send, [part]: received } : { [part]: received });
  } finally {
    channel.close();
  }
}

/** The pieces, alone, each in a loop of K over the records of a ring, like the calls. */
function piecesOf(): Record<string, number> {
  const message = new Uint8Array(SIZE);
  const into = new Uint8Array(SIZE);
  let sum = 0;
  // empty_loop: the loop alone; ns per iteration.
  const ring = new Uint8Array(256 * 1024 + 128);
  const i32 = new Int32Array(ring.buffer);
  const words = new Int32Array(into.buffer);
  const at = (i: number) => (i * 72) & 0x3fff8;
  const loops = perCall({
    performance_now: () => {
      for (let i = 0; i < K; i++) sum += performance.now();
    },
    atomics_load: () => {
      for (let i = 0; i < K; i++) sum += Atomics.load(i32, at(i) >> 2);
    },
    atomics_store: () => {
      for (let i = 0; i < K; i++) Atomics.store(i32, at(i) >> 2, i);
    },
    copy_in_set_64: () => {
      for (let i = 0; i < K; i++) ring.set(message, at(i));
    },
    copy_out_loop_64: () => {
      for (let i = 0; i < K; i++) {
        const s = at(i);
        for (let j = 0; j < SIZE; j++) into[j] = ring[s + j];
      }
    },
    // What recvInto runs for a message of up to 256 bytes: word by word, each ring word zeroed
    // as it is read.
    copy_out_words_64: () => {
      for (let i = 0; i < K; i++) {
        const w = (at(i) >> 2) + 2;
        for (let j = 0; j < SIZE >> 2; j++) (words[j] = i32[w + j]), (i32[w + j] = 0);
      }
    },
    copy_out_subarray_set_64: () => {
      for (let i = 0; i < K; i++) {
        into.set(ring.subarray(at(i), at(i) + SIZE));
      }
    },
    zero_72_words: () => {
      for (let i = 0; i < K; i++) {
        const w = at(i) >> 2;
        for (let j = w; j < w + 18; j++) i32[j] = 0;
      }
    },
    zero_72_fill: () => {
      for (let i = 0; i < K; i++) ring.fill(0, at(i), at(i) + 72);
    },
    empty_loop: () => {
      for (let i = 0; i < K; i++) sum += at(i);
    },
  });
  const pieces = Object.fromEntries(
    Object.entries(loops).map(([what, ns]) => [what, round(ns / K, 2)]),
  );
  if (sum === -1) console.error(sum); // keeps every result alive
  return pieces;
}

/** The scenario. */
export const hotpath: Scenario = {
  name: "hotpath",
  method: `One thread on CPU 0, one process per call measured (and one for the pieces), ` +
    `${SIZE} B messages through a 256 KiB ` +
    `ring. Channel calls: ${K} sends timed as one block, then ${K} receives of one kind as ` +
    `the next, ${BLOCKS} blocks, median of the last three quarters, ns per call: send, ` +
    "sendMany (per message, one call per block), recvInto, recvInto with a timeout, " +
    "recvView, recv (a copy), recvMany (per message); and sendMany of B messages then recvMany " +
    `until all B are in, ${K} / B times a block, per message sent and received, B in ` +
    `${SMALL_BATCHES.join(", ")} (each in a process of its own); send of a message of ` +
    "another kind over the same 64 bytes (a Node.js Buffer, a DataView, the ArrayBuffer, an " +
    "Int32Array) and of a 64-character string (each in a process of its own). " +
    "Pieces, each timed alone as a loop of " +
    `${K} like the calls, in interleaved blocks of about 10 ms, ns per iteration (empty_loop: ` +
    "the loop alone): performance.now(), Atomics.load and Atomics.store on an Int32Array, a " +
    "64-byte Uint8Array.set into a ring, 64 bytes copied out byte by byte and by " +
    "subarray()+set(), a 72-byte record zeroed word by word and by fill().",
  run: (ctx, skipped) =>
    each(ctx, skipped, ctx.runtimes, async (rt) => {
      const got: Record<string, number> = {};
      for (const part of ctx.run % 2 ? [...PARTS].reverse() : PARTS) {
        const command = childCommand(rt, "hotpath", "costs", { part });
        Object.assign(got, await runJson<object>(pinned("0", command)));
      }
      return whats({ runtime: rt, size: SIZE }, "ns", got);
    }),
  compare: (ctx) =>
    ratios([
      "ns recv_into_timeout / recv_into = recvInto with a timeout / without",
      "ns recv_many_per_message / recv_into = recvMany per message / recvInto",
      "ns recv_text / recv_into = recvText / recvInto",
      "ns send_many_per_message / send = sendMany per message / send",
      ...Object.entries(SENT_KINDS).map(([kind, name]) =>
        `ns send_${kind} / send = send of ${article(name)} ${name} / of a Uint8Array`
      ),
    ], wheres(ctx.runtimes, [SIZE])),
  children: { costs: costsChild },
};
