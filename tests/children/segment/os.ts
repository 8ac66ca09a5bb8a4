/**
 * What the OS says about segments, read through small commands (`cat`, `stat`, `test`) rather
 * than the runtime's file APIs: Deno grants `/proc` and `/dev` only with `--allow-all`, which the
 * project's test command does not pass.
 *
 * @module
 */

import { spawnSync } from "node:child_process";

function run(command: string, args: string[]): { status: number | null; stdout: string } {
  const r = spawnSync(command, args, { encoding: "utf8" });
  if (r.error) throw new Error(`${command} ${args.join(" ")}: ${r.error.message}`);
  return { status: r.status, stdout: r.stdout };
}

/**
 * The row of keyed segment `key` in /proc/sysvipc/shm as `{ perms, nattch }` (perms as the
 * kernel prints it, octal text), or undefined if there is no such segment.
 */
export function sysvSegment(key: number): { perms: string; nattch: number } | undefined {
  // The kernel prints the key as a signed 32-bit number.
  const cols = sysvRows().find((cols) => Number(cols[0]) === (key | 0));
  return cols && { perms: cols[2], nattch: Number(cols[6]) };
}

/** The key of the keyed segment with id `shmid` (as an unsigned number), if it exists. */
export function sysvKeyOf(shmid: number): number | undefined {
  const cols = sysvRows().find((cols) => Number(cols[1]) === shmid);
  return cols && Number(cols[0]) >>> 0;
}

/** The rows of `/proc/sysvipc/shm` (key, shmid, perms, size, cpid, lpid, nattch, ...), split. */
function sysvRows(): string[][] {
  const r = run("cat", ["/proc/sysvipc/shm"]);
  if (r.status !== 0) throw new Error("cannot read /proc/sysvipc/shm");
  return r.stdout.trim().split("\n").slice(1).map((row) => row.trim().split(/\s+/));
}

/** The permission bits of `path` as octal text (`"600"`), from `stat -c %a`. */
export function fileMode(path: string): string {
  const r = run("stat", ["-c", "%a", path]);
  if (r.status !== 0) throw new Error(`stat ${path} failed`);
  return r.stdout.trim();
}

/** True if `path` exists. */
export function fileExists(path: string): boolean {
  return run("test", ["-e", path]).status === 0;
}

/** Why {@linkcode sysvSegment} and {@linkcode fileMode} cannot work here, or false. */
export function whyNoOsView(): string | false {
  try {
    if (run("cat", ["/proc/sysvipc/shm"]).status !== 0) return "cannot read /proc/sysvipc/shm";
    if (run("stat", ["-c", "%a", "/dev/shm"]).status !== 0) return "cannot stat /dev/shm";
    return false;
  } catch (err) {
    return (err as Error).message;
  }
}
