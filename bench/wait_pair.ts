/**
 * A standalone pair of processes ping-ponging through `wait`/`notify` on one named segment, for
 * the "standalone pair" figures of `bench/README.md` (_Node's adaptive `wait` on one core,
 * counted_): this process stores and notifies the ping, a child of the same runtime answers with
 * the pong, both waiting as `--spin` says (`park`: at once; `adaptive`: `{ spin: "adaptive" }`),
 * the loops of the bench's wait pairs (`streams.ts`). Pin this process yourself; the child goes to
 * `--peer-cpu`, or shares this process's CPUs.
 *
 * ```text
 * taskset -c 0 node dist/bench/wait_pair.js [--spin park|adaptive] [--trips 300000]
 *     [--warmup-ms 1000] [--peer-cpu 1]
 * taskset -c 0 deno run -A bench/wait_pair.ts ...      taskset -c 0 bun bench/wait_pair.ts ...
 * ```
 *
 * Prints one JSON line: the mean µs per round trip over `--trips` round trips after `--warmup-ms`
 * untimed, and the CPU µs and voluntary context switches per round trip of both processes (every
 * thread, from the scheduler's accounting) over the same time.
 *
 * @module
 */

import { spawn } from "node:child_process";
import process from "node:process";
import { lib, pinned, runtime, RUNTIMES, usage } from "./harness.ts";

const SPINS = ["park", "adaptive"] as const;
// Words of the segment: the ping, the pong; STOP in PING ends the child.
const [PING, PONG, STOP] = [0, 1, -1];

/** `--name value` options, with their defaults. */
function options(argv: string[]) {
  const got = new Map<string, string>();
  for (let i = 0; i < argv.length; i += 2) got.set(argv[i].replace(/^--/, ""), argv[i + 1]);
  const spin = got.get("spin") ?? "park";
  if (!(SPINS as readonly string[]).includes(spin)) {
    throw new Error(`--spin must be one of ${SPINS.join(", ")}`);
  }
  return {
    role: got.get("role") ?? "measure",
    name: got.get("name") ?? `/sbbench-wait-pair-${process.pid}`,
    spin: spin as typeof SPINS[number],
    trips: Number(got.get("trips") ?? 300_000),
    warmupMs: Number(got.get("warmup-ms") ?? 1000),
    peerCpu: got.get("peer-cpu"),
  };
}
type Options = ReturnType<typeof options>;

const waitOptions = (
  o: Options,
) => (o.spin === "adaptive" ? { spin: "adaptive" as const } : undefined);

/** The child: answers every ping with the same number in the pong until STOP. */
function answer(o: Options): void {
  using shm = lib.SharedMemory.open({ name: o.name });
  const v = new Int32Array(shm.buffer, 0, 2);
  const wait = waitOptions(o);
  for (let last = 0, now; (now = Atomics.load(v, PING)) !== STOP;) {
    if (now === last) lib.wait(v, PING, last, undefined, wait);
    else (last = now), Atomics.store(v, PONG, now), lib.notify(v, PONG, 1);
  }
}

/** The measuring side: makes the segment, starts the child, ping-pongs and counts. */
async function measure(o: Options): Promise<void> {
  using shm = lib.SharedMemory.create({ name: o.name }, 4096);
  const v = new Int32Array(shm.buffer, 0, 2);
  const wait = waitOptions(o);
  const command = [
    process.execPath,
    ...RUNTIMES[runtime].command("wait_pair.ts", [
      "--role",
      "answer",
      "--name",
      o.name,
      "--spin",
      o.spin,
    ]).slice(1),
  ];
  const [exe, ...rest] = o.peerCpu === undefined ? command : pinned(o.peerCpu, command);
  const child = spawn(exe, rest, { stdio: "inherit" });
  const exited = new Promise((resolve) => child.on("exit", resolve));
  let i = 0;
  const trip = () => {
    i++;
    Atomics.store(v, PING, i);
    lib.notify(v, PING, 1);
    for (let now = Atomics.load(v, PONG); now !== i; now = Atomics.load(v, PONG)) {
      lib.wait(v, PONG, now, undefined, wait);
    }
  };
  try {
    for (const end = performance.now() + o.warmupMs; performance.now() < end;) trip();
    const sides = () => usage(process.pid, child.pid!);
    const [start, began] = [sides(), performance.now()];
    for (let n = 0; n < o.trips; n++) trip();
    const [used, took] = [sides(), performance.now() - began];
    const per = (value: number) => Number((value / o.trips).toFixed(3));
    console.log(JSON.stringify({
      runtime,
      spin: o.spin,
      trips: o.trips,
      us_per_trip: per(took * 1000),
      cpu_us_per_trip: per((used.cpu - start.cpu) / 1000),
      vcs_per_trip: per(used.vcs - start.vcs),
    }));
  } finally {
    Atomics.store(v, PING, STOP);
    lib.notify(v, PING);
    await exited;
    lib.SharedMemory.unlink({ name: o.name });
  }
}

const o = options(process.argv.slice(2));
if (o.role === "answer") answer(o);
else await measure(o);
