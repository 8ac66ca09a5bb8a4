/**
 * `wait` / `waitAsync` / `notify` and `Mutex` across real processes of all three runtimes: Deno-Bun
 * ping-pong without a lost wake-up (children only, and this process as one side), `waitAsync`
 * keeping the event loop running, notify counts with waiters in four processes, a lock holder
 * killed with SIGKILL, four processes counting under the lock, and timeouts in children.
 *
 * Each test owns a named segment and removes it in `finally`, kills its children in `finally`,
 * and bounds every wait, so a bug fails the test instead of hanging it. Times are only checked
 * from below.
 *
 * @module
 */

import assert from "node:assert/strict";
import { readdirSync, readFileSync } from "node:fs";
import { arch } from "node:os";
import type { SharedMemory as Segment } from "../mod.ts";
import {
  type Child,
  childrenTest,
  cleanup,
  finished,
  HANG_MS,
  killAll,
  lacking,
  lib,
  mix,
  other,
  ownerDiedCount,
  resultOf,
  type Runtime,
  runtimes,
  sleep,
  spawn,
  test,
  testUnless,
  uniqueName,
  within,
} from "./harness.ts";
import { COUNTER_BYTE, GO, INSIDE, OVERLAPS, READY } from "./children/lock/counter_layout.ts";

const { Mutex, notify, SharedMemory, SharedMemoryError, wait, waitAsync } = lib;

/** A fresh named segment of 4 KiB for `body` (its name and this process's mapping), removed after. */
async function withSegment(
  tag: string,
  body: (name: string, shm: Segment) => Promise<void>,
): Promise<void> {
  const name = uniqueName(tag);
  try {
    using shm = SharedMemory.create({ name }, 4096);
    await body(name, shm);
  } finally {
    cleanup({ name });
  }
}

// ---- 1. Ping-pong between a Deno and a Bun process -----------------------------------------------

const ROUNDS = 10_000;

interface PingPong {
  role: number;
  mode: string;
  turns: number;
  final: number;
  paused: number;
  ticks: number;
  ticksWhileWaiting: number;
  elapsedMs: number;
}

function assertSide(r: PingPong, role: number, what: string): void {
  assert.equal(r.role, role, `${what}: role`);
  assert.equal(r.turns, ROUNDS, `${what}: turns taken`);
  assert.equal(r.final, 2 * ROUNDS, `${what}: counter at the end`);
}

for (const [first, mode] of runtimes.flatMap((r) => [[r, "sync"], [r, "adaptive"]] as const)) {
  childrenTest(
    [first, other(first)],
    `${first} (first to move) and ${other(first)} children ping-pong ${ROUNDS} times with ${
      mode === "sync" ? "wait/notify" : "wait (adaptive spin)/notify"
    }`,
    async () => {
      await withSegment("sx-pp", async (name, shm) => {
        const turn = new Int32Array(shm.buffer, 0, 1);
        const children: Child[] = [];
        try {
          const sides = [first, other(first)].map((which, role) =>
            spawn(children, which, "wait/ping_pong.ts", [
              name,
              String(role),
              String(ROUNDS),
              mode,
            ])
          );
          const results = await Promise.all(
            sides.map((c, role) => finished(c, `side ${role}`, HANG_MS)),
          );
          results.forEach((r, role) => {
            const side = resultOf(r, `side ${role}`) as unknown as PingPong;
            assertSide(side, role, `${[first, other(first)][role]} side ${role}`);
            // A blocking wait never lets the side's event loop run: its timer cannot tick. (This
            // is what makes the waitAsync tick counts below mean something.)
            assert.equal(side.ticks, 0, `side ${role}: ticks of a process blocked in wait`);
          });
          assert.equal(Atomics.load(turn, 0), 2 * ROUNDS, "the counter in this process");
        } finally {
          await killAll(children);
        }
      });
    },
  );
}

/**
 * This process as side 0 of the ping-pong: the same loop as `wait/ping_pong.ts`, with `wait` or
 * `waitAsync`; `waiting` says when a `waitAsync` is pending. Returns the turns taken.
 */
