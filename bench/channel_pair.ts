/**
 * The two processes of one channel-benchmark figure, for every transport and both runtimes: the
 * **measuring** process (the receiver of the one-way stream, and the side that times round trips)
 * and the **peer** it starts (the sender of the stream, and the echo side). `bench/channel.ts`
 * runs the measuring process under `taskset -c 0`; it starts the peer under `taskset -c
 * <spec.peerCpu>` with the runtime's own process API, so that stdio pipes and Bun's IPC channel
 * join exactly these two processes.
 *
 * One pair runs one transport at one message size: first the one-way stream (the peer sends for
 * `warmupMs + measureMs`, then ends the stream; the measuring side counts what arrives after its
 * first `warmupMs`), then `warmup + n` round trips (the measuring side sends a message, the peer
 * echoes it back, each round trip timed).
 *
 * @module
 */

import process from "node:process";
import {
  type Any,
  badMessage,
  BunConn,
  type Conn,
  denoWriter,
  endFrame,
  fdWriter,
  frame,
  FrameParser,
  Meter,
  pullConn,
  runtime,
  runtimeVersion,
  selfCommand,
  type Spawned,
  spawnPeer,
  stamp,
  stamped,
  streamConn,
  type Throughput,
  tickEvery,
} from "./channel_lib.ts";
import { type LatencyStats, latencyStats } from "./wait_lib.ts";

const entry = runtime === "bun" ? "../bun.ts" : "../mod.ts";
const lib: typeof import("../mod.ts") = await import(entry);
const { Channel } = lib;
// deno-lint-ignore no-explicit-any
const Bun: Any = (globalThis as any).Bun;

/** Every transport the benchmark compares. */
export type Transport =
  | "channel"
  | "channel_zc"
  | "channel_zc_fill"
  | "channel_spin"
  | "socket"
  | "socket_packed"
  | "stdio"
  | "ipc_json"
  | "ipc_advanced";

/** What one pair runs; the same object goes to both processes. */
export interface Spec {
  transport: Transport;
  /** Payload bytes per message (at least 5). */
  size: number;
  /** The one-way stream, or null for none. */
  throughput: { warmupMs: number; measureMs: number } | null;
  /** The round trips, or null for none. */
  latency: { n: number; warmup: number } | null;
  /** `taskset -c` list of the peer. */
  peerCpu: string;
  /** A unique base name: `/<name>-d`, `-p`, `-q` segments, `/tmp/<name>.sock`. */
  name: string;
  /** Ring bytes of the stream's channel. */
  capacity: number;
  /** Ring bytes of each of the two round-trip channels. */
  latencyCapacity: number;
  /** Endpoint `peerCheckMs` (undefined: the library's default). */
  peerCheckMs?: number;
  /** `spin` of the `channel_spin` round-trip endpoints (undefined: the library's default). */
  spin?: number;
}

/** What the measuring process prints. */
export interface PairResult {
  runtime: "deno" | "bun";
  version: string;
  transport: Transport;
  size: number;
  throughput?: Throughput;
  latency?: LatencyStats;
  /** Messages packed into each write (socket_packed). */
  packed_per_write?: number;
  /** Credit window of the IPC stream: at most this many messages unacknowledged. */
  ipc_window?: number;
}

/** Messages a sender sends between two looks at the clock. */
const batchOf = (size: number) => tickEvery(size);

/** Frames packed into one write of `socket_packed`: as many as fit in 64 KiB. */
const packedPerWrite = (size: number) => Math.max(1, Math.floor((64 << 10) / (4 + size)));

/** IPC credit window: messages in flight at most, and how often the receiver acknowledges. */
function ipcWindow(size: number): { window: number; ackEvery: number } {
  const window = Math.max(4, Math.min(16384, Math.floor((8 << 20) / size)));
  return { window, ackEvery: Math.max(1, window >> 2) };
}

const script = decodeURIComponent(new URL("./channel.ts", import.meta.url).pathname);

function startPeer(spec: Spec, options: Parameters<typeof spawnPeer>[1] = {}): Spawned {
  return spawnPeer(
    ["taskset", "-c", spec.peerCpu, ...selfCommand(script, ["peer", JSON.stringify(spec)])],
    options,
  );
}

