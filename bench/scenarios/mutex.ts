/**
 * Costs on one thread (`taskset -c 0`): an uncontended `Mutex` lock+unlock, lock alone and unlock
 * alone, a `notify` nobody waits for, a `wait` whose value already changed; against the Rust
 * `Mutex` and `notify` (`native_wait`); and the CPU an idle `waitAsync` uses.
 *
 * @module
 */

import { existsSync, readFileSync, rmSync } from "node:fs";
import {
  childCommand,
  cpuNs,
  each,
  lib,
  median,
  nativeBinary,
  perCall,
  pinned,
  ratios,
  round,
  type Row,
  rows,
  runJson,
  type Runtime,
  type Scenario,
  start,
  uniqueName,
  whats,
  wheres,
} from "../harness.ts";

/** Mutexes held at once in lock_alone: a thread may hold 64 at most (ENOLCK beyond). */
const MANY = 60;
const OFFSET = 64 * 1024;

/** A segment only this process knows: created, then unlinked at once. */
function privateSegment(size: number) {
  const name = `/${uniqueName("mutex")}`;
  const shm = lib.SharedMemory.create({ name }, size);
  lib.SharedMemory.unlink({ name });
  return shm;
}

function costsChild(): Record<string, number> {
  const { Mutex, notify, wait } = lib;
  using shm = privateSegment(OFFSET + MANY * Mutex.BYTE_LENGTH);
  const mutex = Mutex.init(shm.buffer, 0);
  const words = new Int32Array(shm.buffer, 1024, 16);
  const sab = new Int32Array(new SharedArrayBuffer(64));
  // Lock alone and unlock alone: MANY distinct mutexes locked in one timed stretch, then unlocked
  // in another; medians over blocks of 50 such rounds.
  const mutexes = Array.from(
    { length: MANY },
    (_, i) => Mutex.init(shm.buffer, OFFSET + i * Mutex.BYTE_LENGTH),
  );
  const guards: ReturnType<typeof mutex.lock>[] = new Array(MANY);
  const lockNs: number[] = [];
  const unlockNs: number[] = [];
  for (let b = 0; b < 21; b++) {
    let [locking, unlocking] = [0, 0];
    for (let r = 0; r < 50; r++) {
      const t0 = performance.now();
      for (let i = 0; i < MANY; i++) guards[i] = mutexes[i].lock();
      const t1 = performance.now();
      for (let i = 0; i < MANY; i++) guards[i].unlock();
      (locking += t1 - t0), (unlocking += performance.now() - t1);
    }
    if (b > 0) {
      lockNs.push((locking * 1e6) / 50 / MANY), unlockNs.push((unlocking * 1e6) / 50 / MANY);
    }
  }
  return {
    ...perCall({
      lock_unlock: () => mutex.lock().unlock(),
      trylock_unlock: () => mutex.tryLock()!.unlock(),
      notify_no_waiter: () => notify(words, 0),
      // words[0] is 0: the kernel answers "not equal" at once (one system call, no sleep).
      wait_not_equal: () => wait(words, 0, 1),
      atomics_notify_sab: () => Atomics.notify(sab, 0, 1),
      performance_now: () => performance.now(),
    }),
    lock_alone: round(median(lockNs), 1),
    unlock_alone: round(median(unlockNs), 1),
  };
}

/** CPU per second of a fresh process: idle, then in one waitAsync nobody notifies. */
async function idleChild(): Promise<Record<string, number>> {
  using shm = privateSegment(4096);
  const words = new Int32Array(shm.buffer, 0, 16);
  const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
  const cpuPerS = async (what: () => Promise<unknown>) => {
    const [c0, t0] = [cpuNs(), performance.now()];
    await what();
    return (cpuNs() - c0) / 1e6 / ((performance.now() - t0) / 1e3);
  };
  await lib.waitAsync(words, 0, 0, 20); // starts the runtime's wait thread
  await sleep(300); // startup work (JIT, GC threads) settles
  const waiting = await cpuPerS(() => lib.waitAsync(words, 0, 0, 1000));
  const idle = await cpuPerS(() => sleep(1000));
  return { wait_async_cpu_ms_per_s: round(waiting, 3), idle_cpu_ms_per_s: round(idle, 3) };
}

const MARKER = "/nonexistent-sb-bench-marker";
const LOOPS = { lock_unlock: 1_000_000, notify_no_waiter: 10_000 };

