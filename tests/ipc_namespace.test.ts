/**
 * System V segments in a fresh IPC namespace (`unshare --ipc`, so root is needed), where the
 * first segment made gets id 0: a valid id, which the seed package's `detachSharedBuffer` takes
 * for "already detached" (it refuses to detach such a buffer). Every runtime makes one there
 * through `SharedMemory` and one through the seed's API, attaches it a second time, detaches and
 * removes it.
 *
 * @module
 */

import { spawnSync } from "node:child_process";
import process from "node:process";
import {
  childrenTestUnless,
  isRoot,
  lacking,
  type Missing,
  type Runtime,
  runtimes,
  scriptCommand,
  start,
} from "./harness.ts";

/** Why a child cannot be put in a fresh IPC namespace here, or false if it can. */
function whyNoIpcNamespace(): Missing | string | false {
  if (process.platform !== "linux") return lacking("IPC namespaces are Linux's");
  if (!isRoot) return lacking("needs root to make an IPC namespace");
  const probe = spawnSync("unshare", ["--ipc", "true"], { encoding: "utf8" });
  if (probe.error) return `unshare is not available (${probe.error.message})`;
  if (probe.status !== 0) {
    return `unshare --ipc fails here (${probe.stderr.trim() || `exit ${probe.status}`})`;
  }
  return false;
}

const noIpcNamespace = whyNoIpcNamespace();

function assertEquals(actual: unknown, expected: unknown, what: string): void {
  const a = JSON.stringify(actual);
  const e = JSON.stringify(expected);
  if (a !== e) throw new Error(`${what}: expected ${e}, got ${a}`);
}

/** Runs `segment/id_zero.ts` in `which` in a fresh IPC namespace and returns its result. */
async function inFreshNamespace(which: Runtime, mode: string): Promise<Record<string, unknown>> {
  // The namespace vanishes with the child, and whatever it held: nothing to clean up here.
  const key = 0x5280_0001;
  let command = scriptCommand(which, "segment/id_zero.ts", [mode, String(key)]);
  // Deno lets a script read /proc/sysvipc only with every permission.
  if (which === "deno") {
    command = command.filter((arg) => !arg.startsWith("--allow-"));
    command.splice(2, 0, "--allow-all");
  }
  const r = await start(["unshare", "--ipc", ...command]).done;
  const line = r.stdout.split("\n").find((l) => l.startsWith("result "));
  if (r.code !== 0 || line === undefined) {
    throw new Error(`${which} child exited with ${r.code ?? r.signal}:\n${r.stderr}`);
  }
  const result = JSON.parse(line.slice("result ".length));
  assertEquals(result.before, [], "segments in the fresh namespace before the child made one");
  assertEquals(result.id, 0, "the id of the namespace's first segment");
  return result;
}

for (const which of runtimes) {
  childrenTestUnless(
    noIpcNamespace,
    [which],
    `a ${which} child: a System V segment of id 0 (the first of a fresh IPC namespace) is created, opened again, closed and removed through SharedMemory`,
    async () => {
      const result = await inFreshNamespace(which, "api");
      assertEquals(result.seen, [1, 2, 3], "what the second handle read of the first's writes");
      assertEquals(result.lengths, [0, 0], "byte lengths after close");
      assertEquals(result.handles, 0, "open handles after both closed");
      assertEquals(result.after, [], "segments left after the unlink");
    },
  );
  childrenTestUnless(
    noIpcNamespace,
    [which],
    `a ${which} child: a System V segment of id 0 is created, attached again and detached through the seed's createSharedBuffer and detachSharedBuffer`,
    async () => {
      const result = await inFreshNamespace(which, "seed");
      assertEquals(result.seen, [1, 2, 3], "what the second attach read of the first's writes");
      assertEquals(result.lengths, [0, 0], "byte lengths after detachSharedBuffer");
      assertEquals(result.handles, 0, "open handles after both detached");
      assertEquals(result.after, [], "segments left after the unlink");
    },
  );
}
