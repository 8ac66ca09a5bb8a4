/**
 * Starts an asynchronous read of the runtime's own (`Deno.FsFile.read` in Deno, `fs.read` in
 * Bun and Node.js, which run it on a thread of their own) from the FIFO `<fifo>` into a view of a
 * new 1 MiB segment `<name>`, closes the segment while the read waits, and creates eight more of
 * the same size (which the OS may map at the addresses the first had); prints `closed`. Whoever
 * started it then writes 8 bytes into the FIFO. Prints `read <n>`, `others clean` if none of the
 * eight got them (else `others written`), and `old <text>`: the first 8 bytes of the first
 * segment, seen through a second `SharedMemory` of it that stayed open.
 *
 * Usage: `segment/read_after_close.ts <fifo> <name>`
 *
 * @module
 */

import fs from "node:fs";
import { args, lib, runtime, say } from "../lib.ts";

const [fifo, name] = args;
const SIZE = 1 << 20;
const shm = lib.SharedMemory.create({ name }, SIZE);
const kept = lib.SharedMemory.open({ name });
const into = new Uint8Array(shm.buffer, 0, 16);
let read: Promise<number | null>;
if (runtime === "deno") {
  // The writer holds the FIFO open already: the open does not wait.
  const file = await Deno.open(fifo, { read: true });
  read = file.read(into).finally(() => file.close());
} else {
  const fd = fs.openSync(fifo, "r");
  read = new Promise((resolve, reject) =>
    fs.read(fd, into, 0, into.length, null, (err, n) => {
      fs.closeSync(fd);
      if (err) reject(err);
      else resolve(n);
    })
  );
}
shm.close();
const others = Array.from({ length: 8 }, (_, i) => {
  const other = lib.SharedMemory.create({ name: `${name}-${i}` }, SIZE);
  other.unlink();
  return other;
});
say("closed");
say(`read ${await read}`);
const clean = others.every((o) => new Uint8Array(o.buffer, 0, 8).every((b) => b === 0));
say(`others ${clean ? "clean" : "written"}`);
say(`old ${new TextDecoder().decode(new Uint8Array(kept.buffer, 0, 8)).replaceAll("\0", ".")}`);
for (const o of others) o.close();
kept.unlink();
kept.close();
