/**
 * Run in a fresh IPC namespace, where the first System V segment made gets id 0 (an id the seed
 * package's `detachSharedBuffer` takes for "already detached"). Makes a segment of 4096 bytes
 * under `<key>` and uses it through a second attach, then removes it:
 *
 * - `api`: `SharedMemory.create`, then `SharedMemory.open` of the key sees what the first wrote,
 *   both close, `SharedMemory.unlink` removes it;
 * - `seed`: `createSharedBuffer(key, size, true)`, then `createSharedBuffer(key, size)` sees what
 *   the first wrote, `detachSharedBuffer` detaches both, `SharedMemory.unlink` removes it.
 *
 * Prints one JSON line starting with `result `: the segment's id as the kernel lists it, what the
 * second attach read, its buffers' byte lengths after the close or detach, the open handles left,
 * and the namespace's segments at the start and at the end (`/proc/sysvipc/shm`).
 *
 * Usage: `segment/id_zero.ts <api|seed> <key>`
 *
 * @module
 */

import { readFileSync } from "node:fs";
import { args, check, lib, report } from "../lib.ts";

const [mode, key] = [args[0], Number(args[1])];
check(mode === "api" || mode === "seed", `mode must be api or seed, got ${mode}`);
const SIZE = 4096;

/** The namespace's segments, `[key, id]` each, from the kernel's own list. */
function segments(): [number, number][] {
  const [, ...rows] = readFileSync("/proc/sysvipc/shm", "utf8").trim().split("\n");
  return rows.map((row) => {
    const [k, id] = row.trim().split(/\s+/).map(Number);
    return [k, id];
  });
}

const before = segments();
let id: number | undefined;
let seen: number[];
let lengths: number[];
if (mode === "api") {
  const made = lib.SharedMemory.create({ key }, SIZE);
  id = segments().find(([k]) => k === key)?.[1];
  const [first, opened] = [made.buffer, lib.SharedMemory.open({ key })];
  const second = opened.buffer;
  new Uint8Array(first).set([1, 2, 3], SIZE - 3);
  seen = [...new Uint8Array(second).subarray(SIZE - 3)];
  opened.close();
  made.close();
  lengths = [first.byteLength, second.byteLength];
} else {
  const made = lib.createSharedBuffer(key, SIZE, true);
  id = segments().find(([k]) => k === key)?.[1];
  new Uint8Array(made).set([1, 2, 3], SIZE - 3);
  const again = lib.createSharedBuffer(key, SIZE);
  seen = [...new Uint8Array(again).subarray(SIZE - 3)];
  lib.detachSharedBuffer(again);
  lib.detachSharedBuffer(made);
  lengths = [made.byteLength, again.byteLength];
}
const handles = lib.openHandleCount();
lib.SharedMemory.unlink({ key });
report({ id, seen, lengths, handles, before, after: segments() });
