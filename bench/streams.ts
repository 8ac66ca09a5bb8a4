/**
 * Pairs of processes: a measuring process and the peer it starts with the runtime's own process
 * API (so that pipes and IPC join exactly these two processes), over one transport each: the
 * library's channel or its wait/notify, or what Deno, Bun and Node users have today (the runtime's
 * Unix-domain stream socket, a child's stdio pipes, Bun's and Node's IPC channel, with length-prefixed
 * frames). Every transport is driven by the same stream and round-trip loops; each one only says
 * how a message is sent, received and echoed.
 *
 * Every message carries its sequence number in its first 4 bytes and a byte derived from it in
 * its last byte, and every receiver checks both: a path that loses, repeats, reorders or
 * truncates messages fails instead of looking fast.
 *
 * @module
 */

import { spawn } from "node:child_process";
import { writeSync } from "node:fs";
import { connect, createServer } from "node:net";
import process from "node:process";
import {
  childCommand,
  envInt,
  type Latency,
  leftovers,
  lib,
  pinned,
  type Placement,
  PLACEMENTS,
  round,
  roundTrips,
  type Row,
  rows,
  runJson,
  type Runtime,
  runtime,
  type TripBudget,
  uniqueName,
  type Usage,
  usage,
} from "./harness.ts";

// deno-lint-ignore no-explicit-any
type Any = any;
const Bun: Any = (globalThis as Any).Bun;

/** A stream or round trips between the measuring process and its peer, over one transport. */
export interface Spec {
  transport: string;
  /** Payload bytes per message (at least 5). */
  size: number;
  /** The one-way stream (peer to measuring side), or null. */
  stream: { warmupMs: number; measureMs: number } | null;
  /** The round trips, or null. */
  trips: TripBudget | null;
  /** Ring bytes of the channel transports: the stream's channel, each round-trip channel. */
  capacity: [number, number];
  /** `taskset -c` list of the peer. */
  peerCpu: string;
  /** A unique base name for segments and the socket path. */
  name: string;
}

/** What the measuring process prints for one pair. */
export interface PairResult {
  /** Messages/s counted by the receiver after the warm-up. */
  msgs_per_s?: number;
  /** CPU ns both processes used per message of the stream (every thread). */
  cpu_ns_per_msg?: number;
  /** Voluntary context switches of both processes per message of the stream. */
  vcs_per_msg?: number;
  latency?: Latency;
}

/** Writes `seq` into the first 4 bytes and `seq ^ 0x5a` into the last byte of `m`. */
export function stamp(m: Uint8Array, seq: number): void {
  m[0] = seq;
  m[1] = seq >>> 8;
  m[2] = seq >>> 16;
  m[3] = seq >>> 24;
  m[m.length - 1] = seq ^ 0x5a;
}

/** Throws unless `m` is `size` bytes long and carries the stamp of `seq`. */
export function check(what: string, m: Uint8Array | null, seq: number, size: number): void {
  const got = m && ((m[0] | (m[1] << 8) | (m[2] << 16) | (m[3] << 24)) >>> 0);
  if (m && m.length === size && got === seq >>> 0 && m[size - 1] === ((seq ^ 0x5a) & 0xff)) return;
  throw new Error(
    `${what}: expected message ${seq} of ${size} bytes, got ` +
      (m === null ? "the end" : `${m.length} bytes, seq ${got}`),
  );
}

/**
 * Counts a stream as the receiver sees it: the clock starts at the first message, the first
 * `warmupMs` are not counted, then messages are counted until {@linkcode finish}. What both
 * processes used ({@linkcode usage}) is read when counting starts and again half of
 * `measureMs` later, while the peer still sends. Call {@linkcode add} every
 * {@linkcode tickEvery} messages, not for each one.
 */
export class Meter {
  #first = -1;
  #start = -1;
  #counted = 0;
  #all = 0;
  /** What each process used when counting started (or at the first tick), half-way, the count. */
  #used: [Usage[], Usage[]?, number?] = [[]];
  constructor(readonly stream: NonNullable<Spec["stream"]>, readonly pids: number[]) {}

  #sample = () => this.pids.map((pid) => usage(pid));

