/**
 * Helpers shared by `bench/wait.ts` and its Worker `bench/wait_worker.ts`, neutral between Deno
 * and Bun: round-trip statistics, the cost of the timer, and pinning the calling thread to a CPU.
 *
 * @module
 */

/** Median, 99th percentile and friends of per-round-trip times, in microseconds. */
export interface LatencyStats {
  /** Round trips timed (after the warm-up). */
  n: number;
  median_us: number;
  p90_us: number;
  p99_us: number;
  min_us: number;
  max_us: number;
  /** Whole timed loop over `n`: includes the per-round-trip timer calls. */
  mean_us: number;
}

/** `value` rounded to `digits` decimals. */
export function round(value: number, digits = 3): number {
  const scale = 10 ** digits;
  return Math.round(value * scale) / scale;
}

/**
 * Statistics of `samples` (milliseconds, as `performance.now()` differences). Percentiles are
 * `sorted[floor(n * q)]`, as `bench/native_wait.rs` computes them.
 */
export function latencyStats(samples: Float64Array, totalMs: number): LatencyStats {
  const sorted = Float64Array.from(samples).sort();
  const n = sorted.length;
  const at = (q: number) => round(sorted[Math.min(n - 1, Math.floor(n * q))] * 1e3, 2);
  return {
    n,
    median_us: at(0.5),
    p90_us: at(0.9),
    p99_us: at(0.99),
    min_us: round(sorted[0] * 1e3, 2),
    max_us: round(sorted[n - 1] * 1e3, 2),
    mean_us: round((totalMs * 1e3) / n, 2),
  };
}

/** What one `performance.now()` costs here and the smallest step it shows, in nanoseconds. */
export interface TimerCost {
  now_ns: number;
  resolution_ns: number;
}

/** Measures {@linkcode TimerCost} (a block of 200,000 calls, and the smallest non-zero step). */
export function timerCost(): TimerCost {
  let sink = 0;
  const n = 200_000;
  for (let i = 0; i < 20_000; i++) sink += performance.now();
  const start = performance.now();
  for (let i = 0; i < n; i++) sink += performance.now();
  const spent = performance.now() - start;
  let step = Infinity;
  let last = performance.now();
  for (let i = 0; i < 20_000; i++) {
    const now = performance.now();
    if (now > last && now - last < step) step = now - last;
    last = now;
  }
  if (sink === 0) throw new Error("unreachable: keeps sink alive");
  return { now_ns: round((spent * 1e6) / n, 1), resolution_ns: round(step * 1e6, 1) };
}

/**
 * Pins the calling thread (not the whole process) to `cpu` with Linux `sched_setaffinity(0, ...)`
 * from libc through the runtime's FFI. Returns null on success, else why it failed.
 */
export async function pinThread(cpu: number): Promise<string | null> {
  const mask = new BigUint64Array([1n << BigInt(cpu)]);
  try {
    let rc: number;
    if ("Bun" in globalThis) {
      const specifier = "bun:ffi"; // computed, so that Deno never resolves it
      const ffi = await import(specifier);
      const libc = ffi.dlopen("libc.so.6", {
        sched_setaffinity: { args: ["i32", "u64", "ptr"], returns: "i32" },
      });
      rc = libc.symbols.sched_setaffinity(0, 8, mask);
      libc.close();
    } else {
      const libc = Deno.dlopen(
        "libc.so.6",
        {
          sched_setaffinity: { parameters: ["i32", "usize", "buffer"], result: "i32" },
        } as const,
      );
      rc = libc.symbols.sched_setaffinity(0, 8n, mask);
      libc.close();
    }
    return rc === 0 ? null : `sched_setaffinity(0, CPU ${cpu}) returned ${rc}`;
  } catch (err) {
    return `could not call sched_setaffinity: ${err}`;
  }
}
