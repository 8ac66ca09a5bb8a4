/**
 * Removes the segment `<id>` with `SharedMemory.unlink` and prints `unlinked`; a failure is thrown
 * (its message on stderr, a non-zero exit).
 *
 * Usage: `segment/unlink.ts <kind> <id>`
 *
 * @module
 */

import { args, lib, say } from "../lib.ts";
import { parseId } from "./common.ts";

const [kind, value] = args;
lib.SharedMemory.unlink(parseId(kind, value));
say("unlinked");
