/**
 * The child half of the seed README's example: opens keyed segment `key` with
 * `createSharedBuffer(key, size)` (no initialize) and prints what it sees as a JSON array of
 * `String(value)` (JSON itself would turn `Infinity` into `null`).
 *
 * Usage: `seed/readme_child.ts <key> <elements>`
 *
 * @module
 */

import { args, lib, say } from "../lib.ts";

const [key, elements] = args.map(Number);
const sharedBuffer = lib.createSharedBuffer(key, elements * Float64Array.BYTES_PER_ELEMENT);
const sharedArray = new Float64Array(sharedBuffer);
say(`values ${JSON.stringify(Array.from(sharedArray, String))}`);
lib.detachSharedBuffer(sharedBuffer);
say(`after-detach ${sharedBuffer.byteLength} ${lib.openHandleCount()}`);
