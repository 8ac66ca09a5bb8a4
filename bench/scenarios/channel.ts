/**
 * Channel: one-way throughput and round trips between two processes, for 64 B to 1 MiB
 * messages, against each runtime's Unix socket (one message per write, and packed), a child's
 * stdio pipes, Bun's IPC channel and the Rust ring (`native_ring`) doing the same work.
 *
 * @module
 */

import {
  childCommand,
  type Compare,
  envInt,
  leftovers,
  lib,
  nativeBinary,
  pinned,
  type Placement,
  PLACEMENTS,
  roundTrips,
  type Row,
  rows,
  runJson,
  type Runtime,
  type Scenario,
  uniqueName,
} from "../harness.ts";
import {
  check,
  measureIpc,
  measureStream,
  Meter,
  type PairResult,
  peerDone,
  peerIpc,
  peerStream,
  type Spec,
  stamp,
  startPeer,
  tickEvery,
} from "../streams.ts";

const KIB = 1024;
const MIB = 1 << 20;
const SIZES = [64, 4 * KIB, 64 * KIB, MIB];
/**
 * Sizes also measured with both processes on one CPU, where wake-ups cost most (for the
 * transports marked `sameCore`, to keep the whole run within minutes).
 */
const SAME_CORE_SIZES = [64, 4 * KIB];
/** Ring bytes of the stream's channel per message size (native_ring gets the same). */
const CAPACITY: Record<number, number> = {
  64: 256 * KIB,
  4096: 256 * KIB,
  65536: 4 * MIB,
  [MIB]: 4 * MIB,
};
/** Ring bytes of each round-trip channel: one message fits in one record. */
const TRIP_CAPACITY: Record<number, number> = {
  64: 64 * KIB,
  4096: 64 * KIB,
  65536: 256 * KIB,
  [MIB]: 4 * MIB,
};
/** Timed round trips per size; a tenth more run untimed first. */
const TRIPS: Record<number, number> = { 64: 2000, 4096: 2000, 65536: 1000, [MIB]: 200 };
const WARMUP_MS = envInt("SB_BENCH_WARMUP_MS", 100);
const MEASURE_MS = envInt("SB_BENCH_MEASURE_MS", 200);

/** What each transport measures, at which sizes, in which runtimes, and how. */
const TRANSPORTS: Record<string, {
  stream: number[];
  trips: number[];
  runtimes?: Runtime[];
  /** Also measured with both processes on one CPU. */
  sameCore?: boolean;
  how: string;
}> = {
  channel: {
    sameCore: true,
    stream: SIZES,
    trips: SIZES,
    how: "Channel, copying: send(Uint8Array) / recvInto(one reused buffer), synchronous calls; " +
      "round trips with { spin: 0 } on both ends, so every message wakes a parked receiver",
  },
  channel_timeout: {
    sameCore: true,
    stream: [64, 4 * KIB],
    trips: [],
    how: "the copying path with a timeout on every receive: recvInto(buffer, 20000)",
  },
  channel_batch: {
    sameCore: true,
    stream: [64, 4 * KIB],
    trips: [],
    how:
      "the batch path: sendMany(an array of Uint8Arrays) / recvMany(a callback that checks each)",
  },
  channel_zc: {
    sameCore: true,
    stream: SIZES,
    trips: [],
    how: "Channel, zero-copy: reserve(n) + stamp in place + commit() / recvView()",
  },
  channel_zc_fill: {
    stream: [64 * KIB, MIB],
    trips: [],
    how: "the zero-copy path with the producer writing every byte in place before commit()",
  },
  channel_spin: {
    sameCore: true,
    stream: [],
    trips: [64],
    how: "Channel round trips with the default endpoint options (spin, then park)",
  },
  socket: {
    sameCore: true,
    stream: SIZES,
    trips: SIZES,
    how: "the runtime's Unix stream socket (Deno.listen/connect, Bun.listen/connect, node:net), " +
      "a 4-byte length before each message, one message per write, an async event loop",
  },
  socket_packed: {
    sameCore: true,
    stream: [64],
    trips: [],
    how: "the same socket with as many framed messages as fit packed into each 64 KiB write",
  },
  stdio: {
    stream: SIZES,
    trips: SIZES,
    how: "a child's stdout pipe (blocking writes, one frame each) read as the runtime's stream; " +
      "round trips parent -> child stdin -> child stdout -> parent",
  },
  ipc_json: {
    stream: SIZES,
    trips: SIZES,
    runtimes: ["bun", "node"],
    how: "Bun.spawn({ ipc, serialization: 'json' }) / node:child_process with an 'ipc' stdio, " +
      "{ s: seq, d: a string of n characters }, with a credit window since send() never pushes back",
  },
  ipc_advanced: {
    stream: SIZES,
    trips: SIZES,
    runtimes: ["bun", "node"],
    how: "the same with serialization: 'advanced' (structured clone), { s, d: Uint8Array }",
  },
};

