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

/** An environment variable, or undefined when unset or empty. */
export function env(name: string): string | undefined {
  return process.env[name] || undefined;
}

/** An integer from the environment, or `fallback`. */
export function envInt(name: string, fallback: number): number {
  const value = Number.parseInt(process.env[name] ?? "", 10);
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

/**
 * A runtime that runs `exe` (or `$VARIABLE`) with `flags`, the scripts under `dir` (`ext` for
 * `.ts`) and the library's `entry`.
 */
function runtimeInfo(variable: string, flags: string, dir: string, entry: string): RuntimeInfo {
  const exe = env(variable) ?? variable.toLowerCase();
  const ext = dir === "bench" ? ".ts" : ".js";
  const onPath = () => process.env.PATH?.split(":").some((d) => existsSync(`${d}/${exe}`));
  return {
    exe,
    command: (
      script,
      args,
    ) => [
      exe,
      ...flags.split(" ").filter(Boolean),
      `${root}/${dir}/${script.replace(/\.ts$/, ext)}`,
      ...args,
    ],
    entry,
    missing: () =>
      !existsSync(exe) && !onPath()
        ? `${exe} not found (set ${variable})`
        : existsSync(`${root}/${dir}/child${ext}`)
        ? null
        : `no ${dir}/child${ext} (make build)`,
  };
}

/**
 * Every runtime the benchmarks know, in the order they are reported. Node runs the JavaScript
 * built into `dist/` (the same files, compiled), so its entry point and scripts live there.
 */
export const RUNTIMES: Record<Runtime, RuntimeInfo> = {
  deno: runtimeInfo("DENO", "run --allow-all --v8-flags=--expose-gc", "bench", "mod.ts"),
  bun: runtimeInfo("BUN", "", "bench", "bun.ts"),
  node: runtimeInfo("NODE", "--expose-gc", "dist/bench", "dist/node.js"),
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

/**
 * Starts `command` with stdout captured and stderr passed through, killed after `timeoutMs`. A
 * child stopped by SIGINT or SIGTERM stops the whole run (the user interrupted it).
 */
export function start(
  command: string[],
  options: { env?: Record<string, string>; timeoutMs?: number } = {},
): { done: Promise<string>; kill(): void } {
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
      if (code === 0) return resolve(stdout);
      const why = timedOut ? `killed after ${ms / 1e3} s` : `exit ${code ?? signal}`;
      reject(new Error(`${what}: ${why}`));
    });
  });
  return { done, kill: () => child.kill("SIGKILL") };
}

