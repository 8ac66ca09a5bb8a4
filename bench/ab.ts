/**
 * `make bench-ab BASE=<commit> [SCENARIOS="hotpath attach"]`: the bench of an earlier commit and
 * of the working tree, side by side, on one host in the same minutes, to tell a change of the
 * code from a change of the host. `SB_BENCH_RUNS` rounds (default 3); each round runs the chosen
 * scenarios once in each tree (`bench/run.ts` with `SB_BENCH_RUNS=1`), the base first in even
 * rounds and the working tree first in odd ones, so that drift hits both alike.
 *
 * The base is exported with `git archive` into `target/bench-ab/<commit>/` and built there with
 * its own Makefile (`make build`, the runtimes of this tree's `.tools/`), once: later comparisons
 * with the same base reuse it. Each tree measures its own native library and TypeScript; the Rust
 * figures (`native`) of both are the control: code that did not change should come out alike.
 *
 * Prints JSON (also written to `bench/out/ab.json`): for every figure and ratio that both trees
 * report, the median, spread and runs of each (`base`, `head`) and of the ratio head / base of each
 * round (`head_over_base`; below 1 is faster for times). The runs of each tree's own bench go to
 * `bench/out/ab-head.json` and the base's `bench/out/results.json`; `bench/out/results.json` of
 * this tree is left alone.
 *
 * `deno run -A bench/ab.ts <commit> [scenario...]` does the same without the Makefile.
 *
 * @module
 */

import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, symlinkSync, writeFileSync } from "node:fs";
import process from "node:process";
import { envInt, median, progress, root } from "./harness.ts";

const [base, ...scenarios] = process.argv.slice(2);
if (!base) {
  console.error("usage: bench/ab.ts <commit> [scenario...]  (or make bench-ab BASE=<commit>)");
  process.exit(2);
}
const rounds = Math.max(1, envInt("SB_BENCH_RUNS", 3));

/** Runs `command` in `cwd` with this process's stderr; throws with its name if it fails. */
function run(command: string[], cwd: string, env: Record<string, string> = {}): string {
  const out = spawnSync(command[0], command.slice(1), {
    cwd,
    env: { ...process.env, ...env },
    encoding: "utf8",
    stdio: ["ignore", "pipe", "inherit"],
    maxBuffer: 1 << 28,
  });
  if (out.status !== 0) {
    throw new Error(`${command.join(" ")} (in ${cwd}): exit ${out.status ?? out.signal}`);
  }
  return out.stdout;
}

const commit = run(["git", "rev-parse", "--verify", `${base}^{commit}`], root).trim();
const head = run(["git", "rev-parse", "HEAD"], root).trim();
const dirty = run(["git", "status", "--porcelain", "--untracked-files=no"], root).trim() !== "";
const baseDir = `${root}/target/bench-ab/${commit.slice(0, 12)}`;
if (!existsSync(`${baseDir}/Makefile`)) {
  progress(`exporting ${commit.slice(0, 12)} into ${baseDir.replace(`${root}/`, "")}`);
  mkdirSync(baseDir, { recursive: true });
  const archive = spawnSync("git", ["archive", "--format=tar", commit], {
    cwd: root,
    maxBuffer: 1 << 30,
  });
  if (archive.status !== 0) throw new Error(`git archive ${commit}: exit ${archive.status}`);
  const untar = spawnSync("tar", ["-x", "-C", baseDir], { input: archive.stdout });
  if (untar.status !== 0) throw new Error(`tar -x into ${baseDir}: exit ${untar.status}`);
}
if (!existsSync(`${baseDir}/.tools`)) symlinkSync(`${root}/.tools`, `${baseDir}/.tools`);
progress(`building ${commit.slice(0, 12)} (make build; the first time builds the Rust library)`);
run(["make", "--no-print-directory", "build"], baseDir);

/** A figure's or ratio's identity, without its numbers. */
type Entry = Record<string, unknown> & { runs: number[] };
const NUMBERS = new Set(["median", "min", "max", "runs"]);
const identity = (e: Entry) =>
  JSON.stringify(Object.entries(e).filter(([k]) => !NUMBERS.has(k)).sort());

/** Every round's value of each figure and ratio, by side. */
const sides = ["base", "head"] as const;
const seen = new Map<string, { entry: Entry; base: number[]; head: number[] }>();
for (let round = 0; round < rounds; round++) {
  for (const side of round % 2 ? [...sides].reverse() : sides) {
    const dir = side === "base" ? baseDir : root;
    progress(`round ${round + 1}/${rounds}: ${side} (${side === "base" ? commit : head})`);
    const out = side === "base" ? "bench/out/results.json" : "bench/out/ab-head.json";
    run([process.env.DENO ?? "deno", "run", "--allow-all", "bench/run.ts", ...scenarios], dir, {
      SB_BENCH_RUNS: "1",
      SB_BENCH_OUT: `${dir}/${out}`,
    });
    const results = JSON.parse(readFileSync(`${dir}/${out}`, "utf8"));
    for (const kind of ["figures", "ratios"] as const) {
      for (const entry of results[kind] as Entry[]) {
        const id = `${kind}|${identity(entry)}`;
        if (!seen.has(id)) seen.set(id, { entry, base: [], head: [] });
        seen.get(id)![side].push(entry.runs[0]);
      }
    }
  }
}

/** `values`' median and spread, to 4 significant digits. */
const spread = (values: number[]) => {
  const r = (v: number) => Number(v.toPrecision(4));
  return {
    median: r(median(values)),
    min: r(Math.min(...values)),
    max: r(Math.max(...values)),
    runs: values.map(r),
  };
};
const compared = (kind: string) =>
  [...seen.entries()]
    .filter(([id, s]) => id.startsWith(`${kind}|`) && s.base.length === s.head.length)
    .map(([, { entry, base, head }]) => {
      const { median: _m, min: _lo, max: _hi, runs: _r, ...what } = entry;
      return {
        ...what,
        base: spread(base),
        head: spread(head),
        head_over_base: spread(head.map((h, i) => h / base[i])),
      };
    });
const report = {
  generated: new Date().toISOString(),
  base: commit,
  head: dirty ? `${head} with uncommitted changes` : head,
  rounds,
  scenarios: scenarios.length ? scenarios : "all",
  figures: compared("figures"),
  ratios: compared("ratios"),
  only_in_one: [...seen.values()].filter((s) => s.base.length !== s.head.length).length,
};
mkdirSync(`${root}/bench/out`, { recursive: true });
const json = JSON.stringify(report, null, 1);
writeFileSync(`${root}/bench/out/ab.json`, json + "\n");
console.log(json);
progress(`wrote bench/out/ab.json (${report.figures.length} figures in both trees)`);