async function peerDone(peer: Spawned): Promise<void> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const code = await Promise.race([
    peer.exited,
    new Promise<number>((resolve) => (timer = setTimeout(() => resolve(-1), 10_000))),
  ]);
  clearTimeout(timer);
  if (code === -1) {
    peer.kill();
    throw new Error("the peer did not exit within 10 s of the end");
  }
  if (code !== 0) throw new Error(`the peer exited with ${code}`);
}

/** Rejects if the peer exits before it connects (else never settles). */
function failedFirst(peer: Spawned): Promise<never> {
  const failed = peer.exited.then((code): never => {
    throw new Error(`the peer exited with ${code} before connecting`);
  });
  failed.catch(() => {}); // after a connection, the peer's normal exit is no failure
  return failed;
}

// ---- the channel ---------------------------------------------------------------------------------

const ids = (spec: Spec) => ({
  data: { name: `/${spec.name}-d` },
  ping: { name: `/${spec.name}-p` },
  pong: { name: `/${spec.name}-q` },
});

/** Endpoint options: round trips park at once (`spin: 0`) except in `channel_spin`. */
function endpointOptions(spec: Spec, forLatency: boolean) {
  const spin = !forLatency
    ? {}
    : spec.transport !== "channel_spin"
    ? { spin: 0 }
    : spec.spin === undefined
    ? {}
    : { spin: spec.spin };
  return spec.peerCheckMs === undefined ? spin : { ...spin, peerCheckMs: spec.peerCheckMs };
}

async function measureChannel(spec: Spec, result: PairResult): Promise<void> {
  const id = ids(spec);
  const made: { close(): void; unlink(): void }[] = [];
  try {
    const data = spec.throughput ? Channel.create(id.data, { capacity: spec.capacity }) : null;
    if (data) made.push(data);
    const ping = spec.latency ? Channel.create(id.ping, { capacity: spec.latencyCapacity }) : null;
    if (ping) made.push(ping);
    const pong = spec.latency ? Channel.create(id.pong, { capacity: spec.latencyCapacity }) : null;
    if (pong) made.push(pong);
    const rx = data?.receiver(endpointOptions(spec, false));
    const peer = startPeer(spec);
    try {
      if (rx && spec.throughput) {
        const { size } = spec;
        const zeroCopy = spec.transport.startsWith("channel_zc");
        const meter = new Meter(spec.throughput.warmupMs);
        const every = tickEvery(size);
        let seq = 0;
        let pending = 0;
        // The copying path copies each message out into one reused buffer (as the Rust ring's
        // recv_into does), so no allocation per message is measured.
        const into = new Uint8Array(size);
        for (;;) {
          const m = zeroCopy ? rx.recvView() : rx.recvInto(into) === null ? null : into;
          if (m === null) break;
          if (!stamped(m, seq, size)) badMessage("channel stream", m, seq, size);
          seq++;
          if (++pending === every) {
            meter.add(every);
            pending = 0;
          }
        }
        result.throughput = meter.finish(pending, size);
        rx.close();
      }
      if (ping && pong && spec.latency) {
        const { size } = spec;
        const tx = ping.sender(endpointOptions(spec, true));
        const back = pong.receiver(endpointOptions(spec, true));
        const { n, warmup } = spec.latency;
        const message = new Uint8Array(size);
        const samples = new Float64Array(n);
        let start = 0;
        for (let i = 0; i < warmup + n; i++) {
          if (i === warmup) start = performance.now();
          const t0 = performance.now();
          stamp(message, i);
          tx.send(message);
          const m = back.recv();
          const t1 = performance.now();
          if (m === null || !stamped(m, i, size)) badMessage("channel echo", m, i, size);
          if (i >= warmup) samples[i - warmup] = t1 - t0;
        }
        const total = performance.now() - start;
        tx.close();
        result.latency = latencyStats(samples, total);
      }
      await peerDone(peer);
    } catch (err) {
      peer.kill();
      throw err;
    }
  } finally {
    for (const ch of made) {
      ch.close();
      try {
        ch.unlink();
      } catch {
        // already gone
      }
    }
  }
}

