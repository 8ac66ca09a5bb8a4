/**
 * `make bench`: runs every scenario `SB_BENCH_RUNS` times (default 3; odd runs in reverse order,
 * so that drift over the run hits both sides of a comparison alike), keeps the median of each
 * figure and ratio with its spread (min and max over runs), writes `bench/out/results.json` and
 * prints it. `bench/report.ts` turns that file into the tables of `bench/README.md` and the chart.
 *
 * `deno run -A bench/run.ts [scenario...]` runs only some scenarios. Environment:
 * `SB_BENCH_RUNS`, `SB_BENCH_RUNTIMES` (default: every runtime of the harness that runs here),
 * `SB_BENCH_OUT` (the file written instead of `bench/out/results.json`; `bench/ab.ts` sets it),
 * `DENO`, `BUN`, `NODE` (executables).
 *
 * @module
 */

import { spawnSync } from "node:child_process";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { dirname } from "node:path";
import process from "node:process";
import {
  type Compare,
  type Context,
  env,
  envInt,
  type Figure,
  key,
  type Placement,
  PLACEMENTS,
  progress,
  removeLeftovers,
  root,
  round,
  type Row,
  type Runtime,
  RUNTIMES,
  spread,
} from "./harness.ts";
import { SCENARIOS } from "./scenarios.ts";

const wall = performance.now();
removeLeftovers();
const runs = Math.max(1, envInt("SB_BENCH_RUNS", 3));
const selected = process.argv.slice(2);
const scenarios = SCENARIOS.filter((s) => !selected.length || selected.includes(s.name));
const skipped: Record<string, string> = {};
const wanted = env("SB_BENCH_RUNTIMES")?.split(",");
const runtimes: Runtime[] = [];
for (const rt of Object.keys(RUNTIMES) as Runtime[]) {
  const missing = wanted && !wanted.includes(rt)
    ? "not in SB_BENCH_RUNTIMES"
    : RUNTIMES[rt].missing();
  if (missing) skipped[rt] = missing;
  else runtimes.push(rt);
}
const placements: Placement[] = navigator.hardwareConcurrency >= 2 ? ["same", "split"] : ["same"];
if (placements.length === 1) skipped.split = "only one CPU";

const loadavg = () => readFileSync("/proc/loadavg", "utf8").split(" ").slice(0, 3).map(Number);
const load = { at_start: loadavg(), at_end: [] as number[] };
const versions: Record<string, string> = {};
for (const rt of runtimes) {
  const out = spawnSync(RUNTIMES[rt].exe, ["--version"], { encoding: "utf8" }).stdout ?? "";
  versions[rt] = `${rt} ${out.match(/\d+\.\d+\.\d+/)?.[0] ?? "?"}`;
}

// Every run: the figures of every scenario, and its ratios of that run.
const figures = new Map<string, { scenario: string; row: Omit<Row, "value">; runs: number[] }>();
const seconds: Record<string, number[]> = {};
const ratios = new Map<string, { compare: Compare; scenario: string; runs: number[] }>();
for (let run = 0; run < runs; run++) {
  const ctx: Context = { runtimes, placements, run };
  for (const scenario of run % 2 ? [...scenarios].reverse() : scenarios) {
    progress(`run ${run + 1}/${runs}: ${scenario.name}`);
    const began = performance.now();
    const noted = (what: string, why: unknown) => {
      const reason = why instanceof Error ? why.message : String(why);
      progress(`${scenario.name}: ${what} skipped: ${reason}`);
      skipped[`${scenario.name} ${what}`] = `run ${run + 1}: ${reason}`;
    };
    const got = new Map<string, number>();
    try {
      for (const row of await scenario.run(ctx, noted)) {
        const { value, ...id } = row;
        got.set(key(id), value);
        const at = `${scenario.name}|${key(id)}`;
        if (!figures.has(at)) figures.set(at, { scenario: scenario.name, row: id, runs: [] });
        figures.get(at)!.runs.push(value);
      }
    } catch (err) {
      noted("the whole scenario", err);
    }
    (seconds[scenario.name] ??= []).push(round((performance.now() - began) / 1e3, 1));
    for (const compare of scenario.compare(ctx)) {
      const a = got.get(key(compare.num));
      const b = got.get(key(compare.den));
      if (a === undefined || b === undefined || b === 0) continue;
      const id = `${key(compare.num)} / ${key(compare.den)}`;
      if (!ratios.has(id)) ratios.set(id, { compare, scenario: scenario.name, runs: [] });
      ratios.get(id)!.runs.push(a / b);
    }
  }
}
load.at_end = loadavg();

const cpu = readFileSync("/proc/cpuinfo", "utf8").match(/model name\s*:\s*(.*)/)?.[1] ?? "?";
const results = {
  generated: new Date().toISOString(),
  machine: {
    cpu,
    cpus: navigator.hardwareConcurrency,
    kernel: readFileSync("/proc/sys/kernel/osrelease", "utf8").trim(),
    load_average: load,
    versions,
  },
  runs,
  placements: Object.fromEntries(placements.map((p) => [p, PLACEMENTS[p].text])),
  scenarios: Object.fromEntries(scenarios.map((s) => [s.name, s.method])),
  figures: [...figures.values()].map(({ scenario, row, runs }): Figure => ({
    scenario,
    ...row,
    ...spread(runs),
  })),
  ratios: [...ratios.values()].map(({ compare, scenario, runs }) => ({
    scenario,
    ...compare,
    ...spread(runs),
  })),
  skipped,
  seconds_per_run: seconds,
  elapsed_s: round((performance.now() - wall) / 1e3, 1),
};
const out = env("SB_BENCH_OUT") ?? `${root}/bench/out/results.json`;
mkdirSync(dirname(out), { recursive: true });
const json = JSON.stringify(results, null, 1);
writeFileSync(out, json + "\n");
console.log(json);
progress(`wrote ${out.replace(`${root}/`, "")} in ${results.elapsed_s} s`);
