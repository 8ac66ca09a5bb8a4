/**
 * The one renderer of benchmark results: `deno run -A bench/report.ts [results.json]` reads
 * `bench/out/results.json` (what `make bench` wrote) and rewrites
 *
 * - the part of `bench/README.md` between `<!-- results -->` and `<!-- /results -->`: every
 *   figure (median over runs, with min-max spread) and every ratio, with the goals;
 * - `docs/channel-throughput.svg`: the channel's throughput over each runtime's Unix socket;
 * - the part of `README.md` between `<!-- bench -->` and `<!-- /bench -->`: that chart and a
 *   sentence of figures.
 *
 * `deno run -A bench/report.ts --ab [ab.json]` instead reads `bench/out/ab.json` (what
 * `make bench-ab` wrote) and rewrites the part of `bench/README.md` between `<!-- ab -->` and
 * `<!-- /ab -->`: every figure of both trees, with the ratio of the two.
 *
 * Nothing here is measured or written by hand: every number comes from the JSON. Run it with
 * Deno: it formats the Markdown it wrote with `deno fmt`.
 *
 * @module
 */

import { spawnSync } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import process from "node:process";
import { type Figure, type Ratio, root, type Stat } from "./harness.ts";

type Side = Ratio["num"];

/**
 * The goals, as ratios of the same run: `"≥ <ratio>[ @<size>][ <placement>]: <label>"` (or `≤`)
 * is met when the median over runs of the ratio `label` (at that message or segment size, in
 * that placement) is on its side. Each goal may name `floor`, the ratio of the same run that
 * does the same work without the runtime (Rust, or the library's own calls alone), shown beside
 * every case it misses; and `why`, where the time goes where it is missed, in words (the
 * figures stay in the tables: none is written here). Its `see` names the bullets of
 * _Where each nanosecond goes_ that measured it.
 */
