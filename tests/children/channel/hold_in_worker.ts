/**
 * A Worker that takes an end of the channel named in the message it is sent and never closes
 * it: the sender (`role: "sender"`) sends `[1, 2, 3]` first; the receiver (`role: "receiver"`)
 * receives one message. Then it replies `{ held: role }` and keeps its event loop busy until it
 * is terminated; `{ error }` if anything failed. With `role: "churn"` (a channel of many
 * senders) it replies at once, then attaches and detaches senders until it is terminated. With
 * `role: "loses-place"` it takes the receiver, replies `{ held }`, tries a receive every 5 ms until
 * one fails (its place given to another), closes the receiver and replies `{ closed: <code> }`.
 *
 * Message in: `{ name, role, entry }`. A web Worker in Deno and Bun; a `node:worker_threads` Worker
 * in Node.js. With `entry: "node"` a web Worker imports the library through its Node.js entry
 * (`node.ts`, as a program that imports it by path does) instead of its runtime's own.
 *
 * @module
 */

const scope = globalThis as unknown as {
  onmessage: (e: MessageEvent) => void;
  postMessage: (message: unknown) => void;
};
const node = !("Deno" in globalThis) && !("Bun" in globalThis);
/** What the Worker holds until it is terminated (kept reachable, never closed). */
const kept: unknown[] = [];

async function run(
  { name, role, entry }: { name: string; role: string; entry?: "node" },
  reply: (message: unknown) => void,
): Promise<void> {
  try {
    const lib: typeof import("../../../mod.ts") = entry === "node"
      ? await import("../../../node.ts")
      : (await import("../lib.ts")).lib;
    const channel = lib.Channel.open({ name });
    kept.push(channel);
    if (role === "churn") {
      // Attaches and detaches a sender over and over, a few hundred times per turn of the event
      // loop (where a terminate() reaches a Worker in every runtime), from its first reply on.
      reply({ held: role });
      const turn = () => {
        for (let i = 0; i < 200; i++) channel.sender().detach();
        setTimeout(turn, 0);
      };
      return turn();
    }
    if (role === "loses-place") {
      const rx = channel.receiver();
      kept.push(rx);
      reply({ held: role });
      const look = () => {
        try {
          rx.tryRecv();
          setTimeout(look, 5);
        } catch (err) {
          rx.close();
          reply({ closed: (err as { code?: string }).code });
        }
      };
      return look();
    }
    if (role === "sender") {
      const tx = channel.sender();
      kept.push(tx);
      tx.send(new Uint8Array([1, 2, 3]));
    } else {
      const rx = channel.receiver();
      kept.push(rx);
      rx.recv(30_000);
    }
    reply({ held: role });
    setInterval(() => kept.length, 10);
  } catch (err) {
    reply({ error: String(err) });
  }
}

if (node) {
  // A `node:worker_threads` Worker: Node.js has no web Worker.
  const port = (await import("node:worker_threads")).parentPort!;
  port.on("message", (m) => run(m, (r) => port.postMessage(r)));
} else {
  // Set before any await: Bun drops messages that arrive while a worker's module is still
  // evaluating a top-level await.
  scope.onmessage = (e: MessageEvent) => run(e.data, (r) => scope.postMessage(r));
}
