/**
 * Creates a segment, closes it (the segment stays) and prints `created <byteLength>`. Without
 * `<mode>` the library's default mode is used; `replace` creates with `{ replace: true }`, and
 * `<owner>` (a uid) passes `{ owner }`.
 *
 * Usage: `segment/create.ts <kind> <id> <size> [mode, octal] [replace] [owner]`
 *
 * @module
 */

import { args, lib, say } from "../lib.ts";
import { parseId } from "./common.ts";

const [kind, value, size, mode, replace, owner] = args;
const options = {
  ...(mode === undefined ? {} : { mode: parseInt(mode, 8) }),
  ...(replace === "replace" ? { replace: true } : {}),
  ...(owner === undefined ? {} : { owner: Number(owner) }),
};
const shm = lib.SharedMemory.create(parseId(kind, value), Number(size), options);
say(`created ${shm.byteLength}`);
shm.close();