const GOALS = ([
  [
    "≥ 10 @64: channel (copying) / Unix socket, one write per message",
    "the Rust ring copying / Unix socket",
    "Beside, the Rust ring doing the same work over the same socket: where the channel misses, " +
    "it is its own pace against the Rust ring's (the goal of 0.5 of the Rust ring, below).",
    "Deno and Bun: one native call for a `send` and a `recvInto`; What is left",
  ],
  [
    "≥ 10 @64: channel with a receive timeout / Unix socket",
    "the Rust ring copying / Unix socket",
    "As the row above: a timeout adds no clock read while messages wait.",
    "A receive timeout cost a clock read",
  ],
  [
    "≥ 0.5 @64: channel (copying) / the Rust ring copying",
    undefined,
    "Each message costs the runtime one call into the library per `send` and per `recvInto` " +
    "(Deno, Bun) or the `Atomics` calls of the TypeScript path (Node), and the checks each call " +
    "makes (its arguments, the place, a closed or busy endpoint), around the ring code that the " +
    "Rust ring runs inlined: the hot path table times each call on one thread, and splits " +
    "Node's TypeScript path into its pieces. Between two cores both sides of a pair are busy all " +
    "the time, each at about twice its call on one thread; on one host the runtimes fell " +
    "further behind the Rust ring there than on one core, for a reason not found, and on " +
    "another they did not.",
    "What is left; Deno's one-by-one path today, profiled; Deno's pair between two cores, " +
    "profiled; " +
    "Deno and Bun: one native call for a `send` and a `recvInto`; Bun: the engine's getters are " +
    "calls; A 5-run bench at b485692, on another host",
  ],
  [
    "≥ 0.5 @64: channel with a receive timeout / the Rust ring",
    undefined,
    "As the row above: the timeout's own cost is the hot path table's difference between " +
    "`recv_into_timeout` and `recv_into`.",
    "A receive timeout cost a clock read; A wait reads the clock once",
  ],
  [
    "≥ 0.7 @4096: channel (copying) / the Rust ring copying",
    undefined,
    "At 4 KiB the copies in and out and the zeroing of the record weigh more than at 64 B, in " +
    "the Rust ring as in the runtimes; where a runtime misses, the rest is its calls, checks and " +
    "wake-ups (a profile of Node's receiver on one core is under the second bullet named).",
    "4 KiB and the batch path against the Rust ring; Node's 4 KiB receive: where it goes, and two " +
    "changes that did not pay",
  ],
  [
    "≥ 0.7 @4096: channel with a receive timeout / the Rust ring",
    undefined,
    "As the row above. Between two cores a pair runs at one of two paces, the slow one at about " +
    "2.5 times the CPU per message, in every runtime and in the Rust ring: a median of runs " +
    "that met the slow pace more often than the Rust ring's misses on the host's account.",
    "Node's 4 KiB receive: where it goes, and two changes that did not pay; A 5-run bench at " +
    "4c9f66b: the 64 KiB zero-copy stream, and the clock read once per MiB",
  ],
  [
    "≥ 0.8 @64: channel batch / the Rust ring copying",
    undefined,
    "`sendMany` counts and checks each message (the engine's getters) and copies it in with the " +
    "engine's `set`, then commits the run with one call; `recvMany` finds a run with one call " +
    "and hands each message out in JavaScript. What is left per message is that work (the hot " +
    "path table's `*_many_per_message` rows).",
    "The batch path's sender, per message; A batch's messages copied word by word: tried, not kept",
  ],
  [
    "≥ 1 @65536: channel (copying) / Unix socket, one write per message",
    "the Rust ring copying / Unix socket",
    "",
    "",
  ],
  ["≥ 2 @65536: channel zero-copy / Unix socket", "the Rust ring zero-copy / Unix socket", "", ""],
  [
    "≥ 0.7 @65536: channel zero-copy / the Rust ring zero-copy",
    undefined,
    "The receiver sets the pace, and most of its time is the zeroing of each 64 KiB record it " +
    "hands back, the same `memset` as the Rust ring's; a runtime adds its calls and one view, " +
    "tens of nanoseconds. Where the Rust ring's message is cheaper (a faster host) they are a " +
    "larger share of it, and the ratio falls.",
    "A 5-run bench at b485692, on another host; A 5-run bench at 4c9f66b: the 64 KiB zero-copy " +
    "stream, and the clock read once per MiB",
  ],
  [
    "≤ 0.5: round trip: channel (parked) / Unix socket",
    "round trip: the Rust ring parked / Unix socket",
    "Between two cores a parked round trip is two wake-ups of a process asleep in the kernel, " +
    "which take most of it on this host; beside each miss, the Rust ring's parked round trip " +
    "over the same socket, at the sizes it runs. A miss on one core is not analysed.",
    "wait and notify between two processes; Wake-ups",
  ],
  [
    "≤ 0.5: round trip: wait/notify (park) / Unix socket",
    "round trip: Rust futex / Unix socket",
    "As the row above; beside, the Rust futex ping-pong over the same socket (a park is a futex " +
    "wait).",
    "wait and notify between two processes",
  ],
  [
    "≤ 1.25: round trip: wait/notify (park) / Rust futex",
    undefined,
    "On one core each round trip is two context switches, and right after a switch nothing is in " +
    "the caches: each call pays for every object it touches, where the Rust loop touches a few " +
    "words; in Node each call also goes through Node-API.",
    "wait and notify between two processes",
  ],
  // Wake-ups: a reply from the other core is caught by spinning, one core burns no time slice.
  ["≤ 0.25 split: round trip: wait/notify (adaptive spin) / park", undefined, "", ""],
  [
    "≤ 1.25 same: CPU per round trip: wait/notify (adaptive spin) / park",
    undefined,
    "On one core spinning never catches the peer (it cannot run meanwhile), so an adaptive wait " +
    "parks at once and spins again only now and then, to probe whether spinning pays again " +
    "(`ts/spin.ts`). Counted in Node, those probes were about a quarter of the difference and " +
    "the adaptive wait's own calls (its options checked, its spinner) the rest, paid with caches " +
    "cold after each switch; the row swings from one bench to the next.",
    "Wake-ups; Node's adaptive `wait` on one core, counted",
  ],
  ["≤ 0.25 @64 split: round trip: channel (spin, then park) / parked", undefined, "", ""],
  ["≤ 1.25 @64 same: CPU per round trip: channel (spin, then park) / parked", undefined, "", ""],
  [
    "≤ 2 @4096: attach key: time / libc's",
    "attach call_key: time / libc's",
    "Beside: the library's own open and close calls alone, the same system calls made from the " +
    "runtime's process through its binding. The rest of the attach is the engine-owned " +
    "buffer (in Node an external buffer with a finalizer record of its own, deferred to the " +
    "event loop; in Deno and Bun the FFI buffer and the segment's anchor).",
    "The attach, split at the library's own call; Node's attach, piece by piece; " +
    "A cheaper `retire`: what was tried",
  ],
  [
    "≤ 2 @1073741824: attach key: time / libc's",
    "attach call_key: time / libc's",
    "Bun's and Node's engines count a buffer's length over foreign memory as memory they " +
    "allocated, and collect for it (in Bun every way to make such a buffer was measured to cost " +
    "that; in Node, V8's collections were counted).",
    "1 GiB through `.buffer`",
  ],
  [
    "≤ 2 @4096: attach key_view: time / libc's",
    "attach call_key: time / libc's",
    "As `attach key` at 4 KiB.",
    "The attach, split at the library's own call",
  ],
  [
    "≤ 2 @1073741824: attach key_view: time / libc's",
    "attach call_key: time / libc's",
    "The window is 4 KiB, and a window costs by its own length; the whole segment is mapped, as " +
    "libc's attach maps it. Where the rest goes is not analysed.",
    "1 GiB through `.buffer`",
  ],
  ["≥ 0.95: f64_sum over a shared buffer: GB/s / a plain ArrayBuffer's", undefined, "", ""],
  [
    "≥ 0.95: u8_set over a shared buffer: GB/s / a plain ArrayBuffer's",
    undefined,
    "Both copies are the engine's own `set`, which the library is not in; the copy into the " +
    "shared buffer ran slower when it came right after a sum, and each kernel now runs in a " +
    "phase of its own. A miss since is not analysed.",
    "The throughput's phases",
  ],
] as [string, string | undefined, string, string][]).map(([line, floor, why, see]) => {
  const [, side, bound, size, placement, label] =
    /^([≥≤]) (\S+)(?: @(\d+))?(?: (same|split))?: (.*)$/.exec(line)!;
  return {
    label,
    size: size ? Number(size) : undefined,
    placement,
    atLeast: side === "≥",
    bound: +bound,
    floor,
    why,
    see,
  };
});

