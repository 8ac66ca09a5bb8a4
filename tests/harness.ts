/**
 * The tiny adapter that lets one test suite run under `deno test`, `bun test` and `node --test`:
 * the library for this runtime, `test`, unique segment ids, GC, and child processes of any of the
 * three runtimes.
 *
 * Node.js runs the JavaScript that `make` builds from these files into `dist/tests/` (with the
 * library in `dist/`); Deno and Bun run the TypeScript. Children run the same way: a Node child
 * runs `dist/tests/children/<script>.js`, a Deno or Bun child `tests/children/<script>.ts`.
 *
 * @module
 */

import { spawn as spawnProcess, spawnSync } from "node:child_process";
import { existsSync, readFileSync, readlinkSync } from "node:fs";
import process from "node:process";
import { fileURLToPath } from "node:url";
import { CTL_BYTES, CTL_READY } from "./children/channel/messages.ts";

/** The three runtimes. */
export const runtimes = ["deno", "bun", "node"] as const;

/** One of the three runtimes. */
export type Runtime = (typeof runtimes)[number];

/** The runtime running this file. */
export const runtime: Runtime = "Bun" in globalThis
  ? "bun"
  : "Deno" in globalThis
  ? "deno"
  : "node";

/** Whether this file runs as the JavaScript built into `dist/tests/` (always so in Node). */
const built = import.meta.url.endsWith(".js");
/** `tests/` (the TypeScript) and `dist/tests/` (the built JavaScript), as file URLs. */
const sourceTests = new URL(built ? "../../tests/" : "./", import.meta.url);
const builtTests = new URL(built ? "./" : "../dist/tests/", import.meta.url);
/** The repository's folder, with a trailing `/`. */
export const repoRoot: string = decodeURIComponent(new URL("../", sourceTests).pathname);

const entry = { bun: "../bun.ts", deno: "../mod.ts", node: "../node.ts" }[runtime];
/** The library as this runtime's users import it. */
export const lib: typeof import("../mod.ts") = await import(entry);
// Loaded once for the whole suite, so that Deno's resource sanitizer does not count it as a leak
// of whichever test happens to load it first.
lib.loadLibrary();

type Body = () => void | Promise<void>;

/** Options of {@linkcode test}. */
export interface TestOptions {
  /**
   * Why Deno's op and resource sanitizers are off for this test (they are on by default): for
   * example a child process or a pending native wait that deliberately outlives the test.
   */
  unsanitized?: string;
  /**
   * Bun's limit for the test, in ms, where `bun test` is run without `--timeout` (its default is
   * 5 s); `make test` gives every test 60 s.
   */
  bunTimeoutMs?: number;
}

/**
 * Why a test cannot run on this machine. A skip whose `ciMayLack` is false fails the run when
 * the environment variable `CI` is `true`: CI is expected to have everything else.
 */
export interface Missing {
  /** What is missing. */
  readonly reason: string;
  /** True for a capability CI machines may lack ({@linkcode lacking}). */
  readonly ciMayLack: boolean;
}

/**
 * A capability that CI machines may legitimately lack, so that its absence skips a test even
 * in CI: root (hosted CI runners are not root), or a platform feature (Linux-only interfaces on
 * macOS). Anything else a test needs (a tool such as `nm`, `cc`, `setpriv` or `unshare` where
 * root is available) must be there in CI.
 */
export function lacking(reason: string): Missing {
  return { reason, ciMayLack: true };
}

/** Skips a test that reads Linux-only interfaces (`/proc`, `/dev/shm`) elsewhere. */
export const onlyLinux: Missing | false =
  (globalThis as unknown as { process: { platform: string } }).process.platform === "linux"
    ? false
    : lacking("reads /proc or /dev/shm, which only Linux has");

/** Whether this process runs as root. */
export const isRoot: boolean =
  (globalThis as unknown as { process: { getuid?: () => number } }).process.getuid?.() === 0;

/** The command prefix that runs a child in a new pid namespace (`unshare`; root only). */
export const UNSHARE_PID = ["unshare", "--pid", "--fork", "--"];