function peerChannel(spec: Spec): void {
  const id = ids(spec);
  if (spec.throughput) {
    using data = Channel.open(id.data, { timeoutMs: 10_000 });
    const tx = data.sender(endpointOptions(spec, false));
    const { size } = spec;
    const zeroCopy = spec.transport.startsWith("channel_zc");
    const fill = spec.transport === "channel_zc_fill";
    const payload = new Uint8Array(size).fill(0x33);
    const batch = batchOf(size);
    const stopAt = performance.now() + spec.throughput.warmupMs + spec.throughput.measureMs;
    let seq = 0;
    do {
      for (let i = 0; i < batch; i++, seq++) {
        if (zeroCopy) {
          // Written in place: channel_zc writes the stamp only (first 4 bytes and the last
          // one), as the native ring's --zero-copy producer touches the first and last byte;
          // channel_zc_fill writes every byte first, as a producer building its message would.
          const slot = tx.reserve(size);
          if (fill) slot.fill(seq);
          stamp(slot, seq);
          tx.commit();
        } else {
          stamp(payload, seq);
          tx.send(payload);
        }
      }
    } while (performance.now() < stopAt);
    tx.close();
  }
  if (spec.latency) {
    using ping = Channel.open(id.ping, { timeoutMs: 10_000 });
    using pong = Channel.open(id.pong, { timeoutMs: 10_000 });
    const rx = ping.receiver(endpointOptions(spec, true));
    const tx = pong.sender(endpointOptions(spec, true));
    for (;;) {
      const m = rx.recv();
      if (m === null) break;
      tx.send(m);
    }
    tx.close();
  }
}

// ---- byte streams: Unix socket and stdio ---------------------------------------------------------

const socketPath = (spec: Spec) => `/tmp/${spec.name}.sock`;

/** The measuring side's Conn for a socket or stdio pair, and the peer it started. */
async function measuringConn(spec: Spec, parser: FrameParser): Promise<[Conn, Spawned]> {
  if (spec.transport === "stdio") {
    const peer = startPeer(spec, { pipes: true });
    return [streamConn(parser, peer.stdout!, peer.writeStdin!, peer.closeStdin!), peer];
  }
  const path = socketPath(spec);
  if (runtime === "deno") {
    const listener = Deno.listen({ transport: "unix", path });
    const peer = startPeer(spec);
    const conn = await Promise.race([listener.accept(), failedFirst(peer)]);
    listener.close();
    return [pullConn(parser, (b) => conn.read(b), denoWriter(conn), () => conn.close()), peer];
  }
  const c = new BunConn(parser);
  let opened!: () => void;
  const open = new Promise<void>((resolve) => (opened = resolve));
  const server = Bun.listen({
    unix: path,
    socket: {
      ...c.handlers,
      open(socket: Any) {
        c.socket = socket;
        opened();
      },
    },
  });
  const peer = startPeer(spec);
  await Promise.race([open, failedFirst(peer)]);
  const close = c.close.bind(c);
  c.close = () => {
    close();
    server.stop(true);
  };
  return [c, peer];
}

async function peerConn(spec: Spec, parser: FrameParser): Promise<Conn> {
  if (spec.transport === "stdio") {
    if (runtime === "deno") {
      return pullConn(parser, (b) => Deno.stdin.read(b), fdWriter(1), () => {});
    }
    return streamConn(parser, Bun.stdin.stream(), fdWriter(1), () => {});
  }
  const path = socketPath(spec);
  if (runtime === "deno") {
    const conn = await Deno.connect({ transport: "unix", path });
    return pullConn(parser, (b) => conn.read(b), denoWriter(conn), () => conn.close());
  }
  const c = new BunConn(parser);
  c.socket = await Bun.connect({ unix: path, socket: c.handlers });
  return c;
}