/** Loops between marker calls (a `stat` of a path that cannot exist) that strace shows. */
function syscallsChild(): void {
  const { Mutex, notify } = lib;
  using shm = privateSegment(4096);
  const mutex = Mutex.init(shm.buffer, 0);
  const words = new Int32Array(shm.buffer, 1024, 16);
  const loops: Record<keyof typeof LOOPS, () => void> = {
    lock_unlock: () => mutex.lock().unlock(),
    notify_no_waiter: () => notify(words, 0),
  };
  // Compiled first: a tenth of each loop, outside the markers.
  for (const [name, op] of Object.entries(loops)) {
    for (let i = LOOPS[name as keyof typeof LOOPS] / 10; i > 0; i--) op();
  }
  for (const [name, op] of Object.entries(loops)) {
    existsSync(`${MARKER}/${name}-begin`);
    for (let i = LOOPS[name as keyof typeof LOOPS]; i > 0; i--) op();
    existsSync(`${MARKER}/${name}-end`);
  }
}

/** System calls per call of the loop thread between each pair of markers, under strace -f. */
async function syscalls(rt: Runtime): Promise<Row[]> {
  const log = `/tmp/${uniqueName("strace")}.txt`;
  try {
    await start(
      pinned("0", ["strace", "-f", "-qq", "-o", log, ...childCommand(rt, "mutex", "syscalls")]),
    ).done;
    const lines = readFileSync(log, "utf8").split("\n");
    return Object.entries(LOOPS).map(([what, n]) => {
      const begin = lines.findIndex((l) => l.includes(`${MARKER}/${what}-begin`));
      const end = lines.findIndex((l) => l.includes(`${MARKER}/${what}-end`));
      if (begin < 0 || end < begin) throw new Error("no markers in the strace output");
      const tid = lines[begin].split(/\s+/)[0];
      const calls = lines.slice(begin + 1, end).filter((l) => l.startsWith(`${tid} `)).length;
      return { runtime: rt, what, metric: "syscalls per call", value: calls / n };
    });
  } finally {
    rmSync(log, { force: true });
  }
}

/** The scenario. */
export const mutex: Scenario = {
  name: "mutex",
  method: "One thread on CPU 0. lock_unlock: mutex.lock().unlock() on one uncontended Mutex; " +
    "lock_alone / unlock_alone: 60 distinct mutexes locked in one timed stretch, then unlocked " +
    "in another (medians over blocks of 50 rounds); notify_no_waiter: notify() on a word nobody waits on; wait_not_equal: wait() " +
    "on a word that already changed (one system call); atomics_notify_sab: Atomics.notify on a " +
    "SharedArrayBuffer (in-process reference). Medians over 10 blocks of about 10 ms, ns per " +
    "call. native: the Rust Mutex and notify (native_wait). idle: CPU per second of a fresh " +
    "process during one 1 s waitAsync nobody notifies, against 1 s of nothing. syscalls per " +
    `call: the loop thread's system calls under strace -f over ${LOOPS.lock_unlock} lock+unlock ` +
    `and ${LOOPS.notify_no_waiter} notify calls, between marker calls.`,
  async run(ctx, skipped) {
    const out: Row[] = [];
    try {
      const bin = await nativeBinary("native_wait");
      const got = await runJson<Record<string, number>>(
        pinned("0", [bin, "--pin", "same", "--n", "500"]),
      );
      const { mutex_uncontended_ns: lock_unlock, notify_no_waiter_ns: notify_no_waiter } = got;
      out.push(...whats({ runtime: "native" }, "ns", { lock_unlock, notify_no_waiter }));
    } catch (err) {
      skipped("native", err);
    }
    out.push(
      ...await each(ctx, skipped, ctx.runtimes, async (rt) => {
        const got = await runJson<object>(pinned("0", childCommand(rt, "mutex", "costs")));
        return whats({ runtime: rt }, "ns", got);
      }),
    );
    for (const rt of ctx.runtimes) {
      try {
        out.push(...await syscalls(rt));
      } catch (err) {
        skipped(`${rt} system calls (strace)`, err);
      }
    }
    // Every runtime idles at once, each in a fresh process.
    await Promise.all(ctx.runtimes.map(async (rt) => {
      try {
        out.push(
          ...rows({ runtime: rt, what: "idle" }, await runJson(childCommand(rt, "mutex", "idle"))),
        );
      } catch (err) {
        skipped(`${rt} idle`, err);
      }
    }));
    return out;
  },
  compare: (ctx) =>
    ratios([
      "ns lock_unlock / native.lock_unlock = lock_unlock: ns / the Rust one's",
      "ns notify_no_waiter / native.notify_no_waiter = notify_no_waiter: ns / the Rust one's",
    ], wheres(ctx.runtimes)),
  children: { costs: costsChild, idle: idleChild, syscalls: syscallsChild },
};