/** Why a child cannot be put in a new pid namespace here, or false when it can. */
export const noPidNamespace: Missing | string | false = (() => {
  if (process.platform !== "linux") return lacking("pid namespaces are Linux's");
  if (!isRoot) return lacking("needs root to make a pid namespace");
  const probe = spawnSync(UNSHARE_PID[0], [...UNSHARE_PID.slice(1), "true"], { encoding: "utf8" });
  if (probe.error) return `unshare is not available (${probe.error.message})`;
  if (probe.status !== 0) return `unshare --pid fails here: ${probe.stderr.trim()}`;
  return false;
})();

const env = (globalThis as unknown as { process: { env: Record<string, string | undefined> } })
  .process.env;
/** True under CI (`CI=true`), where skipping a test CI can run is a failure. */
export const inCI: boolean = env.CI === "true";

type Register = (name: string, fn: Body, timeoutMs?: number) => void;
const bunTest = "bun:test";
/** Bun's runner (`bun:test`), in Bun. */
const bun: { test: Register & { skip: Register } } | undefined = runtime === "bun"
  ? await import(bunTest)
  : undefined;
const nodeTest = "node:test";
/** Node's runner (`node:test`), in Node.js. */
const node: { test: Register & { skip: Register } } | undefined = runtime === "node"
  ? await import(nodeTest)
  : undefined;

/** Registers a test with the runtime's test runner. */
export function test(name: string, fn: Body, options: TestOptions = {}): void {
  const full = `[${runtime}] ${name}`;
  if (bun) return bun.test(full, fn, options.bunTimeoutMs);
  if (node) return node.test(full, fn);
  const sanitize = options.unsanitized === undefined;
  Deno.test({ name: full, fn, sanitizeOps: sanitize, sanitizeResources: sanitize });
}

/**
 * The one runner that runs a test whose shared-memory work is all done by child processes of
 * the runtimes `children` (this process only creates the segment, starts the children and checks
 * what they report): the Node runners when one child is Node, so that the machine's Node and the
 * newest Node each meet Deno and Bun; otherwise the runner of the first child's runtime. Such a
 * test would do the same work in every runner, whatever runs the parent.
 */
export function runnerFor(children: readonly Runtime[]): Runtime {
  if (children.length === 0) throw new Error("a test of children needs at least one child");
  return children.includes("node") ? "node" : children[0];
}

/**
 * With `SB_ALL_COMBINATIONS=1` every runner runs every {@linkcode childrenTest}, as when one
 * runner is run alone to check a change.
 */
const allCombinations: boolean = env.SB_ALL_COMBINATIONS === "1";

/**
 * Whether `runner` registers a {@linkcode childrenTest} of `children`: the one runner
 * {@linkcode runnerFor} names, or every runner when `all` (`SB_ALL_COMBINATIONS=1`).
 */
export function runsIn(
  children: readonly Runtime[],
  runner: Runtime,
  all: boolean = allCombinations,
): boolean {
  return all || runnerFor(children) === runner;
}

/**
 * Registers a test of child processes only (see {@linkcode runnerFor}): in the runner that
 * `runnerFor(children)` names, not in the others, unless `SB_ALL_COMBINATIONS=1`. A test in which
 * this process sends, receives, waits, locks or reads takes part itself and is registered with
 * {@linkcode test} in every runner.
 */
export function childrenTest(
  children: readonly Runtime[],
  name: string,
  fn: Body,
  options: TestOptions = {},
): void {
  childrenTestUnless(false, children, name, fn, options);
}

/** {@linkcode childrenTest}, skipped as {@linkcode testUnless} says when `missing` is not false. */
export function childrenTestUnless(
  missing: string | Missing | false,
  children: readonly Runtime[],
  name: string,
  fn: Body,
  options: TestOptions = {},
): void {
  if (runsIn(children, runtime)) testUnless(missing, name, fn, options);
}

