/**
 * Run inside a private, small `/dev/shm` (a 16 MiB tmpfs): tries to create a named segment of
 * `<big>` bytes, checks that its name is gone after the failure, then creates one of `<small>`
 * bytes, writes every byte of it, reads every page back, opens it with `openOrCreate` and tries to
 * create it again (no second copy would fit next to it: the name must be found taken first),
 * tries to create a second segment of `<more>` bytes (which would fit in the empty filesystem,
 * but not next to the first one) and removes the first. Prints one JSON line starting with `result `. A SIGBUS anywhere kills the
 * process instead.
 *
 * Usage: `segment/fill_small_shm.ts <name> <big> <small> <more>`
 *
 * @module
 */

import { args, lib, say } from "../lib.ts";

const [name, big, small, more] = [args[0], Number(args[1]), Number(args[2]), Number(args[3])];
const result: Record<string, unknown> = {};

/** `"exists"` if the named segment opens, else the error's code. */
function probe(which: string): string {
  try {
    lib.SharedMemory.open({ name: which }).close();
    return "exists";
  } catch (err) {
    return String((err as { code?: string }).code);
  }
}

/** Creates, closes and removes a segment of `size` bytes; says how that went. */
function tryCreate(which: string, size: number): Record<string, unknown> {
  try {
    const shm = lib.SharedMemory.create({ name: which }, size);
    const byteLength = shm.byteLength;
    shm.close();
    lib.SharedMemory.unlink({ name: which });
    return { ok: true, byteLength };
  } catch (err) {
    const e = err as { name?: string; code?: string };
    return {
      ok: false,
      error: e.name,
      isSharedMemoryError: err instanceof lib.SharedMemoryError,
      code: e.code,
    };
  }
}

result.big = tryCreate(`${name}-big`, big);
result.afterBig = probe(`${name}-big`);
result.handlesAfterBig = lib.openHandleCount();

const page = 4096;
const shm = lib.SharedMemory.create({ name: `${name}-small` }, small);
const bytes = new Uint8Array(shm.buffer);
const pages = Math.ceil(bytes.length / page);
bytes.fill(0xa5);
for (let p = 0; p < pages; p++) {
  bytes[p * page] = (p * 7 + 1) & 0xff;
  bytes[Math.min(p * page + page - 1, bytes.length - 1)] = (p * 13 + 5) & 0xff;
}
let good = 0;
for (let p = 0; p < pages; p++) {
  if (
    bytes[p * page] === ((p * 7 + 1) & 0xff) &&
    bytes[Math.min(p * page + 100, bytes.length - 1)] === 0xa5 &&
    bytes[Math.min(p * page + page - 1, bytes.length - 1)] === ((p * 13 + 5) & 0xff)
  ) good++;
}
result.small = { byteLength: shm.byteLength, pages, good };
result.whileSmall = probe(`${name}-small`);
try {
  const again = lib.SharedMemory.openOrCreate({ name: `${name}-small` }, small);
  result.openOrCreate = { created: again.created, byteLength: again.byteLength };
  again.close();
} catch (err) {
  result.openOrCreate = { code: (err as { code?: string }).code };
}
result.createAgain = tryCreate(`${name}-small`, small);
result.more = tryCreate(`${name}-more`, more);
result.afterMore = probe(`${name}-more`);
shm.close();
lib.SharedMemory.unlink({ name: `${name}-small` });
say(`result ${JSON.stringify(result)}`);
