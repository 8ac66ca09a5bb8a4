/**
 * Channel: one-way throughput and round trips between two processes, for 64 B to 1 MiB
 * messages, against each runtime's Unix socket (one message per write, and packed), a child's
 * stdio pipes, Bun's and Node's IPC channel and the Rust ring (`native_ring`) doing the same
 * work; beside each throughput, the CPU time and voluntary context switches of both processes per
 * message. The pairs themselves are `bench/streams.ts`; this scenario also carries their child
 * roles.
 *
 * @module
 */

import {
  type Compare,
  nativeBinary,
  ratios,
  type Row,
  rows,
  runJson,
  type Runtime,
  type Scenario,
  type TripBudget,
  wheres,
} from "../harness.ts";
import { measureAll, type PairPlan, pairRows, peer, STREAM } from "../streams.ts";

const KIB = 1024;
const MIB = 1 << 20;
const SIZES = [64, 4 * KIB, 64 * KIB, MIB];
/**
 * Sizes also measured with both processes on one CPU, where wake-ups cost most (for the
 * transports marked `sameCore`, to keep the whole run within minutes).
 */
const SAME_CORE_SIZES = [64, 4 * KIB];
/** At most `max` round trips timed for 100 ms, after {@linkcode TRIP_WARM_MS} untimed. */
function tripBudget(max: number): TripBudget {
  return { ms: 100, max, warmMs: TRIP_WARM_MS };
}

/**
 * Untimed round trips before the timed ones, in ms. After 20 ms (what this was), Bun's round
 * trips on one core measured its optimizing compiler: 64 B, 73-213 µs of CPU per round trip
 * against 12-14 µs after 1 s, for the parked and the spinning channel alike.
 */
const TRIP_WARM_MS = 1000;
/**
 * Per message size: ring bytes of the stream's channel (native_ring gets the same) and of each
 * round-trip channel (one message fits in one record), and the round trips (timed for 100 ms
 * after {@linkcode TRIP_WARM_MS} untimed, at most `max`).
 */
const PER_SIZE: Record<number, { capacity: number; tripCapacity: number; trips: TripBudget }> = {
  64: { capacity: 256 * KIB, tripCapacity: 64 * KIB, trips: tripBudget(2000) },
  4096: { capacity: 256 * KIB, tripCapacity: 64 * KIB, trips: tripBudget(2000) },
  65536: { capacity: 4 * MIB, tripCapacity: 256 * KIB, trips: tripBudget(1000) },
  [MIB]: { capacity: 4 * MIB, tripCapacity: 4 * MIB, trips: tripBudget(200) },
};

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

/** What native_ring prints (the parts used here). */
interface NativeRing {
  /** With the CPU time and voluntary switches of both processes per message, read as `Meter` does. */
  throughput: { msgs_per_s: number; cpu_ns_per_msg?: number; vcs_per_msg?: number }[];
  latency_parked: { median_us: number; p99_us: number };
  latency_spin_then_park: { median_us: number; p99_us: number };
}

const LOOP = "the channel's calls are synchronous; the other side runs an async event loop";

/**
 * The ratios the report shows, for each runtime, size and placement (see {@linkcode ratios}):
 * `native.*` is the Rust ring of the same run; `!` marks a synchronous channel against an event
 * loop.
 */
const RATIOS = [
  "msgs_per_s channel / socket = channel (copying) / Unix socket, one write per message !",
  "msgs_per_s channel / socket_packed = channel (copying) / Unix socket, packed 64 KiB writes !",
  "msgs_per_s channel / native.copy = channel (copying) / the Rust ring copying",
  "msgs_per_s channel_timeout / socket = channel with a receive timeout / Unix socket !",
  "msgs_per_s channel_timeout / native.copy = channel with a receive timeout / the Rust ring",
  "msgs_per_s channel_timeout / channel = channel with a receive timeout / without",
  "msgs_per_s channel_batch / native.copy = channel batch / the Rust ring copying",
  "msgs_per_s channel_batch / socket = channel batch / Unix socket, one write per message !",
  "msgs_per_s channel_batch / socket_packed = channel batch / Unix socket, packed 64 KiB writes !",
  "msgs_per_s channel_batch / channel = channel batch / one by one",
  "msgs_per_s channel_zc / socket = channel zero-copy / Unix socket !",
  "msgs_per_s channel_zc / native.zero_copy = channel zero-copy / the Rust ring zero-copy",
  "msgs_per_s channel_zc / channel = channel zero-copy / copying",
  "msgs_per_s channel_zc_fill / socket = channel zero-copy, filled in place / Unix socket !",
  "msgs_per_s channel_zc_fill / channel = channel zero-copy, filled in place / copying",
  "msgs_per_s channel / stdio = channel (copying) / stdio pipe !",
  "msgs_per_s channel / ipc_json = channel (copying) / the runtime's ipc, json !",
  "msgs_per_s channel / ipc_advanced = channel (copying) / the runtime's ipc, advanced !",
  "msgs_per_s native.copy / socket = the Rust ring copying / Unix socket",
  "msgs_per_s native.zero_copy / socket = the Rust ring zero-copy / Unix socket",
  "cpu_ns_per_msg channel / socket = CPU per message: channel (copying) / Unix socket !",
  "cpu_ns_per_msg channel_batch / channel = CPU per message: channel batch / one by one",
  "cpu_ns_per_msg channel / native.copy = CPU per message: channel (copying) / the Rust ring",
  "cpu_ns_per_msg channel_batch / native.copy = CPU per message: channel batch / the Rust ring",
  "median_us channel / socket = round trip: channel (parked) / Unix socket !",
  "median_us channel / stdio = round trip: channel (parked) / stdio pipes !",
  "median_us channel / ipc_json = round trip: channel (parked) / the runtime's ipc, json !",
  "median_us channel / ipc_advanced = round trip: channel (parked) / the runtime's ipc, advanced !",
  "median_us channel / native.copy = round trip: channel (parked) / the Rust ring parked",
  "median_us native.copy / socket = round trip: the Rust ring parked / Unix socket",
  "median_us channel_spin / socket = round trip: channel (spin, then park) / Unix socket !",
  "median_us channel_spin / native.spin = round trip: channel (spin, then park) / the Rust ring's",
  "median_us channel_spin / channel = round trip: channel (spin, then park) / parked",
  "cpu_us channel_spin / channel = CPU per round trip: channel (spin, then park) / parked",
  "cpu_us channel / socket = CPU per round trip: channel (parked) / Unix socket !",
];