async function playSide0(
  turn: Int32Array,
  useAsync: boolean,
  waiting: { now: boolean } = { now: false },
): Promise<number> {
  const total = 2 * ROUNDS;
  let turns = 0;
  for (;;) {
    let v = Atomics.load(turn, 0);
    while (v < total && (v & 1) !== 0) {
      waiting.now = useAsync;
      const r = useAsync ? await waitAsync(turn, 0, v, 10_000) : wait(turn, 0, v, 10_000);
      waiting.now = false;
      assert.notEqual(r, "timed-out", `this process: no wake-up for 10 s at counter ${v}`);
      v = Atomics.load(turn, 0);
    }
    if (v >= total) return turns;
    assert.equal(Atomics.compareExchange(turn, 0, v, v + 1), v, "the child moved out of turn");
    notify(turn, 0);
    turns++;
  }
}

for (const child of runtimes) {
  test(`this process (wait) ping-pongs ${ROUNDS} times with a ${child} child (wait)`, async () => {
    await withSegment("sx-pp-self", async (name, shm) => {
      const turn = new Int32Array(shm.buffer, 0, 1);
      const children: Child[] = [];
      try {
        const c = spawn(children, child, "wait/ping_pong.ts", [name, "1", String(ROUNDS), "sync"]);
        // Its start-up first (seconds on a loaded machine), which no wait below covers.
        await within(c.line("ready"), HANG_MS, "the child's start");
        // Blocks this process until the child has played; each wait is bounded by 10 s.
        assert.equal(await playSide0(turn, false), ROUNDS, "this process's turns");
        assertSide(resultOf(await finished(c, "child"), "child") as unknown as PingPong, 1, child);
        assert.equal(Atomics.load(turn, 0), 2 * ROUNDS, "counter");
      } finally {
        await killAll(children);
      }
    });
  });
}

for (const which of runtimes) {
  childrenTest(
    [which],
    `a ${which} Worker terminated with async waits pending (waitAsync, recvAsync) ends them: its process lives on, and its notifies wake its own waits`,
    async () => {
      const [name, channel] = [uniqueName("sx-worker-ends"), uniqueName("sx-worker-ends-ch")];
      const children: Child[] = [];
      try {
        const c = spawn(children, which, "wait/worker_ends_waiting.ts", [name, channel]);
        // Deno and Bun died with SIGSEGV: the waits ended into callbacks the Worker had freed.
        const result = resultOf(await finished(c, `the ${which} process`), "child");
        // Node's stayed registered: a notify woke the dead Worker's wait, not the live one.
        assert.deepEqual(result, { woke: 1, fresh: "ok" });
      } finally {
        await killAll(children);
        cleanup({ name });
        cleanup({ name: channel });
      }
    },
  );
}

// ---- 2. waitAsync keeps the event loop running ---------------------------------------------------

/**
 * Before every PAUSE_EVERY-th turn the blocking side waits until the waitAsync side's timer has
 * ticked while it waited (`wait/ping_pong.ts`): a condition, not an amount of time.
 */
const PAUSE_EVERY = 1000;

for (const asyncSide of runtimes) {
  childrenTest(
    [asyncSide, other(asyncSide)],
    `a ${asyncSide} child in waitAsync keeps its timers ticking through ${ROUNDS} round trips with a ${
      other(asyncSide)
    } child`,
    async () => {
      await withSegment("sx-pp-async", async (name) => {
        const children: Child[] = [];
        try {
          const a = spawn(children, asyncSide, "wait/ping_pong.ts", [
            name,
            "0",
            String(ROUNDS),
            "async",
          ]);
          const b = spawn(children, other(asyncSide), "wait/ping_pong.ts", [
            name,
            "1",
            String(ROUNDS),
            "sync",
            String(PAUSE_EVERY),
          ]);
          const [ra, rb] = await Promise.all([
            finished(a, "waitAsync side", HANG_MS),
            finished(b, "wait side", HANG_MS),
          ]);
          const sideA = resultOf(ra, "waitAsync side") as unknown as PingPong;
          const sideB = resultOf(rb, "wait side") as unknown as PingPong;
          assertSide(sideA, 0, `${asyncSide} waitAsync side`);
          assertSide(sideB, 1, `${other(asyncSide)} wait side`);
          // Each pause ended only when the waitAsync side's timer ticked during its wait.
          assert.equal(sideB.paused, ROUNDS / PAUSE_EVERY, "pauses of the wait side");
          assert.ok(
            sideA.ticksWhileWaiting >= sideB.paused,
            `ticks while a waitAsync was pending: ${sideA.ticksWhileWaiting}`,
          );
        } finally {
          await killAll(children);
        }
      });
    },
  );
}

