/**
 * The wait/notify benchmarks of shared-buffer, in one runtime-neutral file:
 *
 * 1. **Round trips between two processes** of one runtime, in Deno and in Bun, for each
 *    placement (`same`: both processes `taskset -c 0`; `split`: the measuring process
 *    `taskset -c 0`, the echo process `taskset -c 1`): `wait`/`notify` parking at once, `wait`
 *    with `{ spin }` (spin-then-park), `waitAsync` on the measuring side; against the runtime's own
 *    Unix-domain socket (8-byte messages), its `Atomics.wait`/`Atomics.notify` between two Workers
 *    of one process, and the native Rust futex ping-pong of `bench/native_wait.rs`, all in the
 *    same run. Median and p99 of per-round-trip times; ratios against the socket and the native
 *    figures of the same placement.
 * 2. **Costs on one thread** (`taskset -c 0`): an uncontended `Mutex` lock+unlock, lock alone
 *    and unlock alone, a `notify` nobody waits for, and the CPU an idle `waitAsync` uses; with
 *    `strace` installed, the system calls each loop makes (counted between marker calls).
 *
 * `deno run -A bench/wait.ts` is the driver: it makes the segment, starts every child under
 * `taskset` and prints one JSON object. The children are this file run as `wait.ts <mode>` under
 * Deno and Bun (`leader <variant>`, `echo <variant>`, `workers`, `micro`, `idle`, `syscalls`) and
 * the native benchmark. Knobs (environment): `SB_WAIT_ROUNDS` (default 3; each round runs every
 * variant once, in a rotated order), `SB_WAIT_N` (timed round trips per variant and round,
 * default 7,000), `SB_WAIT_WARMUP` (untimed ones before them, default 1,000),
 * `SB_WAIT_PLACEMENTS` (`same,split`), `SB_WAIT_VARIANTS` (`park,spin,async,socket,workers,native`),
 * `SB_WAIT_STRACE=0` (skip the system call check), `NATIVE_WAIT_BIN`, `DENO`, `BUN`.
 * `SB_BENCH_CPUS` is ignored here: each figure has its own placement.
 *
 * @module
 */

