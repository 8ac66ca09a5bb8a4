/**
 * The benchmark harness: the runtimes, child processes with their CPU placement and a timeout,
 * timing, and the figures a scenario reports. Every scenario (`bench/scenarios/*.ts`) uses it;
 * `bench/run.ts` repeats the scenarios and prints the JSON, `bench/report.ts` draws it.
 *
 * The same file runs in the driver (Deno) and in every child process (any runtime of
 * {@linkcode RUNTIMES}). Nothing here asserts anything about timing.
 *
 * @module
 */

import { spawn } from "node:child_process";
import {
  appendFileSync,
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import process from "node:process";

/** A JavaScript runtime the benchmarks run in. */
export type Runtime = "deno" | "bun" | "node";

/** The runtime running this file. */
export const runtime: Runtime = "Bun" in globalThis
  ? "bun"
  : "Deno" in globalThis
  ? "deno"
  : "node";

/** The repository's root folder (no trailing slash), also from the built copy in `dist/bench/`. */
export const root: string = decodeURIComponent(new URL("../", import.meta.url).pathname)
  .replace(/\/$/, "").replace(/\/dist$/, "");

/** An environment variable, or `fallback` when unset or empty. */
export function env(name: string, fallback: string): string;
/** An environment variable, or undefined when unset or empty. */
export function env(name: string): string | undefined;
export function env(name: string, fallback?: string): string | undefined {
  const value = process.env[name];
  return value === undefined || value === "" ? fallback : value;
}

/** An integer from the environment, or `fallback`. */
export function envInt(name: string, fallback: number): number {
  const value = Number.parseInt(env(name) ?? "", 10);
  return Number.isFinite(value) ? value : fallback;
}

/** How the driver starts one runtime, and what it loads there. */
export interface RuntimeInfo {
  /** The executable (from the environment variable of the runtime's name, upper case). */
  exe: string;
  /** The command line that runs `script` (a path under `bench/`) with `args`. */
  command(script: string, args: string[]): string[];
  /** The library's entry point for this runtime, relative to the repository root. */
  entry: string;
  /** Why this runtime cannot run here, or null. */
  missing(): string | null;
}

/** Null if `exe` (a path, or a name on the PATH) exists, else why not. */
const probe = (exe: string, variable: string) =>
  existsSync(exe) || process.env.PATH?.split(":").some((d) => existsSync(`${d}/${exe}`))
    ? null
    : `${exe} not found (set ${variable})`;

/**
 * Every runtime the benchmarks know, in the order they are reported. Node runs the JavaScript
 * built into `dist/` (the same files, compiled), so its entry point and scripts live there.
 */
export const RUNTIMES: Record<Runtime, RuntimeInfo> = {
  deno: {
    exe: env("DENO", "deno"),
    command: (script, args) => [
      RUNTIMES.deno.exe,
      "run",
      "--allow-all",
      "--v8-flags=--expose-gc",
      `${root}/bench/${script}`,
      ...args,
    ],
    entry: "mod.ts",
    missing: () => probe(RUNTIMES.deno.exe, "DENO"),
  },
  bun: {
    exe: env("BUN", "bun"),
    command: (script, args) => [RUNTIMES.bun.exe, `${root}/bench/${script}`, ...args],
    entry: "bun.ts",
    missing: () => probe(RUNTIMES.bun.exe, "BUN"),
  },
  node: {
    exe: env("NODE", "node"),
    command: (script, args) => [
      RUNTIMES.node.exe,
      "--expose-gc",
      `${root}/dist/bench/${script.replace(/\.ts$/, ".js")}`,
      ...args,
    ],
    entry: "dist/node.js",
    missing: () =>
      probe(RUNTIMES.node.exe, "NODE") ??
        (existsSync(`${root}/dist/bench/child.js`) ? null : "no build in dist/bench/"),
  },
};

/** The library as the running runtime loads it (`mod.ts` in Deno, `bun.ts` in Bun). */
export const lib: typeof import("../mod.ts") = await import(
  `${root}/${RUNTIMES[runtime].entry}`
);

/** Prints a progress line on stderr. */
export function progress(message: string): void {
  console.error(`[bench] ${message}`);
}

// ---- placement and processes ------------------------------------------------------------------

/** Where the two sides of a two-process figure run. */
export type Placement = "same" | "split";

/** `taskset -c` CPU lists of the measuring side and its peer, per placement. */
export const PLACEMENTS: Record<Placement, { measuring: string; peer: string; text: string }> = {
  same: { measuring: "0", peer: "0", text: "both processes on CPU 0 (taskset -c 0)" },
  split: { measuring: "0", peer: "1", text: "measuring side on CPU 0, its peer on CPU 1" },
};

/** `command` under `taskset -c cpus`. */
export const pinned = (cpus: string, command: string[]) => ["taskset", "-c", cpus, ...command];

/** The command that runs role `role` of scenario `scenario` in `rt`, with `args` as JSON. */
export function childCommand(rt: Runtime, scenario: string, role: string, args: unknown = {}) {
  return RUNTIMES[rt].command("child.ts", [scenario, role, JSON.stringify(args)]);
}

/** A child process started with {@linkcode start}. */
export interface Child {
  /** Its stdout once it exited with 0; rejects with the reason otherwise. */
  done: Promise<string>;
  kill(): void;
}

/**
 * Starts `command` with stdout captured and stderr passed through, killed after `timeoutMs`. A
 * child stopped by SIGINT or SIGTERM stops the whole run (the user interrupted it).
 */
export function start(
  command: string[],
  options: { env?: Record<string, string>; timeoutMs?: number } = {},
): Child {
  const child = spawn(command[0], command.slice(1), {
    env: { ...process.env, ...options.env },
    stdio: ["ignore", "pipe", "inherit"],
  });
  let stdout = "";
  child.stdout!.setEncoding("utf8");
  child.stdout!.on("data", (chunk: string) => (stdout += chunk));
  const ms = options.timeoutMs ?? 60_000;
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    child.kill("SIGKILL");
  }, ms);
  const what = command.slice(command[0] === "taskset" ? 3 : 0)
    .map((arg) => (/^[[{]/.test(arg) ? "<json>" : arg.replace(`${root}/`, ""))).join(" ");
  const done = new Promise<string>((resolve, reject) => {
    child.on("error", (err) => reject(new Error(`${what}: ${err}`)));
    child.on("close", (code, signal) => {
      clearTimeout(timer);
      if (signal === "SIGINT" || signal === "SIGTERM") {
        progress(`interrupted (a child got ${signal})`);
        process.exit(130);
      }
      if (code === 0) resolve(stdout);
      else {reject(
          new Error(
            timedOut ? `${what}: killed after ${ms / 1e3} s` : `${what}: exit ${code ?? signal}`,
          ),
        );}
    });
  });
  return { done, kill: () => child.kill("SIGKILL") };
}

/** The last line of `stdout` that is a JSON object or array. */
export function lastJson<T>(stdout: string): T {
  const line = stdout.trim().split("\n").filter((l) => /^[[{]/.test(l)).pop();
  if (line === undefined) throw new Error(`no JSON in the output: ${stdout.slice(0, 300)}`);
  return JSON.parse(line) as T;
}

/** Runs `command` to its end and returns the JSON object it printed last. */
export async function runJson<T>(command: string[], options?: Parameters<typeof start>[1]) {
  return lastJson<T>(await start(command, options).done);
}

/** A name no other run uses, for segments and sockets. */
export function uniqueName(prefix: string): string {
  return `sb-${prefix}-${process.pid}-${Math.random().toString(36).slice(2, 8)}`;
}

const LEFTOVERS = `${root}/bench/out/.segments`;

/**
 * Records (`add`) or forgets (`remove`) POSIX segment names while they exist, so that an
 * interrupted run removes them on the next start ({@linkcode removeLeftovers}); 1 GiB segments
 * must not outlive a run. Best effort.
 */
export function leftovers(action: "add" | "remove", ids: string[]): void {
  try {
    if (action === "add") {
      mkdirSync(`${root}/bench/out`, { recursive: true });
      appendFileSync(LEFTOVERS, ids.map((id) => `${id}\n`).join(""));
      return;
    }
    const rest = readFileSync(LEFTOVERS, "utf8").split("\n").filter((l) => l && !ids.includes(l));
    writeFileSync(LEFTOVERS, rest.map((l) => `${l}\n`).join(""));
  } catch {
    // No file or no permission: every scenario removes its own segments anyway.
  }
}

/** Removes the segments an interrupted run left behind (`/name` or `key:<n>` lines). */
export function removeLeftovers(): void {
  if (!existsSync(LEFTOVERS)) return;
  for (const id of readFileSync(LEFTOVERS, "utf8").split("\n").filter(Boolean)) {
    try {
      lib.SharedMemory.unlink(id.startsWith("key:") ? { key: Number(id.slice(4)) } : { name: id });
    } catch {
      // already gone
    }
  }
  rmSync(LEFTOVERS, { force: true });
}

/**
 * The executable of the native benchmark `crates/bench/benches/<name>.rs`, built by
 * `cargo bench --no-run` once per run.
 */
export async function nativeBinary(name: string): Promise<string> {
  const cached = nativeBinaries.get(name);
  if (cached) return cached;
  progress(`building crates/bench/benches/${name}.rs`);
  const out = await start([
    "cargo",
    "bench",
    "--manifest-path",
    `${root}/Cargo.toml`,
    "-p",
    "shared-buffer-bench",
    "--bench",
    name,
    "--no-run",
    "--message-format=json",
  ], { timeoutMs: 600_000 }).done;
  for (const line of out.split("\n")) {
    if (!line.startsWith("{")) continue;
    const message = JSON.parse(line);
    if (message.target?.name === name && message.executable) {
      nativeBinaries.set(name, message.executable);
      return message.executable;
    }
  }
  throw new Error(`cargo did not report a ${name} executable`);
}
const nativeBinaries = new Map<string, string>();

// ---- timing -----------------------------------------------------------------------------------

/** The median of `values` (NaN for none). */
export function median(values: readonly number[]): number {
  if (values.length === 0) return NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}

/** `value` rounded to `digits` significant-looking decimals, for JSON that people read. */
export function round(value: number, digits = 3): number {
  const scale = 10 ** digits;
  return Math.round(value * scale) / scale;
}

/** Nanoseconds per call of `op` in one block of `iters` calls. */
export function timeBlock(iters: number, op: () => void): number {
  const start = performance.now();
  for (let i = 0; i < iters; i++) op();
  return ((performance.now() - start) * 1e6) / iters;
}

/** The iteration count that makes one block of `op` last about `targetMs`. */
export function calibrate(targetMs: number, op: () => void): number {
  for (let iters = 16;; iters *= 4) {
    const start = performance.now();
    for (let i = 0; i < iters; i++) op();
    const spent = performance.now() - start;
    if (spent >= targetMs / 4 || iters >= 1 << 24) {
      return Math.max(16, Math.round((iters * targetMs) / Math.max(spent, 1e-3)));
    }
  }
}

/** Median nanoseconds per call of `op` over `blocks` blocks of about 10 ms, after a warm-up. */
export function perCall(op: () => void, blocks = 10): number {
  const iters = calibrate(10, op);
  const ns: number[] = [];
  for (let b = 0; b < blocks; b++) ns.push(timeBlock(iters, op));
  return round(median(ns), 1);
}

/**
 * CPU time process `pid` used so far (every thread, nanoseconds), from the scheduler's own
 * accounting in `/proc/<pid>/task/<tid>/schedstat`: precise to the nanosecond, where
 * `process.cpuUsage()` and `/proc/<pid>/stat` count clock ticks. 0 where there is no `/proc`.
 */
export function cpuNs(pid: number = process.pid): number {
  try {
    return readdirSync(`/proc/${pid}/task`).reduce((total, tid) => {
      try {
        return total +
          Number(readFileSync(`/proc/${pid}/task/${tid}/schedstat`, "utf8").split(" ")[0]);
      } catch {
        return total; // the thread ended meanwhile
      }
    }, 0);
  } catch {
    return 0;
  }
}

/** Median and 99th percentile of per-round-trip times, in microseconds. */
export interface Latency {
  median_us: number;
  p99_us: number;
  /** CPU used per round trip by both processes (or every thread of one process), when known. */
  cpu_us?: number;
}

/**
 * Times `n` round trips after `warmup` untimed ones, each with `performance.now()` (whose cost is
 * inside every sample), and the CPU that this process and `peerPid` used over the timed ones.
 */
export async function roundTrips(
  n: number,
  warmup: number,
  once: (i: number) => void | Promise<void>,
  peerPid?: number,
): Promise<Latency> {
  const samples = new Float64Array(n);
  const cpu = () => cpuNs() + (peerPid ? cpuNs(peerPid) : 0);
  let cpu0 = 0;
  for (let i = 0; i < warmup + n; i++) {
    if (i === warmup) cpu0 = cpu();
    const t0 = performance.now();
    const pending = once(i);
    if (pending) await pending;
    if (i >= warmup) samples[i - warmup] = performance.now() - t0;
  }
  const used = cpu() - cpu0;
  samples.sort();
  const out: Latency = {
    median_us: round(samples[n >> 1] * 1e3, 2),
    p99_us: round(samples[Math.min(n - 1, Math.floor(n * 0.99))] * 1e3, 2),
  };
  if (used > 0) out.cpu_us = round(used / 1e3 / n, 2);
  return out;
}

// ---- figures ----------------------------------------------------------------------------------

/** One figure of one run: `value` of `metric` for `runtime`'s `what`. */
export interface Row {
  /** `deno`, `bun`, `node`, `native` (Rust) or `seed` (the seed package in Node). */
  runtime: string;
  /** The thing measured: a variant or transport name. */
  what: string;
  /** Message or segment bytes, when the figure has a size. */
  size?: number;
  placement?: Placement;
  metric: string;
  value: number;
}

/** Rows of the fields of `figures` (e.g. a {@linkcode Latency}) that are numbers. */
export function rows(base: Omit<Row, "metric" | "value">, figures: object): Row[] {
  return Object.entries(figures).filter(([, v]) => typeof v === "number").map((
    [metric, value],
  ) => ({
    ...base,
    metric,
    value,
  }));
}

/** The key that identifies a figure across runs and in {@linkcode Compare} specs. */
export function key(r: Omit<Row, "value">): string {
  return [r.runtime, r.what, r.size ?? "", r.placement ?? "", r.metric].join("|");
}

/** A ratio `num / den` of two figures of the same run, as the report shows it. */
export interface Compare {
  /** What the ratio says, in words. */
  label: string;
  num: Omit<Row, "value">;
  den: Omit<Row, "value">;
  /** Where the two sides differ in how they are driven, when they do. */
  note?: string;
}

/** What the scenarios get from the driver. */
export interface Context {
  /** Runtimes that run here, in report order. */
  runtimes: Runtime[];
  /** Placements that exist here (split needs two CPUs). */
  placements: Placement[];
  /** The run number, from 0; odd runs may reverse their order. */
  run: number;
}

/** One benchmark scenario: what it measures, and the comparisons the report shows. */
export interface Scenario {
  /** Its file name under `bench/scenarios/`, without `.ts`. */
  name: string;
  /** The method, in words (goes into the JSON and the report). */
  method: string;
  /** One run: every figure once. A part that fails is thrown away and named in `skipped`. */
  run(ctx: Context, skipped: (what: string, why: unknown) => void): Promise<Row[]>;
  /** The ratios of this scenario's figures that the report shows. */
  compare(ctx: Context): Compare[];
  /** The roles its child processes play: `bench/child.ts <scenario> <role> <json>`. */
  children: Record<string, (args: any) => unknown>;
}

/** Runs `fn` and records its failure as skipped under `what` instead of throwing. */
export async function attempt<T>(
  what: string,
  skipped: (what: string, why: unknown) => void,
  fn: () => Promise<T>,
): Promise<T | undefined> {
  try {
    return await fn();
  } catch (err) {
    skipped(what, err);
    return undefined;
  }
}
