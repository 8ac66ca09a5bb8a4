/**
 * Writes or reads a seeded byte pattern in a segment.
 *
 * - `segment/pattern.ts write <kind> <id> <size> <seed>`: creates the segment (exclusively), fills it,
 *   closes it and prints `wrote <checksum>`. The segment stays.
 * - `segment/pattern.ts read <kind> <id>`: opens it and prints `read <byteLength> <checksum>`.
 *
 * @module
 */

import { args, lib, say } from "../lib.ts";
import { fillPattern, fnv1a, parseId } from "./common.ts";

const [mode, kind, value, size, seed] = args;
const id = parseId(kind, value);
if (mode === "write") {
  const shm = lib.SharedMemory.create(id, Number(size));
  fillPattern(new Uint8Array(shm.buffer), Number(seed));
  const sum = fnv1a(new Uint8Array(shm.buffer));
  shm.close();
  say(`wrote ${sum}`);
} else if (mode === "read") {
  const shm = lib.SharedMemory.open(id);
  say(`read ${shm.byteLength} ${fnv1a(new Uint8Array(shm.buffer))}`);
  shm.close();
} else {
  throw new Error(`unknown mode ${mode}`);
}
