/**
 * The channel benchmark section (`bench/out/channel.json`): shared-buffer's `Channel` between two
 * processes against what Deno and Bun users have today, side by side in one run, for 64 B, 4 KiB,
 * 64 KiB and 1 MiB messages:
 *
 * - **one-way throughput** (messages/s and bytes/s, counted by the receiver after a warm-up):
 *   the channel's copying path (`send` / `recvInto`) and its zero-copy path (`reserve` + `commit` /
 *   `recvView`); the runtime's Unix-domain socket with length-prefixed frames, one message per
 *   write, and (64 B) many frames packed into 64 KiB writes; a child's stdout pipe (framed, one
 *   message per write); Bun's `Bun.spawn({ ipc })` with JSON and with advanced serialization
 *   (Deno has no IPC channel to a child); and the Rust ring (`bench/native_ring.rs`) doing the
 *   same, as the ceiling;
 * - **round trips** (median and p99): the measuring side sends a message and waits for the echo;
 *   both channel endpoints use `{ spin: 0 }`, so every message wakes a receiver parked in the
 *   kernel (`channel_spin`: the default spin-then-park, 64 B only); the same over the socket, the
 *   child's stdin/stdout and Bun's IPC; native: the ring with `spin: 0` and with its default.
 *
 * Placement is part of every figure: `split` runs the measuring process (the receiver of the
 * stream) under `taskset -c 0` and its peer (the sender, the echo side) under `taskset -c 1`;
 * `same` runs both under `taskset -c 0`; native_ring gets `--pin split|same`.
 *
 * `deno run -A bench/channel.ts` is the driver and prints one JSON object. It runs this file as
 * `channel.ts measure <spec>` under each runtime (that process starts `channel.ts peer <spec>`,
 * see `bench/channel_pair.ts`) and the native binary. Knobs (environment): `SB_CHANNEL_MEASURE_MS`
 * (counted part of each stream, default 300), `SB_CHANNEL_WARMUP_MS` (default 100),
 * `SB_CHANNEL_ROUNDS` (default 2; each figure is the median over rounds; odd rounds run the
 * jobs in reverse order),
 * `SB_CHANNEL_RT_SCALE` (multiplies the round-trip counts, default 1), `SB_CHANNEL_PLACEMENTS`
 * (`split,same`), `SB_CHANNEL_RUNTIMES` (`deno,bun`), `SB_CHANNEL_TRANSPORTS`,
 * `SB_CHANNEL_SIZES` (`64,4096,65536,1048576`), `SB_CHANNEL_PEER_CHECK_MS` (endpoint option,
 * default the library's), `SB_CHANNEL_SPIN` (`spin` of the channel_spin endpoints, default the
 * library's), `NATIVE_RING_BIN`, `DENO`, `BUN`. `SB_BENCH_CPUS` is ignored: each
 * figure has its own placement.
 *
 * @module
 */