/** Whether the median of `r` is on the goal's side. */
const meets = (g: typeof GOALS[number], r: Ratio) =>
  g.atLeast ? r.median >= g.bound : r.median <= g.bound;

const goalOf = (r: Ratio) =>
  r.num.runtime === "native" || r.num.runtime === "seed"
    ? undefined
    : GOALS.find((g) =>
      g.label === r.label && (g.size === undefined || g.size === r.num.size) &&
      (g.placement === undefined || g.placement === r.num.placement)
    );

/** `n` bytes in the largest unit that divides it: `64 B`, `4 KiB`, `1 GiB`. */
function sizeName(n?: number): string {
  if (n === undefined) return "";
  const units = [["GiB", 2 ** 30], ["MiB", 2 ** 20], ["KiB", 1024], ["B", 1]] as const;
  const [unit, scale] = units.find(([, scale]) => n >= scale && n % scale === 0) ?? ["B", 1];
  return `${n / scale} ${unit}`;
}

/** A number for people: 3 significant digits, thousands as k/M. */
function num(v: number): string {
  const a = Math.abs(v);
  if (a >= 1e6) return `${+(v / 1e6).toPrecision(3)}M`;
  if (a >= 1e4) return `${+(v / 1e3).toPrecision(3)}k`;
  return a >= 100 ? v.toFixed(0) : `${+v.toPrecision(3)}`;
}

/** The median, with its min-max spread when there was more than one run. */
const cell = (s?: Stat) =>
  !s ? "" : s.runs.length > 1 ? `${num(s.median)} (${num(s.min)}-${num(s.max)})` : num(s.median);

/** A Markdown table. */
function table(head: string[], body: string[][]): string {
  const line = (cells: string[]) => `| ${cells.join(" | ")} |`;
  return [line(head), line(head.map(() => "---")), ...body.map(line)].join("\n");
}

/** Metrics shown after a cell's figure: `[metric, text before, text after]` its median. */
type Beside = [string, string, string][];

/** One table of `bench/README.md`'s results. */
interface Section {
  title?: string;
  /** The text between the title and the table. */
  intro?: string;
  scenario: string;
  /** Which of the scenario's figures (all by default). */
  only?: (f: Figure) => boolean;
  /** The metric of the cells (with its median, spread and `beside`); every metric if unset. */
  metric?: string;
  beside?: Beside;
  rows: (f: Figure) => string;
  cols: (f: Figure) => string;
  first: string;
  /** More text after the table, from the same figures. */
  after?: (figs: Figure[]) => string;
}

/**
 * One section's figures as a table: one row per `rows`, one column per `cols`, each cell the
 * median of `metric` with its spread, then the `beside` metrics of the same row and column.
 */
function pivot(figs: Figure[], s: Section): string {
  const at = (f: Figure) => `${s.rows(f)}\u0000${s.cols(f)}`;
  const byMetric = new Map(figs.map((f) => [`${at(f)}\u0000${f.metric}`, f]));
  const shown = figs.filter((f) => !s.metric || f.metric === s.metric);
  const cells = new Map(shown.map((f) => [at(f), f]));
  const draw = (f: Figure) =>
    [
      cell(f),
      ...(s.beside ?? []).flatMap(([metric, before, after]) => {
        const g = byMetric.get(`${at(f)}\u0000${metric}`);
        return g ? [`${before}${num(g.median)}${after}`] : [];
      }),
    ].join("; ");
  const cols = [...new Set(shown.map(s.cols))];
  return table(
    [s.first, ...cols],
    [...new Set(shown.map(s.rows))].map((r) => [
      r,
      ...cols.map((c) => (cells.has(`${r}\u0000${c}`) ? draw(cells.get(`${r}\u0000${c}`)!) : "")),
    ]),
  );
}

const TRIPS = "Median µs per round trip (lowest-highest run), then p99 µs, and the CPU µs and " +
  "voluntary context switches (cs) of both processes per round trip (medians over runs):";