/**
 * Registers a test that the runner skips (reported as skipped, never as passed) when `missing`
 * says why it cannot run here. Under CI a skip for any reason but a {@linkcode lacking}
 * capability registers a failing test instead.
 */
export function testUnless(
  missing: string | Missing | false,
  name: string,
  fn: Body,
  options: TestOptions = {},
): void {
  if (missing === false) return test(name, fn, options);
  const why = typeof missing === "string" ? { reason: missing, ciMayLack: false } : missing;
  if (inCI && !why.ciMayLack) {
    return test(name, () => {
      throw new Error(`skipped in CI, which should be able to run it: ${why.reason}`);
    });
  }
  const full = `[${runtime}] ${name} (skipped: ${why.reason})`;
  if (bun) return bun.test.skip(full, fn);
  if (node) return node.test.skip(full, fn);
  Deno.test({ name: full, fn, ignore: true });
}

/** This process's id. */
export const pid: number = process.pid;

let counter = 0;

/** A segment name no other test or run uses. */
export function uniqueName(tag: string): string {
  return `/sbtest-${tag}-${runtime}-${pid}-${++counter}-${Math.random().toString(36).slice(2, 8)}`;
}

/**
 * The id of the thread this module runs on. Deno runs the test files of one `--parallel` run as
 * workers of one process, each with a module instance (and a key count) of its own, and Bun
 * evaluates this module again for each file a process runs: the pid tells none of them apart.
 * Live threads and processes never share an id.
 */
const thread = Number(readlinkSync("/proc/thread-self").split("/")[2]);

/**
 * A System V key no other test of this run uses: the id of this module's thread (22 bits at
 * most, Linux's pid limit), then a count of this module's keys that goes round 511 keys, skipping
 * any key in use (one this module drew before and still holds, one a module evaluated earlier on
 * this thread left, or one of an ended thread whose id came back). So no two of 511 keys drawn in
 * a row here meet, whether or not they were used yet, and none meets a key another live thread
 * draws. Random keys met each other about once in a few thousand pairs, which a full run draws;
 * the pid's low bits and a count met across Deno's parallel test files.
 */
export function uniqueKey(): number {
  const inUse = keysInUse();
  for (let tries = 0; tries < 511; tries++) {
    keyCounter = keyCounter % 511 + 1;
    const key = thread * 512 + keyCounter;
    if (!inUse.has(key)) return key;
  }
  throw new Error(`uniqueKey: the 511 keys of thread ${thread} are all in use`);
}
let keyCounter = 0;

/** The keys of the System V segments that exist now. */
function keysInUse(): Set<number> {
  const lines = readFileSync("/proc/sysvipc/shm", "utf8").trim().split("\n").slice(1);
  return new Set(lines.map((line) => Number(line.trim().split(/\s+/)[0]) >>> 0));
}

/**
 * Lines of /proc/self/maps that map the segments of `keys` and `names` (a keyed one shows as
 * `/SYSV` and its key in eight hex digits).
 */
export function segmentMappings(keys: readonly number[], names: readonly string[]): number {
  const paths = new Set([
    ...keys.map((key) => `/SYSV${(key >>> 0).toString(16).padStart(8, "0")}`),
    ...names.map((name) => `/dev/shm${name}`),
  ]);
  return readFileSync("/proc/self/maps", "utf8").split("\n")
    .filter((line) => paths.has(/ (\/\S+)(?: \(deleted\))?$/.exec(line)?.[1] ?? "")).length;
}

/**
 * Whether a buffer is detached. Node 20 has no `ArrayBuffer.prototype.detached`; there a detached
 * buffer has length 0 (the library never hands out an empty buffer over a segment).
 */
export function detached(buffer: ArrayBuffer): boolean {
  return buffer.detached ?? buffer.byteLength === 0;
}

/** Removes a segment if it still exists. */
export function cleanup(id: { key: number } | { name: string }): void {
  try {
    lib.SharedMemory.unlink(id);
  } catch (err) {
    if (!(err instanceof lib.SharedMemoryError && err.code === "ENOENT")) throw err;
  }
}

