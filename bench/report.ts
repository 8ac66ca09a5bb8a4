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
 * Nothing here is measured or written by hand: every number comes from the JSON. Run it with
 * Deno: it formats the Markdown it wrote with `deno fmt`.
 *
 * @module
 */

import { spawnSync } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import process from "node:process";
import { root } from "./harness.ts";

/** A figure or ratio as `bench/run.ts` writes it. */
interface Stat {
  median: number;
  min: number;
  max: number;
  runs: number[];
}
interface Figure extends Stat {
  scenario: string;
  runtime: string;
  what: string;
  size?: number;
  placement?: string;
  metric: string;
}
type Side = Omit<Figure, keyof Stat | "scenario">;
interface Ratio extends Stat {
  scenario: string;
  label: string;
  num: Side;
  den: Side;
  note?: string;
}

/**
 * The goals, as ratios of the same run: a goal is met when the ratio's median over runs is on
 * the right side. `runtimes`, `size` and `placement` narrow where the goal applies.
 */
const GOALS: {
  label: string;
  size?: number;
  placement?: string;
  atLeast?: number;
  atMost?: number;
}[] = [
  { label: "channel (copying) / Unix socket, one write per message", size: 64, atLeast: 10 },
  { label: "channel with a receive timeout / Unix socket", size: 64, atLeast: 10 },
  { label: "channel (copying) / the Rust ring copying", size: 64, atLeast: 0.5 },
  { label: "channel with a receive timeout / the Rust ring", size: 64, atLeast: 0.5 },
  { label: "channel (copying) / the Rust ring copying", size: 4096, atLeast: 0.7 },
  { label: "channel with a receive timeout / the Rust ring", size: 4096, atLeast: 0.7 },
  { label: "channel batch / the Rust ring copying", size: 64, atLeast: 0.8 },
  { label: "channel (copying) / Unix socket, one write per message", size: 65536, atLeast: 1 },
  { label: "channel zero-copy / Unix socket", size: 65536, atLeast: 2 },
  { label: "channel zero-copy / the Rust ring zero-copy", size: 65536, atLeast: 0.7 },
  { label: "round trip: channel (parked) / Unix socket", atMost: 0.5 },
  { label: "round trip: wait/notify (park) / Unix socket", atMost: 0.5 },
  { label: "round trip: wait/notify (park) / Rust futex", atMost: 1.25 },
  { label: "attach key, 4 KiB: time / libc's", atMost: 2 },
  { label: "attach key, 1 GiB: time / libc's", atMost: 2 },
  { label: "attach key_view, 4 KiB: time / libc's", atMost: 2 },
  { label: "attach key_view, 1 GiB: time / libc's", atMost: 2 },
  { label: "f64_sum over a shared buffer: GB/s / a plain ArrayBuffer's", atLeast: 0.95 },
  { label: "u8_set over a shared buffer: GB/s / a plain ArrayBuffer's", atLeast: 0.95 },
];

const goalOf = (r: Ratio) =>
  r.num.runtime === "native" || r.num.runtime === "seed"
    ? undefined
    : GOALS.find((g) =>
      g.label === r.label && (g.size === undefined || g.size === r.num.size) &&
      (g.placement === undefined || g.placement === r.num.placement)
    );

const SIZE_NAMES: Record<number, string> = {
  67108864: "64 MiB",
  8: "8 B",
  64: "64 B",
  4096: "4 KiB",
  65536: "64 KiB",
  1048576: "1 MiB",
  1073741824: "1 GiB",
};
const sizeName = (n?: number) => (n === undefined ? "" : SIZE_NAMES[n] ?? `${n} B`);

/** A number for people: 3 significant digits, thousands as k/M. */
function num(v: number): string {
  const a = Math.abs(v);
  if (a >= 1e6) return `${+(v / 1e6).toPrecision(3)}M`;
  if (a >= 1e4) return `${+(v / 1e3).toPrecision(3)}k`;
  return a >= 100 ? v.toFixed(0) : `${+v.toPrecision(3)}`;
}

/** The median, with its min-max spread when there was more than one run. */
const cell = (
  s?: Stat,
) => (!s
  ? ""
  : s.runs.length > 1
  ? `${num(s.median)} (${num(s.min)}-${num(s.max)})`
  : num(s.median));