const TRIP_COSTS: Beside = [["p99_us", "p99 ", ""], ["cpu_us", "CPU ", ""], ["vcs", "", " cs"]];
const RATES = "Median messages/s (lowest-highest run), then the CPU ns and voluntary context " +
  "switches (cs) of both processes per message while the stream ran (medians over runs). A " +
  "transport that switches context for every message shows about 1 cs or more; the Rust " +
  "ring's are read the same way:";
const RATE_COSTS: Beside = [["cpu_ns_per_msg", "CPU ", " ns"], ["vcs_per_msg", "", " cs"]];
/** The order of rows: the runtimes, then the native and seed anchors. */
const ORDER = ["deno", "bun", "node", "native", "seed"];
const who = (f: Figure) => `${f.runtime} ${f.what}`;
const bySize = (f: Figure) => sizeName(f.size);
const byRuntime = (f: Figure) => f.runtime;
const byWhat = (f: Figure) => f.what;

/**
 * The hot path's calls split into their pieces (`"<count> <piece>"` each), as the TypeScript path
 * runs them with one sender and room in the ring: `send` is the copy in (`Uint8Array.set`), two
 * `Atomics.store` (tail, commit word; the reservation mark is a plain store) and one
 * `Atomics.load` (the receiver's waiting word); `recvInto` is the copy out word by word, each ring
 * word zeroed as it is read, one `Atomics.store` (head) and two `Atomics.load` (the commit word,
 * the senders' waiting word). The rest is argument checks, state checks, the record's header
 * zeroed, and calls.
 */
const CALLS: [string, string, [string, string][]][] = [
  ["send", "send", [
    ["copy in (set)", "1 copy_in_set_64"],
    ["2 Atomics.store + 1 Atomics.load", "2 atomics_store 1 atomics_load"],
  ]],
  ["recv_into", "recvInto", [
    ["copy out, zeroing the ring as it goes (words)", "1 copy_out_words_64"],
    ["1 Atomics.store + 2 Atomics.load", "1 atomics_store 2 atomics_load"],
  ]],
];

/**
 * The runtimes whose `send` and `recvInto` run the TypeScript path that {@linkcode CALLS} splits;
 * Deno and Bun make one native call each instead (docs/channel.md, "The native fast paths").
 */
const TYPESCRIPT_PATH = ["node"];

/** The hot path split into its pieces, per runtime (see {@linkcode CALLS}). */
function breakdown(figs: Figure[]): string {
  const runtimes = [...new Set(figs.map(byRuntime))].filter((rt) => TYPESCRIPT_PATH.includes(rt));
  if (runtimes.length === 0) return "";
  const fig = (rt: string, what: string) =>
    figs.find((f) => f.runtime === rt && f.what === what)?.median ?? NaN;
  // A piece's own cost: its loop's time less the empty loop's; a call's: as measured.
  const at = (rt: string, what: string) =>
    fig(rt, what) - (/^(send|recv)/.test(what) ? 0 : fig(rt, "empty_loop"));
  const cost = (rt: string, pieces: string) =>
    pieces.split(" ").reduce((t, w, i, all) => (i % 2 ? t : t + +w * at(rt, all[i + 1])), 0);
  const parts: [string, (rt: string) => number][] = CALLS.flatMap(([call, name, pieces]) => [
    [`${name}: the whole call`, (rt: string) => at(rt, call)],
    ...pieces.map(([text, p]): [string, (rt: string) => number] => [
      `${name}: ${text}`,
      (rt) => cost(rt, p),
    ]),
    [
      `${name}: the rest (checks, calls)`,
      (rt: string) => at(rt, call) - pieces.reduce((t, [, p]) => t + cost(rt, p), 0),
    ],
  ]);
  parts.push(
    ["recvInto: what a timeout adds", (rt) => at(rt, "recv_into_timeout") - at(rt, "recv_into")],
    ["a clock read it no longer makes (performance.now)", (rt) => at(rt, "performance_now")],
  );
  return "Where each call's nanoseconds go in the TypeScript path, which Node.js runs (Deno and " +
    "Bun make one native call for each `send` and `recvInto` of the table above instead; medians " +
    "of that table; a piece's own cost is its figure less the empty loop's; what is left is the " +
    "call's checks and JavaScript calls):\n\n" + table(
      ["ns", ...runtimes],
      parts.map(([label, f]) => [label, ...runtimes.map((rt) => num(Math.round(f(rt) * 10) / 10))]),
    );
}

