/**
 * Helpers of the channel benchmark (`bench/channel.ts`), neutral between Deno and Bun: stamping
 * and checking messages, length-prefixed framing for byte streams, the throughput meter, and small
 * adapters over each runtime's child processes, Unix sockets and stdio.
 *
 * Every message carries its sequence number in its first 4 bytes (little-endian) and a byte
 * derived from it in its last byte, and every receiver checks both against the count it expects:
 * a path that loses, repeats, reorders or truncates messages fails instead of looking fast.
 *
 * @module
 */

import { writeSync } from "node:fs";
import process from "node:process";

/** The runtime running this file. */
export const runtime: "deno" | "bun" = "Bun" in globalThis ? "bun" : "deno";

// deno-lint-ignore no-explicit-any
export type Any = any;
// deno-lint-ignore no-explicit-any
const Bun: Any = (globalThis as any).Bun;

/** Writes `seq` into the first 4 bytes and `seq ^ 0x5a` into the last byte of `m` (>= 5 bytes). */
export function stamp(m: Uint8Array, seq: number): void {
  m[0] = seq;
  m[1] = seq >>> 8;
  m[2] = seq >>> 16;
  m[3] = seq >>> 24;
  m[m.length - 1] = seq ^ 0x5a;
}

/** True if `m` is `size` bytes long and carries the stamp of `seq`. */
export function stamped(m: Uint8Array, seq: number, size: number): boolean {
  return m.length === size && ((m[0] | (m[1] << 8) | (m[2] << 16) | (m[3] << 24)) >>> 0) ===
      (seq >>> 0) &&
    m[size - 1] === ((seq ^ 0x5a) & 0xff);
}

/** Throws a descriptive error for a message that does not carry the expected stamp. */
export function badMessage(what: string, m: Uint8Array | null, seq: number, size: number): never {
  const got = m === null
    ? "the end of the stream"
    : `${m.length} bytes, seq ${(m[0] | (m[1] << 8) | (m[2] << 16) | (m[3] << 24)) >>> 0}, ` +
      `last byte ${m[m.length - 1]}`;
  throw new Error(`${what}: expected message ${seq} of ${size} bytes, got ${got}`);
}

/** The frame length that ends a stream. */
export const END_FRAME = 0xffff_ffff;

/** A frame of `size` payload bytes: a 4-byte little-endian length, then the payload. */
export function frame(size: number): { frame: Uint8Array; payload: Uint8Array } {
  const f = new Uint8Array(4 + size);
  new DataView(f.buffer).setUint32(0, size, true);
  return { frame: f, payload: f.subarray(4) };
}

/** The 4-byte frame that ends a stream. */
export function endFrame(): Uint8Array {
  return new Uint8Array([0xff, 0xff, 0xff, 0xff]);
}

/**
 * Splits a byte stream of frames into messages. A frame that arrives whole in one chunk is handed
 * to `onMessage` as a view of the chunk (valid during the call only: no copy, the best case for
 * the stream transports); one split across chunks is put together in a buffer first.
 */
export class FrameParser {
  /** Called for each message, with a view valid only during the call. */
  onMessage: (m: Uint8Array) => void;
  /** Called at the end frame. */
  onEnd: () => void;
  #head = new Uint8Array(4);
  #headHave = 0;
  #body: Uint8Array | null = null;
  #bodyHave = 0;

  constructor(onMessage: (m: Uint8Array) => void, onEnd: () => void = () => {}) {
    this.onMessage = onMessage;
    this.onEnd = onEnd;
  }