/** Runs the garbage collector several times and lets finalizers run. */
export async function collectGarbage(rounds = 10): Promise<void> {
  for (let i = 0; i < rounds; i++) {
    if (runtime === "bun") {
      (globalThis as unknown as { Bun: { gc(force: boolean): void } }).Bun.gc(true);
    } else {
      const gc = (globalThis as { gc?: () => void }).gc;
      if (!gc) {
        throw new Error("run deno test with --v8-flags=--expose-gc, node with --expose-gc");
      }
      gc();
    }
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/**
 * The path of a runtime's executable: DENO_BIN / BUN_BIN / NODE_BIN, else the PATH (for Node,
 * this process's own executable when it is Node).
 */
export function runtimeBin(which: Runtime): string {
  const env = process.env;
  if (which === "node") return env.NODE_BIN ?? (runtime === "node" ? process.execPath : "node");
  return (which === "deno" ? env.DENO_BIN : env.BUN_BIN) ?? which;
}

/**
 * The command line that runs `script` (a `.ts` name under tests/children) in `which`, with the
 * engine's `gc` exposed (`collect` in `children/lib.ts`).
 */
export function scriptCommand(which: Runtime, script: string, args: string[]): string[] {
  if (which === "node") {
    const path = fileURLToPath(new URL(`./children/${script.replace(/\.ts$/, ".js")}`, builtTests));
    return [runtimeBin("node"), "--expose-gc", path, ...args];
  }
  const path = fileURLToPath(new URL(`./children/${script}`, sourceTests));
  return which === "deno"
    ? [
      runtimeBin("deno"),
      "run",
      "--allow-ffi",
      "--allow-read",
      "--allow-env",
      "--v8-flags=--expose-gc",
      path,
      ...args,
    ]
    : [runtimeBin("bun"), path, ...args];
}

/**
 * The seed package's folder (`SEED_PACKAGE`, set by `make`), or undefined when it is not built
 * for this Node.
 */
export const seedPackage: string | undefined = process.env.SEED_PACKAGE &&
    existsSync(`${process.env.SEED_PACKAGE}/build/Release/shared-buffer.node`)
  ? process.env.SEED_PACKAGE
  : undefined;

/**
 * The command line that runs the seed addon (`children/seed/addon.ts`) in the Node.js it was
 * built for (`SEED_NODE`, else `node` from the PATH).
 */
export function seedCommand(args: string[]): string[] {
  const path = fileURLToPath(new URL("./children/seed/addon.js", builtTests));
  return [process.env.SEED_NODE ?? "node", path, ...args];
}

/** A running child process. */
export interface Child {
  /** Resolves when the process exits. */
  readonly done: Promise<
    { code: number | null; signal: string | null; stdout: string; stderr: string }
  >;
  /** Sends a signal. */
  kill(signal: "SIGKILL" | "SIGTERM"): void;
  /** Resolves with the first stdout line that starts with `prefix`. */
  line(prefix: string): Promise<string>;
}

/** Starts a command with its stdout and stderr captured. */
export function start(command: string[], env: Record<string, string> = {}): Child {
  const proc = spawnProcess(command[0], command.slice(1), {
    env: { ...process.env, ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let stdout = "";
  let stderr = "";
  const waiting: { prefix: string; resolve: (line: string) => void }[] = [];
  proc.stdout!.setEncoding("utf8");
  proc.stderr!.setEncoding("utf8");
  proc.stdout!.on("data", (chunk: string) => {
    stdout += chunk;
    for (const w of [...waiting]) {
      const line = stdout.split("\n").find((l) => l.startsWith(w.prefix));
      if (line !== undefined) {
        waiting.splice(waiting.indexOf(w), 1);
        w.resolve(line);
      }
    }
  });
  proc.stderr!.on("data", (chunk: string) => (stderr += chunk));
  const done = new Promise<
    { code: number | null; signal: string | null; stdout: string; stderr: string }
  >(
    (resolve, reject) => {
      proc.on("error", reject);
      proc.on("close", (code, signal) => resolve({ code, signal, stdout, stderr }));
    },
  );
  return {
    done,
    kill: (signal) => proc.kill(signal),
    line: (prefix) =>
      new Promise((resolve, reject) => {
        const line = stdout.split("\n").find((l) => l.startsWith(prefix));
        if (line !== undefined) return resolve(line);
        waiting.push({ prefix, resolve });
        done.then((r) =>
          reject(
            new Error(
              `child exited (${r.code ?? r.signal}) before printing ${prefix}:\n${r.stderr}`,
            ),
          )
        );
      }),
  };
}

/** Runs a child script to completion and returns its result; throws if it failed. */
export async function runScript(
  which: Runtime,
  script: string,
  args: string[],
): Promise<string> {
  const result = await start(scriptCommand(which, script, args)).done;
  if (result.code !== 0) {
    throw new Error(
      `${which} ${script} ${args.join(" ")} exited with ${
        result.code ?? result.signal
      }:\n${result.stderr}`,
    );
  }
  return result.stdout;
}

/** How a child ended, with its output. */
export type Done = Awaited<Child["done"]>;

/**
 * The runtime after `which` in a cycle (Deno, Bun, Node.js, Deno): tests that pair a runtime with
 * "the other" thus cover Deno-Bun, Bun-Node and Node-Deno, each runtime on both sides.
 */
export const other = (which: Runtime): Runtime =>
  runtimes[(runtimes.indexOf(which) + 1) % runtimes.length];

/** A list of runtimes as a test name says it: `["deno", "bun", "deno"]` is "2 deno + 1 bun". */
export function mix(kinds: readonly Runtime[]): string {
  return runtimes
    .map((which) => [which, kinds.filter((k) => k === which).length] as const)
    .filter(([, n]) => n > 0)
    .map(([which, n]) => `${n} ${which}`)
    .join(" + ");
}

/**
 * `promise`, or a rejection naming `what` once `ms` have passed: a guard against hangs (use
 * {@linkcode HANG_MS}), never a measure of speed.
 */
export async function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: nothing after ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * Resolves once `condition()` returns true, checking it again every few milliseconds. Tests wait
 * for conditions this way, never for an amount of time. The only limit is a hang guard
 * (`HANG_MS`, far beyond any healthy run), which fails with `what` in the message.
 */
export async function until(condition: () => boolean, what: string): Promise<void> {
  const give = Date.now() + HANG_MS;
  while (!condition()) {
    if (Date.now() > give) throw new Error(`still waiting for ${what} after ${HANG_MS} ms`);
    await sleep(2);
  }
}

/**
 * The CPU time the calling thread has used, in milliseconds: on Linux this thread's own (from
 * `/proc/thread-self/schedstat`), elsewhere the process's. `deno test --parallel` runs its files
 * as threads of one process, whose CPU time counts what the other files do meanwhile.
 */
export function threadCpuMs(): number {
  if (process.platform !== "linux") {
    const used = process.cpuUsage();
    return (used.user + used.system) / 1000;
  }
  const ns = Number(readFileSync("/proc/thread-self/schedstat", "utf8").split(" ")[0]);
  // A kernel that keeps no such statistics prints zeros: a bound on them would hold for anything.
  if (!(ns > 0)) throw new Error("threadCpuMs: /proc/thread-self/schedstat counts no CPU time");
  return ns / 1e6;
}

/** How long a test may wait for a condition before it is declared hung. */
export const HANG_MS = 60_000;

/** Resolves after `ms` milliseconds. */
export const sleep = (ms: number): Promise<unknown> =>
  new Promise((resolve) => setTimeout(resolve, ms));

/** Starts `script` in `which`, remembering the child in `children` for the `finally`. */
export function spawn(children: Child[], which: Runtime, script: string, args: string[]): Child {
  const child = start(scriptCommand(which, script, args));
  children.push(child);
  return child;
}

/**
 * SIGKILLs every child (harmless for those that already exited) and waits until each has exited,
 * so that no process outlives the test that started it.
 */
export async function killAll(children: Child[]): Promise<void> {
  for (const child of children) child.kill("SIGKILL");
  await Promise.allSettled(children.map((child) => child.done));
}

/** Waits for a child to exit 0 and returns its output; throws with its stderr otherwise. */
export async function finished(child: Child, what: string, ms = HANG_MS): Promise<Done> {
  const r = await within(child.done, ms, `${what} to exit`);
  if (r.code !== 0) {
    throw new Error(`${what} exited with ${r.code ?? r.signal}:\n${r.stderr}\n${r.stdout}`);
  }
  return r;
}

/**
 * For `lock/take_lock.ts <name> <offset> open unlock` waiters that have all exited: how many of them
 * were told `ownerDied`. Throws if a waiter's output is not "locked ownerDied=..., unlocked".
 */
export function ownerDiedCount(results: Done[]): number {
  return results.filter((r) => {
    const m = /^locked ownerDied=(true|false)\nunlocked$/m.exec(r.stdout);
    if (m === null) throw new Error(`a waiter's output:\n${r.stdout}\n${r.stderr}`);
    return m[1] === "true";
  }).length;
}

/** The JSON of a child's `result ` line. */
export function resultOf<T = Record<string, unknown>>(r: Done, what: string): T {
  const line = r.stdout.split("\n").find((l) => l.startsWith("result "));
  if (line === undefined) throw new Error(`${what} printed no result:\n${r.stdout}\n${r.stderr}`);
  return JSON.parse(line.slice("result ".length)) as T;
}

/**
 * A receiver of `which` on the many-sender channel `name` killed with SIGKILL after it found a
 * sender dead with none of that sender's records ahead (so no orphan entry holds the death): a
 * sender of another runtime attaches and is killed, then the receiver (`channel/attach_and_hold.ts`,
 * `check-hold`) finds it dead, times out (the caller keeps a sender of its own attached
 * throughout), and is killed. Only the header's `bereaved` then says that a sender died.
 */
export async function killAfterADeath(
  children: Child[],
  which: Runtime,
  name: string,
): Promise<void> {
  const hold = async (who: Runtime, role: string, then: string) => {
    const child = spawn(children, who, "channel/attach_and_hold.ts", [name, role, "0", then]);
    await within(child.line("ready"), HANG_MS, `the ${who} ${role} ready`);
    child.kill("SIGKILL");
    const dead = await within(child.done, HANG_MS, `the killed ${who} ${role}'s exit`);
    if (dead.signal !== "SIGKILL") throw new Error(`the ${who} ${role} ended otherwise`);
  };
  await hold(other(which), "sender", "hold");
  await hold(which, "receiver", "check-hold");
}

/**
 * A receiver of `which` on the channel `name` killed with SIGKILL inside a `recvMany` callback
 * (`channel/attach_and_hold.ts`, `recvmany-hold`): it takes `taken` messages with one call and is
 * killed in the callback of the last, so the room of that batch was never handed back.
 */
export async function killInsideRecvMany(
  children: Child[],
  which: Runtime,
  name: string,
  taken: number,
): Promise<void> {
  const ctl = uniqueName("ctl");
  try {
    using shm = lib.SharedMemory.create({ name: ctl }, CTL_BYTES);
    const ready = new Int32Array(shm.buffer, 0, 2);
    const receiver = spawn(children, which, "channel/attach_and_hold.ts", [
      name,
      "receiver",
      String(taken),
      "recvmany-hold",
      ctl,
    ]);
    let exited = false;
    receiver.done.then(() => (exited = true));
    await until(
      () => exited || Atomics.load(ready, CTL_READY) === taken,
      `the ${which} receiver inside the callback of message ${taken}`,
    );
    if (exited) throw new Error(`the ${which} receiver exited: ${(await receiver.done).stderr}`);
    receiver.kill("SIGKILL");
    const dead = await within(receiver.done, HANG_MS, `the killed ${which} receiver's exit`);
    if (dead.signal !== "SIGKILL") throw new Error(`the ${which} receiver ended otherwise`);
  } finally {
    cleanup({ name: ctl });
  }
}