for (const child of runtimes) {
  test(`this process in waitAsync keeps its timers ticking through ${ROUNDS} round trips with a ${child} child`, async () => {
    await withSegment("sx-pp-async-self", async (name, shm) => {
      const turn = new Int32Array(shm.buffer, 0, 1);
      const children: Child[] = [];
      // As wait/ping_pong.ts: ticks that fall while a waitAsync is pending are published in
      // Int32[1], and the child's pauses wait for them.
      const published = new Int32Array(shm.buffer, 4, 1);
      const waiting = { now: false };
      let ticksWhileWaiting = 0;
      const timer = setInterval(() => {
        if (!waiting.now) return;
        ticksWhileWaiting++;
        Atomics.add(published, 0, 1);
        notify(published, 0);
      }, 2);
      try {
        const c = spawn(children, child, "wait/ping_pong.ts", [
          name,
          "1",
          String(ROUNDS),
          "sync",
          String(PAUSE_EVERY),
        ]);
        await within(c.line("ready"), HANG_MS, "the child's start");
        const turns = await within(
          playSide0(turn, true, waiting),
          HANG_MS,
          "this process's ping-pong",
        );
        assert.equal(turns, ROUNDS, "this process's turns");
        const side = resultOf(await finished(c, "child"), "child") as unknown as PingPong;
        assertSide(side, 1, child);
        assert.equal(side.paused, ROUNDS / PAUSE_EVERY, "pauses of the child");
        assert.ok(
          ticksWhileWaiting >= side.paused,
          `timer ticks in this process while a waitAsync was pending: ${ticksWhileWaiting}`,
        );
      } finally {
        clearInterval(timer);
        await killAll(children);
      }
    });
  });
}

// ---- 3. Many waiters in many processes -----------------------------------------------------------

/**
 * A thread in `futex(FUTEX_WAIT)` without FUTEX_PRIVATE_FLAG (the library's `wait`), or in
 * `futex_waitv` (syscall 449: the async wait service watching `waitAsync` calls).
 */
const SHARED_WAIT = /^(202 0x[0-9a-f]+ 0x0 |449 )/;
/** FUTEX_WAIT or FUTEX_WAIT_BITSET, shared: also glibc's process-shared mutex waiting. */
const SHARED_WAIT_ANY = /^202 0x[0-9a-f]+ 0x[09] /;

/**
 * How many threads of process `pid` are in a system call matching `pattern` (the text of
 * `/proc/<pid>/task/<tid>/syscall`: number and arguments). Syscall 202 is x86-64 `futex`; the
 * runtimes' own threads park on private futexes (op 0x80 and up), so a shared one is ours; the
 * runtimes make no `futex_waitv` calls.
 * `undefined` if /proc does not tell.
 */
function threadsIn(pid: number, pattern: RegExp): number | undefined {
  return tidsIn(pid, pattern)?.length;
}

/** The threads of process `pid` in a system call matching `pattern`, as for `threadsIn`. */
function tidsIn(pid: number, pattern: RegExp): string[] | undefined {
  try {
    const tids = [];
    for (const tid of readdirSync(`/proc/${pid}/task`)) {
      let line: string;
      try {
        line = readFileSync(`/proc/${pid}/task/${tid}/syscall`, "utf8");
      } catch {
        continue; // the thread just exited
      }
      if (pattern.test(line)) tids.push(tid);
    }
    return tids;
  } catch {
    return undefined;
  }
}

/**
 * The futex wait thread `tid` of `pid` is in, from `/proc/<pid>/task/<tid>/syscall`: the word's
 * address for a shared `FUTEX_WAIT` without a timeout (or the waiters' for a `futex_waitv`
 * without one), `timed <address>` for either with a timeout, undefined outside such a wait
 * (running, or stopped: a stop and continue of the process interrupts the wait, which the
 * kernel then restarts).
 */