async function measureStream(spec: Spec, result: PairResult): Promise<void> {
  const { size } = spec;
  const parser = new FrameParser(() => {
    throw new Error("a message before the stream started");
  });
  const [conn, peer] = await measuringConn(spec, parser);
  try {
    if (spec.throughput) {
      const meter = new Meter(spec.throughput.warmupMs);
      const every = tickEvery(size);
      let seq = 0;
      let pending = 0;
      let ended = false;
      parser.onMessage = (m) => {
        if (!stamped(m, seq, size)) badMessage(`${spec.transport} stream`, m, seq, size);
        seq++;
        if (++pending === every) {
          meter.add(every);
          pending = 0;
        }
      };
      parser.onEnd = () => (ended = true);
      await conn.readUntil(() => ended);
      result.throughput = meter.finish(pending, size);
      if (spec.transport === "socket_packed") result.packed_per_write = packedPerWrite(size);
    }
    if (spec.latency) {
      const { n, warmup } = spec.latency;
      const out = frame(size);
      const samples = new Float64Array(n);
      let expect = 0;
      let got = false;
      parser.onMessage = (m) => {
        if (!stamped(m, expect, size)) badMessage(`${spec.transport} echo`, m, expect, size);
        got = true;
      };
      let start = 0;
      for (let i = 0; i < warmup + n; i++) {
        if (i === warmup) start = performance.now();
        const t0 = performance.now();
        stamp(out.payload, i);
        expect = i;
        got = false;
        const w = conn.write(out.frame);
        if (w) await w;
        await conn.readUntil(() => got);
        if (i >= warmup) samples[i - warmup] = performance.now() - t0;
      }
      const total = performance.now() - start;
      result.latency = latencyStats(samples, total);
    }
    const w = conn.write(endFrame());
    if (w) await w;
    await peerDone(peer);
    conn.close();
  } catch (err) {
    peer.kill();
    throw err;
  }
}

async function peerStream(spec: Spec): Promise<void> {
  const { size } = spec;
  const parser = new FrameParser(() => {
    throw new Error("the peer got a message during the stream");
  });
  const conn = await peerConn(spec, parser);
  if (spec.throughput) {
    const stopAt = performance.now() + spec.throughput.warmupMs + spec.throughput.measureMs;
    let seq = 0;
    if (spec.transport === "socket_packed") {
      const per = packedPerWrite(size);
      const buffer = new Uint8Array(per * (4 + size));
      const view = new DataView(buffer.buffer);
      const payloads: Uint8Array[] = [];
      for (let k = 0; k < per; k++) {
        view.setUint32(k * (4 + size), size, true);
        payloads.push(buffer.subarray(k * (4 + size) + 4, (k + 1) * (4 + size)));
      }
      do {
        for (const p of payloads) stamp(p, seq++);
        const w = conn.write(buffer);
        if (w) await w;
      } while (performance.now() < stopAt);
    } else {
      const out = frame(size);
      out.payload.fill(0x33);
      const batch = batchOf(size);
      do {
        for (let i = 0; i < batch; i++, seq++) {
          stamp(out.payload, seq);
          const w = conn.write(out.frame);
          if (w) await w;
        }
      } while (performance.now() < stopAt);
    }
    const w = conn.write(endFrame());
    if (w) await w;
  }
  // Echo every message until the end frame (which also ends a stream-only pair).
  const echo = frame(size);
  let got = false;
  let ended = false;
  parser.onMessage = (m) => {
    echo.payload.set(m);
    got = true;
  };
  parser.onEnd = () => (ended = true);
  for (;;) {
    await conn.readUntil(() => got || ended);
    if (got) {
      got = false;
      const w = conn.write(echo.frame);
      if (w) await w;
      continue;
    }
    break;
  }
  conn.close();
}

// ---- Bun's IPC -----------------------------------------------------------------------------------

type IpcMessage = { s: number; d: string | Uint8Array } | { ack: number } | { end: true } | {
  bye: true;
};