import { spawn } from "node:child_process";
import { appendFileSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import process from "node:process";
import {
  checkInterrupted,
  env,
  envInt,
  median,
  nativeBinary as nativeBinaryOf,
  progress,
  root,
  round,
  run,
} from "./common.ts";
import type { PairResult, Spec, Transport } from "./channel_pair.ts";
import { channelChartSvg } from "./channel_chart.ts";

type Runtime = "deno" | "bun";
type Placement = "split" | "same";

const SIZES = [64, 4096, 65536, 1 << 20];
const KIB = 1024;
const MIB = 1 << 20;

/** Ring bytes of the one-way stream's channel, per message size (also given to native_ring). */
const CAPACITY: Record<number, number> = {
  64: 256 * KIB,
  4096: 256 * KIB,
  65536: 4 * MIB,
  [MIB]: 4 * MIB,
};
/** Ring bytes of each round-trip channel: one message fits as one record (native: 64 KiB). */
const LATENCY_CAPACITY: Record<number, number> = {
  64: 64 * KIB,
  4096: 64 * KIB,
  65536: 256 * KIB,
  [MIB]: 4 * MIB,
};
/** Timed round trips per size (before SB_CHANNEL_RT_SCALE); a tenth more run untimed first. */
const ROUND_TRIPS: Record<number, number> = { 64: 2000, 4096: 2000, 65536: 1000, [MIB]: 200 };

/** What each transport measures: throughput and round trips at which sizes. */
const PLAN: Record<Transport, { throughput: number[]; latency: number[]; runtimes: Runtime[] }> = {
  channel: { throughput: SIZES, latency: SIZES, runtimes: ["deno", "bun"] },
  channel_zc: { throughput: SIZES, latency: [], runtimes: ["deno", "bun"] },
  channel_zc_fill: { throughput: [65536, MIB], latency: [], runtimes: ["deno", "bun"] },
  channel_spin: { throughput: [], latency: [64], runtimes: ["deno", "bun"] },
  socket: { throughput: SIZES, latency: SIZES, runtimes: ["deno", "bun"] },
  socket_packed: { throughput: [64], latency: [], runtimes: ["deno", "bun"] },
  stdio: { throughput: SIZES, latency: SIZES, runtimes: ["deno", "bun"] },
  ipc_json: { throughput: SIZES, latency: SIZES, runtimes: ["bun"] },
  ipc_advanced: { throughput: SIZES, latency: SIZES, runtimes: ["bun"] },
};

const TRANSPORTS: Record<Transport, string> = {
  channel:
    "shared-buffer Channel, copying path: sender.send(Uint8Array) copies into the ring, receiver.recvInto(buffer) copies it out into one reused buffer; round trips: both endpoints { spin: 0 }, so each message wakes a parked receiver (futex)",
  channel_zc:
    "shared-buffer Channel, zero-copy path: sender.reserve(n) + stamp in place + commit(); receiver.recvView() (a view into the ring, valid until the next receive)",
  channel_zc_fill:
    "the zero-copy path with the producer writing every byte of the message in place (slot.fill) before stamping it, as a producer that builds its message in the ring would",
  channel_spin:
    "shared-buffer Channel round trips with the default endpoint options (spin 64 then park)",
  socket:
    "the runtime's Unix-domain stream socket (Deno.listen/connect({transport:'unix'}); Bun.listen/connect({unix})), 4-byte length prefix, one message per write (partial writes retried; Bun: on drain); the receiver reads into one 256 KiB buffer (Deno) or takes Bun's data chunks and parses frames in place, copying only frames split across reads",
  socket_packed:
    "the same socket with many frames packed into each 64 KiB write (see packed_per_write)",
  stdio:
    "the peer is a child with piped stdio: the stream goes child stdout -> parent (Deno.Command / Bun.spawn stdout ReadableStream), written one frame per blocking write (Deno.stdout.writeSync / fs.writeSync); round trips go parent -> child stdin -> child stdout -> parent",
  ipc_json:
    "Bun only: Bun.spawn({ ipc, serialization: 'json' }); the child process.send()s { s: seq, d: a string of n characters }; a credit window (ipc_window messages, acknowledged every quarter) bounds what is in flight, since send() never pushes back",
  ipc_advanced:
    "Bun only: Bun.spawn({ ipc, serialization: 'advanced' }) (structured clone); messages { s: seq, d: Uint8Array(n) }, same credit window",
};

const PLACEMENTS: Record<Placement, { peer: string; text: string; native: string }> = {
  split: {
    peer: "1",
    text:
      "split: measuring process (stream receiver, round-trip initiator) taskset -c 0, peer (stream sender, echo) taskset -c 1",
    native: "native_ring --pin split (consumer CPU 0, producer/echo CPU 1)",
  },
  same: {
    peer: "0",
    text: "same core: both processes taskset -c 0",
    native: "native_ring --pin same (both on CPU 0)",
  },
};

/** Goal targets, as in the brief: ratios of the same run and placement. */
const GOALS = {
  small_vs_socket: 10,
  zc_vs_socket: 2,
  copy_vs_socket: 1,
  vs_native: 0.7,
  latency_vs_socket: 0.5,
};

function list(name: string, fallback: string[]): string[] {
  return (env(name) ?? fallback.join(",")).split(",").map((s) => s.trim()).filter(Boolean);
}

// ---- running children ---------------------------------------------------------------------------

interface Done {
  status: number | null;
  stdout: string;
  error?: string;
  signal?: string;
}

/** Runs a command with stdout captured, stderr passed through, killed after `ms`. */
function runFor(command: string[], ms: number): Promise<Done> {
  return new Promise((resolve) => {
    const child = spawn(command[0], command.slice(1), { stdio: ["ignore", "pipe", "inherit"] });
    let stdout = "";
    child.stdout!.setEncoding("utf8");
    child.stdout!.on("data", (chunk: string) => (stdout += chunk));
    const timer = setTimeout(() => child.kill("SIGKILL"), ms);
    child.on("error", (err) => {
      clearTimeout(timer);
      resolve({ status: null, stdout, error: String(err) });
    });
    child.on("close", (code, signal) => {
      clearTimeout(timer);
      if (code === 0) resolve({ status: 0, stdout });
      else {
        resolve({
          status: code,
          stdout,
          signal: signal ?? undefined,
          error: signal === "SIGKILL"
            ? `killed after ${ms / 1e3} s`
            : `${command.slice(0, 4).join(" ")} ... exited with ${code ?? signal}`,
        });
      }
    });
  });
}

/** The last stdout line that is a JSON object. */
function parseLast<T>(stdout: string): T {
  const line = stdout.trim().split("\n").filter((l) => l.startsWith("{")).pop();
  if (line === undefined) throw new Error(`no JSON in the output: ${stdout.slice(0, 300)}`);
  return JSON.parse(line) as T;
}

function runtimeCommand(which: Runtime, args: string[]): string[] {
  const path = `${root}/bench/channel.ts`;
  return which === "deno"
    ? [
      env("DENO", "deno"),
      "run",
      "--allow-ffi",
      "--allow-read",
      "--allow-write",
      "--allow-env",
      "--allow-run",
      "--allow-sys",
      "--allow-net",
      path,
      ...args,
    ]
    : [env("BUN", "bun"), path, ...args];
}

/**
 * Lists (or unlists) a pair's segments in `bench/out/.segments`, so that `run.sh` removes them if
 * this driver is interrupted. Best effort.
 */
function leftovers(action: "add" | "remove", names: string[]): void {
  const file = `${root}/bench/out/.segments`;
  const lines = names.map((n) => `name ${n}`);
  try {
    if (action === "add") {
      mkdirSync(`${root}/bench/out`, { recursive: true });
      appendFileSync(file, lines.join("\n") + "\n");
      return;
    }
    for (const n of names) rmSync(`/dev/shm/${n.slice(1)}`, { force: true });
    const rest = readFileSync(file, "utf8").split("\n").filter((l) => l && !lines.includes(l));
    if (rest.length) writeFileSync(file, rest.join("\n") + "\n");
    else rmSync(file, { force: true });
  } catch {
    // No permission or no file: the pair removes its own segments anyway.
  }
}

type Figure = Record<string, unknown>;
type Skipped = { skipped: string };

let pairCount = 0;

async function pair(
  which: Runtime,
  placement: Placement,
  transport: Transport,
  size: number,
): Promise<PairResult | Skipped> {
  const plan = PLAN[transport];
  const scale = Number(env("SB_CHANNEL_RT_SCALE") ?? "1") || 1;
  const n = Math.max(20, Math.round(ROUND_TRIPS[size] * scale));
  const name = `sb-chbench-${process.pid}-${++pairCount}`;
  const peerCheck = env("SB_CHANNEL_PEER_CHECK_MS");
  const spec: Spec = {
    transport,
    size,
    throughput: plan.throughput.includes(size)
      ? {
        warmupMs: envInt("SB_CHANNEL_WARMUP_MS", 100),
        measureMs: envInt("SB_CHANNEL_MEASURE_MS", 300),
      }
      : null,
    latency: plan.latency.includes(size) ? { n, warmup: Math.ceil(n / 10) } : null,
    peerCpu: PLACEMENTS[placement].peer,
    name,
    capacity: CAPACITY[size] ?? Math.max(256 * KIB, 1 << Math.ceil(Math.log2(4 * size + 64))),
    latencyCapacity: LATENCY_CAPACITY[size] ??
      Math.max(64 * KIB, 1 << Math.ceil(Math.log2(2 * size + 64))),
    peerCheckMs: peerCheck === undefined ? undefined : Number(peerCheck),
    spin: env("SB_CHANNEL_SPIN") === undefined ? undefined : envInt("SB_CHANNEL_SPIN", 64),
  };
  const segments = ["d", "p", "q"].map((s) => `/${name}-${s}`);
  leftovers("add", segments);
  try {
    const result = await runFor(
      ["taskset", "-c", "0", ...runtimeCommand(which, ["measure", JSON.stringify(spec)])],
      60_000,
    );
    checkInterrupted(result as Parameters<typeof checkInterrupted>[0]);
    if (result.error) return { skipped: result.error };
    return parseLast<PairResult>(result.stdout);
  } finally {
    leftovers("remove", segments);
    rmSync(`/tmp/${name}.sock`, { force: true });
  }
}

// ---- native ---------------------------------------------------------------------------------------

/** The native benchmark's executable (`NATIVE_RING_BIN`, or built by cargo). */
function nativeBinary(): { path?: string; error?: string } {
  return nativeBinaryOf("native_ring", "NATIVE_RING_BIN");
}

interface NativeOutput {
  pin: string;
  zero_copy: boolean;
  throughput: {
    size: number;
    capacity: number;
    messages: number;
    seconds: number;
    msgs_per_s: number;
    bytes_per_s: number;
  }[];
  latency_size: number;
  latency_parked: { round_trips: number; median_us: number; p99_us: number; mean_us: number };
  latency_spin_then_park: {
    round_trips: number;
    median_us: number;
    p99_us: number;
    mean_us: number;
  };
}

/** One native_ring run: one size, one capacity, copy or zero-copy; round trips of `latSize`. */
async function native(
  bin: string,
  placement: Placement,
  size: number,
  zeroCopy: boolean,
  latSize: number | null,
): Promise<NativeOutput | Skipped> {
  const seconds = (envInt("SB_CHANNEL_MEASURE_MS", 300) + envInt("SB_CHANNEL_WARMUP_MS", 100)) /
    1e3;
  const scale = Number(env("SB_CHANNEL_RT_SCALE") ?? "1") || 1;
  const args = [
    bin,
    "--size",
    String(size),
    "--capacity",
    String(CAPACITY[size]),
    "--pin",
    placement,
    "--seconds",
    String(seconds),
    "--round-trips",
    String(latSize === null ? 100 : Math.max(20, Math.round(ROUND_TRIPS[latSize] * scale))),
    "--latency-size",
    String(latSize ?? 64),
  ];
  if (zeroCopy) args.push("--zero-copy");
  const result = await runFor(args, 60_000);
  checkInterrupted(result as Parameters<typeof checkInterrupted>[0]);
  if (result.error) return { skipped: result.error };
  return parseLast<NativeOutput>(result.stdout);
}

// ---- pooling rounds and ratios ----------------------------------------------------------------------

/** The median over rounds of each figure (min and max of the medians kept when rounds > 1). */
function poolThroughput(list: Figure[]): Figure | undefined {
  const ok = list.filter((f) => f && typeof f.msgs_per_s === "number");
  if (!ok.length) return undefined;
  const pick = (k: string) => round(median(ok.map((f) => f[k] as number)), 0);
  const out: Figure = {
    msgs_per_s: pick("msgs_per_s"),
    bytes_per_s: pick("bytes_per_s"),
    gb_per_s: round(median(ok.map((f) => f.bytes_per_s as number)) / 1e9, 3),
    messages: pick("messages"),
    seconds: round(median(ok.map((f) => f.seconds as number)), 3),
  };
  if (ok[0].block_msgs_per_s) out.block_msgs_per_s = ok[0].block_msgs_per_s;
  if (ok.length > 1) out.rounds_msgs_per_s = ok.map((f) => f.msgs_per_s);
  return out;
}

function poolLatency(list: Figure[]): Figure | undefined {
  const ok = list.filter((f) => f && typeof f.median_us === "number");
  if (!ok.length) return undefined;
  const pick = (k: string) => round(median(ok.map((f) => f[k] as number)), 2);
  const out: Figure = {
    n: ok[0].n,
    median_us: pick("median_us"),
    p90_us: ok[0].p90_us === undefined ? undefined : pick("p90_us"),
    p99_us: pick("p99_us"),
    mean_us: pick("mean_us"),
  };
  if (ok.length > 1) {
    out.rounds = ok.map((f) => ({ median_us: f.median_us, p99_us: f.p99_us }));
  }
  return out;
}

function loadavg(): number[] | null {
  const result = run(["cat", "/proc/loadavg"]);
  return result.error ? null : result.stdout.trim().split(" ").slice(0, 3).map(Number);
}

async function driver(): Promise<unknown> {
  const wall = performance.now();
  const loadStart = loadavg();
  if (run(["taskset", "-c", "0", "true"]).error) {
    throw new Error("taskset does not work here (util-linux): every figure needs a placement");
  }
  const skipped: Record<string, string> = {};
  let placements = list("SB_CHANNEL_PLACEMENTS", ["split", "same"]) as Placement[];
  if (navigator.hardwareConcurrency < 2 && placements.includes("split")) {
    placements = placements.filter((p) => p !== "split");
    skipped.split = "only one CPU";
  }
  const runtimes: Runtime[] = [];
  const versions: Record<string, string> = {};
  for (const which of list("SB_CHANNEL_RUNTIMES", ["deno", "bun"]) as Runtime[]) {
    const probe = run([env(which.toUpperCase(), which), "--version"]);
    if (probe.error) skipped[which] = probe.error;
    else {
      runtimes.push(which);
      versions[which] = probe.stdout.trim().split("\n")[0];
    }
  }
  const selected = list("SB_CHANNEL_TRANSPORTS", [...Object.keys(PLAN), "native"]);
  const transports = selected.filter((t) => t !== "native") as Transport[];
  const sizes = list("SB_CHANNEL_SIZES", SIZES.map(String)).map(Number);
  const rounds = Math.max(1, envInt("SB_CHANNEL_ROUNDS", 2));
  const nativeBin = selected.includes("native")
    ? nativeBinary()
    : { error: "not selected (SB_CHANNEL_TRANSPORTS)" };
  if (nativeBin.error) skipped.native = nativeBin.error;

  type Job =
    | { kind: "pair"; placement: Placement; who: Runtime; transport: Transport; size: number }
    | { kind: "native"; placement: Placement; size: number; zeroCopy: boolean };
  const jobs: Job[] = [];
  // Size-major: everything compared at one size and placement runs back to back.
  for (const placement of placements) {
    for (const size of sizes) {
      for (const who of runtimes) {
        for (const transport of transports) {
          const plan = PLAN[transport];
          if (!plan) throw new Error(`unknown transport ${transport}`);
          if (!plan.runtimes.includes(who)) continue;
          if (plan.throughput.includes(size) || plan.latency.includes(size)) {
            jobs.push({ kind: "pair", placement, who, transport, size });
          }
        }
      }
      if (nativeBin.path) {
        jobs.push({ kind: "native", placement, size, zeroCopy: false });
        jobs.push({ kind: "native", placement, size, zeroCopy: true });
      }
    }
  }

  const pairs = new Map<string, { throughput: Figure[]; latency: Figure[]; extra: Figure }>();
  const slot = (key: string) => {
    if (!pairs.has(key)) pairs.set(key, { throughput: [], latency: [], extra: {} });
    return pairs.get(key)!;
  };
  const failures: Record<string, string[]> = {};
  for (let r = 0; r < rounds; r++) {
    // Odd rounds run backwards, so that drift over the run (other load, heat) hits both sides
    // of every comparison alike.
    const turn = r % 2 === 0 ? jobs : [...jobs].reverse();
    for (const job of turn) {
      if (job.kind === "pair") {
        const { placement, who, transport, size } = job;
        progress(`channel round ${r + 1}/${rounds}: ${placement} ${who} ${transport} ${size} B`);
        const key = `${placement}|${who}|${transport}|${size}`;
        const got = await pair(who, placement, transport, size);
        if ("skipped" in got) {
          (failures[key] ??= []).push(got.skipped);
          continue;
        }
        const s = slot(key);
        if (got.throughput) s.throughput.push(got.throughput as unknown as Figure);
        if (got.latency) s.latency.push(got.latency as unknown as Figure);
        if (got.packed_per_write) s.extra.packed_per_write = got.packed_per_write;
        if (got.ipc_window) s.extra.ipc_window = got.ipc_window;
        s.extra.version = got.version;
      } else {
        const { placement, size, zeroCopy } = job;
        const latSize = !zeroCopy && (size === 64 || size === 4096) ? size : null;
        progress(
          `channel round ${r + 1}/${rounds}: ${placement} native ${size} B${
            zeroCopy ? " zero-copy" : ""
          }`,
        );
        const transport = zeroCopy ? "zero_copy" : "copy";
        const key = `${placement}|native|${transport}|${size}`;
        const got = await native(nativeBin.path!, placement, size, zeroCopy, latSize);
        if ("skipped" in got) {
          (failures[key] ??= []).push(got.skipped);
          continue;
        }
        const t = got.throughput[0];
        const s = slot(key);
        s.throughput.push({ ...t, gb_per_s: t.bytes_per_s / 1e9 });
        if (latSize !== null) {
          s.latency.push(got.latency_parked as unknown as Figure);
          const spin = slot(`${placement}|native|spin|${size}`);
          spin.latency.push(got.latency_spin_then_park as unknown as Figure);
        }
      }
    }
  }

  // results[placement][who][transport][size] = { taskset, throughput?, latency? }
  const results: Record<string, Record<string, Record<string, Record<string, Figure>>>> = {};
  for (const [key, s] of pairs) {
    const [placement, who, transport, size] = key.split("|");
    const figure: Figure = {
      placement,
      taskset: who === "native"
        ? PLACEMENTS[placement as Placement].native
        : `measuring: taskset -c 0; peer: taskset -c ${PLACEMENTS[placement as Placement].peer}`,
      ...s.extra,
    };
    if (who === "native" || PLAN[transport as Transport]) {
      const capacity = transport.startsWith("channel") || who === "native";
      if (capacity && s.throughput.length) figure.capacity = CAPACITY[Number(size)];
      if (transport.startsWith("channel") && s.latency.length) {
        figure.latency_capacity = LATENCY_CAPACITY[Number(size)];
      }
      if (who === "native" && s.latency.length) figure.latency_capacity = 64 * KIB;
    }
    const t = poolThroughput(s.throughput);
    const l = poolLatency(s.latency);
    if (t) figure.throughput = t;
    if (l) figure.latency = l;
    ((results[placement] ??= {})[who] ??= {})[transport] ??= {};
    results[placement][who][transport][size] = figure;
  }
  for (const [key, reasons] of Object.entries(failures)) {
    const [placement, who, transport, size] = key.split("|");
    ((results[placement] ??= {})[who] ??= {})[transport] ??= {};
    const existing = results[placement][who][transport][size];
    if (existing) existing.failed_rounds = reasons;
    else results[placement][who][transport][size] = { placement, skipped: reasons[0] };
  }

  // Ratios of the same run and placement.
  const tput = (p: string, who: string, tr: string, size: number) =>
    (results[p]?.[who]?.[tr]?.[size]?.throughput as Figure | undefined)?.msgs_per_s as
      | number
      | undefined;
  const lat = (p: string, who: string, tr: string, size: number) =>
    results[p]?.[who]?.[tr]?.[size]?.latency as { median_us: number; p99_us: number } | undefined;
  const ratios: Figure[] = [];
  const goals: Figure[] = [];
  const ratio = (a?: number, b?: number) =>
    a === undefined || b === undefined || b === 0 ? null : round(a / b, 3);
  const addThroughput = (
    p: string,
    who: string,
    size: number,
    num: string,
    den: string,
    goal?: { name: string; atLeast: number },
  ) => {
    const [nWho, nTr] = num.includes(".") ? num.split(".") : [who, num];
    const [dWho, dTr] = den.includes(".") ? den.split(".") : [who, den];
    const value = ratio(tput(p, nWho, nTr, size), tput(p, dWho, dTr, size));
    const entry: Figure = {
      placement: p,
      runtime: who,
      size,
      metric: "messages/s (= bytes/s at one size)",
      ratio: `${nWho}.${nTr} / ${dWho}.${dTr}`,
      value,
    };
    if (goal) {
      entry.goal = `>= ${goal.atLeast}`;
      entry.goal_met = value === null ? null : value >= goal.atLeast;
      goals.push({ name: goal.name, ...entry });
    }
    ratios.push(entry);
  };
  const addLatency = (
    p: string,
    who: string,
    size: number,
    num: string,
    den: string,
    goal?: { name: string; atMost: number },
  ) => {
    const [nWho, nTr] = num.includes(".") ? num.split(".") : [who, num];
    const [dWho, dTr] = den.includes(".") ? den.split(".") : [who, den];
    const a = lat(p, nWho, nTr, size);
    const b = lat(p, dWho, dTr, size);
    const value = ratio(a?.median_us, b?.median_us);
    const entry: Figure = {
      placement: p,
      runtime: who,
      size,
      metric: "round trip (median; p99 ratio beside it)",
      ratio: `${nWho}.${nTr} / ${dWho}.${dTr}`,
      value,
      p99: ratio(a?.p99_us, b?.p99_us),
    };
    if (goal) {
      entry.goal = `<= ${goal.atMost}`;
      entry.goal_met = value === null ? null : value <= goal.atMost;
      goals.push({ name: goal.name, ...entry });
    }
    ratios.push(entry);
  };
  for (const p of placements) {
    for (const who of runtimes) {
      for (const size of sizes) {
        addThroughput(
          p,
          who,
          size,
          "channel",
          "socket",
          size === 64
            ? {
              name: "64 B messages/s >= 10x the Unix socket (one message per write)",
              atLeast: GOALS.small_vs_socket,
            }
            : size === 65536
            ? {
              name: "64 KiB copying path (send/recvInto) >= 1x the Unix socket in bytes/s",
              atLeast: GOALS.copy_vs_socket,
            }
            : undefined,
        );
        addThroughput(
          p,
          who,
          size,
          "channel",
          "native.copy",
          size === 64 || size === 65536
            ? {
              name: `${
                size === 64 ? "64 B" : "64 KiB copying path"
              } >= 0.7x the Rust ring doing the same`,
              atLeast: GOALS.vs_native,
            }
            : undefined,
        );
        if (PLAN.channel_zc_fill.throughput.includes(size)) {
          addThroughput(p, who, size, "channel_zc_fill", "socket");
          addThroughput(p, who, size, "channel_zc_fill", "channel");
        }
        if (PLAN.channel_zc.throughput.includes(size)) {
          addThroughput(
            p,
            who,
            size,
            "channel_zc",
            "socket",
            size === 65536
              ? {
                name:
                  "64 KiB zero-copy (reserve/commit + recvView) >= 2x the Unix socket in bytes/s",
                atLeast: GOALS.zc_vs_socket,
              }
              : undefined,
          );
          addThroughput(
            p,
            who,
            size,
            "channel_zc",
            "native.zero_copy",
            size === 65536
              ? {
                name: "64 KiB zero-copy >= 0.7x the Rust ring doing the same (--zero-copy)",
                atLeast: GOALS.vs_native,
              }
              : undefined,
          );
          addThroughput(p, who, size, "channel_zc", "channel");
        }
        if (size === 64) addThroughput(p, who, size, "channel", "socket_packed");
        addThroughput(p, who, size, "channel", "stdio");
        if (who === "bun") {
          addThroughput(p, who, size, "channel", "ipc_json");
          addThroughput(p, who, size, "channel", "ipc_advanced");
        }
        addThroughput(p, who, size, "native.copy", "socket");
        addLatency(p, who, size, "channel", "socket", {
          name: "round trip with the consumer parked <= 0.5x the Unix socket's",
          atMost: GOALS.latency_vs_socket,
        });
        addLatency(p, who, size, "channel", "stdio");
        if (who === "bun") {
          addLatency(p, who, size, "channel", "ipc_json");
          addLatency(p, who, size, "channel", "ipc_advanced");
        }
        if (size === 64 || size === 4096) {
          addLatency(p, who, size, "channel", "native.copy");
          // The floor of the round-trip goal: the Rust ring, parked, against this runtime's socket.
          addLatency(p, who, size, "native.copy", "socket");
        }
        if (size === 64) {
          addLatency(p, who, size, "channel_spin", "socket");
          addLatency(p, who, size, "channel_spin", "native.spin");
        }
      }
    }
  }

  return {
    section: "channel",
    what:
      "One-way streams and round trips between two processes, one transport and one message size per pair of processes. Throughput: the peer sends for warmup_ms + measure_ms, then ends the stream; the receiver (measuring process) starts its clock at the first message, ignores the first warmup_ms and counts the rest: msgs_per_s = messages / seconds, block_msgs_per_s = rates of ~25 ms blocks within the run. Round trips: warmup untimed then n timed, each timed with performance.now() (about 157 ns in Deno, 52 ns in Bun, inside each sample); percentiles as sorted[floor(n*q)]. Every message carries its sequence number in its first 4 bytes and a byte derived from it in its last byte; every receiver checks both, so a path that drops, repeats or truncates fails. Native: bench/native_ring.rs (Rust Channel, same ring protocol and capacities) in the same run; its round trips are 64 B and 4 KiB in 64 KiB rings, parked (spin 0) and spin-then-park.",
    versions,
    placements: Object.fromEntries(placements.map((p) => [p, PLACEMENTS[p].text])),
    transports: {
      ...TRANSPORTS,
      "native.copy / native.zero_copy":
        "bench/native_ring.rs: the Rust ring between two processes; copy = send(&[u8]) / recv_into(Vec), zero_copy = reserve + touch first and last byte + commit / recv_ref",
      "native.spin": "native_ring round trips with the default spin-then-park",
      deno_ipc:
        "Deno has no IPC channel between processes: no Bun.spawn({ ipc }) equivalent (only stdio, and node:child_process.fork in its Node compatibility layer, not measured here)",
    },
    capacities: {
      stream_bytes: CAPACITY,
      round_trip_bytes: LATENCY_CAPACITY,
      note:
        "Ring (data area) bytes per message size, a power of two; a message longer than capacity/2 - 8 would be fragmented, so every one here travels as one record. native_ring gets --capacity of the same stream ring; its round-trip rings are 64 KiB.",
    },
    settings: {
      warmup_ms: envInt("SB_CHANNEL_WARMUP_MS", 100),
      measure_ms: envInt("SB_CHANNEL_MEASURE_MS", 300),
      round_trips: Object.fromEntries(
        sizes.map((s) => [
          s,
          Math.max(
            20,
            Math.round(ROUND_TRIPS[s] * (Number(env("SB_CHANNEL_RT_SCALE") ?? "1") || 1)),
          ),
        ]),
      ),
      rounds,
      endpoint_options:
        "streams: library defaults (spin 64, peerCheckMs 100); round trips: { spin: 0 } (channel_spin: defaults)",
    },
    load_average: { at_start: loadStart, at_end: loadavg() },
    results,
    goals,
    ratios,
    parts_skipped: skipped,
    elapsed_s: round((performance.now() - wall) / 1e3, 1),
  };
}

const mode = process.argv[2] ?? "driver";
if (mode === "measure") {
  const { measure } = await import("./channel_pair.ts");
  console.log(JSON.stringify(await measure(JSON.parse(process.argv[3]))));
} else if (mode === "peer") {
  const { peer } = await import("./channel_pair.ts");
  await peer(JSON.parse(process.argv[3]));
  process.exit(0); // a stdin reader or an IPC channel would keep the process alive
} else if (mode === "driver") {
  const section = await driver();
  // The chart of this run, next to the JSON (bench/chart.ts redraws it from results.json).
  try {
    writeFileSync(`${root}/bench/out/channel.svg`, channelChartSvg(section));
  } catch (err) {
    progress(`channel: no chart (${err})`);
  }
  console.log(JSON.stringify(section, null, 2));
} else {
  throw new Error(`unknown mode ${mode}: use nothing (driver), measure or peer`);
}
