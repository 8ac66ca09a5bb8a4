/**
 * Markdown for the channel section of `bench/out/results.json` (see `bench/channel.ts`), used by
 * `bench/report.ts`: throughput and round-trip tables per placement, the goals as ratios of the
 * same run, the other ratios, and where the chart is.
 *
 * @module
 */

// deno-lint-ignore no-explicit-any
type Json = any;

const SIZES: [string, string][] = [["64", "64 B"], ["4096", "4 KiB"], ["65536", "64 KiB"], [
  "1048576",
  "1 MiB",
]];

const WHERE: Record<string, string> = {
  split: "split: receiver / round-trip initiator `taskset -c 0`, sender / echo `taskset -c 1`",
  same: "same core: both `taskset -c 0`",
};

function table(header: string[], rows: string[][]): string {
  const line = (cells: string[]) => `| ${cells.join(" | ")} |`;
  return [line(header), line(header.map(() => "---")), ...rows.map(line)].join("\n");
}

/** 1234567 -> "1.23M", 45678 -> "45.7k". */
function count(v: number | undefined): string {
  if (v === undefined) return "-";
  if (v >= 1e6) return `${(v / 1e6).toFixed(v >= 1e7 ? 1 : 2)}M`;
  if (v >= 1e3) return `${(v / 1e3).toFixed(v >= 1e4 ? 0 : 1)}k`;
  return v.toFixed(0);
}

/** Bytes/s as GB/s or MB/s. */
function bytes(v: number | undefined): string {
  if (v === undefined) return "-";
  return v >= 1e9 ? `${(v / 1e9).toFixed(v >= 1e10 ? 0 : 1)} GB/s` : `${(v / 1e6).toFixed(0)} MB/s`;
}

const usCell = (v: number | undefined) =>
  v === undefined ? "-" : v < 10 ? v.toFixed(1) : v.toFixed(0);
const xCell = (v: number | null | undefined) =>
  v === null || v === undefined ? "-" : `${v >= 10 ? v.toFixed(1) : v.toFixed(2)}x`;
const mark = (met: boolean | null | undefined) => (met === true ? " ✓" : met === false ? " ✗" : "");

/** Throughput rows: [label, who, transport]. */
const THROUGHPUT_ROWS: [string, string, string][] = [
  ["Deno: Channel send / recvInto", "deno", "channel"],
  ["Deno: Channel zero-copy (reserve+commit / recvView)", "deno", "channel_zc"],
  ["Deno: Channel zero-copy, producer fills the message", "deno", "channel_zc_fill"],
  ["Deno: Unix socket, one message per write", "deno", "socket"],
  ["Deno: Unix socket, packed 64 KiB writes", "deno", "socket_packed"],
  ["Deno: child stdout pipe, one message per write", "deno", "stdio"],
  ["Bun: Channel send / recvInto", "bun", "channel"],
  ["Bun: Channel zero-copy (reserve+commit / recvView)", "bun", "channel_zc"],
  ["Bun: Channel zero-copy, producer fills the message", "bun", "channel_zc_fill"],
  ["Bun: Unix socket, one message per write", "bun", "socket"],
  ["Bun: Unix socket, packed 64 KiB writes", "bun", "socket_packed"],
  ["Bun: child stdout pipe, one message per write", "bun", "stdio"],
  ["Bun: `Bun.spawn` ipc, JSON", "bun", "ipc_json"],
  ["Bun: `Bun.spawn` ipc, advanced", "bun", "ipc_advanced"],
  ["Rust ring (native_ring), copy", "native", "copy"],
  ["Rust ring (native_ring), zero-copy", "native", "zero_copy"],
];

const LATENCY_ROWS: [string, string, string][] = [
  ["Deno: Channel, receiver parked (`spin: 0`)", "deno", "channel"],
  ["Deno: Channel, default spin-then-park", "deno", "channel_spin"],
  ["Deno: Unix socket", "deno", "socket"],
  ["Deno: child stdin -> stdout", "deno", "stdio"],
  ["Bun: Channel, receiver parked (`spin: 0`)", "bun", "channel"],
  ["Bun: Channel, default spin-then-park", "bun", "channel_spin"],
  ["Bun: Unix socket", "bun", "socket"],
  ["Bun: child stdin -> stdout", "bun", "stdio"],
  ["Bun: `Bun.spawn` ipc, JSON", "bun", "ipc_json"],
  ["Bun: `Bun.spawn` ipc, advanced", "bun", "ipc_advanced"],
  ["Rust ring, parked (`spin: 0`)", "native", "copy"],
  ["Rust ring, default spin-then-park", "native", "spin"],
];