  push(chunk: Uint8Array): void {
    let i = 0;
    const n = chunk.length;
    while (i < n) {
      if (this.#body !== null) {
        const take = Math.min(this.#body.length - this.#bodyHave, n - i);
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
      let len: number;
      if (this.#headHave === 0 && n - i >= 4) {
        len = (chunk[i] | (chunk[i + 1] << 8) | (chunk[i + 2] << 16) | (chunk[i + 3] << 24)) >>> 0;
        i += 4;
      } else {
        while (this.#headHave < 4 && i < n) this.#head[this.#headHave++] = chunk[i++];
        if (this.#headHave < 4) return;
        this.#headHave = 0;
        const h = this.#head;
        len = (h[0] | (h[1] << 8) | (h[2] << 16) | (h[3] << 24)) >>> 0;
      }
      if (len === END_FRAME) {
        this.onEnd();
        continue;
      }
      if (n - i >= len) {
        this.onMessage(chunk.subarray(i, i + len));
        i += len;
      } else {
        this.#body = new Uint8Array(len);
        this.#bodyHave = 0;
      }
    }
  }
}

/** Messages/s of a one-way stream, measured by the receiver. */
export interface Throughput {
  /** Messages received after the warm-up. */
  messages: number;
  seconds: number;
  msgs_per_s: number;
  bytes_per_s: number;
  /** Per-block rates (blocks of about 25 ms): the spread within the run. */
  block_msgs_per_s: { blocks: number; median: number; min: number; max: number };
}

/**
 * Counts a stream as the receiver sees it: the clock starts at the first message, the first
 * `warmupMs` are not counted (JIT, page faults, buffers filling), then messages are counted until
 * {@linkcode finish}. Call {@linkcode add} every few messages, not for each one.
 */
export class Meter {
  #first = -1;
  #start = -1;
  #counted = 0;
  #blockStart = 0;
  #blockCount = 0;
  readonly #blocks: number[] = [];
  readonly #warmupMs: number;

  constructor(warmupMs: number) {
    this.#warmupMs = warmupMs;
  }

  /** `n` more messages arrived since the last call. */
  add(n: number): void {
    const now = performance.now();
    if (this.#start < 0) {
      if (this.#first < 0) this.#first = now;
      else if (now - this.#first >= this.#warmupMs) {
        this.#start = now;
        this.#blockStart = now;
      }
      return;
    }
    this.#counted += n;
    this.#blockCount += n;
    if (now - this.#blockStart >= 25) {
      this.#blocks.push((this.#blockCount * 1e3) / (now - this.#blockStart));
      this.#blockStart = now;
      this.#blockCount = 0;
    }
  }

  /** The figures, with `n` last messages not yet added; throws if the warm-up never ended. */
  finish(n: number, size: number): Throughput {
    this.add(n);
    const seconds = (performance.now() - this.#start) / 1e3;
    if (this.#start < 0 || this.#counted === 0) {
      throw new Error(`the stream ended within the ${this.#warmupMs} ms warm-up`);
    }
    const rate = this.#counted / seconds;
    const sorted = [...this.#blocks].sort((a, b) => a - b);
    const r = (v: number | undefined) => (v === undefined ? 0 : Math.round(v));
    return {
      messages: this.#counted,
      seconds: Math.round(seconds * 1e4) / 1e4,
      msgs_per_s: Math.round(rate),
      bytes_per_s: Math.round(rate * size),
      block_msgs_per_s: {
        blocks: sorted.length,
        median: r(sorted[sorted.length >> 1]),
        min: r(sorted[0]),
        max: r(sorted[sorted.length - 1]),
      },
    };
  }
}

/** How many messages between two {@linkcode Meter.add} calls (or clock reads of a sender). */
export function tickEvery(size: number): number {
  return Math.max(1, Math.min(256, Math.floor((64 << 10) / size)));
}

// ---- byte streams --------------------------------------------------------------------------------

/** A byte stream carrying frames, over either runtime's socket or stdio API. */
export interface Conn {
  /** Feeds incoming chunks to the parser until `done()` is true; throws at an early end. */
  readUntil(done: () => boolean): Promise<void>;
  /** Writes all of `bytes` (retrying partial writes); a Promise only when it had to wait. */
  write(bytes: Uint8Array): Promise<void> | void;
  close(): void;
}

/** A Conn reading with a `read(buffer)` call (Deno's Conn and stdin) into one reused buffer. */
export function pullConn(
  parser: FrameParser,
  read: (into: Uint8Array) => Promise<number | null>,
  write: (bytes: Uint8Array) => Promise<void> | void,
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
export function streamConn(
  parser: FrameParser,
  stream: ReadableStream<Uint8Array>,
  write: (bytes: Uint8Array) => Promise<void> | void,
  close: () => void,
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
    close: () => {
      reader.releaseLock();
      close();
    },
  };
}

/** Deno: writes all of `bytes` to a Deno.Conn. */
export function denoWriter(conn: { write(b: Uint8Array): Promise<number> }) {
  return async (bytes: Uint8Array): Promise<void> => {
    let put = 0;
    while (put < bytes.length) put += await conn.write(bytes.subarray(put));
  };
}

/** Writes all of `bytes` to file descriptor `fd` with blocking writes (stdout of a peer). */
export function fdWriter(fd: number): (bytes: Uint8Array) => void {
  if (runtime === "deno" && fd === 1) {
    return (bytes) => {
      let put = 0;
      while (put < bytes.length) put += Deno.stdout.writeSync(bytes.subarray(put));
    };
  }
  return (bytes) => {
    let put = 0;
    while (put < bytes.length) put += writeSync(fd, bytes, put, bytes.length - put);
  };
}

/**
 * Bun's callback sockets as a {@linkcode Conn}. `socket.write` returns how much the kernel took and
 * drops the rest, so the rest is written again on `drain`; chunks go straight into the parser.
 */
export class BunConn implements Conn {
  socket: Any;
  readonly #parser: FrameParser;
  #waiter: { done: () => boolean; resolve: () => void; reject: (e: Error) => void } | null = null;
  #drained: (() => void) | null = null;
  #closed = false;

  constructor(parser: FrameParser) {
    this.#parser = parser;
  }

  /** The `socket` handlers for Bun.listen / Bun.connect (without `open`). */
  handlers = {
    data: (_socket: Any, chunk: Uint8Array) => {
      this.#parser.push(chunk);
      const w = this.#waiter;
      if (w && w.done()) {
        this.#waiter = null;
        w.resolve();
      }
    },
    drain: () => {
      const d = this.#drained;
      this.#drained = null;
      d?.();
    },
    close: () => {
      this.#closed = true;
      this.#waiter?.reject(new Error("the socket closed early"));
      this.#waiter = null;
      this.#drained?.();
    },
    error: (_socket: Any, err: unknown) => console.error(`[bench] bun socket error: ${err}`),
  };

  readUntil(done: () => boolean): Promise<void> {
    if (done()) return Promise.resolve();
    if (this.#closed) return Promise.reject(new Error("the socket closed early"));
    return new Promise((resolve, reject) => (this.#waiter = { done, resolve, reject }));
  }

  write(bytes: Uint8Array): Promise<void> | void {
    const n = this.socket.write(bytes);
    if (n === bytes.length) return;
    return this.#writeRest(bytes.subarray(Math.max(0, n)));
  }

  async #writeRest(rest: Uint8Array): Promise<void> {
    while (rest.length > 0) {
      if (this.#closed) throw new Error("the socket closed while writing");
      await new Promise<void>((resolve) => (this.#drained = resolve));
      const n = this.socket.write(rest);
      rest = rest.subarray(Math.max(0, n));
    }
  }

  close(): void {
    this.socket.end();
  }
}

// ---- child processes -------------------------------------------------------------------------------

/** A peer process started by the measuring process. */
export interface Spawned {
  /** Its exit code. */
  exited: Promise<number>;
  /** Its stdout, when started with pipes. */
  stdout?: ReadableStream<Uint8Array>;
  /** Writes all of `bytes` to its stdin, when started with pipes. */
  writeStdin?: (bytes: Uint8Array) => Promise<void> | void;
  /** Closes its stdin. */
  closeStdin?: () => void;
  /** Sends over Bun's IPC channel (with `ipc`). */
  send?: (message: unknown) => void;
  kill(): void;
}

/** Options of {@linkcode spawnPeer}. */
export interface SpawnOptions {
  /** Pipe stdin and stdout (else they are closed; stderr is inherited). */
  pipes?: boolean;
  /** Bun only: an IPC channel with this handler for incoming messages. */
  ipc?: (message: Any) => void;
  serialization?: "json" | "advanced";
}

/** Starts `command` with the runtime's own process API (Deno.Command, Bun.spawn). */
export function spawnPeer(command: string[], options: SpawnOptions = {}): Spawned {
  if (runtime === "bun") {
    const proc = Bun.spawn(command, {
      stdin: options.pipes ? "pipe" : "ignore",
      stdout: options.pipes ? "pipe" : "ignore",
      stderr: "inherit",
      ...(options.ipc
        ? { ipc: (m: unknown) => options.ipc!(m), serialization: options.serialization }
        : {}),
    });
    return {
      exited: proc.exited,
      stdout: options.pipes ? proc.stdout : undefined,
      writeStdin: options.pipes
        ? (bytes) => {
          proc.stdin.write(bytes);
          const flushed = proc.stdin.flush();
          if (flushed && typeof flushed.then === "function") return flushed.then(() => {});
        }
        : undefined,
      closeStdin: options.pipes ? () => void proc.stdin.end() : undefined,
      send: options.ipc ? (m) => proc.send(m) : undefined,
      kill: () => proc.kill(9),
    };
  }
  if (options.ipc) throw new Error("Deno has no IPC channel to a child (only stdio)");
  const child = new Deno.Command(command[0], {
    args: command.slice(1),
    stdin: options.pipes ? "piped" : "null",
    stdout: options.pipes ? "piped" : "null",
    stderr: "inherit",
  }).spawn();
  const writer = options.pipes ? child.stdin.getWriter() : undefined;
  return {
    exited: child.status.then((s) => s.code),
    stdout: options.pipes ? child.stdout : undefined,
    writeStdin: writer ? (bytes) => writer.write(bytes) : undefined,
    closeStdin: writer ? () => void writer.close().catch(() => {}) : undefined,
    kill: () => {
      try {
        child.kill("SIGKILL");
      } catch {
        // already gone
      }
    },
  };
}

/** This runtime's version string. */
export function runtimeVersion(): string {
  return runtime === "bun" ? `bun ${Bun.version}` : `deno ${Deno.version.deno}`;
}

/** The command line that runs `bench/channel.ts` with `args` in this runtime. */
export function selfCommand(script: string, args: string[]): string[] {
  if (runtime === "bun") return [process.execPath, script, ...args];
  return [
    Deno.execPath(),
    "run",
    "--allow-ffi",
    "--allow-read",
    "--allow-write",
    "--allow-env",
    "--allow-run",
    "--allow-sys",
    "--allow-net",
    script,
    ...args,
  ];
}
