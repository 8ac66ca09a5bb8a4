/**
 * An SVG bar chart of the channel section: for each runtime and message size, one-way throughput
 * of the channel (copying and zero-copy paths) and of the Rust ring, each divided by the runtime's
 * Unix socket (one message per write) measured in the same run and placement, on a log scale,
 * with the goals marked.
 *
 * `deno run --allow-read --allow-write bench/channel_chart.ts [results.json]` redraws it from
 * `bench/out/results.json` into `docs/channel-throughput.svg` (for the README) and
 * `bench/out/channel.svg`; `bench/channel.ts` also draws `bench/out/channel.svg` after each run.
 *
 * @module
 */

// deno-lint-ignore no-explicit-any
type Json = any;

const SIZES: [number, string][] = [[64, "64 B"], [4096, "4 KiB"], [65536, "64 KiB"], [
  1 << 20,
  "1 MiB",
]];
const SERIES: { key: string; label: string; color: string }[] = [
  { key: "channel", label: "Channel send / recvInto (copying)", color: "#2f6fb3" },
  { key: "channel_zc", label: "Channel reserve+commit / recvView (zero-copy)", color: "#e08a1e" },
  { key: "native", label: "Rust ring, copying", color: "#8c8c8c" },
  { key: "native_zc", label: "Rust ring, zero-copy", color: "#c8c8c8" },
];
/** Goals drawn on the chart: [size, series, at least]. */
const GOAL_MARKS: [number, string, number][] = [
  [64, "channel", 10],
  [65536, "channel", 1],
  [65536, "channel_zc", 2],
];

const esc = (s: string) => s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
const fmt = (v: number) =>
  v >= 100 ? v.toFixed(0) : v >= 10 ? v.toFixed(1) : v >= 1 ? v.toFixed(2) : v.toFixed(2);

