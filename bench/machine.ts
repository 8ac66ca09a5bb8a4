/**
 * The `machine` section of the benchmark results: what the numbers were measured on. Prints one
 * JSON object. Every fact that cannot be read is reported as null rather than failing the run.
 *
 * @module
 */

import { readFileSync } from "node:fs";
import { env, placement, root, run, runtime } from "./common.ts";

/** A file's text; /proc and /sys through `cat`, since Deno lets only --allow-all read them. */
function read(path: string): string | null {
  try {
    return readFileSync(path, "utf8").trim();
  } catch {
    const result = run(["cat", path]);
    return result.error ? null : result.stdout.trim();
  }
}

function firstLine(command: string[]): string | null {
  const result = run(command);
  return result.error ? null : result.stdout.trim().split("\n")[0] ?? null;
}

function field(text: string | null, pattern: RegExp): string | null {
  return text?.match(pattern)?.[1]?.trim() ?? null;
}

const cpuinfo = read("/proc/cpuinfo");
const meminfo = read("/proc/meminfo");
const memKb = Number(field(meminfo, /^MemTotal:\s+(\d+)/m));
const thp = (name: string) =>
  field(read(`/sys/kernel/mm/transparent_hugepage/${name}`), /\[(\w+)\]/);
const git = firstLine(["git", "-C", root, "rev-parse", "--short", "HEAD"]);
const dirty = run(["git", "-C", root, "status", "--porcelain"]).stdout.trim() !== "";

console.log(JSON.stringify({
  section: "machine",
  date: new Date().toISOString(),
  nproc: navigator.hardwareConcurrency,
  cpu: field(cpuinfo, /^model name\s*:(.*)$/m),
  kernel: read("/proc/sys/kernel/osrelease"),
  os: field(read("/etc/os-release"), /^PRETTY_NAME="?([^"\n]*)"?$/m),
  memory_gib: Number.isFinite(memKb) ? Math.round(memKb / 1048576 * 10) / 10 : null,
  loadavg_at_start: read("/proc/loadavg")?.split(" ").slice(0, 3).map(Number) ?? null,
  transparent_hugepage: { enabled: thp("enabled"), shmem_enabled: thp("shmem_enabled") },
  placement: placement(),
  versions: {
    deno: firstLine([env("DENO", "deno"), "--version"]),
    bun: firstLine([env("BUN", "bun"), "--version"]),
    node: firstLine([env("NODE", "node"), "--version"]),
    rustc: firstLine(["rustc", "--version"]),
  },
  measured_by: runtime,
  git: git === null ? null : `${git}${dirty ? " (with uncommitted changes)" : ""}`,
}));
