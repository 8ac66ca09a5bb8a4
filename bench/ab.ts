/**
 * `make bench-ab BASE=<commit> [SCENARIOS="hotpath attach"]`: the bench of an earlier commit and
 * of the working tree, side by side, on one host in the same minutes, to tell a change of the
 * code from a change of the host. `SB_BENCH_RUNS` rounds (default 3); each round runs the chosen
 * scenarios once in each tree (`bench/run.ts` with `SB_BENCH_RUNS=1`), the base first in even
 * rounds and the working tree first in odd ones, so that drift hits both alike.
 *
 * The base is exported with `git archive` into `target/bench-ab/<commit>/` once (later
 * comparisons with the same base reuse it) and built there by its own Makefile (`make build`,
 * with the TypeScript compiler and bundler its Makefile pins, installed into its own `.tools/`).
 * This tree is built the same way first. Each tree measures its own native library and
 * TypeScript, both in the same runtimes (`DENO`, `BUN`, `NODE`, else those on the `PATH`;
 * `SHARED_BUFFER_LIB` is dropped, which would make both load one library). The Rust figures
 * (`native`) of both are the control: code that did not change should come out alike.
 *
 * Prints JSON (also written to `bench/out/ab.json`): for every figure and ratio that both trees
 * report, the median, spread and runs of each (`base`, `head`) and of the ratio head / base of each
 * round (`head_over_base`; below 1 is faster for times). The runs of each tree's own bench go to
 * `bench/out/ab-head.json` and the base's `bench/out/results.json`; `bench/out/results.json` of
 * this tree is left alone.
 *
 * `deno run -A bench/ab.ts <commit> [scenario...]` does the same without the Makefile (with the
 * runtimes of the environment or the `PATH`, where `make` picks the pinned ones).
 *
 * @module
 */

import { spawnSync } from "node:child_process";
import { existsSync, lstatSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import process from "node:process";
import { envInt, progress, root, spread } from "./harness.ts";

const [base, ...scenarios] = process.argv.slice(2);
if (!base) {
  console.error("usage: bench/ab.ts <commit> [scenario...]  (or make bench-ab BASE=<commit>)");
  process.exit(2);
}
const rounds = Math.max(1, envInt("SB_BENCH_RUNS", 3));

/**
 * The environment of every command: a library named here would be both trees' library, and a
 * build folder named here (this tree's Makefile names its own) both trees' build.
 */
const environment = { ...process.env };
delete environment.CARGO_TARGET_DIR;
if (environment.SHARED_BUFFER_LIB) {
  progress("SHARED_BUFFER_LIB is ignored: each tree measures its own library");
  delete environment.SHARED_BUFFER_LIB;
}

/** Runs `command` in `cwd` with this process's stderr; throws with its name if it fails. */
function run(command: string[], cwd: string, env: Record<string, string> = {}): string {
  const out = spawnSync(command[0], command.slice(1), {
    cwd,
    env: { ...environment, ...env },
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
const dirty = run(["git", "status", "--porcelain"], root).trim() !== "";
const baseDir = `${root}/target/bench-ab/${commit.slice(0, 12)}`;
/** Written once the export is whole: an export cut short is made again. */
const exported = `${baseDir}/.bench-ab-exported`;
if (!existsSync(exported)) {
  progress(`exporting ${commit.slice(0, 12)} into ${baseDir.replace(`${root}/`, "")}`);
  rmSync(baseDir, { recursive: true, force: true });
  mkdirSync(baseDir, { recursive: true });
  const archive = spawnSync("git", ["archive", "--format=tar", commit], {
    cwd: root,
    maxBuffer: 1 << 30,
  });
  if (archive.status !== 0) throw new Error(`git archive ${commit}: exit ${archive.status}`);
  const untar = spawnSync("tar", ["-x", "-C", baseDir], { input: archive.stdout });
  if (untar.status !== 0) throw new Error(`tar -x into ${baseDir}: exit ${untar.status}`);
  writeFileSync(exported, `${commit}\n`);
}
// The base's build tools are its own: a link to this tree's `.tools/` (as an earlier version of
// this script made) would let the base's Makefile install its pins into this tree.
if (lstatSync(`${baseDir}/.tools`, { throwIfNoEntry: false })?.isSymbolicLink()) {
  rmSync(`${baseDir}/.tools`);
}
progress("building the working tree (make build)");
run(["make", "--no-print-directory", "build"], root);
progress(`building ${commit.slice(0, 12)} (make build; the first time installs its build tools)`);
run(["make", "--no-print-directory", "build"], baseDir);

/** A figure's or ratio's identity, without its numbers. */
type Entry = Record<string, unknown> & { runs: number[] };
const NUMBERS = new Set(["median", "min", "max", "runs"]);
const identity = (e: Entry) =>
  JSON.stringify(Object.entries(e).filter(([k]) => !NUMBERS.has(k)).sort());

/** Every round's value of each figure and ratio, by side (a hole where a round had none). */
const sides = ["base", "head"] as const;
const seen = new Map<
  string,
  { entry: Entry; base: (number | undefined)[]; head: (number | undefined)[] }
>();
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
        seen.get(id)![side][round] = entry.runs[0];
      }
    }
  }
}

/** The rounds in which both trees measured a figure. */
const both = (s: { base: (number | undefined)[]; head: (number | undefined)[] }) =>
  [...Array(rounds).keys()].filter((r) => s.base[r] !== undefined && s.head[r] !== undefined);
const compared = (kind: string) =>
  [...seen.entries()]
    .filter(([id, s]) => id.startsWith(`${kind}|`) && both(s).length > 0)
    .map(([, s]) => {
      const { median: _m, min: _lo, max: _hi, runs: _r, ...what } = s.entry;
      const rs = both(s);
      return {
        ...what,
        rounds: rs.length,
        base: spread(rs.map((r) => s.base[r]!)),
        head: spread(rs.map((r) => s.head[r]!)),
        head_over_base: spread(rs.map((r) => s.head[r]! / s.base[r]!)),
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
  // Figures that one tree never measured in a round the other did (a scenario changed).
  not_in_both_every_round: [...seen.values()].filter((s) => both(s).length < rounds).length,
};
mkdirSync(`${root}/bench/out`, { recursive: true });
const json = JSON.stringify(report, null, 1);
writeFileSync(`${root}/bench/out/ab.json`, json + "\n");
console.log(json);
progress(`wrote bench/out/ab.json (${report.figures.length} figures in both trees)`);
