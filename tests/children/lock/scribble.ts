import { args, lib, say } from "../lib.ts";
/**
 * A hostile peer: writes 32-bit words into a Mutex's bytes in a named segment, then exits.
 *
 * Usage: `lock/scribble.ts <name> <offset> <index>=<value> ...`: `index` counts 32-bit words from
 * the Mutex's offset (0 state, 1 layout, 2 and 3 the owner word's low and high halves); `value`
 * is a number (`0x` hex allowed). Prints `written`.
 *
 * @module
 */

const [name, offset, ...writes] = args;
const shm = lib.SharedMemory.open({ name });
const words = new Int32Array(shm.buffer, Number(offset), 16);
for (const w of writes) {
  const [index, value] = w.split("=");
  Atomics.store(words, Number(index), Number(value) | 0);
}
say("written");
shm.close();
