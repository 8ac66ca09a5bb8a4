/**
 * The two sides of the receiver-kill loops of `channel_cross.test.ts`: a stream of messages, each
 * stamped with its sequence number and a checksum of the rest, and receivers that check every
 * message they get and log what they got in a control segment, so that the parent can kill them
 * anywhere and still tell what was delivered. The control words are in `messages.ts`.
 *
 * Message `seq` ({@linkcode stamped}) is 8 to 600 bytes (most of them small enough for the
 * receive paths that copy and zero the ring in one pass), made from one of 64 templates chosen by
 * `seq`: word 0 is `seq`, word 1 a stamp mixing word 0 with the {@linkcode checksum} of the bytes
 * from 8 on. The sender spends little per message, so the ring stays full and the receivers busy.
 *
 * With many senders (a channel of many senders, and the optional arguments below), word 0 is
 * `seq * STAMPED_SENDERS + sender`, and every {@linkcode BIG_EVERY}th message of each sender is
 * `big` bytes: longer than a record, so sent in fragments that interleave with other senders'.
 *
 * - `send <name> <ctl> [<sender> <big>]`: sends messages `0, 1, ...` until the parent stores 1
 *   into `CTL_STOP`, then closes the sender (the end of the stream), or with many senders
 *   detaches it. Prints `result {sent}`.
 * - `receive <name> <ctl> <index> [<senders> <big>]`: takes the receiver (over a killed one) and
 *   receives with `recvInto` (five times in eight), `recvMany`, `recv` and `recvView` until the
 *   end of the stream. Each message is checked (length, stamp, every byte, and the sequence
 *   number one more than the last this receiver got from its sender), then logged: the first and
 *   last sequence number this receiver got (`CTL_FIRST` and `CTL_LAST` of receiver `index`; with
 *   many senders, of `CTL_OF(index, sender)`). A message that fails the check is stored into
 *   `CTL_BAD` (its sequence number + 1) before the receiver exits with the error. Prints
 *   `ready <pid>` once attached, `result {last}` at the end (with many senders, the last of
 *   each sender).
 *
 * @module
 */

import { args, lib } from "../lib.ts";
import { check, readyThenGo, report } from "./common.ts";
import {
  checksum,
  CTL_BAD,
  CTL_FIRST,
  CTL_LAST,
  CTL_OF,
  CTL_STOP,
  mix,
  STAMPED_SENDERS,
} from "./messages.ts";

/** A payload of `length` bytes made from template `t`, with its words and its checksum. */
function template(t: number, length: number) {
  const out = new Uint8Array(length);
  for (let i = 8; i < out.length; i++) out[i] = (t * 131 + i * 7) & 0xff;
  const words = new Int32Array(out.buffer, 0, out.length >> 2);
  return { bytes: out, words, sum: checksum(out.subarray(8)) };
}

/**
 * The payloads messages are made of: 64 lengths of 8 to 600 bytes, four in five at most 256, with
 * their bytes, their whole 32-bit words, and the checksum of the bytes from 8 on.
 */
const TEMPLATES = Array.from({ length: 64 }, (_, t) => {
  const r = Math.imul(t + 1, 0x9e3779b1) >>> 7;
  return template(t, r % 5 === 0 ? 257 + r % 344 : 8 + r % 249);
});

/** With many senders, message `seq` of each sender is {@linkcode BIG} when `seq % BIG_EVERY` is 7. */
const BIG_EVERY = 8;

const [role, name, ctlName, indexArg] = args;
/** With many senders: how many there are (for a receiver), and the length of a message in fragments. */
const [sendersArg, bigArg] = role === "send" ? [undefined, args[4]] : [args[4], args[5]];
const many = bigArg !== undefined;
const BIG = many ? template(64, Number(bigArg)) : undefined;

/** The template of message `seq`. */
function templateOf(seq: number) {
  return BIG !== undefined && seq % BIG_EVERY === BIG_EVERY - 1 ? BIG : TEMPLATES[seq & 63];
}

/** The stamp of a message of template `t` whose word 0 is `head`. */
function stampOf(t: ReturnType<typeof template>, head: number): number {
  return mix(t.sum, head, 0x57a3) | 0;
}

/**
 * Message `seq` of `sender`: its template's bytes, with word 0 and the stamp in the first two
 * words. The buffer is the template's own, rewritten for each message (the sender sends it
 * before the next).
 */
function stamped(seq: number, sender: number): Uint8Array {
  const t = templateOf(seq);
  const words = new Int32Array(t.bytes.buffer, 0, 2);
  words[0] = many ? seq * STAMPED_SENDERS + sender : seq;
  words[1] = stampOf(t, words[0]);
  return t.bytes;
}

/** The little-endian word at byte `at` of `bytes`. */
function wordAt(bytes: Uint8Array, at: number): number {
  return bytes[at] | bytes[at + 1] << 8 | bytes[at + 2] << 16 | bytes[at + 3] << 24;
}

