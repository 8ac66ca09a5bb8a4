/**
 * A Worker that takes the receiver of the channel named in the message it is sent, replies
 * `{ attached: true }`, waits until a sender of the channel parks (the header's `tx_waiting`
 * becomes 1), then receives until a message longer than 64 bytes arrives and replies
 * `{ received, last }` (how many messages, and the last one's length), or `{ error }`.
 *
 * Message in: `{ name }`. A web Worker in Deno and Bun; a `node:worker_threads` Worker in Node.js.
 *
 * @module
 */

import * as layout from "../../../ts/channel/layout.ts";

const scope = globalThis as unknown as {
  onmessage: (e: MessageEvent) => void;
  postMessage: (message: unknown) => void;
};
const node = !("Deno" in globalThis) && !("Bun" in globalThis);

async function run(name: string, reply: (message: unknown) => void): Promise<void> {
  try {
    const { lib } = await import("../lib.ts");
    using channel = lib.Channel.open({ name });
    using shm = lib.SharedMemory.open({ name });
    const rx = channel.receiver();
    reply({ attached: true });
    const i32 = new Int32Array(shm.buffer, 0, layout.HEADER_SIZE >> 2);
    // The sender of the other thread parks on a full ring: a condition, bounded by a count.
    let polls = 0;
    while (Atomics.load(i32, layout.OFF_TX_WAITING >> 2) !== 1) {
      if (++polls > 2e9) throw new Error("the sender never parked");
    }
    let received = 0;
    for (;;) {
      const message = rx.recv(60_000)!;
      received++;
      if (message.length > 64) return reply({ received, last: message.length });
    }
  } catch (err) {
    reply({ error: String(err) });
  }
}

if (node) {
  // A `node:worker_threads` Worker: Node.js has no web Worker.
  const port = (await import("node:worker_threads")).parentPort!;
  port.on("message", (m) => run(m.name, (r) => port.postMessage(r)));
} else {
  // Set before any await: Bun drops messages that arrive while a worker's module is still
  // evaluating a top-level await.
  scope.onmessage = (e: MessageEvent) => run(e.data.name, (r) => scope.postMessage(r));
}
