/**
 * Helpers shared by the benchmark scripts, neutral between Deno and Bun: the environment, block
 * timing and medians, and running child processes.
 *
 * Benchmarks here time blocks of many calls (one `performance.now()` costs about 157 ns in Deno)
 * and report medians over blocks and ratios between things measured side by side in one run;
 * they never assert anything about timing.
 *
 * @module
 */

import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import process from "node:process";

/** The runtime running this file. */
export const runtime: "deno" | "bun" = "Bun" in globalThis ? "bun" : "deno";

/** The repository's root folder (no trailing slash). */
export const root: string = decodeURIComponent(new URL("../", import.meta.url).pathname).replace(
  /\/$/,
  "",
);

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

/** The median of `values` (NaN for none). */
export function median(values: readonly number[]): number {
  if (values.length === 0) return NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}

/** `value` rounded to `digits` decimals, for JSON that people read. */
export function round(value: number, digits = 3): number {
  const scale = 10 ** digits;
  return Math.round(value * scale) / scale;
}

/** Runs `op` `iters` times and returns the nanoseconds per call. */
export function timeBlock(iters: number, op: () => void): number {
  const start = performance.now();
  for (let i = 0; i < iters; i++) op();
  return ((performance.now() - start) * 1e6) / iters;
}

/** The iteration count that makes one block of `op` last about `targetMs`. */
export function calibrate(targetMs: number, op: () => void): number {
  let iters = 16;
  for (;;) {
    const start = performance.now();
    for (let i = 0; i < iters; i++) op();
    const spent = performance.now() - start;
    if (spent >= targetMs / 4 || iters >= 1 << 24) {
      return Math.max(16, Math.round((iters * targetMs) / Math.max(spent, 1e-3)));
    }
    iters *= 4;
  }
}

/** The result of {@linkcode run}. */
export interface RunResult {
  /** The exit status, or null if killed by a signal. */
  status: number | null;
  /** Everything the command printed on stdout. */
  stdout: string;
  /** The signal that killed it, if one did. */
  signal?: string;
  /** Why it failed to start or exited non-zero, else undefined. */
  error?: string;
}

/**
 * Throws if a child was stopped by SIGINT or SIGTERM: the user (or make) is interrupting the run,
 * which a parent blocked in `spawnSync` may not see itself.
 */
export function checkInterrupted(result: RunResult): void {
  if (result.signal === "SIGINT" || result.signal === "SIGTERM") {
    throw new Error(`interrupted (a child got ${result.signal})`);
  }
}

/**
 * Runs a command to completion with stdout captured and stderr passed through (benchmarks print
 * progress there), with `extraEnv` added to this process's environment.
 */
export function run(command: string[], extraEnv: Record<string, string> = {}): RunResult {
  const result = spawnSync(command[0], command.slice(1), {
    env: { ...process.env, ...extraEnv },
    stdio: ["ignore", "pipe", "inherit"],
    encoding: "utf8",
    maxBuffer: 64 << 20,
  });
  const stdout = result.stdout ?? "";
  if (result.error) return { status: null, stdout, error: String(result.error) };
  if (result.status !== 0) {
    return {
      status: result.status,
      stdout,
      signal: result.signal ?? undefined,
      error: `${command.join(" ")} exited with ${result.status ?? result.signal}`,
    };
  }
  return { status: 0, stdout };
}

/** The command line that runs a TypeScript file of this folder in `which` runtime. */
export function scriptCommand(which: "deno" | "bun", script: string, args: string[]): string[] {
  const path = `${root}/bench/${script}`;
  return which === "deno"
    ? [
      env("DENO", "deno"),
      "run",
      "--allow-ffi",
      "--allow-read",
      "--allow-env",
      "--allow-run",
      "--v8-flags=--expose-gc",
      path,
      ...args,
    ]
    : [env("BUN", "bun"), path, ...args];
}

/** Prefixes `command` with `taskset -c $SB_BENCH_CPUS` when that variable is set. */
export function placed(command: string[]): string[] {
  const cpus = env("SB_BENCH_CPUS");
  return cpus ? ["taskset", "-c", cpus, ...command] : command;
}

/** How child processes are placed on CPUs, in words for the JSON. */
export function placement(): string {
  const cpus = env("SB_BENCH_CPUS");
  return cpus
    ? `every benchmark process pinned with taskset -c ${cpus}`
    : `unpinned (the scheduler places processes on ${navigator.hardwareConcurrency} CPUs)`;
}

/** Prints a progress line on stderr. */
export function progress(message: string): void {
  console.error(`[bench] ${message}`);
}

/**
 * The executable of the native benchmark `bench/<name>.rs`: the path in the environment variable
 * `variable` if set, else built by `cargo bench --no-run`.
 */
export function nativeBinary(name: string, variable: string): { path?: string; error?: string } {
  const given = env(variable);
  if (given) return existsSync(given) ? { path: given } : { error: `${given} does not exist` };
  progress(`building crates/bench/benches/${name}.rs (cargo bench --no-run)`);
  const built = run([
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
  ]);
  checkInterrupted(built);
  if (built.error) return { error: `cargo bench --no-run failed: ${built.error}` };
  for (const line of built.stdout.split("\n")) {
    if (!line.startsWith("{")) continue;
    const message = JSON.parse(line);
    if (message.target?.name === name && message.executable) return { path: message.executable };
  }
  return { error: `cargo did not report a ${name} executable` };
}