async function measureIpc(spec: Spec, result: PairResult): Promise<void> {
  if (runtime !== "bun") throw new Error("Deno has no IPC channel between processes");
  const { size } = spec;
  const json = spec.transport === "ipc_json";
  const ok = (m: Any, seq: number) =>
    m !== null && typeof m === "object" && m.s === seq &&
    (json ? typeof m.d === "string" && m.d.length === size : stamped(m.d, seq, size));
  let handler: (m: Any) => void = () => {
    throw new Error("an IPC message before the stream started");
  };
  const peer = startPeer(spec, {
    ipc: (m) => handler(m),
    serialization: json ? "json" : "advanced",
  });
  try {
    if (spec.throughput) {
      const { ackEvery, window } = ipcWindow(size);
      const meter = new Meter(spec.throughput.warmupMs);
      const every = tickEvery(size);
      let seq = 0;
      let pending = 0;
      let ended!: () => void;
      const end = new Promise<void>((resolve) => (ended = resolve));
      handler = (m) => {
        if (m?.end) return ended();
        if (!ok(m, seq)) throw new Error(`ipc stream: expected message ${seq}, got ${m?.s}`);
        seq++;
        if (seq % ackEvery === 0) peer.send!({ ack: seq });
        if (++pending === every) {
          meter.add(every);
          pending = 0;
        }
      };
      await end;
      result.throughput = meter.finish(pending, size);
      result.ipc_window = window;
    }
    if (spec.latency) {
      const { n, warmup } = spec.latency;
      const samples = new Float64Array(n);
      const text = "x".repeat(size);
      const bytes = new Uint8Array(size);
      let arrived!: (m: Any) => void;
      handler = (m) => arrived(m);
      let start = 0;
      for (let i = 0; i < warmup + n; i++) {
        if (i === warmup) start = performance.now();
        const t0 = performance.now();
        const back = new Promise<Any>((resolve) => (arrived = resolve));
        if (json) peer.send!({ s: i, d: text });
        else {
          stamp(bytes, i);
          peer.send!({ s: i, d: bytes });
        }
        const m = await back;
        if (i >= warmup) samples[i - warmup] = performance.now() - t0;
        if (!ok(m, i)) throw new Error(`ipc echo: expected message ${i}, got ${m?.s}`);
      }
      result.latency = latencyStats(samples, performance.now() - start);
    }
    peer.send!({ bye: true });
    await peerDone(peer);
  } catch (err) {
    peer.kill();
    throw err;
  }
}

async function peerIpc(spec: Spec): Promise<void> {
  const { size } = spec;
  const json = spec.transport === "ipc_json";
  const send = (m: IpcMessage) => process.send!(m);
  let acked = 0;
  let wake: (() => void) | null = null;
  let bye!: () => void;
  const done = new Promise<void>((resolve) => (bye = resolve));
  process.on("message", (m: Any) => {
    if (typeof m?.ack === "number") {
      acked = m.ack;
      const w = wake;
      wake = null;
      w?.();
    } else if (typeof m?.s === "number") send(m);
    else if (m?.bye) bye();
  });
  if (spec.throughput) {
    const { window } = ipcWindow(size);
    const text = "x".repeat(size);
    const bytes = new Uint8Array(size);
    const batch = batchOf(size);
    const stopAt = performance.now() + spec.throughput.warmupMs + spec.throughput.measureMs;
    let seq = 0;
    do {
      for (let i = 0; i < batch; i++, seq++) {
        while (seq - acked >= window) await new Promise<void>((resolve) => (wake = resolve));
        if (json) send({ s: seq, d: text });
        else {
          stamp(bytes, seq);
          send({ s: seq, d: bytes });
        }
      }
    } while (performance.now() < stopAt);
    send({ end: true });
  }
  await done;
  process.exit(0);
}

// ---- entry points --------------------------------------------------------------------------------

/** Runs the measuring side of `spec`; returns what to print. */
export async function measure(spec: Spec): Promise<PairResult> {
  const result: PairResult = {
    runtime,
    version: runtimeVersion(),
    transport: spec.transport,
    size: spec.size,
  };
  if (spec.transport.startsWith("channel")) await measureChannel(spec, result);
  else if (spec.transport.startsWith("ipc")) await measureIpc(spec, result);
  else await measureStream(spec, result);
  return result;
}

/** Runs the peer side of `spec`. */
export async function peer(spec: Spec): Promise<void> {
  if (spec.transport.startsWith("channel")) peerChannel(spec);
  else if (spec.transport.startsWith("ipc")) await peerIpc(spec);
  else await peerStream(spec);
}
