/**
 * A Worker of the `wait` scenario's in-process references: `Atomics.wait`/`notify` on a
 * SharedArrayBuffer, as the leader (timing each round trip) or the echo; and a message sent with
 * `postMessage` that is a number, which it posts straight back.
 *
 * @module
 */

const [PING, PONG, READY] = [0, 1, 2];
const STOP = -1;

const scope = globalThis as unknown as {
  onmessage: ((e: MessageEvent) => void) | null;
  postMessage(message: unknown): void;
};
// Node.js has no web Worker: there this runs in a `node:worker_threads` Worker.
const port = "Deno" in globalThis || "Bun" in globalThis
  ? undefined
  : (await import("node:worker_threads")).parentPort!;
const reply = (message: unknown) => port ? port.postMessage(message) : scope.postMessage(message);

// deno-lint-ignore no-explicit-any
function run({ role, sab, n, warmup }: any): void {
  const v = new Int32Array(sab);
  if (role === "echo") {
    Atomics.store(v, READY, 1);
    Atomics.notify(v, READY);
    for (let last = 0;;) {
      const now = Atomics.load(v, PING);
      if (now === last) {
        Atomics.wait(v, PING, last);
        continue;
      }
      if (now === STOP) break;
      last = now;
      Atomics.store(v, PONG, now);
      Atomics.notify(v, PONG, 1);
    }
    return reply(null);
  }
  while (Atomics.load(v, READY) === 0) Atomics.wait(v, READY, 0, 10_000);
  const elapsed_ms: number[] = [];
  for (let i = 1; i <= warmup + n; i++) {
    const t0 = performance.now();
    Atomics.store(v, PING, i);
    Atomics.notify(v, PING, 1);
    for (let now = Atomics.load(v, PONG); now !== i; now = Atomics.load(v, PONG)) {
      Atomics.wait(v, PONG, now);
    }
    if (i > warmup) elapsed_ms.push(performance.now() - t0);
  }
  Atomics.store(v, PING, STOP);
  Atomics.notify(v, PING);
  reply({ elapsed_ms });
}

// deno-lint-ignore no-explicit-any
const answer = (data: any) => typeof data === "number" ? reply(data) : run(data);
if (port) port.on("message", answer);
else scope.onmessage = (e) => answer(e.data);