/** The chart of one channel section (the object `bench/channel.ts` prints) as SVG text. */
export function channelChartSvg(section: Json): string {
  const results = section?.results ?? {};
  const placement = results.split ? "split" : "same";
  const where = placement === "split"
    ? "receiver taskset -c 0, sender taskset -c 1"
    : "both processes taskset -c 0";
  const runtimes = ["deno", "bun"].filter((r) => results[placement]?.[r]);
  const rate = (who: string, tr: string, size: number): number | undefined =>
    results[placement]?.[who]?.[tr]?.[size]?.throughput?.msgs_per_s;
  const value = (who: string, series: string, size: number): number | undefined => {
    const socket = rate(who, "socket", size);
    const num = series === "native"
      ? rate("native", "copy", size)
      : series === "native_zc"
      ? rate("native", "zero_copy", size)
      : rate(who, series, size);
    return socket && num ? num / socket : undefined;
  };

  const panelW = 460;
  const left = 56;
  const top = 70;
  const plotH = 300;
  const width = left + runtimes.length * panelW + 20;
  const height = top + plotH + 136;
  let max = 10;
  let min = 1;
  for (const who of runtimes) {
    for (const [size] of SIZES) {
      for (const s of SERIES) {
        const v = value(who, s.key, size);
        if (v !== undefined) {
          max = Math.max(max, v);
          min = Math.min(min, v);
        }
      }
    }
  }
  const lo = 10 ** Math.floor(Math.log10(min));
  const hi = 10 ** Math.ceil(Math.log10(max * 1.15));
  const y = (v: number) =>
    top + plotH - ((Math.log10(v) - Math.log10(lo)) / (Math.log10(hi) - Math.log10(lo))) * plotH;

  const out: string[] = [];
  out.push(
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" ` +
      `viewBox="0 0 ${width} ${height}" font-family="Helvetica, Arial, sans-serif" font-size="12">`,
    `<rect width="100%" height="100%" fill="#ffffff"/>`,
    `<text x="${left}" y="24" font-size="16" font-weight="bold">` +
      `${esc("Channel one-way throughput ÷ the same runtime's Unix socket")}</text>`,
    `<text x="${left}" y="44" fill="#444">${
      esc(
        `Same run, ${placement} placement (${where}). Socket: length-prefixed frames, ` +
          `one message per write. Log scale; 1x = the socket.`,
      )
    }</text>`,
  );
  runtimes.forEach((who, p) => {
    const x0 = left + p * panelW;
    const plotW = panelW - 30;
    const name = who === "deno" ? "Deno" : "Bun";
    const number = String(section?.versions?.[who] ?? "").match(/\d+\.\d+\.\d+/)?.[0];
    const version = number ? `${name} ${number}` : name;
    out.push(
      `<text x="${x0 + plotW / 2}" y="${top - 8}" text-anchor="middle" font-weight="bold">${
        esc(version)
      }</text>`,
    );
    // Grid lines at each power of ten and at 2x, 5x.
    for (let d = lo; d <= hi * 1.0001; d *= 10) {
      for (const m of [1, 2, 5]) {
        const v = d * m;
        if (v > hi * 1.0001) continue;
        const yy = y(v).toFixed(1);
        out.push(
          `<line x1="${x0}" x2="${x0 + plotW}" y1="${yy}" y2="${yy}" stroke="${
            m === 1 ? "#cccccc" : "#eeeeee"
          }"/>`,
        );
        if (p === 0 || m === 1) {
          out.push(
            `<text x="${x0 - 6}" y="${Number(yy) + 4}" text-anchor="end" fill="#666">${
              fmt(v).replace(/\.0+$/, "")
            }x</text>`,
          );
        }
      }
    }
    out.push(
      `<line x1="${x0}" x2="${x0 + plotW}" y1="${y(1)}" y2="${y(1)}" stroke="#333" ` +
        `stroke-width="1.5"/>`,
    );
    const groupW = plotW / SIZES.length;
    const barW = Math.min(28, (groupW - 16) / SERIES.length);
    SIZES.forEach(([size, label], g) => {
      const gx = x0 + g * groupW + (groupW - barW * SERIES.length) / 2;
      out.push(
        `<text x="${x0 + g * groupW + groupW / 2}" y="${
          top + plotH + 18
        }" text-anchor="middle">${label}</text>`,
      );
      SERIES.forEach((s, i) => {
        const v = value(who, s.key, size);
        const bx = gx + i * barW;
        if (v === undefined) return;
        const yTop = y(v);
        const yBase = y(Math.max(lo, Math.min(1, v)));
        const [ya, yb] = v >= 1 ? [yTop, y(1)] : [yBase, yTop];
        out.push(
          `<rect x="${bx.toFixed(1)}" y="${Math.min(ya, yb).toFixed(1)}" width="${
            (barW - 2).toFixed(1)
          }" height="${Math.max(1, Math.abs(yb - ya)).toFixed(1)}" fill="${s.color}">` +
            `<title>${esc(`${name} ${label}: ${s.label} = ${fmt(v)}x the socket`)}</title></rect>`,
          `<text x="${(bx + barW / 2 - 1).toFixed(1)}" y="${
            (v >= 1 ? yTop - 4 : yTop + 11).toFixed(1)
          }" text-anchor="middle" font-size="10" fill="#222">${fmt(v)}</text>`,
        );
        for (const [gSize, gSeries, target] of GOAL_MARKS) {
          if (gSize !== size || gSeries !== s.key) continue;
          const gy = y(target).toFixed(1);
          out.push(
            `<line x1="${(bx - 2).toFixed(1)}" x2="${(bx + barW).toFixed(1)}" y1="${gy}" ` +
              `y2="${gy}" stroke="#c0392b" stroke-width="2" stroke-dasharray="3,2">` +
              `<title>goal: at least ${target}x</title></line>`,
          );
        }
      });
    });
  });
  // Legend.
  const ly = top + plotH + 44;
  let lx = left;
  for (const s of SERIES) {
    out.push(
      `<rect x="${lx}" y="${ly - 10}" width="12" height="12" fill="${s.color}"/>`,
      `<text x="${lx + 17}" y="${ly}">${esc(s.label)}</text>`,
    );
    lx += 17 + s.label.length * 6.4 + 16;
  }
  out.push(
    `<line x1="${left}" x2="${left + 18}" y1="${ly + 20}" y2="${ly + 20}" stroke="#c0392b" ` +
      `stroke-width="2" stroke-dasharray="3,2"/>`,
    `<text x="${left + 24}" y="${ly + 24}">${
      esc(
        "goal (64 B: 10x; 64 KiB: 1x copying, 2x zero-copy). Bars: messages/s ratio = bytes/s ratio.",
      )
    }</text>`,
    `<text x="${left}" y="${ly + 48}" fill="#666" font-size="11">${
      esc(
        `bench/channel.ts (make bench). Rings: 256 KiB for 64 B and 4 KiB, 4 MiB for 64 KiB ` +
          `and 1 MiB messages. ${section?.settings?.measure_ms ?? "?"} ms counted after ` +
          `${section?.settings?.warmup_ms ?? "?"} ms warm-up; median of ` +
          `${section?.settings?.rounds ?? "?"} rounds.`,
      )
    }</text>`,
    `<text x="${left}" y="${ly + 64}" fill="#666" font-size="11">${
      esc(
        `Zero-copy producers write only a 5-byte stamp in place (as native_ring --zero-copy ` +
          `touches the first and last byte); every receiver checks every message's stamp.`,
      )
    }</text>`,
    `</svg>`,
  );
  return out.join("\n") + "\n";
}

if (import.meta.main) {
  const { readFileSync, writeFileSync, mkdirSync } = await import("node:fs");
  const process = (await import("node:process")).default;
  const root = decodeURIComponent(new URL("../", import.meta.url).pathname).replace(/\/$/, "");
  const path = process.argv[2] ?? `${root}/bench/out/results.json`;
  const json = JSON.parse(readFileSync(path, "utf8"));
  const section = json.section === "channel" ? json : json.channel;
  if (!section || section.skipped) {
    throw new Error(`no channel section in ${path}${section ? `: ${section.skipped}` : ""}`);
  }
  const svg = channelChartSvg(section);
  mkdirSync(`${root}/docs`, { recursive: true });
  for (const file of [`${root}/docs/channel-throughput.svg`, `${root}/bench/out/channel.svg`]) {
    writeFileSync(file, svg);
    console.log(`wrote ${file}`);
  }
}