/**
 * Why the first `len` bytes of `got` (whose whole words `words` views, if it starts 4-aligned)
 * are not message `seq` (undefined if they are): its length, its stamp, and every byte against
 * its template, a word at a time where it can (the check costs the receiver little beside the
 * receive, so that a kill lands in the receive as often as it can).
 */
function wrong(got: Uint8Array, words: Int32Array | undefined, len: number, seq: number) {
  const want = templateOf(seq);
  if (len !== want.bytes.length) return `${len} bytes, not ${want.bytes.length}`;
  if (wordAt(got, 4) !== stampOf(want, wordAt(got, 0))) return "a wrong stamp";
  let i = 8;
  if (words !== undefined) {
    for (; i + 4 <= len; i += 4) if (words[i >> 2] !== want.words[i >> 2]) break;
  }
  for (; i < len; i++) if (got[i] !== want.bytes[i]) return `byte ${i} is ${got[i]}`;
  return undefined;
}

const TIMEOUT_MS = 30_000;
const channel = lib.Channel.open({ name });
const ctl = lib.SharedMemory.open({ name: ctlName });
const ctlWords = new Int32Array(ctl.buffer);

if (role === "send") {
  const sender = many ? Number(indexArg) : 0;
  const tx = channel.sender({ peerCheckMs: 20 });
  let seq = 0;
  // trySend, and a pause of 1 ms when the ring is full: this sender never parks, so receiving
  // never costs the receiver a system call to wake it, and a kill lands inside a receive, not in
  // the kernel. A message in fragments goes by `send`, which waits for room.
  while (Atomics.load(ctlWords, CTL_STOP) === 0) {
    const message = stamped(seq, sender);
    if (message === BIG?.bytes) {
      try {
        tx.send(message, TIMEOUT_MS);
        seq++;
      } catch (err) {
        // The receiver died while this send waited for room: the message is not sent (the
        // receiver that takes over drops what of it went out), and goes again.
        if (!(err instanceof lib.SharedMemoryError && err.code === "ECONNRESET")) throw err;
        await new Promise((resolve) => setTimeout(resolve, 5));
      }
    } else if (tx.trySend(message)) seq++;
    else await new Promise((resolve) => setTimeout(resolve, 1));
  }
  if (many) tx.detach();
  else tx.close();
  report({ sent: seq });
} else {
  check(role === "receive", `bad role ${role}`);
  const index = Number(indexArg);
  const senders = many ? Number(sendersArg) : 1;
  check(senders >= 1 && senders <= STAMPED_SENDERS, `bad sender count ${sendersArg}`);
  const rx = channel.receiver({ peerCheckMs: 20 });
  readyThenGo(undefined);
  const last = Array.from({ length: senders }, () => -1);
  let ended = false;
  // Logged per message: the first and the last sequence number of its sender (the parent counts
  // from them).
  const take = (got: Uint8Array | null, len = got?.length ?? 0, words?: Int32Array) => {
    if (got === null) {
      ended = true;
      return;
    }
    const head = len >= 8 ? wordAt(got, 0) : -1;
    const sender = many && head >= 0 ? head % STAMPED_SENDERS : 0;
    const seq = many && head >= 0 ? (head - sender) / STAMPED_SENDERS : head;
    if (words === undefined && (got.byteOffset & 3) === 0) {
      words = new Int32Array(got.buffer, got.byteOffset, len >> 2);
    }
    const bad = head < 0
      ? `${len} bytes`
      : sender >= senders
      ? `sender ${sender} of ${senders}`
      : wrong(got, words, len, seq) ??
        (last[sender] >= 0 && seq !== last[sender] + 1
          ? `message ${seq} after ${last[sender]} of sender ${sender}`
          : undefined);
    if (bad !== undefined) {
      Atomics.store(ctlWords, CTL_BAD, Math.max(seq, 0) + 1);
      throw new Error(`receiver ${index}, message ${seq}: ${bad}`);
    }
    const at = many ? CTL_OF(index, sender) : index;
    if (last[sender] < 0) Atomics.store(ctlWords, CTL_FIRST(at), seq);
    Atomics.store(ctlWords, CTL_LAST(at), seq);
    last[sender] = seq;
  };
  const into = new Uint8Array(BIG === undefined ? 1024 : BIG.bytes.length);
  const intoWords = new Int32Array(into.buffer);
  // Mostly recvInto, whose copy zeroes the ring as it goes: the longest stretch a receiver spends
  // between announcing what it zeroes and moving `head`.
  for (let round = 0; !ended; round++) {
    switch (round % 8) {
      case 1:
        if (rx.recvMany((m) => take(m), TIMEOUT_MS) === null) ended = true;
        break;
      case 3:
        take(rx.recv(TIMEOUT_MS));
        break;
      case 5:
        take(rx.recvView(TIMEOUT_MS));
        break;
      default: {
        const len = rx.recvInto(into, TIMEOUT_MS);
        take(len === null ? null : into, len ?? 0, intoWords);
      }
    }
  }
  report({ last: many ? last : last[0] });
  rx.close();
}
ctl.close();
channel.close();
