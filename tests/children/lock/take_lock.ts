import { args, check, lib, pid, say, WAIT_MS } from "../lib.ts";
/**
 * Takes the Mutex at byte `<offset>` of a named segment: prints `locking <pid>`, calls
 * `lock(WAIT_MS)`, and prints `locked ownerDied=<bool>`. `<how>` is `init` (`Mutex.init`, which sets it up or attaches) or
 * `open` (`Mutex.open`, which needs it set up already). `<then>` is `hold`: keep the lock and stay
 * alive until killed; or `unlock`: unlock, print `unlocked`, and exit.
 *
 * Usage: `lock/take_lock.ts <name> <offset> <init|open> <hold|unlock>`
 *
 * @module
 */

const [name, offset, how, then] = args;
check(how === "init" || how === "open", `bad how ${how}`);
check(then === "hold" || then === "unlock", `bad then ${then}`);
const shm = lib.SharedMemory.open({ name });
const mutex = how === "init"
  ? lib.Mutex.init(shm.buffer, Number(offset))
  : lib.Mutex.open(shm.buffer, Number(offset));
say(`locking ${pid}`);
const guard = mutex.lock(WAIT_MS);
say(`locked ownerDied=${guard.ownerDied}`);
if (then === "hold") {
  // Stay alive, holding the lock and the mapping, until SIGKILL (the parent's test times out
  // long before this does).
  setTimeout(() => shm.byteLength, 120_000);
} else {
  guard.unlock();
  say("unlocked");
  shm.close();
}
