/**
 * Run inside a private, small `/dev/shm` where another program made named segments with
 * `ftruncate` alone (sparse files): opens each named segment given, writes every page of it, and
 * reads back the first bytes the other program wrote before. Prints one JSON line starting with
 * `result `: per name, `{ byteLength, before, pages }`, or `{ code }` if the open failed. A SIGBUS
 * (a page the full filesystem could not provide) kills the process instead.
 *
 * Usage: `segment/fill_sparse.ts <name>...`
 *
 * @module
 */

import { args, lib, report } from "../lib.ts";

const result: Record<string, unknown> = {};
for (const name of args) {
  let shm;
  try {
    shm = lib.SharedMemory.open({ name });
  } catch (err) {
    result[name] = { code: (err as { code?: string }).code };
    continue;
  }
  const bytes = new Uint8Array(shm.buffer);
  const before = new TextDecoder().decode(bytes.subarray(0, 4));
  let pages = 0;
  for (let at = 0; at < bytes.length; at += 4096, pages++) bytes[at] = 0xa5;
  result[name] = { byteLength: shm.byteLength, before, pages };
  shm.close();
}
report(result);
