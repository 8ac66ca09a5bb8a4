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
import { channelReport } from "./channel_report.ts";
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

/** Microseconds with two decimals below 10, one above. */
const usFine = (v: number | undefined) =>
  v === undefined ? "-" : `${v < 10 ? v.toFixed(2) : v.toFixed(1)} us`;
const nsFine = (v: number | undefined) => (v === undefined ? "-" : `${v.toFixed(1)} ns`);

function wait(w: Json): string {
  if (w.skipped) return `Wait/notify benchmarks skipped: ${w.skipped}`;
  const runtimes = ["deno", "bun"];
  const cell = (f: Json) =>
    !f
      ? "-"
      : f.skipped
      ? `skipped (${f.skipped})`
      : `${usFine(f.median_us)} / ${usFine(f.p99_us)}`;
  const placements = Object.keys(w.latency ?? {});
  const where: Record<string, string> = {
    same: "same core: both `taskset -c 0`",
    split: "two cores: `taskset -c 0` / `-c 1`",
  };
  const variants: [string, string, string | null][] = [
    ["park", "`wait`/`notify`, park at once", "park"],
    [
      "spin",
      `\`wait(.., { spin: ${w.latency?.same?.native?.spin?.spins ?? 256} })\` both sides`,
      "spin",
    ],
    ["async", "`waitAsync` measuring side, `wait` echo side", "async"],
    ["unix_socket", "runtime's Unix socket, 8 B", null],
    ["worker_atomics", "`Atomics.wait`/`notify`, 2 Workers (in-process)", null],
  ];
  const rows: string[][] = [];
  for (const p of placements) {
    const l = w.latency[p];
    for (const [key, label, nativeKey] of variants) {
      rows.push([
        where[p] ?? p,
        label,
        ...runtimes.map((r) => cell(l[r]?.[key])),
        nativeKey ? cell(l.native?.[nativeKey]) : "",
      ]);
    }
  }
  const latency = table(
    [
      "placement",
      "round trip between two processes",
      "Deno median / p99",
      "Bun median / p99",
      "native (Rust) median / p99",
    ],
    rows,
  );

  const ratioRows: string[][] = [];
  const byKey = new Map<string, Json>();
  for (const r of w.ratios ?? []) byKey.set(`${r.placement}|${r.runtime}|${r.ratio}`, r);
  const kinds: [string, (rt: string) => string, string][] = [
    ["`wait`/`notify` ÷ own Unix socket", (rt) => `${rt}.park / ${rt}.unix_socket`, "≤ 0.5"],
    ["`wait`/`notify` ÷ native futex", (rt) => `${rt}.park / native.park`, "≤ 1.25"],
    ["(floor) native futex ÷ own Unix socket", (rt) => `native.park / ${rt}.unix_socket`, ""],
    ["spin-then-park ÷ own Unix socket", (rt) => `${rt}.spin / ${rt}.unix_socket`, ""],
    ["`waitAsync` ÷ own Unix socket", (rt) => `${rt}.async / ${rt}.unix_socket`, ""],
    ["spin-then-park ÷ native spin-then-park", (rt) => `${rt}.spin / native.spin`, ""],
    ["`waitAsync` ÷ native async service", (rt) => `${rt}.async / native.async`, ""],
    ["`wait`/`notify` ÷ Workers + Atomics", (rt) => `${rt}.park / ${rt}.worker_atomics`, ""],
  ];
  for (const p of placements) {
    for (const [label, key, goal] of kinds) {
      const cells = runtimes.map((rt) => {
        const r = byKey.get(`${p}|${rt}|${key(rt)}`);
        if (!r || r.median === null) return "-";
        return `${x(r.median)}${mark(r.goal_met)} (p99 ${x(r.p99)})`;
      });
      ratioRows.push([where[p] ?? p, label, ...cells, goal]);
    }
  }
  const ratios = table(
    ["placement", "median ratio, same run", "Deno", "Bun", "goal"],
    ratioRows,
  );

  const m = w.micro ?? {};
  const nat = m.native_same ?? m.native_split;
  const sys = w.syscalls ?? {};
  const sysCell = (rt: string, window: string) => {
    const s = sys[rt];
    if (!s) return "-";
    if (s.skipped) return `skipped (${s.skipped})`;
    const win = s.windows?.[window];
    if (!win || win.skipped) return "-";
    const names = Object.entries(win.loop_thread_by_name as Record<string, number>)
      .map(([k, v]) => `${k} ${v}`).join(", ");
    return `${win.loop_thread_syscalls} in ${win.iterations.toLocaleString("en-US")}` +
      (names ? ` (${names})` : "") +
      (win.other_threads_syscalls ? `; other threads ${win.other_threads_syscalls}` : "");
  };
  const microCell = (rt: string, k: string, goal?: number) => {
    const v = m[rt]?.[k];
    if (m[rt]?.skipped) return "skipped";
    return v === undefined ? "-" : `${nsFine(v)}${goal === undefined ? "" : mark(v < goal)}`;
  };
  const idle = (rt: string) => {
    const i = w.idle?.[rt];
    if (!i) return "-";
    if (i.skipped) return `skipped (${i.skipped})`;
    return `${i.wait_async_2s.cpu_ms_per_s.toFixed(2)} ms/s (idle runtime: ` +
      `${i.idle_before_1s.cpu_ms_per_s.toFixed(2)} before, ${
        i.idle_after_1s.cpu_ms_per_s.toFixed(2)
      } after)`;
  };
  const microRows: string[][] = [
    [
      "`Mutex` lock + unlock, uncontended",
      microCell("deno", "lock_unlock_ns", 100),
      microCell("bun", "lock_unlock_ns", 100),
      nsFine(nat?.mutex_lock_unlock_ns),
      "< 100 ns",
    ],
    [
      "`tryLock` + unlock",
      microCell("deno", "trylock_unlock_ns"),
      microCell("bun", "trylock_unlock_ns"),
      "",
      "",
    ],
    [
      "lock alone (4,096 mutexes per block)",
      microCell("deno", "lock_alone_ns"),
      microCell("bun", "lock_alone_ns"),
      "",
      "",
    ],
    [
      "unlock alone (4,096 mutexes per block)",
      microCell("deno", "unlock_alone_ns", 100),
      microCell("bun", "unlock_alone_ns", 100),
      "",
      "< 100 ns",
    ],
    [
      "system calls in 1,000,000 lock + unlock (strace -f)",
      sysCell("deno", "lock_unlock"),
      sysCell("bun", "lock_unlock"),
      "",
      "none",
    ],
    [
      "system calls in 4,096 unlocks",
      sysCell("deno", "unlock_many"),
      sysCell("bun", "unlock_many"),
      "",
      "none",
    ],
    [
      "`notify` with no waiter",
      microCell("deno", "notify_no_waiter_ns"),
      microCell("bun", "notify_no_waiter_ns"),
      nsFine(nat?.notify_no_waiter_ns),
      "",
    ],
    [
      "system calls in 10,000 such `notify`",
      sysCell("deno", "notify"),
      sysCell("bun", "notify"),
      "",
      "",
    ],
    [
      '`wait` on a changed value ("not-equal")',
      microCell("deno", "wait_not_equal_ns"),
      microCell("bun", "wait_not_equal_ns"),
      "",
      "",
    ],
    [
      "`Atomics.notify` on a SharedArrayBuffer, no waiter",
      microCell("deno", "atomics_notify_sab_no_waiter_ns"),
      microCell("bun", "atomics_notify_sab_no_waiter_ns"),
      "",
      "",
    ],
    ["CPU of an idle `waitAsync` (2 s)", idle("deno"), idle("bun"), "", "not measurable"],
    [
      "`performance.now()` (in every round-trip sample)",
      microCell("deno", "timer_now_ns"),
      microCell("bun", "timer_now_ns"),
      "",
      "",
    ],
  ];
  const micro = table(
    ["one thread, `taskset -c 0`", "Deno", "Bun", "native (Rust)", "goal"],
    microRows,
  );
  const rt = w.round_trips ?? {};
  const load = w.load_average;
  return [
    `Wait/notify: round trips between two processes of one runtime (the measuring one stores and ` +
    `notifies, the echo one answers), each timed with \`performance.now()\`; ${rt.rounds} rounds ` +
    `of ${
      rt.n?.toLocaleString("en-US")
    } timed round trips per variant (after ${rt.warmup} untimed), ` +
    `rotated order; each figure is the median over rounds of the round's median and p99. ` +
    `Native: \`bench/native_wait.rs\` in the same run.` +
    (load
      ? ` Load average ${load.at_start?.join(" ")} at the start, ${
        load.at_end?.join(" ")
      } at the end.`
      : ""),
    "",
    latency,
    "",
    "Ratios of medians measured in the same run and placement (p99 ratio in brackets):",
    "",
    ratios,
    "",
    micro,
  ].join("\n");
}

/** Markdown for each known section. */
const renderers: Record<string, (section: Json) => string> = {
  segment,
  wait,
  channel: channelReport,
};

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