/** Every table of the results, in order. */
function sections(placements: Record<string, string>): Section[] {
  const at = Object.entries(placements).map(([p, text]) => [p, `${p}: ${text}`]);
  const placed = (p: string) => (f: Figure) => f.placement === p;
  const calls = { scenario: "mutex", rows: byWhat, cols: byRuntime, first: "call" };
  return [
    {
      title: "Attach: open + view + close, µs per call",
      scenario: "attach",
      metric: "us",
      first: "who, variant",
    },
    {
      title: "Throughput over a 64 MiB buffer, GB/s",
      scenario: "throughput",
      cols: (f: Figure) => f.metric.replace("_gbps", ""),
      first: "who, kernel",
    },
    { title: "Lock, notify and wait on one thread, ns per call", metric: "ns", ...calls },
    {
      intro: "System calls of the looping thread per call, counted with `strace -f`:",
      metric: "syscalls per call",
      ...calls,
    },
    {
      intro: "CPU of a fresh process, ms per second: one `waitAsync` nobody notifies against " +
        "idling:",
      scenario: "mutex",
      only: (f: Figure) => f.what === "idle",
      rows: (f: Figure) => f.metric,
      cols: byRuntime,
      first: "period",
    },
    {
      title: "The channel's hot path on one thread, 64 B, ns per call",
      scenario: "hotpath",
      rows: byWhat,
      cols: byRuntime,
      first: "call or piece",
      after: breakdown,
    },
    {
      title: "Engine-owned buffers: attach, unlink and the forced collection, µs",
      scenario: "ownership",
      cols: (f: Figure) => `${sizeName(f.size)} ${f.metric.replace("_us", "")}`.trim(),
      first: "who, operation",
    },
    ...at.map(([p, text]) => ({
      title: `Wait/notify round trips, ${text}`,
      intro: TRIPS,
      scenario: "wait",
      only: placed(p),
      metric: "median_us",
      beside: TRIP_COSTS,
      rows: byWhat,
      cols: byRuntime,
      first: "variant",
    })),
    ...at.flatMap(([p, text]) => [
      {
        title: `Channel throughput, messages/s, ${text}`,
        intro: RATES,
        scenario: "channel",
        only: placed(p),
        metric: "msgs_per_s",
        beside: RATE_COSTS,
      },
      {
        title: `Channel round trips, ${text}`,
        intro: TRIPS,
        scenario: "channel",
        only: placed(p),
        metric: "median_us",
        beside: TRIP_COSTS,
      },
    ]),
  ].map((s) => ({ rows: who, cols: bySize, first: "who, transport", ...s }));
}

/**
 * The ratios of one scenario, with their goals and the numbers of their notes. A ratio over the
 * Unix socket written one message per write shows the same over the packed socket beside it,
 * where the run has it.
 */
function ratioTable(ratios: Ratio[], notes: (string | undefined)[]): string {
  const id = (s: Side) => [s.runtime, s.what, s.size, s.placement, s.metric].join("|");
  const packed = new Map(
    ratios.filter((r) => r.den.what === "socket_packed").map((r) => [id(r.num), r]),
  );
  const head = ["ratio", "who", "size", "placement", "value", "goal"];
  if (packed.size) head.splice(5, 0, "over the packed socket");
  return table(
    head,
    ratios.filter((r) => r.den.what !== "socket_packed").map((r) => {
      const g = goalOf(r);
      const met = g && meets(g, r);
      const goal = g ? `${g.atLeast ? "≥" : "≤"} ${g.bound} ${met ? "met" : "**not met**"}` : "";
      const mark = r.note ? ` [${notes.indexOf(r.note) + 1}]` : "";
      const whose = r.num.runtime === r.den.runtime
        ? r.num.runtime
        : `${r.num.runtime} / ${r.den.runtime}`;
      const row = [r.label + mark, whose, sizeName(r.num.size), r.num.placement ?? "", cell(r)];
      if (packed.size) row.push(r.den.what === "socket" ? cell(packed.get(id(r.num))) : "");
      return [...row, goal];
    }),
  );
}

/** Who, size and placement of a ratio: `deno 64 B split`. */
const whereOf = (r: Ratio) =>
  [
    r.num.runtime === "native" ? r.den.runtime : r.num.runtime,
    sizeName(r.num.size),
    r.num.placement,
  ].filter(Boolean).join(" ");

/**
 * Each goal with the cases of the run that meet it and those that miss it, each miss with its
 * floor beside it (the same work without the runtime, in the same run) and the goal's `why`.
 */
