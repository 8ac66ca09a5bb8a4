/**
 * Turns `bench/out/results.json` (or the file given as the first argument) into Markdown tables
 * for the README and prints them: `deno run --allow-read bench/report.ts`.
 *
 * One renderer per section; sections without one are listed at the end. To report a new section,
 * add a function to {@linkcode renderers}.
 *
 * @module
 */

import { readFileSync } from "node:fs";
import process from "node:process";
import { root } from "./common.ts";

// deno-lint-ignore no-explicit-any
type Json = any;

const path = process.argv[2] ?? `${root}/bench/out/results.json`;
const results: Record<string, Json> = JSON.parse(readFileSync(path, "utf8"));

const us = (v: number | undefined) => (v === undefined ? "-" : `${v.toFixed(1)} us`);
const x = (v: number | undefined, digits = 2) => (v === undefined ? "-" : `${v.toFixed(digits)}x`);
const gbps = (v: number | undefined) => (v === undefined ? "-" : `${v.toFixed(1)} GB/s`);
const mark = (met: boolean | null | undefined) => (met === true ? " ✓" : met === false ? " ✗" : "");

function table(header: string[], rows: string[][]): string {
  const line = (cells: string[]) => `| ${cells.join(" | ")} |`;
  return [line(header), line(header.map(() => "---")), ...rows.map(line)].join("\n");
}

function machine(m: Json): string {
  if (!m || m.skipped) return "";
  const v = m.versions ?? {};
  const versions = [v.deno?.replace(/ \(.*/, ""), v.bun && `bun ${v.bun}`, v.node, v.rustc]
    .filter(Boolean).join(", ");
  return `Measured ${m.date?.slice(0, 10)} on ${m.nproc} CPUs (${m.cpu}), Linux ${m.kernel}, ` +
    `${versions}; ${m.placement}; load average at start ${m.loadavg_at_start?.join(" ")}.`;
}

function segment(s: Json): string {
  if (s.skipped) return `Segment benchmarks skipped: ${s.skipped}`;
  const a = s.attach;
  const r = a.results;
  const goal = a.goal;
  const rows: string[][] = [];
  const add = (label: string, impl: string, variant: string) => {
    const res = r[impl];
    if (!res) return;
    if (res.skipped) {
      rows.push([label, "skipped", "", "", res.skipped, ""]);
      return;
    }
    const v = res[variant];
    if (!v) return;
    const g = goal[`${impl}.${variant}`];
    rows.push([
      label,
      us(v.small_us),
      us(v.large_us),
      x(v.ratio),
      g ? `${x(g.quotient)}${mark(g.goal_met)}` : impl === "native" ? "(reference)" : "-",
      `${us(v.mean_small_us)} / ${us(v.mean_large_us)} = ${x(v.mean_ratio)}`,
    ]);
  };
  add("native libc: shmget + IPC_STAT + shmat + shmdt", "native", "raw_key");
  add("native `Segment::open({key})` + drop", "native", "segment_key");
  for (const [impl, name] of [["deno", "Deno"], ["bun", "Bun"]]) {
    add(`${name} \`SharedMemory.open({key})\` + \`.buffer\` + \`close()\``, impl, "key");
    add(`${name} \`open({key})\` + \`.view(0, 4096)\` + \`close()\``, impl, "key_view");
    add(`${name} \`createSharedBuffer\` + \`detachSharedBuffer\``, impl, "seed_api");
  }
  add("Node seed `shared-buffer@1.4.0` (no unmap: GC does it)", "node_seed", "seed_key");
  add("Node seed, with the GC that unmaps, amortized", "node_seed", "seed_key_gc");
  add("native libc: shm_open + fstat + mmap + close + munmap", "native", "raw_name");
  add("native `Segment::open({name})` + drop", "native", "segment_name");
  add("Deno `SharedMemory.open({name})` + `.buffer` + `close()`", "deno", "name");
  add("Bun `SharedMemory.open({name})` + `.buffer` + `close()`", "bun", "name");
  const attach = table(
    [
      "attach an existing segment (per call)",
      "4 KiB",
      "1 GiB",
      "1 GiB / 4 KiB",
      `÷ native ratio (goal ≤ 1.2)`,
      "means: 4 KiB / 1 GiB",
    ],
    rows,
  );

  const t = s.throughput;
  const tRows: string[][] = [];
  for (const [kernel, label] of [["f64_sum", "Float64Array sum"], ["u8_set", "Uint8Array.set"]]) {
    const row = [label];
    const n = t.native?.[kernel];
    row.push(n ? `${gbps(n.shared_gbps)} / ${gbps(n.plain_gbps)} = ${x(n.ratio, 3)}` : "skipped");
    for (const which of ["deno", "bun"]) {
      const k = t[which]?.[kernel];
      if (!k) {
        row.push("skipped", "");
        continue;
      }
      row.push(
        `${gbps(k.shared_gbps)} / ${gbps(k.plain_gbps)}`,
        `${x(k.ratio, 3)}${mark(k.goal_met)}`,
      );
    }
    tRows.push(row);
  }
  const throughput = table(
    [
      "64 MiB buffer",
      "native (Rust) shared / heap",
      "Deno shared / plain",
      "Deno ratio (goal ≥ 0.95)",
      "Bun shared / plain",
      "Bun ratio (goal ≥ 0.95)",
    ],
    tRows,
  );
  return [
    `Attach: open + map + unmap of a segment that already exists and is populated, no page ` +
    `touched. ${a.rounds} processes per implementation, each timing ${a.blocks_per_round} ` +
    `blocks per size of the same number of calls (~${a.block_ms} ms at 4 KiB), alternating ` +
    `sizes. Per-call medians; the ratio is the median over back-to-back block pairs, divided ` +
    `in the next column by the native libc ratio of the same run; the last column is total ` +
    `time over total calls, which keeps the blocks a garbage collection slowed down.`,
    "",
    attach,
    "",
    `Throughput: shared (\`SharedMemory.create\`, populated) vs \`new ArrayBuffer\` of the same ` +
    `size, medians over ${t.rounds} processes per runtime, alternating shared and plain; the ` +
    `native column runs the same kernels (f64 sum, memcpy) over a segment and a heap buffer.`,
    "",
    throughput,
  ].join("\n");
}

/** Markdown for each known section. */
const renderers: Record<string, (section: Json) => string> = { segment };

const parts: string[] = [];
const unknown: string[] = [];
for (const [name, section] of Object.entries(results)) {
  if (["generated", "seconds", "machine"].includes(name)) continue;
  const render = renderers[name];
  if (render) parts.push(render(section));
  else unknown.push(name);
}
const footer = machine(results.machine);
if (footer) parts.push(footer);
if (unknown.length) parts.push(`(No Markdown renderer for: ${unknown.join(", ")}.)`);
console.log(parts.join("\n\n"));