/** A Markdown table. */
function table(head: string[], body: string[][]): string {
  const line = (cells: string[]) => `| ${cells.join(" | ")} |`;
  return [line(head), line(head.map(() => "---")), ...body.map(line)].join("\n");
}

/**
 * Figures as a table: one row per `rowOf`, one column per `colOf`, each cell drawn by `draw`
 * (the median and its spread by default).
 */
function pivot(
  figs: Figure[],
  rowOf: (f: Figure) => string,
  colOf: (f: Figure) => string,
  first: string,
  draw: (f: Figure) => string = cell,
): string {
  const rows = [...new Set(figs.map(rowOf))];
  const cols = [...new Set(figs.map(colOf))];
  const at = new Map(figs.map((f) => [`${rowOf(f)}\u0000${colOf(f)}`, f]));
  return table(
    [first, ...cols],
    rows.map((
      r,
    ) => [r, ...cols.map((c) => at.has(`${r}\u0000${c}`) ? draw(at.get(`${r}\u0000${c}`)!) : "")]),
  );
}

const TRIPS = "Median µs per round trip (lowest-highest run), then p99 µs and the CPU µs both " +
  "processes used per round trip (medians over runs):\n";

/** Round-trip figures as a table: median with spread, p99 and CPU per round trip in each cell. */
function trips(
  figs: Figure[],
  rowOf: (f: Figure) => string,
  colOf: (f: Figure) => string,
  first: string,
): string {
  const other = (f: Figure, metric: string) =>
    figs.find((g) => g.metric === metric && rowOf(g) === rowOf(f) && colOf(g) === colOf(f));
  return pivot(figs.filter((f) => f.metric === "median_us"), rowOf, colOf, first, (f) => {
    const [p99, cpu] = [other(f, "p99_us"), other(f, "cpu_us")];
    return `${cell(f)}; p99 ${p99 ? num(p99.median) : "?"}${cpu ? `; CPU ${num(cpu.median)}` : ""}`;
  });
}

/**
 * The hot path split into its pieces, per runtime: `send` is the copy in (`Uint8Array.set`), three
 * `Atomics.store` (tail, reservation mark, commit word) and two `Atomics.load` (the receiver's
 * flags and its waiting word); `recvInto` is the copy out (byte by byte), the record zeroed
 * word by word, one `Atomics.store` (head) and two `Atomics.load` (the commit word, the
 * senders' waiting word). The rest is argument checks, state checks and calls.
 */
function breakdown(figs: Figure[]): string {
  const runtimes = [...new Set(figs.map((f) => f.runtime))];
  const fig = (rt: string, what: string) =>
    figs.find((f) => f.runtime === rt && f.what === what)?.median ?? NaN;
  // A piece's own cost: its loop's time less the empty loop's; a call's: as measured.
  const at = (rt: string, what: string) =>
    fig(rt, what) - (/^(send|recv)/.test(what) ? 0 : fig(rt, "empty_loop"));
  const parts: [string, (rt: string) => number][] = [
    ["send: the whole call", (rt) => at(rt, "send")],
    ["send: copy in (set)", (rt) => at(rt, "copy_in_set_64")],
    [
      "send: 3 Atomics.store + 2 Atomics.load",
      (rt) => 3 * at(rt, "atomics_store") + 2 * at(rt, "atomics_load"),
    ],
    [
      "send: the rest (checks, calls)",
      (rt) =>
        at(rt, "send") - at(rt, "copy_in_set_64") - 3 * at(rt, "atomics_store") -
        2 * at(rt, "atomics_load"),
    ],
    ["recvInto: the whole call", (rt) => at(rt, "recv_into")],
    ["recvInto: copy out (byte loop)", (rt) => at(rt, "copy_out_loop_64")],
    ["recvInto: zero the record (words)", (rt) => at(rt, "zero_72_words")],
    [
      "recvInto: 1 Atomics.store + 2 Atomics.load",
      (rt) => at(rt, "atomics_store") + 2 * at(rt, "atomics_load"),
    ],
    [
      "recvInto: the rest (checks, calls)",
      (rt) =>
        at(rt, "recv_into") - at(rt, "copy_out_loop_64") - at(rt, "zero_72_words") -
        at(rt, "atomics_store") - 2 * at(rt, "atomics_load"),
    ],
    ["recvInto: what a timeout adds", (rt) => at(rt, "recv_into_timeout") - at(rt, "recv_into")],
    ["a clock read it no longer makes (performance.now)", (rt) => at(rt, "performance_now")],
  ];
  return table(
    ["ns", ...runtimes],
    parts.map(([label, f]) => [label, ...runtimes.map((rt) => num(Math.round(f(rt) * 10) / 10))]),
  );
}