function waitOf(pid: number, tid: string): string | undefined {
  const line = readFileSync(`/proc/${pid}/task/${tid}/syscall`, "utf8");
  if (!SHARED_WAIT.test(line)) return undefined;
  // Number, then the arguments; both calls take their timeout fourth.
  const [, first, , , timeout] = line.split(" ");
  return timeout === "0x0" ? first : `timed ${first}`;
}

/**
 * Notifies every waiter on word 0 of `i32`, again while fewer than `count` were woken in all: a
 * waiter that a signal took out of its wait for an instant (Bun's collector interrupts its main
 * thread so) misses a notify that changes nothing, and waits again. Returns how many were woken.
 */
async function wakeAll(i32: Int32Array, count: number): Promise<number> {
  let woken = notify(i32, 0);
  for (const give = Date.now() + HANG_MS; woken < count && Date.now() < give;) {
    await sleep(10);
    woken += notify(i32, 0);
  }
  return woken;
}

/** True where /proc shows threads' system calls (Linux x86-64, and permission to look). */
const CAN_SEE_PARKING = (() => {
  try {
    readFileSync(`/proc/self/syscall`, "utf8");
    return arch() === "x64";
  } catch {
    return false;
  }
})();

/**
 * Resolves once every process in `pids` has exactly one thread matching `pattern` (parked in
 * the kernel). Where /proc cannot tell, waits 300 ms instead. After `limitMs`, throws if `strict`,
 * else resolves anyway.
 */
async function parked(
  pids: number[],
  pattern: RegExp,
  { limitMs = 10_000, strict = true } = {},
): Promise<void> {
  if (!CAN_SEE_PARKING) return void await sleep(300);
  const deadline = performance.now() + limitMs;
  for (;;) {
    const counts = pids.map((pid) => threadsIn(pid, pattern));
    if (counts.every((n) => n === 1)) return;
    if (performance.now() > deadline) {
      if (!strict) return;
      throw new Error(`not parked after ${limitMs} ms: ${JSON.stringify(counts)}`);
    }
    await sleep(10);
  }
}

test("notify across processes: 1 of 9 waiters (each runtime, wait, adaptive wait and waitAsync), then the other 8", async () => {
  const kinds = [
    ["deno", "sync"],
    ["bun", "async"],
    ["node", "adaptive"],
    ["deno", "async"],
    ["bun", "adaptive"],
    ["node", "sync"],
    ["deno", "adaptive"],
    ["bun", "sync"],
    ["node", "async"],
  ] as const;
  await withSegment("sx-many", async (name, shm) => {
    const i32 = new Int32Array(shm.buffer, 0, 2);
    const children: Child[] = [];
    try {
      const waiters = kinds.map(([which, mode]) =>
        spawn(children, which, "wait/wait_once.ts", [name, mode, "20000"])
      );
      const exited = waiters.map(() => false);
      const mark = (i: number) => () => (exited[i] = true);
      waiters.forEach((c, i) => c.done.then(mark(i), mark(i)));
      const pids = await within(
        Promise.all(waiters.map(async (c) => Number((await c.line("waiting ")).split(" ")[1]))),
        HANG_MS,
        "waiters to start",
      );
      await parked(pids, SHARED_WAIT);
      assert.equal(notify(i32, 1, 1), 0, "nobody waits on the neighbouring word");

      assert.equal(notify(i32, 0, 1), 1, `notify(1) with ${kinds.length} waiters`);
      const first = await within(
        Promise.race(waiters.map(async (c, i) => [i, await c.line("woken ")] as const)),
        HANG_MS,
        "the one woken waiter",
      );
      assert.equal(first[1], "woken ok", `${kinds[first[0]].join(" ")} waiter's result`);
      // notify(1) said it woke one; the others are still waiting (and, where /proc shows it,
      // still parked in the kernel).
      assert.equal(Atomics.load(i32, 1), 1, "waiters woken by notify(1)");
      const others = waiters.map((_, i) => i).filter((i) => i !== first[0]);
      assert.deepEqual(
        others.map((i) => exited[i]),
        others.map(() => false),
        "the other waiters are still running",
      );
      // (Looked at until they are: a look may find a waiter just outside its wait, Bun's
      // collector having interrupted it with a signal, from which it waits again.)
      await parked(others.map((i) => pids[i]), SHARED_WAIT);

      assert.equal(
        await wakeAll(i32, others.length),
        others.length,
        `notify(all) wakes the other ${others.length}`,
      );
      const results = await Promise.all(waiters.map((c, i) => finished(c, kinds[i].join(" "))));
      for (const [i, r] of results.entries()) {
        assert.match(r.stdout, /^woken ok$/m, `${kinds[i].join(" ")} waiter's result`);
      }
      assert.equal(Atomics.load(i32, 1), kinds.length, "waiters woken in all");
      assert.equal(notify(i32, 0), 0, "nobody is left waiting");
    } finally {
      await killAll(children);
    }
  });
});