const ids = (spec: Spec) => ["d", "p", "q"].map((s) => `/${spec.name}-${s}`);

/** Endpoint options: round trips park at once (`spin: 0`) except in `channel_spin`. */
const tripOptions = (spec: Spec) => (spec.transport === "channel_spin" ? {} : { spin: 0 });

/** The measuring side of a channel pair: it makes the channels and receives the stream. */
async function measureChannel(spec: Spec): Promise<PairResult> {
  const { Channel } = lib;
  const { size } = spec;
  const [data, ping, pong] = [
    spec.stream && Channel.create({ name: ids(spec)[0] }, { capacity: CAPACITY[size] }),
    spec.trips && Channel.create({ name: ids(spec)[1] }, { capacity: TRIP_CAPACITY[size] }),
    spec.trips && Channel.create({ name: ids(spec)[2] }, { capacity: TRIP_CAPACITY[size] }),
  ];
  const result: PairResult = {};
  try {
    const rx = data?.receiver();
    const peer = startPeer(spec);
    try {
      if (rx && spec.stream) {
        const zeroCopy = spec.transport.startsWith("channel_zc");
        // channel_timeout gives every receive a timeout once the stream runs (the first message
        // waits for the peer to start, which takes seconds on a loaded machine).
        let timeout: number | undefined;
        const meter = new Meter(spec.stream.warmupMs);
        const every = tickEvery(size);
        const into = new Uint8Array(size);
        let [seq, pending] = [0, 0];
        const take = (m: Uint8Array) => {
          check("channel stream", m, seq++, size);
          if (++pending === every) meter.add(every), pending = 0;
        };
        while (spec.transport === "channel_batch" && rx.recvMany(take) !== null);
        for (; spec.transport !== "channel_batch";) {
          const m = zeroCopy ? rx.recvView() : rx.recvInto(into, timeout) === null ? null : into;
          if (spec.transport === "channel_timeout") timeout = 1000;
          if (m === null) break;
          check("channel stream", m, seq++, size);
          if (++pending === every) meter.add(every), pending = 0;
        }
        result.msgs_per_s = meter.finish(pending);
        rx.close();
      }
      if (ping && pong && spec.trips) {
        const tx = ping.sender(tripOptions(spec));
        const back = pong.receiver(tripOptions(spec));
        const message = new Uint8Array(size);
        result.latency = await roundTrips(spec.trips.n, spec.trips.warmup, (i) => {
          stamp(message, i);
          tx.send(message);
          check("channel echo", back.recv(), i, size);
        }, peer.pid);
        tx.close();
      }
      await peerDone(peer);
    } catch (err) {
      peer.kill();
      throw err;
    }
  } finally {
    for (const ch of [data, ping, pong]) if (ch) ch.close(), ch.unlink();
  }
  return result;
}

