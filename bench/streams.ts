/**
 * What Deno, Bun and Node users have today between two processes, as the scenarios compare it:
 * each runtime's Unix-domain stream socket, a child's stdio pipes and Bun's IPC channel, with
 * length-prefixed frames; and the peer process that the measuring process starts with the
 * runtime's own process API (so that pipes and IPC join exactly these two processes).
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
import { childCommand, type Latency, roundTrips, runtime } from "./harness.ts";

// deno-lint-ignore no-explicit-any
type Any = any;
const Bun: Any = (globalThis as Any).Bun;

/** A stream or round trips between the measuring process and its peer, over one transport. */
export interface Spec {
  /** The scenario whose `peer` role the measuring side starts. */
  scenario: string;
  transport: string;
  /** Payload bytes per message (at least 5). */
  size: number;
  /** The one-way stream (peer to measuring side), or null. */
  stream: { warmupMs: number; measureMs: number } | null;
  /** Timed round trips and untimed ones before them, or null. */
  trips: { n: number; warmup: number } | null;
  /** `taskset -c` list of the peer. */
  peerCpu: string;
  /** A unique base name for segments and the socket path. */
  name: string;
}

/** What the measuring process prints. */
export interface PairResult {
  /** Messages/s counted by the receiver after the warm-up. */
  msgs_per_s?: number;
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
 * `warmupMs` are not counted, then messages are counted until {@linkcode finish}. Call
 * {@linkcode add} every {@linkcode tickEvery} messages, not for each one.
 */
export class Meter {
  #first = -1;
  #start = -1;
  #counted = 0;
  #all = 0;
  constructor(readonly warmupMs: number) {}