// Waits park in slices of 100 ms only in a Worker, which must stay terminable (`sync.test.ts`): a
// notify that changes no value and comes between two slices would find no thread parked.
testUnless(
  CAN_SEE_PARKING ? false : lacking("/proc does not show system calls here"),
  "a wait without a timeout on a main thread parks once, in every runtime: nothing wakes it before a notify",
  async () => {
    await withSegment("sx-once", async (name, shm) => {
      const i32 = new Int32Array(shm.buffer, 0, 2);
      const children: Child[] = [];
      try {
        const kinds = [...runtimes].flatMap((which) =>
          (["sync", "adaptive"] as const).map((mode) => [which, mode] as const)
        );
        const waiters = kinds.map(([which, mode]) =>
          spawn(children, which, "wait/wait_once.ts", [name, mode, "Infinity"])
        );
        const pids = await within(
          Promise.all(waiters.map(async (c) => Number((await c.line("waiting ")).split(" ")[1]))),
          HANG_MS,
          "waiters to start",
        );
        await parked(pids, SHARED_WAIT);
        const tids = pids.map((pid) => tidsIn(pid, SHARED_WAIT)![0]);
        const words = pids.map((pid, i) => waitOf(pid, tids[i]));
        const label = kinds.map((k) => k.join(" ")).join(", ");
        assert.ok(
          words.every((w) => w !== undefined && !w.startsWith("timed")),
          `parked without a timeout (${label}): ${words.join(", ")}`,
        );
        // The same wait without a timeout all along: a wait in slices shows its timeout at any
        // look. A look that finds a thread outside its wait (its process stopped and continued,
        // say) is not held against it; a count of the threads' context switches was, and failed
        // for such a stop although the wait went on.
        for (let look = 0; look < 7; look++) {
          await sleep(50);
          const now = pids.map((pid, i) => waitOf(pid, tids[i]));
          assert.deepEqual(
            now.map((w, i) => w ?? words[i]),
            words,
            `woken, or waiting otherwise, while nothing notified (${label})`,
          );
        }
        // Each waiter makes one wait and counts its return: none returned before the notify.
        assert.equal(Atomics.load(i32, 1), 0, `a waiter returned before any notify (${label})`);
        await parked(pids, SHARED_WAIT);
        assert.equal(await wakeAll(i32, kinds.length), kinds.length, "every waiter is woken");
        for (const [i, c] of waiters.entries()) {
          assert.match((await finished(c, kinds[i].join(" "))).stdout, /^woken ok$/m);
        }
      } finally {
        await killAll(children);
      }
    });
  },
);

// ---- 4. A lock holder killed with SIGKILL ------------------------------------------------------

/**
 * One way a lock holder (`lock/take_lock.ts`, always a child) dies with SIGKILL, and who must
 * then see `ownerDied`: this process's next `lock()`, or exactly one of a waiter of every runtime
 * already blocked in `lock()`. After that the lock works normally for everyone.
 */
interface HolderKilled {
  /** Who calls `Mutex.init`: the holder (`init`, which sets it up), or this process first. */
  setUpBy: "child" | "parent";
  /** Who takes the lock after the death. */
  next: "this process" | "waiters";
}

/** Every holder death, each run with a holder of every runtime. */
const HOLDER_KILLED: HolderKilled[] = [
  { setUpBy: "child", next: "this process" },
  { setUpBy: "parent", next: "this process" },
  { setUpBy: "parent", next: "waiters" },
];

