// The program each runtime runs in the install test, importing the package by its name.
//   peer.mjs host BASE COUNT   creates BASE (a segment with a counter) and BASE-ch (a channel
//                              for many senders), prints "ready", receives COUNT messages, checks
//                              that the counter is COUNT, removes both and prints the senders.
//   peer.mjs send BASE WHO     adds 1 to the counter and sends WHO with its runtime and version.
//   peer.mjs send-worker BASE WHO   (Bun) the same after a Worker (peer-worker.mjs) opened, used
//                              and closed the segment while this thread held it, and a close
//                              ended a waitAsync on it.
import { Channel, loadLibrary, SharedMemory, waitAsync } from "shared-buffer-ipc";

const [mode, base, arg] = globalThis.Deno?.args ?? process.argv.slice(2);
const runtime = globalThis.Bun
  ? `bun ${Bun.version}`
  : globalThis.Deno
  ? `deno ${Deno.version.deno}`
  : `node ${process.versions.node}`;
const segment = { name: base };
const channel = { name: `${base}-ch` };

if (mode === "host") {
  const count = Number(arg);
  const shm = SharedMemory.create(segment, 64);
  const ch = Channel.create(channel, { capacity: 4096, producers: "many" });
  try {
    const rx = ch.receiver();
    console.log(`ready ${runtime} ${loadLibrary()}`);
    const seen = [];
    for (let i = 0; i < count; i++) {
      const text = rx.recvText(120_000);
      if (text === null) throw new Error(`timed out after ${seen.length} of ${count} messages`);
      seen.push(text);
    }
    const total = Atomics.load(new Int32Array(shm.buffer), 0);
    if (total !== count) throw new Error(`counter is ${total}, expected ${count}`);
    for (const text of seen.sort()) console.log(`received: ${text}`);
    console.log(`counter: ${total}`);
  } finally {
    ch.unlink();
    ch.close();
    shm.unlink();
    shm.close();
  }
} else if (mode === "send") {
  const shm = SharedMemory.open(segment);
  Atomics.add(new Int32Array(shm.buffer), 0, 1);
  const ch = Channel.open(channel);
  const tx = ch.sender();
  tx.send(new TextEncoder().encode(`${arg}: ${runtime}, library ${loadLibrary()}`));
  tx.detach(); // one of many senders: leave without ending the stream
  ch.close();
  shm.close();
} else if (mode === "send-worker") {
  // No top-level await: the install test also bundles this file as CommonJS.
  sendAfterWorker().catch((err) => {
    console.error(err);
    process.exitCode = 1;
  });
} else {
  throw new Error(`usage: peer.mjs host BASE COUNT | send BASE WHO | send-worker BASE WHO`);
}

/**
 * Bun only: a Worker opens, uses and closes the segment while this thread holds it, then this
 * thread sends as `send` does. A compiled program loads the library twice (its FFI and its
 * Node-API module); each handle must be closed in the copy that opened it.
 */
async function sendAfterWorker() {
  const shm = SharedMemory.open(segment);
  const words = new Int32Array(shm.buffer);
  const worker = new Worker(new URL("./peer-worker.mjs", import.meta.url).href);
  await new Promise((resolve, reject) => {
    worker.onmessage = resolve;
    worker.onerror = (event) => reject(new Error(`the Worker failed: ${event.message}`));
    worker.postMessage(base);
  });
  worker.terminate();
  Bun.gc(true);
  if (Atomics.load(words, 1) < 1) throw new Error("the Worker's add is not in the segment");
  // A close ends the async waits on its segment (EBADF), which its library copy must know of.
  const other = SharedMemory.open(segment);
  const waiting = waitAsync(new Int32Array(other.buffer), 2, 0, 20_000);
  const started = Date.now();
  other.close();
  const outcome = await waiting.then((result) => result, (err) => err.code ?? String(err));
  if (outcome !== "EBADF") {
    throw new Error(`close() did not end a waitAsync: ${outcome} after ${Date.now() - started} ms`);
  }
  Atomics.add(words, 0, 1);
  const ch = Channel.open(channel);
  const tx = ch.sender();
  tx.send(new TextEncoder().encode(`${arg}: ${runtime}, library ${loadLibrary()}`));
  tx.detach();
  ch.close();
  shm.close();
}
