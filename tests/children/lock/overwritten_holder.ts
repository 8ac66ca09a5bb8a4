import { args, check, lib, say, WAIT_MS } from "../lib.ts";
/**
 * A lock holder whose lock a peer overwrites: locks the Mutex at `<offset>`, prints `locked`,
 * waits for the parent to set Int32 word `<flag>` of the segment to 1, then tries to unlock and
 * prints `unlock <code>` (`ok` or the error's code), locks again and prints `relocked
 * ownerDied=<bool>`, unlocks and exits 0: the process survives whatever the peer wrote.
 *
 * Usage: `lock/overwritten_holder.ts <name> <offset> <flag>`
 *
 * @module
 */

const [name, offset, flag] = args;
const shm = lib.SharedMemory.open({ name });
const i32 = new Int32Array(shm.buffer);
const mutex = lib.Mutex.open(shm.buffer, Number(offset));
const guard = mutex.lock(WAIT_MS);
say(`locked ownerDied=${guard.ownerDied}`);
while (Atomics.load(i32, Number(flag)) === 0) {
  check(
    lib.wait(i32, Number(flag), 0, WAIT_MS) !== "timed-out",
    `no go-ahead within ${WAIT_MS} ms`,
  );
}
try {
  guard.unlock();
  say("unlock ok");
} catch (err) {
  say(`unlock ${(err as { code?: string }).code ?? String(err)}`);
}
const again = mutex.lock(WAIT_MS);
say(`relocked ownerDied=${again.ownerDied}`);
again.unlock();
shm.close();