/** Runs `command` to its end and returns the JSON object or array it printed last. */
export async function runJson<T>(command: string[], options?: Parameters<typeof start>[1]) {
  const stdout = await start(command, options).done;
  const line = stdout.trim().split("\n").filter((l) => /^[[{]/.test(l)).pop();
  if (line === undefined) throw new Error(`no JSON in the output: ${stdout.slice(0, 300)}`);
  return JSON.parse(line) as T;
}

/**
 * A name no other run uses, for segments and sockets; not one of the names the test suite's check
 * for leftovers looks at (`sbtest-`, `sb-`), so a bench may run beside `make test`.
 */
export function uniqueName(prefix: string): string {
  return `sbbench-${prefix}-${process.pid}-${Math.random().toString(36).slice(2, 8)}`;
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
 * A new keyed segment of `size` bytes under a random key nobody uses, populated. It is listed as
 * a leftover ({@linkcode leftovers}) before its pages are made: that takes up to a second at
 * 1 GiB, and a run stopped meanwhile used to leave the segment, resident, past every later run.
 */
export function createKeyed(
  size: number,
): { key: number; shm: ReturnType<typeof lib.SharedMemory.create> } {
  for (let tries = 0;; tries++) {
    const key = 0x5b00_0000 + Math.floor(Math.random() * 0xff_ffff);
    let shm;
    try {
      shm = lib.SharedMemory.create({ key }, size);
    } catch (err) {
      if (!(err instanceof lib.SharedMemoryError && err.code === "EEXIST") || tries > 100) {
        throw err;
      }
      continue;
    }
    leftovers("add", [`key:${key}`]);
    try {
      lib.SharedMemory.open({ key }, { populate: true }).close();
    } catch (err) {
      shm.close(); // the key stays listed: the next run removes it
      throw err;
    }
    return { key, shm };
  }
}

/**
 * The executable of the native benchmark `crates/bench/benches/<name>.rs`, built by
 * `cargo bench --no-run` once per run.
 */
export async function nativeBinary(name: string): Promise<string> {
  const cached = nativeBinaries.get(name);
  if (cached) return cached;
  progress(`building crates/bench/benches/${name}.rs`);
  const cargo = `cargo bench -p shared-buffer-bench --no-run --message-format=json --bench ${name}`;
  const out = await start([...cargo.split(" "), "--manifest-path", `${root}/Cargo.toml`], {
    timeoutMs: 600_000,
  }).done;
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

/** `values`' median and spread, each to 4 significant digits (small costs per message too). */
export function spread(values: number[]): Stat {
  const r = (v: number) => Number(v.toPrecision(4));
  return {
    median: r(median(values)),
    min: r(Math.min(...values)),
    max: r(Math.max(...values)),
    runs: values.map(r),
  };
}

/** `value` rounded to `digits` significant-looking decimals, for JSON that people read. */
export function round(value: number, digits = 3): number {
  const scale = 10 ** digits;
  return Math.round(value * scale) / scale;
}

/**
 * Times `ops` in interleaved blocks: after `warmup` untimed calls of each, every op gets the
 * iteration count that makes one block of it last about `blockMs` (the count of `countOf(name)`
 * when given, so that ops compared with each other run alike; `counts` may give some counts
 * already, which are then used as they are, and receives the ones found), then `blocks` rounds
 * time one block of every op each, in reverse order on odd rounds. Returns ns per call of each
 * block.
 */
export function timeOps(
  ops: Record<string, () => void>,
  {
    blocks = 10,
    blockMs = 10,
    warmup = 0,
    countOf = (name: string) => name,
    counts = {} as Record<string, number>,
  } = {},
): Record<string, number[]> {
  const block = (iters: number, op: () => void) => {
    const start = performance.now();
    for (let i = 0; i < iters; i++) op();
    return performance.now() - start;
  };
  for (const op of Object.values(ops)) block(warmup, op);
  for (const name of Object.keys(ops)) {
    for (let iters = 1; counts[countOf(name)] === undefined; iters *= 4) {
      const spent = block(iters, ops[countOf(name)]);
      if (spent >= blockMs / 4 || iters >= 1 << 24) {
        counts[countOf(name)] = Math.max(1, Math.round((iters * blockMs) / Math.max(spent, 1e-3)));
      }
    }
  }
  const ns: Record<string, number[]> = Object.fromEntries(Object.keys(ops).map((n) => [n, []]));
  for (let b = 0; b < blocks; b++) {
    const names = Object.keys(ops);
    for (const name of b % 2 ? names.reverse() : names) {
      const iters = counts[countOf(name)];
      ns[name].push((block(iters, ops[name]) * 1e6) / iters);
    }
  }
  return ns;
}

/** Median nanoseconds per call of each of `ops` over 10 interleaved blocks of about 10 ms. */
export function perCall(ops: Record<string, () => void>): Record<string, number> {
  const ns = timeOps(ops, { warmup: 1000 });
  return Object.fromEntries(Object.entries(ns).map(([k, v]) => [k, round(median(v), 1)]));
}

/** What process `pid` used so far, over every thread: see {@linkcode usage}. */
export interface Usage {
  /** CPU time, ns, from the scheduler's own accounting (`/proc/<pid>/task/<tid>/schedstat`). */
  cpu: number;
  /** Voluntary context switches (`voluntary_ctxt_switches` of each thread's `status`). */
  vcs: number;
}

/**
 * CPU time and voluntary context switches of `pids` so far, summed over every thread of each:
 * precise to the nanosecond, where `process.cpuUsage()` and `/proc/<pid>/stat` count clock
 * ticks. Zeros where there is no `/proc`; a thread that ended meanwhile is left out.
 */
export function usage(...pids: number[]): Usage {
  const u = { cpu: 0, vcs: 0 };
  for (const pid of pids) {
    try {
      for (const tid of readdirSync(`/proc/${pid}/task`)) {
        try {
          const dir = `/proc/${pid}/task/${tid}`;
          u.cpu += Number(readFileSync(`${dir}/schedstat`, "utf8").split(" ")[0]);
          u.vcs += Number(
            /^voluntary_ctxt_switches:\s*(\d+)/m.exec(readFileSync(`${dir}/status`, "utf8"))?.[1],
          );
        } catch {
          // the thread ended meanwhile
        }
      }
    } catch {
      // no /proc, or the process ended
    }
  }
  return u;
}

/** CPU time process `pid` used so far (every thread, nanoseconds): {@linkcode usage}'s. */
export const cpuNs = (pid: number = process.pid): number => usage(pid).cpu;

/** Median and 99th percentile of per-round-trip times, in microseconds. */
export interface Latency {
  median_us: number;
  p99_us: number;
  /** CPU used per round trip by both processes (or every thread of one process), when known. */
  cpu_us?: number;
  /** Voluntary context switches per round trip of both processes, when known. */
  vcs?: number;
}

/** How long round trips run: a time budget, and at most `max` timed ones. */
export interface TripBudget {
  ms: number;
  max: number;
  /** Untimed round trips before them, in ms; default a fifth of `ms`. */
  warmMs?: number;
}

/**
 * Times round trips one by one with `performance.now()` (whose cost is inside every sample):
 * untimed ones for `budget.warmMs` (a fifth of `budget.ms` if not given; at least 10 round
 * trips), then timed ones until `budget.ms` has
 * passed (at least 20) or `budget.max` were timed; and what this process and `peerPid` used
 * over the timed ones.
 */
export async function roundTrips(
  budget: TripBudget,
  once: (i: number) => void | Promise<void>,
  peerPid?: number,
): Promise<Latency> {
  const samples = new Float64Array(budget.max);
  const pids = peerPid ? [process.pid, peerPid] : [process.pid];
  let i = 0;
  const warmUntil = performance.now() + (budget.warmMs ?? budget.ms / 5);
  while (i < 10 || performance.now() < warmUntil) {
    const pending = once(i++);
    if (pending) await pending;
  }
  const u0 = usage(...pids);
  const stopAt = performance.now() + budget.ms;
  let n = 0;
  for (; n < budget.max && (n < 20 || performance.now() < stopAt); n++) {
    const t0 = performance.now();
    const pending = once(i++);
    if (pending) await pending;
    samples[n] = performance.now() - t0;
  }
  const u1 = usage(...pids);
  const sorted = samples.subarray(0, n).sort();
  const out: Latency = {
    median_us: round(sorted[n >> 1] * 1e3, 2),
    p99_us: round(sorted[Math.min(n - 1, Math.floor(n * 0.99))] * 1e3, 2),
  };
  if (u1.cpu > u0.cpu) out.cpu_us = round((u1.cpu - u0.cpu) / 1e3 / n, 2);
  if (u1.vcs > u0.vcs) out.vcs = round((u1.vcs - u0.vcs) / n, 2);
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
  const numbers = Object.entries(figures).filter(([, v]) => typeof v === "number");
  return numbers.map(([metric, value]) => ({ ...base, metric, value }));
}

/** Rows of one `metric`, a `what` for each field of `values`. */
export function whats(
  base: Omit<Row, "what" | "metric" | "value">,
  metric: string,
  values: object,
) {
  return rows({ ...base, what: "" }, values).map((r) => ({ ...r, what: r.metric, metric }));
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

/** The parts of a {@linkcode Row} that place a figure: the same for both sides of a ratio. */
export type Where = Pick<Row, "runtime" | "size" | "placement">;

/**
 * The ratios that lines `"<metric> <num> / <den> = <label>"` describe, at each of `wheres`: a
 * side is a `what` of the place's runtime, or `<runtime>.<what>` (`native.copy`: the Rust ring);
 * a trailing `!` marks the sides as driven differently, which `note` says how.
 */
export function ratios(lines: string[], wheres: Where[], note?: string): Compare[] {
  return wheres.flatMap((where) =>
    lines.map((line): Compare => {
      const [, metric, num, den, label, bang] = /^(\S+) (\S+) \/ (\S+) = (.*?)( !)?$/.exec(line)!;
      const side = (w: string) => {
        const [who, of = metric] = w.split(":");
        const [runtime, what] = who.includes(".") ? who.split(".") : [where.runtime, who];
        return { ...where, runtime, what, metric: of };
      };
      return { label, num: side(num), den: side(den), note: bang ? note : undefined };
    })
  );
}

/** Every combination of the given runtimes, sizes and placements. */
export function wheres(
  runtimes: string[],
  sizes: (number | undefined)[] = [undefined],
  placements: (Placement | undefined)[] = [undefined],
): Where[] {
  return placements.flatMap((placement) =>
    sizes.flatMap((size) => runtimes.map((runtime) => ({ runtime, size, placement })))
  );
}

/** A figure's or a ratio's median over runs, with its spread. */
export interface Stat {
  median: number;
  min: number;
  max: number;
  runs: number[];
}

/** A figure over every run, as `bench/out/results.json` has it. */
export interface Figure extends Omit<Row, "value">, Stat {
  scenario: string;
}

/** A ratio over every run, as `bench/out/results.json` has it. */
export interface Ratio extends Compare, Stat {
  scenario: string;
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

/**
 * The rows of `fn` for each of `whos`, one after another (in reverse order on odd runs); one that
 * fails is recorded as skipped under its name and the others still run.
 */
export async function each<T extends string>(
  ctx: Context,
  skipped: (what: string, why: unknown) => void,
  whos: T[],
  fn: (who: T) => Promise<Row[]>,
): Promise<Row[]> {
  const out: Row[] = [];
  for (const who of ctx.run % 2 ? [...whos].reverse() : whos) {
    try {
      out.push(...await fn(who));
    } catch (err) {
      skipped(who, err);
    }
  }
  return out;
}