  /** `n` more messages arrived since the last call. */
  add(n: number): void {
    const now = performance.now();
    if (this.#first < 0) (this.#first = now), (this.#used = [this.#sample()]);
    else this.#all += n;
    if (this.#start < 0) {
      if (now - this.#first >= this.stream.warmupMs) {
        (this.#start = now), (this.#used = [this.#sample()]);
      }
    } else {
      this.#counted += n;
      if (this.#used.length === 1 && now - this.#start >= this.stream.measureMs / 2) {
        this.#used.push(this.#sample(), this.#counted);
      }
    }
  }

  /**
   * Messages/s and the cost per message, with `n` last messages not yet added. A stream that
   * ended within its warm-up (slow messages on a busy machine) is counted from its first tick
   * instead; one that ended before half of `measureMs` (the peer stops on its own clock) has its
   * cost up to now, if both processes are still there.
   */
  finish(n: number): PairResult {
    this.add(n);
    const [from, count] = this.#counted ? [this.#start, this.#counted] : [this.#first, this.#all];
    if (!count) throw new Error("the stream ended after one message");
    const out: PairResult = { msgs_per_s: Math.round(count / ((performance.now() - from) / 1e3)) };
    const [u0, u1 = this.#sample(), msgs = count] = this.#used;
    if (u1.every((u, i) => u.cpu > u0[i].cpu)) {
      const sum = (f: (u: Usage, i: number) => number) => u1.reduce((t, u, i) => t + f(u, i), 0);
      out.cpu_ns_per_msg = round(sum((u, i) => u.cpu - u0[i].cpu) / msgs, 1);
      out.vcs_per_msg = round(sum((u, i) => u.vcs - u0[i].vcs) / msgs, 4);
    }
    return out;
  }
}

/**
 * Messages between two {@linkcode Meter.add} calls or a sender's looks at the clock: one per MiB
 * of payload, at most 1,024 (one for each 1 MiB message). The Rust ring's pair reads its clock
 * about as seldom (its receiver every 1,024 messages once counting, its sender every 4 MiB), and a
 * clock read costs a runtime 40-110 ns (`performance_now` in the hot path's table): read once per
 * 64 KiB message, as this did before, it was 6-15% of what a zero-copy message costs the
 * receiver, work the Rust ring's receiver did not do.
 */
export const tickEvery = (size: number) => Math.max(1, Math.min(1024, (1 << 20) / size | 0));

/** Messages per `sendMany` of the `channel_batch` pairs: 64 KiB of payload, at most 256. */
const batchOf = (size: number) => Math.max(1, Math.min(256, (64 << 10) / size | 0));

const END = 0xffff_ffff;
const endFrame = () => new Uint8Array([0xff, 0xff, 0xff, 0xff]);

/**
 * Splits a byte stream of frames (a 4-byte little-endian length, then the payload) into
 * messages. A frame that arrives whole in one chunk is handed on as a view of the chunk (no
 * copy: the best case for the stream transports); one split across chunks is put together first.
 */
class FrameParser {
  onMessage: (m: Uint8Array) => void = () => {};
  onEnd: () => void = () => {};
  #head = new Uint8Array(4);
  #headHave = 0;
  #body: Uint8Array | null = null;
  #bodyHave = 0;

  push(chunk: Uint8Array): void {
    for (let i = 0; i < chunk.length;) {
      if (this.#body !== null) {
        const take = Math.min(this.#body.length - this.#bodyHave, chunk.length - i);
        this.#body.set(chunk.subarray(i, i + take), this.#bodyHave);
        this.#bodyHave += take;
        i += take;
        if (this.#bodyHave === this.#body.length) {
          const body = this.#body;
          this.#body = null;
          this.onMessage(body);
        }
        continue;
      }
      while (this.#headHave < 4 && i < chunk.length) this.#head[this.#headHave++] = chunk[i++];
      if (this.#headHave < 4) return;
      this.#headHave = 0;
      const h = this.#head;
      const len = (h[0] | (h[1] << 8) | (h[2] << 16) | (h[3] << 24)) >>> 0;
      if (len === END) this.onEnd();
      else if (chunk.length - i >= len) {
        this.onMessage(chunk.subarray(i, i + len));
        i += len;
      } else {
        this.#body = new Uint8Array(len);
        this.#bodyHave = 0;
      }
    }
  }
}

// ---- byte streams -------------------------------------------------------------------------------

/**
 * A byte stream of frames over one runtime's socket or stdio API. Incoming chunks go straight
 * into the parser, whether the runtime pushes them (callbacks) or they are pulled ({@linkcode
 * pump}); `write` is set per runtime.
 */
class Conn {
  readonly parser = new FrameParser();
  #waiter: { done: () => boolean; resolve: () => void; reject: (e: Error) => void } | null = null;
  #drained: (() => void) | null = null;
  #closed = false;
  /** Writes all of `bytes`; a Promise only when it had to wait. */
  write: (bytes: Uint8Array) => Promise<void> | void = () => {};
  end: () => void = () => {};

  data(chunk: Uint8Array): void {
    this.parser.push(chunk);
    const w = this.#waiter;
    if (w?.done()) (this.#waiter = null), w.resolve();
  }
  drain(): void {
    const d = this.#drained;
    this.#drained = null;
    d?.();
  }
  closed(): void {
    this.#closed = true;
    this.#waiter?.reject(new Error("the stream ended early"));
    this.#waiter = null;
    this.drain();
  }
  /** Feeds chunks to the parser until `done()` is true; rejects at an early end. */
  readUntil(done: () => boolean): Promise<void> {
    if (done()) return Promise.resolve();
    if (this.#closed) return Promise.reject(new Error("the stream ended early"));
    return new Promise((resolve, reject) => (this.#waiter = { done, resolve, reject }));
  }
  /** Feeds what `read` returns to the parser until it returns null (pull APIs). */
  pump(read: () => Promise<Uint8Array | null>): this {
    (async () => {
      for (let chunk; (chunk = await read().catch(() => null)) !== null;) this.data(chunk);
      this.closed();
    })();
    return this;
  }
  /**
   * `write` over `put`, which writes and returns how much was taken, the rest being written
   * again on drain (Bun's `socket.write` silently drops what does not fit), or -1 when all was
   * taken but the writer must wait for drain (Node).
   */
  putter(put: (bytes: Uint8Array) => number): this {
    this.write = (bytes) => {
      const n = put(bytes);
      if (n < 0) return new Promise<void>((resolve) => (this.#drained = resolve));
      if (n < bytes.length) return this.#rest(bytes.subarray(n), put);
    };
    return this;
  }
  async #rest(rest: Uint8Array, put: (bytes: Uint8Array) => number): Promise<void> {
    while (rest.length > 0) {
      if (this.#closed) throw new Error("the stream closed while writing");
      await new Promise<void>((resolve) => (this.#drained = resolve));
      rest = rest.subarray(put(rest));
    }
  }
  /** Handlers for Bun.listen / Bun.connect. */
  bun(open?: () => void) {
    return {
      open: (socket: Any) => {
        this.putter((b) => Math.max(0, socket.write(b)));
        this.end = () => socket.end();
        open?.();
      },
      data: (_: Any, chunk: Uint8Array) => this.data(chunk),
      drain: () => this.drain(),
      close: () => this.closed(),
      error: (_: Any, err: unknown) => console.error(`[bench] socket error: ${err}`),
    };
  }
  /**
   * Wires Node streams: a `net.Socket`, or a child's stdout and stdin (its own stdin and
   * stdout). Node's `write` takes everything, keeping a reference to what the kernel did not
   * take yet, so it gets a copy (the writers reuse their buffer); it only asks to wait for drain.
   */
  node(input: Any, output: Any = input): this {
    input.on("data", (chunk: Uint8Array) => this.data(chunk));
    input.on("close", () => this.closed());
    output.on("drain", () => this.drain());
    this.putter((b) => (output.write(b.slice()) ? b.length : -1));
    this.end = () => output.end();
    return this;
  }
  /** Wires a Deno.Conn. */
  deno(conn: Deno.Conn): this {
    this.write = async (bytes) => {
      for (let put = 0; put < bytes.length;) put += await conn.write(bytes.subarray(put));
    };
    this.end = () => conn.close();
    return this.pump(pullFrom((b) => conn.read(b)));
  }
}

/** Chunks of a `read(buffer)` API (Deno's Conn and stdin), into one reused buffer. */
function pullFrom(read: (into: Uint8Array) => Promise<number | null>) {
  const buffer = new Uint8Array(256 << 10);
  return async () => {
    const n = await read(buffer);
    return n === null ? null : buffer.subarray(0, n);
  };
}

/** Chunks of a ReadableStream (a child's stdout, Bun's stdin). */
function readFrom(stream: ReadableStream<Uint8Array>) {
  const reader = stream.getReader();
  return async () => {
    const { value, done } = await reader.read();
    return done ? null : value;
  };
}

/**
 * Writes all of `bytes` to file descriptor `fd`, which Deno and Bun leave blocking. (Node makes
 * its stdio non-blocking as soon as `node:process` is imported: `writeSync` would fail with
 * EAGAIN there, so Node writes through `process.stdout` as its users do.)
 */
function fdWriter(fd: number): (bytes: Uint8Array) => void {
  return (bytes) => {
    for (let put = 0; put < bytes.length;) put += writeSync(fd, bytes, put, bytes.length - put);
  };
}

// ---- the peer process -----------------------------------------------------------------------------

/** The peer process the measuring process started. */
export interface Peer {
  pid: number;
  exited: Promise<number>;
  send?: (message: unknown) => void;
  kill(): void;
}

/**
 * Starts the peer of `spec` under `taskset -c spec.peerCpu` with this runtime's process API,
 * its stdin and stdout wired to `pipes` when given.
 */
function startPeer(
  spec: Spec,
  options: { pipes?: Conn; ipc?: (m: Any) => void; serialization?: string } = {},
): Peer {
  const command = pinned(spec.peerCpu, childCommand(runtime, "channel", "peer", spec));
  const c = options.pipes;
  const stdio = c ? "pipe" : "ignore";
  if (runtime === "bun") {
    const ipc = options.ipc ? { ipc: options.ipc, serialization: options.serialization } : {};
    const proc = Bun.spawn(command, { stdin: stdio, stdout: stdio, stderr: "inherit", ...ipc });
    if (c) {
      c.pump(readFrom(proc.stdout));
      c.write = (bytes) => {
        proc.stdin.write(bytes);
        const flushed = proc.stdin.flush();
        if (flushed?.then) return flushed.then(() => {});
      };
    }
    return {
      pid: proc.pid,
      exited: proc.exited,
      send: (m) => proc.send(m),
      kill: () => proc.kill(9),
    };
  }
  if (runtime === "deno") {
    if (options.ipc) throw new Error("deno has no IPC channel to a child");
    const child = new Deno.Command(command[0], {
      args: command.slice(1),
      stdin: c ? "piped" : "null",
      stdout: c ? "piped" : "null",
      stderr: "inherit",
    }).spawn();
    if (c) {
      const writer = child.stdin.getWriter();
      c.pump(readFrom(child.stdout)).write = (bytes) => writer.write(bytes);
    }
    const kill = () => {
      try {
        child.kill("SIGKILL");
      } catch {
        // already gone
      }
    };
    return { pid: child.pid, exited: child.status.then((s) => s.code), kill };
  }
  // Node.js: node:child_process, with its IPC channel when asked (what `fork` sets up).
  const child = spawn(command[0], command.slice(1), {
    stdio: options.ipc ? [stdio, stdio, "inherit", "ipc"] : [stdio, stdio, "inherit"],
    serialization: options.serialization as "json" | "advanced" | undefined,
  });
  if (options.ipc) child.on("message", options.ipc);
  if (c) c.node(child.stdout, child.stdin);
  return {
    pid: child.pid!,
    exited: new Promise((resolve) => child.on("close", (code) => resolve(code ?? -1))),
    send: (m) => void child.send(m as Parameters<typeof child.send>[0]),
    kill: () => child.kill("SIGKILL"),
  };
}

/** Waits for the peer's exit (killing it after 10 s); throws unless it exited with 0. */
async function peerDone(peer: Peer): Promise<void> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const code = await Promise.race([
    peer.exited,
    new Promise<number>((resolve) => (timer = setTimeout(() => resolve(-1), 10_000))),
  ]);
  clearTimeout(timer);
  if (code === -1) peer.kill();
  if (code !== 0) throw new Error(`the peer exited with ${code}`);
}

/** Rejects if the peer exits before it connects (else never settles). */
function failedFirst(peer: Peer): Promise<never> {
  const failed = peer.exited.then((code): never => {
    throw new Error(`the peer exited with ${code} before connecting`);
  });
  failed.catch(() => {});
  return failed;
}

// ---- the two sides of each transport --------------------------------------------------------------

/** The measuring side of one transport. */
interface Side {
  peer: Peer;
  /** Receives the stream, handing each message to `take` (null: the transport checked it). */
  stream(take: (m: Uint8Array | null) => void): Promise<void> | void;
  /** One round trip of message `i`, checked. */
  trip(i: number): Promise<void> | void;
  /** Tells the peer that everything is done. */
  end(): Promise<void> | void;
  close(): void;
}

/** The peer side of one transport. */
interface PeerSide {
  /** Sends the message(s) from `seq` on; how many it sent (0: none yet, call again). */
  send(seq: number): number | Promise<number>;
  /** Ends the stream. */
  endStream(): Promise<void> | void;
  /** Echoes round trips until the measuring side ends. */
  echo(): Promise<void> | void;
  close(): void;
}

const socketPath = (spec: Spec) => `/tmp/${spec.name}.sock`;
const ids = (spec: Spec) => ["d", "p", "q"].map((s) => `/${spec.name}-${s}`);

/** The measuring side of a socket or stdio pair: it listens, or starts a child with pipes. */
async function streamSide(spec: Spec): Promise<Side> {
  const { size } = spec;
  const c = new Conn();
  let peer: Peer;
  if (spec.transport === "stdio") peer = startPeer(spec, { pipes: c });
  else if (runtime === "deno") {
    const listener = Deno.listen({ transport: "unix", path: socketPath(spec) });
    peer = startPeer(spec);
    c.deno(await Promise.race([listener.accept(), failedFirst(peer)]));
    listener.close();
  } else {
    let stop: () => void;
    const open = new Promise<void>((opened) => {
      if (runtime === "bun") {
        const server = Bun.listen({ unix: socketPath(spec), socket: c.bun(opened) });
        stop = () => server.stop(true);
      } else {
        const server = createServer((socket) => (c.node(socket), opened()));
        stop = () => server.close();
        server.listen(socketPath(spec));
      }
    });
    peer = startPeer(spec);
    await Promise.race([open, failedFirst(peer)]);
    const end = c.end;
    c.end = () => (end(), stop());
  }
  const out = new Uint8Array(4 + size);
  new DataView(out.buffer).setUint32(0, size, true);
  let [expect, got] = [0, false];
  const echoed = (m: Uint8Array) => (check(`${spec.transport} echo`, m, expect, size), got = true);
  return {
    peer,
    async stream(take) {
      let ended = false;
      c.parser.onMessage = take;
      c.parser.onEnd = () => (ended = true);
      await c.readUntil(() => ended);
    },
    async trip(i) {
      stamp(out.subarray(4), expect = i);
      got = false;
      c.parser.onMessage = echoed;
      await c.write(out);
      await c.readUntil(() => got);
    },
    end: () => c.write(endFrame()),
    close: () => c.end(),
  };
}

/** The peer of a socket or stdio pair: it connects, or uses its own stdin and stdout. */
async function streamPeer(spec: Spec): Promise<PeerSide> {
  const { size } = spec;
  const c = new Conn();
  if (spec.transport === "stdio") {
    if (runtime === "deno") c.pump(pullFrom((b) => Deno.stdin.read(b))).write = fdWriter(1);
    else if (runtime === "bun") c.pump(readFrom(Bun.stdin.stream())).write = fdWriter(1);
    else c.node(process.stdin, process.stdout).end = () => {}; // Node's stdout cannot be ended
  } else if (runtime === "deno") {
    c.deno(await Deno.connect({ transport: "unix", path: socketPath(spec) }));
  } else if (runtime === "bun") await Bun.connect({ unix: socketPath(spec), socket: c.bun() });
  else await new Promise<void>((resolve) => c.node(connect(socketPath(spec), resolve)));
  // socket_packed: as many frames as fit in each 64 KiB write; otherwise one frame per write.
  const per = spec.transport === "socket_packed" ? Math.max(1, (64 << 10) / (4 + size) | 0) : 1;
  const buffer = new Uint8Array(per * (4 + size));
  const payloads = Array.from({ length: per }, (_, k) => {
    new DataView(buffer.buffer).setUint32(k * (4 + size), size, true);
    return buffer.subarray(k * (4 + size) + 4, (k + 1) * (4 + size));
  });
  return {
    send(seq) {
      for (const p of payloads) stamp(p, seq++);
      const w = c.write(buffer);
      return w ? w.then(() => per) : per;
    },
    endStream: () => c.write(endFrame()),
    async echo() {
      const echo = new Uint8Array(4 + size);
      new DataView(echo.buffer).setUint32(0, size, true);
      let [got, ended] = [false, false];
      c.parser.onMessage = (m) => (echo.set(m, 4), got = true);
      c.parser.onEnd = () => (ended = true);
      for (;;) {
        await c.readUntil(() => got || ended);
        if (!got) break;
        got = false;
        await c.write(echo);
      }
    },
    close: () => c.end(),
  };
}

/** IPC credit window: messages in flight at most (`send()` never pushes back). */
const ipcWindow = (size: number) => Math.max(4, Math.min(16384, (8 << 20) / size | 0));

/**
 * The measuring side of an IPC pair (`ipc_json` or `ipc_advanced`), in Bun or Node.js. A json
 * message carries a string of `size` characters, checked for its sequence number and length.
 */
function ipcSide(spec: Spec): Side {
  const { size } = spec;
  const json = spec.transport === "ipc_json";
  let handler: (m: Any) => void = () => {};
  const peer = startPeer(spec, {
    ipc: (m) => handler(m),
    serialization: json ? "json" : "advanced",
  });
  const payload = (m: Any, seq: number): Uint8Array | null => {
    if (m?.s !== seq || (json && m.d?.length !== size)) {
      throw new Error(`ipc: expected message ${seq}, got ${m?.s}`);
    }
    return json ? null : m.d;
  };
  const [text, bytes] = ["x".repeat(size), new Uint8Array(size)];
  return {
    peer,
    stream: (take) =>
      new Promise<void>((resolve, reject) => {
        const ackEvery = Math.max(1, ipcWindow(size) >> 2);
        let seq = 0;
        handler = (m) => {
          if (m?.end) return resolve();
          try {
            take(payload(m, seq));
          } catch (err) {
            return reject(err);
          }
          if (++seq % ackEvery === 0) peer.send!({ ack: seq });
        };
      }),
    async trip(i) {
      const back = new Promise<Any>((resolve) => (handler = resolve));
      if (!json) stamp(bytes, i);
      peer.send!({ s: i, d: json ? text : bytes });
      const m = payload(await back, i);
      if (m) check("ipc echo", m, i, size);
    },
    end: () => peer.send!({ bye: true }),
    close() {},
  };
}

/** The peer of an IPC pair: sends the stream within the credit window, echoes every message. */
function ipcPeer(spec: Spec): PeerSide {
  const { size } = spec;
  const send = (m: unknown) => void process.send!(m);
  let acked = 0;
  let wake: (() => void) | null = null;
  let bye!: () => void;
  const done = new Promise<void>((resolve) => (bye = resolve));
  process.on("message", (m: Any) => {
    if (typeof m?.ack === "number") (acked = m.ack), wake?.();
    else if (typeof m?.s === "number") send(m);
    else if (m?.bye) bye();
  });
  const window = ipcWindow(size);
  const [text, bytes] = ["x".repeat(size), new Uint8Array(size)];
  return {
    send(seq) {
      if (seq - acked >= window) return new Promise<number>((resolve) => (wake = () => resolve(0)));
      if (spec.transport === "ipc_json") send({ s: seq, d: text });
      else stamp(bytes, seq), send({ s: seq, d: bytes });
      return 1;
    },
    endStream: () => send({ end: true }),
    echo: () => done,
    close() {},
  };
}

/** Endpoint options: round trips park at once (`spin: 0`) except in `channel_spin`. */
const tripOptions = (spec: Spec) => (spec.transport === "channel_spin" ? {} : { spin: 0 });

/**
 * `wait` options of both sides of a wait/notify pair: a fixed spin first in `futex_spin`, a
 * learned one in `futex_adaptive`, none (park at once) otherwise.
 */
const waitOptions = (spec: Spec) =>
  spec.transport === "futex_spin"
    ? { spin: SPINS }
    : spec.transport === "futex_adaptive"
    ? { spin: "adaptive" as const }
    : undefined;

/**
 * The measuring side of a channel pair: it makes the channels, receives the stream (`recvInto`
 * into one reused buffer, with a timeout once the stream runs in `channel_timeout`; `recvView`
 * in `channel_zc*`; `recvMany` in `channel_batch`) and sends the round trips.
 */
function channelSide(spec: Spec): Side {
  const { Channel } = lib;
  const { size, transport } = spec;
  const [d, p, q] = ids(spec);
  const [data, ping, pong] = [
    spec.stream && Channel.create({ name: d }, { capacity: spec.capacity[0] }),
    spec.trips && Channel.create({ name: p }, { capacity: spec.capacity[1] }),
    spec.trips && Channel.create({ name: q }, { capacity: spec.capacity[1] }),
  ];
  const rx = data?.receiver();
  const [tx, back] = [ping?.sender(tripOptions(spec)), pong?.receiver(tripOptions(spec))];
  const message = new Uint8Array(size);
  const into = new Uint8Array(size);
  return {
    peer: startPeer(spec),
    stream(take) {
      // channel_timeout: the same timeout on every receive, the first (which waits for the peer
      // to start, seconds on a loaded machine) included. In Deno a loop that passed none to the
      // first receive and a number to every later one ran about a fifth slower, with twice the
      // context switches on one core: the library's steps are the same, the engine runs them
      // slower.
      const timeout = transport === "channel_timeout" ? 20_000 : undefined;
      const zeroCopy = transport.startsWith("channel_zc");
      const next = () =>
        zeroCopy ? rx!.recvView() : rx!.recvInto(into, timeout) === null ? null : into;
      if (transport === "channel_batch") { while (rx!.recvMany(take) !== null); }
      else for (let m = next(); m !== null; m = next()) take(m);
      rx!.close();
    },
    trip(i) {
      stamp(message, i);
      tx!.send(message);
      check("channel echo", back!.recv(), i, size);
    },
    end: () => tx?.close(),
    close() {
      for (const ch of [data, ping, pong]) if (ch) ch.close(), ch.unlink();
    },
  };
}

/**
 * The peer of a channel pair: `send` of one reused buffer, `sendMany` of a batch
 * (`channel_batch`), or `reserve` + stamp in place + `commit` (`channel_zc`, which touches the
 * first and last bytes only, as native_ring --zero-copy does; `channel_zc_fill` writes every byte
 * first, as a producer building the message would); then echoes round trips.
 */
function channelPeer(spec: Spec): PeerSide {
  const { Channel } = lib;
  const { size, transport } = spec;
  const [d, p, q] = ids(spec);
  const data = spec.stream && Channel.open({ name: d }, { timeoutMs: 10_000 });
  const tx = data && data.sender();
  const payload = new Uint8Array(size).fill(0x33);
  const batch = Array.from({ length: batchOf(size) }, () => new Uint8Array(size).fill(0x33));
  const fill = transport === "channel_zc_fill";
  const sends: Record<string, (seq: number) => number> = {
    channel_batch(seq) {
      for (const m of batch) stamp(m, seq++);
      tx!.sendMany(batch);
      return batch.length;
    },
    channel_zc(seq) {
      const slot = tx!.reserve(size);
      if (fill) slot.fill(seq);
      stamp(slot, seq);
      tx!.commit();
      return 1;
    },
  };
  return {
    send: sends[transport.replace("_fill", "")] ??
      ((seq) => (stamp(payload, seq), tx!.send(payload), 1)),
    endStream: () => tx!.close(),
    echo() {
      if (!spec.trips) return;
      using ping = Channel.open({ name: p }, { timeoutMs: 10_000 });
      using pong = Channel.open({ name: q }, { timeoutMs: 10_000 });
      const rx = ping.receiver(tripOptions(spec));
      const echo = pong.sender(tripOptions(spec));
      for (let m = rx.recv(); m !== null; m = rx.recv()) echo.send(m);
      echo.close();
    },
    close: () => data && data.close(),
  };
}

/** The spin count of `futex_spin`, as the Rust side's default. */
const SPINS = 256;
// Words of the futex ping-pong segment; STOP in PING ends the echo.
const [PING, PONG, STOP] = [0, 1, -1];

/**
 * The measuring side of a wait/notify pair over one 4 KiB segment: it stores and notifies PING,
 * then waits for PONG (`futex_park`: `wait` parking at once; `futex_spin`: `wait` with
 * `{ spin: SPINS }`; `futex_adaptive`: `wait` with `{ spin: "adaptive" }`; `futex_async`:
 * `waitAsync`).
 */
function futexSide(spec: Spec): Side {
  const name = ids(spec)[0];
  const shm = lib.SharedMemory.create({ name }, 4096);
  const v = new Int32Array(shm.buffer, 0, 16);
  const options = waitOptions(spec);
  const async = spec.transport === "futex_async";
  return {
    peer: startPeer(spec),
    stream: () => {},
    // Synchronous for `wait`, as a user writes a blocking loop: a Promise per round trip would
    // add a microtask turn that the Rust ping-pong does not have.
    trip: async
      ? async (i) => {
        Atomics.store(v, PING, i + 1);
        lib.notify(v, PING, 1);
        for (let now = Atomics.load(v, PONG); now !== i + 1; now = Atomics.load(v, PONG)) {
          await lib.waitAsync(v, PONG, now);
        }
      }
      : (i) => {
        Atomics.store(v, PING, i + 1);
        lib.notify(v, PING, 1);
        for (let now = Atomics.load(v, PONG); now !== i + 1; now = Atomics.load(v, PONG)) {
          lib.wait(v, PONG, now, undefined, options);
        }
      },
    end: () => void (Atomics.store(v, PING, STOP), lib.notify(v, PING)),
    close: () => (shm.close(), lib.SharedMemory.unlink({ name })),
  };
}

/** The echo side of a wait/notify pair: answers every PING in PONG until STOP. */
function futexPeer(spec: Spec): PeerSide {
  const shm = lib.SharedMemory.open({ name: ids(spec)[0] });
  const v = new Int32Array(shm.buffer, 0, 16);
  const options = waitOptions(spec);
  return {
    send: () => 0,
    endStream() {},
    echo() {
      for (let last = 0, now; (now = Atomics.load(v, PING)) !== STOP;) {
        if (now === last) lib.wait(v, PING, last, undefined, options);
        else (last = now), Atomics.store(v, PONG, now), lib.notify(v, PONG, 1);
      }
    },
    close: () => shm.close(),
  };
}

/** The two sides of each kind of transport, by the start of its name (`stream`: the rest). */
/** A value, or the Promise of one. */
type MaybeAsync<T> = T | Promise<T>;
const KINDS: Record<string, [(s: Spec) => MaybeAsync<Side>, (s: Spec) => MaybeAsync<PeerSide>]> = {
  channel: [channelSide, channelPeer],
  ipc: [ipcSide, ipcPeer],
  futex: [futexSide, futexPeer],
  stream: [streamSide, streamPeer],
};
const kind = (spec: Spec) => KINDS[/^(channel|ipc|futex)/.exec(spec.transport)?.[1] ?? "stream"];

/** The measuring side of any pair: the stream with its cost per message, then round trips. */
async function measure(spec: Spec): Promise<PairResult> {
  const { size } = spec;
  const side = await kind(spec)[0](spec);
  let result: PairResult = {};
  try {
    if (spec.stream) {
      const meter = new Meter(spec.stream, [process.pid, side.peer.pid]);
      const every = tickEvery(size);
      let [seq, pending] = [0, 0];
      await side.stream((m) => {
        if (m !== null) check(`${spec.transport} stream`, m, seq, size);
        seq++;
        if (++pending === every) meter.add(every), pending = 0;
      });
      result = meter.finish(pending);
    }
    if (spec.trips) result.latency = await roundTrips(spec.trips, side.trip, side.peer.pid);
    await side.end();
    await peerDone(side.peer);
    return result;
  } catch (err) {
    side.peer.kill();
    throw err;
  } finally {
    side.close();
  }
}

/** The peer side of any pair: sends the stream for the warm-up and the measured time, echoes. */
export async function peer(spec: Spec): Promise<void> {
  const side = await kind(spec)[1](spec);
  if (spec.stream) {
    const stopAt = performance.now() + spec.stream.warmupMs + spec.stream.measureMs;
    let seq = 0;
    do {
      for (const until = seq + tickEvery(spec.size); seq < until;) {
        const sent = side.send(seq);
        seq += typeof sent === "number" ? sent : await sent;
      }
    } while (performance.now() < stopAt);
    await side.endStream();
  }
  await side.echo();
  side.close();
}

/** One pair of a {@linkcode pairRows} batch: a {@linkcode Spec} without its placement and names. */
export type PairPlan = Pick<Spec, "transport" | "size" | "trips"> & {
  /** Measure the one-way stream. */
  stream?: boolean;
  capacity?: Spec["capacity"];
};

/**
 * Length of each one-way stream: untimed warm-up, then counted. The warm-up lets the engines'
 * optimizing compilers finish, whose threads share the pair's core on one CPU: after 80 ms, Bun's
 * were still at work (500-1,000 ns of their CPU per 64 B message counted, and a fifth of the
 * messages/s); a stream of two Bun processes on one core reached its steady pace only after about
 * a second (4 KiB: 0.49-0.56 M messages/s from 0.4 to 0.6 s, 1.2-1.9 M from 1.5 to 1.8 s), Deno's
 * after 0.4-1 s (bench/README.md, _The compilers in the window_).
 */
export const STREAM = {
  warmupMs: envInt("SB_BENCH_WARMUP_MS", 1500),
  measureMs: envInt("SB_BENCH_MEASURE_MS", 250),
};

/** The measuring role: the pairs of `specs` one after another, each with a fresh peer. */
export async function measureAll(specs: Spec[]): Promise<(PairResult | { error: string })[]> {
  const out: (PairResult | { error: string })[] = [];
  for (const spec of specs) {
    out.push(await measure(spec).catch((err) => ({ error: String(err?.message ?? err) })));
  }
  return out;
}

/**
 * Runs pairs of one runtime and placement, each in a measuring process of its own under
 * `taskset -c` of the placement (which starts a fresh peer, so stdio and IPC join exactly these
 * two processes), and returns their rows. A pair that fails is recorded as skipped; the others
 * still run.
 */
export async function pairRows(
  rt: Runtime,
  placement: Placement,
  plans: PairPlan[],
  skipped: (what: string, why: unknown) => void,
): Promise<Row[]> {
  const specs = plans.map(({ stream, capacity, ...plan }): Spec => ({
    ...plan,
    stream: stream ? STREAM : null,
    capacity: capacity ?? [0, 0],
    peerCpu: PLACEMENTS[placement].peer,
    name: uniqueName("ch"),
  }));
  const names = specs.flatMap(ids);
  leftovers("add", names);
  // Each pair in a measuring process of its own, as each run of the Rust ring: in one process
  // that had measured other pairs before, V8 and JavaScriptCore run the channel's calls slower
  // than in the first (its code deoptimized and compiled again once a second channel exists), and
  // the pair measured first, always the same transport in half the runs, came out faster.
  const got: (PairResult & { error?: string })[] = [];
  for (const spec of specs) {
    const [one] = await runJson<typeof got>(
      pinned(PLACEMENTS[placement].measuring, childCommand(rt, "channel", "measure", [spec])),
      { timeoutMs: 30_000 },
    ).catch((err) => [{ error: String(err?.message ?? err) }]);
    got.push(one);
  }
  for (const name of names) {
    try {
      lib.SharedMemory.unlink({ name });
    } catch {
      // removed by the pair, as it should be
    }
  }
  leftovers("remove", names);
  return plans.flatMap(({ transport: what, size }, k) => {
    const { latency, ...stream } = got[k];
    const base = { runtime: rt, what, size, placement };
    const at = `${placement} ${rt} ${what} ${size} B`;
    if (stream.error) skipped(at, stream.error);
    if (stream.msgs_per_s && stream.cpu_ns_per_msg === undefined) {
      skipped(`${at} cost per message`, "the stream ended before its cost could be read");
    }
    return [...rows(base, stream), ...rows(base, latency ?? {})];
  });
}
