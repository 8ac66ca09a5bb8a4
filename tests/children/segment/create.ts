/**
 * Creates a segment, closes it (the segment stays) and prints `created <byteLength>`. Without
 * `<mode>` the library's default mode is used.
 *
 * Usage: `segment/create.ts <kind> <id> <size> [mode, octal]`
 *
 * @module
 */

import { args, lib, say } from "../lib.ts";
import { parseId } from "./common.ts";

const [kind, value, size, mode] = args;
const options = mode === undefined ? undefined : { mode: parseInt(mode, 8) };
const shm = lib.SharedMemory.create(parseId(kind, value), Number(size), options);
say(`created ${shm.byteLength}`);
shm.close();
