import { args, check, lib, report } from "../lib.ts";
/**
 * Sets up or opens the Mutex at byte `<offset>` of a named segment, and when that works takes
 * and releases it (1 s timeout): for the tests of the errors another process sees.
 *
 * Prints `result {code, message}`: the error's code, or `ok`.
 *
 * Usage: `lock/try_open.ts <name> <offset> <init|open>`
 *
 * @module
 */

const [name, offset, how] = args;
check(how === "init" || how === "open", `bad how ${how}`);
using shm = lib.SharedMemory.open({ name });
try {
  const mutex = how === "init"
    ? lib.Mutex.init(shm.buffer, Number(offset))
    : lib.Mutex.open(shm.buffer, Number(offset));
  mutex.lock(1000).unlock();
  report({ code: "ok", message: `${how}: locked and unlocked` });
} catch (err) {
  if (!(err instanceof lib.SharedMemoryError)) throw err;
  report({ code: err.code, message: err.message });
}
