/**
 * A standalone pair of processes over one channel, for the "standalone pair" figures of
 * `bench/README.md` (_Where each nanosecond goes_): this process receives, a child of the same
 * runtime sends, each message stamped and checked as in the bench's pairs (`streams.ts`). Pin this
 * process yourself; the child goes to `--peer-cpu`, or shares this process's CPUs.
 *
 * ```text
 * taskset -c 0 deno run -A bench/pair.ts [--size 4096] [--mode plain|timeout|batch|zc]
 *     [--capacity 262144] [--producers one|many] [--array uint8|buffer] [--peer-cpu 1]
 *     [--warmup-ms 1500] [--measure-ms 1000]
 * taskset -c 0 bun bench/pair.ts ...        taskset -c 0 node dist/bench/pair.js ...
 * ```
 *
 * Prints one JSON line: messages/s counted from `--warmup-ms` after the first message for
 * `--measure-ms`, the CPU ns and voluntary context switches per message of each side (`rx_`: this
 * process, `tx_`: the sender; every thread, from the scheduler's accounting) over that time, and
 * the ring's fill in KiB, read every 65,536 messages while counting (full: the sender waits for
 * room; empty: the receiver waits for each message). `--array buffer` sends and receives into
 * Node.js `Buffer`s (a subclass of `Uint8Array`, as Node's own APIs hand out) instead of plain
 * `Uint8Array`s.
 *
 * @module
 */

import { Buffer } from "node:buffer";
import { spawn } from "node:child_process";
import process from "node:process";
import * as L from "../ts/channel/layout.ts";
import { lib, pinned, runtime, RUNTIMES, usage } from "./harness.ts";
import { check, stamp } from "./streams.ts";

const MODES = ["plain", "timeout", "batch", "zc"] as const;
type Mode = typeof MODES[number];
const ARRAYS = ["uint8", "buffer"] as const;
type ArrayKind = typeof ARRAYS[number];

/** `--name value` options, with their defaults. */
function options(argv: string[]) {
  const got = new Map<string, string>();
  for (let i = 0; i < argv.length; i += 2) got.set(argv[i].replace(/^--/, ""), argv[i + 1]);
  const num = (name: string, fallback: number) => Number(got.get(name) ?? fallback);
  const mode = (got.get("mode") ?? "plain") as Mode;
  if (!MODES.includes(mode)) throw new Error(`--mode must be one of ${MODES.join(", ")}`);
  const producers = got.get("producers") ?? "one";
  if (producers !== "one" && producers !== "many") {
    throw new Error("--producers must be one or many");
  }
  const array = (got.get("array") ?? "uint8") as ArrayKind;
  if (!ARRAYS.includes(array)) throw new Error(`--array must be one of ${ARRAYS.join(", ")}`);
  return {
    role: got.get("role") ?? "receive",
    name: got.get("name") ?? `/sbbench-pair-${process.pid}`,
    size: num("size", 4096),
    mode,
    capacity: num("capacity", 256 * 1024),
    producers: producers as "one" | "many",
    array,
    peerCpu: got.get("peer-cpu"),
    warmupMs: num("warmup-ms", 1500),
    measureMs: num("measure-ms", 1000),
  };
}
type Options = ReturnType<typeof options>;

/** A zeroed array of `size` bytes of the kind `--array` names. */
const bytes = (o: Options): Uint8Array =>
  o.array === "buffer" ? Buffer.alloc(o.size) : new Uint8Array(o.size);