function goalSummary(ratios: Ratio[]): { met: number; all: number; text: string } {
  const lines: string[] = [];
  let met = 0;
  let all = 0;
  for (const g of GOALS) {
    const cases = ratios.filter((r) => goalOf(r) === g);
    if (!cases.length) continue;
    const ok = (r: Ratio) => meets(g, r);
    const hits = cases.filter(ok);
    const misses = cases.filter((r) => !ok(r));
    met += hits.length;
    all += cases.length;
    const floor = (r: Ratio) =>
      ratios.find((f) =>
        f.label === g.floor && f.num.size === r.num.size && f.num.placement === r.num.placement &&
        (f.num.runtime === "native"
          ? f.den.runtime === r.num.runtime
          : f.num.runtime === r.num.runtime && f.den.runtime === r.den.runtime)
      );
    const miss = (r: Ratio) => {
      const f = floor(r);
      return `${whereOf(r)} ${cell(r)}` +
        (f ? ` (${g.floor}: ${cell(f)}${ok(f) ? "" : ", which misses the goal too"})` : "");
    };
    const what = [g.placement, g.size === undefined ? "" : sizeName(g.size)].filter(Boolean);
    const head = `**${g.atLeast ? "≥" : "≤"} ${g.bound}: ${g.label}` +
      (what.length ? `, ${what.join(" ")}` : "") + "**";
    const parts = [
      hits.length === cases.length
        ? `met in all ${cases.length}.`
        : `met in ${hits.length} of ${cases.length}` +
          (hits.length ? ` (${hits.map(whereOf).join(", ")})` : "") +
          `; not met in ${misses.map(miss).join("; ")}.`,
    ];
    if (misses.length && g.why) parts.push(g.why);
    if (misses.length && g.see) {
      parts.push(`Measured under ${g.see.split("; ").map((b) => `_${b}_`).join(", ")}.`);
    }
    lines.push(`- ${head}: ${parts.join(" ")}`);
  }
  const text = `${met} of ${all} cases meet their goal (a goal's ratio for one runtime, size and ` +
    "placement; the median over runs, lowest-highest run in brackets). Each miss shows beside it, " +
    "where the run has one, the same ratio for the same work without the runtime (Rust, or the " +
    "library's own calls alone); where the time goes is in words, and the bullets named under " +
    "_Where each nanosecond goes_ above hold the measurements.\n\n" + lines.join("\n");
  return { met, all, text };
}

/** Every section of `bench/README.md`'s results, from the JSON. */
function results(json: any): string {
  const figs: Figure[] = json.figures;
  const ratios: Ratio[] = json.ratios;
  const m = json.machine;
  const out: string[] = [];
  out.push(
    `Run of ${json.generated.slice(0, 16).replace("T", " ")} UTC: ${json.runs} run(s) of every ` +
      `scenario in ${Math.round(json.elapsed_s)} s on ${m.cpus} CPUs (${m.cpu}), Linux ` +
      `${m.kernel}; ${Object.values(m.versions).join(", ")}. Load average ` +
      `${m.load_average.at_start.join(" / ")} at the start and ` +
      `${m.load_average.at_end.join(" / ")} at the end (other work shares this machine). Each ` +
      "cell is the median over runs, with the lowest and highest run in brackets. Seconds per " +
      "run of each scenario: " +
      Object.entries(json.seconds_per_run as Record<string, number[]>)
        .map(([s, t]) => `${s} ${t.join(" / ")}`).join(", ") +
      ".",
  );
  out.push("### The goals", goalSummary(ratios).text);
  for (const s of sections(json.placements)) {
    const mine = figs.filter((f) => f.scenario === s.scenario && (!s.only || s.only(f)))
      .sort((a, b) => ORDER.indexOf(a.runtime) - ORDER.indexOf(b.runtime));
    if (!mine.length) continue;
    if (s.title) out.push(`### ${s.title}`);
    if (s.intro) out.push(s.intro);
    out.push(pivot(mine, s));
    const after = s.after?.(mine);
    if (after) out.push(after);
  }
  out.push("### Ratios of the same run");
  out.push(
    "Each ratio is taken within one run, then its median over runs (lowest-highest run in " +
      "brackets). A goal is met when the median is on its side. A ratio over the Unix socket " +
      "written one message per write shows beside it the same over the socket with messages " +
      "packed into 64 KiB writes, where the run measured that.",
  );
  const notes = [...new Set(ratios.map((r) => r.note).filter(Boolean))];
  out.push(notes.map((n, i) => `[${i + 1}] ${n}.`).join("\n"));
  for (const scenario of Object.keys(json.scenarios)) {
    const mine = ratios.filter((r) => r.scenario === scenario);
    if (mine.length) out.push(`#### ${scenario}`, ratioTable(mine, notes));
  }
  out.push("### How each scenario measures");
  out.push(Object.entries(json.scenarios).map(([name, how]) => `- **${name}**: ${how}`).join("\n"));
  const skipped = Object.entries(json.skipped as Record<string, string>);
  if (skipped.length) {
    out.push("### Not measured in this run");
    out.push(skipped.map(([k, v]) => `- ${k}: ${v}`).join("\n"));
  }
  return out.join("\n\n") + "\n";
}

/** An SVG element. */
const el = (tag: string, attrs: Record<string, string | number>, text = "") =>
  `<${tag}${Object.entries(attrs).map(([k, v]) => ` ${k}="${v}"`).join("")}` +
  (text ? `>${text}</${tag}>` : "/>");