/** The ratios of one scenario, with their goals and the numbers of their notes. */
function ratioTable(ratios: Ratio[], notes: (string | undefined)[]): string {
  return table(
    ["ratio", "who", "size", "placement", "value", "goal"],
    ratios.map((r) => {
      const g = goalOf(r);
      const goal = !g
        ? ""
        : `${g.atLeast !== undefined ? `≥ ${g.atLeast}` : `≤ ${g.atMost}`} ${
          (g.atLeast !== undefined ? r.median >= g.atLeast : r.median <= g.atMost!)
            ? "met"
            : "**not met**"
        }`;
      const mark = r.note ? ` [${notes.indexOf(r.note) + 1}]` : "";
      const who = r.num.runtime === r.den.runtime
        ? r.num.runtime
        : `${r.num.runtime} / ${r.den.runtime}`;
      return [r.label + mark, who, sizeName(r.num.size), r.num.placement ?? "", cell(r), goal];
    }),
  );
}

/** Every section of `bench/README.md`'s results, from the JSON. */
function results(json: any): string {
  const figs: Figure[] = json.figures;
  const ratios: Ratio[] = json.ratios;
  const of = (scenario: string, pred: (f: Figure) => boolean = () => true) =>
    figs.filter((f) => f.scenario === scenario && pred(f));
  const m = json.machine;
  const out: string[] = [];
  out.push(
    `Run of ${json.generated.slice(0, 16).replace("T", " ")} UTC: ${json.runs} run(s) of every ` +
      `scenario in ${Math.round(json.elapsed_s)} s on ${m.cpus} CPUs (${m.cpu}), Linux ` +
      `${m.kernel}; ${Object.values(m.versions).join(", ")}. Load average ` +
      `${m.load_average.at_start.join(" / ")} at the start and ${
        m.load_average.at_end.join(" / ")
      } ` +
      "at the end (other work shares this machine). Each cell is the median over runs, with the " +
      "lowest and highest run in brackets.",
  );
  const placementText = (p?: string) => (p ? `${p}: ${json.placements[p]}` : "");

  out.push("### Attach: open + view + close, µs per call\n");
  out.push(
    pivot(
      of("attach", (f) => f.metric === "us"),
      (f) => `${f.runtime} ${f.what}`,
      (f) => sizeName(f.size),
      "who, variant",
    ),
  );
  out.push("### Throughput over a 64 MiB buffer, GB/s\n");
  out.push(
    pivot(
      of("throughput"),
      (f) => `${f.runtime} ${f.what}`,
      (f) => f.metric.replace("_gbps", ""),
      "who, kernel",
    ),
  );
  out.push("### Lock, notify and wait on one thread, ns per call\n");
  out.push(pivot(of("mutex", (f) => f.metric === "ns"), (f) => f.what, (f) => f.runtime, "call"));
  out.push("System calls of the looping thread per call, counted with `strace -f`:\n");
  out.push(pivot(
    of("mutex", (f) => f.metric === "syscalls per call"),
    (f) => f.what,
    (f) => f.runtime,
    "call",
  ));
  out.push(
    "CPU of a fresh process, ms per second: one `waitAsync` nobody notifies against idling:\n",
  );
  out.push(
    pivot(of("mutex", (f) => f.what === "idle"), (f) => f.metric, (f) => f.runtime, "period"),
  );
  if (of("hotpath").length) {
    out.push("### The channel's hot path on one thread, 64 B, ns per call\n");
    out.push(pivot(of("hotpath"), (f) => f.what, (f) => f.runtime, "call or piece"));
    out.push(
      "Where each call's nanoseconds go (medians of the table above; a piece's own cost is its " +
        "figure less the empty loop's; what is left is the call's checks and JavaScript calls):\n",
    );
    out.push(breakdown(of("hotpath")));
  }
  if (of("ownership").length) {
    out.push("### Engine-owned buffers: attach, unlink and the forced collection, µs\n");
    out.push(pivot(
      of("ownership"),
      (f) => `${f.runtime} ${f.what}`,
      (f) => `${sizeName(f.size)} ${f.metric.replace("_us", "")}`.trim(),
      "who, operation",
    ));
  }
  for (const p of Object.keys(json.placements)) {
    out.push(`### Wait/notify round trips, ${placementText(p)}\n`);
    out.push(TRIPS);
    out.push(
      trips(of("wait", (f) => f.placement === p), (f) => f.what, (f) => f.runtime, "variant"),
    );
  }
  for (const p of Object.keys(json.placements)) {
    const c = of("channel", (f) => f.placement === p);
    if (!c.length) continue;
    out.push(`### Channel throughput, messages/s, ${placementText(p)}\n`);
    const rate = c.filter((f) => f.metric === "msgs_per_s");
    out.push(
      pivot(rate, (f) => `${f.runtime} ${f.what}`, (f) => sizeName(f.size), "who, transport"),
    );
    out.push(`### Channel round trips, ${placementText(p)}\n`);
    out.push(TRIPS);
    out.push(trips(c, (f) => `${f.runtime} ${f.what}`, (f) => sizeName(f.size), "who, transport"));
  }
  out.push("### Ratios of the same run\n");
  out.push(
    "Each ratio is taken within one run, then its median over runs (lowest-highest run in " +
      "brackets). A goal is met when the median is on its side.\n",
  );
  const notes = [...new Set(ratios.map((r) => r.note).filter(Boolean))];
  out.push(notes.map((n, i) => `[${i + 1}] ${n}.`).join("\n"));
  for (const scenario of Object.keys(json.scenarios)) {
    const mine = ratios.filter((r) => r.scenario === scenario);
    if (!mine.length) continue;
    out.push(`#### ${scenario}\n`);
    out.push(ratioTable(mine, notes));
  }
  const skipped = Object.entries(json.skipped as Record<string, string>);
  if (skipped.length) {
    out.push("### Not measured in this run\n");
    out.push(skipped.map(([k, v]) => `- ${k}: ${v}`).join("\n"));
  }
  return out.join("\n\n") + "\n";
}