function holderKilledName(c: HolderKilled, holder: string): string {
  return c.next === "this process"
    ? `Mutex (set up by the ${c.setUpBy}) held by a ${holder} child killed with SIGKILL: lock() reports ownerDied, then works`
    : `a ${holder} lock holder SIGKILLed while a Deno, a Bun and a Node process wait in lock(): exactly one gets ownerDied`;
}

/** Runs one {@linkcode HolderKilled} case with a `holderRuntime` holder. */
async function holderKilled(c: HolderKilled, holderRuntime: Runtime): Promise<void> {
  await withSegment("sx-mutex", async (name, shm) => {
    const offset = 128; // not 0, to catch offset mix-ups between processes
    const children: Child[] = [];
    try {
      if (c.setUpBy === "parent") Mutex.init(shm.buffer, offset);
      const holder = spawn(children, holderRuntime, "lock/take_lock.ts", [
        name,
        String(offset),
        c.setUpBy === "parent" ? "open" : "init",
        "hold",
      ]);
      assert.equal(
        await within(holder.line("locked"), HANG_MS, "the holder's lock"),
        "locked ownerDied=false",
      );
      const mutex = Mutex.open(shm.buffer, offset);
      assert.equal(mutex.tryLock(), null, "tryLock while the child holds it");
      let waiters: Child[] = [];
      if (c.next === "this process") {
        const begin = performance.now();
        assert.throws(
          () => mutex.lock(100),
          (e) => e instanceof SharedMemoryError && e.code === "ETIMEDOUT",
          "lock(100) while the child holds it",
        );
        assert.ok(performance.now() - begin >= 99.99, "lock(100) gave up no earlier than 100 ms");
      } else {
        waiters = runtimes.map((which) =>
          spawn(children, which, "lock/take_lock.ts", [name, String(offset), "open", "unlock"])
        );
        const pids = await within(
          Promise.all(waiters.map(async (w) => Number((await w.line("locking ")).split(" ")[1]))),
          HANG_MS,
          "the waiters' lock calls",
        );
        // Let them park in the kernel (either way, exactly one must see the death).
        await parked(pids, SHARED_WAIT_ANY, { limitMs: 2000, strict: false });
        assert.equal(mutex.tryLock(), null, "the holder still holds it");
      }

      holder.kill("SIGKILL");
      const end = await within(holder.done, HANG_MS, "the killed holder");
      assert.deepEqual([end.code, end.signal], [null, "SIGKILL"], "the holder's exit");

      if (c.next === "this process") {
        const recovered = mutex.lock(5000);
        assert.equal(recovered.ownerDied, true, "ownerDied after the holder's death");
        recovered.unlock();
      } else {
        const results = await Promise.all(
          waiters.map((w, i) => finished(w, `${runtimes[i]} waiter`)),
        );
        assert.equal(ownerDiedCount(results), 1, "waiters told ownerDied");
      }
      const again = mutex.lock(5000);
      assert.equal(again.ownerDied, false, "ownerDied on the next lock");
      again.unlock();
      if (c.next === "this process") {
        // Another process, of each runtime, takes and releases it normally.
        for (const next of runtimes) {
          const locker = spawn(children, next, "lock/take_lock.ts", [
            name,
            String(offset),
            "open",
            "unlock",
          ]);
          const r = await finished(locker, `${next} locker`);
          assert.match(r.stdout, /^locked ownerDied=false\nunlocked$/m, `${next} locker`);
        }
        const last = mutex.tryLock();
        assert.ok(last !== null && !last.ownerDied, "tryLock after the other processes");
        last.unlock();
      }
    } finally {
      await killAll(children);
    }
  });
}

// This process takes the lock in every case: every runner runs them all.
for (const c of HOLDER_KILLED) {
  for (const holderRuntime of runtimes) {
    test(holderKilledName(c, holderRuntime), () => holderKilled(c, holderRuntime));
  }
}

// ---- 5. Four processes count under the lock ----------------------------------------------------

const COUNT = 20_000;
const COUNTERS = ["deno", "bun", "node", "node"] as const;