/** The chart: channel throughput over each runtime's Unix socket (split placement), log scale. */
function chart(json: any): string {
  const ratios: Ratio[] = json.ratios;
  const placement = "split" in json.placements ? "split" : "same";
  const series = [
    ["channel (copying) / Unix socket, one write per message", "Channel send / recvInto"],
    ["channel zero-copy / Unix socket", "Channel reserve+commit / recvView"],
    ["the Rust ring copying / Unix socket", "Rust ring, copying"],
  ].map(([label, name], i) => [label, name, ["#2f6fb3", "#e08a1e", "#8c8c8c"][i]]);
  const sizes = [64, 4096, 65536, 1048576];
  const runtimes = [
    ...new Set(ratios.filter((r) => r.scenario === "channel").map((r) => r.num.runtime)),
  ].filter((rt) => rt !== "native");
  const value = (label: string, rt: string, size: number) =>
    ratios.find((r) =>
      r.label === label && r.num.size === size && r.num.placement === placement &&
      (r.num.runtime === rt || r.den.runtime === rt && r.num.runtime === "native")
    )?.median;
  const [W, H, left, top, bottom] = [300, 260, 50, 60, 50];
  const width = left + runtimes.length * W + 20;
  // 0.1x to 100x, log scale, rounded to tenths of a pixel.
  const y = (v: number) => Math.round((top + H - ((Math.log10(v) + 1) / 3) * H) * 10) / 10;
  const height = top + H + bottom;
  const title = `Messages/s over the runtime's Unix socket (one message per write), ${placement}`;
  const svg = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" ` +
    `font-family="sans-serif" font-size="12">`,
    el("rect", { width: "100%", height: "100%", fill: "white" }),
    el("text", { x: left, y: 20, "font-size": 14, "font-weight": "bold" }, title),
  ];
  series.forEach(([, name, color], i) => {
    svg.push(el("rect", { x: left + i * 230, y: 32, width: 12, height: 12, fill: color }));
    svg.push(el("text", { x: left + i * 230 + 16, y: 42 }, name));
  });
  for (const v of [0.1, 1, 10, 100]) {
    const stroke = v === 1 ? "#000" : "#ddd";
    svg.push(el("line", { x1: left, x2: width - 20, y1: y(v), y2: y(v), stroke }));
    svg.push(el("text", { x: left - 6, y: y(v) + 4, "text-anchor": "end" }, `${v}x`));
  }
  runtimes.forEach((rt, p) => {
    const x0 = left + p * W;
    const label = { x: x0 + W / 2, y: top + H + 38, "text-anchor": "middle" };
    svg.push(el("text", { ...label, "font-weight": "bold" }, rt));
    sizes.forEach((size, s) => {
      const gx = x0 + 10 + s * (W / sizes.length);
      const at = { x: gx + 30, y: top + H + 16, "text-anchor": "middle" };
      svg.push(el("text", at, sizeName(size)));
      series.forEach(([label, , color], i) => {
        const v = value(label, rt, size);
        if (v === undefined) return;
        const [x, yv, y1] = [gx + i * 20, y(Math.min(100, Math.max(0.1, v))), y(1)];
        const h = Math.max(1, Math.round(Math.abs(y1 - yv) * 10) / 10);
        const title = `<title>${label}: ${num(v)}x</title>`;
        svg.push(el("rect", { x, y: Math.min(yv, y1), width: 18, height: h, fill: color }, title));
        const ty = v >= 1 ? yv - 3 : yv + 11;
        svg.push(el("text", { x: x + 9, y: ty, "text-anchor": "middle", "font-size": 9 }, num(v)));
        const goal = GOALS.find((g) => g.label === label && g.size === size && g.atLeast)?.bound;
        if (goal === undefined) return;
        const [x1, x2, yg] = [x - 2, x + 20, y(goal)];
        const line = { x1, x2, y1: yg, y2: yg, stroke: "#c00", "stroke-width": 2 };
        svg.push(el("line", line, `<title>goal: at least ${goal}x</title>`));
      });
    });
  });
  svg.push("</svg>");
  return svg.join("\n") + "\n";
}

/** The README's sentence of figures: the channel's headline ratios, from the same JSON. */
function summary(json: any): string {
  const ratios: Ratio[] = json.ratios;
  const placement = "split" in json.placements ? "split" : "same";
  const pick = (label: string, size: number) =>
    ratios.filter((r) => r.label === label && r.num.size === size && r.num.placement === placement)
      .map((r) => `${num(r.median)}x in ${r.num.runtime[0].toUpperCase()}${r.num.runtime.slice(1)}`)
      .join(", ") || "not measured";
  const where = placement === "split" ? "on two cores" : "on one core";
  const { met, all } = goalSummary(ratios);
  return `![Channel throughput over the runtime's Unix socket](docs/channel-throughput.svg)\n\n` +
    `Between two processes ${where}, medians of ${json.runs} run${json.runs > 1 ? "s" : ""} of ` +
    `one \`make bench\`: 64 B ` +
    `messages through a channel (\`send\` / \`recvInto\`) reach ` +
    `${pick("channel (copying) / Unix socket, one write per message", 64)} the messages/s of ` +
    `the runtime's own Unix socket written one message per write ` +
    `(${pick("channel (copying) / Unix socket, packed 64 KiB writes", 64)} of the socket with ` +
    `messages packed into 64 KiB writes) and ` +
    `${pick("channel (copying) / the Rust ring copying", 64)} of the Rust ring doing the same; ` +
    `64 KiB messages zero-copy reach ${pick("channel zero-copy / Unix socket", 65536)} the ` +
    `socket. ${met} of the run's ${all} goal cases are met; ` +
    `[which, and where the time goes](bench/README.md#the-goals). The method, every figure and ` +
    `every comparison: [bench/README.md](bench/README.md).\n`;
}

