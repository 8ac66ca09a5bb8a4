/**
 * Opens a segment, prints `mapped`, then reads every byte of it every few milliseconds until
 * killed (or killed by the kernel, when a peer shrinks the segment under it).
 *
 * Usage: `segment/read_forever.ts <kind> <id>`
 *
 * @module
 */

import { args, lib, say } from "../lib.ts";
import { parseId } from "./common.ts";

const [kind, value] = args;
const shm = lib.SharedMemory.open(parseId(kind, value));
const bytes = new Uint8Array(shm.buffer);
say("mapped");
let sum = 0;
setInterval(() => {
  for (let i = 0; i < bytes.length; i += 512) sum += bytes[i];
}, 2);