  /** `n` more messages arrived since the last call. */
  add(n: number): void {
    const now = performance.now();
    if (this.#first < 0) this.#first = now;
    else this.#all += n;
    if (this.#start >= 0) this.#counted += n;
    else if (now - this.#first >= this.warmupMs) this.#start = now;
  }

  /**
   * Messages/s, with `n` last messages not yet added. A stream that ended within its warm-up
   * (slow messages on a busy machine) is counted from its first message instead.
   */
  finish(n: number): number {
    this.add(n);
    const [from, count] = this.#counted ? [this.#start, this.#counted] : [this.#first, this.#all];
    if (!count) throw new Error("the stream ended after one message");
    return Math.round(count / ((performance.now() - from) / 1e3));
  }
}

/** Messages between two {@linkcode Meter.add} calls or a sender's looks at the clock. */
export const tickEvery = (size: number) => Math.max(1, Math.min(256, (64 << 10) / size | 0));

/** Frames packed into one write of `socket_packed`: as many as fit in 64 KiB. */
export const packedPerWrite = (size: number) => Math.max(1, (64 << 10) / (4 + size) | 0);

const END = 0xffff_ffff;

/** A frame of `size` payload bytes: a 4-byte little-endian length, then the payload. */
function frame(size: number): { frame: Uint8Array; payload: Uint8Array } {
  const f = new Uint8Array(4 + size);
  new DataView(f.buffer).setUint32(0, size, true);
  return { frame: f, payload: f.subarray(4) };
}

/**
 * Splits a byte stream of frames into messages. A frame that arrives whole in one chunk is handed
 * on as a view of the chunk (no copy: the best case for the stream transports); one split across
 * chunks is put together in a buffer first.
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

/** A byte stream of frames over one runtime's socket or stdio API. */
interface Conn {
  /** Feeds incoming chunks to the parser until `done()` is true; throws at an early end. */
  readUntil(done: () => boolean): Promise<void>;
  /** Writes all of `bytes`; a Promise only when it had to wait. */
  write(bytes: Uint8Array): Promise<void> | void;
  close(): void;
}

/** A Conn that pulls with `read(buffer)` (Deno's Conn and stdin) into one reused buffer. */
function pullConn(
  parser: FrameParser,
  read: (into: Uint8Array) => Promise<number | null>,
  write: Conn["write"],
  close: () => void,
): Conn {
  const buffer = new Uint8Array(256 << 10);
  return {
    async readUntil(done) {
      while (!done()) {
        const n = await read(buffer);
        if (n === null) throw new Error("the stream ended early");
        parser.push(buffer.subarray(0, n));
      }
    },
    write,
    close,
  };
}

/** A Conn over a ReadableStream of chunks (a child's stdout, Bun's stdin). */
function streamConn(
  parser: FrameParser,
  stream: ReadableStream<Uint8Array>,
  write: Conn["write"],
): Conn {
  const reader = stream.getReader();
  return {
    async readUntil(done) {
      while (!done()) {
        const { value, done: ended } = await reader.read();
        if (ended) throw new Error("the stream ended early");
        parser.push(value);
      }
    },
    write,
    close: () => reader.releaseLock(),
  };
}

/**
 * A Conn over callbacks (Bun's sockets, Node's `net.Socket`): chunks go straight into the parser.
 * `put` writes and returns how much was taken, the rest being written again on drain (Bun's
 * `socket.write` silently drops what does not fit), or -1 when all was taken but the writer must
 * wait for drain (Node).
 */
class PushConn implements Conn {
  #waiter: { done: () => boolean; resolve: () => void; reject: (e: Error) => void } | null = null;
  #drained: (() => void) | null = null;
  #closed = false;
  put: (bytes: Uint8Array) => number = () => 0;
  end: () => void = () => {};
  constructor(readonly parser: FrameParser) {}

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
    this.#waiter?.reject(new Error("the socket closed early"));
    this.#waiter = null;
    this.drain();
  }
  readUntil(done: () => boolean): Promise<void> {
    if (done()) return Promise.resolve();
    if (this.#closed) return Promise.reject(new Error("the socket closed early"));
    return new Promise((resolve, reject) => (this.#waiter = { done, resolve, reject }));
  }
  write(bytes: Uint8Array): Promise<void> | void {
    const n = this.put(bytes);
    if (n < 0) return new Promise<void>((resolve) => (this.#drained = resolve));
    if (n < bytes.length) return this.#rest(bytes.subarray(n));
  }
  async #rest(rest: Uint8Array): Promise<void> {
    while (rest.length > 0) {
      if (this.#closed) throw new Error("the socket closed while writing");
      await new Promise<void>((resolve) => (this.#drained = resolve));
      rest = rest.subarray(this.put(rest));
    }
  }
  close(): void {
    this.end();
  }
  /** Handlers for Bun.listen / Bun.connect. */
  bun(open?: (socket: Any) => void) {
    return {
      open: (socket: Any) => {
        this.put = (b) => Math.max(0, socket.write(b));
        this.end = () => socket.end();
        open?.(socket);
      },
      data: (_: Any, chunk: Uint8Array) => this.data(chunk),
      drain: () => this.drain(),
      close: () => this.closed(),
      error: (_: Any, err: unknown) => console.error(`[bench] socket error: ${err}`),
    };
  }
  /**
   * Wires a Node `net.Socket`. Node's `write` takes everything, keeping a reference to what the
   * kernel did not take yet, so it gets a copy (the writers reuse their buffer); it only asks to
   * wait for drain.
   */
  node(socket: Any): this {
    socket.on("data", (chunk: Uint8Array) => this.data(chunk));
    socket.on("drain", () => this.drain());
    socket.on("close", () => this.closed());
    this.put = (b) => (socket.write(b.slice()) ? b.length : -1);
    this.end = () => socket.end();
    return this;
  }
}

/** Writes all of `bytes` to file descriptor `fd` with blocking writes. */
function fdWriter(fd: number): (bytes: Uint8Array) => void {
  return (bytes) => {
    for (let put = 0; put < bytes.length;) put += writeSync(fd, bytes, put, bytes.length - put);
  };
}

/** Deno: writes all of `bytes` to a Deno.Conn. */
const denoWriter = (conn: Deno.Conn) => async (bytes: Uint8Array) => {
  for (let put = 0; put < bytes.length;) put += await conn.write(bytes.subarray(put));
};

// ---- the peer process -----------------------------------------------------------------------------

/** The peer process the measuring process started. */
export interface Peer {
  pid: number;
  exited: Promise<number>;
  stdout?: ReadableStream<Uint8Array>;
  writeStdin?: (bytes: Uint8Array) => Promise<void> | void;
  send?: (message: unknown) => void;
  kill(): void;
}

/** Starts the peer of `spec` under `taskset -c spec.peerCpu` with this runtime's process API. */
export function startPeer(
  spec: Spec,
  options: { pipes?: boolean; ipc?: (m: Any) => void; serialization?: string } = {},
): Peer {
  const command = [
    "taskset",
    "-c",
    spec.peerCpu,
    ...childCommand(runtime, spec.scenario, "peer", spec),
  ];
  const stdio = options.pipes ? "pipe" : "ignore";
  if (runtime === "bun") {
    const proc = Bun.spawn(command, {
      stdin: stdio,
      stdout: stdio,
      stderr: "inherit",
      ...(options.ipc ? { ipc: options.ipc, serialization: options.serialization } : {}),
    });
    return {
      pid: proc.pid,
      exited: proc.exited,
      stdout: options.pipes ? proc.stdout : undefined,
      writeStdin: (bytes) => {
        proc.stdin.write(bytes);
        const flushed = proc.stdin.flush();
        if (flushed?.then) return flushed.then(() => {});
      },
      send: (m) => proc.send(m),
      kill: () => proc.kill(9),
    };
  }
  if (options.ipc && runtime === "deno") {
    throw new Error("deno has no IPC channel to a child in this benchmark");
  }
  if (runtime === "deno") {
    const child = new Deno.Command(command[0], {
      args: command.slice(1),
      stdin: options.pipes ? "piped" : "null",
      stdout: options.pipes ? "piped" : "null",
      stderr: "inherit",
    }).spawn();
    const writer = options.pipes ? child.stdin.getWriter() : undefined;
    return {
      pid: child.pid,
      exited: child.status.then((s) => s.code),
      stdout: options.pipes ? child.stdout : undefined,
      writeStdin: (bytes) => writer!.write(bytes),
      kill: () => {
        try {
          child.kill("SIGKILL");
        } catch {
          // already gone
        }
      },
    };
  }
  // Node.js: node:child_process, with its IPC channel when asked (what `fork` sets up).
  const child = spawn(command[0], command.slice(1), {
    stdio: options.ipc ? [stdio, stdio, "inherit", "ipc"] : [stdio, stdio, "inherit"],
    serialization: options.serialization as "json" | "advanced" | undefined,
  });
  if (options.ipc) child.on("message", options.ipc);
  return {
    pid: child.pid!,
    exited: new Promise((resolve) => child.on("close", (code) => resolve(code ?? -1))),
    stdout: options.pipes
      ? new ReadableStream({
        start(c) {
          child.stdout!.on("data", (b: Uint8Array) => c.enqueue(b));
          child.stdout!.on("end", () => c.close());
        },
      })
      : undefined,
    // A copy: Node keeps a reference to what the pipe did not take yet, and writers reuse theirs.
    writeStdin: (bytes) => void child.stdin!.write(bytes.slice()),
    send: (m) => void child.send(m as Parameters<typeof child.send>[0]),
    kill: () => child.kill("SIGKILL"),
  };
}

/** Waits for the peer's exit (killing it after 10 s); throws unless it exited with 0. */
export async function peerDone(peer: Peer): Promise<void> {
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

const socketPath = (spec: Spec) => `/tmp/${spec.name}.sock`;

/** The measuring side's Conn (it listens, or starts a child with pipes) and its peer. */
async function measuringConn(spec: Spec, parser: FrameParser): Promise<[Conn, Peer]> {
  if (spec.transport === "stdio") {
    const peer = startPeer(spec, { pipes: true });
    return [streamConn(parser, peer.stdout!, peer.writeStdin!), peer];
  }
  const path = socketPath(spec);
  if (runtime === "deno") {
    const listener = Deno.listen({ transport: "unix", path });
    const peer = startPeer(spec);
    const conn = await Promise.race([listener.accept(), failedFirst(peer)]);
    listener.close();
    return [pullConn(parser, (b) => conn.read(b), denoWriter(conn), () => conn.close()), peer];
  }
  const c = new PushConn(parser);
  let opened!: () => void;
  const open = new Promise<void>((resolve) => (opened = resolve));
  let stop: () => void;
  if (runtime === "bun") {
    const server = Bun.listen({ unix: path, socket: c.bun(() => opened()) });
    stop = () => server.stop(true);
  } else {
    const server = createServer((socket) => (c.node(socket), opened())).listen(path);
    stop = () => server.close();
  }
  const peer = startPeer(spec);
  await Promise.race([open, failedFirst(peer)]);
  const end = c.end;
  c.end = () => (end(), stop());
  return [c, peer];
}

/** The peer's Conn: it connects, or uses its own stdin and stdout. */
async function peerConn(spec: Spec, parser: FrameParser): Promise<Conn> {
  if (spec.transport === "stdio") {
    if (runtime === "deno") {
      return pullConn(
        parser,
        (b) => Deno.stdin.read(b),
        fdWriter(1),
        () => {},
      );
    }
    if (runtime === "bun") return streamConn(parser, Bun.stdin.stream(), fdWriter(1));
    const c = new PushConn(parser);
    process.stdin.on("data", (chunk: Uint8Array) => c.data(chunk));
    c.put = (b) => (fdWriter(1)(b), b.length);
    return c;
  }
  const path = socketPath(spec);
  if (runtime === "deno") {
    const conn = await Deno.connect({ transport: "unix", path });
    return pullConn(parser, (b) => conn.read(b), denoWriter(conn), () => conn.close());
  }
  const c = new PushConn(parser);
  if (runtime === "bun") await Bun.connect({ unix: path, socket: c.bun() });
  else await new Promise<void>((resolve) => c.node(connect(path, resolve)));
  return c;
}

/** The measuring side of a socket or stdio pair: the stream, then the round trips. */
export async function measureStream(spec: Spec): Promise<PairResult> {
  const { size } = spec;
  const parser = new FrameParser();
  const [conn, peer] = await measuringConn(spec, parser);
  const result: PairResult = {};
  try {
    if (spec.stream) {
      const meter = new Meter(spec.stream.warmupMs);
      const every = tickEvery(size);
      let [seq, pending, ended] = [0, 0, false];
      parser.onMessage = (m) => {
        check(`${spec.transport} stream`, m, seq++, size);
        if (++pending === every) meter.add(every), pending = 0;
      };
      parser.onEnd = () => (ended = true);
      await conn.readUntil(() => ended);
      result.msgs_per_s = meter.finish(pending);
    }
    if (spec.trips) {
      const out = frame(size);
      let [expect, got] = [0, false];
      parser.onMessage = (m) => (check(`${spec.transport} echo`, m, expect, size), got = true);
      result.latency = await roundTrips(spec.trips.n, spec.trips.warmup, async (i) => {
        stamp(out.payload, expect = i);
        got = false;
        const w = conn.write(out.frame);
        if (w) await w;
        await conn.readUntil(() => got);
      }, peer.pid);
    }
    const w = conn.write(new Uint8Array([0xff, 0xff, 0xff, 0xff]));
    if (w) await w;
    await peerDone(peer);
    conn.close();
    return result;
  } catch (err) {
    peer.kill();
    throw err;
  }
}

/** The peer of a socket or stdio pair: sends the stream, then echoes until the end frame. */
export async function peerStream(spec: Spec): Promise<void> {
  const { size } = spec;
  const parser = new FrameParser();
  const conn = await peerConn(spec, parser);
  if (spec.stream) {
    const stopAt = performance.now() + spec.stream.warmupMs + spec.stream.measureMs;
    // socket_packed: many frames in each write; otherwise one frame per write.
    const per = spec.transport === "socket_packed" ? packedPerWrite(size) : 1;
    const buffer = new Uint8Array(per * (4 + size));
    const payloads = Array.from({ length: per }, (_, k) => {
      new DataView(buffer.buffer).setUint32(k * (4 + size), size, true);
      return buffer.subarray(k * (4 + size) + 4, (k + 1) * (4 + size));
    });
    const batch = per > 1 ? 1 : tickEvery(size);
    let seq = 0;
    do {
      for (let i = 0; i < batch; i++) {
        for (const p of payloads) stamp(p, seq++);
        const w = conn.write(buffer);
        if (w) await w;
      }
    } while (performance.now() < stopAt);
    const w = conn.write(new Uint8Array([0xff, 0xff, 0xff, 0xff]));
    if (w) await w;
  }
  const echo = frame(size);
  let [got, ended] = [false, false];
  parser.onMessage = (m) => (echo.payload.set(m), got = true);
  parser.onEnd = () => (ended = true);
  for (;;) {
    await conn.readUntil(() => got || ended);
    if (!got) break;
    got = false;
    const w = conn.write(echo.frame);
    if (w) await w;
  }
  conn.close();
}

// ---- Bun's and Node's IPC --------------------------------------------------------------------------

/** IPC credit window: messages in flight at most (`send()` never pushes back). */
const ipcWindow = (size: number) => Math.max(4, Math.min(16384, (8 << 20) / size | 0));

/** The measuring side of an IPC pair (`ipc_json` or `ipc_advanced`), in Bun or Node.js. */
export async function measureIpc(spec: Spec): Promise<PairResult> {
  const { size } = spec;
  const json = spec.transport === "ipc_json";
  const ok = (m: Any, seq: number) =>
    m?.s === seq && (json ? m.d?.length === size : (check("ipc", m.d, seq, size), true));
  let handler: (m: Any) => void = () => {};
  const peer = startPeer(spec, {
    ipc: (m) => handler(m),
    serialization: json ? "json" : "advanced",
  });
  const result: PairResult = {};
  try {
    if (spec.stream) {
      const ackEvery = Math.max(1, ipcWindow(size) >> 2);
      const meter = new Meter(spec.stream.warmupMs);
      const every = tickEvery(size);
      let [seq, pending] = [0, 0];
      await new Promise<void>((resolve, reject) => {
        handler = (m) => {
          if (m?.end) return resolve();
          if (!ok(m, seq)) return reject(new Error(`ipc stream: expected ${seq}, got ${m?.s}`));
          if (++seq % ackEvery === 0) peer.send!({ ack: seq });
          if (++pending === every) meter.add(every), pending = 0;
        };
      });
      result.msgs_per_s = meter.finish(pending);
    }
    if (spec.trips) {
      const [text, bytes] = ["x".repeat(size), new Uint8Array(size)];
      result.latency = await roundTrips(spec.trips.n, spec.trips.warmup, async (i) => {
        const back = new Promise<Any>((resolve) => (handler = resolve));
        if (!json) stamp(bytes, i);
        peer.send!({ s: i, d: json ? text : bytes });
        if (!ok(await back, i)) throw new Error(`ipc echo: wrong message for ${i}`);
      }, peer.pid);
    }
    peer.send!({ bye: true });
    await peerDone(peer);
    return result;
  } catch (err) {
    peer.kill();
    throw err;
  }
}

/** The peer of an IPC pair: sends the stream within the credit window, then echoes. */
export async function peerIpc(spec: Spec): Promise<void> {
  const { size } = spec;
  const send = (m: unknown) => process.send!(m);
  let acked = 0;
  let wake: (() => void) | null = null;
  let bye!: () => void;
  const done = new Promise<void>((resolve) => (bye = resolve));
  process.on("message", (m: Any) => {
    if (typeof m?.ack === "number") (acked = m.ack), wake?.();
    else if (typeof m?.s === "number") send(m);
    else if (m?.bye) bye();
  });
  if (spec.stream) {
    const window = ipcWindow(size);
    const [text, bytes] = ["x".repeat(size), new Uint8Array(size)];
    const stopAt = performance.now() + spec.stream.warmupMs + spec.stream.measureMs;
    let seq = 0;
    do {
      for (let i = 0; i < tickEvery(size); i++, seq++) {
        while (seq - acked >= window) await new Promise<void>((resolve) => (wake = resolve));
        if (spec.transport === "ipc_json") send({ s: seq, d: text });
        else stamp(bytes, seq), send({ s: seq, d: bytes });
      }
    } while (performance.now() < stopAt);
    send({ end: true });
  }
  await done;
}
