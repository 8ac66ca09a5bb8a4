/**
 * Creates a segment, fills it with a seeded pattern, prints `ready <checksum>` and then stays
 * alive with the segment mapped until it is killed.
 *
 * Usage: `segment/create_and_hang.ts <kind> <id> <size> <seed>`
 *
 * @module
 */

import { args, lib, say } from "../lib.ts";
import { fillPattern, fnv1a, parseId } from "./common.ts";

const [kind, value, size, seed] = args;
const shm = lib.SharedMemory.create(parseId(kind, value), Number(size));
const bytes = new Uint8Array(shm.buffer);
fillPattern(bytes, Number(seed));
say(`ready ${shm.created} ${fnv1a(bytes)}`);
// Keep the process alive, and the buffer reachable (so it stays mapped), until SIGKILL.
setInterval(() => bytes.length, 1000);