/** The sending child: sends for the warm-up and the measured time (and a little more), closes. */
function send(o: Options): void {
  using channel = lib.Channel.open({ name: o.name }, { timeoutMs: 10_000 });
  const tx = channel.sender();
  const batch = Array.from({ length: 256 }, () => bytes(o));
  const stopAt = performance.now() + o.warmupMs + o.measureMs + 500;
  let seq = 0;
  while (performance.now() < stopAt) {
    if (o.mode === "batch") {
      for (const m of batch) stamp(m, seq++);
      tx.sendMany(batch);
    } else if (o.mode === "zc") {
      for (const end = seq + 256; seq < end; seq++) {
        stamp(tx.reserve(o.size), seq);
        tx.commit();
      }
    } else {
      for (const end = seq + 256; seq < end; seq++) {
        stamp(batch[0], seq);
        tx.send(batch[0]);
      }
    }
  }
  tx.close();
}

/** The measuring side: makes the channel, starts the child, receives and counts. */
async function receive(o: Options): Promise<void> {
  using channel = lib.Channel.create({ name: o.name }, {
    capacity: o.capacity,
    producers: o.producers,
    replace: true,
  });
  using header = lib.SharedMemory.open({ name: o.name });
  const words = new Int32Array(header.buffer, 0, L.HEADER_SIZE >> 2);
  const rx = channel.receiver();
  const args = Object.entries({ ...o, role: "send", "peer-cpu": undefined })
    .filter(([, v]) => v !== undefined)
    .flatMap(([k, v]) => [`--${k.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}`, String(v)]);
  const command = [process.execPath, ...RUNTIMES[runtime].command("pair.ts", args).slice(1)];
  const [exe, ...rest] = o.peerCpu === undefined ? command : pinned(o.peerCpu, command);
  const child = spawn(exe, rest, { stdio: "inherit" });
  const exited = new Promise((resolve) => child.on("exit", resolve));

  const target = bytes(o);
  const fill: number[] = [];
  // CPU time and voluntary switches of each side from the scheduler's accounting (every thread:
  // the sender's runtime works on other threads too), at the start of the measured time.
  const sides = () => [usage(process.pid), usage(child.pid!)];
  let [seq, first, from, counted, start] = [0, 0, 0, -1, sides()];
  let result: Record<string, unknown> | undefined;
  const take = (m: Uint8Array) => {
    check("pair", m, seq, o.size);
    if (seq++ === 0) first = performance.now();
    if ((seq & 1023) !== 0 || result !== undefined) return;
    const now = performance.now() - first;
    if (counted < 0 && now >= o.warmupMs) [from, counted, start] = [now, seq, sides()];
    else if (counted >= 0 && now >= from + o.measureMs) {
      const [rx, tx] = sides();
      const n = seq - counted;
      const per = (value: number, digits = 0) => Number((value / n).toFixed(digits));
      result = {
        runtime,
        mode: o.mode,
        array: o.array,
        producers: o.producers,
        size: o.size,
        msgs_per_s: Math.round(n / ((now - from) / 1000)),
        rx_cpu_ns_per_msg: per(rx.cpu - start[0].cpu),
        tx_cpu_ns_per_msg: per(tx.cpu - start[1].cpu),
        rx_vcs_per_msg: per(rx.vcs - start[0].vcs, 5),
        tx_vcs_per_msg: per(tx.vcs - start[1].vcs, 5),
        fill_kib: fill.map((bytes) => Math.round(bytes / 1024)),
      };
    } else if (counted >= 0 && (seq & 65535) === 0) {
      const used = Atomics.load(words, L.OFF_TAIL >> 2) - Atomics.load(words, L.OFF_HEAD >> 2);
      fill.push(used & L.POS_MASK);
    }
  };
  const timeout = o.mode === "timeout" ? 20_000 : undefined;
  if (o.mode === "batch") { while (rx.recvMany(take) !== null); }
  else if (o.mode === "zc") { for (let m = rx.recvView(); m !== null; m = rx.recvView()) take(m); }
  else while (rx.recvInto(target, timeout) !== null) take(target);
  await exited;
  channel.unlink();
  if (result === undefined) throw new Error("the stream ended before the measured time did");
  console.log(JSON.stringify(result));
}

const o = options(process.argv.slice(2));
if (o.role === "send") send(o);
else await receive(o);
