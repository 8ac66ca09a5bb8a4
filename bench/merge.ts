/**
 * Merges every section's JSON in `bench/out/` into `bench/out/results.json` and prints it.
 *
 * Each `bench/out/<section>.json` becomes the key `<section>`; `bench/out/seconds.txt` (lines of
 * `<section> <seconds>`, written by `run.sh`) becomes `seconds`. A file that is not valid JSON is
 * kept as `{ "skipped": "..." }` so that one broken section never hides the others.
 *
 * @module
 */

import { readdirSync, readFileSync, writeFileSync } from "node:fs";
import { root } from "./common.ts";

const out = `${root}/bench/out`;
const results: Record<string, unknown> = { generated: new Date().toISOString() };

const seconds: Record<string, number> = {};
try {
  for (const line of readFileSync(`${out}/seconds.txt`, "utf8").split("\n")) {
    const [name, value] = line.trim().split(/\s+/);
    if (name && value) seconds[name] = Number(value);
  }
} catch {
  // No timings: sections were run some other way.
}
results.seconds = seconds;

for (const file of readdirSync(out).sort()) {
  if (!file.endsWith(".json") || file === "results.json") continue;
  const name = file.slice(0, -".json".length);
  const text = readFileSync(`${out}/${file}`, "utf8");
  try {
    results[name] = JSON.parse(text);
  } catch (err) {
    results[name] = { section: name, skipped: `not valid JSON (${err}): ${text.slice(0, 200)}` };
  }
}

const json = JSON.stringify(results, null, 2);
writeFileSync(`${out}/results.json`, json + "\n");
console.log(json);