/** The Markdown of one channel section. */
export function channelReport(c: Json): string {
  if (c.skipped) return `Channel benchmarks skipped: ${c.skipped}`;
  const results = c.results ?? {};
  const placements = Object.keys(results);
  const out: string[] = [];
  const s = c.settings ?? {};
  const load = c.load_average;
  out.push(
    `Channel: one transport and one message size per pair of processes; throughput is counted ` +
      `by the receiver over ${s.measure_ms} ms after a ${s.warmup_ms} ms warm-up; round trips ` +
      `are timed one by one (${
        Object.entries(s.round_trips ?? {}).map(([k, v]) => `${v} at ${k} B`).join(", ")
      }). ${s.rounds} round(s), odd ones in reverse order; each figure is the median over ` +
      `rounds. Every message is checked (sequence number in its first 4 bytes and a byte ` +
      `derived from it in its last). Ring capacity: 256 KiB for 64 B and 4 KiB messages, 4 MiB ` +
      `for 64 KiB and 1 MiB (round trips: 64 KiB, 64 KiB, 256 KiB, 4 MiB); the Rust ring runs ` +
      `with the same stream capacities.` +
      (load
        ? ` Load average ${load.at_start?.join(" ")} at the start, ${
          load.at_end?.join(" ")
        } at the end.`
        : ""),
  );

  for (const p of placements) {
    const r = results[p];
    const cell = (who: string, tr: string, size: string) => {
      const f = r?.[who]?.[tr]?.[size];
      if (!f) return "";
      if (f.skipped) return `skipped (${f.skipped})`;
      const t = f.throughput;
      return t ? `${count(t.msgs_per_s)}/s · ${bytes(t.bytes_per_s)}` : "";
    };
    const rows = THROUGHPUT_ROWS.filter(([, who, tr]) => r?.[who]?.[tr])
      .map(([label, who, tr]) => [label, ...SIZES.map(([size]) => cell(who, tr, size))]);
    out.push(
      `One-way throughput, messages/s · bytes/s (${WHERE[p] ?? p}):`,
      table(["transport", ...SIZES.map(([, l]) => l)], rows),
    );
  }
  for (const p of placements) {
    const r = results[p];
    const cell = (who: string, tr: string, size: string) => {
      const f = r?.[who]?.[tr]?.[size];
      if (!f) return "";
      if (f.skipped) return `skipped (${f.skipped})`;
      const l = f.latency;
      return l ? `${usCell(l.median_us)} / ${usCell(l.p99_us)}` : "";
    };
    const rows = LATENCY_ROWS.filter(([, who, tr]) =>
      SIZES.some(([size]) => r?.[who]?.[tr]?.[size]?.latency)
    ).map(([label, who, tr]) => [label, ...SIZES.map(([size]) => cell(who, tr, size))]);
    out.push(
      `Round trips, median / p99 in µs (${WHERE[p] ?? p}; Rust ring: 64 B and 4 KiB only):`,
      table(["round trip", ...SIZES.map(([, l]) => l)], rows),
    );
  }

  // Goals: one row per goal and placement, Deno and Bun side by side.
  const goals: Json[] = c.goals ?? [];
  const goalRows: string[][] = [];
  const seen = new Set<string>();
  for (const g of goals) {
    const key = `${g.name}|${g.placement}|${g.size}`;
    if (seen.has(key)) continue;
    seen.add(key);
    const pick = (rt: string) =>
      goals.find((h) =>
        h.name === g.name && h.placement === g.placement && h.size === g.size && h.runtime === rt
      );
    const cellOf = (h: Json) => {
      if (!h || h.value === null) return "-";
      const p99 = h.p99 === undefined || h.p99 === null ? "" : ` (p99 ${xCell(h.p99)})`;
      return `${xCell(h.value)}${mark(h.goal_met)}${p99}`;
    };
    const sizeLabel = SIZES.find(([k]) => k === String(g.size))?.[1] ?? `${g.size} B`;
    goalRows.push([
      g.name.includes("round trip") ? `${g.name} (${sizeLabel})` : g.name,
      g.placement,
      cellOf(pick("deno")),
      cellOf(pick("bun")),
    ]);
  }
  out.push(
    "Goals, as ratios measured in the same run and placement (✓ met, ✗ not met):",
    table(["goal", "placement", "Deno", "Bun"], goalRows),
  );

  // Every other ratio: per placement, kind, size.
  const ratios: Json[] = c.ratios ?? [];
  const bareOf = (ratio: string) => ratio.replace(/\b(deno|bun)\./g, "");
  const kinds = [
    ...new Set(ratios.map((x) => `${x.metric}|${bareOf(x.ratio)}`)),
  ];
  const ratioRows: string[][] = [];
  const label = (ratio: string) =>
    ratio.replace(/\b(deno|bun)\./g, "").replace("native.copy", "Rust ring")
      .replace("native.zero_copy", "Rust ring zero-copy").replace("native.spin", "Rust ring spin")
      .replace("channel_zc_fill", "channel zero-copy+fill").replace(
        "channel_zc",
        "channel zero-copy",
      )
      .replace("channel_spin", "channel spin-then-park").replace("socket_packed", "packed socket")
      .replace("/", "÷");
  for (const p of placements) {
    for (const kind of kinds) {
      const [metric, bare] = kind.split("|");
      const cells = SIZES.map(([size]) => {
        const of = (rt: string) =>
          ratios.find((x) =>
            x.placement === p && x.runtime === rt && String(x.size) === size &&
            x.metric === metric && bareOf(x.ratio) === bare
          );
        const d = of("deno");
        const b = of("bun");
        if ((!d || d.value === null) && (!b || b.value === null)) return "";
        return `${xCell(d?.value)} / ${xCell(b?.value)}`;
      });
      if (cells.every((x) => x === "")) continue;
      const what = metric.startsWith("round") ? "round trip (median)" : "messages/s";
      ratioRows.push([p, `${label(bare)}, ${what}`, ...cells]);
    }
  }
  out.push(
    "All ratios of the same run, Deno / Bun (numerator ÷ denominator; for round trips lower is " +
      "better, and `Rust ring` in a ratio is the same native figure for both runtimes):",
    table(["placement", "ratio", ...SIZES.map(([, l]) => l)], ratioRows),
    "Chart: `docs/channel-throughput.svg` (`deno run --allow-read --allow-write " +
      "bench/channel_chart.ts` redraws it from `bench/out/results.json`; each run also writes " +
      "`bench/out/channel.svg`). Deno has no IPC channel to a child process (no " +
      "`Bun.spawn({ ipc })` equivalent), so its ipc rows are absent.",
  );
  return out.join("\n\n");
}
