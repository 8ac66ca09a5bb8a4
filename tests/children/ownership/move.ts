/**
 * Moves a segment's buffer by one route, closes and drops the segment, collects garbage, then
 * reads and writes the moved buffer: the process must survive (the parent checks that it exits
 * with 0, not a signal).
 *
 * Usage: `ownership/move.ts <route> <name>`. The parent created `<name>` (64 bytes) with byte 3 = 0x33.
 * Prints `result {"outcome": "moved", "read": <byte 3 read after close>}` once it has written
 * byte 1 = 0x77 through the moved buffer, `{"outcome": "refused", "error": ...}` if the runtime
 * refused the move, or `{"outcome": "copied"}` if the "moved" buffer is not the segment.
 *
 * @module
 */

// Captured before the library loads, as code that ran earlier would have it.
const capturedTransfer = ArrayBuffer.prototype.transfer;

const { args, lib, report, runtime, startWorker } = await import("../lib.ts");
const { SharedMemory } = lib;
const [route, name] = args;

async function collect(): Promise<void> {
  for (let i = 0; i < 5; i++) {
    if (runtime === "bun") {
      (globalThis as unknown as { Bun: { gc(force: boolean): void } }).Bun.gc(true);
    } else {
      (globalThis as unknown as { gc(): void }).gc(); // Deno and Node run with --expose-gc
    }
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

/** Reads and writes the moved buffer, wherever it is. */
interface Moved {
  read(i: number): Promise<number>;
  write(i: number, value: number): Promise<void>;
  stop?(): void;
}

function local(buffer: ArrayBuffer): Moved {
  return {
    read: (i) => Promise.resolve(new Uint8Array(buffer)[i]),
    write(i, value) {
      new Uint8Array(buffer)[i] = value;
      return Promise.resolve();
    },
  };
}

async function streamed(stream: ReadableStream<Uint8Array>, view?: Uint8Array): Promise<Moved> {
  if (view) {
    const reader = stream.getReader({ mode: "byob" });
    const { value } = await reader.read(view);
    return local(value!.buffer as ArrayBuffer);
  }
  const { value } = await stream.getReader().read();
  return local(value!.buffer as ArrayBuffer);
}

async function move(buffer: ArrayBuffer): Promise<Moved> {
  switch (route) {
    case "worker": {
      const w = await startWorker("ownership/move_worker.ts");
      try {
        await w.ask({ buffer }, [buffer]);
      } catch (err) {
        w.stop(); // refused: nothing else would end the Worker
        throw err;
      }
      return {
        read: (i) => w.ask({ read: i }),
        write: async (i, value) => void await w.ask({ write: i, value }),
        stop: w.stop,
      };
    }
    case "port": {
      const { port1, port2 } = new MessageChannel();
      const received = new Promise<ArrayBuffer>((resolve) => {
        port2.onmessage = (e) => resolve(e.data);
      });
      try {
        port1.postMessage(buffer, [buffer]);
        return local(await received);
      } finally {
        port1.close();
        port2.close();
      }
    }
    case "structuredClone":
      return local(structuredClone(buffer, { transfer: [buffer] }));
    case "structuredClone-set":
      return local(
        structuredClone(buffer, { transfer: new Set([buffer]) as unknown as Transferable[] }),
      );
    case "transfer":
      return local(buffer.transfer());
    case "captured-transfer":
      return local(capturedTransfer.call(buffer));
    case "byob-read": {
      const stream = new ReadableStream({
        type: "bytes",
        pull(controller) {
          const request = controller.byobRequest!;
          (request.view as Uint8Array)[0] = 0x11;
          request.respond(1);
        },
      });
      return await streamed(stream, new Uint8Array(buffer));
    }
    case "enqueue": {
      const stream = new ReadableStream({
        type: "bytes",
        start(controller) {
          controller.enqueue(new Uint8Array(buffer));
          controller.close();
        },
      });
      return await streamed(stream);
    }
    case "vm": {
      const vm = await import("node:vm");
      return local(vm.runInNewContext("ArrayBuffer.prototype.transfer.call(b)", { b: buffer }));
    }
  }
  throw new Error(`unknown route ${route}`);
}

/** Moves, closes, drops, collects, then uses the moved buffer; returns what to report. */
async function run(): Promise<Record<string, unknown>> {
  let shm: ReturnType<typeof SharedMemory.open> | undefined = SharedMemory.open({ name });
  const original = shm.buffer;
  let moved: Moved;
  try {
    moved = await move(original);
  } catch (err) {
    shm.close();
    return { outcome: "refused", error: `${(err as Error).name}: ${(err as Error).message}` };
  }
  try {
    // Is it still the segment? A write through it must show in a fresh mapping.
    await moved.write(2, 0x42);
    const check = SharedMemory.open({ name });
    const shared = new Uint8Array(check.buffer)[2] === 0x42;
    check.close();
    if (!shared) return { outcome: "copied" };
    shm.close();
    // Node 20 has no `detached`; there a detached buffer has length 0.
    const detached = original.detached ?? original.byteLength === 0;
    shm = undefined;
    await collect();
    const read = await moved.read(3);
    await moved.write(1, 0x77);
    return { outcome: "moved", read, detached };
  } finally {
    shm?.close();
    moved.stop?.();
  }
}

report(await run());