/** The peer of a channel pair: sends the stream, then echoes round trips. */
function peerChannel(spec: Spec): void {
  const { Channel } = lib;
  const { size } = spec;
  if (spec.stream) {
    using data = Channel.open({ name: ids(spec)[0] }, { timeoutMs: 10_000 });
    const tx = data.sender();
    const zeroCopy = spec.transport.startsWith("channel_zc");
    const fill = spec.transport === "channel_zc_fill";
    const payload = new Uint8Array(size).fill(0x33);
    const stopAt = performance.now() + spec.stream.warmupMs + spec.stream.measureMs;
    let seq = 0;
    if (spec.transport === "channel_batch") {
      const batch = Array.from({ length: tickEvery(size) }, () => new Uint8Array(size).fill(0x33));
      do {
        for (const m of batch) stamp(m, seq++);
        tx.sendMany(batch);
      } while (performance.now() < stopAt);
    } else {
      do {
        for (let i = tickEvery(size); i > 0; i--, seq++) {
          if (zeroCopy) {
            // channel_zc writes the stamp only, as native_ring --zero-copy touches the first and
            // last byte; channel_zc_fill writes every byte first, as a producer building it would.
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
    }
    tx.close();
  }
  if (spec.trips) {
    using ping = Channel.open({ name: ids(spec)[1] }, { timeoutMs: 10_000 });
    using pong = Channel.open({ name: ids(spec)[2] }, { timeoutMs: 10_000 });
    const rx = ping.receiver(tripOptions(spec));
    const tx = pong.sender(tripOptions(spec));
    for (let m = rx.recv(); m !== null; m = rx.recv()) tx.send(m);
    tx.close();
  }
}

/** The measuring side of any pair. */
export function measure(spec: Spec): Promise<PairResult> {
  if (spec.transport.startsWith("channel")) return measureChannel(spec);
  if (spec.transport.startsWith("ipc")) return measureIpc(spec);
  return measureStream(spec);
}

/** The peer side of any pair. */
export async function peer(spec: Spec): Promise<void> {
  if (spec.transport.startsWith("channel")) peerChannel(spec);
  else if (spec.transport.startsWith("ipc")) await peerIpc(spec);
  else await peerStream(spec);
}

/** One pair of a {@linkcode pairs} batch. */
export interface PairPlan {
  transport: string;
  size: number;
  /** Measure the one-way stream. */
  stream: boolean;
  /** Timed round trips (0: none). */
  trips: number;
}

/** The measuring role: the pairs of `specs` one after another, each with a fresh peer. */
async function measureAll(specs: Spec[]): Promise<(PairResult | { error: string })[]> {
  const out: (PairResult | { error: string })[] = [];
  for (const spec of specs) {
    out.push(await measure(spec).catch((err) => ({ error: String(err?.message ?? err) })));
  }
  return out;
}

/**
 * Runs pairs of one runtime and placement in one measuring process under `taskset -c 0` (it
 * starts a fresh peer for each, so stdio and IPC join exactly these two processes). A pair that
 * fails is returned as its error; the others still run.
 */
export async function pairs(
  rt: Runtime,
  scenario: string,
  placement: Placement,
  plans: PairPlan[],
): Promise<(PairResult | { error: string })[]> {
  const specs = plans.map(({ transport, size, stream, trips }): Spec => ({
    scenario,
    transport,
    size,
    stream: stream ? { warmupMs: WARMUP_MS, measureMs: MEASURE_MS } : null,
    trips: trips ? { n: trips, warmup: Math.ceil(trips / 10) } : null,
    peerCpu: PLACEMENTS[placement].peer,
    name: uniqueName("ch"),
  }));
  const names = specs.flatMap(ids);
  leftovers("add", names);
  try {
    return await runJson(
      pinned(PLACEMENTS[placement].measuring, childCommand(rt, scenario, "measure", specs)),
      { timeoutMs: 30_000 * specs.length },
    );
  } finally {
    for (const name of names) {
      try {
        lib.SharedMemory.unlink({ name });
      } catch {
        // removed by the pair, as it should be
      }
    }
    leftovers("remove", names);
  }
}

/** What native_ring prints (the parts used here). */
interface NativeRing {
  throughput: { msgs_per_s: number }[];
  latency_parked: { median_us: number; p99_us: number };
  latency_spin_then_park: { median_us: number; p99_us: number };
}

const LOOP = "the channel's calls are synchronous; the other side runs an async event loop";

/**
 * The ratios the report shows, for each runtime, size and placement: the metric, numerator and
 * denominator (`native.<what>` for the Rust ring, else this runtime's transport), the label, and
 * whether the two sides are driven differently (a synchronous channel against an event loop).
 */
const RATIOS: [string, string, string, string, boolean?][] = [
  [
    "msgs_per_s",
    "channel",
    "socket",
    "channel (copying) / Unix socket, one write per message",
    true,
  ],
  [
    "msgs_per_s",
    "channel",
    "socket_packed",
    "channel (copying) / Unix socket, packed 64 KiB writes",
    true,
  ],
  ["msgs_per_s", "channel", "native.copy", "channel (copying) / the Rust ring copying"],
  ["msgs_per_s", "channel_timeout", "socket", "channel with a receive timeout / Unix socket", true],
  [
    "msgs_per_s",
    "channel_timeout",
    "native.copy",
    "channel with a receive timeout / the Rust ring",
  ],
  ["msgs_per_s", "channel_timeout", "channel", "channel with a receive timeout / without"],
  ["msgs_per_s", "channel_batch", "native.copy", "channel batch / the Rust ring copying"],
  [
    "msgs_per_s",
    "channel_batch",
    "socket",
    "channel batch / Unix socket, one write per message",
    true,
  ],
  [
    "msgs_per_s",
    "channel_batch",
    "socket_packed",
    "channel batch / Unix socket, packed 64 KiB writes",
    true,
  ],
  ["msgs_per_s", "channel_batch", "channel", "channel batch / one by one"],
  ["msgs_per_s", "channel_zc", "socket", "channel zero-copy / Unix socket", true],
  ["msgs_per_s", "channel_zc", "native.zero_copy", "channel zero-copy / the Rust ring zero-copy"],
  ["msgs_per_s", "channel_zc", "channel", "channel zero-copy / copying"],
  [
    "msgs_per_s",
    "channel_zc_fill",
    "socket",
    "channel zero-copy, filled in place / Unix socket",
    true,
  ],
  ["msgs_per_s", "channel_zc_fill", "channel", "channel zero-copy, filled in place / copying"],
  ["msgs_per_s", "channel", "stdio", "channel (copying) / stdio pipe", true],
  ["msgs_per_s", "channel", "ipc_json", "channel (copying) / the runtime's ipc, json", true],
  [
    "msgs_per_s",
    "channel",
    "ipc_advanced",
    "channel (copying) / the runtime's ipc, advanced",
    true,
  ],
  ["msgs_per_s", "native.copy", "socket", "the Rust ring copying / Unix socket"],
  ["msgs_per_s", "native.zero_copy", "socket", "the Rust ring zero-copy / Unix socket"],
  ["median_us", "channel", "socket", "round trip: channel (parked) / Unix socket", true],
  ["median_us", "channel", "stdio", "round trip: channel (parked) / stdio pipes", true],
  [
    "median_us",
    "channel",
    "ipc_json",
    "round trip: channel (parked) / the runtime's ipc, json",
    true,
  ],
  [
    "median_us",
    "channel",
    "ipc_advanced",
    "round trip: channel (parked) / the runtime's ipc, advanced",
    true,
  ],
  ["median_us", "channel", "native.copy", "round trip: channel (parked) / the Rust ring parked"],
  ["median_us", "native.copy", "socket", "round trip: the Rust ring parked / Unix socket"],
  [
    "median_us",
    "channel_spin",
    "socket",
    "round trip: channel (spin, then park) / Unix socket",
    true,
  ],
  [
    "median_us",
    "channel_spin",
    "native.spin",
    "round trip: channel (spin, then park) / the Rust ring's",
  ],
  ["cpu_us", "channel", "socket", "CPU per round trip: channel (parked) / Unix socket", true],
];

/** The scenario. */
export const channel: Scenario = {
  name: "channel",
  method: "One transport and one message size per pair of processes. Stream: the peer sends " +
    `for ${WARMUP_MS} + ${MEASURE_MS} ms, then ends the stream; the receiver (the measuring ` +
    `process) counts messages/s after its first ${WARMUP_MS} ms. Round trips: the measuring ` +
    "side sends a message and waits for its echo (median, p99, and the CPU of both processes " +
    "per round trip from /proc/<pid>/task/*/schedstat). Every message carries its sequence " +
    "number and every receiver checks it. The channel's calls are synchronous while the " +
    "sockets, pipes and IPC are driven by an async event loop, as users write each: the " +
    "figures compare what each API gives, not the same loop. native: native_ring, the Rust " +
    "ring with the same capacities, copying (send / recv_into) and zero-copy (reserve + touch " +
    "first and last byte + commit / recv_ref); its round trips (64 B, 4 KiB) parked and " +
    "spin-then-park. Transports: " +
    Object.entries(TRANSPORTS).map(([t, { how }]) => `${t}: ${how}`).join("; "),
  async run(ctx, skipped) {
    const out: Row[] = [];
    const bin = await nativeBinary("native_ring").catch((err) => (skipped("native", err), ""));
    for (const placement of ctx.placements) {
      const sizes = placement === "same" ? SAME_CORE_SIZES : SIZES;
      for (const size of ctx.run % 2 ? [...sizes].reverse() : sizes) {
        for (const rt of ctx.runtimes) {
          const plans = Object.entries(TRANSPORTS).flatMap(([transport, plan]): PairPlan[] => {
            const stream = plan.stream.includes(size);
            const trips = plan.trips.includes(size) ? TRIPS[size] : 0;
            const here = (!plan.runtimes || plan.runtimes.includes(rt)) &&
              (placement === "split" || plan.sameCore);
            return (stream || trips) && here ? [{ transport, size, stream, trips }] : [];
          });
          const got = await pairs(rt, "channel", placement, ctx.run % 2 ? plans.reverse() : plans)
            .catch((err) => plans.map(() => ({ error: String(err?.message ?? err) })));
          plans.forEach(({ transport }, k) => {
            const base = { runtime: rt, what: transport, size, placement };
            const result = got[k];
            if ("error" in result) {
              skipped(`${placement} ${rt} ${transport} ${size} B`, result.error);
            }
            if ("msgs_per_s" in result) {
              out.push({ ...base, metric: "msgs_per_s", value: result.msgs_per_s! });
            }
            if ("latency" in result) out.push(...rows(base, result.latency!));
          });
        }
        for (const zeroCopy of bin ? [false, true] : []) {
          const what = zeroCopy ? "zero_copy" : "copy";
          const withTrips = !zeroCopy && size <= 4 * KIB;
          try {
            const got = await runJson<NativeRing>([
              bin,
              ...["--size", `${size}`, "--capacity", `${CAPACITY[size]}`, "--pin", placement],
              ...["--seconds", `${(WARMUP_MS + MEASURE_MS) / 1e3}`],
              ...["--round-trips", `${withTrips ? TRIPS[size] : 100}`, "--latency-size", `${size}`],
              ...(zeroCopy ? ["--zero-copy"] : []),
            ]);
            const base = { runtime: "native", size, placement };
            out.push({ ...base, what, metric: "msgs_per_s", value: got.throughput[0].msgs_per_s });
            if (withTrips) {
              out.push(...rows({ ...base, what }, got.latency_parked));
              out.push(...rows({ ...base, what: "spin" }, got.latency_spin_then_park));
            }
          } catch (err) {
            skipped(`${placement} native ${what} ${size} B`, err);
          }
        }
      }
    }
    return out;
  },
  compare: (ctx) =>
    ctx.placements.flatMap((placement) =>
      (placement === "same" ? SAME_CORE_SIZES : SIZES).flatMap((size) =>
        ctx.runtimes.flatMap((rt) =>
          RATIOS.map(([metric, num, den, label, loop]): Compare => {
            const side = (w: string) => {
              const [runtime, what] = w.includes(".") ? w.split(".") : [rt, w];
              return { runtime, what, size, placement, metric };
            };
            return { label, num: side(num), den: side(den), note: loop ? LOOP : undefined };
          })
        )
      )
    ),
  children: { measure: measureAll, peer },
};