/** The chart: channel throughput over each runtime's Unix socket (split placement), log scale. */
function chart(json: any): string {
  const ratios: Ratio[] = json.ratios;
  const placement = "split" in json.placements ? "split" : "same";
  const series = [
    [
      "channel (copying) / Unix socket, one write per message",
      "Channel send / recvInto",
      "#2f6fb3",
    ],
    ["channel zero-copy / Unix socket", "Channel reserve+commit / recvView", "#e08a1e"],
    ["the Rust ring copying / Unix socket", "Rust ring, copying", "#8c8c8c"],
  ];
  const sizes = [64, 4096, 65536, 1048576];
  const runtimes = [
    ...new Set(ratios.filter((r) => r.scenario === "channel").map((r) => r.num.runtime)),
  ]
    .filter((rt) => rt !== "native");
  const value = (label: string, rt: string, size: number) =>
    ratios.find((r) =>
      r.label === label && r.num.size === size && r.num.placement === placement &&
      (r.num.runtime === rt || r.den.runtime === rt && r.num.runtime === "native")
    )?.median;
  const [W, H, left, top, bottom] = [300, 260, 50, 60, 50];
  const width = left + runtimes.length * W + 20;
  // 0.1x to 100x, log scale, rounded to tenths of a pixel.
  const y = (v: number) => Math.round((top + H - ((Math.log10(v) + 1) / 3) * H) * 10) / 10;
  const svg: string[] = [];
  svg.push(
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${
      top + H + bottom
    }" font-family="sans-serif" font-size="12">`,
  );
  svg.push(`<rect width="100%" height="100%" fill="white"/>`);
  svg.push(
    `<text x="${left}" y="20" font-size="14" font-weight="bold">Messages/s over the runtime's Unix socket (one message per write), ${placement}</text>`,
  );
  series.forEach(([, name, color], i) => {
    svg.push(
      `<rect x="${left + i * 230}" y="32" width="12" height="12" fill="${color}"/><text x="${
        left + i * 230 + 16
      }" y="42">${name}</text>`,
    );
  });
  for (const v of [0.1, 1, 10, 100]) {
    svg.push(
      `<line x1="${left}" x2="${width - 20}" y1="${y(v)}" y2="${y(v)}" stroke="${
        v === 1 ? "#000" : "#ddd"
      }"/>`,
    );
    svg.push(`<text x="${left - 6}" y="${y(v) + 4}" text-anchor="end">${v}x</text>`);
  }
  runtimes.forEach((rt, p) => {
    const x0 = left + p * W;
    svg.push(
      `<text x="${x0 + W / 2}" y="${
        top + H + 38
      }" text-anchor="middle" font-weight="bold">${rt}</text>`,
    );
    sizes.forEach((size, s) => {
      const gx = x0 + 10 + s * (W / sizes.length);
      svg.push(
        `<text x="${gx + 30}" y="${top + H + 16}" text-anchor="middle">${sizeName(size)}</text>`,
      );
      series.forEach(([label, , color], i) => {
        const v = value(label, rt, size);
        if (v === undefined) return;
        const clamped = Math.min(100, Math.max(0.1, v));
        const [x, yv, y1] = [gx + i * 20, y(clamped), y(1)];
        svg.push(
          `<rect x="${x}" y="${Math.min(yv, y1)}" width="18" height="${
            Math.max(1, Math.round(Math.abs(y1 - yv) * 10) / 10)
          }" fill="${color}"><title>${label}: ${num(v)}x</title></rect>`,
        );
        svg.push(
          `<text x="${x + 9}" y="${v >= 1 ? yv - 3 : yv + 11}" text-anchor="middle" font-size="9">${
            num(v)
          }</text>`,
        );
        const goal = GOALS.find((g) => g.label === label && g.size === size)?.atLeast;
        if (goal !== undefined) {
          svg.push(
            `<line x1="${x - 2}" x2="${x + 20}" y1="${y(goal)}" y2="${
              y(goal)
            }" stroke="#c00" stroke-width="2"><title>goal: at least ${goal}x</title></line>`,
          );
        }
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
  return `![Channel throughput over the runtime's Unix socket](docs/channel-throughput.svg)\n\n` +
    `Between two processes ${where}, medians of ${json.runs} runs of one \`make bench\`: 64 B ` +
    `messages through a channel (\`send\` / \`recvInto\`) reach ` +
    `${pick("channel (copying) / Unix socket, one write per message", 64)} the messages/s of ` +
    `the runtime's own Unix socket written one message per write ` +
    `(${pick("channel (copying) / Unix socket, packed 64 KiB writes", 64)} of the socket with ` +
    `messages packed into 64 KiB writes) and ` +
    `${pick("channel (copying) / the Rust ring copying", 64)} of the Rust ring doing the same; ` +
    `64 KiB messages zero-copy reach ${pick("channel zero-copy / Unix socket", 65536)} the ` +
    `socket. The method, every figure and every comparison: [bench/README.md](bench/README.md).\n`;
}

/** Replaces the text between `<!-- tag -->` and `<!-- /tag -->` in `file`. */
function splice(file: string, tag: string, text: string): void {
  const old = readFileSync(file, "utf8");
  const [open, close] = [`<!-- ${tag} -->`, `<!-- /${tag} -->`];
  const [i, j] = [old.indexOf(open), old.indexOf(close)];
  if (i < 0 || j < i) throw new Error(`${file} has no ${open} ... ${close} markers`);
  writeFileSync(file, `${old.slice(0, i + open.length)}\n${text}${old.slice(j)}`);
}

const json = JSON.parse(readFileSync(process.argv[2] ?? `${root}/bench/out/results.json`, "utf8"));
splice(`${root}/bench/README.md`, "results", results(json));
writeFileSync(`${root}/docs/channel-throughput.svg`, chart(json));
splice(`${root}/README.md`, "bench", summary(json));
// The Markdown as `deno fmt` (which `make test` checks) lays it out.
spawnSync(process.execPath, ["fmt", "-q", `${root}/README.md`, `${root}/bench/README.md`]);
console.error("[bench] wrote bench/README.md, docs/channel-throughput.svg and README.md's summary");