/** Replaces the text between `<!-- tag -->` and `<!-- /tag -->` in `file`. */
function splice(file: string, tag: string, text: string): void {
  const old = readFileSync(file, "utf8");
  const [open, close] = [`<!-- ${tag} -->`, `<!-- /${tag} -->`];
  const [i, j] = [old.indexOf(open), old.indexOf(close)];
  if (i < 0 || j < i) throw new Error(`${file} has no ${open} ... ${close} markers`);
  writeFileSync(file, `${old.slice(0, i + open.length)}\n${text}${old.slice(j)}`);
}

/**
 * Throws unless every bullet a goal's `see` names opens a bullet of _Where each nanosecond goes_
 * in `readme`: a bullet renamed there would leave the goals pointing at nothing.
 */
function seenBullets(readme: string): void {
  const from = readme.indexOf("## Where each nanosecond goes");
  const section = readme.slice(from, readme.indexOf("\n## ", from + 1));
  const titles = [...section.matchAll(/^ *- \*\*([^*]+)\*\*/gm)].map((m) =>
    m[1].replace(/\s+/g, " ")
  );
  for (const g of GOALS) {
    for (const name of g.see ? g.see.split("; ") : []) {
      if (!titles.some((t) => t.startsWith(name))) {
        throw new Error(`bench/report.ts: the goal "${g.label}" names no bullet "${name}"`);
      }
    }
  }
}

/** The A/B comparison of `make bench-ab`: every figure of both trees and their ratio per round. */
function ab(json: any): string {
  type Compared = Omit<Figure, keyof Stat> & { base: Stat; head: Stat; head_over_base: Stat };
  const figs: Compared[] = json.figures;
  const short = (commit: string) => commit.replace(/^([0-9a-f]{12})[0-9a-f]*/, "$1");
  const scenarios = Array.isArray(json.scenarios) ? ` SCENARIOS="${json.scenarios.join(" ")}"` : "";
  const rows = figs.map((f) => [
    f.scenario,
    f.runtime,
    f.what,
    sizeName(f.size),
    f.placement ?? "",
    f.metric,
    cell(f.base),
    cell(f.head),
    cell(f.head_over_base),
  ]);
  return [
    `\`make bench-ab BASE=${short(json.base)}${scenarios}\` with ` +
    `\`SB_BENCH_RUNS=${json.rounds}\`, ${json.generated.slice(0, 10)}: the bench of commit ` +
    `\`${short(json.base)}\` (base) and of \`${short(json.head)}\` (head), in turn, ` +
    `${json.rounds} rounds. Each cell: the median over rounds (lowest-highest); head / base is ` +
    `the ratio within each round (below 1: head takes less time)` +
    (json.not_in_both_every_round
      ? `; ${json.not_in_both_every_round} figures were not measured by both in every round.`
      : "."),
    table(
      ["scenario", "who", "what", "size", "placement", "metric", "base", "head", "head / base"],
      rows,
    ),
  ].join("\n\n") + "\n";
}

if (process.argv[2] === "--ab") {
  const json = JSON.parse(readFileSync(process.argv[3] ?? `${root}/bench/out/ab.json`, "utf8"));
  splice(`${root}/bench/README.md`, "ab", ab(json));
  spawnSync(process.execPath, ["fmt", "-q", `${root}/bench/README.md`]);
  console.error("[bench] wrote the A/B table of bench/README.md");
} else {
  seenBullets(readFileSync(`${root}/bench/README.md`, "utf8"));
  const json = JSON.parse(
    readFileSync(process.argv[2] ?? `${root}/bench/out/results.json`, "utf8"),
  );
  splice(`${root}/bench/README.md`, "results", results(json));
  writeFileSync(`${root}/docs/channel-throughput.svg`, chart(json));
  splice(`${root}/README.md`, "bench", summary(json));
  // The Markdown as `deno fmt` (which `make test` checks) lays it out.
  spawnSync(process.execPath, ["fmt", "-q", `${root}/README.md`, `${root}/bench/README.md`]);
  console.error(
    "[bench] wrote bench/README.md, docs/channel-throughput.svg and README.md's summary",
  );
}