/** The scenario. */
export const channel: Scenario = {
  name: "channel",
  method: "One transport and one message size per pair of processes. Stream: the peer sends " +
    `for ${STREAM.warmupMs} + ${STREAM.measureMs} ms (SB_BENCH_WARMUP_MS + SB_BENCH_MEASURE_MS), ` +
    "then ends the stream; the receiver (the measuring process) counts messages/s after its " +
    `first ${STREAM.warmupMs} ms, and reads the CPU time (/proc/<pid>/task/*/schedstat) and ` +
    "voluntary context switches (/proc/<pid>/task/*/status) of both processes when counting " +
    `starts and ${STREAM.measureMs / 2} ms later: CPU ns and switches per message. Round ` +
    "trips: the measuring side sends a message and waits for its echo, 100 ms of them after " +
    `${TRIP_WARM_MS} ms untimed (median, p99, and the CPU and switches of both processes per round trip). ` +
    "Every message carries its sequence number and every receiver checks it. The channel's " +
    "calls are synchronous while the sockets, pipes and IPC " +
    "are driven by an async event loop, as users write each: the figures compare what each API " +
    "gives, not the same loop. native: native_ring, the Rust ring with the same capacities, " +
    "copying (send / recv_into) and zero-copy (reserve + stamp in place + commit / recv_ref), " +
    "stamping and checking every message as the channel's pairs do, with the CPU time and " +
    "switches of both processes per message read the same way; its round trips (64 B, 4 KiB) " +
    "parked and spin-then-park. Transports: " +
    Object.entries(TRANSPORTS).map(([t, { how }]) => `${t}: ${how}`).join("; "),
  async run(ctx, skipped) {
    const out: Row[] = [];
    const bin = await nativeBinary("native_ring").catch((err) => (skipped("native", err), ""));
    for (const placement of ctx.placements) {
      const sizes = placement === "same" ? SAME_CORE_SIZES : SIZES;
      for (const size of ctx.run % 2 ? [...sizes].reverse() : sizes) {
        const { capacity, tripCapacity, trips } = PER_SIZE[size];
        const rings: [number, number] = [capacity, tripCapacity];
        for (const rt of ctx.runtimes) {
          const plans = Object.entries(TRANSPORTS).flatMap(([transport, plan]): PairPlan[] => {
            const stream = plan.stream.includes(size);
            const withTrips = plan.trips.includes(size);
            const here = (!plan.runtimes || plan.runtimes.includes(rt)) &&
              (placement === "split" || plan.sameCore);
            if (!here || !(stream || withTrips)) return [];
            return [{ transport, size, stream, trips: withTrips ? trips : null, capacity: rings }];
          });
          out.push(
            ...await pairRows(rt, placement, ctx.run % 2 ? plans.reverse() : plans, skipped),
          );
        }
        for (const zeroCopy of bin ? [false, true] : []) {
          const what = zeroCopy ? "zero_copy" : "copy";
          const withTrips = !zeroCopy && size <= 4 * KIB;
          // Counted over the same window as the pairs: after the warm-up, for the measured time.
          const args = `--size ${size} --capacity ${capacity} --pin ${placement} ` +
            `--warmup ${STREAM.warmupMs / 1e3} --seconds ${STREAM.measureMs / 1e3} ` +
            `--latency-size ${size} --round-trips ${withTrips ? trips.max : 100}` +
            (zeroCopy ? " --zero-copy" : "");
          try {
            const got = await runJson<NativeRing>([bin, ...args.split(" ")]);
            const base = { runtime: "native", size, placement };
            const { msgs_per_s, cpu_ns_per_msg, vcs_per_msg } = got.throughput[0];
            out.push(...rows({ ...base, what }, { msgs_per_s, cpu_ns_per_msg, vcs_per_msg }));
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
  compare: (ctx): Compare[] =>
    ctx.placements.flatMap((placement) =>
      ratios(
        RATIOS,
        wheres(ctx.runtimes, placement === "same" ? SAME_CORE_SIZES : SIZES, [placement]),
        LOOP,
      )
    ),
  children: { measure: measureAll, peer },
};
