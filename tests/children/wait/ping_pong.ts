import { args, check, lib, pid, report, say, WAIT_MS } from "../lib.ts";
/**
 * One side of a ping-pong through `wait` / `notify` on a turn counter (`Int32[0]` of a named
 * segment). Side `<role>` (0 or 1) moves when the counter's parity equals its role: it bumps the
 * counter with a compare-and-swap (which fails only if the other side moved out of turn) and
 * notifies. After `<rounds>` round trips the counter is `2 * rounds`.
 *
 * `<mode>` `sync` waits with `wait`, `adaptive` with `wait(.., { spin: "adaptive" })`, `async`
 * with `waitAsync`. A 2 ms `setInterval` ticks throughout; it counts all ticks and those that
 * fell while a `waitAsync` was pending, and publishes the latter in `Int32[1]` (with a notify).
 * With `<pauseEvery>` > 0, before every `<pauseEvery>`-th turn the side waits until `Int32[1]`
 * moves: until the other side's timer has ticked while that side waited for its turn, which only
 * happens if its event loop runs during a `waitAsync`. (Such a pause never ends against a side
 * whose waits block its event loop: that side times out.)
 *
 * Prints `ready <pid>`, then `result {turns, final, ticks, ticksWhileWaiting, elapsedMs, ...}`.
 * Any wait that times out (`WAIT_MS`: a lost wake-up) or an out-of-turn move exits non-zero.
 *
 * Usage: `wait/ping_pong.ts <name> <role> <rounds> <sync|adaptive|async> [pauseEvery]`
 *
 * @module
 */

const [name, roleArg, roundsArg, mode, pauseEveryArg = "0"] = args;
const role = Number(roleArg);
const total = 2 * Number(roundsArg);
const pauseEvery = Number(pauseEveryArg);
check(role === 0 || role === 1, `bad role ${roleArg}`);
check(mode === "sync" || mode === "adaptive" || mode === "async", `bad mode ${mode}`);
const options = mode === "adaptive" ? { spin: "adaptive" as const } : undefined;

const shm = lib.SharedMemory.open({ name });
const turn = new Int32Array(shm.buffer, 0, 1);
const published = new Int32Array(shm.buffer, 4, 1);

let ticks = 0;
let ticksWhileWaiting = 0;
let waiting = false;
const timer = setInterval(() => {
  ticks++;
  if (!waiting) return;
  ticksWhileWaiting++;
  Atomics.add(published, 0, 1);
  lib.notify(published, 0);
}, 2);

say(`ready ${pid}`);
const start = performance.now();
let turns = 0;
let woken = 0;
let notEqual = 0;
let paused = 0;
for (;;) {
  let v = Atomics.load(turn, 0);
  while (v < total && (v & 1) !== role) {
    let r: ReturnType<typeof lib.wait>;
    if (mode !== "async") {
      r = lib.wait(turn, 0, v, WAIT_MS, options);
    } else {
      waiting = true;
      r = await lib.waitAsync(turn, 0, v, WAIT_MS);
      waiting = false;
    }
    check(r !== "timed-out", `side ${role}: no wake-up for ${WAIT_MS} ms at counter ${v}`);
    if (r === "ok") woken++;
    else notEqual++;
    v = Atomics.load(turn, 0);
  }
  if (v >= total) break;
  if (pauseEvery > 0 && turns % pauseEvery === pauseEvery - 1) {
    const seen = Atomics.load(published, 0);
    while (Atomics.load(published, 0) === seen) {
      check(lib.wait(published, 0, seen, WAIT_MS) !== "timed-out", `side ${role}: no tick`);
    }
    paused++;
  }
  const seen = Atomics.compareExchange(turn, 0, v, v + 1);
  check(seen === v, `side ${role}: the counter moved from ${v} to ${seen} out of turn`);
  lib.notify(turn, 0);
  turns++;
}
const elapsedMs = performance.now() - start;
clearInterval(timer);
report({
  role,
  mode,
  turns,
  final: Atomics.load(turn, 0),
  woken,
  notEqual,
  paused,
  ticks,
  ticksWhileWaiting,
  elapsedMs,
});
shm.close();