import { spawn } from "node:child_process";
import {
  appendFileSync,
  existsSync,
  mkdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import process from "node:process";
import {
  checkInterrupted,
  env,
  envInt,
  median,
  nativeBinary as nativeBinaryOf,
  progress,
  root,
  run,
  type RunResult,
  runtime,
} from "./common.ts";
import { type LatencyStats, latencyStats, round, type TimerCost, timerCost } from "./wait_lib.ts";

const entry = runtime === "bun" ? "../bun.ts" : "../mod.ts";
const lib: typeof import("../mod.ts") = await import(entry);
const { Mutex, SharedMemory, notify, wait, waitAsync } = lib;

/** Spin count of the spin-then-park variant: `DEFAULT_SPINS` of the Rust side and native bench. */
const SPINS = 256;
const GOAL_VS_SOCKET = 0.5;
const GOAL_VS_NATIVE = 1.25;
const GOAL_MUTEX_NS = 100;

// Words of the ping-pong segment (Int32Array indices).
const PING = 0;
const PONG = 1;
const READY = 2;
const STOP = -1;
const WORDS = 16;

type Runtime = "deno" | "bun";
type Variant = "park" | "spin" | "async" | "socket";
type Placement = "same" | "split";

const VARIANTS: Record<Variant | "workers", string> = {
  park: "wait()/notify() on both sides: each parks in the kernel at once (futex, no spinning)",
  spin:
    `wait(..., { spin: ${SPINS} }) on both sides: spin-then-park (the spin count of the native spin_then_park)`,
  async:
    "the measuring side awaits waitAsync() (Deno: FFI pool thread; Bun: native pool thread + threadsafe JSCallback); the echo side parks in wait()",
  socket:
    "the runtime's own Unix-domain socket (Deno.listen/connect({transport:'unix'}); Bun.listen/connect({unix})), 8-byte messages echoed back, partial reads and writes handled",
  workers:
    "in-process reference: Atomics.wait/Atomics.notify ping-pong between two Workers over a SharedArrayBuffer; the process is pinned with taskset and each Worker pins its own thread with sched_setaffinity",
};

const PLACEMENTS: Record<Placement, { leader: string; echo: string; text: string }> = {
  same: {
    leader: "0",
    echo: "0",
    text:
      "same core: both processes `taskset -c 0` (Workers: process `taskset -c 0`, both threads on CPU 0; native: --pin same)",
  },
  split: {
    leader: "0",
    echo: "1",
    text:
      "different cores: measuring process `taskset -c 0`, echo process `taskset -c 1` (Workers: process `taskset -c 0,1`, measuring thread on CPU 0, echo thread on CPU 1; native: --pin split)",
  },
};

function version(): string {
  if (runtime === "bun") {
    return `bun ${(globalThis as unknown as { Bun: { version: string } }).Bun.version}`;
  }
  return `deno ${Deno.version.deno}`;
}

/** Timed round trips per variant and round, and untimed ones before them. */
function roundTrips(): { n: number; warmup: number } {
  return { n: envInt("SB_WAIT_N", 7_000), warmup: envInt("SB_WAIT_WARMUP", 1_000) };
}

// ---- children: the two sides of a cross-process ping-pong --------------------------------------

function openWords(): { view: Int32Array; close(): void } {
  const name = env("SB_WAIT_SEG");
  if (!name) throw new Error("SB_WAIT_SEG is not set: run bench/wait.ts without arguments");
  const shm = SharedMemory.open({ name });
  return { view: new Int32Array(shm.buffer, 0, WORDS), close: () => shm.close() };
}

function signalReady(v: Int32Array): void {
  Atomics.store(v, READY, 1);
  notify(v, READY);
}

function awaitReady(v: Int32Array): void {
  const deadline = performance.now() + 30_000;
  while (Atomics.load(v, READY) === 0) {
    if (performance.now() > deadline) throw new Error("the echo process never became ready");
    wait(v, READY, 0, 100);
  }
}

function echoFutex(v: Int32Array, spin: number): void {
  const options = spin > 0 ? { spin } : undefined;
  signalReady(v);
  let last = 0;
  for (;;) {
    const now = Atomics.load(v, PING);
    if (now === last) {
      wait(v, PING, last, undefined, options);
      continue;
    }
    if (now === STOP) return;
    last = now;
    Atomics.store(v, PONG, now);
    notify(v, PONG, 1);
  }
}

function stopEcho(v: Int32Array): void {
  Atomics.store(v, PING, STOP);
  notify(v, PING);
}

function leaderFutex(v: Int32Array, spin: number, n: number, warmup: number): LatencyStats {
  const options = spin > 0 ? { spin } : undefined;
  awaitReady(v);
  const samples = new Float64Array(n);
  let start = 0;
  for (let round = 1; round <= warmup + n; round++) {
    if (round === warmup + 1) start = performance.now();
    const t0 = performance.now();
    Atomics.store(v, PING, round);
    notify(v, PING, 1);
    for (;;) {
      const now = Atomics.load(v, PONG);
      if (now === round) break;
      wait(v, PONG, now, undefined, options);
    }
    if (round > warmup) samples[round - warmup - 1] = performance.now() - t0;
  }
  const total = performance.now() - start;
  stopEcho(v);
  return latencyStats(samples, total);
}

async function leaderAsync(v: Int32Array, n: number, warmup: number): Promise<LatencyStats> {
  awaitReady(v);
  const samples = new Float64Array(n);
  let start = 0;
  for (let round = 1; round <= warmup + n; round++) {
    if (round === warmup + 1) start = performance.now();
    const t0 = performance.now();
    Atomics.store(v, PING, round);
    notify(v, PING, 1);
    for (;;) {
      const now = Atomics.load(v, PONG);
      if (now === round) break;
      await waitAsync(v, PONG, now);
    }
    if (round > warmup) samples[round - warmup - 1] = performance.now() - t0;
  }
  const total = performance.now() - start;
  stopEcho(v);
  return latencyStats(samples, total);
}

// ---- children: Unix-domain sockets -------------------------------------------------------------

/** A byte stream of 8-byte messages, over either runtime's socket API. */
interface MessageSocket {
  /** Sends all 8 bytes (retrying partial writes). */
  send(message: Uint8Array): Promise<void> | void;
  /** The next whole 8-byte message (reassembled from partial reads), or null at end of stream. */
  receive(into: Uint8Array): Promise<boolean>;
  close(): void;
}

function denoSocket(conn: Deno.Conn): MessageSocket {
  return {
    async send(message) {
      let put = 0;
      while (put < message.length) put += await conn.write(message.subarray(put));
    },
    async receive(into) {
      let got = 0;
      while (got < into.length) {
        const n = await conn.read(into.subarray(got));
        if (n === null) {
          if (got === 0) return false;
          throw new Error(`the stream ended inside a message (${got} of ${into.length} bytes)`);
        }
        got += n;
      }
      return true;
    },
    close: () => conn.close(),
  };
}

// deno-lint-ignore no-explicit-any
type BunSocket = any;

/**
 * Bun's callback sockets as a {@linkcode MessageSocket}: `write` returns how much the kernel
 * took and drops the rest, so the remainder is kept and written again on `drain`; `data` chunks
 * are reassembled into whole messages.
 */
class BunMessages implements MessageSocket {
  socket: BunSocket;
  #out: Uint8Array = new Uint8Array(0);
  #message = new Uint8Array(8);
  #have = 0;
  #ready: Uint8Array[] = [];
  #waiter: ((ok: boolean) => void) | null = null;
  #closed = false;

  handlers = {
    data: (_socket: BunSocket, chunk: Uint8Array) => this.#data(chunk),
    drain: () => this.#flush(),
    close: () => {
      this.#closed = true;
      this.#waiter?.(false);
      this.#waiter = null;
    },
    error: (_socket: BunSocket, err: unknown) => progress(`bun socket error: ${err}`),
  };

  #data(chunk: Uint8Array): void {
    let i = 0;
    while (i < chunk.length) {
      const take = Math.min(8 - this.#have, chunk.length - i);
      this.#message.set(chunk.subarray(i, i + take), this.#have);
      this.#have += take;
      i += take;
      if (this.#have === 8) {
        this.#have = 0;
        this.#ready.push(this.#message.slice());
      }
    }
    if (this.#waiter && this.#ready.length) {
      const waiter = this.#waiter;
      this.#waiter = null;
      waiter(true);
    }
  }

  #flush(): void {
    while (this.#out.length > 0) {
      const n = this.socket.write(this.#out);
      if (n <= 0) return; // the kernel buffer is full: `drain` calls again
      this.#out = this.#out.subarray(n);
    }
  }

  send(message: Uint8Array): void {
    if (this.#out.length === 0) {
      this.#out = message;
      this.#flush();
      if (this.#out.length) this.#out = this.#out.slice(); // keep our own copy of the rest
      return;
    }
    const joined = new Uint8Array(this.#out.length + message.length);
    joined.set(this.#out);
    joined.set(message, this.#out.length);
    this.#out = joined;
    this.#flush();
  }

  receive(into: Uint8Array): Promise<boolean> {
    const take = () => {
      into.set(this.#ready.shift()!);
      return true;
    };
    if (this.#ready.length) return Promise.resolve(take());
    if (this.#closed) return Promise.resolve(false);
    return new Promise((resolve) => {
      this.#waiter = (ok) => resolve(ok ? take() : false);
    });
  }

  close(): void {
    this.socket.end();
  }
}

function socketPath(): string {
  const path = env("SB_WAIT_SOCK");
  if (!path) throw new Error("SB_WAIT_SOCK is not set: run bench/wait.ts without arguments");
  return path;
}

async function echoSocket(v: Int32Array): Promise<void> {
  const path = socketPath();
  const message = new Uint8Array(8);
  if (runtime === "deno") {
    const listener = Deno.listen({ transport: "unix", path });
    signalReady(v);
    const conn = await listener.accept();
    listener.close();
    const socket = denoSocket(conn);
    while (await socket.receive(message)) await socket.send(message);
    socket.close();
    return;
  }
  const Bun = (globalThis as BunSocket).Bun;
  const messages = new BunMessages();
  let accepted!: () => void;
  const connected = new Promise<void>((resolve) => (accepted = resolve));
  const server = Bun.listen({
    unix: path,
    socket: {
      ...messages.handlers,
      open(socket: BunSocket) {
        messages.socket = socket;
        accepted();
      },
    },
  });
  signalReady(v);
  await connected;
  while (await messages.receive(message)) messages.send(message);
  server.stop(true);
}

async function leaderSocket(v: Int32Array, n: number, warmup: number): Promise<LatencyStats> {
  const path = socketPath();
  awaitReady(v);
  let socket: MessageSocket;
  if (runtime === "deno") {
    socket = denoSocket(await Deno.connect({ transport: "unix", path }));
  } else {
    const Bun = (globalThis as BunSocket).Bun;
    const messages = new BunMessages();
    messages.socket = await Bun.connect({ unix: path, socket: messages.handlers });
    socket = messages;
  }
  const out = new Uint8Array(8);
  const outView = new DataView(out.buffer);
  const back = new Uint8Array(8);
  const backView = new DataView(back.buffer);
  const samples = new Float64Array(n);
  let start = 0;
  for (let round = 1; round <= warmup + n; round++) {
    if (round === warmup + 1) start = performance.now();
    const t0 = performance.now();
    outView.setInt32(0, round, true);
    outView.setInt32(4, ~round, true);
    await socket.send(out);
    if (!await socket.receive(back)) throw new Error("the echo process closed the socket");
    if (round > warmup) samples[round - warmup - 1] = performance.now() - t0;
    if (backView.getInt32(0, true) !== round || backView.getInt32(4, true) !== ~round) {
      throw new Error(`round ${round}: echoed the wrong bytes ${back}`);
    }
  }
  const total = performance.now() - start;
  socket.close();
  return latencyStats(samples, total);
}

/** What a `leader` child prints. */
interface LeaderResult {
  runtime: Runtime;
  version: string;
  variant: Variant;
  stats: LatencyStats;
  timer: TimerCost;
}

async function leaderChild(variant: Variant): Promise<LeaderResult> {
  const words = openWords();
  const timer = timerCost();
  const { n, warmup } = roundTrips();
  try {
    let stats: LatencyStats;
    if (variant === "park") stats = leaderFutex(words.view, 0, n, warmup);
    else if (variant === "spin") stats = leaderFutex(words.view, SPINS, n, warmup);
    else if (variant === "async") stats = await leaderAsync(words.view, n, warmup);
    else stats = await leaderSocket(words.view, n, warmup);
    return { runtime, version: version(), variant, stats, timer };
  } finally {
    words.close();
  }
}

async function echoChild(variant: Variant): Promise<void> {
  const words = openWords();
  try {
    if (variant === "socket") await echoSocket(words.view);
    else echoFutex(words.view, variant === "spin" ? SPINS : 0);
  } finally {
    words.close();
  }
}

// ---- child: Atomics between two Workers --------------------------------------------------------

/** What the `workers` child prints. */
interface WorkersResult {
  runtime: Runtime;
  stats: LatencyStats;
  timer: TimerCost;
  leader_thread: string;
  echo_thread: string;
}

async function workersChild(): Promise<WorkersResult> {
  const cpus = (env("SB_WAIT_THREAD_CPUS") ?? "").split(",").filter((c) => c !== "").map(Number);
  const { n, warmup } = roundTrips();
  const sab = new SharedArrayBuffer(WORDS * 4);
  const url = new URL("./wait_worker.ts", import.meta.url).href;
  const workers: Worker[] = [];
  const start = (role: "leader" | "echo", cpu: number | null) => {
    const worker = new Worker(url, { type: "module" });
    workers.push(worker);
    const done = new Promise<Record<string, unknown>>((resolve, reject) => {
      worker.onmessage = (event) => resolve(event.data);
      worker.onerror = (event) => {
        event.preventDefault?.();
        reject(new Error(`${role} worker: ${event.message}`));
      };
    });
    worker.postMessage({ role, sab, n, warmup, cpu });
    return done;
  };
  try {
    const echo = start("echo", cpus[1] ?? null);
    const leader = start("leader", cpus[0] ?? null);
    const [l, e] = await Promise.all([leader, echo]);
    return {
      runtime,
      stats: l.stats as LatencyStats,
      timer: l.timer as TimerCost,
      leader_thread: String(l.pinned),
      echo_thread: String(e.pinned),
    };
  } finally {
    for (const worker of workers) worker.terminate();
  }
}

// ---- child: costs on one thread ----------------------------------------------------------------

/** Median ns per call of `op` over `blocks` blocks of `iters` calls, after a warm-up. */
function perCall(
  op: () => void,
  iters: number,
  blocks = 10,
): { ns: number; best_ns: number; calls: number } {
  for (let i = 0; i < Math.min(iters, 20_000); i++) op();
  const ns: number[] = [];
  for (let b = 0; b < blocks; b++) {
    const start = performance.now();
    for (let i = 0; i < iters; i++) op();
    ns.push(((performance.now() - start) * 1e6) / iters);
  }
  return { ns: round(median(ns), 1), best_ns: round(Math.min(...ns), 1), calls: iters * blocks };
}

/** A private segment: created, then unlinked at once, so nothing is left behind. */
function privateSegment(size: number): import("../mod.ts").SharedMemory {
  const name = `/sb-wait-${process.pid}-${Math.random().toString(36).slice(2, 10)}`;
  const shm = SharedMemory.create({ name }, size);
  SharedMemory.unlink({ name });
  return shm;
}

const MANY = 4096;
const MANY_OFFSET = 64 * 1024;

async function idleCpu(what: () => Promise<unknown>) {
  const cpu0 = process.cpuUsage();
  const wall0 = performance.now();
  const result = await what();
  const cpu = process.cpuUsage(cpu0);
  const wallMs = performance.now() - wall0;
  const cpuMs = (cpu.user + cpu.system) / 1e3;
  return {
    result,
    wall_ms: round(wallMs, 1),
    cpu_ms: round(cpuMs, 2),
    cpu_ms_per_s: round(cpuMs / (wallMs / 1e3), 3),
  };
}

function microChild(): Record<string, unknown> {
  const shm = privateSegment(MANY_OFFSET + MANY * Mutex.BYTE_LENGTH);
  try {
    const timer = timerCost();
    const mutex = Mutex.init(shm.buffer, 0);
    const words = new Int32Array(shm.buffer, 1024, WORDS);
    const sab = new Int32Array(new SharedArrayBuffer(64));
    const lockUnlock = perCall(() => mutex.lock().unlock(), 100_000);
    const tryLockUnlock = perCall(() => mutex.tryLock()!.unlock(), 100_000);
    const notifyAll = perCall(() => notify(words, 0), 20_000);
    const notifyOne = perCall(() => notify(words, 0, 1), 20_000);
    const atomicsNotify = perCall(() => Atomics.notify(sab, 0, 1), 100_000);
    // words[0] is 0: the kernel answers "not equal" at once (one system call, no sleep).
    const waitNotEqual = perCall(() => wait(words, 0, 1), 20_000);

    // Lock alone and unlock alone: lock MANY distinct mutexes in one timed block, then unlock
    // them all in another (one mutex cannot be locked twice in a row).
    const mutexes = Array.from(
      { length: MANY },
      (_, i) => Mutex.init(shm.buffer, MANY_OFFSET + i * Mutex.BYTE_LENGTH),
    );
    const guards: import("../mod.ts").MutexGuard[] = new Array(MANY);
    const lockNs: number[] = [];
    const unlockNs: number[] = [];
    const rounds = 60;
    for (let r = 0; r < rounds + 5; r++) {
      const t0 = performance.now();
      for (let i = 0; i < MANY; i++) guards[i] = mutexes[i].lock();
      const t1 = performance.now();
      for (let i = 0; i < MANY; i++) guards[i].unlock();
      const t2 = performance.now();
      if (r >= 5) {
        lockNs.push(((t1 - t0) * 1e6) / MANY);
        unlockNs.push(((t2 - t1) * 1e6) / MANY);
      }
    }

    return {
      runtime,
      version: version(),
      timer_now_ns: timer.now_ns,
      timer_resolution_ns: timer.resolution_ns,
      lock_unlock_ns: lockUnlock.ns,
      lock_unlock_best_block_ns: lockUnlock.best_ns,
      lock_unlock_calls: lockUnlock.calls,
      trylock_unlock_ns: tryLockUnlock.ns,
      lock_alone_ns: round(median(lockNs), 1),
      unlock_alone_ns: round(median(unlockNs), 1),
      lock_alone_best_block_ns: round(Math.min(...lockNs), 1),
      unlock_alone_best_block_ns: round(Math.min(...unlockNs), 1),
      lock_unlock_alone_calls: rounds * MANY,
      notify_no_waiter_ns: notifyAll.ns,
      notify_one_no_waiter_ns: notifyOne.ns,
      notify_calls: notifyAll.calls,
      wait_not_equal_ns: waitNotEqual.ns,
      atomics_notify_sab_no_waiter_ns: atomicsNotify.ns,
    };
  } finally {
    shm.close();
  }
}

/**
 * The CPU an idle `waitAsync` costs, in a fresh process: 1 s of the runtime doing nothing, one
 * waitAsync that nobody notifies (it times out after 2 s), then 1 s of nothing again.
 */
async function idleChild(): Promise<Record<string, unknown>> {
  const shm = privateSegment(4096);
  try {
    const words = new Int32Array(shm.buffer, 0, WORDS);
    const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
    await waitAsync(words, 0, 0, 20); // starts Bun's pool thread and callback
    await sleep(300); // lets startup work (JIT, GC threads) settle
    const before = await idleCpu(() => sleep(1000));
    const waiting = await idleCpu(() => waitAsync(words, 0, 0, 2000));
    const after = await idleCpu(() => sleep(1000));
    // The second idle period is the steadier reference: the first still has startup work in it.
    const baseline = after.cpu_ms_per_s;
    return {
      runtime,
      idle_before_1s: before,
      wait_async_2s: waiting,
      idle_after_1s: after,
      wait_async_extra_cpu_ms_per_s: round(waiting.cpu_ms_per_s - baseline, 3),
    };
  } finally {
    shm.close();
  }
}

// ---- child: system calls, for strace -f ------------------------------------------------------

const MARKER_DIR = "/nonexistent-sb-wait-marker";
const SYSCALL_LOOPS = { empty: 0, lock_unlock: 1_000_000, unlock_many: 0, notify: 10_000 };

/** Loops between marker calls (a `stat` of a path that cannot exist) that strace output shows. */
function syscallsChild(): Record<string, unknown> {
  const shm = privateSegment(MANY_OFFSET + MANY * Mutex.BYTE_LENGTH);
  try {
    const mutex = Mutex.init(shm.buffer, 0);
    const words = new Int32Array(shm.buffer, 1024, WORDS);
    const mutexes = Array.from(
      { length: MANY },
      (_, i) => Mutex.init(shm.buffer, MANY_OFFSET + i * Mutex.BYTE_LENGTH),
    );
    const guards: import("../mod.ts").MutexGuard[] = new Array(MANY);
    const marker = (label: string) => existsSync(`${MARKER_DIR}/${label}`);
    const lockUnlock = (n: number) => {
      for (let i = 0; i < n; i++) mutex.lock().unlock();
    };
    const unlockMany = () => {
      for (let i = 0; i < MANY; i++) guards[i].unlock();
    };
    const lockMany = () => {
      for (let i = 0; i < MANY; i++) guards[i] = mutexes[i].lock();
    };
    const notifyLoop = (n: number) => {
      for (let i = 0; i < n; i++) notify(words, 0);
    };
    // Warm up (JIT compilation maps code pages), outside the windows.
    for (let i = 0; i < 20; i++) lockMany(), unlockMany();
    lockUnlock(200_000);
    notifyLoop(2_000);
    const started = performance.now();
    marker("empty-begin");
    marker("empty-end");
    marker("lock_unlock-begin");
    lockUnlock(SYSCALL_LOOPS.lock_unlock);
    marker("lock_unlock-end");
    lockMany();
    marker("unlock_many-begin");
    unlockMany();
    marker("unlock_many-end");
    marker("notify-begin");
    notifyLoop(SYSCALL_LOOPS.notify);
    marker("notify-end");
    return {
      runtime,
      loops: { ...SYSCALL_LOOPS, unlock_many: MANY },
      ms: round(performance.now() - started, 1),
    };
  } finally {
    shm.close();
  }
}

// ---- driver ------------------------------------------------------------------------------------

/** A child started in the background. */
interface Child {
  done: Promise<RunResult>;
  kill(): void;
}

function start(command: string[], extraEnv: Record<string, string> = {}): Child {
  const child = spawn(command[0], command.slice(1), {
    env: { ...process.env, ...extraEnv },
    stdio: ["ignore", "pipe", "inherit"],
  });
  let stdout = "";
  child.stdout!.setEncoding("utf8");
  child.stdout!.on("data", (chunk: string) => (stdout += chunk));
  const done = new Promise<RunResult>((resolve) => {
    child.on("error", (err) => resolve({ status: null, stdout, error: String(err) }));
    child.on("close", (code, signal) =>
      resolve(
        code === 0 ? { status: 0, stdout } : {
          status: code,
          stdout,
          signal: signal ?? undefined,
          error: `${command.join(" ")} exited with ${code ?? signal}`,
        },
      ));
  });
  return { done, kill: () => child.kill("SIGKILL") };
}

/** `done`, or a failed result after `ms` (the child is then killed). */
function within(child: Child, ms: number, what: string): Promise<RunResult> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<RunResult>((resolve) => {
    timer = setTimeout(() => {
      child.kill();
      resolve({ status: null, stdout: "", error: `${what} took over ${ms / 1e3} s: killed` });
    }, ms);
  });
  return Promise.race([child.done, late]).finally(() => clearTimeout(timer));
}

function childCommand(which: Runtime, args: string[]): string[] {
  const path = `${root}/bench/wait.ts`;
  return which === "deno"
    ? [
      env("DENO", "deno"),
      "run",
      "--allow-ffi",
      "--allow-read",
      "--allow-write",
      "--allow-env",
      "--allow-sys",
      "--allow-net",
      path,
      ...args,
    ]
    : [env("BUN", "bun"), path, ...args];
}

const taskset = (cpus: string, command: string[]) => ["taskset", "-c", cpus, ...command];

/** Parses a child's stdout: the last line that is a JSON object. */
function parseChild<T>(stdout: string): T {
  const line = stdout.trim().split("\n").filter((l) => l.startsWith("{")).pop();
  if (line === undefined) throw new Error(`no JSON in the output:\n${stdout.slice(0, 500)}`);
  return JSON.parse(line) as T;
}

type Figure = Record<string, unknown> & { placement: Placement };
type Skipped = { placement?: Placement; skipped: string };

/** One cross-process ping-pong: the echo and the measuring child, each under its taskset. */
async function pair(
  which: Runtime,
  variant: Variant,
  placement: Placement,
  words: Int32Array,
  segment: string,
): Promise<Figure | Skipped> {
  words.fill(0);
  const sock = `/tmp/sb-wait-${process.pid}-${which}-${variant}-${placement}.sock`;
  rmSync(sock, { force: true });
  const childEnv = { SB_WAIT_SEG: segment, SB_WAIT_SOCK: sock };
  const cpus = PLACEMENTS[placement];
  const echo = start(taskset(cpus.echo, childCommand(which, ["echo", variant])), childEnv);
  const leader = start(taskset(cpus.leader, childCommand(which, ["leader", variant])), childEnv);
  try {
    // An echo side that fails first (it never became ready) ends the leader at once.
    const echoFailed = echo.done.then((r) => {
      if (r.error) leader.kill();
      return r;
    });
    const led = await within(leader, 90_000, `${which} ${variant} leader`);
    if (led.error) {
      echo.kill();
      const e = await echoFailed;
      checkInterrupted(led);
      checkInterrupted(e);
      return { placement, skipped: e.error ? `echo side: ${e.error}` : led.error };
    }
    const echoed = await within(echo, 10_000, `${which} ${variant} echo`);
    checkInterrupted(echoed);
    if (echoed.error) return { placement, skipped: `echo side: ${echoed.error}` };
    const result = parseChild<LeaderResult>(led.stdout);
    return {
      placement,
      taskset: `measuring: taskset -c ${cpus.leader}; echo: taskset -c ${cpus.echo}`,
      ...result.stats,
      timer_ns_per_sample: result.timer.now_ns,
      timer_resolution_ns: result.timer.resolution_ns,
    };
  } finally {
    rmSync(sock, { force: true });
  }
}

async function workers(which: Runtime, placement: Placement): Promise<Figure | Skipped> {
  const processCpus = placement === "same" ? "0" : "0,1";
  const thread = PLACEMENTS[placement];
  const child = start(taskset(processCpus, childCommand(which, ["workers"])), {
    SB_WAIT_THREAD_CPUS: `${thread.leader},${thread.echo}`,
  });
  const result = await within(child, 90_000, `${which} workers`);
  checkInterrupted(result);
  if (result.error) return { placement, skipped: result.error };
  const r = parseChild<WorkersResult>(result.stdout);
  return {
    placement,
    taskset: `process: taskset -c ${processCpus}; measuring thread: ${r.leader_thread}; ` +
      `echo thread: ${r.echo_thread}`,
    ...r.stats,
    timer_ns_per_sample: r.timer.now_ns,
    timer_resolution_ns: r.timer.resolution_ns,
  };
}

/** The native benchmark's executable (`NATIVE_WAIT_BIN`, or built by cargo). */
function nativeBinary(): { path?: string; error?: string } {
  return nativeBinaryOf("native_wait", "NATIVE_WAIT_BIN");
}

interface NativeResult {
  placement: string;
  round_trips: number;
  park: { median_ns: number; p99_ns: number };
  spin_then_park: { spins: number; median_ns: number; p99_ns: number };
  async_service: { median_ns: number; p99_ns: number };
  notify_no_waiter_ns: number;
  mutex_uncontended_ns: number;
}

function native(
  bin: string,
  placement: Placement,
): { figures: Record<string, Figure>; micro: Record<string, unknown> } | Skipped {
  const { n } = roundTrips();
  const result = run([bin, "--pin", placement, "--n", String(n)]);
  checkInterrupted(result);
  if (result.error) return { placement, skipped: result.error };
  const r = parseChild<NativeResult>(result.stdout);
  const figure = (f: { median_ns: number; p99_ns: number }): Figure => ({
    placement,
    taskset: `native --pin ${placement} (sched_setaffinity: CPU 0 / CPU ${
      placement === "same" ? 0 : 1
    })`,
    n: r.round_trips,
    median_us: round(f.median_ns / 1e3, 2),
    p99_us: round(f.p99_ns / 1e3, 2),
  });
  return {
    figures: {
      park: figure(r.park),
      spin: { ...figure(r.spin_then_park), spins: r.spin_then_park.spins },
      async: figure(r.async_service),
    },
    micro: {
      placement,
      taskset: `native --pin ${placement}: this thread on CPU 0`,
      notify_no_waiter_ns: r.notify_no_waiter_ns,
      mutex_lock_unlock_ns: r.mutex_uncontended_ns,
    },
  };
}

/**
 * Lists the ping-pong segment in `bench/out/.segments` (`name <id>` lines) while it exists, so
 * that `run.sh` removes it if this driver is killed first. Best effort.
 */
function leftover(action: "add" | "remove", name: string): void {
  const file = `${root}/bench/out/.segments`;
  try {
    if (action === "add") {
      mkdirSync(`${root}/bench/out`, { recursive: true });
      appendFileSync(file, `name ${name}\n`);
      return;
    }
    const rest = readFileSync(file, "utf8").split("\n").filter((l) => l && l !== `name ${name}`);
    if (rest.length) writeFileSync(file, rest.join("\n") + "\n");
    else rmSync(file, { force: true });
  } catch {
    // No permission to write, or no file: the driver's own cleanup still runs.
  }
}

/** Whether strace can trace a child here, else why not. */
function straceStatus(): string | null {
  if (env("SB_WAIT_STRACE") === "0") return "SB_WAIT_STRACE=0";
  const probe = run(["strace", "-f", "-o", "/dev/null", "true"]);
  if (probe.error) {
    return `strace is not usable (${probe.error}); install it (apt-get install strace) to count ` +
      "the system calls";
  }
  return null;
}

/**
 * Runs the `syscalls` child under `strace -f` and counts, between each pair of markers, the
 * system calls of the thread that ran the loop and those of every other thread of the process.
 */
function syscalls(which: Runtime): Record<string, unknown> {
  const log = `/tmp/sb-wait-strace-${process.pid}-${which}.txt`;
  try {
    const result = run(
      taskset("0", ["strace", "-f", "-qq", "-o", log, ...childCommand(which, ["syscalls"])]),
    );
    checkInterrupted(result);
    if (result.error) return { skipped: result.error };
    const child = parseChild<{ loops: Record<string, number> }>(result.stdout);
    const lines = readFileSync(log, "utf8").split("\n");
    const windows: Record<string, unknown> = {};
    for (const [name, loops] of Object.entries(child.loops)) {
      const begin = lines.findIndex((l) => l.includes(`${MARKER_DIR}/${name}-begin`));
      const end = lines.findIndex((l) => l.includes(`${MARKER_DIR}/${name}-end`));
      if (begin < 0 || end < begin) {
        windows[name] = { skipped: "markers not found in the strace output" };
        continue;
      }
      const tid = lines[begin].split(/\s+/)[0];
      const own: Record<string, number> = {};
      const others: Record<string, number> = {};
      for (const line of lines.slice(begin + 1, end)) {
        const m = line.match(/^(\d+)\s+([a-z_0-9]+)\(/);
        if (!m) continue; // "<... resumed>" halves, signals, exits
        const into = m[1] === tid ? own : others;
        into[m[2]] = (into[m[2]] ?? 0) + 1;
      }
      // The end marker's own call may show as an unfinished line just before it.
      const total = (o: Record<string, number>) => Object.values(o).reduce((a, b) => a + b, 0);
      windows[name] = {
        iterations: loops,
        loop_thread_syscalls: total(own),
        loop_thread_by_name: own,
        other_threads_syscalls: total(others),
        other_threads_by_name: others,
        per_iteration: loops ? round(total(own) / loops, 6) : null,
      };
    }
    return { placement: "taskset -c 0", method: "strace -f, markers", windows };
  } finally {
    rmSync(log, { force: true });
  }
}

/**
 * One figure from the rounds of a variant: the median over rounds of each statistic (min and max
 * over all), and each round's median and p99.
 */
function pool(placement: Placement, list: (Figure | Skipped)[]): Figure | Skipped {
  const ok = list.filter((f): f is Figure => !("skipped" in f));
  const failed = list.filter((f): f is Skipped => "skipped" in f);
  if (ok.length === 0) return { placement, skipped: failed[0]?.skipped ?? "no runs" };
  const mid = (k: string) => {
    const values = ok.map((f) => f[k]).filter((v): v is number => typeof v === "number");
    return values.length ? round(median(values), 2) : undefined;
  };
  const all = (k: string) => ok.map((f) => f[k] as number).filter((v) => v !== undefined);
  const out: Figure = {
    placement,
    taskset: ok[0].taskset,
    rounds: ok.length,
    n_per_round: ok[0].n,
    median_us: mid("median_us")!,
    p90_us: mid("p90_us"),
    p99_us: mid("p99_us")!,
    mean_us: mid("mean_us"),
    min_us: all("min_us").length ? Math.min(...all("min_us")) : undefined,
    max_us: all("max_us").length ? Math.max(...all("max_us")) : undefined,
    per_round: ok.map((f) => ({ median_us: f.median_us, p99_us: f.p99_us })),
  };
  for (const k of ["timer_ns_per_sample", "timer_resolution_ns", "spins"]) {
    if (k in ok[0]) out[k] = mid(k) ?? ok[0][k];
  }
  if (failed.length) out.failed_rounds = failed.map((f) => f.skipped);
  return out;
}

/** The 1, 5 and 15 minute load averages (other work on this machine skews every figure). */
function loadavg(): number[] | null {
  const result = run(["cat", "/proc/loadavg"]);
  return result.error ? null : result.stdout.trim().split(" ").slice(0, 3).map(Number);
}

const ratio = (a?: number, b?: number) =>
  a === undefined || b === undefined || b === 0 ? null : round(a / b, 3);

async function driver(): Promise<unknown> {
  const wall = performance.now();
  const loadStart = loadavg();
  const skipped: Record<string, string> = {};
  if (run(["taskset", "-c", "0", "true"]).error) {
    throw new Error("taskset does not work here (util-linux): every figure needs a placement");
  }
  const placements: Placement[] = ["same"];
  if (navigator.hardwareConcurrency >= 2) placements.push("split");
  else skipped.split = "only one CPU";
  const runtimes: Runtime[] = [];
  const versions: Record<string, string> = {};
  for (const which of ["deno", "bun"] as const) {
    const probe = run([env(which.toUpperCase(), which), "--version"]);
    if (probe.error) skipped[which] = probe.error;
    else {
      runtimes.push(which);
      versions[which] = probe.stdout.trim().split("\n")[0];
    }
  }
  const nativeBin = nativeBinary();
  if (nativeBin.error) skipped.native = nativeBin.error;

  const rounds = Math.max(1, envInt("SB_WAIT_ROUNDS", 3));
  const wanted = (name: string, value: string) => {
    const list = env(name)?.split(",");
    return list === undefined || list.includes(value);
  };
  // Every (placement, who, variant) of one round; rounds rotate the order, so that no variant
  // always runs first or last, and spread the machine's noise over every variant alike.
  type Job = { placement: Placement; who: Runtime | "native"; variant: Variant | "workers" };
  const jobs: Job[] = [];
  for (const placement of placements.filter((p) => wanted("SB_WAIT_PLACEMENTS", p))) {
    for (const who of runtimes) {
      for (const variant of ["park", "spin", "async", "socket", "workers"] as const) {
        if (wanted("SB_WAIT_VARIANTS", variant)) jobs.push({ placement, who, variant });
      }
    }
    if (wanted("SB_WAIT_VARIANTS", "native")) {
      jobs.push({ placement, who: "native", variant: "park" });
    }
  }
  const results = new Map<string, (Figure | Skipped)[]>();
  const add = (key: string, result: Figure | Skipped) => {
    if (!results.has(key)) results.set(key, []);
    results.get(key)!.push(result);
  };
  const micro: Record<string, unknown> = {};
  const nativeMicro: Record<string, Record<string, unknown>[]> = {};

  const segment = `/sb-wait-${process.pid}-${Math.random().toString(36).slice(2, 10)}`;
  const shm = SharedMemory.create({ name: segment }, 4096);
  leftover("add", segment);
  const words = new Int32Array(shm.buffer, 0, WORDS);
  try {
    for (let r = 0; r < rounds; r++) {
      const turn = [...jobs.slice(r % jobs.length), ...jobs.slice(0, r % jobs.length)];
      for (const { placement, who, variant } of turn) {
        progress(
          `wait round ${r + 1}/${rounds}: ${who} ${who === "native" ? "" : variant}, ${placement}`,
        );
        if (who === "native") {
          if (!nativeBin.path) {
            add(`${placement}.native.park`, { placement, skipped: nativeBin.error! });
            continue;
          }
          const result = native(nativeBin.path, placement);
          if ("skipped" in result) {
            add(`${placement}.native.park`, result);
            continue;
          }
          for (const [name, figure] of Object.entries(result.figures)) {
            add(`${placement}.native.${name}`, figure);
          }
          (nativeMicro[placement] ??= []).push(result.micro);
        } else if (variant === "workers") {
          add(`${placement}.${who}.worker_atomics`, await workers(who, placement));
        } else {
          const name = variant === "socket" ? "unix_socket" : variant;
          add(`${placement}.${who}.${name}`, await pair(who, variant, placement, words, segment));
        }
      }
    }
  } finally {
    shm.close();
    SharedMemory.unlink({ name: segment });
    leftover("remove", segment);
  }
  const latency: Record<string, Record<string, Record<string, unknown>>> = {};
  for (const [key, list] of results) {
    const [placement, who, name] = key.split(".");
    ((latency[placement] ??= {})[who] ??= {})[name] = pool(placement as Placement, list);
  }
  for (const [placement, list] of Object.entries(nativeMicro)) {
    const pick = (k: string) => round(median(list.map((m) => m[k] as number)), 1);
    micro[`native_${placement}`] = {
      ...list[0],
      notify_no_waiter_ns: pick("notify_no_waiter_ns"),
      mutex_lock_unlock_ns: pick("mutex_lock_unlock_ns"),
      rounds: list.length,
    };
  }

  for (const which of runtimes) {
    progress(`wait: ${which} mutex and notify costs (taskset -c 0)`);
    const result = run(taskset("0", childCommand(which, ["micro"])));
    checkInterrupted(result);
    micro[which] = result.error ? { skipped: result.error } : {
      placement: "taskset -c 0 (one process, one thread)",
      ...parseChild<Record<string, unknown>>(result.stdout),
    };
  }
  // Both runtimes idle at once, each in a fresh process: nothing else runs meanwhile.
  progress(`wait: CPU of an idle waitAsync (${runtimes.join(" and ")} at once, 4.3 s)`);
  const idle: Record<string, unknown> = {};
  await Promise.all(runtimes.map(async (which) => {
    const result = await within(start(childCommand(which, ["idle"])), 30_000, `${which} idle`);
    checkInterrupted(result);
    idle[which] = result.error ? { skipped: result.error } : {
      placement: "unpinned (idle)",
      ...parseChild<Record<string, unknown>>(result.stdout),
    };
  }));
  const sys: Record<string, unknown> = {};
  const noStrace = straceStatus();
  for (const which of runtimes) {
    if (noStrace) {
      sys[which] = { skipped: noStrace };
      continue;
    }
    progress(`wait: ${which} system calls under strace -f`);
    sys[which] = syscalls(which);
  }

  // Ratios of the same run and placement.
  type Stat = { median_us?: number; p99_us?: number };
  const get = (p: string, who: string, what: string): Stat =>
    ((latency[p]?.[who] as Record<string, Stat> | undefined)?.[what]) ?? {};
  const ratios: Record<string, unknown>[] = [];
  /** `num` over `den` (each `who.variant`) at placement `p`, for `runtime`'s rows. */
  const compare = (
    p: Placement,
    runtime: Runtime,
    num: string,
    den: string,
    goal: number | null,
  ) => {
    const [aWho, aWhat] = num.split(".");
    const [bWho, bWhat] = den.split(".");
    const a = get(p, aWho, aWhat);
    const b = get(p, bWho, bWhat);
    const value = ratio(a.median_us, b.median_us);
    ratios.push({
      placement: p,
      runtime,
      ratio: `${num} / ${den}`,
      median: value,
      p99: ratio(a.p99_us, b.p99_us),
      goal: goal === null ? null : `<= ${goal}`,
      goal_met: goal === null || value === null ? null : value <= goal,
    });
  };
  for (const p of placements) {
    for (const who of runtimes) {
      compare(p, who, `${who}.park`, `${who}.unix_socket`, GOAL_VS_SOCKET);
      compare(p, who, `${who}.park`, "native.park", GOAL_VS_NATIVE);
      // The floor of the first goal: the native futex against this runtime's socket.
      compare(p, who, "native.park", `${who}.unix_socket`, null);
      compare(p, who, `${who}.spin`, `${who}.unix_socket`, null);
      compare(p, who, `${who}.async`, `${who}.unix_socket`, null);
      compare(p, who, `${who}.spin`, "native.spin", null);
      compare(p, who, `${who}.async`, "native.async", null);
      compare(p, who, `${who}.park`, `${who}.worker_atomics`, null);
    }
  }
  const mutexGoals: Record<string, unknown> = {};
  for (const who of runtimes) {
    const m = micro[who] as Record<string, number> | undefined;
    if (!m || "skipped" in m) continue;
    mutexGoals[who] = {
      lock_unlock_ns: m.lock_unlock_ns,
      unlock_alone_ns: m.unlock_alone_ns,
      goal: `< ${GOAL_MUTEX_NS} ns`,
      goal_met: m.lock_unlock_ns < GOAL_MUTEX_NS && m.unlock_alone_ns < GOAL_MUTEX_NS,
    };
  }

  return {
    section: "wait",
    what:
      "Round trips between two processes of one runtime through one 4 KiB named segment (word 0 ping, word 1 pong): the measuring side stores and notifies, the echo side answers, each round trip timed with performance.now() (its cost, timer_ns_per_sample, is inside every sample; mean_us is the whole timed loop / n). Percentiles as in bench/native_wait.rs: sorted[floor(n*q)]. Every figure states its placement.",
    versions,
    placements: Object.fromEntries(placements.map((p) => [p, PLACEMENTS[p].text])),
    variants: {
      ...VARIANTS,
      "native.park / spin / async":
        "bench/native_wait.rs in the same run: park, spin_then_park (both sides spin) and async_service (the measuring side waits through the native async pool, the child parks)",
    },
    round_trips: {
      ...roundTrips(),
      rounds,
      note:
        "n timed round trips per variant and round after warmup untimed ones (native: 1,000 untimed); each figure is the median over rounds of each round's statistic",
    },
    load_average: { at_start: loadStart, at_end: loadavg() },
    latency,
    ratios,
    micro: {
      what:
        "One thread, taskset -c 0. lock_unlock: mutex.lock().unlock() on one uncontended Mutex; lock_alone / unlock_alone: lock 4096 distinct mutexes in one timed block, then unlock them all in another; notify_*: notify() on a word nobody waits on (all / count 1); atomics_notify_sab: Atomics.notify on a SharedArrayBuffer (in-process reference). Medians over blocks, ns per call",
      ...micro,
    },
    mutex_goal: mutexGoals,
    idle: {
      what:
        "process.cpuUsage() (user + system, every thread) of a fresh process: 1 s doing nothing, then one waitAsync nobody notifies (times out after 2 s), then 1 s doing nothing; wait_async_extra_cpu_ms_per_s = the waitAsync period minus the idle period after it (the one before still has startup work in it)",
      goal: "no measurable CPU while waiting",
      ...idle,
    },
    syscalls: {
      what:
        "The micro loops run under `strace -f` between marker calls (a stat of a path that cannot exist); per window, the system calls of the thread that ran the loop and of every other thread (GC, runtime pools). empty is a window with nothing in it.",
      ...sys,
    },
    parts_skipped: skipped,
    elapsed_s: round((performance.now() - wall) / 1e3, 1),
  };
}

const mode = process.argv[2] ?? "driver";
const variantArg = process.argv[3] as Variant;
if (mode === "leader") {
  console.log(JSON.stringify(await leaderChild(variantArg)));
} else if (mode === "echo") {
  await echoChild(variantArg);
} else if (mode === "workers") {
  console.log(JSON.stringify(await workersChild()));
} else if (mode === "idle") {
  console.log(JSON.stringify(await idleChild()));
} else if (mode === "micro") {
  console.log(JSON.stringify(microChild()));
} else if (mode === "syscalls") {
  console.log(JSON.stringify(syscallsChild()));
} else if (mode === "driver") {
  console.log(JSON.stringify(await driver(), null, 2));
} else {
  throw new Error(
    `unknown mode ${mode}: use nothing (driver) or leader/echo/workers/micro/syscalls`,
  );
}