/**
 * Runs the four counting children with `guard`; returns the counter, the times a child entered
 * the read-delay-write section while another was inside, and the times a tryLock found the lock
 * taken.
 */
async function countTogether(
  guard: "lock" | "none",
): Promise<{ counter: number; overlaps: number; contended: number }> {
  let out = { counter: -1, overlaps: -1, contended: -1 };
  await withSegment("sx-count", async (name, shm) => {
    Mutex.init(shm.buffer, 0);
    const i32 = new Int32Array(shm.buffer);
    const counter = new Float64Array(shm.buffer, COUNTER_BYTE, 1);
    const children: Child[] = [];
    try {
      const counters = COUNTERS.map((which) =>
        spawn(children, which, "lock/count_under_lock.ts", [name, String(COUNT), guard])
      );
      await within(Promise.all(counters.map((c) => c.line("ready"))), HANG_MS, "counters ready");
      assert.equal(Atomics.load(i32, READY), COUNTERS.length, "children ready");
      Atomics.store(i32, GO, 1);
      notify(i32, GO);
      const results = await Promise.all(
        counters.map((c, i) => finished(c, `${COUNTERS[i]} counter ${i}`, HANG_MS)),
      );
      let overlaps = 0;
      let contended = 0;
      for (const [i, r] of results.entries()) {
        const res = resultOf(r, `counter ${i}`) as {
          n: number;
          overlaps: number;
          contended: number;
        };
        assert.equal(res.n, COUNT, `counter ${i}'s n`);
        overlaps += res.overlaps;
        contended += res.contended;
      }
      assert.equal(Atomics.load(i32, OVERLAPS), overlaps, "overlaps: shared tally = children's");
      assert.equal(Atomics.load(i32, INSIDE), 0, "nobody left inside");
      out = { counter: counter[0], overlaps, contended };
    } finally {
      await killAll(children);
    }
  });
  return out;
}

childrenTest(
  COUNTERS,
  `${mix(COUNTERS)} processes add 1 to a plain Float64 ${COUNT} times each under the Mutex: exact`,
  async () => {
    const { counter, overlaps, contended } = await countTogether("lock");
    // The processes did compete for the lock (tens to thousands of times per run here)...
    assert.ok(contended > 0, "tryLock never found the lock taken: the children did not compete");
    // ...and it let only one in at a time.
    assert.equal(overlaps, 0, "times two processes were inside the lock at once");
    assert.equal(counter, COUNTERS.length * COUNT, "counter");
  },
);

// The same children without the lock, to show the test above can fail: they do overlap, and
// updates are lost.
childrenTest(
  COUNTERS,
  `the same 4 processes without the Mutex overlap and lose updates`,
  async () => {
    const { counter, overlaps } = await countTogether("none");
    assert.ok(overlaps > 0, "the children ran inside the section at the same time");
    assert.ok(counter < COUNTERS.length * COUNT, `lost updates: counter ${counter}`);
  },
);

// ---- 6. Timeouts in children --------------------------------------------------------------------

const TIMEOUT_MS = 50;

for (const child of runtimes) {
  for (const mode of ["sync", "async"] as const) {
    const fn = mode === "sync" ? "wait" : "waitAsync";
    childrenTest(
      [child],
      `${fn} with a ${TIMEOUT_MS} ms timeout in a ${child} child: timed-out, no earlier`,
      async () => {
        await withSegment("sx-timeout", async (name) => {
          const children: Child[] = [];
          try {
            const c = spawn(children, child, "wait/time_out.ts", [name, mode, String(TIMEOUT_MS)]);
            const r = resultOf(await finished(c, `${child} ${fn}`), `${child} ${fn}`) as {
              result: string;
              elapsedMs: number;
              notEqual: string;
            };
            assert.equal(r.result, "timed-out", `${fn} result`);
            // performance.now() is rounded to microseconds; allow that much.
            assert.ok(r.elapsedMs >= TIMEOUT_MS - 0.01, `${fn} returned after ${r.elapsedMs} ms`);
            assert.equal(r.notEqual, "not-equal", `${fn} for a value the word does not hold`);
          } finally {
            await killAll(children);
          }
        });
      },
    );
  }
}
